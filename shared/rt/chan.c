#include "shared/rt/chan.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "shared/proto/err.h"
#include "shared/proto/mem.h"

/* A ring of 2^k slots indexed by two free-running counters: the producer owns `tail`, the consumer
 * owns `head`, and tail - head is the number of queued items. Items are published with release
 * stores of the counters and read after acquire loads, so the slots themselves are plain memory.
 *
 * Wake-ups. The producer signals `fd` when its push made the ring non-empty from the consumer's
 * point of view: after storing the new tail it reads head again, and if head equals the old tail
 * the consumer had taken everything before this item and may be about to sleep. This is a
 * store-then-load on each side (producer: store tail, load head; consumer: store head, load tail),
 * which acquire/release alone does not order, so those four accesses are seq_cst: in their single
 * total order either the consumer's emptiness check sees the new tail (it pops the item) or the
 * producer's re-read sees the consumer's final head (it signals). The same pairing protects
 * `want_space` (producer: store flag, load head; consumer: store head, load flag).
 *
 * The consumer resets fd before popping (zh_chan_drain_signal), so a signal that arrives after the
 * reset keeps fd readable; at worst that is one spurious wake-up, never a lost one. */

#define CACHELINE 64

struct zh_chan {
    /* consumer side */
    atomic_size_t head;
    char pad0[CACHELINE - sizeof(atomic_size_t)];
    /* producer side */
    atomic_size_t tail;
    char pad1[CACHELINE - sizeof(atomic_size_t)];
    atomic_bool want_space;
    char pad2[CACHELINE - sizeof(atomic_bool)];
    /* read-only after creation */
    size_t mask;
    int fd;
    int space_fd;
    void **items;
};

static void signal_fd(int fd)
{
    uint64_t one = 1;
    ssize_t r;
    do {
        r = write(fd, &one, sizeof(one));
    } while (r < 0 && errno == EINTR);
    /* EAGAIN means the counter is at its maximum: the fd is readable anyway. */
}

static void drain_fd(int fd)
{
    uint64_t v;
    ssize_t r;
    do {
        r = read(fd, &v, sizeof(v));
    } while (r < 0 && errno == EINTR);
    /* EAGAIN: nothing was pending. */
}

struct zh_chan *zh_chan_new(size_t capacity)
{
    size_t cap = 1;
    assert(capacity <= SIZE_MAX / 2 / sizeof(void *));
    while (cap < capacity)
        cap <<= 1;

    /* Channels are made at start-up only; running out of fds there is fatal, like OOM. */
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int space_fd = fd < 0 ? -1 : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (space_fd < 0) {
        fprintf(stderr, "zhttpd: cannot create a channel eventfd: %s\n", strerror(errno));
        abort();
    }

    struct zh_chan *c = zh_malloc(sizeof(*c));
    atomic_init(&c->head, 0);
    atomic_init(&c->tail, 0);
    atomic_init(&c->want_space, false);
    c->mask = cap - 1;
    c->fd = fd;
    c->space_fd = space_fd;
    c->items = zh_calloc(cap, sizeof(void *));
    return c;
}

void zh_chan_free(struct zh_chan *c)
{
    if (!c)
        return;
    close(c->fd);
    close(c->space_fd);
    zh_free(c->items);
    zh_free(c);
}

int zh_chan_push(struct zh_chan *c, void *item)
{
    assert(item);
    size_t tail = atomic_load_explicit(&c->tail, memory_order_relaxed);
    size_t head = atomic_load_explicit(&c->head, memory_order_acquire);
    if (tail - head > c->mask)
        return ZH_E_FULL;
    c->items[tail & c->mask] = item;
    atomic_store_explicit(&c->tail, tail + 1, memory_order_seq_cst);
    if (atomic_load_explicit(&c->head, memory_order_seq_cst) == tail)
        signal_fd(c->fd);
    return 0;
}

void *zh_chan_pop(struct zh_chan *c)
{
    size_t head = atomic_load_explicit(&c->head, memory_order_relaxed);
    size_t tail = atomic_load_explicit(&c->tail, memory_order_seq_cst);
    if (head == tail)
        return NULL;
    void *item = c->items[head & c->mask];
    atomic_store_explicit(&c->head, head + 1, memory_order_seq_cst);
    if (atomic_load_explicit(&c->want_space, memory_order_seq_cst) &&
        atomic_exchange_explicit(&c->want_space, false, memory_order_seq_cst))
        signal_fd(c->space_fd);
    return item;
}

int zh_chan_fd(const struct zh_chan *c)
{
    return c->fd;
}

void zh_chan_drain_signal(struct zh_chan *c)
{
    drain_fd(c->fd);
}

int zh_chan_space_fd(const struct zh_chan *c)
{
    return c->space_fd;
}

void zh_chan_want_space(struct zh_chan *c)
{
    atomic_store_explicit(&c->want_space, true, memory_order_seq_cst);
    /* The consumer may have popped between our failed push and the flag: then nobody else will
     * signal, so do it ourselves (the flag is cleared by whichever side signals first). */
    size_t tail = atomic_load_explicit(&c->tail, memory_order_relaxed);
    size_t head = atomic_load_explicit(&c->head, memory_order_seq_cst);
    if (tail - head <= c->mask &&
        atomic_exchange_explicit(&c->want_space, false, memory_order_seq_cst))
        signal_fd(c->space_fd);
}

void zh_chan_drain_space_signal(struct zh_chan *c)
{
    drain_fd(c->space_fd);
}

size_t zh_chan_size(const struct zh_chan *c)
{
    /* Read head first: tail only grows, so tail - head cannot underflow. */
    size_t head = atomic_load_explicit(&c->head, memory_order_acquire);
    size_t tail = atomic_load_explicit(&c->tail, memory_order_acquire);
    size_t n = tail - head;
    return n > c->mask + 1 ? c->mask + 1 : n;
}

bool zh_chan_full(const struct zh_chan *c)
{
    size_t tail = atomic_load_explicit(&c->tail, memory_order_relaxed);
    size_t head = atomic_load_explicit(&c->head, memory_order_acquire);
    return tail - head > c->mask;
}
