"""One log line per failed session (issue 17 item 4), at the default log level: role, session id,
method and host (never the query string or a header value), the ZHTTP condition or HTTP status,
the stage and the errno or TLS reason. Each failure stage of the client role produces exactly one
such line."""
import re
import socket

import pytest

from conftest import free_port
from dnsresponder import DNSResponder, NXDOMAIN
from origins import RawOrigin
from tls_origin import TlsOrigin, pki  # noqa: F401 (fixture)
from zhttpd import Zhttpd
from zrequester import ReqClient

SECRET = "token=s3cr3t"


class _D:
    def __init__(self, req_ep):
        self.req_ep = req_ep


def closing_handler(conn, head, origin):
    """Reads the request and closes without a byte of response."""


@pytest.fixture
def client_daemon(rundir, pki):  # noqa: F811
    with DNSResponder({}, default_ttl=60) as dns:
        dns.set("gone.test", NXDOMAIN)
        conf = rundir / "z.conf"
        conf.write_text("[General]\n"
                        f"in_req_spec = ipc://{rundir}/creq\n"
                        "defpolicy = allow\n"
                        "deny = 127.0.0.3\n"
                        f"dns_servers = {dns.server}\n"
                        f"tls_ca_file = {pki.ca}\n")
        d = Zhttpd(["--config", conf, "--workers", "1", "--log-level", "2"], rundir).start()
        try:
            yield d
        finally:
            d.stop()


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_each_client_failure_stage_logs_exactly_one_line(rundir, zctx, client_daemon, pki):  # noqa: F811
    d = client_daemon
    rc = ReqClient(zctx, _D(f"ipc://{rundir}/creq"), "DEALER")
    cases = []
    with TlsOrigin(pki.self_cert, pki.self_key) as bad_tls, RawOrigin(closing_handler) as raw:
        cases = [
            # id, method, uri, condition, stage, reason pattern
            ("dns", "GET", f"http://gone.test:{free_port()}/p?{SECRET}",
             "remote-connection-failed", "dns", r"gone\.test: .+"),
            ("refused", "POST", f"http://127.0.0.1:{closed_port()}/p?{SECRET}",
             "remote-connection-failed", "connect", r".*errno 111: Connection refused.*"),
            ("policy", "GET", f"http://127.0.0.3:{free_port()}/p?{SECRET}",
             "policy-violation", "connect", r"policy: .*127\.0\.0\.3.*"),
            ("tls", "GET", bad_tls.url(f"/p?{SECRET}"), "tls-error", "tls",
             r"[^(]*(certificate|verify)[^(]*"),
            ("nothing", "GET", f"http://127.0.0.1:{raw.port}/p?{SECRET}",
             "remote-connection-failed", "response", r"Empty reply from server"),
        ]
        for cid, method, uri, cond, stage, why in cases:
            rep = rc.call({"id": cid, "method": method, "uri": uri})
            assert rep["type"] == b"error" and rep["condition"] == cond.encode(), (cid, rep)
    rc.close()
    log = d.log()
    assert SECRET not in log, log
    for cid, method, uri, cond, stage, why in cases:
        host = re.match(r"\w+://([^/]+)", uri).group(1)
        lines = [ln for ln in log.splitlines() if f"/{cid} " in ln or f"/{cid}:" in ln]
        assert len(lines) == 1, (cid, lines)
        m = re.search(r"\[INFO\] \[w0\] session /%s failed: role=client method=%s host=%s "
                      r"condition=%s stage=%s reason=\"(%s)\"$"
                      % (cid, method, re.escape(host), cond, stage, why), lines[0])
        assert m, (cid, lines[0])


def test_each_server_failure_stage_logs_exactly_one_line(rundir, zctx, tmp_path):
    from srvkit import HttpConn, StreamHandler, get
    from test_15_server_listeners import make_identity
    import ssl
    import time
    ids = tmp_path / "ids"
    ids.mkdir()
    make_identity(ids, "one.test", "one.test")
    port, tls_port, lone = free_port(), free_port(), free_port()
    d = Zhttpd(["--workers", "1", "--log-level", "2", "--handler-wait", "0.3",
                "--listen", f"127.0.0.1:{port}", "--listen", f"127.0.0.1:{tls_port},tls",
                "--zclient-stream", f"ipc://{rundir}/hs", "--tls-identities-dir", ids,
                "--listen", f"127.0.0.1:{lone},req", "--zclient-req", f"ipc://{rundir}/nobody"],
               rundir).start()
    h = StreamHandler(zctx, f"ipc://{rundir}/hs")
    try:
        # request: a malformed request line
        c = HttpConn(port)
        c.send(b"GET /p?%s HTTP/1.1 extra\r\nHost: a.test\r\n\r\n" % SECRET.encode())
        assert c.read_response().status == 400
        c.close()
        # handler: nobody on the req-mode handler socket -> 503 after --handler-wait
        c = HttpConn(lone)
        c.send(get(f"/p?{SECRET}", host="b.test"))
        assert c.read_response().status == 503
        c.close()
        # response: the client leaves while the handler holds the request
        c = HttpConn(port)
        c.send(get(f"/p?{SECRET}", host="c.test"))
        r = h.recv_request()
        h.ack(r["id"])
        time.sleep(0.3)
        c.close()
        assert h.wait_router(lambda p: p.get("type") == b"cancel")[0]
        # tls: an SNI name with no identity and no default-cert
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw, server_hostname="nobody.test")
        raw.close()
        d.wait_log(r"stage=tls")
        time.sleep(0.3)
    finally:
        h.close()
        d.stop()
    log = d.log()
    assert SECRET not in log, log
    fails = [ln for ln in log.splitlines() if " failed: role=server " in ln]
    want = [
        r"session - failed: role=server method=- host=- status=400 stage=request reason=\".+\"",
        r"session 0-\d+-\w+ failed: role=server method=GET host=b\.test status=503 "
        r"stage=handler reason=\"no handler available\"",
        r"session 0-\d+-\w+ failed: role=server method=GET host=c\.test status=- "
        r"stage=response reason=\".+\"",
        r"session - failed: role=server method=- host=- status=- stage=tls "
        r"reason=\".*nobody\.test.*\"",
    ]
    assert len(fails) == len(want), fails
    for pat, line in zip(want, fails):
        assert re.search(pat, line), (pat, line)
    # nothing else at info or above about these four
    other = [ln for ln in log.splitlines() if re.search(r"\[(INFO|WARN)\] \[w0\]", ln) and
             " failed: " not in ln]
    assert other == [], other
