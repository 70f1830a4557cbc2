/* link: zh_proto */
/* Unit tests for shared/proto/zhttp.c: the ZHTTP.md §5.2 examples decoded field by field and
 * re-encoded byte for byte, every field, multi-id, ext.multi, limits, and the error reasons. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shared/proto/buf.h"
#include "shared/proto/err.h"
#include "shared/proto/tnetstring.h"
#include "shared/proto/zhttp.h"

/* ZHTTP.md §5.2 / §5.3, exactly as printed (PUB frames without their "<addr> " prefix). */
#define EX_SERVER_GET                                                                      \
    "T181:4:from,6:zhttpd,2:id,5:0-0-1,3:seq,1:0#3:ext,15:5:multi,4:true!}6:method,3:GET," \
    "3:uri,19:http://example.com/,7:headers,26:22:4:Host,11:example.com,]]7:credits,"      \
    "4:8192#6:stream,4:true!}"
#define EX_HANDLER_RESPONSE                                                                  \
    "T122:4:from,2:h1,2:id,5:0-0-1,3:seq,1:0#4:code,3:200#6:reason,2:OK,7:headers,34:30:12:" \
    "Content-Type,10:text/plain,]]4:body,2:hi,}"
#define EX_CREDIT "T69:4:from,6:zhttpd,2:id,5:0-0-1,3:seq,1:1#4:type,6:credit,7:credits,1:3#}"
#define EX_BODY   "T66:4:from,6:zhttpd,2:id,5:0-0-1,3:seq,1:1#4:body,3:abc,4:more,4:true!}"
#define EX_CLIENT_REQUEST                                                                    \
    "T112:4:from,4:app1,2:id,2:r1,3:seq,1:0#6:method,3:GET,3:uri,20:https://example.com/,6:" \
    "stream,4:true!7:credits,4:8192#}"
#define EX_ACK \
    "T82:4:from,6:zhttpd,2:id,2:r1,3:seq,1:0#3:ext,15:5:multi,4:true!}4:type,10:keep-alive,}"
#define EX_FAILURE                                                                             \
    "T91:4:from,6:zhttpd,2:id,2:r1,3:seq,1:1#4:type,5:error,9:condition,24:remote-connection-" \
    "failed,}"
#define EX_REQ_REQUEST  "T53:2:id,1:x,6:method,3:GET,3:uri,19:http://example.com/,}"
#define EX_REQ_RESPONSE "T59:2:id,1:x,4:code,3:200#6:reason,2:OK,7:headers,0:]4:body,0:,}"
#define EX_BATCHED_KEEPALIVE                                                                      \
    "T125:4:from,6:zhttpd,2:id,54:23:2:id,5:0-0-1,3:seq,1:5#}23:2:id,5:1-3-a,3:seq,1:2#}]4:type," \
    "10:keep-alive,3:ext,15:5:multi,4:true!}}"

static struct zh_zhttp_packet pkt_a, pkt_b; /* 8 KB each: keep them off the stack */

static const uint8_t *u8(const char *s)
{
    return (const uint8_t *)s;
}

static int decode_s(const char *s, struct zh_zhttp_packet *pkt, struct zh_zhttp_error *err)
{
    return zh_zhttp_decode(u8(s), strlen(s), pkt, err);
}

static void assert_span(struct zh_span s, const char *want)
{
    assert_non_null(s.p);
    assert_int_equal(strlen(want), s.n);
    assert_memory_equal(want, s.p, s.n);
}

static void assert_absent(struct zh_span s)
{
    assert_null(s.p);
}

/* "T" + a dict around the given encoded key/value pairs, in b (NUL-terminated). */
static const char *mk(struct zh_buf *b, const char *pairs)
{
    zh_buf_reset(b);
    zh_buf_putc(b, 'T');
    zh_tns_put_prefix(b, strlen(pairs));
    zh_buf_puts(b, pairs);
    zh_buf_putc(b, '}');
    return zh_buf_cstr(b);
}

/* The bytes pkt_a was last decoded from by reason_of(); its spans point here. */
static struct zh_buf last_input;

/* Decode the dict of pairs into pkt_a and return the error reason (NULL on success). */
static const char *reason_of(const char *pairs, int *rc_out)
{
    struct zh_zhttp_error err = {0};
    int rc = decode_s(mk(&last_input, pairs), &pkt_a, &err);
    if (rc_out)
        *rc_out = rc;
    if (rc == 0) {
        assert_null(err.reason);
        return NULL;
    }
    assert_non_null(err.reason);
    return err.reason;
}

static void assert_encodes_to(const struct zh_zhttp_packet *pkt, const char *want)
{
    struct zh_buf b = {0};
    zh_zhttp_encode(pkt, &b);
    if (b.len != strlen(want) || memcmp(b.data, want, b.len) != 0)
        fail_msg("encoded\n  %.*s\nwanted\n  %s", (int)b.len, (const char *)b.data, want);
    zh_buf_free(&b);
}

static void set_single_id(struct zh_zhttp_packet *p, const char *id, int64_t seq)
{
    p->n_ids = 1;
    p->ids[0].id = zh_span_str(id);
    p->ids[0].seq = seq;
    p->ids[0].has_seq = seq >= 0;
}

static void add_header(struct zh_zhttp_packet *p, const char *name, const char *value)
{
    p->headers[p->n_headers].name = zh_span_str(name);
    p->headers[p->n_headers].value = zh_span_str(value);
    p->n_headers++;
    p->has |= ZH_ZF_HEADERS;
}

/* ---- the §5.2 examples, decoded ---- */

static void decode_server_get_example(void **state)
{
    (void)state;
    struct zh_zhttp_packet *p = &pkt_a;
    struct zh_zhttp_error err = {0};
    assert_int_equal(0, decode_s(EX_SERVER_GET, p, &err));
    assert_null(err.reason);
    assert_int_equal(ZH_ZHTTP_DATA, p->type);
    assert_span(p->from, "zhttpd");
    assert_int_equal(1, p->n_ids);
    assert_span(p->ids[0].id, "0-0-1");
    assert_true(p->ids[0].has_seq);
    assert_int_equal(0, p->ids[0].seq);
    assert_true(p->has & ZH_ZF_SEQ);
    assert_false(p->has & ZH_ZF_MULTI_ID);
    assert_true(p->has & ZH_ZF_EXT_MULTI);
    assert_true(p->ext_multi);
    assert_span(p->method, "GET");
    assert_span(p->uri, "http://example.com/");
    assert_true(p->has & ZH_ZF_HEADERS);
    assert_int_equal(1, p->n_headers);
    assert_span(p->headers[0].name, "Host");
    assert_span(p->headers[0].value, "example.com");
    assert_true(p->has & ZH_ZF_CREDITS);
    assert_int_equal(8192, p->credits);
    assert_true(p->has & ZH_ZF_STREAM);
    assert_true(p->stream);
    assert_false(p->has & (ZH_ZF_MORE | ZH_ZF_CODE | ZH_ZF_ROUTER_RESP | ZH_ZF_PEER_PORT));
    assert_absent(p->body);
    assert_absent(p->reason);
    assert_absent(p->user_data);
}

