"""Interop tests for the ZHTTP codec: a pure-Python tnetstring implementation (tnetstring_py) and the
C decoder/encoder (through the test-only zhttp_codec binary) must agree field for field.

  * packets built in Python (the ZHTTP.md §5.2 examples, every field, multi-id, random ones) are
    decoded by C and reported exactly as Python expects;
  * packets the C encoder writes decode in Python to exactly what was asked for, and the §5.2
    examples come out byte for byte;
  * malformed frames make the C decoder fail with a reason naming the problem.
"""
import json
import random
import subprocess

import pytest

from tnetstring_py import dumps, loads, loads_prefix, parse_packet, zhttp_packet


# ---- helpers ---------------------------------------------------------------------------------

@pytest.fixture
def codec(bindir):
    exe = bindir / "zhttp_codec"
    if not exe.exists():
        pytest.fail("%s not built (cmake --build $ZH_BUILD_DIR --target zhttp_codec)" % exe)
    return exe


def c_decode(codec, frame: bytes, pub: bool = False):
    args = [str(codec), "decode"] + (["--pub"] if pub else [])
    r = subprocess.run(args, input=frame, capture_output=True, timeout=30)
    assert r.returncode in (0, 1), r.stderr.decode(errors="replace")
    out = json.loads(r.stdout)
    if r.returncode == 0:
        assert "error" not in out
    else:
        assert set(out) == {"error"}, out
    return r.returncode, out


def c_encode(codec, desc: dict) -> bytes:
    r = subprocess.run([str(codec), "encode"], input=json.dumps(desc).encode(),
                       capture_output=True, timeout=30)
    assert r.returncode == 0, (r.stdout, r.stderr)
    return r.stdout


def as_bytes(v) -> bytes:
    return v.encode("utf-8") if isinstance(v, str) else bytes(v)


def json_bytes(v):
    """How zhttp_codec reports a byte value."""
    b = as_bytes(v)
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": b.hex()}


def from_json_bytes(j) -> bytes:
    return j.encode("utf-8") if isinstance(j, str) else bytes.fromhex(j["hex"])


STR_FIELDS = ["from", "condition", "method", "uri", "reason", "body", "content-type",
              "peer-address", "connect-host", "client-cert", "client-key"]
INT_FIELDS = ["credits", "code", "max-size", "timeout", "peer-port", "connect-port"]
BOOL_FIELDS = ["more", "stream", "router-resp", "trust-connect-host", "ignore-policies",
               "ignore-tls-errors", "follow-redirects"]
RAW_FIELDS = ["user-data", "passthrough"]


def expected_json(pkt: dict) -> dict:
    """The canonical JSON the C decoder must print for the Python packet dict pkt (an independent
    re-statement of the rules in tests/tools/zhttp_codec.c and ZHTTP.md §3)."""
    out = {}
    for k in STR_FIELDS:
        if k in pkt:
            out[k] = json_bytes(pkt[k])
    if "id" in pkt:
        if isinstance(pkt["id"], list):
            out["id"] = [dict({"id": json_bytes(e["id"])},
                              **({"seq": e["seq"]} if "seq" in e else {})) for e in pkt["id"]]
            out["multi-id"] = True
        else:
            e = {"id": json_bytes(pkt["id"])}
            if "seq" in pkt:
                e["seq"] = pkt["seq"]
            out["id"] = [e]
    elif "seq" in pkt:
        out["seq"] = pkt["seq"]
    if pkt.get("type"):
        out["type"] = pkt["type"]
    if "ext" in pkt and "multi" in pkt["ext"]:
        out["ext"] = {"multi": pkt["ext"]["multi"]}
    if "headers" in pkt:
        out["headers"] = [[json_bytes(n), json_bytes(v)] for n, v in pkt["headers"]]
    for k in INT_FIELDS:
        if k in pkt:
            out[k] = int(pkt[k])  # peer-port may be a decimal string
    for k in BOOL_FIELDS:
        if k in pkt:
            out[k] = pkt[k]
    for k in RAW_FIELDS:
        if k in pkt:
            out[k] = dumps(pkt[k]).hex()
    return out


