/* Settings model, INI loader and command-line parser. See config.h for the rules.
 *
 * Every setting is one row of the opts[] table: its flag and/or config key, where it is stored
 * (an offset into struct zh_config), how its text is parsed, its default as text and its help.
 * zh_config_init() applies the defaults through the same parser that reads the file and the
 * command line, and zh_config_usage() prints the table, so the three cannot drift apart. */
#include "daemon/config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client/policy.h"
#include "shared/proto/err.h"
#include "shared/proto/mem.h"

#define SEC_GENERAL 1u
#define SEC_SERVER  2u
#define SEC_BOTH    (SEC_GENERAL | SEC_SERVER)

#define FILE_MAX   (1024 * 1024) /* a config file larger than this is a mistake */
#define ID_MAX     255
#define SIZE_LIMIT (1024LL * 1024 * 1024)
#define SEC_LIMIT  ((int64_t)INT32_MAX * 1000) /* Zurl reads seconds into an int */

enum opt_type {
    T_STR,      /* char *, optional check; empty value = default (NULL if none) */
    T_ID,       /* char *, non-empty, no whitespace */
    T_INT,      /* int in min..max */
    T_SIZE,     /* size_t in min..max */
    T_SEC,      /* int64_t ms, given in seconds (up to 3 decimals) */
    T_MS,       /* int64_t ms, given in milliseconds */
    T_BOOL,     /* bool; on the command line a switch */
    T_OCTAL,    /* int file mode, -1 = unset */
    T_POLICY,   /* enum zh_config_policy */
    T_LOGLEVEL, /* int 0..4, larger values mean 4 (Condure: 4 and up is trace) */
    T_LIST,     /* struct zh_config_strlist, comma-separated, repeated keys accumulate */
    T_LISTEN,   /* server.listen: one spec per value */
    T_VERBOSE,  /* command line only: log level 3 */
    T_CONFIG,   /* command line only: the file to load first */
    T_HELP,     /* command line only */
    T_VERSION,  /* command line only */
    T_TEST,     /* command line only: -t, check the configuration and exit */
};

enum opt_group { G_GENERAL, G_CLIENT, G_SERVER };

typedef int zh_config_check_fn(const char *value, struct zh_buf *why);

struct opt {
    const char *flag; /* without "--"; NULL = config file only */
    const char *key;  /* config key; NULL = command line only */
    unsigned sec;     /* sections where key is accepted */
    enum opt_type type;
    enum opt_group group;
    size_t off;  /* field in struct zh_config */
    size_t off2; /* a second field set along (command line only), 0 = none */
    long long min, max;
    const char *def; /* default as text, NULL = unset */
    const char *arg; /* value name in --help */
    const char *help;
    zh_config_check_fn *check; /* extra check of a string or list item */
};

static int check_spec(const char *v, struct zh_buf *why);
static int check_dns_server(const char *v, struct zh_buf *why);
static int check_metrics(const char *v, struct zh_buf *why);

#define OFF(field) offsetof(struct zh_config, field)

