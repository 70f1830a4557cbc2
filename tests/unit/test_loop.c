/* link: zh_rt */
/* Unit tests for shared/rt/loop.c: io readiness on pipes and eventfds, masking of fetched events
 * against the current interest set, deferred calls (once, in order, re-queued ones in the next
 * phase, cancellation, including from inside the running phase), timers through the wheel,
 * zh_loop_stop and the ADD/MOD fallbacks of zh_io_set when an fd is closed and reopened under a
 * watcher. Callbacks count what they see; each test checks the counts at the end, and the teardown
 * fails if a watcher is still registered. A 5 s watchdog timer and an alarm() make a hang fail
 * instead of blocking. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "shared/proto/mem.h"
#include "harness.h"
#include "shared/rt/loop.h"
#include "shared/rt/timerwheel.h"

#define WATCHDOG_MS 5000
#define MAX_LOG     64

static struct zh_loop *loop; /* tl.loop */
static struct th_loop tl;    /* the harness runner: the loop and its watchdog */

/* An ordered log of small integers, one per callback, to check call order. */
static struct {
    int n;
    int v[MAX_LOG];
} order_log;

static void log_push(int v)
{
    assert_true(order_log.n < MAX_LOG);
    order_log.v[order_log.n++] = v;
}

static void assert_log(const int *want, int n)
{
    assert_int_equal(order_log.n, n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(order_log.v[i], want[i]);
    }
}

static int setup(void **state)
{
    (void)state;
    memset(&order_log, 0, sizeof(order_log));
    th_loop_init(&tl, WATCHDOG_MS);
    loop = tl.loop;
    alarm(20); /* last resort if the loop never returns to run timers */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    alarm(0);
    assert_int_equal(zh_loop_io_count(loop), 0); /* before any further turn */
    th_loop_fini(&tl);
    loop = NULL;
    return 0;
}

static int new_eventfd(void)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static void signal_fd(int fd)
{
    uint64_t one = 1;
    assert_int_equal(write(fd, &one, sizeof(one)), (ssize_t)sizeof(one));
}

static int timer_probe; /* counts stop_loop_cb calls made with data == NULL */

static void stop_loop_cb(struct zh_timer *t, void *data)
{
    (void)t;
    int *called = data ? data : &timer_probe;
    (*called)++;
    zh_loop_stop(loop);
}

/* Run the loop until a timer `ms` from now stops it. */
static void run_for(uint64_t ms)
{
    struct zh_timer t;
    zh_timer_init(&t, stop_loop_cb, NULL);
    zh_loop_update_time(loop);
    zh_loop_timer_start(loop, &t, ms);
    assert_int_equal(zh_loop_run(loop), 0);
    zh_loop_timer_stop(loop, &t);
}

/* ---- io readiness ---- */

struct watch {
    struct zh_io io;
    int fd;
    int called;
    uint32_t revents_or; /* every bit seen */
    uint32_t last;
    int stop_after;          /* zh_io_stop self after this many calls (0 = never) */
    bool stop_loop;          /* zh_loop_stop with the self-stop */
    struct watch *peer;      /* another watcher this one acts on */
    bool stop_peer;          /* zh_io_stop(peer) on first call */
    uint32_t narrow_peer_to; /* zh_io_set(peer, this) on first call when set */
    bool read_it;            /* drain the eventfd / pipe on read */
    struct zh_defer *defer;  /* zh_loop_defer this on every call */
};

