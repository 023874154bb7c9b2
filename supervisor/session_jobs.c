/* nightshift supervisor — the blocking halves of session work, run on worker threads.
 *
 * Each function reads only its job's copies of what it needs and writes only the job's outputs;
 * session.c applies the outcome on the loop thread.  Agent-made state (the working tree, its
 * .git, the process output) is touched only through sandboxd, inside the sandbox. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "fsutil.h"
#include "gitx.h"
#include "ids.h"
#include "import.h"
#include "mirror.h"
#include "identity.h"
#include "session_int.h"
#include "layers.h"
#include "setup_layer.h"
#include "sockdir.h"
#include "spare.h"
#include "worktree.h"

/* Fetches of the mirrors are serialised: two sessions of one repository must not fetch into the
 * same mirror at once, and fetching is rare enough that one lock for all is simpler than one each. */
static pthread_mutex_t fetch_lock = PTHREAD_MUTEX_INITIALIZER;

static void api_fail(sv_sjob *j, int status, const char *code, int rc) {
        j->status = status;
        j->code = code;
        j->rc = rc < 0 ? rc : -EINVAL;
}

static void dbg_repo_freep(db_repo *r) {
        db_repo_clear(r);
}

/* ---- new session --------------------------------------------------------------------------- */

static char *limits_json_for(const sv_new_session *q) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
                return NULL;
        if (q->memory)
                cJSON_AddNumberToObject(o, "memory", (double) q->memory);
        if (q->pids)
                cJSON_AddNumberToObject(o, "pids", (double) q->pids);
        if (q->cpus > 0)
                cJSON_AddNumberToObject(o, "cpus", q->cpus);
        if (q->net_private)
                cJSON_AddStringToObject(o, "net", "private");
        if (q->net_proxy) {
                cJSON_AddStringToObject(o, "net", "proxy");
                if (q->egress_json)
                        cJSON_AddItemToObject(o, "egress", cJSON_Parse(q->egress_json));
        }
        if (q->n_connects) {
                cJSON *a = cJSON_AddArrayToObject(o, "connect");
                for (int i = 0; a && i < q->n_connects; i++)
                        cJSON_AddItemToArray(a, cJSON_CreateNumber(q->connects[i]));
        }
        char *s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        return s;
}

/* Milliseconds on the monotonic clock, with a fraction: for the phase timings in the debug log. */
static double now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

static void run_new_session(sv_sjob *j, sv_worker *w) {
        const sv_config *cfg = w->cfg;
        sv_new_session *q = j->req;
        const agent_adapter *ad = agent_find(q->agent);
        if (!ad) {
                ns_err(&j->err, EINVAL, "unknown agent '%s' (command, claude, codex or opencode)", q->agent);
                return api_fail(j, 400, "unknown_agent", -EINVAL);
        }
        if (ad->cli_relpath) {
                _cleanup_free_ char *cli = NULL;
                if (asprintf(&cli, "%s/%s", cfg->agents_dir, ad->cli_relpath) < 0)
                        return api_fail(j, 500, "internal", ns_err(&j->err, ENOMEM, "out of memory"));
                if (access(cli, X_OK) < 0) {
                        ns_err(&j->err, ENOENT, "agent '%s' is not installed (no %s; run rootfs/agents/install.sh)",
                               q->agent, cli);
                        return api_fail(j, 400, "agent_not_installed", -ENOENT);
                }
        }
        _cleanup_(dbg_repo_freep) db_repo repo = { 0 };
        int r = sv_id_valid(q->repo, SV_ID_PREFIX_REPO) ? db_repo_get(w->db, q->repo, &repo, &j->err)
                                                         : db_repo_get_by_name(w->db, q->repo, &repo, &j->err);
        if (r == -ENOENT) {
                ns_err(&j->err, ENOENT, "unknown repository '%s'", q->repo);
                return api_fail(j, 404, "repo_not_found", r);
        }
        if (r < 0)
                return api_fail(j, 500, "internal", r);

        double t0 = now_ms();
        pthread_mutex_lock(&fetch_lock);
        _cleanup_free_ char *default_branch = NULL;
        r = mirror_fetch(repo.mirror_path, repo.url_or_path, &default_branch, &j->err);
        pthread_mutex_unlock(&fetch_lock);
        log_debug("repo %s: fetched in %.1f ms", repo.id, now_ms() - t0);
        if (r < 0) {
                ns_err_wrap(&j->err, "fetching %s", repo.url_or_path);
                return api_fail(j, 502, "fetch_failed", r);
        }
        const char *base = q->base ? q->base : default_branch ? default_branch : "HEAD";
        char sha[MIRROR_SHA_HEX_LEN + 1];
        r = mirror_resolve(repo.mirror_path, base, sha, &j->err);
        if (r < 0)
                return api_fail(j, r == -ENOENT || r == -EINVAL ? 400 : 500,
                                r == -ENOENT || r == -EINVAL ? "base_not_found" : "internal", r);

        _cleanup_free_ char *limits = limits_json_for(q);
        _cleanup_free_ char *network = strdup(q->net_private ? "private" : q->net_proxy ? "proxy" : "none");
        if (!network)
                return api_fail(j, 500, "internal", ns_err(&j->err, ENOMEM, "out of memory"));
        db_session s = { 0 };
        s.network = network;
        snprintf(s.repo_id, sizeof s.repo_id, "%s", repo.id);
        s.base_ref = (char *) base;
        s.agent = q->agent;
        s.once = q->once;
        s.model = q->model;
        s.title = q->title;
        s.env_json = q->env_json;
        s.limits_json = limits;
        if ((r = db_begin(w->db, &j->err)) < 0)
                return api_fail(j, 500, "internal", r);
        if ((r = db_session_insert(w->db, &s, &j->err)) < 0 ||
            (r = db_session_set_base_sha(w->db, s.id, sha, &j->err)) < 0 ||
            (r = db_prompt_enqueue(w->db, s.id, q->prompt, NULL, NULL, &j->err)) < 0 ||
            (r = db_commit(w->db, &j->err)) < 0) {
                db_rollback(w->db);
                free(s.branch); /* filled in by db_session_insert (network: freed by its cleanup) */
                return api_fail(j, r == -E2BIG || r == -EINVAL ? 400 : 500, r == -E2BIG ? "too_large" : "invalid", r);
        }
        free(s.branch);
        snprintf(j->sid, sizeof j->sid, "%s", s.id);
        db_session row = { 0 };
        if ((r = db_session_get(w->db, s.id, &row, &j->err)) < 0)
                return api_fail(j, 500, "internal", r);
        j->body = sv_session_json(&row);
        db_session_clear(&row);
        j->status = 201;
        j->rc = 0;
}

