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
