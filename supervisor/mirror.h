/* nightshift supervisor — bare mirrors of registered repositories.
 *
 * A repository is registered by cloning it (a local path too: never used in place) into a bare
 * mirror at <data-dir>/mirrors/<repo-id>.git; the mirror is fetched before each new session, is
 * what sessions' working trees borrow objects from (read-only), receives their commits (import.h)
 * and is the only thing ever pushed from.
 *
 * Mirror semantics, with one exception: upstream branches and tags are copied to the same names
 * (every branch and tag) and pruned when upstream deletes them, except that the
 * `refs/heads/nightshift/` namespace belongs to sessions — upstream refs there are ignored and
 * ours are never pruned or overwritten by a fetch.  The upstream URL is not written into the
 * mirror's config (an anonymous remote is used for each fetch), so the mirror's config is the one
 * libgit2 wrote at init and nothing else.
 *
 * All functions block (network, disk): call them off the event loop.  They open the mirror per
 * call, so they may run on any thread; serialise fetches of one mirror in the caller.
 * gitx_init() must have been called. */
#pragma once

#include <stdbool.h>

#include "common/err.h"

#define MIRROR_SHA_HEX_LEN 40
#define MIRROR_SESSION_BRANCH_PREFIX "nightshift/"

/* *out = the canonical source to store and fetch from: a URL (scheme://…, or scp-like
 * user@host:path) is returned unchanged; anything else must be an existing local directory and is
 * returned as its canonical absolute path (realpath). */
int mirror_source_normalize(const char *url_or_path, char **out, ns_error *err);

/* *out = "<data_dir>/mirrors/<repo_id>.git" (repo_id must be a valid "r-…" id). */
int mirror_path_for(const char *data_dir, const char *repo_id, char **out, ns_error *err);

/* Create a new bare mirror at `mirror_path` (which must not exist; its parent is created if
 * needed) and fetch everything from `source` (a mirror_source_normalize result).  *default_branch
 * (may be NULL) receives upstream's HEAD branch name without "refs/heads/" ("main"), or NULL when
 * upstream has none; the mirror's HEAD points at it.  On failure nothing is left behind. */
int mirror_create(const char *mirror_path, const char *source, char **default_branch, ns_error *err);

/* Fetch `source` into the existing mirror (see the header comment for what is updated). */
int mirror_fetch(const char *mirror_path, const char *source, char **default_branch, ns_error *err);

/* Resolve `ref` to a commit: "HEAD", a branch ("main", "refs/heads/main"), a tag ("v1",
 * "refs/tags/v1", annotated tags are peeled) or a commit id (full or an unambiguous prefix of at
 * least 7 hex digits; branches and tags win over prefixes).  sha_out gets 40 hex digits and a NUL.
 * -ENOENT "base ref 'x' not found" when nothing matches; -EINVAL for a malformed name.
 * Read-only: nothing is written. */
int mirror_resolve(const char *mirror_path, const char *ref, char sha_out[MIRROR_SHA_HEX_LEN + 1], ns_error *err);

/* True for "nightshift/<session-id>" with a well-formed session id. */
bool mirror_branch_is_session(const char *branch);

/* The commit refs/heads/<branch> points at, or -ENOENT. */
int mirror_branch_tip(const char *mirror_path, const char *branch, char sha_out[MIRROR_SHA_HEX_LEN + 1], ns_error *err);

/* Delete the session branch refs/heads/nightshift/<session-id> (idempotent: absent is success).
 * Refuses any other branch. */
int mirror_branch_delete(const char *mirror_path, const char *branch, ns_error *err);
