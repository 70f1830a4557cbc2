/* libFuzzer target for shared/proto/http1.
 *
 * Input: one control byte, then the bytes a client sent. The target parses the head, decides the
 * framing and decodes a chunked body; it also checks that feeding the same bytes in pieces gives
 * exactly the answers of a one-shot parse (the resume paths must never change a result). Every
 * buffer is a heap copy of the exact size, so ASan sees any read past it. */
#include "shared/proto/http1.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HDRS 16

/* A heap copy of p[0..n) in a block of at least `size` bytes (size >= n). */
static char *dup_into(const char *p, size_t n, size_t size)
{
    char *c = malloc(size ? size : 1);
    if (!c)
        abort();
    if (n)
        memcpy(c, p, n);
    return c;
}

static char *dup_bytes(const char *p, size_t n)
{
    return dup_into(p, n, n);
}

static int span_eq(struct zh_http1_span a, struct zh_http1_span b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static void check(int cond)
{
    if (!cond)
        abort();
}

/* Parse in pieces of `step` bytes (each call on a fresh copy) and compare with the one-shot r. */
static void parse_in_pieces(const char *in, size_t len, size_t max_head, size_t step, int r1,
                            const struct zh_http1_req *req1, const struct zh_http1_header *h1,
                            size_t n1)
{
    struct zh_http1_req req;
    struct zh_http1_header h[MAX_HDRS];
    size_t nh = MAX_HDRS, have = 0;
    char *copy = NULL;
    int r = ZH_PARSE_INCOMPLETE;

    zh_http1_req_init(&req);
    while (r == ZH_PARSE_INCOMPLETE && have < len) {
        have = have + step < len ? have + step : len;
        free(copy);
        copy = dup_bytes(in, have);
        nh = MAX_HDRS;
        r = zh_http1_parse_request(&req, copy, have, max_head, h, &nh);
    }
    if (r == ZH_PARSE_INCOMPLETE && r1 == ZH_PARSE_ERROR) {
        /* A resumed parse checks an unfinished line only once it ends (or shows a CR, or hits
         * the limit): end it, and the answer must be the one-shot one. */
        free(copy);
        copy = dup_into(in, len, len + 2);
        memcpy(copy + len, "\r\n", 2);
        nh = MAX_HDRS;
        r = zh_http1_parse_request(&req, copy, len + 2, max_head, h, &nh);
    }
    check(r == r1);
    if (r == ZH_PARSE_ERROR)
        check(req.err == req1->err);
    if (r > 0) {
        check(req.head_len == req1->head_len && nh == n1);
        check(span_eq(req.method, req1->method) && span_eq(req.target, req1->target));
        check(req.minor_version == req1->minor_version && req.target_form == req1->target_form);
        for (size_t i = 0; i < nh; i++)
            check(span_eq(h[i].name, h1[i].name) && span_eq(h[i].value, h1[i].value));
    }
    free(copy);
}

struct decoded {
    int r;
    enum zh_http1_err err;
    size_t consumed;
    size_t body_len;
};

/* Decode in pieces of `step` bytes (0: all at once), each a fresh copy; body goes to out. */
static struct decoded decode(const char *in, size_t len, size_t step, char *out)
{
    struct zh_http1_chunked c;
    struct decoded d = {ZH_PARSE_INCOMPLETE, ZH_HTTP1_OK, 0, 0};
    size_t off = 0;

    zh_http1_chunked_init(&c, 64);
    while (off < len) {
        size_t n = step && step < len - off ? step : len - off;
        char *piece = dup_bytes(in + off, n);
        size_t pos = 0;
        while (pos < n) {
            struct zh_http1_span s;
            size_t used;
            d.r = zh_http1_chunked_feed(&c, piece + pos, n - pos, &used, &s);
            check(used <= n - pos);
            pos += used;
            if (d.r != ZH_HTTP1_CHUNKED_DATA)
                break;
            check(s.len > 0 && s.p + s.len == piece + pos);
            memcpy(out + d.body_len, s.p, s.len);
            d.body_len += s.len;
        }
        free(piece);
        off += pos;
        if (d.r == ZH_HTTP1_CHUNKED_DONE || d.r == ZH_PARSE_ERROR)
            break;
        check((d.r == ZH_PARSE_INCOMPLETE || d.r == ZH_HTTP1_CHUNKED_DATA) && pos == n);
    }
    d.consumed = off;
    d.err = c.err;
    return d;
}

/* The whole, bytewise and `step`-sized decodes must agree. */
static void decode_all_ways(const char *in, size_t len, size_t step)
{
    char *a = malloc(len + 1), *b = malloc(len + 1);
    if (!a || !b)
        abort();
    struct decoded d1 = decode(in, len, 0, a);
    struct decoded d2 = decode(in, len, 1, b);
    check(d1.r == d2.r && d1.err == d2.err && d1.consumed == d2.consumed &&
          d1.body_len == d2.body_len && memcmp(a, b, d1.body_len) == 0);
    struct decoded d3 = decode(in, len, step, b);
    check(d1.r == d3.r && d1.err == d3.err && d1.consumed == d3.consumed &&
          d1.body_len == d3.body_len && memcmp(a, b, d1.body_len) == 0);
    check(d1.body_len <= d1.consumed);
    if (d1.r == ZH_PARSE_ERROR)
        check(d1.err != ZH_HTTP1_OK);
    free(a);
    free(b);
}

/* Write a response with the request's fields; anything the writer accepts must be a head. */
static void write_response(const struct zh_http1_header *h, size_t nh, unsigned ctl)
{
    struct zh_buf out = {0};
    struct zh_http1_resp resp = {(int)(ctl & 1),
                                 100 + (int)(ctl % 450),
                                 {NULL, 0},
                                 h,
                                 nh,
                                 (enum zh_http1_body)((ctl >> 1) & 3),
                                 ctl,
                                 (enum zh_http1_conn)((ctl >> 3) % 3)};
    if (zh_http1_write_response_head(&out, &resp) == 0)
        check(out.len >= 17 && memcmp(out.data + out.len - 4, "\r\n\r\n", 4) == 0);
    zh_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned ctl = data[0];
    size_t len = size - 1;
    char *in = dup_bytes((const char *)data + 1, len);
    /* Small limits sometimes, so the 414/431 paths are reachable. */
    size_t max_head = (ctl & 0x80) ? 16 + (ctl & 0x3f) * 4 : 8192;
    size_t step = 1 + (ctl & 7);

    struct zh_http1_req req;
    struct zh_http1_header h[MAX_HDRS];
    size_t nh = MAX_HDRS;
    zh_http1_req_init(&req);
    int r = zh_http1_parse_request(&req, in, len, max_head, h, &nh);
    check(r > 0 || r == ZH_PARSE_INCOMPLETE || r == ZH_PARSE_ERROR);
    if (r == ZH_PARSE_ERROR) {
        check(req.err != ZH_HTTP1_OK && req.err < ZH_HTTP1_ERR_COUNT);
        check(zh_http1_strerror(req.err)[0] != '\0');
    }
    parse_in_pieces(in, len, max_head, step, r, &req, h, nh);
    if (len <= 1024) /* byte by byte costs O(len^2) copies; long inputs get `step` only */
        parse_in_pieces(in, len, max_head, 1, r, &req, h, nh);

    if (r > 0) {
        check((size_t)r == req.head_len && req.head_len <= len && req.head_len <= max_head);
        check(nh <= MAX_HDRS);
        struct zh_http1_framing f;
        int fr = zh_http1_req_framing(&req, h, nh, &f);
        check(fr == 0 || (fr == ZH_PARSE_ERROR && f.err != ZH_HTTP1_OK));
        if (fr == 0 && f.body == ZH_HTTP1_BODY_CHUNKED)
            decode_all_ways(in + req.head_len, len - req.head_len, step);
        if (fr == 0 && f.body == ZH_HTTP1_BODY_LENGTH)
            check(f.content_length > 0 && f.content_length <= ((uint64_t)1 << 62));
        write_response(h, nh, ctl);
    }
    /* The decoder also gets the raw bytes, so it is explored without a valid head first. */
    if (ctl & 0x40)
        decode_all_ways(in, len, step);

    char hdr[ZH_HTTP1_CHUNK_HEADER_MAX];
    check(zh_http1_format_chunk_header(hdr, len + 1) <= ZH_HTTP1_CHUNK_HEADER_MAX);
    free(in);
    return 0;
}
