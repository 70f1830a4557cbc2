/* link: zh_rt */
/* Unit tests for shared/rt/zbridge.c with real ZeroMQ sockets over ipc:// in a mkdtemp directory.
 * The bridge binds; the test connects peer sockets, plays the workers itself (popping inboxes with
 * poll() on zh_chan_fd, sending through zh_zport) and checks routing to workers, sends to peers,
 * parking while a peer is missing or slow, the ipc lock and path rules, and that stop/free with
 * messages still queued leaks nothing (run under ASan/LSan). Every wait is bounded (<= 5 s), so a
 * bug fails a test instead of hanging it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "shared/proto/buf.h"
#include "shared/proto/mem.h"
#include "shared/rt/chan.h"
#include "shared/rt/log.h"
#include "shared/rt/loop.h"
#include "shared/rt/zbridge.h"
#include "shared/rt/zmsg.h"
#include "shared/rt/zroute.h"

#define WAIT_MS     5000 /* longest any single wait may take */
#define QUIET_MS    150  /* how long "nothing arrives" is watched */
#define MAX_WORKERS 4
#define MAX_PEERS   8
#define INSTANCE    "zhttpd"

static char tmpdir[64]; /* mkdtemp directory for every ipc path */

static struct {
    void *zctx;
    struct zh_loop *loop;
    struct zh_zbridge *b;
    unsigned workers;
    struct zh_zport *ports[MAX_WORKERS];
    void *peers[MAX_PEERS];
    int npeers;
    char ep[ZH_ZS_COUNT][160];
    const char *specs[ZH_ZS_COUNT][1];
    struct zh_zbridge_config cfg;
    struct zh_buf err;
} fx;

/* ---- fixture ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    (void)state;
    memset(&fx, 0, sizeof(fx));
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/zhb-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    fx.zctx = zmq_ctx_new();
    assert_non_null(fx.zctx);
    fx.loop = zh_loop_new();
    assert_non_null(fx.loop);
    fx.cfg.instance_id = INSTANCE;
    fx.cfg.ipc_file_mode = -1;
    alarm(60); /* last resort: the per-wait bounds should fail a test long before this */
    return 0;
}

static void free_ports(void)
{
    for (unsigned w = 0; w < MAX_WORKERS; w++) {
        zh_zport_free(fx.ports[w]);
        fx.ports[w] = NULL;
    }
}

static int teardown(void **state)
{
    (void)state;
    /* Ports watch the bridge's channels: free them first. */
    free_ports();
    zh_zbridge_free(fx.b);
    fx.b = NULL;
    for (int i = 0; i < fx.npeers; i++) {
        zmq_close(fx.peers[i]);
    }
    zmq_ctx_term(fx.zctx);
    unsigned left = zh_loop_io_count(fx.loop);
    zh_loop_free(fx.loop);
    zh_buf_free(&fx.err);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    alarm(0);
    assert_int_equal(left, 0);
    return 0;
}

/* Configure socket s on ipc://<dir>/<name>. */
static void use_sock(enum zh_zsock s, const char *name)
{
    snprintf(fx.ep[s], sizeof(fx.ep[s]), "ipc://%s/%s", tmpdir, name);
    fx.specs[s][0] = fx.ep[s];
    fx.cfg.socks[s].specs = fx.specs[s];
    fx.cfg.socks[s].n_specs = 1;
}

/* Create the bridge and one port per worker (not started). */
static void open_bridge(unsigned workers)
{
    fx.workers = workers;
    fx.cfg.workers = workers;
    zh_buf_reset(&fx.err);
    fx.b = zh_zbridge_new(&fx.cfg, &fx.err);
    if (!fx.b) {
        fail_msg("zh_zbridge_new: %s", zh_buf_cstr(&fx.err));
    }
    for (unsigned w = 0; w < workers; w++) {
        fx.ports[w] = zh_zport_new(fx.b, w, fx.loop);
    }
}

static void start_bridge(unsigned workers)
{
    open_bridge(workers);
    assert_int_equal(zh_zbridge_start(fx.b), 0);
}

static void *peer(int type, enum zh_zsock s, const char *routing_id)
{
    assert_true(fx.npeers < MAX_PEERS);
    void *sock = zmq_socket(fx.zctx, type);
    assert_non_null(sock);
    int zero = 0, wait = WAIT_MS;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(sock, ZMQ_SNDTIMEO, &wait, sizeof(wait));
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &wait, sizeof(wait));
    if (routing_id) {
        zmq_setsockopt(sock, ZMQ_ROUTING_ID, routing_id, strlen(routing_id));
    }
    assert_int_equal(zmq_connect(sock, fx.ep[s]), 0);
    fx.peers[fx.npeers++] = sock;
    return sock;
}

static uint64_t now_ms(void)
{
    return zh_time_ms();
}

/* ---- packets (tnetstrings written out by hand) ---- */

/* Wrap a dict body: "T<len>:<inner>}". */
static void wrap_dict(char *out, size_t cap, const char *inner)
{
    int n = snprintf(out, cap, "T%zu:%s}", strlen(inner), inner);
    assert_true(n > 0 && (size_t)n < cap);
}

/* A client-role packet {from, id}. */
static void client_pkt(char *out, size_t cap, const char *from, const char *id)
{
    char inner[256];
    snprintf(inner, sizeof(inner), "4:from,%zu:%s,2:id,%zu:%s,", strlen(from), from, strlen(id),
             id);
    wrap_dict(out, cap, inner);
}

