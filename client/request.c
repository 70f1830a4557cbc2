#include "client/request.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "shared/proto/err.h"
#include "shared/proto/mem.h"
#include "shared/rt/log.h"
#include "shared/rt/metrics.h"

#define POOL_MAX         64         /* idle easy handles kept per worker */
#define REQ_POOL_MAX     64         /* freed requests kept per worker, with their small buffers */
#define REQ_BUF_KEEP     (4 * 1024) /* a pooled request keeps only buffers up to this size */
#define SYSTEM_CA_PATH   "/etc/ssl/certs"
#define COMPACT_MIN      (64 * 1024) /* move unread bytes down once this much was taken */
#define MAX_REASON_BYTES 256

struct zh_request_ctx {
    struct zh_loop *loop;
    struct zh_outbound *out;
    struct zh_resolver *resolver;
    struct zh_request_config cfg;
    CURL *pool[POOL_MAX];
    unsigned n_pool;
    unsigned live;                /* requests not yet freed */
    struct zh_request *free_reqs; /* the request pool (linked by next_free) */
    unsigned n_free_reqs;
};

/* The life of one exchange. Every change goes through set_state(), which logs "-> [%s]". */
enum rstate {
    RS_READY = 0, /* configured, not started */
    RS_RESOLVING, /* the hop's host is being resolved and checked */
    RS_RUNNING,   /* a hop is on the multi handle */
    RS_NEXT_HOP,  /* a redirect was answered: the next hop starts from the loop */
    RS_FAILING,   /* failed before or between hops: DONE is raised from the loop */
    RS_DONE,      /* ended; DONE was raised */
};

static const char *const rstate_names[] = {
    [RS_READY] = "ready",       [RS_RESOLVING] = "resolving", [RS_RUNNING] = "running",
    [RS_NEXT_HOP] = "next-hop", [RS_FAILING] = "failing",     [RS_DONE] = "done",
};

struct zh_request {
    struct zh_request *next_free; /* in the context's pool */
    struct zh_request_ctx *ctx;
    CURL *easy;
    zh_request_cb *cb;
    void *data;
    enum rstate state;
    struct zh_defer kick; /* resumes paused directions, starts the next hop, reports failures */

    char *url; /* the current hop */
    /* The first hop's host and port (CURLU_DEFAULT_PORT), from the parse that checked the uri,
     * so that hop is not parsed twice; curl-allocated, NULL once used. */
    char *url_host, *url_port;
    char *method;
    bool is_head;
    bool follow;
    bool have_ctype; /* the handler sent a Content-Type */
    unsigned hops;
    struct curl_slist *headers;
    struct curl_slist *connect_to;
    char *verify_host; /* trust-connect-host: the name the certificate must match */

    /* where the hop connects, and the policy */
    bool ignore_policies; /* per-request ignore-policies, when the operator allows it */
    char *conn_host;      /* connect-host, or NULL */
    long conn_port;       /* connect-port, or 0 */
    char *target;         /* the host of this hop's connection: connect-host or the uri host */
    long target_port;
    struct zh_resolve_req *rreq;
    struct curl_slist *resolve; /* this hop's CURLOPT_RESOLVE entry */
    unsigned sock_denied;       /* addresses refused by the policy in OPENSOCKETFUNCTION */
    unsigned sock_opened;

    /* request body: inline (POSTFIELDS) or streamed through read_cb */
    struct zh_buf post;
    bool has_post;
    bool stream_upload;
    bool upload_done;
    bool upload_dropped; /* a redirect turned the request into a GET */
    int64_t upload_len;  /* the requester's Content-Length, or -1 (chunked) */
    uint64_t upload_total;
    struct zh_buf ubuf;
    size_t uoff;
    uint64_t sent_pending;

    /* response */
    int code;
    struct zh_buf reason;
    struct zh_buf hdr_store; /* "name\0value\0" pairs of the current head */
    size_t n_hdr;
    bool hdr_truncated;
    bool resp_te;         /* this head has Transfer-Encoding: its Content-Length is dropped */
    int64_t resp_clen;    /* this head's Content-Length, -1 when none */
    const char *bad_head; /* why this head is refused (RFC 9112 §5.1, §6.3; RFC 9110 §5.5) */
    bool head_done;       /* the final head is complete */
    bool redirecting;     /* this hop's head is a redirect we follow: its body is discarded */
    struct zh_buf rbuf;
    size_t roff;
    uint64_t window;
    uint64_t received;
    uint64_t max_size;

    bool recv_paused;
    bool send_paused;
    const char *fail_cond; /* set inside a callback that aborted the transfer */
    const char *cond;      /* the final condition (RS_DONE) */
    const char *stage;     /* where it failed: dns, connect, tls, request, response */
    char why[192];         /* and why (errno text, TLS reason, policy rule); first cause wins */
    char errbuf[CURL_ERROR_SIZE];
};

/* Note where and why the request failed, for the one failure line of the session (client.c).
 * The first note wins: later ones are consequences. */
static void note_fail(struct zh_request *r, const char *stage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void note_fail(struct zh_request *r, const char *stage, const char *fmt, ...)
{
    if (r->stage)
        return;
    r->stage = stage;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof(r->why), fmt, ap);
    va_end(ap);
}

static void set_state(struct zh_request *r, enum rstate st)
{
    zh_trace("request %p %s -> [%s]", (void *)r, r->url ? r->url : "", rstate_names[st]);
    r->state = st;
}

/* ---- buffers with a read offset ---- */

static size_t unread(const struct zh_buf *b, size_t off)
{
    return b->len - off;
}

static void take(struct zh_buf *b, size_t *off, size_t n)
{
    *off += n;
    if (*off == b->len) {
        zh_buf_reset(b);
        *off = 0;
    } else if (*off >= COMPACT_MIN && *off >= b->len / 2) {
        memmove(b->data, b->data + *off, b->len - *off);
        b->len -= *off;
        *off = 0;
    }
}

/* ---- curl callbacks: they record and return, and never call back into curl ---- */

static bool is_redirect(int code)
{
    return code == 301 || code == 302 || code == 303 || code == 307 || code == 308;
}

/* 303 turns every method but HEAD into GET; 301/302 turn POST into GET, as browsers do. */
static bool redirect_to_get(const struct zh_request *r)
{
    return (r->code == 303 && !r->is_head) ||
           ((r->code == 301 || r->code == 302) && strcmp(r->method, "POST") == 0);
}

static struct zh_span find_header(const struct zh_request *r, const char *name)
{
    const uint8_t *h = r->hdr_store.data;
    size_t nlen = strlen(name);
    for (size_t i = 0; i < r->n_hdr; i++) {
        size_t nl = strlen((const char *)h);
        size_t vl = strlen((const char *)h + nl + 1);
        if (nl == nlen && strncasecmp((const char *)h, name, nl) == 0)
            return (struct zh_span){h + nl + 1, vl};
        h += nl + vl + 2;
    }
    return (struct zh_span){NULL, 0};
}

