/* link: zh_rt */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "shared/rt/timerwheel.h"

#define WHEEL_SPAN (UINT64_C(1) << 24) /* what four levels cover: ~4.6 h */

/* A test timer remembers when it was armed for, and every callback appends it to a fire log. */
struct tt {
    struct zh_timer t;
    uint64_t expires; /* what we armed it for (the reference) */
    int fired;
    int id;
};

#define LOG_MAX 100000
static struct {
    int n;
    int id[LOG_MAX];
    uint64_t expires[LOG_MAX];
} fire_log;

static struct zh_wheel wheel;

static void log_cb(struct zh_timer *t, void *data)
{
    struct tt *x = data;
    assert_ptr_equal(&x->t, t);
    assert_false(zh_timer_armed(t));
    x->fired++;
    assert_true(fire_log.n < LOG_MAX);
    fire_log.id[fire_log.n] = x->id;
    fire_log.expires[fire_log.n] = x->expires;
    fire_log.n++;
}

static void arm(struct tt *x, int id, uint64_t expires)
{
    if (!x->t._cb) {
        zh_timer_init(&x->t, log_cb, x);
    }
    x->id = id;
    x->expires = expires;
    zh_wheel_add(&wheel, &x->t, expires);
}

static int setup(void **state)
{
    (void)state;
    memset(&fire_log, 0, sizeof(fire_log));
    zh_wheel_init(&wheel, 0);
    return 0;
}

/* Deterministic PRNG (xorshift64*) so a failure can be replayed. */
static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * UINT64_C(2685821657736338717);
}
static uint64_t rnd_below(uint64_t n)
{
    return n ? rnd() % n : 0;
}

/* ---- basics ---- */

static void empty_wheel_has_no_timeout(void **state)
{
    (void)state;
    assert_int_equal(-1, zh_wheel_timeout(&wheel));
    assert_int_equal(0, zh_wheel_count(&wheel));
    assert_int_equal(0, zh_wheel_advance(&wheel, 1000000));
    assert_int_equal(-1, zh_wheel_timeout(&wheel));
}

static void init_timer_is_not_armed(void **state)
{
    (void)state;
    struct tt x = {0};
    zh_timer_init(&x.t, log_cb, &x);
    assert_false(zh_timer_armed(&x.t));
    zh_wheel_del(&wheel, &x.t); /* no-op */
    assert_int_equal(0, zh_wheel_count(&wheel));
}

static void timer_fires_at_expiry_not_before(void **state)
{
    (void)state;
    struct tt x = {0};
    arm(&x, 1, 100);
    assert_true(zh_timer_armed(&x.t));
    assert_int_equal(1, zh_wheel_count(&wheel));
    /* 100 is in the next 64 ms block: the timeout may stop at the block start, never later. */
    int64_t to = zh_wheel_timeout(&wheel);
    assert_true(to >= 64 && to <= 100);
    assert_int_equal(0, zh_wheel_advance(&wheel, 99));
    assert_int_equal(0, x.fired);
    assert_int_equal(1, zh_wheel_timeout(&wheel));
    assert_int_equal(1, zh_wheel_advance(&wheel, 100));
    assert_int_equal(1, x.fired);
    assert_false(zh_timer_armed(&x.t));
    assert_int_equal(0, zh_wheel_count(&wheel));
    assert_int_equal(0, zh_wheel_advance(&wheel, 10000));
    assert_int_equal(1, x.fired);
}

static void timers_fire_in_expiry_order_across_levels(void **state)
{
    (void)state;
    enum { N = 400 };
    static struct tt x[N];
    memset(x, 0, sizeof(x));
    rng_state = 0x1234567;
    /* Distinct expiries from 1 ms to ~2 days, armed in random order. */
    uint64_t when[N];
    for (int i = 0; i < N; i++) {
        when[i] = (uint64_t)(i + 1) * (uint64_t)(i + 1) * (uint64_t)(i + 1) * 3 + (uint64_t)i;
    }
    for (int i = N - 1; i > 0; i--) {
        int j = (int)rnd_below((uint64_t)i + 1);
        uint64_t tmp = when[i];
        when[i] = when[j];
        when[j] = tmp;
    }
    for (int i = 0; i < N; i++) {
        arm(&x[i], i, when[i]);
    }
    assert_true(when[0] < UINT64_C(200000000));
    assert_int_equal(N, zh_wheel_advance(&wheel, UINT64_C(1) << 28));
    assert_int_equal(N, fire_log.n);
    for (int i = 1; i < N; i++) {
        assert_true(fire_log.expires[i - 1] < fire_log.expires[i]);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(1, x[i].fired);
    }
}

