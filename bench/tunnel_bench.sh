#!/usr/bin/env bash
# tunnel_bench.sh: loopback benchmark of a warren tunnel (`warren server` +
# `warren client -L`) against a direct connection, `ssh -N -L` and a stunnel
# client/server pair, in one run (~2.5 minutes with the defaults):
#   throughput  single-stream iperf3 (-t BENCH_SECONDS): direct / warren wss /
#               warren ws / ssh -L (private sshd, default ciphers) / stunnel
#               (TLS 1.3, self-signed) / two `warren relay --no-splice` in
#               series (the reference: the same two user-space hops any
#               tunnel adds, with plain copies, no framing and no crypto)
#   latency     bench/rrlat client: 1-byte request/response on one persistent
#               connection, same six paths; a tunnel's added latency is its
#               p50 minus the direct p50
#   new stream  bench/rrlat first: connect + first 1-byte exchange on a NEW
#               connection through the established tunnel. Judged through a
#               third warren client whose tunnel runs through a proxy that
#               delays everything BENCH_DELAY_MS each way: with a 0-RTT stream
#               open the first exchange costs one tunnel round trip, not two
#   idle        bench/idle_streams: BENCH_STREAMS (10000) concurrent idle
#               streams through one fresh wss tunnel, each established end to
#               end (1 byte echoed) and checked again after idling; VmRSS
#               growth of the warren client + server per stream
# Goals: wss throughput >= 2.5x ssh -L and >= 1.2x stunnel; added p50 latency
# <= 50 us; idle streams <= 8 KiB each (client + server); a new stream's first
# exchange <= 1.5x the steady round trip + 100 us. A missed goal prints MISSED
# but does not fail the run; a measurement that cannot be taken (a peer does
# not start, a tool errors out) exits non-zero.
#
# Environment: WARREN (default build/release/warren), RRLAT and IDLE_STREAMS
# (default build/release/bench/{rrlat,idle_streams}), BENCH_SECONDS (5, per
# iperf3 run), BENCH_ROUNDS (2: throughput and latency are measured that many
# times, interleaved, and the best kept -- on a shared machine, noise only ever
# makes a run slower), BENCH_RTT_COUNT (5000 round trips per latency run),
# BENCH_DELAY_MS (5), BENCH_STREAMS (10000), BENCH_CPU_IDLE (0: hold
# /dev/cpu_dma_latency at 0 during the run, see below). Loopback only: nothing leaves
# 127.0.0.1.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

# Installs iperf3, sshd, stunnel4, ... when missing. If it cannot run (say,
# another apt-get holds the dpkg lock), go on with what is installed: checked below.
"$here/../scripts/deps" || echo "tunnel_bench: warning: scripts/deps failed; using the tools already installed" >&2

WARREN=${WARREN:-$root/build/release/warren}
RRLAT=${RRLAT:-$root/build/release/bench/rrlat}
IDLE_STREAMS=${IDLE_STREAMS:-$root/build/release/bench/idle_streams}
SECONDS_TP=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-2}
RTT_COUNT=${BENCH_RTT_COUNT:-5000}
DELAY_MS=${BENCH_DELAY_MS:-5}
STREAMS=${BENCH_STREAMS:-10000}
HOST=127.0.0.1

for tool in "$WARREN" "$RRLAT" "$IDLE_STREAMS"; do
  [[ -x $tool ]] || { echo "tunnel_bench: $tool is not an executable (set WARREN / RRLAT / IDLE_STREAMS, or build the release preset)" >&2; exit 2; }
done
for tool in iperf3 python3 ss timeout ssh ssh-keygen stunnel4 openssl; do
  command -v "$tool" >/dev/null || { echo "tunnel_bench: $tool not found" >&2; exit 2; }
done
[[ -x /usr/sbin/sshd ]] || { echo "tunnel_bench: /usr/sbin/sshd not found" >&2; exit 2; }

# Every process started below inherits this: 10,000 streams are 10,000 sockets
# in the warren client, in the warren server, in the echo server and in
# idle_streams. Raise the soft limit as far as the hard one allows; if that is
# too low for BENCH_STREAMS, measure fewer streams (per-stream cost is what counts).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
if [[ $nofile != unlimited ]] && ((STREAMS + 200 > nofile)); then
  echo "tunnel_bench: warning: open-file limit $nofile; measuring $((nofile - 200)) idle streams instead of $STREAMS" >&2
  STREAMS=$((nofile - 200))
fi

work=$(mktemp -d /tmp/tunnel_bench.XXXXXX)
pids=()

