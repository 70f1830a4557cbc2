/* The listener thread: accept() on every listening socket, but only while the process limit of its
 * kind (--stream-maxconn, --req-maxconn) has room, and hand each connection to a worker
 * round-robin, rotating over listeners too so none starves another (see docs: accept fairness).
 * A listener whose kind is full is taken out of the poll set (the kernel backlog holds its
 * clients) and retried on a short timer. Request processing never runs on this thread, so
 * accepting never waits behind it. */
#ifndef ZH_SERVER_LISTENER_H
#define ZH_SERVER_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

#include "server/server.h"
#include "server/tls.h"
#include "shared/proto/buf.h"

/* One --listen entry. The strings must outlive the listener. */
struct zh_listen_spec {
    const char *addr; /* numeric address (IPv4 or IPv6); NULL = 0.0.0.0 */
    int port;         /* TCP port (not for local) */
    const char *path; /* unix socket path (local) */
    bool local;
    bool req; /* req mode instead of stream */
    bool tls;
    const char *default_cert; /* TLS: identity for clients without a matching SNI, NULL = none */
    int mode;                 /* unix socket file mode, -1 = default */
    const char *user;         /* unix socket owner, NULL = leave */
    const char *group;        /* unix socket group, NULL = leave */
};

struct zh_listener;

/* Bind and listen on every spec now (so errors are startup errors). workers[i] receive connections;
 * the listener keeps the workers array itself (not a copy): it must outlive the listener. */
struct zh_listener *zh_listener_new(const struct zh_listen_spec *specs, size_t n,
                                    struct zh_server *const *workers, unsigned nworkers,
                                    struct zh_buf *err);

/* Have the listener thread check tls's identity directory for changes every interval_ms and
 * reload it (zh_tls_store_reload_if_changed). Call before zh_listener_start(). */
void zh_listener_set_tls_reload(struct zh_listener *l, struct zh_tls_store *tls,
                                unsigned interval_ms);

/* Start the thread. Returns 0 or -errno. */
int zh_listener_start(struct zh_listener *l);

/* Stop accepting and close the listening sockets (joins the thread). Safe to call twice. */
void zh_listener_stop(struct zh_listener *l);

/* Free (stops first). */
void zh_listener_free(struct zh_listener *l);

#endif
