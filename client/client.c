#include "client/client.h"

#include <string.h>

#include "shared/proto/jformat.h"
#include "client/outbound.h"
#include "client/wsclient.h"
#include "shared/proto/err.h"
#include "shared/proto/mem.h"
#include "shared/proto/tnetstring.h"
#include "shared/rt/accesslog.h"
#include "shared/rt/log.h"
#include "shared/rt/metrics.h"
#include "shared/rt/zroute.h"

#define QUEUE_MAX       1024                  /* requests waiting for a slot, per worker */
#define QUEUE_FULL      "service-unavailable" /* the condition of a request the full queue refuses */
#define REFUSED_LOG_MS  1000                  /* one log line per second at most for refusals */
#define DATA_PACKET_MAX (256 * 1024)          /* body bytes in one response packet */
#define TABLE_MIN       64

/* One request: a stream session (keyed by (from, id)) or a req-mode exchange. Every state change
 * goes through set_state(), which logs "-> [%s]". */
enum cs_state {
    CS_QUEUED = 0, /* accepted (and acked), waiting for a request slot */
    CS_REQUESTING, /* the transfer runs; nothing of the response was sent yet */
    CS_RESPONDING, /* the response head was sent; the body follows under credits */
    CS_CLOSED,     /* ended; freed in the reap phase */
};

static const char *const cs_names[] = {
    [CS_QUEUED] = "queued",
    [CS_REQUESTING] = "requesting",
    [CS_RESPONDING] = "responding",
    [CS_CLOSED] = "closed",
};

struct csess {
    struct csess *hnext;         /* hash chain */
    struct csess *qnext;         /* waiting queue, or the dead list */
    struct csess *aprev, *anext; /* every live session of the engine */
    struct zh_client *c;
    enum cs_state state;
    bool req_mode;    /* one answer inside the request's envelope */
    bool json;        /* the requester speaks `J` */
    bool quiet;       /* fire and forget (no from or no id): nothing is sent back */
    bool keyed;       /* in the (from, id) table */
    bool router_resp; /* replies go through the ROUTER instead of the PUB */
    bool stream;      /* the response body is streamed under credits */
    bool ext_multi;   /* the requester said ext.multi */
    bool has_id;
    bool running; /* holds a request slot */
    struct zh_session ss;
    struct zh_zmsg *env; /* req mode: the request message, whose envelope the answer reuses */
    uint32_t env_frames;
    uint8_t from_len, id_len;
    char from[ZH_ZHTTP_MAX_ID_LEN + 1];
    char id[ZH_ZHTTP_MAX_ID_LEN + 1];
    struct zh_buf user_data; /* the latest user-data, raw tnetstring */
    struct zh_request *req;
    struct zh_wsc *ws; /* a ws:// / wss:// session (client/wsclient) instead of req */
    struct zh_timer timer;
    struct zh_defer pump;
    uint64_t deadline;      /* `timeout` field: session-timeout at this time (0 = none) */
    uint64_t active_at;     /* last activity of the exchange, for the inactivity limit */
    int64_t upload_credits; /* request body bytes the requester may still send */
    uint64_t started_at;    /* for the duration metrics */
    int code;               /* response status, once the head was sent */
};

struct zh_client {
    struct zh_loop *loop;
    struct zh_zport *port;
    unsigned worker;
    struct zh_client_config cfg;
    struct zh_outbound *out;
    struct zh_resolver *resolver;
    struct zh_request_ctx *rctx;
    struct zh_wsc_ctx *wsctx; /* NULL when its TLS settings failed: ws requests are refused */
    struct csess **table;
    size_t table_size;
    size_t n_keyed;
    struct csess *all;
    size_t n_sess;
    size_t n_running;
    struct csess *q_head, *q_tail;
    size_t n_queued;
    struct zh_io slots_io;   /* a slot was given back somewhere: try the queue again */
    uint64_t refused_log_at; /* last "queue full" log line */
    uint64_t refused;        /* refusals since that line */
    struct csess *dead;
    struct zh_defer reap;
    struct zh_defer admit;
    struct zh_zhttp_packet *in;  /* decoded incoming packet */
    struct zh_zhttp_packet *rep; /* reply being built */
    struct zh_buf jin;           /* a `J` packet converted to `T` */
    struct zh_buf enc;           /* an encoded reply */
    struct zh_buf jenc;          /* an encoded reply converted to `J` */
    bool closing;
};

static void set_state(struct csess *s, enum cs_state st)
{
    zh_trace("session %s/%s -> [%s]", s->from, s->id, cs_names[st]);
    s->state = st;
}

static struct zh_span sspan(const char *p, size_t n)
{
    return (struct zh_span){(const uint8_t *)p, n};
}

/* ---- the (from, id) table ---- */

static size_t key_hash(const uint8_t *from, size_t fl, const uint8_t *id, size_t il)
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < fl; i++)
        h = (h ^ from[i]) * 1099511628211u;
    h = (h ^ 0xffu) * 1099511628211u;
    for (size_t i = 0; i < il; i++)
        h = (h ^ id[i]) * 1099511628211u;
    return (size_t)(h ^ (h >> 29));
}

static struct csess *lookup(struct zh_client *c, struct zh_span from, struct zh_span id)
{
    if (!c->table_size)
        return NULL;
    size_t b = key_hash(from.p, from.n, id.p, id.n) & (c->table_size - 1);
    for (struct csess *s = c->table[b]; s; s = s->hnext)
        if (s->from_len == from.n && s->id_len == id.n && memcmp(s->from, from.p, from.n) == 0 &&
            memcmp(s->id, id.p, id.n) == 0)
            return s;
    return NULL;
}

static void table_insert(struct zh_client *c, struct csess *s)
{
    if ((c->n_keyed + 1) * 4 > c->table_size * 3) {
        /* Grow at 75 % load. */
        size_t ns = c->table_size ? c->table_size * 2 : TABLE_MIN;
        struct csess **nt = zh_calloc(ns, sizeof(*nt));
        for (size_t i = 0; i < c->table_size; i++) {
            struct csess *e = c->table[i];
            while (e) {
                struct csess *next = e->hnext;
                size_t b = key_hash((const uint8_t *)e->from, e->from_len, (const uint8_t *)e->id,
                                    e->id_len) &
                           (ns - 1);
                e->hnext = nt[b];
                nt[b] = e;
                e = next;
            }
        }
        zh_free(c->table);
        c->table = nt;
        c->table_size = ns;
    }
    size_t b = key_hash((const uint8_t *)s->from, s->from_len, (const uint8_t *)s->id, s->id_len) &
               (c->table_size - 1);
    s->hnext = c->table[b];
    c->table[b] = s;
    s->keyed = true;
    c->n_keyed++;
}

