/* link: zh_proto */
/* Unit tests for shared/proto/ws.c: 7/16/64-bit lengths, masking at every offset, every opcode,
 * fragmentation with interleaved control frames, UTF-8 state across fragments, every protocol error
 * with its close code, the message size limit, every prefix of a valid frame being incomplete, byte
 * by byte input, the writer, SHA-1 / Sec-WebSocket-Accept. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/proto/buf.h"
#include "shared/proto/err.h"
#include "shared/proto/ws.h"

#define ZH_MIN_SZ(a, b) ((a) < (b) ? (a) : (b))

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Append one frame (raw first byte given, so tests can set any bit). */
static void frame(struct zh_buf *b, uint8_t b0, const void *pl, size_t n, const uint8_t *mask)
{
    uint8_t h[ZH_WS_MAX_HEAD];
    size_t hl = zh_ws_head(h, b0 & 0x80, b0 & 0x0F, b0 & 0x40, n, mask);
    h[0] = b0;
    zh_buf_append(b, h, hl);
    size_t at = b->len;
    zh_buf_append(b, pl, n);
    if (mask && n)
        zh_ws_mask(b->data + at, n, mask, 0);
}

struct got {
    struct zh_buf data; /* DATA payload, all messages */
    struct zh_buf ctl;  /* control payloads */
    int messages, controls, data_events;
    uint8_t last_opcode, last_ctl;
    unsigned close_code;
    struct zh_buf reason;
};

static void got_free(struct got *g)
{
    zh_buf_free(&g->data);
    zh_buf_free(&g->ctl);
    zh_buf_free(&g->reason);
}

/* Parse the input fed step bytes at a time (0 = all at once), as a reader with a growing buffer
 * would. Returns the last result (0, or the error). */
static int run(struct zh_ws_parser *p, const uint8_t *in, size_t len, size_t step, struct got *g)
{
    struct zh_buf buf = {0};
    size_t fed = 0, off = 0;
    int rc = 0;
    memset(g, 0, sizeof(*g));
    while (fed < len || off < buf.len) {
        size_t n = step ? ZH_MIN_SZ(step, len - fed) : len - fed;
        zh_buf_append(&buf, in + fed, n);
        fed += n;
        for (;;) {
            struct zh_ws_event ev;
            rc = zh_ws_parse(p, buf.data + off, buf.len - off, &ev);
            if (rc < 0)
                goto out;
            off += (size_t)rc;
            if (ev.kind == ZH_WS_EV_DATA) {
                g->data_events++;
                zh_buf_append(&g->data, ev.data, ev.len);
                g->last_opcode = ev.opcode;
                if (ev.message_end)
                    g->messages++;
            } else if (ev.kind == ZH_WS_EV_CONTROL) {
                g->controls++;
                g->last_ctl = ev.opcode;
                zh_buf_append(&g->ctl, ev.data, ev.len);
                if (ev.opcode == ZH_WS_CLOSE) {
                    g->close_code = ev.close_code;
                    zh_buf_reset(&g->reason);
                    zh_buf_append(&g->reason, ev.reason, ev.reason_len);
                }
            } else if (rc == 0) {
                break;
            }
        }
        if (fed == len)
            break;
    }
    rc = 0;
out:
    zh_buf_free(&buf);
    return rc;
}

static void test_lengths(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};
    const size_t heads[] = {2, 2, 2, 4, 4, 4, 10, 10};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        for (int masked = 0; masked < 2; masked++) {
            uint8_t *pl = malloc(sizes[i] + 1);
            for (size_t j = 0; j < sizes[i]; j++)
                pl[j] = (uint8_t)(j * 7 + i);
            struct zh_buf b = {0};
            zh_ws_put_frame(&b, true, ZH_WS_BINARY, false, pl, sizes[i], masked ? KEY : NULL);
            assert_int_equal(b.len, heads[i] + (masked ? 4 : 0) + sizes[i]);
            struct zh_ws_parser p;
            zh_ws_parser_init(&p, masked, false, 0);
            struct got g;
            assert_int_equal(run(&p, b.data, b.len, 0, &g), 0);
            assert_int_equal(g.messages, 1);
            assert_int_equal(g.last_opcode, ZH_WS_BINARY);
            assert_int_equal(g.data.len, sizes[i]);
            if (sizes[i])
                assert_memory_equal(g.data.data, pl, sizes[i]);
            got_free(&g);
            /* Byte by byte gives the same bytes. */
            zh_ws_parser_init(&p, masked, false, 0);
            assert_int_equal(run(&p, b.data, b.len, 1, &g), 0);
            assert_int_equal(g.messages, 1);
            assert_int_equal(g.data.len, sizes[i]);
            if (sizes[i])
                assert_memory_equal(g.data.data, pl, sizes[i]);
            got_free(&g);
            zh_buf_free(&b);
            free(pl);
        }
    }
}

