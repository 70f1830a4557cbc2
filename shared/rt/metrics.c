#include "shared/rt/metrics.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

_Thread_local struct zh_metrics *zh_metrics_self;

static const struct {
    const char *family;
    const char *labels;
} rows[ZH_M_COUNT] = {
#define ZH_METRIC_ROW(id, family, labels) [ZH_M_##id] = {family, labels},
    ZH_METRICS_COUNTERS(ZH_METRIC_ROW)
#undef ZH_METRIC_ROW
};

static const struct {
    const char *family;
    const char *help;
} families[] = {
    {"zhttpd_sessions_opened_total", "ZHTTP sessions opened (client: requests taken from "
                                     "requesters; server: sessions with handlers)"},
    {"zhttpd_sessions_closed_total", "ZHTTP sessions ended"},
    {"zhttpd_connections_opened_total", "HTTP connections accepted"},
    {"zhttpd_connections_closed_total", "HTTP connections closed"},
    {"zhttpd_requests_total", "Requests ended, by outcome (response with its status class, "
                              "error condition, cancel)"},
    {"zhttpd_errors_total", "Error packets sent to requesters, by ZHTTP condition"},
    {"zhttpd_policy_denials_total", "Outbound requests refused by the allow/deny policy, by "
                                    "what was denied (a name or an address)"},
    {"zhttpd_dns_lookups_total", "Outbound name lookups, answered from the cache or not"},
    {"zhttpd_dns_failures_total", "Outbound name lookups that failed"},
    {"zhttpd_tls_handshake_failures_total", "TLS handshakes that failed"},
    {"zhttpd_received_bytes_total", "HTTP body bytes received (client: from origins; server: "
                                    "from clients)"},
    {"zhttpd_websocket_sessions_total", "WebSocket sessions accepted (101 written)"},
    {"zhttpd_websocket_messages_total", "WebSocket data messages relayed, by direction"},
    {"zhttpd_sent_bytes_total", "HTTP body bytes sent (client: to origins; server: to "
                                "clients)"},
};

static const char *family_help(const char *family)
{
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
        if (strcmp(families[i].family, family) == 0)
            return families[i].help;
    return "";
}

static const uint64_t bucket_ms[ZH_METRICS_BUCKETS - 1] = {5,   10,   25,   50,   100,  250,
                                                           500, 1000, 2500, 5000, 10000};

void zh_metric_condition(const char *cond)
{
    static const struct {
        const char *name;
        enum zh_metric m;
    } map[] = {
        {"bad-request", ZH_M_C_COND_BAD_REQUEST},
        {"policy-violation", ZH_M_C_COND_POLICY},
        {"remote-connection-failed", ZH_M_C_COND_CONN_FAILED},
        {"connection-timeout", ZH_M_C_COND_CONN_TIMEOUT},
        {"tls-error", ZH_M_C_COND_TLS},
        {"max-size-exceeded", ZH_M_C_COND_MAX_SIZE},
        {"too-many-redirects", ZH_M_C_COND_REDIRECTS},
        {"session-timeout", ZH_M_C_COND_SESSION_TIMEOUT},
        {"service-unavailable", ZH_M_C_COND_UNAVAILABLE},
    };
    if (!zh_metrics_self)
        return;
    for (size_t i = 0; cond && i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(map[i].name, cond) == 0) {
            zh_metric_inc(map[i].m);
            if (map[i].m == ZH_M_C_COND_TLS)
                zh_metric_inc(ZH_M_C_TLS_FAIL); /* a handshake or verification that failed */
            return;
        }
    }
    zh_metric_inc(ZH_M_C_COND_OTHER);
}

void zh_metric_observe(enum zh_metric_hist h, uint64_t ms)
{
    struct zh_metrics *s = zh_metrics_self;
    if (!s)
        return;
    size_t b = 0;
    while (b < ZH_METRICS_BUCKETS - 1 && ms > bucket_ms[b])
        b++;
    atomic_store_explicit(&s->h[h][b], atomic_load_explicit(&s->h[h][b], memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&s->h_sum_ms[h],
                          atomic_load_explicit(&s->h_sum_ms[h], memory_order_relaxed) + ms,
                          memory_order_relaxed);
}

static uint64_t sum_counter(struct zh_metrics *const *per, size_t n, enum zh_metric m)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v += atomic_load_explicit(&per[i]->c[m], memory_order_relaxed);
    return v;
}

static void gauge(struct zh_buf *out, const char *name, const char *help, const char *labels,
                  uint64_t v, bool head)
{
    if (head)
        zh_buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
    zh_buf_printf(out, "%s%s%s%s %llu\n", name, *labels ? "{" : "", labels, *labels ? "}" : "",
                  (unsigned long long)v);
}

