/* nightshift supervisor — the notifications' API routes (see notify.h).
 *
 *   POST   /api/v1/notifications/endpoints  {url, format?: "json"|"slack", events?: [...], repo?, secret?}
 *                                           → 201 the endpoint | 400 (nothing stored)
 *   GET    /api/v1/notifications/endpoints  {"endpoints": [...]}
 *   DELETE /api/v1/notifications/endpoints/{endpoint_id}   204 | 404
 *   GET    /api/v1/notifications/deliveries[?session=ID&limit=N]   the delivery log, newest first */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"
#include "common/jsonv.h"
#include "db_int.h"
#include "notify.h"
#include "serve.h"
#include "vault.h"

#define ENDPOINT_ID_PREFIX 'n'
static const char *const EVENTS[] = { "completed", "failed", "waiting" };

static cJSON *endpoint_json(sqlite3_stmt *st) {
        /* columns: id, url, format, events, repo_id, secret, created_at */
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", (const char *) sqlite3_column_text(st, 0));
        cJSON_AddStringToObject(o, "url", (const char *) sqlite3_column_text(st, 1));
        cJSON_AddStringToObject(o, "format", (const char *) sqlite3_column_text(st, 2));
        cJSON *ev = cJSON_AddArrayToObject(o, "events");
        const char *list = (const char *) sqlite3_column_text(st, 3);
        for (const char *p = list; p && *p;) {
                size_t n = strcspn(p, ",");
                char one[16];
                snprintf(one, sizeof one, "%.*s", (int) n, p);
                cJSON_AddItemToArray(ev, cJSON_CreateString(one));
                p += n + (p[n] == ',');
        }
        sv_api_add_str_or_null(o, "repo", (const char *) sqlite3_column_text(st, 4));
        sv_api_add_str_or_null(o, "secret", (const char *) sqlite3_column_text(st, 5));
        sv_api_add_time(o, "created_at", sqlite3_column_int64(st, 6));
        return o;
}

#define ENDPOINT_COLS "id, url, format, events, repo_id, secret, created_at"

