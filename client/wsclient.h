/* Outbound WebSocket sessions (Zurl's WebSocket mode): a ZHTTP request with a ws:// or wss:// uri
 * on the client stream socket becomes a WebSocket client connection. The transport comes from
 * client/connect (policy on names and addresses, c-ares, connect-host/connect-port, TLS
 * verification, ignore-tls-errors: the same rules as HTTP requests), the framing from
 * shared/proto/ws and wsdeflate. The 101 goes to the handler as a data packet (code, reason,
 * headers, credits); any other answer as error/rejected with its code, headers and body
 * (redirects are not followed). Then origin frames <-> handler packets, one to one, in order:
 * text/binary payloads <-> data (content-type, more), close <-> close (code, reason),
 * ping/pong <-> ping/pong, credits both ways. Our frames are masked with fresh random keys.
 * See docs/internals/wsclient.md. */
#ifndef ZH_CLIENT_WSCLIENT_H
#define ZH_CLIENT_WSCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/policy.h"
#include "client/resolver.h"
#include "shared/proto/buf.h"
#include "shared/proto/zhttp.h"
#include "shared/rt/loop.h"

struct zh_wsc_config {
    const char *tls_ca_file;     /* extra trust anchors, or NULL */
    uint32_t connect_timeout_ms; /* 0 = 10 s */
    const char *proxy;           /* http://host[:port]: tunnel through it with CONNECT */
    bool allow_ignore_policies;  /* honour the request's ignore-policies */
    bool compression;            /* offer permessage-deflate ([General] ws_compression) */
    size_t buffer_size;          /* credits granted to the handler (its payload bytes in flight) */
    uint64_t max_message;        /* largest origin message (1009 past it; 0 = 1 MiB) */
};

struct zh_wsc_ctx;

/* Per-worker context. resolver and policy are borrowed (policy may be NULL). NULL with one line in
 * err when the TLS trust settings cannot be loaded. */
struct zh_wsc_ctx *zh_wsc_ctx_new(struct zh_loop *loop, struct zh_resolver *resolver,
                                  const struct zh_policy *policy, const struct zh_wsc_config *cfg,
                                  struct zh_buf *err);
void zh_wsc_ctx_free(struct zh_wsc_ctx *ctx);
/* SIGHUP: check against policy from now on (for connections not yet made). */
void zh_wsc_ctx_set_policy(struct zh_wsc_ctx *ctx, const struct zh_policy *policy);

/* What a session needs from its owner (the client engine). */
struct zh_wsc_ops {
    /* A fresh packet of type to fill and hand to send() (from, id, seq are the owner's). */
    struct zh_zhttp_packet *(*packet)(void *data, enum zh_zhttp_type type);
    void (*send)(void *data, struct zh_zhttp_packet *p);
    /* The handler's credits left for our data packets, and spending them. */
    int64_t (*credits)(void *data);
    void (*spend)(void *data, size_t n);
    /* The session is over (called from the loop, never inside zh_wsc_* calls): condition NULL =
     * ended cleanly (close handshake, or the rejection was sent); else the owner answers error
     * with it (before the 101 went out) or cancel (after), and logs. The owner then frees. */
    void (*done)(void *data, const char *condition);
};

struct zh_wsc;

/* Check the request packet and prepare the session (the upgrade request is built). Returns NULL
 * with *cond ("bad-request") when the uri or the headers are not acceptable (logged). */
struct zh_wsc *zh_wsc_start(struct zh_wsc_ctx *ctx, const struct zh_zhttp_packet *pkt,
                            const struct zh_wsc_ops *ops, void *data, const char **cond);

/* Start connecting (once the owner gave the session a max_open_requests slot). */
void zh_wsc_connect(struct zh_wsc *w);

/* A later packet of the handler's (data, close, ping, pong; credit and keep-alive just let more
 * origin data go). The session layer has applied seq and credits already. */
void zh_wsc_on_packet(struct zh_wsc *w, const struct zh_zhttp_packet *p);

/* Release everything at once (sockets, lookups); nothing more is called back. NULL is fine. */
void zh_wsc_free(struct zh_wsc *w);

/* Whether uri (the request's) is ws:// or wss:// (case-insensitive scheme). */
bool zh_wsc_is_ws_uri(struct zh_span uri);

#endif
