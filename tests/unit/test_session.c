/* link: zh_proto */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "shared/proto/session.h"

/* Packets are built by hand (memset + fields) so this test depends on nothing but the packet
 * struct. A packet is large, so each test uses the file's one static instance. */
static struct zh_zhttp_packet pkt;
static struct zh_zhttp_id pid;

static struct zh_span span(const char *s)
{
    struct zh_span sp = {(const uint8_t *)s, strlen(s)};
    return sp;
}

/* Reset pkt to a packet of type t from `from` (NULL = no from) and pid to an id with or without
 * seq (seq < 0 = absent). */
static void make(enum zh_zhttp_type t, const char *from, int64_t seq)
{
    memset(&pkt, 0, sizeof(pkt));
    pkt.type = t;
    if (from)
        pkt.from = span(from);
    memset(&pid, 0, sizeof(pid));
    pid.id = span("sess-1");
    if (seq >= 0) {
        pid.seq = seq;
        pid.has_seq = true;
        pkt.has |= ZH_ZF_SEQ;
    }
    pkt.n_ids = 1;
    pkt.ids[0] = pid;
}

static void with_credits(int64_t c)
{
    pkt.has |= ZH_ZF_CREDITS;
    pkt.credits = c;
}

static enum zh_session_verdict feed(struct zh_session *s, uint64_t now)
{
    return zh_session_on_packet(s, &pkt, &pid, now);
}

static void new_session(struct zh_session *s, enum zh_role role, uint64_t now)
{
    zh_session_init(s, role, NULL, now);
}

/* ---- init and defaults ---- */

static void default_params_per_role(void **state)
{
    (void)state;
    struct zh_session_params c = zh_session_default_params(ZH_ROLE_CLIENT);
    struct zh_session_params sv = zh_session_default_params(ZH_ROLE_SERVER);
    assert_int_equal(30000, c.keepalive_ms);
    assert_int_equal(60000, c.expiry_ms);
    assert_int_equal(45000, sv.keepalive_ms);
    assert_int_equal(60000, sv.expiry_ms);
}

static void init_starts_active_with_zero_counters(void **state)
{
    (void)state;
    struct zh_session s;
    memset(&s, 0xa5, sizeof(s));
    new_session(&s, ZH_ROLE_SERVER, 1000);
    assert_int_equal(ZH_ROLE_SERVER, s.role);
    assert_int_equal(ZH_SESS_ACTIVE, s.state);
    assert_int_equal(0, s.in_seq);
    assert_int_equal(0, s.out_seq);
    assert_int_equal(0, s.send_credits);
    assert_int_equal(1000, s.last_in_ms);
    assert_int_equal(1000, s.last_out_ms);
    assert_false(s.peer_multi);
    assert_int_equal(0, s.peer_len);
    assert_string_equal("", s.peer);
    assert_int_equal(45000, s.params.keepalive_ms);
}

static void init_uses_given_params(void **state)
{
    (void)state;
    struct zh_session s;
    struct zh_session_params p = {.keepalive_ms = 100, .expiry_ms = 250};
    zh_session_init(&s, ZH_ROLE_CLIENT, &p, 0);
    assert_int_equal(100, zh_session_keepalive_at(&s));
    assert_int_equal(250, zh_session_expires_at(&s));
}

static void state_names_for_logging(void **state)
{
    (void)state;
    assert_string_equal("active", zh_session_state_name(ZH_SESS_ACTIVE));
    assert_string_equal("paused", zh_session_state_name(ZH_SESS_PAUSED));
    assert_string_equal("closed", zh_session_state_name(ZH_SESS_CLOSED));
    assert_string_equal("?", zh_session_state_name((enum zh_session_state)42));
}

/* ---- seq ---- */

static void in_order_seq_is_ok_in_both_roles(void **state)
{
    (void)state;
    for (int role = 0; role < 2; role++) {
        struct zh_session s;
        new_session(&s, (enum zh_role)role, 0);
        for (int64_t i = 0; i < 5; i++) {
            make(ZH_ZHTTP_DATA, "h1", i);
            assert_int_equal(ZH_SV_OK, feed(&s, (uint64_t)i));
            assert_int_equal(i + 1, s.in_seq);
        }
        assert_int_equal(ZH_SESS_ACTIVE, s.state);
    }
}

