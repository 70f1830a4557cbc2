/* link: zh_rt */
/* Unit tests for shared/rt/zmsg.c: frames stored back to back, growth from any starting capacity,
 * prefix + payload frames, the frame limit, copies that are independent of the original, and the
 * socket names used in logs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "shared/proto/err.h"
#include "shared/proto/mem.h"
#include "shared/rt/zmsg.h"

static void assert_frame(const struct zh_zmsg *m, uint32_t i, const char *want)
{
    assert_true(i < m->nframes);
    struct zh_span f = zh_zmsg_frame(m, i);
    assert_int_equal(f.n, strlen(want));
    if (f.n) {
        assert_memory_equal(f.p, want, f.n);
    }
}

static void new_message_is_empty(void **state)
{
    (void)state;
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_S_OUT, 100);
    assert_non_null(m);
    assert_null(m->next);
    assert_int_equal(m->sock, ZH_ZS_S_OUT);
    assert_int_equal(m->nframes, 0);
    assert_int_equal(m->size, 0);
    assert_int_equal(m->cap, 100);
    zh_zmsg_free(m);
}

static void frames_are_stored_back_to_back(void **state)
{
    (void)state;
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_C_REQ, 256);
    assert_int_equal(zh_zmsg_add(&m, "peer", 4), 0);
    assert_int_equal(zh_zmsg_add(&m, "", 0), 0);
    assert_int_equal(zh_zmsg_add(&m, "T0:}", 4), 0);
    assert_int_equal(m->nframes, 3);
    assert_int_equal(m->size, 8);
    assert_frame(m, 0, "peer");
    assert_frame(m, 1, "");
    assert_frame(m, 2, "T0:}");
    assert_int_equal(m->frames[0].off, 0);
    assert_int_equal(m->frames[1].off, 4);
    assert_int_equal(m->frames[2].off, 4);
    assert_memory_equal(m->data, "peerT0:}", 8);
    zh_zmsg_free(m);
}

static void message_grows_from_zero_capacity(void **state)
{
    (void)state;
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_S_IN, 0);
    assert_int_equal(m->cap, 0);
    assert_int_equal(zh_zmsg_add(&m, "abc", 3), 0);
    assert_true(m->cap >= 3);
    assert_frame(m, 0, "abc");
    zh_zmsg_free(m);
}

static void growth_keeps_earlier_frames(void **state)
{
    (void)state;
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_S_OUT_STREAM, 4);
    static char big[200000];
    memset(big, 'b', sizeof(big));
    assert_int_equal(zh_zmsg_add(&m, "id-1", 4), 0);
    assert_int_equal(zh_zmsg_add(&m, big, sizeof(big)), 0);
    assert_int_equal(zh_zmsg_add(&m, "tail", 4), 0);
    assert_true(m->cap >= m->size);
    assert_int_equal(m->size, 4 + sizeof(big) + 4);
    assert_frame(m, 0, "id-1");
    struct zh_span f = zh_zmsg_frame(m, 1);
    assert_int_equal(f.n, sizeof(big));
    assert_memory_equal(f.p, big, sizeof(big));
    assert_frame(m, 2, "tail");
    zh_zmsg_free(m);
}

static void many_small_frames_grow_step_by_step(void **state)
{
    (void)state;
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_C_IN, 1);
    char want[ZH_ZMSG_MAX_FRAMES][40];
    for (int i = 0; i < ZH_ZMSG_MAX_FRAMES; i++) {
        memset(want[i], 'a' + i, (size_t)(i * 2 + 1));
        want[i][i * 2 + 1] = '\0';
        assert_int_equal(zh_zmsg_add(&m, want[i], strlen(want[i])), 0);
    }
    for (int i = 0; i < ZH_ZMSG_MAX_FRAMES; i++) {
        assert_frame(m, (uint32_t)i, want[i]);
    }
    zh_zmsg_free(m);
}

static void add2_joins_prefix_and_payload_in_one_frame(void **state)
{
    (void)state;
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_C_OUT, 8);
    assert_int_equal(zh_zmsg_add2(&m, "req1 ", 5, "T0:}", 4), 0);
    assert_int_equal(zh_zmsg_add2(&m, "", 0, "only-b", 6), 0);
    assert_int_equal(zh_zmsg_add2(&m, "only-a", 6, NULL, 0), 0);
    assert_int_equal(m->nframes, 3);
    assert_frame(m, 0, "req1 T0:}");
    assert_frame(m, 1, "only-b");
    assert_frame(m, 2, "only-a");
    zh_zmsg_free(m);
}

static void frame_past_the_limit_is_refused_and_leaves_the_message_intact(void **state)
{
    (void)state;
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_C_REQ, 0);
    for (int i = 0; i < ZH_ZMSG_MAX_FRAMES; i++) {
        assert_int_equal(zh_zmsg_add(&m, "f", 1), 0);
    }
    struct zh_zmsg *before = m;
    assert_int_equal(zh_zmsg_add(&m, "x", 1), ZH_E_TOO_LARGE);
    assert_int_equal(zh_zmsg_add2(&m, "x", 1, "y", 1), ZH_E_TOO_LARGE);
    assert_ptr_equal(m, before);
    assert_int_equal(m->nframes, ZH_ZMSG_MAX_FRAMES);
    assert_int_equal(m->size, ZH_ZMSG_MAX_FRAMES);
    zh_zmsg_free(m);
}

static void frame_larger_than_4gib_is_refused_without_reading_it(void **state)
{
    (void)state;
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_S_OUT, 16);
    assert_int_equal(zh_zmsg_add(&m, "abc", 3), 0);
    static const char one = 'x';
    /* The sizes are checked before any byte is copied: a 1-byte buffer is safe to pass. */
    assert_int_equal(zh_zmsg_add(&m, &one, (size_t)UINT32_MAX), ZH_E_TOO_LARGE);
    assert_int_equal(
        zh_zmsg_add2(&m, &one, (size_t)UINT32_MAX / 2 + 1, &one, (size_t)UINT32_MAX / 2),
        ZH_E_TOO_LARGE);
    assert_int_equal(m->nframes, 1);
    assert_int_equal(m->size, 3);
    zh_zmsg_free(m);
}

