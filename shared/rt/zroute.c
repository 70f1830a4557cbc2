#include "shared/rt/zroute.h"

#include <jansson.h>

#include "shared/proto/err.h"
#include "shared/proto/fnv.h"
#include "shared/proto/jformat.h"
#include "shared/proto/tnetstring.h"

unsigned zh_zroute_hash(const uint8_t *from, size_t from_len, const uint8_t *id, size_t id_len,
                        unsigned nworkers)
{
    /* FNV-1a over from, a separator, then id: stable across runs and threads. The seed is not
     * FNV's basis (a digit short of it) but stays: the worker of a session is pinned across builds
     * (tests/unit/test_zroute.c, hash_is_fixed_across_builds). */
    static const uint8_t sep = 0xff;
    uint64_t h = UINT64_C(1469598103934665603);
    h = zh_fnv1a(zh_fnv1a(zh_fnv1a(h, from, from_len), &sep, 1), id, id_len);
    return nworkers ? (unsigned)(h % nworkers) : 0;
}

int zh_zroute_prefix(const uint8_t *id, size_t id_len, unsigned nworkers)
{
    unsigned w = 0;
    size_t i = 0;
    for (; i < id_len && i < 4 && id[i] >= '0' && id[i] <= '9'; i++)
        w = w * 10 + (unsigned)(id[i] - '0');
    if (i == 0 || i >= id_len || id[i] != '-' || w >= nworkers)
        return -1;
    return (int)w;
}

static int route_one(enum zh_role role, const struct zh_tns_value *from, const uint8_t *id,
                     size_t id_len, unsigned nworkers, uint64_t *mask)
{
    int w;
    if (role == ZH_ROLE_SERVER) {
        w = zh_zroute_prefix(id, id_len, nworkers);
        if (w < 0)
            return ZH_E_UNKNOWN_SESSION;
    } else {
        w = (int)zh_zroute_hash(from ? from->data : NULL, from ? from->len : 0, id, id_len,
                                nworkers);
    }
    *mask |= UINT64_C(1) << w;
    return 0;
}

static int count_workers(uint64_t mask)
{
    int count = 0;
    for (uint64_t m = mask; m; m &= m - 1)
        count++;
    return count ? count : ZH_E_UNKNOWN_SESSION;
}

/* Zurl's legacy `J` format: the same keys in a JSON object. Only requesters use it, rarely, so
 * this parses the whole object (jansson) rather than scanning it, and keeps the parse for the
 * worker (*keep) when it is strict. A packet with a repeated key is routed by a lenient parse (the
 * last one wins) so its requester can be told; the worker refuses it. */
static int route_json(enum zh_role role, const uint8_t *payload, size_t n, unsigned nworkers,
                      uint64_t *mask, json_t **keep)
{
    const char *reason;
    json_t *d = NULL;
    if (zh_jformat_parse(payload, n, &d, &reason) < 0) {
        d = json_loadb((const char *)payload + 1, n - 1, JSON_ALLOW_NUL, NULL);
        if (!d || !json_is_object(d)) {
            json_decref(d);
            return ZH_E_PARSE;
        }
        keep = NULL;
    }
    const json_t *from = json_object_get(d, "from");
    struct zh_tns_value fromv = {0};
    bool has_from = json_is_string(from);
    if (has_from) {
        fromv.data = (const uint8_t *)json_string_value(from);
        fromv.len = json_string_length(from);
    }
    const json_t *id = json_object_get(d, "id");
    int rc;
    if (!id) {
        rc = ZH_E_MISSING;
    } else if (json_is_string(id)) {
        rc = route_one(role, has_from ? &fromv : NULL, (const uint8_t *)json_string_value(id),
                       json_string_length(id), nworkers, mask);
        rc = rc < 0 ? rc : 1;
    } else if (json_is_array(id)) {
        size_t i;
        json_t *item;
        rc = 0;
        json_array_foreach(id, i, item)
        {
            const json_t *one = json_is_object(item) ? json_object_get(item, "id") : NULL;
            if (!json_is_string(one)) {
                rc = ZH_E_TYPE;
                break;
            }
            route_one(role, has_from ? &fromv : NULL, (const uint8_t *)json_string_value(one),
                      json_string_length(one), nworkers, mask);
        }
        rc = rc < 0 ? rc : count_workers(*mask);
    } else {
        rc = ZH_E_TYPE;
    }
    if (keep)
        *keep = d;
    else
        json_decref(d);
    if (rc < 0)
        *mask = 0;
    return rc;
}

int zh_zroute(enum zh_role role, const uint8_t *payload, size_t n, unsigned nworkers,
              uint64_t *mask)
{
    return zh_zroute_json(role, payload, n, nworkers, mask, NULL);
}

int zh_zroute_json(enum zh_role role, const uint8_t *payload, size_t n, unsigned nworkers,
                   uint64_t *mask, json_t **json)
{
    *mask = 0;
    if (json)
        *json = NULL;
    if (n < 1 || nworkers == 0 || nworkers > 64)
        return ZH_E_PARSE;
    if (payload[0] == 'J')
        return route_json(role, payload, n, nworkers, mask, json);
    if (payload[0] != 'T')
        return ZH_E_PARSE;
    struct zh_tns_value d, idv, fromv;
    if (zh_tns_parse_exact(payload + 1, n - 1, &d) < 0 || d.type != ZH_TNS_DICT)
        return ZH_E_PARSE;
    bool has_from = zh_tns_dict_get(&d, "from", &fromv) && fromv.type == ZH_TNS_STRING;
    if (!zh_tns_dict_get(&d, "id", &idv))
        return ZH_E_MISSING;
    if (idv.type == ZH_TNS_STRING) {
        int r = route_one(role, has_from ? &fromv : NULL, idv.data, idv.len, nworkers, mask);
        return r < 0 ? r : 1;
    }
    if (idv.type != ZH_TNS_LIST)
        return ZH_E_TYPE;
    struct zh_tns_iter it;
    struct zh_tns_value item, one;
    zh_tns_iter_init(&it, &idv);
    while (zh_tns_list_next(&it, &item)) {
        if (item.type != ZH_TNS_DICT || !zh_tns_dict_get(&item, "id", &one) ||
            one.type != ZH_TNS_STRING) {
            *mask = 0;
            return ZH_E_TYPE;
        }
        /* A bad entry in a batch only loses that entry: the worker that owns the others reports it.
         */
        route_one(role, has_from ? &fromv : NULL, one.data, one.len, nworkers, mask);
    }
    return count_workers(*mask);
}
