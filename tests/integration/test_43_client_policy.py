"""Client role: zhttpd's own outbound policy (issue 4 item 4, DESIGN.md "Outbound connections and
the policy"): with no defpolicy in the config, loopback/private/link-local/... are denied, `allow`
rules open exceptions, numeric host forms are checked as the address curl would use, redirects
and DNS answers are checked hop by hop and answer by answer. Names are resolved only through the
test DNS responder (dns_servers). Zurl has none of this (its defpolicy defaults to allow and it
resolves with the machine's resolver), so every test here is zhttpd only."""
import time

import pytest

from dnsresponder import DNSResponder, NXDOMAIN
from origins import AppOrigin, HELLO, RawOrigin, garbage_handler
from test_42_client_conditions import mode, one_shot  # noqa: F401 (fixture)
from zrequester import (ReqClient, binary, daemon, zhttpd_only)  # noqa: F401

ZURL_HAS_NO_DEFAULT_POLICY = ("Zurl's default policy allows everything; zhttpd denies internal "
                              "addresses unless a config sets defpolicy (issue 4 item 4)")


@pytest.fixture
def dns():
    with DNSResponder({}, default_ttl=30) as d:
        yield d


def policy_daemon(daemon, dns, *conf, args=()):
    """zhttpd with no defpolicy (its default policy), resolving through the test responder."""
    return daemon(defpolicy=None, conf=[f"dns_servers={dns.server}", *conf], args=args)


@zhttpd_only(ZURL_HAS_NO_DEFAULT_POLICY)
def test_default_policy_denies_loopback(daemon, zctx, dns, mode):
    d = policy_daemon(daemon, dns)
    with AppOrigin() as o:
        rep = one_shot(zctx, d, mode, {"method": "GET", "uri": o.url("/hello")})
        assert rep["type"] == b"error" and rep["condition"] == b"policy-violation"
        assert o.requests == []


@zhttpd_only(ZURL_HAS_NO_DEFAULT_POLICY)
def test_allow_rule_opens_only_that_address(daemon, zctx, dns):
    d = policy_daemon(daemon, dns, "allow=127.0.0.1")
    c = ReqClient(zctx, d, "DEALER")
    with AppOrigin() as ok, AppOrigin(host="127.0.0.2") as other:
        assert c.call({"id": "a", "method": "GET", "uri": ok.url("/hello")})["body"] == HELLO
        rep = c.call({"id": "b", "method": "GET", "uri": other.url("/hello")})
        assert rep["type"] == b"error" and rep["condition"] == b"policy-violation"
        assert other.requests == []


NUMERIC_FORMS = ["2130706433", "0x7f.1", "127.1", "0177.0.0.1", "0x7f000001", "127.0.1",
                 "[::ffff:127.0.0.1]", "[::1]", "[::ffff:7f00:1]"]


@zhttpd_only("Zurl matches deny patterns against the text of the host; zhttpd checks numeric "
             "forms as the address curl would connect to (issue 4 item 4)")
@pytest.mark.parametrize("host", [pytest.param(h, id=h.strip("[]")) for h in NUMERIC_FORMS])
def test_numeric_host_forms_are_denied_by_default(daemon, zctx, dns, host):
    d = policy_daemon(daemon, dns)
    with AppOrigin() as o:
        rep = ReqClient(zctx, d, "DEALER").call(
            {"id": "n", "method": "GET", "uri": f"http://{host}:{o.port}/hello"})
        assert rep["type"] == b"error", rep
        assert rep["condition"] == b"policy-violation"
        assert o.requests == []
    assert dns.count() == 0, "a numeric host was sent to the DNS server"


@zhttpd_only("numeric forms checked as the address curl uses: an allow rule for 127.0.0.1 covers "
             "every spelling of it (issue 4 item 4)")
@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1"])
def test_numeric_host_forms_match_allow_rule_by_address(daemon, zctx, dns, host):
    d = policy_daemon(daemon, dns, "allow=127.0.0.1")
    with AppOrigin() as o:
        rep = ReqClient(zctx, d, "DEALER").call(
            {"id": "n", "method": "GET", "uri": f"http://{host}:{o.port}/hello"})
        assert rep.get("code") == 200, rep
        assert rep["body"] == HELLO
        assert len(o.requests) == 1


