/* The zmq bridge thread: its sockets (created and bound on the caller's thread), the zmq_poll loop,
 * the routing of inbound messages to workers and the parking of outbound ones. See zbridge.h and
 * docs/internals/zbridge.md; ipc endpoints are ipc.c's, the worker side is zport.c. */
#include "shared/rt/zbridge.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "shared/proto/err.h"
#include "shared/proto/fnv.h"
#include "shared/proto/list.h"
#include "shared/proto/mem.h"
#include "shared/rt/ipc.h"
#include "shared/rt/log.h"
#include "shared/rt/zroute.h"

#define RECV_BATCH    256 /* messages read from one socket per round, for fairness */
#define INBOX_PENDING 256 /* per-worker overflow before the bridge stops reading */
#define RETRY_MS      10
#define MAX_IDENTITY  255
#define REACH_SLOTS   256 /* remembered ROUTER peers that took a message (direct-mapped) */
/* After the sockets are bound, a ROUTER peer not connected yet is waited for this long: a handler
 * started before us (Pushpin's runner starts condure and pushpin-proxy at once) reconnects each
 * socket on its own timer (ZeroMQ: 100-200 ms), so its PUB reply can come before its ROUTER. */
#define UNREACH_GRACE_MS 2000

struct dest {
    struct zh_list node; /* in b->dests */
    enum zh_zsock sock;
    size_t id_len;
    uint8_t id[MAX_IDENTITY];
    struct zh_zmsg *head, *tail;
    size_t count;
};

struct outchan {
    struct zh_chan *ch;
    struct zh_zmsg *held; /* popped but its destination queue is full */
    /* The channel must be looked at: its fd was readable, or it was left non-empty (a full batch,
     * or `held` just went out). Other channels are skipped without a syscall. */
    bool ready;
};

/* A ROUTER peer that has taken a message from us. */
struct reach {
    enum zh_zsock sock;
    uint8_t len; /* 0 = empty */
    uint8_t id[MAX_IDENTITY];
};

struct inq {
    struct zh_chan *ch;
    struct zh_zmsg *head, *tail; /* waiting for room in ch */
    size_t count;
};

struct zh_zbridge {
    char *id;
    size_t id_len;
    unsigned workers;
    size_t dest_max;
    void *ctx;
    void *socks[ZH_ZS_COUNT];
    struct zh_ipc_locks locks;
    struct inq in[ZH_ZBRIDGE_MAX_WORKERS];
    struct outchan out[ZH_ZBRIDGE_MAX_WORKERS][ZH_ZS_COUNT];
    struct zh_list dests; /* destinations with parked messages, newest first */
    size_t n_parked;
    _Atomic uint64_t parked_now[ZH_ZS_COUNT], parked_total[ZH_ZS_COUNT]; /* metrics; we write */
    int ctl_fd;
    atomic_bool stopping;
    unsigned linger_ms;
    pthread_t thread;
    bool started;
    unsigned rr;
    /* ROUTER peers seen reachable, so that EHOSTUNREACH can tell "went away" (hand the message
     * back) from "never connected a ROUTER at all" (a PUB-only Condure-style handler: drop). */
    struct reach reach[REACH_SLOTS];
    uint64_t grace_until_ms; /* UNREACH_GRACE_MS after the sockets were opened */
};

/* ---- setup ---- */

