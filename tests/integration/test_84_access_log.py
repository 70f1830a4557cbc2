"""--access-log FILE|- (issue 17 item 4): one line per finished request of either role, in the
documented key=value format, no query string; SIGHUP reopens the file after a rotation."""
import os
import re
import signal
import time

from conftest import free_port
from origins import AppOrigin, HELLO
from srvkit import HttpConn, StreamHandler, get
from zhttpd import Zhttpd
from zrequester import ReqClient

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z role=(client|server) peer=(\S+) "
                  r"session=(\S+) method=(\S+) host=(\S+) path=(\S+) status=(\S+) bytes=(\d+) "
                  r"duration_ms=(\d+) outcome=(\S+)$")


class _D:
    def __init__(self, req_ep):
        self.req_ep = req_ep


def read_lines(path, n, timeout=5):
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_one_line_per_finished_request_and_reopen_on_sighup(rundir, zctx):
    port = free_port()
    alog = rundir / "access.log"
    conf = rundir / "z.conf"
    conf.write_text("[General]\n"
                    f"in_req_spec = ipc://{rundir}/creq\n"
                    "defpolicy = allow\n"
                    "deny = 127.0.0.2\n"
                    f"access_log = {alog}\n"
                    "[server]\n"
                    f"listen = 127.0.0.1:{port}\n"
                    f"zclient_stream = ipc://{rundir}/hs\n")
    d = Zhttpd(["--config", conf, "--workers", "2"], rundir).start()
    h = StreamHandler(zctx, f"ipc://{rundir}/hs")
    rc = ReqClient(zctx, _D(f"ipc://{rundir}/creq"), "DEALER")
    try:
        with AppOrigin() as o:
            assert rc.call({"id": "a", "method": "GET",
                            "uri": o.url("/hello?secret=1")})["body"] == HELLO
            rep = rc.call({"id": "b", "method": "GET", "uri": f"http://127.0.0.2:{o.port}/x?q=2"})
            assert rep["condition"] == b"policy-violation"
        c = HttpConn(port)
        c.send(get("/one?secret=3", host="s.test"))
        r = h.recv_request()
        h.respond(r["id"], code=201, reason="Created", body=b"12345")
        assert c.read_response().status == 201
        c.send(b"BAD REQUEST LINE\r\n\r\n")
        assert c.read_response().status == 400
        c.close()
        lines = read_lines(alog, 4)
        assert len(lines) == 4, lines
        text = "\n".join(lines)
        assert "secret" not in text and "q=2" not in text, text
        parsed = [LINE.match(ln) for ln in lines]
        assert all(parsed), lines
        got = sorted((m.group(1), m.group(4), m.group(5), m.group(6), m.group(7), m.group(8),
                      m.group(10)) for m in parsed)
        assert got == sorted([
            ("client", "GET", f"127.0.0.1:{o.port}", "/hello", "200", str(len(HELLO)), "ok"),
            ("client", "GET", f"127.0.0.2:{o.port}", "/x", "-", "0", "policy-violation"),
            ("server", "GET", "s.test", "/one", "201", "5", "ok"),
            ("server", "-", "-", "-", "400", "0", "request"),
        ]), got
        # rotation: rename, SIGHUP, the next line goes to a new file
        os.rename(alog, rundir / "access.log.1")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"reloaded:")
        c = HttpConn(port)
        c.send(get("/two", host="s.test"))
        r = h.recv_request()
        h.respond(r["id"], body=b"ok")
        assert c.read_response().status == 200
        c.close()
        lines = read_lines(alog, 1)
        assert len(lines) == 1 and "path=/two status=200" in lines[0], lines
        assert len((rundir / "access.log.1").read_text().splitlines()) == 4
    finally:
        rc.close()
        h.close()
        d.stop()


def test_access_log_to_stdout(rundir):
    port = free_port()
    d = Zhttpd(["--access-log", "-", "--listen", f"127.0.0.1:{port},req", "--zclient-req",
                f"ipc://{rundir}/none", "--handler-wait", "0.2"], rundir).start()
    try:
        c = HttpConn(port)
        c.send(get("/p?k=v", host="o.test"))
        assert c.read_response().status == 503
        c.close()
        line = d.wait_log(r"role=server .* path=/p status=503 ")
        assert "k=v" not in line
        assert [m for m in map(LINE.match, line.splitlines()) if m]
    finally:
        d.stop()
