/* nightshift supervisor — pull requests on GitHub (pr.c).
 *
 * `POST /api/v1/sessions/{id}/pr` {draft?, title?, body?} pushes the session's branch first (the
 * same job as /push, gate included: a pull request needs its head on the remote, and pushing an
 * up-to-date branch is a no-op), then opens the pull request nightshift/<id> → base through the
 * GitHub REST API ({--github-api-url}/repos/OWNER/NAME/pulls) with the vault's GITHUB_TOKEN.  One
 * per branch: when GitHub answers 422 the open one of that head is looked up and returned.  The
 * link becomes a `pull_request` artifact and a `pr` event; failures an `error` event. */
#pragma once

#include <stdbool.h>

typedef struct sv_server sv_server;

/* A session reached `completed` (loop thread): its repository's on_complete setting (push | pr)
 * is carried out off the loop when the branch has commits beyond its base; each result an event. */
void sv_pr_on_complete(sv_server *s, const char *sid);

/* A GitHub issue_comment started session `sid` on repository `repo_id` (loop thread): comment
 * back on issue/PR `number` with `link`, off the loop; a failure is an `error` event of the
 * session, never the webhook's answer. */
void sv_pr_comment_started(sv_server *s, const char *repo_id, int number, const char *sid, const char *link);
