/* nightshift supervisor — /metrics (Prometheus text) and /api/v1/openapi.json. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"
#include "openapi.h"
#include "serve.h"
#include "spare.h"
#include "ws.h"

typedef struct text {
        char *p;
        size_t len, cap;
        bool failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...) {
        if (t->failed)
                return;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0 || (t->len + (size_t) n + 1 > t->cap && !(t->p = realloc(t->p, t->cap = (t->len + (size_t) n + 1) * 2)))) {
                t->failed = true;
                return;
        }
        va_start(ap, fmt);
        vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        t->len += (size_t) n;
}

void sv_api_metrics(sv_req *r, const sv_route_args *a) {
        (void) a;
        sv_server *s = r->srv;
        int64_t counts[SV_STATE_COUNT], queued_prompts = 0, events = 0;
        ns_error e;
        if (db_session_counts(s->db, counts, &e) < 0 || db_prompts_queued(s->db, &queued_prompts, &e) < 0 ||
            db_events_max_id(s->db, &events, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        text t = { 0 };
        put(&t, "# HELP nightshift_sessions Sessions by state.\n# TYPE nightshift_sessions gauge\n");
        for (int i = 0; i < SV_STATE_COUNT; i++)
                put(&t, "nightshift_sessions{state=\"%s\"} %lld\n", sv_state_name((sv_state) i), (long long) counts[i]);
        put(&t, "# HELP nightshift_sandboxes Sessions holding a sandbox now.\n# TYPE nightshift_sandboxes gauge\n"
                "nightshift_sandboxes %zu\n", sv_sessions_live(s));
        put(&t, "# HELP nightshift_turn_slots_used Turns running or provisioning (at most max-concurrent).\n"
                "# TYPE nightshift_turn_slots_used gauge\nnightshift_turn_slots_used %d\n", s->slots_used);
        put(&t, "# HELP nightshift_queue_length Sessions waiting for a slot, and follow-up prompts waiting for their agent.\n"
                "# TYPE nightshift_queue_length gauge\nnightshift_queue_length{kind=\"sessions\"} %lld\n"
                "nightshift_queue_length{kind=\"prompts\"} %lld\n",
            (long long) counts[SV_QUEUED], (long long) queued_prompts);
        put(&t, "# HELP nightshift_events_total Events stored (rate() of it is events per second).\n"
                "# TYPE nightshift_events_total counter\nnightshift_events_total %lld\n", (long long) events);
        put(&t, "# HELP nightshift_event_subscribers WebSocket subscribers of /api/v1/events.\n"
                "# TYPE nightshift_event_subscribers gauge\nnightshift_event_subscribers %zu\n", sv_ws_clients(s));
        const sv_http_stats *h = sv_http_get_stats(s);
        if (h) {
                put(&t, "# HELP nightshift_http_request_duration_seconds Time from a request's headers to the end "
                        "of its response.\n# TYPE nightshift_http_request_duration_seconds histogram\n");
                for (int i = 0; i < SV_HTTP_BUCKETS; i++)
                        put(&t, "nightshift_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n", sv_http_bucket_bounds[i],
                            (unsigned long long) h->bucket[i]);
                put(&t, "nightshift_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
                        "nightshift_http_request_duration_seconds_sum %.6f\n"
                        "nightshift_http_request_duration_seconds_count %llu\n",
                    (unsigned long long) h->count, h->sum_s, (unsigned long long) h->count);
                put(&t, "# HELP nightshift_http_requests_total Requests answered, by status class.\n"
                        "# TYPE nightshift_http_requests_total counter\n");
                for (int c = 1; c <= 5; c++)
                        put(&t, "nightshift_http_requests_total{code=\"%dxx\"} %llu\n", c, (unsigned long long) h->by_class[c]);
        }
        sv_spare_stats sp;
        sv_spares_stats(s->spares, &sp);
        put(&t, "# HELP nightshift_spare_trees Spare working trees (spare.h): ready to be taken, or being made.\n"
                "# TYPE nightshift_spare_trees gauge\nnightshift_spare_trees{state=\"ready\"} %llu\n"
                "nightshift_spare_trees{state=\"busy\"} %llu\n"
                "# HELP nightshift_spare_trees_bytes Disk used by the ready spare working trees.\n"
                "# TYPE nightshift_spare_trees_bytes gauge\nnightshift_spare_trees_bytes %llu\n"
                "# HELP nightshift_spare_trees_sessions_total Sessions started on a spare tree (taken) or on a fresh "
                "checkout although spares are on (missed).\n# TYPE nightshift_spare_trees_sessions_total counter\n"
                "nightshift_spare_trees_sessions_total{result=\"taken\"} %llu\n"
                "nightshift_spare_trees_sessions_total{result=\"missed\"} %llu\n"
                "# HELP nightshift_spare_trees_discarded_total Spare trees dropped unused (their commit gone).\n"
                "# TYPE nightshift_spare_trees_discarded_total counter\nnightshift_spare_trees_discarded_total %llu\n",
            (unsigned long long) sp.ready, (unsigned long long) sp.busy, (unsigned long long) sp.bytes,
            (unsigned long long) sp.taken, (unsigned long long) sp.missed, (unsigned long long) sp.discarded);
        if (t.failed) {
                free(t.p);
                return sv_req_reply_error(r, 500, "internal", "out of memory");
        }
        sv_req_reply_raw(r, 200, "text/plain; version=0.0.4", t.p, t.len);
}

void sv_api_openapi(sv_req *r, const sv_route_args *a) {
        (void) a;
        char *doc = malloc(sv_openapi_json_len);
        if (!doc)
                return sv_req_reply_error(r, 500, "internal", "out of memory");
        memcpy(doc, sv_openapi_json, sv_openapi_json_len);
        sv_req_reply_raw(r, 200, "application/json", doc, sv_openapi_json_len);
}
