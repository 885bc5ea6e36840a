#!/usr/bin/env python3
"""Integration tests of `warren server` behind a real nginx (Debian's)
terminating TLS (README, "Behind a reverse proxy"): the README's nginx
snippet, as it is written there, proxies a path prefix to a ws:// server;
with --trust-proxy the client's own address (from X-Forwarded-For) is what
the server logs and what the failure limiter counts, so one client's bad
logins do not lock out another behind the same nginx; without a trusted
proxy X-Forwarded-For is ignored (a client cannot spoof its way around the
limit), and an unreadable header from the proxy is logged and not guessed at.

nginx runs from a temporary prefix (config, temp dirs, pid); clients reach
it from distinct loopback addresses (127.0.0.2, 127.0.0.3, ::1) so that
nginx sees several clients. Skipped (77) when nginx or openssl is missing.

Network safety: nginx and warren listen on loopback only.

    python3 test_nginx.py --warren /path/to/warren [unittest args]
"""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warren_test as wt  # noqa: E402

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")
LISTENING_RE = r"server: listening on ws://127\.0\.0\.1:(\d+)/tunnel/$"
FORWARD_RE = re.compile(r"forward: TCP (.+) -> (\S+)$")
CONNECTED_RE = r"tunnel: connected to \S+ at \S+ \(IPv[46]\) in \d+ ms"
TOKEN = "nginx-test-token-0123456789"


def nginx_binary():
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)


def skip_check():
    if not nginx_binary():
        return "nginx is not installed (scripts/deps installs it)"
    if not shutil.which("openssl"):
        return "openssl is not installed"
    return None


def readme_snippet():
    """The nginx `location` block of the README, exactly as documented."""
    with open(README) as f:
        text = f.read()
    m = re.search(r"```nginx\n(.*?)```", text, re.S)
    if not m:
        raise AssertionError("README has no ```nginx block")
    return m.group(1)


