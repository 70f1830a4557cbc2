"""Client role: the points where zhttpd is deliberately better than Zurl (issue 4 item 4) that are
not covered by test_40..44, and the ones Zurl shares (max_open_requests backpressure). Each
zhttpd-only test names what Zurl does instead."""
import gzip
import json
import time

import zmq

from origins import AppOrigin, HELLO, RawOrigin, drip_handler, pattern, silent_handler
from zrequester import (ReqClient, Requester, Session, binary, daemon, decode,  # noqa: F401
                        header_values, zhttpd_only)


def test_max_open_requests_is_backpressure_not_loss(daemon, zctx):
    """max_open_requests=2: eight slow requests sent at once all complete, never more than two at
    the origin at a time."""
    d = daemon(conf=["max_open_requests=2"])
    c = ReqClient(zctx, d, "DEALER")
    with AppOrigin() as o:
        for i in range(8):
            c.send({"id": f"bp{i}", "method": "GET", "uri": o.url("/slow/250")})
        got = sorted(c.recv(timeout=15)["id"] for _ in range(8))
        assert got == sorted(f"bp{i}".encode() for i in range(8))
        assert o.max_active <= 2
        assert len(o.requests) == 8


def test_max_open_requests_applies_to_stream_sessions(daemon, zctx):
    d = daemon(conf=["max_open_requests=2"])
    rq = Requester(zctx, d)
    with AppOrigin() as o:
        sessions = [Session(rq) for _ in range(6)]
        for s in sessions:
            s.start("GET", o.url("/slow/250"), credits=1000)
        for s in sessions:
            s.ack(timeout=15)
            head, body, _ = s.response()
            assert head["code"] == 200 and body == b"slow done"
        assert o.max_active <= 2


@zhttpd_only("Zurl always sends 'Accept-Encoding: deflate, gzip, br, zstd' and decodes the body "
             "itself; zhttpd asks for no compression the handler did not ask for")
def test_no_compression_requested_unless_the_handler_asks(daemon, zctx):
    d = daemon()
    with AppOrigin() as o:
        rep = ReqClient(zctx, d, "DEALER").call({"id": "e", "method": "GET",
                                                 "uri": o.url("/echo")})
        sent = [k.lower() for k, v in json.loads(rep["body"])["headers"]]
        assert "accept-encoding" not in sent
        assert "te" not in sent


@zhttpd_only("Zurl replaces the handler's Accept-Encoding and delivers the decoded body under the "
             "origin's Content-Encoding header; zhttpd passes both through untouched")
def test_compressed_body_is_delivered_as_sent_and_headers_describe_it(daemon, zctx):
    d = daemon()
    rq = Requester(zctx, d)
    want = gzip.compress(b"compressed hello\n" * 20)
    with AppOrigin() as o:
        rep = ReqClient(zctx, d, "DEALER").call({"id": "g", "method": "GET",
                                                 "uri": o.url("/gzip"),
                                                 "headers": [["Accept-Encoding", "gzip"]]})
        assert [v for k, v in o.requests[0][2] if k.lower() == b"accept-encoding"] == [b"gzip"]
        assert header_values(rep["headers"], "Content-Encoding") == [b"gzip"]
        assert gzip.decompress(rep["body"]) == b"compressed hello\n" * 20
        assert len(rep["body"]) == len(want)
        assert header_values(rep["headers"], "Content-Length") == [str(len(rep["body"])).encode()]
        # the same in stream mode
        s = Session(rq)
        s.start("GET", o.url("/gzip"), credits=100000, headers=[["Accept-Encoding", "gzip"]])
        s.ack()
        head, body, _ = s.response()
        assert header_values(head["headers"], "Content-Encoding") == [b"gzip"]
        assert gzip.decompress(body) == b"compressed hello\n" * 20


@zhttpd_only("Zurl's PUB drops replies once a slow requester's queue is full; zhttpd's XPUB uses "
             "XPUB_NODROP and waits (issue 4 item 4)")