struct zh_zbridge *zh_zbridge_new(const struct zh_zbridge_config *cfg, struct zh_buf *err)
{
    if (cfg->workers < 1 || cfg->workers > ZH_ZBRIDGE_MAX_WORKERS) {
        zh_buf_printf(err, "workers must be 1..%d", ZH_ZBRIDGE_MAX_WORKERS);
        return NULL;
    }
    size_t idn = strlen(cfg->instance_id);
    if (idn == 0 || idn > ZH_ZHTTP_MAX_ID_LEN || strchr(cfg->instance_id, ' ')) {
        zh_buf_printf(err, "instance id '%s' must be 1..%d bytes without spaces", cfg->instance_id,
                      ZH_ZHTTP_MAX_ID_LEN);
        return NULL;
    }
    struct zh_zbridge *b = zh_calloc(1, sizeof(*b));
    zh_list_init(&b->dests);
    b->id = zh_strdup(cfg->instance_id);
    b->id_len = idn;
    b->workers = cfg->workers;
    b->dest_max = cfg->dest_queue_max ? cfg->dest_queue_max : 128;
    b->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    atomic_init(&b->stopping, false);
    b->ctx = zmq_ctx_new();
    size_t cap = cfg->chan_capacity ? cfg->chan_capacity : 1024;
    for (unsigned w = 0; w < b->workers; w++) {
        b->in[w].ch = zh_chan_new(cap);
        for (int s = 0; s < ZH_ZS_COUNT; s++)
            if (cfg->socks[s].n_specs > 0 && zh_zsock_sends((enum zh_zsock)s))
                b->out[w][s].ch = zh_chan_new(cap);
    }
    for (int s = 0; s < ZH_ZS_COUNT; s++) {
        if (cfg->socks[s].n_specs == 0)
            continue;
        if (zh_zsock_open(b->ctx, (enum zh_zsock)s, cfg, &b->locks, &b->socks[s], err) < 0) {
            zh_zbridge_free(b);
            return NULL;
        }
    }
    b->grace_until_ms = zh_time_ms() + UNREACH_GRACE_MS;
    return b;
}

bool zh_zbridge_has(const struct zh_zbridge *b, enum zh_zsock s)
{
    return b->socks[s] != NULL;
}

struct zh_chan *zh_zbridge_inbox(struct zh_zbridge *b, unsigned w)
{
    return b->in[w].ch;
}

const char *zh_zbridge_id(const struct zh_zbridge *b)
{
    return b->id;
}

struct zh_chan *zh_zbridge_outbox(struct zh_zbridge *b, unsigned w, enum zh_zsock s)
{
    return b->out[w][s].ch;
}

static void deliver(struct zh_zbridge *b, unsigned w, struct zh_zmsg *m);

/* ---- outbound: sending with per-destination parking ---- */

/* Send all frames without blocking. Returns 0, -EAGAIN (nothing sent), or another -errno. */
static int send_frames(void *sock, const struct zh_zmsg *m)
{
    for (uint32_t i = 0; i < m->nframes; i++) {
        struct zh_span f = zh_zmsg_frame(m, i);
        int flags = ZMQ_DONTWAIT | (i + 1 < m->nframes ? ZMQ_SNDMORE : 0);
        int r;
        do {
            r = zmq_send(sock, f.p, f.n, flags);
        } while (r < 0 && errno == EINTR);
        if (r < 0) {
            /* libzmq accepts a multipart message atomically at its first frame; a later failure can
             * only be a closed context. */
            return -errno;
        }
    }
    return 0;
}

static struct dest *find_dest(struct zh_zbridge *b, const struct zh_zmsg *m, bool create)
{
    const uint8_t *id = NULL;
    size_t idn = 0;
    if (zh_zsock_is_router(m->sock) && m->nframes > 0) {
        struct zh_span f = zh_zmsg_frame(m, 0);
        id = f.p;
        idn = f.n > MAX_IDENTITY ? MAX_IDENTITY : f.n;
    }
    struct zh_list *q;
    ZH_LIST_FOREACH(q, &b->dests)
    {
        struct dest *d = ZH_LIST_DATA(q, struct dest, node);
        if (d->sock == m->sock && d->id_len == idn && (idn == 0 || memcmp(d->id, id, idn) == 0))
            return d;
    }
    if (!create)
        return NULL;
    struct dest *d = zh_calloc(1, sizeof(*d));
    d->sock = m->sock;
    d->id_len = idn;
    if (idn)
        memcpy(d->id, id, idn);
    zh_list_insert_head(&b->dests, &d->node);
    return d;
}

static void count_parked(struct zh_zbridge *b, enum zh_zsock s, int delta)
{
    uint64_t now = atomic_load_explicit(&b->parked_now[s], memory_order_relaxed);
    atomic_store_explicit(&b->parked_now[s], now + (uint64_t)(int64_t)delta, memory_order_relaxed);
    uint64_t total = atomic_load_explicit(&b->parked_total[s], memory_order_relaxed);
    atomic_store_explicit(&b->parked_total[s], total + (delta > 0), memory_order_relaxed);
}

static void park(struct zh_zbridge *b, struct dest *d, struct zh_zmsg *m)
{
    zh_zmsg_fifo_append(&d->head, &d->tail, m);
    d->count++;
    b->n_parked++;
    count_parked(b, m->sock, 1);
}