/* ---- repositories -------------------------------------------------------------------------- */

static char *name_from_source(const char *src) {
        const char *b = strrchr(src, '/');
        b = b ? b + 1 : src;
        const char *c = strrchr(b, ':');
        if (c)
                b = c + 1;
        size_t n = strlen(b);
        if (n > 4 && !strcmp(b + n - 4, ".git"))
                n -= 4;
        char *name = strndup(b, n ? n : 4);
        if (name && !n)
                strcpy(name, "repo");
        for (char *p = name; p && *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                      *p == '_' || *p == '.'))
                        *p = '-';
        return name;
}

static void run_repo_register(sv_sjob *j, sv_worker *w) {
        _cleanup_free_ char *src = NULL, *path = NULL, *default_branch = NULL;
        int r = mirror_source_normalize(j->url, &src, &j->err);
        if (r < 0)
                return api_fail(j, 400, "invalid_repo", r);
        db_repo rr = { 0 };
        if ((r = sv_id_new(SV_ID_PREFIX_REPO, rr.id, &j->err)) < 0 ||
            (r = mirror_path_for(w->cfg->data_dir, rr.id, &path, &j->err)) < 0)
                return api_fail(j, 500, "internal", r);
        _cleanup_free_ char *name = j->name ? strdup(j->name) : name_from_source(src);
        if (!name)
                return api_fail(j, 500, "internal", ns_err(&j->err, ENOMEM, "out of memory"));
        db_repo existing = { 0 };
        if (db_repo_get_by_name(w->db, name, &existing, NULL) == 0) {
                db_repo_clear(&existing);
                ns_err(&j->err, EEXIST, "a repository named '%s' exists", name);
                return api_fail(j, 409, "repo_exists", -EEXIST);
        }
        pthread_mutex_lock(&fetch_lock);
        r = mirror_create(path, src, &default_branch, &j->err);
        pthread_mutex_unlock(&fetch_lock);
        if (r < 0)
                return api_fail(j, 400, "clone_failed", r);
        rr.name = name;
        rr.url_or_path = src;
        rr.mirror_path = path;
        rr.default_branch = default_branch;
        if ((r = db_repo_insert(w->db, &rr, &j->err)) < 0) {
                ns_error e2;
                _cleanup_close_ int dfd = fs_open_trusted_dir(w->cfg->data_dir, &e2);
                _cleanup_close_ int mfd = dfd >= 0 ? fs_open_dir_beneath(dfd, "mirrors", &e2) : -1;
                char leaf[SV_ID_LEN + 8];
                snprintf(leaf, sizeof leaf, "%s.git", rr.id);
                if (mfd >= 0)
                        fs_remove_tree_at(mfd, leaf, &e2);
                return api_fail(j, r == -EEXIST ? 409 : 500, r == -EEXIST ? "repo_exists" : "internal", r);
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", rr.id);
        cJSON_AddStringToObject(o, "name", name);
        cJSON_AddStringToObject(o, "url", src);
        if (default_branch)
                cJSON_AddStringToObject(o, "default_branch", default_branch);
        else
                cJSON_AddNullToObject(o, "default_branch");
        j->body = o;
        j->status = 201;
        j->rc = 0;
}

/* ---- provisioning -------------------------------------------------------------------------- */

/* .nightshift/config and setup.sh at the base commit, read from the mirror (the repository's
 * content as the user pushed it, not anything the agent made). */
typedef struct repo_settings {
        bool has_setup;
        int64_t setup_timeout_s;
        bool setup_nonfatal;
        char **env; /* "K=V" */
        size_t n_env;
        char *lockfiles[SETUP_LOCKFILES_MAX]; /* `lockfiles`: what the setup layer's key covers */
        size_t n_lockfiles;
        char *cache_dirs[SETUP_CACHE_DIRS_MAX];    /* `cache_dirs`: as given (relative) */
        char *overlays[SETUP_CACHE_DIRS_MAX];      /* the same as /workspace/<dir> */
        size_t n_cache_dirs;
        char *base; /* `base`: a layer in sandboxd's layers dir instead of the host layer, or NULL */
        setup_key_inputs key;
        char *git_name, *git_email; /* identity templates (identity.h), NULL = the server's */
} repo_settings;

static void repo_settings_clear(repo_settings *rs) {
        for (size_t i = 0; i < rs->n_env; i++)
                free(rs->env[i]);
        free(rs->env);
        for (size_t i = 0; i < rs->n_lockfiles; i++)
                free(rs->lockfiles[i]);
        for (size_t i = 0; i < rs->n_cache_dirs; i++) {
                free(rs->cache_dirs[i]);
                free(rs->overlays[i]);
        }
        free(rs->base);
        free(rs->git_name);
        free(rs->git_email);
        *rs = (repo_settings){ 0 };
}

/* A layer name as sandboxd takes it ([a-z0-9][a-z0-9._-]{0,63}), or "host". */
static bool base_layer_ok(const char *s) {
        size_t n = strlen(s);
        return n >= 1 && n <= 64 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789") >= 1 &&
               strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* `lockfiles = a/package-lock.json requirements.txt`, `cache_dirs = node_modules .venv` (spaces or
 * commas between repository-relative paths). */
static int parse_paths(const char *key, char **out, size_t *n, size_t max, char *val, int lineno, ns_error *err) {
        for (char *save = NULL, *p = strtok_r(val, " \t,", &save); p; p = strtok_r(NULL, " \t,", &save)) {
                if (!setup_lockfile_path_ok(p) || strlen(p) > 200)
                        return ns_err(err, EINVAL, ".nightshift/config:%d: %s entry '%.64s' is not a clean relative path",
                                      lineno, key, p);
                if (*n >= max)
                        return ns_err(err, E2BIG, ".nightshift/config:%d: at most %zu %s", lineno, max, key);
                if (!(out[*n] = strdup(p)))
                        return ns_err(err, ENOMEM, "out of memory");
                (*n)++;
        }
        return 0;
}

static bool env_key_ok(const char *k, size_t n) {
        if (!n || n > 128 || (k[0] >= '0' && k[0] <= '9'))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((k[i] >= 'A' && k[i] <= 'Z') || (k[i] >= 'a' && k[i] <= 'z') || (k[i] >= '0' && k[i] <= '9') ||
                      k[i] == '_'))
                        return false;
        return true;
}

static int parse_repo_config(repo_settings *rs, const char *text, size_t len, ns_error *err) {
        _cleanup_free_ char *copy = strndup(text, len);
        if (!copy)
                return ns_err(err, ENOMEM, "out of memory");
        int lineno = 0;
        for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                lineno++;
                line += strspn(line, " \t");
                line[strcspn(line, "\r")] = '\0';
                if (!*line || *line == '#')
                        continue;
                char *eq = strchr(line, '=');
                if (!eq)
                        return ns_err(err, EINVAL, ".nightshift/config:%d: expected key = value", lineno);
                char *kend = eq;
                while (kend > line && (kend[-1] == ' ' || kend[-1] == '\t'))
                        kend--;
                *kend = '\0';
                char *val = eq + 1 + strspn(eq + 1, " \t");
                if (!strcmp(line, "setup_timeout")) {
                        char *end;
                        long long v = strtoll(val, &end, 10);
                        if (*end || v < 1 || v > 86400)
                                return ns_err(err, EINVAL, ".nightshift/config:%d: setup_timeout must be 1..86400", lineno);
                        rs->setup_timeout_s = v;
                } else if (!strcmp(line, "setup_nonfatal")) {
                        if (strcmp(val, "true") && strcmp(val, "false"))
                                return ns_err(err, EINVAL, ".nightshift/config:%d: setup_nonfatal must be true or false",
                                              lineno);
                        rs->setup_nonfatal = !strcmp(val, "true");
                } else if (!strncmp(line, "env.", 4) && env_key_ok(line + 4, strlen(line + 4))) {
                        if (rs->n_env >= 64)
                                return ns_err(err, E2BIG, ".nightshift/config: at most 64 env entries");
                        char **nv = realloc(rs->env, (rs->n_env + 1) * sizeof *nv);
                        if (!nv)
                                return ns_err(err, ENOMEM, "out of memory");
                        rs->env = nv;
                        if (asprintf(&rs->env[rs->n_env], "%s=%s", line + 4, val) < 0)
                                return ns_err(err, ENOMEM, "out of memory");
                        rs->n_env++;
                } else if (!strcmp(line, "lockfiles") || !strcmp(line, "cache_dirs")) {
                        bool lock = !strcmp(line, "lockfiles");
                        int r = lock ? parse_paths(line, rs->lockfiles, &rs->n_lockfiles, SETUP_LOCKFILES_MAX, val,
                                                   lineno, err)
                                     : parse_paths(line, rs->cache_dirs, &rs->n_cache_dirs, SETUP_CACHE_DIRS_MAX, val,
                                                   lineno, err);
                        if (r < 0)
                                return r;
                } else if (!strcmp(line, "base")) {
                        if (!base_layer_ok(val))
                                return ns_err(err, EINVAL, ".nightshift/config:%d: base '%.64s' is not a layer name", lineno,
                                              val);
                        free(rs->base);
                        rs->base = NULL;
                        if (strcmp(val, "host") && !(rs->base = strdup(val)))
                                return ns_err(err, ENOMEM, "out of memory");
                } else if (!strcmp(line, "git_name") || !strcmp(line, "git_email")) {
                        char **dst = line[4] == 'n' ? &rs->git_name : &rs->git_email;
                        if (!sv_identity_template_ok(val))
                                return ns_err(err, EINVAL, ".nightshift/config:%d: %s is not a valid identity template",
                                              lineno, line);
                        free(*dst);
                        if (!(*dst = strdup(val)))
                                return ns_err(err, ENOMEM, "out of memory");
                } else if (!strcmp(line, "push") || !strcmp(line, "pr") || !strcmp(line, "protected_paths")) {
                        /* Read by later features (pushes); accepted here. */
                } else {
                        return ns_err(err, EINVAL, ".nightshift/config:%d: unknown key '%s'", lineno, line);
                }
        }
        return 0;
}

