"""Start the server-mode peers the tests compare: zhttpd (the build under test) and condure 1.9.1
(the reference, /usr/bin/condure), with the same flags, on free loopback ports and ipc paths inside
the test's run directory.

    srv = start_server("zhttpd", rundir)        # or "condure"
    srv.port, srv.base, srv.instance_id
    srv.stop()

Both are started with `--listen 127.0.0.1:PORT --zclient-stream ipc://RUNDIR/NAME` so the same
handler code (handlers.py) connects to either one.
"""
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

from conftest import free_port
from zhttpd import Zhttpd

CONDURE = shutil.which("condure") or "/usr/bin/condure"

__all__ = ["CONDURE", "Condure", "start_server", "wait_port"]


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class Condure:
    """condure 1.9.1 as a child process; its log goes to RUNDIR/condure.log."""

    def __init__(self, args, rundir, name="condure"):
        self.args = [str(a) for a in args]
        self.rundir = pathlib.Path(rundir)
        self.log_path = self.rundir / f"{name}.log"
        self.proc = None
        self._log = None

    def start(self, port, ipc_files=(), timeout=10.0):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([CONDURE] + self.args, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.rundir)
        wait_port(port, timeout, self.proc)
        deadline = time.monotonic() + timeout
        for f in ipc_files:
            f = self.rundir / f  # a relative ipc path is relative to condure's cwd
            while not os.path.exists(f):
                assert time.monotonic() < deadline, f"condure did not bind {f}:\n{self.log()}"
                time.sleep(0.02)
        return self

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10.0):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Server:
    """One running server-mode peer: kind ("zhttpd"/"condure"), port, base, instance_id, daemon."""

    def __init__(self, kind, port, base, instance_id, daemon):
        self.kind, self.port, self.base, self.instance_id, self.daemon = \
            kind, port, base, instance_id, daemon

    def alive(self):
        return self.daemon.alive()

    def log(self):
        return self.daemon.log()

    def stop(self):
        self.daemon.stop()

    def __repr__(self):
        return f"<{self.kind} :{self.port} {self.base}>"


def start_server(kind, rundir, workers=1, extra=(), name=None, base=None):
    """Start zhttpd or condure with --listen 127.0.0.1:PORT --zclient-stream BASE."""
    rundir = pathlib.Path(rundir)
    name = name or kind
    port = free_port()
    base = base or f"ipc://{rundir}/{name}"
    args = ["--listen", f"127.0.0.1:{port}", "--zclient-stream", base, "--workers", str(workers),
            *extra]
    extra = list(extra)
    given_id = extra[extra.index("--id") + 1].encode() if "--id" in extra else None
    if kind == "zhttpd":
        d = Zhttpd(args + ["--log-level", "3", "--shutdown-timeout", "0"], rundir, name=name)
        d.start()
        wait_port(port, 10.0, d.proc)
        return Server(kind, port, base, given_id or b"zhttpd", d)
    if kind == "condure":
        path = base[len("ipc://"):]
        d = Condure(args, rundir, name=name)
        d.start(port, ipc_files=[f"{path}-out", f"{path}-out-stream", f"{path}-in"])
        return Server(kind, port, base, given_id or b"condure", d)
    raise ValueError(kind)
