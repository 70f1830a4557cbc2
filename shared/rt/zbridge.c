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
#include "shared/proto/mem.h"
#include "shared/rt/log.h"
#include "shared/rt/zroute.h"

#define RECV_BATCH    256 /* messages read from one socket per round, for fairness */
#define INBOX_PENDING 256 /* per-worker overflow before the bridge stops reading */
#define RETRY_MS      10
#define MAX_IDENTITY  255
#define MAX_LOCKS     64
#define REACH_SLOTS   256 /* remembered ROUTER peers that took a message (direct-mapped) */

struct dest {
    struct dest *next;
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
    int lock_fds[MAX_LOCKS];
    int n_locks;
    struct inq in[ZH_ZBRIDGE_MAX_WORKERS];
    struct outchan out[ZH_ZBRIDGE_MAX_WORKERS][ZH_ZS_COUNT];
    struct dest *dests;
    size_t n_parked;
    int ctl_fd;
    atomic_bool stopping;
    unsigned linger_ms;
    pthread_t thread;
    bool started;
    unsigned rr;
    /* ROUTER peers seen reachable, so that EHOSTUNREACH can tell "went away" (hand the message
     * back) from "never connected a ROUTER at all" (a PUB-only Condure-style handler: drop). */
    struct reach reach[REACH_SLOTS];
};

static const int sock_types[ZH_ZS_COUNT] = {
    [ZH_ZS_C_IN] = ZMQ_PULL,    [ZH_ZS_C_IN_STREAM] = ZMQ_ROUTER, [ZH_ZS_C_OUT] = ZMQ_XPUB,
    [ZH_ZS_C_REQ] = ZMQ_ROUTER, [ZH_ZS_S_OUT] = ZMQ_PUSH,         [ZH_ZS_S_OUT_STREAM] = ZMQ_ROUTER,
    [ZH_ZS_S_IN] = ZMQ_SUB,     [ZH_ZS_S_REQ] = ZMQ_DEALER,
};

static bool sock_receives(enum zh_zsock s)
{
    return s != ZH_ZS_S_OUT;
}

static bool sock_sends(enum zh_zsock s)
{
    return s != ZH_ZS_C_IN && s != ZH_ZS_S_IN;
}

static bool sock_is_router(enum zh_zsock s)
{
    return sock_types[s] == ZMQ_ROUTER;
}

static enum zh_role sock_role(enum zh_zsock s)
{
    return s < ZH_ZS_S_OUT ? ZH_ROLE_CLIENT : ZH_ROLE_SERVER;
}

/* ---- setup ---- */

static int setopt_int(void *sock, int opt, int v)
{
    return zmq_setsockopt(sock, opt, &v, sizeof(v));
}

/* For an ipc endpoint: make the path absolute, create the parent directory and take `<path>.lock`,
 * so a second instance fails here instead of libzmq silently unlinking our socket file on its bind.
 */
static int prepare_ipc(struct zh_zbridge *b, const char *spec, bool bind, struct zh_buf *abs,
                       struct zh_buf *err)
{
    const char *path = spec + 6;
    zh_buf_reset(abs);
    zh_buf_puts(abs, "ipc://");
    if (path[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof(cwd))) {
            zh_buf_printf(err, "%s: cannot make path absolute: %s", spec, strerror(errno));
            return -1;
        }
        zh_buf_printf(abs, "%s/", cwd);
    }
    zh_buf_puts(abs, path);
    if (!bind)
        return 0;
    const char *full = zh_buf_cstr(abs) + 6;
    /* mkdir -p of the parent directory */
    char dir[PATH_MAX];
    size_t n = strlen(full);
    if (n >= sizeof(dir)) {
        zh_buf_printf(err, "%s: path too long", spec);
        return -1;
    }
    memcpy(dir, full, n + 1);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        for (char *p = dir + 1; *p; p++) {
            if (*p != '/')
                continue;
            *p = '\0';
            if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
                zh_buf_printf(err, "%s: cannot create directory %s: %s", spec, dir,
                              strerror(errno));
                return -1;
            }
            *p = '/';
        }
        if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
            zh_buf_printf(err, "%s: cannot create directory %s: %s", spec, dir, strerror(errno));
            return -1;
        }
    }
    if (b->n_locks >= MAX_LOCKS) {
        zh_buf_printf(err, "%s: too many ipc endpoints", spec);
        return -1;
    }
    char lock[PATH_MAX + 8];
    snprintf(lock, sizeof(lock), "%s.lock", full);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        zh_buf_printf(err, "%s: cannot open lock file %s: %s", spec, lock, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            zh_buf_printf(err, "%s: in use by another process (lock %s is held)", spec, lock);
        else
            zh_buf_printf(err, "%s: cannot lock %s: %s", spec, lock, strerror(e));
        return -1;
    }
    b->lock_fds[b->n_locks++] = fd;
    return 0;
}

