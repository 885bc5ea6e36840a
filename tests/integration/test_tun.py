#!/usr/bin/env python3
"""`warren tun` (issue 13) with real programs, in two network namespaces
this file creates and removes:

  app  vapp 10.77.0.1/24, fd77::1/64; main default routes via 10.77.0.2 and
       fd77::2 (the "machine's network"); strict reverse-path filtering.
       `warren tun --default-route` runs here, and so do the applications:
       curl, iperf3 -c, dig, ping, Python clients.
  srv  vsrv 10.77.0.2/24, fd77::2/64; on lo the service addresses
       203.0.113.10 and 2001:db8::10 (documentation ranges) and 10.77.9.2
       (an upstream off the app's link). No other route. Runs http.server,
       a TCP and a UDP echo, iperf3 -s, dnsmasq, danted (SOCKS5 with UDP
       ASSOCIATE) on 10.77.0.2:1080 and 10.77.9.2:1080, sshd with
       `ssh -D 10.77.0.2:1081` (a SOCKS5 server without UDP), and
       `warren server` on wss://10.77.0.2:8443.

An nftables rule in srv drops (and counts) every packet arriving from app
that is not for 10.77.0.2, 10.77.9.2 or fd77::2: the app reaches the
services only through warren's upstream, so traffic that leaks past the
TUN through the main default route cannot pass a test, and every test ends
by checking that the counter did not move. Neither namespace has a route
out: nothing leaves them.

Every test of a warren tun ends with SIGTERM and checks exit 0, the
counters logged, and the app namespace's links, rules and routes back to
what they were before it started (the test that SIGKILLs it checks that
the next start cleans up).

The core set runs once per upstream: dante (socks5://) and warren server
(wss://). Needs root, `ip netns`, nft and the peers of scripts/deps;
otherwise exits 77. Until warren has a `tun` command its tests are skipped
and PeersTest alone checks the topology (the same applications through
dante and warren directly).

    python3 test_tun.py --warren /path/to/warren [unittest args]
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, HERE)
import test_tunnel as tt  # noqa: E402
import tun_topology as topo  # noqa: E402
import warren_test as wt  # noqa: E402

T = topo  # addresses and ports
TOPO = None
_TUN_AVAILABLE = None


def run(argv, timeout=60, check=False):
    return topo.run(argv, timeout=timeout, check=check)


def figure(text):
    tt.figure(text)


def tun_available():
    global _TUN_AVAILABLE
    if _TUN_AVAILABLE is None:
        p = run([wt.WARREN, "tun", "--help"], timeout=10)  # without `tun`: the main help, exit 0
        _TUN_AVAILABLE = p.returncode == 0 and b"--upstream" in p.stdout + p.stderr
    return _TUN_AVAILABLE


def setUpModule():
    global TOPO
    topo.Topology.remove_stale("wtun")
    TOPO = topo.Topology(wt.WARREN, tag="wtun%d" % os.getpid())
    try:
        TOPO.build()
        TOPO.start_services()
    except BaseException:
        TOPO.destroy()
        raise


def tearDownModule():
    if TOPO:
        TOPO.destroy()


class AppCase(wt.WarrenTestCase):
    """Runs applications in the app namespace; checks the leak counter."""

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="warren-tun-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.leaked_before = TOPO.leaked()

    def tearDown(self):
        self.assertEqual(TOPO.leaked(), self.leaked_before,
                         "packets from app reached srv outside warren's upstream (leaked past the TUN)")
        super().tearDown()

    def app(self, argv, timeout=60):
        return run(TOPO.in_app(argv), timeout=timeout)

    def tool(self, script, *args, timeout=120):
        """A tun_tool.py / ns_tool.py client in app: its JSON line."""
        p = self.app([sys.executable, os.path.join(HERE, script)] + [str(a) for a in args], timeout=timeout)
        lines = p.stdout.decode().strip().splitlines()
        self.assertTrue(lines, "no output from %s %s: %s%s" % (script, args, p.stderr.decode(errors="replace"),
                                                               self.logs()))
        return json.loads(lines[-1])

    def curl(self, url, *extra, max_time=20):
        argv = ["curl", "-q", "-sS", "--max-time", str(max_time), "-o", "-"] + list(extra) + [url]
        return run(TOPO.in_app(argv), timeout=max_time + 10)

    def assert_blob(self, url, *extra, context=""):
        r = self.curl(url, *extra)
        self.assertEqual(r.returncode, 0, "%s curl %s failed: %s%s" % (context, url, r.stderr.decode(errors="replace"),
                                                                      self.logs()))
        self.assertEqual(r.stdout, TOPO.blob, "%s curl %s: wrong body (%d bytes)" % (context, url, len(r.stdout)))

    def dig(self, name, qtype, *extra):
        r = self.app(["dig", "+short", "+time=2", "+tries=2", "@" + T.SVC4, name, qtype] + list(extra), timeout=30)
        return r.returncode, r.stdout.decode().strip(), r.stderr.decode(errors="replace")

    def logs(self):
        return ""


class PeersTest(AppCase):
    """The topology without `warren tun`: the peers work through dante and
    through a warren client directly, and the leak guard catches a packet
    that goes around."""

    def test_00_direct_traffic_is_caught_by_the_leak_guard(self):
        r = self.curl("http://%s/blob.bin" % T.SVC4, "--connect-timeout", "1", max_time=2)
        self.assertNotEqual(r.returncode, 0, "app reached the service without any upstream")
        self.assertGreater(TOPO.leaked(), self.leaked_before, "the leak guard did not count the direct SYN")
        self.leaked_before = TOPO.leaked()

    def test_01_http_through_dante(self):
        for proxy in ("%s:%d" % (T.SRV4, T.DANTE), "%s:%d" % (T.OFFLINK, T.DANTE)):
            for url in T.HTTP_URLS:
                self.assert_blob(url, "--socks5", proxy, context="via dante %s" % proxy)

    def test_02_udp_associate_through_dante(self):
        for qtype, want in (("A", T.SVC4), ("AAAA", T.SVC6)):
            r = self.tool("tun_tool.py", "socks-udp-dns", T.SRV4, T.DANTE, T.SVC4, T.DNS_NAME, qtype)
            self.assertEqual((r["result"], r.get("answers")), ("ok", [want]), r)

    def test_03_ssh_d_connects_and_refuses_udp(self):
        self.assert_blob(T.HTTP_URLS[0], "--socks5", "%s:%d" % (T.SRV4, T.SSH_D), context="via ssh -D")
        r = self.tool("tun_tool.py", "socks-udp-dns", T.SRV4, T.SSH_D, T.SVC4, T.DNS_NAME, "A")
        self.assertEqual(r["result"], "refused", r)

    def test_04_dns_iperf3_echo_from_srv(self):
        for qtype, want in (("A", T.SVC4), ("AAAA", T.SVC6)):
            for extra in ([], ["+tcp"]):
                r = run(TOPO.in_srv(["dig", "+short", "+time=2", "+tries=1", "@" + T.SVC4, T.DNS_NAME, qtype]
                                    + extra), timeout=20)
                self.assertEqual(r.stdout.decode().strip(), want, r)
        r = run(TOPO.in_srv(["iperf3", "-c", T.SVC4, "-p", str(T.IPERF), "-t", "1", "-J"]), timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout[-2000:])
        r = json.loads(run(TOPO.in_srv([sys.executable, os.path.join(HERE, "tun_tool.py"), "many", T.SVC4,
                                        T.ECHO, 1000, 4096, 60])).stdout.decode().strip().splitlines()[-1])
        self.assertEqual(r["result"], "ok", r)
        r = run(TOPO.in_srv([sys.executable, os.path.join(HERE, "ns_tool.py"), "connect", T.SVC4, T.CLOSED, 2]))
        self.assertEqual(json.loads(r.stdout)["result"], "refused", r)

    def test_05_http_through_warren_server(self):
        client = self.track(wt.Process(TOPO.in_app([wt.WARREN, "client", TOPO.server_url, "--token-file",
                                                    TOPO.token_file, "--pin", TOPO.pin, "-D", "127.0.0.1:1090"])))
        client.wait_for(tt.CONNECTED_RE, timeout=20)
        for url in T.HTTP_URLS:
            self.assert_blob(url, "--socks5", "127.0.0.1:1090", context="via warren client -D")


class TunCase(AppCase):
    """Starts `warren tun` in app and stops it with the cleanup checks."""

    upstream = None  # "dante", "wss" or "ssh"

    def setUp(self):
        super().setUp()
        if not tun_available():
            self.skipTest("this warren has no `tun` command yet")
        self.lock_dir = os.path.join(self.tmp, "locks")
        os.makedirs(self.lock_dir)
        self.tuns = []
        self.baseline = TOPO.app_state()

    def tearDown(self):
        for p in self.tuns:
            if p.proc.poll() is None:
                self.stop_tun(p)
        super().tearDown()

    def logs(self):
        return "".join("\n-- warren tun log:\n" + p.stderr_text() for p in getattr(self, "tuns", []))

    def upstream_args(self, upstream=None):
        kind = upstream or self.upstream
        if kind == "dante":
            return ["--upstream", "socks5://%s:%d" % (T.SRV4, T.DANTE)]
        if kind == "offlink":
            return ["--upstream", "socks5://%s:%d" % (T.OFFLINK, T.DANTE)]
        if kind == "ssh":
            return ["--upstream", "socks5://%s:%d" % (T.SRV4, T.SSH_D)]
        if kind == "wss":
            return ["--upstream", TOPO.server_url, "--token-file", TOPO.token_file, "--pin", TOPO.pin]
        raise AssertionError("no upstream " + repr(kind))

    def start_tun(self, *extra, upstream=None, default_route=True):
        name = "wt%d" % (len(self.tuns) % 4)
        argv = [wt.WARREN, "tun", "--name", name, "--lock-dir", self.lock_dir, "--log-level", "info"]
        argv += self.upstream_args(upstream) + (["--default-route"] if default_route else []) + list(extra)
        p = self.track(wt.Process(TOPO.in_app(argv)))
        p.name = name
        self.tuns.append(p)
        p.wait_for(r"tun: %s up" % name, timeout=20)
        if default_route:
            self.assertTrue(TOPO.owned_rules(), "warren tun is up but no rule of protocol 119 is in app:\n%s"
                            % json.dumps(TOPO.app_state()["rules"], indent=1))
        return p

    def stop_tun(self, p):
        """SIGTERM: exit 0, counters logged, app's links/rules/routes as before."""
        start = len(p.lines)
        p.signal(signal.SIGTERM)
        code = p.wait_exit(15)
        self.assert_no_crash(p.lines)
        self.assertEqual(code, 0, "warren tun exited %d on SIGTERM:\n%s" % (code, p.stderr_text()))
        tail = p.lines[start:]
        self.assertTrue([l for l in tail if re.search(r"\b(packets|bytes)\b", l)],
                        "no counters logged at exit:\n" + "\n".join(tail))
        self.assert_state_restored("after SIGTERM of warren tun %s" % p.name)

    def assert_state_restored(self, context):
        now = TOPO.app_state()
        self.assertEqual([l for l in now["links"] if l.startswith("wt")], [], "%s: device left" % context)
        self.assertEqual(TOPO.owned_rules() + TOPO.owned_routes(), [], "%s: protocol-119 rules/routes left" % context)
        for key in ("links", "rules", "routes"):
            self.assertEqual(now[key], self.baseline[key], "%s: the app namespace's %s changed" % (context, key))

    # -- checks shared by the upstreams -------------------------------------

    def iperf3(self, *extra):
        """iperf3 -c to srv; retried while the server is between tests."""
        transient = ("control socket has closed", "unable to receive control message", "server is busy",
                     "unable to send control message", "Connection reset", "unable to connect to server")
        for attempt in range(6):
            r = self.app(["iperf3", "-c", T.SVC4, "-p", str(T.IPERF), "-t", "3", "-J", "--connect-timeout", "5000"]
                         + list(extra), timeout=60)
            out = json.loads(r.stdout.decode() or "{}")
            if r.returncode == 0 or not any(t in str(out.get("error", "")) for t in transient) or attempt == 5:
                break
            time.sleep(0.5)
        self.assertEqual(r.returncode, 0, "iperf3 %s failed: %s%s" % (extra, out.get("error"), self.logs()))
        return out["end"]

    def check_curl_v4_v6(self):
        for url in T.HTTP_URLS:
            self.assert_blob(url, context="through warren tun (%s)" % self.upstream)

    def check_dns(self):
        for qtype, want in (("A", T.SVC4), ("AAAA", T.SVC6)):
            code, out, err = self.dig(T.DNS_NAME, qtype)
            self.assertEqual((code, out), (0, want), "dig %s over UDP: %s%s" % (qtype, err, self.logs()))


