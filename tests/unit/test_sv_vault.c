/* Unit tests of supervisor/vault.c: the key file (made 0600, refused when others can read it,
 * refused when the wrong size), the systemd credential taking precedence, sealing (no plaintext in
 * the database file), scopes (the repository's value wins), rotation, and the associated data: a
 * sealed row moved onto another name or scope, or altered, does not open. */
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "supervisor/vault.h"
#include "tap.h"

static char dir[64], dbpath[128], keypath[128], creddir[128];

static int sql(const char *q) {
        sqlite3 *c = NULL;
        int rc = sqlite3_open(dbpath, &c);
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(c, q, NULL, NULL, NULL);
        sqlite3_close(c);
        return rc;
}

/* Whether the database files hold `needle` anywhere, as raw bytes. */
static bool file_has(const char *needle) {
        static const char *const sfx[] = { "", "-wal" };
        for (size_t i = 0; i < 2; i++) {
                char p[160];
                snprintf(p, sizeof p, "%s%s", dbpath, sfx[i]);
                FILE *f = fopen(p, "rb");
                if (!f)
                        continue;
                static char buf[1 << 22];
                size_t n = fread(buf, 1, sizeof buf, f);
                fclose(f);
                if (memmem(buf, n, needle, strlen(needle)))
                        return true;
        }
        return false;
}

static bool get_is(sv_vault *v, db *d, const char *repo, const char *name, const char *want) {
        sv_secret s = { 0 };
        ns_error e;
        int r = sv_vault_get(v, d, repo, name, &s, &e);
        bool res = r == 0 && s.len == strlen(want) && !memcmp(s.value, want, s.len);
        sv_secret_clear(&s);
        return res;
}

