/* nightshift supervisor — triggers: sessions started by GitHub and Slack webhooks.
 *
 * These routes carry no bearer token (their senders hold none): each request is verified instead
 * with an HMAC-SHA256 over its raw body under a vault secret (global scope), compared in constant
 * time, before anything in it is read.
 *
 * POST /api/v1/hooks/github (secret GITHUB_WEBHOOK_SECRET, header X-Hub-Signature-256): a
 *   delivery id (X-GitHub-Delivery) is accepted once (409 on replay).  `issue_comment` created,
 *   whose body starts with --hook-command-prefix and whose author_association is in
 *   --hook-associations, starts a session on the registered repository that matches
 *   repository.clone_url / html_url / ssh_url (the registered URL) or full_name / name (the
 *   registered name), with the rest of the comment as the prompt (201 and the session).
 *   `workflow_run` completed with conclusion failure starts a fix-CI session on the run's branch
 *   only for a repository named in --hook-ci-repos, and never for a run whose head repository is
 *   not the repository itself (a fork's code).  Everything else: 202 {"status":"ignored"}.
 * POST /api/v1/hooks/slack (secret SLACK_SIGNING_SECRET, headers X-Slack-Signature v0= and
 *   X-Slack-Request-Timestamp, at most 5 minutes off): a slash command `text=REPO PROMPT…` starts
 *   a session; the answer (200) is a Slack message with the session's link.
 * POST /api/v1/hooks/linear (hooks_linear.c; secret LINEAR_WEBHOOK_SECRET, header Linear-Signature,
 *   hex): see there.
 * POST /api/v1/hooks/generic: not signed but token-authenticated (a token of scope "hook", good
 *   for this route only, or an API token); the body and answer of POST /api/v1/sessions.
 *
 * Delivery ids are kept SV_HOOK_REPLAY_WINDOW_MS and then pruned (sv_hook_deliveries_prune): a
 * GitHub delivery replayed after that would be accepted again (GitHub signs no timestamp); Slack's
 * and Linear's signed timestamps expire long before. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

#include "http.h"

/* True for exactly the hook routes (method and path): auth.c lets them through without a token
 * because their handlers verify a signature. */
bool sv_hook_route(const char *method, const char *path);

typedef struct sv_route_args sv_route_args;
void sv_api_hook_github(sv_req *r, const sv_route_args *a);
void sv_api_hook_slack(sv_req *r, const sv_route_args *a);
void sv_api_hook_linear(sv_req *r, const sv_route_args *a);

#define SV_HOOK_GENERIC_PATH "/api/v1/hooks/generic"
#define SV_HOOK_REPLAY_WINDOW_MS (INT64_C(7) * 24 * 3600 * 1000)

/* Delete the delivery ids received more than SV_HOOK_REPLAY_WINDOW_MS before `now_ms`; returns
 * how many went, or -errno. */
typedef struct db db;
int sv_hook_deliveries_prune(db *d, int64_t now_ms, ns_error *err);