/* A Content-Length value: digits only. Returns -1 when it is not one. */
static int64_t parse_length(struct zh_span v)
{
    if (v.n == 0 || v.n > 18)
        return -1;
    int64_t n = 0;
    for (size_t i = 0; i < v.n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return -1;
        n = n * 10 + (v.p[i] - '0');
    }
    return n;
}

/* A Content-Length field value, possibly a list of the same length ("5, 5", RFC 9110 §8.6).
 * Returns the length, -1 when a member is invalid, -2 when the members differ. */
static int64_t parse_length_list(struct zh_span v)
{
    int64_t n = -1;
    size_t i = 0;
    while (i <= v.n) {
        size_t j = i;
        while (j < v.n && v.p[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (v.p[a] == ' ' || v.p[a] == '\t'))
            a++;
        while (b > a && (v.p[b - 1] == ' ' || v.p[b - 1] == '\t'))
            b--;
        int64_t one = parse_length((struct zh_span){v.p + a, b - a});
        if (one < 0)
            return -1;
        if (n >= 0 && one != n)
            return -2;
        n = one;
        i = j + 1;
    }
    return n;
}

/* Remove every stored response header called name. */
static void drop_stored(struct zh_request *r, const char *name)
{
    uint8_t *h = r->hdr_store.data, *w = h;
    size_t nlen = strlen(name), kept = 0;
    for (size_t i = 0; i < r->n_hdr; i++) {
        size_t nl = strlen((const char *)h);
        size_t sz = nl + strlen((const char *)h + nl + 1) + 2;
        if (!(nl == nlen && strncasecmp((const char *)h, name, nl) == 0)) {
            memmove(w, h, sz);
            w += sz;
            kept++;
        }
        h += sz;
    }
    r->hdr_store.len = (size_t)(w - r->hdr_store.data);
    r->n_hdr = kept;
}

static bool is_token(struct zh_span s);

static void status_line(struct zh_request *r, const char *p, size_t l)
{
    /* A new status line: an interim (1xx) block or an earlier hop before it is forgotten. */
    const char *end = p + l;
    const char *q = memchr(p, ' ', l);
    r->code = 0;
    zh_buf_reset(&r->reason);
    zh_buf_reset(&r->hdr_store);
    r->n_hdr = 0;
    r->resp_te = false;
    r->resp_clen = -1;
    r->bad_head = NULL;
    if (!q)
        return;
    q++;
    int code = 0;
    while (q < end && *q >= '0' && *q <= '9' && code < 1000)
        code = code * 10 + (*q++ - '0');
    r->code = code;
    if (q < end && *q == ' ')
        q++;
    size_t rl = (size_t)(end - q);
    zh_buf_append(&r->reason, q, rl > MAX_REASON_BYTES ? MAX_REASON_BYTES : rl);
}

/* The blank line after a head: decide whether it is the final one. Returns false to abort. */
static bool head_end(struct zh_request *r)
{
    if (r->code >= 100 && r->code < 200)
        return true; /* interim; the real head follows */
    if (r->bad_head) {
        /* As nginx answers 502 for such an upstream: nothing of this head reaches the requester. */
        zh_debug("request %s %s: the origin's response head is refused: %s", r->method, r->url,
                 r->bad_head);
        note_fail(r, "response", "response head refused: %s", r->bad_head);
        r->fail_cond = "undefined-condition";
        return false;
    }
    if (r->resp_te && r->resp_clen >= 0) {
        /* Transfer-Encoding overrides Content-Length (RFC 9112 §6.3): curl de-chunks, and the
         * requester must not see a length the body does not have. */
        drop_stored(r, "Content-Length");
        r->resp_clen = -1;
    }
    if (r->follow && is_redirect(r->code) && find_header(r, "Location").p) {
        /* A streamed body is gone once sent: only a hop that drops the body can follow. */
        bool replayable = !r->stream_upload || redirect_to_get(r);
        if (replayable) {
            if (r->hops >= ZH_REQUEST_MAX_REDIRECTS) {
                note_fail(r, "response", "more than %d redirects", ZH_REQUEST_MAX_REDIRECTS);
                r->fail_cond = "too-many-redirects";
                return false;
            }
            r->redirecting = true;
            return true;
        }
        zh_info("request %s %s: %d with a streamed body is not followed", r->method, r->url,
                r->code);
    }
    if (r->hdr_truncated)
        zh_warn("request %s %s: response has more than %d headers; the rest are dropped", r->method,
                r->url, ZH_ZHTTP_MAX_HEADERS);
    /* A body announced larger than the limit fails now, before the head is delivered. */
    bool bodiless = r->is_head || r->code == 204 || r->code == 304;
    int64_t clen = bodiless ? -1 : r->resp_clen;
    if (clen >= 0 && (uint64_t)clen > r->max_size) {
        note_fail(r, "response", "Content-Length %lld over the limit of %llu bytes",
                  (long long)clen, (unsigned long long)r->max_size);
        r->fail_cond = "max-size-exceeded";
        return false;
    }
    r->head_done = true;
    r->cb(r, ZH_REQ_EV_HEAD, r->data);
    return true;
}

static size_t header_cb(char *p, size_t size, size_t n, void *data)
{
    struct zh_request *r = data;
    size_t len = size * n;
    size_t l = len;
    while (l > 0 && (p[l - 1] == '\r' || p[l - 1] == '\n'))
        l--;
    if (l >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        r->head_done = false;
        r->redirecting = false;
        status_line(r, p, l);
        return len;
    }
    if (r->head_done || r->redirecting)
        return len; /* trailers after the body are not part of the head we delivered */
    if (l == 0)
        return head_end(r) ? len : 0;
    if ((p[0] == ' ' || p[0] == '\t') && r->n_hdr > 0) {
        /* obs-fold: the line continues the previous header's value */
        size_t s = 0;
        while (s < l && (p[s] == ' ' || p[s] == '\t'))
            s++;
        if (memchr(p + s, '\r', l - s) || memchr(p + s, 0, l - s))
            r->bad_head = "CR or NUL inside a header value";
        r->hdr_store.len--; /* drop the value's NUL */
        zh_buf_putc(&r->hdr_store, ' ');
        zh_buf_append(&r->hdr_store, p + s, l - s);
        zh_buf_putc(&r->hdr_store, 0);
        return len;
    }
    const char *colon = memchr(p, ':', l);
    if (!colon)
        return len;
    if (!is_token((struct zh_span){(const uint8_t *)p, (size_t)(colon - p)})) {
        /* Whitespace before the colon, or a name that is not a token: refused (RFC 9112 §5.1). */
        r->bad_head = "invalid header name (whitespace before the colon?)";
        return len;
    }
    if (memchr(colon, '\r', (size_t)(p + l - colon)) || memchr(colon, 0, (size_t)(p + l - colon))) {
        r->bad_head = "CR or NUL inside a header value"; /* RFC 9110 §5.5 */
        return len;
    }
    if (r->n_hdr >= ZH_ZHTTP_MAX_HEADERS) {
        r->hdr_truncated = true;
        return len;
    }
    size_t nl = (size_t)(colon - p);
    const char *v = colon + 1;
    const char *end = p + l;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (nl == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
        int64_t cl = parse_length_list((struct zh_span){(const uint8_t *)v, (size_t)(end - v)});
        if (cl < 0 || (r->resp_clen >= 0 && cl != r->resp_clen)) {
            r->bad_head = cl == -1 ? "invalid Content-Length" : "differing Content-Lengths";
            return len;
        }
        if (r->resp_clen >= 0)
            return len; /* the same length again: one is enough */
        r->resp_clen = cl;
        zh_buf_append(&r->hdr_store, p, nl);
        zh_buf_putc(&r->hdr_store, 0);
        zh_buf_printf(&r->hdr_store, "%lld", (long long)cl);
        zh_buf_putc(&r->hdr_store, 0);
        r->n_hdr++;
        return len;
    }
    if (nl == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0)
        r->resp_te = true;
    /* Hop-by-hop framing is libcurl's business: the body we deliver is already de-chunked. */
    if ((nl == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) ||
        (nl == 10 && strncasecmp(p, "Connection", 10) == 0) ||
        (nl == 10 && strncasecmp(p, "Keep-Alive", 10) == 0))
        return len;
    zh_buf_append(&r->hdr_store, p, nl);
    zh_buf_putc(&r->hdr_store, 0);
    zh_buf_append(&r->hdr_store, v, (size_t)(end - v));
    zh_buf_putc(&r->hdr_store, 0);
    r->n_hdr++;
    return len;
}

static size_t write_cb(char *p, size_t size, size_t n, void *data)
{
    struct zh_request *r = data;
    size_t len = size * n;
    if (r->redirecting)
        return len; /* the body of a redirect we follow is not the response */
    if (unread(&r->rbuf, r->roff) >= r->window) {
        /* Full: curl keeps this chunk and offers it again once the window is widened. */
        r->recv_paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (len > r->max_size || r->received > r->max_size - len) {
        note_fail(r, "response", "body over the limit of %llu bytes",
                  (unsigned long long)r->max_size);
        r->fail_cond = "max-size-exceeded";
        return 0; /* aborts with CURLE_WRITE_ERROR */
    }
    zh_buf_append(&r->rbuf, p, len);
    r->received += len;
    r->cb(r, ZH_REQ_EV_BODY, r->data);
    return len;
}

static size_t read_cb(char *buf, size_t size, size_t nitems, void *data)
{
    struct zh_request *r = data;
    size_t cap = size * nitems;
    size_t avail = unread(&r->ubuf, r->uoff);
    if (avail == 0) {
        if (r->upload_done)
            return 0;
        r->send_paused = true;
        return CURL_READFUNC_PAUSE;
    }
    size_t n = avail < cap ? avail : cap;
    memcpy(buf, r->ubuf.data + r->uoff, n);
    take(&r->ubuf, &r->uoff, n);
    r->sent_pending += n;
    r->cb(r, ZH_REQ_EV_SENT, r->data);
    return n;
}

/* trust-connect-host: OpenSSL checks the certificate against connect-host while libcurl's own
 * host check (against the uri) is off. tls_ca_file: extra anchors beside the system store. */
static CURLcode ssl_ctx_cb(CURL *easy, void *sslctx, void *data)
{
    struct zh_request *r = data;
    SSL_CTX *ctx = sslctx;
    ZH_UNUSED(easy);
    if (r->ctx->cfg.tls_ca_file &&
        !X509_STORE_load_file(SSL_CTX_get_cert_store(ctx), r->ctx->cfg.tls_ca_file)) {
        zh_warn("tls_ca_file %s: cannot load", r->ctx->cfg.tls_ca_file);
        return CURLE_SSL_CACERT_BADFILE;
    }
    if (r->verify_host) {
        /* An address is matched against the certificate's IP entries, a name against its DNS
         * names. */
        X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
        uint8_t addr[16];
        bool ip = inet_pton(AF_INET, r->verify_host, addr) == 1 ||
                  inet_pton(AF_INET6, r->verify_host, addr) == 1;
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, r->verify_host)
                    : X509_VERIFY_PARAM_set1_host(param, r->verify_host, 0);
        if (!ok)
            return CURLE_SSL_CONNECT_ERROR;
    }
    return CURLE_OK;
}

/* The enforcement point: every address curl is about to connect to is checked again, whatever
 * led curl to it (the RESOLVE entry, a cached one, a redirect). */
static curl_socket_t opensocket_cb(void *data, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct zh_request *r = data;
    const struct zh_policy *policy = r->ctx->cfg.policy;
    ZH_UNUSED(purpose);
    if (policy && !r->ignore_policies && !r->ctx->cfg.proxy) {
        const char *why = NULL;
        if (zh_policy_check_addr(policy, r->target, &a->addr, &why) == ZH_POLICY_DENY) {
            char txt[INET6_ADDRSTRLEN + 1];
            union zh_sockaddr u;
            memset(&u, 0, sizeof(u));
            memcpy(&u, &a->addr, a->addrlen < sizeof(u) ? a->addrlen : sizeof(u));
            zh_debug("request %s %s: address %s of %s denied: %s", r->method, r->url,
                     zh_sockaddr_str(&u, txt, sizeof(txt)), r->target, why ? why : "policy");
            if (r->sock_denied++ == 0)
                zh_metric_inc(ZH_M_C_DENY_ADDR);
            return CURL_SOCKET_BAD;
        }
    }
    r->sock_opened++;
    curl_socket_t s = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (s != CURL_SOCKET_BAD)
        zh_outbound_opened(r->ctx->out, s);
    return s;
}

/* ---- conditions ---- */

static const char *condition_for(const struct zh_request *r, CURLcode rc)
{
    if (r->fail_cond)
        return r->fail_cond;
    if (rc != CURLE_OK && r->sock_denied > 0 && r->sock_opened == 0)
        return "policy-violation"; /* every address curl tried was denied, whatever curl says */
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
        return "remote-connection-failed";
    case CURLE_OPERATION_TIMEDOUT:
        return "connection-timeout"; /* the only curl timeout we set is the connect one */
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CRL_BADFILE:
        return "tls-error";
    case CURLE_URL_MALFORMAT:
        return "bad-request";
    default:
        return "undefined-condition";
    }
}

