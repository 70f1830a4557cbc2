/* The shared unit-test harness. See harness.h. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "shared/rt/chan.h"

/* ---- loop runner ---- */

static void watchdog_cb(struct zh_timer *tm, void *data)
{
    (void)tm;
    struct th_loop *t = data;
    fail_msg("watchdog: the loop ran %llu ms without reaching its goal",
             (unsigned long long)t->watchdog_ms);
}

static void stopper_cb(struct zh_timer *tm, void *data)
{
    (void)tm;
    struct th_loop *t = data;
    zh_loop_stop(t->loop);
}

static void poll_cb(struct zh_timer *tm, void *data)
{
    (void)tm;
    struct th_loop *t = data;
    if (t->cond && t->cond(t->arg))
        zh_loop_stop(t->loop);
    else
        zh_loop_timer_start(t->loop, &t->poll, 2);
}

void th_loop_init(struct th_loop *t, uint64_t watchdog_ms)
{
    memset(t, 0, sizeof(*t));
    t->loop = zh_loop_new();
    assert_non_null(t->loop);
    t->watchdog_ms = watchdog_ms ? watchdog_ms : TH_WATCHDOG_MS;
    zh_timer_init(&t->watchdog, watchdog_cb, t);
    zh_timer_init(&t->stopper, stopper_cb, t);
    zh_timer_init(&t->poll, poll_cb, t);
    th_loop_rearm(t);
}

void th_loop_rearm(struct th_loop *t)
{
    zh_loop_update_time(t->loop);
    zh_loop_timer_start(t->loop, &t->watchdog, t->watchdog_ms);
}

void th_run(struct th_loop *t)
{
    assert_int_equal(zh_loop_run(t->loop), 0);
}

void th_run_for(struct th_loop *t, uint64_t ms)
{
    zh_loop_update_time(t->loop);
    zh_loop_timer_start(t->loop, &t->stopper, ms);
    th_run(t);
    zh_loop_timer_stop(t->loop, &t->stopper);
}

void th_run_until(struct th_loop *t, bool (*cond)(void *arg), void *arg)
{
    th_loop_rearm(t);
    if (cond(arg))
        return;
    t->cond = cond;
    t->arg = arg;
    zh_loop_timer_start(t->loop, &t->poll, 1);
    th_run(t);
    zh_loop_timer_stop(t->loop, &t->poll);
    t->cond = NULL;
    assert_true(cond(arg));
}

void th_loop_fini(struct th_loop *t)
{
    zh_loop_timer_stop(t->loop, &t->watchdog);
    zh_loop_timer_stop(t->loop, &t->poll);
    th_run_for(t, 1);
    assert_int_equal(zh_loop_io_count(t->loop), 0);
    zh_loop_free(t->loop);
    t->loop = NULL;
}

/* ---- sockets ---- */

void th_socketpair(int fds[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
}

void th_tcp_pair(int fds[2])
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
    fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fds[0] >= 0);
    assert_int_equal(connect(fds[0], (struct sockaddr *)&a, sizeof(a)), 0);
    fds[1] = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    assert_true(fds[1] >= 0);
    close(l);
    assert_int_equal(fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK), 0);
}

void th_small_sndbuf(int fd, int bytes)
{
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes)), 0);
}

void th_close_rst(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
}

