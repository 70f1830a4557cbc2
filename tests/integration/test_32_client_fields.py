"""Client role request fields and failure conditions, each provoked for real on 127.0.0.1:
timeout, connect-host/connect-port, trust-connect-host, ignore-tls-errors, tls_ca_file,
follow-redirects (and too-many-redirects), ignore-policies (fresh connections), Host rebuilt from
the uri, compression only when the requester asks, remote-connection-failed, connection-timeout,
tls-error, session-timeout (field and inactivity) and undefined-condition."""
import asyncio
import gzip
import re
import socket
import subprocess
import ssl
import time

import pytest
import zmq
from aiohttp import web

from conftest import free_port
from origin import Origin
from streamorigin import AioOrigin, RawOrigin
from zclient import Requester, Session, start_daemon


@pytest.fixture
def daemon(rundir):
    d, base = start_daemon(rundir)
    yield d, base
    d.stop()


def fetch(rq, wait=10, **fields):
    """Start a stream request with plenty of credits. Returns (error or cancel packet or None,
    head packet or None, body)."""
    s = Session(rq)
    method = fields.pop("method", "GET")
    s.start(method=method, stream=True, credits=10 ** 7, **fields)
    s.ack()
    head = None
    body = b""
    while True:
        p = s.recv(timeout=wait)
        if p.get("type") in (b"error", b"cancel"):
            return p, head, body
        if p.get("type"):
            continue
        head = head or p
        body += p.get("body", b"")
        if not p.get("more"):
            return None, head, body


def hdr(head, name):
    for k, v in head["headers"]:
        if bytes(k).lower() == name.lower():
            return bytes(v)
    return None


# ---- redirects ----

def redirect_origin(app):
    async def chain(request):
        n = int(request.match_info["n"])
        if n == 0:
            return web.Response(text=f"end {request.method} {await request.text()}")
        return web.Response(status=302, headers={"Location": f"/r/{n - 1}"}, text="moving")

    async def see_other(request):
        return web.Response(status=303, headers={"Location": "../r/0"})

    async def temporary(request):
        return web.Response(status=307, headers={"Location": "/r/0"})

    app.router.add_route("*", "/r/{n}", chain)
    app.router.add_route("*", "/x/303", see_other)
    app.router.add_route("*", "/x/307", temporary)


