"""Shared pytest fixtures: where the build is, free ports, and a per-test run directory.

Binaries come from $ZH_BUILD_DIR (default: <repo>/build). Every test talks to 127.0.0.1 only."""
import os
import pathlib
import socket

import pytest
import zmq

REPO = pathlib.Path(__file__).resolve().parents[2]


def build_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("ZH_BUILD_DIR", REPO / "build")).resolve()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def bindir() -> pathlib.Path:
    return build_dir()


@pytest.fixture
def rundir(tmp_path) -> pathlib.Path:
    d = tmp_path / "run"
    d.mkdir()
    return d


@pytest.fixture
def zctx():
    """A ZeroMQ context for the test's own sockets, destroyed (linger 0) afterwards."""
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)
