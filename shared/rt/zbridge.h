/* The zmq bridge thread: owns every ZeroMQ socket of both roles and moves whole messages between
 * them and the workers, without parsing bodies (see DESIGN.md "Threads" and
 * docs/internals/zbridge.md).
 *
 *   - inbound: one zmq_poll loop over the sockets; each message is routed (shared/rt/zroute.h) and
 * pushed on the chosen worker's inbox channel. If an inbox is full the message waits in a small
 * per-worker queue; while any such queue is full the bridge stops reading its sockets, so ZeroMQ's
 * own HWM pushes back on the peers. Nothing grows without bound.
 *   - outbound: one bounded channel per (worker, socket). Every send is non-blocking; a send that
 * returns EAGAIN parks the message in a bounded queue for its destination (a handler identity on a
 * ROUTER, the socket otherwise), retried on POLLOUT (PUSH/DEALER) or a 10 ms timer. While a
 * destination's queue is full only the channels whose next message goes there wait.
 *   - deadlines: a message with deadline_ms (the server role's first packets, --handler-wait) is
 * never sent after its deadline while it waits parked; the bridge drops it, and a message marked
 * ZH_ZMSG_F_NOTIFY is instead handed back to its worker's inbox with ZH_ZMSG_F_UNDELIVERED (also
 * when its peer is unreachable or the send fails), so the worker can answer its client.
 *
 * The sockets are created and bound in zh_zbridge_new(), on the calling thread, so a bad endpoint
 * or an ipc path held by another instance is a startup error. */
#ifndef ZH_SHARED_RT_ZBRIDGE_H
#define ZH_SHARED_RT_ZBRIDGE_H

#include <stdbool.h>
#include <stddef.h>

#include "shared/proto/buf.h"
#include "shared/rt/chan.h"
#include "shared/rt/loop.h"
#include "shared/rt/zmsg.h"
#include "shared/rt/zport.h" /* the worker side */

#define ZH_ZBRIDGE_MAX_WORKERS 64

struct zh_zbridge_sock_config {
    const char *const *specs; /* endpoints; none = socket not created */
    size_t n_specs;
    bool connect; /* connect instead of bind */
};

struct zh_zbridge_config {
    const char *instance_id; /* ROUTER identity, SUB topic; no spaces */
    unsigned workers;        /* 1..ZH_ZBRIDGE_MAX_WORKERS */
    struct zh_zbridge_sock_config socks[ZH_ZS_COUNT];
    int ipc_file_mode;     /* chmod for bound ipc socket files; -1 = leave as created */
    int in_hwm;            /* ZMQ_RCVHWM of receiving sockets; 0 = libzmq default */
    int out_hwm;           /* ZMQ_SNDHWM of sending sockets; 0 = libzmq default */
    size_t chan_capacity;  /* per (worker, socket) channel; 0 = 1024 */
    size_t dest_queue_max; /* parked messages per destination; 0 = 128 */
};

struct zh_zbridge;

/* Create the context and sockets and bind/connect every endpoint (ipc paths made absolute, parent
 * directories created, `<path>.lock` flock'ed before bind). Returns NULL with a message in err on
 * failure. */
struct zh_zbridge *zh_zbridge_new(const struct zh_zbridge_config *cfg, struct zh_buf *err);

/* Start the bridge thread. Returns 0 or -errno. */
int zh_zbridge_start(struct zh_zbridge *b);

/* Stop the bridge thread after it has flushed what it can (outbound channels drained, parked
 * messages retried until linger_ms). Safe to call twice. */
void zh_zbridge_stop(struct zh_zbridge *b, unsigned linger_ms);

/* Free everything (stopping the thread first if needed): sockets, context, queued messages, locks.
 */
void zh_zbridge_free(struct zh_zbridge *b);

/* True when socket s was configured. */
bool zh_zbridge_has(const struct zh_zbridge *b, enum zh_zsock s);

/* Worker w's inbox: the bridge pushes struct zh_zmsg * (the worker frees them). */
struct zh_chan *zh_zbridge_inbox(struct zh_zbridge *b, unsigned w);

/* The bridge's instance id. */
const char *zh_zbridge_id(const struct zh_zbridge *b);

/* Worker w's outbound channel to socket s (NULL when s is not configured), for its zh_zport. */
struct zh_chan *zh_zbridge_outbox(struct zh_zbridge *b, unsigned w, enum zh_zsock s);

/* Messages for socket kind s parked now (a peer's queue was full: EAGAIN, or a ROUTER peer not
 * connected yet) and parked since start. Any thread (relaxed reads). */
void zh_zbridge_parked(const struct zh_zbridge *b, enum zh_zsock s, uint64_t *now, uint64_t *total);

#endif
