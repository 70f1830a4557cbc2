"""Client role, req mode (ZHTTP.md §2.2, §8): REQ and DEALER requesters on in_req_spec, one request
packet and one reply in the same envelope. Each test runs against zhttpd and Debian's zurl started
on the same Zurl config file (zrequester.py); zhttpd-only cases say why."""
import json

import pytest

from origins import AppOrigin, HELLO, RawOrigin, http10_handler, pattern
from zrequester import (ReqClient, binary, daemon, header_values, # noqa: F401 (fixtures)
                        zhttpd_only, zurl_xfail)


@pytest.fixture(params=["REQ", "DEALER"])
def sock_kind(request):
    return request.param


def test_get_over_req_and_dealer(daemon, zctx, sock_kind):
    d = daemon()
    with AppOrigin() as o:
        c = ReqClient(zctx, d, sock_kind)
        rep = c.call({"id": "r1", "method": "GET", "uri": o.url("/hello")})
        assert rep["id"] == b"r1"
        assert rep["code"] == 200
        assert rep["reason"] == b"OK"
        assert rep["body"] == HELLO
        assert "type" not in rep and "more" not in rep
        # repeated response headers are kept, in order, with their values
        assert header_values(rep["headers"], "X-Multi") == [b"one", b"two"]
        assert header_values(rep["headers"], "Set-Cookie") == [b"a=1; Path=/", b"b=2; Path=/"]
        assert header_values(rep["headers"], "Content-Type") == [b"text/plain"]
        # the same socket serves a second request
        rep = c.call({"id": "r2", "method": "GET", "uri": o.url("/hello")})
        assert rep["id"] == b"r2" and rep["code"] == 200
        assert [r[1] for r in o.requests] == ["/hello", "/hello"]


def test_reply_has_no_id_when_request_had_none(daemon, zctx):
    d = daemon()
    with AppOrigin() as o:
        rep = ReqClient(zctx, d, "REQ").call({"method": "GET", "uri": o.url("/hello")})
        assert "id" not in rep
        assert rep["code"] == 200 and rep["body"] == HELLO


def test_dealer_requests_are_matched_by_id_not_order(daemon, zctx):
    d = daemon()
    with AppOrigin() as o:
        c = ReqClient(zctx, d, "DEALER")
        c.send({"id": "slow", "method": "GET", "uri": o.url("/slow/600")})
        c.send({"id": "fast", "method": "GET", "uri": o.url("/hello")})
        first, second = c.recv(), c.recv()
        assert (first["id"], second["id"]) == (b"fast", b"slow")
        assert first["body"] == HELLO and second["body"] == b"slow done"


def test_request_line_headers_and_body_reach_origin_exactly(daemon, zctx):
    """Handler headers keep order, case, duplicates and values; Host is rebuilt from the uri (a
    handler's wrong Host is replaced); an inline body gets its Content-Length; body bytes are
    binary-safe."""
    d = daemon()
    seen = []

    def handler(conn, head, origin):
        n = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                n = int(line.split(b":", 1)[1])
        body = head.split(b"\r\n\r\n", 1)[1]
        conn.settimeout(5)
        while len(body) < n:
            body += conn.recv(65536)
        seen.append((head.split(b"\r\n\r\n", 1)[0], body))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    body = bytes(range(256)) * 4
    sent = [["X-A", "1"], ["x-a", "2"], ["X-Mixed-Case", "Value With  Spaces"],
            ["Host", "wrong.example"], ["Content-Type", "application/x-test"]]
    with RawOrigin(handler) as o:
        rep = ReqClient(zctx, d, "DEALER").call({
            "id": "h", "method": "POST", "uri": o.url("/p/a%2Fb?q=1&r=%20x"), "headers": sent,
            "body": body})
        assert rep["code"] == 200 and rep["body"] == b"ok"
    head, got_body = seen[0]
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /p/a%2Fb?q=1&r=%20x HTTP/1.1"
    fields = [tuple(x.split(b": ", 1)) for x in lines[1:]]
    names = {b"x-a", b"x-mixed-case", b"content-type"}
    assert [f for f in fields if f[0].lower() in names] == [
        (b"X-A", b"1"), (b"x-a", b"2"), (b"X-Mixed-Case", b"Value With  Spaces"),
        (b"Content-Type", b"application/x-test")]
    assert [f for f in fields if f[0].lower() == b"host"] == [(b"Host", f"127.0.0.1:{o.port}"
                                                              .encode())]
    assert [f for f in fields if f[0].lower() == b"content-length"] == [
        (b"Content-Length", str(len(body)).encode())]
    assert got_body == body