void zh_zbridge_parked(const struct zh_zbridge *b, enum zh_zsock s, uint64_t *now, uint64_t *total)
{
    *now = atomic_load_explicit(&b->parked_now[s], memory_order_relaxed);
    *total = atomic_load_explicit(&b->parked_total[s], memory_order_relaxed);
}

static struct reach *reach_slot(struct zh_zbridge *b, const struct zh_zmsg *m)
{
    struct zh_span f = zh_zmsg_frame(m, 0);
    size_t n = f.n > MAX_IDENTITY ? MAX_IDENTITY : f.n;
    uint64_t h = zh_fnv1a(ZH_FNV_BASIS, f.p, n);
    return &b->reach[(h ^ (uint64_t)m->sock) % REACH_SLOTS];
}

static bool reach_match(const struct reach *r, const struct zh_zmsg *m)
{
    struct zh_span f = zh_zmsg_frame(m, 0);
    return r->len && r->sock == m->sock && r->len == f.n && memcmp(r->id, f.p, f.n) == 0;
}

/* m went out: remember its ROUTER peer (only for messages whose fate the worker wants to know). */
static void sent_ok(struct zh_zbridge *b, const struct zh_zmsg *m)
{
    if (!(m->flags & ZH_ZMSG_F_NOTIFY) || !zh_zsock_is_router(m->sock) || m->nframes < 2)
        return;
    struct zh_span f = zh_zmsg_frame(m, 0);
    if (f.n == 0 || f.n > MAX_IDENTITY)
        return;
    struct reach *r = reach_slot(b, m);
    if (reach_match(r, m))
        return;
    r->sock = m->sock;
    r->len = (uint8_t)f.n;
    memcpy(r->id, f.p, f.n);
}

/* An unreachable ROUTER peer: true when it had taken messages before (it went away), which the
 * worker must hear about; it is forgotten then. */
static bool reach_lost(struct zh_zbridge *b, const struct zh_zmsg *m)
{
    if (!zh_zsock_is_router(m->sock) || m->nframes < 2)
        return false;
    struct reach *r = reach_slot(b, m);
    if (!reach_match(r, m))
        return false;
    r->len = 0;
    return true;
}

/* r is EHOSTUNREACH for a ROUTER peer that never took a message, while we are new: keep m parked
 * (retried like EAGAIN) instead of dropping it; after the grace the drop happens as before. */
static bool unreach_wait(struct zh_zbridge *b, const struct zh_zmsg *m, int r)
{
    if (r != -EHOSTUNREACH || zh_time_ms() >= b->grace_until_ms)
        return false;
    return zh_zsock_is_router(m->sock) && m->nframes >= 2 && !reach_match(reach_slot(b, m), m);
}

static bool past_deadline(const struct zh_zmsg *m, uint64_t now)
{
    return m->deadline_ms != 0 && now >= m->deadline_ms;
}

/* The bridge will not send m: free it, or with ZH_ZMSG_F_NOTIFY hand it back to the worker that
 * sent it, marked undelivered, so that worker can answer its client (e.g. 503 after
 * --handler-wait). */
static void give_up(struct zh_zbridge *b, struct zh_zmsg *m)
{
    if (!(m->flags & ZH_ZMSG_F_NOTIFY)) {
        zh_zmsg_free(m);
        return;
    }
    m->flags |= ZH_ZMSG_F_UNDELIVERED;
    m->next = NULL;
    deliver(b, m->worker < b->workers ? m->worker : 0, m);
}

/* A send failed for good (not EAGAIN). An unreachable ROUTER peer that never took a message is
 * not news (a handler that reads only PULL and answers on PUB has no ROUTER): log and drop. One
 * that did take messages went away: its worker gets the message back. */
