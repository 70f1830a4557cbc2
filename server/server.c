#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shared/proto/http1.h"
#include "shared/proto/mem.h"
#include "shared/rt/chunkq.h"
#include "shared/rt/log.h"

#define MAX_REQ_HEADERS 128
#define READ_BATCH      16

/* Connection states, logged as "-> [%s]". */
enum conn_state {
    CS_HEAD = 0, /* reading a request head */
    CS_REQUEST,  /* request sent to a handler, response not started */
    CS_RESPONSE, /* response head written, body streaming */
    CS_CLOSING,  /* flushing the last bytes, then close */
    CS_CLOSED,   /* fd closed; freed from the pending phase */
};

static const char *const state_names[] = {"head", "request", "response", "closing", "closed"};

struct conn {
    struct zh_server *s;
    uint32_t slot;
    int fd;
    struct zh_io io;
    struct zh_defer free_defer;
    struct zh_timer timer; /* session keep-alive / expiry */
    enum conn_state state;
    struct zh_accepted acc;
    char peer_addr[INET6_ADDRSTRLEN];
    int peer_port;

    /* input */
    char *in;
    size_t in_len, in_cap;
    bool in_eof;
    struct zh_http1_req req;

    /* output */
    struct zh_chunkq out;

    /* the current request's session */
    bool has_session;
    uint32_t counter;
    char id[32];
    size_t id_len;
    struct zh_session sess;
    bool keep_alive;
    bool is_head;
    int minor;
    /* request body to the handler */
    enum zh_http1_body req_body;
    uint64_t body_left; /* Content-Length bytes not yet read */
    size_t body_ready;  /* decoded body bytes at the front of `in` */
    bool chunk_done;    /* chunked: last chunk and trailers read */
    struct zh_http1_chunked chunked;
    bool body_done; /* all request body bytes read (and the last packet sent) */
    /* response body from the handler */
    enum zh_http1_body resp_body;
    uint64_t resp_left; /* Content-Length bytes the handler still owes */
    int64_t granted;    /* credits we gave the handler, minus body bytes received */
    uint64_t unacked;   /* body bytes queued but not yet re-granted */
    bool resp_done;
};

struct zh_server {
    struct zh_loop *loop;
    struct zh_zport *port;
    unsigned worker;
    struct zh_server_config cfg;
    struct zh_chan *accept_ch;
    struct zh_io accept_io;
    struct zh_chunk_pool pool;
    struct conn **slots;
    uint32_t n_slots;
    uint32_t *free_slots;
    uint32_t n_free;
    atomic_uint n_conns; /* reserved by the listener, released when a conn is freed */
    size_t active;
    bool closing;
    atomic_bool closing_flag; /* closing, as the listener thread sees it */
};

static void conn_close(struct conn *c, const char *why);
static void conn_flush(struct conn *c);
static void conn_process(struct conn *c);

static void set_state(struct conn *c, enum conn_state st)
{
    if (c->state == st)
        return;
    zh_trace("conn %u-%u: %s -> [%s]", c->s->worker, c->slot, state_names[c->state],
             state_names[st]);
    c->state = st;
}

/* ---- packets to the handler ---- */

static struct zh_zhttp_packet *packet_new(struct conn *c)
{
    struct zh_zhttp_packet *p = zh_malloc(sizeof(*p));
    zh_zhttp_packet_init(p);
    p->from = zh_span_str(c->s->cfg.instance_id);
    p->n_ids = 1;
    p->ids[0].id = (struct zh_span){(const uint8_t *)c->id, c->id_len};
    p->ids[0].has_seq = true;
    p->ids[0].seq = zh_session_take_seq(&c->sess, zh_loop_now(c->s->loop));
    p->has |= ZH_ZF_EXT_MULTI;
    p->ext_multi = true;
    return p;
}

/* Send a packet after the first: through the ROUTER to the handler's address. */
static void send_to_handler(struct conn *c, struct zh_zhttp_packet *p)
{
    struct zh_buf enc = {0};
    zh_zhttp_encode(p, &enc);
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_S_OUT_STREAM, enc.len + c->sess.peer_len + 8);
    zh_zmsg_add(&m, c->sess.peer, c->sess.peer_len);
    zh_zmsg_add(&m, NULL, 0);
    zh_zmsg_add(&m, enc.data, enc.len);
    zh_buf_free(&enc);
    zh_free(p);
    zh_zport_send(c->s->port, m);
}

