"""SIGHUP reloads the configuration live (issue 17 item 2): a new certificate and a new deny rule
under live keep-alive connections and sessions in flight (none drops; new handshakes get the new
certificate; new requests meet the new rule), a broken config is refused and the old one stays,
settings that cannot change live are named, and systemd hears RELOADING=1 then READY=1."""
import os
import signal
import socket
import subprocess

import pytest

from conftest import REPO, free_port
from origins import AppOrigin, HELLO
from srvkit import HttpConn, StreamHandler, get
from test_15_server_listeners import make_identity, tls_get
from zhttpd import Zhttpd
from zrequester import ReqClient


class _D:  # what ReqClient needs of a daemon
    def __init__(self, req_ep):
        self.req_ep = req_ep


def conf_text(rundir, port, ids, extra_general="", extra_server=""):
    return ("[General]\n"
            f"in_req_spec = ipc://{rundir}/creq\n"
            "defpolicy = allow\n"
            f"{extra_general}"
            "[server]\n"
            f"listen = 127.0.0.1:{port},tls,default-cert=one.test\n"
            f"zclient_stream = ipc://{rundir}/hs\n"
            f"tls_identities_dir = {ids}\n"
            f"{extra_server}")


def notify_socket(rundir):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(rundir / "notify"))
    s.settimeout(15)
    return s


def hup_and_wait(d, ns):
    d.proc.send_signal(signal.SIGHUP)
    first = ns.recv(4096).decode()
    second = ns.recv(4096).decode()
    assert first.split("\n")[0] == "RELOADING=1", first
    assert first.split("\n")[1].startswith("MONOTONIC_USEC="), first
    assert second.split("\n")[0] == "READY=1", second


@pytest.fixture
def ids(tmp_path):
    d = tmp_path / "ids"
    d.mkdir()
    make_identity(d, "one.test", "old.one.test")
    return d


def test_sighup_swaps_certificate_and_policy_without_dropping_anything(rundir, zctx, ids):
    port = free_port()
    conf = rundir / "z.conf"
    conf.write_text(conf_text(rundir, port, ids))
    ns = notify_socket(rundir)
    d = Zhttpd(["--config", conf, "--workers", "2", "--shutdown-timeout", "0"], rundir,
               env={"NOTIFY_SOCKET": str(rundir / "notify")}).start()
    h = StreamHandler(zctx, f"ipc://{rundir}/hs")
    rc = ReqClient(zctx, _D(f"ipc://{rundir}/creq"), "DEALER")
    try:
        assert ns.recv(4096).decode().startswith("READY=1")
        with AppOrigin() as o1, AppOrigin(host="127.0.0.2") as o2:
            # before: 127.0.0.2 is allowed
            assert rc.call({"id": "c0", "method": "GET", "uri": o2.url("/hello")})["body"] == HELLO
            # a keep-alive TLS connection that served one request
            subj, ka = tls_get(port, "one.test", "/ka1")
            assert "CN = old.one.test" in subj
            r = h.recv_request()
            h.respond(r["id"], body=b"ka1\n")
            assert ka.read_response().body == b"ka1\n"
            # a server-role session in flight: the handler holds the request
            subj, inflight = tls_get(port, "one.test", "/held")
            held = h.recv_request()
            # a client-role request in flight: the origin takes 1.5 s
            rc.send({"id": "slow", "method": "GET", "uri": o1.url("/slow/1500")})

            make_identity(ids, "one.test", "new.one.test")
            conf.write_text(conf_text(rundir, port, ids, extra_general="deny = 127.0.0.2\n"
                                      "log_level = 3\n",
                                      extra_server="stream_maxconn = 500\n"))
            hup_and_wait(d, ns)
            log = d.wait_log(r"reloaded: log level 3")
            assert "[server] stream_maxconn cannot change while running" in log, log

            # nothing dropped: the held session, the slow request, the keep-alive connection
            h.respond(held["id"], body=b"held\n")
            assert inflight.read_response().body == b"held\n"
            rep = rc.recv(10)
            assert rep["id"] == b"slow" and rep["code"] == 200, rep
            ka.send(get("/ka2", host="one.test"))
            r = h.recv_request()
            h.respond(r["id"], body=b"ka2\n")
            assert ka.read_response().body == b"ka2\n"
            ka.close()
            inflight.close()
            # a new handshake gets the new certificate
            subj, c = tls_get(port, "one.test", "/new")
            assert "CN = new.one.test" in subj, subj
            r = h.recv_request()
            h.respond(r["id"], body=b"new\n")
            assert c.read_response().body == b"new\n"
            c.close()
            # new requests meet the new rule; others still pass
            rep = rc.call({"id": "c1", "method": "GET", "uri": o2.url("/hello")})
            assert rep["type"] == b"error" and rep["condition"] == b"policy-violation", rep
            assert rc.call({"id": "c2", "method": "GET", "uri": o1.url("/hello")})["body"] == HELLO
            assert len(o2.requests) == 1

            # a broken config is refused: the deny rule and the certificate stay
            conf.write_text(conf_text(rundir, port, ids, extra_general="deny = 10.0.0.0/33\n"))
            hup_and_wait(d, ns)
            log = d.wait_log(r"reload refused, keeping the running configuration: .*z\.conf:4: "
                             r"key 'deny': bad value '10\.0\.0\.0/33'")
            rep = rc.call({"id": "c3", "method": "GET", "uri": o2.url("/hello")})
            assert rep["type"] == b"error" and rep["condition"] == b"policy-violation", rep
            subj, c = tls_get(port, "one.test", "/again")
            assert "CN = new.one.test" in subj, subj
            c.close()
            assert len(o2.requests) == 1
            assert d.alive()
    finally:
        rc.close()
        h.close()
        d.stop()


def test_unit_has_execreload_with_sighup():
    unit = (REPO / "packaging" / "zhttpd.service").read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit.splitlines()
