"""`warren daemon` under systemd's protocols, with the real binary (issue 12):

- sd_notify on a test NOTIFY_SOCKET (a Python AF_UNIX datagram socket):
  READY=1, then WATCHDOG=1 again and again with WATCHDOG_USEC set,
  RELOADING=1 with MONOTONIC_USEC (CLOCK_MONOTONIC, microseconds) then
  READY=1 around a SIGHUP, STOPPING=1 on `ctl stop`;
- WATCHDOG_PID naming another process: no watchdog; a bad WATCHDOG_USEC:
  one warning, the daemon runs;
- journald: with JOURNAL_STREAM naming the daemon's stderr (its fstat
  dev:inode) lines are "<6>message" without timestamps, the last error line
  "<3>warren: error: ..."; a JOURNAL_STREAM naming another file changes
  nothing.

The stuck-loop case (WATCHDOG=1 withheld) is in tests/daemon/watchdog_test.cpp
on a manual clock. Loopback only; every daemon has its own --control path.

    python3 test_daemon_systemd.py --warren /path/to/warren [unittest args]
"""

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warren_test as wt  # noqa: E402

TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} ")


class Notifications:
    """A NOTIFY_SOCKET: a datagram socket collecting what the daemon sends."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.seen = []

    def next(self, timeout=wt.WAIT, skip_watchdog=True):
        """The next datagram (WATCHDOG=1 skipped unless asked for)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no notification within %.1fs; seen: %r" % (timeout, self.seen))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            self.seen.append(data)
            if skip_watchdog and data == "WATCHDOG=1":
                continue
            return data

    def close(self):
        self.sock.close()


