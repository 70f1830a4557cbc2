"""Origins for client-role tests that origin.py (http.server, whole bodies) cannot play.

    AioOrigin(setup)     aiohttp on 127.0.0.1 in a thread: setup(app) adds routes; streaming,
                         chunked and slow bodies. .url(path), .port
    RawOrigin(handler)   a bare TCP listener: handler(conn, head_bytes, origin) writes whatever
                         bytes the test needs (HTTP/1.0, garbage, half a body) on a thread per
                         connection. .closed records every connection the peer closed.
Every wait is bounded; nothing listens beyond 127.0.0.1."""
import asyncio
import socket
import threading
import time

from aiohttp import web


class AioOrigin:
    def __init__(self, setup, ssl=None):
        self.setup = setup
        self.ssl = ssl
        self.port = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.ready = threading.Event()
        self.stopped = None
        self.requests = []  # (method, path, headers, body)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_until_complete(self.stopped.wait())
        self.loop.run_until_complete(self.runner.cleanup())
        pending = asyncio.all_tasks(self.loop)
        for t in pending:
            t.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    async def _start(self):
        self.stopped = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.setup(app)
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.ssl)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def url(self, path="/"):
        scheme = "https" if self.ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10), "aiohttp origin did not start"
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stopped.set)
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


def wait_closed(conn, timeout=5.0):
    """True when the peer closes conn within timeout (anything it still sends is read away)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not conn.recv(65536):
                return True
        except socket.timeout:
            return False
        except OSError:
            return True
    return False


class RawOrigin:
    def __init__(self, handler, backlog=16):
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.heads = []
        self.closed = []   # indexes of connections the peer closed
        self.errors = []
        self.conns = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self):
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            idx = self.conns
            self.conns += 1
            threading.Thread(target=self._serve, args=(conn, idx), daemon=True).start()

    def _serve(self, conn, idx):
        try:
            head = read_head(conn)
            self.heads.append(head)
            if head:
                self.handler(conn, head, self)
        except Exception as e:  # noqa: BLE001 - recorded for the test to assert on
            self.errors.append(repr(e))
        finally:
            conn.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()
