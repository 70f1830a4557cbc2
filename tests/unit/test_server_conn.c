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

#include "harness.h"
#include "server/conn.h"
#include "server/server.h"
#include "shared/proto/mem.h"
#include "shared/rt/chan.h"

#define HANDLER "handler-1"

static struct {
    struct th_loop tl;
    struct th_bridge tb;
    struct zh_server_limits limits;
    struct zh_server_config cfg;
    struct zh_server *s;
    int cfd;          /* the client's end */
    struct zh_buf rx; /* what the client read */
    bool rx_eof;
    struct zh_zhttp_packet pkt; /* decoded scratch */
    struct zh_zmsg *held;       /* the message pkt points into */
    char id[64];                /* the session id of the last first packet */
    int64_t seq;                /* the handler's next seq */
} fx;

static int setup(void **state)
{
    (void)state;
    memset(&fx, 0, sizeof(fx));
    th_loop_init(&fx.tl, 0);
    th_bridge_init(&fx.tb, fx.tl.loop, true);
    zh_server_limits_init(&fx.limits, 16, 16);
    fx.cfg.instance_id = "zhttpd-test";
    fx.cfg.buffer_size = 8192;
    fx.cfg.max_header_size = 16384;
    fx.cfg.body_buffer_size = 65536;
    fx.cfg.head_timeout_ms = 5000;
    fx.cfg.stream_timeout_ms = 5000;
    fx.cfg.req_timeout_ms = 5000;
    fx.cfg.handler_wait_ms = 5000;
    fx.cfg.limits = &fx.limits;
    fx.cfd = -1;
    return 0;
}

static void make_server(void)
{
    fx.s = zh_server_new(fx.tl.loop, fx.tb.port, 0, &fx.cfg);
    assert_non_null(fx.s);
}

static int teardown(void **state)
{
    (void)state;
    zh_zmsg_free(fx.held);
    if (fx.cfd >= 0)
        close(fx.cfd);
    if (fx.s)
        zh_server_free(fx.s);
    th_bridge_fini(&fx.tb);
    th_loop_fini(&fx.tl);
    zh_buf_free(&fx.rx);
    assert_int_equal(zh_server_limits_used(&fx.limits, ZH_SERVER_STREAM), 0);
    assert_int_equal(zh_server_limits_used(&fx.limits, ZH_SERVER_REQ), 0);
    return 0;
}

/* Hand a new socketpair connection to the engine as the listener would; returns the client fd. */
static int connect_client(bool req_mode)
{
    int fds[2];
    th_socketpair(fds);
    assert_true(zh_server_reserve(fx.s, req_mode ? ZH_SERVER_REQ : ZH_SERVER_STREAM));
    struct zh_accepted *a = zh_calloc(1, sizeof(*a));
    a->fd = fds[1];
    a->local = true;
    a->req_mode = req_mode;
    assert_int_equal(zh_chan_push(zh_server_accept_chan(fx.s), a), 0);
    fx.cfd = fds[0];
    return fds[0];
}

static bool have_out(void *arg)
{
    return th_bridge_count(&fx.tb, *(enum zh_zsock *)arg) > 0;
}

/* Wait for the engine's next message on sock, decode it into fx.pkt (valid until the next one). */
static struct zh_zhttp_packet *next_packet(enum zh_zsock sock)
{
    th_run_until(&fx.tl, have_out, &sock);
    zh_zmsg_free(fx.held);
    fx.held = th_bridge_take(&fx.tb, sock);
    th_decode(fx.held, &fx.pkt);
    return &fx.pkt;
}

/* The first packet of a new session: remember its id. */
static struct zh_zhttp_packet *first_packet(void)
{
    struct zh_zhttp_packet *p = next_packet(ZH_ZS_S_OUT);
    assert_int_equal(p->n_ids, 1);
    snprintf(fx.id, sizeof(fx.id), "%.*s", (int)p->ids[0].id.n, (const char *)p->ids[0].id.p);
    assert_true(p->ids[0].has_seq);
    assert_int_equal(p->ids[0].seq, 0);
    fx.seq = 0;
    return p;
}

/* A handler packet for the current session, from HANDLER with the next seq. */
static void handler_init(struct zh_zhttp_packet *p, enum zh_zhttp_type type)
{
    zh_zhttp_packet_init(p);
    p->type = type;
    p->from = zh_span_str(HANDLER);
    p->n_ids = 1;
    p->ids[0].id = zh_span_str(fx.id);
    p->ids[0].has_seq = true;
    p->ids[0].seq = fx.seq++;
}

static void handler_send(const struct zh_zhttp_packet *p)
{
    zh_server_on_zmsg(fx.s, th_reply_pub("zhttpd-test", p));
}

static void handler_respond(int code, const char *body, bool more)
{
    struct zh_zhttp_packet p;
    handler_init(&p, ZH_ZHTTP_DATA);
    p.has |= ZH_ZF_CODE;
    p.code = code;
    p.reason = zh_span_str("OK");
    p.has |= ZH_ZF_HEADERS;
    p.n_headers = 1;
    p.headers[0].name = zh_span_str("Content-Type");
    p.headers[0].value = zh_span_str("text/plain");
    p.body = zh_span_str(body);
    if (more) {
        p.has |= ZH_ZF_MORE;
        p.more = true;
    }
    handler_send(&p);
}

static void handler_simple(enum zh_zhttp_type type, int64_t credits)
{
    struct zh_zhttp_packet p;
    handler_init(&p, type);
    if (credits >= 0) {
        p.has |= ZH_ZF_CREDITS;
        p.credits = credits;
    }
    handler_send(&p);
}

static bool rx_has(void *arg)
{
    if (th_read_avail(fx.cfd, &fx.rx) < 0)
        fx.rx_eof = true;
    return zh_buf_cstr(&fx.rx) && strstr(zh_buf_cstr(&fx.rx), arg) != NULL;
}

static bool rx_closed(void *arg)
{
    (void)arg;
    if (th_read_avail(fx.cfd, &fx.rx) < 0)
        fx.rx_eof = true;
    return fx.rx_eof;
}

/* Wait until the client has read text. */
static void client_wait(const char *text)
{
    char want[128];
    snprintf(want, sizeof(want), "%s", text);
    th_run_until(&fx.tl, rx_has, want);
}

static bool engine_idle(void *arg)
{
    (void)arg;
    return zh_server_conn_count(fx.s) == 0;
}

/* The client saw our FIN: it closes too, which ends the engine's lingering read, and the
 * connection is freed. */
static void client_close_and_wait_idle(void)
{
    close(fx.cfd);
    fx.cfd = -1;
    th_run_until(&fx.tl, engine_idle, NULL);
}

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

static bool have_out_reading(void *arg)
{
    if (th_read_avail(fx.cfd, &fx.rx) < 0)
        fx.rx_eof = true;
    return have_out(arg);
}

/* next_packet, with the client reading meanwhile. */
static struct zh_zhttp_packet *next_packet_reading(enum zh_zsock sock)
{
    th_run_until(&fx.tl, have_out_reading, &sock);
    zh_zmsg_free(fx.held);
    fx.held = th_bridge_take(&fx.tb, sock);
    th_decode(fx.held, &fx.pkt);
    return &fx.pkt;
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
