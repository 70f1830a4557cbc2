"""Client role, outbound WebSocket (issue 15 item 2): a pyzmq ZHTTP requester drives ws:// and wss://
sessions through the daemon to a python3-websockets 10.4 origin (wsorigin.py). Parametrized by
binary (zhttpd and Debian's Zurl 1.11) where both should behave the same."""
import random
import time

import pytest

from tls_origin import pki  # noqa: F401 (fixture)
from wsorigin import REJECT_BODY, WsOrigin
from zrequester import (Requester, Session, binary, daemon, header_values,  # noqa: F401
                        zhttpd_only, zurl_xfail)

BIG = 1024 * 1024


class Ws:
    """One WebSocket session seen from the handler side of ZHTTP."""

    def __init__(self, zctx, d, uri, credits=4 * BIG, **fields):
        self.rq = Requester(zctx, d)
        self.s = Session(self.rq)
        self.s.start(uri=uri, stream=None, credits=credits, **fields)
        self.out_credits = 0
        self.pending = []

    def _next(self, timeout=10.0):
        while True:
            pkt = self.s.recv(timeout)
            if "credits" in pkt:
                self.out_credits += pkt["credits"]
            if pkt.get("type") in (b"keep-alive", b"credit"):
                continue
            return pkt

    def next(self, timeout=10.0):
        if self.pending:
            return self.pending.pop(0)
        return self._next(timeout)

    def handshake(self):
        return self.next()

    def send(self, body, binary=False, more=False, timeout=10.0):
        deadline = time.monotonic() + timeout
        while self.out_credits < len(body):
            assert time.monotonic() < deadline, f"no credits for {len(body)} bytes"
            try:
                self.pending.append(self._next(0.2))
            except AssertionError:
                pass
        self.out_credits -= len(body)
        f = {"body": body}
        if binary:
            f["content_type"] = "binary"
        if more:
            f["more"] = True
        self.s.send(**f)

    def send_message(self, data, binary=False, piece=65536):
        for i in range(0, max(len(data), 1), piece):
            chunk = data[i:i + piece]
            self.send(chunk, binary, more=i + piece < len(data))

    def message(self, timeout=10.0, step=BIG):
        """The next whole message: (content-type or None, bytes, data packet count)."""
        buf = bytearray()
        n = 0
        ctype = None
        while True:
            pkt = self.next(timeout)
            assert pkt.get("type") is None, f"expected data, got {pkt!r}"
            if n == 0:
                ctype = pkt.get("content-type")
            n += 1
            buf += pkt.get("body", b"")
            if self.s.body_received + 65536 > self.s.credits_given:
                self.s.credit(step)
            if not pkt.get("more"):
                return ctype, bytes(buf), n

    def close(self):
        self.rq.close()


@pytest.fixture
def origin():
    with WsOrigin() as o:
        yield o


def test_echo_text_and_binary(daemon, zctx, origin):
    d = daemon()
    ws = Ws(zctx, d, origin.url("/echo"))
    head = ws.handshake()
    assert head.get("code") == 101, head
    assert head.get("credits", 0) > 0
    assert header_values(head["headers"], "Upgrade")[0].lower() == b"websocket"
    ws.send(b"hello")
    assert ws.message()[:2][1] == b"hello"
    ws.send(b"\x00\x01\xfe\xff", binary=True)
    ctype, body, _ = ws.message()
    assert (ctype, body) == (b"binary", b"\x00\x01\xfe\xff")
    assert ("msg", "hello") in origin.events and ("msg", b"\x00\x01\xfe\xff") in origin.events
    ws.close()


@zurl_xfail("an origin message larger than its session buffer fails with frame-too-large")
def test_empty_and_one_mib_messages(daemon, zctx, origin):
    d = daemon()
    ws = Ws(zctx, d, origin.url("/echo"))
    assert ws.handshake().get("code") == 101
    ws.send(b"")
    assert ws.message()[1] == b""
    big = bytes((i * 7) & 0xff for i in range(BIG))
    ws.send_message(big, binary=True)
    ctype, body, n = ws.message(timeout=20)
    assert ctype == b"binary" and len(body) == BIG and body == big
    ws.close()


