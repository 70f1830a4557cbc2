"""One real request through each role, with --workers 2, plus the clean-shutdown and
single-instance rules of the foundation issue."""
import re
import socket
import subprocess
import time

import pytest
import zmq

import tnetstring_py as tns
from conftest import free_port
from origin import Origin
from zhttpd import Zhttpd, run_once


def hello_route(method, path, headers, body):
    return 200, [("Content-Type", "text/plain"), ("X-Origin", "one"), ("X-Origin", "two")], \
        b"hello from origin\n"


def loopback_conf(rundir):
    """A config that lets the client role reach 127.0.0.1: the default policy denies loopback
    destinations, and these tests' origins all live there."""
    path = rundir / "allow-loopback.conf"
    path.write_text("[General]\nallow = 127.0.0.1\n")
    return path


def req_roundtrip(ctx, endpoint, packet: dict, timeout_ms=5000):
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    s.send(b"T" + tns.dumps(packet))
    assert s.poll(timeout_ms), "no reply from zhttpd"
    reply = s.recv()
    s.close()
    assert reply[:1] == b"T"
    return tns.loads(reply[1:])


def test_client_role_req_get_reaches_origin(rundir, zctx):
    with Origin({"/hello": hello_route}) as origin:
        ep = f"ipc://{rundir}/client-req"
        d = Zhttpd(["--config", loopback_conf(rundir), "--workers", "2", "--log-level", "3", "--zserver-req", ep,
                    "--shutdown-timeout", "0"], rundir).start()
        try:
            rep = req_roundtrip(zctx, ep, {"id": "r1", "method": "GET", "uri": origin.url("/hello"),
                                           "headers": [["X-Test", "yes"]]})
            assert rep["id"] == b"r1"
            assert rep["code"] == 200
            assert rep["reason"] == b"OK"
            assert rep["body"] == b"hello from origin\n"
            names = [h[0].lower() for h in rep["headers"]]
            assert names.count(b"x-origin") == 2, rep["headers"]
            assert [b"Content-Type", b"text/plain"] in rep["headers"]
            # the origin saw the handler's header and a Host built from the uri
            method, path, headers, _ = origin.requests[-1]
            assert (method, path) == ("GET", "/hello")
            assert headers.get("X-Test") == "yes"
            assert headers.get("Host") == f"127.0.0.1:{origin.port}"
            log = d.wait_log(r"worker [01]: req GET http://127\.0\.0\.1:\d+/hello started")
            assert re.search(r"\[w[01]\]", log)
        finally:
            took = d.stop()
        assert took < 2.0


def test_client_role_many_ids_spread_over_both_workers(rundir, zctx):
    with Origin({"/hello": hello_route}) as origin:
        ep = f"ipc://{rundir}/client-req"
        d = Zhttpd(["--config", loopback_conf(rundir), "--workers", "2", "--log-level", "3", "--zserver-req", ep], rundir).start()
        try:
            for i in range(16):
                rep = req_roundtrip(zctx, ep, {"from": "app", "id": f"id-{i}", "method": "GET",
                                               "uri": origin.url("/hello")})
                assert rep["code"] == 200 and rep["id"] == f"id-{i}".encode()
            log = d.log()
            assert "worker 0: req GET" in log and "worker 1: req GET" in log
        finally:
            d.stop()


def test_client_role_connection_refused_is_an_error_reply(rundir, zctx):
    port = free_port()  # nothing listens there
    ep = f"ipc://{rundir}/client-req"
    d = Zhttpd(["--config", loopback_conf(rundir), "--workers", "1", "--zserver-req", ep], rundir).start()
    try:
        rep = req_roundtrip(zctx, ep, {"id": "x", "method": "GET",
                                       "uri": f"http://127.0.0.1:{port}/"})
        assert rep["type"] == b"error"
        assert rep["condition"] == b"remote-connection-failed"
        assert rep["id"] == b"x"
    finally:
        d.stop()


