#!/usr/bin/env python3
"""Servers and clients that test_tun.py and bench/tun_bench.sh run inside
the network namespaces they created (`ip netns exec NS python3 tun_tool.py
...`). Servers print "READY" once bound and run until killed; clients print
one JSON line with the outcome, timed here so process start-up is not
counted. Stdlib only. (ns_tool.py has the single-connection clients:
`connect`, `echo`.)

  http-serve DIR PORT ADDR...     http.server for DIR on each ADDR (v4 or v6)
  echo-serve PORT ADDR...         asyncio TCP echo, backlog 4096, each ADDR
  udp-echo-serve PORT ADDR...     UDP echo on each ADDR
  many HOST PORT N SIZE TIMEOUT   N TCP connections at once: all connected
                                  first, then SIZE random bytes each way,
                                  checked; counts outcomes by kind
  udp-probe HOST PORT COUNT TIMEOUT
                                  COUNT datagrams (each from its own socket,
                                  so each is a flow) to a UDP echo; counts
                                  the echoes that came back intact
  socks-udp-dns PROXY PPORT DNS NAME QTYPE
                                  a DNS query through a SOCKS5 proxy's UDP
                                  ASSOCIATE (RFC 1928 section 7); prints the
                                  answers, or the proxy's refusal
  wait-port HOST PORT TIMEOUT     until a TCP connect succeeds
  bulk-serve PORT ADDR...         per connection, the first byte says: "u"
                                  read and discard to EOF, "d" send until the
                                  peer goes
  bulk HOST PORT up|down STREAMS SECONDS [PROXY PPORT]
                                  STREAMS connections (through a SOCKS5
                                  CONNECT when PROXY is given) moving data one
                                  way for SECONDS; prints bits per second
"""

