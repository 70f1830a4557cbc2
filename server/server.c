/* The server-role engine of one worker: the connection slots, the accept channel from the listener
 * thread, the dispatch of handler packets (and of our own messages the bridge hands back) to
 * connections, batched keep-alives and shutdown. Connections themselves are in conn.c. */
#include "server/server.h"

#include <string.h>
#include <unistd.h>

#include "server/conn.h"
#include "shared/proto/mem.h"
#include "shared/rt/log.h"

/* Keep-alives: every keepalive_ms / KA_SLICES one tick visits the next 1/KA_SLICES of the slots,
 * so each session gets one every keepalive_ms, spread over the interval in slot order, and the
 * sessions visited together are batched per handler into multi-id packets. */
#define KA_SLICES 10

/* ---- limits ---- */

void zh_server_limits_init(struct zh_server_limits *l, unsigned stream_max, unsigned req_max)
{
    atomic_init(&l->_used[ZH_SERVER_STREAM], 0);
    atomic_init(&l->_used[ZH_SERVER_REQ], 0);
    l->_max[ZH_SERVER_STREAM] = stream_max;
    l->_max[ZH_SERVER_REQ] = req_max;
    atomic_init(&l->_hs, 0);
    l->_hs_max = ZH_SERVER_TLS_HANDSHAKES_DEFAULT;
}

void zh_server_limits_set_tls_handshakes(struct zh_server_limits *l, unsigned max)
{
    l->_hs_max = max ? max : 1;
}

unsigned zh_server_limits_tls_handshakes(const struct zh_server_limits *l)
{
    return atomic_load(&l->_hs);
}

bool zh_server__hs_take(struct zh_server_limits *l)
{
    unsigned n = atomic_load(&l->_hs);
    do {
        if (n >= l->_hs_max)
            return false;
    } while (!atomic_compare_exchange_weak(&l->_hs, &n, n + 1));
    return true;
}

void zh_server__hs_release(struct zh_server_limits *l)
{
    atomic_fetch_sub(&l->_hs, 1);
}

unsigned zh_server_limits_used(const struct zh_server_limits *l, enum zh_server_kind kind)
{
    return atomic_load(&l->_used[kind]);
}

bool zh_server_reserve(struct zh_server *s, enum zh_server_kind kind)
{
    if (atomic_load(&s->closing_flag))
        return false;
    struct zh_server_limits *l = s->cfg.limits;
    unsigned n = atomic_load(&l->_used[kind]);
    do {
        if (n >= l->_max[kind])
            return false;
    } while (!atomic_compare_exchange_weak(&l->_used[kind], &n, n + 1));
    atomic_fetch_add(&s->n_conns, 1);
    return true;
}

void zh_server_unreserve(struct zh_server *s, enum zh_server_kind kind)
{
    zh_server__release(s, kind);
}

/* ---- the slots: the connections of this worker, by slot (the middle part of session ids) ---- */

void zh_server__slot_take(struct zh_server *s, struct zh_conn *c)
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
    c->slot = s->free_slots[--s->n_free];
    s->slots[c->slot] = c;
}

void zh_server__drop(struct zh_server *s, uint32_t slot, enum zh_server_kind kind)
{
    s->slots[slot] = NULL;
    s->free_slots[s->n_free++] = slot;
    zh_server__release(s, kind);
}

void zh_server__release(struct zh_server *s, enum zh_server_kind kind)
{
    atomic_fetch_sub(&s->n_conns, 1);
    atomic_fetch_sub(&s->cfg.limits->_used[kind], 1);
}

unsigned zh_server_conn_count(const struct zh_server *s)
{
    return atomic_load(&s->n_conns);
}

/* ---- handler packets ---- */

/* The connection whose current session has this id, or NULL. */
/* Parse a decimal number of at most 9 digits at *p, up to a '-'. */
static bool parse_part(const uint8_t **p, const uint8_t *end, uint32_t *out)
{
    uint32_t v = 0;
    int digits = 0;
    while (*p < end && **p >= '0' && **p <= '9' && digits < 9) {
        v = v * 10 + (uint32_t)(**p - '0');
        (*p)++;
        digits++;
    }
    if (!digits || *p >= end || **p != '-')
        return false;
    (*p)++;
    *out = v;
    return true;
}

