/* Server-side TLS: the identity store loaded from --tls-identities-dir and non-blocking server
 * connections over accepted fds. See tls.h for the contracts and docs/internals/tls.md for the
 * design (SNI lookup, reload, the write retry rule). */
#include "server/tls.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "shared/proto/err.h"
#include "shared/proto/mem.h"
#include "shared/rt/log.h"

#define MAX_FILE_SIZE (1024 * 1024) /* a .crt or .key larger than this is refused */
#define MAX_NAME_LEN  253           /* longest DNS name (SNI and identity names) */
#define WRITE_CHUNK   16384         /* plaintext per SSL_write: one full TLS record */
#define WRITE_BUDGET  (256 * 1024)  /* plaintext per zh_tls_conn_writev call, for fairness */
#define SID_CTX       "zhttpd"

/* ---- identity sets ---- */

struct ident {
    char *name; /* lowercase file stem, e.g. "_.example.com" */
    SSL_CTX *ctx;
};

/* An immutable set of identities, sorted by name. Connections that picked an identity hold their
 * own reference on its SSL_CTX (SSL_set_SSL_CTX), so a replaced set is freed at once. */
struct idset {
    struct ident *v;
    size_t n;
};

struct zh_tls_store {
    atomic_uint refs; /* the owner's reference plus one per connection */
    char *dir;
    SSL_CTX *base; /* no certificate: holds the options, the SNI callback and the ticket keys */

    pthread_mutex_t lock; /* guards cur */
    struct idset *cur;

    /* One reloader at a time; guards the signatures of the files behind cur (or of the last
     * failed attempt, so a bad file is reported once per change). */
    pthread_mutex_t reload_lock;
    uint64_t stat_sig;
    uint64_t content_sig;
    bool racy; /* the last scan saw a recent file: compare contents next time even if stats match */
};

struct zh_tls_conn {
    SSL *ssl;
    struct zh_tls_store *store;
    char *default_cert;
    char *sni;
    char *identity;
    enum zh_tls_want want;
    size_t wpend; /* length of the SSL_write that must be retried (0 = none) */
    int fatal;    /* first fatal code; later calls return it again */
    bool established;
    bool shut;
    bool cb_failed; /* the SNI callback refused the handshake (and wrote err) */
    char err[256];
};

/* The last OpenSSL error on this thread as text, then clear the thread's error queue. */
static const char *ssl_reason(char *out, size_t outlen)
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

/* PEM password callback: keys must not be encrypted (a daemon has no terminal to prompt on). */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    ZH_UNUSED(buf);
    ZH_UNUSED(size);
    ZH_UNUSED(rwflag);
    ZH_UNUSED(u);
    return -1;
}

static void idset_free(struct idset *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->n; i++) {
        zh_free(set->v[i].name);
        SSL_CTX_free(set->v[i].ctx);
    }
    zh_free(set->v);
    zh_free(set);
}

static int ident_cmp(const void *a, const void *b)
{
    return strcmp(((const struct ident *)a)->name, ((const struct ident *)b)->name);
}

static SSL_CTX *idset_find(const struct idset *set, const char *name)
{
    struct ident key = {.name = (char *)(uintptr_t)name, .ctx = NULL};
    const struct ident *hit = set ? bsearch(&key, set->v, set->n, sizeof(key), ident_cmp) : NULL;
    return hit ? hit->ctx : NULL;
}

/* ALPN: we speak HTTP/1.x only; pick "http/1.1" when offered, else answer without ALPN (the client
 * then assumes HTTP/1.1, or gives up if it wanted h2 only). */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x08http/1.1";
    ZH_UNUSED(ssl);
    ZH_UNUSED(arg);
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* Options shared by the base context and every identity context (OpenSSL takes some settings from
 * the context chosen by SNI, such as the ALPN callback, and others from the base one). */
static void ctx_setup(SSL_CTX *ctx)
{
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* Stateless resumption only (tickets): no server-side cache to bound or lock across workers. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)SID_CTX, sizeof(SID_CTX) - 1);
    SSL_CTX_set_default_passwd_cb(ctx, no_password);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
}

