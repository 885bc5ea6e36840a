#!/usr/bin/env python3
"""What reaching the server through a proxy costs, and how fast a client
comes back after an outage (issue 11). In one run, side by side:

- throughput: one iperf3 stream (-t SECONDS) through a wss tunnel dialled
  directly, through tinyproxy (HTTP CONNECT) and through dante (socks5h);
- tunnel set-up: the client's own "connected ... in N ms" for ROUNDS fresh
  clients on each path (median and max);
- recovery: the server stopped for OUTAGE seconds and restarted on the same
  port; a curl through -L 0.5 s after the restart: how long until it has
  its answer. With --base-warren the same outage is measured for that
  binary too (e.g. the commit before issue 11).

    bench/reach_bench.py --warren build/release/warren [--base-warren OLD] [--seconds 5] [--rounds 10] [--outage 20]

Everything runs on 127.0.0.1. A peer that is not installed (tinyproxy,
danted, iperf3, curl) leaves its row out. Performance is measured here,
never asserted in tests.
"""

import argparse
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import warren_test as wt  # noqa: E402

CONNECTED_RE = re.compile(r"tunnel: connected to .* in (\d+) ms")
FINGERPRINT_RE = re.compile(r"certificate fingerprint (sha256:[0-9A-F:]+)")
FORWARD_RE = re.compile(r"TCP (127\.0\.0\.1:\d+)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on 127.0.0.1:%d" % port)


class Rig:
    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []
        self.token_file = os.path.join(tmp, "token")
        with open(self.token_file, "w") as f:
            f.write("tok-" + secrets.token_hex(16) + "\n")
        os.chmod(self.token_file, 0o600)

    def spawn(self, argv):
        p = wt.Process(argv)
        self.procs.append(p)
        return p

    def close(self):
        for p in self.procs:
            p.kill()

    def server(self, warren, target_port, port=0):
        port = port or free_port()
        p = self.spawn([warren, "server", "--listen", "wss://127.0.0.1:%d" % port, "--token-file", self.token_file,
                        "--state-dir", os.path.join(self.tmp, "state"), "--allow", "127.0.0.1:%d" % target_port])
        p.wait_for(r"server: listening on ", timeout=30)  # any version's line: the port is ours
        p.port = port
        p.pin = FINGERPRINT_RE.search(p.lines[p.find(FINGERPRINT_RE.pattern)]).group(1)
        return p

    def client(self, warren, server, target_port, proxy=None, extra=()):
        argv = [warren, "client", "wss://127.0.0.1:%d" % server.port, "--pin", server.pin, "--token-file",
                self.token_file, "-L", "127.0.0.1:0:127.0.0.1:%d" % target_port] + list(extra)
        if proxy:
            argv += ["--proxy", proxy]
        p = self.spawn(argv)
        p.local = int(p.wait_for(FORWARD_RE.pattern, timeout=30).group(1).rsplit(":", 1)[1])
        return p

    def tinyproxy(self, server_port):
        port = free_port()
        conf = os.path.join(self.tmp, "tinyproxy.conf")
        with open(conf, "w") as f:
            f.write("Port %d\nListen 127.0.0.1\nTimeout 60\nLogLevel Critical\nMaxClients 100\nAllow 127.0.0.1\n"
                    "ConnectPort %d\n" % (port, server_port))
        self.spawn(["tinyproxy", "-d", "-c", conf])
        wait_port(port)
        return "http://127.0.0.1:%d" % port

    def danted(self):
        port = free_port()
        conf = os.path.join(self.tmp, "danted.conf")
        with open(conf, "w") as f:
            f.write("logoutput: %s\ninternal: 127.0.0.1 port = %d\nexternal: 127.0.0.1\nsocksmethod: none\n"
                    "clientmethod: none\n" % (os.path.join(self.tmp, "danted.log"), port))
            if os.geteuid() == 0:
                f.write("user.privileged: root\nuser.unprivileged: nobody\n")
            f.write("client pass {\n from: 127.0.0.0/8 to: 0.0.0.0/0\n}\n"
                    "socks pass {\n from: 127.0.0.0/8 to: 127.0.0.0/8\n command: connect\n}\n")
        self.spawn(["danted", "-f", conf, "-N", "1"])
        wait_port(port)
        return "socks5h://127.0.0.1:%d" % port