void zh_metrics_render(struct zh_metrics *const *per, size_t n, const struct zh_metrics_gauges *g,
                       struct zh_buf *out)
{
    uint64_t v[ZH_M_COUNT];
    for (int m = 0; m < ZH_M_COUNT; m++)
        v[m] = sum_counter(per, n, (enum zh_metric)m);
    const char *last = NULL;
    for (int m = 0; m < ZH_M_COUNT; m++) {
        if (!last || strcmp(last, rows[m].family) != 0) {
            last = rows[m].family;
            zh_buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", last, family_help(last), last);
        }
        zh_buf_printf(out, "%s%s%s%s %llu\n", rows[m].family, *rows[m].labels ? "{" : "",
                      rows[m].labels, *rows[m].labels ? "}" : "", (unsigned long long)v[m]);
    }
    /* gauges derived from the counters (a closed one was opened first on the same thread) */
    gauge(out, "zhttpd_sessions_open", "ZHTTP sessions open now", "role=\"client\"",
          v[ZH_M_C_SESS_OPEN] - v[ZH_M_C_SESS_CLOSE], true);
    gauge(out, "zhttpd_sessions_open", "", "role=\"server\"",
          v[ZH_M_S_SESS_OPEN] - v[ZH_M_S_SESS_CLOSE], false);
    gauge(out, "zhttpd_connections_open", "HTTP connections open now", "role=\"server\"",
          v[ZH_M_S_CONN_OPEN] - v[ZH_M_S_CONN_CLOSE], true);
    if (g) {
        gauge(out, "zhttpd_channel_depth",
              "Messages waiting in the channels between the ZeroMQ bridge and the workers",
              "direction=\"to_workers\"", g->chan_in, true);
        gauge(out, "zhttpd_channel_depth", "", "direction=\"to_bridge\"", g->chan_out, false);
        char labels[64];
        for (size_t k = 0; k < g->n_socks; k++) {
            snprintf(labels, sizeof(labels), "socket=\"%s\"", g->sock_name[k]);
            gauge(out, "zhttpd_parked_messages",
                  "Messages parked in the ZeroMQ bridge now (a peer's queue was full, or a ROUTER "
                  "peer not connected yet), by socket",
                  labels, g->parked_now[k], k == 0);
        }
        for (size_t k = 0; k < g->n_socks; k++) {
            if (k == 0)
                zh_buf_puts(out,
                            "# HELP zhttpd_parked_messages_total Messages parked in the ZeroMQ "
                            "bridge since start, by socket\n"
                            "# TYPE zhttpd_parked_messages_total counter\n");
            zh_buf_printf(out, "zhttpd_parked_messages_total{socket=\"%s\"} %llu\n",
                          g->sock_name[k], (unsigned long long)g->parked_total[k]);
        }
    }
    static const struct {
        const char *family;
        const char *help;
        const char *labels;
    } hists[ZH_MH_COUNT] = {
        [ZH_MH_C_FIRST_BYTE] = {"zhttpd_request_first_byte_seconds",
                                "Time from the request to the response head", "role=\"client\""},
        [ZH_MH_C_TOTAL] = {"zhttpd_request_duration_seconds",
                           "Time from the request to the end of the response", "role=\"client\""},
        [ZH_MH_S_FIRST_BYTE] = {"zhttpd_request_first_byte_seconds", "", "role=\"server\""},
        [ZH_MH_S_TOTAL] = {"zhttpd_request_duration_seconds", "", "role=\"server\""},
    };
    /* families in order: first_byte (client, server), then duration (client, server) */
    static const enum zh_metric_hist order[] = {ZH_MH_C_FIRST_BYTE, ZH_MH_S_FIRST_BYTE,
                                                ZH_MH_C_TOTAL, ZH_MH_S_TOTAL};
    for (size_t k = 0; k < ZH_MH_COUNT; k++) {
        enum zh_metric_hist h = order[k];
        if (k % 2 == 0)
            zh_buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", hists[h].family,
                          hists[order[k]].help[0] ? hists[order[k]].help : "", hists[h].family);
        uint64_t cum = 0, sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += atomic_load_explicit(&per[i]->h_sum_ms[h], memory_order_relaxed);
        for (int b = 0; b < ZH_METRICS_BUCKETS; b++) {
            for (size_t i = 0; i < n; i++)
                cum += atomic_load_explicit(&per[i]->h[h][b], memory_order_relaxed);
            if (b < ZH_METRICS_BUCKETS - 1)
                zh_buf_printf(out, "%s_bucket{%s,le=\"%g\"} %llu\n", hists[h].family,
                              hists[h].labels, (double)bucket_ms[b] / 1000.0,
                              (unsigned long long)cum);
            else
                zh_buf_printf(out, "%s_bucket{%s,le=\"+Inf\"} %llu\n", hists[h].family,
                              hists[h].labels, (unsigned long long)cum);
        }
        zh_buf_printf(out, "%s_sum{%s} %.3f\n%s_count{%s} %llu\n", hists[h].family, hists[h].labels,
                      (double)sum / 1000.0, hists[h].family, hists[h].labels,
                      (unsigned long long)cum);
    }
}
