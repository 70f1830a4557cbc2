#!/usr/bin/env python3
"""Server mode: zhttpd vs condure 1.9.1, keep-alive wrk against the same C handler.

For each worker count it starts zhttpd and condure (same --workers, --zclient-stream on ipc paths in a
temp dir), each with its own instance of bench/handler (same binary: 200 "hello world\\n"), warms each
up, then runs `wrk -t1 -c50 -d<secs>` with bench/check_body.lua in interleaved rounds (zhttpd, condure,
zhttpd, condure, ...). A response counts only if it is 200 with exactly the handler's body; req/s =
correct responses / wrk's duration. Also shown: the daemon's CPU time (all threads) per correct response. Prints the median of each, the ratio zhttpd/condure and the noise
band (max/min of condure's own rounds, and of zhttpd's). Every process it starts is stopped at the end.

usage: bench/server_mode.py [--zhttpd PATH] [--duration SECS] [--rounds N] [--workers 1,2]
                            [--connections 50]
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


def run_wrk(port, secs, conns, lua):
    cmd = ["wrk", "-t1", "-c%d" % conns, "-d%ds" % secs, "--latency", "-s", lua, "http://127.0.0.1:%d/" % port]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 30)
    m = re.search(r"^CHECK (.*)$", p.stdout, re.M)
    if not m:
        return None, (p.stdout + p.stderr).strip()
    r = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["rps"] = r["good"] / (r["dur_us"] / 1e6) if r["dur_us"] else 0.0
    for q in ("50", "99"):
        mm = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % q, p.stdout, re.M)
        if mm:
            v = float(mm.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[mm.group(2)]
            r["p" + q] = v
    r["non2xx"] = 0.0
    mm = re.search(r"Non-2xx or 3xx responses: (\d+)", p.stdout)
    if mm:
        r["non2xx"] = float(mm.group(1))
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"]
    return r, ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zhttpd", default=B.default_zhttpd())
    ap.add_argument("--condure", default="condure")
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", default="1,2", help="worker counts, comma-separated (same for both)")
    ap.add_argument("--connections", type=int, default=50)
    a = ap.parse_args()
    zhttpd = os.path.abspath(a.zhttpd)
    if not os.access(zhttpd, os.X_OK):
        sys.exit("zhttpd binary not found: %s (pass --zhttpd or set ZHTTPD)" % zhttpd)
    B.build_tools()
    handler = os.path.join(B.BENCH_DIR, "handler")
    lua = os.path.join(B.BENCH_DIR, "check_body.lua")
    tmp = B.make_tmpdir("zhttpd-bench-server.")
    B.log("machine: " + B.machine_line())

    rows = []
    failed = False
    for w in [int(x) for x in a.workers.split(",") if x]:
        daemons = []  # (label, port, daemon child, handler child)
        for name in ("zhttpd", "condure"):
            port = B.free_port()
            base = "ipc://%s/%s-w%d" % (tmp, name, w)
            if name == "zhttpd":
                argv = [zhttpd, "--listen", "127.0.0.1:%d" % port, "--zclient-stream", base, "--workers", str(w),
                        "--log-level", "1"]
            else:
                argv = [a.condure, "--listen", "127.0.0.1:%d" % port, "--zclient-stream", base, "--workers",
                        str(w), "--log-level", "1"]
            d = B.Child("%s-w%d" % (name, w), argv, os.path.join(tmp, "%s-w%d.log" % (name, w)))
            B.wait_port(port, child=d)
            h = B.Child("handler-%s-w%d" % (name, w), [handler, "--base", base, "--id", "bench-%s" % name,
                                                       "--duration", "3600"],
                        os.path.join(tmp, "handler-%s-w%d.log" % (name, w)))
            daemons.append(("%s --workers %d" % (name, w), port, d, h))
        # Warm-up (also checks that the pair answers correctly); not counted.
        for label, port, d, h in daemons:
            r, err = run_wrk(port, 1, a.connections, lua)
            if not r or r["good"] == 0 or r["bad"] > 0:
                B.log("WARM-UP FAIL %s: %s %s\n%s" % (label, r, err, d.log_tail()))
        res = {}
        for rnd in range(a.rounds):
            for label, port, d, h in daemons:
                if not d.alive():
                    continue
                cpu0 = B.cpu_s(d.pid)
                r, err = run_wrk(port, a.duration, a.connections, lua)
                cpu = B.cpu_s(d.pid) - cpu0
                if not d.alive():
                    B.log("CRASH: %s exited (rc=%s):\n%s" % (label, d.returncode(), d.log_tail()))
                    failed = True
                if r is None:
                    B.log("%s: wrk gave no result: %s" % (label, err[:500]))
                    continue
                r["cpu_us"] = cpu * 1e6 / r["good"] if r["good"] else 0.0
                res.setdefault(label, []).append(r)
                B.log("round %d  %-20s rps=%8.0f p50=%6.2fms p99=%6.2fms cpu/req=%5.1fus good=%d bad=%d non2xx=%d "
                      "sockerr=%d" % (rnd + 1, label, r["rps"], r.get("p50", 0), r.get("p99", 0), r["cpu_us"],
                                      r["good"], r["bad"], r["non2xx"], r["errors"]))
        z, c = res.get(daemons[0][0], []), res.get(daemons[1][0], [])
        zm = B.median([r["rps"] for r in z])
        cm = B.median([r["rps"] for r in c])

        def band(rs):
            v = [r["rps"] for r in rs]
            return ("%.2f" % (max(v) / min(v))) if v and min(v) > 0 else "-"

        for label, rs, m in ((daemons[0][0], z, zm), (daemons[1][0], c, cm)):
            rows.append([w, label, "%.0f" % m,
                         "%.2f" % B.median([r.get("p50", 0) for r in rs]),
                         "%.2f" % B.median([r.get("p99", 0) for r in rs]),
                         "%.1f" % B.median([r["cpu_us"] for r in rs]),
                         "%d/%d" % (sum(r["bad"] for r in rs), sum(r["errors"] for r in rs)),
                         " ".join("%.0f" % r["rps"] for r in rs), band(rs),
                         ("%.2fx" % (m / cm)) if cm else "-"])
        for label, port, d, h in daemons:
            d.stop()
            h.stop()
            B.log("%s: %s" % (label, h.log_tail(1)))

    print("server mode, %s, wrk -t1 -c%d, %d rounds x %ds, %s" % (
        datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), a.connections, a.rounds, a.duration, B.machine_line()))
    print("zhttpd: %s" % zhttpd)
    print(B.fmt_table(rows, ["workers", "daemon", "median req/s", "p50 ms", "p99 ms", "CPU us/req", "bad/sock err",
                             "rounds req/s", "max/min", "vs condure"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
