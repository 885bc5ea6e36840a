#!/usr/bin/env python3
"""What one flooding tunnel client costs everyone else (issue 10, item 3).

A flooder is an authenticated raw tunnel client that sends OPEN immediately
followed by RESET, over and over, and reads nothing; each OPEN makes the
server start a connect to a loopback target that accepts and closes. For no
flooder, one and three, with a fresh `warren server` each time, this
measures:

- echo RTT (median, p99) of another tunnel's stream to an echo server;
- a new tunnel's set-up time (connect, TLS, token, HELLO back), median
  and max, sampled every 0.1 s beside the echo samples;
- the server's RSS before the flood, at its end, and 3 s after it;
- opens per second the server turned into connects (target's accepts).

    bench/flood_bench.py --warren build/release/warren [--base-warren OLD] [--seconds 10] [--scheme tls]

With --base-warren the same run measures both binaries side by side (e.g.
the commit before the fix, built elsewhere). Everything runs on 127.0.0.1.
Performance is measured here, never asserted tightly in tests.
"""

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import tunnel_peer as tp  # noqa: E402
import warren_test as wt  # noqa: E402
from test_tunnel import SERVER_LISTENING_RE  # noqa: E402


def start_server(warren, scheme, tmp, token_file):
    argv = [warren, "server", "--listen", "%s://127.0.0.1:0" % scheme, "--token-file", token_file,
            "--state-dir", os.path.join(tmp, "state"), "--allow", "127.0.0.1", "--log-level", "info"]
    p = wt.Process(argv)
    m = p.wait_for(SERVER_LISTENING_RE.pattern, timeout=30)
    p.port = wt.server_urls(m.group(1))[0][2]
    return p


def scenario(warren, scheme, flooders, seconds, tmp):
    token = "tok-" + secrets.token_hex(16)
    token_file = os.path.join(tmp, "token")
    with open(token_file, "w") as f:
        f.write(token + "\n")
    os.chmod(token_file, 0o600)
    server = start_server(warren, scheme, tmp, token_file)
    echo = wt.EchoServer()
    target = tp.CountingTarget()
    floods = []
    try:
        victim = tp.EchoStream(server.port, token, echo.port, scheme)
        for _ in range(20):
            victim.rtt()
        time.sleep(0.5)
        rss0 = tp.vm_rss_kib(server.proc.pid)
        floods = [tp.Flooder(server.port, token, target.port, seconds, scheme) for _ in range(flooders)]
        t_flood = time.monotonic()
        time.sleep(min(1.0, seconds / 4))  # let the flood take hold
        accepted0, t0 = target.count(), time.monotonic()
        rtts, setups = [], []
        end = t_flood + seconds - 0.5

        def set_up_tunnels():
            # Beside the echo samples, so that slow round trips do not
            # thin out these samples (and the other way round).
            while time.monotonic() < end or not setups:
                s, took = tp.dial(server.port, token, scheme, timeout=60)
                s.close()
                setups.append(took)
                time.sleep(0.1)

        setter = threading.Thread(target=set_up_tunnels, daemon=True)
        setter.start()
        while time.monotonic() < end or len(rtts) < 5:
            rtts.append(victim.rtt())
            time.sleep(0.02)
        setter.join(120)
        opens_per_s = (target.count() - accepted0) / (time.monotonic() - t0)
        rss_peak = tp.vm_rss_kib(server.proc.pid)
        for fl in floods:
            fl.stop(timeout=30)
        time.sleep(3)
        rss_after = tp.vm_rss_kib(server.proc.pid)
        # Still alive and serving.
        victim.rtt()
        victim.close()
        return {
            "rtt_med": statistics.median(rtts) * 1e3, "rtt_p99": tp.percentile(rtts, 99) * 1e3,
            "setup_med": statistics.median(setups) * 1e3, "setup_max": max(setups) * 1e3,
            "samples": len(rtts), "setups": len(setups), "opens_per_s": opens_per_s,
            "pairs_sent": sum(fl.sent() for fl in floods),
            "rss0": rss0 / 1024, "rss_peak": rss_peak / 1024, "rss_after": rss_after / 1024,
        }
    finally:
        for fl in floods:
            fl.stop(timeout=1)
        target.close()
        echo.close()
        server.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warren", required=True)
    ap.add_argument("--base-warren", help="a second binary (the code before a change), measured the same way")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each flood")
    ap.add_argument("--scheme", default="tls", choices=("tls", "tcp"))
    ap.add_argument("--flooders", default="0,1,3")
    args = ap.parse_args()
    binaries = [("after", os.path.abspath(args.warren))]
    if args.base_warren:
        binaries.insert(0, ("before", os.path.abspath(args.base_warren)))
    rows = []
    for label, warren in binaries:
        for n in [int(x) for x in args.flooders.split(",")]:
            tmp = tempfile.mkdtemp(prefix="warren-flood-")
            try:
                print("%s, %d flooder(s)..." % (label, n), file=sys.stderr, flush=True)
                r = scenario(warren, args.scheme, n, args.seconds, tmp)
            finally:
                shutil.rmtree(tmp, True)
            rows.append((label, n, r))
    print("\n%s://, %.0f s floods of OPEN+RESET, %d cores" % (args.scheme, args.seconds, os.cpu_count()))
    print("| binary | flooders | echo RTT median | echo RTT p99 | samples | new tunnel set-up median | max | "
          "samples | opens/s turned into connects | RSS before / end of flood / 3 s after |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, n, r in rows:
        print("| %s | %d | %.1f ms | %.1f ms | %d | %.1f ms | %.1f ms | %d | %.0f | %.1f / %.1f / %.1f MiB |"
              % (label, n, r["rtt_med"], r["rtt_p99"], r["samples"], r["setup_med"], r["setup_max"], r["setups"],
                 r["opens_per_s"], r["rss0"], r["rss_peak"], r["rss_after"]))


if __name__ == "__main__":
    main()
