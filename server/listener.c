#include "server/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "shared/proto/mem.h"
#include "shared/rt/log.h"

#define ACCEPT_BATCH  16 /* per listener per turn, so one busy port can't starve the others */
#define FULL_RETRY_MS 10
/* Memory given back after a peak: checked every TRIM_CHECK_MS; when the connections held dropped
 * by at least TRIM_MIN_DROP and to half the peak since the last trim, malloc_trim(0) returns the
 * free pages of every malloc arena (the workers' included) to the kernel. */
#define TRIM_CHECK_MS 1000
#define TRIM_MIN_DROP 256

struct lsock {
    int fd;
    struct zh_listen_spec spec;
    enum zh_server_kind kind;
    bool paused; /* its kind is full: out of the poll set, retried every FULL_RETRY_MS */
    char name[128];
};

struct zh_listener {
    struct lsock *socks;
    size_t n;
    struct zh_server *const *workers;
    unsigned nworkers;
    unsigned next_worker;
    size_t next_sock;
    int epfd;
    int ctl_fd;
    atomic_bool stopping;
    pthread_t thread;
    bool started;
    struct zh_tls_store *tls; /* reloaded every tls_reload_ms when set */
    unsigned tls_reload_ms;
    unsigned conn_peak; /* most connections held since the last trim */
};

/* Open, bind and listen. Returns the fd, or -errno with the reason appended to err (-EINVAL for an
 * address that is not numeric). */
static int open_tcp(const struct zh_listen_spec *sp, char *name, size_t name_len,
                    struct zh_buf *err)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof(ss));
    const char *addr = sp->addr ? sp->addr : "0.0.0.0";
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)sp->port);
        len = sizeof(*a4);
        snprintf(name, name_len, "%s:%d", addr, sp->port);
    } else if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)sp->port);
        len = sizeof(*a6);
        snprintf(name, name_len, "[%s]:%d", addr, sp->port);
    } else {
        zh_buf_printf(err, "listen: '%s' is not a numeric IPv4 or IPv6 address", addr);
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        zh_buf_printf(err, "listen %s: socket: %s", name, strerror(e));
        return -e;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1024) < 0) {
        int e = errno;
        zh_buf_printf(err, "listen %s: %s", name, strerror(e));
        close(fd);
        return -e;
    }
    return fd;
}

/* Give the socket file its mode and owner. Returns 0, or -errno with the reason in err (-ENOENT
 * for an unknown user or group). */
static int own_unix(const struct zh_listen_spec *sp, const char *name, struct zh_buf *err)
{
    if (sp->mode >= 0 && chmod(sp->path, (mode_t)sp->mode) < 0) {
        int e = errno;
        zh_buf_printf(err, "listen %s: chmod %o: %s", name, (unsigned)sp->mode, strerror(e));
        return -e;
    }
    if (!sp->user && !sp->group)
        return 0;
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    if (sp->user) {
        struct passwd *pw = getpwnam(sp->user);
        if (!pw) {
            zh_buf_printf(err, "listen %s: unknown user '%s'", name, sp->user);
            return -ENOENT;
        }
        uid = pw->pw_uid;
    }
    if (sp->group) {
        struct group *gr = getgrnam(sp->group);
        if (!gr) {
            zh_buf_printf(err, "listen %s: unknown group '%s'", name, sp->group);
            return -ENOENT;
        }
        gid = gr->gr_gid;
    }
    if (chown(sp->path, uid, gid) < 0) {
        int e = errno;
        zh_buf_printf(err, "listen %s: chown: %s", name, strerror(e));
        return -e;
    }
    return 0;
}

/* Open, bind and listen on a unix socket. Returns the fd, or -errno with the reason in err
 * (-ENAMETOOLONG for a missing or long path, -EADDRINUSE when a live server answers there). */
static int open_unix(const struct zh_listen_spec *sp, char *name, size_t name_len,
                     struct zh_buf *err)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (!sp->path || strlen(sp->path) >= sizeof(sun.sun_path)) {
        zh_buf_printf(err, "listen: unix socket path missing or too long");
        return -ENAMETOOLONG;
    }
    memcpy(sun.sun_path, sp->path, strlen(sp->path) + 1);
    snprintf(name, name_len, "unix:%s", sp->path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        zh_buf_printf(err, "listen %s: socket: %s", name, strerror(e));
        return -e;
    }
    int rc;
    /* A socket file left by a process that is gone is replaced; one that still answers belongs
     * to a live server and is not stolen. */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0) {
        int r = connect(probe, (struct sockaddr *)&sun, sizeof(sun));
        close(probe);
        if (r == 0) {
            zh_buf_printf(err, "listen %s: in use by another process", name);
            rc = -EADDRINUSE;
            goto fail;
        }
    }
    unlink(sp->path);
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, 1024) < 0) {
        rc = -errno;
        zh_buf_printf(err, "listen %s: %s", name, strerror(-rc));
        goto fail;
    }
    rc = own_unix(sp, name, err);
    if (rc < 0)
        goto fail;
    return fd;

