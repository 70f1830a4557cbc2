"""A Zurl-style stream requester for client-role tests (what Pushpin's proxy does to Zurl).

    Requester(ctx, base)   PUSH -> <base>-in (first packets), ROUTER -> <base>-in-stream (later
                           packets, addressed [zhttpd-id, "", T…]), SUB <- <base>-out subscribed to
                           "<ident> " (replies; router-resp replies arrive on the ROUTER instead)
    Session(requester)     one request: its own seq counter, checks the replies' seq/from/id,
                           grants credits, and collects a streamed response

Packets are dicts encoded with tnetstring_py (`T`) or json (`J`). Every wait is bounded."""
import json
import time
import uuid

import zmq

import tnetstring_py as tns


def encode(pkt: dict, fmt="T") -> bytes:
    if fmt == "J":
        return b"J" + json.dumps(_jsonable(pkt)).encode()
    return b"T" + tns.dumps(pkt)


def _jsonable(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, dict):
        return {(k.decode() if isinstance(k, bytes) else k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def decode(payload: bytes):
    """(format, packet) of a `T` or `J` payload; J strings come back as str."""
    if payload[:1] == b"T":
        return "T", tns.loads(payload[1:])
    if payload[:1] == b"J":
        return "J", json.loads(payload[1:])
    raise AssertionError(f"reply with unknown format: {payload[:40]!r}")


def _b(v):
    return v.encode() if isinstance(v, str) else v


class ProtocolError(AssertionError):
    pass


class Requester:
    def __init__(self, ctx, base, ident=b"req1", zid=b"zhttpd"):
        self.ident = _b(ident)
        self.zid = _b(zid)
        self.push = ctx.socket(zmq.PUSH)
        self.push.connect(f"{base}-in")
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.IDENTITY, self.ident)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.connect(f"{base}-in-stream")
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, self.ident + b" ")
        self.sub.connect(f"{base}-out")
        for s in (self.push, self.router, self.sub):
            s.setsockopt(zmq.LINGER, 0)
        self.poller = zmq.Poller()
        self.poller.register(self.sub, zmq.POLLIN)
        self.poller.register(self.router, zmq.POLLIN)
        self.queues = {}  # id -> [(via, fmt, packet)]
        time.sleep(0.3)  # let the subscription and the ROUTER connection form

    def first(self, pkt: dict, fmt="T"):
        self.push.send(encode(pkt, fmt))

    def first_raw(self, payload: bytes):
        self.push.send(payload)

    def later(self, pkt: dict, fmt="T"):
        deadline = time.monotonic() + 5
        while True:
            try:
                self.router.send_multipart([self.zid, b"", encode(pkt, fmt)])
                return
            except zmq.error.ZMQError as e:  # EHOSTUNREACH until the connection is up
                if time.monotonic() > deadline:
                    raise AssertionError(f"cannot reach zhttpd's ROUTER: {e}")
                time.sleep(0.02)

    def _read(self, timeout):
        """Read one reply into the per-id queues. False on timeout."""
        events = dict(self.poller.poll(int(timeout * 1000)))
        if not events:
            return False
        if self.sub in events:
            frame = self.sub.recv()
            addr, sp, payload = frame.partition(b" ")
            if addr != self.ident or not sp:
                raise ProtocolError(f"PUB frame for {addr!r}: {frame[:60]!r}")
            via = "pub"
        else:
            frames = self.router.recv_multipart()
            if len(frames) != 3 or frames[0] != self.zid or frames[1] != b"":
                raise ProtocolError(f"ROUTER message with frames {frames!r}")
            payload = frames[2]
            via = "router"
        fmt, pkt = decode(payload)
        ids = pkt.get("id")
        key = _b(ids) if isinstance(ids, (bytes, str)) else b"<multi>"
        self.queues.setdefault(key, []).append((via, fmt, pkt))
        return True

    def recv(self, rid, timeout=5.0, with_meta=False):
        rid = _b(rid)
        deadline = time.monotonic() + timeout
        while not self.queues.get(rid):
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"no reply for {rid!r} within {timeout}s")
        via, fmt, pkt = self.queues[rid].pop(0)
        return (via, fmt, pkt) if with_meta else pkt

    def quiet(self, rid, timeout=0.5):
        """True when nothing arrives for rid within timeout."""
        rid = _b(rid)
        deadline = time.monotonic() + timeout
        while not self.queues.get(rid):
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                return True
        return False


