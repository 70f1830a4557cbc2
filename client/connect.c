#include "client/connect.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shared/proto/mem.h"
#include "shared/rt/log.h"

#define DEFAULT_TIMEOUT_MS 10000

struct zh_connect_ctx {
    struct zh_loop *loop;
    struct zh_resolver *resolver;
    const struct zh_policy *policy;
    SSL_CTX *ssl_ctx;
    uint32_t timeout_ms;
    struct zh_connect *conns; /* every connection not yet freed */
};

/* One connection attempt. */
enum cstate {
    ST_RESOLVING,  /* waiting for the resolver */
    ST_CONNECTING, /* TCP connect to addrs[next - 1] in progress */
    ST_TUNNEL,     /* HTTP CONNECT through the proxy: request out, reading its answer */
    ST_HANDSHAKE,  /* TLS handshake on the connected socket */
    ST_DONE,       /* result set, completion deferred */
    ST_CANCELLED,  /* cancelled, free deferred */
};

static const char *const state_names[] = {"resolving", "connecting", "tunnel",
                                          "handshake", "done",       "cancelled"};

struct zh_connect {
    struct zh_connect *lprev, *lnext; /* ctx->conns */
    struct zh_connect_ctx *ctx;
    enum cstate state;
    zh_connect_cb *cb;
    void *data;

    char *host;         /* uri host, brackets removed */
    char *connect_host; /* where to connect (host when not given), brackets removed */
    uint16_t port;      /* the port connected to */
    bool tls, ignore_tls_errors, trust_connect_host, ignore_policies;
    uint32_t timeout_ms;
    unsigned char *alpn;
    unsigned alpn_len;
    char *target;      /* through a proxy: the tunnel's end (connect-host or host), else NULL */
    uint16_t tport;    /* and its port */
    struct zh_buf tun; /* through a proxy: the CONNECT request, then the proxy's answer */
    size_t tun_off;

    struct zh_resolve_req *rreq;
    union zh_sockaddr addrs[ZH_RESOLVER_MAX_ADDRS];
    unsigned naddrs, next; /* next address to try */
    unsigned denied, timeouts, failures;

    int fd;
    SSL *ssl;
    struct zh_io io;
    bool io_inited;
    struct zh_timer timer;
    struct zh_defer done;

    int status;
    const char *condition;
    char detail[256];
};

static void set_state(struct zh_connect *cn, enum cstate st)
{
    zh_trace("connect %s:%u -> [%s]", cn->connect_host, (unsigned)cn->port, state_names[st]);
    cn->state = st;
}

/* ---- context ---- */

struct zh_connect_ctx *zh_connect_ctx_new(struct zh_loop *loop, struct zh_resolver *resolver,
                                          const struct zh_policy *policy,
                                          const struct zh_connect_ctx_config *cfg,
                                          struct zh_buf *err)
{
    ERR_clear_error();
    SSL_CTX *sc = SSL_CTX_new(TLS_client_method());
    if (!sc) {
        zh_buf_printf(err, "OpenSSL: cannot create a client context: %s",
                      ERR_reason_error_string(ERR_get_error()));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION);
    SSL_CTX_set_mode(sc, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION);
    /* The system store always; tls_ca_file adds anchors on top. */
    if (SSL_CTX_set_default_verify_paths(sc) != 1)
        zh_warn("OpenSSL: cannot load the system trust store");
    if (cfg && cfg->tls_ca_file && *cfg->tls_ca_file) {
        ERR_clear_error();
        if (SSL_CTX_load_verify_locations(sc, cfg->tls_ca_file, NULL) != 1) {
            unsigned long e = ERR_get_error();
            zh_buf_printf(err, "tls_ca_file '%s': %s", cfg->tls_ca_file,
                          e ? ERR_reason_error_string(e) : "cannot load certificates");
            SSL_CTX_free(sc);
            ERR_clear_error();
            return NULL;
        }
    }
    struct zh_connect_ctx *ctx = zh_calloc(1, sizeof(*ctx));
    ctx->loop = loop;
    ctx->resolver = resolver;
    ctx->policy = policy;
    ctx->ssl_ctx = sc;
    ctx->timeout_ms = cfg && cfg->connect_timeout_ms ? cfg->connect_timeout_ms : DEFAULT_TIMEOUT_MS;
    return ctx;
}

void zh_connect_ctx_set_policy(struct zh_connect_ctx *ctx, const struct zh_policy *policy)
{
    ctx->policy = policy;
}

