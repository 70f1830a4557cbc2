/* link: zh_client */
/* Unit tests for the client session table (client/client.c over request.c and outbound.c): a real
 * loop running the engine's curl multi, a tiny HTTP origin on 127.0.0.1 served from the same loop,
 * and a fake requester (harness.h: the engine's packets are taken from the unstarted bridge's
 * channels; requester packets go in through zh_client_on_zmsg). Covered: a stream request answered
 * in full, the response body held by the requester's credits and released by a credit packet, a
 * req-mode request answered in its envelope, refused requests (bad scheme, malformed packet,
 * unknown-session packets), a connection refused, the inactivity timeout, a requester's cancel
 * while the origin is silent, shutdown with cancel, redirects (followed, not followed,
 * too-many-redirects), max-size-exceeded, and policy-violation before any connection. The resolver
 * points at a closed local port: only IP literals are used, the machine's DNS is never asked. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/client.h"
#include "client/policy.h"
#include "harness.h"

#define REQUESTER        "req-1"
#define MAX_ORIGIN_CONNS 8

/* ---- the origin ---- */

struct oconn {
    int fd;
    struct zh_io io;
    struct zh_buf in;
    bool used;
};

static struct {
    int lfd;
    int port;
    struct zh_io lio;
    struct oconn conns[MAX_ORIGIN_CONNS];
    const char *response; /* NULL: accept and stay silent */
    const char *redirect; /* the response to requests for /redir (NULL: `response`) */
    unsigned requests;
} origin;

static struct {
    struct th_loop tl;
    struct th_bridge tb;
    struct zh_client_config cfg;
    struct zh_client *c;
    struct zh_zhttp_packet pkt;
    struct zh_zmsg *held;
    int64_t seq;
    char uri[128];
} fx;

static void oconn_cb(struct zh_io *io, uint32_t revents, void *data)
{
    (void)io;
    (void)revents;
    struct oconn *oc = data;
    ssize_t r = th_read_avail(oc->fd, &oc->in);
    if (oc->in.len && strstr(zh_buf_cstr(&oc->in), "\r\n\r\n") && origin.response) {
        origin.requests++;
        bool redir = origin.redirect && strncmp(zh_buf_cstr(&oc->in), "GET /redir ", 11) == 0;
        th_write_str(oc->fd, redir ? origin.redirect : origin.response);
        r = -1;
    } else if (oc->in.len && strstr(zh_buf_cstr(&oc->in), "\r\n\r\n")) {
        origin.requests++;
        zh_buf_reset(&oc->in);
    }
    if (r < 0) {
        zh_io_stop(fx.tl.loop, &oc->io);
        close(oc->fd);
        zh_buf_free(&oc->in);
        oc->used = false;
    }
}

