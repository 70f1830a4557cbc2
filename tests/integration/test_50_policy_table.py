"""Client role: the outbound access policy as a generated truth table (issue 10 item 2).

Rows: rule form (policytable.RULES: exact, one-`*` wildcards, CIDR long and short, trailing dot,
dotted netmask, IPv6/len, names) x config shape (defpolicy allow/deny/unset, deny_out_internal,
allow_ipv6 on/off, allow_ignore_policies=false) x request path (req, stream, a redirect hop,
connect-host, the uri host behind a connect-host, ignore-policies, names through the test DNS
responder with A, AAAA, A+AAAA and CNAME answers; and for zhttpd the ws:// paths: ws, ws-connect-host,
ws-ignore, ws-name-a, which go through client/connect instead of curl) x target, each with its
expected outcome.

Every row runs against one RecordingOrigin listening on 127.0.0.1, 127.0.0.2, 127.1.0.1 and ::1
(same port), which records every TCP connection it accepts: a connection the row does not allow
fails the row, whatever the reply said. One daemon per config (rows are ordered by config and a
module-scoped fleet keeps the current one running). Rows with an explicit defpolicy and literal
addresses also run against Debian's zurl 1.11; where zurl answers differently the row says why and
is a strict xfail for zurl (an unexpected agreement fails too)."""
import pathlib
import time
import uuid

import pytest
import zmq

from dnsresponder import DNSResponder
from policytable import (RULES, SHAPES, TARGETS, UNSPECIFIED, V6_TARGETS, ZURL_MAPPED,
                         ZURL_UNSPECIFIED, Config,
                         RecordingOrigin, Row, Shape, addr_allowed, name_verdict)
from zrequester import ZURL, Daemon, ReqClient, Requester, Session

PV = "policy-violation"

ZURL_V6_OFF = ("with allow_ipv6 off Zurl answers remote-connection-failed for an IPv6 "
               "destination; zhttpd answers policy-violation (ZHTTP.md §6, see test_42 "
               "test_allow_ipv6)")
ZURL_REDIRECT = ("Zurl refuses a denied redirect hop with remote-connection-failed or "
                 "policy-violation (depending on whether the first hop's connection was kept "
                 "alive); zhttpd checks each hop like the first request and always answers "
                 "policy-violation")


# ---- generating the rows ---------------------------------------------------------------------------

def _v4_allowed(cfg):
    """A literal IPv4 target the config allows (for the first hop of redirect/connect-host rows)."""
    for t in ("127.0.0.1", "127.0.0.2", "127.1.0.1"):
        if addr_allowed(cfg, t):
            return t
    return None


def _name_answers(target):
    """The DNS names of the table for a literal target: (path, name, candidate targets)."""
    label = target.strip("[]").replace(".", "-").replace(":", "-")
    if target in V6_TARGETS:
        return [("name-aaaa", f"aaaa-{label}.test", [target]),
                ("name-cname", f"cname-aaaa-{label}.test", [target])]
    return [("name-a", f"a-{label}.test", [target]),
            ("name-both", f"both-{label}.test", [target, "[::1]"]),
            ("name-cname", f"cname-a-{label}.test", [target])]


def dns_table():
    table = {}
    for t in TARGETS:
        for path, name, cands in _name_answers(t):
            if path == "name-cname":
                continue
            v4 = [c for c in cands if c not in V6_TARGETS]
            v6 = [c.strip("[]") for c in cands if c in V6_TARGETS]
            table[name] = {"A": v4, "AAAA": v6}
    for t in TARGETS:
        for path, name, cands in _name_answers(t):
            if path == "name-cname":
                table[name] = {"CNAME": name[len("cname-"):]}
    # issue 10 item 1: names whose only answers are denied IPv6 addresses
    table["v6-loopback.test"] = {"AAAA": ["::1"]}
    table["v6-mapped.test"] = {"AAAA": ["::ffff:127.0.0.1"]}
    table["v6-ula.test"] = {"AAAA": ["fd00::1"]}
    table["v6-all-denied.test"] = {"AAAA": ["::1", "::ffff:127.0.0.1", "fd00::1"]}
    return table


