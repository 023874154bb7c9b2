/* nightshift supervisor — triggers: GitHub and Slack webhooks (see hooks.h). */
#include "hooks.h"
#include "pr.h"

#include <ctype.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"
#include "common/cleanup.h"
#include "db_int.h"
#include "serve.h"
#include "vault.h"

#define SLACK_MAX_SKEW_S 300 /* Slack's own advice: older requests may be replays */

bool sv_hook_route(const char *method, const char *path) {
        return !strcmp(method, "POST") && (!strcmp(path, "/api/v1/hooks/github") || !strcmp(path, "/api/v1/hooks/slack") ||
                                           !strcmp(path, "/api/v1/hooks/linear"));
}

/* ---- verification ------------------------------------------------------------------------- */

/* True when `hex` (exactly 64 hex digits) is the HMAC-SHA256 under `key` of the concatenation
 * of parts[0..n).  Why constant time: the comparison must not tell a forger how many leading
 * bytes of its guess were right. */
static bool hmac_ok(const sv_secret *key, const char *const *parts, const size_t *lens, size_t n, const char *hex) {
        uint8_t want[crypto_auth_hmacsha256_BYTES], got[crypto_auth_hmacsha256_BYTES];
        size_t bl = 0;
        if (strlen(hex) != 2 * sizeof want ||
            sodium_hex2bin(want, sizeof want, hex, strlen(hex), NULL, &bl, NULL) != 0 || bl != sizeof want)
                return false;
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, (const unsigned char *) key->value, key->len);
        for (size_t i = 0; i < n; i++)
                crypto_auth_hmacsha256_update(&st, (const unsigned char *) parts[i], lens[i]);
        crypto_auth_hmacsha256_final(&st, got);
        bool ok = sodium_memcmp(want, got, sizeof want) == 0;
        sodium_memzero(&st, sizeof st);
        return ok;
}

/* The global vault secret `name`, or -1 after replying (503 when it is not set). */
static int hook_secret(sv_req *r, const char *name, sv_secret *out) {
        ns_error e;
        int rc = r->srv->vault ? sv_vault_get(r->srv->vault, r->srv->db, NULL, name, out, &e) : -ENOENT;
        if (rc == -ENOENT) {
                sv_req_reply_error(r, 503, "not_configured", "this hook is off: set the secret %s (nightshift secret set %s)",
                                   name, name);
                return -1;
        }
        if (rc < 0) {
                sv_req_reply_error(r, 500, "internal", "the vault failed");
                return -1;
        }
        return 0;
}

/* Record a delivery id: 1 new, 0 seen before, -1 after replying 500. */
static int delivery_new(sv_req *r, const char *source, const char *id) {
        db *d = r->srv->db;
        ns_error e;
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        if (db_stmt_prepare(d, "INSERT OR IGNORE INTO hook_deliveries (source, delivery, received_at) VALUES (?1, ?2, ?3)",
                            &st, &e) < 0)
                goto fail;
        db_bind_text(st, 1, source);
        db_bind_text(st, 2, id);
        sqlite3_bind_int64(st, 3, db_now_ms());
        if (db_stmt_run(d, st, &e, "record a delivery") < 0)
                goto fail;
        return sqlite3_changes(d->conn) > 0 ? 1 : 0;
fail:
        sv_req_reply_error(r, 500, "internal", "%s", e.msg);
        return -1;
}

/* ---- starting a session -------------------------------------------------------------------- */

struct hook_start {
        sv_req *r;
        bool slack;       /* answer as a Slack message */
        char base[1100];  /* the dashboard's address, for the link */
        int issue;        /* a GitHub issue/PR number to comment back on (pr.c), or 0 */
        char repo_id[SV_ID_LEN + 1];
};

static void link_base(sv_req *r, char *buf, size_t cap) {
        const char *pub = r->srv->cfg.public_url;
        if (pub)
                snprintf(buf, cap, "%s", pub);
        else
                snprintf(buf, cap, "%s://%s", r->forwarded_https ? "https" : "http", r->host[0] ? r->host : "localhost");
        size_t n = strlen(buf);
        while (n && buf[n - 1] == '/')
                buf[--n] = '\0';
}

