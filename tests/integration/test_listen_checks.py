#!/usr/bin/env python3
"""Integration tests of what `warren server`, `relay` and `client` check
about where they listen and whom they trust, before and while serving
(README, "Where the server listens" and "Behind a reverse proxy"):

- two listeners on one address written differently (`*` and localhost,
  [::1] and [0:0::1], client -L and -D) are named as sharing an address;
- `[0::0]` is IPv6 only and says so, for the server, relay and client;
- an IPv4-mapped listen address is an error naming the IPv4 one;
- the "listening on" line is one URL per bound address, each with its path;
- --trust-proxy refuses /0, host bits and leading zeros, warns for a very
  wide block and where no listener reads X-Forwarded-For; a peer outside it
  that sends the header gets a warning, once a minute;
- --cert-name is lower-cased without its trailing dot, refuses 0.0.0.0 and
  mapped addresses, and warns when it is ignored;
- the client explains a reverse proxy's 426, redirect and 404.

Network safety: everything listens on loopback (or the wildcard with
clients on loopback); nothing is sent anywhere else.

    python3 test_listen_checks.py --warren /path/to/warren [unittest args]
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

SHARE_RE = r"share an address: give each"


def clean_env():
    return {k: v for k, v in os.environ.items()
            if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy") and k != "WARREN_TOKEN"}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def upgrade(port, source="127.0.0.1", xff=(), path="/", token="wrong"):
    """A raw WebSocket upgrade from `source`; returns the status line."""
    s = socket.socket()
    s.settimeout(wt.WAIT)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    with s:
        head = ("GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                "Authorization: Bearer %s\r\n" % (path, token))
        for x in xff:
            head += "X-Forwarded-For: %s\r\n" % x
        s.sendall((head + "\r\n").encode())
        answer = b""
        while b"\r\n" not in answer:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n")[0].decode("latin1")


class FakeProxy(wt.TCPServer):
    """Answers every request with one canned HTTP response (a reverse proxy
    in front of a server, misconfigured)."""

    def __init__(self, response):
        self.response = response
        super().__init__(self._answer)

    def _answer(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        conn.sendall(self.response)


class ListenChecksTest(wt.WarrenTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="warren-listen-checks-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.token_file = os.path.join(self.tmp, "token")
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("listen-checks-token-0123456789\n")

    def spawn(self, argv):
        return self.track(wt.Process(argv, env=clean_env()))

    def server_argv(self, *listen, extra=(), state="state"):
        argv = [wt.WARREN, "server", "--token-file", self.token_file, "--state-dir", os.path.join(self.tmp, state),
                "--allow", "127.0.0.1"]
        for url in listen:
            argv += ["--listen", url]
        return argv + list(extra)

    def server(self, *listen, extra=(), state="state"):
        p = self.spawn(self.server_argv(*listen, extra=extra, state=state))
        p.wait_for(wt.SERVER_LISTENING_RE.pattern, timeout=20)
        return p

    def refused(self, argv):
        """Runs warren, which must exit non-zero; returns its stderr."""
        code, lines = wt.run_warren(argv[1:])
        text = "\n".join(lines)
        self.assertNotEqual(code, 0, text)
        self.assertNotIn("already in use", text)
        return text

    # -- L1: one address written two ways ----------------------------------

    def test_listeners_on_one_address_written_differently_are_named(self):
        port = free_port()
        pairs = [("wss://*:%d", "wss://localhost:%d"), ("tcp://*:%d", "ws://0.0.0.0:%d"),
                 ("ws://localhost:%d", "tcp://127.0.0.1:%d"), ("tcp://[::1]:%d", "tcp://[0:0::1]:%d"),
                 ("tcp://0.0.0.0:%d", "tcp://127.0.0.1:%d")]
        for a, b in pairs:
            with self.subTest(a=a, b=b):
                text = self.refused(self.server_argv(a % port, b % port))
                self.assertRegex(text, r"--listen \S+ and \S+ " + SHARE_RE)
        # Different families do not overlap: [::] is IPv6 only.
        p = self.server("tcp://[::]:%d" % port, "tcp://127.0.0.1:%d" % port)
        p.kill()
        # Client forwards: -L and -D on one port, written two ways.
        text = self.refused([wt.WARREN, "client", "tcp://127.0.0.1:1", "--token-file", self.token_file,
                             "-L", "%d:127.0.0.1:9" % port, "-D", "localhost:%d" % port])
        self.assertRegex(text, r"-L %d:127\.0\.0\.1:9 and -D localhost:%d %s" % (port, port, SHARE_RE))

    # -- L2, L3: IPv6 only, IPv4-mapped ------------------------------------

    def test_an_ipv6_wildcard_says_it_is_ipv6_only_everywhere(self):
        server = self.server("tcp://[0::0]:0")
        server.wait_for(r"server: tcp://\[::\]:\d+ listens on IPv6 only \(IPv4 clients are refused\); use \* for both")
        relay = self.track(wt.Relay([wt.WARREN, "relay", "[::]:0", "127.0.0.1:9"], env=clean_env()))
        relay.wait_for(r"relay: \[::\]:0 listens on IPv6 only \(IPv4 clients are refused\); use \* for both")
        client = self.spawn([wt.WARREN, "client", "tcp://127.0.0.1:1", "--token-file", self.token_file,
                             "-L", "[::]:0:127.0.0.1:9"])
        client.wait_for(r"forward: \[::\]:0 listens on IPv6 only \(IPv4 clients are refused\); use \* for both")

    def test_an_ipv4_mapped_listen_address_names_the_ipv4_one(self):
        port = free_port()
        text = self.refused(self.server_argv("wss://[::ffff:127.0.0.1]:%d" % port))
        self.assertIn("listen on 127.0.0.1:%d instead" % port, text)
        text = self.refused([wt.WARREN, "relay", "[::ffff:127.0.0.1]:%d" % port, "127.0.0.1:9"])
        self.assertIn("listen on 127.0.0.1:%d instead" % port, text)

    # -- L6: the listening line ----------------------------------------------

    def test_the_listening_line_is_one_url_per_address_each_with_its_path(self):
        p = self.spawn(self.server_argv("wss://*:0/x/", "tcp://localhost:0"))
        first = p.wait_for(wt.SERVER_LISTENING_RE.pattern, timeout=20)
        second = p.wait_for(wt.SERVER_LISTENING_RE.pattern, start=p.lines.index(first.string) + 1)
        wss = wt.server_urls(first.group(1))
        self.assertEqual(sorted((s, h, path) for s, h, _, path in wss),
                         [("wss", "0.0.0.0", "/x/"), ("wss", "::", "/x/")], first.string)
        self.assertRegex(first.string, r"listening on wss://0\.0\.0\.0:\d+/x/, wss://\[::\]:\d+/x/$")
        self.assertRegex(second.string, r"listening on tcp://127\.0\.0\.1:\d+, tcp://\[::1\]:\d+$")

    # -- M1: --trust-proxy ---------------------------------------------------

    def test_trust_proxy_refuses_every_peer_host_bits_and_leading_zeros(self):
        cases = {"0.0.0.0/0": "would trust every peer to name the client",
                 "::/0": "would trust every peer to name the client",
                 "10.1.2.3/8": "would mean 10.0.0.0/8",
                 "127.0.0.1/008": "leading zero"}
        for block, why in cases.items():
            with self.subTest(block=block):
                text = self.refused(self.server_argv("ws://127.0.0.1:0", extra=["--trust-proxy", block]))
                self.assertIn(why, text)

    def test_trust_proxy_warns_for_a_wide_block_and_where_it_reads_nothing(self):
        p = self.server("ws://127.0.0.1:0", extra=["--trust-proxy", "0.0.0.0/4"])
        p.wait_for(r"server: --trust-proxy 0\.0\.0\.0/4 is a very wide block")
        p.kill()
        p = self.server("tcp://127.0.0.1:0", extra=["--trust-proxy", "127.0.0.1/32"])
        p.wait_for(r"server: --trust-proxy has no effect: X-Forwarded-For is read only on ws:// and wss://")
        p.kill()
        p = self.server("ws://127.0.0.1:0", extra=["--trust-proxy", "127.0.0.1/32"])
        self.assertIsNone(p.find(r"--trust-proxy (has no effect|.* very wide)"), p.stderr_text())

    # -- M2: X-Forwarded-For from a peer not trusted --------------------------

    def test_forwarded_for_from_a_peer_not_trusted_is_warned_once_a_minute(self):
        p = self.spawn(self.server_argv("ws://127.0.0.1:0/t/", extra=["--trust-proxy", "127.0.0.2/32"]))
        port = int(p.wait_for(r"server: listening on ws://127\.0\.0\.1:(\d+)/t/$", timeout=20).group(1))
        warning = (r"server: X-Forwarded-For from 127\.0\.0\.3:\d+ ignored: that peer is not in a --trust-proxy "
                   r"block, so it counts as the client .*::1 as well as 127\.0\.0\.1")
        self.assertIn("401", upgrade(port, "127.0.0.3", ["198.51.100.1"], "/t/"))
        p.wait_for(warning)
        for i in range(2, 5):
            self.assertIn("401", upgrade(port, "127.0.0.3", ["198.51.100.%d" % i], "/t/"))
        # The trusted proxy's header is read (its client is logged), no warning for it.
        self.assertIn("401", upgrade(port, "127.0.0.2", ["198.51.100.9"], "/t/"))
        p.wait_for(r"198\.51\.100\.9 via 127\.0\.0\.2")
        self.assertEqual(len([l for l in p.lines if re.search(warning, l)]), 1, p.stderr_text())
        # Without X-Forwarded-For, no warning; without --trust-proxy, none either.
        q = self.spawn(self.server_argv("ws://127.0.0.1:0/t/", state="q"))
        qport = int(q.wait_for(r"server: listening on ws://127\.0\.0\.1:(\d+)/t/$", timeout=20).group(1))
        self.assertIn("401", upgrade(qport, "127.0.0.3", ["198.51.100.1"], "/t/"))
        q.wait_for(r"refused")
        self.assertIsNone(q.find(r"X-Forwarded-For"), q.stderr_text())

    # -- L4: --cert-name ------------------------------------------------------

    def test_cert_names_are_lower_case_without_trailing_dot(self):
        p = self.server("wss://127.0.0.1:0", extra=["--cert-name", "GW.Example.COM."], state="named")
        cert = os.path.join(self.tmp, "named", "cert.pem")
        sans = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-ext", "subjectAltName"], check=True,
                              stdout=subprocess.PIPE, timeout=30).stdout.decode()
        self.assertIn("DNS:gw.example.com", sans)
        self.assertNotIn("GW", sans)
        verify = subprocess.run(["openssl", "verify", "-CAfile", cert, "-verify_hostname", "gw.example.com", cert],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(verify.returncode, 0, verify.stdout.decode())
        p.kill()
        # The same name written otherwise later: the kept certificate names it.
        p = self.server("wss://127.0.0.1:0", extra=["--cert-name", "gw.example.com"], state="named")
        p.kill()
        self.assertIsNone(p.find(r"does not name"), p.stderr_text())

    def test_cert_name_refuses_what_clients_cannot_connect_to_and_says_when_ignored(self):
        for bad, why in (("0.0.0.0", "any-address"), ("::", "any-address"),
                         ("::ffff:1.2.3.4", "give 1.2.3.4 instead")):
            with self.subTest(bad=bad):
                text = self.refused(self.server_argv("wss://127.0.0.1:0", extra=["--cert-name", bad]))
                self.assertIn(why, text)
        p = self.server("tcp://127.0.0.1:0", extra=["--cert-name", "gw.example"])
        p.wait_for(r"--cert-name is ignored: no --listen is wss:// or tls://")
        p.kill()
        made = self.server("wss://127.0.0.1:0", state="made")
        made.kill()
        state = os.path.join(self.tmp, "made")
        p = self.server("wss://127.0.0.1:0", extra=["--cert", os.path.join(state, "cert.pem"), "--key",
                                                    os.path.join(state, "key.pem"), "--cert-name", "gw.example"])
        p.wait_for(r"--cert-name is ignored: it names the generated certificate, and --cert gives one")

    # -- L5: the client explains a reverse proxy's answer -----------------------

    def test_client_explains_426_redirect_and_404(self):
        cases = [
            (b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n",
             r"HTTP 426 Upgrade Required \(a reverse proxy .* must forward the Upgrade and Connection headers"),
            (b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://localhost/tunnel/\r\nContent-Length: 0\r\n\r\n",
             r"HTTP 301 Moved Permanently \(redirected to 'https://localhost/tunnel/'; .*trailing slash"),
            (b"HTTP/1.1 308 Permanent Redirect\r\nContent-Length: 0\r\n\r\n",
             r"HTTP 308 Permanent Redirect \(redirected; a WebSocket upgrade does not follow redirects"),
            (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
             r"HTTP 404 Not Found \(no tunnel at this path: check the URL's path against the server's --listen"),
        ]
        for response, hint in cases:
            with self.subTest(status=response.split(b"\r\n")[0]):
                proxy = self.track(FakeProxy(response))
                c = self.spawn([wt.WARREN, "client", "ws://127.0.0.1:%d/tunnel" % proxy.port, "--token-file",
                                self.token_file, "-L", "0:127.0.0.1:9"])
                c.wait_for(hint, timeout=20)
                c.kill()


if __name__ == "__main__":
    wt.main()
