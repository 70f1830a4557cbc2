#include "shared/rt/zmsg.h"

#include <string.h>

#include <jansson.h>

#include "shared/proto/err.h"
#include "shared/proto/mem.h"
#include "shared/rt/chan.h"

struct zh_zmsg *zh_zmsg_new(enum zh_zsock sock, size_t cap)
{
    struct zh_zmsg *m = zh_malloc(sizeof(*m) + cap);
    m->next = NULL;
    m->sock = sock;
    m->flags = 0;
    m->worker = 0;
    m->deadline_ms = 0;
    m->nframes = 0;
    m->size = 0;
    m->cap = (uint32_t)cap;
    m->json = NULL;
    return m;
}

int zh_zmsg_add2(struct zh_zmsg **mp, const void *a, size_t an, const void *b, size_t bn)
{
    struct zh_zmsg *m = *mp;
    if (m->nframes >= ZH_ZMSG_MAX_FRAMES || an + bn > UINT32_MAX - m->size)
        return ZH_E_TOO_LARGE;
    size_t need = m->size + an + bn;
    if (need > m->cap) {
        size_t cap = m->cap ? m->cap : 64;
        while (cap < need)
            cap *= 2;
        m = zh_realloc(m, sizeof(*m) + cap);
        m->cap = (uint32_t)cap;
        *mp = m;
    }
    m->frames[m->nframes].off = m->size;
    m->frames[m->nframes].len = (uint32_t)(an + bn);
    if (an)
        memcpy(m->data + m->size, a, an);
    if (bn)
        memcpy(m->data + m->size + an, b, bn);
    m->size += (uint32_t)(an + bn);
    m->nframes++;
    return 0;
}

int zh_zmsg_add(struct zh_zmsg **mp, const void *p, size_t n)
{
    return zh_zmsg_add2(mp, p, n, NULL, 0);
}

struct zh_span zh_zmsg_frame(const struct zh_zmsg *m, uint32_t i)
{
    struct zh_span s = {m->data + m->frames[i].off, m->frames[i].len};
    return s;
}

struct zh_zmsg *zh_zmsg_dup(const struct zh_zmsg *m)
{
    struct zh_zmsg *c = zh_malloc(sizeof(*m) + m->size);
    memcpy(c, m, sizeof(*m) + m->size);
    c->cap = m->size;
    c->next = NULL;
    c->json = NULL; /* one owner per parse: a copy for another worker parses again */
    return c;
}

void zh_zmsg_free(struct zh_zmsg *m)
{
    if (m)
        json_decref(m->json);
    zh_free(m);
}

void zh_zmsg_fifo_append(struct zh_zmsg **head, struct zh_zmsg **tail, struct zh_zmsg *m)
{
    m->next = NULL;
    if (*tail)
        (*tail)->next = m;
    else
        *head = m;
    *tail = m;
}

/* The next link is read before each push: once pushed, a message belongs to the other thread,
 * which may free it. */
size_t zh_zmsg_fifo_to_chan(struct zh_chan *ch, struct zh_zmsg **head, struct zh_zmsg **tail)
{
    size_t n = 0;
    while (*head) {
        struct zh_zmsg *m = *head, *next = m->next;
        if (zh_chan_push(ch, m) != 0)
            break;
        *head = next;
        n++;
    }
    if (!*head)
        *tail = NULL;
    return n;
}

void zh_zmsg_list_free(struct zh_zmsg *m)
{
    while (m) {
        struct zh_zmsg *next = m->next;
        zh_zmsg_free(m);
        m = next;
    }
}
