"""README's quick start, run as written (issue 10 item 4, issue 16 item 4).

The shell blocks under `<!-- quickstart:server -->` and `<!-- quickstart:client -->` in README.md are
parsed out of the README and run line by line from the repository root with bash: a line ending in
`&` is started in the background (and ended by its pid afterwards), any other line runs to
completion. The only substitutions, so that a zhttpd, zurl, condure or nginx already running on this
machine cannot disturb the test:
  - the ports 8000 and 8080 -> free loopback ports,
  - the ipc directory /tmp/zhttpd -> a private directory of this test,
  - ./build/ -> $ZH_BUILD_DIR (the build under test).
The commands run with the directory of the python running pytest first in PATH, so `python3` is
the interpreter that has pyzmq (on Debian, /usr/bin/python3: what a user of the README gets).
Before the last line runs, the test waits until the block's ports accept connections and its
--zserver-req ipc path exists (a person typing the lines gives the same time).

Each block also has at most five lines (issue 16: the quick start per role in five lines each)."""
import os
import re
import signal
import socket
import subprocess
import time

import sys

from conftest import REPO, build_dir, free_port
from zhttpd import SANITIZER_MARKERS

README = REPO / "README.md"
PORTS = ("8000", "8080")
IPC_DIR = "/tmp/zhttpd"


ENV = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))


def block(name):
    m = re.search(r"<!-- quickstart:%s -->\s*```sh\n(.*?)```" % name, README.read_text(), re.S)
    assert m, f"README.md has no quickstart:{name} block"
    return [ln for ln in m.group(1).splitlines() if ln.strip()]


def substitute(lines, rundir):
    ports = {p: str(free_port()) for p in PORTS}
    ipc = str(rundir / "zhttpd")
    out = []
    for ln in lines:
        for old, new in ports.items():
            ln = re.sub(r"(?<![0-9])%s(?![0-9])" % old, new, ln)
        ln = ln.replace(IPC_DIR, ipc).replace("./build/", f"{build_dir()}/")
        out.append(ln)
    return out, ports


def wait_ready(lines, ports, deadline):
    used = [p for p in ports.values() if any(p in ln for ln in lines)]
    paths = [m.group(1) for ln in lines for m in re.finditer(r"--zserver-req ipc://(\S+)", ln)]
    while True:
        missing = [p for p in paths if not os.path.exists(p)]
        for p in used:
            try:
                socket.create_connection(("127.0.0.1", int(p)), timeout=0.5).close()
            except OSError:
                missing.append(p)
        if not missing:
            return
        assert time.monotonic() < deadline, f"not ready: {missing}"
        time.sleep(0.05)


def run_block(lines, ports, rundir):
    bg = []
    results = []
    try:
        for i, ln in enumerate(lines):
            if ln.rstrip().endswith("&"):
                log = open(rundir / f"bg{i}.log", "wb")
                p = subprocess.Popen(["bash", "-c", "exec " + ln.rstrip()[:-1]], cwd=REPO, env=ENV,
                                     stdout=log, stderr=subprocess.STDOUT)
                bg.append((ln, p, rundir / f"bg{i}.log"))
                continue
            if i == len(lines) - 1:
                wait_ready(lines, ports, time.monotonic() + 15)
            r = subprocess.run(["bash", "-c", ln], cwd=REPO, env=ENV, capture_output=True, timeout=60)
            results.append(r)
        for ln, p, _ in bg:
            assert p.poll() is None, f"background command exited early: {ln}"
    finally:
        for ln, p, logpath in bg:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            if "zhttpd" in ln.split()[0]:
                text = logpath.read_text(errors="replace")
                assert not any(mk in text for mk in SANITIZER_MARKERS), text
    return results


def test_blocks_are_five_lines_at_most():
    for name in ("server", "client"):
        assert 1 <= len(block(name)) <= 5, block(name)


def test_server_quickstart_as_written(rundir):
    lines, ports = substitute(block("server"), rundir)
    results = run_block(lines, ports, rundir)
    last = results[-1]
    out = last.stdout.decode(errors="replace")
    assert last.returncode == 0, last.stderr
    assert out.startswith("HTTP/1.1 200 OK"), out
    assert out.rstrip().endswith("hello world"), out


def test_client_quickstart_as_written(rundir):
    lines, ports = substitute(block("client"), rundir)
    results = run_block(lines, ports, rundir)
    last = results[-1]
    out = last.stdout.decode(errors="replace")
    assert last.returncode == 0, (out, last.stderr)
    assert out.splitlines()[0] == "200 OK", out
    assert "Server: SimpleHTTP" in out and "Directory listing" in out, out


def test_client_quickstart_needs_the_allow_line(rundir):
    """Without the config line the README explains, the same request is refused by policy."""
    lines, ports = substitute(block("client"), rundir)
    lines = [ln.replace("--config examples/quickstart-client.conf ", "") for ln in lines]
    assert not any("quickstart-client.conf" in ln for ln in lines)
    results = run_block(lines, ports, rundir)
    last = results[-1]
    assert last.returncode == 1
    assert "error: policy-violation" in (last.stdout + last.stderr).decode(), last


def test_quickstart_config_is_one_allow_line():
    conf = (REPO / "examples" / "quickstart-client.conf").read_text()
    settings = [ln for ln in conf.splitlines() if ln.strip() and not ln.startswith(("#", ";"))]
    assert settings == ["[General]", "allow=127.0.0.1"]