static void test_mask(void **state)
{
    (void)state;
    uint8_t a[64], b[64];
    for (uint64_t off = 0; off < 8; off++) {
        for (size_t n = 0; n < 40; n++) {
            for (size_t i = 0; i < n; i++)
                a[i] = b[i] = (uint8_t)(i * 13 + off);
            zh_ws_mask(a, n, KEY, off);
            for (size_t i = 0; i < n; i++)
                assert_int_equal(a[i], b[i] ^ KEY[(off + i) & 3]);
            zh_ws_mask(a, n, KEY, off);
            if (n)
                assert_memory_equal(a, b, n);
        }
    }
    /* Masking in two pieces equals masking at once. */
    for (size_t i = 0; i < 64; i++)
        a[i] = b[i] = (uint8_t)i;
    zh_ws_mask(a, 64, KEY, 0);
    zh_ws_mask(b, 13, KEY, 0);
    zh_ws_mask(b + 13, 51, KEY, 13);
    assert_memory_equal(a, b, 64);
}

static void test_opcodes(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    frame(&b, 0x81, "hi", 2, KEY);
    frame(&b, 0x82, "\x00\xff", 2, KEY);
    frame(&b, 0x89, "p1", 2, KEY);
    frame(&b, 0x8A, "p2", 2, KEY);
    frame(&b, 0x89, "", 0, KEY);
    zh_ws_put_close(&b, 1001, "bye \xe2\x82\xac", 7, KEY);
    struct zh_ws_parser p;
    zh_ws_parser_init(&p, true, false, 0);
    struct got g;
    assert_int_equal(run(&p, b.data, b.len, 0, &g), 0);
    assert_int_equal(g.messages, 2);
    assert_int_equal(g.controls, 4);
    assert_int_equal(g.data.len, 4);
    assert_memory_equal(g.data.data, "hi\x00\xff", 4);
    assert_memory_equal(g.ctl.data, "p1p2\x03\xe9", 6);
    assert_int_equal(g.last_ctl, ZH_WS_CLOSE);
    assert_int_equal(g.close_code, 1001);
    assert_int_equal(g.reason.len, 7);
    assert_memory_equal(g.reason.data, "bye \xe2\x82\xac", 7);
    got_free(&g);
    zh_buf_free(&b);

    /* A close without a status; and the client role reads unmasked frames. */
    zh_ws_put_close(&b, ZH_WS_CLOSE_NO_STATUS, NULL, 0, NULL);
    assert_int_equal(b.len, 2);
    zh_ws_parser_init(&p, false, false, 0);
    assert_int_equal(run(&p, b.data, b.len, 0, &g), 0);
    assert_int_equal(g.controls, 1);
    assert_int_equal(g.close_code, ZH_WS_CLOSE_NO_STATUS);
    got_free(&g);
    zh_buf_free(&b);
}

