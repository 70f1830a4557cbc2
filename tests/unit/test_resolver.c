/* link: zh_client */
/* Unit tests for client/resolver.c with real c-ares traffic on loopback: a small DNS responder runs
 * in a thread of this process on a UDP socket bound to 127.0.0.1 (never the machine's resolver)
 * and answers from a table — A/AAAA records with TTLs, a per-name sequence of answers, NXDOMAIN,
 * SERVFAIL, REFUSED, silence and deliberately malformed packets — while counting the queries it
 * sees. The tests check answers, the TTL cache (hits without a query, expiry, clamping, negative
 * caching, eviction), shared lookups, errors and timeouts, hostile answers, cancellation, IP
 * literals, freeing the resolver from its own callback, and that every callback comes from the
 * loop. A watchdog timer and alarm() turn a hang into a failure. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/resolver.h"
#include "shared/proto/mem.h"
#include "harness.h"
#include "shared/rt/loop.h"

/* ---- the DNS responder ---- */

enum kind {
    K_ADDR,      /* the records below (none of the asked type: NOERROR, no data) */
    K_NXDOMAIN,  /* rcode 3 */
    K_SERVFAIL,  /* rcode 2 */
    K_REFUSED,   /* rcode 5 */
    K_DROP,      /* no reply */
    K_TRUNC,     /* 7 bytes of header */
    K_BADRDLEN,  /* rdlength runs past the end */
    K_PTRLOOP,   /* answer name points at itself */
    K_HUGECOUNT, /* ancount 65535, one record */
    K_BADRDATA,  /* A record with 3 bytes */
    K_GARBAGE,   /* right id, then junk */
    K_WRONGID,   /* good answer, other id */
};

#define MAX_V4 40

struct answer {
    enum kind kind;
    uint32_t ttl;
    int n4, n6;
    uint8_t v4[MAX_V4][4];
    uint8_t v6[4][16];
};

struct rule {
    char name[128];
    struct answer ans[2]; /* a sequence: query n gets ans[min(n, nans - 1)] */
    int nans;
    int served;
    int served6;
};

static struct {
    pthread_t thread;
    pthread_mutex_t lock;
    int fd, stop_pipe[2];
    uint16_t port;
    struct rule rules[16];
    int nrules;
    int total, total_aaaa;
} dns;

static struct rule *rule_find(const char *name)
{
    for (int i = 0; i < dns.nrules; i++) {
        if (strcasecmp(dns.rules[i].name, name) == 0)
            return &dns.rules[i];
    }
    return NULL;
}

/* Add (or replace) a rule; returns it for the caller to fill while holding no lock (the tests set
 * rules only while no query is in flight). */
static struct rule *dns_rule(const char *name)
{
    pthread_mutex_lock(&dns.lock);
    struct rule *r = rule_find(name);
    if (!r) {
        assert_true(dns.nrules < 16);
        r = &dns.rules[dns.nrules++];
    }
    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->nans = 1;
    pthread_mutex_unlock(&dns.lock);
    return r;
}

static void ans_v4(struct answer *a, const char *ip)
{
    assert_true(a->n4 < MAX_V4);
    assert_int_equal(1, inet_pton(AF_INET, ip, a->v4[a->n4++]));
}

static void ans_v6(struct answer *a, const char *ip)
{
    assert_true(a->n6 < 4);
    assert_int_equal(1, inet_pton(AF_INET6, ip, a->v6[a->n6++]));
}

static void rule_simple(const char *name, enum kind k)
{
    struct rule *r = dns_rule(name);
    r->ans[0].kind = k;
}

static void rule_a(const char *name, uint32_t ttl, const char *ip1, const char *ip2)
{
    struct rule *r = dns_rule(name);
    r->ans[0].ttl = ttl;
    ans_v4(&r->ans[0], ip1);
    if (ip2)
        ans_v4(&r->ans[0], ip2);
}

