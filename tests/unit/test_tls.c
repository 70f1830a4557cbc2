/* link: zh_server */
/* Unit tests for server/tls.c (and the TLS side of shared/rt/stream.c). A throw-away CA and leaf
 * certificates are made with the OpenSSL C API in a mkdtemp directory; every handshake is real,
 * between a zh_stream (server/tls.c's zh_tls_accept) and an OpenSSL client SSL over a non-blocking
 * socketpair, pumped in a bounded loop. Covered: SNI exact / `_.parent` wildcard / default-cert /
 * unknown name (unrecognized_name alert + warning), name normalisation, startup errors (missing
 * dir, missing key, key mismatch, not PEM, encrypted key), reload (rename and in-place rewrite, bad
 * file keeps the old set, old connections keep working), data both ways beyond 64 KiB through the
 * write retry rule, buffered reads, EOF both ways, TLS 1.2 floor, and sniffing TLS vs plain HTTP.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "server/tls.h"
#include "shared/proto/buf.h"
#include "shared/proto/err.h"
#include "shared/proto/mem.h"
#include "shared/rt/log.h"

#define PUMP_ROUNDS 2000 /* bound on every pump loop (a handshake needs < 10 rounds) */

static EVP_PKEY *ca_key;
static X509 *ca_cert;
static SSL_CTX *client_ctx;
static char logpath[96];
static char dir[64];

/* ---- certificates ---- */

static X509 *make_cert(EVP_PKEY *key, const char *cn, long serial, bool ca)
{
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, ca ? name : X509_get_subject_name(ca_cert));
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, ca ? x : ca_cert, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
                                              ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, ca ? key : ca_key, EVP_sha256()) > 0);
    return x;
}

static void path_of(char *out, size_t outlen, const char *file)
{
    snprintf(out, outlen, "%s/%s", dir, file);
}

/* Write <dir>/<file> atomically (write a hidden temp file, then rename) or in place. */
static FILE *open_out(const char *file, bool in_place, char *tmp, size_t tmplen)
{
    char path[256];
    path_of(path, sizeof(path), file);
    if (in_place) {
        tmp[0] = '\0';
        return fopen(path, "w");
    }
    snprintf(tmp, tmplen, "%s/.tmp-%s", dir, file);
    return fopen(tmp, "w");
}

static void close_out(FILE *f, const char *file, const char *tmp)
{
    assert_int_equal(fclose(f), 0);
    if (tmp[0]) {
        char path[256];
        path_of(path, sizeof(path), file);
        assert_int_equal(rename(tmp, path), 0);
    }
}

/* Write NAME.crt (leaf + CA) and NAME.key for a new leaf with the given CN and serial. With
 * key_override, that key goes to NAME.key instead of the leaf's own (a mismatch). */
static void write_identity(const char *stem, const char *cn, long serial, bool in_place,
                           EVP_PKEY *key_override)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *leaf = make_cert(key, cn, serial, false);
    char file[128], tmp[256];
    snprintf(file, sizeof(file), "%s.key", stem);
    FILE *f = open_out(file, in_place, tmp, sizeof(tmp));
    assert_non_null(f);
    assert_int_equal(
        PEM_write_PrivateKey(f, key_override ? key_override : key, NULL, NULL, 0, NULL, NULL), 1);
    close_out(f, file, tmp);
    snprintf(file, sizeof(file), "%s.crt", stem);
    f = open_out(file, in_place, tmp, sizeof(tmp));
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, leaf), 1);
    assert_int_equal(PEM_write_X509(f, ca_cert), 1);
    close_out(f, file, tmp);
    X509_free(leaf);
    EVP_PKEY_free(key);
}