static void send_simple(struct conn *c, enum zh_zhttp_type type)
{
    if (!c->sess.peer_len)
        return;
    struct zh_zhttp_packet *p = packet_new(c);
    p->type = type;
    send_to_handler(c, p);
}

static void grant_credits(struct conn *c)
{
    if (!c->has_session || !c->sess.peer_len || c->sess.state != ZH_SESS_ACTIVE)
        return;
    size_t queued = zh_chunkq_len(&c->out);
    if (c->unacked <= queued)
        return;
    uint64_t g = c->unacked - queued;
    c->unacked -= g;
    c->granted += (int64_t)g;
    struct zh_zhttp_packet *p = packet_new(c);
    p->type = ZH_ZHTTP_CREDIT;
    p->has |= ZH_ZF_CREDITS;
    p->credits = (int64_t)g;
    send_to_handler(c, p);
}

/* ---- session timers ---- */

static void arm_timer(struct conn *c)
{
    if (!c->has_session) {
        zh_loop_timer_stop(c->s->loop, &c->timer);
        return;
    }
    uint64_t at = zh_session_expires_at(&c->sess);
    if (c->sess.peer_len) {
        uint64_t ka = zh_session_keepalive_at(&c->sess);
        if (ka < at)
            at = ka;
    }
    zh_loop_timer_at(c->s->loop, &c->timer, at);
}

static void timer_cb(struct zh_timer *t, void *data)
{
    struct conn *c = data;
    ZH_UNUSED(t);
    uint64_t now = zh_loop_now(c->s->loop);
    if (!c->has_session)
        return;
    if (zh_session_expired(&c->sess, now)) {
        zh_info("session %.*s: handler silent for %u ms, expired", (int)c->id_len, c->id,
                c->sess.params.expiry_ms);
        send_simple(c, ZH_ZHTTP_CANCEL);
        conn_close(c, "session expired");
        return;
    }
    if (c->sess.peer_len && zh_session_keepalive_due(&c->sess, now))
        send_simple(c, ZH_ZHTTP_KEEP_ALIVE);
    arm_timer(c);
}

static void session_end(struct conn *c)
{
    if (!c->has_session)
        return;
    c->has_session = false;
    c->s->active--;
    zh_session_close(&c->sess);
    zh_loop_timer_stop(c->s->loop, &c->timer);
}

/* ---- output ---- */

static void queue_out(struct conn *c, const void *p, size_t n)
{
    size_t w = 0;
    /* The queue is sized for a head plus the credits granted, so a full queue means the handler
     * broke flow control; conn_on_data checks credits before we get here. */
    if (zh_chunkq_write(&c->out, p, n, &w) < 0 && w < n)
        zh_warn("conn %u-%u: output queue full, %zu bytes dropped", c->s->worker, c->slot, n - w);
}

static void write_simple_response(struct conn *c, int status, const char *text)
{
    struct zh_buf b = {0};
    char body[256];
    int bn = snprintf(body, sizeof(body), "%s\n", text);
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
        queue_out(c, b.data, b.len);
        if (!c->is_head)
            queue_out(c, body, (size_t)bn);
    }
    zh_buf_free(&b);
    c->keep_alive = false;
    session_end(c);
    set_state(c, CS_CLOSING);
    conn_flush(c);
}

static void response_finished(struct conn *c)
{
    c->resp_done = true;
    session_end(c);
    if (!c->keep_alive || !c->body_done) {
        set_state(c, CS_CLOSING);
        conn_flush(c);
        return;
    }
    /* Keep-alive: the next request (maybe already buffered: pipelining) gets a fresh id. */
    set_state(c, CS_HEAD);
    conn_flush(c);
    if (c->state == CS_HEAD)
        conn_process(c);
}

static void conn_flush(struct conn *c)
{
    if (c->state == CS_CLOSED)
        return;
    while (zh_chunkq_len(&c->out) > 0) {
        struct iovec iov[16];
        int n = zh_chunkq_iov(&c->out, iov, 16);
        ssize_t w = writev(c->fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            conn_close(c, strerror(errno));
            return;
        }
        zh_chunkq_consume(&c->out, (size_t)w);
    }
    grant_credits(c);
    if (zh_chunkq_len(&c->out) == 0 && c->state == CS_CLOSING) {
        conn_close(c, NULL);
        return;
    }
    uint32_t ev = 0;
    if (zh_chunkq_len(&c->out) > 0)
        ev |= ZH_EV_WRITE;
    /* Read while a head may arrive or request body is expected; a full input buffer stops reading
     * (back-pressure) until the handler's credits let us pass bytes on. */
    if (c->state != CS_CLOSING && !c->in_eof && c->in_len < c->in_cap)
        ev |= ZH_EV_READ;
    zh_io_set(c->s->loop, &c->io, ev);
}

