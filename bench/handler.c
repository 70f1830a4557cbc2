/* handler: fast server-mode ZHTTP handler for benchmarks (zhttpd --zclient-stream / condure).
 *
 * Connects PULL to <base>-out and PUB to <base>-in (as Condure's basichandler does) and answers
 * every new request with 200 "hello world\n": the reply goes out on PUB as "<from> T{from, id,
 * seq:0, code, reason, headers, body}", with the request's `from` as the topic and its `id` echoed.
 * Packets with a `type` (keep-alive, cancel, ...) or a list `id` (multi-id) are ignored; they never
 * start a request.
 *
 * --base may be given up to 8 times: one handler connected to several instances (the scale-out
 * recipe, docs/scaling.md). A tcp://HOST:P base means P (-out), P+1 (-out-stream), P+2 (-in), as
 * zhttpd expands it. --router replies through a ROUTER (identity --id) connected to each
 * -out-stream instead of the PUB, as [from, "", T{...}] (router-resp).
 *
 * usage: handler --base SPEC-BASE [--base ...] [--id NAME] [--router] [--duration SECS]
 * Stops on SIGTERM/SIGINT or after --duration seconds (default 600) and prints "handler: answered=N
 * ignored=N bad=N" on stderr.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "tnet.h"

static volatile sig_atomic_t stop;

static void on_sig(int sig)
{
    (void)sig;
    stop = 1;
}

static const char BODY[] = "hello world\n";

int main(int argc, char **argv)
{
    const char *bases[8], *hid = NULL;
    int nbases = 0, router = 0;
    double duration = 600;
    static const struct option opts[] = {{"base", required_argument, 0, 'b'},
                                         {"id", required_argument, 0, 'i'},
                                         {"duration", required_argument, 0, 'd'},
                                         {"router", no_argument, 0, 'r'},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (nbases == 8 || strlen(optarg) > 900) {
                fprintf(stderr, "handler: at most 8 --base of at most 900 bytes\n");
                return 2;
            }
            bases[nbases++] = optarg;
            break;
        case 'r':
            router = 1;
            break;
        case 'i':
            hid = optarg;
            break;
        case 'd':
            duration = strtod(optarg, NULL);
            break;
        default:
            fprintf(stderr, "usage: handler --base SPEC-BASE [--base ...] [--id NAME] [--router] "
                            "[--duration SECS]\n");
            return 2;
        }
    }
    if (!nbases || duration <= 0) {
        fprintf(stderr, "usage: handler --base SPEC-BASE [--base ...] [--id NAME] [--router] "
                        "[--duration SECS]\n");
        return 2;
    }
    char idbuf[64];
    if (!hid) {
        snprintf(idbuf, sizeof(idbuf), "benchhandler.%ld", (long)getpid());
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
    void *in = zmq_socket(ctx, ZMQ_PULL);
    void *out = zmq_socket(ctx, router ? ZMQ_ROUTER : ZMQ_PUB);
    int linger = 0, hwm = 100000;
    zmq_setsockopt(in, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(out, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(in, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(out, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    if (router)
        zmq_setsockopt(out, ZMQ_ROUTING_ID, hid, strlen(hid));
    for (int b = 0; b < nbases; b++) {
        static const char *const suffix[3] = {"-out", "-out-stream", "-in"};
        for (int k = 0; k < 3; k++) {
            if (k == 1 && !router)
                continue;
            if (k == 2 && router)
                continue;
            char ep[1024];
            const char *colon = strrchr(bases[b], ':');
            if (strncmp(bases[b], "tcp://", 6) == 0 && colon)
                snprintf(ep, sizeof(ep), "%.*s:%ld", (int)(colon - bases[b]), bases[b],
                         strtol(colon + 1, NULL, 10) + k);
            else
                snprintf(ep, sizeof(ep), "%s%s", bases[b], suffix[k]);
            if (zmq_connect(k == 0 ? in : out, ep) < 0) {
                fprintf(stderr, "handler: connect %s: %s\n", ep, zmq_strerror(errno));
                return 2;
            }
        }
    }

    /* Constant part of the reply, after from/id. */
    char tail[256];
    struct tn_w tw = {tail, sizeof(tail), 0, 0};
    char hdr_inner[64], hdrs[96];
    struct tn_w h1 = {hdr_inner, sizeof(hdr_inner), 0, 0};
    tn_str(&h1, "Content-Type");
    tn_str(&h1, "text/plain");
    struct tn_w h2 = {hdrs, sizeof(hdrs), 0, 0};
    tn_item(&h2, hdr_inner, h1.len, ']');
    tn_str(&tw, "seq");
    tn_intv(&tw, 0);
    tn_str(&tw, "code");
    tn_intv(&tw, 200);
    tn_str(&tw, "reason");
    tn_str(&tw, "OK");
    tn_str(&tw, "headers");
    tn_item(&tw, hdrs, h2.len, ']');
    tn_str(&tw, "body");
    tn_item(&tw, BODY, sizeof(BODY) - 1, ',');

    unsigned long long answered = 0, ignored = 0, bad = 0;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    while (!stop) {
        if (zmq_msg_recv(&msg, in, 0) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "handler: recv: %s\n", zmq_strerror(errno));
            break;
        }
        const char *p = zmq_msg_data(&msg);
        size_t n = zmq_msg_size(&msg);
        struct tn_val d, from, id, v;
        if (n < 2 || p[0] != 'T' || !tn_parse(p + 1, n - 1, &d) || d.type != '}' ||
            !tn_dict_get(&d, "from", &from) || from.type != ',' || !tn_dict_get(&d, "id", &id)) {
            bad++;
            continue;
        }
        if (id.type != ',' || tn_dict_get(&d, "type", &v)) {
            ignored++;
            continue;
        }
        char inner[1024], frame[1400];
        struct tn_w w = {inner, sizeof(inner), 0, 0};
        tn_str(&w, "from");
        tn_str(&w, hid);
        tn_str(&w, "id");
        tn_item(&w, id.data, id.len, ',');
        tn_raw(&w, tail, tw.len);
        struct tn_w f = {frame, sizeof(frame), 0, 0};
        if (!router) {
            tn_raw(&f, from.data, from.len);
            tn_raw(&f, " ", 1);
        }
        tn_raw(&f, "T", 1);
        tn_item(&f, inner, w.len, '}');
        if (w.err || f.err) {
            bad++;
            continue;
        }
        if (router && (zmq_send(out, from.data, from.len, ZMQ_SNDMORE) < 0 ||
                       zmq_send(out, "", 0, ZMQ_SNDMORE) < 0)) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "handler: send: %s\n", zmq_strerror(errno));
            break;
        }
        if (zmq_send(out, frame, f.len, 0) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "handler: send: %s\n", zmq_strerror(errno));
            break;
        }
        answered++;
    }
    fprintf(stderr, "handler: answered=%llu ignored=%llu bad=%llu\n", answered, ignored, bad);
    zmq_msg_close(&msg);
    zmq_close(in);
    zmq_close(out);
    zmq_ctx_term(ctx);
    return 0;
}
