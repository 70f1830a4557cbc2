#include "shared/proto/zhttp.h"

#include <assert.h>
#include <string.h>

#include "shared/proto/err.h"
#include "shared/proto/tnetstring.h"

/* How a known key is decoded and encoded. */
enum fkind {
    FK_FROM,      /* string, at most ZH_ZHTTP_MAX_ID_LEN bytes */
    FK_ID,        /* string, or list of {id, seq} dicts */
    FK_SEQ,       /* int >= 0, kept in ids[0] */
    FK_EXT,       /* dict; only `multi` (bool) is read */
    FK_TYPE,      /* string naming a packet type */
    FK_STR,       /* string -> struct zh_span */
    FK_INT,       /* int >= 0 -> int64_t + presence bit */
    FK_BOOL,      /* bool -> bool + presence bit */
    FK_HEADERS,   /* list of [name, value] string pairs */
    FK_PORT,      /* int in 0..65535 */
    FK_PEER_PORT, /* int or decimal string in 0..65535 */
    FK_RAW,       /* any value, kept as its raw encoding */
};

struct field {
    const char *key;
    uint8_t key_len;
    uint8_t kind;
    uint16_t off;  /* offset of the member in struct zh_zhttp_packet */
    uint32_t flag; /* ZH_ZF_* presence bit (FK_INT, FK_BOOL, FK_PORT, FK_PEER_PORT) */
    const char *e_type;
    const char *e_range;
    const char *e_dup;
};

#define FIELD(k, kind, member, flag, what, range)                                \
    {                                                                            \
        k, sizeof(k) - 1u, kind, offsetof(struct zh_zhttp_packet, member), flag, \
            "field '" k "': expected " what, "field '" k "': " range,            \
            "field '" k "': duplicate key"                                       \
    }
#define NEG "must not be negative"

/* Every known key, in the order the encoder writes them. This order reproduces the exact bytes of
 * the ZHTTP.md §5.2 examples (Condure's order: from, id, seq, ext, type, then the rest). */
static const struct field fields[] = {
    FIELD("from", FK_FROM, from, 0, "string", "too long"),
    FIELD("id", FK_ID, ids, ZH_ZF_MULTI_ID, "string or list of {id, seq} dicts", "too long"),
    FIELD("seq", FK_SEQ, ids, ZH_ZF_SEQ, "int", NEG),
    FIELD("ext", FK_EXT, ext_multi, ZH_ZF_EXT_MULTI, "dict", ""),
    FIELD("type", FK_TYPE, type, 0, "string", "unknown packet type"),
    FIELD("condition", FK_STR, condition, 0, "string", ""),
    FIELD("method", FK_STR, method, 0, "string", ""),
    FIELD("uri", FK_STR, uri, 0, "string", ""),
    FIELD("code", FK_INT, code, ZH_ZF_CODE, "int", NEG),
    FIELD("reason", FK_STR, reason, 0, "string", ""),
    FIELD("headers", FK_HEADERS, headers, ZH_ZF_HEADERS, "list of [name, value] string pairs",
          "too many entries"),
    FIELD("content-type", FK_STR, content_type, 0, "string", ""),
    FIELD("body", FK_STR, body, 0, "string", ""),
    FIELD("more", FK_BOOL, more, ZH_ZF_MORE, "bool", ""),
    FIELD("credits", FK_INT, credits, ZH_ZF_CREDITS, "int", NEG),
    FIELD("stream", FK_BOOL, stream, ZH_ZF_STREAM, "bool", ""),
    FIELD("router-resp", FK_BOOL, router_resp, ZH_ZF_ROUTER_RESP, "bool", ""),
    FIELD("max-size", FK_INT, max_size, ZH_ZF_MAX_SIZE, "int", NEG),
    FIELD("timeout", FK_INT, timeout, ZH_ZF_TIMEOUT, "int", NEG),
    FIELD("peer-address", FK_STR, peer_address, 0, "string", ""),
    FIELD("peer-port", FK_PEER_PORT, peer_port, ZH_ZF_PEER_PORT, "int or decimal string",
          "out of range"),
    FIELD("connect-host", FK_STR, connect_host, 0, "string", ""),
    FIELD("connect-port", FK_PORT, connect_port, ZH_ZF_CONNECT_PORT, "int", "out of range"),
    FIELD("trust-connect-host", FK_BOOL, trust_connect_host, ZH_ZF_TRUST_CONNECT_HOST, "bool", ""),
    FIELD("ignore-policies", FK_BOOL, ignore_policies, ZH_ZF_IGNORE_POLICIES, "bool", ""),
    FIELD("ignore-tls-errors", FK_BOOL, ignore_tls_errors, ZH_ZF_IGNORE_TLS_ERRORS, "bool", ""),
    FIELD("follow-redirects", FK_BOOL, follow_redirects, ZH_ZF_FOLLOW_REDIRECTS, "bool", ""),
    FIELD("client-cert", FK_STR, client_cert, 0, "string", ""),
    FIELD("client-key", FK_STR, client_key, 0, "string", ""),
    FIELD("user-data", FK_RAW, user_data, 0, "", ""),
    FIELD("passthrough", FK_RAW, passthrough, 0, "", ""),
};

