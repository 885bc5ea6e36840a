"""The soak's world: the peers it runs in its own threads (a TCP data server
and a UDP echo) and the real warren processes around them.

    client A --wss--> warren relay --tcp--> warren server --> data / UDP echo
    client B (low RLIMIT_NOFILE) --wss--------^
    client D (started while the server is down; one per cold-start fault)
    relay B (low RLIMIT_NOFILE) --tcp--> data

Roles, not processes: a fault may SIGKILL the server or the relay and start
another process in the same role (same port, same --state-dir so the pin
stays valid). Every process the rig starts is recorded in `all_procs` and
killed in `close()`, pass or fail; its stderr lines are kept with the time
they arrived, for the crash scan and the log-flood check (checks.py).

Network safety: every socket here is on 127.0.0.1 or ::1, and every warren
server allows only the loopback ports this file opens.
"""

import collections
import hashlib
import os
import re
import resource
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import warren_test as wt  # noqa: E402

import checks  # noqa: E402

SERVER_LISTENING_RE = wt.SERVER_LISTENING_RE
FINGERPRINT_RE = re.compile(r"server: certificate fingerprint (sha256:[0-9A-Fa-f:]+)")
FORWARD_RE = re.compile(r"forward: (?:(TCP|UDP) (.+) -> (\S+)|SOCKS5 on (.+))$")
CONNECTED_RE = r"tunnel: connected to \S+ at \S+ \(IPv[46]\) in \d+ ms"

# Bytes every transfer is cut from (seeded, so a seed replays the same data).
BLOB_SIZE = 8 << 20
# How long a -L / SOCKS connection waits for a missing tunnel (client A).
WAIT_TUNNEL = 2.0
# Lines of a process's stderr kept (a flooding one is cut off there).
MAX_LINES_KEPT = 50000
# Descriptor limit (soft = hard) of client B, the one that runs short.
LOW_NOFILE = 64


class SoakFailure(AssertionError):
    """A broken promise: the soak fails with this message."""


def free_port():
    """A TCP port free on 127.0.0.1 and ::1 right now (for roles that must
    come back on the same port after a restart)."""
    s4, s6, port = wt.free_port_pair()
    s4.close()
    s6.close()
    return port


# --------------------------------------------------------------------------
# Peers in the soak's own threads


class DataServer(wt.TCPServer):
    """One command byte, then: b"E" echoes until EOF and closes; b"G" +
    offset (8) + size (8) sends blob[offset:offset+size] and closes; b"R"
    likewise, but ends with a reset. So a
    transfer's expected SHA-256 is known without generating data twice."""

    def __init__(self, blob, host="127.0.0.1"):
        self.blob = blob
        super().__init__(self._serve, host=host)

    def _serve(self, conn):
        conn.settimeout(180)
        cmd = conn.recv(1)
        if cmd == b"E":
            while True:
                data = conn.recv(1 << 16)
                if not data:
                    break
                conn.sendall(data)
        elif cmd in (b"G", b"R"):
            head = wt.recv_exactly(conn, 16, 180)
            off, size = struct.unpack(">QQ", head)
            view = memoryview(self.blob)[off:off + size]
            for i in range(0, len(view), 1 << 16):
                conn.sendall(view[i:i + (1 << 16)])
            if cmd == b"R":  # then a reset instead of a FIN
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
        try:
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(10)
            while conn.recv(1 << 16):
                pass
        except OSError:
            pass

    def _run(self, conn):  # quiet: peers resetting mid-transfer is the point
        try:
            self.handler(conn)
        except (OSError, ValueError, ConnectionError, TimeoutError):
            pass
        finally:
            conn.close()


def sha(data):
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------
# warren processes


