#include "client/resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/proto/fnv.h"
#include "shared/proto/mem.h"
#include "shared/rt/log.h"
#include "shared/rt/metrics.h"

#define DEFAULT_CACHE_MAX  1024
#define DEFAULT_TTL_MIN_S  1
#define DEFAULT_TTL_MAX_S  300
#define DEFAULT_NEG_TTL_S  5
#define DEFAULT_TIMEOUT_MS 2000
#define DEFAULT_TRIES      2
#define MAX_SERVERS        16
#define MAX_NAME           253 /* without the trailing dot */

/* One c-ares socket and its io watcher. A watcher c-ares is done with is stopped at once and freed
 * from a deferred call, so an epoll event fetched in the same batch never reaches freed memory. */
struct sockw {
    struct sockw *next;
    struct zh_resolver *r;
    struct zh_io io;
    int fd;
};

/* One cached name (positive: count addresses; negative: status < 0). */
struct centry {
    struct centry *hnext;               /* hash chain */
    struct centry *lru_prev, *lru_next; /* most recently used first */
    uint32_t hash;
    uint64_t expires; /* loop time, ms */
    int status;
    unsigned count;
    char *name;
    union zh_sockaddr addrs[]; /* count */
};

/* One ares_getaddrinfo() in flight, shared by every request for the same name. */
struct lookup {
    struct lookup *prev, *next; /* r->lookups */
    struct zh_resolver *r;
    struct zh_resolve_req *waiters; /* doubly linked through req->prev/next */
    char *name;
};

struct zh_resolve_req {
    struct zh_resolve_req *prev, *next; /* in lookup->waiters or r->ready */
    struct zh_resolver *r;
    struct lookup *lk; /* non-NULL while waiting for DNS */
    zh_resolve_cb *cb;
    void *data;
    int status;
    unsigned count;
    union zh_sockaddr addrs[ZH_RESOLVER_MAX_ADDRS];
};

struct zh_resolver {
    struct zh_loop *loop;
    ares_channel channel;
    bool ipv6;
    bool closing;    /* zh_resolver_free() was called */
    bool delivering; /* inside deliver_cb: the struct must outlive it */
    unsigned cache_max;
    uint32_t ttl_min_ms, ttl_max_ms, neg_ttl_ms;

    struct zh_timer timer; /* ares_timeout() */
    struct sockw *socks;   /* live watchers */
    struct sockw *dead;    /* stopped watchers waiting for free_dead */
    struct zh_defer free_dead;

    struct lookup *lookups;
    struct zh_resolve_req *ready, *ready_tail; /* requests with a result, FIFO */
    struct zh_defer deliver;

    struct centry **buckets;
    size_t nbuckets; /* power of two */
    struct centry *lru_head, *lru_tail;
    unsigned cache_size;

    uint64_t queries, cache_hits, cache_evicts;
    unsigned pending;
};

/* ---- addresses ---- */

socklen_t zh_sockaddr_len(const union zh_sockaddr *a)
{
    if (a->sa.sa_family == AF_INET)
        return sizeof(a->in);
    if (a->sa.sa_family == AF_INET6)
        return sizeof(a->in6);
    return 0;
}

char *zh_sockaddr_str(const union zh_sockaddr *a, char *out, size_t outlen)
{
    const void *src = a->sa.sa_family == AF_INET ? (const void *)&a->in.sin_addr
                                                 : (const void *)&a->in6.sin6_addr;
    if (outlen == 0)
        return out;
    if ((a->sa.sa_family != AF_INET && a->sa.sa_family != AF_INET6) ||
        !inet_ntop(a->sa.sa_family, src, out, (socklen_t)outlen))
        snprintf(out, outlen, "?");
    return out;
}

/* ---- library ---- */

static pthread_mutex_t lib_lock = PTHREAD_MUTEX_INITIALIZER;
static bool lib_inited;

static int library_init(void)
{
    int rc = ARES_SUCCESS;
    pthread_mutex_lock(&lib_lock);
    if (!lib_inited) {
        rc = ares_library_init(ARES_LIB_INIT_ALL);
        lib_inited = rc == ARES_SUCCESS;
    }
    pthread_mutex_unlock(&lib_lock);
    return rc;
}

