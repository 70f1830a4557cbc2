"""Helpers for the server-role tests (test_1x_server_*): Condure-style handlers speaking ZHTTP over
pyzmq, a small raw HTTP/1.x client that shows exactly what zhttpd wrote, and a daemon starter.

Every wait is bounded; everything talks to 127.0.0.1 (or ::1 / a unix socket) only."""
import socket
import time

import zmq

import tnetstring_py as tns
from conftest import free_port
from zhttpd import Zhttpd

INSTANCE = b"zhttpd"


def free_base_port(n=3):
    """A TCP port P such that P..P+n-1 are free now (for tcp:// ZeroMQ bases)."""
    for _ in range(50):
        p = free_port()
        if p + n > 65535:
            continue
        socks = []
        try:
            for k in range(n):
                s = socket.socket()
                s.bind(("127.0.0.1", p + k))
                socks.append(s)
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free port range")


class StreamHandler:
    """A stream-mode handler as Condure's README describes (PULL + ROUTER + PUB), which also reads
    what zhttpd sends through the ROUTER (credits, keep-alives, cancels)."""

    def __init__(self, ctx, base, ident=b"h1", multi=True, settle=0.3):
        self.ident = ident
        self.multi = multi
        self.seq = {}
        self.pull = ctx.socket(zmq.PULL)
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.IDENTITY, ident)
        self.pub = ctx.socket(zmq.PUB)
        for s in (self.pull, self.router, self.pub):
            s.setsockopt(zmq.LINGER, 0)
        self.pull.connect(f"{base}-out")
        self.router.connect(f"{base}-out-stream")
        self.pub.connect(f"{base}-in")
        time.sleep(settle)  # let zhttpd's SUB see our PUB, and its PUSH/ROUTER see us

    def close(self):
        for s in (self.pull, self.router, self.pub):
            s.close(0)

    def recv_request(self, timeout_ms=5000):
        assert self.pull.poll(timeout_ms), "handler got no request"
        m = self.pull.recv()
        assert m[:1] == b"T"
        return tns.loads(m[1:])

    def no_request(self, wait_ms):
        return not self.pull.poll(wait_ms)

    def send(self, rid, **fields):
        """Send one packet for session rid through PUB, with our from, the next seq and ext.multi."""
        pkt = {"from": self.ident, "id": rid, "seq": self.seq.get(rid, 0)}
        self.seq[rid] = pkt["seq"] + 1
        if self.multi:
            pkt["ext"] = {"multi": True}
        pkt.update(fields)
        self.pub.send(INSTANCE + b" T" + tns.dumps(pkt))

    def ack(self, rid, credits=None):
        if credits is None:
            self.send(rid, type="keep-alive")
        else:
            self.send(rid, type="credit", credits=credits)

    def respond(self, rid, code=200, reason="OK", headers=(), body=b"", more=False):
        f = {"code": code, "reason": reason, "headers": [list(h) for h in headers], "body": body}
        if more:
            f["more"] = True
        self.send(rid, **f)

    def recv_router(self, timeout_ms=5000):
        """The next packet zhttpd sent to us through its ROUTER, or None."""
        if not self.router.poll(timeout_ms):
            return None
        frames = self.router.recv_multipart()
        assert frames[0] == INSTANCE and frames[1] == b"", frames
        assert frames[2][:1] == b"T"
        return tns.loads(frames[2][1:])

    def wait_router(self, pred, timeout_s=5.0):
        """Read ROUTER packets until pred(pkt) is true; returns (match, everything read)."""
        seen = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pkt = self.recv_router(int(max(1, (deadline - time.monotonic()) * 1000)))
            if pkt is None:
                break
            seen.append(pkt)
            if pred(pkt):
                return pkt, seen
        return None, seen


class ReqHandler:
    """A req-mode handler: a ROUTER connected to zhttpd's DEALER (--zclient-req)."""

    def __init__(self, ctx, spec, settle=0.3):
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(spec)
        time.sleep(settle)

    def close(self):
        self.sock.close(0)

    def recv(self, timeout_ms=5000):
        """Returns (envelope frames, packet)."""
        assert self.sock.poll(timeout_ms), "req handler got no request"
        frames = self.sock.recv_multipart()
        assert frames[-2] == b"" and frames[-1][:1] == b"T", frames
        return frames[:-1], tns.loads(frames[-1][1:])

    def no_request(self, wait_ms):
        return not self.sock.poll(wait_ms)

    def reply(self, env, pkt):
        self.sock.send_multipart(env + [b"T" + tns.dumps(pkt)])


