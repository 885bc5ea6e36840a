"""Fault kinds: what happens to warren's processes and to the tunnel's path
while traffic runs. Each is `fn(soak, rng)`, runs to the end of its fault
(the role it broke is back: same port, same --state-dir, so the pin still
holds, and the clients have reconnected), and returns a short note for the
log. It raises SoakFailure for a broken promise.

Add a kind for a new feature here (or in its own module imported by
soak.py) with @FAULTS.kind(name, weight).
"""

import threading
import time

import traffic
from registry import FAULTS
from rig import CONNECTED_RE, LOW_NOFILE, WAIT_TUNNEL, SoakFailure

# How long a client may take to reconnect once its server is back: the
# backoff's 30 s cap, plus the soak's 30 s grace, plus a slow ASan start.
RECONNECT_WITHIN = 75.0


def outage_length(rng):
    """Short outages (the tunnel comes back before --wait-tunnel runs out)
    and long ones (new connections must be refused, cleanly)."""
    if rng.random() < 0.5:
        return rng.uniform(0.1, WAIT_TUNNEL * 0.75)
    return rng.uniform(WAIT_TUNNEL + 0.5, WAIT_TUNNEL + 4)


def outage(soak, rng, seconds):
    """Waits out an outage; when it outlasts --wait-tunnel, a -L connection
    and a SOCKS5 CONNECT made during it must be refused cleanly (a reset or
    EOF, reply 1) after the wait, not hang."""
    end = time.monotonic() + seconds
    if seconds > WAIT_TUNNEL + 0.5:
        time.sleep(0.2)
        for kind in ("l_echo", "socks_echo"):
            soak.run_op(kind, rng, probe=True)
    time.sleep(max(0.0, end - time.monotonic()))


def wait_reconnected(soak, marks):
    for role, mark in marks.items():
        soak.rig.procs[role].wait_for(CONNECTED_RE, RECONNECT_WITHIN, start=mark)


def stop(soak, rng, role):
    """SIGKILL, or (server) now and then SIGTERM, which must end it cleanly."""
    p = soak.rig.procs[role]
    soak.expect_alive(p)
    if role == "server" and rng.random() < 0.25:
        code = p.terminate(5 + 30)  # --drain-timeout 5s
        if code != 0:
            raise SoakFailure("server (pid %d) on SIGTERM: exit status %s, expected 0; stderr tail:\n%s"
                              % (p.pid, code, p.report()))
        return "SIGTERM"
    p.kill()
    return "SIGKILL"


@FAULTS.kind("server_kill", weight=3)
def server_kill(soak, rng):
    marks = soak.client_marks(soak.clients())
    how = stop(soak, rng, "server")
    seconds = outage_length(rng)
    outage(soak, rng, seconds)
    soak.rig.start_server()
    wait_reconnected(soak, marks)
    return "%s, down %.1f s" % (how, seconds)


@FAULTS.kind("relay_kill", weight=3)
def relay_kill(soak, rng):
    """The tunnel's TCP connection cut in the middle (client A's path)."""
    marks = soak.client_marks(("client_a",))
    stop(soak, rng, "relay")
    seconds = outage_length(rng)
    outage(soak, rng, seconds)
    soak.rig.start_relay()
    wait_reconnected(soak, marks)
    return "down %.1f s" % seconds


@FAULTS.kind("server_freeze", weight=1)
def server_freeze(soak, rng):
    """SIGSTOP / SIGCONT: a server (or path) that stops answering for a few
    seconds, shorter than the clients' dead-tunnel detection (2 x 5 s)."""
    p = soak.rig.procs["server"]
    soak.expect_alive(p)
    seconds = rng.uniform(1, 4)
    p.proc.send_signal(19)  # SIGSTOP
    try:
        time.sleep(seconds)
    finally:
        p.proc.send_signal(18)  # SIGCONT
    return "stopped %.1f s" % seconds


