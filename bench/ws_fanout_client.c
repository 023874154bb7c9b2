/* For bench/events-fanout.sh: many subscribers of /api/v1/events in one process, on one
 * libwebsockets client context, so that the benchmark's client costs little CPU beside the server
 * it measures (200 Python subscribers took 1.6 of the machine's 2 vCPUs).
 *
 *   ws-fanout-client URL --token T --clients N [--stalled M] [--until-state ST | --events K]
 *                    [--timeout S]
 *
 * URL is ws://HOST:PORT/api/v1/events?session=ID&after=SEQ.  Each of the N subscribers reads until
 * it has a status event whose "to" is ST (or K events), checking that the events' seqs follow one
 * another from after+1 with no gap and no duplicate; M more connect and never read.  Event
 * messages are recognised by a byte scan of their fixed prefix (supervisor/ws.c's WEV_FMT), not a
 * JSON parser: `{"id":N,"seq":N,...,"type":"command_output",...,"text":"T <ns> <i>\n..."}` (the
 * lines of bench/emit.py --stamp).  Latency = the wall clock when the message was received minus
 * the ns stamp the agent printed, one sample per stamped line.  Prints one JSON line, the keys of
 * tests/helpers/ws_client.py's fanout mode (the script reads either), plus "gaps", "lagged"
 * (notices received), "closed_early" (subscribers the server closed before their end, the last
 * one's "close_code"), "latency_max_ms" and the first subscriber's "first_p50_ms"/"first_p99_ms".
 * Exit status 0 unless a connection failed. */
#include <errno.h>
#include <libwebsockets.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

struct sub {
        struct fanout *f;
        struct lws *wsi;
        bool stalled, reached, done, failed; /* reached: its end (--until-state / --events) */
        int64_t next_seq;     /* the seq expected next; 0 until the first event when after is unknown */
        size_t count, gaps;
        unsigned char *msg;   /* one message being reassembled from its fragments */
        size_t len, cap;
        int close_code;
};

struct fanout {
        struct lws_context *ctx;
        struct sub *subs;
        int n, stalled;
        const char *host, *path, *token, *until;
        char auth[512];
        int port;
        int64_t after; /* -1: not given in the URL */
        long want_events;
        double deadline;
        int failures;
        char first_error[256];
        double *lat;   /* ms, one per stamped line received */
        size_t n_lat, cap_lat;
        double *first; /* ms, per line index (the agent's <i>): the earliest any subscriber had it */
        size_t n_first;
        size_t busy_lines, busy_events, lagged;
        double busy_first, busy_last; /* wall clock, s */
        lws_sorted_usec_list_t check;
        bool stop;
};

static double wall_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int64_t wall_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The decimal number at *p (advanced past it); -1 when there is none. */
static int64_t scan_num(const unsigned char **p, const unsigned char *end) {
        const unsigned char *q = *p;
        int64_t v = 0;
        while (q < end && *q >= '0' && *q <= '9' && q - *p < 19)
                v = v * 10 + (*q++ - '0');
        if (q == *p)
                return -1;
        *p = q;
        return v;
}

static const unsigned char *find(const unsigned char *from, const unsigned char *end, const char *what) {
        size_t n = strlen(what);
        if (from >= end || (size_t) (end - from) < n)
                return NULL;
        return memmem(from, (size_t) (end - from), what, n);
}

/* The earliest latency of line i over the subscribers: the agent → first delivery part, apart
 * from the spread of one event over the subscribers. */
static void add_first(struct fanout *f, int64_t i, double ms) {
        if (i < 0 || i > 100000000)
                return;
        if ((size_t) i >= f->n_first) {
                size_t n = f->n_first ? f->n_first : 16384;
                while (n <= (size_t) i)
                        n *= 2;
                double *a = realloc(f->first, n * sizeof *a);
                if (!a)
                        return;
                for (size_t k = f->n_first; k < n; k++)
                        a[k] = -1;
                f->first = a;
                f->n_first = n;
        }
        if (f->first[i] < 0 || ms < f->first[i])
                f->first[i] = ms;
}

static void add_latency(struct fanout *f, double ms) {
        if (f->n_lat == f->cap_lat) {
                size_t cap = f->cap_lat ? 2 * f->cap_lat : 65536;
                double *n = realloc(f->lat, cap * sizeof *n);
                if (!n)
                        return;
                f->lat = n;
                f->cap_lat = cap;
        }
        f->lat[f->n_lat++] = ms;
}

