/* The server role on one worker (Condure's job): inbound HTTP/1.x connections handed over by the
 * listener thread become ZHTTP sessions with handlers. Stream-mode requests go out on the PUSH
 * socket (first packet) and the ROUTER (later packets, once the handler's address is known);
 * req-mode requests go out whole on the DEALER. Handler packets arrive routed by the worker prefix
 * of zhttpd's own ids "<worker>-<slot>-<counter>". See docs/internals/conn-lifecycle.md. */
#ifndef ZH_SERVER_SERVER_H
#define ZH_SERVER_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "server/tls.h"
#include "shared/proto/session.h"
#include "shared/rt/chan.h"
#include "shared/rt/loop.h"
#include "shared/rt/zbridge.h"
#include "shared/rt/zmsg.h"

/* Connection kinds, limited separately (--stream-maxconn, --req-maxconn). */
enum zh_server_kind {
    ZH_SERVER_STREAM = 0,
    ZH_SERVER_REQ = 1,
};

/* Connection limits of the whole process, shared by every worker's engine and the listener thread.
 * Use the API. */
struct zh_server_limits {
    atomic_uint _used[2]; /* by kind */
    unsigned _max[2];
    atomic_uint _hs; /* TLS handshakes in progress (OpenSSL state allocated, not yet complete) */
    unsigned _hs_max;
};

/* --max-tls-handshakes by default. */
#define ZH_SERVER_TLS_HANDSHAKES_DEFAULT 1024

/* Set the limits (0 = no connection of that kind is accepted); TLS handshakes in progress get
 * ZH_SERVER_TLS_HANDSHAKES_DEFAULT. */
void zh_server_limits_init(struct zh_server_limits *l, unsigned stream_max, unsigned req_max);

/* Bound TLS handshakes in progress in the whole process (--max-tls-handshakes, >= 1). A handshake
 * counts from the moment its ClientHello record has arrived whole (when the OpenSSL state is
 * allocated) until it completes or the connection closes. */
void zh_server_limits_set_tls_handshakes(struct zh_server_limits *l, unsigned max);

/* TLS handshakes in progress now (any thread). */
unsigned zh_server_limits_tls_handshakes(const struct zh_server_limits *l);

/* Connections of a kind held or reserved now (any thread). */
unsigned zh_server_limits_used(const struct zh_server_limits *l, enum zh_server_kind kind);

struct zh_server_config {
    const char *instance_id;         /* our `from` */
    struct zh_session_params params; /* keep-alive / expiry of handler sessions */
    size_t buffer_size;              /* per-connection buffer and initial credits (Condure: 8192) */
    size_t max_header_size;          /* request head limit (default 64 KiB) */
    size_t body_buffer_size;         /* req mode: whole request body limit (413 beyond) */
    uint32_t head_timeout_ms;        /* a whole head within this after accept / its first byte */
    uint32_t stream_timeout_ms;      /* stream mode: client inactivity limit */
    uint32_t req_timeout_ms;         /* req mode: handler answer within this (504), idle limit */
    uint32_t handler_wait_ms;        /* no handler took the request within this: 503 */
    uint64_t ws_max_message;         /* WebSocket: client message size limit (1009 beyond) */
    uint32_t ws_close_timeout_ms;    /* WebSocket: the client's close is due within this */
    bool ws_auto_pong;               /* WebSocket: answer client pings ourselves */
    bool ws_compression;             /* WebSocket: accept permessage-deflate offers */
    unsigned ws_messages_max;        /* WebSocket: handler frames waiting to be written, at most */
    uint32_t ws_ping_interval_ms;    /* WebSocket: ping clients idle this long (0 = off) */
    struct zh_server_limits *limits; /* shared; must outlive every engine */
    struct zh_tls_store *tls;        /* identities for TLS listeners (shared), NULL = none */
};

/* A connection accepted by the listener thread, handed to a worker. */
struct zh_accepted {
    int fd;
    bool tls;   /* listener is TLS */
    bool local; /* unix socket: no peer address */
    bool req_mode;
    const char *default_cert; /* TLS: certificate for clients without SNI (listener-owned) */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    struct sockaddr_storage local_addr;
    socklen_t local_len;
};

struct zh_server;

/* Create the engine for one worker. cfg is copied (its strings and limits must outlive the
 * engine). */
struct zh_server *zh_server_new(struct zh_loop *loop, struct zh_zport *port, unsigned worker,
                                const struct zh_server_config *cfg);

/* The channel the listener thread pushes struct zh_accepted * into (the worker frees them). */
struct zh_chan *zh_server_accept_chan(struct zh_server *s);

/* Connections this worker holds or has reserved now (any thread). */
unsigned zh_server_conn_count(const struct zh_server *s);

/* Listener thread: reserve room for one connection of a kind on this worker, within the process
 * limit of that kind. Returns false when the limit is reached or the worker is closing. A
 * reserved connection must then be pushed on the accept channel; the worker releases the
 * reservation when the connection ends. */
bool zh_server_reserve(struct zh_server *s, enum zh_server_kind kind);

/* Listener thread: give back a reservation whose connection could not be handed over. */
void zh_server_unreserve(struct zh_server *s, enum zh_server_kind kind);

/* Handle one message from a server-role socket, or one of our own messages that the bridge handed
 * back undelivered (ZH_ZMSG_F_UNDELIVERED). Takes ownership of m. */
void zh_server_on_zmsg(struct zh_server *s, struct zh_zmsg *m);

/* Stop taking new connections and close idle keep-alive ones; requests in flight finish with
 * "Connection: close". With cancel, also end every request in flight: handlers get a cancel,
 * clients whose response has not started get 503, the others are closed. */
void zh_server_shutdown(struct zh_server *s, int cancel);

/* Requests in flight (sessions not yet answered in full). */
size_t zh_server_active(const struct zh_server *s);

/* Take the request limits that change live on SIGHUP from cfg (on the worker's thread): the head,
 * req and stream timeouts and the handler wait. Connections meet them at their next deadline. */
void zh_server_reload(struct zh_server *s, const struct zh_server_config *cfg);

/* Free the engine and close what is left. */
void zh_server_free(struct zh_server *s);

#endif
