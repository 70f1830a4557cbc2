"""Client role: the points where zhttpd is deliberately better than Zurl (issue 4 item 4) that are
not covered by test_40..44, and the ones Zurl shares (max_open_requests backpressure). Each
zhttpd-only test names what Zurl does instead."""
import gzip
import json
import time

import zmq

from origins import AppOrigin, HELLO, RawOrigin, pattern
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