cleanup() {
  local pid
  for pid in "${pids[@]}"; do
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
  echo "tunnel_bench: FAILED: $*" >&2
  local f
  for f in "$work"/*.log; do
    [[ -s $f ]] || continue
    echo "--- $(basename "$f") (last lines)" >&2
    tail -n 5 "$f" >&2
  done
  exit 1
}

# Twenty-four distinct free ports below the kernel's ephemeral range (the idle
# streams use 2 x BENCH_STREAMS ephemeral ports), each checked by binding it.
read -r P_IPERF P_ECHO P_WSS P_WS P_WSS_IDLE P_SSH P_ST_SRV P_ST_CLI \
  P_WSS_TP P_WSS_RR P_WS_TP P_WS_RR P_SSH_TP P_IDLE \
  P_SSH_RR P_ST_SRV_RR P_ST_CLI_RR P_DELAY P_DELAY_RR P_DELAY_TP \
  P_RLY_A_TP P_RLY_B_TP P_RLY_A_RR P_RLY_B_RR < <(
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
    if len(ports) == 24:
        break
for s in held:
    s.close()  # before printing: the script uses the ports as soon as it reads them
print(" ".join(map(str, ports)), flush=True)
EOF
)
[[ -n ${P_RLY_B_RR:-} ]] || { echo "tunnel_bench: could not find 24 free ports" >&2; exit 2; }

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
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    [[ -n $(ss -Hltn "sport = :$port") ]] && return 0
    sleep 0.05
  done
  return 1
}

# wait_log FILE REGEX PID [TENTHS]: until FILE has a line matching REGEX, or PID dies.
wait_log() {
  local file=$1 re=$2 pid=$3 tenths=${4:-200} i
  for ((i = 0; i < tenths; i++)); do
    grep -qE "$re" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
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

# tree_cpu "PID..." ...: CPU seconds (user+sys) used so far by the PIDs and all their
# live descendants, plus children they have reaped (sshd's per-connection
# processes, stunnel's threads are all counted).
tree_cpu() {
  python3 - "$@" <<'EOF'
import os, sys
tck = os.sysconf("SC_CLK_TCK")
stat = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            f = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields after "(comm)": state=0 ppid=1 ... utime=11 stime=12 cutime=13 cstime=14
        stat[int(d)] = (int(f[1]), sum(int(x) for x in f[11:15]))
todo, seen, total = [int(p) for a in sys.argv[1:] for p in a.split()], set(), 0
while todo:
    p = todo.pop()
    if p in seen or p not in stat:
        continue
    seen.add(p)
    total += stat[p][1]
    todo += [c for c, (pp, _) in stat.items() if pp == p]
print(total / tck)
EOF
}

# rss_kib PID: VmRSS of PID in KiB.
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# ---------------------------------------------------------------- peers

start_iperf_server
start echo-server "$RRLAT" serve --port "$P_ECHO" --host "$HOST"
echo_pid=$last_pid
wait_listening "$P_ECHO" "$echo_pid" || fail "rrlat serve did not start"

head -c 32 /dev/urandom | base64 >"$work/token"
chmod 600 "$work/token"

# start_warren_server NAME URL PORT: sets $last_pid, and $fingerprint to the
# sha256:... pin of the certificate it generated in its state directory
# (computed here: at --log-level warn the server does not print it).
start_warren_server() {
  local name=$1 url=$2 port=$3
  start "$name" "$WARREN" server --listen "$url" --token-file "$work/token" --state-dir "$work/state-$name" \
    --allow "$HOST" --max-streams-per-client 20000 --log-level warn
  wait_listening "$port" "$last_pid" || fail "$name did not start listening on port $port"
  fingerprint=
  if [[ $url == wss://* ]]; then
    fingerprint=$(openssl x509 -in "$work/state-$name/cert.pem" -noout -fingerprint -sha256 2>/dev/null |
      sed -n 's/^[Ss][Hh][Aa]256 [Ff]ingerprint=/sha256:/p')
    [[ -n $fingerprint ]] || fail "no certificate in $work/state-$name (cert.pem)"
  fi
}

# start_warren_client NAME URL FINGERPRINT PROBE_PORT LOCAL:HOST:TARGET...:
# starts `warren client -L ...`, waits for its local ports, then for the
# tunnel: one 1-byte exchange with the echo server through PROBE_PORT (a new
# local connection waits for the tunnel). Sets $last_pid.
start_warren_client() {
  local name=$1 url=$2 fp=$3 probe=$4 args=() f
  shift 4
  [[ -n $fp ]] && args+=(--pin "$fp")
  for f in "$@"; do
    args+=(-L "$HOST:$f")
  done
  start "$name" "$WARREN" client "$url" --token-file "$work/token" "${args[@]}" --log-level warn
  for f in "$@"; do
    wait_listening "${f%%:*}" "$last_pid" || fail "$name did not listen on ${f%%:*}"
  done
  timeout 20 "$RRLAT" first --host "$HOST" --port "$probe" --count 1 --warmup 0 >/dev/null 2>>"$work/$name.log" ||
    fail "$name: no working tunnel (1-byte echo through port $probe failed)"
}

declare -A tunnel_pids # KEY -> "PID PID..." whose CPU counts as the tunnel's

# warren over wss and over ws: one server and one client each, forwarding one
# port to iperf3 and one to the echo server.
start_warren_server warren-wss-server "wss://$HOST:$P_WSS" "$P_WSS"
wss_server=$last_pid
wss_fingerprint=$fingerprint
start_warren_client warren-wss-client "wss://$HOST:$P_WSS" "$fingerprint" "$P_WSS_RR" \
  "$P_WSS_TP:$HOST:$P_IPERF" "$P_WSS_RR:$HOST:$P_ECHO"
tunnel_pids[wss]="$wss_server $last_pid"

start_warren_server warren-ws-server "ws://$HOST:$P_WS" "$P_WS"
ws_server=$last_pid
start_warren_client warren-ws-client "ws://$HOST:$P_WS" "" "$P_WS_RR" \
  "$P_WS_TP:$HOST:$P_IPERF" "$P_WS_RR:$HOST:$P_ECHO"
tunnel_pids[ws]="$ws_server $last_pid"

# A third warren client, to the same wss server but through a proxy that
# delays every chunk by BENCH_DELAY_MS each way: with a tunnel round trip of
# milliseconds instead of microseconds, whether a new stream's first exchange
# costs one round trip or two is plain, whatever the CPU noise.
cat >"$work/delay.py" <<'EOF'
# delay.py LISTEN_PORT TARGET_PORT DELAY_MS: TCP proxy on 127.0.0.1 that
# delivers every chunk DELAY_MS after it arrived, in order, both ways.
import asyncio, collections, socket, sys, time

listen_port, target_port, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000

async def pipe(reader, writer):
    queue, ready, state = collections.deque(), asyncio.Event(), {"done": False}

    async def deliver():
        while True:
            while not queue:
                if state["done"]:
                    writer.close()
                    return
                ready.clear()
                await ready.wait()
            due, data = queue.popleft()
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            writer.write(data)
            await writer.drain()

    out = asyncio.ensure_future(deliver())
    try:
        while data := await reader.read(65536):
            queue.append((time.monotonic() + delay, data))
            ready.set()
    except OSError:
        pass
    state["done"] = True
    ready.set()
    try:
        await out
    except OSError:
        pass

async def handle(client_reader, client_writer):
    try:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_writer.close()
        return
    for w in (client_writer, server_writer):
        w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()

asyncio.run(main())
EOF
start delay-proxy python3 "$work/delay.py" "$P_DELAY" "$P_WSS" "$DELAY_MS"
wait_listening "$P_DELAY" "$last_pid" || fail "delay proxy did not start on port $P_DELAY"
start_warren_client warren-delay-client "wss://$HOST:$P_DELAY" "$wss_fingerprint" "$P_DELAY_RR" \
  "$P_DELAY_RR:$HOST:$P_ECHO" "$P_DELAY_TP:$HOST:$P_IPERF"

# ssh -N -L through a private sshd (temporary host key, temporary authorized key).
mkdir -p /run/sshd # privilege separation directory, absent until the ssh service first runs
ssh-keygen -q -t ed25519 -N '' -f "$work/ssh_host_key" </dev/null >/dev/null
ssh-keygen -q -t ed25519 -N '' -f "$work/ssh_client_key" </dev/null >/dev/null
cp "$work/ssh_client_key.pub" "$work/authorized_keys"
cat >"$work/sshd_config" <<EOF
Port $P_SSH
ListenAddress $HOST
HostKey $work/ssh_host_key
AuthorizedKeysFile $work/authorized_keys
PidFile none
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding yes
LogLevel ERROR
EOF
start sshd /usr/sbin/sshd -D -e -f "$work/sshd_config"
sshd_pid=$last_pid
wait_listening "$P_SSH" "$sshd_pid" || fail "sshd did not start on port $P_SSH"
start ssh ssh -N -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
  -o IdentitiesOnly=yes -o ExitOnForwardFailure=yes -o LogLevel=ERROR -i "$work/ssh_client_key" -p "$P_SSH" \
  -L "$P_SSH_TP:$HOST:$P_IPERF" -L "$P_SSH_RR:$HOST:$P_ECHO" "root@$HOST"
wait_listening "$P_SSH_TP" "$last_pid" || fail "ssh -L did not start listening on port $P_SSH_TP"
wait_listening "$P_SSH_RR" "$last_pid" || fail "ssh -L did not start listening on port $P_SSH_RR"
tunnel_pids[ssh]="$sshd_pid $last_pid"

# stunnel: a server (self-signed certificate, P-256 like warren's) in front of
# iperf3 and a client in front of that, TLS 1.3 only.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=$HOST" \
  -keyout "$work/stunnel-key.pem" -out "$work/stunnel-cert.pem" >/dev/null 2>&1 || fail "openssl req"
cat >"$work/stunnel-server.conf" <<EOF
foreground = yes
pid =
debug = err
[bench]
accept = $HOST:$P_ST_SRV
connect = $HOST:$P_IPERF
cert = $work/stunnel-cert.pem
key = $work/stunnel-key.pem
sslVersionMin = TLSv1.3
[echo]
accept = $HOST:$P_ST_SRV_RR
connect = $HOST:$P_ECHO
cert = $work/stunnel-cert.pem
key = $work/stunnel-key.pem
sslVersionMin = TLSv1.3
EOF
cat >"$work/stunnel-client.conf" <<EOF
foreground = yes
pid =
debug = err
[bench]
client = yes
accept = $HOST:$P_ST_CLI
connect = $HOST:$P_ST_SRV
sslVersionMin = TLSv1.3
[echo]
client = yes
accept = $HOST:$P_ST_CLI_RR
connect = $HOST:$P_ST_SRV_RR
sslVersionMin = TLSv1.3
EOF
start stunnel-server stunnel4 "$work/stunnel-server.conf"
st_server=$last_pid
wait_listening "$P_ST_SRV" "$st_server" || fail "stunnel server did not start on port $P_ST_SRV"
start stunnel-client stunnel4 "$work/stunnel-client.conf"
wait_listening "$P_ST_CLI" "$last_pid" || fail "stunnel client did not start on port $P_ST_CLI"
wait_listening "$P_ST_CLI_RR" "$last_pid" || fail "stunnel client did not start on port $P_ST_CLI_RR"
tunnel_pids[stunnel]="$st_server $last_pid"

# The reference: two plain relays in series, each recv()/send() through a
# 64 KiB buffer (warren relay --no-splice). Every tunnel puts two user-space
# processes in the path; this is what those two hops cost with nothing else
# (no framing, no multiplexing, no crypto) on this machine.
relay_pids=
for leg in TP RR; do
  a_port=P_RLY_A_$leg b_port=P_RLY_B_$leg
  target=$P_IPERF
  [[ $leg == RR ]] && target=$P_ECHO
  start "relay-b-$leg" "$WARREN" relay --no-splice --no-target-check --log-level warn "$HOST:${!b_port}" "$HOST:$target"
  wait_listening "${!b_port}" "$last_pid" || fail "warren relay did not start on port ${!b_port}"
  [[ $leg == TP ]] && relay_pids="$last_pid"
  start "relay-a-$leg" "$WARREN" relay --no-splice --no-target-check --log-level warn "$HOST:${!a_port}" "$HOST:${!b_port}"
  wait_listening "${!a_port}" "$last_pid" || fail "warren relay did not start on port ${!a_port}"
  [[ $leg == TP ]] && relay_pids="$relay_pids $last_pid"
done
tunnel_pids[relays]="$relay_pids"

# Latency on a VM is dominated by how fast an idle vCPU wakes (halt → host →
# guest: ~30 us per hop here). Like tuned's latency-performance profile, hold
# /dev/cpu_dma_latency at 0 for the run so idle CPUs poll instead of halting:
# the same for every path measured, and what a latency-sensitive deployment
# does. BENCH_CPU_IDLE=1 keeps the machine's default.
idle_note="CPU idle states: machine default"
if [[ ${BENCH_CPU_IDLE:-0} != 1 && -w /dev/cpu_dma_latency ]]; then
  start cpu-dma-latency python3 -c '
import os, signal, struct
fd = os.open("/dev/cpu_dma_latency", os.O_WRONLY)
os.write(fd, struct.pack("i", 0))
print("holding /dev/cpu_dma_latency at 0", flush=True)
signal.pause()'
  idle_note="CPU idle states: /dev/cpu_dma_latency held at 0 (idle CPUs poll; BENCH_CPU_IDLE=1 to keep the default)"
fi

echo "tunnel_bench: warren=$WARREN rrlat=$RRLAT idle_streams=$IDLE_STREAMS"
echo "tunnel_bench: $idle_note"
echo "tunnel_bench: iperf3 ${SECONDS_TP}s single stream; $RTT_COUNT round trips per latency run;" \
  "$STREAMS idle streams; best of $ROUNDS rounds; $(nproc) CPUs, $(uname -sr)," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg); $(ssh -V 2>&1); $(stunnel4 -version 2>&1 | grep -m 1 -i '^stunnel' || true)"

# ---------------------------------------------------------------- measurements

declare -A gbps cpu rtt_p50 rtt_p99 first_p50 first_p99

# less A B: is A < B (B may be empty: then yes)?
less() { python3 -c 'import sys; sys.exit(0 if sys.argv[2] == "" or float(sys.argv[1]) < float(sys.argv[2]) else 1)' "$1" "${2:-}"; }

# throughput KEY PORT: keeps the best Gbit/s in gbps[KEY] and the tunnel's CPU
# use during that run (both ends, % of one core) in cpu[KEY].
throughput() {
  local key=$1 port=$2 attempt json out before=0 after used=""
  for attempt in 1 2; do
    start_iperf_server
    [[ -n ${tunnel_pids[$key]:-} ]] && before=$(tree_cpu "${tunnel_pids[$key]}")
    if json=$(timeout $((SECONDS_TP + 30)) iperf3 -c "$HOST" -p "$port" -t "$SECONDS_TP" -J 2>>"$work/iperf3-client.log") &&
      out=$(python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
if "error" in d: sys.exit("iperf3: " + d["error"])
print("%.3f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9))
' <<<"$json" 2>>"$work/iperf3-client.log"); then
      if [[ -n ${tunnel_pids[$key]:-} ]]; then
        after=$(tree_cpu "${tunnel_pids[$key]}")
        used=$(python3 -c 'import sys; print("%.0f%%" % (100 * (float(sys.argv[1]) - float(sys.argv[2])) / float(sys.argv[3])))' \
          "$after" "$before" "$SECONDS_TP")
      fi
      printf '  %-10s %8s Gbit/s  tunnel CPU %s\n' "$key" "$out" "${used:--}"
      if less "${gbps[$key]:-0}" "$out"; then
        gbps[$key]=$out
        cpu[$key]=$used
      fi
      return 0
    fi
    echo "tunnel_bench: iperf3 through $key failed (attempt $attempt), restarting the iperf3 server" >&2
    restart_iperf_server
  done
  fail "throughput measurement through $key"
}

# latency KEY PORT [COUNT]: keeps the lowest-p50 steady round trip in rtt_p50/rtt_p99[KEY].
latency() {
  local key=$1 port=$2 count=${3:-$RTT_COUNT} line
  line=$(timeout 120 "$RRLAT" client --host "$HOST" --port "$port" --count "$count" --warmup 20 2>>"$work/rrlat-client.log") ||
    fail "rrlat client through $key"
  [[ $line =~ ^rtt_us\ mean\ ([0-9.]+)\ p50\ ([0-9.]+)\ p99\ ([0-9.]+) ]] || fail "rrlat client through $key printed '$line'"
  printf '  %-10s rtt      p50 %8s us  p99 %8s us  mean %8s us\n' "$key" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}" "${BASH_REMATCH[1]}"
  if less "${BASH_REMATCH[2]}" "${rtt_p50[$key]:-}"; then
    rtt_p50[$key]=${BASH_REMATCH[2]}
    rtt_p99[$key]=${BASH_REMATCH[3]}
  fi
}

# first KEY PORT [COUNT]: keeps the lowest-p50 new-stream first exchange in first_p50/first_p99[KEY].
first() {
  local key=$1 port=$2 count=${3:-300} line
  line=$(timeout 120 "$RRLAT" first --host "$HOST" --port "$port" --count "$count" --warmup 5 2>>"$work/rrlat-client.log") ||
    fail "rrlat first through $key"
  [[ $line =~ ^first_us\ mean\ ([0-9.]+)\ p50\ ([0-9.]+)\ p99\ ([0-9.]+) ]] || fail "rrlat first through $key printed '$line'"
  printf '  %-10s first    p50 %8s us  p99 %8s us  mean %8s us\n' "$key" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}" "${BASH_REMATCH[1]}"
  if less "${BASH_REMATCH[2]}" "${first_p50[$key]:-}"; then
    first_p50[$key]=${BASH_REMATCH[2]}
    first_p99[$key]=${BASH_REMATCH[3]}
  fi
}

for ((round = 1; round <= ROUNDS; round++)); do
  echo "round $round/$ROUNDS, throughput:"
  throughput direct "$P_IPERF"
  throughput wss "$P_WSS_TP"
  throughput ws "$P_WS_TP"
  throughput ssh "$P_SSH_TP"
  throughput stunnel "$P_ST_CLI"
  throughput relays "$P_RLY_A_TP"
  echo "round $round/$ROUNDS, latency:"
  latency direct "$P_ECHO"
  latency wss "$P_WSS_RR"
  latency ws "$P_WS_RR"
  latency ssh "$P_SSH_RR"
  latency stunnel "$P_ST_CLI_RR"
  latency relays "$P_RLY_A_RR"
  first direct "$P_ECHO"
  first wss "$P_WSS_RR"
  first ws "$P_WS_RR"
  first ssh "$P_SSH_RR"
  first stunnel "$P_ST_CLI_RR"
  first relays "$P_RLY_A_RR"
  throughput delayed "$P_DELAY_TP"
  latency delayed "$P_DELAY_RR" 100
  first delayed "$P_DELAY_RR" 50
done

# The cost of the cryptography alone, for the ceiling in the report: one core
# encrypting and one decrypting 16 KiB records with the suite warren prefers.
aes_speed() { # prints GB/s
  openssl speed "$@" -evp aes-128-gcm -bytes 16384 -seconds 2 2>/dev/null |
    awk '/^AES-128-GCM/ { sub(/k$/, "", $2); printf "%.3f\n", $2 / 1e6 }'
}
aes_enc=$(aes_speed)
aes_dec=$(aes_speed -decrypt)
[[ -n $aes_enc && -n $aes_dec ]] || fail "openssl speed -evp aes-128-gcm printed nothing"
echo "AES-128-GCM, one core, 16 KiB records: encrypt $aes_enc GB/s, decrypt $aes_dec GB/s"

# Idle streams, through a fresh wss tunnel of their own (so the baseline holds
# none of the buffers the runs above left behind).
echo "idle streams:"
start_warren_server warren-idle-server "wss://$HOST:$P_WSS_IDLE" "$P_WSS_IDLE"
idle_server=$last_pid
start_warren_client warren-idle-client "wss://$HOST:$P_WSS_IDLE" "$fingerprint" "$P_IDLE" "$P_IDLE:$HOST:$P_ECHO"
idle_client=$last_pid
# A warm-up of 100 streams first: the baseline then includes what the first
# stream of a process allocates once (buffer pools, coroutine frame caches).
timeout 60 "$IDLE_STREAMS" --host "$HOST" --port "$P_IDLE" --count 100 --hold 0 </dev/null >>"$work/idle-warmup.log" 2>&1 ||
  fail "idle_streams warm-up"
sleep 1
client_before=$(rss_kib "$idle_client")
server_before=$(rss_kib "$idle_server")
start idle-streams "$IDLE_STREAMS" --host "$HOST" --port "$P_IDLE" --count "$STREAMS" --hold 150
idle_pid=$last_pid
wait_log "$work/idle-streams.log" '^ready ' "$idle_pid" 1500 || fail "idle_streams did not open $STREAMS streams"
open_seconds=$(awk '/^ready / { print $4 }' "$work/idle-streams.log")
sleep 2 # let both ends settle
client_after=$(rss_kib "$idle_client")
server_after=$(rss_kib "$idle_server")
client_fds=$(find "/proc/$idle_client/fd" -mindepth 1 | wc -l)
server_fds=$(find "/proc/$idle_server/fd" -mindepth 1 | wc -l)
kill -USR1 "$idle_pid"
for ((i = 0; i < 600; i++)); do
  kill -0 "$idle_pid" 2>/dev/null || break
  sleep 0.1
done
wait "$idle_pid" 2>/dev/null || fail "idle_streams: streams did not survive idling ($(tail -n 1 "$work/idle-streams.log"))"
grep -q '^verified ' "$work/idle-streams.log" || fail "idle_streams did not verify its streams"
printf '  %s streams opened in %ss; warren client VmRSS %s -> %s KiB (%s fds), server %s -> %s KiB (%s fds); %s\n' \
  "$STREAMS" "$open_seconds" "$client_before" "$client_after" "$client_fds" "$server_before" "$server_after" \
  "$server_fds" "$(grep '^verified ' "$work/idle-streams.log")"

# ---------------------------------------------------------------- report

python3 - "$ROUNDS" "$STREAMS" "$client_before" "$client_after" "$server_before" "$server_after" <<EOF
import sys
rounds, streams, cb, ca, sb, sa = sys.argv[1:]
streams, cb, ca, sb, sa = int(streams), int(cb), int(ca), int(sb), int(sa)
g = dict(direct=${gbps[direct]}, wss=${gbps[wss]}, ws=${gbps[ws]}, ssh=${gbps[ssh]}, stunnel=${gbps[stunnel]}, relays=${gbps[relays]})
cpu = dict(direct="", wss="${cpu[wss]:-}", ws="${cpu[ws]:-}", ssh="${cpu[ssh]:-}", stunnel="${cpu[stunnel]:-}", relays="${cpu[relays]:-}")
r50 = dict(direct=${rtt_p50[direct]}, wss=${rtt_p50[wss]}, ws=${rtt_p50[ws]}, ssh=${rtt_p50[ssh]}, stunnel=${rtt_p50[stunnel]}, relays=${rtt_p50[relays]}, delayed=${rtt_p50[delayed]})
r99 = dict(direct=${rtt_p99[direct]}, wss=${rtt_p99[wss]}, ws=${rtt_p99[ws]}, ssh=${rtt_p99[ssh]}, stunnel=${rtt_p99[stunnel]}, relays=${rtt_p99[relays]}, delayed=${rtt_p99[delayed]})
f50 = dict(direct=${first_p50[direct]}, wss=${first_p50[wss]}, ws=${first_p50[ws]}, ssh=${first_p50[ssh]}, stunnel=${first_p50[stunnel]}, relays=${first_p50[relays]}, delayed=${first_p50[delayed]})
f99 = dict(direct=${first_p99[direct]}, wss=${first_p99[wss]}, ws=${first_p99[ws]}, ssh=${first_p99[ssh]}, stunnel=${first_p99[stunnel]}, relays=${first_p99[relays]}, delayed=${first_p99[delayed]})
delay_ms = float("$DELAY_MS")

def ratio(x, y):
    return "%.2fx" % (x / y) if y > 0 else "n/a"

def goal(ok):
    return "met" if ok else "MISSED"

names = dict(direct="direct", wss="warren wss", ws="warren ws", ssh="ssh -N -L", stunnel="stunnel (TLS 1.3)",
             relays="2 x warren relay --no-splice (reference)",
             delayed="warren wss, +%g ms each way" % delay_ms)
print()
def cpu_per_gb(k):  # CPU seconds of both tunnel ends per GB carried: steadier than Gbit/s on a busy machine
    return "%.1f" % (float(cpu[k].rstrip("%")) / 100 * 8 / g[k]) if cpu[k] and g[k] > 0 else "-"

print("| path | Gbit/s | vs ssh -L | vs stunnel | vs direct | tunnel CPU | tunnel CPU s/GB |")
print("|---|---:|---:|---:|---:|---:|---:|")
for k in ("direct", "wss", "ws", "ssh", "stunnel", "relays"):
    print("| %s | %.2f | %s | %s | %s | %s | %s |" % (names[k], g[k], ratio(g[k], g["ssh"]), ratio(g[k], g["stunnel"]),
                                                     ratio(g[k], g["direct"]), cpu[k] or "-", cpu_per_gb(k)))
print()
print("| path | RTT p50 us | RTT p99 us | added p50 us | new stream + first exchange p50 us | p99 us | first / steady |")
print("|---|---:|---:|---:|---:|---:|---:|")
for k in ("direct", "wss", "ws", "ssh", "stunnel", "relays", "delayed"):
    added = "-" if k in ("direct", "delayed") else "%.1f" % (r50[k] - r50["direct"])
    print("| %s | %.1f | %.1f | %s | %.1f | %.1f | %.2fx |" % (names[k], r50[k], r99[k], added, f50[k], f99[k],
                                                               f50[k] / r50[k] if r50[k] > 0 else 0))
print()
dc, ds = ca - cb, sa - sb
per = (dc + ds) / streams
print("| idle streams | client VmRSS KiB | server VmRSS KiB | client + server per stream |")
print("|---|---:|---:|---:|")
print("| %d through warren wss | %d -> %d (+%d) | %d -> %d (+%d) | %.2f KiB |" % (streams, cb, ca, dc, sb, sa, ds, per))
print()
print("$idle_note")
print("best of %s rounds; tunnel CPU = CPU time of both tunnel ends (with their children) in %% of one core" % rounds)
print("during the best run, and per GB carried;")
print("first exchange = connect + 1-byte request/response on a new connection (bench/rrlat first)")
tp_ssh = g["wss"] / g["ssh"] if g["ssh"] > 0 else 0
tp_st = g["wss"] / g["stunnel"] if g["stunnel"] > 0 else 0
added = r50["wss"] - r50["direct"]
bound = 1.5 * r50["delayed"] + 100
fixed = 256 * 1024 * 8 / (2 * delay_ms / 1000) / 1e9
dtp = float("${gbps[delayed]:-0}")
print("info: one stream over a %g ms round trip: %.3f Gbit/s; a fixed 256 KiB window would cap it at %.3f Gbit/s (%.1fx: the window grew)"
      % (2 * delay_ms, dtp, fixed, dtp / fixed if fixed else 0))
ref_added = r50["relays"] - r50["direct"]
print("info: reference, two plain relays in series (no framing, no crypto): %.2f Gbit/s = %.2fx ssh -L, added p50 %.1f us;"
      % (g["relays"], g["relays"] / g["ssh"] if g["ssh"] > 0 else 0, ref_added))
print("      warren wss reaches %.0f%% of that throughput and adds %+.1f us of latency beyond it"
      % (100 * g["wss"] / g["relays"] if g["relays"] > 0 else 0, added - ref_added))
# What any TLS tunnel could reach here. Single-stream throughput on this
# machine is bounded by CPU: T = C / (K + W), with T in GB/s, W the tunnel's
# CPU seconds per GB (measured for each path), K what everything else (the
# iperf3 ends, their share of loopback TCP) costs per GB, and C the CPU the
# run gets. The ssh and reference rows of this run give two equations for C
# and K. The cheapest conceivable TLS tunnel costs the reference's two plain
# hops plus one AES-128-GCM encryption and one decryption per byte, with no
# framing, no WebSocket masking and no other work: its T is the ceiling.
def s_per_gb(k):
    return float(cpu[k].rstrip("%")) / 100 * 8 / g[k] if cpu[k] and g[k] > 0 else None
ws_, wr_, wt_ = s_per_gb("ssh"), s_per_gb("relays"), s_per_gb("wss")
ts_, tr_ = g["ssh"] / 8, g["relays"] / 8
if None not in (ws_, wr_, wt_) and tr_ != ts_ and ts_ > 0:
    k_ = (tr_ * wr_ - ts_ * ws_) / (ts_ - tr_)
    c_ = tr_ * (k_ + wr_)
    crypto = 1 / $aes_enc + 1 / $aes_dec
    if k_ > 0:
        ceiling = c_ / (k_ + wr_ + crypto) * 8
        print("info: ceiling for any TLS tunnel here: the reference's %.2f s/GB of CPU + %.2f s/GB of AES-128-GCM"
              % (wr_, crypto))
        print("      (one encryption, one decryption) -> %.2f Gbit/s = %.2fx ssh -L; the 2.5x goal asks %.2f Gbit/s"
              % (ceiling, ceiling / g["ssh"], 2.5 * g["ssh"]))
        print("      (model T = C / (K + W) fitted to the ssh and reference rows: C = %.2f, K = %.2f s/GB;"
              % (c_, k_))
        print("      it predicts %.2f Gbit/s for warren wss from its %.2f s/GB, measured %.2f)"
              % (c_ / (k_ + wt_) * 8, wt_, g["wss"]))
    else:
        print("info: ceiling for a TLS tunnel: not computed (the ssh and reference rows do not fit T = C / (K + W))")
print("goal: warren wss throughput >= 2.5x ssh -L:        %.2fx  %s" % (tp_ssh, goal(tp_ssh >= 2.5)))
print("goal: warren wss throughput >= 1.2x stunnel:       %.2fx  %s" % (tp_st, goal(tp_st >= 1.2)))
print("goal: warren wss added p50 latency <= 50 us:        %.1f us  %s" % (added, goal(added <= 50)))
print("goal: idle stream (client + server) <= 8 KiB:       %.2f KiB  %s" % (per, goal(per <= 8)))
print("goal: new stream's first exchange <= 1.5x steady RTT + 100 us (0-RTT open; tunnel RTT %g ms): %.0f us vs %.0f us steady  %s"
      % (2 * delay_ms, f50["delayed"], r50["delayed"], goal(f50["delayed"] <= bound)))
print("info: on plain loopback a new stream's first exchange is %.0f us vs %.0f us steady (%.2fx; setup CPU, not round trips)"
      % (f50["wss"], r50["wss"], f50["wss"] / r50["wss"] if r50["wss"] > 0 else 0))
EOF
