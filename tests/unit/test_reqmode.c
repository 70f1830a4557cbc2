/* link: zh_server */
/* Unit tests for req mode (server/reqmode.c, with conn.c, input.c and response.c): a real loop,
 * socketpair clients and a fake handler on the DEALER (server_fixture.h). Covered: the whole body
 * read before the request goes out (Content-Length, chunked, Expect: 100-continue), the answer
 * written from the handler's message (keep-alive, a large body through a slow client: EAGAIN at
 * every write), the body limit (413, announced and chunked), the body timeout (408), the handler
 * timeout (504), a first packet no handler took (503), a handler error, more=true, a 1xx or
 * out-of-range status (502), an answer while the body is still read (dropped), and a client
 * closing mid-request. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "server_fixture.h"

/* The req-mode request the handler got (frames "", T…), id remembered. */
static struct zh_zhttp_packet *req_packet(void)
{
    struct zh_zhttp_packet *p = next_packet(ZH_ZS_S_REQ);
    assert_int_equal(fx.held->nframes, 2);
    assert_int_equal(zh_zmsg_frame(fx.held, 0).n, 0);
    assert_int_equal(p->n_ids, 1);
    snprintf(fx.id, sizeof(fx.id), "%.*s", (int)p->ids[0].id.n, (const char *)p->ids[0].id.p);
    assert_false(p->ids[0].has_seq);
    assert_false(p->stream);
    return p;
}

static void req_init(struct zh_zhttp_packet *p, enum zh_zhttp_type type)
{
    zh_zhttp_packet_init(p);
    p->type = type;
    p->from = zh_span_str(HANDLER);
    p->n_ids = 1;
    p->ids[0].id = zh_span_str(fx.id);
}

static void req_answer(int code, const char *body)
{
    struct zh_zhttp_packet p;
    req_init(&p, ZH_ZHTTP_DATA);
    p.has |= ZH_ZF_CODE;
    p.code = code;
    p.reason = zh_span_str("Fine");
    p.body = zh_span_str(body);
    zh_server_on_zmsg(fx.s, th_reply_req(&p));
}

static void req_response_keepalive(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(true);
    th_write_str(fd, "POST /r HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhel");
    th_run_for(&fx.tl, 20);
    /* The body is not whole yet: nothing goes out. */
    assert_int_equal(th_bridge_count(&fx.tb, ZH_ZS_S_REQ), 0);
    th_write_str(fd, "lo");
    struct zh_zhttp_packet *p = req_packet();
    assert_true(th_span_is(p->method, "POST"));
    assert_true(th_span_is(p->uri, "http://h/r"));
    assert_true(th_span_is(p->body, "hello"));
    req_answer(200, "answer");
    client_wait("answer");
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), "HTTP/1.1 200 Fine\r\n"));
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), "Content-Length: 6\r\n"));
    assert_int_equal(zh_server_active(fx.s), 0);

    zh_buf_reset(&fx.rx);
    th_write_str(fd, "GET /again HTTP/1.1\r\nHost: h\r\n\r\n");
    p = req_packet();
    assert_true(th_span_is(p->uri, "http://h/again"));
    req_answer(204, "");
    client_wait("HTTP/1.1 204 Fine\r\n");
    assert_int_equal(zh_server_conn_count(fx.s), 1);
    client_close_and_wait_idle();
}

static void req_chunked_body_decoded(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(true);
    th_write_str(fd, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    struct zh_zhttp_packet *p = req_packet();
    assert_true(th_span_is(p->body, "hello world"));
    req_answer(200, "ok");
    client_wait("ok");
}

static void req_expect_continue(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(true);
    th_write_str(fd,
                 "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    client_wait("HTTP/1.1 100 Continue\r\n\r\n");
    th_write_str(fd, "abc");
    struct zh_zhttp_packet *p = req_packet();
    assert_true(th_span_is(p->body, "abc"));
    req_answer(200, "ok");
    client_wait("ok");
}

static void req_body_too_large_413(void **state)
{
    (void)state;
    fx.cfg.body_buffer_size = 100;
    make_server();
    int fd = connect_client(true);
    th_write_str(fd, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n");
    th_run_until(&fx.tl, rx_closed, NULL);
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), "HTTP/1.1 413 "));
    assert_int_equal(th_bridge_count(&fx.tb, ZH_ZS_S_REQ), 0);
    client_close_and_wait_idle();
}

static void req_chunked_too_large_413(void **state)
{
    (void)state;
    fx.cfg.body_buffer_size = 100;
    make_server();
    int fd = connect_client(true);
    char big[5 + 512 + 3]; /* one well-formed 512-byte chunk, over the 100-byte limit */
    memset(big, 'z', sizeof(big));
    memcpy(big, "200\r\n", 5);
    memcpy(big + 5 + 512, "\r\n", 3);
    th_write_str(fd, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    th_write_str(fd, big);
    th_run_until(&fx.tl, rx_closed, NULL);
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), "HTTP/1.1 413 "));
    client_close_and_wait_idle();
}

