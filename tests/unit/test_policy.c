/* link: zh_client */
/* Unit tests for client/policy.c: the internal deny set of zhttpd's default policy (IPv4, IPv6,
 * IPv4-mapped, NAT64, 6to4), allow rules opening exceptions by address and by host name, Zurl's
 * exact defpolicy=allow / defpolicy=deny semantics (allow beats deny under allow; both needed
 * under deny), deny_out_internal on top of a Zurl config, every pattern form (exact, one-*
 * wildcard, CIDR with IPv4 short forms and dotted netmasks, IPv6/len) and malformed patterns, and
 * curl-style normalisation of numeric hosts (2130706433, 0x7f.1, 127.1). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "client/policy.h"
#include "shared/proto/buf.h"
#include "shared/proto/mem.h"

#define ALLOW ZH_POLICY_ALLOW
#define DENY  ZH_POLICY_DENY

static struct zh_policy *make(enum zh_policy_default def, const char *allow, const char *deny,
                              bool v6, bool internal)
{
    /* Comma-separated lists, as in the config file. */
    static char abuf[512], dbuf[512];
    static const char *al[16], *dl[16];
    size_t na = 0, nd = 0;
    snprintf(abuf, sizeof(abuf), "%s", allow ? allow : "");
    snprintf(dbuf, sizeof(dbuf), "%s", deny ? deny : "");
    for (char *p = abuf; *p && na < 16;) {
        al[na++] = p;
        char *c = strchr(p, ',');
        if (!c)
            break;
        *c = '\0';
        p = c + 1;
    }
    for (char *p = dbuf; *p && nd < 16;) {
        dl[nd++] = p;
        char *c = strchr(p, ',');
        if (!c)
            break;
        *c = '\0';
        p = c + 1;
    }
    struct zh_policy_config cfg = {
        .defpolicy = def,
        .allow = al,
        .allow_count = na,
        .deny = dl,
        .deny_count = nd,
        .allow_ipv6 = v6,
        .deny_out_internal = internal,
    };
    struct zh_buf err = {0};
    struct zh_policy *p = zh_policy_new(&cfg, &err);
    if (!p)
        fail_msg("zh_policy_new: %s", zh_buf_cstr(&err));
    zh_buf_free(&err);
    return p;
}

/* Check one textual address (IPv4 or IPv6) against p, with an optional host name. */
static enum zh_policy_verdict addr(const struct zh_policy *p, const char *host, const char *ip,
                                   const char **why)
{
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } u;
    memset(&u, 0, sizeof(u));
    if (inet_pton(AF_INET, ip, &u.in.sin_addr) == 1) {
        u.in.sin_family = AF_INET;
        u.in.sin_port = htons(80);
    } else if (inet_pton(AF_INET6, ip, &u.in6.sin6_addr) == 1) {
        u.in6.sin6_family = AF_INET6;
        u.in6.sin6_port = htons(443);
    } else {
        fail_msg("bad test address %s", ip);
    }
    const char *dummy;
    return zh_policy_check_addr(p, host, &u.sa, why ? why : &dummy);
}

struct acase {
    const char *ip;
    enum zh_policy_verdict want;
    const char *reason_part; /* expected substring of the reason, or NULL */
};

static void run_cases(const struct zh_policy *p, const char *host, const struct acase *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *why = NULL;
        enum zh_policy_verdict v = addr(p, host, c[i].ip, &why);
        if (v != c[i].want)
            fail_msg("%s (host %s): got %s (%s), want %s", c[i].ip, host ? host : "-",
                     v == ALLOW ? "allow" : "deny", why ? why : "?",
                     c[i].want == ALLOW ? "allow" : "deny");
        assert_non_null(why);
        if (c[i].reason_part && !strstr(why, c[i].reason_part))
            fail_msg("%s: reason '%s' lacks '%s'", c[i].ip, why, c[i].reason_part);
    }
}

static void default_denies_internal_ipv4(void **state)
{
    (void)state;
    struct zh_policy *p = make(ZH_POLICY_DEFAULT_UNSET, NULL, NULL, true, false);
    static const struct acase cases[] = {
        {"127.0.0.1", DENY, "loopback"},
        {"127.255.255.254", DENY, "loopback"},
        {"10.1.2.3", DENY, "private"},
        {"172.16.0.1", DENY, "private"},
        {"172.31.255.255", DENY, "private"},
        {"192.168.1.1", DENY, "private"},
        {"169.254.1.1", DENY, "link-local"},
        {"169.254.169.254", DENY, "metadata"},
        {"100.100.100.200", DENY, "metadata"},
        {"192.0.0.192", DENY, "metadata"},
        {"100.64.0.1", DENY, "cgnat"},
        {"100.127.255.255", DENY, "cgnat"},
        {"0.0.0.0", DENY, "this-network"},
        {"0.1.2.3", DENY, "this-network"},
        {"224.0.0.1", DENY, "multicast"},
        {"239.255.255.250", DENY, "multicast"},
        {"240.0.0.1", DENY, "reserved"},
        {"255.255.255.255", DENY, "broadcast"},
        {"192.0.2.10", DENY, "documentation"},
        {"198.18.0.1", DENY, "benchmarking"},
        /* just outside the ranges */
        {"8.8.8.8", ALLOW, "default allow"},
        {"93.184.216.34", ALLOW, NULL},
        {"172.15.255.255", ALLOW, NULL},
        {"172.32.0.1", ALLOW, NULL},
        {"100.63.255.255", ALLOW, NULL},
        {"100.128.0.1", ALLOW, NULL},
        {"192.169.0.1", ALLOW, NULL},
        {"11.0.0.1", ALLOW, NULL},
        {"223.255.255.255", ALLOW, NULL},
        {"1.0.0.1", ALLOW, NULL},
    };
    run_cases(p, NULL, cases, ZH_ARRAY_SIZE(cases));
    zh_policy_free(p);
}

