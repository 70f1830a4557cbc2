#include "client/policy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "shared/proto/mem.h"

/* One allow or deny pattern, classified once. A subnet pattern only matches addresses; a pattern
 * whose subnet form does not parse would fall back to string matching in Zurl, but such patterns
 * are rejected up front, as the config loader does. */
enum pat_kind {
    PAT_EXACT,  /* case-insensitive equality */
    PAT_WILD,   /* prefix*suffix, case-insensitive */
    PAT_SUBNET, /* address within net/bits of the same family */
};

struct pattern {
    enum pat_kind kind;
    char *text;   /* the trimmed pattern */
    char *reason; /* "deny rule 'x'" / "allowed by rule 'x'" */
    size_t star;  /* PAT_WILD: index of the '*' */
    int family;   /* PAT_SUBNET: AF_INET or AF_INET6 */
    uint8_t net[16];
    unsigned bits;
};

struct plist {
    struct pattern *v;
    size_t n;
};

struct zh_policy {
    enum zh_policy_default defpolicy;
    bool allow_ipv6;
    bool internal_set; /* the internal deny set applies (default policy or deny_out_internal) */
    struct plist allow;
    struct plist deny;
};

/* ---- subnets ---- */

/* Digits only (leading zeros allowed, as QString::toUInt() reads them); at most max. */
static int parse_bits(const char *m, unsigned max, unsigned *out)
{
    unsigned long v = 0;
    if (!*m)
        return -1;
    for (; *m; m++) {
        if (!isdigit((unsigned char)*m))
            return -1;
        v = v * 10 + (unsigned long)(*m - '0');
        if (v > max)
            return -1;
    }
    *out = (unsigned)v;
    return 0;
}

/* QHostAddress::parseSubnet(), which Zurl uses for a pattern with a '/': "v6/len" for IPv6;
 * "a[.b[.c[.d]]][.]/len" or ".../dotted.netmask" for IPv4 (1 to 4 decimal parts 0..255 before
 * an optional trailing dot, missing parts are zero; a contiguous netmask). Host bits are
 * cleared. Returns 0, or -1 with what was expected in why. */
