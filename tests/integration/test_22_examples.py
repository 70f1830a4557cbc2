"""The handler examples of Condure's README (examples/basichandler.py, printreq.py, sendresp.py) run
as real processes, exactly as examples/README.md shows them (relative `ipc://client`, the
printreq | xargs sendresp pipe), with curl as the client, against zhttpd and against condure
1.9.1. The same programs, unchanged, must work with both (issue 5, item 7)."""
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest

from peers import start_server

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
PY = sys.executable  # the interpreter that has pyzmq (a bare `python3` on PATH may not)
BASE = "ipc://client"  # as in the README: relative to the directory everything runs in


@pytest.fixture(params=["zhttpd", "condure"])
def server(request, rundir):
    s = start_server(request.param, rundir, workers=1, base=BASE)
    yield s
    s.stop()


class Proc:
    """A child process (or shell pipeline) in its own process group, stopped by group id."""

    def __init__(self, args, cwd, shell=False, outdir=None):
        self.out_path = pathlib.Path(outdir or cwd) / f"proc-{time.monotonic_ns()}.out"
        self._out = open(self.out_path, "wb")
        self.p = subprocess.Popen(args, cwd=cwd, shell=shell, stdout=self._out,
                                  stderr=subprocess.STDOUT, start_new_session=True,
                                  executable="/bin/bash" if shell else None)

    def output(self):
        return self.out_path.read_text(errors="replace")

    def wait_output(self, pattern, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.output())
            if m:
                return m
            assert self.p.poll() is None, f"process exited: {self.output()}"
            time.sleep(0.02)
        raise AssertionError(f"no /{pattern}/ in output: {self.output()!r}")

    def stop(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
        self._out.close()


def curl(port, path="/", timeout=10):
    p = subprocess.run(["curl", "-sS", "-i", "--max-time", str(timeout),
                        f"http://127.0.0.1:{port}{path}"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout + 5)
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    return p.returncode, head.decode(errors="replace"), body, p.stderr.decode(errors="replace")


def assert_text_response(rc, head, body, text, err=""):
    assert rc == 0, f"curl failed ({rc}): {err}"
    lines = head.split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK", head
    assert "Content-Type: text/plain" in lines, head
    assert f"Content-Length: {len(text)}" in lines, head
    assert body == text


def test_basichandler_answers_every_request(server, rundir):
    h = Proc([PY, "-u", str(EXAMPLES / "basichandler.py")], cwd=rundir)  # default ipc://client
    try:
        time.sleep(0.5)  # the handler's PUB needs the server's subscription (README: "await")
        for path in ("/", "/second?x=1"):
            rc, head, body, err = curl(server.port, path)
            assert_text_response(rc, head, body, b"hello world\n", err)
            h.wait_output(r"OUT \{.*'body': b'hello world\\n'")
        out = h.output()
        assert out.count("IN {") == 2, out
        assert f"'uri': b'http://127.0.0.1:{server.port}/second?x=1'" in out, out
        assert f"'from': b'{server.instance_id.decode()}'" in out, out
    finally:
        h.stop()


def test_printreq_then_sendresp_from_another_process(server, rundir):
    pr = Proc([PY, "-u", str(EXAMPLES / "printreq.py")], cwd=rundir)
    try:
        time.sleep(0.3)
        result = {}
        t = threading.Thread(target=lambda: result.update(r=curl(server.port, "/wait")))
        t.start()
        m = pr.wait_output(r"^(\S+) (\S+)\n")
        addr, rid = m.group(1), m.group(2)
        assert addr == server.instance_id.decode()
        assert re.fullmatch(r"\d+-\d+-[0-9a-f]+", rid), rid
        sr = subprocess.run([PY, str(EXAMPLES / "sendresp.py"), "responding from another process",
                             addr, rid], cwd=rundir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=15)
        assert sr.returncode == 0, sr.stdout
        t.join(15)
        assert_text_response(*result["r"][:3], b"responding from another process\n",
                             result["r"][3])
    finally:
        pr.stop()


def test_printreq_piped_into_sendresp(server, rundir):
    # the README's one-liner, with python3 spelled as the interpreter that has pyzmq
    py = shlex.quote(PY)
    cmd = (f"{py} -u {shlex.quote(str(EXAMPLES / 'printreq.py'))} | "
           f"xargs -n 2 {py} {shlex.quote(str(EXAMPLES / 'sendresp.py'))} "
           f"\"responding from another process\"")
    pipe = Proc(cmd, cwd=rundir, shell=True)
    try:
        time.sleep(0.3)
        for i in range(3):
            rc, head, body, err = curl(server.port, f"/piped/{i}")
            assert_text_response(rc, head, body, b"responding from another process\n", err)
    finally:
        pipe.stop()


def test_sendresp_with_explicit_base(server, rundir):
    """--base lets sendresp reach a server whose base is not the default."""
    pr = Proc([PY, "-u", str(EXAMPLES / "printreq.py"), f"ipc://{rundir}/client"], cwd="/",
              outdir=rundir)
    try:
        time.sleep(0.3)
        result = {}
        t = threading.Thread(target=lambda: result.update(r=curl(server.port, "/abs")))
        t.start()
        m = pr.wait_output(r"^(\S+) (\S+)\n")
        sr = subprocess.run([PY, str(EXAMPLES / "sendresp.py"), "--base", f"ipc://{rundir}/client",
                             "absolute", m.group(1), m.group(2)], cwd="/",
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=15)
        assert sr.returncode == 0, sr.stdout
        t.join(15)
        assert_text_response(*result["r"][:3], b"absolute\n", result["r"][3])
    finally:
        pr.stop()
