/* nightshift supervisor — the vault's API routes and its place in the server: opening it at
 * start, keeping the redactor in step with it, and filtering log lines through the redactor.
 *
 *   PUT    /api/v1/secrets/{name}                 {"value": "..."} → 201 created | 200 replaced
 *   GET    /api/v1/secrets                        names and metadata, never values
 *   DELETE /api/v1/secrets/{name}                 204 | 404
 * and the same under /api/v1/repos/{repo_id}/secrets for a repository's own scope. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"
#include "common/jsonv.h"
#include "common/log.h"
#include "redact.h"
#include "serve.h"
#include "vault.h"

static void log_filter(void *ctx, char *line, size_t cap) {
        sv_redact_inplace(ctx, line, cap);
}

int sv_secrets_start(sv_server *s, ns_error *err) {
        int r = sv_vault_open(s->cfg.data_dir, NULL, &s->vault, err);
        if (r < 0)
                return r;
        if ((r = sv_redactor_new(&s->redact, err)) < 0)
                return r;
        if ((r = sv_secrets_refresh(s, err)) < 0)
                return r;
        ns_log_set_filter(log_filter, s->redact);
        return 0;
}

void sv_secrets_stop(sv_server *s) {
        ns_log_set_filter(NULL, NULL);
        sv_redactor_free(s->redact);
        s->redact = NULL;
        sv_vault_free(s->vault);
        s->vault = NULL;
}

int sv_secrets_refresh(sv_server *s, ns_error *err) {
        sv_secret *v = NULL;
        size_t n = 0;
        int r = sv_vault_all(s->vault, s->db, &v, &n, err);
        if (r < 0)
                return r;
        r = sv_redactor_set(s->redact, v, n, err);
        sv_secrets_free(v, n);
        return r;
}

/* The scope of the request: NULL (global) or its repository, after checking that it exists.
 * Returns -1 after replying. */
static int scope_of(sv_req *r, const sv_route_args *a, const char **repo_id) {
        *repo_id = NULL;
        if (!a->id[0])
                return 0;
        db_repo row = { 0 };
        ns_error e;
        int rc = db_repo_get(r->srv->db, a->id, &row, &e);
        db_repo_clear(&row);
        if (rc < 0) {
                sv_api_repo_lookup_failed(r, rc, &e);
                return -1;
        }
        *repo_id = a->id;
        return 0;
}

static bool name_ok(sv_req *r, const sv_route_args *a) {
        if (sv_secret_name_valid(a->name))
                return true;
        sv_req_reply_error(r, 400, "invalid_name",
                           "a secret name is 1..%d of A-Z a-z 0-9 _, not starting with a digit", SV_SECRET_NAME_MAX);
        return false;
}

void sv_api_secrets_list(sv_req *r, const sv_route_args *a) {
        const char *repo_id;
        if (scope_of(r, a, &repo_id) < 0)
                return;
        cJSON *list = NULL;
        ns_error e;
        if (sv_vault_list(r->srv->db, repo_id, &list, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "secrets", list);
        sv_req_reply_json(r, 200, o);
}

void sv_api_secret_put(sv_req *r, const sv_route_args *a) {
        const char *repo_id;
        if (!name_ok(r, a) || scope_of(r, a, &repo_id) < 0)
                return;
        /* The request body holds the value: wiped from the request and the parsed tree after use. */
        cJSON *j = sv_api_parse_body(r);
        int status = 0;
        ns_error e = { 0 };
        if (j) {
                static const char *const keys[] = { "value", NULL };
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "value");
                bool created = false;
                int rc;
                if (jv_only_keys(j, keys, &e) < 0)
                        status = 400;
                else if (!cJSON_IsString(v))
                        status = 400, ns_err(&e, EINVAL, "'value' must be a string");
                else if (strlen(v->valuestring) > SV_SECRET_VALUE_MAX)
                        status = 413, ns_err(&e, E2BIG, "a secret's value is at most %d bytes", SV_SECRET_VALUE_MAX);
                else if ((rc = sv_vault_put(r->srv->vault, r->srv->db, repo_id, a->name, v->valuestring,
                                            strlen(v->valuestring), &created, &e)) < 0)
                        status = rc == -EINVAL || rc == -E2BIG ? 400 : rc == -ENOENT ? 404 : 500;
                else
                        status = created ? 201 : 200;
                if (cJSON_IsString(v))
                        sodium_memzero(v->valuestring, strlen(v->valuestring));
                cJSON_Delete(j);
        }
        if (r->body)
                sodium_memzero(r->body, r->body_len);
        if (!j)
                return; /* parse_body replied */
        if (status >= 400)
                return sv_req_reply_error(r, status, status == 413 ? "too_large" : status == 404 ? "not_found" : "invalid",
                                          "%s", e.msg);
        /* The redactor learns the new value before any session can be given it. */
        if (sv_secrets_refresh(r->srv, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", a->name);
        cJSON_AddStringToObject(o, "scope", repo_id ? "repo" : "global");
        if (repo_id)
                cJSON_AddStringToObject(o, "repo", repo_id);
        sv_req_reply_json(r, status, o);
}

void sv_api_secret_delete(sv_req *r, const sv_route_args *a) {
        const char *repo_id;
        if (!name_ok(r, a) || scope_of(r, a, &repo_id) < 0)
                return;
        ns_error e;
        int rc = sv_vault_delete(r->srv->db, repo_id, a->name, &e);
        if (rc < 0)
                return sv_req_reply_error(r, rc == -ENOENT ? 404 : 500, rc == -ENOENT ? "not_found" : "internal", "%s",
                                          e.msg);
        /* The redactor follows the vault: output made after this no longer hides the old value
         * (what was stored before stays redacted).  A rotated or deleted value that is still
         * valid elsewhere should be revoked there. */
        if (sv_secrets_refresh(r->srv, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        sv_req_reply_json(r, 204, NULL);
}