def expected_python(desc: dict) -> dict:
    """What Python must read back from the packet the C encoder writes for the JSON desc."""
    out = {}
    for k in STR_FIELDS:
        if k in desc:
            out[k] = from_json_bytes(desc[k])
    if "id" in desc:
        if desc.get("multi-id"):
            out["id"] = [dict({"id": from_json_bytes(e["id"])},
                              **({"seq": e["seq"]} if "seq" in e else {})) for e in desc["id"]]
        else:
            (e,) = desc["id"]
            out["id"] = from_json_bytes(e["id"])
            if "seq" in e:
                out["seq"] = e["seq"]
    elif "seq" in desc:
        out["seq"] = desc["seq"]
    if desc.get("type"):
        out["type"] = desc["type"].encode()
    if "ext" in desc:
        out["ext"] = {"multi": desc["ext"]["multi"]}
    if "headers" in desc:
        out["headers"] = [[from_json_bytes(n), from_json_bytes(v)] for n, v in desc["headers"]]
    for k in INT_FIELDS + BOOL_FIELDS:
        if k in desc:
            out[k] = desc[k]
    for k in RAW_FIELDS:
        if k in desc:
            out[k] = loads(bytes.fromhex(desc[k]))
    return out


# ---- the ZHTTP.md §5.2 / §5.3 examples -------------------------------------------------------

EXAMPLES = {
    "server_get": (
        b"T181:4:from,6:zhttpd,2:id,5:0-0-1,3:seq,1:0#3:ext,15:5:multi,4:true!}6:method,3:GET,"
        b"3:uri,19:http://example.com/,7:headers,26:22:4:Host,11:example.com,]]7:credits,4:8192#"
        b"6:stream,4:true!}",
        {"from": "zhttpd", "id": "0-0-1", "seq": 0, "ext": {"multi": True}, "method": "GET",
         "uri": "http://example.com/", "headers": [["Host", "example.com"]], "credits": 8192,
         "stream": True}),
    "handler_response": (
        b"T122:4:from,2:h1,2:id,5:0-0-1,3:seq,1:0#4:code,3:200#6:reason,2:OK,7:headers,34:30:12:"
        b"Content-Type,10:text/plain,]]4:body,2:hi,}",
        {"from": "h1", "id": "0-0-1", "seq": 0, "code": 200, "reason": "OK",
         "headers": [["Content-Type", "text/plain"]], "body": "hi"}),
    "credit": (
        b"T69:4:from,6:zhttpd,2:id,5:0-0-1,3:seq,1:1#4:type,6:credit,7:credits,1:3#}",
        {"from": "zhttpd", "id": "0-0-1", "seq": 1, "type": "credit", "credits": 3}),
    "body_chunk": (
        b"T66:4:from,6:zhttpd,2:id,5:0-0-1,3:seq,1:1#4:body,3:abc,4:more,4:true!}",
        {"from": "zhttpd", "id": "0-0-1", "seq": 1, "body": "abc", "more": True}),
    "client_request": (
        b"T112:4:from,4:app1,2:id,2:r1,3:seq,1:0#6:method,3:GET,3:uri,20:https://example.com/,"
        b"6:stream,4:true!7:credits,4:8192#}",
        {"from": "app1", "id": "r1", "seq": 0, "method": "GET", "uri": "https://example.com/",
         "stream": True, "credits": 8192}),
    "client_ack": (
        b"T82:4:from,6:zhttpd,2:id,2:r1,3:seq,1:0#3:ext,15:5:multi,4:true!}4:type,10:keep-alive,}",
        {"from": "zhttpd", "id": "r1", "seq": 0, "ext": {"multi": True}, "type": "keep-alive"}),
    "failure": (
        b"T91:4:from,6:zhttpd,2:id,2:r1,3:seq,1:1#4:type,5:error,9:condition,24:"
        b"remote-connection-failed,}",
        {"from": "zhttpd", "id": "r1", "seq": 1, "type": "error",
         "condition": "remote-connection-failed"}),
    "req_request": (
        b"T53:2:id,1:x,6:method,3:GET,3:uri,19:http://example.com/,}",
        {"id": "x", "method": "GET", "uri": "http://example.com/"}),
    "req_response": (
        b"T59:2:id,1:x,4:code,3:200#6:reason,2:OK,7:headers,0:]4:body,0:,}",
        {"id": "x", "code": 200, "reason": "OK", "headers": [], "body": ""}),
    "batched_keepalive": (
        b"T125:4:from,6:zhttpd,2:id,54:23:2:id,5:0-0-1,3:seq,1:5#}23:2:id,5:1-3-a,3:seq,1:2#}]"
        b"4:type,10:keep-alive,3:ext,15:5:multi,4:true!}}",
        {"from": "zhttpd", "id": [{"id": "0-0-1", "seq": 5}, {"id": "1-3-a", "seq": 2}],
         "type": "keep-alive", "ext": {"multi": True}}),
}

