/* nightshift supervisor — pull requests, completion policy and GitHub comment-back (see pr.h).
 *
 * Every GitHub call runs on a worker (github_api.c, bounded libcurl); the loop only prepares a job
 * from the database and stores its results (events, the artifact) and the reply. */
#include "pr.h"

#include <errno.h>
#include <git2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"
#include "common/jsonv.h"
#include "common/log.h"
#include "github_api.h"
#include "gitx.h"
#include "push.h"
#include "redact.h"
#include "repo_settings.h"
#include "serve.h"
#include "vault.h"
#include "workq.h"
#include "ws.h"

#define PR_COMMITS_LISTED 50

typedef struct pr_job {
        sv_job base;
        sv_req *req;   /* NULL: started by the completion policy */
        sv_push push;
        bool open_pr;  /* false: push only (on_complete = push) */
        bool automatic;
        bool draft;
        char *title_in, *body_in; /* the request's, or NULL */
        char *session_title, *prompt, *gh_repo, *pr_base, *api_base;
        /* results */
        int status;
        const char *code;
        ns_error err;
        bool skipped, pushed, existing;
        char *pr_url;
        int64_t pr_number;
} pr_job;

static void pr_job_free(pr_job *j) {
        sv_push_clear(&j->push);
        free(j->title_in);
        free(j->body_in);
        free(j->session_title);
        free(j->prompt);
        free(j->gh_repo);
        free(j->pr_base);
        free(j->api_base);
        free(j->pr_url);
        free(j);
}

/* Store an event (redacted) on the loop. */
static void store_event(sv_server *s, const char *sid, const char *type, cJSON *o) {
        _cleanup_free_ char *json = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        char *red = NULL;
        ns_error e;
        if (!json)
                return;
        int rr = s->redact ? sv_redact_json(s->redact, json, &red) : 0;
        if (rr < 0)
                return;
        if (db_event_append(s->db, sid, type, red ? red : json, NULL, NULL, &e) == 0)
                sv_ws_notify(s);
        else
                log_warn("session %s: storing a %s event: %s", sid, type, e.msg);
        free(red);
}

/* ---- the worker's part ------------------------------------------------------------------------- */

static int fail(pr_job *j, int status, const char *code) {
        j->status = status, j->code = code;
        return -1;
}

/* "- abc1234 subject" lines of base..tip (at most PR_COMMITS_LISTED), appended to *out. */
static void commit_summary(const char *mirror, const char *branch, const char *base_sha, char **out) {
        _cleanup_(git_repository_freep) git_repository *repo = NULL;
        _cleanup_(git_revwalk_freep) git_revwalk *w = NULL;
        ns_error e;
        char ref[300];
        git_oid tip, base, oid;
        snprintf(ref, sizeof ref, "refs/heads/%s", branch);
        if (gitx_open_exact(&repo, mirror, &e) < 0 || git_reference_name_to_id(&tip, repo, ref) < 0 ||
            git_oid_fromstr(&base, base_sha) < 0 || git_revwalk_new(&w, repo) < 0 || git_revwalk_push(w, &tip) < 0 ||
            git_revwalk_hide(w, &base) < 0)
                return;
        int n = 0;
        while (git_revwalk_next(&oid, w) == 0) {
                if (++n > PR_COMMITS_LISTED) {
                        char *s;
                        if (asprintf(&s, "%s- …\n", *out) >= 0)
                                free(*out), *out = s;
                        break;
                }
                _cleanup_(git_commit_freep) git_commit *c = NULL;
                if (git_commit_lookup(&c, repo, &oid) < 0)
                        break;
                const char *sum = git_commit_summary(c);
                char hex[8], *s;
                git_oid_tostr(hex, sizeof hex, &oid);
                if (asprintf(&s, "%s- %s %.200s\n", *out, hex, sum ? sum : "") >= 0)
                        free(*out), *out = s;
        }
}

/* True when the session's branch in the mirror has commits beyond its base. */
static bool has_new_commits(const sv_push *p) {
        _cleanup_(git_repository_freep) git_repository *repo = NULL;
        ns_error e;
        char ref[300];
        git_oid tip, base;
        snprintf(ref, sizeof ref, "refs/heads/%s", p->branch);
        return gitx_open_exact(&repo, p->mirror_path, &e) == 0 && git_reference_name_to_id(&tip, repo, ref) == 0 &&
               git_oid_fromstr(&base, p->base_sha) == 0 && !git_oid_equal(&tip, &base);
}

