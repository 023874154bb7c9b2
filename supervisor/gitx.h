/* nightshift supervisor — libgit2 glue: process set-up, error conversion, scope-bound cleanup.
 *
 * libgit2 reports errors as a negative GIT_E* code plus a thread-local message (git_error_last);
 * gitx_err() turns both into our ns_error so that nothing above this layer sees libgit2 codes. */
#pragma once

#include <git2.h>

#include "common/err.h"

/* Initialise libgit2 for this process (reference-counted, pair with gitx_shutdown) and make it
 * hermetic: no system, global or XDG config file is read, so the only git configuration that
 * influences the supervisor is the one of the repository it opened — which is always one it
 * created itself.  Returns 0 or -errno. */
int gitx_init(ns_error *err);
/* Drop one reference taken by gitx_init. */
void gitx_shutdown(void);

/* Fill *err from a libgit2 return code `gerr` (< 0) and git_error_last(), with a printf-style
 * context prefix; returns the matching -errno. */
int gitx_err(ns_error *err, int gerr, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Open a repository exactly at `path`: no discovery upwards, no following of a `.git` file
 * ("gitdir:"), no GIT_DIR/GIT_* environment.  For the mirror and for trees we just created. */
int gitx_open_exact(git_repository **out, const char *path, ns_error *err);

/* True when `s` is exactly 40 lowercase hex digits. */
int gitx_is_sha_hex(const char *s);

#define GITX_DEFINE_FREEP(type)                             \
        static inline void type##_freep(type **p) {         \
                if (*p)                                     \
                        type##_free(*p);                    \
        }
GITX_DEFINE_FREEP(git_repository)
GITX_DEFINE_FREEP(git_reference)
GITX_DEFINE_FREEP(git_object)
GITX_DEFINE_FREEP(git_commit)
GITX_DEFINE_FREEP(git_tree)
GITX_DEFINE_FREEP(git_odb)
GITX_DEFINE_FREEP(git_revwalk)
GITX_DEFINE_FREEP(git_remote)
GITX_DEFINE_FREEP(git_diff)
GITX_DEFINE_FREEP(git_patch)
GITX_DEFINE_FREEP(git_indexer)
GITX_DEFINE_FREEP(git_config)
GITX_DEFINE_FREEP(git_diff_stats)
GITX_DEFINE_FREEP(git_reference_iterator)

static inline void git_buf_disposep(git_buf *b) {
        git_buf_dispose(b);
}
static inline void git_strarray_disposep(git_strarray *a) {
        git_strarray_dispose(a);
}
