/* nightshift supervisor — the secrets vault (see vault.h). */
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "db_int.h"
#include "vault.h"

#define KEY_LEN crypto_aead_xchacha20poly1305_ietf_KEYBYTES
#define NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN crypto_aead_xchacha20poly1305_ietf_ABYTES

struct sv_vault {
        unsigned char *key; /* sodium_malloc'd: guarded pages, locked, wiped on free */
};

_Static_assert(KEY_LEN == crypto_kdf_KEYBYTES, "the vault's key is a crypto_kdf master key");

int sv_vault_derive(const sv_vault *v, const char context[8], uint64_t id, unsigned char *out, size_t out_len,
                    ns_error *err) {
        if (out_len < crypto_kdf_BYTES_MIN || out_len > crypto_kdf_BYTES_MAX)
                return ns_err(err, EINVAL, "a derived key of %zu bytes", out_len);
        return crypto_kdf_derive_from_key(out, out_len, id, context, v->key) == 0 ? 0 : ns_err(err, EINVAL, "derive a key");
}

void sv_secret_clear(sv_secret *s) {
        if (!s)
                return;
        if (s->value) {
                sodium_memzero(s->value, s->len);
                free(s->value);
        }
        *s = (sv_secret){ 0 };
}

void sv_secrets_free(sv_secret *v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                sv_secret_clear(&v[i]);
        free(v);
}

bool sv_secret_name_valid(const char *name) {
        size_t n = name ? strlen(name) : 0;
        if (n == 0 || n > SV_SECRET_NAME_MAX || (name[0] >= '0' && name[0] <= '9'))
                return false;
        return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

/* ---- the master key ------------------------------------------------------------------------ */

/* Read a key of 32 raw bytes or 64 hex digits (optionally newline-terminated) from fd. */
static int read_key(int fd, const char *path, unsigned char *key, ns_error *err) {
        unsigned char buf[130];
        size_t n = 0;
        for (;;) {
                ssize_t k = read(fd, buf + n, sizeof buf - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return ns_err_sys(err, errno, "read %s", path);
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n == sizeof buf)
                        break;
        }
        int r = 0;
        size_t hexlen = n;
        while (hexlen && (buf[hexlen - 1] == '\n' || buf[hexlen - 1] == '\r'))
                hexlen--;
        size_t bin_len = 0;
        if (n == KEY_LEN)
                memcpy(key, buf, KEY_LEN);
        else if (hexlen != 2 * KEY_LEN ||
                 sodium_hex2bin(key, KEY_LEN, (const char *) buf, hexlen, NULL, &bin_len, NULL) < 0 || bin_len != KEY_LEN)
                r = ns_err(err, EINVAL, "%s must hold exactly %d bytes (or %d hex digits)", path, KEY_LEN, 2 * KEY_LEN);
        sodium_memzero(buf, sizeof buf);
        return r;
}

/* The key file in the data dir: made on first start (O_EXCL, 0600), and refused later when it is
 * not a regular file of ours private to us — a key others can read protects nothing. */
static int key_from_file(const char *data_dir, unsigned char *key, ns_error *err) {
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/%s", data_dir, SV_VAULT_KEY_FILE) < 0)
                return ns_err(err, ENOMEM, "out of memory");
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0) {
                randombytes_buf(key, KEY_LEN);
                ssize_t w = write(fd, key, KEY_LEN);
                if (w != KEY_LEN || fsync(fd) < 0) {
                        int e = w < 0 ? errno : EIO;
                        unlink(path);
                        return ns_err_sys(err, e, "write %s", path);
                }
                return 0;
        }
        if (errno != EEXIST)
                return ns_err_sys(err, errno, "create %s", path);
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return ns_err_sys(err, errno, "open %s", path);
        struct stat st;
        if (fstat(fd, &st) < 0)
                return ns_err_sys(err, errno, "stat %s", path);
        if (!S_ISREG(st.st_mode))
                return ns_err(err, EINVAL, "%s is not a regular file", path);
        if (st.st_uid != geteuid())
                return ns_err(err, EPERM, "%s belongs to uid %u, not to this server's user", path, (unsigned) st.st_uid);
        if (st.st_mode & 077)
                return ns_err(err, EPERM, "%s is readable or writable by others (mode %03o): chmod 600 it", path,
                              (unsigned) (st.st_mode & 0777));
        return read_key(fd, path, key, err);
}