#undef FIELD
#undef NEG

static const char *const type_names[] = {
    [ZH_ZHTTP_DATA] = "",
    [ZH_ZHTTP_ERROR] = "error",
    [ZH_ZHTTP_CREDIT] = "credit",
    [ZH_ZHTTP_KEEP_ALIVE] = "keep-alive",
    [ZH_ZHTTP_CANCEL] = "cancel",
    [ZH_ZHTTP_HANDOFF_START] = "handoff-start",
    [ZH_ZHTTP_HANDOFF_PROCEED] = "handoff-proceed",
    [ZH_ZHTTP_CLOSE] = "close",
    [ZH_ZHTTP_PING] = "ping",
    [ZH_ZHTTP_PONG] = "pong",
};

/* ---- small helpers ---- */

/* zh_zhttp_packet_init() clears three ranges; they must keep this order in the struct. */
_Static_assert(offsetof(struct zh_zhttp_packet, n_ids) < offsetof(struct zh_zhttp_packet, ids),
               "scalars before ids[]");
_Static_assert(offsetof(struct zh_zhttp_packet, n_headers) > offsetof(struct zh_zhttp_packet, ids),
               "n_headers between ids[] and headers[]");
_Static_assert(offsetof(struct zh_zhttp_packet, condition) >
                   offsetof(struct zh_zhttp_packet, headers),
               "only scalars after headers[]");

void zh_zhttp_packet_init(struct zh_zhttp_packet *pkt)
{
    /* Only the scalar part and ids[0] (which holds a top-level seq) are cleared: the arrays are
     * 8 KB and entries past n_ids/n_headers are never read. This keeps decoding cheap. */
    memset(pkt, 0, offsetof(struct zh_zhttp_packet, ids));
    memset(&pkt->ids[0], 0, sizeof pkt->ids[0]);
    pkt->n_headers = 0;
    memset(&pkt->condition, 0, sizeof *pkt - offsetof(struct zh_zhttp_packet, condition));
}

const char *zh_zhttp_type_name(enum zh_zhttp_type t)
{
    if ((size_t)t >= sizeof type_names / sizeof type_names[0])
        return "unknown";
    return type_names[t];
}

int zh_zhttp_type_parse(struct zh_span name, enum zh_zhttp_type *t)
{
    for (size_t i = 1; i < sizeof type_names / sizeof type_names[0]; i++) {
        if (zh_span_eq(name, type_names[i])) {
            *t = (enum zh_zhttp_type)i;
            return 0;
        }
    }
    return ZH_E_PARSE;
}

bool zh_span_eq(struct zh_span a, const char *s)
{
    if (!a.p)
        return false;
    size_t n = strlen(s);
    return a.n == n && (n == 0 || memcmp(a.p, s, n) == 0);
}

struct zh_span zh_span_str(const char *s)
{
    struct zh_span sp = {(const uint8_t *)s, s ? strlen(s) : 0};
    return sp;
}

