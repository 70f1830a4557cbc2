/* A growable byte buffer, used to build outgoing packets and strings.
 *
 * struct zh_buf is a small value type meant to be embedded: read data/len directly, but change it
 * only through this API. A zero-initialised struct zh_buf is a valid empty buffer. */
#ifndef ZH_SHARED_PROTO_BUF_H
#define ZH_SHARED_PROTO_BUF_H

#include <stddef.h>
#include <stdint.h>

struct zh_buf {
    uint8_t *data; /* NULL until the first append */
    size_t len;
    size_t cap; /* private */
};

/* Make room for at least n more bytes after len. */
void zh_buf_reserve(struct zh_buf *b, size_t n);
/* Append n bytes. */
void zh_buf_append(struct zh_buf *b, const void *p, size_t n);
/* Append one byte. */
void zh_buf_putc(struct zh_buf *b, uint8_t c);
/* Append a NUL-terminated string (without the NUL). */
void zh_buf_puts(struct zh_buf *b, const char *s);
/* Append printf-formatted text (without a NUL). */
void zh_buf_printf(struct zh_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Insert n bytes at offset off (off <= len), moving the tail up. */
void zh_buf_insert(struct zh_buf *b, size_t off, const void *p, size_t n);
/* Forget the contents, keep the memory. */
void zh_buf_reset(struct zh_buf *b);
/* Return the contents as a NUL-terminated C string (the NUL is not counted in len). */
const char *zh_buf_cstr(struct zh_buf *b);
/* Free the memory; the buffer is empty and reusable afterwards. */
void zh_buf_free(struct zh_buf *b);

#endif
