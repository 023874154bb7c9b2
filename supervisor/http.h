/* nightshift supervisor — the HTTP server (libwebsockets on the process's one event loop).
 *
 * We bind the listening socket ourselves, exactly to --listen (libwebsockets' own `iface` binds
 * to every interface, research/libraries.md), and hand accepted connections to lws.  The thread's
 * one wait is lws' service loop; our epoll loop (common/loop.h) is nested in it as a raw fd.  Requests are bounded (URI, query, body),
 * answered once, in JSON, even when the handler finishes later on a worker. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/err.h"

#define SV_HTTP_BODY_MAX (1024 * 1024)

typedef struct sv_server sv_server;
typedef struct sv_http sv_http;

typedef struct sv_req {
        sv_server *srv;
        struct lws *wsi;    /* NULL once the client went away */
        char method[8];     /* GET, POST, DELETE, PUT, PATCH */
        char path[512];     /* decoded by lws, without the query */
        char query[1024];
        char *body;
        size_t body_len;
        bool body_too_large;
        bool answered;
        bool dispatched;    /* handed to the router (once) */
        /* What auth.c decides on, copied bounded from the request's headers (an over-long value is
         * left empty and flagged, never cut). */
        char authorization[128];
        char session_cookie[48];
        char origin[256];
        char host[256];
        bool header_too_long;
        bool csrf_header;       /* X-Nightshift-CSRF: 1 */
        bool forwarded_https;   /* X-Forwarded-Proto: https (a reverse proxy ends TLS) */
        char token_id[16];      /* the authenticated token's id; empty for the open routes */
        /* the hooks' own headers (hooks.h), read only for /api/v1/hooks/...: a signature, a
         * delivery id, an event name, a timestamp */
        char hook_signature[160];
        char hook_delivery[80];
        char hook_event[64];
        char hook_timestamp[24];
        /* the response */
        int status;
        char *resp;
        size_t resp_len, resp_sent;
        bool headers_sent;
        char set_cookie[256];   /* a Set-Cookie value, or empty */
        int retry_after_s;      /* a Retry-After header when > 0 */
        const char *content_type; /* NULL: application/json */
        /* the dashboard's files (web.c): their caching and page policy; empty/NULL for the API */
        char if_none_match[32];
        const char *cache_control; /* NULL: no-store */
        char etag[24];
        char csp[768];             /* a Content-Security-Policy, or empty */
        uint64_t started_us;    /* for the latency histogram */
} sv_req;

/* Request latency, for /metrics: counts per upper bound (seconds) of SV_HTTP_BUCKETS, plus the
 * total; and requests by status class (1xx..5xx). */
#define SV_HTTP_BUCKETS 12
extern const double sv_http_bucket_bounds[SV_HTTP_BUCKETS];
typedef struct sv_http_stats {
        uint64_t bucket[SV_HTTP_BUCKETS]; /* cumulative as Prometheus wants them: ≤ bound */
        uint64_t count;
        double sum_s;
        uint64_t by_class[6];
} sv_http_stats;
/* The server's request statistics so far. */
const sv_http_stats *sv_http_get_stats(const sv_server *s);

/* Start serving on s->cfg.listen_addr:listen_port.  *port_out gets the bound port. */
int sv_http_start(sv_server *s, int *port_out, ns_error *err);
void sv_http_stop(sv_server *s);
/* Run the process's event loop (libwebsockets' service loop with ours nested, see http.c) until
 * ns_loop_quit(); `tick` runs every 250 ms. */
void sv_http_run(sv_server *s, void (*tick)(sv_server *s));

/* Answer a request (once; later calls are ignored).  `body` is consumed; NULL sends no body
 * (204) or "{}".  Safe after the client left: the request is then just freed. */
void sv_req_reply_json(sv_req *r, int status, cJSON *body);
/* Answer with `body` (malloc'd, consumed; len bytes) of `content_type` (a static string). */
void sv_req_reply_raw(sv_req *r, int status, const char *content_type, char *body, size_t len);
void sv_req_reply_error(sv_req *r, int status, const char *code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* The query parameter `name` (URL-decoded) into buf; false when absent. */
bool sv_req_query(const sv_req *r, const char *name, char *buf, size_t cap);

/* The router (api.c): called once per complete request. */
void sv_api_dispatch(sv_req *r);