static void table_remove(struct zh_client *c, struct csess *s)
{
    if (!s->keyed)
        return;
    size_t b = key_hash((const uint8_t *)s->from, s->from_len, (const uint8_t *)s->id, s->id_len) &
               (c->table_size - 1);
    struct csess **pp = &c->table[b];
    while (*pp != s)
        pp = &(*pp)->hnext;
    *pp = s->hnext;
    s->keyed = false;
    c->n_keyed--;
}

/* ---- sending ---- */

/* The encoded packet in the requester's format (valid until the next encode). */
static struct zh_span encode(struct zh_client *c, const struct zh_zhttp_packet *p, bool json)
{
    zh_buf_reset(&c->enc);
    zh_zhttp_encode(p, &c->enc);
    if (!json)
        return (struct zh_span){c->enc.data, c->enc.len};
    zh_buf_reset(&c->jenc);
    zh_jformat_from_tnet(c->enc.data, c->enc.len, &c->jenc);
    return (struct zh_span){c->jenc.data, c->jenc.len};
}

/* A stream reply to requester `to`: one PUB frame "<to> T…", or [to, "", T…] on the ROUTER. */
static void send_to(struct zh_client *c, struct zh_span to, bool router, struct zh_span payload)
{
    struct zh_zmsg *m;
    if (router) {
        m = zh_zmsg_new(ZH_ZS_C_IN_STREAM, to.n + payload.n + 8);
        zh_zmsg_add(&m, to.p, to.n);
        zh_zmsg_add(&m, "", 0);
        zh_zmsg_add(&m, payload.p, payload.n);
    } else {
        m = zh_zmsg_new(ZH_ZS_C_OUT, to.n + 1 + payload.n);
        char pre[ZH_ZHTTP_MAX_ID_LEN + 1];
        if (to.n < sizeof(pre)) {
            memcpy(pre, to.p, to.n);
            pre[to.n] = ' ';
            zh_zmsg_add2(&m, pre, to.n + 1, payload.p, payload.n);
        } else {
            struct zh_buf f = {0};
            zh_buf_append(&f, to.p, to.n);
            zh_buf_putc(&f, ' ');
            zh_zmsg_add2(&m, f.data, f.len, payload.p, payload.n);
            zh_buf_free(&f);
        }
    }
    zh_zport_send(c->port, m);
}

/* Start the reply packet of session s (from, id, seq, user-data are filled in by send_pkt). */
static struct zh_zhttp_packet *reply(struct zh_client *c, enum zh_zhttp_type type)
{
    zh_zhttp_packet_init(c->rep);
    c->rep->type = type;
    return c->rep;
}

static void send_pkt(struct csess *s, struct zh_zhttp_packet *p)
{
    struct zh_client *c = s->c;
    if (p->type == ZH_ZHTTP_ERROR) {
        char cond[64];
        size_t n = p->condition.n < sizeof(cond) - 1 ? p->condition.n : sizeof(cond) - 1;
        if (n)
            memcpy(cond, p->condition.p, n);
        cond[n] = '\0';
        zh_metric_inc(ZH_M_C_ERROR);
        zh_metric_condition(cond);
    } else if (p->type == ZH_ZHTTP_CANCEL) {
        zh_metric_inc(ZH_M_C_CANCEL);
    }
    if (s->quiet)
        return;
    if (s->user_data.len)
        p->user_data = (struct zh_span){s->user_data.data, s->user_data.len};
    if (s->req_mode) {
        if (s->has_id) {
            p->n_ids = 1;
            p->ids[0].id = sspan(s->id, s->id_len);
        }
        if (s->from_len)
            p->from = zh_span_str(c->cfg.instance_id);
        struct zh_span payload = encode(c, p, s->json);
        struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_C_REQ, payload.n + 256);
        for (uint32_t i = 0; i < s->env_frames; i++) {
            struct zh_span f = zh_zmsg_frame(s->env, i);
            zh_zmsg_add(&m, f.p, f.n);
        }
        zh_zmsg_add(&m, payload.p, payload.n);
        zh_zport_send(c->port, m);
        return;
    }
    p->from = zh_span_str(c->cfg.instance_id);
    p->n_ids = 1;
    p->ids[0].id = sspan(s->id, s->id_len);
    p->ids[0].seq = zh_session_take_seq(&s->ss, zh_loop_now(c->loop));
    p->ids[0].has_seq = true;
    send_to(c, sspan(s->from, s->from_len), s->router_resp, encode(c, p, s->json));
}

/* An answer outside any session (unknown session, refused first packet). */
static void send_direct(struct zh_client *c, bool json, struct zh_span to, struct zh_span id,
                        bool seq0, enum zh_zhttp_type type, const char *condition,
                        struct zh_span user_data)
{
    struct zh_zhttp_packet *p = reply(c, type);
    p->from = zh_span_str(c->cfg.instance_id);
    p->n_ids = 1;
    p->ids[0].id = id;
    p->ids[0].has_seq = seq0;
    if (condition)
        p->condition = zh_span_str(condition);
    if (type == ZH_ZHTTP_ERROR) {
        zh_metric_inc(ZH_M_C_ERROR);
        zh_metric_condition(condition);
    }
    if (user_data.n)
        p->user_data = user_data;
    send_to(c, to, false, encode(c, p, json));
}

/* A req-mode answer before any session exists. */
static void send_req_error(struct zh_client *c, const struct zh_zmsg *req, uint32_t env_frames,
                           bool json, struct zh_span id, struct zh_span user_data,
                           const char *condition)
{
    struct zh_zhttp_packet *p = reply(c, ZH_ZHTTP_ERROR);
    if (id.p) {
        p->n_ids = 1;
        p->ids[0].id = id;
    }
    p->condition = zh_span_str(condition);
    p->user_data = user_data;
    zh_metric_inc(ZH_M_C_ERROR);
    zh_metric_condition(condition);
    struct zh_span payload = encode(c, p, json);
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_C_REQ, payload.n + 256);
    for (uint32_t i = 0; i < env_frames; i++) {
        struct zh_span f = zh_zmsg_frame(req, i);
        zh_zmsg_add(&m, f.p, f.n);
    }
    zh_zmsg_add(&m, payload.p, payload.n);
    zh_zport_send(c->port, m);
}

/* ---- session life ---- */

static void arm_timer(struct csess *s);
static void admit_cb(struct zh_defer *d, void *data);

static void queue_remove(struct zh_client *c, struct csess *s)
{
    struct csess **pp = &c->q_head;
    struct csess *prev = NULL;
    while (*pp && *pp != s) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    if (!*pp)
        return;
    *pp = s->qnext;
    if (c->q_tail == s)
        c->q_tail = prev;
    s->qnext = NULL;
    c->n_queued--;
}

