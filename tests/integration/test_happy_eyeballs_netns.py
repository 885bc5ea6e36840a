#!/usr/bin/env python3
"""Happy Eyeballs (RFC 8305) of `warren relay`, tested against a real
black hole: inside a private network namespace (only `lo`, so no route
anywhere else), an nftables rule silently drops IPv6 TCP to the target port,
so an IPv6 connect hangs. Names resolve through a per-namespace /etc/hosts
(/etc/netns/NS/hosts, bind-mounted over /etc/hosts by `ip netns exec`).

Needs root and `ip netns`; otherwise exits 77 (CTest SKIP_RETURN_CODE).

    python3 test_happy_eyeballs_netns.py --warren /path/to/warren
"""

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, HERE)
import warren_test as wt  # noqa: E402

NS_TOOL = os.path.join(HERE, "ns_tool.py")
NAME = "he.test"
_counter = itertools.count(1)


def run(argv, timeout=15, check=True):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (argv, p.returncode, p.stderr.decode(errors="replace")))
    return p


def skip_reason():
    """Why this file cannot run here (exit 77), or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) not found"
    ns = "warren-he-%d-probe" % os.getpid()
    try:
        p = run(["ip", "netns", "add", ns], check=False)
        if p.returncode != 0:
            return "`ip netns add` failed: " + p.stderr.decode(errors="replace").strip()
        try:
            if shutil.which("nft") is None:
                return "`nft` (nftables) not found"
            p = run(["ip", "netns", "exec", ns, "nft", "add", "table", "ip6", "probe"], check=False)
            if p.returncode != 0:
                return "nftables unusable in a namespace: " + p.stderr.decode(errors="replace").strip()
        finally:
            run(["ip", "netns", "del", ns], check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "network namespaces unusable: %r" % e
    return None


class HappyEyeballsNetnsTest(wt.WarrenTestCase):
    def setUp(self):
        super().setUp()
        self.ns = "warren-he-%d-%d" % (os.getpid(), next(_counter))
        run(["ip", "netns", "add", self.ns])
        self.addCleanup(run, ["ip", "netns", "del", self.ns], 15, False)
        if not os.path.isdir("/etc/netns"):
            os.makedirs("/etc/netns")
            self.addCleanup(self.rmdir_if_empty, "/etc/netns")
        etc = os.path.join("/etc/netns", self.ns)
        os.makedirs(etc)
        self.addCleanup(shutil.rmtree, etc, True)
        with open(os.path.join(etc, "hosts"), "w") as f:
            f.write("127.0.0.1 localhost\n::1 %s\n127.0.0.1 %s\n" % (NAME, NAME))
        run(["ip", "-n", self.ns, "link", "set", "lo", "up"])
        # Safety: the namespace has only lo, and every route goes through lo.
        links = run(["ip", "-n", self.ns, "-o", "link", "show"]).stdout.decode().strip().splitlines()
        self.assertEqual(len(links), 1, links)
        self.assertRegex(links[0], r"^\d+: lo:")
        for fam in ("-4", "-6"):
            for table in ("main", "local"):
                out = run(["ip", "-n", self.ns, fam, "route", "show", "table", table]).stdout.decode()
                for line in out.strip().splitlines():
                    self.assertIn("dev lo", line, "route leaving lo in the test namespace")

    # -- helpers ------------------------------------------------------------

    @staticmethod
    def rmdir_if_empty(path):
        try:
            os.rmdir(path)
        except OSError:
            pass  # another namespace's files are still there

    def in_ns(self, *argv):
        return ["ip", "netns", "exec", self.ns] + list(argv)

    def start_server(self, v4=True, v6=True):
        args = ["serve"] + (["--v4"] if v4 else []) + (["--v6"] if v6 else [])
        server = self.track(wt.Process(self.in_ns(sys.executable, NS_TOOL, *args)))
        self.port = int(server.wait_for(r"^PORT (\d+)$", stream="stdout").group(1))
        return self.port

    def drop_ipv6(self, port):
        nft = self.in_ns("nft")
        run(nft + ["add", "table", "ip6", "t"])
        run(nft + ["add", "chain", "ip6", "t", "input", "{ type filter hook input priority 0 ; }"])
        run(nft + ["add", "rule", "ip6", "t", "input", "tcp", "dport", str(port), "drop"])

    def client(self, mode, host, port, timeout):
        p = run(self.in_ns(sys.executable, NS_TOOL, mode, host, str(port), str(timeout)), timeout=timeout + 15)
        lines = p.stdout.decode().strip().splitlines()
        self.assertTrue(lines, "no output from client: %s" % p.stderr.decode(errors="replace"))
        return json.loads(lines[-1])

    def relay(self, *extra):
        return self.start_warren(["relay", "127.0.0.1:0", "%s:%d" % (NAME, self.port), "--log-level", "debug",
                                  "--no-target-check"] + list(extra), prefix=self.in_ns())

    def attempt_line(self, relay, n, addr, fam):
        """Index of 'conn#1: attempt n to addr (fam) started at +N ms' and N."""
        rx = r"conn#1: attempt %d to %s \(%s\) started at \+(\d+) ms" % (n, re.escape(addr), fam)
        idx = relay.find(rx)
        self.assertIsNotNone(idx, "no line /%s/ in:\n%s" % (rx, relay.stderr_text()))
        return idx, int(re.search(rx, relay.lines[idx]).group(1))

    def blackholed_ipv6_setup(self):
        """Echo server on 127.0.0.1:P and [::1]:P, then IPv6 to P dropped."""
        port = self.start_server(v4=True, v6=True)
        r = self.client("connect", "::1", port, 2)
        self.assertEqual(r["result"], "connected", "IPv6 server not reachable before the drop rule: %r" % r)
        self.drop_ipv6(port)
        return port

    # -- tests --------------------------------------------------------------

    def test_ipv6_blackholed_ipv4_wins(self):
        """(a) the drop is real; (b) through the relay the IPv4 attempt wins
        after the IPv6 one started first, in well under a sequential timeout."""
        port = self.blackholed_ipv6_setup()
        r = self.client("connect", "::1", port, 1)
        self.assertEqual(r["result"], "timeout", "IPv6 connect was not black-holed: %r" % r)
        self.assertGreaterEqual(r["elapsed"], 0.9)
        r = self.client("connect", "127.0.0.1", port, 2)
        self.assertEqual(r["result"], "connected", r)

        relay = self.relay()
        r = self.client("echo", "127.0.0.1", relay.port, 5)
        self.assertEqual(r["result"], "ok", "%r\n%s" % (r, relay.stderr_text()))
        self.assertLess(r["elapsed"], 0.5, "connect+request+reply took %.3f s\n%s" % (r["elapsed"],
                                                                                   relay.stderr_text()))
        relay.wait_for(r"conn#1: connected to 127\.0\.0\.1:%d \(IPv4\)" % port)
        connected = relay.find(r"conn#1: connected to 127\.0\.0\.1:%d \(IPv4\)" % port)
        v6, _ = self.attempt_line(relay, 1, "[::1]:%d" % port, "IPv6")
        v4, v4_at = self.attempt_line(relay, 2, "127.0.0.1:%d" % port, "IPv4")
        self.assertLess(v6, v4)
        self.assertLess(v4, connected)
        # The IPv4 attempt waited for the attempt delay (250 ms), not for a timeout.
        self.assertGreaterEqual(v4_at, 200, relay.lines[v4])
        self.assertLess(v4_at, 450, relay.lines[v4])
        self.assertIsNone(relay.find(r"conn#1: connected to \[::1\]"))

    def test_ipv4_refused_connects_over_ipv6(self):
        """(c) no IPv4 listener (refused), IPv6 not dropped: IPv6 is used."""
        port = self.start_server(v4=False, v6=True)
        r = self.client("connect", "127.0.0.1", port, 2)
        self.assertEqual(r["result"], "refused", r)
        for family in ("auto", "prefer-ipv4"):
            with self.subTest(family=family):
                relay = self.relay("--family", family)
                r = self.client("echo", "127.0.0.1", relay.port, 5)
                self.assertEqual(r["result"], "ok", "%r\n%s" % (r, relay.stderr_text()))
                self.assertLess(r["elapsed"], 0.5, relay.stderr_text())
                relay.wait_for(r"conn#1: connected to \[::1\]:%d \(IPv6\)" % port)
                if family == "prefer-ipv4":
                    # IPv4 first, refused, then IPv6 at once (no attempt delay).
                    v4, _ = self.attempt_line(relay, 1, "127.0.0.1:%d" % port, "IPv4")
                    self.assertIsNotNone(relay.find(r"conn#1: attempt 1 to 127\.0\.0\.1:%d failed .*refused" % port),
                                         relay.stderr_text())
                    v6, v6_at = self.attempt_line(relay, 2, "[::1]:%d" % port, "IPv6")
                    self.assertLess(v4, v6)
                    self.assertLess(v6_at, 200, relay.lines[v6])
                relay.signal(signal.SIGTERM)
                relay.wait_exit(5)

    def test_family_ipv4_never_tries_ipv6(self):
        """(d) --family ipv4: no IPv6 attempt at all."""
        port = self.blackholed_ipv6_setup()
        relay = self.relay("--family", "ipv4")
        r = self.client("echo", "127.0.0.1", relay.port, 5)
        self.assertEqual(r["result"], "ok", "%r\n%s" % (r, relay.stderr_text()))
        self.assertLess(r["elapsed"], 0.5)
        relay.wait_for(r"conn#1: connected to 127\.0\.0\.1:%d \(IPv4\)" % port)
        self.attempt_line(relay, 1, "127.0.0.1:%d" % port, "IPv4")
        self.assertIsNone(relay.find(r"\(IPv6\) started"), relay.stderr_text())
        self.assertIsNone(relay.find(r"\[::1\]"), relay.stderr_text())

    def test_family_ipv6_times_out_and_closes_client(self):
        """(d) --family ipv6 against the black hole: times out after
        --connect-timeout and the client connection is closed."""
        port = self.blackholed_ipv6_setup()
        relay = self.relay("--family", "ipv6", "--connect-timeout", "1s")
        r = self.client("echo", "127.0.0.1", relay.port, 8)
        self.assertIn(r["result"], ("closed", "reset"), "%r\n%s" % (r, relay.stderr_text()))
        self.assertEqual(r.get("received", 0), 0)
        self.assertGreaterEqual(r["elapsed"], 0.9, "closed before the connect timeout")
        self.assertLess(r["elapsed"], 3.0, "not closed promptly after the 1s connect timeout")
        relay.wait_for(r"warning .*conn#1 .*timed out after 1s")
        self.attempt_line(relay, 1, "[::1]:%d" % port, "IPv6")
        self.assertIsNone(relay.find(r"\(IPv4\) started"), relay.stderr_text())
        self.assertIsNone(relay.proc.poll(), "relay exited")

    def test_family_prefer_ipv4_starts_with_ipv4(self):
        """(d) --family prefer-ipv4: the first attempt is IPv4 (and wins)."""
        port = self.blackholed_ipv6_setup()
        relay = self.relay("--family", "prefer-ipv4")
        r = self.client("echo", "127.0.0.1", relay.port, 5)
        self.assertEqual(r["result"], "ok", "%r\n%s" % (r, relay.stderr_text()))
        self.assertLess(r["elapsed"], 0.5)
        relay.wait_for(r"conn#1: connected to 127\.0\.0\.1:%d \(IPv4\)" % port)
        self.attempt_line(relay, 1, "127.0.0.1:%d" % port, "IPv4")
        self.assertIsNone(relay.find(r"conn#1: attempt \d+ to \[::1\]"), relay.stderr_text())


if __name__ == "__main__":
    wt.main(skip_check=skip_reason)
