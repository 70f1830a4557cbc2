"""The policy truth table's kit (tests/integration/test_50_policy_table.py): the table itself (rule
forms, config shapes, request paths, the expected verdict of every row) and a recording origin.

    RecordingOrigin()   HTTP/1.1 listeners on every address of ORIGIN_ADDRS, all on one port. It
                        records every TCP connection it accepts (.conns: the local address, in
                        accept order) and every request (.requests: (address, method, target,
                        Host, connection id)). /goto?to=URL answers 302 Location URL; anything else 200
                        "ok <address>". Connections are kept alive (HTTP/1.1) unless
                        keep_alive=False, so a daemon that reused a connection where the policy
                        forbids it is caught by the requests it sends. sync() returns once every connection made before the call has been
                        accepted and recorded (it connects to each listener itself and waits for
                        that connection to come out of the accept queue behind the others).

The expected verdicts come from the policy's documented meaning (docs/internals/policy.md), applied
to which targets each rule form matches, written out by hand in RULES (not computed by matching
code, so the table cannot share a bug with the code under test)."""
import selectors
import socket
import threading
import urllib.parse
from dataclasses import dataclass, field

from conftest import free_port

# Where the origin listens; every target of the table lands on one of these.
ORIGIN_ADDRS = ("127.0.0.1", "127.0.0.2", "127.1.0.1", "::1")

# The literal targets: URL host -> the origin address a connection to it reaches.
TARGETS = {
    "127.0.0.1": "127.0.0.1",
    "127.0.0.2": "127.0.0.2",
    "127.1.0.1": "127.1.0.1",
    "[::1]": "::1",
    "[::ffff:127.0.0.1]": "127.0.0.1",  # an IPv4-mapped IPv6 address reaches the IPv4 listener
    "0.0.0.0": "127.0.0.1",  # a connect() to the unspecified address reaches this host (Linux)
    "[::]": "::1",
}
V6_TARGETS = {"[::1]", "[::ffff:127.0.0.1]", "[::]"}
# zhttpd judges the unspecified address as the loopback address it reaches as well: a rule that
# matches the loopback target matches it (docs/internals/policy.md).
UNSPECIFIED = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}


# ---- the recording origin ------------------------------------------------------------------------

class RecordingOrigin:
    def __init__(self, addrs=ORIGIN_ADDRS, keep_alive=True):
        self.addrs = addrs
        self.keep_alive = keep_alive
        self.conns = []     # local address of every accepted connection (sync probes excluded)
        self.requests = []  # (address, method, target, host, connection id)
        self._lock = threading.Lock()
        self._probes = {}   # (ip, port) of our own sync connections -> threading.Event
        self._next_id = 0   # connection ids, in accept order
        self._sel = selectors.DefaultSelector()
        self._stop = threading.Event()
        self.port, self._listeners = self._bind(addrs)
        for addr, s in self._listeners:
            self._sel.register(s, selectors.EVENT_READ, addr)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    @staticmethod
    def _bind(addrs):
        for _ in range(50):
            port = free_port()
            socks = []
            try:
                for a in addrs:
                    fam = socket.AF_INET6 if ":" in a else socket.AF_INET
                    s = socket.socket(fam, socket.SOCK_STREAM)
                    socks.append((a, s))
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if fam == socket.AF_INET6:
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s.bind((a, port))
                    s.listen(128)
                    s.setblocking(False)
                return port, socks
            except OSError:
                for _, s in socks:
                    s.close()
        raise AssertionError(f"no port free on all of {addrs}")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        for _, s in self._listeners:
            s.close()
        self._sel.close()

    def _accept_loop(self):
        while not self._stop.is_set():
            for key, _ in self._sel.select(0.05):
                try:
                    conn, peer = key.fileobj.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                with self._lock:
                    probe = self._probes.pop((peer[0], peer[1]), None)
                    if probe is None:
                        self.conns.append(key.data)
                if probe is not None:
                    conn.close()
                    probe.set()
                    continue
                with self._lock:
                    self._next_id += 1
                    cid = self._next_id
                threading.Thread(target=self._serve, args=(conn, key.data, cid),
                                 daemon=True).start()

    def _serve(self, conn, addr, cid):
        conn.settimeout(30)
        data = b""
        try:
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _version = lines[0].split(" ", 2)
                hdrs = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    hdrs[k.strip().lower()] = v.strip()
                need = int(hdrs.get("content-length", "0") or 0)
                while len(data) < need:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                data = data[need:]
                with self._lock:
                    self.requests.append((addr, method, target, hdrs.get("host"), cid))
                close = b"Connection: close\r\n" if not self.keep_alive else b""
                path, _, query = target.partition("?")
                if path == "/goto":
                    to = urllib.parse.parse_qs(query)["to"][0]
                    conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: " + to.encode() +
                                 b"\r\nContent-Length: 0\r\n" + close + b"\r\n")
                else:
                    body = b"ok " + addr.encode()
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                 b"Content-Length: " + str(len(body)).encode() + b"\r\n" +
                                 close + b"\r\n" + body)
                if close:
                    return
        except (OSError, ValueError, KeyError, IndexError):
            pass
        finally:
            conn.close()

    def sync(self, timeout=5.0):
        """Every connection made before this call has been accepted and recorded on return."""
        for addr, _ in self._listeners:
            fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_STREAM)
            try:
                s.bind((addr, 0))
                ev = threading.Event()
                with self._lock:
                    self._probes[s.getsockname()[:2]] = ev
                s.connect((addr, self.port))
                assert ev.wait(timeout), f"the origin did not accept on {addr} within {timeout}s"
            finally:
                s.close()

    def mark(self):
        with self._lock:
            return len(self.conns), len(self.requests)

    def since(self, mark):
        self.sync()
        with self._lock:
            return list(self.conns[mark[0]:]), list(self.requests[mark[1]:])