def test_replies_are_not_dropped_at_the_pub_high_water_mark(daemon, zctx):
    """40 requests of 64 KiB each, whole-body replies, while the requester does not read: far more
    than the HWMs (10) and the socket buffers hold. Once it reads, every reply arrives."""
    d = daemon(conf=["out_hwm=10", "in_hwm=10"])
    rq = Requester(zctx, d)
    rq.sub.setsockopt(zmq.RCVHWM, 10)
    n = 40
    with AppOrigin() as o:
        for i in range(n):
            rq.first({"from": rq.ident, "id": f"hwm-{i}", "seq": 0, "method": "GET",
                      "uri": o.url("/big/65536")})
        deadline = time.monotonic() + 15
        while len(o.requests) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        got = {}
        end = time.monotonic() + 15
        while sum(len(v) for v in got.values()) < 2 * n and time.monotonic() < end:
            if rq.sub.poll(200):
                addr, _, payload = rq.sub.recv().partition(b" ")
                _, pkt = decode(payload)
                got.setdefault(pkt["id"], []).append(pkt)
        assert len(got) == n, f"replies for {len(got)} of {n} sessions"
        for rid, pkts in got.items():
            assert [p.get("type") for p in pkts] == [b"keep-alive", None], (rid, pkts[:1])
            assert pkts[1]["body"] == pattern(65536)


def _proxy_handler(conn, head, origin):
    line = head.split(b"\r\n", 1)[0]
    body = b"proxied: " + line
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Via: test-proxy\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(body), body))


@zhttpd_only("Zurl's curl honours http_proxy from the environment; zhttpd ignores environment "
             "proxies unless the proxy key is set (DESIGN.md)")
def test_environment_proxy_is_ignored(daemon, zctx):
    with RawOrigin(_proxy_handler) as proxy, AppOrigin() as o:
        purl = proxy.url("")
        d = daemon(env={"http_proxy": purl, "HTTP_PROXY": purl, "https_proxy": purl,
                        "ALL_PROXY": purl, "all_proxy": purl})
        rep = ReqClient(zctx, d, "DEALER").call({"id": "p", "method": "GET",
                                                 "uri": o.url("/hello")})
        assert rep["code"] == 200 and rep["body"] == HELLO
        assert proxy.conns == 0


@zhttpd_only("the proxy key is a zhttpd setting (issue 4 items 1 and 4)")
def test_outbound_proxy_option(daemon, zctx):
    with RawOrigin(_proxy_handler) as proxy, AppOrigin() as o:
        d = daemon(conf=[f"proxy={proxy.url('')}"])
        rep = ReqClient(zctx, d, "DEALER").call({"id": "p", "method": "GET",
                                                 "uri": o.url("/hello?x=1")})
        assert rep["code"] == 200
        assert rep["body"] == f"proxied: GET {o.url('/hello?x=1')} HTTP/1.1".encode()
        assert header_values(rep["headers"], "X-Via") == [b"test-proxy"]
        assert o.requests == []


@zhttpd_only("Zurl keys sessions by id alone; zhttpd keys them by (from, id), so a cancel from "
             "one requester cannot end another's session (issue 4 item 4)")
def test_other_requesters_cancel_does_not_touch_my_session(daemon, zctx):
    d = daemon()
    mine, other = Requester(zctx, d), Requester(zctx, d)
    with AppOrigin() as o:
        s = Session(mine, rid="shared")
        s.start("GET", o.url("/slow/600"), credits=1000)
        s.ack()
        other.later({"from": other.ident, "id": "shared", "seq": 1, "type": "cancel"})
        head, body, _ = s.response()
        assert head["code"] == 200 and body == b"slow done"


# ---- admission: max_open_requests for the whole process, queued deadlines, a full queue ----------