def _zurl_diff(row):
    """Why Zurl's answer differs from the table for this row, or None. Zurl's verdicts come from
    the same documented semantics with Zurl's matches (zurl_matches); its conditions differ where
    it only finds out at connect time."""
    cfg, t = row.cfg, row.target
    zurl_ok = True if row.path == "ignore" else addr_allowed(cfg, t, zurl=True)
    if zurl_ok != (row.expect == "ok"):
        return ZURL_UNSPECIFIED if t in UNSPECIFIED else ZURL_MAPPED
    return None


def _zurl_alt(row):
    """Why Zurl may answer remote-connection-failed where the row expects policy-violation (the
    row still fails if any forbidden connection is made), or None."""
    cfg, t = row.cfg, row.target
    if row.expect != PV or row.zurl_diff:
        return None
    if row.path == "redirect":
        return ZURL_REDIRECT
    if t in V6_TARGETS and not cfg.v6:
        # the text of the address passes the rules; Zurl skips the IPv6 address when connecting
        if addr_allowed(Config(cfg.shape, cfg.rule, True), t, zurl=True):
            return ZURL_V6_OFF
    return None


def _reps(cfg):
    """The targets the non-req paths use: the first allowed and the first denied IPv4 target, and
    with allow_ipv6 the IPv6 targets whose verdict the rule decides."""
    v4 = [t for t in TARGETS if t not in V6_TARGETS]
    out = []
    for want in (True, False):
        for t in v4:
            if addr_allowed(cfg, t) == want:
                out.append(t)
                break
    if cfg.v6:
        out += [t for t in V6_TARGETS if cfg.rule.matches(t)]
    return out


def literal_rows(binary, cfg):
    rows = []
    allowed_v4 = _v4_allowed(cfg)
    reps = _reps(cfg)
    for t, lands in TARGETS.items():
        ok = addr_allowed(cfg, t)
        exp = "ok" if ok else PV
        land = (lands,) if ok else ()
        rows.append(Row(binary, cfg, "req", t, exp, land))
        if t not in reps:
            continue
        rows.append(Row(binary, cfg, "stream", t, exp, land))
        if binary == "zhttpd":
            rows.append(Row(binary, cfg, "ws", t, exp, land,
                            pkt={"uri": f"ws://{t}:{{port}}/final"}))
        if allowed_v4:
            first = TARGETS[allowed_v4]
            rows.append(Row(binary, cfg, "redirect", t, exp, land, first_hop=first,
                            pkt={"uri": f"http://{allowed_v4}:{{port}}/goto?to=http://{t}:{{port}}/"
                                        f"final", "follow-redirects": True}))
            rows.append(Row(binary, cfg, "connect-host", t, exp, land, pkt={
                "uri": f"http://{allowed_v4}:{{port}}/ch", "connect-host": t.strip("[]"),
                "connect-port": "{port}"}))
            if binary == "zhttpd":
                rows.append(Row(binary, cfg, "ws-connect-host", t, exp, land, pkt={
                    "uri": f"ws://{allowed_v4}:{{port}}/final", "connect-host": t.strip("[]"),
                    "connect-port": "{port}"}))
            if not ok:
                rows.append(Row(binary, cfg, "connect-host-uri", t, exp, (), pkt={
                    "uri": f"http://{t}:{{port}}/chu", "connect-host": allowed_v4,
                    "connect-port": "{port}"}))
        if not ok and (t not in V6_TARGETS or cfg.v6):
            # ignore-policies lets a denied destination through unless the operator refused it
            ig_ok = cfg.shape.ignore_ok
            rows.append(Row(binary, cfg, "ignore", t, "ok" if ig_ok else PV,
                            (lands,) if ig_ok else (), pkt={"ignore-policies": True}))
            if binary == "zhttpd" and t in reps:
                rows.append(Row(binary, cfg, "ws-ignore", t, "ok" if ig_ok else PV,
                                (lands,) if ig_ok else (),
                                pkt={"ignore-policies": True, "uri": f"ws://{t}:{{port}}/final"}))
            if not ig_ok:
                rows.append(Row(binary, cfg, "ignore-stream", t, PV, (),
                                pkt={"ignore-policies": True}))
                if allowed_v4:
                    rows.append(Row(binary, cfg, "ignore-redirect", t, PV, (),
                                    first_hop=TARGETS[allowed_v4], pkt={
                                        "uri": f"http://{allowed_v4}:{{port}}/goto?to=http://{t}:"
                                               f"{{port}}/final",
                                        "follow-redirects": True, "ignore-policies": True}))
    if binary == "zurl":
        for r in rows:
            r.zurl_diff = _zurl_diff(r)
            r.zurl_alt = _zurl_alt(r)
    return rows


