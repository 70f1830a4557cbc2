/* zhttpd settings: the model, the INI config file loader and the command-line parser.
 *
 * One struct zh_config holds every setting of both roles. zh_config_init() fills in the defaults,
 * zh_config_parse_args() loads the --config file first and then applies the command-line flags on
 * top, and zh_config_validate() checks that the result makes sense as a whole. Nothing here prints
 * or exits: errors are written into a caller-provided struct zh_buf as one line, and warnings are
 * appended to a caller-provided string list, so main decides how to log them.
 *
 * Config file (INI, Zurl-compatible):
 *   - [General] holds Zurl's keys with Zurl's meaning plus zhttpd's own client-role keys; keys
 *     before any section header count as [General] (as QSettings does). [server] holds the
 *     server-role settings, one key per Condure flag with dashes as underscores. The general keys
 *     (instance_id/id, workers, log_level, logfile, shutdown_timeout) are accepted in both.
 *     Section names match case-insensitively.
 *   - Lines are `key = value` with whitespace trimmed; a value wholly inside double quotes loses
 *     the quotes. Lines starting with `#` or `;` are comments (only whole lines).
 *   - An empty value means "unset": the setting keeps (or returns to) its default, as in Zurl.
 *   - List keys (allow, deny, dns_servers, zclient_stream, zclient_req, zserver_stream,
 *     zserver_req) take comma-separated values, and repeated keys accumulate. `listen` is
 *     repeatable too, but one listen spec per line, because a spec contains commas itself.
 *   - Unknown keys and sections are warnings "FILE:LINE: ..."; a bad value is an error
 *     "FILE:LINE: key 'x': bad value 'y': expected ...".
 *   - Booleans: true/false, yes/no, on/off, 1/0 (case-insensitive).
 *   - Durations in seconds accept up to three decimals ("0.25"); *_ms keys take milliseconds.
 *
 * Command line: every flag takes `--flag value` and `--flag=value`; switches (--compression,
 * --zclient-connect, ...) take no value, or `--switch=true|false`. Repeatable flags given on the
 * command line replace what the config file listed for them. */
#ifndef ZH_DAEMON_CONFIG_H
#define ZH_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shared/proto/buf.h"

/* Positive results of zh_config_parse_args(): the caller prints and exits 0. */
#define ZH_CONFIG_HELP    1 /* -h / --help: print zh_config_usage() */
#define ZH_CONFIG_VERSION 2 /* -V / --version: print the version */

/* zh_config_load_file() reports every bad line, not just the first: err holds one line per error
 * separated by '\n'. */

#define ZH_CONFIG_WORKERS_MAX 1024
#define ZH_CONFIG_CONNS_MAX   10000000 /* req_maxconn + stream_maxconn (Condure's limit) */

/* A growable list of heap strings. A zero-initialised list is empty and valid. */
struct zh_config_strlist {
    char **items;
    size_t count;
    size_t _cap; /* private */
};

/* Append a copy of s. */
void zh_config_strlist_add(struct zh_config_strlist *l, const char *s);
/* Free every string and the array; the list is empty and reusable afterwards. */
void zh_config_strlist_free(struct zh_config_strlist *l);

/* Zurl's `defpolicy`. UNSET means the config did not say: Zurl's default (allow) applies and
 * zhttpd's own default deny set for internal addresses is in force (see DESIGN.md). */
enum zh_config_policy {
    ZH_CONFIG_POLICY_UNSET = 0,
    ZH_CONFIG_POLICY_ALLOW,
    ZH_CONFIG_POLICY_DENY,
};

/* One parsed --listen / `listen` value: `[addr:]port[,params]` or `path,local[,params]`.
 * Params: stream (default) | req, tls, default-cert=NAME (needs tls), local, mode=OCTAL,
 * user=NAME, group=NAME (the last three need local). All strings are heap-owned. */
struct zh_config_listen {
    char *raw;          /* the value as given */
    char *addr;         /* numeric IPv4 or IPv6 (no brackets); "0.0.0.0" for a bare port; NULL
                           when local */
    int port;           /* 0..65535 (0 = any free port); 0 when local */
    int family;         /* AF_INET, AF_INET6 or AF_UNIX (local) */
    char *path;         /* unix socket path when local, else NULL */
    bool local;         /* unix socket */
    bool req;           /* req mode (whole request/response) instead of stream mode */
    bool tls;           /* TLS listener (TCP only) */
    char *default_cert; /* certificate name for clients without SNI, NULL = none */
    int mode;           /* unix socket file mode, -1 = leave as created */
    char *user;         /* unix socket owner, NULL = leave */
    char *group;        /* unix socket group, NULL = leave */
    char *where;        /* "FILE:LINE" of the config line, or "--listen"; NULL = unknown */
};

/* Parse one listen value into *out (overwritten; free with zh_config_listen_free()). Returns 0,
 * or ZH_E_CONFIG with the reason in err ("...: expected ..."). */
