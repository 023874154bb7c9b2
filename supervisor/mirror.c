#include "mirror.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "fsutil.h"
#include "gitx.h"
#include "ids.h"

#define MIRROR_MAX_REFS 100000

static bool looks_like_url(const char *s) {
        if (strstr(s, "://"))
                return true;
        /* scp-like "user@host:path" or "host:path": a ':' before any '/' */
        const char *colon = strchr(s, ':'), *slash = strchr(s, '/');
        return colon && colon != s && (!slash || colon < slash);
}

int mirror_source_normalize(const char *url_or_path, char **out, ns_error *err) {
        *out = NULL;
        if (!url_or_path || !url_or_path[0])
                return ns_err(err, EINVAL, "empty repository url or path");
        if (strpbrk(url_or_path, "\n\r"))
                return ns_err(err, EINVAL, "repository url or path contains a line break");
        if (looks_like_url(url_or_path)) {
                *out = strdup(url_or_path);
                return *out ? 0 : ns_err(err, ENOMEM, "out of memory");
        }
        char buf[PATH_MAX];
        if (!realpath(url_or_path, buf))
                return ns_err_sys(err, errno, "repository path '%s'", url_or_path);
        struct stat st;
        if (stat(buf, &st) < 0)
                return ns_err_sys(err, errno, "stat %s", buf);
        if (!S_ISDIR(st.st_mode))
                return ns_err(err, ENOTDIR, "repository path '%s' is not a directory", buf);
        *out = strdup(buf);
        return *out ? 0 : ns_err(err, ENOMEM, "out of memory");
}

int mirror_path_for(const char *data_dir, const char *repo_id, char **out, ns_error *err) {
        *out = NULL;
        if (!sv_id_valid(repo_id, SV_ID_PREFIX_REPO))
                return ns_err(err, EINVAL, "invalid repo id '%s'", repo_id ? repo_id : "(null)");
        if (asprintf(out, "%s/mirrors/%s.git", data_dir, repo_id) < 0) {
                *out = NULL;
                return ns_err(err, ENOMEM, "out of memory");
        }
        return 0;
}

bool mirror_branch_is_session(const char *branch) {
        size_t n = strlen(MIRROR_SESSION_BRANCH_PREFIX);
        return branch && strncmp(branch, MIRROR_SESSION_BRANCH_PREFIX, n) == 0 &&
               sv_id_valid(branch + n, SV_ID_PREFIX_SESSION);
}

static bool is_session_ref(const char *refname) {
        return strncmp(refname, "refs/heads/" MIRROR_SESSION_BRANCH_PREFIX,
                       strlen("refs/heads/" MIRROR_SESSION_BRANCH_PREFIX)) == 0;
}

/* Refs we copy from upstream: branches and tags, minus the sessions' namespace and the peeled
 * "^{}" entries of the advertisement. */
static bool is_mirrored_ref(const char *refname) {
        if (is_session_ref(refname))
                return false;
        if (strncmp(refname, "refs/heads/", 11) != 0 && strncmp(refname, "refs/tags/", 10) != 0)
                return false;
        int valid = 0;
        return git_reference_name_is_valid(&valid, refname) == 0 && valid;
}

static bool advertised(const git_remote_head **heads, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(heads[i]->name, name) == 0)
                        return true;
        return false;
}