# Rules whose name rows cover every kind of answer (A, AAAA, A+AAAA, CNAME); the others get the
# A answer for their representative targets.
NAME_RULES = {"exact", "exact-v6", "cidr-short-8", "v6-len", "v6-all", "name-exact", "name-wild",
              "wild-suffix"}


def name_rows(cfg):
    """zhttpd only: Zurl has no dns_servers (it would ask the machine's resolver)."""
    rows = []
    reps = _reps(cfg)
    for t in TARGETS:
        if t not in reps and cfg.rule.id not in NAME_RULES:
            continue
        for path, name, cands in _name_answers(t):
            if cfg.rule.id not in NAME_RULES and path != "name-a":
                continue
            name_ok, host_allowed = name_verdict(cfg, name)
            usable = [c for c in cands if c not in V6_TARGETS or cfg.v6]
            allowed = [c for c in usable if addr_allowed(cfg, c, host_allowed)]
            if not usable:
                continue  # nothing to connect to: remote-connection-failed, not a policy row
            verdict = ("ok", tuple(TARGETS[c] for c in allowed)) if name_ok and allowed else (PV, ())
            rows.append(Row("zhttpd", cfg, path, name, *verdict))
            if path == "name-a":
                rows.append(Row("zhttpd", cfg, "ws-name-a", name, *verdict,
                                pkt={"uri": f"ws://{name}:{{port}}/final"}))
    return rows


# Trust contexts (issue 12): a connection opened outside the policy (ignore-policies) never
# serves a policy-checked request and the other way round; trusted requests reuse among
# themselves. Each row sends a first request to the same uri, then the row's own.
TRUST_RULES = {"exact", "cidr-short-8", "name-exact", "v6-len"}
TRUSTED = {"ignore-policies": True}


def trust_rows(cfg):
    rows = []
    if cfg.rule.id not in TRUST_RULES or not cfg.shape.ignore_ok:
        return rows
    reps = _reps(cfg)
    hosts = [(t, addr_allowed(cfg, t), TARGETS[t]) for t in reps]
    for t in reps:
        if t in V6_TARGETS:
            continue
        for path, name, cands in _name_answers(t):
            if path == "name-a":
                name_ok, host_allowed = name_verdict(cfg, name)
                hosts.append((name, name_ok and addr_allowed(cfg, t, host_allowed), TARGETS[t]))
    for host, ok, land in hosts:
        if host in V6_TARGETS and not cfg.v6:
            continue
        rows.append(Row("zhttpd", cfg, "checked-after-trusted", host, "ok" if ok else PV,
                        (land,) if ok else (), pre=TRUSTED, fresh=True if ok else None))
        if ok:
            rows.append(Row("zhttpd", cfg, "trusted-after-checked", host, "ok", (land,),
                            pkt=TRUSTED, pre={}, fresh=True))
        rows.append(Row("zhttpd", cfg, "trusted-twice", host, "ok", (land,), pkt=TRUSTED,
                        pre=TRUSTED, fresh=False))
    return rows


