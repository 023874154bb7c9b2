/* nightshift supervisor — pushing a session's branch: `POST /api/v1/sessions/{id}/push`.
 *
 * The branch nightshift/<id> is pushed from the repository's mirror (never from the session's own
 * git dir, which the agent controls) to the repository's URL, with libgit2 on a worker, using
 * credentials from the vault that never enter a sandbox: GIT_TOKEN (HTTPS, as the password of
 * user x-access-token) or GIT_SSH_KEY (an OpenSSH private key; ed25519 — Debian 12's libssh2
 * cannot sign with rsa-sha2).  The refspec has no '+': a non-fast-forward is rejected by the
 * remote, reported as an `error` event and a 409, never forced.
 *
 * The pre-push gate looks at every commit the push would add (base..branch) and refuses the whole
 * push, with a `push` event saying why, when a changed file or a message holds a vault secret (any
 * form the redactor knows), a well-known key pattern (AWS AKIA…, GitHub ghp_…/github_pat_…,
 * Anthropic sk-ant-…, a PEM private key), or touches a path the repository protects
 * (.nightshift/config: protected_paths = .github/workflows/, ...). */
#include <git2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"
#include "common/cleanup.h"
#include "gitx.h"
#include "hostkey.h"
#include "push.h"
#include "redact.h"
#include "repo_settings.h"
#include "serve.h"
#include "vault.h"
#include "workq.h"
#include "ws.h"

GITX_DEFINE_FREEP(git_blob)
GITX_DEFINE_FREEP(git_tree_entry)

#define BLOB_SCAN_MAX (8 * 1024 * 1024) /* larger blobs are refused by the gate: not scanned */
#define COMMITS_MAX 10000

typedef struct push_job {
        sv_job base;
        sv_req *req;
        sv_push p;
} push_job;

void sv_push_clear(sv_push *j) {
        free(j->mirror_path);
        free(j->branch);
        free(j->base_sha);
        free(j->url);
        free(j->event_type);
        free(j->event_json);
        free(j->rejected);
        *j = (sv_push){ 0 };
}

static void push_job_free(push_job *j) {
        sv_push_clear(&j->p);
        free(j);
}

static void set_event(sv_push *j, const char *type, cJSON *o) {
        free(j->event_type);
        free(j->event_json);
        j->event_type = strdup(type);
        j->event_json = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
}

/* ---- the gate ---------------------------------------------------------------------------------- */

/* Well-known key shapes, matched by hand (no regex engine: glibc's and the PCRE2 POSIX wrapper
 * that libgit2 pulls in disagree about regcomp/regfree).  Each returns true on a match at p. */
static bool run_of(const char *p, const char *end, size_t min, const char *set) {
        size_t n = 0;
        while (p + n < end && p[n] && strchr(set, p[n]))
                n++;
        return n >= min;
}
#define UPPER_DIGITS "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
#define ALNUM UPPER_DIGITS "abcdefghijklmnopqrstuvwxyz"
static bool is_aws(const char *p, const char *end) {
        return end - p >= 20 && (!strncmp(p, "AKIA", 4) || !strncmp(p, "ASIA", 4) || !strncmp(p, "A3T", 3)) &&
               run_of(p + 4, end, 16, UPPER_DIGITS);
}
static bool is_github(const char *p, const char *end) {
        if (end - p >= 40 && p[0] == 'g' && p[1] == 'h' && strchr("pousr", p[2]) && p[2] && p[3] == '_')
                return run_of(p + 4, end, 36, ALNUM);
        return end - p >= 33 && !strncmp(p, "github_pat_", 11) && run_of(p + 11, end, 22, ALNUM "_");
}
static bool is_anthropic(const char *p, const char *end) {
        return end - p >= 27 && !strncmp(p, "sk-ant-", 7) && run_of(p + 7, end, 20, ALNUM "_-");
}
static bool is_pem_key(const char *p, const char *end) {
        if (end - p < 27 || strncmp(p, "-----BEGIN ", 11))
                return false;
        for (const char *q = p + 11; q < end && q < p + 64 && *q != '\n'; q++)
                if (end - q >= 16 && !strncmp(q, "PRIVATE KEY-----", 16))
                        return true;
        return false;
}
static const struct {
        const char *name;
        bool (*match)(const char *p, const char *end);
} key_patterns[] = {
        { "an AWS access key id", is_aws },
        { "a GitHub token", is_github },
        { "an Anthropic API key", is_anthropic },
        { "a private key", is_pem_key },
};

