#include "client/client.h"

#include <curl/curl.h>
#include <string.h>

#include "client/outbound.h"
#include "shared/proto/err.h"
#include "shared/proto/mem.h"
#include "shared/rt/log.h"

#define MAX_RESP_HEADERS ZH_ZHTTP_MAX_HEADERS

/* One req-mode request: the received message (its envelope and the spans the request points into)
 * stays alive until the answer is sent. */
struct creq {
    struct creq *prev, *next;
    struct zh_client *c;
    CURL *easy;
    struct zh_zmsg *msg;
    uint32_t env_frames; /* routing frames + empty delimiter, echoed on the reply */
    struct zh_span id;
    struct zh_span user_data;
    struct curl_slist *headers;
    char *url;
    char *method;
    uint64_t max_size;
    bool too_big;
    bool head_done; /* blank line after the final header block seen */
    int code;
    struct zh_buf reason;
    struct zh_buf hdr_store; /* "name\0value\0" pairs */
    size_t n_hdr;
    struct zh_buf body;
};

struct zh_client {
    struct zh_loop *loop;
    struct zh_zport *port;
    unsigned worker;
    struct zh_client_config cfg;
    struct zh_outbound *out;
    struct creq *reqs;
    size_t n_reqs;
    bool closing;
};

static void creq_unlink(struct creq *r)
{
    struct zh_client *c = r->c;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    c->n_reqs--;
}

static void creq_free(struct creq *r)
{
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    zh_free(r->url);
    zh_free(r->method);
    zh_buf_free(&r->reason);
    zh_buf_free(&r->hdr_store);
    zh_buf_free(&r->body);
    zh_zmsg_free(r->msg);
    zh_free(r);
}

/* Send pkt back through the req socket inside the request's envelope. */
static void send_req_reply(struct zh_client *c, const struct zh_zmsg *req, uint32_t env_frames,
                           const struct zh_zhttp_packet *pkt)
{
    struct zh_buf enc = {0};
    zh_zhttp_encode(pkt, &enc);
    struct zh_zmsg *m = zh_zmsg_new(ZH_ZS_C_REQ, enc.len + 256);
    for (uint32_t i = 0; i < env_frames; i++) {
        struct zh_span f = zh_zmsg_frame(req, i);
        zh_zmsg_add(&m, f.p, f.n);
    }
    zh_zmsg_add(&m, enc.data, enc.len);
    zh_buf_free(&enc);
    zh_zport_send(c->port, m);
}

static void send_req_error(struct zh_client *c, const struct zh_zmsg *req, uint32_t env_frames,
                           struct zh_span id, struct zh_span user_data, const char *condition)
{
    struct zh_zhttp_packet *pkt = zh_malloc(sizeof(*pkt));
    zh_zhttp_packet_init(pkt);
    if (id.p) {
        pkt->n_ids = 1;
        pkt->ids[0].id = id;
    }
    pkt->type = ZH_ZHTTP_ERROR;
    pkt->condition = zh_span_str(condition);
    pkt->user_data = user_data;
    send_req_reply(c, req, env_frames, pkt);
    zh_free(pkt);
}

/* ---- curl callbacks: they only record, never call back into curl ---- */

static size_t header_cb(char *p, size_t size, size_t n, void *data)
{
    struct creq *r = data;
    size_t len = size * n;
    size_t l = len;
    while (l > 0 && (p[l - 1] == '\r' || p[l - 1] == '\n'))
        l--;
    if (l >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* A new status line: an interim (1xx) block before it is forgotten. */
        const char *sp = memchr(p, ' ', l);
        r->code = 0;
        r->head_done = false;
        zh_buf_reset(&r->reason);
        zh_buf_reset(&r->hdr_store);
        r->n_hdr = 0;
        if (sp) {
            const char *end = p + l;
            const char *q = sp + 1;
            int code = 0;
            while (q < end && *q >= '0' && *q <= '9' && code < 1000)
                code = code * 10 + (*q++ - '0');
            r->code = code;
            if (q < end && *q == ' ')
                q++;
            zh_buf_append(&r->reason, q, (size_t)(end - q));
        }
        return len;
    }
    if (l == 0) {
        r->head_done = true;
        return len;
    }
    const char *colon = memchr(p, ':', l);
    if (!colon || r->n_hdr >= MAX_RESP_HEADERS)
        return len;
    size_t nl = (size_t)(colon - p);
    const char *v = colon + 1;
    const char *end = p + l;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    /* Hop-by-hop framing is libcurl's business: the body we deliver is already de-chunked. */
    if ((nl == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) ||
        (nl == 10 && strncasecmp(p, "Connection", 10) == 0) ||
        (nl == 10 && strncasecmp(p, "Keep-Alive", 10) == 0))
        return len;
    zh_buf_append(&r->hdr_store, p, nl);
    zh_buf_putc(&r->hdr_store, 0);
    zh_buf_append(&r->hdr_store, v, (size_t)(end - v));
    zh_buf_putc(&r->hdr_store, 0);
    r->n_hdr++;
    return len;
}

