/* link: zh_proto */
/* Unit tests for shared/proto/tnetstring.c: every type, containers and iteration, every malformed
 * form we know of, truncation at every prefix, depth bombs, and the encoder. Inputs are parsed from
 * the end of a page followed by a PROT_NONE guard page, so an over-read crashes the test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shared/proto/buf.h"
#include "shared/proto/err.h"
#include "shared/proto/tnetstring.h"

/* ---- guard-page helpers ---- */

struct guarded {
    uint8_t *map;
    size_t map_len;
    uint8_t *p; /* the copy, ending exactly at the guard page */
    size_t n;
};

static void guard_copy(struct guarded *g, const void *p, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (n + page - 1) / page;
    if (data_pages == 0)
        data_pages = 1;
    g->map_len = (data_pages + 1) * page;
    void *m = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    g->map = m;
    assert_int_equal(0, mprotect(g->map + data_pages * page, page, PROT_NONE));
    g->p = g->map + data_pages * page - n;
    if (n)
        memcpy(g->p, p, n);
    g->n = n;
}

static void guard_free(struct guarded *g)
{
    munmap(g->map, g->map_len);
}

/* Parse s (n bytes) from guarded memory. */
static int parse_n(const char *s, size_t n, struct zh_tns_value *v)
{
    struct guarded g;
    guard_copy(&g, s, n);
    int rc = zh_tns_parse(g.p, g.n, v);
    /* v points into the mapping; callers that look at it use parse_keep() instead. */
    guard_free(&g);
    return rc;
}

static int parse_s(const char *s)
{
    struct zh_tns_value v;
    return parse_n(s, strlen(s), &v);
}

static const uint8_t *u8(const char *s)
{
    return (const uint8_t *)s;
}

/* ---- scalars ---- */

static void parse_string_gives_payload_and_raw_span(void **state)
{
    (void)state;
    const char *s = "5:hello,rest";
    struct zh_tns_value v;
    assert_int_equal(0, zh_tns_parse(u8(s), strlen(s), &v));
    assert_int_equal(ZH_TNS_STRING, v.type);
    assert_int_equal(5, v.len);
    assert_memory_equal("hello", v.data, 5);
    assert_ptr_equal(u8(s), v.raw);
    assert_int_equal(8, v.raw_len);
    assert_true(zh_tns_str_eq(&v, "hello"));
    assert_false(zh_tns_str_eq(&v, "hell"));
}

static void parse_empty_string_is_valid(void **state)
{
    (void)state;
    struct zh_tns_value v;
    assert_int_equal(0, zh_tns_parse(u8("0:,"), 3, &v));
    assert_int_equal(ZH_TNS_STRING, v.type);
    assert_int_equal(0, v.len);
    assert_non_null(v.data);
    assert_true(zh_tns_str_eq(&v, ""));
}

static void parse_string_is_binary_safe(void **state)
{
    (void)state;
    const char s[] = "4:\0:,},";
    struct zh_tns_value v;
    assert_int_equal(0, zh_tns_parse(u8(s), sizeof s - 1, &v));
    assert_int_equal(ZH_TNS_STRING, v.type);
    assert_memory_equal("\0:,}", v.data, 4);
}

static void parse_int_values(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t v;
    } cases[] = {
        {"1:0#", 0},
        {"2:42#", 42},
        {"3:-17#", -17},
        {"2:-0#", 0},
        {"3:007#", 7},
        {"19:9223372036854775807#", INT64_MAX},
        {"20:-9223372036854775808#", INT64_MIN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct zh_tns_value v;
        assert_int_equal(0, zh_tns_parse(u8(cases[i].s), strlen(cases[i].s), &v));
        assert_int_equal(ZH_TNS_INT, v.type);
        assert_true(v.i == cases[i].v);
    }
}

