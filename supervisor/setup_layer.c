#include "setup_layer.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* The host's package state: dpkg rewrites its status file on every install, upgrade and removal.
 * (On a host without dpkg the key holds no host part: the operator removes stale layers.) */
#define HOST_PACKAGE_STATE "/var/lib/dpkg/status"

bool setup_lockfile_path_ok(const char *path) {
        size_t n = strlen(path);
        if (n == 0 || n > 255 || path[0] == '/' || path[n - 1] == '/')
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) path[i] <= ' ' || path[i] == 0x7f)
                        return false;
        for (const char *c = path; *c;) {
                size_t len = strcspn(c, "/");
                if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
                        return false;
                c += len;
                if (*c == '/')
                        c++;
        }
        return true;
}

static void feed(crypto_hash_sha256_state *st, const char *label, const char *value) {
        /* Length-prefixed, so that no two different inputs can produce the same stream. */
        char head[64];
        int n = snprintf(head, sizeof head, "%s %zu:", label, strlen(value));
        crypto_hash_sha256_update(st, (const unsigned char *) head, (unsigned long long) n);
        crypto_hash_sha256_update(st, (const unsigned char *) value, strlen(value));
}

int setup_layer_name(const setup_key_inputs *in, char out[SETUP_LAYER_NAME_MAX + 1], ns_error *err) {
        if (sodium_init() < 0)
                return ns_err(err, EIO, "libsodium did not initialise");
        crypto_hash_sha256_state st;
        crypto_hash_sha256_init(&st);
        feed(&st, "nightshift-setup-layer", "v1");
        struct stat hs;
        char host[160] = "";
        if (stat(HOST_PACKAGE_STATE, &hs) == 0)
                snprintf(host, sizeof host, "%llu:%llu:%lld:%lld.%09ld", (unsigned long long) hs.st_dev,
                         (unsigned long long) hs.st_ino, (long long) hs.st_size, (long long) hs.st_mtim.tv_sec,
                         hs.st_mtim.tv_nsec);
        /* On a base image, the image's name is its content; on the host layer, the host's packages. */
        feed(&st, "base", in->base ? in->base : "host");
        feed(&st, "host", in->base ? "" : host);
        feed(&st, "setup", in->setup_oid);
        for (size_t i = 0; i < in->n_lockfiles; i++) {
                feed(&st, "lockfile", in->lockfiles[i]);
                feed(&st, "blob", in->lock_oids[i]);
        }
        for (size_t i = 0; i < in->n_env; i++)
                feed(&st, "env", in->env[i]);
        for (size_t i = 0; i < in->n_cache_dirs; i++)
                feed(&st, "cache_dir", in->cache_dirs[i]);
        unsigned char h[crypto_hash_sha256_BYTES];
        crypto_hash_sha256_final(&st, h);
        char hex[2 * crypto_hash_sha256_BYTES + 1];
        sodium_bin2hex(hex, sizeof hex, h, sizeof h);
        snprintf(out, SETUP_LAYER_NAME_MAX + 1, SETUP_LAYER_PREFIX "%.40s", hex);
        return 0;
}
