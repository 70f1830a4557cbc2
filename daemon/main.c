/* zhttpd: command line, wiring of the threads, signals and clean shutdown.
 *
 * Start-up order: config -> log -> bridge (binds every ZeroMQ endpoint) -> workers -> listener
 * (binds every --listen port) -> threads start -> "ready". Any failure before "ready" is a startup
 * error with a message and exit code 1. Shutdown (SIGTERM/SIGINT) runs the same steps backwards, as
 * DESIGN.md says: stop accepting, drain for --shutdown-timeout, cancel the rest, flush the bridge,
 * free everything. */
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/scrape.h"
#include "daemon/worker.h"
#include "server/listener.h"
#include "server/tls.h"
#include "shared/proto/err.h"
#include "shared/proto/mem.h"
#include "shared/rt/accesslog.h"
#include "shared/rt/log.h"

#define BRIDGE_LINGER_MS 500
#define TLS_RELOAD_MS    1000 /* how often the listener thread looks for changed identities */

struct daemon {
    struct zh_config cfg;
    struct zh_config_strlist specs[ZH_ZS_COUNT]; /* expanded endpoints per socket */
    struct zh_zbridge *bridge;
    struct zh_worker **workers;
    unsigned n_workers;
    struct zh_server **servers;
    struct zh_listen_spec *listen;
    struct zh_listener *listener;
    struct zh_client_config client_cfg;
    struct zh_server_config server_cfg;
    struct zh_server_limits limits;  /* --stream-maxconn / --req-maxconn, shared by the workers */
    struct zh_tls_store *tls;        /* --tls-identities-dir, when a listener has tls */
    struct zh_policy *client_policy; /* outbound access policy, shared by the workers */
    struct zh_slots *client_slots;   /* max_open_requests, shared by the workers (NULL = none) */
    struct zh_metrics **metrics;     /* per worker, when --metrics is on */
    struct zh_scrape *scrape;
    int argc; /* the command line, parsed again on SIGHUP */
    char **argv;
    unsigned reload_seq;
    struct retired *retired; /* what a worker may still read after a reload timed out */
};

/* A reload's hand-over and the policy it replaced, kept until every worker took the reload. */
struct retired {
    struct zh_worker_reload r;
    struct zh_server_config sc;
    struct zh_policy *old_policy;
    struct retired *next;
};

