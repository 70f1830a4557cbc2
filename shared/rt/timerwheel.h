/* A hierarchical timing wheel: O(1) insert and cancel, amortised O(1) expiry, for a million timers.
 *
 * Time is in milliseconds (tick = 1 ms). Four levels of 64 slots cover 2^24 ms (~4.6 h); a timer
 * further out is parked in the top level and re-cascaded until it is due. struct zh_timer is
 * embedded in its owner (use the API, the members are private). The wheel is not thread-safe: one
 * per worker loop. */
#ifndef ZH_SHARED_RT_TIMERWHEEL_H
#define ZH_SHARED_RT_TIMERWHEEL_H

#include <stdbool.h>
#include <stdint.h>

struct zh_timer;
typedef void zh_timer_cb(struct zh_timer *t, void *data);

struct zh_timer {
    /* private */
    struct zh_timer *_next, **_pprev;
    uint64_t _expires;
    zh_timer_cb *_cb;
    void *_data;
};

#define ZH_WHEEL_LEVELS 4
#define ZH_WHEEL_SLOTS  64

struct zh_wheel {
    /* private */
    uint64_t _now;
    uint64_t _count;
    struct zh_timer *_slots[ZH_WHEEL_LEVELS][ZH_WHEEL_SLOTS];
};

/* Start an empty wheel whose current time is now. */
void zh_wheel_init(struct zh_wheel *w, uint64_t now);

/* Initialise a timer with its callback (does not arm it). */
void zh_timer_init(struct zh_timer *t, zh_timer_cb *cb, void *data);

/* Arm t to fire at absolute time `expires` (a time <= now fires on the next advance). Re-arming an
 * armed timer moves it. */
void zh_wheel_add(struct zh_wheel *w, struct zh_timer *t, uint64_t expires);

/* Disarm t; a no-op if it is not armed. */
void zh_wheel_del(struct zh_wheel *w, struct zh_timer *t);

/* True while t is armed. */
bool zh_timer_armed(const struct zh_timer *t);

/* Number of armed timers. */
uint64_t zh_wheel_count(const struct zh_wheel *w);

/* Milliseconds from the wheel's current time until the earliest timer may fire (0 if one is already
 * due), or -1 if no timer is armed. It may be earlier than the true expiry (a cascade point) but
 * never later. */
int64_t zh_wheel_timeout(const struct zh_wheel *w);

/* Move time forward to now and fire every timer whose time has come, earliest first. Callbacks may
 * add and delete timers, including re-arming themselves. Returns the number fired. */
uint64_t zh_wheel_advance(struct zh_wheel *w, uint64_t now);

#endif
