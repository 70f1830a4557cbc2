/* HTTP/1.0 and HTTP/1.1 server-side message framing (RFC 9112), zero-copy.
 *
 * - zh_http1_parse_request() parses a request head out of the caller's buffer into spans that point
 *   into that buffer (picohttpparser's phr_parse_request, with named results and reason codes).
 * - zh_http1_req_framing() applies RFC 9112 section 6 to the parsed fields: body length,
 *   keep-alive, Expect, WebSocket upgrade, Host, and the request-smuggling rules.
 * - struct zh_http1_chunked decodes a chunked body incrementally, yielding payload spans in place.
 * - zh_http1_write_response_head() and the chunk helpers produce the response side.
 *
 * Nothing here allocates (except through struct zh_buf in the writers) and nothing copies input.
 * See docs/internals/http1.md for the choices this module makes where the RFC leaves one open. */
#ifndef ZH_SHARED_PROTO_HTTP1_H
#define ZH_SHARED_PROTO_HTTP1_H

#include <stddef.h>
#include <stdint.h>

#include "shared/proto/buf.h"
#include "shared/proto/err.h"

/* Named parse results shared by the shared/proto parsers (values from err.h). */
#ifndef ZH_PARSE_ERROR
#define ZH_PARSE_ERROR ZH_E_PARSE
#endif
#ifndef ZH_PARSE_INCOMPLETE
#define ZH_PARSE_INCOMPLETE ZH_E_INCOMPLETE
#endif

/* XX(name, status, text): every reason a message is refused, the status to answer with and a short
 * text fit for a 400 body. ZH_HTTP1_OK (0) is "no error". */
#define ZH_HTTP1_ERR_MAP(XX)                                                        \
    XX(OK, 200, "no error")                                                         \
    XX(E_BAD_METHOD, 400, "invalid method token")                                   \
    XX(E_BAD_TARGET, 400, "invalid request target")                                 \
    XX(E_BAD_VERSION, 400, "malformed or missing HTTP version")                     \
    XX(E_VERSION_NOT_SUPPORTED, 505, "HTTP version not supported")                  \
    XX(E_H2_PREFACE, 505, "HTTP/2 connection preface on an HTTP/1 port")            \
    XX(E_BARE_LF, 400, "line ends with a bare LF")                                  \
    XX(E_BARE_CR, 400, "CR not followed by LF")                                     \
    XX(E_BAD_FIELD_NAME, 400, "invalid field name")                                 \
    XX(E_MISSING_COLON, 400, "field line without a colon")                          \
    XX(E_SPACE_BEFORE_COLON, 400, "whitespace between field name and colon")        \
    XX(E_OBS_FOLD, 400, "obsolete line folding")                                    \
    XX(E_BAD_FIELD_VALUE, 400, "invalid character in field value")                  \
    XX(E_TOO_MANY_HEADERS, 431, "too many header fields")                           \
    XX(E_URI_TOO_LONG, 414, "request line too long")                                \
    XX(E_HEAD_TOO_LARGE, 431, "request header section too large")                   \
    XX(E_MISSING_HOST, 400, "HTTP/1.1 request without Host")                        \
    XX(E_DUPLICATE_HOST, 400, "more than one Host field")                           \
    XX(E_BAD_HOST, 400, "invalid Host field value")                                 \
    XX(E_BAD_CONNECTION, 400, "invalid Connection field value")                     \
    XX(E_BAD_CONTENT_LENGTH, 400, "invalid Content-Length")                         \
    XX(E_DUPLICATE_CONTENT_LENGTH, 400, "more than one Content-Length field")       \
    XX(E_CL_AND_TE, 400, "both Content-Length and Transfer-Encoding")               \
    XX(E_BAD_TRANSFER_ENCODING, 400, "invalid Transfer-Encoding")                   \
    XX(E_CHUNKED_NOT_FINAL, 400, "chunked is not the final transfer coding")        \
    XX(E_CHUNKED_TWICE, 400, "chunked applied more than once")                      \
    XX(E_DUPLICATE_TRANSFER_ENCODING, 400, "more than one Transfer-Encoding field") \
    XX(E_UNSUPPORTED_TRANSFER_CODING, 501, "unsupported transfer coding")           \
    XX(E_TRANSFER_ENCODING_HTTP10, 400, "Transfer-Encoding in an HTTP/1.0 request") \
    XX(E_BAD_CHUNK_SIZE, 400, "invalid chunk size")                                 \
    XX(E_CHUNK_TOO_LARGE, 400, "chunk size too large")                              \
    XX(E_BAD_CHUNK_EXT, 400, "invalid chunk extension")                             \
    XX(E_CHUNK_LINE_TOO_LONG, 400, "chunk-size line too long")                      \
    XX(E_BAD_CHUNK_END, 400, "chunk data not followed by CRLF")                     \
    XX(E_TRAILER_TOO_LARGE, 431, "trailer section too large")

enum zh_http1_err {
#define ZH_HTTP1_ERR_ENUM(name, status, text) ZH_HTTP1_##name,
    ZH_HTTP1_ERR_MAP(ZH_HTTP1_ERR_ENUM)
#undef ZH_HTTP1_ERR_ENUM
        ZH_HTTP1_ERR_COUNT
};

