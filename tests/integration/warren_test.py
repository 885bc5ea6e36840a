"""Shared helpers for warren's integration tests (Python 3 stdlib only).

The test files run real `warren` processes and talk to them over real
sockets. Everything here is bounded: every wait has a timeout, and every
process started through `WarrenTestCase.start_warren` (or registered with
`WarrenTestCase.track`) is killed in cleanup, pass or fail.

Network safety: helpers only ever bind or connect loopback addresses
(127.0.0.1, ::1), or addresses inside network namespaces that the tests
themselves create.

Usage from a test file:

    import warren_test
    class T(warren_test.WarrenTestCase): ...
    if __name__ == "__main__":
        warren_test.main()           # parses --warren PATH, runs unittest
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time
import unittest

SKIP_EXIT_CODE = 77

# Path of the warren binary, set by main() from --warren (or $WARREN).
WARREN = os.environ.get("WARREN", "")

# Default bound on any single wait (seconds).
WAIT = 10.0

LISTENING_RE = re.compile(r"relay: listening on (TCP|UDP) (.*), forwarding to (\S+)")
LISTENING_UNIX_RE = re.compile(r"relay: listening on unix (\S+), forwarding to (\S+)")

def built_with_asan(path=None):
    """True when the warren binary at `path` (default WARREN) links
    AddressSanitizer's runtime: its heap then keeps freed blocks in a
    quarantine (up to quarantine_size_mb) and its VmRSS says little about
    what warren itself holds."""
    try:
        with open(path or WARREN, "rb") as f:
            return b"libasan.so" in f.read()
    except OSError:
        return False


def without_asan_quarantine():
    """A command prefix that runs warren with ASan's quarantine off, for
    tests that measure its memory; empty for a build without ASan."""
    if not built_with_asan():
        return []
    options = os.environ.get("ASAN_OPTIONS", "")
    return ["env", "ASAN_OPTIONS=%s%squarantine_size_mb=0" % (options, ":" if options else "")]


# Text that must never appear on warren's stderr: crashes and sanitizer reports.
CRASH_MARKERS = (
    "terminate called",
    "Aborted",
    "Segmentation fault",
    "AddressSanitizer",
    "LeakSanitizer",
    "UndefinedBehaviorSanitizer",
    "ThreadSanitizer",
    "runtime error:",
    "core dumped",
    "Assertion `",
)


# --------------------------------------------------------------------------
# Addresses


def parse_host_port(text):
    """'127.0.0.1:80' -> ('127.0.0.1', 80); '[::1]:80' -> ('::1', 80)."""
    text = text.strip()
    if text.startswith("["):
        close = text.index("]")
        return text[1:close], int(text[close + 2:])
    host, _, port = text.rpartition(":")
    return host, int(port)


# `warren server`'s line: one URL per bound address, each with its path.
SERVER_LISTENING_RE = re.compile(r"server: listening on (\w+://\S+(?:, \w+://\S+)*)$")
SERVER_URL_RE = re.compile(r"(\w+)://(\[[^\]]+\]:\d+|[^/:\[\]]+:\d+)(/\S*)?$")


def server_urls(text):
    """'wss://0.0.0.0:8443/t/, wss://[::]:8443/t/' (SERVER_LISTENING_RE's
    group 1) -> [('wss', '0.0.0.0', 8443, '/t/'), ('wss', '::', 8443, '/t/')]."""
    out = []
    for u in text.split(", "):
        m = SERVER_URL_RE.match(u)
        if not m:
            raise AssertionError("not a URL in the listening line: %r" % u)
        host, port = parse_host_port(m.group(2))
        out.append((m.group(1), host, port, m.group(3) or ""))
    return out


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port_pair():
    """Returns (v4_socket, v6_socket, port): one TCP port P bound (not
    listening) on both 127.0.0.1 and ::1 (V6ONLY). A bound, non-listening
    socket reserves the port and makes connects to it fail with "connection
    refused" — a deterministic closed port."""
    for _ in range(50):
        s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s4.bind(("127.0.0.1", 0))
        port = s4.getsockname()[1]
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            s6.bind(("::1", port))
        except OSError:
            s4.close()
            s6.close()
            continue
        return s4, s6, port
    raise RuntimeError("could not find a TCP port free on both 127.0.0.1 and ::1")


def closed_tcp_port():
    """(socket, port): a TCP port on 127.0.0.1 that refuses connections, kept
    reserved by a bound, non-listening socket (close it to release)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def holding_listener():
    """(socket, port): a TCP listener on 127.0.0.1 with a deep backlog that
    accepts nothing: connects to it complete and are then held (close the
    socket to release them)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1024)
    return s, s.getsockname()[1]


