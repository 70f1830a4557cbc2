"""TLS client authentication in the client role: the request's client-cert/client-key fields (PEM,
as connmgr and Pushpin send them) are presented to an origin that requires a client certificate."""
import zmq

from test_03_end_to_end import req_roundtrip
from tls_origin import TLS_HELLO, TlsOrigin, make_client_cert, pki  # noqa: F401 (fixture)
from zhttpd import Zhttpd


def start(rundir, pki):  # noqa: F811
    conf = rundir / "tls.conf"
    conf.write_text(f"[General]\nallow=127.0.0.1\ntls_ca_file={pki.ca}\n")
    ep = f"ipc://{rundir}/req"
    return Zhttpd(["--config", conf, "--workers", "1", "--zserver-req", ep], rundir).start(), ep


def test_client_certificate_is_presented_to_the_origin(rundir, pki, zctx):  # noqa: F811
    cert, key = make_client_cert(pki, "requester-a")
    d, ep = start(rundir, pki)
    try:
        with TlsOrigin(pki.cert, pki.key, client_ca=pki.ca) as o:
            rep = req_roundtrip(zctx, ep, {"id": "c1", "method": "GET", "uri": o.url("/hello"),
                                           "client-cert": cert.read_bytes(),
                                           "client-key": key.read_bytes()})
            assert rep.get("code") == 200, rep
            assert rep["body"] == TLS_HELLO
            subject = dict(x[0] for x in o.httpd.peer_certs[-1]["subject"])
            assert subject["commonName"] == "requester-a"
            # without the certificate the origin refuses the handshake: an error, never a 200
            rep = req_roundtrip(zctx, ep, {"id": "c2", "method": "GET", "uri": o.url("/hello")})
            assert rep.get("type") == b"error", rep
            assert len(o.requests) == 1
    finally:
        d.stop()
