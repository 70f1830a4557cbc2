/* link: zh_client */
/* Unit tests for client/connect.c on loopback: plain TCP to a local listener (the fd works both
 * ways), a refused port, names and addresses the policy denies (by name, by every resolved
 * address, Zurl's "policy-violation only when all were denied" rule), several addresses tried in
 * order past a hanging one, connect timeouts against a listener whose backlog-0 queue is already
 * full, connect-host/connect-port, ignore-policies, cancellation in every state, and TLS against a
 * local OpenSSL server with a throw-away CA made by the openssl CLI: SNI, trust via tls_ca_file,
 * wrong host name and unknown CA (tls-error), ignore-tls-errors, trust-connect-host, IP-address
 * certificates, ALPN, a server that never answers the handshake (connection-timeout) and one that
 * answers with plain text (tls-error). Names resolve through a DNS responder thread on 127.0.0.1.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "client/connect.h"
#include "client/policy.h"
#include "client/resolver.h"
#include "shared/proto/mem.h"
#include "harness.h"
#include "shared/rt/loop.h"

/* ---- a minimal DNS responder: A records from a fixed table, NXDOMAIN otherwise ---- */

static const struct {
    const char *name;
    const char *ips[2];
} dns_table[] = {
    {"origin.test", {"127.0.0.1", NULL}},
    {"wrong.test", {"127.0.0.1", NULL}},
    {"other.test", {"127.0.0.1", NULL}},
    {"two.test", {"127.0.0.2", "127.0.0.1"}},
    {"mixed.test", {"169.254.169.254", "127.0.0.1"}},
    {"denied.test", {"10.0.0.1", "169.254.169.254"}},
    {"denied-refused.test", {"10.0.0.1", "127.0.0.1"}},
};

static struct {
    pthread_t thread;
    int fd, stop[2];
    uint16_t port;
} dns;

static size_t dns_answer(const uint8_t *q, size_t n, uint8_t *out)
{
    if (n < 17 || (q[2] & 0x80))
        return 0;
    char name[256];
    size_t pos = 12, nl = 0;
    while (pos < n && q[pos]) {
        unsigned l = q[pos++];
        if (l > 63 || pos + l > n || nl + l + 1 >= sizeof(name))
            return 0;
        if (nl)
            name[nl++] = '.';
        memcpy(name + nl, q + pos, l);
        nl += l;
        pos += l;
    }
    name[nl] = '\0';
    if (pos + 5 > n)
        return 0;
    unsigned qtype = (unsigned)q[pos + 1] << 8 | q[pos + 2];
    size_t qend = pos + 5;
    memcpy(out, q, qend);
    out[2] = 0x81 | (q[2] & 0x01);
    out[3] = 0x83; /* NXDOMAIN unless found */
    memset(out + 6, 0, 6);
    size_t o = qend;
    for (size_t i = 0; i < ZH_ARRAY_SIZE(dns_table); i++) {
        if (strcasecmp(dns_table[i].name, name) != 0)
            continue;
        out[3] = 0x80;
        for (int k = 0; k < 2 && dns_table[i].ips[k] && qtype == 1; k++) {
            static const uint8_t rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4};
            memcpy(out + o, rr, sizeof(rr));
            inet_pton(AF_INET, dns_table[i].ips[k], out + o + sizeof(rr));
            o += sizeof(rr) + 4;
            out[7]++;
        }
    }
    return o;
}

static void *dns_thread(void *arg)
{
    (void)arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = dns.fd, .events = POLLIN},
                              {.fd = dns.stop[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0)
            continue;
        if (p[1].revents)
            return NULL;
        uint8_t q[512], out[512];
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(dns.fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
        size_t len = n > 0 ? dns_answer(q, (size_t)n, out) : 0;
        if (len)
            sendto(dns.fd, out, len, 0, (struct sockaddr *)&from, fl);
    }
}

/* ---- listeners ---- */

static int listen_on(const char *ip, uint16_t port, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        fail_msg("bind %s:%u: %s", ip, (unsigned)port, strerror(errno));
    assert_int_equal(0, listen(fd, backlog));
    return fd;
}

static uint16_t port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t l = sizeof(a);
    assert_int_equal(0, getsockname(fd, (struct sockaddr *)&a, &l));
    return ntohs(a.sin_port);
}

