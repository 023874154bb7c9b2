/* nightshift — `nightshift secret set|ls|rm`: the vault through a running server's API.
 *
 *   nightshift secret set NAME [--repo R]   the value from stdin (one trailing newline dropped)
 *   nightshift secret ls [--repo R] [--json]
 *   nightshift secret rm NAME [--repo R]
 *
 * Values go in and never come out: `ls` shows names and metadata only. */
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common/cleanup.h"
#include "ids.h"
#include "vault.h"

static const char usage[] =
        "usage: nightshift secret set NAME [--repo R]   (the value is read from stdin)\n"
        "       nightshift secret ls [--repo R] [--json]\n"
        "       nightshift secret rm NAME [--repo R]\n"
        "Secrets are sealed in the server's vault and never shown again; sessions use them as\n"
        "${secret:NAME} in their env, the model proxy and pushes use them by name.  Everything the\n"
        "server stores or sends has their values replaced by [secret:NAME].\n"
        "  --repo R           the repository's own scope (its id or name; it wins over a global\n"
        "                     secret of the same name); default: global\n"
        "  --server URL, --token-file FILE   as for the other client commands (nightshift ls --help)\n";

/* The API path of the scope: "/api/v1/secrets" or "/api/v1/repos/ID/secrets". */
static int scope_path(client_http *c, const char *repo, char **out, ns_error *err) {
        if (!repo)
                return (*out = strdup("/api/v1/secrets")) ? 0 : ns_err(err, ENOMEM, "out of memory");
        char id[SV_ID_LEN + 1] = "";
        if (sv_id_valid(repo, SV_ID_PREFIX_REPO)) {
                snprintf(id, sizeof id, "%s", repo);
        } else {
                client_reply rep = { 0 };
                int r = client_http_request(c, "GET", "/api/v1/repos", NULL, &rep, err);
                const cJSON *it, *repos = r == 0 ? cJSON_GetObjectItemCaseSensitive(rep.json, "repos") : NULL;
                cJSON_ArrayForEach(it, repos) {
                        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "name"));
                        const char *url = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "url"));
                        const char *rid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "id"));
                        if (rid && ((name && !strcmp(name, repo)) || (url && !strcmp(url, repo))))
                                snprintf(id, sizeof id, "%s", rid);
                }
                client_reply_clear(&rep);
                if (r < 0)
                        return r;
                if (!id[0])
                        return ns_err(err, ENOENT, "no repository '%s' on the server", repo);
        }
        return asprintf(out, "/api/v1/repos/%s/secrets", id) < 0 ? ns_err(err, ENOMEM, "out of memory") : 0;
}

/* The value from stdin, at most SV_SECRET_VALUE_MAX bytes, without one trailing newline. */
static int read_value(char **out, size_t *len, ns_error *err) {
        size_t cap = SV_SECRET_VALUE_MAX + 2, n = 0;
        char *buf = malloc(cap);
        if (!buf)
                return ns_err(err, ENOMEM, "out of memory");
        for (;;) {
                ssize_t k = read(STDIN_FILENO, buf + n, cap - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                n += (size_t) k;
                if (n == cap)
                        break;
        }
        if (n && buf[n - 1] == '\n')
                n--;
        if (n && buf[n - 1] == '\r')
                n--;
        if (n > SV_SECRET_VALUE_MAX || n < SV_SECRET_VALUE_MIN || memchr(buf, '\0', n)) {
                sodium_memzero(buf, cap);
                free(buf);
                return ns_err(err, EINVAL, "the value (stdin) must be %d..%d bytes of text", SV_SECRET_VALUE_MIN,
                              SV_SECRET_VALUE_MAX);
        }
        buf[n] = '\0';
        *out = buf;
        *len = n;
        return 0;
}

static int do_set(client_http *c, const char *base, const char *name, ns_error *err) {
        char *value = NULL;
        size_t len = 0;
        int r = read_value(&value, &len, err);
        if (r < 0)
                return r;
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "value", value);
        sodium_memzero(value, len);
        free(value);
        _cleanup_free_ char *path = NULL, *esc = client_http_escape(c, name);
        client_reply rep = { 0 };
        if (esc && asprintf(&path, "%s/%s", base, esc) >= 0)
                r = client_http_request(c, "PUT", path, body, &rep, err);
        else
                r = ns_err(err, ENOMEM, "out of memory");
        cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "value");
        if (cJSON_IsString(v))
                sodium_memzero(v->valuestring, strlen(v->valuestring));
        cJSON_Delete(body);
        if (r == 0)
                printf("%s %s\n", rep.status == 201 ? "created" : "replaced", name);
        client_reply_clear(&rep);
        return r;
}

