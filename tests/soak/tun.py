"""The TUN in the soak (issue 13): `warren tun` (the --warren binary under
test) carrying the traffic of applications in a network namespace while its
upstream restarts and its device is flooded and fed malformed packets.

    app netns:  checked transfers --> wt0 --> warren tun --socks5--.
                                                                  | veth (10.77.0.0/24)
    srv netns:  danted (10.77.0.2:1080) --> data server, UDP echo, dnsmasq on 203.0.113.10 (lo)

Both namespaces are made by the soak (`ip netns add`, unique names; no route
out of either) and deleted at the end, pass or fail. An nftables rule in the
srv namespace drops (and counts) anything for 203.0.113.10 that arrives on
the veth, so the services are reachable only through the TUN and dante; the
app namespace has no route to them but the TUN's (`--default-route`), so
while `warren tun` is down a connection fails at once (unreachable).

Traffic kinds (from the app namespace; the soak's Python opens its sockets
there with setns(2) on the creating thread): tun_echo and tun_download
(SHA-256 checked, traffic.echo / traffic.download), tun_udp (a burst of
datagrams to the UDP echo), tun_dns (an A query to dnsmasq, checked answer),
tun_refused (a closed port: ECONNREFUSED). Their TCP sockets have keepalive
and TCP_USER_TIMEOUT: a connection whose NAT entry died with a killed
`warren tun` is dropped by the next one ("TCP, no session", docs/TUN.md),
and an application learns that only from its own timeout.

Fault kinds: dante_restart (killed, down a while, restarted; new connections
must work again), tun_kill (SIGKILL, restarted; the killed run's rules are
removed by the next start: never more proto 119 rules or routes than one
instance's set), tun_syn_flood, tun_udp_flood and tun_malformed (raw
sockets in the app namespace; afterwards `warren tun` is alive and carries a
checked transfer again within RECOVER_WITHIN).

At the end (after the soak's SIGTERM, which must give status 0): no device,
no proto 119 rule or route, no lock file, the guard's counter 0, and the
exit line's bad-packet count covering the malformed packets sent to that run.
Only as root; otherwise every kind is skipped (one log line).
"""

import contextlib
import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import checks
import traffic
from registry import FAULTS, OPS
from rig import BLOB_SIZE, DataServer, SoakFailure, WarrenProc, wt

SVC = "203.0.113.10"  # the services, on the srv namespace's lo
UPSTREAM = "10.77.0.2"  # dante, on the srv side of the veth
APP_ADDR = "10.77.0.1"
TUN_ADDR = "198.18.0.1"  # warren tun's default --address
DANTE_PORT = 1080
DNS_NAME = "soak.test"
DNS_ANSWER = "192.0.2.77"
READY_RE = r"tun: wt0 up \("
EXIT_RE = re.compile(r"tun: (\d+) packets in .* (\d+) bad packets$")
# A transfer through the TUN works again this long after a fault ended
# (a flood's held SYNs and queued flows drain; an ASan build is slow).
RECOVER_WITHIN = 45.0
# Bounds the soak gives warren tun, so the floods meet them.
MAX_UDP_FLOWS = 512
# A TCP connection whose session died with a killed warren tun: the
# application's own timeouts end it (keepalive while idle, TCP_USER_TIMEOUT
# while data waits for an ACK).
USER_TIMEOUT_MS = 15000
# UDP flows idle out after 60 s (docs/TUN.md): the descriptors they hold are
# back this long after the last one was used.
FDS_SETTLE = 75.0
FDS_SLACK = 8
RSS_SLACK_KIB = checks.RSS_SLACK_KIB + (32 << 10)

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: " + os.strerror(e))


