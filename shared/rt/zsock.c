/* The ZeroMQ sockets: names, types, directions, and opening one for the bridge. See zsock.h. */
#include "shared/rt/zsock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#include "shared/rt/ipc.h"
#include "shared/rt/log.h"
#include "shared/rt/zbridge.h"

static const char *const zsock_names[ZH_ZS_COUNT] = {
    [ZH_ZS_C_IN] = "client-in",   [ZH_ZS_C_IN_STREAM] = "client-in-stream",
    [ZH_ZS_C_OUT] = "client-out", [ZH_ZS_C_REQ] = "client-req",
    [ZH_ZS_S_OUT] = "server-out", [ZH_ZS_S_OUT_STREAM] = "server-out-stream",
    [ZH_ZS_S_IN] = "server-in",   [ZH_ZS_S_REQ] = "server-req",
};

const char *zh_zsock_name(enum zh_zsock s)
{
    return (unsigned)s < ZH_ZS_COUNT ? zsock_names[s] : "?";
}

static const int types[ZH_ZS_COUNT] = {
    [ZH_ZS_C_IN] = ZMQ_PULL,    [ZH_ZS_C_IN_STREAM] = ZMQ_ROUTER, [ZH_ZS_C_OUT] = ZMQ_XPUB,
    [ZH_ZS_C_REQ] = ZMQ_ROUTER, [ZH_ZS_S_OUT] = ZMQ_PUSH,         [ZH_ZS_S_OUT_STREAM] = ZMQ_ROUTER,
    [ZH_ZS_S_IN] = ZMQ_SUB,     [ZH_ZS_S_REQ] = ZMQ_DEALER,
};

int zh_zsock_type(enum zh_zsock s)
{
    return types[s];
}

bool zh_zsock_receives(enum zh_zsock s)
{
    return s != ZH_ZS_S_OUT;
}

bool zh_zsock_sends(enum zh_zsock s)
{
    return s != ZH_ZS_C_IN && s != ZH_ZS_S_IN;
}

bool zh_zsock_is_router(enum zh_zsock s)
{
    return types[s] == ZMQ_ROUTER;
}

enum zh_role zh_zsock_role(enum zh_zsock s)
{
    return s < ZH_ZS_S_OUT ? ZH_ROLE_CLIENT : ZH_ROLE_SERVER;
}

static int setopt_int(void *sock, int opt, int v)
{
    return zmq_setsockopt(sock, opt, &v, sizeof(v));
}

int zh_zsock_open(void *ctx, enum zh_zsock s, const struct zh_zbridge_config *cfg,
                  struct zh_ipc_locks *locks, void **out, struct zh_buf *err)
{
    const struct zh_zbridge_sock_config *sc = &cfg->socks[s];
    *out = NULL;
    void *sock = zmq_socket(ctx, types[s]);
    if (!sock) {
        int e = errno;
        zh_buf_printf(err, "%s: zmq_socket: %s", zh_zsock_name(s), zmq_strerror(e));
        return -e;
    }
    setopt_int(sock, ZMQ_LINGER, 0);
    if (zh_zsock_receives(s) && cfg->in_hwm > 0)
        setopt_int(sock, ZMQ_RCVHWM, cfg->in_hwm);
    if (zh_zsock_sends(s) && cfg->out_hwm > 0)
        setopt_int(sock, ZMQ_SNDHWM, cfg->out_hwm);
    if (s == ZH_ZS_C_IN_STREAM || s == ZH_ZS_S_OUT_STREAM) {
        zmq_setsockopt(sock, ZMQ_ROUTING_ID, cfg->instance_id, strlen(cfg->instance_id));
        setopt_int(sock, ZMQ_ROUTER_HANDOVER, 1);
    }
    if (zh_zsock_is_router(s))
        setopt_int(sock, ZMQ_ROUTER_MANDATORY, 1);
    if (s == ZH_ZS_C_OUT)
        setopt_int(sock, ZMQ_XPUB_NODROP, 1);
    if (s == ZH_ZS_S_IN) {
        char topic[ZH_ZHTTP_MAX_ID_LEN + 2];
        int tn = snprintf(topic, sizeof(topic), "%s ", cfg->instance_id);
        zmq_setsockopt(sock, ZMQ_SUBSCRIBE, topic, (size_t)tn);
    }
    struct zh_buf abs = {0};
    int rc = 0;
    for (size_t i = 0; i < sc->n_specs && rc == 0; i++) {
        const char *spec = sc->specs[i];
        bool bind = !sc->connect;
        if (strncmp(spec, "ipc://", 6) == 0) {
            rc = zh_ipc_endpoint(spec, bind, locks, &abs, err);
            if (rc < 0)
                break;
            spec = zh_buf_cstr(&abs);
        }
        int r = bind ? zmq_bind(sock, spec) : zmq_connect(sock, spec);
        if (r < 0) {
            rc = -errno;
            zh_buf_printf(err, "%s: cannot %s %s: %s", zh_zsock_name(s), bind ? "bind" : "connect",
                          spec, zmq_strerror(-rc));
            break;
        }
        if (bind && strncmp(spec, "ipc://", 6) == 0 && cfg->ipc_file_mode >= 0)
            chmod(spec + 6, (mode_t)cfg->ipc_file_mode);
        zh_info("zmq %s %s %s", zh_zsock_name(s), bind ? "bound" : "connected", spec);
    }
    zh_buf_free(&abs);
    if (rc < 0)
        zmq_close(sock);
    else
        *out = sock;
    return rc;
}