static void equal_expiries_all_fire_once(void **state)
{
    (void)state;
    enum { N = 50 };
    static struct tt x[N];
    memset(x, 0, sizeof(x));
    for (int i = 0; i < N; i++) {
        arm(&x[i], i, 5000);
    }
    assert_int_equal(0, zh_wheel_advance(&wheel, 4999));
    assert_int_equal(N, zh_wheel_advance(&wheel, 5000));
    for (int i = 0; i < N; i++) {
        assert_int_equal(1, x[i].fired);
    }
}

static void del_prevents_firing(void **state)
{
    (void)state;
    struct tt a = {0}, b = {0}, c = {0};
    arm(&a, 1, 10);
    arm(&b, 2, 10);
    arm(&c, 3, 100000); /* in a higher level */
    zh_wheel_del(&wheel, &a.t);
    zh_wheel_del(&wheel, &c.t);
    zh_wheel_del(&wheel, &c.t); /* twice is fine */
    assert_false(zh_timer_armed(&a.t));
    assert_int_equal(1, zh_wheel_count(&wheel));
    assert_int_equal(1, zh_wheel_advance(&wheel, 1000000));
    assert_int_equal(0, a.fired);
    assert_int_equal(1, b.fired);
    assert_int_equal(0, c.fired);
    assert_int_equal(-1, zh_wheel_timeout(&wheel));
}

static void add_on_armed_timer_moves_it(void **state)
{
    (void)state;
    struct tt a = {0};
    arm(&a, 1, 50);
    arm(&a, 1, 70000);
    assert_int_equal(1, zh_wheel_count(&wheel));
    assert_int_equal(0, zh_wheel_advance(&wheel, 69999));
    arm(&a, 1, 70001); /* move again, now from level 0 */
    assert_int_equal(0, zh_wheel_advance(&wheel, 70000));
    assert_int_equal(1, zh_wheel_advance(&wheel, 70001));
    assert_int_equal(1, a.fired);
    /* Moving a far timer earlier works too. */
    arm(&a, 1, 80000000);
    arm(&a, 1, 70005);
    assert_int_equal(1, zh_wheel_advance(&wheel, 70005));
    assert_int_equal(2, a.fired);
    assert_int_equal(0, zh_wheel_count(&wheel));
}

static void overdue_timer_fires_on_next_advance(void **state)
{
    (void)state;
    struct tt a = {0}, b = {0};
    assert_int_equal(0, zh_wheel_advance(&wheel, 1000));
    arm(&a, 1, 10);   /* long past */
    arm(&b, 2, 1000); /* exactly now */
    assert_int_equal(0, zh_wheel_timeout(&wheel));
    assert_int_equal(2, zh_wheel_advance(&wheel, 1000));
    /* Earliest first, even among overdue timers. */
    assert_int_equal(1, fire_log.id[0]);
    assert_int_equal(2, fire_log.id[1]);
    assert_int_equal(-1, zh_wheel_timeout(&wheel));
}

static void overdue_timers_fire_sorted_by_expiry(void **state)
{
    (void)state;
    enum { N = 64 };
    static struct tt x[N];
    memset(x, 0, sizeof(x));
    rng_state = 99;
    zh_wheel_init(&wheel, 5000000);
    for (int i = 0; i < N; i++) {
        arm(&x[i], i, rnd_below(5000001));
    }
    assert_int_equal(N, zh_wheel_advance(&wheel, 5000000));
    for (int i = 1; i < N; i++) {
        assert_true(fire_log.expires[i - 1] <= fire_log.expires[i]);
    }
}

