/* link: zh_server */
/* Unit tests for inbound WebSocket sessions (server/wsmode.c over conn.c): a real loop, a
 * socketpair client writing masked frames (shared/proto/ws.c) and a fake handler
 * (server_fixture.h). Covered: the upgrade request as a ws:// request, the handler's 101 (Accept
 * header), frames <-> packets both ways (text, binary, ping/pong, close handshake), client payload
 * under the handler's credits (held, then released by a credit packet), a rejected upgrade (the
 * handler's HTTP answer), bad upgrade requests (400), a protocol error (unmasked frame: 1002 +
 * cancel), a message over --max-message (1009 + cancel), and the client leaving (cancel). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "server_fixture.h"
#include "shared/proto/ws.h"

static const uint8_t MASK[4] = {0x11, 0x22, 0x33, 0x44};

#define UPGRADE                                                                      \
    "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"

static void client_frame(int fd, uint8_t opcode, const char *payload, const uint8_t *mask)
{
    struct zh_buf b = {0};
    zh_ws_put_frame(&b, true, opcode, false, payload, strlen(payload), mask);
    size_t off = 0;
    while (off < b.len) {
        ssize_t w = write(fd, b.data + off, b.len - off);
        assert_true(w > 0);
        off += (size_t)w;
    }
    zh_buf_free(&b);
}

static void accept_ws(int64_t credits)
{
    struct zh_zhttp_packet p;
    handler_init(&p, ZH_ZHTTP_DATA);
    p.has |= ZH_ZF_CODE | ZH_ZF_CREDITS;
    p.code = 101;
    p.credits = credits;
    handler_send(&p);
    client_wait("\r\n\r\n");
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), "HTTP/1.1 101 "));
    assert_non_null(
        strstr(zh_buf_cstr(&fx.rx), "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    zh_buf_reset(&fx.rx);
}

static void open_ws(int64_t credits)
{
    make_server();
    int fd = connect_client(false);
    th_write_str(fd, UPGRADE);
    struct zh_zhttp_packet *p = first_packet();
    assert_true(th_span_is(p->uri, "ws://h/chat"));
    accept_ws(credits);
}

static void ws_frames_both_ways_and_close(void **state)
{
    (void)state;
    open_ws(1000);
    client_frame(fx.cfd, ZH_WS_TEXT, "hi", MASK);
    struct zh_zhttp_packet *p = next_packet(ZH_ZS_S_OUT_STREAM);
    assert_true(th_span_is(p->content_type, "text"));
    assert_true(th_span_is(p->body, "hi"));

    /* Handler -> client: an unmasked text frame, then a binary one, then a ping. */
    struct zh_zhttp_packet d;
    handler_init(&d, ZH_ZHTTP_DATA);
    d.content_type = zh_span_str("text");
    d.body = zh_span_str("yo");
    handler_send(&d);
    client_wait("\x81\x02yo");
    handler_init(&d, ZH_ZHTTP_DATA);
    d.content_type = zh_span_str("binary");
    d.body = zh_span_str("bin");
    handler_send(&d);
    client_wait("\x82\x03"
                "bin");
    handler_init(&d, ZH_ZHTTP_PING);
    d.body = zh_span_str("pg");
    handler_send(&d);
    client_wait("\x89\x02pg");

    /* Client ping -> handler. */
    client_frame(fx.cfd, ZH_WS_PING, "cp", MASK);
    p = next_packet(ZH_ZS_S_OUT_STREAM);
    while (p->type == ZH_ZHTTP_CREDIT)
        p = next_packet(ZH_ZS_S_OUT_STREAM);
    assert_int_equal(p->type, ZH_ZHTTP_PING);

    /* The client closes: the handler gets close with the code; its close ends the connection. */
    struct zh_buf b = {0};
    zh_ws_put_close(&b, ZH_WS_CLOSE_NORMAL, "bye", 3, MASK);
    assert_int_equal(write(fx.cfd, b.data, b.len), (ssize_t)b.len);
    zh_buf_free(&b);
    p = next_packet(ZH_ZS_S_OUT_STREAM);
    while (p->type == ZH_ZHTTP_CREDIT)
        p = next_packet(ZH_ZS_S_OUT_STREAM);
    assert_int_equal(p->type, ZH_ZHTTP_CLOSE);
    assert_int_equal(p->code, 1000);
    handler_init(&d, ZH_ZHTTP_CLOSE);
    d.has |= ZH_ZF_CODE;
    d.code = 1000;
    handler_send(&d);
    th_run_until(&fx.tl, rx_closed, NULL);
    assert_non_null(memchr(fx.rx.data, 0x88, fx.rx.len));
    client_close_and_wait_idle();
}

