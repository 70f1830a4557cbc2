"""Server role, req mode (--listen PORT,req + --zclient-req): the whole request goes to a handler
in one packet over the DEALER, the handler answers with one packet."""
import re
import time

import pytest
import zmq

from srvkit import HttpConn, ReqHandler, get, start


def test_req_get_roundtrip_and_keepalive_gets_fresh_ids(rundir, zctx):
    d, info = start(rundir, stream=False, req=True)
    h = ReqHandler(zctx, info["req_spec"])
    c = HttpConn(info["req_port"])
    try:
        c.send(b"GET /x?y=1 HTTP/1.1\r\nHost: example.org\r\nX-Client: c1\r\n\r\n")
        env, pkt = h.recv()
        assert re.fullmatch(rb"0-\d+-[0-9a-f]+", pkt["id"])
        assert pkt["method"] == b"GET"
        assert pkt["uri"] == b"http://example.org/x?y=1"
        assert [b"X-Client", b"c1"] in pkt["headers"]
        assert pkt["peer-address"] == b"127.0.0.1" and isinstance(pkt["peer-port"], int)
        for absent in ("seq", "stream", "credits", "more"):
            assert absent not in pkt, pkt
        assert pkt.get("body", b"") == b""
        # Connection and Transfer-Encoding from the handler are dropped, as Condure does
        h.reply(env, {"id": pkt["id"], "code": 200, "reason": "OK",
                      "headers": [["X-A", "b"], ["Connection", "close"],
                                  ["Transfer-Encoding", "chunked"]],
                      "body": b"hello req\n"})
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello req\n"
        assert r.header("X-A") == "b"
        assert r.header("Content-Length") == "10"
        assert not r.has_header("Transfer-Encoding") and not r.has_header("Connection")
        # the same connection serves the next request, under a new id
        c.send(get("/second"))
        env2, pkt2 = h.recv()
        assert pkt2["id"] != pkt["id"]
        assert pkt2["uri"] == b"http://a/second"
        h.reply(env2, {"id": pkt2["id"], "code": 404, "reason": "Not Found", "headers": [],
                       "body": b"nope"})
        r = c.read_response()
        assert r.status == 404 and r.reason == "Not Found" and r.body == b"nope"
    finally:
        c.close()
        h.close()
        d.stop()


def test_req_bodies_inline_content_length_and_chunked(rundir, zctx):
    d, info = start(rundir, "--buffer-size", "4096", stream=False, req=True)
    h = ReqHandler(zctx, info["req_spec"])
    c = HttpConn(info["req_port"])
    try:
        body = bytes(range(256)) * 200  # 51200 bytes: many buffers' worth
        c.send(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        env, pkt = h.recv()
        assert pkt["method"] == b"POST" and pkt["body"] == body
        h.reply(env, {"id": pkt["id"], "code": 200, "reason": "OK", "headers": [],
                      "body": b"%d" % len(pkt["body"])})
        assert c.read_response().body == b"51200"
        # chunked, with a trailer, and a pipelined request right behind it
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (b"abc", b"x" * 5000, b"end"))
        c.send(b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks +
               b"0\r\nX-Trailer: t\r\n\r\n" + get("/after"))
        env, pkt = h.recv()
        assert pkt["body"] == b"abc" + b"x" * 5000 + b"end"
        h.reply(env, {"id": pkt["id"], "code": 201, "reason": "Created", "headers": [],
                      "body": b"ok"})
        assert c.read_response().status == 201
        env, pkt = h.recv()
        assert pkt["uri"] == b"http://a/after" and pkt.get("body", b"") == b""
        h.reply(env, {"id": pkt["id"], "code": 200, "reason": "OK", "headers": [], "body": b"2"})
        assert c.read_response().body == b"2"
    finally:
        c.close()
        h.close()
        d.stop()


@pytest.mark.parametrize("chunked", [False, True])
def test_req_body_over_body_buffer_size_gets_413(rundir, zctx, chunked):
    d, info = start(rundir, "--body-buffer-size", "1000", stream=False, req=True)
    h = ReqHandler(zctx, info["req_spec"])
    c = HttpConn(info["req_port"])
    try:
        body = b"z" * 3000
        if chunked:
            c.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
                   b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        else:
            c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3000\r\n\r\n" + body)
        r = c.read_response()
        assert r.status == 413 and r.header("Connection") == "close"
        assert b"too large" in r.body
        assert c.closed_by_peer()
        assert h.no_request(300), "the handler saw an oversized request"
        d.wait_log(r"over --body-buffer-size \(1000\): 413")
        # a body at the limit is fine, and the next client is served
        c2 = HttpConn(info["req_port"])
        c2.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"y" * 1000)
        env, pkt = h.recv()
        assert len(pkt["body"]) == 1000
        h.reply(env, {"id": pkt["id"], "code": 200, "reason": "OK", "headers": [], "body": b""})
        assert c2.read_response().status == 200
        c2.close()
    finally:
        c.close()
        h.close()
        d.stop()


