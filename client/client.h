/* The client role on one worker (Zurl's job): ZHTTP requests from requesters become outbound HTTP
 * transfers on the worker's curl multi handle, and the responses go back as ZHTTP.
 *
 * The bridge hands this engine every message that arrived on a client-role socket and was routed to
 * this worker (by hash(from, id)); the engine answers through the worker's zh_zport. Stream
 * sessions are keyed by (requester `from`, id) and follow shared/proto/session.h; req-mode requests
 * get exactly one answer in their envelope. Packets may be `T` (tnetstring) or Zurl's legacy `J`
 * (JSON); each is answered in its own format. See docs/internals/client-engine.md. */
#ifndef ZH_CLIENT_CLIENT_H
#define ZH_CLIENT_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "client/request.h"
#include "client/slots.h"
#include "shared/proto/session.h"
#include "shared/rt/loop.h"
#include "shared/rt/zbridge.h"
#include "shared/rt/zmsg.h"

struct zh_client_config {
    const char *instance_id;         /* our `from` */
    unsigned workers;                /* worker count: multi-id packets name sessions of others */
    struct zh_session_params params; /* keep-alive / expiry */
    uint64_t max_response_size;      /* non-stream responses without max-size (1 MiB) */
    uint32_t timeout_ms;             /* HTTP inactivity limit (Zurl `timeout`), 0 = none */
    struct zh_slots *slots;          /* max_open_requests, shared by every worker; NULL = none */
    size_t buffer_size;              /* credits granted for a streamed request body (200000) */
    bool ws_compression;             /* offer permessage-deflate on ws:// sessions */
    struct zh_request_config http;   /* outbound HTTP settings (connect timeout, TLS, policy...) */
    struct zh_resolver_config dns;   /* the worker's resolver (dns_servers, allow_ipv6) */
};

struct zh_client;

/* Create the engine for one worker. cfg is copied (its strings must outlive the engine). */
struct zh_client *zh_client_new(struct zh_loop *loop, struct zh_zport *port, unsigned worker,
                                const struct zh_client_config *cfg);

/* Handle one message from a client-role socket. Takes ownership of m. */
void zh_client_on_zmsg(struct zh_client *c, struct zh_zmsg *m);

/* Stop taking new requests. With cancel, also abort every request in flight (answering each as the
 * protocol says); otherwise let them finish. */
void zh_client_shutdown(struct zh_client *c, int cancel);

/* Requests in flight (running or waiting for a slot). */
size_t zh_client_active(const struct zh_client *c);

/* Take the settings that change live on SIGHUP (on the worker's thread): the access policy (the
 * caller frees the old one once every worker has switched) and the inactivity timeout. */
void zh_client_reload(struct zh_client *c, const struct zh_policy *policy, uint32_t timeout_ms);

/* Free the engine (after zh_client_shutdown(c, 1)). */
void zh_client_free(struct zh_client *c);

#endif
