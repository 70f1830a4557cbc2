/* RFC 6455 framing: see ws.h. */
#include "shared/proto/ws.h"

#include <string.h>

#include "shared/proto/err.h"

/* ---- UTF-8 (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF) ---- */

int zh_ws_utf8_feed(struct zh_ws_utf8 *u, const uint8_t *p, size_t n)
{
    uint32_t need = u->_state;
    uint8_t lo = u->_lo, hi = u->_hi;

    if (need == UINT32_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (need) {
            if (c < lo || c > hi)
                goto bad;
            need--;
            lo = 0x80;
            hi = 0xBF;
            continue;
        }
        if (c < 0x80)
            continue;
        lo = 0x80;
        hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            else if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            goto bad;
        }
    }
    u->_state = need;
    u->_lo = lo;
    u->_hi = hi;
    return 0;
bad:
    u->_state = UINT32_MAX;
    return -1;
}

bool zh_ws_utf8_done(const struct zh_ws_utf8 *u)
{
    return u->_state == 0;
}

bool zh_ws_utf8_valid(const uint8_t *p, size_t n)
{
    struct zh_ws_utf8 u = {0};
    return zh_ws_utf8_feed(&u, p, n) == 0 && zh_ws_utf8_done(&u);
}

bool zh_ws_close_code_valid(unsigned code)
{
    if (code >= 3000 && code <= 4999)
        return true;
    if (code < 1000 || code > 1014)
        return false;
    return code != 1004 && code != 1005 && code != 1006;
}

/* ---- parser ---- */

void zh_ws_parser_init(struct zh_ws_parser *p, bool expect_masked, bool allow_rsv1,
                       uint64_t max_message)
{
    memset(p, 0, sizeof(*p));
    p->expect_masked = expect_masked;
    p->allow_rsv1 = allow_rsv1;
    p->max_message = max_message;
    p->piece_limit = UINT64_MAX;
}

bool zh_ws_parser_in_message(const struct zh_ws_parser *p)
{
    return p->_in_message;
}

static int fail(struct zh_ws_parser *p, unsigned code, const char *why)
{
    p->close_code = code;
    p->error = why;
    return code == ZH_WS_CLOSE_TOO_BIG ? ZH_E_TOO_LARGE : ZH_E_PARSE;
}

void zh_ws_mask(uint8_t *p, size_t n, const uint8_t key[4], uint64_t off)
{
    size_t i = 0;
    unsigned k = (unsigned)(off & 3);
    /* Align to the key, then do 8 bytes at a time. */
    while (i < n && k != 0) {
        p[i++] ^= key[k];
        k = (k + 1) & 3;
    }
    if (n - i >= 8) {
        uint8_t k8[8] = {key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]};
        uint64_t kw, w;
        memcpy(&kw, k8, 8);
        for (; n - i >= 8; i += 8) {
            memcpy(&w, p + i, 8);
            w ^= kw;
            memcpy(p + i, &w, 8);
        }
    }
    for (; i < n; i++)
        p[i] ^= key[(off + i) & 3];
}

/* Check a whole control frame's payload (already unmasked) and fill the event. */
static int control(struct zh_ws_parser *p, uint8_t opcode, uint8_t *pl, size_t n,
                   struct zh_ws_event *ev)
{
    ev->kind = ZH_WS_EV_CONTROL;
    ev->opcode = opcode;
    ev->data = pl;
    ev->len = n;
    if (opcode != ZH_WS_CLOSE)
        return 0;
    ev->close_code = ZH_WS_CLOSE_NO_STATUS;
    if (n == 0)
        return 0;
    if (n == 1)
        return fail(p, ZH_WS_CLOSE_PROTOCOL, "close frame with a 1-byte payload");
    ev->close_code = (unsigned)pl[0] << 8 | pl[1];
    if (!zh_ws_close_code_valid(ev->close_code))
        return fail(p, ZH_WS_CLOSE_PROTOCOL, "close frame with an invalid code");
    ev->reason = pl + 2;
    ev->reason_len = n - 2;
    if (!zh_ws_utf8_valid(ev->reason, ev->reason_len))
        return fail(p, ZH_WS_CLOSE_BAD_DATA, "close reason is not UTF-8");
    return 0;
}

/* Parse a frame head at data (len bytes available). Returns its length, 0 if incomplete, or an
 * error. Control frames are handled whole here (returning head + payload). */
