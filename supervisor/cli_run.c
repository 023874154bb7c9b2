/* nightshift run — start a session through the HTTP API and optionally follow it. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "common/cleanup.h"

#define CLI_RESPONSE_MAX (64 * 1024 * 1024)

typedef struct buf {
        char *p;
        size_t n;
        bool overflow;
} buf;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud) {
        buf *b = ud;
        size_t n = size * nmemb;
        if (b->n + n > CLI_RESPONSE_MAX) {
                b->overflow = true;
                return 0;
        }
        char *np = realloc(b->p, b->n + n + 1);
        if (!np)
                return 0;
        memcpy(np + b->n, ptr, n);
        b->n += n;
        np[b->n] = '\0';
        b->p = np;
        return n;
}

/* One request; *out = the parsed JSON reply (may be NULL for 204).  Returns the HTTP status or -1. */
static long http(const char *server, const char *method, const char *path, const cJSON *body, cJSON **out) {
        CURL *c = curl_easy_init();
        if (!c)
                return -1;
        _cleanup_free_ char *url = NULL, *json = body ? cJSON_PrintUnformatted(body) : NULL;
        if (asprintf(&url, "%s%s", server, path) < 0) {
                curl_easy_cleanup(c);
                return -1;
        }
        buf b = { 0 };
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 600L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        if (json)
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
        CURLcode cr = curl_easy_perform(c);
        long status = -1;
        if (cr == CURLE_OK)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        else
                fprintf(stderr, "nightshift: %s %s: %s\n", method, url, curl_easy_strerror(cr));
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        *out = b.p ? cJSON_Parse(b.p) : NULL;
        free(b.p);
        return status;
}

static void print_error(const char *what, long status, const cJSON *reply) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(reply, "error");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
        fprintf(stderr, "nightshift: %s: %s (HTTP %ld)\n", what, cJSON_IsString(m) ? m->valuestring : "failed", status);
}

/* The repository id for --repo: a known name, id or source; otherwise registered now. */
static char *resolve_repo(const char *server, const char *repo) {
        char real[PATH_MAX];
        bool is_path = strchr(repo, '/') && !strstr(repo, "://") && realpath(repo, real);
        cJSON *reply = NULL;
        long st = http(server, "GET", "/api/v1/repos", NULL, &reply);
        if (st != 200) {
                print_error("listing repositories", st, reply);
                cJSON_Delete(reply);
                return NULL;
        }
        const cJSON *it;
        char *id = NULL;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(reply, "repos")) {
                const char *rid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "id"));
                const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "name"));
                const char *url = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "url"));
                if (rid && ((name && !strcmp(name, repo)) || !strcmp(rid, repo) || (url && !strcmp(url, is_path ? real : repo)))) {
                        id = strdup(rid);
                        break;
                }
        }
        cJSON_Delete(reply);
        if (id)
                return id;
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, is_path ? "path" : "url", is_path ? real : repo);
        reply = NULL;
        st = http(server, "POST", "/api/v1/repos", body, &reply);
        cJSON_Delete(body);
        if (st == 201)
                id = strdup(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "id")) ?: "");
        else
                print_error("registering the repository", st, reply);
        cJSON_Delete(reply);
        return id && *id ? id : (free(id), NULL);
}

static void print_event(const cJSON *ev) {
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "type"));
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(ev, "data");
        if (type && !strcmp(type, "command_output")) {
                const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "text"));
                const char *stream = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "stream"));
                fputs(text ? text : "", stream && !strcmp(stream, "stderr") ? stderr : stdout);
                fflush(stdout);
                return;
        }
        _cleanup_free_ char *d = cJSON_PrintUnformatted(data);
        printf("[%s] %s\n", type ? type : "?", d ? d : "{}");
        fflush(stdout);
}

/* Follow the session's events until its turn ends; returns the exit status. */
static int follow(const char *server, const char *sid) {
        long long after = 0;
        for (;;) {
                char path[160];
                snprintf(path, sizeof path, "/api/v1/sessions/%s/events?after=%lld&limit=500", sid, after);
                cJSON *reply = NULL;
                long st = http(server, "GET", path, NULL, &reply);
                if (st != 200) {
                        print_error("reading events", st, reply);
                        cJSON_Delete(reply);
                        return 1;
                }
                const cJSON *ev;
                int done = -1;
                cJSON_ArrayForEach(ev, cJSON_GetObjectItemCaseSensitive(reply, "events")) {
                        after = (long long) cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(ev, "seq"));
                        print_event(ev);
                        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "type"));
                        const cJSON *data = cJSON_GetObjectItemCaseSensitive(ev, "data");
                        const char *to = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "to"));
                        const char *why = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "reason"));
                        if (type && !strcmp(type, "status") && to) {
                                bool turn_failed = why && !strcmp(why, "turn failed");
                                if (!strcmp(to, "completed") || !strcmp(to, "waiting") || !strcmp(to, "idle"))
                                        done = turn_failed ? 1 : 0;
                                else if (!strcmp(to, "failed") || !strcmp(to, "stopped"))
                                        done = 1;
                        }
                }
                int n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(reply, "events"));
                cJSON_Delete(reply);
                if (done >= 0)
                        return done;
                if (n == 0)
                        nanosleep(&(struct timespec){ 0, 200 * 1000 * 1000 }, NULL);
        }
}

