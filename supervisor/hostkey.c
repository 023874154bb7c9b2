/* nightshift supervisor — SSH host key pins (see hostkey.h). */
#include "hostkey.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"

bool sv_hostkey_url_target(const char *url, char *host, size_t host_cap, int *port) {
        const char *h, *end;
        *port = 22;
        if (!strncmp(url, "ssh://", 6) || !strncmp(url, "git+ssh://", 10) || !strncmp(url, "ssh+git://", 10)) {
                h = strstr(url, "://") + 3;
                const char *slash = h + strcspn(h, "/");
                const char *at = memchr(h, '@', (size_t) (slash - h));
                if (at)
                        h = at + 1;
                if (*h == '[') { /* [v6]:port */
                        end = memchr(h, ']', (size_t) (slash - h));
                        if (!end)
                                return false;
                        h++;
                } else {
                        end = memchr(h, ':', (size_t) (slash - h));
                        if (!end)
                                end = slash;
                }
                const char *colon = memchr(end, ':', (size_t) (slash - end));
                if (colon) {
                        char *e;
                        long p = strtol(colon + 1, &e, 10);
                        if (e != slash || p < 1 || p > 65535)
                                return false;
                        *port = (int) p;
                }
        } else if (!strstr(url, "://") && strchr(url, ':') && url[0] != '/') {
                h = strchr(url, '@') && strchr(url, '@') < strchr(url, ':') ? strchr(url, '@') + 1 : url;
                end = strchr(h, ':');
        } else {
                return false;
        }
        size_t n = (size_t) (end - h);
        if (!n || n >= host_cap)
                return false;
        memcpy(host, h, n);
        host[n] = '\0';
        return true;
}

/* True when the comma-separated patterns name host:port. */
/* An OpenSSH hashed host name, "|1|SALT|HASH" (ssh-keygen -H): HASH = HMAC-SHA1 keyed with SALT
 * of the name as an unhashed line would spell it; both fields standard base64. */