static void decode_handler_response_example(void **state)
{
    (void)state;
    struct zh_zhttp_packet *p = &pkt_a;
    assert_int_equal(0, decode_s(EX_HANDLER_RESPONSE, p, NULL));
    assert_span(p->from, "h1");
    assert_span(p->ids[0].id, "0-0-1");
    assert_int_equal(0, p->ids[0].seq);
    assert_true(p->has & ZH_ZF_CODE);
    assert_int_equal(200, p->code);
    assert_span(p->reason, "OK");
    assert_int_equal(1, p->n_headers);
    assert_span(p->headers[0].name, "Content-Type");
    assert_span(p->headers[0].value, "text/plain");
    assert_span(p->body, "hi");
    assert_false(p->has & ZH_ZF_MORE);
    assert_false(p->has & ZH_ZF_EXT_MULTI);
}

static void decode_credit_example(void **state)
{
    (void)state;
    struct zh_zhttp_packet *p = &pkt_a;
    assert_int_equal(0, decode_s(EX_CREDIT, p, NULL));
    assert_int_equal(ZH_ZHTTP_CREDIT, p->type);
    assert_int_equal(1, p->ids[0].seq);
    assert_true(p->has & ZH_ZF_CREDITS);
    assert_int_equal(3, p->credits);
}

static void decode_body_chunk_example(void **state)
{
    (void)state;
    struct zh_zhttp_packet *p = &pkt_a;
    assert_int_equal(0, decode_s(EX_BODY, p, NULL));
    assert_int_equal(ZH_ZHTTP_DATA, p->type);
    assert_span(p->body, "abc");
    assert_true(p->has & ZH_ZF_MORE);
    assert_true(p->more);
}

static void decode_client_request_example(void **state)
{
    (void)state;
    struct zh_zhttp_packet *p = &pkt_a;
    assert_int_equal(0, decode_s(EX_CLIENT_REQUEST, p, NULL));
    assert_span(p->from, "app1");
    assert_span(p->ids[0].id, "r1");
    assert_span(p->method, "GET");
    assert_span(p->uri, "https://example.com/");
    assert_true(p->stream);
    assert_int_equal(8192, p->credits);
    assert_false(p->has & ZH_ZF_HEADERS);
    assert_int_equal(0, p->n_headers);
}

static void decode_ack_and_failure_examples(void **state)
{
    (void)state;
    struct zh_zhttp_packet *p = &pkt_a;
    assert_int_equal(0, decode_s(EX_ACK, p, NULL));
    assert_int_equal(ZH_ZHTTP_KEEP_ALIVE, p->type);
    assert_true(p->ext_multi);
    assert_int_equal(0, decode_s(EX_FAILURE, p, NULL));
    assert_int_equal(ZH_ZHTTP_ERROR, p->type);
    assert_span(p->condition, "remote-connection-failed");
    assert_int_equal(1, p->ids[0].seq);
}

static void decode_req_mode_examples(void **state)
{
    (void)state;
    struct zh_zhttp_packet *p = &pkt_a;
    assert_int_equal(0, decode_s(EX_REQ_REQUEST, p, NULL));
    assert_absent(p->from);
    assert_span(p->ids[0].id, "x");
    assert_false(p->ids[0].has_seq);
    assert_false(p->has & ZH_ZF_SEQ);
    assert_int_equal(0, decode_s(EX_REQ_RESPONSE, p, NULL));
    assert_int_equal(200, p->code);
    assert_true(p->has & ZH_ZF_HEADERS);
    assert_int_equal(0, p->n_headers);
    assert_span(p->body, ""); /* present and empty, not absent */
}

static void decode_batched_keepalive_example(void **state)
{
    (void)state;
    struct zh_zhttp_packet *p = &pkt_a;
    assert_int_equal(0, decode_s(EX_BATCHED_KEEPALIVE, p, NULL));
    assert_true(p->has & ZH_ZF_MULTI_ID);
    assert_false(p->has & ZH_ZF_SEQ);
    assert_int_equal(2, p->n_ids);
    assert_span(p->ids[0].id, "0-0-1");
    assert_true(p->ids[0].has_seq);
    assert_int_equal(5, p->ids[0].seq);
    assert_span(p->ids[1].id, "1-3-a");
    assert_int_equal(2, p->ids[1].seq);
    assert_int_equal(ZH_ZHTTP_KEEP_ALIVE, p->type);
    assert_true(p->ext_multi);
}

/* ---- the §5.2 examples, encoded from hand-built packets ---- */

static void encode_server_get_example(void **state)
{
    (void)state;
    struct zh_zhttp_packet *p = &pkt_a;
    zh_zhttp_packet_init(p);
    p->from = zh_span_str("zhttpd");
    set_single_id(p, "0-0-1", 0);
    p->has |= ZH_ZF_EXT_MULTI | ZH_ZF_CREDITS | ZH_ZF_STREAM;
    p->ext_multi = true;
    p->method = zh_span_str("GET");
    p->uri = zh_span_str("http://example.com/");
    add_header(p, "Host", "example.com");
    p->credits = 8192;
    p->stream = true;
    assert_encodes_to(p, EX_SERVER_GET);
}

static void encode_handler_response_example(void **state)
{
    (void)state;
    struct zh_zhttp_packet *p = &pkt_a;
    zh_zhttp_packet_init(p);
    p->from = zh_span_str("h1");
    set_single_id(p, "0-0-1", 0);
    p->has |= ZH_ZF_CODE;
    p->code = 200;
    p->reason = zh_span_str("OK");
    add_header(p, "Content-Type", "text/plain");
    p->body = zh_span_str("hi");
    assert_encodes_to(p, EX_HANDLER_RESPONSE);
}

static void encode_credit_and_body_examples(void **state)
{
    (void)state;
    struct zh_zhttp_packet *p = &pkt_a;
    zh_zhttp_packet_init(p);
    p->from = zh_span_str("zhttpd");
    set_single_id(p, "0-0-1", 1);
    p->type = ZH_ZHTTP_CREDIT;
    p->has |= ZH_ZF_CREDITS;
    p->credits = 3;
    assert_encodes_to(p, EX_CREDIT);

    zh_zhttp_packet_init(p);
    p->from = zh_span_str("zhttpd");
    set_single_id(p, "0-0-1", 1);
    p->body = zh_span_str("abc");
    p->has |= ZH_ZF_MORE;
    p->more = true;
    assert_encodes_to(p, EX_BODY);
}

static void encode_client_ack_example(void **state)
{
    (void)state;
    struct zh_zhttp_packet *p = &pkt_a;
    zh_zhttp_packet_init(p);
    p->from = zh_span_str("zhttpd");
    set_single_id(p, "r1", 0);
    p->has |= ZH_ZF_EXT_MULTI;
    p->ext_multi = true;
    p->type = ZH_ZHTTP_KEEP_ALIVE;
    assert_encodes_to(p, EX_ACK);
}

static void encode_failure_example(void **state)
{
    (void)state;
    struct zh_zhttp_packet *p = &pkt_a;
    zh_zhttp_packet_init(p);
    p->from = zh_span_str("zhttpd");
    set_single_id(p, "r1", 1);
    p->type = ZH_ZHTTP_ERROR;
    p->condition = zh_span_str("remote-connection-failed");
    assert_encodes_to(p, EX_FAILURE);
}