static void default_denies_internal_ipv6_and_embedded_ipv4(void **state)
{
    (void)state;
    struct zh_policy *p = make(ZH_POLICY_DEFAULT_UNSET, NULL, NULL, true, false);
    static const struct acase cases[] = {
        {"::1", DENY, "loopback"},
        {"::", DENY, "unspecified"},
        {"::7f00:1", DENY, "reserved"}, /* IPv4-compatible, deprecated */
        {"fc00::1", DENY, "unique-local"},
        {"fd12:3456::1", DENY, "unique-local"},
        {"fd00:ec2::254", DENY, "metadata"},
        {"fe80::1", DENY, "link-local"},
        {"febf:ffff::1", DENY, "link-local"},
        {"fec0::1", DENY, "site-local"},
        {"ff02::1", DENY, "multicast"},
        {"2001:db8::1", DENY, "documentation"},
        {"100::1", DENY, "discard"},
        {"64:ff9b:1::1", DENY, "nat64-local"},
        /* IPv4-mapped: judged as the IPv4 address */
        {"::ffff:127.0.0.1", DENY, "loopback"},
        {"::ffff:10.0.0.1", DENY, "private"},
        {"::ffff:169.254.169.254", DENY, "metadata"},
        {"::ffff:8.8.8.8", ALLOW, NULL},
        /* NAT64 with the IPv4 address in the last 32 bits */
        {"64:ff9b::7f00:1", DENY, "loopback"},
        {"64:ff9b::a9fe:a9fe", DENY, "metadata"},
        {"64:ff9b::808:808", ALLOW, NULL},
        /* 6to4 with the IPv4 address in bits 16..47 */
        {"2002:7f00:1::1", DENY, "loopback"},
        {"2002:c0a8:101::1", DENY, "private"},
        {"2002:808:808::1", ALLOW, NULL},
        /* global unicast */
        {"2606:4700:4700::1111", ALLOW, "default allow"},
        {"2a00:1450:4001::1", ALLOW, NULL},
    };
    run_cases(p, NULL, cases, ZH_ARRAY_SIZE(cases));
    zh_policy_free(p);
}

static void allow_ipv6_off_denies_every_ipv6_address(void **state)
{
    (void)state;
    struct zh_policy *p = make(ZH_POLICY_DEFAULT_UNSET, "2606:4700::/32", NULL, false, false);
    const char *why = NULL;
    assert_int_equal(DENY, addr(p, NULL, "2606:4700:4700::1111", &why));
    assert_non_null(strstr(why, "allow_ipv6"));
    assert_int_equal(DENY, addr(p, NULL, "::ffff:8.8.8.8", &why));
    assert_int_equal(ALLOW, addr(p, NULL, "8.8.8.8", &why));
    zh_policy_free(p);

    /* Zurl's configs too */
    p = make(ZH_POLICY_DEFAULT_ALLOW, NULL, NULL, false, false);
    assert_int_equal(DENY, addr(p, NULL, "2606:4700:4700::1111", NULL));
    assert_int_equal(ALLOW, addr(p, NULL, "127.0.0.1", NULL));
    zh_policy_free(p);
}

