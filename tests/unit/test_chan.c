/* link: zh_rt */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <cmocka.h>

#include "shared/proto/err.h"
#include "shared/rt/chan.h"

#define ITEM(n) ((void *)(uintptr_t)(n))
#define VAL(p)  ((uintptr_t)(p))

static int readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    do {
        r = poll(&p, 1, 0);
    } while (r < 0 && errno == EINTR);
    assert_true(r >= 0);
    return r == 1 && (p.revents & POLLIN);
}

/* Push until full; returns how many went in. */
static size_t fill(struct zh_chan *c, uintptr_t first)
{
    size_t n = 0;
    while (zh_chan_push(c, ITEM(first + n)) == 0) {
        n++;
        assert_true(n < 1u << 20);
    }
    return n;
}

static void capacity_rounds_up_to_power_of_two(void **state)
{
    (void)state;
    static const size_t asked[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 1000, 1024};
    static const size_t got[] = {1, 1, 2, 4, 4, 8, 8, 8, 16, 1024, 1024};
    for (size_t i = 0; i < sizeof(asked) / sizeof(asked[0]); i++) {
        struct zh_chan *c = zh_chan_new(asked[i]);
        assert_non_null(c);
        assert_int_equal(got[i], fill(c, 1));
        assert_int_equal(got[i], zh_chan_size(c));
        assert_true(zh_chan_full(c));
        while (zh_chan_pop(c)) {
        }
        zh_chan_free(c);
    }
}

static void full_channel_refuses_then_accepts_after_pop(void **state)
{
    (void)state;
    struct zh_chan *c = zh_chan_new(4);
    assert_false(zh_chan_full(c));
    assert_int_equal(4, fill(c, 1));
    assert_int_equal(ZH_E_FULL, zh_chan_push(c, ITEM(99)));
    assert_int_equal(4, zh_chan_size(c));
    assert_int_equal(1, VAL(zh_chan_pop(c)));
    assert_false(zh_chan_full(c));
    assert_int_equal(0, zh_chan_push(c, ITEM(5)));
    assert_true(zh_chan_full(c));
    /* The refused item never appears. */
    for (uintptr_t want = 2; want <= 5; want++) {
        assert_int_equal(want, VAL(zh_chan_pop(c)));
    }
    assert_null(zh_chan_pop(c));
    zh_chan_free(c);
}

static void pop_on_empty_returns_null(void **state)
{
    (void)state;
    struct zh_chan *c = zh_chan_new(8);
    assert_null(zh_chan_pop(c));
    assert_int_equal(0, zh_chan_size(c));
    assert_int_equal(0, zh_chan_push(c, ITEM(1)));
    assert_non_null(zh_chan_pop(c));
    assert_null(zh_chan_pop(c));
    zh_chan_free(c);
}

static void fifo_order_across_wraparound(void **state)
{
    (void)state;
    struct zh_chan *c = zh_chan_new(4);
    uintptr_t next_in = 1, next_out = 1;
    /* Uneven batches so head and tail wrap at every offset. */
    for (int round = 0; round < 1000; round++) {
        int in = 1 + round % 4, out = 1 + (round * 7) % 4;
        for (int i = 0; i < in; i++) {
            if (zh_chan_push(c, ITEM(next_in)) == 0)
                next_in++;
        }
        for (int i = 0; i < out; i++) {
            void *p = zh_chan_pop(c);
            if (!p)
                break;
            assert_int_equal(next_out, VAL(p));
            next_out++;
        }
        assert_int_equal(next_in - next_out, zh_chan_size(c));
    }
    for (void *p; (p = zh_chan_pop(c));) {
        assert_int_equal(next_out++, VAL(p));
    }
    assert_int_equal(next_in, next_out);
    assert_true(next_in > 1000);
    zh_chan_free(c);
}

static void fds_are_nonblocking_and_cloexec(void **state)
{
    (void)state;
    struct zh_chan *c = zh_chan_new(4);
    int fds[2] = {zh_chan_fd(c), zh_chan_space_fd(c)};
    assert_int_not_equal(fds[0], fds[1]);
    for (int i = 0; i < 2; i++) {
        assert_true(fds[i] >= 0);
        assert_true(fcntl(fds[i], F_GETFL) & O_NONBLOCK);
        assert_true(fcntl(fds[i], F_GETFD) & FD_CLOEXEC);
    }
    /* Draining an unsignalled fd returns at once. */
    zh_chan_drain_signal(c);
    zh_chan_drain_space_signal(c);
    zh_chan_free(c);
}