/* ---- starting and finishing ---- */

static void raise_done(struct zh_request *r, const char *cond)
{
    r->cond = cond;
    set_state(r, RS_DONE);
    r->cb(r, ZH_REQ_EV_DONE, r->data);
}

static void fail_later(struct zh_request *r, const char *cond)
{
    r->cond = cond;
    set_state(r, RS_FAILING);
    zh_loop_defer(r->ctx->loop, &r->kick);
}

static void xfer_done(CURL *easy, CURLcode rc, void *data);

static void add_to_multi(struct zh_request *r)
{
    set_state(r, RS_RUNNING);
    if (zh_outbound_add(r->ctx->out, r->easy, xfer_done, r) < 0)
        fail_later(r, "undefined-condition");
}

static bool is_ip_literal(const char *host)
{
    uint8_t buf[16];
    char tmp[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(tmp)) {
        memcpy(tmp, host + 1, n - 2);
        tmp[n - 2] = 0;
        return inet_pton(AF_INET6, tmp, buf) == 1;
    }
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static void resolved_cb(struct zh_resolve_req *req, int status, const union zh_sockaddr *addrs,
                        size_t count, void *data)
{
    struct zh_request *r = data;
    const struct zh_policy *policy = r->ctx->cfg.policy;
    ZH_UNUSED(req);
    r->rreq = NULL;
    if (status < 0) {
        zh_debug("request %s %s: cannot resolve %s: %s", r->method, r->url, r->target,
                 zh_resolver_strerror(status));
        note_fail(r, "dns", "%s: %s", r->target, zh_resolver_strerror(status));
        raise_done(r, "remote-connection-failed");
        return;
    }
    struct zh_buf e = {0};
    zh_buf_printf(&e, "+%s:%ld:", r->target, r->target_port);
    size_t allowed = 0;
    const char *why = NULL;
    for (size_t i = 0; i < count; i++) {
        char txt[INET6_ADDRSTRLEN + 1];
        zh_sockaddr_str(&addrs[i], txt, sizeof(txt));
        if (policy && !r->ignore_policies &&
            zh_policy_check_addr(policy, r->target, &addrs[i].sa, &why) == ZH_POLICY_DENY) {
            zh_debug("request %s %s: address %s of %s denied: %s", r->method, r->url, txt,
                     r->target, why ? why : "policy");
            continue;
        }
        if (allowed++)
            zh_buf_putc(&e, ',');
        if (addrs[i].sa.sa_family == AF_INET6)
            zh_buf_printf(&e, "[%s]", txt);
        else
            zh_buf_puts(&e, txt);
    }
    if (!allowed) {
        zh_buf_free(&e);
        zh_debug("request %s %s: policy-violation: no address of %s is allowed", r->method, r->url,
                 r->target);
        note_fail(r, "connect", "policy: no address of %s is allowed (%s)", r->target,
                  why ? why : "denied");
        zh_metric_inc(ZH_M_C_DENY_ADDR);
        raise_done(r, "policy-violation");
        return;
    }
    curl_slist_free_all(r->resolve);
    r->resolve = curl_slist_append(NULL, zh_buf_cstr(&e));
    zh_buf_free(&e);
    curl_easy_setopt(r->easy, CURLOPT_RESOLVE, r->resolve);
    add_to_multi(r);
}

/* Start the current hop: policy on the names, then the addresses (see request.h). */
static void start_hop(struct zh_request *r)
{
    struct zh_request_ctx *ctx = r->ctx;
    const struct zh_policy *policy = ctx->cfg.policy;
    r->recv_paused = false;
    r->send_paused = false;
    r->fail_cond = NULL;
    r->sock_denied = 0;
    r->sock_opened = 0;
    r->errbuf[0] = '\0';
    curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(r->easy, CURLOPT_URL, r->url);

    char *host = r->url_host, *port = r->url_port;
    bool ok = host && port;
    r->url_host = r->url_port = NULL;
    if (!ok) {
        curl_free(host);
        curl_free(port);
        host = port = NULL;
        CURLU *u = curl_url();
        ok = curl_url_set(u, CURLUPART_URL, r->url, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK;
        curl_url_cleanup(u);
    }
    if (!ok) {
        curl_free(host);
        curl_free(port);
        zh_debug("request %s %s: no host in the URL", r->method, r->url);
        note_fail(r, "request", "no host in the URL");
        fail_later(r, "bad-request");
        return;
    }
    zh_free(r->target);
    r->target = zh_strdup(r->conn_host ? r->conn_host : host);
    r->target_port = r->conn_port ? r->conn_port : strtol(port, NULL, 10);
    const char *why = NULL;
    const char *denied = NULL;
    if (policy && !r->ignore_policies) {
        if (zh_policy_check_name(policy, host, &why) == ZH_POLICY_DENY)
            denied = host;
        else if (r->conn_host && zh_policy_check_name(policy, r->conn_host, &why) == ZH_POLICY_DENY)
            denied = r->conn_host;
    }
    if (denied) {
        zh_metric_inc(ZH_M_C_DENY_NAME);
        zh_debug("request %s %s: policy-violation: %s: %s", r->method, r->url, denied,
                 why ? why : "denied");
        note_fail(r, "connect", "policy: %s: %s", denied, why ? why : "denied");
        curl_free(host);
        curl_free(port);
        fail_later(r, "policy-violation");
        return;
    }
    curl_free(host);
    curl_free(port);
    /* A proxy resolves and connects for us; an IP literal needs no lookup (the address is still
     * checked when its socket is opened). */
    if (ctx->cfg.proxy || is_ip_literal(r->target)) {
        curl_easy_setopt(r->easy, CURLOPT_RESOLVE, NULL);
        add_to_multi(r);
        return;
    }
    if (!ctx->resolver) {
        zh_debug("request %s %s: no resolver for %s", r->method, r->url, r->target);
        note_fail(r, "dns", "no resolver for %s", r->target);
        fail_later(r, "remote-connection-failed");
        return;
    }
    set_state(r, RS_RESOLVING);
    r->rreq = zh_resolver_resolve(ctx->resolver, r->target, resolved_cb, r);
}

/* Resolve the Location of the current head against the current URL. */
static char *redirect_target(const struct zh_request *r)
{
    struct zh_span loc = find_header(r, "Location");
    char *rel = zh_strndup((const char *)loc.p, loc.n);
    char *out = NULL;
    CURLU *u = curl_url();
    if (curl_url_set(u, CURLUPART_URL, r->url, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_URL, rel, 0) == CURLUE_OK) {
        char *scheme = NULL;
        char *full = NULL;
        if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
            (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) &&
            curl_url_get(u, CURLUPART_URL, &full, 0) == CURLUE_OK)
            out = zh_strdup(full);
        curl_free(scheme);
        curl_free(full);
    }
    curl_url_cleanup(u);
    zh_free(rel);
    return out;
}

/* scheme, host and port (the scheme's default when absent) of url; curl-allocated. */
static bool url_origin(const char *url, char **scheme, char **host, char **port)
{
    CURLU *u = curl_url();
    *scheme = *host = *port = NULL;
    bool ok = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_SCHEME, scheme, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_HOST, host, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_PORT, port, CURLU_DEFAULT_PORT) == CURLUE_OK;
    curl_url_cleanup(u);
    return ok;
}

