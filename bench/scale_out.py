#!/usr/bin/env python3
"""Scale-out fabric: what the ZeroMQ hop costs when zhttpd runs as several instances (docs/scaling.md).

One bench/handler process answers every line; zhttpd runs with --workers 1 per instance; wrk -t1 (one
per instance, the connections split between them) drives keep-alive GETs. Lines, interleaved per round:

  1 x ipc, PUB          one instance, --zclient-stream ipc://... (the server_mode.py setup)
  1 x tcp, PUB          one instance, --zclient-stream tcp://127.0.0.1:P (ports P, P+1, P+2)
  1 x tcp, router-resp  the same, the handler replies through its ROUTER (handler --router)
  2 x tcp, PUB          two instances (--id zA, zB), ONE handler connected to both (two --base)
  2 x tcp, router-resp  the same with router-resp replies

A response counts only if it is 200 with exactly the handler's body. Reported per line: medians over the
rounds of total req/s, zhttpd CPU per response (all instances' CPU, user+sys, over all responses) and the
handler's CPU per response. On a machine with fewer cores than instances + handler + wrk, req/s says how
the cores were shared; CPU per response is the fabric's cost and is the figure to compare.

usage: bench/scale_out.py [--zhttpd PATH] [--duration SECS] [--rounds N] [--connections 50]
The zhttpd path defaults to $ZHTTPD or ./build/zhttpd. Every process it starts is stopped at the end.
"""

import argparse
import datetime
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

LINES = [("1 x ipc, PUB", 1, "ipc", False), ("1 x tcp, PUB", 1, "tcp", False),
         ("1 x tcp, router-resp", 1, "tcp", True), ("2 x tcp, PUB", 2, "tcp", False),
         ("2 x tcp, router-resp", 2, "tcp", True)]


def wrk_cmd(port, secs, conns, lua):
    return ["wrk", "-t1", "-c%d" % conns, "-d%ds" % secs, "-s", lua, "http://127.0.0.1:%d/" % port]


def parse_check(out):
    m = re.search(r"^CHECK (.*)$", out, re.M)
    if not m:
        return None
    r = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"]
    return r


