"""Integration tests of `warren daemon --metrics` (issue 12, counters) with
the real binary, real sockets and a real Prometheus text parser
(python3-prometheus-client, Debian's: scripts/deps installs it):

- the endpoint parsed by prometheus_client's parser: build info, start
  time, the unit families announced; Content-Type text/plain version 0.0.4;
- 404 for another path, 405 (Allow: GET) for another method, 431 for a
  request head over the bound;
- a slowloris connection (a request never finished) does not block a second
  scrape, and is closed at the 5 s deadline; connections over the bound (16)
  are closed at accept, and scrapes work again once they go;
- a bare port binds 127.0.0.1 and ::1;
- `metrics.get` over the control socket: the same numbers as JSON;
- with units running (the supervisor's step): byte counters that grow as data
  flows through a client unit, and its RTT gauge > 0 (skipped, saying so,
  while the daemon runs no units).

Loopback only.

    python3 test_metrics.py --warren /path/to/warren [unittest args]
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warren_test as wt  # noqa: E402

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    # Debian's python3-prometheus-client lives in the system interpreter's
    # dist-packages; a python3 from elsewhere (pyenv) does not look there.
    sys.path.append("/usr/lib/python3/dist-packages")
    from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

METRICS_RE = re.compile(r"daemon: metrics at /metrics on (.*)$")


def frame(obj):
    data = json.dumps(obj).encode()
    return struct.pack(">I", len(data)) + data


class MetricsTest(wt.WarrenTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="warren-metrics-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.sock_path = os.path.join(self.tmp, "run", "control.sock")

    def start_daemon(self, *args):
        argv = [wt.WARREN, "daemon", "--control", self.sock_path, "--state-dir", os.path.join(self.tmp, "state")]
        d = self.track(wt.Process(argv + list(args)))
        d.wait_for(r"daemon: pid \d+ ready")
        i = d.find(METRICS_RE.pattern)
        self.assertIsNotNone(i, d.stderr_text())
        d.metrics = [wt.parse_host_port(e) for e in METRICS_RE.search(d.lines[i]).group(1).split(", ")]
        return d

    def stop(self, d):
        """SIGTERM; the daemon exits 0 with nothing a sanitizer or a crash wrote."""
        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait_exit(), 0, d.stderr_text())
        self.assert_no_crash(d.lines)

    def http(self, d, method="GET", path="/metrics", at=0):
        host, port = d.metrics[at]
        c = http.client.HTTPConnection(host, port, timeout=wt.WAIT)
        try:
            c.request(method, path)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read().decode()
        finally:
            c.close()

    def scrape(self, d):
        status, headers, body = self.http(d)
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
        return {f.name: f for f in text_string_to_metric_families(body)}

    def control(self, method):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(wt.WAIT)
        s.connect(self.sock_path)
        try:
            s.sendall(frame({"jsonrpc": "2.0", "method": method, "id": 1}))
            head = wt.recv_exactly(s, 4)
            (n,) = struct.unpack(">I", head)
            return json.loads(wt.recv_exactly(s, n))
        finally:
            s.close()

    # ---- the text, parsed --------------------------------------------------

    def test_parsed_by_prometheus_client(self):
        before = time.time()
        d = self.start_daemon("--metrics", "127.0.0.1:0")
        after = time.time()
        families = self.scrape(d)
        build = families["warren_build_info"]
        self.assertEqual(build.type, "gauge")
        self.assertEqual(len(build.samples), 1)
        self.assertRegex(build.samples[0].labels["version"], r"^\d+\.\d+\.\d+$")
        self.assertEqual(build.samples[0].value, 1)
        start = families["warren_daemon_start_time_seconds"].samples[0].value
        self.assertGreaterEqual(start, before - 1)
        self.assertLessEqual(start, after + 1)
        self.assertEqual(families["warren_units"].samples[0].value, 0)
        # Counters: the parser names the family without _total, the series with it.
        self.assertEqual(families["warren_unit_bytes"].type, "counter")
        for name in ("warren_unit_up", "warren_unit_state", "warren_unit_connections_open",
                     "warren_unit_tunnel_rtt_seconds", "warren_unit_last_error_timestamp_seconds"):
            self.assertEqual(families[name].type, "gauge", name)
            self.assertEqual(families[name].samples, [], name)
        for name in ("warren_unit_connections", "warren_unit_streams", "warren_unit_reconnects"):
            self.assertEqual(families[name].type, "counter", name)
        # The same over metrics.get.
        r = self.control("metrics.get")
        self.assertEqual(r["result"]["units"], [])
        self.assertEqual(r["result"]["daemon"]["version"], build.samples[0].labels["version"])
        self.assertAlmostEqual(r["result"]["daemon"]["started"], start, delta=0.002)
        self.stop(d)

    def test_not_found_method_not_allowed_header_too_large(self):
        d = self.start_daemon("--metrics", "127.0.0.1:0")
        for path in ("/", "/metric", "/metrics/x", "/favicon.ico"):
            status, _, body = self.http(d, path=path)
            self.assertEqual(status, 404, path)
            self.assertIn("/metrics", body)
        status, _, _ = self.http(d, path="/metrics?name[]=x")
        self.assertEqual(status, 200, "a query string is ignored")
        for method in ("POST", "PUT", "DELETE", "HEAD"):
            status, headers, _ = self.http(d, method=method)
            self.assertEqual(status, 405, method)
            self.assertEqual(headers.get("Allow"), "GET", method)
        host, port = d.metrics[0]
        with socket.create_connection((host, port), timeout=wt.WAIT) as s:
            s.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            reply = wt.recv_until_eof(s)
        self.assertTrue(reply.startswith(b"HTTP/1.1 405 "), reply[:80])
        with socket.create_connection((host, port), timeout=wt.WAIT) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n")
            reply = wt.recv_until_eof(s)
        self.assertTrue(reply.startswith(b"HTTP/1.1 431 "), reply[:80])
        with socket.create_connection((host, port), timeout=wt.WAIT) as s:
            s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            reply = wt.recv_until_eof(s)
        self.assertTrue(reply.startswith(b"HTTP/1.1 400 "), reply[:80])
        self.scrape(d)  # still serving
        self.stop(d)

    # ---- bounds ------------------------------------------------------------

    def test_slowloris_does_not_block_a_scrape_and_is_cut_at_the_deadline(self):
        d = self.start_daemon("--metrics", "127.0.0.1:0")
        host, port = d.metrics[0]
        slow = socket.create_connection((host, port), timeout=wt.WAIT)
        self.addCleanup(slow.close)
        slow.sendall(b"GET /metr")  # and nothing more
        opened = time.monotonic()
        self.scrape(d)
        self.scrape(d)
        # The deadline (5 s from accept) closes it without an answer.
        slow.settimeout(5 + wt.WAIT)
        self.assertEqual(slow.recv(1024), b"")
        waited = time.monotonic() - opened
        self.assertGreaterEqual(waited, 4.5)
        self.assertLess(waited, 5 + wt.WAIT)
        self.stop(d)

    def test_connections_over_the_bound_are_closed_at_accept(self):
        d = self.start_daemon("--metrics", "127.0.0.1:0")
        host, port = d.metrics[0]
        idle = []
        for _ in range(16):
            s = socket.create_connection((host, port), timeout=wt.WAIT)
            self.addCleanup(s.close)
            s.sendall(b"G")
            idle.append(s)
        # The 17th: accepted and closed at once, before the idle ones' deadline.
        opened = time.monotonic()
        extra = socket.create_connection((host, port), timeout=wt.WAIT)
        self.addCleanup(extra.close)
        try:
            extra.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            got = extra.recv(1024)
        except (ConnectionResetError, BrokenPipeError):
            got = b""
        self.assertEqual(got, b"")
        self.assertLess(time.monotonic() - opened, 4, "closed at accept, not at a deadline")
        for s in idle:
            s.close()
        # Once they have gone, scrapes are served again.
        deadline = time.monotonic() + wt.WAIT
        while True:
            try:
                self.scrape(d)
                break
            except (ConnectionError, http.client.HTTPException, AssertionError):
                if time.monotonic() > deadline:
                    raise
        self.stop(d)

    # ---- where it listens --------------------------------------------------

    def test_a_bare_port_binds_both_loopback_addresses(self):
        s4, s6, port = wt.free_port_pair()
        s4.close()
        s6.close()
        d = self.start_daemon("--metrics", str(port))
        self.assertEqual(sorted(h for h, _ in d.metrics), ["127.0.0.1", "::1"])
        self.assertEqual({p for _, p in d.metrics}, {port})
        self.scrape(d)
        status, _, _ = self.http(d, at=1)
        self.assertEqual(status, 200)
        self.assertIsNone(d.find(r"reachable beyond this host"))

    def test_a_bad_metrics_address_is_refused_at_start(self):
        for bad, says in (("/tmp/x.sock", "give a port or HOST:PORT"), ("::1:9100", "--metrics '::1:9100'"),
                          ("", "--metrics is empty")):
            p = self.track(wt.Process([wt.WARREN, "daemon", "--control", self.sock_path, "--metrics", bad]))
            self.assertEqual(p.wait_exit(), 1, bad)
            self.assertIn(says, p.stderr_text())

    # ---- units carrying data -----------------------------------------------

    def test_byte_counters_move_as_data_flows_through_a_client_unit(self):
        sink = wt.EchoServer()
        self.addCleanup(sink.close)
        token = os.path.join(self.tmp, "token")
        with open(token, "w") as f:
            f.write("metrics-test-" + os.urandom(8).hex() + "\n")
        os.chmod(token, 0o600)
        s4, _, server_port = wt.free_port_pair()
        s4.close()
        _.close()
        c4, c6, local_port = wt.free_port_pair()
        c4.close()
        c6.close()
        config = os.path.join(self.tmp, "warren.toml")
        with open(config, "w") as f:
            f.write('[[server]]\nname = "srv"\nlisten = ["tcp://127.0.0.1:%d"]\ntoken_file = "%s"\n'
                    'allow = ["127.0.0.1"]\n\n' % (server_port, token))
            f.write('[[client]]\nname = "office"\nurl = "tcp://127.0.0.1:%d"\ntoken_file = "%s"\n'
                    'local = ["127.0.0.1:%d:127.0.0.1:%d"]\n' % (server_port, token, local_port, sink.port))
        d = self.start_daemon("--config", config, "--metrics", "127.0.0.1:0")
        if not self.control("metrics.get")["result"]["units"]:
            self.skipTest("this daemon runs no units yet (the supervisor step); the unit series are tested "
                          "in tests/daemon/metrics_text_test.cpp")

        def sample(families, family, unit, **labels):
            for s in families[family].samples:
                if s.labels.get("unit") == unit and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
            return None

        deadline = time.monotonic() + wt.WAIT
        while sample(self.scrape(d), "warren_unit_tunnel_rtt_seconds", "office") is None:
            self.assertLess(time.monotonic(), deadline, "the client unit's RTT is measured")
        families = self.scrape(d)
        self.assertGreater(sample(families, "warren_unit_tunnel_rtt_seconds", "office"), 0)
        self.assertEqual(sample(families, "warren_unit_up", "office"), 1)
        up0 = sample(families, "warren_unit_bytes", "office", direction="up")
        down0 = sample(families, "warren_unit_bytes", "office", direction="down")
        payload = os.urandom(1 << 20)
        with socket.create_connection(("127.0.0.1", local_port), timeout=wt.WAIT) as s:
            for i in range(0, len(payload), 64 << 10):  # echoed chunk by chunk: no buffer fills up
                s.sendall(payload[i:i + (64 << 10)])
                self.assertEqual(wt.recv_exactly(s, 64 << 10), payload[i:i + (64 << 10)])
            families = self.scrape(d)  # while the connection is open
            self.assertGreaterEqual(sample(families, "warren_unit_bytes", "office", direction="up"),
                                    up0 + len(payload))
            self.assertGreaterEqual(sample(families, "warren_unit_bytes", "office", direction="down"),
                                    down0 + len(payload))
            self.assertGreaterEqual(sample(families, "warren_unit_streams_open", "office"), 1)
            self.assertGreaterEqual(sample(families, "warren_unit_bytes", "srv", direction="up"), len(payload))


if __name__ == "__main__":
    wt.main()