SSL_CTX *zh_connect_ctx_ssl_ctx(struct zh_connect_ctx *ctx)
{
    return ctx->ssl_ctx;
}

static void conn_free(struct zh_connect *cn);

void zh_connect_ctx_free(struct zh_connect_ctx *ctx)
{
    if (!ctx)
        return;
    /* Cancelled connections whose deferred free has not run yet (the loop stopped first). */
    while (ctx->conns) {
        struct zh_connect *cn = ctx->conns;
        if (cn->state != ST_CANCELLED)
            zh_warn("connect: freeing the context with a connection to %s still running",
                    cn->connect_host);
        zh_connect_cancel(cn);
        zh_loop_defer_cancel(ctx->loop, &cn->done);
        conn_free(cn);
    }
    SSL_CTX_free(ctx->ssl_ctx);
    zh_free(ctx);
}

/* ---- helpers ---- */

static void close_socket(struct zh_connect *cn)
{
    if (cn->io_inited) {
        zh_io_stop(cn->ctx->loop, &cn->io);
        cn->io_inited = false;
    }
    if (cn->ssl) {
        SSL_free(cn->ssl);
        cn->ssl = NULL;
    }
    if (cn->fd >= 0) {
        close(cn->fd);
        cn->fd = -1;
    }
}

static void conn_unlink(struct zh_connect *cn)
{
    struct zh_connect_ctx *ctx = cn->ctx;
    if (cn->lprev)
        cn->lprev->lnext = cn->lnext;
    else
        ctx->conns = cn->lnext;
    if (cn->lnext)
        cn->lnext->lprev = cn->lprev;
    cn->lprev = cn->lnext = NULL;
}

/* Free the memory of a connection whose socket, watcher, timer and lookup are released. */
static void conn_release(struct zh_connect *cn)
{
    assert(!cn->io_inited && cn->fd < 0 && !cn->ssl && !cn->rreq);
    zh_free(cn->host);
    zh_free(cn->connect_host);
    zh_free(cn->alpn);
    zh_free(cn->target);
    zh_buf_free(&cn->tun);
    zh_free(cn);
}

static void conn_free(struct zh_connect *cn)
{
    conn_unlink(cn);
    close_socket(cn);
    zh_loop_timer_stop(cn->ctx->loop, &cn->timer);
    if (cn->rreq) {
        zh_resolve_cancel(cn->rreq);
        cn->rreq = NULL;
    }
    conn_release(cn);
}

/* Record the outcome and complete from the loop's pending phase. */
static void finish(struct zh_connect *cn, int status, const char *condition, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void finish(struct zh_connect *cn, int status, const char *condition, const char *fmt, ...)
{
    cn->status = status;
    cn->condition = condition;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(cn->detail, sizeof(cn->detail), fmt, ap);
        va_end(ap);
    }
    zh_loop_timer_stop(cn->ctx->loop, &cn->timer);
    if (status != 0)
        close_socket(cn);
    else if (cn->io_inited) {
        zh_io_stop(cn->ctx->loop, &cn->io);
        cn->io_inited = false;
    }
    set_state(cn, ST_DONE);
    zh_loop_defer(cn->ctx->loop, &cn->done);
}

static void done_cb(struct zh_defer *d, void *data)
{
    struct zh_connect *cn = data;
    ZH_UNUSED(d);
    if (cn->state == ST_CANCELLED) {
        conn_free(cn);
        return;
    }
    struct zh_connect_result res;
    memset(&res, 0, sizeof(res));
    res.status = cn->status;
    res.condition = cn->status ? cn->condition : NULL;
    res.detail = cn->detail;
    zh_stream_init(&res.stream, -1);
    if (!cn->status) {
        zh_stream_init(&res.stream, cn->fd);
        if (cn->ssl && zh_stream_tls_attach(&res.stream, cn->ssl) == 0)
            zh_stream_handshake(&res.stream); /* done already: only marks it established */
    }
    if (cn->next > 0)
        res.peer = cn->addrs[cn->next - 1];
    /* Ownership of the stream moves to the callee (on failure they are closed already). The
     * connection leaves the context first, so the callback may even free the context. finish()
     * stopped the watcher and the timer, so nothing below touches the context again. */
    cn->fd = -1;
    cn->ssl = NULL;
    conn_unlink(cn);
    cn->cb(cn, &res, cn->data);
    conn_release(cn);
}