static void parse_int_rejects_bad_text(void **state)
{
    (void)state;
    static const char *bad[] = {
        "0:#",
        "1:-#",
        "2:+1#",
        "2: 1#",
        "2:1 #",
        "3:1.5#",
        "2:0x#",
        "1:a#",
        "3:--1#",
        "2:1-#",
        "19:9223372036854775808#",  /* INT64_MAX + 1 */
        "20:-9223372036854775809#", /* INT64_MIN - 1 */
        "20:99999999999999999999#",
        "30:999999999999999999999999999999#",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(ZH_E_PARSE, parse_s(bad[i]));
}

static void parse_bool_exactly_true_or_false(void **state)
{
    (void)state;
    struct zh_tns_value v;
    assert_int_equal(0, zh_tns_parse(u8("4:true!"), 7, &v));
    assert_int_equal(ZH_TNS_BOOL, v.type);
    assert_true(v.b);
    assert_int_equal(0, zh_tns_parse(u8("5:false!"), 8, &v));
    assert_false(v.b);
    static const char *bad[] = {"4:True!",  "4:TRUE!",  "3:yes!",  "1:1!",     "0:!",
                                "5:truee!", "5:fals !", "4:fals!", "6:false !"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(ZH_E_PARSE, parse_s(bad[i]));
}

static void parse_null_only_empty(void **state)
{
    (void)state;
    struct zh_tns_value v;
    assert_int_equal(0, zh_tns_parse(u8("0:~"), 3, &v));
    assert_int_equal(ZH_TNS_NULL, v.type);
    assert_int_equal(ZH_E_PARSE, parse_s("1:x~"));
    assert_int_equal(ZH_E_PARSE, parse_s("4:null~"));
}

static void parse_float_accepts_decimal_forms(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        double v;
    } cases[] = {
        {"3:1.5^", 1.5},    {"4:-2.5^", -2.5},     {"1:3^", 3.0},     {"2:.5^", 0.5},
        {"2:5.^", 5.0},     {"5:1e+10^", 1e10},    {"4:1E-3^", 1e-3}, {"3:2e2^", 200.0},
        {"6:-0.0e0^", 0.0}, {"7:1.25e-1^", 0.125},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct zh_tns_value v;
        double d = -1;
        assert_int_equal(0, zh_tns_parse(u8(cases[i].s), strlen(cases[i].s), &v));
        assert_int_equal(ZH_TNS_FLOAT, v.type);
        assert_int_equal(0, zh_tns_float(&v, &d));
        assert_true(d == cases[i].v);
    }
}

static void parse_float_rejects_non_decimal(void **state)
{
    (void)state;
    static const char *bad[] = {"0:^",    "1:.^",   "1:-^",    "2:1e^",  "3:1e+^",
                                "3:inf^", "3:nan^", "4:0x10^", "2:+1^",  "3:1.2.^",
                                "2: 1^",  "3:1,5^", "2:e5^",   "4:1e5x^"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(ZH_E_PARSE, parse_s(bad[i]));
    /* Longer than ZH_TNS_MAX_FLOAT_LEN bytes of text. */
    char s[128];
    memset(s, '1', sizeof s);
    int k = snprintf(s, sizeof s, "%d:", ZH_TNS_MAX_FLOAT_LEN + 1);
    memset(s + k, '1', ZH_TNS_MAX_FLOAT_LEN + 1);
    s[k + ZH_TNS_MAX_FLOAT_LEN + 1] = '^';
    struct zh_tns_value v;
    assert_int_equal(ZH_E_PARSE, parse_n(s, (size_t)k + ZH_TNS_MAX_FLOAT_LEN + 2, &v));
}

static void float_accessor_rejects_other_types(void **state)
{
    (void)state;
    struct zh_tns_value v;
    double d = 7;
    assert_int_equal(0, zh_tns_parse(u8("1:1#"), 4, &v));
    assert_int_equal(ZH_E_TYPE, zh_tns_float(&v, &d));
    assert_true(d == 7);
}

/* ---- length prefixes and tags ---- */

static void parse_rejects_bad_length_prefixes(void **state)
{
    (void)state;
    static const char *bad[] = {
        ":abc,",   /* no digits */
        "a:b,",    /* not a digit */
        "01:a,",   /* leading zero */
        "00:,",    /* leading zero */
        "+1:a,",   /* sign */
        "-1:a,",   /* sign */
        " 1:a,",   /* space before */
        "1 :a,",   /* space after */
        "1;a,",    /* wrong separator */
        "5hello,", /* no colon */
        "0x1:a,",  /* hex */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(ZH_E_PARSE, parse_s(bad[i]));
}

static void parse_rejects_unknown_tags(void **state)
{
    (void)state;
    static const char *bad[] = {"5:hello;", "5:hello ", "1:a)", "1:a{", "0:[", "1:aa"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(ZH_E_PARSE, parse_s(bad[i]));
    struct zh_tns_value v;
    assert_int_equal(ZH_E_PARSE, parse_n("5:hello\0", 8, &v));
}

static void parse_rejects_ten_digit_lengths_as_too_large(void **state)
{
    (void)state;
    assert_int_equal(ZH_E_TOO_LARGE, parse_s("1000000000:x"));
    assert_int_equal(ZH_E_TOO_LARGE, parse_s("99999999999999999999999:"));
    /* A huge length inside a container is malformed no matter what. */
    assert_int_equal(ZH_E_TOO_LARGE, parse_s("12:1000000000:,]"));
}

static void parse_huge_length_that_does_not_fit_is_incomplete(void **state)
{
    (void)state;
    assert_int_equal(ZH_E_INCOMPLETE, parse_s("999999999:abc,"));
    assert_int_equal(ZH_E_INCOMPLETE, parse_s("999999999:"));
    assert_int_equal(ZH_E_INCOMPLETE, parse_s("6:hello,"));
}

static void parse_empty_input_is_incomplete(void **state)
{
    (void)state;
    struct zh_tns_value v;
    assert_int_equal(ZH_E_INCOMPLETE, parse_n("", 0, &v));
    assert_int_equal(ZH_E_INCOMPLETE, parse_s("1"));
    assert_int_equal(ZH_E_INCOMPLETE, parse_s("12"));
    assert_int_equal(ZH_E_INCOMPLETE, parse_s("123456789"));
    assert_int_equal(ZH_E_INCOMPLETE, parse_s("1:"));
    assert_int_equal(ZH_E_INCOMPLETE, parse_s("1:a"));
}

static void parse_exact_rejects_trailing_bytes(void **state)
{
    (void)state;
    struct zh_tns_value v;
    assert_int_equal(0, zh_tns_parse(u8("1:a,x"), 5, &v));
    assert_int_equal(4, v.raw_len);
    assert_int_equal(ZH_E_PARSE, zh_tns_parse_exact(u8("1:a,x"), 5, &v));
    assert_int_equal(0, zh_tns_parse_exact(u8("1:a,"), 4, &v));
    assert_int_equal(ZH_E_INCOMPLETE, zh_tns_parse_exact(u8("1:a"), 3, &v));
}

/* ---- containers ---- */

static void parse_list_and_iterate_items(void **state)
{
    (void)state;
    const char *s = "21:1:a,1:1#4:true!0:~0:]]";
    struct zh_tns_value v, it;
    struct zh_tns_iter i;
    assert_int_equal(0, zh_tns_parse_exact(u8(s), strlen(s), &v));
    assert_int_equal(ZH_TNS_LIST, v.type);
    zh_tns_iter_init(&i, &v);
    assert_true(zh_tns_list_next(&i, &it));
    assert_true(zh_tns_str_eq(&it, "a"));
    assert_true(zh_tns_list_next(&i, &it));
    assert_int_equal(ZH_TNS_INT, it.type);
    assert_int_equal(1, it.i);
    assert_true(zh_tns_list_next(&i, &it));
    assert_int_equal(ZH_TNS_BOOL, it.type);
    assert_true(it.b);
    assert_true(zh_tns_list_next(&i, &it));
    assert_int_equal(ZH_TNS_NULL, it.type);
    assert_true(zh_tns_list_next(&i, &it));
    assert_int_equal(ZH_TNS_LIST, it.type);
    assert_int_equal(0, it.len);
    assert_false(zh_tns_list_next(&i, &it));
    assert_false(zh_tns_list_next(&i, &it));
}

static void parse_empty_containers(void **state)
{
    (void)state;
    struct zh_tns_value v, k, x;
    struct zh_tns_iter i;
    assert_int_equal(0, zh_tns_parse_exact(u8("0:]"), 3, &v));
    assert_int_equal(ZH_TNS_LIST, v.type);
    zh_tns_iter_init(&i, &v);
    assert_false(zh_tns_list_next(&i, &x));
    assert_int_equal(0, zh_tns_parse_exact(u8("0:}"), 3, &v));
    assert_int_equal(ZH_TNS_DICT, v.type);
    zh_tns_iter_init(&i, &v);
    assert_false(zh_tns_dict_next(&i, &k, &x));
}

static void parse_dict_and_iterate_pairs(void **state)
{
    (void)state;
    const char *s = "30:1:a,1:b,3:num,2:42#1:l,4:1:x,]}";
    struct zh_tns_value v, k, x;
    struct zh_tns_iter i;
    assert_int_equal(0, zh_tns_parse_exact(u8(s), strlen(s), &v));
    assert_int_equal(ZH_TNS_DICT, v.type);
    zh_tns_iter_init(&i, &v);
    assert_true(zh_tns_dict_next(&i, &k, &x));
    assert_true(zh_tns_str_eq(&k, "a"));
    assert_true(zh_tns_str_eq(&x, "b"));
    assert_true(zh_tns_dict_next(&i, &k, &x));
    assert_true(zh_tns_str_eq(&k, "num"));
    assert_int_equal(42, x.i);
    assert_true(zh_tns_dict_next(&i, &k, &x));
    assert_true(zh_tns_str_eq(&k, "l"));
    assert_int_equal(ZH_TNS_LIST, x.type);
    assert_false(zh_tns_dict_next(&i, &k, &x));

    assert_true(zh_tns_dict_get(&v, "num", &x));
    assert_int_equal(42, x.i);
    assert_true(zh_tns_dict_get(&v, "l", &x));
    assert_int_equal(4, x.len);
    assert_false(zh_tns_dict_get(&v, "missing", &x));
    assert_false(zh_tns_dict_get(&x, "a", &k)); /* x is a list, not a dict */
}

static void parse_dict_rejects_non_string_keys(void **state)
{
    (void)state;
    assert_int_equal(ZH_E_PARSE, parse_s("8:1:1#1:a,}"));        /* int key */
    assert_int_equal(ZH_E_PARSE, parse_s("7:0:]1:a,}"));         /* list key */
    assert_int_equal(ZH_E_PARSE, parse_s("7:0:~1:a,}"));         /* null key */
    assert_int_equal(ZH_E_PARSE, parse_s("14:1:a,1:b,0:}0:,}")); /* dict key in 2nd pair */
    /* Nested dicts are checked too. */
    assert_int_equal(ZH_E_PARSE, parse_s("15:1:d,8:1:1#1:a,}}"));
}

static void parse_dict_rejects_odd_item_count(void **state)
{
    (void)state;
    assert_int_equal(ZH_E_PARSE, parse_s("4:1:a,}"));
    assert_int_equal(ZH_E_PARSE, parse_s("12:1:a,1:b,1:c,}"));
    assert_int_equal(ZH_E_PARSE, parse_s("11:1:x,4:1:a,}]")); /* odd dict inside a list */
}

static void parse_rejects_child_overrunning_container(void **state)
{
    (void)state;
    assert_int_equal(ZH_E_PARSE, parse_s("6:4:abc,]"));  /* child wants one byte more */
    assert_int_equal(ZH_E_PARSE, parse_s("7:3:abc,X]")); /* junk after the child */
    assert_int_equal(ZH_E_PARSE, parse_s("2:12]"));      /* child prefix runs into the end */
    assert_int_equal(ZH_E_PARSE, parse_s("3:12:]"));     /* child length past the container */
}

static void parse_rejects_bad_scalar_inside_container(void **state)
{
    (void)state;
    assert_int_equal(ZH_E_PARSE, parse_s("5:2:+1#]"));
    assert_int_equal(ZH_E_PARSE, parse_s("11:1:k,4:True!}"));
    assert_int_equal(ZH_E_PARSE, parse_s("4:1:x~]"));
    assert_int_equal(ZH_E_PARSE, parse_s("6:3:inf^]"));
}

static void build_nested(char *out, size_t cap, size_t depth)
{
    /* depth nested lists around "0:~": each layer adds "<len>:" and "]". */
    struct zh_buf b = {0};
    zh_tns_put_null(&b);
    for (size_t i = 0; i < depth; i++) {
        struct zh_buf o = {0};
        zh_tns_put_prefix(&o, b.len);
        zh_buf_append(&o, b.data, b.len);
        zh_buf_putc(&o, ']');
        zh_buf_free(&b);
        b = o;
    }
    assert_true(b.len < cap);
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    zh_buf_free(&b);
}

static void parse_depth_limit_is_exact(void **state)
{
    (void)state;
    char s[512];
    struct zh_tns_value v;
    build_nested(s, sizeof s, ZH_TNS_MAX_DEPTH);
    assert_int_equal(0, zh_tns_parse_exact(u8(s), strlen(s), &v));
    build_nested(s, sizeof s, ZH_TNS_MAX_DEPTH + 1);
    assert_int_equal(ZH_E_TOO_DEEP, zh_tns_parse_exact(u8(s), strlen(s), &v));
}

static void parse_depth_bomb_is_refused(void **state)
{
    (void)state;
    /* 100000 nested lists around "0:]". Layer k is "<len of layer k-1>:" + layer k-1 + "]", so
     * the text is every prefix, outermost first, then "0:]", then the closing tags. */
    enum { DEPTH = 100000 };
    size_t *enc = malloc(DEPTH * sizeof *enc);
    assert_non_null(enc);
    enc[0] = 3;
    for (size_t k = 1; k < DEPTH; k++)
        enc[k] = (size_t)snprintf(NULL, 0, "%zu:", enc[k - 1]) + enc[k - 1] + 1;
    struct zh_buf b = {0};
    for (size_t k = DEPTH - 1; k >= 1; k--)
        zh_buf_printf(&b, "%zu:", enc[k - 1]);
    zh_buf_append(&b, "0:]", 3);
    for (size_t k = 1; k < DEPTH; k++)
        zh_buf_putc(&b, ']');
    assert_int_equal(enc[DEPTH - 1], b.len);

    struct guarded g;
    guard_copy(&g, b.data, b.len);
    struct zh_tns_value v;
    assert_int_equal(ZH_E_TOO_DEEP, zh_tns_parse(g.p, g.n, &v));
    /* Truncated, the same bomb is merely incomplete: the outer length is checked first. */
    assert_int_equal(ZH_E_INCOMPLETE, zh_tns_parse(g.p, g.n - 1, &v));
    guard_free(&g);
    zh_buf_free(&b);
    free(enc);
}

static void parse_dict_bomb_is_refused(void **state)
{
    (void)state;
    /* {"a": {"a": ...}} nested 40 deep. */
    struct zh_buf b = {0};
    zh_buf_append(&b, "0:}", 3);
    for (int i = 0; i < 40; i++) {
        struct zh_buf o = {0};
        zh_tns_put_prefix(&o, b.len + 4);
        zh_buf_append(&o, "1:a,", 4);
        zh_buf_append(&o, b.data, b.len);
        zh_buf_putc(&o, '}');
        zh_buf_free(&b);
        b = o;
    }
    struct zh_tns_value v;
    assert_int_equal(ZH_E_TOO_DEEP, zh_tns_parse(b.data, b.len, &v));
    zh_buf_free(&b);
}

static void parse_every_prefix_is_incomplete(void **state)
{
    (void)state;
    static const char *vals[] = {
        "5:hello,",
        "19:9223372036854775807#",
        "4:true!",
        "3:1.5^",
        "0:~",
        "54:23:2:id,5:0-0-1,3:seq,1:5#}23:2:id,5:1-3-a,3:seq,1:2#}]",
        "48:4:from,6:zhttpd,3:ext,15:5:multi,4:true!}1:l,0:]}",
    };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        size_t n = strlen(vals[i]);
        struct zh_tns_value v;
        assert_int_equal(0, parse_n(vals[i], n, &v));
        for (size_t k = 0; k < n; k++)
            assert_int_equal(ZH_E_INCOMPLETE, parse_n(vals[i], k, &v));
    }
}

static void parse_raw_span_covers_nested_value(void **state)
{
    (void)state;
    const char *s = "20:1:k,12:1:a,1:b,1:c,]}";
    struct zh_tns_value v, x;
    assert_int_equal(0, zh_tns_parse_exact(u8(s), strlen(s), &v));
    assert_true(zh_tns_dict_get(&v, "k", &x));
    assert_int_equal(16, x.raw_len);
    assert_memory_equal("12:1:a,1:b,1:c,]", x.raw, 16);
    assert_int_equal(']', x.raw[x.raw_len - 1]);
}

static void iter_on_scalar_yields_nothing(void **state)
{
    (void)state;
    struct zh_tns_value v, x, k;
    struct zh_tns_iter i;
    assert_int_equal(0, zh_tns_parse(u8("1:a,"), 4, &v));
    zh_tns_iter_init(&i, &v);
    assert_false(zh_tns_list_next(&i, &x));
    zh_tns_iter_init(&i, &v);
    assert_false(zh_tns_dict_next(&i, &k, &x));
}

static void iter_stops_on_corrupt_bytes(void **state)
{
    (void)state;
    /* A hand-made value that did not come from zh_tns_parse(): the iterator still stays in
     * bounds and stops instead of trusting it. */
    const char *bad = "1:a,zz";
    struct zh_tns_value c = {.type = ZH_TNS_LIST, .data = u8(bad), .len = strlen(bad)};
    struct zh_tns_value x, k;
    struct zh_tns_iter i;
    zh_tns_iter_init(&i, &c);
    assert_true(zh_tns_list_next(&i, &x));
    assert_false(zh_tns_list_next(&i, &x));
    const char *odd = "1:a,";
    struct zh_tns_value d = {.type = ZH_TNS_DICT, .data = u8(odd), .len = 4};
    zh_tns_iter_init(&i, &d);
    assert_false(zh_tns_dict_next(&i, &k, &x));
    const char *intkey = "1:1#1:a,";
    struct zh_tns_value d2 = {.type = ZH_TNS_DICT, .data = u8(intkey), .len = 8};
    zh_tns_iter_init(&i, &d2);
    assert_false(zh_tns_dict_next(&i, &k, &x));
}

/* ---- encoder ---- */

static void encode_scalars(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_tns_put_str(&b, "hello", 5);
    zh_tns_put_cstr(&b, "");
    zh_tns_put_int(&b, 42);
    zh_tns_put_int(&b, -17);
    zh_tns_put_int(&b, 0);
    zh_tns_put_bool(&b, true);
    zh_tns_put_bool(&b, false);
    zh_tns_put_null(&b);
    zh_tns_put_raw(&b, "1:x,", 4);
    const char *want = "5:hello,0:,2:42#3:-17#1:0#4:true!5:false!0:~1:x,";
    assert_int_equal(strlen(want), b.len);
    assert_memory_equal(want, b.data, b.len);
    zh_buf_free(&b);
}

static void encode_int_extremes_round_trip(void **state)
{
    (void)state;
    static const int64_t vals[] = {0,  1,   -1,        9,         10,        -10,
                                   99, 100, 123456789, INT64_MAX, INT64_MIN, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        struct zh_buf b = {0};
        struct zh_tns_value v;
        zh_tns_put_int(&b, vals[i]);
        assert_int_equal(zh_tns_int_size(vals[i]), b.len);
        assert_int_equal(0, zh_tns_parse_exact(b.data, b.len, &v));
        assert_int_equal(ZH_TNS_INT, v.type);
        assert_true(v.i == vals[i]);
        zh_buf_free(&b);
    }
    struct zh_buf b = {0};
    zh_tns_put_int(&b, INT64_MIN);
    assert_memory_equal("20:-9223372036854775808#", b.data, b.len);
    zh_buf_free(&b);
}

static void encode_float_round_trips(void **state)
{
    (void)state;
    static const double vals[] = {
        0.0, 1.5, -2.25, 0.1, 1e100, -1e-300, 3.141592653589793, 123456789.125, 5e-324};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        struct zh_buf b = {0};
        struct zh_tns_value v;
        double d = 0;
        zh_tns_put_float(&b, vals[i]);
        assert_int_equal(0, zh_tns_parse_exact(b.data, b.len, &v));
        assert_int_equal(ZH_TNS_FLOAT, v.type);
        assert_int_equal(0, zh_tns_float(&v, &d));
        assert_true(d == vals[i]);
        zh_buf_free(&b);
    }
    struct zh_buf b = {0};
    zh_tns_put_float(&b, 1.5);
    assert_memory_equal("3:1.5^", b.data, b.len);
    zh_buf_free(&b);
}

static void encode_containers_with_begin_end(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    size_t d = zh_tns_begin(&b);
    zh_tns_put_cstr(&b, "a");
    size_t l = zh_tns_begin(&b);
    zh_tns_put_cstr(&b, "x");
    zh_tns_put_int(&b, 1);
    zh_tns_end(&b, l, ZH_TNS_LIST);
    zh_tns_put_cstr(&b, "e");
    size_t e = zh_tns_begin(&b);
    zh_tns_end(&b, e, ZH_TNS_DICT);
    zh_tns_end(&b, d, ZH_TNS_DICT);
    const char *want = "22:1:a,8:1:x,1:1#]1:e,0:}}";
    assert_int_equal(strlen(want), b.len);
    assert_memory_equal(want, b.data, b.len);
    struct zh_tns_value v, x;
    assert_int_equal(0, zh_tns_parse_exact(b.data, b.len, &v));
    assert_true(zh_tns_dict_get(&v, "a", &x));
    assert_int_equal(ZH_TNS_LIST, x.type);
    zh_buf_free(&b);
}

static void encode_container_after_existing_bytes(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_buf_putc(&b, 'T');
    size_t m = zh_tns_begin(&b);
    for (int i = 0; i < 20; i++)
        zh_tns_put_cstr(&b, "abcdefgh");
    zh_tns_end(&b, m, ZH_TNS_LIST);
    assert_int_equal('T', b.data[0]);
    assert_memory_equal("220:", b.data + 1, 4);
    struct zh_tns_value v;
    assert_int_equal(0, zh_tns_parse_exact(b.data + 1, b.len - 1, &v));
    zh_buf_free(&b);
}

static void encode_prefix_and_sizes_agree(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 9, 10, 99, 100, 999, 1000, 123456};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        struct zh_buf b = {0};
        zh_tns_put_prefix(&b, lens[i]);
        assert_int_equal(zh_tns_size(lens[i]), b.len + lens[i] + 1);
        zh_buf_free(&b);
    }
}