static void default_allow_rules_open_exceptions(void **state)
{
    (void)state;
    struct zh_policy *p =
        make(ZH_POLICY_DEFAULT_UNSET, "127.0.0.1,10.20/16,fd00::/8,internal.corp,*.svc.local",
             "8.8.8.8,*.evil.test", true, false);
    static const struct acase cases[] = {
        {"127.0.0.1", ALLOW, "rule '127.0.0.1'"},
        {"::ffff:127.0.0.1", ALLOW, "rule '127.0.0.1'"}, /* the mapped form matches too */
        {"127.0.0.2", DENY, "loopback"},
        {"10.20.30.40", ALLOW, "10.20/16"},
        {"10.21.0.1", DENY, "private"},
        {"fd00::5", ALLOW, "fd00::/8"},
        {"fc00::5", DENY, "unique-local"},
        {"8.8.8.8", DENY, "deny rule '8.8.8.8'"},
        {"8.8.4.4", ALLOW, NULL},
    };
    run_cases(p, NULL, cases, ZH_ARRAY_SIZE(cases));

    /* An allow rule naming the host opens the internal set for its addresses... */
    const char *why = NULL;
    assert_int_equal(ALLOW, addr(p, "internal.corp", "10.0.0.5", &why));
    assert_non_null(strstr(why, "internal.corp"));
    assert_int_equal(ALLOW, addr(p, "api.svc.local", "192.168.1.7", NULL));
    assert_int_equal(ALLOW, addr(p, "INTERNAL.CORP", "169.254.169.254", NULL));
    /* ...but not for other names, and not against an explicit deny of the address */
    assert_int_equal(DENY, addr(p, "other.corp", "10.0.0.5", NULL));
    assert_int_equal(DENY, addr(p, "internal.corp", "8.8.8.8", NULL));
    assert_int_equal(DENY, addr(p, NULL, "10.0.0.5", NULL));

    /* names: deny patterns apply, and allow overrides them as with defpolicy=allow */
    assert_int_equal(DENY, zh_policy_check_name(p, "x.evil.test", &why));
    assert_non_null(strstr(why, "*.evil.test"));
    assert_int_equal(ALLOW, zh_policy_check_name(p, "evil.test", NULL));
    assert_int_equal(ALLOW, zh_policy_check_name(p, "example.com", NULL));
    zh_policy_free(p);
}

static void name_check_of_ip_literals_uses_the_address_rules(void **state)
{
    (void)state;
    struct zh_policy *p = make(ZH_POLICY_DEFAULT_UNSET, NULL, NULL, true, false);
    const char *why = NULL;
    assert_int_equal(DENY, zh_policy_check_name(p, "127.0.0.1", &why));
    assert_non_null(strstr(why, "loopback"));
    assert_int_equal(DENY, zh_policy_check_name(p, "[::1]", &why));
    assert_int_equal(DENY, zh_policy_check_name(p, "::1", NULL));
    assert_int_equal(DENY, zh_policy_check_name(p, "[::ffff:169.254.169.254]", &why));
    assert_non_null(strstr(why, "metadata"));
    assert_int_equal(ALLOW, zh_policy_check_name(p, "8.8.8.8", NULL));
    /* a name is never judged as internal before it is resolved */
    assert_int_equal(ALLOW, zh_policy_check_name(p, "localhost", NULL));
    zh_policy_free(p);
}

static void normalize_numeric_hosts_like_curl(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"2130706433", "127.0.0.1"},
        {"0x7f.1", "127.0.0.1"},
        {"127.1", "127.0.0.1"},
        {"127.0.1", "127.0.0.1"},
        {"0177.0.0.1", "127.0.0.1"},
        {"0x7f000001", "127.0.0.1"},
        {"017700000001", "127.0.0.1"},
        {"0X7F.0.0.0X1", "127.0.0.1"},
        {"169.254.43518", "169.254.169.254"},
        {"0xa9fea9fe", "169.254.169.254"},
        {"10.0.0.1", "10.0.0.1"},
        {"0", "0.0.0.0"},
        {"4294967295", "255.255.255.255"},
        {"[::1]", "::1"},
        {"[0:0:0:0:0:FFFF:7F00:1]", "::ffff:127.0.0.1"},
        {"[fe80::1%25eth0]", "fe80::1"},
        {"::1", "::1"},
        {"Example.COM", "example.com"},
        /* not IPv4 numbers: kept as names, as curl does */
        {"4294967296", "4294967296"},
        {"256.1.1.1", "256.1.1.1"},
        {"1.2.3.4.5", "1.2.3.4.5"},
        {"1.2.3.", "1.2.3."},
        {"0x", "0x"},
        {"08.1.1.1", "08.1.1.1"},
        {"1.2.65536", "1.2.65536"},
        {"127.0.0.1x", "127.0.0.1x"},
    };
    char out[64];
    for (size_t i = 0; i < ZH_ARRAY_SIZE(cases); i++) {
        int n = zh_policy_normalize_host(cases[i].in, out, sizeof(out));
        if (n < 0 || strcmp(out, cases[i].out) != 0)
            fail_msg("normalize(%s) = %d '%s', want '%s'", cases[i].in, n, n < 0 ? "" : out,
                     cases[i].out);
        assert_int_equal((int)strlen(out), n);
    }
    assert_int_equal(-EINVAL, zh_policy_normalize_host("", out, sizeof(out)));
    assert_int_equal(-EINVAL, zh_policy_normalize_host("[::1", out, sizeof(out)));
    assert_int_equal(-EINVAL, zh_policy_normalize_host("[zz::zz]", out, sizeof(out)));
    assert_int_equal(-EINVAL, zh_policy_normalize_host("[]", out, sizeof(out)));
    assert_int_equal(-ENOSPC, zh_policy_normalize_host("2130706433", out, 9));
    assert_int_equal(-ENOSPC, zh_policy_normalize_host("example.com", out, 11));
    assert_int_equal(11, zh_policy_normalize_host("example.com", out, 12));

    /* Every numeric spelling of loopback is denied once normalised, even by Zurl's
     * string patterns. */
    struct zh_policy *def = make(ZH_POLICY_DEFAULT_UNSET, NULL, NULL, true, false);
    struct zh_policy *zurl = make(ZH_POLICY_DEFAULT_ALLOW, NULL, "127.*", false, false);
    static const char *const loop[] = {"2130706433", "0x7f.1", "127.1", "0177.0.0.1", "0x7f000001"};
    for (size_t i = 0; i < ZH_ARRAY_SIZE(loop); i++) {
        assert_true(zh_policy_normalize_host(loop[i], out, sizeof(out)) > 0);
        assert_int_equal(DENY, zh_policy_check_name(def, out, NULL));
        assert_int_equal(DENY, zh_policy_check_name(zurl, out, NULL));
        assert_int_equal(DENY, addr(zurl, NULL, out, NULL));
    }
    zh_policy_free(def);
    zh_policy_free(zurl);
}

