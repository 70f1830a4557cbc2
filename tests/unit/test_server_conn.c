/* link: zh_server */
/* Unit tests for the server connection engine (server/server.c, conn.c, input.c, response.c,
 * handler.c, streammode.c): a real loop, the client end of a real socketpair, and a fake handler
 * (harness.h: the engine's zport feeds a bridge that is never started, so its packets are taken
 * from the bridge's channels, and the handler's replies go in through zh_server_on_zmsg).
 * Covered: head -> first packet -> response -> keep-alive, pipelining, refusals (400), the head
 * timeout (408), a first packet no handler took (503), a handler error (502), a client that leaves
 * mid-request (cancel to the handler), credits: the request body pumped as the handler grants
 * them, a handler exceeding its credits (cancel + close), a response larger than the socket buffer
 * with a client that does not read (EAGAIN at every write, credits re-granted only as bytes
 * leave), shutdown with cancel (503), interim responses (103, the handler's 100 for an
 * Expect: 100-continue client, a refused 102), HEAD, hop-by-hop headers dropped, an HTTP/1.0
 * close-delimited body, handoff-start -> handoff-proceed -> resumed, a wrong seq (cancel + close),
 * keep-alives to the handler and its expiry (504 + cancel), malformed / unknown-session /
 * wrong-socket packets dropped, a later packet undelivered (handler gone: 502), and client
 * inactivity while the response stalls (close + cancel). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "server_fixture.h"

/* ---- tests ---- */

static void stream_request_response_keepalive(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(false);
    th_write_str(fd, "GET /a?b=1 HTTP/1.1\r\nHost: example.test\r\nX-Foo: bar\r\n\r\n");
    struct zh_zhttp_packet *p = first_packet();
    assert_true(th_span_is(p->method, "GET"));
    assert_true(th_span_is(p->uri, "http://example.test/a?b=1"));
    assert_true(th_span_is(p->from, "zhttpd-test"));
    assert_true(p->stream && p->router_resp);
    assert_int_equal(p->credits, 8192);
    assert_false((p->has & ZH_ZF_MORE) && p->more);
    bool foo = false;
    for (size_t i = 0; i < p->n_headers; i++)
        foo |= th_span_is(p->headers[i].name, "X-Foo") && th_span_is(p->headers[i].value, "bar");
    assert_true(foo);
    assert_int_equal(zh_server_active(fx.s), 1);
    char id1[64];
    snprintf(id1, sizeof(id1), "%s", fx.id);

    handler_respond(200, "hello", false);
    client_wait("hello");
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), "Content-Length: 5\r\n"));
    assert_int_equal(zh_server_active(fx.s), 0);

    /* Keep-alive: the next request on the same connection is a new session with a new id. */
    zh_buf_reset(&fx.rx);
    th_write_str(fd, "GET /second HTTP/1.1\r\nHost: example.test\r\n\r\n");
    p = first_packet();
    assert_true(th_span_is(p->uri, "http://example.test/second"));
    assert_string_not_equal(id1, fx.id);
    handler_respond(404, "nope", false);
    client_wait("nope");
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), "HTTP/1.1 404 OK\r\n"));
    assert_int_equal(zh_server_conn_count(fx.s), 1);

    /* The client closes between requests: the connection goes, nothing goes to a handler. */
    close(fd);
    fx.cfd = -1;
    th_run_until(&fx.tl, engine_idle, NULL);
    assert_int_equal(th_bridge_count(&fx.tb, ZH_ZS_S_OUT_STREAM), 0);
}

static void stream_pipelined_requests_answered_in_order(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(false);
    th_write_str(fd, "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
    struct zh_zhttp_packet *p = first_packet();
    assert_true(th_span_is(p->uri, "http://h/1"));
    /* The second request waits for the first response. */
    th_run_for(&fx.tl, 20);
    assert_int_equal(th_bridge_count(&fx.tb, ZH_ZS_S_OUT), 0);
    handler_respond(200, "one", false);
    p = first_packet();
    assert_true(th_span_is(p->uri, "http://h/2"));
    handler_respond(200, "two", false);
    client_wait("two");
    const char *rx = zh_buf_cstr(&fx.rx);
    assert_true(strstr(rx, "one") < strstr(rx, "two"));
}

static void bad_request_400_and_close(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(false);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n");
    th_run_until(&fx.tl, rx_closed, NULL);
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), "HTTP/1.1 400 "));
    assert_int_equal(th_bridge_count(&fx.tb, ZH_ZS_S_OUT), 0);
    client_close_and_wait_idle();
}

