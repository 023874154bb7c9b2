/* nightshift supervisor — the small JSON writer (see jsonw.h). */
#include "jsonw.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool reserve(jw *w, size_t more) {
        if (w->failed)
                return false;
        if (w->len + more + 1 <= w->cap)
                return true;
        size_t nc = w->cap ? w->cap : 1024;
        while (nc < w->len + more + 1)
                nc *= 2;
        char *nb = realloc(w->buf, nc);
        if (!nb) {
                w->failed = true;
                return false;
        }
        w->buf = nb;
        w->cap = nc;
        return true;
}

static void put(jw *w, const char *s, size_t n) {
        if (!reserve(w, n))
                return;
        memcpy(w->buf + w->len, s, n);
        w->len += n;
        w->buf[w->len] = '\0';
}

/* Before a value: the comma that separates it from the previous one (not after a key). */
static void value_start(jw *w) {
        if (w->after_key) {
                w->after_key = false;
                return;
        }
        if (w->depth > 0) {
                if (w->need_comma[w->depth - 1])
                        put(w, ",", 1);
                w->need_comma[w->depth - 1] = true;
        }
}

static void open_(jw *w, char c) {
        value_start(w);
        if (w->depth >= JW_DEPTH_MAX) {
                w->failed = true;
                return;
        }
        put(w, &c, 1);
        w->need_comma[w->depth++] = false;
}

static void close_(jw *w, char c) {
        if (w->depth > 0)
                w->depth--;
        put(w, &c, 1);
}

void jw_obj_begin(jw *w) { open_(w, '{'); }
void jw_obj_end(jw *w) { close_(w, '}'); }
void jw_arr_begin(jw *w) { open_(w, '['); }
void jw_arr_end(jw *w) { close_(w, ']'); }

static void put_escaped(jw *w, const char *s) {
        put(w, "\"", 1);
        const char *run = s;
        for (const char *p = s;; p++) {
                unsigned char c = (unsigned char) *p;
                if (c && c >= 0x20 && c != '"' && c != '\\')
                        continue;
                put(w, run, (size_t) (p - run));
                if (!c)
                        break;
                char esc[8];
                switch (c) {
                case '"': put(w, "\\\"", 2); break;
                case '\\': put(w, "\\\\", 2); break;
                case '\n': put(w, "\\n", 2); break;
                case '\r': put(w, "\\r", 2); break;
                case '\t': put(w, "\\t", 2); break;
                default:
                        snprintf(esc, sizeof esc, "\\u%04x", c);
                        put(w, esc, 6);
                }
                run = p + 1;
        }
        put(w, "\"", 1);
}

void jw_key(jw *w, const char *key) {
        value_start(w);
        put_escaped(w, key);
        put(w, ":", 1);
        w->after_key = true;
}

void jw_str(jw *w, const char *s) {
        if (!s)
                return jw_null(w);
        value_start(w);
        put_escaped(w, s);
}

void jw_int(jw *w, int64_t v) {
        char b[24];
        int n = snprintf(b, sizeof b, "%" PRId64, v);
        value_start(w);
        put(w, b, (size_t) n);
}

void jw_bool(jw *w, bool v) {
        value_start(w);
        put(w, v ? "true" : "false", v ? 4 : 5);
}

void jw_null(jw *w) {
        value_start(w);
        put(w, "null", 4);
}

void jw_raw(jw *w, const char *json, size_t len) {
        value_start(w);
        put(w, json, len);
}

void jw_kstr(jw *w, const char *key, const char *s) {
        jw_key(w, key);
        jw_str(w, s);
}

void jw_kint(jw *w, const char *key, int64_t v) {
        jw_key(w, key);
        jw_int(w, v);
}

void jw_ktime(jw *w, const char *key, int64_t ms) {
        jw_key(w, key);
        if (ms)
                jw_int(w, ms);
        else
                jw_null(w);
}

void jw_kbool(jw *w, const char *key, bool v) {
        jw_key(w, key);
        jw_bool(w, v);
}

char *jw_take(jw *w, size_t *len) {
        char *out = w->failed ? NULL : w->buf;
        if (!out)
                free(w->buf);
        else if (!w->buf && (out = calloc(1, 1)) == NULL)
                return NULL;
        if (len)
                *len = out ? w->len : 0;
        *w = (jw){ 0 };
        return out;
}

void jw_clear(jw *w) {
        free(w->buf);
        *w = (jw){ 0 };
}
