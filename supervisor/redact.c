/* nightshift supervisor — secret redaction (see redact.h). */
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/cleanup.h"
#include "redact.h"

typedef struct needle {
        char *bytes;
        size_t len;
        char marker[SV_SECRET_NAME_MAX + 10]; /* "[secret:NAME]" */
        size_t marker_len;
} needle;

struct sv_redactor {
        pthread_rwlock_t lock;
        needle *v; /* longest first */
        size_t n;
        bool first[256]; /* the first bytes of the needles: most positions are skipped on this */
};

static void needles_free(needle *v, size_t n) {
        for (size_t i = 0; v && i < n; i++) {
                sodium_memzero(v[i].bytes, v[i].len);
                free(v[i].bytes);
        }
        free(v);
}

int sv_redactor_new(sv_redactor **out, ns_error *err) {
        sv_redactor *r = calloc(1, sizeof *r);
        if (!r)
                return ns_err(err, ENOMEM, "out of memory");
        if (pthread_rwlock_init(&r->lock, NULL) != 0) {
                free(r);
                return ns_err(err, ENOMEM, "pthread_rwlock_init");
        }
        *out = r;
        return 0;
}

void sv_redactor_free(sv_redactor *r) {
        if (!r)
                return;
        needles_free(r->v, r->n);
        pthread_rwlock_destroy(&r->lock);
        free(r);
}

/* ---- the forms of a value ------------------------------------------------------------------ */

typedef struct needle_vec {
        needle *v;
        size_t n, cap;
        bool oom;
} needle_vec;

/* Add bytes[0..len) (copied) for secret `name`, unless too short or already there. */
static void add(needle_vec *nv, const char *name, const char *bytes, size_t len) {
        if (nv->oom || len < SV_REDACT_MIN_NEEDLE)
                return;
        for (size_t i = 0; i < nv->n; i++)
                if (nv->v[i].len == len && !memcmp(nv->v[i].bytes, bytes, len))
                        return;
        if (nv->n == nv->cap) {
                size_t nc = nv->cap ? 2 * nv->cap : 32;
                needle *n2 = realloc(nv->v, nc * sizeof *n2);
                if (!n2) {
                        nv->oom = true;
                        return;
                }
                nv->v = n2;
                nv->cap = nc;
        }
        needle *it = &nv->v[nv->n];
        if (!(it->bytes = malloc(len))) {
                nv->oom = true;
                return;
        }
        memcpy(it->bytes, bytes, len);
        it->len = len;
        int m = snprintf(it->marker, sizeof it->marker, "[secret:%s]", name);
        it->marker_len = (size_t) m;
        nv->n++;
}

/* base64 of `val` as it appears when `off` (0..2) bytes precede it in the encoded stream: the
 * characters that mix in bits of the neighbours are dropped on both sides. */
static void add_base64(needle_vec *nv, const char *name, const unsigned char *val, size_t len, int variant) {
        for (size_t off = 0; off < 3; off++) {
                size_t total = off + len;
                unsigned char *buf = calloc(1, total);
                size_t enc_cap = sodium_base64_ENCODED_LEN(total, variant);
                char *enc = malloc(enc_cap);
                if (!buf || !enc) {
                        free(buf);
                        free(enc);
                        nv->oom = true;
                        return;
                }
                memcpy(buf + off, val, len);
                sodium_bin2base64(enc, enc_cap, buf, total, variant);
                size_t start = off == 0 ? 0 : off == 1 ? 2 : 3;
                size_t end = total * 8 / 6; /* characters made of the data's bits only */
                if (end > start)
                        add(nv, name, enc + start, end - start);
                sodium_memzero(buf, total);
                sodium_memzero(enc, enc_cap);
                free(buf);
                free(enc);
        }
}