/* A port nobody listens on: bind, read the port, close. */
static uint16_t dead_port(void)
{
    int fd = listen_on("127.0.0.1", 0, 1);
    uint16_t p = port_of(fd);
    close(fd);
    return p;
}

/* A listener with backlog 0 whose queue is already full: further connects hang (SYNs dropped). */
static struct {
    int lfd, fillers[2];
} full;

static uint16_t full_listener(const char *ip, uint16_t port)
{
    full.lfd = listen_on(ip, port, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port_of(full.lfd))};
    inet_pton(AF_INET, ip, &a.sin_addr);
    for (int i = 0; i < 2; i++) {
        full.fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(full.fillers[i], (struct sockaddr *)&a, sizeof(a));
    }
    usleep(50000);
    return port_of(full.lfd);
}

static void full_close(void)
{
    close(full.fillers[0]);
    close(full.fillers[1]);
    close(full.lfd);
}

/* ---- a TLS server thread ---- */

enum tls_mode {
    TLS_NORMAL,  /* handshake, send "hi", read until EOF */
    TLS_SILENT,  /* accept TCP, never answer */
    TLS_GARBAGE, /* answer the ClientHello with plain HTTP */
};

static char tmpdir[64];
static char ca_pem[128], srv_pem[128], srv_key[128];

static struct {
    pthread_t thread;
    int lfd, stop[2];
    uint16_t port;
    enum tls_mode mode;
    SSL_CTX *ctx;
    pthread_mutex_t lock;
    char sni[128];
    bool sni_seen;
    int handshakes;
} tls;