static void test_fragments(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    frame(&b, 0x01, "Hel", 3, KEY);
    frame(&b, 0x89, "mid", 3, KEY); /* control frames may interleave */
    frame(&b, 0x00, "", 0, KEY);
    frame(&b, 0x80, "lo", 2, KEY);
    frame(&b, 0x02, "ab", 2, KEY);
    frame(&b, 0x80, "c", 1, KEY);
    struct zh_ws_parser p;
    zh_ws_parser_init(&p, true, false, 0);
    uint8_t *d = b.data;
    size_t left = b.len;
    struct zh_ws_event ev;
    struct {
        enum zh_ws_event_kind kind;
        uint8_t opcode;
        bool ms, me;
        const char *s;
    } want[] = {
        {ZH_WS_EV_DATA, ZH_WS_TEXT, true, false, "Hel"},
        {ZH_WS_EV_CONTROL, ZH_WS_PING, 0, 0, "mid"},
        {ZH_WS_EV_DATA, ZH_WS_TEXT, false, false, ""},
        {ZH_WS_EV_DATA, ZH_WS_TEXT, false, true, "lo"},
        {ZH_WS_EV_DATA, ZH_WS_BINARY, true, false, "ab"},
        {ZH_WS_EV_DATA, ZH_WS_BINARY, false, true, "c"},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        int rc = zh_ws_parse(&p, d, left, &ev);
        assert_true(rc > 0);
        d += rc;
        left -= (size_t)rc;
        assert_int_equal(ev.kind, want[i].kind);
        assert_int_equal(ev.opcode, want[i].opcode);
        assert_int_equal(ev.len, strlen(want[i].s));
        assert_memory_equal(ev.data, want[i].s, ev.len);
        if (ev.kind == ZH_WS_EV_DATA) {
            assert_int_equal(ev.message_start, want[i].ms);
            assert_int_equal(ev.message_end, want[i].me);
            assert_true(ev.frame_start && ev.frame_end);
            assert_int_equal(zh_ws_parser_in_message(&p), !want[i].me);
        }
    }
    assert_int_equal(left, 0);
    zh_buf_free(&b);
}

static void test_utf8_across_fragments(void **state)
{
    (void)state;
    /* The euro sign E2 82 AC split over three frames, plus a 4-byte character split 1/3. */
    struct zh_buf b = {0};
    frame(&b, 0x01, "a\xe2", 2, KEY);
    frame(&b, 0x00, "\x82", 1, KEY);
    frame(&b, 0x00, "\xac\xf0", 2, KEY);
    frame(&b, 0x80, "\x9f\x98\x80", 3, KEY);
    struct zh_ws_parser p;
    zh_ws_parser_init(&p, true, false, 0);
    struct got g;
    assert_int_equal(run(&p, b.data, b.len, 0, &g), 0);
    assert_int_equal(g.messages, 1);
    got_free(&g);
    zh_buf_free(&b);

    /* The message ends inside a character: 1007 at the end. */
    frame(&b, 0x01, "a\xe2", 2, KEY);
    frame(&b, 0x80, "\x82", 1, KEY);
    zh_ws_parser_init(&p, true, false, 0);
    assert_int_equal(run(&p, b.data, b.len, 0, &g), ZH_E_PARSE);
    assert_int_equal(p.close_code, 1007);
    got_free(&g);
    zh_buf_free(&b);

    /* Invalid continuation in the second fragment: 1007 on that frame, byte by byte too. */
    frame(&b, 0x01, "\xe2", 1, KEY);
    frame(&b, 0x80, "\x28\xa1", 2, KEY);
    zh_ws_parser_init(&p, true, false, 0);
    assert_int_equal(run(&p, b.data, b.len, 1, &g), ZH_E_PARSE);
    assert_int_equal(p.close_code, 1007);
    got_free(&g);
    zh_buf_free(&b);

    /* Binary is never checked; compressed text is left to the caller. */
    frame(&b, 0x82, "\xff\xfe", 2, KEY);
    frame(&b, 0xC1, "\xff", 1, KEY);
    zh_ws_parser_init(&p, true, true, 0);
    assert_int_equal(run(&p, b.data, b.len, 0, &g), 0);
    assert_int_equal(g.messages, 2);
    got_free(&g);
    zh_buf_free(&b);
}

static void test_utf8_table(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool ok;
    } t[] = {
        {"", true},
        {"plain ascii", true},
        {"\xc2\x80", true},
        {"\xdf\xbf", true},
        {"\xe0\xa0\x80", true},
        {"\xed\x9f\xbf", true},
        {"\xee\x80\x80", true},
        {"\xf0\x90\x80\x80", true},
        {"\xf4\x8f\xbf\xbf", true},
        {"\xc0\x80", false},         /* overlong NUL */
        {"\xc1\xbf", false},         /* overlong */
        {"\xe0\x9f\xbf", false},     /* overlong */
        {"\xed\xa0\x80", false},     /* surrogate */
        {"\xf0\x8f\xbf\xbf", false}, /* overlong */
        {"\xf4\x90\x80\x80", false}, /* > U+10FFFF */
        {"\xf5\x80\x80\x80", false},
        {"\xff", false},
        {"\x80", false},
        {"\xe2\x82", false}, /* truncated */
        {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
         "edited",
         false},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        size_t n = strlen(t[i].s);
        assert_int_equal(zh_ws_utf8_valid((const uint8_t *)t[i].s, n), t[i].ok);
        /* Byte by byte agrees. */
        struct zh_ws_utf8 u = {0};
        int bad = 0;
        for (size_t j = 0; j < n; j++)
            bad |= zh_ws_utf8_feed(&u, (const uint8_t *)t[i].s + j, 1);
        assert_int_equal(!bad && zh_ws_utf8_done(&u), t[i].ok);
    }
}