class WarrenProc:
    """One warren process. stderr lines are kept as (monotonic time, line).
    `expect_exit` is set before the soak stops it on purpose; a process that
    ends while it is unset has crashed (or quit) on its own."""

    def __init__(self, role, argv, env, nofile=None):
        self.role = role
        self.argv = argv
        self.expect_exit = False
        self.started = time.monotonic()

        def limit():
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env, preexec_fn=limit,
                                     start_new_session=True)
        self.pid = self.proc.pid
        self.lines = []  # (monotonic, text), the first MAX_LINES_KEPT
        self.line_count = 0
        self.dropped = 0
        self.flood = None  # the first normalized line over checks.FLOOD_LINES per window
        self._cond = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        recent = collections.defaultdict(lambda: collections.deque(maxlen=checks.FLOOD_LINES + 1))
        try:
            for raw in iter(self.proc.stderr.readline, b""):
                now = time.monotonic()
                line = raw.decode("utf-8", "replace").rstrip("\n")
                # The log-flood check runs as lines arrive, so a flood fails
                # the soak at once and its lines need not all be kept.
                # Log lines only (a sanitizer's report is not logging).
                key = checks.normalize(line) if checks.is_log_line(line) else None
                times = recent[key]
                times.append(now)
                with self._cond:
                    self.line_count += 1
                    if (self.flood is None and key is not None and len(times) == times.maxlen
                            and now - times[0] < checks.FLOOD_WINDOW):
                        self.flood = key
                    if len(self.lines) < MAX_LINES_KEPT:
                        self.lines.append((now, line))
                    else:
                        self.dropped += 1
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def mark(self):
        with self._cond:
            return len(self.lines)

    def text(self, start=0):
        with self._cond:
            return "\n".join(l for _, l in self.lines[start:])

    def wait_for(self, pattern, timeout, start=0):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i][1])
                    if m:
                        return m
                    i += 1
                if self._eof:
                    raise SoakFailure("%s (pid %d) ended (%s) before logging /%s/; stderr tail:\n%s"
                                      % (self.role, self.pid, self.status(), pattern, self._tail()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SoakFailure("%s (pid %d) logged no /%s/ within %.0f s; stderr tail:\n%s"
                                      % (self.role, self.pid, pattern, timeout, self._tail()))
                self._cond.wait(min(left, 0.5))

    def _tail(self, n=40):
        return self.report(n)

    def report(self, n=20):
        """The sanitizer report if there is one (its first n lines and its
        SUMMARY), else the last n lines of stderr."""
        with self._cond:
            lines = [l for _, l in self.lines]
        for i, l in enumerate(lines):
            if any(m in l for m in checks.REPORT_STARTS):
                summary = [x for x in lines[i:] if x.startswith("SUMMARY:")]
                return "\n".join(lines[max(0, i - 5):i + n] + ["    ..."] + summary[:1])
        return "\n".join(lines[-n:])

    def status(self):
        try:
            code = self.proc.wait(2)
        except subprocess.TimeoutExpired:
            return "still running"
        self._reader.join(10)  # all of its report, not what had arrived so far
        return "killed by %s" % signal.Signals(-code).name if code < 0 else "exit status %d" % code

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        """SIGKILL on purpose (a fault, or cleanup); reaps it."""
        self.expect_exit = True
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        self._reader.join(5)

    def terminate(self, timeout):
        """SIGTERM; returns the exit status (None if it did not exit in time)."""
        self.expect_exit = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(5)
        return code

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def fds(self):
        out = []
        for fd in os.listdir("/proc/%d/fd" % self.pid):
            try:
                out.append("%s -> %s" % (fd, os.readlink("/proc/%d/fd/%s" % (self.pid, fd))))
            except OSError:
                pass
        return sorted(out)

    def rss_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


class Rig:
    """Starts and restarts the roles; `procs[role]` is the current process
    of each long-lived role, `all_procs` every process ever started."""

    def __init__(self, warren, workdir, seed, in_netns, plain_warren=None):
        self.warren = warren
        self.seed = seed
        self.daemon = None  # daemon.DaemonRig once the daemon runs
        # The binary of the roles started short of descriptors. Not a
        # sanitizer build: UBSan's vptr check tests the object's memory with
        # pipe(2) first (sanitizer_common's IsAccessibleMemoryRange); with no
        # descriptor left that fails, and it reports "invalid vptr" for a
        # valid object and ends the process. None: those roles are left out.
        self.low_nofile_warren = plain_warren or (None if wt.built_with_asan(warren) else warren)
        self.workdir = workdir
        self.in_netns = in_netns
        self.all_procs = []
        self.procs = {}
        self.lock = threading.Lock()
        import random
        self.blob = random.Random(seed).randbytes(BLOB_SIZE)
        self.token = "tok-" + secrets.token_hex(24)
        self.token_file = os.path.join(workdir, "token")
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token + "\n")
        self.state_dir = os.path.join(workdir, "state")
        self.env = self._env()
        self.data = DataServer(self.blob)
        self.udp = wt.UDPEchoServer()
        # A port that refuses (allowed by the policy) and one the policy denies.
        self._closed_sock, self.closed_port = wt.closed_tcp_port()
        self._denied_sock, self.denied_port = wt.closed_tcp_port()
        self.server_port = free_port()
        self.relay_port = free_port()
        self.pin = None
        self.forwards = {}  # role -> {"tcp": port, "udp": port, "socks": port}

    def _env(self):
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy") and k != "WARREN_TOKEN"}
        env["LC_ALL"] = "C"
        if wt.built_with_asan(self.warren):
            # Quarantine off, or freed memory counts in VmRSS (checks.py).
            opts = env.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
            env["ASAN_OPTIONS"] = opts + ":quarantine_size_mb=0"
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        return env

    def spawn(self, role, args, nofile=None):
        binary = self.warren
        if nofile:
            binary = self.low_nofile_warren
            if not binary:
                raise SoakFailure("no binary for %s (see low_nofile_warren)" % role)
        p = WarrenProc(role, [binary] + list(args), self.env, nofile)
        with self.lock:
            self.all_procs.append(p)
        return p

    # -- roles ---------------------------------------------------------------

    def start_server(self):
        args = ["server", "--listen", "wss://127.0.0.1:%d" % self.server_port, "--token-file", self.token_file,
                "--state-dir", self.state_dir, "--log-level", "info", "--udp-idle-timeout", "5s",
                "--drain-timeout", "5s", "--ping-interval", "5s",
                "--allow", "127.0.0.1:%d" % self.data.port, "--allow", "127.0.0.1:%d" % self.udp.port,
                "--allow", "127.0.0.1:%d" % self.closed_port]
        p = self.spawn_listening("server", args, SERVER_LISTENING_RE.pattern)
        pin = FINGERPRINT_RE.search(p.text())
        if not pin:
            raise SoakFailure("no fingerprint line from the server:\n" + p.text())
        if self.pin and pin.group(1) != self.pin:
            raise SoakFailure("the restarted server has another certificate: %s, was %s" % (pin.group(1), self.pin))
        self.pin = pin.group(1)
        self.procs["server"] = p
        return p

    def start_relay(self):
        args = ["relay", "127.0.0.1:%d" % self.relay_port, "127.0.0.1:%d" % self.server_port,
                "--no-target-check", "--log-level", "info"]
        p = self.spawn_listening("relay", args, r"relay: listening on ")
        self.procs["relay"] = p
        return p

    def spawn_listening(self, role, args, listening):
        """Starts `role` and waits for its `listening` line, starting it
        again while its fixed port is still in use (a port lingers for a
        moment after a SIGKILL)."""
        for attempt in range(20):
            p = self.spawn(role, args)
            try:
                p.wait_for(listening, 60)
                return p
            except SoakFailure:
                p.kill()
                if "in use" in p.text() and attempt < 19:
                    time.sleep(0.5)
                    continue
                raise
        raise AssertionError("unreachable")

    def start_relay_b(self):
        """A plain relay to the data server, short of descriptors like client B."""
        p = self.spawn("relay_b", ["relay", "127.0.0.1:0", "127.0.0.1:%d" % self.data.port, "--log-level", "info"],
                       nofile=LOW_NOFILE)
        m = wt.LISTENING_RE.search(p.wait_for(r"relay: listening on ", 60).string)
        self.forwards["relay_b"] = {"tcp": wt.parse_host_port(m.group(2).split(", ")[0])[1]}
        self.procs["relay_b"] = p
        return p

    def client_args(self, port, forwards, wait_tunnel):
        args = ["client", "wss://127.0.0.1:%d" % port, "--pin", self.pin, "--token-file", self.token_file,
                "--log-level", "info", "--wait-tunnel", "%gs" % wait_tunnel, "--ping-interval", "5s",
                "--udp-idle-timeout", "5s"]
        for f in forwards:
            args += ["-D", f[1]] if f[0] == "socks" else ["-L", f[1]]
        return args

    def start_client(self, role, via_relay=True, socks=True, udp=True, wait_tunnel=WAIT_TUNNEL, nofile=None,
                     wait_connected=True):
        forwards = [("tcp", "0:127.0.0.1:%d" % self.data.port)]
        if udp:
            forwards.append(("udp", "udp/127.0.0.1:0:127.0.0.1:%d" % self.udp.port))
        if socks:  # client A: also -L to a port that refuses
            forwards.append(("refused", "0:127.0.0.1:%d" % self.closed_port))
            forwards.append(("socks", "127.0.0.1:0"))
        port = self.relay_port if via_relay else self.server_port
        p = self.spawn(role, self.client_args(port, forwards, wait_tunnel), nofile)
        deadline = time.monotonic() + 60
        while True:
            found = [FORWARD_RE.search(l) for _, l in list(p.lines)]
            found = [m for m in found if m]
            if len(found) >= len(forwards):
                break
            if not p.alive() or time.monotonic() > deadline:
                raise SoakFailure("%s did not report its %d forwards (status %s):\n%s"
                                  % (role, len(forwards), p.proc.poll(), p.text()))
            time.sleep(0.05)
        ports = {}
        for (kind, _), m in zip(forwards, found):
            where = m.group(2) or m.group(4)
            eps = [wt.parse_host_port(e) for e in where.split(", ")]
            ports[kind] = [port for host, port in eps if host == "127.0.0.1"][0]
        self.forwards[role] = ports
        if wait_connected:
            p.wait_for(CONNECTED_RE, 60)
        if role in ("client_a", "client_b"):
            self.procs[role] = p
        return p

    def start_all(self):
        self.start_server()
        self.start_relay()
        self.start_client("client_a", via_relay=True)
        if self.low_nofile_warren:
            self.start_client("client_b", via_relay=False, socks=False, udp=False, nofile=LOW_NOFILE)
            self.start_relay_b()

    def close(self):
        """Kills every process ever started (by its own pid) and the peers."""
        with self.lock:
            procs = list(self.all_procs)
        for p in procs:
            if p.alive():
                p.kill()
            p._reader.join(10)
        for peer in (self.data, self.udp):
            try:
                peer.close()
            except Exception:
                pass
        for s in (self._closed_sock, self._denied_sock):
            s.close()
