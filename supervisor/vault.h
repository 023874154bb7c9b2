/* nightshift supervisor — the secrets vault.
 *
 * Secrets live in SQLite (table `secrets`), each value sealed with XChaCha20-Poly1305 (libsodium's
 * IETF AEAD) under a 32-byte master key and a fresh random nonce; the associated data binds the
 * ciphertext to its scope and name, so a row copied onto another name or repository does not
 * open.  The master key comes from the systemd credential `nightshift-vault-key`
 * ($CREDENTIALS_DIRECTORY) when there is one, else from DATA_DIR/vault.key (32 random bytes made
 * on first start, mode 0600; a key file readable by anyone but its owner is refused).
 *
 * Scopes: global (repo_id NULL) and per repository; a repository's secret wins over a global one
 * of the same name.  Values are write-only: nothing here returns one to the API, only to the
 * supervisor's own consumers (env resolution at exec time, the model proxy, push credentials, the
 * redactor).  Plaintext copies are wiped with sodium_memzero when released. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/err.h"
#include "db.h"

#define SV_SECRET_NAME_MAX 64
#define SV_SECRET_VALUE_MIN 4 /* shorter values could not be redacted without blanking ordinary text */
#define SV_SECRET_VALUE_MAX (64 * 1024)
#define SV_VAULT_KEY_FILE "vault.key"
#define SV_VAULT_CREDENTIAL "nightshift-vault-key"

typedef struct sv_vault sv_vault;

/* A decrypted value (malloc'd, NUL-terminated for convenience; len excludes the NUL).  Release
 * with sv_secret_clear, which wipes it. */
typedef struct sv_secret {
        char name[SV_SECRET_NAME_MAX + 1];
        char *value;
        size_t len;
} sv_secret;
void sv_secret_clear(sv_secret *s);
void sv_secrets_free(sv_secret *v, size_t n);

/* True for a secret name: 1..64 of [A-Za-z0-9_], not starting with a digit (an environment
 * variable's name, so that the redaction marker [secret:NAME] needs no escaping anywhere). */
bool sv_secret_name_valid(const char *name);

/* Load (or on first start create) the master key: the systemd credential in `credentials_dir`
 * (NULL: $CREDENTIALS_DIRECTORY) if it holds one, else data_dir/vault.key.  A credential or key
 * file must hold exactly 32 bytes (or 64 hex digits, with an optional newline). */
int sv_vault_open(const char *data_dir, const char *credentials_dir, sv_vault **out, ns_error *err);
void sv_vault_free(sv_vault *v);

/* A key for another purpose (out_len 16..64 bytes), derived from the vault's key with
 * crypto_kdf: the same for the same `context` (8 characters) and `id` as long as the vault's key
 * is, and no help in opening the vault.  Returns 0 or -EINVAL (a length out of bounds). */
int sv_vault_derive(const sv_vault *v, const char context[8], uint64_t id, unsigned char *out, size_t out_len,
                    ns_error *err);

/* Seal and store `value` (SV_SECRET_VALUE_MIN..SV_SECRET_VALUE_MAX bytes) as `name` in scope `repo_id` (NULL =
 * global), replacing an earlier value (rotation: sessions resolve at exec time, so new turns get
 * it).  *created = true when the name was new in that scope. */
int sv_vault_put(sv_vault *v, db *d, const char *repo_id, const char *name, const char *value, size_t len,
                 bool *created, ns_error *err);
/* Remove a secret; -ENOENT when the scope has none of that name. */
int sv_vault_delete(db *d, const char *repo_id, const char *name, ns_error *err);
/* The names and metadata of a scope's secrets, as a JSON array of {name, scope, size,
 * created_at, updated_at}: never a value. */
int sv_vault_list(db *d, const char *repo_id, cJSON **out, ns_error *err);
/* The value of `name` for repository `repo_id` (its own first, then the global one); -ENOENT when
 * neither exists, -EBADMSG when a row does not open (wrong key, tampered row). */
int sv_vault_get(sv_vault *v, db *d, const char *repo_id, const char *name, sv_secret *out, ns_error *err);
/* Every secret of every scope, decrypted (for the redactor). */
int sv_vault_all(sv_vault *v, db *d, sv_secret **out, size_t *n, ns_error *err);

/* ---- the server's vault (api_secrets.c) ---------------------------------------------------- */

typedef struct sv_server sv_server;
/* Open s->vault (data dir or systemd credential) and s->redact, load the redactor, and make
 * every log line pass through it. */
int sv_secrets_start(sv_server *s, ns_error *err);
void sv_secrets_stop(sv_server *s);
/* Reload the redactor from the vault (after any change to it). */
int sv_secrets_refresh(sv_server *s, ns_error *err);