static void watch_cb(struct zh_io *io, uint32_t revents, void *data)
{
    struct watch *w = data;
    assert_ptr_equal(io, &w->io);
    w->called++;
    w->revents_or |= revents;
    w->last = revents;
    log_push(w->fd);
    if (w->defer) {
        zh_loop_defer(loop, w->defer);
    }
    if (w->read_it && (revents & ZH_EV_READ)) {
        char buf[64];
        ssize_t r = read(w->fd, buf, sizeof(buf));
        (void)r;
    }
    if (w->called == 1 && w->peer) {
        if (w->stop_peer) {
            zh_io_stop(loop, &w->peer->io);
        }
        if (w->narrow_peer_to) {
            assert_int_equal(zh_io_set(loop, &w->peer->io, w->narrow_peer_to), 0);
        }
    }
    if (w->stop_after && w->called >= w->stop_after) {
        zh_io_stop(loop, io);
        if (w->stop_loop) {
            zh_loop_stop(loop);
        }
    }
}

static void watch_init(struct watch *w, int fd)
{
    memset(w, 0, sizeof(*w));
    w->fd = fd;
    zh_io_init(&w->io, fd, watch_cb, w);
}

static void pipe_read_end_fires_when_data_arrives(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    struct watch w;
    watch_init(&w, p[0]);
    w.stop_after = 1;
    w.stop_loop = true;
    w.read_it = true;
    assert_int_equal(zh_io_set(loop, &w.io, ZH_EV_READ), 0);
    assert_int_equal(zh_loop_io_count(loop), 1);
    assert_int_equal(zh_io_fd(&w.io), p[0]);

    /* Nothing to read yet: a short run sees no callback. */
    run_for(20);
    assert_int_equal(w.called, 0);

    assert_int_equal(write(p[1], "x", 1), 1);
    assert_int_equal(zh_loop_run(loop), 0);
    assert_int_equal(w.called, 1);
    assert_true(w.last & ZH_EV_READ);
    assert_false(w.last & ZH_EV_WRITE);
    close(p[0]);
    close(p[1]);
}

static void eventfd_write_interest_fires_at_once(void **state)
{
    (void)state;
    int fd = new_eventfd();
    struct watch w;
    watch_init(&w, fd);
    w.stop_after = 1;
    w.stop_loop = true;
    assert_int_equal(zh_io_set(loop, &w.io, ZH_EV_WRITE), 0);
    assert_int_equal(zh_loop_run(loop), 0);
    assert_int_equal(w.called, 1);
    assert_int_equal(w.last, ZH_EV_WRITE);
    close(fd);
}

static void read_interest_ignores_writability(void **state)
{
    (void)state;
    int fd = new_eventfd(); /* always writable, not readable until signalled */
    struct watch w;
    watch_init(&w, fd);
    assert_int_equal(zh_io_set(loop, &w.io, ZH_EV_READ), 0);
    run_for(20);
    assert_int_equal(w.called, 0);
    zh_io_stop(loop, &w.io);
    close(fd);
}

static void level_triggered_until_drained(void **state)
{
    (void)state;
    int fd = new_eventfd();
    struct watch w;
    watch_init(&w, fd);
    w.stop_after = 3; /* never drains: fires on every iteration */
    w.stop_loop = true;
    signal_fd(fd);
    assert_int_equal(zh_io_set(loop, &w.io, ZH_EV_READ), 0);
    assert_int_equal(zh_loop_run(loop), 0);
    assert_int_equal(w.called, 3);
    close(fd);
}

static void hangup_is_reported_when_the_writer_closes(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    struct watch w;
    watch_init(&w, p[0]);
    w.stop_after = 1;
    w.stop_loop = true;
    assert_int_equal(zh_io_set(loop, &w.io, ZH_EV_READ), 0);
    close(p[1]);
    assert_int_equal(zh_loop_run(loop), 0);
    assert_int_equal(w.called, 1);
    assert_true(w.last & ZH_EV_HUP);
    close(p[0]);
}

static void error_is_reported_even_without_interest(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    struct watch w;
    watch_init(&w, p[1]); /* write end; the reader goes away */
    w.stop_after = 1;
    w.stop_loop = true;
    assert_int_equal(zh_io_set(loop, &w.io, 0), 0);
    close(p[0]);
    assert_int_equal(zh_loop_run(loop), 0);
    assert_int_equal(w.called, 1);
    assert_true(w.last & ZH_EV_ERROR);
    assert_false(w.last & ZH_EV_WRITE);
    close(p[1]);
}

