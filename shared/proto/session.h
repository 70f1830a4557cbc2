/* ZHTTP session rules, written once for both roles: a pure state machine with no fd, no loop and no
 * clock of its own (the caller passes `now` in milliseconds). See docs/internals/flow-control.md.
 *
 * The engines own the sessions (keyed by (from, id) in the client role and by zhttpd's own id in
 * the server role) and ask this module what each packet means:
 *   - seq: checked only when present; a present seq must equal the next expected one. cancel and
 * error are accepted regardless of seq (they are terminal).
 *   - credits: every `credits` field adds to what we may send; zh_session_spend() takes body bytes.
 *   - keep-alive: due keepalive_ms after our last packet; expiry: expiry_ms after the peer's last
 * packet.
 *   - handoff: handoff-start pauses the session (we answer handoff-proceed and send nothing more);
 * the next packet from the peer resumes it and its `from` becomes the new peer address. */
#ifndef ZH_SHARED_PROTO_SESSION_H
#define ZH_SHARED_PROTO_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "shared/proto/zhttp.h"

enum zh_role {
    ZH_ROLE_CLIENT = 0, /* zhttpd is the responder: outbound HTTP for requesters (Zurl's job) */
    ZH_ROLE_SERVER =
        1, /* zhttpd is the initiator: inbound HTTP handed to handlers (Condure's job) */
};

#define ZH_SESSION_CLIENT_KEEPALIVE_MS 30000u
#define ZH_SESSION_SERVER_KEEPALIVE_MS 45000u
#define ZH_SESSION_EXPIRY_MS           60000u

struct zh_session_params {
    uint32_t keepalive_ms; /* send a keep-alive after this long without sending anything */
    uint32_t expiry_ms;    /* give up on the peer after this long without hearing from it */
};

/* The default parameters of a role (client 30 s / 60 s, server 45 s / 60 s). */
struct zh_session_params zh_session_default_params(enum zh_role role);

enum zh_session_state {
    ZH_SESS_ACTIVE = 0, /* normal operation */
    ZH_SESS_PAUSED,     /* handoff-proceed sent: send nothing until the peer's next packet */
    ZH_SESS_CLOSED,     /* terminal packet seen or sent; only the owner's cleanup remains */
};

/* What an incoming packet means for the session. */
enum zh_session_verdict {
    ZH_SV_OK = 0,  /* apply the packet */
    ZH_SV_RESUMED, /* the packet resumed a paused session (peer address may have changed); apply it
                    */
    ZH_SV_HANDOFF_START, /* peer asked to pause: flush, send handoff-proceed, then
                            zh_session_pause() */
    ZH_SV_TERMINAL,      /* peer sent cancel or error: end the session, send nothing back */
    ZH_SV_SEQ_ERROR, /* seq present and wrong: client role answers cancel; server role cancels and
                        closes the client connection */
    ZH_SV_CLOSED,    /* session already closed: ignore the packet */
};

/* How to answer a packet that names no known session. */
enum zh_unknown_action {
    ZH_UNKNOWN_DROP = 0, /* log and drop (server role; and never answer error/cancel) */
    ZH_UNKNOWN_CANCEL,   /* answer cancel (client role, as Zurl does) */
};

struct zh_session {
    enum zh_role role;
    enum zh_session_state state;
    struct zh_session_params params;
    int64_t in_seq;       /* next seq expected from the peer */
    int64_t out_seq;      /* seq of our next packet */
    int64_t send_credits; /* body bytes we may still send to the peer */
    uint64_t last_in_ms;  /* when we last heard from the peer */
    uint64_t last_out_ms; /* when we last sent to the peer */
    bool peer_multi;      /* peer advertised ext.multi:true */
    uint8_t peer_len;
    char peer[ZH_ZHTTP_MAX_ID_LEN + 1]; /* peer address (its `from`), NUL-terminated */
};

/* Start a session at time now. in_seq/out_seq start at 0, credits at 0, no peer address yet. */
void zh_session_init(struct zh_session *s, enum zh_role role,
                     const struct zh_session_params *params, uint64_t now);

/* Account for an incoming packet addressed to this session; `id` is the packet's entry for this
 * session (its seq, if any). Updates in_seq, credits, last_in_ms, peer address and peer_multi as
 * the verdict says. A ZH_SV_SEQ_ERROR or ZH_SV_TERMINAL verdict closes the session. */
enum zh_session_verdict zh_session_on_packet(struct zh_session *s,
                                             const struct zh_zhttp_packet *pkt,
                                             const struct zh_zhttp_id *id, uint64_t now);

/* Set the peer address (e.g. from the first packet). Returns false if it is empty or too long. */
bool zh_session_set_peer(struct zh_session *s, const uint8_t *from, size_t len);

/* Take the seq for our next outgoing packet and note the send time. */
int64_t zh_session_take_seq(struct zh_session *s, uint64_t now);

/* Add credits granted by the peer outside a packet (e.g. the initial grant in a request). */
void zh_session_add_credits(struct zh_session *s, int64_t credits);

/* Take n body bytes from the send allowance. Returns false (and takes nothing) if fewer remain. */
bool zh_session_spend(struct zh_session *s, uint64_t n);

/* Enter the paused state after sending handoff-proceed. */
void zh_session_pause(struct zh_session *s);

/* Mark the session closed (after we sent or received a terminal packet). */
void zh_session_close(struct zh_session *s);

/* When our next keep-alive is due (last_out_ms + keepalive_ms). UINT64_MAX while paused or closed.
 */
uint64_t zh_session_keepalive_at(const struct zh_session *s);

/* When the session expires (last_in_ms + expiry_ms). UINT64_MAX once closed. */
uint64_t zh_session_expires_at(const struct zh_session *s);

/* True when a keep-alive should be sent at time now. */
bool zh_session_keepalive_due(const struct zh_session *s, uint64_t now);

/* True when the peer has been silent for expiry_ms at time now. */
bool zh_session_expired(const struct zh_session *s, uint64_t now);

/* How a role answers a packet for an unknown session: client role cancels (never in answer to an
 * error or cancel), server role drops. */
enum zh_unknown_action zh_session_unknown_action(enum zh_role role,
                                                 const struct zh_zhttp_packet *pkt);

/* Name of a state, for "-> [%s]" logging. */
const char *zh_session_state_name(enum zh_session_state st);

#endif