/* End s: nothing more is sent or received for it; the memory goes in the reap phase. Safe from
 * any loop context (never called from inside a curl callback). */
static void end_session(struct csess *s)
{
    struct zh_client *c = s->c;
    if (s->state == CS_CLOSED)
        return;
    if (s->state == CS_QUEUED)
        queue_remove(c, s);
    set_state(s, CS_CLOSED);
    zh_metric_inc(ZH_M_C_SESS_CLOSE);
    if (s->req)
        zh_metric_add(ZH_M_C_BYTES_IN, zh_request_received(s->req));
    zh_session_close(&s->ss);
    table_remove(c, s);
    zh_loop_timer_stop(c->loop, &s->timer);
    zh_loop_defer_cancel(c->loop, &s->pump);
    zh_request_free(s->req);
    s->req = NULL;
    zh_wsc_free(s->ws);
    s->ws = NULL;
    if (s->running) {
        s->running = false;
        c->n_running--;
        if (c->cfg.slots)
            zh_slots_put(c->cfg.slots); /* wakes the workers whose requests wait */
        if (c->q_head)
            zh_loop_defer(c->loop, &c->admit);
    }
    s->qnext = c->dead;
    c->dead = s;
    zh_loop_defer(c->loop, &c->reap);
}

static void free_session(struct csess *s)
{
    struct zh_client *c = s->c;
    if (s->aprev)
        s->aprev->anext = s->anext;
    else
        c->all = s->anext;
    if (s->anext)
        s->anext->aprev = s->aprev;
    c->n_sess--;
    zh_zmsg_free(s->env);
    zh_buf_free(&s->user_data);
    zh_free(s);
}

static void reap_cb(struct zh_defer *d, void *data)
{
    struct zh_client *c = data;
    ZH_UNUSED(d);
    while (c->dead) {
        struct csess *s = c->dead;
        c->dead = s->qnext;
        free_session(s);
    }
}

/* The session's one failure line (at info): what happened and where, never the query string or a
 * header value. stage/reason NULL: the request's own note. */
static void log_failure(struct csess *s, const char *condition, const char *stage,
                        const char *reason)
{
    char host[256];
    if (!stage && s->req) {
        stage = zh_request_fail_stage(s->req);
        reason = zh_request_fail_reason(s->req);
    }
    zh_info("session %s/%s failed: role=client method=%s host=%s condition=%s stage=%s "
            "reason=\"%s\"%s",
            s->from, s->id, s->req ? zh_request_method(s->req) : "-",
            s->req ? zh_request_host(s->req, host, sizeof(host)) : "-", condition,
            stage ? stage : "response", reason ? reason : "",
            s->state == CS_RESPONDING ? " after the response started; sending cancel" : "");
}

/* The exchange failed with condition: before the response started the requester gets an error
 * with the condition; after, a cancel (ZHTTP.md §6). One line says why (log_failure). */
/* The session's access log line (--access-log). */
static void access_log(struct csess *s, const char *outcome)
{
    if (!zh_accesslog_on() || s->quiet)
        return;
    char host[256], sess[2 * ZH_ZHTTP_MAX_ID_LEN + 2];
    snprintf(sess, sizeof(sess), "%s/%s", s->from, s->id);
    const char *url = s->req ? zh_request_url(s->req) : NULL;
    const char *path = url ? strstr(url, "://") : NULL;
    path = path ? path + 3 + strcspn(path + 3, "/?#") : NULL;
    uint64_t now = zh_loop_now(s->c->loop);
    struct zh_accesslog_entry e = {
        .role = "client",
        .peer = s->from,
        .session = sess,
        .method = s->req ? zh_request_method(s->req) : NULL,
        .host = s->req ? zh_request_host(s->req, host, sizeof(host)) : NULL,
        .path = path,
        .status = s->code,
        .bytes = s->req ? zh_request_received(s->req) : 0,
        .duration_ms = now - s->started_at,
        .outcome = outcome,
    };
    zh_accesslog_write(&e);
}

static void fail_at(struct csess *s, const char *condition, const char *stage, const char *reason)
{
    if (s->state == CS_CLOSED)
        return;
    log_failure(s, condition, stage, reason);
    access_log(s, condition);
    if (s->state == CS_RESPONDING) {
        send_pkt(s, reply(s->c, ZH_ZHTTP_CANCEL));
    } else {
        struct zh_zhttp_packet *p = reply(s->c, ZH_ZHTTP_ERROR);
        p->condition = zh_span_str(condition);
        send_pkt(s, p);
    }
    end_session(s);
}

static void fail(struct csess *s, const char *condition)
{
    fail_at(s, condition, NULL, NULL);
}

/* ---- the response pump: runs from the loop whenever the exchange or the credits moved ---- */

static void grant_upload_credits(struct csess *s)
{
    uint64_t sent = zh_request_take_sent(s->req);
    zh_metric_add(ZH_M_C_BYTES_OUT, sent);
    if (!sent || s->req_mode)
        return;
    /* Credits for the request body go back once curl has taken the bytes (Zurl: bytes written
     * upstream), and only while the body is still coming. */
    if (!zh_request_upload_open(s->req))
        return;
    s->upload_credits += (int64_t)sent;
    struct zh_zhttp_packet *p = reply(s->c, ZH_ZHTTP_CREDIT);
    p->has |= ZH_ZF_CREDITS;
    p->credits = (int64_t)sent;
    send_pkt(s, p);
}

/* Send one data packet: the head (first time), up to n body bytes, and `more` unless last. */
static void send_data(struct csess *s, size_t n, bool last)
{
    struct zh_zhttp_packet *p = reply(s->c, ZH_ZHTTP_DATA);
    if (s->state != CS_RESPONDING) {
        zh_request_fill_head(s->req, p);
        set_state(s, CS_RESPONDING);
        s->code = (int)p->code;
        zh_metric_observe(ZH_MH_C_FIRST_BYTE, zh_loop_now(s->c->loop) - s->started_at);
    }
    struct zh_span body = zh_request_peek(s->req);
    p->body.p = body.p;
    p->body.n = n;
    if (!last) {
        p->has |= ZH_ZF_MORE;
        p->more = true;
    }
    send_pkt(s, p);
    zh_request_consume(s->req, n);
}

