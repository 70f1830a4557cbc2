"""Self-test of the test DNS responder (dnsresponder.py): a raw UDP client asks it questions and
parses the answers by hand, so the responder's wire format is checked independently of c-ares."""
import pathlib
import socket
import struct
import subprocess
import sys

import pytest

from dnsresponder import DNSResponder, DROP, MALFORMED_KINDS, NXDOMAIN, REFUSED, SERVFAIL

HERE = pathlib.Path(__file__).resolve().parent
A, AAAA = 1, 28


def query(port, name, qtype=A, qid=0x1234, timeout=1.0):
    """Send one query; return the raw reply bytes, or None on timeout."""
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack("!HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, ("127.0.0.1", port))
        try:
            return s.recv(4096)
        except socket.timeout:
            return None


def parse(reply):
    """(id, rcode, [(type, ttl, rdata)]) of a well-formed reply."""
    qid, flags, qd, an = struct.unpack("!HHHH", reply[:8])
    assert flags & 0x8000, "QR bit set"
    pos = 12
    for _ in range(qd):
        while reply[pos] != 0:
            pos += 1 + reply[pos]
        pos += 5
    records = []
    for _ in range(an):
        assert reply[pos] & 0xC0 == 0xC0, "answer names are compression pointers"
        pos += 2
        rtype, _cls, ttl, rdlen = struct.unpack("!HHIH", reply[pos:pos + 10])
        pos += 10
        records.append((rtype, ttl, reply[pos:pos + rdlen]))
        pos += rdlen
    assert pos == len(reply)
    return qid, flags & 0xF, records


@pytest.fixture
def dns():
    with DNSResponder({"a.test": "127.0.0.1"}, default_ttl=30) as d:
        yield d


def test_a_and_aaaa_records_with_ttl(dns):
    dns.set("both.test", {"A": ["192.0.2.1", "192.0.2.2"], "AAAA": ["2001:db8::1"], "ttl": 7})
    qid, rcode, recs = parse(query(dns.port, "both.test", A, qid=77))
    assert (qid, rcode) == (77, 0)
    assert recs == [(A, 7, bytes([192, 0, 2, 1])), (A, 7, bytes([192, 0, 2, 2]))]
    _, rcode, recs = parse(query(dns.port, "Both.Test", AAAA))
    assert rcode == 0
    assert recs == [(AAAA, 7, socket.inet_pton(socket.AF_INET6, "2001:db8::1"))]
    _, rcode, recs = parse(query(dns.port, "a.test", A))
    assert recs == [(A, 30, bytes([127, 0, 0, 1]))]
    # A name with only A records answers AAAA with no data (NOERROR, no records).
    _, rcode, recs = parse(query(dns.port, "a.test", AAAA))
    assert (rcode, recs) == (0, [])


def test_sequence_per_name_and_type_last_repeats(dns):
    dns.set("rebind.test", "93.184.216.34", "127.0.0.1")
    got = [parse(query(dns.port, "rebind.test"))[2][0][2] for _ in range(3)]
    assert got == [bytes([93, 184, 216, 34]), bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])]
    assert dns.count("rebind.test", "A") == 3
    assert dns.count("rebind.test", "AAAA") == 0
    # set() again restarts the sequence
    dns.set("rebind.test", "93.184.216.34", "127.0.0.1")
    assert parse(query(dns.port, "rebind.test"))[2][0][2] == bytes([93, 184, 216, 34])


def test_error_codes_and_unknown_names(dns):
    dns.set("gone.test", NXDOMAIN)
    dns.set("broken.test", SERVFAIL)
    dns.set("closed.test", REFUSED)
    assert parse(query(dns.port, "gone.test"))[1] == 3
    assert parse(query(dns.port, "broken.test"))[1] == 2
    assert parse(query(dns.port, "closed.test"))[1] == 5
    assert parse(query(dns.port, "never-set.test"))[1] == 3
    assert dns.count() == 4


def test_drop_sends_nothing(dns):
    dns.set("slow.test", DROP)
    assert query(dns.port, "slow.test", timeout=0.3) is None
    assert dns.count("slow.test") == 1


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_malformed_answers_are_broken_as_described(dns, kind):
    dns.set("bad.test", "malformed:" + kind)
    reply = query(dns.port, "bad.test", qid=0x4242)
    assert reply is not None
    if kind == "truncated":
        assert len(reply) < 12
    elif kind == "wrongid":
        assert struct.unpack("!H", reply[:2])[0] == 0x4243
        assert parse(reply)[2][0][2] == bytes([127, 0, 0, 1])
    elif kind == "qmismatch":
        assert b"other-bad" in reply
    elif kind == "hugecount":
        assert struct.unpack("!H", reply[6:8])[0] == 65535
    elif kind == "garbage":
        assert reply[:2] == b"\x42\x42" and len(reply) == 62
    elif kind == "ptrloop":
        off = len(reply) - 16  # name pointer, then type/class/ttl/rdlength and 4 bytes
        assert struct.unpack("!H", reply[off:off + 2])[0] == 0xC000 | off
    elif kind == "badrdata":
        assert parse(reply)[2] == [(A, 60, bytes([1, 2, 3]))]
    else:
        with pytest.raises((AssertionError, struct.error, IndexError)):
            parse(reply)


def test_bad_specs_are_refused():
    with pytest.raises(ValueError):
        DNSResponder({"x.test": "not-an-address"})
    with pytest.raises(ValueError):
        DNSResponder({"x.test": "malformed:nonsense"})


def test_command_line_mode_prints_port_and_stops_on_stdin_eof():
    p = subprocess.Popen([sys.executable, str(HERE / "dnsresponder.py"), "--table",
                          '{"cli.test": ["10.0.0.1", "10.0.0.2"]}'],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(p.stdout.readline())
        assert parse(query(port, "cli.test"))[2][0][2] == bytes([10, 0, 0, 1])
        assert parse(query(port, "cli.test"))[2][0][2] == bytes([10, 0, 0, 2])
        p.stdin.close()
        assert p.wait(timeout=5) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