static size_t write_cb(char *p, size_t size, size_t n, void *data)
{
    struct creq *r = data;
    size_t len = size * n;
    if (r->body.len + len > r->max_size) {
        r->too_big = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    zh_buf_append(&r->body, p, len);
    return len;
}

static const char *condition_for(const struct creq *r, CURLcode rc)
{
    if (r->too_big)
        return "max-size-exceeded";
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
        return "remote-connection-failed";
    case CURLE_OPERATION_TIMEDOUT:
        return "connection-timeout";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
        return "tls-error";
    case CURLE_TOO_MANY_REDIRECTS:
        return "too-many-redirects";
    default:
        return "undefined-condition";
    }
}

static void req_done(CURL *easy, CURLcode rc, void *data)
{
    struct creq *r = data;
    struct zh_client *c = r->c;
    ZH_UNUSED(easy);
    if (rc != CURLE_OK) {
        const char *cond = condition_for(r, rc);
        zh_info("req %s %s failed: %s (%s)", r->method, r->url, cond, curl_easy_strerror(rc));
        send_req_error(c, r->msg, r->env_frames, r->id, r->user_data, cond);
    } else {
        struct zh_zhttp_packet *pkt = zh_malloc(sizeof(*pkt));
        zh_zhttp_packet_init(pkt);
        if (r->id.p) {
            pkt->n_ids = 1;
            pkt->ids[0].id = r->id;
        }
        pkt->has |= ZH_ZF_CODE | ZH_ZF_HEADERS;
        pkt->code = r->code;
        pkt->reason.p = r->reason.data ? r->reason.data : (const uint8_t *)"";
        pkt->reason.n = r->reason.len;
        const uint8_t *h = r->hdr_store.data;
        for (size_t i = 0; i < r->n_hdr; i++) {
            size_t nl = strlen((const char *)h);
            size_t vl = strlen((const char *)h + nl + 1);
            pkt->headers[i].name = (struct zh_span){h, nl};
            pkt->headers[i].value = (struct zh_span){h + nl + 1, vl};
            h += nl + vl + 2;
        }
        pkt->n_headers = r->n_hdr;
        pkt->body.p = r->body.data ? r->body.data : (const uint8_t *)"";
        pkt->body.n = r->body.len;
        pkt->user_data = r->user_data;
        zh_debug("req %s %s -> %d (%zu bytes) on worker %u", r->method, r->url, r->code,
                 r->body.len, c->worker);
        send_req_reply(c, r->msg, r->env_frames, pkt);
        zh_free(pkt);
    }
    creq_unlink(r);
    creq_free(r);
}

/* ---- request set-up ---- */

static bool span_has_ctl(struct zh_span s)
{
    for (size_t i = 0; i < s.n; i++)
        if (s.p[i] == '\r' || s.p[i] == '\n' || s.p[i] == '\0')
            return true;
    return false;
}

static bool header_is(struct zh_span name, const char *s)
{
    size_t n = strlen(s);
    return name.n == n && strncasecmp((const char *)name.p, s, n) == 0;
}