int zh_zhttp_split_pub(const uint8_t *p, size_t n, struct zh_span *addr, struct zh_span *payload)
{
    const uint8_t *sp = n ? memchr(p, ' ', n) : NULL;
    if (!sp)
        return ZH_E_PARSE;
    addr->p = p;
    addr->n = (size_t)(sp - p);
    payload->p = sp + 1;
    payload->n = n - addr->n - 1u;
    return 0;
}

/* ---- decoder ---- */

static int fail(struct zh_zhttp_error *err, int rc, const char *reason)
{
    err->reason = reason;
    return rc;
}

static const char *tns_reason(int rc)
{
    switch (rc) {
    case ZH_E_INCOMPLETE:
        return "truncated tnetstring";
    case ZH_E_TOO_DEEP:
        return "tnetstring nested too deep";
    case ZH_E_TOO_LARGE:
        return "tnetstring length too large";
    default:
        return "malformed tnetstring";
    }
}

static const struct field *find_field(const struct zh_tns_value *key)
{
    /* Length and first byte rule out nearly every candidate before memcmp runs. */
    if (key->len == 0)
        return NULL;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (fields[i].key_len == key->len && fields[i].key[0] == (char)key->data[0] &&
            memcmp(fields[i].key, key->data, key->len) == 0)
            return &fields[i];
    }
    return NULL;
}

static struct zh_span span_of(const struct zh_tns_value *v)
{
    struct zh_span s = {v->data, v->len};
    return s;
}

static void *member(struct zh_zhttp_packet *pkt, const struct field *f)
{
    return (char *)pkt + f->off;
}

/* One {id, seq} entry of a multi-id list. */
static int decode_id_entry(const struct zh_tns_value *e, struct zh_zhttp_id *out,
                           struct zh_zhttp_error *err)
{
    struct zh_tns_iter it;
    struct zh_tns_value k, v;
    bool have_id = false;

    if (e->type != ZH_TNS_DICT)
        return fail(err, ZH_E_TYPE, "field 'id': list entry is not a dict");
    out->id.p = NULL;
    out->id.n = 0;
    out->seq = 0;
    out->has_seq = false;
    zh_tns_iter_init(&it, e);
    while (zh_tns_dict_next(&it, &k, &v)) {
        if (zh_tns_str_eq(&k, "id")) {
            if (have_id)
                return fail(err, ZH_E_PARSE, "field 'id': list entry has a duplicate 'id'");
            if (v.type != ZH_TNS_STRING)
                return fail(err, ZH_E_TYPE, "field 'id': list entry 'id': expected string");
            if (v.len > ZH_ZHTTP_MAX_ID_LEN)
                return fail(err, ZH_E_TOO_LARGE, "field 'id': too long");
            out->id = span_of(&v);
            have_id = true;
        } else if (zh_tns_str_eq(&k, "seq")) {
            if (out->has_seq)
                return fail(err, ZH_E_PARSE, "field 'id': list entry has a duplicate 'seq'");
            if (v.type != ZH_TNS_INT)
                return fail(err, ZH_E_TYPE, "field 'id': list entry 'seq': expected int");
            if (v.i < 0)
                return fail(err, ZH_E_PARSE, "field 'id': list entry 'seq': must not be negative");
            out->seq = v.i;
            out->has_seq = true;
        }
    }
    if (!have_id)
        return fail(err, ZH_E_MISSING, "field 'id': list entry has no 'id'");
    return 0;
}

static int decode_id(const struct field *f, const struct zh_tns_value *v,
                     struct zh_zhttp_packet *pkt, struct zh_zhttp_error *err)
{
    if (v->type == ZH_TNS_STRING) {
        if (v->len > ZH_ZHTTP_MAX_ID_LEN)
            return fail(err, ZH_E_TOO_LARGE, f->e_range);
        pkt->ids[0].id = span_of(v);
        pkt->n_ids = 1;
        return 0;
    }
    if (v->type != ZH_TNS_LIST)
        return fail(err, ZH_E_TYPE, f->e_type);

