/* link: zh_rt */
/* Unit tests for shared/rt/stream.c, the transport of both roles: a plain stream over a socketpair
 * and TCP loopback (EAGAIN both ways, interest mask, peer reset, shutdown + linger, the TLS sniff
 * and the ClientHello wait, a write to a closed peer), and a TLS stream pair over TCP loopback
 * (handshake through -EAGAIN, writes blocked on a small send buffer retried by the retry rule,
 * data both ways, close_notify + FIN, a peer reset while reading). The TLS identity choice (SNI)
 * is server/tls.c's and is tested in test_tls.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "shared/rt/loop.h"
#include "shared/rt/stream.h"

#define PUMP_ROUNDS 200

/* A connected, non-blocking TCP pair on 127.0.0.1: fds[0] the client, fds[1] the accepted end. */
static void tcp_pair(int fds[2])
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(l >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
    fds[0] = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fds[0], (struct sockaddr *)&a, sizeof(a)), 0);
    fds[1] = accept4(l, NULL, NULL, SOCK_NONBLOCK);
    assert_true(fds[1] >= 0);
    close(l);
}

static void plain_eagain_both_ways_and_interest(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    struct zh_stream st;
    zh_stream_init(&st, fds[1]);
    assert_false(zh_stream_is_tls(&st));
    assert_true(zh_stream_established(&st));
    assert_int_equal(zh_stream_handshake(&st), 0);
    char b[4096];
    assert_int_equal(zh_stream_read(&st, b, sizeof(b)), -EAGAIN);
    assert_int_equal(zh_stream_want(&st), ZH_STREAM_WANT_NONE);
    assert_false(zh_stream_pending(&st));
    assert_int_equal(zh_stream_interest(&st, true, false), ZH_EV_READ);
    assert_int_equal(zh_stream_interest(&st, false, true), ZH_EV_WRITE);
    assert_int_equal(zh_stream_interest(&st, false, false), 0);
    assert_false(zh_stream_take_read_retry(&st));
    assert_false(zh_stream_take_write_retry(&st));

    /* Fill the socket: writev takes what fits, then -EAGAIN. */
    memset(b, 'x', sizeof(b));
    struct iovec iov[2] = {{b, 1000}, {b, sizeof(b)}};
    size_t sent = 0;
    ssize_t w;
    while ((w = zh_stream_writev(&st, iov, 2)) > 0)
        sent += (size_t)w;
    assert_int_equal(w, -EAGAIN);
    assert_true(sent > 0);
    assert_string_equal(zh_stream_error(&st, -EAGAIN), strerror(EAGAIN));

    /* Bytes one way arrive in order. */
    assert_int_equal(write(fds[0], "hello", 5), 5);
    assert_int_equal(zh_stream_read(&st, b, sizeof(b)), 5);
    assert_memory_equal(b, "hello", 5);
    close(fds[0]); /* with our bytes unread: a reset */
    assert_int_equal(zh_stream_read(&st, b, sizeof(b)), -ECONNRESET);
    zh_stream_close(&st);
    assert_int_equal(st.fd, -1);
    zh_stream_close(&st); /* idempotent */
}

static void plain_peer_reset_is_an_errno(void **state)
{
    (void)state;
    int fds[2];
    tcp_pair(fds);
    struct zh_stream st;
    zh_stream_init(&st, fds[1]);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(fds[0], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fds[0]); /* RST */
    char b[16];
    ssize_t r;
    for (int i = 0; i < PUMP_ROUNDS && (r = zh_stream_read(&st, b, sizeof(b))) == -EAGAIN; i++)
        usleep(1000);
    assert_int_equal(r, -ECONNRESET);
    assert_string_equal(zh_stream_error(&st, r), strerror(ECONNRESET));
    zh_stream_close(&st);
}

static void plain_shutdown_sends_fin_and_linger_drains(void **state)
{
    (void)state;
    int fds[2];
    tcp_pair(fds);
    struct zh_stream st;
    zh_stream_init(&st, fds[1]);
    assert_int_equal(zh_stream_shutdown(&st), 0);
    char b[16];
    assert_int_equal(read(fds[0], b, sizeof(b)), 0); /* our FIN */
    assert_int_equal(zh_stream_linger(&st, 4), -EAGAIN);
    /* The peer still sends: dropped; then it closes: 0. */
    assert_int_equal(write(fds[0], "late bytes", 10), 10);
    int r = -EAGAIN;
    for (int i = 0; i < PUMP_ROUNDS && r == -EAGAIN; i++) {
        r = zh_stream_linger(&st, 4);
        if (r == -EAGAIN && i == 2)
            close(fds[0]);
        usleep(1000);
    }
    assert_int_equal(r, 0);
    zh_stream_close(&st);
}