static void write_file(const char *file, const char *text)
{
    char path[256];
    path_of(path, sizeof(path), file);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* ---- fixtures ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    ca_key = EVP_EC_gen("P-256");
    if (!ca_key)
        return -1;
    ca_cert = make_cert(ca_key, "zhttpd test CA", 1, true);
    client_ctx = SSL_CTX_new(TLS_client_method());
    if (!client_ctx)
        return -1;
    X509_STORE_add_cert(SSL_CTX_get_cert_store(client_ctx), ca_cert);
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(client_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
    snprintf(logpath, sizeof(logpath), "/tmp/zh-test-tls-%d.log", (int)getpid());
    if (zh_log_open(logpath) < 0)
        return -1;
    zh_log_set_level(ZH_LOG_DEBUG);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    zh_log_close();
    if (!getenv("ZH_TEST_KEEP_LOG"))
        unlink(logpath);
    SSL_CTX_free(client_ctx);
    X509_free(ca_cert);
    EVP_PKEY_free(ca_key);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/zh-test-tls-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* Whether the log written so far contains needle. */
static bool log_has(const char *needle)
{
    static char text[1 << 16];
    FILE *f = fopen(logpath, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    return strstr(text, needle) != NULL;
}

static struct zh_tls_store *store_ok(void)
{
    struct zh_buf err = {0};
    struct zh_tls_store *s = zh_tls_store_new(dir, &err);
    if (!s)
        fail_msg("zh_tls_store_new: %s", zh_buf_cstr(&err));
    zh_buf_free(&err);
    return s;
}

/* ---- a client SSL and a zh_stream (server/tls.c's zh_tls_accept) on the two ends of a socketpair
 * ---- */

struct pair {
    int fds[2]; /* [0] client, [1] server */
    SSL *cl;
    struct zh_stream sv_st;
    struct zh_stream *sv; /* &sv_st */
    bool cl_done, sv_done;
    int sv_rc;          /* last server result */
    unsigned long cl_e; /* client's OpenSSL error after a failed handshake */
};

/* SSL_set_tlsext_host_name() casts its argument to void *: pass a writable copy. */
static void set_sni(SSL *ssl, const char *name)
{
    char copy[256];
    snprintf(copy, sizeof(copy), "%s", name);
    assert_int_equal(SSL_set_tlsext_host_name(ssl, copy), 1);
}

static void pair_open(struct pair *p, struct zh_tls_store *s, const char *default_cert,
                      const char *sni)
{
    memset(p, 0, sizeof(*p));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->fds), 0);
    p->cl = SSL_new(client_ctx);
    assert_non_null(p->cl);
    SSL_set_fd(p->cl, p->fds[0]);
    SSL_set_connect_state(p->cl);
    if (sni)
        set_sni(p->cl, sni);
    p->sv = &p->sv_st;
    zh_stream_init(p->sv, p->fds[1]);
    assert_int_equal(zh_tls_accept(s, default_cert, p->sv), 0);
    assert_false(zh_stream_established(p->sv));
}

static void pair_close(struct pair *p)
{
    SSL_free(p->cl);
    zh_stream_free_tls(p->sv);
    if (p->fds[0] >= 0)
        close(p->fds[0]);
    close(p->fds[1]);
}

/* Pump both handshakes. Returns true when both sides completed; false when either failed (the
 * server's code in sv_rc, the client's error in cl_e). */
static bool pair_handshake(struct pair *p)
{
    bool cl_failed = false;
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        if (!p->cl_done && !cl_failed) {
            ERR_clear_error();
            int r = SSL_do_handshake(p->cl);
            if (r == 1) {
                p->cl_done = true;
            } else {
                int e = SSL_get_error(p->cl, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                    p->cl_e = ERR_peek_last_error();
                    cl_failed = true;
                }
            }
        }
        if (!p->sv_done) {
            p->sv_rc = zh_stream_handshake(p->sv);
            if (p->sv_rc == 0) {
                p->sv_done = true;
                assert_true(zh_stream_established(p->sv));
                assert_int_equal(zh_stream_want(p->sv), ZH_STREAM_WANT_NONE);
            } else if (p->sv_rc != -EAGAIN) {
                /* Let the client read the alert, then stop. */
                if (!cl_failed && !p->cl_done) {
                    ERR_clear_error();
                    int r = SSL_do_handshake(p->cl);
                    assert_true(r <= 0);
                    p->cl_e = ERR_peek_last_error();
                }
                return false;
            } else {
                enum zh_stream_want w = zh_stream_want(p->sv);
                assert_true(w == ZH_STREAM_WANT_READ || w == ZH_STREAM_WANT_WRITE);
            }
        }
        if (cl_failed)
            return false;
        if (p->cl_done && p->sv_done)
            return true;
    }
    fail_msg("handshake did not finish in %d rounds", PUMP_ROUNDS);
    return false;
}

static void peer_subject(struct pair *p, char *cn, size_t cnlen, long *serial)
{
    X509 *x = SSL_get0_peer_certificate(p->cl);
    assert_non_null(x);
    assert_true(
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, (int)cnlen) > 0);
    *serial = ASN1_INTEGER_get(X509_get0_serialNumber(x));
    assert_int_equal(SSL_get_verify_result(p->cl), X509_V_OK);
}

/* Handshake with sni against default_cert; expect success with the certificate of CN want_cn. */
static void expect_identity(struct zh_tls_store *s, const char *default_cert, const char *sni,
                            const char *want_cn, const char *want_identity, const char *want_sni)
{
    struct pair p;
    pair_open(&p, s, default_cert, sni);
    if (!pair_handshake(&p))
        fail_msg("handshake for '%s' failed: %s", sni ? sni : "(none)", zh_stream_tls_error(p.sv));
    char cn[128];
    long serial;
    peer_subject(&p, cn, sizeof(cn), &serial);
    assert_string_equal(cn, want_cn);
    assert_string_equal(zh_stream_tls_identity(p.sv), want_identity);
    if (want_sni)
        assert_string_equal(zh_stream_tls_name(p.sv), want_sni);
    else
        assert_null(zh_stream_tls_name(p.sv));
    assert_string_equal(zh_stream_tls_error(p.sv), "");
    pair_close(&p);
}