static void absent_seq_is_not_checked_but_advances(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    make(ZH_ZHTTP_DATA, "h1", -1);
    assert_int_equal(ZH_SV_OK, feed(&s, 1));
    make(ZH_ZHTTP_KEEP_ALIVE, "h1", -1);
    assert_int_equal(ZH_SV_OK, feed(&s, 2));
    assert_int_equal(2, s.in_seq);
    /* A peer that starts sending seq later is held to the count of everything it sent. */
    make(ZH_ZHTTP_DATA, "h1", 2);
    assert_int_equal(ZH_SV_OK, feed(&s, 3));
    assert_int_equal(3, s.in_seq);
}

static void absent_seq_then_stale_seq_is_an_error(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, 0);
    make(ZH_ZHTTP_DATA, "app1", -1);
    assert_int_equal(ZH_SV_OK, feed(&s, 1));
    make(ZH_ZHTTP_DATA, "app1", 0);
    assert_int_equal(ZH_SV_SEQ_ERROR, feed(&s, 2));
}

static void null_id_means_no_seq(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, 0);
    make(ZH_ZHTTP_CREDIT, "app1", -1);
    assert_int_equal(ZH_SV_OK, zh_session_on_packet(&s, &pkt, NULL, 5));
    assert_int_equal(1, s.in_seq);
    assert_int_equal(5, s.last_in_ms);
}

static void gap_in_seq_closes_session(void **state)
{
    (void)state;
    for (int role = 0; role < 2; role++) {
        struct zh_session s;
        new_session(&s, (enum zh_role)role, 0);
        make(ZH_ZHTTP_DATA, "h1", 0);
        assert_int_equal(ZH_SV_OK, feed(&s, 1));
        make(ZH_ZHTTP_DATA, "h1", 2);
        with_credits(100);
        assert_int_equal(ZH_SV_SEQ_ERROR, feed(&s, 2));
        assert_int_equal(ZH_SESS_CLOSED, s.state);
        /* The bad packet is not applied: no credits, no progress, no liveness. */
        assert_int_equal(0, s.send_credits);
        assert_int_equal(1, s.in_seq);
        assert_int_equal(1, s.last_in_ms);
    }
}

static void repeated_seq_is_an_error(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    make(ZH_ZHTTP_DATA, "h1", 0);
    assert_int_equal(ZH_SV_OK, feed(&s, 1));
    assert_int_equal(ZH_SV_SEQ_ERROR, feed(&s, 2));
}

static void negative_seq_is_an_error(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    make(ZH_ZHTTP_DATA, "h1", 0);
    pid.seq = -1;
    assert_int_equal(ZH_SV_SEQ_ERROR, feed(&s, 1));
}

static void huge_seq_is_an_error_not_an_overflow(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, 0);
    make(ZH_ZHTTP_DATA, "app1", 0);
    pid.seq = INT64_MAX;
    assert_int_equal(ZH_SV_SEQ_ERROR, feed(&s, 1));
}

static void in_seq_saturates_at_int64_max(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, 0);
    s.in_seq = INT64_MAX - 1;
    make(ZH_ZHTTP_DATA, "app1", INT64_MAX - 1);
    assert_int_equal(ZH_SV_OK, feed(&s, 1));
    assert_int_equal(INT64_MAX, s.in_seq);
    make(ZH_ZHTTP_DATA, "app1", -1);
    assert_int_equal(ZH_SV_OK, feed(&s, 2));
    assert_int_equal(INT64_MAX, s.in_seq);
}

static void cancel_accepted_out_of_sequence(void **state)
{
    (void)state;
    for (int role = 0; role < 2; role++) {
        struct zh_session s;
        new_session(&s, (enum zh_role)role, 0);
        make(ZH_ZHTTP_CANCEL, "h1", 77);
        assert_int_equal(ZH_SV_TERMINAL, feed(&s, 9));
        assert_int_equal(ZH_SESS_CLOSED, s.state);
    }
}

static void error_accepted_out_of_sequence(void **state)
{
    (void)state;
    for (int role = 0; role < 2; role++) {
        struct zh_session s;
        new_session(&s, (enum zh_role)role, 0);
        make(ZH_ZHTTP_DATA, "h1", 0);
        assert_int_equal(ZH_SV_OK, feed(&s, 1));
        make(ZH_ZHTTP_ERROR, "h1", 0);
        pkt.condition = span("bad-request");
        assert_int_equal(ZH_SV_TERMINAL, feed(&s, 2));
        assert_int_equal(ZH_SESS_CLOSED, s.state);
    }
}