/* A whole message of subscriber s, received at now_ns. */
static void take(struct sub *s, const unsigned char *m, size_t len, int64_t now_ns) {
        struct fanout *f = s->f;
        const unsigned char *end = m + len, *p = m;
        static const char control[] = "{\"control\":\"", id[] = "{\"id\":", seq[] = ",\"seq\":";
        if (len > sizeof control - 1 && !memcmp(m, control, sizeof control - 1)) {
                if (find(m, end, "\"lagged\""))
                        f->lagged++;
                return;
        }
        if (len < sizeof id - 1 || memcmp(p, id, sizeof id - 1))
                return;
        p += sizeof id - 1;
        if (scan_num(&p, end) < 0 || (size_t) (end - p) < sizeof seq - 1 || memcmp(p, seq, sizeof seq - 1))
                return;
        p += sizeof seq - 1;
        int64_t v = scan_num(&p, end);
        if (v < 0)
                return;
        if (s->next_seq && v != s->next_seq)
                s->gaps++;
        s->next_seq = v + 1;
        s->count++;
        const unsigned char *type = find(p, end, ",\"type\":\"");
        if (!type)
                return;
        type += 9;
        static const char out[] = "command_output\"", status[] = "status\"";
        if ((size_t) (end - type) > sizeof out - 1 && !memcmp(type, out, sizeof out - 1)) {
                /* "text":"T <ns> <i>\nT <ns> <i>\n...": a chunk may hold several lines. */
                const unsigned char *t = find(type, end, "\"text\":\"T ");
                if (!t)
                        return;
                size_t stamps = 0;
                for (t += 8; t && t < end; t = find(t, end, "\\nT ")) {
                        t += t[0] == 'T' ? 2 : 4;
                        const unsigned char *d = t;
                        int64_t ns = scan_num(&d, end);
                        if (d - t < 15)
                                continue;
                        double ms = (double) (now_ns - ns) / 1e6;
                        add_latency(f, ms);
                        if (d < end && *d == ' ') {
                                d++;
                                add_first(f, scan_num(&d, end), ms);
                        }
                        stamps++;
                }
                if (stamps) {
                        double now = (double) now_ns / 1e9;
                        f->busy_lines += stamps;
                        f->busy_events++;
                        if (!f->busy_first || now < f->busy_first)
                                f->busy_first = now;
                        if (now > f->busy_last)
                                f->busy_last = now;
                }
        } else if (f->until && (size_t) (end - type) > sizeof status - 1 && !memcmp(type, status, sizeof status - 1)) {
                char to[80];
                snprintf(to, sizeof to, "\"to\":\"%s\"", f->until);
                if (find(type, end, to))
                        s->reached = s->done = true;
        }
        if (f->want_events && (long) s->count >= f->want_events)
                s->reached = s->done = true;
}

static int on_rx(struct sub *s, struct lws *wsi, const void *in, size_t len) {
        int64_t now = wall_ns();
        bool whole = lws_is_first_fragment(wsi) && lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
        if (whole && !s->len) { /* the common case: no copy */
                take(s, in, len, now);
                return 0;
        }
        if (s->len + len > s->cap) {
                size_t cap = s->cap ? s->cap : 4096;
                while (cap < s->len + len)
                        cap *= 2;
                unsigned char *n = realloc(s->msg, cap);
                if (!n)
                        return -1;
                s->msg = n;
                s->cap = cap;
        }
        memcpy(s->msg + s->len, in, len);
        s->len += len;
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
                take(s, s->msg, s->len, now);
                s->len = 0;
        }
        return 0;
}

static void fail(struct sub *s, const char *why) {
        struct fanout *f = s->f;
        if (!s->failed && !f->failures++)
                snprintf(f->first_error, sizeof f->first_error, "client %d: %s", (int) (s - f->subs), why);
        s->failed = s->done = true;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
        struct sub *s = lws_get_opaque_user_data(wsi);
        (void) user;
        switch (reason) {
        case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
                unsigned char **p = in, *end = *p + len;
                if (s && s->f->token &&
                    lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, (unsigned char *) s->f->auth,
                                                 (int) strlen(s->f->auth), p, end))
                        return -1;
                return 0;
        }
        case LWS_CALLBACK_CLIENT_ESTABLISHED:
                if (s && s->stalled) /* never read: the server must cope with a full socket */
                        lws_rx_flow_control(wsi, 0);
                return 0;
        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
                if (s)
                        fail(s, in ? (const char *) in : "connection failed");
                return 0;
        case LWS_CALLBACK_CLIENT_RECEIVE:
                return s ? on_rx(s, wsi, in, len) : 0;
        case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
                if (s && len >= 2)
                        s->close_code = ((const unsigned char *) in)[0] << 8 | ((const unsigned char *) in)[1];
                return 0;
        case LWS_CALLBACK_CLIENT_CLOSED:
                if (s) {
                        s->done = true;
                        s->wsi = NULL;
                }
                return 0;
        default:
                return 0;
        }
}

