#!/usr/bin/env python3
"""Chaos soak: real `warren server`, `warren client` and `warren relay`
processes under traffic while faults are injected at random — the server
SIGKILLed (or SIGTERMed) and restarted, the relay in the tunnel's path
killed, the server down when a client starts, a client short of
descriptors, a server frozen — and a `warren daemon` reloaded, given
units and flooded by control clients while its units carry transfers
(daemon.py), and, as root, a `warren tun` in a namespace of its own whose
SOCKS5 upstream restarts while it is killed, flooded and fed malformed
packets under checked transfers (tun.py) — with a seed printed at start (`--seed N`
replays the same choices; thread timing still varies).

Checked: no warren process ends on its own or by a signal, none reports a
crash or sanitizer error, every SIGTERM at the end gives status 0; every
transfer that completes has the right SHA-256 and every one that fails
fails cleanly (reset, refusal, SOCKS5 reply code), never hangs (30 s past
its time); descriptors return to their baselines and RSS to within 32 MiB;
no log line repeats without a bound. See traffic.py, faults.py, checks.py.

As root the whole soak runs in a network namespace of its own (only `lo`),
which also lets it look up `*.invalid` names without any query leaving the
machine. Otherwise it runs on the host's loopback and skips that kind.

    python3 tests/soak/soak.py --warren build/asan/warren --seconds 180 [--seed N]
"""

import argparse
import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import faults  # noqa: E402,F401  (registers the fault kinds)
import daemon  # noqa: E402  (the daemon, its traffic and fault kinds; after faults: see Soak.chaos)
import tun  # noqa: E402  (warren tun, its traffic and fault kinds; likewise)
import traffic  # noqa: E402
from registry import FAULTS, OPS, pick  # noqa: E402
from rig import LOW_NOFILE, Rig, SoakFailure  # noqa: E402

NETNS_ENV = "WARREN_SOAK_IN_NETNS"
WORKERS = 3


def log(msg):
    print("soak: [%7.1f] %s" % (time.monotonic() - T0, msg), flush=True)


T0 = time.monotonic()


