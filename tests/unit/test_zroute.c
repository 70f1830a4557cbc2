/* link: zh_rt */
/* Unit tests for shared/rt/zroute.c: the server-role "<N>-" prefix of zhttpd's own ids, the
 * client-role hash of (from, id), multi-id packets naming several workers, and the negative codes
 * for payloads that can't be routed. Packets are written out by hand as "T" + tnetstring. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "shared/proto/buf.h"
#include "shared/proto/err.h"
#include "shared/proto/jformat.h"
#include "shared/rt/zroute.h"
#include "shared/rt/zmsg.h"

/* (pointer, length) of a string literal, without its NUL */
#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

/* Single-id server-role packets. */
#define SRV_0      "T35:4:from,2:h1,2:id,5:0-1-a,3:seq,1:0#}"
#define SRV_1      "T15:2:id,7:1-0-abc,}"
#define SRV_3      "T34:2:id,5:3-7-z,4:type,10:keep-alive,}"
#define SRV_63     "T14:2:id,6:63-1-q,}"
#define SRV_4      "T13:2:id,5:4-0-a,}"
#define SRV_BAD    "T13:2:id,5:x-1-a,}"
#define SRV_NODASH "T9:2:id,1:1,}"
/* Client-role packets. */
#define CLI         "T35:4:from,4:req1,2:id,3:abc,3:seq,1:0#}"
#define CLI_NOFROM  "T11:2:id,3:abc,}"
#define CLI_FROMINT "T22:4:from,1:7#2:id,3:abc,}"
/* Multi-id packets. */
#define MULTI                                                                                  \
    "T95:4:from,1:h,2:id,54:23:2:id,5:0-0-1,3:seq,1:5#}23:2:id,5:2-3-a,3:seq,1:2#}]4:type,10:" \
    "keep-"                                                                                    \
    "alive,}"
#define MULTI_DUP     "T43:2:id,34:13:2:id,5:1-0-1,}13:2:id,5:1-3-a,}]}"
#define MULTI_ONEBAD  "T40:2:id,31:10:2:id,2:zz,}13:2:id,5:3-3-a,}]}"
#define MULTI_ALLBAD  "T40:2:id,31:10:2:id,2:zz,}13:2:id,5:9-3-a,}]}"
#define MULTI_EMPTY   "T8:2:id,0:]}"
#define MULTI_NOTDICT "T16:2:id,8:5:0-1-a,]}"
#define MULTI_NOID    "T23:2:id,14:10:3:seq,1:1#}]}"
#define MULTI_IDINT   "T21:2:id,12:9:2:id,1:5#}]}"
#define MULTI_CLI     "T53:4:from,4:req1,2:id,30:11:2:id,3:abc,}11:2:id,3:def,}]}"
/* Packets without a usable id. */
#define NOID      "T22:4:from,2:h1,3:seq,1:0#}"
#define IDINT     "T10:2:id,2:12#}"
#define IDDICT    "T22:2:id,13:2:id,5:0-1-a,}}"
#define EMPTYDICT "T0:}"

static int prefix(const char *id, unsigned nworkers)
{
    return zh_zroute_prefix((const uint8_t *)id, strlen(id), nworkers);
}

static unsigned hash(const char *from, const char *id, unsigned nworkers)
{
    return zh_zroute_hash((const uint8_t *)from, strlen(from), (const uint8_t *)id, strlen(id),
                          nworkers);
}

/* Route and return the result; *mask gets the workers. */
static int route(enum zh_role role, const uint8_t *p, size_t n, unsigned nworkers, uint64_t *mask)
{
    *mask = 0xdeadbeefu; /* must be overwritten, on success and on failure */
    return zh_zroute(role, p, n, nworkers, mask);
}

/* ---- zh_zroute_prefix ---- */

static void prefix_names_the_worker(void **state)
{
    (void)state;
    assert_int_equal(prefix("0-1-a", 4), 0);
    assert_int_equal(prefix("1-0-abc", 4), 1);
    assert_int_equal(prefix("3-99-z", 4), 3);
    assert_int_equal(prefix("12-1-x", 16), 12);
    assert_int_equal(prefix("63-1-x", 64), 63);
    assert_int_equal(prefix("0-", 1), 0); /* a bare prefix still names the worker */
}