/* Each bad input with its close code; built by a function so frames can be sequences. */
static void test_errors(void **state)
{
    (void)state;
    uint8_t big[200];
    memset(big, 'x', sizeof(big));
    struct {
        const char *what;
        bool server; /* parser expects masked frames */
        bool rsv1_ok;
        uint8_t b0[3]; /* up to three frames' first bytes (0 = none) */
        const char *pl[3];
        size_t n[3];
        unsigned code;
    } t[] = {
        {"unmasked client frame", true, false, {0x81}, {"hi"}, {2}, 1002},
        {"masked server frame", false, false, {0x81}, {"hi"}, {2}, 1002},
        {"RSV1 without extension", true, false, {0xC1}, {"hi"}, {2}, 1002},
        {"RSV2", true, true, {0xA1}, {"hi"}, {2}, 1002},
        {"RSV3", true, true, {0x91}, {"hi"}, {2}, 1002},
        {"RSV1 on a control frame", true, true, {0xC9}, {""}, {0}, 1002},
        {"RSV1 on a continuation", true, true, {0x41, 0xC0}, {"a", "b"}, {1, 1}, 1002},
        {"fragmented ping", true, false, {0x09}, {"p"}, {1}, 1002},
        {"fragmented close", true, false, {0x08}, {""}, {0}, 1002},
        {"ping over 125 bytes", true, false, {0x89}, {(const char *)big}, {126}, 1002},
        {"continuation without a start", true, false, {0x80}, {"x"}, {1}, 1002},
        {"new message inside a fragmented one",
         true,
         false,
         {0x01, 0x81},
         {"a", "b"},
         {1, 1},
         1002},
        {"binary inside a fragmented text", true, false, {0x01, 0x82}, {"a", "b"}, {1, 1}, 1002},
        {"opcode 3", true, false, {0x83}, {""}, {0}, 1002},
        {"opcode 7", true, false, {0x87}, {""}, {0}, 1002},
        {"opcode 0xB", true, false, {0x8B}, {""}, {0}, 1002},
        {"opcode 0xF", true, false, {0x8F}, {""}, {0}, 1002},
        {"invalid UTF-8 text", true, false, {0x81}, {"\xc3\x28"}, {2}, 1007},
        {"close with 1 byte", true, false, {0x88}, {"\x03"}, {1}, 1002},
        {"close code 999", true, false, {0x88}, {"\x03\xe7"}, {2}, 1002},
        {"close code 1004", true, false, {0x88}, {"\x03\xec"}, {2}, 1002},
        {"close code 1005", true, false, {0x88}, {"\x03\xed"}, {2}, 1002},
        {"close code 1006", true, false, {0x88}, {"\x03\xee"}, {2}, 1002},
        {"close code 1015", true, false, {0x88}, {"\x03\xf7"}, {2}, 1002},
        {"close code 2999", true, false, {0x88}, {"\x0b\xb7"}, {2}, 1002},
        {"close code 5000", true, false, {0x88}, {"\x13\x88"}, {2}, 1002},
        {"close reason not UTF-8", true, false, {0x88}, {"\x03\xe8\xff"}, {3}, 1007},
        {"message over the limit", true, false, {0x82}, {(const char *)big}, {101}, 1009},
        {"fragments over the limit",
         true,
         false,
         {0x02, 0x80},
         {(const char *)big, (const char *)big},
         {60, 41},
         1009},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct zh_buf b = {0};
        for (int f = 0; f < 3 && t[i].b0[f]; f++)
            frame(&b, t[i].b0[f], t[i].pl[f], t[i].n[f],
                  (t[i].server != (i < 2)) ? KEY : NULL); /* rows 0-1: the wrong masking */
        for (size_t step = 0; step < 2; step++) {
            struct zh_ws_parser p;
            zh_ws_parser_init(&p, t[i].server, t[i].rsv1_ok, 100);
            struct got g;
            int rc = run(&p, b.data, b.len, step, &g);
            if (rc >= 0 || p.close_code != t[i].code)
                fail_msg("%s: rc %d code %u", t[i].what, rc, p.close_code);
            assert_non_null(p.error);
            assert_int_equal(rc, t[i].code == 1009 ? ZH_E_TOO_LARGE : ZH_E_PARSE);
            /* Dead after an error. */
            struct zh_ws_event ev;
            uint8_t ok[] = {0x81, 0x00};
            assert_int_equal(zh_ws_parse(&p, ok, 2, &ev), ZH_E_PARSE);
            got_free(&g);
        }
        zh_buf_free(&b);
    }

    /* A 64-bit length with the top bit set. */
    uint8_t h[14] = {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    struct zh_ws_parser p;
    struct zh_ws_event ev;
    zh_ws_parser_init(&p, true, false, 0);
    assert_int_equal(zh_ws_parse(&p, h, sizeof(h), &ev), ZH_E_PARSE);
    assert_int_equal(p.close_code, 1002);
    /* A message announced bigger than the limit fails at its head, before any payload. */
    uint8_t h2[14] = {0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4};
    zh_ws_parser_init(&p, true, false, 1 << 20);
    assert_int_equal(zh_ws_parse(&p, h2, sizeof(h2), &ev), ZH_E_TOO_LARGE);
    assert_int_equal(p.close_code, 1009);
    /* Valid close codes. */
    const unsigned good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                             1010, 1011, 1012, 1014, 3000, 4999};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(zh_ws_close_code_valid(good[i]));
}

