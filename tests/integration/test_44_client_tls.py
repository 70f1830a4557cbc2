"""Client role over HTTPS: an origin with a throw-away CA (tls_origin.py). tls-error for a
certificate that does not verify, ignore-tls-errors, and (zhttpd only: tls_ca_file) a trusted chain,
name checks and trust-connect-host."""
import pytest

from dnsresponder import DNSResponder
from test_42_client_conditions import mode, one_shot  # noqa: F401 (fixture)
from tls_origin import TLS_HELLO, TlsOrigin, pki  # noqa: F401 (fixture)
from zrequester import ReqClient, binary, daemon, zhttpd_only  # noqa: F401

TLS_CA_FILE = "tls_ca_file is a zhttpd key; Zurl can only trust the system CA store"


@pytest.fixture
def no_dns():
    with DNSResponder({}) as dns:
        yield dns


def test_self_signed_origin_is_tls_error(daemon, zctx, pki, mode):
    d = daemon()
    with TlsOrigin(pki.self_cert, pki.self_key) as o:
        rep = one_shot(zctx, d, mode, {"method": "GET", "uri": o.url("/hello")})
        assert rep["type"] == b"error" and rep["condition"] == b"tls-error"
        assert o.requests == []


def test_untrusted_ca_is_tls_error(daemon, zctx, pki):
    d = daemon()
    with TlsOrigin(pki.cert, pki.key) as o:
        rep = ReqClient(zctx, d, "DEALER").call({"id": "t", "method": "GET",
                                                 "uri": o.url("/hello")})
        assert rep["type"] == b"error" and rep["condition"] == b"tls-error"
        assert o.requests == []


def test_ignore_tls_errors(daemon, zctx, pki, mode):
    d = daemon()
    with TlsOrigin(pki.self_cert, pki.self_key) as o:
        rep = one_shot(zctx, d, mode, {"method": "GET", "uri": o.url("/hello"),
                                       "ignore-tls-errors": True})
        assert rep["code"] == 200 and rep["body"] == TLS_HELLO
        assert o.requests[0][2]["Host"] == f"127.0.0.1:{o.port}"


def test_https_with_connect_host_and_port(daemon, zctx, pki, no_dns):
    """Host and SNI from the uri, the TCP connection to connect-host:connect-port."""
    d = daemon(conf=[f"dns_servers={no_dns.server}"])
    with TlsOrigin(pki.self_cert, pki.self_key) as o:
        rep = ReqClient(zctx, d, "DEALER").call({
            "id": "c", "method": "GET", "uri": "https://origin.test/hello",
            "connect-host": "127.0.0.1", "connect-port": o.port, "ignore-tls-errors": True})
        assert rep["code"] == 200 and rep["body"] == TLS_HELLO
        assert o.requests[0][2]["Host"] == "origin.test"
    assert no_dns.count() == 0


@zhttpd_only(TLS_CA_FILE)
def test_trusted_chain_via_tls_ca_file(daemon, zctx, pki, mode):
    d = daemon(conf=[f"tls_ca_file={pki.ca}"])
    with TlsOrigin(pki.cert, pki.key) as o:
        rep = one_shot(zctx, d, mode, {"method": "GET", "uri": o.url("/hello")})
        assert rep.get("code") == 200, rep
        assert rep["body"] == TLS_HELLO
    # the self-signed one still fails: tls_ca_file adds trust, it does not turn checks off
    with TlsOrigin(pki.self_cert, pki.self_key) as o2:
        rep = one_shot(zctx, d, mode, {"method": "GET", "uri": o2.url("/hello")})
        assert rep["type"] == b"error" and rep["condition"] == b"tls-error"


@zhttpd_only(TLS_CA_FILE)
def test_name_mismatch_is_tls_error(daemon, zctx, pki, no_dns):
    """The certificate names 127.0.0.1 and origin.test: a uri host it does not name fails even
    with a trusted chain."""
    d = daemon(conf=[f"tls_ca_file={pki.ca}", f"dns_servers={no_dns.server}"])
    with TlsOrigin(pki.cert, pki.key) as o:
        c = ReqClient(zctx, d, "DEALER")
        rep = c.call({"id": "ok", "method": "GET", "uri": f"https://origin.test:{o.port}/hello",
                      "connect-host": "127.0.0.1", "connect-port": o.port})
        assert rep.get("code") == 200, rep
        rep = c.call({"id": "bad", "method": "GET", "uri": f"https://wrong.test:{o.port}/hello",
                      "connect-host": "127.0.0.1", "connect-port": o.port})
        assert rep["type"] == b"error" and rep["condition"] == b"tls-error"
        assert len(o.requests) == 1


@zhttpd_only(TLS_CA_FILE)
def test_trust_connect_host(daemon, zctx, pki, no_dns):
    """trust-connect-host: the certificate is checked against connect-host (127.0.0.1, which it
    names) instead of the uri's host (which it does not)."""
    d = daemon(conf=[f"tls_ca_file={pki.ca}", f"dns_servers={no_dns.server}"])
    with TlsOrigin(pki.cert, pki.key) as o:
        rep = ReqClient(zctx, d, "DEALER").call({
            "id": "tc", "method": "GET", "uri": f"https://wrong.test:{o.port}/hello",
            "connect-host": "127.0.0.1", "connect-port": o.port, "trust-connect-host": True})
        assert rep.get("code") == 200, rep
        assert rep["body"] == TLS_HELLO
        assert o.requests[0][2]["Host"] == f"wrong.test:{o.port}"


def test_unverified_connection_never_serves_a_verified_request(daemon, zctx, pki):
    """A connection opened with ignore-tls-errors stays kept alive, but curl only reuses it for
    transfers with the same TLS verification settings (docs/internals/client-engine.md "Trust
    contexts"): the verified request that follows makes its own handshake and fails it."""
    d = daemon(args=["--workers", "1"])  # one worker: both requests meet the same cache
    with TlsOrigin(pki.self_cert, pki.self_key) as o:
        c = ReqClient(zctx, d, "DEALER")
        rep = c.call({"id": "a", "method": "GET", "uri": o.url("/hello"),
                      "ignore-tls-errors": True})
        assert rep["code"] == 200 and rep["body"] == TLS_HELLO
        rep = c.call({"id": "b", "method": "GET", "uri": o.url("/hello")})
        assert rep["type"] == b"error" and rep["condition"] == b"tls-error", rep
        assert len(o.requests) == 1
        rep = c.call({"id": "c", "method": "GET", "uri": o.url("/hello"),
                      "ignore-tls-errors": True})
        assert rep["code"] == 200 and len(o.requests) == 2
