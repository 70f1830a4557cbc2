#!/usr/bin/env python3
"""One-shot GET through zhttpd's client role over a REQ socket (req mode).

usage: zurl_get.py ENDPOINT URL      e.g. zurl_get.py ipc:///tmp/zhttpd/req http://127.0.0.1:8080/
"""
import sys
import uuid

import zmq

import tnetstring


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    endpoint, url = sys.argv[1], sys.argv[2]
    sock = zmq.Context().socket(zmq.REQ)
    sock.connect(endpoint)
    req = {"id": str(uuid.uuid4()), "method": "GET", "uri": url}
    sock.send(b"T" + tnetstring.dumps(req))
    if not sock.poll(30000):
        sys.exit("no reply within 30 s")
    resp = tnetstring.loads(sock.recv()[1:])
    if resp.get("type") == b"error":
        sys.exit("error: %s" % resp.get("condition", b"?").decode())
    print(resp["code"], resp["reason"].decode())
    for name, value in resp.get("headers", []):
        print("%s: %s" % (name.decode(), value.decode()))
    print()
    sys.stdout.flush()  # the text layer first, then the body straight to the byte stream
    sys.stdout.buffer.write(resp.get("body", b""))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
