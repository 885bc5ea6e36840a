"""Traffic kinds: what local applications do to warren's -L, -D (SOCKS5) and
udp/ forwards while faults happen — transfers checked end to end by
SHA-256, and connections opened, abandoned, half-closed, reset, left idle,
or read slowly.

Each kind is `fn(soak, rng, strict)` and returns "ok" or raises:
- `Clean(reason)`: it failed the way a client may fail — a reset, a
  refusal, a SOCKS5 reply code it accepts here, UDP datagrams lost;
- `Tolerated(reason)`: a Clean that is really a known bug (TOLERABLE),
  counted as clean only when named with --tolerate;
- `SoakFailure`: a broken promise — wrong bytes, a stream that ends early
  with a plain EOF (truncation looks like success to an application), a
  reply code it must never get, or a hang (no progress for 30 s past the
  time the operation may take).
`strict` is set in the final check, when no fault is under way: then the
transfer must succeed and a refusal must carry its precise reply code.
"""

import errno
import math
import socket
import struct
import threading
import time

from registry import OPS
from rig import BLOB_SIZE, WAIT_TUNNEL, SoakFailure, sha

# "A hang is more than 30 s past the expected timeout."
HANG_GRACE = 30.0
# Slowest throughput a transfer is allowed (ASan build, 2 loaded cores).
SLOW_BYTES_PER_S = 256 << 10

SOCKS_REPLIES = {0: "succeeded", 1: "general failure", 2: "not allowed", 3: "network unreachable",
                 4: "host unreachable", 5: "connection refused", 6: "TTL expired", 7: "command not supported",
                 8: "address type not supported"}


class Clean(Exception):
    """A clean failure; the message is its kind, for the summary."""


class Tolerated(Clean):
    """A known bug's failure, counted as clean because of --tolerate."""


class Deadline:
    def __init__(self, seconds, what):
        self.end = time.monotonic() + seconds + HANG_GRACE
        self.seconds = seconds
        self.what = what

    def left(self):
        left = self.end - time.monotonic()
        if left <= 0:
            raise SoakFailure("hang: %s made no progress within %.0f s (+%.0f s grace)"
                              % (self.what, self.seconds, HANG_GRACE))
        return left


def budget(size, extra=0.0):
    return WAIT_TUNNEL + 5.0 + size / SLOW_BYTES_PER_S + extra


def io(fn, *args, dl):
    """Runs one socket call under the deadline; maps errors to their kind."""
    sock = args[0]
    try:
        sock.settimeout(dl.left())
        return getattr(sock, fn)(*args[1:])
    except (socket.timeout, TimeoutError) as e:
        if e.errno == errno.ETIMEDOUT:  # the connection's own timeout (tun.py sets them), not a hang
            raise Clean("timed out")
        dl.left()
        raise SoakFailure("hang: %s: %s() timed out" % (dl.what, fn))
    except ConnectionRefusedError:
        raise Clean("refused")
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        raise Clean("reset")
    except OSError as e:
        if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):  # ICMP unreachable, or no route (tun.py)
            raise Clean("unreachable")
        raise


class Sock(socket.socket):
    """A TCP socket that knows whether the warren process it connects to
    was held at its descriptor limit when it connected (see recv_n)."""
    squeezed = False


def connect(port, dl):
    s = Sock(socket.AF_INET, socket.SOCK_STREAM)
    try:
        io("connect", s, ("127.0.0.1", port), dl=dl)
    except BaseException:
        s.close()
        raise
    return s


# Known bugs whose failures `--tolerate NAME` counts as clean instead, to
# look past one bug for others (in an older binary, or before its fix).
TOLERABLE = {
    "plain-eof": "a stream cut by a lost tunnel or refused by its target ends with a plain EOF (FIN) "
                 "for the local application instead of a reset, so a truncated transfer looks complete "
                 "(fixed in faaf855)",
    "tun-held-upstream": "warren tun keeps the upstream connection of a TCP session whose upstream connected "
                         "but whose application never completed the handshake (a SYN flood's) for the "
                         "established idle timeout (2 h 4 min), in CLOSE-WAIT once the upstream closes it; "
                         "tolerated, the soak leaves warren tun's sockets to its upstream out of its "
                         "descriptor check (tun.py)",
}
TOLERATED = set()


