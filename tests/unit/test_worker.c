/* Unit tests for daemon/worker.c, the wiring of one worker thread: its own loop and thread, the
 * bridge's inbox routed by socket to the server engine (or dropped without that role, a batch
 * limit continuing on the next turn), the engine's packets out through the worker's port, a reload
 * applied between two events, drain (new connections refused, idle once the request in flight is
 * answered) and cancel (503 to the client, cancel to the handler, the thread exits). The bridge is
 * created but not started (harness.h): the test plays the bridge thread, popping the worker's
 * outbound channels and pushing into its inbox. The test thread only polls (th_run_until). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "daemon/worker.h"
#include "harness.h"
#include "shared/proto/mem.h"
#include "shared/rt/chan.h"

#define HANDLER "handler-w"

static struct {
    struct th_loop tl; /* the test thread's poller */
    struct th_bridge tb;
    struct zh_server_limits limits;
    struct zh_server_config scfg;
    struct zh_worker *w;
    int cfd;
    struct zh_buf rx;
    struct zh_zhttp_packet pkt;
    struct zh_zmsg *held;
    char id[64];
} fx;

static int setup(void **state)
{
    (void)state;
    memset(&fx, 0, sizeof(fx));
    th_loop_init(&fx.tl, 0);
    th_bridge_init(&fx.tb, fx.tl.loop, true);
    zh_server_limits_init(&fx.limits, 8, 8);
    fx.scfg.instance_id = "zhttpd-test";
    fx.scfg.buffer_size = 8192;
    fx.scfg.max_header_size = 16384;
    fx.scfg.body_buffer_size = 65536;
    fx.scfg.head_timeout_ms = 5000;
    fx.scfg.stream_timeout_ms = 5000;
    fx.scfg.req_timeout_ms = 5000;
    fx.scfg.handler_wait_ms = 5000;
    fx.scfg.limits = &fx.limits;
    fx.cfd = -1;
    /* The harness's port for worker 0 is not used: the worker makes its own. */
    zh_zport_free(fx.tb.port);
    fx.tb.port = NULL;
    struct zh_worker_config wc = {.index = 0, .bridge = fx.tb.b, .server = &fx.scfg};
    fx.w = zh_worker_new(&wc);
    assert_non_null(fx.w);
    assert_int_equal(zh_worker_start(fx.w), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    zh_worker_free(fx.w);
    zh_zmsg_free(fx.held);
    if (fx.cfd >= 0)
        close(fx.cfd);
    th_bridge_fini(&fx.tb);
    th_loop_fini(&fx.tl);
    zh_buf_free(&fx.rx);
    assert_int_equal(zh_server_limits_used(&fx.limits, ZH_SERVER_STREAM), 0);
    return 0;
}

static int connect_client(void)
{
    int fds[2];
    th_socketpair(fds);
    struct zh_server *s = zh_worker_server(fx.w);
    assert_non_null(s);
    assert_true(zh_server_reserve(s, ZH_SERVER_STREAM));
    struct zh_accepted *a = zh_calloc(1, sizeof(*a));
    a->fd = fds[1];
    a->local = true;
    assert_int_equal(zh_chan_push(zh_server_accept_chan(s), a), 0);
    fx.cfd = fds[0];
    return fds[0];
}

static bool have_out(void *arg)
{
    return th_bridge_count(&fx.tb, *(enum zh_zsock *)arg) > 0;
}

static struct zh_zhttp_packet *next_packet(enum zh_zsock sock)
{
    th_run_until(&fx.tl, have_out, &sock);
    zh_zmsg_free(fx.held);
    fx.held = th_bridge_take(&fx.tb, sock);
    th_decode(fx.held, &fx.pkt);
    return &fx.pkt;
}

/* Deliver a handler packet to the worker's inbox, as the bridge thread does. */
static void to_worker(struct zh_zmsg *m)
{
    assert_int_equal(zh_chan_push(zh_zbridge_inbox(fx.tb.b, 0), m), 0);
}

static void handler_packet(enum zh_zhttp_type type, int seq, int code, const char *body)
{
    struct zh_zhttp_packet p;
    zh_zhttp_packet_init(&p);
    p.type = type;
    p.from = zh_span_str(HANDLER);
    p.n_ids = 1;
    p.ids[0].id = zh_span_str(fx.id);
    p.ids[0].has_seq = true;
    p.ids[0].seq = seq;
    if (code) {
        p.has |= ZH_ZF_CODE;
        p.code = code;
        p.reason = zh_span_str("OK");
        p.body = zh_span_str(body);
    }
    to_worker(th_reply_pub("zhttpd-test", &p));
}

static bool rx_has(void *arg)
{
    th_read_avail(fx.cfd, &fx.rx);
    return zh_buf_cstr(&fx.rx) && strstr(zh_buf_cstr(&fx.rx), arg) != NULL;
}

static void client_wait(const char *text)
{
    char want[128];
    snprintf(want, sizeof(want), "%s", text);
    th_run_until(&fx.tl, rx_has, want);
}

static void start_request(void)
{
    int fd = connect_client();
    th_write_str(fd, "GET /w HTTP/1.1\r\nHost: h\r\n\r\n");
    struct zh_zhttp_packet *p = next_packet(ZH_ZS_S_OUT);
    assert_true(th_span_is(p->uri, "http://h/w"));
    snprintf(fx.id, sizeof(fx.id), "%.*s", (int)p->ids[0].id.n, (const char *)p->ids[0].id.p);
}

static void request_through_the_worker_thread(void **state)
{
    (void)state;
    start_request();
    handler_packet(ZH_ZHTTP_DATA, 0, 200, "from the handler");
    client_wait("from the handler");
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), "HTTP/1.1 200 OK\r\n"));
}