def configs():
    out = []
    for rule in RULES:
        for shape in SHAPES:
            for v6 in rule.v6_modes:
                out.append(Config(shape, rule, v6))
    # allow_ignore_policies=false in every shape (issue 10 item 1)
    noignore = [
        (Shape("defdeny-allow", "deny", "allow", ignore_ok=False), "exact"),
        (Shape("defallow-deny", "allow", "deny", ignore_ok=False), "cidr-short-8"),
        (Shape("defallow-deny", "allow", "deny", ignore_ok=False), "exact"),
        (Shape("unset-allow", None, "allow", ignore_ok=False), "exact"),
        (Shape("defallow+doi-allow", "allow", "allow", doi=True, ignore_ok=False), "exact"),
    ]
    by_id = {r.id: r for r in RULES}
    for shape, rid in noignore:
        for v6 in (False, True):
            out.append(Config(shape, by_id[rid], v6))
    return out


def _v6_hole_rows():
    """allow_ipv6=true, names whose only answers are denied IPv6 addresses: policy-violation."""
    rows = []
    by_id = {r.id: r for r in RULES}
    cfgs = [Config(Shape("unset-allow", None, "allow"), by_id["exact"], True),
            Config(Shape("defallow-deny", "allow", "deny"), by_id["v6-all"], True)]
    for cfg in cfgs:
        for name in ("v6-loopback.test", "v6-mapped.test", "v6-ula.test", "v6-all-denied.test"):
            rows.append(Row("zhttpd", cfg, "name-aaaa-only", name, PV))
            rows.append(Row("zhttpd", cfg, "name-aaaa-only-stream", name, PV))
    return rows


def all_rows():
    rows = []
    for cfg in configs():
        rows += literal_rows("zhttpd", cfg)
        rows += name_rows(cfg)
        rows += trust_rows(cfg)
    rows += _v6_hole_rows()
    zurl = []
    for cfg in configs():
        if cfg.shape.defpolicy is not None and not cfg.shape.doi and cfg.shape.ignore_ok:
            zurl += literal_rows("zurl", cfg)
    # group by daemon (binary, config) so each daemon starts once
    order = {}
    for r in rows + zurl:
        order.setdefault((r.binary, r.cfg.id), []).append(r)
    return [r for group in order.values() for r in group]


ROWS = all_rows()


def _param(row):
    marks = []
    if row.binary == "zurl" and row.zurl_diff:
        marks.append(pytest.mark.xfail(strict=True, reason=f"zurl: {row.zurl_diff}"))
    return pytest.param(row, id=row.id, marks=marks)


# ---- fixtures --------------------------------------------------------------------------------------

class Fleet:
    """The daemon of the current config; the previous one is stopped (and checked) on a switch."""

    def __init__(self, rundir, ctx, dns):
        self.rundir = rundir
        self.ctx = ctx
        self.dns = dns
        self.key = None
        self.daemon = None
        self.req = None
        self.rq = None

    def get(self, binary, cfg):
        key = (binary, cfg.id)
        if key != self.key:
            self.close()
            name = f"{binary}-{uuid.uuid4().hex[:8]}"
            lines = cfg.lines()
            if binary == "zhttpd":
                lines = [f"dns_servers={self.dns.server}"] + lines
            # one worker: the trust-context rows rely on both requests meeting the same pools
            args = ["--workers", "1"] if binary == "zhttpd" else []
            self.daemon = Daemon(binary, self.rundir, lines, f"{binary}-{uuid.uuid4().hex[:6]}",
                                 name=name, defpolicy=cfg.shape.defpolicy, args=args).start()
            self.req = ReqClient(self.ctx, self.daemon, "DEALER")
            self.rq = Requester(self.ctx, self.daemon)
            self.key = key
        return self

    def close(self):
        if self.daemon is not None:
            self.req.close()
            self.rq.close()
            d, self.daemon, self.key = self.daemon, None, None
            d.stop()


@pytest.fixture(scope="module")
def origin():
    with RecordingOrigin() as o:
        yield o


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    ctx = zmq.Context()
    with DNSResponder(dns_table(), default_ttl=60) as dns:
        f = Fleet(pathlib.Path(tmp_path_factory.mktemp("policy-table")), ctx, dns)
        yield f
        f.close()
    ctx.destroy(linger=0)