static int open_socket(struct zh_zbridge *b, enum zh_zsock s, const struct zh_zbridge_config *cfg,
                       struct zh_buf *err)
{
    const struct zh_zbridge_sock_config *sc = &cfg->socks[s];
    void *sock = zmq_socket(b->ctx, sock_types[s]);
    if (!sock) {
        zh_buf_printf(err, "%s: zmq_socket: %s", zh_zsock_name(s), zmq_strerror(errno));
        return -1;
    }
    b->socks[s] = sock;
    setopt_int(sock, ZMQ_LINGER, 0);
    if (sock_receives(s) && cfg->in_hwm > 0)
        setopt_int(sock, ZMQ_RCVHWM, cfg->in_hwm);
    if (sock_sends(s) && cfg->out_hwm > 0)
        setopt_int(sock, ZMQ_SNDHWM, cfg->out_hwm);
    if (s == ZH_ZS_C_IN_STREAM || s == ZH_ZS_S_OUT_STREAM) {
        zmq_setsockopt(sock, ZMQ_ROUTING_ID, b->id, b->id_len);
        setopt_int(sock, ZMQ_ROUTER_HANDOVER, 1);
    }
    if (sock_is_router(s))
        setopt_int(sock, ZMQ_ROUTER_MANDATORY, 1);
    if (s == ZH_ZS_C_OUT)
        setopt_int(sock, ZMQ_XPUB_NODROP, 1);
    if (s == ZH_ZS_S_IN) {
        char topic[ZH_ZHTTP_MAX_ID_LEN + 2];
        int tn = snprintf(topic, sizeof(topic), "%s ", b->id);
        zmq_setsockopt(sock, ZMQ_SUBSCRIBE, topic, (size_t)tn);
    }
    struct zh_buf abs = {0};
    int rc = 0;
    for (size_t i = 0; i < sc->n_specs && rc == 0; i++) {
        const char *spec = sc->specs[i];
        bool bind = !sc->connect;
        if (strncmp(spec, "ipc://", 6) == 0) {
            if (prepare_ipc(b, spec, bind, &abs, err) < 0) {
                rc = -1;
                break;
            }
            spec = zh_buf_cstr(&abs);
        }
        int r = bind ? zmq_bind(sock, spec) : zmq_connect(sock, spec);
        if (r < 0) {
            zh_buf_printf(err, "%s: cannot %s %s: %s", zh_zsock_name(s), bind ? "bind" : "connect",
                          spec, zmq_strerror(errno));
            rc = -1;
            break;
        }
        if (bind && strncmp(spec, "ipc://", 6) == 0 && cfg->ipc_file_mode >= 0)
            chmod(spec + 6, (mode_t)cfg->ipc_file_mode);
        zh_info("zmq %s %s %s", zh_zsock_name(s), bind ? "bound" : "connected", spec);
    }
    zh_buf_free(&abs);
    return rc;
}

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
            if (cfg->socks[s].n_specs > 0 && sock_sends((enum zh_zsock)s))
                b->out[w][s].ch = zh_chan_new(cap);
    }
    for (int s = 0; s < ZH_ZS_COUNT; s++) {
        if (cfg->socks[s].n_specs == 0)
            continue;
        if (open_socket(b, (enum zh_zsock)s, cfg, err) < 0) {
            zh_zbridge_free(b);
            return NULL;
        }
    }
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
    if (sock_is_router(m->sock) && m->nframes > 0) {
        struct zh_span f = zh_zmsg_frame(m, 0);
        id = f.p;
        idn = f.n > MAX_IDENTITY ? MAX_IDENTITY : f.n;
    }
    for (struct dest *d = b->dests; d; d = d->next)
        if (d->sock == m->sock && d->id_len == idn && (idn == 0 || memcmp(d->id, id, idn) == 0))
            return d;
    if (!create)
        return NULL;
    struct dest *d = zh_calloc(1, sizeof(*d));
    d->sock = m->sock;
    d->id_len = idn;
    if (idn)
        memcpy(d->id, id, idn);
    d->next = b->dests;
    b->dests = d;
    return d;
}