static bool inbox_empty(void *arg)
{
    (void)arg;
    return zh_chan_size(zh_zbridge_inbox(fx.tb.b, 0)) == 0;
}

static void inbox_batches_and_other_role_dropped(void **state)
{
    (void)state;
    /* More than one batch (256) of messages: client-role ones without a client role are freed,
     * server ones for unknown sessions dropped; the rest of the batch runs on the next turn. */
    for (int i = 0; i < 300; i++) {
        struct zh_zmsg *m = zh_zmsg_new(i % 2 ? ZH_ZS_C_IN : ZH_ZS_S_IN, 16);
        zh_zmsg_add(&m, "zhttpd-test Tx", 14);
        to_worker(m);
    }
    th_run_until(&fx.tl, inbox_empty, NULL);
    /* The worker still serves. */
    start_request();
    handler_packet(ZH_ZHTTP_DATA, 0, 200, "still here");
    client_wait("still here");
}

static bool reloaded(void *arg)
{
    return zh_worker_reloaded(fx.w, *(unsigned *)arg);
}

static bool closed_by_peer(void *arg)
{
    (void)arg;
    return th_read_avail(fx.cfd, &fx.rx) < 0;
}

static void reload_applied_between_events(void **state)
{
    (void)state;
    static struct zh_server_config next;
    next = fx.scfg;
    next.head_timeout_ms = 100;
    static struct zh_worker_reload r;
    r = (struct zh_worker_reload){.server = &next};
    unsigned seq = 1;
    zh_worker_reload(fx.w, &r, seq);
    th_run_until(&fx.tl, reloaded, &seq);
    /* The new head timeout holds for a new connection. */
    int fd = connect_client();
    th_write_str(fd, "GET / HT");
    th_run_until(&fx.tl, closed_by_peer, NULL);
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), "HTTP/1.1 408 "));
}

static bool worker_idle(void *arg)
{
    (void)arg;
    return zh_worker_idle(fx.w);
}

static void drain_waits_for_the_request_in_flight(void **state)
{
    (void)state;
    start_request();
    zh_worker_drain(fx.w);
    th_run_for(&fx.tl, 30);
    assert_false(zh_worker_idle(fx.w));
    assert_false(zh_server_reserve(zh_worker_server(fx.w), ZH_SERVER_STREAM));
    handler_packet(ZH_ZHTTP_DATA, 0, 200, "last one");
    client_wait("last one");
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), "Connection: close\r\n"));
    th_run_until(&fx.tl, worker_idle, NULL);
}

static void cancel_ends_everything(void **state)
{
    (void)state;
    start_request();
    handler_packet(ZH_ZHTTP_KEEP_ALIVE, 0, 0, NULL); /* the handler's address is known */
    zh_worker_cancel(fx.w);
    client_wait("HTTP/1.1 503 ");
    struct zh_zhttp_packet *p = next_packet(ZH_ZS_S_OUT_STREAM);
    assert_int_equal(p->type, ZH_ZHTTP_CANCEL);
    th_run_until(&fx.tl, worker_idle, NULL);
    unsigned seq = 7; /* an exited worker counts every reload as taken */
    th_run_until(&fx.tl, reloaded, &seq);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(request_through_the_worker_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(inbox_batches_and_other_role_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(reload_applied_between_events, setup, teardown),
        cmocka_unit_test_setup_teardown(drain_waits_for_the_request_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_ends_everything, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
