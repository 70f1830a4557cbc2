"""Client role, streamed request bodies: more:true gets a credit ack of buffer_size, data packets
are fed to curl as they come and their bytes credited back once curl took them, Content-Length is
kept when the requester gave one (else chunked), and every misuse has its condition."""
import asyncio
import hashlib
import threading
import time

import pytest
import zmq
from aiohttp import web

from streamorigin import AioOrigin, RawOrigin
from zclient import Requester, Session, start_daemon

BUF = 4096


@pytest.fixture
def daemon(rundir):
    d, base = start_daemon(rundir, f"buffer_size = {BUF}\n")
    yield d, base
    d.stop()


def upload_origin(app):
    async def sink(request):
        data = await request.read()
        app["seen"].append((request.method, dict(request.headers), data))
        await asyncio.sleep(float(request.query.get("delay", "0")))
        return web.Response(text=f"{len(data)} {hashlib.sha256(data).hexdigest()}")

    app["seen"] = []
    app.router.add_route("*", "/sink", sink)


def origin_seen(o):
    return o.runner.app["seen"]


def stream_body(s, data, chunk):
    """Send data in chunks within the credits granted; returns the credit packets seen."""
    credits = BUF  # the ack's grant
    credit_pkts = []
    off = 0
    while off < len(data):
        while credits == 0:
            p = s.recv()
            assert p["type"] == b"credit", p
            credit_pkts.append(p["credits"])
            credits += p["credits"]
        n = min(chunk, credits, len(data) - off)
        last = off + n == len(data)
        fields = {"body": data[off:off + n]}
        if not last:
            fields["more"] = True
        s.send(**fields)
        credits -= n
        off += n
    return credit_pkts


@pytest.mark.parametrize("with_length", [False, True], ids=["chunked", "content-length"])
def test_streamed_post_reaches_the_origin_under_credits(daemon, zctx, with_length):
    d, base = daemon
    rq = Requester(zctx, base)
    data = bytes(range(256)) * 200  # 51200 bytes: many grants of 4096
    with AioOrigin(upload_origin) as o:
        s = Session(rq)
        headers = [["Content-Type", "application/octet-stream"]]
        if with_length:
            headers.append(["Content-Length", str(len(data))])
        s.start(method="PUT", uri=o.url("/sink"), headers=headers, more=True, stream=True,
                credits=100000)
        ack = s.recv()
        assert ack["type"] == b"credit" and ack["credits"] == BUF and ack["seq"] == 0
        credit_pkts = stream_body(s, data, 1500)
        assert sum(credit_pkts) >= len(data) - 2 * BUF
        head, body, _ = s.response()
        assert head["code"] == 200
        assert body == f"{len(data)} {hashlib.sha256(data).hexdigest()}".encode()
        method, hdrs, got = origin_seen(o)[0]
        assert method == "PUT" and got == data
        if with_length:
            assert hdrs.get("Content-Length") == str(len(data))
            assert "Transfer-Encoding" not in hdrs
        else:
            assert hdrs.get("Transfer-Encoding") == "chunked"
            assert "Content-Length" not in hdrs


def test_credits_come_back_only_as_curl_takes_the_bytes(daemon, zctx):
    """An origin that reads nothing: curl cannot hand more than the socket takes, so zhttpd stops
    granting; the requester is never asked for more than the bounded buffers hold."""
    d, base = daemon
    rq = Requester(zctx, base)
    hold = threading.Event()

    def handler(conn, head, origin):
        hold.wait(10)  # read nothing more

    with RawOrigin(handler) as o:
        s = Session(rq)
        s.start(method="POST", uri=o.url("/"), more=True, stream=True, credits=10)
        granted = s.recv()["credits"]
        total_sent = 0
        chunk = b"q" * 4096
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            while granted >= len(chunk):
                s.send(body=chunk, more=True)
                granted -= len(chunk)
                total_sent += len(chunk)
            try:
                p = s.recv(timeout=1.5)
            except AssertionError:
                break  # no more credits: zhttpd stopped asking
            assert p["type"] == b"credit"
            granted += p["credits"]
        hold.set()
        # bounded: kernel socket buffers plus one buffer_size, far below what we would have sent
        assert total_sent < 16 * 1024 * 1024, total_sent
        assert total_sent > BUF


