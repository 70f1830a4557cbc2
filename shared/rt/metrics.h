/* Per-worker counters for the Prometheus endpoint (--metrics).
 *
 * Each worker thread owns one struct zh_metrics and is its only writer: zh_metric_add() is a
 * relaxed load and store on the calling thread's struct (found through a thread-local pointer, so
 * the engines take no extra argument), no lock and no read-modify-write bus lock. A scraping
 * thread sums the structs of every thread with relaxed loads; a counter may be one event behind,
 * never torn. A thread without a struct (unit tests, the main thread) counts nothing. */
#ifndef ZH_RT_METRICS_H
#define ZH_RT_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/proto/buf.h"

/* X(ID, family, labels): the counters, in rendering order; rows of one family are adjacent. */
#define ZH_METRICS_COUNTERS(X)                                                                     \
    X(C_SESS_OPEN, "zhttpd_sessions_opened_total", "role=\"client\"")                              \
    X(S_SESS_OPEN, "zhttpd_sessions_opened_total", "role=\"server\"")                              \
    X(C_SESS_CLOSE, "zhttpd_sessions_closed_total", "role=\"client\"")                             \
    X(S_SESS_CLOSE, "zhttpd_sessions_closed_total", "role=\"server\"")                             \
    X(S_CONN_OPEN, "zhttpd_connections_opened_total", "role=\"server\"")                           \
    X(S_CONN_CLOSE, "zhttpd_connections_closed_total", "role=\"server\"")                          \
    X(C_RESP_1, "zhttpd_requests_total", "role=\"client\",outcome=\"response\",class=\"1xx\"")     \
    X(C_RESP_2, "zhttpd_requests_total", "role=\"client\",outcome=\"response\",class=\"2xx\"")     \
    X(C_RESP_3, "zhttpd_requests_total", "role=\"client\",outcome=\"response\",class=\"3xx\"")     \
    X(C_RESP_4, "zhttpd_requests_total", "role=\"client\",outcome=\"response\",class=\"4xx\"")     \
    X(C_RESP_5, "zhttpd_requests_total", "role=\"client\",outcome=\"response\",class=\"5xx\"")     \
    X(C_ERROR, "zhttpd_requests_total", "role=\"client\",outcome=\"error\",class=\"none\"")        \
    X(C_CANCEL, "zhttpd_requests_total", "role=\"client\",outcome=\"cancel\",class=\"none\"")      \
    X(S_RESP_1, "zhttpd_requests_total", "role=\"server\",outcome=\"response\",class=\"1xx\"")     \
    X(S_RESP_2, "zhttpd_requests_total", "role=\"server\",outcome=\"response\",class=\"2xx\"")     \
    X(S_RESP_3, "zhttpd_requests_total", "role=\"server\",outcome=\"response\",class=\"3xx\"")     \
    X(S_RESP_4, "zhttpd_requests_total", "role=\"server\",outcome=\"response\",class=\"4xx\"")     \
    X(S_RESP_5, "zhttpd_requests_total", "role=\"server\",outcome=\"response\",class=\"5xx\"")     \
    X(S_CANCEL, "zhttpd_requests_total", "role=\"server\",outcome=\"cancel\",class=\"none\"")      \
    X(C_COND_BAD_REQUEST, "zhttpd_errors_total", "role=\"client\",condition=\"bad-request\"")      \
    X(C_COND_POLICY, "zhttpd_errors_total", "role=\"client\",condition=\"policy-violation\"")      \
    X(C_COND_CONN_FAILED, "zhttpd_errors_total",                                                   \
      "role=\"client\",condition=\"remote-connection-failed\"")                                    \
    X(C_COND_CONN_TIMEOUT, "zhttpd_errors_total",                                                  \
      "role=\"client\",condition=\"connection-timeout\"")                                          \
    X(C_COND_TLS, "zhttpd_errors_total", "role=\"client\",condition=\"tls-error\"")                \
    X(C_COND_MAX_SIZE, "zhttpd_errors_total", "role=\"client\",condition=\"max-size-exceeded\"")   \
    X(C_COND_REDIRECTS, "zhttpd_errors_total", "role=\"client\",condition=\"too-many-redirects\"") \
    X(C_COND_SESSION_TIMEOUT, "zhttpd_errors_total",                                               \
      "role=\"client\",condition=\"session-timeout\"")                                             \
    X(C_COND_UNAVAILABLE, "zhttpd_errors_total",                                                   \
      "role=\"client\",condition=\"service-unavailable\"")                                         \
    X(C_COND_OTHER, "zhttpd_errors_total", "role=\"client\",condition=\"other\"")                  \
    X(C_DENY_NAME, "zhttpd_policy_denials_total", "reason=\"name\"")                               \
    X(C_DENY_ADDR, "zhttpd_policy_denials_total", "reason=\"address\"")                            \
    X(C_DNS_HIT, "zhttpd_dns_lookups_total", "result=\"cache_hit\"")                               \
    X(C_DNS_MISS, "zhttpd_dns_lookups_total", "result=\"cache_miss\"")                             \
    X(C_DNS_FAIL, "zhttpd_dns_failures_total", "")                                                 \
    X(S_TLS_FAIL, "zhttpd_tls_handshake_failures_total", "role=\"server\"")                        \
    X(C_TLS_FAIL, "zhttpd_tls_handshake_failures_total", "role=\"client\"")                        \
    X(C_BYTES_IN, "zhttpd_received_bytes_total", "role=\"client\"")                                \
    X(S_BYTES_IN, "zhttpd_received_bytes_total", "role=\"server\"")                                \
    X(C_BYTES_OUT, "zhttpd_sent_bytes_total", "role=\"client\"")                                   \
    X(S_BYTES_OUT, "zhttpd_sent_bytes_total", "role=\"server\"")                                   \
    X(S_WS_OPEN, "zhttpd_websocket_sessions_total", "role=\"server\"")                             \
    X(S_WS_MSG_IN, "zhttpd_websocket_messages_total", "role=\"server\",direction=\"from_client\"") \
    X(S_WS_MSG_OUT, "zhttpd_websocket_messages_total", "role=\"server\",direction=\"to_client\"")

