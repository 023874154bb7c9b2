/* The sandbox's filesystem: overlay root over idmapped read-only layers, a second overlay over the
 * host's /usr for the host layer, idmapped /workspace, read-only binds, fresh /proc with masked
 * paths, a minimal /dev, tmpfs /tmp, no /sys; then pivot_root.
 *
 * Runs in the sandbox's init before it leaves host root: a new mount namespace (owned by the
 * initial user namespace, so nothing inside can ever remount it), new pid namespace. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "sandboxd/proto.h"

struct mount_bind {
        int src_fd;      /* detached mount (mount_clone_detached) of the checked source */
        const char *dst; /* clean absolute path inside the sandbox */
};

struct mount_plan {
        const char *scaffold;           /* root-owned dir with empty subdirs "root", "usr", "e", "l0".."l15", "u0".."u15",
                                         * "o0".."o63" */
        const char *lowers[NS_LAYERS_MAX]; /* absolute layer dirs, lowest first */
        size_t n_lowers;
        bool host_usr;                  /* overlay the host's /usr at /usr (the host layer) */
        const char *usr_lowers[NS_LAYERS_MAX]; /* with host_usr: layers' usr/ dirs above it, lowest first */
        size_t n_usr_lowers;
        const char *upper;              /* per-sandbox dir holding root/{upper,work}, usr/{upper,work} */
        const char *disk_dev;           /* or: a loop device whose fresh ext4 holds them (disk limit) */
        uid_t upper_owner;              /* host uid of the sandbox's root: owns the upper roots */
        int userns_fd;                  /* the sandbox's user namespace: idmaps the layers */
        int workspace_fd;               /* detached, idmapped mount of the checked workspace, or -1 */
        const struct mount_bind *binds;
        size_t n_binds;
        /* Copy-on-write dirs beneath /workspace: an overlay each, upper <upper>/ov<i>, over the
         * layers' copies of the same path (lowest first; none: an empty dir). */
        struct mount_overlay {
                const char *dst;
                const char *lowers[NS_LAYERS_MAX];
                size_t n_lowers;
        } overlays[NS_OVERLAYS_MAX];
        size_t n_overlays;
};

/* Assemble the root filesystem described by `plan` and pivot into it; on return the process's
 * root and cwd are the new "/".  The caller must be in a fresh, private mount namespace. */
int mount_build_root(const struct mount_plan *plan, ns_error *err);

/* Attach the checked workspace mount (workspace_fd >= 0, at /workspace) and the read-only binds
 * (each at its dst) beneath `rootfd`, creating the mount points without following symlinks.
 * Used while building a root, and when a warm-pool sandbox is handed out (then from a helper
 * that has entered the sandbox's mount namespace, before anything of the sandbox's has run). */
int mount_attach_extras(int rootfd, int workspace_fd, const struct mount_bind *binds, size_t n_binds, ns_error *err);

/* A detached clone (open_tree OPEN_TREE_CLONE) of the tree at (dirfd, path) — path "" for dirfd
 * itself — with the MOUNT_ATTR_* bits in `attr`, idmapped through `userns_fd` when it is >= 0.
 * Must run in the mount namespace the source belongs to (the daemon's); the result can then be
 * attached in any other. */
int mount_clone_detached(int dirfd, const char *path, uint64_t attr, int userns_fd, ns_error *err);

/* Whether mount_build_root leaves the host's /usr a read-only bind (no layers above it, no disk
 * limit) rather than an overlay: the overlay, and its upper and work dirs beneath the sandbox's
 * upper dir, then come with mount_usr_overlay when needed. */
bool mount_usr_is_lazy(bool host_usr, size_t n_usr_lowers, bool disk);

/* The /usr overlay of a running sandbox that mount_build_root left lazy: the host's /usr,
 * idmapped through `userns_fd`, under <upper>/usr/{upper,work}.  Unshares the caller's mount
 * namespace (a helper process's, which then enters the sandbox's) and returns the detached
 * overlay's fd. */
int mount_usr_overlay(const char *scaffold, const char *upper, int userns_fd, ns_error *err);

/* In the sandbox's mount namespace: stack `ovl_fd` on /usr, unless /usr is an overlay already. */
int mount_usr_attach(int ovl_fd, ns_error *err);

/* Create the scaffold directory tree used by mount_build_root (idempotent). */
int mount_prepare_scaffold(const char *scaffold, ns_error *err);
