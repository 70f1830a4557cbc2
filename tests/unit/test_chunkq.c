/* link: zh_rt */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <cmocka.h>

#include "shared/proto/err.h"
#include "shared/rt/chunkq.h"

#define CS 16 /* chunk size used by most tests: small, so boundaries are everywhere */

static struct zh_chunk_pool pool;
static struct zh_chunkq q;

static int setup(void **state)
{
    (void)state;
    zh_chunk_pool_init(&pool, CS, 2);
    zh_chunkq_init(&q, &pool, 4);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    zh_chunkq_free(&q);
    zh_chunk_pool_free(&pool);
    assert_int_equal(0, zh_chunk_pool_spare(&pool));
    return 0;
}

static void pattern(uint8_t *p, size_t n, size_t start)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)((start + i) * 31 + 7);
    }
}

/* Check that the queue holds exactly the pattern bytes [start, start + len). */
static void expect_pattern(size_t start, size_t len)
{
    uint8_t want[256], got[256];
    assert_true(len <= sizeof(want));
    pattern(want, len, start);
    assert_int_equal(len, zh_chunkq_len(&q));
    assert_int_equal(len, zh_chunkq_peek(&q, got, sizeof(got)));
    assert_memory_equal(want, got, len);
}

static void empty_queue(void **state)
{
    (void)state;
    struct iovec iov[4];
    uint8_t b[4];
    assert_int_equal(0, zh_chunkq_len(&q));
    assert_int_equal(4 * CS, zh_chunkq_space(&q));
    assert_int_equal(0, zh_chunkq_iov(&q, iov, 4));
    assert_int_equal(0, zh_chunkq_peek(&q, b, sizeof(b)));
    zh_chunkq_consume(&q, 0);
    assert_int_equal(0, zh_chunkq_len(&q));
}

static void zero_length_write_takes_no_chunk(void **state)
{
    (void)state;
    size_t nw = 99;
    assert_int_equal(0, zh_chunkq_write(&q, "", 0, &nw));
    assert_int_equal(0, nw);
    assert_int_equal(4 * CS, zh_chunkq_space(&q));
    assert_int_equal(0, zh_chunkq_len(&q));
}

static void fill_to_exact_bound(void **state)
{
    (void)state;
    uint8_t b[4 * CS];
    pattern(b, sizeof(b), 0);
    size_t nw = 0;
    assert_int_equal(0, zh_chunkq_write(&q, b, sizeof(b), &nw));
    assert_int_equal(sizeof(b), nw);
    assert_int_equal(4 * CS, zh_chunkq_len(&q));
    assert_int_equal(0, zh_chunkq_space(&q));
    expect_pattern(0, 4 * CS);
    /* One more byte does not fit. */
    assert_int_equal(ZH_E_FULL, zh_chunkq_write(&q, b, 1, &nw));
    assert_int_equal(0, nw);
    assert_int_equal(4 * CS, zh_chunkq_len(&q));
}

static void fill_in_small_pieces_to_exact_bound(void **state)
{
    (void)state;
    uint8_t b[7];
    size_t total = 0, nw;
    while (total + sizeof(b) <= 4 * CS) {
        pattern(b, sizeof(b), total);
        assert_int_equal(0, zh_chunkq_write(&q, b, sizeof(b), &nw));
        total += nw;
        assert_int_equal(4 * CS - total, zh_chunkq_space(&q));
    }
    pattern(b, sizeof(b), total);
    assert_int_equal(ZH_E_FULL, zh_chunkq_write(&q, b, sizeof(b), &nw));
    assert_int_equal(4 * CS - total, nw);
    total += nw;
    assert_int_equal(4 * CS, total);
    assert_int_equal(0, zh_chunkq_space(&q));
    expect_pattern(0, total);
}

static void oversized_write_is_partial(void **state)
{
    (void)state;
    uint8_t b[100];
    pattern(b, sizeof(b), 0);
    size_t nw = 0;
    assert_int_equal(ZH_E_FULL, zh_chunkq_write(&q, b, sizeof(b), &nw));
    assert_int_equal(4 * CS, nw);
    expect_pattern(0, 4 * CS);
}

static void partial_write_after_existing_data(void **state)
{
    (void)state;
    uint8_t b[100];
    pattern(b, sizeof(b), 0);
    size_t nw = 0;
    assert_int_equal(0, zh_chunkq_write(&q, b, 10, &nw));
    assert_int_equal(ZH_E_FULL, zh_chunkq_write(&q, b + 10, 60, &nw));
    assert_int_equal(4 * CS - 10, nw);
    expect_pattern(0, 4 * CS);
}

