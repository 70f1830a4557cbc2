/* The Prometheus endpoint (--metrics [addr:]port): a small HTTP/1.0 responder on its own thread,
 * off the workers. GET /metrics sums every worker's counters (shared/rt/metrics.h) and answers
 * the text exposition format; anything else gets 404 (or 405 for another method). One connection
 * at a time, each read bounded in size (8 KiB) and time (2 s); the connection is closed after the
 * answer. */
#ifndef ZH_DAEMON_SCRAPE_H
#define ZH_DAEMON_SCRAPE_H

#include <stddef.h>

#include "shared/proto/buf.h"
#include "shared/rt/metrics.h"
#include "shared/rt/zbridge.h"

struct zh_scrape;

/* Bind addr:port (numeric IPv4 or IPv6) now. per[0..n) are read on every scrape; bridge (may be
 * NULL) gives the channel depths of workers 0..n-1. NULL with the reason in err. */
struct zh_scrape *zh_scrape_new(const char *addr, int port, struct zh_metrics *const *per, size_t n,
                                struct zh_zbridge *bridge, struct zh_buf *err);

/* The bound port (useful with port 0). */
int zh_scrape_port(const struct zh_scrape *s);

/* Start the thread. Returns 0 or -errno. */
int zh_scrape_start(struct zh_scrape *s);

/* Stop the thread (if started), close the socket and free. */
void zh_scrape_free(struct zh_scrape *s);

#endif