/* Read a whole file (at most MAX_FILE_SIZE) into a memory BIO. NULL with the reason in err. */
static BIO *read_file(const char *path, const char *what, struct zh_buf *err)
{
    int fd;
    do {
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        zh_buf_printf(err, "cannot open %s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_FILE_SIZE) {
        zh_buf_printf(err, "%s %s is not a regular file of at most %d bytes", what, path,
                      MAX_FILE_SIZE);
        close(fd);
        return NULL;
    }
    uint8_t *data = zh_malloc((size_t)st.st_size + 1);
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, data + len, (size_t)st.st_size + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            zh_buf_printf(err, "cannot read %s %s: %s", what, path, strerror(errno));
            zh_free(data);
            close(fd);
            return NULL;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > (size_t)st.st_size) {
            zh_buf_printf(err, "%s %s grew while being read", what, path);
            zh_free(data);
            close(fd);
            return NULL;
        }
    }
    close(fd);
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio || BIO_write(bio, data, (int)len) != (int)len) {
        zh_buf_printf(err, "cannot buffer %s %s", what, path);
        BIO_free(bio);
        bio = NULL;
    }
    zh_free(data);
    return bio;
}

/* Load NAME.crt (leaf first, then the chain) and NAME.key into a new identity context. */
static SSL_CTX *load_identity(const char *dir, const char *stem, struct zh_buf *err)
{
    char reason[256];
    struct zh_buf crt_path = {0}, key_path = {0};
    zh_buf_printf(&crt_path, "%s/%s.crt", dir, stem);
    zh_buf_printf(&key_path, "%s/%s.key", dir, stem);
    const char *crt = zh_buf_cstr(&crt_path), *key = zh_buf_cstr(&key_path);
    SSL_CTX *ctx = NULL;
    X509 *leaf = NULL;
    EVP_PKEY *pkey = NULL;
    BIO *kbio = NULL;
    BIO *cbio = read_file(crt, "certificate", err);
    if (!cbio)
        goto fail;
    struct stat st;
    if (stat(key, &st) < 0) {
        zh_buf_printf(err, "certificate %s has no key file %s: %s", crt, key, strerror(errno));
        goto fail;
    }
    kbio = read_file(key, "key", err);
    if (!kbio)
        goto fail;

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        zh_buf_printf(err, "SSL_CTX_new: %s", ssl_reason(reason, sizeof(reason)));
        goto fail;
    }
    ctx_setup(ctx);
    leaf = PEM_read_bio_X509_AUX(cbio, NULL, no_password, NULL);
    if (!leaf) {
        zh_buf_printf(err, "cannot load certificate %s: %s", crt,
                      ssl_reason(reason, sizeof(reason)));
        goto fail;
    }
    if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
        zh_buf_printf(err, "cannot use certificate %s: %s", crt,
                      ssl_reason(reason, sizeof(reason)));
        goto fail;
    }
    for (;;) {
        X509 *ca = PEM_read_bio_X509(cbio, NULL, no_password, NULL);
        if (!ca)
            break;
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            zh_buf_printf(err, "cannot add chain certificate from %s: %s", crt,
                          ssl_reason(reason, sizeof(reason)));
            goto fail;
        }
    }
    /* The chain loop ends on "no start line"; anything else is a broken PEM block. */
    unsigned long e = ERR_peek_last_error();
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        zh_buf_printf(err, "bad chain certificate in %s: %s", crt,
                      ssl_reason(reason, sizeof(reason)));
        goto fail;
    }
    ERR_clear_error();
    pkey = PEM_read_bio_PrivateKey(kbio, NULL, no_password, NULL);
    if (!pkey) {
        zh_buf_printf(err, "cannot load key %s: %s", key, ssl_reason(reason, sizeof(reason)));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
        zh_buf_printf(err, "key %s does not match certificate %s: %s", key, crt,
                      ssl_reason(reason, sizeof(reason)));
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        zh_buf_printf(err, "key %s does not match certificate %s", key, crt);
        ERR_clear_error();
        goto fail;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0)
        zh_warn("tls: certificate %s has expired", crt);
    X509_free(leaf);
    EVP_PKEY_free(pkey);
    BIO_free(cbio);
    BIO_free(kbio);
    zh_buf_free(&crt_path);
    zh_buf_free(&key_path);
    return ctx;

fail:
    X509_free(leaf);
    EVP_PKEY_free(pkey);
    SSL_CTX_free(ctx);
    BIO_free(cbio);
    BIO_free(kbio);
    zh_buf_free(&crt_path);
    zh_buf_free(&key_path);
    ERR_clear_error();
    return NULL;
}