def iperf(port, seconds):
    r = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=seconds + 30)
    if r.returncode != 0:
        raise RuntimeError("iperf3: " + r.stderr.decode(errors="replace"))
    import json
    return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9


def paths(rig, warren, server, target):
    out = [("direct", None)]
    if shutil.which("tinyproxy"):
        out.append(("tinyproxy (HTTP CONNECT)", rig.tinyproxy(server.port)))
    if shutil.which("danted"):
        out.append(("dante (socks5h)", rig.danted()))
    return out


def throughput(rig, warren, seconds):
    ip = free_port()
    rig.spawn(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(ip)])
    wait_port(ip)
    time.sleep(0.2)
    server = rig.server(warren, ip)
    rows = []
    for name, proxy in paths(rig, warren, server, ip):
        c = rig.client(warren, server, ip, proxy)
        c.wait_for(CONNECTED_RE.pattern, timeout=30)
        rows.append((name, iperf(c.local, seconds)))
        c.kill()
    return rows


def setup_times(rig, warren, rounds):
    server = rig.server(warren, 9)
    rows = []
    for name, proxy in paths(rig, warren, server, 9):
        ms = []
        for _ in range(rounds):
            c = rig.client(warren, server, 9, proxy)
            ms.append(int(c.wait_for(CONNECTED_RE.pattern, timeout=30).group(1)))
            c.kill()
        rows.append((name, statistics.median(ms), max(ms)))
    return rows


class Web:
    """A one-line HTTP server for curl."""

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "http.server", "-b", "127.0.0.1", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def close(self):
        self.proc.kill()
        self.proc.wait()


def recovery(rig, warren, outage):
    web = Web()
    try:
        server = rig.server(warren, web.port)
        c = rig.client(warren, server, web.port, extra=["--wait-tunnel", "60s"])
        c.wait_for(CONNECTED_RE.pattern, timeout=30)
        server.signal(signal.SIGTERM)
        server.wait_exit(15)
        time.sleep(outage)
        rig.server(warren, web.port, port=server.port)
        time.sleep(0.5)
        start = time.monotonic()
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", "60",
                            "http://127.0.0.1:%d/" % c.local], timeout=70)
        took = time.monotonic() - start
        return took if r.returncode == 0 else None
    finally:
        web.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warren", default="build/release/warren")
    ap.add_argument("--base-warren")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--outage", type=float, default=20)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="reach_bench.")
    rig = Rig(tmp)
    try:
        if shutil.which("iperf3"):
            rows = throughput(rig, a.warren, a.seconds)
            print("throughput, one iperf3 stream through wss (-t %d):" % a.seconds)
            for name, gbps in rows:
                print("  %-26s %6.2f Gbit/s  %.2fx direct" % (name, gbps, gbps / rows[0][1]))
        rows = setup_times(rig, a.warren, a.rounds)
        print("tunnel set-up (connect + TLS + upgrade, %d fresh clients each):" % a.rounds)
        for name, med, mx in rows:
            print("  %-26s median %4d ms  max %4d ms" % (name, med, mx))
        if shutil.which("curl"):
            print("recovery: server down %.0f s, restarted; a curl through -L 0.5 s later:" % a.outage)
            for label, binary in (("warren", a.warren), ("base", a.base_warren)):
                if not binary:
                    continue
                took = recovery(rig, binary, a.outage)
                print("  %-26s %s" % (label, "answered after %.2f s" % took if took is not None
                                      else "no answer within 60 s"))
    finally:
        rig.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
