/* Req-mode requests (Condure's --zclient-req): the whole request, body inline, goes to a handler
 * in one packet over the DEALER (["", T…]) and the handler answers with one packet. No seq,
 * credits or keep-alives. The body is read into the connection's input buffer right behind the
 * head, grown for this request only up to --body-buffer-size (413 beyond), and the head is parsed
 * again when the packet is built because the buffer may have moved. The answer's body is written
 * from the handler's message itself (the conn's output tail), without a copy. */
#include "server/conn.h"

#include <string.h>

#include "shared/proto/mem.h"
#include "shared/rt/log.h"

static void refuse_too_large(struct zh_conn *c, uint64_t size, bool known)
{
    zh_debug("session %.*s: request body %s%llu bytes is over --body-buffer-size (%zu): 413",
             (int)c->id_len, c->id, known ? "of " : "past ", (unsigned long long)size,
             c->s->cfg.body_buffer_size);
    zh_handler_session_end(c);
    zh_response_simple(c, 413, "request body too large");
}

void zh_reqmode_start(struct zh_conn *c, const struct zh_http1_framing *f)
{
    const struct zh_server_config *cfg = &c->s->cfg;
    if (f->body == ZH_HTTP1_BODY_LENGTH && f->content_length > cfg->body_buffer_size) {
        /* Refused before the body is sent (a 100-continue client sends none). */
        refuse_too_large(c, f->content_length, true);
        return;
    }
    c->body_off = c->req.head_len;
    c->req_deadline_ms = zh_loop_now(c->s->loop) + cfg->req_timeout_ms;
    if (c->expect_continue) {
        c->expect_continue = false;
        zh_conn__queue(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    zh_conn__set_state(c, ZH_CONN_BODY);
    zh_reqmode_body(c);
}

/* Make room for more body bytes behind the head. Returns false when the body cannot fit. */
static bool grow_for_body(struct zh_conn *c)
{
    if (c->in_len < c->in_cap)
        return true;
    const struct zh_server_config *cfg = &c->s->cfg;
    size_t want;
    if (c->req_body == ZH_HTTP1_BODY_LENGTH) {
        want = c->body_off + (size_t)c->body_left;
    } else {
        /* Chunked: the decoded body plus framing still in flight (one buffer of it). */
        size_t limit = c->body_off + cfg->body_buffer_size + cfg->buffer_size;
        if (c->in_cap >= limit)
            return false;
        want = c->in_cap * 2 < limit ? c->in_cap * 2 : limit;
    }
    if (want <= c->in_cap)
        return true;
    c->in = zh_realloc(c->in, want);
    c->in_cap = want;
    return true;
}

/* The body is complete: build the packet from the head (parsed again) and the body, send it, and
 * drop both from the buffer. */
static void send_request(struct zh_conn *c)
{
    const struct zh_server_config *cfg = &c->s->cfg;
    struct zh_http1_header hdrs[ZH_CONN_MAX_HEADERS];
    size_t nh = ZH_CONN_MAX_HEADERS;
    struct zh_http1_framing f;
    zh_http1_req_init(&c->req);
    int r = zh_http1_parse_request(&c->req, c->in, c->body_off, cfg->max_header_size, hdrs, &nh);
    if (r <= 0 || zh_http1_req_framing(&c->req, hdrs, nh, &f) < 0) {
        /* The same bytes parsed a moment ago; this cannot happen. */
        zh_error("session %.*s: request head changed in the buffer", (int)c->id_len, c->id);
        zh_handler_session_end(c);
        zh_response_simple(c, 500, "internal error");
        return;
    }
    struct zh_zhttp_packet *p = zh_handler_packet(c);
    struct zh_buf uri = {0};
    zh_input_request_fields(c, p, hdrs, nh, &f, &uri);
    p->body = (struct zh_span){(const uint8_t *)c->in + c->body_off, c->body_ready};
    zh_handler_send(c, ZH_ZS_S_REQ, p);
    zh_buf_free(&uri);

    /* Drop the head and body (chunk framing is already cut out); pipelined bytes stay. */
    size_t used = c->body_off + c->body_ready;
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
    zh_http1_req_init(&c->req);
    c->body_off = 0;
    c->body_ready = 0;
    c->body_done = true;
    if (c->in_cap > cfg->buffer_size) {
        /* Back to the per-connection baseline once the body is gone. */
        size_t cap = c->in_len > cfg->buffer_size ? c->in_len : cfg->buffer_size;
        c->in = zh_realloc(c->in, cap);
        c->in_cap = cap;
    }
    zh_conn__set_state(c, ZH_CONN_REQUEST);
    zh_conn__flush(c);
}

void zh_reqmode_body(struct zh_conn *c)
{
    const struct zh_server_config *cfg = &c->s->cfg;
    bool done;
    if (c->req_body == ZH_HTTP1_BODY_CHUNKED) {
        if (zh_input_decode_chunked(c) < 0)
            return;
        if (c->body_ready > cfg->body_buffer_size) {
            refuse_too_large(c, c->body_ready, false);
            return;
        }
        done = c->chunk_done;
    } else if (c->req_body == ZH_HTTP1_BODY_LENGTH) {
        size_t have = c->in_len - c->body_off;
        done = have >= c->body_left;
        c->body_ready = done ? (size_t)c->body_left : have;
    } else {
        done = true;
    }
    if (done) {
        send_request(c);
        return;
    }
    if (!grow_for_body(c)) {
        refuse_too_large(c, c->body_ready, false);
        return;
    }
    zh_conn__flush(c);
}

void zh_reqmode_on_packet(struct zh_conn *c, const struct zh_zhttp_packet *p, struct zh_zmsg **mp)
{
    if (c->state != ZH_CONN_REQUEST) {
        zh_info("session %.*s: req-mode answer while %s, dropped", (int)c->id_len, c->id,
                c->state == ZH_CONN_BODY ? "the body is still being read" : "not expected");
        return;
    }
    if (p->type == ZH_ZHTTP_ERROR || p->type == ZH_ZHTTP_CANCEL) {
        zh_debug("session %.*s: handler sent %s%s%.*s: 502", (int)c->id_len, c->id,
                 zh_zhttp_type_name(p->type), p->condition.p ? " " : "", (int)p->condition.n,
                 p->condition.p ? (const char *)p->condition.p : "");
        zh_handler_session_end(c);
        zh_response_simple(c, 502, "handler failed the request");
        return;
    }
    if (p->type != ZH_ZHTTP_DATA) {
        zh_info("session %.*s: %s packet has no meaning in req mode, ignored", (int)c->id_len,
                c->id, zh_zhttp_type_name(p->type));
        return;
    }
    if ((p->has & ZH_ZF_MORE) && p->more) {
        zh_debug("session %.*s: req-mode answer with more=true: 502", (int)c->id_len, c->id);
        zh_handler_session_end(c);
        zh_response_simple(c, 502, "invalid response from handler");
        return;
    }
    int code = zh_response_status(p);
    if (code < 200) {
        if (code < 0)
            zh_debug("session %.*s: handler sent status %lld, outside 100-599: 502", (int)c->id_len,
                     c->id, (long long)p->code);
        else
            zh_response_interim(c, p, code); /* refuses (and logs) any 1xx in req mode */
        zh_handler_session_end(c);
        zh_response_simple(c, 502, "invalid response from handler");
        return;
    }
    if (zh_response_head(c, p, false) < 0) {
        zh_debug("session %.*s: handler sent an invalid response head: 502", (int)c->id_len, c->id);
        zh_handler_session_end(c);
        zh_response_simple(c, 502, "invalid response from handler");
        return;
    }
    if (c->resp_body != ZH_HTTP1_BODY_NONE && p->body.n > 0) {
        /* Written straight from the handler's message, after the head. */
        c->tail_msg = *mp;
        *mp = NULL;
        c->tail = p->body.p;
        c->tail_len = p->body.n;
    }
    zh_conn__response_done(c);
}
