/* nightshift supervisor — the REST routes under /api/v1 (the part the session runner needs; the
 * HTTP API issue completes the list).  Every body is JSON, bounded (http.h), checked key by key
 * (unknown keys refused), and every error is {"error":{"code","message"}} with its status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/jsonv.h"
#include "http.h"
#include "ids.h"
#include "serve.h"

static void json_deletep(cJSON **j) {
        cJSON_Delete(*j);
}
#define _cleanup_json_ _cleanup_(json_deletep)

static void add_str_or_null(cJSON *o, const char *k, const char *v) {
        if (v)
                cJSON_AddStringToObject(o, k, v);
        else
                cJSON_AddNullToObject(o, k);
}

static void add_time(cJSON *o, const char *k, int64_t ms) {
        if (ms)
                cJSON_AddNumberToObject(o, k, (double) ms);
        else
                cJSON_AddNullToObject(o, k);
}

cJSON *sv_session_json(const db_session *s) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
                return NULL;
        cJSON_AddStringToObject(o, "id", s->id);
        cJSON_AddStringToObject(o, "repo", s->repo_id);
        add_str_or_null(o, "base", s->base_ref);
        add_str_or_null(o, "base_sha", s->base_sha);
        add_str_or_null(o, "branch", s->branch);
        add_str_or_null(o, "agent", s->agent);
        cJSON_AddStringToObject(o, "state", sv_state_name(s->state));
        add_str_or_null(o, "state_reason", s->state_reason);
        add_str_or_null(o, "title", s->title);
        cJSON_AddBoolToObject(o, "once", s->once);
        add_str_or_null(o, "model", s->model);
        add_str_or_null(o, "network", s->network);
        add_str_or_null(o, "sandbox", s->sandbox_id);
        add_str_or_null(o, "last_commit", s->last_commit_sha);
        add_time(o, "created_at", s->created_at);
        add_time(o, "updated_at", s->updated_at);
        add_time(o, "started_at", s->started_at);
        add_time(o, "ended_at", s->ended_at);
        return o;
}

/* An asynchronous reply (from a worker's job) into the waiting request. */
static void reply_cb(void *ctx, int status, cJSON *body, const char *code, const char *message) {
        sv_req *r = ctx;
        if (code)
                sv_req_reply_error(r, status, code, "%s", message ? message : code);
        else
                sv_req_reply_json(r, status, body);
}

