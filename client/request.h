/* One outbound HTTP exchange for the client-role engine: a ZHTTP request packet becomes a transfer
 * on the worker's curl multi handle (client/outbound.h), redirects are followed hop by hop by this
 * module (never by libcurl), and the owner reads the response under its own flow control.
 *
 * Flow control in both directions goes through two bounded buffers owned here:
 *   - response body: the write callback appends what curl delivers; once the unread bytes reach
 *     the owner's window (zh_request_set_window) the next write callback pauses the transfer, so
 *     at most one curl chunk beyond the window is ever held (the "spill"). The owner takes bytes
 *     with zh_request_peek()/zh_request_consume() and widens the window as credits arrive.
 *   - request body (streamed uploads): zh_request_write_body() appends, the read callback hands
 *     the bytes to curl and pauses the upload when nothing is buffered.
 * Pauses are lifted from a deferred loop call, never inside a curl callback.
 *
 * Events reach the owner through one callback. ZH_REQ_EV_HEAD, ZH_REQ_EV_BODY and ZH_REQ_EV_SENT
 * are raised from inside curl callbacks: the owner may only record and defer its work there (it
 * must not call any zh_request_* function that changes state). ZH_REQ_EV_DONE is raised from the
 * loop after the transfer left the multi handle; the owner may free the request from it. */
#ifndef ZH_CLIENT_REQUEST_H
#define ZH_CLIENT_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/outbound.h"
#include "client/policy.h"
#include "client/resolver.h"
#include "shared/proto/zhttp.h"
#include "shared/rt/loop.h"

#define ZH_REQUEST_MAX_REDIRECTS 8

/* Per-engine settings shared by every request (copied; strings must outlive the context). */
struct zh_request_config {
    uint32_t connect_timeout_ms;    /* 0 = libcurl's default */
    int64_t conn_max_age_ms;        /* recycle kept-alive connections older than this; 0 = never */
    bool http2;                     /* offer HTTP/2 over TLS (default HTTP/1.1 only) */
    bool allow_ipv6;                /* connect to IPv6 addresses (Zurl `allow_ipv6`) */
    bool allow_ignore_policies;     /* honour per-request ignore-policies */
    const char *proxy;              /* NULL = none (environment proxies are always ignored) */
    const char *tls_ca_file;        /* extra trust anchors; NULL = system store only */
    const struct zh_policy *policy; /* shared, immutable; NULL = nothing is checked */
};

/* Per-worker context: the multi handle, the resolver, the settings and a pool of idle easy
 * handles.
 *
 * Every hop goes: host and port from curl_url() (connect-host/connect-port when given) -> the
 * policy on the uri host and connect-host -> the worker's resolver (c-ares; IP literals skip it)
 * -> the policy on every address -> the allowed ones handed to curl as a non-permanent
 * `+host:port:addr,...` CURLOPT_RESOLVE entry set on this transfer, so curl never resolves a name
 * itself -> CURLOPT_OPENSOCKETFUNCTION checks each address again before its socket exists (the
 * enforcement point; a denied one ends the request with policy-violation when no other address
 * could be tried). Per-request ignore-policies (when allowed) skips the checks and runs in the
 * worker's trusted connection pool (zh_outbound_set_pool): its connections are reused among such
 * transfers only. With a proxy only the names are checked: the proxy connects. */
struct zh_request_ctx;

/* Create a context on loop for the transfers of out. resolver (may be NULL: then only IP literals
 * can be reached) is borrowed and must outlive the context. */
struct zh_request_ctx *zh_request_ctx_new(struct zh_loop *loop, struct zh_outbound *out,
                                          struct zh_resolver *resolver,
                                          const struct zh_request_config *cfg);

/* Free the context (every request made with it must be freed first). */
void zh_request_ctx_free(struct zh_request_ctx *ctx);

/* Use policy from now on (SIGHUP reload, on the ctx's own thread): each check reads it afresh, so
 * requests in flight meet it at their next hop or address. The caller keeps the old policy alive
 * until every thread that used it has switched. */