/* Validate the request and configure r->easy. Returns NULL, or the error condition to answer. */
static const char *setup_transfer(struct zh_client *c, struct creq *r,
                                  const struct zh_zhttp_packet *pkt)
{
    if (!pkt->uri.p || pkt->uri.n == 0)
        return "bad-request";
    if (pkt->has & ZH_ZF_MORE && pkt->more)
        return "bad-request"; /* req mode carries the whole body inline */
    r->url = zh_strndup((const char *)pkt->uri.p, pkt->uri.n);
    if (strncmp(r->url, "http://", 7) != 0 && strncmp(r->url, "https://", 8) != 0)
        return "bad-request"; /* ws(s) and other schemes have no req mode */
    if (!pkt->method.p || pkt->method.n == 0 || span_has_ctl(pkt->method) ||
        memchr(pkt->method.p, ' ', pkt->method.n) || span_has_ctl(pkt->uri))
        return "bad-request";
    r->method = zh_strndup((const char *)pkt->method.p, pkt->method.n);
    bool is_head = strcmp(r->method, "HEAD") == 0;
    if (is_head && pkt->body.n > 0)
        return "content-not-allowed";

    CURL *e = curl_easy_init();
    r->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* environment proxies are ignored */
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    if (c->cfg.connect_timeout_ms)
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->cfg.connect_timeout_ms);
    if (pkt->has & ZH_ZF_TIMEOUT && pkt->timeout > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)pkt->timeout);
    if (c->cfg.timeout_ms) {
        /* Inactivity: fewer than 1 byte/s for timeout seconds. */
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)(c->cfg.timeout_ms / 1000));
    }
    if (is_head) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(r->method, "GET") != 0 || pkt->body.n > 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
        if (pkt->body.n > 0 || strcmp(r->method, "GET") != 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)pkt->body.n);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, pkt->body.p ? (const char *)pkt->body.p : "");
        }
    }
    bool have_accept = false;
    struct zh_buf line = {0};
    for (size_t i = 0; i < pkt->n_headers; i++) {
        struct zh_span n = pkt->headers[i].name, v = pkt->headers[i].value;
        if (n.n == 0 || span_has_ctl(n) || span_has_ctl(v) || memchr(n.p, ':', n.n)) {
            zh_buf_free(&line);
            return "bad-request";
        }
        /* Host comes from the uri; framing headers are libcurl's. */
        if (header_is(n, "Host") || header_is(n, "Content-Length") ||
            header_is(n, "Transfer-Encoding") || header_is(n, "Connection"))
            continue;
        if (header_is(n, "Accept"))
            have_accept = true;
        zh_buf_reset(&line);
        zh_buf_append(&line, n.p, n.n);
        if (v.n == 0) {
            zh_buf_putc(&line, ';'); /* libcurl's way to send an empty header */
        } else {
            zh_buf_puts(&line, ": ");
            zh_buf_append(&line, v.p, v.n);
        }
        r->headers = curl_slist_append(r->headers, zh_buf_cstr(&line));
    }
    zh_buf_free(&line);
    if (!have_accept)
        r->headers = curl_slist_append(r->headers, "Accept:"); /* no default we did not ask for */
    r->headers = curl_slist_append(r->headers, "Expect:");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    r->max_size = c->cfg.max_response_size;
    if (pkt->has & ZH_ZF_MAX_SIZE && pkt->max_size >= 0)
        r->max_size = (uint64_t)pkt->max_size;
    return NULL;
}

static void on_req(struct zh_client *c, struct zh_zmsg *m)
{
    /* [envelope…, "", payload]: the delimiter is the frame just before the payload. */
    if (m->nframes < 3 || m->frames[m->nframes - 2].len != 0) {
        zh_warn("client-req: message without an empty delimiter frame dropped");
        zh_zmsg_free(m);
        return;
    }
    uint32_t env = m->nframes - 1;
    struct zh_span payload = zh_zmsg_frame(m, m->nframes - 1);
    struct zh_zhttp_packet *pkt = zh_malloc(sizeof(*pkt));
    struct zh_zhttp_error err;
    struct zh_span none = {NULL, 0};
    if (zh_zhttp_decode(payload.p, payload.n, pkt, &err) < 0) {
        zh_warn("client-req: malformed packet: %s", err.reason);
        send_req_error(c, m, env, none, none, "bad-request");
        zh_free(pkt);
        zh_zmsg_free(m);
        return;
    }
    struct zh_span id = pkt->n_ids == 1 && !(pkt->has & ZH_ZF_MULTI_ID) ? pkt->ids[0].id : none;
    if (pkt->type != ZH_ZHTTP_DATA || (pkt->has & ZH_ZF_MULTI_ID)) {
        zh_warn("client-req: packet of type '%s' is not a request", zh_zhttp_type_name(pkt->type));
        send_req_error(c, m, env, id, pkt->user_data, "bad-request");
        zh_free(pkt);
        zh_zmsg_free(m);
        return;
    }
    if (c->closing || (c->cfg.max_open_requests && c->n_reqs >= c->cfg.max_open_requests)) {
        zh_warn("client-req: %s, request refused",
                c->closing ? "shutting down" : "too many requests");
        send_req_error(c, m, env, id, pkt->user_data, "undefined-condition");
        zh_free(pkt);
        zh_zmsg_free(m);
        return;
    }
    struct creq *r = zh_calloc(1, sizeof(*r));
    r->c = c;
    r->msg = m;
    r->env_frames = env;
    r->id = id;
    r->user_data = pkt->user_data;
    const char *cond = setup_transfer(c, r, pkt);
    zh_free(pkt);
    if (!cond && zh_outbound_add(c->out, r->easy, req_done, r) < 0)
        cond = "undefined-condition";
    if (cond) {
        zh_info("client-req: request refused: %s", cond);
        send_req_error(c, m, env, r->id, r->user_data, cond);
        creq_free(r);
        return;
    }
    r->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = r;
    c->reqs = r;
    c->n_reqs++;
    zh_debug("worker %u: req %s %s started", c->worker, r->method, r->url);
}