/* A redacted copy of s (the redactor is safe from any thread: push.c's gate uses it too). */
static char *redacted(sv_server *srv, const char *s) {
        char *red = NULL;
        if (srv->redact && sv_redact_text(srv->redact, s, strlen(s), &red, NULL) > 0)
                return red;
        return strdup(s);
}

/* GitHub's own message of an error answer, or "". */
static void gh_message(const sv_gh_resp *r, char *buf, size_t cap) {
        _cleanup_json_ cJSON *o = cJSON_Parse(r->body ? r->body : "");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "message");
        const cJSON *e0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "errors"), 0);
        const cJSON *em = cJSON_GetObjectItemCaseSensitive(e0, "message");
        snprintf(buf, cap, "%.200s%s%.200s", cJSON_IsString(m) ? m->valuestring : "",
                 cJSON_IsString(em) ? ": " : "", cJSON_IsString(em) ? em->valuestring : "");
}

/* html_url and number of a pull request object. */
static bool take_pr(pr_job *j, const cJSON *pr) {
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(pr, "html_url");
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(pr, "number");
        if (!cJSON_IsString(u) || strncmp(u->valuestring, "http", 4) || strlen(u->valuestring) > 2048 || !cJSON_IsNumber(n))
                return false;
        free(j->pr_url);
        j->pr_url = strdup(u->valuestring);
        j->pr_number = (int64_t) n->valuedouble;
        return j->pr_url != NULL;
}

/* The open pull request whose head is owner:branch, after a 422. */
static int find_existing(pr_job *j, const char *token, const char *owner_len_repo, size_t owner_len) {
        char path[700];
        snprintf(path, sizeof path, "/repos/%s/pulls?head=%.*s:%s&state=open", owner_len_repo, (int) owner_len,
                 owner_len_repo, j->push.branch);
        sv_gh_resp resp;
        if (sv_gh_call(j->api_base, "GET", path, token, NULL, &resp, &j->err) < 0)
                return fail(j, 502, "github_unreachable");
        _cleanup_json_ cJSON *arr = resp.status == 200 ? cJSON_Parse(resp.body) : NULL;
        sv_gh_resp_clear(&resp);
        if (!cJSON_IsArray(arr) || !take_pr(j, cJSON_GetArrayItem(arr, 0)))
                return -ENOENT;
        j->existing = true;
        return 0;
}

static int open_pr(pr_job *j, sv_worker *w) {
        char gh[256];
        if (j->gh_repo)
                snprintf(gh, sizeof gh, "%s", j->gh_repo);
        else if (!sv_gh_repo_from_url(j->push.url, j->api_base, gh, sizeof gh)) {
                ns_err(&j->err, EINVAL,
                       "cannot tell the GitHub repository from %s: set github_repo in the repository's settings", j->push.url);
                return fail(j, 409, "no_github_repo");
        }
        sv_secret tok = { 0 };
        ns_error e;
        if (sv_vault_get(j->push.srv->vault, w->db, j->push.repo_id, "GITHUB_TOKEN", &tok, &e) < 0) {
                ns_err(&j->err, ENOENT, "no GITHUB_TOKEN in the vault (repository or global scope): %s", e.msg);
                return fail(j, 409, "no_token");
        }
        /* The title and body: the request's, else the session's title / first prompt line and the
         * prompt with the list of commits; redacted (a prompt may quote a secret). */
        _cleanup_free_ char *title = NULL, *body = NULL, *raw = NULL;
        if (j->title_in)
                raw = strdup(j->title_in);
        else if (j->session_title && j->session_title[0])
                raw = strdup(j->session_title);
        else if (j->prompt && j->prompt[0])
                raw = strndup(j->prompt, strcspn(j->prompt, "\n") > 120 ? 120 : strcspn(j->prompt, "\n"));
        else if (asprintf(&raw, "nightshift %s", j->push.sid) < 0)
                raw = NULL;
        if (j->body_in) {
                body = strdup(j->body_in);
        } else {
                char *commits = strdup("");
                if (commits)
                        commit_summary(j->push.mirror_path, j->push.branch, j->push.base_sha, &commits);
                if (asprintf(&body, "%s\n\n### Commits\n%s\n_Opened by nightshift session %s._\n",
                             j->prompt ? j->prompt : "", commits ? commits : "", j->push.sid) < 0)
                        body = NULL;
                free(commits);
        }
        if (raw)
                title = redacted(j->push.srv, raw);
        char *rb = body ? redacted(j->push.srv, body) : NULL;
        free(body);
        body = rb;
        if (!title || !body) {
                sv_secret_clear(&tok);
                ns_err(&j->err, ENOMEM, "out of memory");
                return fail(j, 500, "internal");
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "title", title);
        cJSON_AddStringToObject(o, "head", j->push.branch);
        cJSON_AddStringToObject(o, "base", j->pr_base);
        cJSON_AddStringToObject(o, "body", body);
        cJSON_AddBoolToObject(o, "draft", j->draft);
        _cleanup_free_ char *json = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        char path[400];
        snprintf(path, sizeof path, "/repos/%s/pulls", gh);
        sv_gh_resp resp;
        int r = json ? sv_gh_call(j->api_base, "POST", path, tok.value, json, &resp, &j->err) : -ENOMEM;
        if (r < 0) {
                sv_secret_clear(&tok);
                return fail(j, 502, "github_unreachable");
        }
        char msg[420];
        gh_message(&resp, msg, sizeof msg);
        _cleanup_json_ cJSON *ans = resp.status == 201 ? cJSON_Parse(resp.body) : NULL;
        long status = resp.status;
        sv_gh_resp_clear(&resp);
        if (status == 201 && take_pr(j, ans))
                r = 0;
        else if (status == 422) /* "A pull request already exists for owner:branch", among others */
                r = find_existing(j, tok.value, gh, strcspn(gh, "/"));
        else
                r = -EPROTO;
        sv_secret_clear(&tok);
        if (r == 0)
                return 0;
        if (!j->code) {
                ns_err(&j->err, EPROTO, "GitHub answered %ld to POST %s%s%s", status, path, msg[0] ? ": " : "", msg);
                return fail(j, status == 422 ? 422 : 502, "github_error");
        }
        return -1;
}

