"""Client-role acceptance kit (tests/integration/test_4x_*.py): the same tests run against zhttpd and
against Debian's Zurl, started from the same Zurl config file.

    binary                 fixture, "zhttpd" or "zurl" (every test that uses `daemon` runs on both)
    daemon(conf=..., ...)  fixture: a factory that starts that binary on a generated Zurl config
                           ([General] instance_id, in_spec, in_stream_spec, out_spec, in_req_spec as
                           ipc paths in the test's run directory, defpolicy=allow unless the test
                           says otherwise) and stops it (checked) at teardown
    zhttpd_only(reason)    decorator: the test runs for zhttpd only; the zurl case is reported as
                           skipped with the reason (a deliberate improvement or a zhttpd-only key)
    zurl_xfail(reason)     decorator: Zurl is known to fail this test, for the reason given
    Requester(ctx, d)      a Zurl-style stream requester: PUSH (first packets), ROUTER with identity
                           = its `from` (later packets, [instance-id, "", T…]) and SUB subscribed to
                           "<from> " (replies)
    Session(rq)            one stream request: seq counters, credit accounting (body bytes received
                           never exceed credits granted), reply checks (from, id, seq, user-data)
    ReqClient(ctx, d)      req mode over REQ or DEALER

Only loopback addresses and ipc paths are used. Every wait is bounded."""
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time
import uuid

import pytest
import zmq

import tnetstring_py as tns
from zhttpd import SANITIZER_MARKERS, Zhttpd

ZURL = shutil.which("zurl") or "/usr/bin/zurl"
BINARIES = ("zhttpd", "zurl")


# ---- encoding ----------------------------------------------------------------------------------

def _b(v):
    return v.encode() if isinstance(v, str) else v


def _jsonable(v):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8")
    if isinstance(v, dict):
        return {(k.decode() if isinstance(k, bytes) else k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def encode(pkt: dict, fmt="T") -> bytes:
    if fmt == "J":
        return b"J" + json.dumps(_jsonable(pkt)).encode()
    return b"T" + tns.dumps(pkt)


def _bytesify(v):
    """J replies normalised to the T shapes (str -> bytes) so one set of assertions serves both."""
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, dict):
        return {k: _bytesify(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_bytesify(x) for x in v]
    return v


def decode(payload: bytes):
    """(format, packet) of a `T` or `J` payload. J strings are turned into bytes like T's."""
    if payload[:1] == b"T":
        return "T", tns.loads(payload[1:])
    if payload[:1] == b"J":
        return "J", _bytesify(json.loads(payload[1:]))
    raise AssertionError(f"reply in an unknown format: {payload[:60]!r}")


# ---- daemons -----------------------------------------------------------------------------------

def zhttpd_only(reason):
    """Run the decorated test for zhttpd only; the zurl case is skipped with `reason`."""
    return pytest.mark.parametrize("binary", [
        pytest.param("zhttpd"),
        pytest.param("zurl", marks=pytest.mark.skip(reason=f"zhttpd only: {reason}")),
    ], indirect=True)


def zurl_xfail(reason):
    """Zurl 1.11.1 fails the decorated test (strictly: an unexpected pass is reported)."""
    return pytest.mark.parametrize("binary", [
        pytest.param("zhttpd"),
        pytest.param("zurl", marks=pytest.mark.xfail(strict=True, reason=f"zurl: {reason}")),
    ], indirect=True)


class ZurlProc:
    """Debian's zurl on a config file, with the same small interface as Zhttpd."""

    def __init__(self, conf_path, rundir, name="zurl", verbose=False, env=None):
        self.args = [ZURL, f"--config={conf_path}"] + (["--verbose"] if verbose else [])
        self.env = dict(os.environ, **(env or {}))
        self.rundir = pathlib.Path(rundir)
        self.log_path = self.rundir / f"{name}.log"
        self.proc = None
        self._log = None

    def start(self, timeout=10.0):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self.rundir, env=self.env)
        self.wait_log(r"\bstarted\b", timeout)
        return self

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=10.0, count=1):
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            text = self.log()
            if len(rx.findall(text)) >= count:
                return text
            if self.proc.poll() is not None:
                raise AssertionError(f"zurl exited ({self.proc.returncode}) before /{pattern}/:"
                                     f"\n{text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for /{pattern}/ in zurl's log:\n{text}")
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10.0):
        if self.proc is None:
            return 0.0
        t0 = time.monotonic()
        crashed = self.proc.poll() is not None
        if not crashed:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        assert not crashed, f"zurl died during the test ({self.proc.returncode}):\n{self.log()}"
        return time.monotonic() - t0