static int served(const char *name)
{
    pthread_mutex_lock(&dns.lock);
    struct rule *r = rule_find(name);
    int n = r ? r->served : -1;
    pthread_mutex_unlock(&dns.lock);
    return n;
}

static int total_queries(void)
{
    pthread_mutex_lock(&dns.lock);
    int n = dns.total;
    pthread_mutex_unlock(&dns.lock);
    return n;
}

static size_t put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return 2;
}

static size_t put_rr(uint8_t *p, unsigned type, uint32_t ttl, const uint8_t *data, unsigned len,
                     unsigned rdlen)
{
    size_t o = put16(p, 0xc00c);
    o += put16(p + o, type);
    o += put16(p + o, 1);
    p[o++] = (uint8_t)(ttl >> 24);
    p[o++] = (uint8_t)(ttl >> 16);
    p[o++] = (uint8_t)(ttl >> 8);
    p[o++] = (uint8_t)ttl;
    o += put16(p + o, rdlen);
    memcpy(p + o, data, len);
    return o + len;
}

/* Build the reply to one query; returns its length, or 0 for no reply. */
static size_t answer_query(const uint8_t *q, size_t qlen, uint8_t *out)
{
    if (qlen < 17 || (q[2] & 0x80))
        return 0;
    char name[256];
    size_t pos = 12, nl = 0;
    while (pos < qlen && q[pos] != 0) {
        unsigned l = q[pos++];
        if (l > 63 || pos + l > qlen || nl + l + 1 >= sizeof(name))
            return 0;
        if (nl)
            name[nl++] = '.';
        memcpy(name + nl, q + pos, l);
        nl += l;
        pos += l;
    }
    name[nl] = '\0';
    if (pos + 5 > qlen)
        return 0;
    pos++;
    unsigned qtype = (unsigned)q[pos] << 8 | q[pos + 1];
    size_t qend = pos + 4; /* end of the question */

    pthread_mutex_lock(&dns.lock);
    dns.total++;
    if (qtype == 28)
        dns.total_aaaa++;
    struct rule *r = rule_find(name);
    struct answer a = {.kind = K_NXDOMAIN};
    if (r) {
        int *cnt = qtype == 28 ? &r->served6 : &r->served;
        a = r->ans[*cnt < r->nans ? *cnt : r->nans - 1];
        (*cnt)++;
    }
    pthread_mutex_unlock(&dns.lock);

    unsigned rcode = 0, ancount = 0;
    uint8_t body[2048];
    size_t blen = 0;
    unsigned id = (unsigned)q[0] << 8 | q[1];
    static const uint8_t lo[4] = {127, 0, 0, 1};
    switch (a.kind) {
    case K_DROP:
        return 0;
    case K_NXDOMAIN:
        rcode = 3;
        break;
    case K_SERVFAIL:
        rcode = 2;
        break;
    case K_REFUSED:
        rcode = 5;
        break;
    case K_ADDR:
        if (qtype == 1) {
            for (int i = 0; i < a.n4; i++, ancount++)
                blen += put_rr(body + blen, 1, a.ttl, a.v4[i], 4, 4);
        } else if (qtype == 28) {
            for (int i = 0; i < a.n6; i++, ancount++)
                blen += put_rr(body + blen, 28, a.ttl, a.v6[i], 16, 16);
        }
        break;
    case K_TRUNC:
        memcpy(out, q, 7);
        return 7;
    case K_BADRDLEN:
        ancount = 1;
        blen = put_rr(body, qtype, 60, lo, 2, 400);
        break;
    case K_PTRLOOP:
        ancount = 1;
        blen = put_rr(body, 1, 60, lo, 4, 4);
        put16(body, 0xc000 | (unsigned)qend);
        break;
    case K_HUGECOUNT:
        ancount = 65535;
        blen = put_rr(body, 1, 60, lo, 4, 4);
        break;
    case K_BADRDATA:
        ancount = 1;
        blen = put_rr(body, 1, 60, lo, 3, 3);
        break;
    case K_GARBAGE:
        put16(out, id);
        for (size_t i = 2; i < 64; i++)
            out[i] = (uint8_t)(i * 37 + 11);
        return 64;
    case K_WRONGID:
        id = (id + 1) & 0xffff;
        ancount = 1;
        blen = put_rr(body, 1, 60, lo, 4, 4);
        break;
    }
    put16(out, id);
    put16(out + 2, 0x8180 | rcode | (q[2] & 0x01) << 8);
    put16(out + 4, 1);
    put16(out + 6, ancount);
    put16(out + 8, 0);
    put16(out + 10, 0);
    memcpy(out + 12, q + 12, qend - 12);
    memcpy(out + qend, body, blen);
    return qend + blen;
}

