"""A WebSocket origin for the client-role tests: python3-websockets 10.4 (asyncio API) in a thread
with its own event loop, on 127.0.0.1.

    WsOrigin(tls=None | (cert, key), compression=None | "deflate", extensions=None)
        .port, .url(path), .events (what the origin saw, in order), .requests (paths + headers)
    Paths: /echo echoes every message; a text message "close CODE REASON" makes the origin close
    with that code and reason; "ping DATA" makes it ping with DATA; /reject answers 403 with a
    body; /proto echoes and picks the subprotocol "chat" when offered.
"""
import asyncio
import http
import ssl
import threading

import websockets
import websockets.server

REJECT_BODY = b"go away: origin says no\n"


class WsOrigin:
    def __init__(self, tls=None, compression=None, extensions=None, subprotocols=None):
        self.tls = tls
        self.compression = compression
        self.extensions = extensions
        self.subprotocols = subprotocols
        self.events = []
        self.requests = []
        self.port = None
        self._loop = None
        self._thread = None
        self._ready = threading.Event()
        self._stop = None

    def url(self, path="/echo", host="127.0.0.1"):
        scheme = "wss" if self.tls else "ws"
        return f"{scheme}://{host}:{self.port}{path}"

    async def _process(self, path, headers):
        self.requests.append((path, list(headers.raw_items())))
        if path.startswith("/reject"):
            return (http.HTTPStatus.FORBIDDEN, [("Content-Type", "text/plain"),
                                                ("X-Origin", "yes")], REJECT_BODY)
        return None

    async def _handler(self, ws, path):
        self.events.append(("open", path, ws.subprotocol))
        try:
            async for msg in ws:
                self.events.append(("msg", msg))
                if isinstance(msg, str) and msg.startswith("close "):
                    _, code, reason = msg.split(" ", 2)
                    await ws.close(int(code), reason)
                    break
                if isinstance(msg, str) and msg.startswith("ping "):
                    await ws.ping(msg[5:].encode())
                    continue
                await ws.send(msg)
        except websockets.exceptions.ConnectionClosed:
            pass
        self.events.append(("closed", ws.close_code, ws.close_reason))

    async def _main(self):
        ctx = None
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
        kw = {}
        if self.extensions is not None:
            kw["extensions"] = self.extensions
        else:
            kw["compression"] = self.compression
        self._stop = asyncio.get_running_loop().create_future()
        async with websockets.serve(self._handler, "127.0.0.1", 0, ssl=ctx,
                                    process_request=self._process, max_size=4 * 1024 * 1024,
                                    subprotocols=self.subprotocols, **kw) as srv:
            self.port = srv.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    def _run(self):
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._main())
        self._loop.close()

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "websockets origin did not start"
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)
