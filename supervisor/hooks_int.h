/* nightshift supervisor — what the trigger files (hooks.c, hooks_linear.c) share.  Not for other
 * code. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "http.h"
#include "vault.h"

/* True when `hex` (exactly 64 hex digits) is the HMAC-SHA256 under `key` of parts[0..n)
 * concatenated, compared in constant time. */
bool sv_hook_hmac_ok(const sv_secret *key, const char *const *parts, const size_t *lens, size_t n, const char *hex);
/* The global vault secret `name` into *out (sv_secret_clear it), or -1 after replying (503 when
 * it is not set, 500 when the vault failed). */
int sv_hook_secret(sv_req *r, const char *name, sv_secret *out);
/* Record delivery `id` of `source`: 1 new, 0 seen before, -1 after replying 500. */
int sv_hook_delivery_new(sv_req *r, const char *source, const char *id);
/* Start a session of --hook-agent on `repo` (id or name) from `base` (NULL: the default branch);
 * the reply (201 with the session and its dashboard "url", or the error) is written for us. */
void sv_hook_start_session(sv_req *r, const char *repo, const char *base, const char *title, const char *prompt);
/* Reply 202 {"status": "ignored", "reason": why}. */
void sv_hook_ignored(sv_req *r, const char *why);