static void time_never_goes_backwards(void **state)
{
    (void)state;
    struct tt a = {0};
    assert_int_equal(0, zh_wheel_advance(&wheel, 500));
    arm(&a, 1, 510);
    assert_int_equal(0, zh_wheel_advance(&wheel, 100));
    assert_int_equal(10, zh_wheel_timeout(&wheel));
    assert_int_equal(1, zh_wheel_advance(&wheel, 510));
}

static void nonzero_start_time(void **state)
{
    (void)state;
    struct tt a = {0}, b = {0};
    uint64_t epoch = UINT64_C(1732600000123); /* a wall-clock-like start */
    zh_wheel_init(&wheel, epoch);
    arm(&a, 1, epoch + 30000);
    arm(&b, 2, epoch + 45000);
    assert_true(zh_wheel_timeout(&wheel) <= 30000);
    assert_int_equal(0, zh_wheel_advance(&wheel, epoch + 29999));
    assert_int_equal(1, zh_wheel_advance(&wheel, epoch + 30000));
    assert_int_equal(1, zh_wheel_advance(&wheel, epoch + 60000));
    assert_int_equal(1, a.fired);
    assert_int_equal(1, b.fired);
}

static void timeout_is_exact_within_the_first_level(void **state)
{
    (void)state;
    struct tt a = {0};
    zh_wheel_init(&wheel, 1024);
    arm(&a, 1, 1061);
    assert_int_equal(37, zh_wheel_timeout(&wheel));
    /* Crossing a 64 ms block: may be early (a cascade point), never late. */
    arm(&a, 1, 1100);
    int64_t to = zh_wheel_timeout(&wheel);
    assert_true(to >= 0 && to <= 76);
}

/* Drive the wheel like the event loop does: sleep for the timeout, advance, repeat. A timer must
 * fire exactly at its expiry and the loop must not wake up more than a few times on the way. */
static void timeout_driven_loop_fires_exactly_on_time(void **state)
{
    (void)state;
    static const uint64_t delays[] = {1,
                                      63,
                                      64,
                                      65,
                                      4095,
                                      4096,
                                      4097,
                                      262143,
                                      262144,
                                      300001,
                                      WHEEL_SPAN - 1,
                                      WHEEL_SPAN,
                                      WHEEL_SPAN + 1,
                                      5 * WHEEL_SPAN + 77,
                                      UINT64_C(86400000) * 30};
    for (size_t i = 0; i < sizeof(delays) / sizeof(delays[0]); i++) {
        for (uint64_t start = 0; start < 3; start++) {
            uint64_t now = start * UINT64_C(1000003) + 17;
            struct tt a = {0};
            memset(&fire_log, 0, sizeof(fire_log));
            zh_wheel_init(&wheel, now);
            arm(&a, 1, now + delays[i]);
            int wakeups = 0;
            while (!a.fired) {
                int64_t to = zh_wheel_timeout(&wheel);
                assert_true(to >= 0);
                assert_true(now + (uint64_t)to <= a.expires);
                now += (uint64_t)to;
                zh_wheel_advance(&wheel, now);
                wakeups++;
                assert_true(wakeups < 400);
            }
            assert_int_equal(a.expires, now);
            /* Beyond the wheel's span the loop wakes at each ~4.6 h boundary; within it, at most
             * once per level. */
            if (delays[i] < WHEEL_SPAN)
                assert_true(wakeups <= ZH_WHEEL_LEVELS + 1);
        }
    }
}

/* ---- far future and big jumps ---- */