static int read_config_blob(git_repository *repo, const git_tree_entry *e, repo_settings *rs, ns_error *err);

static int read_repo_settings(const char *mirror, const char *sha, repo_settings *rs, ns_error *err) {
        __attribute__((cleanup(git_repository_freep))) git_repository *repo = NULL;
        __attribute__((cleanup(git_commit_freep))) git_commit *commit = NULL;
        __attribute__((cleanup(git_tree_freep))) git_tree *tree = NULL;
        git_oid oid;
        int r = gitx_open_exact(&repo, mirror, err);
        if (r < 0)
                return r;
        if ((r = git_oid_fromstr(&oid, sha)) < 0 || (r = git_commit_lookup(&commit, repo, &oid)) < 0 ||
            (r = git_commit_tree(&tree, commit)) < 0)
                return gitx_err(err, r, "base commit %s", sha);
        git_tree_entry *e = NULL;
        if (git_tree_entry_bypath(&e, tree, ".nightshift/setup.sh") == 0) {
                rs->has_setup = git_tree_entry_type(e) == GIT_OBJECT_BLOB;
                git_oid_tostr(rs->key.setup_oid, sizeof rs->key.setup_oid, git_tree_entry_id(e));
                git_tree_entry_free(e);
        }
        if (git_tree_entry_bypath(&e, tree, ".nightshift/config") != 0)
                return 0;
        r = read_config_blob(repo, e, rs, err);
        git_tree_entry_free(e);
        if (r < 0)
                return r;
        /* The lockfiles' contents are part of the setup layer's key: their blob ids at the base. */
        rs->key.n_lockfiles = rs->n_lockfiles;
        for (size_t i = 0; i < rs->n_lockfiles; i++) {
                rs->key.lockfiles[i] = rs->lockfiles[i];
                rs->key.lock_oids[i][0] = '\0';
                if (git_tree_entry_bypath(&e, tree, rs->lockfiles[i]) == 0) {
                        if (git_tree_entry_type(e) == GIT_OBJECT_BLOB)
                                git_oid_tostr(rs->key.lock_oids[i], sizeof rs->key.lock_oids[i], git_tree_entry_id(e));
                        git_tree_entry_free(e);
                }
        }
        rs->key.env = (const char *const *) rs->env;
        rs->key.n_env = rs->n_env;
        rs->key.base = rs->base;
        rs->key.cache_dirs = (const char *const *) rs->cache_dirs;
        rs->key.n_cache_dirs = rs->n_cache_dirs;
        for (size_t i = 0; i < rs->n_cache_dirs; i++)
                if (asprintf(&rs->overlays[i], "/workspace/%s", rs->cache_dirs[i]) < 0) {
                        rs->overlays[i] = NULL;
                        return ns_err(err, ENOMEM, "out of memory");
                }
        return 0;
}

