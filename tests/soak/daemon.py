"""The daemon in the soak (issue 12): one `warren daemon` (--threads 2, its
own --control socket, --config and --state-dir in the soak's work
directory) whose config holds the checked units

    daemon_client ([[client]] "d-client", -L) --ws--> [[server]] "d-server" --> data server
    daemon_relay  ([[relay]]  "d-relay") --tcp--> data server

that carry SHA-256-checked transfers (traffic kinds d_echo, d_download,
d_relay_echo) while its fault kinds act on the daemon, never on those units:

- daemon_reload: the config rewritten (sections reordered, comments) to
  add, change (restart-class: its listen port) or remove a throwaway relay
  unit "churn", or broken on purpose (refused whole), applied by SIGHUP or
  `warren ctl reload`;
- daemon_unit_add_rm: `warren ctl add` of a throwaway relay, a checked
  transfer through it, `warren ctl rm`;
- ctl_clients: control clients that connect and vanish mid-frame, flood
  pipelined batches without reading, subscribe to events and never read,
  and send garbage (each answered as docs/CONTROL.md says) — meanwhile
  `warren ctl status` must answer within CTL_PROMPT.

After every daemon fault the checked units must be running, never
restarted (same `since`), and the client unit's tunnel never redialled
(`reconnects` 0): checks.daemon_units. The checked units are strict: a
transfer through them that fails, even cleanly, fails the soak.
"""

import json
import os
import random
import signal
import socket
import struct
import subprocess
import threading
import time

import checks
import traffic
from registry import FAULTS, OPS
from rig import SoakFailure, free_port

# `warren ctl status` must answer within this, whatever the control clients do.
CTL_PROMPT = 5.0
# Control connections a fault holds open at once: under the Unix listener's
# 32 (CONTROL.md), so `ctl status` always gets a slot.
HELD_MAX = 20
CHECKED = ("d-client", "d-relay", "d-server")
# The daemon's RSS may end this much further above its baseline than the
# other roles' (checks.RSS_SLACK_KIB): it carries three units' traffic, and
# each flooder may make it queue up to 4 MiB of replies (CONTROL.md); the
# allocator keeps that peak (ASan: 8 rounds of 8 flooders settle at about
# +17 MiB and do not grow). A leak grows past it; LeakSanitizer at the
# final SIGTERM reports one too.
RSS_EXTRA_KIB = (HELD_MAX // 2) * (4 << 10)


class DaemonRig:
    """Paths and ports of the daemon; `units` is the config's checked
    section texts, `churn` the throwaway unit's port while the config has it."""

    def __init__(self, rig):
        self.rig = rig
        base = os.path.join(rig.workdir, "daemon")
        self.cfg_dir = os.path.join(base, "cfg")
        os.makedirs(self.cfg_dir, mode=0o700)
        self.state_dir = os.path.join(base, "state")
        self.control = os.path.join(base, "run", "control.sock")
        self.config = os.path.join(self.cfg_dir, "warren.toml")
        self.token_file = os.path.join(self.cfg_dir, "tunnel.token")
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(rig.token + "-daemon\n")
        self.server_port = free_port()
        self.client_port = free_port()
        self.relay_port = free_port()
        data = rig.data.port
        self.units = [
            '[[server]]\nname = "d-server"\nlisten = ["ws://127.0.0.1:%d"]\ntoken_file = "%s"\n'
            'allow = ["127.0.0.1:%d"]\ndrain_timeout = "5s"\n' % (self.server_port, self.token_file, data),
            '[[client]]\nname = "d-client"\nurl = "ws://127.0.0.1:%d"\ntoken_file = "%s"\n'
            'local = ["127.0.0.1:%d:127.0.0.1:%d"]\n' % (self.server_port, self.token_file, self.client_port, data),
            '[[relay]]\nname = "d-relay"\nlisten = "127.0.0.1:%d"\ntarget = "127.0.0.1:%d"\n' % (self.relay_port, data),
        ]
        self.checked = CHECKED
        self.churn = None  # port of the throwaway unit "churn" in the config
        self.since = {}  # checked unit -> its `since` once the daemon was ready
        self.reconnects = 0  # the client unit's, once its tunnel was up
        self.lock = threading.Lock()  # one config change at a time
        self.ctl_runs = 0

    def write_config(self, rng=None, extra=""):
        sections = list(self.units)
        if self.churn:
            sections.append(relay_section("churn", self.churn, self.rig.data.port))
        if rng:  # an unchanged unit must stay untouched wherever it sits
            rng.shuffle(sections)
        text = "# warren soak (seed %d)\n\n" % self.rig.seed + "\n".join(sections) + extra
        tmp = self.config + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.config)

    def ctl(self, *args, timeout=CTL_PROMPT + 25, ok=True):
        """`warren ctl ARGS` (the soak's binary); (exit code, stdout, stderr,
        seconds). A crash or sanitizer report in it fails the soak."""
        argv = [self.rig.warren, "ctl"] + list(args) + ["--control", self.control]
        t0 = time.monotonic()
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=self.rig.env,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SoakFailure("hang: `%s` did not end within %.0f s" % (" ".join(argv[1:]), timeout))
        took = time.monotonic() - t0
        self.ctl_runs += 1
        out, err = r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
        if any(m in err for m in checks.CRASH_MARKERS) or r.returncode < 0:
            raise SoakFailure("`%s` crashed (status %d):\n%s" % (" ".join(argv[1:]), r.returncode, err[-3000:]))
        if ok and r.returncode != 0:
            raise SoakFailure("`%s`: exit status %d:\n%s%s" % (" ".join(argv[1:]), r.returncode, out, err))
        return r.returncode, out, err, took

    def status_prompt(self, why):
        """`ctl status` answers within CTL_PROMPT."""
        code, out, err, took = self.ctl("status", "--json", "--timeout", "%gs" % CTL_PROMPT, ok=False)
        if code != 0 or took > CTL_PROMPT:
            raise SoakFailure("the daemon did not answer `ctl status` promptly %s (%.1f s, exit %d): %s%s"
                              % (why, took, code, out, err))
        return json.loads(out)

    def units_list(self):
        return {u["name"]: u for u in json.loads(self.ctl("ls", "--json")[1])["units"]}