class Daemon:
    """One running client-role daemon (zhttpd or zurl) and the endpoints from its config."""

    def __init__(self, kind, rundir, conf_lines, instance_id, args=(), name=None, verbose=False,
                 defpolicy="allow", env=None):
        self.kind = kind
        self.rundir = pathlib.Path(rundir)
        self.instance_id = _b(instance_id)
        name = name or kind
        sub = self.rundir / name
        sub.mkdir(exist_ok=True)
        self.in_ep = f"ipc://{sub}/in"
        self.stream_ep = f"ipc://{sub}/ins"
        self.out_ep = f"ipc://{sub}/out"
        self.req_ep = f"ipc://{sub}/req"
        lines = ["[General]", f"instance_id={instance_id}", f"in_spec={self.in_ep}",
                 f"in_stream_spec={self.stream_ep}", f"out_spec={self.out_ep}",
                 f"in_req_spec={self.req_ep}"]
        if defpolicy is not None:
            lines.append(f"defpolicy={defpolicy}")
        lines += list(conf_lines)
        self.conf_path = self.rundir / f"{name}.conf"
        self.conf_path.write_text("\n".join(lines) + "\n")
        if kind == "zhttpd":
            self.proc = Zhttpd(["--config", self.conf_path, "--shutdown-timeout", "0", *args],
                               self.rundir, name=name, env=env)
        else:
            self.proc = ZurlProc(self.conf_path, self.rundir, name=name, verbose=verbose, env=env)
        self.stopped = False

    def start(self):
        self.proc.start()
        return self

    def log(self):
        return self.proc.log()

    def wait_log(self, pattern, timeout=10.0):
        return self.proc.wait_log(pattern, timeout)

    def alive(self):
        return self.proc.alive()

    def stop(self):
        if not self.stopped:
            self.stopped = True
            self.proc.stop()


@pytest.fixture(params=BINARIES)
def binary(request):
    if request.param == "zurl" and not os.access(ZURL, os.X_OK):
        pytest.skip("Debian's zurl is not installed")
    return request.param


@pytest.fixture
def daemon(binary, rundir):
    """daemon(conf=["key=value", ...], args=[zhttpd flags], defpolicy="allow"|None, env={...})
    -> a started Daemon. defpolicy=None leaves the key out (zhttpd's default policy applies)."""
    started = []

    def start(conf=(), args=(), instance_id=None, defpolicy="allow", name=None, verbose=False,
              env=None):
        iid = instance_id or f"{binary}-{uuid.uuid4().hex[:6]}"
        d = Daemon(binary, rundir, conf, iid, args=args, name=name, verbose=verbose,
                   defpolicy=defpolicy, env=env)
        started.append(d)
        return d.start()

    yield start
    errors = []
    for d in started:
        try:
            d.stop()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


# ---- req mode ----------------------------------------------------------------------------------

