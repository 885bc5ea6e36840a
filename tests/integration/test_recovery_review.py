#!/usr/bin/env python3
"""What a hostile review of the client's recovery (issue 11) found, walked
with the real binaries:

- a tcp:// client dialling a tls:// or wss:// listener is answered with a
  plain TLS alert record and exits with a "use tls:// (or wss://)" hint;
- a client whose token the server stopped accepting, driven by local
  connections, retries slowly: a correct client from the same address
  still gets in (no HTTP 429 lock-out); a 429 carries Retry-After;
- a second SIGTERM still ends the server's log with a "stopped" line;
- a plain TLS alert before ServerHello is a transient failure, not the
  "requires a client certificate" exit;
- a Warren-Listener header naming the client's own scheme is transient;
- a server that drains every tunnel and holds it open does not make the
  client hold more than 4 draining tunnels;
- a client turned away at --max-clients before its handshake says so.

Every socket is on 127.0.0.1.

    python3 test_recovery_review.py --warren /path/to/warren
"""

import os
import signal
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warren_test as wt  # noqa: E402
from test_tunnel import CONNECTED_RE, GOAWAY, HELLO, TunnelTestCase, frame, wait_until  # noqa: E402


class FakeListener:
    """A 127.0.0.1 listener that runs `handle(conn)` per connection in a
    thread and counts connections; held connections stay open until close()."""

    def __init__(self, handle):
        self.handle = handle
        self.count = 0
        self.held = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            conn.settimeout(10)
            if self.handle(conn) == "hold":
                self.held.append(conn)
                return
        except OSError:
            pass
        conn.close()

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


def read_line(conn):
    line = b""
    while not line.endswith(b"\n") and len(line) < 1024:
        b = conn.recv(1)
        if not b:
            break
        line += b
    return line


def established_to(port):
    """Established TCP connections to 127.0.0.1:port, counted on the
    connecting side (/proc/net/tcp: remote address, state 01)."""
    want = "0100007F:%04X" % port
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[2] == want and fields[3] == "01":
                n += 1
    return n