def relay_section(name, port, target):
    return '[[relay]]\nname = "%s"\nlisten = "127.0.0.1:%d"\ntarget = "127.0.0.1:%d"\n' % (name, port, target)


def start_daemon(soak):
    """Starts the daemon (a role like the others: baselines, SIGTERM at the
    end, the monitor) and records its checked units' `since`."""
    rig = soak.rig
    d = DaemonRig(rig)
    rig.daemon = d
    d.write_config()
    p = rig.spawn("daemon", ["daemon", "--config", d.config, "--control", d.control, "--state-dir", d.state_dir,
                             "--threads", "2", "--log-level", "info"])
    p.wait_for(r"daemon: pid \d+ ready", 60)
    rig.procs["daemon"] = p
    rig.forwards["daemon_client"] = {"tcp": d.client_port}
    rig.forwards["daemon_relay"] = {"tcp": d.relay_port}
    deadline = time.monotonic() + 60
    while True:  # the client unit's tunnel up (its peer set)
        units = d.units_list()
        if units["d-client"]["peer"]:
            break
        if time.monotonic() > deadline:
            raise SoakFailure("the daemon's client unit did not connect within 60 s: %r" % units["d-client"])
        time.sleep(0.2)
    d.since = {n: units[n]["since"] for n in CHECKED}
    # Its dials before the server unit listened (the units start together).
    d.reconnects = units["d-client"]["counters"]["reconnects"]
    return p


def needs_daemon(soak):
    return "--no-daemon" if soak.args.no_daemon else None


def check_units(soak, why):
    """The checked units: running, never restarted, the client's tunnel never
    redialled, nothing else left over (checks.daemon_units)."""
    failures = checks.daemon_units(soak.rig.daemon, why)
    if failures:
        raise SoakFailure(failures[0])


# -- traffic through the checked units -------------------------------------------

def strict(soak, fn, what):
    try:
        return fn()
    except traffic.Clean as e:
        raise SoakFailure("%s through the daemon failed (%s), though no fault touches its checked units; "
                          "daemon stderr tail:\n%s" % (what, e, soak.rig.procs["daemon"].report()))


@OPS.kind("d_echo", weight=2, needs=needs_daemon)
def d_echo(soak, rng, strict_):
    return strict(soak, lambda: traffic.echo(soak, rng, "daemon_client", 1 << 10, 2 << 20, True), "an echo")


