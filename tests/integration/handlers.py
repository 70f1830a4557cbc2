"""ZHTTP handlers for the server-mode tests (test_2x_*), usable against zhttpd and condure alike.

StreamHandler  a Condure-style stream handler with all three sockets: PULL <base>-out (new
               requests), ROUTER <base>-out-stream with identity = its `from` (the server's later
               packets: body, credit, cancel, handoff-proceed; and router-resp replies), PUB
               <base>-in (replies). It numbers its own packets per id and checks the server's seq.
AutoHandler    a StreamHandler in a background thread that answers every request (after reading
               its whole body under credits) and records what it saw, for tables of client cases.

Run as a script, `handlers.py resume ...` is the second process of the handoff test: it takes over
a paused session with its own `from` and finishes the response (see resume_main()).
"""
import hashlib
import json
import sys
import threading
import time

import zmq

import tnetstring_py as tns

__all__ = ["StreamHandler", "AutoHandler", "path_of"]

# Packet types a test usually doesn't care about when it waits for the next stream packet.
IDLE_TYPES = (b"keep-alive",)


def path_of(req) -> str:
    """The path+query of a request packet's uri ("http://h:1/a?b" -> "/a?b")."""
    uri = req["uri"].decode()
    rest = uri.split("://", 1)[1] if "://" in uri else uri
    i = rest.find("/")
    return rest[i:] if i >= 0 else "/"