typedef struct gate {
        sv_push *j;
        git_repository *repo;
        char **protected_paths;
        size_t n_protected;
        char why[512];
} gate;

/* Why `data` may not leave, or false. */
static bool gate_text(gate *g, const char *data, size_t len, const char *where) {
        char *red = NULL;
        if (g->j->srv->redact && sv_redact_text(g->j->srv->redact, data, len, &red, NULL) > 0) {
                char *m = strstr(red, "[secret:"), name[SV_SECRET_NAME_MAX + 1] = "?";
                if (m)
                        sscanf(m + 8, "%64[A-Za-z0-9_]", name);
                free(red);
                snprintf(g->why, sizeof g->why, "%s holds the value of vault secret %s", where, name);
                return true;
        }
        const char *end = data + len;
        for (const char *p = data; p < end; p++)
                for (size_t i = 0; i < ARRAY_SIZE(key_patterns); i++)
                        if (key_patterns[i].match(p, end)) {
                                snprintf(g->why, sizeof g->why, "%s holds what looks like %s", where, key_patterns[i].name);
                                return true;
                        }
        return false;
}

static int gate_delta(const git_diff_delta *d, float progress, void *payload) {
        (void) progress;
        gate *g = payload;
        if (d->status == GIT_DELTA_DELETED)
                return 0;
        const char *path = d->new_file.path;
        for (size_t i = 0; i < g->n_protected; i++)
                if (!strncmp(path, g->protected_paths[i], strlen(g->protected_paths[i]))) {
                        snprintf(g->why, sizeof g->why, "%s is a protected path (%s)", path, g->protected_paths[i]);
                        return 1;
                }
        if (git_oid_is_zero(&d->new_file.id) || d->new_file.mode == GIT_FILEMODE_COMMIT)
                return 0;
        _cleanup_(git_blob_freep) git_blob *b = NULL;
        if (git_blob_lookup(&b, g->repo, &d->new_file.id) < 0) {
                snprintf(g->why, sizeof g->why, "cannot read %s", path);
                return 1;
        }
        size_t len = (size_t) git_blob_rawsize(b);
        if (len > BLOB_SCAN_MAX) {
                snprintf(g->why, sizeof g->why, "%s is larger than the gate scans (%d MiB)", path, BLOB_SCAN_MAX >> 20);
                return 1;
        }
        char where[300];
        snprintf(where, sizeof where, "%.280s", path);
        return gate_text(g, git_blob_rawcontent(b), len, where) ? 1 : 0;
}

