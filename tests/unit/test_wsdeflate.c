/* link: zh_proto */
/* Unit tests for shared/proto/wsdeflate.c: the server's offer negotiation table, the client's
 * response checks (client_max_window_bits=8 fails), RFC 7692's example payloads, round trips for
 * every parameter combination (bulk, fragmented, byte by byte), empty messages, corrupt input, and
 * the decompression bound (a bomb stops at the limit instead of being buffered). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "shared/proto/buf.h"
#include "shared/proto/err.h"
#include "shared/proto/wsdeflate.h"

static void test_server_negotiation(void **state)
{
    (void)state;
    static const struct {
        const char *offer, *resp; /* resp NULL = declined */
        bool snct, cnct;
        int sbits;
    } t[] = {
        {"permessage-deflate", "permessage-deflate", 0, 0, 15},
        {"permessage-deflate; client_max_window_bits", "permessage-deflate", 0, 0, 15},
        {"permessage-deflate; client_max_window_bits=9", "permessage-deflate", 0, 0, 15},
        {"permessage-deflate;server_no_context_takeover",
         "permessage-deflate; server_no_context_takeover", 1, 0, 15},
        {"permessage-deflate; client_no_context_takeover",
         "permessage-deflate; client_no_context_takeover", 0, 1, 15},
        {"permessage-deflate; server_max_window_bits=10",
         "permessage-deflate; server_max_window_bits=10", 0, 0, 10},
        {"permessage-deflate; server_max_window_bits=\"12\"",
         "permessage-deflate; server_max_window_bits=12", 0, 0, 12},
        {"PerMessage-Deflate; Server_No_Context_Takeover; client_no_context_takeover; "
         "server_max_window_bits=9; client_max_window_bits=15",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=9",
         1, 1, 9},
        /* zlib can't raw-deflate with an 8-bit window: decline, take the next offer. */
        {"permessage-deflate; server_max_window_bits=8", NULL, 0, 0, 0},
        {"permessage-deflate; server_max_window_bits=8, permessage-deflate; "
         "server_no_context_takeover",
         "permessage-deflate; server_no_context_takeover", 1, 0, 15},
        {"x-webkit-deflate-frame, permessage-deflate", "permessage-deflate", 0, 0, 15},
        /* Bad offers are declined one by one. */
        {"permessage-deflate; server_max_window_bits=16", NULL, 0, 0, 0},
        {"permessage-deflate; server_max_window_bits=7", NULL, 0, 0, 0},
        {"permessage-deflate; server_max_window_bits", NULL, 0, 0, 0},
        {"permessage-deflate; client_max_window_bits=7", NULL, 0, 0, 0},
        {"permessage-deflate; client_max_window_bits=010", NULL, 0, 0, 0},
        {"permessage-deflate; server_no_context_takeover=1", NULL, 0, 0, 0},
        {"permessage-deflate; server_no_context_takeover; server_no_context_takeover", NULL, 0, 0,
         0},
        {"permessage-deflate; unknown_param", NULL, 0, 0, 0},
        {"permessage-deflate; =3, permessage-deflate; client_no_context_takeover",
         "permessage-deflate; client_no_context_takeover", 0, 1, 15},
        /* An unterminated quote spoils only its own element. */
        {"permessage-deflate; server_max_window_bits=\"9, permessage-deflate", "permessage-deflate",
         0, 0, 15},
        {"permessage-deflate; a; b; c; d; e; f; g; h; i", NULL, 0, 0, 0},
        {"", NULL, 0, 0, 0},
        {" , ,", NULL, 0, 0, 0},
        {"foo, bar; baz=1", NULL, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct zh_wsd_params p;
        struct zh_buf resp = {0};
        int rc = zh_wsd_server_negotiate(t[i].offer, strlen(t[i].offer), &p, &resp);
        if (rc != (t[i].resp != NULL))
            fail_msg("offer '%s': rc %d", t[i].offer, rc);
        if (t[i].resp) {
            assert_string_equal(zh_buf_cstr(&resp), t[i].resp);
            assert_int_equal(p.server_no_context_takeover, t[i].snct);
            assert_int_equal(p.client_no_context_takeover, t[i].cnct);
            assert_int_equal(p.server_max_window_bits, t[i].sbits);
            struct zh_wsd d;
            assert_int_equal(zh_wsd_init(&d, &p, true), 0);
            zh_wsd_free(&d);
        } else {
            assert_int_equal(resp.len, 0);
        }
        zh_buf_free(&resp);
    }
}