class StreamHandler:
    def __init__(self, ctx, base, ident=b"handler1", settle=0.3, pull=True, pub=True):
        self.ident = ident
        self.ctx = ctx
        self.pull = self.router = self.pub = None
        if pull:
            self.pull = ctx.socket(zmq.PULL)
            self.pull.connect(f"{base}-out")
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTING_ID, ident)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.connect(f"{base}-out-stream")
        if pub:
            self.pub = ctx.socket(zmq.PUB)
            self.pub.connect(f"{base}-in")
        for s in (self.pull, self.router, self.pub):
            if s is not None:
                s.setsockopt(zmq.LINGER, 0)
        self.seq = {}        # id -> next seq we send
        self.rseq = {}       # id -> next seq we expect from the server
        self.server_peer = None  # the server ROUTER's identity, as seen on our ROUTER
        self.ids_seen = set()    # every request id received
        self.reused_ids = []     # ids that came again in a later request
        if settle:
            time.sleep(settle)  # let the server's SUB subscription reach our PUB

    def close(self):
        for s in (self.pull, self.router, self.pub):
            if s is not None:
                s.close(0)

    # -- receiving --

    def _check_seq(self, pkt):
        rid = pkt.get("id")
        if not isinstance(rid, bytes) or "seq" not in pkt:
            return
        want = self.rseq.get(rid, 0)
        if pkt.get("type") not in (b"cancel", b"error"):  # terminal ones may come out of order
            assert pkt["seq"] == want, \
                f"server seq {pkt['seq']} for {rid!r}, expected {want}: {pkt}"
        self.rseq[rid] = pkt["seq"] + 1

    def poll_request(self, timeout=0.0):
        """The next first packet from PULL, or None after timeout seconds."""
        if not self.pull.poll(int(timeout * 1000)):
            return None
        m = self.pull.recv()
        assert m[:1] == b"T", m[:40]
        pkt = tns.loads(m[1:])
        assert isinstance(pkt["id"], bytes) and pkt["seq"] == 0, pkt
        # A new session: both directions start at seq 0 again, even if the server reused an id
        # (which tests check separately, through reused_ids).
        if pkt["id"] in self.ids_seen:
            self.reused_ids.append(pkt["id"])
        self.ids_seen.add(pkt["id"])
        self.seq.pop(pkt["id"], None)
        self.rseq[pkt["id"]] = 1
        return pkt

    def recv_request(self, timeout=5.0):
        pkt = self.poll_request(timeout)
        assert pkt is not None, f"handler {self.ident!r} got no request within {timeout}s"
        return pkt

    def poll_stream(self, timeout=0.0, skip=IDLE_TYPES):
        """The next packet the server sent to our ROUTER (skipping keep-alives), or None."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            if not self.router.poll(int(left * 1000)):
                return None
            frames = self.router.recv_multipart()
            assert len(frames) == 3 and frames[1] == b"" and frames[2][:1] == b"T", frames
            self.server_peer = frames[0]
            pkt = tns.loads(frames[2][1:])
            if isinstance(pkt.get("id"), list):  # multi-id (batched keep-alive or cancel)
                if pkt.get("type") in skip:
                    continue
                return pkt
            self._check_seq(pkt)
            if pkt.get("type") in skip:
                continue
            return pkt

    def recv_stream(self, timeout=5.0, skip=IDLE_TYPES):
        pkt = self.poll_stream(timeout, skip)
        assert pkt is not None, f"handler {self.ident!r} got no stream packet within {timeout}s"
        return pkt

    # -- sending --

    def packet(self, rid: bytes, **fields) -> dict:
        """A packet from us for session rid, with from and the next seq; fields use ZHTTP names
        with '_' for '-' (router_resp -> router-resp)."""
        p = {"from": self.ident, "id": rid, "seq": self.seq.get(rid, 0)}
        self.seq[rid] = p["seq"] + 1
        for k, v in fields.items():
            p[k.replace("_", "-")] = v
        return p

    def send(self, to: bytes, pkt: dict):
        """PUB: one frame "<to> T...". """
        self.pub.send(to + b" T" + tns.dumps(pkt))

    def send_router(self, to: bytes, pkt: dict):
        """ROUTER: [to, "", T...] (router-resp)."""
        self.router.send_multipart([to, b"", b"T" + tns.dumps(pkt)])

    def _out(self, req, pkt, via):
        if via == "router":
            self.send_router(req["from"], pkt)
        else:
            self.send(req["from"], pkt)

    def announce(self, req, credits=None, via="pub"):
        """Tell the server our address: a keep-alive, or a credit packet if credits is given."""
        if credits is None:
            pkt = self.packet(req["id"], type="keep-alive")
        else:
            pkt = self.packet(req["id"], type="credit", credits=credits)
        self._out(req, pkt, via)

    def grant(self, req, n, via="pub"):
        self._out(req, self.packet(req["id"], type="credit", credits=n), via)

    def respond(self, req, code=200, reason="OK", headers=None, body=b"", more=False, via="pub",
                **extra):
        fields = dict(code=code, reason=reason,
                      headers=headers if headers is not None else [["Content-Type", "text/plain"]],
                      body=body, **extra)
        if more:
            fields["more"] = True
        self._out(req, self.packet(req["id"], **fields), via)

    def body(self, req, data, more=False, via="pub"):
        fields = {"body": data}
        if more:
            fields["more"] = True
        self._out(req, self.packet(req["id"], **fields), via)

    def read_body(self, req, grant=None, timeout=10.0):
        """Collect the request body of req under credits. grant: bytes to grant at a time (default:
        none up front other than an announce). Returns (body, packets). Asserts the server never
        sends more body than granted and that the last packet ends the body."""
        step = grant or 4096
        granted = step
        self.announce(req, credits=step)
        got = bytearray()
        pkts = []
        deadline = time.monotonic() + timeout
        while True:
            p = self.recv_stream(max(0.1, deadline - time.monotonic()))
            assert p["id"] == req["id"], p
            assert p.get("type") is None, f"expected body data, got {p}"
            pkts.append(p)
            got += p.get("body", b"")
            assert len(got) <= granted, f"server sent {len(got)} body bytes, only {granted} granted"
            if not p.get("more"):
                return bytes(got), pkts
            if len(got) == granted:
                granted += step
                self.grant(req, step)


class AutoHandler(threading.Thread):
    """Answers every request in a thread: announces itself with a credit grant, collects the body
    under credits (`grant` bytes at a time), then answers 200 with body "ok <path> <body-len>".
    Records requests (first packets, with the whole body under key "_body"), and cancels.

    Use as a context manager. requests_since(mark) returns the requests recorded after mark."""

    def __init__(self, ctx, base, ident=b"auto", grant=65536):
        super().__init__(daemon=True)
        self.ctx, self.base, self.handler_id, self.grant_step = ctx, base, ident, grant
        self.lock = threading.Lock()
        self.requests = []
        self.cancels = []
        self.errors = []
        self._quit = threading.Event()
        self._ready = threading.Event()

    def __enter__(self):
        self.start()
        assert self._ready.wait(5), "auto handler did not start"
        return self

    def __exit__(self, *exc):
        self._quit.set()
        self.join(5)
        assert not self.errors, f"auto handler failed: {self.errors}"

    def mark(self):
        """The position to pass to requests_since(); fails at once if the thread died."""
        assert not self.errors and self.is_alive(), f"auto handler failed: {self.errors}"
        with self.lock:
            return len(self.requests)

    def requests_since(self, mark):
        with self.lock:
            return list(self.requests[mark:])

    def wait_requests(self, mark, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.requests_since(mark)
            if len(got) >= n:
                return got
            time.sleep(0.01)
        return self.requests_since(mark)

    def run(self):
        h = StreamHandler(self.ctx, self.base, self.handler_id, settle=0.3)
        self._ready.set()
        pending = {}  # id -> [req, body bytearray, granted]
        try:
            poller = zmq.Poller()
            poller.register(h.pull, zmq.POLLIN)
            poller.register(h.router, zmq.POLLIN)
            while not self._quit.is_set():
                events = dict(poller.poll(50))
                if h.pull in events:
                    req = h.poll_request()
                    req["_body"] = b""
                    with self.lock:
                        self.requests.append(req)
                    if req.get("more"):
                        pending[req["id"]] = [req, bytearray(), self.grant_step]
                        h.announce(req, credits=self.grant_step)
                    else:
                        self._answer(h, req)
                if h.router in events:
                    p = h.poll_stream()
                    if p is None or isinstance(p.get("id"), list):
                        continue
                    if p.get("type") in (b"cancel", b"error"):
                        with self.lock:
                            self.cancels.append(p)
                        pending.pop(p["id"], None)
                        continue
                    st = pending.get(p["id"])
                    if st is None or p.get("type") is not None:
                        continue
                    req, body, granted = st
                    body += p.get("body", b"")
                    if len(body) > granted:
                        self.errors.append(f"server exceeded credits: {len(body)} > {granted}")
                    if not p.get("more"):
                        del pending[p["id"]]
                        with self.lock:
                            req["_body"] = bytes(body)
                        self._answer(h, req)
                    elif len(body) == granted:
                        st[2] += self.grant_step
                        h.grant(req, self.grant_step)
        except Exception as e:  # reported by __exit__
            self.errors.append(repr(e))
        finally:
            h.close()

    @staticmethod
    def _answer(h, req):
        text = f"ok {path_of(req)} {len(req['_body'])}\n".encode()
        h.respond(req, body=text)


def resume_main(argv):
    """handlers.py resume BASE IDENT SERVER_FROM ID SEQ RSEQ CREDITS SIZE MODE

    The new owner of a handed-off session: connects its own ROUTER (identity IDENT) and PUB to
    BASE and resumes session ID with seq SEQ (and RSEQ: the server's next seq, which it checks),
    sending SIZE body bytes: as many as the CREDITS it
    inherited allow at once, the rest as the server grants credits to *its* ROUTER. MODE "head":
    the first packet carries the response head (the old owner sent none; header X-Owner: IDENT);
    "body": the old owner already started the response, send body only. Prints one JSON line:
    {"sent", "sha256" of the bytes sent, "packets": the server packets received}."""
    base, ident, server_from, rid = argv[0], argv[1].encode(), argv[2].encode(), argv[3].encode()
    seq, rseq, credits, size, mode = int(argv[4]), int(argv[5]), int(argv[6]), int(argv[7]), argv[8]
    body = bytes((i * 7 + 3) & 0xFF for i in range(size))
    ctx = zmq.Context()
    h = StreamHandler(ctx, base, ident, settle=0.5, pull=False)
    h.seq[rid] = seq
    h.rseq[rid] = rseq
    fake_req = {"from": server_from, "id": rid}
    sent = min(credits, size)
    avail = credits - sent
    if mode == "head":
        h.respond(fake_req, headers=[["Content-Type", "application/octet-stream"],
                                     ["X-Owner", ident.decode()]],
                  body=body[:sent], more=sent < size)
    else:
        h.body(fake_req, body[:sent], more=sent < size)
    seen = []
    deadline = time.monotonic() + 15
    while sent < size and time.monotonic() < deadline:
        p = h.poll_stream(0.5)
        if p is None:
            continue
        seen.append({k: (v.decode() if isinstance(v, bytes) else v) for k, v in p.items()
                     if not isinstance(v, (list, dict))})
        if p.get("type") == b"credit":
            avail += p["credits"]
        elif p.get("type") in (b"cancel", b"error"):
            break
        n = min(avail, size - sent)
        if n > 0:
            h.body(fake_req, body[sent:sent + n], more=sent + n < size)
            sent += n
            avail -= n
    print(json.dumps({"sent": sent, "sha256": hashlib.sha256(body[:sent]).hexdigest(),
                      "packets": seen}), flush=True)
    time.sleep(0.2)  # let the last PUB frame leave
    h.close()
    ctx.term()
    return 0 if sent == size else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "resume":
        sys.exit(resume_main(sys.argv[2:]))
    sys.exit("usage: handlers.py resume BASE IDENT SERVER_FROM ID SEQ RSEQ CREDITS SIZE MODE")
