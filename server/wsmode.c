/* Inbound WebSocket sessions (Condure's WebSocket mode, stream listeners only): the upgrade request
 * becomes a ZHTTP request with a ws:// or wss:// uri; the handler accepts with a 101 data packet
 * (we write the 101 with Upgrade, Connection and Sec-WebSocket-Accept) or rejects with an
 * error/rejected packet carrying the HTTP response we send. Then frames and packets map one to
 * one: text/binary frame payloads <-> data packets (content-type, `more` for fragments), close <->
 * close (code, reason), ping/pong <-> ping/pong. Credits hold in both directions: client payload
 * bytes go to the handler only as its credits allow (unread bytes stay in the input buffer, which
 * stops reading when full), and the handler's payload bytes are re-granted as they leave the
 * output queue. The framing itself is shared/proto/ws.c. */
#include "server/conn.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "shared/proto/mem.h"
#include "shared/rt/log.h"
#include "shared/rt/metrics.h"

static bool name_is(const char *p, size_t n, const char *lit)
{
    return n == strlen(lit) && strncasecmp(p, lit, n) == 0;
}

static const struct zh_http1_header *find(const struct zh_http1_header *h, size_t nh,
                                          const char *name, int *count)
{
    const struct zh_http1_header *found = NULL;
    *count = 0;
    for (size_t i = 0; i < nh; i++) {
        if (name_is(h[i].name.p, h[i].name.len, name)) {
            if (!found)
                found = &h[i];
            (*count)++;
        }
    }
    return found;
}

int zh_wsmode_check(struct zh_conn *c, const struct zh_http1_header *hdrs, size_t nh,
                    const char **why)
{
    int n;
    if (!(c->req.method.len == 3 && memcmp(c->req.method.p, "GET", 3) == 0)) {
        *why = "WebSocket upgrade with a method other than GET";
        return 400;
    }
    const struct zh_http1_header *v = find(hdrs, nh, "Sec-WebSocket-Version", &n);
    if (!v || n != 1 || !(v->value.len == 2 && memcmp(v->value.p, "13", 2) == 0)) {
        *why = "WebSocket upgrade without Sec-WebSocket-Version: 13";
        return 400;
    }
    const struct zh_http1_header *k = find(hdrs, nh, "Sec-WebSocket-Key", &n);
    if (!k || n != 1 || !zh_ws_key_valid(k->value.p, k->value.len)) {
        *why = "WebSocket upgrade without a valid Sec-WebSocket-Key";
        return 400;
    }
    zh_ws_accept(k->value.p, k->value.len, c->ws_accept);
    c->ws_deflate = false;
    if (c->s->cfg.ws_compression) {
        struct zh_buf offers = {0}, resp = {0};
        for (size_t i = 0; i < nh; i++) {
            if (!name_is(hdrs[i].name.p, hdrs[i].name.len, "Sec-WebSocket-Extensions"))
                continue;
            if (offers.len)
                zh_buf_puts(&offers, ", ");
            zh_buf_append(&offers, hdrs[i].value.p, hdrs[i].value.len);
        }
        if (offers.len &&
            zh_wsd_server_negotiate((const char *)offers.data, offers.len, &c->ws_dparams, &resp) ==
                1 &&
            resp.len < sizeof(c->ws_ext)) {
            memcpy(c->ws_ext, resp.data, resp.len);
            c->ws_ext[resp.len] = '\0';
            c->ws_deflate = true;
        }
        zh_buf_free(&offers);
        zh_buf_free(&resp);
    }
    return 0;
}

