#include "shared/proto/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "shared/proto/mem.h"

void zh_buf_reserve(struct zh_buf *b, size_t n)
{
    if (b->cap - b->len >= n && b->data)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < n)
        cap *= 2;
    b->data = zh_realloc(b->data, cap);
    b->cap = cap;
}

void zh_buf_append(struct zh_buf *b, const void *p, size_t n)
{
    zh_buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
}

void zh_buf_putc(struct zh_buf *b, uint8_t c)
{
    zh_buf_append(b, &c, 1);
}

void zh_buf_puts(struct zh_buf *b, const char *s)
{
    zh_buf_append(b, s, strlen(s));
}

void zh_buf_printf(struct zh_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    zh_buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void zh_buf_insert(struct zh_buf *b, size_t off, const void *p, size_t n)
{
    zh_buf_reserve(b, n);
    memmove(b->data + off + n, b->data + off, b->len - off);
    memcpy(b->data + off, p, n);
    b->len += n;
}

void zh_buf_reset(struct zh_buf *b)
{
    b->len = 0;
}

const char *zh_buf_cstr(struct zh_buf *b)
{
    zh_buf_reserve(b, 1);
    b->data[b->len] = '\0';
    return (const char *)b->data;
}

void zh_buf_free(struct zh_buf *b)
{
    zh_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
