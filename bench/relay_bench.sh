#!/usr/bin/env bash
# relay_bench.sh: loopback benchmark of `warren relay` against socat and a
# direct connection, in one run (~1.5 minutes with the defaults):
#   throughput  single-stream iperf3 (-t BENCH_SECONDS), direct / warren relay
#               (splice) / warren relay --no-splice / socat fork
#   conn/s      bench/connrate (connect, 1-byte echo, close; BENCH_CONCURRENCY
#               client threads), direct / warren relay / socat fork
# Goals: warren relay throughput >= 2x socat; warren conn/s >= socat. A missed
# goal prints MISSED but does not fail the run; a measurement that cannot be
# taken (a peer fails to start, iperf3 or connrate errors) exits non-zero.
#
# Environment: WARREN (default build/release/warren), CONNRATE (default
# build/release/bench/connrate), BENCH_SECONDS (5), BENCH_CONN_SECONDS
# (BENCH_SECONDS), BENCH_CONCURRENCY (8), BENCH_ROUNDS (2: every measurement
# is taken that many times, interleaved, and the best kept -- on a shared
# machine, noise only ever makes a run slower). Loopback only: nothing leaves
# 127.0.0.1.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

# Installs iperf3, socat, ... when missing. If it cannot run (say, another
# apt-get holds the dpkg lock), go on with what is installed: checked below.
"$here/../scripts/deps" || echo "relay_bench: warning: scripts/deps failed; using the tools already installed" >&2

WARREN=${WARREN:-$root/build/release/warren}
CONNRATE=${CONNRATE:-$root/build/release/bench/connrate}
SECONDS_TP=${BENCH_SECONDS:-5}
SECONDS_CONN=${BENCH_CONN_SECONDS:-$SECONDS_TP}
CONCURRENCY=${BENCH_CONCURRENCY:-8}
ROUNDS=${BENCH_ROUNDS:-2}
HOST=127.0.0.1

for tool in "$WARREN" "$CONNRATE"; do
  [[ -x $tool ]] || { echo "relay_bench: $tool is not an executable (set WARREN / CONNRATE, or build the release preset)" >&2; exit 2; }
done
for tool in iperf3 socat python3 ss timeout; do
  command -v "$tool" >/dev/null || { echo "relay_bench: $tool not found" >&2; exit 2; }
done

work=$(mktemp -d /tmp/relay_bench.XXXXXX)
pids=()

cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    pkill -TERM -P "$pid" 2>/dev/null || true # socat's fork children
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "relay_bench: FAILED: $*" >&2
  local f
  for f in "$work"/*.log; do
    [[ -s $f ]] || continue
    echo "--- $(basename "$f") (last lines)" >&2
    tail -n 5 "$f" >&2
  done
  exit 1
}

# Seven distinct free ports below the kernel's ephemeral range, so the tens of
# thousands of connections connrate churns through (and their TIME_WAIT
# sockets) cannot collide with them; each is checked by binding it (without
# SO_REUSEADDR, so even a TIME_WAIT user of the port counts as taken).
read -r P_IPERF P_RELAY_TP P_COPY_TP P_SOCAT_TP P_ECHO P_RELAY_CONN P_SOCAT_CONN < <(
  python3 - <<'EOF'
import random, socket
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
first, last = (10000, lo) if lo > 12000 else (61000, 65536)  # odd range: go above it
ports, held = [], []
for p in random.sample(range(first, last), 1000):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        s.close()
        continue
    held.append(s)
    ports.append(p)
    if len(ports) == 7:
        break
for s in held:
    s.close()  # before printing: the script uses the ports as soon as it reads them
print(" ".join(map(str, ports)), flush=True)
EOF
)
[[ -n ${P_SOCAT_CONN:-} ]] || { echo "relay_bench: could not find 7 free ports" >&2; exit 2; }

# start NAME CMD...: runs CMD in the background, logging to $work/NAME.log.
# Sets $last_pid.
start() {
  local name=$1
  shift
  "$@" >"$work/$name.log" 2>&1 &
  last_pid=$!
  pids+=("$last_pid")
}

# wait_listening PORT PID: until something listens on PORT (no probe
# connection: iperf3 would count one as a failed test), or PID dies.
wait_listening() {
  local port=$1 pid=$2 i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    [[ -n $(ss -Hltn "sport = :$port") ]] && return 0
    sleep 0.05
  done
  return 1
}

iperf_pid=
start_iperf_server() {
  if [[ -n $iperf_pid ]] && kill -0 "$iperf_pid" 2>/dev/null; then
    return 0
  fi
  start iperf3-server iperf3 -s -B "$HOST" -p "$P_IPERF"
  iperf_pid=$last_pid
  wait_listening "$P_IPERF" "$iperf_pid" || fail "iperf3 server did not start on port $P_IPERF"
}

restart_iperf_server() {
  if [[ -n $iperf_pid ]]; then
    kill -TERM "$iperf_pid" 2>/dev/null || true
    wait "$iperf_pid" 2>/dev/null || true
  fi
  iperf_pid=
  start_iperf_server
}

# CPU seconds (user+sys, including reaped children) used so far by PID.
cpu_seconds() {
  python3 - "$1" <<'EOF'
import os, sys
try:
    f = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split()
except OSError:
    print("nan"); sys.exit()
# fields after "(comm)": state=0 ... utime=11 stime=12 cutime=13 cstime=14
print(sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK"))
EOF
}

# ---------------------------------------------------------------- peers

start_iperf_server
start echo-server "$CONNRATE" serve --port "$P_ECHO" --host "$HOST"
echo_pid=$last_pid
wait_listening "$P_ECHO" "$echo_pid" || fail "connrate serve did not start"

declare -A relay_pid
start_relay() { # start_relay KEY PORT CMD...
  local key=$1 port=$2
  shift 2
  start "$key" "$@"
  relay_pid[$key]=$last_pid
  wait_listening "$port" "$last_pid" || fail "$key did not start listening on port $port"
}
# --no-target-check in front of iperf3: the start-up probe is a connection
# iperf3 would take for a (failed) test, and it serves one test at a time.
start_relay warren-tp "$P_RELAY_TP" "$WARREN" relay "$HOST:$P_RELAY_TP" "$HOST:$P_IPERF" --log-level warn \
  --no-target-check
start_relay warren-copy-tp "$P_COPY_TP" "$WARREN" relay "$HOST:$P_COPY_TP" "$HOST:$P_IPERF" --log-level warn \
  --no-target-check --no-splice
start_relay socat-tp "$P_SOCAT_TP" socat "TCP-LISTEN:$P_SOCAT_TP,bind=$HOST,fork,reuseaddr" "TCP:$HOST:$P_IPERF"
start_relay warren-conn "$P_RELAY_CONN" "$WARREN" relay "$HOST:$P_RELAY_CONN" "$HOST:$P_ECHO" --log-level warn
start_relay socat-conn "$P_SOCAT_CONN" socat "TCP-LISTEN:$P_SOCAT_CONN,bind=$HOST,fork,reuseaddr,backlog=4096" "TCP:$HOST:$P_ECHO"
echo "relay_bench: warren=$WARREN connrate=$CONNRATE"
echo "relay_bench: iperf3 ${SECONDS_TP}s single stream; connrate ${SECONDS_CONN}s x $CONCURRENCY threads;" \
  "best of $ROUNDS rounds; $(nproc) CPUs, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- measurements

declare -A gbps conns errs cpu

# greater A B: is A > B (B may be empty)?
greater() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2] or "-1") else 1)' "$1" "${2:-}"; }

# relay_cpu RELAY_KEY BEFORE SECONDS: the relay's CPU use since BEFORE, in % of one core
relay_cpu() {
  sleep 0.2 # let socat reap its child, so the child's CPU is counted
  python3 -c 'import sys; print("%.0f%%" % (100 * (float(sys.argv[1]) - float(sys.argv[2])) / float(sys.argv[3])))' \
    "$(cpu_seconds "${relay_pid[$1]}")" "$2" "$3"
}

# throughput KEY PORT [RELAY_KEY]: keeps the best Gbit/s in gbps[KEY]
throughput() {
  local key=$1 port=$2 rkey=${3:-} attempt json out before=0
  for attempt in 1 2; do
    start_iperf_server
    [[ -n $rkey ]] && before=$(cpu_seconds "${relay_pid[$rkey]}")
    if json=$(timeout $((SECONDS_TP + 30)) iperf3 -c "$HOST" -p "$port" -t "$SECONDS_TP" -J 2>>"$work/iperf3-client.log") &&
      out=$(python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
if "error" in d: sys.exit("iperf3: " + d["error"])
print("%.3f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9))
' <<<"$json" 2>>"$work/iperf3-client.log"); then
      local used=""
      [[ -n $rkey ]] && used=$(relay_cpu "$rkey" "$before" "$SECONDS_TP")
      printf '  %-20s %8s Gbit/s  relay CPU %s\n' "$key" "$out" "${used:--}"
      if greater "$out" "${gbps[$key]:-}"; then
        gbps[$key]=$out
        cpu[$key]=$used
      fi
      return 0
    fi
    echo "relay_bench: iperf3 through $key failed (attempt $attempt), restarting the iperf3 server" >&2
    restart_iperf_server
  done
  fail "throughput measurement through $key"
}

# connrate_run KEY PORT [RELAY_KEY]: keeps the best conn/s in conns[KEY], sums errors
connrate_run() {
  local key=$1 port=$2 rkey=${3:-} line before=0 used=""
  [[ -n $rkey ]] && before=$(cpu_seconds "${relay_pid[$rkey]}")
  line=$(timeout $((SECONDS_CONN + 30)) "$CONNRATE" client --host "$HOST" --port "$port" \
    --seconds "$SECONDS_CONN" --concurrency "$CONCURRENCY" 2>>"$work/connrate-client.log" | tail -n 1) ||
    fail "connrate through $key"
  [[ $line =~ ^connections_per_second\ ([0-9.]+)\ errors\ ([0-9]+) ]] || fail "connrate through $key printed '$line'"
  local rate=${BASH_REMATCH[1]} errors=${BASH_REMATCH[2]}
  [[ -n $rkey ]] && used=$(relay_cpu "$rkey" "$before" "$SECONDS_CONN")
  printf '  %-20s %8s conn/s  relay CPU %s  (%s errors)\n' "$key" "$rate" "${used:--}" "$errors"
  errs[$key]=$((${errs[$key]:-0} + errors))
  if greater "$rate" "${conns[$key]:-}"; then
    conns[$key]=$rate
    cpu[conn-$key]=$used
  fi
  sleep 1 # let this run's connections finish closing before the next one
}

for ((round = 1; round <= ROUNDS; round++)); do
  echo "round $round/$ROUNDS, throughput:"
  throughput direct "$P_IPERF"
  throughput warren "$P_RELAY_TP" warren-tp
  throughput warren-no-splice "$P_COPY_TP" warren-copy-tp
  throughput socat "$P_SOCAT_TP" socat-tp
  echo "round $round/$ROUNDS, new connections:"
  connrate_run direct "$P_ECHO"
  connrate_run warren "$P_RELAY_CONN" warren-conn
  connrate_run socat "$P_SOCAT_CONN" socat-conn
done

# ---------------------------------------------------------------- report

python3 - "${gbps[direct]}" "${gbps[warren]}" "${gbps[warren-no-splice]}" "${gbps[socat]}" \
  "${conns[direct]}" "${conns[warren]}" "${conns[socat]}" \
  "${errs[direct]}" "${errs[warren]}" "${errs[socat]}" \
  "${cpu[warren]:-}" "${cpu[warren-no-splice]:-}" "${cpu[socat]:-}" \
  "${cpu[conn-warren]:-}" "${cpu[conn-socat]:-}" "$ROUNDS" <<'EOF'
import sys
a = sys.argv[1:]
rounds = a.pop()
g = dict(direct=float(a[0]), warren=float(a[1]), copy=float(a[2]), socat=float(a[3]))
c = dict(direct=float(a[4]), warren=float(a[5]), socat=float(a[6]))
e = dict(direct=a[7], warren=a[8], socat=a[9])
cpu_tp = dict(direct="", warren=a[10], copy=a[11], socat=a[12])
cpu_conn = dict(direct="", warren=a[13], socat=a[14])

def ratio(x, y):
    return "%.2fx" % (x / y) if y > 0 else "n/a"

rows = [("direct", "direct", "direct"), ("warren relay (splice)", "warren", "warren"),
        ("warren relay --no-splice", "copy", None), ("socat fork", "socat", "socat")]
print()
print("| path | Gbit/s | vs socat | vs direct | relay CPU | conn/s | vs socat | vs direct | relay CPU | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, tk, ck in rows:
    cells = [name, "%.2f" % g[tk], ratio(g[tk], g["socat"]), ratio(g[tk], g["direct"]), cpu_tp[tk] or "-"]
    if ck:
        cells += ["%.0f" % c[ck], ratio(c[ck], c["socat"]), ratio(c[ck], c["direct"]), cpu_conn[ck] or "-", e[ck]]
    else:
        cells += ["-", "-", "-", "-", "-"]
    print("| " + " | ".join(cells) + " |")
print()
print("best of %s rounds; relay CPU = CPU time of the relay process (socat: with its children) in %% of one core" % rounds)
tp = g["warren"] / g["socat"] if g["socat"] > 0 else 0
cr = c["warren"] / c["socat"] if c["socat"] > 0 else 0
print("goal: warren relay throughput >= 2x socat: %.2fx  %s" % (tp, "met" if tp >= 2 else "MISSED"))
print("goal: warren relay conn/s >= socat:        %.2fx  %s" % (cr, "met" if cr >= 1 else "MISSED"))
EOF
