#include "shared/rt/timerwheel.h"

#include <assert.h>
#include <stddef.h>

/* Layout (see docs/internals/timerwheel.md). Level L has 64 slots of 64^L ms each. A timer is
 * placed by the highest 6-bit group in which its expiry differs from the wheel's time `now`:
 *
 *   level 0, slot e & 63          if e and now share the same 64 ms block
 *   level 1, slot (e >> 6) & 63   if they share the same 4096 ms block
 *   level 2, slot (e >> 12) & 63  if they share the same 2^18 ms block
 *   level 3, slot (e >> 18) & 63  if they share the same 2^24 ms block
 *   level 3, slot 0               otherwise ("parked": placed again when time enters a new
 *                                2^24 ms block)
 *
 * So in levels 1..3 only slots above the current index ((now >> 6L) & 63) are in use, and level 3
 * slot 0 is free for parking: it is cascaded exactly when time crosses into a new 2^24 ms block,
 * which is the earliest any parked timer can be due. Level 0 holds timers due in the current
 * 64 ms block; slot (now & 63) also collects timers added with an expiry at or before now, which
 * fire on the next advance. When time reaches the start of a level-L slot's span, that slot is
 * "cascaded": its timers are placed again relative to the new time, landing in lower levels. */

#define SLOT_BITS 6
#define SLOT_MASK ((uint64_t)ZH_WHEEL_SLOTS - 1)
#define PARK_BITS (SLOT_BITS * ZH_WHEEL_LEVELS) /* 24: span of the whole wheel */

static void link_timer(struct zh_timer **head, struct zh_timer *t)
{
    t->_next = *head;
    if (t->_next)
        t->_next->_pprev = &t->_next;
    t->_pprev = head;
    *head = t;
}

static void unlink_timer(struct zh_timer *t)
{
    *t->_pprev = t->_next;
    if (t->_next)
        t->_next->_pprev = t->_pprev;
    t->_next = NULL;
    t->_pprev = NULL;
}

/* Put an unlinked timer into the slot its expiry belongs to, relative to w->_now. */
static void place(struct zh_wheel *w, struct zh_timer *t)
{
    uint64_t now = w->_now;
    uint64_t e = t->_expires > now ? t->_expires : now;
    uint64_t diff = e ^ now;
    for (int level = 0; level < ZH_WHEEL_LEVELS; level++) {
        int shift = SLOT_BITS * level;
        if ((diff >> (shift + SLOT_BITS)) == 0) {
            link_timer(&w->_slots[level][(e >> shift) & SLOT_MASK], t);
            return;
        }
    }
    link_timer(&w->_slots[ZH_WHEEL_LEVELS - 1][0], t);
}

void zh_wheel_init(struct zh_wheel *w, uint64_t now)
{
    w->_now = now;
    w->_count = 0;
    for (int l = 0; l < ZH_WHEEL_LEVELS; l++) {
        for (int s = 0; s < ZH_WHEEL_SLOTS; s++) {
            w->_slots[l][s] = NULL;
        }
    }
}

void zh_timer_init(struct zh_timer *t, zh_timer_cb *cb, void *data)
{
    t->_next = NULL;
    t->_pprev = NULL;
    t->_expires = 0;
    t->_cb = cb;
    t->_data = data;
}

bool zh_timer_armed(const struct zh_timer *t)
{
    return t->_pprev != NULL;
}

uint64_t zh_wheel_count(const struct zh_wheel *w)
{
    return w->_count;
}

void zh_wheel_add(struct zh_wheel *w, struct zh_timer *t, uint64_t expires)
{
    assert(t->_cb);
    if (zh_timer_armed(t))
        unlink_timer(t);
    else
        w->_count++;
    t->_expires = expires;
    place(w, t);
}

void zh_wheel_del(struct zh_wheel *w, struct zh_timer *t)
{
    if (!zh_timer_armed(t))
        return;
    unlink_timer(t);
    assert(w->_count > 0);
    w->_count--;
}

/* Start of the level-`level` slot span that contains t, i.e. t with its low 6*level bits clear. */
static uint64_t span_start(uint64_t t, int level)
{
    int shift = SLOT_BITS * level;
    return shift >= 64 ? 0 : t & ~((UINT64_C(1) << shift) - 1);
}

/* The next 2^24 ms boundary after now, or UINT64_MAX if there is none. */
static uint64_t next_park_boundary(uint64_t now)
{
    uint64_t start = span_start(now, ZH_WHEEL_LEVELS);
    uint64_t span = UINT64_C(1) << PARK_BITS;
    return start > UINT64_MAX - span ? UINT64_MAX : start + span;
}

/* The earliest time >= w->_now at which something happens: a level-0 slot is due, a higher level
 * slot must be cascaded, or parked timers must be re-placed (*parked is then set). UINT64_MAX if
 * the wheel is empty. Lower levels always come first (a level-L slot above the current index
 * starts after the end of the current level-(L-1) block), so the first hit wins. */
static uint64_t next_event(const struct zh_wheel *w, bool *parked)
{
    uint64_t now = w->_now;
    *parked = false;
    for (int level = 0; level < ZH_WHEEL_LEVELS; level++) {
        int shift = SLOT_BITS * level;
        uint64_t cur = (now >> shift) & SLOT_MASK;
        uint64_t base = span_start(now, level + 1);
        /* Level 0 includes the current slot (timers due now); higher levels only later ones. */
        for (uint64_t s = level == 0 ? cur : cur + 1; s < ZH_WHEEL_SLOTS; s++) {
            if (w->_slots[level][s])
                return base + (s << shift);
        }
    }
    if (w->_slots[ZH_WHEEL_LEVELS - 1][0]) {
        *parked = true;
        return next_park_boundary(now);
    }
    return UINT64_MAX;
}