static void finish_ok(struct csess *s)
{
    zh_metric_status(ZH_M_C_RESP_1, s->code);
    access_log(s, "ok");
    zh_metric_observe(ZH_MH_C_TOTAL, zh_loop_now(s->c->loop) - s->started_at);
    zh_debug("session %s/%s: %s %s done, %llu body bytes", s->from, s->id,
             zh_request_method(s->req), zh_request_url(s->req),
             (unsigned long long)zh_request_received(s->req));
    end_session(s);
}

static void pump(struct csess *s)
{
    if (s->state != CS_REQUESTING && s->state != CS_RESPONDING)
        return;
    struct zh_request *r = s->req;
    grant_upload_credits(s);
    if (zh_request_done(r) && zh_request_condition(r)) {
        fail(s, zh_request_condition(r));
        return;
    }
    if (!zh_request_has_head(r))
        return;
    bool done = zh_request_done(r);
    if (!s->stream) {
        /* The whole body in one packet (max-size bounds it in the request). */
        if (done) {
            send_data(s, zh_request_peek(r).n, true);
            finish_ok(s);
        }
        return;
    }
    for (;;) {
        size_t avail = zh_request_peek(r).n;
        int64_t credits = s->quiet ? INT64_MAX : s->ss.send_credits;
        size_t n = avail;
        if ((int64_t)n > credits)
            n = credits > 0 ? (size_t)credits : 0;
        if (n > DATA_PACKET_MAX)
            n = DATA_PACKET_MAX;
        bool last = done && n == avail;
        if (s->state == CS_RESPONDING && n == 0 && !last)
            break;
        if (!s->quiet)
            zh_session_spend(&s->ss, n);
        send_data(s, n, last);
        if (last) {
            finish_ok(s);
            return;
        }
        if (n == 0)
            break;
    }
    int64_t credits = s->quiet ? INT64_MAX : s->ss.send_credits;
    zh_request_set_window(r, credits > 0 ? (uint64_t)credits : 0);
}

static void pump_cb(struct zh_defer *d, void *data)
{
    ZH_UNUSED(d);
    pump(data);
}

static void req_event(struct zh_request *r, enum zh_request_event ev, void *data)
{
    struct csess *s = data;
    ZH_UNUSED(r);
    ZH_UNUSED(ev);
    /* HEAD/BODY/SENT come from inside curl callbacks: only note and defer; DONE too, so that one
     * pump decides what the requester hears. */
    s->active_at = zh_loop_now(s->c->loop);
    zh_loop_defer(s->c->loop, &s->pump);
}

/* ---- timers: keep-alive, expiry, the `timeout` field and the inactivity limit ---- */

static uint64_t next_due(const struct csess *s)
{
    const struct zh_client *c = s->c;
    uint64_t at = UINT64_MAX;
    if (!s->req_mode && !s->quiet) {
        uint64_t k = zh_session_keepalive_at(&s->ss);
        uint64_t e = zh_session_expires_at(&s->ss);
        at = k < e ? k : e;
    }
    if (s->deadline && s->deadline < at)
        at = s->deadline;
    /* Time spent waiting for a slot counts: active_at starts when the request is accepted. An open
     * WebSocket may idle (the handler and the origin keep it alive). */
    if (c->cfg.timeout_ms && !(s->ws && s->state == CS_RESPONDING) &&
        s->active_at + c->cfg.timeout_ms < at)
        at = s->active_at + c->cfg.timeout_ms;
    return at;
}

static void arm_timer(struct csess *s)
{
    uint64_t at = next_due(s);
    if (at == UINT64_MAX)
        zh_loop_timer_stop(s->c->loop, &s->timer);
    else
        zh_loop_timer_at(s->c->loop, &s->timer, at);
}

static void timer_cb(struct zh_timer *t, void *data)
{
    struct csess *s = data;
    struct zh_client *c = s->c;
    ZH_UNUSED(t);
    uint64_t now = zh_loop_now(c->loop);
    if (!s->req_mode && !s->quiet && zh_session_expired(&s->ss, now)) {
        /* Silent, as Zurl and Condure do: the requester is gone. */
        zh_info("session %s/%s expired after %u ms of requester silence", s->from, s->id,
                s->ss.params.expiry_ms);
        end_session(s);
        return;
    }
    if (s->deadline && now >= s->deadline) {
        fail_at(s, "session-timeout", s->state == CS_QUEUED ? "request" : "response",
                s->state == CS_QUEUED ? "its timeout elapsed (waiting for a request slot)"
                                      : "its timeout elapsed");
        return;
    }
    if (c->cfg.timeout_ms && !(s->ws && s->state == CS_RESPONDING) &&
        now >= s->active_at + c->cfg.timeout_ms) {
        char why[96];
        snprintf(why, sizeof(why), "no activity for %u ms%s", c->cfg.timeout_ms,
                 s->state == CS_QUEUED ? " (waiting for a request slot)" : "");
        fail_at(s, "session-timeout", s->state == CS_QUEUED ? "request" : "response", why);
        return;
    }
    if (!s->req_mode && !s->quiet && zh_session_keepalive_due(&s->ss, now))
        send_pkt(s, reply(c, ZH_ZHTTP_KEEP_ALIVE));
    arm_timer(s);
}

/* ---- starting requests, with max_open_requests ---- */

static void start_request(struct csess *s)
{
    struct zh_client *c = s->c;
    s->running = true;
    c->n_running++;
    set_state(s, CS_REQUESTING);
    if (s->ws) {
        /* A WebSocket session holds its slot until it ends, as a transfer does. */
        zh_wsc_connect(s->ws);
        arm_timer(s);
        return;
    }
    if (s->stream && !s->quiet)
        zh_request_set_window(s->req, s->ss.send_credits > 0 ? (uint64_t)s->ss.send_credits : 0);
    zh_request_start(s->req);
    if (s->req_mode)
        zh_debug("worker %u: req %s %s started", c->worker, zh_request_method(s->req),
                 zh_request_url(s->req));
    else
        zh_debug("worker %u: stream %s %s started for %s/%s", c->worker, zh_request_method(s->req),
                 zh_request_url(s->req), s->from, s->id);
    arm_timer(s);
}

/* Take one of the process-wide slots (max_open_requests), if any is free. */
static bool slot_take(struct zh_client *c)
{
    return !c->cfg.slots || zh_slots_take(c->cfg.slots);
}

static void start_first_queued(struct zh_client *c)
{
    struct csess *s = c->q_head;
    c->q_head = s->qnext;
    if (!c->q_head)
        c->q_tail = NULL;
    s->qnext = NULL;
    c->n_queued--;
    start_request(s);
}

