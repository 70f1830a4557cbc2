/* libcurl multi glue for one worker loop (the ephiperfifo shape): CURLMOPT_SOCKETFUNCTION maps
 * curl's sockets to loop io watchers, CURLMOPT_TIMERFUNCTION to one loop timer, and completed
 * transfers are reaped with curl_multi_info_read() after each curl_multi_socket_action().
 *
 * Neither callback calls back into curl: the timer is only armed, and a curl socket's watcher is
 * freed in a deferred phase, so an epoll event fetched in the same batch never reaches freed
 * memory. */
#ifndef ZH_CLIENT_OUTBOUND_H
#define ZH_CLIENT_OUTBOUND_H

#include <curl/curl.h>

#include "shared/rt/loop.h"

struct zh_outbound;

/* Called from the loop (never inside a curl callback) when a transfer ends. The easy handle has
 * been removed from the multi handle; the callee owns it again. */
typedef void zh_outbound_done_cb(CURL *easy, CURLcode result, void *data);

/* Create the multi handle for loop. */
struct zh_outbound *zh_outbound_new(struct zh_loop *loop);

/* Free the multi handle. Transfers still running must have been removed first. */
void zh_outbound_free(struct zh_outbound *o);

/* Start a configured transfer; done is called once when it ends. Returns 0 or a negative code.
 * Sets the transfer's CURLOPT_PRIVATE and CURLOPT_CLOSESOCKETFUNCTION/DATA. */
int zh_outbound_add(struct zh_outbound *o, CURL *easy, zh_outbound_done_cb *done, void *data);

/* Connection pools, one per trust context: a connection opened by a transfer of one pool is
 * only ever reused by transfers of the same pool (see docs/internals/client-engine.md). */
enum zh_outbound_pool {
    ZH_POOL_CHECKED = 0, /* policy-checked transfers: the multi handle's connection cache */
    ZH_POOL_TRUSTED = 1, /* transfers outside the policy (ignore-policies): a cache of their own */
};

/* Put a transfer in a pool; call before zh_outbound_add() (every time: a reused easy handle
 * keeps its last pool). */
void zh_outbound_set_pool(struct zh_outbound *o, CURL *easy, enum zh_outbound_pool pool);

/* Abort a running transfer (done is not called). Safe outside curl callbacks only. */
void zh_outbound_remove(struct zh_outbound *o, CURL *easy);

/* Tell the engine that curl opened socket s for a connection (call it from every
 * CURLOPT_OPENSOCKETFUNCTION; the close is seen through the CURLOPT_CLOSESOCKETFUNCTION that
 * zh_outbound_add() sets). Only such sockets are kept registered while their connection is idle. */
void zh_outbound_opened(struct zh_outbound *o, curl_socket_t s);

/* Number of running transfers. */
unsigned zh_outbound_running(const struct zh_outbound *o);

/* The multi handle (for options such as connection limits). */
CURLM *zh_outbound_multi(struct zh_outbound *o);

#endif