static void prefix_at_or_past_the_worker_count_is_rejected(void **state)
{
    (void)state;
    assert_int_equal(prefix("4-0-a", 4), -1);
    assert_int_equal(prefix("5-0-a", 4), -1);
    assert_int_equal(prefix("64-0-a", 64), -1);
    assert_int_equal(prefix("0-0-a", 0), -1);
    assert_int_equal(prefix("9999-0-a", 64), -1);
}

static void prefix_without_digits_or_dash_is_rejected(void **state)
{
    (void)state;
    assert_int_equal(prefix("", 4), -1);
    assert_int_equal(prefix("-1-a", 4), -1);
    assert_int_equal(prefix("a-1", 4), -1);
    assert_int_equal(prefix("x-1-a", 4), -1);
    assert_int_equal(prefix("1", 4), -1);     /* no '-' at all */
    assert_int_equal(prefix("12", 16), -1);   /* digits to the end */
    assert_int_equal(prefix("1a-0", 4), -1);  /* junk between digits and '-' */
    assert_int_equal(prefix("1_0-a", 4), -1); /* another separator */
    assert_int_equal(prefix(" 1-a", 4), -1);
    assert_int_equal(prefix("+1-a", 4), -1);
}

static void prefix_with_too_many_digits_is_rejected_without_overflow(void **state)
{
    (void)state;
    assert_int_equal(prefix("12345-0-a", 64), -1);
    assert_int_equal(prefix("4294967297-0-a", 64), -1); /* 2^32 + 1 would wrap to 1 */
    assert_int_equal(prefix("99999999999999999999-x", 64), -1);
}

static void prefix_reads_only_id_len_bytes(void **state)
{
    (void)state;
    /* "1-..." cut to one byte is "1": no dash within the id */
    assert_int_equal(zh_zroute_prefix((const uint8_t *)"1-0-a", 1, 4), -1);
    assert_int_equal(zh_zroute_prefix((const uint8_t *)"1-0-a", 2, 4), 1);
    assert_int_equal(zh_zroute_prefix((const uint8_t *)"", 0, 4), -1);
}

/* ---- zh_zroute_hash ---- */

static void hash_is_stable_and_in_range(void **state)
{
    (void)state;
    for (unsigned nw = 1; nw <= 64; nw++) {
        unsigned a = hash("req1", "abc", nw);
        assert_true(a < nw);
        assert_int_equal(hash("req1", "abc", nw), a);
    }
    assert_int_equal(hash("req1", "abc", 1), 0);
    assert_int_equal(hash("req1", "abc", 0), 0); /* no workers: defined, not a division by 0 */
}

static void hash_is_fixed_across_builds(void **state)
{
    (void)state;
    /* FNV-1a of "req1" 0xff "abc": sessions must keep their worker across restarts and versions
     * only if the function is pinned; pin it. */
    uint64_t h = 1469598103934665603u;
    const char *from = "req1", *id = "abc";
    for (const char *p = from; *p; p++) {
        h = (h ^ (uint8_t)*p) * 1099511628211u;
    }
    h = (h ^ 0xffu) * 1099511628211u;
    for (const char *p = id; *p; p++) {
        h = (h ^ (uint8_t)*p) * 1099511628211u;
    }
    assert_int_equal(hash("req1", "abc", 64), (unsigned)(h % 64));
    assert_int_equal(hash("req1", "abc", 7), (unsigned)(h % 7));
}

static void hash_depends_on_from(void **state)
{
    (void)state;
    unsigned seen = 0;
    uint64_t workers = 0;
    char from[32];
    for (int i = 0; i < 256; i++) {
        snprintf(from, sizeof(from), "requester-%d", i);
        workers |= UINT64_C(1) << hash(from, "same-id", 64);
    }
    for (uint64_t m = workers; m; m &= m - 1) {
        seen++;
    }
    assert_true(seen > 32); /* 256 requesters over 64 workers spread wide */
}

static void hash_depends_on_id(void **state)
{
    (void)state;
    unsigned seen = 0;
    uint64_t workers = 0;
    char id[32];
    for (int i = 0; i < 256; i++) {
        snprintf(id, sizeof(id), "id-%d", i);
        workers |= UINT64_C(1) << hash("same-from", id, 64);
    }
    for (uint64_t m = workers; m; m &= m - 1) {
        seen++;
    }
    assert_true(seen > 32);
}

