"""Prometheus metrics (issue 17 item 3): --metrics [addr:]port serves the text exposition format
from the daemon itself; a scrape before and after a scripted mix of traffic (successes, 4xx/5xx,
policy denials, DNS failures, TLS failures on both roles, a cancel) shows each counter moved by
exactly the expected amount. promtool is not installed (Debian's prometheus package is 96 MB), so
the output is checked by a parser of the exposition format here."""
import re
import socket
import ssl
import time
import urllib.error
import urllib.request

import pytest

from conftest import free_port
from dnsresponder import DNSResponder, NXDOMAIN
from origins import AppOrigin, HELLO
from srvkit import HttpConn, StreamHandler, get
from test_15_server_listeners import make_identity
from tls_origin import TlsOrigin, pki  # noqa: F401 (fixture)
from zhttpd import Zhttpd, run_once
from zrequester import ReqClient

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(r"^(%s)(\{(.*)\})? (\S+)$" % NAME)
LABEL = re.compile(r'^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"$')


def parse_exposition(text):
    """Check text against the Prometheus text format 0.0.4 and naming conventions; return
    {(name, frozenset(labels)): value}."""
    assert text.endswith("\n")
    types, helps, seen, order = {}, {}, {}, []
    for line in text.splitlines():
        assert line, "empty line"
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert re.fullmatch(NAME, name) and name not in helps, line
            helps[name] = True
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            assert name not in types, f"TYPE twice: {line}"
            assert typ in ("counter", "gauge", "histogram"), line
            assert name.startswith("zhttpd_"), line
            if typ == "counter":
                assert name.endswith("_total"), line
            if "seconds" in name or "bytes" in name:
                assert re.search(r"_(seconds|bytes)(_total)?$", name), line
            types[name] = typ
            order.append(name)
            continue
        assert not line.startswith("#"), line
        m = SAMPLE.match(line)
        assert m, f"bad sample line: {line!r}"
        name, labels = m.group(1), {}
        if m.group(3):
            for part in re.findall(r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"', m.group(3)):
                lm = LABEL.match(part)
                assert lm, line
                labels[lm.group(1)] = lm.group(2)
        value = float(m.group(4))
        family = name
        if name not in types:
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert types.get(family) == "histogram", f"sample before its TYPE: {line}"
        assert order[-1] == family, f"family {family} not contiguous: {line}"
        key = (name, frozenset(labels.items()))
        assert key not in seen, f"duplicate series: {line}"
        if types[family] == "counter":
            assert value >= 0 and value == int(value), line
        seen[key] = value
    # histograms: cumulative buckets, +Inf == _count
    for fam, typ in types.items():
        if typ != "histogram":
            continue
        series = {}
        for (name, labels), v in seen.items():
            if name == fam + "_bucket":
                d = dict(labels)
                le = d.pop("le")
                series.setdefault(frozenset(d.items()), []).append(
                    (float("inf") if le == "+Inf" else float(le), v))
        for base, buckets in series.items():
            buckets.sort()
            counts = [v for _, v in buckets]
            assert counts == sorted(counts), (fam, buckets)
            assert buckets[-1][0] == float("inf")
            assert seen[(fam + "_count", base)] == counts[-1]
            assert (fam + "_sum", base) in seen
    return seen


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse_exposition(r.read().decode())


def val(s, name, **labels):
    return s.get((name, frozenset((k, str(v)) for k, v in labels.items())), 0)


class _D:
    def __init__(self, req_ep):
        self.req_ep = req_ep


def test_metrics_move_by_exactly_the_traffic(rundir, zctx, pki, tmp_path):  # noqa: F811
    ids = tmp_path / "ids"
    ids.mkdir()
    make_identity(ids, "one.test", "one.test")
    port, tls_port, mport = free_port(), free_port(), free_port()
    with DNSResponder({}, default_ttl=60) as dns:
        dns.set("ok.test", "127.0.0.1")
        dns.set("gone.test", NXDOMAIN)
        conf = rundir / "z.conf"
        conf.write_text("[General]\n"
                        f"in_req_spec = ipc://{rundir}/creq\n"
                        "defpolicy = allow\n"
                        "deny = 127.0.0.2\n"
                        f"dns_servers = {dns.server}\n"
                        f"tls_ca_file = {pki.ca}\n"
                        f"metrics = 127.0.0.1:{mport}\n"
                        "[server]\n"
                        f"listen = 127.0.0.1:{port}\n"
                        f"listen = 127.0.0.1:{tls_port},tls\n"
                        f"zclient_stream = ipc://{rundir}/hs\n"
                        f"tls_identities_dir = {ids}\n")
        d = Zhttpd(["--config", conf, "--workers", "2"], rundir).start()
        h = StreamHandler(zctx, f"ipc://{rundir}/hs")
        rc = ReqClient(zctx, _D(f"ipc://{rundir}/creq"), "DEALER")
        try:
            d.wait_log(r"metrics: http://127\.0\.0\.1:%d/metrics" % mport)
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(f"http://127.0.0.1:{mport}/other", timeout=5)
            assert e.value.code == 404
            before = scrape(mport)
            with AppOrigin() as o, TlsOrigin(pki.self_cert, pki.self_key) as bad_tls:
                # client role: 4 x 2xx (two by name: one DNS miss, one hit), one 404, one
                # policy denial, one DNS failure, one TLS failure
                for i, url in enumerate([o.url("/hello"), o.url("/hello"),
                                         o.url("/hello", host="ok.test"),
                                         o.url("/hello", host="ok.test")]):
                    rep = rc.call({"id": f"ok{i}", "method": "GET", "uri": url})
                    assert rep["code"] == 200 and rep["body"] == HELLO, rep
                assert rc.call({"id": "nf", "method": "GET", "uri": o.url("/nope")})["code"] == 404
                denied = rc.call({"id": "d", "method": "GET",
                                  "uri": f"http://127.0.0.2:{o.port}/hello"})
                assert denied["condition"] == b"policy-violation", denied
                gone = rc.call({"id": "g", "method": "GET", "uri": o.url("/", host="gone.test")})
                assert gone["type"] == b"error", gone
                tls = rc.call({"id": "t", "method": "GET", "uri": bad_tls.url("/")})
                assert tls["condition"] == b"tls-error", tls

            # server role: 200, 404, 500 from the handler, one request the client abandons
            for code in (200, 404, 500):
                c = HttpConn(port)
                c.send(get("/x"))
                r = h.recv_request()
                h.respond(r["id"], code=code, reason="R", body=b"b\n")
                assert c.read_response().status == code
                c.close()
            c = HttpConn(port)
            c.send(get("/gone"))
            r = h.recv_request()
            h.ack(r["id"])  # now zhttpd knows where to send the cancel
            time.sleep(0.3)
            c.close()
            assert h.wait_router(lambda p: p.get("type") == b"cancel")[0]
            # a TLS handshake refused (unknown SNI name, no default-cert)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            raw = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
            with pytest.raises(ssl.SSLError):
                ctx.wrap_socket(raw, server_hostname="nobody.test")
            raw.close()

            deadline = time.monotonic() + 10
            while True:
                after = scrape(mport)
                settled = (val(after, "zhttpd_connections_opened_total", role="server") -
                           val(after, "zhttpd_connections_closed_total", role="server") ==
                           val(before, "zhttpd_connections_opened_total", role="server") -
                           val(before, "zhttpd_connections_closed_total", role="server"))
                if settled or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        finally:
            rc.close()
            h.close()
            d.stop()

    def delta(name, **labels):
        return val(after, name, **labels) - val(before, name, **labels)

    want = {
        ("zhttpd_requests_total", (("role", "client"), ("outcome", "response"), ("class", "2xx"))): 4,
        ("zhttpd_requests_total", (("role", "client"), ("outcome", "response"), ("class", "4xx"))): 1,
        ("zhttpd_requests_total", (("role", "client"), ("outcome", "error"), ("class", "none"))): 3,
        ("zhttpd_errors_total", (("role", "client"), ("condition", "policy-violation"))): 1,
        ("zhttpd_errors_total", (("role", "client"), ("condition", "tls-error"))): 1,
        ("zhttpd_tls_handshake_failures_total", (("role", "client"),)): 1,
        ("zhttpd_dns_failures_total", ()): 1,
        ("zhttpd_sessions_opened_total", (("role", "client"),)): 8,
        ("zhttpd_sessions_closed_total", (("role", "client"),)): 8,
        ("zhttpd_requests_total", (("role", "server"), ("outcome", "response"), ("class", "2xx"))): 1,
        ("zhttpd_requests_total", (("role", "server"), ("outcome", "response"), ("class", "4xx"))): 1,
        ("zhttpd_requests_total", (("role", "server"), ("outcome", "response"), ("class", "5xx"))): 1,
        ("zhttpd_requests_total", (("role", "server"), ("outcome", "cancel"), ("class", "none"))): 1,
        ("zhttpd_sessions_opened_total", (("role", "server"),)): 4,
        ("zhttpd_sessions_closed_total", (("role", "server"),)): 4,
        ("zhttpd_connections_opened_total", (("role", "server"),)): 5,
        ("zhttpd_connections_closed_total", (("role", "server"),)): 5,
        ("zhttpd_tls_handshake_failures_total", (("role", "server"),)): 1,
        ("zhttpd_request_first_byte_seconds_count", (("role", "client"),)): 5,
        ("zhttpd_request_duration_seconds_count", (("role", "client"),)): 5,
        ("zhttpd_request_first_byte_seconds_count", (("role", "server"),)): 3,
        ("zhttpd_request_duration_seconds_count", (("role", "server"),)): 3,
    }
    got = {k: delta(k[0], **dict(k[1])) for k in want}
    assert got == want
    # three lookups by name (ok.test twice, gone.test): the second ok.test is a cache hit when it
    # lands on the worker that resolved the first (each worker has its own resolver and cache)
    misses = delta("zhttpd_dns_lookups_total", result="cache_miss")
    hits = delta("zhttpd_dns_lookups_total", result="cache_hit")
    assert misses + hits == 3 and misses >= 2, (misses, hits)
    # denials: the one request to 127.0.0.2, by name or by address
    assert (delta("zhttpd_policy_denials_total", reason="name") +
            delta("zhttpd_policy_denials_total", reason="address")) == 1
    # every other client condition and every other status class stayed still
    total_cond = sum(v for (n, _), v in after.items() if n == "zhttpd_errors_total") - \
        sum(v for (n, _), v in before.items() if n == "zhttpd_errors_total")
    assert total_cond == 3
    # the bridge's parked messages, per socket kind zhttpd sends on (no peer was slow here)
    for sock in ("client-req", "server-out", "server-out-stream"):
        assert val(after, "zhttpd_parked_messages", socket=sock) == 0
        assert ("zhttpd_parked_messages_total", frozenset({("socket", sock)})) in after, sock
    assert val(after, "zhttpd_connections_open", role="server") == 0
    assert val(after, "zhttpd_sessions_open", role="client") == 0


def test_metrics_flag_values(rundir):
    rc, out = run_once(["--metrics", "localhost:9", "--zserver-req", f"ipc://{rundir}/r"], rundir)
    assert rc == 1 and "--metrics: bad value 'localhost:9'" in out, out
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    p = taken.getsockname()[1]
    rc, out = run_once(["--metrics", str(p), "--zserver-req", f"ipc://{rundir}/r"], rundir)
    taken.close()
    assert rc == 1 and f"--metrics 127.0.0.1:{p}: Address already in use" in out, out


def test_metrics_off_by_default_and_ipv6(rundir):
    mport = free_port()
    d = Zhttpd(["--zserver-req", f"ipc://{rundir}/r", "--metrics", f"[::1]:{mport}"],
               rundir).start()
    try:
        d.wait_log(r"metrics: http://\[::1\]:%d/metrics" % mport)
        with urllib.request.urlopen(f"http://[::1]:{mport}/metrics", timeout=5) as r:
            parse_exposition(r.read().decode())
    finally:
        d.stop()
    d = Zhttpd(["--zserver-req", f"ipc://{rundir}/r2"], rundir, name="off").start()
    try:
        assert "metrics:" not in d.log()
    finally:
        d.stop()


def test_websocket_sessions_and_messages(rundir, zctx):
    import websockets
    from test_28_server_ws import WsEcho, run
    port, mport = free_port(), free_port()
    base = f"ipc://{rundir}/ws"
    d = Zhttpd(["--listen", f"127.0.0.1:{port}", "--zclient-stream", base, "--workers", "2",
                "--metrics", str(mport)], rundir).start()
    h = WsEcho(zctx, base, ident=b"ws-metrics")
    h.start()
    try:
        time.sleep(0.3)
        before = scrape(mport)

        async def go():
            async with websockets.connect(f"ws://127.0.0.1:{port}/echo") as ws:
                got = []
                for m in ("one", "two", b"\x00three"):
                    await ws.send(m)
                    got.append(await ws.recv())
                return got

        assert run(go()) == ["one", "two", b"\x00three"]
        deadline = time.monotonic() + 5
        while True:
            after = scrape(mport)
            if val(after, "zhttpd_connections_open", role="server") == 0 or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        h.close()
        d.stop()

    def delta(name, **labels):
        return val(after, name, **labels) - val(before, name, **labels)

    assert delta("zhttpd_websocket_sessions_total", role="server") == 1
    assert delta("zhttpd_websocket_messages_total", role="server", direction="from_client") == 3
    assert delta("zhttpd_websocket_messages_total", role="server", direction="to_client") == 3