/* BASE-suffix for ipc/inproc bases; tcp://host:P+offset for tcp bases. */
static int expand_base(const char *base, const char *suffix, int offset,
                       struct zh_config_strlist *out, struct zh_buf *err)
{
    struct zh_buf b = {0};
    if (strncmp(base, "tcp://", 6) == 0) {
        const char *colon = strrchr(base + 6, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : -1;
        if (!colon || !end || *end != '\0' || port < 1 || port + offset > 65535) {
            zh_buf_printf(err, "'%s': a tcp base needs a port P with P+2 <= 65535", base);
            return -1;
        }
        zh_buf_append(&b, base, (size_t)(colon - base));
        zh_buf_printf(&b, ":%ld", port + offset);
    } else {
        zh_buf_printf(&b, "%s%s", base, suffix);
    }
    zh_config_strlist_add(out, zh_buf_cstr(&b));
    zh_buf_free(&b);
    return 0;
}

static void add_list(struct zh_config_strlist *out, const struct zh_config_strlist *in)
{
    for (size_t i = 0; i < in->count; i++)
        zh_config_strlist_add(out, in->items[i]);
}

/* Every ZeroMQ endpoint per socket, with the zserver/zclient bases expanded. */
static int expand_specs(struct daemon *d, struct zh_buf *err)
{
    const struct zh_config *cfg = &d->cfg;
    const struct zh_config_client *cc = &cfg->client;
    const struct zh_config_server *sc = &cfg->server;
    bool client = zh_config_client_enabled(cfg);
    bool server = zh_config_server_enabled(cfg);
    if (client) {
        if (cc->in_spec)
            zh_config_strlist_add(&d->specs[ZH_ZS_C_IN], cc->in_spec);
        if (cc->in_stream_spec)
            zh_config_strlist_add(&d->specs[ZH_ZS_C_IN_STREAM], cc->in_stream_spec);
        if (cc->out_spec)
            zh_config_strlist_add(&d->specs[ZH_ZS_C_OUT], cc->out_spec);
        if (cc->in_req_spec)
            zh_config_strlist_add(&d->specs[ZH_ZS_C_REQ], cc->in_req_spec);
        for (size_t i = 0; i < cc->zserver_stream.count; i++) {
            const char *base = cc->zserver_stream.items[i];
            if (expand_base(base, "-in", 0, &d->specs[ZH_ZS_C_IN], err) < 0 ||
                expand_base(base, "-in-stream", 1, &d->specs[ZH_ZS_C_IN_STREAM], err) < 0 ||
                expand_base(base, "-out", 2, &d->specs[ZH_ZS_C_OUT], err) < 0)
                return -1;
        }
        add_list(&d->specs[ZH_ZS_C_REQ], &cc->zserver_req);
    }
    if (server) {
        for (size_t i = 0; i < sc->zclient_stream.count; i++) {
            const char *base = sc->zclient_stream.items[i];
            if (expand_base(base, "-out", 0, &d->specs[ZH_ZS_S_OUT], err) < 0 ||
                expand_base(base, "-out-stream", 1, &d->specs[ZH_ZS_S_OUT_STREAM], err) < 0 ||
                expand_base(base, "-in", 2, &d->specs[ZH_ZS_S_IN], err) < 0)
                return -1;
        }
        add_list(&d->specs[ZH_ZS_S_REQ], &sc->zclient_req);
    }
    return 0;
}

static int build_bridge(struct daemon *d, struct zh_buf *err)
{
    const struct zh_config *cfg = &d->cfg;
    const struct zh_config_client *cc = &cfg->client;
    const struct zh_config_server *sc = &cfg->server;
    struct zh_zbridge_config bc;
    memset(&bc, 0, sizeof(bc));
    if (expand_specs(d, err) < 0)
        return -1;
    for (int s = 0; s < ZH_ZS_COUNT; s++) {
        bc.socks[s].specs = (const char *const *)d->specs[s].items;
        bc.socks[s].n_specs = d->specs[s].count;
        bc.socks[s].connect = s < ZH_ZS_S_OUT ? cc->zserver_connect : sc->zclient_connect;
    }
    bc.instance_id = cfg->id;
    bc.workers = d->n_workers;
    bc.ipc_file_mode = cc->ipc_file_mode >= 0 ? cc->ipc_file_mode : sc->ipc_file_mode;
    bc.in_hwm = cc->in_hwm;
    bc.out_hwm = cc->out_hwm;
    d->bridge = zh_zbridge_new(&bc, err);
    return d->bridge ? 0 : -1;
}

static uint32_t clamp_ms(int64_t ms)
{
    return ms < 0 ? 0 : ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

static void build_engine_configs(struct daemon *d)
{
    const struct zh_config *cfg = &d->cfg;
    struct zh_client_config *c = &d->client_cfg;
    const struct zh_config_client *cc = &cfg->client;
    c->instance_id = cfg->id;
    c->workers = d->n_workers;
    c->params.keepalive_ms = (uint32_t)cc->keepalive_interval_ms;
    c->params.expiry_ms = (uint32_t)cc->session_expiry_ms;
    c->max_response_size = 1024 * 1024;
    c->timeout_ms = (uint32_t)cc->timeout_ms;
    c->buffer_size = cc->buffer_size;
    c->ws_compression = cc->ws_compression;
    c->slots = NULL; /* build_client_slots */
    c->http.connect_timeout_ms = (uint32_t)cc->connect_timeout_ms;
    c->http.conn_max_age_ms = cc->connection_max_time_ms;
    c->http.http2 = cc->http2;
    c->http.allow_ipv6 = cc->allow_ipv6;
    c->http.allow_ignore_policies = cc->allow_ignore_policies;
    c->http.proxy = cc->proxy;
    c->http.tls_ca_file = cc->tls_ca_file;
    c->dns.servers = (const char *const *)cc->dns_servers.items;
    c->dns.server_count = cc->dns_servers.count;
    c->dns.ipv6 = cc->allow_ipv6;
    struct zh_server_config *s = &d->server_cfg;
    s->instance_id = cfg->id;
    s->params.keepalive_ms = (uint32_t)cfg->server.keepalive_interval_ms;
    s->params.expiry_ms = (uint32_t)cfg->server.session_expiry_ms;
    s->buffer_size = cfg->server.buffer_size;
    s->max_header_size = cfg->server.max_header_size;
    s->body_buffer_size = cfg->server.body_buffer_size;
    s->head_timeout_ms = clamp_ms(cfg->server.head_timeout_ms);
    s->stream_timeout_ms = clamp_ms(cfg->server.stream_timeout_ms);
    s->req_timeout_ms = clamp_ms(cfg->server.req_timeout_ms);
    s->handler_wait_ms = clamp_ms(cfg->server.handler_wait_ms);
    s->ws_max_message = cfg->server.ws_max_message;
    s->ws_close_timeout_ms = clamp_ms(cfg->server.ws_close_timeout_ms);
    s->ws_auto_pong = cfg->server.ws_auto_pong;
    s->ws_compression = cfg->server.compression;
    s->ws_messages_max = (unsigned)cfg->server.messages_max;
    s->ws_ping_interval_ms = clamp_ms(cfg->server.ws_ping_interval_ms);
    zh_server_limits_init(&d->limits, (unsigned)cfg->server.stream_maxconn,
                          (unsigned)cfg->server.req_maxconn);
    zh_server_limits_set_tls_handshakes(&d->limits, (unsigned)cfg->server.max_tls_handshakes);
    s->limits = &d->limits;
}

/* Zurl's max_open_requests is one limit for the whole process: slots shared by the workers. */
static int build_client_slots(struct daemon *d, struct zh_buf *err)
{
    if (!zh_config_client_enabled(&d->cfg) || d->cfg.client.max_open_requests <= 0)
        return 0;
    d->client_slots = zh_slots_new((unsigned)d->cfg.client.max_open_requests, d->n_workers);
    if (!d->client_slots) {
        zh_buf_printf(err, "max_open_requests: %s", strerror(errno));
        return -1;
    }
    d->client_cfg.slots = d->client_slots;
    return 0;
}

/* The outbound access policy of the client role (allow/deny/defpolicy), shared read-only by the
 * workers. A malformed pattern is a startup error. */
static int build_client_policy(struct daemon *d, struct zh_buf *err)
{
    const struct zh_config_client *cc = &d->cfg.client;
    if (!zh_config_client_enabled(&d->cfg))
        return 0;
    struct zh_policy_config pc = {
        .defpolicy = (enum zh_policy_default)cc->defpolicy,
        .allow = (const char *const *)cc->allow.items,
        .allow_count = cc->allow.count,
        .deny = (const char *const *)cc->deny.items,
        .deny_count = cc->deny.count,
        .allow_ipv6 = cc->allow_ipv6,
        .deny_out_internal = cc->deny_out_internal,
    };
    d->client_policy = zh_policy_new(&pc, err);
    d->client_cfg.http.policy = d->client_policy;
    return d->client_policy ? 0 : -1;
}

static int build_workers(struct daemon *d)
{
    bool client = zh_config_client_enabled(&d->cfg);
    bool server = zh_config_server_enabled(&d->cfg);
    d->workers = zh_calloc(d->n_workers, sizeof(*d->workers));
    d->servers = zh_calloc(d->n_workers, sizeof(*d->servers));
    for (unsigned i = 0; i < d->n_workers; i++) {
        struct zh_worker_config wc = {
            .index = i,
            .bridge = d->bridge,
            .client = client ? &d->client_cfg : NULL,
            .server = server ? &d->server_cfg : NULL,
            .metrics = d->metrics ? d->metrics[i] : NULL,
        };
        d->workers[i] = zh_worker_new(&wc);
        if (!d->workers[i])
            return -1;
        d->servers[i] = zh_worker_server(d->workers[i]);
    }
    return 0;
}

/* Check the listeners against the handler sockets and load the TLS identities they need. Runs
 * before the workers are built, which take the identity store from server_cfg. */
static int check_listeners(struct daemon *d, struct zh_buf *err)
{
    const struct zh_config_server *sc = &d->cfg.server;
    bool tls = false;
    for (size_t i = 0; i < sc->listen_count; i++) {
        const struct zh_config_listen *l = &sc->listen[i];
        if (l->req && sc->zclient_req.count == 0) {
            zh_buf_printf(err, "listen %s: a req-mode port needs --zclient-req", l->raw);
            return -1;
        }
        if (!l->req && sc->zclient_stream.count == 0) {
            zh_buf_printf(err, "listen %s: a stream-mode port needs --zclient-stream", l->raw);
            return -1;
        }
        tls |= l->tls;
    }
    if (!tls)
        return 0;
    const char *dir = sc->tls_identities_dir ? sc->tls_identities_dir : ".";
    struct zh_buf why = {0};
    d->tls = zh_tls_store_new(dir, &why);
    if (!d->tls) {
        zh_buf_printf(err, "--tls-identities-dir %s: %s", dir, zh_buf_cstr(&why));
        zh_buf_free(&why);
        return -1;
    }
    zh_buf_free(&why);
    zh_info("TLS: %zu identit%s loaded from %s", zh_tls_store_count(d->tls),
            zh_tls_store_count(d->tls) == 1 ? "y" : "ies", dir);
    for (size_t i = 0; i < sc->listen_count; i++) {
        const struct zh_config_listen *l = &sc->listen[i];
        if (l->default_cert && !zh_tls_store_has(d->tls, l->default_cert))
            zh_warn("listen %s: default-cert '%s' is not in %s (yet)", l->raw, l->default_cert,
                    dir);
    }
    d->server_cfg.tls = d->tls;
    return 0;
}

/* --metrics: per-worker counters and the endpoint (bound here, before "ready"). */
static int build_metrics(struct daemon *d, struct zh_buf *err)
{
    if (!d->cfg.metrics)
        return 0;
    char addr[64];
    int port;
    if (zh_config_parse_metrics(d->cfg.metrics, addr, sizeof(addr), &port) < 0) {
        zh_buf_printf(err, "--metrics: bad value '%s'", d->cfg.metrics);
        return -1;
    }
    d->metrics = zh_calloc(d->n_workers, sizeof(*d->metrics));
    for (unsigned i = 0; i < d->n_workers; i++)
        d->metrics[i] = zh_calloc(1, sizeof(*d->metrics[i]));
    d->scrape = zh_scrape_new(addr, port, d->metrics, d->n_workers, d->bridge, err);
    if (!d->scrape)
        return -1;
    zh_info("metrics: http://%s%s%s:%d/metrics", strchr(addr, ':') ? "[" : "", addr,
            strchr(addr, ':') ? "]" : "", zh_scrape_port(d->scrape));
    return 0;
}

static int build_listener(struct daemon *d, struct zh_buf *err)
{
    const struct zh_config_server *sc = &d->cfg.server;
    if (sc->listen_count == 0)
        return 0;
    d->listen = zh_calloc(sc->listen_count, sizeof(*d->listen));
    for (size_t i = 0; i < sc->listen_count; i++) {
        const struct zh_config_listen *l = &sc->listen[i];
        d->listen[i] = (struct zh_listen_spec){
            .addr = l->addr,
            .port = l->port,
            .path = l->path,
            .local = l->local,
            .req = l->req,
            .tls = l->tls,
            .default_cert = l->default_cert,
            .mode = l->mode,
            .user = l->user,
            .group = l->group,
        };
    }
    d->listener = zh_listener_new(d->listen, sc->listen_count, d->servers, d->n_workers, err);
    if (d->listener && d->tls)
        zh_listener_set_tls_reload(d->listener, d->tls, TLS_RELOAD_MS);
    return d->listener ? 0 : -1;
}

static void teardown(struct daemon *d)
{
    zh_scrape_free(d->scrape);
    d->scrape = NULL;
    zh_listener_free(d->listener);
    for (unsigned i = 0; d->workers && i < d->n_workers; i++)
        zh_worker_free(d->workers[i]);
    while (d->retired) {
        struct retired *r = d->retired;
        d->retired = r->next;
        zh_policy_free(r->old_policy);
        zh_free(r);
    }
    zh_zbridge_free(d->bridge);
    zh_policy_free(d->client_policy);
    zh_slots_free(d->client_slots);
    zh_resolver_library_cleanup(); /* every worker's resolver is gone */
    zh_tls_store_free(d->tls);
    zh_free(d->workers);
    zh_free(d->servers);
    for (unsigned i = 0; d->metrics && i < d->n_workers; i++)
        zh_free(d->metrics[i]);
    zh_free(d->metrics);
    zh_free(d->listen);
    for (int s = 0; s < ZH_ZS_COUNT; s++)
        zh_config_strlist_free(&d->specs[s]);
    zh_config_free(&d->cfg);
}

static bool all_idle(const struct daemon *d)
{
    for (unsigned i = 0; i < d->n_workers; i++)
        if (!zh_worker_idle(d->workers[i]))
            return false;
    return true;
}

/* Wait for a signal in sigs for up to ms milliseconds (-1 = forever). Returns the signal or 0. */
static int wait_signal(const sigset_t *sigs, long ms)
{
    for (;;) {
        int sig;
        if (ms < 0) {
            if (sigwait(sigs, &sig) == 0)
                return sig;
            continue;
        }
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        sig = sigtimedwait(sigs, NULL, &ts);
        if (sig > 0)
            return sig;
        if (errno == EINTR)
            continue;
        return 0;
    }
}

/* ---- SIGHUP: reload ---- */

#define RELOAD_WAIT_MS 10000 /* workers take a reload between two events: this is generous */

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_list(const struct zh_config_strlist *a, const struct zh_config_strlist *b)
{
    if (a->count != b->count)
        return false;
    for (size_t i = 0; i < a->count; i++)
        if (strcmp(a->items[i], b->items[i]) != 0)
            return false;
    return true;
}

static bool same_listen(const struct zh_config_server *a, const struct zh_config_server *b)
{
    if (a->listen_count != b->listen_count)
        return false;
    for (size_t i = 0; i < a->listen_count; i++)
        if (strcmp(a->listen[i].raw, b->listen[i].raw) != 0)
            return false;
    return true;
}

/* The settings that cannot change while running, named in fixed when new differs from old. */
static void fixed_changes(const struct zh_config *o, const struct zh_config *n,
                          struct zh_buf *fixed)
{
#define FIX(cond, name)                                                 \
    do {                                                                \
        if (!(cond))                                                    \
            zh_buf_printf(fixed, "%s%s", fixed->len ? ", " : "", name); \
    } while (0)
    const struct zh_config_client *oc = &o->client, *nc = &n->client;
    const struct zh_config_server *os = &o->server, *ns = &n->server;
    FIX(same_str(o->id, n->id), "id");
    FIX(o->workers == n->workers, "workers");
    FIX(same_str(o->logfile, n->logfile), "logfile");
    FIX(same_str(o->metrics, n->metrics), "metrics");
    FIX(same_str(oc->in_spec, nc->in_spec), "in_spec");
    FIX(same_str(oc->in_stream_spec, nc->in_stream_spec), "in_stream_spec");
    FIX(same_str(oc->out_spec, nc->out_spec), "out_spec");
    FIX(same_str(oc->in_req_spec, nc->in_req_spec), "in_req_spec");
    FIX(same_list(&oc->zserver_stream, &nc->zserver_stream), "zserver_stream");
    FIX(same_list(&oc->zserver_req, &nc->zserver_req), "zserver_req");
    FIX(oc->zserver_connect == nc->zserver_connect, "zserver_connect");
    FIX(oc->ipc_file_mode == nc->ipc_file_mode, "ipc_file_mode");
    FIX(oc->allow_ipv6 == nc->allow_ipv6, "allow_ipv6");
    FIX(oc->max_open_requests == nc->max_open_requests, "max_open_requests");
    FIX(oc->buffer_size == nc->buffer_size, "buffer_size");
    FIX(oc->connection_max_time_ms == nc->connection_max_time_ms, "connection_max_time");
    FIX(oc->in_hwm == nc->in_hwm && oc->out_hwm == nc->out_hwm, "in_hwm/out_hwm");
    FIX(same_list(&oc->dns_servers, &nc->dns_servers), "dns_servers");
    FIX(same_str(oc->tls_ca_file, nc->tls_ca_file), "tls_ca_file");
    FIX(oc->connect_timeout_ms == nc->connect_timeout_ms, "connect_timeout");
    FIX(same_str(oc->proxy, nc->proxy), "proxy");
    FIX(oc->http2 == nc->http2, "http2");
    FIX(oc->allow_ignore_policies == nc->allow_ignore_policies, "allow_ignore_policies");
    FIX(oc->keepalive_interval_ms == nc->keepalive_interval_ms &&
            oc->session_expiry_ms == nc->session_expiry_ms,
        "keepalive_interval_ms/session_expiry_ms");
    FIX(same_listen(os, ns), "[server] listen");
    FIX(same_list(&os->zclient_stream, &ns->zclient_stream), "[server] zclient_stream");
    FIX(same_list(&os->zclient_req, &ns->zclient_req), "[server] zclient_req");
    FIX(os->zclient_connect == ns->zclient_connect, "[server] zclient_connect");
    FIX(os->stream_maxconn == ns->stream_maxconn, "[server] stream_maxconn");
    FIX(os->req_maxconn == ns->req_maxconn, "[server] req_maxconn");
    FIX(os->max_tls_handshakes == ns->max_tls_handshakes, "[server] max_tls_handshakes");
    FIX(os->buffer_size == ns->buffer_size, "[server] buffer_size");
    FIX(os->body_buffer_size == ns->body_buffer_size, "[server] body_buffer_size");
    FIX(os->messages_max == ns->messages_max, "[server] messages_max");
    FIX(os->ipc_file_mode == ns->ipc_file_mode, "[server] ipc_file_mode");
    FIX(same_str(os->tls_identities_dir, ns->tls_identities_dir), "[server] tls_identities_dir");
    FIX(os->compression == ns->compression, "[server] compression");
    FIX(os->max_header_size == ns->max_header_size, "[server] max_header_size");
    FIX(os->keepalive_interval_ms == ns->keepalive_interval_ms &&
            os->session_expiry_ms == ns->session_expiry_ms,
        "[server] keepalive_interval_ms/session_expiry_ms");
#undef FIX
}

static void swap_list(struct zh_config_strlist *a, struct zh_config_strlist *b)
{
    struct zh_config_strlist t = *a;
    *a = *b;
    *b = t;
}

static void log_lines(int level, const char *prefix, const char *text)
{
    const char *p = text;
    for (const char *nl; (nl = strchr(p, '\n')); p = nl + 1)
        zh_log(level, "%s%.*s", prefix, (int)(nl - p), p);
    zh_log(level, "%s%s", prefix, p);
}

/* SIGHUP: read the configuration again (the same command line, the same --config file), check it
 * whole, and apply what can change live: the log level, the client role's allow/deny policy and
 * inactivity timeout, the server role's timeouts and handler wait, the TLS identities (rescanned)
 * and the shutdown timeout. A bad configuration changes nothing. Every connection and session
 * stays up: workers take the new settings between two events of their loop. */
static void reload(struct daemon *d)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    char msg[96];
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000);
    sd_notify(0, msg);
    zh_info("SIGHUP received: reloading the configuration%s%s", d->cfg.config_file ? " from " : "",
            d->cfg.config_file ? d->cfg.config_file : "");
    struct zh_config nc;
    zh_config_init(&nc);
    struct zh_buf err = {0}, fixed = {0};
    struct zh_config_strlist warnings = {0};
    struct zh_policy *np = NULL;
    int rc = zh_config_parse_args(&nc, d->argc, d->argv, &warnings, &err);
    if (rc == 0)
        rc = zh_config_validate(&nc, &err);
    if (rc < 0) {
        log_lines(ZH_LOG_ERROR,
                  "reload refused, keeping the running configuration: ", zh_buf_cstr(&err));
        goto out;
    }
    for (size_t i = 0; i < warnings.count; i++)
        zh_warn("%s", warnings.items[i]);
    if (d->client_policy) {
        const struct zh_config_client *cc = &nc.client;
        struct zh_policy_config pc = {
            .defpolicy = (enum zh_policy_default)cc->defpolicy,
            .allow = (const char *const *)cc->allow.items,
            .allow_count = cc->allow.count,
            .deny = (const char *const *)cc->deny.items,
            .deny_count = cc->deny.count,
            .allow_ipv6 = d->cfg.client.allow_ipv6, /* not live: the resolver keeps it */
            .deny_out_internal = cc->deny_out_internal,
        };
        np = zh_policy_new(&pc, &err);
        if (!np) {
            zh_error("reload refused, keeping the running configuration: policy: %s",
                     zh_buf_cstr(&err));
            goto out;
        }
    }
    if (d->tls && same_str(d->cfg.server.tls_identities_dir, nc.server.tls_identities_dir) &&
        zh_tls_store_reload_if_changed(d->tls) < 0) {
        zh_error("reload refused, keeping the running configuration: the TLS identities do not "
                 "load (see above)");
        zh_policy_free(np);
        np = NULL;
        goto out;
    }
    fixed_changes(&d->cfg, &nc, &fixed);
    if (fixed.len)
        zh_warn("reload: %s cannot change while running: keeping the old value (restart to apply)",
                zh_buf_cstr(&fixed));