void zh_wsmode_start(struct zh_conn *c, const struct zh_http1_header *hdrs, size_t nh,
                     const struct zh_http1_framing *f)
{
    c->ws = true;
    c->keep_alive = false; /* a rejected upgrade ends the connection */
    c->ws_close_sent = c->ws_close_rcvd = false;
    c->ws_ping_ms = 0;
    memset(&c->ws_out, 0, sizeof(c->ws_out));
    memset(&c->ws_out_utf8, 0, sizeof(c->ws_out_utf8));
    zh_ws_parser_init(&c->ws_in, true, c->ws_deflate, c->s->cfg.ws_max_message);
    struct zh_zhttp_packet *p = zh_handler_packet(c);
    struct zh_buf uri = {0};
    zh_input_request_fields(c, p, hdrs, nh, f, &uri);
    p->has |= ZH_ZF_CREDITS | ZH_ZF_STREAM | ZH_ZF_ROUTER_RESP;
    p->credits = (int64_t)c->s->cfg.buffer_size;
    p->stream = true;
    p->router_resp = true;
    zh_handler_send(c, ZH_ZS_S_OUT, p);
    zh_buf_free(&uri);
    zh_conn__set_state(c, ZH_CONN_REQUEST);
}

/* ---- to the client ---- */

#define KEEPALIVE_PING "zhttpd-keepalive" /* payload of our --ws-ping-interval pings */

static void queue_frame_rsv(struct zh_conn *c, bool fin, uint8_t opcode, bool rsv1, const void *p,
                            size_t n)
{
    uint8_t h[ZH_WS_MAX_HEAD];
    size_t hl = zh_ws_head(h, fin, opcode, rsv1, n, NULL);
    zh_conn__queue(c, h, hl);
    if (n)
        zh_conn__queue(c, p, n);
    c->ws_queued_total += hl + n;
}

/* Forget the handler frames the client has been sent in full. */
static void ends_pop(struct zh_conn *c)
{
    unsigned max = c->s->cfg.ws_messages_max;
    uint64_t written = c->ws_queued_total - zh_chunkq_len(&c->out);
    while (c->ws_ends_n && c->ws_ends[c->ws_ends_head] <= written) {
        c->ws_ends_head = (c->ws_ends_head + 1) % max;
        c->ws_ends_n--;
    }
}

/* A handler frame is about to be queued: --messages-max bounds how many wait unwritten (credits
 * bound their bytes, not their count: empty messages cost none). Returns false when the handler
 * overran it. */
static bool ends_room(struct zh_conn *c)
{
    unsigned max = c->s->cfg.ws_messages_max;
    if (!max)
        return true;
    if (!c->ws_ends)
        c->ws_ends = zh_calloc(max, sizeof(*c->ws_ends));
    ends_pop(c);
    return c->ws_ends_n < max;
}

static void ends_push(struct zh_conn *c)
{
    unsigned max = c->s->cfg.ws_messages_max;
    if (!max || !c->ws_ends || c->ws_ends_n == max)
        return;
    c->ws_ends[(c->ws_ends_head + c->ws_ends_n) % max] = c->ws_queued_total;
    c->ws_ends_n++;
}

static void queue_close(struct zh_conn *c, unsigned code, const char *reason)
{
    struct zh_buf b = {0};
    zh_ws_put_close(&b, code, reason, reason ? strlen(reason) : 0, NULL);
    zh_conn__queue(c, b.data, b.len);
    c->ws_queued_total += b.len;
    zh_buf_free(&b);
    c->ws_close_sent = true;
    c->ws_close_ms = zh_conn__now(c);
}

static void queue_frame(struct zh_conn *c, bool fin, uint8_t opcode, const void *p, size_t n)
{
    queue_frame_rsv(c, fin, opcode, false, p, n);
}

/* We end the WebSocket connection ourselves: close frame with code, then close after it. */
static void fail_ws(struct zh_conn *c, unsigned code, const char *reason)
{
    if (c->has_session)
        zh_handler_cancel(c);
    if (!c->ws_close_sent)
        queue_close(c, code, reason);
    zh_conn__set_state(c, ZH_CONN_CLOSING);
    zh_conn__flush(c);
}

/* The handler's headers for the 101: hop-by-hop ones and those we own left out. */
static bool own_header(struct zh_span n)
{
    static const char *const skip[] = {"Connection",
                                       "Keep-Alive",
                                       "Upgrade",
                                       "TE",
                                       "Trailer",
                                       "Proxy-Connection",
                                       "Transfer-Encoding",
                                       "Content-Length",
                                       "Sec-WebSocket-Accept",
                                       "Sec-WebSocket-Extensions"};
    for (size_t i = 0; i < ZH_ARRAY_SIZE(skip); i++)
        if (name_is((const char *)n.p, n.n, skip[i]))
            return true;
    return false;
}

