"""The soak's end-of-run checks over every warren process it started:
crash markers in stderr, log lines that repeat without a bound, descriptors
and memory back to their baselines. Each returns a list of failure texts
(empty: passed).
"""

import re
import time

CRASH_MARKERS = (
    "AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:", "SEGV",
    "stack-overflow", "terminate called", "Segmentation fault", "core dumped", "Assertion `",
)

# No log line may repeat more than FLOOD_LINES times in FLOOD_WINDOW seconds.
# The README promises that what a peer does is logged rate-limited, and the
# server's budgets (server.hpp) are at most 64 lines per 10 s (failed
# handshakes; refusals 10, accept failures and turned-away connections 3).
# The soak paces its own traffic so one kind of local connection makes well
# under 64 lines in 10 s, so more than that is a line with no bound.
FLOOD_LINES = 64
FLOOD_WINDOW = 10.0
# RSS may end at most this far above its baseline (ASan quarantine off).
RSS_SLACK_KIB = 32 << 10

# Where a sanitizer's report starts (rig.WarrenProc.report shows it).
REPORT_STARTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "terminate called")

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\s+")
_NORMALIZE = (
    (re.compile(r"\[[0-9A-Fa-f:.%]*\]"), "<addr>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b"), "<addr>"),
    (re.compile(r"sha256:[0-9A-Fa-f:]+"), "<fp>"),
    (re.compile(r"\b[0-9a-f]{8,}\b"), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
)


def is_log_line(line):
    return bool(_TIMESTAMP.match(line))


def normalize(line):
    line = _TIMESTAMP.sub("", line)
    for rx, repl in _NORMALIZE:
        line = rx.sub(repl, line)
    return line


def crash_markers(procs):
    out = []
    for p in procs:
        for _, line in p.lines:
            if any(m in line for m in CRASH_MARKERS):
                out.append("%s (pid %d) reported a crash:\n%s" % (p.role, p.pid, p.report()))
                break
    return out


def log_floods(procs):
    """Reads what WarrenProc found as its lines arrived (rig.py)."""
    out = []
    for p in procs:
        if p.flood is not None:
            out.append("%s (pid %d): log flood: more than %d lines like %r within %.0f s (%d lines in all)"
                       % (p.role, p.pid, FLOOD_LINES, p.flood, FLOOD_WINDOW, p.line_count))
    return out


def resources_settle(procs_by_role, baselines, settle, extra_slack=None):
    """Waits up to `settle` seconds for each role's descriptor count to be
    back at (or below) its baseline; then compares RSS (RSS_SLACK_KIB, plus
    `extra_slack[role]` KiB for a role whose documented peak is larger)."""
    out = []
    deadline = time.monotonic() + settle
    for role, base in baselines.items():
        p = procs_by_role[role]
        while True:
            fds = p.fd_count()
            if fds <= base["fds"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if fds > base["fds"]:
            out.append("%s (pid %d): %d descriptors %.0f s after the load, baseline %d; now:\n  %s\nat baseline:\n  %s"
                       % (role, p.pid, fds, settle, base["fds"], "\n  ".join(p.fds()), "\n  ".join(base["list"])))
        rss = p.rss_kib()
        slack = RSS_SLACK_KIB + (extra_slack or {}).get(role, 0)
        if rss > base["rss"] + slack:
            out.append("%s (pid %d): VmRSS %d KiB after the load, baseline %d KiB (+%d allowed)"
                       % (role, p.pid, rss, base["rss"], slack))
        base["end_fds"], base["end_rss"] = fds, rss
    return out


def baseline(p):
    return {"fds": p.fd_count(), "list": p.fds(), "rss": p.rss_kib(), "pid": p.pid}


def daemon_units(d, why):
    """The daemon's checked units (daemon.py) after a daemon fault and at the
    end: each running, never restarted (the `since` it had when the daemon
    was ready), the client unit's tunnel never redialled (reconnects as when
    it first came up), and
    no unit but those and the config's throwaway one (API-added ones removed)."""
    try:
        units = d.units_list()
    except AssertionError as e:  # rig.SoakFailure
        return ["daemon %s: %s" % (why, e)]
    out = []
    for name in d.checked:
        u = units.get(name)
        if not u:
            out.append("daemon %s: the checked unit %s is gone: %s" % (why, name, sorted(units)))
            continue
        if u["state"] != "running" or u["since"] != d.since[name]:
            out.append("daemon %s: the checked unit %s was touched: state %s since %s (was running since %s); "
                       "last error %r" % (why, name, u["state"], u["since"], d.since[name], u.get("last_error")))
    client = units.get("d-client")
    if client and client["counters"]["reconnects"] != d.reconnects:
        out.append("daemon %s: the checked client unit redialled its tunnel %d times (last error %r)"
                   % (why, client["counters"]["reconnects"] - d.reconnects, client.get("last_error")))
    extra = set(units) - set(d.checked) - ({"churn"} if d.churn else set())
    if extra:
        out.append("daemon %s: units left over: %s" % (why, ", ".join(sorted(extra))))
    return out