/* clang-format off */
static const struct opt opts[] = {
    /* General */
    {"help", NULL, 0, T_HELP, G_GENERAL, 0, 0, 0, 0, NULL, NULL,
     "Print this help and exit", NULL},
    {"version", NULL, 0, T_VERSION, G_GENERAL, 0, 0, 0, 0, NULL, NULL,
     "Print the version and exit", NULL},
    {"test-config", NULL, 0, T_TEST, G_GENERAL, OFF(test_config), 0, 0, 0, NULL, NULL,
     "Check the configuration as startup would (files, certificates and keys, listen specs, "
     "policy rules, endpoints) without binding anything: print \"configuration OK\" and exit 0, "
     "or each error with its FILE:LINE and key and exit 1", NULL},
    {"config", NULL, 0, T_CONFIG, G_GENERAL, OFF(config_file), 0, 0, 0, NULL, "FILE",
     "INI file loaded before the other flags, which override it", NULL},
    {"verbose", NULL, 0, T_VERBOSE, G_GENERAL, OFF(log_level), 0, 0, 0, NULL, NULL,
     "Same as --log-level 3 (Zurl)", NULL},
    {"loglevel", NULL, 0, T_LOGLEVEL, G_GENERAL, OFF(log_level), 0, 0, 4, NULL, "N",
     "Same as --log-level (Zurl's spelling)", NULL},
    {"log-level", "log_level", SEC_BOTH, T_LOGLEVEL, G_GENERAL, OFF(log_level), 0, 0, 4, "2", "N",
     "Log level: 0 error, 1 warn, 2 info, 3 debug, 4 trace", NULL},
    {"logfile", "logfile", SEC_BOTH, T_STR, G_GENERAL, OFF(logfile), 0, 0, 0, NULL, "FILE",
     "Append the log to FILE instead of stderr", NULL},
    {"id", "id", SEC_BOTH, T_ID, G_GENERAL, OFF(id), 0, 0, 0, "zhttpd", "ID",
     "Instance ID: the 'from' of our packets and our socket identity", NULL},
    {NULL, "instance_id", SEC_GENERAL, T_ID, G_GENERAL, OFF(id), 0, 0, 0, "zhttpd", "ID",
     "Zurl's name for id (empty = default)", NULL},
    {"workers", "workers", SEC_BOTH, T_INT, G_GENERAL, OFF(workers), 0, 1, ZH_CONFIG_WORKERS_MAX,
     NULL, "N", "Number of worker threads [default: number of online CPUs]", NULL},
    {"access-log", "access_log", SEC_BOTH, T_STR, G_GENERAL, OFF(access_log), 0, 0, 0, NULL,
     "FILE|-", "Append one line per finished request (both roles) to FILE, or stdout with '-'; "
     "SIGHUP reopens it (log rotation) [default: off]", NULL},
    {"metrics", "metrics", SEC_BOTH, T_STR, G_GENERAL, OFF(metrics), 0, 0, 0, NULL, "[ADDR:]PORT",
     "Serve Prometheus metrics at http://ADDR:PORT/metrics (ADDR defaults to 127.0.0.1; "
     "[::1]:PORT for IPv6) [default: off]", check_metrics},
    {"shutdown-timeout", "shutdown_timeout", SEC_BOTH, T_SEC, G_GENERAL, OFF(shutdown_timeout_ms),
     0, 0, SEC_LIMIT, "10", "SECONDS",
     "On SIGTERM let sessions in flight finish this long, then cancel them (0 = at once)", NULL},

    /* Client role */
    {NULL, "in_spec", SEC_GENERAL, T_STR, G_CLIENT, OFF(client.in_spec), 0, 0, 0, NULL, "SPEC",
     "Bind PULL for initiating streamed requests", check_spec},
    {NULL, "in_stream_spec", SEC_GENERAL, T_STR, G_CLIENT, OFF(client.in_stream_spec), 0, 0, 0,
     NULL, "SPEC", "Bind ROUTER for continuing streamed requests", check_spec},
    {NULL, "out_spec", SEC_GENERAL, T_STR, G_CLIENT, OFF(client.out_spec), 0, 0, 0, NULL, "SPEC",
     "Bind PUB for responses to streamed requests", check_spec},
    {NULL, "in_req_spec", SEC_GENERAL, T_STR, G_CLIENT, OFF(client.in_req_spec), 0, 0, 0, NULL,
     "SPEC", "Bind ROUTER for non-streamed requests/responses", check_spec},
    {"zserver-stream", "zserver_stream", SEC_GENERAL, T_LIST, G_CLIENT, OFF(client.zserver_stream),
     0, 0, 0, NULL, "SPEC-BASE",
     "ZeroMQ server PULL/ROUTER/PUB spec base (Condure 1.10), repeatable", check_spec},
    {"zserver-req", "zserver_req", SEC_GENERAL, T_LIST, G_CLIENT, OFF(client.zserver_req), 0, 0, 0,
     NULL, "SPEC", "ZeroMQ server ROUTER spec for non-streamed requests, repeatable", check_spec},
    {"zserver-connect", "zserver_connect", SEC_GENERAL, T_BOOL, G_CLIENT,
     OFF(client.zserver_connect), 0, 0, 0, "false", NULL,
     "Connect the --zserver-* sockets instead of binding them", NULL},
    {"deny-out-internal", "deny_out_internal", SEC_GENERAL, T_BOOL, G_CLIENT,
     OFF(client.deny_out_internal), 0, 0, 0, "false", NULL,
     "Deny loopback/private/link-local/metadata destinations even when defpolicy is set", NULL},
    {"client-keepalive-ms", "keepalive_interval_ms", SEC_GENERAL, T_MS, G_CLIENT,
     OFF(client.keepalive_interval_ms), 0, 1, INT32_MAX, "30000", "MS",
     "ZHTTP keep-alive interval towards requesters", NULL},
    {"client-session-expiry-ms", "session_expiry_ms", SEC_GENERAL, T_MS, G_CLIENT,
     OFF(client.session_expiry_ms), 0, 1, INT32_MAX, "60000", "MS",
     "Drop a session whose requester has been silent this long", NULL},
    {NULL, "ipc_file_mode", SEC_GENERAL, T_OCTAL, G_CLIENT, OFF(client.ipc_file_mode), 0, 0, 0,
     NULL, "OCTAL", "Permissions of the client role's ipc binds", NULL},
    {NULL, "defpolicy", SEC_GENERAL, T_POLICY, G_CLIENT, OFF(client.defpolicy), 0, 0, 0, NULL,
     "allow|deny", "Zurl's default policy [default: unset = allow, internal addresses denied]",
     NULL},
    {NULL, "allow", SEC_GENERAL, T_LIST, G_CLIENT, OFF(client.allow), 0, 0, 0, NULL, "PATTERNS",
     "Destinations to allow: names, one-* wildcards, CIDR (10/8)", zh_config_check_pattern},
    {NULL, "deny", SEC_GENERAL, T_LIST, G_CLIENT, OFF(client.deny), 0, 0, 0, NULL, "PATTERNS",
     "Destinations to deny: names, one-* wildcards, CIDR (10/8)", zh_config_check_pattern},
    {NULL, "allow_ipv6", SEC_GENERAL, T_BOOL, G_CLIENT, OFF(client.allow_ipv6), 0, 0, 0, "false",
     "BOOL", "Connect to IPv6 addresses", NULL},
    {NULL, "max_open_requests", SEC_GENERAL, T_INT, G_CLIENT, OFF(client.max_open_requests), 0, -1,
     ZH_CONFIG_CONNS_MAX, "-1", "N", "Requests in flight at most (-1 or 0 = unlimited)", NULL},
    {NULL, "buffer_size", SEC_GENERAL, T_SIZE, G_CLIENT, OFF(client.buffer_size), 0, 1, SIZE_LIMIT,
     "200000", "BYTES", "Input buffer size per request", NULL},
    {NULL, "timeout", SEC_GENERAL, T_SEC, G_CLIENT, OFF(client.timeout_ms), 0, 0, SEC_LIMIT, "600",
     "SECONDS", "Fail a request inactive this long (0 = never)", NULL},
    {NULL, "connection_max_time", SEC_GENERAL, T_SEC, G_CLIENT, OFF(client.connection_max_time_ms),
     0, 0, SEC_LIMIT, "7200", "SECONDS", "Close a kept-alive connection this old", NULL},
    {NULL, "in_hwm", SEC_GENERAL, T_INT, G_CLIENT, OFF(client.in_hwm), 0, 0, INT_MAX, "1000", "N",
     "High-water mark of the input sockets", NULL},
    {NULL, "out_hwm", SEC_GENERAL, T_INT, G_CLIENT, OFF(client.out_hwm), 0, 0, INT_MAX, "1000", "N",
     "High-water mark of the output socket", NULL},
    {NULL, "dns_servers", SEC_GENERAL, T_LIST, G_CLIENT, OFF(client.dns_servers), 0, 0, 0, NULL,
     "IP[:PORT],...", "DNS servers [default: those of /etc/resolv.conf]", check_dns_server},
    {NULL, "tls_ca_file", SEC_GENERAL, T_STR, G_CLIENT, OFF(client.tls_ca_file), 0, 0, 0, NULL,
     "FILE", "CA bundle for outbound TLS [default: the system store]", NULL},
    {NULL, "connect_timeout", SEC_GENERAL, T_SEC, G_CLIENT, OFF(client.connect_timeout_ms), 0, 0,
     SEC_LIMIT, "0", "SECONDS", "Outbound connect timeout (0 = libcurl's default)", NULL},
    {NULL, "proxy", SEC_GENERAL, T_STR, G_CLIENT, OFF(client.proxy), 0, 0, 0, NULL, "URL",
     "Send outbound requests through this proxy [default: none]", NULL},
    {NULL, "http2", SEC_GENERAL, T_BOOL, G_CLIENT, OFF(client.http2), 0, 0, 0, "false", "BOOL",
     "Allow HTTP/2 for outbound requests", NULL},
    {NULL, "allow_ignore_policies", SEC_GENERAL, T_BOOL, G_CLIENT,
     OFF(client.allow_ignore_policies), 0, 0, 0, "true", "BOOL",
     "Honour the per-request ignore-policies field", NULL},
    {NULL, "ws_compression", SEC_GENERAL, T_BOOL, G_CLIENT, OFF(client.ws_compression), 0, 0, 0,
     "false", "BOOL", "Offer WebSocket permessage-deflate on outbound ws:// and wss:// sessions",
     NULL},

    /* Server role */
    {"listen", "listen", SEC_SERVER, T_LISTEN, G_SERVER, OFF(server.listen), 0, 0, 0, NULL,
     "[ADDR:]PORT[,PARAMS]",
     "Port to listen on, repeatable (config: one listen= line each). A bare PORT means "
     "0.0.0.0:PORT; IPv6 as [::1]:PORT. PARAMS: stream (default) or req, tls, default-cert=NAME. "
     "Unix socket: PATH,local[,mode=OCTAL,user=NAME,group=NAME]", NULL},
    {"zclient-stream", "zclient_stream", SEC_SERVER, T_LIST, G_SERVER, OFF(server.zclient_stream),
     0, 0, 0, NULL, "SPEC-BASE", "ZeroMQ client PUSH/ROUTER/SUB spec base, repeatable",
     check_spec},
    {"zclient-req", "zclient_req", SEC_SERVER, T_LIST, G_SERVER, OFF(server.zclient_req), 0, 0, 0,
     NULL, "SPEC", "ZeroMQ client REQ spec, repeatable", check_spec},
    {"zclient-connect", "zclient_connect", SEC_SERVER, T_BOOL, G_SERVER,
     OFF(server.zclient_connect), 0, 0, 0, "false", NULL,
     "Connect the --zclient-* sockets instead of binding them", NULL},
    {"stream-maxconn", "stream_maxconn", SEC_SERVER, T_INT, G_SERVER, OFF(server.stream_maxconn), 0,
     0, ZH_CONFIG_CONNS_MAX, "10000", "N",
     "Maximum number of concurrent connections in stream mode", NULL},
    {"req-maxconn", "req_maxconn", SEC_SERVER, T_INT, G_SERVER, OFF(server.req_maxconn), 0, 0,
     ZH_CONFIG_CONNS_MAX, "100", "N", "Maximum number of concurrent connections in req mode",
     NULL},
    {"max-tls-handshakes", "max_tls_handshakes", SEC_SERVER, T_INT, G_SERVER,
     OFF(server.max_tls_handshakes), 0, 1, ZH_CONFIG_CONNS_MAX, "1024", "N",
     "TLS handshakes in progress at most, process-wide (counted from a whole ClientHello); at the "
     "limit the worker's oldest one is closed", NULL},
    {"buffer-size", "buffer_size", SEC_SERVER, T_SIZE, G_SERVER, OFF(server.buffer_size), 0, 1,
     SIZE_LIMIT, "8192", "BYTES", "Connection buffer size (two buffers per connection)", NULL},
    {"body-buffer-size", "body_buffer_size", SEC_SERVER, T_SIZE, G_SERVER,
     OFF(server.body_buffer_size), 0, 0, SIZE_LIMIT, "100000", "BYTES",
     "Body buffer size for connections in req mode", NULL},
    {"messages-max", "messages_max", SEC_SERVER, T_INT, G_SERVER, OFF(server.messages_max), 0, 1,
     1000000, "100", "N", "Maximum number of queued WebSocket messages per connection", NULL},
    {"req-timeout", "req_timeout", SEC_SERVER, T_SEC, G_SERVER, OFF(server.req_timeout_ms), 0, 1,
     SEC_LIMIT, "30", "SECONDS", "Client timeout in req mode", NULL},
    {"stream-timeout", "stream_timeout", SEC_SERVER, T_SEC, G_SERVER, OFF(server.stream_timeout_ms),
     0, 1, SEC_LIMIT, "1800", "SECONDS", "Client timeout in stream mode", NULL},
    {"head-timeout", "head_timeout", SEC_SERVER, T_SEC, G_SERVER, OFF(server.head_timeout_ms), 0,
     1, SEC_LIMIT, "30", "SECONDS",
     "Close a client that has not sent a whole request head this long after connecting or after "
     "its previous response (slowloris); a smaller --stream-timeout/--req-timeout wins",
     NULL},
    {"ipc-file-mode", NULL, 0, T_OCTAL, G_SERVER, OFF(server.ipc_file_mode),
     OFF(client.ipc_file_mode), 0, 0, NULL, "OCTAL",
     "Permissions for ZeroMQ IPC binds (both roles; config: ipc_file_mode per section)", NULL},
    {NULL, "ipc_file_mode", SEC_SERVER, T_OCTAL, G_SERVER, OFF(server.ipc_file_mode), 0, 0, 0, NULL,
     "OCTAL", "Permissions of the server role's ipc binds", NULL},
    {"tls-identities-dir", "tls_identities_dir", SEC_SERVER, T_STR, G_SERVER,
     OFF(server.tls_identities_dir), 0, 0, 0, ".", "DIR",
     "Directory containing certificates and private keys", NULL},
    {"ws-max-message", "ws_max_message", SEC_SERVER, T_SIZE, G_SERVER, OFF(server.ws_max_message),
     0, 1, SIZE_LIMIT, "1048576", "BYTES",
     "Largest WebSocket message a client may send (larger: close 1009)", NULL},
    {"ws-close-timeout", "ws_close_timeout", SEC_SERVER, T_SEC, G_SERVER,
     OFF(server.ws_close_timeout_ms), 0, 1, SEC_LIMIT, "5", "SECONDS",
     "Close a WebSocket connection whose client has not answered our close frame this long", NULL},
    {"ws-auto-pong", "ws_auto_pong", SEC_SERVER, T_BOOL, G_SERVER, OFF(server.ws_auto_pong), 0, 0,
     0, "false", NULL,
     "Answer WebSocket client pings ourselves instead of forwarding them to the handler", NULL},
    {"ws-ping-interval", "ws_ping_interval", SEC_SERVER, T_SEC, G_SERVER,
     OFF(server.ws_ping_interval_ms), 0, 0, SEC_LIMIT, "0", "SECONDS",
     "Ping a WebSocket client idle this long, and close it if it sends nothing for as long again "
     "(0 = off)", NULL},
    {"compression", "compression", SEC_SERVER, T_BOOL, G_SERVER, OFF(server.compression), 0, 0, 0,
     "false", NULL, "Allow compression (WebSocket permessage-deflate)", NULL},
    {"handler-wait", "handler_wait", SEC_SERVER, T_SEC, G_SERVER, OFF(server.handler_wait_ms), 0, 0,
     SEC_LIMIT, "5", "SECONDS", "Wait this long for a handler before answering 503", NULL},
    {"max-header-size", "max_header_size", SEC_SERVER, T_SIZE, G_SERVER,
     OFF(server.max_header_size), 0, 1, 16 * 1024 * 1024, "65536", "BYTES",
     "Largest request head accepted (larger: 431)", NULL},
    {"server-keepalive-ms", "keepalive_interval_ms", SEC_SERVER, T_MS, G_SERVER,
     OFF(server.keepalive_interval_ms), 0, 1, INT32_MAX, "45000", "MS",
     "ZHTTP keep-alive interval towards handlers", NULL},
    {"server-session-expiry-ms", "session_expiry_ms", SEC_SERVER, T_MS, G_SERVER,
     OFF(server.session_expiry_ms), 0, 1, INT32_MAX, "60000", "MS",
     "Drop a session whose handler has been silent this long", NULL},
};
/* clang-format on */