@OPS.kind("d_download", weight=2, needs=needs_daemon)
def d_download(soak, rng, strict_):
    return strict(soak, lambda: traffic.download(soak, rng, "daemon_client", 4 << 10, 4 << 20), "a download")


@OPS.kind("d_relay_echo", weight=1, needs=needs_daemon)
def d_relay_echo(soak, rng, strict_):
    return strict(soak, lambda: traffic.echo(soak, rng, "daemon_relay", 1 << 10, 1 << 20, True),
                  "an echo via the relay unit")


# -- faults ----------------------------------------------------------------------

def echo_via(soak, rng, port, what):
    soak.rig.forwards["_throwaway"] = {"tcp": port}
    try:
        return strict(soak, lambda: traffic.echo(soak, rng, "_throwaway", 1 << 10, 256 << 10, True), what)
    finally:
        soak.rig.forwards.pop("_throwaway", None)


class InFlight:
    """A checked download through the client unit, its reader stalled, so
    it is under way while a fault acts on the daemon; `end()` joins it."""

    def __init__(self, soak, rng):
        self.soak = soak
        self.rng = random.Random(rng.getrandbits(64))
        self.result = {}
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            self.result["ok"] = strict(self.soak, lambda: traffic.download(
                self.soak, self.rng, "daemon_client", 1 << 20, 4 << 20, stall=self.rng.uniform(0.5, 3),
                rcvbuf=32 << 10), "a download under way during a daemon fault")
        except SoakFailure as e:
            self.result["failure"] = e

    def end(self):
        self.t.join(traffic.budget(4 << 20, 3) + traffic.HANG_GRACE + 30)
        if self.t.is_alive():
            raise SoakFailure("hang: a download through the daemon's client unit never ended")
        if "failure" in self.result:
            raise self.result["failure"]
        self.soak.count("d_download during a daemon fault", self.result["ok"])


@FAULTS.kind("daemon_reload", weight=2, needs=needs_daemon)
def daemon_reload(soak, rng):
    flight = InFlight(soak, rng)
    note = reload_once(soak, rng)
    flight.end()
    return note


def reload_once(soak, rng):
    d = soak.rig.daemon
    p = soak.rig.procs["daemon"]
    with d.lock:
        choices = ["remove", "change", "bad"] if d.churn else ["add", "add", "bad"]
        what = rng.choice(choices)
        old = d.churn
        if what == "add" or what == "change":
            d.churn = free_port()
        elif what == "remove":
            d.churn = None
        by = "SIGHUP" if rng.random() < 0.5 else "ctl reload"
        d.write_config(rng, extra='\n[[relay]]\nname = "broken"\nlisten = 7\n' if what == "bad" else "")
        mark = p.mark()
        if by == "SIGHUP":
            p.proc.send_signal(signal.SIGHUP)
            p.wait_for(r"daemon: SIGHUP: ", 60, start=mark)
        else:
            code, out, err, _ = d.ctl("reload", ok=False)
            if (code != 0) != (what == "bad"):
                raise SoakFailure("`ctl reload` (%s the throwaway unit) exit %d:\n%s%s" % (what, code, out, err))
        if what == "bad":
            d.write_config(rng)  # the refused file put right; nothing to apply
        units = d.units_list()
        if d.churn:
            u = units.get("churn")
            if not u or u["state"] != "running":
                raise SoakFailure("after a reload (%s by %s) the throwaway unit is %r" % (what, by, u))
        elif "churn" in units:
            raise SoakFailure("after a reload (remove by %s) the throwaway unit is still there: %r"
                              % (by, units["churn"]))
        check_units(soak, "after a reload (%s by %s)" % (what, by))
    if d.churn:
        echo_via(soak, rng, d.churn, "an echo via the reloaded throwaway unit")
    if what == "bad":
        return "a broken config (refused whole) by %s" % by
    return "%s the throwaway unit by %s%s" % (what, by, " (port %s -> %s)" % (old, d.churn) if what == "change"
                                              else "")


def restore(soak):
    """Before the final check: the config as at start (the throwaway unit
    gone), so the daemon's descriptors can return to their baseline."""
    d = soak.rig.daemon
    if d is None or not d.churn:
        return
    with d.lock:
        d.churn = None
        d.write_config()
        d.ctl("reload")