/* ---- the request ---- */

static void format_peer(struct conn *c)
{
    c->peer_addr[0] = '\0';
    c->peer_port = -1;
    if (c->acc.local)
        return;
    if (c->acc.peer.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&c->acc.peer;
        inet_ntop(AF_INET, &a->sin_addr, c->peer_addr, sizeof(c->peer_addr));
        c->peer_port = ntohs(a->sin_port);
    } else if (c->acc.peer.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&c->acc.peer;
        inet_ntop(AF_INET6, &a->sin6_addr, c->peer_addr, sizeof(c->peer_addr));
        c->peer_port = ntohs(a->sin6_port);
    }
}

/* Build the absolute uri for the ZHTTP request. */
static void build_uri(struct conn *c, const struct zh_http1_framing *f, struct zh_buf *uri)
{
    if (c->req.target_form == ZH_HTTP1_ABSOLUTE_FORM) {
        zh_buf_append(uri, c->req.target.p, c->req.target.len);
        return;
    }
    zh_buf_puts(uri, c->acc.tls ? "https://" : "http://");
    if (f->host.p && f->host.len) {
        zh_buf_append(uri, f->host.p, f->host.len);
    } else {
        zh_buf_puts(uri, "localhost");
    }
    if (c->req.target_form == ZH_HTTP1_ORIGIN_FORM)
        zh_buf_append(uri, c->req.target.p, c->req.target.len);
    else
        zh_buf_putc(uri, '/');
}

static void start_request(struct conn *c, const struct zh_http1_header *hdrs, size_t n_hdrs,
                          const struct zh_http1_framing *f)
{
    struct zh_server *s = c->s;
    uint64_t now = zh_loop_now(s->loop);
    c->counter++;
    c->id_len = (size_t)snprintf(c->id, sizeof(c->id), "%u-%u-%x", s->worker, c->slot, c->counter);
    zh_session_init(&c->sess, ZH_ROLE_SERVER, &s->cfg.params, now);
    c->has_session = true;
    s->active++;
    c->minor = c->req.minor_version;
    c->keep_alive = (f->flags & ZH_HTTP1_F_KEEP_ALIVE) != 0;
    c->is_head = c->req.method.len == 4 && memcmp(c->req.method.p, "HEAD", 4) == 0;
    c->req_body = f->body;
    c->body_left = f->body == ZH_HTTP1_BODY_LENGTH ? f->content_length : 0;
    c->body_done = f->body == ZH_HTTP1_BODY_NONE ||
                   (f->body == ZH_HTTP1_BODY_LENGTH && f->content_length == 0);
    c->body_ready = 0;
    c->chunk_done = false;
    if (f->body == ZH_HTTP1_BODY_CHUNKED)
        zh_http1_chunked_init(&c->chunked, s->cfg.max_header_size);
    c->resp_done = false;
    c->unacked = 0;
    c->granted = (int64_t)s->cfg.buffer_size;

    struct zh_zhttp_packet *p = packet_new(c);
    struct zh_buf uri = {0};
    build_uri(c, f, &uri);
    p->method = (struct zh_span){(const uint8_t *)c->req.method.p, c->req.method.len};
    p->uri = (struct zh_span){uri.data, uri.len};
    p->has |= ZH_ZF_HEADERS | ZH_ZF_CREDITS | ZH_ZF_STREAM | ZH_ZF_ROUTER_RESP;
    size_t nh = n_hdrs < ZH_ZHTTP_MAX_HEADERS ? n_hdrs : ZH_ZHTTP_MAX_HEADERS;
    for (size_t i = 0; i < nh; i++) {
        p->headers[i].name = (struct zh_span){(const uint8_t *)hdrs[i].name.p, hdrs[i].name.len};
        p->headers[i].value = (struct zh_span){(const uint8_t *)hdrs[i].value.p, hdrs[i].value.len};
    }
    p->n_headers = nh;
    p->credits = (int64_t)s->cfg.buffer_size;
    p->stream = true;
    p->router_resp = true;
    if (!c->body_done) {
        p->has |= ZH_ZF_MORE;
        p->more = true;
    }
    if (c->peer_addr[0]) {
        p->peer_address = zh_span_str(c->peer_addr);
        p->has |= ZH_ZF_PEER_PORT;
        p->peer_port = c->peer_port;
    }
    struct zh_buf enc = {0};
    zh_zhttp_encode(p, &enc);
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_S_OUT, enc.len);
    zh_zmsg_add(&m, enc.data, enc.len);
    zh_debug("worker %u: %.*s %.*s -> session %s", s->worker, (int)c->req.method.len,
             c->req.method.p, (int)uri.len, (const char *)uri.data, c->id);
    zh_buf_free(&enc);
    zh_buf_free(&uri);
    zh_free(p);
    zh_zport_send(s->port, m);
    set_state(c, CS_REQUEST);
    arm_timer(c);
}

