"""The tests use the same tnetstring module as the examples (examples/tnetstring.py)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "examples"))

from tnetstring import dumps, loads, loads_prefix, parse_packet, zhttp_packet  # noqa: E402,F401

__all__ = ["dumps", "loads", "loads_prefix", "zhttp_packet", "parse_packet"]
