"""Server role keep-alives to handlers: every --server-keepalive-ms, batched per handler into
multi-id packets (at most 128 ids) when the handler advertised ext.multi, one packet per session
otherwise."""
import time

import pytest
import zmq

from srvkit import HttpConn, StreamHandler, get, start


def collect(h, seconds):
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        p = h.recv_router(int(max(1, (deadline - time.monotonic()) * 1000)))
        if p is not None:
            out.append(p)
    return out


def ids_of(pkt):
    if isinstance(pkt["id"], list):
        return [(e["id"], e["seq"]) for e in pkt["id"]]
    return [(pkt["id"], pkt["seq"])]


def open_sessions(h, port, n, handlers=None):
    conns, reqs = [], []
    for i in range(n):
        c = HttpConn(port)
        c.send(get(f"/s{i}"))
        conns.append(c)
    for _ in range(n):
        got = None
        for hh in handlers or [h]:
            if hh.pull.poll(100 if handlers else 5000):
                got = (hh, hh.recv_request(0))
                break
        assert got, "a request did not arrive"
        got[0].ack(got[1]["id"])  # tells zhttpd our address (and ext.multi)
        reqs.append(got)
    return conns, reqs


def test_keepalives_are_batched_per_handler_with_multi_id_packets(rundir, zctx):
    d, info = start(rundir, "--server-keepalive-ms", "300", "--server-session-expiry-ms", "5000")
    h = StreamHandler(zctx, info["base"], multi=True)
    conns, reqs = open_sessions(h, info["port"], 3)
    try:
        ids = {r["id"] for _, r in reqs}
        pkts = collect(h, 1.5)
        kas = [p for p in pkts if p.get("type") == b"keep-alive"]
        assert kas, pkts
        multi = [p for p in kas if isinstance(p["id"], list)]
        assert multi, kas
        for p in multi:
            assert p["from"] == b"zhttpd" and p["ext"] == {"multi": True}
            assert "seq" not in p  # seqs are per id inside the list
            assert len(p["id"]) <= 128
            assert {i for i, _ in ids_of(p)} <= ids
        assert any({i for i, _ in ids_of(p)} == ids for p in multi), multi
        # every session got one about every 300 ms, with its own seq counting up from 0 (the
        # first packet) + 1 per packet
        per = {i: [s for p in kas for j, s in ids_of(p) if j == i] for i in ids}
        for i, seqs in per.items():
            assert 3 <= len(seqs) <= 7, (i, seqs)
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
            assert seqs[0] >= 1
        # answering still works after the keep-alives (seq continues)
        hh, r0 = reqs[0]
        h.respond(r0["id"], body=b"done")
        assert conns[0].read_response().body == b"done"
    finally:
        for c in conns:
            c.close()
        h.close()
        d.stop()


def test_keepalives_to_a_handler_without_multi_are_one_per_session(rundir, zctx):
    d, info = start(rundir, "--server-keepalive-ms", "300", "--server-session-expiry-ms", "5000")
    h = StreamHandler(zctx, info["base"], multi=False)
    conns, reqs = open_sessions(h, info["port"], 3)
    try:
        kas = [p for p in collect(h, 1.2) if p.get("type") == b"keep-alive"]
        assert len(kas) >= 6, kas
        assert all(not isinstance(p["id"], list) and isinstance(p["seq"], int) for p in kas)
        assert {p["id"] for p in kas} == {r["id"] for _, r in reqs}
    finally:
        for c in conns:
            c.close()
        h.close()
        d.stop()


def test_batches_never_mix_handlers(rundir, zctx):
    d, info = start(rundir, "--server-keepalive-ms", "300", "--server-session-expiry-ms", "5000")
    h1 = StreamHandler(zctx, info["base"], ident=b"ha", settle=0)
    h2 = StreamHandler(zctx, info["base"], ident=b"hb")
    conns, reqs = open_sessions(h1, info["port"], 6, handlers=[h1, h2])
    try:
        mine = {b"ha": set(), b"hb": set()}
        for hh, r in reqs:
            mine[hh.ident].add(r["id"])
        assert mine[b"ha"] and mine[b"hb"], "PUSH should have spread the requests"
        for hh in (h1, h2):
            kas = [p for p in collect(hh, 1.0) if p.get("type") == b"keep-alive"]
            assert kas
            seen = {i for p in kas for i, _ in ids_of(p)}
            assert seen == mine[hh.ident], (hh.ident, seen, mine)
    finally:
        for c in conns:
            c.close()
        h1.close()
        h2.close()
        d.stop()