void zh_resolver_library_cleanup(void)
{
    pthread_mutex_lock(&lib_lock);
    if (lib_inited)
        ares_library_cleanup();
    lib_inited = false;
    pthread_mutex_unlock(&lib_lock);
}

const char *zh_resolver_strerror(int status)
{
    switch (status) {
    case 0:
        return "ok";
    case -ENOENT:
        return "NXDOMAIN";
    case -ENODATA:
        return "no address records";
    case -ETIMEDOUT:
        return "DNS timeout";
    case -ECONNREFUSED:
        return "DNS server refused or failed";
    case -EBADMSG:
        return "malformed DNS answer";
    case -EINVAL:
        return "invalid host name";
    case -ENOMEM:
        return "out of memory";
    default:
        return "resolver failure";
    }
}

static int map_ares_status(int st)
{
    switch (st) {
    case ARES_SUCCESS:
        return 0;
    case ARES_ENOTFOUND:
    case ARES_ENONAME:
        return -ENOENT;
    case ARES_ENODATA:
        return -ENODATA;
    case ARES_ETIMEOUT:
        return -ETIMEDOUT;
    case ARES_ESERVFAIL:
    case ARES_EREFUSED:
    case ARES_ECONNREFUSED:
    case ARES_ENOTIMP:
        return -ECONNREFUSED;
    case ARES_EFORMERR:
    case ARES_EBADRESP:
    case ARES_EBADQUERY:
    case ARES_EOF:
        return -EBADMSG;
    case ARES_EBADNAME:
    case ARES_EBADFAMILY:
    case ARES_EBADSTR:
        return -EINVAL;
    case ARES_ENOMEM:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

/* ---- loop glue ---- */

static void update_timer(struct zh_resolver *r)
{
    struct timeval tv, *t;
    if (r->closing)
        return;
    t = ares_timeout(r->channel, NULL, &tv);
    if (!t) {
        zh_loop_timer_stop(r->loop, &r->timer);
        return;
    }
    /* Round up so the timer never fires before c-ares considers the query timed out. */
    uint64_t ms = (uint64_t)t->tv_sec * 1000u + ((uint64_t)t->tv_usec + 999u) / 1000u;
    zh_loop_timer_start(r->loop, &r->timer, ms);
}

static void timer_cb(struct zh_timer *t, void *data)
{
    struct zh_resolver *r = data;
    ZH_UNUSED(t);
    ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    update_timer(r);
}

static void sock_io_cb(struct zh_io *io, uint32_t revents, void *data)
{
    struct sockw *w = data;
    struct zh_resolver *r = w->r;
    ZH_UNUSED(io);
    int fd = w->fd;
    ares_socket_t rfd = (revents & (ZH_EV_READ | ZH_EV_ERROR | ZH_EV_HUP)) ? fd : ARES_SOCKET_BAD;
    ares_socket_t wfd = (revents & (ZH_EV_WRITE | ZH_EV_ERROR)) ? fd : ARES_SOCKET_BAD;
    /* w may be stopped (moved to the dead list) by the callbacks below; it stays allocated. */
    ares_process_fd(r->channel, rfd, wfd);
    update_timer(r);
}

static void free_dead_cb(struct zh_defer *d, void *data)
{
    struct zh_resolver *r = data;
    ZH_UNUSED(d);
    while (r->dead) {
        struct sockw *w = r->dead;
        r->dead = w->next;
        zh_free(w);
    }
}

/* ARES_OPT_SOCK_STATE_CB: c-ares tells us what to watch, and (0, 0) before it closes a socket. */
static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct zh_resolver *r = data;
    struct sockw **pp = &r->socks, *w;
    while ((w = *pp) != NULL && w->fd != fd)
        pp = &w->next;
    if (!readable && !writable) {
        if (!w)
            return;
        *pp = w->next;
        zh_io_stop(r->loop, &w->io);
        w->next = r->dead;
        r->dead = w;
        if (!r->closing)
            zh_loop_defer(r->loop, &r->free_dead);
        return;
    }
    if (!w) {
        w = zh_calloc(1, sizeof(*w));
        w->r = r;
        w->fd = fd;
        zh_io_init(&w->io, fd, sock_io_cb, w);
        w->next = r->socks;
        r->socks = w;
    }
    uint32_t ev = (readable ? ZH_EV_READ : 0) | (writable ? ZH_EV_WRITE : 0);
    int rc = zh_io_set(r->loop, &w->io, ev);
    if (rc < 0)
        zh_warn("resolver: cannot watch DNS socket %d: %s", (int)fd, strerror(-rc));
}

/* ---- cache ---- */

static uint32_t hash_name(const char *s)
{
    return (uint32_t)zh_fnv1a(ZH_FNV_BASIS, s, strlen(s));
}

static void lru_unlink(struct zh_resolver *r, struct centry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        r->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        r->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(struct zh_resolver *r, struct centry *e)
{
    e->lru_prev = NULL;
    e->lru_next = r->lru_head;
    if (r->lru_head)
        r->lru_head->lru_prev = e;
    else
        r->lru_tail = e;
    r->lru_head = e;
}

static void cache_remove(struct zh_resolver *r, struct centry *e)
{
    struct centry **pp = &r->buckets[e->hash & (r->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(r, e);
    r->cache_size--;
    zh_free(e->name);
    zh_free(e);
}

static struct centry *cache_find(struct zh_resolver *r, const char *name, uint32_t h)
{
    for (struct centry *e = r->buckets[h & (r->nbuckets - 1)]; e; e = e->hnext) {
        if (e->hash == h && strcmp(e->name, name) == 0)
            return e;
    }
    return NULL;
}

static void cache_put(struct zh_resolver *r, const char *name, int status,
                      const union zh_sockaddr *addrs, unsigned count, uint64_t ttl_ms)
{
    uint32_t h = hash_name(name);
    struct centry *e = cache_find(r, name, h);
    if (e)
        cache_remove(r, e);
    while (r->cache_size >= r->cache_max && r->lru_tail) {
        cache_remove(r, r->lru_tail);
        r->cache_evicts++;
    }
    e = zh_calloc(1, sizeof(*e) + count * sizeof(e->addrs[0]));
    e->hash = h;
    e->name = zh_strdup(name);
    e->status = status;
    e->count = count;
    if (count)
        memcpy(e->addrs, addrs, count * sizeof(addrs[0]));
    e->expires = zh_loop_now(r->loop) + ttl_ms;
    struct centry **b = &r->buckets[h & (r->nbuckets - 1)];
    e->hnext = *b;
    *b = e;
    lru_push_front(r, e);
    r->cache_size++;
}

void zh_resolver_flush(struct zh_resolver *r)
{
    while (r->lru_head)
        cache_remove(r, r->lru_head);
}

/* ---- delivery ---- */

static void ready_push(struct zh_resolver *r, struct zh_resolve_req *q)
{
    q->lk = NULL;
    q->next = NULL;
    q->prev = r->ready_tail;
    if (r->ready_tail)
        r->ready_tail->next = q;
    else
        r->ready = q;
    r->ready_tail = q;
    zh_loop_defer(r->loop, &r->deliver);
}

static void ready_unlink(struct zh_resolver *r, struct zh_resolve_req *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        r->ready = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        r->ready_tail = q->prev;
    q->prev = q->next = NULL;
}

static void really_free(struct zh_resolver *r);

/* Run the callbacks of the requests that were ready when this phase began; requests made ready by
 * those callbacks (cache hits) wait for the next phase, so a callback that resolves again cannot
 * keep this loop busy. */
static void deliver_cb(struct zh_defer *d, void *data)
{
    struct zh_resolver *r = data;
    ZH_UNUSED(d);
    struct zh_resolve_req *last = r->ready_tail;
    r->delivering = true;
    while (!r->closing && r->ready) {
        struct zh_resolve_req *q = r->ready;
        bool was_last = q == last;
        ready_unlink(r, q);
        q->cb(q, q->status, q->count ? q->addrs : NULL, q->count, q->data);
        zh_free(q);
        if (was_last)
            break;
    }
    r->delivering = false;
    if (r->closing)
        really_free(r);
    else if (r->ready)
        zh_loop_defer(r->loop, &r->deliver);
}

static void finish_req(struct zh_resolver *r, struct zh_resolve_req *q, int status,
                       const union zh_sockaddr *addrs, unsigned count)
{
    q->status = status;
    q->count = status == 0 ? count : 0;
    if (q->count)
        memcpy(q->addrs, addrs, q->count * sizeof(addrs[0]));
    ready_push(r, q);
}

/* ---- lookups ---- */

static void lookup_free(struct zh_resolver *r, struct lookup *lk)
{
    if (lk->prev)
        lk->prev->next = lk->next;
    else
        r->lookups = lk->next;
    if (lk->next)
        lk->next->prev = lk->prev;
    r->pending--;
    zh_free(lk->name);
    zh_free(lk);
}

static bool same_addr(const union zh_sockaddr *a, const union zh_sockaddr *b)
{
    if (a->sa.sa_family != b->sa.sa_family)
        return false;
    if (a->sa.sa_family == AF_INET)
        return a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
    return memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16) == 0;
}

/* Copy the usable addresses of a c-ares answer: known families with a full-length sockaddr (what
 * c-ares parsed from a hostile answer is checked again here), no duplicates, at most
 * ZH_RESOLVER_MAX_ADDRS. Also finds the smallest TTL of the addresses and CNAMEs used. */
static unsigned collect(const struct zh_resolver *r, const struct ares_addrinfo *res,
                        union zh_sockaddr *out, int64_t *min_ttl)
{
    unsigned n = 0;
    int64_t ttl = INT64_MAX;
    for (const struct ares_addrinfo_node *nd = res ? res->nodes : NULL; nd; nd = nd->ai_next) {
        union zh_sockaddr a;
        memset(&a, 0, sizeof(a));
        if (!nd->ai_addr)
            continue;
        if (nd->ai_family == AF_INET && nd->ai_addr->sa_family == AF_INET &&
            nd->ai_addrlen >= (ares_socklen_t)sizeof(struct sockaddr_in)) {
            a.in.sin_family = AF_INET;
            a.in.sin_addr = ((const struct sockaddr_in *)(const void *)nd->ai_addr)->sin_addr;
        } else if (r->ipv6 && nd->ai_family == AF_INET6 && nd->ai_addr->sa_family == AF_INET6 &&
                   nd->ai_addrlen >= (ares_socklen_t)sizeof(struct sockaddr_in6)) {
            a.in6.sin6_family = AF_INET6;
            a.in6.sin6_addr = ((const struct sockaddr_in6 *)(const void *)nd->ai_addr)->sin6_addr;
        } else {
            continue;
        }
        bool dup = false;
        for (unsigned i = 0; i < n && !dup; i++)
            dup = same_addr(&out[i], &a);
        if (dup)
            continue;
        if (n == ZH_RESOLVER_MAX_ADDRS)
            break;
        out[n++] = a;
        ttl = ZH_MIN(ttl, (int64_t)nd->ai_ttl);
    }
    for (const struct ares_addrinfo_cname *c = res ? res->cnames : NULL; c && n; c = c->next)
        ttl = ZH_MIN(ttl, (int64_t)c->ttl);
    *min_ttl = ttl;
    return n;
}

static void addrinfo_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct lookup *lk = arg;
    struct zh_resolver *r = lk->r;
    ZH_UNUSED(timeouts);
    if (r->closing) {
        /* ares_destroy() from zh_resolver_free(): the waiters are gone already. */
        ares_freeaddrinfo(res);
        lookup_free(r, lk);
        return;
    }

    union zh_sockaddr addrs[ZH_RESOLVER_MAX_ADDRS];
    int64_t ttl_s = 0;
    unsigned n = 0;
    int st = map_ares_status(status);
    if (st == 0) {
        n = collect(r, res, addrs, &ttl_s);
        if (n == 0)
            st = -ENODATA;
    }
    ares_freeaddrinfo(res);

    /* Positive answers live for their TTL, clamped; NXDOMAIN / no data for the negative TTL. */
    if (st == 0) {
        int64_t ms = ttl_s < 0 ? 0 : ttl_s * 1000;
        ms = ZH_MAX(ms, (int64_t)r->ttl_min_ms);
        ms = ZH_MIN(ms, (int64_t)r->ttl_max_ms);
        cache_put(r, lk->name, 0, addrs, n, (uint64_t)ms);
    } else if (st == -ENOENT || st == -ENODATA) {
        cache_put(r, lk->name, st, NULL, 0, r->neg_ttl_ms);
    }
    zh_debug("resolver: %s -> %s (%u addresses)", lk->name, zh_resolver_strerror(st), n);

    /* Never call user code from here (we are inside ares_process_fd): queue the waiters. */
    while (lk->waiters) {
        struct zh_resolve_req *q = lk->waiters;
        lk->waiters = q->next;
        if (st < 0)
            zh_metric_inc(ZH_M_C_DNS_FAIL);
        finish_req(r, q, st, addrs, n);
    }
    lookup_free(r, lk);
}

/* Lower-case name into out without a trailing dot and check its syntax: labels of 1..63 letters,
 * digits, '-' and '_' (service names), 253 characters in all. Returns 0 or -EINVAL. */
static int canon_name(const char *host, char *out)
{
    size_t n = strlen(host);
    if (n > 0 && host[n - 1] == '.')
        n--;
    if (n == 0 || n > MAX_NAME)
        return -EINVAL;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)host[i];
        if (c == '.') {
            if (label == 0)
                return -EINVAL;
            label = 0;
        } else if (isalnum(c) || c == '-' || c == '_') {
            if (++label > 63)
                return -EINVAL;
        } else {
            return -EINVAL;
        }
        out[i] = (char)tolower(c);
    }
    if (label == 0)
        return -EINVAL;
    out[n] = '\0';
    return 0;
}