    struct zh_tns_iter it;
    struct zh_tns_value e;
    size_t n = 0;
    zh_tns_iter_init(&it, v);
    while (zh_tns_list_next(&it, &e)) {
        if (n == ZH_ZHTTP_MAX_IDS)
            return fail(err, ZH_E_TOO_LARGE, "field 'id': too many ids");
        int rc = decode_id_entry(&e, &pkt->ids[n], err);
        if (rc < 0)
            return rc;
        n++;
    }
    if (n == 0)
        return fail(err, ZH_E_PARSE, "field 'id': empty list");
    pkt->n_ids = n;
    pkt->has |= ZH_ZF_MULTI_ID;
    return 0;
}

static int decode_ext(const struct field *f, const struct zh_tns_value *v,
                      struct zh_zhttp_packet *pkt, struct zh_zhttp_error *err)
{
    struct zh_tns_iter it;
    struct zh_tns_value k, x;

    if (v->type != ZH_TNS_DICT)
        return fail(err, ZH_E_TYPE, f->e_type);
    zh_tns_iter_init(&it, v);
    while (zh_tns_dict_next(&it, &k, &x)) {
        if (!zh_tns_str_eq(&k, "multi"))
            continue; /* other extensions (e.g. Pushpin's quiet) are not ours */
        if (pkt->has & ZH_ZF_EXT_MULTI)
            return fail(err, ZH_E_PARSE, "field 'ext.multi': duplicate key");
        if (x.type != ZH_TNS_BOOL)
            return fail(err, ZH_E_TYPE, "field 'ext.multi': expected bool");
        pkt->ext_multi = x.b;
        pkt->has |= ZH_ZF_EXT_MULTI;
    }
    return 0;
}

static int decode_headers(const struct field *f, const struct zh_tns_value *v,
                          struct zh_zhttp_packet *pkt, struct zh_zhttp_error *err)
{
    struct zh_tns_iter it, hit;
    struct zh_tns_value h, name, value, extra;
    size_t n = 0;

    if (v->type != ZH_TNS_LIST)
        return fail(err, ZH_E_TYPE, f->e_type);
    zh_tns_iter_init(&it, v);
    while (zh_tns_list_next(&it, &h)) {
        if (n == ZH_ZHTTP_MAX_HEADERS)
            return fail(err, ZH_E_TOO_LARGE, f->e_range);
        if (h.type != ZH_TNS_LIST)
            return fail(err, ZH_E_TYPE, f->e_type);
        zh_tns_iter_init(&hit, &h);
        if (!zh_tns_list_next(&hit, &name) || !zh_tns_list_next(&hit, &value) ||
            zh_tns_list_next(&hit, &extra))
            return fail(err, ZH_E_PARSE, "field 'headers': entry is not a 2-element list");
        if (name.type != ZH_TNS_STRING || value.type != ZH_TNS_STRING)
            return fail(err, ZH_E_TYPE, f->e_type);
        pkt->headers[n].name = span_of(&name);
        pkt->headers[n].value = span_of(&value);
        n++;
    }
    pkt->n_headers = n;
    pkt->has |= ZH_ZF_HEADERS;
    return 0;
}

/* A port: int, or (for peer-port) a string of 1..5 ASCII digits, in 0..65535. */
static int decode_port(const struct field *f, const struct zh_tns_value *v,
                       struct zh_zhttp_packet *pkt, struct zh_zhttp_error *err)
{
    int64_t port = 0;
    if (v->type == ZH_TNS_INT) {
        port = v->i;
    } else if (v->type == ZH_TNS_STRING && f->kind == FK_PEER_PORT) {
        if (v->len == 0 || v->len > 5)
            return fail(err, ZH_E_PARSE, f->e_type);
        for (size_t i = 0; i < v->len; i++) {
            if (v->data[i] < '0' || v->data[i] > '9')
                return fail(err, ZH_E_PARSE, f->e_type);
            port = port * 10 + (v->data[i] - '0');
        }
    } else {
        return fail(err, ZH_E_TYPE, f->e_type);
    }
    if (port < 0 || port > 65535)
        return fail(err, ZH_E_PARSE, f->e_range);
    *(int64_t *)member(pkt, f) = port;
    pkt->has |= f->flag;
    return 0;
}