static void usage(FILE *f) {
        fputs("usage: nightshift run [--server URL] --repo PATH|URL|NAME [--agent command|claude|codex|opencode]\n"
              "                      [--base REF] [--model M] [--once] [--follow] [--env K=V]... [--connect PORT]...\n"
              "                      PROMPT\n"
              "The server defaults to $NIGHTSHIFT_URL or http://127.0.0.1:8787.\n",
              f);
}

int cli_run(int argc, char **argv) {
        const char *server = getenv("NIGHTSHIFT_URL") ?: "http://127.0.0.1:8787";
        const char *repo = NULL, *agent = NULL, *base = NULL, *model = NULL;
        bool once = false, do_follow = false;
        cJSON *env = cJSON_CreateObject(), *connect = cJSON_CreateArray();
        static const struct option opts[] = {
                { "server", required_argument, NULL, 's' }, { "repo", required_argument, NULL, 'r' },
                { "agent", required_argument, NULL, 'a' },  { "base", required_argument, NULL, 'b' },
                { "model", required_argument, NULL, 'm' },  { "once", no_argument, NULL, 'o' },
                { "follow", no_argument, NULL, 'f' },       { "env", required_argument, NULL, 'e' },
                { "connect", required_argument, NULL, 'c' }, { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        int ch, rc = 2;
        optind = 1;
        while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
                switch (ch) {
                case 's': server = optarg; break;
                case 'r': repo = optarg; break;
                case 'a': agent = optarg; break;
                case 'b': base = optarg; break;
                case 'm': model = optarg; break;
                case 'o': once = true; break;
                case 'f': do_follow = true; break;
                case 'e': {
                        char *eq = strchr(optarg, '=');
                        if (!eq) {
                                fprintf(stderr, "nightshift: --env needs K=V\n");
                                goto out;
                        }
                        *eq = '\0';
                        cJSON_AddStringToObject(env, optarg, eq + 1);
                        break;
                }
                case 'c': cJSON_AddItemToArray(connect, cJSON_CreateNumber(atoi(optarg))); break;
                case 'h': usage(stdout); rc = 0; goto out;
                default: usage(stderr); goto out;
                }
        }
        if (!repo || optind != argc - 1) {
                usage(stderr);
                goto out;
        }
        curl_global_init(CURL_GLOBAL_DEFAULT);
        char *repo_id = resolve_repo(server, repo);
        if (!repo_id) {
                rc = 1;
                goto out_curl;
        }
        cJSON *body = cJSON_CreateObject(), *reply = NULL;
        cJSON_AddStringToObject(body, "repo", repo_id);
        free(repo_id);
        cJSON_AddStringToObject(body, "prompt", argv[optind]);
        if (agent)
                cJSON_AddStringToObject(body, "agent", agent);
        if (base)
                cJSON_AddStringToObject(body, "base", base);
        if (model)
                cJSON_AddStringToObject(body, "model", model);
        if (once)
                cJSON_AddBoolToObject(body, "once", true);
        if (cJSON_GetArraySize(env))
                cJSON_AddItemReferenceToObject(body, "env", env);
        if (cJSON_GetArraySize(connect))
                cJSON_AddItemReferenceToObject(body, "connect", connect);
        long st = http(server, "POST", "/api/v1/sessions", body, &reply);
        cJSON_Delete(body);
        if (st != 201) {
                print_error("creating the session", st, reply);
                cJSON_Delete(reply);
                rc = 1;
                goto out_curl;
        }
        const char *sid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "id"));
        printf("%s\n", sid ? sid : "?");
        fflush(stdout);
        rc = do_follow && sid ? follow(server, sid) : 0;
        cJSON_Delete(reply);
out_curl:
        curl_global_cleanup();
out:
        cJSON_Delete(env);
        cJSON_Delete(connect);
        return rc;
}