static void test_client_accept(void **state)
{
    (void)state;
    assert_string_equal(zh_wsd_client_offer(), "permessage-deflate; client_max_window_bits");
    static const struct {
        const char *resp;
        bool ok;
        int sbits, cbits;
    } t[] = {
        {"permessage-deflate", true, 15, 15},
        {"permessage-deflate; client_max_window_bits=9; server_max_window_bits=8; "
         "server_no_context_takeover; client_no_context_takeover",
         true, 8, 9},
        {"permessage-deflate; client_max_window_bits=8", false, 0, 0},
        {"permessage-deflate; client_max_window_bits", false, 0, 0},
        {"permessage-deflate, permessage-deflate", false, 0, 0},
        {"x-webkit-deflate-frame", false, 0, 0},
        {"permessage-deflate; bogus", false, 0, 0},
        {"", false, 0, 0},
        {"permessage-deflate; =", false, 0, 0},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct zh_wsd_params p;
        const char *why = NULL;
        int rc = zh_wsd_client_accept(t[i].resp, strlen(t[i].resp), &p, &why);
        if ((rc == 0) != t[i].ok)
            fail_msg("response '%s': rc %d", t[i].resp, rc);
        if (t[i].ok) {
            assert_int_equal(p.server_max_window_bits, t[i].sbits);
            assert_int_equal(p.client_max_window_bits, t[i].cbits);
            struct zh_wsd d;
            assert_int_equal(zh_wsd_init(&d, &p, false), 0);
            zh_wsd_free(&d);
        } else {
            assert_non_null(why);
        }
    }
    /* Our deflater refuses an 8-bit window outright. */
    struct zh_wsd_params p = {.server_max_window_bits = 8, .client_max_window_bits = 15};
    struct zh_wsd d;
    assert_int_equal(zh_wsd_init(&d, &p, true), ZH_E_CONFIG);
    zh_wsd_free(&d);
}

static int inflate_str(struct zh_wsd *d, const char *p, size_t n, struct zh_buf *out)
{
    return zh_wsd_inflate(d, (const uint8_t *)p, n, true, 0, out);
}