@contextlib.contextmanager
def inside(ns):
    """The calling thread in network namespace `ns` (a name under
    /run/netns) for the block: sockets made there stay there."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    fd = os.open("/run/netns/" + ns, os.O_RDONLY)
    try:
        _setns(fd)
        try:
            yield
        finally:
            _setns(back)
    finally:
        os.close(fd)
        os.close(back)


def run(*argv, check=True):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise SoakFailure("`%s`: exit status %d: %s%s" % (" ".join(argv), r.returncode, r.stdout, r.stderr))
    return r.stdout


def needs_tun(soak):
    if soak.args.no_tun:
        return "--no-tun"
    if os.geteuid() != 0:
        return "warren tun needs root (network namespaces, a TUN device, raw sockets)"
    missing = [t for t in ("ip", "nft", "danted", "dnsmasq") if not shutil.which(t)]
    if missing:
        return "missing " + ", ".join(missing)
    return None


class TunRig:
    """The two namespaces, the services in srv, and the warren tun role."""

    def __init__(self, soak):
        self.soak = soak
        self.rig = soak.rig
        tag = "%d-%s" % (os.getpid(), secrets.token_hex(3))
        self.app = "wsoak-app-" + tag
        self.srv = "wsoak-srv-" + tag
        self.made = []  # namespaces to delete
        self.dir = os.path.join(self.rig.workdir, "tun")
        os.makedirs(self.dir)
        self.lock_dir = os.path.join(self.dir, "lock")
        self.dante = None
        self.dante_starts = 0
        self.dnsmasq = None
        self.data = None
        self.udp = None
        self.closed = None
        self.rules = None  # one instance's proto 119 rules, as first seen
        self.routes = None
        self.bad_sent = {}  # tun pid -> malformed packets sent to it
        self.lock = threading.Lock()

    # -- set-up --------------------------------------------------------------------

    def start(self):
        for ns in (self.app, self.srv):
            run("ip", "netns", "add", ns)
            self.made.append(ns)
        a, s = self.app, self.srv
        run("ip", "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vs", "netns", s)
        run("ip", "-n", a, "addr", "add", APP_ADDR + "/24", "dev", "va")
        run("ip", "-n", s, "addr", "add", UPSTREAM + "/24", "dev", "vs")
        for ns, dev in ((a, "va"), (s, "vs"), (a, "lo"), (s, "lo")):
            run("ip", "-n", ns, "link", "set", dev, "up")
        run("ip", "-n", s, "addr", "add", SVC + "/32", "dev", "lo")
        run("ip", "netns", "exec", s, "nft", "add table inet guard; "
            "add chain inet guard in { type filter hook input priority 0; }; "
            "add rule inet guard in iifname vs ip daddr 203.0.113.0/24 counter drop")
        with inside(s):
            self.data = DataServer(self.rig.blob, host=SVC)
            self.udp = wt.UDPEchoServer(SVC)
            self.closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # bound, never listening
            self.closed.bind((SVC, 0))
        self.closed_port = self.closed.getsockname()[1]
        self.start_dante()
        self.dnsmasq = self.popen_srv("dnsmasq", [
            "dnsmasq", "--conf-file=/dev/null", "--keep-in-foreground", "--no-daemon", "--port", "53",
            "--listen-address", SVC, "--bind-interfaces", "--no-resolv", "--no-hosts",
            "--pid-file=" + os.path.join(self.dir, "dnsmasq.pid"),
            "--address=/%s/%s" % (DNS_NAME, DNS_ANSWER), "--log-facility=-"])
        self.rig.forwards["tun"] = {"open": self.open_app}
        p = self.start_tun()
        self.rules, self.routes = self.proto_entries()
        if not self.rules or not self.routes:
            raise SoakFailure("warren tun --default-route is up but shows no proto 119 rules (%r) or routes (%r)"
                              % (self.rules, self.routes))
        return p

    def popen_srv(self, name, argv):
        log = open(os.path.join(self.dir, "%s.log" % name), "ab")
        try:
            return subprocess.Popen(["ip", "netns", "exec", self.srv] + argv, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, start_new_session=True)
        finally:
            log.close()

    def start_dante(self):
        conf = os.path.join(self.dir, "danted.conf")
        with open(conf, "w") as f:
            f.write("logoutput: stderr\ninternal: %s port = %d\nexternal: %s\nexternal: %s\n"
                    "clientmethod: none\nsocksmethod: none\nuser.privileged: root\nuser.unprivileged: nobody\n"
                    "client pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }\n"
                    "socks pass { from: 0.0.0.0/0 to: 0.0.0.0/0 command: connect udpassociate udpreply }\n"
                    % (UPSTREAM, DANTE_PORT, SVC, UPSTREAM))
        deadline = time.monotonic() + 60
        while True:  # its port may linger a moment after a kill
            self.dante = self.popen_srv("danted", ["danted", "-f", conf])
            self.dante_starts += 1
            while time.monotonic() < deadline and self.dante.poll() is None:
                try:
                    with inside(self.srv):
                        s = socket.create_connection((UPSTREAM, DANTE_PORT), timeout=2)
                    s.close()
                    return
                except OSError:
                    time.sleep(0.1)
            if time.monotonic() >= deadline:
                raise SoakFailure("dante did not listen on %s:%d within 60 s (see %s/danted.log)"
                                  % (UPSTREAM, DANTE_PORT, self.dir))
            time.sleep(0.5)

    def stop_dante(self, sig):
        if self.dante and self.dante.poll() is None:
            try:
                os.killpg(self.dante.pid, sig)  # its own group: the children too
            except ProcessLookupError:
                pass
            try:
                self.dante.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.dante.pid, signal.SIGKILL)
                self.dante.wait(30)
        try:
            os.killpg(self.dante.pid, signal.SIGKILL)  # children that outlived it
        except (ProcessLookupError, PermissionError):
            pass

    def start_tun(self):
        argv = ["ip", "netns", "exec", self.app, self.rig.warren, "tun", "--upstream",
                "socks5://%s:%d" % (UPSTREAM, DANTE_PORT), "--default-route", "--lock-dir", self.lock_dir,
                "--max-udp-flows", str(MAX_UDP_FLOWS), "--log-level", "info"]
        p = WarrenProc("tun", argv, self.rig.env)
        with self.rig.lock:
            self.rig.all_procs.append(p)
        p.wait_for(READY_RE, 60)
        self.rig.procs["tun"] = p
        return p

    def proto_entries(self):
        """(rules, routes) with protocol 119 in the app namespace, both families."""
        # Filtered here: iproute2 6.1's `rule show protocol N` shows every rule.
        ours = re.compile(r"\bproto 119\b")
        rules, routes = [], []
        for fam in ("-4", "-6"):
            rules += [fam + " " + l for l in run("ip", "-n", self.app, "-d", fam, "rule", "show").splitlines()
                      if ours.search(l)]
            routes += [fam + " " + l for l in run("ip", "-n", self.app, fam, "route", "show", "table", "all")
                       .splitlines() if ours.search(l)]
        return sorted(rules), sorted(routes)

    def upstream_sockets(self, pid):
        """pid's TCP sockets to dante, past one per session a transfer may still hold."""
        out = run("ip", "netns", "exec", self.app, "ss", "-tanpH", "dst", "%s:%d" % (UPSTREAM, DANTE_PORT),
                  check=False)
        return sum(1 for l in out.splitlines() if "pid=%d," % pid in l)

    def tx_dropped(self):
        """Packets the TUN's queue dropped (sent to wt0, never read)."""
        link = json.loads(run("ip", "-n", self.app, "-s", "-j", "link", "show", "wt0"))
        return link[0]["stats64"]["tx"]["dropped"]

    def close(self):
        for p in (self.dnsmasq,):
            if p and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(30)
        if self.dante:
            self.stop_dante(signal.SIGKILL)
        for peer in (self.data, self.udp, self.closed):
            try:
                peer.close()
            except Exception:
                pass
        for ns in self.made:
            run("ip", "netns", "del", ns, check=False)
        self.made = []

    # -- sockets in the app namespace ----------------------------------------------

    def sock(self, family, type_, proto=0, cls=socket.socket):
        with inside(self.app):
            return cls(family, type_, proto)

    def open_app(self, dl, port=None):
        """traffic.open_stream's opener for path "tun": a TCP connection
        from the app namespace to the data server, through the TUN."""
        s = self.sock(socket.AF_INET, socket.SOCK_STREAM, cls=traffic.Sock)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 2)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_MS)
            traffic.io("connect", s, (SVC, port or self.data.port), dl=dl)
        except BaseException:
            s.close()
            raise
        return s


