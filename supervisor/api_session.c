/* nightshift supervisor — the session routes beyond the runner's core: transcript, diff,
 * artifacts, stats, archive, prompt cancellation; and repository removal.  Git and
 * sandboxd calls run on a worker (an API job), never on the loop. */
#include <git2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"
#include "repo_settings.h"
#include "common/jsonv.h"
#include "fsutil.h"
#include "gitx.h"
#include "sbxops.h"
#include "serve.h"
#include "spare.h"
#include "workq.h"
#include "ws.h"

#define LOG_MAX_BYTES (64u * 1024 * 1024)  /* a transcript larger than this is refused (413) */
#define DIFF_MAX_BYTES (16u * 1024 * 1024) /* a diff is cut here and says so */

/* The session's row, or a reply (404/500) and -1. */
static int session_row(sv_req *r, const char *sid, db_session *row) {
        ns_error e;
        int rc = db_session_get(r->srv->db, sid, row, &e);
        if (rc == 0)
                return 0;
        sv_req_reply_error(r, rc == -ENOENT ? 404 : 500, rc == -ENOENT ? "not_found" : "internal", "%s", e.msg);
        return -1;
}

/* ---- transcript ---------------------------------------------------------------------------- */

void sv_api_session_log(sv_req *r, const sv_route_args *a) {
        db_session row = { 0 };
        if (session_row(r, a->id, &row) < 0)
                return;
        db_session_clear(&row);
        char *out = NULL;
        size_t len = 0, cap = 0;
        int64_t after = 0;
        for (;;) {
                db_event *v = NULL;
                size_t n = 0;
                ns_error e;
                if (db_events_after_seq(r->srv->db, a->id, after, 1000, &v, &n, &e) < 0) {
                        free(out);
                        return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
                }
                for (size_t i = 0; i < n; i++) {
                        unsigned char *line;
                        size_t ll;
                        if (sv_event_text(&v[i], 0, &line, &ll) < 0)
                                continue;
                        if (len + ll + 1 > LOG_MAX_BYTES) {
                                free(line);
                                db_events_free(v, n);
                                free(out);
                                return sv_req_reply_error(r, 413, "too_large",
                                                          "the transcript is over %u bytes: page through /events",
                                                          LOG_MAX_BYTES);
                        }
                        if (len + ll + 1 > cap) {
                                size_t nc = cap ? cap * 2 : 65536;
                                while (nc < len + ll + 1)
                                        nc *= 2;
                                char *nb = realloc(out, nc);
                                if (!nb) {
                                        free(line);
                                        db_events_free(v, n);
                                        free(out);
                                        return sv_req_reply_error(r, 500, "internal", "out of memory");
                                }
                                out = nb;
                                cap = nc;
                        }
                        memcpy(out + len, line, ll);
                        len += ll;
                        out[len++] = '\n';
                        free(line);
                        after = v[i].seq;
                }
                db_events_free(v, n);
                if (n < 1000)
                        break;
        }
        sv_req_reply_raw(r, 200, "application/x-ndjson", out, len);
}

/* ---- worker jobs for API calls --------------------------------------------------------------- */

typedef enum api_job_kind { AJ_DIFF, AJ_STATS, AJ_REPO_DELETE } api_job_kind;

typedef struct api_job {
        sv_job base;
        api_job_kind kind;
        sv_req *req;
        char sid[SV_ID_LEN + 1];
        char *mirror_path, *branch, *base_sha, *sandbox, *mirrors_dir, *repo_id;
        struct sv_spares *spares; /* AJ_REPO_DELETE: the server's spare trees (thread-safe) */
        /* results, written by the worker */
        int status;
        const char *code;
        ns_error err;
        cJSON *body;
} api_job;

static void api_job_free(api_job *j) {
        free(j->mirror_path);
        free(j->branch);
        free(j->base_sha);
        free(j->sandbox);
        free(j->mirrors_dir);
        free(j->repo_id);
        cJSON_Delete(j->body);
        free(j);
}

static int fail(api_job *j, int status, const char *code) {
        j->status = status;
        j->code = code;
        return -1;
}

/* The unified diff between the session's base and its branch's tip, read from the mirror (ours:
 * the session's own .git is never opened on the host). */