static void run_pr(sv_job *job, sv_worker *w) {
        pr_job *j = (pr_job *) job;
        if (j->automatic && !has_new_commits(&j->push)) {
                j->skipped = true;
                return;
        }
        sv_push_run(&j->push, w);
        if (j->push.code) {
                j->status = j->push.status, j->code = j->push.code, j->err = j->push.err;
                return;
        }
        j->pushed = true;
        if (j->open_pr && open_pr(j, w) < 0)
                return;
        j->status = j->open_pr && !j->existing ? 201 : 200;
}

/* ---- the loop's part --------------------------------------------------------------------------- */

static void add_artifact(sv_server *s, pr_job *j) {
        db_artifact *v = NULL;
        size_t n = 0;
        ns_error e;
        if (db_artifact_list(s->db, j->push.sid, &v, &n, &e) < 0)
                return;
        bool have = false;
        for (size_t i = 0; i < n && !have; i++)
                have = v[i].kind && !strcmp(v[i].kind, "pull_request") && v[i].name && !strcmp(v[i].name, j->pr_url);
        db_artifacts_free(v, n);
        if (have)
                return;
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "url", j->pr_url);
        cJSON_AddNumberToObject(d, "number", (double) j->pr_number);
        _cleanup_free_ char *data = cJSON_PrintUnformatted(d);
        cJSON_Delete(d);
        if (db_artifact_add(s->db, j->push.sid, "pull_request", j->pr_url, NULL, -1, data, NULL, &e) < 0)
                log_warn("session %s: storing the pull request artifact: %s", j->push.sid, e.msg);
}

/* The pull request as the `pr` event and the API's answer describe it. */
static cJSON *pr_json(const pr_job *j) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "url", j->pr_url);
        cJSON_AddNumberToObject(o, "number", (double) j->pr_number);
        cJSON_AddStringToObject(o, "head", j->push.branch);
        cJSON_AddStringToObject(o, "base", j->pr_base);
        cJSON_AddBoolToObject(o, "draft", j->draft);
        cJSON_AddBoolToObject(o, "existing", j->existing);
        return o;
}