static void far_future_timers_beyond_wheel_span(void **state)
{
    (void)state;
    static const uint64_t when[] = {WHEEL_SPAN - 1,
                                    WHEEL_SPAN,
                                    WHEEL_SPAN + 1,
                                    UINT64_C(5) * 3600 * 1000, /* 5 h */
                                    UINT64_C(3) * 86400 * 1000 + 5,
                                    UINT64_C(3) * 86400 * 1000 + 6,
                                    (UINT64_C(1) << 40) + 3};
    enum { N = sizeof(when) / sizeof(when[0]) };
    struct tt x[N];
    memset(x, 0, sizeof(x));
    for (int i = 0; i < N; i++) {
        arm(&x[i], i, when[i]);
    }
    /* Step in irregular ~hour-sized chunks; each timer fires on the first advance past it. */
    rng_state = 7;
    uint64_t now = 0, prev = 0;
    while (now < UINT64_C(3) * 86400 * 1000 + 100) {
        prev = now;
        now += 1 + rnd_below(UINT64_C(7200000));
        int before = fire_log.n;
        zh_wheel_advance(&wheel, now);
        for (int k = before; k < fire_log.n; k++) {
            assert_true(fire_log.expires[k] <= now);
            assert_true(fire_log.expires[k] > prev);
        }
    }
    for (int i = 0; i < N - 1; i++) {
        assert_int_equal(1, x[i].fired);
    }
    assert_int_equal(0, x[N - 1].fired);
    assert_int_equal(1, zh_wheel_count(&wheel));
    assert_int_equal(0, zh_wheel_advance(&wheel, (UINT64_C(1) << 40) + 2));
    assert_int_equal(1, zh_wheel_advance(&wheel, (UINT64_C(1) << 40) + 3));
}

static void one_large_jump_fires_everything_in_order(void **state)
{
    (void)state;
    enum { N = 3000 };
    static struct tt x[N];
    memset(x, 0, sizeof(x));
    rng_state = 4242;
    for (int i = 0; i < N; i++) {
        arm(&x[i], i, 1 + rnd_below(UINT64_C(1) << (1 + rnd_below(36))));
    }
    assert_int_equal(N, zh_wheel_advance(&wheel, UINT64_C(1) << 37));
    for (int i = 1; i < N; i++) {
        assert_true(fire_log.expires[i - 1] <= fire_log.expires[i]);
    }
    assert_int_equal(0, zh_wheel_count(&wheel));
}

static void expiries_near_the_end_of_time(void **state)
{
    (void)state;
    struct tt a = {0}, b = {0};
    arm(&a, 1, UINT64_MAX);
    arm(&b, 2, UINT64_MAX - WHEEL_SPAN * 3);
    /* A jump across ~2^40 wheel spans must not step through each of them. */
    assert_int_equal(0, zh_wheel_advance(&wheel, UINT64_MAX - WHEEL_SPAN * 3 - 1));
    assert_int_equal(1, zh_wheel_advance(&wheel, UINT64_MAX - 1));
    assert_int_equal(1, b.fired);
    assert_int_equal(0, a.fired);
    assert_int_equal(1, zh_wheel_timeout(&wheel));
    assert_int_equal(1, zh_wheel_advance(&wheel, UINT64_MAX));
    assert_int_equal(1, a.fired);
    /* At the end of time an overdue timer still fires on the next advance. */
    arm(&a, 1, 5);
    assert_int_equal(1, zh_wheel_advance(&wheel, UINT64_MAX));
}

/* ---- callbacks that change the wheel ---- */

static int periodic_fires;
static uint64_t periodic_at[64];
static void periodic_cb(struct zh_timer *t, void *data)
{
    struct tt *x = data;
    periodic_at[periodic_fires++] = x->expires;
    if (periodic_fires < 10) {
        x->expires += 100;
        zh_wheel_add(&wheel, t, x->expires);
    }
}

static void callback_rearms_itself_periodically(void **state)
{
    (void)state;
    struct tt a = {0};
    periodic_fires = 0;
    zh_timer_init(&a.t, periodic_cb, &a);
    a.expires = 100;
    zh_wheel_add(&wheel, &a.t, 100);
    /* One advance covers all ten periods: each re-arm lands later in the same advance. */
    assert_int_equal(10, zh_wheel_advance(&wheel, 5000));
    assert_int_equal(10, periodic_fires);
    for (int i = 0; i < 10; i++) {
        assert_int_equal((uint64_t)(i + 1) * 100, periodic_at[i]);
    }
    assert_false(zh_timer_armed(&a.t));
}

static int same_time_fires;
static void rearm_same_time_cb(struct zh_timer *t, void *data)
{
    struct tt *x = data;
    same_time_fires++;
    zh_wheel_add(&wheel, t, x->expires); /* already due: must wait for the next advance */
}

