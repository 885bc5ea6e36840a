#!/usr/bin/env python3
"""Small server and clients that test_happy_eyeballs_netns.py runs inside a
network namespace (`ip netns exec NS python3 ns_tool.py ...`). Loopback
addresses only. Clients print one JSON line with the outcome and the time it
took, measured here so that process start-up is not counted.

  serve [--v4] [--v6]          echo server on 127.0.0.1 and/or ::1, one port;
                               prints "PORT <n>" once listening, runs until killed
  connect HOST PORT TIMEOUT    plain TCP connect
  echo HOST PORT TIMEOUT       connect, send 64 KiB, expect them echoed back
"""

import json
import os
import socket
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


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd = sys.argv[1]
    if cmd == "serve":
        serve(sys.argv[2:])
    elif cmd in ("connect", "echo") and len(sys.argv) == 5:
        client(cmd, sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
