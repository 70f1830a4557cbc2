/* ws_load: WebSocket echo load client for benchmarks (one thread, epoll).
 *
 * Opens --connections WebSocket connections to ws://127.0.0.1:PORT/ (the handshake's
 * Sec-WebSocket-Accept is checked), then each connection plays ping-pong for --duration seconds:
 * send one masked text frame with a --size byte payload that differs per message (connection
 * number and counter), wait for the echo, check it byte for byte (an unmasked FIN text frame with
 * exactly that payload), send the next. Latency is measured per message.
 *
 * usage: ws_load --port PORT [--connections 50] [--duration 5] [--size 32]
 * Prints one line: "WSLOAD good=N bad=N dur_us=N p50_us=N p99_us=N conns=N" (bad = a wrong echo,
 * a failed handshake or a connection lost). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXC     4096
#define HIST_MAX 200000 /* microsecond buckets: 0..200 ms */

static const char KEY[] = "dGhlIHNhbXBsZSBub25jZQ==";
static const char ACCEPT[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

struct conn {
    int fd;
    int open;  /* handshake done */
    int alive; /* not failed */
    char in[4096];
    size_t in_len;
    unsigned long long counter;
    uint8_t expect[128];
    uint64_t sent_ns;
};

static struct conn conns[MAXC];
static unsigned long long good, bad;
static unsigned long long hist[HIST_MAX + 1];
static size_t size = 32;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void fail(struct conn *c)
{
    if (c->alive) {
        bad++;
        c->alive = 0;
        close(c->fd);
    }
}

static void send_all(struct conn *c, const void *p, size_t n)
{
    const char *q = p;
    while (n) {
        ssize_t w = write(c->fd, q, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) { /* tiny frames on an idle socket: EAGAIN here means something is wrong */
            fail(c);
            return;
        }
        q += w;
        n -= (size_t)w;
    }
}

static void send_msg(struct conn *c, unsigned idx)
{
    uint8_t f[2 + 4 + 128];
    uint8_t mask[4] = {(uint8_t)(idx * 7 + 1), (uint8_t)c->counter, 0x5a, 0xa5};
    int n = snprintf((char *)c->expect, sizeof(c->expect), "c%u-m%llu-", idx, c->counter++);
    for (size_t i = (size_t)n; i < size; i++)
        c->expect[i] = (uint8_t)('a' + (i + c->counter) % 26);
    f[0] = 0x81;
    f[1] = (uint8_t)(0x80 | size);
    memcpy(f + 2, mask, 4);
    for (size_t i = 0; i < size; i++)
        f[6 + i] = c->expect[i] ^ mask[i & 3];
    c->sent_ns = now_ns();
    send_all(c, f, 6 + size);
}

static void on_readable(struct conn *c, unsigned idx, int counting)
{
    for (;;) {
        ssize_t r = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            break;
        if (r <= 0) {
            fail(c);
            return;
        }
        c->in_len += (size_t)r;
        if (c->in_len == sizeof(c->in))
            break;
    }
    if (!c->open) {
        char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (!end)
            return;
        size_t hl = (size_t)(end - c->in) + 4;
        if (c->in_len < 12 || memcmp(c->in, "HTTP/1.1 101", 12) != 0 ||
            !memmem(c->in, hl, ACCEPT, sizeof(ACCEPT) - 1)) {
            fail(c);
            return;
        }
        memmove(c->in, c->in + hl, c->in_len - hl);
        c->in_len -= hl;
        c->open = 1;
        send_msg(c, idx);
        return;
    }
    while (c->in_len >= 2 + size) {
        if ((uint8_t)c->in[0] != 0x81 || (uint8_t)c->in[1] != size ||
            memcmp(c->in + 2, c->expect, size) != 0) {
            fail(c);
            return;
        }
        uint64_t us = (now_ns() - c->sent_ns) / 1000;
        if (counting) {
            good++;
            hist[us > HIST_MAX ? HIST_MAX : us]++;
        }
        memmove(c->in, c->in + 2 + size, c->in_len - 2 - size);
        c->in_len -= 2 + size;
        send_msg(c, idx);
    }
}

static unsigned long long pct(double q)
{
    unsigned long long total = 0, acc = 0;
    for (size_t i = 0; i <= HIST_MAX; i++)
        total += hist[i];
    unsigned long long want = (unsigned long long)(q * (double)total);
    for (size_t i = 0; i <= HIST_MAX; i++) {
        acc += hist[i];
        if (acc > want)
            return i;
    }
    return HIST_MAX;
}

int main(int argc, char **argv)
{
    int port = 0, nconn = 50;
    double duration = 5;
    static const struct option opts[] = {{"port", required_argument, 0, 'p'},
                                         {"connections", required_argument, 0, 'c'},
                                         {"duration", required_argument, 0, 'd'},
                                         {"size", required_argument, 0, 's'},
                                         {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'p')
            port = atoi(optarg);
        else if (o == 'c')
            nconn = atoi(optarg);
        else if (o == 'd')
            duration = strtod(optarg, NULL);
        else if (o == 's')
            size = (size_t)atoi(optarg);
        else
            return 2;
    }
    if (port <= 0 || nconn <= 0 || nconn > MAXC || size < 24 || size > 125 || duration <= 0) {
        fprintf(stderr, "usage: ws_load --port PORT [--connections N] [--duration S] [--size "
                        "24..125]\n");
        return 2;
    }
    int ep = epoll_create1(0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    for (int i = 0; i < nconn; i++) {
        struct conn *c = &conns[i];
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            perror("ws_load: connect");
            return 1;
        }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->alive = 1;
        char req[256];
        int n = snprintf(req, sizeof(req),
                         "GET /bench HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                         "Sec-WebSocket-Key: %s\r\n\r\n",
                         port, KEY);
        send_all(c, req, (size_t)n);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    }
    /* Non-blocking only after the handshake request is out. */
    for (int i = 0; i < nconn; i++)
        fcntl(conns[i].fd, F_SETFL, fcntl(conns[i].fd, F_GETFL) | O_NONBLOCK);
    uint64_t t0 = now_ns(), start = 0, end = 0;
    uint64_t warm = t0 + 200000000ull; /* 0.2 s of warm-up is not counted */
    int counting = 0;
    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        if (!counting && t >= warm) {
            counting = 1;
            start = t;
        }
        if (counting && t >= start + (uint64_t)(duration * 1e9)) {
            end = t;
            break;
        }
        int n = epoll_wait(ep, evs, 256, 10);
        for (int i = 0; i < n; i++) {
            unsigned idx = evs[i].data.u32;
            if (conns[idx].alive)
                on_readable(&conns[idx], idx, counting);
        }
    }
    int open = 0;
    for (int i = 0; i < nconn; i++) {
        if (conns[i].alive) {
            open += conns[i].open;
            close(conns[i].fd);
        }
    }
    printf("WSLOAD good=%llu bad=%llu dur_us=%llu p50_us=%llu p99_us=%llu conns=%d\n", good, bad,
           (unsigned long long)((end - start) / 1000), pct(0.5), pct(0.99), open);
    return 0;
}
