#include "daemon/worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "shared/proto/mem.h"
#include "shared/rt/log.h"

#define INBOX_BATCH 256

enum { CMD_NONE = 0, CMD_DRAIN = 1, CMD_CANCEL = 2 };

struct zh_worker {
    unsigned index;
    char tag[16];
    struct zh_zbridge *bridge;
    struct zh_loop *loop;
    struct zh_zport *port;
    struct zh_chan *inbox;
    struct zh_io inbox_io;
    struct zh_defer inbox_more; /* a batch limit was hit: continue next iteration */
    int ctl_fd;
    struct zh_io ctl_io;
    struct zh_timer idle_timer; /* while draining: re-check whether anything is still in flight */
    atomic_int cmd;
    atomic_bool idle;
    _Atomic(const struct zh_worker_reload *) reload; /* pending reload, taken by ctl_cb */
    atomic_uint reload_seq;                          /* seq of the pending reload */
    atomic_uint reload_done;                         /* seq of the last applied reload */
    atomic_bool exited;
    struct zh_client *client;
    struct zh_server *server;
    struct zh_metrics *metrics;
    pthread_t thread;
    bool started;
};

static void update_idle(struct zh_worker *w)
{
    size_t active = (w->client ? zh_client_active(w->client) : 0) +
                    (w->server ? zh_server_active(w->server) : 0);
    atomic_store(&w->idle, active == 0);
}

static void idle_timer_cb(struct zh_timer *t, void *data)
{
    struct zh_worker *w = data;
    update_idle(w);
    if (!atomic_load(&w->idle))
        zh_loop_timer_start(w->loop, t, 20);
}

static void read_inbox(struct zh_worker *w)
{
    for (int i = 0; i < INBOX_BATCH; i++) {
        struct zh_zmsg *m = zh_chan_pop(w->inbox);
        if (!m) {
            if (atomic_load(&w->cmd) != CMD_NONE)
                update_idle(w);
            return;
        }
        if (m->sock < ZH_ZS_S_OUT) {
            if (w->client)
                zh_client_on_zmsg(w->client, m);
            else
                zh_zmsg_free(m);
        } else {
            if (w->server)
                zh_server_on_zmsg(w->server, m);
            else
                zh_zmsg_free(m);
        }
    }
    zh_loop_defer(w->loop, &w->inbox_more);
}

static void inbox_cb(struct zh_io *io, uint32_t revents, void *data)
{
    struct zh_worker *w = data;
    ZH_UNUSED(io);
    ZH_UNUSED(revents);
    zh_chan_drain_signal(w->inbox);
    read_inbox(w);
}

static void inbox_more_cb(struct zh_defer *d, void *data)
{
    ZH_UNUSED(d);
    read_inbox(data);
}

