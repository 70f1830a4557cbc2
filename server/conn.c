/* Server connections: socket and TLS I/O, deadlines, HTTP/1 heads and responses, and the
 * stream-mode ZHTTP session of each request. Req-mode requests are in reqmode.c; the engine that
 * owns the connections is server.c. See docs/internals/conn-lifecycle.md. */
#include "server/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shared/proto/mem.h"
#include "shared/rt/log.h"

#define READ_BATCH 16
#define CLOSING_LINGER_MS \
    5000 /* at most this long reading and dropping input after our last byte */

static const char *const state_names[] = {"head",     "body",    "request",
                                          "response", "closing", "closed"};

static void conn_process(struct zh_conn *c);
static void conn_read(struct zh_conn *c);
static void hs_done(struct zh_conn *c);

static uint64_t add_ms(uint64_t t, uint64_t d)
{
    return t > UINT64_MAX - d ? UINT64_MAX : t + d;
}

static uint64_t now_ms(const struct zh_conn *c)
{
    return zh_loop_now(c->s->loop);
}

/* ---- state and deadlines ---- */

void zh_conn__set_state(struct zh_conn *c, enum zh_conn_state st)
{
    if (c->state == st)
        return;
    zh_trace("conn %u-%u: %s -> [%s]", c->s->worker, c->slot, state_names[c->state],
             state_names[st]);
    c->state = st;
    if (st == ZH_CONN_CLOSING)
        c->closing_ms = now_ms(c);
    if (st != ZH_CONN_CLOSED)
        zh_conn__arm_timer(c);
}

/* How long a connection may wait for a complete request head: the smaller of --head-timeout and
 * the listener's client timeout (--stream-timeout / --req-timeout), as Condure closes an idle or
 * trickling connection once its listener's timeout passes. */
static uint32_t head_limit_ms(const struct zh_conn *c)
{
    const struct zh_server_config *cfg = &c->s->cfg;
    uint32_t idle = c->req_mode ? cfg->req_timeout_ms : cfg->stream_timeout_ms;
    return idle < cfg->head_timeout_ms ? idle : cfg->head_timeout_ms;
}

static bool output_pending(const struct zh_conn *c);

/* The earliest time something must happen in the current state. last_io_ms moves without
 * re-arming the timer: when it fires early, timer_cb computes this again and re-arms. */
static uint64_t conn_deadline(const struct zh_conn *c)
{
    const struct zh_server_config *cfg = &c->s->cfg;
    uint64_t idle = c->req_mode ? cfg->req_timeout_ms : cfg->stream_timeout_ms;
    uint64_t at = UINT64_MAX;
    switch (c->state) {
    case ZH_CONN_HEAD:
        /* The wait for a head starts at accept or once the previous response is written; bytes
         * of an incomplete head do not extend it. */
        at = output_pending(c) ? add_ms(c->last_io_ms, idle)
                               : add_ms(c->head_start_ms, head_limit_ms(c));
        break;
    case ZH_CONN_BODY:
        at = c->req_deadline_ms;
        break;
    case ZH_CONN_REQUEST:
    case ZH_CONN_RESPONSE:
        if (c->req_mode && c->state == ZH_CONN_REQUEST) {
            at = c->req_deadline_ms;
            break;
        }
        at = add_ms(c->last_io_ms, idle);
        if (!c->req_mode && c->has_session) {
            uint64_t e = zh_session_expires_at(&c->sess);
            if (e < at)
                at = e;
        }
        break;
    case ZH_CONN_CLOSING:
        at = add_ms(c->closing_ms, CLOSING_LINGER_MS);
        break;
    case ZH_CONN_CLOSED:
        break;
    }
    return at;
}

void zh_conn__arm_timer(struct zh_conn *c)
{
    uint64_t at = conn_deadline(c);
    if (at == UINT64_MAX)
        zh_loop_timer_stop(c->s->loop, &c->timer);
    else
        zh_loop_timer_at(c->s->loop, &c->timer, at);
}

/* ---- packets to the handler ---- */

struct zh_zhttp_packet *zh_conn__packet(struct zh_conn *c)
{
    struct zh_zhttp_packet *p = c->s->out_pkt;
    zh_zhttp_packet_init(p);
    p->from = zh_span_str(c->s->cfg.instance_id);
    p->n_ids = 1;
    p->ids[0].id = (struct zh_span){(const uint8_t *)c->id, c->id_len};
    p->has |= ZH_ZF_EXT_MULTI;
    p->ext_multi = true;
    if (!c->req_mode) {
        p->ids[0].has_seq = true;
        p->ids[0].seq = zh_session_take_seq(&c->sess, now_ms(c));
    }
    return p;
}

void zh_conn__send(struct zh_conn *c, enum zh_zsock sock, const struct zh_zhttp_packet *p)
{
    struct zh_buf enc = {0};
    zh_zhttp_encode(p, &enc);
    struct zh_zmsg *m = zh_zmsg_new(sock, enc.len + c->sess.peer_len + 8);
    if (sock == ZH_ZS_S_OUT_STREAM) {
        zh_zmsg_add(&m, c->sess.peer, c->sess.peer_len);
        zh_zmsg_add(&m, NULL, 0);
    } else if (sock == ZH_ZS_S_REQ) {
        zh_zmsg_add(&m, NULL, 0);
    }
    zh_zmsg_add(&m, enc.data, enc.len);
    zh_buf_free(&enc);
    /* The bridge hands back what it cannot deliver; a first packet that no handler takes within
     * --handler-wait is never sent at all. */
    m->flags = ZH_ZMSG_F_NOTIFY;
    if (sock != ZH_ZS_S_OUT_STREAM) {
        uint64_t wait = c->s->cfg.handler_wait_ms;
        if (c->req_mode && c->req_deadline_ms) {
            /* Past --req-timeout the client has its 504: the request must not go out after. */
            uint64_t now = now_ms(c);
            uint64_t left = c->req_deadline_ms > now ? c->req_deadline_ms - now : 0;
            if (left < wait)
                wait = left;
        }
        m->deadline_ms = zh_time_ms() + wait;
    }
    zh_zport_send(c->s->port, m);
}

/* A packet after the first goes through the ROUTER to the handler's address. */
static void send_simple(struct zh_conn *c, enum zh_zhttp_type type)
{
    if (!c->has_session || c->req_mode || !c->sess.peer_len || c->sess.state == ZH_SESS_CLOSED)
        return;
    struct zh_zhttp_packet *p = zh_conn__packet(c);
    p->type = type;
    zh_conn__send(c, ZH_ZS_S_OUT_STREAM, p);
}

