/* Request slots of the client role, shared by every worker: Zurl's max_open_requests is one limit
 * for the whole process, not a share per worker.
 *
 * Taking and giving back a slot are lock-free (one atomic counter). A worker whose requests wait
 * for a slot says so (zh_slots_set_waiting); a slot given back on any worker wakes every waiting
 * worker through its eventfd, and each one tries again. No wake-up is lost: a worker announces
 * that it waits *before* its last try, and a slot is counted free *before* the waiting flags are
 * read (both sequentially consistent), so either that try succeeds or the giver sees the flag. */
#ifndef ZH_CLIENT_SLOTS_H
#define ZH_CLIENT_SLOTS_H

#include <stdbool.h>

struct zh_slots;

/* limit slots (> 0) for workers workers. Returns NULL when an eventfd cannot be made. */
struct zh_slots *zh_slots_new(unsigned limit, unsigned workers);
void zh_slots_free(struct zh_slots *s);

/* Take a slot (any thread). False when all are taken. */
bool zh_slots_take(struct zh_slots *s);

/* Give a slot back (any thread), waking the workers that wait for one. */
void zh_slots_put(struct zh_slots *s);

/* Worker w has requests waiting (or no longer has). */
void zh_slots_set_waiting(struct zh_slots *s, unsigned w, bool waiting);

/* The eventfd worker w watches for reading; zh_slots_drain() empties it. */
int zh_slots_fd(const struct zh_slots *s, unsigned w);
void zh_slots_drain(struct zh_slots *s, unsigned w);

/* Slots taken now, and the limit. */
unsigned zh_slots_used(const struct zh_slots *s);
unsigned zh_slots_limit(const struct zh_slots *s);

#endif
