#include "config.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/conffile.h"
#include "common/log.h"
#include "db.h"
#include "identity.h"
#include "vault.h"
#include "egress.h"

static int set_str(char **dst, const char *val, ns_error *err) {
        char *s = strdup(val);
        if (!s)
                return ns_err(err, ENOMEM, "out of memory");
        free(*dst);
        *dst = s;
        return 0;
}

static int set_abs_path(char **dst, const char *key, const char *val, ns_error *err) {
        /* These paths are joined with ids and handed to sandboxd, which refuses anything odd. */
        if (val[0] != '/' || strlen(val) >= 900 || strpbrk(val, ",:\\ \t\n"))
                return ns_err(err, EINVAL, "--%s must be an absolute path without ',', ':', '\\' or blanks", key);
        int r = set_str(dst, val, err);
        if (r < 0)
                return r;
        size_t n = strlen(*dst);
        while (n > 1 && (*dst)[n - 1] == '/')
                (*dst)[--n] = '\0';
        return 0;
}

static int parse_i64(const char *key, const char *val, int64_t min, int64_t max, int64_t *out, ns_error *err) {
        char *end;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end || v < min || v > max)
                return ns_err(err, EINVAL, "--%s must be an integer in [%lld, %lld]", key, (long long) min,
                              (long long) max);
        *out = v;
        return 0;
}

int sv_config_init(sv_config *c, ns_error *err) {
        *c = (sv_config){
                .listen_port = 8787,
                .max_concurrent = 8,
                .workers = 4,
                .idle_timeout_s = 0,
                .setup_timeout_s = 600,
                .stop_grace_s = 10,
                .keep_events = true,
                .setup_layers = true,
                .layers_max_bytes = INT64_C(20) << 30,
                .layers_max_age_days = 30,
                .log_level = NS_LOG_INFO,
                .rate_limit = 50,
                .preview_port = 8788,
                .model_proxy = true,
                .notify_max_attempts = 6,
                .notify_timeout_s = 10,
                .notify_backoff_max_s = 300,
                .spare_trees = 1,
        };
        if (!(c->listen_addr = strdup("127.0.0.1")) || !(c->data_dir = strdup("/var/lib/nightshift/data")) ||
            !(c->workspace_root = strdup("/var/lib/nightshift/workspaces")) ||
            !(c->sandboxd_socket = strdup("/run/nightshift/sandboxd.sock")) ||
            !(c->agents_dir = strdup("/var/lib/nightshift/agents")) ||
            !(c->git_name_template = strdup("nightshift %s")) ||
            !(c->git_email_template = strdup("%s@nightshift.invalid")) || !(c->preview_addr = strdup("127.0.0.1")) ||
            !(c->model_upstream_anthropic = strdup("https://api.anthropic.com")) ||
            !(c->model_upstream_openai = strdup("https://api.openai.com")) ||
            !(c->model_key_anthropic = strdup("ANTHROPIC_API_KEY")) || !(c->model_key_openai = strdup("OPENAI_API_KEY")) ||
            !(c->hook_command_prefix = strdup("/nightshift")) ||
            !(c->hook_associations = strdup("OWNER,MEMBER,COLLABORATOR")) || !(c->hook_agent = strdup("claude")) ||
            !(c->hook_linear_label = strdup("nightshift"))) {
                sv_config_clear(c);
                return ns_err(err, ENOMEM, "out of memory");
        }
        return 0;
}

void sv_config_clear(sv_config *c) {
        free(c->listen_addr);
        free(c->data_dir);
        free(c->workspace_root);
        free(c->sandboxd_socket);
        free(c->agents_dir);
        free(c->web_dir);
        free(c->git_name_template);
        free(c->git_email_template);
        free(c->preview_addr);
        free(c->preview_domain);
        free(c->model_upstream_anthropic);
        free(c->model_upstream_openai);
        free(c->model_key_anthropic);
        free(c->model_key_openai);
        free(c->egress_allow);
        free(c->egress_hosts);
        free(c->hook_command_prefix);
        free(c->hook_associations);
        free(c->hook_agent);
        free(c->hook_ci_repos);
        free(c->public_url);
        free(c->hook_linear_label);
        free(c->hook_linear_teams);
        free(c->github_api_url);
        *c = (sv_config){ 0 };
}