static void run_diff(api_job *j) {
        _cleanup_(git_repository_freep) git_repository *repo = NULL;
        if (gitx_open_exact(&repo, j->mirror_path, &j->err) < 0)
                return (void) fail(j, 500, "internal");
        git_oid base, head;
        char refname[128];
        snprintf(refname, sizeof refname, "refs/heads/%s", j->branch);
        if (git_oid_fromstr(&base, j->base_sha) < 0 || git_reference_name_to_id(&head, repo, refname) < 0) {
                ns_err(&j->err, ENOENT, "the session's branch %s is not in the mirror", j->branch);
                return (void) fail(j, 409, "no_branch");
        }
        git_commit *bc = NULL, *hc = NULL;
        git_tree *bt = NULL, *ht = NULL;
        git_diff *diff = NULL;
        git_buf buf = { 0 };
        int gr;
        if ((gr = git_commit_lookup(&bc, repo, &base)) < 0 || (gr = git_commit_lookup(&hc, repo, &head)) < 0 ||
            (gr = git_commit_tree(&bt, bc)) < 0 || (gr = git_commit_tree(&ht, hc)) < 0 ||
            (gr = git_diff_tree_to_tree(&diff, repo, bt, ht, NULL)) < 0 || (gr = git_diff_to_buf(&buf, diff, GIT_DIFF_FORMAT_PATCH)) < 0) {
                gitx_err(&j->err, gr, "diff %s..%s", j->base_sha, j->branch);
                fail(j, 500, "internal");
        } else {
                bool cut = buf.size > DIFF_MAX_BYTES;
                char hs[GIT_OID_HEXSZ + 1];
                git_oid_tostr(hs, sizeof hs, &head);
                j->body = cJSON_CreateObject();
                cJSON_AddStringToObject(j->body, "base", j->base_sha);
                cJSON_AddStringToObject(j->body, "head", hs);
                cJSON_AddNumberToObject(j->body, "files", (double) git_diff_num_deltas(diff));
                /* cJSON escapes whatever bytes the files hold; a cut diff ends at a line. */
                size_t n = cut ? DIFF_MAX_BYTES : buf.size;
                while (cut && n > 0 && buf.ptr[n - 1] != '\n')
                        n--;
                char *text = strndup(buf.ptr ? buf.ptr : "", n);
                cJSON_AddStringToObject(j->body, "diff", text ? text : "");
                free(text);
                cJSON_AddBoolToObject(j->body, "truncated", cut);
                j->status = 200;
        }
        git_buf_dispose(&buf);
        git_diff_free(diff);
        git_tree_free(bt);
        git_tree_free(ht);
        git_commit_free(bc);
        git_commit_free(hc);
}

static void run_stats(api_job *j, sv_worker *w) {
        ns_client *c;
        cJSON *st = NULL;
        int r = sv_worker_sandboxd(w, &c, &j->err);
        if (r >= 0)
                r = sbx_stats(c, j->sandbox, &st, &j->err);
        if (r < 0) {
                sv_worker_sandboxd_reset(w, r);
                return (void) fail(j, r == -ENOENT ? 409 : 502, r == -ENOENT ? "no_sandbox" : "sandboxd");
        }
        /* sandboxd's reply envelope is not part of the answer. */
        cJSON_DeleteItemFromObjectCaseSensitive(st, "v");
        cJSON_DeleteItemFromObjectCaseSensitive(st, "id");
        cJSON_DeleteItemFromObjectCaseSensitive(st, "ok");
        j->body = st;
        j->status = 200;
}

static void run_repo_delete(api_job *j, sv_worker *w) {
        /* The row first, in a transaction that also checks no session refers to it. */
        int r = db_repo_delete(w->db, j->repo_id, &j->err);
        if (r == -EBUSY)
                return (void) fail(j, 409, "repo_in_use");
        if (r == -ENOENT)
                return (void) fail(j, 404, "not_found");
        if (r < 0)
                return (void) fail(j, 500, "internal");
        sv_repo_settings_forget(w->db, j->repo_id);
        /* Its spare trees go before the mirror they borrow objects from. */
        sv_spares_forget(j->spares, j->mirror_path);
        /* The mirror is ours, named after the id: removed by descriptor beneath the mirrors dir. */
        _cleanup_close_ int mfd = fs_open_trusted_dir(j->mirrors_dir, &j->err);
        char name[SV_ID_LEN + 8];
        snprintf(name, sizeof name, "%s.git", j->repo_id);
        if (mfd >= 0 && fs_remove_tree_at(mfd, name, &j->err) < 0)
                return (void) fail(j, 500, "internal");
        j->status = 204;
}