static void sniff_and_hello_wait(void **state)
{
    (void)state;
    int fds[2];
    tcp_pair(fds);
    struct zh_stream st;
    zh_stream_init(&st, fds[1]);
    assert_int_equal(zh_stream_sniff(&st), ZH_STREAM_SNIFF_NEED_MORE);
    /* A handshake record header announcing 100 bytes, and 10 of them. */
    const uint8_t head[5] = {0x16, 0x03, 0x01, 0x00, 100};
    uint8_t body[100] = {0};
    assert_int_equal(write(fds[0], head, 5), 5);
    assert_int_equal(write(fds[0], body, 10), 10);
    usleep(10000);
    assert_int_equal(zh_stream_sniff(&st), ZH_STREAM_SNIFF_TLS);
    assert_int_equal(zh_stream_hello_ready(&st), ZH_STREAM_HELLO_WAIT);
    int lw = 0;
    socklen_t ll = sizeof(lw);
    assert_int_equal(getsockopt(st.fd, SOL_SOCKET, SO_RCVLOWAT, &lw, &ll), 0);
    assert_int_equal(lw, 105);
    assert_int_equal(write(fds[0], body + 10, 90), 90);
    usleep(10000);
    assert_int_equal(zh_stream_hello_ready(&st), ZH_STREAM_HELLO_READY);
    assert_int_equal(getsockopt(st.fd, SOL_SOCKET, SO_RCVLOWAT, &lw, &ll), 0);
    assert_int_equal(lw, 1); /* set back */
    zh_stream_close(&st);
    close(fds[0]);

    /* Plain HTTP, and a peer that closes before its record is whole. */
    tcp_pair(fds);
    zh_stream_init(&st, fds[1]);
    assert_int_equal(write(fds[0], "GET / HTTP/1.1\r\n", 16), 16);
    usleep(10000);
    assert_int_equal(zh_stream_sniff(&st), ZH_STREAM_SNIFF_PLAIN);
    zh_stream_close(&st);
    close(fds[0]);
    tcp_pair(fds);
    zh_stream_init(&st, fds[1]);
    assert_int_equal(write(fds[0], head, 5), 5);
    close(fds[0]);
    usleep(10000);
    assert_int_equal(zh_stream_hello_ready(&st), ZH_STREAM_HELLO_EOF);
    zh_stream_close(&st);
    tcp_pair(fds);
    zh_stream_init(&st, fds[1]);
    close(fds[0]);
    usleep(10000);
    assert_int_equal(zh_stream_sniff(&st), ZH_STREAM_SNIFF_EOF);
    zh_stream_close(&st);
}

/* ---- TLS: a self-signed server context and a client that trusts nothing (no verification) ---- */