static void terminal_without_seq(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    make(ZH_ZHTTP_CANCEL, NULL, -1);
    assert_int_equal(ZH_SV_TERMINAL, feed(&s, 1));
}

static void terminal_packet_credits_are_ignored(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, 0);
    make(ZH_ZHTTP_ERROR, "app1", 0);
    with_credits(500);
    assert_int_equal(ZH_SV_TERMINAL, feed(&s, 1));
    assert_int_equal(0, s.send_credits);
}

static void packets_after_close_are_closed(void **state)
{
    (void)state;
    static const enum zh_zhttp_type types[] = {
        ZH_ZHTTP_DATA,  ZH_ZHTTP_CREDIT, ZH_ZHTTP_KEEP_ALIVE,   ZH_ZHTTP_CANCEL,
        ZH_ZHTTP_ERROR, ZH_ZHTTP_PING,   ZH_ZHTTP_HANDOFF_START};
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, 0);
    make(ZH_ZHTTP_CANCEL, "app1", 0);
    assert_int_equal(ZH_SV_TERMINAL, feed(&s, 1));
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        make(types[i], "app2", (int64_t)i);
        with_credits(10);
        assert_int_equal(ZH_SV_CLOSED, feed(&s, 100 + i));
    }
    /* Nothing about a closed session moves. */
    assert_int_equal(0, s.send_credits);
    assert_int_equal(0, s.in_seq);
    assert_int_equal(1, s.last_in_ms);
}

static void local_close_then_packet_is_closed(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    zh_session_close(&s);
    assert_int_equal(ZH_SESS_CLOSED, s.state);
    make(ZH_ZHTTP_DATA, "h1", 0);
    assert_int_equal(ZH_SV_CLOSED, feed(&s, 1));
}

static void seq_error_then_packet_is_closed(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    make(ZH_ZHTTP_DATA, "h1", 3);
    assert_int_equal(ZH_SV_SEQ_ERROR, feed(&s, 1));
    make(ZH_ZHTTP_DATA, "h1", 0);
    assert_int_equal(ZH_SV_CLOSED, feed(&s, 2));
}

/* ---- outgoing seq ---- */

static void take_seq_counts_from_zero_and_notes_send_time(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, 0);
    assert_int_equal(0, zh_session_take_seq(&s, 10));
    assert_int_equal(10, s.last_out_ms);
    assert_int_equal(1, zh_session_take_seq(&s, 20));
    assert_int_equal(2, zh_session_take_seq(&s, 30));
    assert_int_equal(30, s.last_out_ms);
    assert_int_equal(3, s.out_seq);
    /* Incoming and outgoing counters are independent. */
    assert_int_equal(0, s.in_seq);
}

static void take_seq_saturates(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, 0);
    s.out_seq = INT64_MAX;
    assert_int_equal(INT64_MAX, zh_session_take_seq(&s, 1));
    assert_int_equal(INT64_MAX, s.out_seq);
}

/* ---- credits ---- */

static void credits_accumulate_from_every_packet_type_that_carries_them(void **state)
{
    (void)state;
    static const enum zh_zhttp_type types[] = {ZH_ZHTTP_DATA, ZH_ZHTTP_CREDIT, ZH_ZHTTP_PING,
                                               ZH_ZHTTP_PONG, ZH_ZHTTP_KEEP_ALIVE};
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    int64_t want = 0;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        make(types[i], "h1", (int64_t)i);
        with_credits((int64_t)(i + 1) * 100);
        assert_int_equal(ZH_SV_OK, feed(&s, i));
        want += (int64_t)(i + 1) * 100;
        assert_int_equal(want, s.send_credits);
    }
}

static void packet_without_credits_field_adds_nothing(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    make(ZH_ZHTTP_DATA, "h1", 0);
    pkt.credits = 999; /* value without the presence bit */
    assert_int_equal(ZH_SV_OK, feed(&s, 1));
    assert_int_equal(0, s.send_credits);
}