static void pr_done(sv_job *job) {
        pr_job *j = (pr_job *) job;
        sv_server *s = j->push.srv;
        if (j->skipped)
                return pr_job_free(j);
        sv_push_store_event(&j->push); /* the push's own result (push or error event) */
        if (j->pr_url) {
                add_artifact(s, j);
                store_event(s, j->push.sid, "pr", pr_json(j));
        } else if (j->code && j->pushed) { /* the push's failures have their event already */
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "message", j->err.msg);
                cJSON_AddStringToObject(o, "step", "pr");
                store_event(s, j->push.sid, "error", o);
        }
        if (j->req) {
                if (j->code) {
                        sv_req_reply_error(j->req, j->status, j->code, "%s", j->err.msg[0] ? j->err.msg : j->code);
                } else {
                        sv_req_reply_json(j->req, j->status, pr_json(j));
                }
        } else if (j->code) {
                log_warn("session %s: on_complete: %s", j->push.sid, j->err.msg);
        }
        pr_job_free(j);
}

/* A job for session `sid`: the push, the repository's settings, the session's title and prompt. */
static pr_job *pr_job_new(sv_server *s, const char *sid, int *status, const char **code, ns_error *e,
                          sv_repo_settings *set) {
        pr_job *j = calloc(1, sizeof *j);
        if (!j) {
                *status = 500, *code = "internal";
                ns_err(e, ENOMEM, "out of memory");
                return NULL;
        }
        if (sv_gh_global_init(e) < 0) {
                *status = 500, *code = "internal";
                free(j);
                return NULL;
        }
        if (sv_push_init(&j->push, s, sid, status, code, e) < 0) {
                free(j);
                return NULL;
        }
        db_session row = { 0 };
        db_prompt *pv = NULL;
        size_t pn = 0;
        if (db_session_get(s->db, sid, &row, e) < 0 || sv_repo_settings_get(s->db, row.repo_id, set, e) < 0) {
                db_session_clear(&row);
                pr_job_free(j);
                *status = 500, *code = "internal";
                return NULL;
        }
        if (db_prompt_list(s->db, sid, &pv, &pn, e) == 0 && pn > 0 && pv[0].text)
                j->prompt = strdup(pv[0].text);
        db_prompts_free(pv, pn);
        j->session_title = row.title ? strdup(row.title) : NULL;
        j->gh_repo = set->github_repo ? strdup(set->github_repo) : NULL;
        const char *base = set->pr_base ? set->pr_base : row.base_ref ? row.base_ref : "main";
        if (!strncmp(base, "refs/heads/", 11))
                base += 11;
        j->pr_base = strdup(base);
        j->api_base = strdup(s->cfg.github_api_url ? s->cfg.github_api_url : SV_GH_API_DEFAULT);
        j->draft = set->pr_draft;
        j->base.run = run_pr;
        j->base.done = pr_done;
        db_session_clear(&row);
        if (!j->pr_base || !j->api_base) {
                pr_job_free(j);
                *status = 500, *code = "internal";
                ns_err(e, ENOMEM, "out of memory");
                return NULL;
        }
        return j;
}

void sv_api_session_pr(sv_req *r, const sv_route_args *a) {
        _cleanup_json_ cJSON *body = r->body_len ? sv_api_parse_body(r) : cJSON_CreateObject();
        if (!body)
                return;
        static const char *const keys[] = { "draft", "title", "body", NULL };
        const char *title = NULL, *text = NULL;
        bool draft = false;
        ns_error e;
        if (jv_only_keys(body, keys, &e) < 0 || jv_str(body, "title", false, 256, NULL, &title, &e) < 0 ||
            jv_str(body, "body", false, 65536, NULL, &text, &e) < 0 || jv_bool(body, "draft", false, &draft, &e) < 0)
                return sv_api_bad(r, &e);
        int status = 500;
        const char *code = "internal";
        sv_repo_settings set;
        pr_job *j = pr_job_new(r->srv, a->id, &status, &code, &e, &set);
        if (!j)
                return sv_req_reply_error(r, status, code, "%s", e.msg);
        j->draft = draft || set.pr_draft;
        sv_repo_settings_clear(&set);
        j->req = r;
        j->open_pr = true;
        if ((title && !(j->title_in = strdup(title))) || (text && !(j->body_in = strdup(text)))) {
                pr_job_free(j);
                return sv_req_reply_error(r, 500, "internal", "out of memory");
        }
        sv_workq_submit(r->srv->wq, &j->base);
}

void sv_pr_on_complete(sv_server *s, const char *sid) {
        int status;
        const char *code;
        ns_error e;
        sv_repo_settings set;
        pr_job *j = pr_job_new(s, sid, &status, &code, &e, &set);
        if (!j)
                return; /* no branch (nothing committed) or the session is gone: nothing to do */
        bool push = !strcmp(set.on_complete, "push"), pr = !strcmp(set.on_complete, "pr");
        sv_repo_settings_clear(&set);
        if (!push && !pr)
                return pr_job_free(j);
        j->automatic = true;
        j->open_pr = pr;
        sv_workq_submit(s->wq, &j->base);
}