static cJSON *parse_body(sv_req *r) {
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

static void bad(sv_req *r, const ns_error *e) {
        sv_req_reply_error(r, 400, "invalid", "%s", e->msg);
}

/* ---- repositories -------------------------------------------------------------------------- */

static void repos_post(sv_req *r) {
        _cleanup_json_ cJSON *j = parse_body(r);
        if (!j)
                return;
        static const char *const keys[] = { "url", "path", "name", NULL };
        const char *url = NULL, *path = NULL, *name = NULL;
        ns_error e;
        if (jv_only_keys(j, keys, &e) < 0 || jv_str(j, "url", false, 2048, NULL, &url, &e) < 0 ||
            jv_str(j, "path", false, 2048, NULL, &path, &e) < 0 ||
            jv_str(j, "name", false, 64, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", &name, &e) < 0)
                return bad(r, &e);
        if (!url == !path)
                return sv_req_reply_error(r, 400, "invalid", "give exactly one of 'url' and 'path'");
        sv_repo_register(r->srv, url ? url : path, name, reply_cb, r);
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
                add_str_or_null(it, "default_branch", v[i].default_branch);
                add_time(it, "created_at", v[i].created_at);
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
        _cleanup_json_ cJSON *j = parse_body(r);
        if (!j)
                return;
        static const char *const keys[] = { "repo",    "base",  "agent",  "prompt", "model", "title",
                                            "once",    "network", "limits", "env",   "connect", NULL };
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
                if (rc >= 0 && net && strcmp(net, "none"))
                        rc = ns_err(&e, EINVAL, "network '%s' is not available yet (only \"none\")", net);
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
                return bad(r, &e);
        }
        sv_session_create(r->srv, q, reply_cb, r);
}

static void sessions_get(sv_req *r) {
        char state[32], repo[64], limit[16];
        db_session_filter f = { .limit = 100 };
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
        db_session *v = NULL;
        size_t n = 0;
        ns_error e;
        if (db_session_list(r->srv->db, &f, &v, &n, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "sessions");
        for (size_t i = 0; i < n; i++)
                cJSON_AddItemToArray(a, sv_session_json(&v[i]));
        db_sessions_free(v, n);
        sv_req_reply_json(r, 200, o);
}

static void session_get(sv_req *r, const char *sid) {
        db_session row = { 0 };
        ns_error e;
        int rc = db_session_get(r->srv->db, sid, &row, &e);
        if (rc < 0)
                return sv_req_reply_error(r, rc == -ENOENT ? 404 : 500, rc == -ENOENT ? "not_found" : "internal", "%s",
                                          e.msg);
        sv_req_reply_json(r, 200, sv_session_json(&row));
        db_session_clear(&row);
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
        cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "events");
        for (size_t i = 0; i < n; i++) {
                cJSON *it = cJSON_CreateObject();
                cJSON_AddNumberToObject(it, "id", (double) v[i].id);
                cJSON_AddNumberToObject(it, "seq", (double) v[i].seq);
                cJSON_AddNumberToObject(it, "ts", (double) v[i].ts);
                cJSON_AddStringToObject(it, "type", v[i].type);
                cJSON *data = cJSON_Parse(v[i].data);
                cJSON_AddItemToObject(it, "data", data ? data : cJSON_CreateObject());
                cJSON_AddItemToArray(arr, it);
        }
        db_events_free(v, n);
        sv_req_reply_json(r, 200, o);
}

static void prompts_post(sv_req *r, const char *sid) {
        _cleanup_json_ cJSON *j = parse_body(r);
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
                return bad(r, &e);
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
                _cleanup_json_ cJSON *j = parse_body(r);
                static const char *const keys[] = { "force", NULL };
                if (!j)
                        return;
                if (jv_only_keys(j, keys, &e) < 0 || jv_bool(j, "force", false, &force, &e) < 0)
                        return bad(r, &e);
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

void sv_api_dispatch(sv_req *r) {
        const char *p = r->path;
        const char *m = r->method;
        if (!strcmp(p, "/api/v1/healthz") && !strcmp(m, "GET")) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "status", "ok");
                return sv_req_reply_json(r, 200, o);
        }
        if (!strcmp(p, "/api/v1/repos")) {
                if (!strcmp(m, "GET"))
                        return repos_get(r);
                if (!strcmp(m, "POST"))
                        return repos_post(r);
                return sv_req_reply_error(r, 405, "method_not_allowed", "%s not allowed here", m);
        }
        if (!strcmp(p, "/api/v1/tasks") && !strcmp(m, "POST"))
                return sessions_post(r, true);
        if (!strcmp(p, "/api/v1/sessions")) {
                if (!strcmp(m, "GET"))
                        return sessions_get(r);
                if (!strcmp(m, "POST"))
                        return sessions_post(r, false);
                return sv_req_reply_error(r, 405, "method_not_allowed", "%s not allowed here", m);
        }
        static const char pre[] = "/api/v1/sessions/";
        if (!strncmp(p, pre, sizeof pre - 1)) {
                char sid[SV_ID_LEN + 1];
                const char *rest = p + sizeof pre - 1;
                size_t n = strcspn(rest, "/");
                if (n != SV_ID_LEN)
                        return sv_req_reply_error(r, 404, "not_found", "no such session");
                memcpy(sid, rest, n);
                sid[n] = '\0';
                if (!sv_id_valid(sid, SV_ID_PREFIX_SESSION))
                        return sv_req_reply_error(r, 404, "not_found", "no such session");
                rest += n;
                if (!*rest) {
                        if (!strcmp(m, "GET"))
                                return session_get(r, sid);
                        if (!strcmp(m, "DELETE"))
                                return sv_session_delete(r->srv, sid, reply_cb, r);
                        return sv_req_reply_error(r, 405, "method_not_allowed", "%s not allowed here", m);
                }
                if (!strcmp(rest, "/events") && !strcmp(m, "GET"))
                        return events_get(r, sid);
                if (!strcmp(rest, "/prompts") && !strcmp(m, "POST"))
                        return prompts_post(r, sid);
                if (rest[0] == '/' && !strchr(rest + 1, '/') && !strcmp(m, "POST"))
                        return session_action(r, sid, rest + 1);
        }
        sv_req_reply_error(r, 404, "not_found", "no route for %s %s", m, p);
}