static void consume_in(struct conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* Remove in[off, off+n) and close the gap. */
static void cut_in(struct conn *c, size_t off, size_t n)
{
    memmove(c->in + off, c->in + off + n, c->in_len - off - n);
    c->in_len -= n;
}

/* Decode chunked framing in place: payload bytes gather at the front of the input buffer
 * ([0, body_ready)), framing bytes are cut out, and bytes after the body stay for the next request.
 */
static bool decode_chunked(struct conn *c)
{
    while (!c->chunk_done && c->body_ready < c->in_len) {
        size_t used = 0;
        struct zh_http1_span sp = {0};
        int r = zh_http1_chunked_feed(&c->chunked, c->in + c->body_ready, c->in_len - c->body_ready,
                                      &used, &sp);
        if (r == ZH_PARSE_ERROR) {
            zh_info("conn %u-%u: bad chunked body: %s", c->s->worker, c->slot,
                    zh_http1_strerror(c->chunked.err));
            send_simple(c, ZH_ZHTTP_CANCEL);
            c->minor = 1;
            write_simple_response(c, zh_http1_err_status(c->chunked.err),
                                  zh_http1_strerror(c->chunked.err));
            return false;
        }
        if (r == ZH_HTTP1_CHUNKED_DATA) {
            size_t skip = (size_t)(sp.p - (c->in + c->body_ready));
            cut_in(c, c->body_ready, skip);
            c->body_ready += sp.len;
            cut_in(c, c->body_ready, used - skip - sp.len);
            continue;
        }
        cut_in(c, c->body_ready, used);
        if (r == ZH_HTTP1_CHUNKED_DONE)
            c->chunk_done = true;
        else
            break;
    }
    return true;
}

/* Forward buffered request body bytes to the handler as its credits allow. */
static void pump_body(struct conn *c)
{
    if (!c->has_session || c->body_done)
        return;
    if (c->req_body == ZH_HTTP1_BODY_CHUNKED) {
        if (!decode_chunked(c))
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
        struct zh_zhttp_packet *p = packet_new(c);
        p->body = (struct zh_span){(const uint8_t *)c->in, n};
        if (!last) {
            p->has |= ZH_ZF_MORE;
            p->more = true;
        }
        zh_session_spend(&c->sess, n);
        send_to_handler(c, p);
        consume_in(c, n);
        c->body_ready -= n;
        if (c->req_body == ZH_HTTP1_BODY_LENGTH)
            c->body_left -= n;
        if (last)
            c->body_done = true;
    }
}

/* Parse and start the next request, if a whole head is buffered. */
static void conn_process(struct conn *c)
{
    if (c->state == CS_REQUEST || c->state == CS_RESPONSE) {
        pump_body(c);
        conn_flush(c);
        return;
    }
    if (c->state != CS_HEAD || c->in_len == 0)
        return;
    struct zh_http1_header hdrs[MAX_REQ_HEADERS];
    size_t nh = MAX_REQ_HEADERS;
    int r = zh_http1_parse_request(&c->req, c->in, c->in_len, c->s->cfg.max_header_size, hdrs, &nh);
    if (r == ZH_PARSE_INCOMPLETE) {
        if (c->in_len == c->in_cap && c->in_cap < c->s->cfg.max_header_size + 1) {
            /* A head larger than one buffer: grow up to the head limit, this connection only. */
            size_t cap = c->in_cap * 2;
            if (cap > c->s->cfg.max_header_size + 1)
                cap = c->s->cfg.max_header_size + 1;
            c->in = zh_realloc(c->in, cap);
            c->in_cap = cap;
        }
        if (c->in_eof)
            conn_close(c, "client closed mid-head");
        else
            conn_flush(c);
        return;
    }
    c->minor = 1;
    if (r == ZH_PARSE_ERROR) {
        zh_info("conn %u-%u: bad request: %s", c->s->worker, c->slot,
                zh_http1_strerror(c->req.err));
        c->is_head = false;
        write_simple_response(c, zh_http1_err_status(c->req.err), zh_http1_strerror(c->req.err));
        return;
    }
    struct zh_http1_framing f;
    if (zh_http1_req_framing(&c->req, hdrs, nh, &f) == ZH_PARSE_ERROR) {
        zh_info("conn %u-%u: bad request: %s", c->s->worker, c->slot, zh_http1_strerror(f.err));
        c->minor = c->req.minor_version;
        c->is_head = false;
        write_simple_response(c, zh_http1_err_status(f.err), zh_http1_strerror(f.err));
        return;
    }
    if (c->s->closing) {
        c->minor = c->req.minor_version;
        write_simple_response(c, 503, "server shutting down");
        return;
    }
    if (f.flags & ZH_HTTP1_F_UPGRADE_WEBSOCKET) {
        c->minor = c->req.minor_version;
        write_simple_response(c, 501, "WebSocket is not supported yet");
        return;
    }
    if (f.flags & ZH_HTTP1_F_EXPECT_OTHER) {
        c->minor = c->req.minor_version;
        write_simple_response(c, 417, "expectation not supported");
        return;
    }
    start_request(c, hdrs, nh, &f);
    size_t head_len = c->req.head_len;
    zh_http1_req_init(&c->req);
    consume_in(c, head_len);
    if (f.flags & ZH_HTTP1_F_EXPECT_CONTINUE)
        queue_out(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    conn_flush(c);
}

/* ---- handler packets ---- */

static void start_response(struct conn *c, const struct zh_zhttp_packet *p)
{
    struct zh_http1_header hdrs[ZH_ZHTTP_MAX_HEADERS];
    size_t nh = 0;
    bool have_len = false;
    uint64_t len = 0;
    for (size_t i = 0; i < p->n_headers; i++) {
        struct zh_span n = p->headers[i].name, v = p->headers[i].value;
        if (n.n == 14 && strncasecmp((const char *)n.p, "Content-Length", 14) == 0) {
            char tmp[24];
            if (v.n > 0 && v.n < sizeof(tmp)) {
                memcpy(tmp, v.p, v.n);
                tmp[v.n] = '\0';
                char *end;
                unsigned long long x = strtoull(tmp, &end, 10);
                if (*end == '\0' && tmp[0] >= '0' && tmp[0] <= '9') {
                    have_len = true;
                    len = x;
                }
            }
            continue;
        }
        hdrs[nh].name = (struct zh_http1_span){(const char *)n.p, n.n};
        hdrs[nh].value = (struct zh_http1_span){(const char *)v.p, v.n};
        nh++;
    }
    int code = (p->has & ZH_ZF_CODE) ? (int)p->code : 200;
    bool more = (p->has & ZH_ZF_MORE) && p->more;
    struct zh_http1_resp r = {
        .minor_version = c->minor,
        .status = code,
        .headers = hdrs,
        .num_headers = nh,
        .conn = c->keep_alive ? ZH_HTTP1_CONN_KEEP_ALIVE : ZH_HTTP1_CONN_CLOSE,
    };
    if (p->reason.p)
        r.reason = (struct zh_http1_span){(const char *)p->reason.p, p->reason.n};
    bool no_body = (code >= 100 && code < 200) || code == 204 || code == 304;
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
    } else {
        r.body = ZH_HTTP1_BODY_CLOSE;
        c->keep_alive = false;
        r.conn = ZH_HTTP1_CONN_CLOSE;
    }
    if (c->is_head || no_body) {
        c->resp_body = ZH_HTTP1_BODY_NONE;
    } else {
        c->resp_body = r.body;
    }
    c->resp_left = r.content_length;
    struct zh_buf b = {0};
    if (zh_http1_write_response_head(&b, &r) < 0) {
        zh_buf_free(&b);
        zh_info("session %.*s: handler sent an invalid response head", (int)c->id_len, c->id);
        send_simple(c, ZH_ZHTTP_CANCEL);
        write_simple_response(c, 502, "invalid response from handler");
        return;
    }
    queue_out(c, b.data, b.len);
    zh_buf_free(&b);
    set_state(c, CS_RESPONSE);
}

static void response_body(struct conn *c, struct zh_span body, bool more)
{
    if (body.n > 0 && c->resp_body != ZH_HTTP1_BODY_NONE) {
        size_t n = body.n;
        if (c->resp_body == ZH_HTTP1_BODY_LENGTH && n > c->resp_left)
            n = (size_t)c->resp_left; /* the handler's Content-Length wins; the excess is dropped */
        if (c->resp_body == ZH_HTTP1_BODY_CHUNKED && n > 0) {
            char hdr[ZH_HTTP1_CHUNK_HEADER_MAX];
            size_t hn = zh_http1_format_chunk_header(hdr, n);
            queue_out(c, hdr, hn);
            queue_out(c, body.p, n);
            queue_out(c, "\r\n", 2);
        } else if (n > 0) {
            queue_out(c, body.p, n);
        }
        if (c->resp_body == ZH_HTTP1_BODY_LENGTH)
            c->resp_left -= n;
    }
    c->unacked += body.n;
    if (!more) {
        if (c->resp_body == ZH_HTTP1_BODY_CHUNKED)
            queue_out(c, "0\r\n\r\n", 5);
        if (c->resp_body == ZH_HTTP1_BODY_CLOSE ||
            (c->resp_body == ZH_HTTP1_BODY_LENGTH && c->resp_left > 0))
            c->keep_alive = false;
        response_finished(c);
        return;
    }
    conn_flush(c);
}

static void on_handler_packet(struct conn *c, const struct zh_zhttp_packet *p,
                              const struct zh_zhttp_id *id)
{
    enum zh_session_verdict v = zh_session_on_packet(&c->sess, p, id, zh_loop_now(c->s->loop));
    switch (v) {
    case ZH_SV_CLOSED:
        return;
    case ZH_SV_SEQ_ERROR:
        zh_info("session %.*s: wrong seq from handler, cancelling", (int)c->id_len, c->id);
        c->sess.state = ZH_SESS_ACTIVE; /* allow the cancel out */
        send_simple(c, ZH_ZHTTP_CANCEL);
        session_end(c);
        conn_close(c, "seq error");
        return;
    case ZH_SV_TERMINAL:
        zh_info("session %.*s: handler sent %s%s%.*s", (int)c->id_len, c->id,
                zh_zhttp_type_name(p->type), p->condition.p ? " " : "", (int)p->condition.n,
                p->condition.p ? (const char *)p->condition.p : "");
        if (c->state == CS_REQUEST)
            write_simple_response(c, 502, "handler failed the request");
        else
            conn_close(c, "handler ended the session");
        return;
    case ZH_SV_HANDOFF_START:
        c->sess.state = ZH_SESS_ACTIVE;
        send_simple(c, ZH_ZHTTP_HANDOFF_PROCEED);
        zh_session_pause(&c->sess);
        arm_timer(c);
        return;
    case ZH_SV_OK:
    case ZH_SV_RESUMED:
        break;
    }
    arm_timer(c);
    if (p->type == ZH_ZHTTP_DATA) {
        if ((int64_t)p->body.n > c->granted) {
            zh_info("session %.*s: handler exceeded its credits, closing", (int)c->id_len, c->id);
            send_simple(c, ZH_ZHTTP_CANCEL);
            session_end(c);
            conn_close(c, "credits exceeded");
            return;
        }
        c->granted -= (int64_t)p->body.n;
        bool more = (p->has & ZH_ZF_MORE) && p->more;
        if (c->state == CS_REQUEST) {
            start_response(c, p);
            if (c->state != CS_RESPONSE)
                return;
        }
        if (c->state == CS_RESPONSE)
            response_body(c, p->body, more);
        return;
    }
    /* credit / keep-alive / resume: more request body may go now. */
    pump_body(c);
    conn_flush(c);
}

void zh_server_on_zmsg(struct zh_server *s, struct zh_zmsg *m)
{
    struct zh_span payload = zh_zmsg_frame(m, m->nframes - 1);
    if (m->sock == ZH_ZS_S_IN) {
        struct zh_span addr;
        if (zh_zhttp_split_pub(payload.p, payload.n, &addr, &payload) < 0) {
            zh_warn("server-in: frame without address dropped");
            zh_zmsg_free(m);
            return;
        }
    }
    struct zh_zhttp_packet *p = zh_malloc(sizeof(*p));
    struct zh_zhttp_error err;
    if (zh_zhttp_decode(payload.p, payload.n, p, &err) < 0) {
        char raw[64];
        zh_warn("%s: malformed packet dropped: %s (%s)", zh_zsock_name(m->sock), err.reason,
                zh_log_escape(raw, sizeof(raw), payload.p, payload.n));
        goto out;
    }
    for (size_t i = 0; i < p->n_ids; i++) {
        const struct zh_zhttp_id *id = &p->ids[i];
        /* "<worker>-<slot>-<counter>" */
        char tmp[40];
        if (id->id.n >= sizeof(tmp))
            goto unknown;
        memcpy(tmp, id->id.p, id->id.n);
        tmp[id->id.n] = '\0';
        unsigned w, slot, counter;
        char extra;
        if (sscanf(tmp, "%u-%u-%x%c", &w, &slot, &counter, &extra) != 3 || w != s->worker ||
            slot >= s->n_slots)
            goto unknown;
        struct conn *c = s->slots[slot];
        if (!c || !c->has_session || c->id_len != id->id.n || memcmp(c->id, tmp, c->id_len) != 0)
            goto unknown;
        on_handler_packet(c, p, id);
        continue;
    unknown:
        if (zh_session_unknown_action(ZH_ROLE_SERVER, p) == ZH_UNKNOWN_DROP)
            zh_info("%s: %s packet for unknown session '%.*s' dropped", zh_zsock_name(m->sock),
                    p->type == ZH_ZHTTP_DATA ? "data" : zh_zhttp_type_name(p->type), (int)id->id.n,
                    (const char *)id->id.p);
    }
out:
    zh_free(p);
    zh_zmsg_free(m);
}

/* ---- connections ---- */

static void conn_free_cb(struct zh_defer *d, void *data)
{
    struct conn *c = data;
    struct zh_server *s = c->s;
    ZH_UNUSED(d);
    s->slots[c->slot] = NULL;
    s->free_slots[s->n_free++] = c->slot;
    zh_chunkq_free(&c->out);
    zh_free(c->in);
    zh_free(c);
    atomic_fetch_sub(&s->n_conns, 1);
}

static void conn_close(struct conn *c, const char *why)
{
    if (c->state == CS_CLOSED)
        return;
    if (c->has_session) {
        /* The client went away (or we gave up) mid-session: tell the handler. */
        send_simple(c, ZH_ZHTTP_CANCEL);
        session_end(c);
    }
    if (why)
        zh_debug("conn %u-%u closed: %s", c->s->worker, c->slot, why);
    zh_io_stop(c->s->loop, &c->io);
    zh_loop_timer_stop(c->s->loop, &c->timer);
    close(c->fd);
    c->fd = -1;
    set_state(c, CS_CLOSED);
    zh_loop_defer(c->s->loop, &c->free_defer);
}

static void conn_read(struct conn *c)
{
    for (int i = 0; i < READ_BATCH && c->in_len < c->in_cap; i++) {
        ssize_t r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            conn_close(c, strerror(errno));
            return;
        }
        if (r == 0) {
            c->in_eof = true;
            break;
        }
        c->in_len += (size_t)r;
    }
    if (c->in_eof && (c->state == CS_REQUEST || c->state == CS_RESPONSE)) {
        /* A client that half-closes after its request still wants the answer; one that vanishes
         * mid-body does not. HTTP/1 gives no way to tell them apart except the body. */
        if (!c->body_done) {
            conn_close(c, "client closed mid-request");
            return;
        }
    }
    conn_process(c);
    if (c->state == CS_HEAD && c->in_eof && c->in_len == 0)
        conn_close(c, "client closed");
}