/* The deny list Debian's zurl.conf and Pushpin's generated zurl.conf ship with. */
#define ZURL_DENY "127.*,10.*,192.168.*,*.local"

static void zurl_defpolicy_allow_keeps_zurl_meaning(void **state)
{
    (void)state;
    struct zh_policy *p = make(ZH_POLICY_DEFAULT_ALLOW, NULL, ZURL_DENY, false, false);
    const char *why = NULL;
    assert_int_equal(DENY, zh_policy_check_name(p, "printer.local", &why));
    assert_string_equal("deny rule '*.local'", why);
    assert_int_equal(DENY, zh_policy_check_name(p, "PRINTER.LOCAL", NULL));
    assert_int_equal(ALLOW, zh_policy_check_name(p, "local", NULL));
    assert_int_equal(ALLOW, zh_policy_check_name(p, "example.com", &why));
    assert_string_equal("default allow", why);
    static const struct acase cases[] = {
        {"127.0.0.1", DENY, "127.*"},
        {"10.9.8.7", DENY, "10.*"},
        {"192.168.0.1", DENY, "192.168.*"},
        /* Zurl has no internal set: what its deny list misses is allowed */
        {"172.16.0.1", ALLOW, "default allow"},
        {"169.254.169.254", ALLOW, NULL},
        {"100.64.0.1", ALLOW, NULL},
        {"8.8.8.8", ALLOW, NULL},
    };
    run_cases(p, NULL, cases, ZH_ARRAY_SIZE(cases));
    zh_policy_free(p);

    /* allow beats deny under defpolicy=allow */
    p = make(ZH_POLICY_DEFAULT_ALLOW, "10.1.0.0/16,ok.local", "10/8,*.local", false, false);
    assert_int_equal(ALLOW, addr(p, NULL, "10.1.2.3", NULL));
    assert_int_equal(DENY, addr(p, NULL, "10.2.0.1", NULL));
    assert_int_equal(ALLOW, zh_policy_check_name(p, "ok.local", NULL));
    assert_int_equal(DENY, zh_policy_check_name(p, "ko.local", NULL));
    zh_policy_free(p);
}

static void zurl_defpolicy_deny_needs_an_allow_and_no_deny(void **state)
{
    (void)state;
    struct zh_policy *p =
        make(ZH_POLICY_DEFAULT_DENY, "*.example.com,example.com,93.184.216.0/24,127.0.0.1",
             "bad.example.com,93.184.216.66", false, false);
    const char *why = NULL;
    assert_int_equal(ALLOW, zh_policy_check_name(p, "example.com", NULL));
    assert_int_equal(ALLOW, zh_policy_check_name(p, "www.example.com", NULL));
    assert_int_equal(DENY, zh_policy_check_name(p, "bad.example.com", &why));
    assert_string_equal("deny rule 'bad.example.com'", why);
    assert_int_equal(DENY, zh_policy_check_name(p, "example.org", &why));
    assert_non_null(strstr(why, "defpolicy=deny"));
    static const struct acase cases[] = {
        {"93.184.216.34", ALLOW, "93.184.216.0/24"},
        {"93.184.216.66", DENY, "deny rule"},
        {"93.184.217.1", DENY, "defpolicy=deny"},
        {"8.8.8.8", DENY, NULL},
        /* Zurl's meaning: an explicitly allowed internal address is reachable */
        {"127.0.0.1", ALLOW, NULL},
        {"127.0.0.2", DENY, NULL},
    };
    run_cases(p, NULL, cases, ZH_ARRAY_SIZE(cases));
    /* Zurl checks every address as text: an allowed name does not allow its addresses */
    assert_int_equal(DENY, addr(p, "www.example.com", "8.8.8.8", NULL));
    zh_policy_free(p);
}

