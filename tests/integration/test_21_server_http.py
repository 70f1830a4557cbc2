"""Server-mode HTTP/1.x behaviour seen from both ends (issue 5, items 2, 3 and 5): a real client
(raw socket or http.client) on one side, a Condure-style handler with PULL + ROUTER + PUB
(handlers.StreamHandler) on the other, and zhttpd (the build under test) in between.

Covered: keep-alive reuse with fresh ids, pipelining answered in order, chunked upload under the
handler's credits, a 5 MB response under zhttpd's credits, cancel on client disconnect, handoff to a
second handler process, router-resp replies, HEAD, 204/304, HTTP/1.0 clients, large request heads,
and a handler that overruns its credits.
"""
import hashlib
import http.client
import json
import pathlib
import re
import subprocess
import sys
import threading
import time

import pytest
import zmq

from handlers import StreamHandler, path_of
from peers import start_server
from rawhttp import RawClient

HERE = pathlib.Path(__file__).resolve().parent
ID_RE = re.compile(rb"[0-9]+-[0-9]+-[0-9a-f]+")


@pytest.fixture
def srv(rundir):
    s = start_server("zhttpd", rundir, workers=2)
    yield s
    s.stop()


@pytest.fixture
def srv1(rundir):
    """One worker: connection slots are reused deterministically."""
    s = start_server("zhttpd", rundir, workers=1)
    yield s
    s.stop()


@pytest.fixture
def handler(zctx, srv):
    h = StreamHandler(zctx, srv.base)
    yield h
    h.close()


def pattern(n, seed=0):
    """n deterministic, non-repeating-looking bytes."""
    out = bytearray()
    i = seed
    while len(out) < n:
        out += hashlib.sha256(b"%d" % i).digest()
        i += 1
    return bytes(out[:n])


# ---------------------------------------------------------------------------------------------
# keep-alive, ids, pipelining