def test_response_status_reason_and_headers_byte_exact(daemon, zctx):
    d = daemon()

    def handler(conn, head, origin):
        conn.sendall(b"HTTP/1.1 299 Custom Reason  Here\r\n"
                     b"x-lower-case: v1\r\n"
                     b"X-UPPER: V2\r\n"
                     b"X-Spaces: a  b   c\r\n"
                     b"X-Dup: 1\r\n"
                     b"x-dup: 2\r\n"
                     b"Content-Length: 5\r\n\r\nexact")

    with RawOrigin(handler) as o:
        rep = ReqClient(zctx, d, "REQ").call({"id": "x", "method": "GET", "uri": o.url("/")})
    assert rep["code"] == 299
    assert rep["reason"] == b"Custom Reason  Here"
    assert rep["body"] == b"exact"
    assert rep["headers"] == [[b"x-lower-case", b"v1"], [b"X-UPPER", b"V2"],
                              [b"X-Spaces", b"a  b   c"], [b"X-Dup", b"1"], [b"x-dup", b"2"],
                              [b"Content-Length", b"5"]]


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods(daemon, zctx, method):
    d = daemon()
    with AppOrigin() as o:
        pkt = {"id": "m", "method": method, "uri": o.url("/echo")}
        if method in ("PUT", "PATCH"):
            pkt["body"] = b"\x00payload\xff"
        rep = ReqClient(zctx, d, "DEALER").call(pkt)
        assert rep["code"] == 200
        echo = json.loads(rep["body"])
        assert echo["method"] == method
        assert echo["body"].encode("latin-1") == pkt.get("body", b"")
        assert echo["version"] == "1.1"


def test_head_response_has_headers_and_no_body(daemon, zctx):
    d = daemon()
    with AppOrigin() as o:
        rep = ReqClient(zctx, d, "REQ").call({"id": "h", "method": "HEAD", "uri": o.url("/hello")})
        assert rep["code"] == 200
        assert rep.get("body", b"") == b""
        assert header_values(rep["headers"], "Content-Length") == [str(len(HELLO)).encode()]
        assert o.requests[-1][0] == "HEAD"


def test_head_with_body_is_content_not_allowed(daemon, zctx):
    d = daemon()
    with AppOrigin() as o:
        rep = ReqClient(zctx, d, "REQ").call({"id": "hb", "method": "HEAD", "uri": o.url("/hello"),
                                              "body": b"not allowed"})
        assert rep["type"] == b"error"
        assert rep["condition"] == b"content-not-allowed"
        assert rep["id"] == b"hb"
        assert o.requests == []


@pytest.mark.parametrize("case", ["no-uri", "bad-scheme", "no-method", "more-in-req-mode",
                                  "ws-in-req-mode", "empty-uri"])
def test_bad_request(daemon, zctx, sock_kind, case):
    d = daemon()
    with AppOrigin() as o:
        pkt = {"id": f"bad-{case}", "method": "GET", "uri": o.url("/hello")}
        if case == "no-uri":
            del pkt["uri"]
        elif case == "empty-uri":
            pkt["uri"] = ""
        elif case == "bad-scheme":
            pkt["uri"] = f"ftp://127.0.0.1:{o.port}/hello"
        elif case == "no-method":
            del pkt["method"]
        elif case == "more-in-req-mode":
            pkt.update(method="POST", body=b"part", more=True)
        elif case == "ws-in-req-mode":
            pkt["uri"] = f"ws://127.0.0.1:{o.port}/hello"
        c = ReqClient(zctx, d, sock_kind)
        rep = c.call(pkt)
        assert rep["type"] == b"error", rep
        assert rep["condition"] == b"bad-request"
        assert rep["id"] == pkt["id"].encode()
        assert o.requests == []
        # the requester is still served afterwards
        assert c.call({"id": "after", "method": "GET", "uri": o.url("/hello")})["code"] == 200