/* ---- directory scan ---- */

static bool has_suffix(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len > n && memcmp(s + len - n, suffix, n) == 0;
}

#define FNV_BASIS 14695981039346656037ull

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* The .crt and .key files of a directory, as one scan saw them. */
struct scan {
    char **files; /* file names (not hidden, regular after following links) */
    size_t n, cap;
    uint64_t stat_sig; /* over name, device, inode, size, mtime, ctime; readdir order ignored */
    bool racy; /* some file changed within RACY_SECS: its stat may not show a later change */
};

#define RACY_SECS 2

static void scan_free(struct scan *sc)
{
    for (size_t i = 0; i < sc->n; i++)
        zh_free(sc->files[i]);
    zh_free(sc->files);
    memset(sc, 0, sizeof(*sc));
}

/* One readdir pass over dir with a stat per .crt/.key file. Returns 0 or -errno with err. */
static int scan_dir(const char *dir, struct scan *sc, struct zh_buf *err)
{
    memset(sc, 0, sizeof(*sc));
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        zh_buf_printf(err, "cannot open TLS identities directory %s: %s", dir, strerror(e));
        return -e;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t sum = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno) {
                int e = errno;
                zh_buf_printf(err, "cannot read TLS identities directory %s: %s", dir, strerror(e));
                scan_free(sc);
                closedir(d);
                return -e;
            }
            break;
        }
        const char *name = de->d_name;
        size_t len = strlen(name);
        if (name[0] == '.' || !(has_suffix(name, len, ".crt") || has_suffix(name, len, ".key")))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), name, &st, 0) < 0 || !S_ISREG(st.st_mode))
            continue; /* vanished meanwhile, or not a file: the next scan sees the change */
        const uint64_t fields[] = {
            (uint64_t)st.st_dev,          (uint64_t)st.st_ino,          (uint64_t)st.st_size,
            (uint64_t)st.st_mtim.tv_sec,  (uint64_t)st.st_mtim.tv_nsec, (uint64_t)st.st_ctim.tv_sec,
            (uint64_t)st.st_ctim.tv_nsec,
        };
        sum += fnv1a(fnv1a(FNV_BASIS, name, len), fields, sizeof(fields));
        /* File times come from a coarse clock: a rewrite in the same tick as this scan would keep
         * the same stat, so recent files are compared by content next time too. */
        if (st.st_mtim.tv_sec >= now.tv_sec - RACY_SECS ||
            st.st_ctim.tv_sec >= now.tv_sec - RACY_SECS)
            sc->racy = true;
        if (sc->n == sc->cap) {
            sc->cap = sc->cap ? sc->cap * 2 : 8;
            sc->files = zh_realloc(sc->files, sc->cap * sizeof(*sc->files));
        }
        sc->files[sc->n++] = zh_strndup(name, len);
    }
    closedir(d);
    uint64_t count = sc->n;
    sc->stat_sig = fnv1a(sum, &count, sizeof(count));
    return 0;
}

/* A signature of the contents of the scanned files. */
static uint64_t content_sig(const char *dir, const struct scan *sc)
{
    uint64_t sum = 0;
    struct zh_buf path = {0}, ignored = {0};
    for (size_t i = 0; i < sc->n; i++) {
        zh_buf_reset(&path);
        zh_buf_printf(&path, "%s/%s", dir, sc->files[i]);
        uint64_t h = fnv1a(FNV_BASIS, sc->files[i], strlen(sc->files[i]));
        BIO *bio = read_file(zh_buf_cstr(&path), "file", &ignored);
        if (bio) {
            char *data;
            long len = BIO_get_mem_data(bio, &data);
            h = fnv1a(h, data, len > 0 ? (size_t)len : 0);
            BIO_free(bio);
        } else {
            h = fnv1a(h, "!", 1); /* the load will report it */
        }
        sum += h;
    }
    zh_buf_free(&path);
    zh_buf_free(&ignored);
    return sum;
}

