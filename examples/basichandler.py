#!/usr/bin/env python3
"""Answers every request with "hello world" (the server-mode handler of Condure's README).

usage: basichandler.py [BASE]       BASE defaults to ipc://client (zhttpd --zclient-stream ipc://client)
"""
import os
import sys
import time

import zmq

import tnetstring


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else "ipc://client"
    instance_id = "basichandler.{}".format(os.getpid()).encode()
    ctx = zmq.Context()
    in_sock = ctx.socket(zmq.PULL)
    in_sock.connect(base + "-out")
    out_sock = ctx.socket(zmq.PUB)
    out_sock.connect(base + "-in")
    time.sleep(0.01)  # await subscription
    while True:
        m_raw = in_sock.recv()
        req = tnetstring.loads(m_raw[1:])
        print("IN {}".format(req))
        resp = {
            "from": instance_id,
            "id": req["id"],
            "code": 200,
            "reason": "OK",
            "headers": [["Content-Type", "text/plain"]],
            "body": b"hello world\n",
        }
        print("OUT {}".format(resp))
        out_sock.send(req["from"] + b" T" + tnetstring.dumps(resp))


if __name__ == "__main__":
    main()
