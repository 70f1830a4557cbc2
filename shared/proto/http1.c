#include "shared/proto/http1.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "shared/proto/mem.h"

/* Character classes, one bit each in charclass[]. */
#define C_TCHAR  0x01 /* token (RFC 9110 section 5.6.2) */
#define C_VALUE  0x02 /* field-vchar, SP, HTAB: what a field value or reason phrase may hold */
#define C_VCHAR  0x04 /* 0x21..0x7e: request-target and version bytes */
#define C_HEX    0x08 /* HEXDIG */
#define C_QDTEXT 0x10 /* qdtext of a quoted-string */
#define C_HOST   0x20 /* reg-name: unreserved, sub-delims and '%' */
#define C_SCHEME 0x40 /* scheme after its first ALPHA */

static const unsigned char charclass[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x12, 0x37, 0x06, 0x17, 0x37, 0x37, 0x37, 0x37, 0x36, 0x36, 0x37, 0x77, 0x36, 0x77, 0x77, 0x16,
    0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x16, 0x36, 0x16, 0x36, 0x16, 0x16,
    0x16, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77,
    0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x16, 0x06, 0x16, 0x17, 0x37,
    0x17, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77,
    0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x16, 0x17, 0x16, 0x37, 0x00,
    0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
};

#define IS(c, cls)  (charclass[(unsigned char)(c)] & (cls))
#define IS_OWS(c)   ((c) == ' ' || (c) == '\t')
#define IS_DIGIT(c) ((unsigned char)((c) - '0') < 10)

/* The largest Content-Length or chunk size accepted. */
#define LENGTH_MAX ((uint64_t)1 << 62)

/* Line parsers return ZH_HTTP1_OK, a positive enum zh_http1_err, or MORE at the end of the data. */
#define MORE (-1)

/* Word-at-a-time scanning (Bit Twiddling Hacks "hasless"/"hasmore"): each test is exact as a
 * boolean for the whole word, which is all the scanners need before they fall back to bytes. */
#define ONES           0x0101010101010101ull
#define HIGHS          0x8080808080808080ull
#define HAS_LESS(x, n) (((x)-ONES * (n)) & ~(x)&HIGHS)
#define HAS_MORE(x, n) ((((x) + ONES * (127 - (n))) | (x)) & HIGHS)
#define HAS_BYTE(x, b) HAS_LESS((x) ^ (ONES * (b)), 1)

static uint64_t load64(const char *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof(x));
    return x;
}

/* Skip bytes in 0x21..0x7e (request-target and version). */
static const char *scan_vchar(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t x = load64(p);
        if (HAS_LESS(x, 0x21) | HAS_MORE(x, 0x7e))
            break;
        p += 8;
    }
    while (p < end && IS(*p, C_VCHAR))
        p++;
    return p;
}

/* Skip field-value bytes: HTAB, SP..0x7e and obs-text. */
static const char *scan_value(const char *p, const char *end)
{
    for (;;) {
        while (end - p >= 8) {
            uint64_t x = load64(p);
            if (HAS_LESS(x, 0x20) | HAS_BYTE(x, 0x7f))
                break;
            p += 8;
        }
        /* A HTAB stops the word scan but not the value; resume the fast path after it. */
        const char *stop = end - p > 8 ? p + 8 : end;
        while (p < stop && IS(*p, C_VALUE))
            p++;
        if (p < stop || p == end)
            return p;
    }
}

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* Compare s against the lowercase literal lit, ignoring case. */
static int ieq(struct zh_http1_span s, const char *lit, size_t n)
{
    if (s.len != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)s.p[i]) != lit[i])
            return 0;
    return 1;
}
#define IEQ(s, lit) ieq((s), (lit), sizeof(lit) - 1)

static int eq(struct zh_http1_span s, const char *lit, size_t n)
{
    return s.len == n && memcmp(s.p, lit, n) == 0;
}
#define EQ(s, lit) eq((s), (lit), sizeof(lit) - 1)

static struct zh_http1_span span(const char *p, const char *end)
{
    struct zh_http1_span s = {p, (size_t)(end - p)};
    return s;
}

/* The field value between the colon and the CR, without surrounding OWS. */
static struct zh_http1_span trim(const char *p, const char *end)
{
    while (p < end && IS_OWS(*p))
        p++;
    while (end > p && IS_OWS(end[-1]))
        end--;
    return span(p, end);
}

/* ------------------------------------------------------------------------------------------ */
/* Error table */

const char *zh_http1_strerror(enum zh_http1_err err)
{
    static const char *const text[] = {
#define ZH_HTTP1_ERR_TEXT(name, status, txt) txt,
        ZH_HTTP1_ERR_MAP(ZH_HTTP1_ERR_TEXT)
#undef ZH_HTTP1_ERR_TEXT
    };
    if ((unsigned)err >= ZH_ARRAY_SIZE(text))
        return "unknown error";
    return text[err];
}

int zh_http1_err_status(enum zh_http1_err err)
{
    static const short status[] = {
#define ZH_HTTP1_ERR_STATUS(name, st, txt) st,
        ZH_HTTP1_ERR_MAP(ZH_HTTP1_ERR_STATUS)
#undef ZH_HTTP1_ERR_STATUS
    };
    if ((unsigned)err >= ZH_ARRAY_SIZE(status))
        return 400;
    return status[err];
}