static void started(void *ctx, int status, cJSON *body, const char *code, const char *message) {
        struct hook_start *h = ctx;
        sv_req *r = h->r;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(body, "id");
        char url[1200] = "";
        if (!code && cJSON_IsString(id))
                snprintf(url, sizeof url, "%s/#/s/%s", h->base, id->valuestring);
        if (url[0] && h->issue)
                sv_pr_comment_started(r->srv, h->repo_id, h->issue, id->valuestring, url);
        if (h->slack) {
                /* Slack shows a reply only with status 200: failures are messages too. */
                char text[1400];
                if (url[0])
                        snprintf(text, sizeof text, "nightshift session %s started: %s", id->valuestring, url);
                else
                        snprintf(text, sizeof text, "nightshift could not start a session: %s",
                                 message ? message : code ? code : "unknown error");
                cJSON_Delete(body);
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "response_type", "ephemeral");
                cJSON_AddStringToObject(o, "text", text);
                free(h);
                return sv_req_reply_json(r, 200, o);
        }
        free(h);
        if (code)
                return sv_req_reply_error(r, status, code, "%s", message ? message : code);
        if (url[0])
                cJSON_AddStringToObject(body, "url", url);
        sv_req_reply_json(r, status, body);
}

/* Start a session of the configured agent on `repo` (id or name) from `base` (NULL: the default
 * branch) with `prompt`; the reply comes from started(). */
static void start_session_ex(sv_req *r, bool slack, const char *repo, const char *base, const char *title,
                             const char *prompt, int issue) {
        struct hook_start *h = calloc(1, sizeof *h);
        sv_new_session *q = calloc(1, sizeof *q);
        if (!h || !q || !(q->repo = strdup(repo)) || (base && !(q->base = strdup(base))) ||
            !(q->agent = strdup(r->srv->cfg.hook_agent)) || !(q->title = strndup(title, 200)) ||
            !(q->prompt = strdup(prompt))) {
                free(h);
                if (q)
                        sv_new_session_clear(q);
                free(q);
                return sv_req_reply_error(r, 500, "internal", "out of memory");
        }
        q->once = true;
        h->r = r;
        h->slack = slack;
        h->issue = issue;
        snprintf(h->repo_id, sizeof h->repo_id, "%s", repo);
        link_base(r, h->base, sizeof h->base);
        sv_session_create(r->srv, q, started, h);
}

static void start_session(sv_req *r, bool slack, const char *repo, const char *base, const char *title,
                          const char *prompt) {
        start_session_ex(r, slack, repo, base, title, prompt, 0);
}

static void ignored(sv_req *r, const char *why) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "ignored");
        cJSON_AddStringToObject(o, "reason", why);
        sv_req_reply_json(r, 202, o);
}

static const char *str_at(const cJSON *o, const char *a, const char *b) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, a);
        if (b)
                v = cJSON_GetObjectItemCaseSensitive(v, b);
        return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool url_eq(const char *registered, const char *url) {
        if (!url)
                return false;
        size_t rl = strlen(registered), ul = strlen(url);
        if (rl == ul)
                return !strcmp(registered, url);
        /* "…/repo" and "…/repo.git" name the same repository */
        if (rl == ul + 4 && !strncmp(registered, url, ul) && !strcmp(registered + ul, ".git"))
                return true;
        return ul == rl + 4 && !strncmp(registered, url, rl) && !strcmp(url + rl, ".git");
}

/* The registered repository the payload's `repository` names, into id/name; false if none. */
static bool find_repo(sv_req *r, const cJSON *repository, char id[SV_ID_LEN + 1], char *name, size_t name_cap) {
        db_repo *v = NULL;
        size_t n = 0;
        ns_error e;
        if (db_repo_list(r->srv->db, &v, &n, &e) < 0)
                return false;
        const char *full = str_at(repository, "full_name", NULL), *short_name = str_at(repository, "name", NULL);
        const char *urls[] = { str_at(repository, "clone_url", NULL), str_at(repository, "html_url", NULL),
                               str_at(repository, "ssh_url", NULL), str_at(repository, "git_url", NULL) };
        bool found = false;
        for (size_t i = 0; i < n && !found; i++) {
                found = (full && !strcmp(v[i].name, full)) || (short_name && !strcmp(v[i].name, short_name));
                for (size_t u = 0; u < ARRAY_SIZE(urls) && !found; u++)
                        found = url_eq(v[i].url_or_path, urls[u]);
                if (found) {
                        snprintf(id, SV_ID_LEN + 1, "%s", v[i].id);
                        snprintf(name, name_cap, "%s", v[i].name);
                }
        }
        db_repos_free(v, n);
        return found;
}

/* ---- GitHub -------------------------------------------------------------------------------- */

