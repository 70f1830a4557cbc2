"""Client role, malformed packets (issue 11 item 6): a req-mode packet the bridge could route to
several workers gets ONE error reply (a DEALER requester would read an extra reply against its next
request), and `J` packets with a repeated key are refused as `T` ones are."""
import json

import pytest

from wireorigin import WireOrigin
from zrequester import ReqClient, Requester, binary, daemon, decode, zhttpd_only  # noqa: F401

IDS = [{"id": f"m{i}"} for i in range(16)]  # 16 ids: several of 4 workers are named


def multi_id_packet(fmt, uri):
    pkt = {"id": IDS, "method": "GET", "uri": uri}
    if fmt == "J":
        return b"J" + json.dumps(pkt).encode()
    import tnetstring_py as tns
    return b"T" + tns.dumps({"id": [{"id": e["id"].encode()} for e in IDS],
                             "method": b"GET", "uri": uri.encode()})


@zhttpd_only("--workers is a zhttpd flag; Zurl has one engine")
@pytest.mark.parametrize("fmt", ["T", "J"])
def test_req_packet_with_many_ids_gets_one_reply(daemon, zctx, fmt):
    d = daemon(args=["--workers", "4"])
    with WireOrigin() as o:
        c = ReqClient(zctx, d, "DEALER")
        c.send_raw(multi_id_packet(fmt, o.url("/")))
        rep = c.recv()
        assert rep["type"] == b"error" and rep["condition"] == b"bad-request", rep
        assert c.silent(1.0), "a second reply for one request"
        # the next request's reply is its own
        rep = c.call({"id": "next", "method": "GET", "uri": o.url("/")})
        assert rep["id"] == b"next" and rep["code"] == 200
        assert len(o.requests) == 1


def dup_json(origin_uri):
    # the first uri is a port nobody listens on; jansson alone would keep the second
    return ('J{"id": "dup", "method": "GET", "uri": "http://127.0.0.1:9/", '
            f'"uri": "{origin_uri}"}}').encode()


@zhttpd_only("Zurl's JSON parser keeps the last of two keys")
def test_req_mode_json_with_duplicate_key_is_refused(daemon, zctx):
    d = daemon()
    with WireOrigin() as o:
        c = ReqClient(zctx, d, "DEALER")
        c.send_raw(dup_json(o.url("/")))
        fmt, rep = decode(c.sock.recv_multipart()[-1]) if c.sock.poll(10000) else (None, None)
        assert fmt == "J" and rep.get("type") == b"error", rep
        assert rep["condition"] == b"bad-request"
        d.wait_log("duplicate key in a JSON object")
        assert o.conns == 0
        # the T form of the same packet is refused too
        body = _t_body(o)
        c.send_raw(b"T" + f"{len(body)}:".encode() + body + b"}")
        rep = c.recv()
        assert rep["type"] == b"error" and rep["condition"] == b"bad-request", rep
        assert o.conns == 0


def _t_body(o):
    return (b"2:id,3:dup,6:method,3:GET,3:uri,19:http://127.0.0.1:9/,"
            + f"3:uri,{len(o.url('/'))}:{o.url('/')},".encode())


@zhttpd_only("Zurl's JSON parser keeps the last of two keys")
def test_stream_json_with_duplicate_key_is_refused_and_answered(daemon, zctx):
    d = daemon()
    rq = Requester(zctx, d)
    with WireOrigin() as o:
        pkt = ('J{"from": "%s", "id": "dup", "seq": 0, "method": "GET", '
               '"uri": "http://127.0.0.1:9/", "uri": "%s"}' % (rq.ident.decode(), o.url("/")))
        rq.first_raw(pkt.encode())
        via, fmt, rep = rq.recv("dup", meta=True)
        assert fmt == "J" and rep.get("type") == b"error", rep
        assert rep["condition"] == b"bad-request"
        d.wait_log("duplicate key in a JSON object")
        assert o.conns == 0
