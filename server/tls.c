/* Server-side TLS identities: the store loaded from --tls-identities-dir (directory scan, reload)
 * and the SNI choice of each handshake. The per-connection TLS I/O is the transport's
 * (shared/rt/stream.c). See tls.h for the contracts and docs/internals/tls.md for the design. */
#include "server/tls.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "shared/proto/err.h"
#include "shared/proto/fnv.h"
#include "shared/proto/mem.h"
#include "shared/rt/log.h"
#include "shared/rt/stream.h"

#define MAX_FILE_SIZE (1024 * 1024) /* a .crt or .key larger than this is refused */
#define MAX_NAME_LEN  253           /* longest DNS name (SNI and identity names) */
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

/* What the SNI callback needs of one connection (the session's ex data; freed with it). */
struct accept_data {
    struct zh_tls_store *store; /* a reference: the callback's argument stays valid */
    char *default_cert;
};

static int accept_index = -1;
static pthread_once_t accept_once = PTHREAD_ONCE_INIT;

static void accept_data_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                             void *argp);

static void accept_index_init(void)
{
    accept_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, accept_data_free);
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
    uint8_t *data = NULL;
    BIO *bio = NULL;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_FILE_SIZE) {
        zh_buf_printf(err, "%s %s is not a regular file of at most %d bytes", what, path,
                      MAX_FILE_SIZE);
        goto out;
    }
    data = zh_malloc((size_t)st.st_size + 1);
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, data + len, (size_t)st.st_size + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            zh_buf_printf(err, "cannot read %s %s: %s", what, path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > (size_t)st.st_size) {
            zh_buf_printf(err, "%s %s grew while being read", what, path);
            goto out;
        }
    }
    bio = BIO_new(BIO_s_mem());
    if (!bio || BIO_write(bio, data, (int)len) != (int)len) {
        zh_buf_printf(err, "cannot buffer %s %s", what, path);
        BIO_free(bio);
        bio = NULL;
    }