static void admit_cb(struct zh_defer *d, void *data)
{
    struct zh_client *c = data;
    ZH_UNUSED(d);
    for (;;) {
        while (c->q_head && slot_take(c))
            start_first_queued(c);
        if (!c->cfg.slots)
            return;
        /* Say that this worker waits before the last try: a slot given back after that try
         * finds the flag and wakes us (client/slots.h). */
        bool waiting = c->q_head != NULL;
        zh_slots_set_waiting(c->cfg.slots, c->worker, waiting);
        if (!waiting || !slot_take(c))
            return;
        start_first_queued(c);
    }
}

static void slots_cb(struct zh_io *io, uint32_t revents, void *data)
{
    struct zh_client *c = data;
    ZH_UNUSED(io);
    ZH_UNUSED(revents);
    zh_slots_drain(c->cfg.slots, c->worker);
    if (c->q_head)
        zh_loop_defer(c->loop, &c->admit);
}

/* A request the full queue refuses: logged at most once per REFUSED_LOG_MS, with the count. */
static void log_refused(struct zh_client *c, const struct csess *s)
{
    uint64_t now = zh_loop_now(c->loop);
    c->refused++;
    if (c->refused_log_at && now - c->refused_log_at < REFUSED_LOG_MS)
        return;
    zh_warn("worker %u: %zu requests already wait for a slot (max_open_requests %u, all taken): "
            "%llu request(s) refused with %s, latest %s/%s",
            c->worker, c->n_queued, c->cfg.slots ? zh_slots_limit(c->cfg.slots) : 0,
            (unsigned long long)c->refused, QUEUE_FULL, s->from, s->id);
    c->refused = 0;
    c->refused_log_at = now;
}

/* Run s now or queue it. Returns false when the queue is full (the caller answers). */
static bool admit_or_queue(struct csess *s)
{
    struct zh_client *c = s->c;
    if (!c->q_head && slot_take(c)) {
        start_request(s);
        return true;
    }
    if (c->n_queued >= QUEUE_MAX) {
        log_refused(c, s);
        return false;
    }
    set_state(s, CS_QUEUED);
    if (c->q_tail)
        c->q_tail->qnext = s;
    else
        c->q_head = s;
    c->q_tail = s;
    c->n_queued++;
    zh_debug("worker %u: %s/%s waits for a slot (%zu running, %zu waiting)", c->worker, s->from,
             s->id, c->n_running, c->n_queued);
    arm_timer(s);
    if (c->n_queued == 1)
        zh_loop_defer(c->loop, &c->admit); /* announce the wait, then try once more */
    return true;
}

static struct csess *session_new(struct zh_client *c)
{
    struct csess *s = zh_calloc(1, sizeof(*s));
    s->c = c;
    s->state = CS_QUEUED;
    zh_timer_init(&s->timer, timer_cb, s);
    zh_defer_init(&s->pump, pump_cb, s);
    s->anext = c->all;
    if (c->all)
        c->all->aprev = s;
    c->all = s;
    c->n_sess++;
    s->started_at = zh_loop_now(c->loop);
    zh_metric_inc(ZH_M_C_SESS_OPEN);
    return s;
}

/* ---- WebSocket sessions: client/wsclient talks to the requester through these ---- */

static struct zh_zhttp_packet *ws_packet(void *data, enum zh_zhttp_type type)
{
    struct csess *s = data;
    return reply(s->c, type);
}

static void ws_send(void *data, struct zh_zhttp_packet *p)
{
    struct csess *s = data;
    if (p->type == ZH_ZHTTP_DATA && s->state == CS_REQUESTING)
        set_state(s, CS_RESPONDING); /* the 101 */
    s->active_at = zh_loop_now(s->c->loop);
    send_pkt(s, p);
}

static int64_t ws_credits(void *data)
{
    struct csess *s = data;
    return s->quiet ? INT64_MAX : s->ss.send_credits;
}

static void ws_spend(void *data, size_t n)
{
    struct csess *s = data;
    if (!s->quiet)
        zh_session_spend(&s->ss, n);
}

static void ws_done(void *data, const char *condition)
{
    struct csess *s = data;
    if (condition) {
        fail(s, condition);
        return;
    }
    zh_debug("session %s/%s: WebSocket session ended", s->from, s->id);
    end_session(s);
}

static const struct zh_wsc_ops ws_ops = {ws_packet, ws_send, ws_credits, ws_spend, ws_done};

/* Create s->req from the request packet. Returns NULL or the condition to answer. */
static const char *prepare(struct csess *s, const struct zh_zhttp_packet *pkt, bool upload)
{
    struct zh_client *c = s->c;
    if (!s->req_mode && zh_wsc_is_ws_uri(pkt->uri)) {
        const char *cond = "bad-request";
        if (s->quiet)
            zh_info("client-in: WebSocket request without from/id refused");
        else if (!c->wsctx)
            zh_info("session %s/%s: WebSocket unavailable (TLS settings failed)", s->from, s->id);
        else
            s->ws = zh_wsc_start(c->wsctx, pkt, &ws_ops, s, &cond);
        s->active_at = zh_loop_now(c->loop);
        if (s->ws && (pkt->has & ZH_ZF_TIMEOUT) && pkt->timeout > 0)
            s->deadline = zh_loop_now(c->loop) + (uint64_t)pkt->timeout;
        return s->ws ? NULL : cond;
    }
    struct zh_request_opts o = {.stream_upload = upload, .max_size = UINT64_MAX};
    if (pkt->has & ZH_ZF_MAX_SIZE)
        o.max_size = (uint64_t)pkt->max_size;
    else if (!s->stream)
        o.max_size = c->cfg.max_response_size;
    if (pkt->ignore_policies && !c->cfg.http.allow_ignore_policies)
        zh_info("%s/%s: ignore-policies refused by allow_ignore_policies=false", s->from, s->id);
    const char *cond = NULL;
    s->active_at = zh_loop_now(c->loop); /* the inactivity limit counts from acceptance */
    s->req = zh_request_new(c->rctx, pkt, &o, req_event, s, &cond);
    if (s->req && (pkt->has & ZH_ZF_TIMEOUT) && pkt->timeout > 0)
        s->deadline = zh_loop_now(c->loop) + (uint64_t)pkt->timeout;
    return s->req ? NULL : cond;
}

/* ---- decoding ---- */

/* Decode a payload in either format into c->in (a J payload from the bridge's parse, m->json,
 * when it made one). Returns 0, or a negative code with *reason. */
static int decode(struct zh_client *c, const struct zh_zmsg *m, struct zh_span payload, bool *json,
                  const char **reason)
{
    struct zh_zhttp_error err = {0};
    *json = payload.n > 0 && payload.p[0] == 'J';
    if (*json) {
        zh_buf_reset(&c->jin);
        int rc = m->json ? zh_jformat_json_to_tnet(m->json, &c->jin, reason)
                         : zh_jformat_to_tnet(payload.p, payload.n, &c->jin, reason);
        if (rc < 0) {
            zh_zhttp_packet_init(c->in);
            return rc;
        }
        payload = (struct zh_span){c->jin.data, c->jin.len};
    }
    int rc = zh_zhttp_decode(payload.p, payload.n, c->in, &err);
    if (rc < 0)
        *reason = err.reason;
    return rc;
}