#define NOPTS ZH_ARRAY_SIZE(opts)

/* ---- string lists ---- */

void zh_config_strlist_add(struct zh_config_strlist *l, const char *s)
{
    if (l->count == l->_cap) {
        l->_cap = l->_cap ? l->_cap * 2 : 4;
        l->items = zh_realloc(l->items, l->_cap * sizeof(*l->items));
    }
    l->items[l->count++] = zh_strdup(s);
}

void zh_config_strlist_free(struct zh_config_strlist *l)
{
    for (size_t i = 0; i < l->count; i++)
        zh_free(l->items[i]);
    zh_free(l->items);
    l->items = NULL;
    l->count = l->_cap = 0;
}

static void warn(struct zh_config_strlist *warnings, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void warn(struct zh_config_strlist *warnings, const char *fmt, ...)
{
    if (!warnings)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    zh_config_strlist_add(warnings, line);
}

/* Strip leading and trailing whitespace in place. */
static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

/* ---- value parsers: each returns 0, or -1 with "expected ..." in why ---- */

/* A decimal integer with an optional leading '-', nothing else (no spaces, '+' or hex). */
static int parse_ll(const char *s, long long *out)
{
    const char *p = s;
    if (*p == '-')
        p++;
    if (!isdigit((unsigned char)*p))
        return -1;
    for (const char *q = p; *q; q++) {
        if (!isdigit((unsigned char)*q))
            return -1;
    }
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* Seconds with up to three decimals, as milliseconds. */
static int parse_seconds(const char *s, int64_t *ms)
{
    int64_t whole = 0;
    const char *p = s;
    if (!isdigit((unsigned char)*p))
        return -1;
    for (; isdigit((unsigned char)*p); p++) {
        whole = whole * 10 + (*p - '0');
        if (whole > INT32_MAX)
            return -1;
    }
    int64_t frac = 0;
    if (*p == '.') {
        p++;
        int digits = 0;
        for (; isdigit((unsigned char)*p); p++) {
            if (++digits > 3)
                return -1;
            frac = frac * 10 + (*p - '0');
        }
        if (digits == 0)
            return -1;
        for (; digits < 3; digits++)
            frac *= 10;
    }
    if (*p)
        return -1;
    *ms = whole * 1000 + frac;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < ZH_ARRAY_SIZE(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* An octal file mode: 1 to 4 octal digits. */
static int parse_octal(const char *s, int *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 4)
        return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '7')
            return -1;
        v = v * 8 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* A port number 0..65535 in decimal. */
static int parse_port(const char *s, int *out)
{
    long long v;
    if (*s == '-' || parse_ll(s, &v) < 0 || v > 65535 || strlen(s) > 5)
        return -1;
    *out = (int)v;
    return 0;
}

static void fmt_ms_as_seconds(struct zh_buf *b, long long ms)
{
    if (ms % 1000)
        zh_buf_printf(b, "%lld.%03lld", ms / 1000, ms % 1000);
    else
        zh_buf_printf(b, "%lld", ms / 1000);
}

static int check_spec(const char *v, struct zh_buf *why)
{
    const char *sep = strstr(v, "://");
    if (!sep || sep == v || sep[3] == '\0' || strpbrk(v, " \t")) {
        zh_buf_puts(why, "expected a ZeroMQ endpoint such as ipc:///path or tcp://host:port");
        return -1;
    }
    return 0;
}

static int check_id(const char *v, struct zh_buf *why)
{
    size_t n = strlen(v);
    bool ok = n > 0 && n <= ID_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        if (isspace((unsigned char)v[i]) || iscntrl((unsigned char)v[i]))
            ok = false;
    }
    if (!ok) {
        zh_buf_printf(why, "expected a non-empty id of at most %d bytes without spaces", ID_MAX);
        return -1;
    }
    return 0;
}

static bool is_ipv4(const char *s)
{
    struct in_addr a;
    return inet_pton(AF_INET, s, &a) == 1;
}

static bool is_ipv6(const char *s)
{
    struct in6_addr a;
    return inet_pton(AF_INET6, s, &a) == 1;
}

/* "IP", "IP:port", "IPv6", "[IPv6]" or "[IPv6]:port". */
static int check_dns_server(const char *v, struct zh_buf *why)
{
    char host[64];
    const char *port = NULL;
    bool ok = false;
    int p;
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        size_t n = close ? (size_t)(close - v - 1) : 0;
        if (close && n > 0 && n < sizeof(host) && (close[1] == '\0' || close[1] == ':')) {
            memcpy(host, v + 1, n);
            host[n] = '\0';
            port = close[1] == ':' ? close + 2 : NULL;
            ok = is_ipv6(host);
        }
    } else {
        const char *colon = strchr(v, ':');
        if (colon && strchr(colon + 1, ':')) {
            ok = is_ipv6(v);
        } else if (colon) {
            size_t n = (size_t)(colon - v);
            if (n < sizeof(host)) {
                memcpy(host, v, n);
                host[n] = '\0';
                port = colon + 1;
                ok = is_ipv4(host);
            }
        } else {
            ok = is_ipv4(v);
        }
    }
    if (ok && port && (parse_port(port, &p) < 0 || p == 0))
        ok = false;
    if (!ok) {
        zh_buf_puts(why, "expected a DNS server address: IP, IP:PORT or [IPv6]:PORT");
        return -1;
    }
    return 0;
}

int zh_config_parse_metrics(const char *v, char *addr, size_t addr_size, int *port)
{
    const char *p = v;
    const char *colon = strrchr(v, ':');
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        size_t n = close ? (size_t)(close - v - 1) : 0;
        if (!close || close[1] != ':' || n == 0 || n >= addr_size)
            return -1;
        memcpy(addr, v + 1, n);
        addr[n] = '\0';
        if (!is_ipv6(addr))
            return -1;
        p = close + 2;
    } else if (colon) {
        size_t n = (size_t)(colon - v);
        if (n == 0 || n >= addr_size)
            return -1;
        memcpy(addr, v, n);
        addr[n] = '\0';
        if (!is_ipv4(addr))
            return -1;
        p = colon + 1;
    } else {
        snprintf(addr, addr_size, "127.0.0.1");
    }
    return parse_port(p, port);
}

