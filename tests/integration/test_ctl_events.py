"""Integration tests of `warren ctl events` and `warren ctl stop` against a
real daemon (loopback only):

- `ctl events` prints what the daemon still holds (a relay unit's start,
  the boot's reload summary) and exits 0; `--json` gives one object a line
  with its seq;
- `ctl events --follow` prints new events as they happen, hears
  `daemon.stopping`, waits while the daemon is down, and reconnects to the
  restarted daemon, printing the new daemon's events once, in order;
- `ctl stop` returns only once the daemon's process has exited;
- `ctl metrics` shows a relay unit's bytes as a table and as JSON;
- --token-file and --pin on the Unix socket are refused, not ignored;
- events.subscribe replays after a seq, so a follower misses nothing;
- a subscriber that never reads loses events (then told how many), not the
  daemon's memory, and the daemon keeps answering others.

    python3 test_ctl_events.py --warren /path/to/warren [unittest args]
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warren_test as wt  # noqa: E402
from test_daemon import Conn, Daemon  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Lines:
    """A process's stdout, line by line, on a thread; wait_for() with a bound."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def wait_for(self, pred, what, after=None):
        """Until a line matching `pred` (after the first line matching `after`) is read."""
        def found():
            lines = self.lines
            if after is not None:
                start = next((i for i, l in enumerate(lines) if after in l), None)
                if start is None:
                    return False
                lines = lines[start + 1:]
            return any(pred(l) for l in lines)

        deadline = time.monotonic() + wt.WAIT
        with self.cond:
            while not found():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no line with %s in %r" % (what, self.lines))
                self.cond.wait(left)