static void accept_upgrade(struct zh_conn *c, const struct zh_zhttp_packet *p)
{
    zh_metric_inc(ZH_M_S_WS_OPEN);
    struct zh_buf b = {0};
    struct zh_span r = p->reason;
    zh_buf_puts(&b, "HTTP/1.1 101 ");
    if (r.n && memchr(r.p, '\r', r.n) == NULL && memchr(r.p, '\n', r.n) == NULL)
        zh_buf_append(&b, r.p, r.n);
    else
        zh_buf_puts(&b, "Switching Protocols");
    zh_buf_printf(&b,
                  "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n",
                  c->ws_accept);
    if (c->ws_deflate) {
        if (zh_wsd_init(&c->wsd, &c->ws_dparams, true) == 0)
            zh_buf_printf(&b, "Sec-WebSocket-Extensions: %s\r\n", c->ws_ext);
        else
            c->ws_deflate = false; /* not reached: negotiation declines what zlib can't do */
        c->ws_in.allow_rsv1 = c->ws_deflate;
    }
    for (size_t i = 0; i < p->n_headers; i++) {
        struct zh_span n = p->headers[i].name, v = p->headers[i].value;
        if (own_header(n) || memchr(v.p, '\r', v.n) || memchr(v.p, '\n', v.n) ||
            memchr(n.p, ':', n.n) || memchr(n.p, '\r', n.n) || memchr(n.p, '\n', n.n) || !n.n)
            continue;
        zh_buf_append(&b, n.p, n.n);
        zh_buf_puts(&b, ": ");
        zh_buf_append(&b, v.p, v.n);
        zh_buf_puts(&b, "\r\n");
    }
    zh_buf_puts(&b, "\r\n");
    zh_conn__queue(c, b.data, b.len);
    zh_buf_free(&b);
    zh_debug("session %.*s: WebSocket accepted", (int)c->id_len, c->id);
    c->last_in_ms = zh_conn__now(c);
    zh_conn__set_state(c, ZH_CONN_WS);
}

/* error/rejected: the handler's HTTP response goes to the client. */
static void reject_upgrade(struct zh_conn *c, const struct zh_zhttp_packet *p)
{
    zh_info("session %.*s: WebSocket upgrade rejected by the handler (%lld)", (int)c->id_len, c->id,
            (long long)((p->has & ZH_ZF_CODE) ? p->code : 403));
    int code = (p->has & ZH_ZF_CODE) ? zh_response_status(p) : -1;
    if (code < 200 || zh_response_head(c, p, false) < 0) {
        zh_response_simple(c, 403, "rejected");
        return;
    }
    zh_response_body(c, p->body, false);
}

/* Write one piece of a handler message (compressed when negotiated; RSV1 on a message's first
 * frame only). */
static void emit(struct zh_conn *c, uint8_t type, const uint8_t *p, size_t n, bool more)
{
    bool first = !zh_ws_sender_in_message(&c->ws_out);
    uint8_t op = zh_ws_sender_next(&c->ws_out, type, more);
    if (!c->ws_deflate) {
        queue_frame(c, !more, op, p, n);
        return;
    }
    struct zh_buf z = {0};
    if (zh_wsd_deflate(&c->wsd, p, n, !more, &z) < 0) {
        zh_buf_free(&z);
        fail_ws(c, ZH_WS_CLOSE_INTERNAL, NULL);
        return;
    }
    queue_frame_rsv(c, !more, op, first, z.data, z.len);
    zh_buf_free(&z);
}

static bool is_binary(const struct zh_zhttp_packet *p)
{
    return p->content_type.n == 6 && memcmp(p->content_type.p, "binary", 6) == 0;
}