/* The connection whose current session has this id "<worker>-<slot>-<counter hex>", or NULL. */
static struct zh_conn *find_session(struct zh_server *s, struct zh_span id)
{
    const uint8_t *p = id.p, *end = id.p + id.n;
    uint32_t w, slot;
    if (!id.p || !parse_part(&p, end, &w) || !parse_part(&p, end, &slot) || w != s->worker ||
        slot >= s->n_slots)
        return NULL;
    struct zh_conn *c = s->slots[slot];
    if (!c || !c->has_session || c->id_len != id.n || memcmp(c->id, id.p, id.n) != 0)
        return NULL;
    return c;
}

/* One of our own messages came back from the bridge: nobody took it. */
static void on_undelivered(struct zh_server *s, struct zh_zmsg *m, struct zh_zhttp_packet *p)
{
    for (size_t i = 0; i < p->n_ids; i++) {
        struct zh_conn *c = find_session(s, p->ids[i].id);
        if (c)
            zh_handler_on_undelivered(c, m->sock);
        else
            zh_debug("%s: undelivered %s packet for ended session '%.*s'", zh_zsock_name(m->sock),
                     p->type == ZH_ZHTTP_DATA ? "data" : zh_zhttp_type_name(p->type),
                     (int)p->ids[i].id.n, (const char *)p->ids[i].id.p);
    }
}

void zh_server_on_zmsg(struct zh_server *s, struct zh_zmsg *m)
{
    bool undelivered = (m->flags & ZH_ZMSG_F_UNDELIVERED) != 0;
    struct zh_span payload = zh_zmsg_frame(m, m->nframes - 1);
    if (m->sock == ZH_ZS_S_IN && !undelivered) {
        struct zh_span addr;
        if (zh_zhttp_split_pub(payload.p, payload.n, &addr, &payload) < 0) {
            zh_warn("server-in: frame without address dropped");
            zh_zmsg_free(m);
            return;
        }
    }
    struct zh_zhttp_packet *p = s->in_pkt;
    struct zh_zhttp_error err;
    if (zh_zhttp_decode(payload.p, payload.n, p, &err) < 0) {
        char raw[64];
        zh_warn("%s: malformed packet dropped: %s (%s)", zh_zsock_name(m->sock), err.reason,
                zh_log_escape(raw, sizeof(raw), payload.p, payload.n));
        zh_zmsg_free(m);
        return;
    }
    if (undelivered) {
        on_undelivered(s, m, p);
        zh_zmsg_free(m);
        return;
    }
    bool via_req = m->sock == ZH_ZS_S_REQ;
    for (size_t i = 0; i < p->n_ids && m; i++) {
        const struct zh_zhttp_id *id = &p->ids[i];
        struct zh_conn *c = find_session(s, id->id);
        if (c && c->req_mode != via_req) {
            zh_info("%s: packet for %s-mode session '%.*s' dropped", zh_zsock_name(m->sock),
                    c->req_mode ? "req" : "stream", (int)id->id.n, (const char *)id->id.p);
            continue;
        }
        if (c && c->req_mode) {
            zh_reqmode_on_packet(c, p, &m); /* may keep m for the body */
            continue;
        }
        if (c && c->ws) {
            zh_wsmode_on_packet(c, p, id);
            continue;
        }
        if (c) {
            zh_streammode_on_packet(c, p, id);
            continue;
        }
        if (zh_session_unknown_action(ZH_ROLE_SERVER, p) == ZH_UNKNOWN_DROP)
            zh_info("%s: %s packet for unknown session '%.*s' dropped", zh_zsock_name(m->sock),
                    p->type == ZH_ZHTTP_DATA ? "data" : zh_zhttp_type_name(p->type), (int)id->id.n,
                    (const char *)id->id.p);
    }
    zh_zmsg_free(m);
}

