#!/usr/bin/env python3
"""Integration tests of how `warren server` listens (README, "Where the
server listens"): `*` serves IPv4 and IPv6 clients, `localhost` both
loopbacks, several --listen at once, `[::]` is IPv6 only and says so, a port
in use on one of localhost's addresses is fatal for every listener (server,
relay, client -L), and the generated certificate names the host, not
0.0.0.0.

Network safety: everything listens on loopback or on the wildcard with
clients on loopback; every server allows loopback destinations only.

    python3 test_listen.py --warren /path/to/warren [unittest args]
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warren_test as wt  # noqa: E402

LISTENING_RE = wt.SERVER_LISTENING_RE
FINGERPRINT_RE = r"server: certificate fingerprint (sha256:[0-9A-Fa-f:]+)"
FORWARD_RE = re.compile(r"forward: TCP (.+) -> (\S+)$")
CONNECTED_RE = r"tunnel: connected to \S+ at \S+ \(IPv[46]\) in \d+ ms"


def clean_env():
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy") and k != "WARREN_TOKEN"}
    return env


def openssl_text(cert, *what):
    return subprocess.run(["openssl", "x509", "-in", cert, "-noout"] + list(what), check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30).stdout.decode()


class ListenTest(wt.WarrenTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="warren-listen-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.token_file = os.path.join(self.tmp, "token")
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("listen-test-token-0123456789\n")
        self.echo = self.track(wt.EchoServer())

    def spawn(self, argv):
        return self.track(wt.Process(argv, env=clean_env()))

    def server(self, *listen, extra=(), state="state"):
        """A server on the given --listen URLs; returns (process, [(url,
        [(host, port)...])...], pin)."""
        argv = [wt.WARREN, "server", "--token-file", self.token_file, "--state-dir",
                os.path.join(self.tmp, state), "--allow", "127.0.0.1", "--log-level", "debug"]
        for url in listen:
            argv += ["--listen", url]
        p = self.spawn(argv + list(extra))
        first = p.wait_for(LISTENING_RE.pattern, timeout=20)
        start = p.lines.index(first.string)
        # The listening lines are logged together, one per --listen, in order.
        p.wait_for(LISTENING_RE.pattern, start=start + len(listen) - 1)
        lines = [l for l in p.lines[start:] if LISTENING_RE.search(l)][:len(listen)]
        bound = []
        for line in lines:
            m = LISTENING_RE.search(line)
            urls = wt.server_urls(m.group(1))
            bound.append((urls[0][0], [(h, port) for _, h, port, _ in urls]))
        pin = None
        i = p.find(FINGERPRINT_RE)
        if i is not None:
            pin = re.search(FINGERPRINT_RE, p.lines[i]).group(1)
        return p, bound, pin

    def client(self, url, pin=None):
        argv = [wt.WARREN, "client", url, "--token-file", self.token_file, "--log-level", "debug",
                "-L", "0:127.0.0.1:%d" % self.echo.port]
        if pin:
            argv += ["--pin", pin]
        p = self.spawn(argv)
        m = p.wait_for(FORWARD_RE.pattern)
        p.port = wt.parse_host_port(m.group(1).split(", ")[0])[1]
        p.wait_for(CONNECTED_RE, timeout=20)
        return p

    def assert_echoes(self, client, what):
        s = wt.connect("127.0.0.1", client.port)
        with s:
            data = os.urandom(4096)
            s.sendall(data)
            self.assertEqual(wt.recv_exactly(s, len(data)), data, what)

    # -- tests -------------------------------------------------------------

    def test_wildcard_serves_ipv4_and_ipv6_clients(self):
        server, bound, pin = self.server("wss://*:0")
        self.assertEqual(bound[0][0], "wss")
        hosts = sorted(h for h, _ in bound[0][1])
        self.assertEqual(hosts, ["0.0.0.0", "::"], server.stderr_text())
        port = bound[0][1][0][1]
        self.assertTrue(all(p == port for _, p in bound[0][1]), "one port for both: %r" % bound)
        v4 = self.client("wss://127.0.0.1:%d" % port, pin)
        v6 = self.client("wss://[::1]:%d" % port, pin)
        self.assert_echoes(v4, "IPv4 client")
        self.assert_echoes(v6, "IPv6 client")
        server.wait_for(r"client#\d+ 127\.0\.0\.1:\d+ \(user default\) connected over wss")
        server.wait_for(r"client#\d+ \[::1\]:\d+ \(user default\) connected over wss")

    def test_two_listens_wss_and_tcp_on_localhost(self):
        server, bound, pin = self.server("wss://127.0.0.1:0/t/", "tcp://localhost:0")
        self.assertEqual([scheme for scheme, _ in bound], ["wss", "tcp"])
        self.assertEqual(sorted(h for h, _ in bound[1][1]), ["127.0.0.1", "::1"], "localhost is both loopbacks")
        wss = self.client("wss://127.0.0.1:%d/t/" % bound[0][1][0][1], pin)
        tcp4 = self.client("tcp://127.0.0.1:%d" % bound[1][1][0][1])
        tcp6 = self.client("tcp://[::1]:%d" % bound[1][1][0][1])
        for c, what in ((wss, "wss"), (tcp4, "tcp over IPv4"), (tcp6, "tcp over IPv6")):
            self.assert_echoes(c, what)
        server.wait_for(r"connected over wss")
        server.wait_for(r"connected over tcp")

    def test_ipv6_wildcard_is_ipv6_only_and_says_so(self):
        server, bound, pin = self.server("tcp://[::]:0")
        port = bound[0][1][0][1]
        server.wait_for(r"server: tcp://\[::\]:%d listens on IPv6 only \(IPv4 clients are refused\); use \* for both"
                        % port)
        self.assert_echoes(self.client("tcp://[::1]:%d" % port), "IPv6 client")
        with self.assertRaises(ConnectionRefusedError):
            wt.connect("127.0.0.1", port).close()

    def test_same_address_twice_is_an_error(self):
        code, lines = wt.run_warren(["server", "--token-file", self.token_file, "--listen", "tcp://127.0.0.1:7",
                                     "--listen", "wss://127.0.0.1:7"])
        self.assertNotEqual(code, 0)
        self.assertIn("share an address", "\n".join(lines))

    def test_port_in_use_on_one_loopback_is_fatal_for_every_listener(self):
        # Another program holds [::1]:P only: clients trying ::1 first
        # (macOS, browsers) would reach it, so `localhost:P` must not come up
        # on 127.0.0.1 alone — for the server, the relay and client -L.
        holder = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.addCleanup(holder.close)
        holder.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        holder.bind(("::1", 0))
        holder.listen(8)
        port = holder.getsockname()[1]
        in_use = r"cannot listen on \[::1\]:%d: port %d is already in use" % (port, port)
        runs = {
            "server": ["server", "--token-file", self.token_file, "--state-dir", os.path.join(self.tmp, "s"),
                       "--listen", "wss://localhost:%d" % port],
            "relay": ["relay", "localhost:%d" % port, "127.0.0.1:%d" % self.echo.port],
            "client": ["client", "tcp://127.0.0.1:1", "--token-file", self.token_file,
                       "-L", "localhost:%d:127.0.0.1:%d" % (port, self.echo.port)],
        }
        for name, argv in runs.items():
            with self.subTest(name):
                code, lines = wt.run_warren(argv)
                text = "\n".join(lines)
                self.assertNotEqual(code, 0, "%s came up on half of localhost:\n%s" % (name, text))
                self.assertRegex(text, in_use)
                self.assertNotIn("skipped", text)

    def test_generated_certificate_names_the_host(self):
        host = socket.gethostname()
        server, bound, pin = self.server("wss://*:0", state="wild")
        cert = os.path.join(self.tmp, "wild", "cert.pem")
        self.assertIn("CN = %s" % host, openssl_text(cert, "-subject"))
        sans = openssl_text(cert, "-ext", "subjectAltName")
        for name in ("DNS:%s" % host, "DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1"):
            self.assertIn(name, sans)
        self.assertNotIn("0.0.0.0", sans)
        server.kill()

        # --cert-name replaces the host name; a listen address is named too.
        server, bound, pin = self.server("wss://127.0.0.1:0", extra=["--cert-name", "tunnel.example",
                                                                     "--cert-name", "203.0.113.9"], state="named")
        cert = os.path.join(self.tmp, "named", "cert.pem")
        self.assertIn("CN = tunnel.example", openssl_text(cert, "-subject"))
        sans = openssl_text(cert, "-ext", "subjectAltName")
        for name in ("DNS:tunnel.example", "IP Address:203.0.113.9", "IP Address:127.0.0.1", "DNS:localhost"):
            self.assertIn(name, sans)
        self.assertNotIn("DNS:%s" % host, sans)
        # A client checking the name (not a pin) gets through with --ca.
        c = self.spawn([wt.WARREN, "client", "wss://127.0.0.1:%d" % bound[0][1][0][1], "--ca", cert,
                        "--token-file", self.token_file, "-L", "0:127.0.0.1:%d" % self.echo.port])
        c.port = wt.parse_host_port(c.wait_for(FORWARD_RE.pattern).group(1).split(", ")[0])[1]
        c.wait_for(CONNECTED_RE, timeout=20)
        self.assert_echoes(c, "verified by name")
        server.kill()

        # Asked for other names later, the pair is kept (clients pin it) and the server says what it lacks.
        server, bound, again = self.server("wss://127.0.0.1:0", extra=["--cert-name", "other.example"],
                                           state="named")
        self.assertEqual(again, pin)
        server.wait_for(r"does not name other\.example; it is kept, as clients pin its fingerprint")

        code, lines = wt.run_warren(["server", "--token-file", self.token_file, "--state-dir",
                                     os.path.join(self.tmp, "bad"), "--cert-name", "bad name"])
        self.assertNotEqual(code, 0)
        self.assertIn("is not a host name or an address", "\n".join(lines))


if __name__ == "__main__":
    wt.main()