/* From a packet that failed to decode, try to read `from` (only when from is not NULL: req mode
 * needs none), a single string `id` and `type`, so the requester can be told (as Zurl does). A J
 * packet is read through a lenient conversion into c->jin (the spans point there). */
static bool salvage_ids(struct zh_client *c, struct zh_span payload, struct zh_span *from,
                        struct zh_span *id)
{
    struct zh_tns_value d, v;
    if (payload.n > 0 && payload.p[0] == 'J') {
        zh_buf_reset(&c->jin);
        if (zh_jformat_to_tnet_lenient(payload.p, payload.n, &c->jin) < 0)
            return false;
        payload = (struct zh_span){c->jin.data, c->jin.len};
    }
    if (payload.n < 2 || payload.p[0] != 'T' ||
        zh_tns_parse_exact(payload.p + 1, payload.n - 1, &d) < 0 || d.type != ZH_TNS_DICT)
        return false;
    if (zh_tns_dict_get(&d, "type", &v) &&
        (zh_tns_str_eq(&v, "error") || zh_tns_str_eq(&v, "cancel")))
        return false;
    if (from) {
        if (!zh_tns_dict_get(&d, "from", &v) || v.type != ZH_TNS_STRING || v.len == 0 ||
            v.len > ZH_ZHTTP_MAX_ID_LEN)
            return false;
        *from = (struct zh_span){v.data, v.len};
    }
    if (!zh_tns_dict_get(&d, "id", &v) || v.type != ZH_TNS_STRING || v.len == 0 ||
        v.len > ZH_ZHTTP_MAX_ID_LEN)
        return false;
    *id = (struct zh_span){v.data, v.len};
    return true;
}

/* ---- req mode ---- */

static void on_req(struct zh_client *c, struct zh_zmsg *m)
{
    /* [envelope…, "", payload]: the delimiter is the frame just before the payload. */
    if (m->nframes < 3 || m->frames[m->nframes - 2].len != 0) {
        zh_warn("client-req: message without an empty delimiter frame dropped");
        zh_zmsg_free(m);
        return;
    }
    uint32_t env = m->nframes - 1;
    struct zh_span payload = zh_zmsg_frame(m, m->nframes - 1);
    struct zh_span none = {NULL, 0};
    bool json = false;
    const char *reason = NULL;
    if (decode(c, m, payload, &json, &reason) < 0) {
        /* Echo the id when it can be read: a DEALER with requests in flight matches by id. */
        struct zh_span id = none;
        if (!salvage_ids(c, payload, NULL, &id))
            id = none;
        zh_warn("client-req: malformed packet: %s", reason);
        send_req_error(c, m, env, json, id, none, "bad-request");
        zh_zmsg_free(m);
        return;
    }
    struct zh_zhttp_packet *pkt = c->in;
    bool single = pkt->n_ids == 1 && !(pkt->has & ZH_ZF_MULTI_ID);
    struct zh_span id = single ? pkt->ids[0].id : none;
    if (pkt->type != ZH_ZHTTP_DATA || (pkt->has & ZH_ZF_MULTI_ID)) {
        zh_warn("client-req: packet of type '%s' is not a request", zh_zhttp_type_name(pkt->type));
        send_req_error(c, m, env, json, id, pkt->user_data, "bad-request");
        zh_zmsg_free(m);
        return;
    }
    if (c->closing) {
        zh_warn("client-req: shutting down, request refused");
        send_req_error(c, m, env, json, id, pkt->user_data, "undefined-condition");
        zh_zmsg_free(m);
        return;
    }
    if ((pkt->has & ZH_ZF_MORE) && pkt->more) {
        zh_info("client-req: more:true in req mode (the body must be inline)");
        send_req_error(c, m, env, json, id, pkt->user_data, "bad-request");
        zh_zmsg_free(m);
        return;
    }
    struct csess *s = session_new(c);
    s->req_mode = true;
    s->json = json;
    s->env = m;
    s->env_frames = env;
    s->has_id = id.p != NULL;
    s->id_len = (uint8_t)id.n;
    if (id.n)
        memcpy(s->id, id.p, id.n);
    s->from_len = (uint8_t)pkt->from.n;
    if (pkt->from.n)
        memcpy(s->from, pkt->from.p, pkt->from.n);
    zh_buf_append(&s->user_data, pkt->user_data.p, pkt->user_data.n);
    const char *cond = prepare(s, pkt, false);
    bool full = false;
    if (!cond && !admit_or_queue(s)) {
        cond = QUEUE_FULL;
        full = true;
    }
    if (cond) {
        if (!full)
            zh_info("client-req: request refused: %s", cond);
        struct zh_zhttp_packet *p = reply(c, ZH_ZHTTP_ERROR);
        p->condition = zh_span_str(cond);
        send_pkt(s, p);
        end_session(s);
    }
}

/* ---- stream mode ---- */