static void hash_separates_from_and_id(void **state)
{
    (void)state;
    /* ("ab", "c") and ("a", "bc") are different sessions; the separator keeps them apart. */
    assert_int_not_equal(hash("ab", "c", 0xffffffffu), hash("a", "bc", 0xffffffffu));
    assert_int_not_equal(hash("", "abc", 0xffffffffu), hash("abc", "", 0xffffffffu));
}

static void hash_spreads_sessions_over_every_worker(void **state)
{
    (void)state;
    unsigned count[8] = {0};
    char id[32];
    for (int i = 0; i < 8000; i++) {
        snprintf(id, sizeof(id), "%d", i);
        count[hash("pushpin_1", id, 8)]++;
    }
    for (int w = 0; w < 8; w++) {
        assert_true(count[w] > 700 && count[w] < 1300);
    }
}

/* ---- zh_zroute: server role ---- */

static void server_packet_goes_to_its_prefix_worker(void **state)
{
    (void)state;
    uint64_t mask;
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(SRV_0), 4, &mask), 1);
    assert_int_equal(mask, UINT64_C(1) << 0);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(SRV_1), 4, &mask), 1);
    assert_int_equal(mask, UINT64_C(1) << 1);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(SRV_3), 4, &mask), 1);
    assert_int_equal(mask, UINT64_C(1) << 3);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(SRV_63), 64, &mask), 1);
    assert_true(mask == UINT64_C(1) << 63);
}

static void server_packet_with_a_bad_prefix_is_unroutable(void **state)
{
    (void)state;
    uint64_t mask;
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(SRV_4), 4, &mask), ZH_E_UNKNOWN_SESSION);
    assert_int_equal(mask, 0);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(SRV_BAD), 4, &mask), ZH_E_UNKNOWN_SESSION);
    assert_int_equal(mask, 0);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(SRV_NODASH), 4, &mask), ZH_E_UNKNOWN_SESSION);
    assert_int_equal(mask, 0);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(SRV_63), 63, &mask), ZH_E_UNKNOWN_SESSION);
    assert_int_equal(mask, 0);
}

static void server_multi_id_packet_names_every_worker(void **state)
{
    (void)state;
    uint64_t mask;
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(MULTI), 4, &mask), 2);
    assert_int_equal(mask, (UINT64_C(1) << 0) | (UINT64_C(1) << 2));
}

static void server_multi_id_packet_counts_each_worker_once(void **state)
{
    (void)state;
    uint64_t mask;
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(MULTI_DUP), 4, &mask), 1);
    assert_int_equal(mask, UINT64_C(1) << 1);
}

static void server_multi_id_packet_skips_bad_entries(void **state)
{
    (void)state;
    uint64_t mask;
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(MULTI_ONEBAD), 4, &mask), 1);
    assert_int_equal(mask, UINT64_C(1) << 3);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(MULTI_ALLBAD), 4, &mask), ZH_E_UNKNOWN_SESSION);
    assert_int_equal(mask, 0);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(MULTI_EMPTY), 4, &mask), ZH_E_UNKNOWN_SESSION);
    assert_int_equal(mask, 0);
}

static void multi_id_entries_of_the_wrong_shape_are_type_errors(void **state)
{
    (void)state;
    uint64_t mask;
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(MULTI_NOTDICT), 4, &mask), ZH_E_TYPE);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(MULTI_NOID), 4, &mask), ZH_E_TYPE);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(MULTI_IDINT), 4, &mask), ZH_E_TYPE);
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT(MULTI_NOTDICT), 4, &mask), ZH_E_TYPE);
}

/* ---- zh_zroute: client role ---- */

static void client_packet_goes_to_the_hash_of_from_and_id(void **state)
{
    (void)state;
    for (unsigned nw = 1; nw <= 64; nw++) {
        uint64_t mask;
        assert_int_equal(route(ZH_ROLE_CLIENT, LIT(CLI), nw, &mask), 1);
        assert_true(mask == UINT64_C(1) << hash("req1", "abc", nw));
    }
}