/* The systemd credential (LoadCredential=/LoadCredentialEncrypted=), if the unit passes one.
 * Returns 1 when used, 0 when there is none. */
static int key_from_credential(const char *dir, unsigned char *key, ns_error *err) {
        if (!dir || !*dir)
                return 0;
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/%s", dir, SV_VAULT_CREDENTIAL) < 0)
                return ns_err(err, ENOMEM, "out of memory");
        _cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : ns_err_sys(err, errno, "open %s", path);
        int r = read_key(fd, path, key, err);
        return r < 0 ? r : 1;
}

int sv_vault_open(const char *data_dir, const char *credentials_dir, sv_vault **out, ns_error *err) {
        *out = NULL;
        if (sodium_init() < 0)
                return ns_err(err, EIO, "libsodium did not initialise");
        sv_vault *v = calloc(1, sizeof *v);
        if (!v)
                return ns_err(err, ENOMEM, "out of memory");
        if (!(v->key = sodium_malloc(KEY_LEN))) {
                free(v);
                return ns_err(err, ENOMEM, "out of memory (sodium_malloc)");
        }
        if (!credentials_dir)
                credentials_dir = getenv("CREDENTIALS_DIRECTORY");
        int r = key_from_credential(credentials_dir, v->key, err);
        if (r == 0)
                r = key_from_file(data_dir, v->key, err);
        if (r < 0) {
                sv_vault_free(v);
                return r;
        }
        sodium_mprotect_readonly(v->key);
        *out = v;
        return 0;
}

void sv_vault_free(sv_vault *v) {
        if (!v)
                return;
        sodium_free(v->key); /* wipes */
        free(v);
}

/* ---- sealing ------------------------------------------------------------------------------- */

/* The associated data: a version tag, the scope and the name, NUL-separated (neither may hold a
 * NUL), so that a row moved to another name or repository fails to open. */
static size_t make_ad(const char *repo_id, const char *name, unsigned char *ad, size_t cap) {
        int n = snprintf((char *) ad, cap, "nightshift-vault-v1%c%s%c%s", 0, repo_id ? repo_id : "", 0, name);
        return n < 0 || (size_t) n >= cap ? 0 : (size_t) n;
}

static int open_row(const sv_vault *v, const char *repo_id, const char *name, const void *nonce, size_t nonce_len,
                    const void *sealed, size_t sealed_len, sv_secret *out, ns_error *err) {
        unsigned char ad[128];
        size_t adl = make_ad(repo_id, name, ad, sizeof ad);
        if (!adl || nonce_len != NONCE_LEN || sealed_len < TAG_LEN || sealed_len - TAG_LEN > SV_SECRET_VALUE_MAX)
                return ns_err(err, EBADMSG, "secret %s: malformed row", name);
        char *plain = malloc(sealed_len - TAG_LEN + 1);
        if (!plain)
                return ns_err(err, ENOMEM, "out of memory");
        unsigned long long pl = 0;
        if (crypto_aead_xchacha20poly1305_ietf_decrypt((unsigned char *) plain, &pl, NULL, sealed, sealed_len, ad, adl,
                                                       nonce, v->key) < 0) {
                free(plain);
                return ns_err(err, EBADMSG, "secret %s does not open: another master key, or the row was altered", name);
        }
        plain[pl] = '\0';
        snprintf(out->name, sizeof out->name, "%s", name);
        out->value = plain;
        out->len = (size_t) pl;
        return 0;
}

