/* API stable: server/tls.h (integrators may rely on every declaration below).
 *
 * Server-side TLS for inbound listeners (OpenSSL 3), with Condure's --tls-identities-dir meaning:
 * a directory of identities NAME.crt (PEM chain, leaf first) + NAME.key (PEM private key). A
 * client's SNI name picks the identity: the exact name first, then `_.PARENT` for a name one label
 * below PARENT (`_.example.com` serves `a.example.com`, not `example.com` nor `a.b.example.com`),
 * then the listener's default-cert=NAME. With no match the handshake fails with an
 * unrecognized_name alert (the connection's failure line names it). TLS 1.2 minimum, OpenSSL's
 * default server ciphers, no compression, no renegotiation, session tickets on. See
 * docs/internals/tls.md. */
#ifndef ZH_SERVER_TLS_H
#define ZH_SERVER_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "shared/proto/buf.h"
#include "shared/rt/stream.h"

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

/* ---- one server connection ---- */

/* Run server-side TLS on st (a plain stream over an accepted, non-blocking fd): the session's
 * identity is chosen by the client's SNI name (zh_stream_tls_name(), zh_stream_tls_identity()),
 * else default_cert, the listener's default-cert NAME (NULL = none; copied). The session holds a
 * reference on the store. Nothing is read or written here; the handshake runs inside the stream's
 * calls. Every handshake failure (a refused SNI name too) is one info line of the connection.
 * Returns 0, or a negative code when OpenSSL cannot allocate (logged). */
int zh_tls_accept(struct zh_tls_store *s, const char *default_cert, struct zh_stream *st);

/* ---- plain HTTP on a TLS port (see zh_stream_sniff()) ---- */

/* What nginx answers to plain HTTP on an HTTPS port; write it and close. */
#define ZH_TLS_PLAIN_HTTP_RESPONSE \
    "HTTP/1.1 400 Bad Request\r\n" \
    "Content-Type: text/plain\r\n" \
    "Content-Length: 50\r\n"       \
    "Connection: close\r\n"        \
    "\r\n"                         \
    "400 Bad Request: plain HTTP sent to an HTTPS port\n"

#endif
