/* nightshift run — start a session through the HTTP API and optionally follow it. */
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common/cleanup.h"

/* The repository id for --repo: a known name, id or source; otherwise registered now.  *out is
 * malloc'd. */
static int resolve_repo(client_http *c, const char *repo, char **out, ns_error *err) {
        char real[PATH_MAX];
        bool is_path = strchr(repo, '/') && !strstr(repo, "://") && realpath(repo, real);
        _cleanup_(client_reply_clear) client_reply reply = { 0 };
        int r = client_http_request(c, "GET", "/api/v1/repos", NULL, &reply, err);
        if (r < 0)
                return ns_err_wrap(err, "listing repositories");
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(reply.json, "repos")) {
                const char *rid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "id"));
                const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "name"));
                const char *url = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "url"));
                if (rid && ((name && !strcmp(name, repo)) || !strcmp(rid, repo) || (url && !strcmp(url, is_path ? real : repo))))
                        return (*out = strdup(rid)) ? 0 : ns_err(err, ENOMEM, "out of memory");
        }
        _cleanup_cjson_ cJSON *body = cJSON_CreateObject();
        if (!body || !cJSON_AddStringToObject(body, is_path ? "path" : "url", is_path ? real : repo))
                return ns_err(err, ENOMEM, "out of memory");
        if ((r = client_http_request(c, "POST", "/api/v1/repos", body, &reply, err)) < 0)
                return ns_err_wrap(err, "registering the repository");
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply.json, "id"));
        if (!id || !*id)
                return ns_err(err, EBADMSG, "registering the repository: the server's answer holds no id");
        return (*out = strdup(id)) ? 0 : ns_err(err, ENOMEM, "out of memory");
}

/* What `run` sends in POST /api/v1/sessions. */
typedef struct run_request {
        const char *repo, *agent, *base, *model;
        bool once;
        cJSON *env, *connect;
} run_request;

/* Start the session, print its id, follow its turn when asked.  Returns the exit status or -errno. */
static int run_session(client_http *c, const run_request *q, const char *prompt, bool do_follow, ns_error *err) {
        _cleanup_free_ char *repo_id = NULL;
        int r = resolve_repo(c, q->repo, &repo_id, err);
        if (r < 0)
                return r;
        _cleanup_cjson_ cJSON *body = cJSON_CreateObject();
        if (!body || !cJSON_AddStringToObject(body, "repo", repo_id) || !cJSON_AddStringToObject(body, "prompt", prompt) ||
            (q->agent && !cJSON_AddStringToObject(body, "agent", q->agent)) ||
            (q->base && !cJSON_AddStringToObject(body, "base", q->base)) ||
            (q->model && !cJSON_AddStringToObject(body, "model", q->model)) ||
            (q->once && !cJSON_AddBoolToObject(body, "once", true)) ||
            (cJSON_GetArraySize(q->env) && !cJSON_AddItemReferenceToObject(body, "env", q->env)) ||
            (cJSON_GetArraySize(q->connect) && !cJSON_AddItemReferenceToObject(body, "connect", q->connect)))
                return ns_err(err, ENOMEM, "out of memory");
        _cleanup_(client_reply_clear) client_reply reply = { 0 };
        if ((r = client_http_request(c, "POST", "/api/v1/sessions", body, &reply, err)) < 0)
                return ns_err_wrap(err, "creating the session");
        const char *sid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply.json, "id"));
        printf("%s\n", sid ? sid : "?");
        fflush(stdout);
        if (!do_follow || !sid)
                return 0;
        bool turn_failed = false;
        if ((r = cli_events_print(c, sid, 0, CLI_FOLLOW_TURN, false, &turn_failed, err)) < 0)
                return r == -CLIENT_E_INTERRUPTED ? r : ns_err_wrap(err, "reading events");
        return turn_failed ? 1 : 0;
}

static void usage(FILE *f) {
        fputs("usage: nightshift run [--server URL] [--token-file FILE] --repo PATH|URL|NAME\n"
              "                      [--agent command|claude|codex|opencode] [--base REF] [--model M] [--once]\n"
              "                      [--follow] [--env K=V]... [--connect PORT]... PROMPT\n"
              "The server defaults to $NIGHTSHIFT_URL, then the config file's `server`, then " CLIENT_DEFAULT_SERVER ";\n"
              "the API token (nightshift token create NAME) to $NIGHTSHIFT_TOKEN, then the config file's `token`.\n"
              "The config file is $NIGHTSHIFT_CONFIG or ~/.config/nightshift/client.conf (nightshift ls --help).\n"
              "--follow prints the session's events until its turn ends and exits 0 when it succeeded, 1 when\n"
              "it failed; 3 means the server could not be reached.\n",
              f);
}

int cli_run(int argc, char **argv) {
        const char *server = NULL, *token_file = NULL;
        run_request q = { 0 };
        bool do_follow = false;
        _cleanup_cjson_ cJSON *env = cJSON_CreateObject();
        _cleanup_cjson_ cJSON *connect = cJSON_CreateArray();
        static const struct option opts[] = {
                { "server", required_argument, NULL, 's' }, { "repo", required_argument, NULL, 'r' },
                { "agent", required_argument, NULL, 'a' },  { "base", required_argument, NULL, 'b' },
                { "model", required_argument, NULL, 'm' },  { "once", no_argument, NULL, 'o' },
                { "follow", no_argument, NULL, 'f' },       { "env", required_argument, NULL, 'e' },
                { "connect", required_argument, NULL, 'c' }, { "help", no_argument, NULL, 'h' },
                { "token-file", required_argument, NULL, 't' },
                { 0 },
        };
        if (!env || !connect)
                return CLIENT_EXIT_FAILED;
        int ch;
        optind = 1;
        while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
                switch (ch) {
                case 's': server = optarg; break;
                case 't': token_file = optarg; break;
                case 'r': q.repo = optarg; break;
                case 'a': q.agent = optarg; break;
                case 'b': q.base = optarg; break;
                case 'm': q.model = optarg; break;
                case 'o': q.once = true; break;
                case 'f': do_follow = true; break;
                case 'e': {
                        char *eq = strchr(optarg, '=');
                        if (!eq) {
                                fprintf(stderr, "nightshift run: --env needs K=V\n");
                                return CLIENT_EXIT_USAGE;
                        }
                        *eq = '\0';
                        cJSON_AddStringToObject(env, optarg, eq + 1);
                        break;
                }
                case 'c': cJSON_AddItemToArray(connect, cJSON_CreateNumber(atoi(optarg))); break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return CLIENT_EXIT_USAGE;
                }
        }
        if (!q.repo || optind != argc - 1) {
                usage(stderr);
                return CLIENT_EXIT_USAGE;
        }
        q.env = env;
        q.connect = connect;
        ns_error err = { 0 };
        _cleanup_(client_http_close) client_http c = { 0 };
        int r = client_http_open(&c, server, token_file, &err);
        if (r >= 0)
                r = run_session(&c, &q, argv[optind], do_follow, &err);
        fflush(stdout);
        if (r < 0 && r != -CLIENT_E_INTERRUPTED)
                fprintf(stderr, "nightshift run: %s\n", err.msg);
        return r < 0 ? client_exit_status(r) : r;
}
