/* ws_handler: WebSocket echo handler for benchmarks (zhttpd --zclient-stream / condure).
 *
 * PULL <base>-out (new sessions), ROUTER <base>-out-stream with identity --id (the server's later
 * packets), PUB <base>-in (our replies, topic = the server's `from`). A ws:// request is accepted
 * with a 101 granting 65536 credits; each data packet is echoed with its content-type and `more`,
 * the echo carrying `credits` = the bytes received (so the server may send as much again). The
 * server's credits are tracked: an echo that would exceed them is counted as bad and dropped. A
 * close is answered with a close; cancel ends the session. One thread, no allocation per packet.
 *
 * usage: ws_handler --base SPEC-BASE [--id NAME] [--duration SECS]
 * Prints "ws_handler: sessions=N echoed=N bad=N" on stderr at exit (SIGTERM/SIGINT/--duration). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "tnet.h"

static volatile sig_atomic_t stop;

static void on_sig(int sig)
{
    (void)sig;
    stop = 1;
}

#define NSESS 8192 /* open addressing; more live sessions than this are refused */
#define IDMAX 64

struct sess {
    int used;
    char id[IDMAX];
    size_t id_len;
    char to[IDMAX];
    size_t to_len;
    long long seq;
    long long credits;
};

static struct sess table[NSESS];
static unsigned long long n_sessions, n_echoed, n_bad;

