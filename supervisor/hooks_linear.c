/* nightshift supervisor — the Linear trigger, and the pruning of the triggers' delivery ids.
 *
 * POST /api/v1/hooks/linear: Linear signs each delivery with `Linear-Signature`, the hex
 * HMAC-SHA256 of the raw body under the webhook's signing secret (vault: LINEAR_WEBHOOK_SECRET,
 * global scope), and puts `webhookTimestamp` (ms) in the body.  A request is refused unless the
 * signature is right (401), the timestamp is at most 60 s off (401: a captured delivery expires)
 * and its `Linear-Delivery` id is new (409).
 *
 * What starts a session: an Issue `create` whose labels include --hook-linear-label (default
 * "nightshift", compared case-insensitively), or an Issue `update` that adds that label (its
 * `updatedFrom.labelIds` lacked it: later edits of a labelled issue start nothing more).  The
 * repository is the operator's choice, never the issue's: --hook-linear-teams maps a team's key
 * or id to a registered repository ("ENG=backend,OPS=infra"); an issue of an unmapped team is
 * ignored.  The prompt is the issue's title and description.  Everything else: 202 ignored. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_int.h"
#include "common/cleanup.h"
#include "db_int.h"
#include "hooks.h"
#include "hooks_int.h"
#include "serve.h"

#define LINEAR_MAX_SKEW_MS (60 * 1000) /* Linear's own advice */

static const char *str_of(const cJSON *o, const char *k) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
        return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The label's id when the issue `data` carries a label named `want`, else NULL. */
static const char *label_id(const cJSON *data, const char *want) {
        const cJSON *l;
        cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(data, "labels")) {
                const char *name = str_of(l, "name");
                if (name && !strcasecmp(name, want)) {
                        const char *id = str_of(l, "id");
                        return id ? id : "";
                }
        }
        return NULL;
}

static bool array_has_str(const cJSON *a, const char *s) {
        const cJSON *v;
        cJSON_ArrayForEach(v, a) if (cJSON_IsString(v) && !strcmp(v->valuestring, s)) return true;
        return false;
}

/* The repository --hook-linear-teams maps team `key` or `id` to, into out; false if none. */
static bool team_repo(const char *map, const char *key, const char *id, char *out, size_t cap) {
        for (const char *p = map; p && *p;) {
                size_t n = strcspn(p, ",");
                const char *eq = memchr(p, '=', n);
                if (eq && eq > p) {
                        size_t kl = (size_t) (eq - p);
                        bool hit = (key && strlen(key) == kl && !strncmp(p, key, kl)) ||
                                   (id && strlen(id) == kl && !strncmp(p, id, kl));
                        size_t vl = n - kl - 1;
                        if (hit && vl > 0 && vl < cap) {
                                memcpy(out, eq + 1, vl);
                                out[vl] = '\0';
                                return true;
                        }
                }
                p += n + (p[n] == ',');
        }
        return false;
}

static void linear_issue(sv_req *r, const cJSON *j) {
        const sv_config *c = &r->srv->cfg;
        const char *action = str_of(j, "action");
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
        if (!action || (strcmp(action, "create") && strcmp(action, "update")) || !cJSON_IsObject(data))
                return sv_hook_ignored(r, "only created and updated issues trigger");
        const char *lid = label_id(data, c->hook_linear_label);
        if (!lid)
                return sv_hook_ignored(r, "the issue does not carry the trigger label");
        if (!strcmp(action, "update")) {
                /* Only the update that adds the label starts something: `updatedFrom` holds the
                 * previous values of what changed, so no labelIds there = the labels did not. */
                const cJSON *from = cJSON_GetObjectItemCaseSensitive(j, "updatedFrom");
                const cJSON *before = cJSON_GetObjectItemCaseSensitive(from, "labelIds");
                if (!cJSON_IsArray(before) || !lid[0] || array_has_str(before, lid))
                        return sv_hook_ignored(r, "the label was there already");
        }
        const cJSON *team = cJSON_GetObjectItemCaseSensitive(data, "team");
        char repo[256];
        if (!c->hook_linear_teams ||
            !team_repo(c->hook_linear_teams, str_of(team, "key"), str_of(data, "teamId") ? str_of(data, "teamId") : str_of(team, "id"),
                       repo, sizeof repo))
                return sv_hook_ignored(r, "the issue's team maps to no repository (--hook-linear-teams)");
        const char *title = str_of(data, "title"), *desc = str_of(data, "description"), *ident = str_of(data, "identifier");
        if (!title || !title[0])
                return sv_hook_ignored(r, "the issue has no title");
        size_t plen = strlen(title) + (desc ? strlen(desc) : 0) + 2;
        if (plen > DB_PROMPT_MAX_BYTES)
                return sv_req_reply_error(r, 413, "prompt_too_large", "the prompt is larger than %d bytes", DB_PROMPT_MAX_BYTES);
        _cleanup_free_ char *prompt = NULL;
        if (asprintf(&prompt, "%s%s%s", title, desc && desc[0] ? "\n\n" : "", desc ? desc : "") < 0)
                return sv_req_reply_error(r, 500, "internal", "out of memory");
        char t[300];
        snprintf(t, sizeof t, "Linear %.20s: %.200s", ident ? ident : "issue", title);
        sv_hook_start_session(r, repo, NULL, t, prompt);
}

void sv_api_hook_linear(sv_req *r, const sv_route_args *a) {
        (void) a;
        if (r->header_too_long)
                return sv_req_reply_error(r, 431, "header_too_large", "a request header is too long");
        sv_secret key = { 0 };
        if (sv_hook_secret(r, "LINEAR_WEBHOOK_SECRET", &key) < 0)
                return;
        const char *parts[] = { r->body ? r->body : "" };
        size_t lens[] = { r->body_len };
        bool ok = r->hook_signature[0] && sv_hook_hmac_ok(&key, parts, lens, 1, r->hook_signature);
        sv_secret_clear(&key);
        if (!ok)
                return sv_req_reply_error(r, 401, "bad_signature", "Linear-Signature is missing or wrong");
        /* Signed: Linear sent this body, but maybe long ago: the signed timestamp says when. */
        _cleanup_json_ cJSON *j = sv_api_parse_body(r);
        if (!j)
                return;
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "webhookTimestamp");
        double now = (double) db_now_ms();
        if (!cJSON_IsNumber(ts) || !(ts->valuedouble > now - LINEAR_MAX_SKEW_MS && ts->valuedouble < now + LINEAR_MAX_SKEW_MS))
                return sv_req_reply_error(r, 401, "stale", "webhookTimestamp is missing or more than 60 seconds off");
        if (!r->hook_delivery[0])
                return sv_req_reply_error(r, 400, "bad_request", "Linear-Delivery is required");
        int fresh = sv_hook_delivery_new(r, "linear", r->hook_delivery);
        if (fresh < 0)
                return;
        if (!fresh)
                return sv_req_reply_error(r, 409, "replayed", "delivery %s was received before", r->hook_delivery);
        const char *type = str_of(j, "type");
        if (type && !strcmp(type, "Issue"))
                return linear_issue(r, j);
        sv_hook_ignored(r, "this event starts nothing");
}

int sv_hook_deliveries_prune(db *d, int64_t now_ms, ns_error *err) {
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, "DELETE FROM hook_deliveries WHERE received_at < ?1", &st, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, now_ms - SV_HOOK_REPLAY_WINDOW_MS);
        if ((r = db_stmt_run(d, st, err, "prune hook deliveries")) < 0)
                return r;
        return sqlite3_changes(d->conn);
}
