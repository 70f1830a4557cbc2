"""Request smuggling and malformed framing in server mode (issue 5, items 3 and 5).

A table of hostile requests sent on raw sockets to zhttpd with a handler that answers everything
(handlers.AutoHandler). For each refused case:
  - zhttpd answers the status RFC 9112 dictates, with the reason shared/proto/http1.h gives as a
    one-line text body and `Connection: close`, then closes the connection;
  - the handler never sees a second, smuggled request (path /smuggled), whatever else it sees;
  - the next client, on a new connection, is served.
Each refused case has a well-framed twin in ACCEPTED (same feature, legal form), so the strictness
is shown not to refuse legal traffic: both pipelined requests are served with the right bodies.
"""
import socket
import time
from dataclasses import dataclass

import pytest
import zmq

from handlers import AutoHandler, path_of
from peers import start_server
from rawhttp import RawClient, exchange

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
SECOND = b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n"


@dataclass
class Case:
    id: str
    data: bytes
    status: int = 400
    text: str = ""      # the reason zhttpd gives (shared/proto/http1.h ZH_HTTP1_ERR_MAP)
    seen: tuple = ()    # refused: paths the handler may see; accepted: (path, body) it must see


def post(headers: str, body: bytes = b"", tail: bytes = SMUGGLED, version="1.1", target="/first"):
    """A POST with the given extra field lines (CRLF-separated, no final CRLF), then body + tail."""
    head = f"POST {target} HTTP/{version}\r\nHost: x\r\n"
    if headers:
        head += headers + "\r\n"
    return head.encode("latin-1") + b"\r\n" + body + tail


def chunked(body: bytes, te="chunked", tail=SMUGGLED):
    return post(f"Transfer-Encoding: {te}", body, tail)


def get(lines: str, tail: bytes = SMUGGLED, request_line="GET /first HTTP/1.1"):
    return (request_line + "\r\n" + lines + "\r\n").encode("latin-1") + tail


HELLO_CHUNKED = b"5\r\nhello\r\n0\r\n\r\n"
# 0\r\n\r\n then a smuggled request: the classic CL.TE / TE.CL payload
TE_PAYLOAD = b"0\r\n\r\n" + SMUGGLED

CL = "invalid Content-Length"
NOT_FINAL = "chunked is not the final transfer coding"
CHUNK_SIZE = "invalid chunk size"
CHUNK_EXT = "invalid chunk extension"
CHUNK_END = "chunk data not followed by CRLF"

