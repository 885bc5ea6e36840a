#!/usr/bin/env python3
"""Integration tests of `warren relay` (no privileges needed).

Runs real warren processes against servers in this process, over loopback
only (127.0.0.1 and ::1). Every listening port is picked by the kernel
(port 0); every wait is bounded.

    python3 test_relay.py --warren /path/to/warren [unittest args]
"""

import os
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warren_test as wt  # noqa: E402


class RelayTestCase(wt.WarrenTestCase):
    def echo_server(self, host="127.0.0.1", sock=None):
        return self.track(wt.EchoServer(host=host, sock=sock))

    def assert_echo(self, host, port, payload=None, family=None):
        """Connects to host:port, sends payload, expects it echoed back."""
        payload = payload or os.urandom(4096)
        with wt.connect(host, port) as c:
            c.sendall(payload)
            self.assertEqual(wt.recv_exactly(c, len(payload)), payload,
                             "echo through %s:%d differs" % (host, port))
            c.shutdown(socket.SHUT_WR)
            self.assertEqual(wt.recv_until_eof(c), b"", "extra bytes after the echo")

    def assert_one_error_line(self, code, lines, allow_usage_hint=False, context=""):
        self.assert_no_crash(lines)
        self.assertNotEqual(code, 0, "%s: exit code 0; stderr: %r" % (context, lines))
        self.assertGreater(code, 0, "%s: killed by signal %d; stderr: %r" % (context, -code, lines))
        if allow_usage_hint and code == 2 and len(lines) == 2:
            self.assertTrue(lines[1].startswith("Run 'warren --help'"),
                            "%s: unexpected second line: %r" % (context, lines))
            lines = lines[:1]
        self.assertEqual(len(lines), 1, "%s: expected exactly one line on stderr, got %r" % (context, lines))
        self.assertTrue(lines[0].startswith("warren: error:"), "%s: %r" % (context, lines[0]))
        return lines[0]


class TcpListenTest(RelayTestCase):
    def test_localhost_listens_on_both_loopbacks(self):
        """1. localhost:0 binds 127.0.0.1 and ::1 on one port; clients of
        either family reach the target."""
        echo = self.echo_server("127.0.0.1")
        relay = self.start_relay("localhost:0", "127.0.0.1:%d" % echo.port)
        self.assertEqual(relay.proto, "TCP")
        port = relay.port
        self.assertNotEqual(port, 0)
        self.assertCountEqual(relay.endpoints, [("127.0.0.1", port), ("::1", port)], relay.listening_line)
        self.assertIn("forwarding to 127.0.0.1:%d" % echo.port, relay.listening_line)
        for host in ("::1", "127.0.0.1"):
            with self.subTest(client=host):
                self.assert_echo(host, port)
        self.assertEqual(echo.served, 2)

    def test_busy_port_on_one_address_of_a_name_fails(self):
        """3a. localhost:P with [::1]:P taken by someone else: exit 1, one
        error line naming [::1]:P (clients trying ::1 first would reach the
        other program; issue 11)."""
        echo = self.echo_server()
        s4, s6, port = wt.free_port_pair()
        self.addCleanup(s6.close)
        s4.close()  # 127.0.0.1:P is free, [::1]:P stays taken (V6ONLY, listening)
        s6.listen(16)
        code, lines = wt.run_warren(["relay", "localhost:%d" % port, "127.0.0.1:%d" % echo.port])
        self.assert_no_crash(lines)
        self.assertEqual(code, 1, lines)
        errors = [l for l in lines if l.startswith("warren: error:")]
        self.assertEqual(len(errors), 1, lines)
        self.assertIn("cannot listen on [::1]:%d: port %d is already in use" % (port, port), errors[0])

    def test_literal_bind_of_a_busy_port_fails(self):
        """3b. 127.0.0.1:P with P in use: exit 1, one error line naming the port."""
        echo = self.echo_server()
        busy = self.echo_server("127.0.0.1")  # holds 127.0.0.1:P
        for extra in (["--no-target-check"], []):
            with self.subTest(args=extra):
                code, lines = wt.run_warren(["relay", "127.0.0.1:%d" % busy.port,
                                             "127.0.0.1:%d" % echo.port] + extra)
                self.assert_no_crash(lines)
                self.assertEqual(code, 1, lines)
                errors = [l for l in lines if l.startswith("warren: error:")]
                self.assertEqual(len(errors), 1, lines)
                self.assertIn("already in use", errors[0])
                self.assertIn(str(busy.port), errors[0])
                self.assertEqual(lines[-1], errors[0], "the error is not the last line: %r" % lines)
                if extra:
                    self.assertEqual(lines, errors, "expected exactly one line on stderr")
                else:
                    # The start-up check may log at info level before binding; nothing else.
                    for l in lines[:-1]:
                        self.assertRegex(l, r" info  relay: target ", lines)
        self.assertEqual(busy.accepted, 0)

    def test_wildcard_binds_both_families(self):
        """3c. *:0 binds 0.0.0.0 and :: (connect only via loopback)."""
        echo = self.echo_server()
        relay = self.start_relay("*:0", "127.0.0.1:%d" % echo.port)
        port = relay.port
        self.assertCountEqual(relay.endpoints, [("0.0.0.0", port), ("::", port)], relay.listening_line)
        for host in ("127.0.0.1", "::1"):
            with self.subTest(client=host):
                self.assert_echo(host, port)