/* ------------------------------------------------------------------------------------------ */
/* Request head */

/* Host and authority-form syntax (RFC 3986 authority without userinfo): IP-literal or reg-name,
 * then an optional ":" port. need_port asks for a non-empty host and port (CONNECT). */
static int valid_host(struct zh_http1_span s, int need_port)
{
    const char *p = s.p, *end = s.p + s.len, *start;
    if (p < end && *p == '[') {
        start = ++p;
        while (p < end && (IS(*p, C_HOST) || *p == ':'))
            p++;
        if (p == end || *p != ']' || p == start)
            return 0;
        p++;
    } else {
        start = p;
        while (p < end && IS(*p, C_HOST)) {
            if (*p == '%' && (end - p < 3 || !IS(p[1], C_HEX) || !IS(p[2], C_HEX)))
                return 0;
            p++;
        }
        if (need_port && p == start)
            return 0;
    }
    if (p == end)
        return !need_port;
    if (*p++ != ':')
        return 0;
    start = p;
    while (p < end && IS_DIGIT(*p))
        p++;
    return p == end && (!need_port || p > start);
}

/* RFC 9112 section 3.2: which form the target has, and whether the method allows it. */
static int check_target(struct zh_http1_req *req)
{
    struct zh_http1_span t = req->target;
    if (EQ(t, "*")) {
        req->target_form = ZH_HTTP1_ASTERISK_FORM;
        return EQ(req->method, "OPTIONS") ? ZH_HTTP1_OK : ZH_HTTP1_E_BAD_TARGET;
    }
    if (EQ(req->method, "CONNECT")) {
        req->target_form = ZH_HTTP1_AUTHORITY_FORM;
        return valid_host(t, 1) ? ZH_HTTP1_OK : ZH_HTTP1_E_BAD_TARGET;
    }
    if (t.p[0] == '/') {
        req->target_form = ZH_HTTP1_ORIGIN_FORM;
        return ZH_HTTP1_OK;
    }
    /* absolute-form: scheme ":" ... with scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
    size_t i = 0;
    if ((unsigned)(lower((unsigned char)t.p[0]) - 'a') < 26) {
        for (i = 1; i < t.len && IS(t.p[i], C_SCHEME); i++)
            ;
    }
    if (i == 0 || i == t.len || t.p[i] != ':')
        return ZH_HTTP1_E_BAD_TARGET;
    req->target_form = ZH_HTTP1_ABSOLUTE_FORM;
    return ZH_HTTP1_OK;
}

/* method SP request-target SP HTTP-version CRLF, starting at p (not at CR or LF). */
static int parse_request_line(struct zh_http1_req *req, const char *p, const char *end,
                              const char **next)
{
    const char *start = p;
    while (p < end && IS(*p, C_TCHAR))
        p++;
    if (p == end)
        return MORE;
    if (*p != ' ' || p == start)
        return ZH_HTTP1_E_BAD_METHOD;
    req->method = span(start, p);

    start = ++p;
    p = scan_vchar(p, end);
    if (p == end)
        return MORE;
    if (*p != ' ') {
        if (p > start && (*p == '\r' || *p == '\n'))
            return ZH_HTTP1_E_BAD_VERSION; /* "GET /" CRLF: no version (HTTP/0.9) */
        return ZH_HTTP1_E_BAD_TARGET;
    }
    if (p == start)
        return ZH_HTTP1_E_BAD_TARGET;
    req->target = span(start, p);

    start = ++p;
    p = scan_vchar(p, end);
    if (p == end)
        return MORE;
    size_t vlen = (size_t)(p - start);
    int vok = vlen == 8 && memcmp(start, "HTTP/", 5) == 0 && IS_DIGIT(start[5]) &&
              start[6] == '.' && IS_DIGIT(start[7]);
    if (*p == ' ')
        /* A second space: either trailing junk after a good version or a space in the target. */
        return vok ? ZH_HTTP1_E_BAD_VERSION : ZH_HTTP1_E_BAD_TARGET;
    if (*p == '\n')
        return ZH_HTTP1_E_BARE_LF;
    if (*p != '\r')
        return ZH_HTTP1_E_BAD_VERSION;
    if (p + 1 == end)
        return MORE;
    if (p[1] != '\n')
        return ZH_HTTP1_E_BARE_CR;
    if (!vok)
        return ZH_HTTP1_E_BAD_VERSION;
    if (start[5] != '1' || start[7] > '1') {
        if (start[5] == '2' && start[7] == '0' && EQ(req->method, "PRI") && EQ(req->target, "*"))
            return ZH_HTTP1_E_H2_PREFACE;
        return ZH_HTTP1_E_VERSION_NOT_SUPPORTED;
    }
    req->minor_version = start[7] - '0';
    *next = p + 2;
    return check_target(req);
}

/* field-name ":" OWS field-value OWS CRLF, starting at p (not at CR or LF). */
static int parse_field_line(struct zh_http1_header *h, const char *p, const char *end,
                            const char **next)
{
    const char *start = p;
    if (IS_OWS(*p))
        return ZH_HTTP1_E_OBS_FOLD; /* also whitespace between the request line and a field */
    while (p < end && IS(*p, C_TCHAR))
        p++;
    if (p == end)
        return MORE;
    if (*p != ':' || p == start) {
        if (p == start)
            return ZH_HTTP1_E_BAD_FIELD_NAME;
        if (IS_OWS(*p)) {
            /* "Host : a" is the RFC 9112 section 5.1 case; "Foo Bar: a" just a bad name. */
            while (p < end && IS_OWS(*p))
                p++;
            if (p == end)
                return MORE;
            return *p == ':' ? ZH_HTTP1_E_SPACE_BEFORE_COLON : ZH_HTTP1_E_BAD_FIELD_NAME;
        }
        if (*p == '\r' || *p == '\n')
            return ZH_HTTP1_E_MISSING_COLON;
        return ZH_HTTP1_E_BAD_FIELD_NAME;
    }
    h->name = span(start, p);
    start = ++p;
    p = scan_value(p, end);
    if (p == end)
        return MORE;
    if (*p == '\n')
        return ZH_HTTP1_E_BARE_LF;
    if (*p != '\r')
        return ZH_HTTP1_E_BAD_FIELD_VALUE;
    if (p + 1 == end)
        return MORE;
    if (p[1] != '\n')
        return ZH_HTTP1_E_BARE_CR;
    h->value = trim(start, p);
    *next = p + 2;
    return ZH_HTTP1_OK;
}

void zh_http1_req_init(struct zh_http1_req *req)
{
    memset(req, 0, sizeof(*req));
}

/* Recover the spans of the lines an earlier call validated (before req->_line), now that the
 * buffer may have moved. The lines are known good, so this only looks for delimiters. */
static const char *rebuild(struct zh_http1_req *req, const char *buf,
                           struct zh_http1_header *headers)
{
    const char *p = buf, *end = buf + req->_line;
    if (!req->_in_fields)
        return end; /* only leading empty lines so far */
    while (*p == '\r')
        p += 2;
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    req->method = span(p, sp);
    p = sp + 1;
    sp = memchr(p, ' ', (size_t)(end - p));
    req->target = span(p, sp);
    p = (const char *)memchr(sp, '\n', (size_t)(end - sp)) + 1;
    for (size_t i = 0; i < req->_fields; i++) {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        const char *lf = memchr(colon, '\n', (size_t)(end - colon));
        headers[i].name = span(p, colon);
        headers[i].value = trim(colon + 1, lf - 1);
        p = lf + 1;
    }
    return p;
}

int zh_http1_parse_request(struct zh_http1_req *req, const char *buf, size_t len, size_t max_head,
                           struct zh_http1_header *headers, size_t *num_headers)
{
    size_t cap = *num_headers;
    if (max_head > INT_MAX)
        max_head = INT_MAX;
    size_t lim = len < max_head ? len : max_head;
    const char *end = buf + lim, *p;
    size_t nfields;
    int r;

    /* A caller that did not keep its side of the resume contract gets a fresh parse. */
    if (req->_scan > lim || req->_line > req->_scan || req->_fields > cap)
        zh_http1_req_init(req);

    /* Resuming inside a line: unless a CR or LF arrived, the line is still incomplete and there
     * is nothing to decide. The line is checked in full once it ends, a CR shows up or the limit
     * is reached (so a bad byte inside the limit wins over the limit, as in a one-shot parse). */
    if (req->_scan > req->_line && len < max_head &&
        !memchr(buf + req->_scan, '\n', lim - req->_scan) &&
        !memchr(buf + req->_scan, '\r', lim - req->_scan)) {
        req->_scan = lim;
        return ZH_PARSE_INCOMPLETE;
    }
    p = req->_line ? rebuild(req, buf, headers) : buf;
    nfields = req->_fields;

    if (!req->_in_fields) {
        /* RFC 9112 section 2.2: ignore empty lines before the request line. */
        while (p < end && *p == '\r') {
            if (p + 1 == end)
                goto more;
            if (p[1] != '\n') {
                r = ZH_HTTP1_E_BARE_CR;
                goto error;
            }
            p += 2;
            req->_line = (size_t)(p - buf);
        }
        if (p == end)
            goto more;
        if (*p == '\n') {
            r = ZH_HTTP1_E_BARE_LF;
            goto error;
        }
        r = parse_request_line(req, p, end, &p);
        if (r == MORE)
            goto more;
        if (r != ZH_HTTP1_OK)
            goto error;
        req->_in_fields = 1;
        req->_line = (size_t)(p - buf);
    }

    for (;;) {
        if (p == end)
            goto more;
        if (*p == '\r') {
            if (p + 1 == end)
                goto more;
            if (p[1] != '\n') {
                r = ZH_HTTP1_E_BARE_CR;
                goto error;
            }
            p += 2;
            break;
        }
        if (*p == '\n') {
            r = ZH_HTTP1_E_BARE_LF;
            goto error;
        }
        if (nfields == cap) {
            r = ZH_HTTP1_E_TOO_MANY_HEADERS;
            goto error;
        }
        r = parse_field_line(&headers[nfields], p, end, &p);
        if (r == MORE)
            goto more;
        if (r != ZH_HTTP1_OK)
            goto error;
        req->_fields = ++nfields;
        req->_line = (size_t)(p - buf);
    }
    req->head_len = (size_t)(p - buf);
    req->err = ZH_HTTP1_OK;
    *num_headers = nfields;
    return (int)req->head_len;

more:
    /* Every byte from _line to lim was looked at and none was an LF; a CR at the very end is left
     * for the next call to look at again with the byte after it. */
    req->_scan = lim > req->_line && buf[lim - 1] == '\r' ? lim - 1 : lim;
    if (len < max_head)
        return ZH_PARSE_INCOMPLETE;
    r = req->_in_fields ? ZH_HTTP1_E_HEAD_TOO_LARGE : ZH_HTTP1_E_URI_TOO_LONG;
error:
    req->err = (enum zh_http1_err)r;
    return ZH_PARSE_ERROR;
}

/* ------------------------------------------------------------------------------------------ */
/* Framing */

/* Iterates the elements of a #list value (RFC 9110 section 5.6.1): OWS-trimmed, possibly empty. */
struct list_iter {
    const char *p, *end;
    int done;
};

static int list_next(struct list_iter *it, struct zh_http1_span *el)
{
    if (it->done)
        return 0;
    const char *comma = memchr(it->p, ',', (size_t)(it->end - it->p));
    const char *e = comma ? comma : it->end;
    *el = trim(it->p, e);
    if (comma)
        it->p = comma + 1;
    else
        it->done = 1;
    return 1;
}

static void list_start(struct list_iter *it, struct zh_http1_span v)
{
    it->p = v.p;
    it->end = v.p + v.len;
    it->done = 0;
}

static int is_token(struct zh_http1_span s)
{
    if (s.len == 0)
        return 0;
    for (size_t i = 0; i < s.len; i++)
        if (!IS(s.p[i], C_TCHAR))
            return 0;
    return 1;
}

/* Transfer-Encoding must be exactly "chunked" (RFC 9112 sections 6.1 and 6.3). Empty elements
 * are refused here, unlike other lists, so that no two parsers can disagree on this field. */
static int check_transfer_encoding(struct zh_http1_span v)
{
    struct list_iter it;
    struct zh_http1_span el;
    int chunked = 0, unknown = 0, last_chunked = 0;
    list_start(&it, v);
    while (list_next(&it, &el)) {
        size_t n = 0;
        while (n < el.len && IS(el.p[n], C_TCHAR))
            n++;
        if (n == 0)
            return ZH_HTTP1_E_BAD_TRANSFER_ENCODING;
        struct zh_http1_span name = {el.p, n};
        last_chunked = IEQ(name, "chunked");
        if (last_chunked) {
            if (n != el.len)
                return ZH_HTTP1_E_BAD_TRANSFER_ENCODING; /* chunked has no parameters */
            chunked++;
        } else {
            /* A coding with parameters: token *( OWS ";" OWS name "=" value ). */
            if (n != el.len && el.p[n] != ';' && !IS_OWS(el.p[n]))
                return ZH_HTTP1_E_BAD_TRANSFER_ENCODING;
            unknown++;
        }
    }
    if (chunked > 1)
        return ZH_HTTP1_E_CHUNKED_TWICE;
    if (!last_chunked)
        return ZH_HTTP1_E_CHUNKED_NOT_FINAL;
    if (unknown)
        return ZH_HTTP1_E_UNSUPPORTED_TRANSFER_CODING;
    return ZH_HTTP1_OK;
}

/* Content-Length = 1*DIGIT, at most LENGTH_MAX. */
static int parse_content_length(struct zh_http1_span v, uint64_t *out)
{
    uint64_t n = 0;
    if (v.len == 0)
        return -1;
    for (size_t i = 0; i < v.len; i++) {
        if (!IS_DIGIT(v.p[i]))
            return -1;
        unsigned d = (unsigned)(v.p[i] - '0');
        if (n > (LENGTH_MAX - d) / 10)
            return -1;
        n = n * 10 + d;
    }
    *out = n;
    return 0;
}

int zh_http1_req_framing(const struct zh_http1_req *req, const struct zh_http1_header *headers,
                         size_t num_headers, struct zh_http1_framing *f)
{
    const struct zh_http1_header *cl = NULL, *te = NULL;
    int http11 = req->minor_version == 1;
    int conn_close = 0, conn_keep_alive = 0, conn_upgrade = 0, upgrade_ws = 0;
    size_t hosts = 0;
    struct list_iter it;
    struct zh_http1_span el;
    int r = ZH_HTTP1_OK;

    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < num_headers; i++) {
        const struct zh_http1_header *h = &headers[i];
        /* Dispatch on the name length first: most fields are none of these. */
        switch (h->name.len) {
        case 4:
            if (IEQ(h->name, "host")) {
                if (++hosts > 1) {
                    r = ZH_HTTP1_E_DUPLICATE_HOST;
                    goto error;
                }
                f->host = h->value;
            }
            break;
        case 6:
            /* RFC 9110 section 10.1.1: an HTTP/1.0 expectation is ignored. */
            if (http11 && IEQ(h->name, "expect")) {
                list_start(&it, h->value);
                while (list_next(&it, &el)) {
                    if (IEQ(el, "100-continue"))
                        f->flags |= ZH_HTTP1_F_EXPECT_CONTINUE;
                    else if (el.len)
                        f->flags |= ZH_HTTP1_F_EXPECT_OTHER;
                }
            }
            break;
        case 7:
            /* RFC 9110 section 7.8: Upgrade in an HTTP/1.0 request is ignored. */
            if (http11 && IEQ(h->name, "upgrade")) {
                list_start(&it, h->value);
                while (list_next(&it, &el)) {
                    const char *slash = memchr(el.p, '/', el.len);
                    if (slash)
                        el.len = (size_t)(slash - el.p);
                    if (IEQ(el, "websocket"))
                        upgrade_ws = 1;
                }
            }
            break;
        case 10:
            if (IEQ(h->name, "connection")) {
                list_start(&it, h->value);
                while (list_next(&it, &el)) {
                    if (el.len == 0)
                        continue;
                    if (!is_token(el)) {
                        r = ZH_HTTP1_E_BAD_CONNECTION;
                        goto error;
                    }
                    if (IEQ(el, "close"))
                        conn_close = 1;
                    else if (IEQ(el, "keep-alive"))
                        conn_keep_alive = 1;
                    else if (IEQ(el, "upgrade"))
                        conn_upgrade = 1;
                }
            }
            break;
        case 14:
            if (IEQ(h->name, "content-length")) {
                if (cl) {
                    r = ZH_HTTP1_E_DUPLICATE_CONTENT_LENGTH;
                    goto error;
                }
                cl = h;
            }
            break;
        case 17:
            if (IEQ(h->name, "transfer-encoding")) {
                if (te) {
                    r = ZH_HTTP1_E_DUPLICATE_TRANSFER_ENCODING;
                    goto error;
                }
                te = h;
            }
            break;
        default:
            break;
        }
    }

    /* RFC 9112 section 3.2: a 1.1 request needs exactly one Host, with a valid value. */
    if (hosts == 0 && http11) {
        r = ZH_HTTP1_E_MISSING_HOST;
        goto error;
    }
    if (hosts && !valid_host(f->host, 0)) {
        r = ZH_HTTP1_E_BAD_HOST;
        goto error;
    }

    if (te) {
        if (!http11) {
            r = ZH_HTTP1_E_TRANSFER_ENCODING_HTTP10;
            goto error;
        }
        if (cl) {
            r = ZH_HTTP1_E_CL_AND_TE;
            goto error;
        }
        r = check_transfer_encoding(te->value);
        if (r != ZH_HTTP1_OK)
            goto error;
        f->body = ZH_HTTP1_BODY_CHUNKED;
    } else if (cl) {
        if (parse_content_length(cl->value, &f->content_length) < 0) {
            r = ZH_HTTP1_E_BAD_CONTENT_LENGTH;
            goto error;
        }
        f->body = f->content_length ? ZH_HTTP1_BODY_LENGTH : ZH_HTTP1_BODY_NONE;
    }

    if (http11 ? !conn_close : (conn_keep_alive && !conn_close))
        f->flags |= ZH_HTTP1_F_KEEP_ALIVE;
    if (conn_upgrade && upgrade_ws)
        f->flags |= ZH_HTTP1_F_UPGRADE_WEBSOCKET;
    return 0;

error:
    f->err = (enum zh_http1_err)r;
    f->flags = 0;
    f->body = ZH_HTTP1_BODY_NONE;
    return ZH_PARSE_ERROR;
}

