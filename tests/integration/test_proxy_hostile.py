#!/usr/bin/env python3
"""The client against scripted, odd or hostile proxies, and the careless
proxy settings a user can type: each finding of the proxy review walked
with the real binary.

  - a temporary refusal stays temporary whatever the proxy's reason text
  - HTTP: 1xx interim replies are skipped, a folded header line is joined
  - SOCKS5: a reply with a 1-byte domain, an RFC 1929 status with version
    0x05, bytes after the reply, "no acceptable methods" with credentials
  - start-up errors: a password whose '@' is missing is not echoed, a
    scheme without "//", 127.1 and other IPv4 spellings (proxy and tunnel
    URL), control characters and ':' in the user, SOCKS5 fields over 255
    bytes, secret files without a line end in 4 KiB, ws:// and http_proxy
  - a password in the URL overridden by --proxy-password-file warns
  - --server-name with a trailing dot

Network safety: the scripted proxies listen on 127.0.0.1 and relay only to
the test's own warren server on 127.0.0.1; every other address a client is
given is 127.0.0.1 (a port where nothing listens) or is refused before any
connection. A bare-number proxy ("--proxy 3128") and odd IPv4 spellings of
the proxy's host are never run here: an old binary would dial 0.0.12.56 or
ask DNS (proxy_config_test and address_test cover them).

    python3 test_proxy_hostile.py --warren /path/to/warren [unittest args]
"""

import os
import re
import socket
import subprocess
import sys
import threading

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_proxy as tp  # noqa: E402
import test_tunnel as tt  # noqa: E402
import warren_test as wt  # noqa: E402

PROXY_PASSWORD = tp.PROXY_PASSWORD


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return data


def relay(conn, port):
    """Both directions between `conn` and 127.0.0.1:port until either ends."""
    upstream = socket.create_connection(("127.0.0.1", port), 5)
    upstream.settimeout(None)

    def pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    t = threading.Thread(target=pump, args=(upstream, conn), daemon=True)
    t.start()
    pump(conn, upstream)
    t.join(5)
    upstream.close()