REFUSED = [
    # --- Content-Length together with Transfer-Encoding, both orders and disguises
    Case("cl-te", post("Content-Length: 41\r\nTransfer-Encoding: chunked", TE_PAYLOAD, b""),
         text="both Content-Length and Transfer-Encoding"),
    Case("te-cl", post("Transfer-Encoding: chunked\r\nContent-Length: 41", TE_PAYLOAD, b""),
         text="both Content-Length and Transfer-Encoding"),
    Case("te-cl-htab", post("Transfer-Encoding:\tchunked\r\nContent-Length: 4", TE_PAYLOAD, b""),
         text="both Content-Length and Transfer-Encoding"),
    Case("cl-te-zero", post("Content-Length: 0\r\nTransfer-Encoding: chunked", TE_PAYLOAD, b""),
         text="both Content-Length and Transfer-Encoding"),
    Case("te-space-before-colon", post("Transfer-Encoding : chunked\r\nContent-Length: 5",
                                       TE_PAYLOAD, b""),
         text="whitespace between field name and colon"),
    Case("te-obs-fold-hides-cl", post("Transfer-Encoding: chunked\r\n Content-Length: 5",
                                      TE_PAYLOAD, b""), text="obsolete line folding"),
    # --- Content-Length: duplicates, lists, signs, bases, spaces, overflow
    Case("cl-duplicate-equal", post("Content-Length: 5\r\nContent-Length: 5", b"hello"),
         text="more than one Content-Length field"),
    Case("cl-duplicate-different", post("Content-Length: 5\r\nContent-Length: 41",
                                        b"hello" + SMUGGLED, b""),
         text="more than one Content-Length field"),
    Case("cl-list-equal", post("Content-Length: 5, 5", b"hello"), text=CL),
    Case("cl-list-different", post("Content-Length: 5, 41", b"hello"), text=CL),
    Case("cl-list-no-space", post("Content-Length: 5,5", b"hello"), text=CL),
    Case("cl-plus", post("Content-Length: +5", b"hello"), text=CL),
    Case("cl-minus", post("Content-Length: -5", b"hello"), text=CL),
    Case("cl-hex", post("Content-Length: 0x5", b"hello"), text=CL),
    Case("cl-inner-space", post("Content-Length: 4 1", b"hello"), text=CL),
    Case("cl-empty", post("Content-Length: ", b"hello"), text=CL),
    Case("cl-trailing-junk", post("Content-Length: 5a", b"hello"), text=CL),
    Case("cl-decimal-point", post("Content-Length: 5.0", b"hello"), text=CL),
    Case("cl-overflow-wraps-to-5", post("Content-Length: 18446744073709551621", b"hello"),
         text=CL),
    Case("cl-vertical-tab", post("Content-Length: \x0b5", b"hello"),
         text="invalid character in field value"),
    # --- Transfer-Encoding variants
    Case("te-chunked-chunked", chunked(HELLO_CHUNKED, "chunked, chunked"),
         text="chunked applied more than once"),
    Case("te-gzip", chunked(HELLO_CHUNKED, "gzip"), text=NOT_FINAL),
    Case("te-gzip-chunked", chunked(HELLO_CHUNKED, "gzip, chunked"), status=501,
         text="unsupported transfer coding"),
    Case("te-chunked-gzip", chunked(HELLO_CHUNKED, "chunked, gzip"), text=NOT_FINAL),
    Case("te-identity", chunked(HELLO_CHUNKED, "identity"), text=NOT_FINAL),
    Case("te-xchunked", chunked(HELLO_CHUNKED, "xchunked"), text=NOT_FINAL),
    Case("te-chunkedx", chunked(HELLO_CHUNKED, "chunkedx"), text=NOT_FINAL),
    Case("te-empty-element", chunked(HELLO_CHUNKED, ", chunked"),
         text="invalid Transfer-Encoding"),
    Case("te-chunked-param", chunked(HELLO_CHUNKED, "chunked;q=1"),
         text="invalid Transfer-Encoding"),
    Case("te-quoted", chunked(HELLO_CHUNKED, '"chunked"'), text="invalid Transfer-Encoding"),
    Case("te-vertical-tab", chunked(HELLO_CHUNKED, "\x0bchunked"),
         text="invalid character in field value"),
    Case("te-http10", post("Transfer-Encoding: chunked", HELLO_CHUNKED, version="1.0"),
         text="Transfer-Encoding in an HTTP/1.0 request"),
    Case("te-repeated", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                             HELLO_CHUNKED), text="more than one Transfer-Encoding field"),
    Case("te-repeated-gzip-then-chunked", post("Transfer-Encoding: gzip\r\n"
                                               "Transfer-Encoding: chunked", HELLO_CHUNKED),
         text="more than one Transfer-Encoding field"),
    # --- chunk sizes (the request head is fine: the handler may see /first, never /smuggled)
    Case("chunk-size-0x", chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), text=CHUNK_SIZE,
         seen=("/first",)),
    Case("chunk-size-overflow", chunked(b"10000000000000005\r\nhello\r\n0\r\n\r\n"),
         text="chunk size too large", seen=("/first",)),
    Case("chunk-size-negative", chunked(b"-5\r\nhello\r\n0\r\n\r\n"), text=CHUNK_SIZE,
         seen=("/first",)),
    Case("chunk-size-leading-space", chunked(b" 5\r\nhello\r\n0\r\n\r\n"), text=CHUNK_SIZE,
         seen=("/first",)),
    Case("chunk-size-trailing-space", chunked(b"5 \r\nhello\r\n0\r\n\r\n"), text=CHUNK_SIZE,
         seen=("/first",)),
    Case("chunk-size-empty", chunked(b"\r\nhello\r\n0\r\n\r\n"), text=CHUNK_SIZE,
         seen=("/first",)),
    Case("chunk-size-not-hex", chunked(b"5g\r\nhello\r\n0\r\n\r\n"), text=CHUNK_SIZE,
         seen=("/first",)),
    Case("chunk-size-bare-lf", chunked(b"5\nhello\r\n0\r\n\r\n"), text="line ends with a bare LF",
         seen=("/first",)),
    # --- chunk extensions: grammar and the 4096-byte bound on the chunk-size line
    Case("chunk-ext-too-long", chunked(b"5;a=" + b"b" * 5000 + b"\r\nhello\r\n0\r\n\r\n"),
         text="chunk-size line too long", seen=("/first",)),
    Case("chunk-ext-no-name", chunked(b"5;=x\r\nhello\r\n0\r\n\r\n"), text=CHUNK_EXT,
         seen=("/first",)),
    Case("chunk-ext-space-in-name", chunked(b"5;a b\r\nhello\r\n0\r\n\r\n"), text=CHUNK_EXT,
         seen=("/first",)),
    Case("chunk-ext-unterminated-quote", chunked(b'5;a="b\r\nhello\r\n0\r\n\r\n'),
         text=CHUNK_EXT, seen=("/first",)),
    # --- chunk data not followed by CRLF
    Case("chunk-data-missing-crlf", chunked(b"5\r\nhello0\r\n\r\n"), text=CHUNK_END,
         seen=("/first",)),
    Case("chunk-data-longer-than-size", chunked(b"3\r\nhello\r\n0\r\n\r\n"), text=CHUNK_END,
         seen=("/first",)),
    Case("chunk-data-bare-lf", chunked(b"5\r\nhello\n0\r\n\r\n"), text=CHUNK_END,
         seen=("/first",)),
    Case("chunk-trailer-obs-fold", chunked(b"0\r\nX-T: a\r\n b\r\n\r\n"),
         text="obsolete line folding", seen=("/first",)),
    Case("chunk-trailer-no-colon", chunked(b"0\r\nX-T\r\n\r\n"), text="field line without a colon",
         seen=("/first",)),
    Case("chunk-trailer-space-before-colon", chunked(b"0\r\nX-T : a\r\n\r\n"),
         text="whitespace between field name and colon", seen=("/first",)),
    # --- line ends, folding, field syntax
    Case("bare-lf-request-line", b"GET /first HTTP/1.1\nHost: x\n\n" + SMUGGLED,
         text="line ends with a bare LF"),
    Case("bare-lf-field", get("Host: x\nX-A: b\r\n"), text="line ends with a bare LF"),
    Case("bare-lf-end-of-head", b"GET /first HTTP/1.1\r\nHost: x\r\n\n" + SMUGGLED,
         text="line ends with a bare LF"),
    Case("bare-cr-field", get("Host: x\rX-A: b\r\n"), text="CR not followed by LF"),
    Case("obs-fold", get("Host: x\r\nX-A: a\r\n b\r\n"), text="obsolete line folding"),
    Case("space-before-first-field", get(" Host: x\r\n"), text="obsolete line folding"),
    Case("space-before-colon", post("Content-Length : 5", b"hello"),
         text="whitespace between field name and colon"),
    Case("field-name-with-space", get("Host: x\r\nX A: b\r\n"), text="invalid field name"),
    Case("field-without-colon", get("Host: x\r\nX-A\r\n"), text="field line without a colon"),
    # --- NUL and control bytes
    Case("nul-in-method", get("Host: x\r\n", request_line="G\x00T /first HTTP/1.1"),
         text="invalid method token"),
    Case("nul-in-target", get("Host: x\r\n", request_line="GET /fir\x00st HTTP/1.1"),
         text="invalid request target"),
    Case("nul-in-field-name", get("Host: x\r\nX\x00A: b\r\n"), text="invalid field name"),
    Case("nul-in-field-value", get("Host: x\r\nX-A: a\x00b\r\n"),
         text="invalid character in field value"),
    Case("nul-in-host", get("Host: x\x00y\r\n"), text="invalid character in field value"),
    # --- request line
    Case("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SMUGGLED, status=505,
         text="HTTP/2 connection preface on an HTTP/1 port"),
    Case("version-2.0", get("Host: x\r\n", request_line="GET /first HTTP/2.0"), status=505,
         text="HTTP version not supported"),
    Case("version-lowercase", get("Host: x\r\n", request_line="GET /first http/1.1"),
         text="malformed or missing HTTP version"),
    Case("version-trailing-junk", get("Host: x\r\n", request_line="GET /first HTTP/1.1x"),
         text="malformed or missing HTTP version"),
    Case("http09-no-version", b"GET /first\r\n\r\n" + SMUGGLED,
         text="malformed or missing HTTP version"),
    Case("double-space", get("Host: x\r\n", request_line="GET  /first HTTP/1.1"),
         text="invalid request target"),
    Case("htab-separator", get("Host: x\r\n", request_line="GET\t/first HTTP/1.1"),
         text="invalid method token"),
    Case("asterisk-not-options", get("Host: x\r\n", request_line="GET * HTTP/1.1"),
         text="invalid request target"),
    Case("leading-bare-lf", b"\nGET /first HTTP/1.1\r\nHost: x\r\n\r\n" + SMUGGLED,
         text="line ends with a bare LF"),
    # --- Host
    Case("missing-host", b"GET /first HTTP/1.1\r\n\r\n" + SMUGGLED,
         text="HTTP/1.1 request without Host"),
    Case("duplicate-host", get("Host: x\r\nHost: y\r\n"), text="more than one Host field"),
    Case("host-userinfo", get("Host: user@x\r\n"), text="invalid Host field value"),
    # --- absolute-form with a scheme that is not http(s): the ZHTTP uri scheme selects the
    # protocol (ws:// means WebSocket), so such a target must not reach a handler as its uri.
    Case("absolute-form-ws-scheme", get("Host: x\r\n", request_line="GET ws://x/first HTTP/1.1"),
         text="invalid request target"),
    Case("absolute-form-ftp-scheme", get("Host: x\r\n",
                                         request_line="GET ftp://x/first HTTP/1.1"),
         text="invalid request target"),
    # --- sizes: a request line over --max-header-size is 414, a head over it 431
    Case("request-line-too-long", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
         status=414, text="request line too long"),
    Case("head-too-large-one-field", get("Host: x\r\nX-Big: " + "b" * 70000 + "\r\n"),
         status=431, text="request header section too large"),
    Case("head-too-large-many-fields",
         get("Host: x\r\n" + "".join(f"X-F{i}: {'v' * 1000}\r\n" for i in range(70))),
         status=431, text="request header section too large"),
    Case("too-many-fields", get("Host: x\r\n" + "".join(f"X-{i}: v\r\n" for i in range(200))),
         status=431, text="too many header fields"),
]