/* A handler packet in the WS state. Bad ones are refused with a log line, not forwarded. */
static void from_handler(struct zh_conn *c, const struct zh_zhttp_packet *p)
{
    bool more = (p->has & ZH_ZF_MORE) && p->more;
    bool frame = p->type == ZH_ZHTTP_DATA || p->type == ZH_ZHTTP_PING || p->type == ZH_ZHTTP_PONG;
    bool ends = frame && (p->type != ZH_ZHTTP_DATA || !((p->has & ZH_ZF_MORE) && p->more));
    if (frame && !c->ws_close_sent && !ends_room(c)) {
        zh_info("session %.*s: handler has more than --messages-max (%u) messages waiting for the "
                "client, closing",
                (int)c->id_len, c->id, c->s->cfg.ws_messages_max);
        fail_ws(c, ZH_WS_CLOSE_INTERNAL, NULL);
        return;
    }
    switch (p->type) {
    case ZH_ZHTTP_DATA: {
        if ((int64_t)p->body.n > c->granted) {
            zh_info("session %.*s: handler exceeded its credits, closing", (int)c->id_len, c->id);
            fail_ws(c, ZH_WS_CLOSE_INTERNAL, NULL);
            return;
        }
        c->granted -= (int64_t)p->body.n;
        c->unacked += p->body.n; /* re-granted as it leaves the queue */
        if (ends && !c->ws_close_sent)
            zh_metric_inc(ZH_M_S_WS_MSG_OUT);
        if (c->ws_close_sent) {
            zh_info("session %.*s: handler sent data after its close: refused", (int)c->id_len,
                    c->id);
            return;
        }
        uint8_t type = is_binary(p) ? ZH_WS_BINARY : ZH_WS_TEXT;
        if (!zh_ws_sender_in_message(&c->ws_out)) {
            c->ws_out_type = type;
            memset(&c->ws_out_utf8, 0, sizeof(c->ws_out_utf8));
        }
        if (c->ws_out_type == ZH_WS_TEXT &&
            (zh_ws_utf8_feed(&c->ws_out_utf8, p->body.p, p->body.n) < 0 ||
             (!more && !zh_ws_utf8_done(&c->ws_out_utf8)))) {
            zh_info("session %.*s: handler sent text that is not UTF-8: refused", (int)c->id_len,
                    c->id);
            memset(&c->ws_out_utf8, 0, sizeof(c->ws_out_utf8));
            if (!zh_ws_sender_in_message(&c->ws_out))
                return;
            /* Inside a message: end it as it was, the bad piece left out. */
            emit(c, type, NULL, 0, false);
            break;
        }
        emit(c, type, p->body.p, p->body.n, more);
        break;
    }
    case ZH_ZHTTP_CLOSE: {
        if (c->ws_close_sent)
            return;
        unsigned code = ZH_WS_CLOSE_NO_STATUS;
        if (p->has & ZH_ZF_CODE) {
            if (p->code < 0 || p->code > 65535 || !zh_ws_close_code_valid((unsigned)p->code)) {
                zh_info("session %.*s: handler sent close code %lld, which may not be sent: "
                        "refused",
                        (int)c->id_len, c->id, (long long)p->code);
                return;
            }
            code = (unsigned)p->code;
        }
        if (!zh_ws_utf8_valid(p->body.p, p->body.n)) {
            zh_info("session %.*s: handler sent a close reason that is not UTF-8: refused",
                    (int)c->id_len, c->id);
            return;
        }
        struct zh_buf b = {0};
        zh_ws_put_close(&b, code, p->body.p, p->body.n, NULL);
        zh_conn__queue(c, b.data, b.len);
        c->ws_queued_total += b.len;
        zh_buf_free(&b);
        c->ws_close_sent = true;
        c->ws_close_ms = zh_conn__now(c);
        if (c->ws_close_rcvd) {
            zh_handler_session_end(c); /* both sides sent close */
            zh_conn__set_state(c, ZH_CONN_CLOSING);
        } else {
            zh_conn__arm_timer(c); /* the client's close is due within --ws-close-timeout */
        }
        break;
    }
    case ZH_ZHTTP_PING:
    case ZH_ZHTTP_PONG:
        if (c->ws_close_sent)
            return;
        if (p->body.n > ZH_WS_MAX_CONTROL) {
            zh_info("session %.*s: handler sent a %s over 125 bytes: refused", (int)c->id_len,
                    c->id, zh_zhttp_type_name(p->type));
            return;
        }
        queue_frame(c, true, p->type == ZH_ZHTTP_PING ? ZH_WS_PING : ZH_WS_PONG, p->body.p,
                    p->body.n);
        break;
    default: /* credit, keep-alive: more client input may go now */
        break;
    }
    if (ends)
        ends_push(c); /* a message is queued whole (fragments count once, at the last) */
    zh_wsmode_pump(c);
    if (c->state != ZH_CONN_CLOSED)
        zh_conn__flush(c);
}