static void *dns_thread(void *arg)
{
    (void)arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = dns.fd, .events = POLLIN},
                              {.fd = dns.stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0)
            continue;
        if (p[1].revents)
            return NULL;
        uint8_t q[512], out[4096];
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(dns.fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
        if (n <= 0)
            continue;
        size_t len = answer_query(q, (size_t)n, out);
        if (len)
            sendto(dns.fd, out, len, 0, (struct sockaddr *)&from, fl);
    }
}

static void dns_start(void)
{
    memset(&dns, 0, sizeof(dns));
    pthread_mutex_init(&dns.lock, NULL);
    dns.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(dns.fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(0, bind(dns.fd, (struct sockaddr *)&a, sizeof(a)));
    socklen_t al = sizeof(a);
    assert_int_equal(0, getsockname(dns.fd, (struct sockaddr *)&a, &al));
    dns.port = ntohs(a.sin_port);
    assert_int_equal(0, pipe(dns.stop_pipe));
    assert_int_equal(0, pthread_create(&dns.thread, NULL, dns_thread, NULL));
}

static void dns_stop(void)
{
    assert_int_equal(1, write(dns.stop_pipe[1], "x", 1));
    pthread_join(dns.thread, NULL);
    close(dns.fd);
    close(dns.stop_pipe[0]);
    close(dns.stop_pipe[1]);
    pthread_mutex_destroy(&dns.lock);
}

/* ---- loop and resolver fixtures ---- */

static struct zh_loop *loop;
static struct zh_resolver *res;
static struct th_loop tl; /* the loop runner: loop = tl.loop, with its watchdog */
static char server[32];

#define MAX_RESULTS 16

/* What a callback saw. */
static struct result {
    int status;
    size_t count;
    union zh_sockaddr addrs[ZH_RESOLVER_MAX_ADDRS];
    bool called;
} results[MAX_RESULTS];
static int ncalled, want_calls;
static bool in_resolve; /* set while zh_resolver_resolve() runs: callbacks must not come then */

static void on_resolved(struct zh_resolve_req *req, int status, const union zh_sockaddr *addrs,
                        size_t count, void *data)
{
    (void)req;
    struct result *r = data;
    assert_false(in_resolve);
    assert_false(r->called);
    r->called = true;
    r->status = status;
    r->count = count;
    assert_true(count <= ZH_RESOLVER_MAX_ADDRS);
    if (count)
        memcpy(r->addrs, addrs, count * sizeof(addrs[0]));
    if (status == 0)
        assert_true(count >= 1);
    else
        assert_int_equal(0, count);
    if (++ncalled >= want_calls)
        zh_loop_stop(loop);
}

static struct zh_resolver *make_resolver(bool ipv6, unsigned cache_max, uint32_t ttl_max,
                                         uint32_t timeout_ms)
{
    const char *servers[1] = {server};
    struct zh_resolver_config cfg = {
        .servers = servers,
        .server_count = 1,
        .ipv6 = ipv6,
        .cache_max = cache_max,
        .ttl_min_s = 1,
        .ttl_max_s = ttl_max,
        .negative_ttl_s = 1,
        .timeout_ms = timeout_ms ? timeout_ms : 1000,
        .tries = 1,
    };
    struct zh_buf err = {0};
    struct zh_resolver *r = zh_resolver_new(loop, &cfg, &err);
    if (!r)
        fail_msg("zh_resolver_new: %s", zh_buf_cstr(&err));
    zh_buf_free(&err);
    return r;
}

static int setup(void **state)
{
    (void)state;
    alarm(30);
    dns_start();
    snprintf(server, sizeof(server), "127.0.0.1:%u", (unsigned)dns.port);
    th_loop_init(&tl, 8000);
    loop = tl.loop;
    res = make_resolver(false, 0, 300, 0);
    memset(results, 0, sizeof(results));
    ncalled = 0;
    want_calls = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    zh_resolver_free(res);
    /* One more turn lets deferred frees run; then nothing may be left registered. */
    th_loop_fini(&tl);
    loop = NULL;
    dns_stop();
    alarm(0);
    return 0;
}

/* Start a lookup into results[i]. */
static struct zh_resolve_req *resolve(struct zh_resolver *r, const char *host, int i)
{
    in_resolve = true;
    struct zh_resolve_req *q = zh_resolver_resolve(r, host, on_resolved, &results[i]);
    in_resolve = false;
    assert_non_null(q);
    return q;
}

/* Run the loop until n callbacks in all have come. */
static void wait_calls(int n)
{
    want_calls = n;
    if (ncalled < n)
        zh_loop_run(loop);
    assert_int_equal(n, ncalled);
}

/* Run the loop for ms milliseconds. */
static void run_for(uint64_t ms)
{
    want_calls = 1 << 30;
    th_run_for(&tl, ms);
}

static void assert_v4(const struct result *r, size_t i, const char *ip)
{
    char buf[INET6_ADDRSTRLEN];
    assert_true(i < r->count);
    assert_int_equal(AF_INET, r->addrs[i].sa.sa_family);
    assert_int_equal(0, r->addrs[i].in.sin_port);
    assert_string_equal(ip, zh_sockaddr_str(&r->addrs[i], buf, sizeof(buf)));
}

/* ---- tests ---- */

static void a_records_are_returned(void **state)
{
    (void)state;
    rule_a("a.test", 60, "192.0.2.1", "192.0.2.2");
    resolve(res, "a.test", 0);
    assert_false(results[0].called); /* never from inside resolve */
    wait_calls(1);
    assert_int_equal(0, results[0].status);
    assert_int_equal(2, results[0].count);
    assert_v4(&results[0], 0, "192.0.2.1");
    assert_v4(&results[0], 1, "192.0.2.2");
    assert_int_equal(1, served("a.test"));
    assert_int_equal(0, dns.total_aaaa); /* ipv6 off: no AAAA question */
}

static void cache_hit_sends_no_second_query(void **state)
{
    (void)state;
    rule_a("cached.test", 60, "192.0.2.9", NULL);
    resolve(res, "cached.test", 0);
    wait_calls(1);
    /* Case and a trailing dot do not matter. */
    resolve(res, "CACHED.test.", 1);
    assert_false(results[1].called);
    wait_calls(2);
    assert_int_equal(0, results[1].status);
    assert_v4(&results[1], 0, "192.0.2.9");
    assert_int_equal(1, served("cached.test"));
    struct zh_resolver_stats st;
    zh_resolver_stats(res, &st);
    assert_int_equal(1, st.queries);
    assert_int_equal(1, st.cache_hits);
    assert_int_equal(1, st.cache_size);
    assert_int_equal(0, st.pending);
    /* flush forgets it */
    zh_resolver_flush(res);
    resolve(res, "cached.test", 2);
    wait_calls(3);
    assert_int_equal(2, served("cached.test"));
}

static void concurrent_lookups_share_one_query(void **state)
{
    (void)state;
    rule_a("shared.test", 60, "192.0.2.3", NULL);
    for (int i = 0; i < 5; i++)
        resolve(res, "shared.test", i);
    struct zh_resolver_stats st;
    zh_resolver_stats(res, &st);
    assert_int_equal(1, st.pending);
    wait_calls(5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(0, results[i].status);
        assert_v4(&results[i], 0, "192.0.2.3");
    }
    assert_int_equal(1, served("shared.test"));
}

static void ttl_expiry_queries_again(void **state)
{
    (void)state;
    /* TTL 1 s: the second answer of the sequence is only seen after expiry. */
    struct rule *r = dns_rule("short.test");
    r->nans = 2;
    r->ans[0].ttl = 1;
    ans_v4(&r->ans[0], "192.0.2.10");
    r->ans[1].ttl = 1;
    ans_v4(&r->ans[1], "192.0.2.20");
    resolve(res, "short.test", 0);
    wait_calls(1);
    assert_v4(&results[0], 0, "192.0.2.10");
    resolve(res, "short.test", 1);
    wait_calls(2);
    assert_v4(&results[1], 0, "192.0.2.10"); /* cached */
    assert_int_equal(1, served("short.test"));
    run_for(1100);
    resolve(res, "short.test", 2);
    wait_calls(3);
    assert_v4(&results[2], 0, "192.0.2.20");
    assert_int_equal(2, served("short.test"));
}

static void ttl_is_clamped(void **state)
{
    (void)state;
    zh_resolver_free(res);
    res = make_resolver(false, 0, 1, 0); /* ttl_max 1 s */
    rule_a("long.test", 86400, "192.0.2.30", NULL);
    rule_a("zero.test", 0, "192.0.2.31", NULL);
    resolve(res, "long.test", 0);
    resolve(res, "zero.test", 1);
    wait_calls(2);
    /* TTL 0 is raised to ttl_min (1 s): an immediate repeat is a cache hit. */
    resolve(res, "zero.test", 2);
    wait_calls(3);
    assert_int_equal(1, served("zero.test"));
    /* TTL 86400 is cut to ttl_max (1 s). */
    run_for(1100);
    resolve(res, "long.test", 3);
    wait_calls(4);
    assert_int_equal(0, results[3].status);
    assert_int_equal(2, served("long.test"));
}

static void nxdomain_and_nodata_are_cached_briefly(void **state)
{
    (void)state;
    rule_simple("gone.test", K_NXDOMAIN);
    struct rule *r = dns_rule("v6only.test");
    r->ans[0].ttl = 60;
    ans_v6(&r->ans[0], "2001:db8::1");
    resolve(res, "gone.test", 0);
    resolve(res, "v6only.test", 1);
    resolve(res, "never-heard-of.test", 2);
    wait_calls(3);
    assert_int_equal(-ENOENT, results[0].status);
    assert_int_equal(-ENODATA, results[1].status);
    assert_int_equal(-ENOENT, results[2].status);
    assert_string_equal("NXDOMAIN", zh_resolver_strerror(results[0].status));
    resolve(res, "gone.test", 3);
    resolve(res, "v6only.test", 4);
    wait_calls(5);
    assert_int_equal(-ENOENT, results[3].status);
    assert_int_equal(-ENODATA, results[4].status);
    assert_int_equal(1, served("gone.test"));
    assert_int_equal(1, served("v6only.test"));
    /* negative_ttl_s is 1: gone after that */
    run_for(1100);
    resolve(res, "gone.test", 5);
    wait_calls(6);
    assert_int_equal(2, served("gone.test"));
}

static void server_failures_are_reported_and_not_cached(void **state)
{
    (void)state;
    rule_simple("fail.test", K_SERVFAIL);
    rule_simple("refused.test", K_REFUSED);
    resolve(res, "fail.test", 0);
    resolve(res, "refused.test", 1);
    wait_calls(2);
    assert_int_equal(-ECONNREFUSED, results[0].status);
    assert_int_equal(-ECONNREFUSED, results[1].status);
    int before = served("fail.test");
    assert_true(before >= 1);
    resolve(res, "fail.test", 2);
    wait_calls(3);
    assert_int_equal(-ECONNREFUSED, results[2].status);
    assert_true(served("fail.test") > before);
}

static void silence_times_out(void **state)
{
    (void)state;
    zh_resolver_free(res);
    res = make_resolver(false, 0, 300, 200);
    rule_simple("silent.test", K_DROP);
    uint64_t t0 = zh_time_ms();
    resolve(res, "silent.test", 0);
    wait_calls(1);
    uint64_t took = zh_time_ms() - t0;
    assert_int_equal(-ETIMEDOUT, results[0].status);
    assert_true(took >= 150);
    assert_true(took < 3000);
    assert_true(served("silent.test") >= 1);
    /* a timeout is not cached */
    rule_a("silent.test", 60, "192.0.2.40", NULL);
    resolve(res, "silent.test", 1);
    wait_calls(2);
    assert_int_equal(0, results[1].status);
}

static void malformed_answers_fail_cleanly(void **state)
{
    (void)state;
    zh_resolver_free(res);
    res = make_resolver(false, 0, 300, 300);
    static const struct {
        const char *name;
        enum kind k;
    } bad[] = {
        {"trunc.test", K_TRUNC},         {"badrdlen.test", K_BADRDLEN}, {"ptrloop.test", K_PTRLOOP},
        {"hugecount.test", K_HUGECOUNT}, {"badrdata.test", K_BADRDATA}, {"garbage.test", K_GARBAGE},
        {"wrongid.test", K_WRONGID},
    };
    int n = (int)ZH_ARRAY_SIZE(bad);
    for (int i = 0; i < n; i++) {
        rule_simple(bad[i].name, bad[i].k);
        resolve(res, bad[i].name, i);
    }
    wait_calls(n);
    for (int i = 0; i < n; i++) {
        if (results[i].status >= 0)
            fail_msg("%s: status %d", bad[i].name, results[i].status);
        assert_int_equal(0, results[i].count);
        assert_true(served(bad[i].name) >= 1);
    }
    /* answers a client must ignore end in a timeout; broken records are bad or empty answers */
    assert_int_equal(-ETIMEDOUT, results[6].status); /* wrong id */
    assert_true(results[4].status == -ENODATA || results[4].status == -EBADMSG);
    /* the resolver still works */
    rule_a("fine.test", 60, "192.0.2.50", NULL);
    resolve(res, "fine.test", n);
    wait_calls(n + 1);
    assert_int_equal(0, results[n].status);
}

static void long_answers_are_capped_and_deduplicated(void **state)
{
    (void)state;
    /* 28 records (fits in 512 bytes), 20 distinct: more than ZH_RESOLVER_MAX_ADDRS */
    struct rule *r = dns_rule("many.test");
    r->ans[0].ttl = 60;
    char ip[32];
    for (int i = 0; i < 28; i++) {
        snprintf(ip, sizeof(ip), "198.51.100.%d", i % 20);
        ans_v4(&r->ans[0], ip);
    }
    /* 40 records: a UDP answer over 512 bytes without the TC bit is unusable */
    r = dns_rule("oversize.test");
    r->ans[0].ttl = 60;
    for (int i = 0; i < MAX_V4; i++) {
        snprintf(ip, sizeof(ip), "198.51.100.%d", i);
        ans_v4(&r->ans[0], ip);
    }
    resolve(res, "many.test", 0);
    resolve(res, "oversize.test", 1);
    wait_calls(2);
    assert_int_equal(0, results[0].status);
    assert_int_equal(ZH_RESOLVER_MAX_ADDRS, results[0].count);
    for (size_t i = 0; i < results[0].count; i++) {
        for (size_t k = i + 1; k < results[0].count; k++)
            assert_false(results[0].addrs[i].in.sin_addr.s_addr ==
                         results[0].addrs[k].in.sin_addr.s_addr);
    }
    assert_true(results[1].status < 0);
}

static void cancel_before_answer(void **state)
{
    (void)state;
    rule_a("cancel.test", 60, "192.0.2.60", NULL);
    struct zh_resolve_req *a = resolve(res, "cancel.test", 0);
    resolve(res, "cancel.test", 1);
    zh_resolve_cancel(a);
    wait_calls(1);
    assert_false(results[0].called);
    assert_true(results[1].called);
    /* cancelling a cache hit before it is delivered */
    struct zh_resolve_req *c = resolve(res, "cancel.test", 2);
    zh_resolve_cancel(c);
    /* cancelling an IP literal and an invalid name before delivery */
    zh_resolve_cancel(resolve(res, "192.0.2.1", 3));
    zh_resolve_cancel(resolve(res, "bad..name", 4));
    /* cancelling the only waiter of a query that never answers */
    rule_simple("never.test", K_DROP);
    zh_resolve_cancel(resolve(res, "never.test", 5));
    run_for(200);
    for (int i = 2; i <= 5; i++)
        assert_false(results[i].called);
    assert_int_equal(1, ncalled);
}

static void ip_literals_need_no_dns(void **state)
{
    (void)state;
    resolve(res, "192.0.2.7", 0);
    resolve(res, "::1", 1);
    resolve(res, "[2001:db8::5]", 2);
    wait_calls(3);
    char buf[INET6_ADDRSTRLEN];
    assert_int_equal(0, results[0].status);
    assert_v4(&results[0], 0, "192.0.2.7");
    assert_int_equal(AF_INET6, results[1].addrs[0].sa.sa_family);
    assert_string_equal("::1", zh_sockaddr_str(&results[1].addrs[0], buf, sizeof(buf)));
    assert_string_equal("2001:db8::5", zh_sockaddr_str(&results[2].addrs[0], buf, sizeof(buf)));
    assert_int_equal(sizeof(struct sockaddr_in6), zh_sockaddr_len(&results[2].addrs[0]));
    assert_int_equal(0, total_queries());
    struct zh_resolver_stats st;
    zh_resolver_stats(res, &st);
    assert_int_equal(0, st.queries);
}

static void invalid_names_are_refused_without_dns(void **state)
{
    (void)state;
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    char longlabel[80];
    memset(longlabel, 'b', 70);
    memcpy(longlabel + 70, ".test", 6);
    const char *bad[] = {"", ".", "a..b", "sp ace.test", "x/y", longname, longlabel, "[::1"};
    int n = (int)ZH_ARRAY_SIZE(bad);
    for (int i = 0; i < n; i++)
        resolve(res, bad[i], i);
    wait_calls(n);
    for (int i = 0; i < n; i++) {
        if (results[i].status != -EINVAL)
            fail_msg("'%s': status %d", bad[i], results[i].status);
    }
    assert_int_equal(0, total_queries());
}

static void ipv6_adds_aaaa_queries(void **state)
{
    (void)state;
    zh_resolver_free(res);
    res = make_resolver(true, 0, 300, 0);
    struct rule *r = dns_rule("dual.test");
    r->ans[0].ttl = 60;
    ans_v4(&r->ans[0], "192.0.2.70");
    ans_v6(&r->ans[0], "2001:db8::70");
    resolve(res, "dual.test", 0);
    wait_calls(1);
    assert_int_equal(0, results[0].status);
    assert_int_equal(2, results[0].count);
    int fam4 = 0, fam6 = 0;
    for (size_t i = 0; i < 2; i++) {
        fam4 += results[0].addrs[i].sa.sa_family == AF_INET;
        fam6 += results[0].addrs[i].sa.sa_family == AF_INET6;
    }
    assert_int_equal(1, fam4);
    assert_int_equal(1, fam6);
    assert_int_equal(1, dns.total_aaaa);
}

static void cache_evicts_least_recently_used(void **state)
{
    (void)state;
    zh_resolver_free(res);
    res = make_resolver(false, 2, 300, 0);
    rule_a("one.test", 60, "192.0.2.81", NULL);
    rule_a("two.test", 60, "192.0.2.82", NULL);
    rule_a("three.test", 60, "192.0.2.83", NULL);
    resolve(res, "one.test", 0);
    resolve(res, "two.test", 1);
    wait_calls(2);
    resolve(res, "one.test", 2); /* one is now the most recently used */
    wait_calls(3);
    resolve(res, "three.test", 3); /* evicts two */
    wait_calls(4);
    struct zh_resolver_stats st;
    zh_resolver_stats(res, &st);
    assert_int_equal(2, st.cache_size);
    assert_int_equal(1, st.cache_evicts);
    resolve(res, "one.test", 4);
    resolve(res, "two.test", 5);
    wait_calls(6);
    assert_int_equal(1, served("one.test"));
    assert_int_equal(2, served("two.test"));
}

static struct zh_resolver *victim;
static int after_free_calls;

static void free_in_callback(struct zh_resolve_req *req, int status, const union zh_sockaddr *a,
                             size_t count, void *data)
{
    (void)req;
    (void)status;
    (void)a;
    (void)count;
    int *which = data;
    if (*which == 0) {
        zh_resolver_free(victim);
        victim = NULL;
        zh_loop_stop(loop);
    } else {
        after_free_calls++;
    }
}

static void free_from_inside_a_callback(void **state)
{
    (void)state;
    static int zero = 0, one = 1;
    victim = make_resolver(false, 0, 300, 0);
    rule_simple("pending.test", K_DROP);
    /* both results are ready in the same phase; the first frees the resolver */
    zh_resolver_resolve(victim, "192.0.2.1", free_in_callback, &zero);
    zh_resolver_resolve(victim, "192.0.2.2", free_in_callback, &one);
    zh_resolver_resolve(victim, "pending.test", free_in_callback, &one);
    zh_loop_run(loop);
    assert_null(victim);
    run_for(100);
    assert_int_equal(0, after_free_calls);
}

static void bad_server_specs_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "1.2.3.4:99999", "[::1", "nonsense", "1.2.3.4:", "[::1]x", "1.2.3.4:0", ":53", "[::1]:-1"};
    for (size_t i = 0; i < ZH_ARRAY_SIZE(bad); i++) {
        const char *s[1] = {bad[i]};
        struct zh_resolver_config cfg = {.servers = s, .server_count = 1};
        struct zh_buf err = {0};
        struct zh_resolver *r = zh_resolver_new(loop, &cfg, &err);
        if (r)
            fail_msg("server '%s' accepted", bad[i]);
        assert_non_null(strstr(zh_buf_cstr(&err), bad[i]));
        zh_buf_free(&err);
    }
    /* good forms */
    static const char *const good[] = {"127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:53", "[::1]"};
    const char *s[5];
    for (size_t i = 0; i < 5; i++)
        s[i] = good[i];
    struct zh_resolver_config cfg = {.servers = s, .server_count = 5};
    struct zh_buf err = {0};
    struct zh_resolver *r = zh_resolver_new(loop, &cfg, &err);
    assert_non_null(r);
    zh_resolver_free(r);
    zh_buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_records_are_returned, setup, teardown),
        cmocka_unit_test_setup_teardown(cache_hit_sends_no_second_query, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_lookups_share_one_query, setup, teardown),
        cmocka_unit_test_setup_teardown(ttl_expiry_queries_again, setup, teardown),
        cmocka_unit_test_setup_teardown(ttl_is_clamped, setup, teardown),
        cmocka_unit_test_setup_teardown(nxdomain_and_nodata_are_cached_briefly, setup, teardown),
        cmocka_unit_test_setup_teardown(server_failures_are_reported_and_not_cached, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(silence_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(malformed_answers_fail_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(long_answers_are_capped_and_deduplicated, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_before_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(ip_literals_need_no_dns, setup, teardown),
        cmocka_unit_test_setup_teardown(invalid_names_are_refused_without_dns, setup, teardown),
        cmocka_unit_test_setup_teardown(ipv6_adds_aaaa_queries, setup, teardown),
        cmocka_unit_test_setup_teardown(cache_evicts_least_recently_used, setup, teardown),
        cmocka_unit_test_setup_teardown(free_from_inside_a_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_server_specs_are_refused, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    zh_resolver_library_cleanup();
    return rc;
}
