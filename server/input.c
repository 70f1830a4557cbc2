/* Request input of a server connection: the head (parsed, refused or started in its mode), the
 * per-request state, the uri and header fields of the first packet, and the input buffer's body
 * bytes (chunked framing decoded in place). */
#include "server/conn.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "shared/proto/mem.h"
#include "shared/rt/log.h"

void zh_input_build_uri(struct zh_conn *c, const struct zh_http1_framing *f, struct zh_buf *uri)
{
    if (c->req.target_form == ZH_HTTP1_ABSOLUTE_FORM) {
        if (c->ws) { /* http(s)://... -> ws(s)://... */
            zh_buf_puts(uri, "ws");
            zh_buf_append(uri, c->req.target.p + 4, c->req.target.len - 4);
            return;
        }
        zh_buf_append(uri, c->req.target.p, c->req.target.len);
        return;
    }
    if (c->ws)
        zh_buf_puts(uri, c->tls ? "wss://" : "ws://");
    else
        zh_buf_puts(uri, c->tls ? "https://" : "http://");
    if (f->host.p && f->host.len)
        zh_buf_append(uri, f->host.p, f->host.len);
    else
        zh_buf_puts(uri, "localhost");
    if (c->req.target_form == ZH_HTTP1_ORIGIN_FORM)
        zh_buf_append(uri, c->req.target.p, c->req.target.len);
    else
        zh_buf_putc(uri, '/');
}

void zh_input_request_fields(struct zh_conn *c, struct zh_zhttp_packet *p,
                             const struct zh_http1_header *hdrs, size_t nh,
                             const struct zh_http1_framing *f, struct zh_buf *uri)
{
    zh_input_build_uri(c, f, uri);
    size_t mn = c->req.method.len < sizeof(c->log_method) - 1 ? c->req.method.len
                                                              : sizeof(c->log_method) - 1;
    memcpy(c->log_method, c->req.method.p, mn);
    c->log_method[mn] = '\0';
    const char *h = strstr(zh_buf_cstr(uri), "://");
    h = h ? h + 3 : "";
    size_t hn = strcspn(h, "/?#");
    if (hn > sizeof(c->log_host) - 1)
        hn = sizeof(c->log_host) - 1;
    memcpy(c->log_host, h, hn);
    c->log_host[hn] = '\0';
    const char *path = h + hn;
    size_t pn = strcspn(path, "?#");
    if (pn > sizeof(c->log_path) - 1)
        pn = sizeof(c->log_path) - 1;
    memcpy(c->log_path, path, pn);
    c->log_path[pn] = '\0';
    c->log_status = 0;
    c->log_bytes = 0;
    c->log_done = false;
    p->method = (struct zh_span){(const uint8_t *)c->req.method.p, c->req.method.len};
    p->uri = (struct zh_span){uri->data, uri->len};
    p->has |= ZH_ZF_HEADERS;
    if (nh > ZH_ZHTTP_MAX_HEADERS)
        nh = ZH_ZHTTP_MAX_HEADERS;
    for (size_t i = 0; i < nh; i++) {
        p->headers[i].name = (struct zh_span){(const uint8_t *)hdrs[i].name.p, hdrs[i].name.len};
        p->headers[i].value = (struct zh_span){(const uint8_t *)hdrs[i].value.p, hdrs[i].value.len};
    }
    p->n_headers = nh;
    if (c->peer_addr[0]) {
        p->peer_address = zh_span_str(c->peer_addr);
        p->has |= ZH_ZF_PEER_PORT;
        p->peer_port = c->peer_port;
    }
    zh_debug("worker %u: %.*s %.*s -> session %.*s", c->s->worker, (int)c->req.method.len,
             c->req.method.p, (int)uri->len, (const char *)uri->data, (int)c->id_len, c->id);
}

/* Per-request state from the framing decision. */
static void request_begin(struct zh_conn *c, const struct zh_http1_framing *f)
{
    zh_handler_session_begin(c);
    c->minor = c->req.minor_version;
    c->keep_alive = (f->flags & ZH_HTTP1_F_KEEP_ALIVE) != 0 && !c->s->closing;
    c->is_head = c->req.method.len == 4 && memcmp(c->req.method.p, "HEAD", 4) == 0;
    c->req_body = f->body;
    c->body_left = f->body == ZH_HTTP1_BODY_LENGTH ? f->content_length : 0;
    c->body_done = f->body == ZH_HTTP1_BODY_NONE ||
                   (f->body == ZH_HTTP1_BODY_LENGTH && f->content_length == 0);
    c->body_off = 0;
    c->body_ready = 0;
    c->chunk_done = false;
    if (f->body == ZH_HTTP1_BODY_CHUNKED)
        zh_http1_chunked_init(&c->chunked, c->s->cfg.max_header_size);
    c->expect_continue = (f->flags & ZH_HTTP1_F_EXPECT_CONTINUE) && !c->body_done;
    c->resp_body = ZH_HTTP1_BODY_NONE;
    c->unacked = 0;
    c->granted = (int64_t)c->s->cfg.buffer_size;
    c->head_start_ms = 0;
}

