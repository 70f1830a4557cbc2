"""The access policy on the curl path: names checked before resolving, every resolved address
checked and only allowed ones handed to curl, numeric host forms judged as curl uses them,
ignore-policies (and allow_ignore_policies=false), connect-host, each redirect hop, and DNS
rebinding through the test DNS responder (names are never resolved by the machine's resolver)."""
import time

import pytest
import zmq

from dnsresponder import DNSResponder
from origin import Origin
from test_32_client_fields import fetch
from zclient import Requester, start_daemon
from zhttpd import Zhttpd


def policy_daemon(rundir, conf):
    """Like zclient.start_daemon, but with exactly conf as [General] (no defpolicy=allow)."""
    base = f"ipc://{rundir}/zc"
    path = rundir / "policy.conf"
    path.write_text("[General]\n" + conf)
    d = Zhttpd(["--config", path, "--workers", "2", "--zserver-stream", base, "--log-level", "3",
                "--shutdown-timeout", "0"], rundir).start()
    return d, base


def ok_route(method, path, headers, body):
    return 200, [], b"reached " + (headers.get("Host") or "").encode()


def test_default_policy_denies_loopback_before_connecting(rundir, zctx):
    d, base = policy_daemon(rundir, "")
    try:
        rq = Requester(zctx, base)
        with Origin({"/": ok_route}) as o:
            for host in ("127.0.0.1", "2130706433", "0x7f.1", "127.1", "[::ffff:127.0.0.1]"):
                err, head, body = fetch(rq, uri=f"http://{host}:{o.port}/")
                assert err["type"] == b"error" and err["condition"] == b"policy-violation", host
            assert o.requests == []
        assert ('condition=policy-violation stage=connect reason="policy: 127.0.0.1: internal '
                'address (loopback)"') in d.log()
    finally:
        d.stop()


def test_an_allow_rule_opens_exactly_that_address_in_every_form(rundir, zctx):
    d, base = policy_daemon(rundir, "allow = 127.0.0.1\n")
    try:
        rq = Requester(zctx, base)
        with Origin({"/": ok_route}) as o:
            for host in ("127.0.0.1", "2130706433", "0x7f.1", "127.1"):
                err, head, body = fetch(rq, uri=f"http://{host}:{o.port}/")
                assert err is None and body.startswith(b"reached "), (host, err)
            err, head, body = fetch(rq, uri=f"http://127.0.0.2:{o.port}/")
            assert err["condition"] == b"policy-violation"
    finally:
        d.stop()


@pytest.mark.parametrize("allow_ignore", [True, False])
def test_ignore_policies_is_honoured_unless_refused(rundir, zctx, allow_ignore):
    conf = "" if allow_ignore else "allow_ignore_policies = false\n"
    d, base = policy_daemon(rundir, conf)
    try:
        rq = Requester(zctx, base)
        with Origin({"/": ok_route}) as o:
            err, head, body = fetch(rq, uri=o.url("/"), **{"ignore-policies": True})
            if allow_ignore:
                assert err is None and head["code"] == 200
            else:
                assert err["condition"] == b"policy-violation"
                assert o.requests == []
    finally:
        d.stop()


def test_connect_host_is_checked_too(rundir, zctx):
    d, base = policy_daemon(rundir, "allow = 127.0.0.1\n")
    try:
        rq = Requester(zctx, base)
        with Origin({"/": ok_route}) as o:
            err, head, body = fetch(rq, uri=o.url("/"),
                                    **{"connect-host": "127.0.0.3", "connect-port": o.port})
            assert err["condition"] == b"policy-violation"
            err, head, body = fetch(rq, uri=f"http://127.0.0.3:{o.port}/",
                                    **{"connect-host": "127.0.0.1", "connect-port": o.port})
            assert err["condition"] == b"policy-violation"  # the uri host is judged as well
    finally:
        d.stop()


def test_a_redirect_to_a_denied_address_is_stopped(rundir, zctx):
    d, base = policy_daemon(rundir, "allow = 127.0.0.1\n")
    try:
        rq = Requester(zctx, base)
        with Origin({"/": ok_route}) as target:
            denied = f"http://127.0.0.2:{target.port}/"
            with Origin({"/go": lambda *a: (302, [("Location", denied)], b"")}) as o:
                err, head, body = fetch(rq, uri=o.url("/go"), **{"follow-redirects": True})
                assert err["condition"] == b"policy-violation"
                assert target.requests == []
                # not followed: the redirect itself is the answer
                err, head, body = fetch(rq, uri=o.url("/go"))
                assert head["code"] == 302
    finally:
        d.stop()


def test_names_resolve_through_dns_servers_and_rebinding_is_caught(rundir, zctx):
    with DNSResponder({"origin.test": "127.0.0.1"}) as dns:
        dns.set("rebind.test", {"A": ["127.0.0.1"], "ttl": 1}, {"A": ["127.0.0.2"], "ttl": 1})
        d, base = policy_daemon(rundir, f"dns_servers = {dns.server}\nallow = 127.0.0.1\n")
        try:
            rq = Requester(zctx, base)
            with Origin({"/": ok_route}) as o:
                err, head, body = fetch(rq, uri=f"http://origin.test:{o.port}/")
                assert err is None and body == f"reached origin.test:{o.port}".encode()
                err, head, body = fetch(rq, uri=f"http://rebind.test:{o.port}/")
                assert err is None and body == f"reached rebind.test:{o.port}".encode()
                time.sleep(1.5)  # the 1 s TTL runs out; the second answer is a denied address
                n = len(o.requests)
                for _ in range(2):  # whichever worker asks, it gets the rebound answer now
                    err, head, body = fetch(rq, uri=f"http://rebind.test:{o.port}/")
                    assert err["condition"] == b"policy-violation"
                assert len(o.requests) == n
                err, head, body = fetch(rq, uri=f"http://nxdomain.test:{o.port}/")
                assert err["condition"] == b"remote-connection-failed"
            assert dns.count("origin.test", "A") >= 1
            assert dns.count("rebind.test", "A") >= 2
            log = d.log()
            assert ('condition=policy-violation stage=connect reason="policy: no address of '
                    'rebind.test is allowed') in log
            assert 'condition=remote-connection-failed stage=dns reason="nxdomain.test: ' in log
        finally:
            d.stop()