class Soak:
    def __init__(self, args, rig, in_netns):
        self.args = args
        self.rig = rig
        self.in_netns = in_netns
        self.stats = collections.Counter()
        self.failures = []
        self.flood_reported = set()  # pids whose log flood the monitor reported
        self.squeezed = set()  # roles a fault holds at their descriptor limit
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self._faults_started = 0
        self._faults_active = 0
        self.ops = []
        self.faults = []

    # -- shared state for kinds ------------------------------------------------

    def fault_epoch(self):
        with self.lock:
            return self._faults_started, self._faults_active

    def fail(self, text):
        with self.lock:
            self.failures.append(text)
        log("FAILURE: " + text.split("\n")[0])
        self.stop.set()

    def count(self, what, outcome):
        with self.lock:
            self.stats[(what, outcome)] += 1

    def roles(self):
        return [r for r in ("server", "relay", "client_a", "client_b", "relay_b", "daemon", "tun")
                if r in self.rig.procs]

    def clients(self):
        return [r for r in ("client_a", "client_b") if r in self.rig.procs]

    def client_marks(self, roles):
        return {r: self.rig.procs[r].mark() for r in roles}

    def expect_alive(self, p):
        if not p.alive():
            raise SoakFailure(self.ended_text(p))

    @staticmethod
    def ended_text(p):
        return "%s (pid %d) ended on its own (%s); stderr:\n%s" % (p.role, p.pid, p.status(), p.report())

    def run_op(self, name, rng, strict=False, probe=False):
        """Runs one traffic kind; returns its outcome, counted. A clean
        failure in strict mode (no fault, tunnel up) is a failure."""
        kind = OPS.kinds[name]
        what = ("probe " if probe else "") + name
        try:
            outcome = kind.fn(self, rng, strict)
        except traffic.Clean as e:
            if strict and not isinstance(e, traffic.Tolerated):
                raise SoakFailure("%s failed (%s) with the tunnels up and no fault under way" % (name, e))
            outcome = "clean: %s" % e
        self.count(what, outcome)
        return outcome

    # -- threads -----------------------------------------------------------------

    def worker(self, index, deadline):
        rng = random.Random("%d/worker/%d" % (self.args.seed, index))
        while not self.stop.is_set() and time.monotonic() < deadline:
            kind = pick(rng, self.ops)
            try:
                self.run_op(kind.name, rng)
            except SoakFailure as e:
                self.fail("%s: %s" % (kind.name, e))
            except Exception:
                self.fail("%s: the soak itself failed:\n%s" % (kind.name, traceback.format_exc()))
            self.stop.wait(rng.uniform(0.1, 0.6))  # pacing: see checks.FLOOD_LINES

    def chaos(self, deadline):
        rng = random.Random("%d/faults" % self.args.seed)
        # Every kind once first, then at random. The daemon's and the TUN's
        # kinds (added later) are shuffled from streams of their own and
        # interleaved from the second fault on, so a seed's first faults stay
        # what they were (CTest's seed 12: a server SIGKILL first).
        order = [k for k in self.faults if k.fn.__module__ not in ("daemon", "tun")]
        rng.shuffle(order)
        for module, first in (("daemon", 1), ("tun", 2)):
            later = [k for k in self.faults if k.fn.__module__ == module]
            random.Random("%d/faults/%s" % (self.args.seed, module)).shuffle(later)
            for i, k in enumerate(later):
                order.insert(min(first + 2 * i, len(order)), k)
        n = 0
        while not self.stop.wait(rng.uniform(2, 6)) and time.monotonic() < deadline:
            kind = order[n] if n < len(order) else pick(rng, self.faults)
            n += 1
            with self.lock:
                self._faults_started += 1
                self._faults_active += 1
            log("fault %d: %s ..." % (n, kind.name))
            try:
                note = kind.fn(self, rng)
                self.count("fault " + kind.name, "injected")
                log("fault %d: %s: %s" % (n, kind.name, note))
            except SoakFailure as e:
                self.fail("fault %s: %s" % (kind.name, e))
            except Exception:
                self.fail("fault %s: the soak itself failed:\n%s" % (kind.name, traceback.format_exc()))
            finally:
                with self.lock:
                    self._faults_active -= 1

    def monitor(self):
        """A warren process that ends while nobody stopped it has crashed."""
        reported = set()
        while not self.stop.wait(0.5):
            with self.rig.lock:
                procs = list(self.rig.all_procs)
            for p in procs:
                if p.pid not in reported and not p.expect_exit and p.proc.poll() is not None:
                    reported.add(p.pid)
                    time.sleep(0.5)  # let its last stderr lines arrive
                    self.fail(self.ended_text(p))
                if p.flood is not None and p.pid not in self.flood_reported:
                    self.flood_reported.add(p.pid)
                    self.fail(checks.log_floods([p])[0])

    # -- phases ------------------------------------------------------------------

    def warm_up(self, rng):
        for name in [k.name for k in self.ops]:
            self.run_op(name, rng, strict=True)

    def final_check(self, rng):
        """Every traffic kind once more, strictly, with no fault under way."""
        for role in self.roles():
            self.expect_alive(self.rig.procs[role])
        self.warm_up(rng)

    def shutdown(self):
        """SIGTERM: clients first, then relay and server; each must exit 0."""
        for role in reversed(self.roles()):
            p = self.rig.procs[role]
            if not p.alive():
                continue
            code = p.terminate(60)
            if code != 0:
                self.failures.append("%s (pid %d) on SIGTERM: exit status %s, expected 0; stderr tail:\n%s"
                                     % (role, p.pid, code, p.report()))

    def summary(self):
        log("summary (seed %d):" % self.args.seed)
        by_what = collections.defaultdict(dict)
        for (what, outcome), n in sorted(self.stats.items()):
            by_what[what][outcome] = n
        faults_ = {w: o for w, o in by_what.items() if w.startswith("fault ")}
        ops = {w: o for w, o in by_what.items() if not w.startswith("fault ")}
        print("  faults injected:", flush=True)
        for what, o in sorted(faults_.items()):
            print("    %-34s %d" % (what[6:], sum(o.values())), flush=True)
        print("  traffic (ok / failed cleanly):", flush=True)
        tot_ok = tot_clean = 0
        for what, o in sorted(ops.items()):
            ok = o.get("ok", 0)
            clean = {k[7:]: v for k, v in o.items() if k.startswith("clean: ")}
            tot_ok += ok
            tot_clean += sum(clean.values())
            detail = ", ".join("%s %d" % kv for kv in sorted(clean.items()))
            print("    %-34s %5d ok  %5d clean%s" % (what, ok, sum(clean.values()), "  (" + detail + ")" if detail
                                                      else ""), flush=True)
        print("  total: %d ok, %d failed cleanly; %d warren processes" % (tot_ok, tot_clean, len(self.rig.all_procs)),
              flush=True)
        tolerated = sum(n for (_, outcome), n in self.stats.items() if "(tolerated: " in outcome)
        for name in sorted(traffic.TOLERATED):
            print("  KNOWN BUG %s tolerated %d times: %s" % (name, tolerated, traffic.TOLERABLE[name]), flush=True)


