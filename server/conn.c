/* Server connections: the life of one accepted connection (new, close, free, shutdown), its
 * transport (a shared/rt stream: plain, or TLS once the ClientHello is whole, under the
 * --max-tls-handshakes bound), its output queue, its states and deadlines, and the dispatch of
 * its input to the request reader. The other jobs are in input.c (request head and body),
 * response.c (HTTP/1 responses), handler.c (packets to the handler), streammode.c and reqmode.c
 * (the two modes); the engine that owns the slots is server.c. See
 * docs/internals/conn-lifecycle.md. */
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
#include "shared/rt/accesslog.h"
#include "shared/rt/log.h"
#include "shared/rt/metrics.h"

#define READ_BATCH 16
#define CLOSING_LINGER_MS \
    5000 /* at most this long reading and dropping input after our last byte */

static const char *const state_names[] = {"head", "body",    "request", "response",
                                          "ws",   "closing", "closed"};

static void conn_read(struct zh_conn *c);
static void hs_done(struct zh_conn *c);

static uint64_t add_ms(uint64_t t, uint64_t d)
{
    return t > UINT64_MAX - d ? UINT64_MAX : t + d;
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
        c->closing_ms = zh_conn__now(c);
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
    case ZH_CONN_WS:
        at = zh_wsmode_deadline(c);
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

/* ---- output ---- */

void zh_conn__queue(struct zh_conn *c, const void *p, size_t n)
{
    size_t w = 0;
    /* The queue holds a head plus the credits granted, so a full queue means the handler broke
     * flow control; zh_streammode_on_packet checks credits before we get here. */
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
        c->last_io_ms = zh_conn__now(c);
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
    zh_handler_grant_credits(c);
    if (c->state == ZH_CONN_CLOSING && !output_pending(c)) {
        if (c->in_eof) {
            zh_conn_close(c, NULL);
            return;
        }
        start_linger(c);
    }
    set_interest(c);
}

void zh_conn__log_failure(struct zh_conn *c, int status, const char *stage, const char *reason)
{
    char st[8];
    snprintf(st, sizeof(st), "%d", status);
    bool id = c->id_len && c->state != ZH_CONN_HEAD; /* in HEAD: no session yet for this request */
    zh_info("conn %u-%u session %.*s failed: role=server method=%s host=%s status=%s stage=%s "
            "reason=\"%s\"",
            c->s->worker, c->slot, id ? (int)c->id_len : 1, id ? c->id : "-",
            c->log_method[0] ? c->log_method : "-", c->log_host[0] ? c->log_host : "-",
            status ? st : "-", stage, reason ? reason : "");
    zh_conn__access_log(c, stage);
}

void zh_conn__access_log(struct zh_conn *c, const char *outcome)
{
    if (c->log_done || !zh_accesslog_on())
        return;
    c->log_done = true;
    char peer[80], id[64];
    if (c->peer_addr[0])
        snprintf(peer, sizeof(peer), "%s%s%s:%d", strchr(c->peer_addr, ':') ? "[" : "",
                 c->peer_addr, strchr(c->peer_addr, ':') ? "]" : "", c->peer_port);
    else
        snprintf(peer, sizeof(peer), "local");
    bool has_id = c->id_len && c->state != ZH_CONN_HEAD;
    snprintf(id, sizeof(id), "%.*s", has_id ? (int)c->id_len : 0, c->id);
    uint64_t now = zh_conn__now(c);
    struct zh_accesslog_entry e = {
        .role = "server",
        .peer = peer,
        .session = id,
        .method = c->log_method,
        .host = c->log_host,
        .path = c->log_path,
        .status = c->log_status,
        .bytes = c->log_bytes,
        .duration_ms = now > c->head_start_ms ? now - c->head_start_ms : 0,
        .outcome = outcome,
    };
    zh_accesslog_write(&e);
}

void zh_conn__response_done(struct zh_conn *c)
{
    zh_conn__access_log(c, "ok");
    if (c->has_session)
        zh_metric_observe(ZH_MH_S_TOTAL, zh_conn__now(c) - c->sess_start_ms);
    zh_handler_session_end(c);
    if (!c->keep_alive || !c->body_done || c->s->closing) {
        zh_conn__set_state(c, ZH_CONN_CLOSING);
        zh_conn__flush(c);
        return;
    }
    /* Keep-alive: the next request (maybe already buffered: pipelining) gets a fresh id. */
    c->head_start_ms = zh_conn__now(c);
    c->log_method[0] = c->log_host[0] = c->log_path[0] = '\0';
    c->log_status = 0;
    c->log_bytes = 0;
    c->log_done = false;
    zh_conn__set_state(c, ZH_CONN_HEAD);
    zh_conn__flush(c);
    if (c->state == ZH_CONN_HEAD)
        zh_conn__process(c);
}

/* ---- the next request, input dispatch, the peer address ---- */

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

void zh_conn__process(struct zh_conn *c)
{
    switch (c->state) {
    case ZH_CONN_HEAD:
        zh_input_head(c);
        break;
    case ZH_CONN_BODY:
        zh_reqmode_body(c);
        break;
    case ZH_CONN_REQUEST:
    case ZH_CONN_RESPONSE:
        if (!c->req_mode)
            zh_streammode_pump(c);
        zh_conn__flush(c);
        break;
    case ZH_CONN_WS:
        zh_wsmode_pump(c);
        if (c->state != ZH_CONN_CLOSED)
            zh_conn__flush(c);
        break;
    case ZH_CONN_CLOSING:
    case ZH_CONN_CLOSED:
        break;
    }
}

/* ---- timers ---- */

static void timer_cb(struct zh_timer *t, void *data)
{
    struct zh_conn *c = data;
    ZH_UNUSED(t);
    const struct zh_server_config *cfg = &c->s->cfg;
    uint64_t now = zh_conn__now(c);
    if (now < conn_deadline(c)) {
        zh_conn__arm_timer(c); /* I/O moved the deadline */
        return;
    }
    switch (c->state) {
    case ZH_CONN_HEAD:
        if (output_pending(c)) {
            zh_debug("conn %u-%u: client inactive for %u ms, closing", c->s->worker, c->slot,
                     c->req_mode ? cfg->req_timeout_ms : cfg->stream_timeout_ms);
            zh_conn_close(c, "client inactive");
        } else if (c->in_len == 0) {
            zh_info("conn %u-%u: no request within the head timeout (%u ms), closed", c->s->worker,
                    c->slot, head_limit_ms(c));
            zh_conn_close(c, NULL);
        } else {
            zh_debug("conn %u-%u: request head not complete within %u ms: 408", c->s->worker,
                     c->slot, head_limit_ms(c));
            c->minor = 1;
            c->is_head = false;
            zh_response_simple(c, 408, "request head timeout");
        }
        return;
    case ZH_CONN_BODY:
        zh_debug("session %.*s: request body not complete within %u ms: 408", (int)c->id_len, c->id,
                 cfg->req_timeout_ms);
        zh_response_simple(c, 408, "request body timeout");
        return;
    case ZH_CONN_REQUEST:
    case ZH_CONN_RESPONSE:
        if (c->req_mode && c->state == ZH_CONN_REQUEST) {
            zh_debug("session %.*s: no answer from the handler within %u ms: 504", (int)c->id_len,
                     c->id, cfg->req_timeout_ms);
            zh_response_simple(c, 504, "handler timed out");
            return;
        }
        if (c->has_session && !c->req_mode && zh_session_expired(&c->sess, now)) {
            zh_debug("session %.*s: handler silent for %u ms, expired", (int)c->id_len, c->id,
                     c->sess.params.expiry_ms);
            if (c->state != ZH_CONN_REQUEST)
                zh_conn__log_failure(c, 0, "handler", "handler silent: session expired");
            zh_handler_cancel(c);
            if (c->state == ZH_CONN_REQUEST)
                zh_response_simple(c, 504, "handler timed out");
            else
                zh_conn_close(c, "session expired");
            return;
        }
        zh_debug("conn %u-%u: client inactive for %u ms, closing", c->s->worker, c->slot,
                 c->req_mode ? cfg->req_timeout_ms : cfg->stream_timeout_ms);
        zh_conn_close(c, "client inactive");
        return;
    case ZH_CONN_WS:
        zh_wsmode_timer(c, now);
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
    if (c->has_session) {
        zh_conn__log_failure(c, 0, c->state == ZH_CONN_BODY ? "request" : "response",
                             why ? why : "the client closed the connection");
        zh_handler_cancel(c); /* the client went away (or we gave up) mid-session */
    }
    if (why)
        zh_debug("conn %u-%u closed: %s", c->s->worker, c->slot, why);
    if (c->in_hs)
        zh_metric_inc(ZH_M_S_TLS_FAIL); /* closed before its TLS handshake completed */
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
    zh_list_remove(&c->hs_node);
    c->in_hs = false;
    zh_server__hs_release(c->s->cfg.limits);
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
        if (zh_list_empty(&s->hs_list)) {
            hs_note(s, "new connection refused");
            zh_conn_close(c, "TLS handshakes at the limit");
            return false;
        }
        hs_note(s, "oldest handshake closed");
        zh_conn_close(ZH_LIST_DATA(zh_list_head(&s->hs_list), struct zh_conn, hs_node),
                      "TLS handshake evicted at the limit");
    }
    c->in_hs = true;
    zh_list_insert_tail(&s->hs_list, &c->hs_node);
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
            zh_conn__log_failure(c, 400, "tls", "plain HTTP on a TLS port");
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
                zh_conn__log_failure(c, 0, "tls", zh_stream_error(&c->st, r));
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
    if (got) {
        c->last_io_ms = c->last_in_ms = zh_conn__now(c);
        c->ws_ping_ms = 0; /* the client is alive */
    }
    if (c->in_hs && zh_stream_established(&c->st))
        hs_done(c);
    if (c->in_eof && (c->state == ZH_CONN_BODY || c->state == ZH_CONN_REQUEST ||
                      c->state == ZH_CONN_RESPONSE || c->state == ZH_CONN_WS)) {
        /* As Condure: a client that closes (even half-closes) while its request is in flight is
         * gone; the handler gets a cancel. */
        zh_conn_close(c, "client closed mid-request");
        return;
    }
    zh_conn__process(c);
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
        zh_conn__process(c);
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
    uint32_t slot = c->slot;
    zh_metric_inc(ZH_M_S_CONN_CLOSE);
    hs_done(c);
    zh_chunkq_free(&c->out);
    zh_zmsg_free(c->tail_msg);
    zh_wsd_free(&c->wsd);
    zh_free(c->ws_ends);
    zh_wsd_inbox_free(&c->ws_inbox);
    zh_stream_close(&c->st);
    zh_free(c->in);
    zh_free(c);
    zh_server__drop(s, slot, kind);
}

void zh_conn_new(struct zh_server *s, struct zh_accepted *a)
{
    struct zh_conn *c = zh_calloc(1, sizeof(*c));
    c->s = s;
    zh_metric_inc(ZH_M_S_CONN_OPEN);
    zh_server__slot_take(s, c);
    zh_stream_init(&c->st, a->fd);
    c->req_mode = a->req_mode;
    c->tls = a->tls;
    c->local = a->local;
    c->default_cert = a->default_cert;
    format_peer(c, a);
    zh_free(a);
    c->in_cap = s->cfg.buffer_size; /* allocated at the first read */
    /* Output holds a response head plus the credits we grant, with chunk framing. */
    zh_chunkq_init(&c->out, &s->pool,
                   (s->cfg.max_header_size + 2 * s->cfg.buffer_size) / ZH_CONN_CHUNK_SIZE + 4);
    zh_http1_req_init(&c->req);
    zh_io_init(&c->io, c->st.fd, conn_io_cb, c);
    zh_defer_init(&c->free_defer, free_defer_cb, c);
    zh_defer_init(&c->read_defer, read_defer_cb, c);
    zh_timer_init(&c->timer, timer_cb, c);
    c->state = ZH_CONN_HEAD;
    c->last_io_ms = zh_conn__now(c);
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
        zh_handler_cancel(c);
        c->is_head = false;
        zh_response_simple(c, 503, "server shutting down");
        return;
    }
    zh_conn_close(c, "shutdown");
}