static int check_metrics(const char *v, struct zh_buf *why)
{
    char addr[64];
    int port;
    if (zh_config_parse_metrics(v, addr, sizeof(addr), &port) < 0) {
        zh_buf_puts(why, "expected [ADDR:]PORT with a numeric IPv4 address or [IPv6]");
        return -1;
    }
    return 0;
}

int zh_config_check_pattern(const char *pattern, struct zh_buf *err)
{
    /* One grammar: the policy's own parser decides what a pattern is. */
    return zh_policy_check_pattern(pattern, err) < 0 ? ZH_E_CONFIG : 0;
}

/* ---- listen specs ---- */

void zh_config_listen_free(struct zh_config_listen *l)
{
    zh_free(l->raw);
    zh_free(l->addr);
    zh_free(l->path);
    zh_free(l->default_cert);
    zh_free(l->user);
    zh_free(l->group);
    zh_free(l->where);
    memset(l, 0, sizeof(*l));
}

static int listen_fail(struct zh_config_listen *l, struct zh_buf *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int listen_fail(struct zh_config_listen *l, struct zh_buf *err, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    zh_buf_puts(err, msg);
    zh_config_listen_free(l);
    return ZH_E_CONFIG;
}

/* Parse "[addr:]port" the way Condure does (Rust's SocketAddr: numeric, IPv6 in brackets). */
static int parse_listen_addr(struct zh_config_listen *l, const char *first, struct zh_buf *err)
{
    if (first[0] == '[' && !strstr(first, "]:"))
        return listen_fail(l, err, "invalid address '%s': expected [IPv6]:PORT", first);
    const char *colon = strrchr(first, ':');
    const char *port = colon ? colon + 1 : first;
    if (parse_port(port, &l->port) < 0)
        return listen_fail(l, err, "invalid port '%s': expected [ADDR:]PORT with PORT 0..65535",
                           port);
    if (!colon) {
        l->addr = zh_strdup("0.0.0.0");
        l->family = AF_INET;
        return 0;
    }
    size_t n = (size_t)(colon - first);
    if (n >= 2 && first[0] == '[' && first[n - 1] == ']') {
        l->addr = zh_strndup(first + 1, n - 2);
        l->family = AF_INET6;
        if (!is_ipv6(l->addr))
            return listen_fail(l, err, "invalid address '%.*s': expected [IPv6]:PORT", (int)n,
                               first);
        return 0;
    }
    l->addr = zh_strndup(first, n);
    l->family = AF_INET;
    if (!is_ipv4(l->addr))
        return listen_fail(l, err,
                           "invalid address '%.*s': expected a numeric IPv4 address or "
                           "[IPv6] (host names are not resolved)",
                           (int)n, first);
    return 0;
}

int zh_config_parse_listen(const char *value, struct zh_config_listen *out, struct zh_buf *err)
{
    struct zh_config_listen *l = out;
    memset(l, 0, sizeof(*l));
    l->raw = zh_strdup(value);
    l->mode = -1;

    char *copy = zh_strdup(value);
    char *save = copy;
    char *comma = strchr(copy, ',');
    if (comma)
        *comma = '\0';
    const char *first = copy;
    int rc = 0;
    if (!*first) {
        rc = listen_fail(l, err, "expected [ADDR:]PORT[,PARAMS] or PATH,local[,PARAMS]");
        goto out;
    }

    /* Params first: whether the first part is a path or an address depends on `local`. */
    char *p = comma ? comma + 1 : NULL;
    bool have_mode = false;
    while (p) {
        char *next = strchr(p, ',');
        if (next)
            *next++ = '\0';
        char *eq = strchr(p, '=');
        const char *v = eq ? eq + 1 : NULL;
        if (eq)
            *eq = '\0';
        bool flag_only = strcmp(p, "req") == 0 || strcmp(p, "stream") == 0 ||
                         strcmp(p, "tls") == 0 || strcmp(p, "local") == 0;
        if (flag_only && v) {
            rc = listen_fail(l, err, "invalid param '%s=%s': '%s' takes no value", p, v, p);
            goto out;
        }
        if (!flag_only && !v &&
            (strcmp(p, "default-cert") == 0 || strcmp(p, "mode") == 0 || strcmp(p, "user") == 0 ||
             strcmp(p, "group") == 0)) {
            rc = listen_fail(l, err, "invalid param '%s': expected %s=VALUE", p, p);
            goto out;
        }
        if (strcmp(p, "req") == 0) {
            l->req = true;
        } else if (strcmp(p, "stream") == 0) {
            l->req = false;
        } else if (strcmp(p, "tls") == 0) {
            l->tls = true;
        } else if (strcmp(p, "local") == 0) {
            l->local = true;
        } else if (strcmp(p, "default-cert") == 0) {
            if (!*v) {
                rc = listen_fail(l, err, "invalid param 'default-cert=': expected a name");
                goto out;
            }
            zh_free(l->default_cert);
            l->default_cert = zh_strdup(v);
        } else if (strcmp(p, "mode") == 0) {
            if (parse_octal(v, &l->mode) < 0) {
                rc = listen_fail(l, err, "invalid param 'mode=%s': expected octal such as 660", v);
                goto out;
            }
            have_mode = true;
        } else if (strcmp(p, "user") == 0 || strcmp(p, "group") == 0) {
            char **dst = p[0] == 'u' ? &l->user : &l->group;
            if (!*v) {
                rc = listen_fail(l, err, "invalid param '%s=': expected a name", p);
                goto out;
            }
            zh_free(*dst);
            *dst = zh_strdup(v);
        } else {
            rc = listen_fail(l, err,
                             "invalid param '%s%s%s': expected stream, req, tls, "
                             "default-cert=NAME, local, mode=OCTAL, user=NAME or group=NAME",
                             p, v ? "=" : "", v ? v : "");
            goto out;
        }
        p = next;
    }

    if (l->local) {
        if (l->tls || l->default_cert) {
            rc = listen_fail(l, err, "'tls' and 'default-cert' are not supported with 'local'");
            goto out;
        }
        if (strlen(first) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
            rc = listen_fail(l, err, "unix socket path too long: at most %zu bytes",
                             sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);
            goto out;
        }
        l->path = zh_strdup(first);
        l->family = AF_UNIX;
        goto out;
    }
    if (have_mode || l->user || l->group) {
        rc = listen_fail(l, err, "'mode', 'user' and 'group' need 'local'");
        goto out;
    }
    if (l->default_cert && !l->tls) {
        rc = listen_fail(l, err, "'default-cert' needs 'tls'");
        goto out;
    }
    rc = parse_listen_addr(l, first, err);
out:
    zh_free(save);
    return rc;
}

static void listen_add(struct zh_config_server *s, struct zh_config_listen *l)
{
    if (s->listen_count == s->_listen_cap) {
        s->_listen_cap = s->_listen_cap ? s->_listen_cap * 2 : 4;
        s->listen = zh_realloc(s->listen, s->_listen_cap * sizeof(*s->listen));
    }
    s->listen[s->listen_count++] = *l;
}

static void listen_clear(struct zh_config_server *s)
{
    for (size_t i = 0; i < s->listen_count; i++)
        zh_config_listen_free(&s->listen[i]);
    zh_free(s->listen);
    s->listen = NULL;
    s->listen_count = s->_listen_cap = 0;
}

/* ---- applying one value ---- */

static void *field(struct zh_config *cfg, size_t off)
{
    return (char *)cfg + off;
}

static void set_str(struct zh_config *cfg, size_t off, const char *v)
{
    char **dst = field(cfg, off);
    zh_free(*dst);
    *dst = v ? zh_strdup(v) : NULL;
}

/* Add every non-empty comma-separated item of v to the list, each checked first. The item that
 * fails is named in bad (set to the item). */
static int add_list(struct zh_config *cfg, const struct opt *o, const char *v, struct zh_buf *why,
                    struct zh_buf *bad)
{
    struct zh_config_strlist *l = field(cfg, o->off);
    char *copy = zh_strdup(v);
    char *p = copy;
    int rc = 0;
    while (p) {
        char *next = strchr(p, ',');
        if (next)
            *next++ = '\0';
        p = trim(p);
        if (*p && o->check && o->check(p, why) < 0) {
            zh_buf_puts(bad, p);
            rc = -1;
            break;
        }
        if (*p)
            zh_config_strlist_add(l, p);
        p = next;
    }
    zh_free(copy);
    return rc;
}

static void why_range(struct zh_buf *why, const struct opt *o)
{
    switch (o->type) {
    case T_SEC:
        zh_buf_puts(why, "expected seconds (up to 3 decimals) from ");
        fmt_ms_as_seconds(why, o->min);
        zh_buf_puts(why, " to ");
        fmt_ms_as_seconds(why, o->max);
        break;
    case T_MS:
        zh_buf_printf(why, "expected milliseconds from %lld to %lld", o->min, o->max);
        break;
    default:
        zh_buf_printf(why, "expected an integer from %lld to %lld", o->min, o->max);
        break;
    }
}

/* Set the option from the text v (never empty here). Returns 0, or -1 with the "expected ..."
 * reason in why; bad gets the offending list item when it is not the whole value. */
static int set_value(struct zh_config *cfg, const struct opt *o, const char *v, struct zh_buf *why,
                     struct zh_buf *bad)
{
    long long n;
    int64_t ms;
    bool b;
    int mode;
    switch (o->type) {
    case T_STR:
    case T_CONFIG:
        if (o->check && o->check(v, why) < 0)
            return -1;
        set_str(cfg, o->off, v);
        return 0;
    case T_ID:
        if (check_id(v, why) < 0)
            return -1;
        set_str(cfg, o->off, v);
        return 0;
    case T_INT:
    case T_SIZE:
        if (parse_ll(v, &n) < 0 || n < o->min || n > o->max) {
            why_range(why, o);
            return -1;
        }
        if (o->type == T_INT)
            *(int *)field(cfg, o->off) = (int)n;
        else
            *(size_t *)field(cfg, o->off) = (size_t)n;
        return 0;
    case T_SEC:
    case T_MS:
        if (o->type == T_SEC) {
            if (parse_seconds(v, &ms) < 0)
                ms = -1;
        } else {
            ms = parse_ll(v, &n) < 0 ? -1 : n;
        }
        if (ms < o->min || ms > o->max) {
            why_range(why, o);
            return -1;
        }
        *(int64_t *)field(cfg, o->off) = ms;
        return 0;
    case T_BOOL:
        if (parse_bool(v, &b) < 0) {
            zh_buf_puts(why, "expected true or false (or yes/no, on/off, 1/0)");
            return -1;
        }
        *(bool *)field(cfg, o->off) = b;
        return 0;
    case T_OCTAL:
        if (parse_octal(v, &mode) < 0) {
            zh_buf_puts(why, "expected an octal file mode such as 660 or 0770");
            return -1;
        }
        *(int *)field(cfg, o->off) = mode;
        if (o->off2)
            *(int *)field(cfg, o->off2) = mode;
        return 0;
    case T_POLICY:
        if (strcmp(v, "allow") == 0) {
            *(enum zh_config_policy *)field(cfg, o->off) = ZH_CONFIG_POLICY_ALLOW;
        } else if (strcmp(v, "deny") == 0) {
            *(enum zh_config_policy *)field(cfg, o->off) = ZH_CONFIG_POLICY_DENY;
        } else {
            zh_buf_puts(why, "expected allow or deny");
            return -1;
        }
        return 0;
    case T_LOGLEVEL:
        if (parse_ll(v, &n) < 0 || n < 0) {
            zh_buf_puts(why, "expected a log level 0..4 (0 error, 1 warn, 2 info, 3 debug, "
                             "4 trace; larger means 4)");
            return -1;
        }
        *(int *)field(cfg, o->off) = n > 4 ? 4 : (int)n;
        return 0;
    case T_LIST:
        return add_list(cfg, o, v, why, bad);
    case T_LISTEN: {
        struct zh_config_listen l;
        if (zh_config_parse_listen(v, &l, why) < 0)
            return -1;
        listen_add(&cfg->server, &l);
        return 0;
    }
    case T_VERBOSE:
    case T_HELP:
    case T_VERSION:
    case T_TEST:
        break;
    }
    return 0;
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > ZH_CONFIG_WORKERS_MAX ? ZH_CONFIG_WORKERS_MAX : (int)n;
}

/* An empty value: back to the default, or unset. Lists and listen gain nothing. */
static void set_default(struct zh_config *cfg, const struct opt *o)
{
    if (o->off == offsetof(struct zh_config, workers)) {
        cfg->workers = online_cpus(); /* the one default that is not a constant */
        return;
    }
    if (o->def) {
        struct zh_buf why = {0};
        int rc = set_value(cfg, o, o->def, &why, &why);
        assert(rc == 0); /* the table's defaults are valid */
        ZH_UNUSED(rc);
        zh_buf_free(&why);
        return;
    }
    switch (o->type) {
    case T_STR:
    case T_ID:
    case T_CONFIG:
        set_str(cfg, o->off, NULL);
        break;
    case T_OCTAL:
        *(int *)field(cfg, o->off) = -1;
        break;
    case T_POLICY:
        *(enum zh_config_policy *)field(cfg, o->off) = ZH_CONFIG_POLICY_UNSET;
        break;
    default:
        break;
    }
}

/* ---- where each value came from ---- */

static void set_where(struct zh_config *cfg, const struct opt *o, const char *w)
{
    if (o->type == T_LISTEN) {
        /* every listen value keeps its own; set_value just appended it */
        struct zh_config_server *s = &cfg->server;
        if (w && s->listen_count && !s->listen[s->listen_count - 1].where)
            s->listen[s->listen_count - 1].where = zh_strdup(w);
        return;
    }
    if (!cfg->_where)
        cfg->_where = zh_calloc(NOPTS, sizeof(*cfg->_where));
    size_t i = (size_t)(o - opts);
    zh_free(cfg->_where[i]);
    cfg->_where[i] = w ? zh_strdup(w) : NULL;
}

bool zh_config_where(const struct zh_config *cfg, const char *name, struct zh_buf *out)
{
    for (size_t i = 0; cfg->_where && i < NOPTS; i++) {
        const struct opt *o = &opts[i];
        bool match =
            (o->flag && strcmp(o->flag, name) == 0) || (o->key && strcmp(o->key, name) == 0);
        const char *w = cfg->_where[i];
        if (!match || !w)
            continue;
        if (w[0] == '-')
            zh_buf_puts(out, w);
        else
            zh_buf_printf(out, "%s: key '%s'", w, o->key);
        return true;
    }
    return false;
}

/* ---- model ---- */

void zh_config_init(struct zh_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NOPTS; i++)
        set_default(cfg, &opts[i]);
}

