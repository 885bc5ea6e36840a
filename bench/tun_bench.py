#!/usr/bin/env python3
"""The driver of bench/tun_bench.sh (read its header): builds the two
namespaces of tests/integration/test_tun.py (tun_topology.py, without the
leak guard so the direct path can be measured), runs each path and prints
one table. Needs root."""

import json
import os
import signal
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.dont_write_bytecode = True
import tun_topology as topo  # noqa: E402
import warren_test as wt  # noqa: E402

TOOL = os.path.join(ROOT, "tests", "integration", "tun_tool.py")
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
T = None


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def iperf3(*extra):
    for attempt in range(6):
        r = topo.run(T.in_app(["iperf3", "-c", topo.SVC4, "-p", topo.IPERF, "-t", SECONDS, "-J",
                               "--connect-timeout", "5000"] + list(extra)), timeout=SECONDS + 60, check=False)
        out = json.loads(r.stdout.decode() or "{}")
        end = out.get("end", {})
        s = end.get("sum_received") or end.get("sum")
        if r.returncode == 0 and s and s.get("bytes"):
            return {"bps": s["bits_per_second"], "bytes": s["bytes"], "lost": s.get("lost_percent")}
        time.sleep(0.5)  # iperf3 -s between two tests, or a UDP test that lost its end
    raise SystemExit("tun_bench: iperf3 %s failed: %s %s" % (" ".join(extra), out.get("error"),
                                                             json.dumps(out.get("end"))[:1500]))


def bulk(direction, streams, proxy=None):
    argv = [sys.executable, TOOL, "bulk", topo.SVC4, topo.BULK, direction, streams, SECONDS]
    if proxy:
        argv += [proxy[0], proxy[1]]
    r = topo.run(T.in_app(argv), timeout=SECONDS + 60)
    out = json.loads(r.stdout.decode().strip().splitlines()[-1])
    if out["result"] != "ok":
        raise SystemExit("tun_bench: bulk %s through %s failed: %s" % (direction, proxy, out["errors"]))
    return {"bps": out["bits_per_second"], "bytes": out["bytes"], "lost": None}


def measure(pid=None, tool="iperf3", proxy=None, udp=True):
    """The five figures of one path; with `pid`, warren's CPU s/GB too."""
    row = {}
    runs = [("tcp1_up", []), ("tcp1_down", ["-R"]), ("tcp8_up", ["-P", "8"]), ("tcp8_down", ["-P", "8", "-R"])]
    for key, extra in runs:
        before = cpu_seconds(pid) if pid else 0
        if tool == "iperf3":
            m = iperf3(*extra)
        else:
            m = bulk("down" if "-R" in extra else "up", 8 if "-P" in extra else 1, proxy)
        if pid:
            m["cpu_per_gb"] = (cpu_seconds(pid) - before) / (m["bytes"] / 1e9)
        row[key] = m
    if udp:
        before = cpu_seconds(pid) if pid else 0
        m = iperf3("-u", "-b", "500M", "-l", "1400")
        if pid:
            m["cpu_per_gb"] = (cpu_seconds(pid) - before) / max(m["bytes"] / 1e9, 1e-9)
        row["udp500"] = m
    return row


def start_tun(lock_dir, upstream, *extra):
    argv = [wt.WARREN, "tun", "--lock-dir", lock_dir, "--default-route", "--upstream"] + upstream + list(extra)
    p = wt.Process(T.in_app(argv))
    p.wait_for(r"tun: \S+ up", timeout=20)
    return p


def stop_tun(p):
    p.signal(signal.SIGTERM)
    if p.wait_exit(15) != 0:
        raise SystemExit("tun_bench: warren tun exited badly:\n" + p.stderr_text())


def fmt(m):
    if m is None:
        return "-"
    s = "%.2f" % (m["bps"] / 1e9)
    if m.get("lost") is not None:
        s += " (%.2f%%)" % m["lost"]
    if m.get("cpu_per_gb") is not None:
        s += " [%.2f]" % m["cpu_per_gb"]
    return s