static SSL_CTX *sv_ctx, *cl_ctx;

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *crt = X509_new();
    if (!key || !crt)
        return -1;
    ASN1_INTEGER_set(X509_get_serialNumber(crt), 1);
    X509_gmtime_adj(X509_getm_notBefore(crt), -60);
    X509_gmtime_adj(X509_getm_notAfter(crt), 3600);
    X509_set_pubkey(crt, key);
    X509_NAME *n = X509_get_subject_name(crt);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"stream.test", -1, -1,
                               0);
    X509_set_issuer_name(crt, n);
    if (!X509_sign(crt, key, EVP_sha256()))
        return -1;
    sv_ctx = SSL_CTX_new(TLS_server_method());
    cl_ctx = SSL_CTX_new(TLS_client_method());
    if (!sv_ctx || !cl_ctx || SSL_CTX_use_certificate(sv_ctx, crt) != 1 ||
        SSL_CTX_use_PrivateKey(sv_ctx, key) != 1)
        return -1;
    SSL_CTX_set_options(sv_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_options(cl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    X509_free(crt);
    EVP_PKEY_free(key);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    SSL_CTX_free(sv_ctx);
    SSL_CTX_free(cl_ctx);
    return 0;
}

struct tls_pair {
    int fds[2];
    struct zh_stream cl, sv;
};

/* Both ends are zh_streams; the handshake is pumped through their -EAGAIN results. */
static void tls_pair_open(struct tls_pair *p)
{
    tcp_pair(p->fds);
    zh_stream_init(&p->cl, p->fds[0]);
    zh_stream_init(&p->sv, p->fds[1]);
    assert_int_equal(fcntl(p->fds[0], F_SETFL, O_NONBLOCK), 0);
    SSL *c = SSL_new(cl_ctx), *s = SSL_new(sv_ctx);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    assert_int_equal(zh_stream_tls_attach(&p->cl, c), 0);
    assert_int_equal(zh_stream_tls_attach(&p->sv, s), 0);
    assert_true(zh_stream_is_tls(&p->sv));
    assert_ptr_equal(zh_stream_of(s), &p->sv);
    assert_ptr_equal(zh_stream_ssl(&p->sv), s);
    assert_false(zh_stream_established(&p->sv));
    int rc = -EAGAIN, rs = -EAGAIN;
    for (int i = 0; i < PUMP_ROUNDS && (rc != 0 || rs != 0); i++) {
        if (rc)
            rc = zh_stream_handshake(&p->cl);
        if (rs) {
            rs = zh_stream_handshake(&p->sv);
            if (rs == -EAGAIN)
                assert_int_not_equal(zh_stream_want(&p->sv), ZH_STREAM_WANT_NONE);
        }
        assert_true(rc == 0 || rc == -EAGAIN);
        assert_true(rs == 0 || rs == -EAGAIN);
        usleep(100);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(rs, 0);
    assert_true(zh_stream_established(&p->sv));
    assert_string_equal(zh_stream_tls_error(&p->sv), "");
}

static void tls_pair_close(struct tls_pair *p)
{
    zh_stream_close(&p->cl);
    zh_stream_close(&p->sv);
}

/* Read exactly n bytes from st (pumping -EAGAIN). */
static void read_all(struct zh_stream *st, char *dst, size_t n)
{
    size_t got = 0;
    for (int i = 0; i < 10 * PUMP_ROUNDS && got < n; i++) {
        ssize_t r = zh_stream_read(st, dst + got, n - got);
        if (r == -EAGAIN) {
            assert_int_equal(zh_stream_interest(st, true, false) & ZH_EV_READ, ZH_EV_READ);
            usleep(100);
            continue;
        }
        assert_true(r > 0);
        got += (size_t)r;
    }
    assert_int_equal(got, n);
}

static void tls_data_both_ways_and_shutdown(void **state)
{
    (void)state;
    struct tls_pair p;
    tls_pair_open(&p);
    char b[64];
    assert_int_equal(zh_stream_read(&p.sv, b, sizeof(b)), -EAGAIN);
    assert_int_equal(zh_stream_want(&p.sv), ZH_STREAM_WANT_READ);
    char hw[] = "hello world", ping[] = "ping";
    struct iovec iov[2] = {{hw, 6}, {hw + 6, 5}};
    assert_int_equal(zh_stream_writev(&p.sv, iov, 2), 11);
    read_all(&p.cl, b, 11);
    assert_memory_equal(b, "hello world", 11);
    struct iovec one = {ping, 4};
    assert_int_equal(zh_stream_writev(&p.cl, &one, 1), 4);
    read_all(&p.sv, b, 4);
    assert_memory_equal(b, "ping", 4);
    assert_false(zh_stream_pending(&p.sv));

    /* close_notify + FIN: the client sees a clean end of stream. */
    assert_int_equal(zh_stream_shutdown(&p.sv), 0);
    ssize_t r = -EAGAIN;
    for (int i = 0; i < PUMP_ROUNDS && r == -EAGAIN; i++) {
        r = zh_stream_read(&p.cl, b, sizeof(b));
        usleep(100);
    }
    assert_int_equal(r, 0);
    /* What the client sends now is dropped by the lingering server. */
    assert_int_equal(zh_stream_writev(&p.cl, &one, 1), 4);
    usleep(10000);
    assert_int_equal(zh_stream_linger(&p.sv, 4), -EAGAIN);
    tls_pair_close(&p);
}

static void tls_peer_reset_while_reading(void **state)
{
    (void)state;
    struct tls_pair p;
    tls_pair_open(&p);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(p.fds[0], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    zh_stream_close(&p.cl); /* RST, no close_notify */
    char b[16];
    ssize_t r = -EAGAIN;
    for (int i = 0; i < PUMP_ROUNDS && r == -EAGAIN; i++) {
        r = zh_stream_read(&p.sv, b, sizeof(b));
        usleep(1000);
    }
    assert_int_equal(r, -ECONNRESET);
    assert_int_equal(zh_stream_read(&p.sv, b, sizeof(b)), -ECONNRESET); /* sticky */
    char x[] = "x";
    struct iovec one = {x, 1};
    assert_int_equal(zh_stream_writev(&p.sv, &one, 1), -ECONNRESET);
    tls_pair_close(&p);
}

static void plain_write_to_a_closed_peer_is_epipe(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    struct zh_stream st;
    zh_stream_init(&st, fds[1]);
    close(fds[0]);
    char x[] = "x";
    struct iovec one = {x, 1};
    assert_int_equal(zh_stream_writev(&st, &one, 1), -EPIPE);
    assert_string_equal(zh_stream_error(&st, -EPIPE), strerror(EPIPE));
    zh_stream_close(&st);
}

/* Pattern byte i of the stream. */
static char pat(size_t i)
{
    return (char)('a' + i % 23);
}

static void tls_write_eagain_and_retry_rule(void **state)
{
    (void)state;
    struct tls_pair p;
    tls_pair_open(&p);
    int small = 4096;
    assert_int_equal(setsockopt(p.fds[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    enum { TOTAL = 1 << 20, PIECE = 16384 };
    static char src[TOTAL], dst[TOTAL];
    for (size_t i = 0; i < TOTAL; i++)
        src[i] = pat(i);
    size_t sent = 0, got = 0;
    bool blocked = false;
    uint64_t until = zh_time_ms() + 5000; /* generous: a bound against a hang, not a speed test */
    for (int round = 0; got < TOTAL && zh_time_ms() < until; round++) {
        size_t before = sent + got;
        if (sent < TOTAL) {
            /* The retry rule: start with the bytes not yet counted, at least as many as before. */
            size_t n = TOTAL - sent < PIECE ? TOTAL - sent : PIECE;
            struct iovec iov[2] = {{src + sent, n / 2}, {src + sent + n / 2, n - n / 2}};
            ssize_t w = zh_stream_writev(&p.sv, iov, 2);
            if (w == -EAGAIN) {
                blocked = true;
                assert_int_equal(zh_stream_want(&p.sv), ZH_STREAM_WANT_WRITE);
                assert_true(zh_stream_interest(&p.sv, false, true) & ZH_EV_WRITE);
            } else {
                assert_true(w > 0);
                sent += (size_t)w;
            }
        }
        /* The client reads nothing until the server's writes block, then every other round. */
        if (blocked && (round % 2 == 0 || sent == TOTAL)) {
            ssize_t r = zh_stream_read(&p.cl, dst + got, TOTAL - got);
            if (r > 0)
                got += (size_t)r;
            else
                assert_int_equal(r, -EAGAIN);
        }
        if (sent + got == before)
            usleep(200);
    }
    assert_true(blocked);
    assert_int_equal(sent, TOTAL);
    assert_int_equal(got, TOTAL);
    assert_memory_equal(dst, src, TOTAL);
    tls_pair_close(&p);
}

static void tls_garbage_is_eproto_with_a_reason(void **state)
{
    (void)state;
    int fds[2];
    tcp_pair(fds);
    struct zh_stream st;
    zh_stream_init(&st, fds[1]);
    SSL *s = SSL_new(sv_ctx);
    SSL_set_accept_state(s);
    assert_int_equal(zh_stream_tls_attach(&st, s), 0);
    assert_int_equal(write(fds[0], "\x16\x03\x01\x00\x05garbage", 12), 12);
    usleep(10000);
    char b[16];
    ssize_t r = zh_stream_read(&st, b, sizeof(b));
    assert_int_equal(r, -EPROTO);
    assert_non_null(strstr(zh_stream_error(&st, r), "read: "));
    zh_stream_tls_refuse(&st, "refused by the owner");
    assert_string_equal(zh_stream_tls_error(&st), "refused by the owner");
    zh_stream_tls_set_name(&st, "a.test");
    zh_stream_tls_set_identity(&st, "_.test");
    assert_string_equal(zh_stream_tls_name(&st), "a.test");
    assert_string_equal(zh_stream_tls_identity(&st), "_.test");
    zh_stream_free_tls(&st); /* plain again, fd open */
    assert_false(zh_stream_is_tls(&st));
    assert_null(zh_stream_tls_name(&st));
    assert_true(st.fd >= 0);
    zh_stream_close(&st);
    close(fds[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_eagain_both_ways_and_interest),
        cmocka_unit_test(plain_peer_reset_is_an_errno),
        cmocka_unit_test(plain_shutdown_sends_fin_and_linger_drains),
        cmocka_unit_test(sniff_and_hello_wait),
        cmocka_unit_test(tls_data_both_ways_and_shutdown),
        cmocka_unit_test(tls_peer_reset_while_reading),
        cmocka_unit_test(tls_garbage_is_eproto_with_a_reason),
        cmocka_unit_test(plain_write_to_a_closed_peer_is_epipe),
        cmocka_unit_test(tls_write_eagain_and_retry_rule),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
