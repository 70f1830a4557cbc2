/* permessage-deflate (RFC 7692): see wsdeflate.h. */
#include "shared/proto/wsdeflate.h"

#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "shared/proto/err.h"
#include "shared/proto/mem.h"

/* ---- Sec-WebSocket-Extensions parsing (RFC 6455 9.1: token *( ";" token [ "=" value ] )) ---- */

#define MAX_PARAMS 8

struct ext_param {
    const char *name, *value;
    size_t name_len, value_len;
    bool has_value;
};

struct ext {
    const char *name;
    size_t name_len;
    int nparams;
    struct ext_param param[MAX_PARAMS];
};

static bool tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void skip_ws(const char **p, const char *end)
{
    while (*p < end && (**p == ' ' || **p == '\t'))
        (*p)++;
}

static bool token(const char **p, const char *end, const char **t, size_t *n)
{
    skip_ws(p, end);
    *t = *p;
    while (*p < end && tchar(**p))
        (*p)++;
    *n = (size_t)(*p - *t);
    skip_ws(p, end);
    return *n > 0;
}

/* Parse one list element at *p. Returns 1 (element in *e), 0 (end of the list), -1 (malformed:
 * *p is moved past the element so the next one can still be read). */
static int next_ext(const char **p, const char *end, struct ext *e)
{
    memset(e, 0, sizeof(*e));
    for (;;) { /* empty list elements are allowed */
        skip_ws(p, end);
        if (*p < end && **p == ',')
            (*p)++;
        else
            break;
    }
    if (*p >= end)
        return 0;
    bool ok = token(p, end, &e->name, &e->name_len);
    while (ok && *p < end && **p == ';') {
        (*p)++;
        if (e->nparams == MAX_PARAMS) {
            ok = false;
            break;
        }
        struct ext_param *pa = &e->param[e->nparams++];
        ok = token(p, end, &pa->name, &pa->name_len);
        if (ok && *p < end && **p == '=') {
            (*p)++;
            pa->has_value = true;
            skip_ws(p, end);
            if (*p < end && **p == '"') { /* quoted-string; the values we accept are tokens */
                (*p)++;
                pa->value = *p;
                while (*p < end && **p != '"' && tchar(**p))
                    (*p)++;
                pa->value_len = (size_t)(*p - pa->value);
                ok = *p < end && **p == '"';
                if (ok)
                    (*p)++;
                skip_ws(p, end);
            } else {
                ok = token(p, end, &pa->value, &pa->value_len);
            }
        }
    }
    if (ok && (*p >= end || **p == ','))
        return 1;
    /* Skip the rest of this element (respecting quotes). */
    bool q = false;
    while (*p < end && (q || **p != ',')) {
        if (**p == '"')
            q = !q;
        (*p)++;
    }
    return -1;
}

static bool is(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && strncasecmp(s, lit, n) == 0;
}

static int window_bits(const char *v, size_t n)
{
    if (n == 1 && v[0] >= '8' && v[0] <= '9')
        return v[0] - '0';
    if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return 10 + v[1] - '0';
    return -1;
}

/* Read permessage-deflate parameters. client_bits_optional: client_max_window_bits may come
 * without a value (offers only). Returns false on unknown, repeated or invalid parameters. In
 * *server_bits / *client_bits: 0 if absent, -1 for a valueless client_max_window_bits. */
static bool read_params(const struct ext *e, bool client_bits_optional, struct zh_wsd_params *out,
                        int *server_bits, int *client_bits)
{
    bool seen[4] = {false};
    memset(out, 0, sizeof(*out));
    *server_bits = *client_bits = 0;
    for (int i = 0; i < e->nparams; i++) {
        const char *n = e->param[i].name, *v = e->param[i].value;
        size_t nl = e->param[i].name_len, vl = e->param[i].value_len;
        bool hv = e->param[i].has_value;
        int k;
        if (is(n, nl, "server_no_context_takeover") && !hv) {
            k = 0;
            out->server_no_context_takeover = true;
        } else if (is(n, nl, "client_no_context_takeover") && !hv) {
            k = 1;
            out->client_no_context_takeover = true;
        } else if (is(n, nl, "server_max_window_bits") && hv) {
            k = 2;
            if ((*server_bits = window_bits(v, vl)) < 0)
                return false;
        } else if (is(n, nl, "client_max_window_bits") && (hv || client_bits_optional)) {
            k = 3;
            if (!hv)
                *client_bits = -1;
            else if ((*client_bits = window_bits(v, vl)) < 0)
                return false;
        } else {
            return false;
        }
        if (seen[k])
            return false;
        seen[k] = true;
    }
    return true;
}