/* Every strict prefix of a valid frame yields no complete message or control frame. */
static void test_prefixes(void **state)
{
    (void)state;
    uint8_t pl[300];
    memset(pl, 'y', sizeof(pl));
    struct zh_buf frames[6] = {{0}};
    zh_ws_put_frame(&frames[0], true, ZH_WS_TEXT, false, pl, 5, KEY);
    zh_ws_put_frame(&frames[1], true, ZH_WS_BINARY, false, pl, 300, KEY);
    zh_ws_put_frame(&frames[2], true, ZH_WS_PING, false, pl, 125, KEY);
    zh_ws_put_close(&frames[3], 1000, "done", 4, KEY);
    zh_ws_put_frame(&frames[4], true, ZH_WS_TEXT, false, "", 0, KEY);
    zh_ws_put_frame(&frames[5], true, ZH_WS_BINARY, false, pl, 70, NULL);
    for (int f = 0; f < 6; f++) {
        for (size_t k = 0; k < frames[f].len; k++) {
            struct zh_ws_parser p;
            zh_ws_parser_init(&p, f != 5, false, 0);
            uint8_t *copy = malloc(k + 1);
            memcpy(copy, frames[f].data, k);
            struct got g;
            assert_int_equal(run(&p, copy, k, 0, &g), 0);
            assert_int_equal(g.messages, 0);
            assert_int_equal(g.controls, 0);
            got_free(&g);
            free(copy);
        }
        zh_buf_free(&frames[f]);
    }
}

/* piece_limit caps each DATA event (the server role sets it to the handler's credits); 0 stops
 * at the payload without consuming it. */
static void test_piece_limit(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_ws_put_frame(&b, true, ZH_WS_BINARY, false, "abcdefghij", 10, KEY);
    struct zh_ws_parser p;
    zh_ws_parser_init(&p, true, false, 0);
    assert_true(p.piece_limit == UINT64_MAX);
    struct zh_ws_event ev;
    uint8_t *d = b.data;
    size_t left = b.len;
    p.piece_limit = 0;
    int rc = zh_ws_parse(&p, d, left, &ev);
    assert_int_equal(rc, 6); /* the head only */
    assert_int_equal(ev.kind, ZH_WS_EV_NONE);
    d += rc;
    left -= (size_t)rc;
    assert_int_equal(zh_ws_parse(&p, d, left, &ev), 0);
    p.piece_limit = 4;
    const char *want[] = {"abcd", "efgh", "ij"};
    for (int i = 0; i < 3; i++) {
        rc = zh_ws_parse(&p, d, left, &ev);
        assert_int_equal(rc, (int)strlen(want[i]));
        assert_int_equal(ev.kind, ZH_WS_EV_DATA);
        assert_memory_equal(ev.data, want[i], ev.len);
        assert_int_equal(ev.frame_start, i == 0);
        assert_int_equal(ev.message_end, i == 2);
        d += rc;
        left -= (size_t)rc;
    }
    assert_int_equal(left, 0);
    zh_buf_free(&b);
}

