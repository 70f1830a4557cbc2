/* Internal to server/: the engine and connection structures shared by server.c (the engine: slots,
 * accept channel, handler packet dispatch, batched keep-alives, shutdown), conn.c (the connection,
 * its transport, output, states and deadlines), input.c (request head and body), response.c
 * (HTTP/1 responses), handler.c (the ZHTTP session and packets to the handler), streammode.c and
 * reqmode.c (the two modes).
 * Not part of the server API: daemon/ uses server/server.h only. See
 * docs/internals/conn-lifecycle.md. */
#ifndef ZH_SERVER_CONN_H
#define ZH_SERVER_CONN_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/server.h"
#include "server/tls.h"
#include "shared/proto/http1.h"
#include "shared/proto/list.h"
#include "shared/proto/session.h"
#include "shared/proto/ws.h"
#include "shared/proto/wsdeflate.h"
#include "shared/proto/zhttp.h"
#include "shared/rt/chunkq.h"
#include "shared/rt/loop.h"
#include "shared/rt/stream.h"
#include "shared/rt/zbridge.h"
#include "shared/rt/zmsg.h"

#define ZH_CONN_MAX_HEADERS 128 /* request header fields */
#define ZH_CONN_ID_MAX      32
#define ZH_CONN_CHUNK_SIZE  4096 /* output queue chunks (the engine's pool) */

/* Connection states, logged as "-> [%s]". */
enum zh_conn_state {
    ZH_CONN_HEAD = 0, /* waiting for or reading a request head */
    ZH_CONN_BODY,     /* req mode: reading the whole body before the request goes out */
    ZH_CONN_REQUEST,  /* request with a handler, response not started */
    ZH_CONN_RESPONSE, /* response head written, body streaming */
    ZH_CONN_WS,       /* WebSocket: 101 written, frames <-> packets (wsmode.c) */
    ZH_CONN_CLOSING,  /* flushing the last bytes, then close */
    ZH_CONN_CLOSED,   /* fd closed; freed from the loop's pending phase */
};

struct zh_conn {
    struct zh_server *s;
    uint32_t slot;
    struct zh_stream st; /* the transport: the fd, and TLS once it starts */
    struct zh_io io;
    struct zh_defer free_defer;
    struct zh_defer read_defer; /* TLS holds decrypted bytes: read without waiting for epoll */
    struct zh_timer timer;      /* the earliest deadline of the state (see conn_deadline) */
    enum zh_conn_state state;
    bool req_mode;
    bool tls; /* accepted on a TLS listener */
    bool local;
    bool lingering; /* closing: our FIN is sent, client input is read and dropped */
    /* TLS */
    const char *default_cert; /* the listener's default-cert NAME (listener-owned) */
    bool tls_sniffed;         /* the first byte was looked at */
    bool in_hs;               /* counted in the TLS handshakes in progress (see hs_admit) */
    struct zh_list hs_node;   /* in the worker's handshakes in progress (s->hs_list) */
    char peer_addr[INET6_ADDRSTRLEN];
    int peer_port;

    /* deadlines */
    uint64_t
        head_start_ms;   /* the wait for a head counts from here (accept, previous response out) */
    uint64_t last_io_ms; /* last byte read from or written to the client */
    uint64_t req_deadline_ms; /* req mode: the handler must have answered by then */
    uint64_t closing_ms;      /* when closing began (the linger time counts from it) */
    uint64_t sess_start_ms;   /* when the request went to the handler (duration metrics) */
    char log_method[16];      /* the request's method and host, for its failure line */
    char log_host[128];
    char log_path[128]; /* and its path without the query, for the access log */
    int log_status;     /* the status written (0 = none yet) */
    uint64_t log_bytes; /* response body bytes queued for the client */
    bool log_done;      /* this request's access log line is written */
    unsigned served;    /* requests started on this connection */

    /* input: one buffer, grown only for a large head or a req-mode body */
    char *in;
    size_t in_len, in_cap;
    bool in_eof;
    struct zh_http1_req req;

    /* output: head and chunk framing (and stream-mode body) in the queue, then an optional tail
     * written from a handler message without copying (req mode) */
    struct zh_chunkq out;
    struct zh_zmsg *tail_msg;
    const uint8_t *tail;
    size_t tail_len;