/* An IP literal ("1.2.3.4", "::1", "[::1]"): fill *a and return true. */
static bool parse_literal(const char *host, union zh_sockaddr *a)
{
    char buf[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(host);
    memset(a, 0, sizeof(*a));
    if (inet_pton(AF_INET, host, &a->in.sin_addr) == 1) {
        a->in.sin_family = AF_INET;
        return true;
    }
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(buf)) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    if (inet_pton(AF_INET6, host, &a->in6.sin6_addr) == 1) {
        a->in6.sin6_family = AF_INET6;
        return true;
    }
    return false;
}

struct zh_resolve_req *zh_resolver_resolve(struct zh_resolver *r, const char *host,
                                           zh_resolve_cb *cb, void *data)
{
    assert(!r->closing);
    struct zh_resolve_req *q = zh_calloc(1, sizeof(*q));
    q->r = r;
    q->cb = cb;
    q->data = data;

    union zh_sockaddr lit;
    if (parse_literal(host, &lit)) {
        finish_req(r, q, 0, &lit, 1);
        return q;
    }
    char name[MAX_NAME + 2];
    if (canon_name(host, name) < 0) {
        finish_req(r, q, -EINVAL, NULL, 0);
        return q;
    }

    uint32_t h = hash_name(name);
    struct centry *e = cache_find(r, name, h);
    if (e && e->expires > zh_loop_now(r->loop)) {
        r->cache_hits++;
        zh_metric_inc(ZH_M_C_DNS_HIT);
        if (e->status < 0)
            zh_metric_inc(ZH_M_C_DNS_FAIL);
        lru_unlink(r, e);
        lru_push_front(r, e);
        finish_req(r, q, e->status, e->addrs, e->count);
        return q;
    }
    if (e)
        cache_remove(r, e);
    zh_metric_inc(ZH_M_C_DNS_MISS);

    /* Join a lookup of the same name already in flight. */
    struct lookup *lk;
    for (lk = r->lookups; lk; lk = lk->next) {
        if (strcmp(lk->name, name) == 0)
            break;
    }
    bool start = lk == NULL;
    if (start) {
        lk = zh_calloc(1, sizeof(*lk));
        lk->r = r;
        lk->name = zh_strdup(name);
        lk->next = r->lookups;
        if (r->lookups)
            r->lookups->prev = lk;
        r->lookups = lk;
        r->pending++;
    }
    q->lk = lk;
    q->prev = NULL;
    q->next = lk->waiters;
    if (lk->waiters)
        lk->waiters->prev = q;
    lk->waiters = q;

    if (start) {
        struct ares_addrinfo_hints hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = r->ipv6 ? AF_UNSPEC : AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        r->queries++;
        /* c-ares may call addrinfo_cb before returning (hosts file, immediate errors); the
         * callback only queues, so that is fine. */
        ares_getaddrinfo(r->channel, lk->name, NULL, &hints, addrinfo_cb, lk);
        update_timer(r);
    }
    return q;
}

