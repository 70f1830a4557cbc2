/* Outbound connections without curl: resolve + policy + non-blocking TCP connect + optional
 * OpenSSL client TLS, on one worker loop. API stable.
 *
 * The order for one connection:
 *   1. policy on the names (unless ignore_policies): the uri host and connect_host
 *      -> "policy-violation";
 *   2. resolve connect_host (or host) with the worker's resolver (IP literals skip DNS); a DNS
 *      failure -> "remote-connection-failed";
 *   3. every address is checked against the policy (unless ignore_policies); denied ones are
 *      skipped; if all are denied -> "policy-violation";
 *   4. the allowed addresses are tried in order, each with its own connect timeout; when all fail
 *      -> "connection-timeout" if every failure was a timeout, else "remote-connection-failed";
 *   5. with tls: handshake with SNI = host (omitted for IP literals), certificate chain verified
 *      against the system store plus tls_ca_file and the name checked with SSL_set1_host() against
 *      host — or connect_host when trust_connect_host — unless ignore_tls_errors; the handshake
 *      has the same timeout as one connect ("connection-timeout"); any TLS failure -> "tls-error".
 * The completion callback runs exactly once, from the loop (never inside zh_connect_start()),
 * unless zh_connect_cancel() is called first. */
#ifndef ZH_CLIENT_CONNECT_H
#define ZH_CLIENT_CONNECT_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

#include "client/policy.h"
#include "client/resolver.h"
#include "shared/proto/buf.h"
#include "shared/rt/loop.h"
#include "shared/rt/stream.h"

/* The ZHTTP conditions this module reports (ZHTTP.md §6). */
#define ZH_COND_POLICY_VIOLATION   "policy-violation"
#define ZH_COND_CONNECTION_FAILED  "remote-connection-failed"
#define ZH_COND_CONNECTION_TIMEOUT "connection-timeout"
#define ZH_COND_TLS_ERROR          "tls-error"

struct zh_connect_ctx_config {
    const char *tls_ca_file;     /* extra PEM trust anchors (added to the system store), or NULL */
    uint32_t connect_timeout_ms; /* per address and for the TLS handshake; 0 = default 10000 */
};

/* Per-worker shared state: loop, resolver, policy and one client SSL_CTX. */
struct zh_connect_ctx;

/* Create the context. resolver and policy are borrowed and must outlive it (policy may be NULL:
 * then nothing is checked). Returns NULL with one line in err when tls_ca_file cannot be loaded
 * or OpenSSL fails. */
struct zh_connect_ctx *zh_connect_ctx_new(struct zh_loop *loop, struct zh_resolver *resolver,
                                          const struct zh_policy *policy,
                                          const struct zh_connect_ctx_config *cfg,
                                          struct zh_buf *err);

/* Free the context. Connections still running are cancelled without callbacks, and cancelled ones
 * whose memory is still waiting for the loop are freed here. Safe from inside a zh_connect_cb. */
void zh_connect_ctx_free(struct zh_connect_ctx *ctx);

/* Check against policy from now on (SIGHUP reload; connections already resolving see it at their
 * next address). The caller keeps the old one alive until every thread switched. */
void zh_connect_ctx_set_policy(struct zh_connect_ctx *ctx, const struct zh_policy *policy);

/* The context's client SSL_CTX (for callers that need to share its trust settings). */
SSL_CTX *zh_connect_ctx_ssl_ctx(struct zh_connect_ctx *ctx);

struct zh_connect_params {
    const char *host;         /* uri host: SNI, certificate name, name policy (normalised, may be
                                 "[v6]") */
    uint16_t port;            /* uri port */
    const char *connect_host; /* connect here instead (NULL = host); policy-checked too */
    uint16_t connect_port;    /* 0 = port */
    bool tls;
    bool ignore_tls_errors;    /* no chain or name verification */
    bool trust_connect_host;   /* verify the certificate name against connect_host */
    bool ignore_policies;      /* skip every policy check (the caller decided it may) */
    uint32_t timeout_ms;       /* per address / handshake; 0 = the context's */
    const unsigned char *alpn; /* optional ALPN protocol list in wire format, or NULL */
    unsigned alpn_len;
    const char *proxy_host; /* tunnel through this HTTP proxy (CONNECT), or NULL: the names above
                               are policy-checked, the proxy's addresses are not; TLS (SNI,
                               verification) runs inside the tunnel */
    uint16_t proxy_port;
};

/* The outcome. On success (status 0) stream is the connected transport (shared/rt/stream): a
 * non-blocking socket and, with tls, the OpenSSL session whose handshake has finished on it; it now
 * belongs to the callee (copy the struct, zh_stream_close() it when done; a TLS stream's SSL app
 * data points at the stream, so re-attach after moving it: see zh_connect_take()). On failure
 * stream.fd is -1 (nothing to close), condition one of the ZH_COND_* strings and detail a
 * human-readable reason for the log (valid during the callback only). peer is the address
 * connected to or last tried. */
struct zh_connect_result {
    int status; /* 0, or a negative errno-style code */
    const char *condition;
    const char *detail;
    struct zh_stream stream;
    union zh_sockaddr peer;
};

/* Move the result's stream into dst (owned by the caller from now on). */
void zh_connect_take(struct zh_connect_result *res, struct zh_stream *dst);

struct zh_connect;

/* The request handle is invalid once the callback has started. */
typedef void zh_connect_cb(struct zh_connect *cn, struct zh_connect_result *res, void *data);

/* Start a connection; the strings in params are copied. Returns the handle (never NULL; even
 * immediate failures are reported through cb from the loop). */
struct zh_connect *zh_connect_start(struct zh_connect_ctx *ctx,
                                    const struct zh_connect_params *params, zh_connect_cb *cb,
                                    void *data);

/* Abort a connection whose callback has not started: the socket, SSL and DNS lookup are released
 * at once and cb will not run. The handle's memory goes in the loop's next pending phase (an epoll
 * event for it may still be queued), or in zh_connect_ctx_free() if the loop never runs again. */
void zh_connect_cancel(struct zh_connect *cn);

#endif
