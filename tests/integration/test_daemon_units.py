"""Integration tests of the daemon's units (issue 12, the supervisor) with
the real binary, real sockets, loopback only:

- a config with a relay, a server and a client unit comes up (--threads 2:
  units on both loops) and carries data; `ctl ls` and `ctl show` over Unix;
- units.add over TCP with the admin token (drop-in written 0600); a
  read-only token refused units.add; the API-added unit survives a reload
  and a daemon restart; units.remove deletes the drop-in; a file unit
  cannot be removed through the API; a unit naming a file outside the
  config and state directories refused;
- a reload that adds, changes and removes other units, then one that swaps
  the server's token_file (in place), while a 1 GiB SHA-256-checked transfer
  runs through the unchanged client unit on one connection;
- a bad config on reload rejected whole (every error with line:column), the
  running set intact (same pid, same units, data still flows);
- a restart-class change (a relay's listen port) moves the listener, and an
  events.subscribe connection sees the unit drain, stop, run again and the
  reload's summary;
- a unit of the file that cannot start at boot: exit 1.

    python3 test_daemon_units.py --warren /path/to/warren [unittest args]
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import stat
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

GIB = 1 << 30


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class HashSink(wt.TCPServer):
    """Reads each connection to its end, then answers the SHA-256 (hex) of
    what it read and the byte count, and closes."""

    def __init__(self):
        super().__init__(self._sink)

    def _sink(self, conn):
        h = hashlib.sha256()
        n = 0
        while True:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        conn.sendall(("%s %d\n" % (h.hexdigest(), n)).encode())
        conn.close()


class UnitsTest(wt.WarrenTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="warren-units-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.cfg_dir = os.path.join(self.tmp, "cfg")
        self.state = os.path.join(self.tmp, "state")
        os.makedirs(self.cfg_dir)
        self.config = os.path.join(self.cfg_dir, "warren.toml")
        self.sock_path = os.path.join(self.tmp, "run", "control.sock")
        self.token = self.write("tunnel.token", "tunnel-" + os.urandom(8).hex() + "\n")
        self.admin = self.write("admin.token", "admin-" + os.urandom(8).hex() + "\n")
        self.ro = self.write("ro.token", "ro-" + os.urandom(8).hex() + "\n")
        self.echo = self.track(wt.EchoServer())
        self.sink = self.track(HashSink())
        self.server_port = free_port()
        self.client_port = free_port()
        self.relay_port = free_port()

    def write(self, name, text, mode=0o600):
        path = os.path.join(self.cfg_dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    # ---- the config ------------------------------------------------------

    def server_section(self, name="gw", token=None):
        return ('[[server]]\nname = "%s"\nlisten = ["ws://127.0.0.1:%d"]\ntoken_file = "%s"\n'
                'allow = ["127.0.0.1"]\n\n' % (name, self.server_port, token or self.token))

    def client_section(self, name="office", target_port=None):
        return ('[[client]]\nname = "%s"\nurl = "ws://127.0.0.1:%d"\ntoken_file = "%s"\n'
                'local = ["127.0.0.1:%d:127.0.0.1:%d"]\n\n'
                % (name, self.server_port, self.token, self.client_port, target_port or self.sink.port))

    def relay_section(self, name, port, target_port=None):
        return ('[[relay]]\nname = "%s"\nlisten = "127.0.0.1:%d"\ntarget = "127.0.0.1:%d"\n\n'
                % (name, port, target_port or self.echo.port))

    def write_config(self, text):
        tmp = self.config + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.config)

    # ---- the daemon ------------------------------------------------------

    def start_daemon(self, *args, wait=True):
        argv = [wt.WARREN, "daemon", "--config", self.config, "--control", self.sock_path,
                "--state-dir", self.state] + list(args)
        d = self.track(Daemon(argv))
        if wait:
            d.ready()
        return d

    def network_args(self):
        return ["--control-listen", "tcp://127.0.0.1:0", "--control-token-file", self.admin,
                "--control-readonly-token-file", self.ro]

    def unix(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.sock_path)
        return self.track(Conn(s))

    def tcp(self, d, token_file):
        _, port = d.port("tcp")
        c = self.track(Conn(socket.create_connection(("127.0.0.1", port), timeout=wt.WAIT)))
        with open(token_file) as f:
            r = c.call("auth", 1, {"token": f.read().strip()})
        self.assertIn("result", r, r)
        return c

    def call(self, conn, method, params=None):
        r = conn.call(method, 7, params)
        self.assertIsNotNone(r, "connection closed on %s" % method)
        return r

    def ok(self, conn, method, params=None):
        r = self.call(conn, method, params)
        self.assertIn("result", r, "%s: %s" % (method, r))
        return r["result"]

    def units(self, conn):
        return {u["name"]: u for u in self.ok(conn, "units.list")["units"]}

    def ctl(self, *args):
        return subprocess.run([wt.WARREN, "ctl", "--control", self.sock_path] + list(args), capture_output=True,
                              text=True, timeout=30)

    def stop_daemon(self, d):
        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait_exit(), 0, d.stderr_text())
        self.assert_no_crash(d.lines)

    def echo_through(self, port, payload=b"ping"):
        with wt.connect("127.0.0.1", port) as s:
            s.sendall(payload)
            self.assertEqual(wt.recv_exactly(s, len(payload)), payload)

    def sink_through(self, port, data):
        with wt.connect("127.0.0.1", port) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            answer = wt.recv_until_eof(s).decode().split()
        self.assertEqual(answer, [hashlib.sha256(data).hexdigest(), str(len(data))])

    # ---- tests -------------------------------------------------------------

    def test_units_come_up_on_two_loops_and_carry_data(self):
        self.write_config(self.server_section() + self.client_section() + self.relay_section("web", self.relay_port))
        d = self.start_daemon("--threads", "2")
        self.assertTrue(d.find(r"ready \(3 units on 2 loops\)") is not None, d.stderr_text())
        c = self.unix()
        units = self.units(c)
        self.assertEqual(sorted(units), ["gw", "office", "web"])
        self.assertEqual({u["state"] for u in units.values()}, {"running"})
        self.assertEqual({u["loop"] for u in units.values()}, {0, 1}, "units on both loops")
        self.assertEqual({u["origin"] for u in units.values()}, {"file"})
        self.echo_through(self.relay_port)
        self.sink_through(self.client_port, os.urandom(1 << 20))
        office = self.ok(c, "units.get", {"name": "office"})
        self.assertGreater(office["counters"]["bytes_up"], 1 << 20)
        self.assertEqual(office["peer"], "127.0.0.1:%d" % self.server_port)
        status = self.ok(c, "daemon.status")
        self.assertEqual(status["units"]["running"], 3)
        self.assertEqual(status["threads"], 2)
        # ctl over Unix: an aligned table and one unit's details.
        ls = self.ctl("ls")
        self.assertEqual(ls.returncode, 0, ls.stderr)
        lines = ls.stdout.splitlines()
        self.assertTrue(lines[0].startswith("NAME"), ls.stdout)
        self.assertEqual(len(lines), 4, ls.stdout)
        self.assertEqual(len({l.index("KIND") if i == 0 else None for i, l in enumerate(lines)} - {None}), 1)
        for line in lines[1:]:
            self.assertIn("running", line)
            self.assertEqual(line.split()[2], "running", "STATE column aligned: %r" % line)
        show = self.ctl("show", "office")
        self.assertEqual(show.returncode, 0, show.stderr)
        self.assertRegex(show.stdout, r"state\s+running")
        self.assertRegex(show.stdout, r"bytes\s+1\.\d MiB up")
        js = self.ctl("ls", "--json")
        self.assertEqual(len(json.loads(js.stdout)["units"]), 3)
        missing = self.ctl("show", "nope")
        self.assertEqual(missing.returncode, 1)
        self.assertIn("no unit named nope", missing.stderr)
        self.assertEqual(len(missing.stderr.strip().splitlines()), 1, missing.stderr)
        self.stop_daemon(d)

    def test_api_units_drop_ins_tokens_and_paths(self):
        self.write_config(self.relay_section("web", self.relay_port))
        d = self.start_daemon(*self.network_args())
        admin = self.tcp(d, self.admin)
        extra_port = free_port()
        section = {"kind": "relay", "name": "extra", "listen": "127.0.0.1:%d" % extra_port,
                   "target": "127.0.0.1:%d" % self.echo.port}
        # A read-only caller may list, never add.
        ro = self.tcp(d, self.ro)
        self.assertEqual(len(self.units(ro)), 1)
        self.assertEqual(self.call(ro, "units.add", section)["error"]["code"], -32001)
        added = self.ok(admin, "units.add", section)
        self.assertEqual((added["name"], added["state"], added["origin"]), ("extra", "running", "drop-in"))
        dropin = os.path.join(self.state, "units.d", "extra.toml")
        self.assertEqual(stat.S_IMODE(os.stat(dropin).st_mode), 0o600)
        self.echo_through(extra_port)
        # The same name again (any case), and a file unit: refused.
        self.assertEqual(self.call(admin, "units.add", dict(section, name="EXTRA"))["error"]["code"], -32003)
        self.assertEqual(self.call(admin, "units.remove", {"name": "web"})["error"]["code"], -32008)
        # Files only under the config and state directories; no contents quoted.
        for bad in ("/etc/shadow", self.cfg_dir + "/../../etc/passwd", "relative.token"):
            r = self.call(admin, "units.add", {"kind": "server", "name": "evil",
                                               "listen": ["ws://127.0.0.1:%d" % free_port()], "token_file": bad})
            self.assertEqual(r["error"]["code"], -32004, r)
            self.assertNotIn("root:", json.dumps(r))
        link = os.path.join(self.cfg_dir, "escape")
        os.symlink("/etc", link)
        r = self.call(admin, "units.add", {"kind": "server", "name": "evil", "listen": ["ws://127.0.0.1:1"],
                                           "token_file": link + "/passwd"})
        self.assertEqual(r["error"]["code"], -32004, r)
        self.assertIn("outside", r["error"]["data"]["errors"][0])
        # Validated like the file: an unknown key with its did-you-mean.
        r = self.call(admin, "units.add", dict(section, name="typo", targte="x"))
        self.assertEqual(r["error"]["code"], -32004)
        self.assertIn("did you mean `target`", json.dumps(r["error"]["data"]))
        # A reload keeps it (unchanged: the same unit, never restarted).
        since = self.ok(admin, "units.get", {"name": "extra"})["since"]
        report = self.ok(admin, "config.reload")
        self.assertIn("extra", report["kept"])
        self.assertEqual(self.ok(admin, "units.get", {"name": "extra"})["since"], since)
        # A restart of the daemon keeps it.
        self.stop_daemon(d)
        d = self.start_daemon(*self.network_args())
        admin = self.tcp(d, self.admin)
        self.assertEqual(self.units(admin)["extra"]["origin"], "drop-in")
        self.echo_through(extra_port)
        # units.remove stops it and deletes the drop-in.
        self.assertEqual(self.ok(admin, "units.remove", {"name": "extra"}), {"removed": "extra"})
        self.assertFalse(os.path.exists(dropin))
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", extra_port), timeout=2)
        self.assertEqual(sorted(self.units(admin)), ["web"])
        self.stop_daemon(d)

    def test_reloads_during_a_1gib_transfer_through_an_unchanged_client(self):
        old_relay, moved_relay, new_relay = free_port(), free_port(), free_port()
        self.write_config(self.server_section() + self.client_section() + self.relay_section("web", old_relay) +
                          self.relay_section("gone", self.relay_port))
        d = self.start_daemon("--threads", "2")
        c = self.unix()
        before = self.units(c)
        # The transfer: half, then the reloads, then the rest, on one connection.
        block = os.urandom(1 << 20)
        h = hashlib.sha256()
        s = wt.connect("127.0.0.1", self.client_port)
        half = threading.Event()
        resume = threading.Event()
        result = {}

        def send():
            try:
                for i in range(GIB // len(block)):
                    if i == (GIB // len(block)) // 2:
                        half.set()
                        resume.wait(60)
                    s.sendall(block)
                    h.update(block)
                s.shutdown(socket.SHUT_WR)
                result["answer"] = wt.recv_until_eof(s, timeout=120).decode().split()
            except OSError as e:
                result["error"] = e

        started = time.monotonic()
        t = threading.Thread(target=send, daemon=True)
        t.start()
        self.assertTrue(half.wait(120), "the first half did not go through")
        # 1: adds one unit, changes one (its port: a restart), removes one.
        self.write_config(self.server_section() + self.client_section() + self.relay_section("web", moved_relay) +
                          self.relay_section("new", new_relay))
        r1 = self.ok(c, "config.reload")
        self.assertEqual((r1["started"], r1["restarted"], r1["stopped"], r1["failed"]),
                         (["new"], ["web"], ["gone"], []), r1)
        self.assertEqual(sorted(r1["kept"]), ["gw", "office"])
        # 2: the server's token_file swapped (the same token in a new file): in place.
        with open(self.token) as f:
            swapped = self.write("tunnel2.token", f.read())
        self.write_config(self.server_section(token=swapped) + self.client_section() +
                          self.relay_section("web", moved_relay) + self.relay_section("new", new_relay))
        r2 = self.ok(c, "config.reload")
        self.assertEqual((r2["in_place"], r2["failed"]), (["gw"], []), r2)
        resume.set()
        t.join(300)
        self.assertFalse(t.is_alive(), "the transfer did not finish")
        elapsed = time.monotonic() - started
        self.assertNotIn("error", result, result)
        self.assertEqual(result["answer"], [h.hexdigest(), str(GIB)])
        s.close()
        after = self.units(c)
        for name in ("gw", "office"):
            self.assertEqual(after[name]["since"], before[name]["since"], name + " was never restarted")
        self.assertEqual(after["office"]["counters"]["connections_total"], 1, "one tunnel all along")
        self.echo_through(moved_relay)
        self.echo_through(new_relay)
        for port in (old_relay, self.relay_port):
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=2)
        print("\n1 GiB through the client unit with two reloads: %.1fs" % elapsed, file=sys.stderr)
        self.stop_daemon(d)

    def test_bad_config_on_reload_rejected_running_set_intact(self):
        self.write_config(self.relay_section("web", self.relay_port) + self.relay_section("api", free_port()))
        d = self.start_daemon()
        c = self.unix()
        before = self.units(c)
        self.write_config(self.relay_section("web", free_port()) +
                          '[[relay]]\nname = "api"\nlisten = "127.0.0.1:1"\ntarget = "127.0.0.1:2"\nlisten_x = 1\n'
                          '\n[[server]]\nname = "x"\nmax_clients = "many"\n')
        r = self.call(c, "config.reload")
        self.assertEqual(r["error"]["code"], -32004, r)
        errors = r["error"]["data"]["errors"]
        self.assertEqual(len(errors), 2, errors)
        self.assertRegex(errors[0], r"warren\.toml:\d+:\d+: unknown key 'listen_x'")
        self.assertRegex(errors[1], r"warren\.toml:\d+:\d+: max_clients must be an integer")
        d.wait_for(r"config\.reload: 2 errors in the config; nothing was changed")
        self.assertEqual(self.units(c), before)
        self.assertEqual(self.ok(c, "daemon.status")["pid"], d.pid)
        self.echo_through(self.relay_port)
        # SIGHUP takes the same path.
        mark = len(d.lines)
        d.signal(signal.SIGHUP)
        d.wait_for(r"SIGHUP: 2 errors in the config; nothing was changed", start=mark)
        self.echo_through(self.relay_port)
        # ctl reload prints every error, then the one line.
        out = self.ctl("reload")
        self.assertEqual(out.returncode, 1)
        self.assertEqual(len(out.stderr.strip().splitlines()), 3, out.stderr)
        self.stop_daemon(d)

    def test_restart_class_change_moves_the_listener(self):
        new_port = free_port()
        self.write_config(self.relay_section("web", self.relay_port))
        d = self.start_daemon()
        c = self.unix()
        self.echo_through(self.relay_port)
        events = self.unix()
        self.assertIn("seq", self.ok(events, "events.subscribe"))
        self.write_config(self.relay_section("web", new_port))
        mark = len(d.lines)
        d.signal(signal.SIGHUP)
        d.wait_for(r"daemon: SIGHUP: 0 started, 0 kept \(0 reloaded\), 0 changed in place, 1 restarted", start=mark)
        self.echo_through(new_port)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", self.relay_port), timeout=2)
        self.assertEqual(self.units(c)["web"]["listening"], ["TCP 127.0.0.1:%d" % new_port])
        # The subscriber saw the old unit drain and stop, the new one run, the reload's summary.
        seen = []
        while not seen or seen[-1]["method"] != "events.reload.done":
            n = events.recv()
            self.assertIsNotNone(n, "events ended: %s" % seen)
            seen.append(n)
        states = [n["params"]["state"] for n in seen if n["method"] == "events.unit.state"]
        self.assertEqual(states, ["draining", "stopped", "running"], seen)
        self.assertEqual(seen[-1]["params"]["restarted"], ["web"])
        self.assertEqual(seen[-1]["params"]["cause"], "SIGHUP")
        self.stop_daemon(d)

    def test_a_file_unit_that_cannot_start_at_boot_exits_1(self):
        busy = self.track(socket.socket())
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        self.write_config(self.relay_section("ok", self.relay_port) +
                          self.relay_section("busy", busy.getsockname()[1]))
        d = self.start_daemon(wait=False)
        self.assertEqual(d.wait_exit(), 1, d.stderr_text())
        d.wait_for(r"unit busy did not start: .*in use")
        d.wait_for(r"1 unit of the config did not start; stopping \(exit 1\)")
        self.assertIsNone(d.find(r"daemon: pid \d+ ready"))
        self.assertFalse(os.path.exists(self.sock_path), "the socket is removed on the way out")


if __name__ == "__main__":
    wt.main()