/* Both URLs have the same scheme, host and port (anything unparsable counts as another origin). */
static bool same_origin(const char *a, const char *b)
{
    char *sa = NULL, *ha = NULL, *pa = NULL, *sb = NULL, *hb = NULL, *pb = NULL;
    bool same = url_origin(a, &sa, &ha, &pa) && url_origin(b, &sb, &hb, &pb) &&
                strcasecmp(sa, sb) == 0 && strcasecmp(ha, hb) == 0 && strcmp(pa, pb) == 0;
    curl_free(sa);
    curl_free(ha);
    curl_free(pa);
    curl_free(sb);
    curl_free(hb);
    curl_free(pb);
    return same;
}

/* An entry of the curl header list ("Name: v", "Name;" or "Name:") is for header name. */
static bool entry_is(const char *entry, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(entry, name, n) == 0 && (entry[n] == ':' || entry[n] == ';');
}

/* Remove every header named in names (NULL-terminated) from the list curl sends. Returns how many
 * handler headers went (removal entries such as "Content-Type:" are not counted). */
static unsigned drop_headers(struct zh_request *r, const char *const *names)
{
    struct curl_slist *kept = NULL;
    unsigned dropped = 0;
    for (struct curl_slist *h = r->headers; h; h = h->next) {
        bool drop = false;
        for (const char *const *n = names; *n && !drop; n++)
            drop = entry_is(h->data, *n);
        if (!drop)
            kept = curl_slist_append(kept, h->data);
        else if (h->data[strlen(h->data) - 1] != ':')
            dropped++;
    }
    curl_slist_free_all(r->headers);
    r->headers = kept;
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
    return dropped;
}