def test_fragments_both_ways(daemon, zctx, origin):
    d = daemon()
    ws = Ws(zctx, d, origin.url("/echo"))
    assert ws.handshake().get("code") == 101
    ws.send(b"frag", more=True)
    ws.send(b"ment", more=True)
    ws.send(b"ed")
    ctype, body, _ = ws.message()
    assert body == b"fragmented"
    assert ("msg", "fragmented") in origin.events
    ws.close()


def test_ping_pong(daemon, zctx, origin):
    d = daemon()
    ws = Ws(zctx, d, origin.url("/echo"))
    assert ws.handshake().get("code") == 101
    ws.s.send(type="ping", body=b"are you there")
    p = ws.next()
    assert p.get("type") == b"pong", p
    ws.send(b"ping from-origin")  # the origin pings us
    p = ws.next()
    assert p.get("type") == b"ping", p
    if d.kind == "zhttpd":
        assert p.get("body") == b"from-origin"
    ws.close()


def test_close_from_origin_with_code_and_reason(daemon, zctx, origin):
    d = daemon()
    ws = Ws(zctx, d, origin.url("/echo"))
    assert ws.handshake().get("code") == 101
    ws.send(b"before")
    assert ws.message()[1] == b"before"
    ws.send(b"close 4001 origin done")
    p = ws.next()
    assert p.get("type") == b"close", p
    assert p.get("code") == 4001 and p.get("body") == b"origin done"
    ws.s.send(type="close", code=4001)
    deadline = time.monotonic() + 5
    while not any(e[0] == "closed" for e in origin.events) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ("closed", 4001, "") in origin.events  # the code our handler answered with
    ws.close()


def test_close_from_handler_with_code_and_reason(daemon, zctx, origin):
    d = daemon()
    ws = Ws(zctx, d, origin.url("/echo"))
    assert ws.handshake().get("code") == 101
    ws.s.send(type="close", code=4002, body=b"handler done")
    p = ws.next()
    assert p.get("type") == b"close", p
    assert p.get("code") == 4002
    deadline = time.monotonic() + 5
    while not any(e[0] == "closed" for e in origin.events) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ("closed", 4002, "handler done") in origin.events
    ws.close()


def test_subprotocol(daemon, zctx):
    with WsOrigin(subprotocols=["chat"]) as o:
        d = daemon()
        ws = Ws(zctx, d, o.url("/proto"),
                headers=[["Sec-WebSocket-Protocol", "other, chat"], ["X-Custom", "1"]])
        head = ws.handshake()
        assert head.get("code") == 101
        assert header_values(head["headers"], "Sec-WebSocket-Protocol") == [b"chat"]
        deadline = time.monotonic() + 5
        while not o.events and time.monotonic() < deadline:  # the origin's handler runs after
            time.sleep(0.02)                                  # it sent the 101
        assert o.events[0] == ("open", "/proto", "chat")
        hdrs = dict((k.lower(), v) for k, v in o.requests[0][1])
        assert hdrs["x-custom"] == "1"
        ws.close()


def test_rejected_with_body(daemon, zctx, origin):
    d = daemon()
    ws = Ws(zctx, d, origin.url("/reject"))
    p = ws.handshake()
    assert p.get("type") == b"error" and p.get("condition") == b"rejected", p
    assert p.get("code") == 403
    if d.kind == "zhttpd":  # Zurl 1.11 passes neither the headers nor the body
        assert header_values(p["headers"], "X-Origin") == [b"yes"]
        assert p.get("body") == REJECT_BODY
    ws.close()


@zhttpd_only("tls_ca_file is a zhttpd key")
def test_wss_trusted_via_tls_ca_file(daemon, zctx, pki):
    d = daemon(conf=[f"tls_ca_file={pki.ca}"])
    with WsOrigin(tls=(pki.cert, pki.key)) as o:
        ws = Ws(zctx, d, o.url("/echo"))
        assert ws.handshake().get("code") == 101
        ws.send(b"secure")
        assert ws.message()[1] == b"secure"
        ws.close()
    with WsOrigin(tls=(pki.self_cert, pki.self_key)) as o:
        ws = Ws(zctx, d, o.url("/echo"))
        p = ws.handshake()
        assert p.get("type") == b"error" and p.get("condition") == b"tls-error", p
        ws.close()
        ws = Ws(zctx, d, o.url("/echo"), ignore_tls_errors=True)
        assert ws.handshake().get("code") == 101
        ws.close()


