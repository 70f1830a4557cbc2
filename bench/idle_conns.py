#!/usr/bin/env python3
"""Idle connections: hold N (default 10,000) concurrent idle TCP connections to zhttpd, then to condure.

For each daemon (same --workers, --stream-maxconn above N, an ipc --zclient-stream in a temp dir, no
handler needed) it reads RSS and the fd count of the daemon, opens N loopback connections (half send
nothing, half send a partial request head and then nothing), waits until the daemon's fd count stops
rising, then reports:
  accepted  - fds the daemon gained (connections it accepted: counted in the process, not the backlog)
  backlog   - Recv-Q of its listening socket (completed by the kernel, not accepted)
  estab     - `ss state established sport = :PORT` (includes the backlog)
  closed    - connections the daemon has closed, seen from the client side (after --hold seconds)
  RSS/conn  - (RSS_after - RSS_before) / accepted
RLIMIT_NOFILE is raised for this script and for the daemons it starts.

usage: bench/idle_conns.py [--zhttpd PATH] [--conns 10000] [--workers 1] [--maxconn 20000] [--hold 5]
The zhttpd path defaults to $ZHTTPD or ./build/zhttpd.
"""

import argparse
import datetime
import os
import resource
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

PARTIAL = b"GET /idle HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: idle-bench\r\n"


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))  # needs CAP_SYS_RESOURCE
            return want
        except (ValueError, OSError):
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def open_conns(port, n, deadline):
    socks = []
    failures = 0
    for i in range(n):
        if time.monotonic() > deadline:
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
            if i % 2:
                s.sendall(PARTIAL)
        except OSError:
            failures += 1
            s.close()
            continue
        s.setblocking(False)
        socks.append(s)
    return socks, failures


def count_closed(socks):
    """Connections the server closed or reset (readable and recv gives EOF/error)."""
    closed = 0
    for i in range(0, len(socks), 500):
        chunk = socks[i:i + 500]
        p = select.poll()
        byfd = {}
        for s in chunk:
            p.register(s, select.POLLIN)
            byfd[s.fileno()] = s
        for fd, ev in p.poll(0):
            try:
                data = byfd[fd].recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                closed += 1
                continue
            if not data:
                closed += 1
    return closed


def measure(label, argv, port, pid_child, n, hold):
    d = pid_child
    B.wait_port(port, child=d)
    time.sleep(1.0)
    rss0, fd0 = B.rss_kib(d.pid), B.fd_count(d.pid)
    t0 = time.monotonic()
    socks, fails = open_conns(port, n, t0 + 120)
    t_open = time.monotonic() - t0
    # Wait for the daemon to accept what the kernel completed: fd count stable for 2 s (bounded).
    last, stable_since, end = -1, time.monotonic(), time.monotonic() + 30
    while time.monotonic() < end:
        cur = B.fd_count(d.pid)
        if cur != last:
            last, stable_since = cur, time.monotonic()
        elif time.monotonic() - stable_since >= 2.0:
            break
        time.sleep(0.25)
    time.sleep(max(0.0, hold))
    alive = d.alive()
    rss1 = B.rss_kib(d.pid) if alive else 0
    fd1 = B.fd_count(d.pid) if alive else 0
    estab = B.ss_count(["state", "established", "( sport = :%d )" % port])
    backlog = B.listen_backlog(port)
    closed = count_closed(socks)
    accepted = fd1 - fd0
    for s in socks:
        s.close()
    res = {
        "label": label, "opened": len(socks), "connect_fail": fails, "open_s": t_open, "accepted": accepted,
        "backlog": backlog, "estab": estab, "closed": closed, "rss0": rss0, "rss1": rss1, "alive": alive,
        "per_conn": ((rss1 - rss0) * 1024.0 / accepted) if accepted > 0 else 0.0,
    }
    B.log("%s: opened %d (%d failed) in %.1fs; daemon fds +%d, backlog %d, established %d, closed by server %d, "
          "RSS %d -> %d KiB" % (label, len(socks), fails, t_open, accepted, backlog, estab, closed, rss0, rss1))
    if not alive:
        B.log("CRASH: %s exited (rc=%s):\n%s" % (label, d.returncode(), d.log_tail()))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zhttpd", default=B.default_zhttpd())
    ap.add_argument("--condure", default="condure")
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--maxconn", type=int, default=20000, help="--stream-maxconn given to both daemons")
    ap.add_argument("--hold", type=float, default=5.0, help="seconds to hold the connections before counting")
    a = ap.parse_args()
    zhttpd = os.path.abspath(a.zhttpd)
    if not os.access(zhttpd, os.X_OK):
        sys.exit("zhttpd binary not found: %s (pass --zhttpd or set ZHTTPD)" % zhttpd)
    limit = raise_nofile(a.conns + a.maxconn + 1024)  # inherited by the daemons
    if limit < a.conns + 200:
        sys.exit("RLIMIT_NOFILE %d is too low for %d connections" % (limit, a.conns))
    tmp = B.make_tmpdir("zhttpd-bench-idle.")
    B.log("machine: " + B.machine_line() + "; RLIMIT_NOFILE " + str(limit))

    results = []
    for name in ("zhttpd", "condure"):
        port = B.free_port()
        base = "ipc://%s/%s" % (tmp, name)
        prog = zhttpd if name == "zhttpd" else a.condure
        argv = [prog, "--listen", "127.0.0.1:%d" % port, "--zclient-stream", base, "--workers", str(a.workers),
                "--stream-maxconn", str(a.maxconn), "--log-level", "1"]
        d = B.Child(name, argv, os.path.join(tmp, name + ".log"))
        label = "%s --workers %d --stream-maxconn %d" % (name, a.workers, a.maxconn)
        try:
            results.append(measure(label, argv, port, d, a.conns, a.hold))
        finally:
            d.stop()
        time.sleep(1.0)  # let the closed sockets drain before the next daemon

    print("idle connections, %s, %d connections (half silent, half a partial head), held %.0fs, %s" % (
        datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), a.conns, a.hold, B.machine_line()))
    print("zhttpd: %s" % zhttpd)
    rows = [[r["label"], r["opened"], r["accepted"], r["backlog"], r["closed"], r["rss0"], r["rss1"],
             "%.0f" % r["per_conn"]] for r in results]
    print(B.fmt_table(rows, ["daemon", "opened", "accepted (fds)", "backlog", "closed by server",
                             "RSS before KiB", "RSS after KiB", "RSS bytes/conn"]))
    ok = all(r["alive"] and r["accepted"] >= a.conns and r["closed"] == 0 for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