int zh_wsd_server_negotiate(const char *hdr, size_t len, struct zh_wsd_params *out,
                            struct zh_buf *resp)
{
    const char *p = hdr, *end = hdr + len;
    struct ext e;
    int rc, sb, cb;

    while ((rc = next_ext(&p, end, &e)) != 0) {
        if (rc < 0 || !is(e.name, e.name_len, "permessage-deflate"))
            continue;
        if (!read_params(&e, true, out, &sb, &cb))
            continue;
        if (sb == 8)
            continue; /* zlib cannot raw-deflate with an 8-bit window */
        out->server_max_window_bits = (uint8_t)(sb ? sb : 15);
        out->client_max_window_bits = 15; /* we inflate with 15 whatever the client uses */
        zh_buf_puts(resp, "permessage-deflate");
        if (out->server_no_context_takeover)
            zh_buf_puts(resp, "; server_no_context_takeover");
        if (out->client_no_context_takeover)
            zh_buf_puts(resp, "; client_no_context_takeover");
        if (sb)
            zh_buf_printf(resp, "; server_max_window_bits=%d", sb);
        return 1;
    }
    memset(out, 0, sizeof(*out));
    return 0;
}

const char *zh_wsd_client_offer(void)
{
    return "permessage-deflate; client_max_window_bits";
}

int zh_wsd_client_accept(const char *hdr, size_t len, struct zh_wsd_params *out, const char **why)
{
    const char *p = hdr, *end = hdr + len;
    struct ext e, more;
    int sb, cb;

    int rc = next_ext(&p, end, &e);
    if (rc <= 0) {
        *why = "malformed Sec-WebSocket-Extensions";
        return ZH_E_PARSE;
    }
    if (!is(e.name, e.name_len, "permessage-deflate")) {
        *why = "server chose an extension we did not offer";
        return ZH_E_PARSE;
    }
    if (next_ext(&p, end, &more) != 0) {
        *why = "server chose more than one extension";
        return ZH_E_PARSE;
    }
    if (!read_params(&e, false, out, &sb, &cb)) {
        *why = "bad permessage-deflate parameters in the response";
        return ZH_E_PARSE;
    }
    if (cb == 8) {
        *why = "server requires client_max_window_bits=8, which zlib cannot deflate with";
        return ZH_E_PARSE;
    }
    out->server_max_window_bits = (uint8_t)(sb ? sb : 15);
    out->client_max_window_bits = (uint8_t)(cb ? cb : 15);
    return 0;
}

/* ---- compression ---- */

int zh_wsd_init(struct zh_wsd *d, const struct zh_wsd_params *p, bool server)
{
    memset(d, 0, sizeof(*d));
    d->_def_bits = server ? p->server_max_window_bits : p->client_max_window_bits;
    if (d->_def_bits == 0)
        d->_def_bits = 15;
    d->_def_reset = server ? p->server_no_context_takeover : p->client_no_context_takeover;
    d->_inf_reset = server ? p->client_no_context_takeover : p->server_no_context_takeover;
    if (d->_def_bits < 9 || d->_def_bits > 15)
        return ZH_E_CONFIG;
    return 0;
}

void zh_wsd_free(struct zh_wsd *d)
{
    if (d->_def) {
        deflateEnd(d->_def);
        zh_free(d->_def);
    }
    if (d->_inf) {
        inflateEnd(d->_inf);
        zh_free(d->_inf);
    }
    memset(d, 0, sizeof(*d));
}

#define CHUNK 16384

int zh_wsd_deflate(struct zh_wsd *d, const uint8_t *p, size_t n, bool fin, struct zh_buf *out)
{
    z_stream *z = d->_def;
    if (!z) {
        z = zh_calloc(1, sizeof(*z));
        if (deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -d->_def_bits, 8,
                         Z_DEFAULT_STRATEGY) != Z_OK) {
            zh_free(z);
            return ZH_E_CONFIG;
        }
        d->_def = z;
    }
    size_t start = out->len;
    z->next_in = (Bytef *)(uintptr_t)p;
    z->avail_in = (uInt)n;
    do {
        zh_buf_reserve(out, CHUNK);
        z->next_out = out->data + out->len;
        z->avail_out = CHUNK;
        if (deflate(z, Z_SYNC_FLUSH) == Z_STREAM_ERROR)
            return ZH_E_PARSE;
        out->len += CHUNK - z->avail_out;
    } while (z->avail_out == 0 || z->avail_in > 0);
    if (fin) {
        static const uint8_t tail[4] = {0x00, 0x00, 0xFF, 0xFF};
        if (out->len - start >= 4 && memcmp(out->data + out->len - 4, tail, 4) == 0)
            out->len -= 4;
        if (out->len == start)
            zh_buf_putc(out, 0x00); /* an empty stored block: the message is empty */
        if (d->_def_reset)
            deflateReset(z);
    }
    return 0;
}