static void api_job_run(sv_job *job, sv_worker *w) {
        api_job *j = (api_job *) job;
        switch (j->kind) {
        case AJ_DIFF: run_diff(j); break;
        case AJ_STATS: run_stats(j, w); break;
        case AJ_REPO_DELETE: run_repo_delete(j, w); break;
        }
}

static void api_job_done(sv_job *job) {
        api_job *j = (api_job *) job;
        if (j->code)
                sv_req_reply_error(j->req, j->status, j->code, "%s", j->err.msg[0] ? j->err.msg : j->code);
        else
                sv_req_reply_json(j->req, j->status, TAKE_PTR(j->body));
        api_job_free(j);
}

static api_job *api_job_new(sv_req *r, api_job_kind kind) {
        api_job *j = calloc(1, sizeof *j);
        if (!j) {
                sv_req_reply_error(r, 500, "internal", "out of memory");
                return NULL;
        }
        j->base.run = api_job_run;
        j->base.done = api_job_done;
        j->kind = kind;
        j->req = r;
        return j;
}

/* ---- routes -------------------------------------------------------------------------------- */

void sv_api_session_diff(sv_req *r, const sv_route_args *a) {
        db_session row = { 0 };
        if (session_row(r, a->id, &row) < 0)
                return;
        db_repo repo = { 0 };
        ns_error e;
        api_job *j = NULL;
        if (!row.base_sha || !row.branch)
                sv_req_reply_error(r, 409, "no_branch", "the session has no branch yet");
        else if (db_repo_get(r->srv->db, row.repo_id, &repo, &e) < 0)
                sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        else if ((j = api_job_new(r, AJ_DIFF))) {
                j->mirror_path = TAKE_PTR(repo.mirror_path);
                j->branch = strdup(row.branch);
                j->base_sha = strdup(row.base_sha);
                if (!j->branch || !j->base_sha) {
                        sv_req_reply_error(r, 500, "internal", "out of memory");
                        api_job_free(j);
                } else {
                        sv_workq_submit(r->srv->wq, &j->base);
                }
        }
        db_repo_clear(&repo);
        db_session_clear(&row);
}

void sv_api_session_stats(sv_req *r, const sv_route_args *a) {
        db_session row = { 0 };
        if (session_row(r, a->id, &row) < 0)
                return;
        if (!row.sandbox_id || sv_state_is_end(row.state) || row.state == SV_ARCHIVED) {
                db_session_clear(&row);
                return sv_req_reply_error(r, 409, "no_sandbox", "the session has no sandbox now");
        }
        api_job *j = api_job_new(r, AJ_STATS);
        if (j && !(j->sandbox = strdup(row.sandbox_id))) {
                sv_req_reply_error(r, 500, "internal", "out of memory");
                api_job_free(j);
                j = NULL;
        }
        db_session_clear(&row);
        if (j)
                sv_workq_submit(r->srv->wq, &j->base);
}

