/* Minimal tnetstring reader/writer shared by the bench programs (header-only, no allocation).
 * Not the daemon's codec on purpose: the bench must not trust the code it measures. */
#ifndef ZH_BENCH_TNET_H
#define ZH_BENCH_TNET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct tn_val {
    char type;        /* ',' '#' '!' '~' '^' '}' ']' */
    const char *data; /* payload, not NUL-terminated */
    size_t len;
};

/* Parse one tnetstring at p[0..n). On success fill *v, return bytes used; on error return 0. */
static inline size_t tn_parse(const char *p, size_t n, struct tn_val *v)
{
    size_t i = 0, len = 0;
    while (i < n && i < 10 && p[i] >= '0' && p[i] <= '9') {
        len = len * 10 + (size_t)(p[i] - '0');
        i++;
    }
    if (i == 0 || i >= n || p[i] != ':')
        return 0;
    i++;
    if (len > n - i || n - i - len < 1)
        return 0;
    v->data = p + i;
    v->len = len;
    v->type = p[i + len];
    return i + len + 1;
}

/* Look key up in a dict payload (v->type == '}'). Return 1 and fill *out when found. */
static inline int tn_dict_get(const struct tn_val *dict, const char *key, struct tn_val *out)
{
    size_t klen = strlen(key);
    const char *p = dict->data;
    size_t n = dict->len;
    while (n > 0) {
        struct tn_val k, v;
        size_t u = tn_parse(p, n, &k);
        if (!u || k.type != ',')
            return 0;
        p += u;
        n -= u;
        u = tn_parse(p, n, &v);
        if (!u)
            return 0;
        p += u;
        n -= u;
        if (k.len == klen && memcmp(k.data, key, klen) == 0) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

static inline long long tn_int(const struct tn_val *v)
{
    long long x = 0;
    int neg = 0;
    size_t i = 0;
    if (v->type != '#')
        return -1;
    if (i < v->len && v->data[i] == '-') {
        neg = 1;
        i++;
    }
    for (; i < v->len; i++) {
        if (v->data[i] < '0' || v->data[i] > '9')
            return -1;
        x = x * 10 + (v->data[i] - '0');
    }
    return neg ? -x : x;
}

/* Writer into a fixed buffer: each call appends; overflow sets w->err. */
struct tn_w {
    char *buf;
    size_t cap, len;
    int err;
};

static inline void tn_raw(struct tn_w *w, const void *p, size_t n)
{
    if (w->err || n > w->cap - w->len) {
        w->err = 1;
        return;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static inline void tn_item(struct tn_w *w, const void *p, size_t n, char type)
{
    char hdr[24];
    int h = snprintf(hdr, sizeof(hdr), "%zu:", n);
    tn_raw(w, hdr, (size_t)h);
    tn_raw(w, p, n);
    tn_raw(w, &type, 1);
}

static inline void tn_str(struct tn_w *w, const char *s)
{
    tn_item(w, s, strlen(s), ',');
}

static inline void tn_intv(struct tn_w *w, long long x)
{
    char b[24];
    int n = snprintf(b, sizeof(b), "%lld", x);
    tn_item(w, b, (size_t)n, '#');
}

#endif
