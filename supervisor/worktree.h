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

#include <stdbool.h>

#include "common/err.h"
#include "ids.h"

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

/* ---- spare trees ----------------------------------------------------------------------------
 *
 *   <workspace-root>/.spare-<12 base32>/   a tree made ahead of any session (spare.h keeps them)
 *
 * A spare has exactly a session tree's layout (the .git above: alternates, minimal config, no
 * hooks), files and index checked out at a commit, but no ref: HEAD names an unborn placeholder
 * branch.  Its name starts with '.', which no session id can (ids.h).  Only the host writes it and
 * no sandbox has seen it before it is adopted, so unlike a session's tree it is trusted: the host
 * may open it with libgit2 until then.  Blocking: call off the event loop. */
#define WORKTREE_SPARE_PREFIX ".spare-"
#define WORKTREE_SPARE_NAME_LEN (sizeof WORKTREE_SPARE_PREFIX - 1 + SV_ID_BODY_LEN)

/* True when `s` is a spare's name: the prefix and 12 characters of an id's body. */
bool worktree_spare_name_valid(const char *s);

/* A fresh random spare name into out.  Returns 0 or -errno. */
int worktree_spare_name_new(char out[WORKTREE_SPARE_NAME_LEN + 1], ns_error *err);

/* Make spare `name` beneath `workspace_root`, objects borrowed from the mirror at `mirror_path`,
 * files and index at commit `sha`.  On failure nothing is left behind. */
int worktree_spare_create(const char *workspace_root, const char *name, const char *mirror_path, const char *sha,
                          ns_error *err);

/* Bring spare `name` (files and index at `from_sha`) to `to_sha`, writing only the paths that
 * differ.  -ENOENT when either commit is no longer in the mirror (the spare should go). */
int worktree_spare_move(const char *workspace_root, const char *name, const char *mirror_path, const char *from_sha,
                        const char *to_sha, ns_error *err);

/* Delete spare `name` by descriptor (as worktree_remove).  Absent is success. */
int worktree_spare_remove(const char *workspace_root, const char *name, ns_error *err);

/* Turn spare `name` (at `spare_sha`) into session `session_id`'s working tree, the same as
 * worktree_create_with would make it: renamed to <workspace-root>/<session-id> (never replacing
 * anything: -EEXIST), HEAD on nightshift/<session-id> at `base_sha` with a fresh tree's reflogs,
 * and, when base_sha differs from spare_sha, files and index brought to it by a checkout of only
 * the paths that differ.  on_dir is called as worktree_create_with calls it.
 * Returns 0 (done; *out receives the paths), 1 when the spare could not be used (a commit gone
 * from the mirror, an I/O error before on_dir: the spare is removed, on_dir was not called, err
 * says why; make a fresh tree), or -errno after on_dir (nothing left behind). */
int worktree_spare_adopt(const char *workspace_root, const char *name, const char *spare_sha, const char *session_id,
                         const char *mirror_path, const char *base_sha, void (*on_dir)(void *ctx, const char *tree),
                         void *ctx, worktree_paths *out, ns_error *err);