static void grant_credits(struct zh_conn *c)
{
    if (!c->has_session || c->req_mode || !c->sess.peer_len || c->sess.state != ZH_SESS_ACTIVE)
        return;
    size_t queued = zh_chunkq_len(&c->out);
    if (c->unacked <= queued)
        return;
    uint64_t g = c->unacked - queued;
    c->unacked -= g;
    c->granted += (int64_t)g;
    struct zh_zhttp_packet *p = zh_conn__packet(c);
    p->type = ZH_ZHTTP_CREDIT;
    p->has |= ZH_ZF_CREDITS;
    p->credits = (int64_t)g;
    zh_conn__send(c, ZH_ZS_S_OUT_STREAM, p);
}

void zh_conn__session_end(struct zh_conn *c)
{
    if (!c->has_session)
        return;
    c->has_session = false;
    c->s->active--;
    zh_session_close(&c->sess);
}

void zh_conn__cancel(struct zh_conn *c)
{
    send_simple(c, ZH_ZHTTP_CANCEL);
    zh_conn__session_end(c);
}

/* ---- output ---- */

void zh_conn__queue(struct zh_conn *c, const void *p, size_t n)
{
    size_t w = 0;
    /* The queue holds a head plus the credits granted, so a full queue means the handler broke
     * flow control; zh_conn_on_packet checks credits before we get here. */
    if (zh_chunkq_write(&c->out, p, n, &w) < 0 && w < n)
        zh_warn("conn %u-%u: output queue full, %zu bytes dropped", c->s->worker, c->slot, n - w);
}

static bool output_pending(const struct zh_conn *c)
{
    return zh_chunkq_len(&c->out) > 0 || c->tail_len > 0;
}

static void set_interest(struct zh_conn *c)
{
    bool want_input = !c->in_eof && (c->state == ZH_CONN_CLOSING || c->in_len < c->in_cap);
    if (output_pending(c) && c->state == ZH_CONN_CLOSING)
        want_input = false; /* read the rest only once our last bytes are out */
    zh_io_set(c->s->loop, &c->io, zh_stream_interest(&c->st, want_input, output_pending(c)));
    /* Bytes TLS already decrypted never make the fd readable again: fetch them now. */
    if (want_input && zh_stream_pending(&c->st))
        zh_loop_defer(c->s->loop, &c->read_defer);
}

/* Our last byte is out: send close_notify and FIN, then read and drop what the client still sends
 * until it closes or the linger time ends, so its unread request bytes don't turn our close into a
 * reset that destroys the response before the client reads it (the "lingering close"). */
static void start_linger(struct zh_conn *c)
{
    if (c->lingering)
        return;
    c->lingering = true;
    zh_stream_shutdown(&c->st);
}

void zh_conn__flush(struct zh_conn *c)
{
    if (c->state == ZH_CONN_CLOSED)
        return;
    bool wrote = false;
    while (output_pending(c)) {
        struct iovec iov[17];
        int n = zh_chunkq_iov(&c->out, iov, 16);
        size_t in_iov = 0;
        for (int i = 0; i < n; i++)
            in_iov += iov[i].iov_len;
        /* The tail follows the queue only when the whole queue is in this call, to keep order. */
        if (c->tail_len && in_iov == zh_chunkq_len(&c->out)) {
            iov[n].iov_base = (void *)(uintptr_t)c->tail;
            iov[n].iov_len = c->tail_len;
            n++;
        }
        ssize_t w = zh_stream_writev(&c->st, iov, n);
        if (w == -EAGAIN)
            break;
        if (w < 0) {
            zh_conn_close(c, zh_stream_error(&c->st, w));
            return;
        }
        if (w == 0)
            break;
        wrote = true;
        size_t q = zh_chunkq_len(&c->out), k = (size_t)w < q ? (size_t)w : q;
        zh_chunkq_consume(&c->out, k);
        size_t t = (size_t)w - k;
        c->tail += t;
        c->tail_len -= t;
    }
    if (wrote) {
        c->last_io_ms = now_ms(c);
        if (c->state == ZH_CONN_HEAD && !output_pending(c)) {
            c->head_start_ms = c->last_io_ms; /* the previous response is out: the wait starts */
            zh_conn__arm_timer(c);
        }
    }
    if (!c->tail_len && c->tail_msg) {
        zh_zmsg_free(c->tail_msg);
        c->tail_msg = NULL;
        c->tail = NULL;
    }
    grant_credits(c);
    if (c->state == ZH_CONN_CLOSING && !output_pending(c)) {
        if (c->in_eof) {
            zh_conn_close(c, NULL);
            return;
        }
        start_linger(c);
    }
    set_interest(c);
}

void zh_conn__simple_response(struct zh_conn *c, int status, const char *text)
{
    zh_conn__session_end(c);
    c->keep_alive = false;
    if (c->tail_len) {
        /* A req-mode body is still being written; nothing can follow it but the close. */
        zh_conn__set_state(c, ZH_CONN_CLOSING);
        zh_conn__flush(c);
        return;
    }
    struct zh_buf b = {0};
    char body[256];
    int bn = snprintf(body, sizeof(body), "%s\n", text);
    if (bn < 0 || (size_t)bn >= sizeof(body))
        bn = 0;
    struct zh_http1_header h = {{"Content-Type", 12}, {"text/plain", 10}};
    struct zh_http1_resp r = {
        .minor_version = c->minor,
        .status = status,
        .headers = &h,
        .num_headers = 1,
        .body = ZH_HTTP1_BODY_LENGTH,
        .content_length = (uint64_t)bn,
        .conn = ZH_HTTP1_CONN_CLOSE,
    };
    if (zh_http1_write_response_head(&b, &r) == 0) {
        zh_conn__queue(c, b.data, b.len);
        if (!c->is_head)
            zh_conn__queue(c, body, (size_t)bn);
    }
    zh_buf_free(&b);
    zh_conn__set_state(c, ZH_CONN_CLOSING);
    zh_conn__flush(c);
}

/* ---- responses ---- */

static bool header_is(struct zh_span n, const char *name)
{
    size_t len = strlen(name);
    return n.n == len && strncasecmp((const char *)n.p, name, len) == 0;
}