static void negative_credits_are_ignored(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, 0);
    zh_session_add_credits(&s, 50);
    make(ZH_ZHTTP_CREDIT, "app1", 0);
    with_credits(-1000);
    assert_int_equal(ZH_SV_OK, feed(&s, 1));
    assert_int_equal(50, s.send_credits);
    zh_session_add_credits(&s, INT64_MIN);
    assert_int_equal(50, s.send_credits);
}

static void huge_credits_clamp_at_int64_max(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, 0);
    zh_session_add_credits(&s, INT64_MAX - 5);
    make(ZH_ZHTTP_CREDIT, "app1", 0);
    with_credits(INT64_MAX);
    assert_int_equal(ZH_SV_OK, feed(&s, 1));
    assert_int_equal(INT64_MAX, s.send_credits);
    make(ZH_ZHTTP_CREDIT, "app1", 1);
    with_credits(INT64_MAX);
    assert_int_equal(ZH_SV_OK, feed(&s, 2));
    assert_int_equal(INT64_MAX, s.send_credits);
    /* Spending from a clamped allowance still works. */
    assert_true(zh_session_spend(&s, 10));
    assert_int_equal(INT64_MAX - 10, s.send_credits);
    zh_session_add_credits(&s, 1000);
    assert_int_equal(INT64_MAX, s.send_credits);
}

static void spend_takes_bytes_and_refuses_overdraft(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    assert_true(zh_session_spend(&s, 0));
    assert_false(zh_session_spend(&s, 1));
    zh_session_add_credits(&s, 100);
    assert_true(zh_session_spend(&s, 60));
    assert_int_equal(40, s.send_credits);
    /* Refusal takes nothing. */
    assert_false(zh_session_spend(&s, 41));
    assert_int_equal(40, s.send_credits);
    assert_true(zh_session_spend(&s, 40));
    assert_int_equal(0, s.send_credits);
    assert_false(zh_session_spend(&s, 1));
}

static void spend_of_huge_amount_is_refused(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    zh_session_add_credits(&s, INT64_MAX);
    assert_false(zh_session_spend(&s, UINT64_MAX));
    assert_false(zh_session_spend(&s, (uint64_t)INT64_MAX + 1));
    assert_int_equal(INT64_MAX, s.send_credits);
    assert_true(zh_session_spend(&s, (uint64_t)INT64_MAX));
    assert_int_equal(0, s.send_credits);
}

/* ---- keep-alive and expiry ---- */

static void keepalive_due_after_last_send(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, 1000);
    assert_int_equal(31000, zh_session_keepalive_at(&s));
    assert_false(zh_session_keepalive_due(&s, 30999));
    assert_true(zh_session_keepalive_due(&s, 31000));
    (void)zh_session_take_seq(&s, 20000);
    assert_int_equal(50000, zh_session_keepalive_at(&s));
    assert_false(zh_session_keepalive_due(&s, 31000));
    assert_true(zh_session_keepalive_due(&s, 50001));
}

static void server_role_keepalive_interval(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    assert_int_equal(45000, zh_session_keepalive_at(&s));
}

static void receiving_does_not_postpone_keepalive(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, 0);
    make(ZH_ZHTTP_DATA, "app1", 0);
    assert_int_equal(ZH_SV_OK, feed(&s, 29000));
    assert_int_equal(30000, zh_session_keepalive_at(&s));
}

static void expiry_after_last_receive(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 500);
    assert_int_equal(60500, zh_session_expires_at(&s));
    assert_false(zh_session_expired(&s, 60499));
    assert_true(zh_session_expired(&s, 60500));
    make(ZH_ZHTTP_KEEP_ALIVE, "h1", 0);
    assert_int_equal(ZH_SV_OK, feed(&s, 40000));
    assert_int_equal(40000, s.last_in_ms);
    assert_int_equal(100000, zh_session_expires_at(&s));
    assert_false(zh_session_expired(&s, 99999));
    assert_true(zh_session_expired(&s, 100000));
}

static void sending_does_not_postpone_expiry(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, 0);
    (void)zh_session_take_seq(&s, 59000);
    assert_int_equal(60000, zh_session_expires_at(&s));
    assert_true(zh_session_expired(&s, 60000));
}

static void rejected_packet_does_not_refresh_expiry(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, 0);
    make(ZH_ZHTTP_KEEP_ALIVE, "app1", 5);
    assert_int_equal(ZH_SV_SEQ_ERROR, feed(&s, 30000));
    assert_int_equal(0, s.last_in_ms);
}

