#!/usr/bin/env python3
"""Streamed POST upload through zhttpd's client role (or Zurl), within the credits it grants.

usage: zurl_stream_post.py [--base BASE | --in SPEC --in-stream SPEC --out SPEC]
                           [--content-type TYPE] [--chunk N] [--timeout S] URL FILE

FILE ("-" for stdin) is sent as the request body: the first packet has `more: true` and no body;
the daemon answers with a `credit` packet (its buffer size) and grants more as it writes bytes to
the origin; each data packet stays within the credits granted so far, the last one has no `more`.
No Content-Length is sent, so the upload is chunked. The response is streamed back and printed
like zurl_get.py prints it; exits 1 on an error or cancel. Sockets as in zurl_stream_get.py.
"""
import argparse
import os
import sys
import time
import uuid

import zmq

import tnetstring


def endpoints(args):
    if args.base:
        return args.base + "-in", args.base + "-in-stream", args.base + "-out"
    if not (args.in_spec and args.in_stream_spec and args.out_spec):
        sys.exit("give --base, or all of --in, --in-stream and --out")
    return args.in_spec, args.in_stream_spec, args.out_spec


def main():
    ap = argparse.ArgumentParser(description="streamed POST through ZHTTP stream mode")
    ap.add_argument("--base")
    ap.add_argument("--in", dest="in_spec")
    ap.add_argument("--in-stream", dest="in_stream_spec")
    ap.add_argument("--out", dest="out_spec")
    ap.add_argument("--content-type", default="application/octet-stream")
    ap.add_argument("--chunk", type=int, default=32768, help="largest body piece per packet")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("url")
    ap.add_argument("file")
    args = ap.parse_args()
    in_spec, in_stream_spec, out_spec = endpoints(args)
    src = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")

    client_id = "zurl_stream_post.{}".format(os.getpid()).encode()
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.connect(in_spec)
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.IDENTITY, client_id)
    router.connect(in_stream_spec)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, client_id + b" ")
    sub.connect(out_spec)
    time.sleep(0.3)  # a PUB drops what it sends before our subscription reaches it

    rid = str(uuid.uuid4()).encode()
    out_seq, in_seq = 0, 0
    credits = 0          # bytes we may still send
    window = 1000000     # credits we grant for the response body
    push.send(b"T" + tnetstring.dumps({
        "from": client_id, "id": rid, "seq": out_seq, "method": "POST", "uri": args.url,
        "headers": [["Content-Type", args.content_type]], "more": True, "stream": True,
        "credits": window}))
    out_seq += 1

    def send(pkt):
        nonlocal out_seq
        pkt.update({"from": client_id, "id": rid, "seq": out_seq})
        router.send_multipart([daemon_id, b"", b"T" + tnetstring.dumps(pkt)])
        out_seq += 1

    daemon_id = None
    body_done = False
    head_done = False
    sent = 0
    deadline = time.monotonic() + args.timeout
    while True:
        # send what the credits allow
        while daemon_id is not None and not body_done and credits > 0:
            piece = src.read(min(credits, args.chunk))
            if not piece:
                send({"body": b""})
                body_done = True
                break
            send({"body": piece, "more": True})
            credits -= len(piece)
            sent += len(piece)
        if not sub.poll(max(1, int((deadline - time.monotonic()) * 1000))):
            sys.exit("no reply within {} s".format(args.timeout))
        addr, _, payload = sub.recv().partition(b" ")
        if addr != client_id or payload[:1] != b"T":
            continue
        pkt = tnetstring.loads(payload[1:])
        if pkt.get("id") != rid:
            continue
        if pkt.get("seq") != in_seq:
            sys.exit("reply out of sequence: seq {} where {} was due".format(pkt.get("seq"), in_seq))
        in_seq += 1
        daemon_id = pkt.get("from", daemon_id)
        credits += pkt.get("credits", 0)
        ptype = pkt.get("type")
        if ptype in (b"error", b"cancel"):
            sys.exit("error: {}".format(pkt.get("condition", ptype).decode()))
        if ptype is not None:  # the credit ack, later credits, keep-alives
            continue
        if not head_done:
            print(pkt["code"], pkt["reason"].decode())
            for name, value in pkt.get("headers", []):
                print("{}: {}".format(name.decode(), value.decode()))
            print()
            sys.stdout.flush()
            head_done = True
        body = pkt.get("body", b"")
        sys.stdout.buffer.write(body)
        if not pkt.get("more"):
            break
        if body:
            send({"type": "credit", "credits": len(body)})
    sys.stdout.flush()
    print("uploaded {} bytes".format(sent), file=sys.stderr)
    ctx.destroy(linger=0)


if __name__ == "__main__":
    main()
