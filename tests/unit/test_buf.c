/* link: zh_proto */
/* Unit tests for shared/proto/buf.c, mem.c and err.c: a zero struct zh_buf is usable, appends grow
 * the buffer and keep earlier bytes, insert moves the tail, printf formats without a NUL in len,
 * cstr terminates without counting, reset keeps memory, free leaves a reusable empty buffer, and
 * zh_strerror names both zhttpd codes and errno values. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/proto/buf.h"
#include "shared/proto/err.h"
#include "shared/proto/mem.h"

static void assert_buf_eq(const struct zh_buf *b, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(b->len, n);
    if (n) {
        assert_non_null(b->data);
        assert_memory_equal(b->data, s, n);
    }
    assert_true(b->cap >= b->len);
}

/* ---- zh_buf ---- */

static void zero_buffer_is_empty_and_cstr_is_empty_string(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    assert_int_equal(b.len, 0);
    assert_null(b.data);
    const char *s = zh_buf_cstr(&b);
    assert_non_null(s);
    assert_string_equal(s, "");
    assert_int_equal(b.len, 0);
    zh_buf_free(&b);
}

static void free_of_never_used_buffer_is_fine(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_buf_free(&b);
    zh_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
}

static void append_keeps_bytes_across_growth(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    uint8_t ref[10000];
    for (size_t i = 0; i < sizeof(ref); i++) {
        ref[i] = (uint8_t)(i * 7 + 3);
    }
    /* Odd-sized pieces so growth happens at every kind of boundary. */
    size_t off = 0;
    size_t step = 1;
    while (off < sizeof(ref)) {
        size_t n = ZH_MIN(step, sizeof(ref) - off);
        zh_buf_append(&b, ref + off, n);
        off += n;
        step = step * 3 + 1;
        assert_int_equal(b.len, off);
        assert_true(b.cap >= b.len);
        assert_memory_equal(b.data, ref, off);
    }
    zh_buf_free(&b);
}

static void append_of_zero_bytes_changes_nothing(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_buf_append(&b, NULL, 0);
    assert_int_equal(b.len, 0);
    zh_buf_puts(&b, "ab");
    zh_buf_append(&b, NULL, 0);
    zh_buf_puts(&b, "");
    assert_buf_eq(&b, "ab");
    zh_buf_free(&b);
}

static void putc_and_puts_append(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_buf_putc(&b, 'x');
    zh_buf_puts(&b, "yz");
    zh_buf_putc(&b, 0);
    zh_buf_putc(&b, 0xff);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "xyz\0\xff", 5);
    zh_buf_free(&b);
}

static void reserve_makes_room_without_changing_len(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_buf_puts(&b, "abc");
    zh_buf_reserve(&b, 1000);
    assert_int_equal(b.len, 3);
    assert_true(b.cap - b.len >= 1000);
    uint8_t *before = b.data;
    /* Room reserved: appending that much more must not move the data. */
    char fill[1000];
    memset(fill, 'q', sizeof(fill));
    zh_buf_append(&b, fill, sizeof(fill));
    assert_ptr_equal(b.data, before);
    assert_int_equal(b.len, 1003);
    assert_memory_equal(b.data, "abc", 3);
    zh_buf_reserve(&b, 0);
    assert_ptr_equal(b.data, before);
    zh_buf_free(&b);
}

static void reserve_zero_on_empty_buffer_allocates_for_cstr(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_buf_reserve(&b, 0);
    assert_non_null(b.data);
    assert_int_equal(b.len, 0);
    zh_buf_free(&b);
}

static void printf_formats_without_counting_the_nul(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_buf_printf(&b, "%d-%s", 42, "x");
    assert_buf_eq(&b, "42-x");
    zh_buf_printf(&b, "[%05u]", 7u);
    assert_buf_eq(&b, "42-x[00007]");
    zh_buf_free(&b);
}

static void printf_of_empty_result_appends_nothing(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_buf_puts(&b, "a");
    zh_buf_printf(&b, "%s", "");
    assert_buf_eq(&b, "a");
    zh_buf_free(&b);
}