static void conn_io_cb(struct zh_io *io, uint32_t revents, void *data)
{
    struct conn *c = data;
    ZH_UNUSED(io);
    if (revents & ZH_EV_WRITE)
        conn_flush(c);
    if (c->state != CS_CLOSED && (revents & (ZH_EV_READ | ZH_EV_HUP | ZH_EV_ERROR)))
        conn_read(c);
}

static void conn_new(struct zh_server *s, struct zh_accepted *a)
{
    if (s->closing || a->tls || a->req_mode) {
        if (a->tls || a->req_mode)
            zh_warn("worker %u: %s listeners are not supported yet; connection closed", s->worker,
                    a->tls ? "TLS" : "req-mode");
        close(a->fd);
        zh_free(a);
        atomic_fetch_sub(&s->n_conns, 1);
        return;
    }
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
    struct conn *c = zh_calloc(1, sizeof(*c));
    c->s = s;
    c->slot = s->free_slots[--s->n_free];
    s->slots[c->slot] = c;
    c->fd = a->fd;
    c->acc = *a;
    zh_free(a);
    format_peer(c);
    c->in_cap = s->cfg.buffer_size;
    c->in = zh_malloc(c->in_cap);
    /* Output holds a response head plus the credits we grant, with chunk framing. */
    zh_chunkq_init(&c->out, &s->pool, (s->cfg.max_header_size + 2 * s->cfg.buffer_size) / 4096 + 4);
    zh_http1_req_init(&c->req);
    zh_io_init(&c->io, c->fd, conn_io_cb, c);
    zh_defer_init(&c->free_defer, conn_free_cb, c);
    zh_timer_init(&c->timer, timer_cb, c);
    c->state = CS_HEAD;
    zh_debug("worker %u: connection %u from %s:%d", s->worker, c->slot,
             c->peer_addr[0] ? c->peer_addr : "local", c->peer_port);
    zh_io_set(s->loop, &c->io, ZH_EV_READ);
}