static int fetch_into(git_repository *repo, const char *source, char **default_branch, ns_error *err) {
        if (default_branch)
                *default_branch = NULL;
        /* Anonymous (no name): the URL is not written to the mirror's config; see mirror.h.
         * SKIP_INSTEADOF: the source is used verbatim — no url.*.insteadOf rewriting — and it
         * avoids libgit2 1.5's leak of pcre2 match data on every non-matching config entry
         * scanned for insteadOf (fixed upstream in libgit2 PR #6382). */
        git_remote_create_options co = GIT_REMOTE_CREATE_OPTIONS_INIT;
        co.repository = repo;
        co.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
        _cleanup_(git_remote_freep) git_remote *remote = NULL;
        int r = git_remote_create_with_opts(&remote, source, &co);
        if (r < 0)
                return gitx_err(err, r, "remote %s", source);
        git_remote_callbacks cbs = GIT_REMOTE_CALLBACKS_INIT;
        r = git_remote_connect(remote, GIT_DIRECTION_FETCH, &cbs, NULL, NULL);
        if (r < 0)
                return gitx_err(err, r, "connect to %s", source);

        char *specs[] = { "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*" };
        git_strarray refspecs = { specs, 2 };
        /* Downloads and indexes the objects only; refs are ours to update below. */
        r = git_remote_download(remote, &refspecs, NULL);
        if (r < 0) {
                r = gitx_err(err, r, "fetch from %s", source);
                git_remote_disconnect(remote);
                return r;
        }
        const git_remote_head **heads = NULL;
        size_t nheads = 0;
        r = git_remote_ls(&heads, &nheads, remote);
        if (r < 0) {
                r = gitx_err(err, r, "list refs of %s", source);
                git_remote_disconnect(remote);
                return r;
        }
        if (nheads > MIRROR_MAX_REFS) {
                git_remote_disconnect(remote);
                return ns_err(err, E2BIG, "%s advertises %zu refs, more than %d", source, nheads, MIRROR_MAX_REFS);
        }

        for (size_t i = 0; i < nheads; i++) {
                if (!is_mirrored_ref(heads[i]->name))
                        continue;
                _cleanup_(git_reference_freep) git_reference *ref = NULL;
                r = git_reference_create(&ref, repo, heads[i]->name, &heads[i]->oid, 1, "nightshift: fetch");
                if (r < 0) {
                        r = gitx_err(err, r, "update %s", heads[i]->name);
                        git_remote_disconnect(remote);
                        return r;
                }
        }

        /* Prune what upstream no longer has (never the sessions' namespace). */
        {
                _cleanup_(git_reference_iterator_freep) git_reference_iterator *it = NULL;
                r = git_reference_iterator_new(&it, repo);
                if (r < 0) {
                        r = gitx_err(err, r, "list mirror refs");
                        git_remote_disconnect(remote);
                        return r;
                }
                const char *name;
                _cleanup_strv_ char **doomed = NULL;
                size_t ndoomed = 0;
                while ((r = git_reference_next_name(&name, it)) == 0) {
                        if (!is_mirrored_ref(name) || advertised(heads, nheads, name))
                                continue;
                        char **nv = realloc(doomed, (ndoomed + 2) * sizeof *nv);
                        if (!nv || !(nv[ndoomed] = strdup(name))) {
                                if (nv)
                                        doomed = nv;
                                git_remote_disconnect(remote);
                                return ns_err(err, ENOMEM, "out of memory");
                        }
                        doomed = nv;
                        doomed[++ndoomed] = NULL;
                }
                if (r != GIT_ITEROVER) {
                        r = gitx_err(err, r, "list mirror refs");
                        git_remote_disconnect(remote);
                        return r;
                }
                for (size_t i = 0; i < ndoomed; i++) {
                        r = git_reference_remove(repo, doomed[i]);
                        if (r < 0 && r != GIT_ENOTFOUND) {
                                r = gitx_err(err, r, "prune %s", doomed[i]);
                                git_remote_disconnect(remote);
                                return r;
                        }
                }
        }

        _cleanup_(git_buf_disposep) git_buf head = { 0 };
        r = git_remote_default_branch(&head, remote);
        git_remote_disconnect(remote);
        if (r == GIT_ENOTFOUND)
                return 0; /* empty upstream, or no HEAD advertised */
        if (r < 0)
                return gitx_err(err, r, "default branch of %s", source);
        if (strncmp(head.ptr, "refs/heads/", 11) != 0 || is_session_ref(head.ptr) || !is_mirrored_ref(head.ptr))
                return 0;
        r = git_repository_set_head(repo, head.ptr);
        if (r < 0)
                return gitx_err(err, r, "set HEAD to %s", head.ptr);
        if (default_branch && !(*default_branch = strdup(head.ptr + 11)))
                return ns_err(err, ENOMEM, "out of memory");
        return 0;
}