@zhttpd_only("Zurl drops an unparsable req-mode packet and leaves a REQ client hanging; "
             "zhttpd answers bad-request (issue 4 item 4)")
@pytest.mark.parametrize("payload", [b"Tgarbage", b"T3:abc,", b"T12:6:method,1:5#}", b"T"])
def test_req_client_malformed_packet_gets_bad_request(daemon, zctx, payload):
    d = daemon()
    with AppOrigin() as o:
        c = ReqClient(zctx, d, "REQ")
        c.send_raw(payload)
        rep = c.recv(timeout=5)
        assert rep["type"] == b"error"
        assert rep["condition"] == b"bad-request"
        assert "id" not in rep
        # the REQ socket is usable again: the exchange completed
        assert c.call({"id": "ok", "method": "GET", "uri": o.url("/hello")})["code"] == 200


@zhttpd_only("Zurl drops a packet whose fields have the wrong types; zhttpd answers bad-request "
             "and echoes the id it could read (issue 4 item 4)")
def test_req_client_wrong_field_type_gets_bad_request_with_id(daemon, zctx):
    d = daemon()
    c = ReqClient(zctx, d, "REQ")
    rep = c.call({"id": "typed", "method": 5, "uri": "http://127.0.0.1:1/"})
    assert rep["type"] == b"error" and rep["condition"] == b"bad-request"
    assert rep["id"] == b"typed"


def test_user_data_is_echoed_on_reply_and_error(daemon, zctx):
    d = daemon()
    ud = {"n": 7, "list": [b"a", 2, True], "nested": {"k": b"v"}}
    with AppOrigin() as o:
        c = ReqClient(zctx, d, "DEALER")
        rep = c.call({"id": "u1", "method": "GET", "uri": o.url("/hello"), "user-data": ud})
        assert rep["code"] == 200 and rep["user-data"] == ud
        rep = c.call({"id": "u2", "method": "GET", "uri": "http://127.0.0.1:1/", "user-data": ud})
        assert rep["type"] == b"error" and rep["user-data"] == ud
        rep = c.call({"id": "u3", "method": "GET", "user-data": b"scalar"})
        assert rep["condition"] == b"bad-request" and rep["user-data"] == b"scalar"


def test_j_format_round_trip(daemon, zctx):
    """A `J` request gets a `J` reply with the same fields (strings as JSON strings)."""
    d = daemon()
    with AppOrigin() as o:
        c = ReqClient(zctx, d, "DEALER")
        c.send({"id": "j1", "method": "POST", "uri": o.url("/echo"),
                "headers": [["X-J", "json"], ["Content-Type", "text/plain"]], "body": "from json",
                "user-data": {"k": ["v", 1, True]}}, fmt="J")
        fmt, rep = c.recv(fmt_out=True)
        assert fmt == "J"
        assert rep["id"] == b"j1" and rep["code"] == 200 and rep["reason"] == b"OK"
        assert rep["user-data"] == {"k": [b"v", 1, True]}
        echo = json.loads(rep["body"])
        assert echo["body"] == "from json"
        assert ["X-J", "json"] in echo["headers"]
        # and an error comes back in J too
        c.send({"id": "j2", "method": "GET", "uri": "ftp://127.0.0.1/"}, fmt="J")
        fmt, rep = c.recv(fmt_out=True)
        assert fmt == "J" and rep["type"] == b"error" and rep["condition"] == b"bad-request"
        assert rep["id"] == b"j2"


def test_j_reply_is_compact_json_with_string_values(daemon, zctx):
    d = daemon()
    with AppOrigin() as o:
        c = ReqClient(zctx, d, "DEALER")
        c.send({"id": "jr", "method": "GET", "uri": o.url("/hello")}, fmt="J")
        assert c.sock.poll(10000)
        frames = c.sock.recv_multipart()
        raw = frames[-1]
        assert raw[:1] == b"J"
        doc = json.loads(raw[1:])
        assert doc["id"] == "jr" and doc["code"] == 200 and doc["reason"] == "OK"
        assert doc["body"] == HELLO.decode()
        assert ["X-Multi", "one"] in doc["headers"] and ["X-Multi", "two"] in doc["headers"]