static int decode_field(const struct field *f, const struct zh_tns_value *v,
                        struct zh_zhttp_packet *pkt, struct zh_zhttp_error *err)
{
    switch ((enum fkind)f->kind) {
    case FK_FROM:
        if (v->type != ZH_TNS_STRING)
            return fail(err, ZH_E_TYPE, f->e_type);
        if (v->len > ZH_ZHTTP_MAX_ID_LEN)
            return fail(err, ZH_E_TOO_LARGE, f->e_range);
        pkt->from = span_of(v);
        return 0;
    case FK_ID:
        return decode_id(f, v, pkt, err);
    case FK_SEQ:
        if (v->type != ZH_TNS_INT)
            return fail(err, ZH_E_TYPE, f->e_type);
        if (v->i < 0)
            return fail(err, ZH_E_PARSE, f->e_range);
        /* Kept in ids[0] whether `id` comes before or after it; a multi-id list overwrites it,
         * and that combination is refused once the whole dict has been read. */
        pkt->ids[0].seq = v->i;
        pkt->ids[0].has_seq = true;
        pkt->has |= ZH_ZF_SEQ;
        return 0;
    case FK_EXT:
        return decode_ext(f, v, pkt, err);
    case FK_TYPE: {
        enum zh_zhttp_type t;
        if (v->type != ZH_TNS_STRING)
            return fail(err, ZH_E_TYPE, f->e_type);
        if (zh_zhttp_type_parse(span_of(v), &t) < 0)
            return fail(err, ZH_E_PARSE, f->e_range);
        pkt->type = t;
        return 0;
    }
    case FK_STR:
        if (v->type != ZH_TNS_STRING)
            return fail(err, ZH_E_TYPE, f->e_type);
        *(struct zh_span *)member(pkt, f) = span_of(v);
        return 0;
    case FK_INT:
        if (v->type != ZH_TNS_INT)
            return fail(err, ZH_E_TYPE, f->e_type);
        if (v->i < 0)
            return fail(err, ZH_E_PARSE, f->e_range);
        *(int64_t *)member(pkt, f) = v->i;
        pkt->has |= f->flag;
        return 0;
    case FK_BOOL:
        if (v->type != ZH_TNS_BOOL)
            return fail(err, ZH_E_TYPE, f->e_type);
        *(bool *)member(pkt, f) = v->b;
        pkt->has |= f->flag;
        return 0;
    case FK_HEADERS:
        return decode_headers(f, v, pkt, err);
    case FK_PORT:
    case FK_PEER_PORT:
        return decode_port(f, v, pkt, err);
    case FK_RAW: {
        struct zh_span raw = {v->raw, v->raw_len};
        *(struct zh_span *)member(pkt, f) = raw;
        return 0;
    }
    }
    return fail(err, ZH_E_PARSE, "internal: unknown field kind");
}

static int decode(const uint8_t *p, size_t n, struct zh_zhttp_packet *pkt,
                  struct zh_zhttp_error *err)
{
    struct zh_tns_value root, k, v;
    struct zh_tns_iter it;
    uint64_t seen = 0;
    int rc;

    if (n == 0)
        return fail(err, ZH_E_PARSE, "empty packet");
    if (p[0] != 'T')
        return fail(err, ZH_E_PARSE, "unsupported format prefix");
    rc = zh_tns_parse(p + 1, n - 1u, &root);
    if (rc < 0)
        return fail(err, rc, tns_reason(rc));
    if (root.type != ZH_TNS_DICT)
        return fail(err, ZH_E_TYPE, "packet is not a dict");
    if (root.raw_len != n - 1u)
        return fail(err, ZH_E_PARSE, "trailing bytes after packet");

    zh_tns_iter_init(&it, &root);
    while (zh_tns_dict_next(&it, &k, &v)) {
        const struct field *f = find_field(&k);
        if (!f)
            continue; /* unknown keys are ignored */
        uint64_t bit = (uint64_t)1 << (size_t)(f - fields);
        if (seen & bit)
            return fail(err, ZH_E_PARSE, f->e_dup);
        seen |= bit;
        rc = decode_field(f, &v, pkt, err);
        if (rc < 0)
            return rc;
    }
    if ((pkt->has & ZH_ZF_MULTI_ID) && (pkt->has & ZH_ZF_SEQ))
        return fail(err, ZH_E_PARSE, "field 'seq': not allowed with a list of ids");
    return 0;
}