/* A packet on client-in: the first packet of a new session. */
static void on_first(struct zh_client *c, struct zh_zhttp_packet *pkt, bool json)
{
    if (pkt->n_ids > 1 || (pkt->has & ZH_ZF_MULTI_ID)) {
        zh_warn("client-in: first packet with a list of ids dropped");
        return;
    }
    if (pkt->type != ZH_ZHTTP_DATA) {
        zh_warn("client-in: packet of type '%s' is not a request, dropped",
                zh_zhttp_type_name(pkt->type));
        return;
    }
    struct zh_span from = pkt->from, id = pkt->n_ids ? pkt->ids[0].id : (struct zh_span){0};
    bool quiet = !from.p || from.n == 0 || !id.p || id.n == 0;
    bool upload = (pkt->has & ZH_ZF_MORE) && pkt->more;
    if (!quiet && lookup(c, from, id)) {
        zh_warn("client-in: request for id %.*s of %.*s already in use, skipped", (int)id.n,
                (const char *)id.p, (int)from.n, (const char *)from.p);
        return;
    }
    if (c->closing) {
        zh_warn("client-in: shutting down, request refused");
        if (!quiet)
            send_direct(c, json, from, id, true, ZH_ZHTTP_ERROR, "undefined-condition",
                        pkt->user_data);
        return;
    }
    struct csess *s = session_new(c);
    s->json = json;
    s->quiet = quiet;
    s->stream = (pkt->has & ZH_ZF_STREAM) && pkt->stream;
    s->router_resp = (pkt->has & ZH_ZF_ROUTER_RESP) && pkt->router_resp;
    s->ext_multi = (pkt->has & ZH_ZF_EXT_MULTI) && pkt->ext_multi;
    s->has_id = id.n > 0;
    s->from_len = (uint8_t)(from.p ? from.n : 0);
    memcpy(s->from, from.p ? (const char *)from.p : "", s->from_len);
    s->id_len = (uint8_t)(id.p ? id.n : 0);
    memcpy(s->id, id.p ? (const char *)id.p : "", s->id_len);
    zh_buf_append(&s->user_data, pkt->user_data.p, pkt->user_data.n);
    uint64_t now = zh_loop_now(c->loop);
    zh_session_init(&s->ss, ZH_ROLE_CLIENT, &c->cfg.params, now);
    if (!quiet) {
        zh_session_set_peer(&s->ss, from.p, from.n);
        table_insert(c, s);
    }
    const char *cond = NULL;
    struct zh_zhttp_id *pid = &pkt->ids[0];
    if (upload && pid->has_seq && pid->seq != 0) {
        zh_info("client-in: %s/%s: streamed input must start with seq 0", s->from, s->id);
        cond = "bad-request";
    } else {
        /* The first packet takes its own seq (Zurl accepts any start without `more`). */
        s->ss.in_seq = pid->has_seq ? pid->seq : 0;
        zh_session_on_packet(&s->ss, pkt, pid, now);
        cond = prepare(s, pkt, upload);
    }
    if (cond) {
        struct zh_zhttp_packet *p = reply(c, ZH_ZHTTP_ERROR);
        p->condition = zh_span_str(cond);
        send_pkt(s, p);
        end_session(s);
        return;
    }
    /* The ack tells the requester our address: credit for a body still to come, else keep-alive. */
    struct zh_zhttp_packet *ack = reply(c, upload ? ZH_ZHTTP_CREDIT : ZH_ZHTTP_KEEP_ALIVE);
    if (upload) {
        s->upload_credits = (int64_t)c->cfg.buffer_size;
        ack->has |= ZH_ZF_CREDITS;
        ack->credits = (int64_t)c->cfg.buffer_size;
    }
    if (s->ext_multi) {
        ack->has |= ZH_ZF_EXT_MULTI;
        ack->ext_multi = true;
    }
    send_pkt(s, ack);
    if (!admit_or_queue(s)) {
        /* Logged by log_refused(); the requester is told without a line per request. */
        struct zh_zhttp_packet *p = reply(c, ZH_ZHTTP_ERROR);
        p->condition = zh_span_str(QUEUE_FULL);
        send_pkt(s, p);
        end_session(s);
    }
}

/* A later request body packet. */
static void on_body(struct csess *s, const struct zh_zhttp_packet *pkt)
{
    bool more = (pkt->has & ZH_ZF_MORE) && pkt->more;
    if (!zh_request_upload_open(s->req)) {
        fail_at(s, "bad-request", "request", "request body after its end");
        return;
    }
    if ((int64_t)pkt->body.n > s->upload_credits) {
        char why[96];
        snprintf(why, sizeof(why), "%zu body bytes exceed the %lld credits granted", pkt->body.n,
                 (long long)s->upload_credits);
        fail_at(s, "bad-request", "request", why);
        return;
    }
    s->upload_credits -= (int64_t)pkt->body.n;
    int rc = zh_request_write_body(s->req, pkt->body.p, pkt->body.n, more);
    if (rc < 0) {
        fail_at(s, "bad-request", "request", "request body longer than its Content-Length");
    }
}

/* Apply a later packet (one id entry of it) to session s. */
static void apply(struct csess *s, const struct zh_zhttp_packet *pkt, const struct zh_zhttp_id *id)
{
    struct zh_client *c = s->c;
    enum zh_session_verdict v = zh_session_on_packet(&s->ss, pkt, id, zh_loop_now(c->loop));
    switch (v) {
    case ZH_SV_CLOSED:
        return;
    case ZH_SV_TERMINAL:
        zh_info("session %s/%s: %s from the requester", s->from, s->id,
                zh_zhttp_type_name(pkt->type));
        if (pkt->type == ZH_ZHTTP_CANCEL)
            zh_metric_inc(ZH_M_C_CANCEL);
        end_session(s);
        return;
    case ZH_SV_SEQ_ERROR:
        zh_info("session %s/%s: seq %lld, expected %lld; cancelling", s->from, s->id,
                (long long)id->seq, (long long)s->ss.in_seq);
        send_pkt(s, reply(c, ZH_ZHTTP_CANCEL));
        end_session(s);
        return;
    case ZH_SV_HANDOFF_START:
        zh_info("session %s/%s: handoff is not supported in the client role, ignored", s->from,
                s->id);
        return;
    case ZH_SV_OK:
    case ZH_SV_RESUMED:
        break;
    }
    if (pkt->user_data.p) {
        zh_buf_reset(&s->user_data);
        zh_buf_append(&s->user_data, pkt->user_data.p, pkt->user_data.n);
    }
    if (s->ws) {
        s->active_at = zh_loop_now(c->loop);
        zh_wsc_on_packet(s->ws, pkt);
        return;
    }
    if (pkt->type == ZH_ZHTTP_DATA) {
        on_body(s, pkt);
        if (s->state == CS_CLOSED)
            return;
    }
    if (pkt->has & ZH_ZF_CREDITS) {
        s->active_at = zh_loop_now(c->loop);
        zh_loop_defer(c->loop, &s->pump);
    }
}

/* A packet on client-in-stream: later packets of sessions, possibly several ids at once. */
static void on_later(struct zh_client *c, struct zh_zhttp_packet *pkt, bool json)
{
    if (!pkt->from.p || pkt->from.n == 0 || pkt->n_ids == 0) {
        zh_warn("client-in-stream: packet without from/id dropped");
        return;
    }
    bool multi = (pkt->has & ZH_ZF_MULTI_ID) != 0;
    for (size_t i = 0; i < pkt->n_ids; i++) {
        struct zh_zhttp_id *id = &pkt->ids[i];
        /* The bridge gives a multi-id packet to every worker it names: skip the others' ids. */
        if (multi && c->cfg.workers > 1 &&
            zh_zroute_hash(pkt->from.p, pkt->from.n, id->id.p, id->id.n, c->cfg.workers) !=
                c->worker)
            continue;
        struct csess *s = lookup(c, pkt->from, id->id);
        if (s) {
            apply(s, pkt, id);
            continue;
        }
        if (zh_session_unknown_action(ZH_ROLE_CLIENT, pkt) == ZH_UNKNOWN_DROP)
            continue;
        /* A keep-alive or credit that crossed a session's last packet is routine (Pushpin's
         * proxy answers each session's first packet with a keep-alive, often after a small
         * response has ended it): debug, else Pushpin at log level 2 gets a line per request. */
        zh_log(pkt->type == ZH_ZHTTP_KEEP_ALIVE || pkt->type == ZH_ZHTTP_CREDIT ? ZH_LOG_DEBUG
                                                                                : ZH_LOG_INFO,
               "client-in-stream: %s for unknown session %.*s/%.*s, answering cancel",
               pkt->type == ZH_ZHTTP_DATA ? "data" : zh_zhttp_type_name(pkt->type),
               (int)pkt->from.n, (const char *)pkt->from.p, (int)id->id.n, (const char *)id->id.p);
        send_direct(c, json, pkt->from, id->id, false, ZH_ZHTTP_CANCEL, NULL, (struct zh_span){0});
    }
}

