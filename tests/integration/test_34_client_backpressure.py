"""max_open_requests: beyond its share of the limit a worker does not drop or refuse requests,
it acknowledges them and holds them in a bounded queue until a request slot frees; a queued
session can be cancelled or time out like any other."""
import asyncio
import time

import pytest
import zmq
from aiohttp import web

from streamorigin import AioOrigin
from test_03_end_to_end import req_roundtrip
from zclient import Requester, Session, start_daemon


def counting_origin(app):
    stats = app["stats"] = {"now": 0, "peak": 0, "paths": []}

    async def work(request):
        stats["now"] += 1
        stats["peak"] = max(stats["peak"], stats["now"])
        stats["paths"].append(request.path)
        await asyncio.sleep(float(request.query.get("s", "0.4")))
        stats["now"] -= 1
        return web.Response(text=request.path)

    app.router.add_get("/w/{n}", work)


def test_requests_beyond_the_limit_wait_for_a_slot(rundir, zctx):
    d, base = start_daemon(rundir, "max_open_requests = 2\n", workers=1)
    try:
        rq = Requester(zctx, base)
        with AioOrigin(counting_origin) as o:
            app = o.runner.app["stats"]
            sessions = [Session(rq) for _ in range(6)]
            for i, s in enumerate(sessions):
                s.start(uri=o.url(f"/w/{i}"), stream=True, credits=1000)
            for s in sessions:
                assert s.ack()["type"] == b"keep-alive"  # every request is acknowledged at once
            # cancel one that is still waiting: it never reaches the origin
            sessions[5].send(type="cancel")
            for i, s in enumerate(sessions[:5]):
                head, body, _ = s.response(timeout=10)
                assert head["code"] == 200 and body == f"/w/{i}".encode()
            assert app["peak"] == 2
            assert "/w/5" not in app["paths"]
            assert sorted(app["paths"]) == [f"/w/{i}" for i in range(5)]
        d.wait_log(r"worker 0: req1/s-\w+ waits for a slot \(2 running, \d+ waiting\)")
    finally:
        d.stop()


def test_req_mode_shares_the_limit(rundir, zctx):
    d, base = start_daemon(rundir, "max_open_requests = 1\n", workers=1)
    try:
        with AioOrigin(counting_origin) as o:
            import threading
            results = []
            threads = [threading.Thread(target=lambda i=i: results.append(
                req_roundtrip(zctx, f"{base}-req", {"id": f"q{i}", "method": "GET",
                                                     "uri": o.url(f"/w/{i}")}, 10000)))
                for i in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(15)
            assert sorted(r["body"] for r in results) == [b"/w/0", b"/w/1", b"/w/2"]
            assert o.runner.app["stats"]["peak"] == 1
    finally:
        d.stop()


def test_a_queued_session_lives_by_keep_alives_and_expires_in_silence(rundir, zctx):
    d, base = start_daemon(rundir, "max_open_requests = 1\nkeepalive_interval_ms = 300\n"
                           "session_expiry_ms = 2000\n", workers=1)
    try:
        rq = Requester(zctx, base)
        with AioOrigin(counting_origin) as o:
            busy, talking, silent = Session(rq), Session(rq), Session(rq)
            busy.start(uri=o.url("/w/0?s=1.8"), stream=True, credits=100)
            talking.start(uri=o.url("/w/1?s=1.5"), stream=True, credits=100)
            silent.start(uri=o.url("/w/2"), stream=True, credits=100)
            for s in (busy, talking, silent):
                s.ack()
            t0 = time.monotonic()
            while time.monotonic() - t0 < 2.0:
                for s in (busy, talking):
                    s.send(type="keep-alive")
                time.sleep(0.3)
            head, body, _ = busy.response()
            assert body == b"/w/0"
            head, body, _ = talking.response()
            assert body == b"/w/1"
            # the silent one got keep-alives while it waited, then expired without a word
            pkts = []
            while not silent.quiet(0.2):
                pkts.append(silent.recv())
            assert pkts and all(p["type"] == b"keep-alive" for p in pkts)
            assert "/w/2" not in o.runner.app["stats"]["paths"]
        d.wait_log(r"session req1/%s expired" % silent.rid.decode())
    finally:
        d.stop()