# ---- running a row ---------------------------------------------------------------------------------

def _stream(fl, pkt, timeout=10.0):
    s = Session(fl.rq)
    fields = {k.replace("-", "_"): v for k, v in pkt.items() if k not in ("method", "uri")}
    s.start(pkt["method"], pkt["uri"], credits=10 ** 6, **fields)
    body = b""
    head = None
    while True:
        p = s.recv(timeout=timeout)
        if p.get("type") in (b"keep-alive", b"credit"):
            continue
        if p.get("type") is not None:
            return p
        head = head or p
        body += p.get("body", b"")
        if not p.get("more"):
            return dict(head, body=body)


def _ws(fl, pkt, timeout=10.0):
    """A ws:// request on the stream socket. The recording origin answers the upgrade with its
    200, so a row that reaches it gets error/rejected with code 200 (and the origin records the
    connection); a refused one gets error/policy-violation."""
    s = Session(fl.rq)
    fields = {k.replace("-", "_"): v for k, v in pkt.items() if k not in ("method", "uri")}
    s.start(pkt["method"], pkt["uri"], stream=None, credits=10 ** 6, **fields)
    while True:
        p = s.recv(timeout=timeout)
        if p.get("type") in (b"keep-alive", b"credit"):
            continue
        assert p.get("type") == b"error", f"a ws row got {p!r}"
        if p.get("condition") == b"rejected":
            assert p.get("code") == 200, p
        return p


def _fill(v, port):
    return v.replace("{port}", str(port)) if isinstance(v, str) else v


@pytest.mark.parametrize("row", [_param(r) for r in ROWS])
def test_policy_row(row, fleet, origin):
    if row.binary == "zurl" and not pathlib.Path(ZURL).exists():
        pytest.skip("Debian's zurl is not installed")
    fl = fleet.get(row.binary, row.cfg)
    port = origin.port
    pkt = {"method": "GET", "uri": f"http://{row.target}:{port}/final"}
    pkt.update({k: _fill(v, port) for k, v in row.pkt.items()})
    if "connect-port" in pkt:
        pkt["connect-port"] = int(pkt["connect-port"])
    pre_conn = None
    if row.pre is not None:
        first = dict(pkt, id=uuid.uuid4().hex[:8], uri=pkt["uri"].replace("/final", "/first"))
        for k in ("ignore-policies",):
            first.pop(k, None)
        first.update(row.pre)
        pre_mark = origin.mark()
        rep = fl.req.call(first)
        assert rep.get("code") == 200, f"the first request failed: {rep!r}"
        _, pre_reqs = origin.since(pre_mark)
        pre_conn = pre_reqs[-1][4]
    mark = origin.mark()
    if row.path.endswith("stream") or row.path == "stream":
        rep = _stream(fl, pkt)
    elif row.path.startswith("ws"):
        rep = _ws(fl, pkt)
    else:
        rep = fl.req.call(dict(pkt, id=uuid.uuid4().hex[:8]))
    # the daemon connects (if it does) before it replies, so the origin's sync() in since() sees
    # every such connection: no grace period needed
    conns, reqs = origin.since(mark)

    # connections first: one the table does not allow fails the row whatever the reply said
    allowed = list(row.land)
    if row.first_hop:
        allowed.append(row.first_hop)
    unexpected = [c for c in conns if c not in allowed]
    assert not unexpected, f"connections the table forbids: {unexpected} (all: {conns}); " \
                           f"reply {rep!r}"
    if row.fresh is not None:
        row_conn = [r[4] for r in reqs if r[2].endswith("/final")]
        if row.fresh:
            assert row_conn and pre_conn not in row_conn, \
                f"the request rode on the other trust context's connection #{pre_conn}"
        else:
            assert row_conn == [pre_conn], \
                f"expected connection #{pre_conn} reused, got {row_conn} (new: {conns})"
    if row.expect == "ok":
        assert rep.get("code") == 200, f"expected 200 via {row.land}, got {rep!r}"
        final = [r for r in reqs if r[2] != "/goto" and not r[2].startswith("/goto?")]
        assert len(final) == 1 and final[0][0] in row.land, \
            f"final request landed on {final}, expected one of {row.land}"
    else:
        want = {PV.encode()}
        if row.binary == "zurl" and row.zurl_alt:
            want.add(b"remote-connection-failed")  # documented: row.zurl_alt
        assert rep.get("type") == b"error" and rep.get("condition") in want, \
            f"expected {PV}, got {rep!r}"
        assert len(conns) <= 1, conns
        # nothing but the first hop of a redirect row reached the origin, not even over a
        # connection kept alive from an earlier row
        stray = [r for r in reqs if not (row.first_hop and r[0] == row.first_hop and
                                         r[2].startswith("/goto"))]
        assert not stray, f"requests the table forbids reached the origin: {stray}"