class SystemdProtocolTest(wt.WarrenTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="warren-systemd-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.sock_path = os.path.join(self.tmp, "run", "control.sock")

    def argv(self):
        return [wt.WARREN, "daemon", "--control", self.sock_path, "--state-dir", os.path.join(self.tmp, "state")]

    def notifications(self):
        n = Notifications(os.path.join(self.tmp, "notify"))
        self.addCleanup(n.close)
        return n

    def ctl(self, *args):
        return subprocess.run([wt.WARREN, "ctl"] + list(args) + ["--control", self.sock_path], capture_output=True,
                              text=True, timeout=30)

    def test_ready_watchdog_reload_stopping(self):
        n = self.notifications()
        env = dict(os.environ, NOTIFY_SOCKET=n.path, WATCHDOG_USEC="200000", WATCHDOG_PID=str(os.getpid()))
        env.pop("WATCHDOG_PID")  # unset: the watchdog is ours (set: it must be our pid)
        d = self.track(wt.Process(self.argv(), env=env))
        self.assertEqual(n.next(), "READY=1")
        d.wait_for(r"daemon: watchdog: WATCHDOG=1 every 100 ms while all \d+ event loops? answer")
        # Pinged every 100 ms, answered by the one loop: WATCHDOG=1 keeps coming.
        for _ in range(3):
            self.assertEqual(n.next(skip_watchdog=False), "WATCHDOG=1")

        before = int(time.monotonic() * 1e6)
        d.signal(signal.SIGHUP)
        reloading = n.next()
        after = int(time.monotonic() * 1e6)
        fields = dict(line.split("=", 1) for line in reloading.split("\n"))
        self.assertEqual(set(fields), {"RELOADING", "MONOTONIC_USEC"}, reloading)
        self.assertEqual(fields["RELOADING"], "1")
        self.assertTrue(before <= int(fields["MONOTONIC_USEC"]) <= after,
                        "MONOTONIC_USEC is CLOCK_MONOTONIC in µs: %s not in [%d, %d]"
                        % (fields["MONOTONIC_USEC"], before, after))
        self.assertEqual(n.next(), "READY=1", "the reload ends with READY=1")
        self.assertEqual(n.next(skip_watchdog=False), "WATCHDOG=1", "the watchdog goes on after a reload")

        r = self.ctl("stop")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(n.next(), "STOPPING=1")
        self.assertEqual(d.wait_exit(), 0, d.stderr_text())
        self.assert_no_crash(d.lines)

    def test_watchdog_for_another_pid_or_unusable(self):
        n = self.notifications()
        env = dict(os.environ, NOTIFY_SOCKET=n.path, WATCHDOG_USEC="100000", WATCHDOG_PID="1")
        d = self.track(wt.Process(self.argv(), env=env))
        self.assertEqual(n.next(), "READY=1")
        d.wait_for(r"daemon: pid \d+ ready")
        self.assertIsNone(d.find("watchdog"), "WATCHDOG_PID=1 is not us: no watchdog")
        r = self.ctl("stop")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(n.next(), "STOPPING=1")
        self.assertEqual(d.wait_exit(), 0, d.stderr_text())
        self.assertNotIn("WATCHDOG=1", n.seen)

        env = dict(os.environ, WATCHDOG_USEC="soon")
        env.pop("NOTIFY_SOCKET", None)
        d = self.track(wt.Process(self.argv(), env=env))
        d.wait_for(r"daemon: watchdog: WATCHDOG_USEC is not a positive number of microseconds; running without it")
        d.wait_for(r"daemon: pid \d+ ready")
        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait_exit(), 0, d.stderr_text())
        self.assert_no_crash(d.lines)

    # ---- journald ----------------------------------------------------------

    def run_with_stderr_pipe(self, argv, journal_stream):
        """Runs argv with stderr on a pipe; journal_stream(st) gives
        JOURNAL_STREAM from the pipe's fstat. Returns (process, read end)."""
        r, w = os.pipe()
        st = os.fstat(w)
        env = dict(os.environ, JOURNAL_STREAM=journal_stream(st))
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=w, env=env,
                             start_new_session=True)
        os.close(w)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        self.addCleanup(os.close, r)
        return p, r

    def read_lines_until(self, fd, pattern, timeout=wt.WAIT):
        rx = re.compile(pattern)
        data = b""
        deadline = time.monotonic() + timeout
        while True:
            lines = data.decode("utf-8", "replace").split("\n")
            if any(rx.search(l) for l in lines[:-1]):
                return lines[:-1]
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError("no line matching /%s/; got:\n%s" % (pattern, data.decode(errors="replace")))
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError("EOF before /%s/; got:\n%s" % (pattern, data.decode(errors="replace")))
            data += chunk

    def test_journal_priorities_when_stderr_is_the_journal_stream(self):
        p, r = self.run_with_stderr_pipe(self.argv() + ["--log-level", "debug"],
                                         lambda st: "%d:%d" % (st.st_dev, st.st_ino))
        lines = self.read_lines_until(r, r"daemon: pid \d+ ready")
        self.assertTrue(any(l.startswith("<6>daemon: pid %d ready" % p.pid) for l in lines), lines)
        for line in lines:
            self.assertRegex(line, r"^<[2-7]>", "every line carries a priority")
            self.assertNotRegex(line, r"^<\d>\d{4}-", "journald adds the time")
        p.send_signal(signal.SIGTERM)
        lines = self.read_lines_until(r, r"daemon: stopped")
        self.assertIn("<6>daemon: stopped", lines)
        self.assertEqual(p.wait(wt.WAIT), 0)
        self.assert_no_crash(lines)

        # The error line main() prints: priority 3.
        p, r = self.run_with_stderr_pipe([wt.WARREN, "daemon", "--control", ""],
                                         lambda st: "%d:%d" % (st.st_dev, st.st_ino))
        lines = self.read_lines_until(r, r"warren: error:")
        self.assertEqual(p.wait(wt.WAIT), 1)
        self.assertTrue(lines[-1].startswith("<3>warren: error: --control is empty"), lines)

    def test_journal_stream_of_another_file_changes_nothing(self):
        # A service's child given another stderr inherits JOURNAL_STREAM.
        p, r = self.run_with_stderr_pipe(self.argv(), lambda st: "%d:%d" % (st.st_dev, st.st_ino + 1))
        lines = self.read_lines_until(r, r"daemon: pid \d+ ready")
        for line in lines:
            self.assertRegex(line, TIMESTAMP_RE, "timestamps, no priorities")
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(wt.WAIT), 0)


if __name__ == "__main__":
    wt.main()
