"""The client-mode examples (examples/zurl_get.py, zurl_stream_get.py, zurl_stream_post.py) run as
real processes against zhttpd and against Debian's zurl, both started on the same Zurl config."""
import hashlib
import json
import subprocess
import sys

from conftest import REPO, free_port
from nginx_origin import NginxOrigin
from origins import AppOrigin, HELLO, pattern
from zrequester import binary, daemon  # noqa: F401 (fixtures)

EXAMPLES = REPO / "examples"


def run(script, *args, timeout=30, stdin=None):
    p = subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, args)], input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                       cwd=EXAMPLES)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def split_head(out: bytes):
    head, _, body = out.partition(b"\n\n")
    lines = head.decode().split("\n")
    return lines[0], lines[1:], body


def stream_args(d):
    return ["--in", d.in_ep, "--in-stream", d.stream_ep, "--out", d.out_ep]


def test_zurl_get(daemon):
    d = daemon()
    with AppOrigin() as o:
        rc, out, err = run("zurl_get.py", d.req_ep, o.url("/hello"))
        assert rc == 0, err
        status, headers, body = split_head(out)
        assert status == "200 OK"
        assert "X-Multi: one" in headers and "X-Multi: two" in headers
        assert body == HELLO


def test_zurl_get_reports_an_error(daemon):
    d = daemon()
    rc, out, err = run("zurl_get.py", d.req_ep, f"http://127.0.0.1:{free_port()}/")
    assert rc == 1
    assert err.strip() == "error: remote-connection-failed"


def test_zurl_stream_get_with_credits(daemon, rundir):
    d = daemon()
    data = pattern(2 * 1000 * 1000)
    with NginxOrigin(rundir, {"two.bin": data}) as ng:
        rc, out, err = run("zurl_stream_get.py", *stream_args(d), "--credits", "32768",
                           ng.url("/two.bin"))
        assert rc == 0, err
        status, headers, body = split_head(out)
        assert status == "200 OK"
        assert f"Content-Length: {len(data)}" in headers
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


def test_zurl_stream_get_with_base(daemon, rundir):
    """--base BASE is BASE-in, BASE-in-stream, BASE-out (Condure 1.10's --zserver-stream)."""
    d = daemon()
    base = d.in_ep[:-len("/in")] + "/zs"
    for ep, src in ((base + "-in", d.in_ep), (base + "-in-stream", d.stream_ep),
                    (base + "-out", d.out_ep)):
        (rundir / ep[len("ipc://"):]).symlink_to(src[len("ipc://"):])
    with AppOrigin() as o:
        rc, out, err = run("zurl_stream_get.py", "--base", base, o.url("/chunked"))
        assert rc == 0, err
        assert split_head(out)[2] == b"".join(b"piece %d\n" % i for i in range(5))


def test_zurl_stream_get_reports_an_error(daemon):
    d = daemon()
    rc, out, err = run("zurl_stream_get.py", *stream_args(d), f"http://127.0.0.1:{free_port()}/")
    assert rc == 1
    assert err.strip() == "error: remote-connection-failed"


def test_zurl_stream_post_uploads_a_file(daemon, rundir):
    d = daemon()
    data = pattern(700000)[::-1]
    path = rundir / "upload.bin"
    path.write_bytes(data)
    with AppOrigin() as o:
        rc, out, err = run("zurl_stream_post.py", *stream_args(d), "--chunk", "20000",
                           o.url("/upload"), path)
        assert rc == 0, err
        status, headers, body = split_head(out)
        assert status == "200 OK"
        got = json.loads(body)
        assert got["len"] == len(data)
        assert got["sha256"] == hashlib.sha256(data).hexdigest()
        assert got["te"] == "chunked"
        assert f"uploaded {len(data)} bytes" in err


def test_zurl_stream_post_from_stdin(daemon):
    d = daemon()
    with AppOrigin() as o:
        rc, out, err = run("zurl_stream_post.py", *stream_args(d), "--content-type", "text/plain",
                           o.url("/echo"), "-", stdin=b"posted from stdin\n")
        assert rc == 0, err
        echo = json.loads(split_head(out)[2])
        assert echo["method"] == "POST"
        assert echo["body"] == "posted from stdin\n"
        assert ["Content-Type", "text/plain"] in echo["headers"]
