/* Which worker(s) an incoming ZHTTP packet belongs to, from a scan of its top-level keys only.
 *
 * Server-role packets (replies from handlers) carry zhttpd's own ids "<worker>-<slot>-<counter>":
 * the worker is the decimal prefix. Client-role packets (from requesters) go to hash(from, id) mod
 * workers, so every packet of one session lands on the same worker. A multi-id packet names several
 * sessions and goes to every worker it names. The bridge never decodes bodies: this is the only
 * parsing it does. */
#ifndef ZH_SHARED_RT_ZROUTE_H
#define ZH_SHARED_RT_ZROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "shared/proto/session.h"

/* Worker for a client-role session key (from, id). */
unsigned zh_zroute_hash(const uint8_t *from, size_t from_len, const uint8_t *id, size_t id_len,
                        unsigned nworkers);

/* Worker named by a server-role id "<N>-…", or -1 if the id has no valid prefix < nworkers. */
int zh_zroute_prefix(const uint8_t *id, size_t id_len, unsigned nworkers);

/* Decide the workers for payload `T…` (or Zurl's legacy `J…` JSON) arriving for `role`.
 * Sets bit w of *mask for each worker (nworkers <= 64). Returns the number of workers chosen (>=
 * 1), or a negative ZH_E_* code when the packet can't be routed (malformed, no id, bad prefix); the
 * caller then hands it to one worker of its choice so the precise error is logged (and answered,
 * where the role answers). */
int zh_zroute(enum zh_role role, const uint8_t *payload, size_t n, unsigned nworkers,
              uint64_t *mask);

struct json_t;

/* zh_zroute(), keeping the parse of a J payload: *json is the object zh_jformat_parse() made of
 * it (the caller owns the reference), or NULL (a T payload, or a J payload that does not parse
 * strictly: the worker parses it again and reports why). */
int zh_zroute_json(enum zh_role role, const uint8_t *payload, size_t n, unsigned nworkers,
                   uint64_t *mask, struct json_t **json);

#endif