void zh_config_free(struct zh_config *cfg)
{
    /* Several rows may share a field (id, instance_id); every free leaves NULL behind. */
    for (size_t i = 0; i < NOPTS; i++) {
        const struct opt *o = &opts[i];
        switch (o->type) {
        case T_STR:
        case T_ID:
        case T_CONFIG:
            set_str(cfg, o->off, NULL);
            break;
        case T_LIST:
            zh_config_strlist_free(field(cfg, o->off));
            break;
        case T_LISTEN:
            listen_clear(&cfg->server);
            break;
        default:
            break;
        }
    }
    for (size_t i = 0; cfg->_where && i < NOPTS; i++)
        zh_free(cfg->_where[i]);
    zh_free(cfg->_where);
    memset(cfg, 0, sizeof(*cfg));
}

bool zh_config_client_enabled(const struct zh_config *cfg)
{
    const struct zh_config_client *c = &cfg->client;
    return c->in_spec || c->in_stream_spec || c->out_spec || c->in_req_spec ||
           c->zserver_stream.count || c->zserver_req.count;
}

bool zh_config_server_enabled(const struct zh_config *cfg)
{
    const struct zh_config_server *s = &cfg->server;
    return s->listen_count || s->zclient_stream.count || s->zclient_req.count;
}

/* ---- config file ---- */