class Handler:
    """A Condure-style stream handler: PULL from <base>-out, PUB to <base>-in."""

    def __init__(self, ctx, base, ident=b"handler1"):
        self.ident = ident
        self.pull = ctx.socket(zmq.PULL)
        self.pull.connect(f"{base}-out")
        self.pub = ctx.socket(zmq.PUB)
        self.pub.connect(f"{base}-in")
        for s in (self.pull, self.pub):
            s.setsockopt(zmq.LINGER, 0)
        time.sleep(0.2)  # let the SUB side see our PUB

    def recv(self, timeout_ms=5000):
        assert self.pull.poll(timeout_ms), "handler got no request"
        m = self.pull.recv()
        assert m[:1] == b"T"
        return tns.loads(m[1:])

    def send(self, to: bytes, packet: dict):
        self.pub.send(to + b" T" + tns.dumps(packet))


def curl(url, *extra, timeout=10):
    p = subprocess.run(["curl", "-sS", "-i", "--max-time", str(timeout), *extra, url],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def test_server_role_stream_get_answered_by_handler(rundir, zctx):
    port = free_port()
    base = f"ipc://{rundir}/zhttpd"
    d = Zhttpd(["--workers", "2", "--log-level", "3", "--listen", f"127.0.0.1:{port}",
                "--zclient-stream", base, "--shutdown-timeout", "0"], rundir).start()
    h = Handler(zctx, base)
    try:
        import threading
        result = {}
        t = threading.Thread(target=lambda: result.update(
            zip(("rc", "out", "err"), curl(f"http://127.0.0.1:{port}/path?q=1",
                                           "-H", "X-Client: c1"))))
        t.start()
        req = h.recv()
        assert req["from"] == b"zhttpd"
        assert req["method"] == b"GET"
        assert req["uri"] == f"http://127.0.0.1:{port}/path?q=1".encode()
        assert req["stream"] is True
        assert req["seq"] == 0
        assert req["credits"] > 0
        assert req["ext"] == {"multi": True}
        assert req["peer-address"] == b"127.0.0.1"
        assert isinstance(req["peer-port"], int)
        assert [b"X-Client", b"c1"] in req["headers"]
        assert re.fullmatch(rb"[01]-\d+-[0-9a-f]+", req["id"])
        h.send(req["from"], {"from": h.ident, "id": req["id"], "seq": 0, "code": 200,
                             "reason": "OK", "headers": [["Content-Type", "text/plain"]],
                             "body": b"hello from handler\n"})
        t.join(15)
        assert result["rc"] == 0, result
        assert result["out"].startswith("HTTP/1.1 200 OK\r\n")
        assert "Content-Type: text/plain" in result["out"]
        assert "Content-Length: 19" in result["out"]
        assert result["out"].endswith("hello from handler\n")
        worker = req["id"].split(b"-")[0].decode()
        d.wait_log(rf"\[w{worker}\].*worker {worker}: GET http://127\.0\.0\.1:{port}/path\?q=1 -> session")
    finally:
        took = d.stop()
    assert took < 2.0


def test_sigterm_with_timeout_zero_cancels_open_sessions(rundir, zctx):
    port = free_port()
    base = f"ipc://{rundir}/zhttpd"
    d = Zhttpd(["--workers", "2", "--listen", f"127.0.0.1:{port}", "--zclient-stream", base,
                "--shutdown-timeout", "0"], rundir).start()
    h = Handler(zctx, base)
    router = zctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.IDENTITY, h.ident)
    router.setsockopt(zmq.LINGER, 0)
    router.connect(f"{base}-out-stream")
    time.sleep(0.2)
    c = socket.create_connection(("127.0.0.1", port))
    try:
        c.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        req = h.recv()
        # tell zhttpd our address, so it can cancel: a keep-alive from the handler
        h.send(b"zhttpd", {"from": h.ident, "id": req["id"], "seq": 0, "type": "keep-alive"})
        time.sleep(0.3)
        took = d.stop()
        assert took < 2.0
        assert router.poll(2000), "handler got no cancel on shutdown"
        frames = router.recv_multipart()
        pkt = tns.loads(frames[-1][1:])
        assert pkt["type"] == b"cancel" and pkt["id"] == req["id"]
    finally:
        c.close()


def test_second_instance_on_same_ipc_path_fails_clearly(rundir):
    ep = f"ipc://{rundir}/shared-req"
    d = Zhttpd(["--workers", "1", "--zserver-req", ep], rundir).start()
    try:
        rc, out = run_once(["--workers", "1", "--zserver-req", ep], rundir)
        assert rc != 0
        assert "in use by another process" in out, out
        assert f"{rundir}/shared-req" in out
        assert d.alive()
    finally:
        d.stop()