    /* apply */
    if (nc.access_log) {
        int r = zh_accesslog_open(nc.access_log); /* reopened: rotation, or a new path */
        if (r < 0)
            zh_error("reload: --access-log %s: %s (keeping the old one)", nc.access_log,
                     strerror(-r));
        else {
            zh_free(d->cfg.access_log);
            d->cfg.access_log = zh_strdup(nc.access_log);
        }
    } else if (d->cfg.access_log) {
        zh_info("reload: the access log stays open until a restart");
    }
    zh_log_set_level(nc.log_level);
    d->cfg.log_level = nc.log_level;
    d->cfg.shutdown_timeout_ms = nc.shutdown_timeout_ms;
    d->cfg.client.defpolicy = nc.client.defpolicy;
    d->cfg.client.deny_out_internal = nc.client.deny_out_internal;
    swap_list(&d->cfg.client.allow, &nc.client.allow);
    swap_list(&d->cfg.client.deny, &nc.client.deny);
    d->cfg.client.timeout_ms = nc.client.timeout_ms;
    d->client_cfg.timeout_ms = (uint32_t)nc.client.timeout_ms;
    d->cfg.server.head_timeout_ms = nc.server.head_timeout_ms;
    d->cfg.server.req_timeout_ms = nc.server.req_timeout_ms;
    d->cfg.server.stream_timeout_ms = nc.server.stream_timeout_ms;
    d->cfg.server.handler_wait_ms = nc.server.handler_wait_ms;
    struct zh_server_config *s = &d->server_cfg;
    s->head_timeout_ms = clamp_ms(nc.server.head_timeout_ms);
    s->stream_timeout_ms = clamp_ms(nc.server.stream_timeout_ms);
    s->req_timeout_ms = clamp_ms(nc.server.req_timeout_ms);
    s->handler_wait_ms = clamp_ms(nc.server.handler_wait_ms);

