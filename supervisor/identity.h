/* nightshift supervisor — a session's commit identity.
 *
 * Every session commits as its own author, so that each commit and PR traces back to the session
 * and agent that made it.  The name and email come from templates (server flags --git-name and
 * --git-email, or a repository's .nightshift/config `git_name` / `git_email`) in which
 * `{session}` (or a single legacy `%s`) is the session id and `{agent}` the agent's name.
 * Defaults: "nightshift %s" and "%s@nightshift.invalid". */
#pragma once

#include <stdbool.h>

#include "common/err.h"

#define SV_IDENTITY_MAX 200

/* True when `tmpl` is a usable template: ≤ SV_IDENTITY_MAX bytes, no newline, '<', '>', '"' or
 * '\\' (they would break the commit header or the git config line), and no '%' but one "%s". */
bool sv_identity_template_ok(const char *tmpl);

/* Expand `tmpl` for session `sid` and agent `agent` into *out (malloc'd). */
int sv_identity_expand(const char *tmpl, const char *sid, const char *agent, char **out, ns_error *err);