static int head(struct zh_ws_parser *p, uint8_t *data, size_t len, struct zh_ws_event *ev)
{
    if (len < 2)
        return 0;
    bool fin = data[0] & 0x80, rsv1 = data[0] & 0x40, masked = data[1] & 0x80;
    uint8_t opcode = data[0] & 0x0F, len7 = data[1] & 0x7F;
    bool is_control = opcode & 0x08;

    /* Everything decidable from the first two bytes fails at once. */
    if (data[0] & 0x30)
        return fail(p, ZH_WS_CLOSE_PROTOCOL, "RSV2/RSV3 set");
    if (opcode > ZH_WS_BINARY && opcode != ZH_WS_CLOSE && opcode != ZH_WS_PING &&
        opcode != ZH_WS_PONG)
        return fail(p, ZH_WS_CLOSE_PROTOCOL, "unknown opcode");
    if (rsv1 && !p->allow_rsv1)
        return fail(p, ZH_WS_CLOSE_PROTOCOL, "RSV1 set without a negotiated extension");
    if (rsv1 && (is_control || opcode == ZH_WS_CONT))
        return fail(p, ZH_WS_CLOSE_PROTOCOL, "RSV1 set on a control or continuation frame");
    if (is_control && !fin)
        return fail(p, ZH_WS_CLOSE_PROTOCOL, "fragmented control frame");
    if (is_control && len7 > ZH_WS_MAX_CONTROL)
        return fail(p, ZH_WS_CLOSE_PROTOCOL, "control frame over 125 bytes");
    if (opcode == ZH_WS_CONT && !p->_in_message)
        return fail(p, ZH_WS_CLOSE_PROTOCOL, "continuation frame without a message");
    if ((opcode == ZH_WS_TEXT || opcode == ZH_WS_BINARY) && p->_in_message)
        return fail(p, ZH_WS_CLOSE_PROTOCOL, "new message inside a fragmented one");
    if (masked != p->expect_masked)
        return fail(p, ZH_WS_CLOSE_PROTOCOL,
                    masked ? "masked frame from a server" : "unmasked frame from a client");

    size_t hl = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0);
    if (len < hl)
        return 0;
    uint64_t plen = len7;
    const uint8_t *q = data + 2;
    if (len7 == 126) {
        plen = (uint64_t)q[0] << 8 | q[1];
        q += 2;
    } else if (len7 == 127) {
        if (q[0] & 0x80)
            return fail(p, ZH_WS_CLOSE_PROTOCOL, "64-bit length with the top bit set");
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = plen << 8 | q[i];
        q += 8;
    }
    if (masked)
        memcpy(p->_mask, q, 4);

    if (is_control) {
        if (len - hl < plen)
            return 0;
        uint8_t *pl = data + hl;
        if (masked)
            zh_ws_mask(pl, (size_t)plen, p->_mask, 0);
        int rc = control(p, opcode, pl, (size_t)plen, ev);
        return rc < 0 ? rc : (int)(hl + plen);
    }

    uint64_t so_far = opcode == ZH_WS_CONT ? p->_msg_len : 0;
    if (p->max_message && (plen > p->max_message || so_far + plen > p->max_message))
        return fail(p, ZH_WS_CLOSE_TOO_BIG, "message over the size limit");
    if (opcode != ZH_WS_CONT) {
        p->_in_message = true;
        p->_msg_started = false;
        p->_msg_opcode = opcode;
        p->_compressed = rsv1;
        p->_msg_len = 0;
        memset(&p->_utf8, 0, sizeof(p->_utf8));
    }
    p->_msg_len += plen;
    p->_in_frame = true;
    p->_frame_started = false;
    p->_fin = fin;
    p->_masked = masked;
    p->_mask_off = 0;
    p->_remaining = plen;
    return (int)hl;
}

int zh_ws_parse(struct zh_ws_parser *p, uint8_t *data, size_t len, struct zh_ws_event *ev)
{
    size_t used = 0;

    memset(ev, 0, sizeof(*ev));
    if (p->close_code)
        return ZH_E_PARSE;
    if (!p->_in_frame) {
        int rc = head(p, data, len, ev);
        if (rc <= 0 || ev->kind == ZH_WS_EV_CONTROL)
            return rc;
        used = (size_t)rc;
    }

    uint64_t want = p->_remaining < p->piece_limit ? p->_remaining : p->piece_limit;
    size_t n = want < len - used ? (size_t)want : len - used;
    if (n == 0 && p->_remaining > 0)
        return (int)used; /* only the head so far */
    uint8_t *pl = data + used;
    if (p->_masked) {
        zh_ws_mask(pl, n, p->_mask, p->_mask_off);
        p->_mask_off = (uint8_t)((p->_mask_off + n) & 3);
    }
    bool text = p->_msg_opcode == ZH_WS_TEXT && !p->_compressed;
    if (text && zh_ws_utf8_feed(&p->_utf8, pl, n) < 0)
        return fail(p, ZH_WS_CLOSE_BAD_DATA, "text message is not UTF-8");
    p->_remaining -= n;
    ev->kind = ZH_WS_EV_DATA;
    ev->opcode = p->_msg_opcode;
    ev->compressed = p->_compressed;
    ev->frame_start = !p->_frame_started;
    ev->message_start = !p->_msg_started;
    ev->frame_end = p->_remaining == 0;
    ev->message_end = ev->frame_end && p->_fin;
    ev->data = pl;
    ev->len = n;
    p->_frame_started = true;
    p->_msg_started = true;
    if (ev->message_end && text && !zh_ws_utf8_done(&p->_utf8))
        return fail(p, ZH_WS_CLOSE_BAD_DATA, "text message ends inside a UTF-8 character");
    if (ev->frame_end) {
        p->_in_frame = false;
        if (p->_fin)
            p->_in_message = false;
    }
    return (int)(used + n);
}

