/* ZHTTP packet model, decode and encode (see docs/internals/zhttp-codec.md).
 *
 * Decoding is zero-copy: every struct zh_span in a decoded packet points into the caller's input
 * bytes and stays valid as long as those bytes do. A packet that fails to decode is never
 * half-used: the return code is negative and err->reason says why (a static string naming the
 * field).
 *
 * Encoding writes 'T' + one tnetstring dict into a struct zh_buf. Only fields whose presence bit is
 * set (or, for spans, whose pointer is non-NULL) are written. */
#ifndef ZH_SHARED_PROTO_ZHTTP_H
#define ZH_SHARED_PROTO_ZHTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/proto/buf.h"

#define ZH_ZHTTP_MAX_IDS     128 /* ids in one multi-id packet */
#define ZH_ZHTTP_MAX_HEADERS 128 /* header entries in one packet */
#define ZH_ZHTTP_MAX_ID_LEN  64  /* bytes in `from` and each `id` (Condure's limit) */

/* A borrowed byte range. p == NULL means "absent"; p != NULL with n == 0 is an empty value. */
struct zh_span {
    const uint8_t *p;
    size_t n;
};

enum zh_zhttp_type {
    ZH_ZHTTP_DATA = 0, /* no `type` key */
    ZH_ZHTTP_ERROR,
    ZH_ZHTTP_CREDIT,
    ZH_ZHTTP_KEEP_ALIVE,
    ZH_ZHTTP_CANCEL,
    ZH_ZHTTP_HANDOFF_START,
    ZH_ZHTTP_HANDOFF_PROCEED,
    ZH_ZHTTP_CLOSE,
    ZH_ZHTTP_PING,
    ZH_ZHTTP_PONG,
};

/* Presence bits for the non-span fields of struct zh_zhttp_packet. */
enum {
    ZH_ZF_SEQ = 1u << 0, /* top-level seq (single-id packets); its value is ids[0].seq */
    ZH_ZF_CREDITS = 1u << 1,
    ZH_ZF_MORE = 1u << 2,
    ZH_ZF_STREAM = 1u << 3,
    ZH_ZF_ROUTER_RESP = 1u << 4,
    ZH_ZF_CODE = 1u << 5,
    ZH_ZF_MAX_SIZE = 1u << 6,
    ZH_ZF_TIMEOUT = 1u << 7,
    ZH_ZF_PEER_PORT = 1u << 8,
    ZH_ZF_CONNECT_PORT = 1u << 9,
    ZH_ZF_TRUST_CONNECT_HOST = 1u << 10,
    ZH_ZF_IGNORE_POLICIES = 1u << 11,
    ZH_ZF_IGNORE_TLS_ERRORS = 1u << 12,
    ZH_ZF_FOLLOW_REDIRECTS = 1u << 13,
    ZH_ZF_HEADERS = 1u << 14,   /* `headers` key present (possibly an empty list) */
    ZH_ZF_EXT_MULTI = 1u << 15, /* ext.multi present */
    ZH_ZF_MULTI_ID = 1u << 16,  /* `id` was a list of {id, seq} (even with one entry) */
};

struct zh_zhttp_id {
    struct zh_span id;
    int64_t seq;  /* valid when has_seq */
    bool has_seq; /* top-level seq for single-id packets, per-entry seq for multi-id ones */
};

struct zh_zhttp_header {
    struct zh_span name;
    struct zh_span value;
};

struct zh_zhttp_packet {
    uint32_t has; /* ZH_ZF_* bits */
    enum zh_zhttp_type type;
    struct zh_span from;
    size_t n_ids; /* 0 when `id` absent, 1 for a plain id, up to ZH_ZHTTP_MAX_IDS for a list */
    struct zh_zhttp_id ids[ZH_ZHTTP_MAX_IDS];
    size_t n_headers;
    struct zh_zhttp_header headers[ZH_ZHTTP_MAX_HEADERS];