/* protected_paths from .nightshift/config at the base commit (the user's, not the agent's). */
static void load_protected(gate *g, const git_oid *base) {
        _cleanup_(git_commit_freep) git_commit *c = NULL;
        _cleanup_(git_tree_freep) git_tree *t = NULL;
        _cleanup_(git_tree_entry_freep) git_tree_entry *e = NULL;
        _cleanup_(git_blob_freep) git_blob *b = NULL;
        if (git_commit_lookup(&c, g->repo, base) < 0 || git_commit_tree(&t, c) < 0 ||
            git_tree_entry_bypath(&e, t, ".nightshift/config") < 0 || git_blob_lookup(&b, g->repo, git_tree_entry_id(e)) < 0 ||
            git_blob_rawsize(b) > 65536)
                return;
        _cleanup_free_ char *text = strndup(git_blob_rawcontent(b), (size_t) git_blob_rawsize(b));
        for (char *save = NULL, *line = text ? strtok_r(text, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
                line += strspn(line, " \t");
                if (strncmp(line, "protected_paths", 15))
                        continue;
                char *eq = strchr(line, '=');
                for (char *s2 = NULL, *p = eq ? strtok_r(eq + 1, ", \t\r", &s2) : NULL; p && g->n_protected < 64;
                     p = strtok_r(NULL, ", \t\r", &s2)) {
                        char **nv = realloc(g->protected_paths, (g->n_protected + 1) * sizeof *nv);
                        if (!nv)
                                return;
                        g->protected_paths = nv;
                        if ((nv[g->n_protected] = strdup(p)))
                                g->n_protected++;
                }
        }
}

/* 0: the push may go; 1: refused (g->why); <0: error. */
static int run_gate(gate *g, const git_oid *base, const git_oid *tip) {
        load_protected(g, base);
        _cleanup_(git_revwalk_freep) git_revwalk *w = NULL;
        int r = git_revwalk_new(&w, g->repo);
        if (r == 0)
                r = git_revwalk_push(w, tip);
        if (r == 0)
                r = git_revwalk_hide(w, base);
        if (r < 0)
                return gitx_err(&g->j->err, r, "walk the session's commits");
        git_oid oid;
        int n = 0;
        while (git_revwalk_next(&oid, w) == 0) {
                if (++n > COMMITS_MAX) {
                        snprintf(g->why, sizeof g->why, "more than %d new commits", COMMITS_MAX);
                        return 1;
                }
                _cleanup_(git_commit_freep) git_commit *c = NULL;
                _cleanup_(git_commit_freep) git_commit *parent = NULL;
                _cleanup_(git_tree_freep) git_tree *t = NULL;
                _cleanup_(git_tree_freep) git_tree *pt = NULL;
                _cleanup_(git_diff_freep) git_diff *d = NULL;
                char hex[GIT_OID_HEXSZ + 1];
                git_oid_tostr(hex, sizeof hex, &oid);
                if ((r = git_commit_lookup(&c, g->repo, &oid)) < 0 || (r = git_commit_tree(&t, c)) < 0)
                        return gitx_err(&g->j->err, r, "read commit %s", hex);
                char where[64];
                snprintf(where, sizeof where, "the message of commit %.12s", hex);
                const char *msg = git_commit_message_raw(c);
                if (gate_text(g, msg, strlen(msg), where))
                        return 1;
                if (git_commit_parentcount(c) > 0 && (r = git_commit_parent(&parent, c, 0)) == 0)
                        r = git_commit_tree(&pt, parent);
                if (r < 0)
                        return gitx_err(&g->j->err, r, "read the parent of %s", hex);
                if ((r = git_diff_tree_to_tree(&d, g->repo, pt, t, NULL)) < 0)
                        return gitx_err(&g->j->err, r, "diff commit %s", hex);
                r = git_diff_foreach(d, gate_delta, NULL, NULL, NULL, g);
                if (r == 1 || g->why[0]) {
                        char tmp[sizeof g->why];
                        snprintf(tmp, sizeof tmp, "commit %.12s: %.480s", hex, g->why);
                        memcpy(g->why, tmp, sizeof tmp);
                        return 1;
                }
                if (r < 0)
                        return gitx_err(&g->j->err, r, "scan commit %s", hex);
        }
        return 0;
}

static void gate_clear(gate *g) {
        for (size_t i = 0; i < g->n_protected; i++)
                free(g->protected_paths[i]);
        free(g->protected_paths);
}

/* ---- the push ---------------------------------------------------------------------------------- */

typedef struct cred_ctx {
        sv_push *j;
        sv_worker *w;
        int tries;
} cred_ctx;

static int on_credentials(git_credential **out, const char *url, const char *user_from_url, unsigned int allowed,
                          void *payload) {
        (void) url;
        cred_ctx *cc = payload;
        if (++cc->tries > 2)
                return GIT_EAUTH; /* the vault's credentials were refused: do not loop */
        sv_secret s = { 0 };
        ns_error e;
        int r = GIT_PASSTHROUGH;
        if ((allowed & GIT_CREDENTIAL_SSH_MEMORY) &&
            sv_vault_get(cc->j->srv->vault, cc->w->db, cc->j->repo_id, "GIT_SSH_KEY", &s, &e) == 0)
                r = git_credential_ssh_key_memory_new(out, user_from_url ? user_from_url : "git", NULL, s.value, NULL);
        else if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) &&
                 sv_vault_get(cc->j->srv->vault, cc->w->db, cc->j->repo_id, "GIT_TOKEN", &s, &e) == 0)
                r = git_credential_userpass_plaintext_new(out, user_from_url ? user_from_url : "x-access-token", s.value);
        sv_secret_clear(&s);
        return r;
}

