"""Server role with no handler to take a request: the client waits up to --handler-wait, then gets
503, and no handler ever receives that request later. A handler that vanishes mid-session (its
ROUTER identity is unreachable) gets the client a 502."""
import time

import pytest
import zmq

from srvkit import HttpConn, StreamHandler, get, start


def test_no_handler_503_after_handler_wait_and_never_delivered_later(rundir, zctx):
    d, info = start(rundir, "--handler-wait", "0.5", workers=2)
    conns = [HttpConn(info["port"]) for _ in range(3)]
    try:
        t0 = time.monotonic()
        for i, c in enumerate(conns):
            c.send(get(f"/lost{i}"))
        for c in conns:
            r = c.read_response()
            assert r.status == 503 and r.body == b"no handler available\n"
            assert r.header("Connection") == "close"
        took = time.monotonic() - t0
        assert 0.4 < took < 3.0, took
        d.wait_log(r"no handler took the request within 500 ms: 503", count=3)
        h = StreamHandler(zctx, info["base"])
        assert h.no_request(700), "a request answered with 503 reached a handler"
        c = HttpConn(info["port"])
        c.send(get("/fresh"))
        req = h.recv_request()
        assert req["uri"] == b"http://a/fresh"
        h.respond(req["id"], body=b"served")
        assert c.read_response().body == b"served"
        c.close()
        h.close()
    finally:
        for c in conns:
            c.close()
        d.stop()


def test_handler_connecting_within_handler_wait_gets_the_request(rundir, zctx):
    d, info = start(rundir, "--handler-wait", "5")
    c = HttpConn(info["port"])
    try:
        c.send(get("/early"))
        time.sleep(0.5)  # the request waits in the bridge
        h = StreamHandler(zctx, info["base"], settle=0)
        req = h.recv_request()
        assert req["uri"] == b"http://a/early"
        time.sleep(0.2)  # our PUB must reach zhttpd's SUB before we answer
        h.respond(req["id"], body=b"late but fine")
        r = c.read_response()
        assert r.status == 200 and r.body == b"late but fine"
        h.close()
    finally:
        c.close()
        d.stop()


def test_handler_that_went_away_gets_the_client_502(rundir, zctx):
    d, info = start(rundir)
    h = StreamHandler(zctx, info["base"], ident=b"h1")
    c = HttpConn(info["port"])
    try:
        c.send(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n" + b"b" * 100)
        req = h.recv_request()
        assert req["more"] is True
        h.ack(req["id"], credits=10)
        first, _ = h.wait_router(lambda p: "body" in p)
        assert first["body"] == b"b" * 10  # our ROUTER took it: zhttpd knows we are reachable
        # the handler process goes away (its ROUTER disconnects), a last credit still arrives
        h.router.close(0)
        time.sleep(0.3)
        h.send(req["id"], type="credit", credits=1000)
        r = c.read_response()
        assert r.status == 502 and r.body == b"handler went away\n"
        d.wait_log(r"peer 'h1' unreachable, message returned to its worker")
        d.wait_log(r"session %s: handler 'h1' unreachable" % req["id"].decode())
    finally:
        c.close()
        h.pull.close(0)
        h.pub.close(0)
        d.stop()


def test_pub_only_handler_is_not_taken_for_gone(rundir, zctx):
    """A Condure README handler has no ROUTER: credits to it are dropped, its session lives on."""
    d, info = start(rundir, "--buffer-size", "1024")
    h = StreamHandler(zctx, info["base"], ident=b"pubonly")
    h.router.close(0)
    c = HttpConn(info["port"])
    try:
        c.send(get("/stream"))
        req = h.recv_request()
        h.respond(req["id"], body=b"x" * 1000, more=True)  # within the 1024 initial credits
        d.wait_log(r"peer 'pubonly' unreachable, message dropped")  # the credit for them
        h.send(req["id"], body=b"y" * 20)
        r = c.read_response()
        assert r.status == 200 and r.body == b"x" * 1000 + b"y" * 20
    finally:
        c.close()
        h.pull.close(0)
        h.pub.close(0)
        d.stop()


def test_client_gone_while_waiting_for_a_handler_is_logged_not_answered(rundir, zctx):
    d, info = start(rundir, "--handler-wait", "0.5")
    try:
        c = HttpConn(info["port"])
        c.send(get("/gone"))
        time.sleep(0.1)
        c.close()
        d.wait_log(r"client closed mid-request")
        # the parked request still expires in the bridge and comes back for an ended session
        d.wait_log(r"undelivered data packet for ended session", timeout=3)
        h = StreamHandler(zctx, info["base"])
        assert h.no_request(500)
        h.close()
    finally:
        d.stop()