    /* the current request and its session */
    bool has_session;
    char id[ZH_CONN_ID_MAX];
    size_t id_len;
    struct zh_session sess;
    bool keep_alive;
    bool is_head;
    bool expect_continue; /* 100 Continue owed once the handler is ready for the body */
    int minor;
    /* request body */
    enum zh_http1_body req_body;
    uint64_t body_left; /* Content-Length bytes not yet read (stream) / expected (req) */
    size_t body_off;    /* where decoded body bytes start in `in` (req mode keeps the head) */
    size_t body_ready;  /* decoded body bytes at in[body_off..] */
    bool chunk_done;    /* chunked: last chunk and trailers read */
    struct zh_http1_chunked chunked;
    bool body_done; /* all request body bytes read (and, in stream mode, sent) */
    /* response */
    enum zh_http1_body resp_body;
    uint64_t resp_left; /* Content-Length bytes the handler still owes */
    int64_t granted;    /* credits we gave the handler, minus body bytes received */
    uint64_t unacked;   /* body bytes queued but not yet re-granted */
    /* WebSocket (wsmode.c) */
    bool ws;                       /* the request is a WebSocket upgrade */
    bool ws_close_sent;            /* our close frame is queued */
    bool ws_close_rcvd;            /* the client's close frame arrived */
    uint8_t ws_out_type;           /* the type of the handler's message being written */
    char ws_accept[29];            /* Sec-WebSocket-Accept for the 101 */
    uint64_t ws_close_ms;          /* when our close was queued */
    uint64_t ws_ping_ms;           /* when our keep-alive ping went out (0 = none outstanding) */
    uint64_t last_in_ms;           /* last byte read from the client */
    struct zh_ws_parser ws_in;     /* client frames */
    struct zh_ws_sender ws_out;    /* the handler's messages: opcodes for fragments */
    struct zh_ws_utf8 ws_out_utf8; /* the handler's text so far */
    /* permessage-deflate (--compression) */
    bool ws_deflate;  /* negotiated */
    char ws_ext[128]; /* our Sec-WebSocket-Extensions answer */
    struct zh_wsd_params ws_dparams;
    struct zh_wsd wsd;
    struct zh_wsd_inbox ws_inbox; /* inflated client messages not yet sent to the handler */
    /* handler frames not yet written (--messages-max): their end offsets in the output stream */
    uint64_t *ws_ends;
    unsigned ws_ends_head, ws_ends_n;
    uint64_t ws_queued_total; /* bytes ever queued on the connection */
};

struct zh_server {
    struct zh_loop *loop;
    struct zh_zport *port;
    unsigned worker;
    struct zh_server_config cfg;
    struct zh_chan *accept_ch;
    struct zh_io accept_io;
    struct zh_chunk_pool pool;
    struct zh_conn **slots;
    uint32_t n_slots;
    uint32_t *free_slots;
    uint32_t n_free;
    atomic_uint n_conns; /* reserved by the listener, released when a conn is freed */
    uint64_t id_counter; /* the last part of every session id: never reused on this worker */
    size_t active;
    bool closing;
    atomic_bool closing_flag;        /* closing, as the listener thread sees it */
    struct zh_zhttp_packet *out_pkt; /* scratch for packets we build (never held across calls) */
    struct zh_zhttp_packet *in_pkt;  /* scratch for decoding handler packets */
    /* batched keep-alives: every tick visits the next 1/ZH_KA_SLICES of the slots */
    struct zh_timer ka_timer;
    uint32_t ka_cursor;
    struct zh_conn **ka_batch;
    uint32_t ka_batch_cap;
    /* TLS handshakes in progress on this worker, oldest first (the ones evicted at the limit) */
    struct zh_list hs_list;
    uint64_t hs_log_ms;  /* next time a "handshakes at the limit" line may be logged */
    unsigned hs_dropped; /* connections closed at that limit since the last line */
};

/* A TLS handshake may start if the process is below --max-tls-handshakes (counted then). */
bool zh_server__hs_take(struct zh_server_limits *l);

/* A counted handshake completed or its connection closed. */
void zh_server__hs_release(struct zh_server_limits *l);

/* ---- server.c: the slots ---- */

/* Give c a slot (the slot table grows as needed): s->slots[c->slot] == c until zh_server__drop. */
void zh_server__slot_take(struct zh_server *s, struct zh_conn *c);

/* A connection is freed: give back its slot, its place in the worker and in the process limit of
 * its kind. */
void zh_server__drop(struct zh_server *s, uint32_t slot, enum zh_server_kind kind);

