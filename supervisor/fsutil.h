/* nightshift supervisor — file-system helpers for trees an agent has written to.
 *
 * Working trees and session git dirs are hostile input (DESIGN.md, "Host code that touches
 * agent-made files"): the agent may have planted symlinks to /etc, swapped directories for links
 * while we walk, made trees deeper than the descriptor limit, or left fifos and sockets around.
 * Everything here works by descriptor, resolves with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
 * RESOLVE_NO_XDEV), never follows a link and never opens anything but directories.  Blocking:
 * call it off the event loop. */
#pragma once

#include "common/err.h"

/* Open directory `name` (one path component) beneath `dirfd` for reading entries: O_DIRECTORY |
 * O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC through openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
 * RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV.  Returns the fd or -errno (ELOOP/ENOTDIR when `name`
 * is a symlink or not a directory, EXDEV when it is a mount point). */
int fs_open_dir_beneath(int dirfd, const char *name, ns_error *err);

/* Delete `name` (one path component: no '/', not "." or "..") beneath the directory `dirfd`,
 * recursively, without ever following a symbolic link: a symlink is unlinked, its target is
 * untouched.  Directories are unlinked by descriptor (unlinkat on the parent's fd).  Never
 * crosses a mount point (EXDEV).  Deep trees do not exhaust descriptors: past a fixed depth a
 * subdirectory is renamed up to the top of the tree being deleted and handled from there.
 * A missing `name` is success (idempotent).  Returns 0 or -errno. */
int fs_remove_tree_at(int dirfd, const char *name, ns_error *err);

/* Open `path` (an absolute path chosen by the operator or by us, not by an agent) as an O_PATH
 * directory descriptor for use as a `dirfd` above.  Returns the fd or -errno. */
int fs_open_trusted_dir(const char *path, ns_error *err);
