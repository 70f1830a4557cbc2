/* link: zh_server */
/* Unit tests for server/listener.c: the real listener thread on unix sockets, handing connections
 * to two real worker engines (server_fixture.h's fake handler side; the engines run on the test's
 * loop). Covered: the worker rotation moves on only when a connection is accepted (one connection
 * per wake-up alternates between the workers: the EAGAIN accept that ends each wake-up must not
 * advance it), a burst spread evenly, the process connection limit pausing a listener and the
 * backlog resuming when a connection ends, a req-mode listener held at its own limit while a
 * stream one goes on, a closing worker skipped, and bind errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "server/listener.h"
#include "server_fixture.h"

#define NCLIENTS 8

static struct zh_server *w1;
static struct zh_server *workers[2]; /* the listener keeps this array, not a copy */
static struct zh_listener *lst;
static char paths[2][100]; /* fits sun_path */
static int clients[NCLIENTS * 2];
static int nclients;

static void start_listener(bool second_req)
{
    make_server();
    w1 = zh_server_new(fx.tl.loop, fx.tb.port, 1, &fx.cfg);
    workers[0] = fx.s;
    workers[1] = w1;
    struct zh_listen_spec specs[2] = {{0}};
    for (int i = 0; i < 2; i++) {
        snprintf(paths[i], sizeof(paths[i]), "%s/l%d.sock", fx.tb.dir, i);
        specs[i].path = paths[i];
        specs[i].local = true;
        specs[i].mode = -1;
    }
    specs[1].req = second_req;
    struct zh_buf err = {0};
    lst = zh_listener_new(specs, second_req ? 2 : 1, workers, 2, &err);
    if (!lst)
        fail_msg("zh_listener_new: %s", zh_buf_cstr(&err));
    zh_buf_free(&err);
    assert_int_equal(zh_listener_start(lst), 0);
}

static int lsetup(void **state)
{
    setup(state);
    w1 = NULL;
    lst = NULL;
    nclients = 0;
    return 0;
}

static bool all_gone(void *arg)
{
    (void)arg;
    return zh_server_conn_count(fx.s) == 0 && zh_server_conn_count(w1) == 0;
}

static int lteardown(void **state)
{
    zh_listener_free(lst);
    for (int i = 0; i < nclients; i++)
        if (clients[i] >= 0)
            close(clients[i]);
    th_run_until(&fx.tl, all_gone, NULL);
    zh_server_free(w1);
    return teardown(state);
}

static int dial(int which)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", paths[which]);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    clients[nclients++] = fd;
    return fd;
}

static unsigned want_total;

static bool total_is(void *arg)
{
    (void)arg;
    return zh_server_conn_count(fx.s) + zh_server_conn_count(w1) == want_total;
}

static void wait_total(unsigned n)
{
    want_total = n;
    th_run_until(&fx.tl, total_is, NULL);
}

static void rotation_moves_only_on_accept(void **state)
{
    (void)state;
    start_listener(false);
    int last = -1;
    for (unsigned i = 0; i < NCLIENTS; i++) {
        unsigned before0 = zh_server_conn_count(fx.s);
        dial(0);
        wait_total(i + 1);
        int got = zh_server_conn_count(fx.s) > before0 ? 0 : 1;
        /* Each wake-up accepts one connection then meets EAGAIN; only the accept moves the turn. */
        if (last >= 0)
            assert_int_not_equal(got, last);
        last = got;
    }
    assert_int_equal(zh_server_conn_count(fx.s), NCLIENTS / 2);
    assert_int_equal(zh_server_conn_count(w1), NCLIENTS / 2);
}

static void burst_spread_evenly(void **state)
{
    (void)state;
    start_listener(false);
    for (unsigned i = 0; i < NCLIENTS * 2; i++)
        dial(0);
    wait_total(NCLIENTS * 2);
    assert_int_equal(zh_server_conn_count(fx.s), NCLIENTS);
    assert_int_equal(zh_server_conn_count(w1), NCLIENTS);
}

static void limit_pauses_then_backlog_resumes(void **state)
{
    (void)state;
    zh_server_limits_init(&fx.limits, 2, 2);
    start_listener(false);
    dial(0);
    dial(0);
    dial(0);
    wait_total(2);
    th_run_for(&fx.tl, 50);
    assert_int_equal(zh_server_conn_count(fx.s) + zh_server_conn_count(w1), 2);
    assert_int_equal(zh_server_limits_used(&fx.limits, ZH_SERVER_STREAM), 2);
    /* One client leaves: its connection ends, and the third one comes out of the backlog. */
    close(clients[0]);
    clients[0] = -1;
    want_total = 2;
    th_run_for(&fx.tl, 50);
    wait_total(2);
    /* The third is accepted (it was waiting, not refused): it answers a request. */
    th_write_str(clients[2], "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    fx.cfd = -1;
    struct zh_zhttp_packet *p = first_packet();
    assert_true(th_span_is(p->uri, "http://h/"));
}

static void req_listener_own_limit(void **state)
{
    (void)state;
    zh_server_limits_init(&fx.limits, 4, 0); /* no req-mode connection at all */
    start_listener(true);
    dial(1);
    dial(0);
    wait_total(1);
    th_run_for(&fx.tl, 50);
    assert_int_equal(zh_server_limits_used(&fx.limits, ZH_SERVER_REQ), 0);
    assert_int_equal(zh_server_limits_used(&fx.limits, ZH_SERVER_STREAM), 1);
}

static void closing_worker_skipped(void **state)
{
    (void)state;
    start_listener(false);
    zh_server_shutdown(fx.s, 0);
    for (unsigned i = 0; i < 4; i++) {
        dial(0);
        wait_total(i + 1);
    }
    assert_int_equal(zh_server_conn_count(fx.s), 0);
    assert_int_equal(zh_server_conn_count(w1), 4);
}

static void bind_errors(void **state)
{
    (void)state;
    make_server();
    w1 = zh_server_new(fx.tl.loop, fx.tb.port, 1, &fx.cfg);
    workers[0] = fx.s;
    workers[1] = w1;
    struct zh_buf err = {0};
    struct zh_listen_spec bad = {.addr = "not-an-address", .port = 1, .mode = -1};
    assert_null(zh_listener_new(&bad, 1, workers, 2, &err));
    assert_true(err.len > 0);
    zh_buf_reset(&err);
    struct zh_listen_spec nodir = {.path = "/nonexistent-dir/x/l.sock", .local = true, .mode = -1};
    assert_null(zh_listener_new(&nodir, 1, workers, 2, &err));
    assert_true(err.len > 0);
    zh_buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(rotation_moves_only_on_accept, lsetup, lteardown),
        cmocka_unit_test_setup_teardown(burst_spread_evenly, lsetup, lteardown),
        cmocka_unit_test_setup_teardown(limit_pauses_then_backlog_resumes, lsetup, lteardown),
        cmocka_unit_test_setup_teardown(req_listener_own_limit, lsetup, lteardown),
        cmocka_unit_test_setup_teardown(closing_worker_skipped, lsetup, lteardown),
        cmocka_unit_test_setup_teardown(bind_errors, lsetup, lteardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