void zh_connect_take(struct zh_connect_result *res, struct zh_stream *dst)
{
    *dst = res->stream;
    if (zh_stream_ssl(dst))
        SSL_set_app_data(zh_stream_ssl(dst), dst);
    zh_stream_init(&res->stream, -1);
}

static bool is_ip_literal(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static char *strip_brackets(const char *s)
{
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']')
        return zh_strndup(s + 1, n - 2);
    return zh_strdup(s);
}

/* ---- TLS ---- */

static void tls_error_detail(struct zh_connect *cn, int sslerr)
{
    long vr = SSL_get_verify_result(cn->ssl);
    unsigned long e = ERR_peek_last_error();
    char addr[INET6_ADDRSTRLEN];
    zh_sockaddr_str(&cn->addrs[cn->next - 1], addr, sizeof(addr));
    if (vr != X509_V_OK) {
        finish(cn, -EPROTO, ZH_COND_TLS_ERROR, "TLS with %s (%s): certificate verify failed: %s",
               cn->host, addr, X509_verify_cert_error_string(vr));
    } else if (e) {
        finish(cn, -EPROTO, ZH_COND_TLS_ERROR, "TLS with %s (%s): %s", cn->host, addr,
               ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "handshake failed");
    } else if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN) {
        finish(cn, -EPROTO, ZH_COND_TLS_ERROR,
               "TLS with %s (%s): connection closed during handshake", cn->host, addr);
    } else {
        finish(cn, -EPROTO, ZH_COND_TLS_ERROR, "TLS with %s (%s): handshake failed (error %d)",
               cn->host, addr, sslerr);
    }
    ERR_clear_error();
}

static void handshake_step(struct zh_connect *cn)
{
    ERR_clear_error();
    int rc = SSL_connect(cn->ssl);
    if (rc == 1) {
        finish(cn, 0, NULL, "connected to %s:%u with %s", cn->connect_host, (unsigned)cn->port,
               SSL_get_version(cn->ssl));
        return;
    }
    int e = SSL_get_error(cn->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        int r =
            zh_io_set(cn->ctx->loop, &cn->io, e == SSL_ERROR_WANT_READ ? ZH_EV_READ : ZH_EV_WRITE);
        if (r < 0)
            finish(cn, r, ZH_COND_CONNECTION_FAILED, "cannot watch socket: %s", strerror(-r));
        return;
    }
    tls_error_detail(cn, e);
}

static void start_tls(struct zh_connect *cn)
{
    struct zh_connect_ctx *ctx = cn->ctx;
    ERR_clear_error();
    cn->ssl = SSL_new(ctx->ssl_ctx);
    if (!cn->ssl || SSL_set_fd(cn->ssl, cn->fd) != 1) {
        finish(cn, -ENOMEM, ZH_COND_TLS_ERROR, "TLS setup failed");
        return;
    }
    SSL_set_connect_state(cn->ssl);
    /* SNI carries the uri host; RFC 6066 forbids literal addresses there. */
    if (!is_ip_literal(cn->host) && SSL_set_tlsext_host_name(cn->ssl, cn->host) != 1) {
        finish(cn, -EINVAL, ZH_COND_TLS_ERROR, "TLS: bad server name '%s'", cn->host);
        return;
    }
    if (cn->alpn && SSL_set_alpn_protos(cn->ssl, cn->alpn, cn->alpn_len) != 0) {
        finish(cn, -EINVAL, ZH_COND_TLS_ERROR, "TLS: bad ALPN list");
        return;
    }
    if (cn->ignore_tls_errors) {
        SSL_set_verify(cn->ssl, SSL_VERIFY_NONE, NULL);
    } else {
        const char *name =
            cn->trust_connect_host ? (cn->target ? cn->target : cn->connect_host) : cn->host;
        int ok;
        SSL_set_verify(cn->ssl, SSL_VERIFY_PEER, NULL);
        if (is_ip_literal(name))
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(cn->ssl), name);
        else
            ok = SSL_set1_host(cn->ssl, name);
        if (ok != 1) {
            finish(cn, -EINVAL, ZH_COND_TLS_ERROR, "TLS: cannot verify against '%s'", name);
            return;
        }
    }
    set_state(cn, ST_HANDSHAKE);
    zh_loop_update_time(ctx->loop);
    zh_loop_timer_start(ctx->loop, &cn->timer, cn->timeout_ms);
    handshake_step(cn);
}

/* ---- TCP ---- */

static void try_next(struct zh_connect *cn);

