"""Raw warren tunnel peers for tests/integration/test_flood.py and
bench/flood_bench.py: they speak docs/PROTOCOL.md frame by frame (the frame
encoder of test_tunnel.py) over tcp:// or tls://, as a hostile but
authenticated client would.

- dial(): connect, authenticate (preamble), exchange HELLO; returns the
  socket and how long that took (what a new tunnel waits for).
- EchoStream: one stream to an echo server through a tunnel; rtt() is one
  round trip of a small DATA frame (what an interactive user feels).
- Flooder: a separate process that sends OPEN immediately followed by
  RESET, over and over, and reads nothing (the server owes it no reply).
- CountingTarget: a separate process that accepts and closes connections
  and counts them: the connects the server made for the flooder's opens.

Separate processes, so that the flood's Python work does not hold the GIL
of the process that measures. Every socket is on 127.0.0.1.
"""

import multiprocessing
import os
import socket
import ssl
import struct
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warren_test as wt  # noqa: E402
from test_tunnel import DATA, GOAWAY, HELLO, OPEN, OPEN_OK, RESET, WINDOW, frame, read_frame  # noqa: E402,F401

KIND_TCP = 1


def target_v4(port, host="127.0.0.1"):
    """An OPEN payload's address: IPv4 `host`:`port`, TCP."""
    return bytes([KIND_TCP, 1]) + socket.inet_aton(host) + struct.pack(">H", port)


def dial(port, token, scheme="tcp", host="127.0.0.1", timeout=30.0):
    """A raw tunnel past HELLO: (socket, seconds from connect() to the
    server's HELLO). tls:// does not verify the certificate (loopback)."""
    t0 = time.monotonic()
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if scheme == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s, server_hostname=host)
    elif scheme != "tcp":
        raise ValueError("raw peers speak tcp:// or tls://, not " + scheme)
    s.sendall(b"WARREN/1 " + token.encode() + b"\n")
    ok = wt.recv_exactly(s, 3, timeout)
    if ok != b"OK\n":
        raise ConnectionError("the server answered %r to the token" % ok)
    s.sendall(frame(HELLO, 0, 0, b"WRN\x01"))
    ftype, _, stream, payload = read_frame(s, timeout)
    if (ftype, stream) != (HELLO, 0) or payload[:4] != b"WRN\x01":
        raise ConnectionError("no HELLO from the server: frame type %d" % ftype)
    return s, time.monotonic() - t0


class EchoStream:
    """Stream 1 of its own tunnel, connected to an echo server."""

    def __init__(self, port, token, echo_port, scheme="tcp", timeout=30.0):
        self.sock, self.setup = dial(port, token, scheme, timeout=timeout)
        self.sock.sendall(frame(OPEN, 0, 1, target_v4(echo_port)))
        self.n = 0
        while True:
            ftype, _, stream, payload = read_frame(self.sock, timeout)
            if ftype == OPEN_OK and stream == 1:
                return
            if ftype in (RESET, GOAWAY):
                raise ConnectionError("echo stream refused: frame %d %r" % (ftype, payload))

    def rtt(self, timeout=60.0):
        """Seconds for 8 bytes to go to the echo server and back."""
        self.n += 1
        data = struct.pack(">Q", self.n)
        t0 = time.monotonic()
        self.sock.sendall(frame(DATA, 0, 1, data))
        got = b""
        while len(got) < len(data):
            ftype, _, stream, payload = read_frame(self.sock, max(timeout - (time.monotonic() - t0), 0.1))
            if ftype == DATA and stream == 1 and payload:
                got += payload
                self.sock.sendall(frame(WINDOW, 0, 1, struct.pack(">I", len(payload))))
            elif ftype in (RESET, GOAWAY) and stream in (0, 1):
                raise ConnectionError("echo stream ended: frame %d %r" % (ftype, payload))
        if got != data:
            raise AssertionError("echo returned %r for %r" % (got, data))
        return time.monotonic() - t0

    def close(self):
        self.sock.close()


def _flood(port, token, scheme, target_port, seconds, pairs_sent, ready):
    s, _ = dial(port, token, scheme)
    s.settimeout(2.0)  # a send the server does not take within 2 s ends the flood
    ready.set()
    target = target_v4(target_port)
    reset = b"\x00"  # code 0 (closed), no reason
    batch = 64  # pairs per send: 1.7 KB
    sid = 1
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            chunk = b"".join(frame(OPEN, 0, i, target) + frame(RESET, 0, i, reset)
                             for i in range(sid, sid + 2 * batch, 2))
            s.sendall(chunk)
            sid += 2 * batch
            with pairs_sent.get_lock():
                pairs_sent.value += batch
    except OSError:
        pass  # a timeout or the server cut us off: the flood is over either way
    s.close()


class Flooder:
    """OPEN+RESET pairs as fast as the server takes them, for `seconds`."""

    def __init__(self, port, token, target_port, seconds, scheme="tcp"):
        ctx = multiprocessing.get_context("fork")
        self.pairs_sent = ctx.Value("Q", 0)
        self.ready = ctx.Event()
        self.proc = ctx.Process(target=_flood, daemon=True,
                                args=(port, token, scheme, target_port, seconds, self.pairs_sent, self.ready))
        self.proc.start()
        if not self.ready.wait(30):
            self.stop()
            raise AssertionError("the flooder did not get its tunnel")

    def sent(self):
        return self.pairs_sent.value

    def stop(self, timeout=10):
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def _target(listener, accepted):
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.close()
        with accepted.get_lock():
            accepted.value += 1


class CountingTarget:
    """Accepts and closes connections on 127.0.0.1, counting them."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4096)
        self.port = self.listener.getsockname()[1]
        ctx = multiprocessing.get_context("fork")
        self.accepted = ctx.Value("Q", 0)
        self.proc = ctx.Process(target=_target, args=(self.listener, self.accepted), daemon=True)
        self.proc.start()

    def count(self):
        return self.accepted.value

    def close(self):
        self.proc.kill()
        self.proc.join()
        self.listener.close()


vm_rss_kib = wt.vm_rss_kib


def percentile(values, p):
    """The p-th percentile (nearest rank) of `values`."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]