static void zero_interest_keeps_the_watcher_registered_and_silent(void **state)
{
    (void)state;
    int fd = new_eventfd();
    signal_fd(fd);
    struct watch w;
    watch_init(&w, fd);
    w.stop_after = 1;
    w.stop_loop = true;
    assert_int_equal(zh_io_set(loop, &w.io, 0), 0);
    assert_int_equal(zh_loop_io_count(loop), 1);
    run_for(20);
    assert_int_equal(w.called, 0);
    assert_int_equal(zh_io_set(loop, &w.io, ZH_EV_READ), 0);
    assert_int_equal(zh_loop_io_count(loop), 1);
    assert_int_equal(zh_loop_run(loop), 0);
    assert_int_equal(w.called, 1);
    assert_int_equal(w.last, ZH_EV_READ);
    close(fd);
}

static void setting_the_same_interest_twice_registers_once(void **state)
{
    (void)state;
    int fd = new_eventfd();
    struct watch w;
    watch_init(&w, fd);
    assert_int_equal(zh_io_set(loop, &w.io, ZH_EV_READ), 0);
    assert_int_equal(zh_io_set(loop, &w.io, ZH_EV_READ), 0);
    assert_int_equal(zh_loop_io_count(loop), 1);
    assert_int_equal(zh_io_set(loop, &w.io, ZH_EV_READ | ZH_EV_WRITE), 0);
    assert_int_equal(zh_loop_io_count(loop), 1);
    zh_io_stop(loop, &w.io);
    zh_io_stop(loop, &w.io); /* second stop is a no-op */
    assert_int_equal(zh_loop_io_count(loop), 0);
    close(fd);
}

static void set_on_a_bad_fd_fails_and_registers_nothing(void **state)
{
    (void)state;
    struct watch w;
    watch_init(&w, -1);
    assert_int_equal(zh_io_set(loop, &w.io, ZH_EV_READ), -EBADF);
    assert_int_equal(zh_loop_io_count(loop), 0);
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[0]);
    close(p[1]);
    watch_init(&w, p[0]); /* closed fd */
    assert_int_equal(zh_io_set(loop, &w.io, ZH_EV_READ), -EBADF);
    assert_int_equal(zh_loop_io_count(loop), 0);
    zh_io_stop(loop, &w.io); /* never registered: no-op */
    assert_int_equal(zh_loop_io_count(loop), 0);
}

/* ---- masking fetched events against the current interest ---- */

static void io_stopped_by_an_earlier_callback_in_the_batch_is_not_called(void **state)
{
    (void)state;
    /* Both fds ready before the loop runs, so epoll returns both in one batch; whichever callback
     * runs first stops the other, which must then not be called for its already-fetched event. */
    int fa = new_eventfd();
    int fb = new_eventfd();
    struct watch a, b;
    watch_init(&a, fa);
    watch_init(&b, fb);
    a.peer = &b;
    b.peer = &a;
    a.stop_peer = b.stop_peer = true;
    a.stop_after = b.stop_after = 1;
    signal_fd(fa);
    signal_fd(fb);
    assert_int_equal(zh_io_set(loop, &a.io, ZH_EV_READ), 0);
    assert_int_equal(zh_io_set(loop, &b.io, ZH_EV_READ), 0);
    run_for(30);
    assert_int_equal(a.called + b.called, 1);
    assert_int_equal(zh_loop_io_count(loop), 0);
    close(fa);
    close(fb);
}

