/* zhttp_load: closed-loop ZHTTP load driver (client mode of zhttpd / Zurl), req or stream mode.
 *
 * Req mode (--endpoint): keeps N requests in flight over one DEALER socket connected to a req-mode
 * endpoint (Zurl's in_req_spec, zhttpd's --zserver-req). Each request is
 * ["", "T" + {id, method: GET, uri}]; replies are matched by id.
 * Stream mode (--stream-in PUSH spec, --stream-out SUB spec: Zurl's in_spec and out_spec): each
 * request is "T" + {from, id, seq: 0, method: GET, uri, stream: true, credits: 1000000} on the
 * PUSH socket, as Pushpin sends them; replies come on the SUB socket subscribed to "<from> ".
 * keep-alive and credit packets are skipped; the response may come in several packets (code on
 * the first, more: true until the last), the body is compared as it arrives.
 * --ignore-policies adds "ignore-policies": true to every request (Pushpin sets it on every
 * request it proxies). After --warmup seconds it measures for --duration seconds: a reply counts as
 * ok only with code 200 and exactly the expected body; everything else is counted as bad (first few
 * printed to stderr). A request unanswered after --req-timeout seconds is counted as a timeout and
 * its slot re-issued with a new id.
 *
 * Output (stdout, one line):
 *   RESULT inflight=N secs=S ok=.. bad=.. timeouts=.. stray=.. rps=.. p50_us=.. p99_us=.. max_us=..
 * total_ok=.. rps counts only ok replies in the measured window; total_ok counts ok replies
 * including the warm-up (for CPU-per-request figures taken over the whole run). Exit status 0 if at
 * least one ok reply, 1 otherwise.
 */
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

struct slot {
    uint64_t gen;
    uint64_t sent_ns; /* 0 = not in flight */
    size_t got;       /* stream mode: body bytes received so far */
    int head, bad;    /* stream mode: head seen; something did not match */
};

static int stream_mode, ignore_policies;
static const char *from_id = "zhttp-load";

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

static void usage(void)
{
    fprintf(stderr, "usage: zhttp_load (--endpoint SPEC | --stream-in SPEC --stream-out SPEC)\n"
                    "                  --url URL (--body STR | --body-file FILE)\n"
                    "                  [--inflight N=10] [--duration SECS=5] [--warmup SECS=1]\n"
                    "                  [--req-timeout SECS=5] [--ignore-policies]\n");
    exit(2);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    size_t r;
    while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            b = realloc(b, cap);
        }
    }
    fclose(f);
    if (!b) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    *len = n;
    return b;
}

