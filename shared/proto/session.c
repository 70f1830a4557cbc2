#include "shared/proto/session.h"

#include <assert.h>
#include <string.h>

/* The rules here are the ones of ZHTTP.md §4 as docs/internals/flow-control.md states them. The
 * module never sends anything: it tells the engine what a packet means and keeps the counters. */

static const char *const state_names[] = {
    [ZH_SESS_ACTIVE] = "active",
    [ZH_SESS_PAUSED] = "paused",
    [ZH_SESS_CLOSED] = "closed",
};

struct zh_session_params zh_session_default_params(enum zh_role role)
{
    struct zh_session_params p;
    p.keepalive_ms =
        role == ZH_ROLE_SERVER ? ZH_SESSION_SERVER_KEEPALIVE_MS : ZH_SESSION_CLIENT_KEEPALIVE_MS;
    p.expiry_ms = ZH_SESSION_EXPIRY_MS;
    return p;
}

const char *zh_session_state_name(enum zh_session_state st)
{
    if ((unsigned)st >= sizeof(state_names) / sizeof(state_names[0]))
        return "?";
    return state_names[st];
}

/* Every state change goes through here, so there is one place to hook a "-> [%s]" trace into. */
static void set_state(struct zh_session *s, enum zh_session_state st)
{
    s->state = st;
}

/* Saturating helpers: peer-controlled values (credits, seq) must never overflow int64, and
 * time + interval must never wrap. */
static int64_t sat_add_i64(int64_t a, int64_t b)
{
    assert(a >= 0 && b >= 0);
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

static int64_t sat_inc_i64(int64_t a)
{
    return a == INT64_MAX ? INT64_MAX : a + 1;
}

static uint64_t sat_add_u64(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

void zh_session_init(struct zh_session *s, enum zh_role role,
                     const struct zh_session_params *params, uint64_t now)
{
    memset(s, 0, sizeof(*s));
    s->role = role;
    s->params = params ? *params : zh_session_default_params(role);
    set_state(s, ZH_SESS_ACTIVE);
    s->last_in_ms = now;
    s->last_out_ms = now;
}

bool zh_session_set_peer(struct zh_session *s, const uint8_t *from, size_t len)
{
    if (!from || len == 0 || len > ZH_ZHTTP_MAX_ID_LEN)
        return false;
    memcpy(s->peer, from, len);
    s->peer[len] = '\0';
    s->peer_len = (uint8_t)len;
    return true;
}

void zh_session_add_credits(struct zh_session *s, int64_t credits)
{
    /* A negative grant is not a thing ZHTTP has; it would let a hostile peer drive the allowance
     * below zero, so it is ignored rather than subtracted. */
    if (credits <= 0)
        return;
    s->send_credits = sat_add_i64(s->send_credits, credits);
}

enum zh_session_verdict zh_session_on_packet(struct zh_session *s,
                                             const struct zh_zhttp_packet *pkt,
                                             const struct zh_zhttp_id *id, uint64_t now)
{
    assert(pkt);
    if (s->state == ZH_SESS_CLOSED)
        return ZH_SV_CLOSED;

    /* cancel and error are terminal and may arrive out of sequence (§4.1). */
    if (pkt->type == ZH_ZHTTP_CANCEL || pkt->type == ZH_ZHTTP_ERROR) {
        s->last_in_ms = now;
        set_state(s, ZH_SESS_CLOSED);
        return ZH_SV_TERMINAL;
    }

    /* A present seq must be exactly the next one; an absent seq is not checked but still counts,
     * so a peer that starts sending seq later is held to the right number. */
    if (id && id->has_seq && id->seq != s->in_seq) {
        set_state(s, ZH_SESS_CLOSED);
        return ZH_SV_SEQ_ERROR;
    }
    s->in_seq = sat_inc_i64(s->in_seq);
    s->last_in_ms = now;

    if (pkt->has & ZH_ZF_CREDITS)
        zh_session_add_credits(s, pkt->credits);
    if (pkt->has & ZH_ZF_EXT_MULTI)
        s->peer_multi = pkt->ext_multi;

    /* Whoever speaks after a handoff is the new owner and its `from` is the new address. In the
     * server role the handler address is learned from (and follows) the handler's packets; in the
     * client role the requester's address is part of the session key and only a handoff moves it.
     * An unusable `from` (empty, too long) leaves the old address in place. */
    bool resumed = false;
    if (s->state == ZH_SESS_PAUSED) {
        set_state(s, ZH_SESS_ACTIVE);
        resumed = true;
    }
    if (pkt->from.p && (resumed || s->role == ZH_ROLE_SERVER))
        zh_session_set_peer(s, pkt->from.p, pkt->from.n);

    /* A handoff-start that itself resumes a paused session is still a request to pause: the new
     * owner is asking, and the caller answers it at the (already updated) peer address. */
    if (pkt->type == ZH_ZHTTP_HANDOFF_START)
        return ZH_SV_HANDOFF_START;
    return resumed ? ZH_SV_RESUMED : ZH_SV_OK;
}

int64_t zh_session_take_seq(struct zh_session *s, uint64_t now)
{
    int64_t seq = s->out_seq;
    s->out_seq = sat_inc_i64(s->out_seq);
    s->last_out_ms = now;
    return seq;
}

bool zh_session_spend(struct zh_session *s, uint64_t n)
{
    if (s->send_credits < 0 || n > (uint64_t)s->send_credits)
        return false;
    s->send_credits -= (int64_t)n;
    return true;
}

void zh_session_pause(struct zh_session *s)
{
    if (s->state == ZH_SESS_ACTIVE)
        set_state(s, ZH_SESS_PAUSED);
}

void zh_session_close(struct zh_session *s)
{
    set_state(s, ZH_SESS_CLOSED);
}

uint64_t zh_session_keepalive_at(const struct zh_session *s)
{
    if (s->state != ZH_SESS_ACTIVE)
        return UINT64_MAX;
    return sat_add_u64(s->last_out_ms, s->params.keepalive_ms);
}

uint64_t zh_session_expires_at(const struct zh_session *s)
{
    if (s->state == ZH_SESS_CLOSED)
        return UINT64_MAX;
    return sat_add_u64(s->last_in_ms, s->params.expiry_ms);
}

bool zh_session_keepalive_due(const struct zh_session *s, uint64_t now)
{
    uint64_t at = zh_session_keepalive_at(s);
    return at != UINT64_MAX && now >= at;
}

bool zh_session_expired(const struct zh_session *s, uint64_t now)
{
    uint64_t at = zh_session_expires_at(s);
    return at != UINT64_MAX && now >= at;
}

enum zh_unknown_action zh_session_unknown_action(enum zh_role role,
                                                 const struct zh_zhttp_packet *pkt)
{
    assert(pkt);
    if (role != ZH_ROLE_CLIENT)
        return ZH_UNKNOWN_DROP;
    /* Never answer an error or a cancel: two peers that both think the session is gone would
     * otherwise bounce cancels forever. */
    if (pkt->type == ZH_ZHTTP_ERROR || pkt->type == ZH_ZHTTP_CANCEL)
        return ZH_UNKNOWN_DROP;
    return ZH_UNKNOWN_CANCEL;
}
