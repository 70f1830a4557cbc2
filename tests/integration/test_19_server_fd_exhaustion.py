"""Running out of file descriptors pauses accepting (one log line, no busy loop) instead of spinning
on EMFILE, and accepting resumes once descriptors free up."""
import re
import socket
import time

from conftest import build_dir, free_port
from test_03_end_to_end import Handler
from zhttpd import Zhttpd
import zmq


def test_emfile_pauses_accepting_and_recovers(rundir):
    port = free_port()
    base = f"ipc://{rundir}/zhttpd"
    d = Zhttpd(["--nofile=128:128", build_dir() / "zhttpd", "--workers", "1",
                "--listen", f"127.0.0.1:{port}", "--zclient-stream", base], rundir,
               binary="prlimit").start()
    ctx = zmq.Context()
    socks = []
    try:
        log = d.log()
        assert "descriptor limit 128 is below" in log, log
        for _ in range(200):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        d.wait_log(r"accept: Too many open files; accepting paused", timeout=5)
        t0 = time.process_time()
        time.sleep(1.0)
        # one line per pause, not one per attempt
        assert len(re.findall(r"Too many open files", d.log())) == 1, d.log()[-2000:]
        # the daemon is not spinning: read its own CPU time over one second
        with open(f"/proc/{d.proc.pid}/stat") as f:
            fields1 = f.read().rsplit(")", 1)[1].split()
        time.sleep(1.0)
        with open(f"/proc/{d.proc.pid}/stat") as f:
            fields2 = f.read().rsplit(")", 1)[1].split()
        ticks = (int(fields2[11]) + int(fields2[12])) - (int(fields1[11]) + int(fields1[12]))
        assert ticks < 50, f"zhttpd used {ticks} CPU ticks in 1 s while paused"
        for s in socks:
            s.close()
        socks.clear()
        d.wait_log(r"accepting resumed", timeout=5)
        h = Handler(ctx, base)
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        c.sendall(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        req = h.recv()
        assert req["uri"].endswith(b"/after")
        h.send(b"zhttpd", {"from": "h", "id": req["id"], "seq": 0, "code": 200, "reason": "OK",
                           "body": b"ok"})
        c.settimeout(5)
        assert c.recv(4096).startswith(b"HTTP/1.1 200 OK")
        c.close()
    finally:
        for s in socks:
            s.close()
        d.stop()
        ctx.destroy(linger=0)