def reexec_in_netns(args):
    """As root: run the soak again inside a new network namespace (only lo),
    removed by the kernel when the soak's processes are gone."""
    if os.environ.get(NETNS_ENV) or args.no_netns or os.geteuid() != 0:
        return
    if not shutil.which("unshare") or not shutil.which("ip"):
        return
    env = dict(os.environ, **{NETNS_ENV: "1"})
    os.execvpe("unshare", ["unshare", "--net", "--", sys.executable] + sys.argv, env)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warren", default=os.environ.get("WARREN", ""), help="path of the warren binary")
    ap.add_argument("--plain-warren", help="a build without sanitizers, for the processes started short of "
                    "descriptors (needed when --warren is an ASan/UBSan build; else they are left out)")
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 180)),
                    help="how long faults and traffic run (default $SOAK_SECONDS or 180)")
    ap.add_argument("--seed", type=int, default=None, help="replay a run's random choices")
    ap.add_argument("--faults", help="comma-separated fault kinds to run (default: all)")
    ap.add_argument("--no-faults", default="", help="comma-separated fault kinds to leave out")
    ap.add_argument("--ops", help="comma-separated traffic kinds to run (default: all)")
    ap.add_argument("--tolerate", default="", help="comma-separated known bugs counted as clean failures "
                    "(traffic.TOLERABLE: %s)" % ", ".join(traffic.TOLERABLE))
    ap.add_argument("--no-daemon", action="store_true", help="leave out the daemon and its kinds (daemon.py)")
    ap.add_argument("--no-tun", action="store_true", help="leave out warren tun and its kinds (tun.py)")
    ap.add_argument("--list", action="store_true", help="list the fault and traffic kinds and exit")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs) even on success")
    ap.add_argument("--no-netns", action="store_true", help="run on the host's loopback even as root")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "big")
    return args


