"""Integration tests of `warren daemon` and `warren ctl` (issue 12, the
control plane) with the real binary and real sockets:

- the Unix socket alone; TCP alone; Unix, TCP and TLS at once, the same
  request answered identically over each; `warren ctl` over each;
- 16 concurrent clients, each with its own stream of requests;
- TCP/TLS: a first frame that is not `auth`, no token and a wrong token
  refused and closed; a read-only token refused `daemon.stop`; connections
  over a listener's budget closed at accept while the Unix socket (its own
  budget) still serves; no `auth` within the deadline: closed;
- oversize and truncated frames, invalid JSON, unknown method, bad params
  answered with their errors while another client keeps being served;
- the directory 0700 and socket 0600; another uid refused (by the socket's
  mode, and by SO_PEERCRED when the mode lets it connect), and a
  --control-group member read-only - root only;
- plain tcp:// on a non-loopback address, and --control-listen without a
  token file, refused at start; stale socket takeover; "already running";
- READY=1 and STOPPING=1 on a test NOTIFY_SOCKET; `ctl stop` and SIGTERM
  remove the socket and lock; a restarted daemon answers ctl again; ctl
  against a peer that is not a daemon (mismatch) or never answers (timeout);
- --config checked at start (errors: exit 1, each listed).

Loopback only. Every daemon gets its own --control path in a temporary
directory (never the default /run/warren one).

    python3 test_daemon.py --warren /path/to/warren [unittest args]
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warren_test as wt  # noqa: E402

LISTEN_RE = re.compile(r"daemon: control listening on (unix|tcp|tls) (.*)$")
NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]


def frame(obj):
    data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return struct.pack(">I", len(data)) + data


def request(method, id_=1, params=None):
    r = {"jsonrpc": "2.0", "method": method, "id": id_}
    if params is not None:
        r["params"] = params
    return r


class Conn:
    """One control connection (a socket, plain or TLS) speaking frames."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(wt.WAIT)

    def send(self, obj):
        self.sock.sendall(frame(obj))

    def recv(self):
        """The next reply as JSON; None at end of stream."""
        head = self._exactly(4)
        if head is None:
            return None
        (n,) = struct.unpack(">I", head)
        body = self._exactly(n)
        if body is None:
            raise AssertionError("end of stream inside a reply")
        return json.loads(body)

    def call(self, method, id_=1, params=None):
        self.send(request(method, id_, params))
        return self.recv()

    def at_eof(self):
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True

    def _exactly(self, n):
        data = b""
        while len(data) < n:
            try:
                chunk = self.sock.recv(n - len(data))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            data += chunk
        return data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Daemon(wt.Process):
    def ready(self):
        self.wait_for(r"daemon: pid \d+ ready")
        self.listeners = {}
        for line in self.lines:
            m = LISTEN_RE.search(line)
            if m:
                self.listeners[m.group(1)] = m.group(2)
        fp = self.find(r"control certificate fingerprint ")
        self.fingerprint = self.lines[fp].split()[-1] if fp is not None else None
        return self

    def port(self, kind):
        first = self.listeners[kind].split(", ")[0]
        return wt.parse_host_port(first)