void zh_request_ctx_set_policy(struct zh_request_ctx *ctx, const struct zh_policy *policy);

enum zh_request_event {
    ZH_REQ_EV_HEAD, /* the final response head is complete (see zh_request_fill_head) */
    ZH_REQ_EV_BODY, /* response body bytes were buffered (see zh_request_peek) */
    ZH_REQ_EV_SENT, /* request body bytes were handed to curl (see zh_request_take_sent) */
    ZH_REQ_EV_DONE, /* the exchange ended: zh_request_condition() is NULL on success */
};

struct zh_request;
typedef void zh_request_cb(struct zh_request *r, enum zh_request_event ev, void *data);

/* What the owner decides for a request, beside the packet's own fields. */
struct zh_request_opts {
    bool
        stream_upload; /* the packet had more:true: the body continues with zh_request_write_body */
    uint64_t max_size; /* response body limit (max-size-exceeded past it); UINT64_MAX = none */
};

/* Validate the request packet and prepare its transfer (not started). The packet is only read
 * during the call. Returns the request, or NULL with *cond set to the ZHTTP condition to answer
 * ("bad-request", "content-not-allowed", "policy-violation") and a log line written. */
struct zh_request *zh_request_new(struct zh_request_ctx *ctx, const struct zh_zhttp_packet *pkt,
                                  const struct zh_request_opts *opts, zh_request_cb *cb, void *data,
                                  const char **cond);

/* Start the transfer. A failure to start is reported as ZH_REQ_EV_DONE from the loop. */
void zh_request_start(struct zh_request *r);

/* Abort (if running) and free. Never call it from inside a curl callback (an event other than
 * ZH_REQ_EV_DONE). */
void zh_request_free(struct zh_request *r);

/* Response bytes the owner is ready to buffer: once the unread bytes reach it the transfer pauses
 * at the next write callback; widening it resumes the transfer from the loop. */
void zh_request_set_window(struct zh_request *r, uint64_t bytes);

/* The unread response body bytes (valid until the next zh_request_* call or loop iteration). */
struct zh_span zh_request_peek(const struct zh_request *r);

/* Mark n bytes of zh_request_peek() as taken. */
void zh_request_consume(struct zh_request *r, size_t n);

/* Append request body bytes of a streamed upload; more=false ends the body. Returns 0, or
 * ZH_E_PARSE when the upload already ended or was not streamed, or ZH_E_TOO_LARGE when the body
 * would exceed the requester's own Content-Length. */
int zh_request_write_body(struct zh_request *r, const void *p, size_t n, bool more);

/* True while a streamed upload accepts more body. */
bool zh_request_upload_open(const struct zh_request *r);

/* Request body bytes handed to curl since the last call (the owner grants them back as credits). */
uint64_t zh_request_take_sent(struct zh_request *r);

/* Set code, reason and headers of pkt from the final response head (valid while r is). */
void zh_request_fill_head(const struct zh_request *r, struct zh_zhttp_packet *pkt);

/* True once the final head is complete. */
bool zh_request_has_head(const struct zh_request *r);

/* True once the exchange has ended (ZH_REQ_EV_DONE was raised). */
bool zh_request_done(const struct zh_request *r);

/* After ZH_REQ_EV_DONE: NULL on success, else the ZHTTP condition of the failure. */
const char *zh_request_condition(const struct zh_request *r);

/* Where and why a failed request failed (for the session's one failure line): the stage ("dns",
 * "connect", "tls", "request", "response") and a reason (errno text, TLS reason, policy rule), or
 * NULL when nothing was noted. */
const char *zh_request_fail_stage(const struct zh_request *r);
const char *zh_request_fail_reason(const struct zh_request *r);

/* The current hop's host[:port] from its URL (no user info, path or query) in buf, or "-". */
const char *zh_request_host(const struct zh_request *r, char *buf, size_t size);

/* Response body bytes received so far (all of them, taken or not). */
uint64_t zh_request_received(const struct zh_request *r);

/* The current hop's URL and the method, for logs. */
const char *zh_request_url(const struct zh_request *r);
const char *zh_request_method(const struct zh_request *r);

#endif