static const struct opt *find_key(const char *key, unsigned sec)
{
    for (size_t i = 0; i < NOPTS; i++) {
        if (opts[i].key && (opts[i].sec & sec) && strcmp(opts[i].key, key) == 0)
            return &opts[i];
    }
    return NULL;
}

static const char *sec_name(unsigned sec)
{
    return sec == SEC_SERVER ? "server" : "General";
}

struct ini_state {
    struct zh_config *cfg;
    const char *name;
    size_t line;
    unsigned sec; /* 0 inside an unknown section */
    struct zh_config_strlist *warnings;
    struct zh_buf *err;
};

static int ini_line(struct ini_state *st, char *raw)
{
    char *s = trim(raw);
    if (!*s || *s == '#' || *s == ';')
        return 0;

    if (*s == '[') {
        size_t n = strlen(s);
        if (s[n - 1] != ']') {
            zh_buf_printf(st->err, "%s:%zu: expected a section header such as [General], got '%s'",
                          st->name, st->line, s);
            return ZH_E_CONFIG;
        }
        s[n - 1] = '\0';
        char *name = trim(s + 1);
        if (strcasecmp(name, "General") == 0) {
            st->sec = SEC_GENERAL;
        } else if (strcasecmp(name, "server") == 0) {
            st->sec = SEC_SERVER;
        } else {
            st->sec = 0;
            warn(st->warnings, "%s:%zu: unknown section [%s] (its keys are ignored)", st->name,
                 st->line, name);
        }
        return 0;
    }

    char *eq = strchr(s, '=');
    if (!eq) {
        zh_buf_printf(st->err, "%s:%zu: expected key=value, got '%s'", st->name, st->line, s);
        return ZH_E_CONFIG;
    }
    *eq = '\0';
    char *key = trim(s);
    char *value = trim(eq + 1);
    if (!*key) {
        zh_buf_printf(st->err, "%s:%zu: expected key=value, got an empty key", st->name, st->line);
        return ZH_E_CONFIG;
    }
    if (st->sec == 0)
        return 0;
    size_t vlen = strlen(value);
    if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
        value[vlen - 1] = '\0';
        value++;
    }

    const struct opt *o = find_key(key, st->sec);
    if (!o) {
        unsigned other = st->sec == SEC_GENERAL ? SEC_SERVER : SEC_GENERAL;
        if (find_key(key, other))
            warn(st->warnings, "%s:%zu: unknown key '%s' in [%s] (ignored; it belongs in [%s])",
                 st->name, st->line, key, sec_name(st->sec), sec_name(other));
        else
            warn(st->warnings, "%s:%zu: unknown key '%s' in [%s] (ignored)", st->name, st->line,
                 key, sec_name(st->sec));
        return 0;
    }
    char w[600];
    snprintf(w, sizeof(w), "%s:%zu", st->name, st->line);
    if (!*value) {
        set_default(st->cfg, o);
        set_where(st->cfg, o, NULL);
        return 0;
    }
    struct zh_buf why = {0}, bad = {0};
    int rc = 0;
    if (set_value(st->cfg, o, value, &why, &bad) < 0) {
        zh_buf_printf(st->err, "%s:%zu: key '%s': bad value '%s': %s", st->name, st->line, key,
                      bad.len ? zh_buf_cstr(&bad) : value, zh_buf_cstr(&why));
        rc = ZH_E_CONFIG;
    } else {
        set_where(st->cfg, o, w);
    }
    zh_buf_free(&why);
    zh_buf_free(&bad);
    return rc;
}

static int load_text(struct zh_config *cfg, const char *name, const char *text, size_t len,
                     struct zh_config_strlist *warnings, struct zh_buf *err)
{
    struct ini_state st = {cfg, name, 0, SEC_GENERAL, warnings, err};
    const char *p = text, *end = text + len;
    if (memchr(text, '\0', len)) {
        zh_buf_printf(err, "%s: not a text file (contains a NUL byte)", name);
        return ZH_E_CONFIG;
    }
    int first = 0;
    struct zh_buf one = {0};
    st.err = &one;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *line = zh_strndup(p, n);
        st.line++;
        int rc = ini_line(&st, line);
        zh_free(line);
        if (rc < 0) {
            /* Go on: every bad line is reported, each with its own FILE:LINE. */
            if (first)
                zh_buf_puts(err, "\n");
            zh_buf_append(err, one.data, one.len);
            one.len = 0;
            if (!first)
                first = rc;
        }
        p = nl ? nl + 1 : end;
    }
    zh_buf_free(&one);
    return first;
}

int zh_config_load_string(struct zh_config *cfg, const char *name, const char *text,
                          struct zh_config_strlist *warnings, struct zh_buf *err)
{
    return load_text(cfg, name, text, strlen(text), warnings, err);
}