/* ------------------------------------------------------------------------------------------ */
/* Chunked body */

/* Decoder states; each names what the next byte may be. */
enum {
    CH_SIZE_FIRST,      /* first HEXDIG of chunk-size */
    CH_SIZE,            /* more HEXDIG, BWS, ";" or CR */
    CH_SIZE_BWS,        /* BWS after chunk-size: more BWS or ";" */
    CH_EXT_BWS,         /* BWS after an extension: more BWS or ";" */
    CH_EXT_NAME_START,  /* BWS after ";" or the first tchar of chunk-ext-name */
    CH_EXT_NAME,        /* tchar, BWS, "=", ";" or CR */
    CH_EXT_NAME_BWS,    /* BWS after chunk-ext-name: more BWS, "=" or ";" */
    CH_EXT_VAL_START,   /* BWS after "=", a tchar or DQUOTE */
    CH_EXT_TOKEN,       /* tchar, BWS, ";" or CR */
    CH_EXT_QUOTED,      /* qdtext, "\" or DQUOTE */
    CH_EXT_QUOTED_ESC,  /* the byte after "\" */
    CH_EXT_QUOTED_END,  /* BWS, ";" or CR after the closing DQUOTE */
    CH_SIZE_LF,         /* LF ending the chunk-size line */
    CH_DATA,            /* chunk-data */
    CH_DATA_CR,         /* CR after chunk-data */
    CH_DATA_LF,         /* LF after chunk-data */
    CH_TRAILER_START,   /* start of a trailer field line, or CR of the final CRLF */
    CH_TRAILER_NAME,    /* tchar or ":" */
    CH_TRAILER_NAME_WS, /* whitespace after a trailer field name: always an error */
    CH_TRAILER_VALUE,   /* field value bytes or CR */
    CH_TRAILER_LF,      /* LF ending a trailer field line */
    CH_FINAL_LF,        /* LF of the final CRLF */
    CH_DONE,
    CH_ERROR
};

