"""Origins for the client-role acceptance tests (test_4x_*.py), all on loopback, each in a thread.

    AppOrigin()        aiohttp with a fixed set of routes (below); .url(path), .requests
    RawOrigin(fn)      a bare TCP listener: fn(conn, head, origin) writes whatever bytes a test needs
                       (HTTP/1.0, bytes that are not HTTP, a body that drips until the peer leaves);
                       .heads, .conns, .peer_closed (Event), .log
    FullBacklog()      a listener with backlog 0 whose accept queue is already full: connects to it
                       hang in SYN-SENT, which is how connection-timeout is provoked on loopback
    pattern(n)         the deterministic n-byte body the /big route serves

AppOrigin routes:
    /hello             200 text, repeated X-Multi and Set-Cookie headers
    /echo              200 JSON of what arrived: method, path, raw header pairs, body (latin-1)
    /big/N             N bytes of pattern(N), Content-Length, written in 64 KiB pieces
    /chunked           chunked body (no Content-Length), several pieces with pauses
    /slow/MS           waits MS ms, then 200 "slow done"
    /stall             headers and 5 bytes, then nothing for 30 s
    /redirect/N        302 to /redirect/N-1; /redirect/0 answers 200 "landed"
    /goto?to=URL       302 Location URL (any target)
    /status/CODE       that status, body "status CODE"
    /upload            reads the body piece by piece, answers JSON {len, sha256, te, cl}
    /gzip              a gzip-encoded body with Content-Encoding: gzip, whatever was asked
"""
import asyncio
import gzip
import logging
import hashlib
import json
import socket
import threading
import time

from aiohttp import web

HELLO = b"hello from origin\n"

# A requester that cancels makes aiohttp log "Error handling request" tracebacks: expected here.
logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)


def pattern(n: int) -> bytes:
    block = bytes(range(256)) * 256  # 64 KiB
    reps = n // len(block) + 1
    return (block * reps)[:n]