static int parse_subnet(const char *s, struct pattern *pt, struct zh_buf *why)
{
    const char *slash = strchr(s, '/');
    const char *mask = slash + 1;
    size_t netlen = (size_t)(slash - s);
    char net[64];
    if (netlen == 0 || netlen >= sizeof(net) || strchr(mask, '/')) {
        zh_buf_puts(why, "expected a subnet ADDRESS/LENGTH such as 10/8 or 192.168.0.0/16");
        return -1;
    }
    memcpy(net, s, netlen);
    net[netlen] = '\0';

    unsigned bits = 0;
    memset(pt->net, 0, sizeof(pt->net));
    if (strchr(net, ':')) {
        struct in6_addr a;
        if (inet_pton(AF_INET6, net, &a) != 1) {
            zh_buf_puts(why, "expected an IPv6 address before '/'");
            return -1;
        }
        if (parse_bits(mask, 128, &bits) < 0) {
            zh_buf_puts(why, "expected an IPv6 prefix length 0..128 after '/'");
            return -1;
        }
        pt->family = AF_INET6;
        memcpy(pt->net, &a, 16);
    } else {
        /* Split at the dots; more than 4 pieces is refused before a trailing empty one is
         * dropped, as Qt does ("1.2.3./8" is fine, "1.2.3.4./8" is not). */
        const char *part[5];
        size_t plen[5];
        int n = 0;
        const char *p = net;
        bool ok = true;
        for (;;) {
            const char *dot = strchr(p, '.');
            if (n == 5) {
                ok = false;
                break;
            }
            part[n] = p;
            plen[n] = dot ? (size_t)(dot - p) : strlen(p);
            n++;
            if (!dot)
                break;
            p = dot + 1;
        }
        if (ok && n > 4)
            ok = false;
        if (ok && n > 1 && plen[n - 1] == 0)
            n--; /* the trailing dot */
        uint32_t addr = 0;
        for (int i = 0; ok && i < n; i++) {
            unsigned v = 0;
            ok = plen[i] >= 1; /* decimal, leading zeros allowed ("010" is 10, as in Qt) */
            for (size_t k = 0; ok && k < plen[i]; k++) {
                ok = isdigit((unsigned char)part[i][k]);
                v = v * 10 + (unsigned)(part[i][k] - '0');
                ok = ok && v <= 255;
            }
            addr = (addr << 8) | v;
        }
        if (!ok) {
            zh_buf_puts(why,
                        "expected an IPv4 address or prefix (1 to 4 numbers 0..255) before '/'");
            return -1;
        }
        addr = n < 4 ? addr << (8 * (4 - n)) : addr;
        if (strchr(mask, '.')) {
            struct in_addr m;
            uint32_t h = 0;
            bool good = inet_pton(AF_INET, mask, &m) == 1;
            if (good) {
                h = ntohl(m.s_addr);
                good = (h & (~h >> 1)) == 0; /* the one bits are contiguous from the top */
            }
            if (!good) {
                zh_buf_puts(why, "expected a contiguous netmask such as 255.255.0.0 after '/'");
                return -1;
            }
            while (bits < 32 && (h & (UINT32_C(0x80000000) >> bits)))
                bits++;
        } else if (parse_bits(mask, 32, &bits) < 0) {
            zh_buf_puts(why, "expected a prefix length 0..32 after '/'");
            return -1;
        }
        pt->family = AF_INET;
        uint32_t be = htonl(addr);
        memcpy(pt->net, &be, 4);
    }
    pt->bits = bits;
    /* Clear the host bits so the match is a plain prefix comparison. */
    unsigned len = pt->family == AF_INET ? 4 : 16;
    for (unsigned i = 0; i < len; i++) {
        unsigned keep = pt->bits > i * 8 ? pt->bits - i * 8 : 0;
        if (keep < 8)
            pt->net[i] &= (uint8_t)(0xff00u >> keep);
    }
    return 0;
}

