/* A worker's sending end of the zmq bridge. See zport.h. */
#include "shared/rt/zport.h"

#include "shared/proto/mem.h"
#include "shared/rt/chan.h"
#include "shared/rt/log.h"
#include "shared/rt/zbridge.h"

struct zport_q {
    struct zh_zport *port;
    enum zh_zsock sock;
    struct zh_io io; /* watches the channel's space fd while the FIFO is non-empty */
    struct zh_zmsg *head, *tail;
    size_t count;
};

struct zh_zport {
    struct zh_zbridge *b;
    unsigned w;
    struct zh_loop *loop;
    struct zport_q q[ZH_ZS_COUNT];
};

static void zport_flush(struct zport_q *q)
{
    struct zh_chan *ch = zh_zbridge_outbox(q->port->b, q->port->w, q->sock);
    zh_chan_drain_space_signal(ch);
    q->count -= zh_zmsg_fifo_to_chan(ch, &q->head, &q->tail);
    if (q->head) {
        zh_chan_want_space(ch);
        /* Space may have freed between the failed push and the request: try once more. */
        q->count -= zh_zmsg_fifo_to_chan(ch, &q->head, &q->tail);
    }
    if (!q->head)
        zh_io_stop(q->port->loop, &q->io);
    else
        zh_io_set(q->port->loop, &q->io, ZH_EV_READ);
}

static void zport_space_cb(struct zh_io *io, uint32_t revents, void *data)
{
    ZH_UNUSED(io);
    ZH_UNUSED(revents);
    zport_flush(data);
}

struct zh_zport *zh_zport_new(struct zh_zbridge *b, unsigned w, struct zh_loop *loop)
{
    struct zh_zport *p = zh_calloc(1, sizeof(*p));
    p->b = b;
    p->w = w;
    p->loop = loop;
    for (int s = 0; s < ZH_ZS_COUNT; s++) {
        struct zport_q *q = &p->q[s];
        q->port = p;
        q->sock = (enum zh_zsock)s;
        struct zh_chan *ch = zh_zbridge_outbox(b, w, (enum zh_zsock)s);
        zh_io_init(&q->io, ch ? zh_chan_space_fd(ch) : -1, zport_space_cb, q);
    }
    return p;
}

void zh_zport_send(struct zh_zport *p, struct zh_zmsg *m)
{
    struct zport_q *q = &p->q[m->sock];
    struct zh_chan *ch = zh_zbridge_outbox(p->b, p->w, m->sock);
    if (!ch) {
        zh_warn("%s: socket not configured, message dropped", zh_zsock_name(m->sock));
        zh_zmsg_free(m);
        return;
    }
    m->worker = p->w;
    if (!q->head && zh_chan_push(ch, m) == 0)
        return;
    zh_zmsg_fifo_append(&q->head, &q->tail, m);
    q->count++;
    zport_flush(q);
}

size_t zh_zport_backlog(const struct zh_zport *p)
{
    size_t n = 0;
    for (int s = 0; s < ZH_ZS_COUNT; s++)
        n += p->q[s].count;
    return n;
}

size_t zh_zport_free(struct zh_zport *p)
{
    if (!p)
        return 0;
    size_t n = 0;
    for (int s = 0; s < ZH_ZS_COUNT; s++) {
        zh_io_stop(p->loop, &p->q[s].io);
        n += p->q[s].count;
        zh_zmsg_list_free(p->q[s].head);
    }
    zh_free(p);
    return n;
}