def test_loopback_refused_by_default_policy(daemon, zctx, origin):
    d = daemon(defpolicy=None)
    ws = Ws(zctx, d, origin.url("/echo"))
    p = ws.handshake()
    if d.kind == "zhttpd":
        assert p.get("type") == b"error" and p.get("condition") == b"policy-violation", p
        assert origin.events == []
    ws.close()


def test_loopback_allowed(daemon, zctx, origin):
    d = daemon(defpolicy=None, conf=["allow=127.0.0.1"])
    ws = Ws(zctx, d, origin.url("/echo"))
    assert ws.handshake().get("code") == 101
    ws.close()


@zhttpd_only("ws_compression is a zhttpd key")
@pytest.mark.parametrize("server_ext", [None, "deflate"])
def test_deflate(daemon, zctx, server_ext):
    with WsOrigin(compression=server_ext) as o:
        d = daemon(conf=["ws_compression=true"])
        ws = Ws(zctx, d, o.url("/echo"))
        head = ws.handshake()
        assert head.get("code") == 101
        ext = header_values(head["headers"], "Sec-WebSocket-Extensions")
        assert bool(ext) == (server_ext is not None)
        text = "compress me " * 1000
        ws.send(text.encode())
        assert ws.message()[1] == text.encode()
        big = bytes((i * 13) & 0xff for i in range(300000))
        ws.send_message(big, binary=True)
        assert ws.message(timeout=20)[1] == big
        ws.close()
        offered = [v for k, v in o.requests[0][1] if k.lower() == "sec-websocket-extensions"]
        assert offered and "permessage-deflate" in offered[0]


@zhttpd_only("ws_compression is a zhttpd key")
@pytest.mark.parametrize("params,agreed", [
    ({"server_no_context_takeover": True}, "server_no_context_takeover"),
    ({"client_no_context_takeover": True}, "client_no_context_takeover"),
    ({"server_max_window_bits": 10}, "server_max_window_bits=10"),
    ({"client_max_window_bits": 10}, "client_max_window_bits=10"),
    ({"server_no_context_takeover": True, "client_no_context_takeover": True,
      "server_max_window_bits": 9, "client_max_window_bits": 9},
     "client_max_window_bits=9"),
], ids=["server-no-takeover", "client-no-takeover", "server-bits-10", "client-bits-10", "all"])
def test_deflate_each_parameter(daemon, zctx, params, agreed):
    """Each RFC 7692 parameter an origin answers with is honoured: several compressed messages each
    way (context takeover matters from the second one on) arrive intact."""
    from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
    with WsOrigin(extensions=[ServerPerMessageDeflateFactory(**params)]) as o:
        d = daemon(conf=["ws_compression=true"])
        ws = Ws(zctx, d, o.url("/echo"))
        head = ws.handshake()
        assert head.get("code") == 101, head
        ext = header_values(head["headers"], "Sec-WebSocket-Extensions")
        assert ext and agreed.encode() in ext[0], ext
        for i in range(4):
            text = ("message %d " % i) * 500
            ws.send(text.encode())
            assert ws.message()[1] == text.encode()
        # Repeats 3000 bytes apart (beyond a 2^9 or 2^10 window) and a message repeating the one
        # before it: a wrong window or kept context would make the other side fail to inflate.
        block = bytes(random.Random(7).getrandbits(8) for _ in range(3000))
        for _ in range(2):
            ws.send_message(block * 3, binary=True)
            assert ws.message(timeout=20)[1] == block * 3
        ws.close()


