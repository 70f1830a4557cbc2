"""What a handler's response status and headers may do to the client's exchange (server role).

A 1xx never ends the exchange: 100 and 103 reach an HTTP/1.1 client as interim responses (100 only
when the client sent `Expect: 100-continue` and still waits for it; never to an HTTP/1.0 client)
and zhttpd keeps waiting for the final response; 101 (no upgrade reaches a handler: WebSocket
upgrades are answered 501 today), 102 and other 1xx are refused with 502 and a log line; in req mode
every 1xx is refused. Codes outside 100-599 are refused with 502 (2^32+200 is not 200). The
handler's hop-by-hop headers (RFC 9110 section 7.6.1) never reach the client."""
import re

import pytest
import zmq

from srvkit import HttpConn, ReqHandler, StreamHandler, get, start


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    ctx = zmq.Context()
    rundir = tmp_path_factory.mktemp("status")
    d, info = start(rundir, stream=True, req=True)
    sh = StreamHandler(ctx, info["base"])
    rh = ReqHandler(ctx, info["req_spec"])
    yield d, info, sh, rh
    sh.close()
    rh.close()
    d.stop()
    ctx.destroy(linger=0)


def read_raw_head(c):
    """The next head exactly as sent (up to and including the blank line)."""
    while b"\r\n\r\n" not in c.buf:
        assert c._fill(), f"closed mid-head: {c.buf!r}"
    head, c.buf = c.buf.split(b"\r\n\r\n", 1)
    return head + b"\r\n\r\n"


# ---- stream mode, one request at a time ----