void zh_resolve_cancel(struct zh_resolve_req *q)
{
    struct zh_resolver *r = q->r;
    if (q->lk) {
        struct lookup *lk = q->lk;
        if (q->prev)
            q->prev->next = q->next;
        else
            lk->waiters = q->next;
        if (q->next)
            q->next->prev = q->prev;
    } else {
        ready_unlink(r, q);
    }
    zh_free(q);
}

/* ---- lifecycle ---- */

/* One server entry: "IP", "IP:port", "[IPv6]" or "[IPv6]:port" (a bare IPv6 takes no port). */
static int parse_server(const char *s, struct ares_addr_port_node *node)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port = NULL;
    size_t n;
    memset(node, 0, sizeof(*node));
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end)
            return -1;
        n = (size_t)(end - s - 1);
        if (end[1] == ':')
            port = end + 2;
        else if (end[1] != '\0')
            return -1;
        s++;
    } else {
        const char *colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':'))
            colon = NULL; /* bare IPv6 */
        n = colon ? (size_t)(colon - s) : strlen(s);
        if (colon)
            port = colon + 1;
    }
    if (n == 0 || n >= sizeof(host))
        return -1;
    memcpy(host, s, n);
    host[n] = '\0';
    long p = 53;
    if (port) {
        char *end;
        errno = 0;
        p = strtol(port, &end, 10);
        if (!*port || *end || errno || p < 1 || p > 65535 || !isdigit((unsigned char)*port))
            return -1;
    }
    if (inet_pton(AF_INET, host, &node->addr.addr4) == 1)
        node->family = AF_INET;
    else if (inet_pton(AF_INET6, host, &node->addr.addr6) == 1)
        node->family = AF_INET6;
    else
        return -1;
    node->udp_port = (int)p;
    node->tcp_port = (int)p;
    return 0;
}