enum zh_metric {
#define ZH_METRIC_ENUM(id, family, labels) ZH_M_##id,
    ZH_METRICS_COUNTERS(ZH_METRIC_ENUM)
#undef ZH_METRIC_ENUM
        ZH_M_COUNT
};

/* Request duration histograms: per role, time to the response head and to the end. */
enum zh_metric_hist {
    ZH_MH_C_FIRST_BYTE,
    ZH_MH_C_TOTAL,
    ZH_MH_S_FIRST_BYTE,
    ZH_MH_S_TOTAL,
    ZH_MH_COUNT
};
#define ZH_METRICS_BUCKETS 12 /* 5 ms .. 10 s, then +Inf */

struct zh_metrics {
    _Atomic uint64_t c[ZH_M_COUNT];
    _Atomic uint64_t h[ZH_MH_COUNT][ZH_METRICS_BUCKETS]; /* per bucket, not cumulative */
    _Atomic uint64_t h_sum_ms[ZH_MH_COUNT];
};

/* The calling thread's struct (NULL = count nothing). Set once by each worker thread. */
extern _Thread_local struct zh_metrics *zh_metrics_self;

static inline void zh_metric_add(enum zh_metric m, uint64_t n)
{
    struct zh_metrics *s = zh_metrics_self;
    if (s)
        atomic_store_explicit(&s->c[m], atomic_load_explicit(&s->c[m], memory_order_relaxed) + n,
                              memory_order_relaxed);
}

static inline void zh_metric_inc(enum zh_metric m)
{
    zh_metric_add(m, 1);
}

/* Count a response with HTTP status code (1xx..5xx; others are not counted). base is the 1xx
 * row of the role: ZH_M_C_RESP_1 or ZH_M_S_RESP_1. */
static inline void zh_metric_status(enum zh_metric base, int code)
{
    if (code >= 100 && code <= 599)
        zh_metric_inc((enum zh_metric)(base + (code / 100 - 1)));
}

/* Count one error of the client role by its ZHTTP condition. */
void zh_metric_condition(const char *condition);

/* Observe ms milliseconds in histogram h. */
void zh_metric_observe(enum zh_metric_hist h, uint64_t ms);

/* Extra gauges the renderer appends (already summed by the caller). */
struct zh_metrics_gauges {
    size_t chan_in;  /* messages waiting in the bridge -> worker channels */
    size_t chan_out; /* messages waiting in the worker -> bridge channels */
    size_t n_socks;  /* parked messages per socket kind: */
    const char *sock_name[16];
    uint64_t parked_now[16];
    uint64_t parked_total[16];
};

/* Render the text exposition format (version 0.0.4) of the sum of n structs into out. */
void zh_metrics_render(struct zh_metrics *const *per, size_t n, const struct zh_metrics_gauges *g,
                       struct zh_buf *out);

#endif
