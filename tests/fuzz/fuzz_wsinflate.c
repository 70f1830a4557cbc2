/* libFuzzer target for shared/proto/wsdeflate.c (the inflate path and the extension parsers).
 *
 * Byte 0 picks the context-takeover flags and how the rest is split; the rest is one compressed
 * message. Inflated in one call and in pieces, with a 64 KB bound, both must agree (result and
 * bytes); a successful result deflated again must inflate back to itself. The same bytes are also
 * read as a Sec-WebSocket-Extensions offer: an accepted offer's response must be one our client
 * side accepts with the same parameters. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/proto/buf.h"
#include "shared/proto/err.h"
#include "shared/proto/wsdeflate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

#define MAX (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t cfg = data[0];
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    struct zh_wsd_params p = {
        .server_no_context_takeover = cfg & 1,
        .client_no_context_takeover = cfg & 2,
        .server_max_window_bits = 15,
        .client_max_window_bits = 15,
    };
    struct zh_wsd a, b;
    check(zh_wsd_init(&a, &p, true) == 0 && zh_wsd_init(&b, &p, true) == 0);
    struct zh_buf oa = {0}, ob = {0};
    int ra = zh_wsd_inflate(&a, in, n, true, MAX, &oa);
    check(ra == 0 || ra == ZH_E_PARSE || ra == ZH_E_TOO_LARGE);
    check(oa.len <= MAX + 16384);
    size_t step = (size_t)(cfg >> 2) + 1, off = 0;
    int rb = 0;
    do {
        size_t k = step < n - off ? step : n - off;
        rb = zh_wsd_inflate(&b, in + off, k, off + k == n, MAX, &ob);
        off += k;
    } while (rb == 0 && off < n);
    check(ob.len <= MAX + 16384);
    if (ra == 0 || rb == 0) {
        /* Only a split can make the bound trip earlier; otherwise they agree fully. */
        check(ra == rb);
        check(oa.len == ob.len && (oa.len == 0 || memcmp(oa.data, ob.data, oa.len) == 0));
        struct zh_buf wire = {0}, back = {0};
        struct zh_wsd c, d;
        check(zh_wsd_init(&c, &p, false) == 0 && zh_wsd_init(&d, &p, true) == 0);
        check(zh_wsd_deflate(&c, oa.data, oa.len, true, &wire) == 0);
        check(zh_wsd_inflate(&d, wire.data, wire.len, true, 0, &back) == 0);
        check(back.len == oa.len && (oa.len == 0 || memcmp(back.data, oa.data, oa.len) == 0));
        zh_buf_free(&wire);
        zh_buf_free(&back);
        zh_wsd_free(&c);
        zh_wsd_free(&d);
    } else {
        check(rb == ZH_E_PARSE || rb == ZH_E_TOO_LARGE);
    }
    zh_buf_free(&oa);
    zh_buf_free(&ob);
    zh_wsd_free(&a);
    zh_wsd_free(&b);

    struct zh_wsd_params sp, cp;
    struct zh_buf resp = {0};
    if (zh_wsd_server_negotiate((const char *)in, n, &sp, &resp) == 1) {
        const char *why = NULL;
        check(zh_wsd_client_accept((const char *)resp.data, resp.len, &cp, &why) == 0);
        check(cp.server_no_context_takeover == sp.server_no_context_takeover);
        check(cp.client_no_context_takeover == sp.client_no_context_takeover);
        check(cp.server_max_window_bits == sp.server_max_window_bits);
        check(sp.server_max_window_bits >= 9);
    }
    zh_buf_free(&resp);
    const char *why = NULL;
    (void)zh_wsd_client_accept((const char *)in, n, &cp, &why);
    return 0;
}