static bool hashed_name_matches(const char *pat, size_t n, const char *want, size_t want_len) {
        if (n < 3 || memcmp(pat, "|1|", 3))
                return false;
        const char *salt = pat + 3, *end = pat + n;
        const char *bar = memchr(salt, '|', (size_t) (end - salt));
        if (!bar)
                return false;
        unsigned char salt_bin[64], hash_bin[64], mac[EVP_MAX_MD_SIZE];
        size_t salt_len = 0, hash_len = 0;
        unsigned int mac_len = 0;
        if (sodium_base642bin(salt_bin, sizeof salt_bin, salt, (size_t) (bar - salt), NULL, &salt_len, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            sodium_base642bin(hash_bin, sizeof hash_bin, bar + 1, (size_t) (end - bar - 1), NULL, &hash_len, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            salt_len != 20 || hash_len != 20)
                return false;
        if (!HMAC(EVP_sha1(), salt_bin, (int) salt_len, (const unsigned char *) want, want_len, mac, &mac_len) ||
            mac_len != 20)
                return false;
        return sodium_memcmp(mac, hash_bin, 20) == 0;
}

static bool host_listed(const char *pats, size_t len, const char *host, int port) {
        char want[300];
        if (port == 22)
                snprintf(want, sizeof want, "%s", host);
        else
                snprintf(want, sizeof want, "[%s]:%d", host, port);
        size_t wl = strlen(want);
        for (const char *p = pats, *e = pats + len; p < e;) {
                size_t n = strcspn(p, ",");
                if (p + n > e)
                        n = (size_t) (e - p);
                if ((n == 1 && *p == '*') || (n == wl && !strncasecmp(p, want, n)) || hashed_name_matches(p, n, want, wl))
                        return true;
                p += n + 1;
        }
        return false;
}

static const char *raw_type_name(git_cert_ssh_raw_type_t t) {
        switch (t) {
        case GIT_CERT_SSH_RAW_TYPE_RSA: return "ssh-rsa";
        case GIT_CERT_SSH_RAW_TYPE_DSS: return "ssh-dss";
        case GIT_CERT_SSH_RAW_TYPE_KEY_ECDSA_256: return "ecdsa-sha2-nistp256";
        case GIT_CERT_SSH_RAW_TYPE_KEY_ECDSA_384: return "ecdsa-sha2-nistp384";
        case GIT_CERT_SSH_RAW_TYPE_KEY_ECDSA_521: return "ecdsa-sha2-nistp521";
        case GIT_CERT_SSH_RAW_TYPE_KEY_ED25519: return "ssh-ed25519";
        default: return NULL;
        }
}

int sv_hostkey_check(const char *pins, const char *host, int port, const git_cert_hostkey *cert, char *why,
                     size_t why_cap) {
        bool have_raw = (cert->type & GIT_CERT_SSH_RAW) && cert->hostkey && cert->hostkey_len > 0;
        bool have_sha = cert->type & GIT_CERT_SSH_SHA256;
        const char *type = have_raw ? raw_type_name(cert->raw_type) : NULL;
        bool any_for_host = false;
        size_t cap = have_raw ? cert->hostkey_len + 16 : 16;
        _cleanup_free_ unsigned char *buf = malloc(cap > 64 ? cap : 64);
        if (!buf) {
                snprintf(why, why_cap, "out of memory");
                return -1;
        }
        for (const char *line = pins; line && *line;) {
                size_t ll = strcspn(line, "\n");
                const char *next = line[ll] ? line + ll + 1 : line + ll;
                const char *p = line, *end = line + ll;
                while (p < end && (*p == ' ' || *p == '\t'))
                        p++;
                while (end > p && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
                        end--;
                line = next;
                if (p == end || *p == '#')
                        continue;
                if ((size_t) (end - p) > 7 && !strncmp(p, "SHA256:", 7) && !memchr(p, ' ', (size_t) (end - p))) {
                        any_for_host = true;
                        size_t n = 0;
                        /* ssh-keygen prints the digest as unpadded standard base64 */
                        if (have_sha &&
                            sodium_base642bin(buf, 64, p + 7, (size_t) (end - p - 7), "=", &n, NULL,
                                              sodium_base64_VARIANT_ORIGINAL_NO_PADDING) == 0 &&
                            n == 32 && sodium_memcmp(buf, cert->hash_sha256, 32) == 0)
                                return 0;
                        continue;
                }
                /* HOSTS KEYTYPE BASE64 [comment]; @cert-authority / @revoked markers are not pins */
                if (*p == '@')
                        continue;
                const char *f1e = memchr(p, ' ', (size_t) (end - p));
                if (!f1e || !host_listed(p, (size_t) (f1e - p), host, port))
                        continue;
                any_for_host = true;
                const char *t = f1e + strspn(f1e, " \t");
                const char *te = t + strcspn(t, " \t");
                if (te >= end)
                        continue;
                const char *k = te + strspn(te, " \t");
                const char *ke = k + strcspn(k, " \t\r\n");
                if (ke > end)
                        ke = end;
                if (!have_raw || !type || (size_t) (te - t) != strlen(type) || strncmp(t, type, (size_t) (te - t)))
                        continue;
                size_t n = 0;
                if (sodium_base642bin(buf, cap, k, (size_t) (ke - k), NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL) == 0 &&
                    n == cert->hostkey_len && sodium_memcmp(buf, cert->hostkey, n) == 0)
                        return 0;
        }
        if (!any_for_host)
                snprintf(why, why_cap, "no pinned host key for %s port %d in GIT_SSH_KNOWN_HOSTS", host, port);
        else
                snprintf(why, why_cap, "the host key of %s port %d (%s) matches no pin in GIT_SSH_KNOWN_HOSTS", host,
                         port, type ? type : "unknown type");
        return -1;
}
