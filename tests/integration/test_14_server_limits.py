"""Server role connection limits: --stream-maxconn and --req-maxconn hold for the whole process
(across workers) and separately per kind. At the limit accepting pauses; a client over the limit
waits in the kernel backlog and is served once another connection closes."""

import pytest
import zmq

from srvkit import HttpConn, ReqHandler, StreamHandler, get, start


def serve_one(h, c, path):
    c.send(get(path))
    req = h.recv_request()
    assert req["uri"] == f"http://a{path}".encode()
    h.respond(req["id"], body=path.encode())
    assert c.read_response().body == path.encode()


def test_stream_maxconn_holds_across_workers_and_resumes_when_one_closes(rundir, zctx):
    d, info = start(rundir, "--stream-maxconn", "2", workers=2)
    h = StreamHandler(zctx, info["base"])
    port = info["port"]
    a, b = HttpConn(port), HttpConn(port)
    c = None
    try:
        serve_one(h, a, "/a")
        serve_one(h, b, "/b")  # both held (keep-alive), one per worker
        c = HttpConn(port)  # completes in the kernel backlog only
        c.send(get("/c"))
        assert h.no_request(600), "a connection over --stream-maxconn was served"
        d.wait_log(r"stream connection limit reached; accepting paused")
        a.close()
        req = h.recv_request(3000)
        assert req["uri"] == b"http://a/c"
        h.respond(req["id"], body=b"/c")
        assert c.read_response().body == b"/c"
        # the first connection still works
        serve_one(h, b, "/b2")
    finally:
        for x in (a, b, c):
            if x:
                x.close()
        h.close()
        d.stop()


def test_req_maxconn_is_separate_from_stream_maxconn(rundir, zctx):
    d, info = start(rundir, "--req-maxconn", "1", "--stream-maxconn", "5", workers=2, req=True)
    h = StreamHandler(zctx, info["base"])
    rh = ReqHandler(zctx, info["req_spec"])
    r1 = HttpConn(info["req_port"])
    r2 = None
    streams = []
    try:
        r1.send(get("/r1"))
        env, pkt = rh.recv()
        rh.reply(env, {"id": pkt["id"], "code": 200, "reason": "OK", "headers": [], "body": b"r1"})
        assert r1.read_response().body == b"r1"
        r2 = HttpConn(info["req_port"])
        r2.send(get("/r2"))
        assert rh.no_request(500), "a connection over --req-maxconn was served"
        # stream connections are not held back by the req limit
        for i in range(3):
            s = HttpConn(info["port"])
            streams.append(s)
            serve_one(h, s, f"/s{i}")
        assert rh.no_request(100)
        r1.close()
        env, pkt = rh.recv(3000)
        assert pkt["uri"] == b"http://a/r2"
        rh.reply(env, {"id": pkt["id"], "code": 200, "reason": "OK", "headers": [], "body": b"r2"})
        assert r2.read_response().body == b"r2"
    finally:
        for x in [r1, r2] + streams:
            if x:
                x.close()
        h.close()
        rh.close()
        d.stop()