void zh_wsmode_on_packet(struct zh_conn *c, const struct zh_zhttp_packet *p,
                         const struct zh_zhttp_id *id)
{
    bool rejected = p->type == ZH_ZHTTP_ERROR && p->condition.n == 8 &&
                    memcmp(p->condition.p, "rejected", 8) == 0;
    enum zh_session_verdict v = zh_session_on_packet(&c->sess, p, id, zh_conn__now(c));
    switch (v) {
    case ZH_SV_CLOSED:
        return;
    case ZH_SV_SEQ_ERROR:
        zh_info("session %.*s: wrong seq from handler, cancelling", (int)c->id_len, c->id);
        c->sess.state = ZH_SESS_ACTIVE; /* allow the cancel out */
        if (c->state == ZH_CONN_WS) {
            fail_ws(c, ZH_WS_CLOSE_INTERNAL, NULL);
        } else {
            zh_handler_cancel(c);
            zh_response_simple(c, 502, "handler failed the request");
        }
        return;
    case ZH_SV_TERMINAL:
        zh_handler_session_end(c);
        if (c->state == ZH_CONN_REQUEST && rejected) {
            reject_upgrade(c, p);
            return;
        }
        zh_info("session %.*s: handler sent %s%s%.*s", (int)c->id_len, c->id,
                zh_zhttp_type_name(p->type), p->condition.p ? " " : "", (int)p->condition.n,
                p->condition.p ? (const char *)p->condition.p : "");
        if (c->state == ZH_CONN_REQUEST)
            zh_response_simple(c, 502, "handler failed the request");
        else
            fail_ws(c, ZH_WS_CLOSE_INTERNAL, NULL);
        return;
    case ZH_SV_HANDOFF_START:
        c->sess.state = ZH_SESS_ACTIVE;
        zh_handler_send_simple(c, ZH_ZHTTP_HANDOFF_PROCEED);
        zh_session_pause(&c->sess);
        zh_conn__arm_timer(c);
        return;
    case ZH_SV_OK:
    case ZH_SV_RESUMED:
        break;
    }
    zh_conn__arm_timer(c);
    if (c->state == ZH_CONN_REQUEST) {
        if (p->type != ZH_ZHTTP_DATA)
            return; /* keep-alive or credits before the answer */
        if ((p->has & ZH_ZF_CODE) && p->code == 101) {
            if (p->body.n || ((p->has & ZH_ZF_MORE) && p->more)) {
                zh_info("session %.*s: handler's 101 has a body: 502", (int)c->id_len, c->id);
                zh_handler_cancel(c);
                zh_response_simple(c, 502, "invalid response from handler");
                return;
            }
            accept_upgrade(c, p);
            zh_wsmode_pump(c);
            if (c->state != ZH_CONN_CLOSED)
                zh_conn__flush(c);
            return;
        }
        /* A plain HTTP answer to the upgrade request. */
        zh_streammode_apply(c, p);
        return;
    }
    if (c->state == ZH_CONN_WS)
        from_handler(c, p);
}

/* ---- from the client ---- */

