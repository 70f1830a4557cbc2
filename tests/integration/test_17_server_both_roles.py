"""Both roles in one zhttpd, sharing its workers: an inbound request (server role) is answered by a
handler that fetches the answer from an origin through the same zhttpd's client role."""
import threading

import pytest
import zmq

import tnetstring_py as tns
from origin import Origin
from srvkit import HttpConn, StreamHandler, get, start


def test_server_and_client_roles_in_one_process(rundir, zctx):
    def route(method, path, headers, body):
        return 200, [("Content-Type", "text/plain")], b"origin says " + body

    with Origin({"/data": route}) as origin:
        req_ep = f"ipc://{rundir}/client-req"
        d, info = start(rundir, "--zserver-req", req_ep, workers=2)
        h = StreamHandler(zctx, info["base"])
        errors = []

        def handler(n):
            try:
                for _ in range(n):
                    inbound = h.recv_request()
                    # fetch the answer through zhttpd's client role (Zurl's job)
                    r = zctx.socket(zmq.REQ)
                    r.setsockopt(zmq.LINGER, 0)
                    r.connect(req_ep)
                    r.send(b"T" + tns.dumps({
                        "id": b"out-" + inbound["id"], "method": "POST",
                        "uri": origin.url("/data"), "headers": [["Content-Type", "text/plain"]],
                        "body": inbound["uri"], "ignore-policies": True}))
                    assert r.poll(5000), "client role did not answer"
                    out = tns.loads(r.recv()[1:])
                    r.close()
                    assert out["code"] == 200, out
                    h.respond(inbound["id"], headers=[("X-Via", "both-roles")], body=out["body"])
            except Exception as e:  # reported by the main thread
                errors.append(e)

        t = threading.Thread(target=handler, args=(4,))
        t.start()
        conns = [HttpConn(info["port"]) for _ in range(2)]
        try:
            for i in range(2):
                for k, c in enumerate(conns):
                    c.send(get(f"/in/{i}/{k}"))
                    r = c.read_response()
                    assert r.status == 200 and r.header("X-Via") == "both-roles"
                    assert r.body == f"origin says http://a/in/{i}/{k}".encode()
            t.join(10)
            assert not errors, errors
            assert [m for m, _, _, _ in origin.requests] == ["POST"] * 4
            log = d.log()
            assert "client role on, server role on" in log
            # both engines ran on the shared workers
            assert "-> session" in log and "req POST" in log
        finally:
            for c in conns:
                c.close()
            h.close()
            d.stop()