/* ---- batched keep-alives ---- */

static bool ka_eligible(const struct zh_conn *c)
{
    return c && c->state != ZH_CONN_CLOSED && c->has_session && !c->req_mode && c->sess.peer_len &&
           c->sess.state == ZH_SESS_ACTIVE;
}

/* Send keep-alives to the sessions in batch[0..n), which all have the same handler address: one
 * multi-id packet per 128 ids when the handler accepts them, one packet each otherwise. */
static void ka_send_group(struct zh_server *s, struct zh_conn **batch, size_t n)
{
    uint64_t now = zh_loop_now(s->loop);
    struct zh_conn *first = batch[0];
    if (!first->sess.peer_multi || n == 1) {
        for (size_t i = 0; i < n; i++) {
            struct zh_zhttp_packet *p = zh_handler_packet(batch[i]);
            p->type = ZH_ZHTTP_KEEP_ALIVE;
            zh_handler_send(batch[i], ZH_ZS_S_OUT_STREAM, p);
        }
        return;
    }
    for (size_t at = 0; at < n; at += ZH_ZHTTP_MAX_IDS) {
        size_t k = n - at < ZH_ZHTTP_MAX_IDS ? n - at : ZH_ZHTTP_MAX_IDS;
        struct zh_zhttp_packet *p = s->out_pkt;
        zh_zhttp_packet_init(p);
        p->from = zh_span_str(s->cfg.instance_id);
        p->type = ZH_ZHTTP_KEEP_ALIVE;
        p->has |= ZH_ZF_MULTI_ID | ZH_ZF_EXT_MULTI;
        p->ext_multi = true;
        p->n_ids = k;
        for (size_t i = 0; i < k; i++) {
            struct zh_conn *c = batch[at + i];
            p->ids[i].id = (struct zh_span){(const uint8_t *)c->id, c->id_len};
            p->ids[i].has_seq = true;
            p->ids[i].seq = zh_session_take_seq(&c->sess, now);
        }
        /* Sent with the first session's address (the same for all of them). */
        zh_handler_send(first, ZH_ZS_S_OUT_STREAM, p);
    }
    zh_trace("worker %u: %zu keep-alives to '%s' batched", s->worker, n, first->sess.peer);
}

static void ka_timer_cb(struct zh_timer *t, void *data)
{
    struct zh_server *s = data;
    uint32_t tick = s->cfg.params.keepalive_ms / KA_SLICES;
    if (tick == 0)
        tick = 1;
    if (s->n_slots) {
        uint32_t per = (s->n_slots + KA_SLICES - 1) / KA_SLICES;
        if (s->ka_batch_cap < per) {
            s->ka_batch = zh_realloc(s->ka_batch, per * sizeof(*s->ka_batch));
            s->ka_batch_cap = per;
        }
        size_t n = 0;
        for (uint32_t k = 0; k < per; k++) {
            struct zh_conn *c = s->slots[s->ka_cursor++ % s->n_slots];
            if (ka_eligible(c))
                s->ka_batch[n++] = c;
        }
        s->ka_cursor %= s->n_slots;
        /* Group by handler address (and multi support): move each group to the front, send it,
         * continue with the rest. Few handlers, so this stays near linear. */
        size_t start = 0;
        while (start < n) {
            struct zh_conn *lead = s->ka_batch[start];
            size_t end = start + 1;
            for (size_t i = end; i < n; i++) {
                struct zh_conn *c = s->ka_batch[i];
                if (c->sess.peer_len == lead->sess.peer_len &&
                    c->sess.peer_multi == lead->sess.peer_multi &&
                    memcmp(c->sess.peer, lead->sess.peer, lead->sess.peer_len) == 0) {
                    s->ka_batch[i] = s->ka_batch[end];
                    s->ka_batch[end++] = c;
                }
            }
            ka_send_group(s, s->ka_batch + start, end - start);
            start = end;
        }
    }
    zh_loop_timer_start(s->loop, t, tick);
}

/* ---- engine ---- */

