/* nightshift supervisor — the REST routes under /api/v1 (the part the session runner needs; the
 * HTTP API issue completes the list).  Every body is JSON, bounded (http.h), checked key by key
 * (unknown keys refused), and every error is {"error":{"code","message"}} with its status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "egress.h"
#include "api_int.h"
#include "hooks.h"
#include "notify.h"
#include "preview.h"
#include "auth.h"
#include "common/jsonv.h"
#include "http.h"
#include "ids.h"
#include "jsonw.h"
#include "serve.h"
#include "repo_settings.h"

void sv_api_add_str_or_null(cJSON *o, const char *k, const char *v) {
        if (v)
                cJSON_AddStringToObject(o, k, v);
        else
                cJSON_AddNullToObject(o, k);
}

void sv_api_add_time(cJSON *o, const char *k, int64_t ms) {
        if (ms)
                cJSON_AddNumberToObject(o, k, (double) ms);
        else
                cJSON_AddNullToObject(o, k);
}

/* A session's fields in the order they are written; GET /sessions?fields= names a subset. */
static const char *const session_fields[] = {
        "id",      "repo",    "base",    "base_sha",    "branch",     "agent",      "state",      "state_reason", "title",
        "once",    "model",   "network", "sandbox",     "last_commit", "created_at", "updated_at", "started_at",   "ended_at",
};
#define SESSION_FIELDS_ALL ((1u << ARRAY_SIZE(session_fields)) - 1)

/* The fields of s that `mask` selects (bit i: session_fields[i]), as one JSON object. */
static void session_write_fields(jw *w, const db_session *s, unsigned mask) {
        jw_obj_begin(w);
        unsigned i = 0;
#define F(write) \
        do { \
                if (mask & (1u << i)) \
                        write; \
                i++; \
        } while (0)
        F(jw_kstr(w, "id", s->id));
        F(jw_kstr(w, "repo", s->repo_id));
        F(jw_kstr(w, "base", s->base_ref));
        F(jw_kstr(w, "base_sha", s->base_sha));
        F(jw_kstr(w, "branch", s->branch));
        F(jw_kstr(w, "agent", s->agent));
        F(jw_kstr(w, "state", sv_state_name(s->state)));
        F(jw_kstr(w, "state_reason", s->state_reason));
        F(jw_kstr(w, "title", s->title));
        F(jw_kbool(w, "once", s->once));
        F(jw_kstr(w, "model", s->model));
        F(jw_kstr(w, "network", s->network));
        F(jw_kstr(w, "sandbox", s->sandbox_id));
        F(jw_kstr(w, "last_commit", s->last_commit_sha));
        F(jw_ktime(w, "created_at", s->created_at));
        F(jw_ktime(w, "updated_at", s->updated_at));
        F(jw_ktime(w, "started_at", s->started_at));
        F(jw_ktime(w, "ended_at", s->ended_at));
#undef F
        jw_obj_end(w);
}

void sv_session_write(jw *w, const db_session *s) {
        session_write_fields(w, s, SESSION_FIELDS_ALL);
}

/* `list` ("id,state,title"): the mask of the fields it names; -1 when it names one that is not a
 * session's field, or is empty. */
static long session_fields_mask(const char *list) {
        unsigned mask = 0;
        for (const char *p = list;;) {
                size_t k = strcspn(p, ",");
                size_t i = 0;
                while (i < ARRAY_SIZE(session_fields) &&
                       (strlen(session_fields[i]) != k || strncmp(session_fields[i], p, k)))
                        i++;
                if (i == ARRAY_SIZE(session_fields))
                        return -1;
                mask |= 1u << i;
                if (!p[k])
                        return (long) mask;
                p += k + 1;
        }
}

cJSON *sv_session_json(const db_session *s) {
        jw w = { 0 };
        sv_session_write(&w, s);
        _cleanup_free_ char *text = jw_take(&w, NULL);
        return text ? cJSON_Parse(text) : NULL;
}

