/* nightshift supervisor — per-repository settings the server keeps (not the repository's files,
 * which a session's agent controls): what to do when a session completes, how pull requests are
 * opened, where pushes go.  Stored as one JSON object in the settings table under
 * "repo:<repo_id>"; `GET`/`PATCH /api/v1/repos/{repo_id}/settings`.
 *
 *   on_complete  "none" (default) | "push" | "pr": when a session reaches `completed` with commits
 *                beyond its base, push its branch / push it and open a pull request (pr.c)
 *   pr_draft     open those pull requests as drafts (default false)
 *   github_repo  "owner/name" on GitHub; default: derived from the repository's URL
 *   pr_base      the pull request's base branch; default: the session's base ref
 *   push_url     push here instead of the registered URL (e.g. fetch over HTTPS, push over SSH)
 *   auto_publish publish every new listening port of this repository's sessions as a preview:
 *                true / false override the server's --auto-publish; null (default) follows it */
#pragma once

#include <stdbool.h>

#include "common/err.h"

typedef struct db db;
typedef struct sv_req sv_req;
typedef struct sv_route_args sv_route_args;

typedef struct sv_repo_settings {
        char on_complete[8]; /* none | push | pr */
        bool pr_draft;
        char *github_repo, *pr_base, *push_url; /* NULL = unset */
        int auto_publish;                       /* -1 = the server's --auto-publish, else 0 or 1 */
} sv_repo_settings;

/* The settings of repository `repo_id` (defaults when none are stored).  0 or -errno. */
int sv_repo_settings_get(db *d, const char *repo_id, sv_repo_settings *out, ns_error *err);
void sv_repo_settings_clear(sv_repo_settings *s);
/* Drop the settings of a deleted repository (best effort: ids are never reused). */
void sv_repo_settings_forget(db *d, const char *repo_id);

/* GET and PATCH /api/v1/repos/{repo_id}/settings (a member null resets it). */
void sv_api_repo_settings_get(sv_req *r, const sv_route_args *a);
void sv_api_repo_settings_patch(sv_req *r, const sv_route_args *a);