static void ctl_cb(struct zh_io *io, uint32_t revents, void *data)
{
    struct zh_worker *w = data;
    ZH_UNUSED(io);
    ZH_UNUSED(revents);
    uint64_t v;
    while (read(w->ctl_fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    const struct zh_worker_reload *r = atomic_exchange(&w->reload, NULL);
    if (r) {
        if (w->client)
            zh_client_reload(w->client, r->policy, r->client_timeout_ms);
        if (w->server && r->server)
            zh_server_reload(w->server, r->server);
        atomic_store(&w->reload_done, atomic_load(&w->reload_seq));
    }
    int cmd = atomic_load(&w->cmd);
    if (cmd == CMD_DRAIN) {
        if (w->server)
            zh_server_shutdown(w->server, 0);
        if (w->client)
            zh_client_shutdown(w->client, 0);
        idle_timer_cb(&w->idle_timer, w);
    } else if (cmd == CMD_CANCEL) {
        if (w->server)
            zh_server_shutdown(w->server, 1);
        if (w->client)
            zh_client_shutdown(w->client, 1);
        zh_loop_timer_stop(w->loop, &w->idle_timer);
        zh_loop_stop(w->loop);
    }
}

struct zh_worker *zh_worker_new(const struct zh_worker_config *cfg)
{
    struct zh_worker *w = zh_calloc(1, sizeof(*w));
    w->index = cfg->index;
    snprintf(w->tag, sizeof(w->tag), "w%u", cfg->index);
    w->bridge = cfg->bridge;
    w->metrics = cfg->metrics;
    w->loop = zh_loop_new();
    w->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!w->loop || w->ctl_fd < 0) {
        zh_error("worker %u: %s", cfg->index, strerror(errno));
        zh_loop_free(w->loop);
        if (w->ctl_fd >= 0)
            close(w->ctl_fd);
        zh_free(w);
        return NULL;
    }
    atomic_init(&w->cmd, CMD_NONE);
    atomic_init(&w->idle, true);
    atomic_init(&w->reload, NULL);
    atomic_init(&w->reload_seq, 0);
    atomic_init(&w->reload_done, 0);
    atomic_init(&w->exited, false);
    w->port = zh_zport_new(cfg->bridge, cfg->index, w->loop);
    w->inbox = zh_zbridge_inbox(cfg->bridge, cfg->index);
    zh_io_init(&w->inbox_io, zh_chan_fd(w->inbox), inbox_cb, w);
    zh_io_set(w->loop, &w->inbox_io, ZH_EV_READ);
    zh_defer_init(&w->inbox_more, inbox_more_cb, w);
    zh_timer_init(&w->idle_timer, idle_timer_cb, w);
    zh_io_init(&w->ctl_io, w->ctl_fd, ctl_cb, w);
    zh_io_set(w->loop, &w->ctl_io, ZH_EV_READ);
    if (cfg->client)
        w->client = zh_client_new(w->loop, w->port, cfg->index, cfg->client);
    if (cfg->server)
        w->server = zh_server_new(w->loop, w->port, cfg->index, cfg->server);
    return w;
}

static void *worker_main(void *arg)
{
    struct zh_worker *w = arg;
    zh_log_set_thread(w->tag);
    zh_metrics_self = w->metrics;
    zh_debug("worker %u started", w->index);
    int r = zh_loop_run(w->loop);
    if (r < 0)
        zh_error("worker %u: loop failed: %s", w->index, strerror(-r));
    zh_debug("worker %u stopped", w->index);
    atomic_store(&w->idle, true);
    atomic_store(&w->exited, true);
    return NULL;
}

int zh_worker_start(struct zh_worker *w)
{
    int r = pthread_create(&w->thread, NULL, worker_main, w);
    if (r != 0)
        return -r;
    w->started = true;
    return 0;
}

struct zh_server *zh_worker_server(struct zh_worker *w)
{
    return w->server;
}

static void send_cmd(struct zh_worker *w, int cmd)
{
    atomic_store(&w->cmd, cmd);
    uint64_t one = 1;
    while (write(w->ctl_fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

void zh_worker_reload(struct zh_worker *w, const struct zh_worker_reload *r, unsigned seq)
{
    atomic_store(&w->reload_seq, seq);
    atomic_store(&w->reload, r);
    uint64_t one = 1;
    while (write(w->ctl_fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

bool zh_worker_reloaded(struct zh_worker *w, unsigned seq)
{
    return atomic_load(&w->reload_done) == seq || atomic_load(&w->exited) || !w->started;
}

void zh_worker_drain(struct zh_worker *w)
{
    atomic_store(&w->idle, false);
    send_cmd(w, CMD_DRAIN);
}

void zh_worker_cancel(struct zh_worker *w)
{
    send_cmd(w, CMD_CANCEL);
}

bool zh_worker_idle(struct zh_worker *w)
{
    return atomic_load(&w->idle);
}

void zh_worker_free(struct zh_worker *w)
{
    if (!w)
        return;
    if (w->started) {
        zh_worker_cancel(w);
        pthread_join(w->thread, NULL);
    }
    zh_server_free(w->server);
    zh_client_free(w->client);
    zh_io_stop(w->loop, &w->inbox_io);
    zh_io_stop(w->loop, &w->ctl_io);
    size_t lost = zh_zport_free(w->port);
    if (lost)
        zh_warn("worker %u: %zu message(s) not handed to the bridge at exit", w->index, lost);
    close(w->ctl_fd);
    zh_loop_free(w->loop);
    zh_free(w);
}
