/* One transport for both roles: a non-blocking socket, optionally with an OpenSSL session on it,
 * behind one set of calls (read, writev, pending, interest, shutdown, linger, error), as redis's
 * connection.h puts socket.c and tls.c behind one ConnectionType. Callers never branch on TLS: a
 * plain stream is a TLS stream whose handshake is done and whose buffer is always empty.
 *
 * Every call returns a count (>= 0), -EAGAIN (wait: zh_stream_interest() says for what) or another
 * negative errno (-EPROTO for a TLS protocol failure: zh_stream_error() has the reason). The
 * embedded struct belongs to its owner (a server connection); use the API, the members are
 * private. One thread at a time per stream. See docs/internals/tls.md for the TLS rules (the write
 * retry rule, end of stream). */
#ifndef ZH_SHARED_RT_STREAM_H
#define ZH_SHARED_RT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct ssl_st; /* OpenSSL's SSL */
struct zh_stream_tls;

/* What an -EAGAIN from a TLS call waits for. During a handshake a read may need the fd writable
 * and a write may need it readable. */
enum zh_stream_want {
    ZH_STREAM_WANT_NONE = 0,
    ZH_STREAM_WANT_READ = 1,  /* wait for the fd to be readable, then retry */
    ZH_STREAM_WANT_WRITE = 2, /* wait for the fd to be writable, then retry */
};

struct zh_stream {
    int fd;                     /* owned: closed by zh_stream_close() */
    struct zh_stream_tls *_tls; /* NULL: plain */
    bool _read_wants_write;     /* the last read returned -EAGAIN waiting for POLLOUT */
    bool _write_wants_read;     /* the last write returned -EAGAIN waiting for POLLIN */
    bool _lowat;                /* SO_RCVLOWAT raised to wait for the whole ClientHello */
};

/* A plain stream over a connected, non-blocking fd (now owned by the stream). */
void zh_stream_init(struct zh_stream *st, int fd);

/* Run TLS over the stream from now on: ssl is a fresh session (accept or connect state set, its
 * context configured) that the stream owns from this call, also when it fails. Nothing is read or
 * written until the first call below; the handshake runs inside them. The stream is the session's
 * app data (see zh_stream_of()). Returns 0, or -EPROTO when OpenSSL cannot take the fd or ssl is
 * NULL (a failed SSL_new: the caller passes it on so the reason is logged here). */
int zh_stream_tls_attach(struct zh_stream *st, struct ssl_st *ssl);

/* The stream a TLS session belongs to, for OpenSSL callbacks (NULL for a foreign session). */
struct zh_stream *zh_stream_of(const struct ssl_st *ssl);

/* The stream's TLS session, or NULL for a plain stream. */
struct ssl_st *zh_stream_ssl(const struct zh_stream *st);

/* Whether the stream runs TLS. */
bool zh_stream_is_tls(const struct zh_stream *st);

/* Drive the TLS handshake only (a plain stream returns 0). Returns 0 once it is complete, -EAGAIN,
 * or a fatal negative code; a TCP close before it completes is -ECONNRESET (not logged: scanners
 * do it). Optional: read and writev also drive it. */
int zh_stream_handshake(struct zh_stream *st);

/* Whether the handshake has completed (always for a plain stream). */
bool zh_stream_established(const struct zh_stream *st);

/* Read bytes (decrypted, for TLS). Returns the count (> 0), 0 at end of stream (for TLS:
 * close_notify, or a TCP close without it, also during the handshake: HTTP framing detects
 * truncation), -EAGAIN, or a fatal negative code: -EPROTO for a TLS failure (bad handshake,
 * unrecognized name, bad record) or the socket's -errno (-ECONNRESET, ...). TLS may keep
 * decrypted bytes buffered after a read that filled buf: see zh_stream_pending(). */
ssize_t zh_stream_read(struct zh_stream *st, void *buf, size_t len);

/* Whether decrypted bytes are buffered, so a read returns data without the fd becoming readable
 * (check it after resuming reads that the caller paused, e.g. for back-pressure). */
bool zh_stream_pending(const struct zh_stream *st);

/* Send bytes from iov[0..n), in order. Returns the count taken (may be less than the total: keep
 * the rest), -EAGAIN, or a fatal negative code. TLS retry rule (OpenSSL's SSL_write rule): after
 * -EAGAIN or a short count, the next call must start with the bytes not yet counted, unchanged, at
 * least as many as before; they may have been encrypted already and are counted when the socket
 * takes them. Zero total bytes returns 0. */
ssize_t zh_stream_writev(struct zh_stream *st, const struct iovec *iov, int n);

/* What the last TLS -EAGAIN waits for (ZH_STREAM_WANT_NONE after any other result, and always
 * for a plain stream). */
enum zh_stream_want zh_stream_want(const struct zh_stream *st);

