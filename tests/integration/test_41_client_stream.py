"""Client role, stream mode (ZHTTP.md §2.1, §4, §5): first packet over PUSH, later packets over
ROUTER to the daemon's identity, every reply on the SUB as "<from> T…". Sessions check every reply
(from, id, seq, user-data) and that body bytes never exceed the credits granted (zrequester.Session).
Each test runs against zhttpd and Debian's zurl; zhttpd-only cases say why."""
import hashlib
import json
import time

import pytest

from nginx_origin import NginxOrigin
from origins import (AppOrigin, HELLO, RawOrigin, drip_handler, http10_handler, pattern,
                     silent_handler)
from zrequester import (Requester, Session, binary, daemon, header_values,  # noqa: F401
                        zhttpd_only)

FIVE_MB = 5 * 1000 * 1000


@pytest.fixture
def rq(daemon, zctx):
    r = Requester(zctx, daemon())
    yield r
    r.close()


def test_ack_is_keep_alive_with_from_id_seq0(rq):
    with AppOrigin() as o:
        s = Session(rq)
        s.start("GET", o.url("/hello"), credits=1000)
        ack = s.recv()
        assert ack == {"from": rq.zid, "id": s.rid, "seq": 0, "type": b"keep-alive"}
        head, body, _ = s.response()
        assert head["code"] == 200 and body == HELLO


def test_ack_echoes_ext_multi_and_user_data(rq):
    with AppOrigin() as o:
        s = Session(rq, user_data={"trace": b"abc", "n": 3})
        s.start("GET", o.url("/hello"), credits=1000, ext={"multi": True})
        ack = s.recv()
        assert ack == {"from": rq.zid, "id": s.rid, "seq": 0, "type": b"keep-alive",
                       "ext": {"multi": True}, "user-data": {"trace": b"abc", "n": 3}}
        s.response()


def test_ack_for_streamed_body_is_credit_of_buffer_size(daemon, zctx):
    d = daemon(conf=["buffer_size=50000"])
    rq = Requester(zctx, d)
    with AppOrigin() as o:
        s = Session(rq)
        s.start("POST", o.url("/upload"), credits=1000, more=True)
        ack = s.recv()
        assert ack == {"from": rq.zid, "id": s.rid, "seq": 0, "type": b"credit", "credits": 50000}
        s.send(body=b"abc")
        head, body, _ = s.response()
        assert json.loads(body)["len"] == 3


def test_default_buffer_size_credit_is_200000(rq):
    with AppOrigin() as o:
        s = Session(rq)
        s.start("PUT", o.url("/upload"), credits=1000, more=True)
        ack = s.recv()
        assert ack["type"] == b"credit" and ack["credits"] == 200000
        s.send(body=b"")
        assert json.loads(s.response()[1])["len"] == 0


def test_get_streams_head_and_body(rq):
    with AppOrigin() as o:
        s = Session(rq)
        s.start("GET", o.url("/hello"), credits=100000, headers=[["X-Req", "1"]])
        s.ack()
        head, body, _ = s.response()
        assert head["code"] == 200 and head["reason"] == b"OK"
        assert header_values(head["headers"], "X-Multi") == [b"one", b"two"]
        assert header_values(head["headers"], "Set-Cookie") == [b"a=1; Path=/", b"b=2; Path=/"]
        assert body == HELLO
        assert [v for k, v in o.requests[0][2] if k == b"X-Req"] == [b"1"]
        # the session is over: a later packet is answered with cancel (unknown session)
        rq.later({"from": rq.ident, "id": s.rid, "seq": s.out_seq, "type": "credit",
                  "credits": 10})
        pkt = rq.recv(s.rid)
        assert pkt["type"] == b"cancel" and pkt["id"] == s.rid