fail:
    close(fd);
    return rc;
}

struct zh_listener *zh_listener_new(const struct zh_listen_spec *specs, size_t n,
                                    struct zh_server *const *workers, unsigned nworkers,
                                    struct zh_buf *err)
{
    struct zh_listener *l = zh_calloc(1, sizeof(*l));
    l->socks = zh_calloc(n ? n : 1, sizeof(*l->socks));
    l->workers = workers;
    l->nworkers = nworkers;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    atomic_init(&l->stopping, false);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->ctl_fd, &ev);
    for (size_t i = 0; i < n; i++) {
        struct lsock *ls = &l->socks[i];
        ls->spec = specs[i];
        int fd = specs[i].local ? open_unix(&specs[i], ls->name, sizeof(ls->name), err)
                                : open_tcp(&specs[i], ls->name, sizeof(ls->name), err);
        if (fd < 0) {
            zh_listener_free(l);
            return NULL;
        }
        ls->fd = fd;
        ls->kind = specs[i].req ? ZH_SERVER_REQ : ZH_SERVER_STREAM;
        l->n++;
        ev.data.u64 = i;
        epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev);
        zh_info("listening on %s (%s%s)", ls->name, specs[i].req ? "req" : "stream",
                specs[i].tls ? ", tls" : "");
    }
    return l;
}

/* A worker that took a reservation of this kind, starting after the last one used; NULL when the
 * kind is full (or every worker is closing). */
static struct zh_server *pick_worker(struct zh_listener *l, enum zh_server_kind kind)
{
    for (unsigned k = 0; k < l->nworkers; k++) {
        unsigned w = (l->next_worker + k) % l->nworkers;
        if (zh_server_reserve(l->workers[w], kind)) {
            l->next_worker = w + 1;
            return l->workers[w];
        }
    }
    return NULL;
}

/* Accept up to a batch from one listener. Returns 1, 0 when its kind is full, or -errno when the
 * process is out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the pending connection
 * stays in the kernel backlog, and retrying at once would only spin. */
static int accept_some(struct zh_listener *l, struct lsock *ls)
{
    for (int k = 0; k < ACCEPT_BATCH; k++) {
        unsigned turn = l->next_worker; /* the rotation moves on only for an accepted connection */
        struct zh_server *w = pick_worker(l, ls->kind);
        if (!w)
            return 0;
        struct zh_accepted *a = zh_calloc(1, sizeof(*a));
        a->peer_len = sizeof(a->peer);
        int fd;
        do {
            fd = accept4(ls->fd, (struct sockaddr *)&a->peer, &a->peer_len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        } while (fd < 0 && errno == EINTR);
        if (fd < 0) {
            int e = errno;
            zh_free(a);
            zh_server_unreserve(w, ls->kind);
            l->next_worker = turn;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM)
                return -e;
            if (e != EAGAIN && e != ECONNABORTED)
                zh_warn("accept on %s: %s", ls->name, strerror(e));
            return 1;
        }
        a->fd = fd;
        a->tls = ls->spec.tls;
        a->default_cert = ls->spec.default_cert;
        a->local = ls->spec.local;
        a->req_mode = ls->spec.req;
        a->local_len = sizeof(a->local_addr);
        getsockname(fd, (struct sockaddr *)&a->local_addr, &a->local_len);
        if (!ls->spec.local) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        if (zh_chan_push(zh_server_accept_chan(w), a) < 0) {
            zh_warn("accept on %s: worker hand-off queue full, connection closed", ls->name);
            close(fd);
            zh_free(a);
            zh_server_unreserve(w, ls->kind);
        }
    }
    return 1;
}

/* Pause (stop watching) or resume a listener. r is accept_some()'s result: 0 = limit reached,
 * negative = out of descriptors/memory. One log line per transition, never one per attempt. */
static void set_paused(struct zh_listener *l, size_t i, int r)
{
    struct lsock *ls = &l->socks[i];
    bool paused = r <= 0;
    if (ls->paused == paused)
        return;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};
    epoll_ctl(l->epfd, paused ? EPOLL_CTL_DEL : EPOLL_CTL_ADD, ls->fd, &ev);
    ls->paused = paused;
    if (r < 0)
        zh_warn("listener %s: accept: %s; accepting paused (clients wait in the backlog)", ls->name,
                strerror(-r));
    else if (paused)
        zh_info("listener %s: %s connection limit reached; accepting paused", ls->name,
                ls->kind == ZH_SERVER_REQ ? "req" : "stream");
    else
        zh_info("listener %s: accepting resumed", ls->name);
}

