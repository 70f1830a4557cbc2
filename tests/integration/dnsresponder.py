"""A tiny UDP DNS server for tests: answers A/AAAA from a table, on 127.0.0.1, in a thread.

zhttpd's `dns_servers` points at it (``DNSResponder.server``, "127.0.0.1:PORT"), so tests never touch
the machine's resolver. Python standard library only.

    with DNSResponder({"origin.test": "127.0.0.1"}) as dns:
        dns.set("rebind.test", "93.184.216.34", "127.0.0.1")   # 1st query, then 2nd and later
        dns.set("gone.test", NXDOMAIN)
        ... dns.count("rebind.test", "A") ...

An answer spec is one of:
  * "1.2.3.4" or "2001:db8::1"      one A or AAAA record (TTL = the responder's default)
  * {"A": [...], "AAAA": [...], "ttl": 30}   records of both types (a missing type: no data)
  * {"CNAME": "other.test"}         a CNAME to another name of the table, followed by that name's
                                    A or AAAA records (its first spec) in the same answer
  * NXDOMAIN, SERVFAIL, REFUSED      that response code, no records
  * DROP                             no answer at all (the client times out)
  * "malformed:<kind>"               a deliberately broken answer, kind one of MALFORMED_KINDS
``set(name, spec1, spec2, ...)`` makes a sequence: the n-th query for (name, type) gets spec n, and the
last one repeats — for DNS-rebinding tests. Names match case-insensitively, without a trailing dot;
a name not in the table gets NXDOMAIN.

Run as a program it prints the port on stdout and serves until stdin closes or SIGTERM:
    python3 dnsresponder.py --table '{"a.test": "127.0.0.1", "b.test": ["1.2.3.4", "127.0.0.1"]}'
"""
import argparse
import ipaddress
import json
import signal
import socket
import socketserver
import struct
import sys
import threading

NXDOMAIN = "NXDOMAIN"
SERVFAIL = "SERVFAIL"
REFUSED = "REFUSED"
DROP = "DROP"
MALFORMED_KINDS = (
    "truncated",   # only part of the header
    "badrdlen",    # an answer whose rdlength runs past the end of the packet
    "ptrloop",     # an answer name that is a compression pointer to itself
    "hugecount",   # ancount 65535 with a single record present
    "badrdata",    # an A record with a 3-byte address
    "garbage",     # the query id followed by random bytes
    "wrongid",     # a good answer with another id (ignored by the client: it times out)
    "qmismatch",   # a good answer for another name (ignored by the client: it times out)
)

TYPE_A, TYPE_AAAA, TYPE_CNAME = 1, 28, 5
TYPE_NAMES = {TYPE_A: "A", TYPE_AAAA: "AAAA"}
RCODES = {NXDOMAIN: 3, SERVFAIL: 2, REFUSED: 5}


def _norm(name):
    return name.rstrip(".").lower()


def _encode_name(name):
    out = b""
    for label in _norm(name).split("."):
        if label:
            raw = label.encode("ascii")
            out += bytes([len(raw)]) + raw
    return out + b"\0"


def _parse_query(data):
    """(id, flags, qname, qtype, question bytes) of a query, or None."""
    if len(data) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", data[:6])
    if qd != 1 or flags & 0x8000:
        return None
    pos, labels = 12, []
    while True:
        if pos >= len(data):
            return None
        n = data[pos]
        pos += 1
        if n == 0:
            break
        if n > 63 or pos + n > len(data):
            return None
        labels.append(data[pos:pos + n].decode("ascii", "replace"))
        pos += n
    if pos + 4 > len(data):
        return None
    qtype, _qclass = struct.unpack("!HH", data[pos:pos + 4])
    return qid, flags, ".".join(labels), qtype, data[12:pos + 4]


def _normalise_spec(spec, default_ttl):
    if isinstance(spec, str):
        if spec in (NXDOMAIN, SERVFAIL, REFUSED, DROP) or spec.startswith("malformed:"):
            if spec.startswith("malformed:") and spec[10:] not in MALFORMED_KINDS:
                raise ValueError("unknown malformed kind %r" % spec)
            return spec
        addr = ipaddress.ip_address(spec)
        out = {"A": [], "AAAA": [], "ttl": default_ttl}
        out["A" if addr.version == 4 else "AAAA"].append(str(addr))
        return out
    if isinstance(spec, dict):
        out = {"A": list(spec.get("A", [])), "AAAA": list(spec.get("AAAA", [])),
               "ttl": int(spec.get("ttl", default_ttl))}
        if "CNAME" in spec:
            if out["A"] or out["AAAA"]:
                raise ValueError("a CNAME answer carries no records of its own: %r" % (spec,))
            out["CNAME"] = _norm(spec["CNAME"])
        for a in out["A"]:
            ipaddress.IPv4Address(a)
        for a in out["AAAA"]:
            ipaddress.IPv6Address(a)
        return out
    raise ValueError("bad answer spec %r" % (spec,))