def test_103_is_forwarded_as_interim_then_the_final_response(srv):
    d, info, h, _ = srv
    c = HttpConn(info["port"])
    try:
        c.send(get("/hints"))
        req = h.recv_request()
        h.respond(req["id"], code=103, reason="Early Hints",
                  headers=[("Link", "</s.css>; rel=preload"), ("Connection", "X-Hop"),
                           ("X-Hop", "1")], more=True)
        h.respond(req["id"], body=b"final")
        assert read_raw_head(c) == (b"HTTP/1.1 103 Early Hints\r\n"
                                    b"Link: </s.css>; rel=preload\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"final" and r.interim == []
        # the connection is still in step: the next request gets its own answer
        c.send(get("/next"))
        req2 = h.recv_request()
        assert req2["uri"] == b"http://a/next"
        h.respond(req2["id"], body=b"next")
        assert c.read_response().body == b"next"
    finally:
        c.close()


def test_103_is_not_sent_to_an_http10_client(srv):
    d, info, h, _ = srv
    c = HttpConn(info["port"])
    try:
        c.send(get("/old", version=b"1.0"))
        req = h.recv_request()
        h.respond(req["id"], code=103, reason="Early Hints", headers=[("Link", "</a>")])
        h.respond(req["id"], body=b"final")
        r = c.read_response()
        assert r.status == 200 and r.body == b"final" and r.interim == []
        d.wait_log(r"handler sent 103, not forwarded to an HTTP/1.0 client")
    finally:
        c.close()


def test_100_goes_to_a_client_that_expects_it_once(srv):
    d, info, h, _ = srv
    c = HttpConn(info["port"])
    try:
        c.send(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
               b"Expect: 100-continue\r\n\r\n")
        req = h.recv_request()
        assert req.get("more") is True and req.get("body", b"") == b""
        h.send(req["id"], code=100, reason="Continue", credits=100)
        assert read_raw_head(c) == b"HTTP/1.1 100 Continue\r\n\r\n"
        c.send(b"hello")
        pkt = h.recv_router()
        while pkt.get("type") is not None:  # keep-alives
            pkt = h.recv_router()
        assert pkt["body"] == b"hello" and not pkt.get("more")
        h.respond(req["id"], body=b"got it")
        r = c.read_response()
        assert r.status == 200 and r.body == b"got it"
        assert r.interim == [], "a second 100 Continue was sent"
    finally:
        c.close()


def test_100_is_dropped_for_a_client_that_did_not_ask(srv):
    d, info, h, _ = srv
    c = HttpConn(info["port"])
    try:
        c.send(get("/plain"))
        req = h.recv_request()
        h.respond(req["id"], code=100, reason="Continue")
        h.respond(req["id"], body=b"final")
        r = c.read_response()
        assert r.status == 200 and r.body == b"final" and r.interim == []
        d.wait_log(r"handler sent 100, not forwarded to a client not waiting for 100 Continue")
    finally:
        c.close()


REFUSED_1XX = [(101, "101 without an upgrade request"), (102, "only 100 and 103 are forwarded"),
               (199, "only 100 and 103 are forwarded")]


@pytest.mark.parametrize("code,why", REFUSED_1XX, ids=[str(c) for c, _ in REFUSED_1XX])
def test_other_1xx_are_refused_with_502(srv, code, why):
    d, info, h, _ = srv
    c = HttpConn(info["port"])
    try:
        c.send(get(f"/s{code}"))
        req = h.recv_request()
        h.respond(req["id"], code=code, reason="Whatever", headers=[("Upgrade", "websocket")])
        r = c.read_response()
        assert r.status == 502 and r.body == b"invalid response from handler\n"
        assert r.interim == [] and r.header("Connection") == "close"
        assert c.closed_by_peer()
        d.wait_log(rf"handler sent {code}: {why}: 502")
    finally:
        c.close()


OUT_OF_RANGE = [600, 999, 2**32 + 200, 0, 99, 1000]


@pytest.mark.parametrize("code", OUT_OF_RANGE)
def test_codes_outside_100_599_are_refused_with_502(srv, code):
    d, info, h, _ = srv
    c = HttpConn(info["port"])
    try:
        c.send(get(f"/c{code}"))
        req = h.recv_request()
        h.respond(req["id"], code=code, reason="X", body=b"body")
        r = c.read_response()
        assert r.status == 502 and r.body == b"invalid response from handler\n"
        d.wait_log(rf"handler sent status {code}, outside 100-599: 502")
    finally:
        c.close()


# ---- stream mode, pipelined ----

@pytest.mark.parametrize("code", [100, 103])
def test_pipelined_interim_keeps_responses_in_step(srv, code):
    d, info, h, _ = srv
    c = HttpConn(info["port"])
    try:
        c.send(get("/p1") + get("/p2"))
        r1 = h.recv_request()
        assert r1["uri"] == b"http://a/p1"
        h.respond(r1["id"], code=code, reason="Interim")
        h.respond(r1["id"], body=b"one")
        r2 = h.recv_request()
        assert r2["uri"] == b"http://a/p2"
        h.respond(r2["id"], body=b"two")
        a, b = c.read_response(), c.read_response()
        assert (a.status, a.body, b.status, b.body) == (200, b"one", 200, b"two")
        assert a.interim == ([103] if code == 103 else []) and b.interim == []
    finally:
        c.close()


@pytest.mark.parametrize("code", [101, 102, 600, 2**32 + 200])
def test_pipelined_refused_status_answers_502_and_closes(srv, code):
    d, info, h, _ = srv
    c = HttpConn(info["port"])
    try:
        c.send(get("/q1") + get("/q2"))
        r1 = h.recv_request()
        h.respond(r1["id"], code=code, reason="Bad", body=b"" if code < 200 else b"x")
        r = c.read_response()
        assert r.status == 502 and r.interim == [] and r.header("Connection") == "close"
        assert c.closed_by_peer()
        assert h.no_request(300), "the pipelined request started after a refused answer"
    finally:
        c.close()


# ---- req mode ----

REQ_CASES = [100, 101, 102, 103, 600, 999, 2**32 + 200, 0, 99]


@pytest.mark.parametrize("pipelined", [False, True], ids=["single", "pipelined"])
@pytest.mark.parametrize("code", REQ_CASES)
def test_req_mode_refuses_1xx_and_out_of_range(srv, code, pipelined):
    d, info, _, h = srv
    c = HttpConn(info["req_port"])
    try:
        c.send(get("/r1") + (get("/r2") if pipelined else b""))
        env, pkt = h.recv()
        h.reply(env, {"id": pkt["id"], "code": code, "reason": "X", "headers": [], "body": b""})
        r = c.read_response()
        assert r.status == 502 and r.body == b"invalid response from handler\n"
        assert r.interim == [] and c.closed_by_peer()
        assert h.no_request(300)
        if 100 <= code < 200:
            d.wait_log(rf"handler sent {code}: a 1xx has no meaning in req mode: 502")
        else:
            d.wait_log(rf"handler sent status {code}, outside 100-599: 502")
    finally:
        c.close()


# ---- hop-by-hop headers ----

HOP = [("Connection", "close, X-Private"), ("Keep-Alive", "timeout=5"), ("Upgrade", "h2c"),
       ("TE", "trailers"), ("Trailer", "X-T"), ("Proxy-Connection", "keep-alive"),
       ("X-Private", "secret"), ("Transfer-Encoding", "chunked"), ("X-Public", "ok"),
       ("Connection", "x-other"), ("X-Other", "also"), ("X-Privateer", "kept")]


def check_no_hop(r):
    names = [n.lower() for n, _ in r.headers]
    for n in ("keep-alive", "upgrade", "te", "trailer", "proxy-connection", "x-private",
              "transfer-encoding", "x-other"):
        assert n not in names, (n, r.headers)
    assert r.header("X-Public") == "ok" and r.header("X-Privateer") == "kept"
    assert "connection" not in names or r.header("Connection") == "close"


def test_hop_by_hop_headers_never_reach_the_client_stream(srv):
    d, info, h, _ = srv
    c = HttpConn(info["port"])
    try:
        c.send(get("/hop"))
        req = h.recv_request()
        h.respond(req["id"], headers=HOP, body=b"hop")
        r = c.read_response()
        assert r.status == 200 and r.body == b"hop"
        check_no_hop(r)
        assert not r.has_header("Connection")  # keep-alive HTTP/1.1: no Connection header at all
    finally:
        c.close()


def test_hop_by_hop_headers_never_reach_the_client_req(srv):
    d, info, _, h = srv
    c = HttpConn(info["req_port"])
    try:
        c.send(get("/hop"))
        env, pkt = h.recv()
        h.reply(env, {"id": pkt["id"], "code": 200, "reason": "OK",
                      "headers": [list(x) for x in HOP], "body": b"hop"})
        r = c.read_response()
        assert r.status == 200 and r.body == b"hop"
        check_no_hop(r)
    finally:
        c.close()