static void send_data(struct zh_conn *c, uint8_t type, const uint8_t *d, size_t n, bool more)
{
    struct zh_zhttp_packet *p = zh_handler_packet(c);
    p->content_type = zh_span_str(type == ZH_WS_BINARY ? "binary" : "text");
    p->body = (struct zh_span){d, n};
    if (more) {
        p->has |= ZH_ZF_MORE;
        p->more = true;
    }
    zh_session_spend(&c->sess, n);
    zh_handler_send(c, ZH_ZS_S_OUT_STREAM, p);
}

/* Inflated bytes go to the handler as its credits allow. Returns true when none are left. */
static bool drain_pending(struct zh_conn *c)
{
    const uint8_t *d;
    size_t n;
    bool more;
    while (zh_wsd_inbox_next(&c->ws_inbox, c->sess.send_credits, &d, &n, &more)) {
        send_data(c, c->ws_inbox.type, d, n, more);
        zh_wsd_inbox_consume(&c->ws_inbox, n, more);
    }
    if (zh_wsd_inbox_pending(&c->ws_inbox))
        return false;
    zh_wsd_inbox_trim(&c->ws_inbox, 4 * c->s->cfg.buffer_size); /* a large message's memory */
    return true;
}

/* A piece of a compressed message: inflate (bounded by --ws-max-message), check text, queue.
 * Returns 0 or the close code to fail with. */
static unsigned inflate_piece(struct zh_conn *c, const struct zh_ws_event *ev)
{
    const char *why;
    unsigned code =
        zh_wsd_inbox_feed(&c->ws_inbox, &c->wsd, ev->opcode, ev->message_start, ev->message_end,
                          ev->data, ev->len, c->s->cfg.ws_max_message, &why);
    if (code)
        zh_info("session %.*s: %s: closing with %u", (int)c->id_len, c->id, why, code);
    return code;
}

/* Send a packet for a parsed event; returns false if the connection ended. */
static bool to_handler(struct zh_conn *c, const struct zh_ws_event *ev)
{
    struct zh_zhttp_packet *p;
    if (ev->kind == ZH_WS_EV_DATA && ev->message_end)
        zh_metric_inc(ZH_M_S_WS_MSG_IN);
    if (ev->kind == ZH_WS_EV_DATA && ev->compressed) {
        unsigned code = inflate_piece(c, ev);
        if (code) {
            c->in_len = 0;
            fail_ws(c, code, NULL);
            return false;
        }
        drain_pending(c);
        return true;
    }
    if (ev->kind == ZH_WS_EV_DATA) {
        p = zh_handler_packet(c);
        p->content_type = zh_span_str(ev->opcode == ZH_WS_BINARY ? "binary" : "text");
        p->body = (struct zh_span){ev->data, ev->len};
        if (!ev->message_end) {
            p->has |= ZH_ZF_MORE;
            p->more = true;
        }
        zh_session_spend(&c->sess, ev->len);
        zh_handler_send(c, ZH_ZS_S_OUT_STREAM, p);
        return true;
    }
    if (ev->opcode == ZH_WS_PING && c->s->cfg.ws_auto_pong) {
        if (!c->ws_close_sent)
            queue_frame(c, true, ZH_WS_PONG, ev->data, ev->len);
        return true;
    }
    switch (ev->opcode) {
    case ZH_WS_PING:
    case ZH_WS_PONG:
        if (ev->opcode == ZH_WS_PONG && ev->len == sizeof(KEEPALIVE_PING) - 1 &&
            memcmp(ev->data, KEEPALIVE_PING, ev->len) == 0)
            return true; /* the answer to our keep-alive ping */
        p = zh_handler_packet(c);
        p->type = ev->opcode == ZH_WS_PING ? ZH_ZHTTP_PING : ZH_ZHTTP_PONG;
        p->body = (struct zh_span){ev->data, ev->len};
        zh_handler_send(c, ZH_ZS_S_OUT_STREAM, p);
        return true;
    default: /* close */
        p = zh_handler_packet(c);
        p->type = ZH_ZHTTP_CLOSE;
        if (ev->close_code != ZH_WS_CLOSE_NO_STATUS) {
            p->has |= ZH_ZF_CODE;
            p->code = ev->close_code;
        }
        p->body = (struct zh_span){ev->reason, ev->reason_len};
        zh_handler_send(c, ZH_ZS_S_OUT_STREAM, p);
        c->ws_close_rcvd = true;
        if (c->ws_close_sent) {
            zh_handler_session_end(c);
            zh_conn__set_state(c, ZH_CONN_CLOSING);
            zh_conn__flush(c);
            return false;
        }
        return true;
    }
}