/* Inflate everything in z's input into out, counting against max. */
static int inflate_all(struct zh_wsd *d, z_stream *z, uint64_t max, struct zh_buf *out)
{
    for (;;) {
        zh_buf_reserve(out, CHUNK);
        z->next_out = out->data + out->len;
        z->avail_out = CHUNK;
        int rc = inflate(z, Z_SYNC_FLUSH);
        size_t got = CHUNK - z->avail_out;
        out->len += got;
        d->_inflated += got;
        if (max && d->_inflated > max)
            return ZH_E_TOO_LARGE;
        if (rc == Z_STREAM_END) {
            /* The sender ended the deflate stream (BFINAL): what follows is a new one. */
            inflateReset(z);
            if (z->avail_in == 0)
                return 0;
            continue;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return ZH_E_PARSE;
        if (z->avail_out != 0 && (z->avail_in == 0 || rc == Z_BUF_ERROR))
            return z->avail_in == 0 ? 0 : ZH_E_PARSE;
    }
}

int zh_wsd_inflate(struct zh_wsd *d, const uint8_t *p, size_t n, bool fin, uint64_t max,
                   struct zh_buf *out)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xFF, 0xFF};
    z_stream *z = d->_inf;
    if (!z) {
        z = zh_calloc(1, sizeof(*z));
        if (inflateInit2(z, -15) != Z_OK) {
            zh_free(z);
            return ZH_E_CONFIG;
        }
        d->_inf = z;
    }
    if (!d->_in_inflate) {
        d->_in_inflate = true;
        d->_inflated = 0;
    }
    z->next_in = (Bytef *)(uintptr_t)p;
    z->avail_in = (uInt)n;
    int rc = inflate_all(d, z, max, out);
    if (rc == 0 && fin) {
        z->next_in = (Bytef *)(uintptr_t)tail;
        z->avail_in = 4;
        rc = inflate_all(d, z, max, out);
    }
    if (rc < 0 || fin) {
        d->_in_inflate = false;
        if (rc < 0 || d->_inf_reset)
            inflateReset(z);
    }
    return rc;
}

unsigned zh_wsd_inbox_feed(struct zh_wsd_inbox *q, struct zh_wsd *d, uint8_t opcode, bool start,
                           bool end, const uint8_t *p, size_t n, uint64_t max, const char **why)
{
    if (start) {
        memset(&q->_utf8, 0, sizeof(q->_utf8));
        q->type = opcode;
    }
    size_t before = q->_buf.len;
    int rc = zh_wsd_inflate(d, p, n, end, max, &q->_buf);
    if (rc == ZH_E_TOO_LARGE) {
        *why = "compressed message inflates beyond the message limit";
        return ZH_WS_CLOSE_TOO_BIG;
    }
    if (rc < 0) {
        *why = "corrupt compressed data";
        return ZH_WS_CLOSE_BAD_DATA;
    }
    if (opcode == ZH_WS_TEXT &&
        (zh_ws_utf8_feed(&q->_utf8, q->_buf.data + before, q->_buf.len - before) < 0 ||
         (end && !zh_ws_utf8_done(&q->_utf8)))) {
        *why = "compressed text is not UTF-8";
        return ZH_WS_CLOSE_BAD_DATA;
    }
    if (end)
        q->_end = true;
    return 0;
}

bool zh_wsd_inbox_pending(const struct zh_wsd_inbox *q)
{
    return q->_off < q->_buf.len || q->_end;
}

bool zh_wsd_inbox_next(const struct zh_wsd_inbox *q, int64_t credits, const uint8_t **p, size_t *n,
                       bool *more)
{
    if (!zh_wsd_inbox_pending(q))
        return false;
    size_t avail = q->_buf.len - q->_off;
    size_t take = credits <= 0 ? 0 : ((uint64_t)credits < avail ? (size_t)credits : avail);
    bool last = q->_end && take == avail;
    if (take == 0 && !last)
        return false;
    *p = q->_buf.data + q->_off;
    *n = take;
    *more = !last;
    return true;
}

void zh_wsd_inbox_consume(struct zh_wsd_inbox *q, size_t n, bool more)
{
    q->_off += n;
    if (!more)
        q->_end = false;
    if (q->_off == q->_buf.len) {
        zh_buf_reset(&q->_buf);
        q->_off = 0;
    }
}

void zh_wsd_inbox_trim(struct zh_wsd_inbox *q, size_t keep)
{
    if (!zh_wsd_inbox_pending(q) && q->_buf.cap > keep)
        zh_buf_free(&q->_buf);
}

void zh_wsd_inbox_free(struct zh_wsd_inbox *q)
{
    zh_buf_free(&q->_buf);
}