int zh_config_load_file(struct zh_config *cfg, const char *path, struct zh_config_strlist *warnings,
                        struct zh_buf *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        zh_buf_printf(err, "%s: cannot open config file: %s", path, strerror(e));
        return -e;
    }
    struct zh_buf data = {0};
    char chunk[8192];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        zh_buf_append(&data, chunk, n);
        if (data.len > FILE_MAX) {
            zh_buf_printf(err, "%s: config file larger than %d bytes", path, FILE_MAX);
            rc = ZH_E_CONFIG;
            break;
        }
    }
    if (!rc && ferror(f)) {
        int e = errno ? errno : EIO;
        zh_buf_printf(err, "%s: cannot read config file: %s", path, strerror(e));
        rc = -e;
    }
    fclose(f);
    if (!rc)
        rc = load_text(cfg, path, data.len ? (const char *)data.data : "", data.len, warnings, err);
    zh_buf_free(&data);
    return rc;
}

/* ---- command line ---- */

static bool takes_value(const struct opt *o)
{
    return o->type != T_BOOL && o->type != T_VERBOSE && o->type != T_HELP && o->type != T_VERSION &&
           o->type != T_TEST;
}

/* Read the flag at argv[*i] and its value, moving *i past both. *value is NULL for a switch given
 * without "=VALUE". *o is NULL at a "--" that ends the flags. */
static int next_flag(int argc, char *const *argv, int *i, const struct opt **o, const char **value,
                     struct zh_buf *err)
{
    const char *arg = argv[*i];
    *o = NULL;
    *value = NULL;
    if (strcmp(arg, "--") == 0) {
        if (*i + 1 < argc) {
            zh_buf_printf(err, "unexpected argument '%s' (zhttpd takes no operands)", argv[*i + 1]);
            return ZH_E_CONFIG;
        }
        *i = argc;
        return 0;
    }
    const char *name = NULL;
    if (strcmp(arg, "-h") == 0)
        name = "help";
    else if (strcmp(arg, "-V") == 0)
        name = "version";
    else if (strcmp(arg, "-t") == 0)
        name = "test-config";
    else if (strncmp(arg, "--", 2) == 0)
        name = arg + 2;
    if (!name) {
        zh_buf_printf(err, "unexpected argument '%s' (zhttpd takes no operands; see --help)", arg);
        return ZH_E_CONFIG;
    }
    const char *eq = strchr(name, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
    for (size_t k = 0; k < NOPTS; k++) {
        if (opts[k].flag && strlen(opts[k].flag) == nlen && strncmp(opts[k].flag, name, nlen) == 0)
            *o = &opts[k];
    }
    if (!*o) {
        zh_buf_printf(err, "unknown flag '--%.*s' (see --help)", (int)nlen, name);
        return ZH_E_CONFIG;
    }
    (*i)++;
    if (eq) {
        *value = eq + 1;
        if (!takes_value(*o) && (*o)->type != T_BOOL) {
            zh_buf_printf(err, "--%s: takes no value", (*o)->flag);
            return ZH_E_CONFIG;
        }
    } else if (takes_value(*o)) {
        if (*i >= argc || strncmp(argv[*i], "--", 2) == 0) {
            zh_buf_printf(err, "--%s: missing value (expected %s)", (*o)->flag, (*o)->arg);
            return ZH_E_CONFIG;
        }
        *value = argv[(*i)++];
    }
    if (*value && !**value && (*o)->type != T_BOOL) {
        zh_buf_printf(err, "--%s: missing value (expected %s)", (*o)->flag, (*o)->arg);
        return ZH_E_CONFIG;
    }
    return 0;
}

int zh_config_parse_args(struct zh_config *cfg, int argc, char *const *argv,
                         struct zh_config_strlist *warnings, struct zh_buf *err)
{
    /* -h and -V win over everything, even a broken command line. */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return ZH_CONFIG_HELP;
        if (strcmp(argv[i], "-V") == 0 || strcmp(argv[i], "--version") == 0)
            return ZH_CONFIG_VERSION;
    }

    /* Pass 1: check the shape of every flag and find --config (the last one counts). */
    const char *config = NULL;
    for (int i = 1; i < argc;) {
        const struct opt *o;
        const char *value;
        int rc = next_flag(argc, argv, &i, &o, &value, err);
        if (rc < 0)
            return rc;
        if (o && o->type == T_CONFIG)
            config = value;
    }
    if (config) {
        set_str(cfg, offsetof(struct zh_config, config_file), config);
        int rc = zh_config_load_file(cfg, config, warnings, err);
        if (rc < 0)
            return rc;
    }

