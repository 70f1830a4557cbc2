"""Type=notify (issue 16 item 2): READY=1 only after every bind succeeded, STOPPING=1 when the drain
starts. NOTIFY_SOCKET is a unix datagram socket of the test, as systemd's would be."""
import os
import signal
import socket
import subprocess

from conftest import build_dir, free_port
from zhttpd import SANITIZER_MARKERS


def notify_socket(rundir):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(rundir / "notify"))
    s.settimeout(15)
    return s


def start(rundir, args):
    env = dict(os.environ, NOTIFY_SOCKET=str(rundir / "notify"))
    log = open(rundir / "zhttpd.log", "wb")
    return subprocess.Popen([str(build_dir() / "zhttpd")] + args, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def stop(p, rundir):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    text = (rundir / "zhttpd.log").read_text(errors="replace")
    assert not any(m in text for m in SANITIZER_MARKERS), text
    return text


def test_ready_after_every_bind_then_stopping_on_sigterm(rundir):
    ns = notify_socket(rundir)
    port = free_port()
    p = start(rundir, ["--listen", f"127.0.0.1:{port}", "--zclient-stream", f"ipc://{rundir}/zc",
                       "--zserver-req", f"ipc://{rundir}/zr", "--workers", "1"])
    try:
        msg = ns.recv(4096).decode()
        assert msg.split("\n")[0] == "READY=1", msg
        # at READY every bind is done: the listener accepts, every ipc socket exists
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        for name in ("zc-out", "zc-in", "zr"):
            assert (rundir / name).exists(), name
        p.send_signal(signal.SIGTERM)
        msg = ns.recv(4096).decode()
        assert msg.split("\n")[0] == "STOPPING=1", msg
        assert p.wait(15) == 0
    finally:
        stop(p, rundir)


def test_no_ready_when_a_bind_fails(rundir):
    ns = notify_socket(rundir)
    ns.settimeout(0.5)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    p = start(rundir, ["--listen", f"127.0.0.1:{port}", "--zclient-stream", f"ipc://{rundir}/zc"])
    try:
        assert p.wait(15) == 1
        got = []
        try:
            while True:
                got.append(ns.recv(4096).decode())
        except socket.timeout:
            pass
        assert not any("READY=1" in m for m in got), got
    finally:
        text = stop(p, rundir)
        taken.close()
    assert "startup failed" in text


def test_no_ready_when_an_ipc_bind_fails(rundir):
    ns = notify_socket(rundir)
    ns.settimeout(0.5)
    (rundir / "a-file").write_text("not a directory")  # the ipc parent cannot be created
    p = start(rundir, ["--zserver-req", f"ipc://{rundir}/a-file/zr"])
    try:
        assert p.wait(15) == 1
        got = []
        try:
            while True:
                got.append(ns.recv(4096).decode())
        except socket.timeout:
            pass
        assert got == []
    finally:
        stop(p, rundir)


def test_unit_execreload_matches_what_sighup_does(rundir):
    """packaging/zhttpd.service has ExecReload=/bin/kill -HUP $MAINPID, and SIGHUP reloads (the
    daemon keeps running)."""
    from conftest import REPO
    unit = (REPO / "packaging" / "zhttpd.service").read_text()
    reload_lines = [ln for ln in unit.splitlines() if ln.startswith("ExecReload=")]
    ns = notify_socket(rundir)
    p = start(rundir, ["--listen", f"127.0.0.1:{free_port()}", "--zclient-stream",
                       f"ipc://{rundir}/zc", "--workers", "1"])
    try:
        assert ns.recv(4096).decode().startswith("READY=1")
        p.send_signal(signal.SIGHUP)
        try:
            rc = p.wait(5)
        except subprocess.TimeoutExpired:
            rc = None
        # SIGHUP reloads (issue 17): the daemon stays, and says RELOADING=1 then READY=1
        assert rc is None, "SIGHUP stopped zhttpd"
        assert reload_lines == ["ExecReload=/bin/kill -HUP $MAINPID"]
        assert ns.recv(4096).decode().startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert ns.recv(4096).decode().startswith("READY=1")
    finally:
        stop(p, rundir)
