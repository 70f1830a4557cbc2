#include "client/outbound.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/proto/err.h"
#include "shared/proto/mem.h"
#include "shared/rt/log.h"

#define PEAK_WINDOW_MS 10000 /* a peak of transfers in flight sizes the cache for 10-20 s */

/* One watcher per socket curl uses. */
struct sockw {
    struct sockw *next_dead;
    struct zh_outbound *o;
    struct zh_io io;
    curl_socket_t fd;
    uint32_t events; /* what curl last asked for (ZH_EV_*) */
    bool parked;     /* curl let go of it (its connection is idle): see "parked watchers" */
};

/* What the engine knows of one fd number. */
struct fdslot {
    struct sockw *parked; /* the parked watcher of this fd, still registered with the loop */
    bool conn;            /* a connection socket curl opened (zh_outbound_opened) and not closed */
};

/* What a running transfer reports back to. */
struct xfer {
    zh_outbound_done_cb *done;
    void *data;
};

struct zh_outbound {
    struct zh_loop *loop;
    CURLM *multi;
    struct zh_timer timer;
    struct zh_defer reap; /* frees dead watchers after the current dispatch */
    struct sockw *dead;
    unsigned running;
    /* Most transfers running at once in this window and the one before: sizes the cache. */
    unsigned peak, peak_cur, peak_prev;
    uint64_t window_at; /* when this window began (loop ms) */
    struct fdslot *fds; /* indexed by fd, grown on demand */
    size_t n_fds;
    /* The connection pool of transfers outside the policy (ZH_POOL_TRUSTED): a share handle
     * holding only a connection cache. Used from this worker's thread only: no lock callbacks. */
    CURLSH *trusted;
};

static void check_multi_info(struct zh_outbound *o)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(o->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        struct xfer *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(o->multi, easy);
        o->running--;
        if (x) {
            curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
            zh_outbound_done_cb *done = x->done;
            void *data = x->data;
            zh_free(x);
            done(easy, result, data);
        }
    }
}

static void socket_action(struct zh_outbound *o, curl_socket_t fd, int ev)
{
    int still;
    CURLMcode rc = curl_multi_socket_action(o->multi, fd, ev, &still);
    if (rc != CURLM_OK)
        zh_error("curl_multi_socket_action: %s", curl_multi_strerror(rc));
    check_multi_info(o);
}

/* ---- parked watchers ----
 *
 * When a transfer ends, curl removes its connection's socket (CURL_POLL_REMOVE) and keeps the
 * connection idle in its cache; the next transfer to that origin takes it again and asks for the
 * same socket. Deleting the epoll registration and adding it back for every request costs two
 * epoll_ctl calls per request, so an idle connection's watcher is *parked* instead: it stays
 * registered for reading, curl no longer knows it, and the fd table remembers it. Then:
 *   - curl asks for the socket again: the watcher is taken back, usually with no syscall;
 *   - the socket becomes readable while parked (the origin closed it, or sent something unasked):
 *     the watcher stops and goes; curl finds out on its own when it next looks at the connection;
 *   - curl closes the socket (CURLOPT_CLOSESOCKETFUNCTION, set on every transfer and inherited by
 *     its connections): the watcher stops before the fd is closed and goes.
 * Only sockets that curl opened through the OPENSOCKETFUNCTION (zh_outbound_opened) are parked, so
 * every parked fd is closed through that callback; a new socket with the number of a parked one
 * would mean a close we did not see, and drops the stale watcher (defence in depth). */

static struct fdslot *fd_slot(struct zh_outbound *o, curl_socket_t s, bool grow)
{
    if (s < 0)
        return NULL;
    size_t i = (size_t)s;
    if (i >= o->n_fds) {
        if (!grow)
            return NULL;
        size_t n = o->n_fds ? o->n_fds : 64;
        while (n <= i)
            n *= 2;
        o->fds = zh_realloc(o->fds, n * sizeof(*o->fds));
        memset(o->fds + o->n_fds, 0, (n - o->n_fds) * sizeof(*o->fds));
        o->n_fds = n;
    }
    return &o->fds[i];
}

/* Stop w and free it after the current dispatch (an event for it may be in the same batch). */
static void kill_watcher(struct zh_outbound *o, struct sockw *w)
{
    zh_io_stop(o->loop, &w->io);
    w->parked = false;
    w->next_dead = o->dead;
    o->dead = w;
    zh_loop_defer(o->loop, &o->reap);
}

