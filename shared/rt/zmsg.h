/* A ZeroMQ multipart message in one allocation, as it travels between the bridge thread and
 * workers.
 *
 * The bridge builds one from the frames it receives and hands it over a channel; the receiver owns
 * it and frees it with zh_zmsg_free(). Workers build outgoing ones the same way. Frames are stored
 * back to back in data[]; frames[i] gives each one's offset and length. */
#ifndef ZH_SHARED_RT_ZMSG_H
#define ZH_SHARED_RT_ZMSG_H

#include <stddef.h>
#include <stdint.h>

#include "shared/proto/zhttp.h"
#include "shared/rt/zsock.h"

#define ZH_ZMSG_MAX_FRAMES                                                 \
    16 /* Condure allows 8 envelope frames; +delimiter +payload, with room \
        */

struct zh_zmsg_frame {
    uint32_t off;
    uint32_t len;
};

/* zh_zmsg.flags. NOTIFY is set by a worker on an outbound message: if the bridge gives up on it
 * (deadline passed, peer unreachable, send error) it sets UNDELIVERED and pushes the message back
 * into m->worker's inbox instead of dropping it, so the worker can answer its client. */
#define ZH_ZMSG_F_NOTIFY      0x1u
#define ZH_ZMSG_F_UNDELIVERED 0x2u

struct zh_zmsg {
    struct zh_zmsg *next; /* for the owner's queues */
    enum zh_zsock sock;   /* socket it came from, or goes to */
    uint32_t flags;       /* ZH_ZMSG_F_* */
    uint32_t worker;      /* outbound: the sending worker (set by zh_zport_send) */
    /* Outbound: monotonic ms (zh_time_ms) after which the bridge must not send it any more; 0 =
     * no deadline. A message still parked (no peer could take it) at its deadline is dropped and,
     * with ZH_ZMSG_F_NOTIFY, handed back to its worker (--handler-wait). */
    uint64_t deadline_ms;
    /* Inbound J packets (Zurl's JSON format): the bridge's parse of the payload (one reference,
     * dropped by zh_zmsg_free), so the worker does not parse it again (shared/proto/jformat.h).
     * NULL otherwise. */
    struct json_t *json;
    uint32_t nframes;
    uint32_t size; /* bytes used in data[] */
    uint32_t cap;  /* bytes allocated for data[] */
    struct zh_zmsg_frame frames[ZH_ZMSG_MAX_FRAMES];
    uint8_t data[];
};

/* Allocate an empty message for sock with room for cap bytes of frame data (it grows as needed). */
struct zh_zmsg *zh_zmsg_new(enum zh_zsock sock, size_t cap);

/* Append a frame; *mp may be reallocated. Returns 0, or ZH_E_TOO_LARGE past ZH_ZMSG_MAX_FRAMES. */
int zh_zmsg_add(struct zh_zmsg **mp, const void *p, size_t n);

/* Append a frame of prefix + payload (e.g. "<addr> " + "T…"). */
int zh_zmsg_add2(struct zh_zmsg **mp, const void *a, size_t an, const void *b, size_t bn);

/* Frame i as a span. */
struct zh_span zh_zmsg_frame(const struct zh_zmsg *m, uint32_t i);

/* A copy of m, without m->json. */
struct zh_zmsg *zh_zmsg_dup(const struct zh_zmsg *m);

/* Free (NULL is fine). */
void zh_zmsg_free(struct zh_zmsg *m);

/* ---- FIFOs of messages linked through m->next (parked messages, inbox overflow, worker ports):
 * *head is the oldest, *tail the newest, both NULL when empty ---- */

struct zh_chan;

/* Append m at the tail. */
void zh_zmsg_fifo_append(struct zh_zmsg **head, struct zh_zmsg **tail, struct zh_zmsg *m);

/* Push the FIFO's messages into ch in order until it is full; returns how many went. */
size_t zh_zmsg_fifo_to_chan(struct zh_chan *ch, struct zh_zmsg **head, struct zh_zmsg **tail);

/* Free every message of the list starting at m. */
void zh_zmsg_list_free(struct zh_zmsg *m);

#endif