/* Percent-encoding with `safe` left as it is; `plus` turns a space into '+'. */
static void add_urlenc(needle_vec *nv, const char *name, const unsigned char *val, size_t len, const char *safe,
                       bool upper, bool plus) {
        char *out = malloc(3 * len + 1);
        if (!out) {
                nv->oom = true;
                return;
        }
        const char *hex = upper ? "0123456789ABCDEF" : "0123456789abcdef";
        size_t k = 0;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = val[i];
                bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                                  c == '-' || c == '.' || c == '_' || c == '~' || (c && strchr(safe, c));
                if (unreserved) {
                        out[k++] = (char) c;
                } else if (plus && c == ' ') {
                        out[k++] = '+';
                } else {
                        out[k++] = '%';
                        out[k++] = hex[c >> 4];
                        out[k++] = hex[c & 15];
                }
        }
        add(nv, name, out, k);
        sodium_memzero(out, 3 * len + 1);
        free(out);
}

static void add_hex(needle_vec *nv, const char *name, const unsigned char *val, size_t len, bool upper) {
        char *out = malloc(2 * len + 1);
        if (!out) {
                nv->oom = true;
                return;
        }
        sodium_bin2hex(out, 2 * len + 1, val, len);
        for (size_t i = 0; upper && i < 2 * len; i++)
                if (out[i] >= 'a' && out[i] <= 'f')
                        out[i] = (char) (out[i] - 'a' + 'A');
        add(nv, name, out, 2 * len);
        sodium_memzero(out, 2 * len + 1);
        free(out);
}