int mirror_fetch(const char *mirror_path, const char *source, char **default_branch, ns_error *err) {
        _cleanup_(git_repository_freep) git_repository *repo = NULL;
        int r = gitx_open_exact(&repo, mirror_path, err);
        if (r < 0)
                return r;
        if (!git_repository_is_bare(repo))
                return ns_err(err, EINVAL, "%s is not a bare mirror", mirror_path);
        return fetch_into(repo, source, default_branch, err);
}

/* mkdir -p of the parent of `path` (a path we built: absolute, no symlink games expected). */
static int mkdir_parent(const char *path, ns_error *err) {
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return ns_err(err, ENOMEM, "out of memory");
        char *slash = strrchr(p, '/');
        if (!slash || slash == p)
                return 0;
        *slash = '\0';
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return ns_err_sys(err, errno, "mkdir %s", p);
                *s = '/';
        }
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
                return ns_err_sys(err, errno, "mkdir %s", p);
        return 0;
}

/* Remove a directory we created at `path` (its parent is trusted). */
static void remove_created(const char *path) {
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return;
        char *slash = strrchr(p, '/');
        if (!slash)
                return;
        *slash = '\0';
        _cleanup_close_ int dfd = fs_open_trusted_dir(slash == p ? "/" : p, NULL);
        if (dfd >= 0)
                (void) fs_remove_tree_at(dfd, slash + 1, NULL);
}

int mirror_create(const char *mirror_path, const char *source, char **default_branch, ns_error *err) {
        if (default_branch)
                *default_branch = NULL;
        if (!mirror_path || mirror_path[0] != '/' || strpbrk(mirror_path, "\n\r"))
                return ns_err(err, EINVAL, "mirror path must be absolute");
        int r = mkdir_parent(mirror_path, err);
        if (r < 0)
                return r;
        /* mkdir first, exclusively: two registrations can never share (or clobber) a mirror. */
        if (mkdir(mirror_path, 0755) < 0)
                return ns_err_sys(err, errno, "mkdir %s", mirror_path);

        git_repository_init_options o = GIT_REPOSITORY_INIT_OPTIONS_INIT;
        o.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_NO_REINIT;
        _cleanup_(git_repository_freep) git_repository *repo = NULL;
        r = git_repository_init_ext(&repo, mirror_path, &o);
        if (r < 0)
                r = gitx_err(err, r, "init mirror %s", mirror_path);
        else
                r = fetch_into(repo, source, default_branch, err);
        if (r < 0) {
                if (default_branch) {
                        free(*default_branch);
                        *default_branch = NULL;
                }
                git_repository_free(TAKE_PTR(repo));
                remove_created(mirror_path);
        }
        return r;
}

static int peel_ref(git_repository *repo, const char *name, git_oid *out, int *found, ns_error *err) {
        *found = 0;
        _cleanup_(git_reference_freep) git_reference *ref = NULL;
        int r = git_reference_lookup(&ref, repo, name);
        if (r == GIT_ENOTFOUND || r == GIT_EINVALIDSPEC)
                return 0;
        if (r < 0)
                return gitx_err(err, r, "look up %s", name);
        _cleanup_(git_object_freep) git_object *obj = NULL;
        r = git_reference_peel(&obj, ref, GIT_OBJECT_COMMIT);
        if (r == GIT_ENOTFOUND || r == GIT_EPEEL || r == GIT_EINVALIDSPEC)
                return 0; /* e.g. a tag of a tree: not a base we can start from */
        if (r < 0)
                return gitx_err(err, r, "peel %s", name);
        git_oid_cpy(out, git_object_id(obj));
        *found = 1;
        return 0;
}