@FAULTS.kind("daemon_unit_add_rm", weight=2, needs=needs_daemon)
def daemon_unit_add_rm(soak, rng):
    flight = InFlight(soak, rng)
    note = add_rm_once(soak, rng)
    flight.end()
    return note


def add_rm_once(soak, rng):
    d = soak.rig.daemon
    name = "api-%08x" % rng.getrandbits(32)
    port = free_port()
    path = os.path.join(d.cfg_dir, name + ".toml")
    with open(path, "w") as f:
        f.write(relay_section(name, port, soak.rig.data.port))
    try:
        d.ctl("add", path)
    finally:
        os.unlink(path)
    if not os.path.exists(os.path.join(d.state_dir, "units.d", name + ".toml")):
        raise SoakFailure("units.add %s: no drop-in in %s/units.d" % (name, d.state_dir))
    n = rng.randrange(1, 4)
    for _ in range(n):
        echo_via(soak, rng, port, "an echo via the added unit %s" % name)
    d.ctl("rm", name)
    if os.path.exists(os.path.join(d.state_dir, "units.d", name + ".toml")):
        raise SoakFailure("units.remove %s left its drop-in" % name)
    if name in d.units_list():
        raise SoakFailure("units.remove %s: still listed" % name)
    check_units(soak, "after units.add + units.remove of %s" % name)
    return "%s on port %d, %d echoes" % (name, port, n)


# -- control clients ---------------------------------------------------------------

def frame(obj):
    data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return struct.pack(">I", len(data)) + data


def req(method, id_, params=None):
    r = {"jsonrpc": "2.0", "method": method, "id": id_}
    if params is not None:
        r["params"] = params
    return r