def test_five_megabytes_under_slow_credits(daemon, zctx, rundir):
    """nginx serves 5 MB; the requester grants 256 KiB at a time, pausing between grants, and at
    every packet has received no more body than it granted (checked by Session). While no credits
    are left the daemon stays silent."""
    data = pattern(FIVE_MB)
    rq = Requester(zctx, daemon())
    with NginxOrigin(rundir, {"big.bin": data}) as ng:
        s = Session(rq)
        s.start("GET", ng.url("/big.bin"), credits=65536)
        s.ack()
        body = bytearray()
        head = None
        stalls_checked = 0
        deadline = time.monotonic() + 20
        while True:
            pkt = s.recv(timeout=max(0.1, deadline - time.monotonic()))
            if pkt.get("type") in (b"keep-alive", b"credit"):
                continue
            assert pkt.get("type") is None, pkt
            if head is None:
                head = pkt
            body += pkt.get("body", b"")
            if not pkt.get("more"):
                break
            if s.body_received == s.credits_given:
                if stalls_checked < 3:
                    # out of credits: nothing more may arrive until we grant
                    assert s.quiet(0.3), "data arrived with no credits left"
                    stalls_checked += 1
                else:
                    time.sleep(0.02)
                s.credit(262144)
        assert head["code"] == 200
        assert header_values(head["headers"], "Content-Length") == [str(FIVE_MB).encode()]
        assert len(body) == FIVE_MB
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
        assert stalls_checked == 3
        assert s.body_received <= s.credits_given


def test_no_body_before_credits(rq):
    with AppOrigin() as o:
        s = Session(rq)
        s.start("GET", o.url("/hello"), credits=0)
        s.ack()
        # no credits: whatever arrives (a head at most) carries no body bytes (Session checks)
        head = None
        while not s.quiet(0.5):
            pkt = s.recv()
            assert not pkt.get("body"), pkt
            head = head or pkt
        s.credit(5)
        got = bytearray()
        while len(got) < 5:
            pkt = s.recv()
            head = head or pkt
            got += pkt.get("body", b"")
        assert head["code"] == 200
        assert bytes(got) == HELLO[:5]
        assert s.quiet(0.3)
        s.credit(100)
        _, rest, _ = s.response(head=head)
        assert bytes(got) + rest == HELLO


@zhttpd_only("Zurl waits for a credit before sending even the response head; zhttpd sends the "
             "head with an empty body at once (ZHTTP.md §4.3)")
def test_head_sent_without_credits(rq):
    with AppOrigin() as o:
        s = Session(rq)
        s.start("GET", o.url("/hello"), credits=0)
        s.ack()
        head = s.recv(timeout=5)
        assert head["code"] == 200 and head.get("body", b"") == b"" and head["more"] is True
        s.credit(1000)
        _, body, _ = s.response(head=head)
        assert body == HELLO


@pytest.mark.parametrize("origin_kind", ["chunked", "http10"])
def test_chunked_and_http10_origins(rq, origin_kind):
    body10 = b"line of an HTTP/1.0 response\n" * 50
    if origin_kind == "chunked":
        ctx = AppOrigin()
        path, want = "/chunked", b"".join(b"piece %d\n" % i for i in range(5))
    else:
        ctx = RawOrigin(http10_handler(body10))
        path, want = "/", body10
    with ctx as o:
        s = Session(rq)
        s.start("GET", o.url(path), credits=16)
        s.ack()
        head, body, packets = s.response(step=16)
        assert head["code"] == 200
        assert body == want
        assert packets > 1


def test_user_data_on_every_packet(rq):
    """ack, head, every data packet, and the credit packets of an upload all carry the value."""
    ud = {"route": b"r1", "ids": [1, 2, 3]}
    with AppOrigin() as o:
        s = Session(rq, user_data=ud)
        s.start("GET", o.url("/big/3000"), credits=500)
        s.ack()
        head, body, packets = s.response(step=500)
        assert body == pattern(3000) and packets >= 6
        s2 = Session(rq, user_data=b"upload")
        s2.start("POST", o.url("/upload"), credits=1000, more=True)
        s2.ack()
        s2.send(body=b"x" * 1000, more=True)
        s2.send(body=b"")
        s2.response()
        assert all(p.get("user-data") == b"upload" for p in s2.packets)
        assert len(s.packets) >= 7 and all(p.get("user-data") == ud for p in s.packets)