/* Append m to the singly linked FIFO (*head, *tail) that parked messages, inbox overflow and worker
 * ports all use. */
static void fifo_append(struct zh_zmsg **head, struct zh_zmsg **tail, struct zh_zmsg *m)
{
    m->next = NULL;
    if (*tail)
        (*tail)->next = m;
    else
        *head = m;
    *tail = m;
}

static void park(struct zh_zbridge *b, struct dest *d, struct zh_zmsg *m)
{
    fifo_append(&d->head, &d->tail, m);
    d->count++;
    b->n_parked++;
}

static struct reach *reach_slot(struct zh_zbridge *b, const struct zh_zmsg *m)
{
    struct zh_span f = zh_zmsg_frame(m, 0);
    size_t n = f.n > MAX_IDENTITY ? MAX_IDENTITY : f.n;
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ f.p[i]) * 16777619u;
    return &b->reach[(h ^ (uint32_t)m->sock) % REACH_SLOTS];
}

static bool reach_match(const struct reach *r, const struct zh_zmsg *m)
{
    struct zh_span f = zh_zmsg_frame(m, 0);
    return r->len && r->sock == m->sock && r->len == f.n && memcmp(r->id, f.p, f.n) == 0;
}

/* m went out: remember its ROUTER peer (only for messages whose fate the worker wants to know). */
static void sent_ok(struct zh_zbridge *b, const struct zh_zmsg *m)
{
    if (!(m->flags & ZH_ZMSG_F_NOTIFY) || !sock_is_router(m->sock) || m->nframes < 2)
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
    if (!sock_is_router(m->sock) || m->nframes < 2)
        return false;
    struct reach *r = reach_slot(b, m);
    if (!reach_match(r, m))
        return false;
    r->len = 0;
    return true;
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
    if (r == -EAGAIN) {
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
        expire_parked(b, m);
    }
    d->tail = last;
}