/* Give freed memory back once the connections held fell well below their peak (a burst of
 * stalled handshakes or idle connections leaves the arenas' free pages mapped otherwise). */
static void maybe_trim(struct zh_listener *l)
{
    unsigned now = 0;
    for (unsigned i = 0; i < l->nworkers; i++)
        now += zh_server_conn_count(l->workers[i]);
    if (now > l->conn_peak)
        l->conn_peak = now;
    if (l->conn_peak - now < TRIM_MIN_DROP || now > l->conn_peak / 2)
        return;
    uint64_t t0 = zh_time_ms();
    int r = malloc_trim(0);
    zh_debug("listener: connections %u -> %u: malloc_trim %s (%llu ms)", l->conn_peak, now,
             r ? "returned memory" : "found nothing to return",
             (unsigned long long)(zh_time_ms() - t0));
    l->conn_peak = now;
}

static void *listener_main(void *arg)
{
    struct zh_listener *l = arg;
    zh_log_set_thread("listener");
    uint64_t next_reload = l->tls ? zh_time_ms() + l->tls_reload_ms : UINT64_MAX;
    uint64_t next_trim = zh_time_ms() + TRIM_CHECK_MS;
    while (!atomic_load(&l->stopping)) {
        bool any_paused = false;
        for (size_t i = 0; i < l->n; i++)
            any_paused |= l->socks[i].paused;
        int timeout = any_paused ? FULL_RETRY_MS : -1;
        uint64_t now = zh_time_ms();
        uint64_t next = next_reload < next_trim ? next_reload : next_trim;
        int until = now >= next ? 0 : (int)(next - now);
        if (timeout < 0 || until < timeout)
            timeout = until;
        struct epoll_event evs[64];
        int n = epoll_wait(l->epfd, evs, 64, timeout);
        if (n < 0 && errno != EINTR) {
            zh_error("listener: epoll_wait: %s", strerror(errno));
            break;
        }
        if (atomic_load(&l->stopping))
            break;
        if (next_reload != UINT64_MAX && zh_time_ms() >= next_reload) {
            int r = zh_tls_store_reload_if_changed(l->tls);
            if (r > 0)
                zh_info("listener: TLS identities reloaded (%zu loaded)",
                        zh_tls_store_count(l->tls));
            next_reload = zh_time_ms() + l->tls_reload_ms;
        }
        if (zh_time_ms() >= next_trim) {
            maybe_trim(l);
            next_trim = zh_time_ms() + TRIM_CHECK_MS;
        }
        /* Rotate over all listeners each round, starting after the one served first last time:
         * readiness order would otherwise favour low-numbered sockets. A paused one is retried
         * here too and comes back once its kind has room. */
        for (size_t k = 0; k < l->n; k++) {
            size_t i = (l->next_sock + k) % l->n;
            set_paused(l, i, accept_some(l, &l->socks[i]));
        }
        l->next_sock = l->n ? (l->next_sock + 1) % l->n : 0;
    }
    return NULL;
}

void zh_listener_set_tls_reload(struct zh_listener *l, struct zh_tls_store *tls,
                                unsigned interval_ms)
{
    l->tls = tls;
    l->tls_reload_ms = interval_ms ? interval_ms : 1000;
}

int zh_listener_start(struct zh_listener *l)
{
    int r = pthread_create(&l->thread, NULL, listener_main, l);
    if (r != 0)
        return -r;
    l->started = true;
    return 0;
}

void zh_listener_stop(struct zh_listener *l)
{
    if (l->started) {
        atomic_store(&l->stopping, true);
        uint64_t one = 1;
        while (write(l->ctl_fd, &one, sizeof(one)) < 0 && errno == EINTR)
            ;
        pthread_join(l->thread, NULL);
        l->started = false;
    }
    for (size_t i = 0; i < l->n; i++) {
        if (l->socks[i].fd < 0)
            continue;
        close(l->socks[i].fd);
        l->socks[i].fd = -1;
        if (l->socks[i].spec.local && l->socks[i].spec.path)
            unlink(l->socks[i].spec.path);
    }
}

void zh_listener_free(struct zh_listener *l)
{
    if (!l)
        return;
    zh_listener_stop(l);
    close(l->epfd);
    close(l->ctl_fd);
    zh_free(l->socks);
    zh_free(l);
}
