"""Client role, wire fidelity (issue 10 item 6, issue 11 item 6): a raw-socket origin records the
exact bytes of every request, and each head holds only the handler's headers plus the Host and
framing headers zhttpd owns: no Content-Type the handler did not send (libcurl's POSTFIELDS
default), no Content-Length: 0 on a method without a body, no Accept/Expect, a whitespace-only
value sent (libcurl reads `Name:` as "remove this header"), and CONNECT refused."""
import pytest

from wireorigin import WireOrigin, fixed
from zrequester import ReqClient, Requester, Session, binary, daemon, zhttpd_only  # noqa: F401

ZURL_ADDS = "Zurl's curl adds 'Accept-Encoding: deflate, gzip, br, zstd' to every request"


def host(o):
    return f"Host: 127.0.0.1:{o.port}".encode()


def hdrs(pairs):
    return [f"{k}: {v}".encode() for k, v in pairs]


def assert_head(req, method, target, lines):
    """The request line and exactly these header lines (order-insensitive), nothing else."""
    assert req.request_line == f"{method} {target} HTTP/1.1".encode(), req
    assert sorted(req.lines) == sorted(lines), f"head sent: {req.lines!r}, expected {lines!r}"


def call(zctx, d, pkt):
    pkt.setdefault("id", "w")
    return ReqClient(zctx, d, "DEALER").call(pkt)


HANDLER = [("X-A", "1"), ("User-Agent", "wire-test/1")]


@zhttpd_only(ZURL_ADDS)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_get_and_head_carry_only_handler_headers_and_host(daemon, zctx, method):
    d = daemon()
    with WireOrigin() as o:
        rep = call(zctx, d, {"method": method, "uri": o.url("/g?q=1"),
                             "headers": [list(h) for h in HANDLER]})
        assert rep["code"] == 200
        [req] = o.requests
        assert_head(req, method, "/g?q=1", [host(o)] + hdrs(HANDLER))
        assert req.raw == req.head


@zhttpd_only(ZURL_ADDS)
def test_post_without_content_type_gets_none(daemon, zctx):
    d = daemon()
    body = b'{"event": "x"}'
    with WireOrigin() as o:
        rep = call(zctx, d, {"method": "POST", "uri": o.url("/hook"), "body": body,
                             "headers": [list(h) for h in HANDLER]})
        assert rep["code"] == 200
        [req] = o.requests
        assert_head(req, "POST", "/hook",
                    [host(o), f"Content-Length: {len(body)}".encode()] + hdrs(HANDLER))
        assert req.raw == req.head + body


@zhttpd_only(ZURL_ADDS)
def test_post_with_content_type_keeps_it(daemon, zctx):
    d = daemon()
    body = b'{"event": "x"}'
    with WireOrigin() as o:
        rep = call(zctx, d, {"method": "POST", "uri": o.url("/hook"), "body": body,
                             "headers": [["Content-Type", "application/json"]]})
        assert rep["code"] == 200
        [req] = o.requests
        assert_head(req, "POST", "/hook", [host(o), b"Content-Type: application/json",
                                           f"Content-Length: {len(body)}".encode()])
        assert req.raw == req.head + body


@zhttpd_only(ZURL_ADDS)
@pytest.mark.parametrize("length", [False, True], ids=["chunked", "content-length"])
def test_streamed_upload_head(daemon, zctx, length):
    d = daemon()
    rq = Requester(zctx, d)
    parts = [b"first part ", b"second part ", b"last"]
    body = b"".join(parts)
    handler = [["X-A", "1"]] + ([["Content-Length", str(len(body))]] if length else [])
    with WireOrigin() as o:
        s = Session(rq)
        s.start("PUT", o.url("/up"), credits=1000, more=True, body=parts[0], headers=handler)
        s.ack()
        s.send(body=parts[1], more=True)
        s.send(body=parts[2])
        head, got, _ = s.response()
        assert head["code"] == 200 and got == b"ok"
        [req] = o.requests
        framing = f"Content-Length: {len(body)}" if length else "Transfer-Encoding: chunked"
        assert_head(req, "PUT", "/up", [host(o), b"X-A: 1", framing.encode()])
        assert req.body == body


def redirecting(code, to):
    def respond(req, origin):
        if req.target == b"/from":
            return (f"HTTP/1.1 {code} Moved\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n"
                    .encode())
        return b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nlanded"
    return respond


@zhttpd_only(ZURL_ADDS)
@pytest.mark.parametrize("code,method,body", [(302, "GET", b""), (307, "POST", b"payload"),
                                              (308, "PUT", b"payload")])
