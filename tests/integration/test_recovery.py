#!/usr/bin/env python3
"""Recovery that keeps its promise (issue 11), walked with the real binaries:

- an outage long enough for a large backoff, then a restart: a local
  connection made 0.5 s after the restart is served within 3 s (it wakes
  the client, which dials at once instead of finishing its backoff);
- a drain (SIGTERM: GOAWAY "closed"): the client dials a new tunnel at once
  (a new server on the same port serves new connections) while a stream
  open on the draining server finishes there; a GOAWAY with a refusal code
  (a fake server) keeps the backoff: a bounded number of attempts;
- an idle UDP flow does not hold the server's drain, which ends with a
  "server: stopped" line;
- permanent errors exit at once with a hint: a client certificate the
  server requires, the wrong scheme for the listener;
- SIGHUP makes the client read its token file again (and does not kill it).

Every socket is on 127.0.0.1.

    python3 test_recovery.py --warren /path/to/warren
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warren_test as wt  # noqa: E402
from test_tunnel import (CONNECTED_RE, GOAWAY, HELLO, TunnelTestCase, frame, need,  # noqa: E402
                         read_frame, wait_until)

RETRY_RE = re.compile(r"tunnel: cannot connect to .*; retrying in (\d+)(ms|s) \(attempt (\d+)\)")


def seconds(value, unit):
    return int(value) / (1000.0 if unit == "ms" else 1.0)


class FakeServer:
    """A tcp:// listener that authenticates every client (any token), sends
    HELLO, then GOAWAY with `code`, and closes: records when each tunnel
    connection came."""

    def __init__(self, code):
        self.code = code
        self.times = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.times.append(time.monotonic())
            try:
                conn.settimeout(5)
                line = b""
                while not line.endswith(b"\n") and len(line) < 1024:
                    b = conn.recv(1)
                    if not b:
                        break
                    line += b
                reason = b"fake server says so"
                conn.sendall(b"OK\n" + frame(HELLO, 0, 0, b"WRN\x01") +
                             frame(GOAWAY, 0, 0, (0).to_bytes(4, "big") + bytes([self.code]) + reason))
                time.sleep(0.05)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self):
        self.closed = True
        self.sock.close()


class RecoveryTest(TunnelTestCase):
    def echo_server(self):
        return self.track(wt.EchoServer())

    def echo_roundtrip(self, sock, data):
        sock.sendall(data)
        self.assertEqual(wt.recv_exactly(sock, len(data), 10), data)

    def test_1_outage_then_restart_serves_a_connection_at_once(self):
        """The issue's outage: the server is down long enough that the
        client's backoff is above 5 s; it restarts on the same port; a curl
        through -L 0.5 s later succeeds within 3 s (on the base the client
        slept its backoff and the curl waited for it)."""
        reason = need("curl")
        if reason:
            self.skipTest(reason)
        web = self.http_server()
        allow = ("127.0.0.1:%d" % web.port,)
        server = self.start_server(allow=allow)
        client = self.start_client(server, local=["0:127.0.0.1:%d" % web.port], extra=["--wait-tunnel", "10s"])
        port = self.v4_port(client.forwards[0])
        self.assert_curl_blob(port, context="before the outage:")
        mark = len(client.lines)
        server.signal(signal.SIGTERM)
        self.assertEqual(server.wait_exit(10), 0, server.stderr_text())

        def long_retry():
            for line in client.lines[mark:]:
                m = RETRY_RE.search(line)
                if m and seconds(m.group(1), m.group(2)) > 5:
                    return m
            return None
        m = wait_until(long_retry, 55, "a retry delay above 5 s in the client's log")
        server2 = self.start_server(allow=allow, port=server.port)
        time.sleep(0.5)
        start = time.monotonic()
        r = self.curl("http://127.0.0.1:%d/blob.bin" % port, "--max-time", "3")
        took = time.monotonic() - start
        self.assertEqual(r.returncode, 0, "curl 0.5 s after the restart failed (client slept %s): %s\n%s"
                         % (m.group(0), r.stderr.decode(errors="replace"), client.stderr_text()[-3000:]))
        self.assertEqual(r.stdout, self.blob)
        self.assertLess(took, 3.0)
        self.assertIsNone(client.proc.poll())
        server2.signal(signal.SIGTERM)
        server2.wait_exit(10)

    def test_1b_outage_then_restart_a_datagram_wakes_the_client(self):
        """The same outage with a UDP forward: a datagram that finds no
        tunnel is dropped, but the client dials at once, so a retry 0.3 s
        later is answered (within 3 s of the first)."""
        udp = self.track(wt.UDPEchoServer())
        allow = ("127.0.0.1:%d" % udp.port,)
        server = self.start_server(allow=allow)
        client = self.start_client(server, local=["udp/0:127.0.0.1:%d" % udp.port])
        port = self.v4_port(client.forwards[0])
        mark = len(client.lines)
        server.signal(signal.SIGTERM)
        self.assertEqual(server.wait_exit(10), 0, server.stderr_text())

        def long_retry():
            for line in client.lines[mark:]:
                m = RETRY_RE.search(line)
                if m and seconds(m.group(1), m.group(2)) > 5:
                    return m
            return None
        m = wait_until(long_retry, 55, "a retry delay above 5 s in the client's log")
        self.start_server(allow=allow, port=server.port)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        s.settimeout(0.3)
        start = time.monotonic()
        answered = None
        while time.monotonic() - start < 3 and answered is None:
            s.sendto(b"retry", ("127.0.0.1", port))
            try:
                answered, _ = s.recvfrom(100)
            except socket.timeout:
                continue
        self.assertEqual(answered, b"retry", "no answer within 3 s of the restart (client slept %s):\n%s"
                         % (m.group(0), client.stderr_text()[-2000:]))

    def test_2a_drain_dials_a_new_tunnel_at_once(self):
        """SIGTERM on the server (GOAWAY "closed"): the client dials again
        at once; a new server on the same port serves a new local connection
        at once, while a stream open on the draining server keeps working
        there; the old server exits with "server: stopped" once that stream
        ends (on the base new connections waited for the drained tunnel)."""
        echo = self.echo_server()
        allow = ("127.0.0.1:%d" % echo.port,)
        old = self.start_server(allow=allow, extra=["--drain-timeout", "30s"])
        client = self.start_client(old, local=["0:127.0.0.1:%d" % echo.port], extra=["--wait-tunnel", "10s"])
        port = self.v4_port(client.forwards[0])
        held = wt.connect("127.0.0.1", port)
        self.addCleanup(held.close)
        self.echo_roundtrip(held, b"before the drain")
        mark = len(client.lines)
        old.signal(signal.SIGTERM)
        old.wait_for(r"server: SIGTERM received")
        # At once: no backoff counted (only the 500 ms between two dials).
        client.wait_for(r"tunnel: the server is going away \(closed: .*\); reconnecting (now|in \d+ms \(attempt 0\))",
                        timeout=5, start=mark)
        new = self.start_server(allow=allow, port=old.port)
        client.wait_for(CONNECTED_RE, timeout=5, start=mark)
        start = time.monotonic()
        with wt.connect("127.0.0.1", port) as fresh:
            self.echo_roundtrip(fresh, b"through the new tunnel")
        self.assertLess(time.monotonic() - start, 3)
        new.wait_for(r"server: client#1 .* connected")
        # The stream open across the drain still works, on the old server.
        self.echo_roundtrip(held, b"after the drain")
        self.assertIsNone(old.proc.poll(), "the old server exited with a stream open")
        held.close()
        self.assertEqual(old.wait_exit(10), 0, old.stderr_text())
        old.wait_for(r"server: stopped$")
        self.assertIsNone(client.proc.poll())

    def goaway_client(self, code):
        fake = self.track(FakeServer(code))
        target = type("Fake", (), {"url": "tcp://127.0.0.1:%d" % fake.port, "pin": None})()
        client = self.start_client(target, local=["0:127.0.0.1:9"], wait_connected=False)
        wait_until(lambda: fake.times, 5, "a first tunnel connection")
        time.sleep(4)
        return fake, client, list(fake.times)

    def test_2b_goaway_drain_redials_at_once(self):
        fake, client, times = self.goaway_client(0)
        self.assertGreaterEqual(len(times), 2, client.stderr_text())
        self.assertLess(times[1] - times[0], 0.8, "no immediate redial after a drain GOAWAY")
        client.wait_for(r"tunnel: the server is going away \(closed: fake server says so\); "
                        r"reconnecting (now|in \d+ms \(attempt 0\))")
        # A server that drains every tunnel at once is not a hot loop.
        self.assertLessEqual(len(times), 10, "%d tunnel connections in 4 s" % len(times))

    def test_2c_goaway_refusal_keeps_the_backoff(self):
        fake, client, times = self.goaway_client(7)  # limit reached: too many clients
        self.assertLessEqual(len(times), 9, "%d tunnel connections in 4 s after refusals" % len(times))
        lines = [l for l in client.lines if "the server refused the tunnel" in l]
        self.assertTrue(lines, client.stderr_text())
        self.assertIsNone(client.find(r"reconnecting (now|in \d+ms \(attempt 0\))"), client.stderr_text())
        attempts = [int(m.group(1)) for m in (re.search(r"\(attempt (\d+)\)", l) for l in lines) if m]
        self.assertEqual(attempts, list(range(1, len(attempts) + 1)), "the backoff was reset: %r" % attempts)

    def test_2d_max_clients_refuses_with_a_goaway(self):
        """A tunnel that finishes its handshake while --max-clients tunnels
        are up is told so with GOAWAY "limit reached" (code 7), which its
        client backs off from (on the base: a bare close, a lost tunnel)."""
        server = self.start_server(scheme="tcp", extra=["--max-clients", "1"])
        late = wt.connect("127.0.0.1", server.port)  # admitted: no tunnel is up yet
        self.addCleanup(late.close)
        self.start_client(server, local=["0:127.0.0.1:9"])  # takes the only slot
        late.sendall(b"WARREN/1 " + self.token.encode() + b"\n")
        self.assertEqual(wt.recv_exactly(late, 3, 10), b"OK\n")
        frames = []
        while True:
            try:
                ftype, _, _, payload = read_frame(late, 10)
            except (ConnectionError, OSError, EOFError, AssertionError):
                break
            frames.append((ftype, payload))
            if ftype == GOAWAY:
                break
        goaways = [p for t, p in frames if t == GOAWAY]
        self.assertEqual(len(goaways), 1, "frames %r; server:\n%s" % (frames, server.stderr_text()[-2000:]))
        self.assertEqual(goaways[0][4], 7, "GOAWAY code %d, not limit reached" % goaways[0][4])

    def test_3_idle_udp_flow_does_not_hold_the_drain(self):
        """A UDP flow idle for over a second ends when the drain starts: the
        server exits within ~1 s of SIGTERM, not at --drain-timeout 20s."""
        udp = self.track(wt.UDPEchoServer())
        server = self.start_server(allow=("127.0.0.1:%d" % udp.port,), extra=["--drain-timeout", "20s"])
        client = self.start_client(server, local=["udp/0:127.0.0.1:%d" % udp.port])
        port = self.v4_port(client.forwards[0])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        s.settimeout(5)
        for _ in range(20):
            s.sendto(b"ping", ("127.0.0.1", port))
            try:
                data, _ = s.recvfrom(100)
                break
            except socket.timeout:
                continue
        self.assertEqual(data, b"ping")
        time.sleep(1.3)
        start = time.monotonic()
        server.signal(signal.SIGTERM)
        self.assertEqual(server.wait_exit(10), 0, server.stderr_text())
        self.assertLess(time.monotonic() - start, 2.0, server.stderr_text())
        server.wait_for(r"server: stopped$")

    def openssl(self, *args):
        r = subprocess.run(["openssl"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout.decode(errors="replace"))

    def make_ca(self, name="ca"):
        """A CA (certificate path); its key is next to it, NAME.key."""
        ca_key, ca_cert = os.path.join(self.tmp, name + ".key"), os.path.join(self.tmp, name + ".pem")
        self.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", ca_key, "-out", ca_cert, "-days", "2", "-subj", "/CN=warren test " + name)
        return ca_cert

    def make_client_cert(self, ca_cert):
        key, csr, cert = (os.path.join(self.tmp, "client." + e) for e in ("key", "csr", "pem"))
        self.openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                     "-out", csr, "-subj", "/CN=warren test client")
        self.openssl("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_cert[:-4] + ".key",
                     "-CAcreateserial", "-out", cert, "-days", "2")
        return cert, key

    def test_4a_client_certificate_required(self):
        """A server with --client-ca, a client without --cert: exit 1 at once
        with the hint (it was retried forever)."""
        reason = need("openssl")
        if reason:
            self.skipTest(reason)
        server = self.start_server(extra=["--client-ca", self.make_ca()])
        start = time.monotonic()
        client = self.start_client(server, local=["0:127.0.0.1:9"], wait_connected=False)
        code = client.wait_exit(timeout=10)
        self.assertEqual(code, 1, client.stderr_text())
        self.assertLess(time.monotonic() - start, 3)
        errors = [l for l in client.lines if l.startswith("warren: error:")]
        self.assertEqual(len(errors), 1, client.stderr_text())
        self.assertIn("requires a client certificate", errors[0])
        self.assertIn("--cert", errors[0])

    def test_4g_client_certificate_rejected(self):
        """A client certificate from another CA: the server's alert ends the
        client at once with the hint (it was retried forever); one from the
        right CA connects."""
        reason = need("openssl")
        if reason:
            self.skipTest(reason)
        server = self.start_server(extra=["--client-ca", self.make_ca("ca1")])
        cert, key = self.make_client_cert(self.make_ca("ca2"))
        start = time.monotonic()
        client = self.start_client(server, local=["0:127.0.0.1:9"], extra=["--cert", cert, "--key", key],
                                   wait_connected=False)
        self.assertEqual(client.wait_exit(timeout=10), 1, client.stderr_text())
        self.assertLess(time.monotonic() - start, 3)
        errors = [l for l in client.lines if l.startswith("warren: error:")]
        self.assertEqual(len(errors), 1, client.stderr_text())
        self.assertIn("the server rejected the client certificate", errors[0])
        cert, key = self.make_client_cert(os.path.join(self.tmp, "ca1.pem"))
        self.start_client(server, local=["0:127.0.0.1:9"], extra=["--cert", cert, "--key", key])

    def assert_scheme_hint(self, listener, dialled, expect):
        server = self.start_server(scheme=listener)
        url = "%s://127.0.0.1:%d" % (dialled, server.port)
        fake = type("S", (), {"url": url, "pin": server.pin or "sha256:" + ":".join(["00"] * 32)})()
        start = time.monotonic()
        client = self.start_client(fake, local=["0:127.0.0.1:9"], wait_connected=False)
        code = client.wait_exit(timeout=10)
        self.assertEqual(code, 1, "%s:// client, %s:// listener:\n%s" % (dialled, listener, client.stderr_text()))
        self.assertLess(time.monotonic() - start, 3)
        errors = [l for l in client.lines if l.startswith("warren: error:")]
        self.assertEqual(len(errors), 1, client.stderr_text())
        self.assertIn(expect, errors[0], "%s:// client, %s:// listener" % (dialled, listener))

    def test_4b_wss_client_to_tcp_listener(self):
        self.assert_scheme_hint("tcp", "wss", "does not speak TLS on this port; use ws:// (or tcp://")

    def test_4c_ws_client_to_wss_listener(self):
        self.assert_scheme_hint("wss", "ws", "the server's listener is wss://, not ws://; use wss://")

    def test_4d_ws_client_to_tcp_listener(self):
        self.assert_scheme_hint("tcp", "ws", "the server's listener is tcp://, not ws://; use tcp://")

    def test_4e_tcp_client_to_ws_listener(self):
        self.assert_scheme_hint("ws", "tcp", "the server answered in HTTP: its listener is ws://")

    def test_4f_wss_client_to_tls_listener(self):
        self.assert_scheme_hint("tls", "wss", "the server's listener is tls://, not wss://; use tls://")

    def test_5_sighup_reloads_the_token(self):
        """The server's token changes (a restart with another token); the
        client's token file is rewritten and the client gets SIGHUP: new
        tunnels authenticate with the new token; SIGHUP never kills it, and
        an unreadable file keeps the old token."""
        echo = self.echo_server()
        allow = ("127.0.0.1:%d" % echo.port,)
        server = self.start_server(allow=allow)
        client_token = self.write_secret("client-token", self.token + "\n")
        client = self.start_client(server, local=["0:127.0.0.1:%d" % echo.port], token_file=client_token,
                                   extra=["--wait-tunnel", "5s"])
        port = self.v4_port(client.forwards[0])
        # SIGHUP with the file unchanged: the client stays.
        client.signal(signal.SIGHUP)
        client.wait_for(r"client: SIGHUP received; the token file .* is read again")
        self.assertIsNone(client.proc.poll())

        new_token = "tok-" + __import__("secrets").token_hex(24)
        self.other_tokens = [new_token]
        server.signal(signal.SIGTERM)
        server.wait_exit(10)
        self.write_secret("token", new_token + "\n")  # the server's token file
        mark = len(client.lines)
        server2 = self.start_server(allow=allow, port=server.port)
        client.wait_for(r"HTTP 401", timeout=10, start=mark)  # the old token is refused now
        # An unreadable token file keeps the old token (and the client).
        os.rename(client_token, client_token + ".moved")
        client.signal(signal.SIGHUP)
        client.wait_for(r"client: SIGHUP received; keeping the old token: cannot read token file", start=mark)
        self.assertIsNone(client.proc.poll())
        os.rename(client_token + ".moved", client_token)
        self.write_secret("client-token", new_token + "\n")
        mark = len(client.lines)
        client.signal(signal.SIGHUP)
        client.wait_for(CONNECTED_RE, timeout=10, start=mark)
        with wt.connect("127.0.0.1", port) as c:
            self.echo_roundtrip(c, b"with the new token")
        self.assertIsNone(client.proc.poll())
        client.signal(signal.SIGTERM)
        self.assertEqual(client.wait_exit(10), 0)
        client.wait_for(r"client: stopped$")
        server2.signal(signal.SIGTERM)

    def test_6_second_sigterm_resets_cut_streams(self):
        """A second SIGTERM stops the server at once; a stream it cuts must
        reach its target as a reset, not as the FIN of a closing socket that
        makes a cut upload look complete (on the base: EOF)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        server = self.start_server(scheme="ws", allow=("127.0.0.1",), extra=["--drain-timeout", "30s"])
        client = self.start_client(server, local=["0:127.0.0.1:%d" % listener.getsockname()[1]])
        app = wt.connect("127.0.0.1", self.v4_port(client.forwards[0]))
        self.addCleanup(app.close)
        listener.settimeout(wt.WAIT)
        target, _ = listener.accept()
        self.addCleanup(target.close)
        app.sendall(b"u" * 16384)
        self.assertEqual(len(wt.recv_exactly(target, 16384)), 16384)
        server.signal(signal.SIGTERM)
        server.wait_for(r"server: SIGTERM received")
        server.signal(signal.SIGTERM)
        target.settimeout(10)
        how = "EOF"
        try:
            while target.recv(1 << 16):
                pass
        except ConnectionResetError:
            how = "RST"
        except socket.timeout:
            how = "nothing within 10 s"
        self.assertEqual(how, "RST", "the target saw the cut stream end with %s" % how)
        server.wait_exit(10)


if __name__ == "__main__":
    wt.main()
