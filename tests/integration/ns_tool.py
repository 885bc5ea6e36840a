#!/usr/bin/env python3
"""Small servers and clients that test_happy_eyeballs_netns.py and
test_tunnel_netns.py run inside network namespaces they created
(`ip netns exec NS python3 ns_tool.py ...`). Clients print one JSON line with the outcome and the time it
took, measured here so that process start-up is not counted.

  serve [--v4] [--v6]          echo server on 127.0.0.1 and/or ::1, one port;
                               prints "PORT <n>" once listening, runs until killed
  connect HOST PORT TIMEOUT    plain TCP connect
  echo HOST PORT TIMEOUT       connect, send 64 KiB, expect them echoed back
  udp-flood PORT TOKEN IP UDPPORT SECONDS
                               against `warren server --listen tcp://127.0.0.1:PORT`:
                               one raw tunnel floods DATAGRAMs on a UDP flow to
                               IP:UDPPORT while a second one measures PING round
                               trips; prints the slowest
  udp-echo                     UDP echo server on 127.0.0.1; prints "PORT <n>",
                               runs until killed
  udp-pour HOST PORT SECONDS   sends 1200-byte datagrams to HOST:PORT as fast as
                               it can, counting the ones that come back
  tcp-rtt HOST PORT SECONDS    one byte to a TCP echo server every 20 ms;
                               prints the slowest round trip
  guess HOST PORT SOURCE TOKEN against a tcp:// warren server: from SOURCE,
                               one preamble with TOKEN; prints the 3-byte answer
"""

import json
import os
import socket
import struct
import sys
import threading
import time


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def serve(args):
    hosts = []
    if "--v4" in args:
        hosts.append("127.0.0.1")
    if "--v6" in args:
        hosts.append("::1")
    if not hosts:
        sys.exit("serve: need --v4 and/or --v6")
    port = 0
    socks = []
    for h in hosts:
        s = socket.socket(family(h), socket.SOCK_STREAM)
        if family(h) == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((h, port))
        port = s.getsockname()[1]
        s.listen(128)
        socks.append(s)

    def handle(conn):
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

    def accept_loop(s):
        while True:
            conn, _ = s.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    for s in socks:
        threading.Thread(target=accept_loop, args=(s,), daemon=True).start()
    print("PORT %d" % port, flush=True)
    threading.Event().wait()


def report(result, start, **extra):
    out = {"result": result, "elapsed": time.monotonic() - start}
    out.update(extra)
    print(json.dumps(out), flush=True)


def client(mode, host, port, timeout):
    start = time.monotonic()
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        if mode == "connect":
            return report("connected", start)
        payload = os.urandom(64 * 1024)
        s.sendall(payload)
        got = bytearray()
        while len(got) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                return report("closed", start, received=len(got))
            got += chunk
        report("ok" if bytes(got) == payload else "mismatch", start, received=len(got))
    except socket.timeout:
        report("timeout", start)
    except ConnectionRefusedError:
        report("refused", start)
    except ConnectionResetError:
        report("reset", start)
    except OSError as e:
        report("error", start, error=repr(e))
    finally:
        s.close()


HELLO, OPEN, OPEN_OK, DATAGRAM, PING = 0, 1, 2, 6, 7


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">BBI", ftype, flags, stream) + len(payload).to_bytes(3, "big") + payload


def recv_exactly(s, n):
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed by the server")
        out += chunk
    return bytes(out)


def read_frame(s):
    header = recv_exactly(s, 9)
    ftype, flags, stream = struct.unpack(">BBI", header[:6])
    n = int.from_bytes(header[6:9], "big")
    return ftype, flags, stream, recv_exactly(s, n) if n else b""


def raw_tunnel(port, token):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"WARREN/1 " + token.encode() + b"\n")
    if recv_exactly(s, 3) != b"OK\n":
        raise ConnectionError("token refused")
    s.sendall(frame(HELLO, 0, 0, b"WRN\x01"))
    if read_frame(s)[0] != HELLO:
        raise ConnectionError("no HELLO")
    return s


