#include "shared/rt/chunkq.h"

#include <assert.h>
#include <string.h>

#include "shared/proto/err.h"
#include "shared/proto/mem.h"

/* A chunk holds bytes [r, w) of data[]; bytes before r were consumed, bytes after w are free. A
 * queue is a singly linked list head → tail; only the tail has free room that writes may use, and
 * a chunk whose bytes are all consumed goes straight back to the pool, so an idle connection holds
 * no memory. */
struct zh_chunk {
    struct zh_chunk *next;
    size_t r, w;
    uint8_t data[];
};

void zh_chunk_pool_init(struct zh_chunk_pool *pool, size_t chunk_size, size_t max_spare)
{
    assert(chunk_size > 0);
    pool->_chunk_size = chunk_size;
    pool->_max_spare = max_spare;
    pool->_n_spare = 0;
    pool->_spare = NULL;
}

void zh_chunk_pool_free(struct zh_chunk_pool *pool)
{
    while (pool->_spare) {
        struct zh_chunk *c = pool->_spare;
        pool->_spare = c->next;
        zh_free(c);
    }
    pool->_n_spare = 0;
}

size_t zh_chunk_pool_spare(const struct zh_chunk_pool *pool)
{
    return pool->_n_spare;
}

static struct zh_chunk *pool_get(struct zh_chunk_pool *pool)
{
    struct zh_chunk *c = pool->_spare;
    if (c) {
        pool->_spare = c->next;
        pool->_n_spare--;
    } else {
        c = zh_malloc(sizeof(*c) + pool->_chunk_size);
    }
    c->next = NULL;
    c->r = 0;
    c->w = 0;
    return c;
}

static void pool_put(struct zh_chunk_pool *pool, struct zh_chunk *c)
{
    if (pool->_n_spare >= pool->_max_spare) {
        zh_free(c);
        return;
    }
    c->next = pool->_spare;
    pool->_spare = c;
    pool->_n_spare++;
}

void zh_chunkq_init(struct zh_chunkq *q, struct zh_chunk_pool *pool, size_t max_chunks)
{
    q->_pool = pool;
    q->_max_chunks = max_chunks;
    q->_n_chunks = 0;
    q->_len = 0;
    q->_head = NULL;
    q->_tail = NULL;
}

void zh_chunkq_free(struct zh_chunkq *q)
{
    while (q->_head) {
        struct zh_chunk *c = q->_head;
        q->_head = c->next;
        pool_put(q->_pool, c);
    }
    q->_tail = NULL;
    q->_n_chunks = 0;
    q->_len = 0;
}

int zh_chunkq_write(struct zh_chunkq *q, const void *p, size_t len, size_t *nwritten)
{
    const uint8_t *src = p;
    size_t chunk_size = q->_pool->_chunk_size;
    size_t done = 0;
    int rc = 0;
    while (done < len) {
        struct zh_chunk *c = q->_tail;
        if (!c || c->w == chunk_size) {
            if (q->_n_chunks >= q->_max_chunks) {
                rc = ZH_E_FULL;
                break;
            }
            c = pool_get(q->_pool);
            if (q->_tail)
                q->_tail->next = c;
            else
                q->_head = c;
            q->_tail = c;
            q->_n_chunks++;
        }
        size_t n = ZH_MIN(chunk_size - c->w, len - done);
        memcpy(c->data + c->w, src + done, n);
        c->w += n;
        done += n;
    }
    q->_len += done;
    if (nwritten)
        *nwritten = done;
    return rc;
}

size_t zh_chunkq_peek(const struct zh_chunkq *q, void *p, size_t len)
{
    uint8_t *dst = p;
    size_t done = 0;
    for (const struct zh_chunk *c = q->_head; c && done < len; c = c->next) {
        size_t n = ZH_MIN(c->w - c->r, len - done);
        memcpy(dst + done, c->data + c->r, n);
        done += n;
    }
    return done;
}

int zh_chunkq_iov(const struct zh_chunkq *q, struct iovec *iov, int max)
{
    int n = 0;
    for (struct zh_chunk *c = q->_head; c && n < max; c = c->next) {
        if (c->w == c->r)
            continue;
        iov[n].iov_base = c->data + c->r;
        iov[n].iov_len = c->w - c->r;
        n++;
    }
    return n;
}

void zh_chunkq_consume(struct zh_chunkq *q, size_t n)
{
    assert(n <= q->_len);
    if (n > q->_len)
        n = q->_len; /* never run past the end in a release build */
    q->_len -= n;
    while (n > 0) {
        struct zh_chunk *c = q->_head;
        size_t take = ZH_MIN(c->w - c->r, n);
        c->r += take;
        n -= take;
        if (c->r == c->w) {
            q->_head = c->next;
            if (!q->_head)
                q->_tail = NULL;
            q->_n_chunks--;
            pool_put(q->_pool, c);
        }
    }
}

size_t zh_chunkq_len(const struct zh_chunkq *q)
{
    return q->_len;
}

size_t zh_chunkq_space(const struct zh_chunkq *q)
{
    size_t chunk_size = q->_pool->_chunk_size;
    size_t free_chunks = q->_max_chunks - q->_n_chunks;
    size_t tail_room = q->_tail ? chunk_size - q->_tail->w : 0;
    if (free_chunks > (SIZE_MAX - tail_room) / chunk_size)
        return SIZE_MAX; /* an effectively unbounded queue */
    return free_chunks * chunk_size + tail_room;
}
