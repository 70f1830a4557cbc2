"""zhttpd -t / --test-config: the whole configuration is checked as startup would check it, nothing
is bound, and the answer is "configuration OK" (exit 0) or each error with its FILE:LINE and key
(exit 1): one bad file per kind of error."""
import socket

import pytest

from conftest import free_port
from test_15_server_listeners import make_identity
from zhttpd import run_once


def good_conf(rundir, port, idents):
    return ("[General]\n"
            f"in_req_spec = ipc://{rundir}/creq\n"
            "deny = 10.0.0.0/8, *.internal.test\n"
            "[server]\n"
            f"listen = 127.0.0.1:{port},tls,default-cert=one.test\n"
            f"zclient_stream = ipc://{rundir}/hs\n"
            f"tls_identities_dir = {idents}\n")


@pytest.fixture
def idents(tmp_path):
    d = tmp_path / "ids"
    d.mkdir()
    make_identity(d, "one.test", "one.test")
    return d


def check(rundir, text, *flags):
    conf = rundir / "z.conf"
    conf.write_text(text)
    return run_once(["-t", "--config", conf, *flags], rundir)


def test_good_config_is_ok_and_binds_nothing(rundir, idents):
    port = free_port()
    rc, out = check(rundir, good_conf(rundir, port, idents))
    assert rc == 0, out
    assert f"zhttpd: configuration OK ({rundir / 'z.conf'})" in out, out
    # nothing was bound: the port is free and no ipc socket file was created
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.close()
    assert not (rundir / "creq").exists() and not (rundir / "hs-out").exists()
    # the long form and flags on top of the file are checked too
    rc, out = run_once(["--test-config", "--config", rundir / "z.conf", "--workers", "2"], rundir)
    assert rc == 0 and "zhttpd: configuration OK" in out, out


def line_of(text, needle):
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


BAD = {
    # kind: (what to replace in the good file, replacement, expected message fragment, key)
    "syntax": ("deny = 10.0.0.0/8, *.internal.test", "deny 10.0.0.0/8",
               "expected key=value", None),
    "value": ("[server]\n", "[server]\nstream_maxconn = lots\n", "bad value 'lots'",
              "stream_maxconn"),
    "policy rule": ("deny = 10.0.0.0/8", "deny = 10.0.0.0/33", "bad value '10.0.0.0/33'", "deny"),
    "listen spec": (",tls,default-cert=one.test", ",tls,mode=660", "bad value", "listen"),
    "endpoint": ("in_req_spec = ipc://", "in_req_spec = /", "expected a ZeroMQ endpoint",
                 "in_req_spec"),
    "section": ("[server]\n", "[server\n", "expected a section header", None),
    "listen needs a handler socket": (",tls,default-cert=one.test", ",req", "no --zclient-req",
                                      "listen"),
    "keep-alive": ("[server]\n", "[server]\nkeepalive_interval_ms = 90000\n",
                   "must be shorter than session_expiry_ms", "keepalive_interval_ms"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_each_kind_of_error_names_file_line_and_key(rundir, idents, kind):
    old, new, what, key = BAD[kind]
    text = good_conf(rundir, free_port(), idents)
    assert old in text
    text = text.replace(old, new, 1)
    rc, out = check(rundir, text)
    assert rc == 1, out
    conf = rundir / "z.conf"
    needle = new.strip().splitlines()[-1]
    n = line_of(text, needle)
    errs = [l for l in out.splitlines() if what in l]
    assert len(errs) == 1, out
    assert errs[0].startswith(f"zhttpd: {conf}:{n}: "), out
    if key:
        assert f"key '{key}'" in errs[0], out
    assert "OK" not in out


def test_every_bad_line_is_reported_not_just_the_first(rundir, idents):
    text = good_conf(rundir, free_port(), idents)
    text = text.replace("[server]\n", "[server]\nstream_maxconn = lots\nreq_maxconn = -5\n")
    rc, out = check(rundir, text)
    assert rc == 1
    conf = rundir / "z.conf"
    a, b = line_of(text, "stream_maxconn"), line_of(text, "req_maxconn")
    assert f"{conf}:{a}: key 'stream_maxconn': bad value 'lots'" in out, out
    assert f"{conf}:{b}: key 'req_maxconn': bad value '-5'" in out, out


def test_certificate_and_key_that_do_not_match(rundir, idents, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    make_identity(other, "one.test", "one.test")
    (idents / "one.test.key").write_bytes((other / "one.test.key").read_bytes())
    text = good_conf(rundir, free_port(), idents)
    rc, out = check(rundir, text)
    assert rc == 1, out
    n = line_of(text, "tls_identities_dir")
    line = [l for l in out.splitlines() if "tls identities" in l]
    assert len(line) == 1, out
    assert line[0].startswith(f"zhttpd: {rundir / 'z.conf'}:{n}: key 'tls_identities_dir': "), out
    assert "one.test" in line[0], out


def test_missing_identities_dir_and_unreadable_files(rundir, idents):
    text = good_conf(rundir, free_port(), idents).replace(str(idents), str(idents) + "-missing")
    text = text.replace("[server]\n", f"tls_ca_file = {rundir}/no-ca.pem\n"
                        f"logfile = {rundir}/no-such-dir/z.log\n[server]\n")
    rc, out = check(rundir, text)
    assert rc == 1, out
    conf = rundir / "z.conf"
    for needle, what in (("tls_identities_dir", "tls identities"), ("tls_ca_file", "cannot read"),
                         ("logfile", "cannot create")):
        n = line_of(text, needle)
        assert f"zhttpd: {conf}:{n}: key '{needle}': " in out and what in out, (needle, out)
    assert "3 error(s)" in out, out


def test_bad_flag_value_is_named(rundir, idents):
    conf = rundir / "z.conf"
    conf.write_text(good_conf(rundir, free_port(), idents))
    rc, out = run_once(["-t", "--config", conf, "--workers", "0"], rundir)
    assert rc == 1 and "--workers: bad value '0'" in out, out