static void head_timeout_408(void **state)
{
    (void)state;
    fx.cfg.head_timeout_ms = 100;
    make_server();
    int fd = connect_client(false);
    th_write_str(fd, "GET / HT");
    th_run_until(&fx.tl, rx_closed, NULL);
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), "HTTP/1.1 408 "));
    client_close_and_wait_idle();
}

static void idle_keepalive_closed_at_head_timeout(void **state)
{
    (void)state;
    fx.cfg.head_timeout_ms = 100;
    make_server();
    connect_client(false);
    /* No byte at all: closed without a response. */
    th_run_until(&fx.tl, rx_closed, NULL);
    assert_int_equal(fx.rx.len, 0);
    client_close_and_wait_idle();
}

static void undelivered_first_packet_503(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(false);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    first_packet();
    /* The bridge hands it back: no handler took it within --handler-wait. */
    struct zh_zmsg *m = fx.held;
    fx.held = NULL;
    m->flags |= ZH_ZMSG_F_UNDELIVERED;
    zh_server_on_zmsg(fx.s, m);
    client_wait("HTTP/1.1 503 ");
    assert_int_equal(zh_server_active(fx.s), 0);
}

static void handler_error_502(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(false);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    first_packet();
    struct zh_zhttp_packet p;
    handler_init(&p, ZH_ZHTTP_ERROR);
    p.condition = zh_span_str("bad-request");
    handler_send(&p);
    client_wait("HTTP/1.1 502 ");
    /* A terminal packet: no cancel back. */
    assert_int_equal(th_bridge_count(&fx.tb, ZH_ZS_S_OUT_STREAM), 0);
}

static void client_gone_mid_request_cancels(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(false);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    first_packet();
    handler_simple(ZH_ZHTTP_KEEP_ALIVE, -1); /* the handler's address is known now */
    close(fd);
    fx.cfd = -1;
    struct zh_zhttp_packet *p = next_packet(ZH_ZS_S_OUT_STREAM);
    assert_int_equal(p->type, ZH_ZHTTP_CANCEL);
    assert_true(th_span_is(p->ids[0].id, fx.id));
    struct zh_span to = zh_zmsg_frame(fx.held, 0);
    assert_memory_equal(to.p, HANDLER, strlen(HANDLER));
    th_run_until(&fx.tl, engine_idle, NULL);
    assert_int_equal(zh_server_active(fx.s), 0);
}

static void request_body_follows_credits(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(false);
    th_write_str(fd, "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789");
    struct zh_zhttp_packet *p = first_packet();
    assert_true((p->has & ZH_ZF_MORE) && p->more);
    /* No credits yet: nothing more. */
    th_run_for(&fx.tl, 20);
    assert_int_equal(th_bridge_count(&fx.tb, ZH_ZS_S_OUT_STREAM), 0);
    handler_simple(ZH_ZHTTP_CREDIT, 4);
    p = next_packet(ZH_ZS_S_OUT_STREAM);
    assert_true(th_span_is(p->body, "0123"));
    assert_true(p->more);
    /* Credits exhausted: the rest waits. */
    th_run_for(&fx.tl, 20);
    assert_int_equal(th_bridge_count(&fx.tb, ZH_ZS_S_OUT_STREAM), 0);
    handler_simple(ZH_ZHTTP_CREDIT, 100);
    p = next_packet(ZH_ZS_S_OUT_STREAM);
    assert_true(th_span_is(p->body, "456789"));
    assert_false((p->has & ZH_ZF_MORE) && p->more);
    handler_respond(201, "", false);
    client_wait("HTTP/1.1 201 ");
}

static void handler_exceeding_credits_closed(void **state)
{
    (void)state;
    fx.cfg.buffer_size = 1024;
    make_server();
    int fd = connect_client(false);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    struct zh_zhttp_packet *p = first_packet();
    assert_int_equal(p->credits, 1024);
    static char big[2000];
    memset(big, 'x', sizeof(big) - 1);
    handler_respond(200, big, true);
    p = next_packet(ZH_ZS_S_OUT_STREAM);
    assert_int_equal(p->type, ZH_ZHTTP_CANCEL);
    th_run_until(&fx.tl, rx_closed, NULL);
    client_close_and_wait_idle();
}