static int read_config_blob(git_repository *repo, const git_tree_entry *e, repo_settings *rs, ns_error *err) {
        __attribute__((cleanup(git_object_freep))) git_object *obj = NULL;
        int r = git_tree_entry_to_object(&obj, repo, e);
        if (r < 0 || git_object_type(obj) != GIT_OBJECT_BLOB)
                return 0;
        const git_blob *blob = (const git_blob *) obj;
        git_object_size_t size = git_blob_rawsize(blob);
        if (size > 64 * 1024)
                return ns_err(err, EFBIG, ".nightshift/config is larger than 64 KiB");
        return parse_repo_config(rs, git_blob_rawcontent(blob), (size_t) size, err);
}

static int limits_from_json(const char *json, const sv_config *cfg, sbx_create_spec *spec, int *connects,
                            size_t *n_connects, char proxy_path[static SV_SOCKET_PATH_MAX + 1]) {
        spec->memory = cfg->memory_bytes;
        spec->pids = cfg->pids;
        spec->cpus = cfg->cpus;
        size_t n = 0;
        for (int i = 0; i < cfg->n_connects; i++)
                connects[n++] = cfg->connects[i];
        cJSON *o = json ? cJSON_Parse(json) : NULL;
        if (o) {
                const cJSON *v;
                if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(o, "memory")))
                        spec->memory = (int64_t) v->valuedouble;
                if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(o, "pids")))
                        spec->pids = (int64_t) v->valuedouble;
                if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(o, "cpus")))
                        spec->cpus = v->valuedouble;
                if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(o, "net")) && !strcmp(v->valuestring, "private"))
                        spec->net = "private";
                /* network "proxy": the session's egress proxy appears inside at 127.0.0.1:3128; the
                 * sandbox has no other way out (net "none": no link, no route). */
                if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(o, "proxy_port")) && v->valuedouble >= 1 &&
                    v->valuedouble <= 65535)
                        spec->proxy_port = (int) v->valuedouble;
                if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(o, "proxy_path")) &&
                    strlen(v->valuestring) <= SV_SOCKET_PATH_MAX) {
                        snprintf(proxy_path, SV_SOCKET_PATH_MAX + 1, "%s", v->valuestring);
                        spec->proxy_path = proxy_path;
                }
                const cJSON *it;
                cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(o, "connect")) {
                        if (cJSON_IsNumber(it) && n < 2 * SV_MAX_CONNECTS)
                                connects[n++] = (int) it->valuedouble;
                }
                cJSON_Delete(o);
        }
        *n_connects = n;
        return 0;
}

/* The sandbox of a session being provisioned, made on a thread of its own while the worker checks
 * out the working tree: it needs the tree's directory, not its files (they appear through the
 * bind), and nothing runs in it before both are done. */
