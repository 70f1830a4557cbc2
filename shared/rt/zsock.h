/* The ZeroMQ sockets zhttpd owns: their names, types and directions, and opening one with its
 * options and endpoints for the bridge (shared/rt/zbridge.c), on the thread that creates the
 * bridge.
 */
#ifndef ZH_SHARED_RT_ZSOCK_H
#define ZH_SHARED_RT_ZSOCK_H

#include <stdbool.h>

#include "shared/proto/buf.h"
#include "shared/proto/session.h"

/* The ZeroMQ sockets zhttpd owns, by role and job (see DESIGN.md / ZHTTP.md §2). */
enum zh_zsock {
    /* client role: zhttpd answers requests from requesters */
    ZH_ZS_C_IN = 0,    /* PULL: first packet of each stream session */
    ZH_ZS_C_IN_STREAM, /* ROUTER (identity = instance id): later requester packets */
    ZH_ZS_C_OUT,       /* XPUB: replies, one frame "<requester-from> T…" */
    ZH_ZS_C_REQ, /* ROUTER: req-mode requests [env…, "", T…], replies with the same envelope */
    /* server role: zhttpd hands inbound requests to handlers */
    ZH_ZS_S_OUT,        /* PUSH: first packet of each session */
    ZH_ZS_S_OUT_STREAM, /* ROUTER (identity = instance id): later packets [handler-id, "", T…] */
    ZH_ZS_S_IN,         /* SUB (topic "<instance-id> "): handler replies */
    ZH_ZS_S_REQ,        /* DEALER: req-mode ["", T…] both ways */
    ZH_ZS_COUNT
};

/* Socket name for logs ("client-in", ...). */
const char *zh_zsock_name(enum zh_zsock s);

/* The socket's ZMQ_* type. */
int zh_zsock_type(enum zh_zsock s);

/* Whether we read from s / send on s / s is a ROUTER (frame 0 is the peer's identity). */
bool zh_zsock_receives(enum zh_zsock s);
bool zh_zsock_sends(enum zh_zsock s);
bool zh_zsock_is_router(enum zh_zsock s);

/* The role whose messages travel on s. */
enum zh_role zh_zsock_role(enum zh_zsock s);

struct zh_zbridge_config;
struct zh_ipc_locks;

/* Create socket s in ctx with the options cfg asks for (HWMs, our identity on the stream ROUTERs,
 * ROUTER_MANDATORY, the SUB topic "<instance-id> "), then bind or connect each of its endpoints
 * (ipc paths made absolute, parent directories created and locked into locks: shared/rt/ipc.h;
 * bound ipc files chmod'ed to cfg->ipc_file_mode). Sets *out and returns 0, or returns -errno with
 * the reason appended to err and *out NULL (the socket closed). */
int zh_zsock_open(void *ctx, enum zh_zsock s, const struct zh_zbridge_config *cfg,
                  struct zh_ipc_locks *locks, void **out, struct zh_buf *err);

#endif
