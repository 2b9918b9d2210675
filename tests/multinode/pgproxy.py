#!/usr/bin/env python3
"""A TCP proxy the multi-node tests control, between one node and
PostgreSQL: the network between them, which the test can break.  Python
standard library only.

    pgproxy.py serve --target HOST:PORT --port-file F --control SOCK
    pgproxy.py ctl SOCK up|cut|hang|status

serve listens on 127.0.0.1 on a free port (written to F) and forwards
every connection to HOST:PORT.  It obeys one-line commands on the unix
socket SOCK (ctl sends one and prints the answer):

  cut     every open connection is reset (RST, both sides) and every new
          one is reset as soon as it is accepted: a link that is down and
          says so (connection refused or reset at once);
  hang    nothing more is forwarded and nothing is closed; new connections
          are accepted and never answered: a partition where packets
          vanish, which only a timeout notices;
  up      forward again (connections held by hang carry on where they
          stopped; those cut are gone);
  status  the mode, the connections open and the number cut so far.

Each answer is one line starting with "ok".
"""

import argparse
import os
import socket
import struct
import sys
import threading

LOCK = threading.Condition()
MODE = ["up"]
CONNS = set()  # (client socket, server socket or None)
CUT = [0]


def reset(s):
    """Close s with an RST, not a FIN: the peer sees the link die."""
    if s is None:
        return
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
    except OSError:
        pass
    # shutdown wakes a pump blocked in recv on s (a close alone would
    # not, and the peer would see nothing until it wrote).
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


def pump(src, dst, pair):
    """Copy src to dst until either ends; wait while the link hangs."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            with LOCK:
                while MODE[0] == "hang" and pair in CONNS:
                    LOCK.wait()
                if pair not in CONNS:
                    break
            dst.sendall(data)
    except OSError:
        pass
    with LOCK:
        if pair in CONNS:
            CONNS.discard(pair)
            reset(pair[0])
            reset(pair[1])


def serve_conn(cli, target):
    pair = (cli, None)
    with LOCK:
        if MODE[0] == "cut":
            CUT[0] += 1
            reset(cli)
            return
        CONNS.add(pair)
        while MODE[0] == "hang" and pair in CONNS:
            LOCK.wait()
        if pair not in CONNS:
            return
    try:
        srv = socket.create_connection(target, timeout=10)
        srv.settimeout(None)
    except OSError:
        with LOCK:
            CONNS.discard(pair)
        reset(cli)
        return
    with LOCK:
        if pair not in CONNS:
            reset(srv)
            return
        CONNS.discard(pair)
        pair = (cli, srv)
        CONNS.add(pair)
    threading.Thread(target=pump, args=(cli, srv, pair), daemon=True).start()
    threading.Thread(target=pump, args=(srv, cli, pair), daemon=True).start()


def control(ctl):
    while True:
        c, _ = ctl.accept()
        with c:
            cmd = c.makefile().readline().strip()
            with LOCK:
                if cmd in ("up", "hang"):
                    MODE[0] = cmd
                    LOCK.notify_all()
                    ans = "ok %s" % cmd
                elif cmd == "cut":
                    MODE[0] = "cut"
                    for pair in list(CONNS):
                        reset(pair[0])
                        reset(pair[1])
                        CUT[0] += 1
                    CONNS.clear()
                    LOCK.notify_all()
                    ans = "ok cut"
                elif cmd == "status":
                    ans = "ok mode=%s open=%d cut=%d" % (
                        MODE[0], len(CONNS), CUT[0])
                else:
                    ans = "error: unknown command %r" % cmd[:40]
            c.sendall((ans + "\n").encode())


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--target", required=True)
    s.add_argument("--port-file", required=True)
    s.add_argument("--control", required=True)
    c = sub.add_parser("ctl")
    c.add_argument("sock")
    c.add_argument("what", choices=["up", "cut", "hang", "status"])
    a = p.parse_args()
    if a.cmd == "ctl":
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as k:
            k.settimeout(10)
            k.connect(a.sock)
            k.sendall((a.what + "\n").encode())
            ans = k.makefile().readline().strip()
        print(ans)
        return 0 if ans.startswith("ok") else 1
    host, port = a.target.rsplit(":", 1)
    target = (host, int(port))
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", 0))
    lst.listen(128)
    # Bound before the port is told: once F exists, ctl works.
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ctl.bind(a.control)
    ctl.listen(8)
    threading.Thread(target=control, args=(ctl,), daemon=True).start()
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % lst.getsockname()[1])
    os.rename(tmp, a.port_file)
    while True:
        cli, _ = lst.accept()
        threading.Thread(target=serve_conn, args=(cli, target),
                         daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
