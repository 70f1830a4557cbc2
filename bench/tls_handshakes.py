#!/usr/bin/env python3
"""Stalled TLS handshakes: N (default 8,000) connections to a zhttpd TLS port that each send the first
few bytes (default 6) of a real ClientHello and then nothing; what they cost and what comes back.

It starts zhttpd (--listen 127.0.0.1:PORT,tls,default-cert=localhost with a throw-away certificate made
with the openssl CLI, an ipc --zclient-stream in a temp dir, no handler needed), completes a few real
TLS handshakes first (so OpenSSL's one-time tables are loaded), then reports:
  RSS before   - the daemon's RSS before the stalled connections (the pre-peak figure)
  accepted     - fds the daemon gained
  RSS peak     - RSS with every stalled handshake held (after --hold seconds)
  RSS/conn     - (RSS peak - RSS before) / accepted
  RSS after    - RSS --after seconds (default 10) after the client closed them all, and its excess
                 over RSS before in percent
  open         - stalled connections the daemon still held at the end of --hold (it may close or
                 refuse some: --max-tls-handshakes, --head-timeout)
`--full-hello` sends the whole ClientHello instead (the handshake then really starts on the server
and stalls waiting for the client's next flight). Extra daemon flags go after `--`.
RLIMIT_NOFILE is raised for this script and the daemon.

usage: bench/tls_handshakes.py [--zhttpd PATH] [--conns 8000] [--bytes 6] [--full-hello] [--workers 1]
                               [--hold 3] [--after 10] [-- DAEMON FLAGS...]
The zhttpd path defaults to $ZHTTPD or ./build/zhttpd.
"""

import argparse
import datetime
import os
import select
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
from idle_conns import count_closed, raise_nofile  # noqa: E402


def client_hello():
    """The bytes of a real ClientHello (Python's ssl over memory BIOs, SNI localhost)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def make_identity(d):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", os.path.join(d, "localhost.key"), "-out",
                    os.path.join(d, "localhost.crt"), "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)


def real_handshakes(port, n):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ok = 0
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.do_handshake()
                ok += 1
    return ok


def open_stalled(port, n, data, deadline):
    socks, failures = [], 0
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(data)
        except OSError:
            failures += 1
            s.close()
            continue
        s.setblocking(False)
        socks.append(s)
    return socks, failures


def wait_fds_stable(pid, secs=2.0, bound=30.0):
    last, since, end = -1, time.monotonic(), time.monotonic() + bound
    while time.monotonic() < end:
        cur = B.fd_count(pid)
        if cur != last:
            last, since = cur, time.monotonic()
        elif time.monotonic() - since >= secs:
            return cur
        time.sleep(0.25)
    return last


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zhttpd", default=B.default_zhttpd())
    ap.add_argument("--conns", type=int, default=8000)
    ap.add_argument("--bytes", type=int, default=6, help="ClientHello bytes each connection sends")
    ap.add_argument("--full-hello", action="store_true", help="send the whole ClientHello")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--hold", type=float, default=3.0, help="seconds to hold them before measuring")
    ap.add_argument("--after", type=float, default=10.0, help="seconds after the close to read RSS again")
    a = ap.parse_args(argv)
    zhttpd = os.path.abspath(a.zhttpd)
    if not os.access(zhttpd, os.X_OK):
        sys.exit("zhttpd binary not found: %s (pass --zhttpd or set ZHTTPD)" % zhttpd)
    limit = raise_nofile(a.conns * 2 + 1024)
    if limit < a.conns + 200:
        sys.exit("RLIMIT_NOFILE %d is too low for %d connections" % (limit, a.conns))
    tmp = B.make_tmpdir("zhttpd-bench-tls.")
    make_identity(tmp)
    hello = client_hello()
    data = hello if a.full_hello else hello[:a.bytes]
    B.log("machine: " + B.machine_line() + "; RLIMIT_NOFILE " + str(limit))
    B.log("ClientHello %d bytes; each connection sends %d" % (len(hello), len(data)))

    port = B.free_port()
    args = [zhttpd, "--listen", "127.0.0.1:%d,tls,default-cert=localhost" % port, "--tls-identities-dir", tmp,
            "--zclient-stream", "ipc://%s/zs" % tmp, "--workers", str(a.workers),
            "--stream-maxconn", str(a.conns + 1000), "--log-level", "2"] + extra
    d = B.Child("zhttpd", args, os.path.join(tmp, "zhttpd.log"))
    try:
        B.wait_port(port, child=d)
        real_handshakes(port, 20)
        time.sleep(1.0)
        rss0, fd0 = B.rss_kib(d.pid), B.fd_count(d.pid)
        t0 = time.monotonic()
        socks, fails = open_stalled(port, a.conns, data, t0 + 120)
        t_open = time.monotonic() - t0
        wait_fds_stable(d.pid)
        time.sleep(max(0.0, a.hold))
        rss1, fd1 = B.rss_kib(d.pid), B.fd_count(d.pid)
        accepted = fd1 - fd0
        closed = count_closed(socks)
        B.log("opened %d (%d failed) in %.1fs; daemon fds +%d; closed by the server %d; RSS %d -> %d KiB" % (
            len(socks), fails, t_open, accepted, closed, rss0, rss1))
        for s in socks:
            s.close()
        t_close = time.monotonic()
        wait_fds_stable(d.pid, secs=1.0)
        time.sleep(max(0.0, a.after - (time.monotonic() - t_close)))
        rss2 = B.rss_kib(d.pid)
        served = real_handshakes(port, 5)  # still serving afterwards
        alive = d.alive()
    finally:
        d.stop()
    per_conn = (rss1 - rss0) * 1024.0 / accepted if accepted > 0 else 0.0
    excess = (rss2 - rss0) * 100.0 / rss0 if rss0 else 0.0
    print("stalled TLS handshakes, %s, %d connections sending %d bytes of a %d-byte ClientHello, %s" % (
        datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), a.conns, len(data), len(hello), B.machine_line()))
    print("zhttpd: %s %s" % (zhttpd, " ".join(extra)))
    rows = [[len(socks), accepted, len(socks) - closed, rss0, rss1, "%.0f" % per_conn,
             "%.0fs" % a.after, rss2, "%+.1f%%" % excess, served]]
    print(B.fmt_table(rows, ["opened", "accepted (fds)", "open at peak", "RSS before KiB", "RSS peak KiB",
                             "RSS bytes/conn", "after close", "RSS after KiB", "vs before", "TLS served after"]))
    return 0 if alive and served == 5 else 1


if __name__ == "__main__":
    sys.exit(main())