static void send_failed(struct zh_zbridge *b, struct zh_zmsg *m, int r)
{
    /* A requester that exits with replies pending makes one failure per reply: one line a second.
     */
    static struct zh_log_limit unreachable_limit;
    if (r == -EHOSTUNREACH && m->nframes > 0) {
        char who[96];
        struct zh_span f = zh_zmsg_frame(m, 0);
        bool lost = (m->flags & ZH_ZMSG_F_NOTIFY) && reach_lost(b, m);
        unsigned long held = 0;
        if (zh_log_enabled(ZH_LOG_WARN) && zh_log_limit_allow(&unreachable_limit, 1000, &held))
            zh_warn("%s: peer '%s' unreachable, message %s (%lu similar line(s) held back)",
                    zh_zsock_name(m->sock), zh_log_escape(who, sizeof(who), f.p, f.n),
                    lost ? "returned to its worker" : "dropped", held);
        if (lost)
            give_up(b, m);
        else
            zh_zmsg_free(m);
        return;
    }
    zh_warn("%s: send failed (%s), message %s", zh_zsock_name(m->sock), zmq_strerror(-r),
            (m->flags & ZH_ZMSG_F_NOTIFY) ? "returned to its worker" : "dropped");
    give_up(b, m);
}

static void expire_parked(struct zh_zbridge *b, struct zh_zmsg *m)
{
    zh_debug("%s: no peer took a message within its deadline; returned to worker %u",
             zh_zsock_name(m->sock), m->worker);
    give_up(b, m);
}

/* Place m: send now, or park it behind its destination's queue. Returns false (m untouched) when
 * the destination's queue is full and m must wait in its channel slot. */
static bool place(struct zh_zbridge *b, struct zh_zmsg *m)
{
    void *sock = b->socks[m->sock];
    if (!sock) {
        zh_warn("%s: socket not configured, message dropped", zh_zsock_name(m->sock));
        give_up(b, m);
        return true;
    }
    struct dest *d = find_dest(b, m, false);
    if (d && d->count > 0) {
        if (past_deadline(m, zh_time_ms())) {
            expire_parked(b, m);
            return true;
        }
        if (d->count >= b->dest_max)
            return false;
        park(b, d, m);
        return true;
    }
    int r = send_frames(sock, m);
    if (r == -EAGAIN || unreach_wait(b, m, r)) {
        if (past_deadline(m, zh_time_ms())) {
            expire_parked(b, m);
            return true;
        }
        park(b, find_dest(b, m, true), m);
        return true;
    }
    if (r < 0) {
        send_failed(b, m, r);
        return true;
    }
    sent_ok(b, m);
    zh_zmsg_free(m);
    return true;
}

/* Take the messages whose deadline has passed out of d's queue (wherever they are in it): no peer
 * took them in time, so they must never be sent. */
static void expire_dest(struct zh_zbridge *b, struct dest *d, uint64_t now)
{
    struct zh_zmsg **mp = &d->head, *last = NULL;
    while (*mp) {
        struct zh_zmsg *m = *mp;
        if (!past_deadline(m, now)) {
            last = m;
            mp = &m->next;
            continue;
        }
        *mp = m->next;
        d->count--;
        b->n_parked--;
        count_parked(b, m->sock, -1);
        expire_parked(b, m);
    }
    d->tail = last;
}

/* Retry parked messages in order; drop empty destinations. */
static void retry_parked(struct zh_zbridge *b)
{
    uint64_t now = zh_time_ms();
    struct zh_list *q = zh_list_head(&b->dests);
    while (q != &b->dests) {
        struct dest *d = ZH_LIST_DATA(q, struct dest, node);
        q = q->next;
        expire_dest(b, d, now);
        while (d->head) {
            struct zh_zmsg *m = d->head;
            int r = send_frames(b->socks[m->sock], m);
            if (r == -EAGAIN || unreach_wait(b, m, r))
                break;
            d->head = m->next;
            if (!d->head)
                d->tail = NULL;
            d->count--;
            b->n_parked--;
            count_parked(b, m->sock, -1);
            if (r < 0) {
                send_failed(b, m, r);
            } else {
                sent_ok(b, m);
                zh_zmsg_free(m);
            }
        }
        if (!d->head) {
            zh_list_remove(&d->node);
            zh_free(d);
        }
    }
}

/* Pop and place messages from every outbound channel; a channel whose next message can't be placed
 * keeps it in `held` and is skipped until its destination drains. Only channels marked ready are
 * read (their eventfd reset and popped): a channel signals only on empty -> non-empty, so one that
 * was emptied and not signalled since has nothing to give. Returns true when a channel was left
 * with messages after a full batch (it stays ready): the caller must come back without waiting. */
