/* HTTP/1 responses of a server connection: our own short responses (errors, 100 Continue), the
 * handler's interim (1xx) and final heads with hop-by-hop headers removed and the body framing
 * chosen, and the response body (Content-Length, chunked or close-delimited). */
#include "server/conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shared/proto/mem.h"
#include "shared/rt/log.h"
#include "shared/rt/metrics.h"

void zh_response_simple(struct zh_conn *c, int status, const char *text)
{
    c->log_status = status;
    zh_conn__log_failure(c, status, status >= 500 ? "handler" : "request", text);
    zh_metric_status(ZH_M_S_RESP_1, status);
    zh_handler_session_end(c);
    c->keep_alive = false;
    if (c->tail_len) {
        /* A req-mode body is still being written; nothing can follow it but the close. */
        zh_conn__set_state(c, ZH_CONN_CLOSING);
        zh_conn__flush(c);
        return;
    }
    struct zh_buf b = {0};
    char body[256];
    int bn = snprintf(body, sizeof(body), "%s\n", text);
    if (bn < 0 || (size_t)bn >= sizeof(body))
        bn = 0;
    struct zh_http1_header h = {{"Content-Type", 12}, {"text/plain", 10}};
    struct zh_http1_resp r = {
        .minor_version = c->minor,
        .status = status,
        .headers = &h,
        .num_headers = 1,
        .body = ZH_HTTP1_BODY_LENGTH,
        .content_length = (uint64_t)bn,
        .conn = ZH_HTTP1_CONN_CLOSE,
    };
    if (zh_http1_write_response_head(&b, &r) == 0) {
        zh_conn__queue(c, b.data, b.len);
        if (!c->is_head)
            zh_conn__queue(c, body, (size_t)bn);
    }
    zh_buf_free(&b);
    zh_conn__set_state(c, ZH_CONN_CLOSING);
    zh_conn__flush(c);
}

static bool header_is(struct zh_span n, const char *name)
{
    size_t len = strlen(name);
    return n.n == len && strncasecmp((const char *)n.p, name, len) == 0;
}