static void req_body_timeout_408(void **state)
{
    (void)state;
    fx.cfg.req_timeout_ms = 100;
    make_server();
    int fd = connect_client(true);
    th_write_str(fd, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc");
    th_run_until(&fx.tl, rx_closed, NULL);
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), "HTTP/1.1 408 "));
    client_close_and_wait_idle();
}

static void req_handler_timeout_504(void **state)
{
    (void)state;
    fx.cfg.req_timeout_ms = 100;
    make_server();
    int fd = connect_client(true);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    req_packet();
    client_wait("HTTP/1.1 504 ");
    /* A late answer finds no session. */
    req_answer(200, "late");
    th_run_for(&fx.tl, 10);
    assert_null(strstr(zh_buf_cstr(&fx.rx), "late"));
}

static void req_undelivered_503(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(true);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    req_packet();
    struct zh_zmsg *m = fx.held;
    fx.held = NULL;
    m->flags |= ZH_ZMSG_F_UNDELIVERED;
    zh_server_on_zmsg(fx.s, m);
    client_wait("HTTP/1.1 503 ");
}

static void req_bad_answers_502(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(true);
    struct zh_zhttp_packet p;

    /* error */
    th_write_str(fd, "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n");
    req_packet();
    req_init(&p, ZH_ZHTTP_ERROR);
    zh_server_on_zmsg(fx.s, th_reply_req(&p));
    client_wait("HTTP/1.1 502 ");
    client_close_and_wait_idle();

    /* more=true */
    zh_buf_reset(&fx.rx);
    fd = connect_client(true);
    th_write_str(fd, "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
    req_packet();
    req_init(&p, ZH_ZHTTP_DATA);
    p.has |= ZH_ZF_CODE | ZH_ZF_MORE;
    p.code = 200;
    p.more = true;
    zh_server_on_zmsg(fx.s, th_reply_req(&p));
    client_wait("HTTP/1.1 502 ");
    client_close_and_wait_idle();

    /* a 1xx, then a status out of range */
    int codes[2] = {100, 999};
    for (int i = 0; i < 2; i++) {
        zh_buf_reset(&fx.rx);
        fd = connect_client(true);
        th_write_str(fd, "GET /3 HTTP/1.1\r\nHost: h\r\n\r\n");
        req_packet();
        req_answer(codes[i], "");
        client_wait("HTTP/1.1 502 ");
        client_close_and_wait_idle();
    }
    /* a non-data packet is ignored; the real answer still comes through */
    zh_buf_reset(&fx.rx);
    fd = connect_client(true);
    th_write_str(fd, "GET /4 HTTP/1.1\r\nHost: h\r\n\r\n");
    req_packet();
    req_init(&p, ZH_ZHTTP_KEEP_ALIVE);
    zh_server_on_zmsg(fx.s, th_reply_req(&p));
    req_answer(200, "fine");
    client_wait("fine");
}

static void req_client_gone_mid_request(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(true);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    req_packet();
    assert_int_equal(zh_server_active(fx.s), 1);
    close(fd);
    fx.cfd = -1;
    th_run_until(&fx.tl, engine_idle, NULL);
    assert_int_equal(zh_server_active(fx.s), 0);
    /* Req mode has no cancel to send. */
    assert_int_equal(th_bridge_count(&fx.tb, ZH_ZS_S_OUT_STREAM), 0);
    /* The late answer is dropped. */
    req_answer(200, "late");
}

static void req_large_answer_slow_client(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(true);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    req_packet();
    struct zh_conn *c = fx.s->slots[0];
    th_small_sndbuf(c->st.fd, 1024);
    static char body[200001];
    memset(body, 'q', sizeof(body) - 1);
    req_answer(200, body);
    /* The client does not read yet: the rest waits in the tail. */
    th_run_for(&fx.tl, 20);
    assert_true(c->tail_len > 0 || zh_chunkq_len(&c->out) > 0);
    client_wait("qqqq");
    struct zh_buf *rx = &fx.rx;
    const char *b;
    for (;;) {
        b = strstr(zh_buf_cstr(rx), "\r\n\r\n");
        if (b && rx->len - (size_t)(b + 4 - (const char *)rx->data) >= sizeof(body) - 1)
            break;
        th_run_for(&fx.tl, 2);
        th_read_avail(fd, rx);
    }
    assert_int_equal(rx->len - (size_t)(b + 4 - (const char *)rx->data), sizeof(body) - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(req_response_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(req_chunked_body_decoded, setup, teardown),
        cmocka_unit_test_setup_teardown(req_expect_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(req_body_too_large_413, setup, teardown),
        cmocka_unit_test_setup_teardown(req_chunked_too_large_413, setup, teardown),
        cmocka_unit_test_setup_teardown(req_body_timeout_408, setup, teardown),
        cmocka_unit_test_setup_teardown(req_handler_timeout_504, setup, teardown),
        cmocka_unit_test_setup_teardown(req_undelivered_503, setup, teardown),
        cmocka_unit_test_setup_teardown(req_bad_answers_502, setup, teardown),
        cmocka_unit_test_setup_teardown(req_client_gone_mid_request, setup, teardown),
        cmocka_unit_test_setup_teardown(req_large_answer_slow_client, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