static void encode_req_mode_examples(void **state)
{
    (void)state;
    struct zh_zhttp_packet *p = &pkt_a;
    zh_zhttp_packet_init(p);
    set_single_id(p, "x", -1);
    p->method = zh_span_str("GET");
    p->uri = zh_span_str("http://example.com/");
    assert_encodes_to(p, EX_REQ_REQUEST);

    zh_zhttp_packet_init(p);
    set_single_id(p, "x", -1);
    p->has |= ZH_ZF_CODE | ZH_ZF_HEADERS;
    p->code = 200;
    p->reason = zh_span_str("OK");
    p->body = zh_span_str("");
    assert_encodes_to(p, EX_REQ_RESPONSE);
}

static void encode_batched_keepalive_example(void **state)
{
    (void)state;
    struct zh_zhttp_packet *p = &pkt_a;
    zh_zhttp_packet_init(p);
    p->from = zh_span_str("zhttpd");
    p->has |= ZH_ZF_MULTI_ID | ZH_ZF_EXT_MULTI;
    p->n_ids = 2;
    p->ids[0] = (struct zh_zhttp_id){zh_span_str("0-0-1"), 5, true};
    p->ids[1] = (struct zh_zhttp_id){zh_span_str("1-3-a"), 2, true};
    p->type = ZH_ZHTTP_KEEP_ALIVE;
    p->ext_multi = true;
    assert_encodes_to(p, EX_BATCHED_KEEPALIVE);
}

static void decode_then_encode_gives_identical_bytes(void **state)
{
    (void)state;
    static const char *exs[] = {
        EX_SERVER_GET,  EX_HANDLER_RESPONSE, EX_CREDIT,           EX_BODY, EX_ACK, EX_FAILURE,
        EX_REQ_REQUEST, EX_REQ_RESPONSE,     EX_BATCHED_KEEPALIVE};
    for (size_t i = 0; i < sizeof exs / sizeof exs[0]; i++) {
        assert_int_equal(0, decode_s(exs[i], &pkt_a, NULL));
        assert_encodes_to(&pkt_a, exs[i]);
    }
}

static void client_request_example_reencodes_to_same_fields(void **state)
{
    (void)state;
    /* The requester's packet writes stream before credits; ours writes credits first (as in the
     * server GET example). The bytes differ, the packet does not. */
    struct zh_buf b = {0};
    assert_int_equal(0, decode_s(EX_CLIENT_REQUEST, &pkt_a, NULL));
    zh_zhttp_encode(&pkt_a, &b);
    assert_int_equal(strlen(EX_CLIENT_REQUEST), b.len);
    assert_int_equal(0, zh_zhttp_decode(b.data, b.len, &pkt_b, NULL));
    assert_span(pkt_b.from, "app1");
    assert_span(pkt_b.ids[0].id, "r1");
    assert_int_equal(0, pkt_b.ids[0].seq);
    assert_span(pkt_b.method, "GET");
    assert_span(pkt_b.uri, "https://example.com/");
    assert_true(pkt_b.stream);
    assert_int_equal(8192, pkt_b.credits);
    assert_int_equal(pkt_a.has, pkt_b.has);
    zh_buf_free(&b);
}

/* ---- every field ---- */

static void fill_every_field(struct zh_zhttp_packet *p)
{
    zh_zhttp_packet_init(p);
    p->from = zh_span_str("requester-1");
    set_single_id(p, "session-1", 7);
    p->has |= ZH_ZF_SEQ | ZH_ZF_EXT_MULTI | ZH_ZF_CREDITS | ZH_ZF_MORE | ZH_ZF_STREAM |
              ZH_ZF_ROUTER_RESP | ZH_ZF_CODE | ZH_ZF_MAX_SIZE | ZH_ZF_TIMEOUT | ZH_ZF_PEER_PORT |
              ZH_ZF_CONNECT_PORT | ZH_ZF_TRUST_CONNECT_HOST | ZH_ZF_IGNORE_POLICIES |
              ZH_ZF_IGNORE_TLS_ERRORS | ZH_ZF_FOLLOW_REDIRECTS;
    p->ext_multi = true;
    p->type = ZH_ZHTTP_ERROR;
    p->condition = zh_span_str("rejected");
    p->method = zh_span_str("POST");
    p->uri = zh_span_str("https://example.com/a?b=c");
    p->code = 404;
    p->reason = zh_span_str("Not Found");
    add_header(p, "A", "1");
    add_header(p, "a", "2");
    add_header(p, "", "");
    p->content_type = zh_span_str("binary");
    p->body = zh_span_str("body\0bytes");
    p->more = false;
    p->credits = 1234567890123;
    p->stream = true;
    p->router_resp = true;
    p->max_size = 1000000;
    p->timeout = 30000;
    p->peer_address = zh_span_str("192.0.2.1");
    p->peer_port = 65535;
    p->connect_host = zh_span_str("backend.internal");
    p->connect_port = 8443;
    p->trust_connect_host = true;
    p->ignore_policies = false;
    p->ignore_tls_errors = true;
    p->follow_redirects = true;
    p->client_cert = zh_span_str("-----BEGIN CERTIFICATE-----");
    p->client_key = zh_span_str("-----BEGIN PRIVATE KEY-----");
    p->user_data = zh_span_str("24:1:k,1:v,1:n,2:-5#1:l,0:]}");
    p->passthrough = zh_span_str("4:true!");
}

static void assert_spans_equal(struct zh_span a, struct zh_span b)
{
    assert_true((a.p == NULL) == (b.p == NULL));
    assert_int_equal(a.n, b.n);
    if (a.n)
        assert_memory_equal(a.p, b.p, a.n);
}

static void assert_packets_equal(const struct zh_zhttp_packet *a, const struct zh_zhttp_packet *b)
{
    assert_int_equal(a->has, b->has);
    assert_int_equal(a->type, b->type);
    assert_spans_equal(a->from, b->from);
    assert_int_equal(a->n_ids, b->n_ids);
    for (size_t i = 0; i < a->n_ids; i++) {
        assert_spans_equal(a->ids[i].id, b->ids[i].id);
        assert_int_equal(a->ids[i].has_seq, b->ids[i].has_seq);
        if (a->ids[i].has_seq)
            assert_int_equal(a->ids[i].seq, b->ids[i].seq);
    }
    assert_int_equal(a->n_headers, b->n_headers);
    for (size_t i = 0; i < a->n_headers; i++) {
        assert_spans_equal(a->headers[i].name, b->headers[i].name);
        assert_spans_equal(a->headers[i].value, b->headers[i].value);
    }
    assert_spans_equal(a->condition, b->condition);
    assert_spans_equal(a->method, b->method);
    assert_spans_equal(a->uri, b->uri);
    assert_spans_equal(a->body, b->body);
    assert_spans_equal(a->content_type, b->content_type);
    assert_spans_equal(a->reason, b->reason);
    assert_spans_equal(a->peer_address, b->peer_address);
    assert_spans_equal(a->connect_host, b->connect_host);
    assert_spans_equal(a->client_cert, b->client_cert);
    assert_spans_equal(a->client_key, b->client_key);
    assert_spans_equal(a->user_data, b->user_data);
    assert_spans_equal(a->passthrough, b->passthrough);
    assert_true(a->credits == b->credits);
    assert_int_equal(a->code, b->code);
    assert_int_equal(a->max_size, b->max_size);
    assert_int_equal(a->timeout, b->timeout);
    assert_int_equal(a->peer_port, b->peer_port);
    assert_int_equal(a->connect_port, b->connect_port);
    assert_int_equal(a->more, b->more);
    assert_int_equal(a->stream, b->stream);
    assert_int_equal(a->router_resp, b->router_resp);
    assert_int_equal(a->trust_connect_host, b->trust_connect_host);
    assert_int_equal(a->ignore_policies, b->ignore_policies);
    assert_int_equal(a->ignore_tls_errors, b->ignore_tls_errors);
    assert_int_equal(a->follow_redirects, b->follow_redirects);
    assert_int_equal(a->ext_multi, b->ext_multi);
}