static void io_narrowed_by_an_earlier_callback_gets_only_what_it_still_wants(void **state)
{
    (void)state;
    /* a and b are both readable (and always writable); whichever runs first narrows the other to
     * WRITE. The other's fetched READ event must be masked away: it may only ever see WRITE. */
    int fa = new_eventfd();
    int fb = new_eventfd();
    struct watch a, b;
    watch_init(&a, fa);
    watch_init(&b, fb);
    a.peer = &b;
    b.peer = &a;
    a.narrow_peer_to = b.narrow_peer_to = ZH_EV_WRITE;
    a.stop_after = b.stop_after = 2;
    signal_fd(fa);
    signal_fd(fb);
    assert_int_equal(zh_io_set(loop, &a.io, ZH_EV_READ), 0);
    assert_int_equal(zh_io_set(loop, &b.io, ZH_EV_READ), 0);
    run_for(30);
    struct watch *first = a.revents_or & ZH_EV_READ ? &a : &b;
    struct watch *second = first == &a ? &b : &a;
    assert_true(first->revents_or & ZH_EV_READ);
    assert_false(second->revents_or & ZH_EV_READ);
    assert_true(second->revents_or & ZH_EV_WRITE);
    assert_int_equal(second->called, 2);
    zh_io_stop(loop, &a.io);
    zh_io_stop(loop, &b.io);
    close(fa);
    close(fb);
}

/* ---- deferred calls ---- */

struct dcall {
    struct zh_defer d;
    int id;
    int called;
    int requeue;            /* re-queue itself this many more times */
    struct dcall *cancel;   /* cancel this one on the first call */
    bool free_cancelled;    /* and free it (it was heap-allocated) */
    bool requeue_cancelled; /* or queue it again right after cancelling */
    bool quiet;             /* do not log (for calls that run very often) */
    bool stop_loop;         /* zh_loop_stop on the last call */
    int *probe;             /* value of *probe at each call, logged as id*100 + *probe */
};

static void dcall_cb(struct zh_defer *d, void *data)
{
    struct dcall *c = data;
    assert_ptr_equal(d, &c->d);
    c->called++;
    if (!c->quiet) {
        log_push(c->probe ? c->id * 100 + *c->probe : c->id);
    }
    if (c->cancel) {
        zh_loop_defer_cancel(loop, &c->cancel->d);
        if (c->free_cancelled) {
            zh_free(c->cancel);
        } else if (c->requeue_cancelled) {
            zh_loop_defer(loop, &c->cancel->d);
        }
        c->cancel = NULL;
    }
    if (c->requeue > 0) {
        c->requeue--;
        zh_loop_defer(loop, &c->d);
    } else if (c->stop_loop) {
        zh_loop_stop(loop);
    }
}

static void dcall_init(struct dcall *c, int id)
{
    memset(c, 0, sizeof(*c));
    c->id = id;
    zh_defer_init(&c->d, dcall_cb, c);
}

static void deferred_calls_run_once_in_queue_order(void **state)
{
    (void)state;
    struct dcall c[3];
    for (int i = 0; i < 3; i++) {
        dcall_init(&c[i], i + 1);
    }
    zh_loop_defer(loop, &c[0].d);
    zh_loop_defer(loop, &c[1].d);
    zh_loop_defer(loop, &c[2].d);
    zh_loop_defer(loop, &c[0].d); /* already queued: no second run, no reordering */
    zh_loop_defer(loop, &c[1].d);
    run_for(20);
    const int want[] = {1, 2, 3};
    assert_log(want, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c[i].called, 1);
    }
}

static void deferred_call_requeued_by_itself_runs_in_the_next_phase(void **state)
{
    (void)state;
    /* a and b are queued before the loop runs, so the first pending phase runs both. a re-queues
     * itself; an eventfd is ready, so its io callback runs between that phase and the next one. A
     * re-queued call that ran in the same phase would see the io count still 0. */
    int fd = new_eventfd();
    signal_fd(fd);
    struct watch w;
    watch_init(&w, fd);
    w.stop_after = 1;
    assert_int_equal(zh_io_set(loop, &w.io, ZH_EV_READ), 0);

    struct dcall a, b;
    dcall_init(&a, 1);
    dcall_init(&b, 2);
    a.probe = &w.called;
    a.requeue = 1;
    a.stop_loop = true;
    zh_loop_defer(loop, &a.d);
    zh_loop_defer(loop, &b.d);
    assert_int_equal(zh_loop_run(loop), 0);
    /* a (io 0), b, w's fd, a again (io 1) */
    const int want[] = {100, 2, fd, 101};
    assert_log(want, 4);
    assert_int_equal(a.called, 2);
    assert_int_equal(b.called, 1);
    close(fd);
}

