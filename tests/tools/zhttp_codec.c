/* zhttp_codec: a test-only CLI around the shared/proto ZHTTP codec, so tests in other languages can
 * check the C decoder and encoder (tests/integration/test_02_codec.py).
 *
 *   zhttp_codec decode [--pub]   read one packet (raw bytes) on stdin, print its canonical JSON
 *   zhttp_codec encode           read that JSON on stdin, write the encoded packet to stdout
 *
 * Canonical JSON (one line, sorted keys, only present fields):
 *   byte values are JSON strings when valid UTF-8, else {"hex": "..."};
 *   "id": [{"id": ..., "seq": n}, ...] ("seq" only when present), "multi-id": true for the list
 *   form; a top-level "seq" appears only when there is no id; "type" is absent for data packets;
 *   "ext": {"multi": bool}; "headers": [[name, value], ...]; "user-data" and "passthrough" are the
 *   lowercase hex of their raw tnetstring; ints and bools as JSON numbers and booleans. With --pub
 *   the input is "<address> T..." and the output gains "address".
 * On failure it prints {"error": "<reason>"} and exits 1. Only shared/proto code is used. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "shared/proto/buf.h"
#include "shared/proto/err.h"
#include "shared/proto/mem.h"
#include "shared/proto/tnetstring.h"
#include "shared/proto/zhttp.h"

static struct zh_zhttp_packet pkt;

static int fail(const char *reason)
{
    json_t *o = json_pack("{s:s}", "error", reason);
    char *s = json_dumps(o, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(o);
    return 1;
}

static void read_all(FILE *f, struct zh_buf *b)
{
    for (;;) {
        zh_buf_reserve(b, 65536);
        size_t n = fread(b->data + b->len, 1, 65536, f);
        b->len += n;
        if (n == 0)
            break;
    }
}

/* ---- decode: packet -> JSON ---- */

static const char hexdig[] = "0123456789abcdef";

static json_t *hex_string(const uint8_t *p, size_t n)
{
    char *s = zh_malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = hexdig[p[i] >> 4];
        s[2 * i + 1] = hexdig[p[i] & 15];
    }
    s[2 * n] = '\0';
    json_t *j = json_string(s);
    zh_free(s);
    return j;
}

static json_t *bytes_json(struct zh_span s)
{
    json_t *j = json_stringn((const char *)s.p, s.n); /* NULL unless valid UTF-8 */
    if (j)
        return j;
    return json_pack("{s:o}", "hex", hex_string(s.p, s.n));
}

static void put_span(json_t *o, const char *key, struct zh_span s)
{
    if (s.p)
        json_object_set_new(o, key, bytes_json(s));
}

static void put_int(json_t *o, const char *key, uint32_t flag, int64_t v)
{
    if (pkt.has & flag)
        json_object_set_new(o, key, json_integer((json_int_t)v));
}

static void put_bool(json_t *o, const char *key, uint32_t flag, bool v)
{
    if (pkt.has & flag)
        json_object_set_new(o, key, json_boolean(v));
}