void zh_http1_chunked_init(struct zh_http1_chunked *c, size_t max_trailer)
{
    memset(c, 0, sizeof(*c));
    c->_max_trailer = max_trailer;
    c->_state = CH_SIZE_FIRST;
}

/* The state after CR of a chunk-size line or a BWS/";" in it; e is the error for anything else. */
static int ext_next(int ch, int bws_state, int *e)
{
    if (IS_OWS(ch))
        return bws_state;
    if (ch == ';')
        return CH_EXT_NAME_START;
    if (ch == '\r')
        return CH_SIZE_LF;
    *e = ch == '\n' ? ZH_HTTP1_E_BARE_LF : ZH_HTTP1_E_BAD_CHUNK_EXT;
    return CH_ERROR;
}

/* One byte of a chunk-size line or trailer section: the next state, or CH_ERROR with *e set. */
static int chunked_step(struct zh_http1_chunked *c, int ch, int *e)
{
    unsigned d;
    switch (c->_state) {
    case CH_SIZE_FIRST:
    case CH_SIZE:
        if (IS(ch, C_HEX)) {
            d = (unsigned)(IS_DIGIT(ch) ? ch - '0' : lower(ch) - 'a' + 10);
            if (c->_remaining > (LENGTH_MAX - d) >> 4) {
                *e = ZH_HTTP1_E_CHUNK_TOO_LARGE;
                return CH_ERROR;
            }
            c->_remaining = (c->_remaining << 4) | d;
            return CH_SIZE;
        }
        if (c->_state == CH_SIZE) {
            if (IS_OWS(ch))
                return CH_SIZE_BWS;
            if (ch == ';')
                return CH_EXT_NAME_START;
            if (ch == '\r')
                return CH_SIZE_LF;
        }
        *e = ch == '\n' ? ZH_HTTP1_E_BARE_LF : ZH_HTTP1_E_BAD_CHUNK_SIZE;
        return CH_ERROR;
    case CH_SIZE_BWS:
    case CH_EXT_BWS:
        if (IS_OWS(ch))
            return c->_state;
        if (ch == ';')
            return CH_EXT_NAME_START;
        /* Whitespace may only precede ";": "5 \r\n" has a bad size, "5;a \r\n" a bad extension. */
        *e = c->_state == CH_SIZE_BWS ? ZH_HTTP1_E_BAD_CHUNK_SIZE : ZH_HTTP1_E_BAD_CHUNK_EXT;
        return CH_ERROR;
    case CH_EXT_NAME_START:
        if (IS_OWS(ch))
            return CH_EXT_NAME_START;
        if (IS(ch, C_TCHAR))
            return CH_EXT_NAME;
        *e = ZH_HTTP1_E_BAD_CHUNK_EXT;
        return CH_ERROR;
    case CH_EXT_NAME:
        if (IS(ch, C_TCHAR))
            return CH_EXT_NAME;
        if (ch == '=')
            return CH_EXT_VAL_START;
        return ext_next(ch, CH_EXT_NAME_BWS, e);
    case CH_EXT_NAME_BWS:
        if (IS_OWS(ch))
            return CH_EXT_NAME_BWS;
        if (ch == '=')
            return CH_EXT_VAL_START;
        if (ch == ';')
            return CH_EXT_NAME_START;
        *e = ZH_HTTP1_E_BAD_CHUNK_EXT;
        return CH_ERROR;
    case CH_EXT_VAL_START:
        if (IS_OWS(ch))
            return CH_EXT_VAL_START;
        if (ch == '"')
            return CH_EXT_QUOTED;
        if (IS(ch, C_TCHAR))
            return CH_EXT_TOKEN;
        *e = ZH_HTTP1_E_BAD_CHUNK_EXT;
        return CH_ERROR;
    case CH_EXT_TOKEN:
        if (IS(ch, C_TCHAR))
            return CH_EXT_TOKEN;
        return ext_next(ch, CH_EXT_BWS, e);
    case CH_EXT_QUOTED:
        if (ch == '"')
            return CH_EXT_QUOTED_END;
        if (ch == '\\')
            return CH_EXT_QUOTED_ESC;
        if (IS(ch, C_QDTEXT))
            return CH_EXT_QUOTED;
        *e = ZH_HTTP1_E_BAD_CHUNK_EXT;
        return CH_ERROR;
    case CH_EXT_QUOTED_ESC:
        /* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) */
        if (IS(ch, C_VALUE))
            return CH_EXT_QUOTED;
        *e = ZH_HTTP1_E_BAD_CHUNK_EXT;
        return CH_ERROR;
    case CH_EXT_QUOTED_END:
        return ext_next(ch, CH_EXT_BWS, e);
    case CH_SIZE_LF:
        if (ch != '\n') {
            *e = ZH_HTTP1_E_BARE_CR;
            return CH_ERROR;
        }
        c->_count = 0;
        return c->_remaining ? CH_DATA : CH_TRAILER_START;
    case CH_DATA_CR:
        if (ch != '\r') {
            *e = ZH_HTTP1_E_BAD_CHUNK_END;
            return CH_ERROR;
        }
        return CH_DATA_LF;
    case CH_DATA_LF:
        if (ch != '\n') {
            *e = ZH_HTTP1_E_BAD_CHUNK_END;
            return CH_ERROR;
        }
        c->_count = 0;
        return CH_SIZE_FIRST;
    /* Trailer fields follow the rules of parse_field_line(). */
    case CH_TRAILER_START:
        if (ch == '\r')
            return CH_FINAL_LF;
        if (IS(ch, C_TCHAR))
            return CH_TRAILER_NAME;
        *e = ch == '\n'   ? ZH_HTTP1_E_BARE_LF
             : IS_OWS(ch) ? ZH_HTTP1_E_OBS_FOLD
                          : ZH_HTTP1_E_BAD_FIELD_NAME;
        return CH_ERROR;
    case CH_TRAILER_NAME:
        if (IS(ch, C_TCHAR))
            return CH_TRAILER_NAME;
        if (ch == ':')
            return CH_TRAILER_VALUE;
        if (IS_OWS(ch))
            return CH_TRAILER_NAME_WS;
        *e = ch == '\r' || ch == '\n' ? ZH_HTTP1_E_MISSING_COLON : ZH_HTTP1_E_BAD_FIELD_NAME;
        return CH_ERROR;
    case CH_TRAILER_NAME_WS:
        if (IS_OWS(ch))
            return CH_TRAILER_NAME_WS;
        *e = ch == ':' ? ZH_HTTP1_E_SPACE_BEFORE_COLON : ZH_HTTP1_E_BAD_FIELD_NAME;
        return CH_ERROR;
    case CH_TRAILER_VALUE:
        if (IS(ch, C_VALUE))
            return CH_TRAILER_VALUE;
        if (ch == '\r')
            return CH_TRAILER_LF;
        *e = ch == '\n' ? ZH_HTTP1_E_BARE_LF : ZH_HTTP1_E_BAD_FIELD_VALUE;
        return CH_ERROR;
    case CH_TRAILER_LF:
    case CH_FINAL_LF:
        if (ch != '\n') {
            *e = ZH_HTTP1_E_BARE_CR;
            return CH_ERROR;
        }
        return c->_state == CH_FINAL_LF ? CH_DONE : CH_TRAILER_START;
    default:
        /* CH_DATA, CH_DONE and CH_ERROR are handled by zh_http1_chunked_feed(). */
        assert(0);
        *e = ZH_HTTP1_E_BAD_CHUNK_SIZE;
        return CH_ERROR;
    }
}