    struct retired *ret = zh_calloc(1, sizeof(*ret));
    ret->sc = *s;
    ret->r.server = &ret->sc;
    ret->r.client_timeout_ms = d->client_cfg.timeout_ms;
    ret->r.policy = np ? np : d->client_policy;
    if (np) {
        ret->old_policy = d->client_policy;
        d->client_policy = np;
        d->client_cfg.http.policy = np;
    }
    unsigned seq = ++d->reload_seq;
    for (unsigned i = 0; i < d->n_workers; i++)
        zh_worker_reload(d->workers[i], &ret->r, seq);
    uint64_t deadline = zh_time_ms() + RELOAD_WAIT_MS;
    bool all = false;
    while (!all && zh_time_ms() < deadline) {
        all = true;
        for (unsigned i = 0; all && i < d->n_workers; i++)
            all = zh_worker_reloaded(d->workers[i], seq);
        if (!all)
            usleep(1000);
    }
    if (all) {
        zh_policy_free(ret->old_policy);
        zh_free(ret);
    } else {
        zh_warn("reload: a worker has not taken the new settings after %d ms; it will",
                RELOAD_WAIT_MS);
        ret->next = d->retired;
        d->retired = ret;
    }
    zh_info("reloaded: log level %d, policy %s, TLS identities %s", d->cfg.log_level,
            np ? "replaced" : "unchanged (no client role)",
            d->tls ? "rescanned" : "none (no tls listener)");
out:
    sd_notify(0, "READY=1");
    zh_config_free(&nc);
    zh_buf_free(&err);
    zh_buf_free(&fixed);
    zh_config_strlist_free(&warnings);
}

