"""Small real HTTP origin servers for tests, on 127.0.0.1 in a background thread."""
import http.server
import threading


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep pytest output clean
        pass

    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body_in = self.rfile.read(n) if n else b""
        self.server.requests.append((self.command, self.path, dict(self.headers), body_in))
        route = self.server.routes.get(self.path)
        if route is None:
            status, headers, body = 404, [("Content-Type", "text/plain")], b"not found\n"
        else:
            status, headers, body = route(self.command, self.path, self.headers, body_in)
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _answer


class Origin:
    """A threaded HTTP/1.1 origin. routes maps path -> fn(method, path, headers, body) returning
    (status, [(name, value), ...], body bytes). Requests seen are kept in .requests."""

    def __init__(self, routes=None):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.routes = routes or {}
        self.httpd.requests = []
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def requests(self):
        return self.httpd.requests

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