# The requester's packet writes stream before credits; zhttpd's encoder writes credits first (as
# in the server GET example), so only this one is not reproduced byte for byte.
NOT_OUR_KEY_ORDER = {"client_request"}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_python_builds_the_spec_examples_exactly(name):
    raw, pkt = EXAMPLES[name]
    assert zhttp_packet(pkt) == raw
    assert zhttp_packet(parse_packet(raw)) == raw


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_c_decodes_spec_examples_field_for_field(codec, name):
    raw, pkt = EXAMPLES[name]
    rc, out = c_decode(codec, raw)
    assert rc == 0, out
    assert out == expected_json(pkt)


@pytest.mark.parametrize("name", sorted(set(EXAMPLES) - NOT_OUR_KEY_ORDER))
def test_c_encodes_spec_examples_byte_for_byte(codec, name):
    raw, pkt = EXAMPLES[name]
    assert c_encode(codec, expected_json(pkt)) == raw


def test_c_reencodes_client_request_to_the_same_packet(codec):
    raw, pkt = EXAMPLES["client_request"]
    desc = expected_json(pkt)
    data = c_encode(codec, desc)
    assert len(data) == len(raw)
    assert parse_packet(data) == parse_packet(raw)


@pytest.mark.parametrize("addr,name", [("zhttpd", "handler_response"), ("app1", "client_ack"),
                                       ("app1", "failure")])
def test_c_decodes_pub_frames(codec, addr, name):
    raw, pkt = EXAMPLES[name]
    rc, out = c_decode(codec, addr.encode() + b" " + raw, pub=True)
    assert rc == 0, out
    want = expected_json(pkt)
    want["address"] = addr
    assert out == want


# ---- every field, multi-id -------------------------------------------------------------------

EVERY_FIELD = {
    "from": "requester-1",
    "id": "session-\u00e9",
    "seq": 12,
    "ext": {"multi": True, "quiet": True},
    "type": "error",
    "condition": "rejected",
    "method": "POST",
    "uri": "https://example.com/p?q=1",
    "code": 403,
    "reason": "Forbidden",
    "headers": [["Content-Type", "text/plain"], ["X-Dup", "1"], ["x-dup", "2"], ["Empty", ""]],
    "content-type": "binary",
    "body": b"\x00\x01\xfe\xffnot utf-8",
    "more": False,
    "credits": 2 ** 40,
    "stream": True,
    "router-resp": True,
    "max-size": 1000000,
    "timeout": 30000,
    "peer-address": "2001:db8::1",
    "peer-port": "54321",  # Pushpin C++ sends a string
    "connect-host": "backend.internal",
    "connect-port": 8443,
    "trust-connect-host": True,
    "ignore-policies": False,
    "ignore-tls-errors": True,
    "follow-redirects": True,
    "client-cert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    "client-key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
    "user-data": {"a": [1, -2, None, True, 1.5, b"\xff"], "b": {}},
    "passthrough": ["route", {"k": "v"}],
    "some-future-key": {"ignored": [1, 2, 3]},
}


def test_c_decodes_every_field(codec):
    rc, out = c_decode(codec, zhttp_packet(EVERY_FIELD))
    assert rc == 0, out
    assert out == expected_json(EVERY_FIELD)
    assert out["body"] == {"hex": b"\x00\x01\xfe\xffnot utf-8".hex()}
    assert out["peer-port"] == 54321
    assert out["user-data"] == dumps(EVERY_FIELD["user-data"]).hex()


