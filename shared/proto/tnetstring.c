#include "shared/proto/tnetstring.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/proto/err.h"

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/* Parse the ASCII decimal int in p[0..n): optional '-', then at least one digit, nothing else, and
 * the value must fit in int64_t. Leading zeros are tolerated (peers' int parsers accept them). */
static int parse_int(const uint8_t *p, size_t n, int64_t *out)
{
    bool neg = false;
    size_t i = 0;
    if (n > 0 && p[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == n)
        return ZH_E_PARSE;
    /* Accumulate as a magnitude; INT64_MIN's magnitude is INT64_MAX + 1. */
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    for (; i < n; i++) {
        if (!is_digit(p[i]))
            return ZH_E_PARSE;
        uint64_t d = (uint64_t)(p[i] - '0');
        if (v > (limit - d) / 10u)
            return ZH_E_PARSE;
        v = v * 10u + d;
    }
    if (neg)
        *out = v == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)v;
    else
        *out = (int64_t)v;
    return 0;
}

/* A decimal float: -? (digits [. digits*] | . digits) ([eE] [+-]? digits)?  No inf/nan/hex. */
static bool valid_float(const uint8_t *p, size_t n)
{
    size_t i = 0, int_digits = 0, frac_digits = 0;
    if (n == 0 || n > ZH_TNS_MAX_FLOAT_LEN)
        return false;
    if (p[i] == '-')
        i++;
    while (i < n && is_digit(p[i])) {
        i++;
        int_digits++;
    }
    if (i < n && p[i] == '.') {
        i++;
        while (i < n && is_digit(p[i])) {
            i++;
            frac_digits++;
        }
    }
    if (int_digits + frac_digits == 0)
        return false;
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        size_t exp_digits = 0;
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        while (i < n && is_digit(p[i])) {
            i++;
            exp_digits++;
        }
        if (exp_digits == 0)
            return false;
    }
    return i == n;
}

/* Read the head of the value at p (bounded by end): length prefix, payload bounds and tag, and
 * validate a scalar payload. Containers' children are not looked at here. `top` says whether end is
 * the end of the caller's input (running out means "incomplete") or of an enclosing container
 * (running out means the container lied about its length: malformed). */
static int read_head(const uint8_t *p, const uint8_t *end, bool top, struct zh_tns_value *v)
{
    int short_rc = top ? ZH_E_INCOMPLETE : ZH_E_PARSE;
    const uint8_t *q = p;
    size_t len = 0, digits = 0;

    while (q < end && is_digit(*q)) {
        if (digits == 1 && p[0] == '0')
            return ZH_E_PARSE; /* leading zero */
        if (digits == ZH_TNS_MAX_LEN_DIGITS)
            return ZH_E_TOO_LARGE;
        len = len * 10u + (size_t)(*q - '0');
        digits++;
        q++;
    }
    if (q == end)
        return short_rc;
    if (digits == 0 || *q != ':')
        return ZH_E_PARSE;
    q++;
    if ((size_t)(end - q) < len + 1u)
        return short_rc;

    v->data = q;
    v->len = len;
    v->raw = p;
    v->raw_len = (size_t)(q - p) + len + 1u;
    v->i = 0;
    v->b = false;
    switch (q[len]) {
    case ZH_TNS_STRING:
        v->type = ZH_TNS_STRING;
        return 0;
    case ZH_TNS_INT:
        v->type = ZH_TNS_INT;
        return parse_int(q, len, &v->i);
    case ZH_TNS_FLOAT:
        v->type = ZH_TNS_FLOAT;
        return valid_float(q, len) ? 0 : ZH_E_PARSE;
    case ZH_TNS_BOOL:
        v->type = ZH_TNS_BOOL;
        if (len == 4 && memcmp(q, "true", 4) == 0) {
            v->b = true;
            return 0;
        }
        if (len == 5 && memcmp(q, "false", 5) == 0)
            return 0;
        return ZH_E_PARSE;
    case ZH_TNS_NULL:
        v->type = ZH_TNS_NULL;
        return len == 0 ? 0 : ZH_E_PARSE;
    case ZH_TNS_LIST:
        v->type = ZH_TNS_LIST;
        return 0;
    case ZH_TNS_DICT:
        v->type = ZH_TNS_DICT;
        return 0;
    default:
        return ZH_E_PARSE;
    }
}

static bool is_container(enum zh_tns_type t)
{
    return t == ZH_TNS_LIST || t == ZH_TNS_DICT;
}