static void callback_rearming_at_due_time_waits_for_next_advance(void **state)
{
    (void)state;
    struct tt a = {0};
    same_time_fires = 0;
    zh_timer_init(&a.t, rearm_same_time_cb, &a);
    a.expires = 300;
    zh_wheel_add(&wheel, &a.t, 300);
    assert_int_equal(1, zh_wheel_advance(&wheel, 300));
    assert_int_equal(1, same_time_fires);
    assert_true(zh_timer_armed(&a.t));
    assert_int_equal(0, zh_wheel_timeout(&wheel));
    assert_int_equal(1, zh_wheel_advance(&wheel, 300));
    assert_int_equal(2, same_time_fires);
    zh_wheel_del(&wheel, &a.t);
}

static int overdue_rearm_fires;
static void rearm_in_past_once_cb(struct zh_timer *t, void *data)
{
    struct tt *x = data;
    if (overdue_rearm_fires++ == 0) {
        x->expires = 5;
        zh_wheel_add(&wheel, t, 5);
    }
}

static void callback_rearming_overdue_fires_again_later_in_same_advance(void **state)
{
    (void)state;
    struct tt a = {0};
    overdue_rearm_fires = 0;
    zh_timer_init(&a.t, rearm_in_past_once_cb, &a);
    zh_wheel_add(&wheel, &a.t, 10);
    assert_int_equal(2, zh_wheel_advance(&wheel, 20));
    assert_int_equal(2, overdue_rearm_fires);
}

static struct tt victims[4];
static void delete_victims_cb(struct zh_timer *t, void *data)
{
    log_cb(t, data);
    for (int i = 0; i < 4; i++) {
        zh_wheel_del(&wheel, &victims[i].t);
    }
}

static void callback_deletes_other_due_timers(void **state)
{
    (void)state;
    struct tt killer = {0};
    memset(victims, 0, sizeof(victims));
    zh_timer_init(&killer.t, delete_victims_cb, &killer);
    killer.id = 99;
    killer.expires = 1000;
    /* Same slot, later in the same advance, in a higher level, and far away. */
    arm(&victims[0], 0, 1000);
    zh_wheel_add(&wheel, &killer.t, 1000);
    arm(&victims[1], 1, 1001);
    arm(&victims[2], 2, 70000);
    arm(&victims[3], 3, 100000000);
    assert_int_equal(1, zh_wheel_advance(&wheel, 200000000));
    assert_int_equal(1, fire_log.n);
    assert_int_equal(99, fire_log.id[0]);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(0, victims[i].fired);
    }
    assert_int_equal(0, zh_wheel_count(&wheel));
}

static struct tt spawned[3];
static void spawn_cb(struct zh_timer *t, void *data)
{
    log_cb(t, data);
    arm(&spawned[0], 10, 1010); /* later in this advance */
    arm(&spawned[1], 11, 1005); /* earlier than [0], still this advance */
    arm(&spawned[2], 12, 9000); /* after this advance */
}

static void callback_adds_timers_due_within_the_same_advance(void **state)
{
    (void)state;
    struct tt parent = {0};
    memset(spawned, 0, sizeof(spawned));
    zh_timer_init(&parent.t, spawn_cb, &parent);
    parent.id = 1;
    parent.expires = 1000;
    zh_wheel_add(&wheel, &parent.t, 1000);
    assert_int_equal(3, zh_wheel_advance(&wheel, 2000));
    assert_int_equal(3, fire_log.n);
    assert_int_equal(1, fire_log.id[0]);
    assert_int_equal(11, fire_log.id[1]);
    assert_int_equal(10, fire_log.id[2]);
    assert_int_equal(1, zh_wheel_count(&wheel));
    assert_int_equal(1, zh_wheel_advance(&wheel, 9000));
}

static void self_delete_cb(struct zh_timer *t, void *data)
{
    log_cb(t, data);
    zh_wheel_add(&wheel, t, 1 << 20);
    zh_wheel_del(&wheel, t);
}

static void callback_rearms_then_deletes_itself(void **state)
{
    (void)state;
    struct tt a = {0};
    zh_timer_init(&a.t, self_delete_cb, &a);
    zh_wheel_add(&wheel, &a.t, 10);
    assert_int_equal(1, zh_wheel_advance(&wheel, 10));
    assert_false(zh_timer_armed(&a.t));
    assert_int_equal(0, zh_wheel_count(&wheel));
    assert_int_equal(0, zh_wheel_advance(&wheel, 1 << 21));
}