class HostileProxyTest(tt.TunnelTestCase):
    def setUp(self):
        super().setUp()
        self.client_env = {}
        self.other_tokens = [PROXY_PASSWORD]  # tearDown: never in a warren log

    spawn = tp.ProxyTest.spawn
    web_and_server = tp.ProxyTest.web_and_server
    assert_tunnel_works = tp.ProxyTest.assert_tunnel_works
    make_cert = tp.ProxyTest.make_cert

    # -- scripted proxies -----------------------------------------------------

    def http_proxy(self, reply, relay_to=None):
        """Reads the CONNECT, answers `reply`, then relays to relay_to (a port
        on 127.0.0.1) or holds the connection."""
        def handler(conn):
            try:
                conn.settimeout(30)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                conn.sendall(reply)
                if relay_to:
                    relay(conn, relay_to)
                else:
                    while conn.recv(65536):
                        pass
            except OSError:
                pass
        return self.track(wt.TCPServer(handler))

    def socks_proxy(self, method, reply, auth_reply=None, relay_to=None):
        """A SOCKS5 proxy answering the greeting with `method`, a user/password
        message with `auth_reply`, the request with `reply`; then relays."""
        def handler(conn):
            try:
                conn.settimeout(30)
                n = recv_exact(conn, 2)[1]
                recv_exact(conn, n)
                conn.sendall(bytes([5, method]))
                if method == 0xFF:
                    while conn.recv(65536):
                        pass
                    return
                if method == 2:
                    recv_exact(conn, 1)
                    recv_exact(conn, recv_exact(conn, 1)[0])
                    recv_exact(conn, recv_exact(conn, 1)[0])
                    conn.sendall(auth_reply)
                head = recv_exact(conn, 4)
                if head[3] == 1:
                    recv_exact(conn, 6)
                elif head[3] == 4:
                    recv_exact(conn, 18)
                else:
                    recv_exact(conn, recv_exact(conn, 1)[0] + 2)
                conn.sendall(reply)
                if relay_to:
                    relay(conn, relay_to)
                else:
                    while conn.recv(65536):
                        pass
            except OSError:
                pass
        return self.track(wt.TCPServer(handler))

    def run_client(self, url, extra, token_file=None, timeout=15, pin=None):
        """Runs a client expected to give up at once; returns (exit code, stderr)."""
        argv = [wt.WARREN, "client", url, "--token-file", token_file or self.token_file, "--log-level", "debug",
                "-L", "0:127.0.0.1:9"]
        if pin:
            argv += ["--pin", pin]
        env = tt.clean_env()
        env.update(self.client_env)
        try:
            p = subprocess.run(argv + list(extra), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            self.fail("the client did not exit within %ds; stderr:\n%s"
                      % (timeout, (e.stderr or b"").decode("utf-8", "replace")[-3000:]))
        text = p.stderr.decode("utf-8", "replace")
        for secret in (self.token, PROXY_PASSWORD):
            self.assertNotIn(secret, text)
        return p.returncode, text

    def closed_port(self):
        return tt.free_port(udp=False, v6=False)

    # -- HTTP CONNECT ---------------------------------------------------------

    def test_01_a_temporary_refusal_stays_temporary_whatever_its_reason(self):
        """The words a permanent refusal's sentence carries, sent by a proxy
        as the reason of a 502/503, do not end the client."""
        _, server = self.web_and_server()
        for reply, reason in ((b"HTTP/1.1 503 its rules do not allow\r\n\r\n", "503 its rules do not allow"),
                              (b"HTTP/1.1 502 does not allow CONNECT, see --proxy-password-file\r\n\r\n",
                               "502 does not allow CONNECT, see --proxy-password-file"),
                              (b"HTTP/1.1 503 upstream token bucket empty\r\n\r\n",
                               "503 upstream token bucket empty")):
            with self.subTest(reason=reason):
                proxy = self.http_proxy(reply)
                client = self.spawn([wt.WARREN, "client", server.url, "--token-file", self.token_file, "--pin",
                                     server.pin, "-L", "0:127.0.0.1:9", "--proxy",
                                     "http://127.0.0.1:%d" % proxy.port])
                self.warrens.append(client)
                client.wait_for(r"could not reach 127\.0\.0\.1:%d \(%s\); retrying in"
                                % (server.port, re.escape(reason)), timeout=20)
                self.assertIsNone(client.proc.poll(), client.stderr_text())
                client.kill()

    def test_02_interim_replies_are_skipped(self):
        web, server = self.web_and_server()
        proxy = self.http_proxy(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                                b"HTTP/1.1 200 Connection established\r\n\r\n", relay_to=server.port)
        client = self.start_client(server, local=["0:127.0.0.1:%d" % web.port],
                                   extra=["--proxy", "http://127.0.0.1:%d" % proxy.port])
        self.assert_tunnel_works(client, "after 100 and 103")
        client.wait_for(r"answered CONNECT 127\.0\.0\.1:%d with 200 " % server.port)

    def test_03_a_folded_407_ends_the_client(self):
        _, server = self.web_and_server()
        proxy = self.http_proxy(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n"
                                b" realm=\"x\"\r\nContent-Length: 0\r\n\r\n")
        code, text = self.run_client(server.url, ["--proxy", "http://127.0.0.1:%d" % proxy.port], pin=server.pin)
        self.assertEqual(code, 1, text)
        self.assertIn("wants credentials (407 Proxy Authentication Required): pass --proxy-user", text)
        self.assertNotIn("retrying in", text)

    # -- SOCKS5 -----------------------------------------------------------------

    def test_04_socks5_odd_but_valid_replies_connect(self):
        web, server = self.web_and_server()
        ok_v4 = bytes([5, 0, 0, 1, 127, 0, 0, 1, 0, 80])
        pw = self.write_secret("proxy-password", PROXY_PASSWORD + "\n")
        with self.subTest("a 1-byte domain as the bound address"):
            proxy = self.socks_proxy(0, bytes([5, 0, 0, 3, 1]) + b"a" + bytes([0, 80]), relay_to=server.port)
            client = self.start_client(server, local=["0:127.0.0.1:%d" % web.port],
                                       extra=["--proxy", "socks5h://127.0.0.1:%d" % proxy.port])
            self.assert_tunnel_works(client, "bound address 'a'")
            self.assertIsNone(client.find(r"timed out"), client.stderr_text())
            client.kill()
        with self.subTest("RFC 1929 status with version 0x05"):
            proxy = self.socks_proxy(2, ok_v4, auth_reply=bytes([5, 0]), relay_to=server.port)
            client = self.start_client(server, local=["0:127.0.0.1:%d" % web.port],
                                       extra=["--proxy", "socks5://bob@127.0.0.1:%d" % proxy.port,
                                              "--proxy-password-file", pw])
            self.assert_tunnel_works(client, "status 05 00")
            client.kill()

    def test_05_socks5_bytes_after_the_reply_are_named(self):
        _, server = self.web_and_server()
        proxy = self.socks_proxy(0, bytes([5, 0, 0, 1, 127, 0, 0, 1, 0, 80]) + b"EXTRA")
        client = self.spawn([wt.WARREN, "client", server.url, "--token-file", self.token_file, "--pin", server.pin,
                             "-L", "0:127.0.0.1:9", "--proxy", "socks5h://127.0.0.1:%d" % proxy.port])
        self.warrens.append(client)
        client.wait_for(r"the proxy socks5h://127\.0\.0\.1:%d sent data after its SOCKS5 reply, before the server "
                        r"could have spoken; retrying in" % proxy.port, timeout=20)
        self.assertIsNone(client.proc.poll())

    def test_06_socks5_no_acceptable_method_with_credentials_offered(self):
        _, server = self.web_and_server()
        proxy = self.socks_proxy(0xFF, b"")
        pw = self.write_secret("proxy-password", PROXY_PASSWORD + "\n")
        code, text = self.run_client(server.url, ["--proxy", "socks5://bob@127.0.0.1:%d" % proxy.port,
                                                  "--proxy-password-file", pw], pin=server.pin)
        self.assertEqual(code, 1, text)
        self.assertIn("accepted none of the authentication methods offered (no authentication, user name and "
                      "password)", text)
        self.assertNotIn("pass --proxy-user", text)

    # -- start-up errors --------------------------------------------------------

    def test_07_careless_settings_are_start_up_errors(self):
        closed = self.closed_port()
        url = "wss://127.0.0.1:%d" % closed
        pw = self.write_secret("proxy-password", PROXY_PASSWORD + "\n")
        huge = self.write_secret("huge", "x" * 100000)
        proxy = "http://127.0.0.1:%d" % closed
        cases = [
            # The '@' forgotten: the password is not echoed.
            ("missing @", url, ["--proxy", "http://alice:%s127.0.0.1:%d" % (PROXY_PASSWORD, closed)], {},
             "--proxy: proxy URL 'http://alice:...': expected http://HOST:PORT"),
            ("missing @ in HTTPS_PROXY", url, [], {"HTTPS_PROXY": "alice:%s:%d" % (PROXY_PASSWORD, closed)},
             "HTTPS_PROXY: proxy URL: expected http://HOST:PORT"),
            ("scheme without //", url, ["--proxy", "http:/127.0.0.1:%d" % closed], {},
             "--proxy: proxy URL: expected http://HOST:PORT, socks5://HOST:PORT or socks5h://HOST:PORT"),
            # Odd IPv4 spellings of the tunnel's host, behind a loopback HTTP
            # proxy (an old binary hands the name to that proxy, resolving
            # nothing itself); proxy_config_test and url_test cover the rest.
            ("127.1 tunnel URL", "wss://127.1:%d" % closed, [], {"HTTPS_PROXY": proxy, "NO_PROXY": "127.0.0.1"},
             "'127.1' is not a host name or a dotted IPv4 address"),
            ("2130706433 tunnel URL", "wss://2130706433:%d" % closed, [], {"HTTPS_PROXY": proxy},
             "'2130706433' is not a host name or a dotted IPv4 address"),
            ("newline in --proxy-user", url,
             ["--proxy", proxy, "--proxy-user", "al\nice", "--proxy-password-file", pw], {},
             "--proxy: the proxy user name holds a control character"),
            ("%0a in the URL user", url, ["--proxy", "http://al%%0Aice@127.0.0.1:%d" % closed,
                                          "--proxy-password-file", pw], {},
             "--proxy: the proxy user name holds a control character"),
            ("':' in a Basic user", url, ["--proxy", proxy, "--proxy-user", "al:ice", "--proxy-password-file", pw],
             {}, "cannot carry (RFC 7617)"),
            ("SOCKS5 user over 255 bytes", url,
             ["--proxy", "socks5://127.0.0.1:%d" % closed, "--proxy-user", "u" * 256, "--proxy-password-file", pw],
             {}, "at most 255 bytes each (RFC 1929)"),
            ("password file without a line end", url, ["--proxy", proxy, "--proxy-user", "bob",
                                                       "--proxy-password-file", huge], {},
             "--proxy-password-file %s: the first line is longer than 4 KiB" % huge),
            ("SOCKS password file without a line end", url, ["-D", "127.0.0.1:0", "--socks-user", "bob",
                                                             "--socks-password-file", huge], {},
             "--socks-password-file %s: the first line is longer than 4 KiB" % huge),
            ("ws:// reads http_proxy", "ws://127.0.0.1:%d" % closed, ["--proxy-user", "bob"], {"HTTPS_PROXY": proxy},
             "need a proxy: pass --proxy URL (or set http_proxy, which ws:// and tcp:// read)"),
        ]
        for name, target, extra, env, want in cases:
            with self.subTest(name):
                self.client_env = env
                code, text = self.run_client(target, extra, timeout=10)
                self.assertEqual(code, 1, text)
                self.assertIn(want, text)
                self.assertNotIn("retrying in", text)
                self.assertNotIn("\nice", text)
        with self.subTest("token file without a line end"):
            self.client_env = {}
            code, text = self.run_client(url, [], token_file=huge, timeout=10)
            self.assertEqual(code, 1, text)
            self.assertIn("token file %s: the first line is longer than 4 KiB" % huge, text)

    def test_08_a_url_password_overridden_by_the_file_warns(self):
        closed = self.closed_port()
        pw = self.write_secret("proxy-password", PROXY_PASSWORD + "\n")
        self.other_tokens.append("url-pw-77q")
        client = self.spawn([wt.WARREN, "client", "wss://127.0.0.1:%d" % closed, "--token-file", self.token_file,
                             "-L", "0:127.0.0.1:9", "--proxy", "http://bob:url-pw-77q@127.0.0.1:%d" % closed,
                             "--proxy-password-file", pw])
        self.warrens.append(client)
        client.wait_for(r"--proxy: the password in the URL is ignored \(--proxy-password-file wins\) but still "
                        r"visible to every user of this machine in the process list")
        self.assertNotIn("url-pw-77q", client.stderr_text())

    def test_09_server_name_with_a_trailing_dot(self):
        cert, key = self.make_cert("gw.test")
        web = self.http_server()
        server = self.start_server(allow=("127.0.0.1:%d" % web.port,), extra=["--cert", cert, "--key", key])
        server.pin = None  # verified by --ca and the name, not pinned
        client = self.start_client(server, local=["0:127.0.0.1:%d" % web.port],
                                   extra=["--ca", cert, "--server-name", "gw.test."])
        self.assert_tunnel_works(client, "--server-name gw.test.")


def skip_check():
    return tt.need("curl")


if __name__ == "__main__":
    wt.main(skip_check)