typedef struct sandbox_start {
        sv_sjob *j;
        sv_worker *w;
        sbx_create_spec spec;
        sbx_bind binds[2];
        int connects[2 * SV_MAX_CONNECTS];
        char proxy_path[SV_SOCKET_PATH_MAX + 1];
        char *tree;
        pthread_t thread;
        bool started;
        int rc;
        ns_error err;
} sandbox_start;

static void *sandbox_start_run(void *arg) {
        sandbox_start *ss = arg;
        ns_client *c;
        /* The worker does no sandboxd call until it joins: its connection is this thread's. */
        ss->rc = sv_worker_sandboxd(ss->w, &c, &ss->err);
        if (ss->rc >= 0 && (ss->rc = sbx_create(c, &ss->spec, ss->j->sandbox, &ss->err)) < 0)
                sv_worker_sandboxd_reset(ss->w, ss->rc);
        return NULL;
}

/* The cache dirs' mount points in the new tree (ours: nothing of the agent's has run in it). */
static void make_cache_dirs(const char *tree, const char *const *overlays, size_t n) {
        for (size_t i = 0; i < n; i++) {
                char path[4096];
                snprintf(path, sizeof path, "%s%s", tree, overlays[i] + strlen("/workspace"));
                for (char *p = path + strlen(tree) + 1; (p = strchr(p, '/')); p++) {
                        *p = '\0';
                        mkdir(path, 0755);
                        *p = '/';
                }
                mkdir(path, 0755);
        }
}

static void sandbox_start_begin(void *ctx, const char *tree) {
        sandbox_start *ss = ctx;
        if (!(ss->tree = strdup(tree)))
                return;
        make_cache_dirs(tree, ss->spec.overlays, ss->spec.n_overlays);
        ss->spec.workspace = ss->tree;
        ss->started = pthread_create(&ss->thread, NULL, sandbox_start_run, ss) == 0;
}

/* Run .nightshift/setup.sh in the session's sandbox; its exit and output go to the job. */
static int run_setup(sv_sjob *j, sv_worker *w, ns_client **c, const repo_settings *rs) {
        const char *argv[] = { "/bin/sh", "-e", "/workspace/.nightshift/setup.sh", NULL };
        sbx_exec_spec ex = { .argv = argv, .env = (const char *const *) rs->env, .timeout_s = rs->setup_timeout_s };
        sbx_output o = { 0 };
        int r = sbx_run(*c, j->sandbox, &ex, NULL, 0, -1, SV_SETUP_OUTPUT_MAX, SV_SETUP_OUTPUT_MAX, &o, &j->err);
        if (r < 0) {
                sbx_output_clear(&o);
                sv_worker_sandboxd_reset(w, r);
                *c = w->sbx; /* NULL when the connection was dropped */
                return r;
        }
        /* A timed-out setup is a failure, never a layer. */
        j->setup_exit = o.exit.signal ? 128 + o.exit.signal : o.exit.code;
        if (o.exit.flags & NS_EXIT_TIMEOUT && j->setup_exit == 0)
                j->setup_exit = 124;
        j->setup_nonfatal = rs->setup_nonfatal;
        free(j->setup_output);
        if (asprintf(&j->setup_output, "%s%s%s%s", o.out, o.errout,
                     o.exit.flags & NS_EXIT_TIMEOUT ? "\n[setup timed out]" : "",
                     o.truncated ? "\n[output truncated]" : "") < 0)
                j->setup_output = NULL;
        sbx_output_clear(&o);
        return 0;
}

/* The layers of a session's sandbox: the repository's base image (none: the host layer, which
 * needs naming only below another layer) and the setup layer (may be NULL).  Returns the count. */
static size_t layer_stack(const char *base, const char *setup_layer, const char **out) {
        size_t n = 0;
        if (base)
                out[n++] = base;
        else if (setup_layer)
                out[n++] = "@host";
        if (setup_layer)
                out[n++] = setup_layer;
        return n;
}

/* After a successful setup: snapshot the sandbox into the setup layer `layer` and give the
 * session a new sandbox that stacks it.  When the layer cannot be made, the session goes on
 * without it: in its own sandbox if the snapshot refused before touching it, else in a fresh one
 * where setup runs again. */
static int keep_setup_layer(sv_sjob *j, sv_worker *w, ns_client **c, sbx_create_spec *spec, const char *layer,
                            const char **stack, const repo_settings *rs) {
        ns_error le;
        int r = sbx_snapshot(*c, j->sandbox, layer, &le);
        bool gone = r == 0;
        if (r < 0 && le.code == EEXIST) {
                /* Another session made the same layer meanwhile: ours is still whole, and stays. */
                log_debug("session %s: setup layer %s was made meanwhile", j->sid, layer);
                return 0;
        }
        if (r < 0) {
                log_warn("session %s: setup layer %s not kept: %s", j->sid, layer, le.msg);
                gone = sbx_stats(*c, j->sandbox, NULL, &le) == -ENOENT;
                if (!gone)
                        return 0;
        }
        j->sandbox[0] = '\0';
        spec->workspace = j->workspace;
        spec->layers = stack;
        spec->n_layers = layer_stack(rs->base, r == 0 ? layer : NULL, stack);
        int cr = sbx_create(*c, spec, j->sandbox, &j->err);
        if (cr < 0) {
                j->sandbox[0] = '\0';
                return cr;
        }
        if (r == 0) {
                snprintf(j->setup_layer, sizeof j->setup_layer, "%s", layer);
                /* The store grew: keep it within its size and age limits (ours is in use now). */
                const sv_config *cfg = w->cfg;
                layers_gc_policy policy = { .max_bytes = (uint64_t) cfg->layers_max_bytes,
                                            .max_age_s = cfg->layers_max_age_days * 86400 };
                layers_gc_result res;
                if ((policy.max_bytes || policy.max_age_s) && layers_gc(*c, geteuid(), &policy, &res, NULL, &le) == 0 &&
                    res.removed)
                        log_info("layer store: %zu unused layers removed (%llu bytes)", res.removed,
                                 (unsigned long long) res.bytes_removed);
                return 0;
        }
        return run_setup(j, w, c, rs);
}