/* Handshake that must fail with unrecognized_name on both sides. */
static void expect_refused(struct zh_tls_store *s, const char *default_cert, const char *sni,
                           const char *want_err)
{
    struct pair p;
    pair_open(&p, s, default_cert, sni);
    assert_false(pair_handshake(&p));
    assert_int_equal(p.sv_rc, -EPROTO);
    if (!strstr(zh_stream_tls_error(p.sv), want_err))
        fail_msg("error '%s' lacks '%s'", zh_stream_tls_error(p.sv), want_err);
    assert_int_equal(ERR_GET_REASON(p.cl_e), SSL_R_TLSV1_UNRECOGNIZED_NAME);
    /* A failed connection stays failed. */
    char b[8];
    assert_int_equal(zh_stream_read(p.sv, b, sizeof(b)), -EPROTO);
    assert_true(log_has(want_err));
    ERR_clear_error();
    pair_close(&p);
}

/* Move bytes: data sent with zh_stream_writev (odd-sized iovs) must arrive at the client
 * intact, and bytes the client sends must come out of zh_stream_read. */
static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 7 + i / 251);
}

static void send_server_to_client(struct pair *p, size_t total, bool *saw_eagain)
{
    static uint8_t src[1 << 20], dst[1 << 20];
    assert_true(total <= sizeof(src));
    for (size_t i = 0; i < total; i++)
        src[i] = pattern(i);
    size_t sent = 0, got = 0;
    for (int round = 0; round < 100000 && (sent < total || got < total); round++) {
        if (sent < total) {
            size_t left = total - sent;
            size_t a = ZH_MIN(left, (size_t)7), b = ZH_MIN(left - a, (size_t)5000);
            struct iovec iov[3] = {
                {src + sent, a},
                {src + sent + a, b},
                {src + sent + a + b, left - a - b},
            };
            ssize_t r = zh_stream_writev(p->sv, iov, 3);
            if (r == -EAGAIN) {
                assert_int_equal(zh_stream_want(p->sv), ZH_STREAM_WANT_WRITE);
                *saw_eagain = true;
            } else {
                if (r <= 0)
                    fail_msg("writev: %zd %s", r, zh_stream_tls_error(p->sv));
                sent += (size_t)r;
            }
        }
        for (;;) {
            int r = SSL_read(p->cl, dst + got, (int)(total - got > 3000 ? 3000 : total - got));
            if (r <= 0) {
                assert_int_equal(SSL_get_error(p->cl, r), SSL_ERROR_WANT_READ);
                break;
            }
            got += (size_t)r;
            if (got == total)
                break;
        }
    }
    assert_int_equal(sent, total);
    assert_int_equal(got, total);
    assert_memory_equal(src, dst, total);
}

static void send_client_to_server(struct pair *p, size_t total)
{
    static uint8_t src[1 << 20], dst[1 << 20];
    assert_true(total <= sizeof(src));
    for (size_t i = 0; i < total; i++)
        src[i] = pattern(i + 3);
    size_t sent = 0, got = 0;
    for (int round = 0; round < 100000 && (sent < total || got < total); round++) {
        if (sent < total) {
            int r = SSL_write(p->cl, src + sent, (int)(total - sent));
            if (r > 0)
                sent += (size_t)r;
            else
                assert_int_equal(SSL_get_error(p->cl, r), SSL_ERROR_WANT_WRITE);
        }
        for (;;) {
            ssize_t r = zh_stream_read(p->sv, dst + got, ZH_MIN(total - got, (size_t)1000));
            if (r == -EAGAIN) {
                assert_int_equal(zh_stream_want(p->sv), ZH_STREAM_WANT_READ);
                break;
            }
            if (r <= 0)
                fail_msg("read: %zd %s", r, zh_stream_tls_error(p->sv));
            got += (size_t)r;
            if (got == total)
                break;
        }
    }
    assert_int_equal(sent, total);
    assert_int_equal(got, total);
    assert_memory_equal(src, dst, total);
}

/* ---- tests: lookup ---- */

static void make_names(void)
{
    write_identity("a.example.com", "a.example.com", 2, false, NULL);
    write_identity("_.example.com", "wildcard.example.com", 3, false, NULL);
    write_identity("Default.Test", "default.test", 4, false, NULL);
}

static void sni_exact_name_picks_its_certificate(void **state)
{
    (void)state;
    make_names();
    struct zh_tls_store *s = store_ok();
    assert_int_equal(zh_tls_store_count(s), 3);
    assert_true(zh_tls_store_has(s, "a.example.com"));
    assert_true(zh_tls_store_has(s, "default.test")); /* file names ignore case */
    assert_false(zh_tls_store_has(s, "b.example.com"));
    expect_identity(s, NULL, "a.example.com", "a.example.com", "a.example.com", "a.example.com");
    /* SNI is lowercased and a trailing dot dropped. */
    expect_identity(s, NULL, "A.Example.COM.", "a.example.com", "a.example.com", "a.example.com");
    /* An exact file wins over the wildcard even with a default configured. */
    expect_identity(s, "default.test", "a.example.com", "a.example.com", "a.example.com",
                    "a.example.com");
    zh_tls_store_free(s);
}