static void slow_client_eagain_and_regrant(void **state)
{
    (void)state;
    fx.cfg.buffer_size = 65536;
    make_server();
    int fd = connect_client(false);
    th_write_str(fd, "GET /big HTTP/1.1\r\nHost: h\r\n\r\n");
    first_packet();
    /* The engine's end of the pair: a small send buffer so writes hit EAGAIN. */
    struct zh_conn *c = fx.s->slots[0];
    assert_non_null(c);
    th_small_sndbuf(c->st.fd, 1024);
    static char chunk[65537];
    memset(chunk, 'y', 65536);
    handler_respond(200, chunk, true); /* all 64 KiB of initial credits */
    size_t sent = 65536, total = 65536 * 4;
    int64_t credits = 0;
    /* The client does not read: credits come back only for bytes that left the queue. */
    th_run_for(&fx.tl, 30);
    while (th_bridge_count(&fx.tb, ZH_ZS_S_OUT_STREAM)) {
        struct zh_zhttp_packet *p = next_packet(ZH_ZS_S_OUT_STREAM);
        assert_int_equal(p->type, ZH_ZHTTP_CREDIT);
        credits += p->credits;
    }
    assert_true(credits < 65536); /* the socket does not hold it all */
    assert_int_equal(c->state, ZH_CONN_RESPONSE);
    /* Now the client reads; the handler spends every credit it is given. */
    while (sent < total) {
        while (credits == 0) {
            struct zh_zhttp_packet *p = next_packet_reading(ZH_ZS_S_OUT_STREAM);
            assert_int_equal(p->type, ZH_ZHTTP_CREDIT);
            credits = p->credits;
        }
        size_t n = (size_t)credits < total - sent ? (size_t)credits : total - sent;
        if (n > 65536)
            n = 65536;
        chunk[n] = 0;
        struct zh_zhttp_packet p;
        handler_init(&p, ZH_ZHTTP_DATA);
        p.body = zh_span_str(chunk);
        p.has |= ZH_ZF_MORE;
        p.more = sent + n < total;
        handler_send(&p);
        chunk[n] = 'y';
        sent += n;
        credits -= (int64_t)n;
    }
    client_wait("\r\n0\r\n\r\n");
    /* Chunked framing (hex sizes, CRLFs) around exactly total bytes of 'y'. */
    const char *body = strstr(zh_buf_cstr(&fx.rx), "\r\n\r\n");
    assert_non_null(body);
    size_t ys = 0;
    for (const char *q = body; *q; q++)
        ys += *q == 'y';
    assert_int_equal(ys, total);
}

static void shutdown_cancel_503(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(false);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    first_packet();
    handler_simple(ZH_ZHTTP_KEEP_ALIVE, -1);
    zh_server_shutdown(fx.s, 1);
    client_wait("HTTP/1.1 503 ");
    struct zh_zhttp_packet *p = next_packet(ZH_ZS_S_OUT_STREAM);
    assert_int_equal(p->type, ZH_ZHTTP_CANCEL);
    /* Closing: a new connection is refused. */
    assert_false(zh_server_reserve(fx.s, ZH_SERVER_STREAM));
}