/* A stream-mode packet. Stream sessions are the client-mode issue's work; until then every packet
 * names an unknown session and gets the role's answer (cancel), and new stream requests are refused
 * with an explicit error. */
static void on_stream(struct zh_client *c, struct zh_zmsg *m)
{
    struct zh_span payload = zh_zmsg_frame(m, m->nframes - 1);
    struct zh_zhttp_packet *pkt = zh_malloc(sizeof(*pkt));
    struct zh_zhttp_error err;
    if (zh_zhttp_decode(payload.p, payload.n, pkt, &err) < 0) {
        zh_warn("%s: malformed packet dropped: %s", zh_zsock_name(m->sock), err.reason);
        goto out;
    }
    if (!pkt->from.p || pkt->n_ids == 0) {
        zh_warn("%s: packet without from/id dropped", zh_zsock_name(m->sock));
        goto out;
    }
    bool first = m->sock == ZH_ZS_C_IN;
    if (!first && zh_session_unknown_action(ZH_ROLE_CLIENT, pkt) == ZH_UNKNOWN_DROP)
        goto out;
    struct zh_zhttp_packet *rep = zh_malloc(sizeof(*rep));
    zh_zhttp_packet_init(rep);
    rep->from = zh_span_str(c->cfg.instance_id);
    rep->n_ids = pkt->n_ids;
    for (size_t i = 0; i < pkt->n_ids; i++)
        rep->ids[i].id = pkt->ids[i].id;
    if (pkt->has & ZH_ZF_MULTI_ID)
        rep->has |= ZH_ZF_MULTI_ID;
    if (first) {
        zh_warn("client-in: stream-mode requests are not supported yet; answering error");
        rep->type = ZH_ZHTTP_ERROR;
        rep->condition = zh_span_str("undefined-condition");
    } else {
        zh_info("client-in-stream: packet for unknown session, answering cancel");
        rep->type = ZH_ZHTTP_CANCEL;
    }
    rep->user_data = pkt->user_data;
    /* one PUB frame: "<from> T…" */
    struct zh_buf frame = {0};
    zh_buf_append(&frame, pkt->from.p, pkt->from.n);
    zh_buf_putc(&frame, ' ');
    zh_zhttp_encode(rep, &frame);
    struct zh_zmsg *out = zh_zmsg_new(ZH_ZS_C_OUT, frame.len);
    zh_zmsg_add(&out, frame.data, frame.len);
    zh_buf_free(&frame);
    zh_zport_send(c->port, out);
    zh_free(rep);
out:
    zh_free(pkt);
    zh_zmsg_free(m);
}

void zh_client_on_zmsg(struct zh_client *c, struct zh_zmsg *m)
{
    if (m->sock == ZH_ZS_C_REQ)
        on_req(c, m);
    else
        on_stream(c, m);
}

struct zh_client *zh_client_new(struct zh_loop *loop, struct zh_zport *port, unsigned worker,
                                const struct zh_client_config *cfg)
{
    struct zh_client *c = zh_calloc(1, sizeof(*c));
    c->loop = loop;
    c->port = port;
    c->worker = worker;
    c->cfg = *cfg;
    c->out = zh_outbound_new(loop);
    return c;
}

void zh_client_shutdown(struct zh_client *c, int cancel)
{
    c->closing = true;
    if (!cancel)
        return;
    while (c->reqs) {
        struct creq *r = c->reqs;
        zh_outbound_remove(c->out, r->easy);
        zh_info("req %s %s cancelled by shutdown", r->method, r->url);
        send_req_error(c, r->msg, r->env_frames, r->id, r->user_data, "undefined-condition");
        creq_unlink(r);
        creq_free(r);
    }
}

size_t zh_client_active(const struct zh_client *c)
{
    return c->n_reqs;
}

void zh_client_free(struct zh_client *c)
{
    if (!c)
        return;
    zh_client_shutdown(c, 1);
    zh_outbound_free(c->out);
    zh_free(c);
}
