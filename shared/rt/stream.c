/* One transport for both roles: plain socket I/O, or an OpenSSL session over the same fd. See
 * stream.h for the contracts and docs/internals/tls.md for the TLS rules. */
#include "shared/rt/stream.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "shared/proto/mem.h"
#include "shared/rt/log.h"
#include "shared/rt/loop.h"

#define WRITE_CHUNK  16384        /* plaintext per SSL_write: one full TLS record */
#define WRITE_BUDGET (256 * 1024) /* plaintext per zh_stream_writev call, for fairness */
#define RECORD_MAX   16384        /* longest TLS plaintext record a ClientHello may come in */

struct zh_stream_tls {
    SSL *ssl;
    char *name;     /* server name (SNI) */
    char *identity; /* the identity presented */
    enum zh_stream_want want;
    size_t wpend; /* length of the SSL_write that must be retried (0 = none) */
    int fatal;    /* first fatal code; later calls return it again */
    bool established;
    bool shut;
    bool refused; /* an owner's callback refused the handshake (and wrote err) */
    char err[256];
};

const char *zh_stream_tls_reason(char *out, size_t outlen)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0) {
        snprintf(out, outlen, "unknown OpenSSL error");
    } else {
        const char *r = ERR_reason_error_string(e);
        if (r)
            snprintf(out, outlen, "%s", r);
        else
            ERR_error_string_n(e, out, outlen);
    }
    ERR_clear_error();
    return out;
}

void zh_stream_init(struct zh_stream *st, int fd)
{
    memset(st, 0, sizeof(*st));
    st->fd = fd;
}

int zh_stream_tls_attach(struct zh_stream *st, SSL *ssl)
{
    if (!ssl || SSL_set_fd(ssl, st->fd) != 1) {
        char reason[256];
        zh_error("tls: cannot create a connection: %s",
                 zh_stream_tls_reason(reason, sizeof(reason)));
        SSL_free(ssl);
        return -EPROTO;
    }
    zh_stream_free_tls(st);
    st->_tls = zh_calloc(1, sizeof(*st->_tls));
    st->_tls->ssl = ssl;
    SSL_set_app_data(ssl, st);
    return 0;
}

struct zh_stream *zh_stream_of(const SSL *ssl)
{
    return SSL_get_app_data(ssl);
}

SSL *zh_stream_ssl(const struct zh_stream *st)
{
    return st->_tls ? st->_tls->ssl : NULL;
}

bool zh_stream_is_tls(const struct zh_stream *st)
{
    return st->_tls != NULL;
}

/* Turn a failed SSL_* call (its return r, and errno right after it) into -EAGAIN (with want set),
 * 0 for end of stream, or a fatal code (with err set and a log line). */
static int tls_error(struct zh_stream_tls *t, int r, int sys_errno, const char *op)
{
    int e = SSL_get_error(t->ssl, r);
    unsigned long last = ERR_peek_last_error();
    char reason[200];
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        t->want = e == SSL_ERROR_WANT_READ ? ZH_STREAM_WANT_READ : ZH_STREAM_WANT_WRITE;
        return -EAGAIN;
    }
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && last == 0 && sys_errno == 0) ||
        (ERR_GET_LIB(last) == ERR_LIB_SSL &&
         ERR_GET_REASON(last) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
        /* close_notify, or TCP EOF (without close_notify, or before the handshake finished). */
        ERR_clear_error();
        return 0;
    }
    if (e == SSL_ERROR_SYSCALL && last == 0) {
        t->fatal = -sys_errno;
        snprintf(t->err, sizeof(t->err), "%s: %s", op, strerror(sys_errno));
    } else {
        t->fatal = -EPROTO;
        if (!t->refused)
            snprintf(t->err, sizeof(t->err), "%s: %s", op,
                     zh_stream_tls_reason(reason, sizeof(reason)));
    }
    ERR_clear_error();
    t->want = ZH_STREAM_WANT_NONE;
    if (!t->refused)
        zh_info("tls: connection failed%s%s: %s", t->name ? " for " : "", t->name ? t->name : "",
                t->err);
    return t->fatal;
}