def main():
    global T
    wt.WARREN = os.path.abspath(os.environ.get("WARREN", os.path.join(ROOT, "build", "release", "warren")))
    topo.Topology.remove_stale("wtbench")
    T = topo.Topology(wt.WARREN, tag="wtbench%d" % os.getpid())
    rows = []
    try:
        T.build(guard=False)
        T.start_services(bench=True)
        lock_dir = tempfile.mkdtemp(dir=T.tmp)
        dante = ["socks5://%s:%d" % (topo.SRV4, topo.DANTE)]
        rows.append(("direct veth (iperf3)", measure()))
        rows.append(("direct veth (python bulk)", measure(tool="bulk", udp=False)))
        rows.append(("dante alone (python bulk via SOCKS5)", measure(tool="bulk", proxy=(topo.SRV4, topo.DANTE),
                                                                      udp=False)))
        for label, extra in (("tun+dante, offloads, mtu 1500", []),
                             ("tun+dante, --no-offload, mtu 1500", ["--no-offload"]),
                             ("tun+dante, --no-offload, mtu 9000", ["--no-offload", "--mtu", "9000"])):
            p = start_tun(lock_dir, dante, *extra)
            try:
                rows.append((label, measure(pid=p.pid)))
                if not extra:
                    rows.append((label + " (python bulk)", measure(pid=p.pid, tool="bulk", udp=False)))
            finally:
                stop_tun(p)
        # tcp:// to 10.77.0.2 is not loopback: the token in clear needs --insecure-token.
        p = start_tun(lock_dir, [T.server_url, "--token-file", T.token_file, "--insecure-token"])
        try:
            rows.append(("tun+warren tcp:// tunnel", measure(pid=p.pid, udp=False)))
        finally:
            stop_tun(p)
        client = wt.Process(T.in_app([wt.WARREN, "client", T.server_url, "--token-file", T.token_file,
                                      "--insecure-token",
                                      "-L", "127.0.0.1:15201:%s:%d" % (topo.SVC4, topo.IPERF)]))
        try:
            client.wait_for(r"tunnel: connected to ", timeout=20)
            saved = topo.SVC4
            topo.SVC4, topo.IPERF = "127.0.0.1", 15201
            rows.append(("warren client -L, same tunnel", measure(pid=client.pid, udp=False)))
            topo.SVC4, topo.IPERF = saved, 5201
        finally:
            client.signal(signal.SIGTERM)
            client.wait_exit(15)
    finally:
        T.destroy()
    print_table(rows)


def print_table(rows):
    cols = ("tcp1_up", "tcp1_down", "tcp8_up", "tcp8_down", "udp500")
    heads = ("TCP 1 up", "TCP 1 down", "TCP 8 up", "TCP 8 down", "UDP 500M (loss)")
    print("\ntun_bench: Gbit/s, [warren's CPU seconds per GB]; %g s per run" % SECONDS)
    w = max(len(r[0]) for r in rows)
    print("%-*s  %s" % (w, "path", "  ".join("%-18s" % h for h in heads)))
    for label, row in rows:
        print("%-*s  %s" % (w, label, "  ".join("%-18s" % fmt(row.get(c)) for c in cols)))
    by = dict(rows)
    goals = []
    tun = by.get("tun+dante, offloads, mtu 1500")
    tun_py = by.get("tun+dante, offloads, mtu 1500 (python bulk)")
    alone = by.get("dante alone (python bulk via SOCKS5)")
    for d in ("tcp1_up", "tcp1_down"):
        goals.append(("warren CPU <= 0.85 s/GB single-stream %s, mtu 1500" % d[5:], tun[d]["cpu_per_gb"] <= 0.85,
                      "%.2f" % tun[d]["cpu_per_gb"]))
        goals.append(("throughput >= 70%% of dante alone, %s (python bulk both)" % d[5:],
                      tun_py[d]["bps"] >= 0.7 * alone[d]["bps"], "%.0f%%" % (100 * tun_py[d]["bps"] / alone[d]["bps"])))
    goals.append(("UDP loss at 500 Mbit/s <= 1%", (tun["udp500"]["lost"] or 0) <= 1.0, "%.2f%%" % tun["udp500"]["lost"]))
    tcp_tun, client = by.get("tun+warren tcp:// tunnel"), by.get("warren client -L, same tunnel")
    for d in ("tcp1_up", "tcp1_down"):
        goals.append(("tcp:// tunnel via tun >= 80%% of client -L, %s" % d[5:],
                      tcp_tun[d]["bps"] >= 0.8 * client[d]["bps"], "%.0f%%" % (100 * tcp_tun[d]["bps"] / client[d]["bps"])))
    print()
    for what, ok, value in goals:
        print("%-62s %-6s %s" % (what, "ok" if ok else "MISSED", value))


if __name__ == "__main__":
    main()
