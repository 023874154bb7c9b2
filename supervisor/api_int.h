/* nightshift supervisor — what the API's files (api.c: router and core routes; api_session.c,
 * api_meta.c: the rest) share.  Not for other code. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "http.h"
#include "ids.h"

static inline void sv_api_json_deletep(cJSON **j) {
        cJSON_Delete(*j);
}
#define _cleanup_json_ _cleanup_(sv_api_json_deletep)

/* A route's path parameters: {id} or {repo_id} into id (checked by the router), {prompt_id}
 * into sub (checked by the handler). */
typedef struct sv_route_args {
        char id[SV_ID_LEN + 1];
        char sub[SV_ID_LEN + 1];
        char name[65]; /* {name}: a secret's name (checked by the handler) */
} sv_route_args;

typedef struct sv_route {
        const char *method;
        const char *pattern; /* "/api/v1/sessions/{id}/events" */
        void (*fn)(sv_req *r, const sv_route_args *a);
} sv_route;

/* The route table (for the OpenAPI test). */
const sv_route *sv_api_routes(size_t *n);

/* JSON helpers: a string or null; a time in ms or null. */
void sv_api_add_str_or_null(cJSON *o, const char *k, const char *v);
void sv_api_add_time(cJSON *o, const char *k, int64_t ms);
/* An asynchronous API reply (an sv_reply_fn whose ctx is the sv_req). */
void sv_api_reply_cb(void *ctx, int status, cJSON *body, const char *code, const char *message);
/* The body as a JSON object, or NULL after replying 400. */
cJSON *sv_api_parse_body(sv_req *r);
/* Reply 400 with e's message. */
void sv_api_bad(sv_req *r, const ns_error *e);
/* Reply to a failed repository lookup (rc < 0): 404 "no such repository" for -ENOENT, else 500. */
void sv_api_repo_lookup_failed(sv_req *r, int rc, const ns_error *e);

/* api_session.c */
void sv_api_session_log(sv_req *r, const sv_route_args *a);
void sv_api_session_diff(sv_req *r, const sv_route_args *a);
void sv_api_session_artifacts(sv_req *r, const sv_route_args *a);
void sv_api_session_stats(sv_req *r, const sv_route_args *a);
/* GET .../prompts: the session's prompt queue and history (the dashboard's follow-up box). */
void sv_api_session_prompts(sv_req *r, const sv_route_args *a);
void sv_api_session_archive(sv_req *r, const sv_route_args *a);
void sv_api_prompt_cancel(sv_req *r, const sv_route_args *a);
void sv_api_repo_delete(sv_req *r, const sv_route_args *a);

/* Free the session-list cache (at shutdown). */
typedef struct sv_server sv_server;
void sv_api_cache_free(sv_server *s);

/* api_meta.c */
void sv_api_metrics(sv_req *r, const sv_route_args *a);
void sv_api_openapi(sv_req *r, const sv_route_args *a);

/* api_secrets.c: the vault's routes; {repo_id} present = that repository's scope. */
void sv_api_secrets_list(sv_req *r, const sv_route_args *a);
void sv_api_secret_put(sv_req *r, const sv_route_args *a);
void sv_api_secret_delete(sv_req *r, const sv_route_args *a);

/* push.c: push the session's branch from the mirror, after the pre-push gate. */
void sv_api_session_push(sv_req *r, const sv_route_args *a);
/* pr.c: push the branch and open (or find) its pull request on GitHub. */
void sv_api_session_pr(sv_req *r, const sv_route_args *a);