static const struct lws_protocols protocols[] = {
        { "fanout", callback, 0, 256 * 1024, 0, NULL, 0 },
        { NULL, NULL, 0, 0, 0, NULL, 0 },
};

static bool all_done(const struct fanout *f) {
        for (int i = 0; i < f->n; i++)
                if (!f->subs[i].done)
                        return false;
        return true;
}

static void on_check(lws_sorted_usec_list_t *sul) {
        struct fanout *f = lws_container_of(sul, struct fanout, check);
        if (all_done(f) || wall_s() > f->deadline) {
                f->stop = true;
                lws_cancel_service(f->ctx);
                return;
        }
        lws_sul_schedule(f->ctx, 0, &f->check, on_check, 20 * LWS_US_PER_MS);
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static int cmp_size(const void *a, const void *b) {
        size_t x = *(const size_t *) a, y = *(const size_t *) b;
        return x < y ? -1 : x > y;
}

static void print_json_num(const char *key, double v, bool have, const char *sep) {
        if (have)
                printf("\"%s\": %.3f%s", key, v, sep);
        else
                printf("\"%s\": null%s", key, sep);
}

static void report(struct fanout *f, double secs) {
        size_t complete = 0, in_order = 0, deliveries = 0, gaps = 0, closed_early = 0;
        int close_code = 0;
        size_t counts[16];
        int n_counts = 0;
        for (int i = 0; i < f->n; i++) {
                const struct sub *s = &f->subs[i];
                deliveries += s->count;
                gaps += s->gaps;
                in_order += !s->gaps;
                complete += s->reached;
                if (!s->reached && s->close_code) { /* the server closed it before its end */
                        closed_early++;
                        close_code = s->close_code;
                }
                int j = 0;
                while (j < n_counts && counts[j] != s->count)
                        j++;
                if (j == n_counts && n_counts < (int) (sizeof counts / sizeof counts[0]))
                        counts[n_counts++] = s->count;
        }
        qsort(counts, (size_t) n_counts, sizeof counts[0], cmp_size);
        qsort(f->lat, f->n_lat, sizeof *f->lat, cmp_double);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double cpu = (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6 + (double) ru.ru_stime.tv_sec +
                     (double) ru.ru_stime.tv_usec / 1e6;
        printf("{\"clients\": %d, \"complete\": %zu, \"counts\": [", f->n, complete);
        for (int j = 0; j < n_counts; j++)
                printf("%s%zu", j ? ", " : "", counts[j]);
        printf("], \"in_order\": %zu, \"gaps\": %zu, \"lagged\": %zu, \"closed_early\": %zu, \"close_code\": %d, ",
               in_order, gaps, f->lagged, closed_early, close_code);
        printf("\"deliveries\": %zu, \"seconds\": %.3f, ", deliveries, secs);
        printf("\"busy_lines\": %zu, \"busy_events\": %zu, ", f->busy_lines, f->busy_events);
        print_json_num("busy_first", f->busy_first, f->busy_first > 0, ", ");
        print_json_num("busy_last", f->busy_last, f->busy_last > 0, ", ");
        size_t n = f->n_lat, i99 = (size_t) (0.99 * (double) n);
        print_json_num("latency_p50_ms", n ? f->lat[n / 2] : 0, n > 0, ", ");
        print_json_num("latency_p99_ms", n ? f->lat[i99 < n ? i99 : n - 1] : 0, n > 0, ", ");
        print_json_num("latency_max_ms", n ? f->lat[n - 1] : 0, n > 0, ", ");
        /* the first subscriber's: what the fan-out to the others adds is the rest */
        size_t m = 0;
        for (size_t i = 0; i < f->n_first; i++)
                if (f->first[i] >= 0)
                        f->first[m++] = f->first[i];
        qsort(f->first, m, sizeof *f->first, cmp_double);
        size_t j99 = (size_t) (0.99 * (double) m);
        print_json_num("first_p50_ms", m ? f->first[m / 2] : 0, m > 0, ", ");
        print_json_num("first_p99_ms", m ? f->first[j99 < m ? j99 : m - 1] : 0, m > 0, ", ");
        printf("\"cpu_s\": %.2f}\n", cpu);
}

static int usage(void) {
        fprintf(stderr, "usage: ws-fanout-client ws://HOST:PORT/PATH?QUERY [--token T] --clients N [--stalled M]\n"
                        "                        (--until-state ST | --events K) [--timeout S]\n");
        return 2;
}

int main(int argc, char **argv) {
        struct fanout f = { .after = -1 };
        double timeout = 30;
        const char *url = NULL;
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (a[0] != '-') {
                        url = a;
                        continue;
                }
                if (!v)
                        return usage();
                i++;
                if (!strcmp(a, "--token"))
                        f.token = v;
                else if (!strcmp(a, "--clients"))
                        f.n = atoi(v);
                else if (!strcmp(a, "--stalled"))
                        f.stalled = atoi(v);
                else if (!strcmp(a, "--until-state"))
                        f.until = v;
                else if (!strcmp(a, "--events"))
                        f.want_events = atol(v);
                else if (!strcmp(a, "--timeout"))
                        timeout = atof(v);
                else
                        return usage();
        }
        if (!url || f.n <= 0 || f.stalled < 0 || (!f.until && f.want_events <= 0) ||
            (f.until && strlen(f.until) > 32) || strncmp(url, "ws://", 5))
                return usage();
        /* ws://HOST:PORT/PATH (lws_parse_uri cuts the copy in place; the path loses its '/') */
        char *u = strdup(url), *path = NULL;
        const char *prot, *ads, *p;
        if (!u || lws_parse_uri(u, &prot, &ads, &f.port, &p))
                return usage();
        if (asprintf(&path, "/%s", p) < 0)
                return 1;
        f.host = ads;
        f.path = path;
        const char *after = strstr(path, "after=");
        if (after && (after == path || after[-1] == '?' || after[-1] == '&'))
                f.after = strtoll(after + 6, NULL, 10);
        if (f.token)
                snprintf(f.auth, sizeof f.auth, "Bearer %s", f.token);

        lws_set_log_level(LLL_ERR, NULL);
        struct lws_context_creation_info info = { 0 };
        info.port = CONTEXT_PORT_NO_LISTEN;
        info.protocols = protocols;
        info.pt_serv_buf_size = 256 * 1024; /* what one read of a socket may take */
        info.fd_limit_per_thread = (unsigned int) (f.n + f.stalled + 16);
        info.timeout_secs = (unsigned int) timeout + 10;
        if (!(f.ctx = lws_create_context(&info))) {
                fprintf(stderr, "ws-fanout-client: cannot create the lws context\n");
                return 1;
        }
        int total = f.n + f.stalled;
        f.subs = calloc((size_t) total, sizeof *f.subs);
        if (!f.subs)
                return 1;
        char hostport[300];
        snprintf(hostport, sizeof hostport, "%s:%d", f.host, f.port);
        for (int i = 0; i < total; i++) {
                struct sub *s = &f.subs[i];
                s->f = &f;
                s->stalled = i >= f.n;
                s->next_seq = f.after >= 0 ? f.after + 1 : 0;
                struct lws_client_connect_info ci = { 0 };
                ci.context = f.ctx;
                ci.address = f.host;
                ci.port = f.port;
                ci.path = f.path;
                ci.host = hostport;
                ci.origin = NULL;
                ci.protocol = NULL; /* no Sec-WebSocket-Protocol, as the dashboard's client */
                ci.local_protocol_name = "fanout";
                ci.ietf_version_or_minus_one = -1;
                ci.opaque_user_data = s;
                ci.pwsi = &s->wsi;
                if (!lws_client_connect_via_info(&ci))
                        fail(s, "lws_client_connect_via_info failed");
        }
        double t0 = wall_s();
        f.deadline = t0 + timeout;
        lws_sul_schedule(f.ctx, 0, &f.check, on_check, 20 * LWS_US_PER_MS);
        while (!f.stop && lws_service(f.ctx, 0) >= 0)
                ;
        double secs = wall_s() - t0;
        report(&f, secs);
        fflush(stdout);
        lws_context_destroy(f.ctx);
        for (int i = 0; i < total; i++)
                free(f.subs[i].msg);
        free(f.subs);
        free(f.lat);
        free(f.first);
        free(path);
        free(u);
        if (f.failures) {
                fprintf(stderr, "ws-fanout-client: %d connections failed; %s\n", f.failures, f.first_error);
                return 1;
        }
        return 0;
}