static void dup_is_an_independent_copy(void **state)
{
    (void)state;
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_S_IN, 64);
    struct zh_zmsg *other = zh_zmsg_new(ZH_ZS_S_IN, 0);
    m->next = other; /* a queue link must not be copied */
    assert_int_equal(zh_zmsg_add(&m, "zhttpd T0:}", 11), 0);
    assert_int_equal(zh_zmsg_add(&m, "second", 6), 0);
    struct zh_zmsg *c = zh_zmsg_dup(m);
    assert_ptr_not_equal(c, m);
    assert_null(c->next);
    assert_int_equal(c->sock, ZH_ZS_S_IN);
    assert_int_equal(c->nframes, 2);
    assert_int_equal(c->size, m->size);
    assert_frame(c, 0, "zhttpd T0:}");
    assert_frame(c, 1, "second");
    /* Changing or freeing the original leaves the copy alone. */
    m->data[0] = 'Z';
    zh_zmsg_free(m);
    assert_frame(c, 0, "zhttpd T0:}");
    /* The copy is a full message: it can grow. */
    assert_int_equal(zh_zmsg_add(&c, "third", 5), 0);
    assert_frame(c, 1, "second");
    assert_frame(c, 2, "third");
    zh_zmsg_free(c);
    zh_zmsg_free(other);
}

static void dup_of_an_empty_message(void **state)
{
    (void)state;
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_C_IN, 0);
    struct zh_zmsg *c = zh_zmsg_dup(m);
    assert_int_equal(c->nframes, 0);
    assert_int_equal(c->size, 0);
    assert_int_equal(zh_zmsg_add(&c, "x", 1), 0);
    assert_frame(c, 0, "x");
    zh_zmsg_free(m);
    zh_zmsg_free(c);
    zh_zmsg_free(NULL);
}

static void every_socket_has_a_name(void **state)
{
    (void)state;
    const char *want[ZH_ZS_COUNT] = {
        [ZH_ZS_C_IN] = "client-in",   [ZH_ZS_C_IN_STREAM] = "client-in-stream",
        [ZH_ZS_C_OUT] = "client-out", [ZH_ZS_C_REQ] = "client-req",
        [ZH_ZS_S_OUT] = "server-out", [ZH_ZS_S_OUT_STREAM] = "server-out-stream",
        [ZH_ZS_S_IN] = "server-in",   [ZH_ZS_S_REQ] = "server-req",
    };
    for (int s = 0; s < ZH_ZS_COUNT; s++) {
        assert_string_equal(zh_zsock_name((enum zh_zsock)s), want[s]);
    }
    assert_string_equal(zh_zsock_name(ZH_ZS_COUNT), "?");
    assert_string_equal(zh_zsock_name((enum zh_zsock) - 1), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(new_message_is_empty),
        cmocka_unit_test(frames_are_stored_back_to_back),
        cmocka_unit_test(message_grows_from_zero_capacity),
        cmocka_unit_test(growth_keeps_earlier_frames),
        cmocka_unit_test(many_small_frames_grow_step_by_step),
        cmocka_unit_test(add2_joins_prefix_and_payload_in_one_frame),
        cmocka_unit_test(frame_past_the_limit_is_refused_and_leaves_the_message_intact),
        cmocka_unit_test(frame_larger_than_4gib_is_refused_without_reading_it),
        cmocka_unit_test(dup_is_an_independent_copy),
        cmocka_unit_test(dup_of_an_empty_message),
        cmocka_unit_test(every_socket_has_a_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