class ReviewTest(TunnelTestCase):
    def fake(self, handle):
        f = FakeListener(handle)
        self.addCleanup(f.close)
        return f

    def fake_target(self, url, pin=None):
        return type("Fake", (), {"url": url, "pin": pin})()

    def assert_exits_with(self, listener, dialled, expect):
        server = self.start_server(scheme=listener)
        target = self.fake_target("%s://127.0.0.1:%d" % (dialled, server.port), server.pin)
        start = time.monotonic()
        client = self.start_client(target, local=["0:127.0.0.1:9"], wait_connected=False)
        code = client.wait_exit(timeout=10)
        self.assertEqual(code, 1, "%s:// client, %s:// listener:\n%s" % (dialled, listener, client.stderr_text()))
        self.assertLess(time.monotonic() - start, 3)
        errors = [l for l in client.lines if l.startswith("warren: error:")]
        self.assertEqual(len(errors), 1, client.stderr_text())
        self.assertIn(expect, errors[0])
        server.wait_for(r"refused: a tcp:// client's preamble on a %s:// listener" % listener)

    def test_1a_tcp_client_to_tls_listener(self):
        self.assert_exits_with("tls", "tcp", "the server speaks TLS on this port; use tls:// (or wss://")

    def test_1b_tcp_client_to_wss_listener(self):
        self.assert_exits_with("wss", "tcp", "the server speaks TLS on this port; use tls:// (or wss://")

    def test_2a_stale_token_client_does_not_lock_out_its_address(self):
        """The server restarts with a new token; a client still holding the
        old one is driven by local connections (4 a second); a client with
        the new token from the same address gets in at once (on the base
        the stale client made 2 attempts a second, tripped the failure
        limiter and everyone on 127.0.0.1 got HTTP 429 for a minute)."""
        server = self.start_server(scheme="ws")
        stale = self.start_client(server, local=["0:127.0.0.1:9"], extra=["--wait-tunnel", "1s"])
        port = self.v4_port(stale.forwards[0])
        new_token = "tok-" + __import__("secrets").token_hex(24)
        self.other_tokens = [new_token]
        server.signal(signal.SIGTERM)
        self.assertEqual(server.wait_exit(10), 0)
        self.write_secret("token", new_token + "\n")
        mark = len(stale.lines)
        server2 = self.start_server(scheme="ws", port=server.port)
        stop = threading.Event()

        def drive():
            while not stop.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                        c.settimeout(0.25)
                        try:
                            c.recv(1)
                        except OSError:
                            pass
                except OSError:
                    pass
                time.sleep(0.05)
        t = threading.Thread(target=drive, daemon=True)
        t.start()
        self.addCleanup(t.join, 5)
        self.addCleanup(stop.set)
        stale.wait_for(r"HTTP 401", timeout=10, start=mark)
        time.sleep(5)  # on the base: 10 attempts, the limiter tripped
        refusals = [l for l in stale.lines[mark:] if "HTTP 401" in l]
        self.assertLessEqual(len(refusals), 2, "\n".join(refusals))
        self.assertRegex(refusals[0], r"; retrying in (2\d|30)(\.\d+)?s ")
        good = self.start_client(server2, local=["0:127.0.0.1:9"], wait_connected=False)
        good.wait_for(CONNECTED_RE, timeout=5)
        self.assertIsNone(good.find(r"HTTP 429"), good.stderr_text())
        # SIGHUP with the new token: an attempt at once.
        self.write_secret("token", new_token + "\n")
        mark = len(stale.lines)
        stale.signal(signal.SIGHUP)
        stale.wait_for(CONNECTED_RE, timeout=5, start=mark)

    def test_2b_too_many_requests_says_retry_after(self):
        """HTTP 429 from the failure limiter names when to come back."""
        server = self.start_server(scheme="ws")
        wrong = "wrong-token-guess"
        self.other_tokens = [wrong]
        statuses = []
        head = ""
        for _ in range(6):
            with wt.connect("127.0.0.1", server.port) as c:
                c.sendall(("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                           "Authorization: Bearer %s\r\n\r\n" % wrong).encode())
                data = b""
                c.settimeout(5)
                while b"\r\n\r\n" not in data:
                    b = c.recv(4096)
                    if not b:
                        break
                    data += b
                head = data.decode("latin-1")
                statuses.append(head.split(" ")[1] if " " in head else "?")
        self.assertEqual(statuses, ["401"] * 5 + ["429"], head)
        m = __import__("re").search(r"\r\nRetry-After: (\d+)\r\n", head)
        self.assertIsNotNone(m, head)
        self.assertTrue(50 <= int(m.group(1)) <= 60, head)

    def test_3_second_sigterm_logs_stopped_last(self):
        echo = self.track(wt.EchoServer())
        server = self.start_server(scheme="ws", allow=("127.0.0.1:%d" % echo.port,),
                                   extra=["--drain-timeout", "30s"])
        client = self.start_client(server, local=["0:127.0.0.1:%d" % echo.port])
        app = wt.connect("127.0.0.1", self.v4_port(client.forwards[0]))
        self.addCleanup(app.close)
        app.sendall(b"held open")
        self.assertEqual(wt.recv_exactly(app, 9, 10), b"held open")
        server.signal(signal.SIGTERM)
        server.wait_for(r"server: SIGTERM received")
        server.signal(signal.SIGTERM)
        server.wait_exit(10)
        lines = [l for l in server.lines if l.strip()]
        self.assertRegex(lines[-1], r"server: stopped \(second signal", server.stderr_text()[-1500:])

    def test_4_plain_alert_before_server_hello_is_transient(self):
        """A plain TLS alert "certificate required" where ServerHello
        should be is forgeable by anyone on the path: retried, not the
        "pass --cert" exit."""
        def alert(conn):
            conn.recv(4096)
            conn.sendall(bytes.fromhex("15030300020274"))
        fake = self.fake(alert)
        target = self.fake_target("tls://127.0.0.1:%d" % fake.port, "sha256:" + ":".join(["ab"] * 32))
        client = self.start_client(target, local=["0:127.0.0.1:9"], wait_connected=False)
        wait_until(lambda: fake.count >= 2 or client.proc.poll() is not None, 10, "a second attempt")
        self.assertIsNone(client.proc.poll(), client.stderr_text())
        self.assertIsNone(client.find(r"requires a client certificate"), client.stderr_text())

    def test_5_listener_header_naming_our_scheme_is_transient(self):
        def bad_request(conn):
            data = b""
            while b"\r\n\r\n" not in data:
                b = conn.recv(4096)
                if not b:
                    return None
                data += b
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nWarren-Listener: ws\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
        fake = self.fake(bad_request)
        client = self.start_client(self.fake_target("ws://127.0.0.1:%d" % fake.port), local=["0:127.0.0.1:9"],
                                   wait_connected=False)
        wait_until(lambda: fake.count >= 2 or client.proc.poll() is not None, 10, "a second attempt")
        self.assertIsNone(client.proc.poll(), client.stderr_text())
        self.assertIsNone(client.find(r"not ws://"), client.stderr_text())
        client.wait_for(r"HTTP 400 .*names its listener ws://, as dialled")

    def test_6_draining_tunnels_are_capped(self):
        """A server that drains each tunnel after 0.3 s and keeps it open,
        while local connections keep a stream open on each: the client keeps
        at most 4 draining tunnels and the current one (on the base: every
        one of them)."""
        def drain_and_hold(conn):
            read_line(conn)
            conn.sendall(b"OK\n" + frame(HELLO, 0, 0, b"WRN\x01"))
            time.sleep(0.3)
            conn.sendall(frame(GOAWAY, 0, 0, (0).to_bytes(4, "big") + bytes([0]) + b"fake drain"))
            return "hold"
        fake = self.fake(drain_and_hold)
        client = self.start_client(self.fake_target("tcp://127.0.0.1:%d" % fake.port), local=["0:127.0.0.1:9"],
                                   wait_connected=False)
        port = self.v4_port(client.forwards[0])
        apps = []
        self.addCleanup(lambda: [a.close() for a in apps])
        deadline = time.monotonic() + 30
        while fake.count < 10 and time.monotonic() < deadline:
            try:
                apps.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                pass
            time.sleep(0.1)
        self.assertGreaterEqual(fake.count, 10, client.stderr_text()[-2000:])
        time.sleep(0.5)
        self.assertLessEqual(established_to(fake.port), 6, client.stderr_text()[-2000:])
        client.wait_for(r"tunnel: 5 tunnels are draining after GOAWAY; closing the oldest")
        self.assertIsNone(client.proc.poll())

    def test_7_max_clients_close_is_explained(self):
        server = self.start_server(scheme="tcp", extra=["--max-clients", "1"])
        self.start_client(server, local=["0:127.0.0.1:9"])
        late = self.start_client(server, local=["0:127.0.0.1:9"], wait_connected=False)
        late.wait_for(r"before the handshake finished; it may be at --max-clients", timeout=10)


if __name__ == "__main__":
    wt.main()
