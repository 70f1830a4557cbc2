/* The ZHTTP side of a server connection's request, in both modes: the session (its id, begin and
 * end), the packets we build and send to the handler (first packet with the --handler-wait
 * deadline, cancel, credits), and our own messages the bridge hands back undelivered. See
 * docs/internals/conn-lifecycle.md. */
#include "server/conn.h"

#include <stdio.h>
#include <string.h>

#include "shared/proto/mem.h"
#include "shared/rt/log.h"
#include "shared/rt/metrics.h"

struct zh_zhttp_packet *zh_handler_packet(struct zh_conn *c)
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
        p->ids[0].seq = zh_session_take_seq(&c->sess, zh_conn__now(c));
    }
    return p;
}

void zh_handler_send(struct zh_conn *c, enum zh_zsock sock, const struct zh_zhttp_packet *p)
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
            uint64_t now = zh_conn__now(c);
            uint64_t left = c->req_deadline_ms > now ? c->req_deadline_ms - now : 0;
            if (left < wait)
                wait = left;
        }
        m->deadline_ms = zh_time_ms() + wait;
    }
    zh_zport_send(c->s->port, m);
}

/* A packet after the first goes through the ROUTER to the handler's address. */
void zh_handler_send_simple(struct zh_conn *c, enum zh_zhttp_type type)
{
    if (!c->has_session || c->req_mode || !c->sess.peer_len || c->sess.state == ZH_SESS_CLOSED)
        return;
    struct zh_zhttp_packet *p = zh_handler_packet(c);
    p->type = type;
    zh_handler_send(c, ZH_ZS_S_OUT_STREAM, p);
}

void zh_handler_grant_credits(struct zh_conn *c)
{
    if (!c->has_session || c->req_mode || !c->sess.peer_len || c->sess.state != ZH_SESS_ACTIVE)
        return;
    size_t queued = zh_chunkq_len(&c->out);
    if (c->unacked <= queued)
        return;
    uint64_t g = c->unacked - queued;
    c->unacked -= g;
    c->granted += (int64_t)g;
    struct zh_zhttp_packet *p = zh_handler_packet(c);
    p->type = ZH_ZHTTP_CREDIT;
    p->has |= ZH_ZF_CREDITS;
    p->credits = (int64_t)g;
    zh_handler_send(c, ZH_ZS_S_OUT_STREAM, p);
}

void zh_handler_session_end(struct zh_conn *c)
{
    if (!c->has_session)
        return;
    c->has_session = false;
    c->s->active--;
    zh_metric_inc(ZH_M_S_SESS_CLOSE);
    zh_session_close(&c->sess);
}

void zh_handler_cancel(struct zh_conn *c)
{
    if (c->has_session)
        zh_metric_inc(ZH_M_S_CANCEL);
    zh_handler_send_simple(c, ZH_ZHTTP_CANCEL);
    zh_handler_session_end(c);
}

void zh_handler_session_begin(struct zh_conn *c)
{
    struct zh_server *s = c->s;
    /* The counter is the worker's, not the connection's: a slot is reused by later connections
     * and their ids must still never repeat (handlers key sessions by id). */
    c->id_len = (size_t)snprintf(c->id, sizeof(c->id), "%u-%u-%llx", s->worker, c->slot,
                                 (unsigned long long)++s->id_counter);
    zh_session_init(&c->sess, ZH_ROLE_SERVER, &s->cfg.params, zh_conn__now(c));
    c->has_session = true;
    s->active++;
    c->sess_start_ms = zh_conn__now(c);
    zh_metric_inc(ZH_M_S_SESS_OPEN);
    c->served++;
}

void zh_handler_on_undelivered(struct zh_conn *c, enum zh_zsock sock)
{
    if (!c->has_session)
        return;
    if (sock == ZH_ZS_S_OUT_STREAM) {
        zh_debug("session %.*s: handler '%s' unreachable", (int)c->id_len, c->id, c->sess.peer);
        zh_handler_session_end(c); /* no cancel: it could not reach the handler either */
        if (c->state == ZH_CONN_REQUEST)
            zh_response_simple(c, 502, "handler went away");
        else
            zh_conn_close(c, "handler unreachable");
        return;
    }
    /* The first packet: no handler took it within --handler-wait, and it was never sent. */
    if (c->state != ZH_CONN_REQUEST)
        return;
    zh_debug("session %.*s: no handler took the request within %u ms: 503", (int)c->id_len, c->id,
             c->s->cfg.handler_wait_ms);
    zh_handler_session_end(c);
    zh_response_simple(c, 503, "no handler available");
}
