/* permessage-deflate (RFC 7692) with zlib: parameter negotiation for both roles, and the per-
 * connection compressor/decompressor.
 *
 * zlib inflates any window size (we always inflate with a 15-bit window, which reads streams made
 * with smaller ones) but cannot raw-deflate with an 8-bit window (deflateInit2 with -8 fails). So
 * as server we decline an offer that requires server_max_window_bits=8 (and take the client's next
 * offer, or none), and as client we fail a handshake whose response sets client_max_window_bits=8.
 *
 * Inflation is bounded: zh_wsd_inflate() stops with ZH_E_TOO_LARGE (close 1009) as soon as a
 * message's output passes the caller's limit, so a small frame that inflates to gigabytes is never
 * buffered. */
#ifndef ZH_SHARED_PROTO_WSDEFLATE_H
#define ZH_SHARED_PROTO_WSDEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/proto/buf.h"
#include "shared/proto/ws.h"

/* The agreed parameters (what the response header says). Window bits are 8..15. */
struct zh_wsd_params {
    bool server_no_context_takeover;
    bool client_no_context_takeover;
    uint8_t server_max_window_bits; /* the server's deflate window (15 if not negotiated) */
    uint8_t client_max_window_bits; /* the client's deflate window (15 if not negotiated) */
};

/* Server role: pick the first acceptable permessage-deflate offer in a Sec-WebSocket-Extensions
 * value (several header lines may be joined with ", "). Returns 1 and fills *out and appends the
 * response extension value to resp if one is acceptable, 0 if none is (answer without the
 * extension). Offers with unknown, repeated or invalid parameters, or server_max_window_bits=8,
 * are declined one by one. */
int zh_wsd_server_negotiate(const char *hdr, size_t len, struct zh_wsd_params *out,
                            struct zh_buf *resp);

/* Client role: the offer to send ("permessage-deflate; client_max_window_bits"). */
const char *zh_wsd_client_offer(void);
/* Client role: check the server's Sec-WebSocket-Extensions response to our offer. Returns 0 and
 * fills *out, or a negative code with *why set to a static message (fail the handshake): another
 * extension, several, bad or repeated parameters, or client_max_window_bits=8. */
int zh_wsd_client_accept(const char *hdr, size_t len, struct zh_wsd_params *out, const char **why);

/* One connection's compression state. */
struct zh_wsd {
    void *_def, *_inf; /* private: z_stream pointers, made on first use */
    bool _def_reset, _inf_reset;
    int _def_bits;
    bool _in_inflate; /* inside a message being inflated */
    uint64_t _inflated;
};

/* Set up for a role (server = true: we deflate with server_max_window_bits and reset per message
 * when server_no_context_takeover; inflate resets with client_no_context_takeover). Returns 0 or
 * a negative code (zlib refused the parameters). */
int zh_wsd_init(struct zh_wsd *d, const struct zh_wsd_params *p, bool server);
void zh_wsd_free(struct zh_wsd *d);

/* Compress n bytes of one outgoing message's data and append them to out. fin = this is the
 * message's last piece: the output then ends the message (the 00 00 ff ff tail removed, as RFC 7692
 * wants; an empty message becomes the single byte 00). Pieces before fin are flushed too, so each
 * can go out as its own fragment (RSV1 only on the first). */
int zh_wsd_deflate(struct zh_wsd *d, const uint8_t *p, size_t n, bool fin, struct zh_buf *out);

/* Decompress n bytes of one incoming compressed message, appending to out. fin = these are the
 * message's last wire bytes. The message's total output may not exceed max (0 = no limit):
 * ZH_E_TOO_LARGE (close 1009) as soon as it would. Corrupt data: ZH_E_PARSE (close 1007).
 * Works for any split of the input, down to one byte per call. */
int zh_wsd_inflate(struct zh_wsd *d, const uint8_t *p, size_t n, bool fin, uint64_t max,
                   struct zh_buf *out);

/* Inflated bytes of incoming compressed messages, queued until the receiver's credits let them go
 * on in pieces. Both roles keep one per connection; zero-initialised, freed with
 * zh_wsd_inbox_free. Use the API, not the fields. */
struct zh_wsd_inbox {
    struct zh_buf _buf;
    size_t _off;
    uint8_t type;            /* the queued message's opcode (ZH_WS_TEXT or ZH_WS_BINARY) */
    bool _end;               /* the message ends with the queued bytes: a last piece is owed */
    struct zh_ws_utf8 _utf8; /* the message's text so far */
};

/* Inflate one piece of a compressed message (start/end: its first/last wire bytes) and queue the
 * output; text is checked as UTF-8 across pieces. Returns 0, or the close code to fail with and a
 * static reason in *why: 1009 when the message would inflate beyond max bytes (never buffered),
 * 1007 for corrupt data or text that is not UTF-8. */
unsigned zh_wsd_inbox_feed(struct zh_wsd_inbox *q, struct zh_wsd *d, uint8_t opcode, bool start,
                           bool end, const uint8_t *p, size_t n, uint64_t max, const char **why);

/* The next piece to hand on when credits bytes may go: false when none can (nothing queued, or no
 * credits and the piece would not be the message's empty last one). more = false on the last piece
 * of a message. Hand the piece on, then zh_wsd_inbox_consume it. */
bool zh_wsd_inbox_next(const struct zh_wsd_inbox *q, int64_t credits, const uint8_t **p, size_t *n,
                       bool *more);
void zh_wsd_inbox_consume(struct zh_wsd_inbox *q, size_t n, bool more);

/* True while bytes or a message's last piece wait. */
bool zh_wsd_inbox_pending(const struct zh_wsd_inbox *q);

/* Give a large message's memory back once nothing waits (keep at most keep bytes of capacity). */
void zh_wsd_inbox_trim(struct zh_wsd_inbox *q, size_t keep);
void zh_wsd_inbox_free(struct zh_wsd_inbox *q);

#endif