struct zh_resolver *zh_resolver_new(struct zh_loop *loop, const struct zh_resolver_config *cfg,
                                    struct zh_buf *err)
{
    struct ares_addr_port_node nodes[MAX_SERVERS];
    if (cfg->server_count > MAX_SERVERS) {
        zh_buf_printf(err, "dns_servers: at most %d servers", MAX_SERVERS);
        return NULL;
    }
    for (size_t i = 0; i < cfg->server_count; i++) {
        if (parse_server(cfg->servers[i], &nodes[i]) < 0) {
            zh_buf_printf(err, "dns_servers: bad server '%s': expected IP, IP:PORT or [IPv6]:PORT",
                          cfg->servers[i]);
            return NULL;
        }
        nodes[i].next = i + 1 < cfg->server_count ? &nodes[i + 1] : NULL;
    }
    int rc = library_init();
    if (rc != ARES_SUCCESS) {
        zh_buf_printf(err, "c-ares: %s", ares_strerror(rc));
        return NULL;
    }

    struct zh_resolver *r = zh_calloc(1, sizeof(*r));
    r->loop = loop;
    r->ipv6 = cfg->ipv6;
    r->cache_max = cfg->cache_max ? cfg->cache_max : DEFAULT_CACHE_MAX;
    r->ttl_min_ms = 1000u * (cfg->ttl_min_s ? cfg->ttl_min_s : DEFAULT_TTL_MIN_S);
    r->ttl_max_ms = 1000u * (cfg->ttl_max_s ? cfg->ttl_max_s : DEFAULT_TTL_MAX_S);
    if (r->ttl_max_ms < r->ttl_min_ms)
        r->ttl_max_ms = r->ttl_min_ms;
    r->neg_ttl_ms = 1000u * (cfg->negative_ttl_s ? cfg->negative_ttl_s : DEFAULT_NEG_TTL_S);
    r->neg_ttl_ms = ZH_MIN(r->neg_ttl_ms, r->ttl_max_ms);
    r->nbuckets = 16;
    while (r->nbuckets < (size_t)r->cache_max * 2 && r->nbuckets < ((size_t)1 << 24))
        r->nbuckets <<= 1;
    r->buckets = zh_calloc(r->nbuckets, sizeof(*r->buckets));
    zh_timer_init(&r->timer, timer_cb, r);
    zh_defer_init(&r->free_dead, free_dead_cb, r);
    zh_defer_init(&r->deliver, deliver_cb, r);

