/* nightshift — `nightshift notify add|ls|rm|log`: notification endpoints through a running
 * server's API (see notify.h).
 *
 *   nightshift notify add URL [--format json|slack] [--events completed,failed,waiting] [--repo R]
 *                             [--secret NAME]
 *   nightshift notify ls [--json]
 *   nightshift notify rm ID
 *   nightshift notify log [--session ID] [--json]   the delivery log */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "common/cleanup.h"

static const char usage[] =
        "usage: nightshift notify add URL [--format json|slack] [--events LIST] [--repo R] [--secret NAME]\n"
        "       nightshift notify ls [--json]\n"
        "       nightshift notify rm ID\n"
        "       nightshift notify log [--session ID] [--json]\n"
        "Webhooks the server calls when a session completes, fails or waits for an answer.\n"
        "  --format json      (default) a JSON event signed with X-Nightshift-Signature: sha256=HMAC\n"
        "                     of the body under the vault secret --secret (default NOTIFY_SIGNING_SECRET)\n"
        "  --format slack     a Slack incoming-webhook message\n"
        "  --events LIST      comma list of completed, failed, waiting (default: all three)\n"
        "  --repo R           only that repository's sessions (id or name)\n"
        "  --server URL, --token-file FILE   as for the other client commands (nightshift ls --help)\n";

static void print_json(const client_reply *rep) {
        fwrite(rep->body ? rep->body : "", 1, rep->len, stdout);
        putchar('\n');
}

static const char *str(const cJSON *o, const char *k) {
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
        return v ? v : "-";
}

static int do_add(client_http *c, const char *url, const char *format, const char *events, const char *repo,
                  const char *secret, bool json, ns_error *err) {
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "url", url);
        if (format)
                cJSON_AddStringToObject(body, "format", format);
        if (repo)
                cJSON_AddStringToObject(body, "repo", repo);
        if (secret)
                cJSON_AddStringToObject(body, "secret", secret);
        if (events) {
                cJSON *a = cJSON_AddArrayToObject(body, "events");
                _cleanup_free_ char *copy = strdup(events);
                char *save = NULL;
                for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
                        cJSON_AddItemToArray(a, cJSON_CreateString(t));
        }
        client_reply rep = { 0 };
        int r = client_http_request(c, "POST", "/api/v1/notifications/endpoints", body, &rep, err);
        cJSON_Delete(body);
        if (r == 0 && json)
                print_json(&rep);
        else if (r == 0)
                printf("%s\n", str(rep.json, "id"));
        client_reply_clear(&rep);
        return r;
}

static int do_ls(client_http *c, bool json, ns_error *err) {
        client_reply rep = { 0 };
        int r = client_http_request(c, "GET", "/api/v1/notifications/endpoints", NULL, &rep, err);
        if (r == 0 && json) {
                print_json(&rep);
        } else if (r == 0) {
                printf("%-16s %-6s %-26s %-16s %s\n", "ID", "FORMAT", "EVENTS", "REPO", "URL");
                const cJSON *it, *ev;
                cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(rep.json, "endpoints")) {
                        char events[64] = "";
                        cJSON_ArrayForEach(ev, cJSON_GetObjectItemCaseSensitive(it, "events"))
                                snprintf(events + strlen(events), sizeof events - strlen(events), "%s%s", events[0] ? "," : "",
                                         cJSON_GetStringValue(ev) ? cJSON_GetStringValue(ev) : "?");
                        printf("%-16s %-6s %-26s %-16s %s\n", str(it, "id"), str(it, "format"), events, str(it, "repo"),
                               str(it, "url"));
                }
        }
        client_reply_clear(&rep);
        return r;
}

static int do_rm(client_http *c, const char *id, ns_error *err) {
        _cleanup_free_ char *path = NULL, *esc = client_http_escape(c, id);
        if (!esc || asprintf(&path, "/api/v1/notifications/endpoints/%s", esc) < 0)
                return ns_err(err, ENOMEM, "out of memory");
        client_reply rep = { 0 };
        int r = client_http_request(c, "DELETE", path, NULL, &rep, err);
        client_reply_clear(&rep);
        if (r == 0)
                printf("removed %s\n", id);
        return r;
}