@zhttpd_only("ws_compression is a zhttpd key")
def test_no_offer_by_default(daemon, zctx):
    with WsOrigin(compression="deflate") as o:
        d = daemon()
        ws = Ws(zctx, d, o.url("/echo"))
        head = ws.handshake()
        assert head.get("code") == 101
        assert header_values(head["headers"], "Sec-WebSocket-Extensions") == []
        ws.close()
        assert not [v for k, v in o.requests[0][1] if k.lower() == "sec-websocket-extensions"]


@zhttpd_only("ws_compression is a zhttpd key")
def test_deflate_client_window_8_fails_the_handshake(daemon, zctx):
    from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
    f = ServerPerMessageDeflateFactory(client_max_window_bits=8, require_client_max_window_bits=True)
    with WsOrigin(extensions=[f]) as o:
        d = daemon(conf=["ws_compression=true"])
        ws = Ws(zctx, d, o.url("/echo"))
        p = ws.handshake()
        assert p.get("type") == b"error", p
        ws.close()
    assert "client_max_window_bits" in d.log() or "window" in d.log()


def test_ws_on_req_socket_is_bad_request(daemon, zctx, origin):
    from zrequester import ReqClient
    d = daemon()
    rep = ReqClient(zctx, d, "DEALER").call({"id": "w", "method": "GET",
                                             "uri": origin.url("/echo")})
    assert rep["type"] == b"error" and rep["condition"] == b"bad-request"
    assert origin.events == []


# ---- bad input: a raw-socket origin ---------------------------------------------------------

