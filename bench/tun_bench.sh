#!/usr/bin/env bash
# tun_bench.sh: `warren tun` (issue 13) against its peers, in one run (~3
# minutes with the defaults), in the two network namespaces of
# tests/integration/test_tun.py (app, srv; no route out of them):
#   direct veth      iperf3 from app to srv's service address, no TUN
#   dante alone      a SOCKS-aware client through danted on srv, no TUN: iperf3
#                    cannot use SOCKS5, so tests/integration/tun_tool.py `bulk`
#                    (python; 1 MiB send()/recv_into() per call, one thread per
#                    stream) measures it, and the same client measures the
#                    direct path and the TUN path so the comparison is like
#                    for like
#   tun+dante        `warren tun --default-route --upstream socks5://dante`,
#                    offloads on (MTU 1500), --no-offload at MTU 1500 and 9000
#   tun+warren tcp:// and `warren client -L` through the same tcp:// server
# Each path: iperf3 single-stream and 8-stream TCP up and down (-R), UDP at
# 500 Mbit/s (loss); warren's CPU seconds per GB moved, from /proc/PID/stat
# (utime + stime of the warren process) before and after each run.
# Goals (issue 13): warren's CPU <= 0.85 s/GB single-stream at MTU 1500 both
# ways; throughput >= 70% of dante alone; UDP loss at 500 Mbit/s <= 1%; via a
# tcp:// tunnel >= 80% of `warren client -L`. A missed goal prints MISSED but
# does not fail the run; a measurement that cannot be taken exits non-zero.
#
# Environment: WARREN (default build/release/warren), BENCH_SECONDS (5, per
# run). Needs root (network namespaces).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

"$here/../scripts/deps" || echo "tun_bench: warning: scripts/deps failed; using the tools already installed" >&2

export WARREN=${WARREN:-$root/build/release/warren}
[[ -x $WARREN ]] || { echo "tun_bench: $WARREN is not an executable (set WARREN or build the release preset)" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "tun_bench: needs root (network namespaces)" >&2; exit 2; }
for tool in iperf3 python3 danted ip; do
  command -v "$tool" >/dev/null || { echo "tun_bench: $tool not found" >&2; exit 2; }
done

exec python3 "$here/tun_bench.py"
