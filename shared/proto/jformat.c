/* Zurl's legacy J format <-> T. See jformat.h. */
#include "shared/proto/jformat.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

#include "shared/proto/err.h"
#include "shared/proto/mem.h"
#include "shared/proto/tnetstring.h"

/* ---- JSON -> tnetstring ---- */

static int put_json(struct zh_buf *out, json_t *v, int depth, const char **reason)
{
    if (depth > ZH_JFORMAT_MAX_DEPTH) {
        *reason = "JSON nested too deep";
        return ZH_E_TOO_DEEP;
    }
    switch (json_typeof(v)) {
    case JSON_STRING:
        zh_tns_put_str(out, json_string_value(v), json_string_length(v));
        return 0;
    case JSON_INTEGER:
        zh_tns_put_int(out, (int64_t)json_integer_value(v));
        return 0;
    case JSON_REAL: {
        double d = json_real_value(v);
        /* JSON has one number type: an integral value is an int, as Zurl's conversion does. */
        if (d == floor(d) && d >= -9.2e18 && d <= 9.2e18)
            zh_tns_put_int(out, (int64_t)d);
        else
            zh_tns_put_float(out, d);
        return 0;
    }
    case JSON_TRUE:
        zh_tns_put_bool(out, true);
        return 0;
    case JSON_FALSE:
        zh_tns_put_bool(out, false);
        return 0;
    case JSON_NULL:
        zh_tns_put_null(out);
        return 0;
    case JSON_ARRAY: {
        size_t mark = zh_tns_begin(out);
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            int rc = put_json(out, item, depth + 1, reason);
            if (rc < 0)
                return rc;
        }
        zh_tns_end(out, mark, ZH_TNS_LIST);
        return 0;
    }
    case JSON_OBJECT: {
        size_t mark = zh_tns_begin(out);
        const char *key;
        size_t klen;
        json_t *item;
        json_object_keylen_foreach(v, key, klen, item)
        {
            zh_tns_put_str(out, key, klen);
            int rc = put_json(out, item, depth + 1, reason);
            if (rc < 0)
                return rc;
        }
        zh_tns_end(out, mark, ZH_TNS_DICT);
        return 0;
    }
    }
    *reason = "unsupported JSON value";
    return ZH_E_PARSE;
}

/* Parse 'J' + a JSON object with jansson's flags. */
static int parse(const uint8_t *p, size_t n, json_t **root, const char **reason, size_t flags)
{
    *root = NULL;
    if (n == 0 || p[0] != 'J') {
        *reason = "unsupported format prefix";
        return ZH_E_PARSE;
    }
    json_error_t jerr;
    json_t *r = json_loadb((const char *)p + 1, n - 1, JSON_ALLOW_NUL | flags, &jerr);
    if (!r) {
        *reason = json_error_code(&jerr) == json_error_duplicate_key
                      ? "duplicate key in a JSON object"
                      : "invalid JSON";
        return ZH_E_PARSE;
    }
    if (!json_is_object(r)) {
        json_decref(r);
        *reason = "packet is not a JSON object";
        return ZH_E_TYPE;
    }
    *root = r;
    return 0;
}

int zh_jformat_parse(const uint8_t *p, size_t n, json_t **root, const char **reason)
{
    /* A key given twice is refused, as the T decoder refuses it: jansson would keep the last one,
     * and a router reading the first would disagree about the packet. */
    return parse(p, n, root, reason, JSON_REJECT_DUPLICATES);
}

int zh_jformat_json_to_tnet(json_t *root, struct zh_buf *out, const char **reason)
{
    size_t start = out->len;
    zh_buf_putc(out, 'T');
    int rc = put_json(out, root, 1, reason);
    if (rc < 0)
        out->len = start;
    return rc;
}

static int convert(const uint8_t *p, size_t n, struct zh_buf *out, const char **reason,
                   size_t flags)
{
    json_t *root;
    int rc = parse(p, n, &root, reason, flags);
    if (rc < 0)
        return rc;
    rc = zh_jformat_json_to_tnet(root, out, reason);
    json_decref(root);
    return rc;
}

int zh_jformat_to_tnet(const uint8_t *p, size_t n, struct zh_buf *out, const char **reason)
{
    return convert(p, n, out, reason, JSON_REJECT_DUPLICATES);
}

int zh_jformat_to_tnet_lenient(const uint8_t *p, size_t n, struct zh_buf *out)
{
    const char *reason = NULL;
    return convert(p, n, out, &reason, 0);
}

/* ---- tnetstring -> JSON ---- */

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if the bytes there are not one. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    size_t len;
    uint32_t min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    uint32_t cp = c & (0x7fu >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* A JSON string from arbitrary bytes: invalid UTF-8 becomes U+FFFD. */
static json_t *json_bytes(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t l = utf8_seq(p + i, n - i);
        if (!l)
            break;
        i += l;
    }
    if (i == n)
        return json_stringn((const char *)p, n);
    struct zh_buf b = {0};
    zh_buf_reserve(&b, n + 16);
    for (i = 0; i < n;) {
        size_t l = utf8_seq(p + i, n - i);
        if (l) {
            zh_buf_append(&b, p + i, l);
            i += l;
        } else {
            zh_buf_append(&b, "\xef\xbf\xbd", 3);
            i++;
        }
    }
    json_t *s = json_stringn((const char *)b.data, b.len);
    zh_buf_free(&b);
    return s;
}

static json_t *to_json(const struct zh_tns_value *v)
{
    switch (v->type) {
    case ZH_TNS_STRING:
        return json_bytes(v->data, v->len);
    case ZH_TNS_INT:
        return json_integer((json_int_t)v->i);
    case ZH_TNS_FLOAT: {
        double d = 0;
        zh_tns_float(v, &d);
        return json_real(d);
    }
    case ZH_TNS_BOOL:
        return json_boolean(v->b);
    case ZH_TNS_NULL:
        return json_null();
    case ZH_TNS_LIST: {
        json_t *a = json_array();
        struct zh_tns_iter it;
        struct zh_tns_value item;
        zh_tns_iter_init(&it, v);
        while (zh_tns_list_next(&it, &item))
            json_array_append_new(a, to_json(&item));
        return a;
    }
    case ZH_TNS_DICT: {
        json_t *o = json_object();
        struct zh_tns_iter it;
        struct zh_tns_value k, item;
        zh_tns_iter_init(&it, v);
        while (zh_tns_dict_next(&it, &k, &item)) {
            json_t *ks = json_bytes(k.data, k.len);
            json_object_setn_new(o, json_string_value(ks), json_string_length(ks), to_json(&item));
            json_decref(ks);
        }
        return o;
    }
    }
    return json_null();
}

int zh_jformat_from_tnet(const uint8_t *p, size_t n, struct zh_buf *out)
{
    struct zh_tns_value v;
    if (n == 0 || p[0] != 'T')
        return ZH_E_PARSE;
    int rc = zh_tns_parse_exact(p + 1, n - 1, &v);
    if (rc < 0)
        return rc;
    if (v.type != ZH_TNS_DICT)
        return ZH_E_TYPE;
    json_t *root = to_json(&v);
    size_t len = json_dumpb(root, NULL, 0, JSON_COMPACT);
    zh_buf_reserve(out, len + 1);
    zh_buf_putc(out, 'J');
    out->len += json_dumpb(root, (char *)out->data + out->len, len, JSON_COMPACT);
    json_decref(root);
    return 0;
}