static void ws_client_payload_under_credits(void **state)
{
    (void)state;
    open_ws(3);
    client_frame(fx.cfd, ZH_WS_TEXT, "hello", MASK);
    struct zh_zhttp_packet *p = next_packet(ZH_ZS_S_OUT_STREAM);
    assert_true(th_span_is(p->body, "hel"));
    assert_true(p->more);
    th_run_for(&fx.tl, 20);
    assert_int_equal(th_bridge_count(&fx.tb, ZH_ZS_S_OUT_STREAM), 0);
    handler_simple(ZH_ZHTTP_CREDIT, 10);
    p = next_packet(ZH_ZS_S_OUT_STREAM);
    assert_true(th_span_is(p->body, "lo"));
    assert_false((p->has & ZH_ZF_MORE) && p->more);
}

static void ws_rejected_and_bad_upgrades(void **state)
{
    (void)state;
    make_server();
    int fd = connect_client(false);
    th_write_str(fd, UPGRADE);
    first_packet();
    struct zh_zhttp_packet p;
    handler_init(&p, ZH_ZHTTP_ERROR);
    p.condition = zh_span_str("rejected");
    p.has |= ZH_ZF_CODE;
    p.code = 403;
    p.reason = zh_span_str("Forbidden");
    p.body = zh_span_str("go away");
    handler_send(&p);
    th_run_until(&fx.tl, rx_closed, NULL);
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), "HTTP/1.1 403 Forbidden\r\n"));
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), "go away"));
    client_close_and_wait_idle();

    const char *bad[] = {
        "POST /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Version: 12\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n",
    };
    for (size_t i = 0; i < 3; i++) {
        zh_buf_reset(&fx.rx);
        fx.rx_eof = false;
        fd = connect_client(false);
        th_write_str(fd, bad[i]);
        th_run_until(&fx.tl, rx_closed, NULL);
        assert_non_null(strstr(zh_buf_cstr(&fx.rx), "HTTP/1.1 400 "));
        client_close_and_wait_idle();
    }
    assert_int_equal(th_bridge_count(&fx.tb, ZH_ZS_S_OUT), 0);
}

/* The handler's cancel among what the engine sent. */
static void expect_cancel(void)
{
    struct zh_zhttp_packet *p = next_packet(ZH_ZS_S_OUT_STREAM);
    while (p->type != ZH_ZHTTP_CANCEL)
        p = next_packet(ZH_ZS_S_OUT_STREAM);
}

static void ws_protocol_error_1002(void **state)
{
    (void)state;
    open_ws(1000);
    client_frame(fx.cfd, ZH_WS_TEXT, "unmasked", NULL);
    th_run_until(&fx.tl, rx_closed, NULL);
    /* Our close frame: 0x88, length, code 1002. */
    assert_true(fx.rx.len >= 4);
    assert_int_equal(fx.rx.data[0], 0x88);
    assert_int_equal((fx.rx.data[2] << 8) | fx.rx.data[3], 1002);
    expect_cancel();
    client_close_and_wait_idle();
}

static void ws_message_too_big_1009(void **state)
{
    (void)state;
    fx.cfg.ws_max_message = 10;
    open_ws(1000);
    client_frame(fx.cfd, ZH_WS_TEXT, "this is far too long", MASK);
    th_run_until(&fx.tl, rx_closed, NULL);
    assert_true(fx.rx.len >= 4);
    assert_int_equal(fx.rx.data[0], 0x88);
    assert_int_equal((fx.rx.data[2] << 8) | fx.rx.data[3], 1009);
    expect_cancel();
    client_close_and_wait_idle();
}

static void ws_client_gone_cancels(void **state)
{
    (void)state;
    open_ws(1000);
    close(fx.cfd);
    fx.cfd = -1;
    expect_cancel();
    th_run_until(&fx.tl, engine_idle, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(ws_frames_both_ways_and_close, setup, teardown),
        cmocka_unit_test_setup_teardown(ws_client_payload_under_credits, setup, teardown),
        cmocka_unit_test_setup_teardown(ws_rejected_and_bad_upgrades, setup, teardown),
        cmocka_unit_test_setup_teardown(ws_protocol_error_1002, setup, teardown),
        cmocka_unit_test_setup_teardown(ws_message_too_big_1009, setup, teardown),
        cmocka_unit_test_setup_teardown(ws_client_gone_cancels, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