class AppOrigin:
    def __init__(self, host="127.0.0.1", port=0):
        self.host = host
        self.want_port = port
        self.port = None
        self.requests = []  # (method, path_qs, [(name, value) bytes], body)
        self.versions = []  # HTTP version of each request, e.g. (1, 1)
        self.active = 0     # /slow requests in progress, and the most seen at once
        self.max_active = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self._stop = None

    def url(self, path="/", host=None):
        return f"http://{host or self.host}:{self.port}{path}"

    # -- routes --
    async def _record(self, request, body=None):
        if body is None:
            body = await request.read()
        self.versions.append(tuple(request.version))
        self.requests.append((request.method, request.path_qs, list(request.raw_headers), body))
        return body

    async def hello(self, request):
        await self._record(request)
        resp = web.Response(body=HELLO, content_type="text/plain")
        resp.headers.add("X-Multi", "one")
        resp.headers.add("X-Multi", "two")
        resp.headers.add("Set-Cookie", "a=1; Path=/")
        resp.headers.add("Set-Cookie", "b=2; Path=/")
        return resp

    async def echo(self, request):
        body = await self._record(request)
        out = {"method": request.method, "path": request.path_qs,
               "version": "%d.%d" % tuple(request.version),
               "headers": [[k.decode("latin-1"), v.decode("latin-1")]
                           for k, v in request.raw_headers],
               "body": body.decode("latin-1")}
        return web.Response(body=json.dumps(out).encode(), content_type="application/json")

    async def big(self, request):
        await self._record(request)
        n = int(request.match_info["n"])
        data = pattern(n)
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = n
        await resp.prepare(request)
        for i in range(0, n, 65536):
            await resp.write(data[i:i + 65536])
        await resp.write_eof()
        return resp

    async def chunked(self, request):
        await self._record(request)
        resp = web.StreamResponse(headers={"Content-Type": "text/plain", "X-Shape": "chunked"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(5):
            await resp.write(b"piece %d\n" % i)
            await asyncio.sleep(0.05)
        await resp.write_eof()
        return resp

    async def slow(self, request):
        await self._record(request)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(int(request.match_info["ms"]) / 1000.0)
        finally:
            self.active -= 1
        return web.Response(body=b"slow done", content_type="text/plain")

    async def stall(self, request):
        await self._record(request)
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.content_length = 100
        await resp.prepare(request)
        await resp.write(b"12345")
        await asyncio.sleep(30)
        return resp

    async def redirect(self, request):
        await self._record(request)
        n = int(request.match_info["n"])
        if n == 0:
            return web.Response(body=b"landed", content_type="text/plain")
        return web.Response(status=302, headers={"Location": f"/redirect/{n - 1}"},
                            body=b"moved")

    async def goto(self, request):
        await self._record(request)
        return web.Response(status=302, headers={"Location": request.query["to"]}, body=b"moved")

    async def status(self, request):
        await self._record(request)
        code = int(request.match_info["code"])
        return web.Response(status=code, body=b"status %d" % code)

    async def upload(self, request):
        h = hashlib.sha256()
        n = 0
        async for piece in request.content.iter_any():
            h.update(piece)
            n += len(piece)
        self.requests.append((request.method, request.path_qs, list(request.raw_headers),
                              b"<%d bytes>" % n))
        out = {"len": n, "sha256": h.hexdigest(),
               "te": request.headers.get("Transfer-Encoding"),
               "cl": request.headers.get("Content-Length")}
        return web.Response(body=json.dumps(out).encode(), content_type="application/json")

    async def gz(self, request):
        await self._record(request)
        return web.Response(body=gzip.compress(b"compressed hello\n" * 20),
                            headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"})

    # -- lifecycle --
    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_until_complete(self._stop.wait())
        self.loop.run_until_complete(self.runner.cleanup())
        pending = asyncio.all_tasks(self.loop)
        for t in pending:
            t.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    async def _start(self):
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/hello", self.hello)
        app.router.add_route("*", "/echo", self.echo)
        app.router.add_route("*", "/big/{n}", self.big)
        app.router.add_route("*", "/chunked", self.chunked)
        app.router.add_route("*", "/slow/{ms}", self.slow)
        app.router.add_route("*", "/stall", self.stall)
        app.router.add_route("*", "/redirect/{n}", self.redirect)
        app.router.add_route("*", "/goto", self.goto)
        app.router.add_route("*", "/status/{code}", self.status)
        app.router.add_route("*", "/upload", self.upload)
        app.router.add_route("*", "/gzip", self.gz)
        self.runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.want_port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10), "aiohttp origin did not start"
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)


def read_head(conn, timeout=5.0):
    """Read up to the end of a request head; returns the bytes (b'' if the peer closed)."""
    conn.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    return data


class RawOrigin:
    """A TCP listener whose handler writes raw bytes. peer_closed is set when a handler sees the
    peer go away (handlers call origin.mark_closed())."""

    def __init__(self, handler, host="127.0.0.1", port=0):
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.heads = []
        self.conns = 0
        self.log = []
        self.peer_closed = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def url(self, path="/"):
        return f"http://{self.host}:{self.port}{path}"

    def wait_head(self, timeout=5.0):
        """Wait until a request head has arrived (so a later close is seen by the handler)."""
        deadline = time.monotonic() + timeout
        while not self.heads:
            assert time.monotonic() < deadline, "no request reached the origin"
            time.sleep(0.01)
        return self.heads[0]

    def mark_closed(self, why):
        self.log.append(why)
        self.peer_closed.set()

    def _accept(self):
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            head = read_head(conn)
            self.heads.append(head)
            if head:
                self.handler(conn, head, self)
        except Exception as e:  # noqa: BLE001 - kept for the test to read
            self.log.append(repr(e))
        finally:
            conn.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


# ---- raw handlers ----

def http10_handler(body=b"an HTTP/1.0 body without a length\n" * 3):
    """HTTP/1.0 answer, no Content-Length: the body ends when the origin closes."""
    def handler(conn, head, origin):
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nX-Version: 1.0\r\n\r\n")
        time.sleep(0.05)
        conn.sendall(body)
    return handler


def garbage_handler(conn, head, origin):
    """Bytes that are not HTTP, then close."""
    conn.sendall(b"\x16\x03\x01 this is not an HTTP response at all \x00\xff\r\n\r\n")
    time.sleep(0.1)


def silent_handler(conn, head, origin):
    """Reads the request and never answers (until the peer leaves or 30 s pass)."""
    conn.settimeout(30)
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass
    origin.mark_closed("silent: peer closed")


def drip_handler(conn, head, origin):
    """A chunked response that never ends: one small chunk every 20 ms until a send fails or the
    peer closes, which is recorded in origin.peer_closed."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.setblocking(False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn.send(b"10\r\n0123456789abcdef\r\n")
        except BlockingIOError:
            pass
        except OSError:
            origin.mark_closed("drip: send failed")
            return
        try:
            if conn.recv(4096) == b"":
                origin.mark_closed("drip: peer closed")
                return
        except BlockingIOError:
            pass
        except OSError:
            origin.mark_closed("drip: recv failed")
            return
        time.sleep(0.02)


class FullBacklog:
    """A listener with backlog 0 that is never accepted from, its queue filled by our own
    connections: a further connect gets no SYN-ACK and hangs."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(8):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            self.fillers.append(c)
            c.connect_ex(("127.0.0.1", self.port))
            if not self._connected(c, 0.3):
                break
        else:
            raise AssertionError("backlog-0 listener accepted 8 connections: cannot fill it")

    @staticmethod
    def _connected(c, timeout):
        import select
        _, w, _ = select.select([], [c], [], timeout)
        return bool(w) and c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        for c in self.fillers:
            c.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
