/* The one string hash of zhttpd: 64-bit FNV-1a (http://www.isthe.com/chongo/tech/comp/fnv/). Stable
 * across runs, threads and processes: worker routing (shared/rt/zroute.c), the bridge's table of
 * reachable ROUTER peers, the resolver cache and the TLS directory signatures use it. Not for
 * tables that peers can fill with chosen keys without a bound on each chain. */
#ifndef ZH_SHARED_PROTO_FNV_H
#define ZH_SHARED_PROTO_FNV_H

#include <stddef.h>
#include <stdint.h>

#define ZH_FNV_BASIS UINT64_C(14695981039346656037)
#define ZH_FNV_PRIME UINT64_C(1099511628211)

/* Continue hash h (start with ZH_FNV_BASIS) over p[0..n). */
static inline uint64_t zh_fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * ZH_FNV_PRIME;
    return h;
}

#endif