static void deny_out_internal_adds_the_internal_set_to_zurl_configs(void **state)
{
    (void)state;
    struct zh_policy *p =
        make(ZH_POLICY_DEFAULT_ALLOW, "172.16.5.5,intranet.test", ZURL_DENY, true, true);
    static const struct acase cases[] = {
        {"127.0.0.1", DENY, "127.*"},    /* Zurl's own rule still reports first */
        {"172.16.0.1", DENY, "private"}, /* now denied */
        {"169.254.169.254", DENY, "metadata"},
        {"100.64.0.1", DENY, "cgnat"},
        {"::1", DENY, "loopback"},
        {"::ffff:172.16.0.1", DENY, "private"},
        {"172.16.5.5", ALLOW, "172.16.5.5"}, /* allow rules still open exceptions */
        {"8.8.8.8", ALLOW, NULL},
    };
    run_cases(p, NULL, cases, ZH_ARRAY_SIZE(cases));
    assert_int_equal(ALLOW, addr(p, "intranet.test", "172.20.0.1", NULL));
    assert_int_equal(DENY, addr(p, "elsewhere.test", "172.20.0.1", NULL));
    zh_policy_free(p);

    /* defpolicy=deny with deny_out_internal: explicit allows still decide */
    p = make(ZH_POLICY_DEFAULT_DENY, "10.0.0.0/8", NULL, false, true);
    assert_int_equal(ALLOW, addr(p, NULL, "10.1.1.1", NULL));
    assert_int_equal(DENY, addr(p, NULL, "127.0.0.1", NULL));
    assert_int_equal(DENY, addr(p, NULL, "8.8.8.8", NULL));
    zh_policy_free(p);
}

static void subnet_pattern_forms(void **state)
{
    (void)state;
    static const struct {
        const char *pattern, *in, *out;
    } cases[] = {
        {"10/8", "10.255.0.1", "11.0.0.1"},
        {"172.16/12", "172.31.1.1", "172.32.0.1"},
        {"192.168/16", "192.168.200.1", "192.169.0.1"},
        {"192.168./16", "192.168.0.9", "192.167.255.255"},
        {"192.168.0.0/255.255.0.0", "192.168.7.7", "192.169.7.7"},
        {"10.0.0.0/255.0.0.0", "10.9.9.9", "9.9.9.9"},
        {"1.2.3.4/32", "1.2.3.4", "1.2.3.5"},
        {"1.2.3.99/24", "1.2.3.200", "1.2.4.1"}, /* host bits ignored */
        {"0/0", "203.0.114.1", "::1"},           /* every IPv4, no IPv6 */
        {"fc00::/7", "fdff::1", "fe00::1"},
        {"2001:db8::/32", "2001:db8:ffff::1", "2001:db9::1"},
        {"::1/128", "::1", "::2"},
        {"2001:db8::1/0", "2606:4700::1", "1.2.3.4"},
    };
    for (size_t i = 0; i < ZH_ARRAY_SIZE(cases); i++) {
        struct zh_policy *p = make(ZH_POLICY_DEFAULT_DENY, cases[i].pattern, NULL, true, false);
        if (addr(p, NULL, cases[i].in, NULL) != ALLOW)
            fail_msg("%s should contain %s", cases[i].pattern, cases[i].in);
        if (addr(p, NULL, cases[i].out, NULL) != DENY)
            fail_msg("%s should not contain %s", cases[i].pattern, cases[i].out);
        /* a subnet never matches a name */
        assert_int_equal(DENY, zh_policy_check_name(p, "example.com", NULL));
        zh_policy_free(p);
    }
}

static void wildcard_and_exact_patterns(void **state)
{
    (void)state;
    struct zh_policy *p =
        make(ZH_POLICY_DEFAULT_DENY, "api.*.example.com,*.Test,exact.org,*", NULL, false, false);
    zh_policy_free(p);

    p = make(ZH_POLICY_DEFAULT_DENY, "api.*.example.com,*.Test,Exact.org,ab*ba,192.0.2.*", NULL,
             true, false);
    assert_int_equal(ALLOW, zh_policy_check_name(p, "api.eu.example.com", NULL));
    assert_int_equal(ALLOW, zh_policy_check_name(p, "API.x.y.EXAMPLE.com", NULL));
    assert_int_equal(DENY, zh_policy_check_name(p, "www.eu.example.com", NULL));
    assert_int_equal(ALLOW, zh_policy_check_name(p, "x.test", NULL));
    assert_int_equal(ALLOW, zh_policy_check_name(p, "exact.ORG", NULL));
    assert_int_equal(DENY, zh_policy_check_name(p, "exact.org.evil", NULL));
    assert_int_equal(DENY, zh_policy_check_name(p, "sub.exact.org", NULL));
    /* Zurl checks prefix and suffix separately: they may overlap */
    assert_int_equal(ALLOW, zh_policy_check_name(p, "aba", NULL));
    assert_int_equal(DENY, zh_policy_check_name(p, "ab", NULL));
    /* wildcards over an address's text form */
    assert_int_equal(ALLOW, addr(p, NULL, "192.0.2.77", NULL));
    assert_int_equal(DENY, addr(p, NULL, "192.0.20.1", NULL));
    zh_policy_free(p);
}