static void on_stream(struct zh_client *c, struct zh_zmsg *m)
{
    struct zh_span payload = zh_zmsg_frame(m, m->nframes - 1);
    bool json = false;
    const char *reason = NULL;
    if (decode(c, m, payload, &json, &reason) < 0) {
        struct zh_span from, id;
        if (salvage_ids(c, payload, &from, &id)) {
            zh_warn("%s: malformed packet dropped: %s (answered bad-request)",
                    zh_zsock_name(m->sock), reason);
            struct csess *s = lookup(c, from, id);
            if (s && s->state != CS_CLOSED) {
                fail(s, "bad-request");
            } else {
                send_direct(c, json, from, id, m->sock == ZH_ZS_C_IN, ZH_ZHTTP_ERROR, "bad-request",
                            (struct zh_span){0});
            }
        } else {
            zh_warn("%s: malformed packet dropped: %s", zh_zsock_name(m->sock), reason);
        }
        zh_zmsg_free(m);
        return;
    }
    if (m->sock == ZH_ZS_C_IN)
        on_first(c, c->in, json);
    else
        on_later(c, c->in, json);
    zh_zmsg_free(m);
}

void zh_client_on_zmsg(struct zh_client *c, struct zh_zmsg *m)
{
    if (m->sock == ZH_ZS_C_REQ)
        on_req(c, m);
    else
        on_stream(c, m);
}

/* ---- engine ---- */

struct zh_client *zh_client_new(struct zh_loop *loop, struct zh_zport *port, unsigned worker,
                                const struct zh_client_config *cfg)
{
    struct zh_client *c = zh_calloc(1, sizeof(*c));
    c->loop = loop;
    c->port = port;
    c->worker = worker;
    c->cfg = *cfg;
    if (!c->cfg.params.keepalive_ms || !c->cfg.params.expiry_ms)
        c->cfg.params = zh_session_default_params(ZH_ROLE_CLIENT);
    if (!c->cfg.buffer_size)
        c->cfg.buffer_size = 200000;
    if (!c->cfg.max_response_size)
        c->cfg.max_response_size = 1024 * 1024;
    c->out = zh_outbound_new(loop);
    struct zh_buf err = {0};
    c->resolver = zh_resolver_new(loop, &c->cfg.dns, &err);
    if (!c->resolver)
        zh_error("worker %u: no resolver (%s): only IP literals can be reached", worker,
                 zh_buf_cstr(&err));
    zh_buf_free(&err);
    c->rctx = zh_request_ctx_new(loop, c->out, c->resolver, &c->cfg.http);
    struct zh_wsc_config wc = {.tls_ca_file = c->cfg.http.tls_ca_file,
                               .connect_timeout_ms = c->cfg.http.connect_timeout_ms,
                               .proxy = c->cfg.http.proxy,
                               .allow_ignore_policies = c->cfg.http.allow_ignore_policies,
                               .compression = c->cfg.ws_compression,
                               .buffer_size = c->cfg.buffer_size};
    c->wsctx = zh_wsc_ctx_new(loop, c->resolver, c->cfg.http.policy, &wc, &err);
    if (!c->wsctx)
        zh_error("worker %u: no outbound WebSocket (%s)", worker, zh_buf_cstr(&err));
    zh_buf_free(&err);
    c->in = zh_malloc(sizeof(*c->in));
    c->rep = zh_malloc(sizeof(*c->rep));
    zh_defer_init(&c->reap, reap_cb, c);
    zh_defer_init(&c->admit, admit_cb, c);
    if (c->cfg.slots) {
        zh_io_init(&c->slots_io, zh_slots_fd(c->cfg.slots, worker), slots_cb, c);
        zh_io_set(loop, &c->slots_io, ZH_EV_READ);
    }
    return c;
}

void zh_client_shutdown(struct zh_client *c, int cancel)
{
    c->closing = true;
    if (!cancel)
        return;
    for (struct csess *s = c->all; s; s = s->anext) {
        if (s->state == CS_CLOSED)
            continue;
        if (s->req_mode) {
            fail_at(s, "undefined-condition", "request", "cancelled by shutdown");
        } else {
            zh_info("session %s/%s cancelled by shutdown", s->from, s->id);
            send_pkt(s, reply(c, ZH_ZHTTP_CANCEL));
            end_session(s);
        }
    }
    zh_loop_defer_cancel(c->loop, &c->admit);
    zh_loop_defer_cancel(c->loop, &c->reap);
    reap_cb(&c->reap, c);
}

void zh_client_reload(struct zh_client *c, const struct zh_policy *policy, uint32_t timeout_ms)
{
    c->cfg.http.policy = policy;
    zh_request_ctx_set_policy(c->rctx, policy);
    if (c->wsctx)
        zh_wsc_ctx_set_policy(c->wsctx, policy);
    c->cfg.timeout_ms = timeout_ms;
}

size_t zh_client_active(const struct zh_client *c)
{
    return c->n_sess;
}

void zh_client_free(struct zh_client *c)
{
    if (!c)
        return;
    zh_client_shutdown(c, 1);
    if (c->cfg.slots) {
        zh_io_stop(c->loop, &c->slots_io);
        zh_slots_set_waiting(c->cfg.slots, c->worker, false);
    }
    zh_request_ctx_free(c->rctx);
    zh_wsc_ctx_free(c->wsctx);
    zh_resolver_free(c->resolver);
    zh_outbound_free(c->out);
    zh_free(c->table);
    zh_free(c->in);
    zh_free(c->rep);
    zh_buf_free(&c->jin);
    zh_buf_free(&c->enc);
    zh_buf_free(&c->jenc);
    zh_free(c);
}