void zh_input_consume(struct zh_conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* Remove in[off, off+n) and close the gap. */
static void cut_in(struct zh_conn *c, size_t off, size_t n)
{
    memmove(c->in + off, c->in + off + n, c->in_len - off - n);
    c->in_len -= n;
}

int zh_input_decode_chunked(struct zh_conn *c)
{
    while (!c->chunk_done && c->body_off + c->body_ready < c->in_len) {
        size_t at = c->body_off + c->body_ready;
        size_t used = 0;
        struct zh_http1_span sp = {0};
        int r = zh_http1_chunked_feed(&c->chunked, c->in + at, c->in_len - at, &used, &sp);
        if (r == ZH_PARSE_ERROR) {
            zh_debug("conn %u-%u: bad chunked body: %s", c->s->worker, c->slot,
                     zh_http1_strerror(c->chunked.err));
            zh_handler_cancel(c);
            zh_response_simple(c, zh_http1_err_status(c->chunked.err),
                               zh_http1_strerror(c->chunked.err));
            return -1;
        }
        if (r == ZH_HTTP1_CHUNKED_DATA) {
            size_t skip = (size_t)(sp.p - (c->in + at));
            cut_in(c, at, skip);
            c->body_ready += sp.len;
            cut_in(c, at + sp.len, used - skip - sp.len);
            continue;
        }
        cut_in(c, at, used);
        if (r == ZH_HTTP1_CHUNKED_DONE)
            c->chunk_done = true;
        else
            break;
    }
    return 0;
}

/* Grow the input buffer for a head larger than one buffer, up to the head limit. */
static void grow_for_head(struct zh_conn *c)
{
    size_t limit = c->s->cfg.max_header_size + 1;
    if (c->in_len < c->in_cap || c->in_cap >= limit)
        return;
    size_t cap = c->in_cap * 2 < limit ? c->in_cap * 2 : limit;
    c->in = zh_realloc(c->in, cap);
    c->in_cap = cap;
}

static bool http_scheme(struct zh_http1_span t)
{
    return (t.len >= 7 && strncasecmp(t.p, "http://", 7) == 0) ||
           (t.len >= 8 && strncasecmp(t.p, "https://", 8) == 0);
}

/* Parse and start the next request, if a whole head is buffered. */
void zh_input_head(struct zh_conn *c)
{
    if (c->in_len == 0 || c->tail_len > 0)
        return;
    struct zh_http1_header hdrs[ZH_CONN_MAX_HEADERS];
    size_t nh = ZH_CONN_MAX_HEADERS;
    int r = zh_http1_parse_request(&c->req, c->in, c->in_len, c->s->cfg.max_header_size, hdrs, &nh);
    if (r == ZH_PARSE_INCOMPLETE) {
        grow_for_head(c);
        if (c->in_eof)
            zh_conn_close(c, "client closed mid-head");
        else
            zh_conn__flush(c);
        return;
    }
    c->minor = 1;
    c->is_head = false;
    if (r == ZH_PARSE_ERROR) {
        zh_debug("conn %u-%u: bad request: %s", c->s->worker, c->slot,
                 zh_http1_strerror(c->req.err));
        zh_response_simple(c, zh_http1_err_status(c->req.err), zh_http1_strerror(c->req.err));
        return;
    }
    struct zh_http1_framing f;
    c->minor = c->req.minor_version;
    if (zh_http1_req_framing(&c->req, hdrs, nh, &f) == ZH_PARSE_ERROR) {
        zh_debug("conn %u-%u: bad request: %s", c->s->worker, c->slot, zh_http1_strerror(f.err));
        zh_response_simple(c, zh_http1_err_status(f.err), zh_http1_strerror(f.err));
        return;
    }
    const char *refuse = NULL;
    int status = 0;
    if (c->req.target_form == ZH_HTTP1_ABSOLUTE_FORM && !http_scheme(c->req.target)) {
        /* The ZHTTP uri's scheme picks the protocol (ws:// is WebSocket): only http(s) targets
         * may become one. */
        status = 400;
        refuse = zh_http1_strerror(ZH_HTTP1_E_BAD_TARGET);
    } else if (c->s->closing) {
        status = 503;
        refuse = "server shutting down";
    } else if ((f.flags & ZH_HTTP1_F_UPGRADE_WEBSOCKET) && c->req_mode) {
        status = 400;
        refuse = "WebSocket is not available on a req-mode port";
    } else if (f.flags & ZH_HTTP1_F_UPGRADE_WEBSOCKET) {
        status = zh_wsmode_check(c, hdrs, nh, &refuse);
    } else if (f.flags & ZH_HTTP1_F_EXPECT_OTHER) {
        status = 417;
        refuse = "expectation not supported";
    }
    if (refuse) {
        zh_debug("conn %u-%u: %.*s refused: %d %s", c->s->worker, c->slot, (int)c->req.method.len,
                 c->req.method.p, status, refuse);
        c->is_head = c->req.method.len == 4 && memcmp(c->req.method.p, "HEAD", 4) == 0;
        zh_response_simple(c, status, refuse);
        return;
    }
    c->ws = false;
    request_begin(c, &f);
    if (f.flags & ZH_HTTP1_F_UPGRADE_WEBSOCKET) {
        zh_wsmode_start(c, hdrs, nh, &f);
        size_t hl = c->req.head_len;
        zh_http1_req_init(&c->req);
        zh_input_consume(c, hl);
        zh_conn__flush(c);
        return;
    }
    if (c->req_mode) {
        zh_reqmode_start(c, &f);
        return;
    }
    zh_streammode_start(c, hdrs, nh, &f);
    size_t head_len = c->req.head_len;
    zh_http1_req_init(&c->req);
    zh_input_consume(c, head_len);
    zh_conn__flush(c);
}
