"""Condure's timeout meaning on the server role: a connection that sends nothing, trickles an
incomplete head, or idles between keep-alive requests is closed once the smaller of --head-timeout
and its listener's timeout (--stream-timeout, --req-timeout for req listeners) has passed, counted
from accept or from the end of the previous response; bytes of an incomplete head do not extend it.

condure 1.9.1 (/usr/bin/condure) runs the stream-mode case too, to show zhttpd keeps its meaning:
it closes all three kinds after --stream-timeout (it has no --head-timeout). zhttpd answers a
partial head `408` before closing; condure closes without a word."""
import selectors
import socket
import threading
import time

import pytest

from handlers import AutoHandler
from peers import start_server
from srvkit import HttpConn, ReqHandler, get, start

TRICKLERS = 20
HEAD = b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"y" * 200


class Watch:
    """Sockets whose close times are recorded (relative to when each was registered); a trickling
    socket gets the next byte of HEAD every second until it is closed."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.socks = {}  # sock -> dict(name, t0, closed, data, trickle)

    def add(self, name, sock, trickle=False, t0=None):
        sock.setblocking(False)
        self.socks[sock] = {"name": name, "t0": t0 or time.monotonic(), "closed": None,
                            "data": b"", "trickle": 0 if trickle else None}
        self.sel.register(sock, selectors.EVENT_READ)

    def run(self, until):
        next_tick = time.monotonic()
        while time.monotonic() < until and any(s["closed"] is None for s in self.socks.values()):
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + 1.0
                for sock, st in self.socks.items():
                    if st["trickle"] is not None and st["closed"] is None and \
                            st["trickle"] < len(HEAD):
                        try:
                            sock.send(HEAD[st["trickle"]:st["trickle"] + 1])
                            st["trickle"] += 1
                        except OSError:
                            pass
            for key, _ in self.sel.select(timeout=max(0.0, min(next_tick, until) - now)):
                st = self.socks[key.fileobj]
                try:
                    d = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    d = b""
                if d:
                    st["data"] += d
                    continue
                st["closed"] = time.monotonic() - st["t0"]
                self.sel.unregister(key.fileobj)

    def results(self):
        return {st["name"]: (st["closed"], st["data"]) for st in self.socks.values()}

    def close(self):
        for sock in self.socks:
            sock.close()
        self.sel.close()


def keepalive_conn(port, answer=None):
    """A connection that made one request and got its response, then idles; (sock, t_response)."""
    c = HttpConn(port)
    c.send(get("/first"))
    if answer:
        answer()
    r = c.read_response()
    assert r.status == 200, r.status
    assert not c.buf
    return c.s, time.monotonic()


def check_closed(results, limit, after, kind):
    """Every watched connection closed in [limit - 0.5, limit + 1] s; partial heads got a 408
    (zhttpd) or nothing (condure)."""
    for name, (closed, data) in results.items():
        assert closed is not None, f"{kind}: {name} still open after {after} s"
        assert limit - 0.5 <= closed <= limit + 1.0, (kind, name, closed)
        if name.startswith("trickle") and kind == "zhttpd":
            assert data.startswith(b"HTTP/1.1 408 "), (name, data)
        else:
            assert data == b"", (kind, name, data)


def served_meanwhile(port, stop, errors, answer=None):
    """A normal client: a request every 0.3 s on fresh connections, each must get its 200."""
    n = 0
    while not stop.is_set():
        try:
            c = HttpConn(port)
            c.send(get(f"/ok{n}"))
            if answer:
                answer()
            r = c.read_response()
            c.close()
            if r is None or r.status != 200:
                errors.append(f"request {n}: {r and r.status}")
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(f"request {n}: {e!r}")
        n += 1
        time.sleep(0.3)
    return n


@pytest.mark.parametrize("kind", ["condure", "zhttpd"])
def test_stream_timeout_bounds_idle_trickling_and_keepalive_connections(kind, tmp_path, zctx):
    limit = 3
    srv = start_server(kind, tmp_path, workers=1, extra=["--stream-timeout", str(limit)])
    w = Watch()
    stop = threading.Event()
    errors = []
    try:
        with AutoHandler(zctx, srv.base, ident=b"auto") as auto:
            mark = auto.mark()
            w.add("idle", socket.create_connection(("127.0.0.1", srv.port)))
            for i in range(TRICKLERS):
                w.add(f"trickle{i}", socket.create_connection(("127.0.0.1", srv.port)),
                      trickle=True)
            sock, t_resp = keepalive_conn(srv.port)
            w.add("keepalive", sock, t0=t_resp)
            normal = threading.Thread(target=served_meanwhile, args=(srv.port, stop, errors))
            normal.start()
            w.run(time.monotonic() + limit + 3)
            stop.set()
            normal.join(10)
            check_closed(w.results(), limit, limit + 3, kind)
            assert not errors, errors
            paths = [r["uri"].split(b"/", 3)[3] for r in auto.requests_since(mark)]
            assert b"slow" not in paths, "a partial head reached the handler"
            assert len([p for p in paths if p.startswith(b"ok")]) >= 8, paths
        if kind == "zhttpd":
            srv.daemon.wait_log(r"no request within the head timeout \(3000 ms\), closed")
            srv.daemon.wait_log(r"request head not complete within 3000 ms: 408")
    finally:
        stop.set()
        w.close()
        srv.stop()


def test_req_timeout_bounds_idle_trickling_and_keepalive_connections(rundir, zctx):
    limit = 2
    d, info = start(rundir, "--req-timeout", str(limit), stream=False, req=True)
    h = ReqHandler(zctx, info["req_spec"])
    port = info["req_port"]
    w = Watch()
    try:
        w.add("idle", socket.create_connection(("127.0.0.1", port)))
        for i in range(5):
            w.add(f"trickle{i}", socket.create_connection(("127.0.0.1", port)), trickle=True)

        def answer():
            env, pkt = h.recv()
            h.reply(env, {"id": pkt["id"], "code": 200, "reason": "OK", "headers": [],
                          "body": b"fine"})

        sock, t_resp = keepalive_conn(port, answer)
        w.add("keepalive", sock, t0=t_resp)
        w.run(time.monotonic() + limit + 3)
        # a normal client is served after the timeout, on a fresh connection
        c = HttpConn(port)
        c.send(get("/after"))
        answer()
        assert c.read_response().body == b"fine"
        c.close()
        check_closed(w.results(), limit, limit + 3, "zhttpd")
        d.wait_log(r"request head not complete within 2000 ms: 408")
    finally:
        w.close()
        h.close()
        d.stop()


def test_head_timeout_alone_applies_when_no_listener_timeout_is_smaller(rundir, zctx):
    limit = 2  # --stream-timeout stays at its default (1800 s)
    d, info = start(rundir, "--head-timeout", str(limit))
    port = info["port"]
    w = Watch()
    try:
        with AutoHandler(zctx, info["base"], ident=b"auto"):
            w.add("idle", socket.create_connection(("127.0.0.1", port)))
            w.add("trickle", socket.create_connection(("127.0.0.1", port)), trickle=True)
            sock, t_resp = keepalive_conn(port)
            w.add("keepalive", sock, t0=t_resp)
            w.run(time.monotonic() + limit + 3)
            check_closed(w.results(), limit, limit + 3, "zhttpd")
        d.wait_log(r"no request within the head timeout \(2000 ms\), closed")
    finally:
        w.close()
        d.stop()
