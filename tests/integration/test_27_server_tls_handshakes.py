"""TLS handshakes in progress on the server role: OpenSSL state is allocated only once a
connection's first TLS record (the ClientHello) has arrived whole, so a client stalled before it
costs no TLS memory and does not count; handshakes in progress are bounded process-wide by
--max-tls-handshakes (default 1024): at the limit the worker's oldest one is closed, with a log
line, and clients that go on with their handshake are served."""
import select
import socket
import ssl
import time

import pytest

from conftest import free_port
from handlers import AutoHandler
from srvkit import HttpConn, get, start
from test_15_server_listeners import make_identity, tls_get

LIMIT = 4


def client_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_hello():
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx().wrap_bio(inc, out, server_hostname="one.test")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def stalled_after_hello(port):
    """A connection that sent a whole ClientHello and then nothing; returns once the server has
    answered it (its handshake is in progress there)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(client_hello())
    assert select.select([s], [], [], 5)[0], "no ServerHello"
    return s


def closed_by_server(s, timeout=0.0):
    """True when the server closed s (EOF or reset after whatever it sent)."""
    s.setblocking(False)
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if not select.select([s], [], [], max(0.0, left))[0]:
            return False
        try:
            if not s.recv(65536):
                return True
        except BlockingIOError:
            pass
        except OSError:
            return True


def bio_get(port, pieces, pause):
    """A real TLS client whose ClientHello is sent in pieces with a pause between them, then a
    GET; returns the response."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx().wrap_bio(inc, out, server_hostname="one.test")
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = out.read()
        cuts = [0] + list(pieces) + [len(hello)]
        for a, b in zip(cuts, cuts[1:]):
            s.sendall(hello[a:b])
            time.sleep(pause)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            data = out.read()
            if data:
                s.sendall(data)
            got = s.recv(65536)
            assert got, "server closed during the handshake"
            inc.write(got)
        s.sendall(out.read())
        obj.write(get("/split", host="one.test"))
        s.sendall(out.read())
        raw = b""
        while b"\r\n\r\n" not in raw or not raw.endswith(b"\n"):
            got = s.recv(65536)
            if not got:
                break
            inc.write(got)
            try:
                while True:
                    raw += obj.read(65536)
            except ssl.SSLWantReadError:
                pass
        return raw
    finally:
        s.close()


@pytest.fixture
def tls_srv(rundir, zctx, tmp_path):
    ids = tmp_path / "ids"
    ids.mkdir()
    make_identity(ids, "one.test", "one.test")
    port = free_port()
    d, info = start(rundir, "--tls-identities-dir", ids, "--max-tls-handshakes", LIMIT,
                    listen_extra=[f"127.0.0.1:{port},tls,default-cert=one.test"])
    with AutoHandler(zctx, info["base"], ident=b"auto") as auto:
        yield d, port, auto
    d.stop()


def normal_client_served(port, path):
    _, c = tls_get(port, "one.test", path)
    r = c.read_response()
    c.close()
    return r.status == 200 and r.body == f"ok {path} 0\n".encode()


def test_handshakes_beyond_the_limit_close_the_oldest_and_clients_are_served(tls_srv):
    d, port, auto = tls_srv
    stalled = [stalled_after_hello(port) for _ in range(LIMIT + 6)]
    try:
        # each one past the limit closed the oldest handshake in progress
        assert [closed_by_server(s, 2.0) for s in stalled[:6]] == [True] * 6
        assert [closed_by_server(s) for s in stalled[6:]] == [False] * LIMIT
        d.wait_log(r"TLS handshakes in progress at the limit \(--max-tls-handshakes 4\): "
                   r"oldest handshake closed")
        # connections stalled before a whole ClientHello cost no TLS state and do not count
        partial = []
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(client_hello()[:6])
            partial.append(s)
        time.sleep(0.5)
        assert not any(closed_by_server(s) for s in stalled[6:] + partial)
        # normal TLS clients are served meanwhile: the first takes the room of the oldest stalled
        # one; once its handshake is done, its room is free for the next
        for i in range(3):
            assert normal_client_served(port, f"/n{i}")
        assert [closed_by_server(s, 1.0) for s in stalled[6:7]] == [True]
        assert not any(closed_by_server(s) for s in stalled[7:])
        assert not any(closed_by_server(s) for s in partial)
        # a ClientHello that arrives in pieces is waited for and served
        raw = bio_get(port, pieces=(3, 6, 100), pause=0.3)
        assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and raw.endswith(b"ok /split 0\n"), raw
    finally:
        for s in stalled + partial:
            s.close()


def test_a_client_that_closes_mid_hello_is_closed_and_not_counted(tls_srv):
    d, port, auto = tls_srv
    for _ in range(LIMIT + 2):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(client_hello()[:40])
        time.sleep(0.05)
        s.close()
    d.wait_log(r"closed: client closed mid-ClientHello", count=LIMIT + 2)
    # nothing was counted: a full set of stalled handshakes fits without any eviction
    stalled = [stalled_after_hello(port) for _ in range(LIMIT)]
    try:
        assert not any(closed_by_server(s, 0.3) for s in stalled)
        assert "TLS handshakes in progress at the limit" not in d.log()
    finally:
        for s in stalled:
            s.close()