int zh_zhttp_decode(const uint8_t *p, size_t n, struct zh_zhttp_packet *pkt,
                    struct zh_zhttp_error *err)
{
    struct zh_zhttp_error dummy;
    if (!err)
        err = &dummy;
    err->reason = NULL;
    zh_zhttp_packet_init(pkt);
    int rc = decode(p, n, pkt, err);
    if (rc < 0)
        zh_zhttp_packet_init(pkt); /* never leave a half-decoded packet behind */
    return rc;
}

/* ---- encoder ----
 *
 * Two passes over the same code: with b == NULL each e_* helper only returns the bytes it would
 * write, so the dict's length prefix is known before its payload is written and nothing is moved
 * afterwards. One reserve up front makes the second pass allocation-free. */

static size_t e_str(struct zh_buf *b, const void *p, size_t n)
{
    if (b)
        zh_tns_put_str(b, p, n);
    return zh_tns_size(n);
}

static size_t e_span(struct zh_buf *b, struct zh_span s)
{
    return e_str(b, s.p, s.n);
}

static size_t e_key(struct zh_buf *b, const struct field *f)
{
    return e_str(b, f->key, f->key_len);
}

static size_t e_int(struct zh_buf *b, int64_t v)
{
    if (b)
        zh_tns_put_int(b, v);
    return zh_tns_int_size(v);
}

static size_t e_bool(struct zh_buf *b, bool v)
{
    if (b)
        zh_tns_put_bool(b, v);
    return v ? 7u : 8u;
}

/* The `<len>:` of a container whose payload is len bytes; the caller writes payload and tag. */
static size_t e_open(struct zh_buf *b, size_t len)
{
    if (b)
        zh_tns_put_prefix(b, len);
    return zh_tns_size(len) - len - 1u;
}

static size_t e_close(struct zh_buf *b, enum zh_tns_type tag)
{
    if (b)
        zh_buf_putc(b, (uint8_t)tag);
    return 1;
}

static size_t e_id_entry(struct zh_buf *b, const struct zh_zhttp_id *id)
{
    size_t len = zh_tns_size(2) + zh_tns_size(id->id.n);
    if (id->has_seq)
        len += zh_tns_size(3) + zh_tns_int_size(id->seq);
    size_t n = e_open(b, len);
    n += e_str(b, "id", 2);
    n += e_span(b, id->id);
    if (id->has_seq) {
        n += e_str(b, "seq", 3);
        n += e_int(b, id->seq);
    }
    return n + e_close(b, ZH_TNS_DICT);
}

static size_t e_id_list(struct zh_buf *b, const struct zh_zhttp_packet *pkt)
{
    size_t len = 0;
    for (size_t i = 0; i < pkt->n_ids; i++)
        len += e_id_entry(NULL, &pkt->ids[i]);
    size_t n = e_open(b, len);
    if (b) {
        for (size_t i = 0; i < pkt->n_ids; i++)
            e_id_entry(b, &pkt->ids[i]);
    }
    return n + len + e_close(b, ZH_TNS_LIST);
}

static size_t e_header(struct zh_buf *b, const struct zh_zhttp_header *h)
{
    size_t len = zh_tns_size(h->name.n) + zh_tns_size(h->value.n);
    size_t n = e_open(b, len);
    n += e_span(b, h->name);
    n += e_span(b, h->value);
    return n + e_close(b, ZH_TNS_LIST);
}

static size_t e_headers(struct zh_buf *b, const struct zh_zhttp_packet *pkt)
{
    size_t len = 0;
    for (size_t i = 0; i < pkt->n_headers; i++)
        len += e_header(NULL, &pkt->headers[i]);
    size_t n = e_open(b, len);
    if (b) {
        for (size_t i = 0; i < pkt->n_headers; i++)
            e_header(b, &pkt->headers[i]);
    }
    return n + len + e_close(b, ZH_TNS_LIST);
}