void sv_api_session_artifacts(sv_req *r, const sv_route_args *a) {
        db_session row = { 0 };
        if (session_row(r, a->id, &row) < 0)
                return;
        db_session_clear(&row);
        db_artifact *v = NULL;
        size_t n = 0;
        ns_error e;
        if (db_artifact_list(r->srv->db, a->id, &v, &n, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "artifacts");
        for (size_t i = 0; i < n; i++) {
                cJSON *it = cJSON_CreateObject();
                cJSON_AddNumberToObject(it, "id", (double) v[i].id);
                cJSON_AddStringToObject(it, "kind", v[i].kind ? v[i].kind : "");
                cJSON_AddStringToObject(it, "name", v[i].name ? v[i].name : "");
                if (v[i].size >= 0)
                        cJSON_AddNumberToObject(it, "size", (double) v[i].size);
                else
                        cJSON_AddNullToObject(it, "size");
                cJSON *data = v[i].data ? cJSON_Parse(v[i].data) : NULL;
                cJSON_AddItemToObject(it, "data", data ? data : cJSON_CreateNull());
                sv_api_add_time(it, "created_at", v[i].created_at);
                cJSON_AddItemToArray(arr, it);
        }
        db_artifacts_free(v, n);
        sv_req_reply_json(r, 200, o);
}

void sv_api_session_archive(sv_req *r, const sv_route_args *a) {
        ns_error e;
        int rc = sv_session_archive(r->srv, a->id, &e);
        if (rc < 0)
                return sv_req_reply_error(r, rc == -ENOENT ? 404 : rc == -EINVAL ? 409 : 500,
                                          rc == -ENOENT ? "not_found" : rc == -EINVAL ? "conflict" : "internal", "%s", e.msg);
        db_session row = { 0 };
        if (session_row(r, a->id, &row) < 0)
                return;
        sv_req_reply_json(r, 200, sv_session_json(&row));
        db_session_clear(&row);
}

void sv_api_session_prompts(sv_req *r, const sv_route_args *a) {
        db_prompt *v = NULL;
        size_t n = 0;
        ns_error e;
        if (db_prompt_list(r->srv->db, a->id, &v, &n, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "prompts");
        for (size_t i = 0; i < n; i++) {
                cJSON *it = cJSON_CreateObject();
                cJSON_AddNumberToObject(it, "id", (double) v[i].id);
                cJSON_AddNumberToObject(it, "seq", (double) v[i].seq);
                cJSON_AddStringToObject(it, "state", db_prompt_state_name(v[i].state));
                cJSON_AddStringToObject(it, "text", v[i].text ? v[i].text : "");
                sv_api_add_time(it, "created_at", v[i].created_at);
                cJSON_AddItemToArray(arr, it);
        }
        db_prompts_free(v, n);
        sv_req_reply_json(r, 200, o);
}

void sv_api_prompt_cancel(sv_req *r, const sv_route_args *a) {
        char *end;
        long long pid = strtoll(a->sub, &end, 10);
        if (*end || pid <= 0)
                return sv_req_reply_error(r, 404, "not_found", "no such prompt");
        db_prompt *v = NULL;
        size_t n = 0;
        ns_error e;
        if (db_prompt_list(r->srv->db, a->id, &v, &n, &e) < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        bool found = false;
        for (size_t i = 0; i < n; i++)
                found |= v[i].id == pid;
        db_prompts_free(v, n);
        if (!found)
                return sv_req_reply_error(r, 404, "not_found", "session %s has no prompt %lld", a->id, pid);
        int rc = db_prompt_cancel(r->srv->db, pid, &e);
        if (rc == -EBUSY)
                return sv_req_reply_error(r, 409, "not_queued", "the prompt already went to the agent");
        if (rc < 0)
                return sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double) pid);
        cJSON_AddStringToObject(o, "session", a->id);
        cJSON_AddStringToObject(o, "state", "cancelled");
        sv_req_reply_json(r, 200, o);
}

void sv_api_repo_delete(sv_req *r, const sv_route_args *a) {
        db_repo repo = { 0 };
        ns_error e;
        int rc = db_repo_get(r->srv->db, a->id, &repo, &e);
        if (rc < 0) {
                db_repo_clear(&repo);
                return sv_req_reply_error(r, rc == -ENOENT ? 404 : 500, rc == -ENOENT ? "not_found" : "internal", "%s",
                                          e.msg);
        }
        api_job *j = api_job_new(r, AJ_REPO_DELETE);
        if (!j) {
                db_repo_clear(&repo);
                return;
        }
        j->mirror_path = TAKE_PTR(repo.mirror_path);
        j->spares = r->srv->spares;
        db_repo_clear(&repo);
        if (!j->mirror_path || !(j->repo_id = strdup(a->id)) || !(j->mirrors_dir = strdup(r->srv->mirrors_dir))) {
                sv_req_reply_error(r, 500, "internal", "out of memory");
                return api_job_free(j);
        }
        sv_workq_submit(r->srv->wq, &j->base);
}