static int send_req(void *sock, struct slot *s, size_t idx, const char *url)
{
    char inner[4096], outer[4200], id[48];
    struct tn_w w = {inner, sizeof(inner), 0, 0};
    struct tn_w o = {outer, sizeof(outer), 0, 0};
    s->gen++;
    snprintf(id, sizeof(id), "%zu-%llu", idx, (unsigned long long)s->gen);
    if (stream_mode) {
        tn_str(&w, "from");
        tn_str(&w, from_id);
    }
    tn_str(&w, "id");
    tn_str(&w, id);
    tn_str(&w, "method");
    tn_str(&w, "GET");
    tn_str(&w, "uri");
    tn_str(&w, url);
    if (stream_mode) {
        tn_str(&w, "seq");
        tn_intv(&w, 0);
        tn_str(&w, "stream");
        tn_item(&w, "true", 4, '!');
        tn_str(&w, "credits");
        tn_intv(&w, 1000000);
    }
    if (ignore_policies) {
        tn_str(&w, "ignore-policies");
        tn_item(&w, "true", 4, '!');
    }
    tn_raw(&o, "T", 1);
    tn_item(&o, inner, w.len, '}');
    if (w.err || o.err) {
        fprintf(stderr, "request too large\n");
        exit(2);
    }
    s->sent_ns = now_ns();
    s->got = 0;
    s->head = s->bad = 0;
    if (stream_mode) {
        if (zmq_send(sock, outer, o.len, 0) < 0) {
            fprintf(stderr, "zmq_send: %s\n", zmq_strerror(errno));
            return -1;
        }
        return 0;
    }
    if (zmq_send(sock, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(sock, outer, o.len, 0) < 0) {
        fprintf(stderr, "zmq_send: %s\n", zmq_strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *endpoint = NULL, *url = NULL, *stream_in = NULL, *stream_out = NULL;
    char *body = NULL;
    size_t body_len = 0;
    long inflight = 10;
    double duration = 5, warmup = 1, req_timeout = 5;
    static const struct option opts[] = {
        {"endpoint", required_argument, 0, 'e'},  {"url", required_argument, 0, 'u'},
        {"body", required_argument, 0, 'b'},      {"body-file", required_argument, 0, 'f'},
        {"inflight", required_argument, 0, 'n'},  {"duration", required_argument, 0, 'd'},
        {"warmup", required_argument, 0, 'w'},    {"req-timeout", required_argument, 0, 't'},
        {"stream-in", required_argument, 0, 'i'}, {"stream-out", required_argument, 0, 'o'},
        {"ignore-policies", no_argument, 0, 'p'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'e':
            endpoint = optarg;
            break;
        case 'u':
            url = optarg;
            break;
        case 'b':
            body = strdup(optarg);
            body_len = strlen(optarg);
            break;
        case 'f':
            body = read_file(optarg, &body_len);
            break;
        case 'n':
            inflight = strtol(optarg, NULL, 10);
            break;
        case 'd':
            duration = strtod(optarg, NULL);
            break;
        case 'w':
            warmup = strtod(optarg, NULL);
            break;
        case 't':
            req_timeout = strtod(optarg, NULL);
            break;
        case 'i':
            stream_in = optarg;
            break;
        case 'o':
            stream_out = optarg;
            break;
        case 'p':
            ignore_policies = 1;
            break;
        default:
            usage();
        }
    }
    stream_mode = stream_in || stream_out;
    if ((stream_mode ? (!stream_in || !stream_out || endpoint) : !endpoint) || !url || !body ||
        inflight < 1 || inflight > 100000 || duration <= 0 || warmup < 0 || req_timeout <= 0)
        usage();

    void *ctx = zmq_ctx_new();
    int linger = 0, hwm = 100000;
    void *sock, *rsock; /* where requests go, where replies come from */
    if (stream_mode) {
        sock = zmq_socket(ctx, ZMQ_PUSH);
        rsock = zmq_socket(ctx, ZMQ_SUB);
    } else {
        sock = rsock = zmq_socket(ctx, ZMQ_DEALER);
    }
    void *socks[2] = {sock, rsock};
    for (int i = 0; i < 2; i++) {
        zmq_setsockopt(socks[i], ZMQ_LINGER, &linger, sizeof(linger));
        zmq_setsockopt(socks[i], ZMQ_SNDHWM, &hwm, sizeof(hwm));
        zmq_setsockopt(socks[i], ZMQ_RCVHWM, &hwm, sizeof(hwm));
    }
    char topic[64];
    if (stream_mode) {
        snprintf(topic, sizeof(topic), "%s ", from_id);
        zmq_setsockopt(rsock, ZMQ_SUBSCRIBE, topic, strlen(topic));
        if (zmq_connect(rsock, stream_out) < 0 || zmq_connect(sock, stream_in) < 0) {
            fprintf(stderr, "zmq_connect %s / %s: %s\n", stream_out, stream_in,
                    zmq_strerror(errno));
            return 2;
        }
        /* Let the subscription reach the publisher before the first request (a reply published
         * before it would be dropped and counted as a timeout). */
        struct timespec ts = {0, 300000000};
        nanosleep(&ts, NULL);
    } else if (zmq_connect(sock, endpoint) < 0) {
        fprintf(stderr, "zmq_connect %s: %s\n", endpoint, zmq_strerror(errno));
        return 2;
    }

    struct slot *slots = calloc((size_t)inflight, sizeof(*slots));
    size_t lat_cap = 1 << 16, lat_n = 0;
    uint32_t *lat = malloc(lat_cap * sizeof(*lat));
    if (!slots || !lat)
        return 2;
    uint64_t ok = 0, bad = 0, timeouts = 0, stray = 0, total = 0;
    int bad_printed = 0;

    uint64_t t0 = now_ns();
    uint64_t t_meas = t0 + (uint64_t)(warmup * 1e9);
    uint64_t t_end = t_meas + (uint64_t)(duration * 1e9);
    uint64_t tmo_ns = (uint64_t)(req_timeout * 1e9);
    uint64_t next_sweep = t0 + 100000000u;

    for (long i = 0; i < inflight; i++)
        if (send_req(sock, &slots[i], (size_t)i, url) < 0)
            return 2;

    zmq_msg_t msg;
    zmq_msg_init(&msg);
    for (;;) {
        uint64_t now = now_ns();
        if (now >= t_end)
            break;
        zmq_pollitem_t pi = {rsock, 0, ZMQ_POLLIN, 0};
        long wait_ms = (long)((t_end - now) / 1000000u) + 1;
        if (wait_ms > 100)
            wait_ms = 100;
        int pr = zmq_poll(&pi, 1, wait_ms);
        if (pr < 0 && errno != EINTR) {
            fprintf(stderr, "zmq_poll: %s\n", zmq_strerror(errno));
            return 2;
        }
        for (;;) {
            /* Read one multipart message; the payload is its last frame. */
            int got = 0, more = 1;
            while (more) {
                if (zmq_msg_recv(&msg, rsock, ZMQ_DONTWAIT) < 0)
                    break;
                got = 1;
                more = zmq_msg_more(&msg);
            }
            if (!got)
                break;
            now = now_ns();
            const char *p = zmq_msg_data(&msg);
            size_t n = zmq_msg_size(&msg);
            if (stream_mode) {
                /* "<from> T..." */
                size_t tl = strlen(topic);
                if (n < tl || memcmp(p, topic, tl) != 0) {
                    stray++;
                    continue;
                }
                p += tl;
                n -= tl;
            }
            struct tn_val d, v;
            long long idx = -1;
            unsigned long long gen = 0;
            if (n > 1 && p[0] == 'T' && tn_parse(p + 1, n - 1, &d) && d.type == '}' &&
                tn_dict_get(&d, "id", &v) && v.type == ',' && v.len < 40) {
                char idb[48];
                memcpy(idb, v.data, v.len);
                idb[v.len] = 0;
                if (sscanf(idb, "%lld-%llu", &idx, &gen) != 2)
                    idx = -1;
            }
            if (idx < 0 || idx >= inflight || slots[idx].gen != gen || !slots[idx].sent_ns) {
                stray++;
                continue;
            }
            struct slot *s = &slots[idx];
            int good = 0;
            struct tn_val code, b;
            if (stream_mode) {
                struct tn_val t, m;
                if (tn_dict_get(&d, "type", &t) && t.type == ',' &&
                    ((t.len == 10 && memcmp(t.data, "keep-alive", 10) == 0) ||
                     (t.len == 6 && memcmp(t.data, "credit", 6) == 0)))
                    continue; /* not the response */
                if (tn_dict_get(&d, "type", &t)) {
                    s->bad = 1; /* an error or a cancel ends the request */
                } else {
                    if (!s->head) {
                        s->head = 1;
                        if (!tn_dict_get(&d, "code", &code) || tn_int(&code) != 200)
                            s->bad = 1;
                    }
                    if (tn_dict_get(&d, "body", &b) && b.type == ',') {
                        if (s->got + b.len > body_len || memcmp(b.data, body + s->got, b.len) != 0)
                            s->bad = 1;
                        else
                            s->got += b.len;
                    }
                    if (tn_dict_get(&d, "more", &m) && m.type == '!' && m.len == 4 &&
                        memcmp(m.data, "true", 4) == 0)
                        continue; /* more to come */
                }
                good = !s->bad && s->head && s->got == body_len;
            } else if (tn_dict_get(&d, "code", &code) && tn_int(&code) == 200 &&
                       !tn_dict_get(&d, "type", &v) && tn_dict_get(&d, "body", &b) &&
                       b.type == ',' && b.len == body_len && memcmp(b.data, body, body_len) == 0) {
                good = 1;
            }
            total += (uint64_t)good;
            if (now >= t_meas) {
                if (good) {
                    ok++;
                    if (lat_n == lat_cap) {
                        lat_cap *= 2;
                        lat = realloc(lat, lat_cap * sizeof(*lat));
                        if (!lat)
                            return 2;
                    }
                    uint64_t us = (now - s->sent_ns) / 1000u;
                    lat[lat_n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
                } else {
                    bad++;
                    if (bad_printed < 3) {
                        bad_printed++;
                        fprintf(stderr, "bad reply: %.*s\n", (int)(n > 300 ? 300 : n), p);
                    }
                }
            }
            s->sent_ns = 0;
            if (now < t_end && send_req(sock, s, (size_t)idx, url) < 0)
                return 2;
        }
        now = now_ns();
        if (now >= next_sweep) {
            next_sweep = now + 100000000u;
            for (long i = 0; i < inflight; i++) {
                if (slots[i].sent_ns && now - slots[i].sent_ns > tmo_ns) {
                    if (now >= t_meas)
                        timeouts++;
                    slots[i].sent_ns = 0;
                    if (send_req(sock, &slots[i], (size_t)i, url) < 0)
                        return 2;
                }
            }
        }
    }
    zmq_msg_close(&msg);
    uint64_t t_stop = now_ns();
    double secs = (double)(t_stop - t_meas) / 1e9;

    qsort(lat, lat_n, sizeof(*lat), cmp_u32);
    uint32_t p50 = lat_n ? lat[(lat_n - 1) * 50 / 100] : 0;
    uint32_t p99 = lat_n ? lat[(lat_n - 1) * 99 / 100] : 0;
    uint32_t mx = lat_n ? lat[lat_n - 1] : 0;
    printf("RESULT inflight=%ld secs=%.2f ok=%llu bad=%llu timeouts=%llu stray=%llu rps=%.1f "
           "p50_us=%u "
           "p99_us=%u max_us=%u total_ok=%llu\n",
           inflight, secs, (unsigned long long)ok, (unsigned long long)bad,
           (unsigned long long)timeouts, (unsigned long long)stray, (double)ok / secs, p50, p99, mx,
           (unsigned long long)total);
    fflush(stdout);
    zmq_close(sock);
    if (rsock != sock)
        zmq_close(rsock);
    zmq_ctx_term(ctx);
    free(slots);
    free(lat);
    free(body);
    return ok > 0 ? 0 : 1;
}