def test_seq_gap_cancels_session(rq):
    with RawOrigin(drip_handler) as o:
        s = Session(rq)
        s.start("GET", o.url("/"), credits=0)
        s.ack()
        o.wait_head()
        s.send(seq=5, type="credit", credits=100)
        pkt = s.recv()
        while pkt.get("type") in (None, b"keep-alive"):  # a head may come first (no body)
            pkt = s.recv()
        assert pkt["type"] == b"cancel", pkt
        assert o.peer_closed.wait(5), "origin connection still open after the cancel"


def test_later_packet_without_seq(rq, binary):
    """Zurl cancels a session on a later packet without seq; zhttpd checks seq only when present
    (DESIGN.md "Sessions": Condure's example handlers send none), so it takes the credits."""
    with AppOrigin() as o:
        s = Session(rq)
        s.start("GET", o.url("/slow/800"), credits=0)
        s.ack()
        rq.later({"from": rq.ident, "id": s.rid, "type": "credit", "credits": 1000})
        if binary == "zurl":
            pkt = s.recv()
            while pkt.get("type") is None and not pkt.get("body"):
                pkt = s.recv()
            assert pkt["type"] == b"cancel"
            assert s.quiet(1.5), "the cancelled session still answered"
        else:
            s.credits_given += 1000
            s.out_seq += 1
            head, body, _ = s.response()
            assert head["code"] == 200 and body == b"slow done"


def test_unknown_session_gets_cancel_and_cancel_gets_nothing(rq):
    rq.later({"from": rq.ident, "id": "no-such", "seq": 4, "type": "credit", "credits": 5})
    pkt = rq.recv("no-such")
    assert pkt["type"] == b"cancel" and pkt["id"] == b"no-such"
    assert "condition" not in pkt
    rq.later({"from": rq.ident, "id": "no-such-2", "seq": 4, "type": "cancel"})
    rq.later({"from": rq.ident, "id": "no-such-3", "seq": 4, "type": "error",
              "condition": "undefined-condition"})
    assert rq.quiet("no-such-2", 1.0) and rq.quiet("no-such-3", 0.2)


def test_cancel_mid_response_closes_origin_connection(rq):
    with RawOrigin(drip_handler) as o:
        s = Session(rq)
        s.start("GET", o.url("/"), credits=1000000)
        s.ack()
        head = s.recv()
        assert head["code"] == 200 and head["more"] is True
        time.sleep(0.2)
        assert not o.peer_closed.is_set()
        s.cancel()
        assert o.peer_closed.wait(5), "origin did not see the connection close after cancel"
        # data already in flight may still arrive, but never an answer to the cancel
        while not s.quiet(1.0):
            pkt = rq.recv(s.rid)
            assert pkt.get("type") is None, f"cancel was answered: {pkt!r}"


def test_streamed_post_upload_under_credits(rq):
    """1 MB uploaded in pieces within the credits the daemon grants; the origin receives it all,
    chunked (no Content-Length from the handler)."""
    data = pattern(1000000)[::-1]
    with AppOrigin() as o:
        s = Session(rq)
        s.start("POST", o.url("/upload"), credits=1000, more=True,
                headers=[["Content-Type", "application/octet-stream"]])
        ack = s.ack()
        assert ack["type"] == b"credit"
        avail = ack["credits"]
        sent, grants = 0, 0
        while sent < len(data):
            while avail == 0:
                pkt = s.recv()
                assert pkt.get("type") == b"credit", f"expected a credit, got {pkt!r}"
                assert pkt["credits"] > 0
                avail += pkt["credits"]
                grants += 1
            n = min(avail, len(data) - sent, 40000)
            s.send(body=data[sent:sent + n], more=True)
            sent += n
            avail -= n
        s.send(body=b"")
        head, body, _ = s.response()
        got = json.loads(body)
        assert head["code"] == 200
        assert got["len"] == len(data)
        assert got["sha256"] == hashlib.sha256(data).hexdigest()
        assert got["te"] == "chunked" and got["cl"] is None
        assert grants >= 3, "the daemon never re-granted credits for bytes it wrote"


