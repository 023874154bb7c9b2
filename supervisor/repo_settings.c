/* nightshift supervisor — per-repository settings (see repo_settings.h). */
#include "repo_settings.h"

#include <errno.h>
#include <git2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"
#include "common/jsonv.h"
#include "db.h"
#include "serve.h"

#define GH_NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./"

static void key_of(char *buf, size_t cap, const char *repo_id) {
        snprintf(buf, cap, "repo:%s", repo_id);
}

void sv_repo_settings_clear(sv_repo_settings *s) {
        free(s->github_repo);
        free(s->pr_base);
        free(s->push_url);
        *s = (sv_repo_settings){ 0 };
}

void sv_repo_settings_forget(db *d, const char *repo_id) {
        char key[64];
        ns_error e;
        key_of(key, sizeof key, repo_id);
        db_setting_delete(d, key, &e);
}

static int dup_str(const cJSON *o, const char *k, char **out) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
        if (!cJSON_IsString(v))
                return 0;
        return (*out = strdup(v->valuestring)) ? 0 : -ENOMEM;
}

int sv_repo_settings_get(db *d, const char *repo_id, sv_repo_settings *out, ns_error *err) {
        *out = (sv_repo_settings){ .on_complete = "none", .auto_publish = -1 };
        char key[64];
        key_of(key, sizeof key, repo_id);
        _cleanup_free_ char *text = NULL;
        int r = db_setting_get(d, key, &text, err);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        _cleanup_json_ cJSON *o = cJSON_Parse(text);
        if (!cJSON_IsObject(o))
                return 0; /* written only by this file: cannot happen, and defaults are safe */
        const cJSON *oc = cJSON_GetObjectItemCaseSensitive(o, "on_complete");
        if (cJSON_IsString(oc) && strlen(oc->valuestring) < sizeof out->on_complete)
                snprintf(out->on_complete, sizeof out->on_complete, "%s", oc->valuestring);
        out->pr_draft = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "pr_draft"));
        const cJSON *ap = cJSON_GetObjectItemCaseSensitive(o, "auto_publish");
        out->auto_publish = cJSON_IsBool(ap) ? cJSON_IsTrue(ap) : -1;
        if (dup_str(o, "github_repo", &out->github_repo) < 0 || dup_str(o, "pr_base", &out->pr_base) < 0 ||
            dup_str(o, "push_url", &out->push_url) < 0) {
                sv_repo_settings_clear(out);
                return ns_err(err, ENOMEM, "out of memory");
        }
        return 0;
}

static cJSON *settings_json(const sv_repo_settings *s) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "on_complete", s->on_complete);
        cJSON_AddBoolToObject(o, "pr_draft", s->pr_draft);
        sv_api_add_str_or_null(o, "github_repo", s->github_repo);
        sv_api_add_str_or_null(o, "pr_base", s->pr_base);
        sv_api_add_str_or_null(o, "push_url", s->push_url);
        if (s->auto_publish < 0)
                cJSON_AddNullToObject(o, "auto_publish");
        else
                cJSON_AddBoolToObject(o, "auto_publish", s->auto_publish);
        return o;
}

/* The repository exists (else a 404 was sent). */
static bool repo_exists(sv_req *r, const char *id) {
        db_repo repo = { 0 };
        ns_error e;
        int rc = db_repo_get(r->srv->db, id, &repo, &e);
        db_repo_clear(&repo);
        if (rc < 0)
                sv_req_reply_error(r, rc == -ENOENT ? 404 : 500, rc == -ENOENT ? "not_found" : "internal", "%s", e.msg);
        return rc == 0;
}

