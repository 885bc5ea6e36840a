#!/usr/bin/env python3
"""control_bench.py: the daemon's control plane, measured side by side in one run.

  round trips  bench/control_rt: `daemon.status` one request at a time per
               connection, over Unix, TCP and TLS, with 1 and 16 clients:
               p50/p99 per request and requests per second in all
  ctl status   wall time of `warren ctl status` (process start, connect,
               request, reply, exit), the median of BENCH_CTL_RUNS (30) runs
  idle cost    a daemon running 10 relay units (each with a listener) and no
               traffic for BENCH_IDLE_SECONDS (10): its CPU time in % of one
               core, and its VmRSS

Goals on a 2-core machine: ctl status <= 20 ms; Unix p50 <= 100 us; idle
with 10 units <= 0.1% of a core and <= 16 MiB RSS. A missed goal prints
MISSED and does not fail the run; a measurement that cannot be taken exits
non-zero. Loopback only: nothing leaves 127.0.0.1.

Environment: WARREN (build/release/warren), CONTROL_RT
(build/release/bench/control_rt), BENCH_COUNT (5000 requests per client),
BENCH_CTL_RUNS, BENCH_IDLE_SECONDS.
"""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARREN = os.environ.get("WARREN", os.path.join(ROOT, "build/release/warren"))
CONTROL_RT = os.environ.get("CONTROL_RT", os.path.join(ROOT, "build/release/bench/control_rt"))
COUNT = int(os.environ.get("BENCH_COUNT", "5000"))
CTL_RUNS = int(os.environ.get("BENCH_CTL_RUNS", "30"))
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "10"))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, tmp, args, config=None):
        self.control = os.path.join(tmp, "run", "control.sock")
        os.makedirs(os.path.dirname(self.control), mode=0o700, exist_ok=True)
        cmd = [WARREN, "daemon", "--control", self.control, "--state-dir", os.path.join(tmp, "state")] + args
        if config:
            cmd += ["--config", config]
        self.log = open(os.path.join(tmp, "daemon.log"), "w+")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            self.log.seek(0)
            text = self.log.read()
            if re.search(r"daemon: pid \d+ ready", text):
                self.text = text
                return
            if self.proc.poll() is not None:
                sys.exit("control_bench: the daemon exited:\n" + text)
            time.sleep(0.05)
        sys.exit("control_bench: the daemon did not become ready:\n" + text)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def control_rt(args):
    out = subprocess.run([CONTROL_RT] + args, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        sys.exit(f"control_bench: control_rt {' '.join(args)}: {out.stderr.strip()}")
    m = re.search(r"rt_us p50 ([\d.]+) p99 ([\d.]+) mean ([\d.]+) rps ([\d.]+)", out.stdout)
    return {"p50": float(m.group(1)), "p99": float(m.group(2)), "rps": float(m.group(4))}


def verdict(ok):
    return "ok" if ok else "MISSED"


def main():
    for tool in (WARREN, CONTROL_RT):
        if not os.access(tool, os.X_OK):
            sys.exit(f"control_bench: {tool} is not built (cmake --build --preset release)")
    tmp = tempfile.mkdtemp(prefix="warren-control-bench-")
    try:
        token = os.path.join(tmp, "token")
        with open(token, "w") as f:
            f.write("bench-token-" + os.urandom(8).hex() + "\n")
        os.chmod(token, 0o600)
        tcp, tls = free_port(), free_port()
        d = Daemon(tmp, ["--control-listen", f"tcp://127.0.0.1:{tcp}", "--control-listen",
                         f"tls://127.0.0.1:{tls}", "--control-token-file", token])
        results = {}
        try:
            paths = {"unix": ["--unix", d.control], "tcp": ["--tcp", f"127.0.0.1:{tcp}", "--token-file", token],
                     "tls": ["--tls", f"127.0.0.1:{tls}", "--token-file", token]}
            for clients in (1, 16):
                for name, args in paths.items():
                    count = COUNT if clients == 1 else max(COUNT // 4, 500)
                    results[(name, clients)] = control_rt(args + ["--clients", str(clients), "--count", str(count)])
            walls = []
            for _ in range(CTL_RUNS):
                t = time.perf_counter()
                out = subprocess.run([WARREN, "ctl", "status", "--control", d.control], capture_output=True)
                walls.append((time.perf_counter() - t) * 1000)
                if out.returncode != 0:
                    sys.exit("control_bench: warren ctl status failed: " + out.stderr.decode())
            ctl_ms = statistics.median(walls)
        finally:
            d.stop()

        # Idle cost: 10 relay units with their listeners, no traffic.
        target = socket.socket()
        target.bind(("127.0.0.1", 0))
        target.listen(16)
        config = os.path.join(tmp, "idle.toml")
        with open(config, "w") as f:
            for i in range(10):
                f.write(f'[[relay]]\nname = "r{i}"\nlisten = "127.0.0.1:{free_port()}"\n'
                        f'target = "127.0.0.1:{target.getsockname()[1]}"\n\n')
        idle = Daemon(tmp, [], config)
        try:
            time.sleep(1)  # let start-up work settle
            cpu0, t0 = idle.cpu_seconds(), time.monotonic()
            time.sleep(IDLE_SECONDS)
            cpu = (idle.cpu_seconds() - cpu0) / (time.monotonic() - t0) * 100
            rss = idle.rss_kib() / 1024
            status = subprocess.run([WARREN, "ctl", "status", "--json", "--control", idle.control],
                                    capture_output=True, text=True)
            counts = json.loads(status.stdout)["units"] if status.returncode == 0 else {}
            units = counts.get("running", counts.get("total", 0))
        finally:
            idle.stop()
            target.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"{'path':<6}{'clients':>8}{'p50 us':>10}{'p99 us':>10}{'req/s':>12}")
    for (name, clients), r in results.items():
        print(f"{name:<6}{clients:>8}{r['p50']:>10.1f}{r['p99']:>10.1f}{r['rps']:>12.0f}")
    unix_p50 = results[("unix", 1)]["p50"]
    print(f"unix p50 (1 client): {unix_p50:.1f} us (goal <= 100): {verdict(unix_p50 <= 100)}")
    print(f"warren ctl status wall time: median {ctl_ms:.1f} ms of {CTL_RUNS} (goal <= 20): {verdict(ctl_ms <= 20)}")
    print(f"idle daemon, 10 relay units ({units} seen running): {cpu:.3f}% of a core (goal <= 0.1): "
          f"{verdict(cpu <= 0.1)}; RSS {rss:.1f} MiB (goal <= 16): {verdict(rss <= 16)}")


if __name__ == "__main__":
    main()