static void github_comment(sv_req *r, const cJSON *j) {
        const sv_config *c = &r->srv->cfg;
        const char *action = str_at(j, "action", NULL), *body = str_at(j, "comment", "body");
        const char *assoc = str_at(j, "comment", "author_association");
        size_t pl = strlen(c->hook_command_prefix);
        if (!action || strcmp(action, "created"))
                return ignored(r, "only new comments trigger");
        if (!body || strncmp(body, c->hook_command_prefix, pl) || (body[pl] && !isspace((unsigned char) body[pl])))
                return ignored(r, "the comment does not start with the command prefix");
        /* Why: anyone can comment on a public repository; only the configured associations
         * (default OWNER, MEMBER, COLLABORATOR) may make us run an agent. */
        if (!assoc || !sv_list_has(c->hook_associations, assoc))
                return ignored(r, "the comment's author may not trigger sessions");
        const char *p = body + pl;
        while (isspace((unsigned char) *p))
                p++;
        size_t plen = strlen(p);
        while (plen && isspace((unsigned char) p[plen - 1]))
                plen--;
        if (!plen)
                return ignored(r, "the command has no prompt");
        if (plen > DB_PROMPT_MAX_BYTES)
                return sv_req_reply_error(r, 413, "prompt_too_large", "the prompt is larger than %d bytes", DB_PROMPT_MAX_BYTES);
        char id[SV_ID_LEN + 1], name[256];
        if (!find_repo(r, cJSON_GetObjectItemCaseSensitive(j, "repository"), id, name, sizeof name))
                return ignored(r, "the repository is not registered");
        /* The session runs on the registered repository's default branch, never on a pull
         * request's (possibly forked) head: a fork's code does not run from a comment. */
        const cJSON *num = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "issue"), "number");
        char title[256];
        snprintf(title, sizeof title, "GitHub %.200s#%d", name, cJSON_IsNumber(num) ? num->valueint : 0);
        _cleanup_free_ char *prompt = strndup(p, plen);
        if (!prompt)
                return sv_req_reply_error(r, 500, "internal", "out of memory");
        start_session_ex(r, false, id, NULL, title, prompt, cJSON_IsNumber(num) ? num->valueint : 0);
}

static void github_workflow_run(sv_req *r, const cJSON *j) {
        const char *action = str_at(j, "action", NULL), *concl = str_at(j, "workflow_run", "conclusion");
        if (!action || strcmp(action, "completed") || !concl || strcmp(concl, "failure"))
                return ignored(r, "only failed workflow runs trigger");
        char id[SV_ID_LEN + 1], name[256];
        if (!find_repo(r, cJSON_GetObjectItemCaseSensitive(j, "repository"), id, name, sizeof name))
                return ignored(r, "the repository is not registered");
        if (!sv_list_has(r->srv->cfg.hook_ci_repos, name))
                return ignored(r, "the repository has not opted in to fix-CI sessions (--hook-ci-repos)");
        const cJSON *run = cJSON_GetObjectItemCaseSensitive(j, "workflow_run");
        const char *head_full = str_at(run, "head_repository", "full_name"), *full = str_at(j, "repository", "full_name");
        /* Why: a run of a fork's pull request runs the fork's code; a session on its branch would
         * run that code with this repository's secrets.  Such runs start nothing. */
        if (!head_full || !full || strcmp(head_full, full))
                return ignored(r, "the run is of a fork's code");
        const char *branch = str_at(run, "head_branch", NULL), *wf = str_at(run, "name", NULL);
        const char *sha = str_at(run, "head_sha", NULL), *url = str_at(run, "html_url", NULL);
        if (!branch || !branch[0] || strlen(branch) > 255)
                return ignored(r, "the run names no branch");
        char title[300], prompt[2048];
        snprintf(title, sizeof title, "Fix CI: %.100s on %.150s", wf ? wf : "workflow", branch);
        snprintf(prompt, sizeof prompt,
                 "The CI workflow \"%.200s\" failed on branch %.255s (commit %.64s): %.512s\n"
                 "Find the cause of the failure and fix it.",
                 wf ? wf : "?", branch, sha ? sha : "?", url ? url : "");
        start_session(r, false, id, branch, title, prompt);
}

void sv_api_hook_github(sv_req *r, const sv_route_args *a) {
        (void) a;
        if (r->header_too_long)
                return sv_req_reply_error(r, 431, "header_too_large", "a request header is too long");
        sv_secret key = { 0 };
        if (hook_secret(r, "GITHUB_WEBHOOK_SECRET", &key) < 0)
                return;
        const char *sig = r->hook_signature;
        const char *parts[] = { r->body ? r->body : "" };
        size_t lens[] = { r->body_len };
        bool ok = !strncmp(sig, "sha256=", 7) && hmac_ok(&key, parts, lens, 1, sig + 7);
        sv_secret_clear(&key);
        if (!ok)
                return sv_req_reply_error(r, 401, "bad_signature", "X-Hub-Signature-256 is missing or wrong");
        /* Only signed requests get this far: everything below may trust that GitHub sent it. */
        if (!r->hook_delivery[0] || !r->hook_event[0])
                return sv_req_reply_error(r, 400, "bad_request", "X-GitHub-Delivery and X-GitHub-Event are required");
        _cleanup_json_ cJSON *j = sv_api_parse_body(r);
        if (!j)
                return;
        int fresh = delivery_new(r, "github", r->hook_delivery);
        if (fresh < 0)
                return;
        if (!fresh)
                return sv_req_reply_error(r, 409, "replayed", "delivery %s was received before", r->hook_delivery);
        if (!strcmp(r->hook_event, "issue_comment"))
                return github_comment(r, j);
        if (!strcmp(r->hook_event, "workflow_run"))
                return github_workflow_run(r, j);
        ignored(r, "this event starts nothing");
}

