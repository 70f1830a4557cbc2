/* A bounded single-producer single-consumer channel of pointers, woken by an eventfd.
 *
 * One thread pushes, one thread pops. The consumer polls zh_chan_fd() for readability (epoll or
 * zmq_poll), then calls zh_chan_drain_signal() and pops until empty. The producer learns "full"
 * from zh_chan_push() returning ZH_E_FULL and must hold on to the item; it may ask to be woken when
 * space frees (zh_chan_want_space()), which makes the consumer signal space_fd after popping. */
#ifndef ZH_SHARED_RT_CHAN_H
#define ZH_SHARED_RT_CHAN_H

#include <stdbool.h>
#include <stddef.h>

struct zh_chan;

/* Create a channel holding at most `capacity` items (rounded up to a power of two, at least 1).
 * Never returns NULL: failing to create the eventfds (start-up only) aborts with a message. */
struct zh_chan *zh_chan_new(size_t capacity);

/* Free the channel. Items still queued are not freed: drain first. */
void zh_chan_free(struct zh_chan *c);

/* Producer: enqueue item (non-NULL). Returns 0, or ZH_E_FULL. Signals the consumer's eventfd when
 * the channel goes from empty to non-empty. */
int zh_chan_push(struct zh_chan *c, void *item);

/* Consumer: dequeue one item, or NULL when empty. */
void *zh_chan_pop(struct zh_chan *c);

/* Consumer: fd that is readable while items may be waiting. */
int zh_chan_fd(const struct zh_chan *c);

/* Consumer: reset the readable state; call before popping so no wake-up is lost. */
void zh_chan_drain_signal(struct zh_chan *c);

/* Producer: fd that becomes readable when space frees after zh_chan_want_space(). */
int zh_chan_space_fd(const struct zh_chan *c);

/* Producer: ask for a wake-up on space_fd once the consumer pops something. */
void zh_chan_want_space(struct zh_chan *c);

/* Producer: reset space_fd's readable state. */
void zh_chan_drain_space_signal(struct zh_chan *c);

/* Approximate number of queued items (exact from either thread when the other is idle). */
size_t zh_chan_size(const struct zh_chan *c);

/* True when the next push would fail. */
bool zh_chan_full(const struct zh_chan *c);

#endif