int zh_http1_chunked_feed(struct zh_http1_chunked *c, const char *buf, size_t len, size_t *consumed,
                          struct zh_http1_span *data)
{
    const char *p = buf, *end = buf + len;
    int e = ZH_HTTP1_OK;

    while (p < end && c->_state != CH_DONE && c->_state != CH_ERROR) {
        if (c->_state == CH_DATA) {
            size_t n = (size_t)(end - p);
            if (n > c->_remaining)
                n = (size_t)c->_remaining;
            c->_remaining -= n;
            if (c->_remaining == 0)
                c->_state = CH_DATA_CR;
            data->p = p;
            data->len = n;
            *consumed = (size_t)(p + n - buf);
            return ZH_HTTP1_CHUNKED_DATA;
        }
        /* Bound the chunk-size line and, separately, the trailer section. */
        c->_count++;
        if (c->_state >= CH_TRAILER_START) {
            /* The final CRLF does not count against max_trailer. */
            if (c->_count > c->_max_trailer + 2) {
                e = ZH_HTTP1_E_TRAILER_TOO_LARGE;
                c->_state = CH_ERROR;
                break;
            }
        } else if (c->_state <= CH_SIZE_LF && c->_count > ZH_HTTP1_CHUNK_LINE_MAX) {
            e = ZH_HTTP1_E_CHUNK_LINE_TOO_LONG;
            c->_state = CH_ERROR;
            break;
        }
        c->_state = chunked_step(c, (unsigned char)*p++, &e);
    }
    *consumed = (size_t)(p - buf);
    if (c->_state == CH_DONE)
        return ZH_HTTP1_CHUNKED_DONE;
    if (c->_state == CH_ERROR) {
        if (e != ZH_HTTP1_OK)
            c->err = (enum zh_http1_err)e;
        return ZH_PARSE_ERROR;
    }
    return ZH_PARSE_INCOMPLETE;
}