static bool prefix_match(const uint8_t *a, const uint8_t *net, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;
    if (memcmp(a, net, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t m = (uint8_t)(0xff00u >> rest);
    return (a[full] & m) == (net[full] & m);
}

/* ---- patterns ---- */

/* The one pattern grammar (the config loader checks with it too, zh_policy_check_pattern()):
 * a subnet when there is a '/', else a name or address with at most one '*' (Zurl splits at the
 * first '*' only, so a second one could never match), of the characters a host name or an
 * address is written with. Fills pt's kind and match data (not text or reason). */
static int parse_pattern(const char *text, struct pattern *pt, struct zh_buf *why)
{
    if (!*text) {
        zh_buf_puts(why,
                    "expected a host name, a one-* wildcard or a subnet, not an empty pattern");
        return -1;
    }
    if (strchr(text, '/')) {
        pt->kind = PAT_SUBNET;
        return parse_subnet(text, pt, why);
    }
    int stars = 0;
    for (const char *c = text; *c; c++) {
        unsigned char ch = (unsigned char)*c;
        if (ch == '*')
            stars++;
        else if (!isalnum(ch) && ch != '.' && ch != '-' && ch != '_' && ch != ':')
            stars = 2;
    }
    if (stars > 1) {
        zh_buf_puts(why, "expected a host name, an address, a pattern with one '*' (such as "
                         "*.local or 10.*) or a subnet (such as 10/8)");
        return -1;
    }
    const char *star = strchr(text, '*');
    pt->kind = star ? PAT_WILD : PAT_EXACT;
    pt->star = star ? (size_t)(star - text) : 0;
    return 0;
}

int zh_policy_check_pattern(const char *pattern, struct zh_buf *err)
{
    struct pattern pt;
    memset(&pt, 0, sizeof(pt));
    return parse_pattern(pattern, &pt, err);
}

static int add_patterns(struct plist *l, const char *const *in, size_t count, bool deny,
                        struct zh_buf *err)
{
    l->v = count ? zh_calloc(count, sizeof(*l->v)) : NULL;
    for (size_t i = 0; i < count; i++) {
        const char *s = in[i] ? in[i] : "";
        while (isspace((unsigned char)*s))
            s++;
        size_t n = strlen(s);
        while (n > 0 && isspace((unsigned char)s[n - 1]))
            n--;
        if (n == 0)
            continue; /* Zurl's cleanStringList drops empty entries */
        struct pattern *pt = &l->v[l->n];
        pt->text = zh_strndup(s, n);
        struct zh_buf why = {0};
        if (parse_pattern(pt->text, pt, &why) < 0) {
            zh_buf_printf(err, "%s pattern '%s': %s", deny ? "deny" : "allow", pt->text,
                          zh_buf_cstr(&why));
            zh_buf_free(&why);
            zh_free(pt->text);
            return -1;
        }
        zh_buf_free(&why);
        struct zh_buf r = {0};
        zh_buf_printf(&r, "%s '%s'", deny ? "deny rule" : "allowed by rule", pt->text);
        pt->reason = zh_strdup(zh_buf_cstr(&r));
        zh_buf_free(&r);
        l->n++;
    }
    return 0;
}

static void free_patterns(struct plist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        zh_free(l->v[i].text);
        zh_free(l->v[i].reason);
    }
    zh_free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* What a pattern is matched against: the text (a name, or an address's text form) and, when it is
 * an address, its bytes. */
struct subject {
    const char *text;
    int family; /* 0 for a name */
    uint8_t bytes[16];
};

/* Zurl's matchExp(). */
static bool pattern_match(const struct pattern *pt, const struct subject *s)
{
    switch (pt->kind) {
    case PAT_SUBNET:
        return s->family == pt->family && prefix_match(s->bytes, pt->net, pt->bits);
    case PAT_WILD: {
        size_t tl = strlen(s->text);
        size_t pl = pt->star;
        size_t sl = strlen(pt->text) - pt->star - 1;
        return tl >= pl && tl >= sl && strncasecmp(s->text, pt->text, pl) == 0 &&
               strcasecmp(s->text + tl - sl, pt->text + pt->star + 1) == 0;
    }
    case PAT_EXACT:
        return strcasecmp(s->text, pt->text) == 0;
    }
    return false;
}

/* The first pattern of l matching any of the n subjects, or NULL. */
static const struct pattern *list_match(const struct plist *l, const struct subject *s, size_t n)
{
    for (size_t i = 0; i < l->n; i++) {
        for (size_t k = 0; k < n; k++) {
            if (pattern_match(&l->v[i], &s[k]))
                return &l->v[i];
        }
    }
    return NULL;
}

struct zh_policy *zh_policy_new(const struct zh_policy_config *cfg, struct zh_buf *err)
{
    struct zh_policy *p = zh_calloc(1, sizeof(*p));
    p->defpolicy = cfg->defpolicy;
    p->allow_ipv6 = cfg->allow_ipv6;
    p->internal_set = cfg->defpolicy == ZH_POLICY_DEFAULT_UNSET || cfg->deny_out_internal;
    if (cfg->defpolicy != ZH_POLICY_DEFAULT_UNSET && cfg->defpolicy != ZH_POLICY_DEFAULT_ALLOW &&
        cfg->defpolicy != ZH_POLICY_DEFAULT_DENY) {
        zh_buf_puts(err, "defpolicy: expected allow or deny");
        zh_policy_free(p);
        return NULL;
    }
    if (add_patterns(&p->allow, cfg->allow, cfg->allow_count, false, err) < 0 ||
        add_patterns(&p->deny, cfg->deny, cfg->deny_count, true, err) < 0) {
        zh_policy_free(p);
        return NULL;
    }
    return p;
}

void zh_policy_free(struct zh_policy *p)
{
    if (!p)
        return;
    free_patterns(&p->allow);
    free_patterns(&p->deny);
    zh_free(p);
}

/* ---- the internal deny set ---- */

struct range4 {
    uint32_t net;
    unsigned bits;
    const char *what;
};

/* Most specific first: the first match names the range. */
static const struct range4 internal4[] = {
    {0xa9fea9fe, 32, "metadata"},      /* 169.254.169.254: AWS, GCP, Azure, ... */
    {0x646464c8, 32, "metadata"},      /* 100.100.100.200: Alibaba Cloud */
    {0xc00000c0, 32, "metadata"},      /* 192.0.0.192: Oracle Cloud */
    {0xffffffff, 32, "broadcast"},     /* 255.255.255.255 */
    {0x00000000, 8, "this-network"},   /* 0.0.0.0/8 */
    {0x0a000000, 8, "private"},        /* 10/8 */
    {0x64400000, 10, "cgnat"},         /* 100.64/10 */
    {0x7f000000, 8, "loopback"},       /* 127/8 */
    {0xa9fe0000, 16, "link-local"},    /* 169.254/16 */
    {0xac100000, 12, "private"},       /* 172.16/12 */
    {0xc0000000, 24, "reserved"},      /* 192.0.0/24 IETF protocol assignments */
    {0xc0000200, 24, "documentation"}, /* 192.0.2/24 TEST-NET-1 */
    {0xc0586300, 24, "reserved"},      /* 192.88.99/24 6to4 relay anycast */
    {0xc0a80000, 16, "private"},       /* 192.168/16 */
    {0xc6120000, 15, "benchmarking"},  /* 198.18/15 */
    {0xc6336400, 24, "documentation"}, /* 198.51.100/24 TEST-NET-2 */
    {0xcb007100, 24, "documentation"}, /* 203.0.113/24 TEST-NET-3 */
    {0xe0000000, 4, "multicast"},      /* 224/4 */
    {0xf0000000, 4, "reserved"},       /* 240/4 */
};

static const char *internal_v4(uint32_t a)
{
    for (size_t i = 0; i < ZH_ARRAY_SIZE(internal4); i++) {
        uint32_t m = internal4[i].bits ? UINT32_MAX << (32 - internal4[i].bits) : 0;
        if ((a & m) == internal4[i].net)
            return internal4[i].what;
    }
    return NULL;
}

struct range6 {
    uint8_t net[16];
    unsigned bits;
    const char *what;
};

static const struct range6 internal6[] = {
    {{0}, 128, "unspecified"},                                           /* :: */
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, "loopback"}, /* ::1 */
    {{0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54}, 128, "metadata"},
    {{0}, 96, "reserved"},                                     /* ::/96 */
    {{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48, "nat64-local"}, /* 64:ff9b:1::/48 */
    {{0x01, 0x00}, 64, "discard"},                             /* 100::/64 */
    {{0x20, 0x01, 0x0d, 0xb8}, 32, "documentation"},           /* 2001:db8::/32 */
    {{0xfc}, 7, "ipv6-unique-local"},                          /* fc00::/7 */
    {{0xfe, 0x80}, 10, "link-local"},                          /* fe80::/10 */
    {{0xfe, 0xc0}, 10, "site-local"},                          /* fec0::/10 */
    {{0xff}, 8, "multicast"},                                  /* ff00::/8 */
};

/* The IPv4 address embedded in an IPv4-mapped (::ffff:0:0/96), NAT64 (64:ff9b::/96) or 6to4
 * (2002::/16) address. Returns true and sets *v4 (host order). */
static bool embedded_v4(const uint8_t *a, uint32_t *v4)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0) {
        *v4 = (uint32_t)a[12] << 24 | (uint32_t)a[13] << 16 | (uint32_t)a[14] << 8 | a[15];
        return true;
    }
    if (a[0] == 0x20 && a[1] == 0x02) {
        *v4 = (uint32_t)a[2] << 24 | (uint32_t)a[3] << 16 | (uint32_t)a[4] << 8 | a[5];
        return true;
    }
    return false;
}

static const char *internal_v6(const uint8_t *a)
{
    uint32_t v4;
    if (embedded_v4(a, &v4))
        return internal_v4(v4);
    for (size_t i = 0; i < ZH_ARRAY_SIZE(internal6); i++) {
        if (prefix_match(a, internal6[i].net, internal6[i].bits))
            return internal6[i].what;
    }
    return NULL;
}

bool zh_policy_is_internal(const struct sockaddr *sa, const char **what)
{
    const char *w = NULL;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        w = internal_v4(ntohl(in->sin_addr.s_addr));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        w = internal_v6(in6->sin6_addr.s6_addr);
    } else {
        w = "unsupported-family";
    }
    if (what)
        *what = w;
    return w != NULL;
}