static void accept_cb(struct zh_io *io, uint32_t revents, void *data)
{
    struct zh_server *s = data;
    ZH_UNUSED(io);
    ZH_UNUSED(revents);
    zh_chan_drain_signal(s->accept_ch);
    struct zh_accepted *a;
    while ((a = zh_chan_pop(s->accept_ch)))
        conn_new(s, a);
}

struct zh_server *zh_server_new(struct zh_loop *loop, struct zh_zport *port, unsigned worker,
                                const struct zh_server_config *cfg)
{
    struct zh_server *s = zh_calloc(1, sizeof(*s));
    s->loop = loop;
    s->port = port;
    s->worker = worker;
    s->cfg = *cfg;
    if (s->cfg.buffer_size < 1024)
        s->cfg.buffer_size = 1024;
    if (s->cfg.max_header_size < s->cfg.buffer_size)
        s->cfg.max_header_size = s->cfg.buffer_size;
    atomic_init(&s->n_conns, 0);
    atomic_init(&s->closing_flag, false);
    if (!s->cfg.max_conns)
        s->cfg.max_conns = 10000;
    zh_chunk_pool_init(&s->pool, 4096, 1024);
    s->accept_ch = zh_chan_new(1024);
    zh_io_init(&s->accept_io, zh_chan_fd(s->accept_ch), accept_cb, s);
    zh_io_set(loop, &s->accept_io, ZH_EV_READ);
    return s;
}