/* Is name one of the comma-separated tokens of a Connection header value? */
static bool connection_names(struct zh_span v, struct zh_span name)
{
    size_t i = 0;
    while (i < v.n) {
        while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
            i++;
        size_t b = i;
        while (i < v.n && v.p[i] != ',')
            i++;
        size_t e = i;
        while (e > b && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t'))
            e--;
        if (e - b == name.n && name.n &&
            strncasecmp((const char *)v.p + b, (const char *)name.p, name.n) == 0)
            return true;
    }
    return false;
}

/* Hop-by-hop headers (RFC 9110 section 7.6.1) are about the handler's own hop, never the client's:
 * the fixed list plus every header the handler's Connection header names. Framing is ours. */
static bool hop_by_hop(const struct zh_zhttp_packet *p, struct zh_span n)
{
    static const char *const fixed[] = {"Connection", "Keep-Alive",       "Upgrade",          "TE",
                                        "Trailer",    "Proxy-Connection", "Transfer-Encoding"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (header_is(n, fixed[i]))
            return true;
    for (size_t i = 0; i < p->n_headers; i++)
        if (header_is(p->headers[i].name, "Connection") && connection_names(p->headers[i].value, n))
            return true;
    return false;
}

int zh_response_status(const struct zh_zhttp_packet *p)
{
    if (!(p->has & ZH_ZF_CODE))
        return 200;
    return p->code >= 100 && p->code <= 599 ? (int)p->code : -1;
}

/* The handler's headers for the client: hop-by-hop ones and Content-Length left out (the length,
 * when valid, goes to *len). Returns the number kept. */
static size_t client_headers(const struct zh_zhttp_packet *p, struct zh_http1_header *hdrs,
                             bool *have_len, uint64_t *len)
{
    size_t nh = 0;
    for (size_t i = 0; i < p->n_headers; i++) {
        struct zh_span n = p->headers[i].name, v = p->headers[i].value;
        if (header_is(n, "Content-Length")) {
            char tmp[24];
            if (v.n > 0 && v.n < sizeof(tmp) && v.p[0] >= '0' && v.p[0] <= '9') {
                memcpy(tmp, v.p, v.n);
                tmp[v.n] = '\0';
                char *end;
                errno = 0;
                unsigned long long x = strtoull(tmp, &end, 10);
                if (*end == '\0' && errno == 0) {
                    *have_len = true;
                    *len = x;
                }
            }
            continue;
        }
        if (hop_by_hop(p, n))
            continue;
        hdrs[nh].name = (struct zh_http1_span){(const char *)n.p, n.n};
        hdrs[nh].value = (struct zh_http1_span){(const char *)v.p, v.n};
        nh++;
    }
    return nh;
}

int zh_response_interim(struct zh_conn *c, const struct zh_zhttp_packet *p, int code)
{
    const char *refuse = NULL;
    if (c->req_mode)
        refuse = "a 1xx has no meaning in req mode";
    else if (code == 101)
        refuse = "101 without an upgrade request";
    else if (code != 100 && code != 103)
        refuse = "only 100 and 103 are forwarded";
    else if (p->body.n > 0)
        refuse = "a 1xx has no body";
    if (refuse) {
        zh_debug("session %.*s: handler sent %d: %s: 502", (int)c->id_len, c->id, code, refuse);
        return -1;
    }
    /* RFC 9110 section 15.2: never to an HTTP/1.0 client; a 100 only to a client that asked for it
     * and has not had one (zhttpd sends it itself once the handler grants credits). */
    const char *drop = NULL;
    if (c->minor < 1)
        drop = "an HTTP/1.0 client";
    else if (code == 100 && !c->expect_continue)
        drop = "a client not waiting for 100 Continue";
    if (drop) {
        zh_info("session %.*s: handler sent %d, not forwarded to %s", (int)c->id_len, c->id, code,
                drop);
        return 0;
    }
    struct zh_http1_header hdrs[ZH_ZHTTP_MAX_HEADERS];
    bool have_len = false;
    uint64_t len = 0;
    struct zh_http1_resp r = {
        .minor_version = c->minor,
        .status = code,
        .headers = hdrs,
        .num_headers = client_headers(p, hdrs, &have_len, &len),
        .body = ZH_HTTP1_BODY_NONE,
        .conn = ZH_HTTP1_CONN_KEEP_ALIVE,
    };
    if (p->reason.p)
        r.reason = (struct zh_http1_span){(const char *)p->reason.p, p->reason.n};
    struct zh_buf b = {0};
    if (zh_http1_write_response_head(&b, &r) < 0) {
        zh_buf_free(&b);
        zh_debug("session %.*s: handler sent an invalid %d head: 502", (int)c->id_len, c->id, code);
        return -1;
    }
    if (code == 100)
        c->expect_continue = false;
    zh_conn__queue(c, b.data, b.len);
    zh_buf_free(&b);
    return 0;
}

int zh_response_head(struct zh_conn *c, const struct zh_zhttp_packet *p, bool more)
{
    struct zh_http1_header hdrs[ZH_ZHTTP_MAX_HEADERS];
    bool have_len = false;
    uint64_t len = 0;
    size_t nh = client_headers(p, hdrs, &have_len, &len);
    int code = zh_response_status(p);
    if (code < 200)
        return -1; /* out of range, or a 1xx: the callers deal with interim responses first */
    /* A response that starts before the request body was read in full ends the connection: the
     * rest of the body cannot be told from a next request. Say so in this head. */
    if (!c->body_done)
        c->keep_alive = false;
    struct zh_http1_resp r = {
        .minor_version = c->minor,
        .status = code,
        .headers = hdrs,
        .num_headers = nh,
        .conn = c->keep_alive ? ZH_HTTP1_CONN_KEEP_ALIVE : ZH_HTTP1_CONN_CLOSE,
    };
    if (p->reason.p)
        r.reason = (struct zh_http1_span){(const char *)p->reason.p, p->reason.n};
    bool no_body = code == 204 || code == 304;
    if (no_body) {
        r.body = ZH_HTTP1_BODY_NONE;
    } else if (!more) {
        r.body = ZH_HTTP1_BODY_LENGTH;
        r.content_length = c->is_head && have_len ? len : p->body.n;
    } else if (have_len) {
        r.body = ZH_HTTP1_BODY_LENGTH;
        r.content_length = len;
    } else if (c->minor >= 1) {
        r.body = ZH_HTTP1_BODY_CHUNKED;
    } else if (c->is_head) {
        r.body = ZH_HTTP1_BODY_NONE; /* no body follows a HEAD answer: no need to close */
    } else {
        /* HTTP/1.0 and no length: only the close can end the body. */
        r.body = ZH_HTTP1_BODY_CLOSE;
        c->keep_alive = false;
        r.conn = ZH_HTTP1_CONN_CLOSE;
    }
    c->resp_body = (c->is_head || no_body) ? ZH_HTTP1_BODY_NONE : r.body;
    c->resp_left = r.content_length;
    struct zh_buf b = {0};
    if (zh_http1_write_response_head(&b, &r) < 0) {
        zh_buf_free(&b);
        return -1;
    }
    zh_conn__queue(c, b.data, b.len);
    zh_buf_free(&b);
    zh_conn__set_state(c, ZH_CONN_RESPONSE);
    zh_metric_status(ZH_M_S_RESP_1, code);
    c->log_status = code;
    if (c->has_session)
        zh_metric_observe(ZH_MH_S_FIRST_BYTE, zh_conn__now(c) - c->sess_start_ms);
    return 0;
}

void zh_response_body(struct zh_conn *c, struct zh_span body, bool more)
{
    if (body.n > 0 && c->resp_body != ZH_HTTP1_BODY_NONE) {
        size_t n = body.n;
        if (c->resp_body == ZH_HTTP1_BODY_LENGTH && n > c->resp_left)
            n = (size_t)c->resp_left; /* the handler's Content-Length wins; the excess is dropped */
        c->log_bytes += n;
        zh_metric_add(ZH_M_S_BYTES_OUT, n);
        if (c->resp_body == ZH_HTTP1_BODY_CHUNKED && n > 0) {
            char hdr[ZH_HTTP1_CHUNK_HEADER_MAX];
            size_t hn = zh_http1_format_chunk_header(hdr, n);
            zh_conn__queue(c, hdr, hn);
            zh_conn__queue(c, body.p, n);
            zh_conn__queue(c, "\r\n", 2);
        } else if (n > 0) {
            zh_conn__queue(c, body.p, n);
        }
        if (c->resp_body == ZH_HTTP1_BODY_LENGTH)
            c->resp_left -= n;
    }
    c->unacked += body.n;
    if (!more) {
        if (c->resp_body == ZH_HTTP1_BODY_CHUNKED)
            zh_conn__queue(c, "0\r\n\r\n", 5);
        if (c->resp_body == ZH_HTTP1_BODY_CLOSE ||
            (c->resp_body == ZH_HTTP1_BODY_LENGTH && c->resp_left > 0))
            c->keep_alive = false;
        zh_conn__response_done(c);
        return;
    }
    zh_conn__flush(c);
}