static void every_field_round_trips(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    fill_every_field(&pkt_a);
    pkt_a.body.n = 10; /* include the NUL byte */
    zh_zhttp_encode(&pkt_a, &b);
    struct zh_zhttp_error err = {0};
    assert_int_equal(0, zh_zhttp_decode(b.data, b.len, &pkt_b, &err));
    pkt_a.has |= ZH_ZF_HEADERS;
    assert_packets_equal(&pkt_a, &pkt_b);
    assert_memory_equal("body\0bytes", pkt_b.body.p, 10);
    zh_buf_free(&b);
}

static void every_field_round_trips_from_the_middle_of_a_buffer(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_buf_puts(&b, "addr ");
    fill_every_field(&pkt_a);
    zh_zhttp_encode(&pkt_a, &b);
    struct zh_span addr, payload;
    assert_int_equal(0, zh_zhttp_split_pub(b.data, b.len, &addr, &payload));
    assert_span(addr, "addr");
    assert_int_equal(0, zh_zhttp_decode(payload.p, payload.n, &pkt_b, NULL));
    assert_packets_equal(&pkt_a, &pkt_b);
    zh_buf_free(&b);
}

static void every_type_round_trips(void **state)
{
    (void)state;
    static const char *names[] = {"",       "error",         "credit",          "keep-alive",
                                  "cancel", "handoff-start", "handoff-proceed", "close",
                                  "ping",   "pong"};
    for (int t = ZH_ZHTTP_DATA; t <= ZH_ZHTTP_PONG; t++) {
        struct zh_buf b = {0};
        enum zh_zhttp_type back;
        assert_string_equal(names[t], zh_zhttp_type_name((enum zh_zhttp_type)t));
        zh_zhttp_packet_init(&pkt_a);
        pkt_a.from = zh_span_str("f");
        set_single_id(&pkt_a, "i", t);
        pkt_a.type = (enum zh_zhttp_type)t;
        zh_zhttp_encode(&pkt_a, &b);
        assert_int_equal(0, zh_zhttp_decode(b.data, b.len, &pkt_b, NULL));
        assert_int_equal(t, pkt_b.type);
        if (t != ZH_ZHTTP_DATA) {
            assert_int_equal(0, zh_zhttp_type_parse(zh_span_str(names[t]), &back));
            assert_int_equal(t, back);
        }
        zh_buf_free(&b);
    }
    enum zh_zhttp_type back = ZH_ZHTTP_PING;
    assert_int_equal(ZH_E_PARSE, zh_zhttp_type_parse(zh_span_str(""), &back));
    assert_int_equal(ZH_E_PARSE, zh_zhttp_type_parse(zh_span_str("Credit"), &back));
    assert_int_equal(ZH_E_PARSE, zh_zhttp_type_parse(zh_span_str("data"), &back));
    assert_int_equal(ZH_ZHTTP_PING, back);
    assert_string_equal("unknown", zh_zhttp_type_name((enum zh_zhttp_type)42));
}

/* ---- field rules ---- */

static void unknown_type_is_an_error(void **state)
{
    (void)state;
    int rc;
    assert_string_equal("field 'type': unknown packet type", reason_of("4:type,4:data,", &rc));
    assert_int_equal(ZH_E_PARSE, rc);
    assert_string_equal("field 'type': unknown packet type", reason_of("4:type,0:,", NULL));
    assert_string_equal("field 'type': unknown packet type", reason_of("4:type,6:CREDIT,", NULL));
}

static void unknown_keys_are_ignored(void **state)
{
    (void)state;
    assert_null(reason_of("4:from,1:a,7:unknown,3:1.5^5:other,0:~6:nested,8:1:x,1:1#]"
                          "8:old-from,1:b,",
                          NULL));
    assert_span(pkt_a.from, "a");
    /* Keys that differ from known ones only by case or length are unknown, not errors. */
    assert_null(reason_of("4:From,2:42#2:se,1:x,4:seqq,4:true!", NULL));
    assert_absent(pkt_a.from);
    assert_false(pkt_a.has & ZH_ZF_SEQ);
    /* An empty key is just another unknown key. */
    assert_null(reason_of("0:,1:x,", NULL));
    assert_int_equal(0, pkt_a.has);
}