static json_t *packet_json(void)
{
    json_t *o = json_object();
    put_span(o, "from", pkt.from);
    if (pkt.n_ids > 0) {
        json_t *ids = json_array();
        for (size_t i = 0; i < pkt.n_ids; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "id", bytes_json(pkt.ids[i].id));
            if (pkt.ids[i].has_seq)
                json_object_set_new(e, "seq", json_integer((json_int_t)pkt.ids[i].seq));
            json_array_append_new(ids, e);
        }
        json_object_set_new(o, "id", ids);
    } else if (pkt.has & ZH_ZF_SEQ) {
        json_object_set_new(o, "seq", json_integer((json_int_t)pkt.ids[0].seq));
    }
    if (pkt.has & ZH_ZF_MULTI_ID)
        json_object_set_new(o, "multi-id", json_true());
    if (pkt.type != ZH_ZHTTP_DATA)
        json_object_set_new(o, "type", json_string(zh_zhttp_type_name(pkt.type)));
    if (pkt.has & ZH_ZF_EXT_MULTI)
        json_object_set_new(o, "ext", json_pack("{s:b}", "multi", pkt.ext_multi));
    if (pkt.has & ZH_ZF_HEADERS) {
        json_t *hs = json_array();
        for (size_t i = 0; i < pkt.n_headers; i++)
            json_array_append_new(hs, json_pack("[o,o]", bytes_json(pkt.headers[i].name),
                                                bytes_json(pkt.headers[i].value)));
        json_object_set_new(o, "headers", hs);
    }
    put_span(o, "condition", pkt.condition);
    put_span(o, "method", pkt.method);
    put_span(o, "uri", pkt.uri);
    put_span(o, "reason", pkt.reason);
    put_span(o, "body", pkt.body);
    put_span(o, "content-type", pkt.content_type);
    put_span(o, "peer-address", pkt.peer_address);
    put_span(o, "connect-host", pkt.connect_host);
    put_span(o, "client-cert", pkt.client_cert);
    put_span(o, "client-key", pkt.client_key);
    put_int(o, "credits", ZH_ZF_CREDITS, pkt.credits);
    put_int(o, "code", ZH_ZF_CODE, pkt.code);
    put_int(o, "max-size", ZH_ZF_MAX_SIZE, pkt.max_size);
    put_int(o, "timeout", ZH_ZF_TIMEOUT, pkt.timeout);
    put_int(o, "peer-port", ZH_ZF_PEER_PORT, pkt.peer_port);
    put_int(o, "connect-port", ZH_ZF_CONNECT_PORT, pkt.connect_port);
    put_bool(o, "more", ZH_ZF_MORE, pkt.more);
    put_bool(o, "stream", ZH_ZF_STREAM, pkt.stream);
    put_bool(o, "router-resp", ZH_ZF_ROUTER_RESP, pkt.router_resp);
    put_bool(o, "trust-connect-host", ZH_ZF_TRUST_CONNECT_HOST, pkt.trust_connect_host);
    put_bool(o, "ignore-policies", ZH_ZF_IGNORE_POLICIES, pkt.ignore_policies);
    put_bool(o, "ignore-tls-errors", ZH_ZF_IGNORE_TLS_ERRORS, pkt.ignore_tls_errors);
    put_bool(o, "follow-redirects", ZH_ZF_FOLLOW_REDIRECTS, pkt.follow_redirects);
    if (pkt.user_data.p)
        json_object_set_new(o, "user-data", hex_string(pkt.user_data.p, pkt.user_data.n));
    if (pkt.passthrough.p)
        json_object_set_new(o, "passthrough", hex_string(pkt.passthrough.p, pkt.passthrough.n));
    return o;
}

static int cmd_decode(bool pub)
{
    struct zh_buf in = {0};
    struct zh_span addr = {0}, payload;
    struct zh_zhttp_error err = {0};
    int rc;

    read_all(stdin, &in);
    payload.p = in.data;
    payload.n = in.len;
    if (pub && zh_zhttp_split_pub(in.data, in.len, &addr, &payload) < 0) {
        zh_buf_free(&in);
        return fail("no space in PUB frame");
    }
    rc = zh_zhttp_decode(payload.p ? payload.p : (const uint8_t *)"", payload.n, &pkt, &err);
    if (rc < 0) {
        zh_buf_free(&in);
        return fail(err.reason);
    }
    json_t *o = packet_json();
    if (pub)
        json_object_set_new(o, "address", bytes_json(addr));
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    printf("%s\n", s);
    free(s);
    json_decref(o);
    zh_buf_free(&in);
    return 0;
}

/* ---- encode: JSON -> packet ---- */

/* Every buffer a span of pkt points into that json does not own (hex-decoded bytes). */
static uint8_t **owned_ptrs;
static size_t n_owned;

static const uint8_t *keep(uint8_t *p)
{
    owned_ptrs = zh_realloc(owned_ptrs, (n_owned + 1) * sizeof *owned_ptrs);
    owned_ptrs[n_owned++] = p;
    return p;
}

static int unhex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int unhex(const char *s, size_t n, struct zh_span *out)
{
    if (n % 2 != 0)
        return -1;
    uint8_t *p = zh_malloc(n / 2 + 1);
    for (size_t i = 0; i < n / 2; i++) {
        int hi = unhex_digit(s[2 * i]), lo = unhex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            zh_free(p);
            return -1;
        }
        p[i] = (uint8_t)(hi << 4 | lo);
    }
    out->p = keep(p);
    out->n = n / 2;
    return 0;
}

