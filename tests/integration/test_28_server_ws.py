"""Inbound WebSocket (server role, issue 15): a Condure-style ZHTTP echo handler behind zhttpd and
behind condure 1.9.1 (the same handler code, one test parametrized by binary), driven by Debian's
python3-websockets 10.4 (asyncio API); and a raw-socket client for malformed frames, each with its
exact close code, on zhttpd.

The echo handler answers an upgrade with a 101 (credits, the first offered subprotocol), echoes
every data packet with its content-type and `more` under the server's credits (splitting a piece
when the credits are smaller), grants back what it received, answers ping with pong, echoes a
close, and rejects /reject with error/rejected and a 403 response."""
import asyncio
import base64
import os
import socket
import struct
import threading
import time

import pytest
import websockets
import zmq

import tnetstring_py as tns
from peers import start_server

KINDS = ("zhttpd", "condure")


class WsEcho(threading.Thread):
    """A Condure-style WebSocket echo handler (PULL -out, ROUTER -out-stream, PUB -in)."""

    def __init__(self, ctx, base, ident=b"ws-echo"):
        super().__init__(daemon=True)
        self.zid = ident
        self.pull = ctx.socket(zmq.PULL)
        self.pull.connect(f"{base}-out")
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTING_ID, ident)
        self.router.connect(f"{base}-out-stream")
        self.pub = ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, 0)  # a PUB drops past its HWM: that would break seq
        self.pub.connect(f"{base}-in")
        for s in (self.pull, self.router, self.pub):
            s.setsockopt(zmq.LINGER, 0)
        self.sess = {}       # id -> {"to", "seq", "credits", "out": [pending packets]}
        self.requests = []   # first packets seen
        self.events = []     # (id, type) of every stream packet seen
        self.max_piece = 0   # largest data body received
        self.over_credits = []  # any packet beyond what we granted
        self.stop_flag = False
        time.sleep(0.3)

    def send(self, rid, **fields):
        s = self.sess[rid]
        p = {"from": self.zid, "id": rid, "seq": s["seq"]}
        s["seq"] += 1
        for k, v in fields.items():
            p[k.replace("_", "-")] = v
        self.pub.send(s["to"] + b" T" + tns.dumps(p))

    def flush(self, rid):
        s = self.sess[rid]
        while s["out"]:
            kind, fields = s["out"][0]
            if kind != "data":
                s["out"].pop(0)
                self.send(rid, **fields)
                continue
            body = fields["body"]
            if len(body) > s["credits"]:
                if s["credits"] == 0:
                    return
                n = s["credits"]
                piece = dict(fields, body=body[:n], more=True)
                fields["body"] = body[n:]
                s["credits"] -= n
                self.send(rid, **piece)
                continue
            s["out"].pop(0)
            s["credits"] -= len(body)
            self.send(rid, **fields)

    def on_request(self, req):
        self.requests.append(req)
        rid = req["id"]
        self.sess[rid] = {"to": req["from"], "seq": 0, "credits": req.get("credits", 0),
                          "out": [], "granted": 65536, "got": 0}
        uri = req["uri"].decode()
        if uri.endswith("/reject"):
            self.send(rid, type="error", condition="rejected", code=403, reason="Forbidden",
                      headers=[[b"Content-Type", b"text/plain"]], body=b"go away\n")
            del self.sess[rid]
            return
        headers = []
        for name, value in req.get("headers", []):
            if name.lower() == b"sec-websocket-protocol":
                headers.append([b"Sec-WebSocket-Protocol", value.split(b",")[0].strip()])
        self.send(rid, code=101, reason="Switching Protocols", headers=headers, credits=65536)
        if uri.endswith("/mute"):  # accept, then never say anything again
            del self.sess[rid]
            return
        s = self.sess[rid]
        if uri.endswith("/push"):  # the handler speaks first: fragments, binary, ping, close
            s["out"] += [("data", {"body": b"frag1 ", "content_type": b"text", "more": True}),
                         ("data", {"body": b"frag2 ", "more": True}),
                         ("data", {"body": "end \u20ac".encode()}),
                         ("data", {"body": b"\x00bin", "content_type": b"binary"}),
                         ("ctl", {"type": "ping", "body": b"hb"}),
                         ("ctl", {"type": "close", "code": 4002, "body": b"server bye"})]
        elif uri.endswith("/flood"):  # 2000 x 8000-byte messages, sent as credits allow
            s["out"] += [("data", {"body": b"m" * 8000, "content_type": b"binary"})
                         for _ in range(2000)]
        elif uri.endswith("/many"):  # 500 x 1000-byte messages, sent as credits allow
            s["out"] += [("data", {"body": b"m" * 1000, "content_type": b"binary"})
                         for _ in range(500)]
        elif uri.endswith("/bad"):  # packets zhttpd must refuse, each followed by a good one
            s["out"] += [("data", {"body": b"\xff\xfe", "content_type": b"text"}),
                         ("data", {"body": b"ok"}),
                         ("ctl", {"type": "ping", "body": b"x" * 126}),
                         ("ctl", {"type": "close", "code": 1005}),
                         ("ctl", {"type": "close", "code": 1000, "body": b"fine"})]
        self.flush(rid)

    def on_stream(self, pkt):
        rid = pkt.get("id")
        if not isinstance(rid, bytes) or rid not in self.sess:
            return
        typ = pkt.get("type")
        self.events.append((rid, typ))
        s = self.sess[rid]
        if "credits" in pkt:
            s["credits"] += pkt["credits"]
        if typ is None:
            body = pkt.get("body", b"")
            self.max_piece = max(self.max_piece, len(body))
            s["got"] += len(body)
            if s["got"] > s["granted"]:
                self.over_credits.append((rid, s["got"], s["granted"]))
            fields = {"body": body}
            if "content-type" in pkt:
                fields["content_type"] = pkt["content-type"]
            if pkt.get("more"):
                fields["more"] = True
            s["out"].append(("data", fields))
            if body:
                s["out"].append(("ctl", {"type": "credit", "credits": len(body)}))
                s["granted"] += len(body)
        elif typ == b"ping":
            s["out"].append(("ctl", {"type": "pong", "body": pkt.get("body", b"")}))
        elif typ == b"close":
            fields = {"type": "close", "body": pkt.get("body", b"")}
            if "code" in pkt:
                fields["code"] = pkt["code"]
            s["out"].append(("ctl", fields))
        elif typ in (b"cancel", b"error"):
            del self.sess[rid]
            return
        self.flush(rid)
        if typ == b"close" and not s["out"]:
            del self.sess[rid]

    def run(self):
        poller = zmq.Poller()
        poller.register(self.pull, zmq.POLLIN)
        poller.register(self.router, zmq.POLLIN)
        while not self.stop_flag:
            for sock, _ in poller.poll(100):
                if sock is self.pull:
                    m = self.pull.recv()
                    self.on_request(tns.loads(m[1:]))
                else:
                    frames = self.router.recv_multipart()
                    pkt = tns.loads(frames[-1][1:])
                    if isinstance(pkt.get("id"), list):
                        continue
                    self.on_stream(pkt)

    def close(self):
        self.stop_flag = True
        self.join(5)
        for s in (self.pull, self.router, self.pub):
            s.close(0)

    def wait_event(self, typ, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(t == typ for _, t in self.events):
                return True
            time.sleep(0.02)
        return False


@pytest.fixture(scope="module")
def zctx():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture(scope="module", params=KINDS)
def server(request, tmp_path_factory, zctx):
    kind = request.param
    rundir = tmp_path_factory.mktemp(f"ws-{kind}")
    srv = start_server(kind, rundir, workers=1)
    h = WsEcho(zctx, srv.base)
    h.start()
    yield kind, srv, h
    h.close()
    srv.stop()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_echo_both_binaries(server):
    """Text, binary, empty and 1 MiB messages, client fragments, ping/pong, subprotocol, a close
    with code and reason: the same handler works unchanged against zhttpd and condure."""
    kind, srv, h = server

    async def go():
        uri = f"ws://127.0.0.1:{srv.port}/echo?x=1"
        async with websockets.connect(uri, subprotocols=["chat", "other"], compression=None,
                                      max_size=2 ** 21) as ws:
            assert ws.subprotocol == "chat"
            await ws.send("hello \u20ac")
            assert await ws.recv() == "hello \u20ac"
            await ws.send(b"\x00\x01\xff")
            assert await ws.recv() == b"\x00\x01\xff"
            await ws.send("")
            assert await ws.recv() == ""
            await ws.send(b"")
            assert await ws.recv() == b""
            big = os.urandom(1 << 20)
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send(["frag", "mented ", "\u00e9"])  # three frames, one message
            assert await ws.recv() == "fragmented \u00e9"
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 5)
            await ws.close(4001, "done here")
            assert ws.close_code == 4001 and ws.close_reason == "done here"

    run(go())
    req = h.requests[-1]
    scheme = req["uri"].split(b"://")[0]
    assert scheme == b"ws", req["uri"]
    assert req["uri"].endswith(b"/echo?x=1")
    assert not h.over_credits, h.over_credits