static void run_provision(sv_sjob *j, sv_worker *w) {
        const sv_config *cfg = w->cfg;
        j->setup_exit = -1;
        worktree_paths paths = { 0 };
        repo_settings rs = { .setup_timeout_s = cfg->setup_timeout_s };
        ns_client *c = NULL;
        double t0 = now_ms(), t1 = 0, t2 = 0;
        int r = read_repo_settings(j->mirror_path, j->base_sha, &rs, &j->err);
        if (r < 0)
                goto out;
        /* Only this session's mirror is visible (its objects back the tree's alternates), at the
         * same absolute path; other repositories' mirrors stay out of reach. */
        sandbox_start ss = { .j = j, .w = w };
        ss.binds[0] = (sbx_bind){ j->mirror_path, j->mirror_path };
        size_t nb = 1;
        struct stat st;
        if (stat(cfg->agents_dir, &st) == 0 && S_ISDIR(st.st_mode))
                ss.binds[nb++] = (sbx_bind){ cfg->agents_dir, SV_AGENTS_MOUNT };
        ss.spec = (sbx_create_spec){ .ro_binds = ss.binds, .n_ro_binds = nb, .connects = ss.connects };
        limits_from_json(j->limits_json, cfg, &ss.spec, ss.connects, &ss.spec.n_connects, ss.proxy_path);
        /* The model-API proxy (modelproxy.h), for agents that talk to a model: the one way their
         * key-less requests get a key. */
        ss.spec.model_path = cfg->model_proxy_path;
        /* Warm start: a layer left by an earlier run of this very setup (same key) replaces it. */
        char layer[SETUP_LAYER_NAME_MAX + 1] = "";
        const char *stack[2];
        ss.spec.layers = stack;
        ss.spec.n_layers = layer_stack(rs.base, NULL, stack);
        bool warm = false;
        if (rs.has_setup && cfg->setup_layers && setup_layer_name(&rs.key, layer, &j->err) == 0) {
                ns_error le;
                bool exists = false;
                if ((r = sv_worker_sandboxd(w, &c, &le)) < 0 || (r = sbx_layer_exists(c, layer, &exists, &le)) < 0) {
                        log_debug("session %s: no setup layers (%s): setup runs every time", j->sid, le.msg);
                        layer[0] = '\0';
                } else {
                        /* The cache dirs are copy-on-write in the setup's sandbox and in every
                         * sandbox stacking its layer: what setup put there travels in the layer. */
                        ss.spec.overlays = (const char *const *) rs.overlays;
                        ss.spec.n_overlays = rs.n_cache_dirs;
                }
                if (exists) {
                        warm = true;
                        ss.spec.n_layers = layer_stack(rs.base, layer, stack);
                        snprintf(j->setup_layer, sizeof j->setup_layer, "%s", layer);
                        j->setup_warm = true;
                }
                c = NULL; /* the thread below owns the worker's connection until it is joined */
        }
        /* A spare tree of the repository when one is ready (spare.h), else a fresh checkout.  (The
         * pool is made before the workers start and freed after they stop.) */
        sv_spares *spares = j->srv->spares;
        char spare[WORKTREE_SPARE_NAME_LEN + 1], spare_sha[MIRROR_SHA_HEX_LEN + 1];
        double ts = now_ms();
        r = 1;
        if (sv_spares_take(spares, j->mirror_path, spare, spare_sha)) {
                r = worktree_spare_adopt(cfg->workspace_root, spare, spare_sha, j->sid, j->mirror_path, j->base_sha,
                                         sandbox_start_begin, &ss, &paths, &j->err);
                if (r == 1) {
                        log_info("session %s: spare tree %s unusable (%s): checking out afresh", j->sid, spare, j->err.msg);
                        ns_err_clear(&j->err);
                        sv_spares_unusable(spares);
                } else if (r == 0) {
                        log_debug("session %s: working tree from spare %s (at %.12s, base %.12s) in %.1f ms", j->sid, spare,
                                  spare_sha, j->base_sha, now_ms() - ts);
                }
        }
        if (r == 1)
                r = worktree_create_with(cfg->workspace_root, j->sid, j->mirror_path, j->base_sha, sandbox_start_begin,
                                         &ss, &paths, &j->err);
        t1 = now_ms();
        if (ss.started) {
                pthread_join(ss.thread, NULL);
                if (r == 0 && ss.rc < 0) {
                        r = ss.rc;
                        j->err = ss.err;
                }
        }
        free(ss.tree);
        if (r < 0)
                goto out;
        /* The session's identity, in its own git config before anything of the session runs. */
        if ((r = sv_identity_expand(rs.git_name ? rs.git_name : cfg->git_name_template, j->sid, j->agent_name,
                                    &j->git_name, &j->err)) < 0 ||
            (r = sv_identity_expand(rs.git_email ? rs.git_email : cfg->git_email_template, j->sid, j->agent_name,
                                    &j->git_email, &j->err)) < 0 ||
            (r = worktree_set_identity(paths.tree, j->git_name, j->git_email, &j->err)) < 0)
                goto out;
        j->workspace = TAKE_PTR(paths.tree);
        j->gitdir = TAKE_PTR(paths.gitdir);
        if ((r = sv_worker_sandboxd(w, &c, &j->err)) < 0)
                goto out;
        if (!ss.started) { /* no thread could be made: in turn */
                make_cache_dirs(j->workspace, ss.spec.overlays, ss.spec.n_overlays);
                ss.spec.workspace = j->workspace;
                if ((r = sbx_create(c, &ss.spec, j->sandbox, &j->err)) < 0) {
                        sv_worker_sandboxd_reset(w, r);
                        goto out;
                }
        }
        t2 = now_ms();
        if (rs.has_setup && !warm) {
                if ((r = run_setup(j, w, &c, &rs)) < 0)
                        goto out;
                /* A setup that succeeded becomes the layer of its key: this session's sandbox is
                 * replaced by one that stacks it, exactly as the next session's will be. */
                if (j->setup_exit == 0 && layer[0] && (r = keep_setup_layer(j, w, &c, &ss.spec, layer, stack, &rs)) < 0)
                        goto out;
        }
        /* The repository's env.* settings travel to every turn through the job's env. */
        if (rs.n_env) {
                j->env = calloc(rs.n_env + 1, sizeof *j->env);
                for (size_t i = 0; j->env && i < rs.n_env; i++)
                        j->env[i] = TAKE_PTR(rs.env[i]);
        }
        r = 0;
        /* The next session of the repository most likely starts where this one did. */
        sv_spares_want(spares, j->mirror_path, j->base_sha);
        log_debug("session %s: provisioned in %.1f ms (settings and working tree %.1f, sandbox %.1f, setup %.1f)", j->sid,
                  now_ms() - t0, t1 - t0, t2 - t1, now_ms() - t2); /* the sandbox: what was left after the tree */
out:
        if (r < 0 && j->sandbox[0]) {
                /* Made (perhaps by the thread) before something else failed: not left behind. */
                ns_error e2;
                if (c || sv_worker_sandboxd(w, &c, &e2) == 0)
                        sbx_destroy(c, j->sandbox, NULL, &e2);
                j->sandbox[0] = '\0';
        }
        worktree_paths_clear(&paths);
        repo_settings_clear(&rs);
        j->rc = r;
}