static void client_packet_ignores_id_prefixes(void **state)
{
    (void)state;
    /* A requester's id "0-1-a" is just a string in the client role. */
    uint64_t mask;
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT(SRV_0), 64, &mask), 1);
    assert_true(mask == UINT64_C(1) << hash("h1", "0-1-a", 64));
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT(SRV_BAD), 64, &mask), 1);
}

static void client_packet_without_a_string_from_hashes_an_empty_from(void **state)
{
    (void)state;
    uint64_t mask;
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT(CLI_NOFROM), 64, &mask), 1);
    assert_true(mask == UINT64_C(1) << hash("", "abc", 64));
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT(CLI_FROMINT), 64, &mask), 1);
    assert_true(mask == UINT64_C(1) << hash("", "abc", 64));
}

static void client_multi_id_packet_hashes_each_id_with_from(void **state)
{
    (void)state;
    uint64_t mask;
    uint64_t want =
        (UINT64_C(1) << hash("req1", "abc", 64)) | (UINT64_C(1) << hash("req1", "def", 64));
    int n = route(ZH_ROLE_CLIENT, LIT(MULTI_CLI), 64, &mask);
    assert_true(mask == want);
    assert_int_equal(n, want == (UINT64_C(1) << hash("req1", "abc", 64)) ? 1 : 2);
}

/* ---- zh_zroute: unroutable payloads ---- */

static void payload_without_the_t_prefix_is_a_parse_error(void **state)
{
    (void)state;
    uint64_t mask;
    assert_int_equal(route(ZH_ROLE_SERVER, (const uint8_t *)"", 0, 4, &mask), ZH_E_PARSE);
    assert_int_equal(mask, 0);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT("X15:2:id,7:1-0-abc,}"), 4, &mask), ZH_E_PARSE);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT("15:2:id,7:1-0-abc,}"), 4, &mask), ZH_E_PARSE);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT("t15:2:id,7:1-0-abc,}"), 4, &mask), ZH_E_PARSE);
    assert_int_equal(mask, 0);
}

/* ---- zh_zroute: Zurl's legacy J (JSON) format ---- */

static void json_packet_goes_to_the_hash_of_from_and_id(void **state)
{
    (void)state;
    for (unsigned nw = 1; nw <= 64; nw++) {
        uint64_t mask;
        assert_int_equal(
            route(ZH_ROLE_CLIENT, LIT("J{\"from\":\"req1\",\"id\":\"abc\",\"seq\":0}"), nw, &mask),
            1);
        assert_true(mask == UINT64_C(1) << hash("req1", "abc", nw));
    }
    uint64_t mask;
    /* the same session in T and J lands on the same worker */
    uint64_t tmask;
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT(CLI), 7, &tmask), 1);
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT("J{\"id\":\"abc\",\"from\":\"req1\"}"), 7, &mask),
                     1);
    assert_true(mask == tmask);
    /* no (string) from: an empty from, as for T */
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT("J{\"id\":\"abc\"}"), 64, &mask), 1);
    assert_true(mask == UINT64_C(1) << hash("", "abc", 64));
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT("J{\"from\":7,\"id\":\"abc\"}"), 64, &mask), 1);
    assert_true(mask == UINT64_C(1) << hash("", "abc", 64));
    /* UTF-8 ids hash as their bytes */
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT("J{\"from\":\"r\",\"id\":\"\\u00e9\"}"), 64, &mask),
                     1);
    assert_true(mask == UINT64_C(1) << hash("r", "\xc3\xa9", 64));
}

static void json_multi_id_packet_names_every_worker(void **state)
{
    (void)state;
    uint64_t mask;
    uint64_t want =
        (UINT64_C(1) << hash("req1", "abc", 64)) | (UINT64_C(1) << hash("req1", "def", 64));
    int n = route(ZH_ROLE_CLIENT,
                  LIT("J{\"from\":\"req1\",\"id\":[{\"id\":\"abc\",\"seq\":1},{\"id\":\"def\"}]}"),
                  64, &mask);
    assert_true(mask == want);
    assert_int_equal(n, want == (UINT64_C(1) << hash("req1", "abc", 64)) ? 1 : 2);
    /* server role: the prefix of each id */
    assert_int_equal(
        route(ZH_ROLE_SERVER, LIT("J{\"id\":[{\"id\":\"0-1-a\"},{\"id\":\"2-0-b\"}]}"), 4, &mask),
        2);
    assert_int_equal(mask, (UINT64_C(1) << 0) | (UINT64_C(1) << 2));
}

