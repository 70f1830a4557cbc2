/* The server engine fixture shared by test_server_conn.c and test_reqmode.c (include once, from
 * one test file): a real loop and a fake handler from harness.h, one struct zh_server on worker 0,
 * clients on the far end of socketpairs handed over as the listener would, and helpers to take the
 * engine's packets and answer them as a handler. */
#ifndef ZH_TESTS_UNIT_SERVER_FIXTURE_H
#define ZH_TESTS_UNIT_SERVER_FIXTURE_H

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

static inline void make_server(void)
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
static inline int connect_client(bool req_mode)
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

static inline bool have_out(void *arg)
{
    return th_bridge_count(&fx.tb, *(enum zh_zsock *)arg) > 0;
}

/* Wait for the engine's next message on sock, decode it into fx.pkt (valid until the next one). */
static inline struct zh_zhttp_packet *next_packet(enum zh_zsock sock)
{
    th_run_until(&fx.tl, have_out, &sock);
    zh_zmsg_free(fx.held);
    fx.held = th_bridge_take(&fx.tb, sock);
    th_decode(fx.held, &fx.pkt);
    return &fx.pkt;
}

/* The first packet of a new session: remember its id. */
static inline struct zh_zhttp_packet *first_packet(void)
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
static inline void handler_init(struct zh_zhttp_packet *p, enum zh_zhttp_type type)
{
    zh_zhttp_packet_init(p);
    p->type = type;
    p->from = zh_span_str(HANDLER);
    p->n_ids = 1;
    p->ids[0].id = zh_span_str(fx.id);
    p->ids[0].has_seq = true;
    p->ids[0].seq = fx.seq++;
}

static inline void handler_send(const struct zh_zhttp_packet *p)
{
    zh_server_on_zmsg(fx.s, th_reply_pub("zhttpd-test", p));
}

static inline void handler_respond(int code, const char *body, bool more)
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

static inline void handler_simple(enum zh_zhttp_type type, int64_t credits)
{
    struct zh_zhttp_packet p;
    handler_init(&p, type);
    if (credits >= 0) {
        p.has |= ZH_ZF_CREDITS;
        p.credits = credits;
    }
    handler_send(&p);
}

static inline bool rx_has(void *arg)
{
    if (th_read_avail(fx.cfd, &fx.rx) < 0)
        fx.rx_eof = true;
    return zh_buf_cstr(&fx.rx) && strstr(zh_buf_cstr(&fx.rx), arg) != NULL;
}

static inline bool rx_closed(void *arg)
{
    (void)arg;
    if (th_read_avail(fx.cfd, &fx.rx) < 0)
        fx.rx_eof = true;
    return fx.rx_eof;
}

/* Wait until the client has read text. */
static inline void client_wait(const char *text)
{
    char want[128];
    snprintf(want, sizeof(want), "%s", text);
    th_run_until(&fx.tl, rx_has, want);
}

static inline bool engine_idle(void *arg)
{
    (void)arg;
    return zh_server_conn_count(fx.s) == 0;
}

/* The client saw our FIN: it closes too, which ends the engine's lingering read, and the
 * connection is freed. */
static inline void client_close_and_wait_idle(void)
{
    close(fx.cfd);
    fx.cfd = -1;
    th_run_until(&fx.tl, engine_idle, NULL);
}

static inline bool have_out_reading(void *arg)
{
    if (th_read_avail(fx.cfd, &fx.rx) < 0)
        fx.rx_eof = true;
    return have_out(arg);
}

/* next_packet, with the client reading meanwhile. */
static inline struct zh_zhttp_packet *next_packet_reading(enum zh_zsock sock)
{
    th_run_until(&fx.tl, have_out_reading, &sock);
    zh_zmsg_free(fx.held);
    fx.held = th_bridge_take(&fx.tb, sock);
    th_decode(fx.held, &fx.pkt);
    return &fx.pkt;
}

#endif