def start(soak):
    """Called by soak.py after the daemon: the namespaces, services and warren tun."""
    if needs_tun(soak) or not any(k.fn.__module__ == "tun" for k in soak.ops + soak.faults):
        return None
    t = TunRig(soak)
    soak.rig.tun = t
    return t.start()


def close(rig):
    t = getattr(rig, "tun", None)
    if t:
        t.close()


# -- traffic ---------------------------------------------------------------------

@OPS.kind("tun_echo", weight=2, needs=needs_tun)
def tun_echo(soak, rng, strict):
    return traffic.echo(soak, rng, "tun", 1 << 10, 2 << 20, strict)


@OPS.kind("tun_download", weight=2, needs=needs_tun)
def tun_download(soak, rng, strict):
    return traffic.download(soak, rng, "tun", 4 << 10, 4 << 20)


@OPS.kind("tun_refused", weight=1, needs=needs_tun)
def tun_refused(soak, rng, strict):
    """A closed port behind dante: refused (dante's reply 5 -> a RST for the
    held SYN), fast, never accepted and then dropped."""
    t = soak.rig.tun
    dl = traffic.Deadline(traffic.budget(0), "connect to a closed port through the TUN")
    try:
        s = t.open_app(dl, t.closed_port)
    except traffic.Clean as e:
        if str(e) == "refused":
            return "ok"
        raise
    s.close()
    raise SoakFailure("a connection through the TUN to a closed port (%s:%d) was accepted" % (SVC, t.closed_port))


