#include "client/wsclient.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "client/connect.h"
#include "shared/proto/err.h"
#include "shared/proto/http1.h"
#include "shared/proto/mem.h"
#include "shared/proto/ws.h"
#include "shared/proto/wsdeflate.h"
#include "shared/rt/log.h"
#include "shared/rt/stream.h"

#define HEAD_MAX        16384         /* the origin's response head */
#define REJECT_BODY_MAX (1024 * 1024) /* a rejection's body we pass on */
#define READ_CHUNK      65536         /* origin bytes buffered at most (plus one read) */
#define CLOSE_TIMEOUT   5000          /* ms the other side has to answer a close */
#define DEFAULT_MAX_MSG (1024 * 1024)
#define COND_BAD        "bad-request"
#define COND_FAILED     "remote-connection-failed"
#define COND_UNDEFINED  "undefined-condition"

struct zh_wsc_ctx {
    struct zh_loop *loop;
    struct zh_connect_ctx *cc;
    struct zh_wsc_config cfg;
    uint8_t rnd[512]; /* mask keys come from here, refilled from getrandom() */
    size_t rnd_off;
    char proxy_host[256]; /* from cfg.proxy ("" = none) */
    uint16_t proxy_port;
    bool proxy_bad; /* cfg.proxy is not an http:// proxy we can tunnel through */
};

enum wstate {
    W_CONNECTING = 0,
    W_HANDSHAKE, /* request written, reading the response head */
    W_REJECT,    /* reading a non-101 answer's body */
    W_OPEN,
    W_ENDING, /* flushing our last bytes, then done */
    W_DONE,
};

struct zh_wsc {
    struct zh_wsc_ctx *ctx;
    const struct zh_wsc_ops *ops;
    void *data;
    enum wstate st;
    struct zh_connect *cn;
    struct zh_stream s;
    bool have_stream, io_on, eof;
    struct zh_io io;
    struct zh_defer kick, fin;
    struct zh_timer timer;
    const char *fin_cond;
    char *label; /* uri for the log */
    char key[25];
    bool offered;
    struct zh_connect_params cp; /* its strings point at host/chost below */
    char host[256], chost[256];
    struct zh_buf in;  /* origin bytes */
    struct zh_buf out; /* bytes for the origin */
    size_t out_off;
    /* response head (W_HANDSHAKE/W_REJECT) */
    struct zh_buf head;
    int code;
    struct zh_span reason;
    size_t nh;
    struct zh_zhttp_header hdrs[ZH_ZHTTP_MAX_HEADERS];
    int64_t body_left; /* -1: to end of stream */
    bool chunked;
    struct zh_http1_chunked ch;
    struct zh_buf body;
    /* open */
    struct zh_ws_parser parser;
    struct zh_ws_sender sender;
    uint8_t out_type;
    struct zh_ws_utf8 out_utf8;
    bool deflate;
    struct zh_wsd_params dp;
    struct zh_wsd wsd;
    struct zh_wsd_inbox inbox; /* inflated messages waiting for credits */
    int64_t granted;           /* credits the handler still has */
    uint64_t unacked;          /* handler payload bytes queued, re-granted once written */
    bool close_sent, close_rcvd;
};

bool zh_wsc_is_ws_uri(struct zh_span uri)
{
    return (uri.n >= 5 && strncasecmp((const char *)uri.p, "ws://", 5) == 0) ||
           (uri.n >= 6 && strncasecmp((const char *)uri.p, "wss://", 6) == 0);
}

/* ---- context ---- */

/* [http://]host[:port][/] (curl's default proxy port 1080). */
static bool parse_proxy(const char *url, char *host, size_t cap, uint16_t *port)
{
    const char *p = url;
    if (strncasecmp(p, "http://", 7) == 0)
        p += 7;
    else if (strstr(p, "://"))
        return false;
    const char *end = p + strcspn(p, "/");
    const char *hend = end, *colon = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb)
            return false;
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
        hend = rb + 1;
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        if (colon)
            hend = colon;
    }
    if (memchr(p, '@', (size_t)(end - p)) || hend == p || (size_t)(hend - p) >= cap)
        return false;
    memcpy(host, p, (size_t)(hend - p));
    host[hend - p] = '\0';
    long v = 1080;
    if (colon) {
        char *e;
        v = strtol(colon + 1, &e, 10);
        if (e != end || v < 1 || v > 65535)
            return false;
    }
    *port = (uint16_t)v;
    return true;
}

struct zh_wsc_ctx *zh_wsc_ctx_new(struct zh_loop *loop, struct zh_resolver *resolver,
                                  const struct zh_policy *policy, const struct zh_wsc_config *cfg,
                                  struct zh_buf *err)
{
    struct zh_connect_ctx_config ccfg = {.tls_ca_file = cfg->tls_ca_file,
                                         .connect_timeout_ms = cfg->connect_timeout_ms};
    struct zh_connect_ctx *cc = zh_connect_ctx_new(loop, resolver, policy, &ccfg, err);
    if (!cc)
        return NULL;
    struct zh_wsc_ctx *ctx = zh_calloc(1, sizeof(*ctx));
    ctx->loop = loop;
    ctx->cc = cc;
    ctx->cfg = *cfg;
    if (!ctx->cfg.max_message)
        ctx->cfg.max_message = DEFAULT_MAX_MSG;
    if (!ctx->cfg.buffer_size)
        ctx->cfg.buffer_size = 200000;
    ctx->rnd_off = sizeof(ctx->rnd);
    if (cfg->proxy && *cfg->proxy)
        ctx->proxy_bad =
            !parse_proxy(cfg->proxy, ctx->proxy_host, sizeof(ctx->proxy_host), &ctx->proxy_port);
    return ctx;
}