static void add_forms(needle_vec *nv, const sv_secret *s) {
        const unsigned char *val = (const unsigned char *) s->value;
        size_t len = s->len;
        add(nv, s->name, s->value, len);
        /* Each line of a multi-line value (a PEM key printed line by line, say). */
        for (size_t i = 0, start = 0; i <= len; i++) {
                if (i == len || s->value[i] == '\n') {
                        size_t e = i;
                        if (e > start && s->value[e - 1] == '\r')
                                e--;
                        if (start > 0 || i < len)
                                if (e - start >= 8)
                                        add(nv, s->name, s->value + start, e - start);
                        start = i + 1;
                }
        }
        add_base64(nv, s->name, val, len, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
        add_base64(nv, s->name, val, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        add_urlenc(nv, s->name, val, len, "", true, false);
        add_urlenc(nv, s->name, val, len, "", false, false);
        add_urlenc(nv, s->name, val, len, "/", true, false);
        add_urlenc(nv, s->name, val, len, "!'()*", true, false);
        add_urlenc(nv, s->name, val, len, "", true, true);
        add_hex(nv, s->name, val, len, false);
        add_hex(nv, s->name, val, len, true);
}

static int by_length_desc(const void *a, const void *b) {
        const needle *x = a, *y = b;
        return x->len < y->len ? 1 : x->len > y->len ? -1 : 0;
}

int sv_redactor_set(sv_redactor *r, const sv_secret *v, size_t n, ns_error *err) {
        needle_vec nv = { 0 };
        for (size_t i = 0; i < n; i++)
                add_forms(&nv, &v[i]);
        if (nv.oom) {
                needles_free(nv.v, nv.n);
                return ns_err(err, ENOMEM, "out of memory");
        }
        if (nv.n)
                qsort(nv.v, nv.n, sizeof *nv.v, by_length_desc);
        pthread_rwlock_wrlock(&r->lock);
        needles_free(r->v, r->n);
        r->v = nv.v;
        r->n = nv.n;
        memset(r->first, 0, sizeof r->first);
        for (size_t i = 0; i < nv.n; i++)
                r->first[(unsigned char) nv.v[i].bytes[0]] = true;
        pthread_rwlock_unlock(&r->lock);
        return 0;
}

size_t sv_redactor_count(sv_redactor *r) {
        pthread_rwlock_rdlock(&r->lock);
        size_t n = r->n;
        pthread_rwlock_unlock(&r->lock);
        return n;
}

/* ---- matching ------------------------------------------------------------------------------ */

/* The longest needle at in[i..len), or NULL.  Caller holds the lock. */
static const needle *match_at(const sv_redactor *r, const char *in, size_t i, size_t len) {
        if (!r->first[(unsigned char) in[i]])
                return NULL;
        for (size_t k = 0; k < r->n; k++) {
                const needle *nd = &r->v[k];
                if (nd->len <= len - i && nd->bytes[0] == in[i] && !memcmp(in + i, nd->bytes, nd->len))
                        return nd;
        }
        return NULL;
}

static int redact_locked(const sv_redactor *r, const char *in, size_t len, char **out, size_t *out_len) {
        *out = NULL;
        if (!r->n)
                return 0;
        char *buf = NULL;
        size_t k = 0, cap = 0, copied = 0;
        for (size_t i = 0; i < len;) {
                const needle *nd = match_at(r, in, i, len);
                if (!nd) {
                        i++;
                        continue;
                }
                size_t need = k + (i - copied) + nd->marker_len + (len - i) + 1;
                if (need > cap) {
                        size_t nc = cap ? cap : len + 64;
                        while (nc < need)
                                nc *= 2;
                        char *nb = realloc(buf, nc);
                        if (!nb) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = nb;
                        cap = nc;
                }
                memcpy(buf + k, in + copied, i - copied);
                k += i - copied;
                memcpy(buf + k, nd->marker, nd->marker_len);
                k += nd->marker_len;
                i += nd->len;
                copied = i;
        }
        if (!buf)
                return 0;
        memcpy(buf + k, in + copied, len - copied);
        k += len - copied;
        buf[k] = '\0';
        *out = buf;
        if (out_len)
                *out_len = k;
        return 1;
}

int sv_redact_text(sv_redactor *r, const char *in, size_t len, char **out, size_t *out_len) {
        pthread_rwlock_rdlock(&r->lock);
        int rc = redact_locked(r, in, len, out, out_len);
        pthread_rwlock_unlock(&r->lock);
        return rc;
}

/* Redact every string of the tree; returns how many changed, or -ENOMEM. */
static int redact_tree(const sv_redactor *r, cJSON *j) {
        int changed = 0;
        for (cJSON *it = j; it; it = it->next) {
                char *o;
                int rc;
                if (it->string && !(it->type & cJSON_StringIsConst)) {
                        if ((rc = redact_locked(r, it->string, strlen(it->string), &o, NULL)) < 0)
                                return rc;
                        if (rc) {
                                free(it->string);
                                it->string = o;
                                changed++;
                        }
                }
                if (cJSON_IsString(it) && it->valuestring && !(it->type & cJSON_IsReference)) {
                        if ((rc = redact_locked(r, it->valuestring, strlen(it->valuestring), &o, NULL)) < 0)
                                return rc;
                        if (rc) {
                                free(it->valuestring);
                                it->valuestring = o;
                                changed++;
                        }
                }
                if (it->child) {
                        if ((rc = redact_tree(r, it->child)) < 0)
                                return rc;
                        changed += rc;
                }
        }
        return changed;
}

int sv_redact_json(sv_redactor *r, const char *json, char **out) {
        *out = NULL;
        pthread_rwlock_rdlock(&r->lock);
        int rc = 0;
        if (!r->n)
                goto out;
        /* Fast path: no needle in the raw text and no escape that could hide one. */
        size_t len = strlen(json);
        bool escapes = memchr(json, '\\', len) != NULL;
        if (!escapes) {
                bool hit = false;
                for (size_t i = 0; i < len && !hit; i++)
                        hit = match_at(r, json, i, len) != NULL;
                if (!hit)
                        goto out;
        }
        cJSON *j = cJSON_ParseWithLength(json, len);
        if (!j) {
                rc = -EINVAL;
                goto out;
        }
        rc = redact_tree(r, j);
        if (rc > 0) {
                if (!(*out = cJSON_PrintUnformatted(j)))
                        rc = -ENOMEM;
                else
                        rc = 1;
        }
        cJSON_Delete(j);
out:
        pthread_rwlock_unlock(&r->lock);
        return rc;
}

void sv_redact_inplace(sv_redactor *r, char *buf, size_t cap) {
        char *o = NULL;
        size_t ol = 0;
        if (!cap || sv_redact_text(r, buf, strlen(buf), &o, &ol) <= 0)
                return;
        if (ol >= cap) {
                /* Cut before a marker that would not fit whole. */
                ol = cap - 1;
                char *open = memrchr(o, '[', ol);
                if (open && !memchr(open, ']', (size_t) (o + ol - open)))
                        ol = (size_t) (open - o);
        }
        memcpy(buf, o, ol);
        buf[ol] = '\0';
        free(o);
}