static int alpn_select(SSL *s, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)s;
    (void)arg;
    /* pick http/1.1 from the client's list */
    for (unsigned i = 0; i < inlen; i += 1u + in[i]) {
        if (in[i] == 8 && i + 9 <= inlen && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static void *tls_thread(void *arg)
{
    (void)arg;
    int held[8], nheld = 0;
    for (;;) {
        struct pollfd p[2] = {{.fd = tls.lfd, .events = POLLIN},
                              {.fd = tls.stop[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0)
            continue;
        if (p[1].revents)
            break;
        int c = accept(tls.lfd, NULL, NULL);
        if (c < 0)
            continue;
        struct timeval tv = {.tv_sec = 2};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (tls.mode == TLS_SILENT) {
            if (nheld < 8)
                held[nheld++] = c;
            else
                close(c);
            continue;
        }
        if (tls.mode == TLS_GARBAGE) {
            char buf[512];
            (void)!read(c, buf, sizeof(buf));
            static const char resp[] = "HTTP/1.0 400 Bad Request\r\n\r\n";
            (void)!write(c, resp, sizeof(resp) - 1);
            close(c);
            continue;
        }
        SSL *s = SSL_new(tls.ctx);
        SSL_set_fd(s, c);
        if (SSL_accept(s) == 1) {
            const char *sni = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
            pthread_mutex_lock(&tls.lock);
            tls.handshakes++;
            tls.sni_seen = sni != NULL;
            snprintf(tls.sni, sizeof(tls.sni), "%s", sni ? sni : "");
            pthread_mutex_unlock(&tls.lock);
            SSL_write(s, "hi", 2);
            char buf[64];
            while (SSL_read(s, buf, sizeof(buf)) > 0) {
            }
        }
        SSL_free(s);
        close(c);
        ERR_clear_error();
    }
    for (int i = 0; i < nheld; i++)
        close(held[i]);
    OPENSSL_thread_stop();
    return NULL;
}

static void tls_start(enum tls_mode mode)
{
    tls.mode = mode;
    tls.handshakes = 0;
    tls.sni_seen = false;
    tls.sni[0] = '\0';
    tls.lfd = listen_on("127.0.0.1", 0, 16);
    tls.port = port_of(tls.lfd);
    assert_int_equal(0, pipe(tls.stop));
    assert_int_equal(0, pthread_create(&tls.thread, NULL, tls_thread, NULL));
}

static void release_outcomes(void);

/* Stop the server thread. The test's client connections are closed first: the server reads each
 * connection until EOF. */
static void tls_stop(void)
{
    release_outcomes();
    assert_int_equal(1, write(tls.stop[1], "x", 1));
    pthread_join(tls.thread, NULL);
    close(tls.lfd);
    close(tls.stop[0]);
    close(tls.stop[1]);
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (system(cmd) != 0)
        fail_msg("command failed: %s", cmd);
}

/* A CA and a server certificate for origin.test and 127.0.0.1 (EC keys: quick to make). */
static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN); /* as zhttpd does: a peer's reset must not kill the test */
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/zh-test-connect-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", tmpdir);
    snprintf(srv_pem, sizeof(srv_pem), "%s/srv.pem", tmpdir);
    snprintf(srv_key, sizeof(srv_key), "%s/srv.key", tmpdir);
    sh("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
       "-keyout ca.key -out ca.pem -days 2 -subj /CN=zhttpd-test-ca 2>/dev/null",
       tmpdir);
    sh("cd %s && printf 'subjectAltName=DNS:origin.test,IP:127.0.0.1\\n' > ext.cnf && "
       "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key "
       "-out srv.csr -subj /CN=origin.test 2>/dev/null && "
       "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem "
       "-days 2 -extfile ext.cnf 2>/dev/null",
       tmpdir);
    tls.ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(tls.ctx);
    assert_int_equal(1, SSL_CTX_use_certificate_chain_file(tls.ctx, srv_pem));
    assert_int_equal(1, SSL_CTX_use_PrivateKey_file(tls.ctx, srv_key, SSL_FILETYPE_PEM));
    SSL_CTX_set_alpn_select_cb(tls.ctx, alpn_select, NULL);
    pthread_mutex_init(&tls.lock, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    SSL_CTX_free(tls.ctx);
    pthread_mutex_destroy(&tls.lock);
    sh("rm -rf %s", tmpdir);
    zh_resolver_library_cleanup();
    return 0;
}

/* ---- fixtures ---- */

static struct zh_loop *loop;
static struct zh_resolver *resolver;
static struct zh_policy *policy;
static struct zh_connect_ctx *ctx;
static struct th_loop tl; /* the loop runner: loop = tl.loop, with its watchdog */

static struct outcome {
    bool called;
    int status;
    char condition[64];
    char detail[256];
    int fd;   /* st.fd */
    SSL *ssl; /* st's session */
    struct zh_stream st;
    union zh_sockaddr peer;
    uint64_t at;
} out[4];
static int ncalled;
static bool in_start;

static void on_done(struct zh_connect *cn, struct zh_connect_result *res, void *data)
{
    (void)cn;
    struct outcome *o = data;
    assert_false(in_start);
    assert_false(o->called);
    o->called = true;
    o->status = res->status;
    snprintf(o->condition, sizeof(o->condition), "%s", res->condition ? res->condition : "");
    snprintf(o->detail, sizeof(o->detail), "%s", res->detail ? res->detail : "");
    zh_connect_take(res, &o->st);
    o->fd = o->st.fd;
    o->ssl = zh_stream_ssl(&o->st);
    o->peer = res->peer;
    o->at = zh_time_ms();
    if (res->status == 0) {
        assert_true(o->fd >= 0);
        assert_null(res->condition);
        assert_true(fcntl(o->fd, F_GETFL) & O_NONBLOCK);
        assert_true(zh_stream_established(&o->st));
    } else {
        assert_int_equal(-1, o->fd);
        assert_null(o->ssl);
        assert_non_null(res->condition);
    }
    ncalled++;
    zh_loop_stop(loop);
}

static struct zh_policy *make_policy(enum zh_policy_default def, const char *allow,
                                     const char *deny)
{
    const char *a[1] = {allow}, *d[1] = {deny};
    struct zh_policy_config cfg = {.defpolicy = def,
                                   .allow = a,
                                   .allow_count = allow ? 1 : 0,
                                   .deny = d,
                                   .deny_count = deny ? 1 : 0};
    struct zh_buf err = {0};
    struct zh_policy *p = zh_policy_new(&cfg, &err);
    assert_non_null(p);
    zh_buf_free(&err);
    return p;
}

static struct zh_connect_ctx *make_ctx(const struct zh_policy *p, const char *ca)
{
    struct zh_connect_ctx_config cfg = {.tls_ca_file = ca, .connect_timeout_ms = 2000};
    struct zh_buf err = {0};
    struct zh_connect_ctx *c = zh_connect_ctx_new(loop, resolver, p, &cfg, &err);
    if (!c)
        fail_msg("zh_connect_ctx_new: %s", zh_buf_cstr(&err));
    zh_buf_free(&err);
    return c;
}

static int setup(void **state)
{
    (void)state;
    alarm(30);
    dns.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(0, bind(dns.fd, (struct sockaddr *)&a, sizeof(a)));
    socklen_t al = sizeof(a);
    getsockname(dns.fd, (struct sockaddr *)&a, &al);
    dns.port = ntohs(a.sin_port);
    assert_int_equal(0, pipe(dns.stop));
    assert_int_equal(0, pthread_create(&dns.thread, NULL, dns_thread, NULL));

    th_loop_init(&tl, 10000);
    loop = tl.loop;
    char server[32];
    snprintf(server, sizeof(server), "127.0.0.1:%u", (unsigned)dns.port);
    const char *servers[1] = {server};
    struct zh_resolver_config rc = {
        .servers = servers, .server_count = 1, .timeout_ms = 1000, .tries = 1};
    struct zh_buf err = {0};
    resolver = zh_resolver_new(loop, &rc, &err);
    assert_non_null(resolver);
    zh_buf_free(&err);
    /* zhttpd's default policy, with the test's loopback origin allowed */
    policy = make_policy(ZH_POLICY_DEFAULT_UNSET, "127.0.0.1", NULL);
    ctx = make_ctx(policy, ca_pem);
    memset(out, 0, sizeof(out));
    ncalled = 0;
    return 0;
}

static void release_outcomes(void)
{
    for (size_t i = 0; i < ZH_ARRAY_SIZE(out); i++) {
        if (out[i].called)
            zh_stream_close(&out[i].st);
        out[i].ssl = NULL;
        out[i].fd = -1;
    }
}

static int teardown(void **state)
{
    (void)state;
    release_outcomes();
    zh_connect_ctx_free(ctx);
    zh_policy_free(policy);
    th_run_for(&tl, 1); /* deferred frees, before the resolver goes */
    zh_resolver_free(resolver);
    th_loop_fini(&tl); /* asserts that no io watcher is left */
    loop = NULL;
    assert_int_equal(1, write(dns.stop[1], "x", 1));
    pthread_join(dns.thread, NULL);
    close(dns.fd);
    close(dns.stop[0]);
    close(dns.stop[1]);
    alarm(0);
    return 0;
}

static struct zh_connect *start(struct zh_connect_ctx *c, const struct zh_connect_params *p, int i)
{
    in_start = true;
    struct zh_connect *cn = zh_connect_start(c, p, on_done, &out[i]);
    in_start = false;
    assert_non_null(cn);
    return cn;
}

static void wait_calls(int n)
{
    while (ncalled < n)
        zh_loop_run(loop);
    assert_int_equal(n, ncalled);
}

static void run_for(uint64_t ms)
{
    th_run_for(&tl, ms);
}

static void assert_failed(const struct outcome *o, const char *condition)
{
    assert_true(o->called);
    if (strcmp(o->condition, condition) != 0)
        fail_msg("got '%s' (%s), want '%s'", o->condition, o->detail, condition);
    assert_true(o->status < 0);
}

static void assert_ok(const struct outcome *o)
{
    assert_true(o->called);
    if (o->status != 0)
        fail_msg("failed: %s: %s", o->condition, o->detail);
}

/* ---- TCP ---- */

static void tcp_connects_to_a_local_listener(void **state)
{
    (void)state;
    int lfd = listen_on("127.0.0.1", 0, 4);
    struct zh_connect_params p = {.host = "origin.test", .port = port_of(lfd)};
    start(ctx, &p, 0);
    assert_false(out[0].called);
    wait_calls(1);
    assert_ok(&out[0]);
    assert_null(out[0].ssl);
    char buf[INET6_ADDRSTRLEN];
    assert_string_equal("127.0.0.1", zh_sockaddr_str(&out[0].peer, buf, sizeof(buf)));
    assert_int_equal(port_of(lfd), ntohs(out[0].peer.in.sin_port));
    /* the fd is really connected to our listener */
    int s = accept(lfd, NULL, NULL);
    assert_true(s >= 0);
    assert_int_equal(4, write(out[0].fd, "ping", 4));
    char got[8] = {0};
    assert_int_equal(4, read(s, got, sizeof(got)));
    assert_string_equal("ping", got);
    close(s);
    close(lfd);
}

static void refused_port_is_remote_connection_failed(void **state)
{
    (void)state;
    struct zh_connect_params p = {.host = "127.0.0.1", .port = dead_port()};
    start(ctx, &p, 0);
    wait_calls(1);
    assert_failed(&out[0], ZH_COND_CONNECTION_FAILED);
    assert_non_null(strstr(out[0].detail, "refused"));
}

static void unknown_name_is_remote_connection_failed(void **state)
{
    (void)state;
    struct zh_connect_params p = {.host = "nowhere.test", .port = 80};
    start(ctx, &p, 0);
    wait_calls(1);
    assert_failed(&out[0], ZH_COND_CONNECTION_FAILED);
    assert_non_null(strstr(out[0].detail, "NXDOMAIN"));
}

static void policy_denies_names_and_addresses(void **state)
{
    (void)state;
    int lfd = listen_on("127.0.0.1", 0, 4);
    uint16_t port = port_of(lfd);
    struct zh_policy *strict = make_policy(ZH_POLICY_DEFAULT_UNSET, NULL, "*.blocked.test");
    struct zh_connect_ctx *c = make_ctx(strict, NULL);
    /* an IP literal in the internal set: denied before anything is sent */
    struct zh_connect_params p = {.host = "127.0.0.1", .port = port};
    start(c, &p, 0);
    wait_calls(1);
    assert_failed(&out[0], ZH_COND_POLICY_VIOLATION);
    assert_non_null(strstr(out[0].detail, "loopback"));
    /* a name whose only address is internal: denied at the address check */
    p.host = "origin.test";
    start(c, &p, 1);
    wait_calls(2);
    assert_failed(&out[1], ZH_COND_POLICY_VIOLATION);
    /* a deny pattern on the name */
    p.host = "www.blocked.test";
    start(c, &p, 2);
    wait_calls(3);
    assert_failed(&out[2], ZH_COND_POLICY_VIOLATION);
    assert_non_null(strstr(out[2].detail, "*.blocked.test"));
    /* connect_host is checked too */
    p.host = "example.com";
    p.connect_host = "api.blocked.test";
    start(c, &p, 3);
    wait_calls(4);
    assert_failed(&out[3], ZH_COND_POLICY_VIOLATION);
    zh_connect_ctx_free(c);
    zh_policy_free(strict);
    /* nothing ever reached the listener */
    struct pollfd pf = {.fd = lfd, .events = POLLIN};
    assert_int_equal(0, poll(&pf, 1, 0));
    close(lfd);
}

static void ignore_policies_skips_every_check(void **state)
{
    (void)state;
    int lfd = listen_on("127.0.0.1", 0, 4);
    struct zh_policy *strict = make_policy(ZH_POLICY_DEFAULT_DENY, NULL, "*");
    struct zh_connect_ctx *c = make_ctx(strict, NULL);
    struct zh_connect_params p = {
        .host = "origin.test", .port = port_of(lfd), .ignore_policies = true};
    start(c, &p, 0);
    wait_calls(1);
    assert_ok(&out[0]);
    zh_connect_ctx_free(c);
    zh_policy_free(strict);
    close(lfd);
}

static void denied_addresses_are_skipped(void **state)
{
    (void)state;
    int lfd = listen_on("127.0.0.1", 0, 4);
    uint16_t port = port_of(lfd);
    /* 169.254.169.254 denied, 127.0.0.1 allowed: connects to the second */
    struct zh_connect_params p = {.host = "mixed.test", .port = port};
    start(ctx, &p, 0);
    wait_calls(1);
    assert_ok(&out[0]);
    char buf[INET6_ADDRSTRLEN];
    assert_string_equal("127.0.0.1", zh_sockaddr_str(&out[0].peer, buf, sizeof(buf)));
    /* every address denied: policy-violation */
    p.host = "denied.test";
    start(ctx, &p, 1);
    wait_calls(2);
    assert_failed(&out[1], ZH_COND_POLICY_VIOLATION);
    /* one denied, the other refused: Zurl says remote-connection-failed */
    p.host = "denied-refused.test";
    p.port = dead_port();
    start(ctx, &p, 2);
    wait_calls(3);
    assert_failed(&out[2], ZH_COND_CONNECTION_FAILED);
    close(lfd);
}

static void connect_timeout_on_a_full_backlog(void **state)
{
    (void)state;
    uint16_t port = full_listener("127.0.0.1", 0);
    struct zh_connect_params p = {.host = "127.0.0.1", .port = port, .timeout_ms = 300};
    uint64_t t0 = zh_time_ms();
    start(ctx, &p, 0);
    wait_calls(1);
    assert_failed(&out[0], ZH_COND_CONNECTION_TIMEOUT);
    uint64_t took = out[0].at - t0;
    assert_true(took >= 250);
    assert_true(took < 2000);
    full_close();
}

static void next_address_after_a_timeout(void **state)
{
    (void)state;
    /* two.test is 127.0.0.2 (hangs) then 127.0.0.1 (listens), on one port */
    int lfd = listen_on("127.0.0.1", 0, 4);
    uint16_t port = port_of(lfd);
    full_listener("127.0.0.2", port);
    struct zh_policy *p2 = make_policy(ZH_POLICY_DEFAULT_UNSET, "127.0.0.0/8", NULL);
    struct zh_connect_ctx *c = make_ctx(p2, NULL);
    struct zh_connect_params p = {.host = "two.test", .port = port, .timeout_ms = 300};
    uint64_t t0 = zh_time_ms();
    start(c, &p, 0);
    wait_calls(1);
    assert_ok(&out[0]);
    char buf[INET6_ADDRSTRLEN];
    assert_string_equal("127.0.0.1", zh_sockaddr_str(&out[0].peer, buf, sizeof(buf)));
    assert_true(out[0].at - t0 >= 250);
    zh_connect_ctx_free(c);
    zh_policy_free(p2);
    full_close();
    close(lfd);
}

static void connect_host_and_port_override_the_target(void **state)
{
    (void)state;
    int lfd = listen_on("127.0.0.1", 0, 4);
    struct zh_connect_params p = {.host = "api.example",
                                  .port = 443,
                                  .connect_host = "origin.test",
                                  .connect_port = port_of(lfd)};
    start(ctx, &p, 0);
    wait_calls(1);
    assert_ok(&out[0]);
    assert_int_equal(port_of(lfd), ntohs(out[0].peer.in.sin_port));
    close(lfd);
}

static void bad_parameters_fail_from_the_loop(void **state)
{
    (void)state;
    struct zh_connect_params p = {.host = "", .port = 80};
    start(ctx, &p, 0);
    p.host = "origin.test";
    p.port = 0;
    start(ctx, &p, 1);
    assert_false(out[0].called);
    wait_calls(2);
    assert_failed(&out[0], ZH_COND_CONNECTION_FAILED);
    assert_failed(&out[1], ZH_COND_CONNECTION_FAILED);
}

static void cancel_in_every_state(void **state)
{
    (void)state;
    uint16_t port = full_listener("127.0.0.1", 0);
    struct zh_connect_params p = {.host = "origin.test", .port = port, .timeout_ms = 5000};
    /* resolving */
    zh_connect_cancel(start(ctx, &p, 0));
    /* connecting (hangs on the full backlog) */
    p.host = "127.0.0.1";
    struct zh_connect *b = start(ctx, &p, 1);
    run_for(100);
    zh_connect_cancel(b);
    /* policy failure pending in the loop: cancel before it is delivered */
    struct zh_policy *strict = make_policy(ZH_POLICY_DEFAULT_UNSET, NULL, NULL);
    struct zh_connect_ctx *sc = make_ctx(strict, NULL);
    zh_connect_cancel(start(sc, &p, 3));
    run_for(200);
    assert_false(out[0].called);
    assert_false(out[1].called);
    assert_false(out[3].called);
    zh_connect_ctx_free(sc);
    zh_policy_free(strict);
    full_close();
}

static struct zh_connect_ctx *doomed;

static void free_ctx_cb(struct zh_connect *cn, struct zh_connect_result *res, void *data)
{
    (void)cn;
    (void)res;
    int *calls = data;
    (*calls)++;
    zh_connect_ctx_free(doomed); /* the other, hanging connection goes with it, silently */
    doomed = NULL;
    zh_loop_stop(loop);
}

static void context_freed_from_a_callback(void **state)
{
    (void)state;
    uint16_t port = full_listener("127.0.0.1", 0);
    doomed = make_ctx(policy, NULL);
    static int calls;
    calls = 0;
    struct zh_connect_params hang = {.host = "127.0.0.1", .port = port, .timeout_ms = 5000};
    struct zh_connect_params refused = {.host = "127.0.0.1", .port = dead_port()};
    zh_connect_start(doomed, &hang, free_ctx_cb, &calls);
    zh_connect_start(doomed, &refused, free_ctx_cb, &calls);
    zh_loop_run(loop);
    assert_null(doomed);
    run_for(100);
    assert_int_equal(1, calls);
    full_close();
}

/* ---- TLS ---- */

static void tls_handshake_with_sni_and_ca_file(void **state)
{
    (void)state;
    tls_start(TLS_NORMAL);
    static const unsigned char alpn[] = "\x02h2\x08http/1.1";
    struct zh_connect_params p = {.host = "origin.test",
                                  .port = tls.port,
                                  .tls = true,
                                  .alpn = alpn,
                                  .alpn_len = sizeof(alpn) - 1};
    start(ctx, &p, 0);
    wait_calls(1);
    assert_ok(&out[0]);
    assert_non_null(out[0].ssl);
    assert_int_equal(X509_V_OK, SSL_get_verify_result(out[0].ssl));
    const unsigned char *sel = NULL;
    unsigned sel_len = 0;
    SSL_get0_alpn_selected(out[0].ssl, &sel, &sel_len);
    assert_int_equal(8, sel_len);
    assert_memory_equal("http/1.1", sel, 8);
    /* read the server's greeting through the returned SSL (non-blocking fd) */
    char buf[8] = {0};
    int n = -1;
    for (int i = 0; i < 200 && n <= 0; i++) {
        n = SSL_read(out[0].ssl, buf, sizeof(buf));
        if (n <= 0) {
            assert_int_equal(SSL_ERROR_WANT_READ, SSL_get_error(out[0].ssl, n));
            usleep(10000);
        }
    }
    assert_int_equal(2, n);
    assert_memory_equal("hi", buf, 2);
    zh_stream_close(&out[0].st);
    out[0].ssl = NULL;
    out[0].fd = -1;
    tls_stop();
    assert_true(tls.sni_seen);
    assert_string_equal("origin.test", tls.sni);
}

static void tls_wrong_host_name_is_tls_error(void **state)
{
    (void)state;
    tls_start(TLS_NORMAL);
    struct zh_connect_params p = {.host = "wrong.test", .port = tls.port, .tls = true};
    start(ctx, &p, 0);
    wait_calls(1);
    assert_failed(&out[0], ZH_COND_TLS_ERROR);
    assert_non_null(strstr(out[0].detail, "mismatch"));
    /* ignore_tls_errors lets it through */
    p.ignore_tls_errors = true;
    start(ctx, &p, 1);
    wait_calls(2);
    assert_ok(&out[1]);
    assert_non_null(out[1].ssl);
    tls_stop();
}

static void tls_unknown_ca_is_tls_error(void **state)
{
    (void)state;
    tls_start(TLS_NORMAL);
    struct zh_connect_ctx *c = make_ctx(policy, NULL); /* system store only */
    struct zh_connect_params p = {.host = "origin.test", .port = tls.port, .tls = true};
    start(c, &p, 0);
    wait_calls(1);
    assert_failed(&out[0], ZH_COND_TLS_ERROR);
    assert_non_null(strstr(out[0].detail, "certificate"));
    zh_connect_ctx_free(c);
    tls_stop();
    assert_int_equal(0, tls.handshakes);
}

static void tls_trust_connect_host(void **state)
{
    (void)state;
    tls_start(TLS_NORMAL);
    /* uri host other.test (not in the certificate), connecting to origin.test */
    struct zh_connect_params p = {
        .host = "other.test", .port = tls.port, .connect_host = "origin.test", .tls = true};
    start(ctx, &p, 0);
    wait_calls(1);
    assert_failed(&out[0], ZH_COND_TLS_ERROR);
    p.trust_connect_host = true;
    start(ctx, &p, 1);
    wait_calls(2);
    assert_ok(&out[1]);
    tls_stop();
    /* SNI still carries the uri host */
    assert_string_equal("other.test", tls.sni);
}

static void tls_to_an_ip_address(void **state)
{
    (void)state;
    tls_start(TLS_NORMAL);
    struct zh_connect_params p = {.host = "127.0.0.1", .port = tls.port, .tls = true};
    start(ctx, &p, 0);
    wait_calls(1);
    assert_ok(&out[0]);
    tls_stop();
    assert_false(tls.sni_seen); /* no SNI for literal addresses */
}

static void tls_handshake_timeout(void **state)
{
    (void)state;
    tls_start(TLS_SILENT);
    struct zh_connect_params p = {
        .host = "origin.test", .port = tls.port, .tls = true, .timeout_ms = 300};
    uint64_t t0 = zh_time_ms();
    start(ctx, &p, 0);
    wait_calls(1);
    assert_failed(&out[0], ZH_COND_CONNECTION_TIMEOUT);
    assert_true(out[0].at - t0 >= 250);
    tls_stop();
}

static void tls_to_a_plain_text_server_is_tls_error(void **state)
{
    (void)state;
    tls_start(TLS_GARBAGE);
    struct zh_connect_params p = {.host = "origin.test", .port = tls.port, .tls = true};
    start(ctx, &p, 0);
    wait_calls(1);
    assert_failed(&out[0], ZH_COND_TLS_ERROR);
    tls_stop();
}

static void tls_cancel_during_handshake(void **state)
{
    (void)state;
    tls_start(TLS_SILENT);
    struct zh_connect_params p = {.host = "origin.test", .port = tls.port, .tls = true};
    struct zh_connect *cn = start(ctx, &p, 0);
    run_for(150);
    assert_false(out[0].called);
    zh_connect_cancel(cn);
    run_for(50);
    assert_false(out[0].called);
    tls_stop();
}

static void bad_ca_file_is_refused(void **state)
{
    (void)state;
    struct zh_connect_ctx_config cfg = {.tls_ca_file = "/nonexistent/ca.pem"};
    struct zh_buf err = {0};
    assert_null(zh_connect_ctx_new(loop, resolver, policy, &cfg, &err));
    assert_non_null(strstr(zh_buf_cstr(&err), "/nonexistent/ca.pem"));
    zh_buf_free(&err);
    /* a file that is not PEM */
    cfg.tls_ca_file = srv_key;
    assert_null(zh_connect_ctx_new(loop, resolver, policy, &cfg, &err));
    zh_buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(tcp_connects_to_a_local_listener, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_port_is_remote_connection_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_name_is_remote_connection_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(policy_denies_names_and_addresses, setup, teardown),
        cmocka_unit_test_setup_teardown(ignore_policies_skips_every_check, setup, teardown),
        cmocka_unit_test_setup_teardown(denied_addresses_are_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(connect_timeout_on_a_full_backlog, setup, teardown),
        cmocka_unit_test_setup_teardown(next_address_after_a_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(connect_host_and_port_override_the_target, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_parameters_fail_from_the_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_in_every_state, setup, teardown),
        cmocka_unit_test_setup_teardown(context_freed_from_a_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(tls_handshake_with_sni_and_ca_file, setup, teardown),
        cmocka_unit_test_setup_teardown(tls_wrong_host_name_is_tls_error, setup, teardown),
        cmocka_unit_test_setup_teardown(tls_unknown_ca_is_tls_error, setup, teardown),
        cmocka_unit_test_setup_teardown(tls_trust_connect_host, setup, teardown),
        cmocka_unit_test_setup_teardown(tls_to_an_ip_address, setup, teardown),
        cmocka_unit_test_setup_teardown(tls_handshake_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(tls_to_a_plain_text_server_is_tls_error, setup, teardown),
        cmocka_unit_test_setup_teardown(tls_cancel_during_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_ca_file_is_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
