/* ipc endpoints: absolute paths, parent directories and the lock file of each bound one. See
 * ipc.h. */
#include "shared/rt/ipc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int zh_ipc_endpoint(const char *spec, bool bind, struct zh_ipc_locks *locks, struct zh_buf *abs,
                    struct zh_buf *err)
{
    const char *path = spec + 6;
    zh_buf_reset(abs);
    zh_buf_puts(abs, "ipc://");
    if (path[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof(cwd))) {
            int e = errno;
            zh_buf_printf(err, "%s: cannot make path absolute: %s", spec, strerror(e));
            return -e;
        }
        zh_buf_printf(abs, "%s/", cwd);
    }
    zh_buf_puts(abs, path);
    if (!bind)
        return 0;
    const char *full = zh_buf_cstr(abs) + 6;
    /* mkdir -p of the parent directory */
    char dir[PATH_MAX];
    size_t n = strlen(full);
    if (n >= sizeof(dir)) {
        zh_buf_printf(err, "%s: path too long", spec);
        return -ENAMETOOLONG;
    }
    memcpy(dir, full, n + 1);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        for (char *p = dir + 1; *p; p++) {
            if (*p != '/')
                continue;
            *p = '\0';
            if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
                int e = errno;
                zh_buf_printf(err, "%s: cannot create directory %s: %s", spec, dir, strerror(e));
                return -e;
            }
            *p = '/';
        }
        if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
            int e = errno;
            zh_buf_printf(err, "%s: cannot create directory %s: %s", spec, dir, strerror(e));
            return -e;
        }
    }
    if (locks->n >= ZH_IPC_MAX_LOCKS) {
        zh_buf_printf(err, "%s: too many ipc endpoints", spec);
        return -EMFILE;
    }
    char lock[PATH_MAX + 8];
    snprintf(lock, sizeof(lock), "%s.lock", full);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        zh_buf_printf(err, "%s: cannot open lock file %s: %s", spec, lock, strerror(e));
        return -e;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            zh_buf_printf(err, "%s: in use by another process (lock %s is held)", spec, lock);
        else
            zh_buf_printf(err, "%s: cannot lock %s: %s", spec, lock, strerror(e));
        return -e;
    }
    locks->fds[locks->n++] = fd;
    return 0;
}

void zh_ipc_unlock(struct zh_ipc_locks *locks)
{
    for (int i = 0; i < locks->n; i++)
        close(locks->fds[i]);
    locks->n = 0;
}