/* The parked watcher of fd s, taken out of the table, or NULL. */
static struct sockw *unpark(struct zh_outbound *o, curl_socket_t s)
{
    struct fdslot *slot = fd_slot(o, s, false);
    struct sockw *w = slot ? slot->parked : NULL;
    if (w) {
        slot->parked = NULL;
        w->parked = false;
    }
    return w;
}

static void io_cb(struct zh_io *io, uint32_t revents, void *data)
{
    struct sockw *w = data;
    ZH_UNUSED(io);
    if (w->parked) {
        struct sockw *p = unpark(w->o, w->fd);
        if (p != w)
            zh_warn("curl socket %d: parked watcher out of step", (int)w->fd);
        kill_watcher(w->o, w);
        return;
    }
    int ev = 0;
    if (revents & ZH_EV_READ)
        ev |= CURL_CSELECT_IN;
    if (revents & ZH_EV_WRITE)
        ev |= CURL_CSELECT_OUT;
    if (revents & (ZH_EV_ERROR | ZH_EV_HUP))
        ev |= CURL_CSELECT_ERR;
    socket_action(w->o, w->fd, ev);
}

static void timer_cb(struct zh_timer *t, void *data)
{
    ZH_UNUSED(t);
    socket_action(data, CURL_SOCKET_TIMEOUT, 0);
}

static void reap_cb(struct zh_defer *d, void *data)
{
    struct zh_outbound *o = data;
    ZH_UNUSED(d);
    while (o->dead) {
        struct sockw *w = o->dead;
        o->dead = w->next_dead;
        zh_free(w);
    }
}

static int sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct zh_outbound *o = userp;
    struct sockw *w = socketp;
    ZH_UNUSED(easy);
    if (what == CURL_POLL_REMOVE) {
        if (w) {
            curl_multi_assign(o->multi, s, NULL);
            struct fdslot *slot = fd_slot(o, s, false);
            /* Park only a connection socket that waits for reading (an idle keep-alive one). */
            if (slot && slot->conn && !slot->parked && w->events == ZH_EV_READ) {
                w->parked = true;
                slot->parked = w;
            } else {
                kill_watcher(o, w);
            }
        }
        return 0;
    }
    if (!w) {
        w = unpark(o, s);
        if (!w) {
            w = zh_calloc(1, sizeof(*w));
            w->o = o;
            w->fd = s;
            zh_io_init(&w->io, s, io_cb, w);
        }
        curl_multi_assign(o->multi, s, w);
    }
    uint32_t ev = 0;
    if (what & CURL_POLL_IN)
        ev |= ZH_EV_READ;
    if (what & CURL_POLL_OUT)
        ev |= ZH_EV_WRITE;
    /* curl announces CURL_POLL_REMOVE before it closes a socket, and a parked watcher goes in
     * the close callback, so a watcher never outlives its fd; zh_io_set still falls back between
     * ADD and MOD (EEXIST/ENOENT). A taken-back watcher already has READ: no syscall then. EBADF
     * means the fd is gone. */
    int r = zh_io_set(o->loop, &w->io, ev);
    w->events = r < 0 ? 0 : ev;
    if (r < 0 && r != -EBADF)
        zh_warn("curl socket %d: epoll: %s", (int)s, zh_strerror(r));
    return 0;
}

/* CURLOPT_CLOSESOCKETFUNCTION: curl closes one of its sockets (its connections keep this callback
 * and the outbound as its data after the transfer that made them is gone). */
static int closesocket_cb(void *clientp, curl_socket_t s)
{
    struct zh_outbound *o = clientp;
    struct fdslot *slot = fd_slot(o, s, false);
    if (slot) {
        slot->conn = false;
        struct sockw *w = unpark(o, s);
        if (w)
            kill_watcher(o, w); /* deregistered while the fd is still open */
    }
    return close(s) == 0 ? 0 : 1;
}

void zh_outbound_opened(struct zh_outbound *o, curl_socket_t s)
{
    struct fdslot *slot = fd_slot(o, s, true);
    if (!slot)
        return;
    struct sockw *w = unpark(o, s);
    if (w) {
        /* The number is new again, so its last socket was closed without our callback: that
         * registration is gone with it; forget the watcher. */
        zh_warn("curl socket %d: reopened while its watcher was parked", (int)s);
        kill_watcher(o, w);
    }
    slot->conn = true;
}

static int timerfn_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct zh_outbound *o = userp;
    ZH_UNUSED(multi);
    if (timeout_ms < 0)
        zh_loop_timer_stop(o->loop, &o->timer);
    else
        zh_loop_timer_at(o->loop, &o->timer, zh_time_ms() + (uint64_t)timeout_ms);
    return 0;
}

