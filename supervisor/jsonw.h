/* nightshift supervisor — a small JSON writer for the hot API paths (lists of sessions, events):
 * appends to one growing buffer instead of building a cJSON tree node by node.  Strings are
 * escaped as RFC 8259 requires (quote, backslash, control characters); numbers are integers.
 * Commas are placed by the writer: jw_key/jw_* inside objects, jw_* alone inside arrays. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JW_DEPTH_MAX 16

typedef struct jw {
        char *buf;
        size_t len, cap;
        bool failed;                  /* out of memory or too deep: the result is unusable */
        int depth;
        bool need_comma[JW_DEPTH_MAX];
        bool after_key;
} jw;

void jw_obj_begin(jw *w);
void jw_obj_end(jw *w);
void jw_arr_begin(jw *w);
void jw_arr_end(jw *w);
/* The key of the next member (inside an object). */
void jw_key(jw *w, const char *key);
void jw_str(jw *w, const char *s);   /* NULL writes null */
void jw_int(jw *w, int64_t v);
void jw_bool(jw *w, bool v);
void jw_null(jw *w);
/* Already-serialised JSON (stored event data), written as one value. */
void jw_raw(jw *w, const char *json, size_t len);
/* key + value in one call. */
void jw_kstr(jw *w, const char *key, const char *s);
void jw_kint(jw *w, const char *key, int64_t v);
/* An integer, or null when 0 (times that have not happened). */
void jw_ktime(jw *w, const char *key, int64_t ms);
void jw_kbool(jw *w, const char *key, bool v);

/* Take the result (NUL-terminated, *len without the NUL); NULL when the writer failed.  The
 * writer is empty afterwards. */
char *jw_take(jw *w, size_t *len);
void jw_clear(jw *w);
