"""A raw-socket origin that records the exact bytes of every request it receives (wire tests of the
client role: test_46_client_wire.py, test_47_client_origin_framing.py).

    WireOrigin(respond, host="127.0.0.1", tls=None)
        Keep-alive HTTP/1.1 listener on host. Each request is read exactly as framed
        (Content-Length, chunked, or no body) and kept in .requests as a WireRequest; respond(req,
        origin) returns the raw response bytes to write (None: close without answering). A response
        that says "Connection: close" closes the connection after it. tls=(cert, key) serves HTTPS.
        .conns counts accepted connections; .url(path).

    WireRequest: .raw (head + body as on the wire), .head (bytes up to the blank line), .lines
        (header lines, the request line excluded), .method, .target, .body (de-chunked), .conn
        (index of its connection).

    fixed(raw)      a responder that answers raw to every request
    ok()            a responder that answers 200 "ok" with a Content-Length
"""
import socket
import ssl
import threading


class WireRequest:
    def __init__(self, conn, head, body_wire, body):
        self.conn = conn
        self.head = head
        self.raw = head + body_wire
        self.body = body
        lines = head[:-4].split(b"\r\n")
        self.request_line = lines[0]
        self.method, self.target, _ = lines[0].split(b" ", 2)
        self.lines = lines[1:]

    def header_names(self):
        return [ln.split(b":", 1)[0].lower() for ln in self.lines]

    def values(self, name):
        name = name.lower().encode() if isinstance(name, str) else name.lower()
        return [ln.split(b":", 1)[1].strip() for ln in self.lines
                if ln.split(b":", 1)[0].lower() == name]

    def __repr__(self):
        return f"WireRequest({self.raw[:400]!r})"


def fixed(raw):
    return lambda req, origin: raw


def ok():
    return fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


class _Reader:
    def __init__(self, conn):
        self.conn = conn
        self.buf = b""

    def fill(self):
        chunk = self.conn.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def until(self, sep):
        while sep not in self.buf:
            self.fill()
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exactly(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


class WireOrigin:
    def __init__(self, respond=None, host="127.0.0.1", tls=None):
        self.respond = respond or ok()
        self.host = host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.ctx = None
        if tls:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        self.requests = []
        self.conns = 0
        self.errors = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def url(self, path="/"):
        scheme = "https" if self.ctx else "http"
        return f"{scheme}://{self.host}:{self.port}{path}"

    def _accept(self):
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            n = self.conns
            self.conns += 1
            threading.Thread(target=self._serve, args=(conn, n), daemon=True).start()

    def _read_request(self, rd, n):
        head = rd.until(b"\r\n\r\n")
        lines = [ln.lower() for ln in head.split(b"\r\n")[1:]]
        te = [ln for ln in lines if ln.startswith(b"transfer-encoding:")]
        cl = [ln for ln in lines if ln.startswith(b"content-length:")]
        if te:
            wire, body = b"", b""
            while True:
                size_line = rd.until(b"\r\n")
                wire += size_line
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    wire += rd.until(b"\r\n")  # no trailers are sent to us
                    break
                data = rd.exactly(size + 2)
                wire += data
                body += data[:-2]
            return WireRequest(n, head, wire, body)
        if cl:
            body = rd.exactly(int(cl[0].split(b":", 1)[1]))
            return WireRequest(n, head, body, body)
        return WireRequest(n, head, b"", b"")

    def _serve(self, conn, n):
        try:
            if self.ctx:
                conn = self.ctx.wrap_socket(conn, server_side=True)
            conn.settimeout(10)
            rd = _Reader(conn)
            while not self.stop.is_set():
                req = self._read_request(rd, n)
                self.requests.append(req)
                out = self.respond(req, self)
                if out is None:
                    return
                conn.sendall(out)
                if b"\r\nconnection: close\r\n" in out.split(b"\r\n\r\n", 1)[0].lower() + b"\r\n":
                    return
        except (EOFError, socket.timeout, ConnectionError, ssl.SSLError):
            pass
        except Exception as e:  # noqa: BLE001 - kept for the test to read
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