static void fd_readable_when_ring_goes_non_empty(void **state)
{
    (void)state;
    struct zh_chan *c = zh_chan_new(8);
    int fd = zh_chan_fd(c);
    assert_false(readable(fd));
    assert_int_equal(0, zh_chan_push(c, ITEM(1)));
    assert_true(readable(fd));
    assert_int_equal(0, zh_chan_push(c, ITEM(2)));
    assert_true(readable(fd));
    /* Level-triggered: stays readable until drained. */
    assert_true(readable(fd));
    zh_chan_drain_signal(c);
    assert_false(readable(fd));
    /* A push into a non-empty ring does not signal: the consumer is still draining it. */
    assert_int_equal(0, zh_chan_push(c, ITEM(3)));
    assert_false(readable(fd));
    assert_int_equal(1, VAL(zh_chan_pop(c)));
    assert_int_equal(2, VAL(zh_chan_pop(c)));
    assert_int_equal(3, VAL(zh_chan_pop(c)));
    assert_null(zh_chan_pop(c));
    assert_false(readable(fd));
    /* Empty again: the next push signals. */
    assert_int_equal(0, zh_chan_push(c, ITEM(4)));
    assert_true(readable(fd));
    zh_chan_drain_signal(c);
    assert_int_equal(4, VAL(zh_chan_pop(c)));
    zh_chan_free(c);
}

static void signal_after_drain_is_kept(void **state)
{
    (void)state;
    struct zh_chan *c = zh_chan_new(8);
    int fd = zh_chan_fd(c);
    /* Consumer drains, pops the ring empty; a push then must leave fd readable. */
    assert_int_equal(0, zh_chan_push(c, ITEM(1)));
    zh_chan_drain_signal(c);
    assert_int_equal(1, VAL(zh_chan_pop(c)));
    assert_null(zh_chan_pop(c));
    assert_int_equal(0, zh_chan_push(c, ITEM(2)));
    assert_true(readable(fd));
    zh_chan_free(c);
}

static void want_space_wakes_producer_after_pop(void **state)
{
    (void)state;
    struct zh_chan *c = zh_chan_new(2);
    int sfd = zh_chan_space_fd(c);
    assert_int_equal(2, fill(c, 1));
    assert_false(readable(sfd));
    /* Pops without a request do not signal. */
    assert_int_equal(1, VAL(zh_chan_pop(c)));
    assert_false(readable(sfd));
    assert_int_equal(0, zh_chan_push(c, ITEM(3)));
    assert_true(zh_chan_full(c));

    zh_chan_want_space(c);
    assert_false(readable(sfd)); /* still full */
    assert_int_equal(2, VAL(zh_chan_pop(c)));
    assert_true(readable(sfd));
    zh_chan_drain_space_signal(c);
    assert_false(readable(sfd));
    /* One request, one wake-up. */
    assert_int_equal(3, VAL(zh_chan_pop(c)));
    assert_false(readable(sfd));
    zh_chan_free(c);
}

static void want_space_when_not_full_signals_at_once(void **state)
{
    (void)state;
    struct zh_chan *c = zh_chan_new(2);
    int sfd = zh_chan_space_fd(c);
    assert_int_equal(2, fill(c, 1));
    /* The consumer pops between the producer's failed push and its request. */
    assert_int_equal(ZH_E_FULL, zh_chan_push(c, ITEM(9)));
    assert_int_equal(1, VAL(zh_chan_pop(c)));
    zh_chan_want_space(c);
    assert_true(readable(sfd));
    zh_chan_drain_space_signal(c);
    /* The request was used up: a later pop does not signal again. */
    assert_int_equal(2, VAL(zh_chan_pop(c)));
    assert_false(readable(sfd));
    zh_chan_free(c);
}

static void space_signal_does_not_touch_item_signal(void **state)
{
    (void)state;
    struct zh_chan *c = zh_chan_new(1);
    assert_int_equal(0, zh_chan_push(c, ITEM(1)));
    zh_chan_drain_signal(c);
    zh_chan_want_space(c);
    assert_int_equal(1, VAL(zh_chan_pop(c)));
    assert_true(readable(zh_chan_space_fd(c)));
    assert_false(readable(zh_chan_fd(c)));
    zh_chan_free(c);
}

static void free_null_is_noop(void **state)
{
    (void)state;
    zh_chan_free(NULL);
}

/* ---- two threads ---- */

#define STRESS_N       1000000u
#define STRESS_WAIT_MS 5000

struct stress {
    struct zh_chan *c;
    bool yield_backoff; /* producer spins with sched_yield instead of waiting on space_fd */
    uintptr_t n;        /* values 1..n are sent */
    atomic_uint poll_timeouts;
    atomic_uint order_errors;
    atomic_uint space_timeouts;
    atomic_uint full_count;
    uintptr_t received;
    unsigned wakeups;
};