int mirror_resolve(const char *mirror_path, const char *ref, char sha_out[MIRROR_SHA_HEX_LEN + 1], ns_error *err) {
        sha_out[0] = '\0';
        size_t len = ref ? strlen(ref) : 0;
        if (len == 0 || len > 255 || ref[0] == '-' || strpbrk(ref, " \t\n\r~^:?*[\\") || strstr(ref, "..") ||
            strstr(ref, "@{"))
                return ns_err(err, EINVAL, "invalid base ref '%s'", ref ? ref : "");
        _cleanup_(git_repository_freep) git_repository *repo = NULL;
        int r = gitx_open_exact(&repo, mirror_path, err);
        if (r < 0)
                return r;

        git_oid oid;
        int found = 0;
        if (strcmp(ref, "HEAD") == 0) {
                r = peel_ref(repo, "HEAD", &oid, &found, err);
        } else if (strncmp(ref, "refs/heads/", 11) == 0 || strncmp(ref, "refs/tags/", 10) == 0) {
                r = peel_ref(repo, ref, &oid, &found, err);
        } else {
                char name[300];
                snprintf(name, sizeof name, "refs/heads/%s", ref);
                r = peel_ref(repo, name, &oid, &found, err);
                if (r == 0 && !found) {
                        snprintf(name, sizeof name, "refs/tags/%s", ref);
                        r = peel_ref(repo, name, &oid, &found, err);
                }
        }
        if (r < 0)
                return r;

        /* A commit id, full or abbreviated. */
        if (!found && len >= 7 && len <= MIRROR_SHA_HEX_LEN && strspn(ref, "0123456789abcdef") == len) {
                git_oid prefix;
                r = git_oid_fromstrn(&prefix, ref, len);
                if (r < 0)
                        return gitx_err(err, r, "parse '%s'", ref);
                _cleanup_(git_object_freep) git_object *obj = NULL;
                r = git_object_lookup_prefix(&obj, repo, &prefix, len, GIT_OBJECT_COMMIT);
                if (r == GIT_EAMBIGUOUS)
                        return ns_err(err, EINVAL, "base ref '%s' is ambiguous", ref);
                if (r == 0) {
                        git_oid_cpy(&oid, git_object_id(obj));
                        found = 1;
                } else if (r != GIT_ENOTFOUND && r != GIT_EINVALIDSPEC) {
                        return gitx_err(err, r, "look up '%s'", ref);
                }
        }
        if (!found)
                return ns_err(err, ENOENT, "base ref '%s' not found", ref);
        git_oid_tostr(sha_out, MIRROR_SHA_HEX_LEN + 1, &oid);
        return 0;
}

int mirror_branch_tip(const char *mirror_path, const char *branch, char sha_out[MIRROR_SHA_HEX_LEN + 1], ns_error *err) {
        sha_out[0] = '\0';
        _cleanup_(git_repository_freep) git_repository *repo = NULL;
        int r = gitx_open_exact(&repo, mirror_path, err);
        if (r < 0)
                return r;
        char name[300];
        if (snprintf(name, sizeof name, "refs/heads/%s", branch ? branch : "") >= (int) sizeof name)
                return ns_err(err, EINVAL, "branch name too long");
        git_oid oid;
        r = git_reference_name_to_id(&oid, repo, name);
        if (r == GIT_ENOTFOUND || r == GIT_EINVALIDSPEC)
                return ns_err(err, ENOENT, "branch '%s' not found", branch ? branch : "");
        if (r < 0)
                return gitx_err(err, r, "look up %s", name);
        git_oid_tostr(sha_out, MIRROR_SHA_HEX_LEN + 1, &oid);
        return 0;
}

int mirror_branch_delete(const char *mirror_path, const char *branch, ns_error *err) {
        if (!mirror_branch_is_session(branch))
                return ns_err(err, EPERM, "refusing to delete '%s': not a session branch", branch ? branch : "");
        _cleanup_(git_repository_freep) git_repository *repo = NULL;
        int r = gitx_open_exact(&repo, mirror_path, err);
        if (r < 0)
                return r;
        char name[300];
        snprintf(name, sizeof name, "refs/heads/%s", branch);
        r = git_reference_remove(repo, name);
        if (r < 0 && r != GIT_ENOTFOUND)
                return gitx_err(err, r, "delete %s", name);
        return 0;
}
