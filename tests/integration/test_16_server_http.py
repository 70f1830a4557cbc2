"""Server role HTTP/1 details: HTTP/1.0 keep-alive with a response of unknown length (the close
ends the body), 100-continue, HEAD, 204/304 without a body, and hop-by-hop framing headers from the
handler dropped as Condure does."""
import subprocess
import threading
import time

import pytest
import zmq

from srvkit import HttpConn, ReqHandler, StreamHandler, get, start


@pytest.fixture
def server(rundir, zctx):
    d, info = start(rundir, req=True)
    h = StreamHandler(zctx, info["base"])
    yield d, info, h
    h.close()
    d.stop()


def test_http10_keepalive_with_unknown_length_is_closed_to_end_the_body(server):
    d, info, h = server
    c = HttpConn(info["port"])
    try:
        # known length: HTTP/1.0 keep-alive is honoured
        c.send(get("/known", version=b"1.0", extra=b"Connection: keep-alive\r\n"))
        req = h.recv_request()
        h.respond(req["id"], body=b"sized")
        r = c.read_response()
        assert r.body == b"sized" and r.header("Connection") == "keep-alive"
        # unknown length: the body can only end with the close
        c.send(get("/stream", version=b"1.0", extra=b"Connection: keep-alive\r\n"))
        req = h.recv_request()
        h.respond(req["id"], headers=[("Content-Type", "text/plain")], body=b"part1,", more=True)
        h.send(req["id"], body=b"part2,", more=True)
        h.send(req["id"], body=b"end")
        data = c.read_until_closed()
        assert data is not None, "the connection was not closed to end the body"
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert b"Content-Length" not in head and b"Transfer-Encoding" not in head
        assert b"Connection: close" in head
        assert body == b"part1,part2,end"
    finally:
        c.close()


def test_http11_stream_without_length_is_chunked_and_kept_alive(server):
    d, info, h = server
    c = HttpConn(info["port"])
    try:
        c.send(get("/chunks"))
        req = h.recv_request()
        h.respond(req["id"], body=b"a", more=True)
        h.send(req["id"], body=b"bc", more=True)
        h.send(req["id"], body=b"")
        r = c.read_response()
        assert r.header("Transfer-Encoding") == "chunked" and r.body == b"abc"
        c.send(get("/again"))
        req = h.recv_request()
        h.respond(req["id"], body=b"ok")
        assert c.read_response().body == b"ok"
    finally:
        c.close()