static void note_established(struct zh_stream_tls *t)
{
    if (t->established || !SSL_is_init_finished(t->ssl))
        return;
    t->established = true;
    zh_debug("tls: established %s %s, name %s, identity %s", SSL_get_version(t->ssl),
             SSL_get_cipher_name(t->ssl), t->name ? t->name : "(none)",
             t->identity ? t->identity : "(none)");
}

int zh_stream_handshake(struct zh_stream *st)
{
    struct zh_stream_tls *t = st->_tls;
    if (!t)
        return 0;
    if (t->fatal)
        return t->fatal;
    t->want = ZH_STREAM_WANT_NONE;
    if (t->established)
        return 0;
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        note_established(t);
        return 0;
    }
    r = tls_error(t, r, errno, "handshake");
    if (r == 0) {
        /* The peer closed during the handshake: not established, nothing more will come. */
        t->fatal = -ECONNRESET;
        snprintf(t->err, sizeof(t->err), "handshake: connection closed by the peer");
        return t->fatal;
    }
    return r;
}

bool zh_stream_established(const struct zh_stream *st)
{
    return !st->_tls || st->_tls->established;
}

static ssize_t tls_read(struct zh_stream_tls *t, void *buf, size_t len)
{
    if (t->fatal)
        return t->fatal;
    t->want = ZH_STREAM_WANT_NONE;
    if (len == 0)
        return 0;
    ERR_clear_error();
    errno = 0;
    int r = SSL_read(t->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (r > 0) {
        note_established(t);
        return r;
    }
    return tls_error(t, r, errno, "read");
}

ssize_t zh_stream_read(struct zh_stream *st, void *buf, size_t len)
{
    if (st->_tls) {
        ssize_t r = tls_read(st->_tls, buf, len);
        st->_read_wants_write = r == -EAGAIN && st->_tls->want == ZH_STREAM_WANT_WRITE;
        return r;
    }
    ssize_t r;
    do {
        r = read(st->fd, buf, len);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

bool zh_stream_pending(const struct zh_stream *st)
{
    return st->_tls && !st->_tls->fatal && SSL_has_pending(st->_tls->ssl);
}

/* Copy up to len bytes from iov starting at (i, off) into dst without advancing the cursor. */
static size_t gather(const struct iovec *iov, int n, int i, size_t off, uint8_t *dst, size_t len)
{
    size_t got = 0;
    for (; i < n && got < len; i++, off = 0) {
        size_t take = ZH_MIN(iov[i].iov_len - off, len - got);
        memcpy(dst + got, (const uint8_t *)iov[i].iov_base + off, take);
        got += take;
    }
    return got;
}

static ssize_t tls_writev(struct zh_stream *st, const struct iovec *iov, int n)
{
    static _Thread_local uint8_t scratch[WRITE_CHUNK];
    struct zh_stream_tls *t = st->_tls;
    if (t->fatal)
        return t->fatal;
    t->want = ZH_STREAM_WANT_NONE;
    size_t total = 0;
    for (int k = 0; k < n; k++)
        total += iov[k].iov_len;
    if (total == 0)
        return 0;
    if (!t->established) {
        int r = zh_stream_handshake(st);
        if (r < 0)
            return r;
    }
    if (t->wpend > total) {
        t->fatal = -EINVAL;
        snprintf(t->err, sizeof(t->err),
                 "write: retried with %zu bytes after a blocked write of %zu", total, t->wpend);
        zh_error("tls: %s", t->err);
        return t->fatal;
    }

    /* One record per SSL_write. A record that blocks stays encrypted inside OpenSSL; it is retried
     * with the same length and counted once the socket takes it (the retry rule). */
    size_t done = 0;
    int i = 0;
    size_t off = 0;
    while (done < total && done < WRITE_BUDGET) {
        while (i < n && off == iov[i].iov_len) {
            i++;
            off = 0;
        }
        size_t chunk = t->wpend ? t->wpend : ZH_MIN(total - done, (size_t)WRITE_CHUNK);
        const void *p;
        if (iov[i].iov_len - off >= chunk) {
            p = (const uint8_t *)iov[i].iov_base + off;
        } else {
            gather(iov, n, i, off, scratch, chunk);
            p = scratch;
        }
        ERR_clear_error();
        errno = 0;
        int r = SSL_write(t->ssl, p, (int)chunk);
        if (r <= 0) {
            int rc = tls_error(t, r, errno, "write");
            if (rc == -EAGAIN) {
                t->wpend = chunk;
                return done ? (ssize_t)done : -EAGAIN;
            }
            if (rc == 0) {
                t->fatal = -EPIPE;
                snprintf(t->err, sizeof(t->err), "write: connection closed by the peer");
                rc = t->fatal;
            }
            return rc;
        }
        t->wpend = 0;
        done += (size_t)r;
        /* Advance the cursor by r bytes. */
        size_t adv = (size_t)r;
        while (adv) {
            size_t take = ZH_MIN(iov[i].iov_len - off, adv);
            off += take;
            adv -= take;
            if (off == iov[i].iov_len && adv) {
                i++;
                off = 0;
            }
        }
    }
    return (ssize_t)done;
}

ssize_t zh_stream_writev(struct zh_stream *st, const struct iovec *iov, int n)
{
    if (st->_tls) {
        ssize_t w = tls_writev(st, iov, n);
        st->_write_wants_read = w == -EAGAIN && st->_tls->want == ZH_STREAM_WANT_READ;
        return w;
    }
    ssize_t w;
    do {
        w = writev(st->fd, iov, n);
    } while (w < 0 && errno == EINTR);
    return w < 0 ? -errno : w;
}

enum zh_stream_want zh_stream_want(const struct zh_stream *st)
{
    return st->_tls ? st->_tls->want : ZH_STREAM_WANT_NONE;
}

uint32_t zh_stream_interest(const struct zh_stream *st, bool want_input, bool want_output)
{
    uint32_t ev = 0;
    if (want_input || st->_write_wants_read)
        ev |= ZH_EV_READ;
    if (want_output || st->_read_wants_write)
        ev |= ZH_EV_WRITE;
    return ev;
}

bool zh_stream_take_read_retry(struct zh_stream *st)
{
    bool r = st->_read_wants_write;
    st->_read_wants_write = false;
    return r;
}

bool zh_stream_take_write_retry(struct zh_stream *st)
{
    bool r = st->_write_wants_read;
    st->_write_wants_read = false;
    return r;
}

/* Send close_notify (best effort, once). */
static int tls_shutdown(struct zh_stream_tls *t)
{
    if (t->fatal)
        return t->fatal;
    if (!t->established || t->shut)
        return 0;
    t->want = ZH_STREAM_WANT_NONE;
    ERR_clear_error();
    errno = 0;
    int r = SSL_shutdown(t->ssl);
    int sys_errno = errno;
    if (r >= 0) {
        t->shut = true; /* 0: our close_notify is sent; we don't wait for the peer's */
        return 0;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        t->want = e == SSL_ERROR_WANT_WRITE ? ZH_STREAM_WANT_WRITE : ZH_STREAM_WANT_READ;
        return -EAGAIN;
    }
    /* Not logged: the usual cause is a peer that closed first, and the caller closes anyway. */
    char reason[200];
    bool sys = e == SSL_ERROR_SYSCALL && sys_errno != 0;
    snprintf(t->err, sizeof(t->err), "shutdown: %s",
             sys ? strerror(sys_errno) : zh_stream_tls_reason(reason, sizeof(reason)));
    ERR_clear_error();
    t->fatal = sys ? -sys_errno : -EPROTO;
    return t->fatal;
}

int zh_stream_shutdown(struct zh_stream *st)
{
    int rc = st->_tls ? tls_shutdown(st->_tls) : 0;
    if (shutdown(st->fd, SHUT_WR) < 0 && rc == 0)
        rc = -errno;
    return rc;
}

int zh_stream_linger(struct zh_stream *st, int rounds)
{
    char scratch[4096];
    for (int i = 0; i < rounds; i++) {
        ssize_t r;
        do {
            r = read(st->fd, scratch, sizeof(scratch));
        } while (r < 0 && errno == EINTR);
        if (r == 0)
            return 0;
        if (r < 0)
            return -errno;
    }
    return -EAGAIN;
}

const char *zh_stream_error(const struct zh_stream *st, ssize_t code)
{
    if (st->_tls && code == -EPROTO)
        return st->_tls->err;
    return strerror((int)-code);
}

const char *zh_stream_tls_error(const struct zh_stream *st)
{
    return st->_tls ? st->_tls->err : "";
}

void zh_stream_tls_refuse(struct zh_stream *st, const char *reason)
{
    if (!st->_tls)
        return;
    snprintf(st->_tls->err, sizeof(st->_tls->err), "%s", reason);
    st->_tls->refused = true;
}

static void set_str(char **dst, const char *s)
{
    zh_free(*dst);
    *dst = s ? zh_strdup(s) : NULL;
}

void zh_stream_tls_set_name(struct zh_stream *st, const char *name)
{
    if (st->_tls)
        set_str(&st->_tls->name, name);
}

void zh_stream_tls_set_identity(struct zh_stream *st, const char *identity)
{
    if (st->_tls)
        set_str(&st->_tls->identity, identity);
}

const char *zh_stream_tls_name(const struct zh_stream *st)
{
    return st->_tls ? st->_tls->name : NULL;
}

const char *zh_stream_tls_identity(const struct zh_stream *st)
{
    return st->_tls ? st->_tls->identity : NULL;
}

void zh_stream_free_tls(struct zh_stream *st)
{
    struct zh_stream_tls *t = st->_tls;
    if (!t)
        return;
    SSL_free(t->ssl);
    zh_free(t->name);
    zh_free(t->identity);
    zh_free(t);
    st->_tls = NULL;
    st->_read_wants_write = st->_write_wants_read = false;
}

void zh_stream_close(struct zh_stream *st)
{
    zh_stream_free_tls(st);
    if (st->fd >= 0)
        close(st->fd);
    st->fd = -1;
}

/* ---- what a fresh server connection speaks ---- */

int zh_stream_sniff(const struct zh_stream *st)
{
    uint8_t b;
    ssize_t r;
    do {
        r = recv(st->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? ZH_STREAM_SNIFF_NEED_MORE : -errno;
    if (r == 0)
        return ZH_STREAM_SNIFF_EOF;
    return b >= 'A' && b <= 'Z' ? ZH_STREAM_SNIFF_PLAIN : ZH_STREAM_SNIFF_TLS;
}

int zh_stream_hello_ready(struct zh_stream *st)
{
    int fd = st->fd;
    size_t need = 5; /* a record header: type, version, length */
    for (int round = 0; round < 2; round++) {
        int avail = 0;
        if (ioctl(fd, FIONREAD, &avail) < 0)
            return -errno;
        if (avail >= 5) {
            uint8_t h[5];
            ssize_t r;
            do {
                r = recv(fd, h, sizeof(h), MSG_PEEK | MSG_DONTWAIT);
            } while (r < 0 && errno == EINTR);
            if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                return -errno;
            if (r == 5) {
                size_t len = (size_t)h[3] << 8 | h[4];
                if (h[0] != 0x16 || len > RECORD_MAX)
                    need = 0;
                else
                    need = 5 + len;
            }
        }
        if ((size_t)avail >= need) {
            if (st->_lowat) {
                int one = 1;
                setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
                st->_lowat = false;
            }
            return ZH_STREAM_HELLO_READY;
        }
        if (round == 1)
            break;
        /* Readable with too few bytes only happens at the peer's FIN (or reset). */
        struct tcp_info ti;
        socklen_t tl = sizeof(ti);
        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 &&
            ti.tcpi_state != TCP_ESTABLISHED)
            return ZH_STREAM_HELLO_EOF;
        int lw = (int)need;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lw, sizeof(lw)) < 0)
            return ZH_STREAM_HELLO_READY; /* cannot wait without spinning: let OpenSSL read */
        st->_lowat = true;
        /* Bytes that arrived since FIONREAD: look again (the kernel also signals EPOLLIN when the
         * new mark is already met, but one more look is cheap). */
    }
    return ZH_STREAM_HELLO_WAIT;
}