static void self_requeueing_deferred_call_does_not_starve_timers(void **state)
{
    (void)state;
    struct dcall a;
    dcall_init(&a, 1);
    a.requeue = 1000000000;
    zh_loop_defer(loop, &a.d);
    int fired = 0;
    struct zh_timer t;
    zh_timer_init(&t, stop_loop_cb, &fired);
    zh_loop_timer_start(loop, &t, 10);
    a.quiet = true;
    assert_int_equal(zh_loop_run(loop), 0);
    assert_int_equal(fired, 1);
    assert_true(a.called > 1);
    zh_loop_defer_cancel(loop, &a.d);
}

static void cancelled_deferred_call_does_not_run(void **state)
{
    (void)state;
    struct dcall c[4];
    for (int i = 0; i < 4; i++) {
        dcall_init(&c[i], i + 1);
    }
    zh_loop_defer(loop, &c[0].d);
    zh_loop_defer(loop, &c[1].d);
    zh_loop_defer(loop, &c[2].d);
    zh_loop_defer_cancel(loop, &c[1].d); /* middle */
    zh_loop_defer_cancel(loop, &c[2].d); /* tail: the next one must still be appended */
    zh_loop_defer_cancel(loop, &c[2].d); /* not queued: no-op */
    zh_loop_defer(loop, &c[3].d);
    zh_loop_defer(loop, &c[1].d); /* queued again after cancel: runs, at the end */
    run_for(20);
    const int want[] = {1, 4, 2};
    assert_log(want, 3);
    assert_int_equal(c[2].called, 0);
}

static void cancelling_the_only_deferred_call_leaves_an_empty_queue(void **state)
{
    (void)state;
    struct dcall a, b;
    dcall_init(&a, 1);
    dcall_init(&b, 2);
    zh_loop_defer(loop, &a.d);
    zh_loop_defer_cancel(loop, &a.d);
    zh_loop_defer(loop, &b.d);
    run_for(20);
    const int want[] = {2};
    assert_log(want, 1);
}

static void deferred_call_cancelled_by_an_earlier_one_in_the_same_phase_does_not_run(void **state)
{
    (void)state;
    /* The usual close path: a's callback cancels b's pending call and frees b's owner. b must not
     * run (ASan catches a use after free) and c, queued after b, must still run. */
    struct dcall a, c;
    struct dcall *b = zh_malloc(sizeof(*b));
    dcall_init(&a, 1);
    dcall_init(b, 2);
    dcall_init(&c, 3);
    a.cancel = b;
    a.free_cancelled = true;
    zh_loop_defer(loop, &a.d);
    zh_loop_defer(loop, &b->d);
    zh_loop_defer(loop, &c.d);
    run_for(20);
    const int want[] = {1, 3};
    assert_log(want, 2);
    assert_int_equal(c.called, 1);
    /* c can be queued again: its bookkeeping was not left "queued". */
    zh_loop_defer(loop, &c.d);
    run_for(10);
    assert_int_equal(c.called, 2);
}

static void
deferred_call_cancelled_and_requeued_in_the_same_phase_runs_once_next_phase(void **state)
{
    (void)state;
    /* a cancels b (queued behind it in the running phase) and queues it again: b must run exactly
     * once, after c, in the next phase. */
    struct dcall a, b, c;
    dcall_init(&a, 1);
    dcall_init(&b, 2);
    dcall_init(&c, 3);
    a.cancel = &b;
    a.requeue_cancelled = true;
    zh_loop_defer(loop, &a.d);
    zh_loop_defer(loop, &b.d);
    zh_loop_defer(loop, &c.d);
    run_for(20);
    const int want[] = {1, 3, 2};
    assert_log(want, 3);
    assert_int_equal(b.called, 1);
}