/* ---- randomized against a reference ---- */

enum { RN = 10000 };
static struct rt {
    struct zh_timer t;
    uint64_t expires;
    bool armed;      /* reference: armed? */
    int armed_epoch; /* advance number at which it was (last) armed from inside a callback, or -1 */
    int fired;
} rts[RN];
static int epoch;             /* advance counter */
static uint64_t adv_prev;     /* the wheel time before the current advance */
static uint64_t adv_to;       /* the current advance target */
static uint64_t last_fired_e; /* order check within one advance */
static int rfired_this_advance;
static bool chaos;

static uint64_t random_delay(void)
{
    switch (rnd_below(8)) {
    case 0:
        return 0;
    case 1:
        return rnd_below(64);
    case 2:
        return rnd_below(4096);
    case 3:
        return rnd_below(300000);
    case 4:
        return rnd_below(WHEEL_SPAN);
    case 5:
        return rnd_below(WHEEL_SPAN * 8);
    case 6:
        return WHEEL_SPAN - 2 + rnd_below(5);
    default:
        return rnd_below(120000);
    }
}

static void ref_arm(struct rt *r, uint64_t expires, bool in_cb)
{
    r->expires = expires;
    r->armed = true;
    r->armed_epoch = in_cb ? epoch : -1;
    zh_wheel_add(&wheel, &r->t, expires);
}

static void ref_del(struct rt *r)
{
    r->armed = false;
    zh_wheel_del(&wheel, &r->t);
}

static void ref_cb(struct zh_timer *t, void *data)
{
    struct rt *r = data;
    assert_ptr_equal(&r->t, t);
    /* Fires exactly once per arming, never early. */
    assert_true(r->armed);
    assert_true(r->expires <= adv_to);
    r->armed = false;
    r->fired++;
    rfired_this_advance++;
    /* Timers armed before this advance fire earliest first. */
    if (r->armed_epoch != epoch) {
        assert_true(last_fired_e <= r->expires || r->expires <= adv_prev);
        if (r->expires > last_fired_e)
            last_fired_e = r->expires;
    }
    if (!chaos)
        return;
    /* Chaos: re-arm self, delete or move a random other timer. */
    uint64_t base = r->expires > adv_prev ? r->expires : adv_prev;
    switch (rnd_below(4)) {
    case 0:
        ref_arm(r, base + rnd_below(3000), true);
        break;
    case 1: {
        struct rt *o = &rts[rnd_below(RN)];
        if (o != r)
            ref_del(o);
        break;
    }
    case 2: {
        struct rt *o = &rts[rnd_below(RN)];
        ref_arm(o, base + random_delay(), true);
        break;
    }
    default:
        break;
    }
}