static void tunnel_step(struct zh_connect *cn);

static void connected(struct zh_connect *cn)
{
    zh_loop_timer_stop(cn->ctx->loop, &cn->timer);
    int one = 1;
    setsockopt(cn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (cn->target && cn->state != ST_TUNNEL) {
        set_state(cn, ST_TUNNEL);
        zh_loop_update_time(cn->ctx->loop);
        zh_loop_timer_start(cn->ctx->loop, &cn->timer, cn->timeout_ms);
        tunnel_step(cn);
        return;
    }
    if (cn->tls) {
        start_tls(cn);
        return;
    }
    finish(cn, 0, NULL, "connected to %s:%u", cn->connect_host, (unsigned)cn->port);
}

/* Through a proxy: send "CONNECT target:port", read the answer head; a 2xx opens the tunnel. */
static void tunnel_step(struct zh_connect *cn)
{
    char pa[INET6_ADDRSTRLEN];
    zh_sockaddr_str(&cn->addrs[cn->next - 1], pa, sizeof(pa));
    while (cn->tun_off < cn->tun.len) {
        ssize_t n =
            send(cn->fd, cn->tun.data + cn->tun_off, cn->tun.len - cn->tun_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            zh_io_set(cn->ctx->loop, &cn->io, ZH_EV_WRITE);
            return;
        }
        if (n < 0) {
            finish(cn, -errno, ZH_COND_CONNECTION_FAILED, "proxy %s: write: %s", pa,
                   strerror(errno));
            return;
        }
        cn->tun_off += (size_t)n;
        if (cn->tun_off == cn->tun.len) {
            zh_buf_reset(&cn->tun);
            cn->tun_off = SIZE_MAX; /* sent: now the answer goes into tun */
        }
    }
    for (;;) {
        uint8_t b[512];
        /* Peek, then take only up to the end of the head: the tunnel's bytes stay unread. */
        ssize_t n = recv(cn->fd, b, sizeof(b), MSG_PEEK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            zh_io_set(cn->ctx->loop, &cn->io, ZH_EV_READ);
            return;
        }
        if (n <= 0) {
            finish(cn, -ECONNRESET, ZH_COND_CONNECTION_FAILED,
                   "proxy %s closed the connection before answering CONNECT", pa);
            return;
        }
        size_t take = (size_t)n, end = 0;
        for (size_t i = 0; i < (size_t)n && !end; i++) {
            zh_buf_putc(&cn->tun, b[i]);
            size_t have = cn->tun.len;
            if (have >= 4 && memcmp(cn->tun.data + have - 4, "\r\n\r\n", 4) == 0) {
                end = have;
                take = i + 1;
            }
        }
        (void)!recv(cn->fd, b, take, 0);
        if (!end && cn->tun.len > 8192) {
            finish(cn, -EPROTO, ZH_COND_CONNECTION_FAILED, "proxy %s: answer head over 8 KB", pa);
            return;
        }
        if (!end)
            continue;
        const char *h = (const char *)cn->tun.data;
        if (cn->tun.len < 12 || strncmp(h, "HTTP/1.", 7) != 0 || h[9] != '2') {
            char line[64];
            size_t l = strcspn(h, "\r\n");
            zh_log_escape(line, sizeof(line), h, l);
            finish(cn, -ECONNREFUSED, ZH_COND_CONNECTION_FAILED,
                   "proxy %s refused CONNECT %s:%u: %s", pa, cn->target, (unsigned)cn->tport, line);
            return;
        }
        zh_debug("connect: tunnel to %s:%u through proxy %s open", cn->target, (unsigned)cn->tport,
                 pa);
        zh_loop_timer_stop(cn->ctx->loop, &cn->timer);
        connected(cn);
        return;
    }
}

/* The current address failed (err is a positive errno); try the next one. */
static void addr_failed(struct zh_connect *cn, int err)
{
    char addr[INET6_ADDRSTRLEN];
    zh_sockaddr_str(&cn->addrs[cn->next - 1], addr, sizeof(addr));
    if (err == ETIMEDOUT)
        cn->timeouts++;
    else
        cn->failures++;
    snprintf(cn->detail, sizeof(cn->detail), "connect to %s port %u: %s", addr, (unsigned)cn->port,
             strerror(err));
    zh_debug("connect: %s", cn->detail);
    close_socket(cn);
    zh_loop_timer_stop(cn->ctx->loop, &cn->timer);
    try_next(cn);
}

static void io_cb(struct zh_io *io, uint32_t revents, void *data)
{
    struct zh_connect *cn = data;
    ZH_UNUSED(io);
    ZH_UNUSED(revents);
    if (cn->state == ST_HANDSHAKE) {
        handshake_step(cn);
        return;
    }
    if (cn->state == ST_TUNNEL) {
        tunnel_step(cn);
        return;
    }
    if (cn->state != ST_CONNECTING)
        return;
    /* Only a socket that polls writable has finished connecting (ignore stray wake-ups). */
    struct pollfd p = {.fd = cn->fd, .events = POLLOUT};
    if (poll(&p, 1, 0) <= 0)
        return;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(cn->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        addr_failed(cn, err);
        return;
    }
    connected(cn);
}

static void timer_cb(struct zh_timer *t, void *data)
{
    struct zh_connect *cn = data;
    ZH_UNUSED(t);
    if (cn->state == ST_CONNECTING) {
        addr_failed(cn, ETIMEDOUT);
    } else if (cn->state == ST_TUNNEL) {
        finish(cn, -ETIMEDOUT, ZH_COND_CONNECTION_TIMEOUT,
               "proxy did not open the tunnel to %s:%u within %u ms", cn->target,
               (unsigned)cn->tport, (unsigned)cn->timeout_ms);
    } else if (cn->state == ST_HANDSHAKE) {
        char addr[INET6_ADDRSTRLEN];
        zh_sockaddr_str(&cn->addrs[cn->next - 1], addr, sizeof(addr));
        finish(cn, -ETIMEDOUT, ZH_COND_CONNECTION_TIMEOUT,
               "TLS handshake with %s (%s) timed out after %u ms", cn->host, addr,
               (unsigned)cn->timeout_ms);
    }
}

/* Try the addresses in order, skipping those the policy denies. */
static void try_next(struct zh_connect *cn)
{
    struct zh_connect_ctx *ctx = cn->ctx;
    while (cn->next < cn->naddrs) {
        union zh_sockaddr *a = &cn->addrs[cn->next++];
        char addr[INET6_ADDRSTRLEN];
        zh_sockaddr_str(a, addr, sizeof(addr));
        if (!cn->ignore_policies && ctx->policy && !cn->target) {
            const char *why = NULL;
            if (zh_policy_check_addr(ctx->policy, cn->connect_host, &a->sa, &why) ==
                ZH_POLICY_DENY) {
                cn->denied++;
                snprintf(cn->detail, sizeof(cn->detail), "address %s of %s denied: %s", addr,
                         cn->connect_host, why);
                zh_info("connect: %s", cn->detail);
                continue;
            }
        }
        if (a->sa.sa_family == AF_INET)
            a->in.sin_port = htons(cn->port);
        else
            a->in6.sin6_port = htons(cn->port);
        int fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            cn->failures++;
            snprintf(cn->detail, sizeof(cn->detail), "socket for %s: %s", addr, strerror(errno));
            continue;
        }
        cn->fd = fd;
        int rc;
        do {
            rc = connect(fd, &a->sa, zh_sockaddr_len(a));
        } while (rc < 0 && errno == EINTR);
        set_state(cn, ST_CONNECTING);
        zh_io_init(&cn->io, fd, io_cb, cn);
        cn->io_inited = true;
        if (rc == 0) {
            connected(cn);
            return;
        }
        if (errno != EINPROGRESS) {
            addr_failed(cn, errno);
            return;
        }
        int r = zh_io_set(ctx->loop, &cn->io, ZH_EV_WRITE);
        if (r < 0) {
            addr_failed(cn, -r);
            return;
        }
        /* The loop's cached time may be a whole callback batch old: measure from now. */
        zh_loop_update_time(ctx->loop);
        zh_loop_timer_start(ctx->loop, &cn->timer, cn->timeout_ms);
        return;
    }
    /* Out of addresses. Zurl's rule: policy-violation only when every address was denied. */
    if (cn->denied > 0 && cn->denied == cn->naddrs)
        finish(cn, -EACCES, ZH_COND_POLICY_VIOLATION, NULL);
    else if (cn->timeouts > 0 && cn->failures == 0)
        finish(cn, -ETIMEDOUT, ZH_COND_CONNECTION_TIMEOUT, NULL);
    else
        finish(cn, -ECONNREFUSED, ZH_COND_CONNECTION_FAILED, NULL);
}