static void malformed_patterns_are_rejected(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "10/33",       "10.0.0.0/255.0.255.0",
        "1.2.3.4.5/8", "fc00::/129",
        "abc/8",       "a*b*c",
        "/8",          "10/",
        "10/8/8",      "256/8",
        "10/-1",       "fc00::/1.2.3.4",
        "1..2/16",     "10/0x8",
    };
    for (size_t i = 0; i < ZH_ARRAY_SIZE(bad); i++) {
        const char *list[1] = {bad[i]};
        struct zh_policy_config cfg = {
            .defpolicy = ZH_POLICY_DEFAULT_ALLOW, .deny = list, .deny_count = 1};
        struct zh_buf err = {0};
        struct zh_policy *p = zh_policy_new(&cfg, &err);
        if (p)
            fail_msg("pattern '%s' accepted", bad[i]);
        assert_non_null(strstr(zh_buf_cstr(&err), bad[i]));
        zh_buf_free(&err);
    }
    /* empty and blank entries are dropped, surrounding spaces trimmed */
    const char *list[3] = {"", "   ", " 10/8 "};
    struct zh_policy_config cfg = {
        .defpolicy = ZH_POLICY_DEFAULT_ALLOW, .deny = list, .deny_count = 3};
    struct zh_buf err = {0};
    struct zh_policy *p = zh_policy_new(&cfg, &err);
    assert_non_null(p);
    const char *why = NULL;
    assert_int_equal(DENY, addr(p, NULL, "10.0.0.1", &why));
    assert_string_equal("deny rule '10/8'", why);
    zh_policy_free(p);
    /* an out-of-range defpolicy */
    cfg.defpolicy = (enum zh_policy_default)7;
    assert_null(zh_policy_new(&cfg, &err));
    zh_buf_free(&err);
}

static void other_families_are_denied_and_is_internal_names_ranges(void **state)
{
    (void)state;
    struct zh_policy *p = make(ZH_POLICY_DEFAULT_ALLOW, NULL, NULL, true, false);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    const char *why = NULL;
    assert_int_equal(DENY, zh_policy_check_addr(p, NULL, (struct sockaddr *)&un, &why));
    assert_true(zh_policy_is_internal((struct sockaddr *)&un, NULL));
    zh_policy_free(p);

    struct sockaddr_in in = {.sin_family = AF_INET};
    const char *what = NULL;
    inet_pton(AF_INET, "100.100.100.200", &in.sin_addr);
    assert_true(zh_policy_is_internal((struct sockaddr *)&in, &what));
    assert_string_equal("metadata", what);
    inet_pton(AF_INET, "1.1.1.1", &in.sin_addr);
    assert_false(zh_policy_is_internal((struct sockaddr *)&in, &what));
    assert_null(what);
    zh_policy_free(NULL);
}

/* The one grammar (zh_policy_check_pattern, which the config loader calls): every form Zurl's
 * QHostAddress::parseSubnet() and matchExp() accept is accepted here and is what the policy
 * matches; each refusal says what was expected. */
static void grammar_accepts_every_zurl_form(void **state)
{
    (void)state;
    static const char *const good[] = {
        "127.0.0.1",
        "example.com",
        "EXAMPLE.com",
        "my_host-1",
        "::1",
        "*",
        "*.local",
        "127.*",
        "*.0.2",
        "127.*.1",
        "10/8",
        "172.16/12",
        "127.1/16",
        "192.168/16",
        "10./8",
        "127.1./16",
        "1.2.3./24",
        "127.0.0.0/8",
        "0/0",
        "1.2.3.4/32",
        "010/8",
        "10/08",
        "10.0.0.0/255.0.0.0",
        "1.2.3.4/255.255.255.255",
        "10/0.0.0.0",
        "fe80::/10",
        "::ffff:127.0.0.0/104",
        "::/0",
        "::1/128",
    };
    for (size_t i = 0; i < ZH_ARRAY_SIZE(good); i++) {
        struct zh_buf err = {0};
        if (zh_policy_check_pattern(good[i], &err) != 0)
            fail_msg("'%s' refused: %s", good[i], zh_buf_cstr(&err));
        assert_int_equal(err.len, 0);
        zh_buf_free(&err);
        /* and the policy builds from it, in allow and in deny */
        struct zh_policy *p = make(ZH_POLICY_DEFAULT_DENY, good[i], NULL, true, false);
        zh_policy_free(p);
        p = make(ZH_POLICY_DEFAULT_ALLOW, NULL, good[i], true, false);
        zh_policy_free(p);
    }
}

