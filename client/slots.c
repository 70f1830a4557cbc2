#include "client/slots.h"

#include <stdatomic.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "shared/proto/mem.h"

struct wslot {
    atomic_bool waiting; /* the worker has requests waiting for a slot */
    int fd;              /* its eventfd */
};

struct zh_slots {
    atomic_uint used;
    unsigned limit;
    unsigned workers;
    struct wslot *w;
};

struct zh_slots *zh_slots_new(unsigned limit, unsigned workers)
{
    struct zh_slots *s = zh_calloc(1, sizeof(*s));
    atomic_init(&s->used, 0);
    s->limit = limit;
    s->workers = workers;
    s->w = zh_calloc(workers, sizeof(*s->w));
    for (unsigned w = 0; w < workers; w++)
        s->w[w].fd = -1;
    for (unsigned w = 0; w < workers; w++) {
        atomic_init(&s->w[w].waiting, false);
        s->w[w].fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (s->w[w].fd < 0) {
            zh_slots_free(s);
            return NULL;
        }
    }
    return s;
}

void zh_slots_free(struct zh_slots *s)
{
    if (!s)
        return;
    for (unsigned w = 0; w < s->workers; w++)
        if (s->w[w].fd >= 0)
            close(s->w[w].fd);
    zh_free(s->w);
    zh_free(s);
}

bool zh_slots_take(struct zh_slots *s)
{
    unsigned n = atomic_load(&s->used);
    do {
        if (n >= s->limit)
            return false;
    } while (!atomic_compare_exchange_weak(&s->used, &n, n + 1));
    return true;
}

void zh_slots_put(struct zh_slots *s)
{
    atomic_fetch_sub(&s->used, 1);
    for (unsigned w = 0; w < s->workers; w++) {
        if (atomic_load(&s->w[w].waiting)) {
            uint64_t one = 1;
            ssize_t r = write(s->w[w].fd, &one, sizeof(one));
            (void)r; /* EAGAIN: the counter is already non-zero, the worker will look */
        }
    }
}

void zh_slots_set_waiting(struct zh_slots *s, unsigned w, bool waiting)
{
    atomic_store(&s->w[w].waiting, waiting);
}

int zh_slots_fd(const struct zh_slots *s, unsigned w)
{
    return s->w[w].fd;
}

void zh_slots_drain(struct zh_slots *s, unsigned w)
{
    uint64_t v;
    ssize_t r = read(s->w[w].fd, &v, sizeof(v));
    (void)r;
}

unsigned zh_slots_used(const struct zh_slots *s)
{
    return atomic_load(&s->used);
}

unsigned zh_slots_limit(const struct zh_slots *s)
{
    return s->limit;
}