/* One row of `secrets` as sv_vault_put writes it: ?1 repo, ?2 name, ?3 nonce, ?4 sealed, ?5 size,
 * ?6 time. */
struct sealed_row {
        const char *repo_id, *name;
        const unsigned char *nonce, *sealed;
        int sealed_len;
        int64_t size, now;
};

static int sealed_row_write(db *d, const struct sealed_row *row, const char *sql, const char *what, ns_error *err) {
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, sql, &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, row->repo_id);
        db_bind_text(st, 2, row->name);
        sqlite3_bind_blob(st, 3, row->nonce, NONCE_LEN, SQLITE_STATIC);
        sqlite3_bind_blob(st, 4, row->sealed, row->sealed_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, row->size);
        sqlite3_bind_int64(st, 6, row->now);
        return db_stmt_run(d, st, err, what);
}

int sv_vault_put(sv_vault *v, db *d, const char *repo_id, const char *name, const char *value, size_t len,
                 bool *created, ns_error *err) {
        if (!sv_secret_name_valid(name))
                return ns_err(err, EINVAL, "a secret name is 1..%d of A-Z a-z 0-9 _, not starting with a digit",
                              SV_SECRET_NAME_MAX);
        if (len < SV_SECRET_VALUE_MIN || len > SV_SECRET_VALUE_MAX)
                return ns_err(err, len > SV_SECRET_VALUE_MAX ? E2BIG : EINVAL, "a secret's value is %d..%d bytes",
                              SV_SECRET_VALUE_MIN, SV_SECRET_VALUE_MAX);
        unsigned char ad[128], nonce[NONCE_LEN];
        size_t adl = make_ad(repo_id, name, ad, sizeof ad);
        _cleanup_free_ unsigned char *sealed = malloc(len + TAG_LEN);
        if (!adl || !sealed)
                return ns_err(err, ENOMEM, "out of memory");
        randombytes_buf(nonce, sizeof nonce);
        unsigned long long sl = 0;
        crypto_aead_xchacha20poly1305_ietf_encrypt(sealed, &sl, (const unsigned char *) value, len, ad, adl, NULL,
                                                   nonce, v->key);
        db_tx t;
        int r = db_tx_begin(d, &t, err);
        if (r < 0)
                return r;
        int64_t now = db_now_ms();
        const struct sealed_row row = { repo_id, name, nonce, sealed, (int) sl, (int64_t) len, now };
        r = sealed_row_write(d, &row,
                             "UPDATE secrets SET nonce = ?3, sealed = ?4, size = ?5, updated_at = ?6 "
                             "WHERE coalesce(repo_id, '') = coalesce(?1, '') AND name = ?2",
                             "update secret", err);
        bool inserted = false;
        if (r >= 0 && sqlite3_changes(d->conn) == 0) {
                r = sealed_row_write(d, &row,
                                     "INSERT INTO secrets (repo_id, name, nonce, sealed, size, created_at, updated_at) "
                                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                                     "insert secret", err);
                if (r == -EEXIST || r == -EINVAL)
                        r = ns_err(err, ENOENT, "no repository %s", repo_id ? repo_id : "");
                inserted = r >= 0;
        }
        if (created)
                *created = inserted;
        return db_tx_end(d, &t, r, err);
}

int sv_vault_delete(db *d, const char *repo_id, const char *name, ns_error *err) {
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, "DELETE FROM secrets WHERE coalesce(repo_id, '') = coalesce(?1, '') AND name = ?2",
                                &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, repo_id);
        db_bind_text(st, 2, name);
        if ((r = db_stmt_run(d, st, err, "delete secret")) < 0)
                return r;
        return sqlite3_changes(d->conn) ? 0 : ns_err(err, ENOENT, "no secret named %s here", name);
}