/* Credentials never follow a redirect to another origin (scheme, host or port): what curl's own
 * redirect code does since CVE-2018-1000007 and CVE-2022-27776. */
static const char *const credential_headers[] = {"Authorization", "Cookie", "Proxy-Authorization",
                                                 NULL};
/* A redirect that turns the request into a GET drops its body and the headers describing it
 * (the fetch standard's request-body-header names). */
static const char *const body_headers[] = {"Content-Type", "Content-Encoding", "Content-Language",
                                           "Content-Location", NULL};

static void next_hop(struct zh_request *r)
{
    char *target = redirect_target(r);
    if (!target) {
        zh_debug("request %s %s: unusable redirect Location", r->method, r->url);
        note_fail(r, "response", "unusable redirect Location");
        raise_done(r, "undefined-condition");
        return;
    }
    r->hops++;
    zh_debug("request %s %s: %d, following to %s (hop %u)", r->method, r->url, r->code, target,
             r->hops);
    if (redirect_to_get(r)) {
        zh_free(r->method);
        r->method = zh_strdup("GET");
        curl_easy_setopt(r->easy, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, NULL);
        r->has_post = false;
        drop_headers(r, body_headers);
        if (r->stream_upload) {
            /* The rest of a streamed body is accepted (and credited back) but goes nowhere. */
            r->upload_dropped = true;
            zh_buf_reset(&r->ubuf);
            r->uoff = 0;
        }
    }
    if (!same_origin(r->url, target)) {
        unsigned n = drop_headers(r, credential_headers);
        if (n)
            zh_info("request %s %s: %u credential header(s) not sent to another origin (%s)",
                    r->method, r->url, n, target);
    }
    zh_free(r->url);
    r->url = target;
    r->code = 0;
    r->redirecting = false;
    zh_buf_reset(&r->reason);
    zh_buf_reset(&r->hdr_store);
    r->n_hdr = 0;
    start_hop(r);
}

/* The stage and reason of a failed transfer, from curl's code, its error text and the OS errno. */
static void note_curl_fail(struct zh_request *r, CURLcode rc, const char *cond)
{
    const char *stage;
    if (strcmp(cond, "policy-violation") == 0) {
        note_fail(r, "connect", "policy: every address of %s is denied", r->target);
        return;
    }
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        stage = "dns";
        break;
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
        stage = r->sock_opened && r->head_done ? "response" : "connect";
        break;
    case CURLE_SEND_ERROR:
    case CURLE_READ_ERROR:
        stage = "request";
        break;
    default:
        stage = strcmp(cond, "tls-error") == 0 ? "tls" : "response";
        break;
    }
    /* curl keeps the errno of an earlier transfer of a pooled handle: only these codes set it */
    long os_errno = 0;
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR)
        curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_errno);
    const char *text = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
    if (os_errno)
        note_fail(r, stage, "%s (errno %ld: %s)", text, os_errno, strerror((int)os_errno));
    else
        note_fail(r, stage, "%s", text);
}

static void xfer_done(CURL *easy, CURLcode rc, void *data)
{
    struct zh_request *r = data;
    ZH_UNUSED(easy);
    if (rc == CURLE_OK && r->redirecting) {
        set_state(r, RS_NEXT_HOP);
        zh_loop_defer(r->ctx->loop, &r->kick);
        return;
    }
    const char *cond = NULL;
    if (rc != CURLE_OK) {
        cond = condition_for(r, rc);
        zh_debug("request %s %s failed: %s (%s)", r->method, r->url, cond, curl_easy_strerror(rc));
        note_curl_fail(r, rc, cond);
    } else if (!r->head_done) {
        cond = "undefined-condition";
        zh_debug("request %s %s: transfer ended without a response head", r->method, r->url);
        note_fail(r, "response", "the transfer ended without a response head");
    }
    raise_done(r, cond);
}

/* Lift the pauses that no longer hold. Runs from the loop only. */
static void update_pause(struct zh_request *r)
{
    bool recv = r->recv_paused && unread(&r->rbuf, r->roff) >= r->window;
    bool send = r->send_paused && unread(&r->ubuf, r->uoff) == 0 && !r->upload_done;
    if (recv == r->recv_paused && send == r->send_paused)
        return;
    r->recv_paused = recv;
    r->send_paused = send;
    /* curl may deliver held data from inside this call; the callbacks pause again if needed. */
    curl_easy_pause(r->easy, (recv ? CURLPAUSE_RECV : 0) | (send ? CURLPAUSE_SEND : 0));
}

static void kick_cb(struct zh_defer *d, void *data)
{
    struct zh_request *r = data;
    ZH_UNUSED(d);
    switch (r->state) {
    case RS_RUNNING:
        update_pause(r);
        break;
    case RS_NEXT_HOP:
        next_hop(r);
        break;
    case RS_FAILING:
        raise_done(r, r->cond);
        break;
    default:
        break;
    }
}

/* ---- set-up ---- */