def test_req_timeout_gives_504_and_late_answer_is_dropped(rundir, zctx):
    d, info = start(rundir, "--req-timeout", "0.5", stream=False, req=True)
    h = ReqHandler(zctx, info["req_spec"])
    c = HttpConn(info["req_port"])
    try:
        t0 = time.monotonic()
        c.send(get("/slow"))
        env, pkt = h.recv()
        r = c.read_response()
        took = time.monotonic() - t0
        assert r.status == 504 and r.body == b"handler timed out\n"
        assert 0.4 < took < 3.0, took
        d.wait_log(r"no answer from the handler within 500 ms: 504")
        h.reply(env, {"id": pkt["id"], "code": 200, "reason": "OK", "headers": [], "body": b"x"})
        d.wait_log(r"server-req: data packet for unknown session '%s' dropped"
                   % pkt["id"].decode())
    finally:
        c.close()
        h.close()
        d.stop()


@pytest.mark.parametrize("answer", [
    {"type": "error", "condition": "bad-request"},
    {"type": "cancel"},
    {"code": 200, "reason": "OK", "headers": [], "body": b"x", "more": True},
])
def test_req_handler_error_cancel_or_more_gives_502(rundir, zctx, answer):
    d, info = start(rundir, stream=False, req=True)
    h = ReqHandler(zctx, info["req_spec"])
    c = HttpConn(info["req_port"])
    try:
        c.send(get())
        env, pkt = h.recv()
        h.reply(env, dict(answer, id=pkt["id"]))
        r = c.read_response()
        assert r.status == 502 and r.header("Connection") == "close"
        assert c.closed_by_peer()
    finally:
        c.close()
        h.close()
        d.stop()


def test_req_ids_are_unique_across_connections_and_workers(rundir, zctx):
    d, info = start(rundir, workers=2, stream=False, req=True)
    h = ReqHandler(zctx, info["req_spec"])
    conns = [HttpConn(info["req_port"]) for _ in range(4)]
    ids = []
    try:
        for _ in range(3):
            for c in conns:
                c.send(get())
                env, pkt = h.recv()
                ids.append(pkt["id"])
                h.reply(env, {"id": pkt["id"], "code": 200, "reason": "OK", "headers": [],
                              "body": pkt["id"]})
                r = c.read_response()
                assert r.body == pkt["id"]  # each answer reached its own client
        assert len(set(ids)) == len(ids) == 12
        assert {i.split(b"-")[0] for i in ids} == {b"0", b"1"}
    finally:
        for c in conns:
            c.close()
        h.close()
        d.stop()


def test_req_no_handler_gets_503_after_handler_wait_and_is_never_delivered(rundir, zctx):
    d, info = start(rundir, "--handler-wait", "0.4", stream=False, req=True)
    c = HttpConn(info["req_port"])
    try:
        t0 = time.monotonic()
        c.send(get("/lost"))
        r = c.read_response()
        took = time.monotonic() - t0
        assert r.status == 503 and r.body == b"no handler available\n"
        assert 0.3 < took < 3.0, took
        d.wait_log(r"no handler took the request within 400 ms: 503")
        # a handler that connects now never sees that request, and serves the next one
        h = ReqHandler(zctx, info["req_spec"])
        assert h.no_request(500)
        c2 = HttpConn(info["req_port"])
        c2.send(get("/next"))
        env, pkt = h.recv()
        assert pkt["uri"] == b"http://a/next"
        h.reply(env, {"id": pkt["id"], "code": 200, "reason": "OK", "headers": [], "body": b""})
        assert c2.read_response().status == 200
        c2.close()
        h.close()
    finally:
        c.close()
        d.stop()


def test_req_large_answer_then_pipelined_request_keeps_order(rundir, zctx):
    d, info = start(rundir, stream=False, req=True)
    h = ReqHandler(zctx, info["req_spec"])
    c = HttpConn(info["req_port"])
    try:
        big = bytes(range(251)) * 8000  # ~2 MB, far more than one socket write
        c.send(get("/big") + get("/small"))
        env, pkt = h.recv()
        assert pkt["uri"] == b"http://a/big"
        h.reply(env, {"id": pkt["id"], "code": 200, "reason": "OK", "headers": [], "body": big})
        time.sleep(0.3)  # the client reads nothing yet: the body waits in zhttpd
        r = c.read_response()
        assert r.body == big
        env, pkt = h.recv()
        assert pkt["uri"] == b"http://a/small"
        h.reply(env, {"id": pkt["id"], "code": 200, "reason": "OK", "headers": [], "body": b"s"})
        assert c.read_response().body == b"s"
    finally:
        c.close()
        h.close()
        d.stop()