/* ---- checks ---- */

/* The forms an address is matched as (at most MAX_SUBJECTS):
 *   - its own text and bytes;
 *   - for an IPv4-mapped IPv6 address, the embedded IPv4 address too (so `10.*` or 10/8 cannot be
 *     bypassed with ::ffff:10.0.0.1);
 *   - for an unspecified address (0.0.0.0, ::, ::ffff:0.0.0.0), the loopback address too: a
 *     connect() to it reaches this host (Linux), so `deny=127/8` must cover http://0:PORT/. */
#define MAX_SUBJECTS 4

static void set_v4(struct subject *s, const uint8_t *a4, char *t)
{
    s->family = AF_INET;
    memcpy(s->bytes, a4, 4);
    inet_ntop(AF_INET, a4, t, 64);
    s->text = t;
}

static void set_v6(struct subject *s, const uint8_t *a6, char *t)
{
    s->family = AF_INET6;
    memcpy(s->bytes, a6, 16);
    inet_ntop(AF_INET6, a6, t, 64);
    s->text = t;
}

static size_t addr_subjects(const struct sockaddr *sa, struct subject s[MAX_SUBJECTS],
                            char t[MAX_SUBJECTS][64])
{
    static const uint8_t any4[4] = {0, 0, 0, 0};
    static const uint8_t lo4[4] = {127, 0, 0, 1};
    static const uint8_t lo6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t any6[16] = {0};
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    size_t n = 0;
    const uint8_t *v4 = NULL;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        v4 = (const uint8_t *)&in->sin_addr;
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        const uint8_t *a6 = in6->sin6_addr.s6_addr;
        set_v6(&s[n], a6, t[n]);
        n++;
        if (memcmp(a6, any6, 16) == 0) {
            set_v6(&s[n], lo6, t[n]);
            n++;
        }
        if (memcmp(a6, mapped, 12) == 0)
            v4 = a6 + 12;
    }
    if (v4) {
        set_v4(&s[n], v4, t[n]);
        n++;
        if (memcmp(v4, any4, 4) == 0) {
            set_v4(&s[n], lo4, t[n]);
            n++;
        }
    }
    return n;
}

