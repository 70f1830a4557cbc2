"""A raw-socket HTTP/1.x client for the server-mode tests: send exact bytes, read responses with a
deadline, and tell "answered" from "closed" from "hung".

    c = RawClient(port)
    c.send(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    r = c.read_response()            # HttpResponse, or None if the server closed before any byte
    assert c.wait_closed()           # the server closed the connection (EOF or reset)

Every read is bounded: a response that does not arrive in time raises AssertionError, never hangs.
Bodies are de-framed (Content-Length, chunked, or until close); r.raw keeps the bytes as received.
"""
import socket
import time

__all__ = ["HttpResponse", "RawClient", "exchange"]


class HttpResponse:
    def __init__(self, version, status, reason, headers, body, raw):
        self.version = version      # "HTTP/1.1"
        self.status = status        # int
        self.reason = reason        # str
        self.headers = headers      # [(name, value)] as received (str)
        self.body = body            # de-framed body bytes
        self.raw = raw              # every byte of this response, as received

    def header(self, name):
        """The first value of field name (case-insensitive), or None."""
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def __repr__(self):
        return (f"<HttpResponse {self.status} {self.reason!r} {self.headers} "
                f"body={self.body[:80]!r}>")


class RawClient:
    def __init__(self, port, host="127.0.0.1", timeout=5.0, sock=None):
        self.sock = sock or socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.eof = False          # the server closed (FIN) or reset the connection
        self.reset = False        # ... with a reset
        self.send_failed = False  # a send hit EPIPE/ECONNRESET (the server had closed already)

    # -- sending --

    def send(self, data: bytes):
        """Send all of data. A server that already closed is not an error here (some tests send
        more than the server will read); it is recorded in send_failed."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.send_failed = True

    # -- receiving --

    def _fill(self, deadline) -> bool:
        """Read more bytes into buf. False on EOF/reset. Raises AssertionError at the deadline."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for the server; have {self.buf[:300]!r}")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"timed out waiting for the server; have {self.buf[:300]!r}")
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _take_line(self, deadline) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill(deadline):
                raise EOFError
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n, deadline) -> bytes:
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise EOFError
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, timeout=5.0, head=False, skip_1xx=True):
        """Read one whole response. head=True: a response to HEAD (no body). Returns None if the
        connection closed before the first byte of a response; raises AssertionError on timeout or
        on a response cut short."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.buf and not self._fill(deadline):
                return None
            try:
                r = self._read_one(deadline, head)
            except EOFError:
                raise AssertionError(f"connection closed in the middle of a response: "
                                     f"{self.buf[:300]!r}") from None
            if skip_1xx and 100 <= r.status < 200 and r.status != 101:
                continue
            return r

    def _read_one(self, deadline, head):
        raw = bytearray()
        status_line = self._take_line(deadline)
        raw += status_line + b"\r\n"
        parts = status_line.decode("latin-1").split(" ", 2)
        assert len(parts) >= 2 and parts[0].startswith("HTTP/"), f"bad status line {status_line!r}"
        version, status = parts[0], int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        while True:
            line = self._take_line(deadline)
            raw += line + b"\r\n"
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name, value.strip(" \t")))
        r = HttpResponse(version, status, reason, headers, b"", b"")
        if head or 100 <= status < 200 or status in (204, 304):
            r.raw = bytes(raw)
            return r
        te = r.header("Transfer-Encoding")
        cl = r.header("Content-Length")
        body = bytearray()
        if te is not None:
            assert te.lower() == "chunked", f"unexpected Transfer-Encoding {te!r}"
            while True:
                size_line = self._take_line(deadline)
                raw += size_line + b"\r\n"
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while True:  # trailer section
                        t = self._take_line(deadline)
                        raw += t + b"\r\n"
                        if not t:
                            break
                    break
                data = self._take(size + 2, deadline)
                raw += data
                assert data[-2:] == b"\r\n", "chunk not followed by CRLF"
                body += data[:-2]
        elif cl is not None:
            data = self._take(int(cl), deadline)
            raw += data
            body += data
        else:
            while self._fill(deadline):
                pass
            body += self.buf
            raw += self.buf
            self.buf = b""
        r.body = bytes(body)
        r.raw = bytes(raw)
        return r

    def wait_closed(self, timeout=3.0) -> bool:
        """Wait for the server to close the connection. True if it did (any bytes that arrived
        meanwhile stay in buf); False if it was still open at the deadline."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                pass
        except AssertionError:
            return False
        return True

    def quiet_for(self, seconds) -> bool:
        """True if nothing arrives and the connection stays open for that long."""
        deadline = time.monotonic() + seconds
        n = len(self.buf)
        try:
            while self._fill(deadline):
                pass
        except AssertionError:
            return len(self.buf) == n
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def exchange(port, data: bytes, timeout=5.0, head=False):
    """One connection: send data, read one response (None if closed without one), then report
    whether the server closed the connection within a short while. Returns (response, closed, rest)
    where rest is whatever other bytes came after the response."""
    with RawClient(port, timeout=timeout) as c:
        c.send(data)
        r = c.read_response(timeout=timeout, head=head)
        closed = c.wait_closed(timeout=2.0)
        return r, closed, c.buf