/* Retry parked messages in order; drop empty destinations. */
static void retry_parked(struct zh_zbridge *b)
{
    uint64_t now = zh_time_ms();
    struct dest **pp = &b->dests;
    while (*pp) {
        struct dest *d = *pp;
        expire_dest(b, d, now);
        while (d->head) {
            struct zh_zmsg *m = d->head;
            int r = send_frames(b->socks[m->sock], m);
            if (r == -EAGAIN)
                break;
            d->head = m->next;
            if (!d->head)
                d->tail = NULL;
            d->count--;
            b->n_parked--;
            if (r < 0) {
                send_failed(b, m, r);
            } else {
                sent_ok(b, m);
                zh_zmsg_free(m);
            }
        }
        if (!d->head) {
            *pp = d->next;
            zh_free(d);
        } else {
            pp = &d->next;
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

/* Push a FIFO's messages into ch in order until it is full; returns how many went. The next link is
 * read before each push: once pushed, a message belongs to the other thread, which may free it. */
static size_t push_fifo(struct zh_chan *ch, struct zh_zmsg **head, struct zh_zmsg **tail)
{
    size_t n = 0;
    while (*head) {
        struct zh_zmsg *m = *head, *next = m->next;
        if (zh_chan_push(ch, m) != 0)
            break;
        *head = next;
        n++;
    }
    if (!*head)
        *tail = NULL;
    return n;
}

static void deliver(struct zh_zbridge *b, unsigned w, struct zh_zmsg *m)
{
    struct inq *q = &b->in[w];
    if (q->count == 0 && zh_chan_push(q->ch, m) == 0)
        return;
    if (q->count == 0)
        zh_chan_want_space(q->ch);
    fifo_append(&q->head, &q->tail, m);
    q->count++;
}

static void flush_inboxes(struct zh_zbridge *b)
{
    for (unsigned w = 0; w < b->workers; w++) {
        struct inq *q = &b->in[w];
        if (!q->count)
            continue;
        zh_chan_drain_space_signal(q->ch);
        q->count -= push_fifo(q->ch, &q->head, &q->tail);
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
    int n = zh_zroute(sock_role(m->sock), payload.p, payload.n, b->workers, &mask);
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
        if (sock_is_router(s) && m->nframes == 2 && m->frames[1].len == 0) {
            zh_trace("%s: probe ignored", zh_zsock_name(s));
            zh_zmsg_free(m);
            continue;
        }
        if (sock_is_router(s) && m->nframes < 2) {
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
            if (sock_receives((enum zh_zsock)s) && !blocked)
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

static void free_list(struct zh_zmsg *m)
{
    while (m) {
        struct zh_zmsg *next = m->next;
        zh_zmsg_free(m);
        m = next;
    }
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
            free_list(b->in[w].head);
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
    while (b->dests) {
        struct dest *d = b->dests;
        b->dests = d->next;
        free_list(d->head);
        zh_free(d);
    }
    for (int i = 0; i < b->n_locks; i++)
        close(b->lock_fds[i]);
    if (b->ctl_fd >= 0)
        close(b->ctl_fd);
    zh_free(b->id);
    zh_free(b);
}

/* ---- worker side ---- */

struct zport_q {
    struct zh_zport *port;
    enum zh_zsock sock;
    struct zh_io io; /* watches the channel's space fd while the FIFO is non-empty */
    struct zh_zmsg *head, *tail;
    size_t count;
};

struct zh_zport {
    struct zh_zbridge *b;
    unsigned w;
    struct zh_loop *loop;
    struct zport_q q[ZH_ZS_COUNT];
};

static void zport_flush(struct zport_q *q)
{
    struct zh_chan *ch = q->port->b->out[q->port->w][q->sock].ch;
    zh_chan_drain_space_signal(ch);
    q->count -= push_fifo(ch, &q->head, &q->tail);
    if (q->head) {
        zh_chan_want_space(ch);
        /* Space may have freed between the failed push and the request: try once more. */
        q->count -= push_fifo(ch, &q->head, &q->tail);
    }
    if (!q->head)
        zh_io_stop(q->port->loop, &q->io);
    else
        zh_io_set(q->port->loop, &q->io, ZH_EV_READ);
}

static void zport_space_cb(struct zh_io *io, uint32_t revents, void *data)
{
    ZH_UNUSED(io);
    ZH_UNUSED(revents);
    zport_flush(data);
}

struct zh_zport *zh_zport_new(struct zh_zbridge *b, unsigned w, struct zh_loop *loop)
{
    struct zh_zport *p = zh_calloc(1, sizeof(*p));
    p->b = b;
    p->w = w;
    p->loop = loop;
    for (int s = 0; s < ZH_ZS_COUNT; s++) {
        struct zport_q *q = &p->q[s];
        q->port = p;
        q->sock = (enum zh_zsock)s;
        struct zh_chan *ch = b->out[w][s].ch;
        zh_io_init(&q->io, ch ? zh_chan_space_fd(ch) : -1, zport_space_cb, q);
    }
    return p;
}

void zh_zport_send(struct zh_zport *p, struct zh_zmsg *m)
{
    struct zport_q *q = &p->q[m->sock];
    struct zh_chan *ch = p->b->out[p->w][m->sock].ch;
    if (!ch) {
        zh_warn("%s: socket not configured, message dropped", zh_zsock_name(m->sock));
        zh_zmsg_free(m);
        return;
    }
    m->worker = p->w;
    if (!q->head && zh_chan_push(ch, m) == 0)
        return;
    fifo_append(&q->head, &q->tail, m);
    q->count++;
    zport_flush(q);
}

size_t zh_zport_backlog(const struct zh_zport *p)
{
    size_t n = 0;
    for (int s = 0; s < ZH_ZS_COUNT; s++)
        n += p->q[s].count;
    return n;
}

size_t zh_zport_free(struct zh_zport *p)
{
    if (!p)
        return 0;
    size_t n = 0;
    for (int s = 0; s < ZH_ZS_COUNT; s++) {
        zh_io_stop(p->loop, &p->q[s].io);
        n += p->q[s].count;
        free_list(p->q[s].head);
    }
    zh_free(p);
    return n;
}
