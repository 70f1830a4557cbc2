"""Server role clean shutdown on SIGTERM: stop accepting, close idle keep-alive connections at
once, let a response in flight finish within --shutdown-timeout, then cancel what is left (the
handler gets a cancel, a client still waiting gets 503); with --shutdown-timeout 0 cancel at once."""
import signal
import socket
import time

import pytest
import zmq

from srvkit import HttpConn, StreamHandler, get, start


def test_sigterm_drains_in_flight_closes_idle_then_cancels(rundir, zctx):
    d, info = start(rundir, "--shutdown-timeout", "2", workers=2)
    h = StreamHandler(zctx, info["base"])
    port = info["port"]
    idle, done, stuck = HttpConn(port), HttpConn(port), HttpConn(port)
    try:
        idle.send(get("/first"))
        req = h.recv_request()
        h.respond(req["id"], body=b"1")
        assert idle.read_response().body == b"1"  # now an idle keep-alive connection
        done.send(get("/finishes"))
        r_done = h.recv_request()
        stuck.send(get("/never"))
        r_stuck = h.recv_request()
        for rid in (r_done["id"], r_stuck["id"]):
            h.ack(rid)
        time.sleep(0.2)
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        # the idle connection is closed at once
        assert idle.closed_by_peer(timeout=1.0)
        assert time.monotonic() - t0 < 1.0
        # no new connections
        time.sleep(0.2)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        # the response in flight still completes, and says the connection closes
        h.respond(r_done["id"], body=b"in time")
        r = done.read_response()
        assert r.body == b"in time" and r.header("Connection") == "close"
        assert done.closed_by_peer()
        # the other one is cancelled when the timeout ends
        r = stuck.read_response()
        waited = time.monotonic() - t0
        assert r.status == 503 and r.body == b"server shutting down\n"
        assert 1.7 < waited < 5.0, waited
        cancel, seen = h.wait_router(lambda p: p.get("type") == b"cancel", timeout_s=3)
        assert cancel is not None and cancel["id"] == r_stuck["id"], seen
        d.proc.wait(10)
        d.wait_log(r"shutdown timeout: cancelling sessions still in flight")
    finally:
        for c in (idle, done, stuck):
            c.close()
        h.close()
        d.stop()
    assert d.proc.returncode == 0


def test_sigterm_with_timeout_zero_cancels_at_once(rundir, zctx):
    d, info = start(rundir, "--shutdown-timeout", "0", workers=2)
    h = StreamHandler(zctx, info["base"])
    port = info["port"]
    waiting, streaming = HttpConn(port), HttpConn(port)
    try:
        waiting.send(get("/w"))
        r_w = h.recv_request()
        streaming.send(get("/s"))
        r_s = h.recv_request()
        h.ack(r_w["id"])
        h.respond(r_s["id"], body=b"partial", more=True)
        time.sleep(0.3)
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(5)
        assert time.monotonic() - t0 < 2.0
        r = waiting.read_response()
        assert r.status == 503
        data = streaming.read_until_closed()
        assert data is not None and data.startswith(b"HTTP/1.1 200 OK") and b"partial" in data
        assert not data.endswith(b"0\r\n\r\n"), "a cancelled response must not look complete"
        cancels = set()
        while True:
            p = h.recv_router(1000)
            if p is None:
                break
            if p.get("type") == b"cancel":
                cancels.add(p["id"])
        assert cancels == {r_w["id"], r_s["id"]}
    finally:
        waiting.close()
        streaming.close()
        h.close()
        d.stop()
