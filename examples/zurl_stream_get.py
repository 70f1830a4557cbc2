#!/usr/bin/env python3
"""Streamed GET through zhttpd's client role (or Zurl), with credits (ZHTTP stream mode).

usage: zurl_stream_get.py [--base BASE | --in SPEC --in-stream SPEC --out SPEC]
                          [--credits N] [--timeout S] URL

The first packet goes to the daemon's PULL socket (BASE-in, Zurl's in_spec); later packets go to
its ROUTER (BASE-in-stream, in_stream_spec), addressed to the `from` of its first reply; replies
arrive on a SUB socket (BASE-out, out_spec) subscribed to "<our id> ". The requester grants N
bytes of credit at the start (default 65536) and gives back what it consumed after each data
packet, so the daemon never has more than N bytes in flight. Prints the status line, the headers,
a blank line and the body, like zurl_get.py; exits 1 on an error or cancel.

    zhttpd --config zurl.conf            # in_spec=ipc:///tmp/zhttpd/in, ...
    python3 examples/zurl_stream_get.py --in ipc:///tmp/zhttpd/in \\
        --in-stream ipc:///tmp/zhttpd/in-stream --out ipc:///tmp/zhttpd/out http://127.0.0.1:8080/
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
    ap = argparse.ArgumentParser(description="streamed GET through ZHTTP stream mode")
    ap.add_argument("--base")
    ap.add_argument("--in", dest="in_spec")
    ap.add_argument("--in-stream", dest="in_stream_spec")
    ap.add_argument("--out", dest="out_spec")
    ap.add_argument("--credits", type=int, default=65536)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("url")
    args = ap.parse_args()
    in_spec, in_stream_spec, out_spec = endpoints(args)

    client_id = "zurl_stream_get.{}".format(os.getpid()).encode()
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
    granted, received = args.credits, 0
    push.send(b"T" + tnetstring.dumps({
        "from": client_id, "id": rid, "seq": out_seq, "method": "GET", "uri": args.url,
        "stream": True, "credits": args.credits}))
    out_seq += 1

    head_done = False
    deadline = time.monotonic() + args.timeout
    while True:
        if not sub.poll(max(1, int((deadline - time.monotonic()) * 1000))):
            sys.exit("no reply within {} s".format(args.timeout))
        frame = sub.recv()
        addr, _, payload = frame.partition(b" ")
        if addr != client_id or payload[:1] != b"T":
            continue
        pkt = tnetstring.loads(payload[1:])
        if pkt.get("id") != rid:
            continue
        if pkt.get("seq") != in_seq:
            sys.exit("reply out of sequence: seq {} where {} was due".format(pkt.get("seq"), in_seq))
        in_seq += 1
        ptype = pkt.get("type")
        if ptype in (b"error", b"cancel"):
            sys.exit("error: {}".format(pkt.get("condition", ptype).decode()))
        if ptype is not None:  # keep-alive or credit: nothing to do
            continue
        if not head_done:
            print(pkt["code"], pkt["reason"].decode())
            for name, value in pkt.get("headers", []):
                print("{}: {}".format(name.decode(), value.decode()))
            print()
            sys.stdout.flush()
            head_done = True
        body = pkt.get("body", b"")
        received += len(body)
        if received > granted:
            sys.exit("credit overrun: {} body bytes received, {} granted".format(received, granted))
        sys.stdout.buffer.write(body)
        if not pkt.get("more"):
            break
        if body:
            # give back what we consumed, so the daemon may send that much more
            router.send_multipart([pkt["from"], b"", b"T" + tnetstring.dumps({
                "from": client_id, "id": rid, "seq": out_seq, "type": "credit",
                "credits": len(body)})])
            out_seq += 1
            granted += len(body)
    sys.stdout.flush()
    ctx.destroy(linger=0)


if __name__ == "__main__":
    main()
