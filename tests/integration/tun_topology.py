"""The two network namespaces of test_tun.py (see its docstring) and the
peers in them: built, started, restarted, inspected and removed here, so
the test reads as what it checks. Everything made is recorded and removed
by destroy(), which also runs at interpreter exit.

Network safety: app's only link is the veth to srv; srv has no route but
its link and lo; the peers listen on srv's own addresses; an nftables rule
in srv counts and drops what app sends anywhere but to the upstreams.
"""

import atexit
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import warren_test as wt  # noqa: E402

APP4, SRV4, APP6, SRV6 = "10.77.0.1", "10.77.0.2", "fd77::1", "fd77::2"
OFFLINK = "10.77.9.2"  # an upstream address on srv's lo: reached through app's default route
SVC4, SVC6 = "203.0.113.10", "2001:db8::10"
UNROUTABLE = "198.51.100.1"
PING4, PING6 = "192.0.2.55", "2001:db8:77::55"
DNS_NAME = "tun.warren.test"
HTTP, ECHO, IPERF, DNS, DANTE, SSH_D, SSHD, WSS, CLOSED, BULK = 80, 7, 5201, 53, 1080, 1081, 22, 8443, 9, 5001
HTTP_URLS = ("http://%s/blob.bin" % SVC4, "http://[%s]/blob.bin" % SVC6)
ROUTE_PROTOCOL = "119"  # warren's (0x77)


def run(argv, timeout=60, check=True):
    p = subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (argv, p.returncode, p.stderr.decode(errors="replace")))
    return p


def skip_reason():
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return "`%s` not found" % tool
    ns = "wtun-probe-%d" % os.getpid()
    p = run(["ip", "netns", "add", ns], check=False)
    if p.returncode != 0:
        return "`ip netns add` failed: " + p.stderr.decode(errors="replace").strip()
    try:
        p = run(["ip", "netns", "exec", ns, "nft", "add", "table", "inet", "probe"], check=False)
        if p.returncode != 0:
            return "nftables unusable in a namespace: " + p.stderr.decode(errors="replace").strip()
    finally:
        run(["ip", "netns", "del", ns], check=False)
    return None


LEAK_GUARD = """
table inet wtun_guard {
  counter leaked { }
  chain pre {
    type filter hook prerouting priority 0; policy accept;
    iifname "vsrv" meta nfproto ipv4 ip daddr != { %s, %s } counter name leaked drop
    iifname "vsrv" meta nfproto ipv6 ip6 daddr != { %s, fe80::/10, ff02::/16 } counter name leaked drop
  }
}
""" % (SRV4, OFFLINK, SRV6)