def test_redirects_are_not_followed_by_default(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with AioOrigin(redirect_origin) as o:
        err, head, body = fetch(rq, uri=o.url("/r/3"))
        assert err is None and head["code"] == 302
        assert hdr(head, b"location") == b"/r/2" and body == b"moving"


def test_eight_redirects_are_followed(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with AioOrigin(redirect_origin) as o:
        err, head, body = fetch(rq, uri=o.url("/r/8"), **{"follow-redirects": True})
        assert err is None and head["code"] == 200 and body == b"end GET "


def test_the_ninth_redirect_is_too_many(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with AioOrigin(redirect_origin) as o:
        err, head, body = fetch(rq, uri=o.url("/r/9"), **{"follow-redirects": True})
        assert head is None
        assert err["type"] == b"error" and err["condition"] == b"too-many-redirects"


def test_303_turns_a_post_into_a_get_and_307_keeps_it(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with AioOrigin(redirect_origin) as o:
        err, head, body = fetch(rq, method="POST", uri=o.url("/x/303"), body=b"data",
                                **{"follow-redirects": True})
        assert body == b"end GET "
        err, head, body = fetch(rq, method="POST", uri=o.url("/x/307"), body=b"data",
                                **{"follow-redirects": True})
        assert body == b"end POST data"


def test_each_hop_gets_its_own_host(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with Origin({"/final": lambda m, p, h, b: (200, [], h.get("Host").encode())}) as target:
        with Origin({"/go": lambda *a: (301, [("Location", target.url("/final"))], b"")}) as o:
            err, head, body = fetch(rq, uri=o.url("/go"), **{"follow-redirects": True})
            assert body == f"127.0.0.1:{target.port}".encode()


# ---- connect-host, Host, compression ----

def echo_host(method, path, headers, body):
    return 200, [], (headers.get("Host") or "").encode()


def test_host_is_rebuilt_from_the_uri(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with Origin({"/h": echo_host}) as o:
        err, head, body = fetch(rq, uri=o.url("/h"), headers=[["Host", "evil.example"]])
        assert body == f"127.0.0.1:{o.port}".encode()


def test_connect_host_and_port_keep_the_uri_host(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with Origin({"/h": echo_host}) as o:
        err, head, body = fetch(rq, uri="http://127.0.0.2:1/h",
                                **{"connect-host": "127.0.0.1", "connect-port": o.port})
        assert err is None and body == b"127.0.0.2:1"
        # connect-port alone
        err, head, body = fetch(rq, uri="http://127.0.0.1/h", **{"connect-port": o.port})
        assert err is None and body == b"127.0.0.1"


def gzip_origin(method, path, headers, body):
    plain = b"compress me " * 100
    if "gzip" in (headers.get("Accept-Encoding") or ""):
        return 200, [("Content-Encoding", "gzip")], gzip.compress(plain)
    return 200, [("X-Accept-Encoding", headers.get("Accept-Encoding") or "none")], plain


def test_no_compression_unless_asked_and_never_decoded(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with Origin({"/z": gzip_origin}) as o:
        err, head, body = fetch(rq, uri=o.url("/z"))
        assert hdr(head, b"x-accept-encoding") == b"none"
        assert body == b"compress me " * 100
        err, head, body = fetch(rq, uri=o.url("/z"), headers=[["Accept-Encoding", "gzip"]])
        assert hdr(head, b"content-encoding") == b"gzip"
        assert int(hdr(head, b"content-length")) == len(body)  # the headers describe this body
        assert gzip.decompress(body) == b"compress me " * 100


# ---- ignore-policies: connections of their own ----

def peer_origin(app):
    async def peer(request):
        return web.Response(text=str(request.transport.get_extra_info("peername")[1]))

    app.router.add_get("/peer", peer)


def test_ignore_policies_transfers_have_a_pool_of_their_own(daemon, zctx):
    """ignore-policies transfers reuse connections among themselves (Pushpin sets it on every
    request) but never share one with policy-checked transfers, either way (issue 12)."""
    d, base = daemon
    rq = Requester(zctx, base, ident=b"onlyone")
    with AioOrigin(peer_origin) as o:
        trusted = [fetch(rq, uri=o.url("/peer"), **{"ignore-policies": True})[2]
                   for _ in range(6)]
        plain = [fetch(rq, uri=o.url("/peer"))[2] for _ in range(12)]
        trusted += [fetch(rq, uri=o.url("/peer"), **{"ignore-policies": True})[2]
                    for _ in range(6)]
        assert len(set(trusted)) <= 2, trusted  # reused (one connection per worker at most)
        assert len(set(plain)) <= 2, plain
        assert not set(trusted) & set(plain), (trusted, plain)  # never shared


# ---- conditions ----

def test_connection_refused_is_remote_connection_failed(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    err, head, body = fetch(rq, uri=f"http://127.0.0.1:{free_port()}/")
    assert err["type"] == b"error" and err["condition"] == b"remote-connection-failed"


def test_a_connect_that_hangs_is_connection_timeout(rundir, zctx):
    d, base = start_daemon(rundir, "connect_timeout = 0.5\n")
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    try:
        # fill the accept queue of a listener that never accepts: further SYNs are dropped
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            fillers.append(c)
        time.sleep(0.2)
        rq = Requester(zctx, base)
        t0 = time.monotonic()
        err, head, body = fetch(rq, uri=f"http://127.0.0.1:{port}/")
        assert err["type"] == b"error" and err["condition"] == b"connection-timeout"
        assert time.monotonic() - t0 < 3
    finally:
        for c in fillers:
            c.close()
        lsock.close()
        d.stop()


def test_bytes_that_are_not_http_are_undefined_condition(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)

    def garbage(conn, head, origin):
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\nthis is not http\r\n\r\n")

    with RawOrigin(garbage) as o:
        err, head, body = fetch(rq, uri=o.url("/"))
        assert err["type"] == b"error" and err["condition"] == b"undefined-condition"


def slow_origin(app):
    async def slow_head(request):
        await asyncio.sleep(3)
        return web.Response(text="late")

    async def slow_body(request):
        resp = web.StreamResponse()
        resp.content_length = 100
        await resp.prepare(request)
        await resp.write(b"x")
        await asyncio.sleep(3)
        await resp.write(b"y" * 99)
        return resp

    app.router.add_get("/slow-head", slow_head)
    app.router.add_get("/slow-body", slow_body)


def test_timeout_field_is_session_timeout(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with AioOrigin(slow_origin) as o:
        t0 = time.monotonic()
        err, head, body = fetch(rq, uri=o.url("/slow-head"), wait=5, **{"timeout": 400})
        assert err["type"] == b"error" and err["condition"] == b"session-timeout"
        assert 0.3 < time.monotonic() - t0 < 2.5
        # after the head: the requester learns it by a cancel
        err, head, body = fetch(rq, uri=o.url("/slow-body"), wait=5, **{"timeout": 400})
        assert head["code"] == 200 and err["type"] == b"cancel"
    assert re.search(r"condition=session-timeout stage=response reason=\"[^\"]+\" after the "
                     r"response started; sending cancel", d.log()), d.log()


def test_inactivity_limit_is_session_timeout(rundir, zctx):
    d, base = start_daemon(rundir, "timeout = 0.5\n")
    try:
        rq = Requester(zctx, base)
        with AioOrigin(slow_origin) as o:
            err, head, body = fetch(rq, uri=o.url("/slow-head"), wait=5)
            assert err["type"] == b"error" and err["condition"] == b"session-timeout"
        assert re.search(r"no activity for 500 ms", d.log())
    finally:
        d.stop()


# ---- TLS, with a throw-away CA ----

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA and a server certificate for DNS:origin.test and IP:127.0.0.1, made with openssl."""
    d = tmp_path_factory.mktemp("pki")

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=zhttpd test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj",
        "/CN=origin.test")
    (d / "ext.cnf").write_text("subjectAltName=DNS:origin.test,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf")
    return d


def tls_origin(pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "srv.pem", pki / "srv.key")

    def setup(app):
        async def hi(request):
            return web.Response(text="secure")
        app.router.add_get("/", hi)

    return AioOrigin(setup, ssl=ctx)


def test_untrusted_certificate_is_tls_error_unless_ignored(daemon, zctx, pki):
    d, base = daemon
    rq = Requester(zctx, base)
    with tls_origin(pki) as o:
        err, head, body = fetch(rq, uri=o.url("/"))
        assert err["type"] == b"error" and err["condition"] == b"tls-error"
        err, head, body = fetch(rq, uri=o.url("/"), **{"ignore-tls-errors": True})
        assert err is None and body == b"secure"


def test_tls_ca_file_adds_trust_and_trust_connect_host(rundir, zctx, pki):
    d, base = start_daemon(rundir, f"tls_ca_file = {pki / 'ca.pem'}\n")
    try:
        rq = Requester(zctx, base)
        with tls_origin(pki) as o:
            err, head, body = fetch(rq, uri=o.url("/"))
            assert err is None and body == b"secure"
            # 127.0.0.2 is not in the certificate: verified against the uri host, it fails...
            via = {"connect-host": "127.0.0.1", "connect-port": o.port}
            err, head, body = fetch(rq, uri="https://127.0.0.2:1/", **via)
            assert err["condition"] == b"tls-error"
            # ...and against connect-host (which is in it), it passes
            err, head, body = fetch(rq, uri="https://127.0.0.2:1/",
                                    **{"trust-connect-host": True}, **via)
            assert err is None and body == b"secure"
    finally:
        d.stop()