/* Short text for err, fit for a 400 body ("invalid chunk size"). Never returns NULL. */
const char *zh_http1_strerror(enum zh_http1_err err);
/* The response status suggested for err: 400, 414, 431, 501 or 505 (200 for ZH_HTTP1_OK). */
int zh_http1_err_status(enum zh_http1_err err);

/* A borrowed run of bytes; not NUL-terminated. */
struct zh_http1_span {
    const char *p;
    size_t len;
};

/* One field line: name as received (compare case-insensitively), value without surrounding OWS. */
struct zh_http1_header {
    struct zh_http1_span name;
    struct zh_http1_span value;
};

/* RFC 9112 section 3.2 request-target forms. */
enum zh_http1_target_form {
    ZH_HTTP1_ORIGIN_FORM,    /* "/path?query" */
    ZH_HTTP1_ABSOLUTE_FORM,  /* "http://host/path" (proxy style) */
    ZH_HTTP1_AUTHORITY_FORM, /* "host:port", CONNECT only */
    ZH_HTTP1_ASTERISK_FORM   /* "*", OPTIONS only */
};

/* A parsed request head. The spans point into the buffer given to zh_http1_parse_request() and are
 * valid until that buffer is changed or consumed. Public members are outputs, meaningful only after
 * a successful parse (err after ZH_PARSE_ERROR); members named _x are private: use the API. */
struct zh_http1_req {
    struct zh_http1_span method;
    struct zh_http1_span target;
    enum zh_http1_target_form target_form;
    int minor_version; /* 0 or 1 */
    size_t head_len;   /* bytes from the buffer start through the blank line, leading CRLFs too */
    enum zh_http1_err err; /* the reason, after ZH_PARSE_ERROR */
    /* private: where an incomplete parse stopped */
    size_t _line;   /* start of the first line not yet validated */
    size_t _scan;   /* buf[_line.._scan) holds no CR or LF */
    size_t _fields; /* field lines validated before _line */
    int _in_fields; /* the request line is before _line */
};

/* Prepare req for a new request (or the next one on a keep-alive connection). */
void zh_http1_req_init(struct zh_http1_req *req);

/* Parse the request head at the start of buf[0..len).
 *
 * headers is the caller's array; *num_headers holds its capacity on entry and the number of field
 * lines on success. max_head bounds the head (leading empty lines and final CRLF included; clamped
 * to INT_MAX); nothing past buf[max_head] is read.
 *
 * Returns the head length (> 0) on success; ZH_PARSE_INCOMPLETE if more bytes are needed; or
 * ZH_PARSE_ERROR with req->err set. When the head does not fit in max_head the error is
 * ZH_HTTP1_E_URI_TOO_LONG if the request line is not complete within it, else
 * ZH_HTTP1_E_HEAD_TOO_LARGE. More than the capacity of field lines is ZH_HTTP1_E_TOO_MANY_HEADERS.
 *
 * After ZH_PARSE_INCOMPLETE, call again with the same req, a headers array of the same capacity
 * (it is refilled) and a buffer that starts with the same bytes followed by more (it may have
 * moved): complete lines already checked are not checked again. Call zh_http1_req_init() before
 * the next request. Bare LF, bare CR and obs-fold are errors; leading empty lines are skipped. */
int zh_http1_parse_request(struct zh_http1_req *req, const char *buf, size_t len, size_t max_head,
                           struct zh_http1_header *headers, size_t *num_headers);

/* How the request body is delimited. */
enum zh_http1_body {
    ZH_HTTP1_BODY_NONE,    /* no body (request) / no length header (response: 1xx, 204, 304) */
    ZH_HTTP1_BODY_LENGTH,  /* Content-Length bytes */
    ZH_HTTP1_BODY_CHUNKED, /* Transfer-Encoding: chunked */
    ZH_HTTP1_BODY_CLOSE    /* response only: the body ends when the connection closes */
};

#define ZH_HTTP1_F_KEEP_ALIVE      0x01u /* the connection may serve another request */
#define ZH_HTTP1_F_EXPECT_CONTINUE 0x02u /* HTTP/1.1 "Expect: 100-continue" */
#define ZH_HTTP1_F_EXPECT_OTHER    0x04u /* an expectation other than 100-continue (417) */
/* HTTP/1.1 with Connection: upgrade and Upgrade: websocket */
#define ZH_HTTP1_F_UPGRADE_WEBSOCKET 0x08u

/* The outcome of zh_http1_req_framing(). */
struct zh_http1_framing {
    enum zh_http1_body body;   /* NONE (also for Content-Length: 0), LENGTH or CHUNKED */
    uint64_t content_length;   /* when body == ZH_HTTP1_BODY_LENGTH (at most 2^62) */
    unsigned flags;            /* ZH_HTTP1_F_* */
    struct zh_http1_span host; /* Host field value; p is NULL when absent */
    enum zh_http1_err err;     /* the reason, after ZH_PARSE_ERROR */
};