static void printf_grows_for_long_output(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    char big[5000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    zh_buf_puts(&b, "<");
    zh_buf_printf(&b, "%s>", big);
    assert_int_equal(b.len, 1 + 4999 + 1);
    assert_int_equal(b.data[0], '<');
    assert_int_equal(b.data[1], 'z');
    assert_int_equal(b.data[4999], 'z');
    assert_int_equal(b.data[5000], '>');
    zh_buf_free(&b);
}

static void insert_at_start_middle_and_end(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_buf_puts(&b, "ace");
    zh_buf_insert(&b, 1, "b", 1);
    assert_buf_eq(&b, "abce");
    zh_buf_insert(&b, 3, "d", 1);
    assert_buf_eq(&b, "abcde");
    zh_buf_insert(&b, 0, "<<", 2);
    assert_buf_eq(&b, "<<abcde");
    zh_buf_insert(&b, b.len, ">>", 2);
    assert_buf_eq(&b, "<<abcde>>");
    zh_buf_insert(&b, 4, "", 0);
    assert_buf_eq(&b, "<<abcde>>");
    zh_buf_free(&b);
}

static void insert_into_empty_buffer(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_buf_insert(&b, 0, "hi", 2);
    assert_buf_eq(&b, "hi");
    zh_buf_free(&b);
}

static void insert_that_forces_growth_keeps_the_tail(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_buf_puts(&b, "head|tail");
    char mid[3000];
    memset(mid, 'm', sizeof(mid));
    zh_buf_insert(&b, 5, mid, sizeof(mid));
    assert_int_equal(b.len, 9 + sizeof(mid));
    assert_memory_equal(b.data, "head|", 5);
    assert_memory_equal(b.data + 5, mid, sizeof(mid));
    assert_memory_equal(b.data + 5 + sizeof(mid), "tail", 4);
    zh_buf_free(&b);
}

static void cstr_terminates_but_does_not_count_the_nul(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_buf_puts(&b, "abc");
    const char *s = zh_buf_cstr(&b);
    assert_string_equal(s, "abc");
    assert_int_equal(b.len, 3);
    /* Appending after cstr overwrites the NUL, and cstr again terminates the longer text. */
    zh_buf_puts(&b, "def");
    assert_string_equal(zh_buf_cstr(&b), "abcdef");
    assert_int_equal(b.len, 6);
    zh_buf_free(&b);
}

static void cstr_when_full_grows_for_the_nul(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_buf_reserve(&b, 1);
    size_t cap = b.cap;
    char fill[4096];
    memset(fill, 'f', sizeof(fill));
    zh_buf_append(&b, fill, cap); /* exactly full */
    assert_int_equal(b.len, b.cap);
    const char *s = zh_buf_cstr(&b);
    assert_int_equal(strlen(s), cap);
    assert_true(b.cap > b.len);
    zh_buf_free(&b);
}

static void reset_keeps_memory_and_forgets_contents(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_buf_puts(&b, "some text");
    uint8_t *p = b.data;
    size_t cap = b.cap;
    zh_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_ptr_equal(b.data, p);
    assert_int_equal(b.cap, cap);
    assert_string_equal(zh_buf_cstr(&b), "");
    zh_buf_puts(&b, "new");
    assert_buf_eq(&b, "new");
    zh_buf_free(&b);
}

static void free_leaves_a_reusable_empty_buffer(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_buf_puts(&b, "first life");
    zh_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    zh_buf_puts(&b, "second");
    assert_buf_eq(&b, "second");
    zh_buf_free(&b);
}

/* ---- mem ---- */

static void strdup_and_strndup_copy_and_terminate(void **state)
{
    (void)state;
    char *a = zh_strdup("hello");
    assert_string_equal(a, "hello");
    char *b = zh_strndup("hello world", 5);
    assert_string_equal(b, "hello");
    char *c = zh_strndup("x", 0);
    assert_string_equal(c, "");
    zh_free(a);
    zh_free(b);
    zh_free(c);
    zh_free(NULL);
}

static void zero_sized_allocations_return_usable_pointers(void **state)
{
    (void)state;
    void *a = zh_malloc(0);
    void *b = zh_calloc(0, 8);
    void *c = zh_calloc(8, 0);
    void *d = zh_realloc(NULL, 0);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_non_null(d);
    zh_free(a);
    zh_free(b);
    zh_free(c);
    zh_free(d);
}

static void calloc_zeroes_and_realloc_keeps_contents(void **state)
{
    (void)state;
    uint32_t *p = zh_calloc(16, sizeof(*p));
    for (int i = 0; i < 16; i++) {
        assert_int_equal(p[i], 0);
        p[i] = (uint32_t)i * 3u;
    }
    p = zh_realloc(p, 1024 * sizeof(*p));
    for (int i = 0; i < 16; i++) {
        assert_int_equal(p[i], (uint32_t)i * 3u);
    }
    zh_free(p);
}

static void container_of_finds_the_owner(void **state)
{
    (void)state;
    struct owner {
        int a;
        double b;
        char member;
    } o;
    char *m = &o.member;
    assert_ptr_equal(zh_container_of(m, struct owner, member), &o);
    assert_int_equal(ZH_ARRAY_SIZE((int[7]){0}), 7);
    assert_int_equal(ZH_MIN(3, 5), 3);
    assert_int_equal(ZH_MAX(3, 5), 5);
}

/* ---- err ---- */

static void strerror_names_every_zhttpd_code(void **state)
{
    (void)state;
#define CHECK_NAME(name, value, text) \
    assert_int_equal(name, value);    \
    assert_string_equal(zh_strerror(name), text);
    ZH_ERR_MAP(CHECK_NAME)
#undef CHECK_NAME
    assert_string_equal(zh_strerror(ZH_E_LOCKED), "already in use by another process");
}

static void strerror_names_negative_errno_values(void **state)
{
    (void)state;
    assert_string_equal(zh_strerror(-ENOENT), strerror(ENOENT));
    assert_string_equal(zh_strerror(-EAGAIN), strerror(EAGAIN));
    assert_string_equal(zh_strerror(-EHOSTUNREACH), strerror(EHOSTUNREACH));
}

static void strerror_of_unknown_codes_is_never_null(void **state)
{
    (void)state;
    const int codes[] = {0, 1, 12345, -4096, -9999, -10000, -10013, -20000, -2147483647 - 1};
    for (size_t i = 0; i < ZH_ARRAY_SIZE(codes); i++) {
        const char *s = zh_strerror(codes[i]);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
    }
    assert_string_equal(zh_strerror(-10013), "unknown error");
    assert_string_equal(zh_strerror(5), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(zero_buffer_is_empty_and_cstr_is_empty_string),
        cmocka_unit_test(free_of_never_used_buffer_is_fine),
        cmocka_unit_test(append_keeps_bytes_across_growth),
        cmocka_unit_test(append_of_zero_bytes_changes_nothing),
        cmocka_unit_test(putc_and_puts_append),
        cmocka_unit_test(reserve_makes_room_without_changing_len),
        cmocka_unit_test(reserve_zero_on_empty_buffer_allocates_for_cstr),
        cmocka_unit_test(printf_formats_without_counting_the_nul),
        cmocka_unit_test(printf_of_empty_result_appends_nothing),
        cmocka_unit_test(printf_grows_for_long_output),
        cmocka_unit_test(insert_at_start_middle_and_end),
        cmocka_unit_test(insert_into_empty_buffer),
        cmocka_unit_test(insert_that_forces_growth_keeps_the_tail),
        cmocka_unit_test(cstr_terminates_but_does_not_count_the_nul),
        cmocka_unit_test(cstr_when_full_grows_for_the_nul),
        cmocka_unit_test(reset_keeps_memory_and_forgets_contents),
        cmocka_unit_test(free_leaves_a_reusable_empty_buffer),
        cmocka_unit_test(strdup_and_strndup_copy_and_terminate),
        cmocka_unit_test(zero_sized_allocations_return_usable_pointers),
        cmocka_unit_test(calloc_zeroes_and_realloc_keeps_contents),
        cmocka_unit_test(container_of_finds_the_owner),
        cmocka_unit_test(strerror_names_every_zhttpd_code),
        cmocka_unit_test(strerror_names_negative_errno_values),
        cmocka_unit_test(strerror_of_unknown_codes_is_never_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
