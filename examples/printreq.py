#!/usr/bin/env python3
"""Prints "<from> <id>" for each request it receives (the printreq handler of Condure's README).

usage: printreq.py [BASE]     BASE defaults to ipc://client (zhttpd --zclient-stream ipc://client)

It only reads requests (PULL from BASE-out) and never answers: another process does, given the two
words it prints (see sendresp.py). Each line is flushed, so it can feed a pipe:

    python3 -u examples/printreq.py |
        xargs -n 2 python3 examples/sendresp.py "responding from another process"
"""
import sys

import zmq

import tnetstring


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else "ipc://client"
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.connect(base + "-out")
    while True:
        m = sock.recv_multipart()
        req = tnetstring.loads(m[0][1:])
        print("{} {}".format(req["from"].decode(), req["id"].decode()), flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