/* Decide the framing of a request parsed by zh_http1_parse_request() (RFC 9112 section 6).
 *
 * Returns 0 and fills *f, or ZH_PARSE_ERROR with f->err set; the connection must be closed after
 * answering an error (f->flags lacks ZH_HTTP1_F_KEEP_ALIVE). Strict rules: Content-Length with
 * Transfer-Encoding, repeated Content-Length or Transfer-Encoding fields (even equal), a
 * Content-Length that is not 1*DIGIT <= 2^62, and any Transfer-Encoding other than exactly
 * "chunked" are refused; see the reason codes. The spans in *f borrow from headers. */
int zh_http1_req_framing(const struct zh_http1_req *req, const struct zh_http1_header *headers,
                         size_t num_headers, struct zh_http1_framing *f);

/* Results of zh_http1_chunked_feed() besides ZH_PARSE_INCOMPLETE and ZH_PARSE_ERROR. */
#define ZH_HTTP1_CHUNKED_DONE 0 /* the last chunk and trailer section were consumed */
#define ZH_HTTP1_CHUNKED_DATA 1 /* *data holds payload bytes */

/* Default bound on the bytes of one chunk-size line (size, extensions and CRLF). */
#define ZH_HTTP1_CHUNK_LINE_MAX 4096

/* Incremental chunked-body decoder (RFC 9112 section 7.1); init it, then feed it. It keeps no
 * pointer into the input between calls, so the input may arrive in any pieces. */
struct zh_http1_chunked {
    enum zh_http1_err err; /* the reason, after ZH_PARSE_ERROR */
    /* private */
    uint64_t _remaining; /* payload bytes left in the current chunk, or the size being read */
    size_t _count;       /* bytes of the current chunk line, or of the trailer section */
    size_t _max_trailer;
    int _state;
};

/* Start decoding a new body. max_trailer bounds the trailer section (its final CRLF included). */
void zh_http1_chunked_init(struct zh_http1_chunked *c, size_t max_trailer);

/* Decode from buf[0..len). *consumed is set to the bytes used; the caller drops them and calls
 * again with the rest.
 *
 * Returns ZH_HTTP1_CHUNKED_DATA with *data pointing into buf at payload bytes (the span ends at
 * buf + *consumed); ZH_PARSE_INCOMPLETE when all of buf was used and more is needed;
 * ZH_HTTP1_CHUNKED_DONE when the body ended, *consumed stopping right after its final CRLF so any
 * pipelined bytes stay; or ZH_PARSE_ERROR with c->err set. Trailer fields are checked like head
 * fields and then discarded. */
int zh_http1_chunked_feed(struct zh_http1_chunked *c, const char *buf, size_t len, size_t *consumed,
                          struct zh_http1_span *data);

/* The reason phrase for status ("Not Found"), or "" when the code has none we know. */
const char *zh_http1_status_reason(int status);

/* How the response leaves the connection. */
enum zh_http1_conn {
    ZH_HTTP1_CONN_KEEP_ALIVE, /* 1.1: nothing written; 1.0: "Connection: keep-alive" */
    ZH_HTTP1_CONN_CLOSE,      /* "Connection: close" */
    ZH_HTTP1_CONN_UPGRADE     /* "Connection: Upgrade" (101; pass Upgrade in headers) */
};

/* A response head to write. */
struct zh_http1_resp {
    int minor_version;                     /* the request's; the status line always says 1.1 */
    int status;                            /* 100..999 */
    struct zh_http1_span reason;           /* p NULL: zh_http1_status_reason(status) */
    const struct zh_http1_header *headers; /* written in order */
    size_t num_headers;
    enum zh_http1_body body;
    uint64_t content_length; /* with ZH_HTTP1_BODY_LENGTH */
    enum zh_http1_conn conn;
};

/* Append the response head of r to out: status line, r->headers, then the framing fields the
 * writer owns (Content-Length or "Transfer-Encoding: chunked", and Connection), then CRLF.
 * Content-Length, Transfer-Encoding and Connection entries in r->headers are skipped. Returns 0,
 * or -EINVAL (out unchanged) for a status outside 100..999, a name that is not a token, a CR, LF,
 * NUL or other control byte in a value or reason, chunked to an HTTP/1.0 client, or a length
 * header on a 1xx or 204 response. BODY_CLOSE forces "Connection: close". */
int zh_http1_write_response_head(struct zh_buf *out, const struct zh_http1_resp *r);

/* Longest output of zh_http1_format_chunk_header(). */
#define ZH_HTTP1_CHUNK_HEADER_MAX 18

/* Write the chunk-size line "%zx\r\n" for a chunk of n > 0 bytes into out; return its length. */
size_t zh_http1_format_chunk_header(char out[ZH_HTTP1_CHUNK_HEADER_MAX], size_t n);
/* Append the chunk-size line for n > 0 bytes to out. The caller appends the data, then "\r\n". */
void zh_http1_write_chunk_header(struct zh_buf *out, size_t n);
/* Append the last chunk with an empty trailer section, "0\r\n\r\n". */
void zh_http1_write_last_chunk(struct zh_buf *out);

#endif
