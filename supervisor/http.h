/* nightshift supervisor — the HTTP server (libwebsockets on the process's one event loop).
 *
 * We bind the listening socket ourselves, exactly to --listen (libwebsockets' own `iface` binds
 * to every interface, research/libraries.md), and hand accepted connections to lws.  The thread's
 * one wait is lws' service loop; our epoll loop (common/loop.h) is nested in it as a raw fd.  Requests are bounded (URI, query, body),
 * answered once, in JSON, even when the handler finishes later on a worker. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

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
        /* the response */
        int status;
        char *resp;
        size_t resp_len, resp_sent;
        bool headers_sent;
} sv_req;

/* Start serving on s->cfg.listen_addr:listen_port.  *port_out gets the bound port. */
int sv_http_start(sv_server *s, int *port_out, ns_error *err);
void sv_http_stop(sv_server *s);
/* Run the process's event loop (libwebsockets' service loop with ours nested, see http.c) until
 * ns_loop_quit(); `tick` runs every 250 ms. */
void sv_http_run(sv_server *s, void (*tick)(sv_server *s));

/* Answer a request (once; later calls are ignored).  `body` is consumed; NULL sends no body
 * (204) or "{}".  Safe after the client left: the request is then just freed. */
void sv_req_reply_json(sv_req *r, int status, cJSON *body);
void sv_req_reply_error(sv_req *r, int status, const char *code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* The query parameter `name` (URL-decoded) into buf; false when absent. */
bool sv_req_query(const sv_req *r, const char *name, char *buf, size_t cap);

/* The router (api.c): called once per complete request. */
void sv_api_dispatch(sv_req *r);
