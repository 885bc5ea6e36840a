#!/usr/bin/env python3
"""The client through proxies, with real ones from Debian: tinyproxy (HTTP
CONNECT, Basic auth, ConnectPort) via --proxy and via HTTPS_PROXY, NO_PROXY
and --proxy none, each refusal reported as what it is (407, 403, 500/502),
dante (SOCKS5, socks5:// and socks5h://), warren's own -D with a password
as a SOCKS5 proxy, and --server-name against a certificate for a name.

Network safety: tinyproxy, dante, warren and the web server listen on
127.0.0.1 only; the proxies allow loopback destinations only (tinyproxy
only the test's ports, dante 127.0.0.0/8), and the warren server allows
only the test's web server.

Tools: tinyproxy, danted (dante-server), openssl, curl (scripts/deps);
without tinyproxy the file is skipped, without dante its test is.

    python3 test_proxy.py --warren /path/to/warren [unittest args]
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_tunnel as tt  # noqa: E402
import warren_test as wt  # noqa: E402

PROXY_PASSWORD = "pw-Zx81-secret"


def wait_port(port, timeout=wt.WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nothing listens on 127.0.0.1:%d after %.0fs" % (port, timeout))


class Peer:
    """A third-party proxy run in the foreground; its log is a file."""

    def __init__(self, process, port, log):
        self.process, self.port, self.log = process, port, log

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def close(self):
        self.process.kill()


class ProxyTest(tt.TunnelTestCase):
    def setUp(self):
        super().setUp()
        self.client_env = {}
        self.other_tokens = [PROXY_PASSWORD]  # tearDown: never in a warren log

    def spawn(self, argv):
        env = tt.clean_env()
        env.update(self.client_env)
        return self.track(wt.Process(argv, env=env))

    # -- peers ---------------------------------------------------------------

    def tinyproxy(self, connect_ports, basic_auth=False):
        for _ in range(5):
            port = tt.free_port(udp=False, v6=False)
            d = os.path.join(self.tmp, "tinyproxy-%d" % port)
            os.makedirs(d)
            log = os.path.join(d, "log")
            lines = ["Port %d" % port, "Listen 127.0.0.1", "Timeout 30", 'LogFile "%s"' % log, "LogLevel Info",
                     "MaxClients 50", "Allow 127.0.0.1"]
            lines += ["ConnectPort %d" % p for p in connect_ports]
            if basic_auth:
                lines.append("BasicAuth proxyuser %s" % PROXY_PASSWORD)
            conf = os.path.join(d, "tinyproxy.conf")
            with open(conf, "w") as f:
                f.write("\n".join(lines) + "\n")
            p = self.track(wt.Process(["tinyproxy", "-d", "-c", conf], env=tt.clean_env()))
            try:
                wait_port(port)
            except AssertionError:
                if "Address already in use" in self._read(log) + p.stderr_text():
                    p.kill()
                    continue
                raise
            return Peer(p, port, log)
        self.fail("tinyproxy did not start")

    def danted(self):
        for _ in range(5):
            port = tt.free_port(udp=False, v6=False)
            log = os.path.join(self.tmp, "danted-%d.log" % port)
            conf = os.path.join(self.tmp, "danted-%d.conf" % port)
            with open(conf, "w") as f:
                f.write("logoutput: %s\ninternal: 127.0.0.1 port = %d\nexternal: 127.0.0.1\n"
                        "socksmethod: none\nclientmethod: none\n" % (log, port))
                if os.geteuid() == 0:
                    f.write("user.privileged: root\nuser.unprivileged: nobody\n")
                f.write("client pass {\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  log: connect error\n}\n"
                        "socks pass {\n  from: 127.0.0.0/8 to: 127.0.0.0/8\n  command: connect\n"
                        "  log: connect error\n}\n")
            p = self.track(wt.Process(["danted", "-f", conf, "-N", "1"], env=tt.clean_env()))
            try:
                wait_port(port)
            except AssertionError:
                if "in use" in self._read(log):
                    p.kill()
                    continue
                raise
            return Peer(p, port, log)
        self.fail("danted did not start")

    @staticmethod
    def _read(path):
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def run_client(self, server, extra, timeout=20):
        """Runs a client expected to give up; returns (exit code, stderr)."""
        argv = [wt.WARREN, "client", server.url, "--token-file", self.token_file, "--log-level", "debug",
                "-L", "0:127.0.0.1:9"]
        if server.pin:
            argv += ["--pin", server.pin]
        env = tt.clean_env()
        env.update(self.client_env)
        p = subprocess.run(argv + list(extra), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env, timeout=timeout)
        text = p.stderr.decode("utf-8", "replace")
        for secret in (self.token, PROXY_PASSWORD):
            self.assertNotIn(secret, text)
        return p.returncode, text

    def web_and_server(self):
        web = self.http_server()
        server = self.start_server(allow=("127.0.0.1:%d" % web.port,))
        return web, server

    def assert_tunnel_works(self, client, context):
        self.assert_curl_blob(self.v4_port(client.forwards[0]), context=context)

    # -- HTTP CONNECT ------------------------------------------------------

    def test_01_wss_through_tinyproxy_flag(self):
        web, server = self.web_and_server()
        proxy = self.tinyproxy([server.port])
        client = self.start_client(server, local=["0:127.0.0.1:%d" % web.port],
                                   extra=["--proxy", "http://127.0.0.1:%d" % proxy.port])
        self.assert_tunnel_works(client, "through tinyproxy")
        client.wait_for(r"client: through the proxy http://127\.0\.0\.1:%d \(from --proxy\)" % proxy.port)
        # The steps, each with its timing.
        client.wait_for(r"TCP connected to the proxy 127\.0\.0\.1:%d \(IPv4\) in \d+ ms" % proxy.port)
        client.wait_for(r"proxy http://127\.0\.0\.1:%d answered CONNECT 127\.0\.0\.1:%d with 200 .* in \d+ ms"
                        % (proxy.port, server.port))
        client.wait_for(r"TLSv1\.3 handshake done")
        self.assertIn("CONNECT 127.0.0.1:%d HTTP/1.1" % server.port, proxy.log_text())

    def test_02_wss_through_https_proxy_variable(self):
        web, server = self.web_and_server()
        proxy = self.tinyproxy([server.port])
        self.client_env = {"HTTPS_PROXY": "http://127.0.0.1:%d" % proxy.port}
        client = self.start_client(server, local=["0:127.0.0.1:%d" % web.port])
        self.assert_tunnel_works(client, "through HTTPS_PROXY")
        client.wait_for(r"client: through the proxy http://127\.0\.0\.1:%d \(from HTTPS_PROXY\)" % proxy.port)
        self.assertIn("CONNECT 127.0.0.1:%d HTTP/1.1" % server.port, proxy.log_text())
        client.kill()
        # A proxy by name: Happy Eyeballs over its addresses (tinyproxy is on
        # 127.0.0.1 only, so ::1 is refused and IPv4 wins).
        self.client_env = {"https_proxy": "http://localhost:%d" % proxy.port}
        client = self.start_client(server, local=["0:127.0.0.1:%d" % web.port])
        self.assert_tunnel_works(client, "through https_proxy=localhost")
        client.wait_for(r"proxy connect: connected to 127\.0\.0\.1:%d \(IPv4\)" % proxy.port)
        client.wait_for(r"client: through the proxy http://localhost:%d \(from https_proxy\)" % proxy.port)

    def test_03_no_proxy_and_proxy_none_bypass_the_variable(self):
        web, server = self.web_and_server()
        proxy = self.tinyproxy([server.port])
        with self.subTest("NO_PROXY"):
            self.client_env = {"HTTPS_PROXY": "http://127.0.0.1:%d" % proxy.port, "NO_PROXY": "localhost,127.0.0.0/8"}
            client = self.start_client(server, local=["0:127.0.0.1:%d" % web.port])
            self.assert_tunnel_works(client, "NO_PROXY")
            client.wait_for(r"client: no proxy for wss://127\.0\.0\.1:%d \(NO_PROXY lists it\)" % server.port)
            client.kill()
        with self.subTest("--proxy none"):
            # all_proxy points at a port where nothing listens: used, it would fail.
            self.client_env = {"all_proxy": "http://127.0.0.1:%d" % tt.free_port(udp=False, v6=False)}
            client = self.start_client(server, local=["0:127.0.0.1:%d" % web.port], extra=["--proxy", "none"])
            self.assert_tunnel_works(client, "--proxy none")
            client.wait_for(r"client: no proxy for .* \(--proxy none\)")
        self.assertNotIn("CONNECT 127.0.0.1", proxy.log_text())

    def test_04_basic_auth_with_password_file(self):
        web, server = self.web_and_server()
        proxy = self.tinyproxy([server.port], basic_auth=True)
        pw = self.write_secret("proxy-password", PROXY_PASSWORD + "\n")
        client = self.start_client(server, local=["0:127.0.0.1:%d" % web.port],
                                   extra=["--proxy", "http://proxyuser@127.0.0.1:%d" % proxy.port,
                                          "--proxy-password-file", pw])
        self.assert_tunnel_works(client, "with Basic auth")
        client.wait_for(r"client: through the proxy http://127\.0\.0\.1:%d \(from --proxy\), as user proxyuser"
                        % proxy.port)
        # --proxy-user instead of user@ in the URL works the same.
        client2 = self.start_client(server, local=["0:127.0.0.1:%d" % web.port],
                                    extra=["--proxy", "http://127.0.0.1:%d" % proxy.port, "--proxy-user",
                                           "proxyuser", "--proxy-password-file", pw])
        self.assert_tunnel_works(client2, "with --proxy-user")

    def test_05_password_in_url_works_but_warns(self):
        web, server = self.web_and_server()
        proxy = self.tinyproxy([server.port], basic_auth=True)
        client = self.start_client(server, local=["0:127.0.0.1:%d" % web.port],
                                   extra=["--proxy", "http://proxyuser:%s@127.0.0.1:%d" % (PROXY_PASSWORD,
                                                                                          proxy.port)])
        self.assert_tunnel_works(client, "password in the URL")
        client.wait_for(r"--proxy: the password in the URL is visible to every user of this machine")
        client.kill()
        # In a variable (readable by this user only) it is taken silently.
        self.client_env = {"HTTPS_PROXY": "http://proxyuser:%s@127.0.0.1:%d" % (PROXY_PASSWORD, proxy.port)}
        client = self.start_client(server, local=["0:127.0.0.1:%d" % web.port])
        self.assert_tunnel_works(client, "password in HTTPS_PROXY")
        self.assertIsNone(client.find(r"password in the URL"), client.stderr_text())
        # tearDown: the password is in no warren log line.

    def test_06_proxy_wants_credentials_407(self):
        web, server = self.web_and_server()
        proxy = self.tinyproxy([server.port], basic_auth=True)
        with self.subTest("no credentials"):
            code, text = self.run_client(server, ["--proxy", "http://127.0.0.1:%d" % proxy.port])
            self.assertNotEqual(code, 0, text)
            self.assertIn("the proxy http://127.0.0.1:%d wants credentials (407 Proxy Authentication Required): "
                          "pass --proxy-user and --proxy-password-file" % proxy.port, text)
        with self.subTest("wrong password"):
            wrong = self.write_secret("wrong", "not-the-password\n")
            code, text = self.run_client(server, ["--proxy", "http://127.0.0.1:%d" % proxy.port,
                                                  "--proxy-user", "proxyuser", "--proxy-password-file", wrong])
            self.assertNotEqual(code, 0, text)
            # tinyproxy answers wrong credentials with 401 (others with 407).
            self.assertRegex(text, r"the proxy http://127\.0\.0\.1:%d refused the user name or password "
                                   r"\((401 Unauthorized|407 Proxy Authentication Required)\): check --proxy-user"
                             % proxy.port)
            self.assertNotIn("not-the-password", text)
            # Permanent, like a bad token: one attempt, no retry loop.
            self.assertNotIn("retrying in", text)

    def test_07_proxy_refuses_the_port_403(self):
        web, server = self.web_and_server()
        proxy = self.tinyproxy([server.port + 1 if server.port < 65535 else server.port - 1])
        code, text = self.run_client(server, ["--proxy", "http://127.0.0.1:%d" % proxy.port])
        self.assertNotEqual(code, 0, text)
        self.assertIn("the proxy http://127.0.0.1:%d refused to connect to 127.0.0.1:%d (403 Access violation): "
                      "its rules do not allow this destination or port" % (proxy.port, server.port), text)
        self.assertNotIn("retrying in", text)

    def test_08_proxy_cannot_reach_the_server(self):
        down = tt.free_port(udp=False, v6=False)
        proxy = self.tinyproxy([down])
        server = type("S", (), {"url": "wss://127.0.0.1:%d" % down, "pin": None})()
        client = self.spawn([wt.WARREN, "client", server.url, "--token-file", self.token_file, "--log-level",
                             "debug", "-L", "0:127.0.0.1:9", "--proxy", "http://127.0.0.1:%d" % proxy.port])
        self.warrens.append(client)
        # Not permanent: the server may come back; the client retries.
        client.wait_for(r"tunnel: cannot connect to wss://127\.0\.0\.1:%d: the proxy http://127\.0\.0\.1:%d could "
                        r"not reach 127\.0\.0\.1:%d \(500 Unable to connect\); retrying in" % (down, proxy.port, down),
                        timeout=20)
        self.assertIsNone(client.proc.poll())

    def test_09_proxy_down(self):
        _, server = self.web_and_server()
        dead = tt.free_port(udp=False, v6=False)
        client = self.spawn([wt.WARREN, "client", server.url, "--token-file", self.token_file, "--pin", server.pin,
                             "-L", "0:127.0.0.1:9", "--proxy", "http://127.0.0.1:%d" % dead])
        self.warrens.append(client)
        client.wait_for(r"cannot connect to .*: cannot reach the proxy http://127\.0\.0\.1:%d: .*refused.*; "
                        r"retrying in" % dead, timeout=20)

    # -- SOCKS5 --------------------------------------------------------------

    def test_10_socks5_through_dante(self):
        if tt.need("danted"):
            self.skipTest(tt.need("danted"))
        web, server = self.web_and_server()
        proxy = self.danted()
        for scheme, host in (("socks5h", "localhost"), ("socks5", "localhost"), ("socks5", "127.0.0.1")):
            with self.subTest(scheme=scheme, host=host):
                url = "wss://%s:%d" % (host, server.port)
                client = self.start_client(server, url=url, local=["0:127.0.0.1:%d" % web.port],
                                           extra=["--proxy", "%s://127.0.0.1:%d" % (scheme, proxy.port)])
                self.assert_tunnel_works(client, "through dante, %s" % scheme)
                client.wait_for(r"proxy %s://127\.0\.0\.1:%d answered SOCKS5 CONNECT %s:%d: succeeded"
                                % (scheme, proxy.port, "127\\.0\\.0\\.1" if scheme == "socks5" else host,
                                   server.port))
                client.kill()
        self.assertRegex(proxy.log_text(), r"tcp/connect \[: .* -> 127\.0\.0\.1\.\d+ 127\.0\.0\.1\.%d" % server.port)

    def test_11_socks5_with_password_through_warren_d(self):
        """warren's own -D with --socks-user as the SOCKS5 proxy (RFC 1929)."""
        web, server = self.web_and_server()
        # A second server for the proxy's own tunnel, allowed to reach the first server.
        outer = self.start_server(allow=("127.0.0.1:%d" % server.port,))
        pw = self.write_secret("proxy-password", PROXY_PASSWORD + "\n")
        socks = self.start_client(outer, dynamic=["127.0.0.1:0"],
                                  extra=["--socks-user", "proxyuser", "--socks-password-file", pw])
        sport = socks.forwards[0]["port"]
        client = self.start_client(server, local=["0:127.0.0.1:%d" % web.port],
                                   extra=["--proxy", "socks5h://proxyuser@127.0.0.1:%d" % sport,
                                          "--proxy-password-file", pw])
        self.assert_tunnel_works(client, "through warren -D")
        wrong = self.write_secret("wrong", "nope\n")
        code, text = self.run_client(server, ["--proxy", "socks5h://proxyuser@127.0.0.1:%d" % sport,
                                              "--proxy-password-file", wrong])
        self.assertNotEqual(code, 0, text)
        self.assertIn("the proxy socks5h://127.0.0.1:%d refused the user name or password" % sport, text)
        code, text = self.run_client(server, ["--proxy", "socks5h://127.0.0.1:%d" % sport])
        self.assertNotEqual(code, 0, text)
        self.assertIn("the proxy socks5h://127.0.0.1:%d wants credentials" % sport, text)
        # A destination the proxy's rules deny (the outer server allows only
        # the first server's port): SOCKS5 "not allowed", permanent.
        other = self.start_server(allow=("127.0.0.1:%d" % web.port,))
        code, text = self.run_client(other, ["--proxy", "socks5h://proxyuser@127.0.0.1:%d" % sport,
                                             "--proxy-password-file", pw])
        self.assertEqual(code, 1, text)
        self.assertIn("the proxy socks5h://127.0.0.1:%d refused to connect to 127.0.0.1:%d (SOCKS5: "
                      % (sport, other.port), text)
        self.assertIn("its rules do not allow this destination or port", text)
        self.assertNotIn("retrying in", text)

    # -- a hostile or broken proxy ---------------------------------------------

    def fake_proxy(self, reply):
        """A proxy that reads the CONNECT request and answers `reply` (None:
        nothing), then holds the connection until the client closes it."""
        def handler(conn):
            try:
                conn.settimeout(30)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                if reply is not None:
                    conn.sendall(reply)
                while conn.recv(65536):
                    pass
            except OSError:
                pass
        return self.track(wt.TCPServer(handler))

    def test_15_bad_proxy_replies_are_contained(self):
        """Garbage, an endless header, bytes after the 200 and silence: each a
        clear sentence, then the usual retry; the client stays up."""
        _, server = self.web_and_server()
        cases = [
            (b"SSH-2.0-OpenSSH_9.2\r\n", r"the proxy {proxy} answered the CONNECT badly: its answer is not HTTP "
                                         r"\(starts with 'SSH-2\.0-OpenSSH_'\); is it a SOCKS proxy\? use socks5://"),
            (b"HTTP/1.1 200 OK\r\nX-Filler: " + b"a" * (40 << 10),
             r"the proxy {proxy} answered the CONNECT badly: its reply header is longer than 16 KiB"),
            (b"HTTP/1.1 200 Connection established\r\n\r\nSURPRISE",
             r"the proxy {proxy} sent data after its 200 reply, before the server could have spoken"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n",
             r"the proxy {proxy} answered the CONNECT badly: it sent a bad Content-Length '12x'"),
            (None, r"the proxy handshake with {proxy} timed out after 10s"),
        ]
        for reply, want in cases:
            with self.subTest(want=want):
                proxy = self.fake_proxy(reply)
                client = self.spawn([wt.WARREN, "client", server.url, "--token-file", self.token_file, "--pin",
                                     server.pin, "-L", "0:127.0.0.1:9", "--proxy",
                                     "http://127.0.0.1:%d" % proxy.port])
                self.warrens.append(client)
                want = want.replace("{proxy}", r"http://127\.0\.0\.1:%d" % proxy.port)
                client.wait_for(r"tunnel: cannot connect to wss://127\.0\.0\.1:%d: %s; retrying in"
                                % (server.port, want), timeout=20)
                self.assertIsNone(client.proc.poll())
                client.kill()

    def test_16_refusals_exit_or_retry(self):
        """400/405/501 and 403 end the client at once (with a 403 body that is
        read but never shown); 502 is retried."""
        _, server = self.web_and_server()
        body = b"<html>BODY-MARKER</html>"
        for reply, want, exits in (
                (b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n",
                 "does not allow CONNECT to 127.0.0.1:%d (405 Method Not Allowed)" % server.port, True),
                (b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
                 "refused to connect to 127.0.0.1:%d (403 Forbidden): its rules do not allow" % server.port, True),
                (b"HTTP/1.0 502 Bad Gateway\r\n\r\n",
                 "could not reach 127.0.0.1:%d (502 Bad Gateway); retrying in" % server.port, False)):
            with self.subTest(want=want):
                proxy = self.fake_proxy(reply)
                args = ["--proxy", "http://127.0.0.1:%d" % proxy.port]
                if exits:
                    code, text = self.run_client(server, args)
                    self.assertEqual(code, 1, text)
                    self.assertIn(want, text)
                    self.assertNotIn("retrying in", text)
                    self.assertNotIn("BODY-MARKER", text)
                else:
                    client = self.spawn([wt.WARREN, "client", server.url, "--token-file", self.token_file, "--pin",
                                         server.pin, "-L", "0:127.0.0.1:9"] + args)
                    self.warrens.append(client)
                    client.wait_for(re.escape(want), timeout=20)
                    client.kill()

    def test_17_ws_reads_http_proxy_lowercase_only(self):
        """ws:// through a loopback proxy from http_proxy (the token may pass:
        proxy and server are both on this machine); HTTP_PROXY is ignored."""
        web = self.http_server()
        server = self.start_server(scheme="ws", allow=("127.0.0.1:%d" % web.port,))
        proxy = self.tinyproxy([server.port])
        with self.subTest("http_proxy"):
            self.client_env = {"http_proxy": "http://127.0.0.1:%d" % proxy.port}
            client = self.start_client(server, local=["0:127.0.0.1:%d" % web.port])
            self.assert_tunnel_works(client, "ws:// through http_proxy")
            client.wait_for(r"client: through the proxy http://127\.0\.0\.1:%d \(from http_proxy\)" % proxy.port)
            self.assertIn("CONNECT 127.0.0.1:%d HTTP/1.1" % server.port, proxy.log_text())
            client.kill()
        with self.subTest("HTTP_PROXY"):
            dead = tt.free_port(udp=False, v6=False)
            self.client_env = {"HTTP_PROXY": "http://127.0.0.1:%d" % dead}
            client = self.start_client(server, local=["0:127.0.0.1:%d" % web.port])
            self.assert_tunnel_works(client, "HTTP_PROXY ignored")
            self.assertIsNone(client.find(r"through the proxy"), client.stderr_text())

    def test_18_server_name_is_the_host_header(self):
        """ws://ADDRESS with --server-name: the upgrade's Host names the server."""
        seen = []

        def handler(conn):
            try:
                conn.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                seen.append(data.decode("latin-1"))
                conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass

        fake = self.track(wt.TCPServer(handler))
        server = type("S", (), {"url": "ws://127.0.0.1:%d" % fake.port, "pin": None})()
        code, text = self.run_client(server, ["--server-name", "gw.test"])
        self.assertEqual(code, 1, text)
        self.assertIn("the token was refused", text)
        self.assertEqual(len(seen), 1, seen)
        self.assertRegex(seen[0], r"(?im)^Host: gw\.test:%d\r$" % fake.port)

    # -- --server-name -----------------------------------------------------

    def make_cert(self, name):
        if tt.need("openssl"):
            self.skipTest(tt.need("openssl"))
        cert, key = os.path.join(self.tmp, "cert.pem"), os.path.join(self.tmp, "key.pem")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                            "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + name,
                            "-addext", "subjectAltName=DNS:" + name], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        return cert, key

    def test_12_server_name_by_address(self):
        cert, key = self.make_cert("gw.test")
        web = self.http_server()
        server = self.start_server(allow=("127.0.0.1:%d" % web.port,), extra=["--cert", cert, "--key", key])
        server.pin = None  # verified by --ca and the name, not pinned
        with self.subTest("without --server-name"):
            code, text = self.run_client(server, ["--ca", cert])
            self.assertNotEqual(code, 0, text)
            self.assertIn("certificate verification failed", text)
        with self.subTest("direct"):
            client = self.start_client(server, local=["0:127.0.0.1:%d" % web.port],
                                       extra=["--ca", cert, "--server-name", "gw.test"])
            self.assert_tunnel_works(client, "--server-name")
            client.kill()
        with self.subTest("through tinyproxy"):
            proxy = self.tinyproxy([server.port])
            client = self.start_client(server, local=["0:127.0.0.1:%d" % web.port],
                                       extra=["--ca", cert, "--server-name", "gw.test",
                                              "--proxy", "http://127.0.0.1:%d" % proxy.port])
            self.assert_tunnel_works(client, "--server-name through a proxy")
        with self.subTest("wrong name"):
            code, text = self.run_client(server, ["--ca", cert, "--server-name", "other.test"])
            self.assertNotEqual(code, 0, text)
            self.assertIn("not for this host name", text)

    # -- the token in clear ---------------------------------------------------

    def test_13_clear_token_needs_a_local_path(self):
        """ws:// to a loopback server through a proxy elsewhere: the proxy
        would read the token, so it is refused as without a proxy."""
        server = self.start_server(scheme="ws", allow=())
        code, text = self.run_client(server, ["--proxy", "http://proxy.invalid:3128"])
        self.assertNotEqual(code, 0, text)
        self.assertIn("refusing to send the token in clear text over ws:// to 127.0.0.1 through the proxy "
                      "http://proxy.invalid:3128", text)

    def test_14_bad_proxy_settings_are_start_up_errors(self):
        _, server = self.web_and_server()
        cases = [
            (["--proxy", "ftp://u:%s@h:1" % PROXY_PASSWORD], {}, "--proxy: proxy URL 'ftp://...@h:1': unknown proxy "
                                                                 "scheme"),
            ([], {"HTTPS_PROXY": "https://h:1"}, "HTTPS_PROXY: proxy URL 'https://h:1': TLS to the proxy itself"),
            (["--proxy", "http://127.0.0.1:1", "--proxy-password-file", "/nonexistent"], {},
             "cannot read --proxy-password-file /nonexistent"),
            (["--proxy-user", "u"], {}, "need a proxy"),
            (["--server-name", "bad name"], {}, "is not a host name"),
        ]
        for extra, env, want in cases:
            with self.subTest(want=want):
                self.client_env = env
                code, text = self.run_client(server, extra)
                self.assertEqual(code, 1, text)
                self.assertIn(want, text)


def skip_check():
    return tt.need("tinyproxy", "curl")


if __name__ == "__main__":
    wt.main(skip_check)