static void grammar_refusals_say_what_was_expected(void **state)
{
    (void)state;
    static const struct {
        const char *pattern, *expect;
    } bad[] = {
        {"", "not an empty pattern"},
        {"10/99", "prefix length 0..32"},
        {"10/33", "prefix length 0..32"},
        {"10/", "prefix length 0..32"},
        {"10/-1", "prefix length 0..32"},
        {"10/+8", "prefix length 0..32"},
        {"10/8x", "prefix length 0..32"},
        {"10/0x8", "prefix length 0..32"},
        {"/8", "subnet ADDRESS/LENGTH"},
        {"10/8/8", "subnet ADDRESS/LENGTH"},
        {"http://x", "subnet ADDRESS/LENGTH"},
        {"256/8", "IPv4 address or prefix"},
        {"1.2.3.4.5/8", "IPv4 address or prefix"},
        {"1.2.3.4./8", "IPv4 address or prefix"}, /* Qt: 5 parts before the trailing dot */
        {"1..2/8", "IPv4 address or prefix"},
        {"./8", "IPv4 address or prefix"},
        {"10../8", "IPv4 address or prefix"},
        {"foo/8", "IPv4 address or prefix"},
        {"1.2.3.0256/8", "IPv4 address or prefix"},
        {"10.0.0.0/255.0.255.0", "contiguous netmask"},
        {"10.0.0.0/255.0.0", "contiguous netmask"},
        {"fe80::/129", "IPv6 prefix length 0..128"},
        {"fc00::/1.2.3.4", "IPv6 prefix length 0..128"},
        {"fe80:::/64", "IPv6 address"},
        {"fe80::1%eth0/64", "IPv6 address"},
        {"a*b*c", "one '*'"},
        {"**", "one '*'"},
        {"foo bar", "one '*'"},
        {"[::1]", "one '*'"},
    };
    for (size_t i = 0; i < ZH_ARRAY_SIZE(bad); i++) {
        struct zh_buf err = {0};
        if (zh_policy_check_pattern(bad[i].pattern, &err) == 0)
            fail_msg("'%s' accepted", bad[i].pattern);
        if (!strstr(zh_buf_cstr(&err), bad[i].expect))
            fail_msg("'%s': '%s' lacks '%s'", bad[i].pattern, zh_buf_cstr(&err), bad[i].expect);
        zh_buf_free(&err);
        /* the policy refuses exactly what the grammar refuses, naming the pattern */
        if (!*bad[i].pattern)
            continue; /* an empty list entry is dropped, as Zurl does */
        const char *list[1] = {bad[i].pattern};
        struct zh_policy_config cfg = {
            .defpolicy = ZH_POLICY_DEFAULT_ALLOW, .deny = list, .deny_count = 1};
        assert_null(zh_policy_new(&cfg, &err));
        assert_non_null(strstr(zh_buf_cstr(&err), bad[i].expect));
        assert_non_null(strstr(zh_buf_cstr(&err), bad[i].pattern));
        zh_buf_free(&err);
    }
}

/* Every accepted form matches in deny (defpolicy=allow) and in allow (defpolicy=deny), on the
 * address and on the IP-literal host name. */
static void every_form_matches_in_allow_and_deny(void **state)
{
    (void)state;
    static const struct {
        const char *pattern, *in, *out;
    } cases[] = {
        {"127/8", "127.0.0.1", "128.0.0.1"},
        {"127.1/16", "127.1.200.3", "127.0.0.1"},
        {"127.0.0/24", "127.0.0.2", "127.0.1.1"},
        {"10/8", "10.1.2.3", "11.1.2.3"},
        {"172.16/12", "172.20.0.1", "172.32.0.1"},
        {"127.1./16", "127.1.0.1", "127.2.0.1"},
        {"1.2.3./24", "1.2.3.9", "1.2.4.9"},
        {"127.0.0.0/8", "127.9.9.9", "126.0.0.1"},
        {"127.1.0.0/255.255.0.0", "127.1.0.1", "127.0.0.1"},
        {"127.0.0.2", "127.0.0.2", "127.0.0.1"},
        {"127.1.*", "127.1.0.1", "127.0.0.1"},
        {"*.0.2", "127.0.0.2", "127.0.0.1"},
        {"::1/128", "::1", "::2"},
        {"::1", "::1", "::2"},
        {"::ffff:127.0.0.0/104", "::ffff:127.0.0.1", "::ffff:10.0.0.1"},
        {"127/8", "::ffff:127.0.0.1", "::ffff:10.0.0.1"}, /* mapped: its IPv4 form too */
        {"0127.000.0.1/32", "127.0.0.1", "127.0.0.2"},    /* decimal with leading zeros, as Qt */
    };
    for (size_t i = 0; i < ZH_ARRAY_SIZE(cases); i++) {
        struct zh_policy *deny = make(ZH_POLICY_DEFAULT_ALLOW, NULL, cases[i].pattern, true, false);
        struct zh_policy *allow = make(ZH_POLICY_DEFAULT_DENY, cases[i].pattern, NULL, true, false);
        char lit[64];
        snprintf(lit, sizeof(lit), strchr(cases[i].in, ':') ? "[%s]" : "%s", cases[i].in);
        if (addr(deny, NULL, cases[i].in, NULL) != DENY ||
            zh_policy_check_name(deny, lit, NULL) != DENY)
            fail_msg("deny=%s must deny %s", cases[i].pattern, cases[i].in);
        if (addr(allow, NULL, cases[i].in, NULL) != ALLOW ||
            zh_policy_check_name(allow, lit, NULL) != ALLOW)
            fail_msg("allow=%s must allow %s", cases[i].pattern, cases[i].in);
        if (addr(deny, NULL, cases[i].out, NULL) != ALLOW)
            fail_msg("deny=%s must not deny %s", cases[i].pattern, cases[i].out);
        if (addr(allow, NULL, cases[i].out, NULL) != DENY)
            fail_msg("allow=%s must not allow %s", cases[i].pattern, cases[i].out);
        zh_policy_free(deny);
        zh_policy_free(allow);
    }
}

