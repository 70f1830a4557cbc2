/* Logging to stderr (or a file) with time, level and thread tag, one write() per line.
 *
 * Levels follow Condure's 0–4 scale: 0 error, 1 warn, 2 info, 3 debug, 4 trace. A message is
 * written when its level is <= the configured level. Safe to call from any thread. */
#ifndef ZH_SHARED_RT_LOG_H
#define ZH_SHARED_RT_LOG_H

#include <stdatomic.h>

enum zh_log_level {
    ZH_LOG_ERROR = 0,
    ZH_LOG_WARN = 1,
    ZH_LOG_INFO = 2,
    ZH_LOG_DEBUG = 3,
    ZH_LOG_TRACE = 4,
};

/* Written by SIGHUP's reload while every thread reads it: atomic, read relaxed (a line logged at
 * the old level around a reload is fine). */
extern _Atomic int zh_log_level_current;

/* Set the level (clamped to 0..4). */
void zh_log_set_level(int level);

/* Send output to path (appending), or to stderr when path is NULL. Returns 0 or -errno. */
int zh_log_open(const char *path);

/* Close a log file opened with zh_log_open (back to stderr). */
void zh_log_close(void);

/* Name the calling thread in log lines ("main", "bridge", "w0", ...). The string must outlive the
 * thread's logging (a literal or static buffer). */
void zh_log_set_thread(const char *tag);

/* Write one line (no trailing newline needed). Prefer the macros, which skip formatting when
 * disabled. */
void zh_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define zh_log_enabled(level) \
    ((level) <= atomic_load_explicit(&zh_log_level_current, memory_order_relaxed))
#define zh_log(level, ...)                    \
    do {                                      \
        if (zh_log_enabled(level))            \
            zh_log_write(level, __VA_ARGS__); \
    } while (0)
#define zh_error(...) zh_log(ZH_LOG_ERROR, __VA_ARGS__)
#define zh_warn(...)  zh_log(ZH_LOG_WARN, __VA_ARGS__)
#define zh_info(...)  zh_log(ZH_LOG_INFO, __VA_ARGS__)
#define zh_debug(...) zh_log(ZH_LOG_DEBUG, __VA_ARGS__)
#define zh_trace(...) zh_log(ZH_LOG_TRACE, __VA_ARGS__)

/* A per-call-site limit on repeated log lines (one thread per limiter; not thread-safe). Use the
 * API; the members are private. */
struct zh_log_limit {
    unsigned long long _next_ms;
    unsigned long _suppressed;
};

/* True when a line may be written now: at most one per interval_ms. When it returns true,
 * *suppressed (if not NULL) says how many lines were held back since the last one written. */
int zh_log_limit_allow(struct zh_log_limit *l, unsigned interval_ms, unsigned long *suppressed);

/* Format bytes for a log line: printable ASCII kept, others as \xNN, cut at max bytes with "...".
 * Writes a NUL-terminated string into out (outlen >= 8). Returns out. */
char *zh_log_escape(char *out, unsigned long outlen, const void *p, unsigned long n);

#endif