class DNSResponder:
    """The server; start()/stop() or use it as a context manager."""

    def __init__(self, table=None, host="127.0.0.1", port=0, default_ttl=60):
        self.default_ttl = default_ttl
        self._lock = threading.Lock()
        self._table = {}
        self._served = {}  # (name, qtype) -> queries answered so far
        self.queries = []  # (name, "A"/"AAAA"/number) in arrival order
        for name, spec in (table or {}).items():
            specs = spec if isinstance(spec, list) else [spec]
            self.set(name, *specs)
        responder = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                data, sock = self.request
                reply = responder._answer(data)
                if reply is not None:
                    sock.sendto(reply, self.client_address)

        self._server = socketserver.ThreadingUDPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = None

    # ---- table ----
    def set(self, name, *specs):
        """Answer name with specs in turn (the last repeats); resets its query counters."""
        if not specs:
            raise ValueError("set() needs at least one answer spec")
        norm = [_normalise_spec(s, self.default_ttl) for s in specs]
        with self._lock:
            self._table[_norm(name)] = norm
            for key in [k for k in self._served if k[0] == _norm(name)]:
                del self._served[key]

    def remove(self, name):
        with self._lock:
            self._table.pop(_norm(name), None)

    def count(self, name=None, qtype=None):
        """Queries seen, optionally for one name and/or type ("A", "AAAA")."""
        with self._lock:
            return sum(1 for n, t in self.queries
                       if (name is None or n == _norm(name)) and (qtype is None or t == qtype))

    def reset_counts(self):
        with self._lock:
            self.queries.clear()
            self._served.clear()

    # ---- lifecycle ----
    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def server(self):
        """The dns_servers value for zhttpd: "127.0.0.1:PORT"."""
        return "%s:%d" % (self._server.server_address[0], self.port)

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._thread:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- answering ----
    def _answer(self, data):
        q = _parse_query(data)
        if q is None:
            return None
        qid, flags, qname, qtype, question = q
        name = _norm(qname)
        with self._lock:
            self.queries.append((name, TYPE_NAMES.get(qtype, qtype)))
            specs = self._table.get(name)
            if specs is None:
                spec = NXDOMAIN
            else:
                key = (name, qtype)
                n = self._served.get(key, 0)
                self._served[key] = n + 1
                spec = specs[min(n, len(specs) - 1)]
        rd = flags & 0x0100

        def header(rcode, ancount, ident=qid):
            return struct.pack("!HHHHHH", ident, 0x8000 | 0x0400 | rd | 0x0080 | rcode, 1,
                               ancount, 0, 0)

        if spec == DROP:
            return None
        if isinstance(spec, str) and spec in RCODES:
            return header(RCODES[spec], 0) + question
        if isinstance(spec, str) and spec.startswith("malformed:"):
            return self._malformed(spec[10:], qid, header, question, qname, qtype)
        records = []
        ttl = spec["ttl"]
        owner = b"\xc0\x0c"  # the question's name
        if "CNAME" in spec:
            target = spec["CNAME"]
            records.append(owner + struct.pack("!HHIH", TYPE_CNAME, 1, ttl,
                                               len(_encode_name(target))) + _encode_name(target))
            owner = _encode_name(target)
            with self._lock:
                tspecs = self._table.get(target)
            spec = tspecs[0] if tspecs and isinstance(tspecs[0], dict) else {"A": [], "AAAA": []}
            if "CNAME" in spec:
                raise ValueError("a CNAME to a CNAME is not supported")
        if qtype == TYPE_A:
            for a in spec["A"]:
                records.append(owner + struct.pack("!HHIH", TYPE_A, 1, ttl, 4) +
                               ipaddress.IPv4Address(a).packed)
        elif qtype == TYPE_AAAA:
            for a in spec["AAAA"]:
                records.append(owner + struct.pack("!HHIH", TYPE_AAAA, 1, ttl, 16) +
                               ipaddress.IPv6Address(a).packed)
        return header(0, len(records)) + question + b"".join(records)

    @staticmethod
    def _malformed(kind, qid, header, question, qname, qtype):
        good_a = b"\xc0\x0c" + struct.pack("!HHIH", TYPE_A, 1, 60, 4) + bytes([127, 0, 0, 1])
        if kind == "truncated":
            return header(0, 1)[:7]
        if kind == "badrdlen":
            return header(0, 1) + question + b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 60,
                                                                        400) + b"\x01\x02"
        if kind == "ptrloop":
            off = 12 + len(question)
            ptr = struct.pack("!H", 0xC000 | off)
            return header(0, 1) + question + ptr + struct.pack("!HHIH", TYPE_A, 1, 60, 4) + \
                b"\x01\x02\x03\x04"
        if kind == "hugecount":
            return header(0, 65535) + question + good_a
        if kind == "badrdata":
            return header(0, 1) + question + b"\xc0\x0c" + struct.pack("!HHIH", TYPE_A, 1, 60,
                                                                        3) + b"\x01\x02\x03"
        if kind == "garbage":
            return struct.pack("!H", qid) + bytes((i * 37 + 11) & 0xFF for i in range(60))
        if kind == "wrongid":
            return header(0, 1, ident=(qid + 1) & 0xFFFF) + question + good_a
        if kind == "qmismatch":
            other = _encode_name("other-" + qname) + struct.pack("!HH", qtype, 1)
            return header(0, 1) + other + good_a
        raise ValueError(kind)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ttl", type=int, default=60, help="default TTL")
    ap.add_argument("--table", default="{}", help="JSON object: name -> spec or list of specs")
    args = ap.parse_args(argv)
    dns = DNSResponder(json.loads(args.table), host=args.host, port=args.port,
                       default_ttl=args.ttl)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    dns.start()
    print(dns.port, flush=True)

    def wait_stdin():
        try:
            sys.stdin.read()
        finally:
            done.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    dns.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