int sv_vault_list(db *d, const char *repo_id, cJSON **out, ns_error *err) {
        *out = NULL;
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d,
                                "SELECT name, size, created_at, updated_at FROM secrets "
                                "WHERE coalesce(repo_id, '') = coalesce(?1, '') ORDER BY name",
                                &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, repo_id);
        cJSON *a = cJSON_CreateArray();
        int rc;
        while (a && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                cJSON *it = cJSON_CreateObject();
                cJSON_AddStringToObject(it, "name", (const char *) sqlite3_column_text(st, 0));
                cJSON_AddStringToObject(it, "scope", repo_id ? "repo" : "global");
                if (repo_id)
                        cJSON_AddStringToObject(it, "repo", repo_id);
                cJSON_AddNumberToObject(it, "size", (double) sqlite3_column_int64(st, 1));
                cJSON_AddNumberToObject(it, "created_at", (double) sqlite3_column_int64(st, 2));
                cJSON_AddNumberToObject(it, "updated_at", (double) sqlite3_column_int64(st, 3));
                cJSON_AddItemToArray(a, it);
        }
        if (!a)
                return ns_err(err, ENOMEM, "out of memory");
        if (rc != SQLITE_DONE) {
                cJSON_Delete(a);
                return db_sql_err(d, rc, err, "list secrets");
        }
        *out = a;
        return 0;
}

int sv_vault_get(sv_vault *v, db *d, const char *repo_id, const char *name, sv_secret *out, ns_error *err) {
        *out = (sv_secret){ 0 };
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        /* The repository's own row sorts first (repo_id NULL last): repo wins. */
        int r = db_stmt_prepare(d,
                                "SELECT repo_id, nonce, sealed FROM secrets WHERE name = ?2 AND "
                                "(repo_id IS NULL OR repo_id = ?1) ORDER BY repo_id IS NULL LIMIT 1",
                                &st, err);
        if (r < 0)
                return r;
        db_bind_text(st, 1, repo_id);
        db_bind_text(st, 2, name);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return ns_err(err, ENOENT, "no secret named %s", name);
        if (rc != SQLITE_ROW)
                return db_sql_err(d, rc, err, "get secret");
        return open_row(v, (const char *) sqlite3_column_text(st, 0), name, sqlite3_column_blob(st, 1),
                        (size_t) sqlite3_column_bytes(st, 1), sqlite3_column_blob(st, 2),
                        (size_t) sqlite3_column_bytes(st, 2), out, err);
}

int sv_vault_all(sv_vault *v, db *d, sv_secret **out, size_t *n, ns_error *err) {
        *out = NULL;
        *n = 0;
        _cleanup_(db_stmt_finalizep) sqlite3_stmt *st = NULL;
        int r = db_stmt_prepare(d, "SELECT repo_id, name, nonce, sealed FROM secrets", &st, err);
        if (r < 0)
                return r;
        sv_secret *vec = NULL;
        size_t cnt = 0, cap = 0;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                if (cnt == cap) {
                        size_t nc = cap ? 2 * cap : 16;
                        sv_secret *nv = realloc(vec, nc * sizeof *nv);
                        if (!nv) {
                                sv_secrets_free(vec, cnt);
                                return ns_err(err, ENOMEM, "out of memory");
                        }
                        vec = nv;
                        cap = nc;
                }
                vec[cnt] = (sv_secret){ 0 };
                r = open_row(v, (const char *) sqlite3_column_text(st, 0), (const char *) sqlite3_column_text(st, 1),
                             sqlite3_column_blob(st, 2), (size_t) sqlite3_column_bytes(st, 2),
                             sqlite3_column_blob(st, 3), (size_t) sqlite3_column_bytes(st, 3), &vec[cnt], err);
                if (r < 0) {
                        sv_secrets_free(vec, cnt);
                        return r;
                }
                cnt++;
        }
        if (rc != SQLITE_DONE) {
                sv_secrets_free(vec, cnt);
                return db_sql_err(d, rc, err, "list secrets");
        }
        *out = vec;
        *n = cnt;
        return 0;
}
