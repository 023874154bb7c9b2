/* nightshift — validated access to untrusted JSON (cJSON).
 *
 * cJSON stores numbers as doubles; every integer read here is checked to be finite, integral and
 * within [min, max] before it is converted, so NaN, 1e300, -1 or 2.5 never reach a size or a uid. */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"

/* Reject any member of `obj` whose name is not in the NULL-terminated `allowed` list. */
int jv_only_keys(const cJSON *obj, const char *const *allowed, ns_error *err);

/* Integer member `key` in [min, max] (both within ±2^53).  Missing: *out = def and 0 when
 * `required` is false, EINVAL otherwise. */
int jv_int(const cJSON *obj, const char *key, bool required, int64_t min, int64_t max, int64_t def,
           int64_t *out, ns_error *err);

/* Non-negative number (may be fractional) in [min, max], finite. */
int jv_double(const cJSON *obj, const char *key, bool required, double min, double max, double def,
              double *out, ns_error *err);

/* Boolean member; missing → def. */
int jv_bool(const cJSON *obj, const char *key, bool def, bool *out, ns_error *err);

/* String member of length 1..max_len with no NUL (cJSON cannot carry one) and, when `charset` is
 * non-NULL, only bytes from it.  Missing and not required → *out = NULL.  The pointer borrows from
 * `obj`. */
int jv_str(const cJSON *obj, const char *key, bool required, size_t max_len, const char *charset,
           const char **out, ns_error *err);

/* Array of strings, at most max_items, each at most max_len bytes; total bytes at most max_total.
 * *out is a freshly allocated NULL-terminated array of borrowed pointers (free() only the array).
 * Missing → *out = NULL, *n = 0 unless required. */
int jv_strv(const cJSON *obj, const char *key, bool required, size_t max_items, size_t max_len,
            size_t max_total, const char ***out, size_t *n, ns_error *err);

/* Characters allowed in identifiers (sandbox ids, names). */
#define JV_ID_CHARS "abcdefghijklmnopqrstuvwxyz0123456789-"