/* Zurl's isAllowed() over a set of subjects. */
static enum zh_policy_verdict zurl_verdict(const struct zh_policy *p, const struct subject *s,
                                           size_t n, const char **reason)
{
    const struct pattern *a = list_match(&p->allow, s, n);
    const struct pattern *d = list_match(&p->deny, s, n);
    if (p->defpolicy == ZH_POLICY_DEFAULT_DENY) {
        if (a && !d) {
            *reason = a->reason;
            return ZH_POLICY_ALLOW;
        }
        *reason = d ? d->reason : "not allowed by any rule (defpolicy=deny)";
        return ZH_POLICY_DENY;
    }
    /* defpolicy allow (or unset): an allow rule overrides a deny rule. */
    if (a) {
        *reason = a->reason;
        return ZH_POLICY_ALLOW;
    }
    if (d) {
        *reason = d->reason;
        return ZH_POLICY_DENY;
    }
    *reason = "default allow";
    return ZH_POLICY_ALLOW;
}

/* The host without brackets, into buf. */
static const char *unbracket(const char *host, char *buf, size_t len)
{
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < len) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        return buf;
    }
    return host;
}

static bool host_allowed_by_rule(const struct zh_policy *p, const char *host, const char **reason)
{
    if (!host || !*host)
        return false;
    char buf[256];
    struct subject s = {.text = unbracket(host, buf, sizeof(buf))};
    const struct pattern *a = list_match(&p->allow, &s, 1);
    if (a)
        *reason = a->reason;
    return a != NULL;
}