/* A packet {id, body} (server-role ids or any id). */
static void id_body_pkt(char *out, size_t cap, const char *id, const char *body)
{
    char inner[256];
    snprintf(inner, sizeof(inner), "2:id,%zu:%s,4:body,%zu:%s,", strlen(id), id, strlen(body),
             body);
    wrap_dict(out, cap, inner);
}

/* ---- the test as worker: inboxes and ports ---- */

/* Pop one message from worker w's inbox, waiting up to ms. */
static struct zh_zmsg *inbox_pop(unsigned w, int ms)
{
    struct zh_chan *ch = zh_zbridge_inbox(fx.b, w);
    uint64_t deadline = now_ms() + (uint64_t)ms;
    for (;;) {
        zh_chan_drain_signal(ch);
        struct zh_zmsg *m = zh_chan_pop(ch);
        if (m) {
            return m;
        }
        uint64_t t = now_ms();
        if (t >= deadline) {
            return NULL;
        }
        struct pollfd p = {.fd = zh_chan_fd(ch), .events = POLLIN};
        poll(&p, 1, (int)(deadline - t));
    }
}

/* Drop whatever else arrives in w's inbox within ms (duplicates of a retried send). */
static int inbox_drain(unsigned w, int ms)
{
    int n = 0;
    struct zh_zmsg *m;
    while ((m = inbox_pop(w, ms))) {
        zh_zmsg_free(m);
        n++;
    }
    return n;
}

static void assert_inbox_quiet(unsigned w)
{
    struct zh_zmsg *m = inbox_pop(w, QUIET_MS);
    if (m) {
        zh_zmsg_free(m);
        fail_msg("worker %u got a message it should not have", w);
    }
}

static void assert_frame(const struct zh_zmsg *m, uint32_t i, const char *want)
{
    assert_true(i < m->nframes);
    struct zh_span f = zh_zmsg_frame(m, i);
    if (f.n != strlen(want) || (f.n && memcmp(f.p, want, f.n) != 0)) {
        fail_msg("frame %u is '%.*s', want '%s'", i, (int)f.n, (const char *)f.p, want);
    }
}

/* Send a message of nframes C-string frames from worker w on socket s. */
static void port_send(unsigned w, enum zh_zsock s, int nframes, ...)
{
    struct zh_zmsg *m = zh_zmsg_new(s, 64);
    va_list ap;
    va_start(ap, nframes);
    for (int i = 0; i < nframes; i++) {
        const char *f = va_arg(ap, const char *);
        assert_int_equal(zh_zmsg_add(&m, f, strlen(f)), 0);
    }
    va_end(ap);
    zh_zport_send(fx.ports[w], m);
}

static void stop_loop_cb(struct zh_timer *t, void *data)
{
    (void)t;
    (void)data;
    zh_loop_stop(fx.loop);
}

/* Run the worker loop (which the ports use) for about ms. */
static void run_worker_loop(uint64_t ms)
{
    struct zh_timer t;
    zh_timer_init(&t, stop_loop_cb, NULL);
    zh_loop_update_time(fx.loop);
    zh_loop_timer_start(fx.loop, &t, ms);
    assert_int_equal(zh_loop_run(fx.loop), 0);
    zh_loop_timer_stop(fx.loop, &t);
}

/* ---- the peers ---- */

/* Receive one whole message from a peer socket within ms, as a zmsg (NULL on timeout). */
static struct zh_zmsg *peer_recv(void *sock, int ms)
{
    zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
    if (zmq_poll(&it, 1, ms) <= 0 || !(it.revents & ZMQ_POLLIN)) {
        return NULL;
    }
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_COUNT, 64);
    int more = 1;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        assert_true(zmq_msg_recv(&part, sock, 0) >= 0);
        assert_int_equal(zh_zmsg_add(&m, zmq_msg_data(&part), zmq_msg_size(&part)), 0);
        more = zmq_msg_more(&part);
        zmq_msg_close(&part);
    }
    return m;
}

static void assert_peer_quiet(void *sock)
{
    struct zh_zmsg *m = peer_recv(sock, QUIET_MS);
    if (m) {
        zh_zmsg_free(m);
        fail_msg("peer got a message it should not have");
    }
}

static void peer_send(void *sock, int nframes, ...)
{
    va_list ap;
    va_start(ap, nframes);
    for (int i = 0; i < nframes; i++) {
        const char *f = va_arg(ap, const char *);
        int flags = i + 1 < nframes ? ZMQ_SNDMORE : 0;
        assert_int_equal(zmq_send(sock, f, strlen(f), flags), (int)strlen(f));
    }
    va_end(ap);
}

/* PUB one frame again and again until it shows up in worker w's inbox (the subscription forms
 * asynchronously); duplicates that arrive after the first are dropped. */
static struct zh_zmsg *publish_until_delivered(void *pub, const char *frame, unsigned w)
{
    uint64_t deadline = now_ms() + WAIT_MS;
    while (now_ms() < deadline) {
        peer_send(pub, 1, frame);
        struct zh_zmsg *m = inbox_pop(w, 50);
        if (m) {
            inbox_drain(w, 100);
            return m;
        }
    }
    fail_msg("'%s' never reached worker %u", frame, w);
    return NULL;
}

