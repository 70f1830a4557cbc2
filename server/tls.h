/* API stable: server/tls.h (integrators may rely on every declaration below).
 *
 * Server-side TLS for inbound listeners (OpenSSL 3), with Condure's --tls-identities-dir meaning:
 * a directory of identities NAME.crt (PEM chain, leaf first) + NAME.key (PEM private key). A
 * client's SNI name picks the identity: the exact name first, then `_.PARENT` for a name one label
 * below PARENT (`_.example.com` serves `a.example.com`, not `example.com` nor `a.b.example.com`),
 * then the listener's default-cert=NAME. With no match the handshake fails with an
 * unrecognized_name alert and a warning. TLS 1.2 minimum, OpenSSL's default server ciphers, no
 * compression, no renegotiation, session tickets on. See docs/internals/tls.md. */
#ifndef ZH_SERVER_TLS_H
#define ZH_SERVER_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "shared/proto/buf.h"

/* ---- identity store (shared by all worker threads) ---- */

struct zh_tls_store;

/* Load every NAME.crt/NAME.key pair in dir. Returns NULL with the reason appended to err when the
 * directory can't be read or any certificate is bad (unreadable, not PEM, no key file, key does not
 * match). A directory with no certificate is valid (every handshake then fails; logged). */
struct zh_tls_store *zh_tls_store_new(const char *dir, struct zh_buf *err);

/* Re-scan the directory and, when any .crt/.key file or the directory itself changed (mtime, size,
 * inode), load a new identity set and swap it in: new handshakes use it, live connections keep the
 * certificates they chose. A bad file keeps the old set and logs a warning (once per change).
 * Thread-safe; a call made while another thread is reloading returns 0 at once. Cost when nothing
 * changed: one readdir and a stat per file. Returns 1 when a new set was swapped in, 0 when nothing
 * changed (or another thread is checking), or a negative code when the reload failed. */
int zh_tls_store_reload_if_changed(struct zh_tls_store *s);

/* Whether an identity NAME is loaded now (e.g. to check default-cert=NAME at startup). Any thread.
 */
bool zh_tls_store_has(struct zh_tls_store *s, const char *name);

/* Number of identities loaded now. Any thread. */
size_t zh_tls_store_count(struct zh_tls_store *s);

/* Drop the caller's reference. The store is freed when its last connection is freed too. */
void zh_tls_store_free(struct zh_tls_store *s);

/* ---- one server connection over an accepted, non-blocking fd ---- */

struct zh_tls_conn;

/* What an -EAGAIN from a zh_tls_conn_* call is waiting for. During the handshake a read may need
 * the fd writable and a write may need it readable. */
enum zh_tls_want {
    ZH_TLS_WANT_NONE = 0,
    ZH_TLS_WANT_READ = 1,  /* wait for the fd to be readable, then retry */
    ZH_TLS_WANT_WRITE = 2, /* wait for the fd to be writable, then retry */
};

/* Start a server-side TLS connection on fd (already accepted and non-blocking). default_cert is the
 * listener's default-cert NAME for clients whose SNI matches nothing (NULL = none; copied). The
 * connection holds a reference on the store. The fd stays owned by the caller (never closed here).
 * Nothing is read or written until the first call below; the handshake runs inside them. Returns
 * NULL only if OpenSSL cannot allocate (logged). One thread at a time per connection. */
struct zh_tls_conn *zh_tls_conn_new(struct zh_tls_store *s, const char *default_cert, int fd);

/* Drive the handshake only. Returns 0 once it is complete, -EAGAIN (see zh_tls_conn_want()), or a
 * fatal negative code (see zh_tls_conn_error()); a TCP close before it completes is -ECONNRESET
 * (not logged: scanners do it). Optional: read and writev also drive it. A refused SNI name is
 * logged as a warning, other handshake failures at info. */
int zh_tls_conn_handshake(struct zh_tls_conn *c);

/* Whether the handshake has completed. */
bool zh_tls_conn_established(const struct zh_tls_conn *c);

/* Read decrypted bytes. Returns the count (> 0), 0 on end of stream (close_notify, or a TCP close
 * without it, also during the handshake: HTTP framing detects truncation), -EAGAIN, or a fatal
 * negative code: -EPROTO for a TLS protocol failure (bad handshake, unrecognized name, bad record),
 * or the socket's -errno (-ECONNRESET, ...). Decrypted bytes may stay buffered inside the
 * connection after a read that filled buf: see zh_tls_conn_pending(). */
ssize_t zh_tls_conn_read(struct zh_tls_conn *c, void *buf, size_t len);

/* Whether decrypted bytes are buffered, so zh_tls_conn_read() returns data without the fd becoming
 * readable (call it after resuming reads that the caller paused, e.g. for back-pressure). */