/* ---- Slack --------------------------------------------------------------------------------- */

static int hexval(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The form field `name` of an application/x-www-form-urlencoded body, decoded (malloc'd), or
 * NULL when absent. */
static char *form_get(const char *body, size_t len, const char *name) {
        size_t nl = strlen(name);
        for (const char *p = body, *end = body + len; p < end;) {
                const char *amp = memchr(p, '&', (size_t) (end - p));
                size_t seg = amp ? (size_t) (amp - p) : (size_t) (end - p);
                if (seg > nl && !strncmp(p, name, nl) && p[nl] == '=') {
                        char *out = malloc(seg - nl);
                        if (!out)
                                return NULL;
                        size_t o = 0;
                        for (size_t i = nl + 1; i < seg; i++) {
                                char c = p[i];
                                if (c == '+')
                                        c = ' ';
                                else if (c == '%' && i + 2 < seg && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
                                        c = (char) (hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
                                        i += 2;
                                }
                                out[o++] = c;
                        }
                        out[o] = '\0';
                        return out;
                }
                p += seg + (amp ? 1 : 0);
        }
        return NULL;
}

void sv_api_hook_slack(sv_req *r, const sv_route_args *a) {
        (void) a;
        if (r->header_too_long)
                return sv_req_reply_error(r, 431, "header_too_large", "a request header is too long");
        char *endp = NULL;
        long long ts = strtoll(r->hook_timestamp, &endp, 10);
        long long now = (long long) (db_now_ms() / 1000);
        /* Why: a captured request stays validly signed forever; its timestamp is what expires. */
        if (!r->hook_timestamp[0] || *endp || llabs(now - ts) > SLACK_MAX_SKEW_S)
                return sv_req_reply_error(r, 401, "stale", "X-Slack-Request-Timestamp is missing or more than 5 minutes off");
        sv_secret key = { 0 };
        if (hook_secret(r, "SLACK_SIGNING_SECRET", &key) < 0)
                return;
        const char *sig = r->hook_signature;
        const char *parts[] = { "v0:", r->hook_timestamp, ":", r->body ? r->body : "" };
        size_t lens[] = { 3, strlen(r->hook_timestamp), 1, r->body_len };
        bool ok = !strncmp(sig, "v0=", 3) && hmac_ok(&key, parts, lens, 4, sig + 3);
        sv_secret_clear(&key);
        if (!ok)
                return sv_req_reply_error(r, 401, "bad_signature", "X-Slack-Signature is missing or wrong");
        _cleanup_free_ char *text = form_get(r->body ? r->body : "", r->body_len, "text");
        char *p = text;
        while (p && isspace((unsigned char) *p))
                p++;
        size_t rl = p ? strcspn(p, " \t\r\n") : 0;
        const char *prompt = p ? p + rl : NULL;
        while (prompt && isspace((unsigned char) *prompt))
                prompt++;
        if (!rl || rl > 255 || !prompt || !*prompt || strlen(prompt) > DB_PROMPT_MAX_BYTES) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "response_type", "ephemeral");
                cJSON_AddStringToObject(o, "text", "usage: /nightshift REPOSITORY PROMPT");
                return sv_req_reply_json(r, 200, o);
        }
        p[rl] = '\0';
        char title[300];
        snprintf(title, sizeof title, "Slack: %.200s", prompt);
        start_session(r, true, p, NULL, title, prompt);
}

/* ---- shared with the other triggers (hooks_int.h) -------------------------------------------- */

bool sv_hook_hmac_ok(const sv_secret *key, const char *const *parts, const size_t *lens, size_t n, const char *hex) {
        return hmac_ok(key, parts, lens, n, hex);
}
int sv_hook_secret(sv_req *r, const char *name, sv_secret *out) {
        return hook_secret(r, name, out);
}
int sv_hook_delivery_new(sv_req *r, const char *source, const char *id) {
        return delivery_new(r, source, id);
}
void sv_hook_start_session(sv_req *r, const char *repo, const char *base, const char *title, const char *prompt) {
        start_session(r, false, repo, base, title, prompt);
}
void sv_hook_ignored(sv_req *r, const char *why) {
        ignored(r, why);
}