def test_keepalive_reuses_connection_with_fresh_id_per_request(srv, handler):
    ids, ports = [], []
    with RawClient(srv.port) as c:
        for i in range(4):
            c.send(f"GET /ka/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            req = handler.recv_request()
            assert path_of(req) == f"/ka/{i}"
            ids.append(req["id"])
            ports.append(req["peer-port"])
            handler.respond(req, body=f"answer {i}\n".encode())
            r = c.read_response()
            assert r.status == 200 and r.body == f"answer {i}\n".encode(), r
            assert r.header("Connection") is None  # 1.1 keep-alive: nothing to say
        assert c.quiet_for(0.2), "connection closed or got stray bytes between requests"
    assert len(set(ports)) == 1, "requests did not share one connection"
    assert all(ID_RE.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids), f"an id was reused on a keep-alive connection: {ids}"


def test_ids_are_unique_across_connections(srv1, zctx):
    """A new connection in a recycled slot must not get an id an earlier request already had:
    the handler keys its sessions by id, and ZHTTP.md says ids are instance-unique."""
    h = StreamHandler(zctx, srv1.base)
    ids = []
    try:
        for i in range(4):
            with RawClient(srv1.port) as c:
                c.send(f"GET /c/{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                req = h.recv_request()
                ids.append(req["id"])
                h.respond(req, body=b"ok\n")
                assert c.read_response().status == 200
                assert c.wait_closed()
    finally:
        h.close()
    assert len(set(ids)) == len(ids), f"ids reused across connections: {ids}"


def test_late_packet_for_an_ended_session_does_not_disturb_the_next_request(srv1, zctx):
    """A handler's packet for a session that already ended (its client went away) is dropped; it
    must not land in the next request that happens to reuse the connection slot."""
    h = StreamHandler(zctx, srv1.base)
    try:
        a = RawClient(srv1.port)
        a.send(b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
        req_a = h.recv_request()
        h.announce(req_a, credits=5)
        assert h.recv_stream()["body"] == b"12345"  # zhttpd knows our address now
        a.close()  # mid-body: zhttpd cancels session a
        cancel = h.recv_stream()
        assert cancel["type"] == b"cancel" and cancel["id"] == req_a["id"]
        with RawClient(srv1.port) as b:
            b.send(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            req_b = h.recv_request()
            # the late answer to a (seq 1 after its keep-alive), then the real answer to b
            h.send(req_a["from"], {"from": h.ident, "id": req_a["id"], "seq": 1, "code": 200,
                                   "reason": "OK", "headers": [], "body": b"for a\n"})
            time.sleep(0.2)
            h.respond(req_b, body=b"for b\n")
            r = b.read_response()
            assert r is not None and r.body == b"for b\n", r
    finally:
        h.close()


def test_pipelined_requests_answered_in_order_even_when_handler_answers_out_of_order(srv, handler):
    paths = ["/p/1", "/p/2", "/p/3"]
    with RawClient(srv.port) as c:
        c.send(b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in paths))
        answered, ids = [], []
        deadline = time.monotonic() + 15
        while len(answered) < len(paths):
            assert time.monotonic() < deadline, f"only {answered} reached the handler"
            batch = [handler.recv_request()]
            while True:  # take every request the server lets through, then answer newest first
                more = handler.poll_request(0.3)
                if more is None:
                    break
                batch.append(more)
            for req in reversed(batch):
                handler.respond(req, body=f"resp {path_of(req)}\n".encode())
                answered.append(path_of(req))
                ids.append(req["id"])
        got = [c.read_response() for _ in paths]
        assert [r.body for r in got] == [f"resp {p}\n".encode() for p in paths], got
        assert c.quiet_for(0.2)
    assert sorted(answered) == paths
    assert len(set(ids)) == 3


# ---------------------------------------------------------------------------------------------
# credits, both directions


def test_chunked_upload_delivered_in_order_under_handler_credits(srv, handler):
    body = pattern(100_000, seed=1)
    sizes = [1, 7, 4096, 3000, 17, 8192, 12000, 1]
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    c = RawClient(srv.port)

    def client():
        c.send(head)
        off, i = 0, 0
        while off < len(body):
            n = min(sizes[i % len(sizes)], len(body) - off)
            c.send(b"%x\r\n" % n + body[off:off + n] + b"\r\n")
            off, i = off + n, i + 1
        c.send(b"0\r\nX-Trailer: t\r\n\r\n")

    t = threading.Thread(target=client)
    t.start()
    try:
        req = handler.recv_request()
        assert req["method"] == b"POST" and req.get("more") is True
        assert not req.get("body"), "body bytes in the first packet"
        step = 3000
        granted = step
        handler.announce(req, credits=step)
        got = bytearray()
        paused_once = False
        while True:
            p = handler.recv_stream()
            assert p["id"] == req["id"] and p.get("type") is None, p
            got += p.get("body", b"")
            assert len(got) <= granted, f"zhttpd sent {len(got)} body bytes, {granted} granted"
            if not p.get("more"):
                break
            if len(got) == granted:
                if not paused_once:  # with no credits left, nothing more may come
                    assert handler.poll_stream(0.3) is None, "body sent without credits"
                    paused_once = True
                granted += step
                handler.grant(req, step)
        assert paused_once
        assert bytes(got) == body, "request body corrupted or reordered"
        handler.respond(req, body=hashlib.sha256(got).hexdigest().encode())
        r = c.read_response(timeout=10)
        assert r.status == 200 and r.body == hashlib.sha256(body).hexdigest().encode()
    finally:
        t.join(10)
        c.close()


def test_5mb_response_under_credits(srv, handler):
    size = 5 * 1024 * 1024
    body = pattern(size, seed=2)
    result = {}

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        conn.request("GET", "/big")
        resp = conn.getresponse()
        result["status"] = resp.status
        result["te"] = resp.getheader("Transfer-Encoding")
        data = resp.read()
        result["len"] = len(data)
        result["sha"] = hashlib.sha256(data).hexdigest()
        conn.close()

    t = threading.Thread(target=client)
    t.start()
    try:
        req = handler.recv_request()
        avail = req["credits"]
        assert avail > 0
        granted_by_zhttpd = 0
        sent = 0
        handler.respond(req, headers=[["Content-Type", "application/octet-stream"]], body=b"",
                        more=True)
        deadline = time.monotonic() + 60
        while sent < size:
            assert time.monotonic() < deadline, f"stalled at {sent} bytes"
            if avail == 0:
                p = handler.recv_stream(10)
                assert p["id"] == req["id"], p
                assert p.get("type") == b"credit", f"expected credits, got {p}"
                assert p["credits"] > 0
                avail += p["credits"]
                granted_by_zhttpd += p["credits"]
                # zhttpd re-grants only what it flushed: never more than we sent
                assert granted_by_zhttpd <= sent, (granted_by_zhttpd, sent)
                continue
            n = min(avail, 16384, size - sent)
            handler.body(req, body[sent:sent + n], more=sent + n < size)
            sent += n
            avail -= n
        t.join(30)
        assert not t.is_alive(), "client did not finish reading"
        assert result["status"] == 200
        assert result["te"] == "chunked"
        assert result["len"] == size
        assert result["sha"] == hashlib.sha256(body).hexdigest()
        assert granted_by_zhttpd >= size - req["credits"]
    finally:
        t.join(1)


def test_handler_exceeding_its_credits_gets_cancel_and_connection_closed(srv, handler):
    with RawClient(srv.port) as c:
        c.send(b"GET /greedy HTTP/1.1\r\nHost: x\r\n\r\n")
        req = handler.recv_request()
        credits = req["credits"]
        handler.respond(req, body=b"", more=True)
        handler.body(req, b"a" * credits, more=True)  # exactly the credits: fine
        avail = 0
        while avail < credits:  # zhttpd re-grants them once flushed, and no more
            p = handler.recv_stream()
            assert p.get("type") == b"credit", p
            avail += p["credits"]
        assert avail == credits
        handler.body(req, b"Z" * (avail + 1), more=True)  # one byte over
        p = handler.recv_stream()
        assert p["type"] == b"cancel" and p["id"] == req["id"], p
        assert c.wait_closed(5), "client connection left open"
        assert c.buf.startswith(b"HTTP/1.1 200 ")
        assert b"Z" not in c.buf, "bytes beyond the credits reached the client"
        assert not c.buf.endswith(b"0\r\n\r\n"), "response ended as if complete"


def test_handler_exceeding_credits_in_its_first_packet(srv, handler):
    with RawClient(srv.port) as c:
        c.send(b"GET /greedy HTTP/1.1\r\nHost: x\r\n\r\n")
        req = handler.recv_request()
        handler.respond(req, body=b"x" * (req["credits"] + 1))
        p = handler.recv_stream()
        assert p["type"] == b"cancel" and p["id"] == req["id"], p
        assert c.read_response() is None, "a response went out for an over-credit packet"
        assert c.eof


# ---------------------------------------------------------------------------------------------
# cancel on client disconnect


def _cancel_expected(handler, req, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = handler.poll_stream(max(0.0, deadline - time.monotonic()))
        if p is None:
            break
        if p.get("type") == b"credit":
            continue
        assert p["type"] == b"cancel" and p["id"] == req["id"], p
        return
    raise AssertionError("handler got no cancel after the client disconnected")


def test_client_disconnect_while_handler_thinks_sends_cancel(srv, handler):
    """A long-poll style request: the handler holds it, the client gives up and closes. Condure
    cancels at once; a session must not linger until --stream-timeout."""
    c = RawClient(srv.port)
    c.send(b"POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
    req = handler.recv_request()
    handler.announce(req, credits=1)
    last = handler.recv_stream()  # the whole request is in, and zhttpd knows our address
    assert last["body"] == b"x" and not last.get("more")
    c.close()
    _cancel_expected(handler, req)


def test_client_disconnect_mid_request_body_sends_cancel(srv, handler):
    c = RawClient(srv.port)
    c.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"z" * 1000)
    req = handler.recv_request()
    handler.announce(req, credits=100000)
    got = handler.recv_stream()
    assert got.get("body") and got.get("more")
    c.close()
    _cancel_expected(handler, req)


def test_client_disconnect_mid_response_sends_cancel(srv, handler):
    c = RawClient(srv.port)
    c.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    req = handler.recv_request()
    handler.respond(req, body=b"first part\n", more=True)
    c._fill(time.monotonic() + 5)  # the head (and first part) arrived
    assert c.buf.startswith(b"HTTP/1.1 200 ")
    c.close()
    # the handler is idle (e.g. a stream waiting for events): the close alone must end it
    _cancel_expected(handler, req)


def test_client_disconnect_while_response_streams_sends_cancel(srv, handler):
    c = RawClient(srv.port)
    c.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    req = handler.recv_request()
    handler.respond(req, body=b"first part\n", more=True)
    c._fill(time.monotonic() + 5)
    c.close()
    # the handler keeps streaming within its credits; zhttpd's writes fail and it cancels
    avail = req["credits"] - len(b"first part\n")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if avail > 0:
            handler.body(req, b"x" * min(avail, 1000), more=True)
            avail -= min(avail, 1000)
        p = handler.poll_stream(0.05)
        if p is None:
            continue
        if p.get("type") == b"credit":
            avail += p["credits"]
            continue
        assert p["type"] == b"cancel" and p["id"] == req["id"], p
        return
    raise AssertionError("handler got no cancel while streaming to a closed client")


# ---------------------------------------------------------------------------------------------
# handoff to a second handler process


def _resume(srv, rid, seq, rseq, credits, size, mode, ident="handler-b"):
    return subprocess.Popen(
        [sys.executable, str(HERE / "handlers.py"), "resume", srv.base, ident,
         srv.instance_id.decode(), rid.decode(), str(seq), str(rseq), str(credits), str(size),
         mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=HERE)


@pytest.mark.parametrize("when", ["before-response", "mid-response"])
def test_handoff_to_second_process_completes_response(srv, handler, when):
    size_b = 30_000
    with RawClient(srv.port) as c:
        c.send(b"GET /handoff HTTP/1.1\r\nHost: x\r\n\r\n")
        req = handler.recv_request()
        credits = req["credits"]
        part_a = b""
        if when == "mid-response":
            part_a = b"A" * 1000
            handler.respond(req, headers=[["Content-Type", "application/octet-stream"]],
                            body=part_a, more=True)
            credits -= len(part_a)
        else:
            handler.announce(req)
        handler.send(req["from"], handler.packet(req["id"], type="handoff-start"))
        while True:
            p = handler.recv_stream()
            if p.get("type") == b"credit":
                credits += p["credits"]
                continue
            assert p["type"] == b"handoff-proceed" and p["id"] == req["id"], p
            break
        # the session is paused: a second process takes it over with its own `from`
        b = _resume(srv, req["id"], handler.seq[req["id"]], handler.rseq[req["id"]], credits,
                    size_b, "body" if when == "mid-response" else "head")
        out, err = b.communicate(timeout=20)
        assert b.returncode == 0, f"resume process failed: {out!r} {err!r}"
        report = json.loads(out.decode().strip().splitlines()[-1])
        # zhttpd sent the new owner its credits through the ROUTER, to the new identity
        assert any(p.get("type") == "credit" for p in report["packets"]), report
        assert all(p.get("type") != "cancel" for p in report["packets"]), report
        r = c.read_response(timeout=10)
        assert r.status == 200
        assert r.body[:len(part_a)] == part_a
        assert hashlib.sha256(r.body[len(part_a):]).hexdigest() == report["sha256"]
        assert len(r.body) == len(part_a) + size_b
        if when == "before-response":
            assert r.header("X-Owner") == "handler-b"
    # the old owner hears nothing more about the session once it handed it off
    assert handler.poll_stream(0.3) is None


# ---------------------------------------------------------------------------------------------
# router-resp: replies through the handler's ROUTER instead of PUB


def test_router_resp_replies_through_router(srv, zctx):
    h = StreamHandler(zctx, srv.base, ident=b"router-only", pub=False, settle=0.2)
    try:
        body = pattern(50_000, seed=3)
        with RawClient(srv.port) as c:
            c.send(b"GET /via-router HTTP/1.1\r\nHost: x\r\n\r\n")
            req = h.recv_request()
            assert req.get("router-resp") is True
            avail = req["credits"]
            sent = 0
            # [zhttpd's id, "", T...]: ROUTER_MANDATORY raises if zhttpd's identity isn't its from
            h.respond(req, body=b"", more=True, via="router")
            while sent < len(body):
                if avail == 0:
                    p = h.recv_stream()
                    assert p.get("type") == b"credit", p
                    avail += p["credits"]
                    continue
                n = min(avail, len(body) - sent)
                h.body(req, body[sent:sent + n], more=sent + n < len(body), via="router")
                sent, avail = sent + n, avail - n
            r = c.read_response(timeout=10)
            assert r.status == 200 and r.body == body
            assert h.server_peer == srv.instance_id
    finally:
        h.close()


# ---------------------------------------------------------------------------------------------
# responses without a body


def test_head_gets_headers_only_and_connection_stays_usable(srv, handler):
    with RawClient(srv.port) as c:
        # 1) the handler sends a body for HEAD: its length shows, its bytes don't
        c.send(b"HEAD /h1 HTTP/1.1\r\nHost: x\r\n\r\n")
        req = handler.recv_request()
        assert req["method"] == b"HEAD"
        handler.respond(req, body=b"hello world")
        r = c.read_response(head=True)
        assert r.status == 200 and r.header("Content-Length") == "11", r
        # 2) the handler states a Content-Length and streams nothing
        c.send(b"HEAD /h2 HTTP/1.1\r\nHost: x\r\n\r\n")
        req = handler.recv_request()
        handler.respond(req, headers=[["Content-Length", "1234"]], body=b"")
        r = c.read_response(head=True)
        assert r.header("Content-Length") == "1234", r
        # 3) a streamed answer to HEAD: no chunk framing, no body bytes
        c.send(b"HEAD /h3 HTTP/1.1\r\nHost: x\r\n\r\n")
        req = handler.recv_request()
        handler.respond(req, body=b"part", more=True)
        handler.body(req, b"rest")
        r = c.read_response(head=True)
        assert r.status == 200
        # then a GET on the same connection reads exactly its own response
        c.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        req = handler.recv_request()
        handler.respond(req, body=b"after\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"after\n", r
        assert c.quiet_for(0.2), f"stray bytes: {c.buf!r}"


@pytest.mark.parametrize("code,reason", [(204, "No Content"), (304, "Not Modified")])
@pytest.mark.parametrize("streamed", [False, True], ids=["final", "streamed"])
def test_204_304_have_no_body_and_connection_stays_usable(srv, handler, code, reason, streamed):
    with RawClient(srv.port) as c:
        c.send(b"GET /nobody HTTP/1.1\r\nHost: x\r\n\r\n")
        req = handler.recv_request()
        handler.respond(req, code=code, reason=reason, headers=[["ETag", '"v1"']],
                        body=b"oops", more=streamed)
        if streamed:
            handler.body(req, b"more oops")
        r = c.read_response()
        assert r.status == code and r.reason == reason
        assert r.header("ETag") == '"v1"'
        assert r.header("Transfer-Encoding") is None
        if code == 204:
            assert r.header("Content-Length") is None
        c.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        req = handler.recv_request()
        handler.respond(req, body=b"after\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"after\n", (r, c.buf)
        assert c.quiet_for(0.2), f"stray bytes: {c.buf!r}"


# ---------------------------------------------------------------------------------------------
# HTTP/1.0 clients


def test_http10_request_is_answered_and_closed(srv, handler):
    with RawClient(srv.port) as c:
        c.send(b"GET /ten HTTP/1.0\r\n\r\n")
        req = handler.recv_request()
        assert req["method"] == b"GET"
        assert req["uri"].startswith(b"http://") and req["uri"].endswith(b"/ten"), req["uri"]
        handler.respond(req, body=b"ten\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"ten\n"
        assert r.header("Content-Length") == "4"
        assert r.header("Transfer-Encoding") is None
        assert c.wait_closed(), "HTTP/1.0 without keep-alive must close"


def test_http10_keepalive_is_honoured(srv, handler):
    with RawClient(srv.port) as c:
        for i in range(2):
            c.send(f"GET /ten/{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
            req = handler.recv_request()
            handler.respond(req, body=b"ten\n")
            r = c.read_response()
            assert r.status == 200 and r.body == b"ten\n"
            assert r.header("Connection").lower() == "keep-alive", r
        assert c.quiet_for(0.2)


def test_http10_keepalive_streamed_response_of_unknown_length_ends_with_close(srv, handler):
    with RawClient(srv.port) as c:
        c.send(b"GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        req = handler.recv_request()
        handler.respond(req, body=b"part one, ", more=True)
        handler.body(req, b"part two")
        r = c.read_response()
        assert r.header("Transfer-Encoding") is None, "chunked sent to an HTTP/1.0 client"
        assert r.header("Content-Length") is None
        assert r.header("Connection").lower() == "close"
        assert r.body == b"part one, part two"
        assert c.eof


# ---------------------------------------------------------------------------------------------
# large request heads (larger than one --buffer-size, within --max-header-size)


def test_large_request_head_is_accepted_whole(srv, handler):
    cookie = "c=" + "k" * 30000
    extra = [(f"X-Big-{i}", "v" * 2000) for i in range(10)]
    head = "GET /large HTTP/1.1\r\nHost: x\r\n" + f"Cookie: {cookie}\r\n" + \
        "".join(f"{n}: {v}\r\n" for n, v in extra) + "\r\n"
    assert 8192 < len(head) < 65536
    with RawClient(srv.port) as c:
        c.send(head.encode())
        req = handler.recv_request()
        hdrs = [(n.decode(), v.decode()) for n, v in req["headers"]]
        assert hdrs == [("Host", "x"), ("Cookie", cookie)] + extra
        handler.respond(req, body=b"big ok\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"big ok\n"


@pytest.mark.parametrize("size,status", [(65536, 200), (65537, 431)])
def test_max_header_size_boundary(srv, handler, size, status):
    """--max-header-size (default 65536) bounds the head, final CRLF included."""
    base = b"GET /edge HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n"
    head = base.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (size - len(base)))
    assert len(head) == size
    with RawClient(srv.port) as c:
        c.send(head)
        if status == 200:
            req = handler.recv_request()
            handler.respond(req, body=b"edge\n")
        r = c.read_response()
        assert r.status == status, r