def test_rejected_with_http_response(server):
    kind, srv, h = server

    async def go():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            async with websockets.connect(f"ws://127.0.0.1:{srv.port}/reject"):
                pass
        return e.value.status_code

    assert run(go()) == 403


# ---- zhttpd only: raw frames ----

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def frame(b0, payload, mask=b"\x11\x22\x33\x44", length=None):
    n = len(payload) if length is None else length
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 65536:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        head += mask
    return head + payload


def handshake(port, path="/raw"):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\n"
              b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Key: " + KEY + b"\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        assert d, buf
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    return s, head, rest


def read_close(s, rest=b"", timeout=5.0):
    """Read frames until a close frame; returns its code (None if it had none) or 'eof'."""
    s.settimeout(timeout)
    buf = rest
    while True:
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            hl = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n = struct.unpack(">H", buf[2:4])[0]
                hl = 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n = struct.unpack(">Q", buf[2:10])[0]
                hl = 10
            if len(buf) < hl + n:
                break
            op, pl = buf[0] & 0x0F, buf[hl:hl + n]
            buf = buf[hl + n:]
            if op == 8:
                return struct.unpack(">H", pl[:2])[0] if len(pl) >= 2 else None
        try:
            d = s.recv(65536)
        except socket.timeout:
            return "timeout"
        if not d:
            return "eof"
        buf += d