ssize_t th_read_avail(int fd, struct zh_buf *out)
{
    char b[16384];
    ssize_t total = 0;
    for (;;) {
        ssize_t r = read(fd, b, sizeof(b));
        if (r > 0) {
            zh_buf_append(out, b, (size_t)r);
            total += r;
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return total;
        if (r < 0 && errno == EINTR)
            continue;
        return total ? total : -1; /* EOF or reset */
    }
}

void th_write_str(int fd, const char *s)
{
    size_t n = strlen(s), off = 0;
    while (off < n) {
        ssize_t w = write(fd, s + off, n - off);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        assert_true(errno == EAGAIN || errno == EINTR);
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        assert_true(poll(&pfd, 1, TH_WATCHDOG_MS) == 1);
    }
}

/* ---- fake handler endpoint ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void use_sock(struct th_bridge *tb, struct zh_zbridge_config *cfg, enum zh_zsock s,
                     const char *name)
{
    snprintf(tb->ep[s], sizeof(tb->ep[s]), "ipc://%s/%s", tb->dir, name);
    tb->specs[s][0] = tb->ep[s];
    cfg->socks[s].specs = tb->specs[s];
    cfg->socks[s].n_specs = 1;
}

void th_bridge_init(struct th_bridge *tb, struct zh_loop *loop, bool server_role)
{
    memset(tb, 0, sizeof(*tb));
    snprintf(tb->dir, sizeof(tb->dir), "/tmp/zh-unit-XXXXXX");
    assert_non_null(mkdtemp(tb->dir));
    struct zh_zbridge_config cfg = {
        .instance_id = "zhttpd-test", .workers = 1, .ipc_file_mode = -1};
    if (server_role) {
        use_sock(tb, &cfg, ZH_ZS_S_OUT, "s-out");
        use_sock(tb, &cfg, ZH_ZS_S_OUT_STREAM, "s-out-stream");
        use_sock(tb, &cfg, ZH_ZS_S_IN, "s-in");
        use_sock(tb, &cfg, ZH_ZS_S_REQ, "s-req");
    } else {
        use_sock(tb, &cfg, ZH_ZS_C_IN, "c-in");
        use_sock(tb, &cfg, ZH_ZS_C_IN_STREAM, "c-in-stream");
        use_sock(tb, &cfg, ZH_ZS_C_OUT, "c-out");
        use_sock(tb, &cfg, ZH_ZS_C_REQ, "c-req");
    }
    struct zh_buf err = {0};
    tb->b = zh_zbridge_new(&cfg, &err);
    if (!tb->b)
        fail_msg("zh_zbridge_new: %s", zh_buf_cstr(&err));
    zh_buf_free(&err);
    tb->port = zh_zport_new(tb->b, 0, loop);
}

void th_bridge_fini(struct th_bridge *tb)
{
    if (tb->port)
        zh_zport_free(tb->port);
    zh_zbridge_free(tb->b);
    nftw(tb->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    memset(tb, 0, sizeof(*tb));
}

struct zh_zmsg *th_bridge_take(struct th_bridge *tb, enum zh_zsock sock)
{
    struct zh_chan *ch = zh_zbridge_outbox(tb->b, 0, sock);
    assert_non_null(ch);
    return zh_chan_pop(ch);
}

size_t th_bridge_count(struct th_bridge *tb, enum zh_zsock sock)
{
    struct zh_chan *ch = zh_zbridge_outbox(tb->b, 0, sock);
    assert_non_null(ch);
    return zh_chan_size(ch);
}

void th_decode(const struct zh_zmsg *m, struct zh_zhttp_packet *p)
{
    assert_non_null(m);
    struct zh_span f = zh_zmsg_frame(m, m->nframes - 1);
    struct zh_zhttp_error err = {0};
    if (zh_zhttp_decode(f.p, f.n, p, &err) < 0)
        fail_msg("undecodable packet: %s", err.reason);
}

struct zh_zmsg *th_reply_pub(const char *to, const struct zh_zhttp_packet *p)
{
    struct zh_buf enc = {0};
    zh_buf_append(&enc, to, strlen(to));
    zh_buf_append(&enc, " ", 1);
    zh_zhttp_encode(p, &enc);
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_S_IN, enc.len);
    zh_zmsg_add(&m, enc.data, enc.len);
    zh_buf_free(&enc);
    return m;
}

struct zh_zmsg *th_reply_req(const struct zh_zhttp_packet *p)
{
    struct zh_buf enc = {0};
    zh_zhttp_encode(p, &enc);
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_S_REQ, enc.len + 8);
    zh_zmsg_add(&m, NULL, 0);
    zh_zmsg_add(&m, enc.data, enc.len);
    zh_buf_free(&enc);
    return m;
}

bool th_span_is(struct zh_span s, const char *str)
{
    return zh_span_eq(s, str);
}

/* ---- TLS ---- */

void th_write_self_signed(const char *dir, const char *stem, const char *cn)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    char path[256];
    snprintf(path, sizeof(path), "%s/%s.key", dir, stem);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    assert_int_equal(fclose(f), 0);
    snprintf(path, sizeof(path), "%s/%s.crt", dir, stem);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    assert_int_equal(fclose(f), 0);
    X509_free(x);
    EVP_PKEY_free(key);
}