void sv_api_notify_endpoints_get(sv_req *r, const sv_route_args *a) {
        (void) a;
        ns_error e;
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        if (db_stmt_prepare(r->srv->db, "SELECT " ENDPOINT_COLS " FROM notify_endpoints ORDER BY created_at, id", &st, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        cJSON *o = cJSON_CreateObject();
        cJSON *list = cJSON_AddArrayToObject(o, "endpoints");
        while (sqlite3_step(st) == SQLITE_ROW)
                cJSON_AddItemToArray(list, endpoint_json(st));
        sv_req_reply_json(r, 200, o);
}

/* Validate the body into its parts; -1 after replying 400/404. */
static int endpoint_parse(sv_req *r, const cJSON *j, const char **url, const char **format, char *events, size_t ev_cap,
                          char repo_id[SV_ID_LEN + 1], const char **secret) {
        static const char *const keys[] = { "url", "format", "events", "repo", "secret", NULL };
        ns_error e = { 0 };
        const char *repo = NULL;
        repo_id[0] = '\0';
        *format = NULL;
        if (jv_only_keys(j, keys, &e) < 0 || jv_str(j, "url", true, SV_NOTIFY_URL_MAX, NULL, url, &e) < 0 ||
            jv_str(j, "format", false, 8, NULL, format, &e) < 0 || jv_str(j, "repo", false, 255, NULL, &repo, &e) < 0 ||
            jv_str(j, "secret", false, SV_SECRET_NAME_MAX, NULL, secret, &e) < 0)
                goto bad;
        if (!sv_notify_url_ok(*url, &e))
                goto bad;
        if (!*format)
                *format = "json";
        if (strcmp(*format, "json") && strcmp(*format, "slack")) {
                ns_err(&e, EINVAL, "format: \"json\" or \"slack\"");
                goto bad;
        }
        if (*secret && !sv_secret_name_valid(*secret)) {
                ns_err(&e, EINVAL, "secret: the name of a vault secret");
                goto bad;
        }
        if (*secret && !strcmp(*format, "slack")) {
                ns_err(&e, EINVAL, "secret: only the json format is signed");
                goto bad;
        }
        events[0] = '\0';
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(j, "events");
        if (!ev) {
                snprintf(events, ev_cap, "completed,failed,waiting");
        } else {
                bool seen[ARRAY_SIZE(EVENTS)] = { false };
                const cJSON *v;
                if (!cJSON_IsArray(ev) || !cJSON_GetArraySize(ev)) {
                        ns_err(&e, EINVAL, "events: a non-empty array of \"completed\", \"failed\", \"waiting\"");
                        goto bad;
                }
                cJSON_ArrayForEach(v, ev) {
                        size_t k = 0;
                        while (k < ARRAY_SIZE(EVENTS) && !(cJSON_IsString(v) && !strcmp(v->valuestring, EVENTS[k])))
                                k++;
                        if (k == ARRAY_SIZE(EVENTS) || seen[k]) {
                                ns_err(&e, EINVAL, "events: each of \"completed\", \"failed\", \"waiting\" at most once");
                                goto bad;
                        }
                        seen[k] = true;
                }
                for (size_t k = 0; k < ARRAY_SIZE(EVENTS); k++)
                        if (seen[k])
                                snprintf(events + strlen(events), ev_cap - strlen(events), "%s%s", events[0] ? "," : "", EVENTS[k]);
        }
        if (repo) {
                db_repo row = { 0 };
                int rc = sv_id_valid(repo, SV_ID_PREFIX_REPO) ? db_repo_get(r->srv->db, repo, &row, &e)
                                                              : db_repo_get_by_name(r->srv->db, repo, &row, &e);
                if (rc == 0)
                        snprintf(repo_id, SV_ID_LEN + 1, "%s", row.id);
                db_repo_clear(&row);
                if (rc < 0) {
                        sv_api_repo_lookup_failed(r, rc, &e);
                        return -1;
                }
        }
        return 0;
bad:
        sv_req_reply_error(r, 400, "invalid", "%s", e.msg);
        return -1;
}

void sv_api_notify_endpoint_post(sv_req *r, const sv_route_args *a) {
        (void) a;
        _cleanup_json_ cJSON *j = sv_api_parse_body(r);
        if (!j)
                return;
        const char *url, *format, *secret = NULL;
        char events[64], repo_id[SV_ID_LEN + 1], id[SV_ID_LEN + 1];
        if (endpoint_parse(r, j, &url, &format, events, sizeof events, repo_id, &secret) < 0)
                return;
        if (!strcmp(format, "json") && !secret)
                secret = SV_NOTIFY_DEFAULT_SECRET;
        db *d = r->srv->db;
        ns_error e;
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *cnt = NULL, *ins = NULL, *get = NULL;
        if (db_stmt_prepare(d, "SELECT count(*) FROM notify_endpoints", &cnt, &e) < 0 || sqlite3_step(cnt) != SQLITE_ROW)
                return sv_req_reply_error(r, 500, "internal", "counting endpoints failed");
        if (sqlite3_column_int(cnt, 0) >= SV_NOTIFY_ENDPOINTS_MAX)
                return sv_req_reply_error(r, 409, "too_many", "at most %d notification endpoints", SV_NOTIFY_ENDPOINTS_MAX);
        if (sv_id_new(ENDPOINT_ID_PREFIX, id, &e) < 0 ||
            db_stmt_prepare(d,
                            "INSERT INTO notify_endpoints (id, url, format, events, repo_id, secret, created_at) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            &ins, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        db_bind_text(ins, 1, id);
        db_bind_text(ins, 2, url);
        db_bind_text(ins, 3, format);
        db_bind_text(ins, 4, events);
        db_bind_text(ins, 5, repo_id[0] ? repo_id : NULL);
        db_bind_text(ins, 6, secret);
        sqlite3_bind_int64(ins, 7, db_now_ms());
        if (db_stmt_run(d, ins, &e, "add a notification endpoint") < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        if (db_stmt_prepare(d, "SELECT " ENDPOINT_COLS " FROM notify_endpoints WHERE id = ?1", &get, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        db_bind_text(get, 1, id);
        if (sqlite3_step(get) != SQLITE_ROW)
                return sv_req_reply_error(r, 500, "internal", "the endpoint vanished");
        sv_req_reply_json(r, 201, endpoint_json(get));
}

void sv_api_notify_endpoint_delete(sv_req *r, const sv_route_args *a) {
        if (!sv_id_valid(a->id, ENDPOINT_ID_PREFIX))
                return sv_req_reply_error(r, 404, "not_found", "no such endpoint");
        db *d = r->srv->db;
        ns_error e;
        if (db_begin(d, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *del = NULL;
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *cancel = NULL;
        /* Deleting an endpoint is how an operator stops traffic to a URL (wrong, retired or no
         * longer trusted): its deliveries still pending are given up with it, in the same
         * transaction.  An attempt already on the wire finishes; notify.c records it only if it
         * succeeded (a failure no longer schedules a retry). */
        if (db_stmt_prepare(d, "DELETE FROM notify_endpoints WHERE id = ?1", &del, &e) < 0 ||
            db_stmt_prepare(d,
                            "UPDATE notifications SET status = 'failed', last_error = 'the endpoint was deleted', "
                            "updated_at = ?2, finished_at = ?2 WHERE endpoint_id = ?1 AND status = 'pending'",
                            &cancel, &e) < 0)
                goto fail;
        db_bind_text(del, 1, a->id);
        if (db_stmt_run(d, del, &e, "delete a notification endpoint") < 0)
                goto fail;
        if (sqlite3_changes(d->conn) == 0) {
                db_rollback(d);
                return sv_req_reply_error(r, 404, "not_found", "no such endpoint");
        }
        db_bind_text(cancel, 1, a->id);
        sqlite3_bind_int64(cancel, 2, db_now_ms());
        if (db_stmt_run(d, cancel, &e, "give up an endpoint's pending notifications") < 0 || db_commit(d, &e) < 0)
                goto fail;
        return sv_req_reply_json(r, 204, NULL);
fail:
        db_rollback(d);
        sv_req_reply_error(r, 500, "internal", "%s", e.msg);
}

void sv_api_notify_deliveries(sv_req *r, const sv_route_args *a) {
        (void) a;
        char sid[64] = "", lim[16] = "";
        long limit = 100;
        if (sv_req_query(r, "limit", lim, sizeof lim)) {
                char *end;
                limit = strtol(lim, &end, 10);
                if (*end || limit < 1 || limit > 1000)
                        return sv_req_reply_error(r, 400, "invalid", "limit: 1..1000");
        }
        if (sv_req_query(r, "session", sid, sizeof sid) && !sv_id_valid(sid, SV_ID_PREFIX_SESSION))
                return sv_req_reply_error(r, 400, "invalid", "session: a session id");
        ns_error e;
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        if (db_stmt_prepare(r->srv->db,
                            "SELECT id, endpoint_id, session_id, event, url, format, status, attempts, last_code, last_error, "
                            "created_at, updated_at, finished_at, next_at FROM notifications "
                            "WHERE ?1 IS NULL OR session_id = ?1 ORDER BY id DESC LIMIT ?2",
                            &st, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        db_bind_text(st, 1, sid[0] ? sid : NULL);
        sqlite3_bind_int64(st, 2, limit);
        cJSON *o = cJSON_CreateObject();
        cJSON *list = cJSON_AddArrayToObject(o, "deliveries");
        while (sqlite3_step(st) == SQLITE_ROW) {
                cJSON *d = cJSON_CreateObject();
                const char *status = (const char *) sqlite3_column_text(st, 6);
                cJSON_AddNumberToObject(d, "id", (double) sqlite3_column_int64(st, 0));
                sv_api_add_str_or_null(d, "endpoint_id", (const char *) sqlite3_column_text(st, 1));
                sv_api_add_str_or_null(d, "session_id", (const char *) sqlite3_column_text(st, 2));
                sv_api_add_str_or_null(d, "event", (const char *) sqlite3_column_text(st, 3));
                sv_api_add_str_or_null(d, "url", (const char *) sqlite3_column_text(st, 4));
                sv_api_add_str_or_null(d, "format", (const char *) sqlite3_column_text(st, 5));
                sv_api_add_str_or_null(d, "status", status);
                cJSON_AddNumberToObject(d, "attempts", sqlite3_column_int(st, 7));
                if (sqlite3_column_type(st, 8) == SQLITE_NULL)
                        cJSON_AddNullToObject(d, "last_code");
                else
                        cJSON_AddNumberToObject(d, "last_code", sqlite3_column_int(st, 8));
                sv_api_add_str_or_null(d, "last_error", (const char *) sqlite3_column_text(st, 9));
                sv_api_add_time(d, "created_at", sqlite3_column_int64(st, 10));
                sv_api_add_time(d, "updated_at", sqlite3_column_int64(st, 11));
                sv_api_add_time(d, "finished_at", sqlite3_column_int64(st, 12));
                sv_api_add_time(d, "next_attempt_at", status && !strcmp(status, "pending") ? sqlite3_column_int64(st, 13) : 0);
                cJSON_AddItemToArray(list, d);
        }
        sv_req_reply_json(r, 200, o);
}