/* Give back a connection's place in the worker and in the process limit of its kind. */
void zh_server__release(struct zh_server *s, enum zh_server_kind kind);

/* ---- conn.c: the connection, its transport, output, states and deadlines ---- */

/* Take over an accepted connection (frees a). */
void zh_conn_new(struct zh_server *s, struct zh_accepted *a);

/* Close now: a live session's handler gets a cancel. The conn is freed from the pending phase. */
void zh_conn_close(struct zh_conn *c, const char *why);

/* Free a closed conn's memory and release its slot and reservation (pending phase or engine
 * free). */
void zh_conn_free(struct zh_conn *c);

/* Shutdown: close when idle, else finish with "Connection: close"; with cancel end it now. */
void zh_conn_shutdown(struct zh_conn *c, bool cancel);

/* The loop's time for c. */
static inline uint64_t zh_conn__now(const struct zh_conn *c)
{
    return zh_loop_now(c->s->loop);
}

/* Change state (logged) and re-arm the conn's timer for the new state. */
void zh_conn__set_state(struct zh_conn *c, enum zh_conn_state st);

/* Re-arm the conn's timer at the earliest deadline of its state. */
void zh_conn__arm_timer(struct zh_conn *c);

/* Append bytes to the output queue. */
void zh_conn__queue(struct zh_conn *c, const void *p, size_t n);

/* Write what can be written, then set the epoll interest (or finish closing). */
void zh_conn__flush(struct zh_conn *c);

/* Act on buffered input in the current state (head, req-mode body, stream-mode body). */
void zh_conn__process(struct zh_conn *c);

/* The response has been handed over in full: end the session, then close or wait for the next
 * request. */
void zh_conn__response_done(struct zh_conn *c);

/* The one failure line of a request (at info): role, connection, session id, method and host
 * (never the query string or a header value), status (0 = none written), stage ("tls",
 * "request", "handler", "response") and reason. */
void zh_conn__log_failure(struct zh_conn *c, int status, const char *stage, const char *reason);

/* The request's access log line (once per request; --access-log). outcome: "ok" or the stage. */
void zh_conn__access_log(struct zh_conn *c, const char *outcome);

/* ---- input.c: the request head and body bytes ---- */

/* Parse and start the next request, if a whole head is buffered. */
void zh_input_head(struct zh_conn *c);

/* Drop the first n bytes of the input buffer. */
void zh_input_consume(struct zh_conn *c, size_t n);

/* Decode buffered chunked framing in place: payload bytes gather at in[body_off..body_off +
 * body_ready), framing is cut out, bytes after the body stay. Returns 0, or -1 after answering a
 * malformed body with an error response. */
int zh_input_decode_chunked(struct zh_conn *c);

/* The absolute uri of the parsed request, appended to uri. */
void zh_input_build_uri(struct zh_conn *c, const struct zh_http1_framing *f, struct zh_buf *uri);

/* Fill p's request fields (method, uri, headers, peer address) from the parsed head; uri is the
 * caller's buffer that p->uri points into. */
void zh_input_request_fields(struct zh_conn *c, struct zh_zhttp_packet *p,
                             const struct zh_http1_header *hdrs, size_t nh,
                             const struct zh_http1_framing *f, struct zh_buf *uri);

/* ---- response.c: HTTP/1 responses ---- */

/* Answer with a short text/plain error (or other fixed) response and close after it; the session,
 * if any, ends without a cancel (send one first if the handler should know). */
void zh_response_simple(struct zh_conn *c, int status, const char *text);

/* The status of a handler's response head: its code (200 when absent) if within 100-599, else -1.
 */
int zh_response_status(const struct zh_zhttp_packet *p);

/* A handler's 1xx before the final response: 100 and 103 go to an HTTP/1.1 client as interim
 * responses (100 only while the client waits for its 100 Continue) or are dropped with a log line;
 * 101 (no upgrade reaches a handler), 102, other 1xx, a 1xx with a body, and any 1xx in req mode
 * are refused with a log line. Returns 0 when the exchange goes on, -1 when the caller answers 502.
 */
int zh_response_interim(struct zh_conn *c, const struct zh_zhttp_packet *p, int code);

/* Queue the final response head for handler packet p (its code, reason and headers, minus
 * hop-by-hop ones and Content-Length, which we decide) and choose the body framing. more says
 * whether body packets follow. Returns 0, or -1 for a head we cannot write, a status outside
 * 200-599 included (the caller answers 502). */
