/* Read-only layers beneath --layers-dir: names, snapshots of dead sandboxes' upper layers,
 * listing, removal.
 *
 * A layer is a root tree ("etc/...", "usr/...") with owners as they are seen inside a sandbox
 * (0 = the sandbox's root, 1000 = the agent): sandboxes mount it idmapped through their own user
 * namespace, so the same layer serves every uid range.  Whiteouts (0/0 character devices) and
 * opaque directories (trusted.overlay.opaque) are kept: a layer records deletions as well as
 * additions and can be stacked above the layers it was made on.
 *
 * Metadata lives beside the tree in ".meta-<name>" (JSON: bytes, files, created, owner, source);
 * names that start with "." are never layers, so it cannot collide with one.  Layers an operator
 * put there by hand have no metadata: they are listed, never removed through the protocol. */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

#define LAYER_NAME_MAX 64
#define LAYER_HOST "@host" /* in a create's `layers`: the host layer (and the host's /usr) as the base */

/* True when `s` matches [a-z0-9][a-z0-9._-]{0,63}. */
bool layer_name_valid(const char *s);

/* What a snapshot holds: regular files and their allocated bytes. */
struct layer_stats {
        uint64_t bytes, files;
};

/* Turn the upper layer of the dead sandbox `id` (beneath `upper_dirfd`: <id>/root/upper and
 * <id>/usr/upper, and <id>/ov<i>/upper for each of its `overlays`, which land at that path in the
 * layer, e.g. workspace/node_modules) into the layer `name` beneath `layers_dirfd`.
 *
 * The caller guarantees that no process of the sandbox is left, so no overlay has the upper
 * mounted: the tree is moved, not copied (both directories must be on one filesystem, else
 * EXDEV), then walked by descriptor without following a link: owners in the sandbox's host range
 * [uid_base, uid_base + range) become the ids seen inside, any other owner becomes 65534;
 * set-user/group-ID bits are cleared; device nodes other than whiteouts, FIFOs and sockets are
 * dropped; hard links are normalised once.  The tree then gets its metadata (owner = the peer
 * uid that asked), is synced, and appears under `name` atomically.  On failure nothing appears
 * and the moved tree is deleted.
 *
 * Errors: EINVAL (bad name), EEXIST (the name is taken), EXDEV (upper and layers dirs on
 * different filesystems), ELOOP (deeper than 512 levels), or the errno of the failing call. */
int layer_from_upper(int upper_dirfd, const char *id, int layers_dirfd, const char *name, uid_t uid_base,
                     uint32_t range, uid_t owner, const char *const *overlays, size_t n_overlays,
                     struct layer_stats *st, ns_error *err);

/* The layers beneath `layers_dirfd` as a JSON array of {name, bytes?, files?, created?, owner?,
 * source?, last_used?} (metadata fields only for layers made by snapshot), at most `max` entries
 * in name order.  Returns NULL with err set on failure. */
cJSON *layer_list(int layers_dirfd, size_t max, ns_error *err);

/* Record that a sandbox stacks `name` now (its metadata's mtime is `last_used`).  Best effort. */
void layer_touch(int layers_dirfd, const char *name);

/* Remove the layer `name` made by a snapshot of `peer`'s (root may remove any snapshot layer):
 * its tree is renamed out of the way at once, to ".del-<16 hex digits>" written to `trash`
 * (cap >= 24), and its metadata removed; the caller deletes the trash tree by descriptor
 * (fsdel_tree_at), off its event loop.  The caller checks that no sandbox stacks the layer.
 *
 * Errors: EINVAL (bad name), ENOENT (no such layer), EPERM (made by another peer, or by hand), or
 * the errno of the failing call. */
int layer_remove(int layers_dirfd, const char *name, uid_t peer, char *trash, size_t cap, ns_error *err);

/* Delete leftovers of interrupted snapshots and removals (".snap-*", ".del-*") beneath
 * `layers_dirfd`: call at daemon start, before any snapshot can run. */
void layer_cleanup(int layers_dirfd);