def test_streamed_upload_with_handler_content_length(rq):
    with AppOrigin() as o:
        s = Session(rq)
        s.start("PUT", o.url("/upload"), credits=1000, more=True,
                headers=[["Content-Length", "300"]])
        s.ack()
        s.send(body=b"a" * 100, more=True)
        s.send(body=b"b" * 200)
        head, body, _ = s.response()
        got = json.loads(body)
        assert got["len"] == 300 and got["cl"] == "300" and got["te"] is None
        assert got["sha256"] == hashlib.sha256(b"a" * 100 + b"b" * 200).hexdigest()


def test_first_packet_body_and_more(rq):
    """The first packet may carry body bytes before more data packets follow."""
    with AppOrigin() as o:
        s = Session(rq)
        s.start("POST", o.url("/upload"), credits=1000, more=True, body=b"first-")
        s.ack()
        s.send(body=b"second")
        got = json.loads(s.response()[1])
        assert got["len"] == 12
        assert got["sha256"] == hashlib.sha256(b"first-second").hexdigest()


def test_streamed_input_must_start_at_seq_zero(rq):
    with AppOrigin() as o:
        s = Session(rq)
        s.out_seq = 3
        s.start("POST", o.url("/upload"), credits=1000, more=True)
        pkt = s.recv(check_seq=False)
        assert pkt["type"] == b"error" and pkt["condition"] == b"bad-request"
        assert pkt["seq"] == 0
        assert o.requests == []


def test_data_after_end_of_body_is_bad_request(rq):
    with AppOrigin() as o:
        s = Session(rq)
        s.start("POST", o.url("/slow/1500"), credits=1000, more=True)
        s.ack()
        s.send(body=b"abc")
        s.send(body=b"late", more=True)
        assert s.error() == b"bad-request"


def test_without_stream_the_whole_body_comes_in_one_packet(rq):
    with AppOrigin() as o:
        s = Session(rq)
        s.start("GET", o.url("/big/300000"), stream=None)
        s.ack()
        pkt = s.recv()
        assert pkt["code"] == 200
        assert pkt["body"] == pattern(300000)
        assert "more" not in pkt
        assert s.quiet(0.5)


def test_multi_id_credit_packet(rq):
    with AppOrigin() as o:
        a, b = Session(rq), Session(rq)
        a.start("GET", o.url("/hello"), credits=0, ext={"multi": True})
        b.start("GET", o.url("/hello"), credits=0, ext={"multi": True})
        a.ack()
        b.ack()
        rq.later({"from": rq.ident, "id": [{"id": a.rid, "seq": 1}, {"id": b.rid, "seq": 1}],
                  "type": "credit", "credits": 100})
        for s in (a, b):
            s.out_seq += 1
            s.credits_given += 100
        assert a.response()[1] == HELLO
        assert b.response()[1] == HELLO


def test_fire_and_forget_without_from(rq):
    """A first packet without `from` is performed and never answered (ZHTTP.md §2.1)."""
    with AppOrigin() as o:
        rq.first({"id": "ff-1", "seq": 0, "method": "POST", "uri": o.url("/echo?ff=1"),
                  "body": b"fire", "stream": True})
        deadline = time.monotonic() + 5
        while not o.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [(r[0], r[1], r[3]) for r in o.requests] == [("POST", "/echo?ff=1", b"fire")]
        assert rq.quiet("ff-1", 1.0)


def test_duplicate_id_does_not_disturb_the_active_session(rq):
    with AppOrigin() as o:
        s = Session(rq)
        s.start("GET", o.url("/slow/800"), credits=1000)
        s.ack()
        rq.first({"from": rq.ident, "id": s.rid, "seq": 0, "method": "GET",
                  "uri": o.url("/hello"), "stream": True, "credits": 1000})
        head, body, _ = s.response()
        assert head["code"] == 200 and body == b"slow done"


