"""Client role: the origin's framing reaches requesters consistent (issue 11 item 3). A raw origin
per case: Content-Length beside Transfer-Encoding is dropped (RFC 9112 §6.3) and max-size counts
the bytes received; differing Content-Lengths, a CR or NUL inside a value (RFC 9110 §5.5) and
whitespace before a colon (RFC 9112 §5.1) end the exchange with an error and a log line, as nginx
answers 502 for such an upstream. Nothing of a refused head reaches the requester."""
import re

import pytest

from wireorigin import WireOrigin, fixed
from zrequester import ReqClient, Requester, Session, binary, daemon, header_values  # noqa: F401
from zrequester import zhttpd_only

ZURL_PASSES = "Zurl hands the origin's head on as it came (the defect the issue describes)"


def call(zctx, d, uri, **extra):
    pkt = {"id": "f", "method": "GET", "uri": uri}
    pkt.update({k.replace("_", "-"): v for k, v in extra.items()})
    return ReqClient(zctx, d, "DEALER").call(pkt)


def head(*lines, body=b""):
    return ("HTTP/1.1 200 OK\r\n" + "".join(ln + "\r\n" for ln in lines) + "\r\n").encode() + body


CL_AND_TE = head("Content-Length: 100", "Transfer-Encoding: chunked", "X-A: 1",
                 body=b"2\r\nhi\r\n0\r\n\r\n")


@zhttpd_only(ZURL_PASSES)
def test_content_length_beside_chunked_is_dropped(daemon, zctx):
    d = daemon()
    with WireOrigin(fixed(CL_AND_TE)) as o:
        rep = call(zctx, d, o.url("/"))
        assert rep["code"] == 200 and rep["body"] == b"hi"
        assert header_values(rep["headers"], "Content-Length") == []
        assert header_values(rep["headers"], "X-A") == [b"1"]


@zhttpd_only(ZURL_PASSES)
def test_content_length_beside_chunked_is_dropped_in_stream_mode(daemon, zctx):
    d = daemon()
    rq = Requester(zctx, d)
    with WireOrigin(fixed(CL_AND_TE)) as o:
        s = Session(rq)
        s.start("GET", o.url("/"), credits=1000)
        s.ack()
        h, body, _ = s.response()
        assert h["code"] == 200 and body == b"hi"
        assert header_values(h["headers"], "Content-Length") == []


@zhttpd_only(ZURL_PASSES)
def test_max_size_counts_the_bytes_received_not_a_dropped_length(daemon, zctx):
    """The announced 100 is not the body: 2 bytes under max-size 10 are a success."""
    d = daemon()
    with WireOrigin(fixed(CL_AND_TE)) as o:
        rep = call(zctx, d, o.url("/"), max_size=10)
        assert rep.get("code") == 200 and rep["body"] == b"hi", rep


def test_max_size_counts_the_bytes_received_beyond_a_small_length(daemon, zctx):
    """Content-Length 2 beside a chunked body of 64 bytes: the 64 bytes count against max-size."""
    d = daemon()
    raw = head("Content-Length: 2", "Transfer-Encoding: chunked",
               body=b"40\r\n" + b"x" * 64 + b"\r\n0\r\n\r\n")
    with WireOrigin(fixed(raw)) as o:
        rep = call(zctx, d, o.url("/"), max_size=32)
        assert rep["type"] == b"error" and rep["condition"] == b"max-size-exceeded", rep


@zhttpd_only(ZURL_PASSES)
def test_equal_content_lengths_are_delivered_once(daemon, zctx):
    d = daemon()
    raw = head("Content-Length: 2", "Content-Length: 2", body=b"ok")
    with WireOrigin(fixed(raw)) as o:
        rep = call(zctx, d, o.url("/"))
        assert rep["code"] == 200 and rep["body"] == b"ok"
        assert header_values(rep["headers"], "Content-Length") == [b"2"]
        raw2 = head("Content-Length: 2, 2", body=b"ok")
        o.respond = fixed(raw2)
        rep = call(zctx, d, o.url("/"))
        assert rep["code"] == 200 and header_values(rep["headers"], "Content-Length") == [b"2"]


BAD = {
    "differing-lengths": (head("Content-Length: 2", "Content-Length: 5", body=b"ok"),
                          "differing Content-Lengths"),
    "differing-list": (head("Content-Length: 2, 5", body=b"ok"), "differing Content-Lengths"),
    "bad-length": (head("Content-Length: 2x", body=b"ok"), "invalid Content-Length"),
    "bare-cr": (head("Content-Length: 2", "X-A: a\rInjected: 1", body=b"ok"),
                "CR or NUL inside a header value"),
    "nul": (head("Content-Length: 2", "X-A: a\x00b", body=b"ok"), None),
    "space-before-colon": (head("Content-Length: 2", "X-A : v", body=b"ok"),
                           "invalid header name"),
    "tab-before-colon": (head("Content-Length: 2", "X-A\t: v", body=b"ok"),
                         "invalid header name"),
}


@zhttpd_only(ZURL_PASSES)
@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("mode", ["req", "stream"])
def test_inconsistent_head_is_an_error_and_logged(daemon, zctx, case, mode):
    raw, why = BAD[case]
    d = daemon()
    with WireOrigin(fixed(raw)) as o:
        if mode == "req":
            rep = call(zctx, d, o.url("/"))
            assert rep.get("type") == b"error", rep
            assert rep["condition"] == b"undefined-condition", rep
        else:
            s = Session(Requester(zctx, d))
            s.start("GET", o.url("/"), credits=1000)
            s.ack()
            assert s.error() == b"undefined-condition"
        if why:
            d.wait_log(f"stage=response reason=\"response head refused: {re.escape(why)}")
        else:
            d.wait_log(r"failed: role=client method=GET host=\S+ condition=\S+ stage=response")