static void resolve_cb(struct zh_resolve_req *req, int status, const union zh_sockaddr *addrs,
                       size_t count, void *data)
{
    struct zh_connect *cn = data;
    ZH_UNUSED(req);
    cn->rreq = NULL;
    if (status < 0) {
        finish(cn, status, ZH_COND_CONNECTION_FAILED, "resolving %s: %s", cn->connect_host,
               zh_resolver_strerror(status));
        return;
    }
    cn->naddrs = (unsigned)ZH_MIN(count, (size_t)ZH_RESOLVER_MAX_ADDRS);
    memcpy(cn->addrs, addrs, cn->naddrs * sizeof(addrs[0]));
    try_next(cn);
}

struct zh_connect *zh_connect_start(struct zh_connect_ctx *ctx,
                                    const struct zh_connect_params *params, zh_connect_cb *cb,
                                    void *data)
{
    struct zh_connect *cn = zh_calloc(1, sizeof(*cn));
    cn->ctx = ctx;
    cn->cb = cb;
    cn->data = data;
    cn->fd = -1;
    cn->host = strip_brackets(params->host ? params->host : "");
    cn->connect_host = strip_brackets(
        params->connect_host && *params->connect_host ? params->connect_host : cn->host);
    cn->port = params->connect_port ? params->connect_port : params->port;
    cn->tls = params->tls;
    cn->ignore_tls_errors = params->ignore_tls_errors;
    cn->trust_connect_host = params->trust_connect_host;
    cn->ignore_policies = params->ignore_policies;
    cn->timeout_ms = params->timeout_ms ? params->timeout_ms : ctx->timeout_ms;
    if (params->alpn && params->alpn_len) {
        cn->alpn = zh_malloc(params->alpn_len);
        memcpy(cn->alpn, params->alpn, params->alpn_len);
        cn->alpn_len = params->alpn_len;
    }
    zh_timer_init(&cn->timer, timer_cb, cn);
    zh_defer_init(&cn->done, done_cb, cn);
    cn->lnext = ctx->conns;
    if (ctx->conns)
        ctx->conns->lprev = cn;
    ctx->conns = cn;
    set_state(cn, ST_RESOLVING);

    if (!*cn->host || cn->port == 0) {
        finish(cn, -EINVAL, ZH_COND_CONNECTION_FAILED, "no host or port to connect to");
        return cn;
    }
    if (!cn->ignore_policies && ctx->policy) {
        const char *why = NULL;
        const char *names[2] = {cn->host, cn->connect_host};
        for (int i = 0; i < 2; i++) {
            if (i == 1 && strcmp(cn->connect_host, cn->host) == 0)
                break;
            if (zh_policy_check_name(ctx->policy, names[i], &why) == ZH_POLICY_DENY) {
                finish(cn, -EACCES, ZH_COND_POLICY_VIOLATION, "%s denied: %s", names[i], why);
                return cn;
            }
        }
    }
    if (params->proxy_host && *params->proxy_host) {
        /* The proxy resolves the target and connects: its names were checked above (as curl's
         * proxied requests are), the proxy's own address is the operator's choice. */
        cn->target = cn->connect_host;
        cn->tport = cn->port;
        cn->connect_host = strip_brackets(params->proxy_host);
        cn->port = params->proxy_port;
        bool v6 = strchr(cn->target, ':') != NULL;
        zh_buf_printf(&cn->tun, "CONNECT %s%s%s:%u HTTP/1.1\r\nHost: %s%s%s:%u\r\n\r\n",
                      v6 ? "[" : "", cn->target, v6 ? "]" : "", (unsigned)cn->tport, v6 ? "[" : "",
                      cn->target, v6 ? "]" : "", (unsigned)cn->tport);
    }
    cn->rreq = zh_resolver_resolve(ctx->resolver, cn->connect_host, resolve_cb, cn);
    return cn;
}

void zh_connect_cancel(struct zh_connect *cn)
{
    if (cn->state == ST_CANCELLED)
        return;
    /* Release the socket and the lookup now; the memory goes in the next pending phase, since an
     * epoll event for our watcher may still be queued in the current batch. */
    close_socket(cn);
    zh_loop_timer_stop(cn->ctx->loop, &cn->timer);
    if (cn->rreq) {
        zh_resolve_cancel(cn->rreq);
        cn->rreq = NULL;
    }
    set_state(cn, ST_CANCELLED);
    zh_loop_defer(cn->ctx->loop, &cn->done);
}