/* Send on XPUB from worker w until the SUB peer sees it (its subscription forms asynchronously). */
static void xpub_until_received(unsigned w, void *sub, const char *frame)
{
    uint64_t deadline = now_ms() + WAIT_MS;
    while (now_ms() < deadline) {
        port_send(w, ZH_ZS_C_OUT, 1, frame);
        struct zh_zmsg *m = peer_recv(sub, 50);
        if (m) {
            assert_frame(m, 0, frame);
            zh_zmsg_free(m);
            while ((m = peer_recv(sub, 100))) {
                zh_zmsg_free(m);
            }
            return;
        }
    }
    fail_msg("'%s' never reached the SUB peer", frame);
}

/* An id the client-role hash sends to worker `want` (of n) for requester from. */
static void id_for_worker(char *out, size_t cap, const char *from, unsigned want, unsigned n)
{
    for (int i = 0; i < 100000; i++) {
        snprintf(out, cap, "id-%d", i);
        if (zh_zroute_hash((const uint8_t *)from, strlen(from), (const uint8_t *)out, strlen(out),
                           n) == want) {
            return;
        }
    }
    fail_msg("no id hashes to worker %u", want);
}

/* ---- (a) routing to workers ---- */

static void sub_packet_reaches_the_worker_named_by_its_id_prefix(void **state)
{
    (void)state;
    use_sock(ZH_ZS_S_IN, "s-in");
    start_bridge(2);
    void *pub = peer(ZMQ_PUB, ZH_ZS_S_IN, NULL);
    char pkt[128], frame[160];
    id_body_pkt(pkt, sizeof(pkt), "1-0-abc", "hello");
    snprintf(frame, sizeof(frame), INSTANCE " %s", pkt);
    struct zh_zmsg *m = publish_until_delivered(pub, frame, 1);
    assert_int_equal(m->nframes, 1);
    assert_frame(m, 0, frame);
    assert_int_equal(m->sock, ZH_ZS_S_IN);
    zh_zmsg_free(m);
    assert_inbox_quiet(0);

    /* Same prefix, another worker. */
    id_body_pkt(pkt, sizeof(pkt), "0-7-q", "x");
    snprintf(frame, sizeof(frame), INSTANCE " %s", pkt);
    peer_send(pub, 1, frame);
    m = inbox_pop(0, WAIT_MS);
    assert_non_null(m);
    assert_frame(m, 0, frame);
    zh_zmsg_free(m);
    assert_inbox_quiet(1);
}

static void sub_frame_for_another_instance_is_not_delivered(void **state)
{
    (void)state;
    use_sock(ZH_ZS_S_IN, "s-in");
    start_bridge(2);
    void *pub = peer(ZMQ_PUB, ZH_ZS_S_IN, NULL);
    char pkt[128], frame[160];
    id_body_pkt(pkt, sizeof(pkt), "0-0-a", "sync");
    snprintf(frame, sizeof(frame), INSTANCE " %s", pkt);
    zh_zmsg_free(publish_until_delivered(pub, frame, 0));
    /* "zhttpd2 " does not match the topic "zhttpd "; "zhttpdT..." neither. */
    snprintf(frame, sizeof(frame), INSTANCE "2 %s", pkt);
    peer_send(pub, 1, frame);
    snprintf(frame, sizeof(frame), INSTANCE "%s", pkt);
    peer_send(pub, 1, frame);
    assert_inbox_quiet(0);
    assert_inbox_quiet(1);
}

static void pull_packet_goes_to_the_hash_of_from_and_id(void **state)
{
    (void)state;
    use_sock(ZH_ZS_C_IN, "c-in");
    start_bridge(4);
    void *push = peer(ZMQ_PUSH, ZH_ZS_C_IN, NULL);
    for (unsigned want = 0; want < 4; want++) {
        char id[32], pkt[128];
        id_for_worker(id, sizeof(id), "req1", (want + 3) % 4, 4);
        client_pkt(pkt, sizeof(pkt), "req1", id);
        peer_send(push, 1, pkt);
        struct zh_zmsg *m = inbox_pop((want + 3) % 4, WAIT_MS);
        assert_non_null(m);
        assert_int_equal(m->sock, ZH_ZS_C_IN);
        assert_frame(m, 0, pkt);
        zh_zmsg_free(m);
    }
    for (unsigned w = 0; w < 4; w++) {
        assert_inbox_quiet(w);
    }
}

static void same_session_always_lands_on_the_same_worker(void **state)
{
    (void)state;
    use_sock(ZH_ZS_C_IN, "c-in");
    start_bridge(4);
    void *push = peer(ZMQ_PUSH, ZH_ZS_C_IN, NULL);
    char pkt[128];
    client_pkt(pkt, sizeof(pkt), "pushpin_1", "sess-42");
    unsigned w = zh_zroute_hash((const uint8_t *)"pushpin_1", 9, (const uint8_t *)"sess-42", 7, 4);
    for (int i = 0; i < 20; i++) {
        peer_send(push, 1, pkt);
    }
    for (int i = 0; i < 20; i++) {
        struct zh_zmsg *m = inbox_pop(w, WAIT_MS);
        assert_non_null(m);
        zh_zmsg_free(m);
    }
    for (unsigned k = 0; k < 4; k++) {
        assert_inbox_quiet(k);
    }
}