@FAULTS.kind("server_down_at_client_start", weight=1)
def server_down_at_client_start(soak, rng):
    """A client (D) started while the server is down: it retries, a local
    connection made meanwhile waits for the tunnel and then works; SIGTERM
    ends D with status 0."""
    rig = soak.rig
    marks = soak.client_marks(soak.clients())
    how = stop(soak, rng, "server")
    via_relay = rng.random() < 0.5
    d = rig.start_client("client_d", via_relay=via_relay, socks=False, udp=False, wait_tunnel=30,
                         wait_connected=False)
    d.wait_for(r"tunnel: cannot connect to ", 60)
    result = {}

    def transfer():
        try:
            result["outcome"] = traffic.echo(soak, rng, "client_d", 1 << 10, 256 << 10, False)
        except traffic.Clean as e:
            result["outcome"] = "clean: %s" % e
        except SoakFailure as e:
            result["failure"] = e

    t = threading.Thread(target=transfer, daemon=True)
    t.start()
    time.sleep(rng.uniform(0, 2))
    rig.start_server()
    t.join(30 + traffic.HANG_GRACE + 60)
    if t.is_alive():
        raise SoakFailure("hang: a transfer through client D (started with the server down) never ended")
    if "failure" in result:
        raise result["failure"]
    d.wait_for(CONNECTED_RE, RECONNECT_WITHIN)
    code = d.terminate(30)
    if code != 0:
        raise SoakFailure("client D (pid %d) on SIGTERM: exit status %s, expected 0; stderr tail:\n%s"
                          % (d.pid, code, d.text()[-3000:]))
    del rig.forwards["client_d"]
    wait_reconnected(soak, marks)
    soak.count("transfer via client_d", result["outcome"])
    return "%s, %s, D via %s: %s" % (how, "relay" if via_relay else "server", "relay" if via_relay else "direct",
                                     result["outcome"])


def squeeze(soak, rng, role, path):
    """More local connections than `role` (started with RLIMIT_NOFILE
    LOW_NOFILE, soft = hard) has descriptors, held a while, then dropped
    (half of them with a reset). It stays up, and once they are gone it
    forwards again within 30 s. Meanwhile a connection to it may be
    "closed at once" (README), which traffic.recv_n then counts as clean."""
    p = soak.rig.procs[role]
    soak.expect_alive(p)
    soak.squeezed.add(role)
    try:
        return squeeze_held(soak, rng, role, path, p)
    finally:
        soak.squeezed.discard(role)


def squeeze_held(soak, rng, role, path, p):
    port = soak.rig.forwards[role]["tcp"]
    n = LOW_NOFILE + rng.randrange(16, 96)
    held, refused = [], 0
    dl = traffic.Deadline(30, "fd squeeze connections")
    for _ in range(n):
        try:
            s = traffic.connect(port, dl)
            s.sendall(b"E")
            held.append(s)
        except (traffic.Clean, OSError):
            refused += 1
    time.sleep(rng.uniform(1, 4))
    for s in held:
        if rng.random() < 0.5:
            traffic.reset_close(s)
        else:
            s.close()
    time.sleep(1)
    soak.expect_alive(p)
    deadline = time.monotonic() + 30
    while True:
        try:
            traffic.echo(soak, rng, path, 1 << 10, 64 << 10, True)
            break
        except traffic.Clean as e:
            if time.monotonic() > deadline:
                raise SoakFailure("%s does not forward 30 s after the squeeze ended (%s); stderr tail:\n%s"
                                  % (role, e, p.report()))
            time.sleep(1)
    return "%d connections, %d failed to connect" % (n, refused)


@FAULTS.kind("fd_squeeze", weight=1, needs=traffic.needs_low_nofile)
def fd_squeeze(soak, rng):
    """Client B's -L, short of descriptors."""
    return squeeze(soak, rng, "client_b", "B")


@FAULTS.kind("relay_fd_squeeze", weight=1, needs=traffic.needs_low_nofile)
def relay_fd_squeeze(soak, rng):
    """Relay B, short of descriptors."""
    return squeeze(soak, rng, "relay_b", "relay_b")
