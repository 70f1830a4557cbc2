"""Server role listeners: a Unix socket (stream mode, file mode set), IPv6 [::1]:port, and TLS with
certificates chosen by SNI from --tls-identities-dir (two names, reload on change, plain HTTP on the
TLS port answered in clear text)."""
import os
import socket
import ssl
import stat
import subprocess
import threading

import pytest
import zmq

from conftest import free_port
from srvkit import HttpConn, StreamHandler, get, start
from test_03_end_to_end import curl


def answer_in_thread(h, n=1, body=b"hi\n", capture=None):
    def run():
        for _ in range(n):
            req = h.recv_request()
            if capture is not None:
                capture.append(req)
            h.respond(req["id"], headers=[("Content-Type", "text/plain")], body=body)
    t = threading.Thread(target=run)
    t.start()
    return t


def test_unix_socket_listener_serves_stream_mode_with_its_file_mode(rundir, zctx):
    path = str(rundir / "http.sock")
    d, info = start(rundir, listen_extra=[f"{path},local,mode=660"])
    h = StreamHandler(zctx, info["base"])
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        seen = []
        t = answer_in_thread(h, body=b"over unix\n", capture=seen)
        rc, out, err = curl("http://localhost/u?x=1", "--unix-socket", path)
        t.join(10)
        assert rc == 0, err
        assert out.startswith("HTTP/1.1 200 OK\r\n") and out.endswith("over unix\n")
        req = seen[0]
        assert req["uri"] == b"http://localhost/u?x=1"
        assert "peer-address" not in req and "peer-port" not in req
        d.wait_log(r"listening on unix:%s \(stream\)" % path)
    finally:
        h.close()
        d.stop()
    assert not os.path.exists(path), "the socket file is removed on exit"


def test_unix_socket_of_a_live_server_is_not_stolen(rundir):
    path = str(rundir / "busy.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.listen(1)
    try:
        from zhttpd import run_once
        rc, out = run_once(["--listen", f"{path},local", "--zclient-stream",
                            f"ipc://{rundir}/zs"], rundir)
        assert rc == 1 and "in use by another process" in out, out
    finally:
        s.close()


def test_ipv6_loopback_listener(rundir, zctx):
    port = free_port()
    d, info = start(rundir, listen_extra=[f"[::1]:{port}"])
    h = StreamHandler(zctx, info["base"])
    try:
        seen = []
        t = answer_in_thread(h, body=b"over v6\n", capture=seen)
        rc, out, err = curl(f"http://[::1]:{port}/six", "-g")
        t.join(10)
        assert rc == 0, err
        assert out.endswith("over v6\n")
        assert seen[0]["uri"] == f"http://[::1]:{port}/six".encode()
        assert seen[0]["peer-address"] == b"::1"
        d.wait_log(r"listening on \[::1\]:%d \(stream\)" % port)
    finally:
        h.close()
        d.stop()


def make_identity(dirpath, name, cn):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", f"/CN={cn}",
                    "-addext", f"subjectAltName=DNS:{cn}",
                    "-keyout", str(dirpath / f"{name}.key"), "-out", str(dirpath / f"{name}.crt")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


def tls_get(port, sni, path="/", cafile=None, timeout=5):
    """GET over TLS with SNI; returns (peer certificate subject CN, HttpConn response)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s = ctx.wrap_socket(raw, server_hostname=sni)
    der = s.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der)
    subj = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem.encode(),
                          stdout=subprocess.PIPE, timeout=10).stdout.decode()
    c = HttpConn(sock=s, timeout=timeout)
    c.send(get(path, host=sni))
    return subj, c


@pytest.fixture
def idents(tmp_path):
    d = tmp_path / "ids"
    d.mkdir()
    make_identity(d, "one.test", "one.test")
    make_identity(d, "_.two.test", "*.two.test")
    return d


def test_tls_listener_two_sni_names_https_uri_and_plain_http_gets_400(rundir, zctx, idents):
    port = free_port()
    d, info = start(rundir, "--tls-identities-dir", idents,
                    listen_extra=[f"127.0.0.1:{port},tls,default-cert=one.test"])
    h = StreamHandler(zctx, info["base"])
    try:
        seen = []
        t = answer_in_thread(h, n=2, body=b"secure\n", capture=seen)
        subj, c = tls_get(port, "one.test", "/a")
        assert "CN = one.test" in subj
        r = c.read_response()
        assert r.status == 200 and r.body == b"secure\n"
        c.close()
        subj, c = tls_get(port, "x.two.test", "/b")
        assert "CN = *.two.test" in subj
        assert c.read_response().body == b"secure\n"
        c.close()
        t.join(10)
        assert [r["uri"] for r in seen] == [b"https://one.test/a", b"https://x.two.test/b"]
        # plain HTTP on the TLS port: nginx's plain-text 400
        p = HttpConn(port)
        p.send(get("/plain"))
        r = p.read_response()
        assert r.status == 400 and b"plain HTTP sent to an HTTPS port" in r.body
        assert p.closed_by_peer()
        p.close()
        d.wait_log(r"failed: role=server method=- host=- status=400 stage=tls "
                   r"reason=\"plain HTTP on a TLS port\"")
        assert h.no_request(200)
    finally:
        h.close()
        d.stop()


def test_tls_identities_are_reloaded_when_the_directory_changes(rundir, zctx, idents):
    port = free_port()
    d, info = start(rundir, "--tls-identities-dir", idents, listen_extra=[f"127.0.0.1:{port},tls"])
    h = StreamHandler(zctx, info["base"])
    try:
        with pytest.raises(ssl.SSLError):
            tls_get(port, "new.test")
        make_identity(idents, "new.test", "new.test")
        d.wait_log(r"TLS identities reloaded \(3 loaded\)", timeout=5)
        t = answer_in_thread(h, body=b"reloaded\n")
        subj, c = tls_get(port, "new.test")
        assert "CN = new.test" in subj
        assert c.read_response().body == b"reloaded\n"
        c.close()
        t.join(10)
    finally:
        h.close()
        d.stop()