static void sni_wildcard_serves_one_label_below(void **state)
{
    (void)state;
    make_names();
    struct zh_tls_store *s = store_ok();
    expect_identity(s, NULL, "b.example.com", "wildcard.example.com", "_.example.com",
                    "b.example.com");
    /* Two labels below, the parent itself, and the literal "_." name do not match it. */
    expect_refused(s, NULL, "x.b.example.com",
                   "no certificate for server name 'x.b.example.com' and no default-cert");
    expect_refused(s, NULL, "example.com", "server name 'example.com'");
    expect_refused(s, NULL, "_.example.com", "server name '_.example.com'");
    zh_tls_store_free(s);
}

static void default_cert_serves_unknown_and_missing_names(void **state)
{
    (void)state;
    make_names();
    struct zh_tls_store *s = store_ok();
    expect_identity(s, "default.test", "other.test", "default.test", "default.test", "other.test");
    expect_identity(s, "default.test", NULL, "default.test", "default.test", NULL);
    expect_identity(s, "DEFAULT.test", "x.b.example.com", "default.test", "default.test",
                    "x.b.example.com");
    zh_tls_store_free(s);
}

static void unknown_name_without_default_fails_with_alert(void **state)
{
    (void)state;
    make_names();
    struct zh_tls_store *s = store_ok();
    expect_refused(s, NULL, "nope.test",
                   "no certificate for server name 'nope.test' and no default-cert");
    expect_refused(s, NULL, NULL, "no certificate for server name '(none)' and no default-cert");
    expect_refused(s, "gone.test", "nope.test", "nor the default-cert 'gone.test'");
    expect_refused(s, "default.test", "bad/name.test", "invalid server name 'bad/name.test'");
    assert_true(log_has("tls: handshake refused: no certificate for server name 'nope.test'"));
    zh_tls_store_free(s);
}

static void tls_1_1_client_is_refused_and_1_2_accepted(void **state)
{
    (void)state;
    make_names();
    struct zh_tls_store *s = store_ok();
    struct pair p;
    pair_open(&p, s, NULL, "a.example.com");
    SSL_set_security_level(p.cl, 0);
    SSL_set_cipher_list(p.cl, "DEFAULT:@SECLEVEL=0");
    SSL_set_max_proto_version(p.cl, TLS1_1_VERSION);
    assert_false(pair_handshake(&p));
    assert_int_equal(p.sv_rc, -EPROTO);
    assert_non_null(strstr(zh_stream_tls_error(p.sv), "handshake: "));
    ERR_clear_error();
    pair_close(&p);

    pair_open(&p, s, NULL, "a.example.com");
    SSL_set_max_proto_version(p.cl, TLS1_2_VERSION);
    assert_true(pair_handshake(&p));
    assert_int_equal(SSL_version(p.cl), TLS1_2_VERSION);
    assert_int_equal(SSL_get_current_compression(p.cl) == NULL, 1);
    send_client_to_server(&p, 5000);
    pair_close(&p);
    zh_tls_store_free(s);
}

static void alpn_picks_http11_only(void **state)
{
    (void)state;
    make_names();
    struct zh_tls_store *s = store_ok();
    static const unsigned char both[] = "\x02h2\x08http/1.1";
    static const unsigned char h2[] = "\x02h2";
    const unsigned char *sel;
    unsigned int len;
    struct pair p;
    pair_open(&p, s, NULL, "a.example.com");
    assert_int_equal(SSL_set_alpn_protos(p.cl, both, sizeof(both) - 1), 0);
    assert_true(pair_handshake(&p));
    SSL_get0_alpn_selected(p.cl, &sel, &len);
    assert_int_equal(len, 8);
    assert_memory_equal(sel, "http/1.1", 8);
    pair_close(&p);

    /* Via the wildcard identity too (OpenSSL asks the context SNI switched to). */
    pair_open(&p, s, NULL, "w.example.com");
    assert_int_equal(SSL_set_alpn_protos(p.cl, both, sizeof(both) - 1), 0);
    assert_true(pair_handshake(&p));
    SSL_get0_alpn_selected(p.cl, &sel, &len);
    assert_int_equal(len, 8);
    pair_close(&p);

    pair_open(&p, s, NULL, "a.example.com");
    assert_int_equal(SSL_set_alpn_protos(p.cl, h2, sizeof(h2) - 1), 0);
    assert_true(pair_handshake(&p));
    SSL_get0_alpn_selected(p.cl, &sel, &len);
    assert_int_equal(len, 0);
    pair_close(&p);
    zh_tls_store_free(s);
}

/* ---- tests: store errors ---- */

static void expect_store_error(const char *want)
{
    struct zh_buf err = {0};
    struct zh_tls_store *s = zh_tls_store_new(dir, &err);
    assert_null(s);
    if (!strstr(zh_buf_cstr(&err), want))
        fail_msg("error '%s' lacks '%s'", zh_buf_cstr(&err), want);
    zh_buf_free(&err);
}