/* Load every NAME.crt of a scan into a new set. NULL with err on any bad file. */
static struct idset *idset_load(const char *dir, const struct scan *sc, struct zh_buf *err)
{
    struct idset *set = zh_calloc(1, sizeof(*set));
    set->v = zh_calloc(sc->n ? sc->n : 1, sizeof(*set->v));
    for (size_t i = 0; i < sc->n; i++) {
        const char *file = sc->files[i];
        size_t len = strlen(file);
        if (!has_suffix(file, len, ".crt"))
            continue;
        char *stem = zh_strndup(file, len - 4);
        SSL_CTX *ctx = load_identity(dir, stem, err);
        if (!ctx) {
            zh_free(stem);
            idset_free(set);
            return NULL;
        }
        for (char *p = stem; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        set->v[set->n].name = stem;
        set->v[set->n++].ctx = ctx;
    }
    qsort(set->v, set->n, sizeof(*set->v), ident_cmp);
    for (size_t i = 1; i < set->n; i++) {
        if (strcmp(set->v[i - 1].name, set->v[i].name) == 0) {
            zh_buf_printf(err, "two certificates in %s for the name '%s' (names ignore case)", dir,
                          set->v[i].name);
            idset_free(set);
            return NULL;
        }
    }
    return set;
}

/* ---- SNI ---- */

/* Lowercase name and drop one trailing dot into out (MAX_NAME_LEN + 1 bytes). Returns false for a
 * name that is not a DNS name (empty, too long, or a byte outside [A-Za-z0-9._-]). */
static bool normalise_name(const char *name, char *out)
{
    size_t len = strlen(name);
    if (len && name[len - 1] == '.')
        len--;
    if (len == 0 || len > MAX_NAME_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (!(isalnum(ch) || ch == '.' || ch == '-' || ch == '_'))
            return false;
        out[i] = (char)tolower(ch);
    }
    out[len] = '\0';
    return true;
}

/* Record why the SNI callback refuses the handshake: "<what> '<name>'<tail>", name escaped. */
static void conn_fail_cb(struct zh_tls_conn *c, const char *what, const char *name,
                         const char *tail)
{
    char esc[96];
    zh_log_escape(esc, sizeof(esc), name, strlen(name));
    snprintf(c->err, sizeof(c->err), "%s '%s'%s", what, esc, tail);
    c->cb_failed = true;
    zh_warn("tls: handshake refused: %s", c->err);
}

/* The servername callback of the base context. OpenSSL calls it for every ClientHello, with or
 * without SNI; it picks the identity and switches the connection to its context. */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
    struct zh_tls_store *s = arg;
    struct zh_tls_conn *c = SSL_get_app_data(ssl);
    const char *raw = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    char name[MAX_NAME_LEN + 1], wild[MAX_NAME_LEN + 3];
    zh_free(c->sni);
    c->sni = NULL;
    if (raw) {
        if (!normalise_name(raw, name)) {
            conn_fail_cb(c, "invalid server name", raw, "");
            *alert = SSL_AD_UNRECOGNIZED_NAME;
            return SSL_TLSEXT_ERR_ALERT_FATAL;
        }
        c->sni = zh_strdup(name);
    }

    const char *picked = NULL;
    pthread_mutex_lock(&s->lock);
    SSL_CTX *ctx = NULL;
    if (c->sni && strncmp(c->sni, "_.", 2) != 0) {
        ctx = idset_find(s->cur, c->sni);
        picked = c->sni;
        const char *dot = strchr(c->sni, '.');
        if (!ctx && dot && dot[1]) {
            snprintf(wild, sizeof(wild), "_%s", dot);
            ctx = idset_find(s->cur, wild);
            picked = wild;
        }
    }
    if (!ctx && c->default_cert) {
        ctx = idset_find(s->cur, c->default_cert);
        picked = c->default_cert;
    }
    if (ctx)
        SSL_set_SSL_CTX(ssl, ctx); /* takes its own reference: a reload can't free it under us */
    pthread_mutex_unlock(&s->lock);