static void interim_responses_and_expect_continue(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(false);
    th_write_str(fd,
                 "PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    first_packet();
    /* A 103 goes to the client as an interim response; then the handler's 100. */
    struct zh_zhttp_packet p;
    handler_init(&p, ZH_ZHTTP_DATA);
    p.has |= ZH_ZF_CODE | ZH_ZF_HEADERS | ZH_ZF_CREDITS;
    p.code = 103;
    p.credits = 100;
    p.n_headers = 1;
    p.headers[0].name = zh_span_str("Link");
    p.headers[0].value = zh_span_str("</s.css>; rel=preload");
    handler_send(&p);
    client_wait("HTTP/1.1 103 ");
    handler_init(&p, ZH_ZHTTP_DATA);
    p.has |= ZH_ZF_CODE;
    p.code = 100;
    handler_send(&p);
    client_wait("HTTP/1.1 100 Continue\r\n\r\n");
    th_write_str(fd, "ok");
    struct zh_zhttp_packet *q = next_packet(ZH_ZS_S_OUT_STREAM);
    assert_true(th_span_is(q->body, "ok"));
    handler_respond(200, "done", false);
    client_wait("done");

    /* A 102 is refused: 502 and a cancel. */
    zh_buf_reset(&fx.rx);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    first_packet();
    handler_init(&p, ZH_ZHTTP_DATA);
    p.has |= ZH_ZF_CODE;
    p.code = 102;
    handler_send(&p);
    client_wait("HTTP/1.1 502 ");
    q = next_packet(ZH_ZS_S_OUT_STREAM);
    assert_int_equal(q->type, ZH_ZHTTP_CANCEL);
    client_close_and_wait_idle();
}

static void head_request_http10_and_hop_by_hop(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(false);
    /* HEAD: the head only, whatever body the handler sends. */
    th_write_str(fd, "HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n");
    first_packet();
    struct zh_zhttp_packet p;
    handler_init(&p, ZH_ZHTTP_DATA);
    p.has |= ZH_ZF_CODE | ZH_ZF_HEADERS;
    p.code = 200;
    p.reason = zh_span_str("OK");
    p.n_headers = 4;
    p.headers[0].name = zh_span_str("Content-Length");
    p.headers[0].value = zh_span_str("42");
    p.headers[1].name = zh_span_str("Connection");
    p.headers[1].value = zh_span_str("x-private");
    p.headers[2].name = zh_span_str("X-Private");
    p.headers[2].value = zh_span_str("secret");
    p.headers[3].name = zh_span_str("X-Kept");
    p.headers[3].value = zh_span_str("yes");
    handler_send(&p);
    client_wait("X-Kept: yes\r\n");
    client_wait("\r\n\r\n");
    th_run_for(&fx.tl, 10);
    th_read_avail(fd, &fx.rx);
    const char *rx = zh_buf_cstr(&fx.rx);
    assert_null(strstr(rx, "X-Private"));
    assert_null(strstr(rx, "x-private"));
    assert_non_null(strstr(rx, "Content-Length: 42\r\n"));
    assert_string_equal(strstr(rx, "\r\n\r\n"), "\r\n\r\n"); /* no body */

    /* HTTP/1.0 without keep-alive: a streamed body is delimited by the close. */
    zh_buf_reset(&fx.rx);
    th_write_str(fd, "GET /old HTTP/1.0\r\nHost: h\r\n\r\n");
    first_packet();
    handler_respond(200, "part1-", true);
    client_wait("part1-");
    assert_null(strstr(zh_buf_cstr(&fx.rx), "chunked"));
    struct zh_zhttp_packet d;
    handler_init(&d, ZH_ZHTTP_DATA);
    d.body = zh_span_str("part2");
    handler_send(&d);
    th_run_until(&fx.tl, rx_closed, NULL);
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), "part1-part2"));
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), " 200 OK\r\n"));
    client_close_and_wait_idle();
}

static void handoff_and_seq_error(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(false);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    first_packet();
    handler_simple(ZH_ZHTTP_HANDOFF_START, -1);
    struct zh_zhttp_packet *p = next_packet(ZH_ZS_S_OUT_STREAM);
    assert_int_equal(p->type, ZH_ZHTTP_HANDOFF_PROCEED);
    /* Paused: the next handler packet resumes the session; the response goes through. */
    handler_respond(200, "after handoff", false);
    client_wait("after handoff");

    /* A wrong seq (the handler's address known from its first packet): cancel and close. */
    zh_buf_reset(&fx.rx);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    first_packet();
    handler_simple(ZH_ZHTTP_KEEP_ALIVE, -1);
    fx.seq = 5;
    handler_respond(200, "never", false);
    p = next_packet(ZH_ZS_S_OUT_STREAM);
    assert_int_equal(p->type, ZH_ZHTTP_CANCEL);
    th_run_until(&fx.tl, rx_closed, NULL);
    assert_null(strstr(zh_buf_cstr(&fx.rx), "never"));
    client_close_and_wait_idle();
}

static void keepalives_and_expiry(void **state)
{
    (void)state;
    fx.cfg.params.keepalive_ms = 50;
    fx.cfg.params.expiry_ms = 300;
    make_server();
    int fd = connect_client(false);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    first_packet();
    handler_simple(ZH_ZHTTP_KEEP_ALIVE, -1);
    /* We keep the session alive towards the handler... */
    struct zh_zhttp_packet *p = next_packet(ZH_ZS_S_OUT_STREAM);
    assert_int_equal(p->type, ZH_ZHTTP_KEEP_ALIVE);
    /* ...and a handler that stays silent past the expiry gets a cancel, the client a 504. */
    client_wait("HTTP/1.1 504 ");
    bool cancelled = false;
    while (th_bridge_count(&fx.tb, ZH_ZS_S_OUT_STREAM)) {
        p = next_packet(ZH_ZS_S_OUT_STREAM);
        cancelled |= p->type == ZH_ZHTTP_CANCEL;
    }
    assert_true(cancelled);
    client_close_and_wait_idle();
}