/* RFC 7692 7.2.3: the example payloads. */
static void test_rfc_examples(void **state)
{
    (void)state;
    struct zh_wsd_params p = {.server_max_window_bits = 15, .client_max_window_bits = 15};
    struct zh_wsd d;
    struct zh_buf out = {0};
    assert_int_equal(zh_wsd_init(&d, &p, false), 0);
    assert_int_equal(inflate_str(&d, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7, &out), 0);
    assert_string_equal(zh_buf_cstr(&out), "Hello");
    zh_buf_reset(&out);
    /* The second "Hello" with context takeover refers back to the first. */
    assert_int_equal(inflate_str(&d, "\xf2\x00\x11\x00\x00", 5, &out), 0);
    assert_string_equal(zh_buf_cstr(&out), "Hello");
    zh_buf_reset(&out);
    /* Stored block; BFINAL set; fragmented. */
    assert_int_equal(inflate_str(&d, "\x00\x05\x00\xfa\xffHello\x00", 11, &out), 0);
    assert_string_equal(zh_buf_cstr(&out), "Hello");
    zh_buf_reset(&out);
    assert_int_equal(inflate_str(&d, "\xf3\x48\xcd\xc9\xc9\x07\x00\x00", 8, &out), 0);
    assert_string_equal(zh_buf_cstr(&out), "Hello");
    zh_buf_reset(&out);
    assert_int_equal(zh_wsd_inflate(&d, (const uint8_t *)"\xf2\x48\xcd", 3, false, 0, &out), 0);
    assert_int_equal(zh_wsd_inflate(&d, (const uint8_t *)"\xc9\xc9\x07\x00", 4, true, 0, &out), 0);
    assert_string_equal(zh_buf_cstr(&out), "Hello");
    zh_buf_reset(&out);
    /* Our deflater produces the RFC's bytes for a first "Hello". */
    assert_int_equal(zh_wsd_deflate(&d, (const uint8_t *)"Hello", 5, true, &out), 0);
    assert_int_equal(out.len, 7);
    assert_memory_equal(out.data, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7);
    zh_buf_reset(&out);
    /* Corrupt data: 1007's error. */
    assert_int_equal(inflate_str(&d, "\xff\xff\xff\xff", 4, &out), ZH_E_PARSE);
    zh_buf_free(&out);
    zh_wsd_free(&d);
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    /* Compressible but not trivial: words from a small alphabet. */
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245 + 12345;
        p[i] = (uint8_t)("abcde fghij\n"[(seed >> 16) % 12]);
    }
}

/* Send messages from one side's deflater to the other's inflater, for every parameter set, in
 * bulk, fragmented, and byte by byte. */
static void test_round_trips(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, 5, 100, 5000, 70000, 300000};
    uint8_t *msg = malloc(300000);
    for (int combo = 0; combo < 16; combo++) {
        struct zh_wsd_params p = {
            .server_no_context_takeover = combo & 1,
            .client_no_context_takeover = combo & 2,
            .server_max_window_bits = (combo & 4) ? 9 : 15,
            .client_max_window_bits = (combo & 8) ? 10 : 15,
        };
        struct zh_wsd srv, cli;
        assert_int_equal(zh_wsd_init(&srv, &p, true), 0);
        assert_int_equal(zh_wsd_init(&cli, &p, false), 0);
        for (int dir = 0; dir < 2; dir++) {
            struct zh_wsd *tx = dir ? &cli : &srv, *rx = dir ? &srv : &cli;
            for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
                for (int mode = 0; mode < 3; mode++) {
                    size_t n = sizes[s];
                    if (mode == 2 && n > 5000)
                        continue; /* byte by byte: keep it quick */
                    fill(msg, n, (unsigned)(combo * 100 + s));
                    struct zh_buf wire = {0}, out = {0};
                    if (mode == 1 && n > 3) { /* three fragments */
                        assert_int_equal(zh_wsd_deflate(tx, msg, n / 3, false, &wire), 0);
                        size_t f1 = wire.len;
                        assert_int_equal(zh_wsd_deflate(tx, msg + n / 3, n / 3, false, &wire), 0);
                        size_t f2 = wire.len;
                        assert_int_equal(
                            zh_wsd_deflate(tx, msg + 2 * (n / 3), n - 2 * (n / 3), true, &wire), 0);
                        assert_int_equal(zh_wsd_inflate(rx, wire.data, f1, false, 0, &out), 0);
                        assert_int_equal(
                            zh_wsd_inflate(rx, wire.data + f1, f2 - f1, false, 0, &out), 0);
                        assert_int_equal(
                            zh_wsd_inflate(rx, wire.data + f2, wire.len - f2, true, 0, &out), 0);
                    } else {
                        assert_int_equal(zh_wsd_deflate(tx, msg, n, true, &wire), 0);
                        assert_true(wire.len > 0);
                        if (n == 0)
                            assert_int_equal(wire.data[0], 0);
                        if (mode == 2) {
                            for (size_t i = 0; i < wire.len; i++)
                                assert_int_equal(zh_wsd_inflate(rx, wire.data + i, 1,
                                                                i + 1 == wire.len, 0, &out),
                                                 0);
                        } else {
                            assert_int_equal(zh_wsd_inflate(rx, wire.data, wire.len, true, n, &out),
                                             0);
                        }
                    }
                    assert_int_equal(out.len, n);
                    if (n)
                        assert_memory_equal(out.data, msg, n);
                    zh_buf_free(&wire);
                    zh_buf_free(&out);
                }
            }
        }
        zh_wsd_free(&srv);
        zh_wsd_free(&cli);
    }
    free(msg);
}