static void deferred_call_queued_by_io_callback_runs_before_due_timers(void **state)
{
    (void)state;
    /* One iteration: epoll (timeout 0, the timer is due) -> io callback queues d -> pending phase
     * runs d -> timers. */
    int fd = new_eventfd();
    signal_fd(fd);
    struct dcall d;
    dcall_init(&d, 7);
    struct watch w;
    watch_init(&w, fd);
    w.stop_after = 1;
    w.defer = &d.d;
    assert_int_equal(zh_io_set(loop, &w.io, ZH_EV_READ), 0);
    struct zh_timer t;
    zh_timer_init(&t, stop_loop_cb, NULL);
    zh_loop_timer_start(loop, &t, 0);
    d.probe = &timer_probe;
    timer_probe = 0;
    assert_int_equal(zh_loop_run(loop), 0);
    const int want[] = {fd, 700};
    assert_log(want, 2);
    assert_int_equal(w.called, 1);
    assert_int_equal(d.called, 1);
    assert_int_equal(timer_probe, 1);
    close(fd);
}

/* ---- timers ---- */

struct ttimer {
    struct zh_timer t;
    int id;
    int called;
    int rearm; /* re-arm this many more times */
    uint64_t delay;
    uint64_t armed_at;
    uint64_t fired_at[8];
    bool stop_loop;
};

static void ttimer_cb(struct zh_timer *t, void *data)
{
    struct ttimer *x = data;
    assert_ptr_equal(t, &x->t);
    assert_false(zh_timer_armed(t));
    assert_true(x->called < 8);
    x->fired_at[x->called++] = zh_loop_now(loop);
    log_push(x->id);
    if (x->rearm > 0) {
        x->rearm--;
        zh_loop_timer_start(loop, &x->t, x->delay);
    } else if (x->stop_loop) {
        zh_loop_stop(loop);
    }
}

static void ttimer_start(struct ttimer *x, int id, uint64_t delay)
{
    memset(x, 0, sizeof(*x));
    x->id = id;
    x->delay = delay;
    zh_timer_init(&x->t, ttimer_cb, x);
    x->armed_at = zh_loop_now(loop);
    zh_loop_timer_start(loop, &x->t, delay);
}

static void timers_fire_in_expiry_order_and_not_early(void **state)
{
    (void)state;
    zh_loop_update_time(loop);
    struct ttimer a, b, c;
    ttimer_start(&a, 30, 30);
    ttimer_start(&b, 10, 10);
    ttimer_start(&c, 20, 20);
    a.stop_loop = true;
    assert_int_equal(zh_loop_run(loop), 0);
    const int want[] = {10, 20, 30};
    assert_log(want, 3);
    assert_true(b.fired_at[0] - b.armed_at >= 10);
    assert_true(c.fired_at[0] - c.armed_at >= 20);
    assert_true(a.fired_at[0] - a.armed_at >= 30);
    assert_int_equal(a.called + b.called + c.called, 3);
}

static void timer_rearmed_from_its_callback_fires_again(void **state)
{
    (void)state;
    zh_loop_update_time(loop);
    struct ttimer a;
    ttimer_start(&a, 1, 5);
    a.rearm = 3;
    a.stop_loop = true;
    assert_int_equal(zh_loop_run(loop), 0);
    assert_int_equal(a.called, 4);
    for (int i = 1; i < 4; i++) {
        assert_true(a.fired_at[i] - a.fired_at[i - 1] >= 5);
    }
    assert_false(zh_timer_armed(&a.t));
}