def udp_sock(t, port):
    """A UDP socket in the app namespace connected to SVC:port (no route
    while warren tun restarts: a clean failure)."""
    s = t.sock(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((SVC, port))
    except OSError as e:
        s.close()
        raise traffic.Clean("udp: %s" % errno.errorcode.get(e.errno, e.errno))
    return s


@OPS.kind("tun_udp", weight=1, needs=needs_tun)
def tun_udp(soak, rng, strict):
    """A burst of datagrams to the UDP echo, by UDP ASSOCIATE: each one that
    comes back is intact; in the final check all of them come back."""
    t = soak.rig.tun
    n = rng.randrange(5, 40)
    sent, got = {}, set()
    with udp_sock(t, t.udp.port) as s:
        for i in range(n):
            size = rng.randrange(1, 1400)
            off = rng.randrange(BLOB_SIZE - size)
            sent[i] = struct.pack(">I", i) + soak.rig.blob[off:off + size]
            try:
                s.send(sent[i])
            except OSError as e:  # unreachable: no warren tun just now
                raise traffic.Clean("udp: %s" % errno.errorcode.get(e.errno, e.errno))
        end = time.monotonic() + 5
        while len(got) < n and time.monotonic() < end:
            s.settimeout(max(end - time.monotonic(), 0.01))
            try:
                d = s.recv(65536)
            except (socket.timeout, TimeoutError):
                break
            except OSError:
                continue  # ICMP of an earlier moment
            i = struct.unpack(">I", d[:4])[0] if len(d) >= 4 else -1
            if sent.get(i) != d:
                raise SoakFailure("corrupt: a datagram came back through the TUN that was not sent as such "
                                  "(%d bytes)" % len(d))
            got.add(i)
    if len(got) < n:
        if strict:
            raise SoakFailure("tun udp: %d of %d datagrams came back with no fault under way" % (len(got), n))
        raise traffic.Clean("udp datagrams lost")
    return "ok"


def dns_query(name, qid):
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack(">HH", 1, 1)


def dns_answers(msg, qid):
    """The A records of a reply (None: not a reply to qid)."""
    if len(msg) < 12:
        return None
    rid, flags, qd, an = struct.unpack(">HHHH", msg[:8])
    if rid != qid or not flags & 0x8000:
        return None
    i = 12
    for _ in range(qd):
        while msg[i]:
            i += 1 + msg[i]
        i += 5
    out = []
    for _ in range(an):
        if msg[i] & 0xC0 == 0xC0:
            i += 2
        else:
            while msg[i]:
                i += 1 + msg[i]
            i += 1
        typ, _cls, _ttl, rdlen = struct.unpack(">HHIH", msg[i:i + 10])
        i += 10
        if typ == 1 and rdlen == 4:
            out.append(socket.inet_ntoa(msg[i:i + 4]))
        i += rdlen
    return out


@OPS.kind("tun_dns", weight=1, needs=needs_tun)
def tun_dns(soak, rng, strict):
    """An A query to dnsmasq through the TUN (a 10 s DNS flow): the answer
    is dnsmasq's, unchanged."""
    t = soak.rig.tun
    name = "q%08x.%s" % (rng.getrandbits(32), DNS_NAME)
    qid = rng.getrandbits(16)
    with udp_sock(t, 53) as s:
        for attempt in range(3):  # a resolver's retries
            try:
                s.send(dns_query(name, qid))
            except OSError as e:
                raise traffic.Clean("dns: %s" % errno.errorcode.get(e.errno, e.errno))
            end = time.monotonic() + 2
            while time.monotonic() < end:
                s.settimeout(max(end - time.monotonic(), 0.01))
                try:
                    msg = s.recv(4096)
                except (socket.timeout, TimeoutError):
                    break
                except OSError:
                    continue
                answers = dns_answers(msg, qid)
                if answers is None:
                    continue
                if answers != [DNS_ANSWER]:
                    raise SoakFailure("dns through the TUN: %s answered %r, dnsmasq says %s"
                                      % (name, answers, DNS_ANSWER))
                return "ok"
    if strict:
        raise SoakFailure("dns through the TUN: no answer for %s in 3 tries with no fault under way" % name)
    raise traffic.Clean("dns: no answer")


# -- faults ----------------------------------------------------------------------

def recovered(soak, rng, why):
    """warren tun alive, and a checked echo through it within RECOVER_WITHIN."""
    p = soak.rig.procs["tun"]
    soak.expect_alive(p)
    deadline = time.monotonic() + RECOVER_WITHIN
    tries = 0
    while True:
        tries += 1
        try:
            traffic.echo(soak, rng, "tun", 1 << 10, 64 << 10, True)
            break
        except traffic.Clean as e:
            if time.monotonic() > deadline:
                raise SoakFailure("no transfer through the TUN %.0f s after %s (%s); warren tun stderr tail:\n%s"
                                  % (RECOVER_WITHIN, why, e, p.report()))
            time.sleep(0.5)
    soak.expect_alive(p)
    return tries


@FAULTS.kind("dante_restart", weight=2, needs=needs_tun)
def dante_restart(soak, rng):
    """The upstream killed (its whole group: sessions in flight die with it),
    down a while (new connections fail cleanly: ICMP unreachable, or a
    reset), restarted; new connections work afterwards."""
    t = soak.rig.tun
    sig = signal.SIGKILL if rng.random() < 0.7 else signal.SIGTERM
    t.stop_dante(sig)
    seconds = rng.uniform(0.1, 6)
    time.sleep(seconds)
    t.start_dante()
    tries = recovered(soak, rng, "dante's restart")
    return "%s, down %.1f s; carried again at try %d" % (sig.name, seconds, tries)


@FAULTS.kind("tun_kill", weight=2, needs=needs_tun)
def tun_kill(soak, rng):
    """SIGKILL: its rules stay behind (the device and its routes go with its
    descriptor); the next start removes them, so afterwards there is exactly
    one instance's set. Now and then SIGTERM instead: status 0 and nothing
    left (stopped())."""
    t = soak.rig.tun
    p = soak.rig.procs["tun"]
    soak.expect_alive(p)
    if rng.random() < 0.3:
        failures = stopped(soak, p.terminate(30))
        if failures:
            raise SoakFailure("\n".join(failures))
        how = "SIGTERM"
    else:
        p.kill()
        how = "SIGKILL"
    left_rules, left_routes = t.proto_entries()
    seconds = rng.uniform(0, 3)
    time.sleep(seconds)
    n = t.start_tun()
    removed = n.text().count("removed a leftover")
    rules, routes = t.proto_entries()
    if rules != t.rules or routes != t.routes:
        raise SoakFailure("after a %s and a restart of warren tun the proto 119 entries are not one "
                          "instance's set:\nrules %s\nroutes %s\nexpected rules %s\nroutes %s"
                          % (how, rules, routes, t.rules, t.routes))
    if left_rules and not removed:
        raise SoakFailure("warren tun (pid %d) found no leftovers of the killed one, which left %s"
                          % (n.pid, left_rules))
    tries = recovered(soak, rng, "warren tun's restart")
    return "%s, down %.1f s; %d rules left behind, %d leftovers removed; carried again at try %d" % (
        how, seconds, len(left_rules), removed, tries)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip4(src, dst, proto, payload, ihl=5, frag=0, options=b""):
    """An IPv4 header (the kernel fills in the length and header checksum)."""
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 0, 0, frag, 64, proto, 0, socket.inet_aton(src),
                      socket.inet_aton(dst))
    return hdr + options + payload