static void nwritten_may_be_null(void **state)
{
    (void)state;
    uint8_t b[100] = {0};
    assert_int_equal(0, zh_chunkq_write(&q, b, 3, NULL));
    assert_int_equal(ZH_E_FULL, zh_chunkq_write(&q, b, sizeof(b), NULL));
    assert_int_equal(4 * CS, zh_chunkq_len(&q));
}

static void zero_max_chunks_is_always_full(void **state)
{
    (void)state;
    struct zh_chunkq z;
    zh_chunkq_init(&z, &pool, 0);
    size_t nw = 5;
    assert_int_equal(0, zh_chunkq_space(&z));
    assert_int_equal(ZH_E_FULL, zh_chunkq_write(&z, "x", 1, &nw));
    assert_int_equal(0, nw);
    assert_int_equal(0, zh_chunkq_len(&z));
    zh_chunkq_free(&z);
}

static void iov_splits_at_chunk_boundaries(void **state)
{
    (void)state;
    uint8_t b[40];
    pattern(b, sizeof(b), 0);
    assert_int_equal(0, zh_chunkq_write(&q, b, sizeof(b), NULL));
    struct iovec iov[8];
    assert_int_equal(3, zh_chunkq_iov(&q, iov, 8));
    assert_int_equal(16, iov[0].iov_len);
    assert_int_equal(16, iov[1].iov_len);
    assert_int_equal(8, iov[2].iov_len);
    assert_memory_equal(b, iov[0].iov_base, 16);
    assert_memory_equal(b + 16, iov[1].iov_base, 16);
    assert_memory_equal(b + 32, iov[2].iov_base, 8);
    /* After consuming into the first chunk, the first iovec starts mid-chunk. */
    zh_chunkq_consume(&q, 5);
    assert_int_equal(3, zh_chunkq_iov(&q, iov, 8));
    assert_int_equal(11, iov[0].iov_len);
    assert_memory_equal(b + 5, iov[0].iov_base, 11);
    /* A short iovec array gets the front of the queue. */
    assert_int_equal(2, zh_chunkq_iov(&q, iov, 2));
    assert_memory_equal(b + 16, iov[1].iov_base, 16);
    assert_int_equal(1, zh_chunkq_iov(&q, iov, 1));
    assert_int_equal(0, zh_chunkq_iov(&q, iov, 0));
    /* Consuming exactly one chunk's worth drops it from the iovecs. */
    zh_chunkq_consume(&q, 11);
    assert_int_equal(2, zh_chunkq_iov(&q, iov, 8));
    assert_int_equal(16, iov[0].iov_len);
    assert_memory_equal(b + 16, iov[0].iov_base, 16);
}

static void iov_total_equals_len(void **state)
{
    (void)state;
    uint8_t b[53];
    pattern(b, sizeof(b), 0);
    assert_int_equal(0, zh_chunkq_write(&q, b, sizeof(b), NULL));
    zh_chunkq_consume(&q, 3);
    struct iovec iov[8];
    int n = zh_chunkq_iov(&q, iov, 8);
    size_t total = 0;
    uint8_t flat[64];
    for (int i = 0; i < n; i++) {
        memcpy(flat + total, iov[i].iov_base, iov[i].iov_len);
        total += iov[i].iov_len;
    }
    assert_int_equal(zh_chunkq_len(&q), total);
    assert_memory_equal(b + 3, flat, total);
}

static void peek_does_not_consume(void **state)
{
    (void)state;
    uint8_t b[40], got[64];
    pattern(b, sizeof(b), 0);
    assert_int_equal(0, zh_chunkq_write(&q, b, sizeof(b), NULL));
    assert_int_equal(20, zh_chunkq_peek(&q, got, 20));
    assert_memory_equal(b, got, 20);
    assert_int_equal(40, zh_chunkq_peek(&q, got, sizeof(got)));
    assert_memory_equal(b, got, 40);
    assert_int_equal(0, zh_chunkq_peek(&q, got, 0));
    assert_int_equal(40, zh_chunkq_len(&q));
    zh_chunkq_consume(&q, 17);
    assert_int_equal(23, zh_chunkq_peek(&q, got, sizeof(got)));
    assert_memory_equal(b + 17, got, 23);
}

static void consume_returns_chunks_to_pool_bounded(void **state)
{
    (void)state;
    uint8_t b[4 * CS];
    pattern(b, sizeof(b), 0);
    assert_int_equal(0, zh_chunkq_write(&q, b, sizeof(b), NULL));
    assert_int_equal(0, zh_chunk_pool_spare(&pool));
    /* Part of a chunk: nothing returns. */
    zh_chunkq_consume(&q, CS - 1);
    assert_int_equal(0, zh_chunk_pool_spare(&pool));
    /* The rest of it: one chunk returns. */
    zh_chunkq_consume(&q, 1);
    assert_int_equal(1, zh_chunk_pool_spare(&pool));
    /* Everything else: the pool keeps at most max_spare (2), the rest is freed. */
    zh_chunkq_consume(&q, 3 * CS);
    assert_int_equal(2, zh_chunk_pool_spare(&pool));
    assert_int_equal(0, zh_chunkq_len(&q));
    assert_int_equal(4 * CS, zh_chunkq_space(&q));
}

