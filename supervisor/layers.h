/* The layer store's housekeeping: listing and garbage collection of sandboxd's layers.
 *
 * Layers live in sandboxd's --layers-dir (sandboxd makes them with `snapshot` and alone deletes
 * them, `layer_remove`, refusing one in use); this decides which to remove: those unused for
 * longer than an age, then the least recently used until the total is under a size cap.  A
 * layer some sandbox stacks is never a candidate; neither is one made by hand or by another user
 * (sandboxd would refuse those anyway). */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "sandboxd/client.h"

typedef struct layers_gc_policy {
        uint64_t max_bytes;  /* 0 = no size cap */
        int64_t max_age_s;   /* unused this long: removed; 0 = no age limit */
        bool dry_run;        /* decide and report, remove nothing */
} layers_gc_policy;

typedef struct layers_gc_result {
        size_t removed, kept;
        uint64_t bytes_removed, bytes_kept;
} layers_gc_result;

/* sandboxd's `layers` reply (its array is *out, owned by the caller). */
int layers_list(ns_client *c, cJSON **out, ns_error *err);

/* Apply `policy` to the layers `uid` may remove.  `removed_names` (may be NULL) gets the removed
 * names as a JSON array (caller frees).  A layer that sandboxd refuses meanwhile (it came into
 * use) is kept, not an error. */
int layers_gc(ns_client *c, uid_t uid, const layers_gc_policy *policy, layers_gc_result *res, cJSON **removed_names,
              ns_error *err);
