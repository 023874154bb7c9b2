/* nightshift — `nightshift layers`: the setup layers in sandboxd's layer store (see cli.h). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "common/cleanup.h"
#include "config.h"
#include "layers.h"

#define DEFAULT_CONFIG "/etc/nightshift/nightshift.conf"

static const char usage_text[] =
        "usage: nightshift layers ls [--json]          list the layers (size, age, last use, in use)\n"
        "       nightshift layers rm NAME              remove a layer (refused while a sandbox uses it)\n"
        "       nightshift layers gc [--max-bytes N] [--max-age DAYS] [--dry-run] [--json]\n"
        "                                               remove layers unused for DAYS, then the least\n"
        "                                               recently used until the rest fit in N bytes\n"
        "options: --config FILE (default " DEFAULT_CONFIG " when present), --sandboxd-socket PATH\n";

static int parse_u64(const char *s, uint64_t max, uint64_t *out) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-' || v > max)
                return -1;
        *out = v;
        return 0;
}

static void print_ls(const cJSON *list) {
        printf("%-48s %12s %8s %-19s %s\n", "LAYER", "BYTES", "FILES", "LAST USED", "IN USE");
        const cJSON *l;
        cJSON_ArrayForEach(l, list) {
                const cJSON *name = cJSON_GetObjectItemCaseSensitive(l, "name");
                const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(l, "bytes");
                const cJSON *files = cJSON_GetObjectItemCaseSensitive(l, "files");
                const cJSON *used = cJSON_GetObjectItemCaseSensitive(l, "last_used");
                char when[32] = "-";
                if (cJSON_IsNumber(used)) {
                        time_t t = (time_t) used->valuedouble;
                        struct tm tm;
                        if (localtime_r(&t, &tm))
                                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
                }
                printf("%-48s %12.0f %8.0f %-19s %s\n", cJSON_IsString(name) ? name->valuestring : "?",
                       cJSON_IsNumber(bytes) ? bytes->valuedouble : 0, cJSON_IsNumber(files) ? files->valuedouble : 0,
                       when, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(l, "in_use")) ? "yes" : "no");
        }
}

int cli_layers(int argc, char **argv) {
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },   { "sandboxd-socket", required_argument, NULL, 's' },
                { "max-bytes", required_argument, NULL, 'b' }, { "max-age", required_argument, NULL, 'a' },
                { "dry-run", no_argument, NULL, 'n' },        { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },           { 0 },
        };
        const char *config = NULL, *socket = NULL;
        layers_gc_policy policy = { 0 };
        bool json = false;
        uint64_t v;
        optind = 1;
        int ch;
        while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (ch) {
                case 'c': config = optarg; break;
                case 's': socket = optarg; break;
                case 'b':
                        if (parse_u64(optarg, UINT64_MAX / 2, &policy.max_bytes) < 0) {
                                fprintf(stderr, "nightshift layers: --max-bytes wants a number of bytes\n");
                                return 2;
                        }
                        break;
                case 'a':
                        if (parse_u64(optarg, 100000, &v) < 0) {
                                fprintf(stderr, "nightshift layers: --max-age wants a number of days\n");
                                return 2;
                        }
                        policy.max_age_s = (int64_t) v * 86400;
                        break;
                case 'n': policy.dry_run = true; break;
                case 'j': json = true; break;
                case 'h': fputs(usage_text, stdout); return 0;
                default: fputs(usage_text, stderr); return 2;
                }
        }
        const char *sub = optind < argc ? argv[optind++] : NULL;
        const char *arg = optind < argc ? argv[optind++] : NULL;
        if (!sub || optind < argc || (!strcmp(sub, "rm") != (arg != NULL)) ||
            (strcmp(sub, "ls") && strcmp(sub, "rm") && strcmp(sub, "gc"))) {
                fputs(usage_text, stderr);
                return 2;
        }
        if (strcmp(sub, "gc") && (policy.max_bytes || policy.max_age_s || policy.dry_run)) {
                fputs(usage_text, stderr);
                return 2;
        }
        sv_config cfg;
        ns_error e = { 0 };
        if (sv_config_init(&cfg, &e) < 0) {
                fprintf(stderr, "nightshift layers: %s\n", e.msg);
                return 1;
        }
        int rc = 1;
        ns_client *c = NULL;
        cJSON *out = NULL;
        if (!config && access(DEFAULT_CONFIG, R_OK) == 0)
                config = DEFAULT_CONFIG;
        if ((config && sv_config_load_file(&cfg, config, &e) < 0) ||
            (socket && sv_config_apply(&cfg, "sandboxd-socket", socket, &e) < 0) ||
            ns_client_connect(cfg.sandboxd_socket, &c, &e) < 0)
                goto out;
        if (!strcmp(sub, "ls")) {
                if (layers_list(c, &out, &e) < 0)
                        goto out;
                if (json) {
                        char *s = cJSON_Print(out);
                        printf("%s\n", s ? s : "[]");
                        free(s);
                } else {
                        print_ls(out);
                }
        } else if (!strcmp(sub, "rm")) {
                cJSON *req = cJSON_CreateObject(), *reply = NULL;
                cJSON_AddStringToObject(req, "op", "layer_remove");
                cJSON_AddStringToObject(req, "layer", arg);
                int r = ns_client_call(c, req, NULL, 0, &reply, NULL, NULL, &e);
                cJSON_Delete(req);
                cJSON_Delete(reply);
                if (r < 0)
                        goto out;
        } else {
                layers_gc_result res;
                if (layers_gc(c, geteuid(), &policy, &res, &out, &e) < 0)
                        goto out;
                if (json) {
                        cJSON *o = cJSON_CreateObject();
                        cJSON_AddItemToObject(o, "removed", out);
                        out = NULL;
                        cJSON_AddNumberToObject(o, "bytes_removed", (double) res.bytes_removed);
                        cJSON_AddNumberToObject(o, "kept", (double) res.kept);
                        cJSON_AddNumberToObject(o, "bytes_kept", (double) res.bytes_kept);
                        cJSON_AddBoolToObject(o, "dry_run", policy.dry_run);
                        char *s = cJSON_Print(o);
                        printf("%s\n", s ? s : "{}");
                        free(s);
                        cJSON_Delete(o);
                } else {
                        const cJSON *n;
                        cJSON_ArrayForEach(n, out)
                                printf("%s %s\n", policy.dry_run ? "would remove" : "removed", n->valuestring);
                        printf("%zu layers (%llu bytes) %s, %zu kept (%llu bytes)\n", res.removed,
                               (unsigned long long) res.bytes_removed, policy.dry_run ? "to remove" : "removed",
                               res.kept, (unsigned long long) res.bytes_kept);
                }
        }
        rc = 0;
out:
        if (rc)
                fprintf(stderr, "nightshift layers %s: %s\n", sub, e.msg);
        cJSON_Delete(out);
        if (c)
                ns_client_free(c);
        sv_config_clear(&cfg);
        return rc;
}