class Topology:
    def __init__(self, warren, tag):
        self.warren = warren
        self.app_ns, self.srv_ns = tag + "-app", tag + "-srv"
        self.tmp = tempfile.mkdtemp(prefix="warren-tun-topo-")
        self.procs = {}
        self.made_ns = []
        self.blob = os.urandom(300_000)
        self.token = "tok-" + secrets.token_hex(24)
        self.token_file = os.path.join(self.tmp, "token")
        with open(os.open(self.token_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(self.token + "\n")
        self.server_url = "wss://%s:%d" % (SRV4, WSS)
        self.pin = None
        atexit.register(self.destroy)

    # -- namespaces ------------------------------------------------------------

    def in_app(self, argv):
        return ["ip", "netns", "exec", self.app_ns] + [str(a) for a in argv]

    def in_srv(self, argv):
        return ["ip", "netns", "exec", self.srv_ns] + [str(a) for a in argv]

    @staticmethod
    def remove_stale(prefix):
        """Namespaces of an earlier run of this file that was killed (its
        pid gone) before it could remove them, with what runs in them."""
        for line in run(["ip", "netns", "list"]).stdout.decode().splitlines():
            m = re.match(r"(%s(\d+)-(?:app|srv))\b" % re.escape(prefix), line)
            if not m or os.path.exists("/proc/%s" % m.group(2)):
                continue
            for pid in run(["ip", "netns", "pids", m.group(1)], check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            run(["ip", "netns", "del", m.group(1)], check=False)

    def build(self, guard=True):
        for ns in (self.app_ns, self.srv_ns):
            run(["ip", "netns", "add", ns])
            self.made_ns.append(ns)
        a, s = ["ip", "-n", self.app_ns], ["ip", "-n", self.srv_ns]
        run(a + ["link", "add", "vapp", "type", "veth", "peer", "name", "vsrv", "netns", self.srv_ns])
        for ns in (a, s):
            run(ns + ["link", "set", "lo", "up"])
        run(a + ["addr", "add", APP4 + "/24", "dev", "vapp"])
        run(a + ["addr", "add", APP6 + "/64", "dev", "vapp", "nodad"])
        run(a + ["link", "set", "vapp", "up"])
        run(a + ["route", "add", "default", "via", SRV4])
        run(a + ["-6", "route", "add", "default", "via", SRV6])
        run(self.in_app(["sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1",
                         "net.ipv4.conf.default.rp_filter=1", "net.ipv4.conf.vapp.rp_filter=1"]))
        run(s + ["addr", "add", SRV4 + "/24", "dev", "vsrv"])
        run(s + ["addr", "add", SRV6 + "/64", "dev", "vsrv", "nodad"])
        for addr in (SVC4 + "/32", OFFLINK + "/32", SVC6 + "/128"):
            run(s + ["addr", "add", addr, "dev", "lo"] + (["nodad"] if ":" in addr else []))
        run(s + ["link", "set", "vsrv", "up"])
        self.settle()
        if guard:  # the benchmark measures the direct path too
            path = os.path.join(self.tmp, "guard.nft")
            with open(path, "w") as f:
                f.write(LEAK_GUARD)
            run(self.in_srv(["nft", "-f", path]))

    def settle(self, timeout=10):
        """Waits for the veths' IPv6 link-local addresses (and with them the
        local table's routes) to be final, so app_state() taken now is the
        baseline the cleanup checks compare with."""
        deadline = time.monotonic() + timeout
        for ns, dev in ((self.app_ns, "vapp"), (self.srv_ns, "vsrv")):
            while True:
                out = run(["ip", "-n", ns, "-6", "addr", "show", "dev", dev, "scope", "link"]).stdout.decode()
                if "inet6 fe80" in out and "tentative" not in out:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError("%s: no usable link-local address on %s: %s" % (ns, dev, out))
                time.sleep(0.05)

    def leaked(self):
        p = run(self.in_srv(["nft", "-j", "list", "counter", "inet", "wtun_guard", "leaked"]))
        for item in json.loads(p.stdout)["nftables"]:
            if "counter" in item:
                return item["counter"]["packets"]
        raise AssertionError("no counter in: " + p.stdout.decode())

    def app_sysctl(self, name):
        return run(self.in_app(["sysctl", "-n", name])).stdout.decode().strip()

    def app_state(self):
        """Links, nftables tables, rules and routes (all tables) of app, comparable."""
        def j(*args):
            out = run(["ip", "-n", self.app_ns, "-j"] + list(args)).stdout
            return json.loads(out or b"[]")

        def norm(items):
            drop = ("expires", "cacheinfo")
            return sorted(json.dumps({k: v for k, v in i.items() if k not in drop}, sort_keys=True) for i in items)

        tables = run(self.in_app(["nft", "list", "tables"])).stdout.decode().split("\n")
        return {"links": sorted(l["ifname"] for l in j("link", "show")),
                "nft_tables": sorted(t.strip() for t in tables if t.strip()),
                "rules": norm(j("-4", "rule") + j("-6", "rule")),
                "routes": norm(j("-4", "route", "show", "table", "all") + j("-6", "route", "show", "table", "all"))}

    def owned_rules(self):
        return [r for r in self.app_state()["rules"] if json.loads(r).get("protocol") in (ROUTE_PROTOCOL, "0x77")]

    def owned_routes(self):
        return [r for r in self.app_state()["routes"] if json.loads(r).get("protocol") in (ROUTE_PROTOCOL, "0x77")]

    # -- peers in srv ----------------------------------------------------------

    def spawn(self, key, argv, ready=None, stream="stdout", timeout=15):
        p = wt.Process(self.in_srv(argv))
        self.procs[key] = p
        if ready:
            p.wait_for(ready, timeout=timeout, stream=stream)
        return p

    def wait_port(self, host, port, timeout=15):
        p = run(self.in_srv([sys.executable, os.path.join(HERE, "tun_tool.py"), "wait-port", host, port, timeout]),
                timeout=timeout + 10)
        if json.loads(p.stdout)["result"] != "ok":
            raise AssertionError("nothing listens on %s:%d in srv: %s" % (host, port, p.stdout.decode()))

    def stop(self, key):
        """Ends a peer and everything in its process group. Not
        Process.kill(): a grandchild outside the group (sshd's session) may
        still hold its stderr, and closing a pipe a reader thread is
        blocked on would wait for that thread."""
        p = self.procs.pop(key, None)
        if p is None:
            return
        for signo in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(p.pid, signo)  # danted's children too (the peer runs in its own session)
            except ProcessLookupError:
                pass
            try:
                p.proc.wait(5)
                break
            except subprocess.TimeoutExpired:
                pass
        for t in p._readers:
            t.join(2)
        if not any(t.is_alive() for t in p._readers):
            p.proc.stdout.close()
            p.proc.stderr.close()

    def start_services(self, bench=False):
        www = os.path.join(self.tmp, "www")
        os.makedirs(www)
        with open(os.path.join(www, "blob.bin"), "wb") as f:
            f.write(self.blob)
        tool = [sys.executable, os.path.join(HERE, "tun_tool.py")]
        self.spawn("http", tool + ["http-serve", www, HTTP, SVC4, SVC6], ready=r"READY")
        self.spawn("echo", tool + ["echo-serve", ECHO, SVC4, SVC6], ready=r"READY")
        self.spawn("udp-echo", tool + ["udp-echo-serve", ECHO, SVC4, SVC6], ready=r"READY")
        self.spawn("iperf3", ["iperf3", "-s", "-B", SVC4, "-p", IPERF, "--forceflush"], ready=r"Server listening on %d" % IPERF)
        self.spawn("dnsmasq", ["dnsmasq", "--no-daemon", "--port=%d" % DNS, "--listen-address=" + SVC4,
                               "--bind-interfaces", "--no-resolv", "--no-hosts", "--log-facility=-",
                               "--address=/%s/%s" % (DNS_NAME, SVC4), "--address=/%s/%s" % (DNS_NAME, SVC6),
                               "--conf-file=/dev/null"], ready=r"dnsmasq\[\d+\]: started", stream="stderr")
        self.start_upstream("dante")
        if bench:
            self.spawn("bulk", tool + ["bulk-serve", BULK, SVC4], ready=r"READY")
            self.server_url = "tcp://%s:%d" % (SRV4, WSS)
        else:
            self.start_ssh_d()
        self.start_upstream("wss")

    def start_upstream(self, kind):
        if kind == "dante":
            self.start_dante()
        elif kind == "wss":
            self.start_server()
        else:
            raise AssertionError("cannot restart " + kind)

    def stop_upstream(self, kind):
        self.stop({"dante": "danted", "wss": "server"}[kind])

    def start_dante(self):
        conf = os.path.join(self.tmp, "danted.conf")
        with open(conf, "w") as f:
            f.write("\n".join([
                "logoutput: " + os.path.join(self.tmp, "danted.log"),
                "internal: %s port = %d" % (SRV4, DANTE),
                "internal: %s port = %d" % (OFFLINK, DANTE),
                "external: " + SVC4,
                "external: " + SVC6,
                "socksmethod: none",
                "clientmethod: none",
                "user.privileged: root",
                "user.unprivileged: nobody",
                # Everything: srv reaches nothing but its own addresses and app.
                "client pass {", "  from: 0/0 to: 0/0", "  log: error", "}",
                "socks pass {", "  from: 0/0 to: 0/0", "  command: connect udpassociate bindreply udpreply",
                "  log: error", "}", ""]))
        self.spawn("danted", ["danted", "-f", conf, "-N", "1"])
        try:
            self.wait_port(SRV4, DANTE)
            self.wait_port(OFFLINK, DANTE)
        except AssertionError as e:
            raise AssertionError("%s\ndanted's log:\n%s" % (e, self.dante_log())) from None

    def dante_log(self):
        try:
            with open(os.path.join(self.tmp, "danted.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def start_ssh_d(self):
        keys = os.path.join(self.tmp, "ssh")
        os.makedirs(keys, mode=0o700)
        for name in ("host_key", "client_key"):
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "warren-tun-test", "-f",
                 os.path.join(keys, name)])
        shutil.copyfile(os.path.join(keys, "client_key.pub"), os.path.join(keys, "authorized_keys"))
        if not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", mode=0o755)  # sshd's privilege separation directory
            self.made_run_sshd = True
        config = os.path.join(keys, "sshd_config")
        with open(config, "w") as f:
            f.write("\n".join(["Port %d" % SSHD, "ListenAddress 127.0.0.1",
                               "HostKey " + os.path.join(keys, "host_key"),
                               "AuthorizedKeysFile " + os.path.join(keys, "authorized_keys"), "StrictModes no",
                               "PidFile none", "UsePAM no", "PermitRootLogin prohibit-password",
                               "PasswordAuthentication no", "KbdInteractiveAuthentication no",
                               "AllowTcpForwarding yes", "LogLevel VERBOSE", ""]))
        self.spawn("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", config], ready=r"Server listening on 127\.0\.0\.1",
                   stream="stderr")
        self.spawn("ssh-d", ["ssh", "-F", "/dev/null", "-N", "-D", "%s:%d" % (SRV4, SSH_D), "-o", "BatchMode=yes",
                             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                             "-o", "IdentitiesOnly=yes", "-o", "ExitOnForwardFailure=yes",
                             "-i", os.path.join(keys, "client_key"), "-p", SSHD, "root@127.0.0.1"])
        self.wait_port(SRV4, SSH_D)

    def start_server(self):
        argv = [self.warren, "server", "--listen", self.server_url, "--token-file", self.token_file,
                "--state-dir", os.path.join(self.tmp, "server-state"), "--log-level", "info",
                "--allow", SVC4, "--allow", "[%s]/128" % SVC6, "--allow", UNROUTABLE + "/32"]
        p = self.spawn("server", argv, ready=wt.SERVER_LISTENING_RE.pattern, stream="stderr", timeout=30)
        if self.server_url.startswith("tcp://"):
            return
        i = p.find(r"server: certificate fingerprint (sha256:[0-9A-Fa-f:]+)")
        if i is None:
            raise AssertionError("no fingerprint line:\n" + p.stderr_text())
        pin = re.search(r"(sha256:[0-9A-Fa-f:]+)", p.lines[i]).group(1)
        if self.pin not in (None, pin):
            raise AssertionError("the restarted server has another certificate")
        self.pin = pin

    def destroy(self):
        for key in reversed(list(self.procs)):  # ssh -D before sshd, so its session ends
            self.stop(key)
        for ns in self.made_ns:
            run(["ip", "netns", "del", ns], check=False)
        self.made_ns = []
        if getattr(self, "made_run_sshd", False) and not os.listdir("/run/sshd"):
            os.rmdir("/run/sshd")
        shutil.rmtree(self.tmp, True)
