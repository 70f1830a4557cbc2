/* Asynchronous DNS for one worker loop: c-ares 1.18 driven by the loop, plus a TTL cache.
 * API stable.
 *
 * c-ares runs on the worker's zh_loop (ARES_OPT_SOCK_STATE_CB -> io watchers, ares_process_fd()
 * on events, one loop timer armed from ares_timeout()). Lookups use ares_getaddrinfo(): A only,
 * or A and AAAA when the resolver is created with ipv6 (the config's allow_ipv6 — there is no
 * point asking for addresses the policy would deny). The hosts file is consulted first, then DNS.
 * With explicit servers the resolv.conf search list is not used (names from URLs are taken as
 * given); without servers the system's /etc/resolv.conf applies in full.
 *
 * Answers are cached per resolver (one per worker: no locks) by name, for the record TTL clamped
 * to [ttl_min_s, ttl_max_s]; NXDOMAIN / no-data answers are cached for negative_ttl_s; timeouts
 * and server failures are not cached. The cache holds at most cache_max names and drops the
 * least recently used one when full. Concurrent lookups of one name share one DNS query. At most
 * ZH_RESOLVER_MAX_ADDRS addresses are kept per name (the rest of a long answer is dropped).
 *
 * IP literals ("192.0.2.1", "::1", "[::1]") are answered without DNS. Every callback runs from the
 * loop's deferred phase — never from inside zh_resolver_resolve() and never from inside a c-ares
 * callback — so a callback may start new lookups, cancel others, or free the resolver. */
#ifndef ZH_CLIENT_RESOLVER_H
#define ZH_CLIENT_RESOLVER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "shared/proto/buf.h"
#include "shared/rt/loop.h"

#define ZH_RESOLVER_MAX_ADDRS 16

/* An IPv4 or IPv6 socket address; sa.sa_family says which. Port 0 in resolver answers. */
union zh_sockaddr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

/* The length to pass to connect()/bind() for a, by its family (0 for an unknown family). */
socklen_t zh_sockaddr_len(const union zh_sockaddr *a);

/* Format a as text without port ("192.0.2.1", "::1") into out (outlen >= INET6_ADDRSTRLEN).
 * Returns out. */
char *zh_sockaddr_str(const union zh_sockaddr *a, char *out, size_t outlen);

struct zh_resolver_config {
    const char *const *servers; /* server_count entries "IP", "IP:port", "[IPv6]:port";
                                   none = the system's resolv.conf */
    size_t server_count;
    bool ipv6;               /* also ask AAAA (pass the config's allow_ipv6) */
    unsigned cache_max;      /* cached names, 0 = default 1024 */
    uint32_t ttl_min_s;      /* 0 = default 1 */
    uint32_t ttl_max_s;      /* 0 = default 300 */
    uint32_t negative_ttl_s; /* NXDOMAIN / no data, 0 = default 5; cached no longer than that */
    uint32_t timeout_ms;     /* first try per server (c-ares doubles it per round), 0 = 2000 */
    unsigned tries;          /* rounds over the servers, 0 = default 2 */
};

struct zh_resolver;
struct zh_resolve_req;

/* The result of one lookup. status is 0 with count >= 1 addresses (valid only during the call;
 * in c-ares's RFC 6724 order), or a negative code with count 0:
 *   -ENOENT        NXDOMAIN (name does not exist)
 *   -ENODATA       the name exists but has no address of the families asked for
 *   -ETIMEDOUT     no answer from any server in time
 *   -ECONNREFUSED  the servers refused or failed (REFUSED, SERVFAIL, connection refused)
 *   -EBADMSG       a malformed or unusable answer
 *   -EINVAL        not a valid host name
 *   -ENOMEM / -EIO other resolver failures
 * The request handle is invalid once the callback has started. */
typedef void zh_resolve_cb(struct zh_resolve_req *req, int status, const union zh_sockaddr *addrs,
                           size_t count, void *data);

/* Create a resolver on loop (a thread's own loop; not thread-safe). Calls ares_library_init() on
 * first use in the process (reference-counted; see zh_resolver_library_cleanup()). Returns NULL
 * with one line in err when the servers are malformed or c-ares cannot start. */
struct zh_resolver *zh_resolver_new(struct zh_loop *loop, const struct zh_resolver_config *cfg,
                                    struct zh_buf *err);

/* Free the resolver: pending lookups end without callbacks, every watcher and timer is stopped.
 * Safe to call from inside a zh_resolve_cb (the memory is released after that callback returns),
 * from a deferred call or outside zh_loop_run(); not from another object's io callback (loop.h:
 * an epoll event for one of its sockets may still be queued). The loop must still exist. */
void zh_resolver_free(struct zh_resolver *r);

/* Resolve host (a name, or an IP literal; case-insensitive, a trailing dot is ignored). cb runs
 * exactly once from the loop unless zh_resolve_cancel() is called first. Returns the handle; never
 * NULL (an invalid name is reported through cb with -EINVAL). */
struct zh_resolve_req *zh_resolver_resolve(struct zh_resolver *r, const char *host,
                                           zh_resolve_cb *cb, void *data);

/* Cancel a lookup whose callback has not started: cb will not run and the handle is freed. The
 * DNS query itself may continue so its answer still fills the cache. */
void zh_resolve_cancel(struct zh_resolve_req *req);

/* Statistics for tests and metrics. */
struct zh_resolver_stats {
    uint64_t queries;      /* ares_getaddrinfo() calls (DNS or hosts file) */
    uint64_t cache_hits;   /* lookups answered from the cache (positive or negative) */
    uint64_t cache_evicts; /* names dropped because the cache was full */
    unsigned cache_size;   /* names cached now */
    unsigned pending;      /* lookups waiting for c-ares */
};
void zh_resolver_stats(const struct zh_resolver *r, struct zh_resolver_stats *out);

/* Drop every cached name. */
void zh_resolver_flush(struct zh_resolver *r);

/* Release c-ares's global state once every resolver of the process is freed (ares_library_cleanup
 * when the last reference goes). Call once at process exit / test end. */
void zh_resolver_library_cleanup(void);

/* A short text for a zh_resolve_cb status ("NXDOMAIN", "timeout", ...). */
const char *zh_resolver_strerror(int status);

#endif