static void bad_json_packets_are_unroutable(void **state)
{
    (void)state;
    uint64_t mask;
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT("J"), 4, &mask), ZH_E_PARSE);
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT("J{\"id\":\"abc\""), 4, &mask), ZH_E_PARSE);
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT("J[\"id\",\"abc\"]"), 4, &mask), ZH_E_PARSE);
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT("J{\"id\":\"abc\"} x"), 4, &mask), ZH_E_PARSE);
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT("J{\"from\":\"a\"}"), 4, &mask), ZH_E_MISSING);
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT("J{\"id\":5}"), 4, &mask), ZH_E_TYPE);
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT("J{\"id\":[5]}"), 4, &mask), ZH_E_TYPE);
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT("J{\"id\":[{\"seq\":1}]}"), 4, &mask), ZH_E_TYPE);
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT("J{\"id\":[]}"), 4, &mask), ZH_E_UNKNOWN_SESSION);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT("J{\"id\":\"x-1\"}"), 4, &mask),
                     ZH_E_UNKNOWN_SESSION);
    assert_int_equal(mask, 0);
}

static void malformed_tnetstrings_are_parse_errors(void **state)
{
    (void)state;
    uint64_t mask;
    assert_int_equal(route(ZH_ROLE_SERVER, LIT("T"), 4, &mask), ZH_E_PARSE);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT("T15:2:id,7:1-0-abc,"), 4, &mask), ZH_E_PARSE);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT("T16:2:id,7:1-0-abc,}"), 4, &mask), ZH_E_PARSE);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT("T14:2:id,7:1-0-abc,}"), 4, &mask), ZH_E_PARSE);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(SRV_1 "x"), 4, &mask), ZH_E_PARSE); /* trailing */
    assert_int_equal(route(ZH_ROLE_SERVER, LIT("T5:1-0-a,"), 4, &mask),
                     ZH_E_PARSE); /* not a dict */
    assert_int_equal(route(ZH_ROLE_SERVER, LIT("T12:5:0-1-a,]"), 4, &mask), ZH_E_PARSE);
    assert_int_equal(mask, 0);
}

static void every_truncation_of_a_packet_fails_cleanly(void **state)
{
    (void)state;
    const char *p = MULTI;
    size_t n = strlen(p);
    for (size_t k = 0; k < n; k++) {
        uint64_t mask;
        int r = route(ZH_ROLE_SERVER, (const uint8_t *)p, k, 4, &mask);
        assert_true(r < 0);
        assert_int_equal(mask, 0);
    }
}

static void packet_without_an_id_is_missing(void **state)
{
    (void)state;
    uint64_t mask;
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(NOID), 4, &mask), ZH_E_MISSING);
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT(NOID), 4, &mask), ZH_E_MISSING);
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT(EMPTYDICT), 4, &mask), ZH_E_MISSING);
    assert_int_equal(mask, 0);
}

static void id_of_the_wrong_type_is_a_type_error(void **state)
{
    (void)state;
    uint64_t mask;
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(IDINT), 4, &mask), ZH_E_TYPE);
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT(IDINT), 4, &mask), ZH_E_TYPE);
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(IDDICT), 4, &mask), ZH_E_TYPE);
    assert_int_equal(mask, 0);
}

static void worker_count_outside_1_to_64_is_rejected(void **state)
{
    (void)state;
    uint64_t mask;
    assert_int_equal(route(ZH_ROLE_SERVER, LIT(SRV_0), 0, &mask), ZH_E_PARSE);
    assert_int_equal(mask, 0);
    assert_int_equal(route(ZH_ROLE_CLIENT, LIT(CLI), 65, &mask), ZH_E_PARSE);
    assert_int_equal(mask, 0);
}

/* The bridge parses a J packet once: zh_zroute_json keeps the strict parse for the worker, whose
 * conversion of it is the same T packet as converting the raw bytes; a T packet, and a J packet
 * with a repeated key (routed by a lenient parse, refused by the worker), keep none. */