static void writes_reuse_spare_chunks(void **state)
{
    (void)state;
    uint8_t b[4 * CS];
    pattern(b, sizeof(b), 0);
    assert_int_equal(0, zh_chunkq_write(&q, b, sizeof(b), NULL));
    zh_chunkq_consume(&q, sizeof(b));
    assert_int_equal(2, zh_chunk_pool_spare(&pool));
    assert_int_equal(0, zh_chunkq_write(&q, b, 1, NULL));
    assert_int_equal(1, zh_chunk_pool_spare(&pool));
    assert_int_equal(0, zh_chunkq_write(&q, b + 1, CS, NULL));
    assert_int_equal(0, zh_chunk_pool_spare(&pool));
    expect_pattern(0, CS + 1);
}

static void consumed_head_room_is_not_space_until_chunk_frees(void **state)
{
    (void)state;
    uint8_t b[4 * CS];
    pattern(b, sizeof(b), 0);
    assert_int_equal(0, zh_chunkq_write(&q, b, sizeof(b), NULL));
    zh_chunkq_consume(&q, CS / 2);
    assert_int_equal(0, zh_chunkq_space(&q));
    assert_int_equal(ZH_E_FULL, zh_chunkq_write(&q, b, 1, NULL));
    zh_chunkq_consume(&q, CS / 2);
    assert_int_equal(CS, zh_chunkq_space(&q));
    size_t nw;
    assert_int_equal(ZH_E_FULL, zh_chunkq_write(&q, b, CS + 1, &nw));
    assert_int_equal(CS, nw);
}

static void fully_consumed_partial_chunk_is_released(void **state)
{
    (void)state;
    assert_int_equal(0, zh_chunkq_write(&q, "hello", 5, NULL));
    assert_int_equal(4 * CS - 5, zh_chunkq_space(&q));
    zh_chunkq_consume(&q, 5);
    assert_int_equal(1, zh_chunk_pool_spare(&pool));
    assert_int_equal(4 * CS, zh_chunkq_space(&q));
    assert_int_equal(0, zh_chunkq_write(&q, "abc", 3, NULL));
    uint8_t got[3];
    assert_int_equal(3, zh_chunkq_peek(&q, got, 3));
    assert_memory_equal("abc", got, 3);
}

static void free_returns_chunks_bounded(void **state)
{
    (void)state;
    struct zh_chunkq other;
    zh_chunkq_init(&other, &pool, 10);
    uint8_t b[10 * CS] = {0};
    assert_int_equal(0, zh_chunkq_write(&other, b, sizeof(b), NULL));
    zh_chunkq_free(&other);
    assert_int_equal(2, zh_chunk_pool_spare(&pool));
    assert_int_equal(0, zh_chunkq_len(&other));
    /* A freed queue is empty and usable again. */
    assert_int_equal(0, zh_chunkq_write(&other, "z", 1, NULL));
    assert_int_equal(1, zh_chunkq_len(&other));
    zh_chunkq_free(&other);
}

static void queues_share_one_pool(void **state)
{
    (void)state;
    struct zh_chunk_pool p;
    zh_chunk_pool_init(&p, 8, 3);
    struct zh_chunkq a, b;
    zh_chunkq_init(&a, &p, 2);
    zh_chunkq_init(&b, &p, 2);
    assert_int_equal(0, zh_chunkq_write(&a, "0123456789abcdef", 16, NULL));
    assert_int_equal(0, zh_chunkq_write(&b, "ABCDEFGHIJKLMNOP", 16, NULL));
    zh_chunkq_consume(&a, 16);
    assert_int_equal(2, zh_chunk_pool_spare(&p));
    /* b's refill takes a's old chunks. */
    zh_chunkq_consume(&b, 8);
    assert_int_equal(3, zh_chunk_pool_spare(&p));
    assert_int_equal(0, zh_chunkq_write(&b, "qrstuvwx", 8, NULL));
    assert_int_equal(2, zh_chunk_pool_spare(&p));
    uint8_t got[16];
    assert_int_equal(16, zh_chunkq_peek(&b, got, 16));
    assert_memory_equal("IJKLMNOPqrstuvwx", got, 16);
    zh_chunkq_free(&a);
    zh_chunkq_free(&b);
    assert_int_equal(3, zh_chunk_pool_spare(&p));
    zh_chunk_pool_free(&p);
}