enum zh_policy_verdict zh_policy_check_addr(const struct zh_policy *p, const char *host,
                                            const struct sockaddr *sa, const char **reason)
{
    const char *why = NULL;
    enum zh_policy_verdict v;
    struct subject s[MAX_SUBJECTS];
    char t[MAX_SUBJECTS][64];
    if (!reason)
        reason = &why;
    if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) {
        *reason = "unsupported address family";
        return ZH_POLICY_DENY;
    }
    if (sa->sa_family == AF_INET6 && !p->allow_ipv6) {
        *reason = "IPv6 address (allow_ipv6 is off)";
        return ZH_POLICY_DENY;
    }
    size_t n = addr_subjects(sa, s, t);
    v = zurl_verdict(p, s, n, reason);
    if (v == ZH_POLICY_DENY || !p->internal_set)
        return v;
    /* The internal set: an allow rule for this address (already found above, as *reason says) or
     * for the host name opens it; otherwise it is denied. */
    if (list_match(&p->allow, s, n))
        return ZH_POLICY_ALLOW;
    const char *what;
    if (!zh_policy_is_internal(sa, &what))
        return ZH_POLICY_ALLOW;
    if (host_allowed_by_rule(p, host, reason))
        return ZH_POLICY_ALLOW;
    static const struct {
        const char *what, *reason;
    } names[] = {
        {"metadata", "internal address (metadata)"},
        {"broadcast", "internal address (broadcast)"},
        {"this-network", "internal address (this-network)"},
        {"private", "internal address (private)"},
        {"cgnat", "internal address (cgnat)"},
        {"loopback", "internal address (loopback)"},
        {"link-local", "internal address (link-local)"},
        {"reserved", "internal address (reserved)"},
        {"documentation", "internal address (documentation)"},
        {"benchmarking", "internal address (benchmarking)"},
        {"multicast", "internal address (multicast)"},
        {"unspecified", "internal address (unspecified)"},
        {"nat64-local", "internal address (nat64-local)"},
        {"discard", "internal address (discard)"},
        {"ipv6-unique-local", "internal address (ipv6-unique-local)"},
        {"site-local", "internal address (site-local)"},
    };
    *reason = "internal address";
    for (size_t i = 0; i < ZH_ARRAY_SIZE(names); i++) {
        if (strcmp(names[i].what, what) == 0)
            *reason = names[i].reason;
    }
    return ZH_POLICY_DENY;
}

enum zh_policy_verdict zh_policy_check_name(const struct zh_policy *p, const char *host,
                                            const char **reason)
{
    const char *why = NULL;
    if (!reason)
        reason = &why;
    char buf[256];
    const char *h = unbracket(host, buf, sizeof(buf));
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } u;
    memset(&u, 0, sizeof(u));
    if (inet_pton(AF_INET, h, &u.in.sin_addr) == 1) {
        u.in.sin_family = AF_INET;
        return zh_policy_check_addr(p, NULL, &u.sa, reason);
    }
    if (inet_pton(AF_INET6, h, &u.in6.sin6_addr) == 1) {
        u.in6.sin6_family = AF_INET6;
        return zh_policy_check_addr(p, NULL, &u.sa, reason);
    }
    struct subject s = {.text = h};
    return zurl_verdict(p, &s, 1, reason);
}