void zh_wsc_ctx_free(struct zh_wsc_ctx *ctx)
{
    if (!ctx)
        return;
    zh_connect_ctx_free(ctx->cc);
    zh_free(ctx);
}

void zh_wsc_ctx_set_policy(struct zh_wsc_ctx *ctx, const struct zh_policy *policy)
{
    zh_connect_ctx_set_policy(ctx->cc, policy);
}

/* n fresh random bytes (getrandom in batches: a mask key costs a memcpy). */
static void random_bytes(struct zh_wsc_ctx *ctx, uint8_t *out, size_t n)
{
    if (ctx->rnd_off + n > sizeof(ctx->rnd)) {
        size_t got = 0;
        while (got < sizeof(ctx->rnd)) {
            ssize_t r = getrandom(ctx->rnd + got, sizeof(ctx->rnd) - got, 0);
            if (r < 0 && errno != EINTR) {
                zh_error("getrandom: %s", strerror(errno));
                abort();
            }
            if (r > 0)
                got += (size_t)r;
        }
        ctx->rnd_off = 0;
    }
    memcpy(out, ctx->rnd + ctx->rnd_off, n);
    ctx->rnd_off += n;
}

/* ---- ending ---- */

static void fin_cb(struct zh_defer *d, void *data)
{
    struct zh_wsc *w = data;
    ZH_UNUSED(d);
    w->st = W_DONE;
    w->ops->done(w->data, w->fin_cond); /* the owner frees w */
}

/* End the session: the owner hears condition from the loop. */
static void finish(struct zh_wsc *w, const char *condition)
{
    if (w->st == W_DONE)
        return;
    if (w->io_on) {
        zh_io_stop(w->ctx->loop, &w->io);
        w->io_on = false;
    }
    zh_loop_timer_stop(w->ctx->loop, &w->timer);
    w->fin_cond = condition;
    w->st = W_DONE;
    zh_loop_defer(w->ctx->loop, &w->fin);
}

void zh_wsc_free(struct zh_wsc *w)
{
    if (!w)
        return;
    if (w->cn)
        zh_connect_cancel(w->cn);
    if (w->io_on)
        zh_io_stop(w->ctx->loop, &w->io);
    zh_loop_timer_stop(w->ctx->loop, &w->timer);
    zh_loop_defer_cancel(w->ctx->loop, &w->kick);
    zh_loop_defer_cancel(w->ctx->loop, &w->fin);
    if (w->have_stream)
        zh_stream_close(&w->s);
    if (w->deflate)
        zh_wsd_free(&w->wsd);
    zh_buf_free(&w->in);
    zh_buf_free(&w->out);
    zh_buf_free(&w->head);
    zh_buf_free(&w->body);
    zh_wsd_inbox_free(&w->inbox);
    zh_free(w->label);
    zh_free(w);
}

/* ---- I/O ---- */

static void update_io(struct zh_wsc *w)
{
    if (!w->have_stream || w->st == W_DONE)
        return;
    bool want_in = !w->eof && w->st != W_ENDING && w->in.len < READ_CHUNK;
    bool want_out = w->out_off < w->out.len;
    uint32_t ev = zh_stream_interest(&w->s, want_in, want_out);
    zh_io_set(w->ctx->loop, &w->io, ev);
    w->io_on = true;
}

static void grant(struct zh_wsc *w)
{
    if (!w->unacked || w->st != W_OPEN)
        return;
    struct zh_zhttp_packet *p = w->ops->packet(w->data, ZH_ZHTTP_CREDIT);
    p->has |= ZH_ZF_CREDITS;
    p->credits = (int64_t)w->unacked;
    w->granted += (int64_t)w->unacked;
    w->unacked = 0;
    w->ops->send(w->data, p);
}

/* Write what is queued. Returns false when the connection failed (finish called). */
static bool flush(struct zh_wsc *w)
{
    while (w->out_off < w->out.len) {
        struct iovec iov = {w->out.data + w->out_off, w->out.len - w->out_off};
        ssize_t n = zh_stream_writev(&w->s, &iov, 1);
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            zh_info("ws %s: write: %s", w->label, zh_stream_error(&w->s, n));
            finish(w, COND_FAILED);
            return false;
        }
        w->out_off += (size_t)n;
    }
    if (w->out_off == w->out.len) {
        zh_buf_reset(&w->out);
        w->out_off = 0;
        grant(w);
        if (w->st == W_ENDING) {
            zh_stream_shutdown(&w->s);
            finish(w, NULL);
            return false;
        }
    }
    return true;
}

