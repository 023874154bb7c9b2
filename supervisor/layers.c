#include "layers.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"

static void cjson_deletep(cJSON **j) {
        cJSON_Delete(*j);
}
#define _cleanup_json_ _cleanup_(cjson_deletep)

int layers_list(ns_client *c, cJSON **out, ns_error *err) {
        _cleanup_json_ cJSON *req = cJSON_CreateObject();
        if (!req || !cJSON_AddStringToObject(req, "op", "layers"))
                return ns_err(err, ENOMEM, "out of memory");
        _cleanup_json_ cJSON *reply = NULL;
        int r = ns_client_call(c, req, NULL, 0, &reply, NULL, NULL, err);
        if (r < 0)
                return r;
        cJSON *arr = cJSON_DetachItemFromObjectCaseSensitive(reply, "layers");
        if (!cJSON_IsArray(arr)) {
                cJSON_Delete(arr);
                return ns_err(err, EPROTO, "sandboxd: layers reply without a list");
        }
        *out = arr;
        return 0;
}

typedef struct candidate {
        const char *name;
        uint64_t bytes;
        int64_t last_used;
} candidate;

static int by_last_used(const void *a, const void *b) {
        const candidate *x = a, *y = b;
        return x->last_used < y->last_used ? -1 : x->last_used > y->last_used;
}

static double num(const cJSON *o, const char *k, double def) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
        return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static int remove_layer(ns_client *c, const char *name, ns_error *err) {
        _cleanup_json_ cJSON *req = cJSON_CreateObject();
        if (!req || !cJSON_AddStringToObject(req, "op", "layer_remove") || !cJSON_AddStringToObject(req, "layer", name))
                return ns_err(err, ENOMEM, "out of memory");
        _cleanup_json_ cJSON *reply = NULL;
        return ns_client_call(c, req, NULL, 0, &reply, NULL, NULL, err);
}

int layers_gc(ns_client *c, uid_t uid, const layers_gc_policy *policy, layers_gc_result *res, cJSON **removed_names,
              ns_error *err) {
        *res = (layers_gc_result){ 0 };
        _cleanup_json_ cJSON *list = NULL;
        int r = layers_list(c, &list, err);
        if (r < 0)
                return r;
        size_t n = (size_t) cJSON_GetArraySize(list);
        _cleanup_free_ candidate *cand = calloc(n ? n : 1, sizeof *cand);
        if (!cand)
                return ns_err(err, ENOMEM, "out of memory");
        size_t nc = 0;
        uint64_t total = 0;
        const cJSON *l;
        cJSON_ArrayForEach(l, list) {
                const cJSON *name = cJSON_GetObjectItemCaseSensitive(l, "name");
                uint64_t bytes = (uint64_t) num(l, "bytes", 0);
                total += bytes;
                /* Only snapshot layers (they have an owner) of ours, not in use. */
                bool mine = cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(l, "owner")) &&
                            (uid == 0 || num(l, "owner", -1) == (double) uid);
                bool used = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(l, "in_use"));
                if (!cJSON_IsString(name) || !mine || used) {
                        res->kept++;
                        res->bytes_kept += bytes;
                        continue;
                }
                cand[nc++] = (candidate){ name->valuestring, bytes,
                                          (int64_t) num(l, "last_used", num(l, "created", 0)) };
        }
        qsort(cand, nc, sizeof *cand, by_last_used);
        cJSON *names = removed_names ? cJSON_CreateArray() : NULL;
        int64_t now = (int64_t) time(NULL);
        for (size_t i = 0; i < nc; i++) {
                bool old = policy->max_age_s > 0 && now - cand[i].last_used > policy->max_age_s;
                bool over = policy->max_bytes > 0 && total > policy->max_bytes;
                ns_error e2;
                if ((old || over) && (policy->dry_run || remove_layer(c, cand[i].name, &e2) == 0)) {
                        total -= cand[i].bytes;
                        res->removed++;
                        res->bytes_removed += cand[i].bytes;
                        if (names)
                                cJSON_AddItemToArray(names, cJSON_CreateString(cand[i].name));
                } else {
                        res->kept++;
                        res->bytes_kept += cand[i].bytes;
                }
        }
        if (removed_names)
                *removed_names = names;
        return 0;
}