static void closed_session_has_no_timers(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, 0);
    zh_session_close(&s);
    assert_int_equal(UINT64_MAX, zh_session_keepalive_at(&s));
    assert_int_equal(UINT64_MAX, zh_session_expires_at(&s));
    assert_false(zh_session_keepalive_due(&s, UINT64_MAX));
    assert_false(zh_session_expired(&s, UINT64_MAX));
}

static void timer_sums_saturate(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, UINT64_MAX - 10);
    assert_int_equal(UINT64_MAX, zh_session_keepalive_at(&s));
    assert_int_equal(UINT64_MAX, zh_session_expires_at(&s));
}

static void custom_short_timers(void **state)
{
    (void)state;
    struct zh_session s;
    struct zh_session_params p = {.keepalive_ms = 5, .expiry_ms = 12};
    zh_session_init(&s, ZH_ROLE_SERVER, &p, 100);
    assert_true(zh_session_keepalive_due(&s, 105));
    assert_false(zh_session_expired(&s, 111));
    assert_true(zh_session_expired(&s, 112));
}

/* ---- handoff ---- */

static void handoff_start_verdict_and_pause(void **state)
{
    (void)state;
    for (int role = 0; role < 2; role++) {
        struct zh_session s;
        new_session(&s, (enum zh_role)role, 0);
        zh_session_set_peer(&s, (const uint8_t *)"old", 3);
        make(ZH_ZHTTP_HANDOFF_START, "old", 0);
        assert_int_equal(ZH_SV_HANDOFF_START, feed(&s, 10));
        assert_int_equal(1, s.in_seq);
        /* The session stays active until the caller has answered handoff-proceed. */
        assert_int_equal(ZH_SESS_ACTIVE, s.state);
        assert_int_equal(0, zh_session_take_seq(&s, 11));
        zh_session_pause(&s);
        assert_int_equal(ZH_SESS_PAUSED, s.state);
        /* Paused: no keep-alives, but the peer can still go silent for good. */
        assert_int_equal(UINT64_MAX, zh_session_keepalive_at(&s));
        assert_false(zh_session_keepalive_due(&s, 1000000));
        assert_int_equal(60010, zh_session_expires_at(&s));
        assert_true(zh_session_expired(&s, 60010));
    }
}

static void packet_while_paused_resumes_with_new_address(void **state)
{
    (void)state;
    for (int role = 0; role < 2; role++) {
        struct zh_session s;
        new_session(&s, (enum zh_role)role, 0);
        zh_session_set_peer(&s, (const uint8_t *)"old-owner", 9);
        zh_session_add_credits(&s, 300);
        make(ZH_ZHTTP_HANDOFF_START, "old-owner", 0);
        assert_int_equal(ZH_SV_HANDOFF_START, feed(&s, 1));
        zh_session_pause(&s);

        /* Seq and credits continue under the new owner. */
        make(ZH_ZHTTP_CREDIT, "new-owner", 1);
        with_credits(20);
        assert_int_equal(ZH_SV_RESUMED, feed(&s, 2));
        assert_int_equal(ZH_SESS_ACTIVE, s.state);
        assert_string_equal("new-owner", s.peer);
        assert_int_equal(9, s.peer_len);
        assert_int_equal(320, s.send_credits);
        assert_int_equal(2, s.in_seq);
        assert_int_equal(2, s.last_in_ms);
        assert_int_equal(s.last_out_ms + s.params.keepalive_ms, zh_session_keepalive_at(&s));

        make(ZH_ZHTTP_DATA, "new-owner", 2);
        assert_int_equal(ZH_SV_OK, feed(&s, 3));
    }
}

static void resume_without_from_keeps_address(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    zh_session_set_peer(&s, (const uint8_t *)"h1", 2);
    zh_session_pause(&s);
    make(ZH_ZHTTP_KEEP_ALIVE, NULL, -1);
    assert_int_equal(ZH_SV_RESUMED, feed(&s, 1));
    assert_string_equal("h1", s.peer);
}

