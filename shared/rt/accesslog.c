#include "shared/rt/accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_fd = -1;

int zh_accesslog_open(const char *path)
{
    int fd = strcmp(path, "-") == 0 ? dup(STDOUT_FILENO)
                                    : open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    int cur = atomic_load(&log_fd);
    if (cur >= 0) {
        /* Same descriptor number, new file: a thread writing now writes to one or the other. */
        int r = dup2(fd, cur) < 0 ? -errno : 0;
        close(fd);
        return r;
    }
    atomic_store(&log_fd, fd);
    return 0;
}

void zh_accesslog_close(void)
{
    int old = atomic_exchange(&log_fd, -1);
    if (old >= 0)
        close(old);
}

bool zh_accesslog_on(void)
{
    return atomic_load_explicit(&log_fd, memory_order_relaxed) >= 0;
}

static const char *dash(const char *s)
{
    return s && *s ? s : "-";
}

void zh_accesslog_write(const struct zh_accesslog_entry *e)
{
    int fd = atomic_load_explicit(&log_fd, memory_order_relaxed);
    if (fd < 0)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char path[256];
    const char *p = dash(e->path);
    size_t n = strcspn(p, "?#");
    if (n >= sizeof(path))
        n = sizeof(path) - 1;
    memcpy(path, p, n);
    path[n] = '\0';
    char status[16] = "-";
    if (e->status > 0)
        snprintf(status, sizeof(status), "%d", e->status);
    char line[1024];
    int len =
        snprintf(line, sizeof(line),
                 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ role=%s peer=%s session=%s method=%s "
                 "host=%s path=%s status=%s bytes=%llu duration_ms=%llu outcome=%s\n",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (long)(tv.tv_usec / 1000), dash(e->role), dash(e->peer), dash(e->session),
                 dash(e->method), dash(e->host), path, status, (unsigned long long)e->bytes,
                 (unsigned long long)e->duration_ms, dash(e->outcome));
    if (len < 0)
        return;
    if ((size_t)len >= sizeof(line)) {
        len = (int)sizeof(line) - 1;
        line[len - 1] = '\n';
    }
    ssize_t w;
    do
        w = write(fd, line, (size_t)len);
    while (w < 0 && errno == EINTR);
}