@pytest.fixture(scope="module")
def zserver(tmp_path_factory, zctx):
    rundir = tmp_path_factory.mktemp("ws-raw")
    srv = start_server("zhttpd", rundir, workers=1,
                       extra=["--ws-max-message", "1000", "--ws-close-timeout", "1"])
    h = WsEcho(zctx, srv.base, ident=b"ws-raw")
    h.start()
    yield srv, h
    h.close()
    srv.stop()


def test_handshake_headers(zserver):
    srv, h = zserver
    s, head, rest = handshake(srv.port)
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 101 Switching Protocols"
    hdrs = {l.split(b":", 1)[0].lower(): l.split(b":", 1)[1].strip() for l in lines[1:]}
    assert hdrs[b"sec-websocket-accept"] == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert hdrs[b"upgrade"].lower() == b"websocket" and hdrs[b"connection"].lower() == b"upgrade"
    s.sendall(frame(0x81, b"raw hello"))
    s.settimeout(5)
    data = rest
    while len(data) < 11:
        data += s.recv(100)
    assert data[:11] == b"\x81\x09raw hello"  # unmasked from the server
    s.close()


BAD = [
    ("unmasked client frame", frame(0x81, b"hi", mask=None), 1002),
    ("RSV1 without extension", frame(0xC1, b"hi"), 1002),
    ("RSV2", frame(0xA1, b"hi"), 1002),
    ("fragmented ping", frame(0x09, b"p"), 1002),
    ("ping over 125 bytes", frame(0x89, b"x" * 126), 1002),
    ("continuation without a start", frame(0x80, b"x"), 1002),
    ("new message inside a fragmented one", frame(0x01, b"a") + frame(0x81, b"b"), 1002),
    ("unknown opcode 3", frame(0x83, b""), 1002),
    ("unknown opcode 0xB", frame(0x8B, b""), 1002),
    ("invalid UTF-8", frame(0x81, b"\xc3\x28"), 1007),
    ("invalid UTF-8 across fragments", frame(0x01, b"\xe2\x82") + frame(0x80, b"\x28"), 1007),
    ("close reason not UTF-8", frame(0x88, b"\x03\xe8\xff"), 1007),
    ("close code 1005", frame(0x88, b"\x03\xed"), 1002),
    ("close code 999", frame(0x88, b"\x03\xe7"), 1002),
    ("close with 1 byte", frame(0x88, b"\x03"), 1002),
    ("message over --ws-max-message", frame(0x82, b"x" * 1001), 1009),
    ("fragments over --ws-max-message", frame(0x02, b"x" * 600) + frame(0x80, b"x" * 401), 1009),
]