struct zh_chan *zh_server_accept_chan(struct zh_server *s)
{
    return s->accept_ch;
}

unsigned zh_server_conn_count(const struct zh_server *s)
{
    return atomic_load(&s->n_conns);
}

bool zh_server_reserve(struct zh_server *s)
{
    unsigned n = atomic_load(&s->n_conns);
    while (n < s->cfg.max_conns && !s->closing_flag) {
        if (atomic_compare_exchange_weak(&s->n_conns, &n, n + 1))
            return true;
    }
    return false;
}

void zh_server_unreserve(struct zh_server *s)
{
    atomic_fetch_sub(&s->n_conns, 1);
}

void zh_server_shutdown(struct zh_server *s, int cancel)
{
    s->closing = true;
    atomic_store(&s->closing_flag, true);
    for (uint32_t i = 0; i < s->n_slots; i++) {
        struct conn *c = s->slots[i];
        if (!c || c->state == CS_CLOSED)
            continue;
        if (cancel || (c->state == CS_HEAD && c->in_len == 0))
            conn_close(c, cancel ? "shutdown" : "shutdown (idle)");
        else
            c->keep_alive = false;
    }
}

size_t zh_server_active(const struct zh_server *s)
{
    return s->active;
}

void zh_server_free(struct zh_server *s)
{
    if (!s)
        return;
    zh_server_shutdown(s, 1);
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->slots[i]) {
            zh_loop_defer_cancel(s->loop, &s->slots[i]->free_defer);
            conn_free_cb(&s->slots[i]->free_defer, s->slots[i]);
        }
    zh_io_stop(s->loop, &s->accept_io);
    struct zh_accepted *a;
    while ((a = zh_chan_pop(s->accept_ch))) {
        close(a->fd);
        zh_free(a);
        atomic_fetch_sub(&s->n_conns, 1);
    }
    zh_chan_free(s->accept_ch);
    zh_chunk_pool_free(&s->pool);
    zh_free(s->slots);
    zh_free(s->free_slots);
    zh_free(s);
}
