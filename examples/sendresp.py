#!/usr/bin/env python3
"""Sends a response to one request, by id, from any process (the sendresp program of Condure's
README).

usage: sendresp.py [--base BASE] BODY ADDR ID

    BODY  the response body (a newline is added)
    ADDR  the server's instance id: the `from` of the request ("zhttpd", or "condure")
    ID    the request id (printreq.py prints ADDR and ID)
    BASE  the --zclient-stream base, default ipc://client (PUB connects to BASE-in)

It PUBlishes one frame "ADDR T<tnetstring>" with code 200 and a text/plain body to the server's
SUB socket, which routes it to the client waiting on that id.
"""
import argparse
import time

import zmq

import tnetstring


def main():
    ap = argparse.ArgumentParser(description="Send a response to a request id.")
    ap.add_argument("--base", default="ipc://client", help="--zclient-stream base")
    ap.add_argument("body")
    ap.add_argument("addr")
    ap.add_argument("id")
    args = ap.parse_args()
    body = args.body
    addr = args.addr.encode()
    rid = args.id.encode()

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.connect(args.base + "-in")

    # Await subscription: a PUB drops what it sends before the server's SUB has subscribed.
    # Condure's README waits 10 ms; 200 ms leaves room for a busy machine.
    time.sleep(0.2)

    resp = {
        "from": "sendresp",
        "id": rid,
        "code": 200,
        "reason": "OK",
        "headers": [["Content-Type", "text/plain"]],
        "body": "{}\n".format(body).encode(),
    }
    m = [addr + b" T" + tnetstring.dumps(resp)]
    sock.send_multipart(m)
    sock.close(linger=1000)  # let the frame leave before the process exits
    ctx.term()


if __name__ == "__main__":
    main()