/* A byte value: a JSON string, or {"hex": "..."}. */
static int get_bytes(json_t *j, struct zh_span *out)
{
    if (json_is_string(j)) {
        out->p = (const uint8_t *)json_string_value(j);
        out->n = json_string_length(j);
        return 0;
    }
    json_t *h = json_is_object(j) && json_object_size(j) == 1 ? json_object_get(j, "hex") : NULL;
    if (!json_is_string(h))
        return -1;
    return unhex(json_string_value(h), json_string_length(h), out);
}

static int get_int(json_t *j, int64_t *out)
{
    if (!json_is_integer(j))
        return -1;
    *out = (int64_t)json_integer_value(j);
    return 0;
}

static int get_bool(json_t *j, bool *out)
{
    if (!json_is_boolean(j))
        return -1;
    *out = json_is_true(j);
    return 0;
}

static int get_raw(json_t *j, struct zh_span *out)
{
    struct zh_tns_value v;
    if (!json_is_string(j) || unhex(json_string_value(j), json_string_length(j), out) < 0)
        return -1;
    return zh_tns_parse_exact(out->p, out->n, &v) < 0 ? -1 : 0;
}

static int get_ids(json_t *j)
{
    size_t i;
    json_t *e;
    if (json_is_string(j)) {
        pkt.n_ids = 1;
        return get_bytes(j, &pkt.ids[0].id);
    }
    if (!json_is_array(j) || json_array_size(j) > ZH_ZHTTP_MAX_IDS)
        return -1;
    json_array_foreach(j, i, e)
    {
        json_t *id = json_object_get(e, "id"), *seq = json_object_get(e, "seq");
        if (!json_is_object(e) || !id || get_bytes(id, &pkt.ids[i].id) < 0)
            return -1;
        pkt.ids[i].has_seq = seq != NULL;
        if (seq && get_int(seq, &pkt.ids[i].seq) < 0)
            return -1;
    }
    pkt.n_ids = json_array_size(j);
    return 0;
}

static int get_headers(json_t *j)
{
    size_t i;
    json_t *h;
    if (!json_is_array(j) || json_array_size(j) > ZH_ZHTTP_MAX_HEADERS)
        return -1;
    json_array_foreach(j, i, h)
    {
        if (!json_is_array(h) || json_array_size(h) != 2 ||
            get_bytes(json_array_get(h, 0), &pkt.headers[i].name) < 0 ||
            get_bytes(json_array_get(h, 1), &pkt.headers[i].value) < 0)
            return -1;
    }
    pkt.n_headers = json_array_size(j);
    pkt.has |= ZH_ZF_HEADERS;
    return 0;
}

struct jfield {
    const char *key;
    char kind; /* 's' bytes, 'i' int, 'b' bool, 'r' raw tnetstring as hex */
    size_t off;
    uint32_t flag;
};

#define JF(k, kind, member, flag)                               \
    {                                                           \
        k, kind, offsetof(struct zh_zhttp_packet, member), flag \
    }
static const struct jfield jfields[] = {
    JF("from", 's', from, 0),
    JF("condition", 's', condition, 0),
    JF("method", 's', method, 0),
    JF("uri", 's', uri, 0),
    JF("reason", 's', reason, 0),
    JF("body", 's', body, 0),
    JF("content-type", 's', content_type, 0),
    JF("peer-address", 's', peer_address, 0),
    JF("connect-host", 's', connect_host, 0),
    JF("client-cert", 's', client_cert, 0),
    JF("client-key", 's', client_key, 0),
    JF("credits", 'i', credits, ZH_ZF_CREDITS),
    JF("code", 'i', code, ZH_ZF_CODE),
    JF("max-size", 'i', max_size, ZH_ZF_MAX_SIZE),
    JF("timeout", 'i', timeout, ZH_ZF_TIMEOUT),
    JF("peer-port", 'i', peer_port, ZH_ZF_PEER_PORT),
    JF("connect-port", 'i', connect_port, ZH_ZF_CONNECT_PORT),
    JF("more", 'b', more, ZH_ZF_MORE),
    JF("stream", 'b', stream, ZH_ZF_STREAM),
    JF("router-resp", 'b', router_resp, ZH_ZF_ROUTER_RESP),
    JF("trust-connect-host", 'b', trust_connect_host, ZH_ZF_TRUST_CONNECT_HOST),
    JF("ignore-policies", 'b', ignore_policies, ZH_ZF_IGNORE_POLICIES),
    JF("ignore-tls-errors", 'b', ignore_tls_errors, ZH_ZF_IGNORE_TLS_ERRORS),
    JF("follow-redirects", 'b', follow_redirects, ZH_ZF_FOLLOW_REDIRECTS),
    JF("user-data", 'r', user_data, 0),
    JF("passthrough", 'r', passthrough, 0),
};
#undef JF