/* The ZH_EV_READ / ZH_EV_WRITE mask to watch the fd with, for a caller that wants input and/or has
 * output pending: a TLS read or write that blocked on the other direction adds it. */
uint32_t zh_stream_interest(const struct zh_stream *st, bool want_input, bool want_output);

/* After the fd became writable (or errored): whether a read blocked on writability, which the
 * caller must now retry. Clears the mark. */
bool zh_stream_take_read_retry(struct zh_stream *st);

/* After the fd became readable (or errored): whether a write blocked on readability, which the
 * caller must now retry. Clears the mark. */
bool zh_stream_take_write_retry(struct zh_stream *st);

/* Our last byte is out: send close_notify (TLS, best effort, once) and FIN (SHUT_WR). Returns 0,
 * -EAGAIN when close_notify could not be sent now (the FIN is sent anyway), or a negative code. */
int zh_stream_shutdown(struct zh_stream *st);

/* Lingering close: read and drop what the peer still sends (raw bytes, not decrypted), at most
 * rounds reads. Returns -EAGAIN when nothing more is there now, 0 when the peer closed, or
 * -errno. */
int zh_stream_linger(struct zh_stream *st, int rounds);

/* Text for an error code a call returned: the TLS reason for -EPROTO on a TLS stream, else
 * strerror. Valid until the next call on the stream. */
const char *zh_stream_error(const struct zh_stream *st, ssize_t code);

/* The reason of the last fatal TLS error ("" if none, and for a plain stream). */
const char *zh_stream_tls_error(const struct zh_stream *st);

/* For the owner's OpenSSL callbacks: a handshake is refused for reason (the stream keeps the text
 * as its error and logs no second line for the failure; the caller logs it). */
void zh_stream_tls_refuse(struct zh_stream *st, const char *reason);

/* For the owner's OpenSSL callbacks: the server name of the session (SNI, normalised) and the
 * identity chosen for it, for log lines and zh_stream_tls_name()/zh_stream_tls_identity(). NULL
 * clears. Copied. */
void zh_stream_tls_set_name(struct zh_stream *st, const char *name);
void zh_stream_tls_set_identity(struct zh_stream *st, const char *identity);

/* The names set above (NULL when unset, and for a plain stream). Valid until the stream is freed.
 */
const char *zh_stream_tls_name(const struct zh_stream *st);
const char *zh_stream_tls_identity(const struct zh_stream *st);

/* Free the TLS state (sends nothing: zh_stream_shutdown() first for a clean close). The fd stays
 * open and the stream is plain again. */
void zh_stream_free_tls(struct zh_stream *st);

/* Free the TLS state and close the fd (fd becomes -1). Idempotent. */
void zh_stream_close(struct zh_stream *st);

/* The last OpenSSL error on this thread as text, then clear the thread's error queue. */
const char *zh_stream_tls_reason(char *out, size_t outlen);

/* ---- what a fresh server connection speaks ---- */

enum zh_stream_sniff {
    ZH_STREAM_SNIFF_NEED_MORE = 0, /* no byte has arrived yet: wait for readable and ask again */
    ZH_STREAM_SNIFF_TLS = 1,       /* not plain HTTP (a TLS record 0x16, or anything else): TLS */
    ZH_STREAM_SNIFF_PLAIN = 2,     /* starts like an HTTP method ("GET / HTTP/1.1") */
    ZH_STREAM_SNIFF_EOF = 3,       /* the peer closed before sending anything */
};

/* Peek (MSG_PEEK | MSG_DONTWAIT, nothing is consumed) at the first byte of a fresh connection and
 * classify it. One byte decides: a TLS ClientHello record starts with 0x16, an HTTP request with an
 * uppercase method letter, so a slow client never leaves readable data unclassified (no busy loop
 * under level-triggered epoll). Returns an enum zh_stream_sniff value or a negative errno. */
int zh_stream_sniff(const struct zh_stream *st);

enum zh_stream_hello {
    ZH_STREAM_HELLO_READY = 0, /* the first record is in the socket buffer whole: start TLS */
    ZH_STREAM_HELLO_WAIT = 1,  /* not yet: SO_RCVLOWAT now makes the fd readable only once it is */
    ZH_STREAM_HELLO_EOF = 2,   /* the peer closed before its first record was complete */
};

/* After a TLS sniff, on a TCP socket: peek (nothing is consumed) whether the first TLS record (the
 * ClientHello) has arrived whole, so that no OpenSSL state or buffer is allocated for a client
 * that stalls before it. While it waits, the socket's SO_RCVLOWAT is the byte count still needed
 * (no busy loop under level-triggered epoll) and is set back to 1 before READY. A record that is
 * not a handshake record, or longer than TLS allows, is READY (OpenSSL refuses it). Returns an
 * enum zh_stream_hello value or a negative errno. Not for unix sockets (their poll ignores
 * SO_RCVLOWAT): start TLS at once there. */
int zh_stream_hello_ready(struct zh_stream *st);

#endif