static void queue_frame(struct zh_wsc *w, bool fin, uint8_t op, bool rsv1, const void *p, size_t n)
{
    uint8_t mask[4];
    random_bytes(w->ctx, mask, sizeof(mask));
    zh_ws_put_frame(&w->out, fin, op, rsv1, p, n, mask);
}

static void queue_close(struct zh_wsc *w, unsigned code, const void *reason, size_t len)
{
    uint8_t mask[4];
    random_bytes(w->ctx, mask, sizeof(mask));
    zh_ws_put_close(&w->out, code, reason, len, mask);
    w->close_sent = true;
}

/* The origin broke the protocol (or we must stop): close frame with code, one try to write it,
 * and a cancel to the handler. */
static void fail_ws(struct zh_wsc *w, unsigned code)
{
    if (!w->close_sent)
        queue_close(w, code, NULL, 0);
    struct iovec iov = {w->out.data + w->out_off, w->out.len - w->out_off};
    if (iov.iov_len)
        (void)zh_stream_writev(&w->s, &iov, 1);
    finish(w, COND_UNDEFINED);
}

/* ---- the handshake ---- */

static bool is_own_header(struct zh_span n)
{
    static const char *const own[] = {"Host",
                                      "Upgrade",
                                      "Connection",
                                      "Keep-Alive",
                                      "TE",
                                      "Trailer",
                                      "Transfer-Encoding",
                                      "Content-Length",
                                      "Proxy-Connection",
                                      "Sec-WebSocket-Key",
                                      "Sec-WebSocket-Version",
                                      "Sec-WebSocket-Extensions",
                                      "Sec-WebSocket-Accept"};
    for (size_t i = 0; i < ZH_ARRAY_SIZE(own); i++)
        if (n.n == strlen(own[i]) && strncasecmp((const char *)n.p, own[i], n.n) == 0)
            return true;
    return false;
}

static bool has_ctl(struct zh_span s)
{
    for (size_t i = 0; i < s.n; i++)
        if (s.p[i] == '\r' || s.p[i] == '\n' || s.p[i] == 0)
            return true;
    return false;
}