static void resume_with_bad_seq_is_seq_error(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    zh_session_set_peer(&s, (const uint8_t *)"h1", 2);
    zh_session_pause(&s);
    make(ZH_ZHTTP_DATA, "h2", 4);
    assert_int_equal(ZH_SV_SEQ_ERROR, feed(&s, 1));
    assert_int_equal(ZH_SESS_CLOSED, s.state);
    assert_string_equal("h1", s.peer);
}

static void cancel_while_paused_is_terminal(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, 0);
    zh_session_pause(&s);
    make(ZH_ZHTTP_CANCEL, "new", 9);
    assert_int_equal(ZH_SV_TERMINAL, feed(&s, 1));
    assert_int_equal(ZH_SESS_CLOSED, s.state);
}

static void handoff_start_while_paused_resumes_and_asks_again(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    zh_session_set_peer(&s, (const uint8_t *)"a", 1);
    zh_session_pause(&s);
    make(ZH_ZHTTP_HANDOFF_START, "b", 0);
    assert_int_equal(ZH_SV_HANDOFF_START, feed(&s, 1));
    assert_int_equal(ZH_SESS_ACTIVE, s.state);
    assert_string_equal("b", s.peer);
}

static void pause_does_not_reopen_closed_session(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    zh_session_close(&s);
    zh_session_pause(&s);
    assert_int_equal(ZH_SESS_CLOSED, s.state);
}

/* ---- peer address per role ---- */

static void server_role_learns_handler_address_from_packets(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    make(ZH_ZHTTP_DATA, "handler-a", 0);
    assert_int_equal(ZH_SV_OK, feed(&s, 1));
    assert_string_equal("handler-a", s.peer);
    make(ZH_ZHTTP_DATA, "handler-b", 1);
    assert_int_equal(ZH_SV_OK, feed(&s, 2));
    assert_string_equal("handler-b", s.peer);
    /* No `from`: address unchanged. */
    make(ZH_ZHTTP_DATA, NULL, 2);
    assert_int_equal(ZH_SV_OK, feed(&s, 3));
    assert_string_equal("handler-b", s.peer);
}

static void client_role_peer_is_fixed_by_key(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, 0);
    assert_true(zh_session_set_peer(&s, (const uint8_t *)"app1", 4));
    make(ZH_ZHTTP_DATA, "intruder", 0);
    assert_int_equal(ZH_SV_OK, feed(&s, 1));
    assert_string_equal("app1", s.peer);
    assert_int_equal(4, s.peer_len);
}

static void bad_from_keeps_old_address(void **state)
{
    (void)state;
    char longname[ZH_ZHTTP_MAX_ID_LEN + 2];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    zh_session_set_peer(&s, (const uint8_t *)"h1", 2);
    make(ZH_ZHTTP_DATA, longname, 0);
    assert_int_equal(ZH_SV_OK, feed(&s, 1));
    assert_string_equal("h1", s.peer);
    make(ZH_ZHTTP_DATA, "", 1);
    assert_int_equal(ZH_SV_OK, feed(&s, 2));
    assert_string_equal("h1", s.peer);
}

static void set_peer_bounds(void **state)
{
    (void)state;
    char name[ZH_ZHTTP_MAX_ID_LEN + 1];
    memset(name, 'n', sizeof(name));
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    assert_false(zh_session_set_peer(&s, (const uint8_t *)name, 0));
    assert_false(zh_session_set_peer(&s, NULL, 3));
    assert_false(zh_session_set_peer(&s, (const uint8_t *)name, ZH_ZHTTP_MAX_ID_LEN + 1));
    assert_int_equal(0, s.peer_len);
    assert_true(zh_session_set_peer(&s, (const uint8_t *)name, ZH_ZHTTP_MAX_ID_LEN));
    assert_int_equal(ZH_ZHTTP_MAX_ID_LEN, s.peer_len);
    assert_int_equal(ZH_ZHTTP_MAX_ID_LEN, strlen(s.peer));
    /* A shorter address replaces a longer one completely. */
    assert_true(zh_session_set_peer(&s, (const uint8_t *)"ab", 2));
    assert_string_equal("ab", s.peer);
}