# ---- the table -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """A rule form: the pattern, the literal targets (TARGETS keys) it matches in zhttpd, and the
    names it matches (a predicate on the host name), with where Zurl differs."""
    id: str
    pattern: str
    hits: frozenset
    name_hit: object = None   # callable(name) -> bool, None: matches no name
    zurl_hits: frozenset = None  # Zurl's matches when they differ (documented in ZURL_MAPPED)
    v6_modes: tuple = (False,)

    def matches(self, target):
        return target in self.hits or UNSPECIFIED.get(target) in self.hits

    def zurl_matches(self, target):
        """Zurl matches the text of the address only ("0.0.0.0", "::")."""
        return target in (self.hits if self.zurl_hits is None else self.zurl_hits)

    def matches_name(self, name):
        return bool(self.name_hit and self.name_hit(name))


def _r(id, pattern, hits, zurl_hits=None, name_hit=None, v6_modes=(False,)):
    return Rule(id, pattern, frozenset(hits), name_hit,
                None if zurl_hits is None else frozenset(zurl_hits), v6_modes)


MAPPED = "[::ffff:127.0.0.1]"
# zhttpd matches an IPv4-mapped address by its IPv4 form as well (policy.md: "so `10.*` cannot be
# bypassed with ::ffff:10.0.0.1"); Zurl matches only the IPv6 text form and IPv6 subnets.
ZURL_UNSPECIFIED = ("a connect() to 0.0.0.0 or :: reaches this host: zhttpd also matches the "
                    "unspecified address as the loopback address (so deny=127/8 covers http://0:PORT/); "
                    "Zurl matches only its text and lets it through (docs/internals/policy.md)")
ZURL_MAPPED = ("zhttpd also matches an IPv4-mapped address (::ffff:127.0.0.1) by its IPv4 form, so "
               "IPv4 rules cannot be bypassed with it; Zurl matches only its IPv6 text "
               "(docs/internals/policy.md)")

RULES = [
    _r("exact", "127.0.0.2", {"127.0.0.2"}),
    _r("exact-mapped-target", "127.0.0.1", {"127.0.0.1", MAPPED}, zurl_hits={"127.0.0.1"}, v6_modes=(False, True)),
    _r("exact-v6", "::1", {"[::1]"}, v6_modes=(False, True)),
    _r("wild-prefix", "127.1.*", {"127.1.0.1"}),
    _r("wild-suffix", "*.0.2", {"127.0.0.2"}),
    _r("wild-middle", "127.*.1", {"127.0.0.1", "127.1.0.1", MAPPED},
       zurl_hits={"127.0.0.1", "127.1.0.1"}),
    _r("wild-debian", "127.*", {"127.0.0.1", "127.0.0.2", "127.1.0.1", MAPPED},
       zurl_hits={"127.0.0.1", "127.0.0.2", "127.1.0.1"}, v6_modes=(False, True)),
    _r("cidr-long", "127.1.0.0/16", {"127.1.0.1"}),
    _r("cidr-host", "127.0.0.2/32", {"127.0.0.2"}),
    _r("cidr-long-8", "127.0.0.0/8", {"127.0.0.1", "127.0.0.2", "127.1.0.1", MAPPED},
       zurl_hits={"127.0.0.1", "127.0.0.2", "127.1.0.1"}),
    _r("cidr-short-8", "127/8", {"127.0.0.1", "127.0.0.2", "127.1.0.1", MAPPED},
       zurl_hits={"127.0.0.1", "127.0.0.2", "127.1.0.1"}, v6_modes=(False, True)),
    _r("cidr-short-16", "127.1/16", {"127.1.0.1"}),
    _r("cidr-short-24", "127.0.0/24", {"127.0.0.1", "127.0.0.2", MAPPED},
       zurl_hits={"127.0.0.1", "127.0.0.2"}),
    _r("cidr-short-10/8", "10/8", set(), v6_modes=(False,)),
    _r("cidr-short-172.16/12", "172.16/12", set(), v6_modes=(False,)),
    _r("trailing-dot", "127.1./16", {"127.1.0.1"}),
    _r("netmask", "127.1.0.0/255.255.0.0", {"127.1.0.1"}),
    _r("netmask-8", "127.0.0.0/255.0.0.0", {"127.0.0.1", "127.0.0.2", "127.1.0.1", MAPPED},
       zurl_hits={"127.0.0.1", "127.0.0.2", "127.1.0.1"}),
    _r("v6-len", "::1/128", {"[::1]"}, v6_modes=(False, True)),
    _r("v6-mapped-len", "::ffff:127.0.0.0/104", {MAPPED}, v6_modes=(False, True)),
    _r("v6-all", "::/0", {"[::1]", MAPPED, "[::]"}, v6_modes=(False, True)),
    _r("name-exact", "a-127-0-0-1.test", set(), name_hit=lambda n: n == "a-127-0-0-1.test"),
    _r("name-wild", "*-127-0-0-2.test", set(), name_hit=lambda n: n.endswith("-127-0-0-2.test")),
]


@dataclass(frozen=True)
class Shape:
    """A config shape: defpolicy (None = unset), where the rule goes, deny_out_internal,
    allow_ignore_policies."""
    id: str
    defpolicy: object
    place: str               # "allow" or "deny"
    doi: bool = False
    ignore_ok: bool = True

    @property
    def internal(self):
        return self.defpolicy is None or self.doi


SHAPES = [
    Shape("defallow-deny", "allow", "deny"),
    Shape("defdeny-allow", "deny", "allow"),
    Shape("unset-allow", None, "allow"),
    Shape("defallow+doi-allow", "allow", "allow", doi=True),
]


@dataclass(frozen=True)
class Config:
    shape: Shape
    rule: Rule
    v6: bool
    extra: tuple = ()  # more config lines (dns_servers is added by the test)

    @property
    def id(self):
        s = f"{self.shape.id}[{self.rule.pattern}]"
        if not self.shape.ignore_ok:
            s += "-noignore"
        return s + ("-v6" if self.v6 else "-v4")

    def lines(self):
        out = [f"{self.shape.place}={self.rule.pattern}"]
        if self.v6:
            out.append("allow_ipv6=true")
        if self.shape.doi:
            out.append("deny_out_internal=true")
        if not self.shape.ignore_ok:
            out.append("allow_ignore_policies=false")
        return out + list(self.extra)


def zurl_verdict(defpolicy, a, d):
    """Zurl's isAllowed(): defpolicy allow (or unset): !deny || allow; deny: allow && !deny."""
    return (a and not d) if defpolicy == "deny" else (a or not d)