static void run_reference(uint64_t seed, bool with_chaos, int steps)
{
    rng_state = seed;
    chaos = with_chaos;
    memset(rts, 0, sizeof(rts));
    uint64_t now = UINT64_C(1000000000) + rnd_below(UINT64_C(1) << 30);
    zh_wheel_init(&wheel, now);
    epoch = 0;
    for (int i = 0; i < RN; i++) {
        zh_timer_init(&rts[i].t, ref_cb, &rts[i]);
        ref_arm(&rts[i], now + random_delay(), false);
    }
    for (int step = 0; step < steps; step++) {
        /* A few random changes between advances. */
        int changes = (int)rnd_below(20);
        for (int k = 0; k < changes; k++) {
            struct rt *r = &rts[rnd_below(RN)];
            uint64_t op = rnd_below(10);
            if (op < 6) {
                uint64_t d = random_delay();
                /* Some arms are overdue. */
                uint64_t e = rnd_below(8) == 0 ? now - rnd_below(1000) : now + d;
                ref_arm(r, e, false);
            } else {
                ref_del(r);
            }
        }

        /* Count and timeout agree with the reference. */
        uint64_t armed = 0, min_e = UINT64_MAX;
        for (int i = 0; i < RN; i++) {
            if (rts[i].armed) {
                armed++;
                if (rts[i].expires < min_e)
                    min_e = rts[i].expires;
            }
        }
        assert_int_equal(armed, zh_wheel_count(&wheel));
        int64_t to = zh_wheel_timeout(&wheel);
        if (armed == 0) {
            assert_int_equal(-1, to);
        } else {
            assert_true(to >= 0);
            if (min_e <= now)
                assert_int_equal(0, to);
            else
                assert_true(now + (uint64_t)to <= min_e);
        }

        /* Advance: sometimes to the timeout, sometimes by a random amount, sometimes not. */
        uint64_t next;
        switch (rnd_below(6)) {
        case 0:
            next = now;
            break;
        case 1:
            next = to >= 0 ? now + (uint64_t)to : now + 1;
            break;
        default:
            next = now + random_delay();
            break;
        }
        epoch++;
        adv_prev = now;
        adv_to = next;
        last_fired_e = 0;
        rfired_this_advance = 0;
        uint64_t fired = zh_wheel_advance(&wheel, next);
        assert_int_equal((uint64_t)rfired_this_advance, fired);
        now = next;

        /* Nothing armed before this advance and due by now may remain; timers a callback armed
         * already due may wait for the next advance, but no longer. */
        for (int i = 0; i < RN; i++) {
            if (rts[i].armed && rts[i].expires <= now)
                assert_int_equal(epoch, rts[i].armed_epoch);
        }
    }
    /* Drain: everything fires eventually, once. */
    epoch++;
    adv_prev = now;
    adv_to = UINT64_MAX;
    last_fired_e = 0;
    chaos = false;
    zh_wheel_advance(&wheel, UINT64_MAX);
    assert_int_equal(0, zh_wheel_count(&wheel));
    for (int i = 0; i < RN; i++) {
        assert_false(rts[i].armed);
    }
}

static void randomized_against_reference(void **state)
{
    (void)state;
    run_reference(0x9e3779b97f4a7c15u, false, 5000);
    run_reference(12345, false, 5000);
}

static void randomized_with_callbacks_changing_the_wheel(void **state)
{
    (void)state;
    run_reference(0xdeadbeefu, true, 5000);
    run_reference(777, true, 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(empty_wheel_has_no_timeout, setup),
        cmocka_unit_test_setup(init_timer_is_not_armed, setup),
        cmocka_unit_test_setup(timer_fires_at_expiry_not_before, setup),
        cmocka_unit_test_setup(timers_fire_in_expiry_order_across_levels, setup),
        cmocka_unit_test_setup(equal_expiries_all_fire_once, setup),
        cmocka_unit_test_setup(del_prevents_firing, setup),
        cmocka_unit_test_setup(add_on_armed_timer_moves_it, setup),
        cmocka_unit_test_setup(overdue_timer_fires_on_next_advance, setup),
        cmocka_unit_test_setup(overdue_timers_fire_sorted_by_expiry, setup),
        cmocka_unit_test_setup(time_never_goes_backwards, setup),
        cmocka_unit_test_setup(nonzero_start_time, setup),
        cmocka_unit_test_setup(timeout_is_exact_within_the_first_level, setup),
        cmocka_unit_test_setup(timeout_driven_loop_fires_exactly_on_time, setup),
        cmocka_unit_test_setup(far_future_timers_beyond_wheel_span, setup),
        cmocka_unit_test_setup(one_large_jump_fires_everything_in_order, setup),
        cmocka_unit_test_setup(expiries_near_the_end_of_time, setup),
        cmocka_unit_test_setup(callback_rearms_itself_periodically, setup),
        cmocka_unit_test_setup(callback_rearming_at_due_time_waits_for_next_advance, setup),
        cmocka_unit_test_setup(callback_rearming_overdue_fires_again_later_in_same_advance, setup),
        cmocka_unit_test_setup(callback_deletes_other_due_timers, setup),
        cmocka_unit_test_setup(callback_adds_timers_due_within_the_same_advance, setup),
        cmocka_unit_test_setup(callback_rearms_then_deletes_itself, setup),
        cmocka_unit_test_setup(randomized_against_reference, setup),
        cmocka_unit_test_setup(randomized_with_callbacks_changing_the_wheel, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
