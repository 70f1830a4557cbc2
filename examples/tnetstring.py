"""A small pure-Python tnetstring codec (ZHTTP.md §1.1), used by the examples and the tests.

    dumps(obj) -> bytes   bytes/bytearray/str (UTF-8) -> `,`, bool -> `!`, int -> `#`,
                          float -> `^`, None -> `~`, list/tuple -> `]`, dict -> `}` (str or bytes
                          keys, written in the dict's own order)
    loads(data) -> obj    one whole value; strings come back as bytes, dict keys as str when they
                          are valid UTF-8 (else bytes); raises ValueError on malformed input or
                          trailing bytes
    loads_prefix(data) -> (obj, rest)   the first value and the bytes after it

It is deliberately strict in the same ways as shared/proto/tnetstring.c (no leading zeros or signs
in lengths, exactly true/false, only 0:~, string dict keys), so tests can build hostile frames with
it and check that both sides agree. zhttp_packet()/parse_packet() add and strip the `T` prefix.
"""
import re

__all__ = ["dumps", "loads", "loads_prefix", "zhttp_packet", "parse_packet"]

MAX_LEN_DIGITS = 9
_FLOAT_RE = re.compile(rb"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")
_INT_RE = re.compile(rb"-?[0-9]+\Z")


def _wrap(payload: bytes, tag: bytes) -> bytes:
    return b"%d:" % len(payload) + payload + tag


def dumps(obj) -> bytes:
    if isinstance(obj, (bytes, bytearray)):
        return _wrap(bytes(obj), b",")
    if isinstance(obj, str):
        return _wrap(obj.encode("utf-8"), b",")
    if isinstance(obj, bool):  # before int: bool is an int subclass
        return _wrap(b"true" if obj else b"false", b"!")
    if isinstance(obj, int):
        return _wrap(b"%d" % obj, b"#")
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise ValueError("tnetstring floats must be finite")
        return _wrap(repr(obj).encode("ascii"), b"^")
    if obj is None:
        return b"0:~"
    if isinstance(obj, (list, tuple)):
        return _wrap(b"".join(dumps(x) for x in obj), b"]")
    if isinstance(obj, dict):
        parts = []
        for k, v in obj.items():
            if not isinstance(k, (str, bytes)):
                raise TypeError("tnetstring dict keys must be str or bytes")
            parts.append(dumps(k))
            parts.append(dumps(v))
        return _wrap(b"".join(parts), b"}")
    raise TypeError("cannot encode %r as a tnetstring" % type(obj))


def _key(k: bytes):
    try:
        return k.decode("utf-8")
    except UnicodeDecodeError:
        return k


def loads_prefix(data: bytes, _depth: int = 0):
    data = bytes(data)
    if _depth > 64:
        raise ValueError("nested too deep")
    colon = data.find(b":", 0, MAX_LEN_DIGITS + 1)
    if colon <= 0:
        raise ValueError("bad length prefix")
    prefix = data[:colon]
    if not prefix.isdigit() or (len(prefix) > 1 and prefix[:1] == b"0"):
        raise ValueError("bad length prefix %r" % prefix)
    n = int(prefix)
    start = colon + 1
    if len(data) < start + n + 1:
        raise ValueError("truncated")
    payload = data[start:start + n]
    tag = data[start + n:start + n + 1]
    rest = data[start + n + 1:]
    if tag == b",":
        return payload, rest
    if tag == b"#":
        if not _INT_RE.match(payload):
            raise ValueError("bad int %r" % payload)
        return int(payload), rest
    if tag == b"^":
        if not _FLOAT_RE.match(payload):
            raise ValueError("bad float %r" % payload)
        return float(payload), rest
    if tag == b"!":
        if payload == b"true":
            return True, rest
        if payload == b"false":
            return False, rest
        raise ValueError("bad bool %r" % payload)
    if tag == b"~":
        if payload:
            raise ValueError("bad null")
        return None, rest
    if tag == b"]":
        items = []
        while payload:
            item, payload = loads_prefix(payload, _depth + 1)
            items.append(item)
        return items, rest
    if tag == b"}":
        d = {}
        while payload:
            k, payload = loads_prefix(payload, _depth + 1)
            if not isinstance(k, bytes):
                raise ValueError("dict key is not a string")
            if not payload:
                raise ValueError("dict key without a value")
            v, payload = loads_prefix(payload, _depth + 1)
            d[_key(k)] = v
        return d, rest
    raise ValueError("unknown tag %r" % tag)


def loads(data: bytes):
    value, rest = loads_prefix(data)
    if rest:
        raise ValueError("trailing bytes")
    return value


def zhttp_packet(fields: dict) -> bytes:
    """`T` + the tnetstring dict, keys in the dict's order."""
    return b"T" + dumps(fields)


def parse_packet(frame: bytes) -> dict:
    if frame[:1] != b"T":
        raise ValueError("not a T packet")
    d = loads(frame[1:])
    if not isinstance(d, dict):
        raise ValueError("packet is not a dict")
    return d