def addr_allowed(cfg, target, host_allowed=False, zurl=False):
    """The verdict for a literal target (every target of the table is a loopback address, so in
    the internal set). host_allowed: an allow rule matched the host name being connected to."""
    if target in V6_TARGETS and not cfg.v6:
        return False
    m = cfg.rule.zurl_matches(target) if zurl else cfg.rule.matches(target)
    a = m and cfg.shape.place == "allow"
    d = m and cfg.shape.place == "deny"
    if not zurl_verdict(cfg.shape.defpolicy, a, d):
        return False
    if cfg.shape.internal:
        return a or host_allowed
    return True


def name_verdict(cfg, name):
    """(name allowed, an allow rule matched the name)."""
    m = cfg.rule.matches_name(name)
    a = m and cfg.shape.place == "allow"
    d = m and cfg.shape.place == "deny"
    return zurl_verdict(cfg.shape.defpolicy, a, d), a


@dataclass
class Row:
    binary: str
    cfg: Config
    path: str        # req, stream, redirect, connect-host, connect-host-uri, ignore, name-*
    target: str      # a TARGETS key or a host name
    expect: str      # "ok" or "policy-violation"
    land: tuple = ()       # ok: the origin addresses the final request may land on
    first_hop: str = None  # the allowed origin address a redirect or connect-host row goes via
    pkt: dict = field(default_factory=dict)
    zurl_diff: str = None  # zurl rows: why Zurl's verdict differs (the row is xfail for zurl)
    zurl_alt: str = None   # zurl rows: why Zurl may answer remote-connection-failed instead
    pre: dict = None       # trust-context rows: fields of a request sent first to the same uri
    fresh: bool = None     # True: the row's request opens a connection of its own; False: it
    #                        reuses the one the first request left (no new connection)

    @property
    def id(self):
        return f"{self.binary}|{self.cfg.id}|{self.path}|{self.target}"