static void run_until_signal(struct daemon *d, const sigset_t *sigs)
{
    int sig;
    while ((sig = wait_signal(sigs, -1)) == SIGHUP)
        reload(d);
    zh_info("%s received: shutting down (timeout %lld ms)", strsignal(sig),
            (long long)d->cfg.shutdown_timeout_ms);
    sd_notify(0, "STOPPING=1");
    if (d->listener)
        zh_listener_stop(d->listener);
    uint64_t deadline = zh_time_ms() + (uint64_t)d->cfg.shutdown_timeout_ms;
    if (d->cfg.shutdown_timeout_ms > 0) {
        for (unsigned i = 0; i < d->n_workers; i++)
            zh_worker_drain(d->workers[i]);
        while (!all_idle(d)) {
            uint64_t now = zh_time_ms();
            if (now >= deadline)
                break;
            uint64_t left = deadline - now;
            if (wait_signal(sigs, left < 20 ? (long)left : 20) > 0) {
                zh_info("second signal: cancelling what is left");
                break;
            }
        }
        if (!all_idle(d))
            zh_info("shutdown timeout: cancelling sessions still in flight");
    }
    for (unsigned i = 0; i < d->n_workers; i++)
        zh_worker_cancel(d->workers[i]);
    for (unsigned i = 0; i < d->n_workers; i++) {
        zh_worker_free(d->workers[i]);
        d->workers[i] = NULL;
    }
    zh_zbridge_stop(d->bridge, BRIDGE_LINGER_MS);
}