def test_100_continue_is_sent_when_the_handler_asks_for_the_body(server, tmp_path):
    d, info, h = server
    payload = tmp_path / "payload"
    payload.write_bytes(b"q" * 20000)
    got = {}

    def handler():
        req = h.recv_request()
        got["req"] = req
        h.ack(req["id"], credits=100000)  # ready for the body: now the 100 goes out
        body = b""
        while True:
            pkt, _ = h.wait_router(lambda p: "body" in p, timeout_s=5)
            assert pkt is not None
            body += pkt["body"]
            if not pkt.get("more"):
                break
        got["body"] = body
        h.respond(req["id"], body=b"%d bytes" % len(body))

    t = threading.Thread(target=handler)
    t.start()
    t0 = time.monotonic()
    p = subprocess.run(["curl", "-sS", "-i", "--max-time", "10", "--expect100-timeout", "8",
                        "-H", "Expect: 100-continue", "--data-binary", f"@{payload}",
                        f"http://127.0.0.1:{info['port']}/upload"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    took = time.monotonic() - t0
    t.join(10)
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr
    assert out.startswith("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), out
    assert out.endswith("20000 bytes")
    assert took < 5, "curl waited for its expect timeout: no 100 Continue was sent"
    assert got["req"]["more"] is True and got["body"] == b"q" * 20000


def test_no_100_continue_when_the_handler_answers_at_once(server):
    d, info, h = server
    c = HttpConn(info["port"])
    try:
        c.send(b"POST /deny HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
               b"Expect: 100-continue\r\n\r\n")
        req = h.recv_request()
        h.respond(req["id"], code=403, reason="Forbidden", body=b"no")
        r = c.read_response()
        assert r.status == 403 and r.interim == [] and r.body == b"no"
        assert r.header("Connection") == "close"  # the unread body ends the connection
        assert c.closed_by_peer()
    finally:
        c.close()


def test_100_continue_in_req_mode_and_413_without_it(server, zctx):
    d, info, h = server
    rh = ReqHandler(zctx, info["req_spec"])
    c = HttpConn(info["req_port"])
    try:
        c.send(b"POST /r HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        assert c._line() == b"HTTP/1.1 100 Continue" and c._line() == b""
        c.send(b"abc")
        env, pkt = rh.recv()
        assert pkt["body"] == b"abc"
        rh.reply(env, {"id": pkt["id"], "code": 200, "reason": "OK", "headers": [], "body": b"k"})
        assert c.read_response().body == b"k"
        c.send(b"POST /r HTTP/1.1\r\nHost: a\r\nContent-Length: 999999\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.read_response()
        assert r.status == 413 and r.interim == []
    finally:
        c.close()
        rh.close()


def test_head_responses_carry_no_body_and_keep_the_connection(server):
    d, info, h = server
    c = HttpConn(info["port"])
    try:
        c.send(b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n")
        req = h.recv_request()
        assert req["method"] == b"HEAD"
        h.respond(req["id"], headers=[("Content-Length", "1234"), ("ETag", "x")])
        r = c.read_response(head=True)
        assert r.status == 200 and r.header("Content-Length") == "1234" and r.header("ETag") == "x"
        # a streamed HEAD answer: headers only, and the connection goes on
        c.send(b"HEAD /h2 HTTP/1.1\r\nHost: a\r\n\r\n")
        req = h.recv_request()
        h.respond(req["id"], body=b"", more=True)
        h.send(req["id"], body=b"")
        r = c.read_response(head=True)
        assert r.status == 200
        c.send(get("/after"))
        req = h.recv_request()
        h.respond(req["id"], body=b"after")
        r = c.read_response()
        assert r.body == b"after", "bytes of a HEAD body leaked into the next response"
    finally:
        c.close()


@pytest.mark.parametrize("code,reason", [(204, "No Content"), (304, "Not Modified")])
def test_204_and_304_have_no_body_even_if_the_handler_sends_one(server, code, reason):
    d, info, h = server
    c = HttpConn(info["port"])
    try:
        c.send(get("/nb"))
        req = h.recv_request()
        h.respond(req["id"], code=code, reason=reason, headers=[("X-K", "v")], body=b"junk")
        r = c.read_response()
        assert r.status == code and r.header("X-K") == "v"
        assert not r.has_header("Content-Length") and not r.has_header("Transfer-Encoding")
        c.send(get("/next"))
        req = h.recv_request()
        h.respond(req["id"], body=b"clean")
        r = c.read_response()
        assert r.status == 200 and r.body == b"clean"
    finally:
        c.close()


def test_handler_connection_and_transfer_encoding_headers_are_dropped(server):
    d, info, h = server
    c = HttpConn(info["port"])
    try:
        c.send(get("/hop"))
        req = h.recv_request()
        h.respond(req["id"], headers=[("Connection", "close"), ("Transfer-Encoding", "chunked"),
                                      ("X-Keep", "1")], body=b"plain body")
        r = c.read_response()
        assert r.body == b"plain body" and r.header("Content-Length") == "10"
        assert not r.has_header("Connection") and not r.has_header("Transfer-Encoding")
        assert r.header("X-Keep") == "1"
        c.send(get("/still-open"))
        req = h.recv_request()
        h.respond(req["id"], body=b"yes")
        assert c.read_response().body == b"yes"
    finally:
        c.close()