def _wait(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@zhttpd_only("--workers is a zhttpd flag")
def test_max_open_requests_is_process_wide(daemon, zctx):
    """max_open_requests=1 with 4 workers: a black-hole origin (accepts, never answers) sees exactly
    one connection while 8 requests (hashed over the workers) are in."""
    d = daemon(conf=["max_open_requests=1"], args=["--workers", "4"])
    c = ReqClient(zctx, d, "DEALER")
    with RawOrigin(silent_handler) as o:
        for i in range(8):
            c.send({"id": f"bh{i}", "method": "GET", "uri": o.url(f"/{i}")})
        _wait(lambda: o.conns >= 1, what="the first connection")
        time.sleep(1.0)
        assert o.conns == 1, f"{o.conns} connections for max_open_requests=1"


@zhttpd_only("--workers is a zhttpd flag")
def test_a_slot_freed_on_one_worker_starts_a_request_waiting_on_another(daemon, zctx):
    d = daemon(conf=["max_open_requests=1"], args=["--workers", "4"])
    c = ReqClient(zctx, d, "DEALER")
    with AppOrigin() as o:
        for i in range(8):
            c.send({"id": f"x{i}", "method": "GET", "uri": o.url("/slow/100")})
        got = sorted(c.recv(timeout=15)["id"] for _ in range(8))
        assert got == sorted(f"x{i}".encode() for i in range(8))
        assert o.max_active == 1


def _hold_the_slot(c, origin):
    """A request that keeps the only slot busy and active (a body that drips forever)."""
    c.send({"id": "holder", "method": "GET", "uri": origin.url("/drip")})
    _wait(lambda: origin.conns >= 1, what="the holder's connection")


@zhttpd_only("--workers is a zhttpd flag (one worker: the second request must wait)")
def test_queued_request_honours_its_timeout_field(daemon, zctx):
    d = daemon(conf=["max_open_requests=1"], args=["--workers", "1"])
    c = ReqClient(zctx, d, "DEALER")
    with RawOrigin(drip_handler) as o:
        _hold_the_slot(c, o)
        c.send({"id": "queued", "method": "GET", "uri": o.url("/q"), "timeout": 1000})
        rep = c.recv(timeout=10)
        assert rep["id"] == b"queued", rep
        assert rep["type"] == b"error" and rep["condition"] == b"session-timeout", rep
        assert o.conns == 1 and not o.peer_closed.is_set(), "the holder ended first"
        d.wait_log(r"queued failed: role=client .*condition=session-timeout stage=request "
                   r"reason=\"its timeout elapsed \(waiting for a request slot\)\"")


@zhttpd_only("--workers is a zhttpd flag (one worker: the second request must wait)")
def test_queued_time_counts_toward_the_timeout_setting(daemon, zctx):
    """timeout=1 (s of inactivity): a request that waits for a slot behind an active one gets
    session-timeout while the active one still runs."""
    d = daemon(conf=["max_open_requests=1", "timeout=1"], args=["--workers", "1"])
    c = ReqClient(zctx, d, "DEALER")
    with RawOrigin(drip_handler) as o:
        _hold_the_slot(c, o)
        c.send({"id": "queued", "method": "GET", "uri": o.url("/q")})
        rep = c.recv(timeout=10)
        assert rep["id"] == b"queued", rep
        assert rep["type"] == b"error" and rep["condition"] == b"session-timeout", rep
        assert o.conns == 1 and not o.peer_closed.is_set(), "the holder ended first"


@zhttpd_only("--workers is a zhttpd flag; Zurl stops reading requests instead of queueing them")
def test_full_queue_answers_service_unavailable_and_logs_at_a_rate(daemon, zctx):
    """One worker, one slot held by a black hole, 1024 waiting: the next ones get
    service-unavailable (docs/internals/client-engine.md), logged once per second at most."""
    d = daemon(conf=["max_open_requests=1"], args=["--workers", "1"])
    c = ReqClient(zctx, d, "DEALER")
    with RawOrigin(silent_handler) as o:
        c.send({"id": "holder", "method": "GET", "uri": o.url("/")})
        _wait(lambda: o.conns >= 1, what="the holder's connection")
        for i in range(1024):
            c.send({"id": f"q{i}", "method": "GET", "uri": o.url("/")})
        for i in range(20):
            c.send({"id": f"over{i}", "method": "GET", "uri": o.url("/")})
        reps = [c.recv(timeout=10) for _ in range(20)]
        assert sorted(r["id"] for r in reps) == sorted(f"over{i}".encode() for i in range(20))
        assert {(r["type"], r["condition"]) for r in reps} == {(b"error", b"service-unavailable")}
        assert c.silent(0.5)
        lines = d.wait_log("refused with service-unavailable").count(
            "refused with service-unavailable")
        assert 1 <= lines <= 3, f"{lines} log lines for 20 refusals"


@zhttpd_only("--workers is a zhttpd flag (one worker: the session must wait)")
def test_queued_stream_session_expires_when_its_requester_goes_silent(daemon, zctx):
    d = daemon(conf=["max_open_requests=1", "session_expiry_ms=1500",
                     "keepalive_interval_ms=500"], args=["--workers", "1"])
    c = ReqClient(zctx, d, "DEALER")
    rq = Requester(zctx, d)
    with RawOrigin(drip_handler) as o:
        _hold_the_slot(c, o)
        s = Session(rq, rid="waiting")
        s.start("GET", o.url("/q"), credits=1000)
        s.ack()
        d.wait_log(r"session \S+/waiting expired after 1500 ms", timeout=10)
        assert o.conns == 1 and not o.peer_closed.is_set(), "the holder ended first"
