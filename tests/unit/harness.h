/* The shared unit-test harness (tests/unit/harness.c, linked into every tests/unit binary):
 *  - a loop runner: one struct th_loop holds a real shared/rt loop, a watchdog timer that fails
 *    the test when the loop hangs, and a stopper; th_run_for() runs for a time, th_run_until()
 *    until a condition holds (checked every few ms), th_loop_fini() runs the deferred frees and
 *    asserts that no io watcher is left;
 *  - socket helpers: non-blocking socketpair and TCP loopback pairs, a small send buffer (for
 *    EAGAIN at every write), an RST close, non-blocking reads that gather what is there;
 *  - a fake handler endpoint (struct th_bridge): a zmq bridge that is created but never started,
 *    so what an engine sends through its zh_zport stays in the bridge's outbound channels, where
 *    the test takes it (th_bridge_take) and decodes it (th_decode).
 * Watchdogs are generous (seconds) and nothing asserts how fast something happened. */
#ifndef ZH_TESTS_UNIT_HARNESS_H
#define ZH_TESTS_UNIT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shared/proto/buf.h"
#include "shared/proto/zhttp.h"
#include "shared/rt/loop.h"
#include "shared/rt/zbridge.h"
#include "shared/rt/zmsg.h"

#define TH_WATCHDOG_MS 8000

/* ---- loop runner ---- */

struct th_loop {
    struct zh_loop *loop;
    struct zh_timer watchdog; /* fails the test when it fires */
    struct zh_timer stopper;  /* th_run_for */
    struct zh_timer poll;     /* th_run_until */
    uint64_t watchdog_ms;
    bool (*cond)(void *arg);
    void *arg;
};

/* A new loop with the watchdog armed for watchdog_ms (0 = TH_WATCHDOG_MS). */
void th_loop_init(struct th_loop *t, uint64_t watchdog_ms);

/* Re-arm the watchdog (watchdog_ms from now). */
void th_loop_rearm(struct th_loop *t);

/* Run until something calls zh_loop_stop(t->loop) (the watchdog fails a hang). */
void th_run(struct th_loop *t);

/* Run for ms milliseconds. */
void th_run_for(struct th_loop *t, uint64_t ms);

/* Run until cond(arg) holds (checked before running and every 2 ms); the watchdog fails the test
 * if it never does. The watchdog is re-armed first. */
void th_run_until(struct th_loop *t, bool (*cond)(void *arg), void *arg);

/* Disarm the timers, run one more turn (deferred frees), assert no io watcher is left, free. */
void th_loop_fini(struct th_loop *t);

/* ---- sockets ---- */

/* A connected non-blocking AF_UNIX stream pair. */
void th_socketpair(int fds[2]);

/* A connected TCP pair on 127.0.0.1, both ends non-blocking: fds[0] the client, fds[1] the
 * accepted end. */
void th_tcp_pair(int fds[2]);

/* Shrink fd's send buffer (the kernel doubles it and applies its minimum). */
void th_small_sndbuf(int fd, int bytes);

/* Close fd with an RST (SO_LINGER 0) on TCP. */
void th_close_rst(int fd);

/* Append what can be read from non-blocking fd now to out. Returns the bytes read, or -1 once the
 * peer closed (EOF or reset) and nothing more was read. */
ssize_t th_read_avail(int fd, struct zh_buf *out);

/* Write all of s (blocks by polling; fails the test on an error). */
void th_write_str(int fd, const char *s);

/* ---- fake handler endpoint ---- */

struct th_bridge {
    struct zh_zbridge *b;
    struct zh_zport *port; /* worker 0's, on the runner's loop */
    char dir[64];
    char ep[ZH_ZS_COUNT][128];
    const char *specs[ZH_ZS_COUNT][1];
};

/* A bridge (not started) with the server-role sockets (server_role) or the client-role ones, on
 * ipc paths in a fresh temporary directory, one worker, and worker 0's port on loop. */
void th_bridge_init(struct th_bridge *tb, struct zh_loop *loop, bool server_role);

/* Free the port (if the test did not free it and set it NULL, e.g. to let a zh_worker make its
 * own), the bridge and its directory; messages not taken are dropped. */
void th_bridge_fini(struct th_bridge *tb);

/* Take the next message worker 0 sent to sock, or NULL. */
struct zh_zmsg *th_bridge_take(struct th_bridge *tb, enum zh_zsock sock);

/* Messages waiting from worker 0 on sock. */
size_t th_bridge_count(struct th_bridge *tb, enum zh_zsock sock);

/* Decode m's last frame (the ZHTTP payload) into p; fails the test if it does not decode. */
void th_decode(const struct zh_zmsg *m, struct zh_zhttp_packet *p);

/* A handler's reply on the server's SUB socket: one frame "<to> T…" encoding p. */
struct zh_zmsg *th_reply_pub(const char *to, const struct zh_zhttp_packet *p);

/* A handler's reply on the server's DEALER (req mode): frames "", T…. */
struct zh_zmsg *th_reply_req(const struct zh_zhttp_packet *p);

/* ---- TLS ---- */

/* Write a self-signed P-256 identity for cn as <dir>/<stem>.crt and <dir>/<stem>.key (the layout
 * of a server/tls.c identity directory). */
void th_write_self_signed(const char *dir, const char *stem, const char *cn);

/* True when the span equals the string. */
bool th_span_is(struct zh_span s, const char *str);

#endif