/* ------------------------------------------------------------------------------------------ */
/* Response side */

/* Reason phrases of RFC 9110 section 15, one array per status class, indexed by code % 100. */
static const char *const reason_1xx[] = {"Continue", "Switching Protocols", NULL, "Early Hints"};
static const char *const reason_2xx[] = {
    "OK",         "Created",       "Accepted",       "Non-Authoritative Information",
    "No Content", "Reset Content", "Partial Content"};
static const char *const reason_3xx[] = {
    "Multiple Choices",   "Moved Permanently", "Found", "See Other", "Not Modified", NULL, NULL,
    "Temporary Redirect", "Permanent Redirect"};
static const char *const reason_4xx[] = {
    [0] = "Bad Request",
    [1] = "Unauthorized",
    [2] = "Payment Required",
    [3] = "Forbidden",
    [4] = "Not Found",
    [5] = "Method Not Allowed",
    [6] = "Not Acceptable",
    [7] = "Proxy Authentication Required",
    [8] = "Request Timeout",
    [9] = "Conflict",
    [10] = "Gone",
    [11] = "Length Required",
    [12] = "Precondition Failed",
    [13] = "Content Too Large",
    [14] = "URI Too Long",
    [15] = "Unsupported Media Type",
    [16] = "Range Not Satisfiable",
    [17] = "Expectation Failed",
    [21] = "Misdirected Request",
    [22] = "Unprocessable Content",
    [25] = "Too Early",
    [26] = "Upgrade Required",
    [28] = "Precondition Required",
    [29] = "Too Many Requests",
    [31] = "Request Header Fields Too Large",
    [51] = "Unavailable For Legal Reasons",
};
static const char *const reason_5xx[] = {"Internal Server Error", "Not Implemented",
                                         "Bad Gateway",           "Service Unavailable",
                                         "Gateway Timeout",       "HTTP Version Not Supported"};

