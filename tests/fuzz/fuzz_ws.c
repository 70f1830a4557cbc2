/* libFuzzer target for shared/proto/ws.c (the frame parser).
 *
 * Byte 0 picks the parser's configuration (masked or not, RSV1 allowed, a size limit); the rest is
 * a byte stream from the peer. It is parsed twice, all at once and one byte at a time with payload
 * pieces capped (piece_limit, as the server role sets it to the handler's credits), and the two
 * must agree: the same payload bytes, messages, control frames, and the same close code on an
 * error. Events must point inside the input, and every error must carry a close code the RFC
 * allows us to send. Any broken promise aborts. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/proto/buf.h"
#include "shared/proto/err.h"
#include "shared/proto/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

struct result {
    struct zh_buf payload, ctl;
    int messages, controls;
    int rc;
    unsigned code;
};

static void run(uint8_t cfg, const uint8_t *in, size_t len, size_t step, uint64_t piece,
                struct result *r)
{
    struct zh_ws_parser p;
    struct zh_buf buf = {0};
    size_t fed = 0, off = 0;

    memset(r, 0, sizeof(*r));
    zh_ws_parser_init(&p, cfg & 1, cfg & 2, (cfg & 4) ? 1000 : 0);
    p.piece_limit = piece;
    while (fed < len) {
        size_t n = step && step < len - fed ? step : len - fed;
        zh_buf_append(&buf, in + fed, n);
        fed += n;
        for (;;) {
            struct zh_ws_event ev;
            int rc = zh_ws_parse(&p, buf.data + off, buf.len - off, &ev);
            if (rc < 0) {
                check(rc == ZH_E_PARSE || rc == ZH_E_TOO_LARGE);
                check(p.error != NULL);
                check(p.close_code == 1002 || p.close_code == 1007 || p.close_code == 1009);
                r->rc = rc;
                r->code = p.close_code;
                zh_buf_free(&buf);
                return;
            }
            check((size_t)rc <= buf.len - off);
            if (ev.kind != ZH_WS_EV_NONE) {
                check(ev.data >= buf.data + off && ev.data + ev.len <= buf.data + off + (size_t)rc);
                check(ev.len == 0 || ev.data != NULL);
            }
            off += (size_t)rc;
            if (ev.kind == ZH_WS_EV_DATA) {
                check(ev.len <= piece);
                check(ev.opcode == ZH_WS_TEXT || ev.opcode == ZH_WS_BINARY);
                zh_buf_append(&r->payload, ev.data, ev.len);
                if (ev.message_end) {
                    check(ev.frame_end);
                    r->messages++;
                }
            } else if (ev.kind == ZH_WS_EV_CONTROL) {
                check(ev.len <= ZH_WS_MAX_CONTROL);
                r->controls++;
                zh_buf_append(&r->ctl, ev.data, ev.len);
                if (ev.opcode == ZH_WS_CLOSE) {
                    check(ev.close_code == ZH_WS_CLOSE_NO_STATUS ||
                          zh_ws_close_code_valid(ev.close_code));
                    check(zh_ws_utf8_valid(ev.reason, ev.reason_len));
                    /* Writing it back yields the same payload. */
                    struct zh_buf w = {0};
                    zh_ws_put_close(&w, ev.close_code, ev.reason, ev.reason_len, NULL);
                    check(w.len == 2 + ev.len && memcmp(w.data + 2, ev.data, ev.len) == 0);
                    zh_buf_free(&w);
                }
            } else if (rc == 0) {
                break;
            }
        }
    }
    zh_buf_free(&buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct result a, b;
    run(data[0], data + 1, size - 1, 0, UINT64_MAX, &a);
    /* One byte at a time, and payload pieces capped (as by a peer's credits) at 1..8 bytes. */
    run(data[0], data + 1, size - 1, 1, (uint64_t)(data[0] >> 5) + 1, &b);
    check(a.rc == b.rc && a.code == b.code);
    if (a.rc == 0) {
        check(a.messages == b.messages && a.controls == b.controls);
        check(a.payload.len == b.payload.len && a.ctl.len == b.ctl.len);
        check(a.payload.len == 0 || memcmp(a.payload.data, b.payload.data, a.payload.len) == 0);
        check(a.ctl.len == 0 || memcmp(a.ctl.data, b.ctl.data, a.ctl.len) == 0);
    }
    zh_buf_free(&a.payload);
    zh_buf_free(&a.ctl);
    zh_buf_free(&b.payload);
    zh_buf_free(&b.ctl);
    return 0;
}
