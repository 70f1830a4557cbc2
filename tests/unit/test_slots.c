/* link: zh_client */
/* client/slots.c: one limit for every worker; a slot given back wakes the waiting workers. */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include "client/slots.h"

static bool readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

static void test_limit_is_shared(void **state)
{
    (void)state;
    struct zh_slots *s = zh_slots_new(2, 4);
    assert_non_null(s);
    assert_true(zh_slots_take(s));
    assert_true(zh_slots_take(s));
    assert_false(zh_slots_take(s)); /* whichever worker asks */
    assert_int_equal(zh_slots_used(s), 2);
    zh_slots_put(s);
    assert_true(zh_slots_take(s));
    assert_int_equal(zh_slots_limit(s), 2);
    zh_slots_free(s);
}

static void test_put_wakes_only_waiting_workers(void **state)
{
    (void)state;
    struct zh_slots *s = zh_slots_new(1, 3);
    assert_true(zh_slots_take(s));
    zh_slots_set_waiting(s, 0, true);
    zh_slots_set_waiting(s, 2, true);
    zh_slots_put(s);
    assert_true(readable(zh_slots_fd(s, 0)));
    assert_false(readable(zh_slots_fd(s, 1)));
    assert_true(readable(zh_slots_fd(s, 2)));
    zh_slots_drain(s, 0);
    assert_false(readable(zh_slots_fd(s, 0)));
    zh_slots_set_waiting(s, 0, false);
    assert_true(zh_slots_take(s));
    zh_slots_drain(s, 2);
    zh_slots_put(s);
    assert_false(readable(zh_slots_fd(s, 0))); /* no longer waiting */
    assert_true(readable(zh_slots_fd(s, 2)));
    zh_slots_free(s);
}

struct race {
    struct zh_slots *s;
    unsigned over; /* times more than the limit were held */
};

static void *hammer(void *arg)
{
    struct race *r = arg;
    for (int i = 0; i < 100000; i++) {
        if (zh_slots_take(r->s)) {
            if (zh_slots_used(r->s) > zh_slots_limit(r->s))
                __atomic_fetch_add(&r->over, 1, __ATOMIC_RELAXED);
            zh_slots_put(r->s);
        }
    }
    return NULL;
}

static void test_never_more_than_the_limit_across_threads(void **state)
{
    (void)state;
    struct race r = {.s = zh_slots_new(3, 4)};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, hammer, &r);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(r.over, 0);
    assert_int_equal(zh_slots_used(r.s), 0);
    zh_slots_free(r.s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_is_shared),
        cmocka_unit_test(test_put_wakes_only_waiting_workers),
        cmocka_unit_test(test_never_more_than_the_limit_across_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