/* Control characters (other than tab) would let a value end a header line early. */
static bool span_has_ctl(struct zh_span s)
{
    for (size_t i = 0; i < s.n; i++) {
        if ((s.p[i] < 0x20 && s.p[i] != '\t') || s.p[i] == 0x7f)
            return true;
    }
    return false;
}

static bool header_is(struct zh_span name, const char *s)
{
    size_t n = strlen(s);
    return name.n == n && strncasecmp((const char *)name.p, s, n) == 0;
}

static bool is_token(struct zh_span s)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (s.n == 0)
        return false;
    for (size_t i = 0; i < s.n; i++) {
        uint8_t ch = s.p[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch && strchr(extra, ch))))
            return false;
    }
    return true;
}

static bool is_blank(struct zh_span s)
{
    for (size_t i = 0; i < s.n; i++)
        if (s.p[i] != ' ' && s.p[i] != '\t')
            return false;
    return true;
}

/* connect-host / connect-port as one CURLOPT_CONNECT_TO entry that applies to every hop. */
static const char *build_connect_to(struct zh_request *r, const struct zh_zhttp_packet *pkt)
{
    bool has_host = pkt->connect_host.p && pkt->connect_host.n > 0;
    bool has_port = (pkt->has & ZH_ZF_CONNECT_PORT) != 0;
    if (!has_host && !has_port)
        return NULL;
    struct zh_buf e = {0};
    zh_buf_puts(&e, "::");
    if (has_host) {
        struct zh_span h = pkt->connect_host;
        for (size_t i = 0; i < h.n; i++) {
            uint8_t ch = h.p[i];
            if (ch <= ' ' || ch >= 0x7f || ch == '/' || ch == '@' || ch == '[' || ch == ']') {
                zh_buf_free(&e);
                zh_info("request refused: %s %s: invalid connect-host", r->method, r->url);
                return "bad-request";
            }
        }
        bool v6 = memchr(h.p, ':', h.n) != NULL;
        r->conn_host = zh_malloc(h.n + 3);
        snprintf(r->conn_host, h.n + 3, v6 ? "[%.*s]" : "%.*s", (int)h.n, (const char *)h.p);
        if (v6)
            zh_buf_putc(&e, '[');
        zh_buf_append(&e, h.p, h.n);
        if (v6)
            zh_buf_putc(&e, ']');
        if (pkt->trust_connect_host)
            r->verify_host = zh_strndup((const char *)h.p, h.n);
    }
    zh_buf_putc(&e, ':');
    if (has_port) {
        zh_buf_printf(&e, "%lld", (long long)pkt->connect_port);
        r->conn_port = (long)pkt->connect_port;
    }
    r->connect_to = curl_slist_append(NULL, zh_buf_cstr(&e));
    zh_buf_free(&e);
    return NULL;
}

/* The request headers for curl. Host comes from the uri; framing is curl's. */
static const char *build_headers(struct zh_request *r, const struct zh_zhttp_packet *pkt)
{
    bool have_accept = false;
    struct zh_buf line = {0};
    for (size_t i = 0; i < pkt->n_headers; i++) {
        struct zh_span n = pkt->headers[i].name, v = pkt->headers[i].value;
        if (!is_token(n) || span_has_ctl(v)) {
            zh_buf_free(&line);
            zh_info("request %s %s: invalid header %zu", r->method, r->url, i);
            return "bad-request";
        }
        if (header_is(n, "Content-Length")) {
            r->upload_len = parse_length(v);
            if (r->upload_len < 0) {
                zh_buf_free(&line);
                zh_info("request %s %s: invalid Content-Length", r->method, r->url);
                return "bad-request";
            }
            continue;
        }
        if (header_is(n, "Host") || header_is(n, "Transfer-Encoding") ||
            header_is(n, "Connection") || header_is(n, "Keep-Alive") || header_is(n, "Expect") ||
            header_is(n, "TE") || header_is(n, "Upgrade"))
            continue;
        if (header_is(n, "Accept"))
            have_accept = true;
        if (header_is(n, "Content-Type"))
            r->have_ctype = true;
        zh_buf_reset(&line);
        zh_buf_append(&line, n.p, n.n);
        if (is_blank(v)) {
            /* libcurl reads `Name:` with nothing but whitespace after it as "remove this header";
             * `Name;` is its syntax for an empty one. Whitespace around a value is not part of it
             * (RFC 9110 §5.5), so a blank value goes out empty. */
            zh_buf_putc(&line, ';');
        } else {
            zh_buf_puts(&line, ": ");
            zh_buf_append(&line, v.p, v.n);
        }
        r->headers = curl_slist_append(r->headers, zh_buf_cstr(&line));
    }
    zh_buf_free(&line);
    /* No default we did not ask for: curl's Accept, its Expect: 100-continue, and the
     * application/x-www-form-urlencoded it gives every POSTFIELDS or POST body. */
    if (!have_accept)
        r->headers = curl_slist_append(r->headers, "Accept:");
    r->headers = curl_slist_append(r->headers, "Expect:");
    if (!r->have_ctype)
        r->headers = curl_slist_append(r->headers, "Content-Type:");
    return NULL;
}

/* A zeroed request; one from the pool keeps the memory of its response buffers. */
static struct zh_request *req_alloc(struct zh_request_ctx *ctx)
{
    struct zh_request *r = ctx->free_reqs;
    if (!r)
        return zh_calloc(1, sizeof(*r));
    ctx->free_reqs = r->next_free;
    ctx->n_free_reqs--;
    struct zh_buf reason = r->reason, hdr_store = r->hdr_store, rbuf = r->rbuf;
    memset(r, 0, sizeof(*r));
    r->reason = reason;
    r->hdr_store = hdr_store;
    r->rbuf = rbuf;
    return r;
}

static void keep_or_free(struct zh_buf *b)
{
    if (b->cap > REQ_BUF_KEEP)
        zh_buf_free(b);
    else
        zh_buf_reset(b);
}

/* Free r's memory, or keep r (with small response buffers) for the next request. */
static void req_release(struct zh_request_ctx *ctx, struct zh_request *r)
{
    if (ctx->n_free_reqs >= REQ_POOL_MAX) {
        zh_buf_free(&r->reason);
        zh_buf_free(&r->hdr_store);
        zh_buf_free(&r->rbuf);
        zh_free(r);
        return;
    }
    keep_or_free(&r->reason);
    keep_or_free(&r->hdr_store);
    keep_or_free(&r->rbuf);
    r->next_free = ctx->free_reqs;
    ctx->free_reqs = r;
    ctx->n_free_reqs++;
}

static CURL *easy_get(struct zh_request_ctx *ctx)
{
    if (ctx->n_pool > 0)
        return ctx->pool[--ctx->n_pool];
    return curl_easy_init();
}

