/* Zurl's legacy `J` format: a ZHTTP packet written as 'J' + one JSON object (ZHTTP.md §1.2).
 *
 * zhttpd has one ZHTTP codec, for `T`. A `J` request is converted to the equivalent `T` bytes and
 * decoded by it, and a reply to a `J` requester is encoded as `T` and converted back, so both
 * formats follow exactly the same field rules. The conversion is Zurl's: JSON strings are UTF-8
 * byte strings, integral numbers are ints, other numbers floats; byte strings go back as JSON
 * strings, with invalid UTF-8 replaced by U+FFFD (Zurl does the same), so J cannot carry
 * arbitrary binary bodies. The bridge parses a J packet once, to route it (shared/rt/zroute.c), and
 * hands the parsed object to the worker with the message (zh_zmsg.json), which converts it with
 * zh_jformat_json_to_tnet() instead of parsing it again. */
#ifndef ZH_SHARED_PROTO_JFORMAT_H
#define ZH_SHARED_PROTO_JFORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "shared/proto/buf.h"

#define ZH_JFORMAT_MAX_DEPTH 32 /* nested containers, as tnetstrings allow */

struct json_t; /* jansson's json_t */

/* Parse p[0..n) = 'J' + a JSON object. Returns 0 with *root set (the caller owns a reference), or
 * a negative ZH_E_* code with *reason set ("invalid JSON", "duplicate key in a JSON object",
 * "packet is not a JSON object", ...). A key repeated in any object is refused, as the T decoder
 * does. */
int zh_jformat_parse(const uint8_t *p, size_t n, struct json_t **root, const char **reason);

/* Convert a parsed J object into 'T' + tnetstring, appended to out (nothing appended on error).
 * Returns 0, or a negative ZH_E_* code with *reason set. */
int zh_jformat_json_to_tnet(struct json_t *root, struct zh_buf *out, const char **reason);

/* Convert p[0..n) = 'J' + a JSON object into 'T' + tnetstring, appended to out (parse + convert).
 * Returns 0, or a negative ZH_E_* code with *reason set to a static description ("invalid JSON",
 * "duplicate key in a JSON object", ...). A key repeated in any object is refused, as the T decoder
 * does. */
int zh_jformat_to_tnet(const uint8_t *p, size_t n, struct zh_buf *out, const char **reason);

/* The same conversion with repeated keys allowed (the last one wins): only to read `from` and `id`
 * of a refused packet so that the requester can be told. */
int zh_jformat_to_tnet_lenient(const uint8_t *p, size_t n, struct zh_buf *out);

/* Convert p[0..n) = 'T' + tnetstring dict (as zh_zhttp_encode writes it) into 'J' + compact
 * JSON, appended to out. Returns 0, or a negative ZH_E_* code if p is not a valid packet. */
int zh_jformat_from_tnet(const uint8_t *p, size_t n, struct zh_buf *out);

#endif
