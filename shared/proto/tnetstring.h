/* tnetstrings (ZHTTP.md §1.1): a zero-copy, allocation-free decoder over a byte span and an encoder
 * into struct zh_buf. See docs/internals/zhttp-codec.md.
 *
 * Every value is `<len>:<data><tag>`. zh_tns_parse() validates one whole value, recursively, before
 * it returns, so callers may walk a parsed container with the iterators below and trust every item:
 * lengths fit, tags are known, ints fit in int64_t, bools are exactly true/false, nulls are `0:~`,
 * dict keys are strings and dicts have an even item count. Decoded values borrow the input bytes
 * and stay valid as long as those bytes do. */
#ifndef ZH_SHARED_PROTO_TNETSTRING_H
#define ZH_SHARED_PROTO_TNETSTRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/proto/buf.h"

#define ZH_TNS_MAX_DEPTH      32        /* nested containers in one value (the outermost counts) */
#define ZH_TNS_MAX_LEN_DIGITS 9         /* digits in a length prefix */
#define ZH_TNS_MAX_LEN        999999999 /* largest length a prefix can carry */
#define ZH_TNS_MAX_FLOAT_LEN  64        /* bytes of text in a `^` value */

/* The tag byte of each type. */
enum zh_tns_type {
    ZH_TNS_STRING = ',',
    ZH_TNS_INT = '#',
    ZH_TNS_FLOAT = '^',
    ZH_TNS_BOOL = '!',
    ZH_TNS_NULL = '~',
    ZH_TNS_LIST = ']',
    ZH_TNS_DICT = '}',
};

/* One decoded value. Everything points into the input. */
struct zh_tns_value {
    enum zh_tns_type type;
    const uint8_t *data; /* payload: the bytes between ':' and the tag */
    size_t len;
    const uint8_t *raw; /* the whole encoding, length prefix to tag inclusive */
    size_t raw_len;
    int64_t i; /* ZH_TNS_INT: the value */
    bool b;    /* ZH_TNS_BOOL: the value */
};

/* Walks the items of a parsed list or dict. A value type: use the API. */
struct zh_tns_iter {
    const uint8_t *_p;
    const uint8_t *_end;
};

/* Parse and fully validate the one value at the start of p[0..n). Returns 0 and fills v (bytes
 * after the value are not looked at; v->raw_len says where it ended), or:
 *   ZH_E_INCOMPLETE  the input ends before the value does (more bytes could complete it);
 *   ZH_E_PARSE       malformed: bad length prefix, unknown tag, bad int/float/bool/null text, a
 *                    child that overruns its container, a non-string dict key, an odd dict;
 *   ZH_E_TOO_LARGE   a length prefix longer than ZH_TNS_MAX_LEN_DIGITS digits;
 *   ZH_E_TOO_DEEP    more than ZH_TNS_MAX_DEPTH nested containers.
 * Never reads outside p[0..n) and never allocates. */
int zh_tns_parse(const uint8_t *p, size_t n, struct zh_tns_value *v);

/* Like zh_tns_parse(), but the value must fill p[0..n) exactly: trailing bytes are ZH_E_PARSE. */
int zh_tns_parse_exact(const uint8_t *p, size_t n, struct zh_tns_value *v);

/* Start walking the items of c, a list or dict from zh_tns_parse() (or an item of one). */
void zh_tns_iter_init(struct zh_tns_iter *it, const struct zh_tns_value *c);

/* Next item of a list. Returns true and fills item, or false at the end. */
bool zh_tns_list_next(struct zh_tns_iter *it, struct zh_tns_value *item);

/* Next key/value pair of a dict. Returns true and fills key (a string) and val, or false at the
 * end. */
bool zh_tns_dict_next(struct zh_tns_iter *it, struct zh_tns_value *key, struct zh_tns_value *val);

/* Find the first value under key in dict d. Returns true and fills val, or false if absent. */
bool zh_tns_dict_get(const struct zh_tns_value *d, const char *key, struct zh_tns_value *val);

/* True when v is a string equal to the NUL-terminated s. */
bool zh_tns_str_eq(const struct zh_tns_value *v, const char *s);

/* Convert a parsed float to a double (strtod in the C locale). Returns 0, or ZH_E_TYPE if v is not
 * a float. */
int zh_tns_float(const struct zh_tns_value *v, double *out);

/* Bytes needed to encode a value whose payload is len bytes: prefix, payload and tag. */
size_t zh_tns_size(size_t len);

/* Bytes zh_tns_put_int() writes for v. */
size_t zh_tns_int_size(int64_t v);

/* Append a byte string. */
void zh_tns_put_str(struct zh_buf *b, const void *p, size_t n);

/* Append a NUL-terminated string as a byte string. */
void zh_tns_put_cstr(struct zh_buf *b, const char *s);

/* Append an integer. */
void zh_tns_put_int(struct zh_buf *b, int64_t v);

/* Append a float (shortest round-tripping %g form). v must be finite. */
void zh_tns_put_float(struct zh_buf *b, double v);

/* Append `4:true!` or `5:false!`. */
void zh_tns_put_bool(struct zh_buf *b, bool v);

/* Append `0:~`. */
void zh_tns_put_null(struct zh_buf *b);

/* Append an already-encoded value (e.g. a zh_tns_value's raw bytes) as is. */
void zh_tns_put_raw(struct zh_buf *b, const void *p, size_t n);

/* Append the `<len>:` prefix of a value whose payload length is known up front; the caller then
 * appends exactly len payload bytes and the tag byte. This avoids the move zh_tns_end() makes. */
void zh_tns_put_prefix(struct zh_buf *b, size_t len);

/* Start a container of unknown length. Returns a mark to pass to zh_tns_end(). */
size_t zh_tns_begin(struct zh_buf *b);

/* Close the container started at mark: insert its length prefix (moving the payload up) and append
 * the tag (ZH_TNS_LIST or ZH_TNS_DICT). */
void zh_tns_end(struct zh_buf *b, size_t mark, enum zh_tns_type tag);

#endif
