/* link: zh_server */
/* Unit tests for the TLS side of a server connection (server/conn.c's TLS start over
 * server/tls.c and shared/rt/stream.c): a connection accepted on a TLS listener, a real OpenSSL
 * client on the far end of a socketpair pumped from the test's poll, and the fake handler
 * (server_fixture.h). Covered: handshake (SNI and the listener's default identity), a request and
 * its response through TLS, plain HTTP on a TLS port refused, a client that leaves mid-handshake,
 * and a TLS connection on a worker without identities closed at accept. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "server_fixture.h"

static struct zh_tls_store *store;
static SSL_CTX *cctx;
static SSL *cssl;

static void tls_server(void)
{
    th_write_self_signed(fx.tb.dir, "site", "site.test");
    struct zh_buf err = {0};
    store = zh_tls_store_new(fx.tb.dir, &err);
    if (!store)
        fail_msg("zh_tls_store_new: %s", zh_buf_cstr(&err));
    zh_buf_free(&err);
    fx.cfg.tls = store;
    make_server();
}

static int tsetup(void **state)
{
    setup(state);
    store = NULL;
    cssl = NULL;
    cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(cctx);
    return 0;
}

static int tteardown(void **state)
{
    if (cssl)
        SSL_free(cssl);
    SSL_CTX_free(cctx);
    int r = teardown(state);
    zh_tls_store_free(store);
    return r;
}

static int connect_tls_client(const char *sni)
{
    int fds[2];
    th_socketpair(fds);
    assert_true(zh_server_reserve(fx.s, ZH_SERVER_STREAM));
    struct zh_accepted *a = zh_calloc(1, sizeof(*a));
    a->fd = fds[1];
    a->local = true;
    a->tls = true;
    a->default_cert = "site";
    assert_int_equal(zh_chan_push(zh_server_accept_chan(fx.s), a), 0);
    fx.cfd = fds[0];
    cssl = SSL_new(cctx);
    SSL_set_fd(cssl, fds[0]);
    SSL_set_connect_state(cssl);
    if (sni)
        SSL_set_tlsext_host_name(cssl, sni);
    return fds[0];
}

static bool handshake_done(void *arg)
{
    (void)arg;
    int r = SSL_do_handshake(cssl);
    if (r == 1)
        return true;
    int e = SSL_get_error(cssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        fail_msg("client handshake failed: %d", e);
    return false;
}

static bool tls_rx_has(void *arg)
{
    char b[4096];
    int r;
    while ((r = SSL_read(cssl, b, sizeof(b))) > 0)
        zh_buf_append(&fx.rx, b, (size_t)r);
    return zh_buf_cstr(&fx.rx) && strstr(zh_buf_cstr(&fx.rx), arg) != NULL;
}

static void tls_request_response(void **state)
{
    (void)state;
    tls_server();
    connect_tls_client("site.test");
    th_run_until(&fx.tl, handshake_done, NULL);
    X509 *peer = SSL_get1_peer_certificate(cssl);
    assert_non_null(peer);
    X509_free(peer);
    const char *req = "GET /secure HTTP/1.1\r\nHost: site.test\r\n\r\n";
    assert_int_equal(SSL_write(cssl, req, (int)strlen(req)), (int)strlen(req));
    struct zh_zhttp_packet *p = first_packet();
    assert_true(th_span_is(p->uri, "https://site.test/secure"));
    handler_respond(200, "over tls", false);
    char want[] = "over tls";
    th_run_until(&fx.tl, tls_rx_has, want);
    assert_non_null(strstr(zh_buf_cstr(&fx.rx), "HTTP/1.1 200 OK\r\n"));
}

static void tls_default_identity_without_sni(void **state)
{
    (void)state;
    tls_server();
    connect_tls_client(NULL);
    th_run_until(&fx.tl, handshake_done, NULL);
    const char *req = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_int_equal(SSL_write(cssl, req, (int)strlen(req)), (int)strlen(req));
    first_packet();
    handler_respond(204, "", false);
    char want[] = "HTTP/1.1 204 ";
    th_run_until(&fx.tl, tls_rx_has, want);
}

static void plain_http_on_tls_port_refused(void **state)
{
    (void)state;
    tls_server();
    int fd = connect_tls_client(NULL);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    th_run_until(&fx.tl, rx_closed, NULL);
    assert_int_equal(th_bridge_count(&fx.tb, ZH_ZS_S_OUT), 0);
    client_close_and_wait_idle();
}

static void client_leaves_mid_handshake(void **state)
{
    (void)state;
    tls_server();
    int fd = connect_tls_client("site.test");
    assert_false(handshake_done(NULL)); /* the ClientHello is out */
    th_run_for(&fx.tl, 20);
    (void)fd;
    close(fx.cfd);
    fx.cfd = -1;
    th_run_until(&fx.tl, engine_idle, NULL);
    assert_int_equal(zh_server_limits_tls_handshakes(&fx.limits), 0);
}

static void tls_connection_without_identities_closed(void **state)
{
    (void)state;
    make_server(); /* no store */
    connect_tls_client(NULL);
    th_run_until(&fx.tl, rx_closed, NULL);
    th_run_until(&fx.tl, engine_idle, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(tls_request_response, tsetup, tteardown),
        cmocka_unit_test_setup_teardown(tls_default_identity_without_sni, tsetup, tteardown),
        cmocka_unit_test_setup_teardown(plain_http_on_tls_port_refused, tsetup, tteardown),
        cmocka_unit_test_setup_teardown(client_leaves_mid_handshake, tsetup, tteardown),
        cmocka_unit_test_setup_teardown(tls_connection_without_identities_closed, tsetup,
                                        tteardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