def tcp(src, dst, sport, dport, flags=0x02, doff=5, seq=None, good=True, extra=b""):
    seq = seq if seq is not None else int.from_bytes(os.urandom(4), "big")
    h = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, doff << 4, flags, 64240, 0, 0) + extra
    if good:
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(h))
        h = h[:16] + struct.pack("!H", csum(pseudo + h)) + h[18:]
    return h


def udp(sport, dport, data, length=None):
    return struct.pack("!HHHH", sport, dport, length if length is not None else 8 + len(data), 0) + data


def random_dst(rng, t):
    r = rng.random()
    if r < 0.2:
        return SVC, rng.choice([t.data.port, t.closed_port, rng.randrange(1, 65536)])
    net = rng.choice(["203.0.113.%d", "198.51.100.%d", "192.0.2.%d"])
    return net % rng.randrange(1, 255), rng.randrange(1, 65536)


class Raw:
    """A raw IPv4 socket in the app namespace (IP_HDRINCL): what it sends is
    routed like the applications' packets, to the TUN. Paced so the TUN's
    queue (not warren) is not what drops them."""

    def __init__(self, t):
        self.s = t.sock(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.sent = 0
        self.refused = 0

    def send(self, pkt, dst):
        try:
            self.s.sendto(pkt, (dst, 0))
            self.sent += 1
        except OSError:
            self.refused += 1  # the kernel's own checks, or no route while warren tun restarts
        if (self.sent + self.refused) % 64 == 0:
            time.sleep(0.002)

    def close(self):
        self.s.close()


@FAULTS.kind("tun_syn_flood", weight=1, needs=needs_tun)
def tun_syn_flood(soak, rng):
    """A few thousand SYNs from many source ports to many destinations
    (most unroutable behind dante, some to the data server, some refused):
    pending SYNs are bounded, the oldest evicted; warren tun carries a
    checked transfer again afterwards."""
    t = soak.rig.tun
    n = rng.randrange(2000, 5000)
    raw = Raw(t)
    try:
        for _ in range(n):
            dst, dport = random_dst(rng, t)
            src = TUN_ADDR if rng.random() < 0.8 else "10.99.%d.%d" % (rng.randrange(256), rng.randrange(1, 255))
            raw.send(ip4(src, dst, 6, tcp(src, dst, rng.randrange(1024, 65536), dport)), dst)
    finally:
        raw.close()
    tries = recovered(soak, rng, "a SYN flood")
    return "%d SYNs sent (%d refused by the kernel); carried again at try %d" % (raw.sent, raw.refused, tries)


@FAULTS.kind("tun_udp_flood", weight=1, needs=needs_tun)
def tun_udp_flood(soak, rng):
    """Datagrams to many destination ports: from a few sockets (one UDP
    ASSOCIATE each) and from thousands of spoofed source ports (one flow
    each: the flow table's LRU bound, MAX_UDP_FLOWS)."""
    t = soak.rig.tun
    socks = [t.sock(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(rng.randrange(4, 32))]
    raw = Raw(t)
    sent = 0
    try:
        for s in socks:
            for _ in range(rng.randrange(20, 100)):
                dst, dport = random_dst(rng, t)
                try:
                    s.sendto(os.urandom(rng.randrange(0, 1200)), (dst, dport))
                    sent += 1
                except OSError:
                    pass
        for _ in range(rng.randrange(1000, 4000)):
            dst, dport = random_dst(rng, t)
            raw.send(ip4(TUN_ADDR, dst, 17, udp(rng.randrange(1024, 65536), dport, os.urandom(rng.randrange(0, 512)))),
                     dst)
    finally:
        for s in socks:
            s.close()
        raw.close()
    tries = recovered(soak, rng, "a UDP flood")
    return "%d datagrams from %d sockets, %d from spoofed ports; carried again at try %d" % (
        sent, len(socks), raw.sent, tries)


def malformed(rng, t):
    """(kind, packet, destination): each one warren tun must drop (docs/TUN.md's reasons)."""
    dst, dport = random_dst(rng, t)
    src, sport = TUN_ADDR, rng.randrange(1024, 65536)
    kind = rng.choice(["truncated_tcp", "truncated_udp", "bad_offset", "options", "fragment", "first_fragment",
                       "unknown_protocol", "udp_length"])
    if kind == "truncated_tcp":
        pkt = ip4(src, dst, 6, tcp(src, dst, sport, dport)[:rng.randrange(0, 20)])
    elif kind == "truncated_udp":
        pkt = ip4(src, dst, 17, udp(sport, dport, b"")[:rng.randrange(0, 8)])
    elif kind == "bad_offset":
        doff = rng.choice([0, 1, 4, 6, 15])  # under 5, or past the packet
        pkt = ip4(src, dst, 6, tcp(src, dst, sport, dport, doff=doff, flags=rng.choice([0x02, 0x10, 0x18])))
    elif kind == "options":
        opts = rng.choice([b"\x01\x01\x01\x00", b"\x07\x07\x04\x00\x00\x00\x00\x00", b"\x94\x04\x00\x00"])
        l4 = tcp(src, dst, sport, dport) if rng.random() < 0.5 else udp(sport, dport, b"x" * 8)
        pkt = ip4(src, dst, 6 if len(l4) == 20 else 17, l4, ihl=5 + len(opts) // 4, options=opts)
    elif kind == "fragment":  # a later fragment: no ports
        pkt = ip4(src, dst, 17, os.urandom(rng.randrange(8, 64)), frag=rng.randrange(1, 0x1FFF))
    elif kind == "first_fragment":  # MF set
        pkt = ip4(src, dst, rng.choice([6, 17]), tcp(src, dst, sport, dport) + b"x" * 16, frag=0x2000)
    elif kind == "unknown_protocol":
        pkt = ip4(src, dst, rng.choice([0, 2, 47, 50, 132, 253]), os.urandom(rng.randrange(0, 64)))
    else:  # UDP length not the payload's
        data = os.urandom(rng.randrange(1, 64))
        pkt = ip4(src, dst, 17, udp(sport, dport, data, length=rng.choice([0, 7, 8 + len(data) + 1, 0xFFFF])))
    return kind, pkt, dst


@FAULTS.kind("tun_malformed", weight=1, needs=needs_tun)
def tun_malformed(soak, rng):
    """Raw IPv4 packets warren tun must count and drop: truncated TCP and
    UDP, TCP data offsets under 20 bytes or past the packet, IPv4 options,
    fragments, unknown protocols, wrong UDP lengths. It stays up and carries
    a checked transfer afterwards; its exit line counts them (see end())."""
    t = soak.rig.tun
    p = soak.rig.procs["tun"]
    raw = Raw(t)
    kinds = {}
    dropped = t.tx_dropped()
    try:
        for _ in range(rng.randrange(200, 2000)):
            kind, pkt, dst = malformed(rng, t)
            before = raw.sent
            raw.send(pkt, dst)
            if raw.sent > before:
                kinds[kind] = kinds.get(kind, 0) + 1
    finally:
        raw.close()
    lost = t.tx_dropped() - dropped  # the TUN's queue full: never read by warren tun
    with t.lock:
        t.bad_sent[p.pid] = t.bad_sent.get(p.pid, 0) + raw.sent - lost
    tries = recovered(soak, rng, "malformed packets")
    return "%d sent (%s; %d refused by the kernel, %d dropped by the TUN's queue); carried again at try %d" % (
        raw.sent, ", ".join("%s %d" % kv for kv in sorted(kinds.items())), raw.refused, lost, tries)


# -- the end ---------------------------------------------------------------------

def resources(soak, baseline):
    """warren tun's descriptors back near its baseline (its UDP flows idle
    out within 60 s: FDS_SETTLE), RSS within RSS_SLACK_KIB of it."""
    p = soak.rig.procs["tun"]
    t = soak.rig.tun
    deadline = time.monotonic() + FDS_SETTLE
    while True:
        fds = p.fd_count()
        held = t.upstream_sockets(p.pid) if "tun-held-upstream" in traffic.TOLERATED else 0
        if fds - held <= baseline["fds"] + FDS_SLACK or time.monotonic() > deadline:
            break
        time.sleep(1)
    out = []
    if held:
        soak.count("tun descriptors at the end", "clean: %d sockets to the upstream left out (tolerated: "
                   "tun-held-upstream)" % held)
        fds -= held
    if fds > baseline["fds"] + FDS_SLACK:
        out.append("tun (pid %d): %d descriptors %.0f s after the load, baseline %d (+%d allowed); its sockets "
                   "by state and peer:\n  %s" % (p.pid, fds, FDS_SETTLE, baseline["fds"], FDS_SLACK,
                                                 "\n  ".join(socket_summary(soak.rig.tun, p.pid))))
    rss = p.rss_kib()
    if rss > baseline["rss"] + RSS_SLACK_KIB:
        out.append("tun (pid %d): VmRSS %d KiB after the load, baseline %d KiB (+%d allowed)"
                   % (p.pid, rss, baseline["rss"], RSS_SLACK_KIB))
    baseline["end_fds"], baseline["end_rss"] = fds, rss
    return out


def stopped(soak, code):
    """After a SIGTERM of warren tun: status 0, nothing of it left in the app
    namespace (no proto 119 rule or route, no wt0, no lock file), and its
    exit line counts the malformed packets it was sent."""
    t = soak.rig.tun
    p = soak.rig.procs["tun"]
    if code != 0:
        return ["tun (pid %d) on SIGTERM: exit status %s, expected 0; stderr tail:\n%s" % (p.pid, code, p.report())]
    out = []
    rules, routes = t.proto_entries()
    if rules or routes:
        out.append("warren tun exited but left proto 119 entries: %s" % (rules + routes))
    links = run("ip", "-n", t.app, "-o", "link", "show")
    if "wt0" in links:
        out.append("warren tun exited but wt0 is still there:\n" + links)
    left = os.listdir(t.lock_dir) if os.path.isdir(t.lock_dir) else []
    if left:
        out.append("warren tun exited but left lock files: %s" % left)
    m = EXIT_RE.search(p.text())
    sent = t.bad_sent.get(p.pid, 0)
    if not m:
        out.append("tun (pid %d): no counters line at exit:\n%s" % (p.pid, p.report()))
    elif int(m.group(2)) < sent:
        out.append("tun (pid %d) counted %s bad packets, but %d malformed ones were sent to it"
                   % (p.pid, m.group(2), sent))
    else:
        print("soak: tun (pid %d) at exit: %s (%d malformed packets sent to it)" % (p.pid, m.group(0), sent),
              flush=True)
    return out


def socket_summary(t, pid):
    """`ss` of the app namespace: pid's sockets counted by (proto, state, peer)."""
    counts = {}
    for l in run("ip", "netns", "exec", t.app, "ss", "-tuanpH", check=False).splitlines():
        if "pid=%d," % pid not in l:
            continue
        f = l.split()
        key = "%s %s peer %s" % (f[0], f[1], f[5] if f[0] == "udp" else re.sub(r":\d+$", ":*", f[5]))
        counts[key] = counts.get(key, 0) + 1
    return ["%5d  %s" % (n, k) for k, n in sorted(counts.items(), key=lambda kv: -kv[1])]


def end(soak):
    """After the soak's shutdown (its SIGTERM of warren tun; status 0 checked
    there): stopped()'s checks, and nothing reached the services but through
    dante (the guard's counter)."""
    t = getattr(soak.rig, "tun", None)
    if t is None:
        return []
    p = soak.rig.procs["tun"]
    if p.alive():
        return ["tun (pid %d) still running after the shutdown" % p.pid]
    out = stopped(soak, 0) if p.proc.returncode == 0 else []  # else reported by the shutdown
    guard = run("ip", "netns", "exec", t.srv, "nft", "list", "table", "inet", "guard")
    m = re.search(r"counter packets (\d+)", guard)
    if not m or m.group(1) != "0":
        out.append("packets for the services reached the srv namespace by the veth, not through dante:\n" + guard)
    return out
