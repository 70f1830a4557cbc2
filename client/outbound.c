#include "client/outbound.h"

#include <errno.h>

#include "shared/proto/err.h"
#include "shared/proto/mem.h"
#include "shared/rt/log.h"

/* One watcher per socket curl uses. */
struct sockw {
    struct sockw *next_dead;
    struct zh_outbound *o;
    struct zh_io io;
    curl_socket_t fd;
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

static void io_cb(struct zh_io *io, uint32_t revents, void *data)
{
    struct sockw *w = data;
    ZH_UNUSED(io);
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
            zh_io_stop(o->loop, &w->io);
            curl_multi_assign(o->multi, s, NULL);
            w->next_dead = o->dead;
            o->dead = w;
            zh_loop_defer(o->loop, &o->reap);
        }
        return 0;
    }
    if (!w) {
        w = zh_calloc(1, sizeof(*w));
        w->o = o;
        w->fd = s;
        zh_io_init(&w->io, s, io_cb, w);
        curl_multi_assign(o->multi, s, w);
    }
    uint32_t ev = 0;
    if (what & CURL_POLL_IN)
        ev |= ZH_EV_READ;
    if (what & CURL_POLL_OUT)
        ev |= ZH_EV_WRITE;
    /* curl announces CURL_POLL_REMOVE before it closes a socket, so a watcher never outlives its
     * fd; zh_io_set still falls back between ADD and MOD (EEXIST/ENOENT). EBADF means the fd is
     * gone. */
    int r = zh_io_set(o->loop, &w->io, ev);
    if (r < 0 && r != -EBADF)
        zh_warn("curl socket %d: epoll: %s", (int)s, zh_strerror(r));
    return 0;
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
    return o;
}

void zh_outbound_free(struct zh_outbound *o)
{
    if (!o)
        return;
    zh_loop_timer_stop(o->loop, &o->timer);
    curl_multi_cleanup(o->multi);
    zh_loop_defer_cancel(o->loop, &o->reap);
    reap_cb(&o->reap, o);
    zh_free(o);
}

int zh_outbound_add(struct zh_outbound *o, CURL *easy, zh_outbound_done_cb *done, void *data)
{
    struct xfer *x = zh_malloc(sizeof(*x));
    x->done = done;
    x->data = data;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)x);
    CURLMcode rc = curl_multi_add_handle(o->multi, easy);
    if (rc != CURLM_OK) {
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        zh_free(x);
        zh_error("curl_multi_add_handle: %s", curl_multi_strerror(rc));
        return -EINVAL;
    }
    o->running++;
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