/* Validate the children of container c, depth first, with an explicit stack (no recursion, so a
 * depth bomb costs at most ZH_TNS_MAX_DEPTH frames). Each byte is examined once. */
static int validate_children(const struct zh_tns_value *c)
{
    struct frame {
        const uint8_t *p;
        const uint8_t *end;
        size_t count;
        bool dict;
    } st[ZH_TNS_MAX_DEPTH];
    size_t depth = 1;

    st[0] = (struct frame){c->data, c->data + c->len, 0, c->type == ZH_TNS_DICT};
    while (depth > 0) {
        struct frame *f = &st[depth - 1];
        if (f->p == f->end) {
            if (f->dict && f->count % 2u != 0)
                return ZH_E_PARSE; /* a key without a value */
            depth--;
            continue;
        }
        struct zh_tns_value item;
        int rc = read_head(f->p, f->end, false, &item);
        if (rc < 0)
            return rc;
        if (f->dict && f->count % 2u == 0 && item.type != ZH_TNS_STRING)
            return ZH_E_PARSE; /* dict keys are byte strings */
        f->count++;
        f->p = item.raw + item.raw_len;
        if (is_container(item.type)) {
            if (depth == ZH_TNS_MAX_DEPTH)
                return ZH_E_TOO_DEEP;
            st[depth++] =
                (struct frame){item.data, item.data + item.len, 0, item.type == ZH_TNS_DICT};
        }
    }
    return 0;
}

int zh_tns_parse(const uint8_t *p, size_t n, struct zh_tns_value *v)
{
    if (n == 0)
        return ZH_E_INCOMPLETE;
    int rc = read_head(p, p + n, true, v);
    if (rc < 0)
        return rc;
    if (is_container(v->type) && v->len > 0)
        return validate_children(v);
    return 0;
}

int zh_tns_parse_exact(const uint8_t *p, size_t n, struct zh_tns_value *v)
{
    int rc = zh_tns_parse(p, n, v);
    if (rc < 0)
        return rc;
    return v->raw_len == n ? 0 : ZH_E_PARSE;
}

void zh_tns_iter_init(struct zh_tns_iter *it, const struct zh_tns_value *c)
{
    if (is_container(c->type)) {
        it->_p = c->data;
        it->_end = c->data + c->len;
    } else {
        it->_p = it->_end = NULL;
    }
}

/* Items inside a validated container are known good, so this only re-reads the head. It still
 * stops at anything odd rather than trusting the bytes blindly. */
static bool iter_next(struct zh_tns_iter *it, struct zh_tns_value *item)
{
    if (it->_p == it->_end)
        return false;
    if (read_head(it->_p, it->_end, false, item) < 0) {
        it->_p = it->_end;
        return false;
    }
    it->_p = item->raw + item->raw_len;
    return true;
}

bool zh_tns_list_next(struct zh_tns_iter *it, struct zh_tns_value *item)
{
    return iter_next(it, item);
}

bool zh_tns_dict_next(struct zh_tns_iter *it, struct zh_tns_value *key, struct zh_tns_value *val)
{
    if (!iter_next(it, key))
        return false;
    if (key->type != ZH_TNS_STRING || !iter_next(it, val)) {
        it->_p = it->_end;
        return false;
    }
    return true;
}

bool zh_tns_str_eq(const struct zh_tns_value *v, const char *s)
{
    size_t n = strlen(s);
    return v->type == ZH_TNS_STRING && v->len == n && (n == 0 || memcmp(v->data, s, n) == 0);
}

bool zh_tns_dict_get(const struct zh_tns_value *d, const char *key, struct zh_tns_value *val)
{
    struct zh_tns_iter it;
    struct zh_tns_value k;
    if (d->type != ZH_TNS_DICT)
        return false;
    zh_tns_iter_init(&it, d);
    while (zh_tns_dict_next(&it, &k, val)) {
        if (zh_tns_str_eq(&k, key))
            return true;
    }
    return false;
}

int zh_tns_float(const struct zh_tns_value *v, double *out)
{
    char tmp[ZH_TNS_MAX_FLOAT_LEN + 1];
    if (v->type != ZH_TNS_FLOAT || v->len > ZH_TNS_MAX_FLOAT_LEN)
        return ZH_E_TYPE;
    memcpy(tmp, v->data, v->len);
    tmp[v->len] = '\0';
    *out = strtod(tmp, NULL);
    return 0;
}

