#include "daemon/scrape.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "shared/proto/mem.h"
#include "shared/rt/log.h"

#define REQ_MAX    8192
#define TIMEOUT_MS 2000

struct zh_scrape {
    int fd;
    int stop[2]; /* pipe: a byte stops the thread */
    int port;
    struct zh_metrics *const *per;
    size_t n;
    struct zh_zbridge *bridge;
    pthread_t thread;
    bool started;
};

struct zh_scrape *zh_scrape_new(const char *addr, int port, struct zh_metrics *const *per, size_t n,
                                struct zh_zbridge *bridge, struct zh_buf *err)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        len = sizeof(*a4);
    } else if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        len = sizeof(*a6);
    } else {
        zh_buf_printf(err, "--metrics: '%s' is not a numeric IPv4 or IPv6 address", addr);
        return NULL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 16) < 0) {
        zh_buf_printf(err, "--metrics %s:%d: %s", addr, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    struct zh_scrape *s = zh_calloc(1, sizeof(*s));
    s->fd = fd;
    s->per = per;
    s->n = n;
    s->bridge = bridge;
    if (pipe2(s->stop, O_CLOEXEC) < 0) {
        zh_buf_printf(err, "--metrics: %s", strerror(errno));
        close(fd);
        zh_free(s);
        return NULL;
    }
    getsockname(fd, (struct sockaddr *)&ss, &len);
    s->port = ss.ss_family == AF_INET ? ntohs(a4->sin_port) : ntohs(a6->sin6_port);
    return s;
}

int zh_scrape_port(const struct zh_scrape *s)
{
    return s->port;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void answer(int fd, const char *status, const char *type, const char *body, size_t n)
{
    char head[256];
    int h = snprintf(head, sizeof(head),
                     "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, type, n);
    write_all(fd, head, (size_t)h);
    write_all(fd, body, n);
}

static void serve(struct zh_scrape *s, int fd)
{
    struct timeval tv = {TIMEOUT_MS / 1000, (TIMEOUT_MS % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char req[REQ_MAX + 1];
    size_t len = 0;
    while (len < REQ_MAX) {
        ssize_t r = read(fd, req + len, REQ_MAX - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
            break;
    }
    req[len] = '\0';
    if (!strstr(req, "\r\n\r\n") && !strstr(req, "\n\n")) {
        static const char msg[] = "bad request\n";
        answer(fd, "400 Bad Request", "text/plain", msg, sizeof(msg) - 1);
        return;
    }
    bool get = strncmp(req, "GET ", 4) == 0, head = strncmp(req, "HEAD ", 5) == 0;
    if (!get && !head) {
        static const char msg[] = "method not allowed\n";
        answer(fd, "405 Method Not Allowed", "text/plain", msg, sizeof(msg) - 1);
        return;
    }
    const char *path = req + (get ? 4 : 5);
    size_t plen = strcspn(path, " ?\r\n");
    if (!((plen == 8 && strncmp(path, "/metrics", 8) == 0) || (plen == 1 && path[0] == '/'))) {
        static const char msg[] = "not found: the metrics are at /metrics\n";
        answer(fd, "404 Not Found", "text/plain", msg, sizeof(msg) - 1);
        return;
    }
    struct zh_metrics_gauges g = {0};
    for (unsigned i = 0; s->bridge && i < s->n; i++) {
        struct zh_chan *in = zh_zbridge_inbox(s->bridge, i);
        g.chan_in += in ? zh_chan_size(in) : 0;
        for (int k = 0; k < ZH_ZS_COUNT; k++) {
            struct zh_chan *out = zh_zbridge_has(s->bridge, (enum zh_zsock)k)
                                      ? zh_zbridge_outbox(s->bridge, i, (enum zh_zsock)k)
                                      : NULL;
            g.chan_out += out ? zh_chan_size(out) : 0;
        }
    }
    for (int k = 0; s->bridge && k < ZH_ZS_COUNT && g.n_socks < 16; k++) {
        enum zh_zsock zs = (enum zh_zsock)k;
        if (!zh_zbridge_has(s->bridge, zs) || !zh_zsock_sends(zs))
            continue;
        g.sock_name[g.n_socks] = zh_zsock_name(zs);
        zh_zbridge_parked(s->bridge, zs, &g.parked_now[g.n_socks], &g.parked_total[g.n_socks]);
        g.n_socks++;
    }
    struct zh_buf out = {0};
    zh_metrics_render(s->per, s->n, s->bridge ? &g : NULL, &out);
    if (head)
        out.len = 0;
    answer(fd, "200 OK", "text/plain; version=0.0.4; charset=utf-8",
           out.len ? (const char *)out.data : "", out.len);
    zh_buf_free(&out);
}

static void *scrape_main(void *arg)
{
    struct zh_scrape *s = arg;
    zh_log_set_thread("metrics");
    for (;;) {
        struct pollfd p[2] = {{s->fd, POLLIN, 0}, {s->stop[0], POLLIN, 0}};
        int r = poll(p, 2, -1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        int c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        serve(s, c);
        close(c);
    }
    return NULL;
}

int zh_scrape_start(struct zh_scrape *s)
{
    int r = pthread_create(&s->thread, NULL, scrape_main, s);
    if (r)
        return -r;
    s->started = true;
    return 0;
}

void zh_scrape_free(struct zh_scrape *s)
{
    if (!s)
        return;
    if (s->started) {
        char b = 1;
        while (write(s->stop[1], &b, 1) < 0 && errno == EINTR)
            ;
        pthread_join(s->thread, NULL);
    }
    close(s->fd);
    close(s->stop[0]);
    close(s->stop[1]);
    zh_free(s);
}
