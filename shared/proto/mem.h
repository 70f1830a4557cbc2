/* Allocation helpers and small macros used by every layer.
 *
 * zh_malloc() and friends abort the process on out-of-memory (as redis zmalloc and h2o_mem_alloc
 * do), so call sites never test for NULL. Memory growth is bounded by configuration elsewhere, not
 * here. */
#ifndef ZH_SHARED_PROTO_MEM_H
#define ZH_SHARED_PROTO_MEM_H

#include <stddef.h>

#define ZH_UNUSED(x)                       ((void)(x))
#define ZH_ARRAY_SIZE(a)                   (sizeof(a) / sizeof((a)[0]))
#define zh_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#define ZH_MIN(a, b)                       ((a) < (b) ? (a) : (b))
#define ZH_MAX(a, b)                       ((a) > (b) ? (a) : (b))

/* Allocate n bytes; never returns NULL (aborts with a message instead). */
void *zh_malloc(size_t n);
/* Allocate n * size zeroed bytes; aborts on overflow or OOM. */
void *zh_calloc(size_t n, size_t size);
/* Resize p to n bytes; aborts on OOM. */
void *zh_realloc(void *p, size_t n);
/* Copy a NUL-terminated string. */
char *zh_strdup(const char *s);
/* Copy n bytes of s and NUL-terminate the copy. */
char *zh_strndup(const char *s, size_t n);
/* Free memory from the functions above (NULL is fine). */
void zh_free(void *p);

#endif