out:
    close(fd);
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
        zh_buf_printf(err, "SSL_CTX_new: %s", zh_stream_tls_reason(reason, sizeof(reason)));
        goto fail;
    }
    ctx_setup(ctx);
    leaf = PEM_read_bio_X509_AUX(cbio, NULL, no_password, NULL);
    if (!leaf) {
        zh_buf_printf(err, "cannot load certificate %s: %s", crt,
                      zh_stream_tls_reason(reason, sizeof(reason)));
        goto fail;
    }
    if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
        zh_buf_printf(err, "cannot use certificate %s: %s", crt,
                      zh_stream_tls_reason(reason, sizeof(reason)));
        goto fail;
    }
    for (;;) {
        X509 *ca = PEM_read_bio_X509(cbio, NULL, no_password, NULL);
        if (!ca)
            break;
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            zh_buf_printf(err, "cannot add chain certificate from %s: %s", crt,
                          zh_stream_tls_reason(reason, sizeof(reason)));
            goto fail;
        }
    }
    /* The chain loop ends on "no start line"; anything else is a broken PEM block. */
    unsigned long e = ERR_peek_last_error();
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        zh_buf_printf(err, "bad chain certificate in %s: %s", crt,
                      zh_stream_tls_reason(reason, sizeof(reason)));
        goto fail;
    }
    ERR_clear_error();
    pkey = PEM_read_bio_PrivateKey(kbio, NULL, no_password, NULL);
    if (!pkey) {
        zh_buf_printf(err, "cannot load key %s: %s", key,
                      zh_stream_tls_reason(reason, sizeof(reason)));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
        zh_buf_printf(err, "key %s does not match certificate %s: %s", key, crt,
                      zh_stream_tls_reason(reason, sizeof(reason)));
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
        sum += zh_fnv1a(zh_fnv1a(ZH_FNV_BASIS, name, len), fields, sizeof(fields));
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
    sc->stat_sig = zh_fnv1a(sum, &count, sizeof(count));
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
        uint64_t h = zh_fnv1a(ZH_FNV_BASIS, sc->files[i], strlen(sc->files[i]));
        BIO *bio = read_file(zh_buf_cstr(&path), "file", &ignored);
        if (bio) {
            char *data;
            long len = BIO_get_mem_data(bio, &data);
            h = zh_fnv1a(h, data, len > 0 ? (size_t)len : 0);
            BIO_free(bio);
        } else {
            h = zh_fnv1a(h, "!", 1); /* the load will report it */
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

/* Refuse the handshake: "<what> '<name>'<tail>", name escaped, kept as the stream's error. */
static void refuse(struct zh_stream *st, const char *what, const char *name, const char *tail)
{
    char esc[96], why[256];
    zh_log_escape(esc, sizeof(esc), name, strlen(name));
    snprintf(why, sizeof(why), "%s '%s'%s", what, esc, tail);
    zh_stream_tls_refuse(st, why);
    zh_debug("tls: handshake refused: %s", why); /* the connection's failure line says it */
}

/* The servername callback of the base context. OpenSSL calls it for every ClientHello, with or
 * without SNI; it picks the identity and switches the connection to its context. */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
    struct zh_tls_store *s = arg;
    struct zh_stream *st = zh_stream_of(ssl);
    const struct accept_data *ad = SSL_get_ex_data(ssl, accept_index);
    const char *dflt = ad ? ad->default_cert : NULL;
    const char *raw = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    char name[MAX_NAME_LEN + 1], wild[MAX_NAME_LEN + 3];
    const char *sni = NULL;
    zh_stream_tls_set_name(st, NULL);
    if (raw) {
        if (!normalise_name(raw, name)) {
            refuse(st, "invalid server name", raw, "");
            *alert = SSL_AD_UNRECOGNIZED_NAME;
            return SSL_TLSEXT_ERR_ALERT_FATAL;
        }
        sni = name;
        zh_stream_tls_set_name(st, sni);
    }

    const char *picked = NULL;
    pthread_mutex_lock(&s->lock);
    SSL_CTX *ctx = NULL;
    if (sni && strncmp(sni, "_.", 2) != 0) {
        ctx = idset_find(s->cur, sni);
        picked = sni;
        const char *dot = strchr(sni, '.');
        if (!ctx && dot && dot[1]) {
            snprintf(wild, sizeof(wild), "_%s", dot);
            ctx = idset_find(s->cur, wild);
            picked = wild;
        }
    }
    if (!ctx && dflt) {
        ctx = idset_find(s->cur, dflt);
        picked = dflt;
    }
    if (ctx)
        SSL_set_SSL_CTX(ssl, ctx); /* takes its own reference: a reload can't free it under us */
    pthread_mutex_unlock(&s->lock);

    if (!ctx) {
        char tail[MAX_NAME_LEN + 48];
        if (dflt)
            snprintf(tail, sizeof(tail), ", nor the default-cert '%s'", dflt);
        else
            snprintf(tail, sizeof(tail), " and no default-cert");
        refuse(st, "no certificate for server name", sni ? sni : "(none)", tail);
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    zh_stream_tls_set_identity(st, picked);
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
        zh_buf_printf(err, "SSL_CTX_new: %s", zh_stream_tls_reason(reason, sizeof(reason)));
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
        uint64_t fail_sig = zh_fnv1a(0, &rc, sizeof(rc));
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

static void accept_data_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                             void *argp)
{
    struct accept_data *d = ptr;
    ZH_UNUSED(parent);
    ZH_UNUSED(ad);
    ZH_UNUSED(idx);
    ZH_UNUSED(argl);
    ZH_UNUSED(argp);
    if (!d)
        return;
    zh_free(d->default_cert);
    zh_tls_store_free(d->store);
    zh_free(d);
}

int zh_tls_accept(struct zh_tls_store *s, const char *default_cert, struct zh_stream *st)
{
    char norm[MAX_NAME_LEN + 1];
    pthread_once(&accept_once, accept_index_init);
    ERR_clear_error();
    SSL *ssl = accept_index >= 0 ? SSL_new(s->base) : NULL;
    if (!ssl)
        return zh_stream_tls_attach(st, NULL); /* logs why */
    SSL_set_accept_state(ssl);
    struct accept_data *d = zh_calloc(1, sizeof(*d));
    d->store = s;
    atomic_fetch_add(&s->refs, 1);
    if (default_cert)
        d->default_cert = zh_strdup(normalise_name(default_cert, norm) ? norm : default_cert);
    SSL_set_ex_data(ssl, accept_index, d); /* freed by accept_data_free with the session */
    return zh_stream_tls_attach(st, ssl);
}