    if (!ctx) {
        char tail[MAX_NAME_LEN + 48];
        if (c->default_cert)
            snprintf(tail, sizeof(tail), ", nor the default-cert '%s'", c->default_cert);
        else
            snprintf(tail, sizeof(tail), " and no default-cert");
        conn_fail_cb(c, "no certificate for server name", c->sni ? c->sni : "(none)", tail);
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    zh_free(c->identity);
    c->identity = zh_strdup(picked);
    return SSL_TLSEXT_ERR_OK;
}

/* ---- store ---- */

struct zh_tls_store *zh_tls_store_new(const char *dir, struct zh_buf *err)
{
    char reason[256];
    struct scan sc;
    if (scan_dir(dir, &sc, err) < 0)
        return NULL;
    struct idset *set = idset_load(dir, &sc, err);
    if (!set) {
        scan_free(&sc);
        return NULL;
    }
    ERR_clear_error();
    SSL_CTX *base = SSL_CTX_new(TLS_server_method());
    if (!base) {
        zh_buf_printf(err, "SSL_CTX_new: %s", ssl_reason(reason, sizeof(reason)));
        idset_free(set);
        scan_free(&sc);
        return NULL;
    }
    ctx_setup(base);
    struct zh_tls_store *s = zh_calloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    s->dir = zh_strdup(dir);
    s->base = base;
    s->cur = set;
    s->stat_sig = sc.stat_sig;
    s->content_sig = content_sig(dir, &sc);
    s->racy = sc.racy;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->reload_lock, NULL);
    SSL_CTX_set_tlsext_servername_callback(base, on_servername);
    SSL_CTX_set_tlsext_servername_arg(base, s);
    if (set->n == 0)
        zh_warn("tls: no certificates (NAME.crt + NAME.key) in %s: TLS handshakes will fail", dir);
    else
        zh_info("tls: loaded %zu identities from %s", set->n, dir);
    scan_free(&sc);
    return s;
}

int zh_tls_store_reload_if_changed(struct zh_tls_store *s)
{
    if (pthread_mutex_trylock(&s->reload_lock) != 0)
        return 0;
    struct zh_buf err = {0};
    struct scan sc;
    int rc = scan_dir(s->dir, &sc, &err);
    if (rc < 0) {
        /* Remember the failure as a signature of its own, so it is logged once. */
        uint64_t fail_sig = fnv1a(0, &rc, sizeof(rc));
        if (fail_sig != s->stat_sig)
            zh_warn("tls: keeping the loaded identities: %s", zh_buf_cstr(&err));
        s->stat_sig = fail_sig;
        s->content_sig = 0;
        s->racy = false;
        goto out;
    }
    /* Cheap path: same stats, none recent enough to hide a change. */
    if (sc.stat_sig == s->stat_sig && !s->racy)
        goto out; /* rc = 0 */
    uint64_t csig = content_sig(s->dir, &sc);
    bool same = csig == s->content_sig;
    s->stat_sig = sc.stat_sig;
    s->content_sig = csig;
    s->racy = sc.racy;
    if (same)
        goto out; /* touched or re-copied, same bytes: keep the set */
    struct idset *set = idset_load(s->dir, &sc, &err);
    if (!set) {
        zh_warn("tls: reload of %s failed, keeping the loaded identities: %s", s->dir,
                zh_buf_cstr(&err));
        rc = ZH_E_CONFIG;
        goto out;
    }
    pthread_mutex_lock(&s->lock);
    struct idset *old = s->cur;
    s->cur = set;
    pthread_mutex_unlock(&s->lock);
    idset_free(old);
    zh_info("tls: reloaded %zu identities from %s", set->n, s->dir);
    rc = 1;
out:
    pthread_mutex_unlock(&s->reload_lock);
    scan_free(&sc);
    zh_buf_free(&err);
    return rc;
}

bool zh_tls_store_has(struct zh_tls_store *s, const char *name)
{
    char norm[MAX_NAME_LEN + 1];
    if (!normalise_name(name, norm))
        return false;
    pthread_mutex_lock(&s->lock);
    bool found = idset_find(s->cur, norm) != NULL;
    pthread_mutex_unlock(&s->lock);
    return found;
}

size_t zh_tls_store_count(struct zh_tls_store *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->cur->n;
    pthread_mutex_unlock(&s->lock);
    return n;
}

void zh_tls_store_free(struct zh_tls_store *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    idset_free(s->cur);
    SSL_CTX_free(s->base);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->reload_lock);
    zh_free(s->dir);
    zh_free(s);
}

/* ---- connections ---- */

struct zh_tls_conn *zh_tls_conn_new(struct zh_tls_store *s, const char *default_cert, int fd)
{
    char norm[MAX_NAME_LEN + 1];
    ERR_clear_error();
    SSL *ssl = SSL_new(s->base);
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        char reason[256];
        zh_error("tls: cannot create a connection: %s", ssl_reason(reason, sizeof(reason)));
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    struct zh_tls_conn *c = zh_calloc(1, sizeof(*c));
    c->ssl = ssl;
    c->store = s;
    atomic_fetch_add(&s->refs, 1);
    if (default_cert)
        c->default_cert = zh_strdup(normalise_name(default_cert, norm) ? norm : default_cert);
    SSL_set_app_data(ssl, c);
    return c;
}