static void ext_multi_updates_peer_multi(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_CLIENT, 0);
    make(ZH_ZHTTP_DATA, "app1", 0);
    pkt.has |= ZH_ZF_EXT_MULTI;
    pkt.ext_multi = true;
    assert_int_equal(ZH_SV_OK, feed(&s, 1));
    assert_true(s.peer_multi);
    /* Absent ext.multi leaves it alone. */
    make(ZH_ZHTTP_KEEP_ALIVE, "app1", 1);
    assert_int_equal(ZH_SV_OK, feed(&s, 2));
    assert_true(s.peer_multi);
    make(ZH_ZHTTP_KEEP_ALIVE, "app1", 2);
    pkt.has |= ZH_ZF_EXT_MULTI;
    pkt.ext_multi = false;
    assert_int_equal(ZH_SV_OK, feed(&s, 3));
    assert_false(s.peer_multi);
}

static void multi_id_entry_seq_is_checked_per_session(void **state)
{
    (void)state;
    struct zh_session a, b;
    new_session(&a, ZH_ROLE_SERVER, 0);
    new_session(&b, ZH_ROLE_SERVER, 0);
    memset(&pkt, 0, sizeof(pkt));
    pkt.type = ZH_ZHTTP_KEEP_ALIVE;
    pkt.from = span("h1");
    pkt.has = ZH_ZF_MULTI_ID;
    pkt.n_ids = 2;
    pkt.ids[0].id = span("0-0-1");
    pkt.ids[0].seq = 0;
    pkt.ids[0].has_seq = true;
    pkt.ids[1].id = span("0-0-2");
    pkt.ids[1].seq = 1;
    pkt.ids[1].has_seq = true;
    assert_int_equal(ZH_SV_OK, zh_session_on_packet(&a, &pkt, &pkt.ids[0], 1));
    assert_int_equal(ZH_SV_SEQ_ERROR, zh_session_on_packet(&b, &pkt, &pkt.ids[1], 1));
    assert_int_equal(1, a.in_seq);
}

/* ---- unknown sessions ---- */

static void unknown_session_client_role_cancels(void **state)
{
    (void)state;
    static const enum zh_zhttp_type types[] = {ZH_ZHTTP_DATA,
                                               ZH_ZHTTP_CREDIT,
                                               ZH_ZHTTP_KEEP_ALIVE,
                                               ZH_ZHTTP_HANDOFF_START,
                                               ZH_ZHTTP_HANDOFF_PROCEED,
                                               ZH_ZHTTP_CLOSE,
                                               ZH_ZHTTP_PING,
                                               ZH_ZHTTP_PONG};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        make(types[i], "app1", 3);
        assert_int_equal(ZH_UNKNOWN_CANCEL, zh_session_unknown_action(ZH_ROLE_CLIENT, &pkt));
    }
}

static void unknown_session_client_role_never_answers_error_or_cancel(void **state)
{
    (void)state;
    make(ZH_ZHTTP_ERROR, "app1", 3);
    assert_int_equal(ZH_UNKNOWN_DROP, zh_session_unknown_action(ZH_ROLE_CLIENT, &pkt));
    make(ZH_ZHTTP_CANCEL, "app1", 3);
    assert_int_equal(ZH_UNKNOWN_DROP, zh_session_unknown_action(ZH_ROLE_CLIENT, &pkt));
}

static void unknown_session_server_role_drops(void **state)
{
    (void)state;
    for (int t = ZH_ZHTTP_DATA; t <= ZH_ZHTTP_PONG; t++) {
        make((enum zh_zhttp_type)t, "h1", 0);
        assert_int_equal(ZH_UNKNOWN_DROP, zh_session_unknown_action(ZH_ROLE_SERVER, &pkt));
    }
}

/* ---- a whole exchange ---- */