static unsigned hash(const char *p, size_t n)
{
    unsigned h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static struct sess *find(const char *id, size_t n, int create)
{
    if (n == 0 || n >= IDMAX)
        return NULL;
    unsigned h = hash(id, n);
    for (unsigned i = 0; i < NSESS; i++) {
        struct sess *s = &table[(h + i) % NSESS];
        if (!s->used) {
            if (!create)
                return NULL;
            memset(s, 0, sizeof(*s));
            s->used = 1;
            memcpy(s->id, id, n);
            s->id_len = n;
            return s;
        }
        if (s->used == 1 && s->id_len == n && memcmp(s->id, id, n) == 0)
            return s;
    }
    return NULL;
}

/* Deleting from open addressing: mark as a tombstone (2), reusable only by a rebuild; the table is
 * large enough for a benchmark's connection count times its rounds. */
static void drop(struct sess *s)
{
    s->used = 2;
}

static const char *hid;
static void *pub;

static void send_pkt(struct sess *s, struct tn_w *fields)
{
    char dict[2048], frame[2200];
    struct tn_w d = {dict, sizeof(dict), 0, 0};
    tn_str(&d, "from");
    tn_str(&d, hid);
    tn_str(&d, "id");
    tn_item(&d, s->id, s->id_len, ',');
    tn_str(&d, "seq");
    tn_intv(&d, s->seq++);
    tn_raw(&d, fields->buf, fields->len);
    struct tn_w f = {frame, sizeof(frame), 0, 0};
    tn_raw(&f, s->to, s->to_len);
    tn_raw(&f, " T", 2);
    tn_item(&f, dict, d.len, '}');
    if (d.err || f.err || fields->err) {
        n_bad++;
        return;
    }
    zmq_send(pub, frame, f.len, 0);
}

static void on_first(struct tn_val *d)
{
    struct tn_val from, id, uri, cr;
    if (!tn_dict_get(d, "from", &from) || !tn_dict_get(d, "id", &id) || id.type != ',' ||
        !tn_dict_get(d, "uri", &uri) || from.len >= IDMAX) {
        n_bad++;
        return;
    }
    struct sess *s = find(id.data, id.len, 1);
    if (!s) {
        n_bad++;
        return;
    }
    memcpy(s->to, from.data, from.len);
    s->to_len = from.len;
    s->seq = 0;
    s->credits = tn_dict_get(d, "credits", &cr) ? tn_int(&cr) : 0;
    n_sessions++;
    char buf[256];
    struct tn_w w = {buf, sizeof(buf), 0, 0};
    tn_str(&w, "code");
    tn_intv(&w, 101);
    tn_str(&w, "reason");
    tn_str(&w, "Switching Protocols");
    tn_str(&w, "headers");
    tn_item(&w, "", 0, ']');
    tn_str(&w, "credits");
    tn_intv(&w, 65536);
    send_pkt(s, &w);
}

static void on_stream(struct tn_val *d)
{
    struct tn_val id, type, body, ct, more, cr, code;
    if (!tn_dict_get(d, "id", &id) || id.type != ',')
        return; /* multi-id keep-alives */
    struct sess *s = find(id.data, id.len, 0);
    if (!s)
        return;
    if (tn_dict_get(d, "credits", &cr))
        s->credits += tn_int(&cr);
    if (tn_dict_get(d, "type", &type)) {
        if (type.len == 5 && memcmp(type.data, "close", 5) == 0) {
            char buf[64];
            struct tn_w w = {buf, sizeof(buf), 0, 0};
            tn_str(&w, "type");
            tn_str(&w, "close");
            if (tn_dict_get(d, "code", &code)) {
                tn_str(&w, "code");
                tn_intv(&w, tn_int(&code));
            }
            send_pkt(s, &w);
            drop(s);
        } else if ((type.len == 6 && memcmp(type.data, "cancel", 6) == 0) ||
                   (type.len == 5 && memcmp(type.data, "error", 5) == 0)) {
            drop(s);
        }
        return;
    }
    if (!tn_dict_get(d, "body", &body))
        body.len = 0, body.data = "";
    if ((long long)body.len > s->credits) {
        n_bad++; /* the server's credits would be exceeded */
        return;
    }
    s->credits -= (long long)body.len;
    char buf[1800];
    struct tn_w w = {buf, sizeof(buf), 0, 0};
    if (tn_dict_get(d, "content-type", &ct)) {
        tn_str(&w, "content-type");
        tn_item(&w, ct.data, ct.len, ',');
    }
    tn_str(&w, "body");
    tn_item(&w, body.data, body.len, ',');
    if (tn_dict_get(d, "more", &more) && more.type == '!' && more.len == 4) {
        tn_str(&w, "more");
        tn_item(&w, "true", 4, '!');
    }
    if (body.len) {
        tn_str(&w, "credits");
        tn_intv(&w, (long long)body.len);
    }
    send_pkt(s, &w);
    n_echoed++;
}

int main(int argc, char **argv)
{
    const char *base = NULL;
    double duration = 600;
    static const struct option opts[] = {{"base", required_argument, 0, 'b'},
                                         {"id", required_argument, 0, 'i'},
                                         {"duration", required_argument, 0, 'd'},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'b')
            base = optarg;
        else if (c == 'i')
            hid = optarg;
        else if (c == 'd')
            duration = strtod(optarg, NULL);
        else
            return 2;
    }
    if (!base || strlen(base) > 900 || duration <= 0) {
        fprintf(stderr, "usage: ws_handler --base SPEC-BASE [--id NAME] [--duration SECS]\n");
        return 2;
    }
    char idbuf[64];
    if (!hid) {
        snprintf(idbuf, sizeof(idbuf), "wshandler.%ld", (long)getpid());
        hid = idbuf;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sig;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    alarm((unsigned)(duration + 0.999));
    void *ctx = zmq_ctx_new();
    void *pull = zmq_socket(ctx, ZMQ_PULL);
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    pub = zmq_socket(ctx, ZMQ_PUB);
    int linger = 0, hwm = 100000;
    void *socks[3] = {pull, router, pub};
    for (int i = 0; i < 3; i++) {
        zmq_setsockopt(socks[i], ZMQ_LINGER, &linger, sizeof(linger));
        zmq_setsockopt(socks[i], ZMQ_RCVHWM, &hwm, sizeof(hwm));
        zmq_setsockopt(socks[i], ZMQ_SNDHWM, &hwm, sizeof(hwm));
    }
    zmq_setsockopt(router, ZMQ_ROUTING_ID, hid, strlen(hid));
    char ep[1024];
    snprintf(ep, sizeof(ep), "%s-out", base);
    zmq_connect(pull, ep);
    snprintf(ep, sizeof(ep), "%s-out-stream", base);
    zmq_connect(router, ep);
    snprintf(ep, sizeof(ep), "%s-in", base);
    zmq_connect(pub, ep);

    zmq_pollitem_t items[2] = {{pull, 0, ZMQ_POLLIN, 0}, {router, 0, ZMQ_POLLIN, 0}};
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    while (!stop) {
        if (zmq_poll(items, 2, 200) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int k = 0; k < 2; k++) {
            if (!(items[k].revents & ZMQ_POLLIN))
                continue;
            for (int batch = 0; batch < 256; batch++) {
                int more = 0;
                size_t ml = sizeof(more);
                /* The ROUTER gives [peer, "", T...]: take the last frame. */
                for (;;) {
                    if (zmq_msg_recv(&msg, items[k].socket, ZMQ_DONTWAIT) < 0)
                        goto next_socket;
                    zmq_getsockopt(items[k].socket, ZMQ_RCVMORE, &more, &ml);
                    if (!more)
                        break;
                }
                const char *p = zmq_msg_data(&msg);
                size_t n = zmq_msg_size(&msg);
                struct tn_val d;
                if (n < 2 || p[0] != 'T' || !tn_parse(p + 1, n - 1, &d) || d.type != '}') {
                    n_bad++;
                    continue;
                }
                if (k == 0)
                    on_first(&d);
                else
                    on_stream(&d);
            }
        next_socket:;
        }
    }
    zmq_msg_close(&msg);
    fprintf(stderr, "ws_handler: sessions=%llu echoed=%llu bad=%llu\n", n_sessions, n_echoed,
            n_bad);
    for (int i = 0; i < 3; i++)
        zmq_close(socks[i]);
    zmq_ctx_term(ctx);
    return 0;
}