@pytest.mark.parametrize("what,data,code", BAD, ids=[b[0] for b in BAD])
def test_bad_input_close_codes(zserver, what, data, code):
    srv, h = zserver
    s, head, rest = handshake(srv.port)
    assert head.startswith(b"HTTP/1.1 101")
    n0 = len(h.requests)
    s.sendall(data)
    assert read_close(s, rest) == code, what
    # The connection ends after our close; the handler's session ends with a cancel.
    assert read_close(s, b"", 3) == "eof"
    s.close()
    rid = h.requests[n0 - 1]["id"] if len(h.requests) >= n0 else None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (rid, b"cancel") not in h.events:
        time.sleep(0.02)
    assert (rid, b"cancel") in h.events


def test_client_vanishes_mid_message(zserver):
    srv, h = zserver
    s, head, rest = handshake(srv.port)
    rid = h.requests[-1]["id"]
    s.sendall(frame(0x01, b"half a mess"))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (rid, None) not in h.events:
        time.sleep(0.02)
    s.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (rid, b"cancel") not in h.events:
        time.sleep(0.02)
    assert (rid, b"cancel") in h.events


def test_close_handshake_from_client_and_timeout(zserver):
    srv, h = zserver
    # The client closes: the handler gets close with code and reason and echoes it.
    s, head, rest = handshake(srv.port)
    s.sendall(frame(0x88, b"\x0f\xa0bye"))  # 4000 "bye"
    assert read_close(s, rest) == 4000
    assert read_close(s, b"", 3) == "eof"
    s.close()