def test_j_format_stream_round_trip(rq):
    with AppOrigin() as o:
        s = Session(rq, fmt="J", user_data={"k": "v"})
        s.start("POST", o.url("/echo"), credits=100000, body="json body",
                headers=[["X-J", "1"]])
        ack = s.ack()
        assert ack["type"] == b"keep-alive"
        head, body, _ = s.response()
        echo = json.loads(body)
        assert head["code"] == 200
        assert echo["body"] == "json body" and ["X-J", "1"] in echo["headers"]
        # every reply was a J frame on the SUB
        frames = [f for via, f in rq.raw if via == "pub" and s.rid in f]
        assert frames and all(f.split(b" ", 1)[1][:1] == b"J" for f in frames)


def test_max_size_exceeded_in_stream_mode(rq):
    with AppOrigin() as o:
        s = Session(rq)
        s.start("GET", o.url("/big/300000"), credits=1000000, max_size=100000)
        s.ack()
        assert s.error() == b"max-size-exceeded"
        assert s.body_received <= 100000


def test_timeout_field_is_session_timeout(rq):
    with AppOrigin() as o:
        s = Session(rq)
        t0 = time.monotonic()
        s.start("GET", o.url("/slow/5000"), credits=1000, timeout=500)
        s.ack()
        assert s.error(timeout=5) == b"session-timeout"
        assert 0.4 < time.monotonic() - t0 < 3.0


def test_config_timeout_is_inactivity_session_timeout(daemon, zctx):
    """Config `timeout` (seconds of HTTP inactivity) ends a request whose origin never answers."""
    rq = Requester(zctx, daemon(conf=["timeout=1"]))
    with RawOrigin(silent_handler) as o:
        s = Session(rq)
        t0 = time.monotonic()
        s.start("GET", o.url("/"), credits=1000)
        s.ack()
        assert s.error(timeout=8) == b"session-timeout"
        assert 0.8 < time.monotonic() - t0 < 5.0
        assert s.body_received == 0
        assert o.peer_closed.wait(5), "origin connection left open after the timeout"


def test_inactivity_after_the_response_started_ends_the_session(daemon, zctx, binary):
    """The origin sends its head and 5 of 100 body bytes, then stalls. Zurl reports
    session-timeout as an error; zhttpd follows ZHTTP.md §6's client-mode rule (connmgr): once the
    response has started, a failure is a cancel. Both end the session after the 5 bytes, and the
    timeout is logged with its cause."""
    d = daemon(conf=["timeout=1"])
    rq = Requester(zctx, d)
    with AppOrigin() as o:
        s = Session(rq)
        s.start("GET", o.url("/stall"), credits=1000)
        s.ack()
        if binary == "zurl":
            assert s.error(timeout=8) == b"session-timeout"
        else:
            while True:
                pkt = s.recv(timeout=8)
                if pkt.get("type") in (None, b"keep-alive", b"credit"):
                    continue
                assert pkt.get("type") == b"cancel", pkt
                break
            assert "session-timeout" in d.log()
        assert s.body_received == 5


@zhttpd_only("Zurl's keep-alive interval is fixed at 30 s, beyond the tests' 20 s bound; zhttpd "
             "makes it configurable (keepalive_interval_ms)")
def test_keep_alives_while_idle(daemon, zctx):
    rq = Requester(zctx, daemon(conf=["keepalive_interval_ms=300"]))
    with AppOrigin() as o:
        s = Session(rq)
        s.start("GET", o.url("/slow/2000"), credits=1000)
        s.ack()
        kas = 0
        while True:
            pkt = s.recv(timeout=5)
            if pkt.get("type") == b"keep-alive":
                assert set(pkt) == {"from", "id", "seq", "type"}
                kas += 1
                if kas < 3:
                    s.send(type="keep-alive")  # we stay alive too
                continue
            break
        body = pkt.get("body", b"")
        if pkt.get("more"):
            body += s.response(head=pkt)[1]
        assert pkt["code"] == 200 and body == b"slow done"
        assert kas >= 3
        # no multi-id packets for a requester that did not advertise ext.multi
        assert b"<multi>" not in rq.queues