class UdpTest(RelayTestCase):
    def test_udp_reply_comes_from_the_address_asked(self):
        """2. --udp localhost:0: each client hears back from the exact address
        and port it sent to."""
        echo = self.track(wt.UDPEchoServer("127.0.0.1"))
        relay = self.start_relay("--udp", "localhost:0", "127.0.0.1:%d" % echo.port)
        self.assertEqual(relay.proto, "UDP")
        port = relay.port
        self.assertCountEqual(relay.endpoints, [("127.0.0.1", port), ("::1", port)], relay.listening_line)
        for host in ("::1", "127.0.0.1"):
            with self.subTest(client=host):
                with socket.socket(wt.family_of(host), socket.SOCK_DGRAM) as c:
                    c.bind((host, 0))
                    c.settimeout(5)
                    for i in range(5):
                        payload = ("%s #%d " % (host, i)).encode() + os.urandom(1000)
                        c.sendto(payload, (host, port))
                        data, source = c.recvfrom(65536)
                        self.assertEqual(data, payload)
                        self.assertEqual(source[:2], (host, port),
                                         "reply to a datagram sent to %s:%d came from %r" % (host, port, source))
        self.assertEqual(len(echo.peers), 10)


class StreamTest(RelayTestCase):
    def test_half_close_is_carried_through(self):
        """4. Client shutdown(SHUT_WR): the server sees EOF and its reply still
        reaches the client in full."""
        request = os.urandom(300_000)
        reply = os.urandom(500_000)
        received = {}

        def handler(conn):
            received["request"] = wt.recv_until_eof(conn, timeout=wt.WAIT)
            conn.sendall(reply)

        server = self.track(wt.TCPServer(handler))
        relay = self.start_relay("127.0.0.1:0", "127.0.0.1:%d" % server.port)
        with wt.connect("127.0.0.1", relay.port) as c:
            c.sendall(request)
            c.shutdown(socket.SHUT_WR)
            got = wt.recv_until_eof(c)
        self.assertEqual(received.get("request"), request, "server did not get the whole request before EOF")
        self.assertEqual(len(got), len(reply))
        self.assertEqual(got, reply)

    def test_many_concurrent_connections(self):
        """5. 200 clients at once, 64 KiB random data each, echoed intact."""
        n, size = 200, 64 * 1024
        echo = self.echo_server()
        relay = self.start_relay("localhost:0", "127.0.0.1:%d" % echo.port)
        sel = selectors.DefaultSelector()
        self.addCleanup(sel.close)
        clients = []
        for i in range(n):
            host = "127.0.0.1" if i % 2 else "::1"
            c = wt.connect(host, relay.port)
            self.addCleanup(c.close)
            c.setblocking(False)
            st = {"sock": c, "out": os.urandom(size), "sent": 0, "in": bytearray(), "host": host}
            clients.append(st)
            sel.register(c, selectors.EVENT_READ | selectors.EVENT_WRITE, st)
        # All n connections are open now; pump every one of them at once.
        deadline = time.monotonic() + 60
        pending = n
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                done = sum(1 for s in clients if len(s["in"]) == size)
                self.fail("%d of %d connections finished within 60 s" % (done, n))
            for key, events in sel.select(min(left, 1.0)):
                st = key.data
                c = st["sock"]
                if events & selectors.EVENT_WRITE and st["sent"] < size:
                    try:
                        st["sent"] += c.send(st["out"][st["sent"]:st["sent"] + 65536])
                    except BlockingIOError:
                        pass
                    if st["sent"] == size:
                        sel.modify(c, selectors.EVENT_READ, st)
                if events & selectors.EVENT_READ:
                    try:
                        data = c.recv(65536)
                    except BlockingIOError:
                        continue
                    if not data:
                        self.fail("connection via %s closed after %d of %d bytes" % (st["host"], len(st["in"]), size))
                    st["in"] += data
                    self.assertLessEqual(len(st["in"]), size)
                    if len(st["in"]) == size:
                        sel.unregister(c)
                        pending -= 1
        for i, st in enumerate(clients):
            self.assertEqual(bytes(st["in"]), st["out"], "connection %d got different bytes back" % i)
        self.assertEqual(echo.served, n)
        self.assertEqual(echo.errors, [])
        self.assertIsNone(relay.proc.poll())

    def test_refused_target_resets_client_and_relay_keeps_serving(self):
        """6. Target refuses after start-up: the client is closed promptly,
        a warning says "refused", and the relay goes on serving."""
        closed, port = wt.closed_tcp_port()  # bound, not listening: refuses
        self.addCleanup(closed.close)
        relay = self.start_relay("127.0.0.1:0", "127.0.0.1:%d" % port, "--no-target-check")
        for attempt in (1, 2):
            with self.subTest(connection=attempt):
                start = time.monotonic()
                try:
                    # The relay resets the client as soon as the target
                    # refuses, which on loopback can be before connect()
                    # or send() returns: a reset anywhere is the expected end.
                    with wt.connect("127.0.0.1", relay.port) as c:
                        c.sendall(b"hello")
                        data = wt.recv_until_eof(c, timeout=5)
                        self.assertEqual(data, b"")
                except (ConnectionResetError, BrokenPipeError):
                    pass
                except TimeoutError:
                    self.fail("client connection hung although the target refused")
                self.assertLess(time.monotonic() - start, 3)
                relay.wait_for(r"warning .*relay: conn#%d from 127\.0\.0\.1:\d+: .*refused" % attempt)
        self.assertIsNone(relay.proc.poll(), "relay exited")
        # The target comes up: the same relay now connects to it.
        self.echo_server(sock=closed)
        self.assert_echo("127.0.0.1", relay.port)