/* When nothing but parked timers is left, the next interesting time is the start of the 2^24 ms
 * block holding the earliest of them; jumping straight there keeps a jump of days or years from
 * stepping through every block boundary in between. */
static uint64_t first_parked_block(const struct zh_wheel *w)
{
    uint64_t min = UINT64_MAX;
    for (const struct zh_timer *t = w->_slots[ZH_WHEEL_LEVELS - 1][0]; t; t = t->_next) {
        if (t->_expires < min)
            min = t->_expires;
    }
    return span_start(min, ZH_WHEEL_LEVELS);
}

int64_t zh_wheel_timeout(const struct zh_wheel *w)
{
    if (w->_count == 0)
        return -1;
    /* The wheel is not empty, so UINT64_MAX here is a real time, not "nothing". */
    bool parked;
    uint64_t at = next_event(w, &parked);
    uint64_t d = at - w->_now;
    return d > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)d;
}

/* Time has just reached `now` (w->_now == now). Re-place the timers of every slot whose span
 * starts here: level L when now is a multiple of 64^L, from the highest level down. Slot 0 of the
 * top level is the parking slot, cascaded at every 2^24 ms boundary. */
static void cascade(struct zh_wheel *w)
{
    uint64_t now = w->_now;
    for (int level = ZH_WHEEL_LEVELS - 1; level >= 1; level--) {
        int shift = SLOT_BITS * level;
        if (now & ((UINT64_C(1) << shift) - 1))
            continue;
        struct zh_timer *list = w->_slots[level][(now >> shift) & SLOT_MASK];
        w->_slots[level][(now >> shift) & SLOT_MASK] = NULL;
        while (list) {
            struct zh_timer *t = list;
            list = t->_next;
            t->_next = NULL;
            t->_pprev = NULL;
            place(w, t);
        }
    }
}

/* Stable merge sort of a NULL-terminated list by expiry (only _next is used here). */
static struct zh_timer *sort_by_expiry(struct zh_timer *list)
{
    if (!list || !list->_next)
        return list;
    struct zh_timer *slow = list, *fast = list->_next;
    while (fast && fast->_next) {
        slow = slow->_next;
        fast = fast->_next->_next;
    }
    struct zh_timer *b = slow->_next;
    slow->_next = NULL;
    struct zh_timer *a = sort_by_expiry(list);
    b = sort_by_expiry(b);
    struct zh_timer *head = NULL, **tail = &head;
    while (a && b) {
        if (b->_expires < a->_expires) {
            *tail = b;
            b = b->_next;
        } else {
            *tail = a;
            a = a->_next;
        }
        tail = &(*tail)->_next;
    }
    *tail = a ? a : b;
    return head;
}

/* Move the level-0 slot of w->_now into a private list, oldest insertion first and sorted by
 * expiry (every timer there is due; they differ only if some were added already overdue). The
 * list is doubly linked through _pprev like a slot, so callbacks can delete or re-arm its
 * members. */
static void take_due_slot(struct zh_wheel *w, struct zh_timer **out)
{
    struct zh_timer **slot = &w->_slots[0][w->_now & SLOT_MASK];
    struct zh_timer *list = NULL, *t = *slot;
    *slot = NULL;
    /* Slots push at the head: reversing restores insertion order. */
    while (t) {
        struct zh_timer *next = t->_next;
        t->_next = list;
        list = t;
        t = next;
    }
    for (t = list; t && t->_next; t = t->_next) {
        if (t->_next->_expires < t->_expires) {
            list = sort_by_expiry(list);
            break;
        }
    }
    *out = list;
    struct zh_timer **pp = out;
    for (t = list; t; t = t->_next) {
        t->_pprev = pp;
        pp = &t->_next;
    }
}

/* Fire every timer in the level-0 slot of w->_now. While callbacks run, the wheel's time is
 * `cb_now`: w->_now + 1 when the advance goes further (so a callback that re-arms at or before the
 * current time fires at the next millisecond of this advance, never in a loop at the same one),
 * or w->_now at the last millisecond (so it fires on the next advance). */
static uint64_t fire_due(struct zh_wheel *w, uint64_t cb_now)
{
    struct zh_timer *due;
    take_due_slot(w, &due);
    uint64_t now = w->_now;
    uint64_t fired = 0;
    w->_now = cb_now;
    while (due) {
        struct zh_timer *t = due;
        unlink_timer(t);
        w->_count--;
        fired++;
        t->_cb(t, t->_data);
    }
    w->_now = now;
    return fired;
}

uint64_t zh_wheel_advance(struct zh_wheel *w, uint64_t now)
{
    if (now < w->_now)
        now = w->_now;
    uint64_t fired = 0;
    /* Invariant at the top of the loop: every slot whose span starts at or before w->_now has
     * been cascaded, and the level-0 slot of w->_now holds exactly the timers due now. */
    for (;;) {
        uint64_t t = w->_now;
        if (t == now) {
            fired += fire_due(w, t);
            break;
        }
        fired += fire_due(w, t + 1);
        /* Callbacks placed new timers relative to t + 1; step there so the layout matches. */
        w->_now = t + 1;
        if ((w->_now & SLOT_MASK) == 0)
            cascade(w);
        /* Then jump over the stretch where nothing is due and nothing needs cascading. */
        bool parked;
        uint64_t next = next_event(w, &parked);
        if (parked) {
            uint64_t block = first_parked_block(w);
            next = block > next ? block : next;
        }
        assert(next >= w->_now);
        if (next > now) {
            w->_now = now;
            break;
        }
        if (next != w->_now) {
            w->_now = next;
            if ((next & SLOT_MASK) == 0)
                cascade(w);
        }
    }
    return fired;
}