    /* Pass 2: apply the flags in order. A repeatable flag replaces the file's list. */
    bool replaced[NOPTS];
    memset(replaced, 0, sizeof(replaced));
    for (int i = 1; i < argc;) {
        const struct opt *o;
        const char *value;
        int rc = next_flag(argc, argv, &i, &o, &value, err);
        if (rc < 0)
            return rc;
        if (!o || o->type == T_CONFIG)
            continue;
        if (o->type == T_VERBOSE) {
            cfg->log_level = 3;
            continue;
        }
        if (o->type == T_TEST) {
            cfg->test_config = true;
            continue;
        }
        if (o->type == T_BOOL && !value) {
            *(bool *)field(cfg, o->off) = true;
            char w[128];
            snprintf(w, sizeof(w), "--%s", o->flag);
            set_where(cfg, o, w);
            continue;
        }
        size_t idx = (size_t)(o - opts);
        if ((o->type == T_LIST || o->type == T_LISTEN) && !replaced[idx]) {
            if (o->type == T_LIST)
                zh_config_strlist_free(field(cfg, o->off));
            else
                listen_clear(&cfg->server);
            replaced[idx] = true;
        }
        struct zh_buf why = {0}, bad = {0};
        if (set_value(cfg, o, value, &why, &bad) < 0) {
            zh_buf_printf(err, "--%s: bad value '%s': %s", o->flag,
                          bad.len ? zh_buf_cstr(&bad) : value, zh_buf_cstr(&why));
            rc = ZH_E_CONFIG;
        } else {
            char w[128];
            snprintf(w, sizeof(w), "--%s", o->flag);
            set_where(cfg, o, w);
        }
        zh_buf_free(&why);
        zh_buf_free(&bad);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- whole-config checks ---- */

static int fail(struct zh_buf *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct zh_buf *err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    zh_buf_puts(err, msg);
    return ZH_E_CONFIG;
}

int zh_config_validate(const struct zh_config *cfg, struct zh_buf *err)
{
    const struct zh_config_client *c = &cfg->client;
    const struct zh_config_server *s = &cfg->server;
    struct zh_buf why = {0};

    if (cfg->log_level < 0 || cfg->log_level > 4)
        return fail(err, "log level %d out of range: expected 0..4", cfg->log_level);
    if (cfg->workers < 1 || cfg->workers > ZH_CONFIG_WORKERS_MAX)
        return fail(err, "workers %d out of range: expected 1..%d", cfg->workers,
                    ZH_CONFIG_WORKERS_MAX);
    if (!cfg->id || check_id(cfg->id, &why) < 0) {
        zh_buf_free(&why);
        return fail(err,
                    "bad instance id: expected a non-empty id of at most %d bytes without "
                    "spaces",
                    ID_MAX);
    }
    if (cfg->shutdown_timeout_ms < 0)
        return fail(err, "shutdown timeout must not be negative");

    /* Zurl's rule: the three stream sockets come together. */
    bool any = c->in_spec || c->in_stream_spec || c->out_spec;
    bool all = c->in_spec && c->in_stream_spec && c->out_spec;
    if (any && !all)
        return fail(err, "if any of in_spec, in_stream_spec or out_spec is set then all of them "
                         "must be set");

    bool client = zh_config_client_enabled(cfg);
    bool server = zh_config_server_enabled(cfg);
    if (!client && !server)
        return fail(err, "nothing to do: configure the client role (in_spec+in_stream_spec+"
                         "out_spec and/or in_req_spec in [General] of --config, or "
                         "--zserver-stream/--zserver-req) or the server role (--listen with "
                         "--zclient-stream/--zclient-req)");

    if (server) {
        if (!s->listen_count)
            return fail(err, "--zclient-stream/--zclient-req given without --listen: the server "
                             "role has nothing to accept");
        if (!s->zclient_stream.count && !s->zclient_req.count)
            return fail(err, "--listen needs --zclient-stream or --zclient-req (the handlers' "
                             "sockets)");
        for (size_t i = 0; i < s->listen_count; i++) {
            const struct zh_config_listen *l = &s->listen[i];
            const char *w = l->where && l->where[0] != '-' ? l->where : NULL;
            if (l->req && !s->zclient_req.count)
                return fail(err, "%s%slisten '%s' is in req mode but no --zclient-req is set",
                            w ? w : "", w ? ": key 'listen': " : "", l->raw);
            if (!l->req && !s->zclient_stream.count)
                return fail(err, "%s%slisten '%s' is in stream mode but no --zclient-stream is set",
                            w ? w : "", w ? ": key 'listen': " : "", l->raw);
        }
        if ((long long)s->req_maxconn + s->stream_maxconn > ZH_CONFIG_CONNS_MAX)
            return fail(err, "req_maxconn + stream_maxconn is too large: at most %d in total",
                        ZH_CONFIG_CONNS_MAX);
        if (s->keepalive_interval_ms >= s->session_expiry_ms) {
            if (zh_config_where(cfg, "server-keepalive-ms", &why) ||
                zh_config_where(cfg, "server-session-expiry-ms", &why))
                zh_buf_puts(&why, ": ");
            int rc = fail(err,
                          "%s[server] keepalive_interval_ms (%lld) must be shorter than "
                          "session_expiry_ms (%lld)",
                          zh_buf_cstr(&why), (long long)s->keepalive_interval_ms,
                          (long long)s->session_expiry_ms);
            zh_buf_free(&why);
            return rc;
        }
    }
    if (client && c->keepalive_interval_ms >= c->session_expiry_ms) {
        if (zh_config_where(cfg, "client-keepalive-ms", &why) ||
            zh_config_where(cfg, "client-session-expiry-ms", &why))
            zh_buf_puts(&why, ": ");
        int rc = fail(err,
                      "%s[General] keepalive_interval_ms (%lld) must be shorter than "
                      "session_expiry_ms (%lld)",
                      zh_buf_cstr(&why), (long long)c->keepalive_interval_ms,
                      (long long)c->session_expiry_ms);
        zh_buf_free(&why);
        return rc;
    }
    zh_buf_free(&why);
    return 0;
}

/* ---- --help ---- */

/* The help of one entry and its default, as --help, zhttpd(8) and docs/configuration.md show it. */
static void help_text(const struct opt *o, bool cli, struct zh_buf *text)
{
    zh_buf_puts(text, o->help);
    /* A switch on the command line is off unless given: its default says nothing. */
    bool quiet = cli && o->type == T_BOOL && o->def && strcmp(o->def, "false") == 0;
    if (o->def && !quiet && !strstr(o->help, "[default"))
        zh_buf_printf(text, " [default:\x01%s]", o->def); /* \x01: a space not to break at */
}

/* One entry: the left column, then the help (and default) word-wrapped to 100 columns. */
static void usage_line(FILE *out, int indent, const char *left, const struct opt *o, bool cli)
{
    enum { COL = 38, WIDTH = 100 };
    struct zh_buf text = {0};
    help_text(o, cli, &text);
    int col = fprintf(out, "%*s%s", indent, "", left);
    const char *p = zh_buf_cstr(&text);
    bool first = true;
    while (*p) {
        size_t n = strcspn(p, " ");
        if (first || col + 1 + (int)n > WIDTH) {
            if (!first || col >= COL - 1) {
                fputc('\n', out);
                col = 0;
            }
            col += fprintf(out, "%*s", COL - col, "");
        } else {
            fputc(' ', out);
            col++;
        }
        for (size_t i = 0; i < n; i++)
            fputc(p[i] == '\x01' ? ' ' : p[i], out);
        col += (int)n;
        first = false;
        p += n;
        while (*p == ' ')
            p++;
    }
    fputc('\n', out);
    zh_buf_free(&text);
}

void zh_config_usage(FILE *out)
{
    static const char *const titles[] = {
        [G_GENERAL] = "General",
        [G_CLIENT] = "Client role (outbound HTTP for ZeroMQ requesters, Zurl's job)",
        [G_SERVER] = "Server role (inbound HTTP handed to ZeroMQ handlers, Condure's job)",
    };
    fputs("Usage: zhttpd [--config FILE] [OPTIONS]\n"
          "\n"
          "HTTP/WebSocket client (Zurl) and server (Condure) for ZeroMQ handlers, speaking "
          "ZHTTP.\n"
          "Every flag takes \"--flag VALUE\" or \"--flag=VALUE\"; switches take no value (or "
          "=true/=false).\n"
          "Flags override the --config file; a repeatable flag replaces the file's list.\n"
          "Durations in SECONDS accept up to three decimals (0.25).\n",
          out);
    for (size_t g = 0; g < ZH_ARRAY_SIZE(titles); g++) {
        fprintf(out, "\n%s:\n", titles[g]);
        for (size_t i = 0; i < NOPTS; i++) {
            const struct opt *o = &opts[i];
            if (!o->flag || o->group != g)
                continue;
            char left[64];
            if (o->type == T_HELP || o->type == T_VERSION || o->type == T_TEST)
                snprintf(left, sizeof(left), "-%c, --%s",
                         o->type == T_HELP      ? 'h'
                         : o->type == T_VERSION ? 'V'
                                                : 't',
                         o->flag);
            else if (takes_value(o))
                snprintf(left, sizeof(left), "--%s %s", o->flag, o->arg);
            else
                snprintf(left, sizeof(left), "--%s", o->flag);
            usage_line(out, 2, left, o, true);
        }
    }
    fputs("\nConfig file (INI; '#' and ';' start comment lines; an empty value means unset;\n"
          "list keys are comma-separated and accumulate when repeated; booleans are\n"
          "true/false, yes/no, on/off or 1/0; unknown keys are warnings):\n",
          out);
    static const unsigned secs[] = {SEC_GENERAL, SEC_SERVER};
    for (size_t k = 0; k < ZH_ARRAY_SIZE(secs); k++) {
        fprintf(out, "\n  [%s]%s\n", sec_name(secs[k]),
                secs[k] == SEC_GENERAL ? " (Zurl's keys with Zurl's meaning, and the client role)"
                                       : " (the server role: one key per flag)");
        for (size_t i = 0; i < NOPTS; i++) {
            const struct opt *o = &opts[i];
            if (!o->key || !(o->sec & secs[k]))
                continue;
            char left[64];
            snprintf(left, sizeof(left), "%s=%s", o->key, o->arg ? o->arg : "BOOL");
            usage_line(out, 4, left, o, false);
        }
    }
}

/* ---- the table for documentation generators (packaging/zhttpd-doc.c) ---- */

int zh_config_doc_entry(size_t i, struct zh_config_doc *d, struct zh_buf *help_cli,
                        struct zh_buf *help_key)
{
    static const char *const titles[] = {
        [G_GENERAL] = "General",
        [G_CLIENT] = "Client role",
        [G_SERVER] = "Server role",
    };
    if (i >= NOPTS)
        return -1;
    const struct opt *o = &opts[i];
    memset(d, 0, sizeof(*d));
    d->flag = o->flag;
    d->key = o->key;
    d->in_general = (o->sec & SEC_GENERAL) != 0;
    d->in_server = (o->sec & SEC_SERVER) != 0;
    d->group = (int)o->group;
    d->group_title = titles[o->group];
    d->arg = takes_value(o) ? o->arg : NULL;
    d->key_arg = o->arg ? o->arg : "BOOL";
    d->short_flag = o->type == T_HELP      ? 'h'
                    : o->type == T_VERSION ? 'V'
                    : o->type == T_TEST    ? 't'
                                           : 0;
    d->def = o->def;
    if (help_cli)
        help_text(o, true, help_cli);
    if (help_key)
        help_text(o, false, help_key);
    return 0;
}
