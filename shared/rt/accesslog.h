/* The access log (--access-log FILE|-): one line per finished request, from any thread, each line
 * one write() on an O_APPEND descriptor (lines of different threads never interleave). Off until
 * zh_accesslog_open(). The format is documented in docs/operations.md:
 *
 *   TIME role=R peer=P session=S method=M host=H path=PATH status=N bytes=N duration_ms=N
 *   outcome=O
 *
 * path has no query string; a field without a value is "-". */
#ifndef ZH_RT_ACCESSLOG_H
#define ZH_RT_ACCESSLOG_H

#include <stdbool.h>
#include <stdint.h>

/* Open path for appending ("-" = stdout). Replaces the current file (SIGHUP reopens it after a
 * rotation). Returns 0 or -errno (the old file stays). */
int zh_accesslog_open(const char *path);

/* Close it; the log is off again. Only when no other thread writes (at exit). */
void zh_accesslog_close(void);

/* Whether lines are written (check before building one). */
bool zh_accesslog_on(void);

/* One finished request. Strings may be NULL ("-"); status 0 = none; bytes = response body bytes
 * sent to the client (server) or received from the origin (client). */
struct zh_accesslog_entry {
    const char *role;
    const char *peer;
    const char *session;
    const char *method;
    const char *host;
    const char *path; /* the query string is cut off here */
    int status;
    uint64_t bytes;
    uint64_t duration_ms;
    const char *outcome; /* "ok", or the condition / stage of a failure */
};

void zh_accesslog_write(const struct zh_accesslog_entry *e);

#endif
