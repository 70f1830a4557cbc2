/* RFC 6455 WebSocket framing for both roles: an incremental frame parser, frame serialisation,
 * masking, fragmentation state, control frames, close codes, UTF-8 validation (incremental, across
 * fragments), and the handshake's Sec-WebSocket-Accept value. Pure protocol code: no fd, no loop,
 * no randomness (whoever sends masked frames supplies the key). permessage-deflate is wsdeflate.c.
 *
 * Reading: zh_ws_parse() takes the bytes buffered so far and reports one event per call: a piece of
 * a data frame's payload (as soon as any of it has arrived, so a frame never needs to be buffered
 * whole) or a complete control frame (at most 125 payload bytes, so those are waited for whole).
 * The payload is unmasked in place, which is why the input is writable. A protocol error returns
 * ZH_E_PARSE (or ZH_E_TOO_LARGE) and leaves the RFC close code and a short reason for the log in
 * the parser: close the connection with that code. */
#ifndef ZH_SHARED_PROTO_WS_H
#define ZH_SHARED_PROTO_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/proto/buf.h"

enum zh_ws_opcode {
    ZH_WS_CONT = 0x0,
    ZH_WS_TEXT = 0x1,
    ZH_WS_BINARY = 0x2,
    ZH_WS_CLOSE = 0x8,
    ZH_WS_PING = 0x9,
    ZH_WS_PONG = 0xA,
};

/* Close codes used by zhttpd itself. */
enum {
    ZH_WS_CLOSE_NORMAL = 1000,
    ZH_WS_CLOSE_GOING_AWAY = 1001,
    ZH_WS_CLOSE_PROTOCOL = 1002,
    ZH_WS_CLOSE_NO_STATUS = 1005, /* never on the wire: "the close frame had no code" */
    ZH_WS_CLOSE_ABNORMAL = 1006,  /* never on the wire */
    ZH_WS_CLOSE_BAD_DATA = 1007,
    ZH_WS_CLOSE_TOO_BIG = 1009,
    ZH_WS_CLOSE_INTERNAL = 1011,
};

#define ZH_WS_MAX_CONTROL 125 /* payload bytes */
#define ZH_WS_MAX_HEAD    14  /* 2 + 8 length + 4 mask */

/* Incremental UTF-8 validator (a value type; zero-initialised = at a character boundary). */
struct zh_ws_utf8 {
    uint32_t _state; /* private: bytes still expected in the current character, and bounds */
    uint8_t _lo, _hi;
};
/* Feed n bytes: 0 while valid so far, -1 on an invalid sequence (sticky: keep calling = -1). */
int zh_ws_utf8_feed(struct zh_ws_utf8 *u, const uint8_t *p, size_t n);
/* True at a character boundary (a complete message must end at one). */
bool zh_ws_utf8_done(const struct zh_ws_utf8 *u);
/* Whole-string check. */
bool zh_ws_utf8_valid(const uint8_t *p, size_t n);

/* Is code one an endpoint may put in a close frame (1000-1003, 1007-1014, 3000-4999)? */
bool zh_ws_close_code_valid(unsigned code);

enum zh_ws_event_kind {
    ZH_WS_EV_NONE = 0, /* nothing complete yet (or only a frame head was consumed) */
    ZH_WS_EV_DATA,     /* a piece of a text/binary (or continuation) frame's payload */
    ZH_WS_EV_CONTROL,  /* a whole close/ping/pong frame */
};

struct zh_ws_event {
    enum zh_ws_event_kind kind;
    uint8_t opcode; /* DATA: the message's type (TEXT/BINARY) on every piece; CONTROL: its opcode */
    bool compressed;    /* DATA: the message's first frame had RSV1 (permessage-deflate) */
    bool frame_start;   /* DATA: first piece of this frame */
    bool message_start; /* DATA: first piece of the message's first frame */
    bool frame_end;     /* DATA: last piece of this frame */
    bool message_end;   /* DATA: last piece of the final (FIN) frame: the message is complete */
    uint8_t *data;      /* points into the caller's input, already unmasked */
    size_t len;
    /* CONTROL close only: */
    unsigned close_code; /* ZH_WS_CLOSE_NO_STATUS if the frame had no code */
    const uint8_t *reason;
    size_t reason_len;
};