static int do_log(client_http *c, const char *session, bool json, ns_error *err) {
        _cleanup_free_ char *path = NULL, *esc = session ? client_http_escape(c, session) : NULL;
        if ((session && !esc) ||
            asprintf(&path, "/api/v1/notifications/deliveries%s%s", esc ? "?session=" : "", esc ? esc : "") < 0)
                return ns_err(err, ENOMEM, "out of memory");
        client_reply rep = { 0 };
        int r = client_http_request(c, "GET", path, NULL, &rep, err);
        if (r == 0 && json) {
                print_json(&rep);
        } else if (r == 0) {
                printf("%-6s %-16s %-10s %-10s %-8s %-5s %s\n", "ID", "SESSION", "EVENT", "STATUS", "ATTEMPTS", "CODE", "ERROR");
                const cJSON *it;
                cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(rep.json, "deliveries")) {
                        const cJSON *code = cJSON_GetObjectItemCaseSensitive(it, "last_code");
                        char cs[8] = "-";
                        if (cJSON_IsNumber(code))
                                snprintf(cs, sizeof cs, "%d", code->valueint);
                        printf("%-6d %-16s %-10s %-10s %-8d %-5s %s\n", cJSON_GetObjectItemCaseSensitive(it, "id")->valueint,
                               str(it, "session_id"), str(it, "event"), str(it, "status"),
                               cJSON_GetObjectItemCaseSensitive(it, "attempts")->valueint, cs, str(it, "last_error"));
                }
        }
        client_reply_clear(&rep);
        return r;
}

int cli_notify(int argc, char **argv) {
        static const struct option options[] = {
                { "server", required_argument, NULL, 'S' }, { "token-file", required_argument, NULL, 'T' },
                { "format", required_argument, NULL, 'f' }, { "events", required_argument, NULL, 'e' },
                { "repo", required_argument, NULL, 'r' },   { "secret", required_argument, NULL, 's' },
                { "session", required_argument, NULL, 'i' }, { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },         { 0 },
        };
        const char *server = NULL, *token_file = NULL, *format = NULL, *events = NULL, *repo = NULL, *secret = NULL,
                   *session = NULL;
        bool json = false;
        optind = 1;
        opterr = 0;
        int ch;
        while ((ch = getopt_long(argc, argv, "h", options, NULL)) != -1) {
                switch (ch) {
                case 'S': server = optarg; break;
                case 'T': token_file = optarg; break;
                case 'f': format = optarg; break;
                case 'e': events = optarg; break;
                case 'r': repo = optarg; break;
                case 's': secret = optarg; break;
                case 'i': session = optarg; break;
                case 'j': json = true; break;
                case 'h': fputs(usage, stdout); return 0;
                default: fputs(usage, stderr); return CLIENT_EXIT_USAGE;
                }
        }
        const char *sub = optind < argc ? argv[optind] : NULL;
        int npos = argc - optind - 1;
        bool one = sub && (!strcmp(sub, "add") || !strcmp(sub, "rm"));
        bool none = sub && (!strcmp(sub, "ls") || !strcmp(sub, "log"));
        if (!(one && npos == 1) && !(none && npos == 0)) {
                fputs(usage, stderr);
                return CLIENT_EXIT_USAGE;
        }
        const char *arg = one ? argv[optind + 1] : NULL;
        ns_error err = { 0 };
        _cleanup_(client_http_close) client_http c = { 0 };
        int r = client_http_open(&c, server, token_file, &err);
        if (r >= 0)
                r = !strcmp(sub, "add")  ? do_add(&c, arg, format, events, repo, secret, json, &err)
                    : !strcmp(sub, "rm") ? do_rm(&c, arg, &err)
                    : !strcmp(sub, "ls") ? do_ls(&c, json, &err)
                                         : do_log(&c, session, json, &err);
        fflush(stdout);
        if (r < 0)
                fprintf(stderr, "nightshift notify %s: %s\n", sub, err.msg);
        return client_exit_status(r);
}