/* Split ws[s]://host[:port]/path?query. host keeps IPv6 brackets. Returns false if malformed. */
static bool parse_uri(struct zh_span uri, bool *tls, char *host, size_t hostcap, uint16_t *port,
                      struct zh_span *authority, struct zh_span *path)
{
    const char *p = (const char *)uri.p, *end = p + uri.n;
    *tls = uri.n >= 6 && strncasecmp(p, "wss://", 6) == 0;
    p += *tls ? 6 : 5;
    const char *a = p;
    while (p < end && *p != '/' && *p != '?' && *p != '#')
        p++;
    *authority = (struct zh_span){(const uint8_t *)a, (size_t)(p - a)};
    *path = (struct zh_span){(const uint8_t *)p, (size_t)(end - p)};
    const char *hend = p, *colon = NULL;
    if (memchr(a, '@', (size_t)(p - a)) || a == p)
        return false;
    if (*a == '[') {
        const char *rb = memchr(a, ']', (size_t)(p - a));
        if (!rb)
            return false;
        hend = rb + 1;
        if (hend < p && *hend != ':')
            return false;
        colon = hend < p ? hend : NULL;
    } else {
        colon = memchr(a, ':', (size_t)(p - a));
        if (colon)
            hend = colon;
    }
    long pv = *tls ? 443 : 80;
    if (colon) {
        if (colon + 1 == p || p - colon > 6)
            return false;
        pv = 0;
        for (const char *q = colon + 1; q < p; q++) {
            if (*q < '0' || *q > '9')
                return false;
            pv = pv * 10 + (*q - '0');
        }
        if (pv < 1 || pv > 65535)
            return false;
    }
    size_t hl = (size_t)(hend - a);
    if (hl == 0 || hl >= hostcap)
        return false;
    for (size_t i = 0; i < hl; i++) {
        char c = a[i];
        if ((unsigned char)c <= ' ' || c == '%' || c == '\\')
            return false;
        host[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    host[hl] = '\0';
    *port = (uint16_t)pv;
    return true;
}

static void connect_cb(struct zh_connect *cn, struct zh_connect_result *res, void *data);
static void io_cb(struct zh_io *io, uint32_t revents, void *data);
static void kick_cb(struct zh_defer *d, void *data);
static void timer_cb(struct zh_timer *t, void *data);

struct zh_wsc *zh_wsc_start(struct zh_wsc_ctx *ctx, const struct zh_zhttp_packet *pkt,
                            const struct zh_wsc_ops *ops, void *data, const char **cond)
{
    char label[256], host[256];
    zh_log_escape(label, sizeof(label), pkt->uri.p, pkt->uri.n);
    bool tls;
    uint16_t port;
    struct zh_span auth, path;
    *cond = COND_BAD;
    if (has_ctl(pkt->uri) || memchr(pkt->uri.p, ' ', pkt->uri.n) ||
        !parse_uri(pkt->uri, &tls, host, sizeof(host), &port, &auth, &path)) {
        zh_info("ws request refused: '%s' is not a ws:// or wss:// URL", label);
        return NULL;
    }
    if (pkt->method.p && !(pkt->method.n == 3 && memcmp(pkt->method.p, "GET", 3) == 0)) {
        zh_info("ws request refused: %s: method %.*s (a WebSocket starts with GET)", label,
                (int)pkt->method.n, (const char *)pkt->method.p);
        return NULL;
    }
    if (pkt->body.n || ((pkt->has & ZH_ZF_MORE) && pkt->more)) {
        zh_info("ws request refused: %s: a body in the upgrade request", label);
        return NULL;
    }
    for (size_t i = 0; i < pkt->n_headers; i++) {
        const struct zh_zhttp_header *h = &pkt->headers[i];
        if (!h->name.n || has_ctl(h->name) || has_ctl(h->value) ||
            memchr(h->name.p, ':', h->name.n)) {
            zh_info("ws request refused: %s: header %zu has control characters", label, i);
            return NULL;
        }
    }
    if (ctx->proxy_bad) {
        zh_info("ws request refused: %s: proxy '%s' is not an http:// proxy (WebSocket goes "
                "through an HTTP CONNECT tunnel)",
                label, ctx->cfg.proxy);
        *cond = COND_FAILED;
        return NULL;
    }
    struct zh_wsc *w = zh_calloc(1, sizeof(*w));
    w->ctx = ctx;
    w->ops = ops;
    w->data = data;
    w->label = zh_strdup(label);
    zh_defer_init(&w->kick, kick_cb, w);
    zh_defer_init(&w->fin, fin_cb, w);
    zh_timer_init(&w->timer, timer_cb, w);

    /* The request head, written once connected. */
    uint8_t k[16];
    random_bytes(ctx, k, sizeof(k));
    zh_ws_base64(k, sizeof(k), w->key);
    struct zh_buf *b = &w->out;
    zh_buf_puts(b, "GET ");
    if (path.n == 0 || path.p[0] != '/')
        zh_buf_putc(b, '/');
    const uint8_t *hash = memchr(path.p, '#', path.n);
    zh_buf_append(b, path.p, hash ? (size_t)(hash - path.p) : path.n);
    zh_buf_puts(b, " HTTP/1.1\r\nHost: ");
    zh_buf_append(b, auth.p, auth.n);
    zh_buf_printf(b,
                  "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                  "Sec-WebSocket-Key: %s\r\n",
                  w->key);
    if (ctx->cfg.compression) {
        zh_buf_printf(b, "Sec-WebSocket-Extensions: %s\r\n", zh_wsd_client_offer());
        w->offered = true;
    }
    for (size_t i = 0; i < pkt->n_headers; i++) {
        const struct zh_zhttp_header *h = &pkt->headers[i];
        if (is_own_header(h->name))
            continue;
        zh_buf_append(b, h->name.p, h->name.n);
        zh_buf_puts(b, ": ");
        zh_buf_append(b, h->value.p, h->value.n);
        zh_buf_puts(b, "\r\n");
    }
    zh_buf_puts(b, "\r\n");

    memcpy(w->host, host, sizeof(w->host));
    if (pkt->connect_host.n && pkt->connect_host.n < sizeof(w->chost))
        memcpy(w->chost, pkt->connect_host.p, pkt->connect_host.n);
    w->cp = (struct zh_connect_params){
        .host = w->host,
        .port = port,
        .connect_host = w->chost[0] ? w->chost : NULL,
        .connect_port = (pkt->has & ZH_ZF_CONNECT_PORT) ? (uint16_t)pkt->connect_port : 0,
        .tls = tls,
        .ignore_tls_errors = pkt->ignore_tls_errors,
        .trust_connect_host = pkt->trust_connect_host,
        .ignore_policies = pkt->ignore_policies && ctx->cfg.allow_ignore_policies,
        .proxy_host = ctx->proxy_host[0] ? ctx->proxy_host : NULL,
        .proxy_port = ctx->proxy_port,
    };
    *cond = NULL;
    return w;
}

void zh_wsc_connect(struct zh_wsc *w)
{
    if (w->cn || w->have_stream || w->st != W_CONNECTING)
        return;
    zh_debug("ws %s: connecting", w->label);
    w->cn = zh_connect_start(w->ctx->cc, &w->cp, connect_cb, w);
}

static void connect_cb(struct zh_connect *cn, struct zh_connect_result *res, void *data)
{
    struct zh_wsc *w = data;
    ZH_UNUSED(cn);
    w->cn = NULL;
    if (res->status) {
        zh_info("ws %s: %s (%s)", w->label, res->condition, res->detail ? res->detail : "");
        finish(w, res->condition);
        return;
    }
    zh_connect_take(res, &w->s);
    w->have_stream = true;
    zh_io_init(&w->io, w->s.fd, io_cb, w);
    w->st = W_HANDSHAKE;
    if (flush(w))
        update_io(w);
}

static bool token_in(struct zh_span v, const char *tok)
{
    size_t tl = strlen(tok), i = 0;
    while (i < v.n) {
        while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
            i++;
        size_t s = i;
        while (i < v.n && v.p[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp((const char *)v.p + s, tok, tl) == 0)
            return true;
    }
    return false;
}

static const struct zh_zhttp_header *find_header(struct zh_wsc *w, const char *name, int *count)
{
    const struct zh_zhttp_header *f = NULL;
    *count = 0;
    for (size_t i = 0; i < w->nh; i++)
        if (w->hdrs[i].name.n == strlen(name) &&
            strncasecmp((const char *)w->hdrs[i].name.p, name, w->hdrs[i].name.n) == 0) {
            if (!f)
                f = &w->hdrs[i];
            (*count)++;
        }
    return f;
}

/* Parse the head in w->head (ends with CRLF CRLF). Returns false if malformed. */
static bool parse_head(struct zh_wsc *w)
{
    char *p = (char *)w->head.data, *end = p + w->head.len;
    char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol || eol - p < 12 || strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ')
        return false;
    int code = 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        code = code * 10 + (p[i] - '0');
    }
    w->code = code;
    char *r = p + 12, *re = eol;
    if (re > r && re[-1] == '\r')
        re--;
    while (r < re && *r == ' ')
        r++;
    w->reason = (struct zh_span){(const uint8_t *)r, (size_t)(re - r)};
    w->nh = 0;
    for (p = eol + 1; p < end;) {
        eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            return false;
        char *le = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
        if (le == p)
            break; /* the empty line */
        if (*p == ' ' || *p == '\t' || w->nh == ZH_ZHTTP_MAX_HEADERS)
            return false; /* obsolete folding, or too many */
        char *c = memchr(p, ':', (size_t)(le - p));
        if (!c || c == p)
            return false;
        char *v = c + 1, *ve = le;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        w->hdrs[w->nh].name = (struct zh_span){(const uint8_t *)p, (size_t)(c - p)};
        w->hdrs[w->nh].value = (struct zh_span){(const uint8_t *)v, (size_t)(ve - v)};
        w->nh++;
        p = eol + 1;
    }
    return true;
}

static void fill_head(struct zh_wsc *w, struct zh_zhttp_packet *p)
{
    p->has |= ZH_ZF_CODE | ZH_ZF_HEADERS;
    p->code = w->code;
    p->reason = w->reason;
    p->n_headers = w->nh;
    memcpy(p->headers, w->hdrs, w->nh * sizeof(w->hdrs[0]));
}

static void send_rejection(struct zh_wsc *w)
{
    struct zh_zhttp_packet *p = w->ops->packet(w->data, ZH_ZHTTP_ERROR);
    p->condition = zh_span_str("rejected");
    fill_head(w, p);
    p->body = (struct zh_span){w->body.data, w->body.len};
    zh_info("ws %s: the origin answered %d: rejected", w->label, w->code);
    w->ops->send(w->data, p);
    finish(w, NULL);
}

/* A 101: check it and open the session. Returns false on failure (finish called). */
static bool accept_101(struct zh_wsc *w)
{
    int n;
    const struct zh_zhttp_header *u = find_header(w, "Upgrade", &n);
    const struct zh_zhttp_header *c = find_header(w, "Connection", &n);
    const struct zh_zhttp_header *a = find_header(w, "Sec-WebSocket-Accept", &n);
    char want[29];
    zh_ws_accept(w->key, strlen(w->key), want);
    const char *why = NULL;
    if (!u || !token_in(u->value, "websocket"))
        why = "no Upgrade: websocket";
    else if (!c || !token_in(c->value, "upgrade"))
        why = "no Connection: Upgrade";
    else if (!a || n != 1 || a->value.n != 28 || memcmp(a->value.p, want, 28) != 0)
        why = "a wrong Sec-WebSocket-Accept";
    const struct zh_zhttp_header *x = find_header(w, "Sec-WebSocket-Extensions", &n);
    if (!why && x) {
        if (!w->offered || n != 1)
            why = "an extension we did not offer";
        else if (zh_wsd_client_accept((const char *)x->value.p, x->value.n, &w->dp, &why) < 0)
            ;
        else if (zh_wsd_init(&w->wsd, &w->dp, false) < 0)
            why = "zlib refused the negotiated parameters";
        else
            w->deflate = true;
    }
    if (why) {
        zh_warn("ws %s: bad handshake response from the origin: %s", w->label, why);
        finish(w, COND_UNDEFINED);
        return false;
    }
    zh_ws_parser_init(&w->parser, false, w->deflate, w->ctx->cfg.max_message);
    w->st = W_OPEN;
    w->granted = (int64_t)w->ctx->cfg.buffer_size;
    struct zh_zhttp_packet *p = w->ops->packet(w->data, ZH_ZHTTP_DATA);
    fill_head(w, p);
    p->has |= ZH_ZF_CREDITS;
    p->credits = w->granted;
    zh_debug("ws %s: open%s", w->label, w->deflate ? " (permessage-deflate)" : "");
    w->ops->send(w->data, p);
    return true;
}

/* W_HANDSHAKE: look for the end of the head in w->in. */
static bool on_head(struct zh_wsc *w)
{
    uint8_t *d = w->in.data;
    size_t n = w->in.len, end = 0;
    for (size_t i = 0; i + 1 < n && !end; i++) {
        if (d[i] == '\n' && d[i + 1] == '\n')
            end = i + 2;
        else if (d[i] == '\n' && i + 2 < n && d[i + 1] == '\r' && d[i + 2] == '\n')
            end = i + 3;
    }
    if (!end) {
        if (n > HEAD_MAX || w->eof) {
            zh_info("ws %s: %s before a whole response head", w->label,
                    w->eof ? "the origin closed" : "16 KB");
            finish(w, COND_FAILED);
            return false;
        }
        return true;
    }
    zh_buf_append(&w->head, d, end);
    memmove(d, d + end, n - end);
    w->in.len = n - end;
    if (!parse_head(w)) {
        zh_info("ws %s: malformed response head from the origin", w->label);
        finish(w, COND_FAILED);
        return false;
    }
    if (w->code == 101)
        return accept_101(w);
    if (w->code < 200) {
        zh_info("ws %s: interim answer %d to an upgrade", w->label, w->code);
        finish(w, COND_FAILED);
        return false;
    }
    /* The rejection's body: Content-Length, chunked, or to the end of the stream. */
    int cnt;
    const struct zh_zhttp_header *te = find_header(w, "Transfer-Encoding", &cnt);
    const struct zh_zhttp_header *cl = find_header(w, "Content-Length", &cnt);
    w->body_left = -1;
    if (te && token_in(te->value, "chunked")) {
        w->chunked = true;
        zh_http1_chunked_init(&w->ch, 8192);
    } else if (cl) {
        int64_t v = 0;
        for (size_t i = 0; i < cl->value.n; i++) {
            if (cl->value.p[i] < '0' || cl->value.p[i] > '9' || v > INT64_MAX / 20) {
                zh_info("ws %s: bad Content-Length in the rejection", w->label);
                finish(w, COND_FAILED);
                return false;
            }
            v = v * 10 + (cl->value.p[i] - '0');
        }
        w->body_left = v;
    }
    if (w->code == 204 || w->code == 304)
        w->body_left = 0;
    w->st = W_REJECT;
    return true;
}

/* W_REJECT: collect the body. */
static bool on_reject_body(struct zh_wsc *w)
{
    size_t off = 0;
    bool done = false;
    while (off < w->in.len && !done) {
        const uint8_t *d = w->in.data + off;
        size_t n = w->in.len - off, take = n;
        if (w->chunked) {
            struct zh_http1_span s;
            size_t used = 0;
            int rc = zh_http1_chunked_feed(&w->ch, (const char *)d, n, &used, &s);
            off += used;
            if (rc == ZH_HTTP1_CHUNKED_DATA)
                zh_buf_append(&w->body, s.p, s.len);
            else if (rc == ZH_HTTP1_CHUNKED_DONE)
                done = true;
            else if (rc != ZH_PARSE_INCOMPLETE) {
                zh_info("ws %s: bad chunked rejection body", w->label);
                finish(w, COND_FAILED);
                return false;
            }
        } else {
            if (w->body_left >= 0 && (int64_t)take > w->body_left)
                take = (size_t)w->body_left;
            zh_buf_append(&w->body, d, take);
            off += take;
            if (w->body_left >= 0) {
                w->body_left -= (int64_t)take;
                done = w->body_left == 0;
            }
        }
        if (w->body.len > REJECT_BODY_MAX) {
            zh_info("ws %s: rejection body over %d bytes", w->label, REJECT_BODY_MAX);
            finish(w, "rejection-too-large");
            return false;
        }
    }
    w->in.len = 0;
    if (!w->chunked && w->body_left == 0)
        done = true;
    if (w->eof && !done) {
        if (w->chunked || w->body_left > 0) {
            zh_info("ws %s: the origin closed inside the rejection body", w->label);
            finish(w, COND_FAILED);
            return false;
        }
        done = true;
    }
    if (done) {
        send_rejection(w);
        return false;
    }
    return true;
}

/* ---- open: origin -> handler ---- */

static void send_data(struct zh_wsc *w, uint8_t type, const uint8_t *d, size_t n, bool more)
{
    struct zh_zhttp_packet *p = w->ops->packet(w->data, ZH_ZHTTP_DATA);
    if (type == ZH_WS_BINARY)
        p->content_type = zh_span_str("binary");
    p->body = (struct zh_span){d, n};
    if (more) {
        p->has |= ZH_ZF_MORE;
        p->more = true;
    }
    w->ops->spend(w->data, n);
    w->ops->send(w->data, p);
}

/* Inflated bytes go to the handler as its credits allow. Returns true when none are left. */
static bool drain_pending(struct zh_wsc *w)
{
    const uint8_t *d;
    size_t n;
    bool more;
    while (zh_wsd_inbox_next(&w->inbox, w->ops->credits(w->data), &d, &n, &more)) {
        send_data(w, w->inbox.type, d, n, more);
        zh_wsd_inbox_consume(&w->inbox, n, more);
    }
    if (zh_wsd_inbox_pending(&w->inbox))
        return false;
    zh_wsd_inbox_trim(&w->inbox, 4 * w->ctx->cfg.buffer_size);
    return true;
}

static unsigned inflate_piece(struct zh_wsc *w, const struct zh_ws_event *ev)
{
    const char *why;
    unsigned code =
        zh_wsd_inbox_feed(&w->inbox, &w->wsd, ev->opcode, ev->message_start, ev->message_end,
                          ev->data, ev->len, w->ctx->cfg.max_message, &why);
    if (code)
        zh_info("ws %s: %s: closing with %u", w->label, why, code);
    return code;
}

/* Returns false when the session is ending. */
static bool to_handler(struct zh_wsc *w, const struct zh_ws_event *ev)
{
    if (ev->kind == ZH_WS_EV_DATA && ev->compressed) {
        unsigned code = inflate_piece(w, ev);
        if (code) {
            fail_ws(w, code);
            return false;
        }
        drain_pending(w);
        return true;
    }
    if (ev->kind == ZH_WS_EV_DATA) {
        send_data(w, ev->opcode, ev->data, ev->len, !ev->message_end);
        return true;
    }
    struct zh_zhttp_packet *p;
    if (ev->opcode == ZH_WS_PING || ev->opcode == ZH_WS_PONG) {
        p = w->ops->packet(w->data, ev->opcode == ZH_WS_PING ? ZH_ZHTTP_PING : ZH_ZHTTP_PONG);
        p->body = (struct zh_span){ev->data, ev->len};
        w->ops->send(w->data, p);
        return true;
    }
    p = w->ops->packet(w->data, ZH_ZHTTP_CLOSE);
    if (ev->close_code != ZH_WS_CLOSE_NO_STATUS) {
        p->has |= ZH_ZF_CODE;
        p->code = ev->close_code;
    }
    p->body = (struct zh_span){ev->reason, ev->reason_len};
    w->ops->send(w->data, p);
    w->close_rcvd = true;
    if (w->close_sent) {
        w->st = W_ENDING; /* both sides closed: flush and end */
        return false;
    }
    /* The handler answers with its close; if it does not, we do after CLOSE_TIMEOUT. */
    zh_loop_timer_start(w->ctx->loop, &w->timer, CLOSE_TIMEOUT);
    return false;
}

static void pump_in(struct zh_wsc *w)
{
    size_t off = 0;
    while (w->st == W_OPEN && !w->close_rcvd) {
        if (!drain_pending(w) || off >= w->in.len)
            break;
        int64_t cr = w->ops->credits(w->data);
        w->parser.piece_limit = cr > 0 ? (uint64_t)cr : 0;
        struct zh_ws_event ev;
        int rc = zh_ws_parse(&w->parser, w->in.data + off, w->in.len - off, &ev);
        if (rc < 0) {
            zh_info("ws %s: WebSocket protocol error from the origin: %s: closing with %u",
                    w->label, w->parser.error, w->parser.close_code);
            fail_ws(w, w->parser.close_code);
            return;
        }
        off += (size_t)rc;
        if (ev.kind == ZH_WS_EV_NONE) {
            if (rc == 0)
                break;
            continue;
        }
        if (!to_handler(w, &ev))
            break;
    }
    if (w->close_rcvd)
        off = w->in.len; /* nothing after a close frame counts */
    if (off) {
        memmove(w->in.data, w->in.data + off, w->in.len - off);
        w->in.len -= off;
    }
    if (w->st == W_OPEN && w->eof && !w->close_rcvd) {
        zh_info("ws %s: the origin closed the connection without a close frame", w->label);
        finish(w, COND_FAILED);
    }
}

/* ---- the loop ---- */

static void run(struct zh_wsc *w)
{
    if (w->st == W_HANDSHAKE && !on_head(w))
        return;
    if (w->st == W_REJECT && !on_reject_body(w))
        return;
    if (w->st == W_OPEN)
        pump_in(w);
    if (w->st == W_DONE)
        return;
    if (!flush(w))
        return;
    update_io(w);
}

static void read_some(struct zh_wsc *w)
{
    while (!w->eof && w->in.len < READ_CHUNK) {
        zh_buf_reserve(&w->in, READ_CHUNK);
        ssize_t n = zh_stream_read(&w->s, w->in.data + w->in.len, w->in.cap - w->in.len);
        if (n == -EAGAIN)
            return;
        if (n <= 0) {
            if (n < 0)
                zh_info("ws %s: read: %s", w->label, zh_stream_error(&w->s, n));
            w->eof = true;
            return;
        }
        w->in.len += (size_t)n;
    }
}

static void io_cb(struct zh_io *io, uint32_t revents, void *data)
{
    struct zh_wsc *w = data;
    ZH_UNUSED(io);
    if (w->st == W_DONE)
        return;
    if ((revents & (ZH_EV_WRITE | ZH_EV_ERROR | ZH_EV_HUP)) || zh_stream_take_write_retry(&w->s)) {
        if (!flush(w))
            return;
    }
    if (w->st != W_ENDING)
        read_some(w);
    run(w);
}

static void kick_cb(struct zh_defer *d, void *data)
{
    ZH_UNUSED(d);
    struct zh_wsc *w = data;
    if (w->st == W_DONE || !w->have_stream)
        return;
    if (zh_stream_pending(&w->s))
        read_some(w);
    run(w);
}

static void timer_cb(struct zh_timer *t, void *data)
{
    struct zh_wsc *w = data;
    ZH_UNUSED(t);
    if (w->close_rcvd && !w->close_sent) {
        zh_info("ws %s: the handler did not answer the origin's close within %d ms", w->label,
                CLOSE_TIMEOUT);
        queue_close(w, ZH_WS_CLOSE_NO_STATUS, NULL, 0);
        w->st = W_ENDING;
        if (flush(w))
            update_io(w);
        return;
    }
    zh_info("ws %s: the origin did not answer our close within %d ms", w->label, CLOSE_TIMEOUT);
    finish(w, COND_UNDEFINED);
}

/* ---- open: handler -> origin ---- */

static void emit(struct zh_wsc *w, uint8_t type, const uint8_t *p, size_t n, bool more)
{
    bool first = !zh_ws_sender_in_message(&w->sender);
    uint8_t op = zh_ws_sender_next(&w->sender, type, more);
    if (!w->deflate) {
        queue_frame(w, !more, op, false, p, n);
        return;
    }
    struct zh_buf z = {0};
    if (zh_wsd_deflate(&w->wsd, p, n, !more, &z) < 0) {
        zh_buf_free(&z);
        fail_ws(w, ZH_WS_CLOSE_INTERNAL);
        return;
    }
    queue_frame(w, !more, op, first, z.data, z.len);
    zh_buf_free(&z);
}

void zh_wsc_on_packet(struct zh_wsc *w, const struct zh_zhttp_packet *p)
{
    if (w->st == W_DONE || w->st == W_ENDING)
        return;
    bool more = (p->has & ZH_ZF_MORE) && p->more;
    if (w->st != W_OPEN) {
        if (p->type == ZH_ZHTTP_DATA || p->type == ZH_ZHTTP_CLOSE || p->type == ZH_ZHTTP_PING ||
            p->type == ZH_ZHTTP_PONG)
            zh_info("ws %s: handler sent %s before the connection was open: refused", w->label,
                    p->type == ZH_ZHTTP_DATA ? "data" : zh_zhttp_type_name(p->type));
        return;
    }
    switch (p->type) {
    case ZH_ZHTTP_DATA: {
        if ((int64_t)p->body.n > w->granted) {
            zh_info("ws %s: handler exceeded its credits (%zu > %lld), closing", w->label,
                    p->body.n, (long long)w->granted);
            fail_ws(w, ZH_WS_CLOSE_INTERNAL);
            return;
        }
        w->granted -= (int64_t)p->body.n;
        w->unacked += p->body.n;
        if (w->close_sent) {
            zh_info("ws %s: handler sent data after its close: refused", w->label);
            return;
        }
        bool bin = p->content_type.n == 6 && memcmp(p->content_type.p, "binary", 6) == 0;
        uint8_t type = bin ? ZH_WS_BINARY : ZH_WS_TEXT;
        if (!zh_ws_sender_in_message(&w->sender)) {
            w->out_type = type;
            memset(&w->out_utf8, 0, sizeof(w->out_utf8));
        }
        if (w->out_type == ZH_WS_TEXT && (zh_ws_utf8_feed(&w->out_utf8, p->body.p, p->body.n) < 0 ||
                                          (!more && !zh_ws_utf8_done(&w->out_utf8)))) {
            zh_info("ws %s: handler sent text that is not UTF-8: refused", w->label);
            memset(&w->out_utf8, 0, sizeof(w->out_utf8));
            if (zh_ws_sender_in_message(&w->sender))
                emit(w, w->out_type, NULL, 0, false); /* end it as it was */
            break;
        }
        emit(w, w->out_type, p->body.p, p->body.n, more);
        break;
    }
    case ZH_ZHTTP_CLOSE: {
        if (w->close_sent)
            return;
        unsigned code = ZH_WS_CLOSE_NO_STATUS;
        if (p->has & ZH_ZF_CODE) {
            if (p->code < 0 || p->code > 65535 || !zh_ws_close_code_valid((unsigned)p->code)) {
                zh_info("ws %s: handler sent close code %lld, which may not be sent: refused",
                        w->label, (long long)p->code);
                return;
            }
            code = (unsigned)p->code;
        }
        if (!zh_ws_utf8_valid(p->body.p, p->body.n)) {
            zh_info("ws %s: handler sent a close reason that is not UTF-8: refused", w->label);
            return;
        }
        queue_close(w, code, p->body.p, p->body.n);
        if (w->close_rcvd) {
            zh_loop_timer_stop(w->ctx->loop, &w->timer);
            w->st = W_ENDING;
        } else {
            zh_loop_timer_start(w->ctx->loop, &w->timer, CLOSE_TIMEOUT);
        }
        break;
    }
    case ZH_ZHTTP_PING:
    case ZH_ZHTTP_PONG:
        if (w->close_sent)
            return;
        if (p->body.n > ZH_WS_MAX_CONTROL) {
            zh_info("ws %s: handler sent a %s over 125 bytes: refused", w->label,
                    zh_zhttp_type_name(p->type));
            return;
        }
        queue_frame(w, true, p->type == ZH_ZHTTP_PING ? ZH_WS_PING : ZH_WS_PONG, false, p->body.p,
                    p->body.n);
        break;
    default: /* credit, keep-alive: more origin data may go now */
        break;
    }
    if (w->st != W_DONE)
        zh_loop_defer(w->ctx->loop, &w->kick);
}