def test_redirect_hop_head(daemon, zctx, code, method, body):
    d = daemon()
    with WireOrigin(redirecting(code, "/to")) as o:
        pkt = {"method": method, "uri": o.url("/from"), "follow-redirects": True,
               "headers": [list(h) for h in HANDLER]}
        if body:
            pkt["body"] = body
        rep = call(zctx, d, pkt)
        assert rep["code"] == 200 and rep["body"] == b"landed"
        first, second = o.requests
        framing = [f"Content-Length: {len(body)}".encode()] if body else []
        assert_head(first, method, "/from", [host(o)] + hdrs(HANDLER) + framing)
        assert_head(second, method, "/to", [host(o)] + hdrs(HANDLER) + framing)
        assert second.body == body


@zhttpd_only(ZURL_ADDS)
def test_post_turned_into_get_by_a_redirect_loses_its_body_headers(daemon, zctx):
    """302 turns a POST into a GET with no body: the body's Content-Type goes with it (as the fetch
    standard does), the other handler headers stay."""
    d = daemon()
    with WireOrigin(redirecting(302, "/to")) as o:
        rep = call(zctx, d, {"method": "POST", "uri": o.url("/from"), "follow-redirects": True,
                             "body": b"a=1", "headers": [["Content-Type", "text/plain"],
                                                         ["X-A", "1"]]})
        assert rep["code"] == 200
        first, second = o.requests
        assert_head(first, "POST", "/from",
                    [host(o), b"Content-Type: text/plain", b"X-A: 1", b"Content-Length: 3"])
        assert_head(second, "GET", "/to", [host(o), b"X-A: 1"])


@zhttpd_only(ZURL_ADDS)
@pytest.mark.parametrize("method", ["DELETE", "OPTIONS", "PURGE", "GET"])
def test_method_without_body_gets_no_length_or_type(daemon, zctx, method):
    d = daemon()
    with WireOrigin() as o:
        rep = call(zctx, d, {"method": method, "uri": o.url("/r"), "headers": [["X-A", "1"]]})
        assert rep["code"] == 200
        [req] = o.requests
        assert_head(req, method, "/r", [host(o), b"X-A: 1"])


@zhttpd_only(ZURL_ADDS)
@pytest.mark.parametrize("method", ["DELETE", "OPTIONS"])
def test_method_with_body_or_explicit_length(daemon, zctx, method):
    """A body, or the handler's own Content-Length: 0, is framed; still no Content-Type."""
    d = daemon()
    with WireOrigin() as o:
        call(zctx, d, {"method": method, "uri": o.url("/r"), "body": b"xyz"})
        call(zctx, d, {"method": method, "uri": o.url("/r"),
                       "headers": [["Content-Length", "0"]]})
        one, two = o.requests
        assert_head(one, method, "/r", [host(o), b"Content-Length: 3"])
        assert one.body == b"xyz"
        assert_head(two, method, "/r", [host(o), b"Content-Length: 0"])


@zhttpd_only(ZURL_ADDS)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_empty_body_on_a_body_method_is_framed_without_type(daemon, zctx, method):
    """POST/PUT/PATCH define a body: an empty one is sent as Content-Length: 0 (RFC 9110 §8.6)."""
    d = daemon()
    with WireOrigin() as o:
        call(zctx, d, {"method": method, "uri": o.url("/r")})
        [req] = o.requests
        assert_head(req, method, "/r", [host(o), b"Content-Length: 0"])


@zhttpd_only(ZURL_ADDS)
def test_whitespace_only_and_empty_values_are_sent(daemon, zctx):
    """`X-Blank: "  "` and `X-Empty: ""` both reach the origin (as empty values: whitespace around
    a field value is not part of it, RFC 9110 §5.5); libcurl would drop `X-Blank:   `."""
    d = daemon()
    with WireOrigin() as o:
        rep = call(zctx, d, {"method": "GET", "uri": o.url("/r"),
                             "headers": [["X-Blank", "  "], ["X-Tab", "\t"], ["X-Empty", ""],
                                         ["X-A", " padded "]]})
        assert rep["code"] == 200
        [req] = o.requests
        assert req.values("X-Blank") == [b""] and req.values("X-Tab") == [b""]
        assert req.values("X-Empty") == [b""]
        assert req.values("X-A") == [b"padded"]
        assert sorted(req.header_names()) == [b"host", b"x-a", b"x-blank", b"x-empty", b"x-tab"]


@zhttpd_only("Zurl hands CONNECT to curl, which sends it to the origin (no answer within 10 s)")
@pytest.mark.parametrize("method", ["CONNECT", "connect"])
def test_connect_from_a_handler_is_refused(daemon, zctx, method):
    d = daemon()
    with WireOrigin(fixed(b"HTTP/1.1 200 Connection established\r\n\r\n")) as o:
        rep = call(zctx, d, {"method": method, "uri": o.url("/")})
        assert rep["type"] == b"error" and rep["condition"] == b"bad-request", rep
        assert o.conns == 0
