#!/usr/bin/env python3
"""Outbound WebSocket (client role): zhttpd vs zurl 1.11 against the same local echo origin.

The origin is condure 1.9.1 with bench/ws_handler (the C echo handler of ws_echo.py): a WebSocket
server that echoes each message. zhttpd (--workers 1) and zurl (single-threaded) run on the same
generated Zurl config (defpolicy=allow, ipc in_spec/in_stream_spec/out_spec in a temp dir);
bench/ws_client_load drives each as a handler does: N ws:// sessions, each a ping-pong of --size
byte text messages that differ per message, every echo checked byte for byte, credits honoured
both ways. Rounds are interleaved (zhttpd, zurl, zhttpd, ...); prints the median msg/s, p50/p99,
the daemon's CPU time per message and zhttpd against zurl.

usage: bench/ws_client.py [--zhttpd PATH] [--duration SECS] [--rounds N] [--connections 50]
                          [--size 32]
"""

import argparse
import datetime
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402


def zurl_conf(path, instance, base):
    with open(path, "w") as f:
        f.write("[General]\ninstance_id=%s\nin_spec=%s-in\nin_stream_spec=%s-in-stream\n"
                "out_spec=%s-out\ndefpolicy=allow\nmax_open_requests=10000\nbuffer_size=200000\n"
                "in_hwm=10000\nout_hwm=10000\n" % (instance, base, base, base))


def run_load(tool, base, zid, url, secs, conns, size):
    cmd = [tool, "--in", base + "-in", "--in-stream", base + "-in-stream", "--out", base + "-out",
           "--zid", zid, "--url", url, "--connections", str(conns), "--duration", str(secs),
           "--warmup", "1", "--size", str(size)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 40)
    m = re.search(r"^WSCLOAD (.*)$", p.stdout, re.M)
    if not m:
        return None, (p.stdout + p.stderr).strip()
    r = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["mps"] = r["good"] / (r["dur_us"] / 1e6) if r["dur_us"] else 0.0
    return r, p.stderr.strip()[:300]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zhttpd", default=B.default_zhttpd())
    ap.add_argument("--condure", default="condure")
    ap.add_argument("--zurl", default="zurl")
    ap.add_argument("--duration", type=int, default=5, help="seconds per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--size", type=int, default=32)
    a = ap.parse_args()
    zhttpd = os.path.abspath(a.zhttpd)
    if not os.access(zhttpd, os.X_OK):
        sys.exit("zhttpd binary not found: %s (pass --zhttpd or set ZHTTPD)" % zhttpd)
    B.build_tools()
    handler = os.path.join(B.BENCH_DIR, "ws_handler")
    load = os.path.join(B.BENCH_DIR, "ws_client_load")
    tmp = B.make_tmpdir("zhttpd-bench-wsc.")
    B.log("machine: " + B.machine_line())

    # the origin: condure + the C echo handler
    oport = B.free_port()
    obase = "ipc://%s/origin" % tmp
    origin = B.Child("condure", [a.condure, "--listen", "127.0.0.1:%d" % oport,
                                 "--zclient-stream", obase, "--log-level", "1"],
                     os.path.join(tmp, "condure.log"))
    B.wait_port(oport, child=origin)
    oh = B.Child("ws_handler", [handler, "--base", obase, "--id", "wsc-origin",
                                "--duration", "3600"], os.path.join(tmp, "ws_handler.log"))
    url = "ws://127.0.0.1:%d/echo" % oport

    daemons = []
    for name in ("zhttpd", "zurl"):
        base = "ipc://%s/%s" % (tmp, name)
        conf = os.path.join(tmp, "%s.conf" % name)
        zid = "wsc-" + name
        zurl_conf(conf, zid, base)
        argv = ([zhttpd, "--config", conf, "--workers", "1", "--log-level", "1"] if name == "zhttpd"
                else [a.zurl, "--config=%s" % conf])
        d = B.Child(name, argv, os.path.join(tmp, "%s.log" % name))
        daemons.append((name, base, zid, d))
    failed = False
    for label, base, zid, d in daemons:  # warm-up, not counted
        r, err = run_load(load, base, zid, url, 1, a.connections, a.size)
        if not r or r["good"] == 0 or r["bad"] > 0:
            B.log("WARM-UP %s: %s %s\n%s" % (label, r, err, d.log_tail()))
    res = {}
    for rnd in range(a.rounds):
        for label, base, zid, d in daemons:
            if not d.alive():
                continue
            cpu0 = B.cpu_s(d.pid)
            r, err = run_load(load, base, zid, url, a.duration, a.connections, a.size)
            cpu = B.cpu_s(d.pid) - cpu0
            if not d.alive():
                B.log("CRASH: %s exited (rc=%s):\n%s" % (label, d.returncode(), d.log_tail()))
                failed = True
            if r is None:
                B.log("%s: ws_client_load gave no result: %s" % (label, err[:500]))
                failed = True
                continue
            if r["bad"] > 0 or r["conns"] != a.connections:
                B.log("%s: %s" % (label, err))
                failed = True
            r["cpu_us"] = cpu * 1e6 / r["good"] if r["good"] else 0.0
            res.setdefault(label, []).append(r)
            B.log("round %d  %-6s msg/s=%8.0f p50=%6.3fms p99=%6.3fms cpu/msg=%5.1fus good=%d bad=%d "
                  "conns=%d" % (rnd + 1, label, r["mps"], r["p50_us"] / 1000, r["p99_us"] / 1000,
                                r["cpu_us"], r["good"], r["bad"], r["conns"]))
    for label, base, zid, d in daemons:
        d.stop()
    oh.stop()
    origin.stop()
    zu = B.median([r["mps"] for r in res.get("zurl", [])]) if res.get("zurl") else 0
    rows = []
    for label in ("zhttpd", "zurl"):
        rs = res.get(label, [])
        if not rs:
            continue
        v = [r["mps"] for r in rs]
        m = B.median(v)
        rows.append([label, "%.0f" % m,
                     "%.3f" % (B.median([r["p50_us"] for r in rs]) / 1000),
                     "%.3f" % (B.median([r["p99_us"] for r in rs]) / 1000),
                     "%.1f" % B.median([r["cpu_us"] for r in rs]),
                     "%d" % sum(r["bad"] for r in rs),
                     " ".join("%.0f" % x for x in v),
                     ("%.2fx" % (m / zu)) if zu else "-"])
    print("outbound websocket echo, %d sessions, %d-byte text ping-pong, %d rounds x %ds, %s" % (
        a.connections, a.size, a.rounds, a.duration,
        datetime.datetime.now().strftime("%Y-%m-%d %H:%M")))
    print("machine: %s" % B.machine_line())
    print("zhttpd: %s" % zhttpd)
    print(B.fmt_table(rows, ["daemon", "median msg/s", "p50 ms", "p99 ms", "CPU us/msg", "bad",
                             "rounds msg/s", "vs zurl"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