static size_t e_ext(struct zh_buf *b, const struct zh_zhttp_packet *pkt)
{
    size_t n = e_str(b, "ext", 3);
    size_t len = zh_tns_size(5) + (pkt->ext_multi ? 7u : 8u);
    n += e_open(b, len);
    n += e_str(b, "multi", 5);
    n += e_bool(b, pkt->ext_multi);
    return n + e_close(b, ZH_TNS_DICT);
}

static const void *cmember(const struct zh_zhttp_packet *pkt, const struct field *f)
{
    return (const char *)pkt + f->off;
}

/* The dict's payload: every present field, in fields[] order. */
static size_t e_fields(struct zh_buf *b, const struct zh_zhttp_packet *pkt)
{
    bool multi = (pkt->has & ZH_ZF_MULTI_ID) != 0;
    size_t n = 0;

    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const struct field *f = &fields[i];
        switch ((enum fkind)f->kind) {
        case FK_FROM:
        case FK_STR: {
            struct zh_span s = *(const struct zh_span *)cmember(pkt, f);
            if (s.p) {
                n += e_key(b, f);
                n += e_span(b, s);
            }
            break;
        }
        case FK_ID:
            if (multi) {
                n += e_key(b, f);
                n += e_id_list(b, pkt);
            } else if (pkt->n_ids > 0 && pkt->ids[0].id.p) {
                n += e_key(b, f);
                n += e_span(b, pkt->ids[0].id);
            }
            break;
        case FK_SEQ:
            if (!multi && (pkt->ids[0].has_seq || (pkt->has & ZH_ZF_SEQ))) {
                n += e_key(b, f);
                n += e_int(b, pkt->ids[0].seq);
            }
            break;
        case FK_EXT:
            /* A multi-id packet carries ext after type (ZHTTP.md §5.3's batched keep-alive). */
            if (!multi && (pkt->has & ZH_ZF_EXT_MULTI))
                n += e_ext(b, pkt);
            break;
        case FK_TYPE:
            if (pkt->type != ZH_ZHTTP_DATA) {
                const char *name = zh_zhttp_type_name(pkt->type);
                n += e_key(b, f);
                n += e_str(b, name, strlen(name));
            }
            if (multi && (pkt->has & ZH_ZF_EXT_MULTI))
                n += e_ext(b, pkt);
            break;
        case FK_INT:
        case FK_PORT:
        case FK_PEER_PORT:
            if (pkt->has & f->flag) {
                n += e_key(b, f);
                n += e_int(b, *(const int64_t *)cmember(pkt, f));
            }
            break;
        case FK_BOOL:
            if (pkt->has & f->flag) {
                n += e_key(b, f);
                n += e_bool(b, *(const bool *)cmember(pkt, f));
            }
            break;
        case FK_HEADERS:
            if ((pkt->has & ZH_ZF_HEADERS) || pkt->n_headers > 0) {
                n += e_key(b, f);
                n += e_headers(b, pkt);
            }
            break;
        case FK_RAW: {
            struct zh_span s = *(const struct zh_span *)cmember(pkt, f);
            if (s.p && s.n > 0) {
                n += e_key(b, f);
                if (b)
                    zh_tns_put_raw(b, s.p, s.n);
                n += s.n;
            }
            break;
        }
        }
    }
    return n;
}

void zh_zhttp_encode(const struct zh_zhttp_packet *pkt, struct zh_buf *out)
{
    assert(pkt->n_ids <= ZH_ZHTTP_MAX_IDS);
    assert(pkt->n_headers <= ZH_ZHTTP_MAX_HEADERS);
    size_t len = e_fields(NULL, pkt);
    zh_buf_reserve(out, 1u + zh_tns_size(len));
#ifndef NDEBUG
    size_t start = out->len;
#endif
    zh_buf_putc(out, 'T');
    zh_tns_put_prefix(out, len);
    e_fields(out, pkt);
    zh_buf_putc(out, ZH_TNS_DICT);
    assert(out->len - start == 1u + zh_tns_size(len));
}