def test_body_in_the_first_packet_and_more(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with AioOrigin(upload_origin) as o:
        s = Session(rq)
        s.start(method="POST", uri=o.url("/sink"), body=b"first-", more=True, stream=True,
                credits=1000)
        assert s.recv()["type"] == b"credit"
        s.send(body=b"second")
        head, body, _ = s.response()
        assert origin_seen(o)[0][2] == b"first-second"


def test_body_after_the_end_is_bad_request(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with AioOrigin(upload_origin) as o:
        s = Session(rq)
        s.start(method="POST", uri=o.url("/sink?delay=2"), more=True, stream=True, credits=1000)
        s.recv()
        s.send(body=b"all")
        s.send(body=b"more?")
        p = s.recv()
        assert p["type"] == b"error" and p["condition"] == b"bad-request"
    assert "request body after its end" in d.log()


def test_body_beyond_the_credits_is_bad_request(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with AioOrigin(upload_origin) as o:
        s = Session(rq)
        s.start(method="POST", uri=o.url("/sink?delay=2"), more=True, stream=True, credits=1000)
        s.recv()
        s.send(body=b"x" * (BUF + 1), more=True)
        p = s.recv()
        assert p["type"] == b"error" and p["condition"] == b"bad-request"
    assert f"{BUF + 1} body bytes exceed the {BUF} credits granted" in d.log()


def test_body_beyond_its_content_length_is_bad_request(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with AioOrigin(upload_origin) as o:
        s = Session(rq)
        s.start(method="POST", uri=o.url("/sink?delay=2"), more=True, stream=True,
                headers=[["Content-Length", "3"]], credits=1000)
        s.recv()
        s.send(body=b"four")
        p = s.recv()
        assert p["type"] == b"error" and p["condition"] == b"bad-request"


def test_data_for_a_request_without_streamed_body_is_bad_request(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    with AioOrigin(upload_origin) as o:
        s = Session(rq)
        s.start(method="POST", uri=o.url("/sink?delay=2"), body=b"whole", stream=True,
                credits=1000)
        assert s.recv()["type"] == b"keep-alive"
        s.send(body=b"extra")
        p = s.recv()
        assert p["type"] == b"error" and p["condition"] == b"bad-request"


def test_streamed_input_must_start_at_seq_zero(daemon, zctx):
    d, base = daemon
    rq = Requester(zctx, base)
    s = Session(rq)
    s.out_seq = 3
    s.start(method="POST", uri="http://127.0.0.1:9/", more=True, stream=True)
    s.in_seq = 0
    p = s.recv()
    assert p["type"] == b"error" and p["condition"] == b"bad-request"
    assert "streamed input must start with seq 0" in d.log()


@pytest.mark.parametrize("fields,cond", [
    ({"method": "HEAD", "body": b"x"}, b"content-not-allowed"),
    ({"method": "HEAD", "more": True}, b"content-not-allowed"),
    ({"method": "GET", "uri": "ftp://127.0.0.1/"}, b"bad-request"),
    ({"method": "GET", "uri": "http://127.0.0.1/a b"}, b"bad-request"),
    ({"method": "G T"}, b"bad-request"),
    ({"method": "GET", "headers": [["Bad Name", "v"]]}, b"bad-request"),
    ({"method": "GET", "headers": [["X", "a\r\nInjected: 1"]]}, b"bad-request"),
    ({"method": "POST", "more": True, "headers": [["Content-Length", "12x"]]}, b"bad-request"),
    ({"method": "GET", "connect-host": "a b"}, b"bad-request"),
], ids=["head-body", "head-more", "ftp", "space-uri", "bad-method", "bad-header-name",
        "crlf-value", "bad-length", "bad-connect-host"])
def test_invalid_first_packets_get_an_error_with_seq_zero(daemon, zctx, fields, cond):
    d, base = daemon
    rq = Requester(zctx, base)
    s = Session(rq)
    pkt = {"uri": "http://127.0.0.1:9/x", "stream": True}
    pkt.update(fields)
    method = pkt.pop("method")
    s.start(method=method, **pkt)
    p = s.recv()
    assert p["type"] == b"error" and p["condition"] == cond and p["seq"] == 0
    assert s.quiet(0.2)