struct zh_outbound *zh_outbound_new(struct zh_loop *loop)
{
    struct zh_outbound *o = zh_calloc(1, sizeof(*o));
    o->loop = loop;
    o->multi = curl_multi_init();
    zh_timer_init(&o->timer, timer_cb, o);
    zh_defer_init(&o->reap, reap_cb, o);
    curl_multi_setopt(o->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(o->multi, CURLMOPT_SOCKETDATA, o);
    curl_multi_setopt(o->multi, CURLMOPT_TIMERFUNCTION, timerfn_cb);
    curl_multi_setopt(o->multi, CURLMOPT_TIMERDATA, o);
    o->trusted = curl_share_init();
    if (!o->trusted ||
        curl_share_setopt(o->trusted, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK) {
        zh_error("curl_share_init: cannot create the trusted connection pool (out of memory)");
        abort(); /* as the allocators do on OOM */
    }
    return o;
}

void zh_outbound_set_pool(struct zh_outbound *o, CURL *easy, enum zh_outbound_pool pool)
{
    /* An easy handle on the share takes and leaves its connections in the share's cache instead
     * of the multi handle's (curl 7.88: Curl_multi_add_handle picks data->share's conn_cache when
     * the share has CURL_LOCK_DATA_CONNECT). curl_easy_reset() keeps a share: always set it. */
    curl_easy_setopt(easy, CURLOPT_SHARE, pool == ZH_POOL_TRUSTED ? o->trusted : NULL);
}

void zh_outbound_free(struct zh_outbound *o)
{
    if (!o)
        return;
    zh_loop_timer_stop(o->loop, &o->timer);
    /* Both close their cached connections through closesocket_cb, which needs o: their parked
     * watchers go too. Every easy handle has left the share by now (the request context frees
     * its pooled handles first). */
    if (curl_share_cleanup(o->trusted) != CURLSHE_OK)
        zh_warn("trusted connection pool still in use at shutdown");
    curl_multi_cleanup(o->multi);
    for (size_t i = 0; i < o->n_fds; i++) {
        struct sockw *w = unpark(o, (curl_socket_t)i);
        if (w)
            kill_watcher(o, w);
    }
    zh_loop_defer_cancel(o->loop, &o->reap);
    reap_cb(&o->reap, o);
    zh_free(o->fds);
    zh_free(o);
}

int zh_outbound_add(struct zh_outbound *o, CURL *easy, zh_outbound_done_cb *done, void *data)
{
    struct xfer *x = zh_malloc(sizeof(*x));
    x->done = done;
    x->data = data;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)x);
    /* Every connection this transfer opens keeps these (see closesocket_cb). */
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, closesocket_cb);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, o);
    CURLMcode rc = curl_multi_add_handle(o->multi, easy);
    if (rc != CURLM_OK) {
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        zh_free(x);
        zh_error("curl_multi_add_handle: %s", curl_multi_strerror(rc));
        return -EINVAL;
    }
    o->running++;
    /* libcurl's default cache size is 4 x the easy handles on the multi handle *right now*, so
     * each time the transfers in flight dip (a burst of them just ended) it closes kept-alive
     * connections that the next burst then opens again. Keep the same 4x bound, but of the peak
     * over the last one or two windows: the cache follows the load without shrinking between
     * bursts. */
    uint64_t now = zh_loop_now(o->loop);
    if (now - o->window_at >= PEAK_WINDOW_MS) {
        o->peak_prev = now - o->window_at >= 2 * PEAK_WINDOW_MS ? 0 : o->peak_cur;
        o->peak_cur = 0;
        o->window_at = now;
    }
    if (o->running > o->peak_cur)
        o->peak_cur = o->running;
    unsigned peak = o->peak_cur > o->peak_prev ? o->peak_cur : o->peak_prev;
    if (peak != o->peak) {
        o->peak = peak;
        curl_multi_setopt(o->multi, CURLMOPT_MAXCONNECTS, (long)peak * 4);
    }
    return 0;
}

void zh_outbound_remove(struct zh_outbound *o, CURL *easy)
{
    struct xfer *x = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    if (!x)
        return;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    zh_free(x);
    curl_multi_remove_handle(o->multi, easy);
    o->running--;
}

unsigned zh_outbound_running(const struct zh_outbound *o)
{
    return o->running;
}

CURLM *zh_outbound_multi(struct zh_outbound *o)
{
    return o->multi;
}
