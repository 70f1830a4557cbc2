/* ws_client_load: outbound WebSocket load through a client-role daemon (zhttpd or Zurl), as a
 * handler (Pushpin) drives it. N sessions: each first packet {from, id, seq 0, uri ws://…,
 * credits} goes on the PUSH socket (in_spec); replies come on the SUB socket (out_spec, subscribed
 * to "<from> "); later packets go on the ROUTER (in_stream_spec) to the daemon's instance id.
 * After the 101 (its credits counted) each session ping-pongs one text message of --size bytes
 * that differs per message; every echo must come back byte for byte (else bad). Credits: what the
 * daemon grants (101, credit packets) bounds what we send; we grant 1 MB and top it up.
 *
 * Output (stdout, one line):
 *   WSCLOAD conns=N good=.. bad=.. dur_us=.. p50_us=.. p99_us=..
 * conns = sessions that got their 101; good = correct echoes in the measured window. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "tnet.h"

#define GRANT 1000000

struct sess {
    int open, dead;
    long long seq;      /* our next seq */
    long long credits;  /* what the daemon lets us send */
    long long consumed; /* echo bytes received since our last grant */
    uint64_t sent_ns, n;
    char msg[256];
};

static const char *from_id = "wsc-load";
static const char *zid;
static void *push, *router, *sub;
static size_t size = 32;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void send_pkt(void *sock, int routed, struct tn_w *inner)
{
    char outer[1024];
    struct tn_w o = {outer, sizeof(outer), 0, 0};
    tn_raw(&o, "T", 1);
    tn_item(&o, inner->buf, inner->len, '}');
    if (o.err || inner->err) {
        fprintf(stderr, "packet too large\n");
        exit(2);
    }
    for (int tries = 0;; tries++) {
        int rc = 0;
        if (routed)
            rc = (zmq_send(sock, zid, strlen(zid), ZMQ_SNDMORE) < 0 ||
                  zmq_send(sock, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(sock, outer, o.len, 0) < 0)
                     ? -1
                     : 0;
        else
            rc = zmq_send(sock, outer, o.len, 0) < 0 ? -1 : 0;
        if (rc == 0)
            return;
        if (errno == EHOSTUNREACH && tries < 500) {
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
            continue;
        }
        fprintf(stderr, "zmq_send: %s\n", zmq_strerror(errno));
        exit(2);
    }
}

static void head(struct tn_w *w, size_t i, struct sess *s)
{
    char id[32];
    snprintf(id, sizeof(id), "c%zu", i);
    tn_str(w, "from");
    tn_str(w, from_id);
    tn_str(w, "id");
    tn_str(w, id);
    tn_str(w, "seq");
    tn_intv(w, s->seq++);
}

static void send_msg(size_t i, struct sess *s)
{
    char buf[512];
    struct tn_w w = {buf, sizeof(buf), 0, 0};
    s->n++;
    int k = snprintf(s->msg, sizeof(s->msg), "%zu:%llu:", i, (unsigned long long)s->n);
    for (size_t j = (size_t)k; j < size; j++)
        s->msg[j] = (char)('a' + (j + s->n) % 26);
    head(&w, i, s);
    tn_str(&w, "body");
    tn_item(&w, s->msg, size, ',');
    s->credits -= (long long)size;
    s->sent_ns = now_ns();
    send_pkt(router, 1, &w);
}

int main(int argc, char **argv)
{
    const char *in = NULL, *ins = NULL, *out = NULL, *url = NULL;
    size_t conns = 50;
    double duration = 5, warmup = 1;
    static const struct option opts[] = {{"in", 1, 0, 'i'},
                                         {"in-stream", 1, 0, 's'},
                                         {"out", 1, 0, 'o'},
                                         {"zid", 1, 0, 'z'},
                                         {"url", 1, 0, 'u'},
                                         {"connections", 1, 0, 'c'},
                                         {"duration", 1, 0, 'd'},
                                         {"warmup", 1, 0, 'w'},
                                         {"size", 1, 0, 'n'},
                                         {"from", 1, 0, 'f'},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            in = optarg;
            break;
        case 's':
            ins = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'z':
            zid = optarg;
            break;
        case 'u':
            url = optarg;
            break;
        case 'c':
            conns = strtoul(optarg, NULL, 10);
            break;
        case 'd':
            duration = atof(optarg);
            break;
        case 'w':
            warmup = atof(optarg);
            break;
        case 'n':
            size = strtoul(optarg, NULL, 10);
            break;
        case 'f':
            from_id = optarg;
            break;
        default:
            fprintf(stderr, "usage: ws_client_load --in SPEC --in-stream SPEC --out SPEC --zid ID "
                            "--url ws://… [--connections N] [--duration S] [--warmup S] "
                            "[--size N]\n");
            return 2;
        }
    }
    if (!in || !ins || !out || !zid || !url || size < 24 || size > 200 || !conns) {
        fprintf(stderr, "missing or bad arguments (size 24..200)\n");
        return 2;
    }
    void *ctx = zmq_ctx_new();
    push = zmq_socket(ctx, ZMQ_PUSH);
    router = zmq_socket(ctx, ZMQ_ROUTER);
    sub = zmq_socket(ctx, ZMQ_SUB);
    int one = 1, zero = 0, hwm = 100000;
    zmq_setsockopt(router, ZMQ_ROUTING_ID, from_id, strlen(from_id));
    zmq_setsockopt(router, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
    char topic[128];
    snprintf(topic, sizeof(topic), "%s ", from_id);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, topic, strlen(topic));
    void *socks[3] = {push, router, sub};
    for (int k = 0; k < 3; k++) {
        zmq_setsockopt(socks[k], ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(socks[k], ZMQ_SNDHWM, &hwm, sizeof(hwm));
        zmq_setsockopt(socks[k], ZMQ_RCVHWM, &hwm, sizeof(hwm));
    }
    if (zmq_connect(push, in) || zmq_connect(router, ins) || zmq_connect(sub, out)) {
        fprintf(stderr, "connect: %s\n", zmq_strerror(errno));
        return 2;
    }
    struct timespec settle = {0, 300000000};
    nanosleep(&settle, NULL); /* SUB subscription and ROUTER connection up */

    struct sess *ss = calloc(conns, sizeof(*ss));
    for (size_t i = 0; i < conns; i++) {
        char buf[512];
        struct tn_w w = {buf, sizeof(buf), 0, 0};
        head(&w, i, &ss[i]);
        tn_str(&w, "uri");
        tn_str(&w, url);
        tn_str(&w, "credits");
        tn_intv(&w, GRANT);
        send_pkt(push, 0, &w);
    }
    size_t cap = 1 << 22, nlat = 0, nopen = 0;
    uint32_t *lat = malloc(cap * sizeof(*lat));
    uint64_t t0 = now_ns(), mstart = t0 + (uint64_t)(warmup * 1e9),
             mend = mstart + (uint64_t)(duration * 1e9);
    unsigned long long good = 0, bad = 0;
    char frame[65536];
    for (;;) {
        uint64_t now = now_ns();
        if (now >= mend)
            break;
        zmq_pollitem_t pi = {sub, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&pi, 1, 100) <= 0)
            continue;
        int n = zmq_recv(sub, frame, sizeof(frame), ZMQ_DONTWAIT);
        if (n < 0)
            continue;
        if ((size_t)n > sizeof(frame)) {
            bad++;
            continue;
        }
        char *sp = memchr(frame, ' ', (size_t)n);
        struct tn_val d, v;
        if (!sp || sp[1] != 'T' || !tn_parse(sp + 2, (size_t)(frame + n - sp - 2), &d) ||
            d.type != '}' || !tn_dict_get(&d, "id", &v) || v.len < 2 || v.data[0] != 'c') {
            bad++;
            continue;
        }
        size_t i = strtoul(v.data + 1, NULL, 10);
        if (i >= conns)
            continue;
        struct sess *s = &ss[i];
        if (s->dead)
            continue;
        struct tn_val t, cr, body, code;
        int has_type = tn_dict_get(&d, "type", &t);
        if (tn_dict_get(&d, "credits", &cr))
            s->credits += tn_int(&cr);
        if (has_type && t.len == 10 && memcmp(t.data, "keep-alive", 10) == 0)
            continue;
        if (has_type && t.len == 6 && memcmp(t.data, "credit", 6) == 0) {
            if (s->open && !s->sent_ns && s->credits >= (long long)size)
                send_msg(i, s);
            continue;
        }
        if (has_type) {
            fprintf(stderr, "c%zu: %.*s\n", i, (int)t.len, t.data);
            s->dead = 1;
            bad++;
            continue;
        }
        if (!s->open) {
            if (!tn_dict_get(&d, "code", &code) || tn_int(&code) != 101) {
                fprintf(stderr, "c%zu: no 101\n", i);
                s->dead = 1;
                bad++;
                continue;
            }
            s->open = 1;
            nopen++;
            if (s->credits >= (long long)size)
                send_msg(i, s);
            continue;
        }
        if (!tn_dict_get(&d, "body", &body) || body.len != size ||
            memcmp(body.data, s->msg, size) != 0) {
            bad++;
            s->dead = 1;
            fprintf(stderr, "c%zu: wrong echo\n", i);
            continue;
        }
        now = now_ns();
        if (now >= mstart) {
            good++;
            if (nlat < cap)
                lat[nlat++] = (uint32_t)((now - s->sent_ns) / 1000);
        }
        s->sent_ns = 0;
        s->consumed += (long long)size;
        if (s->consumed >= GRANT / 2) {
            char buf[256];
            struct tn_w w = {buf, sizeof(buf), 0, 0};
            head(&w, i, s);
            tn_str(&w, "type");
            tn_str(&w, "credit");
            tn_str(&w, "credits");
            tn_intv(&w, s->consumed);
            send_pkt(router, 1, &w);
            s->consumed = 0;
        }
        if (s->credits >= (long long)size)
            send_msg(i, s);
    }
    for (size_t i = 0; i < conns; i++) {
        if (!ss[i].open || ss[i].dead)
            continue;
        char buf[256];
        struct tn_w w = {buf, sizeof(buf), 0, 0};
        head(&w, i, &ss[i]);
        tn_str(&w, "type");
        tn_str(&w, "cancel");
        send_pkt(router, 1, &w);
    }
    qsort(lat, nlat, sizeof(*lat), cmp_u32);
    printf("WSCLOAD conns=%zu good=%llu bad=%llu dur_us=%.0f p50_us=%u p99_us=%u\n", nopen, good,
           bad, duration * 1e6, nlat ? lat[nlat / 2] : 0, nlat ? lat[nlat * 99 / 100] : 0);
    struct timespec fl = {0, 200000000};
    nanosleep(&fl, NULL);
    zmq_close(push);
    zmq_close(router);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    free(ss);
    free(lat);
    return good ? 0 : 1;
}