static void *producer(void *arg)
{
    struct stress *s = arg;
    for (uintptr_t i = 1; i <= s->n; i++) {
        while (zh_chan_push(s->c, ITEM(i)) == ZH_E_FULL) {
            atomic_fetch_add(&s->full_count, 1);
            if (s->yield_backoff) {
                sched_yield();
                continue;
            }
            zh_chan_want_space(s->c);
            struct pollfd p = {.fd = zh_chan_space_fd(s->c), .events = POLLIN};
            int r;
            do {
                r = poll(&p, 1, STRESS_WAIT_MS);
            } while (r < 0 && errno == EINTR);
            if (r == 0) {
                atomic_fetch_add(&s->space_timeouts, 1);
                return NULL;
            }
            zh_chan_drain_space_signal(s->c);
        }
    }
    return NULL;
}

static void *consumer(void *arg)
{
    struct stress *s = arg;
    uintptr_t expect = 1;
    while (expect <= s->n) {
        struct pollfd p = {.fd = zh_chan_fd(s->c), .events = POLLIN};
        int r;
        do {
            r = poll(&p, 1, STRESS_WAIT_MS);
        } while (r < 0 && errno == EINTR);
        if (r == 0) {
            atomic_fetch_add(&s->poll_timeouts, 1);
            break;
        }
        s->wakeups++;
        zh_chan_drain_signal(s->c);
        for (void *item; (item = zh_chan_pop(s->c));) {
            if (VAL(item) != expect)
                atomic_fetch_add(&s->order_errors, 1);
            expect++;
        }
    }
    s->received = expect - 1;
    return NULL;
}

static void run_stress(size_t capacity, bool yield_backoff, uintptr_t n)
{
    struct stress s = {.c = zh_chan_new(capacity), .yield_backoff = yield_backoff, .n = n};
    assert_non_null(s.c);
    atomic_init(&s.poll_timeouts, 0);
    atomic_init(&s.order_errors, 0);
    atomic_init(&s.space_timeouts, 0);
    atomic_init(&s.full_count, 0);
    pthread_t pt, ct;
    assert_int_equal(0, pthread_create(&ct, NULL, consumer, &s));
    assert_int_equal(0, pthread_create(&pt, NULL, producer, &s));
    assert_int_equal(0, pthread_join(pt, NULL));
    assert_int_equal(0, pthread_join(ct, NULL));
    assert_int_equal(0, atomic_load(&s.poll_timeouts));
    assert_int_equal(0, atomic_load(&s.space_timeouts));
    assert_int_equal(0, atomic_load(&s.order_errors));
    assert_int_equal(n, s.received);
    assert_null(zh_chan_pop(s.c));
    assert_int_equal(0, zh_chan_size(s.c));
    assert_true(s.wakeups > 0);
    print_message("%zu items, capacity %zu, %s backoff: %u consumer wake-ups, %u full pushes\n",
                  (size_t)n, capacity, yield_backoff ? "yield" : "space_fd", s.wakeups,
                  atomic_load(&s.full_count));
    zh_chan_free(s.c);
}

static void two_threads_million_items_in_order_waiting_on_space_fd(void **state)
{
    (void)state;
    run_stress(64, false, STRESS_N);
}

static void two_threads_million_items_in_order_with_yield_backoff(void **state)
{
    (void)state;
    run_stress(16, true, STRESS_N);
}

/* One slot: every push and pop goes through the wake-up paths. */
static void two_threads_single_slot_ring(void **state)
{
    (void)state;
    run_stress(1, false, STRESS_N / 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(capacity_rounds_up_to_power_of_two),
        cmocka_unit_test(full_channel_refuses_then_accepts_after_pop),
        cmocka_unit_test(pop_on_empty_returns_null),
        cmocka_unit_test(fifo_order_across_wraparound),
        cmocka_unit_test(fds_are_nonblocking_and_cloexec),
        cmocka_unit_test(fd_readable_when_ring_goes_non_empty),
        cmocka_unit_test(signal_after_drain_is_kept),
        cmocka_unit_test(want_space_wakes_producer_after_pop),
        cmocka_unit_test(want_space_when_not_full_signals_at_once),
        cmocka_unit_test(space_signal_does_not_touch_item_signal),
        cmocka_unit_test(free_null_is_noop),
        cmocka_unit_test(two_threads_million_items_in_order_waiting_on_space_fd),
        cmocka_unit_test(two_threads_million_items_in_order_with_yield_backoff),
        cmocka_unit_test(two_threads_single_slot_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