/* An asynchronous reply (from a worker's job) into the waiting request. */
void sv_api_reply_cb(void *ctx, int status, cJSON *body, const char *code, const char *message) {
        sv_req *r = ctx;
        if (code)
                sv_req_reply_error(r, status, code, "%s", message ? message : code);
        else
                sv_req_reply_json(r, status, body);
}

cJSON *sv_api_parse_body(sv_req *r) {
        if (!r->body || !r->body_len) {
                sv_req_reply_error(r, 400, "invalid_json", "a JSON object body is required");
                return NULL;
        }
        cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
        if (!cJSON_IsObject(j)) {
                cJSON_Delete(j);
                sv_req_reply_error(r, 400, "invalid_json", "the body is not a JSON object");
                return NULL;
        }
        return j;
}

void sv_api_bad(sv_req *r, const ns_error *e) {
        sv_req_reply_error(r, 400, "invalid", "%s", e->msg);
}

void sv_api_repo_lookup_failed(sv_req *r, int rc, const ns_error *e) {
        if (rc == -ENOENT)
                sv_req_reply_error(r, 404, "not_found", "no such repository");
        else
                sv_req_reply_error(r, 500, "internal", "%s", e->msg);
}

/* ---- repositories -------------------------------------------------------------------------- */

static void repos_post(sv_req *r) {
        _cleanup_json_ cJSON *j = sv_api_parse_body(r);
        if (!j)
                return;
        static const char *const keys[] = { "url", "path", "name", NULL };
        const char *url = NULL, *path = NULL, *name = NULL;
        ns_error e;
        if (jv_only_keys(j, keys, &e) < 0 || jv_str(j, "url", false, 2048, NULL, &url, &e) < 0 ||
            jv_str(j, "path", false, 2048, NULL, &path, &e) < 0 ||
            jv_str(j, "name", false, 64, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", &name, &e) < 0)
                return sv_api_bad(r, &e);
        if (!url == !path)
                return sv_req_reply_error(r, 400, "invalid", "give exactly one of 'url' and 'path'");
        sv_repo_register(r->srv, url ? url : path, name, sv_api_reply_cb, r);
}

static void repos_get(sv_req *r) {
        db_repo *v = NULL;
        size_t n = 0;
        ns_error e;
        if (db_repo_list(r->srv->db, &v, &n, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "repos");
        for (size_t i = 0; i < n; i++) {
                cJSON *it = cJSON_CreateObject();
                cJSON_AddStringToObject(it, "id", v[i].id);
                cJSON_AddStringToObject(it, "name", v[i].name);
                cJSON_AddStringToObject(it, "url", v[i].url_or_path);
                sv_api_add_str_or_null(it, "default_branch", v[i].default_branch);
                sv_api_add_time(it, "created_at", v[i].created_at);
                cJSON_AddItemToArray(a, it);
        }
        db_repos_free(v, n);
        sv_req_reply_json(r, 200, o);
}

/* ---- sessions ------------------------------------------------------------------------------ */

static int take_str(const cJSON *j, const char *key, bool req, size_t max, const char *cs, char **out, ns_error *e) {
        const char *s = NULL;
        int rc = jv_str(j, key, req, max, cs, &s, e);
        if (rc < 0)
                return rc;
        *out = s ? strdup(s) : NULL;
        return s && !*out ? ns_err(e, ENOMEM, "out of memory") : 0;
}

static void sessions_post(sv_req *r, bool task_alias) {
        _cleanup_json_ cJSON *j = sv_api_parse_body(r);
        if (!j)
                return;
        static const char *const keys[] = { "repo",    "base",  "agent",  "prompt", "model", "title",
                                            "once",    "network", "limits", "env",   "connect", "egress", NULL };
        static const char *const task_keys[] = { "repository", "prompt", "branch", "model", NULL };
        ns_error e;
        sv_new_session *q = calloc(1, sizeof *q);
        if (!q)
                return sv_req_reply_error(r, 500, "internal", "out of memory");
        int rc;
        const char *net = NULL;
        if (task_alias) {
                /* 1code's task API body: {repository, prompt, branch?, model?} */
                rc = jv_only_keys(j, task_keys, &e);
                if (rc >= 0)
                        rc = take_str(j, "repository", true, 2048, NULL, &q->repo, &e);
                if (rc >= 0)
                        rc = take_str(j, "branch", false, 256, NULL, &q->base, &e);
                q->once = true;
        } else {
                rc = jv_only_keys(j, keys, &e);
                if (rc >= 0)
                        rc = take_str(j, "repo", true, 2048, NULL, &q->repo, &e);
                if (rc >= 0)
                        rc = take_str(j, "base", false, 256, NULL, &q->base, &e);
                if (rc >= 0)
                        rc = take_str(j, "agent", false, 32, "abcdefghijklmnopqrstuvwxyz", &q->agent, &e);
                if (rc >= 0)
                        rc = take_str(j, "title", false, 200, NULL, &q->title, &e);
                if (rc >= 0)
                        rc = jv_bool(j, "once", false, &q->once, &e);
                if (rc >= 0)
                        rc = jv_str(j, "network", false, 16, NULL, &net, &e);
                if (rc >= 0 && net && strcmp(net, "none") && strcmp(net, "private") && strcmp(net, "proxy"))
                        rc = ns_err(&e, EINVAL, "network '%s' is not available (\"none\", \"private\" or \"proxy\")", net);
                q->net_private = rc >= 0 && net && !strcmp(net, "private");
                q->net_proxy = rc >= 0 && net && !strcmp(net, "proxy");
                if (rc >= 0)
                        rc = sv_egress_list_json(cJSON_GetObjectItemCaseSensitive(j, "egress"), q->net_proxy, &q->egress_json, &e);
                const cJSON *lim = cJSON_GetObjectItemCaseSensitive(j, "limits");
                if (rc >= 0 && lim) {
                        static const char *const lk[] = { "memory", "pids", "cpus", NULL };
                        if (!cJSON_IsObject(lim))
                                rc = ns_err(&e, EINVAL, "'limits' must be an object");
                        if (rc >= 0)
                                rc = jv_only_keys(lim, lk, &e);
                        if (rc >= 0)
                                rc = jv_int(lim, "memory", false, 4 << 20, INT64_C(1) << 42, 0, &q->memory, &e);
                        if (rc >= 0)
                                rc = jv_int(lim, "pids", false, 1, 1000000, 0, &q->pids, &e);
                        if (rc >= 0)
                                rc = jv_double(lim, "cpus", false, 0.01, 1024, 0, &q->cpus, &e);
                }
                const cJSON *env = cJSON_GetObjectItemCaseSensitive(j, "env");
                if (rc >= 0 && env) {
                        if (!cJSON_IsObject(env) || cJSON_GetArraySize(env) > 128)
                                rc = ns_err(&e, EINVAL, "'env' must be an object of at most 128 strings");
                        const cJSON *it;
                        cJSON_ArrayForEach(it, env) {
                                size_t kl = strlen(it->string);
                                if (rc < 0)
                                        break;
                                if (!cJSON_IsString(it) || !kl || kl > 128 || strspn(it->string,
                                        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != kl ||
                                    (it->string[0] >= '0' && it->string[0] <= '9') || strlen(it->valuestring) > 16384)
                                        rc = ns_err(&e, EINVAL, "env: '%.64s' must be NAME (letters, digits, _) = string",
                                                    it->string);
                        }
                        if (rc >= 0 && !(q->env_json = cJSON_PrintUnformatted(env)))
                                rc = ns_err(&e, ENOMEM, "out of memory");
                }
                const cJSON *con = cJSON_GetObjectItemCaseSensitive(j, "connect"), *it;
                if (rc >= 0 && con) {
                        if (!cJSON_IsArray(con) || cJSON_GetArraySize(con) > SV_MAX_CONNECTS)
                                rc = ns_err(&e, EINVAL, "'connect' must be an array of at most %d ports", SV_MAX_CONNECTS);
                        cJSON_ArrayForEach(it, con) {
                                double d = it->valuedouble;
                                if (rc < 0)
                                        break;
                                if (!cJSON_IsNumber(it) || d != (double) (int) d || d < 1 || d > 65535)
                                        rc = ns_err(&e, EINVAL, "'connect' ports must be integers 1..65535");
                                else
                                        q->connects[q->n_connects++] = (int) d;
                        }
                }
        }
        if (rc >= 0)
                rc = take_str(j, "model", false, 128, NULL, &q->model, &e);
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(j, "prompt");
        if (rc >= 0 && cJSON_IsString(pr) && strlen(pr->valuestring) > DB_PROMPT_MAX_BYTES) {
                sv_new_session_clear(q);
                free(q);
                return sv_req_reply_error(r, 413, "prompt_too_large", "the prompt is larger than %d bytes",
                                          DB_PROMPT_MAX_BYTES);
        }
        if (rc >= 0)
                rc = take_str(j, "prompt", true, DB_PROMPT_MAX_BYTES, NULL, &q->prompt, &e);
        if (rc >= 0 && !q->agent && !(q->agent = strdup(task_alias ? "claude" : "command")))
                rc = ns_err(&e, ENOMEM, "out of memory");
        if (rc < 0) {
                sv_new_session_clear(q);
                free(q);
                return sv_api_bad(r, &e);
        }
        sv_session_create(r->srv, q, sv_api_reply_cb, r);
}

/* Answer 200 with what w holds (consumed), or 500 when writing it ran out of memory. */
static void reply_jw(sv_req *r, jw *w) {
        size_t len;
        char *text = jw_take(w, &len);
        if (!text)
                return sv_req_reply_error(r, 500, "internal", "out of memory");
        sv_req_reply_raw(r, 200, "application/json", text, len);
}

/* The last GET /sessions answer, kept while the database is unchanged: a dashboard or script
 * polling the list costs a lookup, not a query and a serialisation.  The generation (db.h) changes
 * with any commit, from any connection, so a kept answer is never stale. */
struct sv_list_cache {
        char query[sizeof ((sv_req *) 0)->query];
        db_generation_t gen;
        char *body;
        size_t len;
};

void sv_api_cache_free(sv_server *s) {
        if (s->list_cache)
                free(s->list_cache->body);
        free(s->list_cache);
        s->list_cache = NULL;
}

static bool cached_list(sv_req *r, db_generation_t *gen) {
        struct sv_list_cache *c = r->srv->list_cache;
        if (db_generation(r->srv->db, gen, NULL) < 0)
                return false;
        if (!c || !c->body || strcmp(c->query, r->query) || c->gen.others != gen->others || c->gen.own != gen->own)
                return false;
        char *copy = malloc(c->len);
        if (!copy)
                return false;
        memcpy(copy, c->body, c->len);
        sv_req_reply_raw(r, 200, "application/json", copy, c->len);
        return true;
}

static void keep_list(sv_req *r, const db_generation_t *gen, const char *body, size_t len) {
        sv_server *s = r->srv;
        if (!s->list_cache && !(s->list_cache = calloc(1, sizeof *s->list_cache)))
                return;
        char *copy = malloc(len);
        if (!copy)
                return;
        memcpy(copy, body, len);
        free(s->list_cache->body);
        s->list_cache->body = copy;
        s->list_cache->len = len;
        s->list_cache->gen = *gen;
        snprintf(s->list_cache->query, sizeof s->list_cache->query, "%s", r->query);
}

static void sessions_get(sv_req *r) {
        db_generation_t gen = { -1, -1 };
        if (cached_list(r, &gen))
                return;
        char state[32], repo[64], limit[16], fields[256];
        db_session_filter f = { .limit = 100 };
        unsigned mask = SESSION_FIELDS_ALL;
        if (sv_req_query(r, "fields", fields, sizeof fields)) {
                long m = session_fields_mask(fields);
                if (m < 0)
                        return sv_req_reply_error(r, 400, "invalid", "fields: a comma-separated list of a session's fields");
                mask = (unsigned) m;
        }
        if (sv_req_query(r, "state", state, sizeof state)) {
                sv_state st;
                if (sv_state_parse(state, &st) < 0)
                        return sv_req_reply_error(r, 400, "invalid", "unknown state '%s'", state);
                f.state_mask = 1u << st;
        }
        if (sv_req_query(r, "repo", repo, sizeof repo))
                f.repo_id = repo;
        if (sv_req_query(r, "limit", limit, sizeof limit)) {
                char *end;
                long v = strtol(limit, &end, 10);
                if (*end || v < 1 || v > 1000)
                        return sv_req_reply_error(r, 400, "invalid", "limit must be 1..1000");
                f.limit = (size_t) v;
        }
        /* The cursor is "<created_at>.<id>" of the last session of the previous page. */
        char cursor[64], after_id[SV_ID_LEN + 1];
        if (sv_req_query(r, "cursor", cursor, sizeof cursor)) {
                char *dot = strchr(cursor, '.'), *end;
                long long t = strtoll(cursor, &end, 10);
                if (!dot || end != dot || t < 0 || !sv_id_valid(dot + 1, SV_ID_PREFIX_SESSION))
                        return sv_req_reply_error(r, 400, "invalid", "cursor is not one this server gave");
                memcpy(after_id, dot + 1, SV_ID_LEN + 1);
                f.after_id = after_id;
                f.after_created_at = t;
        }
        /* One row more than the page: a next_cursor only when there is a next page (a client
         * reading every page is not sent for an empty one). */
        size_t page = f.limit;
        f.limit = page + 1;
        db_session *v = NULL;
        size_t n = 0;
        ns_error e;
        /* Read before the sessions: an event stored in between is replayed, never missed. */
        int64_t last_event_id = 0;
        if (db_events_max_id(r->srv->db, &last_event_id, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        if (db_session_list(r->srv->db, &f, &v, &n, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        /* Written straight to text: the list is the API's busiest answer. */
        jw w = { 0 };
        jw_obj_begin(&w);
        jw_key(&w, "sessions");
        jw_arr_begin(&w);
        size_t shown = n > page ? page : n;
        for (size_t i = 0; i < shown; i++)
                session_write_fields(&w, &v[i], mask);
        jw_arr_end(&w);
        if (n > page) {
                char next[64];
                snprintf(next, sizeof next, "%lld.%s", (long long) v[shown - 1].created_at, v[shown - 1].id);
                jw_kstr(&w, "next_cursor", next);
        } else {
                jw_kstr(&w, "next_cursor", NULL);
        }
        jw_key(&w, "last_event_id");
        jw_int(&w, last_event_id);
        jw_obj_end(&w);
        db_sessions_free(v, n);
        if (gen.others >= 0 && !w.failed)
                keep_list(r, &gen, w.buf, w.len);
        reply_jw(r, &w);
}

static void session_get(sv_req *r, const char *sid) {
        db_session row = { 0 };
        ns_error e;
        int rc = db_session_get(r->srv->db, sid, &row, &e);
        if (rc < 0)
                return sv_req_reply_error(r, rc == -ENOENT ? 404 : 500, rc == -ENOENT ? "not_found" : "internal", "%s",
                                          e.msg);
        jw w = { 0 };
        sv_session_write(&w, &row);
        db_session_clear(&row);
        reply_jw(r, &w);
}

static void events_get(sv_req *r, const char *sid) {
        char after[24] = "0", limit[16] = "500";
        sv_req_query(r, "after", after, sizeof after);
        sv_req_query(r, "limit", limit, sizeof limit);
        char *e1, *e2;
        long long a = strtoll(after, &e1, 10), l = strtoll(limit, &e2, 10);
        if (*e1 || *e2 || a < 0 || l < 1 || l > 1000)
                return sv_req_reply_error(r, 400, "invalid", "after must be ≥ 0 and limit 1..1000");
        db_session row = { 0 };
        ns_error e;
        int rc = db_session_get(r->srv->db, sid, &row, &e);
        db_session_clear(&row);
        if (rc < 0)
                return sv_req_reply_error(r, rc == -ENOENT ? 404 : 500, rc == -ENOENT ? "not_found" : "internal", "%s",
                                          e.msg);
        db_event *v = NULL;
        size_t n = 0;
        if (db_events_after_seq(r->srv->db, sid, a, (size_t) l, &v, &n, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        /* The stored data is JSON already (checked on the way in): written as it is. */
        jw w = { 0 };
        jw_obj_begin(&w);
        jw_key(&w, "events");
        jw_arr_begin(&w);
        for (size_t i = 0; i < n; i++) {
                jw_obj_begin(&w);
                jw_kint(&w, "id", v[i].id);
                jw_kint(&w, "seq", v[i].seq);
                jw_kint(&w, "ts", v[i].ts);
                jw_kstr(&w, "type", v[i].type);
                jw_key(&w, "data");
                jw_raw(&w, v[i].data, strlen(v[i].data));
                jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_obj_end(&w);
        db_events_free(v, n);
        reply_jw(r, &w);
}

static void prompts_post(sv_req *r, const char *sid) {
        _cleanup_json_ cJSON *j = sv_api_parse_body(r);
        if (!j)
                return;
        static const char *const keys[] = { "text", NULL };
        const char *text = NULL;
        ns_error e;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "text");
        if (cJSON_IsString(t) && strlen(t->valuestring) > DB_PROMPT_MAX_BYTES)
                return sv_req_reply_error(r, 413, "prompt_too_large", "the prompt is larger than %d bytes",
                                          DB_PROMPT_MAX_BYTES);
        if (jv_only_keys(j, keys, &e) < 0 || jv_str(j, "text", true, DB_PROMPT_MAX_BYTES, NULL, &text, &e) < 0)
                return sv_api_bad(r, &e);
        int64_t id = 0;
        int rc = sv_session_prompt(r->srv, sid, text, &id, &e);
        if (rc < 0)
                return sv_req_reply_error(r, rc == -ENOENT ? 404 : rc == -EINVAL ? 409 : 500,
                                          rc == -ENOENT ? "not_found" : rc == -EINVAL ? "session_over" : "internal", "%s",
                                          e.msg);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double) id);
        cJSON_AddStringToObject(o, "session", sid);
        cJSON_AddStringToObject(o, "state", "queued");
        sv_req_reply_json(r, 202, o);
}

static void session_action(sv_req *r, const char *sid, const char *action) {
        ns_error e;
        int rc;
        bool force = false;
        if (!strcmp(action, "stop") && r->body_len) {
                _cleanup_json_ cJSON *j = sv_api_parse_body(r);
                static const char *const keys[] = { "force", NULL };
                if (!j)
                        return;
                if (jv_only_keys(j, keys, &e) < 0 || jv_bool(j, "force", false, &force, &e) < 0)
                        return sv_api_bad(r, &e);
        }
        if (!strcmp(action, "interrupt"))
                rc = sv_session_interrupt(r->srv, sid, &e);
        else if (!strcmp(action, "stop"))
                rc = sv_session_stop(r->srv, sid, force, &e);
        else if (!strcmp(action, "pause") || !strcmp(action, "resume"))
                rc = sv_session_pause(r->srv, sid, !strcmp(action, "pause"), &e);
        else if (!strcmp(action, "complete"))
                rc = sv_session_complete(r->srv, sid, &e);
        else
                return sv_req_reply_error(r, 404, "not_found", "no such action '%s'", action);
        if (rc < 0)
                return sv_req_reply_error(r, rc == -ENOENT ? 404 : rc == -EINVAL ? 409 : 500,
                                          rc == -ENOENT ? "not_found" : rc == -EINVAL ? "conflict" : "internal", "%s",
                                          e.msg);
        session_get(r, sid);
}

/* ---- routing ------------------------------------------------------------------------------- */

static void healthz(sv_req *r, const sv_route_args *a) {
        (void) a;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "ok");
        sv_req_reply_json(r, 200, o);
}
static void login(sv_req *r, const sv_route_args *a) {
        (void) a;
        sv_auth_login(r->srv, r);
}
static void logout(sv_req *r, const sv_route_args *a) {
        (void) a;
        sv_auth_logout(r->srv, r);
}
static void r_repos_get(sv_req *r, const sv_route_args *a) {
        (void) a;
        repos_get(r);
}
static void r_repos_post(sv_req *r, const sv_route_args *a) {
        (void) a;
        repos_post(r);
}
static void r_sessions_get(sv_req *r, const sv_route_args *a) {
        (void) a;
        sessions_get(r);
}
static void r_sessions_post(sv_req *r, const sv_route_args *a) {
        (void) a;
        sessions_post(r, false);
}
static void r_tasks_post(sv_req *r, const sv_route_args *a) {
        (void) a;
        sessions_post(r, true);
}
static void r_session_get(sv_req *r, const sv_route_args *a) {
        session_get(r, a->id);
}
static void r_session_delete(sv_req *r, const sv_route_args *a) {
        sv_session_delete(r->srv, a->id, sv_api_reply_cb, r);
}
static void r_events_get(sv_req *r, const sv_route_args *a) {
        events_get(r, a->id);
}
static void r_prompts_post(sv_req *r, const sv_route_args *a) {
        prompts_post(r, a->id);
}
#define ACTION(name)                                                      \
        static void r_##name(sv_req *r, const sv_route_args *a) {         \
                session_action(r, a->id, #name);                          \
        }
ACTION(interrupt)
ACTION(stop)
ACTION(pause)
ACTION(resume)
ACTION(complete)

/* Every route the server serves, in one table: the router walks it, and the OpenAPI test compares
 * it with openapi.json.  {id} is a session id, {repo_id} a repository id, {prompt_id} a number. */
static const sv_route routes[] = {
        { "GET", "/api/v1/healthz", healthz },
        { "POST", "/api/v1/login", login },
        { "POST", "/api/v1/logout", logout },
        { "GET", "/api/v1/openapi.json", sv_api_openapi },
        { "GET", "/metrics", sv_api_metrics },
        { "GET", "/api/v1/repos", r_repos_get },
        { "POST", "/api/v1/repos", r_repos_post },
        { "DELETE", "/api/v1/repos/{repo_id}", sv_api_repo_delete },
        { "POST", "/api/v1/tasks", r_tasks_post },
        { "GET", "/api/v1/sessions", r_sessions_get },
        { "POST", "/api/v1/sessions", r_sessions_post },
        { "GET", "/api/v1/sessions/{id}", r_session_get },
        { "DELETE", "/api/v1/sessions/{id}", r_session_delete },
        { "GET", "/api/v1/sessions/{id}/events", r_events_get },
        { "GET", "/api/v1/sessions/{id}/log", sv_api_session_log },
        { "GET", "/api/v1/sessions/{id}/diff", sv_api_session_diff },
        { "GET", "/api/v1/sessions/{id}/artifacts", sv_api_session_artifacts },
        { "GET", "/api/v1/sessions/{id}/stats", sv_api_session_stats },
        { "GET", "/api/v1/sessions/{id}/previews", sv_api_previews_get },
        { "POST", "/api/v1/sessions/{id}/previews", sv_api_previews_post },
        { "DELETE", "/api/v1/sessions/{id}/previews/{preview_id}", sv_api_preview_delete },
        { "GET", "/api/v1/sessions/{id}/prompts", sv_api_session_prompts },
        { "POST", "/api/v1/sessions/{id}/prompts", r_prompts_post },
        { "DELETE", "/api/v1/sessions/{id}/prompts/{prompt_id}", sv_api_prompt_cancel },
        { "POST", "/api/v1/sessions/{id}/interrupt", r_interrupt },
        { "POST", "/api/v1/sessions/{id}/stop", r_stop },
        { "POST", "/api/v1/sessions/{id}/pause", r_pause },
        { "POST", "/api/v1/sessions/{id}/resume", r_resume },
        { "POST", "/api/v1/sessions/{id}/complete", r_complete },
        { "POST", "/api/v1/sessions/{id}/archive", sv_api_session_archive },
        /* api_secrets.c: values are write-only */
        { "GET", "/api/v1/secrets", sv_api_secrets_list },
        { "PUT", "/api/v1/secrets/{name}", sv_api_secret_put },
        { "DELETE", "/api/v1/secrets/{name}", sv_api_secret_delete },
        { "GET", "/api/v1/repos/{repo_id}/secrets", sv_api_secrets_list },
        { "PUT", "/api/v1/repos/{repo_id}/secrets/{name}", sv_api_secret_put },
        { "DELETE", "/api/v1/repos/{repo_id}/secrets/{name}", sv_api_secret_delete },
        { "POST", "/api/v1/sessions/{id}/push", sv_api_session_push }, /* push.c */
        { "POST", "/api/v1/sessions/{id}/pr", sv_api_session_pr },     /* pr.c */
        { "GET", "/api/v1/repos/{repo_id}/settings", sv_api_repo_settings_get }, /* repo_settings.c */
        { "PATCH", "/api/v1/repos/{repo_id}/settings", sv_api_repo_settings_patch },
        /* hooks.c: no token; each verifies its sender's signature (auth.c lets exactly these in) */
        { "POST", "/api/v1/hooks/github", sv_api_hook_github },
        { "POST", "/api/v1/hooks/slack", sv_api_hook_slack },
        { "POST", "/api/v1/hooks/linear", sv_api_hook_linear }, /* hooks_linear.c */
        /* a token of scope "hook" may call this one route (auth.c): POST /api/v1/sessions' body and answer */
        { "POST", SV_HOOK_GENERIC_PATH, r_sessions_post },
        /* api_notify.c: outgoing notifications */
        { "GET", "/api/v1/notifications/endpoints", sv_api_notify_endpoints_get },
        { "POST", "/api/v1/notifications/endpoints", sv_api_notify_endpoint_post },
        { "DELETE", "/api/v1/notifications/endpoints/{endpoint_id}", sv_api_notify_endpoint_delete },
        { "GET", "/api/v1/notifications/deliveries", sv_api_notify_deliveries },
};

const sv_route *sv_api_routes(size_t *n) {
        *n = ARRAY_SIZE(routes);
        return routes;
}

/* Match `path` against `pattern` segment by segment; placeholders take one non-empty segment. */
static bool route_match(const char *pattern, const char *path, sv_route_args *a) {
        *a = (sv_route_args){ 0 };
        while (*pattern && *path) {
                if (*pattern != '/' || *path != '/')
                        return false;
                pattern++, path++;
                size_t pl = strcspn(pattern, "/"), sl = strcspn(path, "/");
                if (pattern[0] == '{') {
                        char *dst = !strncmp(pattern, "{prompt_id}", pl) || !strncmp(pattern, "{preview_id}", pl) ? a->sub
                                    : !strncmp(pattern, "{name}", pl)                                             ? a->name
                                                                                                                  : a->id;
                        if (sl == 0 || sl >= (dst == a->name ? sizeof a->name : sizeof a->id))
                                return false;
                        memcpy(dst, path, sl);
                        dst[sl] = '\0';
                } else if (pl != sl || strncmp(pattern, path, pl)) {
                        return false;
                }
                pattern += pl, path += sl;
        }
        return !*pattern && !*path;
}

void sv_api_dispatch(sv_req *r) {
        bool path_known = false;
        for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
                sv_route_args a;
                if (!route_match(routes[i].pattern, r->path, &a))
                        continue;
                path_known = true;
                if (strcmp(routes[i].method, r->method))
                        continue;
                /* Ids are checked once here: handlers get well-formed ones or none at all. */
                bool session = strstr(routes[i].pattern, "{id}") != NULL;
                bool repo = strstr(routes[i].pattern, "{repo_id}") != NULL;
                if (session && !sv_id_valid(a.id, SV_ID_PREFIX_SESSION))
                        return sv_req_reply_error(r, 404, "not_found", "no such session");
                if (repo && !sv_id_valid(a.id, SV_ID_PREFIX_REPO))
                        return sv_req_reply_error(r, 404, "not_found", "no such repository");
                return routes[i].fn(r, &a);
        }
        if (path_known)
                return sv_req_reply_error(r, 405, "method_not_allowed", "%s not allowed here", r->method);
        sv_req_reply_error(r, 404, "not_found", "no route for %s %s", r->method, r->path);
}