ACCEPTED = [
    Case("te-chunked-with-ows", chunked(HELLO_CHUNKED, "  chunked \t", SECOND), 200,
         seen=(("/first", b"hello"), ("/second", b""))),
    Case("te-chunked-uppercase", chunked(HELLO_CHUNKED, "CHUNKED", SECOND), 200,
         seen=(("/first", b"hello"), ("/second", b""))),
    Case("cl-with-ows", post("Content-Length: \t 5  ", b"hello", SECOND), 200,
         seen=(("/first", b"hello"), ("/second", b""))),
    Case("cl-leading-zeros", post("Content-Length: 005", b"hello", SECOND), 200,
         seen=(("/first", b"hello"), ("/second", b""))),
    Case("cl-zero", post("Content-Length: 0", b"", SECOND), 200,
         seen=(("/first", b""), ("/second", b""))),
    # A GET whose Content-Length covers a whole request: that request is body, never a request.
    Case("get-body-looks-like-a-request", get(f"Host: x\r\nContent-Length: {len(SMUGGLED)}\r\n",
                                              SMUGGLED + SECOND), 200,
         seen=(("/first", SMUGGLED), ("/second", b""))),
    Case("chunk-size-leading-zeros", chunked(b"0005\r\nhello\r\n0000\r\n\r\n", tail=SECOND), 200,
         seen=(("/first", b"hello"), ("/second", b""))),
    Case("chunk-size-uppercase-hex", chunked(b"A\r\nhellohello\r\n0\r\n\r\n", tail=SECOND), 200,
         seen=(("/first", b"hellohello"), ("/second", b""))),
    Case("chunk-ext-valid", chunked(b'5;a=b;c="d \\" e" ; f\r\nhello\r\n0;z\r\n\r\n',
                                    tail=SECOND), 200,
         seen=(("/first", b"hello"), ("/second", b""))),
    Case("chunk-trailer-valid", chunked(b"5\r\nhello\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n",
                                        tail=SECOND), 200,
         seen=(("/first", b"hello"), ("/second", b""))),
    Case("chunk-ext-near-limit", chunked(b"5;a=" + b"b" * 4000 + b"\r\nhello\r\n0\r\n\r\n",
                                         tail=SECOND), 200,
         seen=(("/first", b"hello"), ("/second", b""))),
    Case("leading-empty-lines", b"\r\n\r\n" + get("Host: x\r\n", SECOND), 200,
         seen=(("/first", b""), ("/second", b""))),
    Case("absolute-form", get("Host: other\r\n", SECOND,
                              request_line="GET http://example.com/first?x=1 HTTP/1.1"), 200,
         seen=(("/first?x=1", b""), ("/second", b""))),
    Case("large-head-under-limit", get("Host: x\r\n" + "".join(
        f"X-F{i}: {'v' * 1000}\r\n" for i in range(50)), SECOND), 200,
         seen=(("/first", b""), ("/second", b""))),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    rundir = tmp_path_factory.mktemp("framing")
    srv = start_server("zhttpd", rundir, workers=2)
    ctx = zmq.Context()
    try:
        with AutoHandler(ctx, srv.base) as auto:
            yield srv, auto
    finally:
        ctx.destroy(linger=0)
        srv.stop()


def next_client_is_served(srv, auto):
    mark = auto.mark()
    r, _, _ = exchange(srv.port, b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert r is not None and r.status == 200 and r.body == b"ok /next 0\n", r
    assert [path_of(q) for q in auto.requests_since(mark)][-1:] == ["/next"]


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_malformed_request_is_refused(served, case):
    srv, auto = served
    mark = auto.mark()
    r, closed, rest = exchange(srv.port, case.data)
    assert r is not None, "connection closed without an error response"
    assert r.status == case.status, r
    assert r.body.decode() == case.text + "\n", r
    assert r.header("Content-Type") == "text/plain"
    assert r.header("Connection") == "close", r
    assert closed, "connection still open after a framing error"
    assert rest == b"", f"bytes after the error response: {rest[:200]!r}"
    next_client_is_served(srv, auto)
    seen = [path_of(q) for q in auto.requests_since(mark)]
    assert "/smuggled" not in seen, f"smuggled request reached the handler: {seen}"
    assert seen[:-1] == [p for p in case.seen if p in seen[:-1]], \
        f"handler saw {seen[:-1]}, allowed {list(case.seen)}"
    assert srv.alive()


@pytest.mark.parametrize("case", ACCEPTED, ids=[c.id for c in ACCEPTED])
def test_well_framed_twin_is_served(served, case):
    srv, auto = served
    mark = auto.mark()
    with RawClient(srv.port) as c:
        c.send(case.data)
        for path, body in case.seen:
            r = c.read_response()
            assert r is not None and r.status == 200, r
            assert r.body == f"ok {path} {len(body)}\n".encode(), r
        assert c.quiet_for(0.2), f"unexpected bytes: {c.buf[:200]!r}"
    got = [(path_of(q), q["_body"]) for q in auto.wait_requests(mark, len(case.seen))]
    assert got == list(case.seen)
    if case.id == "absolute-form":
        assert auto.requests_since(mark)[0]["uri"] == b"http://example.com/first?x=1"


# The same verdicts when the bytes trickle in: the head parser and the chunked decoder resume
# across reads, so a case split into 1-byte sends must end exactly as when sent whole.
SPLIT_REFUSED = ["cl-te", "te-cl", "cl-duplicate-equal", "cl-plus", "te-gzip-chunked",
                 "te-http10", "chunk-size-0x", "chunk-size-trailing-space", "chunk-ext-no-name",
                 "chunk-data-missing-crlf", "chunk-trailer-obs-fold", "bare-lf-field",
                 "obs-fold", "nul-in-field-value", "http2-preface", "absolute-form-ws-scheme"]
SPLIT_ACCEPTED = ["te-chunked-with-ows", "get-body-looks-like-a-request", "chunk-ext-valid",
                  "chunk-trailer-valid", "leading-empty-lines"]


def trickle(port, data, delay=0.001):
    c = RawClient(port)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(len(data)):
        c.send(data[i:i + 1])
        if c.send_failed:
            break
        time.sleep(delay)
    return c


@pytest.mark.parametrize("case", [c for c in REFUSED if c.id in SPLIT_REFUSED],
                         ids=lambda c: c.id)
def test_malformed_request_sent_byte_by_byte_is_refused_the_same(served, case):
    srv, auto = served
    mark = auto.mark()
    with trickle(srv.port, case.data) as c:
        r = c.read_response()
        assert r is not None and r.status == case.status, r
        assert r.body.decode() == case.text + "\n"
        assert c.wait_closed()
    next_client_is_served(srv, auto)
    seen = [path_of(q) for q in auto.requests_since(mark)]
    assert "/smuggled" not in seen, seen


@pytest.mark.parametrize("case", [c for c in ACCEPTED if c.id in SPLIT_ACCEPTED],
                         ids=lambda c: c.id)
def test_well_framed_request_sent_byte_by_byte_is_served(served, case):
    srv, auto = served
    mark = auto.mark()
    with trickle(srv.port, case.data) as c:
        for path, body in case.seen:
            r = c.read_response()
            assert r is not None and r.status == 200, r
            assert r.body == f"ok {path} {len(body)}\n".encode(), r
    got = [(path_of(q), q["_body"]) for q in auto.wait_requests(mark, len(case.seen))]
    assert got == list(case.seen)