static void store_errors_are_precise(void **state)
{
    (void)state;
    char path[256];
    /* Missing directory. */
    struct zh_buf err = {0};
    assert_null(zh_tls_store_new("/nonexistent/zh-tls-dir", &err));
    assert_string_equal(zh_buf_cstr(&err), "cannot open TLS identities directory "
                                           "/nonexistent/zh-tls-dir: No such file or directory");
    zh_buf_free(&err);

    /* Empty directory: valid, no identities. Hidden and unrelated files are ignored. */
    write_file(".hidden.crt", "junk");
    write_file("notes.txt", "junk");
    struct zh_tls_store *s = store_ok();
    assert_int_equal(zh_tls_store_count(s), 0);
    zh_tls_store_free(s);

    /* A certificate without its key. */
    write_identity("a.test", "a.test", 2, false, NULL);
    path_of(path, sizeof(path), "a.test.key");
    assert_int_equal(unlink(path), 0);
    expect_store_error("a.test.crt has no key file");
    expect_store_error("a.test.key: No such file or directory");

    /* A key of another certificate. */
    EVP_PKEY *other = EVP_EC_gen("P-256");
    write_identity("a.test", "a.test", 2, false, other);
    EVP_PKEY_free(other);
    expect_store_error("a.test.key does not match certificate");

    /* Not PEM. */
    write_identity("a.test", "a.test", 2, false, NULL);
    write_file("a.test.crt", "this is not a certificate\n");
    expect_store_error("cannot load certificate");
    expect_store_error("no start line");

    /* An encrypted key is refused without prompting anywhere. */
    write_identity("a.test", "a.test", 2, false, NULL);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    path_of(path, sizeof(path), "a.test.key");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(
        PEM_write_PrivateKey(f, key, EVP_aes_128_cbc(), (const unsigned char *)"pw", 2, NULL, NULL),
        1);
    fclose(f);
    EVP_PKEY_free(key);
    expect_store_error("cannot load key");

    /* Unreadable file (skipped when running as root, who can read anything). */
    write_identity("a.test", "a.test", 2, false, NULL);
    if (geteuid() != 0) {
        path_of(path, sizeof(path), "a.test.key");
        assert_int_equal(chmod(path, 0), 0);
        expect_store_error("Permission denied");
    }
}

/* ---- tests: reload ---- */

static void expect_serial(struct zh_tls_store *s, const char *sni, long want)
{
    struct pair p;
    pair_open(&p, s, NULL, sni);
    assert_true(pair_handshake(&p));
    char cn[128];
    long serial;
    peer_subject(&p, cn, sizeof(cn), &serial);
    assert_int_equal(serial, want);
    pair_close(&p);
}

static void reload_swaps_identities_and_keeps_old_connections(void **state)
{
    (void)state;
    write_identity("a.test", "a.test", 10, false, NULL);
    struct zh_tls_store *s = store_ok();
    assert_int_equal(zh_tls_store_reload_if_changed(s), 0);

    struct pair old;
    pair_open(&old, s, NULL, "a.test");
    assert_true(pair_handshake(&old));
    char cn[128];
    long serial;
    peer_subject(&old, cn, sizeof(cn), &serial);
    assert_int_equal(serial, 10);

    /* Replaced by rename (certbot, cp + mv): new handshakes get the new certificate. */
    write_identity("a.test", "a.test", 20, false, NULL);
    assert_int_equal(zh_tls_store_reload_if_changed(s), 1);
    assert_int_equal(zh_tls_store_reload_if_changed(s), 0);
    expect_serial(s, "a.test", 20);
    assert_true(log_has("tls: reloaded 1 identities from"));

    /* Rewritten in place right away, in the same clock tick as the last scan maybe. */
    write_identity("a.test", "a.test", 30, true, NULL);
    assert_int_equal(zh_tls_store_reload_if_changed(s), 1);
    expect_serial(s, "a.test", 30);

    /* A bad key keeps the loaded set, warns once, and is picked up once fixed. */
    EVP_PKEY *other = EVP_EC_gen("P-256");
    write_identity("a.test", "a.test", 40, false, other);
    EVP_PKEY_free(other);
    assert_int_equal(zh_tls_store_reload_if_changed(s), ZH_E_CONFIG);
    assert_int_equal(zh_tls_store_reload_if_changed(s), 0);
    assert_true(log_has("failed, keeping the loaded identities"));
    expect_serial(s, "a.test", 30);
    write_identity("a.test", "a.test", 50, false, NULL);
    write_identity("b.test", "b.test", 51, false, NULL);
    assert_int_equal(zh_tls_store_reload_if_changed(s), 1);
    assert_int_equal(zh_tls_store_count(s), 2);
    assert_true(zh_tls_store_has(s, "b.test"));
    expect_serial(s, "a.test", 50);
    expect_serial(s, "b.test", 51);

    /* The first connection still works both ways on its original certificate. */
    send_client_to_server(&old, 20000);
    bool eagain = false;
    send_server_to_client(&old, 20000, &eagain);
    peer_subject(&old, cn, sizeof(cn), &serial);
    assert_int_equal(serial, 10);

    /* The store may be dropped before its connections. */
    zh_tls_store_free(s);
    send_client_to_server(&old, 100);
    pair_close(&old);
}