def test_upgrade_on_req_port_is_400(tmp_path):
    from srvkit import start
    d, info = start(tmp_path, stream=False, req=True)
    try:
        s = socket.create_connection(("127.0.0.1", info["req_port"]), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + KEY + b"\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
        s.close()
    finally:
        d.stop()


@pytest.mark.parametrize("extra,status", [
    (b"Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: " + KEY + b"\r\n", b"400"),
    (b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short==\r\n", b"400"),
    (b"Sec-WebSocket-Version: 13\r\n", b"400"),
])
def test_bad_handshake_is_400(zserver, extra, status):
    srv, h = zserver
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
              extra + b"\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 " + status)
    s.close()


def test_handler_speaks_first(zserver):
    """The handler's fragments arrive as one message, binary by content-type, its ping is answered
    by the client (the handler gets the pong), and its close reaches the client with code and
    reason."""
    srv, h = zserver

    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{srv.port}/push") as ws:
            assert await ws.recv() == "frag1 frag2 end \u20ac"
            assert await ws.recv() == b"\x00bin"
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await ws.recv()
            return ws.close_code, ws.close_reason

    assert run(go()) == (4002, "server bye")
    rid = h.requests[-1]["id"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (rid, b"pong") not in h.events:
        time.sleep(0.02)
    assert (rid, b"pong") in h.events


def test_handler_bad_packets_are_refused(zserver):
    """Text that is not UTF-8, a ping over 125 bytes and close code 1005 from the handler are
    refused with a log line and not forwarded; what follows them goes through."""
    srv, h = zserver

    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{srv.port}/bad") as ws:
            assert await ws.recv() == "ok"
            with pytest.raises(websockets.exceptions.ConnectionClosedOK):
                await ws.recv()
            return ws.close_code, ws.close_reason

    assert run(go()) == (1000, "fine")
    log = srv.log()
    for line in ("handler sent text that is not UTF-8: refused",
                 "handler sent a ping over 125 bytes: refused",
                 "handler sent close code 1005, which may not be sent: refused"):
        assert line in log, line


def test_close_timeout(zserver):
    """The handler closes; a client that never answers our close is closed after
    --ws-close-timeout (1 s here)."""
    srv, h = zserver
    s, head, rest = handshake(srv.port, "/push")
    assert read_close(s, rest) == 4002
    t0 = time.monotonic()
    assert read_close(s, b"", 5) == "eof"
    assert time.monotonic() - t0 >= 0.9
    s.close()


def test_credits_5mb_both_ways(zserver_big):
    """Five 1 MiB messages each way: the handler never gets more than it granted, zhttpd never
    logs a handler over its credits."""
    srv, h = zserver_big

    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{srv.port}/echo", max_size=2 ** 21) as ws:
            msgs = [os.urandom(1 << 20) for _ in range(5)]
            for m in msgs:
                await ws.send(m)
            for m in msgs:
                assert await ws.recv() == m

    run(go())
    assert not h.over_credits, h.over_credits
    assert h.max_piece <= 65536
    assert "exceeded its credits" not in srv.log()


@pytest.fixture(scope="module")
def zserver_big(tmp_path_factory, zctx):
    rundir = tmp_path_factory.mktemp("ws-big")
    srv = start_server("zhttpd", rundir, workers=1)
    h = WsEcho(zctx, srv.base, ident=b"ws-big")
    h.start()
    yield srv, h
    h.close()
    srv.stop()


@pytest.mark.parametrize("auto", [False, True])
def test_auto_pong(tmp_path, zctx, auto):
    """--ws-auto-pong: zhttpd answers the client's ping and the handler sees none; without it the
    ping goes to the handler, which answers it."""
    srv = start_server("zhttpd", tmp_path, workers=1,
                       extra=["--ws-auto-pong"] if auto else [])
    h = WsEcho(zctx, srv.base, ident=b"ws-pong")
    h.start()
    try:
        async def go():
            async with websockets.connect(f"ws://127.0.0.1:{srv.port}/p") as ws:
                await asyncio.wait_for(await ws.ping(b"p1"), 5)
                await ws.send("after")
                assert await ws.recv() == "after"

        run(go())
        rid = h.requests[-1]["id"]
        assert ((rid, b"ping") in h.events) is (not auto)
    finally:
        h.close()
        srv.stop()


def test_handler_vanishes_client_gets_1011(tmp_path, zctx):
    """A handler that accepts and then goes silent: after the session expiry the client gets
    close 1011."""
    srv = start_server("zhttpd", tmp_path, workers=1,
                       extra=["--server-session-expiry-ms", "800", "--server-keepalive-ms", "300"])
    h = WsEcho(zctx, srv.base, ident=b"ws-mute")
    h.start()
    try:
        s, head, rest = handshake(srv.port, "/mute")
        assert head.startswith(b"HTTP/1.1 101")
        assert read_close(s, rest, 10) == 1011
        s.close()
    finally:
        h.close()
        srv.stop()


def test_keepalive_pings(tmp_path, zctx):
    """--ws-ping-interval: an idle client gets our ping (its pong is not forwarded); one that
    stops answering is closed after another interval, and the handler gets cancel."""
    srv = start_server("zhttpd", tmp_path, workers=1, extra=["--ws-ping-interval", "0.5"])
    h = WsEcho(zctx, srv.base, ident=b"ws-ka")
    h.start()
    try:
        async def go():
            async with websockets.connect(f"ws://127.0.0.1:{srv.port}/ka") as ws:
                await asyncio.sleep(1.6)  # websockets answers our pings: still open
                await ws.send("alive")
                assert await ws.recv() == "alive"

        run(go())
        rid = h.requests[-1]["id"]
        assert (rid, b"pong") not in h.events
        # A raw client that never answers: ping, then closed.
        s, head, rest = handshake(srv.port, "/ka2")
        rid = h.requests[-1]["id"]
        s.settimeout(5)
        got = rest
        while b"zhttpd-keepalive" not in got:
            d = s.recv(100)
            assert d
            got += d
        assert got.startswith(b"\x89\x10zhttpd-keepalive")
        assert read_close(s, b"", 5) == "eof"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (rid, b"cancel") not in h.events:
            time.sleep(0.02)
        assert (rid, b"cancel") in h.events
        s.close()
    finally:
        h.close()
        srv.stop()


def test_wss_on_tls_listener_with_sni(tmp_path, zctx):
    """wss:// on a TLS listener: SNI picks the certificate, the handler sees a wss:// uri."""
    import ssl
    from conftest import free_port
    from srvkit import start
    from test_15_server_listeners import make_identity
    ids = tmp_path / "ids"
    ids.mkdir()
    make_identity(ids, "one.test", "one.test")
    make_identity(ids, "two.test", "two.test")
    port = free_port()
    d, info = start(tmp_path, "--tls-identities-dir", ids,
                    listen_extra=[f"127.0.0.1:{port},tls,default-cert=one.test"])
    h = WsEcho(zctx, info["base"], ident=b"ws-tls")
    h.start()
    try:
        ctx = ssl.create_default_context(cafile=str(ids / "two.test.crt"))

        async def go():
            async with websockets.connect(f"wss://127.0.0.1:{port}/sec", ssl=ctx,
                                          server_hostname="two.test") as ws:
                await ws.send("secure")
                return await ws.recv()

        assert run(go()) == "secure"
        assert h.requests[-1]["uri"].startswith(b"wss://")
    finally:
        h.close()
        d.stop()


# ---- permessage-deflate (--compression) ----

@pytest.fixture(scope="module")
def dserver(tmp_path_factory, zctx):
    rundir = tmp_path_factory.mktemp("ws-deflate")
    srv = start_server("zhttpd", rundir, workers=1,
                       extra=["--compression", "--ws-max-message", "200000"])
    h = WsEcho(zctx, srv.base, ident=b"ws-deflate")
    h.start()
    yield srv, h
    h.close()
    srv.stop()


def deflate_factory(**kw):
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
    return ClientPerMessageDeflateFactory(**kw)


OFFERS = [
    # (client factory arguments, negotiated?, what the response must say)
    ({}, True, dict(remote_no_context_takeover=False, local_no_context_takeover=False)),
    ({"client_max_window_bits": True}, True, {}),
    ({"server_no_context_takeover": True}, True, dict(remote_no_context_takeover=True)),
    ({"client_no_context_takeover": True}, True, dict(local_no_context_takeover=True)),
    ({"server_max_window_bits": 10}, True, dict(remote_max_window_bits=10)),
    ({"client_max_window_bits": 9}, True, {}),
    ({"server_no_context_takeover": True, "client_no_context_takeover": True,
      "server_max_window_bits": 12, "client_max_window_bits": 11}, True,
     dict(remote_no_context_takeover=True, local_no_context_takeover=True,
          remote_max_window_bits=12)),
    # zlib cannot raw-deflate with an 8-bit window: declined, the connection goes on uncompressed
    ({"server_max_window_bits": 8}, False, {}),
]


@pytest.mark.parametrize("kw,negotiated,want", OFFERS, ids=[str(o[0]) for o in OFFERS])
def test_deflate_negotiation_and_echo(dserver, kw, negotiated, want):
    srv, h = dserver

    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{srv.port}/z",
                                      extensions=[deflate_factory(**kw)], compression=None,
                                      max_size=2 ** 20) as ws:
            exts = ws.extensions
            text = ("compressible text \u20ac " * 5000)
            for _ in range(3):  # context takeover (or not) across messages
                await ws.send(text)
                assert await ws.recv() == text
            await ws.send([b"frag" * 1000, b"ment" * 1000, b""])
            assert await ws.recv() == b"frag" * 1000 + b"ment" * 1000
            await ws.send(b"")
            assert await ws.recv() == b""
            return exts

    exts = run(go())
    if not negotiated:
        assert exts == []
        return
    assert len(exts) == 1 and exts[0].name == "permessage-deflate"
    for k, v in want.items():
        assert getattr(exts[0], k) == v, (k, getattr(exts[0], k))


def test_no_compression_without_the_flag(zserver):
    srv, h = zserver

    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{srv.port}/z") as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            return ws.extensions

    assert run(go()) == []


def raw_deflate(data):
    import zlib
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def deflate_handshake(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /raw HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + KEY + b"\r\n"
              b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        assert d, buf
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n" in head + b"\r\n", head
    return s, rest


@pytest.mark.parametrize("what,payload,code", [
    ("a bomb: 10 MB of zeros in ~10 KB", raw_deflate(b"\0" * 10_000_000), 1009),
    ("compressed text that is not UTF-8", raw_deflate(b"ok \xff"), 1007),
    ("corrupt deflate data", b"\xff\xff\xff\xff", 1007),
])
def test_deflate_bad_input(dserver, what, payload, code):
    srv, h = dserver
    s, rest = deflate_handshake(srv.port)
    assert len(payload) < 20000
    s.sendall(frame(0xC1, payload))
    assert read_close(s, rest) == code, what
    s.close()
    assert "ERROR: AddressSanitizer" not in srv.log()


def test_deflate_on_the_wire(dserver):
    """Both directions really compress: our echo of a compressed message is an RSV1 frame that
    inflates to the message."""
    import zlib
    srv, h = dserver
    s, rest = deflate_handshake(srv.port)
    msg = b"hello hello hello hello"
    s.sendall(frame(0xC1, raw_deflate(msg)))
    s.settimeout(5)
    buf = rest
    while len(buf) < 2 or len(buf) < 2 + (buf[1] & 0x7F):
        buf += s.recv(4096)
    assert buf[0] == 0xC1, buf  # FIN + RSV1 + text
    n = buf[1] & 0x7F
    d = zlib.decompressobj(-15)
    assert d.decompress(buf[2:2 + n] + b"\x00\x00\xff\xff") == msg
    assert n < len(msg)
    s.close()


def test_messages_max(tmp_path, zctx):
    """--messages-max bounds the handler's messages waiting for a client that does not read
    (credits bound their bytes, not their count): past it the connection is closed and the
    handler gets cancel."""
    srv = start_server("zhttpd", tmp_path, workers=1,
                       extra=["--messages-max", "5", "--buffer-size", "65536"])
    h = WsEcho(zctx, srv.base, ident=b"ws-flood")
    h.start()
    try:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(5)
        s.connect(("127.0.0.1", srv.port))
        s.sendall(b"GET /flood HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                  b"Sec-WebSocket-Key: " + KEY + b"\r\n\r\n")
        assert s.recv(12) == b"HTTP/1.1 101"
        # Not reading: the handler fills the socket, then the queue.
        deadline = time.monotonic() + 20
        line = "handler has more than --messages-max (5) messages waiting for the client"
        while time.monotonic() < deadline and line not in srv.log():
            time.sleep(0.05)
        assert line in srv.log()
        rid = h.requests[-1]["id"]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (rid, b"cancel") not in h.events:
            time.sleep(0.02)
        assert (rid, b"cancel") in h.events
        s.close()
    finally:
        h.close()
        srv.stop()


def test_messages_max_not_reached_by_a_reading_client(zserver_big):
    """500 messages, far more than --messages-max (default 100), reach a client that reads."""
    srv, h = zserver_big

    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{srv.port}/many") as ws:
            for _ in range(500):
                assert await ws.recv() == b"m" * 1000

    run(go())