/* ---- zhttpd -t ---- */

/* One -t error: "WHERE: what" (WHERE = FILE:LINE: key 'K', or --flag) or just "what". */
static void test_error(struct zh_config_strlist *errs, const struct zh_config *cfg,
                       const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void test_error(struct zh_config_strlist *errs, const struct zh_config *cfg,
                       const char *name, const char *fmt, ...)
{
    struct zh_buf b = {0};
    if (name && zh_config_where(cfg, name, &b))
        zh_buf_puts(&b, ": ");
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    zh_buf_puts(&b, msg);
    zh_config_strlist_add(errs, zh_buf_cstr(&b));
    zh_buf_free(&b);
}

/* A file the daemon will read (must exist and be readable) or append to (its directory must let
 * us create it, or the file must be writable). */
static void test_file(struct zh_config_strlist *errs, const struct zh_config *cfg, const char *name,
                      const char *path, bool write)
{
    if (!path)
        return;
    if (!write) {
        FILE *f = fopen(path, "rb");
        if (!f)
            test_error(errs, cfg, name, "%s: cannot read: %s", path, strerror(errno));
        else
            fclose(f);
        return;
    }
    if (access(path, F_OK) == 0) {
        if (access(path, W_OK) < 0)
            test_error(errs, cfg, name, "%s: cannot write: %s", path, strerror(errno));
        return;
    }
    char *dir = zh_strdup(path);
    char *slash = strrchr(dir, '/');
    const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
    if (access(d, W_OK | X_OK) < 0)
        test_error(errs, cfg, name, "%s: cannot create: %s: %s", path, d, strerror(errno));
    zh_free(dir);
}

/* Everything startup checks before it binds: prints each error (or "configuration OK") and
 * returns the exit code. */
static int test_config(struct daemon *d)
{
    struct zh_config_strlist errs = {0};
    const struct zh_config *cfg = &d->cfg;
    struct zh_buf err = {0};
    if (zh_config_validate(cfg, &err) < 0)
        zh_config_strlist_add(&errs, zh_buf_cstr(&err));
    err.len = 0;
    test_file(&errs, cfg, "logfile", cfg->logfile, true);
    if (cfg->access_log && strcmp(cfg->access_log, "-") != 0)
        test_file(&errs, cfg, "access_log", cfg->access_log, true);
    test_file(&errs, cfg, "tls_ca_file", cfg->client.tls_ca_file, false);
    if (expand_specs(d, &err) < 0)
        zh_config_strlist_add(&errs, zh_buf_cstr(&err));
    err.len = 0;
    if (build_client_policy(d, &err) < 0)
        test_error(&errs, cfg, NULL, "policy: %s", zh_buf_cstr(&err));
    err.len = 0;
    const struct zh_config_server *sc = &cfg->server;
    const struct zh_config_listen *tls_listen = NULL;
    for (size_t i = 0; i < sc->listen_count && !tls_listen; i++)
        if (sc->listen[i].tls)
            tls_listen = &sc->listen[i];
    if (tls_listen && zh_config_server_enabled(cfg)) {
        const char *dir = sc->tls_identities_dir ? sc->tls_identities_dir : ".";
        struct zh_tls_store *st = zh_tls_store_new(dir, &err);
        if (!st) {
            struct zh_buf w = {0};
            if (!zh_config_where(cfg, "tls_identities_dir", &w) && tls_listen->where &&
                tls_listen->where[0] != '-')
                zh_buf_printf(&w, "%s: key 'listen'", tls_listen->where);
            struct zh_buf line = {0};
            zh_buf_printf(&line, "%s%stls identities %s: %s", zh_buf_cstr(&w), w.len ? ": " : "",
                          dir, zh_buf_cstr(&err));
            zh_config_strlist_add(&errs, zh_buf_cstr(&line));
            zh_buf_free(&line);
            zh_buf_free(&w);
        } else {
            for (size_t i = 0; i < sc->listen_count; i++) {
                const struct zh_config_listen *l = &sc->listen[i];
                if (l->default_cert && !zh_tls_store_has(st, l->default_cert))
                    fprintf(stderr,
                            "zhttpd: warning: %s%slisten %s: default-cert '%s' is not in %s\n",
                            l->where && l->where[0] != '-' ? l->where : "",
                            l->where && l->where[0] != '-' ? ": key 'listen': " : "", l->raw,
                            l->default_cert, dir);
            }
            zh_tls_store_free(st);
        }
        err.len = 0;
    }
    zh_buf_free(&err);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "zhttpd: %s\n", errs.items[i]);
    int rc = errs.count ? 1 : 0;
    if (!rc)
        printf("zhttpd: configuration OK (%s)\n",
               cfg->config_file ? cfg->config_file : "flags only");
    else
        fprintf(stderr, "zhttpd: configuration %s has %zu error(s)\n",
                cfg->config_file ? cfg->config_file : "(flags)", errs.count);
    zh_config_strlist_free(&errs);
    return rc;
}