def udp_flood(port, token, ip, udp_port, seconds):
    start = time.monotonic()
    flooder = raw_tunnel(port, token)
    target = b"\x01" + socket.inet_aton(ip) + struct.pack(">H", udp_port)
    flooder.sendall(frame(OPEN, 0, 1, b"\x02" + target))
    ftype, _, _, payload = read_frame(flooder)
    if ftype != OPEN_OK:
        return report("refused", start, frame=ftype, payload=payload.decode(errors="replace"))
    sent = [0]
    stop = threading.Event()

    def flood():
        datagram = frame(DATAGRAM, 0, 1, b"x" * 1200) * 50
        try:
            while not stop.is_set():
                flooder.sendall(datagram)
                sent[0] += len(datagram)
        except OSError:
            pass

    threading.Thread(target=flood, daemon=True).start()
    t0 = time.monotonic()
    other = raw_tunnel(port, token)
    rtts = [time.monotonic() - t0]  # the second tunnel's set-up counts as a round trip too
    while len(rtts) < 2 or time.monotonic() - start < seconds:
        t0 = time.monotonic()
        other.sendall(frame(PING, 0, 0, b"rttprobe"))
        while True:
            ftype, flags, _, payload = read_frame(other)
            if ftype == PING and flags & 1 and payload == b"rttprobe":
                break
        rtts.append(time.monotonic() - t0)
        time.sleep(0.02)
    stop.set()
    report("ok", start, max_rtt=max(rtts), pings=len(rtts), flooded=sent[0])


def udp_echo():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    print("PORT %d" % s.getsockname()[1], flush=True)
    while True:
        data, peer = s.recvfrom(65536)
        try:
            s.sendto(data, peer)
        except OSError:
            pass


def udp_pour(host, port, seconds):
    start = time.monotonic()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    s.setblocking(False)
    datagram = b"p" * 1200
    sent = received = 0
    while time.monotonic() - start < seconds:
        for _ in range(64):
            try:
                s.send(datagram)
                sent += 1
            except (BlockingIOError, ConnectionRefusedError):
                break
        while True:
            try:
                s.recv(65536)
                received += 1
            except (BlockingIOError, ConnectionRefusedError):
                break
        time.sleep(0.001)
    report("ok", start, sent=sent, received=received)


def tcp_rtt(host, port, seconds):
    start = time.monotonic()
    s = socket.create_connection((host, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtts = []
    try:
        while len(rtts) < 2 or time.monotonic() - start < seconds:
            t0 = time.monotonic()
            s.sendall(b"r")
            if s.recv(1) != b"r":
                return report("closed", start, probes=len(rtts))
            rtts.append(time.monotonic() - t0)
            time.sleep(0.02)
    except socket.timeout:
        return report("timeout", start, probes=len(rtts))
    report("ok", start, max_rtt=max(rtts), probes=len(rtts))


def guess(host, port, source, token):
    """One authentication attempt from `source` (bound before connecting)."""
    start = time.monotonic()
    s = socket.socket(family(host), socket.SOCK_STREAM)
    try:
        s.settimeout(10)
        s.bind((source, 0))
        s.connect((host, port))
        s.sendall(b"WARREN/1 " + token.encode() + b"\n")
        answer = b""
        while len(answer) < 3:
            chunk = s.recv(3 - len(answer))
            if not chunk:
                break
            answer += chunk
        print(json.dumps({"result": "ok", "answer": answer.decode(errors="replace"),
                          "seconds": time.monotonic() - start}), flush=True)
    except OSError as e:
        print(json.dumps({"result": "error", "error": repr(e)}), flush=True)
    finally:
        s.close()


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd = sys.argv[1]
    if cmd == "serve":
        serve(sys.argv[2:])
    elif cmd in ("connect", "echo") and len(sys.argv) == 5:
        client(cmd, sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif cmd == "udp-echo" and len(sys.argv) == 2:
        udp_echo()
    elif cmd == "udp-pour" and len(sys.argv) == 5:
        udp_pour(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif cmd == "tcp-rtt" and len(sys.argv) == 5:
        tcp_rtt(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif cmd == "guess" and len(sys.argv) == 6:
        guess(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif cmd == "udp-flood" and len(sys.argv) == 7:
        udp_flood(int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