/* A template must contain exactly one "%s" and no other conversion: it goes through snprintf. */
static int set_template(char **dst, const char *key, const char *val, ns_error *err) {
        if (!sv_identity_template_ok(val))
                return ns_err(err, EINVAL,
                              "--%s: {session}, {agent} or one '%%s', no other '%%', no newline, <, >, \", \\ (≤ 200 bytes)",
                              key);
        return set_str(dst, val, err);
}

int sv_config_apply(sv_config *c, const char *key, const char *val, ns_error *err) {
        int64_t v = 0;
        int r;
        if (!strcmp(key, "listen")) {
                const char *colon = strrchr(val, ':');
                if (!colon || colon == val || colon - val > 64)
                        return ns_err(err, EINVAL, "--listen must be ADDR:PORT");
                if ((r = parse_i64(key, colon + 1, 0, 65535, &v, err)) < 0)
                        return r;
                _cleanup_free_ char *addr = strndup(val, (size_t) (colon - val));
                if (!addr)
                        return ns_err(err, ENOMEM, "out of memory");
                c->listen_port = (int) v;
                free(c->listen_addr);
                c->listen_addr = TAKE_PTR(addr);
                return 0;
        }
        if (!strcmp(key, "preview-listen")) {
                const char *colon = strrchr(val, ':');
                if (!colon || colon == val || colon - val > 64)
                        return ns_err(err, EINVAL, "--preview-listen must be ADDR:PORT");
                if ((r = parse_i64(key, colon + 1, 0, 65535, &v, err)) < 0)
                        return r;
                _cleanup_free_ char *addr = strndup(val, (size_t) (colon - val));
                if (!addr)
                        return ns_err(err, ENOMEM, "out of memory");
                c->preview_port = (int) v;
                free(c->preview_addr);
                c->preview_addr = TAKE_PTR(addr);
                return 0;
        }
        if (!strcmp(key, "preview-domain")) {
                /* It becomes part of host names and URLs: lowercase DNS names only. */
                size_t n = strlen(val);
                if (n == 0 || n > 200 || strspn(val, "abcdefghijklmnopqrstuvwxyz0123456789-.") != n || val[0] == '.' ||
                    val[0] == '-' || val[n - 1] == '.' || strstr(val, ".."))
                        return ns_err(err, EINVAL, "--preview-domain must be a lowercase DNS name");
                return set_str(&c->preview_domain, val, err);
        }
        if (!strcmp(key, "auto-publish")) {
                if (!strcmp(val, "true") || !strcmp(val, ""))
                        c->auto_publish = true;
                else if (!strcmp(val, "false"))
                        c->auto_publish = false;
                else
                        return ns_err(err, EINVAL, "--auto-publish must be true or false");
                return 0;
        }
        if (!strcmp(key, "data-dir"))
                return set_abs_path(&c->data_dir, key, val, err);
        if (!strcmp(key, "workspace-root"))
                return set_abs_path(&c->workspace_root, key, val, err);
        if (!strcmp(key, "sandboxd-socket"))
                return set_abs_path(&c->sandboxd_socket, key, val, err);
        if (!strcmp(key, "agents-dir"))
                return set_abs_path(&c->agents_dir, key, val, err);
        if (!strcmp(key, "web-dir"))
                return set_abs_path(&c->web_dir, key, val, err);
        if (!strcmp(key, "egress-hosts"))
                return set_abs_path(&c->egress_hosts, key, val, err);
        if (!strcmp(key, "egress-allow")) {
                /* Checked entry by entry, as a session's own list is. */
                _cleanup_free_ char *copy = strdup(val);
                if (!copy)
                        return ns_err(err, ENOMEM, "out of memory");
                char *save = NULL;
                for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
                        if ((r = sv_egress_entry_check(t, err)) < 0)
                                return r;
                free(c->egress_allow);
                return (c->egress_allow = strdup(val)) ? 0 : ns_err(err, ENOMEM, "out of memory");
        }
        /* Plain strings (hooks.c checks them where it uses them). */
        static const struct { const char *key; size_t off; } strs[] = {
                { "hook-command-prefix", offsetof(sv_config, hook_command_prefix) },
                { "hook-associations", offsetof(sv_config, hook_associations) },
                { "hook-agent", offsetof(sv_config, hook_agent) },
                { "hook-ci-repos", offsetof(sv_config, hook_ci_repos) },
                { "public-url", offsetof(sv_config, public_url) },
                { "hook-linear-label", offsetof(sv_config, hook_linear_label) },
                { "hook-linear-teams", offsetof(sv_config, hook_linear_teams) },
                { "github-api-url", offsetof(sv_config, github_api_url) },
        };
        for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
                if (strcmp(key, strs[i].key))
                        continue;
                if (!val[0] || strlen(val) > 1024)
                        return ns_err(err, EINVAL, "--%s: 1..1024 characters", key);
                char **slot = (char **) ((char *) c + strs[i].off);
                free(*slot);
                return (*slot = strdup(val)) ? 0 : ns_err(err, ENOMEM, "out of memory");
        }
        if (!strcmp(key, "max-concurrent")) {
                if ((r = parse_i64(key, val, 1, 4096, &v, err)) < 0)
                        return r;
                c->max_concurrent = (int) v;
                return 0;
        }
        if (!strcmp(key, "workers")) {
                if ((r = parse_i64(key, val, 1, 64, &v, err)) < 0)
                        return r;
                c->workers = (int) v;
                return 0;
        }
        if (!strcmp(key, "idle-timeout"))
                return parse_i64(key, val, 0, INT32_MAX, &c->idle_timeout_s, err);
        if (!strcmp(key, "max-runtime"))
                return parse_i64(key, val, 0, INT32_MAX, &c->max_runtime_s, err);
        if (!strcmp(key, "setup-timeout"))
                return parse_i64(key, val, 1, 86400, &c->setup_timeout_s, err);
        if (!strcmp(key, "stop-grace"))
                return parse_i64(key, val, 0, 3600, &c->stop_grace_s, err);
        if (!strcmp(key, "memory"))
                return parse_i64(key, val, 4 << 20, INT64_C(1) << 42, &c->memory_bytes, err);
        if (!strcmp(key, "pids"))
                return parse_i64(key, val, 1, 1000000, &c->pids, err);
        if (!strcmp(key, "cpus")) {
                char *end;
                double d = strtod(val, &end);
                if (*end || !(d >= 0.01 && d <= 1024))
                        return ns_err(err, EINVAL, "--cpus must be 0.01..1024");
                c->cpus = d;
                return 0;
        }
        if (!strcmp(key, "layers-max-bytes"))
                return parse_i64(key, val, 0, INT64_C(1) << 50, &c->layers_max_bytes, err);
        if (!strcmp(key, "layers-max-age"))
                return parse_i64(key, val, 0, 100000, &c->layers_max_age_days, err);
        if (!strcmp(key, "setup-layers")) {
                if (strcmp(val, "true") && strcmp(val, "false"))
                        return ns_err(err, EINVAL, "--setup-layers must be true or false");
                c->setup_layers = !strcmp(val, "true");
                return 0;
        }
        if (!strcmp(key, "keep-events")) {
                if (strcmp(val, "true") && strcmp(val, "false"))
                        return ns_err(err, EINVAL, "--keep-events must be true or false");
                c->keep_events = !strcmp(val, "true");
                return 0;
        }
        if (!strcmp(key, "connect")) {
                if (c->n_connects >= SV_MAX_CONNECTS)
                        return ns_err(err, E2BIG, "at most %d --connect ports", SV_MAX_CONNECTS);
                if ((r = parse_i64(key, val, 1, 65535, &v, err)) < 0)
                        return r;
                c->connects[c->n_connects++] = (int) v;
                return 0;
        }
        if (!strcmp(key, "git-name"))
                return set_template(&c->git_name_template, key, val, err);
        if (!strcmp(key, "git-email"))
                return set_template(&c->git_email_template, key, val, err);
        if (!strcmp(key, "allow-remote")) {
                if (strcmp(val, "true") && strcmp(val, "false"))
                        return ns_err(err, EINVAL, "--allow-remote must be true or false");
                c->allow_remote = !strcmp(val, "true");
                return 0;
        }
        if (!strcmp(key, "rate-limit")) {
                char *end;
                double d = strtod(val, &end);
                if (end == val || *end || !(d >= 0 && d <= 1e6))
                        return ns_err(err, EINVAL, "--rate-limit must be 0..1000000 requests per second (0: no limit)");
                c->rate_limit = d;
                return 0;
        }
        if (!strcmp(key, "model-proxy")) {
                if (strcmp(val, "true") && strcmp(val, "false"))
                        return ns_err(err, EINVAL, "--model-proxy must be true or false");
                c->model_proxy = !strcmp(val, "true");
                return 0;
        }
        if (!strcmp(key, "model-upstream-anthropic") || !strcmp(key, "model-upstream-openai")) {
                if ((strncmp(val, "http://", 7) && strncmp(val, "https://", 8)) || strlen(val) > 512 ||
                    strpbrk(val, " \r\n?#") || val[strlen(val) - 1] == '/')
                        return ns_err(err, EINVAL, "--%s must be an http(s) base URL without a trailing '/'", key);
                return set_str(key[15] == 'a' ? &c->model_upstream_anthropic : &c->model_upstream_openai, val, err);
        }
        if (!strcmp(key, "model-key-anthropic") || !strcmp(key, "model-key-openai")) {
                if (!sv_secret_name_valid(val))
                        return ns_err(err, EINVAL, "--%s must be a secret name", key);
                return set_str(key[10] == 'a' ? &c->model_key_anthropic : &c->model_key_openai, val, err);
        }
        if (!strcmp(key, "notify-max-attempts")) {
                if ((r = parse_i64(key, val, 1, 100, &v, err)) < 0)
                        return r;
                c->notify_max_attempts = (int) v;
                return 0;
        }
        if (!strcmp(key, "notify-timeout"))
                return parse_i64(key, val, 1, 300, &c->notify_timeout_s, err);
        if (!strcmp(key, "notify-backoff-max"))
                return parse_i64(key, val, 1, 86400, &c->notify_backoff_max_s, err);
        if (!strcmp(key, "spare-trees")) {
                if ((r = parse_i64(key, val, 0, 16, &v, err)) < 0)
                        return r;
                c->spare_trees = (int) v;
                return 0;
        }
        if (!strcmp(key, "debug")) {
                c->log_level = NS_LOG_DEBUG;
                return 0;
        }
        return ns_err(err, EINVAL, "unknown option '%s'", key);
}