static void easy_put(struct zh_request_ctx *ctx, CURL *e)
{
    if (!e)
        return;
    if (ctx->n_pool < POOL_MAX) {
        curl_easy_reset(e);
        ctx->pool[ctx->n_pool++] = e;
    } else {
        curl_easy_cleanup(e);
    }
}

static void configure(struct zh_request *r, const struct zh_zhttp_packet *pkt)
{
    const struct zh_request_config *cfg = &r->ctx->cfg;
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     cfg->http2 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_PROXY, cfg->proxy ? cfg->proxy : "");
    curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L); /* never decode behind its back */
    curl_easy_setopt(e, CURLOPT_IPRESOLVE,
                     cfg->allow_ipv6 ? (long)CURL_IPRESOLVE_WHATEVER : (long)CURL_IPRESOLVE_V4);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    if (cfg->connect_timeout_ms)
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->connect_timeout_ms);
    if (cfg->conn_max_age_ms > 0)
        curl_easy_setopt(e, CURLOPT_MAXLIFETIME_CONN, (long)((cfg->conn_max_age_ms + 999) / 1000));
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, opensocket_cb);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, r);
    /* A connection made outside the policy must never serve a checked request, and the other
     * way round: each trust context has a pool of its own (reuse within it is fine). */
    zh_outbound_set_pool(r->ctx->out, e, r->ignore_policies ? ZH_POOL_TRUSTED : ZH_POOL_CHECKED);
    if (r->connect_to)
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, r->connect_to);
    if (pkt->ignore_tls_errors) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    } else if (r->verify_host) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (pkt->client_cert.p && pkt->client_cert.n > 0) {
        /* TLS client authentication (connmgr/Pushpin fields, PEM). curl copies the blobs. Such a
         * connection carries this requester's identity: it never serves another request. */
        struct curl_blob cert = {(void *)(uintptr_t)pkt->client_cert.p, pkt->client_cert.n,
                                 CURL_BLOB_COPY};
        curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cert);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        if (pkt->client_key.p && pkt->client_key.n > 0) {
            struct curl_blob key = {(void *)(uintptr_t)pkt->client_key.p, pkt->client_key.n,
                                    CURL_BLOB_COPY};
            curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &key);
            curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
        }
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    }
    if (r->verify_host || cfg->tls_ca_file) {
        curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_cb);
        curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, r);
    }
    if (r->is_head) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (r->stream_upload) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(e, CURLOPT_READDATA, r);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->upload_len);
        if (strcmp(r->method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    } else if (r->has_post) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->post.len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->post.data ? (const char *)r->post.data : "");
        if (strcmp(r->method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    } else if (strcmp(r->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
}

static bool body_method(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

/* Check the uri as curl will use it; returns the normalised URL or NULL, with its host and port
 * (CURLU_DEFAULT_PORT) in *host_out and *port_out (curl-allocated, NULL when the URL is refused).
 */
static char *check_url(const struct zh_zhttp_packet *pkt, char **host_out, char **port_out)
{
    char *in = zh_strndup((const char *)pkt->uri.p, pkt->uri.n);
    char *out = NULL;
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *full = NULL;
    if (curl_url_set(u, CURLUPART_URL, in, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host[0] &&
        curl_url_get(u, CURLUPART_URL, &full, 0) == CURLUE_OK) {
        out = zh_strdup(full);
        /* The port is optional here: start_hop parses again without it. */
        if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
            port = NULL;
    }
    curl_free(scheme);
    curl_free(full);
    if (out && port) {
        *host_out = host;
        *port_out = port;
    } else {
        curl_free(host);
        curl_free(port);
        *host_out = *port_out = NULL;
    }
    curl_url_cleanup(u);
    zh_free(in);
    return out;
}

struct zh_request *zh_request_new(struct zh_request_ctx *ctx, const struct zh_zhttp_packet *pkt,
                                  const struct zh_request_opts *opts, zh_request_cb *cb, void *data,
                                  const char **cond)
{
    char uri[256];
    if (!pkt->uri.p || pkt->uri.n == 0) {
        zh_info("request refused: no uri");
        *cond = "bad-request";
        return NULL;
    }
    zh_log_escape(uri, sizeof(uri), pkt->uri.p, pkt->uri.n);
    if (span_has_ctl(pkt->uri) || memchr(pkt->uri.p, ' ', pkt->uri.n)) {
        zh_info("request refused: uri '%s' has control characters or spaces", uri);
        *cond = "bad-request";
        return NULL;
    }
    if ((pkt->uri.n >= 5 && strncasecmp((const char *)pkt->uri.p, "ws://", 5) == 0) ||
        (pkt->uri.n >= 6 && strncasecmp((const char *)pkt->uri.p, "wss://", 6) == 0)) {
        zh_info("request refused: %s: WebSocket is not supported here", uri);
        *cond = "bad-request";
        return NULL;
    }
    if (!pkt->method.p || !is_token(pkt->method)) {
        zh_info("request refused: %s: missing or invalid method", uri);
        *cond = "bad-request";
        return NULL;
    }
    if (pkt->method.n == 7 && strncasecmp((const char *)pkt->method.p, "CONNECT", 7) == 0) {
        /* A tunnel through the origin (or a proxy) is not an HTTP exchange we can report on. */
        zh_info("request refused: CONNECT %s: tunnels are not made for handlers", uri);
        *cond = "bad-request";
        return NULL;
    }
    char *url_host, *url_port;
    char *url = check_url(pkt, &url_host, &url_port);
    if (!url) {
        zh_info("request refused: '%s' is not an http(s) URL curl accepts", uri);
        *cond = "bad-request";
        return NULL;
    }
    struct zh_request *r = req_alloc(ctx);
    r->ctx = ctx;
    r->cb = cb;
    r->data = data;
    r->url = url;
    r->url_host = url_host;
    r->url_port = url_port;
    r->method = zh_strndup((const char *)pkt->method.p, pkt->method.n);
    r->is_head = strcmp(r->method, "HEAD") == 0;
    r->follow = pkt->follow_redirects;
    r->max_size = opts->max_size;
    r->window = UINT64_MAX;
    r->upload_len = -1;
    r->stream_upload = opts->stream_upload;
    r->ignore_policies = pkt->ignore_policies && ctx->cfg.allow_ignore_policies;
    zh_defer_init(&r->kick, kick_cb, r);
    ctx->live++;
    set_state(r, RS_READY);

    *cond = NULL;
    if (r->is_head && (pkt->body.n > 0 || opts->stream_upload)) {
        zh_info("request refused: HEAD %s with a body", r->url);
        *cond = "content-not-allowed";
    }
    if (!*cond)
        *cond = build_headers(r, pkt);
    if (!*cond)
        *cond = build_connect_to(r, pkt);
    if (*cond) {
        zh_request_free(r);
        return NULL;
    }
    if (r->stream_upload) {
        zh_buf_append(&r->ubuf, pkt->body.p, pkt->body.n);
        r->upload_total = pkt->body.n;
        if (r->upload_len >= 0 && r->upload_total > (uint64_t)r->upload_len) {
            zh_info("request refused: %s %s: body longer than its Content-Length", r->method,
                    r->url);
            *cond = "bad-request";
            zh_request_free(r);
            return NULL;
        }
    } else if (pkt->body.n > 0 || r->upload_len >= 0 || body_method(r->method)) {
        /* Framed (Content-Length, possibly 0) when there is a body, when the handler gave a
         * Content-Length, or when the method defines a body (RFC 9110 §8.6); DELETE, OPTIONS and
         * the rest go out without one. */
        r->has_post = true;
        zh_buf_append(&r->post, pkt->body.p, pkt->body.n);
    }
    r->easy = easy_get(ctx);
    configure(r, pkt);
    return r;
}

void zh_request_start(struct zh_request *r)
{
    if (r->state == RS_READY)
        start_hop(r);
}

void zh_request_free(struct zh_request *r)
{
    if (!r)
        return;
    struct zh_request_ctx *ctx = r->ctx;
    if (r->state == RS_RUNNING)
        zh_outbound_remove(ctx->out, r->easy);
    if (r->rreq)
        zh_resolve_cancel(r->rreq);
    zh_loop_defer_cancel(ctx->loop, &r->kick);
    easy_put(ctx, r->easy);
    curl_slist_free_all(r->headers);
    curl_slist_free_all(r->connect_to);
    curl_slist_free_all(r->resolve);
    zh_free(r->verify_host);
    zh_free(r->conn_host);
    zh_free(r->target);
    zh_free(r->url);
    curl_free(r->url_host);
    curl_free(r->url_port);
    zh_free(r->method);
    zh_buf_free(&r->post);
    zh_buf_free(&r->ubuf);
    ctx->live--;
    req_release(ctx, r);
}

void zh_request_set_window(struct zh_request *r, uint64_t bytes)
{
    r->window = bytes;
    if (r->recv_paused && r->state == RS_RUNNING && unread(&r->rbuf, r->roff) < bytes)
        zh_loop_defer(r->ctx->loop, &r->kick);
}

struct zh_span zh_request_peek(const struct zh_request *r)
{
    struct zh_span s = {r->rbuf.data ? r->rbuf.data + r->roff : (const uint8_t *)"",
                        unread(&r->rbuf, r->roff)};
    return s;
}

void zh_request_consume(struct zh_request *r, size_t n)
{
    if (n == 0)
        return;
    take(&r->rbuf, &r->roff, n);
    if (r->recv_paused && r->state == RS_RUNNING && unread(&r->rbuf, r->roff) < r->window)
        zh_loop_defer(r->ctx->loop, &r->kick);
}

int zh_request_write_body(struct zh_request *r, const void *p, size_t n, bool more)
{
    if (!r->stream_upload || r->upload_done)
        return ZH_E_PARSE;
    if (r->upload_len >= 0 &&
        (n > (uint64_t)r->upload_len || r->upload_total > (uint64_t)r->upload_len - n))
        return ZH_E_TOO_LARGE;
    r->upload_total += n;
    if (!more)
        r->upload_done = true;
    if (r->upload_dropped) {
        r->sent_pending += n;
        return 0;
    }
    zh_buf_append(&r->ubuf, p, n);
    if (r->send_paused && r->state == RS_RUNNING)
        zh_loop_defer(r->ctx->loop, &r->kick);
    return 0;
}

bool zh_request_upload_open(const struct zh_request *r)
{
    return r->stream_upload && !r->upload_done;
}

uint64_t zh_request_take_sent(struct zh_request *r)
{
    uint64_t n = r->sent_pending;
    r->sent_pending = 0;
    return n;
}

void zh_request_fill_head(const struct zh_request *r, struct zh_zhttp_packet *pkt)
{
    pkt->has |= ZH_ZF_CODE | ZH_ZF_HEADERS;
    pkt->code = r->code;
    pkt->reason.p = r->reason.data ? r->reason.data : (const uint8_t *)"";
    pkt->reason.n = r->reason.len;
    const uint8_t *h = r->hdr_store.data;
    for (size_t i = 0; i < r->n_hdr; i++) {
        size_t nl = strlen((const char *)h);
        size_t vl = strlen((const char *)h + nl + 1);
        pkt->headers[i].name = (struct zh_span){h, nl};
        pkt->headers[i].value = (struct zh_span){h + nl + 1, vl};
        h += nl + vl + 2;
    }
    pkt->n_headers = r->n_hdr;
}

bool zh_request_has_head(const struct zh_request *r)
{
    return r->head_done;
}

bool zh_request_done(const struct zh_request *r)
{
    return r->state == RS_DONE;
}

const char *zh_request_condition(const struct zh_request *r)
{
    return r->cond;
}

const char *zh_request_fail_stage(const struct zh_request *r)
{
    return r->stage;
}

const char *zh_request_fail_reason(const struct zh_request *r)
{
    return r->stage ? r->why : NULL;
}

const char *zh_request_host(const struct zh_request *r, char *buf, size_t size)
{
    const char *p = r->url ? strstr(r->url, "://") : NULL;
    if (!p || size == 0)
        return "-";
    p += 3;
    size_t n = strcspn(p, "/?#");
    const char *at = memchr(p, '@', n);
    if (at) {
        n -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    if (n >= size)
        n = size - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return n ? buf : "-";
}

uint64_t zh_request_received(const struct zh_request *r)
{
    return r->received;
}

const char *zh_request_url(const struct zh_request *r)
{
    return r->url;
}

const char *zh_request_method(const struct zh_request *r)
{
    return r->method;
}

struct zh_request_ctx *zh_request_ctx_new(struct zh_loop *loop, struct zh_outbound *out,
                                          struct zh_resolver *resolver,
                                          const struct zh_request_config *cfg)
{
    struct zh_request_ctx *ctx = zh_calloc(1, sizeof(*ctx));
    ctx->loop = loop;
    ctx->out = out;
    ctx->resolver = resolver;
    ctx->cfg = *cfg;
    return ctx;
}

void zh_request_ctx_set_policy(struct zh_request_ctx *ctx, const struct zh_policy *policy)
{
    ctx->cfg.policy = policy;
}

void zh_request_ctx_free(struct zh_request_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->live)
        zh_warn("request context freed with %u request(s) alive", ctx->live);
    while (ctx->n_pool > 0)
        curl_easy_cleanup(ctx->pool[--ctx->n_pool]);
    while (ctx->free_reqs) {
        struct zh_request *r = ctx->free_reqs;
        ctx->free_reqs = r->next_free;
        zh_buf_free(&r->reason);
        zh_buf_free(&r->hdr_store);
        zh_buf_free(&r->rbuf);
        zh_free(r);
    }
    zh_free(ctx);
}
