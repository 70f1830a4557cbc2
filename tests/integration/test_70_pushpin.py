"""Pushpin 1.36 (Debian's `pushpin`) as a real user of zhttpd, end to end.

Pushpin's runner starts `condure` (inbound HTTP) and, with `zurl` in `services`, `zurl` (outbound
HTTP: every proxied request and every Grip next-link fetch goes through it). This test writes its
own pushpin.conf (loopback ports, a private run dir, the handler's ZeroMQ ports on ipc, the HTTP
publish port on a free loopback port), points `condure_bin`/`zurl_bin` at wrappers that exec the
binary under test with the arguments Pushpin gives, and runs every flow twice:

  zhttpd         both wrappers exec $ZH_BUILD_DIR/zhttpd (condure's flags, zurl's --config file)
  condure+zurl   the wrappers exec Debian's /usr/bin/condure and /usr/bin/zurl, so every assertion
                 is checked against Pushpin's real peers and not against our assumptions

What Pushpin 1.36 passes (seen with its runner, `pushpin --verbose`):
  condure --log-level=2 --listen=ADDR:PORT,stream
          --listen=ADDR:PORT,stream,tls,default-cert=default_PORT     (each of https_ports)
          --listen=PATH,local,stream                                  (each of local_ports)
          --zclient-stream=ipc://RUNDIR/pushpin-condure --buffer-size=8192 --stream-maxconn=N
          --tls-identities-dir=CONFIGDIR/runner/certs                 (with https_ports)
  zurl    --config=RUNDIR/zurl.conf --loglevel=2      (zurl.conf generated from the runner's
          template: ipc in_spec/in_stream_spec/out_spec in RUNDIR, empty instance_id,
          deny=127.*,10.*,... — Pushpin sets ignore-policies on its requests)
Debian's internal.conf points pushpin-proxy at /var/run/zurl/*, a system zurl; the test's
pushpin.conf sets zurl_out_specs/zurl_out_stream_specs/zurl_in_specs back to the runner's
RUNDIR/pushpin-zurl-* so the zurl Pushpin starts is the one it talks to.

The WebSocket flows (a WebSocket proxied to a WebSocket origin: inbound through the server role and
outbound through the client role's ws client; WebSocket-over-HTTP with a publish) pass against both
condure+zurl and zhttpd.
Pushpin is started once per module per parameter; every wait is bounded; only 127.0.0.1 is used."""
import asyncio
import hashlib
import http.client
import json
import os
import pathlib
import signal
import socket
import ssl
import subprocess
import time

import pytest
import zmq
from aiohttp import web

import tnetstring_py as tns
from conftest import build_dir, free_port
from streamorigin import AioOrigin
from zhttpd import SANITIZER_MARKERS, Zhttpd

BIG_PIECE = 64 * 1024
BIG_PIECES = 64  # 4 MiB