int zh_config_parse_listen(const char *value, struct zh_config_listen *out, struct zh_buf *err);
/* Free the strings of a parsed listen value (the struct itself is the caller's). */
void zh_config_listen_free(struct zh_config_listen *l);

/* Split a --metrics value "[addr:]port" (IPv6 in brackets) into addr (default 127.0.0.1; size
 * addr_size) and port. Returns 0, or -1 when it is not that shape. */
int zh_config_parse_metrics(const char *value, char *addr, size_t addr_size, int *port);

/* Check one allow/deny pattern with the policy's own grammar (zh_policy_check_pattern() in
 * client/policy.h: exact names/addresses, one `*`, subnets 10/8, 172.16/12, 10./8,
 * 10.0.0.0/255.0.0.0, IPv6/len), so what the config accepts is what the policy enforces. Returns
 * 0 or ZH_E_CONFIG with the reason in err. The raw pattern is what the config keeps. */
int zh_config_check_pattern(const char *pattern, struct zh_buf *err);

/* Client role (Zurl's job): [General]. Zurl's keys keep Zurl's meaning and defaults. */
struct zh_config_client {
    char *in_spec;        /* PULL, first packets of streamed requests; NULL = unset */
    char *in_stream_spec; /* ROUTER, later packets of streamed requests */
    char *out_spec;       /* PUB (XPUB), responses of streamed requests */
    char *in_req_spec;    /* ROUTER, non-streamed request/response */
    struct zh_config_strlist zserver_stream; /* --zserver-stream spec bases (Condure 1.10) */
    struct zh_config_strlist zserver_req;    /* --zserver-req specs */
    bool zserver_connect;                    /* connect the --zserver-* sockets instead of bind */
    int ipc_file_mode;                       /* octal permissions for ipc binds, -1 = unset */
    enum zh_config_policy defpolicy;
    struct zh_config_strlist allow; /* raw patterns (see zh_config_check_pattern) */
    struct zh_config_strlist deny;
    bool allow_ipv6;                /* Zurl default false */
    int max_open_requests;          /* whole process; -1 = unlimited (Zurl's default) */
    size_t buffer_size;             /* per request (Zurl: 200000) */
    int64_t timeout_ms;             /* inactivity limit, Zurl `timeout` (600 s); 0 = none */
    int64_t connection_max_time_ms; /* max age of a kept-alive connection (7200 s) */
    int in_hwm;                     /* ZeroMQ high-water marks (1000) */
    int out_hwm;
    struct zh_config_strlist dns_servers; /* "IP", "IP:port", "[IPv6]:port"; empty = resolv.conf */
    char *tls_ca_file;                    /* NULL = the system store */
    int64_t connect_timeout_ms;           /* 0 = libcurl's default */
    char *proxy;                          /* NULL = no proxy (environment proxies are ignored) */
    bool http2;                           /* allow HTTP/2 (default false) */
    bool allow_ignore_policies;           /* honour per-request ignore-policies (default true) */
    bool ws_compression;                  /* offer permessage-deflate on ws:// (default false) */
    bool deny_out_internal;               /* add the internal deny set even with defpolicy */
    int64_t keepalive_interval_ms;        /* ZHTTP keep-alive interval (30000) */
    int64_t session_expiry_ms;            /* ZHTTP session expiry (60000) */
};

/* Server role (Condure's job): [server]. */
struct zh_config_server {
    struct zh_config_listen *listen; /* listen_count entries, in the order given */
    size_t listen_count;
    size_t _listen_cap;                      /* private */
    struct zh_config_strlist zclient_stream; /* PUSH/ROUTER/SUB spec bases */
    struct zh_config_strlist zclient_req;    /* DEALER specs */
    bool zclient_connect;                    /* connect instead of bind */
    int stream_maxconn;                      /* 10000 */
    int req_maxconn;                         /* 100 */
    int max_tls_handshakes;                  /* TLS handshakes in progress (1024) */
    size_t buffer_size;                      /* per connection, two buffers each (8192) */
    size_t body_buffer_size;                 /* req mode body limit (100000) */
    int messages_max;                        /* queued WebSocket messages per connection (100) */
    int64_t req_timeout_ms;                  /* client timeout in req mode (30 s) */
    int64_t stream_timeout_ms;               /* client timeout in stream mode (1800 s) */
    int64_t head_timeout_ms;                 /* whole request head within this (30 s) */
    int ipc_file_mode;                       /* octal, -1 = unset */
    char *tls_identities_dir;                /* "." */
    bool compression;                        /* allow permessage-deflate */
    size_t ws_max_message;                   /* WebSocket message limit (1 MiB) */
    int64_t ws_close_timeout_ms;             /* client's close due within this (5 s) */
    bool ws_auto_pong;                       /* answer client pings ourselves */
    int64_t ws_ping_interval_ms;             /* keep-alive pings to idle clients (0 = off) */
    int64_t handler_wait_ms;                 /* wait for a handler before 503 (5 s) */
    size_t max_header_size;                  /* request head limit (65536) */
    int64_t keepalive_interval_ms;           /* ZHTTP keep-alive interval (45000) */
    int64_t session_expiry_ms;               /* ZHTTP session expiry (60000) */
};

