/* link: zh_proto */
/* Unit tests for shared/proto/http1: request heads, framing, chunked bodies, response heads.
 *
 * Inputs are copied right before a PROT_NONE page, so a read past the end crashes (picohttpparser
 * test.c does the same), and incremental parses get a fresh heap copy per call, so a span left
 * pointing into an old copy is a use-after-free under ASan. */
#include "shared/proto/http1.h"
#include "shared/proto/mem.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#define S(lit)    lit, sizeof(lit) - 1
#define MAX_HEAD  8192
#define MAX_HDRS  32
#define GUARD_BUF (64 * 1024)

static char *guard_region; /* GUARD_BUF usable bytes, then one PROT_NONE page */
static size_t page_size;

static int group_setup(void **state)
{
    (void)state;
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    guard_region = mmap(NULL, GUARD_BUF + page_size, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (guard_region == MAP_FAILED)
        return -1;
    if (mprotect(guard_region + GUARD_BUF, page_size, PROT_NONE) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    munmap(guard_region, GUARD_BUF + page_size);
    return 0;
}

/* Copy s[0..n) so that it ends right at the guard page. */
static const char *guarded(const char *s, size_t n)
{
    assert_true(n <= GUARD_BUF);
    char *p = guard_region + GUARD_BUF - n;
    memcpy(p, s, n);
    return p;
}

static int span_is(struct zh_http1_span s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

static void assert_span(struct zh_http1_span s, const char *want)
{
    if (!span_is(s, want))
        fail_msg("span \"%.*s\" != \"%s\"", (int)s.len, s.p, want);
}

/* One-shot parse of s[0..n) placed against the guard page. */
static int parse_guarded(const char *s, size_t n, size_t max_head, struct zh_http1_req *req,
                         struct zh_http1_header *h, size_t *nh)
{
    zh_http1_req_init(req);
    return zh_http1_parse_request(req, guarded(s, n), n, max_head, h, nh);
}

/* Parse s[0..n) fed one more byte per call, each call on a fresh heap copy. Returns the last
 * result; *calls counts the calls made. */
static int parse_bytewise(const char *s, size_t n, size_t max_head, struct zh_http1_req *req,
                          struct zh_http1_header *h, size_t *nh, char **keep)
{
    size_t cap = *nh;
    int r = ZH_PARSE_INCOMPLETE;
    char *copy = NULL;
    zh_http1_req_init(req);
    for (size_t i = 1; i <= n; i++) {
        free(copy);
        copy = malloc(i);
        assert_non_null(copy);
        memcpy(copy, s, i);
        *nh = cap;
        r = zh_http1_parse_request(req, copy, i, max_head, h, nh);
        if (r != ZH_PARSE_INCOMPLETE)
            break;
    }
    *keep = copy; /* the spans point here */
    return r;
}

/* ---------------------------------------------------------------------------------------- */
/* Valid request heads */

struct valid_case {
    const char *raw;
    size_t len;
    size_t head_len; /* 0: all of raw */
    const char *method, *target;
    int minor;
    enum zh_http1_target_form form;
    const char *fields[8]; /* name, value pairs */
};

static const struct valid_case valid_cases[] = {
    {S("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
     0,
     "GET",
     "/",
     1,
     ZH_HTTP1_ORIGIN_FORM,
     {"Host", "example.com"}},
    {S("POST /submit?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"),
     57,
     "POST",
     "/submit?x=1",
     1,
     ZH_HTTP1_ORIGIN_FORM,
     {"Host", "a", "Content-Length", "5"}},
    {S("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
     58,
     "POST",
     "/up",
     1,
     ZH_HTTP1_ORIGIN_FORM,
     {"Host", "a", "Transfer-Encoding", "chunked"}},
    {S("GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n"),
     0,
     "GET",
     "http://example.com/x?y",
     1,
     ZH_HTTP1_ABSOLUTE_FORM,
     {"Host", "example.com"}},
    {S("GET /index.html HTTP/1.0\r\n\r\n"),
     0,
     "GET",
     "/index.html",
     0,
     ZH_HTTP1_ORIGIN_FORM,
     {NULL}},
    {S("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
     0,
     "GET",
     "/",
     1,
     ZH_HTTP1_ORIGIN_FORM,
     {"Host", "a"}},
    {S("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
     0,
     "OPTIONS",
     "*",
     1,
     ZH_HTTP1_ASTERISK_FORM,
     {"Host", "a"}},
    {S("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
     0,
     "CONNECT",
     "example.com:443",
     1,
     ZH_HTTP1_AUTHORITY_FORM,
     {"Host", "example.com:443"}},
    {S("CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"),
     0,
     "CONNECT",
     "[::1]:8080",
     1,
     ZH_HTTP1_AUTHORITY_FORM,
     {"Host", "[::1]:8080"}},
    {S("GET / HTTP/1.1\r\nHost:   a  \t\r\nX-Empty:\r\nX-Blank: \t \r\nX-Tab: a\tb\r\n\r\n"),
     0,
     "GET",
     "/",
     1,
     ZH_HTTP1_ORIGIN_FORM,
     {"Host", "a", "X-Empty", "", "X-Blank", "", "X-Tab", "a\tb"}},
    {S("GET / HTTP/1.1\r\nHost: a\r\nX-Utf8: caf\xc3\xa9 \xff\x80\r\n\r\n"),
     0,
     "GET",
     "/",
     1,
     ZH_HTTP1_ORIGIN_FORM,
     {"Host", "a", "X-Utf8", "caf\xc3\xa9 \xff\x80"}},
    {S("GET / HTTP/1.1\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\tfoo bar baz quux "
       "0123456789abcdef\r\nHost: a\r\n\r\n"),
     0,
     "GET",
     "/",
     1,
     ZH_HTTP1_ORIGIN_FORM,
     {"User-Agent", "Mozilla/5.0 (X11; Linux x86_64)\tfoo bar baz quux 0123456789abcdef", "Host",
      "a"}},
    {S("M-SEARCH /x HTTP/1.1\r\nHost: a\r\n\r\n"),
     0,
     "M-SEARCH",
     "/x",
     1,
     ZH_HTTP1_ORIGIN_FORM,
     {"Host", "a"}},
    {S("get /a/b;c?d=e&f=%20#frag~!$'()*+,:@[]{}|^`\\\"<> HTTP/1.1\r\nHost: a\r\n\r\n"),
     0,
     "get",
     "/a/b;c?d=e&f=%20#frag~!$'()*+,:@[]{}|^`\\\"<>",
     1,
     ZH_HTTP1_ORIGIN_FORM,
     {"Host", "a"}},
    {S("PUT //double HTTP/1.1\r\nhost: a\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n"),
     0,
     "PUT",
     "//double",
     1,
     ZH_HTTP1_ORIGIN_FORM,
     {"host", "a", "!#$%&'*+-.^_`|~09azAZ", "v"}},
    {S("GET svn+ssh.1-x://h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
     0,
     "GET",
     "svn+ssh.1-x://h/",
     1,
     ZH_HTTP1_ABSOLUTE_FORM,
     {"Host", "h"}},
};

static void check_valid(const struct valid_case *c, const struct zh_http1_req *req,
                        const struct zh_http1_header *h, size_t nh, int r)
{
    size_t head_len = c->head_len ? c->head_len : c->len;
    if (r != (int)head_len)
        fail_msg("\"%s\": got %d (%s), want %zu", c->raw, r, zh_http1_strerror(req->err), head_len);
    assert_int_equal(req->head_len, head_len);
    if (c->method)
        assert_span(req->method, c->method);
    if (c->target)
        assert_span(req->target, c->target);
    assert_int_equal(req->minor_version, c->minor);
    assert_int_equal(req->target_form, c->form);
    size_t want = 0;
    while (want < 4 && c->fields[2 * want])
        want++;
    if (c->fields[0] || c->method)
        assert_int_equal(nh, want);
    for (size_t i = 0; i < want; i++) {
        assert_span(h[i].name, c->fields[2 * i]);
        assert_span(h[i].value, c->fields[2 * i + 1]);
    }
}

static void parse_accepts_valid_requests(void **state)
{
    (void)state;
    for (size_t i = 0; i < ZH_ARRAY_SIZE(valid_cases); i++) {
        const struct valid_case *c = &valid_cases[i];
        struct zh_http1_req req;
        struct zh_http1_header h[MAX_HDRS];
        size_t nh = MAX_HDRS;
        int r = parse_guarded(c->raw, c->len, MAX_HEAD, &req, h, &nh);
        check_valid(c, &req, h, nh, r);
    }
}

static void parse_every_prefix_is_incomplete(void **state)
{
    (void)state;
    for (size_t i = 0; i < ZH_ARRAY_SIZE(valid_cases); i++) {
        const struct valid_case *c = &valid_cases[i];
        size_t head_len = c->head_len ? c->head_len : c->len;
        for (size_t n = 0; n < head_len; n++) {
            struct zh_http1_req req;
            struct zh_http1_header h[MAX_HDRS];
            size_t nh = MAX_HDRS;
            int r = parse_guarded(c->raw, n, MAX_HEAD, &req, h, &nh);
            if (r != ZH_PARSE_INCOMPLETE)
                fail_msg("case %zu prefix %zu: got %d (%s)", i, n, r, zh_http1_strerror(req.err));
        }
    }
}

static void parse_resumes_on_a_moving_buffer(void **state)
{
    (void)state;
    for (size_t i = 0; i < ZH_ARRAY_SIZE(valid_cases); i++) {
        const struct valid_case *c = &valid_cases[i];
        struct zh_http1_req req;
        struct zh_http1_header h[MAX_HDRS];
        size_t nh = MAX_HDRS;
        char *keep;
        int r = parse_bytewise(c->raw, c->len, MAX_HEAD, &req, h, &nh, &keep);
        check_valid(c, &req, h, nh, r);
        free(keep);
    }
}

static void parse_resumes_in_random_pieces(void **state)
{
    (void)state;
    const struct valid_case *c = &valid_cases[9];
    srand(1234);
    for (int iter = 0; iter < 200; iter++) {
        struct zh_http1_req req;
        struct zh_http1_header h[MAX_HDRS];
        size_t nh, len = 0;
        int r = ZH_PARSE_INCOMPLETE;
        char *copy = NULL;
        zh_http1_req_init(&req);
        while (r == ZH_PARSE_INCOMPLETE) {
            len += 1 + (size_t)rand() % 12;
            if (len > c->len)
                len = c->len;
            free(copy);
            copy = malloc(len);
            memcpy(copy, c->raw, len);
            nh = MAX_HDRS;
            r = zh_http1_parse_request(&req, copy, len, MAX_HEAD, h, &nh);
        }
        check_valid(c, &req, h, nh, r);
        free(copy);
    }
}

static void parse_pipelined_requests(void **state)
{
    (void)state;
    static const char two[] = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
                              "POST /b HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nxyz"
                              "GET /c HTTP/1.0\r\n\r\n";
    const char *p = guarded(two, sizeof(two) - 1), *end = p + sizeof(two) - 1;
    struct zh_http1_req req;
    struct zh_http1_header h[MAX_HDRS];
    struct zh_http1_framing f;
    size_t nh = MAX_HDRS;

    zh_http1_req_init(&req);
    int r = zh_http1_parse_request(&req, p, (size_t)(end - p), MAX_HEAD, h, &nh);
    assert_int_equal(r, 28);
    assert_span(req.target, "/a");
    assert_int_equal(zh_http1_req_framing(&req, h, nh, &f), 0);
    assert_int_equal(f.body, ZH_HTTP1_BODY_NONE);
    assert_true(f.flags & ZH_HTTP1_F_KEEP_ALIVE);
    p += r;

    zh_http1_req_init(&req);
    nh = MAX_HDRS;
    r = zh_http1_parse_request(&req, p, (size_t)(end - p), MAX_HEAD, h, &nh);
    assert_true(r > 0);
    assert_span(req.target, "/b");
    assert_int_equal(zh_http1_req_framing(&req, h, nh, &f), 0);
    assert_int_equal(f.body, ZH_HTTP1_BODY_LENGTH);
    assert_int_equal(f.content_length, 3);
    assert_span(f.host, "b");
    p += r;
    assert_memory_equal(p, "xyz", 3);
    p += f.content_length;

    zh_http1_req_init(&req);
    nh = MAX_HDRS;
    r = zh_http1_parse_request(&req, p, (size_t)(end - p), MAX_HEAD, h, &nh);
    assert_int_equal(r, end - p);
    assert_span(req.target, "/c");
    assert_int_equal(req.minor_version, 0);
    assert_int_equal(nh, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Malformed request heads */

struct bad_case {
    const char *raw;
    size_t len;
    enum zh_http1_err err;
};

#define HL "GET / HTTP/1.1\r\n"

static const struct bad_case bad_cases[] = {
    /* method */
    {S("G@T / HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_METHOD},
    {S(" GET / HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_METHOD},
    {S("GET\t/ HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_METHOD},
    {S("GET\r\n\r\n"), ZH_HTTP1_E_BAD_METHOD},
    {S("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), ZH_HTTP1_E_BAD_METHOD}, /* TLS hello */
    {S("\x16"), ZH_HTTP1_E_BAD_METHOD},
    {S("G\xc3\xa9T / HTTP/1.1\r\n"), ZH_HTTP1_E_BAD_METHOD},
    /* target */
    {S("GET  / HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("GET \r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("GET /a b HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("GET /a\tb HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("GET /\x01 HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("GET /\x7f HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("GET /0123456789abcdef\x7f HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("GET /\0 HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("CONNECT / HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("CONNECT example.com HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("CONNECT example.com: HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("CONNECT :443 HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("CONNECT u@h:443 HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("CONNECT [::1 HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("CONNECT []:1 HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("CONNECT [::1]x HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("GET example.com/x HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("GET 1http://x HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("GET http HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    {S("GET ?x HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_TARGET},
    /* version */
    {S("GET /\r\n\r\n"), ZH_HTTP1_E_BAD_VERSION},
    {S("GET / HTTP/1.1 \r\n\r\n"), ZH_HTTP1_E_BAD_VERSION},
    {S("GET / http/1.1\r\n\r\n"), ZH_HTTP1_E_BAD_VERSION},
    {S("GET / HTTP/1\r\n\r\n"), ZH_HTTP1_E_BAD_VERSION},
    {S("GET / HTTP/1.10\r\n\r\n"), ZH_HTTP1_E_BAD_VERSION},
    {S("GET / HTTP/1,1\r\n\r\n"), ZH_HTTP1_E_BAD_VERSION},
    {S("GET / HTTP/x.1\r\n\r\n"), ZH_HTTP1_E_BAD_VERSION},
    {S("GET / HTTP/1.x\r\n\r\n"), ZH_HTTP1_E_BAD_VERSION},
    {S("GET / HTTP/1.1\x00\r\n\r\n"), ZH_HTTP1_E_BAD_VERSION},
    {S("GET / \r\n\r\n"), ZH_HTTP1_E_BAD_VERSION},
    {S("GET / HTTP/2.0\r\n\r\n"), ZH_HTTP1_E_VERSION_NOT_SUPPORTED},
    {S("GET / HTTP/1.2\r\n\r\n"), ZH_HTTP1_E_VERSION_NOT_SUPPORTED},
    {S("GET / HTTP/0.9\r\n\r\n"), ZH_HTTP1_E_VERSION_NOT_SUPPORTED},
    {S("GET / HTTP/3.0\r\n\r\n"), ZH_HTTP1_E_VERSION_NOT_SUPPORTED},
    {S("PRI * HTTP/2.1\r\n\r\n"), ZH_HTTP1_E_VERSION_NOT_SUPPORTED},
    {S("PRI / HTTP/2.0\r\n\r\n"), ZH_HTTP1_E_VERSION_NOT_SUPPORTED},
    {S("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), ZH_HTTP1_E_H2_PREFACE},
    /* line endings */
    {S("GET / HTTP/1.1\n\n"), ZH_HTTP1_E_BARE_LF},
    {S("\nGET / HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BARE_LF},
    {S("\r\n\nGET / HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BARE_LF},
    {S(HL "Host: a\n\r\n"), ZH_HTTP1_E_BARE_LF},
    {S(HL "Host: a\r\n\n"), ZH_HTTP1_E_BARE_LF},
    {S(HL "\n"), ZH_HTTP1_E_BARE_LF},
    {S("GET / HTTP/1.1\rHost: a\r\n\r\n"), ZH_HTTP1_E_BARE_CR},
    {S("\rGET / HTTP/1.1\r\n\r\n"), ZH_HTTP1_E_BARE_CR},
    {S(HL "Host: a\rb\r\n\r\n"), ZH_HTTP1_E_BARE_CR},
    {S(HL "Host: a\r\n\rx"), ZH_HTTP1_E_BARE_CR},
    {S(HL "Host: a\r\r\n\r\n"), ZH_HTTP1_E_BARE_CR},
    /* field names */
    {S(HL "Ho(st: a\r\n\r\n"), ZH_HTTP1_E_BAD_FIELD_NAME},
    {S(HL ": a\r\n\r\n"), ZH_HTTP1_E_BAD_FIELD_NAME},
    {S(HL "Foo Bar: a\r\n\r\n"), ZH_HTTP1_E_BAD_FIELD_NAME},
    {S(HL "Host a\r\n\r\n"), ZH_HTTP1_E_BAD_FIELD_NAME},
    {S(HL "H\xc3\xa9: a\r\n\r\n"), ZH_HTTP1_E_BAD_FIELD_NAME},
    {S(HL "\x01: a\r\n\r\n"), ZH_HTTP1_E_BAD_FIELD_NAME},
    {S(HL "Host : a\r\n\r\n"), ZH_HTTP1_E_SPACE_BEFORE_COLON},
    {S(HL "Host\t: a\r\n\r\n"), ZH_HTTP1_E_SPACE_BEFORE_COLON},
    {S(HL "Content-Length  \t : 5\r\n\r\n"), ZH_HTTP1_E_SPACE_BEFORE_COLON},
    {S(HL "Host\r\n\r\n"), ZH_HTTP1_E_MISSING_COLON},
    {S(HL "Host\n\r\n"), ZH_HTTP1_E_MISSING_COLON},
    /* folding */
    {S(HL "Host: a\r\n folded\r\n\r\n"), ZH_HTTP1_E_OBS_FOLD},
    {S(HL "Host: a\r\n\tfolded\r\n\r\n"), ZH_HTTP1_E_OBS_FOLD},
    {S(HL " Host: a\r\n\r\n"), ZH_HTTP1_E_OBS_FOLD},
    /* field values */
    {S(HL "X: a\x00b\r\n\r\n"), ZH_HTTP1_E_BAD_FIELD_VALUE},
    {S(HL "X: a\x7f\r\n\r\n"), ZH_HTTP1_E_BAD_FIELD_VALUE},
    {S(HL "X: a\x1b[31m\r\n\r\n"), ZH_HTTP1_E_BAD_FIELD_VALUE},
    {S(HL "X: 0123456789abc\x00rest of a long value\r\n\r\n"), ZH_HTTP1_E_BAD_FIELD_VALUE},
    {S(HL "X: 0123456789abcdef0123456789\x7f\r\n\r\n"), ZH_HTTP1_E_BAD_FIELD_VALUE},
    {S(HL "X: 0123456\t89abcdef01234\x0b\r\n\r\n"), ZH_HTTP1_E_BAD_FIELD_VALUE},
};

static void parse_rejects_malformed_requests(void **state)
{
    (void)state;
    for (size_t i = 0; i < ZH_ARRAY_SIZE(bad_cases); i++) {
        const struct bad_case *c = &bad_cases[i];
        struct zh_http1_req req;
        struct zh_http1_header h[MAX_HDRS];
        size_t nh = MAX_HDRS;
        int r = parse_guarded(c->raw, c->len, MAX_HEAD, &req, h, &nh);
        if (r != ZH_PARSE_ERROR || req.err != c->err)
            fail_msg("case %zu \"%s\": got %d err %s, want %s", i, c->raw, r,
                     zh_http1_strerror(req.err), zh_http1_strerror(c->err));
    }
}

static void parse_bytewise_finds_the_same_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < ZH_ARRAY_SIZE(bad_cases); i++) {
        const struct bad_case *c = &bad_cases[i];
        struct zh_http1_req req;
        struct zh_http1_header h[MAX_HDRS];
        size_t nh = MAX_HDRS;
        char *keep;
        int r = parse_bytewise(c->raw, c->len, MAX_HEAD, &req, h, &nh, &keep);
        free(keep);
        if (r != ZH_PARSE_ERROR || req.err != c->err)
            fail_msg("case %zu \"%s\": got %d err %s, want %s", i, c->raw, r,
                     zh_http1_strerror(req.err), zh_http1_strerror(c->err));
    }
}

static void parse_limits_field_count(void **state)
{
    (void)state;
    static const char three[] = HL "A: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    static const char four[] = HL "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    struct zh_http1_req req;
    struct zh_http1_header h[3];
    size_t nh = 3;
    assert_int_equal(parse_guarded(S(three), MAX_HEAD, &req, h, &nh), sizeof(three) - 1);
    assert_int_equal(nh, 3);
    nh = 3;
    assert_int_equal(parse_guarded(S(four), MAX_HEAD, &req, h, &nh), ZH_PARSE_ERROR);
    assert_int_equal(req.err, ZH_HTTP1_E_TOO_MANY_HEADERS);
    /* Decided as soon as the fourth line starts. */
    nh = 3;
    assert_int_equal(
        parse_guarded(four, sizeof(HL "A: 1\r\nB: 2\r\nC: 3\r\nD"), MAX_HEAD, &req, h, &nh),
        ZH_PARSE_ERROR);
    nh = 0;
    assert_int_equal(parse_guarded(S("GET / HTTP/1.0\r\n\r\n"), MAX_HEAD, &req, h, &nh), 18);
}

static void parse_limits_tell_414_from_431(void **state)
{
    (void)state;
    char big[600];
    struct zh_http1_req req;
    struct zh_http1_header h[MAX_HDRS];
    size_t nh = MAX_HDRS;

    /* A request line longer than the limit: 414, once the limit is reached. */
    memcpy(big, "GET /", 5);
    memset(big + 5, 'a', sizeof(big) - 5);
    assert_int_equal(parse_guarded(big, 99, 100, &req, h, &nh), ZH_PARSE_INCOMPLETE);
    assert_int_equal(parse_guarded(big, 100, 100, &req, h, &nh), ZH_PARSE_ERROR);
    assert_int_equal(req.err, ZH_HTTP1_E_URI_TOO_LONG);
    assert_int_equal(zh_http1_err_status(req.err), 414);
    assert_int_equal(parse_guarded(big, sizeof(big), 100, &req, h, &nh), ZH_PARSE_ERROR);
    assert_int_equal(req.err, ZH_HTTP1_E_URI_TOO_LONG);

    /* A short request line, then fields past the limit: 431. */
    int n = snprintf(big, sizeof(big), HL "Host: a\r\nX: %0400d\r\n\r\n", 0);
    assert_int_equal(parse_guarded(big, (size_t)n, 100, &req, h, &nh), ZH_PARSE_ERROR);
    assert_int_equal(req.err, ZH_HTTP1_E_HEAD_TOO_LARGE);
    assert_int_equal(zh_http1_err_status(req.err), 431);
    nh = MAX_HDRS;
    assert_int_equal(parse_guarded(big, (size_t)n, (size_t)n, &req, h, &nh), n);
    nh = MAX_HDRS;
    assert_int_equal(parse_guarded(big, (size_t)n, (size_t)n - 1, &req, h, &nh), ZH_PARSE_ERROR);
    assert_int_equal(req.err, ZH_HTTP1_E_HEAD_TOO_LARGE);

    /* The request line's CRLF straddles the limit: still 414. */
    nh = MAX_HDRS;
    assert_int_equal(parse_guarded(S(HL "Host: a\r\n\r\n"), sizeof(HL) - 2, &req, h, &nh),
                     ZH_PARSE_ERROR);
    assert_int_equal(req.err, ZH_HTTP1_E_URI_TOO_LONG);
    nh = MAX_HDRS;
    assert_int_equal(parse_guarded(S(HL "Host: a\r\n\r\n"), sizeof(HL) - 1, &req, h, &nh),
                     ZH_PARSE_ERROR);
    assert_int_equal(req.err, ZH_HTTP1_E_HEAD_TOO_LARGE);

    /* Leading empty lines count against the limit too. */
    nh = MAX_HDRS;
    assert_int_equal(parse_guarded(S("\r\n\r\n\r\n\r\n"), 8, &req, h, &nh), ZH_PARSE_ERROR);
    assert_int_equal(req.err, ZH_HTTP1_E_URI_TOO_LONG);

    /* An error inside the limit wins over the limit. */
    nh = MAX_HDRS;
    assert_int_equal(parse_guarded(S("GET /\x01 aaaaaaaaaaaaaaaa"), 10, &req, h, &nh),
                     ZH_PARSE_ERROR);
    assert_int_equal(req.err, ZH_HTTP1_E_BAD_TARGET);

    /* Undecided until the byte after the whitespace arrives. */
    nh = MAX_HDRS;
    assert_int_equal(parse_guarded(S(HL "Host \t "), MAX_HEAD, &req, h, &nh), ZH_PARSE_INCOMPLETE);

    /* Any max_head works (it is clamped to INT_MAX). */
    nh = MAX_HDRS;
    assert_int_equal(parse_guarded(S(HL "\r\n"), SIZE_MAX, &req, h, &nh), 18);

    /* max_head 0 refuses everything. */
    assert_int_equal(parse_guarded(S(HL), 0, &req, h, &nh), ZH_PARSE_ERROR);
}

static void parse_never_reads_past_max_head(void **state)
{
    (void)state;
    struct zh_http1_req req;
    struct zh_http1_header h[MAX_HDRS];
    size_t nh = MAX_HDRS;
    static const char line[] = "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    /* len claims bytes inside the guard page; only max_head of them may be touched. */
    const char *p = guarded(line, sizeof(line) - 1);
    zh_http1_req_init(&req);
    assert_int_equal(
        zh_http1_parse_request(&req, p, sizeof(line) - 1 + 4096, sizeof(line) - 1, h, &nh),
        ZH_PARSE_ERROR);
    assert_int_equal(req.err, ZH_HTTP1_E_URI_TOO_LONG);
}

static void parse_limits_apply_when_resuming(void **state)
{
    (void)state;
    char big[300];
    int n = snprintf(big, sizeof(big), HL "Host: a\r\nX: %0200d\r\n\r\n", 0);
    struct zh_http1_req req;
    struct zh_http1_header h[MAX_HDRS];
    size_t nh = MAX_HDRS;
    char *keep;
    assert_int_equal(parse_bytewise(big, (size_t)n, 100, &req, h, &nh, &keep), ZH_PARSE_ERROR);
    free(keep);
    assert_int_equal(req.err, ZH_HTTP1_E_HEAD_TOO_LARGE);
    nh = MAX_HDRS;
    assert_int_equal(parse_bytewise(big, (size_t)n, 10, &req, h, &nh, &keep), ZH_PARSE_ERROR);
    free(keep);
    assert_int_equal(req.err, ZH_HTTP1_E_URI_TOO_LONG);

    /* A bad byte inside the limit, in a line that never ends: the byte, not the limit. */
    n = snprintf(big, sizeof(big), HL "X: %050d\x01%0100d", 0, 0);
    nh = MAX_HDRS;
    assert_int_equal(parse_guarded(big, (size_t)n, 100, &req, h, &nh), ZH_PARSE_ERROR);
    assert_int_equal(req.err, ZH_HTTP1_E_BAD_FIELD_VALUE);
    nh = MAX_HDRS;
    assert_int_equal(parse_bytewise(big, (size_t)n, 100, &req, h, &nh, &keep), ZH_PARSE_ERROR);
    free(keep);
    assert_int_equal(req.err, ZH_HTTP1_E_BAD_FIELD_VALUE);
}

static void parse_restarts_when_the_contract_is_broken(void **state)
{
    (void)state;
    struct zh_http1_req req;
    struct zh_http1_header h[MAX_HDRS];
    size_t nh = MAX_HDRS;
    zh_http1_req_init(&req);
    assert_int_equal(zh_http1_parse_request(&req, S(HL "Host: a\r\nX-Long: abc"), MAX_HEAD, h, &nh),
                     ZH_PARSE_INCOMPLETE);
    /* A shorter, different buffer: the parser starts over instead of trusting its state. */
    nh = MAX_HDRS;
    assert_int_equal(zh_http1_parse_request(&req, S("GET /x HTTP/1.0\r\n\r\n"), MAX_HEAD, h, &nh),
                     19);
    assert_span(req.target, "/x");
    /* Called again after success without init: a fresh parse, same answer. */
    nh = MAX_HDRS;
    assert_int_equal(zh_http1_parse_request(&req, S("GET /y HTTP/1.0\r\n\r\n"), MAX_HEAD, h, &nh),
                     19);
    assert_span(req.target, "/y");
}

/* ---------------------------------------------------------------------------------------- */
/* Framing */

struct framing_case {
    const char *raw; /* fields only; the request line is added */
    int http10;
    int ret;
    enum zh_http1_err err;
    enum zh_http1_body body;
    uint64_t cl;
    unsigned flags;
};

#define KA ZH_HTTP1_F_KEEP_ALIVE
#define E_ ZH_PARSE_ERROR

static const struct framing_case framing_cases[] = {
    {"Host: a\r\n", 0, 0, 0, ZH_HTTP1_BODY_NONE, 0, KA},
    {"Host: a\r\nConnection: close\r\n", 0, 0, 0, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nConnection: Keep-Alive, CLOSE\r\n", 0, 0, 0, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nConnection: foo\r\nConnection: close\r\n", 0, 0, 0, ZH_HTTP1_BODY_NONE, 0, 0},
    {"", 1, 0, 0, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Connection: keep-alive\r\n", 1, 0, 0, ZH_HTTP1_BODY_NONE, 0, KA},
    {"Connection: , Keep-Alive ,\r\n", 1, 0, 0, ZH_HTTP1_BODY_NONE, 0, KA},
    {"Connection: keep-alive, close\r\n", 1, 0, 0, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nContent-Length: 5\r\n", 1, 0, 0, ZH_HTTP1_BODY_LENGTH, 5, 0},
    /* upgrade */
    {"Host: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n", 0, 0, 0, ZH_HTTP1_BODY_NONE, 0,
     KA | ZH_HTTP1_F_UPGRADE_WEBSOCKET},
    {"Host: a\r\nConnection: keep-alive, upgrade\r\nUpgrade: h2c, WebSocket/13\r\n", 0, 0, 0,
     ZH_HTTP1_BODY_NONE, 0, KA | ZH_HTTP1_F_UPGRADE_WEBSOCKET},
    {"Host: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n", 0, 0, 0, ZH_HTTP1_BODY_NONE, 0, KA},
    {"Host: a\r\nUpgrade: websocket\r\n", 0, 0, 0, ZH_HTTP1_BODY_NONE, 0, KA},
    {"Host: a\r\nConnection: upgrade\r\nUpgrade: websockets\r\n", 0, 0, 0, ZH_HTTP1_BODY_NONE, 0,
     KA},
    {"Connection: upgrade\r\nUpgrade: websocket\r\n", 1, 0, 0, ZH_HTTP1_BODY_NONE, 0, 0},
    /* expect */
    {"Host: a\r\nExpect: 100-continue\r\n", 0, 0, 0, ZH_HTTP1_BODY_NONE, 0,
     KA | ZH_HTTP1_F_EXPECT_CONTINUE},
    {"Host: a\r\nexpect: 100-Continue\r\n", 0, 0, 0, ZH_HTTP1_BODY_NONE, 0,
     KA | ZH_HTTP1_F_EXPECT_CONTINUE},
    {"Host: a\r\nExpect: foo\r\n", 0, 0, 0, ZH_HTTP1_BODY_NONE, 0, KA | ZH_HTTP1_F_EXPECT_OTHER},
    {"Host: a\r\nExpect: \r\n", 0, 0, 0, ZH_HTTP1_BODY_NONE, 0, KA},
    {"Expect: 100-continue\r\n", 1, 0, 0, ZH_HTTP1_BODY_NONE, 0, 0},
    /* Content-Length */
    {"Host: a\r\nContent-Length: 5\r\n", 0, 0, 0, ZH_HTTP1_BODY_LENGTH, 5, KA},
    {"Host: a\r\nContent-Length: 0\r\n", 0, 0, 0, ZH_HTTP1_BODY_NONE, 0, KA},
    {"Host: a\r\nContent-Length: 007\r\n", 0, 0, 0, ZH_HTTP1_BODY_LENGTH, 7, KA},
    {"Host: a\r\ncontent-length:  42 \r\n", 0, 0, 0, ZH_HTTP1_BODY_LENGTH, 42, KA},
    {"Host: a\r\nContent-Length: 4611686018427387904\r\n", 0, 0, 0, ZH_HTTP1_BODY_LENGTH,
     (uint64_t)1 << 62, KA},
    {"Host: a\r\nContent-Length: 4611686018427387905\r\n", 0, E_, ZH_HTTP1_E_BAD_CONTENT_LENGTH,
     ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nContent-Length: 18446744073709551616\r\n", 0, E_, ZH_HTTP1_E_BAD_CONTENT_LENGTH,
     ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nContent-Length: 99999999999999999999999\r\n", 0, E_, ZH_HTTP1_E_BAD_CONTENT_LENGTH,
     ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nContent-Length: +5\r\n", 0, E_, ZH_HTTP1_E_BAD_CONTENT_LENGTH, ZH_HTTP1_BODY_NONE,
     0, 0},
    {"Host: a\r\nContent-Length: -1\r\n", 0, E_, ZH_HTTP1_E_BAD_CONTENT_LENGTH, ZH_HTTP1_BODY_NONE,
     0, 0},
    {"Host: a\r\nContent-Length: 5 5\r\n", 0, E_, ZH_HTTP1_E_BAD_CONTENT_LENGTH, ZH_HTTP1_BODY_NONE,
     0, 0},
    {"Host: a\r\nContent-Length: 5, 5\r\n", 0, E_, ZH_HTTP1_E_BAD_CONTENT_LENGTH,
     ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nContent-Length: 5,5\r\n", 0, E_, ZH_HTTP1_E_BAD_CONTENT_LENGTH, ZH_HTTP1_BODY_NONE,
     0, 0},
    {"Host: a\r\nContent-Length: 0x5\r\n", 0, E_, ZH_HTTP1_E_BAD_CONTENT_LENGTH, ZH_HTTP1_BODY_NONE,
     0, 0},
    {"Host: a\r\nContent-Length: a\r\n", 0, E_, ZH_HTTP1_E_BAD_CONTENT_LENGTH, ZH_HTTP1_BODY_NONE,
     0, 0},
    {"Host: a\r\nContent-Length: 5.0\r\n", 0, E_, ZH_HTTP1_E_BAD_CONTENT_LENGTH, ZH_HTTP1_BODY_NONE,
     0, 0},
    {"Host: a\r\nContent-Length:\r\n", 0, E_, ZH_HTTP1_E_BAD_CONTENT_LENGTH, ZH_HTTP1_BODY_NONE, 0,
     0},
    {"Host: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n", 0, E_,
     ZH_HTTP1_E_DUPLICATE_CONTENT_LENGTH, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nContent-Length: 5\r\ncontent-length: 6\r\n", 0, E_,
     ZH_HTTP1_E_DUPLICATE_CONTENT_LENGTH, ZH_HTTP1_BODY_NONE, 0, 0},
    /* Transfer-Encoding */
    {"Host: a\r\nTransfer-Encoding: chunked\r\n", 0, 0, 0, ZH_HTTP1_BODY_CHUNKED, 0, KA},
    {"Host: a\r\nTransfer-Encoding: Chunked\r\n", 0, 0, 0, ZH_HTTP1_BODY_CHUNKED, 0, KA},
    {"Host: a\r\ntransfer-encoding:  CHUNKED \t\r\n", 0, 0, 0, ZH_HTTP1_BODY_CHUNKED, 0, KA},
    {"Host: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n", 0, 0, 0,
     ZH_HTTP1_BODY_CHUNKED, 0, 0},
    {"Host: a\r\nTransfer-Encoding: gzip, chunked\r\n", 0, E_,
     ZH_HTTP1_E_UNSUPPORTED_TRANSFER_CODING, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nTransfer-Encoding: gzip;level=1 , chunked\r\n", 0, E_,
     ZH_HTTP1_E_UNSUPPORTED_TRANSFER_CODING, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nTransfer-Encoding: chunked, chunked\r\n", 0, E_, ZH_HTTP1_E_CHUNKED_TWICE,
     ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nTransfer-Encoding: chunked, gzip\r\n", 0, E_, ZH_HTTP1_E_CHUNKED_NOT_FINAL,
     ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nTransfer-Encoding: gzip\r\n", 0, E_, ZH_HTTP1_E_CHUNKED_NOT_FINAL,
     ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nTransfer-Encoding: identity\r\n", 0, E_, ZH_HTTP1_E_CHUNKED_NOT_FINAL,
     ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nTransfer-Encoding: chunked;q=1\r\n", 0, E_, ZH_HTTP1_E_BAD_TRANSFER_ENCODING,
     ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nTransfer-Encoding: chunked\tx\r\n", 0, E_, ZH_HTTP1_E_BAD_TRANSFER_ENCODING,
     ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nTransfer-Encoding:\r\n", 0, E_, ZH_HTTP1_E_BAD_TRANSFER_ENCODING,
     ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nTransfer-Encoding: , chunked\r\n", 0, E_, ZH_HTTP1_E_BAD_TRANSFER_ENCODING,
     ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nTransfer-Encoding: chunked,\r\n", 0, E_, ZH_HTTP1_E_BAD_TRANSFER_ENCODING,
     ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nTransfer-Encoding: \"chunked\"\r\n", 0, E_, ZH_HTTP1_E_BAD_TRANSFER_ENCODING,
     ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nTransfer-Encoding: gzip@, chunked\r\n", 0, E_, ZH_HTTP1_E_BAD_TRANSFER_ENCODING,
     ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 0, E_,
     ZH_HTTP1_E_DUPLICATE_TRANSFER_ENCODING, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", 0, E_,
     ZH_HTTP1_E_DUPLICATE_TRANSFER_ENCODING, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Transfer-Encoding: chunked\r\n", 1, E_, ZH_HTTP1_E_TRANSFER_ENCODING_HTTP10,
     ZH_HTTP1_BODY_NONE, 0, 0},
    {"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 1, E_,
     ZH_HTTP1_E_TRANSFER_ENCODING_HTTP10, ZH_HTTP1_BODY_NONE, 0, 0},
    /* smuggling: both framings */
    {"Host: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n", 0, E_, ZH_HTTP1_E_CL_AND_TE,
     ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n", 0, E_, ZH_HTTP1_E_CL_AND_TE,
     ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 0\r\n", 0, E_, ZH_HTTP1_E_CL_AND_TE,
     ZH_HTTP1_BODY_NONE, 0, 0},
    /* Host */
    {"", 0, E_, ZH_HTTP1_E_MISSING_HOST, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nHost: a\r\n", 0, E_, ZH_HTTP1_E_DUPLICATE_HOST, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\nHost: b\r\n", 1, E_, ZH_HTTP1_E_DUPLICATE_HOST, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host:\r\n", 0, 0, 0, ZH_HTTP1_BODY_NONE, 0, KA},
    {"Host: example.com:8080\r\n", 0, 0, 0, ZH_HTTP1_BODY_NONE, 0, KA},
    {"Host: [::1]:80\r\n", 0, 0, 0, ZH_HTTP1_BODY_NONE, 0, KA},
    {"Host: [fe80::1%25eth0]\r\n", 0, 0, 0, ZH_HTTP1_BODY_NONE, 0, KA},
    {"Host: a%2Db\r\n", 0, 0, 0, ZH_HTTP1_BODY_NONE, 0, KA},
    {"Host: a b\r\n", 0, E_, ZH_HTTP1_E_BAD_HOST, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a/b\r\n", 0, E_, ZH_HTTP1_E_BAD_HOST, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: user@a\r\n", 0, E_, ZH_HTTP1_E_BAD_HOST, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: [::1\r\n", 0, E_, ZH_HTTP1_E_BAD_HOST, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a:8x\r\n", 0, E_, ZH_HTTP1_E_BAD_HOST, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a%zz\r\n", 0, E_, ZH_HTTP1_E_BAD_HOST, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a%2\r\n", 0, E_, ZH_HTTP1_E_BAD_HOST, ZH_HTTP1_BODY_NONE, 0, 0},
    {"Host: a\r\n", 1, 0, 0, ZH_HTTP1_BODY_NONE, 0, 0},
    /* Names as long as the known ones, but not them */
    {"Host: a\r\nHosT-: 1\r\nExpert: 1\r\nUpgrad3: 1\r\nConnectio0: close\r\n"
     "Content-Lengtx: x\r\nTransfer-Encodinx: x\r\n",
     0, 0, 0, ZH_HTTP1_BODY_NONE, 0, KA},
    {"Host: a\r\nHost-: 1\r\nExpecz: 1\r\nUpgradf: websocket\r\nConnectioN: upgrade\r\n", 0, 0, 0,
     ZH_HTTP1_BODY_NONE, 0, KA},
    /* Connection */
    {"Host: a\r\nConnection: close;x\r\n", 0, E_, ZH_HTTP1_E_BAD_CONNECTION, ZH_HTTP1_BODY_NONE, 0,
     0},
    {"Host: a\r\nConnection: \"close\"\r\n", 0, E_, ZH_HTTP1_E_BAD_CONNECTION, ZH_HTTP1_BODY_NONE,
     0, 0},
};

static void framing_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ZH_ARRAY_SIZE(framing_cases); i++) {
        const struct framing_case *c = &framing_cases[i];
        char raw[512];
        int n = snprintf(raw, sizeof(raw), "POST / HTTP/1.%d\r\n%s\r\n", c->http10 ? 0 : 1, c->raw);
        struct zh_http1_req req;
        struct zh_http1_header h[MAX_HDRS];
        struct zh_http1_framing f;
        size_t nh = MAX_HDRS;
        assert_int_equal(parse_guarded(raw, (size_t)n, MAX_HEAD, &req, h, &nh), n);
        int r = zh_http1_req_framing(&req, h, nh, &f);
        if (r != c->ret || f.err != c->err)
            fail_msg("case %zu \"%s\": got %d %s, want %d %s", i, c->raw, r,
                     zh_http1_strerror(f.err), c->ret, zh_http1_strerror(c->err));
        if (r == 0) {
            if (f.body != c->body || f.content_length != c->cl || f.flags != c->flags)
                fail_msg("case %zu \"%s\": body %d cl %llu flags %#x", i, c->raw, f.body,
                         (unsigned long long)f.content_length, f.flags);
        } else {
            assert_int_equal(f.flags, 0);
            assert_int_equal(f.body, ZH_HTTP1_BODY_NONE);
        }
    }
}

static void framing_reports_host(void **state)
{
    (void)state;
    struct zh_http1_req req;
    struct zh_http1_header h[MAX_HDRS];
    struct zh_http1_framing f;
    size_t nh = MAX_HDRS;
    assert_true(parse_guarded(S("GET / HTTP/1.1\r\nX: y\r\nHost: ex.org:81\r\n\r\n"), MAX_HEAD,
                              &req, h, &nh) > 0);
    assert_int_equal(zh_http1_req_framing(&req, h, nh, &f), 0);
    assert_span(f.host, "ex.org:81");
    nh = MAX_HDRS;
    assert_true(parse_guarded(S("GET / HTTP/1.0\r\n\r\n"), MAX_HEAD, &req, h, &nh) > 0);
    assert_int_equal(zh_http1_req_framing(&req, h, nh, &f), 0);
    assert_null(f.host.p);
}

static void error_table_is_complete(void **state)
{
    (void)state;
    for (int e = 0; e < ZH_HTTP1_ERR_COUNT; e++) {
        const char *s = zh_http1_strerror((enum zh_http1_err)e);
        int st = zh_http1_err_status((enum zh_http1_err)e);
        assert_true(strlen(s) > 0);
        assert_true(st == 200 || st == 400 || st == 414 || st == 431 || st == 501 || st == 505);
        assert_true((e == ZH_HTTP1_OK) == (st == 200));
    }
    assert_string_equal(zh_http1_strerror(ZH_HTTP1_ERR_COUNT), "unknown error");
    assert_int_equal(zh_http1_err_status(ZH_HTTP1_ERR_COUNT), 400);
    assert_int_equal(zh_http1_err_status(ZH_HTTP1_E_UNSUPPORTED_TRANSFER_CODING), 501);
    assert_int_equal(zh_http1_err_status(ZH_HTTP1_E_VERSION_NOT_SUPPORTED), 505);
    assert_int_equal(zh_http1_err_status(ZH_HTTP1_E_H2_PREFACE), 505);
    assert_int_equal(zh_http1_err_status(ZH_HTTP1_E_TOO_MANY_HEADERS), 431);
    assert_string_equal(zh_http1_strerror(ZH_HTTP1_E_SPACE_BEFORE_COLON),
                        "whitespace between field name and colon");
}

/* ---------------------------------------------------------------------------------------- */
/* Chunked decoder */

struct chunked_case {
    const char *raw;
    size_t len;
    const char *body;
    size_t consumed; /* 0: all of raw */
};

static const struct chunked_case chunked_cases[] = {
    {S("5\r\nhello\r\n0\r\n\r\n"), "hello", 0},
    {S("0\r\n\r\n"), "", 0},
    {S("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "hello world", 0},
    {S("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n"), "0123456789abcdefghij", 0},
    {S("0005\r\nhello\r\n000\r\n\r\n"), "hello", 0},
    {S("5;name\r\nhello\r\n0;a=b;c=\"q\\\"x\"\r\n\r\n"), "hello", 0},
    {S("5 ; name = value\t;x=\"\" ;y\r\nhello\r\n0\r\n\r\n"), "hello", 0},
    {S("5;a=\"\\\t\xff\";b=\"\xc3\xa9 \t!#[]\"\r\nhello\r\n0\r\n\r\n"), "hello", 0},
    {S("5;a=b ;c;d \t;e=f\r\nhello\r\n0\r\n\r\n"), "hello", 0},
    {S("5 \t ;a\r\nhello\r\n0\r\n\r\n"), "hello", 0},
    {S("5\r\nhello\r\n0\r\nX-Sum: abc\r\nY:\r\nZ: a\tb \xff\r\n\r\n"), "hello", 0},
    {S("5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n"), "hello", 15},
    {S("0\r\n\r\n0\r\n\r\n"), "", 5},
    {S("3\r\n\r\n\r\r\n0\r\n\r\n"), "\r\n\r", 0},
    {S("1\r\n\x00\r\n0\r\n\r\n"), "\0", 0},
};

/* Feed raw in pieces of the sizes split() picks, each piece a fresh heap copy; collect the body. */
static int chunked_decode(const char *raw, size_t len, size_t max_trailer,
                          size_t (*split)(size_t left), char *body, size_t *body_len,
                          size_t *consumed, struct zh_http1_chunked *c)
{
    size_t off = 0;
    int r = ZH_PARSE_INCOMPLETE;
    *body_len = 0;
    zh_http1_chunked_init(c, max_trailer);
    while (off < len) {
        size_t n = split(len - off);
        char *piece = malloc(n);
        assert_non_null(piece);
        memcpy(piece, raw + off, n);
        size_t pos = 0;
        while (pos < n) {
            size_t used = 12345;
            struct zh_http1_span d = {NULL, 0};
            r = zh_http1_chunked_feed(c, piece + pos, n - pos, &used, &d);
            assert_true(used <= n - pos);
            pos += used;
            if (r == ZH_HTTP1_CHUNKED_DATA) {
                assert_true(d.len > 0);
                assert_ptr_equal(d.p + d.len, piece + pos);
                memcpy(body + *body_len, d.p, d.len);
                *body_len += d.len;
                continue;
            }
            if (r == ZH_PARSE_INCOMPLETE)
                assert_int_equal(pos, n);
            break;
        }
        free(piece);
        off += pos;
        if (r == ZH_HTTP1_CHUNKED_DONE || r == ZH_PARSE_ERROR)
            break;
    }
    *consumed = off;
    return r;
}

static size_t split_whole(size_t left)
{
    return left;
}

static size_t split_bytes(size_t left)
{
    (void)left;
    return 1;
}

static size_t split_random(size_t left)
{
    size_t n = 1 + (size_t)rand() % 7;
    return n < left ? n : left;
}

static void chunked_decodes_valid_bodies(void **state)
{
    (void)state;
    size_t (*const splits[])(size_t) = {split_whole, split_bytes, split_random};
    srand(42);
    for (size_t i = 0; i < ZH_ARRAY_SIZE(chunked_cases); i++) {
        const struct chunked_case *c = &chunked_cases[i];
        size_t want_consumed = c->consumed ? c->consumed : c->len;
        size_t want_len = strlen(c->body);
        if (i == ZH_ARRAY_SIZE(chunked_cases) - 1)
            want_len = 1; /* the NUL payload */
        for (size_t s = 0; s < ZH_ARRAY_SIZE(splits); s++) {
            for (int rep = 0; rep < (s == 2 ? 50 : 1); rep++) {
                struct zh_http1_chunked dec;
                char body[256];
                size_t body_len, consumed;
                int r = chunked_decode(c->raw, c->len, 256, splits[s], body, &body_len, &consumed,
                                       &dec);
                if (r != ZH_HTTP1_CHUNKED_DONE)
                    fail_msg("case %zu split %zu: got %d (%s)", i, s, r,
                             zh_http1_strerror(dec.err));
                assert_int_equal(consumed, want_consumed);
                assert_int_equal(body_len, want_len);
                assert_memory_equal(body, c->body, want_len);
            }
        }
    }
}

static void chunked_guarded_feed(void **state)
{
    (void)state;
    for (size_t i = 0; i < ZH_ARRAY_SIZE(chunked_cases); i++) {
        const struct chunked_case *c = &chunked_cases[i];
        /* Every prefix: incomplete or data, never done early, no over-read. */
        for (size_t n = 0; n < (c->consumed ? c->consumed : c->len); n++) {
            struct zh_http1_chunked dec;
            const char *p = guarded(c->raw, n);
            size_t used, off = 0;
            struct zh_http1_span d;
            int r;
            zh_http1_chunked_init(&dec, 256);
            while ((r = zh_http1_chunked_feed(&dec, p + off, n - off, &used, &d)) ==
                   ZH_HTTP1_CHUNKED_DATA)
                off += used;
            assert_int_equal(r, ZH_PARSE_INCOMPLETE);
        }
    }
}

struct chunked_bad {
    const char *raw;
    size_t len;
    enum zh_http1_err err;
};

static const struct chunked_bad chunked_bad_cases[] = {
    {S("x\r\n"), ZH_HTTP1_E_BAD_CHUNK_SIZE},
    {S(" 5\r\n"), ZH_HTTP1_E_BAD_CHUNK_SIZE},
    {S("5 \r\n"), ZH_HTTP1_E_BAD_CHUNK_SIZE},
    {S("5\t\r\n"), ZH_HTTP1_E_BAD_CHUNK_SIZE},
    {S("0x5\r\n"), ZH_HTTP1_E_BAD_CHUNK_SIZE},
    {S("-5\r\n"), ZH_HTTP1_E_BAD_CHUNK_SIZE},
    {S("+5\r\n"), ZH_HTTP1_E_BAD_CHUNK_SIZE},
    {S("\r\n"), ZH_HTTP1_E_BAD_CHUNK_SIZE},
    {S("5 5\r\n"), ZH_HTTP1_E_BAD_CHUNK_SIZE},
    {S("g\r\n"), ZH_HTTP1_E_BAD_CHUNK_SIZE},
    {S("\n"), ZH_HTTP1_E_BARE_LF},
    {S("5\nhello\r\n"), ZH_HTTP1_E_BARE_LF},
    {S("5\rhello\r\n"), ZH_HTTP1_E_BARE_CR},
    {S("10000000000000000\r\n"), ZH_HTTP1_E_CHUNK_TOO_LARGE},
    {S("4000000000000001\r\n"), ZH_HTTP1_E_CHUNK_TOO_LARGE},
    {S("ffffffffffffffffffff\r\n"), ZH_HTTP1_E_CHUNK_TOO_LARGE},
    {S("5;\r\n"), ZH_HTTP1_E_BAD_CHUNK_EXT},
    {S("5;=a\r\n"), ZH_HTTP1_E_BAD_CHUNK_EXT},
    {S("5;a=\r\n"), ZH_HTTP1_E_BAD_CHUNK_EXT},
    {S("5;a=b c\r\n"), ZH_HTTP1_E_BAD_CHUNK_EXT},
    {S("5;a=b \r\n"), ZH_HTTP1_E_BAD_CHUNK_EXT},
    {S("5;a \r\n"), ZH_HTTP1_E_BAD_CHUNK_EXT},
    {S("5;a b\r\n"), ZH_HTTP1_E_BAD_CHUNK_EXT},
    {S("5;a@\r\n"), ZH_HTTP1_E_BAD_CHUNK_EXT},
    {S("5;a=\"x\r\n"), ZH_HTTP1_E_BAD_CHUNK_EXT},
    {S("5;a=\"\\\x01\"\r\n"), ZH_HTTP1_E_BAD_CHUNK_EXT},
    {S("5;a=\"\x7f\"\r\n"), ZH_HTTP1_E_BAD_CHUNK_EXT},
    {S("5;a=\"x\"y\r\n"), ZH_HTTP1_E_BAD_CHUNK_EXT},
    {S("5;a=@\r\n"), ZH_HTTP1_E_BAD_CHUNK_EXT},
    {S("5;a=b@\r\n"), ZH_HTTP1_E_BAD_CHUNK_EXT},
    {S("5 x\r\n"), ZH_HTTP1_E_BAD_CHUNK_SIZE},
    {S("5;a\n"), ZH_HTTP1_E_BARE_LF},
    {S("5;a=b\n"), ZH_HTTP1_E_BARE_LF},
    {S("5;a=\"b\"\n"), ZH_HTTP1_E_BARE_LF},
    {S("5\r\nhelloX\r\n"), ZH_HTTP1_E_BAD_CHUNK_END},
    {S("5\r\nhello\n0\r\n\r\n"), ZH_HTTP1_E_BAD_CHUNK_END},
    {S("5\r\nhello\rX"), ZH_HTTP1_E_BAD_CHUNK_END},
    {S("5\r\nhello world\r\n"), ZH_HTTP1_E_BAD_CHUNK_END},
    {S("0\r\nX: a\n"), ZH_HTTP1_E_BARE_LF},
    {S("0\r\n\n"), ZH_HTTP1_E_BARE_LF},
    {S("0\r\n\rX"), ZH_HTTP1_E_BARE_CR},
    {S("0\r\nX: a\rX"), ZH_HTTP1_E_BARE_CR},
    {S("0\r\n folded\r\n\r\n"), ZH_HTTP1_E_OBS_FOLD},
    {S("0\r\nX: a\r\n\tfolded\r\n\r\n"), ZH_HTTP1_E_OBS_FOLD},
    {S("0\r\nX : a\r\n\r\n"), ZH_HTTP1_E_SPACE_BEFORE_COLON},
    {S("0\r\nX \t : a\r\n\r\n"), ZH_HTTP1_E_SPACE_BEFORE_COLON},
    {S("0\r\nX Y: a\r\n\r\n"), ZH_HTTP1_E_BAD_FIELD_NAME},
    {S("0\r\nX\r\n\r\n"), ZH_HTTP1_E_MISSING_COLON},
    {S("0\r\n(X: a\r\n\r\n"), ZH_HTTP1_E_BAD_FIELD_NAME},
    {S("0\r\nX(: a\r\n\r\n"), ZH_HTTP1_E_BAD_FIELD_NAME},
    {S("0\r\n: a\r\n\r\n"), ZH_HTTP1_E_BAD_FIELD_NAME},
    {S("0\r\nX: \x01\r\n\r\n"), ZH_HTTP1_E_BAD_FIELD_VALUE},
    {S("0\r\nX: a\x00\r\n\r\n"), ZH_HTTP1_E_BAD_FIELD_VALUE},
    {S("0\r\nX-Long: 0123456789\r\n\r\n"), ZH_HTTP1_E_TRAILER_TOO_LARGE},
};

static void chunked_rejects_malformed_bodies(void **state)
{
    (void)state;
    size_t (*const splits[])(size_t) = {split_whole, split_bytes, split_random};
    srand(7);
    for (size_t i = 0; i < ZH_ARRAY_SIZE(chunked_bad_cases); i++) {
        const struct chunked_bad *c = &chunked_bad_cases[i];
        for (size_t s = 0; s < ZH_ARRAY_SIZE(splits); s++) {
            struct zh_http1_chunked dec;
            char body[256];
            size_t body_len, consumed;
            int r = chunked_decode(c->raw, c->len, 16, splits[s], body, &body_len, &consumed, &dec);
            if (r != ZH_PARSE_ERROR || dec.err != c->err)
                fail_msg("case %zu \"%s\" split %zu: got %d %s, want %s", i, c->raw, s, r,
                         zh_http1_strerror(dec.err), zh_http1_strerror(c->err));
        }
    }
}

static void chunked_bounds_lines_and_trailers(void **state)
{
    (void)state;
    char raw[ZH_HTTP1_CHUNK_LINE_MAX + 64];
    struct zh_http1_chunked dec;
    char body[64];
    size_t body_len, consumed;

    /* A chunk-size line of exactly the maximum is fine; one byte more is not. */
    memset(raw, '0', sizeof(raw));
    memcpy(raw + ZH_HTTP1_CHUNK_LINE_MAX - 3, "5\r\nhello\r\n0\r\n\r\n", 16);
    assert_int_equal(chunked_decode(raw, ZH_HTTP1_CHUNK_LINE_MAX + 13, 0, split_whole, body,
                                    &body_len, &consumed, &dec),
                     ZH_HTTP1_CHUNKED_DONE);
    assert_int_equal(body_len, 5);
    memset(raw, '0', sizeof(raw));
    memcpy(raw + ZH_HTTP1_CHUNK_LINE_MAX - 2, "5\r\nhello\r\n0\r\n\r\n", 16);
    assert_int_equal(chunked_decode(raw, ZH_HTTP1_CHUNK_LINE_MAX + 14, 0, split_whole, body,
                                    &body_len, &consumed, &dec),
                     ZH_PARSE_ERROR);
    assert_int_equal(dec.err, ZH_HTTP1_E_CHUNK_LINE_TOO_LONG);

    /* Extensions count toward the same bound. */
    memset(raw, 'a', sizeof(raw));
    memcpy(raw, "5;", 2);
    assert_int_equal(
        chunked_decode(raw, sizeof(raw), 0, split_whole, body, &body_len, &consumed, &dec),
        ZH_PARSE_ERROR);
    assert_int_equal(dec.err, ZH_HTTP1_E_CHUNK_LINE_TOO_LONG);

    /* Trailer fields of exactly max_trailer bytes pass; the final CRLF is not counted. */
    static const char tr[] = "0\r\nX: 0123456789\r\n\r\n"; /* field line: 15 bytes */
    assert_int_equal(chunked_decode(S(tr), 15, split_bytes, body, &body_len, &consumed, &dec),
                     ZH_HTTP1_CHUNKED_DONE);
    assert_int_equal(consumed, sizeof(tr) - 1);
    assert_int_equal(chunked_decode(S(tr), 14, split_bytes, body, &body_len, &consumed, &dec),
                     ZH_PARSE_ERROR);
    assert_int_equal(dec.err, ZH_HTTP1_E_TRAILER_TOO_LARGE);
    assert_int_equal(zh_http1_err_status(dec.err), 431);
    /* max_trailer 0: no trailer fields, but the empty trailer section is fine. */
    assert_int_equal(
        chunked_decode(S("0\r\n\r\n"), 0, split_bytes, body, &body_len, &consumed, &dec),
        ZH_HTTP1_CHUNKED_DONE);
}

static void chunked_accepts_the_largest_size(void **state)
{
    (void)state;
    struct zh_http1_chunked dec;
    struct zh_http1_span d;
    size_t used;
    zh_http1_chunked_init(&dec, 0);
    assert_int_equal(zh_http1_chunked_feed(&dec, S("4000000000000000\r\nabc"), &used, &d),
                     ZH_HTTP1_CHUNKED_DATA);
    assert_int_equal(used, 21);
    assert_int_equal(d.len, 3);
    assert_memory_equal(d.p, "abc", 3);
}

static void chunked_is_sticky_after_done_or_error(void **state)
{
    (void)state;
    struct zh_http1_chunked dec;
    struct zh_http1_span d;
    size_t used = 99;
    zh_http1_chunked_init(&dec, 64);
    assert_int_equal(zh_http1_chunked_feed(&dec, S("0\r\n\r\nmore"), &used, &d),
                     ZH_HTTP1_CHUNKED_DONE);
    assert_int_equal(used, 5);
    assert_int_equal(zh_http1_chunked_feed(&dec, S("more"), &used, &d), ZH_HTTP1_CHUNKED_DONE);
    assert_int_equal(used, 0);

    zh_http1_chunked_init(&dec, 64);
    assert_int_equal(zh_http1_chunked_feed(&dec, S("zz"), &used, &d), ZH_PARSE_ERROR);
    assert_int_equal(dec.err, ZH_HTTP1_E_BAD_CHUNK_SIZE);
    assert_int_equal(zh_http1_chunked_feed(&dec, S("0\r\n\r\n"), &used, &d), ZH_PARSE_ERROR);
    assert_int_equal(used, 0);
    assert_int_equal(dec.err, ZH_HTTP1_E_BAD_CHUNK_SIZE);

    zh_http1_chunked_init(&dec, 64);
    assert_int_equal(zh_http1_chunked_feed(&dec, "", 0, &used, &d), ZH_PARSE_INCOMPLETE);
    assert_int_equal(used, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Response side */

static void assert_buf(struct zh_buf *b, const char *want)
{
    const char *got = zh_buf_cstr(b);
    if (strcmp(got, want) != 0)
        fail_msg("got:\n%s\nwant:\n%s", got, want);
}

static void response_head_basic(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    struct zh_http1_header h[] = {
        {{S("Content-Type")}, {S("text/plain")}},
        {{S("content-length")}, {S("99")}},
        {{S("Transfer-Encoding")}, {S("gzip")}},
        {{S("CONNECTION")}, {S("whatever")}},
        {{S("X-Empty")}, {S("")}},
    };
    struct zh_http1_resp r = {
        1, 200, {NULL, 0}, h, ZH_ARRAY_SIZE(h), ZH_HTTP1_BODY_LENGTH, 5, ZH_HTTP1_CONN_KEEP_ALIVE};
    assert_int_equal(zh_http1_write_response_head(&b, &r), 0);
    assert_buf(&b, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Empty: \r\n"
                   "Content-Length: 5\r\n\r\n");

    zh_buf_reset(&b);
    r.minor_version = 0;
    r.num_headers = 0;
    r.content_length = (uint64_t)1 << 62;
    assert_int_equal(zh_http1_write_response_head(&b, &r), 0);
    assert_buf(&b, "HTTP/1.1 200 OK\r\nContent-Length: 4611686018427387904\r\n"
                   "Connection: keep-alive\r\n\r\n");

    zh_buf_reset(&b);
    r.minor_version = 1;
    r.body = ZH_HTTP1_BODY_CHUNKED;
    r.conn = ZH_HTTP1_CONN_CLOSE;
    r.status = 404;
    assert_int_equal(zh_http1_write_response_head(&b, &r), 0);
    assert_buf(&b, "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n"
                   "Connection: close\r\n\r\n");

    zh_buf_reset(&b);
    r.body = ZH_HTTP1_BODY_CLOSE;
    r.conn = ZH_HTTP1_CONN_KEEP_ALIVE;
    r.status = 299;
    r.reason.p = "Fine Thanks";
    r.reason.len = 11;
    assert_int_equal(zh_http1_write_response_head(&b, &r), 0);
    assert_buf(&b, "HTTP/1.1 299 Fine Thanks\r\nConnection: close\r\n\r\n");

    zh_buf_reset(&b);
    r.body = ZH_HTTP1_BODY_NONE;
    r.reason.p = NULL;
    r.status = 304;
    assert_int_equal(zh_http1_write_response_head(&b, &r), 0);
    assert_buf(&b, "HTTP/1.1 304 Not Modified\r\n\r\n");

    zh_buf_reset(&b);
    r.status = 599;
    assert_int_equal(zh_http1_write_response_head(&b, &r), 0);
    assert_buf(&b, "HTTP/1.1 599 \r\n\r\n");
    zh_buf_free(&b);
}

static void response_head_upgrade(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    struct zh_http1_header h[] = {
        {{S("Upgrade")}, {S("websocket")}},
        {{S("Connection")}, {S("Upgrade")}},
        {{S("Sec-WebSocket-Accept")}, {S("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")}},
    };
    struct zh_http1_resp r = {
        1, 101, {NULL, 0}, h, 3, ZH_HTTP1_BODY_NONE, 0, ZH_HTTP1_CONN_UPGRADE};
    assert_int_equal(zh_http1_write_response_head(&b, &r), 0);
    assert_buf(&b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                   "Connection: Upgrade\r\n\r\n");
    zh_buf_free(&b);
}

static void response_head_rejects_bad_input(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    struct zh_http1_header h[1];
    struct zh_http1_resp r = {
        1, 200, {NULL, 0}, h, 1, ZH_HTTP1_BODY_NONE, 0, ZH_HTTP1_CONN_KEEP_ALIVE};
    zh_buf_puts(&b, "keep");
    static const struct {
        const char *name, *value;
    } bad[] = {
        {"X", "a\r\nInjected: 1"},
        {"X", "a\nb"},
        {"X", "a\rb"},
        {"Bad Name", "v"},
        {"", "v"},
        {"X:", "v"},
        {"X", "a\x7f"},
        {"X", "0123456789\x01"},
    };
    for (size_t i = 0; i < ZH_ARRAY_SIZE(bad); i++) {
        h[0].name.p = bad[i].name;
        h[0].name.len = strlen(bad[i].name);
        h[0].value.p = bad[i].value;
        h[0].value.len = strlen(bad[i].value);
        assert_int_equal(zh_http1_write_response_head(&b, &r), -EINVAL);
        assert_int_equal(b.len, 4);
    }
    h[0].name.p = "X";
    h[0].name.len = 1;
    h[0].value.p = "ok";
    h[0].value.len = 2;

    r.reason.p = "Bad\r\nReason";
    r.reason.len = 11;
    assert_int_equal(zh_http1_write_response_head(&b, &r), -EINVAL);
    r.reason.p = NULL;
    r.status = 99;
    assert_int_equal(zh_http1_write_response_head(&b, &r), -EINVAL);
    r.status = 1000;
    assert_int_equal(zh_http1_write_response_head(&b, &r), -EINVAL);
    r.status = 204;
    r.body = ZH_HTTP1_BODY_LENGTH;
    assert_int_equal(zh_http1_write_response_head(&b, &r), -EINVAL);
    r.status = 100;
    r.body = ZH_HTTP1_BODY_CHUNKED;
    assert_int_equal(zh_http1_write_response_head(&b, &r), -EINVAL);
    r.status = 200;
    r.minor_version = 0;
    assert_int_equal(zh_http1_write_response_head(&b, &r), -EINVAL);
    assert_int_equal(b.len, 4);
    zh_buf_free(&b);
}

static void status_reasons(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *reason;
    } cases[] = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {102, ""},
        {103, "Early Hints"},
        {104, ""},
        {200, "OK"},
        {204, "No Content"},
        {206, "Partial Content"},
        {207, ""},
        {301, "Moved Permanently"},
        {305, ""},
        {308, "Permanent Redirect"},
        {309, ""},
        {400, "Bad Request"},
        {404, "Not Found"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {417, "Expectation Failed"},
        {418, ""},
        {426, "Upgrade Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {451, "Unavailable For Legal Reasons"},
        {452, ""},
        {500, "Internal Server Error"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
        {506, ""},
        {600, ""},
        {99, ""},
        {0, ""},
        {-1, ""},
    };
    for (size_t i = 0; i < ZH_ARRAY_SIZE(cases); i++)
        assert_string_equal(zh_http1_status_reason(cases[i].status), cases[i].reason);
}

static void chunk_headers(void **state)
{
    (void)state;
    char out[ZH_HTTP1_CHUNK_HEADER_MAX];
    size_t n = zh_http1_format_chunk_header(out, 1);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "1\r\n", 3);
    n = zh_http1_format_chunk_header(out, 0xabc);
    assert_memory_equal(out, "abc\r\n", n);
    n = zh_http1_format_chunk_header(out, SIZE_MAX);
    assert_int_equal(n, sizeof(size_t) * 2 + 2);
    assert_memory_equal(out + n - 2, "\r\n", 2);

    struct zh_buf b = {0};
    zh_http1_write_chunk_header(&b, 16);
    zh_buf_append(&b, "0123456789abcdef\r\n", 18);
    zh_http1_write_last_chunk(&b);
    assert_buf(&b, "10\r\n0123456789abcdef\r\n0\r\n\r\n");
    zh_buf_free(&b);
}

static void chunk_writer_round_trips_through_decoder(void **state)
{
    (void)state;
    static char payload[20000];
    struct zh_buf b = {0};
    srand(99);
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (char)rand();
    for (int iter = 0; iter < 20; iter++) {
        size_t off = 0;
        zh_buf_reset(&b);
        while (off < sizeof(payload)) {
            size_t n = 1 + (size_t)rand() % 3000;
            if (n > sizeof(payload) - off)
                n = sizeof(payload) - off;
            zh_http1_write_chunk_header(&b, n);
            zh_buf_append(&b, payload + off, n);
            zh_buf_append(&b, "\r\n", 2);
            off += n;
        }
        zh_http1_write_last_chunk(&b);
        static char body[sizeof(payload)];
        size_t body_len, consumed;
        struct zh_http1_chunked dec;
        assert_int_equal(chunked_decode((const char *)b.data, b.len, 0, split_random, body,
                                        &body_len, &consumed, &dec),
                         ZH_HTTP1_CHUNKED_DONE);
        assert_int_equal(consumed, b.len);
        assert_int_equal(body_len, sizeof(payload));
        assert_memory_equal(body, payload, sizeof(payload));
    }
    zh_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_accepts_valid_requests),
        cmocka_unit_test(parse_every_prefix_is_incomplete),
        cmocka_unit_test(parse_resumes_on_a_moving_buffer),
        cmocka_unit_test(parse_resumes_in_random_pieces),
        cmocka_unit_test(parse_pipelined_requests),
        cmocka_unit_test(parse_rejects_malformed_requests),
        cmocka_unit_test(parse_bytewise_finds_the_same_errors),
        cmocka_unit_test(parse_limits_field_count),
        cmocka_unit_test(parse_limits_tell_414_from_431),
        cmocka_unit_test(parse_never_reads_past_max_head),
        cmocka_unit_test(parse_limits_apply_when_resuming),
        cmocka_unit_test(parse_restarts_when_the_contract_is_broken),
        cmocka_unit_test(framing_table),
        cmocka_unit_test(framing_reports_host),
        cmocka_unit_test(error_table_is_complete),
        cmocka_unit_test(chunked_decodes_valid_bodies),
        cmocka_unit_test(chunked_guarded_feed),
        cmocka_unit_test(chunked_rejects_malformed_bodies),
        cmocka_unit_test(chunked_bounds_lines_and_trailers),
        cmocka_unit_test(chunked_accepts_the_largest_size),
        cmocka_unit_test(chunked_is_sticky_after_done_or_error),
        cmocka_unit_test(response_head_basic),
        cmocka_unit_test(response_head_upgrade),
        cmocka_unit_test(response_head_rejects_bad_input),
        cmocka_unit_test(status_reasons),
        cmocka_unit_test(chunk_headers),
        cmocka_unit_test(chunk_writer_round_trips_through_decoder),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
