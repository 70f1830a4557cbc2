"""Server role deadlines: the head timeout (slowloris), --stream-timeout on a live session (the
handler gets a cancel, which Condure does not send), and handler silence (session expiry)."""
import threading
import time

import pytest
import zmq

from srvkit import HttpConn, StreamHandler, get, start


def test_slowloris_clients_are_closed_on_the_head_timeout_while_others_are_served(rundir, zctx):
    d, info = start(rundir, "--head-timeout", "1", workers=2)
    h = StreamHandler(zctx, info["base"])
    port = info["port"]
    silent = HttpConn(port)  # connects, sends nothing
    slow = HttpConn(port)  # trickles a head, one byte at a time
    stop = threading.Event()

    def trickle():
        for b in b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"y" * 100:
            if stop.is_set():
                return
            try:
                slow.send(bytes([b]))
            except OSError:
                return
            time.sleep(0.1)

    t = threading.Thread(target=trickle)
    t0 = time.monotonic()
    t.start()
    try:
        # meanwhile, normal clients get answers
        for i in range(3):
            c = HttpConn(port)
            c.send(get(f"/ok{i}"))
            req = h.recv_request()
            assert req["uri"] == f"http://a/ok{i}".encode()
            h.respond(req["id"], body=b"fine")
            assert c.read_response().body == b"fine"
            c.close()
        r = slow.read_response()
        took = time.monotonic() - t0
        assert r.status == 408 and r.header("Connection") == "close"
        assert 0.8 < took < 3.0, took
        assert slow.closed_by_peer()
        assert silent.closed_by_peer(timeout=3.0)
        assert silent.buf == b""  # closed without a response: no request was started
        d.wait_log(r"request head not complete within 1000 ms: 408")
        d.wait_log(r"no request within the head timeout \(1000 ms\), closed")
        assert h.no_request(200), "the handler saw the slow request"
    finally:
        stop.set()
        t.join(5)
        silent.close()
        slow.close()
        h.close()
        d.stop()


def test_stream_timeout_closes_an_inactive_client_and_cancels_the_handler(rundir, zctx):
    d, info = start(rundir, "--stream-timeout", "1")
    h = StreamHandler(zctx, info["base"])
    port = info["port"]
    idle = HttpConn(port)
    busy = HttpConn(port)
    try:
        idle.send(get("/idle"))
        r_idle = h.recv_request()
        busy.send(get("/busy"))
        r_busy = h.recv_request()
        t0 = time.monotonic()
        for rid in (r_idle["id"], r_busy["id"]):
            h.respond(rid, headers=[("Content-Type", "text/plain")], body=b"start\n", more=True)
        # the busy session keeps sending, so its client sees traffic; the idle one sees none
        while time.monotonic() - t0 < 2.0:
            h.send(r_busy["id"], body=b"tick\n", more=True)
            time.sleep(0.25)
        cancel, seen = h.wait_router(
            lambda p: p.get("type") == b"cancel" and p["id"] == r_idle["id"], timeout_s=3)
        assert cancel is not None, seen
        took = time.monotonic() - t0
        assert 0.8 < took < 4.0, took
        data = idle.read_until_closed()
        assert data is not None and data.startswith(b"HTTP/1.1 200 OK\r\n"), data
        d.wait_log(r"client inactive for 1000 ms, closing")
        # the busy client is still being served past the timeout
        assert not any(p.get("type") == b"cancel" and p["id"] == r_busy["id"] for p in seen)
        h.send(r_busy["id"], body=b"bye\n")
        got = busy.read_response().body
        assert got.startswith(b"start\ntick\n") and got.endswith(b"bye\n")
    finally:
        idle.close()
        busy.close()
        h.close()
        d.stop()


def test_handler_silence_expires_the_session_504_and_cancel(rundir, zctx):
    d, info = start(rundir, "--server-keepalive-ms", "200", "--server-session-expiry-ms", "1000")
    h = StreamHandler(zctx, info["base"])
    c = HttpConn(info["port"])
    try:
        c.send(get("/wait"))
        req = h.recv_request()
        h.ack(req["id"])  # zhttpd learns our address, then we go silent
        t0 = time.monotonic()
        r = c.read_response()
        took = time.monotonic() - t0
        assert r.status == 504 and r.body == b"handler timed out\n"
        assert 0.8 < took < 3.0, took
        cancel, seen = h.wait_router(lambda p: p.get("type") == b"cancel", timeout_s=3)
        assert cancel is not None and cancel["id"] == req["id"], seen
        # keep-alives went out while we were silent, each with the next seq
        kas = [p for p in seen if p.get("type") == b"keep-alive"]
        assert len(kas) >= 2, seen
        seqs = [p["seq"] for p in seen]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        d.wait_log(r"handler silent for 1000 ms, expired")
    finally:
        c.close()
        h.close()
        d.stop()
