/* One epoll event loop per thread, with a timer wheel and deferred-work/closing phases.
 *
 * zh_loop_run() repeats, as libuv's uv_run() does:
 *   run_pending -> epoll_wait(timeout = next timer) -> dispatch io -> run_pending -> run_timers
 * Callbacks never free objects that own a struct zh_io directly: they stop the io and free the
 * owner from a deferred callback (zh_loop_defer), which runs after dispatch, so no stale epoll
 * event can reach freed memory. Fired events are masked with the io's current interest set. Not
 * thread-safe: one loop per thread; other threads talk to it through channels (shared/rt/chan.h).
 */
#ifndef ZH_SHARED_RT_LOOP_H
#define ZH_SHARED_RT_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "shared/rt/timerwheel.h"

#define ZH_EV_READ  0x001u /* EPOLLIN */
#define ZH_EV_WRITE 0x004u /* EPOLLOUT */
#define ZH_EV_ERROR 0x008u /* EPOLLERR */
#define ZH_EV_HUP   0x010u /* EPOLLHUP */

struct zh_loop;
struct zh_io;

/* revents: ZH_EV_* bits that fired (ERROR/HUP are always reported). */
typedef void zh_io_cb(struct zh_io *io, uint32_t revents, void *data);

/* A file-descriptor watcher, embedded in its owner. Use the API; the members are private. */
struct zh_io {
    int _fd;
    uint32_t _events;
    bool _active;
    zh_io_cb *_cb;
    void *_data;
};

/* A deferred call, embedded in its owner; runs once in the loop's pending phase. */
struct zh_defer;
typedef void zh_defer_cb(struct zh_defer *d, void *data);
struct zh_defer {
    struct zh_defer *_next;
    zh_defer_cb *_cb;
    void *_data;
    bool _queued;
};

/* Create a loop. Returns NULL (with errno) if epoll_create fails. */
struct zh_loop *zh_loop_new(void);

/* Free the loop. Watchers still registered are forgotten, not closed. */
void zh_loop_free(struct zh_loop *loop);

/* Run until zh_loop_stop(). Returns 0, or -errno if epoll_wait fails for good. */
int zh_loop_run(struct zh_loop *loop);

/* Ask zh_loop_run() to return after the current iteration. */
void zh_loop_stop(struct zh_loop *loop);

/* The loop's cached monotonic time in milliseconds (refreshed every iteration). */
uint64_t zh_loop_now(const struct zh_loop *loop);

/* Refresh the cached time now. */
void zh_loop_update_time(struct zh_loop *loop);

/* Monotonic clock in milliseconds. */
uint64_t zh_time_ms(void);

/* Prepare an io watcher for fd (does not register it). */
void zh_io_init(struct zh_io *io, int fd, zh_io_cb *cb, void *data);

/* Register or change the interest set (ZH_EV_READ | ZH_EV_WRITE; 0 keeps it registered with no
 * interest). Returns 0 or -errno. */
int zh_io_set(struct zh_loop *loop, struct zh_io *io, uint32_t events);

/* Unregister; no more callbacks for this io, even for events already fetched. */
void zh_io_stop(struct zh_loop *loop, struct zh_io *io);

/* The io's fd. */
int zh_io_fd(const struct zh_io *io);

/* Arm a timer to fire delay_ms from the loop's current time (re-arming moves it). */
void zh_loop_timer_start(struct zh_loop *loop, struct zh_timer *t, uint64_t delay_ms);

/* Arm a timer at an absolute loop time in ms. */
void zh_loop_timer_at(struct zh_loop *loop, struct zh_timer *t, uint64_t when_ms);

/* Disarm a timer (no-op when not armed). */
void zh_loop_timer_stop(struct zh_loop *loop, struct zh_timer *t);

/* Initialise a deferred call. */
void zh_defer_init(struct zh_defer *d, zh_defer_cb *cb, void *data);

/* Queue d to run in the next pending phase (once, however often it is queued). */
void zh_loop_defer(struct zh_loop *loop, struct zh_defer *d);

/* Remove d from the pending queue if it is there. */
void zh_loop_defer_cancel(struct zh_loop *loop, struct zh_defer *d);

/* Number of registered io watchers (for leak checks in tests and at shutdown). */
unsigned zh_loop_io_count(const struct zh_loop *loop);

#endif