/* ---- comment-back ------------------------------------------------------------------------------- */

typedef struct comment_job {
        sv_job base;
        sv_server *srv;
        char sid[SV_ID_LEN + 1], repo_id[SV_ID_LEN + 1];
        int number;
        char *link, *url, *gh_repo, *api_base;
        ns_error err;
        bool failed;
} comment_job;

static void comment_job_free(comment_job *j) {
        free(j->link);
        free(j->url);
        free(j->gh_repo);
        free(j->api_base);
        free(j);
}

static void run_comment(sv_job *job, sv_worker *w) {
        comment_job *j = (comment_job *) job;
        char gh[256];
        sv_secret tok = { 0 };
        ns_error e;
        j->failed = true;
        if (j->gh_repo)
                snprintf(gh, sizeof gh, "%s", j->gh_repo);
        else if (!sv_gh_repo_from_url(j->url, j->api_base, gh, sizeof gh)) {
                ns_err(&j->err, EINVAL, "comment-back: cannot tell the GitHub repository from %s (set github_repo)", j->url);
                return;
        }
        if (sv_vault_get(j->srv->vault, w->db, j->repo_id, "GITHUB_TOKEN", &tok, &e) < 0) {
                ns_err(&j->err, ENOENT, "comment-back: no GITHUB_TOKEN in the vault");
                return;
        }
        cJSON *o = cJSON_CreateObject();
        char text[1400];
        snprintf(text, sizeof text, "nightshift started session %s: %s", j->sid, j->link);
        cJSON_AddStringToObject(o, "body", text);
        _cleanup_free_ char *json = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        char path[400];
        snprintf(path, sizeof path, "/repos/%s/issues/%d/comments", gh, j->number);
        sv_gh_resp resp;
        int r = json ? sv_gh_call(j->api_base, "POST", path, tok.value, json, &resp, &j->err) : -ENOMEM;
        sv_secret_clear(&tok);
        if (r < 0) {
                char m[sizeof j->err.msg];
                snprintf(m, sizeof m, "%s", j->err.msg);
                ns_err(&j->err, EIO, "comment-back: %.400s", m);
                return;
        }
        if (resp.status == 201) {
                j->failed = false;
        } else {
                char msg[420];
                gh_message(&resp, msg, sizeof msg);
                ns_err(&j->err, EPROTO, "comment-back: GitHub answered %ld to POST %s%s%s", resp.status, path,
                       msg[0] ? ": " : "", msg);
        }
        sv_gh_resp_clear(&resp);
}

static void comment_done(sv_job *job) {
        comment_job *j = (comment_job *) job;
        if (j->failed) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "message", j->err.msg);
                cJSON_AddStringToObject(o, "step", "comment");
                store_event(j->srv, j->sid, "error", o);
        }
        comment_job_free(j);
}

void sv_pr_comment_started(sv_server *s, const char *repo_id, int number, const char *sid, const char *link) {
        db_repo repo = { 0 };
        sv_repo_settings set = { 0 };
        ns_error e;
        comment_job *j = NULL;
        if (number <= 0 || sv_gh_global_init(&e) < 0 || db_repo_get(s->db, repo_id, &repo, &e) < 0 ||
            sv_repo_settings_get(s->db, repo_id, &set, &e) < 0 || !(j = calloc(1, sizeof *j)))
                goto out;
        j->srv = s;
        j->number = number;
        snprintf(j->sid, sizeof j->sid, "%s", sid);
        snprintf(j->repo_id, sizeof j->repo_id, "%s", repo_id);
        j->link = strdup(link);
        j->url = strdup(repo.url_or_path);
        j->gh_repo = set.github_repo ? strdup(set.github_repo) : NULL;
        j->api_base = strdup(s->cfg.github_api_url ? s->cfg.github_api_url : SV_GH_API_DEFAULT);
        if (!j->link || !j->url || !j->api_base || (set.github_repo && !j->gh_repo)) {
                comment_job_free(j);
                goto out;
        }
        j->base.run = run_comment;
        j->base.done = comment_done;
        sv_workq_submit(s->wq, &j->base);
out:
        db_repo_clear(&repo);
        sv_repo_settings_clear(&set);
}