static void test_writer(void **state)
{
    (void)state;
    uint8_t h[ZH_WS_MAX_HEAD];
    assert_int_equal(zh_ws_head(h, true, ZH_WS_TEXT, false, 5, NULL), 2);
    assert_memory_equal(h, "\x81\x05", 2);
    assert_int_equal(zh_ws_head(h, false, ZH_WS_BINARY, true, 126, NULL), 4);
    assert_memory_equal(h, "\x42\x7e\x00\x7e", 4);
    assert_int_equal(zh_ws_head(h, true, ZH_WS_CONT, false, 65536, KEY), 14);
    assert_memory_equal(h, "\x80\xff\x00\x00\x00\x00\x00\x01\x00\x00\x37\xfa\x21\x3d", 14);

    /* A long close reason is cut to 123 bytes, not inside a character. */
    char reason[200];
    memset(reason, 'r', sizeof(reason));
    memcpy(reason + 121, "\xe2\x82\xac", 3); /* bytes 121..123: the 123-byte cut falls inside */
    struct zh_buf b = {0};
    zh_ws_put_close(&b, 1000, reason, sizeof(reason), NULL);
    assert_int_equal(b.len, 2 + 2 + 121);
    zh_buf_free(&b);
    zh_ws_put_close(&b, 1000, reason, 100, NULL);
    assert_int_equal(b.len, 2 + 2 + 100);
    zh_buf_free(&b);

    struct zh_ws_sender s = {0};
    assert_int_equal(zh_ws_sender_next(&s, ZH_WS_TEXT, true), ZH_WS_TEXT);
    assert_true(zh_ws_sender_in_message(&s));
    assert_int_equal(zh_ws_sender_next(&s, ZH_WS_TEXT, true), ZH_WS_CONT);
    assert_int_equal(zh_ws_sender_next(&s, ZH_WS_TEXT, false), ZH_WS_CONT);
    assert_false(zh_ws_sender_in_message(&s));
    assert_int_equal(zh_ws_sender_next(&s, ZH_WS_BINARY, false), ZH_WS_BINARY);
}

static void test_handshake(void **state)
{
    (void)state;
    uint8_t d[20];
    char hex[41];
    static const struct {
        const char *in, *sha1;
    } v[] = {
        {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
        {"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
        {"The quick brown fox jumps over the lazy dog", "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        zh_ws_sha1(v[i].in, strlen(v[i].in), d);
        for (int j = 0; j < 20; j++)
            snprintf(hex + 2 * j, 3, "%02x", d[j]);
        assert_string_equal(hex, v[i].sha1);
    }
    /* One million 'a's (multi-block). */
    char *m = malloc(1000000);
    memset(m, 'a', 1000000);
    zh_ws_sha1(m, 1000000, d);
    free(m);
    for (int j = 0; j < 20; j++)
        snprintf(hex + 2 * j, 3, "%02x", d[j]);
    assert_string_equal(hex, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");

    char acc[29];
    zh_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", 24, acc); /* RFC 6455 1.3 */
    assert_string_equal(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_true(zh_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ==", 24));
    assert_false(zh_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=", 23));
    assert_false(zh_ws_key_valid("dGhlIHNhbXBsZSBub25jZR==", 24)); /* non-zero pad bits */
    assert_false(zh_ws_key_valid("dGhlIHNhbXBsZSBub2!jZQ==", 24));
    assert_false(zh_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=x", 24));
    char out[9];
    zh_ws_base64((const uint8_t *)"ab", 2, out);
    assert_string_equal(out, "YWI=");
    zh_ws_base64((const uint8_t *)"a", 1, out);
    assert_string_equal(out, "YQ==");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_opcodes),
        cmocka_unit_test(test_fragments),
        cmocka_unit_test(test_utf8_across_fragments),
        cmocka_unit_test(test_utf8_table),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_prefixes),
        cmocka_unit_test(test_piece_limit),
        cmocka_unit_test(test_writer),
        cmocka_unit_test(test_handshake),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
