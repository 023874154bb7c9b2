#include "jsonv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JV_EXACT_MAX 9007199254740992.0 /* 2^53: the largest range where doubles are exact */

int jv_only_keys(const cJSON *obj, const char *const *allowed, ns_error *err) {
        if (!cJSON_IsObject(obj))
                return ns_err(err, EINVAL, "expected a JSON object");
        for (const cJSON *it = obj->child; it; it = it->next) {
                bool ok = false;
                for (const char *const *a = allowed; *a; a++)
                        if (it->string && strcmp(it->string, *a) == 0) {
                                ok = true;
                                break;
                        }
                if (!ok)
                        return ns_err(err, EINVAL, "unknown field '%.64s'", it->string ? it->string : "");
        }
        /* Duplicate keys would let a validator and a user of the object disagree. */
        for (const cJSON *a = obj->child; a; a = a->next)
                for (const cJSON *b = a->next; b; b = b->next)
                        if (a->string && b->string && strcmp(a->string, b->string) == 0)
                                return ns_err(err, EINVAL, "duplicate field '%.64s'", a->string);
        return 0;
}

int jv_double(const cJSON *obj, const char *key, bool required, double min, double max, double def,
              double *out, ns_error *err) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        if (!v || cJSON_IsNull(v)) {
                if (required)
                        return ns_err(err, EINVAL, "field '%s' is required", key);
                *out = def;
                return 0;
        }
        if (!cJSON_IsNumber(v))
                return ns_err(err, EINVAL, "field '%s' must be a number", key);
        double d = v->valuedouble;
        if (!isfinite(d) || d < min || d > max)
                return ns_err(err, ERANGE, "field '%s' must be a finite number in [%g, %g]", key, min, max);
        *out = d;
        return 0;
}

int jv_int(const cJSON *obj, const char *key, bool required, int64_t min, int64_t max, int64_t def,
           int64_t *out, ns_error *err) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        if (!v || cJSON_IsNull(v)) {
                if (required)
                        return ns_err(err, EINVAL, "field '%s' is required", key);
                *out = def;
                return 0;
        }
        if (!cJSON_IsNumber(v))
                return ns_err(err, EINVAL, "field '%s' must be an integer", key);
        double d = v->valuedouble;
        if (!isfinite(d) || d != floor(d) || fabs(d) > JV_EXACT_MAX || d < (double) min || d > (double) max)
                return ns_err(err, ERANGE, "field '%s' must be an integer in [%lld, %lld]", key,
                              (long long) min, (long long) max);
        *out = (int64_t) d;
        return 0;
}

int jv_bool(const cJSON *obj, const char *key, bool def, bool *out, ns_error *err) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        if (!v || cJSON_IsNull(v)) {
                *out = def;
                return 0;
        }
        if (!cJSON_IsBool(v))
                return ns_err(err, EINVAL, "field '%s' must be true or false", key);
        *out = cJSON_IsTrue(v);
        return 0;
}

static int str_check(const char *what, const char *s, size_t max_len, const char *charset, ns_error *err) {
        size_t len = strlen(s);
        if (len == 0 || len > max_len)
                return ns_err(err, EINVAL, "%s must be 1 to %zu bytes long", what, max_len);
        if (charset && strspn(s, charset) != len)
                return ns_err(err, EINVAL, "%s has a character outside [%s]", what, charset);
        return 0;
}

int jv_str(const cJSON *obj, const char *key, bool required, size_t max_len, const char *charset,
           const char **out, ns_error *err) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        if (!v || cJSON_IsNull(v)) {
                if (required)
                        return ns_err(err, EINVAL, "field '%s' is required", key);
                *out = NULL;
                return 0;
        }
        if (!cJSON_IsString(v) || !v->valuestring)
                return ns_err(err, EINVAL, "field '%s' must be a string", key);
        char what[96];
        snprintf(what, sizeof what, "field '%s'", key);
        int r = str_check(what, v->valuestring, max_len, charset, err);
        if (r < 0)
                return r;
        *out = v->valuestring;
        return 0;
}

int jv_strv(const cJSON *obj, const char *key, bool required, size_t max_items, size_t max_len,
            size_t max_total, const char ***out, size_t *n, ns_error *err) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        *out = NULL;
        *n = 0;
        if (!v || cJSON_IsNull(v)) {
                if (required)
                        return ns_err(err, EINVAL, "field '%s' is required", key);
                return 0;
        }
        if (!cJSON_IsArray(v))
                return ns_err(err, EINVAL, "field '%s' must be an array of strings", key);
        size_t count = (size_t) cJSON_GetArraySize(v), total = 0, i = 0;
        if (count > max_items)
                return ns_err(err, E2BIG, "field '%s' has more than %zu items", key, max_items);
        if (required && count == 0)
                return ns_err(err, EINVAL, "field '%s' must not be empty", key);
        const char **arr = calloc(count + 1, sizeof *arr);
        if (!arr)
                return ns_err(err, ENOMEM, "out of memory");
        for (const cJSON *it = v->child; it; it = it->next, i++) {
                if (!cJSON_IsString(it) || !it->valuestring) {
                        free(arr);
                        return ns_err(err, EINVAL, "field '%s' must hold only strings", key);
                }
                size_t len = strlen(it->valuestring);
                if (len > max_len || (total += len + 1) > max_total) {
                        free(arr);
                        return ns_err(err, E2BIG, "field '%s' is too long", key);
                }
                arr[i] = it->valuestring;
        }
        *out = arr;
        *n = count;
        return 0;
}