class RawOrigin:
    """Answers one upgrade with a 101 (accept computed unless bad_accept), then sends `frames`
    (raw bytes) and records the client's frames (unmasked) until its close frame or EOF."""

    def __init__(self, frames=b"", bad_accept=False, masked_ok=True):
        import socket
        import threading
        self.frames = frames
        self.bad_accept = bad_accept
        self.got = []  # (opcode, payload, masked)
        self.request = b""
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.t = threading.Thread(target=self._run, daemon=True)

    def url(self, path="/raw"):
        return f"ws://127.0.0.1:{self.port}{path}"

    def _recv_exact(self, c, n):
        b = b""
        while len(b) < n:
            d = c.recv(n - len(b))
            if not d:
                raise EOFError
            b += d
        return b

    def _run(self):
        import base64
        import hashlib
        self.lsock.settimeout(15)
        c, _ = self.lsock.accept()
        c.settimeout(15)
        with c:
            while b"\r\n\r\n" not in self.request:
                self.request += c.recv(4096)
            key = [ln.split(b":", 1)[1].strip() for ln in self.request.split(b"\r\n")
                   if ln.lower().startswith(b"sec-websocket-key:")][0]
            acc = base64.b64encode(hashlib.sha1(
                key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            if self.bad_accept:
                acc = base64.b64encode(b"x" * 20)
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
            if self.frames:
                c.sendall(self.frames)
            try:
                while True:
                    h = self._recv_exact(c, 2)
                    op, masked, n = h[0] & 0x0f, bool(h[1] & 0x80), h[1] & 0x7f
                    if n == 126:
                        n = int.from_bytes(self._recv_exact(c, 2), "big")
                    elif n == 127:
                        n = int.from_bytes(self._recv_exact(c, 8), "big")
                    mask = self._recv_exact(c, 4) if masked else b"\0\0\0\0"
                    p = bytes(b ^ mask[i % 4] for i, b in enumerate(self._recv_exact(c, n)))
                    self.got.append((op, p, masked, mask))
                    if op == 8:
                        break
            except (EOFError, OSError):
                pass

    def close_code(self):
        for op, p, _, _ in self.got:
            if op == 8:
                return int.from_bytes(p[:2], "big") if len(p) >= 2 else 1005
        return None

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.t.join(15)
        self.lsock.close()


def frame(op, payload=b"", fin=True, rsv=0, mask=None, length=None):
    b0 = (0x80 if fin else 0) | rsv | op
    n = len(payload) if length is None else length
    if n < 126:
        h = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        h = bytes([b0, (0x80 if mask else 0) | 126]) + n.to_bytes(2, "big")
    else:
        h = bytes([b0, (0x80 if mask else 0) | 127]) + n.to_bytes(8, "big")
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        h += mask
    return h + payload


BAD_FRAMES = [
    ("masked server frame", frame(1, b"hi", mask=b"\1\2\3\4"), 1002),
    ("rsv bits", frame(1, b"hi", rsv=0x40), 1002),
    ("fragmented ping", frame(9, b"p", fin=False), 1002),
    ("ping over 125", frame(9, b"p" * 126), 1002),
    ("continuation first", frame(0, b"x"), 1002),
    ("new message inside one", frame(1, b"a", fin=False) + frame(1, b"b"), 1002),
    ("unknown opcode", frame(3, b""), 1002),
    ("bad utf-8", frame(1, b"\xc3\x28"), 1007),
    ("utf-8 split bad", frame(1, b"\xe2\x82", fin=False) + frame(0, b"\x28"), 1007),
    ("bad close code", frame(8, (999).to_bytes(2, "big")), 1002),
    ("close reason not utf-8", frame(8, (1000).to_bytes(2, "big") + b"\xff"), 1007),
    ("over 1 MiB", frame(2, b"", length=BIG + 1), 1009),
]


@zhttpd_only("RFC close codes for bad origin frames (Zurl closes without them)")
@pytest.mark.parametrize("name,data,code", BAD_FRAMES, ids=[b[0] for b in BAD_FRAMES])
def test_bad_origin_frames(daemon, zctx, name, data, code):
    d = daemon()
    with RawOrigin(data) as o:
        ws = Ws(zctx, d, o.url())
        assert ws.handshake().get("code") == 101
        p = ws.next()
        while p.get("type") is None and p.get("more"):  # a piece before the error
            p = ws.next()
        assert p.get("type") == b"cancel", p
    assert o.close_code() == code, o.got
    assert all(m for _, _, m, _ in o.got), "client frames must be masked"
    ws.close()


@zhttpd_only("handshake checks")
def test_wrong_accept_fails_the_handshake(daemon, zctx):
    d = daemon()
    with RawOrigin(bad_accept=True) as o:
        ws = Ws(zctx, d, o.url())
        p = ws.handshake()
        assert p.get("type") == b"error" and p.get("condition") == b"undefined-condition", p
        ws.close()
    assert "Sec-WebSocket-Accept" in d.log()


@zhttpd_only("masking keys and refused handler packets")
def test_masking_and_refused_handler_packets(daemon, zctx):
    d = daemon()
    with RawOrigin() as o:
        ws = Ws(zctx, d, o.url())
        assert ws.handshake().get("code") == 101
        ws.send(b"\xff\xfe")                          # not UTF-8: refused
        ws.s.send(type="ping", body=b"x" * 126)        # over 125: refused
        ws.s.send(type="close", code=1005)             # may not be sent: refused
        for i in range(4):
            ws.send(b"m%d" % i)
        ws.s.send(type="close", code=1000, body=b"bye")
        p = ws.next(timeout=10)
        assert p.get("type") in (b"cancel", b"close"), p  # the raw origin never answers the close
    got = [(op, pl) for op, pl, _, _ in o.got]
    assert got == [(1, b"m0"), (1, b"m1"), (1, b"m2"), (1, b"m3"),
                   (8, (1000).to_bytes(2, "big") + b"bye")], got
    keys = [m for _, _, _, m in o.got]
    assert all(o.got[i][2] for i in range(len(o.got)))
    assert len(set(keys)) == len(keys), f"mask keys repeat: {keys}"
    log = d.log()
    assert "not UTF-8: refused" in log and "over 125 bytes: refused" in log
    assert "close code 1005" in log
    ws.close()


# ---- through an HTTP proxy (CONNECT) --------------------------------------------------------

class ConnectProxy:
    """A tiny HTTP CONNECT proxy on 127.0.0.1: records each CONNECT target, relays bytes."""

    def __init__(self):
        import socket
        import threading
        self.targets = []
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.stop = False
        self.t = threading.Thread(target=self._accept, daemon=True)

    def _accept(self):
        import threading
        self.lsock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        import socket
        import threading
        head = b""
        while b"\r\n\r\n" not in head:
            d = c.recv(4096)
            if not d:
                c.close()
                return
            head += d
        line = head.split(b"\r\n", 1)[0].decode()
        method, target, _ = line.split(" ", 2)
        self.targets.append((method, target))
        host, port = target.rsplit(":", 1)
        try:
            up = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
        except OSError:
            c.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            c.close()
            return
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pipe(a, b):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    b.sendall(d)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        threading.Thread(target=pipe, args=(up, c), daemon=True).start()
        pipe(c, up)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.t.join(5)
        self.lsock.close()


@zhttpd_only("zhttpd's ws:// through proxy")
def test_ws_and_wss_through_proxy(daemon, zctx, pki):
    with ConnectProxy() as px:
        d = daemon(conf=[f"proxy=http://127.0.0.1:{px.port}", f"tls_ca_file={pki.ca}"])
        with WsOrigin() as o:
            ws = Ws(zctx, d, o.url("/echo"))
            p = ws.handshake()
            assert p.get("code") == 101, (p, d.log()[-3000:])
            ws.send(b"via proxy")
            assert ws.message()[1] == b"via proxy"
            ws.close()
            assert px.targets == [("CONNECT", f"127.0.0.1:{o.port}")]
        with WsOrigin(tls=(pki.cert, pki.key)) as o:
            ws = Ws(zctx, d, o.url("/echo", host="origin.test"), connect_host="127.0.0.1")
            assert ws.handshake().get("code") == 101  # TLS inside the tunnel, name checked
            ws.send(b"tls via proxy")
            assert ws.message()[1] == b"tls via proxy"
            ws.close()
            assert px.targets[-1] == ("CONNECT", f"127.0.0.1:{o.port}")


@zhttpd_only("zhttpd's ws:// through proxy")
@pytest.mark.parametrize("conf,host,ok", [
    ([], "127.0.0.1", False),                   # default policy: loopback name denied
    (["allow=127.0.0.1"], "127.0.0.1", True),
    (["defpolicy=allow", "deny=*.blocked.test"], "x.blocked.test", False),
])
def test_proxy_policy_same_as_http(daemon, zctx, conf, host, ok):
    """Through a proxy the names (uri host, connect-host) are checked, as for proxied HTTP; the
    proxy resolves and connects, so addresses are not (the proxy's own address is the
    operator's)."""
    with ConnectProxy() as px, WsOrigin() as o:
        d = daemon(defpolicy=None, conf=[f"proxy=http://127.0.0.1:{px.port}", *conf])
        ws = Ws(zctx, d, o.url("/echo", host=host))
        p = ws.handshake()
        ws.close()
        if ok:
            assert p.get("code") == 101, p
            assert px.targets == [("CONNECT", f"{host}:{o.port}")]
        else:
            assert p.get("condition") == b"policy-violation", p
            # a proxied HTTP request to the same host gets the same answer
            from zrequester import ReqClient
            http = ReqClient(zctx, d, "DEALER").call(
                {"id": "h", "method": "GET", "uri": f"http://{host}:{o.port}/echo"})
            assert http.get("condition") == b"policy-violation", http
            assert px.targets == []


@zhttpd_only("zhttpd counts WebSocket sessions in max_open_requests (Zurl: see README)")
def test_max_open_requests_counts_ws_sessions(daemon, zctx, origin):
    """A WebSocket session holds its request slot until it ends: with max_open_requests=1 a
    second session waits (no connection, no 101) until the first one closes."""
    d = daemon(conf=["max_open_requests=1"])
    first = Ws(zctx, d, origin.url("/echo"))
    assert first.handshake().get("code") == 101
    second = Ws(zctx, d, origin.url("/echo"))
    time.sleep(1.0)
    opened = [e for e in origin.events if e[0] == "open"]
    assert len(opened) == 1, origin.events
    first.s.send(type="close", code=1000)
    assert first.next().get("type") == b"close"
    assert second.handshake().get("code") == 101
    second.send(b"second")
    assert second.message()[1] == b"second"
    first.close()
    second.close()