static int on_certificate(git_cert *cert, int valid, const char *host, void *payload) {
        cred_ctx *cc = payload;
        sv_push *j = cc->j;
        if (cert->cert_type != GIT_CERT_HOSTKEY_LIBSSH2)
                return valid ? 0 : GIT_ECERTIFICATE; /* TLS: libgit2's own verification decides */
        /* Why: without a pin anyone on the path could impersonate the remote and receive the
         * branch.  libgit2 1.5's `valid` only says whether the supervisor user's own
         * ~/.ssh/known_hosts lists the key — not a decision the operator made for this
         * repository, so it is ignored: the host key must match the vault's GIT_SSH_KNOWN_HOSTS
         * (hostkey.h); without a pin the push is refused, never trusted on first use.  (libgit2
         * 1.5.1 leaks its known_hosts handle, ~90 bytes, on each refusal: fixed upstream.) */
        char h[201];
        int port = 22;
        if (!sv_hostkey_url_target(j->url, h, sizeof h, &port))
                snprintf(h, sizeof h, "%.200s", host ? host : "");
        sv_secret s = { 0 };
        ns_error e;
        int r = GIT_ECERTIFICATE;
        if (sv_vault_get(j->srv->vault, cc->w->db, j->repo_id, "GIT_SSH_KNOWN_HOSTS", &s, &e) < 0)
                snprintf(j->hostkey_why, sizeof j->hostkey_why,
                         "no SSH host key pinned for %s port %d: store its known_hosts line (ssh-keyscan -p %d %s) "
                         "as the vault secret GIT_SSH_KNOWN_HOSTS",
                         h, port, port, h);
        else if (sv_hostkey_check(s.value, h, port, (const git_cert_hostkey *) cert, j->hostkey_why,
                                  sizeof j->hostkey_why) == 0)
                r = 0;
        sv_secret_clear(&s);
        return r;
}

static int on_update(const char *refname, const char *status, void *data) {
        sv_push *j = data;
        if (status && !j->rejected && asprintf(&j->rejected, "%s: %s", refname, status) < 0)
                j->rejected = NULL;
        return 0;
}

/* libgit2 passes the callbacks' payload to every callback: on_update needs the job. */
static int on_update_cc(const char *refname, const char *status, void *data) {
        return on_update(refname, status, ((cred_ctx *) data)->j);
}

void sv_push_run(sv_push *j, sv_worker *w) {
        _cleanup_(git_repository_freep) git_repository *repo = NULL;
        if (gitx_open_exact(&repo, j->mirror_path, &j->err) < 0) {
                j->status = 500, j->code = "internal";
                return;
        }
        char refname[128];
        snprintf(refname, sizeof refname, "refs/heads/%s", j->branch);
        git_oid tip, base;
        if (git_reference_name_to_id(&tip, repo, refname) < 0 || git_oid_fromstr(&base, j->base_sha) < 0) {
                ns_err(&j->err, ENOENT, "the session's branch %s is not in the mirror (nothing committed yet)", j->branch);
                j->status = 409, j->code = "no_branch";
                return;
        }
        git_oid_tostr(j->sha, sizeof j->sha, &tip);
        gate g = { .j = j, .repo = repo };
        int r = run_gate(&g, &base, &tip);
        gate_clear(&g);
        if (r != 0) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddBoolToObject(o, "ok", false);
                cJSON_AddStringToObject(o, "branch", j->branch);
                cJSON_AddStringToObject(o, "sha", j->sha);
                cJSON_AddStringToObject(o, "reason", r > 0 ? g.why : j->err.msg);
                set_event(j, "push", o);
                if (r > 0)
                        ns_err(&j->err, EPERM, "push refused: %s", g.why);
                j->status = r > 0 ? 422 : 500, j->code = r > 0 ? "push_refused" : "internal";
                return;
        }
        _cleanup_(git_remote_freep) git_remote *remote = NULL;
        /* As mirror.c: the URL verbatim (no insteadOf rewriting), which also avoids libgit2 1.5's
         * leak of pcre2 match data while scanning the config for insteadOf. */
        git_remote_create_options co = GIT_REMOTE_CREATE_OPTIONS_INIT;
        co.repository = repo;
        co.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
        if ((r = git_remote_create_with_opts(&remote, j->url, &co)) < 0) {
                gitx_err(&j->err, r, "remote %s", j->url);
                j->status = 400, j->code = "bad_remote";
                return;
        }
        cred_ctx cc = { .j = j, .w = w };
        git_push_options po = GIT_PUSH_OPTIONS_INIT;
        po.callbacks.credentials = on_credentials;
        po.callbacks.certificate_check = on_certificate;
        po.callbacks.push_update_reference = on_update_cc;
        po.callbacks.payload = &cc;
        char spec[300];
        snprintf(spec, sizeof spec, "%s:%s", refname, refname); /* no '+': never forced */
        char *specs[] = { spec };
        git_strarray refspecs = { specs, 1 };
        r = git_remote_upload(remote, &refspecs, &po);
        if (r == 0)
                r = git_remote_update_tips(remote, &po.callbacks, 0, GIT_REMOTE_DOWNLOAD_TAGS_UNSPECIFIED, NULL);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "branch", j->branch);
        cJSON_AddStringToObject(o, "sha", j->sha);
        if (r < 0 && j->hostkey_why[0]) {
                ns_err(&j->err, EPERM, "push refused: %s", j->hostkey_why);
                cJSON_AddStringToObject(o, "message", j->err.msg);
                set_event(j, "error", o);
                j->status = 502, j->code = "host_key";
                return;
        }
        if (r < 0 || j->rejected) {
                if (r < 0)
                        gitx_err(&j->err, r, "push %s", j->branch);
                else
                        ns_err(&j->err, EPERM, "the remote rejected the push: %s", j->rejected);
                cJSON_AddStringToObject(o, "message", j->err.msg);
                set_event(j, "error", o);
                j->status = 409, j->code = "push_rejected";
                return;
        }
        cJSON_AddBoolToObject(o, "ok", true);
        set_event(j, "push", o);
        j->status = 200;
}

