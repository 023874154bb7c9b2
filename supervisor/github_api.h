/* nightshift supervisor — calls to the GitHub REST API (pull requests, issue comments).
 *
 * Blocking (libcurl): worker threads only.  Each call is bounded: 10 s to connect, 30 s in all,
 * a response of at most 1 MiB, http(s) only, no redirects followed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

#define SV_GH_API_DEFAULT "https://api.github.com"

typedef struct sv_gh_resp {
        long status; /* the HTTP status; 0 when no answer came */
        char *body;  /* NUL-terminated, malloc'd (may be empty) */
        size_t len;
} sv_gh_resp;
void sv_gh_resp_clear(sv_gh_resp *r);

/* Loop thread, before the first call: libcurl's global state. */
int sv_gh_global_init(ns_error *err);

/* METHOD api_base+path with the GitHub headers (Authorization: Bearer token, Accept:
 * application/vnd.github+json, X-GitHub-Api-Version) and, when json is non-NULL, that body.
 * 0 with out->status set for any HTTP answer (4xx/5xx included); -errno for a transport failure
 * (err says which, out->status 0). */
int sv_gh_call(const char *api_base, const char *method, const char *path, const char *token, const char *json,
               sv_gh_resp *out, ns_error *err);

/* "owner/name" of a GitHub repository URL (https://HOST/owner/name[.git], ssh://git@HOST/owner/
 * name[.git], git@HOST:owner/name[.git]) where HOST is github.com or the host of api_base (GitHub
 * Enterprise serves both from one host); false otherwise. */
bool sv_gh_repo_from_url(const char *url, const char *api_base, char *out, size_t cap);