static void reload_with_directory_gone_keeps_identities(void **state)
{
    (void)state;
    write_identity("a.test", "a.test", 10, false, NULL);
    struct zh_tls_store *s = store_ok();
    char moved[128];
    snprintf(moved, sizeof(moved), "%s-moved", dir);
    assert_int_equal(rename(dir, moved), 0);
    assert_true(zh_tls_store_reload_if_changed(s) < 0);
    assert_int_equal(zh_tls_store_count(s), 1);
    expect_serial(s, "a.test", 10);
    assert_true(
        log_has("tls: keeping the loaded identities: cannot open TLS identities directory"));
    assert_int_equal(rename(moved, dir), 0);
    write_identity("a.test", "a.test", 11, false, NULL);
    assert_int_equal(zh_tls_store_reload_if_changed(s), 1);
    expect_serial(s, "a.test", 11);
    zh_tls_store_free(s);
}

static void reload_during_a_handshake_keeps_the_chosen_certificate(void **state)
{
    (void)state;
    write_identity("a.test", "a.test", 10, false, NULL);
    struct zh_tls_store *s = store_ok();
    struct pair p;
    pair_open(&p, s, NULL, "a.test");
    assert_int_equal(SSL_do_handshake(p.cl), -1);         /* ClientHello */
    assert_int_equal(zh_stream_handshake(p.sv), -EAGAIN); /* identity chosen, flight sent */
    assert_string_equal(zh_stream_tls_identity(p.sv), "a.test");
    write_identity("a.test", "a.test", 20, false, NULL);
    assert_int_equal(zh_tls_store_reload_if_changed(s), 1); /* frees the old set */
    assert_true(pair_handshake(&p));
    char cn[128];
    long serial;
    peer_subject(&p, cn, sizeof(cn), &serial);
    assert_int_equal(serial, 10);
    send_client_to_server(&p, 70000);
    pair_close(&p);
    expect_serial(s, "a.test", 20);
    zh_tls_store_free(s);
}

/* Worker threads handshake while the main thread keeps replacing the certificate and reloading. */
struct hs_thread {
    struct zh_tls_store *s;
    int ok, bad;
};

static void *hs_thread_main(void *arg)
{
    struct hs_thread *t = arg;
    for (int i = 0; i < 25; i++) {
        int fds[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) < 0) {
            t->bad++;
            continue;
        }
        SSL *cl = SSL_new(client_ctx);
        SSL_set_fd(cl, fds[0]);
        SSL_set_connect_state(cl);
        set_sni(cl, "a.test");
        struct zh_stream svs, *sv = &svs;
        zh_stream_init(sv, fds[1]);
        assert_int_equal(zh_tls_accept(t->s, NULL, sv), 0);
        bool cl_done = false, sv_done = false, failed = false;
        for (int round = 0; round < PUMP_ROUNDS && !(cl_done && sv_done) && !failed; round++) {
            if (!cl_done) {
                int r = SSL_do_handshake(cl);
                if (r == 1)
                    cl_done = true;
                else if (SSL_get_error(cl, r) != SSL_ERROR_WANT_READ)
                    failed = true;
            }
            if (!sv_done) {
                int r = zh_stream_handshake(sv);
                if (r == 0)
                    sv_done = true;
                else if (r != -EAGAIN)
                    failed = true;
            }
        }
        if (cl_done && sv_done && SSL_get_verify_result(cl) == X509_V_OK)
            t->ok++;
        else
            t->bad++;
        ERR_clear_error();
        SSL_free(cl);
        zh_stream_free_tls(sv);
        close(fds[0]);
        close(fds[1]);
    }
    return NULL;
}

static void reload_is_safe_while_workers_handshake(void **state)
{
    (void)state;
    write_identity("a.test", "a.test", 100, false, NULL);
    struct zh_tls_store *s = store_ok();
    struct hs_thread t[2] = {{.s = s}, {.s = s}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hs_thread_main, &t[i]), 0);
    int reloads = 0;
    for (int i = 0; i < 10; i++) {
        write_identity("a.test", "a.test", 101 + i, false, NULL);
        if (zh_tls_store_reload_if_changed(s) == 1)
            reloads++;
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(reloads, 10);
    assert_int_equal(t[0].ok + t[1].ok, 50);
    assert_int_equal(t[0].bad + t[1].bad, 0);
    expect_serial(s, "a.test", 110);
    zh_tls_store_free(s);
}

/* ---- tests: data ---- */