def test_table_size():
    """The table is big enough to mean something, and says how much of it Zurl checks."""
    z = [r for r in ROWS if r.binary == "zurl"]
    zh = [r for r in ROWS if r.binary == "zhttpd"]
    print(f"policy table: {len(ROWS)} rows, {len(zh)} zhttpd, {len(z)} zurl "
          f"({sum(1 for r in z if r.zurl_diff)} xfail for a documented zurl difference, "
          f"{sum(1 for r in z if r.zurl_alt)} accepting zurl's remote-connection-failed)")
    assert len(zh) >= 300 and len(z) >= 100


# ---- trust contexts with a name that changes its answer (issue 12 item 2) ----------------------

@pytest.fixture
def tc(tmp_path, origin):
    """zhttpd with the default policy and allow=127.0.0.2 (127.0.0.1 denied), one worker, names
    through its own DNS responder; yields (daemon, dns, ReqClient, Requester)."""
    ctx = zmq.Context()
    with DNSResponder({}, default_ttl=1) as dns:
        d = Daemon("zhttpd", tmp_path, [f"dns_servers={dns.server}", "allow=127.0.0.2"],
                   f"tc-{uuid.uuid4().hex[:6]}", defpolicy=None,
                   args=["--workers", "1"]).start()
        try:
            yield d, dns, ReqClient(ctx, d, "DEALER")
        finally:
            d.stop()
    ctx.destroy(linger=0)


def _after_ttl():
    """The resolver keeps an answer at least 1 s (its TTL clamp): let the 1 s TTL run out."""
    time.sleep(1.3)


@pytest.mark.parametrize("order", ["trusted-then-checked", "checked-then-trusted"])
def test_trusted_and_checked_connections_never_mix(tc, origin, order):
    """NAME resolves to 127.0.0.1 (denied) for the ignore-policies request, then to 127.0.0.2
    (allowed) for the policy-checked one, same NAME:PORT (curl matches cached connections by
    host name and port, not by address). The checked request must open its own connection to
    127.0.0.2 and 127.0.0.1 must see no second request; and the other way round."""
    d, dns, c = tc
    first, second = ("127.0.0.1", "127.0.0.2") if order == "trusted-then-checked" else \
        ("127.0.0.2", "127.0.0.1")
    dns.set("tc.test", {"A": [first], "ttl": 1}, {"A": [second], "ttl": 1})
    uri = f"http://tc.test:{origin.port}/tc"
    trusted = {"ignore-policies": True}
    f1, f2 = (trusted, {}) if order == "trusted-then-checked" else ({}, trusted)
    mark = origin.mark()
    rep = c.call(dict({"id": "1", "method": "GET", "uri": uri}, **f1))
    assert rep.get("code") == 200 and rep["body"] == f"ok {first}".encode(), rep
    _after_ttl()
    rep = c.call(dict({"id": "2", "method": "GET", "uri": uri}, **f2))
    conns, reqs = origin.since(mark)
    assert [r[0] for r in reqs] == [first, second], reqs
    assert conns == [first, second], f"the second request rode on the first's connection: {conns}"
    assert rep.get("code") == 200 and rep["body"] == f"ok {second}".encode(), rep
    assert dns.count("tc.test", "A") == 2


