/* libFuzzer target for shared/proto/zhttp.c.
 *
 * Decode the input as a ZHTTP payload (and, if it splits as a PUB frame, its payload too). Every
 * failure must carry a reason and leave an empty packet. Every success is re-encoded, decoded again
 * and compared field by field; a second encode must give identical bytes. Any mismatch aborts. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/proto/buf.h"
#include "shared/proto/zhttp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct zh_zhttp_packet pkt_a, pkt_b;

static void check(bool ok)
{
    if (!ok)
        abort();
}

static void same_span(struct zh_span a, struct zh_span b)
{
    check((a.p == NULL) == (b.p == NULL));
    check(a.n == b.n);
    check(a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

static void same_packet(const struct zh_zhttp_packet *a, const struct zh_zhttp_packet *b)
{
    check(a->has == b->has);
    check(a->type == b->type);
    same_span(a->from, b->from);
    check(a->n_ids == b->n_ids);
    for (size_t i = 0; i < a->n_ids; i++) {
        same_span(a->ids[i].id, b->ids[i].id);
        check(a->ids[i].has_seq == b->ids[i].has_seq);
        check(!a->ids[i].has_seq || a->ids[i].seq == b->ids[i].seq);
    }
    if (a->n_ids == 0) {
        check(a->ids[0].has_seq == b->ids[0].has_seq);
        check(!a->ids[0].has_seq || a->ids[0].seq == b->ids[0].seq);
    }
    check(a->n_headers == b->n_headers);
    for (size_t i = 0; i < a->n_headers; i++) {
        same_span(a->headers[i].name, b->headers[i].name);
        same_span(a->headers[i].value, b->headers[i].value);
    }
    same_span(a->condition, b->condition);
    same_span(a->method, b->method);
    same_span(a->uri, b->uri);
    same_span(a->body, b->body);
    same_span(a->content_type, b->content_type);
    same_span(a->reason, b->reason);
    same_span(a->peer_address, b->peer_address);
    same_span(a->connect_host, b->connect_host);
    same_span(a->client_cert, b->client_cert);
    same_span(a->client_key, b->client_key);
    same_span(a->user_data, b->user_data);
    same_span(a->passthrough, b->passthrough);
    check(a->credits == b->credits);
    check(a->code == b->code);
    check(a->max_size == b->max_size);
    check(a->timeout == b->timeout);
    check(a->peer_port == b->peer_port);
    check(a->connect_port == b->connect_port);
    check(a->more == b->more);
    check(a->stream == b->stream);
    check(a->router_resp == b->router_resp);
    check(a->trust_connect_host == b->trust_connect_host);
    check(a->ignore_policies == b->ignore_policies);
    check(a->ignore_tls_errors == b->ignore_tls_errors);
    check(a->follow_redirects == b->follow_redirects);
    check(a->ext_multi == b->ext_multi);
}

static void one(const uint8_t *data, size_t size)
{
    struct zh_zhttp_error err = {0};
    int rc = zh_zhttp_decode(data, size, &pkt_a, &err);
    if (rc < 0) {
        check(err.reason != NULL && err.reason[0] != '\0');
        check(pkt_a.has == 0 && pkt_a.n_ids == 0 && pkt_a.n_headers == 0 && !pkt_a.from.p);
        return;
    }
    check(err.reason == NULL);
    check(pkt_a.n_ids <= ZH_ZHTTP_MAX_IDS && pkt_a.n_headers <= ZH_ZHTTP_MAX_HEADERS);
    check(pkt_a.from.n <= ZH_ZHTTP_MAX_ID_LEN);
    for (size_t i = 0; i < pkt_a.n_ids; i++)
        check(pkt_a.ids[i].id.n <= ZH_ZHTTP_MAX_ID_LEN && pkt_a.ids[i].seq >= 0);

    struct zh_buf b1 = {0}, b2 = {0};
    zh_zhttp_encode(&pkt_a, &b1);
    check(zh_zhttp_decode(b1.data, b1.len, &pkt_b, &err) == 0);
    same_packet(&pkt_a, &pkt_b);
    zh_zhttp_encode(&pkt_b, &b2);
    check(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
    check(b1.len <= size); /* canonical form: unknown keys dropped, ints without leading zeros */
    zh_buf_free(&b1);
    zh_buf_free(&b2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zh_span addr, payload;
    one(data, size);
    if (zh_zhttp_split_pub(data, size, &addr, &payload) == 0) {
        check(addr.n + 1 + payload.n == size);
        one(payload.p, payload.n);
    }
    return 0;
}