static void data_both_ways_beyond_64k(void **state)
{
    (void)state;
    make_names();
    struct zh_tls_store *s = store_ok();
    struct pair p;
    pair_open(&p, s, NULL, "a.example.com");
    int small = 4096;
    assert_int_equal(setsockopt(p.fds[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    assert_true(pair_handshake(&p));
    bool eagain = false;
    send_server_to_client(&p, 300 * 1024 + 17, &eagain);
    assert_true(eagain); /* the retry rule was exercised */
    send_client_to_server(&p, 200 * 1024 + 5);
    send_server_to_client(&p, 1, &eagain);

    /* Zero bytes is a no-op; a retry with fewer bytes than a blocked write is refused. */
    struct iovec none = {NULL, 0};
    assert_int_equal(zh_stream_writev(p.sv, &none, 1), 0);
    pair_close(&p);
    zh_tls_store_free(s);
}

static void short_retry_after_blocked_write_is_an_error(void **state)
{
    (void)state;
    make_names();
    struct zh_tls_store *s = store_ok();
    struct pair p;
    pair_open(&p, s, NULL, "a.example.com");
    assert_true(pair_handshake(&p));
    static uint8_t big[64 * 1024];
    memset(big, 'x', sizeof(big));
    struct iovec iov = {big, sizeof(big)};
    ssize_t r;
    int rounds = 0;
    while ((r = zh_stream_writev(p.sv, &iov, 1)) > 0 && rounds++ < 1000)
        ;
    assert_int_equal(r, -EAGAIN);
    iov.iov_len = 10;
    assert_int_equal(zh_stream_writev(p.sv, &iov, 1), -EINVAL);
    assert_non_null(strstr(zh_stream_tls_error(p.sv), "retried with 10 bytes"));
    pair_close(&p);
    zh_tls_store_free(s);
}

static void buffered_plaintext_is_reported_pending(void **state)
{
    (void)state;
    make_names();
    struct zh_tls_store *s = store_ok();
    struct pair p;
    pair_open(&p, s, NULL, "a.example.com");
    assert_true(pair_handshake(&p));
    char msg[1000];
    memset(msg, 'm', sizeof(msg));
    assert_int_equal(SSL_write(p.cl, msg, sizeof(msg)), sizeof(msg));
    char b[100];
    ssize_t r;
    /* The first reads may only process the client's post-handshake messages. */
    int rounds = 0;
    while ((r = zh_stream_read(p.sv, b, sizeof(b))) == -EAGAIN && rounds++ < 10)
        ;
    assert_int_equal(r, 100);
    assert_true(zh_stream_pending(p.sv));
    size_t got = 100;
    while (zh_stream_pending(p.sv)) {
        r = zh_stream_read(p.sv, b, sizeof(b));
        assert_true(r > 0);
        got += (size_t)r;
    }
    assert_int_equal(got, sizeof(msg));
    assert_int_equal(zh_stream_read(p.sv, b, sizeof(b)), -EAGAIN);
    pair_close(&p);
    zh_tls_store_free(s);
}

/* ---- tests: end of stream ---- */

static void eof_close_notify_tcp_close_and_server_shutdown(void **state)
{
    (void)state;
    make_names();
    struct zh_tls_store *s = store_ok();
    char b[64];

    /* close_notify from the client. */
    struct pair p;
    pair_open(&p, s, NULL, "a.example.com");
    assert_true(pair_handshake(&p));
    send_client_to_server(&p, 10);
    assert_true(SSL_shutdown(p.cl) >= 0);
    assert_int_equal(zh_stream_read(p.sv, b, sizeof(b)), 0);
    pair_close(&p);

    /* TCP close without close_notify (HTTP framing detects truncation). The client reads the
     * session tickets first: closing with unread data would reset the connection instead. */
    pair_open(&p, s, NULL, "a.example.com");
    assert_true(pair_handshake(&p));
    send_client_to_server(&p, 10);
    assert_int_equal(SSL_read(p.cl, b, sizeof(b)), -1);
    close(p.fds[0]);
    p.fds[0] = -1;
    assert_int_equal(zh_stream_read(p.sv, b, sizeof(b)), 0);
    pair_close(&p);

    /* TCP close before the ClientHello: the handshake fails, not a clean end. */
    pair_open(&p, s, NULL, "a.example.com");
    close(p.fds[0]);
    p.fds[0] = -1;
    assert_int_equal(zh_stream_handshake(p.sv), -ECONNRESET);
    assert_string_equal(zh_stream_tls_error(p.sv), "handshake: connection closed by the peer");
    pair_close(&p);

    /* The same seen through read: just the end of the stream. */
    pair_open(&p, s, NULL, "a.example.com");
    close(p.fds[0]);
    p.fds[0] = -1;
    assert_int_equal(zh_stream_read(p.sv, b, sizeof(b)), 0);
    assert_false(zh_stream_established(p.sv));
    pair_close(&p);

    /* TCP close after the ClientHello: writing the ServerHello fails with the socket's errno. */
    pair_open(&p, s, NULL, "a.example.com");
    assert_int_equal(SSL_do_handshake(p.cl), -1); /* ClientHello sent */
    close(p.fds[0]);
    p.fds[0] = -1;
    assert_int_equal(zh_stream_handshake(p.sv), -EPIPE);
    assert_string_equal(zh_stream_tls_error(p.sv), "handshake: Broken pipe");
    assert_true(log_has("tls: connection failed for a.example.com: handshake: Broken pipe"));
    pair_close(&p);

    /* close_notify from the server. */
    pair_open(&p, s, NULL, "a.example.com");
    assert_true(pair_handshake(&p));
    send_client_to_server(&p, 10);
    assert_int_equal(zh_stream_shutdown(p.sv), 0);
    assert_int_equal(zh_stream_shutdown(p.sv), 0); /* once */
    int r = SSL_read(p.cl, b, sizeof(b));
    assert_int_equal(r, 0);
    assert_int_equal(SSL_get_error(p.cl, r), SSL_ERROR_ZERO_RETURN);
    pair_close(&p);

    /* close_notify to a peer that is gone: the socket's error, and the caller just closes. */
    pair_open(&p, s, NULL, "a.example.com");
    assert_true(pair_handshake(&p));
    close(p.fds[0]);
    p.fds[0] = -1;
    assert_int_equal(zh_stream_shutdown(p.sv), -EPIPE);
    assert_string_equal(zh_stream_tls_error(p.sv), "shutdown: Broken pipe");
    pair_close(&p);

    /* A reset while writing is a fatal -errno. */
    pair_open(&p, s, NULL, "a.example.com");
    assert_true(pair_handshake(&p));
    close(p.fds[0]);
    p.fds[0] = -1;
    struct iovec iov = {b, sizeof(b)};
    ssize_t w = zh_stream_writev(p.sv, &iov, 1);
    assert_int_equal(w, -EPIPE);
    assert_non_null(strstr(zh_stream_tls_error(p.sv), "write: "));
    assert_int_equal(zh_stream_writev(p.sv, &iov, 1), -EPIPE);
    pair_close(&p);

    zh_tls_store_free(s);
}

/* ---- tests: sniffing ---- */

static void sniff_tells_tls_from_plain_http(void **state)
{
    (void)state;
    make_names();
    struct zh_tls_store *s = store_ok();
    int fds[2];

    /* Plain HTTP: classified, and nothing consumed. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    assert_int_equal(zh_stream_sniff(&(struct zh_stream){.fd = fds[1]}), ZH_STREAM_SNIFF_NEED_MORE);
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(write(fds[0], req, 1), 1); /* one byte is enough */
    assert_int_equal(zh_stream_sniff(&(struct zh_stream){.fd = fds[1]}), ZH_STREAM_SNIFF_PLAIN);
    assert_int_equal(write(fds[0], req + 1, strlen(req) - 1), (ssize_t)strlen(req) - 1);
    assert_int_equal(zh_stream_sniff(&(struct zh_stream){.fd = fds[1]}), ZH_STREAM_SNIFF_PLAIN);
    char b[64];
    assert_int_equal(read(fds[1], b, sizeof(b)), (ssize_t)strlen(req));
    assert_memory_equal(b, req, strlen(req));
    close(fds[0]);
    assert_int_equal(zh_stream_sniff(&(struct zh_stream){.fd = fds[1]}), ZH_STREAM_SNIFF_EOF);
    close(fds[1]);

    /* Anything else goes to TLS, which refuses it. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    assert_int_equal(write(fds[0], "\x01\x02garbage\r\n", 11), 11);
    assert_int_equal(zh_stream_sniff(&(struct zh_stream){.fd = fds[1]}), ZH_STREAM_SNIFF_TLS);
    struct zh_stream cs, *c = &cs;
    zh_stream_init(c, fds[1]);
    assert_int_equal(zh_tls_accept(s, NULL, c), 0);
    assert_int_equal(zh_stream_handshake(c), -EPROTO);
    assert_non_null(strstr(zh_stream_tls_error(c), "handshake: "));
    zh_stream_free_tls(c);
    close(fds[0]);
    close(fds[1]);

    /* A real ClientHello; the handshake then proceeds on the same bytes. */
    struct pair p;
    pair_open(&p, s, NULL, "a.example.com");
    assert_int_equal(SSL_do_handshake(p.cl), -1);
    assert_int_equal(zh_stream_sniff(&(struct zh_stream){.fd = p.fds[1]}), ZH_STREAM_SNIFF_TLS);
    assert_true(pair_handshake(&p));
    pair_close(&p);

    /* The canned answer's Content-Length matches its body. */
    const char *resp = ZH_TLS_PLAIN_HTTP_RESPONSE;
    const char *body = strstr(resp, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    char want[48];
    snprintf(want, sizeof(want), "Content-Length: %zu\r\n", strlen(body));
    assert_non_null(strstr(resp, want));
    assert_non_null(strstr(body, "plain HTTP sent to an HTTPS port"));
    zh_tls_store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(sni_exact_name_picks_its_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(sni_wildcard_serves_one_label_below, setup, teardown),
        cmocka_unit_test_setup_teardown(default_cert_serves_unknown_and_missing_names, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(unknown_name_without_default_fails_with_alert, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(tls_1_1_client_is_refused_and_1_2_accepted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(alpn_picks_http11_only, setup, teardown),
        cmocka_unit_test_setup_teardown(store_errors_are_precise, setup, teardown),
        cmocka_unit_test_setup_teardown(reload_swaps_identities_and_keeps_old_connections, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(reload_with_directory_gone_keeps_identities, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(reload_during_a_handshake_keeps_the_chosen_certificate,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(reload_is_safe_while_workers_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(data_both_ways_beyond_64k, setup, teardown),
        cmocka_unit_test_setup_teardown(short_retry_after_blocked_write_is_an_error, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(buffered_plaintext_is_reported_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(eof_close_notify_tcp_close_and_server_shutdown, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(sniff_tells_tls_from_plain_http, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