def run_wrks(ports, secs, conns, lua):
    """One wrk per port at once, conns split between them; returns (good, bad, errors, seconds)."""
    per = max(1, conns // len(ports))
    procs = [subprocess.Popen(wrk_cmd(p, secs, per, lua), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for p in ports]
    good = bad = errors = 0.0
    dur = 0.0
    for p in procs:
        out, _ = p.communicate(timeout=secs + 30)
        r = parse_check(out)
        if r is None:
            B.log("wrk gave no result: " + out[:300])
            return None
        good += r["good"]
        bad += r["bad"]
        errors += r["errors"]
        dur = max(dur, r["dur_us"] / 1e6)
    return good, bad, errors, dur


def start_line(label, n, transport, router, zhttpd, handler, tmp, k):
    insts = []
    bases = []
    for i in range(n):
        port = B.free_port()
        iid = "z%d" % i
        if transport == "tcp":
            base = "tcp://127.0.0.1:%d" % B.free_port_block(3)
        else:
            base = "ipc://%s/l%d-%s" % (tmp, k, iid)
        argv = [zhttpd, "--id", iid, "--listen", "127.0.0.1:%d" % port, "--zclient-stream", base,
                "--workers", "1", "--log-level", "1"]
        d = B.Child("%s %s" % (label, iid), argv, os.path.join(tmp, "l%d-%s.log" % (k, iid)))
        B.wait_port(port, child=d)
        insts.append((port, d))
        bases.append(base)
    hargv = [handler, "--id", "bench-handler-%d" % k, "--duration", "3600"]
    for b in bases:
        hargv += ["--base", b]
    if router:
        hargv.append("--router")
    h = B.Child("handler %s" % label, hargv, os.path.join(tmp, "l%d-handler.log" % k))
    return insts, h


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zhttpd", default=B.default_zhttpd())
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=50, help="total, split over the instances")
    a = ap.parse_args()
    zhttpd = os.path.abspath(a.zhttpd)
    if not os.access(zhttpd, os.X_OK):
        sys.exit("zhttpd binary not found: %s (pass --zhttpd or set ZHTTPD)" % zhttpd)
    B.build_tools()
    handler = os.path.join(B.BENCH_DIR, "handler")
    lua = os.path.join(B.BENCH_DIR, "check_body.lua")
    tmp = B.make_tmpdir("zhttpd-bench-scale.")
    B.log("machine: " + B.machine_line())

    lines = []
    for k, (label, n, transport, router) in enumerate(LINES):
        insts, h = start_line(label, n, transport, router, zhttpd, handler, tmp, k)
        lines.append((label, insts, h))
    time.sleep(0.5)  # subscriptions and ROUTER connections settle
    for label, insts, h in lines:  # warm-up, also checks that the line answers correctly
        r = run_wrks([p for p, _ in insts], 1, a.connections, lua)
        if not r or r[0] == 0 or r[1] > 0:
            B.log("WARM-UP FAIL %s: %s\n%s" % (label, r, h.log_tail()))

    failed = False
    res = {}
    for rnd in range(a.rounds):
        for label, insts, h in lines:
            if not all(d.alive() for _, d in insts) or not h.alive():
                continue
            cpu0 = sum(B.cpu_s(d.pid) for _, d in insts)
            hcpu0 = B.cpu_s(h.pid)
            r = run_wrks([p for p, _ in insts], a.duration, a.connections, lua)
            cpu = sum(B.cpu_s(d.pid) for _, d in insts) - cpu0
            hcpu = B.cpu_s(h.pid) - hcpu0
            for _, d in insts:
                if not d.alive():
                    B.log("CRASH: %s exited (rc=%s):\n%s" % (d.name, d.returncode(), d.log_tail()))
                    failed = True
            if r is None:
                continue
            good, bad, errors, dur = r
            row = {"rps": good / dur if dur else 0.0, "cpu_us": cpu * 1e6 / good if good else 0.0,
                   "hcpu_us": hcpu * 1e6 / good if good else 0.0, "bad": bad, "errors": errors}
            res.setdefault(label, []).append(row)
            B.log("round %d  %-22s rps=%8.0f zhttpd cpu/req=%5.1fus handler cpu/req=%5.1fus bad=%d sockerr=%d" % (
                rnd + 1, label, row["rps"], row["cpu_us"], row["hcpu_us"], bad, errors))

    rows = []
    base_cpu = None
    for label, insts, h in lines:
        rs = res.get(label, [])
        if not rs:
            rows.append([label, "-", "-", "-", "-", "-"])
            continue
        cpu = B.median([r["cpu_us"] for r in rs])
        if base_cpu is None:
            base_cpu = cpu
        rows.append([label, "%.0f" % B.median([r["rps"] for r in rs]), "%.1f" % cpu,
                     "%.1f" % B.median([r["hcpu_us"] for r in rs]),
                     "%d/%d" % (sum(r["bad"] for r in rs), sum(r["errors"] for r in rs)),
                     " ".join("%.0f" % r["rps"] for r in rs)])
    for label, insts, h in lines:
        for _, d in insts:
            d.stop()
        h.stop()
        B.log("%s: %s" % (label, h.log_tail(1)))

    print("scale-out fabric, %s, wrk -t1 x instances, %d connections in all, %d rounds x %ds, %s" % (
        datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), a.connections, a.rounds, a.duration,
        B.machine_line()))
    print("zhttpd: %s" % zhttpd)
    print(B.fmt_table(rows, ["line", "median req/s", "zhttpd CPU us/req", "handler CPU us/req", "bad/sock err",
                             "rounds req/s"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
