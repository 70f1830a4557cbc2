"""Client role on SIGTERM: with --shutdown-timeout 0 every session in flight is told (stream:
cancel, req mode: error) and the daemon exits 0 at once; with a drain time, a session in flight
finishes normally first and a new request is refused."""
import threading
import time

import pytest
import zmq

from streamorigin import RawOrigin
from test_03_end_to_end import req_roundtrip
from zclient import Requester, Session, start_daemon


def stalled(conn, head, origin):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    origin.release.wait(10)


def test_sigterm_cancels_sessions_in_flight(rundir, zctx):
    d, base = start_daemon(rundir)
    rq = Requester(zctx, base)
    o = RawOrigin(stalled)
    o.release = threading.Event()
    with o:
        s = Session(rq)
        s.start(uri=o.url("/"), stream=True, credits=100)
        s.ack()
        head = s.recv()
        assert head["code"] == 200
        result = {}
        t = threading.Thread(target=lambda: result.update(
            rep=req_roundtrip(zctx, f"{base}-req", {"id": "r", "method": "GET",
                                                     "uri": o.url("/req")}, 5000)))
        t.start()
        deadline = time.monotonic() + 5
        while o.conns < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        took = d.stop()
        t.join(5)
        o.release.set()
        assert took < 2.0
        got = [s.recv()]
        while got[-1].get("type") is None:
            got.append(s.recv())
        assert got[-1]["type"] == b"cancel"
        assert result["rep"]["type"] == b"error"
        assert result["rep"]["condition"] == b"undefined-condition"
    assert "cancelled by shutdown" in d.log()


def test_sigterm_with_a_drain_time_lets_a_session_finish(rundir, zctx):
    d, base = start_daemon(rundir, args=("--shutdown-timeout", "5"))
    rq = Requester(zctx, base)

    def slow(conn, head, origin):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")
        time.sleep(0.8)
        conn.sendall(b"def")

    with RawOrigin(slow) as o:
        s = Session(rq)
        s.start(uri=o.url("/"), stream=True, credits=100)
        s.ack()
        t = threading.Thread(target=d.stop)
        t0 = time.monotonic()
        time.sleep(0.2)
        t.start()
        head, body, _ = s.response()
        assert body == b"abcdef"
        late = Session(rq)
        late.start(uri=o.url("/"), stream=True, credits=100)
        p = late.recv()
        assert p["type"] == b"error" and p["condition"] == b"undefined-condition"
        t.join(10)
        assert not d.alive()
        assert time.monotonic() - t0 < 4
