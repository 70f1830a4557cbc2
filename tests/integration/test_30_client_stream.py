"""Client role, stream mode: sessions keyed by (from, id), the ack, the response head sent without
credits, bodies under the requester's credits (5 MB granted slowly, never more than granted),
chunked and HTTP/1.0 origins, repeated headers, stream:false and max-size, seq gaps, duplicate
ids, cancel (origin connection closed), router-resp, fire-and-forget, keep-alive and expiry."""
import asyncio
import hashlib
import re
import threading
import time

import pytest
import zmq
from aiohttp import web

import tnetstring_py as tns
from origin import Origin
from streamorigin import AioOrigin, RawOrigin, wait_closed
from zclient import Requester, Session, encode, start_daemon


@pytest.fixture
def daemon(rundir):
    d, base = start_daemon(rundir)
    yield d, base
    d.stop()


BIG = bytes(range(256)) * (5 * 1024 * 1024 // 256)  # 5 MiB, every byte value


def big_origin(app):
    async def big(request):
        return web.Response(body=BIG, headers={"X-Sum": hashlib.sha256(BIG).hexdigest()})

    async def chunked(request):
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(20):
            await resp.write(b"chunk-%02d;" % i)
            await asyncio.sleep(0.01)
        await resp.write_eof()
        return resp

    async def slow(request):
        await asyncio.sleep(float(request.query.get("s", "3")))
        return web.Response(text="late")

    app.router.add_get("/big", big)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/slow", slow)


def test_stream_get_ack_head_body_and_user_data(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with Origin({"/hello": lambda *a: (200, [("Content-Type", "text/plain")], b"hello\n")}) as o:
        s = Session(rq)
        s.start(uri=o.url("/hello"), stream=True, credits=1000, headers=[["X-A", "1"]],
                **{"user-data": {"k": [1, b"two"]}, "ext": {"multi": True}})
        ack = s.ack()
        assert ack["type"] == b"keep-alive" and ack["seq"] == 0
        assert ack["ext"] == {"multi": True}
        assert ack["user-data"] == {"k": [1, b"two"]}
        pkt = s.recv()
        assert pkt["code"] == 200 and pkt["reason"] == b"OK"
        assert [b"Content-Type", b"text/plain"] in pkt["headers"]
        assert pkt["user-data"] == {"k": [1, b"two"]}
        body = pkt.get("body", b"")
        while pkt.get("more"):
            pkt = s.recv()
            assert pkt["user-data"] == {"k": [1, b"two"]}
            body += pkt["body"]
        assert body == b"hello\n"
        assert o.requests[-1][2].get("X-A") == "1"
        assert s.quiet(0.3), "packets after the end of the response"
    d.wait_log(r"worker [01]: stream GET http://127\.0\.0\.1:\d+/hello started for req1/s-")


def test_head_is_sent_without_credits_and_body_waits_for_them(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with Origin({"/x": lambda *a: (200, [], b"0123456789")}) as o:
        s = Session(rq)
        s.start(uri=o.url("/x"), stream=True)  # no credits at all
        s.ack()
        head = s.recv()
        assert head["code"] == 200
        assert head.get("body", b"") == b"" and head["more"] is True
        assert s.quiet(0.5), "body sent without credits"
        s.credit(4)
        p = s.recv()
        assert p["body"] == b"0123" and p["more"] is True
        assert s.quiet(0.3)
        s.credit(100)
        p = s.recv()
        assert p["body"] == b"456789"
        if p.get("more"):
            p = s.recv()
            assert p.get("body", b"") == b""
        assert not p.get("more")


def test_5mb_with_slow_credits_never_exceeds_the_grant(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with AioOrigin(big_origin) as o:
        s = Session(rq)
        s.start(uri=o.url("/big"), stream=True, credits=65536)
        s.ack()
        # Session.recv() raises as soon as more body arrives than was granted.
        head, body, packets = s.response(step=65536, timeout=60, pause=0.002)
        assert head["code"] == 200
        assert len(body) == len(BIG)
        assert hashlib.sha256(body).hexdigest() == dict(
            (bytes(k).lower(), v) for k, v in head["headers"])[b"x-sum"].decode()
        assert packets >= len(BIG) // 65536


def test_credits_granted_mid_stream_resume_a_paused_transfer(daemon, zctx):
    """The origin's 5 MB cannot fit in socket buffers: curl must really pause and resume."""
    d, base = daemon
    rq = Requester(zctx, base)
    with AioOrigin(big_origin) as o:
        s = Session(rq)
        s.start(uri=o.url("/big"), stream=True, credits=1000)
        s.ack()
        head = s.recv()
        got = head.get("body", b"")
        while len(got) < 1000:
            got += s.recv()["body"]
        assert len(got) == 1000
        assert s.quiet(1.0), "more than the 1000 bytes granted"
        s.credit(len(BIG))
        while True:
            p = s.recv(timeout=30)
            got += p.get("body", b"")
            if not p.get("more"):
                break
        assert got == BIG


def test_chunked_origin(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with AioOrigin(big_origin) as o:
        s = Session(rq)
        s.start(uri=o.url("/chunked"), stream=True, credits=100000)
        s.ack()
        head, body, _ = s.response()
        assert body == b"".join(b"chunk-%02d;" % i for i in range(20))
        names = [bytes(h[0]).lower() for h in head["headers"]]
        assert b"transfer-encoding" not in names  # the body delivered is de-chunked
        assert b"content-length" not in names


def http10(conn, head, origin):
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nX-Old: yes\r\n\r\n")
    for i in range(5):
        conn.sendall(b"part%d " % i)
        time.sleep(0.02)


def test_http10_origin_body_until_close(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with RawOrigin(http10) as o:
        s = Session(rq)
        s.start(uri=o.url("/old"), stream=True, credits=100000)
        s.ack()
        head, body, _ = s.response()
        assert head["code"] == 200
        assert [b"X-Old", b"yes"] in head["headers"]
        assert body == b"part0 part1 part2 part3 part4 "


def repeated(conn, head, origin):
    conn.sendall(b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Mid: m\r\nSet-Cookie: b=2\r\n"
                 b"set-cookie: c=3\r\nContent-Length: 2\r\n\r\nok")


def test_repeated_headers_kept_in_order_with_their_case(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with RawOrigin(repeated) as o:
        s = Session(rq)
        s.start(uri=o.url("/"), stream=True, credits=10)
        s.ack()
        head, body, _ = s.response()
        assert [list(map(bytes, h)) for h in head["headers"]] == [
            [b"Set-Cookie", b"a=1"], [b"X-Mid", b"m"], [b"Set-Cookie", b"b=2"],
            [b"set-cookie", b"c=3"], [b"Content-Length", b"2"]]
        assert body == b"ok"


def test_stream_false_gives_the_whole_body_in_one_packet(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    body = b"x" * 300000
    with Origin({"/b": lambda *a: (200, [], body)}) as o:
        s = Session(rq)
        s.start(uri=o.url("/b"))  # no stream, no credits: credits do not apply
        s.ack()
        p = s.recv(timeout=10)
        assert p["code"] == 200 and p["body"] == body
        assert "more" not in p


@pytest.mark.parametrize("size,max_size,expect", [
    (2 * 1024 * 1024, None, b"max-size-exceeded"),  # the 1 MiB default
    (1000, 999, b"max-size-exceeded"),
    (1000, 1000, None),
])
def test_stream_false_max_size(daemon, zctx, size, max_size, expect):
    d, base = daemon
    rq = Requester(zctx, base)
    with Origin({"/b": lambda *a: (200, [], b"y" * size)}) as o:
        s = Session(rq)
        extra = {} if max_size is None else {"max-size": max_size}
        s.start(uri=o.url("/b"), **extra)
        s.ack()
        p = s.recv(timeout=10)
        if expect:
            assert p["type"] == b"error" and p["condition"] == expect, p
        else:
            assert p["code"] == 200 and len(p["body"]) == size


def test_stream_max_size_announced_length_fails_before_the_head(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with Origin({"/b": lambda *a: (200, [], b"z" * 5000)}) as o:
        s = Session(rq)
        s.start(uri=o.url("/b"), stream=True, credits=100000, **{"max-size": 4000})
        s.ack()
        p = s.recv()
        assert p["type"] == b"error" and p["condition"] == b"max-size-exceeded"


def test_stream_max_size_exceeded_mid_body_is_a_cancel(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with AioOrigin(big_origin) as o:
        s = Session(rq)
        s.start(uri=o.url("/chunked"), stream=True, credits=100000, **{"max-size": 50})
        s.ack()
        head = s.recv()
        assert head["code"] == 200
        while True:
            p = s.recv()
            if p.get("type"):
                break
        assert p["type"] == b"cancel"
    assert re.search(r"failed: role=client method=GET host=\S+ condition=max-size-exceeded "
                     r"stage=response reason=\"body over the limit of \d+ bytes\" after the "
                     r"response started; sending cancel", d.log()), d.log()


def slow_body(conn, head, origin):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
    for _ in range(100):
        conn.sendall(b"a" * 100)
        time.sleep(0.05)
    origin.done = True


def test_cancel_mid_response_closes_the_origin_connection(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    closed = {}

    def handler(conn, head, origin):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 100)
        closed["v"] = wait_closed(conn, timeout=5)

    with RawOrigin(handler) as o:
        s = Session(rq)
        s.start(uri=o.url("/"), stream=True, credits=1000000)
        s.ack()
        head = s.recv()
        assert head["code"] == 200
        s.send(type="cancel")
        deadline = time.monotonic() + 6
        while "v" not in closed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert closed.get("v") is True, "zhttpd kept the origin connection open after cancel"
        assert s.quiet(0.3), "a cancel was answered"
    d.wait_log(r"session req1/s-\w+: cancel from the requester")


def test_seq_gap_cancels_the_session(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with AioOrigin(big_origin) as o:
        s = Session(rq)
        s.start(uri=o.url("/slow?s=2"), stream=True, credits=10)
        s.ack()
        s.out_seq = 5  # skip 1..4
        s.credit(10)
        p = s.recv()
        assert p["type"] == b"cancel"
        assert s.quiet(0.3)
        # the session is gone: a later packet is an unknown session (cancel without seq)
        s.credit(1)
        p = rq.recv(s.rid)
        assert p["type"] == b"cancel" and "seq" not in p
    assert re.search(r"seq 5, expected 1; cancelling", d.log())


def test_duplicate_id_of_an_active_session_is_skipped(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with AioOrigin(big_origin) as o:
        s = Session(rq, rid="dup")
        s.start(uri=o.url("/slow?s=0.5"), stream=True, credits=100)
        s.ack()
        rq.first({"from": rq.ident, "id": "dup", "seq": 0, "method": "GET",
                  "uri": o.url("/chunked"), "stream": True, "credits": 100})
        head, body, _ = s.response()
        assert body == b"late"  # the first request's answer, nothing from the duplicate
        assert s.quiet(0.5)
    assert "request for id dup of req1 already in use, skipped" in d.log()


def test_same_id_from_two_requesters_are_two_sessions(daemon, zctx):
    d, base = daemon
    a = Requester(zctx, base, ident=b"reqA")
    b = Requester(zctx, base, ident=b"reqB")
    with Origin({"/a": lambda *x: (200, [], b"for A"), "/b": lambda *x: (200, [], b"for B")}) as o:
        sa, sb = Session(a, rid="same"), Session(b, rid="same")
        sa.start(uri=o.url("/a"), stream=True, credits=100)
        sb.start(uri=o.url("/b"), stream=True, credits=100)
        sa.ack()
        sb.ack()
        assert sa.response()[1] == b"for A"
        assert sb.response()[1] == b"for B"


def test_router_resp_replies_come_through_the_router(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with Origin({"/r": lambda *a: (200, [], b"via router")}) as o:
        s = Session(rq)
        s.start(uri=o.url("/r"), stream=True, credits=100, **{"router-resp": True})
        via, ack = s.recv(with_via=True)
        assert via == "router" and ack["type"] == b"keep-alive"
        via, head = s.recv(with_via=True)
        assert via == "router" and head["code"] == 200


def test_fire_and_forget_without_from_gets_no_reply(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with Origin({"/ff": lambda *a: (200, [], b"ignored")}) as o:
        rq.first({"id": "ff1", "method": "POST", "uri": o.url("/ff"), "body": b"ping"})
        deadline = time.monotonic() + 5
        while not o.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert o.requests and o.requests[0][3] == b"ping"
        assert rq.quiet("ff1", 0.5)


def test_multi_id_cancel_ends_each_named_session(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    closed = []

    def handler(conn, head, origin):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nabc")
        closed.append(wait_closed(conn, timeout=5))

    with RawOrigin(handler) as o:
        sessions = [Session(rq) for _ in range(4)]
        for s in sessions:
            s.start(uri=o.url("/"), stream=True, credits=10)
        for s in sessions:
            s.ack()
            head = s.recv()
            assert head["code"] == 200
            got = head.get("body", b"")
            while len(got) < 3:
                got += s.recv()["body"]
            assert got == b"abc"
        # one keep-alive for all four (multi-id), then one cancel for all four
        rq.later({"from": rq.ident, "type": "keep-alive",
                  "id": [{"id": s.rid, "seq": s.out_seq} for s in sessions]})
        for s in sessions:
            s.out_seq += 1
        rq.later({"from": rq.ident, "type": "cancel",
                  "id": [{"id": s.rid, "seq": s.out_seq} for s in sessions]})
        deadline = time.monotonic() + 6
        while len(closed) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert closed == [True] * 4
        for s in sessions:
            assert s.quiet(0.2)


def test_keepalives_while_idle_and_expiry_after_silence(rundir, zctx):
    d, base = start_daemon(rundir, "keepalive_interval_ms = 200\nsession_expiry_ms = 1200\n")
    closed = {}

    def handler(conn, head, origin):
        closed[head.split(b" ")[1]] = wait_closed(conn, timeout=8)

    try:
        rq = Requester(zctx, base)
        with RawOrigin(handler) as o:
            silent, talking = Session(rq), Session(rq)
            silent.start(uri=o.url("/silent"), stream=True, credits=10)
            talking.start(uri=o.url("/talking"), stream=True, credits=10)
            silent.ack()
            talking.ack()
            t0 = time.monotonic()
            kas = 0
            while time.monotonic() - t0 < 2.0:
                talking.send(type="keep-alive")
                p = talking.recv(timeout=1)
                assert p["type"] == b"keep-alive"
                kas += 1
            assert kas >= 4, kas  # about every 200 ms (2 s, allowing for a loaded machine)
            # the silent one expired (origin connection closed, nothing said); the other lives on
            deadline = time.monotonic() + 3
            while b"/silent" not in closed and time.monotonic() < deadline:
                time.sleep(0.05)
            assert closed.get(b"/silent") is True
            assert b"/talking" not in closed
            pkts = []
            while not silent.quiet(0.1):
                pkts.append(silent.recv())
            assert pkts and all(p["type"] == b"keep-alive" for p in pkts)
            d.wait_log(r"session req1/%s expired after 1200 ms" % silent.rid.decode())
    finally:
        d.stop()


def test_j_packets_are_not_confused_with_t(daemon, zctx):
    """A `T` requester's reply stays `T` when another session speaks `J` on the same worker."""
    d, base = daemon
    rq = Requester(zctx, base)
    with Origin({"/t": lambda *a: (200, [], b"t")}) as o:
        st, sj = Session(rq), Session(rq, fmt="J")
        st.start(uri=o.url("/t"), stream=True, credits=10)
        sj.start(uri=o.url("/t"), stream=True, credits=10)
        st.ack()
        sj.ack()
        assert st.response()[1] == b"t"
        head, body, _ = sj.response()
        assert body == "t" or body == b"t"


def test_a_requester_without_credits_stalls_the_origin(daemon, zctx):
    """zhttpd holds at most one curl chunk beyond the credits: the transfer pauses, so an origin
    with 64 MB to send is stopped by TCP flow control instead of filling zhttpd's memory."""
    d, base = daemon
    rq = Requester(zctx, base)
    total = 64 * 1024 * 1024
    progress = {"sent": 0}
    release = threading.Event()

    def handler(conn, head, origin):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        chunk = b"m" * 65536
        conn.settimeout(0.5)
        while progress["sent"] < total and not release.is_set():
            try:
                progress["sent"] += conn.send(chunk)
            except OSError:
                time.sleep(0.01)

    with RawOrigin(handler) as o:
        s = Session(rq)
        s.start(uri=o.url("/"), stream=True, credits=1000)
        s.ack()
        head = s.recv()
        time.sleep(2.0)
        sent = progress["sent"]
        release.set()
        assert sent < 24 * 1024 * 1024, f"origin could push {sent} bytes past 1000 credits"
        got = head.get("body", b"")
        while not s.quiet(0.2):
            got += s.recv().get("body", b"")
        assert len(got) == 1000
