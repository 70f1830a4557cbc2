"""Zurl's legacy `J` format: JSON requests are answered in JSON, in stream and req mode, and the
bridge routes J packets by hash(from, id) like T ones, so later packets (credits, cancel) find
their session on any worker."""
import json

import pytest
import zmq

from origin import Origin
from zclient import Requester, Session, start_daemon


@pytest.fixture
def daemon(rundir):
    d, base = start_daemon(rundir, workers=4)
    yield d, base
    d.stop()


def text_route(method, path, headers, body):
    return 200, [("Content-Type", "text/plain; charset=utf-8"), ("X-Echo", headers.get("X-In", ""))], \
        "h\u00e9llo \u2713 ".encode() * 10


def test_json_stream_round_trip_with_credits_on_every_worker(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with Origin({"/t": text_route}) as o:
        sessions = [Session(rq, fmt="J") for _ in range(16)]
        for s in sessions:
            s.start(uri=o.url("/t"), stream=True, credits=0, headers=[["X-In", "caf\u00e9"]],
                    **{"user-data": {"n": 1, "s": "x"}})
        for s in sessions:
            ack = s.ack()
            assert ack["type"] == "keep-alive" and ack["from"] == "zhttpd"
            head = s.recv()
            assert head["code"] == 200 and head["reason"] == "OK"
            assert ["X-Echo", "caf\u00e9"] in head["headers"]
            assert head["user-data"] == {"n": 1, "s": "x"}
            assert head["more"] is True
            assert head.get("body", "") == ""
        # credits go through the ROUTER: they only work if they reach the session's worker
        for s in sessions:
            s.credit(1000)
        for s in sessions:
            text = ""
            while True:
                p = s.recv()
                text += p.get("body", "")
                if not p.get("more"):
                    break
            assert text == "h\u00e9llo \u2713 " * 10
    log = d.log()
    workers = {w for w in range(4) if f"worker {w}: stream GET" in log}
    assert len(workers) >= 3, workers  # 16 sessions over 4 workers


def test_json_req_mode_round_trip(daemon, zctx):
    d, base = daemon
    with Origin({"/t": text_route}) as o:
        s = zctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(f"{base}-req")
        s.send(b"J" + json.dumps({"id": "j1", "method": "POST", "uri": o.url("/t"),
                                  "body": "payload \u00e9", "user-data": [1, 2.5, None]}).encode())
        assert s.poll(5000)
        raw = s.recv()
        assert raw[:1] == b"J"
        rep = json.loads(raw[1:])
        assert rep["id"] == "j1" and rep["code"] == 200
        assert rep["body"] == "h\u00e9llo \u2713 " * 10
        assert rep["user-data"] == [1, 2.5, None]
        assert o.requests[-1][3] == "payload \u00e9".encode()


def test_json_error_replies_are_json(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    s = Session(rq, fmt="J")
    s.start(uri="ftp://127.0.0.1/", stream=True)
    p = s.recv()
    assert p == {"from": "zhttpd", "id": s.rid.decode(), "seq": 0, "type": "error",
                 "condition": "bad-request"}


def test_json_unknown_session_gets_a_json_cancel(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    rq.later({"from": rq.ident, "id": "nope", "seq": 4, "type": "credit", "credits": 5}, fmt="J")
    via, fmt, p = rq.recv("nope", with_meta=True)
    assert fmt == "J" and p["type"] == "cancel" and "seq" not in p


def test_bad_json_is_logged_and_dropped(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    rq.first_raw(b'J{"from": "req1", "id": ')
    d.wait_log(r"client-in: malformed packet dropped: invalid JSON")
    rq.first_raw(b'J["not", "an", "object"]')
    d.wait_log(r"client-in: malformed packet dropped: packet is not a JSON object")
    # and the daemon serves on
    with Origin({"/t": text_route}) as o:
        s = Session(rq, fmt="J")
        s.start(uri=o.url("/t"), stream=True, credits=10000)
        s.ack()
        assert s.response()[0]["code"] == 200