    struct ares_options opts;
    memset(&opts, 0, sizeof(opts));
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS;
    opts.sock_state_cb = sock_state_cb;
    opts.sock_state_cb_data = r;
    opts.timeout = (int)(cfg->timeout_ms ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS);
    opts.tries = (int)(cfg->tries ? cfg->tries : DEFAULT_TRIES);
    char lookups[] = "fb"; /* hosts file, then DNS (c-ares copies it) */
    opts.lookups = lookups;
    if (cfg->server_count) {
        /* Explicit servers: names are used as given, without resolv.conf's search list. */
        mask |= ARES_OPT_DOMAINS | ARES_OPT_NDOTS;
        opts.ndomains = 0;
        opts.domains = NULL;
        opts.ndots = 1;
    }
    rc = ares_init_options(&r->channel, &opts, mask);
    if (rc == ARES_SUCCESS && cfg->server_count)
        rc = ares_set_servers_ports(r->channel, nodes);
    if (rc != ARES_SUCCESS) {
        zh_buf_printf(err, "c-ares: %s", ares_strerror(rc));
        if (r->channel) {
            r->closing = true;
            ares_destroy(r->channel);
        }
        zh_free(r->buckets);
        zh_free(r);
        return NULL;
    }
    return r;
}

static void really_free(struct zh_resolver *r)
{
    zh_free(r->buckets);
    zh_free(r);
}