void zh_wsmode_pump(struct zh_conn *c)
{
    size_t off = 0;
    while (c->state == ZH_CONN_WS && !c->ws_close_rcvd) {
        if (!c->has_session || !c->sess.peer_len || c->sess.state != ZH_SESS_ACTIVE)
            break;
        if (!drain_pending(c) || off >= c->in_len)
            break;
        int64_t cr = c->sess.send_credits;
        c->ws_in.piece_limit = cr > 0 ? (uint64_t)cr : 0;
        struct zh_ws_event ev;
        int rc = zh_ws_parse(&c->ws_in, (uint8_t *)c->in + off, c->in_len - off, &ev);
        if (rc < 0) {
            zh_info("session %.*s: WebSocket protocol error from the client: %s: closing with %u",
                    (int)c->id_len, c->id, c->ws_in.error, c->ws_in.close_code);
            c->in_len = 0;
            fail_ws(c, c->ws_in.close_code, NULL);
            return;
        }
        off += (size_t)rc;
        if (ev.kind == ZH_WS_EV_NONE) {
            if (rc == 0)
                break;
            continue;
        }
        if (!to_handler(c, &ev))
            break;
    }
    if (c->state == ZH_CONN_WS && off)
        zh_input_consume(c, off);
    if (c->ws_close_rcvd && c->state == ZH_CONN_WS)
        c->in_len = 0; /* nothing after a close frame counts */
}

void zh_wsmode_timer(struct zh_conn *c, uint64_t now)
{
    const struct zh_server_config *cfg = &c->s->cfg;
    if (c->ws_close_sent && now >= c->ws_close_ms + cfg->ws_close_timeout_ms) {
        zh_info("session %.*s: client did not answer our close within %u ms, closing",
                (int)c->id_len, c->id, cfg->ws_close_timeout_ms);
        zh_conn_close(c, "close timeout");
        return;
    }
    if (c->has_session && zh_session_expired(&c->sess, now)) {
        zh_info("session %.*s: handler silent for %u ms, expired", (int)c->id_len, c->id,
                c->sess.params.expiry_ms);
        fail_ws(c, ZH_WS_CLOSE_INTERNAL, NULL);
        return;
    }
    uint32_t iv = cfg->ws_ping_interval_ms;
    if (iv && !c->ws_close_sent) {
        if (c->ws_ping_ms && now >= c->ws_ping_ms + iv) {
            zh_info("session %.*s: client silent %u ms after our ping, closing", (int)c->id_len,
                    c->id, iv);
            zh_conn_close(c, "ping timeout");
            return;
        }
        if (!c->ws_ping_ms && now >= c->last_in_ms + iv) {
            queue_frame(c, true, ZH_WS_PING, KEEPALIVE_PING, sizeof(KEEPALIVE_PING) - 1);
            c->ws_ping_ms = now;
            zh_conn__flush(c);
            if (c->state == ZH_CONN_CLOSED)
                return;
        }
    }
    zh_conn__arm_timer(c);
}

uint64_t zh_wsmode_deadline(const struct zh_conn *c)
{
    uint64_t at = UINT64_MAX;
    if (c->has_session)
        at = zh_session_expires_at(&c->sess);
    if (c->ws_close_sent) {
        uint64_t t = c->ws_close_ms + c->s->cfg.ws_close_timeout_ms;
        if (t < at)
            at = t;
    } else if (c->s->cfg.ws_ping_interval_ms) {
        uint64_t t =
            (c->ws_ping_ms ? c->ws_ping_ms : c->last_in_ms) + c->s->cfg.ws_ping_interval_ms;
        if (t < at)
            at = t;
    }
    return at;
}