def connect(host, port, timeout=WAIT, rcvbuf=None):
    """A connected TCP socket; `rcvbuf` sets SO_RCVBUF before connecting
    (so the window it advertises is small from the start)."""
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def recv_exactly(sock, n, timeout=WAIT):
    deadline = time.monotonic() + timeout
    chunks = []
    got = 0
    while got < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("received %d of %d bytes" % (got, n))
        sock.settimeout(left)
        chunk = sock.recv(min(1 << 16, n - got))
        if not chunk:
            raise ConnectionError("EOF after %d of %d bytes" % (got, n))
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_until_eof(sock, timeout=WAIT, limit=64 << 20):
    deadline = time.monotonic() + timeout
    chunks = []
    got = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no EOF after %d bytes" % got)
        sock.settimeout(left)
        chunk = sock.recv(1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        got += len(chunk)
        if got > limit:
            raise AssertionError("more than %d bytes received" % limit)


# --------------------------------------------------------------------------
# Servers running in threads of the test process


class TCPServer:
    """A threaded TCP server on a loopback address; `handler(conn)` runs in
    its own thread for every accepted connection. Pass `sock` to serve on an
    already bound socket (listen() is called here)."""

    def __init__(self, handler, host="127.0.0.1", port=0, sock=None, backlog=1024):
        if sock is None:
            sock = socket.socket(family_of(host), socket.SOCK_STREAM)
            if family_of(host) == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        sock.listen(backlog)
        self.sock = sock
        self.host = sock.getsockname()[0]
        self.port = sock.getsockname()[1]
        self.handler = handler
        self.accepted = 0
        self.errors = []
        self._conns = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self.accepted += 1
                self._conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            conn.settimeout(WAIT * 3)
            self.handler(conn)
        except OSError as e:
            if not self._closed:
                self.errors.append(repr(e))
        finally:
            conn.close()

    def close(self):
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, []
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self.sock.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(WAIT)


def echo_handler(conn):
    """Echoes until EOF, then closes."""
    while True:
        data = conn.recv(1 << 16)
        if not data:
            return
        conn.sendall(data)


class EchoServer(TCPServer):
    """TCP echo server. `served` counts connections that carried data (a
    connection-only probe such as warren's start-up check is not counted);
    it is incremented before the first byte is echoed, so a client that got
    its echo back is already counted."""

    def __init__(self, host="127.0.0.1", port=0, sock=None):
        self.served = 0
        self._served_lock = threading.Lock()
        super().__init__(self._echo, host=host, port=port, sock=sock)

    def _echo(self, conn):
        first = True
        while True:
            data = conn.recv(1 << 16)
            if not data:
                return
            if first:
                first = False
                with self._served_lock:
                    self.served += 1
            conn.sendall(data)


class UDPEchoServer:
    def __init__(self, host="127.0.0.1"):
        self.sock = socket.socket(family_of(host), socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.peers = []
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(65536)
                if peer is None:
                    return  # shut down
                self.peers.append(peer)
                self.sock.sendto(data, peer)
            except OSError:
                return

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(WAIT)


# --------------------------------------------------------------------------
# warren processes


class Process:
    """A child process whose stderr is collected line by line in a thread so
    tests can wait for a log line (bounded) instead of sleeping."""

    def __init__(self, argv, env=None):
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # a stray Ctrl-C on the terminal does not reach it
        )
        self.pid = self.proc.pid
        self._lines = []
        self._out = []
        self._cond = threading.Condition()
        self._eof = {"stderr": False, "stdout": False}
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stderr, self._lines, "stderr"), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, self._out, "stdout"), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream, sink, name):
        try:
            for raw in iter(stream.readline, b""):
                with self._cond:
                    sink.append(raw.decode("utf-8", "replace").rstrip("\n"))
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass  # closed by kill()
        with self._cond:
            self._eof[name] = True
            self._cond.notify_all()

    @property
    def lines(self):
        with self._cond:
            return list(self._lines)

    @property
    def stdout_lines(self):
        with self._cond:
            return list(self._out)

    def stderr_text(self):
        return "\n".join(self.lines)

    def wait_for(self, pattern, timeout=WAIT, start=0, stream="stderr"):
        """Waits until a line (index >= start) matches `pattern` (regex);
        returns the match. Fails (AssertionError) on timeout or if the
        process exits first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        sink = self._lines if stream == "stderr" else self._out
        i = start
        with self._cond:
            while True:
                while i < len(sink):
                    m = rx.search(sink[i])
                    if m:
                        return m
                    i += 1
                if self._eof[stream]:
                    raise AssertionError(
                        "process %s exited (code %s) before logging /%s/; stderr:\n%s"
                        % (self.argv, self.proc.poll(), pattern, "\n".join(self._lines)))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "no line matching /%s/ within %.1fs from %s; stderr:\n%s"
                        % (pattern, timeout, self.argv, "\n".join(self._lines)))
                self._cond.wait(min(left, 0.5))

    def find(self, pattern):
        """Index of the first stderr line matching `pattern`, or None."""
        rx = re.compile(pattern)
        for i, line in enumerate(self.lines):
            if rx.search(line):
                return i
        return None

    def wait_exit(self, timeout=WAIT):
        """Waits for exit and for all output; returns the exit code. Fails on
        timeout (the process is then killed by cleanup)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s did not exit within %.1fs; stderr:\n%s"
                                 % (self.argv, timeout, self.stderr_text()))
        for t in self._readers:
            t.join(WAIT)
        return code

    def signal(self, signo):
        if self.proc.poll() is None:
            self.proc.send_signal(signo)

    def kill(self):
        """Kills the process (by its own pid) and reaps it; idempotent."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            pass
        for t in self._readers:
            t.join(1)
        for stream in (self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass


class Relay(Process):
    """A `warren relay` process; `listening()` waits for the "listening on"
    line and parses the addresses from it."""

    def listening(self, timeout=WAIT):
        m = self.wait_for(r"relay: listening on ", timeout)
        line = m.string
        lm = LISTENING_RE.search(line)
        if lm:
            self.proto = lm.group(1)
            self.endpoints = [parse_host_port(p) for p in lm.group(2).split(", ")]
            self.port = self.endpoints[0][1]
            for _, p in self.endpoints:
                if p != self.port:
                    raise AssertionError("listening line has different ports: " + line)
        else:
            um = LISTENING_UNIX_RE.search(line)
            if not um:
                raise AssertionError("cannot parse listening line: " + line)
            self.proto = "unix"
            self.endpoints = [um.group(1)]
            self.port = None
        self.listening_line = line
        return self.endpoints


def run_warren(args, timeout=WAIT, prefix=()):
    """Runs warren to completion: returns (exit_code, stderr_lines)."""
    p = subprocess.run(list(prefix) + [WARREN] + list(args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    err = p.stderr.decode("utf-8", "replace")
    return p.returncode, [l for l in err.split("\n") if l != ""]


class WarrenTestCase(unittest.TestCase):
    """Base class: tracks processes and servers and always stops them."""

    def setUp(self):
        if not WARREN or not os.access(WARREN, os.X_OK):
            self.fail("warren binary not found: pass --warren PATH (got %r)" % WARREN)

    def track(self, obj, stop=None):
        """Registers `obj` for cleanup (Process -> kill, server -> close)."""
        self.addCleanup(stop or (obj.kill if isinstance(obj, Process) else obj.close))
        return obj

    def start_warren(self, args, prefix=(), wait_listening=True, timeout=WAIT):
        """Starts `warren ARGS...` (optionally behind `prefix`, e.g.
        `ip netns exec NS`); by default waits for the "listening on" line."""
        relay = self.track(Relay(list(prefix) + [WARREN] + list(args)))
        if wait_listening:
            relay.listening(timeout)
        return relay

    def start_relay(self, *args, **kw):
        return self.start_warren(["relay"] + list(args), **kw)

    def assert_no_crash(self, lines):
        text = "\n".join(lines)
        for marker in CRASH_MARKERS:
            self.assertNotIn(marker, text, "crash marker %r in warren output:\n%s" % (marker, text))


# --------------------------------------------------------------------------


def main(skip_check=None):
    """Entry point of a test file: `--warren PATH` then unittest arguments.
    `skip_check()` may return a reason string to skip the whole file with
    exit code 77 (CTest SKIP_RETURN_CODE)."""
    global WARREN
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--warren", default=os.environ.get("WARREN", ""))
    ns, rest = parser.parse_known_args()
    WARREN = os.path.abspath(ns.warren) if ns.warren else ""
    if not WARREN or not os.access(WARREN, os.X_OK):
        print("error: warren binary not found; pass --warren PATH or set WARREN", file=sys.stderr)
        sys.exit(2)
    if skip_check is not None:
        reason = skip_check()
        if reason:
            print("SKIPPED: " + reason)
            sys.stdout.flush()
            sys.exit(SKIP_EXIT_CODE)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