def main():
    args = parse_args()
    if args.list:
        for reg in (FAULTS, OPS):
            print("%s kinds: %s" % (reg.what, ", ".join(reg.kinds)))
        return 0
    if not args.warren or not os.access(args.warren, os.X_OK):
        print("error: warren binary not found; pass --warren PATH", file=sys.stderr)
        return 2
    args.warren = os.path.abspath(args.warren)
    for name in [x for x in args.tolerate.split(",") if x]:
        if name not in traffic.TOLERABLE:
            print("error: --tolerate %s: no such known bug (%s)" % (name, ", ".join(traffic.TOLERABLE)),
                  file=sys.stderr)
            return 2
        traffic.TOLERATED.add(name)
    if args.plain_warren:
        args.plain_warren = os.path.abspath(args.plain_warren)
    reexec_in_netns(args)
    in_netns = bool(os.environ.get(NETNS_ENV))
    if in_netns:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    log("seed %d (replay: --seed %d); %.0f s of faults; %s" % (
        args.seed, args.seed, args.seconds,
        "in a network namespace of its own" if in_netns else "on the host's loopback"))
    for name in sorted(traffic.TOLERATED):
        log("tolerating known bug %s: %s" % (name, traffic.TOLERABLE[name]))
    workdir = tempfile.mkdtemp(prefix="warren-soak-")
    rig = None
    soak = None
    ok = False
    try:
        rig = Rig(args.warren, workdir, args.seed, in_netns, args.plain_warren)
        soak = Soak(args, rig, in_netns)
        split = lambda s: [x for x in s.split(",") if x] if s else None  # noqa: E731
        soak.faults, skipped_f = FAULTS.select(soak, split(args.faults), split(args.no_faults) or ())
        soak.ops, skipped_o = OPS.select(soak, split(args.ops))
        by_reason = collections.defaultdict(list)  # one line per reason (tun.py's kinds share one)
        for name, why in list(skipped_f.items()) + list(skipped_o.items()):
            by_reason[why].append(name)
        for why, names in by_reason.items():
            log("skipping %s: %s" % (", ".join(names), why))
        rig.start_all()
        if not args.no_daemon:
            daemon.start_daemon(soak)
        tun.start(soak)
        log("started: " + ", ".join("%s pid %d" % (r, rig.procs[r].pid) for r in soak.roles())
            + (" (client_b and relay_b: %s, RLIMIT_NOFILE %d)" % (rig.low_nofile_warren, LOW_NOFILE)
               if rig.low_nofile_warren else ""))
        rng = random.Random("%d/main" % args.seed)
        monitor = threading.Thread(target=soak.monitor, daemon=True)
        monitor.start()
        soak.warm_up(rng)
        time.sleep(7)  # UDP flows of the warm-up expire (--udp-idle-timeout 5s)
        baselines = {role: checks.baseline(rig.procs[role]) for role in soak.roles()}
        log("baselines: " + ", ".join("%s %d fds %d KiB" % (r, b["fds"], b["rss"]) for r, b in baselines.items()))

        deadline = time.monotonic() + args.seconds
        threads = [threading.Thread(target=soak.chaos, args=(deadline,), daemon=True)]
        threads += [threading.Thread(target=soak.worker, args=(i, deadline), daemon=True) for i in range(WORKERS)]
        for t in threads:
            t.start()
        for t in threads:
            # Every wait inside has its own bound; this one only stops a runaway.
            t.join(args.seconds + 600)
            if t.is_alive():
                soak.fail("a soak thread did not finish 600 s after the end (a hang the soak did not bound)")
        if not soak.failures:
            log("load over; final check (every traffic kind, strictly)")
            daemon.restore(soak)
            soak.final_check(rng)
            time.sleep(1)
            if "tun" in baselines:  # its UDP flows idle out in 60 s: a settle time of its own
                soak.failures += tun.resources(soak, baselines["tun"])
            soak.failures += checks.resources_settle(rig.procs, {r: b for r, b in baselines.items() if r != "tun"},
                                                     settle=30,
                                                     extra_slack={"daemon": daemon.RSS_EXTRA_KIB})
            if "daemon" in rig.procs:
                try:
                    rig.daemon.status_prompt("at the end")
                except SoakFailure as e:
                    soak.failures.append(str(e))
                soak.failures += checks.daemon_units(rig.daemon, "at the end")
            log("at the end: " + ", ".join("%s %d fds %d KiB" % (r, b["end_fds"], b["end_rss"])
                                            for r, b in baselines.items() if "end_fds" in b))
        soak.stop.set()
        if not soak.failures:
            soak.shutdown()
            soak.failures += tun.end(soak)
        ok = not soak.failures
    except SoakFailure as e:
        if soak:
            soak.fail(str(e))
        else:
            raise
    finally:
        if soak:
            soak.stop.set()
            # Ended on its own, and not reported yet (the monitor may have
            # been stopped by an earlier failure first).
            for p in list(rig.all_procs) if rig else []:
                if not p.expect_exit and not p.alive():
                    text = soak.ended_text(p)
                    if not any(f.startswith(text.split(";")[0]) for f in soak.failures):
                        soak.failures.append(text)
        if rig:
            rig.close()
            tun.close(rig)
    procs = rig.all_procs
    soak.failures += checks.crash_markers(procs)
    soak.failures += checks.log_floods([p for p in procs if p.pid not in soak.flood_reported])
    ok = not soak.failures
    logs = os.path.join(workdir, "logs")
    os.makedirs(logs, exist_ok=True)
    for p in procs:
        with open(os.path.join(logs, "%s-%d.log" % (p.role, p.pid)), "w") as f:
            f.write(" ".join(p.argv) + "\n" + p.text() + "\n")
    soak.summary()
    if ok:
        log("PASS (seed %d)" % args.seed)
        if not args.keep:
            shutil.rmtree(workdir, True)
        return 0
    for i, text in enumerate(dict.fromkeys(soak.failures)):
        print("\nsoak: failure %d:\n%s" % (i + 1, text), flush=True)
    log("FAIL (seed %d; replay: --seed %d); warren logs in %s" % (args.seed, args.seed, logs))
    return 1


if __name__ == "__main__":
    sys.exit(main())