class CtlEventsTest(wt.WarrenTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="warren-ctl-events-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.sock_path = os.path.join(self.tmp, "run", "control.sock")
        self.echo = self.track(wt.EchoServer())
        self.config = os.path.join(self.tmp, "warren.toml")
        with open(self.config, "w") as f:
            f.write('[[relay]]\nname = "r1"\nlisten = "127.0.0.1:%d"\ntarget = "127.0.0.1:%d"\n'
                    % (free_port(), self.echo.port))

    def start_daemon(self):
        return self.track(Daemon([wt.WARREN, "daemon", "--config", self.config, "--control", self.sock_path,
                                  "--state-dir", os.path.join(self.tmp, "state")])).ready()

    def ctl(self, *args):
        return subprocess.run([wt.WARREN, "ctl", *args, "--control", self.sock_path], capture_output=True,
                              text=True, timeout=wt.WAIT)

    def test_events_prints_the_history_and_exits(self):
        self.start_daemon()
        out = self.ctl("events")
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.splitlines()
        self.assertTrue(any("unit.state" in l and "r1" in l and "state=running" in l for l in lines), lines)
        self.assertTrue(any("reload.done" in l and "cause=start" in l for l in lines), lines)
        js = [json.loads(l) for l in self.ctl("events", "--json").stdout.splitlines()]
        self.assertEqual([e["seq"] for e in js], sorted(e["seq"] for e in js))
        self.assertIn("events.unit.state", [e["method"] for e in js])

    def test_follow_across_a_daemon_restart(self):
        d = self.start_daemon()
        follower = subprocess.Popen([wt.WARREN, "ctl", "events", "--follow", "--json", "--control", self.sock_path],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(follower.kill)
        out = Lines(follower)
        out.wait_for(lambda l: '"reload.done"' in l, "the boot's reload.done")
        self.assertEqual(self.ctl("restart", "r1").returncode, 0)
        out.wait_for(lambda l: '"unit.restarted"' in l, "unit.restarted")
        stop = self.ctl("stop")
        self.assertEqual(stop.returncode, 0, stop.stderr)
        out.wait_for(lambda l: '"daemon.stopping"' in l, "daemon.stopping")
        # ctl stop returned once the daemon had exited.
        self.assertIsNotNone(d.proc.poll(), "ctl stop returned before the daemon exited")
        self.assertIn("stopped", stop.stdout)
        d2 = self.start_daemon()
        out.wait_for(lambda l: '"unit.state"' in l and '"running"' in l, "the new daemon's unit.state running",
                     after="daemon.stopping")
        self.assertEqual(self.ctl("restart", "r1").returncode, 0)
        out.wait_for(lambda l: '"unit.restarted"' in l, "the new daemon's unit.restarted", after="daemon.stopping")
        follower.kill()
        follower.wait()
        err = follower.stderr.read()
        follower.stdout.close()
        follower.stderr.close()
        self.assertIn("waiting for the daemon", err)
        self.assertIn("reconnected to a new daemon (pid %d)" % d2.proc.pid, err)
        # Each event printed once: within one daemon run, seqs strictly increase.
        runs, current = [], []
        for l in out.lines:
            e = json.loads(l)
            if current and e["seq"] <= current[-1]:
                runs.append(current)
                current = []
            current.append(e["seq"])
        runs.append(current)
        self.assertEqual(len(runs), 2, out.lines)

    def test_subscribe_after_a_seq_replays_the_rest(self):
        self.start_daemon()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.sock_path)
        c = self.track(Conn(s))
        r = c.call("events.subscribe", 1, {"after": 1})
        seq = r["result"]["seq"]
        self.assertGreaterEqual(seq, 2)
        got = [c.recv() for _ in range(seq - 1)]
        self.assertEqual([g["params"]["seq"] for g in got], list(range(2, seq + 1)))
        bad = c.call("events.subscribe", 2, {"after": -1})
        self.assertEqual(bad["error"]["code"], -32602)

    def test_a_subscriber_that_never_reads_loses_events_not_memory(self):
        d = self.start_daemon()
        # A subscriber with the smallest receive buffer that never reads.
        lazy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lazy.connect(self.sock_path)
        lazy_conn = self.track(Conn(lazy))
        self.assertIn("seq", lazy_conn.call("events.subscribe")["result"])

        def rss_kib():
            with open("/proc/%d/status" % d.pid) as f:
                return int(next(l for l in f if l.startswith("VmRSS:")).split()[1])

        # Events: restarts of a unit (about 4 events each), from a second
        # connection that keeps being served. Kept, they would grow the
        # queue without end; bounded, they are dropped and counted (the
        # events.lost below proves they were dropped, not queued).
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.sock_path)
        busy = self.track(Conn(s))
        for i in range(60):
            r = busy.call("units.restart", i + 10, {"name": "r1"})
            self.assertIn("result", r, r)
        base = rss_kib()
        for i in range(400):  # ~1,600 events: over the 1,024 a subscriber may have queued
            r = busy.call("units.restart", i + 100, {"name": "r1"})
            self.assertIn("result", r, r)
        grown = rss_kib() - base
        # A loose bound (ASan's quarantine alone keeps 16 MiB); the proof that
        # nothing is queued without end is the events.lost below.
        self.assertLess(grown, 48 * 1024, "daemon VmRSS grew by %d KiB for a subscriber that never reads" % grown)
        # The daemon still answers promptly, and the subscriber, once it
        # reads, is told how many it lost, in order with the rest.
        self.assertEqual(busy.call("daemon.status", 1)["result"]["pid"], d.pid)
        lost = 0
        lazy.settimeout(wt.WAIT)
        while lost == 0:
            m = lazy_conn.recv()
            self.assertIsNotNone(m, "the subscriber's connection ended before events.lost")
            if m.get("method") == "events.lost":
                lost = m["params"]["count"]
        self.assertGreater(lost, 0)

    def test_ctl_metrics_table_and_json(self):
        self.start_daemon()
        with open(self.config) as f:
            port = int(f.read().split('listen = "127.0.0.1:')[1].split('"')[0])
        s = wt.connect("127.0.0.1", port)
        s.sendall(b"x" * 1000)
        got = b""
        while len(got) < 1000:
            got += s.recv(4096)
        s.close()
        out = self.ctl("metrics")
        self.assertEqual(out.returncode, 0, out.stderr)
        head, row = out.stdout.splitlines()[:2]
        self.assertEqual(head.split()[:5], ["NAME", "KIND", "STATE", "UP", "DOWN"])
        self.assertEqual(row.split()[:3], ["r1", "relay", "running"])
        m = json.loads(self.ctl("metrics", "--json").stdout)
        r1 = next(u for u in m["units"] if u["name"] == "r1")
        self.assertEqual(r1["bytes"], {"up": 1000, "down": 1000})
        self.assertEqual(r1["connections"]["total"], 1)

    def test_token_and_pin_refused_on_the_unix_socket(self):
        self.start_daemon()
        for flag, value in (("--token-file", "/nonexistent"), ("--pin", "sha256:00")):
            out = self.ctl("status", flag, value)
            self.assertEqual(out.returncode, 1)
            self.assertIn("is for --connect", out.stderr)


if __name__ == "__main__":
    wt.main()