@zhttpd_only("Zurl expires a silent session after a fixed 60 s; zhttpd's expiry is configurable "
             "(session_expiry_ms)")
def test_silent_requester_session_expires_and_origin_is_closed(daemon, zctx):
    rq = Requester(zctx, daemon(conf=["session_expiry_ms=800", "keepalive_interval_ms=200"]))
    with RawOrigin(drip_handler) as o:
        s = Session(rq)
        s.start("GET", o.url("/"), credits=64)
        s.ack()
        o.wait_head()
        assert o.peer_closed.wait(6), "origin connection still open after the session expired"
        # expiry is silent (no error, no cancel) ...
        while not s.quiet(0.3):
            pkt = s.recv()
            assert pkt.get("type") in (None, b"keep-alive"), pkt
        # ... and the session is gone
        rq.later({"from": rq.ident, "id": s.rid, "seq": s.out_seq, "type": "credit",
                  "credits": 10})
        pkt = rq.recv(s.rid)
        assert pkt["type"] == b"cancel"


@zhttpd_only("Zurl keys sessions by id alone and skips a second requester's request with the "
             "same id; zhttpd keys them by (from, id) (issue 4 item 4)")
def test_sessions_are_keyed_by_from_and_id(daemon, zctx):
    d = daemon()
    r1, r2 = Requester(zctx, d), Requester(zctx, d)
    with AppOrigin() as o:
        s1, s2 = Session(r1, rid="same-id"), Session(r2, rid="same-id")
        s1.start("GET", o.url("/slow/500"), credits=1000)
        s2.start("GET", o.url("/hello"), credits=1000)
        s1.ack()
        s2.ack()
        assert s2.response()[1] == HELLO
        s2.cancel()  # must not touch r1's session
        assert s1.response()[1] == b"slow done"


@zhttpd_only("Zurl ignores router-resp and always replies on out_spec; zhttpd offers Pushpin's "
             "ROUTER reply path (issue 4 item 4)")
def test_router_resp_replies_come_through_the_router(rq):
    with AppOrigin() as o:
        s = Session(rq)
        s.start("GET", o.url("/hello"), credits=1000, router_resp=True)
        vias, body = [], b""
        while True:
            via, fmt, pkt = rq.recv(s.rid, meta=True)
            vias.append(via)
            assert pkt["from"] == rq.zid
            body += pkt.get("body", b"")
            if pkt.get("type") is None and not pkt.get("more"):
                break
        assert set(vias) == {"router"}
        assert body == HELLO


def test_cancel_out_of_sequence_is_still_accepted(rq):
    """cancel is terminal and accepted whatever its seq (ZHTTP.md §4.1); it is never answered."""
    with RawOrigin(drip_handler) as o:
        s = Session(rq)
        s.start("GET", o.url("/"), credits=100)
        s.ack()
        head = s.recv()
        assert head["code"] == 200
        s.send(seq=9, type="cancel")
        assert o.peer_closed.wait(5), "origin connection still open after the cancel"
        while not s.quiet(1.0):
            pkt = rq.recv(s.rid)
            assert pkt.get("type") is None, f"cancel was answered: {pkt!r}"


def test_unknown_packet_type_is_bad_request(rq):
    with AppOrigin() as o:
        s = Session(rq)
        s.start("GET", o.url("/slow/800"), credits=1000)
        s.ack()
        s.send(type="no-such-type")
        while True:
            pkt = rq.recv(s.rid)  # Zurl's answer carries neither from nor seq
            if pkt.get("type") is not None:
                break
        assert pkt["type"] == b"error" and pkt["condition"] == b"bad-request"