/* ---- turns --------------------------------------------------------------------------------- */

static void run_exec(sv_sjob *j, sv_worker *w) {
        ns_client *c;
        int r = sv_worker_sandboxd(w, &c, &j->err);
        if (r < 0) {
                j->rc = r;
                return;
        }
        sbx_exec_spec ex = { .argv = (const char *const *) j->argv, .env = (const char *const *) j->env };
        j->stream_fd = -1;
        if ((r = sbx_exec(c, j->sandbox, &ex, &j->proc, &j->pid, &j->stream_fd, &j->err)) < 0) {
                sv_worker_sandboxd_reset(w, r);
                j->rc = r;
                return;
        }
        if ((r = sbx_stdin_all(j->stream_fd, j->stdin_data, j->stdin_len, &j->err)) < 0) {
                ns_error e2;
                sbx_signal(c, j->sandbox, j->proc, SIGKILL, &e2);
        }
        j->rc = r; /* on failure done() still gets the fd and reads the exit */
}

/* Inside the sandbox, as the agent: stage everything, commit it when something changed (the
 * message on stdin, the identity from GIT_* variables), print the tip.  Nothing of this runs on
 * the host; the agent's hooks are switched off only so that they cannot veto our commit. */
static const char commit_script[] =
        /* An interrupted turn's tools may outlive the agent: the CLIs start them detached (a
         * session of their own) and orphan them.  End every process in the sandbox but init and
         * this shell (builtins only, so nothing of ours is caught). */
        "if [ -n \"${NS_KILL_LEFTOVERS:-}\" ]; then for p in /proc/[0-9]*; do p=${p#/proc/};\n"
        "  [ \"$p\" = 1 ] || [ \"$p\" = $$ ] || kill -KILL \"$p\" 2>/dev/null; done; fi\n"
        "cd /workspace || exit 90\n"
        /* A lock that no process has open is a killed git's (a commit cut short by a restart of
         * the supervisor or a timeout); git would refuse every later commit over it.  A live git
         * holds its lock open, but for the instant between closing and renaming it: two looks
         * 0.2 s apart do not both land there.  Builtins only ([ -ef ] compares the inode an fd
         * link leads to); fds of processes of another uid (root's) are not visible here. */
        "held() { for f in /proc/[0-9]*/fd/*; do [ \"$f\" -ef \"$1\" ] && return 0; done; return 1; }\n"
        "for l in .git/index.lock .git/HEAD.lock .git/refs/heads/*.lock .git/refs/heads/*/*.lock; do\n"
        "  if [ -e \"$l\" ] && ! held \"$l\" && sleep 0.2 && [ -e \"$l\" ] && ! held \"$l\"; then rm -f \"$l\"; fi; done\n"
        "git add -A >&2 || exit 91\n"
        "if ! git diff --cached --quiet; then git -c core.hooksPath=/dev/null commit -q --no-verify -F - >&2 || exit 92; fi\n"
        "git rev-parse --verify -q HEAD || exit 93\n";

