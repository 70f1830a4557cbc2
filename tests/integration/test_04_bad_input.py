"""Malformed ZeroMQ frames are logged with a reason and nothing else is disturbed; packets for
unknown sessions get each role's answer (client role: cancel; server role: logged and dropped)."""
import re
import socket
import time

import pytest
import zmq

import tnetstring_py as tns
from conftest import free_port
from origin import Origin
from test_03_end_to_end import Handler, curl, hello_route, loopback_conf, req_roundtrip
from zhttpd import Zhttpd


@pytest.fixture
def client_daemon(rundir):
    base = f"ipc://{rundir}/zurl"
    d = Zhttpd(["--config", loopback_conf(rundir), "--workers", "2", "--zserver-stream", base,
                "--zserver-req", f"{base}-req", "--log-level", "3"], rundir).start()
    yield d, base
    d.stop()


BAD_FRAMES = [
    (b"", "empty packet"),
    (b"Xabc", "unsupported format prefix"),
    (b"T5:hello", "tnetstring"),                        # truncated
    (b"T3:abc}", "tnetstring"),                         # dict of non-string key junk
    (b"T" + tns.dumps({"from": "a", "id": "x", "seq": "zero"}), "seq"),
    (b"T" + tns.dumps({"from": "a", "id": 5}), "id"),
    (b"T" + tns.dumps({"from": "a", "id": "x", "type": "bogus"}), "type"),
    (b"T" + tns.dumps({"from": "a", "id": "x", "headers": [["only-name"]]}), "headers"),
    (b"T" + tns.dumps(["not", "a", "dict"]), "dict"),
]


@pytest.mark.parametrize("frame,reason", BAD_FRAMES, ids=[r for _, r in BAD_FRAMES])
def test_client_role_malformed_frames_are_logged_and_daemon_serves_on(rundir, zctx, client_daemon,
                                                                      frame, reason):
    d, base = client_daemon
    push = zctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(f"{base}-in")
    push.send(frame)
    log = d.wait_log(r"client-in: malformed packet dropped: .*")
    line = re.findall(r"client-in: malformed packet dropped: (.*)", log)[-1]
    assert reason in line, line
    with Origin({"/hello": hello_route}) as origin:
        rep = req_roundtrip(zctx, f"{base}-req", {"id": "after", "method": "GET",
                                                  "uri": origin.url("/hello")})
        assert rep["code"] == 200


def test_req_mode_malformed_packet_gets_bad_request(rundir, zctx, client_daemon):
    d, base = client_daemon
    s = zctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(f"{base}-req")
    s.send(b"T" + tns.dumps({"id": "m1", "method": 7, "uri": "http://127.0.0.1/"}))
    assert s.poll(5000), "no reply to a malformed req packet"
    rep = tns.loads(s.recv()[1:])
    assert rep["type"] == b"error" and rep["condition"] == b"bad-request"
    assert "client-req: malformed packet: field 'method'" in d.log()


@pytest.mark.parametrize("packet", [
    {"id": "r", "method": "GET"},                                   # no uri
    {"id": "r", "method": "GET", "uri": "ftp://127.0.0.1/"},        # bad scheme
    {"id": "r", "method": "GET", "uri": "ws://127.0.0.1/"},         # no WebSocket in req mode
    {"id": "r", "method": "POST", "uri": "http://127.0.0.1/", "more": True},
    {"id": "r", "method": "HEAD", "uri": "http://127.0.0.1/", "body": b"x"},
], ids=["no-uri", "ftp", "ws", "more", "head-with-body"])
def test_req_mode_invalid_requests_get_a_condition(rundir, zctx, client_daemon, packet):
    d, base = client_daemon
    rep = req_roundtrip(zctx, f"{base}-req", packet)
    assert rep["type"] == b"error"
    expected = b"content-not-allowed" if packet["method"] == "HEAD" else b"bad-request"
    assert rep["condition"] == expected
    assert rep["id"] == b"r"


def test_client_role_unknown_session_gets_cancel(rundir, zctx, client_daemon):
    d, base = client_daemon
    sub = zctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"app1 ")
    sub.connect(f"{base}-out")
    dealer = zctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.IDENTITY, b"app1")
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(f"{base}-in-stream")
    time.sleep(0.3)  # let the subscription reach zhttpd's PUB
    dealer.send_multipart([b"", b"T" + tns.dumps({"from": "app1", "id": "no-such", "seq": 3,
                                                  "type": "keep-alive"})])
    assert sub.poll(5000), "no answer for an unknown session"
    frame = sub.recv()
    addr, _, payload = frame.partition(b" ")
    assert addr == b"app1"
    pkt = tns.loads(payload[1:])
    assert pkt["type"] == b"cancel" and pkt["id"] == b"no-such" and pkt["from"] == b"zhttpd"
    # never answer a cancel (or error) with a cancel
    dealer.send_multipart([b"", b"T" + tns.dumps({"from": "app1", "id": "no-such", "type": "cancel"})])
    assert not sub.poll(500), "a cancel was answered"