def test_chunked_and_http10_origins(daemon, zctx):
    d = daemon()
    c = ReqClient(zctx, d, "DEALER")
    with AppOrigin() as o:
        rep = c.call({"id": "ch", "method": "GET", "uri": o.url("/chunked")})
        assert rep["code"] == 200
        assert rep["body"] == b"".join(b"piece %d\n" % i for i in range(5))
        assert header_values(rep["headers"], "X-Shape") == [b"chunked"]
    body = b"an HTTP/1.0 body without a length\n" * 3
    with RawOrigin(http10_handler(body)) as o10:
        rep = c.call({"id": "h10", "method": "GET", "uri": o10.url("/")})
        assert rep["code"] == 200 and rep["reason"] == b"OK"
        assert rep["body"] == body
        assert header_values(rep["headers"], "X-Version") == [b"1.0"]


def test_max_size_exceeded_and_exactly_at_limit(daemon, zctx):
    d = daemon()
    with AppOrigin() as o:
        c = ReqClient(zctx, d, "DEALER")
        rep = c.call({"id": "big", "method": "GET", "uri": o.url("/big/5000"), "max-size": 4999})
        assert rep["type"] == b"error" and rep["condition"] == b"max-size-exceeded"
        assert rep["id"] == b"big"
        rep = c.call({"id": "fit", "method": "GET", "uri": o.url("/big/5000"), "max-size": 5000})
        assert rep["code"] == 200 and rep["body"] == pattern(5000)


def test_large_response_without_max_size_in_one_packet(daemon, zctx):
    d = daemon()
    with AppOrigin() as o:
        rep = ReqClient(zctx, d, "DEALER").call({"id": "l", "method": "GET",
                                                 "uri": o.url("/big/900000")})
        assert rep["code"] == 200 and rep["body"] == pattern(900000)


@zhttpd_only("Zurl buffers a req-mode response of any size; zhttpd bounds it at 1 MiB unless "
             "max-size says otherwise (issue 4 item 3)")
def test_default_response_limit_is_one_mib(daemon, zctx):
    d = daemon()
    with AppOrigin() as o:
        c = ReqClient(zctx, d, "DEALER")
        rep = c.call({"id": "over", "method": "GET", "uri": o.url("/big/%d" % (1024 * 1024 + 1))})
        assert rep["type"] == b"error" and rep["condition"] == b"max-size-exceeded"
        rep = c.call({"id": "at", "method": "GET", "uri": o.url("/big/%d" % (1024 * 1024))})
        assert rep["code"] == 200 and len(rep["body"]) == 1024 * 1024
        rep = c.call({"id": "raised", "method": "GET", "uri": o.url("/big/2000000"),
                      "max-size": 2000000})
        assert rep["code"] == 200 and rep["body"] == pattern(2000000)


@zurl_xfail("a req-mode packet with `from` is answered on out_spec (PUB) instead of in the "
            "ROUTER envelope, so the DEALER never sees it")
def test_req_packet_with_from_still_answered(daemon, zctx):
    """Pushpin's req-mode packets carry `from` (ZHTTP.md §2.2); the reply still comes back in the
    request's envelope."""
    d = daemon()
    with AppOrigin() as o:
        rep = ReqClient(zctx, d, "DEALER").call(
            {"from": "pushpin-proxy", "id": "pf", "method": "GET", "uri": o.url("/hello")},
            timeout=5)
        assert rep["id"] == b"pf" and rep["code"] == 200


def test_unknown_fields_and_passthrough_are_ignored(daemon, zctx):
    d = daemon()
    with AppOrigin() as o:
        rep = ReqClient(zctx, d, "DEALER").call({
            "id": "u", "method": "GET", "uri": o.url("/hello"), "passthrough": {"route": b"x"},
            "x-unknown-field": [1, 2], "ext": {"quiet": True}})
        assert rep["code"] == 200 and rep["body"] == HELLO
        assert "passthrough" not in rep and "x-unknown-field" not in rep