def recv_n(sock, n, dl, got_before=0):
    chunks, got = [], 0
    while got < n:
        chunk = io("recv", sock, min(1 << 16, n - got), dl=dl)
        if not chunk:
            # A stream that cannot deliver what it carries must end with a
            # reset (or a refusal): a plain EOF says "that was all". Except
            # the README's refusal of a connection at the descriptor limit
            # ("closed at once"), while the soak holds that role at it.
            if got + got_before == 0 and getattr(sock, "squeezed", False):
                raise Clean("closed at once (at the descriptor limit)")
            if "plain-eof" in TOLERATED:
                raise Tolerated("plain EOF (tolerated: plain-eof)")
            raise SoakFailure("truncated: %s ended with a plain EOF (not a reset) after %d of %d bytes"
                              % (dl.what, got + got_before, n + got_before))
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def expect_eof(sock, dl):
    if io("recv", sock, 1, dl=dl):
        raise SoakFailure("%s: bytes after the end of the transfer" % dl.what)


def reset_close(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def slice_of(soak, rng, lo, hi):
    """(offset, size) of a piece of the blob; sizes log-uniform in [lo, hi]."""
    size = min(int(math.exp(rng.uniform(math.log(lo), math.log(hi)))), hi)
    off = rng.randrange(BLOB_SIZE - size + 1)
    return off, size


# -- opening a stream to the data server -------------------------------------

def socks_connect(soak, port, host, target_port, dl):
    """SOCKS5 CONNECT; returns (socket, reply code). Code 0: a stream."""
    s = connect(port, dl)
    try:
        io("sendall", s, b"\x05\x01\x00", dl=dl)
        if recv_n(s, 2, dl) != b"\x05\x00":
            raise SoakFailure("SOCKS5: unexpected method choice")
        if ":" not in host and host.replace(".", "").isdigit():
            addr = b"\x01" + socket.inet_aton(host)
        else:
            addr = b"\x03" + bytes([len(host)]) + host.encode()
        io("sendall", s, b"\x05\x01\x00" + addr + struct.pack(">H", target_port), dl=dl)
        head = recv_n(s, 4, dl)
        if head[0] != 5:
            raise SoakFailure("SOCKS5 reply version %d" % head[0])
        rest = {1: 4, 4: 16}.get(head[3])
        rest = recv_n(s, 1, dl)[0] if rest is None else rest
        recv_n(s, rest + 2, dl)
        return s, head[1]
    except BaseException:
        s.close()
        raise


def open_stream(soak, rng, path, dl):
    """A socket connected (through warren) to the data server."""
    role = {"L": "client_a", "B": "client_b"}.get(path, path)
    if "open" in soak.rig.forwards.get(role, {}):  # a path of its own (tun.py)
        return soak.rig.forwards[role]["open"](dl)
    if role in soak.rig.forwards:
        s = connect(soak.rig.forwards[role]["tcp"], dl)
        s.squeezed = role in soak.squeezed  # see recv_n
        return s
    host = rng.choice(["127.0.0.1", "localhost"])
    s, code = socks_connect(soak, soak.rig.forwards["client_a"]["socks"], host, soak.rig.data.port, dl)
    if code != 0:
        s.close()
        if code != 1:  # 1: no tunnel in time; anything else is wrong for an allowed target
            raise SoakFailure("SOCKS5 CONNECT %s:%d (allowed) got reply %d (%s)"
                              % (host, soak.rig.data.port, code, SOCKS_REPLIES.get(code)))
        raise Clean("socks general failure")
    return s


# -- transfers ----------------------------------------------------------------

def echo(soak, rng, path, lo, hi, strict):
    off, size = slice_of(soak, rng, lo, hi)
    payload = memoryview(soak.rig.blob)[off:off + size]
    dl = Deadline(budget(2 * size), "echo of %d bytes via %s" % (size, path))
    s = open_stream(soak, rng, path, dl)
    errors = []

    def send():
        try:
            s.sendall(b"E")
            for i in range(0, size, 1 << 16):
                s.sendall(payload[i:i + (1 << 16)])
            s.shutdown(socket.SHUT_WR)  # half-close: the echo ends when ours does
        except OSError as e:
            errors.append(e)

    sender = threading.Thread(target=send, daemon=True)
    with s:
        s.settimeout(dl.left())
        sender.start()
        got = recv_n(s, size, dl) if size else b""
        expect_eof(s, dl)
    sender.join(dl.left())
    if sha(got) != sha(payload):
        raise SoakFailure("corrupt: echo of %d bytes via %s came back with another SHA-256" % (size, path))
    return "ok"


def download(soak, rng, path, lo, hi, stall=0.0, rcvbuf=None):
    off, size = slice_of(soak, rng, lo, hi)
    dl = Deadline(budget(size, stall), "download of %d bytes via %s" % (size, path))
    s = open_stream(soak, rng, path, dl)
    with s:
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        io("sendall", s, b"G" + struct.pack(">QQ", off, size), dl=dl)
        first = min(size, 256 << 10) if stall else size
        got = recv_n(s, first, dl)
        if stall:
            time.sleep(stall)  # the reader stops; windows and buffers fill behind it
            got += recv_n(s, size - first, dl, got_before=first)
        expect_eof(s, dl)
    if sha(got) != sha(soak.rig.blob[off:off + size]):
        raise SoakFailure("corrupt: download of %d bytes via %s has another SHA-256" % (size, path))
    return "ok"


@OPS.kind("l_echo", weight=3)
def l_echo(soak, rng, strict):
    return echo(soak, rng, "L", 1 << 10, 2 << 20, strict)


@OPS.kind("l_download", weight=3)
def l_download(soak, rng, strict):
    return download(soak, rng, "L", 4 << 10, 4 << 20)


@OPS.kind("socks_echo", weight=3)
def socks_echo(soak, rng, strict):
    return echo(soak, rng, "D", 1 << 10, 1 << 20, strict)


def needs_low_nofile(soak):
    if soak.rig.low_nofile_warren:
        return None
    return ("the roles short of descriptors need a build without sanitizers (rig.py says why); "
            "pass --plain-warren build/release/warren")


@OPS.kind("b_echo", weight=1, needs=needs_low_nofile)
def b_echo(soak, rng, strict):
    """Through client B, the one with few descriptors."""
    return echo(soak, rng, "B", 1 << 10, 256 << 10, strict)


@OPS.kind("relay_echo", weight=1, needs=needs_low_nofile)
def relay_echo(soak, rng, strict):
    """Through relay B (plain `warren relay`, few descriptors)."""
    return echo(soak, rng, "relay_b", 1 << 10, 1 << 20, strict)


@OPS.kind("reader_stall", weight=1)
def reader_stall(soak, rng, strict):
    """A reader that stops for a while, then resumes: every byte arrives."""
    return download(soak, rng, rng.choice("LD"), 2 << 20, 6 << 20, stall=rng.uniform(2, 8), rcvbuf=32 << 10)


# -- SOCKS5 refusals ------------------------------------------------------------

def socks_refusal(soak, rng, strict, host, port, code_expected):
    dl = Deadline(budget(0), "SOCKS5 CONNECT %s:%d" % (host, port))
    s, code = socks_connect(soak, soak.rig.forwards["client_a"]["socks"], host, port, dl)
    s.close()
    allowed = {code_expected} if strict else {code_expected, 1}
    if code not in allowed:
        raise SoakFailure("SOCKS5 CONNECT %s:%d got reply %d (%s), expected %s"
                          % (host, port, code, SOCKS_REPLIES.get(code),
                             " or ".join("%d (%s)" % (c, SOCKS_REPLIES[c]) for c in sorted(allowed))))
    if code == 1:
        raise Clean("socks general failure")
    return "ok"


@OPS.kind("socks_denied", weight=1)
def socks_denied(soak, rng, strict):
    """By address, or by a name on a port no rule allows: denied without a
    lookup (so no query leaves the machine even outside the namespace)."""
    host = rng.choice(["127.0.0.1", "soak-denied-%08x.invalid" % rng.getrandbits(32)])
    return socks_refusal(soak, rng, strict, host, soak.rig.denied_port, 2)


@OPS.kind("socks_refused", weight=1)
def socks_refused(soak, rng, strict):
    return socks_refusal(soak, rng, strict, "127.0.0.1", soak.rig.closed_port, 5)


@OPS.kind("socks_unresolvable", weight=1,
          needs=lambda soak: None if soak.in_netns else
          "a lookup of *.invalid would go to the system's name server; runs only in the soak's own "
          "network namespace (as root)")
def socks_unresolvable(soak, rng, strict):
    name = "soak-%08x.invalid" % rng.getrandbits(32)
    return socks_refusal(soak, rng, strict, name, soak.rig.data.port, 4)


# -- connections that misbehave -----------------------------------------------

@OPS.kind("l_refused", weight=1)
def l_refused(soak, rng, strict):
    """-L to a target that refuses (allowed, nothing listens): the README
    promises "a reset for -L"."""
    port = soak.rig.closed_port
    dl = Deadline(budget(0), "-L to a refused target")
    try:
        # The reset may come before connect() has looked at the socket (the
        # refusal takes one tunnel round trip; a slow, sanitized box can take
        # longer to wake this thread): then connect() reports it.
        s = connect(soak.rig.forwards["client_a"]["refused"], dl)
    except Clean as e:
        if str(e) == "reset":
            return "ok"
        raise
    with s:
        try:
            io("sendall", s, b"hello", dl=dl)
            data = io("recv", s, 1, dl=dl)
        except Clean as e:
            if str(e) == "reset":
                return "ok"
            raise
    if data:
        raise SoakFailure("-L to a refused target (127.0.0.1:%d): data came back" % port)
    if "plain-eof" in TOLERATED:
        raise Tolerated("plain EOF (tolerated: plain-eof)")
    raise SoakFailure("-L to a refused target (127.0.0.1:%d) ended with a plain EOF, not a reset" % port)


@OPS.kind("target_reset", weight=1)
def target_reset(soak, rng, strict):
    """The target sends a response, then resets: what arrives is a prefix of
    the response, and the stream ends with a reset ("a reset on one side
    resets the other"), never a plain EOF that makes it look complete."""
    path = rng.choice(["L", "D", "relay_b"] if soak.rig.low_nofile_warren else ["L", "D"])
    off, size = slice_of(soak, rng, 1 << 10, 1 << 20)
    dl = Deadline(budget(size), "response of %d bytes then a reset, via %s" % (size, path))
    s = open_stream(soak, rng, path, dl)
    got = []
    with s:
        io("sendall", s, b"R" + struct.pack(">QQ", off, size), dl=dl)
        try:
            while True:
                chunk = io("recv", s, 1 << 16, dl=dl)
                if not chunk:
                    break
                got.append(chunk)
        except Clean as e:
            if str(e) != "reset":
                raise
            outcome = "ok"
        else:
            outcome = None
    got = b"".join(got)
    if got != soak.rig.blob[off:off + len(got)]:
        raise SoakFailure("corrupt: the %d bytes before a target's reset via %s are not the response's start"
                          % (len(got), path))
    if outcome:
        return outcome
    if not got and s.squeezed:
        raise Clean("closed at once (at the descriptor limit)")
    if "plain-eof" in TOLERATED and path != "relay_b":
        raise Tolerated("plain EOF (tolerated: plain-eof)")
    raise SoakFailure("a target's reset via %s reached the application as a plain EOF after %d of %d bytes"
                      % (path, len(got), size))


@OPS.kind("abandon", weight=2)
def abandon(soak, rng, strict):
    """Opened, maybe a request sent, closed without reading an answer."""
    path = rng.choice("LD")
    dl = Deadline(budget(0), "abandoned connection via %s" % path)
    port = soak.rig.forwards["client_a"]["tcp" if path == "L" else "socks"]
    s = connect(port, dl)
    with s:
        how = rng.randrange(3)
        if how == 1:
            io("sendall", s, b"\x05\x01\x00" if path == "D" else b"G" + struct.pack(">QQ", 0, 1 << 20), dl=dl)
        elif how == 2:
            time.sleep(rng.uniform(0, 1))
    return "ok"


@OPS.kind("reset", weight=2)
def reset(soak, rng, strict):
    """A transfer cut with a TCP reset (SO_LINGER 0) part way."""
    path = rng.choice("LD")
    dl = Deadline(budget(1 << 20), "reset transfer via %s" % path)
    s = open_stream(soak, rng, path, dl)
    try:
        io("sendall", s, b"G" + struct.pack(">QQ", 0, 4 << 20), dl=dl)
        recv_n(s, rng.randrange(1, 256 << 10), dl)
    finally:
        reset_close(s)
    return "ok"


@OPS.kind("half_close", weight=1)
def half_close(soak, rng, strict):
    """Shut down for writing before sending anything: the EOF goes through,
    the data server closes, and the EOF comes back."""
    path = rng.choice("LD")
    dl = Deadline(budget(0), "half-close via %s" % path)
    s = open_stream(soak, rng, path, dl)
    with s:
        s.shutdown(socket.SHUT_WR)
        if io("recv", s, 1, dl=dl):
            raise SoakFailure("half-close via %s: data instead of EOF" % path)
    return "ok"


@OPS.kind("idle", weight=1)
def idle(soak, rng, strict):
    """An echo stream left idle for a while. Ended by a fault it may be, but
    if no fault was injected meanwhile it must still work."""
    path = rng.choice("LD")
    dl = Deadline(budget(1 << 16), "idle stream via %s" % path)
    s = open_stream(soak, rng, path, dl)
    with s:
        io("sendall", s, b"Eping", dl=dl)
        if recv_n(s, 4, dl) != b"ping":
            raise SoakFailure("corrupt: idle stream's first echo")
        epoch = soak.fault_epoch()
        time.sleep(rng.uniform(3, 15) if not strict else 1)
        data = soak.rig.blob[:rng.randrange(1, 1 << 16)]
        dl = Deadline(budget(len(data)), "idle stream via %s, after the pause" % path)
        try:
            io("sendall", s, data, dl=dl)
            got = recv_n(s, len(data), dl)
        except Clean as e:
            if soak.fault_epoch() == epoch and epoch[1] == 0:
                raise SoakFailure("an idle stream via %s died (%s) though no fault was injected" % (path, e))
            raise
        if got != data:
            raise SoakFailure("corrupt: idle stream's echo after the pause")
    return "ok"


@OPS.kind("udp_burst", weight=2)
def udp_burst(soak, rng, strict):
    """A burst of datagrams through the udp/ forward to the UDP echo: each
    one that comes back is intact; losing some is allowed except in the
    final check (quiet loopback)."""
    port = soak.rig.forwards["client_a"]["udp"]
    n = rng.randrange(5, 60)
    sent = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", port))
        for i in range(n):
            size = rng.randrange(1, 1400)
            off = rng.randrange(BLOB_SIZE - size)
            d = struct.pack(">I", i) + soak.rig.blob[off:off + size]
            sent[i] = d
            try:
                s.send(d)
            except ConnectionRefusedError:  # ICMP port unreachable: nothing listens on the forward
                raise SoakFailure("udp: the client's udp/ forward port %d is not listening" % port)
        got = set()
        end = time.monotonic() + WAIT_TUNNEL + 3
        while len(got) < n and time.monotonic() < end:
            s.settimeout(max(end - time.monotonic(), 0.01))
            try:
                d = s.recv(65536)
            except (socket.timeout, TimeoutError):
                break
            except ConnectionRefusedError:
                continue  # ICMP from an earlier flow's end; not this burst's data
            i = struct.unpack(">I", d[:4])[0] if len(d) >= 4 else -1
            if sent.get(i) != d:
                raise SoakFailure("corrupt: a datagram came back that was not sent as such (%d bytes)" % len(d))
            got.add(i)
    if len(got) < n:
        if strict:
            raise SoakFailure("udp: %d of %d datagrams came back with the tunnel up and no fault" % (len(got), n))
        raise Clean("udp datagrams lost")
    return "ok"