def test_client_role_routine_late_packets_are_not_logged_at_info(rundir, zctx):
    """A keep-alive or credit for a session that has just ended is routine (Pushpin's proxy answers
    each session's first packet with a keep-alive, which often crosses a small response): it gets
    its cancel but no log line at log level 2 (Pushpin's default), only at 3. A data packet for an
    unknown session is still logged at 2."""
    base = f"ipc://{rundir}/zurl"
    d = Zhttpd(["--config", loopback_conf(rundir), "--workers", "2", "--zserver-stream", base,
                "--log-level", "2"], rundir).start()
    sub = zctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"app1 ")
    sub.connect(f"{base}-out")
    dealer = zctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.IDENTITY, b"app1")
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(f"{base}-in-stream")
    try:
        time.sleep(0.3)  # let the subscription reach zhttpd's PUB
        late = [{"from": "app1", "id": "gone-1", "seq": 1, "type": "keep-alive"},
                {"from": "app1", "id": "gone-2", "seq": 1, "type": "credit", "credits": 100},
                {"from": "app1", "id": "gone-3", "seq": 1, "body": b"x"}]
        for pkt in late:
            dealer.send_multipart([b"", b"T" + tns.dumps(pkt)])
        got = set()
        while len(got) < 3:
            assert sub.poll(5000), f"cancels so far: {got}"
            pkt = tns.loads(sub.recv().partition(b" ")[2][1:])
            assert pkt["type"] == b"cancel", pkt
            got.add(pkt["id"])
        assert got == {b"gone-1", b"gone-2", b"gone-3"}
        log = d.wait_log(r"data for unknown session app1/gone-3, answering cancel")
        assert "gone-1" not in log and "gone-2" not in log, log
    finally:
        sub.close()
        dealer.close()
        d.stop()


def test_server_role_unknown_session_and_garbage_are_dropped(rundir, zctx):
    port = free_port()
    base = f"ipc://{rundir}/zhttpd"
    d = Zhttpd(["--workers", "2", "--listen", f"127.0.0.1:{port}", "--zclient-stream", base],
               rundir).start()
    h = Handler(zctx, base)
    try:
        h.send(b"zhttpd", {"from": "h", "id": "0-99-1", "seq": 0, "code": 200, "body": b"x"})
        h.send(b"zhttpd", {"from": "h", "id": "7-1-1", "type": "keep-alive"})
        h.pub.send(b"zhttpd Tgarbage")
        d.wait_log(r"server-in: data packet for unknown session '0-99-1' dropped")
        d.wait_log(r"server-in: keep-alive packet for unknown session '7-1-1' dropped")
        d.wait_log(r"server-in: malformed packet dropped: ")
        # still serving
        import threading
        result = {}
        t = threading.Thread(target=lambda: result.update(
            zip(("rc", "out", "err"), curl(f"http://127.0.0.1:{port}/"))))
        t.start()
        req = h.recv()
        h.send(b"zhttpd", {"from": "h", "id": req["id"], "seq": 0, "code": 204, "reason": "No Content"})
        t.join(10)
        assert result["out"].startswith("HTTP/1.1 204 No Content"), result
    finally:
        d.stop()


def test_server_role_handler_cancel_before_response_gives_502(rundir, zctx):
    port = free_port()
    base = f"ipc://{rundir}/zhttpd"
    d = Zhttpd(["--workers", "1", "--listen", f"127.0.0.1:{port}", "--zclient-stream", base],
               rundir).start()
    h = Handler(zctx, base)
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        c.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        req = h.recv()
        h.send(b"zhttpd", {"from": "h", "id": req["id"], "type": "cancel"})
        data = b""
        while True:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), data
        c.close()
    finally:
        d.stop()


@pytest.mark.parametrize("raw,status", [
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
])
def test_server_role_malformed_requests_get_an_error_status(rundir, zctx, raw, status):
    port = free_port()
    base = f"ipc://{rundir}/zhttpd"
    d = Zhttpd(["--workers", "1", "--listen", f"127.0.0.1:{port}", "--zclient-stream", base],
               rundir).start()
    h = Handler(zctx, base)
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        c.sendall(raw)
        data = b""
        while True:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 %d " % status), data
        assert b"Connection: close" in data
        assert not h.pull.poll(200), "the handler saw a malformed request"
        c.close()
    finally:
        d.stop()