static void router_packet_keeps_its_envelope_and_goes_to_the_hash_worker(void **state)
{
    (void)state;
    /* A requester's ROUTER reaches our client-in-stream ROUTER by its identity, the instance id. */
    use_sock(ZH_ZS_C_IN_STREAM, "c-in-stream");
    start_bridge(4);
    void *r = peer(ZMQ_ROUTER, ZH_ZS_C_IN_STREAM, "req1");
    int one = 1;
    zmq_setsockopt(r, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
    char id[32], pkt[128];
    id_for_worker(id, sizeof(id), "req1", 2, 4);
    client_pkt(pkt, sizeof(pkt), "req1", id);
    /* Until the connection is up our identity is unknown to the peer: EHOSTUNREACH, retry. */
    uint64_t deadline = now_ms() + WAIT_MS;
    bool sent = false;
    while (!sent && now_ms() < deadline) {
        if (zmq_send(r, INSTANCE, strlen(INSTANCE), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            assert_true(errno == EHOSTUNREACH || errno == EAGAIN);
            usleep(10000);
            continue;
        }
        assert_int_equal(zmq_send(r, "", 0, ZMQ_SNDMORE), 0);
        assert_int_equal(zmq_send(r, pkt, strlen(pkt), 0), (int)strlen(pkt));
        sent = true;
    }
    assert_true(sent);
    struct zh_zmsg *m = inbox_pop(2, WAIT_MS);
    assert_non_null(m);
    assert_int_equal(m->nframes, 3);
    assert_frame(m, 0, "req1");
    assert_frame(m, 1, "");
    assert_frame(m, 2, pkt);
    zh_zmsg_free(m);
}

static void multi_id_packet_reaches_every_worker_it_names(void **state)
{
    (void)state;
    use_sock(ZH_ZS_S_IN, "s-in");
    start_bridge(4);
    void *pub = peer(ZMQ_PUB, ZH_ZS_S_IN, NULL);
    char pkt[128], frame[160];
    id_body_pkt(pkt, sizeof(pkt), "3-0-sync", "s");
    snprintf(frame, sizeof(frame), INSTANCE " %s", pkt);
    zh_zmsg_free(publish_until_delivered(pub, frame, 3));

    const char *multi =
        INSTANCE " T95:4:from,1:h,2:id,54:23:2:id,5:0-0-1,3:seq,1:5#}23:2:id,5:2-3-a,3:"
                 "seq,1:2#}]4:type,10:keep-alive,}";
    peer_send(pub, 1, multi);
    for (unsigned w = 0; w < 4; w += 2) {
        struct zh_zmsg *m = inbox_pop(w, WAIT_MS);
        assert_non_null(m);
        assert_frame(m, 0, multi);
        zh_zmsg_free(m);
    }
    assert_inbox_quiet(1);
    assert_inbox_quiet(3);
    assert_inbox_quiet(0);
    assert_inbox_quiet(2);
}

static void unroutable_packet_still_reaches_exactly_one_worker(void **state)
{
    (void)state;
    use_sock(ZH_ZS_C_IN, "c-in");
    start_bridge(3);
    void *push = peer(ZMQ_PUSH, ZH_ZS_C_IN, NULL);
    const char *bad[] = {"T0:}", "Xgarbage", "T12:2:id,2:12#}", "T5:abc"};
    for (size_t i = 0; i < ZH_ARRAY_SIZE(bad); i++) {
        peer_send(push, 1, bad[i]);
        struct zh_zmsg *m = NULL;
        uint64_t deadline = now_ms() + WAIT_MS;
        while (!m && now_ms() < deadline) {
            for (unsigned w = 0; w < 3 && !m; w++) {
                m = inbox_pop(w, 10);
            }
        }
        assert_non_null(m);
        assert_frame(m, 0, bad[i]);
        zh_zmsg_free(m);
    }
    for (unsigned w = 0; w < 3; w++) {
        assert_inbox_quiet(w);
    }
}

static void inbox_overflow_waits_in_the_bridge_and_keeps_order(void **state)
{
    (void)state;
    /* Inbox channels of 4 slots, 600 packets for one worker and nobody popping: the bridge keeps up
     * to its overflow limit, stops reading (ZeroMQ queues the rest), and everything arrives in
     * order once the worker pops. */
    use_sock(ZH_ZS_C_IN, "c-in");
    fx.cfg.chan_capacity = 4;
    start_bridge(2);
    void *push = peer(ZMQ_PUSH, ZH_ZS_C_IN, NULL);
    char id[32];
    id_for_worker(id, sizeof(id), "req1", 1, 2);
    enum { N = 600 };
    for (int i = 0; i < N; i++) {
        char inner[128], pkt[160];
        snprintf(inner, sizeof(inner), "4:from,4:req1,2:id,%zu:%s,4:body,4:%04d,", strlen(id), id,
                 i);
        wrap_dict(pkt, sizeof(pkt), inner);
        peer_send(push, 1, pkt);
    }
    usleep(100000);
    assert_true(zh_chan_size(zh_zbridge_inbox(fx.b, 1)) <= 4);
    for (int i = 0; i < N; i++) {
        struct zh_zmsg *m = inbox_pop(1, WAIT_MS);
        if (!m) {
            fail_msg("packet %d of %d never arrived", i, N);
        }
        char want[16];
        snprintf(want, sizeof(want), "%04d,}", i);
        struct zh_span f = zh_zmsg_frame(m, 0);
        assert_true(f.n > 6);
        assert_memory_equal(f.p + f.n - 6, want, 6);
        zh_zmsg_free(m);
    }
    assert_inbox_quiet(0);
    assert_inbox_quiet(1);
}

/* ---- (a) worker sends ---- */

static void port_send_on_push_reaches_the_pull_peer(void **state)
{
    (void)state;
    use_sock(ZH_ZS_S_OUT, "s-out");
    start_bridge(2);
    void *pull = peer(ZMQ_PULL, ZH_ZS_S_OUT, NULL);
    port_send(1, ZH_ZS_S_OUT, 1, "T15:2:id,7:1-0-abc,}");
    struct zh_zmsg *m = peer_recv(pull, WAIT_MS);
    assert_non_null(m);
    assert_int_equal(m->nframes, 1);
    assert_frame(m, 0, "T15:2:id,7:1-0-abc,}");
    zh_zmsg_free(m);
    port_send(0, ZH_ZS_S_OUT, 1, "second");
    m = peer_recv(pull, WAIT_MS);
    assert_non_null(m);
    assert_frame(m, 0, "second");
    zh_zmsg_free(m);
    assert_int_equal(zh_zport_backlog(fx.ports[0]) + zh_zport_backlog(fx.ports[1]), 0);
}

static void port_send_on_an_unconfigured_socket_is_dropped(void **state)
{
    (void)state;
    use_sock(ZH_ZS_S_OUT, "s-out");
    start_bridge(1);
    void *pull = peer(ZMQ_PULL, ZH_ZS_S_OUT, NULL);
    assert_false(zh_zbridge_has(fx.b, ZH_ZS_C_OUT));
    assert_true(zh_zbridge_has(fx.b, ZH_ZS_S_OUT));
    port_send(0, ZH_ZS_C_OUT, 1, "nowhere"); /* freed by the port (ASan checks) */
    assert_int_equal(zh_zport_backlog(fx.ports[0]), 0);
    port_send(0, ZH_ZS_S_OUT, 1, "somewhere");
    struct zh_zmsg *m = peer_recv(pull, WAIT_MS);
    assert_non_null(m);
    assert_frame(m, 0, "somewhere");
    zh_zmsg_free(m);
}

static void outbound_channel_holding_more_than_one_batch_is_drained_completely(void **state)
{
    (void)state;
    /* 300 messages wait in worker 0's channel before the bridge starts, with the peer connected
     * (nothing parks). The bridge reads a channel in batches; the rest must not wait for a wake-up
     * that never comes (the channel only signals on empty -> non-empty). */
    use_sock(ZH_ZS_S_OUT, "s-out");
    open_bridge(1);
    void *pull = peer(ZMQ_PULL, ZH_ZS_S_OUT, NULL);
    usleep(300000); /* let the ipc connection complete, so no send returns EAGAIN */
    enum { N = 300 };
    for (int i = 0; i < N; i++) {
        char body[16];
        snprintf(body, sizeof(body), "m%04d", i);
        port_send(0, ZH_ZS_S_OUT, 1, body);
    }
    assert_int_equal(zh_zport_backlog(fx.ports[0]), 0);
    assert_int_equal(zh_zbridge_start(fx.b), 0);
    for (int i = 0; i < N; i++) {
        struct zh_zmsg *m = peer_recv(pull, WAIT_MS);
        if (!m) {
            fail_msg("message %d of %d never arrived", i, N);
        }
        char body[16];
        snprintf(body, sizeof(body), "m%04d", i);
        assert_frame(m, 0, body);
        zh_zmsg_free(m);
    }
}

static void router_send_to_an_unknown_identity_is_dropped_and_blocks_nothing(void **state)
{
    (void)state;
    use_sock(ZH_ZS_S_OUT_STREAM, "s-out-stream");
    use_sock(ZH_ZS_S_OUT, "s-out");
    start_bridge(2);
    void *dealer = peer(ZMQ_DEALER, ZH_ZS_S_OUT_STREAM, "h1");
    void *pull = peer(ZMQ_PULL, ZH_ZS_S_OUT, NULL);

    /* The handler speaks first, so our ROUTER knows "h1"; its packet reaches worker 0 with the
     * envelope intact. */
    char pkt[128];
    id_body_pkt(pkt, sizeof(pkt), "0-1-a", "hi");
    peer_send(dealer, 2, "", pkt);
    struct zh_zmsg *m = inbox_pop(0, WAIT_MS);
    assert_non_null(m);
    assert_int_equal(m->nframes, 3);
    assert_frame(m, 0, "h1");
    assert_frame(m, 1, "");
    assert_frame(m, 2, pkt);
    assert_int_equal(m->sock, ZH_ZS_S_OUT_STREAM);
    zh_zmsg_free(m);

    for (int round = 0; round < 3; round++) {
        port_send(1, ZH_ZS_S_OUT_STREAM, 3, "ghost", "", "T0:}");
        port_send(1, ZH_ZS_S_OUT_STREAM, 3, "h1", "", "to-h1");
        port_send(0, ZH_ZS_S_OUT, 1, "to-pull");
        m = peer_recv(dealer, WAIT_MS);
        assert_non_null(m);
        assert_int_equal(m->nframes, 2);
        assert_frame(m, 0, "");
        assert_frame(m, 1, "to-h1");
        zh_zmsg_free(m);
        m = peer_recv(pull, WAIT_MS);
        assert_non_null(m);
        assert_frame(m, 0, "to-pull");
        zh_zmsg_free(m);
    }
    assert_peer_quiet(dealer);
}

static void router_probe_and_envelope_less_messages_are_not_delivered(void **state)
{
    (void)state;
    use_sock(ZH_ZS_S_OUT_STREAM, "s-out-stream");
    start_bridge(1);
    void *dealer = peer(ZMQ_DEALER, ZH_ZS_S_OUT_STREAM, "h1");
    peer_send(dealer, 1, "");  /* arrives as [h1, ""]: a probe */
    peer_send(dealer, 1, "x"); /* [h1, "x"]: routed like any packet (unroutable here) */
    char pkt[128];
    id_body_pkt(pkt, sizeof(pkt), "0-1-a", "after");
    peer_send(dealer, 2, "", pkt);
    struct zh_zmsg *m = inbox_pop(0, WAIT_MS);
    assert_non_null(m);
    /* "x" is unroutable and goes to the only worker; the probe never shows up. */
    assert_frame(m, m->nframes - 1, "x");
    zh_zmsg_free(m);
    m = inbox_pop(0, WAIT_MS);
    assert_non_null(m);
    assert_frame(m, 2, pkt);
    zh_zmsg_free(m);
    assert_inbox_quiet(0);
}

/* ---- (b) backpressure ---- */

static void push_without_a_peer_parks_and_other_sockets_still_flow(void **state)
{
    (void)state;
    /* No PULL peer on server-out: the first messages park (up to dest_queue_max), the next one
     * waits in its channel slot, the rest stay queued in the channel. Meanwhile client-out keeps
     * working. When a peer connects, everything arrives in order. */
    use_sock(ZH_ZS_S_OUT, "s-out");
    use_sock(ZH_ZS_C_OUT, "c-out");
    fx.cfg.dest_queue_max = 4;
    fx.cfg.chan_capacity = 16;
    start_bridge(2);
    enum { N = 12 };
    for (int i = 0; i < N; i++) {
        char body[16];
        snprintf(body, sizeof(body), "p%02d", i);
        port_send(0, ZH_ZS_S_OUT, 1, body);
    }
    assert_int_equal(zh_zport_backlog(fx.ports[0]), 0);

    void *sub = peer(ZMQ_SUB, ZH_ZS_C_OUT, NULL);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "req1 ", 5);
    /* From the same worker and from the other one: neither waits behind the parked PUSH. */
    xpub_until_received(0, sub, "req1 T0:}");
    xpub_until_received(1, sub, "req1 T2:id,}");

    void *pull = peer(ZMQ_PULL, ZH_ZS_S_OUT, NULL);
    for (int i = 0; i < N; i++) {
        struct zh_zmsg *m = peer_recv(pull, WAIT_MS);
        if (!m) {
            fail_msg("parked message %d of %d never arrived", i, N);
        }
        char body[16];
        snprintf(body, sizeof(body), "p%02d", i);
        assert_frame(m, 0, body);
        zh_zmsg_free(m);
    }
    /* And new sends go straight through afterwards. */
    port_send(1, ZH_ZS_S_OUT, 1, "after");
    struct zh_zmsg *m = peer_recv(pull, WAIT_MS);
    assert_non_null(m);
    assert_frame(m, 0, "after");
    zh_zmsg_free(m);
    assert_peer_quiet(pull);
}

static void full_channel_backlog_in_the_port_is_flushed_by_the_worker_loop(void **state)
{
    (void)state;
    /* Channels of 2 slots and a PUSH with no peer: the port keeps the overflow in its FIFO and
     * watches the channel's space fd on the worker's loop; once a peer connects and the bridge
     * drains, running the loop moves the FIFO along, in order. */
    use_sock(ZH_ZS_S_OUT, "s-out");
    fx.cfg.dest_queue_max = 2;
    fx.cfg.chan_capacity = 2;
    start_bridge(1);
    enum { N = 20 };
    for (int i = 0; i < N; i++) {
        char body[16];
        snprintf(body, sizeof(body), "q%02d", i);
        port_send(0, ZH_ZS_S_OUT, 1, body);
    }
    assert_true(zh_zport_backlog(fx.ports[0]) > 0);
    void *pull = peer(ZMQ_PULL, ZH_ZS_S_OUT, NULL);
    int got = 0;
    uint64_t deadline = now_ms() + WAIT_MS;
    while (got < N && now_ms() < deadline) {
        run_worker_loop(2); /* the port reacts to its space fd */
        struct zh_zmsg *m;
        while ((m = peer_recv(pull, 0))) {
            char body[16];
            snprintf(body, sizeof(body), "q%02d", got);
            assert_frame(m, 0, body);
            zh_zmsg_free(m);
            got++;
        }
    }
    assert_int_equal(got, N);
    assert_int_equal(zh_zport_backlog(fx.ports[0]), 0);
    assert_int_equal(zh_loop_io_count(fx.loop), 0);
}

/* ---- (c) ipc endpoints ---- */

static void second_bridge_on_the_same_ipc_path_fails_and_the_first_keeps_working(void **state)
{
    (void)state;
    use_sock(ZH_ZS_S_IN, "s-in");
    start_bridge(1);
    struct zh_buf err = {0};
    struct zh_zbridge *b2 = zh_zbridge_new(&fx.cfg, &err);
    assert_null(b2);
    const char *msg = zh_buf_cstr(&err);
    if (!strstr(msg, "in use by another process")) {
        fail_msg("unexpected error: %s", msg);
    }
    assert_non_null(strstr(msg, fx.ep[ZH_ZS_S_IN]));
    zh_buf_free(&err);
    /* The failed attempt did not unlink or steal our socket file. */
    void *pub = peer(ZMQ_PUB, ZH_ZS_S_IN, NULL);
    char pkt[128], frame[160];
    id_body_pkt(pkt, sizeof(pkt), "0-1-a", "still-mine");
    snprintf(frame, sizeof(frame), INSTANCE " %s", pkt);
    zh_zmsg_free(publish_until_delivered(pub, frame, 0));
}

static void lock_is_released_when_the_bridge_is_freed(void **state)
{
    (void)state;
    use_sock(ZH_ZS_S_OUT, "s-out");
    open_bridge(1);
    free_ports();
    zh_zbridge_free(fx.b);
    fx.b = NULL;
    open_bridge(1); /* same path again: must succeed */
}

static void relative_ipc_path_is_made_absolute_and_its_directory_created(void **state)
{
    (void)state;
    int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(cwd >= 0);
    assert_int_equal(chdir(tmpdir), 0);
    const char *spec = "ipc://rel/deeper/s-in";
    fx.specs[ZH_ZS_S_IN][0] = spec;
    fx.cfg.socks[ZH_ZS_S_IN].specs = fx.specs[ZH_ZS_S_IN];
    fx.cfg.socks[ZH_ZS_S_IN].n_specs = 1;
    fx.cfg.workers = 1;
    fx.b = zh_zbridge_new(&fx.cfg, &fx.err);
    int r = fchdir(cwd);
    close(cwd);
    assert_int_equal(r, 0);
    if (!fx.b) {
        fail_msg("zh_zbridge_new: %s", zh_buf_cstr(&fx.err));
    }
    fx.workers = 1;
    fx.ports[0] = zh_zport_new(fx.b, 0, fx.loop);
    assert_int_equal(zh_zbridge_start(fx.b), 0);

    char path[256];
    struct stat st;
    snprintf(path, sizeof(path), "%s/rel/deeper", tmpdir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    snprintf(path, sizeof(path), "%s/rel/deeper/s-in", tmpdir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    snprintf(path, sizeof(path), "%s/rel/deeper/s-in.lock", tmpdir);
    assert_int_equal(stat(path, &st), 0);

    /* From another working directory, the absolute path reaches it. */
    snprintf(fx.ep[ZH_ZS_S_IN], sizeof(fx.ep[ZH_ZS_S_IN]), "ipc://%s/rel/deeper/s-in", tmpdir);
    void *pub = peer(ZMQ_PUB, ZH_ZS_S_IN, NULL);
    char pkt[128], frame[160];
    id_body_pkt(pkt, sizeof(pkt), "0-1-a", "rel");
    snprintf(frame, sizeof(frame), INSTANCE " %s", pkt);
    zh_zmsg_free(publish_until_delivered(pub, frame, 0));
}

static void absolute_ipc_path_gets_its_missing_parents_and_file_mode(void **state)
{
    (void)state;
    snprintf(fx.ep[ZH_ZS_S_OUT], sizeof(fx.ep[ZH_ZS_S_OUT]), "ipc://%s/a/b/c/s-out", tmpdir);
    fx.specs[ZH_ZS_S_OUT][0] = fx.ep[ZH_ZS_S_OUT];
    fx.cfg.socks[ZH_ZS_S_OUT].specs = fx.specs[ZH_ZS_S_OUT];
    fx.cfg.socks[ZH_ZS_S_OUT].n_specs = 1;
    fx.cfg.ipc_file_mode = 0660;
    start_bridge(1);
    struct stat st;
    assert_int_equal(stat(fx.ep[ZH_ZS_S_OUT] + 6, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);
    void *pull = peer(ZMQ_PULL, ZH_ZS_S_OUT, NULL);
    port_send(0, ZH_ZS_S_OUT, 1, "deep");
    struct zh_zmsg *m = peer_recv(pull, WAIT_MS);
    assert_non_null(m);
    assert_frame(m, 0, "deep");
    zh_zmsg_free(m);
}

static void bad_configurations_fail_with_a_message(void **state)
{
    (void)state;
    struct zh_buf err = {0};
    fx.cfg.workers = 0;
    assert_null(zh_zbridge_new(&fx.cfg, &err));
    assert_true(err.len > 0);
    zh_buf_reset(&err);
    fx.cfg.workers = ZH_ZBRIDGE_MAX_WORKERS + 1;
    assert_null(zh_zbridge_new(&fx.cfg, &err));
    assert_true(err.len > 0);
    zh_buf_reset(&err);
    fx.cfg.workers = 1;
    fx.cfg.instance_id = "has space";
    assert_null(zh_zbridge_new(&fx.cfg, &err));
    assert_true(err.len > 0);
    zh_buf_reset(&err);
    fx.cfg.instance_id = "";
    assert_null(zh_zbridge_new(&fx.cfg, &err));
    zh_buf_reset(&err);
    fx.cfg.instance_id = INSTANCE;
    const char *bad[] = {"nonsense://x"};
    fx.cfg.socks[ZH_ZS_S_OUT].specs = bad;
    fx.cfg.socks[ZH_ZS_S_OUT].n_specs = 1;
    assert_null(zh_zbridge_new(&fx.cfg, &err));
    assert_non_null(strstr(zh_buf_cstr(&err), "nonsense://x"));
    zh_buf_free(&err);
}

static void accessors_report_the_configuration(void **state)
{
    (void)state;
    use_sock(ZH_ZS_C_IN, "c-in");
    use_sock(ZH_ZS_S_OUT, "s-out");
    open_bridge(3);
    assert_string_equal(zh_zbridge_id(fx.b), INSTANCE);
    for (int s = 0; s < ZH_ZS_COUNT; s++) {
        bool want = s == ZH_ZS_C_IN || s == ZH_ZS_S_OUT;
        assert_int_equal(zh_zbridge_has(fx.b, (enum zh_zsock)s), want);
    }
    for (unsigned w = 0; w < 3; w++) {
        assert_non_null(zh_zbridge_inbox(fx.b, w));
    }
}

/* ---- (d) stop and free with messages still queued ---- */

static void stop_and_free_with_messages_everywhere_leaks_nothing(void **state)
{
    (void)state;
    /* Inbound: packets sit in an inbox (and its overflow) that nobody pops. Outbound: parked on a
     * peerless PUSH, held in a channel slot, queued in channels, and waiting in a port's FIFO. */
    use_sock(ZH_ZS_C_IN, "c-in");
    use_sock(ZH_ZS_S_OUT, "s-out");
    fx.cfg.chan_capacity = 4;
    fx.cfg.dest_queue_max = 2;
    start_bridge(2);
    void *push = peer(ZMQ_PUSH, ZH_ZS_C_IN, NULL);
    char pkt[128];
    client_pkt(pkt, sizeof(pkt), "req1", "abc");
    for (int i = 0; i < 20; i++) {
        peer_send(push, 1, pkt);
    }
    for (int i = 0; i < 20; i++) {
        char body[16];
        snprintf(body, sizeof(body), "x%02d", i);
        port_send((unsigned)i % 2, ZH_ZS_S_OUT, 1, body);
    }
    unsigned w = zh_zroute_hash((const uint8_t *)"req1", 4, (const uint8_t *)"abc", 3, 2);
    uint64_t deadline = now_ms() + WAIT_MS;
    while (zh_chan_size(zh_zbridge_inbox(fx.b, w)) < 4 && now_ms() < deadline) {
        usleep(5000);
    }
    assert_int_equal(zh_chan_size(zh_zbridge_inbox(fx.b, w)), 4);
    size_t backlog = zh_zport_backlog(fx.ports[0]) + zh_zport_backlog(fx.ports[1]);
    assert_true(backlog > 0);
    zh_zbridge_stop(fx.b, 20);
    zh_zbridge_stop(fx.b, 20); /* twice is fine */
    size_t dropped = zh_zport_free(fx.ports[0]) + zh_zport_free(fx.ports[1]);
    fx.ports[0] = fx.ports[1] = NULL;
    assert_int_equal(dropped, backlog);
    zh_zbridge_free(fx.b);
    fx.b = NULL;
    /* LeakSanitizer reports anything left at exit. */
}

static void free_without_start_is_clean(void **state)
{
    (void)state;
    use_sock(ZH_ZS_S_OUT, "s-out");
    use_sock(ZH_ZS_S_IN, "s-in");
    open_bridge(2);
    port_send(0, ZH_ZS_S_OUT, 1, "never-sent");
    port_send(1, ZH_ZS_S_OUT, 1, "never-sent-either");
    /* teardown frees ports and bridge with both messages still in channels */
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    zh_log_set_level(getenv("ZH_TEST_VERBOSE") ? ZH_LOG_TRACE : ZH_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        T(sub_packet_reaches_the_worker_named_by_its_id_prefix),
        T(sub_frame_for_another_instance_is_not_delivered),
        T(pull_packet_goes_to_the_hash_of_from_and_id),
        T(same_session_always_lands_on_the_same_worker),
        T(router_packet_keeps_its_envelope_and_goes_to_the_hash_worker),
        T(multi_id_packet_reaches_every_worker_it_names),
        T(unroutable_packet_still_reaches_exactly_one_worker),
        T(inbox_overflow_waits_in_the_bridge_and_keeps_order),
        T(port_send_on_push_reaches_the_pull_peer),
        T(port_send_on_an_unconfigured_socket_is_dropped),
        T(outbound_channel_holding_more_than_one_batch_is_drained_completely),
        T(router_send_to_an_unknown_identity_is_dropped_and_blocks_nothing),
        T(router_probe_and_envelope_less_messages_are_not_delivered),
        T(push_without_a_peer_parks_and_other_sockets_still_flow),
        T(full_channel_backlog_in_the_port_is_flushed_by_the_worker_loop),
        T(second_bridge_on_the_same_ipc_path_fails_and_the_first_keeps_working),
        T(lock_is_released_when_the_bridge_is_freed),
        T(relative_ipc_path_is_made_absolute_and_its_directory_created),
        T(absolute_ipc_path_gets_its_missing_parents_and_file_mode),
        T(bad_configurations_fail_with_a_message),
        T(accessors_report_the_configuration),
        T(stop_and_free_with_messages_everywhere_leaks_nothing),
        T(free_without_start_is_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