/* ---- writing ---- */

size_t zh_ws_head(uint8_t *out, bool fin, uint8_t opcode, bool rsv1, uint64_t len,
                  const uint8_t *mask)
{
    size_t n = 2;
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0F));
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        out[1] = (uint8_t)(m | len);
    } else if (len <= 0xFFFF) {
        out[1] = m | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = m | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

void zh_ws_put_frame(struct zh_buf *out, bool fin, uint8_t opcode, bool rsv1, const void *payload,
                     size_t len, const uint8_t *mask)
{
    uint8_t h[ZH_WS_MAX_HEAD];
    size_t hl = zh_ws_head(h, fin, opcode, rsv1, len, mask);
    zh_buf_reserve(out, hl + len);
    zh_buf_append(out, h, hl);
    if (len == 0)
        return;
    size_t at = out->len;
    zh_buf_append(out, payload, len);
    if (mask)
        zh_ws_mask(out->data + at, len, mask, 0);
}

void zh_ws_put_close(struct zh_buf *out, unsigned code, const void *reason, size_t reason_len,
                     const uint8_t *mask)
{
    uint8_t pl[ZH_WS_MAX_CONTROL];
    size_t n = 0;
    if (code != ZH_WS_CLOSE_NO_STATUS) {
        pl[0] = (uint8_t)(code >> 8);
        pl[1] = (uint8_t)code;
        n = 2;
        if (reason_len > ZH_WS_MAX_CONTROL - 2) {
            const uint8_t *r = reason;
            reason_len = ZH_WS_MAX_CONTROL - 2;
            while (reason_len > 0 && (r[reason_len] & 0xC0) == 0x80)
                reason_len--; /* don't cut a character */
        }
        if (reason_len)
            memcpy(pl + 2, reason, reason_len);
        n += reason_len;
    }
    zh_ws_put_frame(out, true, ZH_WS_CLOSE, false, pl, n, mask);
}

uint8_t zh_ws_sender_next(struct zh_ws_sender *s, uint8_t type, bool more)
{
    uint8_t op = s->_in_message ? ZH_WS_CONT : type;
    s->_in_message = more;
    return op;
}

bool zh_ws_sender_in_message(const struct zh_ws_sender *s)
{
    return s->_in_message;
}

/* ---- handshake: SHA-1 (FIPS 180-4) and base64, only for Sec-WebSocket-Accept ---- */

#define ROL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

static void sha1_block(uint32_t h[5], const uint8_t *b)
{
    uint32_t w[80], a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 |
               (uint32_t)b[4 * i + 2] << 8 | b[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (bb & c) | (~bb & d);
            k = 0x5A827999;
        } else if (i < 40) {
            f = bb ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (bb & c) | (bb & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = bb ^ c ^ d;
            k = 0xCA62C1D6;
        }
        uint32_t t = ROL(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = ROL(bb, 30);
        bb = a;
        a = t;
    }
    h[0] += a;
    h[1] += bb;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

void zh_ws_sha1(const void *data, size_t n, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    const uint8_t *p = data;
    uint8_t last[128] = {0};
    size_t full = n / 64 * 64, rest = n - full;

    for (size_t i = 0; i < full; i += 64)
        sha1_block(h, p + i);
    if (rest)
        memcpy(last, p + full, rest);
    last[rest] = 0x80;
    size_t tail = rest < 56 ? 64 : 128;
    uint64_t bits = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++)
        last[tail - 1 - i] = (uint8_t)(bits >> (8 * i));
    sha1_block(h, last);
    if (tail == 128)
        sha1_block(h, last + 64);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void zh_ws_base64(const uint8_t *p, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    out[o] = 0;
}

bool zh_ws_key_valid(const char *key, size_t len)
{
    if (len != 24 || key[22] != '=' || key[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!strchr(b64, key[i]) || key[i] == 0)
            return false;
    /* The last character carries 2 bits of data and 4 zero bits. */
    const char *c = strchr(b64, key[21]);
    return ((c - b64) & 15) == 0;
}

void zh_ws_accept(const char *key, size_t len, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    uint8_t buf[256], d[20];
    if (len > sizeof(buf) - (sizeof(guid) - 1))
        len = sizeof(buf) - (sizeof(guid) - 1);
    memcpy(buf, key, len);
    memcpy(buf + len, guid, sizeof(guid) - 1);
    zh_ws_sha1(buf, len + sizeof(guid) - 1, d);
    zh_ws_base64(d, 20, out);
}