static bool drain_outbound(struct zh_zbridge *b)
{
    bool more = false;
    for (unsigned w = 0; w < b->workers; w++) {
        for (int s = 0; s < ZH_ZS_COUNT; s++) {
            struct outchan *oc = &b->out[w][s];
            if (!oc->ch)
                continue;
            if (oc->held) {
                if (!place(b, oc->held))
                    continue;
                oc->held = NULL;
                oc->ready = true; /* not polled while it held a message */
            }
            if (!oc->ready)
                continue;
            oc->ready = false;
            zh_chan_drain_signal(oc->ch);
            int k;
            for (k = 0; k < RECV_BATCH; k++) {
                struct zh_zmsg *m = zh_chan_pop(oc->ch);
                if (!m)
                    break;
                if (!place(b, m)) {
                    oc->held = m;
                    break;
                }
            }
            if (k == RECV_BATCH) {
                oc->ready = true;
                more = true;
            }
        }
    }
    return more;
}

static void mark_all_ready(struct zh_zbridge *b)
{
    for (unsigned w = 0; w < b->workers; w++)
        for (int s = 0; s < ZH_ZS_COUNT; s++)
            b->out[w][s].ready = b->out[w][s].ch != NULL;
}

/* ---- inbound ---- */

static void deliver(struct zh_zbridge *b, unsigned w, struct zh_zmsg *m)
{
    struct inq *q = &b->in[w];
    if (q->count == 0 && zh_chan_push(q->ch, m) == 0)
        return;
    if (q->count == 0)
        zh_chan_want_space(q->ch);
    zh_zmsg_fifo_append(&q->head, &q->tail, m);
    q->count++;
}

static void flush_inboxes(struct zh_zbridge *b)
{
    for (unsigned w = 0; w < b->workers; w++) {
        struct inq *q = &b->in[w];
        if (!q->count)
            continue;
        zh_chan_drain_space_signal(q->ch);
        q->count -= zh_zmsg_fifo_to_chan(q->ch, &q->head, &q->tail);
        if (q->count)
            zh_chan_want_space(q->ch);
    }
}

static bool inbound_blocked(const struct zh_zbridge *b)
{
    for (unsigned w = 0; w < b->workers; w++)
        if (b->in[w].count >= INBOX_PENDING)
            return true;
    return false;
}

static void route(struct zh_zbridge *b, struct zh_zmsg *m)
{
    struct zh_span payload = zh_zmsg_frame(m, m->nframes - 1);
    if (m->sock == ZH_ZS_S_IN) {
        struct zh_span addr;
        if (zh_zhttp_split_pub(payload.p, payload.n, &addr, &payload) < 0 || addr.n != b->id_len ||
            memcmp(addr.p, b->id, b->id_len) != 0) {
            zh_warn("%s: frame without our address prefix, dropped", zh_zsock_name(m->sock));
            zh_zmsg_free(m);
            return;
        }
    }
    uint64_t mask = 0;
    int n =
        zh_zroute_json(zh_zsock_role(m->sock), payload.p, payload.n, b->workers, &mask, &m->json);
    if (n <= 0) {
        /* Unroutable: one worker decodes it fully, logs the precise reason and answers if it can.
         */
        deliver(b, b->rr++ % b->workers, m);
        return;
    }
    if (n > 1 && m->sock == ZH_ZS_C_REQ) {
        /* Req mode has no sessions to find, and its requester reads one answer per request: a
         * packet naming several ids (refused as bad-request) goes to one worker, not to each. */
        for (unsigned w = 0; w < b->workers; w++) {
            if (mask & (UINT64_C(1) << w)) {
                deliver(b, w, m);
                return;
            }
        }
    }
    for (unsigned w = 0; w < b->workers; w++) {
        if (!(mask & (UINT64_C(1) << w)))
            continue;
        if (--n == 0) {
            deliver(b, w, m);
            return;
        }
        deliver(b, w, zh_zmsg_dup(m));
    }
}

/* Read one whole multipart message. Returns the message, or NULL on EAGAIN / after dropping an
 * oversized one (*again tells which). The frames are received first and then copied into one
 * allocation of their total size: one malloc per message. */