static void olisten_cb(struct zh_io *io, uint32_t revents, void *data)
{
    (void)io;
    (void)revents;
    (void)data;
    int fd;
    while ((fd = accept4(origin.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        struct oconn *oc = NULL;
        for (int i = 0; i < MAX_ORIGIN_CONNS && !oc; i++)
            if (!origin.conns[i].used)
                oc = &origin.conns[i];
        if (!oc) {
            close(fd);
            fail_msg("origin: more than %d connections", MAX_ORIGIN_CONNS);
            return;
        }
        memset(oc, 0, sizeof(*oc));
        oc->used = true;
        oc->fd = fd;
        zh_io_init(&oc->io, fd, oconn_cb, oc);
        zh_io_set(fx.tl.loop, &oc->io, ZH_EV_READ);
    }
}

static void origin_start(void)
{
    memset(&origin, 0, sizeof(origin));
    origin.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    assert_int_equal(bind(origin.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(origin.lfd, 16), 0);
    assert_int_equal(getsockname(origin.lfd, (struct sockaddr *)&a, &al), 0);
    origin.port = ntohs(a.sin_port);
    zh_io_init(&origin.lio, origin.lfd, olisten_cb, NULL);
    zh_io_set(fx.tl.loop, &origin.lio, ZH_EV_READ);
}

static void origin_stop(void)
{
    for (int i = 0; i < MAX_ORIGIN_CONNS; i++) {
        struct oconn *oc = &origin.conns[i];
        if (oc->used) {
            zh_io_stop(fx.tl.loop, &oc->io);
            close(oc->fd);
            zh_buf_free(&oc->in);
        }
    }
    zh_io_stop(fx.tl.loop, &origin.lio);
    close(origin.lfd);
}

/* ---- fixture ---- */

static const char *dns_servers[1] = {"127.0.0.1:9"}; /* closed: names never resolve */

static int setup(void **state)
{
    (void)state;
    memset(&fx, 0, sizeof(fx));
    th_loop_init(&fx.tl, 0);
    th_bridge_init(&fx.tb, fx.tl.loop, false);
    origin_start();
    fx.cfg.instance_id = "zhttpd-test";
    fx.cfg.workers = 1;
    fx.cfg.max_response_size = 1 << 20;
    fx.cfg.buffer_size = 200000;
    fx.cfg.http.connect_timeout_ms = 3000;
    fx.cfg.dns.servers = dns_servers;
    fx.cfg.dns.server_count = 1;
    fx.cfg.dns.timeout_ms = 200;
    fx.cfg.dns.tries = 1;
    snprintf(fx.uri, sizeof(fx.uri), "http://127.0.0.1:%d/x", origin.port);
    return 0;
}

static void make_client(void)
{
    fx.c = zh_client_new(fx.tl.loop, fx.tb.port, 0, &fx.cfg);
    assert_non_null(fx.c);
}

static int teardown(void **state)
{
    (void)state;
    zh_zmsg_free(fx.held);
    if (fx.c) {
        zh_client_shutdown(fx.c, 1);
        th_run_for(&fx.tl, 5);
        zh_client_free(fx.c);
    }
    origin_stop();
    th_bridge_fini(&fx.tb);
    th_loop_fini(&fx.tl);
    return 0;
}

/* ---- the requester ---- */

static void req_init(struct zh_zhttp_packet *p, const char *id)
{
    zh_zhttp_packet_init(p);
    p->from = zh_span_str(REQUESTER);
    p->n_ids = 1;
    p->ids[0].id = zh_span_str(id);
    p->ids[0].has_seq = true;
    p->ids[0].seq = fx.seq++;
}

static void to_engine(enum zh_zsock sock, const struct zh_zhttp_packet *p, const char *env)
{
    struct zh_buf enc = {0};
    zh_zhttp_encode(p, &enc);
    struct zh_zmsg *m = zh_zmsg_new(sock, enc.len + 64);
    if (env) {
        zh_zmsg_add(&m, env, strlen(env));
        zh_zmsg_add(&m, NULL, 0);
    }
    zh_zmsg_add(&m, enc.data, enc.len);
    zh_buf_free(&enc);
    zh_client_on_zmsg(fx.c, m);
}

static void stream_request(const char *id, const char *uri, int64_t credits)
{
    struct zh_zhttp_packet p;
    fx.seq = 0;
    req_init(&p, id);
    p.method = zh_span_str("GET");
    p.uri = zh_span_str(uri);
    p.has |= ZH_ZF_STREAM | ZH_ZF_CREDITS;
    p.stream = true;
    p.credits = credits;
    to_engine(ZH_ZS_C_IN, &p, NULL);
}

static bool have_out(void *arg)
{
    return th_bridge_count(&fx.tb, *(enum zh_zsock *)arg) > 0;
}

/* The engine's next packet on C_OUT ("<to> T…"). */
static struct zh_zhttp_packet *next_out(void)
{
    enum zh_zsock sock = ZH_ZS_C_OUT;
    th_run_until(&fx.tl, have_out, &sock);
    zh_zmsg_free(fx.held);
    fx.held = th_bridge_take(&fx.tb, sock);
    struct zh_span f = zh_zmsg_frame(fx.held, fx.held->nframes - 1), addr, payload;
    assert_int_equal(zh_zhttp_split_pub(f.p, f.n, &addr, &payload), 0);
    assert_int_equal(addr.n, strlen(REQUESTER));
    assert_memory_equal(addr.p, REQUESTER, addr.n);
    struct zh_zhttp_error err = {0};
    if (zh_zhttp_decode(payload.p, payload.n, &fx.pkt, &err) < 0)
        fail_msg("undecodable: %s", err.reason);
    return &fx.pkt;
}

/* The next packet that is not a keep-alive. */
static struct zh_zhttp_packet *next_real(void)
{
    struct zh_zhttp_packet *p;
    do
        p = next_out();
    while (p->type == ZH_ZHTTP_KEEP_ALIVE);
    return p;
}

static bool engine_idle(void *arg)
{
    (void)arg;
    return zh_client_active(fx.c) == 0;
}

/* ---- tests ---- */

static void stream_request_answered(void **state)
{
    (void)state;
    origin.response = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-O: 1\r\nConnection: close\r\n\r\n"
                      "hello";
    make_client();
    stream_request("s1", fx.uri, 100000);
    struct zh_zhttp_packet *p = next_real();
    assert_int_equal(p->type, ZH_ZHTTP_DATA);
    assert_int_equal(p->code, 200);
    struct zh_buf body = {0};
    zh_buf_append(&body, p->body.p, p->body.n);
    while ((p->has & ZH_ZF_MORE) && p->more) {
        p = next_real();
        assert_int_equal(p->type, ZH_ZHTTP_DATA);
        zh_buf_append(&body, p->body.p, p->body.n);
    }
    assert_string_equal(zh_buf_cstr(&body), "hello");
    zh_buf_free(&body);
    th_run_until(&fx.tl, engine_idle, NULL);
    assert_int_equal(origin.requests, 1);
}

static void response_body_held_by_credits(void **state)
{
    (void)state;
    static char resp[20000];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\nConnection: close\r\n\r\n");
    memset(resp + n, 'b', 10000);
    resp[n + 10000] = 0;
    origin.response = resp;
    make_client();
    stream_request("s2", fx.uri, 1000);
    size_t got = 0;
    struct zh_zhttp_packet *p = next_real();
    assert_int_equal(p->code, 200);
    got += p->body.n;
    while (got < 1000 && p->more) {
        p = next_real();
        got += p->body.n;
    }
    /* The requester's 1000 credits are spent: nothing more comes. */
    assert_true(got <= 1000);
    th_run_for(&fx.tl, 30);
    while (th_bridge_count(&fx.tb, ZH_ZS_C_OUT)) {
        p = next_out();
        assert_int_equal(p->type, ZH_ZHTTP_KEEP_ALIVE);
    }
    struct zh_zhttp_packet c;
    req_init(&c, "s2");
    c.type = ZH_ZHTTP_CREDIT;
    c.has |= ZH_ZF_CREDITS;
    c.credits = 100000;
    to_engine(ZH_ZS_C_IN_STREAM, &c, NULL);
    while (p->more) {
        p = next_real();
        got += p->body.n;
    }
    assert_int_equal(got, 10000);
    th_run_until(&fx.tl, engine_idle, NULL);
}

static void req_mode_answer_in_its_envelope(void **state)
{
    (void)state;
    origin.response = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    make_client();
    struct zh_zhttp_packet p;
    zh_zhttp_packet_init(&p);
    p.from = zh_span_str(REQUESTER);
    p.n_ids = 1;
    p.ids[0].id = zh_span_str("r1");
    p.method = zh_span_str("GET");
    p.uri = zh_span_str(fx.uri);
    to_engine(ZH_ZS_C_REQ, &p, "envelope-1");
    enum zh_zsock sock = ZH_ZS_C_REQ;
    th_run_until(&fx.tl, have_out, &sock);
    struct zh_zmsg *m = th_bridge_take(&fx.tb, ZH_ZS_C_REQ);
    assert_int_equal(m->nframes, 3);
    struct zh_span env = zh_zmsg_frame(m, 0);
    assert_int_equal(env.n, 10);
    assert_memory_equal(env.p, "envelope-1", 10);
    struct zh_zhttp_packet a;
    th_decode(m, &a);
    assert_int_equal(a.code, 201);
    assert_true(th_span_is(a.body, "ok"));
    assert_true(th_span_is(a.ids[0].id, "r1"));
    zh_zmsg_free(m);
}

static void refused_requests(void **state)
{
    (void)state;
    make_client();
    /* An unsupported scheme: an error packet, no request. */
    stream_request("bad1", "gopher://127.0.0.1/x", 1000);
    struct zh_zhttp_packet *p = next_real();
    assert_int_equal(p->type, ZH_ZHTTP_ERROR);
    assert_true(th_span_is(p->condition, "bad-request"));
    /* Malformed and unknown-session packets are dropped. */
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_C_IN, 16);
    zh_zmsg_add(&m, "Tjunk", 5);
    zh_client_on_zmsg(fx.c, m);
    struct zh_zhttp_packet c;
    req_init(&c, "nobody");
    c.type = ZH_ZHTTP_CREDIT;
    c.has |= ZH_ZF_CREDITS;
    c.credits = 10;
    to_engine(ZH_ZS_C_IN_STREAM, &c, NULL);
    th_run_for(&fx.tl, 20);
    assert_int_equal(zh_client_active(fx.c), 0);
    assert_int_equal(origin.requests, 0);
}

static void connection_refused(void **state)
{
    (void)state;
    make_client();
    /* A port nothing listens on (the origin's, closed first). */
    char uri[128];
    snprintf(uri, sizeof(uri), "http://127.0.0.1:%d/x", origin.port);
    zh_io_stop(fx.tl.loop, &origin.lio);
    close(origin.lfd);
    origin.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); /* closed again by origin_stop */
    zh_io_init(&origin.lio, origin.lfd, olisten_cb, NULL);
    stream_request("refused", uri, 1000);
    struct zh_zhttp_packet *p = next_real();
    assert_int_equal(p->type, ZH_ZHTTP_ERROR);
    assert_true(th_span_is(p->condition, "remote-connection-failed"));
    th_run_until(&fx.tl, engine_idle, NULL);
}

static bool origin_got_request(void *arg)
{
    (void)arg;
    return origin.requests > 0;
}

static void inactivity_timeout(void **state)
{
    (void)state;
    origin.response = NULL; /* silent */
    fx.cfg.timeout_ms = 200;
    make_client();
    stream_request("slow", fx.uri, 1000);
    struct zh_zhttp_packet *p = next_real();
    assert_int_equal(p->type, ZH_ZHTTP_ERROR);
    assert_true(th_span_is(p->condition, "session-timeout"));
    th_run_until(&fx.tl, engine_idle, NULL);
}

static void requester_cancel_and_shutdown(void **state)
{
    (void)state;
    origin.response = NULL;
    make_client();
    stream_request("c1", fx.uri, 1000);
    th_run_until(&fx.tl, origin_got_request, NULL);
    assert_int_equal(zh_client_active(fx.c), 1);
    struct zh_zhttp_packet c;
    req_init(&c, "c1");
    c.type = ZH_ZHTTP_CANCEL;
    to_engine(ZH_ZS_C_IN_STREAM, &c, NULL);
    th_run_until(&fx.tl, engine_idle, NULL);

    /* Shutdown with cancel ends a request in flight with a packet to its requester. */
    origin.requests = 0;
    stream_request("c2", fx.uri, 1000);
    th_run_until(&fx.tl, origin_got_request, NULL);
    zh_client_shutdown(fx.c, 1);
    struct zh_zhttp_packet *p = next_real();
    assert_true(p->type == ZH_ZHTTP_ERROR || p->type == ZH_ZHTTP_CANCEL);
    th_run_until(&fx.tl, engine_idle, NULL);
}

/* A req-mode request for uri; the answer's packet (in fx.pkt, fx.held). */
static struct zh_zhttp_packet *req_mode(const char *uri, bool follow, int64_t max_size)
{
    struct zh_zhttp_packet p;
    zh_zhttp_packet_init(&p);
    p.from = zh_span_str(REQUESTER);
    p.n_ids = 1;
    p.ids[0].id = zh_span_str("rq");
    p.method = zh_span_str("GET");
    p.uri = zh_span_str(uri);
    if (follow) {
        p.has |= ZH_ZF_FOLLOW_REDIRECTS;
        p.follow_redirects = true;
    }
    if (max_size >= 0) {
        p.has |= ZH_ZF_MAX_SIZE;
        p.max_size = max_size;
    }
    to_engine(ZH_ZS_C_REQ, &p, "env");
    enum zh_zsock sock = ZH_ZS_C_REQ;
    th_run_until(&fx.tl, have_out, &sock);
    zh_zmsg_free(fx.held);
    fx.held = th_bridge_take(&fx.tb, ZH_ZS_C_REQ);
    th_decode(fx.held, &fx.pkt);
    return &fx.pkt;
}

static void redirects_followed_and_bounded(void **state)
{
    (void)state;
    static char redirect[256];
    origin.response = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\ntarget";
    snprintf(redirect, sizeof(redirect),
             "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d/final\r\nContent-Length: 0\r\n"
             "Connection: close\r\n\r\n",
             origin.port);
    origin.redirect = redirect;
    make_client();
    char uri[128];
    snprintf(uri, sizeof(uri), "http://127.0.0.1:%d/redir", origin.port);
    struct zh_zhttp_packet *p = req_mode(uri, true, -1);
    assert_int_equal(p->code, 200);
    assert_true(th_span_is(p->body, "target"));
    assert_int_equal(origin.requests, 2);
    /* Without follow-redirects the 302 itself is the answer. */
    p = req_mode(uri, false, -1);
    assert_int_equal(p->code, 302);
    /* A redirect to itself ends with too-many-redirects. */
    snprintf(redirect, sizeof(redirect),
             "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d/redir\r\nContent-Length: 0\r\n"
             "Connection: close\r\n\r\n",
             origin.port);
    p = req_mode(uri, true, -1);
    assert_int_equal(p->type, ZH_ZHTTP_ERROR);
    assert_true(th_span_is(p->condition, "too-many-redirects"));
}

static void max_size_exceeded(void **state)
{
    (void)state;
    origin.response = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    make_client();
    struct zh_zhttp_packet *p = req_mode(fx.uri, false, 3);
    assert_int_equal(p->type, ZH_ZHTTP_ERROR);
    assert_true(th_span_is(p->condition, "max-size-exceeded"));
    p = req_mode(fx.uri, false, 5);
    assert_int_equal(p->code, 200);
}

static void policy_violation(void **state)
{
    (void)state;
    origin.response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    const char *deny[1] = {"127.0.0.1"};
    struct zh_policy_config pc = {
        .defpolicy = ZH_POLICY_DEFAULT_ALLOW, .deny = deny, .deny_count = 1};
    struct zh_buf err = {0};
    struct zh_policy *pol = zh_policy_new(&pc, &err);
    if (!pol)
        fail_msg("zh_policy_new: %s", zh_buf_cstr(&err));
    zh_buf_free(&err);
    fx.cfg.http.policy = pol;
    make_client();
    struct zh_zhttp_packet *p = req_mode(fx.uri, false, -1);
    assert_int_equal(p->type, ZH_ZHTTP_ERROR);
    assert_true(th_span_is(p->condition, "policy-violation"));
    assert_int_equal(origin.requests, 0);
    /* The engine goes before the policy it borrows. */
    zh_client_shutdown(fx.c, 1);
    th_run_for(&fx.tl, 5);
    zh_client_free(fx.c);
    fx.c = NULL;
    zh_policy_free(pol);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(stream_request_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(response_body_held_by_credits, setup, teardown),
        cmocka_unit_test_setup_teardown(req_mode_answer_in_its_envelope, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(inactivity_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(requester_cancel_and_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(redirects_followed_and_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(max_size_exceeded, setup, teardown),
        cmocka_unit_test_setup_teardown(policy_violation, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