bool zh_tls_conn_pending(const struct zh_tls_conn *c);

/* Encrypt and send bytes from iov[0..n), in order. Returns the count taken (> 0; may be less than
 * the total: keep the rest), -EAGAIN, or a fatal negative code. Retry rule (OpenSSL's SSL_write
 * rule): after -EAGAIN or a short count, the next call must start with the bytes not yet counted,
 * unchanged, at least as many as before; they may have been encrypted already and are counted
 * when the socket takes them. Zero total bytes returns 0. */
ssize_t zh_tls_conn_writev(struct zh_tls_conn *c, const struct iovec *iov, int n);

/* What the last -EAGAIN waits for (ZH_TLS_WANT_NONE after any other result). */
enum zh_tls_want zh_tls_conn_want(const struct zh_tls_conn *c);

/* Send close_notify (best effort, once). Returns 0 when sent, -EAGAIN (retry when writable, or
 * just close the fd), or a negative code. Call before closing the fd of a clean close. */
int zh_tls_conn_shutdown(struct zh_tls_conn *c);

/* The reason for the last fatal error, for log lines ("" if none). Valid until the conn is freed.
 */
const char *zh_tls_conn_error(const struct zh_tls_conn *c);

/* The SNI name the client asked for, lowercased, without a trailing dot; NULL when the client sent
 * none or the ClientHello has not been read yet. Valid until the conn is freed. */
const char *zh_tls_conn_sni(const struct zh_tls_conn *c);

/* The identity NAME chosen for this connection (e.g. "_.example.com"); NULL before the choice. */
const char *zh_tls_conn_identity(const struct zh_tls_conn *c);

/* Free the TLS state (sends nothing; use zh_tls_conn_shutdown() first for a clean close) and drop
 * the store reference. Does not close the fd. NULL is fine. */
void zh_tls_conn_free(struct zh_tls_conn *c);

/* ---- plain HTTP on a TLS port ---- */

enum zh_tls_sniff {
    ZH_TLS_SNIFF_NEED_MORE = 0, /* no byte has arrived yet: wait for readable and ask again */
    ZH_TLS_SNIFF_TLS = 1,       /* not plain HTTP (a TLS record 0x16, or anything else): use TLS */
    ZH_TLS_SNIFF_PLAIN = 2,     /* starts like an HTTP method ("GET / HTTP/1.1"): answer the 400 */
    ZH_TLS_SNIFF_EOF = 3,       /* the peer closed before sending anything */
};

/* Peek (MSG_PEEK | MSG_DONTWAIT, nothing is consumed) at the first byte of a fresh connection and
 * classify it. One byte decides: a TLS ClientHello record starts with 0x16, an HTTP request with an
 * uppercase method letter, so a slow client never leaves readable data unclassified (no busy loop
 * under level-triggered epoll). Returns an enum zh_tls_sniff value, or a negative errno
 * (-ECONNRESET, ...). On TLS, create the zh_tls_conn; on PLAIN, write ZH_TLS_PLAIN_HTTP_RESPONSE
 * and close. */
int zh_tls_sniff(int fd);

enum zh_tls_hello {
    ZH_TLS_HELLO_READY = 0, /* the first record is in the socket buffer whole: create the conn */
    ZH_TLS_HELLO_WAIT = 1,  /* not yet: SO_RCVLOWAT now makes the fd readable only once it is */
    ZH_TLS_HELLO_EOF = 2,   /* the peer closed before its first record was complete */
};

/* After a TLS sniff, on a TCP socket: peek (nothing is consumed) whether the first TLS record (the
 * ClientHello) has arrived whole, so that no OpenSSL state or buffer is allocated for a client
 * that stalls before it. While it waits, the socket's SO_RCVLOWAT is the byte count still needed
 * (no busy loop under level-triggered epoll; *lowat_set is then true) and is set back to 1 before
 * READY. A record that is not a handshake record, or longer than TLS allows, is READY (OpenSSL
 * refuses it). Returns an enum zh_tls_hello value or a negative errno. Not for unix sockets (their
 * poll ignores SO_RCVLOWAT): start TLS at once there. */
int zh_tls_hello_ready(int fd, bool *lowat_set);

/* What nginx answers to plain HTTP on an HTTPS port; write it and close. */
#define ZH_TLS_PLAIN_HTTP_RESPONSE \
    "HTTP/1.1 400 Bad Request\r\n" \
    "Content-Type: text/plain\r\n" \
    "Content-Length: 50\r\n"       \
    "Connection: close\r\n"        \
    "\r\n"                         \
    "400 Bad Request: plain HTTP sent to an HTTPS port\n"

#endif
