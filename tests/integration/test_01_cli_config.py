"""Command line and config file: --help/--version, both flag forms, precise errors and warnings,
and the Zurl/Pushpin config files that must load unchanged."""
import os
import pathlib
import re
import shutil

import pytest

from conftest import REPO, build_dir, free_port
from zhttpd import Zhttpd, run_once

DATA = REPO / "tests" / "data" / "config"


def test_help_lists_both_roles_and_exits_zero(rundir):
    rc, out = run_once(["--help"], rundir)
    assert rc == 0
    for flag in ("--config", "--listen", "--zclient-stream", "--zclient-req", "--workers", "--id",
                 "--buffer-size", "--log-level", "--shutdown-timeout", "--zserver-req",
                 "--zserver-stream"):
        assert flag in out, flag


def test_version(rundir):
    rc, out = run_once(["--version"], rundir)
    assert rc == 0
    assert re.fullmatch(r"zhttpd \d+\.\d+\.\d+\n", out), out


def test_unknown_flag_is_an_error_naming_it(rundir):
    rc, out = run_once(["--no-such-flag"], rundir)
    assert rc != 0
    assert "--no-such-flag" in out


def test_nothing_to_do_is_a_usage_error(rundir):
    rc, out = run_once([], rundir)
    assert rc != 0
    assert "nothing to do" in out


@pytest.mark.parametrize("form", ["space", "equals"])
def test_both_flag_forms(rundir, form):
    ep = f"ipc://{rundir}/req"
    if form == "space":
        args = ["--workers", "2", "--zserver-req", ep, "--id", "zh-form"]
    else:
        args = ["--workers=2", f"--zserver-req={ep}", "--id=zh-form"]
    d = Zhttpd(args, rundir).start()
    try:
        log = d.wait_log(r"ready: id zh-form, 2 worker\(s\)")
        assert "client role on" in log
    finally:
        d.stop()


def test_bad_value_exits_naming_file_line_and_key(rundir):
    conf = rundir / "bad.conf"
    conf.write_text("[General]\n"
                    f"in_req_spec=ipc://{rundir}/req\n"
                    "max_open_requests=lots\n")
    rc, out = run_once(["--config", conf], rundir)
    assert rc != 0
    assert f"{conf}:3:" in out, out
    assert "max_open_requests" in out and "lots" in out


def test_bad_cidr_in_deny_exits_naming_file_line_and_key(rundir):
    conf = rundir / "bad.conf"
    conf.write_text(f"[General]\nin_req_spec=ipc://{rundir}/req\ndeny=10/99\n")
    rc, out = run_once([f"--config={conf}"], rundir)
    assert rc != 0
    assert f"{conf}:3:" in out and "deny" in out, out


def test_unknown_key_warns_with_file_line_and_key_and_starts(rundir):
    conf = rundir / "warn.conf"
    conf.write_text(f"[General]\nin_req_spec=ipc://{rundir}/req\nfrobnicate=yes\n")
    d = Zhttpd(["--config", conf, "--workers", "1"], rundir).start()
    try:
        log = d.log()
        assert re.search(rf"WARN.*{re.escape(str(conf))}:3:.*frobnicate", log), log
    finally:
        d.stop()


def test_server_section_listen_and_zclient_from_file(rundir):
    port = free_port()
    conf = rundir / "server.conf"
    conf.write_text("[server]\n"
                    f"listen=127.0.0.1:{port}\n"
                    f"zclient_stream=ipc://{rundir}/client\n"
                    "workers=1\n")
    d = Zhttpd(["--config", conf], rundir).start()
    try:
        log = d.log()
        assert "server role on" in log
        assert f"listening on 127.0.0.1:{port}" in log
        assert f"ipc://{rundir}/client-out" in log
    finally:
        d.stop()


@pytest.mark.parametrize("name", ["zurl.conf", "zurl.conf.example", "pushpin-zurl.conf"])
def test_zurl_and_pushpin_configs_load_unchanged(rundir, name):
    """The two files of Debian's zurl package and Pushpin's generated zurl.conf start zhttpd as
    they are (they name ipc paths under /var/run, which zhttpd creates and locks). zhttpd runs in a
    private mount namespace with its own tmpfs on /run, so those paths are this test's alone: a
    zurl or pushpin running on the machine keeps its sockets, and nothing is left in /run."""
    src = DATA / name
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private /run holding the files' own ipc paths")
    private_run = ('mount -t tmpfs zhttpd-test-run /run && '
                   '{ [ -L /var/run ] || mount -t tmpfs zhttpd-test-varrun /var/run; } && '
                   'exec "$0" "$@"')
    d = Zhttpd(["--mount", "--propagation", "private", "sh", "-c", private_run, build_dir() / "zhttpd",
                "--config", src, "--workers", "1"], rundir, binary="unshare").start()
    try:
        log = d.log()
        assert "client role on" in log
        assert "WARN" not in log, log
        text = src.read_text()
        for key in ("in_spec", "in_stream_spec", "out_spec"):
            m = re.search(rf"^{key}=(\S+)$", text, re.M)
            if m:
                assert m.group(1) in log, (key, log)
    finally:
        d.stop()