static void accept_cb(struct zh_io *io, uint32_t revents, void *data)
{
    struct zh_server *s = data;
    ZH_UNUSED(io);
    ZH_UNUSED(revents);
    zh_chan_drain_signal(s->accept_ch);
    struct zh_accepted *a;
    while ((a = zh_chan_pop(s->accept_ch))) {
        if (s->closing || (a->tls && !s->cfg.tls)) {
            if (!s->closing)
                zh_warn("worker %u: TLS connection without identities; closed", s->worker);
            close(a->fd);
            zh_server__release(s, a->req_mode ? ZH_SERVER_REQ : ZH_SERVER_STREAM);
            zh_free(a);
            continue;
        }
        zh_conn_new(s, a);
    }
}

struct zh_server *zh_server_new(struct zh_loop *loop, struct zh_zport *port, unsigned worker,
                                const struct zh_server_config *cfg)
{
    struct zh_server *s = zh_calloc(1, sizeof(*s));
    zh_list_init(&s->hs_list);
    s->loop = loop;
    s->port = port;
    s->worker = worker;
    s->cfg = *cfg;
    if (s->cfg.buffer_size < 1024)
        s->cfg.buffer_size = 1024;
    if (s->cfg.max_header_size < s->cfg.buffer_size)
        s->cfg.max_header_size = s->cfg.buffer_size;
    if (!s->cfg.params.keepalive_ms)
        s->cfg.params = zh_session_default_params(ZH_ROLE_SERVER);
    atomic_init(&s->n_conns, 0);
    atomic_init(&s->closing_flag, false);
    s->out_pkt = zh_malloc(sizeof(*s->out_pkt));
    s->in_pkt = zh_malloc(sizeof(*s->in_pkt));
    zh_chunk_pool_init(&s->pool, ZH_CONN_CHUNK_SIZE, 1024);
    s->accept_ch = zh_chan_new(1024);
    zh_io_init(&s->accept_io, zh_chan_fd(s->accept_ch), accept_cb, s);
    zh_io_set(loop, &s->accept_io, ZH_EV_READ);
    zh_timer_init(&s->ka_timer, ka_timer_cb, s);
    uint32_t tick = s->cfg.params.keepalive_ms / KA_SLICES;
    zh_loop_timer_start(loop, &s->ka_timer, tick ? tick : 1);
    return s;
}

struct zh_chan *zh_server_accept_chan(struct zh_server *s)
{
    return s->accept_ch;
}

void zh_server_shutdown(struct zh_server *s, int cancel)
{
    s->closing = true;
    atomic_store(&s->closing_flag, true);
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->slots[i])
            zh_conn_shutdown(s->slots[i], cancel != 0);
}

void zh_server_reload(struct zh_server *s, const struct zh_server_config *cfg)
{
    s->cfg.head_timeout_ms = cfg->head_timeout_ms;
    s->cfg.req_timeout_ms = cfg->req_timeout_ms;
    s->cfg.stream_timeout_ms = cfg->stream_timeout_ms;
    s->cfg.handler_wait_ms = cfg->handler_wait_ms;
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
    for (uint32_t i = 0; i < s->n_slots; i++) {
        struct zh_conn *c = s->slots[i];
        if (!c)
            continue;
        zh_conn_close(c, NULL);
        zh_loop_defer_cancel(s->loop, &c->free_defer);
        zh_conn_free(c);
    }
    zh_loop_timer_stop(s->loop, &s->ka_timer);
    zh_io_stop(s->loop, &s->accept_io);
    struct zh_accepted *a;
    while ((a = zh_chan_pop(s->accept_ch))) {
        close(a->fd);
        zh_server__release(s, a->req_mode ? ZH_SERVER_REQ : ZH_SERVER_STREAM);
        zh_free(a);
    }
    zh_chan_free(s->accept_ch);
    zh_chunk_pool_free(&s->pool);
    zh_free(s->ka_batch);
    zh_free(s->slots);
    zh_free(s->free_slots);
    zh_free(s->out_pkt);
    zh_free(s->in_pkt);
    zh_free(s);
}