static void run_push(sv_job *job, sv_worker *w) {
        sv_push_run(&((push_job *) job)->p, w);
}

void sv_push_store_event(sv_push *j) {
        sv_server *s = j->srv;
        if (!j->event_json)
                return;
        char *red = NULL;
        ns_error e;
        if (s->redact && sv_redact_json(s->redact, j->event_json, &red) > 0) {
                free(j->event_json);
                j->event_json = red;
        }
        if (db_event_append(s->db, j->sid, j->event_type, j->event_json, NULL, NULL, &e) == 0)
                sv_ws_notify(s);
}

static void push_done(sv_job *job) {
        push_job *pj = (push_job *) job;
        sv_push *j = &pj->p;
        sv_push_store_event(j);
        if (j->code) {
                sv_req_reply_error(pj->req, j->status, j->code, "%s", j->err.msg[0] ? j->err.msg : j->code);
        } else {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "branch", j->branch);
                cJSON_AddStringToObject(o, "sha", j->sha);
                cJSON_AddStringToObject(o, "remote", j->url);
                sv_req_reply_json(pj->req, 200, o);
        }
        push_job_free(pj);
}

int sv_push_init(sv_push *j, sv_server *s, const char *sid, int *status, const char **code, ns_error *err) {
        db_session row = { 0 };
        db_repo repo = { 0 };
        *j = (sv_push){ .srv = s };
        int rc = db_session_get(s->db, sid, &row, err);
        if (rc < 0) {
                *status = rc == -ENOENT ? 404 : 500, *code = rc == -ENOENT ? "not_found" : "internal";
                return rc;
        }
        if (!row.branch || !row.base_sha) {
                *status = 409, *code = "no_branch";
                rc = ns_err(err, ENOENT, "the session has no branch yet");
        } else if ((rc = db_repo_get(s->db, row.repo_id, &repo, err)) < 0) {
                *status = 500, *code = "internal";
        } else {
                snprintf(j->sid, sizeof j->sid, "%s", sid);
                snprintf(j->repo_id, sizeof j->repo_id, "%s", row.repo_id);
                j->mirror_path = TAKE_PTR(repo.mirror_path);
                j->branch = strdup(row.branch);
                j->base_sha = strdup(row.base_sha);
                sv_repo_settings set = { 0 };
                ns_error e2;
                /* a push_url repository setting (the operator's) wins over the registered URL */
                j->url = sv_repo_settings_get(s->db, row.repo_id, &set, &e2) == 0 && set.push_url
                                 ? TAKE_PTR(set.push_url)
                                 : strdup(repo.url_or_path);
                sv_repo_settings_clear(&set);
                if (!j->mirror_path || !j->branch || !j->base_sha || !j->url) {
                        sv_push_clear(j);
                        *status = 500, *code = "internal";
                        rc = ns_err(err, ENOMEM, "out of memory");
                }
        }
        db_repo_clear(&repo);
        db_session_clear(&row);
        return rc;
}

void sv_api_session_push(sv_req *r, const sv_route_args *a) {
        push_job *j = calloc(1, sizeof *j);
        if (!j)
                return sv_req_reply_error(r, 500, "internal", "out of memory");
        int status = 500;
        const char *code = "internal";
        ns_error e;
        if (sv_push_init(&j->p, r->srv, a->id, &status, &code, &e) < 0) {
                free(j);
                return sv_req_reply_error(r, status, code, "%s", e.msg);
        }
        j->base.run = run_push;
        j->base.done = push_done;
        j->req = r;
        sv_workq_submit(r->srv->wq, &j->base);
}
