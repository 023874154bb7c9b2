/* nightshift supervisor — bringing a session's commits back into the mirror without opening the
 * session's repository.
 *
 * Inside the sandbox, as the agent, `git pack-objects --revs --stdout` packs `<tip> --not <the
 * branch's previous tip or the base>`; the supervisor streams that pack here.  The pack is hostile
 * input: it is size-bounded, indexed by libgit2's indexer into a quarantine directory inside the
 * mirror, and checked — the announced tip must be a commit, the previous tip (or the base, for a
 * new branch) must be its ancestor, every object the new commits reach must exist — before the
 * pack joins the mirror's objects and refs/heads/nightshift/<session-id> is fast-forwarded with a
 * compare-and-swap.  Nothing in the session's .git (config, hooks, alternates) is ever read.
 *
 * Blocking: call off the event loop.  gitx_init() must have been called. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "mirror.h"

#define IMPORT_DEFAULT_MAX_PACK_BYTES (UINT64_C(1) << 30)
#define IMPORT_DEFAULT_MAX_OBJECTS 5000000u
#define IMPORT_DEFAULT_MAX_COMMITS 100000u
#define IMPORT_DEFAULT_MAX_FILES 1000u

typedef struct import_opts {
        uint64_t max_pack_bytes; /* refuse a larger pack stream (-EFBIG); 0 → 1 GiB */
        uint32_t max_objects;    /* refuse a pack announcing more objects; 0 → 5,000,000 */
        uint32_t max_commits;    /* refuse more new commits than this; 0 → 100,000 */
        size_t max_files;        /* list at most this many files in the result; 0 → 1000 */
} import_opts;

typedef struct import_file {
        char *path;
        char status; /* 'A' added, 'M' modified, 'D' deleted, 'T' type change, 'X' other */
        bool binary;
        size_t additions, deletions;
} import_file;

typedef struct import_result {
        char old_sha[MIRROR_SHA_HEX_LEN + 1]; /* branch tip before, or the base for a new branch */
        char new_sha[MIRROR_SHA_HEX_LEN + 1];
        bool created;                         /* the branch did not exist before */
        size_t commits;                       /* commits in old..new */
        char *summary;                        /* first line of the tip's message (≤ 200 bytes) */
        size_t files_changed, additions, deletions; /* old tree → new tree, over all files */
        import_file *files;                   /* the first max_files of them */
        size_t n_files;
        bool files_truncated;
} import_result;

/* Free what *r owns and zero it. */
void import_result_clear(import_result *r);

/* Import the pack read from `pack_fd` (until EOF; the fd stays open) into the bare mirror at
 * `mirror_path` and fast-forward refs/heads/<branch> to `expected_tip_sha`.
 *   branch            must be "nightshift/<session-id>" (-EPERM otherwise)
 *   expected_tip_sha  40 hex digits, a commit in the pack (or already in the mirror)
 *   base_sha          the session's base commit; used as the old tip when the branch is new
 *                     (may be NULL when the branch exists)
 * Refused with nothing changed: a larger pack (-EFBIG), a malformed or incomplete pack, a tip
 * missing or not a commit (-ENOENT), a non-fast-forward (-EAGAIN), a branch that moved meanwhile
 * (-ESTALE).  A tip equal to the old tip is a successful no-op (commits == 0) that does not read
 * the fd.  On success *out (may be NULL) describes the change for the `commit` event. */
int import_pack(const char *mirror_path, const char *branch, int pack_fd, const char *expected_tip_sha,
                const char *base_sha, const import_opts *opts, import_result *out, ns_error *err);

/* The `commit` event data for a result: {"sha","parent","branch","created","commits","summary",
 * "files_changed","additions","deletions","files":[{"path","status","additions","deletions",
 * "binary"}],"files_truncated"}.  *json is malloc'd. */
int import_commit_event_json(const import_result *r, const char *branch, char **json, ns_error *err);