struct zh_ws_parser {
    /* configuration (set before the first call) */
    bool expect_masked;   /* server role: true (client frames must be masked); client role: false */
    bool allow_rsv1;      /* permessage-deflate was negotiated */
    uint64_t max_message; /* payload bytes per message on the wire (0 = no limit) */
    uint64_t piece_limit; /* at most this many payload bytes per DATA event (may change between
                           * calls, e.g. to the peer's credits; UINT64_MAX after init) */
    /* after an error */
    unsigned close_code; /* RFC close code to send */
    const char *error;   /* static text for the log */
    /* private: use the API */
    uint64_t _remaining; /* payload bytes left in the current data frame */
    uint64_t _msg_len;
    uint8_t _mask[4];
    uint8_t _mask_off;
    bool _in_frame, _frame_started, _fin, _in_message, _msg_started, _compressed, _masked;
    uint8_t _msg_opcode;
    struct zh_ws_utf8 _utf8;
};

/* Set up a parser (zeroes it and sets the configuration). */
void zh_ws_parser_init(struct zh_ws_parser *p, bool expect_masked, bool allow_rsv1,
                       uint64_t max_message);

/* Consume bytes from data[0..len): returns the count consumed (0 = need more input) and fills *ev;
 * call again with the rest while it consumes or reports an event. On a protocol error returns a
 * negative code and sets p->close_code/p->error; the parser is then dead. ev->data points into data
 * (unmasked in place). Text that is not compressed is UTF-8 checked here (1007); compressed text is
 * checked by the caller after inflating (struct zh_ws_utf8). */
int zh_ws_parse(struct zh_ws_parser *p, uint8_t *data, size_t len, struct zh_ws_event *ev);

/* True between the first and the final frame of a fragmented message. */
bool zh_ws_parser_in_message(const struct zh_ws_parser *p);

/* ---- writing ---- */

/* Write a frame head for a payload of len bytes into out (>= ZH_WS_MAX_HEAD bytes); returns its
 * length. mask NULL = unmasked. */
size_t zh_ws_head(uint8_t *out, bool fin, uint8_t opcode, bool rsv1, uint64_t len,
                  const uint8_t *mask);
/* XOR p with key, as if p started at byte offset off of the payload. */
void zh_ws_mask(uint8_t *p, size_t n, const uint8_t key[4], uint64_t off);
/* Append a whole frame (head + payload, masked with mask unless NULL) to out. */
void zh_ws_put_frame(struct zh_buf *out, bool fin, uint8_t opcode, bool rsv1, const void *payload,
                     size_t len, const uint8_t *mask);
/* Append a close frame: code ZH_WS_CLOSE_NO_STATUS = empty payload; the reason is cut to fit 123
 * bytes (at a UTF-8 character boundary). */
void zh_ws_put_close(struct zh_buf *out, unsigned code, const void *reason, size_t reason_len,
                     const uint8_t *mask);

/* Sender-side fragmentation state: which opcode the next frame of outgoing messages gets. */
struct zh_ws_sender {
    bool _in_message; /* private */
};
/* For a message piece of type (ZH_WS_TEXT/BINARY) with more pieces to follow (more): returns the
 * opcode to write (type, or ZH_WS_CONT inside a message). */
uint8_t zh_ws_sender_next(struct zh_ws_sender *s, uint8_t type, bool more);
bool zh_ws_sender_in_message(const struct zh_ws_sender *s);

/* ---- handshake ---- */

/* Is key a valid Sec-WebSocket-Key (base64 of 16 bytes: 22 chars + "==")? */
bool zh_ws_key_valid(const char *key, size_t len);
/* Sec-WebSocket-Accept for key: base64(SHA-1(key + GUID)), 28 chars + NUL into out. */
void zh_ws_accept(const char *key, size_t len, char out[29]);
/* base64 (with padding) of n bytes; out needs 4 * ((n + 2) / 3) + 1 bytes. */
void zh_ws_base64(const uint8_t *p, size_t n, char *out);
/* SHA-1 of n bytes into out. */
void zh_ws_sha1(const void *p, size_t n, uint8_t out[20]);

#endif