class Session:
    """One stream request. start() sends the first packet; recv() returns the next reply and
    checks it (seq +1 each time, our id, zhttpd's from)."""

    def __init__(self, requester: Requester, rid=None, fmt="T"):
        self.rq = requester
        self.rid = _b(rid or f"s-{uuid.uuid4().hex[:12]}")
        self.fmt = fmt
        self.out_seq = 0
        self.in_seq = 0
        self.credits_given = 0
        self.body_received = 0
        self.stream = False

    def _base(self):
        return {"from": self.rq.ident, "id": self.rid, "seq": self.out_seq}

    def start(self, method="GET", uri=None, **fields):
        pkt = self._base()
        pkt.update(method=method, uri=uri)
        pkt.update(fields)
        self.credits_given += fields.get("credits", 0)
        self.stream = bool(fields.get("stream"))
        self.rq.first(pkt, self.fmt)
        self.out_seq += 1

    def send(self, **fields):
        pkt = self._base()
        pkt.update(fields)
        self.credits_given += fields.get("credits", 0)
        self.rq.later(pkt, self.fmt)
        self.out_seq += 1

    def credit(self, n):
        self.send(type="credit", credits=n)

    def recv(self, timeout=5.0, with_via=False):
        via, fmt, pkt = self.rq.recv(self.rid, timeout, with_meta=True)
        if fmt != self.fmt:
            raise ProtocolError(f"reply in format {fmt}, request was {self.fmt}")
        if _b(pkt.get("from")) != self.rq.zid:
            raise ProtocolError(f"reply without zhttpd's from: {pkt!r}")
        if pkt.get("seq") != self.in_seq:
            raise ProtocolError(f"reply seq {pkt.get('seq')}, expected {self.in_seq}: {pkt!r}")
        self.in_seq += 1
        if pkt.get("type") is None and "body" in pkt:
            self.body_received += len(_b(pkt["body"]))
            if self.stream and self.body_received > self.credits_given:
                raise ProtocolError(f"{self.body_received} body bytes received, only "
                                    f"{self.credits_given} credits granted")
        return (via, pkt) if with_via else pkt

    def quiet(self, timeout=0.5):
        return self.rq.quiet(self.rid, timeout)

    def ack(self, timeout=5.0):
        pkt = self.recv(timeout)
        t = _b(pkt.get("type"))
        if t not in (b"keep-alive", b"credit"):
            raise ProtocolError(f"expected an ack, got {pkt!r}")
        return pkt

    def response(self, step=None, timeout=10.0, pause=0.0):
        """Read the head and the whole body. step: credits granted each time the previous grant
        was used up (None: grant nothing, rely on the first packet's credits). Returns
        (head packet, body bytes, number of data packets)."""
        head = None
        body = bytearray()
        packets = 0
        deadline = time.monotonic() + timeout
        while True:
            pkt = self.recv(max(0.1, deadline - time.monotonic()))
            t = _b(pkt.get("type"))
            if t in (b"keep-alive", b"credit"):
                continue
            if t is not None:
                raise ProtocolError(f"response ended with {pkt!r}")
            packets += 1
            if head is None:
                if "code" not in pkt:
                    raise ProtocolError(f"first data packet without code: {pkt!r}")
                head = pkt
            body += _b(pkt.get("body", b""))
            if not pkt.get("more"):
                return head, bytes(body), packets
            if step and self.body_received >= self.credits_given:
                if pause:
                    time.sleep(pause)
                self.credit(step)


def start_daemon(rundir, conf="", args=(), workers=2, name="zhttpd"):
    """zhttpd in client mode on ipc://<rundir>/zc (stream sockets) and <base>-req, with a config
    file of [General] lines. The policy allows everything (defpolicy=allow, Zurl's meaning):
    these tests are about the protocol, the origins all live on 127.0.0.1. Returns (daemon, base).
    """
    from zhttpd import Zhttpd

    base = f"ipc://{rundir}/zc"
    path = rundir / f"{name}.conf"
    path.write_text("[General]\ndefpolicy = allow\n" + conf)
    d = Zhttpd(["--config", path, "--workers", str(workers), "--zserver-stream", base,
                "--zserver-req", f"{base}-req", "--log-level", "3", "--shutdown-timeout", "0",
                *args], rundir, name=name).start()
    return d, base