void sv_api_repo_settings_get(sv_req *r, const sv_route_args *a) {
        if (!repo_exists(r, a->id))
                return;
        sv_repo_settings s;
        ns_error e;
        if (sv_repo_settings_get(r->srv->db, a->id, &s, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        cJSON *o = settings_json(&s);
        sv_repo_settings_clear(&s);
        sv_req_reply_json(r, 200, o);
}

/* Replace *slot with member k of j: a valid string sets, null clears, absent keeps. */
static int take_str(const cJSON *j, const char *k, size_t max, const char *charset, char **slot, ns_error *e) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
        if (!v)
                return 0;
        if (cJSON_IsNull(v)) {
                free(*slot);
                *slot = NULL;
                return 0;
        }
        const char *s = NULL;
        int r = jv_str(j, k, true, max, charset, &s, e);
        if (r < 0)
                return r;
        char *c = strdup(s);
        if (!c)
                return ns_err(e, ENOMEM, "out of memory");
        free(*slot);
        *slot = c;
        return 0;
}

void sv_api_repo_settings_patch(sv_req *r, const sv_route_args *a) {
        if (!repo_exists(r, a->id))
                return;
        _cleanup_json_ cJSON *j = sv_api_parse_body(r);
        if (!j)
                return;
        static const char *const keys[] = { "on_complete", "pr_draft", "github_repo", "pr_base", "push_url", "auto_publish", NULL };
        sv_repo_settings s;
        ns_error e;
        if (sv_repo_settings_get(r->srv->db, a->id, &s, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        const char *oc = NULL;
        const cJSON *draft = cJSON_GetObjectItemCaseSensitive(j, "pr_draft");
        int rc = jv_only_keys(j, keys, &e);
        if (rc == 0 && cJSON_GetObjectItemCaseSensitive(j, "on_complete") &&
            !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "on_complete"))) {
                rc = jv_str(j, "on_complete", true, 4, NULL, &oc, &e);
                if (rc == 0 && strcmp(oc, "none") && strcmp(oc, "push") && strcmp(oc, "pr"))
                        rc = ns_err(&e, EINVAL, "on_complete: one of none, push, pr");
                if (rc == 0)
                        snprintf(s.on_complete, sizeof s.on_complete, "%s", oc);
        } else if (rc == 0 && cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "on_complete"))) {
                snprintf(s.on_complete, sizeof s.on_complete, "none");
        }
        if (rc == 0 && draft && !cJSON_IsNull(draft))
                rc = jv_bool(j, "pr_draft", false, &s.pr_draft, &e);
        else if (rc == 0 && draft)
                s.pr_draft = false;
        const cJSON *ap = cJSON_GetObjectItemCaseSensitive(j, "auto_publish");
        if (rc == 0 && ap && cJSON_IsNull(ap))
                s.auto_publish = -1;
        else if (rc == 0 && ap) {
                bool on = false;
                rc = jv_bool(j, "auto_publish", false, &on, &e);
                s.auto_publish = on;
        }
        if (rc == 0)
                rc = take_str(j, "github_repo", 200, GH_NAME_CHARS, &s.github_repo, &e);
        if (rc == 0 && s.github_repo) {
                const char *slash = strchr(s.github_repo, '/');
                if (!slash || slash == s.github_repo || !slash[1] || strchr(slash + 1, '/') || strstr(s.github_repo, ".."))
                        rc = ns_err(&e, EINVAL, "github_repo: OWNER/NAME");
        }
        if (rc == 0)
                rc = take_str(j, "pr_base", 200, NULL, &s.pr_base, &e);
        if (rc == 0 && s.pr_base) {
                char ref[256];
                snprintf(ref, sizeof ref, "refs/heads/%s", s.pr_base);
                if (!git_reference_is_valid_name(ref))
                        rc = ns_err(&e, EINVAL, "pr_base: not a valid branch name");
        }
        if (rc == 0)
                rc = take_str(j, "push_url", 2048, NULL, &s.push_url, &e);
        if (rc == 0 && s.push_url && strncmp(s.push_url, "ssh://", 6) && strncmp(s.push_url, "https://", 8) &&
            strncmp(s.push_url, "http://", 7) && strncmp(s.push_url, "file://", 7) && s.push_url[0] != '/')
                rc = ns_err(&e, EINVAL, "push_url: an ssh://, https://, http://, file:// URL or an absolute path");
        if (rc < 0) {
                sv_repo_settings_clear(&s);
                return sv_api_bad(r, &e);
        }
        cJSON *o = settings_json(&s);
        sv_repo_settings_clear(&s);
        _cleanup_free_ char *text = cJSON_PrintUnformatted(o);
        char key[64];
        key_of(key, sizeof key, a->id);
        if (!text || db_setting_set(r->srv->db, key, text, &e) < 0) {
                cJSON_Delete(o);
                return sv_req_reply_error(r, 500, "internal", "%s", text ? e.msg : "out of memory");
        }
        sv_req_reply_json(r, 200, o);
}