static void zero_delay_timer_fires_on_the_next_iteration(void **state)
{
    (void)state;
    struct ttimer a;
    ttimer_start(&a, 1, 0);
    a.stop_loop = true;
    assert_int_equal(a.called, 0); /* not from inside timer_start */
    assert_int_equal(zh_loop_run(loop), 0);
    assert_int_equal(a.called, 1);
}

static void stopped_timer_does_not_fire(void **state)
{
    (void)state;
    zh_loop_update_time(loop);
    struct ttimer a, b;
    ttimer_start(&a, 1, 5);
    ttimer_start(&b, 2, 20);
    b.stop_loop = true;
    zh_loop_timer_stop(loop, &a.t);
    zh_loop_timer_stop(loop, &a.t); /* not armed: no-op */
    assert_int_equal(zh_loop_run(loop), 0);
    assert_int_equal(a.called, 0);
    assert_int_equal(b.called, 1);
}

static void timer_at_absolute_time_fires(void **state)
{
    (void)state;
    zh_loop_update_time(loop);
    struct ttimer a;
    memset(&a, 0, sizeof(a));
    a.id = 1;
    a.stop_loop = true;
    zh_timer_init(&a.t, ttimer_cb, &a);
    uint64_t when = zh_loop_now(loop) + 15;
    zh_loop_timer_at(loop, &a.t, when);
    assert_int_equal(zh_loop_run(loop), 0);
    assert_int_equal(a.called, 1);
    assert_true(a.fired_at[0] >= when);
}

/* ---- zh_loop_stop and the clock ---- */

static void stop_from_a_deferred_call_returns_without_blocking(void **state)
{
    (void)state;
    /* No io and no timer but the watchdog: the loop must not wait in epoll_wait after stop. */
    struct dcall a;
    dcall_init(&a, 1);
    a.stop_loop = true;
    zh_loop_defer(loop, &a.d);
    uint64_t t0 = zh_time_ms();
    assert_int_equal(zh_loop_run(loop), 0);
    assert_true(zh_time_ms() - t0 < 1000);
    assert_int_equal(a.called, 1);
}

static void loop_runs_again_after_stop(void **state)
{
    (void)state;
    int fd = new_eventfd();
    struct watch w;
    watch_init(&w, fd);
    w.stop_after = 1;
    w.stop_loop = true;
    w.read_it = true;
    signal_fd(fd);
    assert_int_equal(zh_io_set(loop, &w.io, ZH_EV_READ), 0);
    assert_int_equal(zh_loop_run(loop), 0);
    assert_int_equal(w.called, 1);
    /* second run: a fresh readiness, same watcher */
    signal_fd(fd);
    assert_int_equal(zh_io_set(loop, &w.io, ZH_EV_READ), 0);
    w.stop_after = 2;
    assert_int_equal(zh_loop_run(loop), 0);
    assert_int_equal(w.called, 2);
    close(fd);
}

static void loop_time_advances_while_running(void **state)
{
    (void)state;
    zh_loop_update_time(loop);
    uint64_t before = zh_loop_now(loop);
    run_for(15);
    assert_true(zh_loop_now(loop) >= before + 15);
    assert_true(zh_time_ms() >= zh_loop_now(loop));
}

/* ---- ADD/MOD fallbacks of zh_io_set ---- */

static void set_readds_a_watcher_whose_fd_was_closed_and_reopened(void **state)
{
    (void)state;
    /* Watch fd n for WRITE, close it (the kernel forgets the registration) and put a new eventfd at
     * the same number. zh_io_set(READ) tries MOD, gets ENOENT and must fall back to ADD. */
    int fd = new_eventfd();
    struct watch w;
    watch_init(&w, fd);
    assert_int_equal(zh_io_set(loop, &w.io, ZH_EV_WRITE), 0);
    close(fd);
    int nfd = new_eventfd();
    if (nfd != fd) {
        assert_int_equal(dup2(nfd, fd), fd);
        close(nfd);
    }
    w.stop_after = 1;
    w.stop_loop = true;
    assert_int_equal(zh_io_set(loop, &w.io, ZH_EV_READ), 0);
    assert_int_equal(zh_loop_io_count(loop), 1);
    signal_fd(fd);
    assert_int_equal(zh_loop_run(loop), 0);
    assert_int_equal(w.called, 1);
    assert_int_equal(w.last, ZH_EV_READ);
    close(fd);
}