int main(void) {
        snprintf(dir, sizeof dir, "/tmp/ns-vault-XXXXXX");
        if (!mkdtemp(dir))
                return 1;
        snprintf(dbpath, sizeof dbpath, "%s/n.db", dir);
        snprintf(keypath, sizeof keypath, "%s/" SV_VAULT_KEY_FILE, dir);
        snprintf(creddir, sizeof creddir, "%s/cred", dir);
        ns_error e;
        sv_vault *v = NULL;
        ok(sv_vault_open(dir, "", &v, &e) == 0, "open makes a key file");
        struct stat st;
        ok(stat(keypath, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == 32, "it is 32 bytes, mode 0600");
        sv_vault_free(v);
        v = NULL;
        chmod(keypath, 0640);
        ok(sv_vault_open(dir, "", &v, &e) == -EPERM && strstr(e.msg, "readable"), "a group-readable key: refused (%s)",
           e.msg);
        chmod(keypath, 0600);
        ok(sv_vault_open(dir, "", &v, &e) == 0, "0600 again: opens the same key");

        db *d = NULL;
        ok(db_open(dbpath, &d, &e) == 0, "a database");
        db_repo repo = { .name = (char *) "app", .url_or_path = (char *) "/x", .mirror_path = (char *) "/m" };
        ok(db_repo_insert(d, &repo, &e) == 0, "a repository %s", repo.id);

        bool created = false;
        ok(sv_vault_put(v, d, NULL, "TOKEN", "global-value-1", 14, &created, &e) == 0 && created, "put global");
        ok(sv_vault_put(v, d, repo.id, "TOKEN", "repo-value-22", 13, &created, &e) == 0 && created, "put repo");
        ok(sv_vault_put(v, d, NULL, "OTHER", "other-value-333", 15, &created, &e) == 0, "put another");
        ok(get_is(v, d, repo.id, "TOKEN", "repo-value-22"), "the repository's value wins");
        ok(get_is(v, d, NULL, "TOKEN", "global-value-1"), "the global one without a repository");
        ok(get_is(v, d, "r-aaaaaaaaaaaa", "TOKEN", "global-value-1"), "and for another repository");
        ok(sv_vault_put(v, d, NULL, "TOKEN", "global-value-2", 14, &created, &e) == 0 && !created, "rotate");
        ok(get_is(v, d, NULL, "TOKEN", "global-value-2"), "the new value is what comes out");
        ok(sv_vault_put(v, d, NULL, "bad-name", "xxxxxx", 6, NULL, &e) == -EINVAL, "a bad name: -EINVAL");
        ok(sv_vault_put(v, d, NULL, "X", "xy", 2, NULL, &e) == -EINVAL, "a value too short: -EINVAL");
        sqlite3 *c = NULL;
        sqlite3_open(dbpath, &c);
        sqlite3_exec(c, "PRAGMA wal_checkpoint(FULL)", NULL, NULL, NULL);
        sqlite3_close(c);
        ok(!file_has("global-value") && !file_has("repo-value") && !file_has("other-value"),
           "no value is in the database files in plaintext");

        cJSON *list = NULL;
        ok(sv_vault_list(d, NULL, &list, &e) == 0 && cJSON_GetArraySize(list) == 2, "list: two global secrets");
        char *txt = cJSON_PrintUnformatted(list);
        ok(txt && !strstr(txt, "value-") && strstr(txt, "\"size\":14"), "names and sizes, no value: %s", txt);
        free(txt);
        cJSON_Delete(list);

        /* Rows moved: OTHER's sealed value onto TOKEN (same scope), the repo's onto the global. */
        ok(sql("UPDATE secrets SET (nonce, sealed) = (SELECT nonce, sealed FROM secrets WHERE name = 'OTHER') "
               "WHERE name = 'TOKEN' AND repo_id IS NULL") == SQLITE_OK,
           "copy OTHER's sealed value onto TOKEN");
        sv_secret s = { 0 };
        ok(sv_vault_get(v, d, NULL, "TOKEN", &s, &e) == -EBADMSG, "it does not open under TOKEN (%s)", e.msg);
        ok(sql("UPDATE secrets SET repo_id = NULL, name = 'MOVED' WHERE repo_id IS NOT NULL") == SQLITE_OK,
           "move the repository's row to the global scope");
        ok(sv_vault_get(v, d, NULL, "MOVED", &s, &e) == -EBADMSG, "it does not open there");
        ok(sql("UPDATE secrets SET sealed = zeroblob(length(sealed)) WHERE name = 'OTHER'") == SQLITE_OK &&
                   sv_vault_get(v, d, NULL, "OTHER", &s, &e) == -EBADMSG,
           "an altered ciphertext does not open");
        sv_secret *all = NULL;
        size_t n = 0;
        ok(sv_vault_all(v, d, &all, &n, &e) == -EBADMSG, "listing all values fails on a bad row");
        ok(sv_vault_delete(d, NULL, "OTHER", &e) == 0 && sv_vault_delete(d, NULL, "OTHER", &e) == -ENOENT,
           "delete; again: -ENOENT");
        sv_vault_free(v);

        /* A systemd credential takes precedence over the key file. */
        mkdir(creddir, 0700);
        char cred[192];
        snprintf(cred, sizeof cred, "%s/" SV_VAULT_CREDENTIAL, creddir);
        FILE *f = fopen(cred, "w");
        fputs("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", f);
        fclose(f);
        ok(sv_vault_open(dir, creddir, &v, &e) == 0, "open with a credential (64 hex digits)");
        ok(sv_vault_get(v, d, NULL, "MOVED", &s, &e) == -EBADMSG && sv_vault_put(v, d, NULL, "C", "cred-val", 8, NULL, &e) == 0 &&
                   get_is(v, d, NULL, "C", "cred-val"),
           "it is another key than the file's, and it works");
        sv_vault_free(v);
        f = fopen(cred, "w");
        fputs("short", f);
        fclose(f);
        ok(sv_vault_open(dir, creddir, &v, &e) == -EINVAL, "a credential of the wrong size: refused (%s)", e.msg);

        db_close(d);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
                return 1;
        return tap_done();
}
