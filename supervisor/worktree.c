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

/* Everything after the empty directory exists; the caller removes the directory on failure. */
static int populate(const char *tree, int treefd, const char *session_id, const char *mirror_path,
                    const char *base_sha, ns_error *err) {
        char branch[64], refname[80];
        snprintf(branch, sizeof branch, MIRROR_SESSION_BRANCH_PREFIX "%s", session_id);
        snprintf(refname, sizeof refname, "refs/heads/%s", branch);

        /* 1. An empty repository of our own in <tree>/.git, HEAD already on the session branch.
         *    libgit2's built-in template (not the system's /usr/share/git-core/templates): no hook
         *    scripts. */
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

        /* 2. Our minimal config (replacing libgit2's defaults) and the alternates: written before
         *    the repository is reopened, so the odb picks them up. */
        int r = write_file_at(treefd, ".git/config", session_config, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *alt = NULL;
        if (asprintf(&alt, "%s/objects\n", mirror_path) < 0) {
                alt = NULL;
                return ns_err(err, ENOMEM, "out of memory");
        }
        r = write_file_at(treefd, ".git/objects/info/alternates", alt, err);
        if (r < 0)
                return r;

        /* 3. The branch at the base commit (reachable through the alternates), then a forced
         *    checkout of HEAD: files and index. */
        _cleanup_(git_repository_freep) git_repository *repo = NULL;
        r = gitx_open_exact(&repo, tree, err);
        if (r < 0)
                return r;
        git_oid oid;
        if (git_oid_fromstr(&oid, base_sha) < 0)
                return ns_err(err, EINVAL, "invalid base sha '%s'", base_sha);
        {
                _cleanup_(git_commit_freep) git_commit *commit = NULL;
                r = git_commit_lookup(&commit, repo, &oid);
                if (r == GIT_ENOTFOUND)
                        return ns_err(err, ENOENT, "base commit %s not found in the mirror", base_sha);
                if (r < 0)
                        return gitx_err(err, r, "look up base commit %s", base_sha);
        }
        {
                _cleanup_(git_reference_freep) git_reference *ref = NULL;
                r = git_reference_create(&ref, repo, refname, &oid, 0, "nightshift: session start");
                if (r < 0)
                        return gitx_err(err, r, "create %s", refname);
        }
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
