#include "worktree.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "fsutil.h"
#include "gitx.h"
#include "ids.h"
#include "mirror.h"

/* The whole config of a session repository.  Deliberately nothing that makes git run a program
 * or reach a network: whatever the agent adds later stays inside its sandbox, because the host
 * never reads this file again. */
static const char session_config[] = "[core]\n"
                                     "\trepositoryformatversion = 0\n"
                                     "\tbare = false\n";

void worktree_paths_clear(worktree_paths *p) {
        if (!p)
                return;
        free(p->tree);
        free(p->gitdir);
        p->tree = p->gitdir = NULL;
}

/* Replace `rel` (relative to dirfd, in a directory tree we created a moment ago and nobody else
 * can reach yet) with `content`. */
static int write_file_at(int dirfd, const char *rel, const char *content, ns_error *err) {
        _cleanup_close_ int fd = openat(dirfd, rel, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return ns_err_sys(err, errno, "open %s", rel);
        size_t len = strlen(content), off = 0;
        while (off < len) {
                ssize_t n = write(fd, content + off, len - off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return ns_err_sys(err, errno, "write %s", rel);
                }
                off += (size_t) n;
        }
        if (close(TAKE_FD(fd)) < 0)
                return ns_err_sys(err, errno, "close %s", rel);
        return 0;
}

/* Steps shared by a session's tree and a spare: an empty repository of our own in <tree>/.git
 * with HEAD on `branch` (unborn), our minimal config and the alternates. */
static int init_repo(const char *tree, int treefd, const char *branch, const char *mirror_path, ns_error *err) {
        /* libgit2's built-in template (not the system's /usr/share/git-core/templates): no hook
         * scripts. */
        {
                git_repository_init_options o = GIT_REPOSITORY_INIT_OPTIONS_INIT;
                o.flags = GIT_REPOSITORY_INIT_NO_REINIT;
                o.initial_head = branch;
                _cleanup_(git_repository_freep) git_repository *repo = NULL;
                int r = git_repository_init_ext(&repo, tree, &o);
                if (r < 0)
                        return gitx_err(err, r, "init %s", tree);
        }

        /* libgit2's built-in template leaves hooks/README.sample: not a hook, but the directory
         * should hold nothing of ours. */
        if (unlinkat(treefd, ".git/hooks/README.sample", 0) < 0 && errno != ENOENT)
                return ns_err_sys(err, errno, "remove hooks/README.sample");

        /* Our minimal config (replacing libgit2's defaults) and the alternates: written before the
         * repository is reopened, so the odb picks them up. */
        int r = write_file_at(treefd, ".git/config", session_config, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *alt = NULL;
        if (asprintf(&alt, "%s/objects\n", mirror_path) < 0) {
                alt = NULL;
                return ns_err(err, ENOMEM, "out of memory");
        }
        return write_file_at(treefd, ".git/objects/info/alternates", alt, err);
}

/* The commit `sha` through the alternates: -ENOENT when the mirror does not have it. */
static int lookup_commit(git_repository *repo, const char *sha, git_oid *oid, git_commit **out, ns_error *err) {
        if (git_oid_fromstr(oid, sha) < 0)
                return ns_err(err, EINVAL, "invalid base sha '%s'", sha);
        git_commit *commit = NULL;
        int r = git_commit_lookup(&commit, repo, oid);
        if (r == GIT_ENOTFOUND)
                return ns_err(err, ENOENT, "base commit %s not found in the mirror", sha);
        if (r < 0)
                return gitx_err(err, r, "look up base commit %s", sha);
        if (out)
                *out = commit;
        else
                git_commit_free(commit);
        return 0;
}

/* The session branch at `oid`, written the way a fresh tree gets it (ref and reflogs). */
static int create_session_ref(git_repository *repo, const char *refname, const git_oid *oid, ns_error *err) {
        _cleanup_(git_reference_freep) git_reference *ref = NULL;
        int r = git_reference_create(&ref, repo, refname, oid, 0, "nightshift: session start");
        if (r < 0)
                return gitx_err(err, r, "create %s", refname);
        return 0;
}

/* Everything after the empty directory exists; the caller removes the directory on failure. */
static int populate(const char *tree, int treefd, const char *session_id, const char *mirror_path,
                    const char *base_sha, ns_error *err) {
        char branch[64], refname[80];
        snprintf(branch, sizeof branch, MIRROR_SESSION_BRANCH_PREFIX "%s", session_id);
        snprintf(refname, sizeof refname, "refs/heads/%s", branch);

        /* 1. An empty repository of our own in <tree>/.git, HEAD already on the session branch. */
        int r = init_repo(tree, treefd, branch, mirror_path, err);
        if (r < 0)
                return r;

        /* 2. The branch at the base commit (reachable through the alternates), then a forced
         *    checkout of HEAD: files and index. */
        _cleanup_(git_repository_freep) git_repository *repo = NULL;
        r = gitx_open_exact(&repo, tree, err);
        if (r < 0)
                return r;
        git_oid oid;
        if ((r = lookup_commit(repo, base_sha, &oid, NULL, err)) < 0 ||
            (r = create_session_ref(repo, refname, &oid, err)) < 0)
                return r;
        git_checkout_options co = GIT_CHECKOUT_OPTIONS_INIT;
        co.checkout_strategy = GIT_CHECKOUT_FORCE;
        r = git_checkout_head(repo, &co);
        if (r < 0)
                return gitx_err(err, r, "check out %s", base_sha);
        return 0;
}

int worktree_create(const char *workspace_root, const char *session_id, const char *mirror_path,
                    const char *base_sha, worktree_paths *out, ns_error *err) {
        return worktree_create_with(workspace_root, session_id, mirror_path, base_sha, NULL, NULL, out, err);
}

int worktree_create_with(const char *workspace_root, const char *session_id, const char *mirror_path,
                         const char *base_sha, void (*on_dir)(void *ctx, const char *tree), void *ctx,
                         worktree_paths *out, ns_error *err) {
        if (out)
                *out = (worktree_paths){ 0 };
        if (!sv_id_valid(session_id, SV_ID_PREFIX_SESSION))
                return ns_err(err, EINVAL, "invalid session id '%s'", session_id ? session_id : "(null)");
        /* The alternates file is line-based and read by git inside the sandbox too. */
        if (!mirror_path || mirror_path[0] != '/' || strpbrk(mirror_path, "\n\r"))
                return ns_err(err, EINVAL, "mirror path must be an absolute path without line breaks");
        if (!gitx_is_sha_hex(base_sha))
                return ns_err(err, EINVAL, "base sha must be 40 lowercase hex digits");
        if (!workspace_root || workspace_root[0] != '/')
                return ns_err(err, EINVAL, "workspace root must be an absolute path");

        _cleanup_close_ int rootfd = fs_open_trusted_dir(workspace_root, err);
        if (rootfd < 0)
                return rootfd;
        if (mkdirat(rootfd, session_id, 0755) < 0) {
                if (errno == EEXIST)
                        return ns_err(err, EEXIST, "working tree for session '%s' already exists", session_id);
                return ns_err_sys(err, errno, "mkdir %s/%s", workspace_root, session_id);
        }

        worktree_paths p = { 0 };
        int r = 0;
        if (asprintf(&p.tree, "%s/%s", workspace_root, session_id) < 0) {
                p.tree = NULL;
                r = ns_err(err, ENOMEM, "out of memory");
        } else if (asprintf(&p.gitdir, "%s/.git", p.tree) < 0) {
                p.gitdir = NULL;
                r = ns_err(err, ENOMEM, "out of memory");
        }
        if (r == 0 && on_dir)
                on_dir(ctx, p.tree);
        if (r == 0) {
                _cleanup_close_ int treefd = fs_open_dir_beneath(rootfd, session_id, err);
                r = treefd < 0 ? treefd : populate(p.tree, treefd, session_id, mirror_path, base_sha, err);
        }
        if (r < 0) {
                (void) fs_remove_tree_at(rootfd, session_id, NULL);
                worktree_paths_clear(&p);
                return r;
        }
        if (out)
                *out = p;
        else
                worktree_paths_clear(&p);
        return 0;
}

int worktree_remove(const char *workspace_root, const char *session_id, ns_error *err) {
        if (!sv_id_valid(session_id, SV_ID_PREFIX_SESSION))
                return ns_err(err, EINVAL, "invalid session id '%s'", session_id ? session_id : "(null)");
        _cleanup_close_ int rootfd = fs_open_trusted_dir(workspace_root, err);
        if (rootfd < 0)
                return rootfd;
        int r = fs_remove_tree_at(rootfd, session_id, err);
        if (r < 0)
                return ns_err_wrap(err, "remove working tree of %s", session_id);
        return 0;
}

int worktree_set_identity(const char *tree, const char *name, const char *email, ns_error *err) {
        if (strpbrk(name, "\n\"\\") || strpbrk(email, "\n\"\\"))
                return ns_err(err, EINVAL, "an identity may not hold a newline, quote or backslash");
        _cleanup_close_ int treefd = open(tree, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (treefd < 0)
                return ns_err_sys(err, errno, "open %s", tree);
        _cleanup_close_ int fd = openat(treefd, ".git/config", O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return ns_err_sys(err, errno, "open %s/.git/config", tree);
        _cleanup_free_ char *text = NULL;
        int n = asprintf(&text, "[user]\n\tname = \"%s\"\n\temail = \"%s\"\n", name, email);
        if (n < 0) {
                text = NULL;
                return ns_err(err, ENOMEM, "out of memory");
        }
        if (write(fd, text, (size_t) n) != n)
                return ns_err_sys(err, errno, "write %s/.git/config", tree);
        return 0;
}

/* ---- spare trees --------------------------------------------------------------------------- */

bool worktree_spare_name_valid(const char *s) {
        size_t n = strlen(WORKTREE_SPARE_PREFIX);
        if (!s || strlen(s) != WORKTREE_SPARE_NAME_LEN || strncmp(s, WORKTREE_SPARE_PREFIX, n))
                return false;
        /* The body is an id's body: reuse the id check on "x-<body>". */
        char id[SV_ID_LEN + 1] = "s-";
        memcpy(id + 2, s + n, SV_ID_BODY_LEN + 1);
        return sv_id_valid(id, 's');
}

int worktree_spare_name_new(char out[WORKTREE_SPARE_NAME_LEN + 1], ns_error *err) {
        char id[SV_ID_LEN + 1];
        int r = sv_id_new('s', id, err);
        if (r < 0)
                return r;
        snprintf(out, WORKTREE_SPARE_NAME_LEN + 1, WORKTREE_SPARE_PREFIX "%s", id + 2);
        return 0;
}

static int check_spare_args(const char *workspace_root, const char *name, const char *mirror_path, ns_error *err) {
        if (!worktree_spare_name_valid(name))
                return ns_err(err, EINVAL, "invalid spare tree name '%s'", name ? name : "(null)");
        if (!mirror_path || mirror_path[0] != '/' || strpbrk(mirror_path, "\n\r"))
                return ns_err(err, EINVAL, "mirror path must be an absolute path without line breaks");
        if (!workspace_root || workspace_root[0] != '/')
                return ns_err(err, EINVAL, "workspace root must be an absolute path");
        return 0;
}

/* The spare's HEAD names no session until it is handed out: this placeholder branch is never
 * created (HEAD stays unborn), and adopting rewrites HEAD. */
#define SPARE_BRANCH MIRROR_SESSION_BRANCH_PREFIX "spare"

int worktree_spare_create(const char *workspace_root, const char *name, const char *mirror_path, const char *sha,
                          ns_error *err) {
        int r = check_spare_args(workspace_root, name, mirror_path, err);
        if (r < 0)
                return r;
        if (!gitx_is_sha_hex(sha))
                return ns_err(err, EINVAL, "base sha must be 40 lowercase hex digits");
        _cleanup_close_ int rootfd = fs_open_trusted_dir(workspace_root, err);
        if (rootfd < 0)
                return rootfd;
        if (mkdirat(rootfd, name, 0755) < 0)
                return ns_err_sys(err, errno, "mkdir %s/%s", workspace_root, name);
        _cleanup_free_ char *tree = NULL;
        if (asprintf(&tree, "%s/%s", workspace_root, name) < 0) {
                tree = NULL;
                r = ns_err(err, ENOMEM, "out of memory");
                goto fail;
        }
        {
                _cleanup_close_ int treefd = fs_open_dir_beneath(rootfd, name, err);
                if (treefd < 0 || (r = init_repo(tree, treefd, SPARE_BRANCH, mirror_path, err)) < 0) {
                        r = treefd < 0 ? treefd : r;
                        goto fail;
                }
        }
        {
                /* Files and index of the commit; no ref is written. */
                _cleanup_(git_repository_freep) git_repository *repo = NULL;
                _cleanup_(git_commit_freep) git_commit *commit = NULL;
                git_oid oid;
                if ((r = gitx_open_exact(&repo, tree, err)) < 0 || (r = lookup_commit(repo, sha, &oid, &commit, err)) < 0)
                        goto fail;
                git_checkout_options co = GIT_CHECKOUT_OPTIONS_INIT;
                co.checkout_strategy = GIT_CHECKOUT_FORCE;
                if ((r = git_checkout_tree(repo, (const git_object *) commit, &co)) < 0) {
                        r = gitx_err(err, r, "check out %s", sha);
                        goto fail;
                }
        }
        return 0;
fail:
        (void) fs_remove_tree_at(rootfd, name, NULL);
        return r;
}

/* Bring the files and index of the tree from commit `from` to commit `to`: a checkout against
 * `from`'s tree as the baseline writes only the paths that differ.  -ENOENT when either commit
 * is gone from the mirror. */
static int checkout_between(git_repository *repo, const char *from, const char *to, ns_error *err) {
        _cleanup_(git_commit_freep) git_commit *fc = NULL, *tc = NULL;
        _cleanup_(git_tree_freep) git_tree *ft = NULL;
        git_oid fo, to_oid;
        int r;
        if ((r = lookup_commit(repo, from, &fo, &fc, err)) < 0 || (r = lookup_commit(repo, to, &to_oid, &tc, err)) < 0)
                return r;
        if ((r = git_commit_tree(&ft, fc)) < 0)
                return r == GIT_ENOTFOUND ? ns_err(err, ENOENT, "tree of %s not found", from)
                                          : gitx_err(err, r, "tree of %s", from);
        git_checkout_options co = GIT_CHECKOUT_OPTIONS_INIT;
        co.checkout_strategy = GIT_CHECKOUT_FORCE;
        co.baseline = ft;
        if ((r = git_checkout_tree(repo, (const git_object *) tc, &co)) < 0)
                return gitx_err(err, r, "check out %s over %s", to, from);
        return 0;
}

int worktree_spare_move(const char *workspace_root, const char *name, const char *mirror_path, const char *from_sha,
                        const char *to_sha, ns_error *err) {
        int r = check_spare_args(workspace_root, name, mirror_path, err);
        if (r < 0)
                return r;
        if (!gitx_is_sha_hex(from_sha) || !gitx_is_sha_hex(to_sha))
                return ns_err(err, EINVAL, "commits must be 40 lowercase hex digits");
        _cleanup_free_ char *tree = NULL;
        if (asprintf(&tree, "%s/%s", workspace_root, name) < 0) {
                tree = NULL;
                return ns_err(err, ENOMEM, "out of memory");
        }
        _cleanup_(git_repository_freep) git_repository *repo = NULL;
        if ((r = gitx_open_exact(&repo, tree, err)) < 0)
                return r;
        return checkout_between(repo, from_sha, to_sha, err);
}

int worktree_spare_remove(const char *workspace_root, const char *name, ns_error *err) {
        if (!worktree_spare_name_valid(name))
                return ns_err(err, EINVAL, "invalid spare tree name '%s'", name ? name : "(null)");
        _cleanup_close_ int rootfd = fs_open_trusted_dir(workspace_root, err);
        if (rootfd < 0)
                return rootfd;
        int r = fs_remove_tree_at(rootfd, name, err);
        return r < 0 ? ns_err_wrap(err, "remove spare tree %s", name) : 0;
}

int worktree_spare_adopt(const char *workspace_root, const char *name, const char *spare_sha, const char *session_id,
                         const char *mirror_path, const char *base_sha, void (*on_dir)(void *ctx, const char *tree),
                         void *ctx, worktree_paths *out, ns_error *err) {
        if (out)
                *out = (worktree_paths){ 0 };
        int r = check_spare_args(workspace_root, name, mirror_path, err);
        if (r < 0)
                return r;
        if (!sv_id_valid(session_id, SV_ID_PREFIX_SESSION))
                return ns_err(err, EINVAL, "invalid session id '%s'", session_id ? session_id : "(null)");
        if (!gitx_is_sha_hex(base_sha) || !gitx_is_sha_hex(spare_sha))
                return ns_err(err, EINVAL, "base sha must be 40 lowercase hex digits");
        _cleanup_close_ int rootfd = fs_open_trusted_dir(workspace_root, err);
        if (rootfd < 0)
                return rootfd;
        worktree_paths p = { 0 };
        bool renamed = false, dir_given = false;
        _cleanup_(git_repository_freep) git_repository *repo = NULL; /* before the first goto */
        git_oid base;
        char refname[80];
        snprintf(refname, sizeof refname, "refs/heads/" MIRROR_SESSION_BRANCH_PREFIX "%s", session_id);

        /* 1. The session's name, atomically: the tree appears under <session-id> whole or not at
         *    all, and never replaces anything. */
        if (renameat2(rootfd, name, rootfd, session_id, RENAME_NOREPLACE) < 0) {
                if (errno == EEXIST) {
                        (void) fs_remove_tree_at(rootfd, name, NULL);
                        return ns_err(err, EEXIST, "working tree for session '%s' already exists", session_id);
                }
                r = ns_err_sys(err, errno, "rename %s to %s", name, session_id);
                goto unusable;
        }
        renamed = true;
        if (asprintf(&p.tree, "%s/%s", workspace_root, session_id) < 0 ||
            asprintf(&p.gitdir, "%s/.git", p.tree) < 0) {
                r = ns_err(err, ENOMEM, "out of memory");
                goto unusable;
        }

        /* 2. Both commits must still be in the mirror (a fetch may have rewritten history, and a
         *    spare's own commit is the baseline of the checkout below); else the spare is of no
         *    use and the caller makes a fresh tree. */
        if ((r = gitx_open_exact(&repo, p.tree, err)) < 0 || (r = lookup_commit(repo, spare_sha, &base, NULL, err)) < 0 ||
            (r = lookup_commit(repo, base_sha, &base, NULL, err)) < 0)
                goto unusable;

        /* 3. HEAD on the session branch, and the branch at the base commit (with the reflogs a
         *    fresh tree has): nothing of the spare's placeholder name is left.  (libgit2 reads
         *    HEAD from the file each time: the open repository sees the new one.) */
        {
                _cleanup_close_ int treefd = fs_open_dir_beneath(rootfd, session_id, err);
                char head[96];
                snprintf(head, sizeof head, "ref: %s\n", refname);
                if (treefd < 0 || (r = write_file_at(treefd, ".git/HEAD", head, err)) < 0) {
                        r = treefd < 0 ? treefd : r;
                        goto unusable;
                }
        }
        if ((r = create_session_ref(repo, refname, &base, err)) < 0)
                goto unusable;

        /* 4. The directory is the session's: the caller may start binding it while the files catch
         *    up with the base. */
        if (on_dir)
                on_dir(ctx, p.tree);
        dir_given = true;
        if (strcmp(spare_sha, base_sha) && (r = checkout_between(repo, spare_sha, base_sha, err)) < 0)
                goto fail;
        if (out)
                *out = p;
        else
                worktree_paths_clear(&p);
        return 0;
unusable:
        if (!dir_given) {
                (void) fs_remove_tree_at(rootfd, renamed ? session_id : name, NULL);
                worktree_paths_clear(&p);
                return 1;
        }
fail:
        (void) fs_remove_tree_at(rootfd, session_id, NULL);
        worktree_paths_clear(&p);
        return r;
}