def big_pattern():
    return b"".join(bytes([(i * 7 + j) % 251 for j in range(256)]) * (BIG_PIECE // 256)
                    for i in range(BIG_PIECES))


# ---------------------------------------------------------------------------------------------
# The origin Pushpin proxies to (aiohttp on 127.0.0.1, in a thread).

SEEN = []  # (method, path, headers, body) of the origin's requests, in order


def setup_origin(app):
    seen = SEEN

    async def hello(req):
        body = await req.read()
        seen.append((req.method, req.path, dict(req.headers), body))
        out = f"hello {req.method} {len(body)} {hashlib.sha256(body).hexdigest()[:16]}\n"
        return web.Response(text=out, headers={"X-Origin": "yes"})

    async def big(req):
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(req)
        data = big_pattern()
        for i in range(0, len(data), BIG_PIECE):
            await resp.write(data[i:i + BIG_PIECE])
        await resp.write_eof()
        return resp

    async def grip_stream(req):
        chan = req.match_info["chan"]
        return web.Response(text="stream open\n", headers={
            "Grip-Hold": "stream", "Grip-Channel": chan, "Content-Type": "text/plain"})

    async def grip_hold(req):
        chan = req.match_info["chan"]
        seen.append(("GET", req.path, dict(req.headers), b""))
        return web.Response(text="timed out\n", headers={
            "Grip-Hold": "response", "Grip-Channel": chan, "Grip-Timeout": "20",
            "Content-Type": "text/plain"})

    async def paged(req):
        n = int(req.match_info["n"])
        seen.append(("GET", req.path, dict(req.headers), b""))
        headers = {"Content-Type": "text/plain"}
        if n < 3:
            headers["Grip-Link"] = f"</paged/{n + 1}>; rel=next"
        return web.Response(text=f"page {n}\n", headers=headers)

    async def ws_echo(req):
        ws = web.WebSocketResponse()
        await ws.prepare(req)
        async for msg in ws:
            if msg.type == 1:  # TEXT
                await ws.send_str("echo: " + msg.data)
        return ws

    async def ws_over_http(req):
        # WebSocket-over-HTTP: events in, events out. Subscribe the connection to a channel
        # on OPEN; answer TEXT with an echo.
        body = await req.read()
        seen.append(("POST", req.path, dict(req.headers), body))
        out = b""
        if body.startswith(b"OPEN\r\n"):
            sub = b'c:{"type": "subscribe", "channel": "wsoh"}'
            out = b"OPEN\r\n" + b"TEXT %x\r\n%s\r\n" % (len(sub), sub)
        rest = body[6:] if body.startswith(b"OPEN\r\n") else body
        while rest.startswith(b"TEXT "):
            head, rest = rest.split(b"\r\n", 1)
            n = int(head[5:], 16)
            msg, rest = rest[:n], rest[n + 2:]
            reply = b"m:echo: " + msg  # with the grip extension, "m:" marks a message
            out += b"TEXT %x\r\n%s\r\n" % (len(reply), reply)
        return web.Response(body=out, headers={
            "Content-Type": "application/websocket-events",
            "Sec-WebSocket-Extensions": "grip"})

    app.router.add_route("*", "/hello", hello)
    app.router.add_get("/big", big)
    app.router.add_get("/grip/stream/{chan}", grip_stream)
    app.router.add_get("/grip/hold/{chan}", grip_hold)
    app.router.add_get("/paged/{n}", paged)
    app.router.add_get("/ws/echo", ws_echo)
    app.router.add_post("/wsoh", ws_over_http)


# ---------------------------------------------------------------------------------------------
# Pushpin with its condure/zurl replaced (or not).

KINDS = {
    "zhttpd": None,  # filled from build_dir() at start
    "condure+zurl": ("/usr/bin/condure", "/usr/bin/zurl"),
}


class Pushpin:
    def __init__(self, kind, base: pathlib.Path, origin_port: int):
        self.kind = kind
        self.base = base
        self.rundir = base / "run"
        self.rundir.mkdir()
        (base / "log").mkdir()
        (base / "bin").mkdir()
        self.http_port = free_port()
        self.https_port = free_port()
        self.local_sock = self.rundir / "local.sock"
        self.pub_port = free_port()
        self.dead_port = free_port()  # nothing listens there: origin down
        self.log_path = base / "pushpin.log"
        if kind == "zhttpd":
            zh = str(build_dir() / "zhttpd")
            targets = {"condure": zh, "zurl": zh}
        else:
            targets = dict(zip(("condure", "zurl"), KINDS[kind]))
        self.argv_log = base / "argv.log"
        for name, target in targets.items():
            w = base / "bin" / name
            w.write_text(f'#!/bin/sh\necho "{name} $*" >> "{self.argv_log}"\nexec "{target}" "$@"\n')
            w.chmod(0o755)
        (base / "routes").write_text(
            f"*,path_beg=/down/ 127.0.0.1:{self.dead_port}\n"
            f"*,path_beg=/wsoh 127.0.0.1:{origin_port},over_http\n"
            f"* 127.0.0.1:{origin_port}\n")
        r = self.rundir
        (base / "pushpin.conf").write_text(f"""[global]
include={{libdir}}/internal.conf
rundir={r}
ipc_prefix=pushpin-
port_offset=0
stats_connection_ttl=120

[runner]
services=condure,zurl,pushpin-proxy,pushpin-handler
http_port=127.0.0.1:{self.http_port}
https_ports=127.0.0.1:{self.https_port}
local_ports={self.local_sock}
logdir={base}/log
log_level=2
client_buffer_size=8192
client_maxconn=200
condure_bin={base}/bin/condure
zurl_bin={base}/bin/zurl

[proxy]
routesfile={base}/routes
zurl_out_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-in
zurl_out_stream_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-in-stream
zurl_in_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-out
sig_iss=pushpin
sig_key=changeme
updates_check=off

[handler]
push_in_spec=ipc://{r}/push-in
push_in_sub_specs=ipc://{r}/push-in-sub
push_in_sub_connect=false
push_in_http_addr=127.0.0.1
push_in_http_port={self.pub_port}
stats_spec=ipc://{r}/stats
command_spec=ipc://{r}/command
message_rate=2500
message_hwm=25000
message_wait=5000
id_cache_ttl=60
connection_subscription_max=20
subscription_linger=60
stats_subscription_ttl=60
stats_report_interval=10
stats_format=tnetstring
""")
        # the runner's certs dir ({configdir}/runner/certs): condure's --tls-identities-dir, with
        # the default-cert=default_<port> the runner names for each https port
        certs = base / "runner" / "certs"
        certs.mkdir(parents=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                        "/CN=localhost", "-keyout", str(certs / f"default_{self.https_port}.key"),
                        "-out", str(certs / f"default_{self.https_port}.crt")],
                       check=True, capture_output=True, timeout=30)
        self.proc = None

    def start(self, timeout=20.0):
        self._log = open(self.log_path, "wb")
        env = dict(os.environ)
        self.proc = subprocess.Popen(
            ["pushpin", "--config", str(self.base / "pushpin.conf"), "--merge-output"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=self.base, env=env,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"pushpin exited:\n{self.log()}"
            if "[handler] started" in self.log() and self._port_open(self.http_port) \
                    and self._port_open(self.pub_port) and self._proxies():
                break
            assert time.monotonic() < deadline, f"pushpin did not start:\n{self.log()}"
            time.sleep(0.05)

    def _proxies(self):
        """True once a GET goes all the way through, and a Grip one through pushpin-handler too:
        Pushpin's processes connect their ZeroMQ sockets to condure/zurl and to each other as
        those bind, and a request that comes before is closed unanswered (or, for Grip, 500)."""
        return pushpin_ready(self.http_port)

    @staticmethod
    def _port_open(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout=15.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only what we started
                self.proc.wait()
                raise AssertionError(f"pushpin did not stop:\n{self.log()}")
        self._log.close()
        return self.log()

    def publish(self, items):
        c = http.client.HTTPConnection("127.0.0.1", self.pub_port, timeout=10)
        c.request("POST", "/publish/", body=json.dumps({"items": items}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        body = r.read()
        c.close()
        assert r.status == 200, (r.status, body)

    def conn(self, timeout=15):
        return http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)


def pushpin_ready(port):
    """A plain GET and a Grip next-link GET (proxy -> handler -> zurl) through Pushpin on port
    both answer as they should."""
    try:
        for path, want in (("/hello", b"hello GET 0 e3b0c44298fc1c14\n"),
                           ("/paged/2", b"page 2\npage 3\n")):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            r = c.getresponse()
            ok = (r.status, r.read()) == (200, want)
            c.close()
            if not ok:
                return False
        return True
    except (OSError, http.client.HTTPException):
        return False


@pytest.fixture(scope="module")
def origin():
    with AioOrigin(setup_origin) as o:
        yield o


@pytest.fixture(scope="module", params=list(KINDS))
def pushpin(request, origin, tmp_path_factory):
    kind = request.param
    base = tmp_path_factory.mktemp("pp-" + kind.replace("+", "-"))
    p = Pushpin(kind, base, origin.port)
    try:
        p.start()
    except BaseException:
        if p.proc is not None:
            p.stop()  # ends the pushpin we started (and its children), then reports the failure
        raise
    yield p
    text = p.stop()
    for marker in SANITIZER_MARKERS:
        assert marker not in text, f"sanitizer report:\n{text}"
    argv = p.argv_log.read_text()
    if kind == "zhttpd":
        # both zhttpd processes (server role as condure, client role as zurl) stopped cleanly
        assert text.count("[main] stopped") == 2, text
        # Pushpin's proxy answers each zurl session's first packet with a keep-alive that often
        # arrives after a small response ended the session: routine, no line per request at
        # Pushpin's log level 2 (the cancel is still sent)
        assert "answering cancel" not in text, text
    # Pushpin's runner arguments, as this module's docstring documents them
    assert (f"condure --log-level=2 --listen=127.0.0.1:{p.http_port},stream "
            f"--listen=127.0.0.1:{p.https_port},stream,tls,default-cert=default_{p.https_port} "
            f"--listen={p.local_sock},local,stream --zclient-stream=ipc://") in argv, argv
    assert f"--tls-identities-dir={p.base}/runner/certs" in argv, argv
    assert f"zurl --config={p.rundir}/zurl.conf --loglevel=2" in argv, argv


# ---------------------------------------------------------------------------------------------
# HTTP flows

def test_get_post_head(pushpin, origin):
    c = pushpin.conn()
    c.request("GET", "/hello")
    r = c.getresponse()
    assert (r.status, r.read(), r.getheader("X-Origin")) == \
        (200, b"hello GET 0 e3b0c44298fc1c14\n", "yes")
    payload = b"form=1&" + b"x" * 100000
    c.request("POST", "/hello", body=payload, headers={"Content-Type": "text/plain"})
    r = c.getresponse()
    assert (r.status, r.read()) == \
        (200, b"hello POST 100007 %s\n" % hashlib.sha256(payload).hexdigest()[:16].encode())
    c.request("HEAD", "/hello")
    r = c.getresponse()
    assert r.status == 200 and r.read() == b""
    # HEAD carries the GET's length without a body
    assert r.getheader("Content-Length") == str(len("hello HEAD 0 e3b0c44298fc1c14\n"))
    c.close()
    methods = [(m, p, b) for m, p, _, b in SEEN if p == "/hello"][-3:]
    assert [m for m, _, _ in methods] == ["GET", "POST", "HEAD"]
    assert methods[1][2] == payload


def test_https_and_local_ports(pushpin):
    """Pushpin's https_ports (a tls listener with the runner's certs dir) and local_ports (a unix
    socket listener) reach the same origin."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = http.client.HTTPSConnection("127.0.0.1", pushpin.https_port, timeout=15, context=ctx)
    c.request("GET", "/hello")
    r = c.getresponse()
    assert (r.status, r.read()) == (200, b"hello GET 0 e3b0c44298fc1c14\n")
    c.close()
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.settimeout(15)
    u.connect(str(pushpin.local_sock))
    u.sendall(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = u.recv(65536)
        if not chunk:
            break
        data += chunk
    u.close()
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"hello GET 0 e3b0c44298fc1c14\n"), data


def test_keep_alive(pushpin):
    s = socket.create_connection(("127.0.0.1", pushpin.http_port), timeout=10)
    f = s.makefile("rb")
    for i in range(3):
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status = f.readline()
        assert status.startswith(b"HTTP/1.1 200"), status
        length = None
        while True:
            line = f.readline()
            assert line, "connection closed"
            if line == b"\r\n":
                break
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
            assert not (k.strip().lower() == b"connection" and b"close" in v.lower())
        assert f.read(length) == b"hello GET 0 e3b0c44298fc1c14\n"
    s.close()


def test_large_streamed_response(pushpin):
    c = pushpin.conn(timeout=30)
    c.request("GET", "/big")
    r = c.getresponse()
    assert r.status == 200
    data = r.read()
    assert len(data) == BIG_PIECE * BIG_PIECES
    assert hashlib.sha256(data).digest() == hashlib.sha256(big_pattern()).digest()
    c.close()


def test_origin_down_502(pushpin):
    c = pushpin.conn()
    c.request("GET", "/down/x")
    r = c.getresponse()
    body = r.read()
    assert r.status == 502, (r.status, body)
    c.close()


def test_grip_stream_publish(pushpin):
    chan = f"s-{pushpin.kind}"
    s = socket.create_connection(("127.0.0.1", pushpin.http_port), timeout=10)
    s.sendall(f"GET /grip/stream/{chan} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    buf = b""
    while b"stream open\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
    head = buf.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 200") and b"grip-hold" not in head.lower(), head
    for i in range(3):
        pushpin.publish([{"channel": chan, "formats": {"http-stream": {"content": f"msg {i}\n"}}}])
        while f"msg {i}\n".encode() not in buf:
            chunk = s.recv(65536)
            assert chunk, buf
            buf += chunk
    pushpin.publish([{"channel": chan, "formats": {"http-stream": {"action": "close"}}}])
    while not buf.endswith(b"\r\n0\r\n\r\n"):  # the close ends the chunked body
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
    assert buf.endswith(b"0\r\n\r\n"), buf
    s.close()


def test_grip_response_hold_publish(pushpin):
    chan = f"h-{pushpin.kind}"
    c = pushpin.conn()
    n = len(SEEN)
    c.request("GET", f"/grip/hold/{chan}")
    deadline = time.monotonic() + 10
    while not any(p == f"/grip/hold/{chan}" for _, p, _, _ in SEEN[n:]):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.3)  # the origin answered; Pushpin's handler subscribes the held request
    pushpin.publish([{"channel": chan, "formats": {"http-response": {
        "code": 201, "reason": "Created", "headers": {"X-Pub": "1"}, "body": "published\n"}}}])
    r = c.getresponse()
    assert (r.status, r.getheader("X-Pub"), r.read()) == (201, "1", b"published\n")
    c.close()


def test_grip_link_next(pushpin, origin):
    """A Grip-Link rel=next: Pushpin's handler fetches each next page itself, through zurl (the
    client role), and appends it to the client's response."""
    n = len(SEEN)
    c = pushpin.conn()
    c.request("GET", "/paged/1")
    r = c.getresponse()
    assert (r.status, r.read()) == (200, b"page 1\npage 2\npage 3\n")
    c.close()
    fetched = [(p, h) for _, p, h, _ in SEEN[n:] if p.startswith("/paged/")]
    assert [p for p, _ in fetched] == ["/paged/1", "/paged/2", "/paged/3"]
    # the next links are Pushpin's own requests (signed by it), not the client's
    assert all("Grip-Sig" in h for _, h in fetched[1:]), fetched


# ---------------------------------------------------------------------------------------------
# WebSocket flows (issue 15 for zhttpd)

def _run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def test_websocket_proxied(pushpin):
    import websockets

    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{pushpin.http_port}/ws/echo",
                                      open_timeout=10, close_timeout=5) as ws:
            await ws.send("hi")
            return await asyncio.wait_for(ws.recv(), 10)

    assert _run(go()) == "echo: hi"


def test_websocket_over_http_publish(request, pushpin):
    """Inbound WebSocket through zhttpd's server role, WebSocket-over-HTTP to the origin."""
    import websockets

    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{pushpin.http_port}/wsoh",
                                      open_timeout=10, close_timeout=5) as ws:
            await ws.send("hi")
            first = await asyncio.wait_for(ws.recv(), 10)
            await asyncio.sleep(0.3)
            pushpin.publish([{"channel": "wsoh", "formats": {"ws-message": {"content": "pub!"}}}])
            second = await asyncio.wait_for(ws.recv(), 10)
            return first, second

    assert _run(go()) == ("echo: hi", "pub!")


# ---------------------------------------------------------------------------------------------
# Found with Pushpin: its runner starts condure and pushpin-proxy at the same time, so the proxy's
# sockets connect before the server has bound them and each reconnects on its own timer (ZeroMQ:
# 100-200 ms). A request in that window can get the proxy's PUB reply (credits) before the proxy's
# ROUTER is connected; condure keeps the later body packets until it is, zhttpd dropped them
# ("peer unreachable, message dropped") and the POST hung until Pushpin gave up (502).

@pytest.mark.parametrize("kind", ["zhttpd", "condure"])
def test_body_waits_for_a_handler_router_that_connects_late(kind, rundir, zctx):
    port = free_port()
    base = f"ipc://{rundir}/late"
    args = ["--id", "srv", "--listen", f"127.0.0.1:{port}", "--zclient-stream", base]
    if kind == "zhttpd":
        d = Zhttpd(args, rundir).start()
    else:
        d = Zhttpd(args, rundir, binary="/usr/bin/condure").start(ready=None)
    pull = zctx.socket(zmq.PULL)
    pub = zctx.socket(zmq.PUB)
    router = zctx.socket(zmq.ROUTER)
    for s in (pull, pub, router):
        s.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.ROUTING_ID, b"late-handler")
    c = None
    try:
        deadline = time.monotonic() + 10
        while c is None:
            try:
                c = socket.create_connection(("127.0.0.1", port), timeout=10)
            except OSError:
                assert time.monotonic() < deadline, d.log()
                time.sleep(0.05)
        pull.connect(base + "-out")
        pub.connect(base + "-in")
        time.sleep(0.3)  # the server's SUB subscription reaches our PUB
        body = bytes(range(256)) * 400  # 102400 bytes: more than the first packet's credits
        c.sendall(b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert pull.poll(10000), d.log()
        req = tns.loads(pull.recv()[1:])
        got = req.get("body", b"")
        assert req.get("more") and len(got) < len(body), req
        pub.send(b"srv T" + tns.dumps({"from": b"late-handler", "id": req["id"], "seq": 0,
                                       "type": "credit", "credits": 200000}))
        time.sleep(0.5)  # the body the server sends now finds no ROUTER peer yet
        router.connect(base + "-out-stream")
        seq = 1
        deadline = time.monotonic() + 10
        while len(got) < len(body):
            assert router.poll(max(1, int((deadline - time.monotonic()) * 1000))), \
                f"{len(got)} of {len(body)} body bytes reached the handler:\n{d.log()}"
            pkt = tns.loads(router.recv_multipart()[-1][1:])
            if pkt.get("type") is not None:
                continue
            assert pkt["seq"] == seq, pkt
            seq += 1
            got += pkt.get("body", b"")
        assert got == body
        pub.send(b"srv T" + tns.dumps({"from": b"late-handler", "id": req["id"], "seq": 1,
                                       "code": 200, "reason": "OK", "headers": [],
                                       "body": b"got it"}))
        c.settimeout(10)
        resp = b""
        while not resp.endswith(b"got it"):
            chunk = c.recv(4096)
            assert chunk, resp
            resp += chunk
        assert resp.startswith(b"HTTP/1.1 200"), resp
    finally:
        if c is not None:
            c.close()
        for s in (pull, pub, router):
            s.close()
        d.stop(expect_rc=0 if kind == "zhttpd" else None)
