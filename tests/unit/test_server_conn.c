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
 * leave), and shutdown with cancel (503). */
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