@zhttpd_only(ZURL_HAS_NO_DEFAULT_POLICY + "; each redirect hop is checked like the first")
@pytest.mark.parametrize("target", ["127.0.0.2", "2130706434"])
def test_redirect_to_denied_address_is_policy_violation(daemon, zctx, dns, mode, target):
    d = policy_daemon(daemon, dns, "allow=127.0.0.1")
    with AppOrigin() as o, RawOrigin(garbage_handler, host="127.0.0.2") as denied:
        rep = one_shot(zctx, d, mode, {
            "method": "GET", "follow-redirects": True,
            "uri": o.url(f"/goto?to=http://{target}:{denied.port}/secret")})
        assert rep["type"] == b"error" and rep["condition"] == b"policy-violation"
        assert [r[1].split("?")[0] for r in o.requests] == ["/goto"]
        time.sleep(0.2)
        assert denied.conns == 0


@zhttpd_only(ZURL_HAS_NO_DEFAULT_POLICY)
def test_redirect_not_followed_is_not_checked(daemon, zctx, dns):
    """Without follow-redirects the 302 to a denied address is simply delivered."""
    d = policy_daemon(daemon, dns, "allow=127.0.0.1")
    with AppOrigin() as o:
        rep = ReqClient(zctx, d, "DEALER").call({
            "id": "r", "method": "GET", "uri": o.url("/goto?to=http://127.0.0.2:9/")})
        assert rep["code"] == 302
        assert [v for k, v in rep["headers"] if k.lower() == b"location"] == \
            [b"http://127.0.0.2:9/"]


@zhttpd_only(ZURL_HAS_NO_DEFAULT_POLICY + "; allow_ignore_policies is a zhttpd key")
def test_ignore_policies_honoured_unless_refused(daemon, zctx, dns, rundir):
    with AppOrigin() as o:
        d = policy_daemon(daemon, dns)
        rep = ReqClient(zctx, d, "DEALER").call({"id": "i", "method": "GET",
                                                 "uri": o.url("/hello"), "ignore-policies": True})
        assert rep["code"] == 200 and rep["body"] == HELLO
        d.stop()
        d2 = daemon(defpolicy=None, name="refusing",
                    conf=[f"dns_servers={dns.server}", "allow_ignore_policies=false"])
        rep = ReqClient(zctx, d2, "DEALER").call({"id": "j", "method": "GET",
                                                  "uri": o.url("/hello"),
                                                  "ignore-policies": True})
        assert rep["type"] == b"error" and rep["condition"] == b"policy-violation"
        assert len(o.requests) == 1


@zhttpd_only("--deny-out-internal / deny_out_internal are zhttpd (Condure 1.10) settings")
@pytest.mark.parametrize("how", ["flag", "key"])
def test_deny_out_internal_on_top_of_defpolicy_allow(daemon, zctx, dns, how):
    if how == "flag":
        d = daemon(conf=[f"dns_servers={dns.server}"], args=["--deny-out-internal"])
    else:
        d = daemon(conf=[f"dns_servers={dns.server}", "deny_out_internal=true"])
    with AppOrigin() as o:
        rep = ReqClient(zctx, d, "DEALER").call({"id": "d", "method": "GET",
                                                 "uri": o.url("/hello")})
        assert rep["type"] == b"error" and rep["condition"] == b"policy-violation"
        assert o.requests == []


# ---- names, through the test DNS responder ----

@zhttpd_only("dns_servers is a zhttpd key: Zurl would ask the machine's resolver")
def test_name_resolved_through_dns_servers(daemon, zctx, dns, mode):
    dns.set("origin.test", "127.0.0.1")
    d = policy_daemon(daemon, dns, "allow=127.0.0.1")
    with AppOrigin() as o:
        rep = one_shot(zctx, d, mode, {"method": "GET",
                                       "uri": f"http://origin.test:{o.port}/echo"})
        assert rep["code"] == 200
        hdrs = dict((k.lower(), v) for k, v in o.requests[0][2])
        assert hdrs[b"host"] == f"origin.test:{o.port}".encode()
    assert dns.count("origin.test", "A") >= 1


