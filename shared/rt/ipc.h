/* ipc:// endpoints of the zmq bridge (used on the thread that creates the sockets).
 *
 * For a bound ipc endpoint the path is made absolute, its parent directories are created (mkdir -p,
 * 0755) and `<path>.lock` is flock'ed, so a second instance fails at startup instead of libzmq
 * silently unlinking our socket file on its bind. The locks are held until zh_ipc_unlock(). */
#ifndef ZH_SHARED_RT_IPC_H
#define ZH_SHARED_RT_IPC_H

#include <stdbool.h>

#include "shared/proto/buf.h"

#define ZH_IPC_MAX_LOCKS 64

/* The lock files held, one per bound ipc endpoint. Zero-initialise. */
struct zh_ipc_locks {
    int fds[ZH_IPC_MAX_LOCKS];
    int n;
};

/* spec is "ipc://PATH": write "ipc://ABSOLUTE-PATH" to abs (reset first); when bind, create the
 * parent directories and take the lock (added to locks). Returns 0, or -errno with the reason
 * appended to err (-EWOULDBLOCK: another process holds the lock). */
int zh_ipc_endpoint(const char *spec, bool bind, struct zh_ipc_locks *locks, struct zh_buf *abs,
                    struct zh_buf *err);

/* Release every lock (close the lock files; the files stay). */
void zh_ipc_unlock(struct zh_ipc_locks *locks);

#endif
