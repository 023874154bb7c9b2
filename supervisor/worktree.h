/* nightshift supervisor — a session's working tree with its own private git directory.
 *
 *   <workspace-root>/<session-id>/        the tree (bind-mounted at /workspace in the sandbox)
 *   <workspace-root>/<session-id>/.git/   a real git directory of its own — not a "gitdir:" file,
 *                                         not a linked worktree of the mirror
 *       objects/info/alternates           "<mirror>/objects": objects are borrowed read-only; the
 *                                         sandbox sees the mirror at the same absolute path
 *       HEAD → refs/heads/nightshift/<session-id> = the base commit; index and files checked out
 *       config                            core.repositoryformatversion=0, core.bare=false; nothing
 *                                         else; no hooks
 *
 * After worktree_create returns, the tree and its .git are the agent's: hostile input.  The host
 * never opens that repository again (commits come back through import.h); the only host-side
 * operation is worktree_remove, which deletes by descriptor without following links.
 * Blocking: call off the event loop.  gitx_init() must have been called. */
#pragma once

#include "common/err.h"

typedef struct worktree_paths {
        char *tree;   /* <workspace-root>/<session-id> */
        char *gitdir; /* <workspace-root>/<session-id>/.git */
} worktree_paths;

/* Free both paths and set them to NULL. */
void worktree_paths_clear(worktree_paths *p);

/* Create the working tree of session `session_id` beneath the existing directory
 * `workspace_root`, borrowing objects from the bare mirror at `mirror_path` (absolute), on branch
 * nightshift/<session_id> at commit `base_sha` (40 hex digits; must be a commit in the mirror).
 * The directory must not exist yet (-EEXIST).  Files are owned by the caller's uid.  On failure
 * nothing is left behind.  *out (may be NULL) receives the paths. */
int worktree_create(const char *workspace_root, const char *session_id, const char *mirror_path,
                    const char *base_sha, worktree_paths *out, ns_error *err);

/* The same, calling on_dir(ctx, tree) once the (still empty) tree directory exists and before
 * the checkout fills it, so that the caller can overlap work that needs only the directory (the
 * sandbox that will bind it).  on_dir must not touch the tree. */
int worktree_create_with(const char *workspace_root, const char *session_id, const char *mirror_path,
                         const char *base_sha, void (*on_dir)(void *ctx, const char *tree), void *ctx,
                         worktree_paths *out, ns_error *err);

/* Append the session's commit identity ([user] name, email) to the .git/config of the tree just
 * made by worktree_create: only then, before any process of the session ran, is the file still
 * ours.  `name` and `email` must be valid identities (identity.h: no quote, backslash, newline). */
int worktree_set_identity(const char *tree, const char *name, const char *email, ns_error *err);

/* Delete session `session_id`'s working tree (tree and .git) beneath `workspace_root` by
 * descriptor, never following a symlink the agent planted (fsutil.h).  Absent is success. */
int worktree_remove(const char *workspace_root, const char *session_id, ns_error *err);