def clean_env():
    return {k: v for k, v in os.environ.items()
            if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy") and k != "WARREN_TOKEN"}


def free_port(host="127.0.0.1"):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class NginxTest(wt.WarrenTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="warren-nginx-")
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.token_file = os.path.join(self.tmp, "token")
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(TOKEN + "\n")
        self.cert = os.path.join(self.tmp, "cert.pem")
        self.key = os.path.join(self.tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        self.echo = self.track(wt.EchoServer())

    def spawn(self, argv):
        return self.track(wt.Process(argv, env=clean_env()))

    def warren_server(self, *extra):
        p = self.spawn([wt.WARREN, "server", "--listen", "ws://127.0.0.1:0/tunnel/", "--token-file", self.token_file,
                        "--allow", "127.0.0.1", "--log-level", "debug"] + list(extra))
        p.port = int(p.wait_for(LISTENING_RE, timeout=20).group(1))
        return p

    def nginx(self, upstream_port, upstream_host="127.0.0.1"):
        """nginx on 127.0.0.1 and ::1 (TLS), the README's location block
        pointing at warren; returns its port."""
        prefix = os.path.join(self.tmp, "nginx")
        os.makedirs(prefix, exist_ok=True)
        location = readme_snippet().replace("127.0.0.1:8080", "%s:%d" % (upstream_host, upstream_port))
        for attempt in range(5):
            port = free_port()
            conf = os.path.join(prefix, "nginx.conf")
            with open(conf, "w") as f:
                f.write("""%(user)s
worker_processes 1;
events { worker_connections 256; }
http {
    access_log %(prefix)s/access.log;
    client_body_temp_path %(prefix)s/body;
    proxy_temp_path %(prefix)s/proxy;
    fastcgi_temp_path %(prefix)s/fastcgi;
    uwsgi_temp_path %(prefix)s/uwsgi;
    scgi_temp_path %(prefix)s/scgi;
    server {
        listen 127.0.0.1:%(port)d ssl;
        listen [::1]:%(port)d ssl;
        ssl_certificate %(cert)s;
        ssl_certificate_key %(key)s;
        ssl_protocols TLSv1.2 TLSv1.3;
%(location)s
    }
}
""" % {"user": "user root root;" if os.geteuid() == 0 else "", "prefix": prefix, "port": port,
                    "cert": self.cert, "key": self.key, "location": location})
            p = self.spawn([nginx_binary(), "-e", "stderr", "-p", prefix, "-c", conf,
                            "-g", "daemon off; pid %s/nginx.pid; error_log stderr;" % prefix])
            # Its worker holds the output pipes: stop the master (which
            # stops the worker) before the tracked kill reaps it.
            self.addCleanup(self.stop_nginx, p)
            self.nginxes = getattr(self, "nginxes", []) + [p]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and p.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    socket.create_connection(("::1", port), timeout=1).close()
                    return port
                except OSError:
                    time.sleep(0.05)
            self.stop_nginx(p)
            if "Address already in use" not in p.stderr_text() or attempt == 4:
                self.fail("nginx did not start:\n" + p.stderr_text())
        self.fail("unreachable")

    def stop_nginx_all(self):
        for p in getattr(self, "nginxes", []):
            self.stop_nginx(p)
        self.nginxes = []

    @staticmethod
    def stop_nginx(p):
        if p.proc.poll() is None:
            p.signal(signal.SIGTERM)
            try:
                p.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def upgrade(self, port, token, source, forwarded_for=None, tls=True):
        """A raw WebSocket upgrade from `source` (a loopback address);
        returns the HTTP status the answer carries."""
        s = socket.socket(socket.AF_INET)
        s.settimeout(wt.WAIT)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        if tls:
            ctx = ssl.create_default_context(cafile=self.cert)
            s = ctx.wrap_socket(s, server_hostname="localhost")
        with s:
            head = ("GET /tunnel/ HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                    "Authorization: Bearer %s\r\n" % token)
            if forwarded_for is not None:
                head += "X-Forwarded-For: %s\r\n" % forwarded_for
            s.sendall((head + "\r\n").encode())
            answer = b""
            while b"\r\n" not in answer:
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
        m = re.match(rb"HTTP/1\.1 (\d+)", answer)
        self.assertIsNotNone(m, "no HTTP answer: %r" % answer[:200])
        return int(m.group(1))

    # -- tests -------------------------------------------------------------

    def test_client_through_nginx_with_a_path_prefix(self):
        server = self.warren_server("--trust-proxy", "127.0.0.1/32")
        port = self.nginx(server.port)
        client = self.spawn([wt.WARREN, "client", "wss://[::1]:%d/tunnel/" % port, "--ca", self.cert,
                             "--token-file", self.token_file, "-L", "0:127.0.0.1:%d" % self.echo.port])
        local = wt.parse_host_port(client.wait_for(FORWARD_RE.pattern).group(1).split(", ")[0])[1]
        client.wait_for(CONNECTED_RE, timeout=20)
        s = wt.connect("127.0.0.1", local)
        with s:
            data = os.urandom(256 * 1024)
            s.sendall(data)
            self.assertEqual(wt.recv_exactly(s, len(data)), data)
        # nginx connects from 127.0.0.1; the client it served is ::1.
        server.wait_for(r"server: client#\d+ ::1 via 127\.0\.0\.1:\d+ \(user default\) connected over ws")

    def test_bad_logins_are_limited_per_client_behind_nginx(self):
        server = self.warren_server("--trust-proxy", "127.0.0.1/32")
        port = self.nginx(server.port)
        # One client guesses, claiming a new address each time (nginx
        # appends the one it saw, which is what counts).
        for i in range(5):
            self.assertEqual(self.upgrade(port, "wrong", "127.0.0.2", forwarded_for="198.51.100.%d" % i), 401, i)
        self.assertEqual(self.upgrade(port, "wrong", "127.0.0.2", forwarded_for="198.51.100.99"), 429)
        self.assertEqual(self.upgrade(port, TOKEN, "127.0.0.2"), 429, "the guesser waits its minute")
        # Another client behind the same nginx is not locked out.
        self.assertEqual(self.upgrade(port, TOKEN, "127.0.0.3"), 101)
        server.wait_for(r"tunnel from 127\.0\.0\.2 via 127\.0\.0\.1:\d+ refused: wrong token")
        server.wait_for(r"tunnel from 127\.0\.0\.2 via 127\.0\.0\.1:\d+ refused: too many failed authentications")
        self.assertIsNone(server.find(r"198\.51\.100"), "a claimed address was believed:\n" + server.stderr_text())

    def test_forwarded_for_is_ignored_from_untrusted_peers(self):
        # A direct client cannot claim another address: not without
        # --trust-proxy, nor from an address that is not a trusted proxy.
        for extra in ((), ("--trust-proxy", "127.0.0.1/32")):
            with self.subTest(extra=extra):
                server = self.warren_server(*extra)
                for i in range(5):
                    self.assertEqual(self.upgrade(server.port, "wrong", "127.0.0.2", tls=False,
                                                  forwarded_for="203.0.113.%d" % i), 401, i)
                self.assertEqual(self.upgrade(server.port, TOKEN, "127.0.0.2", tls=False,
                                              forwarded_for="203.0.113.77"), 429)
                server.wait_for(r"tunnel from 127\.0\.0\.2:\d+ refused: wrong token")
                self.assertIsNone(server.find(r"203\.0\.113"), server.stderr_text())
                server.kill()

    def test_unreadable_forwarded_for_from_a_trusted_proxy_is_not_guessed_at(self):
        server = self.warren_server("--trust-proxy", "127.0.0.0/8")
        self.assertEqual(self.upgrade(server.port, "wrong", "127.0.0.4", tls=False, forwarded_for="unknown"), 401)
        server.wait_for(r"X-Forwarded-For holds 'unknown', which is not an address; counting the proxy as the client")
        server.wait_for(r"tunnel from 127\.0\.0\.4:\d+ refused: wrong token")
        # A readable one names the client.
        self.assertEqual(self.upgrade(server.port, TOKEN, "127.0.0.4", tls=False, forwarded_for="192.0.2.44"), 101)
        server.wait_for(r"client#\d+ 192\.0\.2\.44 via 127\.0\.0\.4:\d+ \(user default\) connected over ws")

    def test_a_proxy_reaching_warren_from_an_address_not_trusted_is_named(self):
        # nginx's upstream on ::1 while only 127.0.0.1 is trusted (a
        # `localhost` upstream can take either): every client behind it
        # would share one failure bucket, so the server says why.
        def server_on_v6(*trust):
            argv = [wt.WARREN, "server", "--listen", "ws://[::1]:0/tunnel/", "--token-file", self.token_file,
                    "--allow", "127.0.0.1"]
            for t in trust:
                argv += ["--trust-proxy", t]
            p = self.spawn(argv)
            p.port = int(p.wait_for(r"server: listening on ws://\[::1\]:(\d+)/tunnel/$", timeout=20).group(1))
            return p

        server = server_on_v6("127.0.0.1/32")
        port = self.nginx(server.port, "[::1]")
        self.assertEqual(self.upgrade(port, "wrong", "127.0.0.2"), 401)
        server.wait_for(r"server: X-Forwarded-For from \[::1\]:\d+ ignored: that peer is not in a --trust-proxy "
                        r"block, so it counts as the client \(if it is your reverse proxy, trust its address too")
        server.wait_for(r"tunnel from \[::1\]:\d+ refused: wrong token")
        self.stop_nginx_all()
        server.kill()
        # Both loopback addresses trusted, as the README says: the client is itself.
        server = server_on_v6("127.0.0.1/32", "::1/128")
        port = self.nginx(server.port, "[::1]")
        self.assertEqual(self.upgrade(port, "wrong", "127.0.0.2"), 401)
        server.wait_for(r"tunnel from 127\.0\.0\.2 via \[::1\]:\d+ refused: wrong token")
        self.assertIsNone(server.find(r"ignored: that peer"), server.stderr_text())

    def test_bad_trust_proxy_is_refused_at_start(self):
        code, lines = wt.run_warren(["server", "--listen", "ws://127.0.0.1:0/", "--token-file", self.token_file,
                                     "--trust-proxy", "nginx.local"])
        self.assertNotEqual(code, 0)
        self.assertIn("--trust-proxy: 'nginx.local' is not an address or CIDR block", "\n".join(lines))


if __name__ == "__main__":
    wt.main(skip_check)