def test_c_decodes_every_field_in_reverse_key_order(codec):
    pkt = dict(reversed(list(EVERY_FIELD.items())))
    rc, out = c_decode(codec, zhttp_packet(pkt))
    assert rc == 0, out
    assert out == expected_json(EVERY_FIELD)


def test_c_encodes_every_field_and_python_reads_it(codec):
    desc = expected_json(EVERY_FIELD)
    data = c_encode(codec, desc)
    got = parse_packet(data)
    assert got == expected_python(desc)
    assert got["peer-port"] == 54321  # written as an int
    assert "some-future-key" not in got
    assert got["ext"] == {"multi": True}
    # Python re-encodes what it read to the very same bytes (same canonical forms).
    assert zhttp_packet(got) == data
    # And C decodes its own output back to the same description.
    assert c_decode(codec, data) == (0, desc)


def multi_id_packet(n):
    return {"from": "zhttpd",
            "id": [{"id": "%d-%d-%x" % (i % 4, i % 7, i), "seq": i * 3} for i in range(n)],
            "type": "keep-alive", "ext": {"multi": True}}


def test_c_decodes_multi_id_packet_with_128_ids(codec):
    pkt = multi_id_packet(128)
    rc, out = c_decode(codec, zhttp_packet(pkt))
    assert rc == 0, out
    assert out == expected_json(pkt)
    assert len(out["id"]) == 128 and out["multi-id"] is True


def test_c_encodes_multi_id_packet_and_python_reads_it(codec):
    pkt = multi_id_packet(40)
    pkt["id"][7].pop("seq")  # seq is optional per entry
    desc = expected_json(pkt)
    data = c_encode(codec, desc)
    got = parse_packet(data)
    assert got == expected_python(desc)
    assert "seq" not in got["id"][7] and got["id"][8]["seq"] == 24
    assert "seq" not in got
    assert list(got)[:4] == ["from", "id", "type", "ext"]


def test_single_entry_id_list_stays_a_list(codec):
    pkt = {"from": "h", "id": [{"id": "a", "seq": 1}], "type": "cancel"}
    rc, out = c_decode(codec, zhttp_packet(pkt))
    assert rc == 0 and out["multi-id"] is True and out["id"] == [{"id": "a", "seq": 1}]
    assert c_encode(codec, out) == zhttp_packet(pkt)


def test_c_rejects_129_ids(codec):
    rc, out = c_decode(codec, zhttp_packet(multi_id_packet(129)))
    assert (rc, out) == (1, {"error": "field 'id': too many ids"})


def test_c_reports_ext_multi_false_and_ignores_other_ext_keys(codec):
    rc, out = c_decode(codec, zhttp_packet({"from": "a", "ext": {"quiet": 1, "multi": False}}))
    assert (rc, out) == (0, {"from": "a", "ext": {"multi": False}})
    rc, out = c_decode(codec, zhttp_packet({"from": "a", "ext": {"quiet": True}}))
    assert (rc, out) == (0, {"from": "a"})


# ---- random packets --------------------------------------------------------------------------

def random_bytes(rng, n):
    if rng.random() < 0.5:
        return "".join(rng.choice("abcXYZ-_/:.?= \u00e9\u4e2d") for _ in range(n))
    return bytes(rng.randrange(256) for _ in range(n))


def random_value(rng, depth=0):
    kinds = ["s", "i", "b", "n", "f"] + (["l", "d"] if depth < 4 else [])
    k = rng.choice(kinds)
    if k == "s":
        return random_bytes(rng, rng.randrange(6))
    if k == "i":
        return rng.randrange(-2 ** 63, 2 ** 63)
    if k == "b":
        return rng.random() < 0.5
    if k == "n":
        return None
    if k == "f":
        return rng.choice([0.5, -1.25, 1e-7, 12345.678])
    if k == "l":
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {"k%d" % i: random_value(rng, depth + 1) for i in range(rng.randrange(4))}