static void encode_binary_string_round_trips(void **state)
{
    (void)state;
    uint8_t bytes[256];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)i;
    struct zh_buf b = {0};
    struct zh_tns_value v;
    zh_tns_put_str(&b, bytes, sizeof bytes);
    assert_int_equal(0, zh_tns_parse_exact(b.data, b.len, &v));
    assert_int_equal(sizeof bytes, v.len);
    assert_memory_equal(bytes, v.data, sizeof bytes);
    zh_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_string_gives_payload_and_raw_span),
        cmocka_unit_test(parse_empty_string_is_valid),
        cmocka_unit_test(parse_string_is_binary_safe),
        cmocka_unit_test(parse_int_values),
        cmocka_unit_test(parse_int_rejects_bad_text),
        cmocka_unit_test(parse_bool_exactly_true_or_false),
        cmocka_unit_test(parse_null_only_empty),
        cmocka_unit_test(parse_float_accepts_decimal_forms),
        cmocka_unit_test(parse_float_rejects_non_decimal),
        cmocka_unit_test(float_accessor_rejects_other_types),
        cmocka_unit_test(parse_rejects_bad_length_prefixes),
        cmocka_unit_test(parse_rejects_unknown_tags),
        cmocka_unit_test(parse_rejects_ten_digit_lengths_as_too_large),
        cmocka_unit_test(parse_huge_length_that_does_not_fit_is_incomplete),
        cmocka_unit_test(parse_empty_input_is_incomplete),
        cmocka_unit_test(parse_exact_rejects_trailing_bytes),
        cmocka_unit_test(parse_list_and_iterate_items),
        cmocka_unit_test(parse_empty_containers),
        cmocka_unit_test(parse_dict_and_iterate_pairs),
        cmocka_unit_test(parse_dict_rejects_non_string_keys),
        cmocka_unit_test(parse_dict_rejects_odd_item_count),
        cmocka_unit_test(parse_rejects_child_overrunning_container),
        cmocka_unit_test(parse_rejects_bad_scalar_inside_container),
        cmocka_unit_test(parse_depth_limit_is_exact),
        cmocka_unit_test(parse_depth_bomb_is_refused),
        cmocka_unit_test(parse_dict_bomb_is_refused),
        cmocka_unit_test(parse_every_prefix_is_incomplete),
        cmocka_unit_test(parse_raw_span_covers_nested_value),
        cmocka_unit_test(iter_on_scalar_yields_nothing),
        cmocka_unit_test(iter_stops_on_corrupt_bytes),
        cmocka_unit_test(encode_scalars),
        cmocka_unit_test(encode_int_extremes_round_trip),
        cmocka_unit_test(encode_float_round_trips),
        cmocka_unit_test(encode_containers_with_begin_end),
        cmocka_unit_test(encode_container_after_existing_bytes),
        cmocka_unit_test(encode_prefix_and_sizes_agree),
        cmocka_unit_test(encode_binary_string_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