/* Is name one of the comma-separated tokens of a Connection header value? */
static bool connection_names(struct zh_span v, struct zh_span name)
{
    size_t i = 0;
    while (i < v.n) {
        while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
            i++;
        size_t b = i;
        while (i < v.n && v.p[i] != ',')
            i++;
        size_t e = i;
        while (e > b && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t'))
            e--;
        if (e - b == name.n && name.n &&
            strncasecmp((const char *)v.p + b, (const char *)name.p, name.n) == 0)
            return true;
    }
    return false;
}

/* Hop-by-hop headers (RFC 9110 section 7.6.1) are about the handler's own hop, never the client's:
 * the fixed list plus every header the handler's Connection header names. Framing is ours. */
static bool hop_by_hop(const struct zh_zhttp_packet *p, struct zh_span n)
{
    static const char *const fixed[] = {"Connection", "Keep-Alive",       "Upgrade",          "TE",
                                        "Trailer",    "Proxy-Connection", "Transfer-Encoding"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (header_is(n, fixed[i]))
            return true;
    for (size_t i = 0; i < p->n_headers; i++)
        if (header_is(p->headers[i].name, "Connection") && connection_names(p->headers[i].value, n))
            return true;
    return false;
}

int zh_conn__status(const struct zh_zhttp_packet *p)
{
    if (!(p->has & ZH_ZF_CODE))
        return 200;
    return p->code >= 100 && p->code <= 599 ? (int)p->code : -1;
}

/* The handler's headers for the client: hop-by-hop ones and Content-Length left out (the length,
 * when valid, goes to *len). Returns the number kept. */
static size_t client_headers(const struct zh_zhttp_packet *p, struct zh_http1_header *hdrs,
                             bool *have_len, uint64_t *len)
{
    size_t nh = 0;
    for (size_t i = 0; i < p->n_headers; i++) {
        struct zh_span n = p->headers[i].name, v = p->headers[i].value;
        if (header_is(n, "Content-Length")) {
            char tmp[24];
            if (v.n > 0 && v.n < sizeof(tmp) && v.p[0] >= '0' && v.p[0] <= '9') {
                memcpy(tmp, v.p, v.n);
                tmp[v.n] = '\0';
                char *end;
                errno = 0;
                unsigned long long x = strtoull(tmp, &end, 10);
                if (*end == '\0' && errno == 0) {
                    *have_len = true;
                    *len = x;
                }
            }
            continue;
        }
        if (hop_by_hop(p, n))
            continue;
        hdrs[nh].name = (struct zh_http1_span){(const char *)n.p, n.n};
        hdrs[nh].value = (struct zh_http1_span){(const char *)v.p, v.n};
        nh++;
    }
    return nh;
}

int zh_conn__interim(struct zh_conn *c, const struct zh_zhttp_packet *p, int code)
{
    const char *refuse = NULL;
    if (c->req_mode)
        refuse = "a 1xx has no meaning in req mode";
    else if (code == 101)
        refuse = "101 without an upgrade request";
    else if (code != 100 && code != 103)
        refuse = "only 100 and 103 are forwarded";
    else if (p->body.n > 0)
        refuse = "a 1xx has no body";
    if (refuse) {
        zh_info("session %.*s: handler sent %d: %s: 502", (int)c->id_len, c->id, code, refuse);
        return -1;
    }
    /* RFC 9110 section 15.2: never to an HTTP/1.0 client; a 100 only to a client that asked for it
     * and has not had one (zhttpd sends it itself once the handler grants credits). */
    const char *drop = NULL;
    if (c->minor < 1)
        drop = "an HTTP/1.0 client";
    else if (code == 100 && !c->expect_continue)
        drop = "a client not waiting for 100 Continue";
    if (drop) {
        zh_info("session %.*s: handler sent %d, not forwarded to %s", (int)c->id_len, c->id, code,
                drop);
        return 0;
    }
    struct zh_http1_header hdrs[ZH_ZHTTP_MAX_HEADERS];
    bool have_len = false;
    uint64_t len = 0;
    struct zh_http1_resp r = {
        .minor_version = c->minor,
        .status = code,
        .headers = hdrs,
        .num_headers = client_headers(p, hdrs, &have_len, &len),
        .body = ZH_HTTP1_BODY_NONE,
        .conn = ZH_HTTP1_CONN_KEEP_ALIVE,
    };
    if (p->reason.p)
        r.reason = (struct zh_http1_span){(const char *)p->reason.p, p->reason.n};
    struct zh_buf b = {0};
    if (zh_http1_write_response_head(&b, &r) < 0) {
        zh_buf_free(&b);
        zh_info("session %.*s: handler sent an invalid %d head: 502", (int)c->id_len, c->id, code);
        return -1;
    }
    if (code == 100)
        c->expect_continue = false;
    zh_conn__queue(c, b.data, b.len);
    zh_buf_free(&b);
    return 0;
}

int zh_conn__response_head(struct zh_conn *c, const struct zh_zhttp_packet *p, bool more)
{
    struct zh_http1_header hdrs[ZH_ZHTTP_MAX_HEADERS];
    bool have_len = false;
    uint64_t len = 0;
    size_t nh = client_headers(p, hdrs, &have_len, &len);
    int code = zh_conn__status(p);
    if (code < 200)
        return -1; /* out of range, or a 1xx: the callers deal with interim responses first */
    /* A response that starts before the request body was read in full ends the connection: the
     * rest of the body cannot be told from a next request. Say so in this head. */
    if (!c->body_done)
        c->keep_alive = false;
    struct zh_http1_resp r = {
        .minor_version = c->minor,
        .status = code,
        .headers = hdrs,
        .num_headers = nh,
        .conn = c->keep_alive ? ZH_HTTP1_CONN_KEEP_ALIVE : ZH_HTTP1_CONN_CLOSE,
    };
    if (p->reason.p)
        r.reason = (struct zh_http1_span){(const char *)p->reason.p, p->reason.n};
    bool no_body = code == 204 || code == 304;
    if (no_body) {
        r.body = ZH_HTTP1_BODY_NONE;
    } else if (!more) {
        r.body = ZH_HTTP1_BODY_LENGTH;
        r.content_length = c->is_head && have_len ? len : p->body.n;
    } else if (have_len) {
        r.body = ZH_HTTP1_BODY_LENGTH;
        r.content_length = len;
    } else if (c->minor >= 1) {
        r.body = ZH_HTTP1_BODY_CHUNKED;
    } else if (c->is_head) {
        r.body = ZH_HTTP1_BODY_NONE; /* no body follows a HEAD answer: no need to close */
    } else {
        /* HTTP/1.0 and no length: only the close can end the body. */
        r.body = ZH_HTTP1_BODY_CLOSE;
        c->keep_alive = false;
        r.conn = ZH_HTTP1_CONN_CLOSE;
    }
    c->resp_body = (c->is_head || no_body) ? ZH_HTTP1_BODY_NONE : r.body;
    c->resp_left = r.content_length;
    struct zh_buf b = {0};
    if (zh_http1_write_response_head(&b, &r) < 0) {
        zh_buf_free(&b);
        return -1;
    }
    zh_conn__queue(c, b.data, b.len);
    zh_buf_free(&b);
    zh_conn__set_state(c, ZH_CONN_RESPONSE);
    return 0;
}

void zh_conn__response_done(struct zh_conn *c)
{
    zh_conn__session_end(c);
    if (!c->keep_alive || !c->body_done || c->s->closing) {
        zh_conn__set_state(c, ZH_CONN_CLOSING);
        zh_conn__flush(c);
        return;
    }
    /* Keep-alive: the next request (maybe already buffered: pipelining) gets a fresh id. */
    c->head_start_ms = now_ms(c);
    zh_conn__set_state(c, ZH_CONN_HEAD);
    zh_conn__flush(c);
    if (c->state == ZH_CONN_HEAD)
        conn_process(c);
}

static void response_body(struct zh_conn *c, struct zh_span body, bool more)
{
    if (body.n > 0 && c->resp_body != ZH_HTTP1_BODY_NONE) {
        size_t n = body.n;
        if (c->resp_body == ZH_HTTP1_BODY_LENGTH && n > c->resp_left)
            n = (size_t)c->resp_left; /* the handler's Content-Length wins; the excess is dropped */
        if (c->resp_body == ZH_HTTP1_BODY_CHUNKED && n > 0) {
            char hdr[ZH_HTTP1_CHUNK_HEADER_MAX];
            size_t hn = zh_http1_format_chunk_header(hdr, n);
            zh_conn__queue(c, hdr, hn);
            zh_conn__queue(c, body.p, n);
            zh_conn__queue(c, "\r\n", 2);
        } else if (n > 0) {
            zh_conn__queue(c, body.p, n);
        }
        if (c->resp_body == ZH_HTTP1_BODY_LENGTH)
            c->resp_left -= n;
    }
    c->unacked += body.n;
    if (!more) {
        if (c->resp_body == ZH_HTTP1_BODY_CHUNKED)
            zh_conn__queue(c, "0\r\n\r\n", 5);
        if (c->resp_body == ZH_HTTP1_BODY_CLOSE ||
            (c->resp_body == ZH_HTTP1_BODY_LENGTH && c->resp_left > 0))
            c->keep_alive = false;
        zh_conn__response_done(c);
        return;
    }
    zh_conn__flush(c);
}

/* ---- the request ---- */

static void format_peer(struct zh_conn *c, const struct zh_accepted *a)
{
    c->peer_addr[0] = '\0';
    c->peer_port = -1;
    if (a->local)
        return;
    if (a->peer.ss_family == AF_INET) {
        const struct sockaddr_in *sa = (const struct sockaddr_in *)&a->peer;
        inet_ntop(AF_INET, &sa->sin_addr, c->peer_addr, sizeof(c->peer_addr));
        c->peer_port = ntohs(sa->sin_port);
    } else if (a->peer.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sa = (const struct sockaddr_in6 *)&a->peer;
        inet_ntop(AF_INET6, &sa->sin6_addr, c->peer_addr, sizeof(c->peer_addr));
        c->peer_port = ntohs(sa->sin6_port);
    }
}

void zh_conn__build_uri(struct zh_conn *c, const struct zh_http1_framing *f, struct zh_buf *uri)
{
    if (c->req.target_form == ZH_HTTP1_ABSOLUTE_FORM) {
        zh_buf_append(uri, c->req.target.p, c->req.target.len);
        return;
    }
    zh_buf_puts(uri, c->tls ? "https://" : "http://");
    if (f->host.p && f->host.len)
        zh_buf_append(uri, f->host.p, f->host.len);
    else
        zh_buf_puts(uri, "localhost");
    if (c->req.target_form == ZH_HTTP1_ORIGIN_FORM)
        zh_buf_append(uri, c->req.target.p, c->req.target.len);
    else
        zh_buf_putc(uri, '/');
}

void zh_conn__request_fields(struct zh_conn *c, struct zh_zhttp_packet *p,
                             const struct zh_http1_header *hdrs, size_t nh,
                             const struct zh_http1_framing *f, struct zh_buf *uri)
{
    zh_conn__build_uri(c, f, uri);
    p->method = (struct zh_span){(const uint8_t *)c->req.method.p, c->req.method.len};
    p->uri = (struct zh_span){uri->data, uri->len};
    p->has |= ZH_ZF_HEADERS;
    if (nh > ZH_ZHTTP_MAX_HEADERS)
        nh = ZH_ZHTTP_MAX_HEADERS;
    for (size_t i = 0; i < nh; i++) {
        p->headers[i].name = (struct zh_span){(const uint8_t *)hdrs[i].name.p, hdrs[i].name.len};
        p->headers[i].value = (struct zh_span){(const uint8_t *)hdrs[i].value.p, hdrs[i].value.len};
    }
    p->n_headers = nh;
    if (c->peer_addr[0]) {
        p->peer_address = zh_span_str(c->peer_addr);
        p->has |= ZH_ZF_PEER_PORT;
        p->peer_port = c->peer_port;
    }
    zh_debug("worker %u: %.*s %.*s -> session %.*s", c->s->worker, (int)c->req.method.len,
             c->req.method.p, (int)uri->len, (const char *)uri->data, (int)c->id_len, c->id);
}

void zh_conn__session_begin(struct zh_conn *c)
{
    struct zh_server *s = c->s;
    /* The counter is the worker's, not the connection's: a slot is reused by later connections
     * and their ids must still never repeat (handlers key sessions by id). */
    c->id_len = (size_t)snprintf(c->id, sizeof(c->id), "%u-%u-%llx", s->worker, c->slot,
                                 (unsigned long long)++s->id_counter);
    zh_session_init(&c->sess, ZH_ROLE_SERVER, &s->cfg.params, now_ms(c));
    c->has_session = true;
    s->active++;
    c->served++;
}

/* Per-request state from the framing decision. */
static void request_begin(struct zh_conn *c, const struct zh_http1_framing *f)
{
    zh_conn__session_begin(c);
    c->minor = c->req.minor_version;
    c->keep_alive = (f->flags & ZH_HTTP1_F_KEEP_ALIVE) != 0 && !c->s->closing;
    c->is_head = c->req.method.len == 4 && memcmp(c->req.method.p, "HEAD", 4) == 0;
    c->req_body = f->body;
    c->body_left = f->body == ZH_HTTP1_BODY_LENGTH ? f->content_length : 0;
    c->body_done = f->body == ZH_HTTP1_BODY_NONE ||
                   (f->body == ZH_HTTP1_BODY_LENGTH && f->content_length == 0);
    c->body_off = 0;
    c->body_ready = 0;
    c->chunk_done = false;
    if (f->body == ZH_HTTP1_BODY_CHUNKED)
        zh_http1_chunked_init(&c->chunked, c->s->cfg.max_header_size);
    c->expect_continue = (f->flags & ZH_HTTP1_F_EXPECT_CONTINUE) && !c->body_done;
    c->resp_body = ZH_HTTP1_BODY_NONE;
    c->unacked = 0;
    c->granted = (int64_t)c->s->cfg.buffer_size;
    c->head_start_ms = 0;
}

/* Stream mode: the first packet goes out on PUSH; the body follows under the handler's credits.
 */
static void start_stream_request(struct zh_conn *c, const struct zh_http1_header *hdrs, size_t nh,
                                 const struct zh_http1_framing *f)
{
    struct zh_zhttp_packet *p = zh_conn__packet(c);
    struct zh_buf uri = {0};
    zh_conn__request_fields(c, p, hdrs, nh, f, &uri);
    p->has |= ZH_ZF_CREDITS | ZH_ZF_STREAM | ZH_ZF_ROUTER_RESP;
    p->credits = (int64_t)c->s->cfg.buffer_size;
    p->stream = true;
    p->router_resp = true;
    if (!c->body_done) {
        p->has |= ZH_ZF_MORE;
        p->more = true;
    }
    zh_conn__send(c, ZH_ZS_S_OUT, p);
    zh_buf_free(&uri);
    zh_conn__set_state(c, ZH_CONN_REQUEST);
}

static void consume_in(struct zh_conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* Remove in[off, off+n) and close the gap. */
static void cut_in(struct zh_conn *c, size_t off, size_t n)
{
    memmove(c->in + off, c->in + off + n, c->in_len - off - n);
    c->in_len -= n;
}

int zh_conn__decode_chunked(struct zh_conn *c)
{
    while (!c->chunk_done && c->body_off + c->body_ready < c->in_len) {
        size_t at = c->body_off + c->body_ready;
        size_t used = 0;
        struct zh_http1_span sp = {0};
        int r = zh_http1_chunked_feed(&c->chunked, c->in + at, c->in_len - at, &used, &sp);
        if (r == ZH_PARSE_ERROR) {
            zh_info("conn %u-%u: bad chunked body: %s", c->s->worker, c->slot,
                    zh_http1_strerror(c->chunked.err));
            zh_conn__cancel(c);
            zh_conn__simple_response(c, zh_http1_err_status(c->chunked.err),
                                     zh_http1_strerror(c->chunked.err));
            return -1;
        }
        if (r == ZH_HTTP1_CHUNKED_DATA) {
            size_t skip = (size_t)(sp.p - (c->in + at));
            cut_in(c, at, skip);
            c->body_ready += sp.len;
            cut_in(c, at + sp.len, used - skip - sp.len);
            continue;
        }
        cut_in(c, at, used);
        if (r == ZH_HTTP1_CHUNKED_DONE)
            c->chunk_done = true;
        else
            break;
    }
    return 0;
}

/* Stream mode: forward buffered request body bytes to the handler as its credits allow. */
static void pump_body(struct zh_conn *c)
{
    if (!c->has_session || c->body_done)
        return;
    if (c->req_body == ZH_HTTP1_BODY_CHUNKED) {
        if (zh_conn__decode_chunked(c) < 0)
            return;
    } else {
        c->body_ready = c->in_len < c->body_left ? c->in_len : (size_t)c->body_left;
    }
    while (c->has_session && !c->body_done && c->sess.peer_len && c->sess.state == ZH_SESS_ACTIVE) {
        size_t allow = c->sess.send_credits > 0 ? (size_t)c->sess.send_credits : 0;
        size_t n = c->body_ready < allow ? c->body_ready : allow;
        bool last = c->req_body == ZH_HTTP1_BODY_CHUNKED ? (c->chunk_done && n == c->body_ready)
                                                         : (n == c->body_left);
        if (n == 0 && !last)
            return;
        struct zh_zhttp_packet *p = zh_conn__packet(c);
        p->body = (struct zh_span){(const uint8_t *)c->in, n};
        if (!last) {
            p->has |= ZH_ZF_MORE;
            p->more = true;
        }
        zh_session_spend(&c->sess, n);
        zh_conn__send(c, ZH_ZS_S_OUT_STREAM, p);
        consume_in(c, n);
        c->body_ready -= n;
        if (c->req_body == ZH_HTTP1_BODY_LENGTH)
            c->body_left -= n;
        if (last)
            c->body_done = true;
    }
}

/* Grow the input buffer for a head larger than one buffer, up to the head limit. */
static void grow_for_head(struct zh_conn *c)
{
    size_t limit = c->s->cfg.max_header_size + 1;
    if (c->in_len < c->in_cap || c->in_cap >= limit)
        return;
    size_t cap = c->in_cap * 2 < limit ? c->in_cap * 2 : limit;
    c->in = zh_realloc(c->in, cap);
    c->in_cap = cap;
}

static bool http_scheme(struct zh_http1_span t)
{
    return (t.len >= 7 && strncasecmp(t.p, "http://", 7) == 0) ||
           (t.len >= 8 && strncasecmp(t.p, "https://", 8) == 0);
}

/* Parse and start the next request, if a whole head is buffered. */
static void process_head(struct zh_conn *c)
{
    if (c->in_len == 0 || c->tail_len > 0)
        return;
    struct zh_http1_header hdrs[ZH_CONN_MAX_HEADERS];
    size_t nh = ZH_CONN_MAX_HEADERS;
    int r = zh_http1_parse_request(&c->req, c->in, c->in_len, c->s->cfg.max_header_size, hdrs, &nh);
    if (r == ZH_PARSE_INCOMPLETE) {
        grow_for_head(c);
        if (c->in_eof)
            zh_conn_close(c, "client closed mid-head");
        else
            zh_conn__flush(c);
        return;
    }
    c->minor = 1;
    c->is_head = false;
    if (r == ZH_PARSE_ERROR) {
        zh_info("conn %u-%u: bad request: %s", c->s->worker, c->slot,
                zh_http1_strerror(c->req.err));
        zh_conn__simple_response(c, zh_http1_err_status(c->req.err), zh_http1_strerror(c->req.err));
        return;
    }
    struct zh_http1_framing f;
    c->minor = c->req.minor_version;
    if (zh_http1_req_framing(&c->req, hdrs, nh, &f) == ZH_PARSE_ERROR) {
        zh_info("conn %u-%u: bad request: %s", c->s->worker, c->slot, zh_http1_strerror(f.err));
        zh_conn__simple_response(c, zh_http1_err_status(f.err), zh_http1_strerror(f.err));
        return;
    }
    const char *refuse = NULL;
    int status = 0;
    if (c->req.target_form == ZH_HTTP1_ABSOLUTE_FORM && !http_scheme(c->req.target)) {
        /* The ZHTTP uri's scheme picks the protocol (ws:// is WebSocket): only http(s) targets
         * may become one. */
        status = 400;
        refuse = zh_http1_strerror(ZH_HTTP1_E_BAD_TARGET);
    } else if (c->s->closing) {
        status = 503;
        refuse = "server shutting down";
    } else if ((f.flags & ZH_HTTP1_F_UPGRADE_WEBSOCKET) && c->req_mode) {
        status = 400;
        refuse = "WebSocket is not available on a req-mode port";
    } else if (f.flags & ZH_HTTP1_F_UPGRADE_WEBSOCKET) {
        status = 501;
        refuse = "WebSocket is not supported yet";
    } else if (f.flags & ZH_HTTP1_F_EXPECT_OTHER) {
        status = 417;
        refuse = "expectation not supported";
    }
    if (refuse) {
        zh_info("conn %u-%u: %.*s refused: %d %s", c->s->worker, c->slot, (int)c->req.method.len,
                c->req.method.p, status, refuse);
        c->is_head = c->req.method.len == 4 && memcmp(c->req.method.p, "HEAD", 4) == 0;
        zh_conn__simple_response(c, status, refuse);
        return;
    }
    request_begin(c, &f);
    if (c->req_mode) {
        zh_conn__req_start(c, &f);
        return;
    }
    start_stream_request(c, hdrs, nh, &f);
    size_t head_len = c->req.head_len;
    zh_http1_req_init(&c->req);
    consume_in(c, head_len);
    zh_conn__flush(c);
}

static void conn_process(struct zh_conn *c)
{
    switch (c->state) {
    case ZH_CONN_HEAD:
        process_head(c);
        break;
    case ZH_CONN_BODY:
        zh_conn__req_body(c);
        break;
    case ZH_CONN_REQUEST:
    case ZH_CONN_RESPONSE:
        if (!c->req_mode)
            pump_body(c);
        zh_conn__flush(c);
        break;
    case ZH_CONN_CLOSING:
    case ZH_CONN_CLOSED:
        break;
    }
}

/* ---- handler packets (stream mode) ---- */

void zh_conn_on_packet(struct zh_conn *c, const struct zh_zhttp_packet *p,
                       const struct zh_zhttp_id *id)
{
    enum zh_session_verdict v = zh_session_on_packet(&c->sess, p, id, now_ms(c));
    switch (v) {
    case ZH_SV_CLOSED:
        return;
    case ZH_SV_SEQ_ERROR:
        zh_info("session %.*s: wrong seq from handler, cancelling", (int)c->id_len, c->id);
        c->sess.state = ZH_SESS_ACTIVE; /* allow the cancel out */
        zh_conn__cancel(c);
        zh_conn_close(c, "seq error");
        return;
    case ZH_SV_TERMINAL:
        zh_info("session %.*s: handler sent %s%s%.*s", (int)c->id_len, c->id,
                zh_zhttp_type_name(p->type), p->condition.p ? " " : "", (int)p->condition.n,
                p->condition.p ? (const char *)p->condition.p : "");
        zh_conn__session_end(c);
        if (c->state == ZH_CONN_REQUEST)
            zh_conn__simple_response(c, 502, "handler failed the request");
        else
            zh_conn_close(c, "handler ended the session");
        return;
    case ZH_SV_HANDOFF_START:
        c->sess.state = ZH_SESS_ACTIVE;
        send_simple(c, ZH_ZHTTP_HANDOFF_PROCEED);
        zh_session_pause(&c->sess);
        zh_conn__arm_timer(c);
        return;
    case ZH_SV_OK:
    case ZH_SV_RESUMED:
        break;
    }
    zh_conn__arm_timer(c);
    if (p->type == ZH_ZHTTP_DATA) {
        if ((int64_t)p->body.n > c->granted) {
            zh_info("session %.*s: handler exceeded its credits, closing", (int)c->id_len, c->id);
            zh_conn__cancel(c);
            zh_conn_close(c, "credits exceeded");
            return;
        }
        c->granted -= (int64_t)p->body.n;
        bool more = (p->has & ZH_ZF_MORE) && p->more;
        if (c->state == ZH_CONN_REQUEST) {
            int code = zh_conn__status(p);
            if (code < 0) {
                zh_info("session %.*s: handler sent status %lld, outside 100-599: 502",
                        (int)c->id_len, c->id, (long long)p->code);
                zh_conn__cancel(c);
                zh_conn__simple_response(c, 502, "invalid response from handler");
                return;
            }
            if (code < 200) {
                /* An interim response: the exchange goes on until the final one. */
                if (zh_conn__interim(c, p, code) < 0) {
                    zh_conn__cancel(c);
                    zh_conn__simple_response(c, 502, "invalid response from handler");
                    return;
                }
                pump_body(c);
                zh_conn__flush(c);
                return;
            }
            /* Answered before the body was asked for: no 100 Continue (the body is not read). */
            c->expect_continue = false;
            if (zh_conn__response_head(c, p, more) < 0) {
                zh_info("session %.*s: handler sent an invalid response head", (int)c->id_len,
                        c->id);
                zh_conn__cancel(c);
                zh_conn__simple_response(c, 502, "invalid response from handler");
                return;
            }
        }
        if (c->state == ZH_CONN_RESPONSE)
            response_body(c, p->body, more);
        return;
    }
    /* credit / keep-alive / resume: the handler is there and takes the body. */
    if (c->expect_continue && c->state == ZH_CONN_REQUEST) {
        c->expect_continue = false;
        zh_conn__queue(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    pump_body(c);
    zh_conn__flush(c);
}

void zh_conn_on_undelivered(struct zh_conn *c, enum zh_zsock sock)
{
    if (!c->has_session)
        return;
    if (sock == ZH_ZS_S_OUT_STREAM) {
        zh_info("session %.*s: handler '%s' unreachable", (int)c->id_len, c->id, c->sess.peer);
        zh_conn__session_end(c); /* no cancel: it could not reach the handler either */
        if (c->state == ZH_CONN_REQUEST)
            zh_conn__simple_response(c, 502, "handler went away");
        else
            zh_conn_close(c, "handler unreachable");
        return;
    }
    /* The first packet: no handler took it within --handler-wait, and it was never sent. */
    if (c->state != ZH_CONN_REQUEST)
        return;
    zh_info("session %.*s: no handler took the request within %u ms: 503", (int)c->id_len, c->id,
            c->s->cfg.handler_wait_ms);
    zh_conn__session_end(c);
    zh_conn__simple_response(c, 503, "no handler available");
}

/* ---- timers ---- */

static void timer_cb(struct zh_timer *t, void *data)
{
    struct zh_conn *c = data;
    ZH_UNUSED(t);
    const struct zh_server_config *cfg = &c->s->cfg;
    uint64_t now = now_ms(c);
    if (now < conn_deadline(c)) {
        zh_conn__arm_timer(c); /* I/O moved the deadline */
        return;
    }
    switch (c->state) {
    case ZH_CONN_HEAD:
        if (output_pending(c)) {
            zh_info("conn %u-%u: client inactive for %u ms, closing", c->s->worker, c->slot,
                    c->req_mode ? cfg->req_timeout_ms : cfg->stream_timeout_ms);
            zh_conn_close(c, NULL);
        } else if (c->in_len == 0) {
            zh_info("conn %u-%u: no request within the head timeout (%u ms), closed", c->s->worker,
                    c->slot, head_limit_ms(c));
            zh_conn_close(c, NULL);
        } else {
            zh_info("conn %u-%u: request head not complete within %u ms: 408", c->s->worker,
                    c->slot, head_limit_ms(c));
            c->minor = 1;
            c->is_head = false;
            zh_conn__simple_response(c, 408, "request head timeout");
        }
        return;
    case ZH_CONN_BODY:
        zh_info("session %.*s: request body not complete within %u ms: 408", (int)c->id_len, c->id,
                cfg->req_timeout_ms);
        zh_conn__simple_response(c, 408, "request body timeout");
        return;
    case ZH_CONN_REQUEST:
    case ZH_CONN_RESPONSE:
        if (c->req_mode && c->state == ZH_CONN_REQUEST) {
            zh_info("session %.*s: no answer from the handler within %u ms: 504", (int)c->id_len,
                    c->id, cfg->req_timeout_ms);
            zh_conn__simple_response(c, 504, "handler timed out");
            return;
        }
        if (c->has_session && !c->req_mode && zh_session_expired(&c->sess, now)) {
            zh_info("session %.*s: handler silent for %u ms, expired", (int)c->id_len, c->id,
                    c->sess.params.expiry_ms);
            zh_conn__cancel(c);
            if (c->state == ZH_CONN_REQUEST)
                zh_conn__simple_response(c, 504, "handler timed out");
            else
                zh_conn_close(c, "session expired");
            return;
        }
        zh_info("conn %u-%u: client inactive for %u ms, closing", c->s->worker, c->slot,
                c->req_mode ? cfg->req_timeout_ms : cfg->stream_timeout_ms);
        zh_conn_close(c, NULL);
        return;
    case ZH_CONN_CLOSING:
        zh_conn_close(c, "linger time over");
        return;
    case ZH_CONN_CLOSED:
        return;
    }
}

/* ---- connection I/O ---- */

void zh_conn_close(struct zh_conn *c, const char *why)
{
    if (c->state == ZH_CONN_CLOSED)
        return;
    if (c->has_session)
        zh_conn__cancel(c); /* the client went away (or we gave up) mid-session */
    if (why)
        zh_debug("conn %u-%u closed: %s", c->s->worker, c->slot, why);
    zh_io_stop(c->s->loop, &c->io);
    zh_loop_timer_stop(c->s->loop, &c->timer);
    zh_loop_defer_cancel(c->s->loop, &c->read_defer);
    hs_done(c);
    zh_stream_close(&c->st);
    zh_conn__set_state(c, ZH_CONN_CLOSED);
    zh_loop_defer(c->s->loop, &c->free_defer);
}

/* Closing: read and drop input until the client closes. */
static void linger_read(struct zh_conn *c)
{
    if (zh_stream_linger(&c->st, READ_BATCH) != -EAGAIN)
        zh_conn_close(c, NULL);
}

/* ---- TLS handshakes in progress (bounded by --max-tls-handshakes) ---- */

static void hs_done(struct zh_conn *c)
{
    if (!c->in_hs)
        return;
    struct zh_server *s = c->s;
    if (c->hs_prev)
        c->hs_prev->hs_next = c->hs_next;
    else
        s->hs_head = c->hs_next;
    if (c->hs_next)
        c->hs_next->hs_prev = c->hs_prev;
    else
        s->hs_tail = c->hs_prev;
    c->hs_prev = c->hs_next = NULL;
    c->in_hs = false;
    zh_server__hs_release(s->cfg.limits);
}

static void hs_note(struct zh_server *s, const char *what)
{
    s->hs_dropped++;
    uint64_t now = zh_loop_now(s->loop);
    if (now < s->hs_log_ms)
        return;
    s->hs_log_ms = now + 1000;
    zh_warn("worker %u: TLS handshakes in progress at the limit (--max-tls-handshakes %u): %s "
            "(%u connection(s) closed at the limit since the last such line)",
            s->worker, s->cfg.limits->_hs_max, what, s->hs_dropped);
    s->hs_dropped = 0;
}

/* Count c's handshake in. At the limit, the oldest handshake in progress on this worker is closed
 * to make room (a client that stalls mid-handshake loses to one that goes on); with none here, c
 * is refused. Returns false when c was closed. */
static bool hs_admit(struct zh_conn *c)
{
    struct zh_server *s = c->s;
    while (!zh_server__hs_take(s->cfg.limits)) {
        struct zh_conn *old = s->hs_head;
        if (!old) {
            hs_note(s, "new connection refused");
            zh_conn_close(c, "TLS handshakes at the limit");
            return false;
        }
        hs_note(s, "oldest handshake closed");
        zh_conn_close(old, "TLS handshake evicted at the limit");
    }
    c->in_hs = true;
    c->hs_prev = s->hs_tail;
    if (s->hs_tail)
        s->hs_tail->hs_next = c;
    else
        s->hs_head = c;
    s->hs_tail = c;
    return true;
}

/* A TLS listener's connection before TLS starts: plain HTTP gets nginx's 400 in clear text; TLS
 * starts (OpenSSL state allocated) once the whole ClientHello record is there. Returns true once
 * the stream runs TLS. */
static bool tls_start(struct zh_conn *c)
{
    if (!c->tls_sniffed) {
        int r = zh_stream_sniff(&c->st);
        if (r == ZH_STREAM_SNIFF_NEED_MORE)
            return false;
        c->tls_sniffed = true;
        if (r == ZH_STREAM_SNIFF_PLAIN) {
            zh_info("conn %u-%u: plain HTTP on a TLS port: 400", c->s->worker, c->slot);
            zh_conn__queue(c, ZH_TLS_PLAIN_HTTP_RESPONSE, sizeof(ZH_TLS_PLAIN_HTTP_RESPONSE) - 1);
            zh_conn__set_state(c, ZH_CONN_CLOSING);
            zh_conn__flush(c);
            return false;
        }
        if (r != ZH_STREAM_SNIFF_TLS) {
            zh_conn_close(c, r == ZH_STREAM_SNIFF_EOF ? "client closed" : strerror(-r));
            return false;
        }
    }
    if (!c->local) {
        int r = zh_stream_hello_ready(&c->st);
        if (r == ZH_STREAM_HELLO_WAIT)
            return false;
        if (r != ZH_STREAM_HELLO_READY) {
            zh_conn_close(c, r == ZH_STREAM_HELLO_EOF ? "client closed mid-ClientHello"
                                                      : strerror(-r));
            return false;
        }
    }
    if (!hs_admit(c))
        return false;
    if (zh_tls_accept(c->s->cfg.tls, c->default_cert, &c->st) < 0) {
        zh_conn_close(c, "no memory for TLS");
        return false;
    }
    return true;
}

static void conn_read(struct zh_conn *c)
{
    if (c->state == ZH_CONN_CLOSING) {
        if (c->lingering)
            linger_read(c);
        return;
    }
    if (c->tls && !zh_stream_is_tls(&c->st) && !tls_start(c))
        return;
    if (!c->in)
        c->in = zh_malloc(c->in_cap); /* only now: an idle or stalled connection holds no buffer */
    bool got = false;
    for (int i = 0; i < READ_BATCH && c->in_len < c->in_cap; i++) {
        ssize_t r = zh_stream_read(&c->st, c->in + c->in_len, c->in_cap - c->in_len);
        if (r == -EAGAIN)
            break;
        if (r < 0) {
            if (zh_stream_is_tls(&c->st) && r == -EPROTO)
                zh_info("conn %u-%u: TLS: %s", c->s->worker, c->slot, zh_stream_error(&c->st, r));
            zh_conn_close(c, zh_stream_error(&c->st, r));
            return;
        }
        if (r == 0) {
            c->in_eof = true;
            break;
        }
        c->in_len += (size_t)r;
        got = true;
    }
    if (got)
        c->last_io_ms = now_ms(c);
    if (c->in_hs && zh_stream_established(&c->st))
        hs_done(c);
    if (c->in_eof &&
        (c->state == ZH_CONN_BODY || c->state == ZH_CONN_REQUEST || c->state == ZH_CONN_RESPONSE)) {
        /* As Condure: a client that closes (even half-closes) while its request is in flight is
         * gone; the handler gets a cancel. */
        zh_conn_close(c, "client closed mid-request");
        return;
    }
    conn_process(c);
    if (c->state == ZH_CONN_HEAD && c->in_eof && c->in_len == 0)
        zh_conn_close(c, "client closed");
    else if (c->state != ZH_CONN_CLOSED)
        set_interest(c);
}

static void conn_io_cb(struct zh_io *io, uint32_t revents, void *data)
{
    struct zh_conn *c = data;
    ZH_UNUSED(io);
    bool had_tail = c->tail_len > 0;
    if (revents & (ZH_EV_WRITE | ZH_EV_ERROR | ZH_EV_HUP)) {
        if (zh_stream_take_read_retry(&c->st)) {
            conn_read(c);
            if (c->state == ZH_CONN_CLOSED)
                return;
        }
        zh_conn__flush(c);
        if (c->state == ZH_CONN_CLOSED)
            return;
    }
    if (revents & (ZH_EV_READ | ZH_EV_HUP | ZH_EV_ERROR)) {
        if (zh_stream_take_write_retry(&c->st)) {
            zh_conn__flush(c);
            if (c->state == ZH_CONN_CLOSED)
                return;
        }
        conn_read(c);
    }
    /* A req-mode body written in full lets a pipelined request start. */
    if (had_tail && !c->tail_len && c->state == ZH_CONN_HEAD && c->in_len)
        conn_process(c);
}

static void read_defer_cb(struct zh_defer *d, void *data)
{
    ZH_UNUSED(d);
    struct zh_conn *c = data;
    if (c->state != ZH_CONN_CLOSED)
        conn_read(c);
}

static void free_defer_cb(struct zh_defer *d, void *data)
{
    ZH_UNUSED(d);
    zh_conn_free(data);
}

void zh_conn_free(struct zh_conn *c)
{
    struct zh_server *s = c->s;
    enum zh_server_kind kind = c->req_mode ? ZH_SERVER_REQ : ZH_SERVER_STREAM;
    s->slots[c->slot] = NULL;
    s->free_slots[s->n_free++] = c->slot;
    hs_done(c);
    zh_chunkq_free(&c->out);
    zh_zmsg_free(c->tail_msg);
    zh_stream_close(&c->st);
    zh_free(c->in);
    zh_free(c);
    zh_server__release(s, kind);
}

void zh_conn_new(struct zh_server *s, struct zh_accepted *a)
{
    if (s->n_free == 0) {
        uint32_t n = s->n_slots ? s->n_slots * 2 : 64;
        s->slots = zh_realloc(s->slots, n * sizeof(*s->slots));
        s->free_slots = zh_realloc(s->free_slots, n * sizeof(*s->free_slots));
        for (uint32_t i = n; i > s->n_slots; i--) {
            s->slots[i - 1] = NULL;
            s->free_slots[s->n_free++] = i - 1;
        }
        s->n_slots = n;
    }
    struct zh_conn *c = zh_calloc(1, sizeof(*c));
    c->s = s;
    c->slot = s->free_slots[--s->n_free];
    s->slots[c->slot] = c;
    zh_stream_init(&c->st, a->fd);
    c->req_mode = a->req_mode;
    c->tls = a->tls;
    c->local = a->local;
    c->default_cert = a->default_cert;
    format_peer(c, a);
    zh_free(a);
    c->in_cap = s->cfg.buffer_size; /* allocated at the first read */
    /* Output holds a response head plus the credits we grant, with chunk framing. */
    zh_chunkq_init(&c->out, &s->pool, (s->cfg.max_header_size + 2 * s->cfg.buffer_size) / 4096 + 4);
    zh_http1_req_init(&c->req);
    zh_io_init(&c->io, c->st.fd, conn_io_cb, c);
    zh_defer_init(&c->free_defer, free_defer_cb, c);
    zh_defer_init(&c->read_defer, read_defer_cb, c);
    zh_timer_init(&c->timer, timer_cb, c);
    c->state = ZH_CONN_HEAD;
    c->last_io_ms = now_ms(c);
    c->head_start_ms = c->last_io_ms; /* the first head is due within the head timeout */
    zh_debug("worker %u: connection %u from %s:%d (%s%s)", s->worker, c->slot,
             c->peer_addr[0] ? c->peer_addr : "local", c->peer_port, c->req_mode ? "req" : "stream",
             c->tls ? ", tls" : "");
    zh_conn__arm_timer(c);
    zh_io_set(s->loop, &c->io, ZH_EV_READ);
}

void zh_conn_shutdown(struct zh_conn *c, bool cancel)
{
    if (c->state == ZH_CONN_CLOSED)
        return;
    if (!cancel) {
        if ((c->state == ZH_CONN_HEAD && c->in_len == 0) ||
            (c->state == ZH_CONN_CLOSING && c->lingering))
            zh_conn_close(c, "shutdown (idle)");
        else
            c->keep_alive = false;
        return;
    }
    if (c->state == ZH_CONN_BODY || c->state == ZH_CONN_REQUEST) {
        zh_conn__cancel(c);
        c->is_head = false;
        zh_conn__simple_response(c, 503, "server shutting down");
        return;
    }
    zh_conn_close(c, "shutdown");
}