const char *zh_http1_status_reason(int status)
{
    static const struct {
        const char *const *text;
        size_t n;
    } classes[] = {
        {reason_1xx, ZH_ARRAY_SIZE(reason_1xx)}, {reason_2xx, ZH_ARRAY_SIZE(reason_2xx)},
        {reason_3xx, ZH_ARRAY_SIZE(reason_3xx)}, {reason_4xx, ZH_ARRAY_SIZE(reason_4xx)},
        {reason_5xx, ZH_ARRAY_SIZE(reason_5xx)},
    };
    if (status < 100 || status > 599)
        return "";
    size_t cls = (size_t)(status / 100 - 1), i = (size_t)(status % 100);
    if (i >= classes[cls].n || classes[cls].text[i] == NULL)
        return "";
    return classes[cls].text[i];
}

static int all_value_bytes(struct zh_http1_span s)
{
    return scan_value(s.p, s.p + s.len) == s.p + s.len;
}

/* Decimal digits of v into the end of tmp[20]; returns the first digit. */
static char *u64_dec(char tmp[20], uint64_t v)
{
    char *p = tmp + 20;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return p;
}

int zh_http1_write_response_head(struct zh_buf *out, const struct zh_http1_resp *r)
{
    struct zh_http1_span reason = r->reason;
    int no_body = (r->status >= 100 && r->status < 200) || r->status == 204;
    char tmp[20], *d;

    if (r->status < 100 || r->status > 999)
        return -EINVAL;
    if (reason.p == NULL) {
        reason.p = zh_http1_status_reason(r->status);
        reason.len = strlen(reason.p);
    }
    if (!all_value_bytes(reason))
        return -EINVAL;
    if (r->body == ZH_HTTP1_BODY_CHUNKED && r->minor_version < 1)
        return -EINVAL;
    if (no_body && r->body != ZH_HTTP1_BODY_NONE)
        return -EINVAL;
    for (size_t i = 0; i < r->num_headers; i++)
        if (!is_token(r->headers[i].name) || !all_value_bytes(r->headers[i].value))
            return -EINVAL;

    zh_buf_append(out, "HTTP/1.1 ", 9);
    d = u64_dec(tmp, (uint64_t)r->status);
    zh_buf_append(out, d, (size_t)(tmp + 20 - d));
    zh_buf_putc(out, ' ');
    zh_buf_append(out, reason.p, reason.len);
    zh_buf_append(out, "\r\n", 2);
    for (size_t i = 0; i < r->num_headers; i++) {
        const struct zh_http1_header *h = &r->headers[i];
        if (IEQ(h->name, "content-length") || IEQ(h->name, "transfer-encoding") ||
            IEQ(h->name, "connection"))
            continue;
        zh_buf_reserve(out, h->name.len + h->value.len + 4);
        zh_buf_append(out, h->name.p, h->name.len);
        zh_buf_append(out, ": ", 2);
        zh_buf_append(out, h->value.p, h->value.len);
        zh_buf_append(out, "\r\n", 2);
    }
    switch (r->body) {
    case ZH_HTTP1_BODY_LENGTH:
        zh_buf_append(out, "Content-Length: ", 16);
        d = u64_dec(tmp, r->content_length);
        zh_buf_append(out, d, (size_t)(tmp + 20 - d));
        zh_buf_append(out, "\r\n", 2);
        break;
    case ZH_HTTP1_BODY_CHUNKED:
        zh_buf_puts(out, "Transfer-Encoding: chunked\r\n");
        break;
    default:
        break;
    }
    if (r->conn == ZH_HTTP1_CONN_CLOSE || r->body == ZH_HTTP1_BODY_CLOSE)
        zh_buf_puts(out, "Connection: close\r\n");
    else if (r->conn == ZH_HTTP1_CONN_UPGRADE)
        zh_buf_puts(out, "Connection: Upgrade\r\n");
    else if (r->minor_version < 1)
        zh_buf_puts(out, "Connection: keep-alive\r\n");
    zh_buf_append(out, "\r\n", 2);
    return 0;
}

size_t zh_http1_format_chunk_header(char out[ZH_HTTP1_CHUNK_HEADER_MAX], size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[16];
    size_t i = sizeof(tmp), len;
    assert(n > 0);
    do {
        tmp[--i] = hex[n & 15];
        n >>= 4;
    } while (n);
    len = sizeof(tmp) - i;
    memcpy(out, tmp + i, len);
    out[len] = '\r';
    out[len + 1] = '\n';
    return len + 2;
}

void zh_http1_write_chunk_header(struct zh_buf *out, size_t n)
{
    char tmp[ZH_HTTP1_CHUNK_HEADER_MAX];
    zh_buf_append(out, tmp, zh_http1_format_chunk_header(tmp, n));
}

void zh_http1_write_last_chunk(struct zh_buf *out)
{
    zh_buf_append(out, "0\r\n\r\n", 5);
}