static void set_takes_over_an_fd_still_registered_by_a_forgotten_watcher(void **state)
{
    (void)state;
    /* old registered fd; new, a fresh watcher for the same fd, is not "active", so zh_io_set tries
     * ADD, gets EEXIST and must fall back to MOD: events then reach the new watcher only. */
    int fd = new_eventfd();
    struct watch old, neww;
    watch_init(&old, fd);
    watch_init(&neww, fd);
    assert_int_equal(zh_io_set(loop, &old.io, ZH_EV_WRITE), 0);
    neww.stop_after = 1;
    neww.stop_loop = true;
    assert_int_equal(zh_io_set(loop, &neww.io, ZH_EV_READ), 0);
    signal_fd(fd);
    assert_int_equal(zh_loop_run(loop), 0);
    assert_int_equal(neww.called, 1);
    assert_int_equal(old.called, 0);
    zh_io_stop(loop, &old.io); /* DEL: already gone from the kernel's view is fine */
    assert_int_equal(zh_loop_io_count(loop), 0);
    close(fd);
}

static void stop_after_the_fd_was_closed_still_unregisters(void **state)
{
    (void)state;
    int fd = new_eventfd();
    struct watch w;
    watch_init(&w, fd);
    assert_int_equal(zh_io_set(loop, &w.io, ZH_EV_READ), 0);
    close(fd);
    zh_io_stop(loop, &w.io);
    assert_int_equal(zh_loop_io_count(loop), 0);
    run_for(10);
    assert_int_equal(w.called, 0);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(pipe_read_end_fires_when_data_arrives),
        T(eventfd_write_interest_fires_at_once),
        T(read_interest_ignores_writability),
        T(level_triggered_until_drained),
        T(hangup_is_reported_when_the_writer_closes),
        T(error_is_reported_even_without_interest),
        T(zero_interest_keeps_the_watcher_registered_and_silent),
        T(setting_the_same_interest_twice_registers_once),
        T(set_on_a_bad_fd_fails_and_registers_nothing),
        T(io_stopped_by_an_earlier_callback_in_the_batch_is_not_called),
        T(io_narrowed_by_an_earlier_callback_gets_only_what_it_still_wants),
        T(deferred_calls_run_once_in_queue_order),
        T(deferred_call_requeued_by_itself_runs_in_the_next_phase),
        T(self_requeueing_deferred_call_does_not_starve_timers),
        T(cancelled_deferred_call_does_not_run),
        T(cancelling_the_only_deferred_call_leaves_an_empty_queue),
        T(deferred_call_cancelled_by_an_earlier_one_in_the_same_phase_does_not_run),
        T(deferred_call_cancelled_and_requeued_in_the_same_phase_runs_once_next_phase),
        T(deferred_call_queued_by_io_callback_runs_before_due_timers),
        T(timers_fire_in_expiry_order_and_not_early),
        T(timer_rearmed_from_its_callback_fires_again),
        T(zero_delay_timer_fires_on_the_next_iteration),
        T(stopped_timer_does_not_fire),
        T(timer_at_absolute_time_fires),
        T(stop_from_a_deferred_call_returns_without_blocking),
        T(loop_runs_again_after_stop),
        T(loop_time_advances_while_running),
        T(set_readds_a_watcher_whose_fd_was_closed_and_reopened),
        T(set_takes_over_an_fd_still_registered_by_a_forgotten_watcher),
        T(stop_after_the_fd_was_closed_still_unregisters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