class Response:
    def __init__(self, status, reason, headers, body, raw, interim):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) as sent
        self.body = body
        self.raw = raw
        self.interim = interim  # 1xx heads seen before this response

    def header(self, name):
        vals = [v for n, v in self.headers if n.lower() == name.lower()]
        return vals[0] if vals else None

    def has_header(self, name):
        return any(n.lower() == name.lower() for n, _ in self.headers)


class HttpConn:
    """One client connection writing raw bytes and reading responses exactly as sent."""

    def __init__(self, port=None, host="127.0.0.1", unix=None, timeout=5.0, sock=None):
        if sock is not None:
            self.s = sock
        elif unix:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.connect(unix)
        else:
            self.s = socket.create_connection((host, port), timeout=timeout)
        self.s.settimeout(timeout)
        self.buf = b""
        self.eof = False

    def close(self):
        self.s.close()

    def send(self, data: bytes):
        self.s.sendall(data)

    def _fill(self):
        if self.eof:
            return False
        try:
            d = self.s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def _line(self):
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed mid-head: {self.buf!r}")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed mid-body ({len(self.buf)} of {n})")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, head=False):
        interim = []
        while True:
            status_line = self._line()
            parts = status_line.split(b" ", 2)
            assert parts[0].startswith(b"HTTP/1."), status_line
            status = int(parts[1])
            reason = parts[2].decode() if len(parts) > 2 else ""
            headers = []
            while True:
                line = self._line()
                if not line:
                    break
                n, _, v = line.partition(b":")
                headers.append((n.decode(), v.strip().decode()))
            if 100 <= status < 200:
                interim.append(status)
                continue
            break
        r = Response(status, reason, headers, b"", None, interim)
        te = r.header("Transfer-Encoding")
        cl = r.header("Content-Length")
        if head or status in (204, 304):
            body = b""
        elif te and "chunked" in te.lower():
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._take(size)
                assert self._take(2) == b"\r\n"
        elif cl is not None:
            body = self._take(int(cl))
        else:
            while self._fill():
                pass
            body, self.buf = self.buf, b""
        r.body = body
        return r

    def read_until_closed(self, timeout=3.0):
        """Everything the server sends until it closes; None if it is still open after timeout."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.s.settimeout(left)
            try:
                self._fill()
            except socket.timeout:
                return None
        data, self.buf = self.buf, b""
        return data

    def closed_by_peer(self, timeout=3.0):
        """True when the server closes the connection within timeout (with nothing more sent)."""
        self.s.settimeout(timeout)
        try:
            d = self.s.recv(1)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        return d == b""


def get(path="/", host="a", extra=b"", version=b"1.1"):
    return b"GET " + path.encode() + b" HTTP/" + version + b"\r\nHost: " + host.encode() + \
        b"\r\n" + extra + b"\r\n"


def start(rundir, *extra, workers=1, stream=True, req=False, listen_extra=(), log_level=3,
          base=None):
    """Start zhttpd with a stream listener (and/or a req listener) on free ports. Returns
    (daemon, info) where info has port, req_port, base (stream sockets) and req_spec."""
    info = {}
    args = ["--workers", str(workers), "--log-level", str(log_level)]
    if stream:
        info["port"] = free_port()
        info["base"] = base or f"ipc://{rundir}/zs"
        args += ["--listen", f"127.0.0.1:{info['port']}", "--zclient-stream", info["base"]]
    if req:
        info["req_port"] = free_port()
        info["req_spec"] = f"ipc://{rundir}/zreq"
        args += ["--listen", f"127.0.0.1:{info['req_port']},req", "--zclient-req",
                 info["req_spec"]]
    for spec in listen_extra:
        args += ["--listen", spec]
    args += [str(a) for a in extra]
    d = Zhttpd(args, rundir).start()
    return d, info
