"""Condure's flags in both forms (Pushpin passes only --flag=value), with their effect visible to a
handler; and a handler that restarts with the same ROUTER identity keeps its sessions working
(ZMQ_ROUTER_HANDOVER)."""
import threading

import pytest
import zmq

from conftest import free_port
from handlers import StreamHandler
from rawhttp import RawClient
from zhttpd import Zhttpd


def condure_flags(rundir, port, form):
    base = f"ipc://{rundir}/zh"
    ids = rundir / "ids"
    ids.mkdir(exist_ok=True)
    flags = [("--id", "zh-flags"), ("--workers", "2"), ("--listen", f"127.0.0.1:{port}"),
             ("--listen", f"{free_port()},req"), ("--zclient-stream", base),
             ("--zclient-req", f"{base}-req"), ("--stream-maxconn", "50"), ("--req-maxconn", "5"),
             ("--buffer-size", "12345"), ("--body-buffer-size", "50000"), ("--messages-max", "10"),
             ("--req-timeout", "7"), ("--stream-timeout", "60"), ("--ipc-file-mode", "660"),
             ("--tls-identities-dir", str(ids)), ("--log-level", "3"), ("--handler-wait", "2"),
             ("--max-header-size", "20000"), ("--shutdown-timeout", "0")]
    args = []
    for k, v in flags:
        args += [f"{k}={v}"] if form == "equals" else [k, v]
    return args + ["--compression"], base


@pytest.mark.parametrize("form", ["equals", "space"])
def test_condure_flags_in_both_forms_take_effect(rundir, form):
    port = free_port()
    args, base = condure_flags(rundir, port, form)
    d = Zhttpd(args, rundir).start()
    ctx = zmq.Context()
    try:
        log = d.wait_log(r"ready: id zh-flags, 2 worker\(s\)")
        assert "server role on" in log
        import os
        import stat
        mode = stat.S_IMODE(os.stat(f"{rundir}/zh-out").st_mode)
        assert mode == 0o660, oct(mode)
        h = StreamHandler(ctx, base, ident=b"hf")
        c = RawClient(port)
        c.send(b"GET /flags HTTP/1.1\r\nHost: a\r\n\r\n")
        req = h.recv_request()
        assert req["from"] == b"zh-flags"
        assert req["credits"] == 12345
        h.respond(req, body=b"ok")
        r = c.read_response()
        assert r.status == 200 and r.body == b"ok"
        # --max-header-size=20000: a 25000-byte head is refused with 431
        c2 = RawClient(port)
        c2.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 25000 + b"\r\n\r\n")
        assert c2.read_response().status == 431
        c.close()
        c2.close()
        h.close()
    finally:
        d.stop()
        ctx.destroy(linger=0)


def test_zclient_connect_connects_instead_of_binding(rundir):
    port = free_port()
    ctx = zmq.Context()
    # the handler binds, zhttpd connects
    pull = ctx.socket(zmq.PULL)
    pull.bind(f"ipc://{rundir}/h-out")
    pub = ctx.socket(zmq.PUB)
    pub.bind(f"ipc://{rundir}/h-in")
    router = ctx.socket(zmq.ROUTER)
    router.bind(f"ipc://{rundir}/h-out-stream")
    d = Zhttpd([f"--listen={port}", f"--zclient-stream=ipc://{rundir}/h", "--zclient-connect",
                "--workers=1"], rundir).start()
    try:
        log = d.log()
        assert f"connected ipc://{rundir}/h-out" in log, log
        import time
        time.sleep(0.3)
        c = RawClient(port)
        c.send(b"GET /c HTTP/1.1\r\nHost: a\r\n\r\n")
        assert pull.poll(5000)
        import tnetstring_py as tns
        req = tns.loads(pull.recv()[1:])
        pub.send(b"zhttpd T" + tns.dumps({"from": "hb", "id": req["id"], "seq": 0, "code": 200,
                                          "reason": "OK", "body": b"via connect"}))
        r = c.read_response()
        assert r.status == 200 and r.body == b"via connect"
        c.close()
    finally:
        d.stop()
        ctx.destroy(linger=0)


def test_handler_restart_with_same_identity_keeps_session(rundir):
    port = free_port()
    base = f"ipc://{rundir}/zh"
    d = Zhttpd(["--workers", "1", "--listen", f"127.0.0.1:{port}", "--zclient-stream", base,
                "--buffer-size", "4096"], rundir).start()
    ctx = zmq.Context()
    try:
        h1 = StreamHandler(ctx, base, ident=b"h1")
        c = RawClient(port)
        c.send(b"GET /long HTTP/1.1\r\nHost: a\r\n\r\n")
        req = h1.recv_request()
        h1.respond(req, body=b"part1-", more=True)
        credit = h1.recv_stream()
        assert credit["type"] == b"credit", credit
        # the handler process restarts: new sockets, same identity, same session state
        seq, rseq = dict(h1.seq), dict(h1.rseq)
        h1.close()
        h2 = StreamHandler(ctx, base, ident=b"h1")
        h2.seq, h2.rseq = seq, rseq
        h2.body(req, b"part2-", more=True)
        credit2 = h2.recv_stream()
        assert credit2["type"] == b"credit" and credit2["id"] == req["id"], credit2
        h2.body(req, b"end")
        r = c.read_response()
        assert r.status == 200 and r.body == b"part1-part2-end", r
        c.close()
        h2.close()
    finally:
        d.stop()
        ctx.destroy(linger=0)