static struct zh_zmsg *recv_one(void *sock, enum zh_zsock s, bool *again)
{
    zmq_msg_t parts[ZH_ZMSG_MAX_FRAMES];
    uint32_t n = 0;
    uint64_t total = 0;
    bool too_many = false, failed = false;
    *again = false;
    for (;;) {
        zmq_msg_t extra;
        zmq_msg_t *part = n < ZH_ZMSG_MAX_FRAMES ? &parts[n] : &extra;
        bool first = n == 0;
        zmq_msg_init(part);
        int r;
        do {
            r = zmq_msg_recv(part, sock, first ? ZMQ_DONTWAIT : 0);
        } while (r < 0 && errno == EINTR);
        if (r < 0) {
            zmq_msg_close(part);
            *again = first;
            failed = true;
            break;
        }
        int more = zmq_msg_more(part);
        if (part == &extra) {
            too_many = true;
            zmq_msg_close(part);
        } else {
            total += zmq_msg_size(part);
            n++;
        }
        if (!more)
            break;
    }
    struct zh_zmsg *m = NULL;
    if (!failed && !too_many && total <= UINT32_MAX) {
        m = zh_zmsg_new(s, (size_t)total);
        for (uint32_t i = 0; i < n; i++)
            zh_zmsg_add(&m, zmq_msg_data(&parts[i]), zmq_msg_size(&parts[i]));
    }
    for (uint32_t i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
    if (too_many)
        zh_warn("%s: message with more than %d frames dropped", zh_zsock_name(s),
                ZH_ZMSG_MAX_FRAMES);
    else if (!failed && !m)
        zh_warn("%s: message of %llu bytes dropped", zh_zsock_name(s), (unsigned long long)total);
    return m;
}

static void read_socket(struct zh_zbridge *b, enum zh_zsock s)
{
    void *sock = b->socks[s];
    for (int k = 0; k < RECV_BATCH; k++) {
        bool again;
        struct zh_zmsg *m = recv_one(sock, s, &again);
        if (!m) {
            if (again)
                return;
            continue;
        }
        if (s == ZH_ZS_C_OUT) {
            /* XPUB subscription notices: nothing to do but read them. */
            zh_zmsg_free(m);
            continue;
        }
        if (zh_zsock_is_router(s) && m->nframes == 2 && m->frames[1].len == 0) {
            zh_trace("%s: probe ignored", zh_zsock_name(s));
            zh_zmsg_free(m);
            continue;
        }
        if (zh_zsock_is_router(s) && m->nframes < 2) {
            zh_warn("%s: message without a routing envelope dropped", zh_zsock_name(s));
            zh_zmsg_free(m);
            continue;
        }
        route(b, m);
        if (inbound_blocked(b))
            return;
    }
}

/* ---- the thread ---- */

static bool any_held(const struct zh_zbridge *b)
{
    for (unsigned w = 0; w < b->workers; w++)
        for (int s = 0; s < ZH_ZS_COUNT; s++)
            if (b->out[w][s].held)
                return true;
    return false;
}

static void final_flush(struct zh_zbridge *b)
{
    uint64_t deadline = zh_time_ms() + b->linger_ms;
    for (;;) {
        retry_parked(b);
        mark_all_ready(b);
        bool more = drain_outbound(b);
        if (!b->n_parked && !any_held(b) && !more)
            break;
        if (zh_time_ms() >= deadline) {
            zh_warn("shutdown: %zu message(s) for slow peers not delivered", b->n_parked);
            break;
        }
        usleep(RETRY_MS * 1000);
    }
}

static void *bridge_main(void *arg)
{
    struct zh_zbridge *b = arg;
    zh_log_set_thread("bridge");
    enum { MAXITEMS = ZH_ZS_COUNT + ZH_ZBRIDGE_MAX_WORKERS * (ZH_ZS_COUNT + 1) + 1 };
    zmq_pollitem_t items[MAXITEMS];
    struct outchan *item_oc[MAXITEMS]; /* the outbound channel each eventfd item belongs to */
    bool more_out = false;
    while (!atomic_load(&b->stopping)) {
        int n = 0;
        bool blocked = inbound_blocked(b);
        int sock_first = n;
        for (int s = 0; s < ZH_ZS_COUNT; s++) {
            if (!b->socks[s])
                continue;
            short ev = 0;
            if (zh_zsock_receives((enum zh_zsock)s) && !blocked)
                ev |= ZMQ_POLLIN;
            /* POLLOUT is meaningful for PUSH and DEALER only; ROUTER/XPUB peers are retried by
             * timer. */
            if ((s == ZH_ZS_S_OUT || s == ZH_ZS_S_REQ) && b->n_parked)
                ev |= ZMQ_POLLOUT;
            if (!ev)
                continue;
            items[n++] =
                (zmq_pollitem_t){.socket = b->socks[s], .fd = 0, .events = ev, .revents = 0};
        }
        int sock_end = n;
        for (unsigned w = 0; w < b->workers; w++) {
            for (int s = 0; s < ZH_ZS_COUNT; s++) {
                struct outchan *oc = &b->out[w][s];
                if (oc->ch && !oc->held) {
                    item_oc[n] = oc;
                    items[n++] = (zmq_pollitem_t){
                        .socket = NULL, .fd = zh_chan_fd(oc->ch), .events = ZMQ_POLLIN};
                }
            }
            if (b->in[w].count) {
                item_oc[n] = NULL;
                items[n++] = (zmq_pollitem_t){
                    .socket = NULL, .fd = zh_chan_space_fd(b->in[w].ch), .events = ZMQ_POLLIN};
            }
        }
        item_oc[n] = NULL;
        items[n++] = (zmq_pollitem_t){.socket = NULL, .fd = b->ctl_fd, .events = ZMQ_POLLIN};
        long timeout = more_out ? 0 : (b->n_parked || any_held(b)) ? RETRY_MS : -1;
        int r = zmq_poll(items, n, timeout);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            zh_error("zmq_poll: %s", zmq_strerror(errno));
            break;
        }
        for (int i = sock_end; i < n; i++)
            if (item_oc[i] && (items[i].revents & ZMQ_POLLIN))
                item_oc[i]->ready = true;
        flush_inboxes(b);
        for (int i = sock_first; i < sock_end; i++) {
            if (!(items[i].revents & ZMQ_POLLIN))
                continue;
            for (int s = 0; s < ZH_ZS_COUNT; s++)
                if (b->socks[s] == items[i].socket)
                    read_socket(b, (enum zh_zsock)s);
        }
        if (b->n_parked)
            retry_parked(b);
        more_out = drain_outbound(b);
    }
    final_flush(b);
    return NULL;
}

