/* One intrusive doubly linked list for every queue of objects that must leave from the middle, in
 * libuv's queue.h style: a circular list whose head is a struct zh_list of its own, each element
 * embedding a struct zh_list node, and ZH_LIST_DATA() to get from a node to its element. An empty
 * list (and a node in no list) points at itself, so removing never tests for the ends.
 *
 *     struct zh_list handshakes;                 zh_list_init(&handshakes);
 *     struct zh_conn { ...; struct zh_list hs_node; };
 *     zh_list_insert_tail(&handshakes, &c->hs_node);
 *     struct zh_conn *oldest = ZH_LIST_DATA(zh_list_head(&handshakes), struct zh_conn, hs_node);
 *     zh_list_remove(&c->hs_node);
 *
 * Message FIFOs between threads are not lists of this kind: see shared/rt/zmsg.h. */
#ifndef ZH_SHARED_PROTO_LIST_H
#define ZH_SHARED_PROTO_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct zh_list {
    struct zh_list *next, *prev;
};

/* The element that embeds node as its member field. */
#define ZH_LIST_DATA(node, type, field) ((type *)(void *)((char *)(node)-offsetof(type, field)))

/* for (struct zh_list *q = ...): every node of list h, head to tail. Removing q inside the loop
 * is not allowed (use a while loop over zh_list_head()). */
#define ZH_LIST_FOREACH(q, h) for ((q) = (h)->next; (q) != (h); (q) = (q)->next)

/* An empty list, or a node in no list. */
static inline void zh_list_init(struct zh_list *h)
{
    h->next = h->prev = h;
}

static inline bool zh_list_empty(const struct zh_list *h)
{
    return h->next == h;
}

/* The first node (h itself when the list is empty). */
static inline struct zh_list *zh_list_head(const struct zh_list *h)
{
    return h->next;
}

static inline void zh_list_insert_tail(struct zh_list *h, struct zh_list *n)
{
    n->next = h;
    n->prev = h->prev;
    h->prev->next = n;
    h->prev = n;
}

static inline void zh_list_insert_head(struct zh_list *h, struct zh_list *n)
{
    n->next = h->next;
    n->prev = h;
    h->next->prev = n;
    h->next = n;
}

/* Take n out of its list (a node in no list stays so). */
static inline void zh_list_remove(struct zh_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    zh_list_init(n);
}

#endif
