/* Stream-mode requests (Condure's --zclient-stream): the first packet goes out on PUSH, then the
 * request body follows under the handler's credits and the handler's packets (response head,
 * body, credits, keep-alives, handoff, errors) arrive through the ROUTER for the session. The
 * req-mode counterpart is reqmode.c. See docs/internals/flow-control.md. */
#include "server/conn.h"

#include <string.h>

#include "shared/proto/mem.h"
#include "shared/rt/log.h"

/* Stream mode: the first packet goes out on PUSH; the body follows under the handler's credits.
 */
void zh_streammode_start(struct zh_conn *c, const struct zh_http1_header *hdrs, size_t nh,
                         const struct zh_http1_framing *f)
{
    struct zh_zhttp_packet *p = zh_handler_packet(c);
    struct zh_buf uri = {0};
    zh_input_request_fields(c, p, hdrs, nh, f, &uri);
    p->has |= ZH_ZF_CREDITS | ZH_ZF_STREAM | ZH_ZF_ROUTER_RESP;
    p->credits = (int64_t)c->s->cfg.buffer_size;
    p->stream = true;
    p->router_resp = true;
    if (!c->body_done) {
        p->has |= ZH_ZF_MORE;
        p->more = true;
    }
    zh_handler_send(c, ZH_ZS_S_OUT, p);
    zh_buf_free(&uri);
    zh_conn__set_state(c, ZH_CONN_REQUEST);
}

/* Stream mode: forward buffered request body bytes to the handler as its credits allow. */
void zh_streammode_pump(struct zh_conn *c)
{
    if (!c->has_session || c->body_done)
        return;
    if (c->req_body == ZH_HTTP1_BODY_CHUNKED) {
        if (zh_input_decode_chunked(c) < 0)
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
        struct zh_zhttp_packet *p = zh_handler_packet(c);
        p->body = (struct zh_span){(const uint8_t *)c->in, n};
        if (!last) {
            p->has |= ZH_ZF_MORE;
            p->more = true;
        }
        zh_session_spend(&c->sess, n);
        zh_handler_send(c, ZH_ZS_S_OUT_STREAM, p);
        zh_input_consume(c, n);
        c->body_ready -= n;
        if (c->req_body == ZH_HTTP1_BODY_LENGTH)
            c->body_left -= n;
        if (last)
            c->body_done = true;
    }
}

void zh_streammode_on_packet(struct zh_conn *c, const struct zh_zhttp_packet *p,
                             const struct zh_zhttp_id *id)
{
    enum zh_session_verdict v = zh_session_on_packet(&c->sess, p, id, zh_conn__now(c));
    switch (v) {
    case ZH_SV_CLOSED:
        return;
    case ZH_SV_SEQ_ERROR:
        zh_info("session %.*s: wrong seq from handler, cancelling", (int)c->id_len, c->id);
        c->sess.state = ZH_SESS_ACTIVE; /* allow the cancel out */
        zh_handler_cancel(c);
        zh_conn_close(c, "seq error");
        return;
    case ZH_SV_TERMINAL:
        zh_info("session %.*s: handler sent %s%s%.*s", (int)c->id_len, c->id,
                zh_zhttp_type_name(p->type), p->condition.p ? " " : "", (int)p->condition.n,
                p->condition.p ? (const char *)p->condition.p : "");
        zh_handler_session_end(c);
        if (c->state == ZH_CONN_REQUEST)
            zh_response_simple(c, 502, "handler failed the request");
        else
            zh_conn_close(c, "handler ended the session");
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
    zh_streammode_apply(c, p);
}

void zh_streammode_apply(struct zh_conn *c, const struct zh_zhttp_packet *p)
{
    if (p->type == ZH_ZHTTP_DATA) {
        if ((int64_t)p->body.n > c->granted) {
            zh_info("session %.*s: handler exceeded its credits, closing", (int)c->id_len, c->id);
            zh_handler_cancel(c);
            zh_conn_close(c, "credits exceeded");
            return;
        }
        c->granted -= (int64_t)p->body.n;
        bool more = (p->has & ZH_ZF_MORE) && p->more;
        if (c->state == ZH_CONN_REQUEST) {
            int code = zh_response_status(p);
            if (code < 0) {
                zh_debug("session %.*s: handler sent status %lld, outside 100-599: 502",
                         (int)c->id_len, c->id, (long long)p->code);
                zh_handler_cancel(c);
                zh_response_simple(c, 502, "invalid response from handler");
                return;
            }
            if (code < 200) {
                /* An interim response: the exchange goes on until the final one. */
                if (zh_response_interim(c, p, code) < 0) {
                    zh_handler_cancel(c);
                    zh_response_simple(c, 502, "invalid response from handler");
                    return;
                }
                zh_streammode_pump(c);
                zh_conn__flush(c);
                return;
            }
            /* Answered before the body was asked for: no 100 Continue (the body is not read). */
            c->expect_continue = false;
            if (zh_response_head(c, p, more) < 0) {
                zh_debug("session %.*s: handler sent an invalid response head", (int)c->id_len,
                         c->id);
                zh_handler_cancel(c);
                zh_response_simple(c, 502, "invalid response from handler");
                return;
            }
        }
        if (c->state == ZH_CONN_RESPONSE)
            zh_response_body(c, p->body, more);
        return;
    }
    /* credit / keep-alive / resume: the handler is there and takes the body. */
    if (c->expect_continue && c->state == ZH_CONN_REQUEST) {
        c->expect_continue = false;
        zh_conn__queue(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    zh_streammode_pump(c);
    zh_conn__flush(c);
}