int zh_zbridge_start(struct zh_zbridge *b)
{
    int r = pthread_create(&b->thread, NULL, bridge_main, b);
    if (r != 0)
        return -r;
    b->started = true;
    return 0;
}

void zh_zbridge_stop(struct zh_zbridge *b, unsigned linger_ms)
{
    if (!b->started)
        return;
    b->linger_ms = linger_ms;
    atomic_store(&b->stopping, true);
    uint64_t one = 1;
    ssize_t w;
    do {
        w = write(b->ctl_fd, &one, sizeof(one));
    } while (w < 0 && errno == EINTR);
    pthread_join(b->thread, NULL);
    b->started = false;
}

void zh_zbridge_free(struct zh_zbridge *b)
{
    if (!b)
        return;
    zh_zbridge_stop(b, 0);
    for (int s = 0; s < ZH_ZS_COUNT; s++)
        if (b->socks[s])
            zmq_close(b->socks[s]);
    if (b->ctx)
        zmq_ctx_term(b->ctx);
    for (unsigned w = 0; w < b->workers; w++) {
        if (b->in[w].ch) {
            zh_zmsg_list_free(b->in[w].head);
            struct zh_zmsg *m;
            while ((m = zh_chan_pop(b->in[w].ch)))
                zh_zmsg_free(m);
            zh_chan_free(b->in[w].ch);
        }
        for (int s = 0; s < ZH_ZS_COUNT; s++) {
            struct outchan *oc = &b->out[w][s];
            if (!oc->ch)
                continue;
            zh_zmsg_free(oc->held);
            struct zh_zmsg *m;
            while ((m = zh_chan_pop(oc->ch)))
                zh_zmsg_free(m);
            zh_chan_free(oc->ch);
        }
    }
    while (!zh_list_empty(&b->dests)) {
        struct dest *d = ZH_LIST_DATA(zh_list_head(&b->dests), struct dest, node);
        zh_list_remove(&d->node);
        zh_zmsg_list_free(d->head);
        zh_free(d);
    }
    zh_ipc_unlock(&b->locks);
    if (b->ctl_fd >= 0)
        close(b->ctl_fd);
    zh_free(b->id);
    zh_free(b);
}
