/* libFuzzer target for shared/proto/tnetstring.c.
 *
 * Parse the input; on success walk the whole value with the iterators, re-encode it with the
 * encoder, parse that again and require the same structure. Also check the parser's promises: the
 * value lies inside the input, parse_exact() agrees, and the value cut short by one byte is
 * ZH_E_INCOMPLETE. Any broken promise aborts. */
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/proto/buf.h"
#include "shared/proto/err.h"
#include "shared/proto/tnetstring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

/* Re-encode v with the encoder API (ints and floats in canonical form). */
static void reencode(const struct zh_tns_value *v, struct zh_buf *out)
{
    struct zh_tns_iter it;
    struct zh_tns_value a, b;
    size_t mark;
    double d = 0;

    switch (v->type) {
    case ZH_TNS_STRING:
        zh_tns_put_str(out, v->data, v->len);
        break;
    case ZH_TNS_INT:
        zh_tns_put_int(out, v->i);
        break;
    case ZH_TNS_FLOAT:
        check(zh_tns_float(v, &d) == 0);
        if (isfinite(d))
            zh_tns_put_float(out, d);
        else
            zh_tns_put_raw(out, v->raw, v->raw_len); /* e.g. 1e999: valid text, no double */
        break;
    case ZH_TNS_BOOL:
        zh_tns_put_bool(out, v->b);
        break;
    case ZH_TNS_NULL:
        zh_tns_put_null(out);
        break;
    case ZH_TNS_LIST:
        mark = zh_tns_begin(out);
        zh_tns_iter_init(&it, v);
        while (zh_tns_list_next(&it, &a))
            reencode(&a, out);
        zh_tns_end(out, mark, ZH_TNS_LIST);
        break;
    case ZH_TNS_DICT:
        mark = zh_tns_begin(out);
        zh_tns_iter_init(&it, v);
        while (zh_tns_dict_next(&it, &a, &b)) {
            check(a.type == ZH_TNS_STRING);
            reencode(&a, out);
            reencode(&b, out);
        }
        zh_tns_end(out, mark, ZH_TNS_DICT);
        break;
    default:
        abort();
    }
}

/* Structural equality, recursively. */
static void same(const struct zh_tns_value *x, const struct zh_tns_value *y)
{
    struct zh_tns_iter ix, iy;
    struct zh_tns_value a, b;
    double dx = 0, dy = 0;

    check(x->type == y->type);
    switch (x->type) {
    case ZH_TNS_STRING:
        check(x->len == y->len && (x->len == 0 || memcmp(x->data, y->data, x->len) == 0));
        break;
    case ZH_TNS_INT:
        check(x->i == y->i);
        break;
    case ZH_TNS_FLOAT:
        check(zh_tns_float(x, &dx) == 0 && zh_tns_float(y, &dy) == 0);
        check(dx == dy || (isnan(dx) && isnan(dy)));
        break;
    case ZH_TNS_BOOL:
        check(x->b == y->b);
        break;
    case ZH_TNS_NULL:
        check(x->len == 0 && y->len == 0);
        break;
    case ZH_TNS_LIST:
    case ZH_TNS_DICT:
        zh_tns_iter_init(&ix, x);
        zh_tns_iter_init(&iy, y);
        for (;;) {
            bool mx = zh_tns_list_next(&ix, &a);
            bool my = zh_tns_list_next(&iy, &b);
            check(mx == my);
            if (!mx)
                break;
            same(&a, &b);
        }
        break;
    default:
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zh_tns_value v, w;
    int rc = zh_tns_parse(data, size, &v);
    if (rc < 0) {
        check(rc == ZH_E_PARSE || rc == ZH_E_INCOMPLETE || rc == ZH_E_TOO_DEEP ||
              rc == ZH_E_TOO_LARGE);
        check(zh_tns_parse_exact(data, size, &w) == rc);
        return 0;
    }
    check(v.raw == data && v.raw_len <= size && v.raw_len >= 3);
    check(v.data >= data && v.data + v.len + 1 == data + v.raw_len);
    check(zh_tns_parse_exact(data, v.raw_len, &w) == 0 && w.raw_len == v.raw_len);
    check(zh_tns_parse(data, v.raw_len - 1, &w) == ZH_E_INCOMPLETE);

    struct zh_buf out = {0};
    reencode(&v, &out);
    check(zh_tns_parse_exact(out.data, out.len, &w) == 0);
    same(&v, &w);
    zh_buf_free(&out);
    return 0;
}