static void wrong_types_name_the_field(void **state)
{
    (void)state;
    static const struct {
        const char *pairs;
        const char *reason;
    } cases[] = {
        {"4:from,1:1#", "field 'from': expected string"},
        {"2:id,1:1#", "field 'id': expected string or list of {id, seq} dicts"},
        {"2:id,0:}", "field 'id': expected string or list of {id, seq} dicts"},
        {"3:seq,1:1,", "field 'seq': expected int"},
        {"3:seq,3:1.0^", "field 'seq': expected int"},
        {"3:ext,4:true!", "field 'ext': expected dict"},
        {"3:ext,15:5:multi,4:true,}", "field 'ext.multi': expected bool"},
        {"4:type,1:1#", "field 'type': expected string"},
        {"9:condition,0:]", "field 'condition': expected string"},
        {"7:credits,4:8192,", "field 'credits': expected int"},
        {"4:more,4:true,", "field 'more': expected bool"},
        {"4:more,1:1#", "field 'more': expected bool"},
        {"6:stream,0:~", "field 'stream': expected bool"},
        {"11:router-resp,1:1,", "field 'router-resp': expected bool"},
        {"6:method,1:1#", "field 'method': expected string"},
        {"3:uri,0:}", "field 'uri': expected string"},
        {"7:headers,0:}", "field 'headers': expected list of [name, value] string pairs"},
        {"7:headers,4:1:a,]", "field 'headers': expected list of [name, value] string pairs"},
        {"7:headers,11:8:1:a,1:1#]]",
         "field 'headers': expected list of [name, value] string pairs"},
        {"7:headers,11:8:1:1#1:a,]]",
         "field 'headers': expected list of [name, value] string pairs"},
        {"4:body,1:1#", "field 'body': expected string"},
        {"12:content-type,4:true!", "field 'content-type': expected string"},
        {"4:code,3:200,", "field 'code': expected int"},
        {"6:reason,1:1#", "field 'reason': expected string"},
        {"8:max-size,1:1,", "field 'max-size': expected int"},
        {"7:timeout,1:1,", "field 'timeout': expected int"},
        {"12:peer-address,1:1#", "field 'peer-address': expected string"},
        {"9:peer-port,4:true!", "field 'peer-port': expected int or decimal string"},
        {"9:peer-port,2:8a,", "field 'peer-port': expected int or decimal string"},
        {"9:peer-port,0:,", "field 'peer-port': expected int or decimal string"},
        {"9:peer-port,2:-1,", "field 'peer-port': expected int or decimal string"},
        {"9:peer-port,6:000080,", "field 'peer-port': expected int or decimal string"},
        {"12:connect-host,0:~", "field 'connect-host': expected string"},
        {"12:connect-port,2:80,", "field 'connect-port': expected int"},
        {"18:trust-connect-host,1:1,", "field 'trust-connect-host': expected bool"},
        {"15:ignore-policies,1:1#", "field 'ignore-policies': expected bool"},
        {"17:ignore-tls-errors,0:,", "field 'ignore-tls-errors': expected bool"},
        {"16:follow-redirects,0:]", "field 'follow-redirects': expected bool"},
        {"11:client-cert,0:}", "field 'client-cert': expected string"},
        {"10:client-key,1:1#", "field 'client-key': expected string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = 0;
        const char *r = reason_of(cases[i].pairs, &rc);
        if (!r || strcmp(r, cases[i].reason) != 0)
            fail_msg("%s: got %s, want %s", cases[i].pairs, r ? r : "(ok)", cases[i].reason);
        assert_true(rc == ZH_E_TYPE || rc == ZH_E_PARSE);
    }
}

static void negative_numbers_are_refused(void **state)
{
    (void)state;
    static const struct {
        const char *pairs;
        const char *reason;
    } cases[] = {
        {"3:seq,2:-1#", "field 'seq': must not be negative"},
        {"7:credits,2:-1#", "field 'credits': must not be negative"},
        {"4:code,4:-200#", "field 'code': must not be negative"},
        {"8:max-size,2:-1#", "field 'max-size': must not be negative"},
        {"7:timeout,2:-5#", "field 'timeout': must not be negative"},
        {"9:peer-port,2:-1#", "field 'peer-port': out of range"},
        {"12:connect-port,2:-1#", "field 'connect-port': out of range"},
        {"9:peer-port,5:65536#", "field 'peer-port': out of range"},
        {"9:peer-port,5:65536,", "field 'peer-port': out of range"},
        {"9:peer-port,5:99999,", "field 'peer-port': out of range"},
        {"12:connect-port,20:-9223372036854775808#", "field 'connect-port': out of range"},
        {"2:id,24:20:2:id,1:a,3:seq,2:-1#}]", "field 'id': list entry 'seq': must not be negative"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = 0;
        const char *r = reason_of(cases[i].pairs, &rc);
        if (!r || strcmp(r, cases[i].reason) != 0)
            fail_msg("%s: got %s, want %s", cases[i].pairs, r ? r : "(ok)", cases[i].reason);
        assert_int_equal(ZH_E_PARSE, rc);
    }
    /* Zero is fine everywhere. */
    assert_null(reason_of("3:seq,1:0#7:credits,1:0#4:code,1:0#8:max-size,1:0#7:timeout,1:0#"
                          "9:peer-port,1:0#12:connect-port,1:0#",
                          NULL));
}

static void peer_port_accepts_int_or_decimal_string(void **state)
{
    (void)state;
    assert_null(reason_of("9:peer-port,5:54321#", NULL));
    assert_true(pkt_a.has & ZH_ZF_PEER_PORT);
    assert_int_equal(54321, pkt_a.peer_port);
    assert_null(reason_of("9:peer-port,4:8080,", NULL));
    assert_int_equal(8080, pkt_a.peer_port);
    assert_null(reason_of("9:peer-port,5:65535,", NULL));
    assert_int_equal(65535, pkt_a.peer_port);
    assert_null(reason_of("12:connect-port,3:443#", NULL));
    assert_true(pkt_a.has & ZH_ZF_CONNECT_PORT);
    assert_int_equal(443, pkt_a.connect_port);
}

static void from_and_id_are_limited_to_64_bytes(void **state)
{
    (void)state;
    char pairs[256];
    char id64[65], id65[66];
    memset(id64, 'a', 64);
    id64[64] = '\0';
    memset(id65, 'b', 65);
    id65[65] = '\0';
    int rc;

    snprintf(pairs, sizeof pairs, "4:from,64:%s,2:id,64:%s,", id64, id64);
    assert_null(reason_of(pairs, NULL));
    assert_int_equal(64, pkt_a.from.n);
    assert_int_equal(64, pkt_a.ids[0].id.n);

    snprintf(pairs, sizeof pairs, "4:from,65:%s,", id65);
    assert_string_equal("field 'from': too long", reason_of(pairs, &rc));
    assert_int_equal(ZH_E_TOO_LARGE, rc);
    snprintf(pairs, sizeof pairs, "2:id,65:%s,", id65);
    assert_string_equal("field 'id': too long", reason_of(pairs, NULL));
    snprintf(pairs, sizeof pairs, "2:id,78:74:2:id,65:%s,}]", id65);
    assert_string_equal("field 'id': too long", reason_of(pairs, NULL));
}

static void seq_may_come_before_id(void **state)
{
    (void)state;
    assert_null(reason_of("3:seq,1:9#2:id,1:z,", NULL));
    assert_int_equal(1, pkt_a.n_ids);
    assert_span(pkt_a.ids[0].id, "z");
    assert_true(pkt_a.ids[0].has_seq);
    assert_int_equal(9, pkt_a.ids[0].seq);
}

static void seq_without_id_is_kept_in_ids0(void **state)
{
    (void)state;
    assert_null(reason_of("3:seq,1:4#", NULL));
    assert_int_equal(0, pkt_a.n_ids);
    assert_true(pkt_a.has & ZH_ZF_SEQ);
    assert_int_equal(4, pkt_a.ids[0].seq);
    struct zh_buf b = {0};
    zh_zhttp_encode(&pkt_a, &b);
    assert_int_equal(strlen("T10:3:seq,1:4#}"), b.len);
    assert_memory_equal("T10:3:seq,1:4#}", b.data, b.len);
    zh_buf_free(&b);
}

static void duplicate_known_keys_are_refused(void **state)
{
    (void)state;
    assert_string_equal("field 'from': duplicate key", reason_of("4:from,1:a,4:from,1:b,", NULL));
    assert_string_equal("field 'seq': duplicate key", reason_of("3:seq,1:1#3:seq,1:1#", NULL));
    assert_string_equal("field 'headers': duplicate key",
                        reason_of("7:headers,0:]7:headers,0:]", NULL));
    assert_string_equal("field 'ext.multi': duplicate key",
                        reason_of("3:ext,30:5:multi,4:true!5:multi,4:true!}", NULL));
    /* Unknown keys may repeat. */
    assert_null(reason_of("1:x,1:a,1:x,1:b,", NULL));
}

/* ---- multi-id ---- */

static void build_id_list(struct zh_buf *pairs, size_t n, bool with_seq)
{
    struct zh_buf list = {0};
    size_t m = zh_tns_begin(&list);
    for (size_t i = 0; i < n; i++) {
        char id[32];
        size_t d = zh_tns_begin(&list);
        snprintf(id, sizeof id, "%zu-0-%zx", i % 4, i);
        zh_tns_put_cstr(&list, "id");
        zh_tns_put_cstr(&list, id);
        if (with_seq) {
            zh_tns_put_cstr(&list, "seq");
            zh_tns_put_int(&list, (int64_t)i);
        }
        zh_tns_end(&list, d, ZH_TNS_DICT);
    }
    zh_tns_end(&list, m, ZH_TNS_LIST);
    zh_buf_reset(pairs);
    zh_tns_put_cstr(pairs, "id");
    zh_buf_append(pairs, list.data, list.len);
    zh_buf_free(&list);
}

static void multi_id_accepts_up_to_128_ids(void **state)
{
    (void)state;
    struct zh_buf pairs = {0};
    build_id_list(&pairs, ZH_ZHTTP_MAX_IDS, true);
    assert_null(reason_of(zh_buf_cstr(&pairs), NULL));
    assert_int_equal(ZH_ZHTTP_MAX_IDS, pkt_a.n_ids);
    assert_true(pkt_a.has & ZH_ZF_MULTI_ID);
    assert_span(pkt_a.ids[127].id, "3-0-7f");
    assert_int_equal(127, pkt_a.ids[127].seq);

    int rc;
    build_id_list(&pairs, ZH_ZHTTP_MAX_IDS + 1, true);
    assert_string_equal("field 'id': too many ids", reason_of(zh_buf_cstr(&pairs), &rc));
    assert_int_equal(ZH_E_TOO_LARGE, rc);
    zh_buf_free(&pairs);
}

static void multi_id_round_trips_with_and_without_seq(void **state)
{
    (void)state;
    struct zh_buf pairs = {0}, b = {0};
    build_id_list(&pairs, 50, false);
    assert_null(reason_of(zh_buf_cstr(&pairs), NULL));
    assert_false(pkt_a.ids[3].has_seq);
    pkt_a.ids[3].has_seq = true;
    pkt_a.ids[3].seq = 99;
    zh_zhttp_encode(&pkt_a, &b);
    assert_int_equal(0, zh_zhttp_decode(b.data, b.len, &pkt_b, NULL));
    assert_packets_equal(&pkt_a, &pkt_b);
    assert_false(pkt_b.ids[2].has_seq);
    assert_true(pkt_b.ids[3].has_seq);
    assert_int_equal(99, pkt_b.ids[3].seq);
    zh_buf_free(&pairs);
    zh_buf_free(&b);
}

static void multi_id_single_entry_list_keeps_the_list_form(void **state)
{
    (void)state;
    const char *one = "T36:2:id,27:23:2:id,5:0-0-1,3:seq,1:5#}]}";
    assert_int_equal(0, decode_s(one, &pkt_a, NULL));
    assert_int_equal(1, pkt_a.n_ids);
    assert_true(pkt_a.has & ZH_ZF_MULTI_ID);
    assert_encodes_to(&pkt_a, one);
}

static void multi_id_entry_errors(void **state)
{
    (void)state;
    static const struct {
        const char *pairs;
        const char *reason;
    } cases[] = {
        {"2:id,0:]", "field 'id': empty list"},
        {"2:id,4:1:a,]", "field 'id': list entry is not a dict"},
        {"2:id,14:10:3:seq,1:1#}]", "field 'id': list entry has no 'id'"},
        {"2:id,14:10:2:id,2:42#}]", "field 'id': list entry 'id': expected string"},
        {"2:id,23:19:2:id,1:a,3:seq,1:1,}]", "field 'id': list entry 'seq': expected int"},
        {"2:id,22:18:2:id,1:a,2:id,1:b,}]", "field 'id': list entry has a duplicate 'id'"},
        {"2:id,33:29:2:id,1:a,3:seq,1:1#3:seq,1:2#}]",
         "field 'id': list entry has a duplicate 'seq'"},
        {"2:id,23:19:2:id,1:a,3:seq,1:1#}]3:seq,1:0#",
         "field 'seq': not allowed with a list of ids"},
        {"3:seq,1:0#2:id,23:19:2:id,1:a,3:seq,1:1#}]",
         "field 'seq': not allowed with a list of ids"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *r = reason_of(cases[i].pairs, NULL);
        if (!r || strcmp(r, cases[i].reason) != 0)
            fail_msg("%s: got %s, want %s", cases[i].pairs, r ? r : "(ok)", cases[i].reason);
    }
    /* Unknown keys inside an entry are ignored. */
    assert_null(reason_of("2:id,24:20:2:id,1:a,5:extra,0:~}]", NULL));
    assert_span(pkt_a.ids[0].id, "a");
}

/* ---- ext ---- */

static void ext_multi_true_false_and_other_keys(void **state)
{
    (void)state;
    assert_null(reason_of("3:ext,16:5:multi,5:false!}", NULL));
    assert_true(pkt_a.has & ZH_ZF_EXT_MULTI);
    assert_false(pkt_a.ext_multi);
    assert_null(reason_of("3:ext,30:5:quiet,4:true!5:multi,4:true!}", NULL));
    assert_true(pkt_a.ext_multi);
    /* ext without multi: present but says nothing we use. */
    assert_null(reason_of("3:ext,15:5:quiet,4:true!}", NULL));
    assert_false(pkt_a.has & ZH_ZF_EXT_MULTI);
    assert_null(reason_of("3:ext,0:}", NULL));
    assert_false(pkt_a.has & ZH_ZF_EXT_MULTI);
    /* quiet may have any type; only multi is checked. */
    assert_null(reason_of("3:ext,12:5:quiet,1:x,}", NULL));
}

static void ext_false_round_trips(void **state)
{
    (void)state;
    zh_zhttp_packet_init(&pkt_a);
    pkt_a.has = ZH_ZF_EXT_MULTI;
    pkt_a.ext_multi = false;
    assert_encodes_to(&pkt_a, "T26:3:ext,16:5:multi,5:false!}}");
}

/* ---- headers ---- */

static void headers_limits_and_shapes(void **state)
{
    (void)state;
    struct zh_buf pairs = {0};
    int rc;
    for (size_t n = ZH_ZHTTP_MAX_HEADERS; n <= ZH_ZHTTP_MAX_HEADERS + 1; n++) {
        struct zh_buf list = {0};
        size_t m = zh_tns_begin(&list);
        for (size_t i = 0; i < n; i++) {
            size_t h = zh_tns_begin(&list);
            zh_tns_put_cstr(&list, "X-N");
            zh_tns_put_cstr(&list, "v");
            zh_tns_end(&list, h, ZH_TNS_LIST);
        }
        zh_tns_end(&list, m, ZH_TNS_LIST);
        zh_buf_reset(&pairs);
        zh_tns_put_cstr(&pairs, "headers");
        zh_buf_append(&pairs, list.data, list.len);
        zh_buf_free(&list);
        const char *r = reason_of(zh_buf_cstr(&pairs), &rc);
        if (n == ZH_ZHTTP_MAX_HEADERS) {
            assert_null(r);
            assert_int_equal(n, pkt_a.n_headers);
            assert_span(pkt_a.headers[n - 1].value, "v");
        } else {
            assert_string_equal("field 'headers': too many entries", r);
            assert_int_equal(ZH_E_TOO_LARGE, rc);
        }
    }
    zh_buf_free(&pairs);

    assert_string_equal("field 'headers': entry is not a 2-element list",
                        reason_of("7:headers,7:4:1:a,]]", NULL));
    assert_string_equal("field 'headers': entry is not a 2-element list",
                        reason_of("7:headers,16:12:1:a,1:b,1:c,]]", NULL));
    assert_string_equal("field 'headers': entry is not a 2-element list",
                        reason_of("7:headers,3:0:]]", NULL));
    /* Order, case and duplicates are preserved. */
    assert_null(reason_of("7:headers,33:13:4:Host,3:a.b,]12:4:host,2:c!,]]", NULL));
    assert_int_equal(2, pkt_a.n_headers);
    assert_span(pkt_a.headers[0].name, "Host");
    assert_span(pkt_a.headers[1].name, "host");
    assert_span(pkt_a.headers[1].value, "c!");
}

/* ---- raw values ---- */

static void user_data_and_passthrough_keep_raw_bytes(void **state)
{
    (void)state;
    const char *pairs = "9:user-data,25:1:a,17:1:x,1:1#0:~3:1.5^]}11:passthrough,2:42#";
    assert_null(reason_of(pairs, NULL));
    assert_span(pkt_a.user_data, "25:1:a,17:1:x,1:1#0:~3:1.5^]}");
    assert_span(pkt_a.passthrough, "2:42#");
    /* Re-encoded byte for byte. */
    struct zh_buf b = {0}, want = {0};
    zh_zhttp_encode(&pkt_a, &b);
    mk(&want, pairs);
    assert_int_equal(want.len, b.len);
    assert_memory_equal(want.data, b.data, b.len);
    zh_buf_free(&b);
    zh_buf_free(&want);
}

static void empty_raw_span_is_not_written(void **state)
{
    (void)state;
    zh_zhttp_packet_init(&pkt_a);
    pkt_a.user_data = zh_span_str("");
    pkt_a.from = zh_span_str("");
    assert_encodes_to(&pkt_a, "T10:4:from,0:,}");
}

/* ---- framing and malformed input ---- */

static void prefix_must_be_T(void **state)
{
    (void)state;
    struct zh_zhttp_error err = {0};
    assert_int_equal(ZH_E_PARSE, decode_s("J{\"from\":\"x\"}", &pkt_a, &err));
    assert_string_equal("unsupported format prefix", err.reason);
    assert_int_equal(ZH_E_PARSE, decode_s("t3:0:}", &pkt_a, &err));
    assert_string_equal("unsupported format prefix", err.reason);
    assert_int_equal(ZH_E_PARSE, decode_s(" T3:0:}", &pkt_a, &err));
    assert_string_equal("unsupported format prefix", err.reason);
    assert_int_equal(ZH_E_PARSE, zh_zhttp_decode(u8(""), 0, &pkt_a, &err));
    assert_string_equal("empty packet", err.reason);
}

static void trailing_bytes_are_an_error(void **state)
{
    (void)state;
    struct zh_zhttp_error err = {0};
    assert_int_equal(ZH_E_PARSE, decode_s(EX_CREDIT "x", &pkt_a, &err));
    assert_string_equal("trailing bytes after packet", err.reason);
    assert_int_equal(ZH_E_PARSE, decode_s("T0:}0:}", &pkt_a, &err));
    assert_string_equal("trailing bytes after packet", err.reason);
    assert_int_equal(0, decode_s("T0:}", &pkt_a, &err));
}

static void top_level_must_be_a_dict(void **state)
{
    (void)state;
    struct zh_zhttp_error err = {0};
    assert_int_equal(ZH_E_TYPE, decode_s("T0:]", &pkt_a, &err));
    assert_string_equal("packet is not a dict", err.reason);
    assert_int_equal(ZH_E_TYPE, decode_s("T5:hello,", &pkt_a, &err));
    assert_string_equal("packet is not a dict", err.reason);
}

static void tnetstring_errors_have_reasons(void **state)
{
    (void)state;
    struct zh_zhttp_error err = {0};
    assert_int_equal(ZH_E_INCOMPLETE, decode_s("T", &pkt_a, &err));
    assert_string_equal("truncated tnetstring", err.reason);
    assert_int_equal(ZH_E_PARSE, decode_s("T4:1:1#1:a,}", &pkt_a, &err));
    assert_string_equal("malformed tnetstring", err.reason);
    assert_int_equal(ZH_E_PARSE, decode_s("T8:1:1#1:a,}", &pkt_a, &err));
    assert_string_equal("malformed tnetstring", err.reason);
    assert_int_equal(ZH_E_TOO_LARGE, decode_s("T1234567890:", &pkt_a, &err));
    assert_string_equal("tnetstring length too large", err.reason);

    /* user-data nested 40 deep. */
    struct zh_buf v = {0}, pairs = {0};
    zh_buf_append(&v, "0:]", 3);
    for (int i = 0; i < 40; i++) {
        struct zh_buf o = {0};
        zh_tns_put_prefix(&o, v.len);
        zh_buf_append(&o, v.data, v.len);
        zh_buf_putc(&o, ']');
        zh_buf_free(&v);
        v = o;
    }
    zh_tns_put_cstr(&pairs, "user-data");
    zh_buf_append(&pairs, v.data, v.len);
    int rc;
    assert_string_equal("tnetstring nested too deep", reason_of(zh_buf_cstr(&pairs), &rc));
    assert_int_equal(ZH_E_TOO_DEEP, rc);
    zh_buf_free(&v);
    zh_buf_free(&pairs);
}

static void every_truncation_of_every_example_fails_cleanly(void **state)
{
    (void)state;
    static const char *exs[] = {
        EX_SERVER_GET, EX_HANDLER_RESPONSE, EX_CREDIT,      EX_BODY,         EX_CLIENT_REQUEST,
        EX_ACK,        EX_FAILURE,          EX_REQ_REQUEST, EX_REQ_RESPONSE, EX_BATCHED_KEEPALIVE};
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uint8_t *map = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(0, mprotect(map + page, page, PROT_NONE));
    for (size_t i = 0; i < sizeof exs / sizeof exs[0]; i++) {
        size_t n = strlen(exs[i]);
        for (size_t k = 0; k < n; k++) {
            /* The k-byte prefix sits right against the guard page. */
            uint8_t *p = map + page - k;
            memcpy(p, exs[i], k);
            struct zh_zhttp_error err = {0};
            int rc = zh_zhttp_decode(p, k, &pkt_a, &err);
            assert_true(rc < 0);
            assert_non_null(err.reason);
            if (k >= 1)
                assert_int_equal(ZH_E_INCOMPLETE, rc);
            assert_int_equal(0, pkt_a.n_ids);
            assert_absent(pkt_a.from);
        }
        uint8_t *p = map + page - n;
        memcpy(p, exs[i], n);
        assert_int_equal(0, zh_zhttp_decode(p, n, &pkt_a, NULL));
    }
    munmap(map, 2 * page);
}

static void failed_decode_leaves_an_empty_packet(void **state)
{
    (void)state;
    struct zh_zhttp_error err = {0};
    assert_int_equal(0, decode_s(EX_SERVER_GET, &pkt_a, NULL));
    /* Valid fields first, then a bad one. */
    assert_int_equal(ZH_E_TYPE, decode_s("T30:4:from,1:a,2:id,1:b,3:seq,1:x,}", &pkt_a, &err));
    assert_string_equal("field 'seq': expected int", err.reason);
    assert_absent(pkt_a.from);
    assert_int_equal(0, pkt_a.n_ids);
    assert_int_equal(0, pkt_a.has);
    assert_int_equal(0, pkt_a.n_headers);
    assert_absent(pkt_a.method);
}

static void decode_accepts_null_error_pointer(void **state)
{
    (void)state;
    assert_int_equal(ZH_E_PARSE, decode_s("X", &pkt_a, NULL));
    assert_int_equal(0, decode_s(EX_ACK, &pkt_a, NULL));
}

/* ---- helpers ---- */

static void split_pub_splits_at_the_first_space(void **state)
{
    (void)state;
    struct zh_span addr, payload;
    const char *f = "app1 T3:0:} extra";
    assert_int_equal(0, zh_zhttp_split_pub(u8(f), strlen(f), &addr, &payload));
    assert_span(addr, "app1");
    assert_span(payload, "T3:0:} extra");
    assert_int_equal(0, zh_zhttp_split_pub(u8(" x"), 2, &addr, &payload));
    assert_int_equal(0, addr.n);
    assert_span(payload, "x");
    assert_int_equal(0, zh_zhttp_split_pub(u8("a "), 2, &addr, &payload));
    assert_span(addr, "a");
    assert_int_equal(0, payload.n);
    assert_int_equal(ZH_E_PARSE, zh_zhttp_split_pub(u8("nospace"), 7, &addr, &payload));
    assert_int_equal(ZH_E_PARSE, zh_zhttp_split_pub(u8(""), 0, &addr, &payload));
}

static void span_helpers(void **state)
{
    (void)state;
    struct zh_span s = zh_span_str("abc");
    assert_int_equal(3, s.n);
    assert_true(zh_span_eq(s, "abc"));
    assert_false(zh_span_eq(s, "ab"));
    assert_false(zh_span_eq(s, "abcd"));
    assert_false(zh_span_eq(s, "abd"));
    struct zh_span e = zh_span_str("");
    assert_non_null(e.p);
    assert_true(zh_span_eq(e, ""));
    struct zh_span none = zh_span_str(NULL);
    assert_null(none.p);
    assert_int_equal(0, none.n);
    assert_false(zh_span_eq(none, ""));
}

static void packet_init_clears_everything_read(void **state)
{
    (void)state;
    fill_every_field(&pkt_a);
    pkt_a.has |= ZH_ZF_MULTI_ID;
    pkt_a.n_ids = 3;
    zh_zhttp_packet_init(&pkt_a);
    assert_int_equal(0, pkt_a.has);
    assert_int_equal(ZH_ZHTTP_DATA, pkt_a.type);
    assert_int_equal(0, pkt_a.n_ids);
    assert_int_equal(0, pkt_a.n_headers);
    assert_absent(pkt_a.from);
    assert_absent(pkt_a.ids[0].id);
    assert_false(pkt_a.ids[0].has_seq);
    assert_absent(pkt_a.passthrough);
    assert_absent(pkt_a.user_data);
    assert_absent(pkt_a.body);
    assert_false(pkt_a.ext_multi);
    assert_int_equal(0, pkt_a.credits);
    /* An empty packet encodes as an empty dict. */
    assert_encodes_to(&pkt_a, "T0:}");
}

static void encode_appends_to_existing_buffer(void **state)
{
    (void)state;
    struct zh_buf b = {0};
    zh_buf_puts(&b, "app1 ");
    assert_int_equal(0, decode_s(EX_FAILURE, &pkt_a, NULL));
    zh_zhttp_encode(&pkt_a, &b);
    assert_int_equal(5 + strlen(EX_FAILURE), b.len);
    assert_memory_equal("app1 " EX_FAILURE, b.data, b.len);
    zh_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decode_server_get_example),
        cmocka_unit_test(decode_handler_response_example),
        cmocka_unit_test(decode_credit_example),
        cmocka_unit_test(decode_body_chunk_example),
        cmocka_unit_test(decode_client_request_example),
        cmocka_unit_test(decode_ack_and_failure_examples),
        cmocka_unit_test(decode_req_mode_examples),
        cmocka_unit_test(decode_batched_keepalive_example),
        cmocka_unit_test(encode_server_get_example),
        cmocka_unit_test(encode_handler_response_example),
        cmocka_unit_test(encode_credit_and_body_examples),
        cmocka_unit_test(encode_client_ack_example),
        cmocka_unit_test(encode_failure_example),
        cmocka_unit_test(encode_req_mode_examples),
        cmocka_unit_test(encode_batched_keepalive_example),
        cmocka_unit_test(decode_then_encode_gives_identical_bytes),
        cmocka_unit_test(client_request_example_reencodes_to_same_fields),
        cmocka_unit_test(every_field_round_trips),
        cmocka_unit_test(every_field_round_trips_from_the_middle_of_a_buffer),
        cmocka_unit_test(every_type_round_trips),
        cmocka_unit_test(unknown_type_is_an_error),
        cmocka_unit_test(unknown_keys_are_ignored),
        cmocka_unit_test(wrong_types_name_the_field),
        cmocka_unit_test(negative_numbers_are_refused),
        cmocka_unit_test(peer_port_accepts_int_or_decimal_string),
        cmocka_unit_test(from_and_id_are_limited_to_64_bytes),
        cmocka_unit_test(seq_may_come_before_id),
        cmocka_unit_test(seq_without_id_is_kept_in_ids0),
        cmocka_unit_test(duplicate_known_keys_are_refused),
        cmocka_unit_test(multi_id_accepts_up_to_128_ids),
        cmocka_unit_test(multi_id_round_trips_with_and_without_seq),
        cmocka_unit_test(multi_id_single_entry_list_keeps_the_list_form),
        cmocka_unit_test(multi_id_entry_errors),
        cmocka_unit_test(ext_multi_true_false_and_other_keys),
        cmocka_unit_test(ext_false_round_trips),
        cmocka_unit_test(headers_limits_and_shapes),
        cmocka_unit_test(user_data_and_passthrough_keep_raw_bytes),
        cmocka_unit_test(empty_raw_span_is_not_written),
        cmocka_unit_test(prefix_must_be_T),
        cmocka_unit_test(trailing_bytes_are_an_error),
        cmocka_unit_test(top_level_must_be_a_dict),
        cmocka_unit_test(tnetstring_errors_have_reasons),
        cmocka_unit_test(every_truncation_of_every_example_fails_cleanly),
        cmocka_unit_test(failed_decode_leaves_an_empty_packet),
        cmocka_unit_test(decode_accepts_null_error_pointer),
        cmocka_unit_test(split_pub_splits_at_the_first_space),
        cmocka_unit_test(span_helpers),
        cmocka_unit_test(packet_init_clears_everything_read),
        cmocka_unit_test(encode_appends_to_existing_buffer),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    zh_buf_free(&last_input);
    return failed;
}
