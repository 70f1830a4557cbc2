"""The layer rules of DESIGN.md, checked on the source tree: client/ and server/ never include each
other, shared/ includes neither, shared/proto/ includes nothing above it, and no project header is
named after a system one."""
import re

import pytest

from conftest import REPO

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)

# layer -> project folders it may include
ALLOWED = {
    "shared/proto": {"shared/proto"},
    "shared/rt": {"shared/proto", "shared/rt"},
    "client": {"shared/proto", "shared/rt", "client"},
    "server": {"shared/proto", "shared/rt", "server"},
    "daemon": {"shared/proto", "shared/rt", "client", "server", "daemon"},
}


def sources(layer):
    return sorted(p for p in (REPO / layer).glob("*.[ch]"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_includes_only_what_it_may(layer):
    files = sources(layer)
    assert files, f"{layer} has no sources"
    for f in files:
        for inc in INCLUDE.findall(f.read_text()):
            folder = inc.rsplit("/", 1)[0] if "/" in inc else ""
            assert folder in ALLOWED[layer], f"{f.relative_to(REPO)} includes \"{inc}\""


def test_proto_uses_no_fd_or_loop_libraries():
    for f in sources("shared/proto"):
        text = f.read_text()
        for banned in ("<zmq.h>", "<curl/", "<ares.h>", "<sys/epoll.h>", "<pthread.h>", "<openssl/"):
            assert banned not in text, f"{f.relative_to(REPO)} includes {banned}"


def test_no_header_named_after_a_system_one():
    system = {"zmq.h", "curl.h", "ares.h", "queue.h", "epoll.h", "ssl.h", "zlib.h", "jansson.h"}
    for layer in ALLOWED:
        for f in (REPO / layer).glob("*.h"):
            assert f.name not in system, f.relative_to(REPO)


def test_banned_functions_are_not_used():
    banned = re.compile(r"\b(sprintf|strcpy|strcat|strtok|gets|vsprintf)\s*\(")
    for layer in ALLOWED:
        for f in sources(layer):
            for n, line in enumerate(f.read_text().splitlines(), 1):
                assert not banned.search(line), f"{f.relative_to(REPO)}:{n}: {line.strip()}"


def test_one_transport_for_both_roles():
    """The per-connection OpenSSL I/O lives in shared/rt/stream.c only, which includes nothing of
    either role; the server connection uses it instead of OpenSSL calls of its own."""
    stream = [REPO / "shared/rt/stream.c", REPO / "shared/rt/stream.h"]
    for f in stream:
        assert f.exists(), f.relative_to(REPO)
        for inc in INCLUDE.findall(f.read_text()):
            assert not inc.startswith(("client/", "server/", "daemon/")), f"{f.name} includes {inc}"
    io = re.compile(r"\bSSL_(read|write|shutdown|do_handshake|pending|has_pending)\s*\(")
    for layer in ALLOWED:
        for f in sources(layer):
            if f not in stream:
                assert not io.search(f.read_text()), f"{f.relative_to(REPO)} does TLS I/O itself"
    assert "zh_stream_read" in (REPO / "server/conn.c").read_text()


def test_engine_files_have_one_job_and_stay_small():
    """No source file of the engines over 800 lines (shared/proto/http1.c, one self-contained
    parser, may be longer), and the server and bridge modules the split made exist."""
    for name in ("server/conn.c", "server/input.c", "server/response.c", "server/handler.c",
                 "server/streammode.c", "server/reqmode.c", "server/tls.c", "shared/rt/stream.c",
                 "shared/rt/zbridge.c", "shared/rt/zport.c", "shared/rt/zsock.c", "shared/rt/ipc.c",
                 "shared/proto/jformat.c"):
        assert (REPO / name).exists(), name
    for layer in ("server", "shared/rt", "shared/proto"):
        for f in sources(layer):
            if f.suffix != ".c" or f.name == "http1.c":
                continue
            n = len(f.read_text().splitlines())
            assert n <= 800, f"{f.relative_to(REPO)} has {n} lines"


ARCH = REPO / "docs/internals/architecture.md"
NAMED_FILE = re.compile(r"\b((?:shared/proto|shared/rt|client|server|daemon|tests|bench|docs)/[\w./-]+"
                        r"\.(?:c|h|md|py))\b")
NAMED_CALL = re.compile(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`")


def test_architecture_page_names_only_what_exists():
    """docs/internals/architecture.md, the page a newcomer reads first: every file it names exists,
    and every function it names (`snake_case`) is defined in one of the files it names."""
    text = ARCH.read_text()
    files = sorted(set(NAMED_FILE.findall(text)))
    assert len(files) >= 30, files
    for name in files:
        assert (REPO / name).exists(), f"architecture.md names {name}, which does not exist"
    code = "\n".join((REPO / f).read_text() for f in files if f.endswith((".c", ".h")))
    for fn in sorted(set(NAMED_CALL.findall(text))):
        if fn.startswith(("test_", "zh_zmsg.")):
            continue
        assert re.search(r"\b%s\s*\(" % re.escape(fn), code), f"architecture.md names {fn}()"