void zh_resolver_free(struct zh_resolver *r)
{
    if (!r || r->closing)
        return;
    r->closing = true;
    /* Drop every request without a callback, then let c-ares end its queries (addrinfo_cb frees
     * the lookups) and close its sockets (sock_state_cb moves the watchers to the dead list). */
    for (struct lookup *lk = r->lookups; lk; lk = lk->next) {
        while (lk->waiters) {
            struct zh_resolve_req *q = lk->waiters;
            lk->waiters = q->next;
            zh_free(q);
        }
    }
    while (r->ready) {
        struct zh_resolve_req *q = r->ready;
        ready_unlink(r, q);
        zh_free(q);
    }
    ares_destroy(r->channel);
    r->channel = NULL;
    while (r->lookups) /* c-ares ended them all; belt and braces */
        lookup_free(r, r->lookups);
    while (r->socks) {
        struct sockw *w = r->socks;
        r->socks = w->next;
        zh_io_stop(r->loop, &w->io);
        zh_free(w);
    }
    zh_loop_timer_stop(r->loop, &r->timer);
    zh_loop_defer_cancel(r->loop, &r->free_dead);
    zh_loop_defer_cancel(r->loop, &r->deliver);
    free_dead_cb(&r->free_dead, r);
    zh_resolver_flush(r);
    if (!r->delivering)
        really_free(r);
}

void zh_resolver_stats(const struct zh_resolver *r, struct zh_resolver_stats *out)
{
    out->queries = r->queries;
    out->cache_hits = r->cache_hits;
    out->cache_evicts = r->cache_evicts;
    out->cache_size = r->cache_size;
    out->pending = r->pending;
}