def unix(d, timeout=10.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(d.control)
    return s


def recv_frame(s, what, within=30.0):
    """The next frame as JSON; None at EOF (or a reset)."""
    deadline = time.monotonic() + within

    def exactly(n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = s.recv(n - len(buf))
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            except (socket.timeout, TimeoutError):
                if time.monotonic() < deadline:
                    continue
                raise SoakFailure("hang: the daemon did not answer %s within %.0f s" % (what, within))
            if not chunk:
                return None
            buf += chunk
        return buf
    head = exactly(4)
    if head is None:
        return None
    body = exactly(struct.unpack(">I", head)[0])
    if body is None:
        raise SoakFailure("%s: end of stream inside the daemon's reply" % what)
    return json.loads(body)


def drop(s, rng):
    """Gone: closed, or reset (SO_LINGER 0)."""
    if rng.random() < 0.5:
        traffic.reset_close(s)
    else:
        s.close()


def vanish(d, rng, n):
    """Connections that send part of a frame (length or body) and go."""
    body = json.dumps(req("units.list", 1)).encode()
    whole = frame(body)
    for _ in range(n):
        s = unix(d)
        cut = rng.randrange(0, len(whole))
        try:
            s.sendall(whole[:cut])
        except OSError:
            pass
        drop(s, rng)


def expect_error(s, payload, code, closes, what):
    s.sendall(payload)
    r = recv_frame(s, what)
    if r is None or r.get("error", {}).get("code") != code:
        raise SoakFailure("control: %s: expected error %d, got %r" % (what, code, r))
    if closes:
        if recv_frame(s, what + " (then the close)") is not None:
            raise SoakFailure("control: %s: the connection stays open" % what)
    else:
        r = recv_frame_after(s, req("daemon.status", 99), what)
        if "result" not in r:
            raise SoakFailure("control: after %s the next request got %r" % (what, r))


def recv_frame_after(s, obj, what):
    s.sendall(frame(obj))
    r = recv_frame(s, what + " (then daemon.status)")
    if r is None:
        raise SoakFailure("control: after %s the daemon closed the connection" % what)
    return r


def garbage(d, rng):
    """Bytes that are not what the protocol allows, each answered as
    CONTROL.md says (the connection closed, or kept for a recoverable one)."""
    cases = [
        ("an oversize length", struct.pack(">I", rng.randrange((1 << 20) + 1, 1 << 32)), -32005, True),
        ("a frame of length 0", struct.pack(">I", 0), -32600, True),
        ("invalid JSON", frame(bytes(rng.getrandbits(8) | 0x80 for _ in range(rng.randrange(1, 200)))), -32700,
         False),
        ("nesting 200 deep", frame(b"[" * 200 + b"]" * 200), -32600, False),
        ("an empty batch", frame(b"[]"), -32600, False),
        ("a method not found", frame(req("soak.%08x" % rng.getrandbits(32), 5)), -32601, False),
    ]
    name, payload, code, closes = rng.choice(cases)
    s = unix(d)
    with s:
        expect_error(s, payload, code, closes, name)
    return name


class Flooder:
    """Pipelined batches of requests, never read while held; at the end
    either read back (every reply, in order) or dropped."""

    def __init__(self, d, rng):
        self.s = unix(d, timeout=0.5)
        self.batches = rng.randrange(50, 400)
        self.method = rng.choice(["daemon.status", "units.list", "metrics.get"])
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._send, daemon=True)
        self.t.start()

    def _send(self):
        """Sends every batch, waiting while the daemon reads none (its
        replies are not read); ends when stopped or the socket is gone."""
        data = b"".join(frame([req(self.method, b * 64 + i) for i in range(64)]) for b in range(self.batches))
        sent = 0
        while sent < len(data) and not self.stop.is_set():
            try:
                sent += self.s.send(data[sent:sent + (1 << 16)])
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return

    def close(self, rng):
        self.stop.set()
        self.t.join(5)
        drop(self.s, rng)

    def read_back(self):
        want = 0
        for _ in range(self.batches):
            r = recv_frame(self.s, "a pipelined batch of %s" % self.method, within=60)
            if not isinstance(r, list) or [x.get("id") for x in r] != list(range(want, want + 64)):
                raise SoakFailure("control: pipelined batch %d of %s came back as %.200r"
                                  % (want // 64, self.method, r))
            if any("result" not in x for x in r):
                raise SoakFailure("control: pipelined %s: an error: %.300r" % (self.method, r))
            want += 64
        self.stop.set()
        self.t.join(5)
        self.s.close()
        return want


class Subscriber:
    """events.subscribe, then never read."""

    def __init__(self, d, rng):
        self.s = unix(d)
        params = rng.choice([None, {"recent": 256}, {"after": 0}])
        self.s.sendall(frame(req("events.subscribe", 1, params)))


@FAULTS.kind("ctl_clients", weight=3, needs=needs_daemon)
def ctl_clients(soak, rng):
    d = soak.rig.daemon
    held, floods, notes = [], [], []
    flight = InFlight(soak, rng)
    try:
        for _ in range(rng.randrange(1, HELD_MAX // 2)):
            held.append(Subscriber(d, rng).s)
        for _ in range(rng.randrange(1, HELD_MAX // 2)):
            floods.append(Flooder(d, rng))
        nheld = len(held) + len(floods)
        notes.append("%d subscribers, %d flooders" % (len(held), len(floods)))
        time.sleep(rng.uniform(0.5, 2))  # the flooders' requests pile up
        d.status_prompt("with %d control connections held unread" % nheld)
        n = rng.randrange(10, 60)
        vanish(d, rng, n)
        notes.append("%d vanished mid-frame" % n)
        kinds = [garbage(d, rng) for _ in range(rng.randrange(1, 5))]
        notes.append("garbage: " + ", ".join(kinds))
        # Events for the subscribers that never read: a unit added and removed.
        name = "ev-%08x" % rng.getrandbits(32)
        path = os.path.join(d.cfg_dir, name + ".toml")
        with open(path, "w") as f:
            f.write(relay_section(name, free_port(), soak.rig.data.port))
        try:
            for _ in range(rng.randrange(1, 4)):
                d.ctl("add", path)
                d.ctl("rm", name)
        finally:
            os.unlink(path)
        time.sleep(rng.uniform(0.5, 3))
        d.status_prompt("with %d control connections held unread, after the garbage" % nheld)
        read = 0
        for f in list(floods):
            if rng.random() < 0.5:
                floods.remove(f)
                read += f.read_back()
        notes.append("%d pipelined replies read back in order" % read)
    finally:
        for f in floods:
            f.close(rng)
        for s in held:
            drop(s, rng)
    flight.end()
    d.status_prompt("after the control clients left")
    check_units(soak, "after the control clients")
    return "; ".join(notes)
