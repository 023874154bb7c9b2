/* The host layer: the default lowest read-only layer of every sandbox's root.
 *
 * It is built from the host itself, so nothing is downloaded: the merged-/usr symlinks (/bin,
 * /lib, /lib64, /sbin, /lib32, /libx32) exactly as the host has them, empty mount points (usr,
 * proc, dev, sys, workspace, ...), /home/agent owned by 1000:1000, and a generated minimal /etc
 * (passwd and group with root and agent 1000, hosts, an empty resolv.conf, files-only nsswitch)
 * plus the few host /etc files programs expect (CA certificates, alternatives, ld.so cache and
 * config, localtime, os-release, shell profiles, services, ...).  The host's /usr is not in it:
 * the sandbox mounts /usr separately over the layer's empty usr directory.
 *
 * What goes in is one table in hostlayer.c; extend it there. */
#pragma once

#include "common/err.h"

/* Bump when the table or the format changes: an existing layer with another version is rebuilt. */
#define HOSTLAYER_VERSION 1

/* The stamp file inside the layer: "nightshift host layer vN inputs <hex>\n", where <hex> is a
 * fingerprint of the table and of the host inputs (device, inode, size, mtime, link targets). */
#define HOSTLAYER_STAMP "etc/nightshift-layer"

/* Make sure `name` (one path component) beneath `state_dirfd` holds an up-to-date host layer.
 *
 * When a layer is there and its stamp matches the current table and host inputs, it is kept
 * untouched (returns 0 quickly: a few dozen lstat calls).  Otherwise a new one is built in a
 * temporary directory next to it (".<name>.tmp-<random>") and swapped in atomically with
 * renameat2(RENAME_EXCHANGE) (or RENAME_NOREPLACE when there was none).  The old layer is not
 * deleted but moved aside to ".<name>.old-<random>": sandboxes re-adopted after a daemon restart
 * may still have it as their overlay lower (an overlay keeps working across a rename of its
 * lower, not across the deletion of its files).  hostlayer_prune removes those once no sandbox
 * can use them.  Leftover temporary directories of an interrupted build are removed first.
 * Must run as root (entries are chowned to 0:0 and home/agent to 1000:1000).
 *
 * Host directories where the host has a real directory instead of a merged-/usr symlink (e.g.
 * /lib64 on a non-merged host) become empty directories in the layer: the caller has to bind the
 * host's directory there.
 *
 * Returns 0 or -errno: EINVAL (bad name), EFBIG (a host file over 4 MiB), E2BIG (a host directory
 * with too many entries), or the errno of the failing call. */
int hostlayer_build(int state_dirfd, const char *name, ns_error *err);

/* Delete the layers hostlayer_build moved aside (".<name>.old-*") beneath `state_dirfd`.  Call it
 * when no running sandbox can have one of them as its lower: at daemon start when nothing was
 * re-adopted, or whenever the last sandbox is destroyed.  Returns 0 or -errno (EINVAL for a bad
 * name, else the first deletion's error). */
int hostlayer_prune(int state_dirfd, const char *name, ns_error *err);