/* Turn a failed SSL_* call (its return r, and errno right after it) into -EAGAIN (with want set),
 * 0 for end of stream, or a fatal code (with err set and a log line). */
static int conn_error(struct zh_tls_conn *c, int r, int sys_errno, const char *op)
{
    int e = SSL_get_error(c->ssl, r);
    unsigned long last = ERR_peek_last_error();
    char reason[200];
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c->want = e == SSL_ERROR_WANT_READ ? ZH_TLS_WANT_READ : ZH_TLS_WANT_WRITE;
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
        c->fatal = -sys_errno;
        snprintf(c->err, sizeof(c->err), "%s: %s", op, strerror(sys_errno));
    } else {
        c->fatal = -EPROTO;
        if (!c->cb_failed)
            snprintf(c->err, sizeof(c->err), "%s: %s", op, ssl_reason(reason, sizeof(reason)));
    }
    ERR_clear_error();
    c->want = ZH_TLS_WANT_NONE;
    if (!c->cb_failed)
        zh_info("tls: connection failed%s%s: %s", c->sni ? " for " : "", c->sni ? c->sni : "",
                c->err);
    return c->fatal;
}

static void note_established(struct zh_tls_conn *c)
{
    if (c->established || !SSL_is_init_finished(c->ssl))
        return;
    c->established = true;
    zh_debug("tls: established %s %s, name %s, identity %s", SSL_get_version(c->ssl),
             SSL_get_cipher_name(c->ssl), c->sni ? c->sni : "(none)",
             c->identity ? c->identity : "(none)");
}

int zh_tls_conn_handshake(struct zh_tls_conn *c)
{
    if (c->fatal)
        return c->fatal;
    c->want = ZH_TLS_WANT_NONE;
    if (c->established)
        return 0;
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        note_established(c);
        return 0;
    }
    r = conn_error(c, r, errno, "handshake");
    if (r == 0) {
        /* The peer closed during the handshake: not established, nothing more will come. */
        c->fatal = -ECONNRESET;
        snprintf(c->err, sizeof(c->err), "handshake: connection closed by the peer");
        return c->fatal;
    }
    return r;
}

bool zh_tls_conn_established(const struct zh_tls_conn *c)
{
    return c->established;
}