int zh_response_head(struct zh_conn *c, const struct zh_zhttp_packet *p, bool more);

/* Queue body bytes in the chosen framing; without more, end the body and the response. */
void zh_response_body(struct zh_conn *c, struct zh_span body, bool more);

/* ---- handler.c: the ZHTTP session and packets to the handler ---- */

/* Start a session: new id, session state, counters. */
void zh_handler_session_begin(struct zh_conn *c);

/* End the current session (no packet sent). */
void zh_handler_session_end(struct zh_conn *c);

/* Send a cancel to the handler (stream mode, address known), then end the session. */
void zh_handler_cancel(struct zh_conn *c);

/* The engine's scratch packet, reset, with our from and, in stream mode, c's id and next seq. */
struct zh_zhttp_packet *zh_handler_packet(struct zh_conn *c);

/* Build and send our own encoded packet on sock with the bridge's give-back flag; first packets
 * get the --handler-wait deadline. */
void zh_handler_send(struct zh_conn *c, enum zh_zsock sock, const struct zh_zhttp_packet *p);

/* Stream mode, handler address known: a packet of this type alone (cancel, handoff-proceed). */
void zh_handler_send_simple(struct zh_conn *c, enum zh_zhttp_type type);

/* Stream mode: grant the handler the response bytes that left the output queue. */
void zh_handler_grant_credits(struct zh_conn *c);

/* One of c's own messages on sock came back undelivered: no handler took the first packet within
 * --handler-wait (503), or the handler is unreachable (502 / close). */
void zh_handler_on_undelivered(struct zh_conn *c, enum zh_zsock sock);

/* ---- streammode.c ---- */

/* Stream mode: the first packet goes out on PUSH; the body follows under the handler's credits. */
void zh_streammode_start(struct zh_conn *c, const struct zh_http1_header *hdrs, size_t nh,
                         const struct zh_http1_framing *f);

/* Forward buffered request body bytes to the handler as its credits allow. */
void zh_streammode_pump(struct zh_conn *c);

/* A stream-mode handler packet for c's current session; id is the packet's entry for it. */
void zh_streammode_on_packet(struct zh_conn *c, const struct zh_zhttp_packet *p,
                             const struct zh_zhttp_id *id);

/* Apply a stream-mode handler packet whose session verdict was taken (wsmode.c: a plain HTTP
 * answer to an upgrade request). */
void zh_streammode_apply(struct zh_conn *c, const struct zh_zhttp_packet *p);

/* ---- wsmode.c: inbound WebSocket ---- */

/* Check an upgrade request (GET, Sec-WebSocket-Version 13, one valid key; computes the accept
 * value). Returns 0, or the HTTP status to refuse it with and *why. */
int zh_wsmode_check(struct zh_conn *c, const struct zh_http1_header *hdrs, size_t nh,
                    const char **why);

/* The upgrade request goes to the handler as a ws:// or wss:// request. */
void zh_wsmode_start(struct zh_conn *c, const struct zh_http1_header *hdrs, size_t nh,
                     const struct zh_http1_framing *f);

/* A handler packet for c's WebSocket session (waiting for the 101, or in ZH_CONN_WS). */
void zh_wsmode_on_packet(struct zh_conn *c, const struct zh_zhttp_packet *p,
                         const struct zh_zhttp_id *id);

/* ZH_CONN_WS: parse buffered client frames into packets as the handler's credits allow. */
void zh_wsmode_pump(struct zh_conn *c);

/* ZH_CONN_WS: the earliest deadline (session expiry, close timeout), and its expiry. */
uint64_t zh_wsmode_deadline(const struct zh_conn *c);
void zh_wsmode_timer(struct zh_conn *c, uint64_t now);

/* ---- reqmode.c ---- */

/* A req-mode head was parsed: check the body size, then read the body or send the request. */
void zh_reqmode_start(struct zh_conn *c, const struct zh_http1_framing *f);

/* Read progress in ZH_CONN_BODY: decode, bound and complete the body, then send the request. */
void zh_reqmode_body(struct zh_conn *c);

/* The handler's answer to a req-mode request. May take *mp (the message p was decoded from) to
 * write the body from it without a copy; sets *mp to NULL then. */
void zh_reqmode_on_packet(struct zh_conn *c, const struct zh_zhttp_packet *p, struct zh_zmsg **mp);

#endif
