"""Client role, the origin connections behind req mode: kept-alive connections are reused across
requests and across bursts (the connection cache is sized by the peak of transfers in flight, not
by the few still running when a burst ends), and an origin that closes idle connections, closes
right after each response or says Connection: close never costs a request: the next one gets a
fresh connection at once. With one worker every request shares one curl multi handle, so the
sockets of idle connections (kept registered with the loop while idle) and the fd numbers the
kernel hands out again are exercised together."""
import socket
import threading
import time

import pytest
import zmq

import tnetstring_py as tns
from zclient import start_daemon

BODY = b"keep-alive body\n"


class KeepAliveOrigin:
    """A raw HTTP/1.1 origin that serves many requests per connection (one thread each).

    mode: "keep"   keep the connection open (idle_close: close it after that many idle seconds)
          "drop"   close the socket right after each response, without saying so
          "close"  answer with Connection: close, then close
    .conns counts accepted connections, .served counts responses."""

    def __init__(self, mode="keep", idle_close=None):
        self.mode = mode
        self.idle_close = idle_close
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = 0
        self.served = 0
        self.lock = threading.Lock()
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
            with self.lock:
                self.conns += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        try:
            while not self.stop.is_set():
                conn.settimeout(self.idle_close if self.idle_close else 0.2)
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    if self.idle_close and b"\r\n\r\n" not in buf:
                        return  # idle too long: close it, as an origin's keep-alive timeout does
                    continue
                if not chunk:
                    return
                buf += chunk
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    extra = b"Connection: close\r\n" if self.mode == "close" else b""
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + extra +
                                 b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)
                    with self.lock:
                        self.served += 1
                    if self.mode != "keep":
                        return
        except OSError:
            return
        finally:
            conn.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def daemon(rundir):
    d, base = start_daemon(rundir, workers=1)
    yield d, base
    d.stop()


@pytest.fixture
def dealer(daemon, zctx):
    _, base = daemon
    s = zctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(f"{base}-req")
    yield s
    s.close()


def send(dealer, rid, uri):
    dealer.send_multipart([b"", b"T" + tns.dumps({"id": rid, "method": "GET", "uri": uri})])


def recv(dealer, timeout_ms=5000):
    assert dealer.poll(timeout_ms), "no reply from zhttpd"
    frames = dealer.recv_multipart()
    assert frames[0] == b"" and frames[-1][:1] == b"T"
    return tns.loads(frames[-1][1:])


def burst(dealer, uris, tag):
    """Send every request, then read every reply (all in flight at once); returns id -> reply."""
    for i, uri in enumerate(uris):
        send(dealer, f"{tag}-{i}", uri)
    got = {}
    for _ in uris:
        rep = recv(dealer)
        got[rep["id"].decode()] = rep
    assert sorted(got) == sorted(f"{tag}-{i}" for i in range(len(uris)))
    return got


def assert_ok(rep):
    assert rep.get("type") is None, rep
    assert rep["code"] == 200 and rep["body"] == BODY, rep


def assert_quiet_log(d):
    log = d.log()
    assert "parked watcher out of step" not in log
    assert "reopened while its watcher was parked" not in log


def test_sequential_requests_share_one_connection(daemon, dealer):
    d, _ = daemon
    with KeepAliveOrigin() as o:
        for i in range(50):
            send(dealer, f"s{i}", o.url("/a"))
            assert_ok(recv(dealer))
        assert o.conns == 1 and o.served == 50
    assert_quiet_log(d)


def test_bursts_reuse_the_connections_of_earlier_bursts(daemon, dealer):
    d, _ = daemon
    with KeepAliveOrigin() as o:
        for b in range(30):
            for rep in burst(dealer, [o.url(f"/b{b}")] * 10, f"b{b}").values():
                assert_ok(rep)
        # Never more connections than requests in flight at once: the end of a burst (few
        # transfers left running) must not shrink the cache and close the kept-alive ones.
        assert o.served == 300
        assert o.conns <= 10, f"{o.conns} connections for bursts of 10"
    assert_quiet_log(d)


def test_origin_closing_idle_connections_costs_no_request(daemon, dealer):
    d, _ = daemon
    with KeepAliveOrigin(idle_close=0.1) as o:
        for i in range(8):
            t0 = time.monotonic()
            for rep in burst(dealer, [o.url("/idle")] * 3, f"i{i}").values():
                assert_ok(rep)
            assert time.monotonic() - t0 < 2.0
            time.sleep(0.3)  # every connection of this burst is closed by the origin meanwhile
        assert o.served == 24 and o.conns >= 8
    assert_quiet_log(d)


@pytest.mark.parametrize("mode", ["drop", "close"])
def test_origin_closing_after_each_response(daemon, dealer, mode):
    d, _ = daemon
    with KeepAliveOrigin(mode=mode) as o:
        for i in range(20):
            send(dealer, f"c{i}", o.url("/c"))
            assert_ok(recv(dealer))
        for b in range(5):
            for rep in burst(dealer, [o.url("/c")] * 5, f"{mode}{b}").values():
                assert_ok(rep)
        assert o.served == 45
    assert_quiet_log(d)


def test_mixed_origins_while_fd_numbers_are_reused(daemon, dealer):
    """A kept-alive origin beside one whose connections die after every response: the dying ones
    free fd numbers that new connections take again while the kept-alive sockets sit idle."""
    d, _ = daemon
    with KeepAliveOrigin() as keep, KeepAliveOrigin(mode="drop") as drop, \
            KeepAliveOrigin(idle_close=0.05) as idle:
        for b in range(20):
            uris = [keep.url("/k"), drop.url("/d"), idle.url("/i"), keep.url("/k"), drop.url("/d")]
            for rep in burst(dealer, uris, f"m{b}").values():
                assert_ok(rep)
            if b % 5 == 4:
                time.sleep(0.1)
        assert keep.served == 40 and drop.served == 40 and idle.served == 20
        assert keep.conns <= 2
    assert_quiet_log(d)


def test_req_envelope_up_to_sixteen_frames_is_answered_and_longer_is_dropped(daemon, dealer):
    """The bridge takes a message of at most 16 frames (identity + envelope + delimiter + payload)
    whole; a longer one is dropped with a log line, and the next request is served."""
    d, _ = daemon
    with KeepAliveOrigin() as o:
        payload = b"T" + tns.dumps({"id": "f16", "method": "GET", "uri": o.url("/f")})
        env = [b"e%02d" % i for i in range(13)]  # + identity + "" + payload = 16 frames
        dealer.send_multipart(env + [b"", payload])
        assert dealer.poll(5000), "no reply to a 16-frame request"
        frames = dealer.recv_multipart()
        assert frames[:14] == env + [b""]
        rep = tns.loads(frames[-1][1:])
        assert rep["id"] == b"f16"
        assert_ok(rep)
        payload = b"T" + tns.dumps({"id": "f17", "method": "GET", "uri": o.url("/f")})
        dealer.send_multipart(env + [b"e13", b"", payload])
        d.wait_log(r"client-req: message with more than 16 frames dropped")
        assert not dealer.poll(300), "a 17-frame request was answered"
        send(dealer, "after", o.url("/f"))
        rep = recv(dealer)
        assert rep["id"] == b"after"
        assert_ok(rep)