ssize_t zh_tls_conn_read(struct zh_tls_conn *c, void *buf, size_t len)
{
    if (c->fatal)
        return c->fatal;
    c->want = ZH_TLS_WANT_NONE;
    if (len == 0)
        return 0;
    ERR_clear_error();
    errno = 0;
    int r = SSL_read(c->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (r > 0) {
        note_established(c);
        return r;
    }
    return conn_error(c, r, errno, "read");
}

bool zh_tls_conn_pending(const struct zh_tls_conn *c)
{
    return !c->fatal && SSL_has_pending(c->ssl);
}

/* Copy up to len bytes from iov starting at (*i, *off) into dst without advancing the cursor. */
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

ssize_t zh_tls_conn_writev(struct zh_tls_conn *c, const struct iovec *iov, int n)
{
    static _Thread_local uint8_t scratch[WRITE_CHUNK];
    if (c->fatal)
        return c->fatal;
    c->want = ZH_TLS_WANT_NONE;
    size_t total = 0;
    for (int k = 0; k < n; k++)
        total += iov[k].iov_len;
    if (total == 0)
        return 0;
    if (!c->established) {
        int r = zh_tls_conn_handshake(c);
        if (r < 0)
            return r;
    }
    if (c->wpend > total) {
        c->fatal = -EINVAL;
        snprintf(c->err, sizeof(c->err),
                 "write: retried with %zu bytes after a blocked write of %zu", total, c->wpend);
        zh_error("tls: %s", c->err);
        return c->fatal;
    }

    /* One record per SSL_write. A record that blocks stays encrypted inside OpenSSL; it is retried
     * with the same length and counted once the socket takes it (tls.h's retry rule). */
    size_t done = 0;
    int i = 0;
    size_t off = 0;
    while (done < total && done < WRITE_BUDGET) {
        while (i < n && off == iov[i].iov_len) {
            i++;
            off = 0;
        }
        size_t chunk = c->wpend ? c->wpend : ZH_MIN(total - done, (size_t)WRITE_CHUNK);
        const void *p;
        if (iov[i].iov_len - off >= chunk) {
            p = (const uint8_t *)iov[i].iov_base + off;
        } else {
            gather(iov, n, i, off, scratch, chunk);
            p = scratch;
        }
        ERR_clear_error();
        errno = 0;
        int r = SSL_write(c->ssl, p, (int)chunk);
        if (r <= 0) {
            int rc = conn_error(c, r, errno, "write");
            if (rc == -EAGAIN) {
                c->wpend = chunk;
                return done ? (ssize_t)done : -EAGAIN;
            }
            if (rc == 0) {
                c->fatal = -EPIPE;
                snprintf(c->err, sizeof(c->err), "write: connection closed by the peer");
                rc = c->fatal;
            }
            return rc;
        }
        c->wpend = 0;
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

enum zh_tls_want zh_tls_conn_want(const struct zh_tls_conn *c)
{
    return c->want;
}

int zh_tls_conn_shutdown(struct zh_tls_conn *c)
{
    if (c->fatal)
        return c->fatal;
    if (!c->established || c->shut)
        return 0;
    c->want = ZH_TLS_WANT_NONE;
    ERR_clear_error();
    errno = 0;
    int r = SSL_shutdown(c->ssl);
    int sys_errno = errno;
    if (r >= 0) {
        c->shut = true; /* 0: our close_notify is sent; we don't wait for the peer's */
        return 0;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        c->want = e == SSL_ERROR_WANT_WRITE ? ZH_TLS_WANT_WRITE : ZH_TLS_WANT_READ;
        return -EAGAIN;
    }
    /* Not logged: the usual cause is a peer that closed first, and the caller closes anyway. */
    char reason[200];
    bool sys = e == SSL_ERROR_SYSCALL && sys_errno != 0;
    snprintf(c->err, sizeof(c->err), "shutdown: %s",
             sys ? strerror(sys_errno) : ssl_reason(reason, sizeof(reason)));
    ERR_clear_error();
    c->fatal = sys ? -sys_errno : -EPROTO;
    return c->fatal;
}

const char *zh_tls_conn_error(const struct zh_tls_conn *c)
{
    return c->err;
}

const char *zh_tls_conn_sni(const struct zh_tls_conn *c)
{
    return c->sni;
}

const char *zh_tls_conn_identity(const struct zh_tls_conn *c)
{
    return c->identity;
}

void zh_tls_conn_free(struct zh_tls_conn *c)
{
    if (!c)
        return;
    SSL_free(c->ssl);
    zh_free(c->default_cert);
    zh_free(c->sni);
    zh_free(c->identity);
    zh_tls_store_free(c->store);
    zh_free(c);
}

/* ---- plain HTTP on a TLS port ---- */

int zh_tls_sniff(int fd)
{
    uint8_t b;
    ssize_t r;
    do {
        r = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? ZH_TLS_SNIFF_NEED_MORE : -errno;
    if (r == 0)
        return ZH_TLS_SNIFF_EOF;
    return b >= 'A' && b <= 'Z' ? ZH_TLS_SNIFF_PLAIN : ZH_TLS_SNIFF_TLS;
}

int zh_tls_hello_ready(int fd, bool *lowat_set)
{
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
                if (h[0] != 0x16 || len > 16384)
                    need = 0;
                else
                    need = 5 + len;
            }
        }
        if ((size_t)avail >= need) {
            if (*lowat_set) {
                int one = 1;
                setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
                *lowat_set = false;
            }
            return ZH_TLS_HELLO_READY;
        }
        if (round == 1)
            break;
        /* Readable with too few bytes only happens at the peer's FIN (or reset). */
        struct tcp_info ti;
        socklen_t tl = sizeof(ti);
        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 &&
            ti.tcpi_state != TCP_ESTABLISHED)
            return ZH_TLS_HELLO_EOF;
        int lw = (int)need;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lw, sizeof(lw)) < 0)
            return ZH_TLS_HELLO_READY; /* cannot wait without spinning: let OpenSSL read */
        *lowat_set = true;
        /* Bytes that arrived since FIONREAD: look again (the kernel also signals EPOLLIN when the
         * new mark is already met, but one more look is cheap). */
    }
    return ZH_TLS_HELLO_WAIT;
}
