#!/usr/bin/env python3
"""Client mode: zhttpd vs zurl, req-mode GETs to a local nginx, measured by bench/zhttp_load.

Starts a local nginx origin (generated config, one small static file, access_log off), zurl with a
Zurl config (defpolicy=allow, in_req_spec on an ipc path in a temp dir) and zhttpd on the same config
with --workers 1 (zurl is single-threaded) plus, as an extra line, zhttpd --workers 2. At each in-flight
level it interleaves the rounds (zhttpd-w1, zurl, zhttpd-w2, zhttpd-w1, zurl, ...) and prints the
median req/s, p50, p99 and daemon CPU time per correct reply (all threads, user+sys: less sensitive
to other load on a shared machine than req/s) of each, and the ratios of req/s against zurl. Only replies with code 200 and the
exact body of the file count. Every process it starts is stopped at the end.

usage: bench/client_mode.py [--zhttpd PATH] [--duration SECS] [--warmup SECS] [--rounds N]
                            [--levels 10,200] [--extra-workers 2]
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

BODY = b"hello from the zhttpd bench origin\n"


def zurl_conf(path, instance, req_spec):
    with open(path, "w") as f:
        f.write("[General]\n"
                "instance_id=%s\n"
                "in_req_spec=%s\n"
                "defpolicy=allow\n"
                "max_open_requests=10000\n"
                "buffer_size=200000\n"
                "timeout=600\n"
                "in_hwm=10000\n"
                "out_hwm=10000\n" % (instance, req_spec))


def run_load(load, ep, url, body_file, inflight, duration, warmup):
    cmd = [load, "--endpoint", ep, "--url", url, "--body-file", body_file, "--inflight", str(inflight),
           "--duration", str(duration), "--warmup", str(warmup), "--req-timeout", "5"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + warmup + 30)
    m = re.search(r"^RESULT (.*)$", p.stdout, re.M)
    if not m:
        return None, p.stderr.strip()
    r = {}
    for kv in m.group(1).split():
        k, v = kv.split("=")
        r[k] = float(v)
    return r, p.stderr.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zhttpd", default=B.default_zhttpd())
    ap.add_argument("--zurl", default="zurl")
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per round")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--levels", default="10,200", help="requests in flight, comma-separated")
    ap.add_argument("--extra-workers", type=int, default=2, help="also run zhttpd with this many workers (0: no)")
    a = ap.parse_args()
    zhttpd = os.path.abspath(a.zhttpd)
    if not os.access(zhttpd, os.X_OK):
        sys.exit("zhttpd binary not found: %s (pass --zhttpd or set ZHTTPD)" % zhttpd)
    levels = [int(x) for x in a.levels.split(",") if x]

    B.build_tools()
    load = os.path.join(B.BENCH_DIR, "zhttp_load")
    tmp = B.make_tmpdir("zhttpd-bench-client.")
    nginx, port = B.start_nginx(tmp, {"hello.txt": BODY})
    url = "http://127.0.0.1:%d/hello.txt" % port
    body_file = os.path.join(tmp, "www", "hello.txt")

    targets = []  # (label, child, endpoint)
    ep = "ipc://%s/zhttpd-w1-req" % tmp
    zurl_conf(os.path.join(tmp, "zhttpd-w1.conf"), "zhttpd-w1", ep)
    c = B.Child("zhttpd-w1", [zhttpd, "--config", os.path.join(tmp, "zhttpd-w1.conf"), "--workers", "1",
                              "--log-level", "1"], os.path.join(tmp, "zhttpd-w1.log"))
    targets.append(("zhttpd --workers 1", c, ep))
    ep = "ipc://%s/zurl-req" % tmp
    zurl_conf(os.path.join(tmp, "zurl.conf"), "zurl-bench", ep)
    c = B.Child("zurl", [a.zurl, "--config=%s" % os.path.join(tmp, "zurl.conf"), "--loglevel=1"],
                os.path.join(tmp, "zurl.log"))
    targets.append(("zurl 1.11 (1 thread)", c, ep))
    if a.extra_workers > 0:
        ep = "ipc://%s/zhttpd-w%d-req" % (tmp, a.extra_workers)
        name = "zhttpd-w%d" % a.extra_workers
        zurl_conf(os.path.join(tmp, name + ".conf"), name, ep)
        c = B.Child(name, [zhttpd, "--config", os.path.join(tmp, name + ".conf"), "--workers",
                           str(a.extra_workers), "--log-level", "1"], os.path.join(tmp, name + ".log"))
        targets.append(("zhttpd --workers %d" % a.extra_workers, c, ep))
    for label, c, ep in targets:
        B.wait_path(ep[len("ipc://"):], child=c)

    # Smoke check: each target must answer correctly before it is measured.
    for label, c, ep in targets:
        r, err = run_load(load, ep, url, body_file, 2, 0.3, 0.2)
        if not r or r["ok"] == 0 or r["bad"] > 0:
            B.log("SMOKE FAIL %s: %s %s\n%s" % (label, r, err, c.log_tail()))

    B.log("machine: " + B.machine_line())
    results = {}  # (label, level) -> list of dicts
    dead = set()
    for level in levels:
        for rnd in range(a.rounds):
            for label, c, ep in targets:
                if label in dead:
                    continue
                cpu0 = B.cpu_s(c.pid)
                r, err = run_load(load, ep, url, body_file, level, a.duration, a.warmup)
                cpu = B.cpu_s(c.pid) - cpu0
                if not c.alive():
                    B.log("CRASH: %s exited (rc=%s) during the %d-in-flight round:\n%s"
                          % (label, c.returncode(), level, c.log_tail()))
                    dead.add(label)
                if r is None:
                    B.log("%s: no result: %s" % (label, err))
                    continue
                r["cpu_us"] = cpu * 1e6 / r["total_ok"] if r["total_ok"] else 0.0
                results.setdefault((label, level), []).append(r)
                B.log("round %d  %-22s inflight=%-4d rps=%8.0f p50=%7.2fms p99=%7.2fms cpu/req=%5.0fus ok=%d bad=%d "
                      "timeouts=%d%s" % (rnd + 1, label, level, r["rps"], r["p50_us"] / 1000, r["p99_us"] / 1000,
                                         r["cpu_us"], r["ok"], r["bad"], r["timeouts"],
                                         ("  stderr: " + err[:200]) if err else ""))

    zurl_label = targets[1][0]
    rows = []
    for level in levels:
        base = B.median([r["rps"] for r in results.get((zurl_label, level), [])])
        for label, _, _ in targets:
            rs = results.get((label, level), [])
            if not rs:
                rows.append([level, label, "-", "-", "-", "-", "-", "-", "-"])
                continue
            rps = B.median([r["rps"] for r in rs])
            rows.append([level, label, "%.0f" % rps,
                         "%.2f" % (B.median([r["p50_us"] for r in rs]) / 1000),
                         "%.2f" % (B.median([r["p99_us"] for r in rs]) / 1000),
                         "%.0f" % B.median([r["cpu_us"] for r in rs]),
                         "%d/%d" % (sum(r["bad"] for r in rs), sum(r["timeouts"] for r in rs)),
                         " ".join("%.0f" % r["rps"] for r in rs),
                         ("%.2fx" % (rps / base)) if base else "-"])
    print("client mode, %s, %d rounds x %.1fs (+%.1fs warm-up), %s" % (
        datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), a.rounds, a.duration, a.warmup, B.machine_line()))
    print("zhttpd: %s" % zhttpd)
    print(B.fmt_table(rows, ["in flight", "daemon", "median req/s", "p50 ms", "p99 ms", "CPU us/req", "bad/timeouts",
                             "rounds req/s", "vs zurl"]))
    for label, c, _ in targets:
        if not c.alive():
            print("NOTE: %s was not running at the end (rc=%s)" % (label, c.returncode()))
    for label, c, _ in targets:
        c.stop()
    nginx.stop()
    return 0 if not dead else 1


if __name__ == "__main__":
    sys.exit(main())