static void handler_unreachable_and_bad_packets(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(false);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    first_packet();
    /* Undecodable, unknown-session and wrong-socket packets are dropped; the session goes on. */
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_S_IN, 16);
    zh_zmsg_add(&m, "zhttpd-test Tjunk", 17);
    zh_server_on_zmsg(fx.s, m);
    m = zh_zmsg_new(ZH_ZS_S_IN, 16);
    zh_zmsg_add(&m, "no-space", 8);
    zh_server_on_zmsg(fx.s, m);
    struct zh_zhttp_packet p;
    handler_init(&p, ZH_ZHTTP_DATA);
    p.has |= ZH_ZF_CODE;
    p.code = 200;
    zh_server_on_zmsg(fx.s, th_reply_req(&p)); /* a stream session's id on the DEALER */
    char saved[64];
    snprintf(saved, sizeof(saved), "%s", fx.id);
    snprintf(fx.id, sizeof(fx.id), "0-99-1");
    handler_respond(200, "stray", false);
    snprintf(fx.id, sizeof(fx.id), "%s", saved);
    fx.seq = 0;
    handler_simple(ZH_ZHTTP_KEEP_ALIVE, -1);
    /* A later packet to the handler comes back undelivered: the handler is gone, 502. */
    handler_simple(ZH_ZHTTP_CREDIT, 0);
    struct zh_zmsg *back = zh_zmsg_new(ZH_ZS_S_OUT_STREAM, 64);
    {
        struct zh_zhttp_packet c;
        zh_zhttp_packet_init(&c);
        c.from = zh_span_str("zhttpd-test");
        c.n_ids = 1;
        c.ids[0].id = zh_span_str(fx.id);
        c.type = ZH_ZHTTP_CREDIT;
        struct zh_buf enc = {0};
        zh_zhttp_encode(&c, &enc);
        zh_zmsg_add(&back, HANDLER, strlen(HANDLER));
        zh_zmsg_add(&back, NULL, 0);
        zh_zmsg_add(&back, enc.data, enc.len);
        zh_buf_free(&enc);
    }
    back->flags |= ZH_ZMSG_F_UNDELIVERED;
    zh_server_on_zmsg(fx.s, back);
    client_wait("HTTP/1.1 502 ");
    assert_null(strstr(zh_buf_cstr(&fx.rx), "stray"));
    client_close_and_wait_idle();
}

static void client_inactivity_closes(void **state)
{
    (void)state;
    fx.cfg.stream_timeout_ms = 100;
    make_server();
    int fd = connect_client(false);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    first_packet();
    handler_respond(200, "streaming", true);
    client_wait("streaming");
    /* The handler keeps the session alive, but the response stalls and the client is idle. */
    handler_simple(ZH_ZHTTP_KEEP_ALIVE, -1);
    th_run_until(&fx.tl, rx_closed, NULL);
    struct zh_zhttp_packet *p = next_packet(ZH_ZS_S_OUT_STREAM);
    while (p->type != ZH_ZHTTP_CANCEL)
        p = next_packet(ZH_ZS_S_OUT_STREAM);
    client_close_and_wait_idle();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(stream_request_response_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(stream_pipelined_requests_answered_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(bad_request_400_and_close, setup, teardown),
        cmocka_unit_test_setup_teardown(head_timeout_408, setup, teardown),
        cmocka_unit_test_setup_teardown(idle_keepalive_closed_at_head_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(undelivered_first_packet_503, setup, teardown),
        cmocka_unit_test_setup_teardown(handler_error_502, setup, teardown),
        cmocka_unit_test_setup_teardown(client_gone_mid_request_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(request_body_follows_credits, setup, teardown),
        cmocka_unit_test_setup_teardown(handler_exceeding_credits_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(slow_client_eagain_and_regrant, setup, teardown),
        cmocka_unit_test_setup_teardown(shutdown_cancel_503, setup, teardown),
        cmocka_unit_test_setup_teardown(interim_responses_and_expect_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(head_request_http10_and_hop_by_hop, setup, teardown),
        cmocka_unit_test_setup_teardown(handoff_and_seq_error, setup, teardown),
        cmocka_unit_test_setup_teardown(keepalives_and_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(handler_unreachable_and_bad_packets, setup, teardown),
        cmocka_unit_test_setup_teardown(client_inactivity_closes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
