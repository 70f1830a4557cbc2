#include "shared/rt/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "shared/proto/mem.h"

#define MAX_EVENTS 256

struct zh_loop {
    int epfd;
    bool stop;
    unsigned n_io;
    uint64_t now;
    struct zh_wheel wheel;
    struct zh_defer *pending_head, **pending_tail;
    struct zh_defer *running; /* rest of the batch run_pending is running (cancel looks here too) */
};

uint64_t zh_time_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct zh_loop *zh_loop_new(void)
{
    int fd = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct zh_loop *loop = zh_calloc(1, sizeof(*loop));
    loop->epfd = fd;
    loop->now = zh_time_ms();
    zh_wheel_init(&loop->wheel, loop->now);
    loop->pending_tail = &loop->pending_head;
    return loop;
}

void zh_loop_free(struct zh_loop *loop)
{
    if (!loop)
        return;
    close(loop->epfd);
    zh_free(loop);
}

void zh_loop_stop(struct zh_loop *loop)
{
    loop->stop = true;
}

uint64_t zh_loop_now(const struct zh_loop *loop)
{
    return loop->now;
}

void zh_loop_update_time(struct zh_loop *loop)
{
    loop->now = zh_time_ms();
}

void zh_io_init(struct zh_io *io, int fd, zh_io_cb *cb, void *data)
{
    io->_fd = fd;
    io->_events = 0;
    io->_active = false;
    io->_cb = cb;
    io->_data = data;
}

int zh_io_fd(const struct zh_io *io)
{
    return io->_fd;
}

int zh_io_set(struct zh_loop *loop, struct zh_io *io, uint32_t events)
{
    struct epoll_event ev = {.events = events & (EPOLLIN | EPOLLOUT), .data.ptr = io};
    if (io->_active && io->_events == events)
        return 0;
    int op = io->_active ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(loop->epfd, op, io->_fd, &ev) < 0) {
        /* The fd may have been closed and reused under us (curl does that): re-add. */
        if (op == EPOLL_CTL_MOD && errno == ENOENT)
            op = EPOLL_CTL_ADD;
        else if (op == EPOLL_CTL_ADD && errno == EEXIST)
            op = EPOLL_CTL_MOD;
        else
            return -errno;
        if (epoll_ctl(loop->epfd, op, io->_fd, &ev) < 0)
            return -errno;
    }
    if (!io->_active)
        loop->n_io++;
    io->_active = true;
    io->_events = events;
    return 0;
}

void zh_io_stop(struct zh_loop *loop, struct zh_io *io)
{
    if (!io->_active)
        return;
    /* Failure (EBADF after a close, ENOENT) still means the kernel no longer watches it. */
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->_fd, NULL);
    io->_active = false;
    io->_events = 0;
    loop->n_io--;
}

unsigned zh_loop_io_count(const struct zh_loop *loop)
{
    return loop->n_io;
}

void zh_loop_timer_start(struct zh_loop *loop, struct zh_timer *t, uint64_t delay_ms)
{
    zh_wheel_add(&loop->wheel, t, loop->now + delay_ms);
}

void zh_loop_timer_at(struct zh_loop *loop, struct zh_timer *t, uint64_t when_ms)
{
    zh_wheel_add(&loop->wheel, t, when_ms);
}

void zh_loop_timer_stop(struct zh_loop *loop, struct zh_timer *t)
{
    zh_wheel_del(&loop->wheel, t);
}

void zh_defer_init(struct zh_defer *d, zh_defer_cb *cb, void *data)
{
    d->_next = NULL;
    d->_cb = cb;
    d->_data = data;
    d->_queued = false;
}

void zh_loop_defer(struct zh_loop *loop, struct zh_defer *d)
{
    if (d->_queued)
        return;
    d->_queued = true;
    d->_next = NULL;
    *loop->pending_tail = d;
    loop->pending_tail = &d->_next;
}

void zh_loop_defer_cancel(struct zh_loop *loop, struct zh_defer *d)
{
    if (!d->_queued)
        return;
    struct zh_defer **pp = &loop->pending_head;
    while (*pp && *pp != d)
        pp = &(*pp)->_next;
    if (*pp) {
        *pp = d->_next;
        if (loop->pending_tail == &d->_next)
            loop->pending_tail = pp;
    } else {
        /* Not in the next phase's queue: it is later in the batch being run right now. */
        pp = &loop->running;
        while (*pp && *pp != d)
            pp = &(*pp)->_next;
        if (*pp)
            *pp = d->_next;
    }
    d->_queued = false;
    d->_next = NULL;
}

/* Run the deferred calls queued so far; calls queued while running wait for the next phase, so a
 * callback that re-queues itself cannot starve the loop. The batch stays reachable from
 * loop->running, so a callback may cancel (and free the owner of) a call later in the batch. */
static void run_pending(struct zh_loop *loop)
{
    loop->running = loop->pending_head;
    loop->pending_head = NULL;
    loop->pending_tail = &loop->pending_head;
    struct zh_defer *d;
    while ((d = loop->running) != NULL) {
        loop->running = d->_next;
        d->_queued = false;
        d->_next = NULL;
        d->_cb(d, d->_data);
    }
}

int zh_loop_run(struct zh_loop *loop)
{
    struct epoll_event events[MAX_EVENTS];
    loop->stop = false;
    while (!loop->stop) {
        run_pending(loop);
        if (loop->stop)
            break;
        int timeout = -1;
        if (loop->pending_head) {
            timeout = 0;
        } else {
            /* The callbacks since the last advance took time: measure the timeout from now. */
            int64_t t = zh_wheel_timeout(&loop->wheel);
            if (t >= 0) {
                int64_t spent = (int64_t)(zh_time_ms() - loop->now);
                t = t > spent ? t - spent : 0;
                timeout = t > 60000 ? 60000 : (int)t;
            }
        }
        int n = epoll_wait(loop->epfd, events, MAX_EVENTS, timeout);
        if (n < 0) {
            if (errno == EINTR)
                n = 0;
            else
                return -errno;
        }
        zh_loop_update_time(loop);
        for (int i = 0; i < n; i++) {
            struct zh_io *io = events[i].data.ptr;
            /* Mask against the current interest set: an earlier callback in this batch may have
             * stopped or changed this watcher. */
            if (!io->_active)
                continue;
            uint32_t rev = events[i].events & (io->_events | EPOLLERR | EPOLLHUP);
            if (!rev)
                continue;
            uint32_t zev = 0;
            if (rev & (EPOLLIN | EPOLLRDHUP))
                zev |= ZH_EV_READ;
            if (rev & EPOLLOUT)
                zev |= ZH_EV_WRITE;
            if (rev & EPOLLERR)
                zev |= ZH_EV_ERROR;
            if (rev & EPOLLHUP)
                zev |= ZH_EV_HUP;
            io->_cb(io, zev, io->_data);
        }
        run_pending(loop);
        zh_wheel_advance(&loop->wheel, loop->now);
    }
    return 0;
}