/* ---- encoder ---- */

static size_t dec_digits(uint64_t v)
{
    size_t n = 1;
    while (v >= 10u) {
        v /= 10u;
        n++;
    }
    return n;
}

size_t zh_tns_size(size_t len)
{
    return dec_digits(len) + 1u + len + 1u;
}

/* Write m in decimal just before end; returns the first byte written (at most 20 bytes). */
static char *fmt_u64(uint64_t m, char *end)
{
    char *q = end;
    do {
        *--q = (char)('0' + (int)(m % 10u));
        m /= 10u;
    } while (m);
    return q;
}

/* Write v in decimal just before end; returns the first byte written (at most 20 bytes). */
static char *fmt_i64(int64_t v, char *end)
{
    char *q = fmt_u64(v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, end);
    if (v < 0)
        *--q = '-';
    return q;
}

size_t zh_tns_int_size(int64_t v)
{
    uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    return zh_tns_size(dec_digits(m) + (v < 0 ? 1u : 0u));
}

void zh_tns_put_prefix(struct zh_buf *b, size_t len)
{
    char tmp[22];
    char *q = fmt_u64(len, tmp + 21);
    tmp[21] = ':';
    zh_buf_append(b, q, (size_t)(tmp + 22 - q));
}

/* Values up to this many payload bytes are assembled on the stack and appended in one call: keys
 * and most ZHTTP values are short, and one append is much cheaper than three. */
#define SMALL_PAYLOAD 64

/* Append "<n>:" + p[0..n) + tag. */
static void put_value(struct zh_buf *b, const void *p, size_t n, uint8_t tag)
{
    if (n <= SMALL_PAYLOAD) {
        char tmp[21 + 1 + SMALL_PAYLOAD + 1];
        char *q = fmt_u64(n, tmp + 21);
        tmp[21] = ':';
        if (n)
            memcpy(tmp + 22, p, n);
        tmp[22 + n] = (char)tag;
        zh_buf_append(b, q, (size_t)(tmp + 23 + n - q));
        return;
    }
    zh_buf_reserve(b, zh_tns_size(n));
    zh_tns_put_prefix(b, n);
    zh_buf_append(b, p, n);
    zh_buf_putc(b, tag);
}

void zh_tns_put_str(struct zh_buf *b, const void *p, size_t n)
{
    put_value(b, p, n, ZH_TNS_STRING);
}

void zh_tns_put_cstr(struct zh_buf *b, const char *s)
{
    zh_tns_put_str(b, s, strlen(s));
}

void zh_tns_put_int(struct zh_buf *b, int64_t v)
{
    char tmp[21];
    char *q = fmt_i64(v, tmp + 21);
    put_value(b, q, (size_t)(tmp + 21 - q), ZH_TNS_INT);
}

void zh_tns_put_float(struct zh_buf *b, double v)
{
    char tmp[40];
    assert(isfinite(v));
    /* The shortest of %.15g/%.16g/%.17g that reads back as the same double. */
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    /* A locale with a ',' decimal point must not leak into the wire format. */
    for (int i = 0; i < n; i++) {
        if (tmp[i] == ',')
            tmp[i] = '.';
    }
    put_value(b, tmp, (size_t)n, ZH_TNS_FLOAT);
}

void zh_tns_put_bool(struct zh_buf *b, bool v)
{
    if (v)
        zh_buf_append(b, "4:true!", 7);
    else
        zh_buf_append(b, "5:false!", 8);
}

void zh_tns_put_null(struct zh_buf *b)
{
    zh_buf_append(b, "0:~", 3);
}

void zh_tns_put_raw(struct zh_buf *b, const void *p, size_t n)
{
    zh_buf_append(b, p, n);
}

size_t zh_tns_begin(struct zh_buf *b)
{
    return b->len;
}

void zh_tns_end(struct zh_buf *b, size_t mark, enum zh_tns_type tag)
{
    char tmp[22];
    assert(mark <= b->len);
    assert(tag == ZH_TNS_LIST || tag == ZH_TNS_DICT);
    /* Build "<len>:" in tmp and insert it in one move. */
    char *q = fmt_u64(b->len - mark, tmp + 21);
    size_t n = (size_t)(tmp + 21 - q);
    tmp[21] = ':';
    zh_buf_reserve(b, n + 2u);
    zh_buf_insert(b, mark, q, n + 1u);
    zh_buf_putc(b, (uint8_t)tag);
}
