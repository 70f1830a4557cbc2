#!/usr/bin/env python3
"""WebSocket echo (server role): zhttpd vs condure 1.9.1 with the same C handler and C client.

For each daemon (same --workers, --zclient-stream on ipc paths in a temp dir) it starts its own
bench/ws_handler (accepts every ws:// request with a 101, echoes each message under the server's
credits), warms the pair up, then runs bench/ws_load (N connections, each a ping-pong of 32-byte
masked text messages that differ per message, every echo checked byte for byte) in interleaved
rounds (zhttpd, condure, zhttpd, ...). Only correct echoes count; any wrong echo, failed handshake
or lost connection is reported as bad. Prints the median msg/s, p50/p99 latency, the daemon's CPU
time per message, the ratio zhttpd/condure and the noise band (max/min of each one's rounds).

usage: bench/ws_echo.py [--zhttpd PATH] [--duration SECS] [--rounds N] [--workers 1]
                        [--connections 50] [--size 32]
The zhttpd path defaults to $ZHTTPD or ./build/zhttpd.
"""

import argparse
import datetime
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402


def run_load(tool, port, secs, conns, size):
    cmd = [tool, "--port", str(port), "--connections", str(conns), "--duration", str(secs),
           "--size", str(size)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 30)
    m = re.search(r"^WSLOAD (.*)$", p.stdout, re.M)
    if not m:
        return None, (p.stdout + p.stderr).strip()
    r = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["mps"] = r["good"] / (r["dur_us"] / 1e6) if r["dur_us"] else 0.0
    return r, ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zhttpd", default=B.default_zhttpd())
    ap.add_argument("--condure", default="condure")
    ap.add_argument("--duration", type=int, default=5, help="seconds per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--size", type=int, default=32)
    a = ap.parse_args()
    zhttpd = os.path.abspath(a.zhttpd)
    if not os.access(zhttpd, os.X_OK):
        sys.exit("zhttpd binary not found: %s (pass --zhttpd or set ZHTTPD)" % zhttpd)
    B.build_tools()
    handler = os.path.join(B.BENCH_DIR, "ws_handler")
    load = os.path.join(B.BENCH_DIR, "ws_load")
    tmp = B.make_tmpdir("zhttpd-bench-ws.")
    B.log("machine: " + B.machine_line())

    daemons = []  # (label, port, daemon child, handler child)
    for name in ("zhttpd", "condure"):
        port = B.free_port()
        base = "ipc://%s/%s" % (tmp, name)
        exe = zhttpd if name == "zhttpd" else a.condure
        argv = [exe, "--listen", "127.0.0.1:%d" % port, "--zclient-stream", base, "--workers",
                str(a.workers), "--log-level", "1"]
        d = B.Child(name, argv, os.path.join(tmp, "%s.log" % name))
        B.wait_port(port, child=d)
        h = B.Child("ws_handler-" + name, [handler, "--base", base, "--id", "wsbench-" + name,
                                            "--duration", "3600"],
                    os.path.join(tmp, "ws_handler-%s.log" % name))
        daemons.append((name, port, d, h))
    failed = False
    for label, port, d, h in daemons:  # warm-up, not counted
        r, err = run_load(load, port, 1, a.connections, a.size)
        if not r or r["good"] == 0 or r["bad"] > 0:
            B.log("WARM-UP FAIL %s: %s %s\n%s" % (label, r, err, d.log_tail()))
    res = {}
    for rnd in range(a.rounds):
        for label, port, d, h in daemons:
            if not d.alive():
                continue
            cpu0 = B.cpu_s(d.pid)
            r, err = run_load(load, port, a.duration, a.connections, a.size)
            cpu = B.cpu_s(d.pid) - cpu0
            if not d.alive():
                B.log("CRASH: %s exited (rc=%s):\n%s" % (label, d.returncode(), d.log_tail()))
                failed = True
            if r is None:
                B.log("%s: ws_load gave no result: %s" % (label, err[:500]))
                failed = True
                continue
            if r["bad"] > 0 or r["conns"] != a.connections:
                failed = True
            r["cpu_us"] = cpu * 1e6 / r["good"] if r["good"] else 0.0
            res.setdefault(label, []).append(r)
            B.log("round %d  %-8s msg/s=%8.0f p50=%6.3fms p99=%6.3fms cpu/msg=%5.1fus good=%d bad=%d "
                  "conns=%d" % (rnd + 1, label, r["mps"], r["p50_us"] / 1000, r["p99_us"] / 1000,
                                r["cpu_us"], r["good"], r["bad"], r["conns"]))
    for label, port, d, h in daemons:
        d.stop()
        h.stop()
        B.log("%s: %s" % (label, h.log_tail(1)))
    z, c = res.get("zhttpd", []), res.get("condure", [])
    cm = B.median([r["mps"] for r in c])
    rows = []
    for label, rs in (("zhttpd", z), ("condure", c)):
        v = [r["mps"] for r in rs]
        m = B.median(v)
        rows.append([label, "%.0f" % m,
                     "%.3f" % (B.median([r["p50_us"] for r in rs]) / 1000),
                     "%.3f" % (B.median([r["p99_us"] for r in rs]) / 1000),
                     "%.1f" % B.median([r["cpu_us"] for r in rs]),
                     "%d" % sum(r["bad"] for r in rs),
                     " ".join("%.0f" % x for x in v),
                     ("%.2f" % (max(v) / min(v))) if v and min(v) > 0 else "-",
                     ("%.2fx" % (m / cm)) if cm else "-"])
    print("websocket echo, %d connections, %d-byte text ping-pong, --workers %d, %d rounds x %ds, %s" % (
        a.connections, a.size, a.workers, a.rounds, a.duration,
        datetime.datetime.now().strftime("%Y-%m-%d %H:%M")))
    print("machine: %s" % B.machine_line())
    print("zhttpd: %s" % zhttpd)
    print(B.fmt_table(rows, ["daemon", "median msg/s", "p50 ms", "p99 ms", "CPU us/msg", "bad",
                             "rounds msg/s", "max/min", "vs condure"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