def random_packet(rng):
    pkt = {}
    keys = STR_FIELDS + INT_FIELDS + BOOL_FIELDS + RAW_FIELDS + ["id", "type", "ext", "headers"]
    for k in rng.sample(keys, rng.randrange(len(keys))):
        if k in ("from",):
            pkt[k] = random_bytes(rng, rng.randrange(20))
        elif k in STR_FIELDS:
            pkt[k] = random_bytes(rng, rng.randrange(40))
        elif k in ("peer-port", "connect-port"):
            port = rng.randrange(65536)
            pkt[k] = str(port) if k == "peer-port" and rng.random() < 0.3 else port
        elif k in INT_FIELDS:
            pkt[k] = rng.randrange(2 ** 63)
        elif k in BOOL_FIELDS:
            pkt[k] = rng.random() < 0.5
        elif k in RAW_FIELDS:
            pkt[k] = random_value(rng)
        elif k == "id":
            if rng.random() < 0.3:
                pkt[k] = [dict({"id": random_bytes(rng, rng.randrange(1, 10))},
                               **({"seq": rng.randrange(2 ** 40)} if rng.random() < 0.8 else {}))
                          for _ in range(rng.randrange(1, 6))]
            else:
                pkt[k] = random_bytes(rng, rng.randrange(1, 30))
                if rng.random() < 0.8:
                    pkt["seq"] = rng.randrange(2 ** 31)
        elif k == "type":
            pkt[k] = rng.choice(["error", "credit", "keep-alive", "cancel", "handoff-start",
                                 "handoff-proceed", "close", "ping", "pong"])
        elif k == "ext":
            pkt[k] = {"multi": rng.random() < 0.5} if rng.random() < 0.8 else {"quiet": True}
        elif k == "headers":
            pkt[k] = [[random_bytes(rng, rng.randrange(1, 12)), random_bytes(rng, rng.randrange(20))]
                      for _ in range(rng.randrange(5))]
    return pkt


def test_random_packets_agree_both_ways(codec):
    rng = random.Random(20240602)
    for _ in range(60):
        pkt = random_packet(rng)
        rc, out = c_decode(codec, zhttp_packet(pkt))
        assert rc == 0, (pkt, out)
        assert out == expected_json(pkt), pkt
        data = c_encode(codec, out)
        assert parse_packet(data) == expected_python(out), pkt


# ---- malformed frames ------------------------------------------------------------------------

def T(pairs: bytes) -> bytes:
    return b"T%d:%s}" % (len(pairs), pairs)


def nested_lists(depth):
    v = b"0:]"
    for _ in range(depth):
        v = b"%d:%s]" % (len(v), v)
    return v