/* A connect() to the unspecified address reaches this host: 0.0.0.0, :: and ::ffff:0.0.0.0 are
 * also matched as the loopback address, so a rule for loopback covers http://0:PORT/. */
static void unspecified_address_is_judged_as_loopback(void **state)
{
    (void)state;
    static const char *const deny[] = {"127/8", "127.0.0.1", "127.*", "127.0.0.0/255.0.0.0"};
    for (size_t i = 0; i < ZH_ARRAY_SIZE(deny); i++) {
        struct zh_policy *p = make(ZH_POLICY_DEFAULT_ALLOW, NULL, deny[i], true, false);
        const char *why = NULL;
        if (addr(p, NULL, "0.0.0.0", &why) != DENY ||
            zh_policy_check_name(p, "0.0.0.0", NULL) != DENY ||
            addr(p, NULL, "::ffff:0.0.0.0", NULL) != DENY)
            fail_msg("deny=%s must deny 0.0.0.0 and ::ffff:0.0.0.0", deny[i]);
        assert_non_null(strstr(why, deny[i]));
        /* only the unspecified address itself: 0.0.0.1 does not reach this host */
        assert_int_equal(ALLOW, addr(p, NULL, "0.0.0.1", NULL));
        zh_policy_free(p);
    }
    struct zh_policy *p = make(ZH_POLICY_DEFAULT_ALLOW, NULL, "::1", true, false);
    assert_int_equal(DENY, addr(p, NULL, "::", NULL));
    assert_int_equal(DENY, zh_policy_check_name(p, "[::]", NULL));
    assert_int_equal(ALLOW, addr(p, NULL, "::2", NULL));
    zh_policy_free(p);
    /* an allow rule for loopback covers it too (it is where the connection goes) */
    p = make(ZH_POLICY_DEFAULT_DENY, "127.0.0.1", NULL, true, false);
    assert_int_equal(ALLOW, addr(p, NULL, "0.0.0.0", NULL));
    zh_policy_free(p);
    /* the default policy denies it as this-network / unspecified either way */
    p = make(ZH_POLICY_DEFAULT_UNSET, NULL, NULL, true, false);
    assert_int_equal(DENY, addr(p, NULL, "0.0.0.0", NULL));
    assert_int_equal(DENY, addr(p, NULL, "::", NULL));
    zh_policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(default_denies_internal_ipv4),
        cmocka_unit_test(default_denies_internal_ipv6_and_embedded_ipv4),
        cmocka_unit_test(allow_ipv6_off_denies_every_ipv6_address),
        cmocka_unit_test(default_allow_rules_open_exceptions),
        cmocka_unit_test(name_check_of_ip_literals_uses_the_address_rules),
        cmocka_unit_test(normalize_numeric_hosts_like_curl),
        cmocka_unit_test(zurl_defpolicy_allow_keeps_zurl_meaning),
        cmocka_unit_test(zurl_defpolicy_deny_needs_an_allow_and_no_deny),
        cmocka_unit_test(deny_out_internal_adds_the_internal_set_to_zurl_configs),
        cmocka_unit_test(subnet_pattern_forms),
        cmocka_unit_test(wildcard_and_exact_patterns),
        cmocka_unit_test(malformed_patterns_are_rejected),
        cmocka_unit_test(other_families_are_denied_and_is_internal_names_ranges),
        cmocka_unit_test(grammar_accepts_every_zurl_form),
        cmocka_unit_test(grammar_refusals_say_what_was_expected),
        cmocka_unit_test(every_form_matches_in_allow_and_deny),
        cmocka_unit_test(unspecified_address_is_judged_as_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
