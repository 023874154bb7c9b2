/* nightshift supervisor — identifiers ("s-<12 base32>" for sessions, "r-…" for repositories).
 *
 * Ids end up in file names (working trees, mirrors) and branch names, so a valid id is exactly a
 * prefix letter, '-', and 12 characters of lowercase RFC 4648 base32: no '/', '.', or
 * anything else a path or a refname could trip on. */
#pragma once

#include <stdbool.h>

#include "common/err.h"

#define SV_ID_BODY_LEN 12
#define SV_ID_LEN (2 + SV_ID_BODY_LEN)
#define SV_ID_PREFIX_SESSION 's'
#define SV_ID_PREFIX_REPO 'r'
#define SV_ID_PREFIX_TOKEN 't'

/* Write a fresh random id with the given prefix letter into out (SV_ID_LEN + 1 bytes).
 * 60 bits from getrandom(2).  Returns 0 or -errno. */
int sv_id_new(char prefix, char out[SV_ID_LEN + 1], ns_error *err);

/* True when `s` is a well-formed id with that prefix letter. */
bool sv_id_valid(const char *s, char prefix);
