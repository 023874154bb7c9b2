/* nightshift — `nightshift token`: API tokens on the data dir's database (see cli.h). */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "auth.h"
#include "cli.h"
#include "common/cleanup.h"
#include "config.h"
#include "db.h"

#define DEFAULT_CONFIG "/etc/nightshift/nightshift.conf"

static const char usage_text[] =
        "usage: nightshift token create NAME [--json] [--scope api|hook]   make a token and print it (shown only\n"
        "                                               this once); a hook token can only POST /api/v1/hooks/generic\n"
        "       nightshift token ls [--json]            list tokens (never their values)\n"
        "       nightshift token revoke NAME|ID         revoke a token and end its browser logins\n"
        "options: --config FILE (default " DEFAULT_CONFIG " when present), --data-dir DIR\n";

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fputs("nightshift token: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        return 1;
}

/* Root acts as the owner of the data dir: a database root created would lock the server out of
 * it (the file is private to its owner, mode 0600). */
static int become_owner(const char *data_dir) {
        struct stat st;
        if (geteuid() != 0 || stat(data_dir, &st) < 0 || st.st_uid == 0)
                return 0;
        if (setgroups(0, NULL) < 0 || setgid(st.st_gid) < 0 || setuid(st.st_uid) < 0)
                return -errno;
        return 0;
}

static void print_time(int64_t ms) {
        if (!ms) {
                printf("%-20s", "-");
                return;
        }
        time_t t = (time_t) (ms / 1000);
        struct tm tm;
        char b[32];
        gmtime_r(&t, &tm);
        strftime(b, sizeof b, "%Y-%m-%d %H:%M:%SZ", &tm);
        printf("%-20s", b);
}

static int do_ls(db *d, bool json) {
        db_token *v = NULL;
        size_t n = 0;
        ns_error e;
        if (db_token_list(d, &v, &n, &e) < 0)
                return fail("%s", e.msg);
        if (json) {
                cJSON *a = cJSON_CreateArray();
                for (size_t i = 0; i < n; i++) {
                        cJSON *o = cJSON_CreateObject();
                        cJSON_AddStringToObject(o, "id", v[i].id);
                        cJSON_AddStringToObject(o, "name", v[i].name);
                        cJSON_AddNumberToObject(o, "created_at", (double) v[i].created_at);
                        if (v[i].last_used_at)
                                cJSON_AddNumberToObject(o, "last_used_at", (double) v[i].last_used_at);
                        else
                                cJSON_AddNullToObject(o, "last_used_at");
                        cJSON_AddBoolToObject(o, "revoked", v[i].revoked_at != 0);
                        cJSON_AddStringToObject(o, "scope", v[i].scope);
                        cJSON_AddItemToArray(a, o);
                }
                char *s = cJSON_Print(a);
                if (s)
                        puts(s);
                free(s);
                cJSON_Delete(a);
        } else {
                printf("%-24s %-16s %-20s %-20s %s\n", "NAME", "ID", "CREATED", "LAST USED", "STATE");
                for (size_t i = 0; i < n; i++) {
                        printf("%-24s %-16s ", v[i].name, v[i].id);
                        print_time(v[i].created_at);
                        putchar(' ');
                        print_time(v[i].last_used_at);
                        printf(" %s%s\n", v[i].revoked_at ? "revoked" : "active", strcmp(v[i].scope, "hook") ? "" : " (hook only)");
                }
        }
        db_tokens_free(v, n);
        return 0;
}

static int do_create(db *d, const char *name, const char *scope, bool json) {
        size_t len = strlen(name);
        if (len == 0 || len > 64 || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@") != len)
                return fail("a token name is 1..64 of [A-Za-z0-9._@-], not '%s'", name);
        char value[SV_TOKEN_LEN + 1];
        uint8_t hash[DB_TOKEN_HASH_LEN];
        ns_error e;
        if (sv_token_new(value, hash, &e) < 0)
                return fail("%s", e.msg);
        db_token t = { 0 };
        if (db_token_insert(d, name, scope, hash, &t, &e) < 0) {
                sodium_memzero(value, sizeof value);
                return fail("%s", e.msg);
        }
        if (json) {
                printf("{\"id\": \"%s\", \"name\": \"%s\", \"scope\": \"%s\", \"token\": \"%s\"}\n", t.id, name, t.scope,
                       value);
        } else {
                puts(value);
                fprintf(stderr, "token '%s' (%s) created; it is shown only now: keep it safe\n", name, t.id);
        }
        sodium_memzero(value, sizeof value);
        db_token_clear(&t);
        return 0;
}

int cli_token(int argc, char **argv) {
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' }, { "data-dir", required_argument, NULL, 'd' },
                { "json", no_argument, NULL, 'j' },         { "help", no_argument, NULL, 'h' },
                { "scope", required_argument, NULL, 's' },  { 0 },
        };
        const char *config = NULL, *data_dir = NULL, *scope = NULL;
        bool json = false;
        optind = 1;
        int ch;
        /* Options anywhere ("token create me --json"): getopt moves the words to the end. */
        while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (ch) {
                case 'c': config = optarg; break;
                case 'd': data_dir = optarg; break;
                case 'j': json = true; break;
                case 's': scope = optarg; break;
                case 'h': fputs(usage_text, stdout); return 0;
                default: fputs(usage_text, stderr); return 2;
                }
        }
        const char *sub = optind < argc ? argv[optind++] : NULL;
        const char *arg = optind < argc ? argv[optind++] : NULL;
        if (!sub || optind < argc || ((!strcmp(sub, "create") || !strcmp(sub, "revoke")) != (arg != NULL))) {
                fputs(usage_text, stderr);
                return 2;
        }
        sv_config cfg;
        ns_error e = { 0 };
        if (sv_config_init(&cfg, &e) < 0)
                return fail("%s", e.msg);
        int rc = 1;
        _cleanup_free_ char *path = NULL;
        db *d = NULL;
        if (!config && access(DEFAULT_CONFIG, R_OK) == 0)
                config = DEFAULT_CONFIG;
        if (config && sv_config_load_file(&cfg, config, &e) < 0) {
                fail("%s", e.msg);
                goto out;
        }
        if (data_dir && sv_config_apply(&cfg, "data-dir", data_dir, &e) < 0) {
                fail("%s", e.msg);
                goto out;
        }
        struct stat dst;
        if (geteuid() == 0 && stat(cfg.data_dir, &dst) < 0) {
                /* Made by root, the directory and database would lock the server's user out. */
                fail("%s does not exist: start nightshift serve once, or create it owned by the server's user",
                     cfg.data_dir);
                goto out;
        }
        if (become_owner(cfg.data_dir) < 0) {
                fail("cannot act as the owner of %s", cfg.data_dir);
                goto out;
        }
        if (mkdir(cfg.data_dir, 0700) < 0 && errno != EEXIST) {
                fail("cannot create the data dir %s", cfg.data_dir);
                goto out;
        }
        if (!(path = sv_config_db_path(&cfg)) || db_open(path, &d, &e) < 0) {
                fail("%s", path ? e.msg : "out of memory");
                goto out;
        }
        if (!strcmp(sub, "create"))
                rc = do_create(d, arg, scope, json);
        else if (!strcmp(sub, "ls") || !strcmp(sub, "list"))
                rc = do_ls(d, json);
        else if (!strcmp(sub, "revoke"))
                rc = db_token_revoke(d, arg, &e) < 0 ? fail("%s", e.msg) : 0;
        else {
                fputs(usage_text, stderr);
                rc = 2;
        }
out:
        db_close(d);
        sv_config_clear(&cfg);
        return rc;
}