static void big_chunks_single_chunk_queue(void **state)
{
    (void)state;
    struct zh_chunk_pool p;
    zh_chunk_pool_init(&p, 8192, 0);
    struct zh_chunkq one;
    zh_chunkq_init(&one, &p, 1);
    static uint8_t b[10000];
    pattern(b, sizeof(b), 0);
    size_t nw;
    assert_int_equal(ZH_E_FULL, zh_chunkq_write(&one, b, sizeof(b), &nw));
    assert_int_equal(8192, nw);
    struct iovec iov[2];
    assert_int_equal(1, zh_chunkq_iov(&one, iov, 2));
    assert_int_equal(8192, iov[0].iov_len);
    assert_memory_equal(b, iov[0].iov_base, 8192);
    zh_chunkq_consume(&one, 8192);
    /* max_spare 0: nothing is kept. */
    assert_int_equal(0, zh_chunk_pool_spare(&p));
    zh_chunkq_free(&one);
    zh_chunk_pool_free(&p);
}

/* Random interleaved writes and consumes against a reference byte stream. */
static uint64_t rng = 88172645463325252u;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void check_against_reference(const struct zh_chunkq *cq, const uint8_t *ref, size_t len)
{
    static uint8_t got[4096];
    assert_int_equal(len, zh_chunkq_len(cq));
    assert_int_equal(len, zh_chunkq_peek(cq, got, sizeof(got)));
    assert_memory_equal(ref, got, len);
    struct iovec iov[64];
    int n = zh_chunkq_iov(cq, iov, 64);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        assert_true(iov[i].iov_len > 0);
        assert_memory_equal(ref + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    assert_int_equal(len, off);
}

static void random_writes_and_consumes_match_reference(void **state)
{
    (void)state;
    for (size_t cs = 1; cs <= 64; cs = cs * 3 + 1) {
        struct zh_chunk_pool p;
        size_t max_spare = rnd() % 5;
        zh_chunk_pool_init(&p, cs, max_spare);
        size_t max_chunks = 1 + rnd() % 40;
        struct zh_chunkq cq;
        zh_chunkq_init(&cq, &p, max_chunks);
        size_t cap = cs * max_chunks;
        uint8_t *ref = malloc(cap + 1);
        assert_non_null(ref);
        size_t ref_len = 0;
        uint64_t counter = 0;
        for (int step = 0; step < 20000; step++) {
            if (rnd() % 2) {
                uint8_t buf[300];
                size_t want = rnd() % (rnd() % 4 == 0 ? sizeof(buf) : 20);
                for (size_t i = 0; i < want; i++) {
                    buf[i] = (uint8_t)(counter + i);
                }
                size_t space = zh_chunkq_space(&cq);
                size_t nw = 12345;
                int rc = zh_chunkq_write(&cq, buf, want, &nw);
                if (want <= space) {
                    assert_int_equal(0, rc);
                    assert_int_equal(want, nw);
                } else {
                    assert_int_equal(ZH_E_FULL, rc);
                    assert_int_equal(space, nw);
                    assert_int_equal(0, zh_chunkq_space(&cq));
                }
                memcpy(ref + ref_len, buf, nw);
                ref_len += nw;
                counter += nw;
            } else {
                size_t n = ref_len ? rnd() % (ref_len + 1) : 0;
                zh_chunkq_consume(&cq, n);
                memmove(ref, ref + n, ref_len - n);
                ref_len -= n;
            }
            assert_true(ref_len <= cap);
            assert_true(zh_chunk_pool_spare(&p) <= max_spare);
            /* Bytes queued plus free room never exceed the bound. */
            assert_true(ref_len + zh_chunkq_space(&cq) <= cap);
            if (step % 7 == 0)
                check_against_reference(&cq, ref, ref_len);
        }
        check_against_reference(&cq, ref, ref_len);
        zh_chunkq_free(&cq);
        assert_true(zh_chunk_pool_spare(&p) <= max_spare);
        zh_chunk_pool_free(&p);
        free(ref);
    }
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(empty_queue),
        T(zero_length_write_takes_no_chunk),
        T(fill_to_exact_bound),
        T(fill_in_small_pieces_to_exact_bound),
        T(oversized_write_is_partial),
        T(partial_write_after_existing_data),
        T(nwritten_may_be_null),
        T(zero_max_chunks_is_always_full),
        T(iov_splits_at_chunk_boundaries),
        T(iov_total_equals_len),
        T(peek_does_not_consume),
        T(consume_returns_chunks_to_pool_bounded),
        T(writes_reuse_spare_chunks),
        T(consumed_head_room_is_not_space_until_chunk_frees),
        T(fully_consumed_partial_chunk_is_released),
        T(free_returns_chunks_bounded),
        T(queues_share_one_pool),
        T(big_chunks_single_chunk_queue),
        T(random_writes_and_consumes_match_reference),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