/* A bomb: 64 MB of zeros compress to ~64 KB; inflating with a 1 MiB bound stops right after
 * the bound (never buffers the rest), in bulk and byte by byte; the bound exactly met is fine. */
static void test_bomb(void **state)
{
    (void)state;
    struct zh_wsd_params p = {.server_no_context_takeover = true,
                              .client_no_context_takeover = true,
                              .server_max_window_bits = 15,
                              .client_max_window_bits = 15};
    struct zh_wsd tx, rx;
    assert_int_equal(zh_wsd_init(&tx, &p, false), 0);
    assert_int_equal(zh_wsd_init(&rx, &p, true), 0);
    const size_t piece = 1 << 20, total = 64;
    uint8_t *zeros = calloc(1, piece);
    struct zh_buf wire = {0}, out = {0};
    for (size_t i = 0; i < total; i++)
        assert_int_equal(zh_wsd_deflate(&tx, zeros, piece, i + 1 == total, &wire), 0);
    assert_true(wire.len < 100 * 1024);
    const uint64_t max = 1 << 20;
    assert_int_equal(zh_wsd_inflate(&rx, wire.data, wire.len, true, max, &out), ZH_E_TOO_LARGE);
    assert_true(out.len > max && out.len <= max + 16384);
    zh_buf_free(&out);
    /* Byte by byte: the error comes after only a few KB of input. */
    size_t i;
    int rc = 0;
    for (i = 0; i < wire.len && rc == 0; i++)
        rc = zh_wsd_inflate(&rx, wire.data + i, 1, i + 1 == wire.len, max, &out);
    assert_int_equal(rc, ZH_E_TOO_LARGE);
    assert_true(i < 4096);
    assert_true(out.len <= max + 16384);
    zh_buf_free(&out);
    zh_buf_free(&wire);
    /* Exactly at the bound is fine. */
    assert_int_equal(zh_wsd_deflate(&tx, zeros, piece, true, &wire), 0);
    assert_int_equal(zh_wsd_inflate(&rx, wire.data, wire.len, true, max, &out), 0);
    assert_int_equal(out.len, max);
    zh_buf_free(&out);
    zh_buf_free(&wire);
    free(zeros);
    zh_wsd_free(&tx);
    zh_wsd_free(&rx);
}

/* The inbox both roles use: pieces go on only as credits allow, an empty last piece still ends
 * the message, and text is checked as UTF-8 across pieces. */