class BadInputTest(RelayTestCase):
    def test_bad_input_gives_one_error_line(self):
        """7. Bad input: exit != 0, exactly one "warren: error:" line, no crash."""
        echo = self.echo_server()
        target = "127.0.0.1:%d" % echo.port
        closed, closed_port = wt.closed_tcp_port()
        self.addCleanup(closed.close)
        cases = [
            ("listen foo", ["foo", target]),
            ("target foo", ["127.0.0.1:0", "foo"]),
            # --no-target-check: even a parser bug must not make warren
            # contact 1.2.3.4 (only loopback traffic is allowed here).
            ("target port 99999", ["127.0.0.1:0", "1.2.3.4:99999", "--no-target-check"]),
            ("listen port 70000", ["localhost:70000", target]),
            ("listen [::1:80", ["[::1:80", target]),
            ("target [::1:80", ["127.0.0.1:0", "[::1:80"]),
            ("listen ::1:80", ["::1:80", target]),
            ("target ::1:80", ["127.0.0.1:0", "::1:80"]),
            ("--family x", ["127.0.0.1:0", target, "--family", "x"]),
            ("--attempt-delay 5s", ["127.0.0.1:0", target, "--attempt-delay", "5s"]),
            ("--connect-timeout 10", ["127.0.0.1:0", target, "--connect-timeout", "10"]),
            ("refused target", ["127.0.0.1:0", "127.0.0.1:%d" % closed_port]),
            ("--log-level loud", ["127.0.0.1:0", target, "--log-level", "loud"]),
            # CLI11 parse errors (exit code 2, may add a usage hint line).
            ("missing TARGET", ["127.0.0.1:0"]),
            ("unknown option", ["127.0.0.1:0", target, "--bogus"]),
            ("--max-connections 0", ["127.0.0.1:0", target, "--max-connections", "0"]),
        ]
        for name, args in cases:
            with self.subTest(case=name):
                try:
                    code, lines = wt.run_warren(["relay"] + args, timeout=15)
                except subprocess.TimeoutExpired:
                    self.fail("warren relay %s did not exit (it should have refused the input)" % args)
                line = self.assert_one_error_line(code, lines, allow_usage_hint=True, context=name)
                if name == "refused target":
                    self.assertEqual(code, 1)
                    self.assertIn("refused", line)
                    self.assertIn(str(closed_port), line)
                elif code != 2:
                    self.assertEqual(code, 1, "%s: %r" % (name, lines))
        self.assertEqual(echo.accepted, 0, "a rejected command connected to the target")

    def test_unresolvable_target(self):
        """7. nosuch.invalid:80 -> one error line. Run in a private network
        namespace (only a down loopback), so the DNS query this causes
        cannot leave the machine."""
        isolate = None
        for prefix in (["unshare", "--net"], ["unshare", "--user", "--map-root-user", "--net"]):
            if shutil.which(prefix[0]) is None:
                break
            try:
                if subprocess.run(prefix + ["true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=10).returncode == 0:
                    isolate = prefix
                    break
            except subprocess.TimeoutExpired:
                pass
        if isolate is None:
            self.skipTest("cannot create a network namespace (unshare) to keep the DNS lookup local")
        code, lines = wt.run_warren(["relay", "127.0.0.1:0", "nosuch.invalid:80"], timeout=30, prefix=isolate)
        line = self.assert_one_error_line(code, lines, context="nosuch.invalid")
        self.assertEqual(code, 1)
        self.assertIn("nosuch.invalid", line)
        self.assertIn("resolve", line)


class SignalTest(RelayTestCase):
    def test_sigterm_and_sigint_exit_cleanly(self):
        """8. SIGTERM / SIGINT -> exit code 0 promptly: sent as soon as the
        relay says it is listening (repeated, as that is a moment a race would
        show), and with a relayed connection open."""
        echo = self.echo_server()
        for signo in (signal.SIGTERM, signal.SIGINT):
            for busy in (False, True):
                with self.subTest(signal=signo.name, open_connection=busy):
                    for _ in range(1 if busy else 25):
                        self.signal_and_expect_clean_exit(signo, busy, echo)

    def test_sigterm_mid_transfer_resets_the_connection(self):
        """A relay stopped by SIGTERM while it carries a transfer cut it off;
        the client must see a reset, not the FIN of a complete transfer
        (before: the relay's sockets were closed as it exited, FIN on both
        sides; the tunnel client already resets on SIGTERM)."""
        blob = os.urandom(8 << 20)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        for mode in ([], ["--no-splice"]):
            with self.subTest(mode=mode or "splice"):
                relay = self.start_relay("127.0.0.1:0", "127.0.0.1:%d" % listener.getsockname()[1],
                                         "--no-target-check", *mode)
                client = wt.connect("127.0.0.1", relay.port)
                self.addCleanup(client.close)
                target, _ = listener.accept()
                self.addCleanup(target.close)
                target.settimeout(wt.WAIT)
                target.sendall(blob[:1 << 20])  # the first MiB of the transfer, then SIGTERM
                self.assertEqual(len(wt.recv_exactly(client, 1 << 20)), 1 << 20)
                relay.signal(signal.SIGTERM)
                self.assertEqual(relay.wait_exit(timeout=10), 0, relay.stderr_text())
                client.settimeout(wt.WAIT)
                try:
                    rest = client.recv(1 << 16)
                except ConnectionResetError:
                    rest = None
                self.assertIsNone(rest, "the client read %r (EOF: a cut transfer that looks complete)"
                                  % (rest[:16] if rest else rest))

    def signal_and_expect_clean_exit(self, signo, busy, echo):
        relay = self.start_relay("localhost:0", "127.0.0.1:%d" % echo.port)
        client = None
        if busy:
            client = wt.connect("::1", relay.port)
            self.addCleanup(client.close)
            client.sendall(b"ping")
            self.assertEqual(wt.recv_exactly(client, 4), b"ping")
        start = time.monotonic()
        relay.signal(signo)
        code = relay.wait_exit(timeout=5)
        if code < 0:
            self.fail("warren was killed by %s (exit %d) instead of exiting with 0: the signal arrived "
                      "after the 'listening on' line but was not handled; stderr:\n%s"
                      % (signal.Signals(-code).name, code, relay.stderr_text()))
        self.assertEqual(code, 0, relay.stderr_text())
        self.assertLess(time.monotonic() - start, 3)
        self.assert_no_crash(relay.lines)
        self.assertIsNotNone(relay.find(r"%s received" % signo.name), relay.stderr_text())
        if client is not None:
            client.close()


class UnixSocketTest(RelayTestCase):
    def test_unix_listen_path(self):
        """9. Listen on a Unix socket path; the file is removed on SIGTERM."""
        echo = self.echo_server()
        tmp = tempfile.mkdtemp(prefix="warren-it-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "x.sock")
        relay = self.start_relay(path, "127.0.0.1:%d" % echo.port)
        self.assertEqual(relay.endpoints, [path], relay.listening_line)
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))
        for _ in range(2):
            payload = os.urandom(100_000)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.settimeout(wt.WAIT)
                c.connect(path)
                c.sendall(payload)
                self.assertEqual(wt.recv_exactly(c, len(payload)), payload)
                c.shutdown(socket.SHUT_WR)
                self.assertEqual(wt.recv_until_eof(c), b"")
        self.assertEqual(echo.served, 2)
        relay.signal(signal.SIGTERM)
        self.assertEqual(relay.wait_exit(5), 0, relay.stderr_text())
        self.assertFalse(os.path.lexists(path), "socket file left behind after SIGTERM")


class FamilyTest(RelayTestCase):
    def setUp(self):
        super().setUp()
        # localhost:P with a listener on 127.0.0.1:P only; [::1]:P is held
        # by a bound, non-listening socket, so IPv6 attempts are refused.
        s4, s6, self.port = wt.free_port_pair()
        self.addCleanup(s6.close)
        self.echo = self.echo_server(sock=s4)
        self.target = "localhost:%d" % self.port

    def test_ipv6_only_fails_the_start_up_check(self):
        code, lines = wt.run_warren(["relay", "127.0.0.1:0", self.target, "--family", "ipv6"], timeout=15)
        line = self.assert_one_error_line(code, lines, context="--family ipv6")
        self.assertEqual(code, 1)
        self.assertIn("[::1]:%d" % self.port, line)
        self.assertIn("refused", line)
        self.assertNotIn("127.0.0.1", line)
        self.assertEqual(self.echo.accepted, 0)

    def test_policies_reaching_ipv4(self):
        for family in ("ipv4", "prefer-ipv4", "auto"):
            with self.subTest(family=family):
                relay = self.start_relay("127.0.0.1:0", self.target, "--family", family, "--log-level", "debug")
                before = self.echo.served
                self.assert_echo("127.0.0.1", relay.port)
                self.assertEqual(self.echo.served, before + 1)
                p = self.port
                relay.wait_for(r"conn#1: connected to 127\.0\.0\.1:%d \(IPv4\)" % p)
                v6_started = relay.find(r"conn#1: attempt \d+ to \[::1\]:%d \(IPv6\) started" % p)
                if family == "ipv4":
                    self.assertIsNone(relay.find(r"\(IPv6\) started"), relay.stderr_text())
                elif family == "prefer-ipv4":
                    self.assertIsNotNone(relay.find(r"conn#1: attempt 1 to 127\.0\.0\.1:%d \(IPv4\) started" % p),
                                         relay.stderr_text())
                    self.assertIsNone(v6_started, "IPv6 tried although IPv4 connected first")
                else:
                    self.assertIsNotNone(relay.find(r"conn#1: attempt 1 to \[::1\]:%d \(IPv6\) started" % p),
                                         relay.stderr_text())
                    self.assertIsNotNone(relay.find(r"conn#1: attempt 1 to \[::1\]:%d failed .*refused" % p),
                                         relay.stderr_text())
                relay.signal(signal.SIGTERM)
                self.assertEqual(relay.wait_exit(5), 0)


if __name__ == "__main__":
    wt.main()