    struct zh_span condition;
    struct zh_span method;
    struct zh_span uri;
    struct zh_span body;
    struct zh_span content_type;
    struct zh_span reason;
    struct zh_span peer_address;
    struct zh_span connect_host;
    struct zh_span client_cert;
    struct zh_span client_key;
    struct zh_span user_data;   /* the raw encoded tnetstring value, re-emitted byte for byte */
    struct zh_span passthrough; /* raw encoded tnetstring value */

    int64_t credits;
    int64_t code;
    int64_t max_size;
    int64_t timeout;
    int64_t peer_port; /* accepted as int or decimal string */
    int64_t connect_port;
    bool more;
    bool stream;
    bool router_resp;
    bool trust_connect_host;
    bool ignore_policies;
    bool ignore_tls_errors;
    bool follow_redirects;
    bool ext_multi;
};

struct zh_zhttp_error {
    const char *reason; /* static text, e.g. "field 'seq': expected int" */
};

/* Reset a packet to "everything absent". Clears the scalar fields and ids[0]; array entries past
 * n_ids / n_headers are left as they are and are never read. */
void zh_zhttp_packet_init(struct zh_zhttp_packet *pkt);

/* Decode one ZHTTP payload: `T` + tnetstring dict. Returns 0, or a negative ZH_E_* code with
 * err->reason set (err may be NULL) and pkt reset to empty. Unknown keys are ignored; known keys
 * with the wrong type (ZH_E_TYPE), a negative seq/credits/code/max-size/timeout, a port outside
 * 0..65535, an unknown `type`, a non-`T` prefix, a duplicate known key, a top-level seq beside a
 * list of ids, trailing bytes (ZH_E_PARSE), or more than the MAX_* limits (ZH_E_TOO_LARGE) are
 * errors; a bad tnetstring gives zh_tns_parse()'s code. A top-level seq is stored in ids[0] (even
 * when `id` is absent). Never allocates. */
int zh_zhttp_decode(const uint8_t *p, size_t n, struct zh_zhttp_packet *pkt,
                    struct zh_zhttp_error *err);

/* Append 'T' + the encoded packet to out. Multi-id packets (ZH_ZF_MULTI_ID) write `id` as a list of
 * {id, seq}; otherwise ids[0] is written as `id` (when n_ids > 0) and its seq (if has_seq or
 * ZH_ZF_SEQ) as top-level `seq`. Keys are written in the order from, id, seq, ext, type,
 * condition, method, uri, code, reason, headers, content-type, body, more, credits, stream, ...
 * (ext follows type in a multi-id packet), which reproduces the ZHTTP.md §5.2 examples byte for
 * byte. user_data/passthrough must each hold one whole encoded tnetstring (an empty span is
 * skipped). Allocates at most once (one reserve on out). */
void zh_zhttp_encode(const struct zh_zhttp_packet *pkt, struct zh_buf *out);

/* Split a PUB/SUB frame "<address> T…" at the first space. Returns 0 and sets addr and payload, or
 * ZH_E_PARSE if there is no space. */
int zh_zhttp_split_pub(const uint8_t *p, size_t n, struct zh_span *addr, struct zh_span *payload);

/* Name of a packet type as written on the wire ("" for data, "unknown" for a value outside the
 * enum). */
const char *zh_zhttp_type_name(enum zh_zhttp_type t);

/* Look up a wire type name ("credit", ...; not "" for data). Returns 0 and sets *t, or ZH_E_PARSE
 * for an unknown name. */
int zh_zhttp_type_parse(struct zh_span name, enum zh_zhttp_type *t);

/* True when the span is present and equals the NUL-terminated string s. */
bool zh_span_eq(struct zh_span a, const char *s);

/* Build a span over a NUL-terminated string (NULL gives an absent span). */
struct zh_span zh_span_str(const char *s);

#endif