MALFORMED = [
    (b"", "empty packet"),
    (b'J{"from":"x"}', "unsupported format prefix"),
    (b"t0:}", "unsupported format prefix"),
    (b"T", "truncated tnetstring"),
    (EXAMPLES["credit"][0][:-1], "truncated tnetstring"),
    (EXAMPLES["credit"][0] + b"x", "trailing bytes after packet"),
    (b"T0:]", "packet is not a dict"),
    (b"T01:}", "malformed tnetstring"),
    (b"T+0:}", "malformed tnetstring"),
    (T(b"1:1#1:a,"), "malformed tnetstring"),  # int dict key
    (T(b"1:a,"), "malformed tnetstring"),  # key without value
    (T(b"1:a,1:b;"), "malformed tnetstring"),  # unknown tag
    (T(b"1:b,4:True!"), "malformed tnetstring"),  # bool spelling
    (T(b"1:n,2:+1#"), "malformed tnetstring"),  # int with '+'
    (b"T1234567890:", "tnetstring length too large"),
    (T(b"9:user-data," + nested_lists(40)), "tnetstring nested too deep"),
    (T(dumps("type") + dumps("data")), "field 'type': unknown packet type"),
    (T(dumps("seq") + dumps("1")), "field 'seq': expected int"),
    (T(dumps("seq") + dumps(-1)), "field 'seq': must not be negative"),
    (T(dumps("credits") + dumps(-5)), "field 'credits': must not be negative"),
    (T(dumps("code") + dumps(-200)), "field 'code': must not be negative"),
    (T(dumps("max-size") + dumps(-1)), "field 'max-size': must not be negative"),
    (T(dumps("timeout") + dumps(-1)), "field 'timeout': must not be negative"),
    (T(dumps("peer-port") + dumps(-1)), "field 'peer-port': out of range"),
    (T(dumps("peer-port") + dumps("80x")), "field 'peer-port': expected int or decimal string"),
    (T(dumps("connect-port") + dumps(70000)), "field 'connect-port': out of range"),
    (T(dumps("from") + dumps("f" * 65)), "field 'from': too long"),
    (T(dumps("id") + dumps("i" * 65)), "field 'id': too long"),
    (T(dumps("id") + dumps(5)), "field 'id': expected string or list of {id, seq} dicts"),
    (T(dumps("id") + dumps([])), "field 'id': empty list"),
    (T(dumps("id") + dumps(["a"])), "field 'id': list entry is not a dict"),
    (T(dumps("id") + dumps([{"seq": 1}])), "field 'id': list entry has no 'id'"),
    (T(dumps("id") + dumps([{"id": "a", "seq": -1}])),
     "field 'id': list entry 'seq': must not be negative"),
    (T(dumps("id") + dumps([{"id": "a"}]) + dumps("seq") + dumps(0)),
     "field 'seq': not allowed with a list of ids"),
    (T(dumps("more") + dumps("true")), "field 'more': expected bool"),
    (T(dumps("body") + dumps(1)), "field 'body': expected string"),
    (T(dumps("ext") + dumps([])), "field 'ext': expected dict"),
    (T(dumps("ext") + dumps({"multi": 1})), "field 'ext.multi': expected bool"),
    (T(dumps("headers") + dumps({})), "field 'headers': expected list of [name, value] string pairs"),
    (T(dumps("headers") + dumps([["a", 1]])),
     "field 'headers': expected list of [name, value] string pairs"),
    (T(dumps("headers") + dumps([["a", "b", "c"]])),
     "field 'headers': entry is not a 2-element list"),
    (T(dumps("headers") + dumps([["h", "v"]] * 129)), "field 'headers': too many entries"),
    (T(dumps("from") + dumps("a") + dumps("from") + dumps("b")), "field 'from': duplicate key"),
]


@pytest.mark.parametrize("frame,reason", MALFORMED, ids=[r for _, r in MALFORMED])
def test_c_rejects_malformed_frames_with_a_reason(codec, frame, reason):
    rc, out = c_decode(codec, frame)
    assert (rc, out) == (1, {"error": reason})


def test_every_truncation_of_an_example_is_an_error(codec):
    raw = EXAMPLES["batched_keepalive"][0]
    for k in range(0, len(raw), 7):
        rc, out = c_decode(codec, raw[:k])
        assert rc == 1 and out["error"], k


def test_pub_frame_without_space_is_an_error(codec):
    assert c_decode(codec, b"T0:}", pub=True) == (1, {"error": "no space in PUB frame"})


# ---- the Python module itself ----------------------------------------------------------------

@pytest.mark.parametrize("value,encoded", [
    (b"hello", b"5:hello,"), ("", b"0:,"), (42, b"2:42#"), (-17, b"3:-17#"), (1.5, b"3:1.5^"),
    (True, b"4:true!"), (False, b"5:false!"), (None, b"0:~"), (["a", 1], b"8:1:a,1:1#]"),
    ({"a": "b"}, b"8:1:a,1:b,}"),
])
def test_python_tnetstring_matches_the_spec_table(value, encoded):
    assert dumps(value) == encoded
    back = loads(encoded)
    if isinstance(value, str):
        assert back == value.encode()
    elif isinstance(value, list):
        assert back == [b"a", 1]
    elif isinstance(value, dict):
        assert back == {"a": b"b"}
    else:
        assert back == value


@pytest.mark.parametrize("bad", [b"", b"5:abc,", b"01:a,", b"+1:a,", b"1:a", b"1:a;", b"4:True!",
                                 b"1:x~", b"2:+1#", b"4:1:a,}", b"8:1:1#1:a,}", b"3:inf^",
                                 b"1:a,x"])
def test_python_tnetstring_rejects_malformed(bad):
    with pytest.raises(ValueError):
        loads(bad)


def test_python_loads_prefix_returns_the_rest():
    assert loads_prefix(b"1:a,1:b,") == (b"a", b"1:b,")