static bool sha_ok(const char *s, size_t n) {
        if (n != 40)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

static void run_commit(sv_sjob *j, sv_worker *w) {
        /* Declared before the first goto: a cleanup variable must not be jumped over. */
        _cleanup_free_ char *revs = NULL;
        ns_client *c;
        sbx_output o = { 0 };
        import_result res = { 0 };
        int tmp = -1;
        int r = sv_worker_sandboxd(w, &c, &j->err);
        if (r < 0)
                goto out;
        const char *argv[] = { "/bin/sh", "-c", commit_script, NULL };
        sbx_exec_spec ex = { .argv = argv, .env = (const char *const *) j->env, .timeout_s = 600 };
        const char *msg = j->message && *j->message ? j->message : "nightshift turn";
        if ((r = sbx_run(c, j->sandbox, &ex, msg, strlen(msg), -1, 4096, 16384, &o, &j->err)) < 0) {
                sv_worker_sandboxd_reset(w, r);
                goto out;
        }
        if (o.exit.code != 0 || o.exit.signal) {
                r = ns_err(&j->err, EIO, "commit in the sandbox failed (exit %d): %.200s", o.exit.code, o.errout);
                goto out;
        }
        size_t n = strcspn(o.out, "\n");
        if (!sha_ok(o.out, n)) {
                r = ns_err(&j->err, EPROTO, "commit in the sandbox printed no commit id");
                goto out;
        }
        memcpy(j->new_tip, o.out, 40);
        j->new_tip[40] = '\0';
        char old[MIRROR_SHA_HEX_LEN + 1];
        ns_error e2;
        if (mirror_branch_tip(j->mirror_path, j->branch, old, &e2) < 0)
                snprintf(old, sizeof old, "%s", j->base_sha);
        if (!strcmp(old, j->new_tip)) {
                r = 0; /* nothing new since the last import */
                goto out;
        }
        tmp = open(w->cfg->data_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (tmp < 0) {
                r = ns_err_sys(&j->err, errno, "temporary file in %s", w->cfg->data_dir);
                goto out;
        }
        const char *pack_argv[] = { "git", "pack-objects", "--revs", "--stdout", "-q", NULL };
        sbx_exec_spec pex = { .argv = pack_argv, .env = (const char *const *) j->env, .timeout_s = 600 };
        if (asprintf(&revs, "%s\n^%s\n", j->new_tip, old) < 0) {
                r = ns_err(&j->err, ENOMEM, "out of memory");
                goto out;
        }
        sbx_output_clear(&o);
        if ((r = sbx_run(c, j->sandbox, &pex, revs, strlen(revs), tmp, IMPORT_DEFAULT_MAX_PACK_BYTES, 16384, &o,
                         &j->err)) < 0) {
                sv_worker_sandboxd_reset(w, r);
                goto out;
        }
        if (o.exit.code != 0 || o.exit.signal) {
                r = ns_err(&j->err, EIO, "git pack-objects in the sandbox failed (exit %d): %.200s", o.exit.code,
                           o.errout);
                goto out;
        }
        if (lseek(tmp, 0, SEEK_SET) < 0) {
                r = ns_err_sys(&j->err, errno, "lseek");
                goto out;
        }
        if ((r = import_pack(j->mirror_path, j->branch, tmp, j->new_tip, j->base_sha, NULL, &res, &j->err)) < 0)
                goto out;
        if (res.commits > 0 && (r = import_commit_event_json(&res, j->branch, &j->commit_event, &j->err)) < 0)
                goto out;
        r = 0;
out:
        if (tmp >= 0)
                close(tmp);
        import_result_clear(&res);
        sbx_output_clear(&o);
        j->rc = r;
}

/* ---- the rest ------------------------------------------------------------------------------ */

static void run_sandbox_op(sv_sjob *j, sv_worker *w) {
        ns_client *c;
        int r = sv_worker_sandboxd(w, &c, &j->err);
        if (r >= 0) {
                switch (j->kind) {
                case JOB_TEARDOWN:
                        r = j->sandbox[0] ? sbx_destroy(c, j->sandbox, NULL, &j->err) : 0;
                        break;
                case JOB_SIGNAL:
                        r = sbx_signal(c, j->sandbox, j->proc, j->sig, &j->err);
                        break;
                case JOB_FREEZE:
                        r = sbx_simple(c, j->freeze ? "freeze" : "thaw", j->sandbox, &j->err);
                        break;
                case JOB_RECOVER:
                        if ((r = sbx_stats(c, j->sandbox, NULL, &j->err)) < 0)
                                break;
                        j->stream_fd = -1;
                        if (j->proc >= 0) {
                                r = sbx_attach(c, j->sandbox, j->proc, j->from, &j->stream_fd, &j->err);
                                if (r == -ENOENT) {
                                        j->proc_gone = true;
                                        r = 0;
                                }
                        }
                        break;
                default:
                        r = ns_err(&j->err, EINVAL, "bad job");
                }
                sv_worker_sandboxd_reset(w, r);
        }
        j->rc = r;
}

static void run_delete(sv_sjob *j, sv_worker *w) {
        ns_client *c;
        int r = 0;
        if (j->sandbox[0]) {
                if ((r = sv_worker_sandboxd(w, &c, &j->err)) < 0 || (r = sbx_destroy(c, j->sandbox, NULL, &j->err)) < 0) {
                        sv_worker_sandboxd_reset(w, r);
                        j->rc = r;
                        return;
                }
        }
        if ((r = worktree_remove(w->cfg->workspace_root, j->sid, &j->err)) < 0 ||
            (j->mirror_path && (r = mirror_branch_delete(j->mirror_path, j->branch, &j->err)) < 0)) {
                j->rc = r;
                return;
        }
        j->rc = 0;
}

void sv_sjob_run(sv_job *job, sv_worker *w) {
        sv_sjob *j = (sv_sjob *) job;
        switch (j->kind) {
        case JOB_NEW_SESSION:
                return run_new_session(j, w);
        case JOB_REPO_REGISTER:
                return run_repo_register(j, w);
        case JOB_PROVISION:
                return run_provision(j, w);
        case JOB_EXEC:
                return run_exec(j, w);
        case JOB_COMMIT:
                return run_commit(j, w);
        case JOB_DELETE:
                return run_delete(j, w);
        default:
                return run_sandbox_op(j, w);
        }
}
