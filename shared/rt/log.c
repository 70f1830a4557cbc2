#include "shared/rt/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

_Atomic int zh_log_level_current = ZH_LOG_INFO;

static int log_fd = STDERR_FILENO;
static _Thread_local const char *thread_tag = "main";

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG", "TRACE"};

void zh_log_set_level(int level)
{
    if (level < ZH_LOG_ERROR)
        level = ZH_LOG_ERROR;
    if (level > ZH_LOG_TRACE)
        level = ZH_LOG_TRACE;
    atomic_store_explicit(&zh_log_level_current, level, memory_order_relaxed);
}

int zh_log_open(const char *path)
{
    if (!path) {
        zh_log_close();
        return 0;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    zh_log_close();
    log_fd = fd;
    return 0;
}

void zh_log_close(void)
{
    if (log_fd != STDERR_FILENO)
        close(log_fd);
    log_fd = STDERR_FILENO;
}

void zh_log_set_thread(const char *tag)
{
    thread_tag = tag;
}

void zh_log_write(int level, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    if (level < 0)
        level = 0;
    if (level > ZH_LOG_TRACE)
        level = ZH_LOG_TRACE;
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02d %02d:%02d:%02d.%03ld [%s] [%s] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level], thread_tag);
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    const char *p = line;
    while (len > 0) {
        ssize_t w = write(log_fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        p += w;
        len -= (size_t)w;
    }
}

char *zh_log_escape(char *out, unsigned long outlen, const void *p, unsigned long n)
{
    const unsigned char *s = p;
    unsigned long o = 0;
    for (unsigned long i = 0; i < n; i++) {
        if (o + 8 > outlen) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\') {
            out[o++] = (char)s[i];
        } else {
            snprintf(out + o, 5, "\\x%02x", s[i]);
            o += 4;
        }
    }
    out[o] = '\0';
    return out;
}

int zh_log_limit_allow(struct zh_log_limit *l, unsigned interval_ms, unsigned long *suppressed)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long now =
        (unsigned long long)ts.tv_sec * 1000u + (unsigned long long)ts.tv_nsec / 1000000u;
    if (now < l->_next_ms) {
        l->_suppressed++;
        return 0;
    }
    if (suppressed)
        *suppressed = l->_suppressed;
    l->_suppressed = 0;
    l->_next_ms = now + interval_ms;
    return 1;
}