/* Raise the soft descriptor limit to the hard one (as nginx's worker_rlimit_nofile would), and say
 * when the connection limits can't be reached with what is left. */
static void raise_fd_limit(const struct zh_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            zh_debug("descriptor limit raised from %llu to %llu", (unsigned long long)old,
                     (unsigned long long)rl.rlim_max);
        else
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (!zh_config_server_enabled(cfg))
        return;
    unsigned long long want = (unsigned long long)cfg->server.stream_maxconn +
                              (unsigned long long)cfg->server.req_maxconn;
    if (rl.rlim_cur != RLIM_INFINITY && want + 256 > rl.rlim_cur)
        zh_warn("descriptor limit %llu is below stream_maxconn + req_maxconn (%llu) plus room for "
                "sockets and files; accepting pauses when descriptors run out",
                (unsigned long long)rl.rlim_cur, want);
}

int main(int argc, char **argv)
{
    struct daemon d;
    memset(&d, 0, sizeof(d));
    struct zh_buf err = {0};
    struct zh_config_strlist warnings = {0};
    zh_config_init(&d.cfg);
    d.argc = argc;
    d.argv = argv;
    int rc = zh_config_parse_args(&d.cfg, argc, argv, &warnings, &err);
    if (rc == ZH_CONFIG_HELP) {
        zh_config_usage(stdout);
        goto done_ok;
    }
    if (rc == ZH_CONFIG_VERSION) {
        printf("zhttpd %s\n", ZH_VERSION);
        goto done_ok;
    }
    for (size_t i = 0; i < warnings.count; i++)
        fprintf(stderr, "zhttpd: warning: %s\n", warnings.items[i]);
    if (rc < 0) {
        /* one line per error (a config file reports every bad line) */
        const char *p = zh_buf_cstr(&err);
        for (const char *nl; (nl = strchr(p, '\n')); p = nl + 1)
            fprintf(stderr, "zhttpd: %.*s\n", (int)(nl - p), p);
        fprintf(stderr, "zhttpd: %s\n", p);
        if (!d.cfg.config_file || !strstr(zh_buf_cstr(&err), d.cfg.config_file))
            fprintf(stderr, "Try 'zhttpd --help' for more information.\n");
        goto done_fail;
    }
    if (d.cfg.test_config) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        rc = test_config(&d);
        zh_policy_free(d.client_policy);
        for (int s = 0; s < ZH_ZS_COUNT; s++)
            zh_config_strlist_free(&d.specs[s]);
        curl_global_cleanup();
        if (rc)
            goto done_fail;
        goto done_ok;
    }
    if (zh_config_validate(&d.cfg, &err) < 0) {
        fprintf(stderr, "zhttpd: %s\n", zh_buf_cstr(&err));
        goto done_fail;
    }
    zh_log_set_level(d.cfg.log_level);
    if (d.cfg.logfile) {
        int r = zh_log_open(d.cfg.logfile);
        if (r < 0) {
            fprintf(stderr, "zhttpd: cannot open log file %s: %s\n", d.cfg.logfile, strerror(-r));
            goto done_fail;
        }
    }
    for (size_t i = 0; i < warnings.count; i++)
        zh_warn("%s", warnings.items[i]);
    if (d.cfg.access_log) {
        int r = zh_accesslog_open(d.cfg.access_log);
        if (r < 0) {
            zh_error("startup failed: --access-log %s: %s", d.cfg.access_log, strerror(-r));
            zh_log_close();
            goto done_fail;
        }
    }
    raise_fd_limit(&d.cfg);

    d.n_workers = (unsigned)d.cfg.workers;
    if (d.n_workers > ZH_ZBRIDGE_MAX_WORKERS) {
        zh_warn("workers: %u requested, using the maximum of %d", d.n_workers,
                ZH_ZBRIDGE_MAX_WORKERS);
        d.n_workers = ZH_ZBRIDGE_MAX_WORKERS;
    }

    /* Signals are taken synchronously by the main thread; every thread created below inherits the
     * blocked mask, so none of them is interrupted by them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    build_engine_configs(&d);
    if (check_listeners(&d, &err) < 0 || build_client_policy(&d, &err) < 0 ||
        build_client_slots(&d, &err) < 0 || build_bridge(&d, &err) < 0 ||
        build_metrics(&d, &err) < 0 || build_workers(&d) < 0 || build_listener(&d, &err) < 0) {
        zh_error("startup failed: %s", err.len ? zh_buf_cstr(&err) : "see above");
        teardown(&d);
        curl_global_cleanup();
        zh_buf_free(&err);
        zh_config_strlist_free(&warnings);
        zh_log_close();
        return 1;
    }
    int r = zh_zbridge_start(d.bridge);
    for (unsigned i = 0; r == 0 && i < d.n_workers; i++)
        r = zh_worker_start(d.workers[i]);
    if (r == 0 && d.listener)
        r = zh_listener_start(d.listener);
    if (r == 0 && d.scrape)
        r = zh_scrape_start(d.scrape);
    if (r < 0) {
        zh_error("startup failed: cannot start threads: %s", strerror(-r));
        teardown(&d);
        curl_global_cleanup();
        return 1;
    }
    zh_info("ready: id %s, %u worker(s), client role %s, server role %s", d.cfg.id, d.n_workers,
            zh_config_client_enabled(&d.cfg) ? "on" : "off",
            zh_config_server_enabled(&d.cfg) ? "on" : "off");
    sd_notify(0, "READY=1");

    run_until_signal(&d, &sigs);
    teardown(&d);
    curl_global_cleanup();
    zh_info("stopped");
    zh_accesslog_close();
    zh_log_close();
    zh_buf_free(&err);
    zh_config_strlist_free(&warnings);
    return 0;

done_ok:
    zh_config_free(&d.cfg);
    zh_buf_free(&err);
    zh_config_strlist_free(&warnings);
    return 0;
done_fail:
    zh_config_free(&d.cfg);
    zh_buf_free(&err);
    zh_config_strlist_free(&warnings);
    return 1;
}
