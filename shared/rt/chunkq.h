/* Bounded chunk queues: per-connection byte buffers made of fixed-size chunks from a per-thread
 * pool.
 *
 * A queue holds at most max_chunks chunks; a write that would need more returns what fit, and
 * "full" is the back-pressure signal (as curl's bufq). Chunks come from a zh_chunk_pool that keeps
 * a bounded spare list, so steady-state traffic does not touch malloc. Neither type is thread-safe:
 * one pool per worker. */
#ifndef ZH_SHARED_RT_CHUNKQ_H
#define ZH_SHARED_RT_CHUNKQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct zh_chunk; /* private */

struct zh_chunk_pool {
    /* private */
    size_t _chunk_size;
    size_t _max_spare;
    size_t _n_spare;
    struct zh_chunk *_spare;
};

struct zh_chunkq {
    /* private */
    struct zh_chunk_pool *_pool;
    size_t _max_chunks;
    size_t _n_chunks;
    size_t _len;
    struct zh_chunk *_head, *_tail;
};

/* Initialise a pool of chunk_size-byte chunks that keeps up to max_spare free chunks. */
void zh_chunk_pool_init(struct zh_chunk_pool *pool, size_t chunk_size, size_t max_spare);
/* Free the spare chunks (queues using the pool must be freed first). */
void zh_chunk_pool_free(struct zh_chunk_pool *pool);
/* Number of free chunks the pool holds for reuse (never more than max_spare). */
size_t zh_chunk_pool_spare(const struct zh_chunk_pool *pool);

/* Initialise an empty queue of at most max_chunks chunks from pool. */
void zh_chunkq_init(struct zh_chunkq *q, struct zh_chunk_pool *pool, size_t max_chunks);
/* Return all chunks to the pool. */
void zh_chunkq_free(struct zh_chunkq *q);

/* Append up to len bytes; *nwritten says how many went in. Returns 0 if all did, ZH_E_FULL if the
 * queue filled first (then *nwritten < len). */
int zh_chunkq_write(struct zh_chunkq *q, const void *p, size_t len, size_t *nwritten);

/* Copy up to len bytes from the front without consuming them; returns the count copied. */
size_t zh_chunkq_peek(const struct zh_chunkq *q, void *p, size_t len);

/* Fill up to max iovecs describing the queued bytes in order; returns the number filled. The iovecs
 * stay valid until the next write/consume/free. */
int zh_chunkq_iov(const struct zh_chunkq *q, struct iovec *iov, int max);

/* Drop n bytes from the front (n <= length). Emptied chunks go back to the pool. */
void zh_chunkq_consume(struct zh_chunkq *q, size_t n);

/* Bytes queued. */
size_t zh_chunkq_len(const struct zh_chunkq *q);

/* Bytes that can still be written before the queue is full. */
size_t zh_chunkq_space(const struct zh_chunkq *q);

#endif