static void test_inbox(void **state)
{
    (void)state;
    struct zh_wsd_params p = {.server_max_window_bits = 15, .client_max_window_bits = 15};
    struct zh_wsd tx, rx;
    assert_int_equal(zh_wsd_init(&tx, &p, false), 0);
    assert_int_equal(zh_wsd_init(&rx, &p, true), 0);
    struct zh_wsd_inbox q = {0};
    struct zh_buf wire = {0};
    const char *why = NULL;
    const uint8_t *d;
    size_t n;
    bool more;
    assert_false(zh_wsd_inbox_pending(&q));
    assert_int_equal(zh_wsd_deflate(&tx, (const uint8_t *)"hello world", 11, true, &wire), 0);
    assert_int_equal(
        zh_wsd_inbox_feed(&q, &rx, ZH_WS_TEXT, true, true, wire.data, wire.len, 0, &why), 0);
    assert_int_equal(q.type, ZH_WS_TEXT);
    assert_true(zh_wsd_inbox_pending(&q));
    assert_false(zh_wsd_inbox_next(&q, 0, &d, &n, &more)); /* no credits: nothing goes */
    assert_true(zh_wsd_inbox_next(&q, 5, &d, &n, &more));
    assert_int_equal(n, 5);
    assert_true(more);
    assert_memory_equal(d, "hello", 5);
    zh_wsd_inbox_consume(&q, n, more);
    assert_true(zh_wsd_inbox_next(&q, 100, &d, &n, &more));
    assert_int_equal(n, 6);
    assert_false(more);
    assert_memory_equal(d, " world", 6);
    zh_wsd_inbox_consume(&q, n, more);
    assert_false(zh_wsd_inbox_pending(&q));
    zh_wsd_inbox_trim(&q, 0);
    /* An empty message: its last piece goes with no credits at all. */
    zh_buf_reset(&wire);
    assert_int_equal(zh_wsd_deflate(&tx, NULL, 0, true, &wire), 0);
    assert_int_equal(
        zh_wsd_inbox_feed(&q, &rx, ZH_WS_BINARY, true, true, wire.data, wire.len, 0, &why), 0);
    assert_true(zh_wsd_inbox_next(&q, 0, &d, &n, &more));
    assert_int_equal(n, 0);
    assert_false(more);
    zh_wsd_inbox_consume(&q, n, more);
    assert_false(zh_wsd_inbox_pending(&q));
    /* Text split inside a UTF-8 sequence is fine; a message ending inside one is 1007. */
    zh_buf_reset(&wire);
    assert_int_equal(zh_wsd_deflate(&tx, (const uint8_t *)"\xc3", 1, false, &wire), 0);
    assert_int_equal(
        zh_wsd_inbox_feed(&q, &rx, ZH_WS_TEXT, true, false, wire.data, wire.len, 0, &why), 0);
    zh_buf_reset(&wire);
    assert_int_equal(zh_wsd_deflate(&tx, NULL, 0, true, &wire), 0);
    assert_int_equal(
        zh_wsd_inbox_feed(&q, &rx, ZH_WS_TEXT, false, true, wire.data, wire.len, 0, &why),
        ZH_WS_CLOSE_BAD_DATA);
    assert_string_equal(why, "compressed text is not UTF-8");
    zh_wsd_inbox_free(&q);
    /* Corrupt data: 1007; beyond the limit: 1009. */
    struct zh_wsd rx2;
    assert_int_equal(zh_wsd_init(&rx2, &p, true), 0);
    struct zh_wsd_inbox q2 = {0};
    assert_int_equal(zh_wsd_inbox_feed(&q2, &rx2, ZH_WS_BINARY, true, true,
                                       (const uint8_t *)"\xff\xff\xff", 3, 0, &why),
                     ZH_WS_CLOSE_BAD_DATA);
    assert_string_equal(why, "corrupt compressed data");
    zh_wsd_free(&rx2);
    zh_wsd_inbox_free(&q2);
    assert_int_equal(zh_wsd_init(&rx2, &p, true), 0);
    uint8_t zeros[4096] = {0};
    zh_buf_reset(&wire);
    assert_int_equal(zh_wsd_deflate(&tx, zeros, sizeof(zeros), true, &wire), 0);
    assert_int_equal(
        zh_wsd_inbox_feed(&q2, &rx2, ZH_WS_BINARY, true, true, wire.data, wire.len, 1024, &why),
        ZH_WS_CLOSE_TOO_BIG);
    zh_wsd_inbox_free(&q2);
    zh_wsd_free(&rx2);
    zh_buf_free(&wire);
    zh_wsd_free(&tx);
    zh_wsd_free(&rx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_negotiation),
        cmocka_unit_test(test_client_accept),
        cmocka_unit_test(test_rfc_examples),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_bomb),
        cmocka_unit_test(test_inbox),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