def test_trusted_requests_reuse_connections_among_themselves(tc, origin):
    """ignore-policies requests (Pushpin's proxied requests) keep connection reuse: the origin
    sees fewer connections than requests, in req and in stream mode."""
    d, dns, c = tc
    mark = origin.mark()
    n = 8
    for i in range(n):
        rep = c.call({"id": f"r{i}", "method": "GET", "uri": f"http://127.0.0.1:{origin.port}/r",
                      "ignore-policies": True})
        assert rep.get("code") == 200, rep
    rq = Requester(zmq.Context.instance(), d)
    try:
        for i in range(n):
            s = Session(rq)
            s.start("GET", f"http://127.0.0.1:{origin.port}/s", credits=10 ** 6,
                    ignore_policies=True)
            head, body, _ = s.response()
            assert head["code"] == 200 and body == b"ok 127.0.0.1"
    finally:
        rq.close()
    conns, reqs = origin.since(mark)
    assert len(reqs) == 2 * n
    assert len(conns) < 2 * n and len(conns) <= 2, \
        f"{len(conns)} connections for {2 * n} trusted requests: no reuse"


def test_connect_host_connections_serve_only_the_same_connect_host(tmp_path, origin):
    """What the trust-context table relies on from curl for connect-host: a connection made for
    uri NAME:PORT with connect-host X is only reused by transfers with the same connect-host. A
    request to the same NAME:PORT without connect-host (NAME resolves to 127.0.0.1) opens its own
    connection to 127.0.0.1, and the connect-host one (127.0.0.2) sees no second request."""
    ctx = zmq.Context()
    with DNSResponder({"ch.test": "127.0.0.1"}) as dns:
        d = Daemon("zhttpd", tmp_path, [f"dns_servers={dns.server}", "allow=127.0.0.1,127.0.0.2"],
                   f"ch-{uuid.uuid4().hex[:6]}", defpolicy=None,
                   args=["--workers", "1"]).start()
        try:
            c = ReqClient(ctx, d, "DEALER")
            uri = f"http://ch.test:{origin.port}/ch"
            mark = origin.mark()
            via = {"connect-host": "127.0.0.2", "connect-port": origin.port}
            for i, fields in enumerate([via, {}, via, {}]):
                rep = c.call(dict({"id": f"c{i}", "method": "GET", "uri": uri}, **fields))
                assert rep.get("code") == 200, rep
            conns, reqs = origin.since(mark)
            assert [r[0] for r in reqs] == ["127.0.0.2", "127.0.0.1", "127.0.0.2", "127.0.0.1"]
            assert sorted(conns) == ["127.0.0.1", "127.0.0.2"], conns  # each reused, never mixed
        finally:
            d.stop()
    ctx.destroy(linger=0)


@pytest.mark.parametrize("host", ["0", "0.0.0.0", "0x0", "000.0.0.0", "[::]", "[::ffff:0.0.0.0]",
                                  "[0:0:0:0:0:0:0:0]"])
def test_unspecified_address_forms_count_as_loopback(tmp_path, origin, host):
    """defpolicy=allow, deny=127/8 and ::1/128: every spelling of the unspecified address (a
    connect() to it reaches this host) is refused and the loopback origin sees nothing."""
    ctx = zmq.Context()
    d = Daemon("zhttpd", tmp_path, ["deny=127/8,::1/128", "allow_ipv6=true"],
               f"un-{uuid.uuid4().hex[:6]}", defpolicy="allow").start()
    try:
        mark = origin.mark()
        rep = ReqClient(ctx, d, "DEALER").call({"id": "u", "method": "GET",
                                                "uri": f"http://{host}:{origin.port}/u"})
        conns, reqs = origin.since(mark)
        assert conns == [] and reqs == [], (conns, reqs, rep)
        assert rep.get("type") == b"error" and rep.get("condition") == b"policy-violation", rep
    finally:
        d.stop()
        ctx.destroy(linger=0)