static int apply_cb(void *ctx, const char *key, const char *val, ns_error *err) {
        return sv_config_apply(ctx, key, val, err);
}

int sv_config_load_file(sv_config *c, const char *file, ns_error *err) {
        return ns_conffile_load(file, apply_cb, c, err);
}

static void usage(void) {
        fputs("usage: nightshift serve [--config FILE] [--listen ADDR:PORT] [--data-dir DIR]\n"
              "         [--workspace-root DIR] [--sandboxd-socket PATH] [--agents-dir DIR]\n"
              "         [--max-concurrent N] [--workers N] [--idle-timeout SEC] [--max-runtime SEC]\n"
              "         [--setup-timeout SEC] [--setup-layers true|false] [--layers-max-bytes N]\n"
              "         [--layers-max-age DAYS] [--stop-grace SEC] [--memory BYTES] [--pids N] [--cpus N]\n"
              "         [--connect PORT]... [--keep-events true|false] [--git-name TPL] [--git-email TPL]\n"
              "         [--allow-remote true|false] [--rate-limit N] [--preview-listen ADDR:PORT]\n"
              "         [--preview-domain DOMAIN] [--auto-publish true|false] [--web-dir DIR] [--debug]\n"
              "         [--model-proxy true|false] [--model-upstream-anthropic URL] [--model-upstream-openai URL]\n"
              "         [--model-key-anthropic SECRET] [--model-key-openai SECRET]\n"
              "         [--egress-allow LIST] [--egress-hosts FILE]\n"
              "         [--hook-command-prefix P] [--hook-associations LIST] [--hook-agent A]\n"
              "         [--hook-ci-repos LIST] [--public-url URL] [--github-api-url URL]\n"
              "         [--hook-linear-label L] [--hook-linear-teams TEAM=REPO,...]\n"
              "         [--notify-max-attempts N] [--notify-timeout SEC] [--notify-backoff-max SEC]\n"
              "         [--spare-trees N]\n",
              stdout);
}