class CoreTests:
    """The core set, mixed into one TunCase per upstream."""

    def test_10_curl_ipv4_and_ipv6(self):
        self.start_tun()
        self.check_curl_v4_v6()

    def test_11_iperf3_tcp_both_directions(self):
        self.start_tun()
        for extra, what in (([], "up"), (["-R"], "down")):
            end = self.iperf3(*extra)
            got = end["sum_received"]["bytes"]
            self.assertGreater(got, 0)
            figure("iperf3 TCP %s through warren tun (%s): %.0f Mbit/s" % (
                what, self.upstream, end["sum_received"]["bits_per_second"] / 1e6))

    def test_12_iperf3_udp(self):
        self.start_tun()
        end = self.iperf3("-u", "-b", "100M")
        s = end.get("sum_received") or end.get("sum", {})
        self.assertGreater(s.get("bytes", 0), 0, "no UDP arrived: %s%s" % (json.dumps(end)[:1500], self.logs()))
        figure("iperf3 UDP -b 100M through warren tun (%s): %.1f Mbit/s received, %.2f%% lost" % (
            self.upstream, s.get("bits_per_second", 0) / 1e6, s.get("lost_percent", float("nan"))))

    def test_13_udp_echo_and_dns(self):
        self.start_tun()
        self.check_dns()
        for host in (T.SVC4, T.SVC6):
            r = self.tool("tun_tool.py", "udp-probe", host, T.ECHO, 20, 5)
            self.assertEqual(r["echoed"], 20, "UDP echo to %s: %r%s" % (host, r, self.logs()))

    def test_13b_multicast_and_broadcast_stay_local(self):
        """SSDP, mDNS and broadcasts are for this link: never an upstream flow."""
        p = self.start_tun()
        code = ("import socket\n"
                "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                "s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)\n"
                "for dst in [('239.255.255.250', 1900), ('224.0.0.251', 5353), ('255.255.255.255', 9999)]:\n"
                "    s.sendto(b'M-SEARCH', dst)\n"
                "s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
                "s6.sendto(b'mdns', ('ff02::fb', 5353, 0, socket.if_nametoindex('%s')))\n" % p.name)
        r = self.app(["python3", "-c", code], timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        start = len(p.lines)
        self.stop_tun(p)
        line = " ".join(p.lines[start:])
        m = re.search(r"UDP (\d+) flows, (\d+) up, \d+ down, \d+ dropped, (\d+) not unicast", line)
        self.assertIsNotNone(m, "no UDP counters at exit:\n" + line)
        flows, up, not_unicast = (int(x) for x in m.groups())
        self.assertEqual((flows, up), (0, 0), "multicast or broadcast went upstream:\n" + line)
        self.assertGreaterEqual(not_unicast, 3, line)

    def test_14_ping_answered_by_warren(self):
        self.start_tun()
        for argv in (["ping", "-c", "3", "-i", "0.2", "-W", "2", T.PING4],
                     ["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", T.PING6]):
            r = self.app(argv, timeout=20)
            self.assertEqual(r.returncode, 0, "%s: %s%s" % (argv, r.stdout.decode(), self.logs()))
            self.assertIn(" 3 received", r.stdout.decode())

    def test_15_no_icmp_reply(self):
        self.start_tun("--no-icmp-reply")
        r = self.app(["ping", "-c", "2", "-i", "0.2", "-W", "1", T.PING4], timeout=20)
        self.assertNotEqual(r.returncode, 0, "answered despite --no-icmp-reply: " + r.stdout.decode())
        self.assertIn(" 0 received", r.stdout.decode())

    def test_16_one_thousand_concurrent_connections(self):
        self.start_tun()
        r = self.tool("tun_tool.py", "many", T.SVC4, T.ECHO, 1000, 4096, 90, timeout=150)
        self.assertEqual(r["result"], "ok", "%r%s" % (r, self.logs()))
        figure("1000 concurrent connections through warren tun (%s): all open after %.2f s, done in %.2f s" % (
            self.upstream, r["all_open_after"], r["elapsed"]))

    def test_17_refused_destination_fails_fast(self):
        self.start_tun()
        for host in (T.SVC4, T.SVC6):
            r = self.tool("ns_tool.py", "connect", host, T.CLOSED, 10)
            self.assertEqual(r["result"], "refused", "connect to %s port %d: %r%s" % (host, T.CLOSED, r, self.logs()))
            self.assertLess(r["elapsed"], 2.0, r)

    def test_18_unroutable_destination_is_never_accepted(self):
        self.start_tun()
        r = self.tool("ns_tool.py", "echo", T.UNROUTABLE, 80, 20)
        unreachable = r["result"] == "error" and re.search(r"\b(101|113)\b|unreachable|No route", r.get("error", ""))
        self.assertTrue(unreachable or r["result"] == "timeout",
                        "connect to unroutable %s: %r (want EHOSTUNREACH/ENETUNREACH or a timeout)%s"
                        % (T.UNROUTABLE, r, self.logs()))
        figure("unroutable destination through warren tun (%s): %s after %.2f s" % (
            self.upstream, r.get("error", r["result"]), r["elapsed"]))

    def test_19_upstream_restarted(self):
        tun = self.start_tun()
        self.assert_blob(T.HTTP_URLS[0], context="before the restart")
        TOPO.stop_upstream(self.upstream)
        r = self.curl(T.HTTP_URLS[0], max_time=8)
        self.assertNotEqual(r.returncode, 0, "curl worked with the upstream down")
        TOPO.start_upstream(self.upstream)
        start = time.monotonic()
        while True:
            r = self.curl(T.HTTP_URLS[0], max_time=5)
            if r.returncode == 0 or time.monotonic() - start > 20:
                break
            time.sleep(0.2)
        self.assertEqual(r.returncode, 0, "no connection works 20 s after the upstream restarted: %s%s"
                         % (r.stderr.decode(errors="replace"), self.logs()))
        self.assertEqual(r.stdout, TOPO.blob)
        figure("upstream (%s) restarted: first new connection through warren tun after %.2f s" % (
            self.upstream, time.monotonic() - start))
        self.assertIsNone(tun.proc.poll())


class DanteTest(CoreTests, TunCase):
    upstream = "dante"


class WarrenServerTest(CoreTests, TunCase):
    upstream = "wss"


class SshUpstreamTest(TunCase):
    """`ssh -D` refuses UDP ASSOCIATE: DNS goes over TCP, other UDP is dropped."""
    upstream = "ssh"

    def test_30_tcp_and_dns_over_tcp(self):
        tun = self.start_tun()
        self.check_curl_v4_v6()
        self.check_dns()
        for _ in range(2):
            r = self.tool("tun_tool.py", "udp-probe", T.SVC4, T.ECHO, 3, 2)
            self.assertEqual(r["echoed"], 0, "UDP other than DNS went through ssh -D?! %r" % r)
        warned = [l for l in tun.lines if re.search(r"^\S+ warn", l) and re.search(r"(?i)udp", l)]
        self.assertEqual(len(warned), 1, "want one warning about dropped UDP:\n" + tun.stderr_text())


class LifecycleTest(TunCase):
    upstream = "dante"

    def test_40_sigkill_then_next_start_cleans_up(self):
        first = self.start_tun()
        rules_up = TOPO.owned_rules()
        first.signal(signal.SIGKILL)
        first.wait_exit(10)
        left = TOPO.owned_rules() + TOPO.owned_routes()
        figure("after SIGKILL of warren tun: %d protocol-119 rules/routes left" % len(left))
        second = self.start_tun()
        self.assertEqual(len(TOPO.owned_rules()), len(rules_up),
                         "after the second start: %s (first run's: %s)\n%s"
                         % (TOPO.owned_rules(), rules_up, second.stderr_text()))
        self.check_curl_v4_v6()
        self.stop_tun(second)

    def rp_filter_drops(self):
        out = self.app(["nstat", "-az", "TcpExtIPReversePathFilter"]).stdout.decode()
        m = re.search(r"TcpExtIPReversePathFilter\s+(\d+)", out)
        return int(m.group(1)) if m else -1

    def test_41_strict_rp_filter_and_an_upstream_off_link(self):
        """The upstream 10.77.9.2 is reached through app's default route: its
        replies come in on vapp while an unmarked lookup of 10.77.9.2 says
        the TUN, so strict reverse-path filtering drops them unless warren
        handles it (the issue: src_valid_mark)."""
        self.assertEqual(TOPO.app_sysctl("net.ipv4.conf.all.rp_filter"), "1")
        self.start_tun(upstream="offlink")
        before = self.rp_filter_drops()
        r = self.curl(T.HTTP_URLS[0], max_time=8)
        self.assertEqual(r.returncode, 0, "curl through an off-link upstream under rp_filter=1: %s; packets the "
                         "reverse-path filter dropped meanwhile: %d; src_valid_mark=%s%s"
                         % (r.stderr.decode(errors="replace").strip(), self.rp_filter_drops() - before,
                            TOPO.app_sysctl("net.ipv4.conf.all.src_valid_mark"), self.logs()))
        # What carries the mark back onto the replies (removed on exit: the
        # state check after every test compares nftables' tables too).
        self.assertIn("table inet warren_wt0", TOPO.app_state()["nft_tables"])
        self.check_curl_v4_v6()

    def test_42_without_cap_net_admin(self):
        os.chmod(self.tmp, 0o755)
        os.chown(self.lock_dir, 65534, 65534)
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--",
                wt.WARREN, "tun", "--lock-dir", self.lock_dir, "--default-route"] + self.upstream_args()
        r = run(TOPO.in_app(argv), timeout=20)
        err = [l for l in r.stderr.decode(errors="replace").splitlines() if l.strip()]
        self.assertEqual(r.returncode, 1, "exit %d:\n%s" % (r.returncode, "\n".join(err)))
        errors = [l for l in err if re.search(r"\berror\b", l, re.I)]
        self.assertEqual(len(errors), 1, "want one error line:\n" + "\n".join(err))
        self.assertRegex(errors[0], r"CAP_NET_ADMIN|[Pp]ermission|not permitted")
        self.assert_state_restored("after a start without CAP_NET_ADMIN")


def skip_check():
    reason = topo.skip_reason()
    if reason:
        return reason
    return tt.need("danted", "dnsmasq", "iperf3", "dig", "curl", "ping", "setpriv", "ssh", "/usr/sbin/sshd")


def interrupted(signo, _frame):
    raise KeyboardInterrupt("signal %d" % signo)  # unwinds to the atexit clean-up (SystemExit would not)


if __name__ == "__main__":
    import atexit
    signal.signal(signal.SIGTERM, interrupted)
    atexit.register(tt.print_figures)
    wt.main(skip_check=skip_check)
