#!/usr/bin/env python3
"""`warren server` and `warren client` against a UDP path slower than the
tunnel, for real: inside a private network namespace, UDP to 10.231.0.2
leaves through a veth whose qdisc (tbf, 1 Mbit/s, deep queue) holds
packets, so a UDP socket's send buffer fills and a blocking send would wait
for the link. The namespace has lo and that veth pair only. For the server
test the peer address has a static neighbour entry and no host; for the
client test the veth's other end moves to a second namespace of the test's
own, where 10.231.0.2 is the local application. Nothing leaves either.

Needs root, `ip netns` and `tc`; otherwise exits 77 (CTest SKIP_RETURN_CODE).

    python3 test_tunnel_netns.py --warren /path/to/warren
"""

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, HERE)
import warren_test as wt  # noqa: E402

NS_TOOL = os.path.join(HERE, "ns_tool.py")
SLOW_PEER = "10.231.0.2"
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
        return "needs root (network namespaces, tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return "`%s` (iproute2) not found" % tool
    ns = "warren-tn-%d-probe" % os.getpid()
    try:
        p = run(["ip", "netns", "add", ns], check=False)
        if p.returncode != 0:
            return "`ip netns add` failed: " + p.stderr.decode(errors="replace").strip()
        try:
            p = run(["ip", "-n", ns, "link", "add", "va", "type", "veth", "peer", "name", "vb"], check=False)
            if p.returncode != 0:
                return "no veth in a namespace: " + p.stderr.decode(errors="replace").strip()
            p = run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "va", "root", "tbf", "rate", "1mbit",
                     "burst", "16kb", "limit", "10mb"], check=False)
            if p.returncode != 0:
                return "tbf unusable: " + p.stderr.decode(errors="replace").strip()
        finally:
            run(["ip", "netns", "del", ns], check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "network namespaces unusable: %r" % e
    return None


class TunnelNetnsTest(wt.WarrenTestCase):
    def setUp(self):
        super().setUp()
        self.ns = "warren-tn-%d-%d" % (os.getpid(), next(_counter))
        run(["ip", "netns", "add", self.ns])
        self.addCleanup(run, ["ip", "netns", "del", self.ns], 15, False)
        ip = ["ip", "-n", self.ns]
        run(ip + ["link", "set", "lo", "up"])
        run(ip + ["link", "add", "va", "type", "veth", "peer", "name", "vb"])
        run(ip + ["addr", "add", "10.231.0.1/30", "dev", "va"])
        run(ip + ["link", "set", "va", "up"])
        run(ip + ["link", "set", "vb", "up"])
        run(ip + ["neigh", "add", SLOW_PEER, "lladdr", "02:00:00:00:00:02", "dev", "va"])
        run(self.in_ns("tc", "qdisc", "add", "dev", "va", "root", "tbf", "rate", "1mbit", "burst", "16kb",
                       "limit", "10mb"))
        self.tmp = tempfile.mkdtemp(prefix="warren-tn-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.token = "netns-test-token"
        self.token_file = os.path.join(self.tmp, "token")
        with open(os.open(self.token_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(self.token + "\n")

    def in_ns(self, *argv, ns=None):
        return ["ip", "netns", "exec", ns or self.ns] + list(argv)

    def tool(self, *args, ns=None):
        """ns_tool.py inside a namespace, as a tracked process."""
        return self.track(wt.Process(self.in_ns(sys.executable, NS_TOOL, *[str(a) for a in args], ns=ns)))

    def tool_result(self, warren, *args):
        """Runs an ns_tool.py client in the namespace to its end and returns
        its JSON line, asserting it reports "ok" (`warren`'s log on failure)."""
        p = run(self.in_ns(sys.executable, NS_TOOL, *[str(a) for a in args]), timeout=60, check=False)
        lines = p.stdout.decode().strip().splitlines()
        self.assertTrue(lines, "no output from ns_tool %s: %s\n%s" % (args[0], p.stderr.decode(errors="replace"),
                                                                       warren.stderr_text()))
        r = json.loads(lines[-1])
        self.assertEqual(r["result"], "ok", "%r\n%s" % (r, warren.stderr_text()))
        return r

    def app_namespace(self):
        """Moves the veth's far end (vb) into a second namespace where
        10.231.0.2 is a host: the application behind the slow link."""
        app = self.ns + "-app"
        run(["ip", "netns", "add", app])
        self.addCleanup(run, ["ip", "netns", "del", app], 15, False)
        run(["ip", "-n", self.ns, "neigh", "del", SLOW_PEER, "dev", "va"])
        run(["ip", "-n", self.ns, "link", "set", "vb", "netns", app])
        run(["ip", "-n", app, "link", "set", "lo", "up"])
        run(["ip", "-n", app, "addr", "add", SLOW_PEER + "/30", "dev", "vb"])
        run(["ip", "-n", app, "link", "set", "vb", "up"])
        return app

    def start_server(self, *extra):
        server = self.start_warren(["server", "--listen", "tcp://127.0.0.1:0", "--token-file", self.token_file,
                                    "--allow", SLOW_PEER, "--log-level", "info"] + list(extra),
                                   prefix=self.in_ns(), wait_listening=False)
        m = server.wait_for(r"server: listening on \w+://127\.0\.0\.1:(\d+)")
        server.port = int(re.search(r"127\.0\.0\.1:(\d+)", m.string).group(1))
        return server

    def test_udp_flood_to_a_slow_link_does_not_stall_the_server(self):
        """A client floods datagrams on a UDP flow whose target sits behind
        the 1 Mbit/s link. The flow's socket fills; the server drops what it
        cannot send instead of waiting for the link, so another client's
        PINGs are answered promptly all along."""
        server = self.start_server()
        r = self.tool_result(server, "udp-flood", server.port, self.token, SLOW_PEER, 9, 3)
        wt_figure = "udp flood to a 1 Mbit/s link: %.1f MB flooded, %d PINGs, slowest answer %.0f ms" % (
            r["flooded"] / 1e6, r["pings"], r["max_rtt"] * 1000)
        print("\n    [figure] " + wt_figure, flush=True)
        self.assertGreater(r["flooded"], 1_000_000, "the flood was too small to fill the link's queue")
        self.assertLess(r["max_rtt"], 0.25, "the server stalled for %.0f ms while sending datagrams (%s)"
                        % (r["max_rtt"] * 1000, wt_figure))
        self.assertIsNone(server.proc.poll(), "server exited")

    def test_auth_failures_count_an_ipv6_slash64_as_one_source(self):
        """Issue 10.5: the failure limit keyed on the exact IPv6 address, so
        200 guesses from 40 addresses of one /64 were all answered. Here 5
        wrong guesses come from 5 addresses of 2001:db8:7::/64; a 6th
        address of that /64 is refused unchecked (TM), while an address of
        the next /64 is still checked (NO)."""
        net = "2001:db8:7::"
        for i in list(range(1, 8)) + ["2001:db8:8::1"]:
            address = "%s%d" % (net, i) if isinstance(i, int) else i
            run(["ip", "-n", self.ns, "addr", "add", address + "/64", "dev", "lo", "nodad"])
        server = self.start_warren(["server", "--listen", "tcp://[%s1]:0" % net, "--token-file", self.token_file,
                                    "--allow", SLOW_PEER, "--log-level", "info"],
                                   prefix=self.in_ns(), wait_listening=False)
        m = server.wait_for(r"server: listening on \w+://\[2001:db8:7::1\]:(\d+)")
        port = int(m.group(1))
        answers = []
        for source in ["%s%d" % (net, i) for i in range(2, 8)] + ["2001:db8:8::1"]:
            r = self.tool_result(server, "guess", net + "1", port, source, "wrong-guess")
            answers.append(r["answer"])
        self.assertEqual(answers, ["NO\n"] * 5 + ["TM\n", "NO\n"], answers)

    def test_udp_replies_to_a_slow_link_do_not_stall_the_client(self):
        """The client's side of the same: an application at 10.231.0.2,
        behind the 1 Mbit/s link, pours datagrams into a udp/ forward whose
        target echoes them. The replies fill the forward's socket; the
        client drops what it cannot send instead of waiting for the link,
        so a TCP forward of the same client keeps answering promptly."""
        app = self.app_namespace()
        server = self.start_server("--allow", "127.0.0.1")
        udp_echo = self.tool("udp-echo")
        tcp_echo = self.tool("serve", "--v4")
        udp_port = int(udp_echo.wait_for(r"PORT (\d+)", stream="stdout").group(1))
        tcp_port = int(tcp_echo.wait_for(r"PORT (\d+)", stream="stdout").group(1))
        client = self.start_warren(
            ["client", "tcp://127.0.0.1:%d" % server.port, "--token-file", self.token_file, "--log-level", "info",
             "-L", "udp/10.231.0.1:0:127.0.0.1:%d" % udp_port, "-L", "127.0.0.1:0:127.0.0.1:%d" % tcp_port],
            prefix=self.in_ns(), wait_listening=False)
        udp_fwd = int(client.wait_for(r"forward: UDP 10\.231\.0\.1:(\d+) ->").group(1))
        tcp_fwd = int(client.wait_for(r"forward: TCP 127\.0\.0\.1:(\d+) ->").group(1))
        client.wait_for(r"tunnel: connected to ", timeout=20)
        pour = self.tool("udp-pour", "10.231.0.1", udp_fwd, 4, ns=app)
        time.sleep(0.5)  # let the replies fill the link's queue first
        r = self.tool_result(client, "tcp-rtt", "127.0.0.1", tcp_fwd, 3)
        poured = json.loads(pour.wait_for(r"^\{", stream="stdout", timeout=30).string)
        wt_figure = ("udp replies to a 1 Mbit/s link: %d datagrams poured, %d came back; %d TCP probes, slowest "
                     "%.0f ms" % (poured["sent"], poured["received"], r["probes"], r["max_rtt"] * 1000))
        print("\n    [figure] " + wt_figure, flush=True)
        self.assertGreater(poured["sent"], 5000, "the pour was too small to fill the link's queue")
        self.assertGreater(poured["received"], 0, "no reply made it back: the forward does not work")
        self.assertLess(r["max_rtt"], 0.25, "the client stalled for %.0f ms while sending datagrams (%s)"
                        % (r["max_rtt"] * 1000, wt_figure))
        self.assertIsNone(client.proc.poll(), "client exited")


if __name__ == "__main__":
    wt.main(skip_check=skip_reason)