int sv_config_parse_args(sv_config *c, int argc, char **argv, ns_error *err) {
        /* The config file first, wherever --config stands, so that flags override it. */
        for (int i = 1; i < argc; i++) {
                const char *file = NULL;
                if (!strcmp(argv[i], "--config") && i + 1 < argc)
                        file = argv[i + 1];
                else if (!strncmp(argv[i], "--config=", 9))
                        file = argv[i] + 9;
                if (file) {
                        int r = ns_conffile_load(file, apply_cb, c, err);
                        if (r < 0)
                                return r;
                }
        }
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },   { "listen", required_argument, NULL, 0 },
                { "data-dir", required_argument, NULL, 0 },   { "workspace-root", required_argument, NULL, 0 },
                { "sandboxd-socket", required_argument, NULL, 0 }, { "agents-dir", required_argument, NULL, 0 },
                { "max-concurrent", required_argument, NULL, 0 }, { "workers", required_argument, NULL, 0 },
                { "idle-timeout", required_argument, NULL, 0 }, { "max-runtime", required_argument, NULL, 0 },
                { "setup-timeout", required_argument, NULL, 0 }, { "stop-grace", required_argument, NULL, 0 },
                { "memory", required_argument, NULL, 0 },     { "pids", required_argument, NULL, 0 },
                { "cpus", required_argument, NULL, 0 },       { "connect", required_argument, NULL, 0 },
                { "keep-events", required_argument, NULL, 0 }, { "git-name", required_argument, NULL, 0 },
                { "git-email", required_argument, NULL, 0 },  { "debug", no_argument, NULL, 0 },
                { "egress-allow", required_argument, NULL, 0 }, { "egress-hosts", required_argument, NULL, 0 },
                { "allow-remote", required_argument, NULL, 0 }, { "rate-limit", required_argument, NULL, 0 },
                { "setup-layers", required_argument, NULL, 0 }, { "layers-max-bytes", required_argument, NULL, 0 },
                { "layers-max-age", required_argument, NULL, 0 },
                { "preview-listen", required_argument, NULL, 0 }, { "preview-domain", required_argument, NULL, 0 },
                { "auto-publish", required_argument, NULL, 0 },
                { "web-dir", required_argument, NULL, 0 },
                { "model-proxy", required_argument, NULL, 0 }, { "model-upstream-anthropic", required_argument, NULL, 0 },
                { "model-upstream-openai", required_argument, NULL, 0 }, { "model-key-anthropic", required_argument, NULL, 0 },
                { "model-key-openai", required_argument, NULL, 0 },
                { "hook-command-prefix", required_argument, NULL, 0 }, { "hook-associations", required_argument, NULL, 0 },
                { "hook-agent", required_argument, NULL, 0 }, { "hook-ci-repos", required_argument, NULL, 0 },
                { "public-url", required_argument, NULL, 0 },
                { "hook-linear-label", required_argument, NULL, 0 }, { "hook-linear-teams", required_argument, NULL, 0 },
                { "notify-max-attempts", required_argument, NULL, 0 }, { "notify-timeout", required_argument, NULL, 0 },
                { "notify-backoff-max", required_argument, NULL, 0 },
                { "github-api-url", required_argument, NULL, 0 },
                { "spare-trees", required_argument, NULL, 0 },
                { "help", no_argument, NULL, 'h' },           { 0 },
        };
        optind = 1;
        for (;;) {
                int idx = -1;
                int ch = getopt_long(argc, argv, "h", opts, &idx);
                if (ch == -1)
                        break;
                if (ch == 'c')
                        continue;
                if (ch == 'h') {
                        usage();
                        return 1;
                }
                if (ch != 0)
                        return ns_err(err, EINVAL, "bad arguments (see nightshift serve --help)");
                int r = sv_config_apply(c, opts[idx].name, optarg ? optarg : "", err);
                if (r < 0)
                        return r;
        }
        if (optind < argc)
                return ns_err(err, EINVAL, "unexpected argument '%s'", argv[optind]);
        /* Checked here too (http.c refuses to bind as well): before anything is created. */
        struct in6_addr a6;
        struct in_addr a4;
        bool loopback = (inet_pton(AF_INET, c->listen_addr, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127) ||
                        (inet_pton(AF_INET6, c->listen_addr, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6));
        if (!loopback && !c->allow_remote)
                return ns_err(err, EPERM,
                              "--listen %s is not a loopback address: set allow-remote true to listen there "
                              "(and put TLS in front: tokens travel in every request)",
                              c->listen_addr);
        return 0;
}

char *sv_config_db_path(const sv_config *c) {
        char *p = NULL;
        if (asprintf(&p, "%s/%s", c->data_dir, DB_FILE_NAME) < 0)
                return NULL;
        return p;
}

bool sv_list_has(const char *list, const char *item) {
        size_t il = strlen(item);
        for (const char *p = list; p && *p;) {
                size_t n = strcspn(p, ",");
                if (n == il && !strncmp(p, item, n))
                        return true;
                p += n + (p[n] == ',');
        }
        return false;
}