static int set_field(const char *key, json_t *v)
{
    char *base = (char *)&pkt;
    for (size_t i = 0; i < sizeof jfields / sizeof jfields[0]; i++) {
        const struct jfield *f = &jfields[i];
        if (strcmp(f->key, key) != 0)
            continue;
        pkt.has |= f->flag;
        switch (f->kind) {
        case 's':
            return get_bytes(v, (struct zh_span *)(void *)(base + f->off));
        case 'i':
            return get_int(v, (int64_t *)(void *)(base + f->off));
        case 'b':
            return get_bool(v, (bool *)(void *)(base + f->off));
        default:
            return get_raw(v, (struct zh_span *)(void *)(base + f->off));
        }
    }
    if (strcmp(key, "id") == 0)
        return get_ids(v);
    if (strcmp(key, "multi-id") == 0) {
        if (!json_is_boolean(v))
            return -1;
        if (json_is_true(v))
            pkt.has |= ZH_ZF_MULTI_ID;
        return 0;
    }
    if (strcmp(key, "seq") == 0) {
        pkt.has |= ZH_ZF_SEQ;
        pkt.ids[0].has_seq = true;
        return get_int(v, &pkt.ids[0].seq);
    }
    if (strcmp(key, "type") == 0) {
        struct zh_span name;
        if (get_bytes(v, &name) < 0)
            return -1;
        if (name.n == 0 || zh_span_eq(name, "data")) {
            pkt.type = ZH_ZHTTP_DATA;
            return 0;
        }
        return zh_zhttp_type_parse(name, &pkt.type) < 0 ? -1 : 0;
    }
    if (strcmp(key, "ext") == 0) {
        json_t *m = json_object_get(v, "multi");
        if (!json_is_object(v))
            return -1;
        if (!m)
            return 0;
        pkt.has |= ZH_ZF_EXT_MULTI;
        return get_bool(m, &pkt.ext_multi);
    }
    if (strcmp(key, "headers") == 0)
        return get_headers(v);
    return -1;
}

static int cmd_encode(void)
{
    struct zh_buf in = {0}, out = {0};
    json_error_t jerr;
    const char *key;
    json_t *v;
    int rc = 0;

    read_all(stdin, &in);
    json_t *root = json_loadb((const char *)in.data, in.len, JSON_ALLOW_NUL, &jerr);
    zh_buf_free(&in);
    if (!json_is_object(root)) {
        json_decref(root);
        return fail("input is not a JSON object");
    }
    zh_zhttp_packet_init(&pkt);
    json_object_foreach(root, key, v)
    {
        if (set_field(key, v) < 0) {
            static char reason[160];
            snprintf(reason, sizeof reason, "bad or unknown JSON field '%s'", key);
            rc = fail(reason);
            break;
        }
    }
    if ((pkt.has & ZH_ZF_MULTI_ID) == 0 && pkt.n_ids > 1 && rc == 0)
        rc = fail("several ids need \"multi-id\": true");
    if (rc == 0) {
        zh_zhttp_encode(&pkt, &out);
        if (fwrite(out.data, 1, out.len, stdout) != out.len)
            rc = 1;
    }
    zh_buf_free(&out);
    for (size_t i = 0; i < n_owned; i++)
        zh_free(owned_ptrs[i]);
    zh_free(owned_ptrs);
    json_decref(root);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "decode") == 0 &&
        (argc == 2 || (argc == 3 && strcmp(argv[2], "--pub") == 0)))
        return cmd_decode(argc == 3);
    if (argc == 2 && strcmp(argv[1], "encode") == 0)
        return cmd_encode();
    fprintf(stderr, "usage: zhttp_codec decode [--pub] | encode   (stdin -> stdout)\n");
    return 2;
}
