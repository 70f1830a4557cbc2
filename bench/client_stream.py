#!/usr/bin/env python3
"""Client mode, stream mode: zhttpd vs zurl, with and without ignore-policies (issue 12).

Pushpin, zhttpd's main client-mode user, sends the requests it proxies in stream mode (PUSH to
in_spec, replies on the out_spec PUB) with "ignore-policies": true. This measures exactly that path
beside the policy-checked one: bench/zhttp_load in stream mode (N requests in flight, each
{from, id, seq 0, method GET, uri, stream true, credits}; only code 200 with the exact body counts)
against a local nginx (one small static file, keep-alive), for

    zhttpd --workers 1      without, then with ignore-policies
    zurl 1.11 (1 thread)    without, then with ignore-policies
    wrk -> nginx            the ceiling: the origin alone, HTTP keep-alive, same in-flight count

Both daemons run on the same generated Zurl config (defpolicy=allow, ipc specs in a temp dir). At each
in-flight level the rounds are interleaved (zhttpd, zhttpd+ip, zurl, zurl+ip, wrk, then again) and the
medians printed, with zhttpd+ignore-policies against zhttpd without it and each zhttpd line against zurl.
Every process it starts is stopped at the end.

usage: bench/client_stream.py [--zhttpd PATH] [--duration SECS] [--warmup SECS] [--rounds N]
                              [--levels 10,200] [--workers 1]
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


def zurl_conf(path, instance, base):
    with open(path, "w") as f:
        f.write("[General]\n"
                "instance_id=%s\n"
                "in_spec=%s-in\n"
                "in_stream_spec=%s-in-stream\n"
                "out_spec=%s-out\n"
                "defpolicy=allow\n"
                "max_open_requests=10000\n"
                "buffer_size=200000\n"
                "timeout=600\n"
                "in_hwm=10000\n"
                "out_hwm=10000\n" % (instance, base, base, base))


def run_load(load, base, url, body_file, inflight, duration, warmup, ignore):
    cmd = [load, "--stream-in", base + "-in", "--stream-out", base + "-out", "--url", url,
           "--body-file", body_file, "--inflight", str(inflight), "--duration", str(duration),
           "--warmup", str(warmup), "--req-timeout", "5"] + (["--ignore-policies"] if ignore else [])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + warmup + 30)
    m = re.search(r"^RESULT (.*)$", p.stdout, re.M)
    if not m:
        return None, p.stderr.strip()
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}, p.stderr.strip()


def run_wrk(url, secs, conns, lua):
    env = dict(os.environ, WRK_EXPECT_BODY=BODY.decode())
    cmd = ["wrk", "-t1", "-c%d" % conns, "-d%ds" % max(1, round(secs)), "--latency", "-s", lua, url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 30, env=env)
    m = re.search(r"^CHECK (.*)$", p.stdout, re.M)
    if not m:
        return None, (p.stdout + p.stderr).strip()
    r = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["rps"] = r["good"] / (r["dur_us"] / 1e6) if r["dur_us"] else 0.0
    r["bad"] = r["bad"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
    for q in ("50", "99"):
        mm = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % q, p.stdout, re.M)
        r["p%s_us" % q] = float(mm.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[mm.group(2)] if mm else 0.0
    r["timeouts"] = 0.0
    return r, ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zhttpd", default=B.default_zhttpd())
    ap.add_argument("--zurl", default="zurl")
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per round")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--levels", default="10,200", help="requests in flight, comma-separated")
    ap.add_argument("--workers", type=int, default=1, help="zhttpd --workers (zurl has one thread)")
    a = ap.parse_args()
    zhttpd = os.path.abspath(a.zhttpd)
    if not os.access(zhttpd, os.X_OK):
        sys.exit("zhttpd binary not found: %s (pass --zhttpd or set ZHTTPD)" % zhttpd)
    levels = [int(x) for x in a.levels.split(",") if x]

    B.build_tools()
    load = os.path.join(B.BENCH_DIR, "zhttp_load")
    lua = os.path.join(B.BENCH_DIR, "check_body.lua")
    tmp = B.make_tmpdir("zhttpd-bench-stream.")
    nginx, port = B.start_nginx(tmp, {"hello.txt": BODY})
    url = "http://127.0.0.1:%d/hello.txt" % port
    body_file = os.path.join(tmp, "www", "hello.txt")

    daemons = []  # (name, child, base)
    base = "ipc://%s/zhttpd" % tmp
    zurl_conf(os.path.join(tmp, "zhttpd.conf"), "zhttpd-bench", base)
    daemons.append(("zhttpd", B.Child("zhttpd", [zhttpd, "--config", os.path.join(tmp, "zhttpd.conf"),
                                                 "--workers", str(a.workers), "--log-level", "1"],
                                      os.path.join(tmp, "zhttpd.log")), base))
    base = "ipc://%s/zurl" % tmp
    zurl_conf(os.path.join(tmp, "zurl.conf"), "zurl-bench", base)
    daemons.append(("zurl", B.Child("zurl", [a.zurl, "--config=%s" % os.path.join(tmp, "zurl.conf"),
                                             "--loglevel=1"], os.path.join(tmp, "zurl.log")), base))
    for _, c, base in daemons:
        for suffix in ("-in", "-out"):
            B.wait_path(base[len("ipc://"):] + suffix, child=c)

    zw = "zhttpd --workers %d" % a.workers
    targets = []  # (label, child or None, base, ignore)
    for name, c, base in daemons:
        label = zw if name == "zhttpd" else "zurl 1.11 (1 thread)"
        targets.append((label, c, base, False))
        targets.append((label + " +ignore-policies", c, base, True))
    ceiling = "wrk -> nginx (ceiling)"
    targets.append((ceiling, None, None, False))

    for label, c, base, ignore in targets:
        if c is None:
            continue
        r, err = run_load(load, base, url, body_file, 2, 0.3, 0.2, ignore)
        if not r or r["ok"] == 0 or r["bad"] > 0:
            B.log("SMOKE FAIL %s: %s %s\n%s" % (label, r, err, c.log_tail()))

    B.log("machine: " + B.machine_line())
    results = {}
    dead = set()
    for level in levels:
        for rnd in range(a.rounds):
            for label, c, base, ignore in targets:
                if c is None:
                    r, err = run_wrk(url, a.duration, level, lua)
                    r and r.update(cpu_us=0.0)
                else:
                    if c.name in dead:
                        continue
                    cpu0 = B.cpu_s(c.pid)
                    r, err = run_load(load, base, url, body_file, level, a.duration, a.warmup, ignore)
                    cpu = B.cpu_s(c.pid) - cpu0
                    if not c.alive():
                        B.log("CRASH: %s exited (rc=%s) during the %d-in-flight round:\n%s"
                              % (c.name, c.returncode(), level, c.log_tail()))
                        dead.add(c.name)
                    if r:
                        r["cpu_us"] = cpu * 1e6 / r["total_ok"] if r["total_ok"] else 0.0
                if r is None:
                    B.log("%s: no result: %s" % (label, err))
                    continue
                results.setdefault((label, level), []).append(r)
                B.log("round %d  %-36s inflight=%-4d rps=%8.0f p50=%7.2fms p99=%7.2fms cpu/req=%5.0fus bad=%d "
                      "timeouts=%d%s" % (rnd + 1, label, level, r["rps"], r["p50_us"] / 1000,
                                         r["p99_us"] / 1000, r["cpu_us"], r["bad"], r["timeouts"],
                                         ("  stderr: " + err[:200]) if err else ""))

    def med(label, level):
        return B.median([r["rps"] for r in results.get((label, level), [])])

    rows = []
    for level in levels:
        for label, c, base, ignore in targets:
            rs = results.get((label, level), [])
            if not rs:
                rows.append([level, label] + ["-"] * 8)
                continue
            rps = med(label, level)
            zurl = med("zurl 1.11 (1 thread)" + (" +ignore-policies" if ignore else ""), level)
            rows.append([level, label, "%.0f" % rps,
                         "%.2f" % (B.median([r["p50_us"] for r in rs]) / 1000),
                         "%.2f" % (B.median([r["p99_us"] for r in rs]) / 1000),
                         "%.0f" % B.median([r["cpu_us"] for r in rs]) if c else "-",
                         "%d/%d" % (sum(r["bad"] for r in rs), sum(r["timeouts"] for r in rs)),
                         " ".join("%.0f" % r["rps"] for r in rs),
                         ("%.2fx" % (rps / zurl)) if zurl and label.startswith("zhttpd") else "-",
                         ("%+.1f%%" % (100 * (rps / med(zw, level) - 1)))
                         if ignore and label.startswith("zhttpd") and med(zw, level) else "-"])
    print("client stream mode, %s, %d rounds x %.1fs (+%.1fs warm-up), %s" % (
        datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), a.rounds, a.duration, a.warmup, B.machine_line()))
    print("zhttpd: %s" % zhttpd)
    print(B.fmt_table(rows, ["in flight", "daemon", "median req/s", "p50 ms", "p99 ms", "CPU us/req",
                             "bad/timeouts", "rounds req/s", "vs zurl (same mode)", "ignore vs checked"]))
    for _, c, _ in daemons:
        if not c.alive():
            print("NOTE: %s was not running at the end (rc=%s)" % (c.name, c.returncode()))
        c.stop()
    nginx.stop()
    return 0 if not dead else 1


if __name__ == "__main__":
    sys.exit(main())
