/* The server role on one worker (Condure's job): inbound HTTP/1.x connections handed over by the
 * listener thread become ZHTTP sessions with handlers. Requests go out on the PUSH socket (first
 * packet) and the ROUTER (later packets, once the handler's address is known); handler packets
 * arrive routed by the worker prefix of zhttpd's own ids "<worker>-<slot>-<counter>". See
 * docs/internals/conn-lifecycle.md. */
#ifndef ZH_SERVER_SERVER_H
#define ZH_SERVER_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "shared/proto/session.h"
#include "shared/rt/chan.h"
#include "shared/rt/loop.h"
#include "shared/rt/zbridge.h"
#include "shared/rt/zmsg.h"

struct zh_server_config {
    const char *instance_id;         /* our `from` */
    struct zh_session_params params; /* keep-alive / expiry of handler sessions */
    size_t buffer_size;              /* per-connection buffer and initial credits (Condure: 8192) */
    size_t max_header_size;          /* request head limit (default 64 KiB) */
    unsigned max_conns;              /* connections this worker may hold */
};

/* A connection accepted by the listener thread, handed to a worker. */
struct zh_accepted {
    int fd;
    bool tls;   /* listener is TLS (not yet supported: refused) */
    bool local; /* unix socket: no peer address */
    bool req_mode;
    struct sockaddr_storage peer;
    socklen_t peer_len;
    struct sockaddr_storage local_addr;
    socklen_t local_len;
};

struct zh_server;

/* Create the engine for one worker. cfg is copied (its strings must outlive the engine). */
struct zh_server *zh_server_new(struct zh_loop *loop, struct zh_zport *port, unsigned worker,
                                const struct zh_server_config *cfg);

/* The channel the listener thread pushes struct zh_accepted * into (the worker frees them). */
struct zh_chan *zh_server_accept_chan(struct zh_server *s);

/* Connections held or reserved now (any thread). */
unsigned zh_server_conn_count(const struct zh_server *s);

/* Listener thread: reserve room for one connection (max_conns per worker). Returns false when the
 * worker is full or closing. A reserved connection must then be pushed on the accept channel; the
 * worker releases the reservation when the connection ends. */
bool zh_server_reserve(struct zh_server *s);

/* Listener thread: give back a reservation whose connection could not be handed over. */
void zh_server_unreserve(struct zh_server *s);

/* Handle one message from a server-role socket. Takes ownership of m. */
void zh_server_on_zmsg(struct zh_server *s, struct zh_zmsg *m);

/* Stop taking new connections and close idle keep-alive ones. With cancel, also cancel every
 * session (handlers get a cancel) and close every connection. */
void zh_server_shutdown(struct zh_server *s, int cancel);

/* Requests in flight (sessions not yet answered in full). */
size_t zh_server_active(const struct zh_server *s);

/* Free the engine and close what is left. */
void zh_server_free(struct zh_server *s);

#endif