class DaemonTest(wt.WarrenTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="warren-daemon-")
        os.chmod(self.tmp, 0o755)  # another uid must reach the socket's directory
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.sock_path = os.path.join(self.tmp, "run", "control.sock")
        self.token = self.write("admin.token", "admin-" + os.urandom(8).hex() + "\n")
        self.ro_token = self.write("ro.token", "ro-" + os.urandom(8).hex() + "\n")

    def write(self, name, text, mode=0o600):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def token_text(self, path):
        with open(path) as f:
            return f.read().strip()

    def start_daemon(self, *args, env=None, wait=True):
        argv = [wt.WARREN, "daemon", "--control", self.sock_path, "--state-dir", os.path.join(self.tmp, "state")]
        d = self.track(Daemon(argv + list(args), env=env))
        if wait:
            d.ready()
        return d

    def start_network_daemon(self, *extra):
        return self.start_daemon("--control-listen", "tcp://localhost:0", "--control-listen", "tls://127.0.0.1:0",
                                 "--control-token-file", self.token, "--control-readonly-token-file", self.ro_token,
                                 *extra)

    def unix(self, path=None):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path or self.sock_path)
        return self.track(Conn(s))

    def tcp(self, d, host="127.0.0.1"):
        _, port = d.port("tcp")
        return self.track(Conn(socket.create_connection((host, port), timeout=wt.WAIT)))

    def tls(self, d):
        host, port = d.port("tls")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection((host, port), timeout=wt.WAIT)
        s = ctx.wrap_socket(raw)
        der = s.getpeercert(binary_form=True)
        digest = hashlib.sha256(der).hexdigest().upper()
        self.assertEqual(d.fingerprint.replace(":", "").upper(), "SHA256" + digest,
                         "the certificate served is the one whose fingerprint the daemon logged")
        return self.track(Conn(s))

    def authed(self, conn, token_file=None):
        r = conn.call("auth", 1, {"token": self.token_text(token_file or self.token)})
        self.assertIn("result", r, r)
        return conn

    def ctl(self, *args, prefix=(), env=None):
        return subprocess.run(list(prefix) + [wt.WARREN, "ctl"] + list(args), capture_output=True, text=True,
                              timeout=30, env=env)

    def stop_daemon(self, d):
        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait_exit(), 0, d.stderr_text())
        self.assert_no_crash(d.lines)

    # ---- transports --------------------------------------------------------

    def test_unix_only(self):
        d = self.start_daemon()
        self.assertEqual(list(d.listeners), ["unix"])
        r = self.ctl("status", "--json", "--control", self.sock_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        status = json.loads(r.stdout)
        self.assertEqual(status["pid"], d.pid)
        self.assertEqual(status["units"]["total"], 0)
        self.assertEqual(status["control"], ["unix " + self.sock_path])
        self.assertIsNone(status["config"])
        self.assertRegex(status["version"], r"^\d+\.\d+\.\d+$")
        human = self.ctl("status", "--control", self.sock_path)
        self.assertEqual(human.returncode, 0, human.stderr)
        self.assertRegex(human.stdout, r"(?m)^pid      %d$" % d.pid)
        self.assertRegex(human.stdout, r"(?m)^units    0$")
        self.assertRegex(human.stdout, r"(?m)^uptime   \d+s$")
        # By hand, no auth needed on the Unix socket.
        c = self.unix()
        self.assertEqual(c.call("daemon.status", 7)["result"]["pid"], d.pid)
        self.assertEqual(c.call("auth", 8, {"token": "anything"})["result"], {"access": "admin"})
        self.stop_daemon(d)

    def test_tcp_only(self):
        d = self.start_daemon("--control-listen", "tcp://localhost:0", "--control-token-file", self.token)
        self.assertIn("tcp", d.listeners)
        self.assertNotIn("tls", d.listeners)
        addresses = [wt.parse_host_port(a)[0] for a in d.listeners["tcp"].split(", ")]
        self.assertIn("127.0.0.1", addresses)
        if socket.has_ipv6 and os.path.exists("/proc/net/if_inet6"):
            self.assertIn("::1", addresses, "localhost binds both loopback addresses")
        for host in addresses:
            c = self.authed(self.tcp(d, host))
            self.assertEqual(c.call("daemon.status", 2)["result"]["pid"], d.pid)
        port = d.port("tcp")[1]
        r = self.ctl("status", "--json", "--connect", "tcp://127.0.0.1:%d" % port, "--token-file", self.token)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["pid"], d.pid)
        self.stop_daemon(d)

    def test_same_answer_over_unix_tcp_and_tls(self):
        d = self.start_network_daemon()
        self.assertEqual(set(d.listeners), {"unix", "tcp", "tls"})
        replies = []
        for conn in (self.unix(), self.authed(self.tcp(d)), self.authed(self.tls(d))):
            r = conn.call("daemon.status", 42)
            r["result"].pop("uptime_seconds")
            replies.append(r)
        self.assertEqual(replies[0], replies[1])
        self.assertEqual(replies[0], replies[2])
        self.assertEqual(len(replies[0]["result"]["control"]), 3)
        # ctl over TLS: with the logged pin it works; without, it says why.
        host, port = d.port("tls")
        url = "tls://127.0.0.1:%d" % port
        r = self.ctl("status", "--json", "--connect", url, "--token-file", self.token, "--pin", d.fingerprint)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["pid"], d.pid)
        r = self.ctl("status", "--connect", url, "--token-file", self.token)
        self.assertEqual(r.returncode, 1)
        self.assertIn("--pin", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.stop_daemon(d)

    def test_sixteen_concurrent_clients(self):
        d = self.start_network_daemon()
        errors = []
        conns = [self.unix() if i % 2 == 0 else self.authed(self.tcp(d)) for i in range(16)]
        barrier = threading.Barrier(16)

        def client(i, conn):
            try:
                barrier.wait(wt.WAIT)
                for k in range(50):
                    id_ = i * 1000 + k
                    r = conn.call("daemon.status", id_)
                    if r.get("id") != id_ or r["result"]["pid"] != d.pid:
                        errors.append((i, k, r))
                        return
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append((i, repr(e)))

        threads = [threading.Thread(target=client, args=(i, c)) for i, c in enumerate(conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.stop_daemon(d)

    # ---- authentication ----------------------------------------------------

    def test_tcp_first_frame_must_be_auth(self):
        d = self.start_network_daemon()
        for conn in (self.tcp(d), self.tls(d)):
            r = conn.call("daemon.status", 1)
            self.assertEqual(r["error"]["code"], -32000, r)
            self.assertTrue(conn.at_eof(), "refused connections are closed")

    def test_no_token_and_wrong_token_refused(self):
        d = self.start_network_daemon()
        for conn in (self.tcp(d), self.tls(d)):
            r = conn.call("auth", 1, {})
            self.assertEqual(r["error"]["code"], -32602, r)
            self.assertTrue(conn.at_eof())
        c = self.tcp(d)
        r = c.call("auth", 1, {"token": "wrong"})
        self.assertEqual(r["error"]["code"], -32000, r)
        self.assertNotIn(self.token_text(self.token), json.dumps(r))
        self.assertTrue(c.at_eof())
        wrong = self.write("wrong.token", "wrong\n")
        port = d.port("tcp")[1]
        r = self.ctl("status", "--connect", "tcp://127.0.0.1:%d" % port, "--token-file", wrong)
        self.assertEqual(r.returncode, 1)
        self.assertIn("wrong token", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        # Failures are limited per source: after a few, the token is not checked.
        codes = []
        for _ in range(8):
            codes.append(self.tcp(d).call("auth", 1, {"token": "wrong"})["error"]["code"])
        self.assertIn(-32006, codes)
        r = self.authed_attempt(d)
        self.assertEqual(r["error"]["code"], -32006, "even the right token is refused while limited")

    def authed_attempt(self, d):
        return self.tcp(d).call("auth", 1, {"token": self.token_text(self.token)})

    def test_read_only_token(self):
        d = self.start_network_daemon()
        c = self.tcp(d)
        self.assertEqual(c.call("auth", 1, {"token": self.token_text(self.ro_token)})["result"],
                         {"access": "read-only"})
        self.assertEqual(c.call("daemon.status", 2)["result"]["pid"], d.pid)
        r = c.call("daemon.stop", 3)
        self.assertEqual(r["error"]["code"], -32001, r)
        self.assertIsNone(d.proc.poll(), "the daemon keeps running")
        port = d.port("tcp")[1]
        r = self.ctl("stop", "--connect", "tcp://127.0.0.1:%d" % port, "--token-file", self.ro_token)
        self.assertEqual(r.returncode, 1)
        self.assertIn("read-only", r.stderr)
        self.stop_daemon(d)

    def test_token_file_required_for_network_listeners(self):
        code, lines = wt.run_warren(["daemon", "--control", self.sock_path, "--control-listen",
                                     "tcp://localhost:0"])
        self.assertEqual(code, 1)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("--control-token-file", lines[0])
        self.assertFalse(os.path.exists(self.sock_path))

    def test_plain_tcp_off_loopback_refused(self):
        for url in ("tcp://0.0.0.0:0", "tcp://*:0", "tcp://[::]:0"):
            code, lines = wt.run_warren(["daemon", "--control", self.sock_path, "--control-listen", url,
                                         "--control-token-file", self.token])
            self.assertEqual(code, 1, url)
            self.assertEqual(len(lines), 1, lines)
            self.assertIn("loopback only", lines[0])
            self.assertIn("tls://", lines[0])

    def test_unix_budget_survives_tcp_strangers(self):
        d = self.start_network_daemon()
        # 32 unauthenticated TCP connections fill the TCP listener's budget.
        strangers = [self.tcp(d) for _ in range(32)]
        extra = self.tcp(d)
        self.assertTrue(extra.at_eof(), "a connection over the listener's budget is closed at accept")
        # The owner on the Unix socket is not locked out.
        self.assertEqual(self.unix().call("daemon.status")["result"]["pid"], d.pid)
        d.wait_for(r"has 32 connections open, its limit; refused one")
        # A stranger that never authenticates is told why (-32000) and closed
        # at the auth deadline (5 s).
        strangers[0].sock.settimeout(10)
        t = time.monotonic()
        told = strangers[0].recv()
        self.assertEqual(told["error"]["code"], -32000, told)
        self.assertIn("no auth request within 5s", told["error"]["message"])
        self.assertIsNone(told["id"])
        self.assertTrue(strangers[0].at_eof())
        self.assertLess(time.monotonic() - t, 9)
        self.stop_daemon(d)

    # ---- hostile frames ----------------------------------------------------

    def test_bad_frames_answered_while_others_are_served(self):
        d = self.start_network_daemon()
        bystander = self.authed(self.tcp(d))

        def still_served():
            r = bystander.call("daemon.status", 99)
            self.assertEqual(r["result"]["pid"], d.pid)

        c = self.unix()
        c.sock.sendall(frame(b"{not json"))
        self.assertEqual(c.recv()["error"]["code"], -32700)
        self.assertEqual(c.call("daemon.stats", 2)["error"]["code"], -32601)
        self.assertEqual(c.call("daemon.status", 3, {"verbose": True})["error"]["code"], -32602)
        self.assertEqual(c.call("daemon.status", 4)["result"]["pid"], d.pid, "the connection stays open")
        still_served()

        big = self.unix()
        big.sock.sendall(struct.pack(">I", (1 << 20) + 1) + b"{")
        r = big.recv()
        self.assertEqual(r["error"]["code"], -32005)
        self.assertEqual(r["error"]["data"], {"limit": 1 << 20})
        self.assertTrue(big.at_eof())
        still_served()

        # Over TCP, with more of the announced body on its way: the reply
        # still arrives (no reset from unread bytes), then the close.
        t = self.authed(self.tcp(d))
        t.sock.sendall(struct.pack(">I", 5 << 20) + b"x" * 200000)
        r = t.recv()
        self.assertEqual(r["error"]["code"], -32005)
        t.sock.shutdown(socket.SHUT_WR)
        self.assertTrue(t.at_eof())
        still_served()

        for cut in (struct.pack(">I", 100)[:2], struct.pack(">I", 100) + b'{"jsonrpc"'):
            t = self.tcp(d)
            self.authed(t)
            t.sock.sendall(cut)
            t.sock.shutdown(socket.SHUT_WR)
            self.assertTrue(t.at_eof(), "EOF inside a frame closes that connection")
            still_served()
        self.assertIsNone(d.proc.poll())
        self.stop_daemon(d)

    # ---- the socket, its modes and its owner -------------------------------

    def test_modes(self):
        d = self.start_daemon()
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(self.sock_path)).st_mode), 0o700)
        st = os.stat(self.sock_path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.stop_daemon(d)

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_other_uid_refused(self):
        d = self.start_daemon()
        r = self.ctl("status", "--control", self.sock_path, prefix=NOBODY)
        self.assertEqual(r.returncode, 1)
        self.assertIn("permission denied", r.stderr)
        self.assertIn("owned by root", r.stderr)
        # Open the modes: SO_PEERCRED still refuses the stranger.
        os.chmod(os.path.dirname(self.sock_path), 0o755)
        os.chmod(self.sock_path, 0o666)
        r = self.ctl("status", "--control", self.sock_path, prefix=NOBODY)
        self.assertEqual(r.returncode, 1)
        self.assertIn("closed the connection without answering", r.stderr)
        d.wait_for(r"refused a connection from uid 65534")
        r = self.ctl("status", "--control", self.sock_path)
        self.assertEqual(r.returncode, 0, "root still gets in")
        self.stop_daemon(d)

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_control_group_is_read_only(self):
        d = self.start_daemon("--control-group", "65534")
        st = os.stat(self.sock_path)
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_gid), (0o660, 65534))
        dst = os.stat(os.path.dirname(self.sock_path))
        self.assertEqual((stat.S_IMODE(dst.st_mode), dst.st_gid), (0o750, 65534))
        r = self.ctl("status", "--json", "--control", self.sock_path, prefix=NOBODY)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["pid"], d.pid)
        r = self.ctl("stop", "--control", self.sock_path, prefix=NOBODY)
        self.assertEqual(r.returncode, 1)
        self.assertIn("read-only", r.stderr)
        self.assertIsNone(d.proc.poll())
        self.stop_daemon(d)

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_no_runtime_dir_for_a_user(self):
        env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
        r = subprocess.run(NOBODY + [wt.WARREN, "daemon"], capture_output=True, text=True, timeout=30, env=env)
        self.assertEqual(r.returncode, 1)
        self.assertIn("XDG_RUNTIME_DIR", r.stderr)
        self.assertIn("--control", r.stderr)

    def test_stale_socket_replaced_and_already_running(self):
        os.makedirs(os.path.dirname(self.sock_path), mode=0o700)
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(self.sock_path)
        stale.close()  # the file stays; nothing accepts on it
        self.assertTrue(os.path.exists(self.sock_path))
        d = self.start_daemon()
        self.assertEqual(self.unix().call("daemon.status")["result"]["pid"], d.pid)
        code, lines = wt.run_warren(["daemon", "--control", self.sock_path])
        self.assertEqual(code, 1)
        self.assertEqual(lines, ["warren: error: warren daemon is already running (pid %d, %s)"
                                 % (d.pid, self.sock_path)])
        self.assertEqual(self.unix().call("daemon.status")["result"]["pid"], d.pid, "the first one is untouched")
        self.stop_daemon(d)

    # ---- lifecycle ---------------------------------------------------------

    def test_sd_notify_and_ctl_stop(self):
        notify_path = os.path.join(self.tmp, "notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(wt.WAIT)
        self.addCleanup(notify.close)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        d = self.start_daemon(env=env, wait=False)
        self.assertEqual(notify.recv(4096), b"READY=1")
        # READY=1 comes once listening: the socket answers now.
        self.assertEqual(self.unix().call("daemon.status")["result"]["pid"], d.pid)
        r = self.ctl("stop", "--control", self.sock_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("warren daemon (pid %d) stopped" % d.pid, r.stdout)  # returned after the exit
        self.assertEqual(notify.recv(4096), b"STOPPING=1")
        self.assertEqual(d.wait_exit(), 0, d.stderr_text())
        self.assert_no_crash(d.lines)
        self.assertFalse(os.path.exists(self.sock_path), "the socket is removed on exit")
        self.assertFalse(os.path.exists(self.sock_path + ".lock"), "the lock file is removed on exit")

    def test_restart(self):
        d = self.start_daemon()
        self.assertEqual(self.ctl("status", "--control", self.sock_path).returncode, 0)
        self.stop_daemon(d)
        self.assertFalse(os.path.exists(self.sock_path))
        r = self.ctl("status", "--control", self.sock_path)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.strip(), "warren: error: warren daemon is not running (no control socket answers "
                                           "at %s)" % self.sock_path)
        d2 = self.start_daemon()
        r = self.ctl("status", "--json", "--control", self.sock_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["pid"], d2.pid)
        self.stop_daemon(d2)

    def test_protocol_mismatch(self):
        # Something that is not a warren daemon listens on the path.
        os.makedirs(os.path.dirname(self.sock_path), mode=0o700)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(self.sock_path)
        srv.listen(1)
        self.addCleanup(srv.close)

        def answer():
            conn, _ = srv.accept()
            conn.recv(4096)
            conn.sendall(frame(b'{"hello": "world"}'))
            conn.close()

        t = threading.Thread(target=answer)
        t.start()
        r = self.ctl("status", "--control", self.sock_path)
        t.join(wt.WAIT)
        self.assertEqual(r.returncode, 1)
        self.assertIn("protocol mismatch", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_ctl_timeout(self):
        # Something accepts on the path but never answers: ctl gives up, in one line.
        os.makedirs(os.path.dirname(self.sock_path), mode=0o700)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(self.sock_path)
        srv.listen(1)
        self.addCleanup(srv.close)
        t = time.monotonic()
        r = self.ctl("status", "--control", self.sock_path, "--timeout", "300ms")
        self.assertLess(time.monotonic() - t, 5)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.strip(), "warren: error: no answer from %s within 300ms" % self.sock_path)

    def test_config_checked_at_start(self):
        bad = self.write("bad.toml", "[[client]]\nname = \"a\"\nbogus = 1\n", 0o644)
        code, lines = wt.run_warren(["daemon", "--control", self.sock_path, "--config", bad])
        self.assertEqual(code, 1)
        self.assertTrue(any(re.search(r"bad\.toml:3:\d+: .*bogus", l) for l in lines), lines)
        self.assertFalse(os.path.exists(self.sock_path))
        good = self.write("good.toml", "[[relay]]\nname = \"r\"\nlisten = \"127.0.0.1:0\"\n"
                          "target = \"127.0.0.1:9\"\nno_target_check = true\n", 0o644)
        d = self.start_daemon("--config", good)
        d.wait_for(r"daemon: pid \d+ ready \(1 units on 1 loop\)")
        self.assertEqual(self.unix().call("daemon.status")["result"]["config"], good)
        self.stop_daemon(d)

    # ---- review findings (an attacker and a careless user) -----------------

    def test_socket_directory_is_never_changed(self):
        """An existing directory is checked, never chmod-ed: not a shared
        one (1777), not through a symlink, not relative; a PATH.lock that is
        not a warren lock is refused and left as it was (on the first
        version: /tmp-like directories became 0700, Gemfile.lock deleted)."""
        shared = os.path.join(self.tmp, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o1777)
        code, lines = wt.run_warren(["daemon", "--control", os.path.join(shared, "c.sock")])
        self.assertEqual(code, 1, lines)
        self.assertIn("may be written by others", lines[-1])
        self.assertEqual(stat.S_IMODE(os.stat(shared).st_mode), 0o1777, "the directory's mode is untouched")
        real = os.path.join(self.tmp, "real")
        os.mkdir(real, 0o700)
        link = os.path.join(self.tmp, "link")
        os.symlink(real, link)
        code, lines = wt.run_warren(["daemon", "--control", os.path.join(link, "c.sock")])
        self.assertEqual(code, 1, lines)
        self.assertIn("symbolic link", lines[-1])
        code, lines = wt.run_warren(["daemon", "--control", "relative.sock"])
        self.assertEqual(code, 1, lines)
        self.assertIn("relative", lines[-1])
        code, lines = wt.run_warren(["daemon", "--control", ""])
        self.assertEqual(code, 1, lines)
        self.assertIn("--control is empty", lines[-1])
        mine = os.path.join(self.tmp, "mine")
        os.mkdir(mine, 0o700)
        with open(os.path.join(mine, "Gemfile.lock"), "w") as f:
            f.write("GEM\n  specs:\n")
        code, lines = wt.run_warren(["daemon", "--control", os.path.join(mine, "Gemfile")])
        self.assertEqual(code, 1, lines)
        self.assertIn("is not a warren lock file", lines[-1])
        with open(os.path.join(mine, "Gemfile.lock")) as f:
            self.assertEqual(f.read(), "GEM\n  specs:\n", "a file that is not ours stays as it was")

    def test_sighup_keeps_the_daemon(self):
        """SIGHUP re-checks the config; it never ends the daemon (on the first
        version it died without removing its socket and lock)."""
        d = self.start_daemon()
        mark = len(d.lines)
        d.signal(signal.SIGHUP)
        d.wait_for(r"daemon: SIGHUP received", start=mark)
        self.assertEqual(self.unix().call("daemon.status")["result"]["pid"], d.pid)
        self.stop_daemon(d)
        self.assertFalse(os.path.exists(self.sock_path))

    def test_strangers_get_small_frames_and_one_budget_on_loopback(self):
        """Before auth a frame is at most 8 KiB; every loopback address is
        one source for the failure limit (127.x.y.z each had its own)."""
        d = self.start_network_daemon()
        big = self.tcp(d)
        big.sock.sendall(struct.pack(">I", 9000) + b"{" * 100)
        r = big.recv()
        self.assertEqual(r["error"]["code"], -32005, r)
        port = d.port("tcp")[1]
        codes = []
        for i in range(12):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.%d.%d" % (i // 200, 2 + i % 200), 0))
            s.connect(("127.0.0.1", port))
            codes.append(self.track(Conn(s)).call("auth", 1, {"token": "wrong"})["error"]["code"])
        self.assertIn(-32006, codes, "guesses from many loopback addresses share one budget")

    def test_token_with_trailing_blanks_is_read_alike(self):
        """The daemon and ctl read a token file alike (trailing blanks are
        not the token)."""
        spaced = self.write("spaced.token", "spaced-" + os.urandom(6).hex() + "  \t\n")
        d = self.start_daemon("--control-listen", "tcp://localhost:0", "--control-token-file", spaced)
        port = d.port("tcp")[1]
        r = self.ctl("status", "--connect", "tcp://127.0.0.1:%d" % port, "--token-file", spaced)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.stop_daemon(d)

if __name__ == "__main__":
    wt.main()
