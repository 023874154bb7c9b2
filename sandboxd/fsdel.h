/* Deleting agent-made trees by descriptor, and freezing them by rename.
 *
 * Upper dirs, layers and working trees are written by sandboxed code and are hostile input:
 * symlinks anywhere, hard links to files outside, directories with mode 000, nesting deeper than
 * any path can name, FIFOs, sockets and device nodes.  Everything here works through directory
 * file descriptors and single path components; no path string of the tree is ever built. */
#pragma once

#include <stddef.h>

#include "common/err.h"

/* Delete `name` (one path component) beneath the directory `parent_dirfd`, with everything under
 * it.  A non-directory is simply unlinked; a directory is emptied depth-first with an explicit
 * stack (depth is unbounded: a 10,000-deep tree works with a handful of descriptors) and then
 * removed.  Never follows a symlink (a symlink is unlinked, its target untouched), never
 * crosses a mount point, never opens anything but directories.  Hard links lose only the link.
 * Works as root whatever the modes; for an unprivileged owner it makes its own directories
 * writable where needed.
 *
 * Returns 0 when everything is gone.  Errors: ENOENT (`name` does not exist), EINVAL (`name` is
 * not a single component), EXDEV (a mount point inside the tree, or `name` itself is one: nothing
 * beneath it is touched, the rest may be partly deleted), ESTALE (the tree changed under us so
 * that ".." no longer leads back to the directory we came from), or the errno of the failing
 * call.  On error the tree may be partly deleted. */
int fsdel_tree_at(int parent_dirfd, const char *name, ns_error *err);

/* "Freeze by rename": move `name` (one component) beneath `dirfd` into `trash_dirfd` under a
 * fresh unguessable name ("del-" and 16 hex digits), which is written to out_name (NUL-terminated;
 * cap ≥ 21).  The rename is atomic and does not follow symlinks: whatever is at `name` stops
 * being reachable there at once, and can be deleted at leisure with fsdel_tree_at(trash_dirfd,
 * out_name).  Both directories must be on the same filesystem.
 *
 * Errors: EINVAL (bad name), ENOBUFS (cap too small), ENOENT, EXDEV (different filesystems), or
 * the errno of renameat2. */
int fsdel_rename_to_trash(int dirfd, const char *name, int trash_dirfd, char *out_name, size_t cap,
                          ns_error *err);