import asyncio
import functools
import http.server
import json
import os
import resource
import socket
import struct
import sys
import threading
import time


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def report(result, start, **extra):
    out = {"result": result, "elapsed": round(time.monotonic() - start, 3)}
    out.update(extra)
    print(json.dumps(out), flush=True)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def http_serve(root, port, addrs):
    class V6Server(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6

    handler = functools.partial(QuietHandler, directory=root)
    for a in addrs:
        cls = V6Server if family(a) == socket.AF_INET6 else http.server.ThreadingHTTPServer
        httpd = cls((a, port), handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print("READY", flush=True)
    threading.Event().wait()


async def echo_serve(port, addrs):
    raise_nofile()

    async def handle(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    servers = [await asyncio.start_server(handle, a, port, backlog=4096) for a in addrs]
    print("READY", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def udp_echo_serve(port, addrs):
    def loop(s):
        while True:
            data, peer = s.recvfrom(65536)
            try:
                s.sendto(data, peer)
            except OSError:
                pass

    for a in addrs:
        s = socket.socket(family(a), socket.SOCK_DGRAM)
        s.bind((a, port))
        threading.Thread(target=loop, args=(s,), daemon=True).start()
    print("READY", flush=True)
    threading.Event().wait()


def kind_of(e):
    if isinstance(e, asyncio.TimeoutError):
        return "timeout"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, ConnectionResetError):
        return "reset"
    if isinstance(e, asyncio.IncompleteReadError):
        return "closed"
    if isinstance(e, OSError):
        return "errno %s" % e.errno
    return type(e).__name__


async def many(host, port, n, size, timeout):
    """All N connected before any data moves, so N sessions are open at once."""
    raise_nofile()
    start = time.monotonic()
    deadline = start + timeout
    outcome = {}
    conns = [None] * n

    async def connect(i):
        try:
            conns[i] = await asyncio.wait_for(asyncio.open_connection(host, port), deadline - time.monotonic())
        except Exception as e:  # noqa: BLE001 -- counted by kind
            outcome[kind_of(e)] = outcome.get(kind_of(e), 0) + 1

    await asyncio.gather(*(connect(i) for i in range(n)))
    connected = sum(1 for c in conns if c)
    all_open = time.monotonic() - start

    async def exchange(i):
        reader, writer = conns[i]
        payload = os.urandom(size)
        try:
            writer.write(payload)
            await writer.drain()
            got = await asyncio.wait_for(reader.readexactly(size), max(0.1, deadline - time.monotonic()))
            kind = "ok" if got == payload else "mismatch"
        except Exception as e:  # noqa: BLE001 -- counted by kind
            kind = kind_of(e)
        finally:
            writer.close()
        outcome[kind] = outcome.get(kind, 0) + 1

    await asyncio.gather(*(exchange(i) for i in range(n) if conns[i]))
    report("ok" if outcome.get("ok", 0) == n else "failed", start, connected=connected, outcome=outcome,
           all_open_after=round(all_open, 3))


def udp_probe(host, port, count, timeout):
    start = time.monotonic()
    socks = []
    payloads = []
    for i in range(count):
        s = socket.socket(family(host), socket.SOCK_DGRAM)
        s.connect((host, port))
        p = os.urandom(64)
        s.send(p)
        socks.append(s)
        payloads.append(p)
    echoed = errors = 0
    deadline = start + timeout
    for s, p in zip(socks, payloads):
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if s.recv(65536) == p:
                echoed += 1
        except socket.timeout:
            pass
        except OSError:
            errors += 1
    report("ok", start, sent=count, echoed=echoed, errors=errors)


def dns_query(name, qtype):
    qid = int.from_bytes(os.urandom(2), "big")
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack(">HH", {"A": 1, "AAAA": 28}[qtype], 1)
    return qid, q


def dns_answers(reply, qid):
    rid, flags, qd, an = struct.unpack(">HHHH", reply[:8])
    if rid != qid:
        raise ValueError("answer id %d, query id %d" % (rid, qid))
    pos = 12
    for _ in range(qd):
        while reply[pos]:
            pos += reply[pos] + 1
        pos += 5
    out = []
    for _ in range(an):
        if reply[pos] & 0xC0 == 0xC0:
            pos += 2
        else:
            while reply[pos]:
                pos += reply[pos] + 1
            pos += 1
        rtype, _, _, rdlen = struct.unpack(">HHIH", reply[pos:pos + 10])
        pos += 10
        rdata = reply[pos:pos + rdlen]
        pos += rdlen
        if rtype == 1:
            out.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == 28:
            out.append(socket.inet_ntop(socket.AF_INET6, rdata))
    return out


def socks_addr(host, port):
    if ":" in host:
        return b"\x04" + socket.inet_pton(socket.AF_INET6, host) + struct.pack(">H", port)
    return b"\x01" + socket.inet_aton(host) + struct.pack(">H", port)


def recv_exactly(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed by the proxy")
        out += chunk
    return out


def socks_udp_dns(proxy, pport, dns, name, qtype):
    start = time.monotonic()
    ctl = socket.create_connection((proxy, pport), timeout=5)
    ctl.sendall(b"\x05\x01\x00")
    if recv_exactly(ctl, 2) != b"\x05\x00":
        return report("no-auth-refused", start)
    udp = socket.socket(family(proxy), socket.SOCK_DGRAM)
    udp.bind((ctl.getsockname()[0], 0))
    ctl.sendall(b"\x05\x03\x00" + socks_addr(*udp.getsockname()[:2]))
    try:
        head = recv_exactly(ctl, 4)
    except (ConnectionError, OSError) as e:
        return report("refused", start, error=repr(e))
    if head[1] != 0:
        return report("refused", start, reply=head[1])
    alen = {1: 4, 4: 16}[head[3]]
    rest = recv_exactly(ctl, alen + 2)
    relay_host = socket.inet_ntop(socket.AF_INET if alen == 4 else socket.AF_INET6, rest[:alen])
    relay_port = struct.unpack(">H", rest[alen:])[0]
    if relay_host in ("0.0.0.0", "::"):
        relay_host = proxy
    qid, q = dns_query(name, qtype)
    udp.settimeout(3)
    udp.sendto(b"\x00\x00\x00" + socks_addr(dns, 53) + q, (relay_host, relay_port))
    data, _ = udp.recvfrom(65536)
    hlen = 4 + {1: 4, 4: 16}[data[3]] + 2
    report("ok", start, answers=dns_answers(data[hlen:], qid))


def wait_port(host, port, timeout):
    start = time.monotonic()
    while True:
        try:
            socket.create_connection((host, port), 0.5).close()
            return report("ok", start)
        except OSError as e:
            if time.monotonic() - start > timeout:
                return report("timeout", start, error=repr(e))
            time.sleep(0.05)


def bulk_serve(port, addrs):
    def handle(conn):
        with conn:
            try:
                mode = conn.recv(1)
                if mode == b"u":
                    buf = bytearray(1 << 20)
                    while conn.recv_into(buf):
                        pass
                elif mode == b"d":
                    chunk = b"\0" * (1 << 20)
                    while True:
                        conn.sendall(chunk)
            except OSError:
                pass

    def accept_loop(ls):
        while True:
            conn, _ = ls.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    for a in addrs:
        ls = socket.socket(family(a), socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((a, port))
        ls.listen(64)
        threading.Thread(target=accept_loop, args=(ls,), daemon=True).start()
    print("READY", flush=True)
    threading.Event().wait()


def socks_connect(proxy, pport, host, port):
    s = socket.create_connection((proxy, pport), timeout=10)
    s.sendall(b"\x05\x01\x00")
    if recv_exactly(s, 2) != b"\x05\x00":
        raise ConnectionError("the proxy wants authentication")
    s.sendall(b"\x05\x01\x00" + socks_addr(host, port))
    head = recv_exactly(s, 4)
    if head[1] != 0:
        raise ConnectionError("CONNECT refused: %d" % head[1])
    recv_exactly(s, {1: 4, 4: 16, 3: None}.get(head[3]) + 2)
    return s


def bulk(host, port, direction, streams, seconds, proxy=None, pport=0):
    """The clients' bytes: what left (up) or arrived (down) within SECONDS."""
    moved = [0] * streams
    errors = []
    deadline = [0.0]

    def one(i):
        try:
            s = socks_connect(proxy, pport, host, port) if proxy else socket.create_connection((host, port), 10)
            s.settimeout(10)
            s.sendall(direction[:1].encode())
            buf = bytearray(1 << 20)
            view = memoryview(buf)
            while time.monotonic() < deadline[0]:
                if direction == "up":
                    moved[i] += s.send(view)
                else:
                    n = s.recv_into(buf)
                    if not n:
                        break
                    moved[i] += n
            s.close()
        except OSError as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    start = time.monotonic()
    deadline[0] = start + seconds
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    report("ok" if not errors else "failed", start, bytes=sum(moved), bits_per_second=sum(moved) * 8 / elapsed,
           errors=errors[:3])


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    cmd = a[0]
    if cmd == "http-serve" and len(a) >= 4:
        http_serve(a[1], int(a[2]), a[3:])
    elif cmd == "echo-serve" and len(a) >= 3:
        asyncio.run(echo_serve(int(a[1]), a[2:]))
    elif cmd == "udp-echo-serve" and len(a) >= 3:
        udp_echo_serve(int(a[1]), a[2:])
    elif cmd == "many" and len(a) == 6:
        asyncio.run(many(a[1], int(a[2]), int(a[3]), int(a[4]), float(a[5])))
    elif cmd == "udp-probe" and len(a) == 5:
        udp_probe(a[1], int(a[2]), int(a[3]), float(a[4]))
    elif cmd == "socks-udp-dns" and len(a) == 6:
        socks_udp_dns(a[1], int(a[2]), a[3], a[4], a[5])
    elif cmd == "bulk-serve" and len(a) >= 3:
        bulk_serve(int(a[1]), a[2:])
    elif cmd == "bulk" and len(a) in (6, 8):
        bulk(a[1], int(a[2]), a[3], int(a[4]), float(a[5]), *(a[6], int(a[7])) if len(a) == 8 else ())
    elif cmd == "wait-port" and len(a) == 4:
        wait_port(a[1], int(a[2]), float(a[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