static void server_role_exchange_end_to_end(void **state)
{
    (void)state;
    struct zh_session s;
    new_session(&s, ZH_ROLE_SERVER, 0);
    /* zhttpd sends the request (seq 0) with credits 8192. */
    assert_int_equal(0, zh_session_take_seq(&s, 0));
    /* The handler answers with its address, a head and 100 credits for the request body. */
    make(ZH_ZHTTP_DATA, "h1", 0);
    pkt.has |= ZH_ZF_CODE | ZH_ZF_MORE | ZH_ZF_CREDITS;
    pkt.code = 200;
    pkt.more = true;
    pkt.credits = 100;
    assert_int_equal(ZH_SV_OK, feed(&s, 5));
    assert_string_equal("h1", s.peer);
    assert_true(zh_session_spend(&s, 100));
    assert_false(zh_session_spend(&s, 1));
    assert_int_equal(1, zh_session_take_seq(&s, 6));
    /* The handler grants more while idle; keep-alives keep the session up. */
    make(ZH_ZHTTP_CREDIT, "h1", 1);
    with_credits(50);
    assert_int_equal(ZH_SV_OK, feed(&s, 40000));
    assert_int_equal(50, s.send_credits);
    assert_true(zh_session_keepalive_due(&s, 45006));
    assert_int_equal(2, zh_session_take_seq(&s, 45006));
    assert_false(zh_session_expired(&s, 99999));
    assert_true(zh_session_expired(&s, 100000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(default_params_per_role),
        cmocka_unit_test(init_starts_active_with_zero_counters),
        cmocka_unit_test(init_uses_given_params),
        cmocka_unit_test(state_names_for_logging),
        cmocka_unit_test(in_order_seq_is_ok_in_both_roles),
        cmocka_unit_test(absent_seq_is_not_checked_but_advances),
        cmocka_unit_test(absent_seq_then_stale_seq_is_an_error),
        cmocka_unit_test(null_id_means_no_seq),
        cmocka_unit_test(gap_in_seq_closes_session),
        cmocka_unit_test(repeated_seq_is_an_error),
        cmocka_unit_test(negative_seq_is_an_error),
        cmocka_unit_test(huge_seq_is_an_error_not_an_overflow),
        cmocka_unit_test(in_seq_saturates_at_int64_max),
        cmocka_unit_test(cancel_accepted_out_of_sequence),
        cmocka_unit_test(error_accepted_out_of_sequence),
        cmocka_unit_test(terminal_without_seq),
        cmocka_unit_test(terminal_packet_credits_are_ignored),
        cmocka_unit_test(packets_after_close_are_closed),
        cmocka_unit_test(local_close_then_packet_is_closed),
        cmocka_unit_test(seq_error_then_packet_is_closed),
        cmocka_unit_test(take_seq_counts_from_zero_and_notes_send_time),
        cmocka_unit_test(take_seq_saturates),
        cmocka_unit_test(credits_accumulate_from_every_packet_type_that_carries_them),
        cmocka_unit_test(packet_without_credits_field_adds_nothing),
        cmocka_unit_test(negative_credits_are_ignored),
        cmocka_unit_test(huge_credits_clamp_at_int64_max),
        cmocka_unit_test(spend_takes_bytes_and_refuses_overdraft),
        cmocka_unit_test(spend_of_huge_amount_is_refused),
        cmocka_unit_test(keepalive_due_after_last_send),
        cmocka_unit_test(server_role_keepalive_interval),
        cmocka_unit_test(receiving_does_not_postpone_keepalive),
        cmocka_unit_test(expiry_after_last_receive),
        cmocka_unit_test(sending_does_not_postpone_expiry),
        cmocka_unit_test(rejected_packet_does_not_refresh_expiry),
        cmocka_unit_test(closed_session_has_no_timers),
        cmocka_unit_test(timer_sums_saturate),
        cmocka_unit_test(custom_short_timers),
        cmocka_unit_test(handoff_start_verdict_and_pause),
        cmocka_unit_test(packet_while_paused_resumes_with_new_address),
        cmocka_unit_test(resume_without_from_keeps_address),
        cmocka_unit_test(resume_with_bad_seq_is_seq_error),
        cmocka_unit_test(cancel_while_paused_is_terminal),
        cmocka_unit_test(handoff_start_while_paused_resumes_and_asks_again),
        cmocka_unit_test(pause_does_not_reopen_closed_session),
        cmocka_unit_test(server_role_learns_handler_address_from_packets),
        cmocka_unit_test(client_role_peer_is_fixed_by_key),
        cmocka_unit_test(bad_from_keeps_old_address),
        cmocka_unit_test(set_peer_bounds),
        cmocka_unit_test(ext_multi_updates_peer_multi),
        cmocka_unit_test(multi_id_entry_seq_is_checked_per_session),
        cmocka_unit_test(unknown_session_client_role_cancels),
        cmocka_unit_test(unknown_session_client_role_never_answers_error_or_cancel),
        cmocka_unit_test(unknown_session_server_role_drops),
        cmocka_unit_test(server_role_exchange_end_to_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