class ReqClient:
    """Req mode: a REQ socket sends [T…]; a DEALER sends ["", T…]. Both connect to in_req_spec."""

    def __init__(self, ctx, daemon, kind="REQ"):
        self.kind = kind
        self.sock = ctx.socket(zmq.REQ if kind == "REQ" else zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(daemon.req_ep)

    def send_raw(self, payload: bytes):
        if self.kind == "REQ":
            self.sock.send(payload)
        else:
            self.sock.send_multipart([b"", payload])

    def send(self, pkt, fmt="T"):
        self.send_raw(encode(pkt, fmt))

    def recv(self, timeout=10.0, fmt_out=False):
        if not self.sock.poll(int(timeout * 1000)):
            raise AssertionError(f"no req-mode reply within {timeout}s")
        frames = self.sock.recv_multipart()
        if self.kind == "DEALER":
            assert len(frames) == 2 and frames[0] == b"", f"DEALER reply frames {frames!r}"
        else:
            assert len(frames) == 1, f"REQ reply frames {frames!r}"
        fmt, pkt = decode(frames[-1])
        return (fmt, pkt) if fmt_out else pkt

    def silent(self, timeout=1.0):
        return not self.sock.poll(int(timeout * 1000))

    def call(self, pkt, fmt="T", timeout=10.0):
        self.send(pkt, fmt)
        return self.recv(timeout)

    def close(self):
        self.sock.close(0)


# ---- stream mode -------------------------------------------------------------------------------

class Requester:
    """A Zurl-style stream requester, as Pushpin's proxy is to Zurl."""

    def __init__(self, ctx, daemon, ident=None):
        self.daemon = daemon
        self.ident = _b(ident or f"rq-{uuid.uuid4().hex[:8]}")
        self.zid = daemon.instance_id
        self.push = ctx.socket(zmq.PUSH)
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.IDENTITY, self.ident)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, self.ident + b" ")
        for s in (self.push, self.router, self.sub):
            s.setsockopt(zmq.LINGER, 0)
        self.push.connect(daemon.in_ep)
        self.router.connect(daemon.stream_ep)
        self.sub.connect(daemon.out_ep)
        self.poller = zmq.Poller()
        self.poller.register(self.sub, zmq.POLLIN)
        self.poller.register(self.router, zmq.POLLIN)
        self.queues = {}  # id -> [(via, fmt, packet)]
        self.raw = []     # every frame received, in order: (via, bytes)
        self._ready()

    def _ready(self, timeout=5.0):
        """Both daemons answer `cancel` to a packet for an unknown session (ZHTTP.md §4.1): probe
        through the ROUTER until a cancel comes back on the SUB, so the subscription and the
        ROUTER connection are known to be up before the test starts."""
        deadline = time.monotonic() + timeout
        n = 0
        while time.monotonic() < deadline:
            n += 1
            self.later({"from": self.ident, "id": f"probe-{n}", "seq": 1, "type": "keep-alive"},
                       timeout=max(0.1, deadline - time.monotonic()))
            if self._read(0.1):
                break
        time.sleep(0.05)
        while self._read(0.02):
            pass
        for k in [k for k in self.queues if k.startswith(b"probe-")]:
            del self.queues[k]

    def first(self, pkt, fmt="T"):
        self.push.send(encode(pkt, fmt))

    def first_raw(self, payload: bytes):
        self.push.send(payload)

    def later_raw(self, payload: bytes, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.router.send_multipart([self.zid, b"", payload])
                return
            except zmq.error.ZMQError as e:  # EHOSTUNREACH until the connection is up
                if time.monotonic() > deadline:
                    raise AssertionError(f"cannot reach the daemon's in_stream_spec: {e}")
                time.sleep(0.02)

    def later(self, pkt, fmt="T", timeout=5.0):
        self.later_raw(encode(pkt, fmt), timeout)

    def _read(self, timeout):
        events = dict(self.poller.poll(int(timeout * 1000)))
        if not events:
            return False
        if self.sub in events:
            frame = self.sub.recv()
            self.raw.append(("pub", frame))
            addr, sp, payload = frame.partition(b" ")
            assert addr == self.ident and sp, f"PUB frame for {addr!r}: {frame[:80]!r}"
            via = "pub"
        else:
            frames = self.router.recv_multipart()
            self.raw.append(("router", frames))
            assert len(frames) == 3 and frames[0] == self.zid and frames[1] == b"", \
                f"ROUTER message with frames {frames!r}"
            payload = frames[2]
            via = "router"
        fmt, pkt = decode(payload)
        ids = pkt.get("id")
        key = ids if isinstance(ids, bytes) else b"<multi>"
        self.queues.setdefault(key, []).append((via, fmt, pkt))
        return True

    def recv(self, rid, timeout=10.0, meta=False):
        rid = _b(rid)
        deadline = time.monotonic() + timeout
        while not self.queues.get(rid):
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"no reply for {rid!r} within {timeout}s")
        via, fmt, pkt = self.queues[rid].pop(0)
        return (via, fmt, pkt) if meta else pkt

    def quiet(self, rid, timeout=1.0):
        """True when nothing arrives for rid within timeout."""
        rid = _b(rid)
        deadline = time.monotonic() + timeout
        while not self.queues.get(rid):
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                return True
        return False

    def close(self):
        for s in (self.push, self.router, self.sub):
            s.close(0)