/* ---- host normalisation ---- */

/* One part of a numeric IPv4 host: decimal, 0-prefixed octal or 0x-prefixed hex, as inet_aton()
 * and curl's ipv4_normalize() read it. Returns 0 and *v, or -1. */
static int ipv4_part(const char *s, size_t n, uint64_t *v)
{
    unsigned base = 10;
    size_t i = 0;
    if (n == 0)
        return -1;
    if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        i = 2;
        if (n == 2)
            return -1;
    } else if (n >= 2 && s[0] == '0') {
        base = 8;
        i = 1;
    }
    uint64_t x = 0;
    for (; i < n; i++) {
        unsigned d;
        unsigned char c = (unsigned char)s[i];
        if (isdigit(c))
            d = (unsigned)(c - '0');
        else if (base == 16 && isxdigit(c))
            d = (unsigned)(tolower(c) - 'a' + 10);
        else
            return -1;
        if (d >= base)
            return -1;
        x = x * base + d;
        if (x > UINT32_MAX)
            return -1;
    }
    *v = x;
    return 0;
}

/* Parse the numeric IPv4 forms; returns 0 and the address (host order), or -1. */
static int parse_ipv4_numeric(const char *s, uint32_t *out)
{
    uint64_t part[4];
    int n = 0;
    const char *p = s;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (n == 4 || ipv4_part(p, len, &part[n]) < 0)
            return -1;
        n++;
        if (!dot)
            break;
        p = dot + 1;
    }
    uint64_t a = 0;
    for (int i = 0; i < n - 1; i++) {
        if (part[i] > 255)
            return -1;
        a |= part[i] << (8 * (3 - i));
    }
    unsigned rest_bits = (unsigned)(8 * (4 - (n - 1)));
    if (rest_bits < 32 && part[n - 1] >> rest_bits)
        return -1;
    a |= part[n - 1];
    *out = (uint32_t)a;
    return 0;
}

int zh_policy_normalize_host(const char *host, char *out, size_t outlen)
{
    size_t n = strlen(host);
    char tmp[INET6_ADDRSTRLEN + 64];
    if (n == 0)
        return -EINVAL;
    if (host[0] == '[') {
        /* [v6] or [v6%zone]: canonical text without brackets or zone. */
        if (n < 3 || host[n - 1] != ']' || n - 2 >= sizeof(tmp))
            return -EINVAL;
        memcpy(tmp, host + 1, n - 2);
        tmp[n - 2] = '\0';
        char *pct = strchr(tmp, '%');
        if (pct)
            *pct = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return -EINVAL;
        inet_ntop(AF_INET6, &a6, tmp, sizeof(tmp));
    } else {
        struct in6_addr a6;
        uint32_t v4;
        if (n < sizeof(tmp) && strchr(host, ':') && inet_pton(AF_INET6, host, &a6) == 1) {
            inet_ntop(AF_INET6, &a6, tmp, sizeof(tmp));
        } else if (parse_ipv4_numeric(host, &v4) == 0) {
            snprintf(tmp, sizeof(tmp), "%u.%u.%u.%u", v4 >> 24, (v4 >> 16) & 255, (v4 >> 8) & 255,
                     v4 & 255);
        } else {
            if (n >= outlen)
                return -ENOSPC;
            for (size_t i = 0; i < n; i++)
                out[i] = (char)tolower((unsigned char)host[i]);
            out[n] = '\0';
            return (int)n;
        }
    }
    size_t len = strlen(tmp);
    if (len >= outlen)
        return -ENOSPC;
    memcpy(out, tmp, len + 1);
    return (int)len;
}