/* Every setting. All strings are heap-owned; free with zh_config_free(). */
struct zh_config {
    int log_level;               /* Condure scale 0 error .. 4 trace; default 2 (info) */
    char *logfile;               /* NULL = stderr */
    char *id;                    /* instance id, our `from`; default "zhttpd" */
    int workers;                 /* worker threads, default = online CPUs (1..1024) */
    int64_t shutdown_timeout_ms; /* graceful drain on SIGTERM (10 s), 0 = cancel at once */
    char *config_file;           /* the --config path, NULL if none */
    char *metrics;               /* --metrics [addr:]port, NULL = off */
    char *access_log;            /* --access-log FILE or "-" (stdout), NULL = off */
    bool test_config;            /* -t / --test-config: check everything, bind nothing, exit */
    struct zh_config_client client;
    struct zh_config_server server;
    char **_where; /* private: per option row, where its value was last set (zh_config_where) */
};

/* Fill cfg with the defaults (overwrites whatever was there). */
void zh_config_init(struct zh_config *cfg);

/* Free every string and list of cfg; call zh_config_init() again before reusing it. */
void zh_config_free(struct zh_config *cfg);

/* Load an INI file on top of cfg. Warnings (unknown keys and sections) are appended to warnings
 * (may be NULL to drop them). Returns 0; ZH_E_CONFIG on a bad line or value; -errno when the file
 * cannot be read. Every failure leaves one line in err. On failure cfg is partially updated. */
int zh_config_load_file(struct zh_config *cfg, const char *path, struct zh_config_strlist *warnings,
                        struct zh_buf *err);

/* As zh_config_load_file(), from the NUL-terminated text; name stands for the file name in
 * messages. */
int zh_config_load_string(struct zh_config *cfg, const char *name, const char *text,
                          struct zh_config_strlist *warnings, struct zh_buf *err);

/* Parse the command line (argv[0] is the program name). First pass: find -h/--help and
 * -V/--version (returned at once as ZH_CONFIG_HELP / ZH_CONFIG_VERSION) and --config, which is then
 * loaded; second pass: apply every other flag in order, overriding the file. Returns 0, a positive
 * ZH_CONFIG_* code, ZH_E_CONFIG (unknown flag, missing or bad value: err names the flag), or the
 * loader's errors. Warnings from the config file go to warnings (may be NULL). */
int zh_config_parse_args(struct zh_config *cfg, int argc, char *const *argv,
                         struct zh_config_strlist *warnings, struct zh_buf *err);

/* Check the settings as a whole (some role to run, Zurl's in_spec/in_stream_spec/out_spec rule,
 * listen needs zclient specs, ranges, keep-alive shorter than expiry). Returns 0 or ZH_E_CONFIG
 * with the reason in err. */
int zh_config_validate(const struct zh_config *cfg, struct zh_buf *err);

/* True when the client role has sockets to serve (Zurl specs or --zserver-*). */
bool zh_config_client_enabled(const struct zh_config *cfg);

/* True when the server role is configured (--listen or --zclient-*). */
bool zh_config_server_enabled(const struct zh_config *cfg);

/* Where the setting named by flag or key (a flag name without "--" or a config key; the first row
 * that matches and was set) got its value: appends "FILE:LINE: key 'KEY'" for a config file line,
 * "--FLAG" for the command line, and returns true; returns false (appending nothing) when the
 * setting still has its default. */
bool zh_config_where(const struct zh_config *cfg, const char *name, struct zh_buf *out);

/* Print the complete --help text (flags grouped by role with defaults, then the config keys). */
void zh_config_usage(FILE *out);

/* One row of the option table, for the generators of zhttpd(8) and docs/configuration.md. */
struct zh_config_doc {
    const char *flag;        /* without "--"; NULL = config file only */
    const char *key;         /* config key; NULL = command line only */
    bool in_general;         /* key accepted in [General] */
    bool in_server;          /* key accepted in [server] */
    int group;               /* 0 general, 1 client role, 2 server role (the --help groups) */
    const char *group_title; /* "General", "Client role", "Server role" */
    const char *arg;         /* value name on the command line; NULL = a switch */
    const char *key_arg;     /* value name in the config file */
    char short_flag;         /* 'h', 'V' or 't', else 0 */
    const char *def;         /* default as text; NULL = unset */
};

/* Row i of the table (0, 1, ... until it returns -1). help_cli / help_key (either may be NULL)
 * receive the help with its default exactly as --help prints it for the flag / the key; a \x01
 * byte marks a space that should not break a line. */
int zh_config_doc_entry(size_t i, struct zh_config_doc *d, struct zh_buf *help_cli,
                        struct zh_buf *help_key);

#endif