class Session:
    """One stream request. Every reply is checked: one `T`/`J` frame in the request's format, the
    daemon's `from`, our id, seq 0,1,2,… and (when the request had user-data) that value echoed.
    Body bytes received are checked against credits granted at every packet."""

    def __init__(self, rq: Requester, rid=None, fmt="T", user_data=None):
        self.rq = rq
        self.rid = _b(rid or f"s-{uuid.uuid4().hex[:12]}")
        self.fmt = fmt
        self.user_data = user_data
        self.out_seq = 0
        self.in_seq = 0
        self.credits_given = 0
        self.body_received = 0
        self.streamed = True
        self.packets = []

    def _base(self):
        p = {"from": self.rq.ident, "id": self.rid, "seq": self.out_seq}
        return p

    def start(self, method="GET", uri=None, stream=True, credits=None, **fields):
        pkt = self._base()
        pkt["method"] = method
        if uri is not None:
            pkt["uri"] = uri
        if stream is not None:
            pkt["stream"] = stream
        self.streamed = bool(stream)
        if credits is not None:
            pkt["credits"] = credits
            self.credits_given += credits
        if self.user_data is not None:
            pkt["user-data"] = self.user_data
        for k, v in fields.items():
            pkt[k.replace("_", "-")] = v
        self.rq.first(pkt, self.fmt)
        self.out_seq += 1
        return pkt

    def send(self, seq=None, **fields):
        pkt = self._base()
        if seq is not None:
            pkt["seq"] = seq
        for k, v in fields.items():
            pkt[k.replace("_", "-")] = v
        self.credits_given += fields.get("credits", 0)
        self.rq.later(pkt, self.fmt)
        self.out_seq += 1
        return pkt

    def credit(self, n):
        return self.send(type="credit", credits=n)

    def cancel(self):
        return self.send(type="cancel")

    def recv(self, timeout=10.0, check_seq=True):
        via, fmt, pkt = self.rq.recv(self.rid, timeout, meta=True)
        self.packets.append(pkt)
        assert via == "pub", f"reply via {via}: {pkt!r}"
        assert fmt == self.fmt, f"reply in format {fmt}, request was {self.fmt}: {pkt!r}"
        assert pkt.get("from") == self.rq.zid, f"reply without the daemon's from: {pkt!r}"
        assert pkt.get("id") == self.rid, pkt
        if check_seq:
            assert pkt.get("seq") == self.in_seq, f"reply seq {pkt.get('seq')}, expected " \
                                                  f"{self.in_seq}: {pkt!r}"
        self.in_seq += 1
        if self.user_data is not None:
            assert pkt.get("user-data") == _bytesify(self.user_data), \
                f"user-data not echoed: {pkt!r}"
        if pkt.get("type") is None and "body" in pkt:
            self.body_received += len(pkt["body"])
            assert not self.streamed or self.body_received <= self.credits_given, \
                f"{self.body_received} body bytes received, only {self.credits_given} credits " \
                f"granted"
        return pkt

    def quiet(self, timeout=1.0):
        return self.rq.quiet(self.rid, timeout)

    def ack(self, timeout=10.0):
        pkt = self.recv(timeout)
        assert pkt.get("type") in (b"keep-alive", b"credit"), f"expected an ack, got {pkt!r}"
        return pkt

    def error(self, timeout=10.0):
        """Skip acks and data (a response may have started); the next packet must be an error.
        Returns its condition."""
        while True:
            pkt = self.recv(timeout)
            if pkt.get("type") in (None, b"keep-alive", b"credit"):
                continue
            assert pkt.get("type") == b"error", f"expected an error, got {pkt!r}"
            return pkt.get("condition")

    def response(self, step=None, timeout=15.0, pause=0.0, on_packet=None, head=None):
        """Read the head and the whole body. step: credits granted each time the previous grant is
        used up (None: none beyond what was already granted). head: the head packet if the caller
        already read it. Returns (head, body, data packets)."""
        body = bytearray()
        packets = 0
        deadline = time.monotonic() + timeout
        while True:
            pkt = self.recv(max(0.1, deadline - time.monotonic()))
            t = pkt.get("type")
            if t in (b"keep-alive", b"credit"):
                continue
            assert t is None, f"response ended with {pkt!r} after {len(body)} body bytes"
            packets += 1
            if head is None:
                assert "code" in pkt, f"first data packet without code: {pkt!r}"
                head = pkt
            else:
                assert "code" not in pkt, f"code repeated on a later data packet: {pkt!r}"
            body += pkt.get("body", b"")
            if on_packet:
                on_packet(pkt)
            if not pkt.get("more"):
                return head, bytes(body), packets
            if step and self.body_received >= self.credits_given:
                if pause:
                    time.sleep(pause)
                self.credit(step)


def header_values(headers, name):
    name = _b(name).lower()
    return [v for k, v in headers if k.lower() == name]


def no_sanitizer_report(text):
    return not any(m in text for m in SANITIZER_MARKERS)