@zhttpd_only("dns_servers is a zhttpd key; the policy applies to the resolved address")
def test_name_resolving_to_denied_address_is_policy_violation(daemon, zctx, dns):
    dns.set("inner.test", "127.0.0.2")
    d = policy_daemon(daemon, dns, "allow=127.0.0.1")
    with RawOrigin(garbage_handler, host="127.0.0.2") as denied:
        rep = ReqClient(zctx, d, "DEALER").call(
            {"id": "i", "method": "GET", "uri": f"http://inner.test:{denied.port}/"})
        assert rep["type"] == b"error" and rep["condition"] == b"policy-violation"
        time.sleep(0.2)
        assert denied.conns == 0


@zhttpd_only("dns_servers is a zhttpd key")
def test_unknown_name_is_remote_connection_failed(daemon, zctx, dns):
    dns.set("gone.test", NXDOMAIN)
    d = policy_daemon(daemon, dns, "allow=127.0.0.1")
    rep = ReqClient(zctx, d, "DEALER").call(
        {"id": "g", "method": "GET", "uri": "http://gone.test:8080/"})
    assert rep["type"] == b"error" and rep["condition"] == b"remote-connection-failed"
    assert dns.count("gone.test") >= 1


@zhttpd_only("dns_servers is a zhttpd key; allow rules take names too")
def test_allow_rule_by_name(daemon, zctx, dns):
    dns.set("origin.test", "127.0.0.1")
    dns.set("other.test", "127.0.0.1")
    d = policy_daemon(daemon, dns, "allow=origin.test")
    c = ReqClient(zctx, d, "DEALER")
    with AppOrigin() as o:
        rep = c.call({"id": "a", "method": "GET", "uri": f"http://origin.test:{o.port}/hello"})
        assert rep.get("code") == 200, rep
        rep = c.call({"id": "b", "method": "GET", "uri": f"http://other.test:{o.port}/hello"})
        assert rep["type"] == b"error" and rep["condition"] == b"policy-violation"
        assert len(o.requests) == 1


@zhttpd_only("DNS rebinding through the test DNS responder: zhttpd checks every answer it "
             "connects to; Zurl has no dns_servers and allows loopback by default")
def test_dns_rebinding_second_answer_denied(daemon, zctx, dns, mode):
    """rebind.test answers 127.0.0.1 (allowed) first, then 127.0.0.2 (denied), TTL 0. Requests
    are repeated until the second answer has been given; from then on they must be denied, and
    the listener on 127.0.0.2 is never contacted."""
    dns.set("rebind.test", {"A": ["127.0.0.1"], "ttl": 0}, {"A": ["127.0.0.2"], "ttl": 0})
    d = policy_daemon(daemon, dns, "allow=127.0.0.1")
    with AppOrigin() as o, RawOrigin(garbage_handler, host="127.0.0.2", port=o.port) as evil:
        uri = f"http://rebind.test:{o.port}/hello"
        first = one_shot(zctx, d, mode, {"method": "GET", "uri": uri})
        assert first.get("code") == 200 and first["body"] == HELLO, first
        assert dns.count("rebind.test", "A") == 1
        deadline = time.monotonic() + 15
        while True:
            rep = one_shot(zctx, d, mode, {"method": "GET", "uri": uri})
            asked = dns.count("rebind.test", "A")
            if rep.get("type") == b"error":
                break
            # a success only while the first answer is the only one given (cached per worker)
            assert rep.get("code") == 200 and asked == 1, (rep, asked)
            assert time.monotonic() < deadline, "the name was never asked again"
            time.sleep(0.3)
        assert asked >= 2
        assert rep["type"] == b"error" and rep["condition"] == b"policy-violation", rep
        time.sleep(0.2)
        assert evil.conns == 0
