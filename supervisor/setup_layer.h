/* Warm starts: the layer a repository's setup script leaves behind, and its key.
 *
 * What .nightshift/setup.sh changes outside /workspace (global installs, caches in the agent's
 * home) is kept by sandboxd as a read-only layer (its `snapshot` op), named after a key that
 * covers everything the result depends on: the host's package state (an `apt upgrade` changes
 * it), the setup script, the lockfiles the repository lists in .nightshift/config and the
 * env.* settings.  A session whose key has a layer stacks it and skips setup. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

#define SETUP_LAYER_PREFIX "setup-"
#define SETUP_LAYER_NAME_MAX 47 /* "setup-" + 40 hex digits + NUL */
#define SETUP_LOCKFILES_MAX 16
#define SETUP_CACHE_DIRS_MAX 4 /* sandboxd's NS_OVERLAYS_MAX */

/* The key's inputs, gathered from the base commit in the mirror (never the session's tree). */
typedef struct setup_key_inputs {
        char setup_oid[41];                     /* blob id of .nightshift/setup.sh */
        const char *lockfiles[SETUP_LOCKFILES_MAX]; /* repository-relative paths, as configured */
        char lock_oids[SETUP_LOCKFILES_MAX][41];    /* blob id, or "" when absent at that commit */
        size_t n_lockfiles;
        const char *const *env;                 /* "K=V" settings that setup runs with */
        size_t n_env;
        const char *base;                       /* the base image's layer name, NULL for the host layer */
        const char *const *cache_dirs;          /* `cache_dirs`: repository-relative dirs kept in the layer */
        size_t n_cache_dirs;
} setup_key_inputs;

/* The layer name for these inputs on this host: "setup-" and 40 hex digits of a SHA-256. */
int setup_layer_name(const setup_key_inputs *in, char out[SETUP_LAYER_NAME_MAX + 1], ns_error *err);

/* True when `path` can be a lockfile entry: relative, clean (no "", ".", ".." components), at
 * most 255 bytes, printable without spaces. */
bool setup_lockfile_path_ok(const char *path);
