/* The worker side of the zmq bridge (shared/rt/zbridge.h). */
#ifndef ZH_SHARED_RT_ZPORT_H
#define ZH_SHARED_RT_ZPORT_H

#include <stddef.h>

#include "shared/rt/loop.h"
#include "shared/rt/zmsg.h"

struct zh_zbridge;

/* A zh_zport is a worker's sending end: zh_zport_send() never fails and never blocks. When the
 * channel to the bridge is full the message waits in the port's FIFO, which is flushed from the
 * worker's loop as soon as the bridge makes room (the port watches the channel's space eventfd).
 * That FIFO is bounded by the engines' own limits (sessions x credits), not here. */
struct zh_zport;

/* Create worker w's port, watching space fds on loop. */
struct zh_zport *zh_zport_new(struct zh_zbridge *b, unsigned w, struct zh_loop *loop);

/* Hand m (m->sock says which socket) to the bridge. Takes ownership; sets m->worker. */
void zh_zport_send(struct zh_zport *p, struct zh_zmsg *m);

/* Messages waiting in the port's FIFOs (not yet in a channel). */
size_t zh_zport_backlog(const struct zh_zport *p);

/* Free the port; messages still waiting are dropped (and counted in the return value). */
size_t zh_zport_free(struct zh_zport *p);

#endif