static int do_rm(client_http *c, const char *base, const char *name, ns_error *err) {
        _cleanup_free_ char *path = NULL, *esc = client_http_escape(c, name);
        if (!esc || asprintf(&path, "%s/%s", base, esc) < 0)
                return ns_err(err, ENOMEM, "out of memory");
        client_reply rep = { 0 };
        int r = client_http_request(c, "DELETE", path, NULL, &rep, err);
        client_reply_clear(&rep);
        if (r == 0)
                printf("removed %s\n", name);
        return r;
}

static int do_ls(client_http *c, const char *base, bool json, ns_error *err) {
        client_reply rep = { 0 };
        int r = client_http_request(c, "GET", base, NULL, &rep, err);
        if (r == 0 && json) {
                fwrite(rep.body ? rep.body : "", 1, rep.len, stdout);
                putchar('\n');
        } else if (r == 0) {
                const cJSON *it;
                cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(rep.json, "secrets")) {
                        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "name"));
                        const cJSON *sz = cJSON_GetObjectItemCaseSensitive(it, "size");
                        const cJSON *up = cJSON_GetObjectItemCaseSensitive(it, "updated_at");
                        time_t t = (time_t) (cJSON_IsNumber(up) ? up->valuedouble / 1000 : 0);
                        char when[32] = "";
                        struct tm tm;
                        if (gmtime_r(&t, &tm))
                                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%SZ", &tm);
                        printf("%-32s %6d bytes  updated %s\n", name ? name : "?", cJSON_IsNumber(sz) ? sz->valueint : 0,
                               when);
                }
        }
        client_reply_clear(&rep);
        return r;
}

int cli_secret(int argc, char **argv) {
        static const struct option options[] = {
                { "server", required_argument, NULL, 'S' }, { "token-file", required_argument, NULL, 'T' },
                { "repo", required_argument, NULL, 'r' },   { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },         { 0 },
        };
        const char *server = NULL, *token_file = NULL, *repo = NULL;
        bool json = false;
        optind = 1;
        opterr = 0;
        int ch;
        while ((ch = getopt_long(argc, argv, "h", options, NULL)) != -1) {
                switch (ch) {
                case 'S': server = optarg; break;
                case 'T': token_file = optarg; break;
                case 'r': repo = optarg; break;
                case 'j': json = true; break;
                case 'h': fputs(usage, stdout); return 0;
                default: fputs(usage, stderr); return CLIENT_EXIT_USAGE;
                }
        }
        const char *sub = optind < argc ? argv[optind] : NULL;
        int npos = argc - optind - 1;
        bool is_ls = sub && !strcmp(sub, "ls"), named = sub && (!strcmp(sub, "set") || !strcmp(sub, "rm"));
        if (!(is_ls && npos == 0) && !(named && npos == 1)) {
                fputs(usage, stderr);
                return CLIENT_EXIT_USAGE;
        }
        const char *name = named ? argv[optind + 1] : NULL;
        if (name && !sv_secret_name_valid(name)) {
                fprintf(stderr, "nightshift secret: '%.64s' is not a secret name (A-Z a-z 0-9 _, up to %d)\n", name,
                        SV_SECRET_NAME_MAX);
                return CLIENT_EXIT_USAGE;
        }
        ns_error err = { 0 };
        _cleanup_(client_http_close) client_http c = { 0 };
        _cleanup_free_ char *base = NULL;
        int r = client_http_open(&c, server, token_file, &err);
        if (r >= 0)
                r = scope_path(&c, repo, &base, &err);
        if (r >= 0)
                r = is_ls ? do_ls(&c, base, json, &err)
                    : !strcmp(sub, "set") ? do_set(&c, base, name, &err)
                                          : do_rm(&c, base, name, &err);
        fflush(stdout);
        if (r < 0)
                fprintf(stderr, "nightshift secret %s: %s\n", sub, err.msg);
        return client_exit_status(r);
}
