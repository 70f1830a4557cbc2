"""Client role, follow-redirects (issue 11 item 1): credentials never follow a redirect to another
origin. Two recording origins: on a change of host (127.0.0.1 -> 127.0.0.2), of port, or of scheme
(https -> http) the second one sees no Authorization, Cookie or Proxy-Authorization; a same-origin
hop keeps them. Everything else the handler sent (and a 307's body) still goes."""
import pytest

from tls_origin import pki  # noqa: F401 (fixture)
from wireorigin import WireOrigin
from zrequester import ReqClient, binary, daemon, zurl_xfail  # noqa: F401

ZURL_PROXY_AUTH = ("libcurl's own redirect code (Zurl) drops Authorization and Cookie but sends "
                   "Proxy-Authorization to the other origin")

CREDENTIALS = [["Authorization", "Bearer s3cret"], ["cookie", "session=abc"],
               ["Proxy-Authorization", "Basic cHJveHk6cHc="]]
OTHER = [["X-Keep", "1"], ["Content-Type", "application/json"]]
BODY = b'{"secret": "payload"}'


def redirect_to(url):
    def respond(req, origin):
        if req.target == b"/from":
            return (f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {url}\r\n"
                    "Content-Length: 0\r\n\r\n").encode()
        return b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nlanded"
    return respond


def follow(zctx, d, first, extra=None):
    pkt = {"id": "r", "method": "POST", "uri": first.url("/from"), "follow-redirects": True,
           "headers": CREDENTIALS + OTHER, "body": BODY}
    pkt.update(extra or {})
    rep = ReqClient(zctx, d, "DEALER").call(pkt)
    assert rep.get("code") == 200 and rep["body"] == b"landed", rep
    return rep


def assert_credentials(req, present):
    for name, value in CREDENTIALS:
        assert req.values(name) == ([value.encode()] if present else []), \
            f"{name} {'missing' if present else 'leaked'}: {req.lines!r}"
    for name, value in OTHER:
        assert req.values(name) == [value.encode()], req.lines
    assert req.body == BODY


def _cross(zctx, d, first_kw, second_host, extra=None):
    with WireOrigin(redirect_to("/unused"), host=second_host) as second:
        with WireOrigin(redirect_to(second.url("/to")), **first_kw) as first:
            follow(zctx, d, first, extra)
            [a] = first.requests
            assert_credentials(a, present=True)
        [b] = second.requests
        assert b.target == b"/to"
        assert_credentials(b, present=False)


@zurl_xfail(ZURL_PROXY_AUTH)
def test_other_host_gets_no_credentials(daemon, zctx):
    _cross(zctx, daemon(), {}, "127.0.0.2")


@zurl_xfail(ZURL_PROXY_AUTH)
def test_other_port_gets_no_credentials(daemon, zctx):
    _cross(zctx, daemon(), {}, "127.0.0.1")


@zurl_xfail(ZURL_PROXY_AUTH)
def test_https_to_http_gets_no_credentials(daemon, zctx, pki):
    _cross(zctx, daemon(), {"tls": (pki.self_cert, pki.self_key)}, "127.0.0.1",
           {"ignore-tls-errors": True})


def test_same_origin_hop_keeps_credentials(daemon, zctx):
    with WireOrigin(redirect_to("/to")) as o:
        follow(zctx, daemon(), o)
        a, b = o.requests
        assert b.target == b"/to"
        assert_credentials(a, present=True)
        assert_credentials(b, present=True)


@zurl_xfail("libcurl compares each hop with the first host: back there, the credentials are sent "
            "again after they went through another origin")
def test_back_to_the_first_origin_after_a_foreign_hop_stays_without(daemon, zctx):
    """A -> B -> A: once dropped, credentials do not come back."""
    d = daemon()
    with WireOrigin(host="127.0.0.2") as b_origin:
        def first_respond(req, origin):
            if req.target == b"/from":
                return (f"HTTP/1.1 307 R\r\nLocation: {b_origin.url('/bounce')}\r\n"
                        "Content-Length: 0\r\n\r\n").encode()
            return b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nlanded"
        with WireOrigin(first_respond) as a_origin:
            b_origin.respond = lambda req, origin: (
                f"HTTP/1.1 307 R\r\nLocation: {a_origin.url('/back')}\r\n"
                "Content-Length: 0\r\n\r\n").encode()
            follow(zctx, d, a_origin)
            first, back = a_origin.requests
            assert_credentials(first, present=True)
            assert back.target == b"/back"
            assert_credentials(back, present=False)
        [bounce] = b_origin.requests
        assert_credentials(bounce, present=False)
