/* nightshift supervisor — spare working trees, made ahead of the sessions that will use them.
 *
 * Checking out a repository is most of a session's start (bench/README.md).  As sandboxd keeps
 * sandboxes warm (sandboxd/pool.c), the supervisor keeps, for every repository that has had a
 * session, up to `per_repo` spare trees (worktree.h, "spare trees") checked out at the commit the
 * last session of it started from.  A session takes one (worktree_spare_adopt) instead of
 * checking out, and the one it took is made again in the background.
 *
 * One thread of this module's own does all the building, moving and removing, one tree at a time
 * and a little after it was asked for (the session that asked comes first).  It starts by removing
 * every spare found in the workspace root: the list of which are whole lives only in memory, so
 * after a restart (or a crash in the middle of making one) they are all stale.  Spares are keyed
 * by the mirror's path.  Every function is thread-safe. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "worktree.h"

typedef struct sv_spares sv_spares;

typedef struct sv_spare_stats {
        uint64_t ready, busy;   /* spares ready to be taken; being made or moved */
        uint64_t bytes;         /* disk used by the ready ones */
        uint64_t taken, missed; /* sessions that got a spare / made a fresh tree (spares on) */
        uint64_t discarded;     /* spares dropped unused: their commit gone, or failed to move */
} sv_spare_stats;

/* Start the pool for working trees beneath `workspace_root`, keeping up to `per_repo` spares
 * per repository (0: none are made, but stale ones are still removed).  Returns 0 or -errno. */
int sv_spares_new(const char *workspace_root, int per_repo, sv_spares **out, ns_error *err);

/* Stop the thread (after the tree it is working on) and remove every spare.  NULL is a no-op. */
void sv_spares_free(sv_spares *sp);

/* Take a ready spare of the mirror at `mirror_path`: true and its name and commit, which the
 * caller now owns (worktree_spare_adopt or worktree_spare_remove), or false.  Counts a miss when
 * spares are on and none was ready. */
bool sv_spares_take(sv_spares *sp, const char *mirror_path, char name[WORKTREE_SPARE_NAME_LEN + 1],
                    char sha[41]);

/* A taken spare turned out unusable (worktree_spare_adopt returned 1): counted as discarded and
 * as a miss. */
void sv_spares_unusable(sv_spares *sp);

/* The next session of the mirror will most likely start at `sha`: keep its spares there (make
 * missing ones, move ready ones at another commit).  A no-op when spares are off. */
void sv_spares_want(sv_spares *sp, const char *mirror_path, const char *sha);

/* The repository of the mirror is going away: forget it, wait for the tree being made for it (if
 * any) and remove its spares.  Blocking: call off the event loop. */
void sv_spares_forget(sv_spares *sp, const char *mirror_path);

/* Counters and gauges for /metrics. */
void sv_spares_stats(sv_spares *sp, sv_spare_stats *out);
