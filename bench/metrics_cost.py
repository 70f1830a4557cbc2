#!/usr/bin/env python3
"""The cost of --metrics (issue 17): zhttpd with and without --metrics, in one run, interleaved.

Server keep-alive: `wrk -t1 -c50` with bench/check_body.lua against zhttpd --workers 1 and
bench/handler (as server_mode.py). Client req mode: bench/zhttp_load at 200 in flight against
zhttpd --workers 1 with a local nginx origin (as client_mode.py). Each line runs --rounds rounds,
the two variants alternating (off, on, off, on, ...); while the "on" variant runs, the endpoint is
scraped once per second (as Prometheus would, at a much higher rate than its usual 15 s). Prints the
median req/s of each and the ratio on/off.

usage: bench/metrics_cost.py [--zhttpd PATH] [--duration SECS] [--rounds N]
"""

import argparse
import datetime
import os
import sys
import threading
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
from client_mode import BODY, run_load, zurl_conf  # noqa: E402
from server_mode import run_wrk  # noqa: E402


class Scraper:
    def __init__(self, port):
        self.port, self.stop, self.n = port, threading.Event(), 0
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.wait(1.0):
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=5) as r:
                r.read()
            self.n += 1

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *e):
        self.stop.set()
        self.t.join()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zhttpd", default=B.default_zhttpd())
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--inflight", type=int, default=200)
    a = ap.parse_args()
    zhttpd = os.path.abspath(a.zhttpd)
    B.build_tools()
    tmp = B.make_tmpdir("zhttpd-bench-metrics.")
    handler = os.path.join(B.BENCH_DIR, "handler")
    lua = os.path.join(B.BENCH_DIR, "check_body.lua")
    load = os.path.join(B.BENCH_DIR, "zhttp_load")
    nginx, nport = B.start_nginx(tmp, {"hello.txt": BODY})
    url = "http://127.0.0.1:%d/hello.txt" % nport
    body_file = os.path.join(tmp, "www", "hello.txt")
    B.log("machine: " + B.machine_line())

    # server keep-alive
    srv = []  # (label, port, daemon, handler, metrics port)
    for on in (False, True):
        name = "server-metrics-%s" % ("on" if on else "off")
        port, mport = B.free_port(), B.free_port()
        base = "ipc://%s/%s" % (tmp, name)
        argv = [zhttpd, "--listen", "127.0.0.1:%d" % port, "--zclient-stream", base, "--workers", "1",
                "--log-level", "1"] + (["--metrics", str(mport)] if on else [])
        d = B.Child(name, argv, os.path.join(tmp, name + ".log"))
        B.wait_port(port, child=d)
        h = B.Child("handler-" + name, [handler, "--base", base, "--id", "bench-" + name, "--duration", "3600"],
                    os.path.join(tmp, "handler-%s.log" % name))
        srv.append(("metrics " + ("on" if on else "off"), port, d, h, mport if on else None))
    # client req mode
    cli = []
    for on in (False, True):
        name = "client-metrics-%s" % ("on" if on else "off")
        ep = "ipc://%s/%s-req" % (tmp, name)
        conf = os.path.join(tmp, name + ".conf")
        zurl_conf(conf, name, ep)
        mport = B.free_port()
        argv = [zhttpd, "--config", conf, "--workers", "1", "--log-level", "1"] + (
            ["--metrics", str(mport)] if on else [])
        c = B.Child(name, argv, os.path.join(tmp, name + ".log"))
        B.wait_path(ep[len("ipc://"):], child=c)
        cli.append(("metrics " + ("on" if on else "off"), ep, c, mport if on else None))

    for label, port, d, h, mport in srv:
        run_wrk(port, 1, 50, lua)
    for label, ep, c, mport in cli:
        run_load(load, ep, url, body_file, 2, 0.3, 0.2)

    res = {}
    failed = False
    for rnd in range(a.rounds):
        for label, port, d, h, mport in srv:
            if mport:
                with Scraper(mport):
                    r, err = run_wrk(port, a.duration, 50, lua)
            else:
                r, err = run_wrk(port, a.duration, 50, lua)
            if r is None or r["bad"] > 0 or not d.alive():
                B.log("server %s: %s %s" % (label, r, err[:300]))
                failed = True
                continue
            res.setdefault(("server keep-alive", label), []).append(r["rps"])
            B.log("round %d server keep-alive %-12s rps=%8.0f" % (rnd + 1, label, r["rps"]))
        for label, ep, c, mport in cli:
            if mport:
                with Scraper(mport):
                    r, err = run_load(load, ep, url, body_file, a.inflight, a.duration, 1.0)
            else:
                r, err = run_load(load, ep, url, body_file, a.inflight, a.duration, 1.0)
            if r is None or r["bad"] > 0 or not c.alive():
                B.log("client %s: %s %s" % (label, r, err[:300]))
                failed = True
                continue
            res.setdefault(("client req mode", label), []).append(r["rps"])
            B.log("round %d client req mode   %-12s rps=%8.0f" % (rnd + 1, label, r["rps"]))
    for label, port, d, h, mport in srv:
        d.stop()
        h.stop()
    for label, ep, c, mport in cli:
        c.stop()
    nginx.stop()

    rows = []
    for line in ("server keep-alive", "client req mode"):
        off = B.median(res.get((line, "metrics off"), [0]))
        on = B.median(res.get((line, "metrics on"), [0]))
        for label, m in (("metrics off", off), ("metrics on", on)):
            rows.append([line, label, "%.0f" % m,
                         " ".join("%.0f" % v for v in res.get((line, label), [])),
                         ("%.3f" % (m / off)) if off and label == "metrics on" else "-"])
    print("metrics on vs off, %s, %d rounds x %ds, zhttpd --workers 1, %s" % (
        datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), a.rounds, a.duration, B.machine_line()))
    print("zhttpd: %s" % zhttpd)
    print(B.fmt_table(rows, ["line", "variant", "median req/s", "rounds req/s", "on/off"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