static void json_parse_is_handed_to_the_worker(void **state)
{
    (void)state;
    static const char j[] =
        "J{\"from\":\"r1\",\"id\":\"s1\",\"seq\":0,\"method\":\"GET\",\"uri\":\"http://x/\"}";
    uint64_t mask;
    json_t *json = NULL;
    assert_int_equal(zh_zroute_json(ZH_ROLE_CLIENT, LIT(j), 4, &mask, &json), 1);
    assert_non_null(json);
    assert_int_equal(mask, UINT64_C(1) << hash("r1", "s1", 4));
    struct zh_buf a = {0}, b = {0};
    const char *reason = NULL;
    assert_int_equal(zh_jformat_json_to_tnet(json, &a, &reason), 0);
    assert_int_equal(zh_jformat_to_tnet(LIT(j), &b, &reason), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    zh_buf_free(&a);
    zh_buf_free(&b);
    /* The message owns the reference: zh_zmsg_free drops it (ASan/LSan would see a leak). */
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_C_IN, 16);
    m->json = json;
    struct zh_zmsg *copy = zh_zmsg_dup(m);
    assert_null(copy->json);
    zh_zmsg_free(copy);
    zh_zmsg_free(m);

    static const char dup[] = "J{\"from\":\"r1\",\"id\":\"s1\",\"id\":\"s2\"}";
    json = (json_t *)&json;
    assert_int_equal(zh_zroute_json(ZH_ROLE_CLIENT, LIT(dup), 4, &mask, &json), 1);
    assert_null(json);
    assert_int_equal(mask, UINT64_C(1) << hash("r1", "s2", 4));
    assert_int_equal(zh_jformat_to_tnet(LIT(dup), &a, &reason), ZH_E_PARSE);
    assert_string_equal(reason, "duplicate key in a JSON object");
    zh_buf_free(&a);

    static const char t[] = "T22:4:from,2:r1,2:id,2:s1,}";
    json = (json_t *)&json;
    assert_int_equal(zh_zroute_json(ZH_ROLE_CLIENT, LIT(t), 4, &mask, &json), 1);
    assert_null(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(prefix_names_the_worker),
        cmocka_unit_test(prefix_at_or_past_the_worker_count_is_rejected),
        cmocka_unit_test(prefix_without_digits_or_dash_is_rejected),
        cmocka_unit_test(prefix_with_too_many_digits_is_rejected_without_overflow),
        cmocka_unit_test(prefix_reads_only_id_len_bytes),
        cmocka_unit_test(hash_is_stable_and_in_range),
        cmocka_unit_test(hash_is_fixed_across_builds),
        cmocka_unit_test(hash_depends_on_from),
        cmocka_unit_test(hash_depends_on_id),
        cmocka_unit_test(hash_separates_from_and_id),
        cmocka_unit_test(hash_spreads_sessions_over_every_worker),
        cmocka_unit_test(server_packet_goes_to_its_prefix_worker),
        cmocka_unit_test(server_packet_with_a_bad_prefix_is_unroutable),
        cmocka_unit_test(server_multi_id_packet_names_every_worker),
        cmocka_unit_test(server_multi_id_packet_counts_each_worker_once),
        cmocka_unit_test(server_multi_id_packet_skips_bad_entries),
        cmocka_unit_test(multi_id_entries_of_the_wrong_shape_are_type_errors),
        cmocka_unit_test(client_packet_goes_to_the_hash_of_from_and_id),
        cmocka_unit_test(client_packet_ignores_id_prefixes),
        cmocka_unit_test(client_packet_without_a_string_from_hashes_an_empty_from),
        cmocka_unit_test(client_multi_id_packet_hashes_each_id_with_from),
        cmocka_unit_test(payload_without_the_t_prefix_is_a_parse_error),
        cmocka_unit_test(malformed_tnetstrings_are_parse_errors),
        cmocka_unit_test(every_truncation_of_a_packet_fails_cleanly),
        cmocka_unit_test(packet_without_an_id_is_missing),
        cmocka_unit_test(id_of_the_wrong_type_is_a_type_error),
        cmocka_unit_test(worker_count_outside_1_to_64_is_rejected),
        cmocka_unit_test(json_packet_goes_to_the_hash_of_from_and_id),
        cmocka_unit_test(json_multi_id_packet_names_every_worker),
        cmocka_unit_test(bad_json_packets_are_unroutable),
        cmocka_unit_test(json_parse_is_handed_to_the_worker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
