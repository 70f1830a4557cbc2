/* A worker thread: one epoll loop with its timer wheel, running the client-role and server-role
 * engines for the sessions routed to it. Sessions never move between workers, so worker code takes
 * no locks; the main thread talks to a worker only through its control eventfd and atomics. */
#ifndef ZH_DAEMON_WORKER_H
#define ZH_DAEMON_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/client.h"
#include "server/server.h"
#include "shared/rt/metrics.h"
#include "shared/rt/zbridge.h"

struct zh_worker;

struct zh_worker_config {
    unsigned index;
    struct zh_zbridge *bridge;
    const struct zh_client_config *client; /* NULL: no client role */
    const struct zh_server_config *server; /* NULL: no server role */
    struct zh_metrics *metrics;            /* this worker's counters, NULL = none */
};

/* Create worker cfg->index (loop, engines, port) without starting its thread. NULL on failure. */
struct zh_worker *zh_worker_new(const struct zh_worker_config *cfg);

/* Start the thread. Returns 0 or -errno. */
int zh_worker_start(struct zh_worker *w);

/* The worker's server engine (NULL without the server role), for the listener thread's hand-off. */
struct zh_server *zh_worker_server(struct zh_worker *w);

/* What a SIGHUP reload hands to a worker. The main thread builds it, keeps it (and the policy it
 * points to) alive until zh_worker_reloaded() says the worker took it, and only then frees what the
 * worker used before. */
struct zh_worker_reload {
    const struct zh_policy *policy;        /* the client role's new policy */
    uint32_t client_timeout_ms;            /* client inactivity timeout */
    const struct zh_server_config *server; /* live server limits (zh_server_reload) */
};

/* Hand r to the worker (returns at once); the worker applies it between two events of its loop,
 * so no session sees a half-applied change. seq numbers the reload. */
void zh_worker_reload(struct zh_worker *w, const struct zh_worker_reload *r, unsigned seq);

/* True once the worker applied reload seq (or has exited). */
bool zh_worker_reloaded(struct zh_worker *w, unsigned seq);

/* Ask the worker to stop taking new work and let what is in flight finish (returns at once). */
void zh_worker_drain(struct zh_worker *w);

/* Ask the worker to cancel everything in flight and exit its loop (returns at once). */
void zh_worker_cancel(struct zh_worker *w);

/* True once the worker has nothing in flight (after zh_worker_drain) or has exited. */
bool zh_worker_idle(struct zh_worker *w);

/* Wait for the thread to exit (after zh_worker_cancel), then free everything. */
void zh_worker_free(struct zh_worker *w);

#endif
