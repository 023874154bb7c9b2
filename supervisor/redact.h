/* nightshift supervisor — secret redaction.
 *
 * A redactor holds, for every vault secret, the forms in which an agent is likely to print it:
 * the value itself (and each line of a multi-line value), base64 (standard and URL-safe alphabet,
 * each at the three alignments a value can take inside a longer encoded text: only the
 * characters wholly determined by the value are kept), URL-encoded (RFC 3986 with upper- and
 * lower-case hex, with '/' or JavaScript's !'()* left alone, and form encoding's '+' for a space)
 * and hex (lower and upper case).  Every occurrence of any form is replaced by `[secret:NAME]`,
 * longest form first.  Needles shorter than SV_REDACT_MIN_NEEDLE bytes are not used (they would
 * blank out ordinary text); the vault refuses values that short.
 *
 * Limits (documented, not hidden): a value split across two separately stored texts (two output
 * events) is only caught if each part alone is a needle; callers redact the largest assembled
 * text they have (an adapter's whole event, not its input chunks).  Other encodings (gzip,
 * rot13, a value printed reversed or character by character) are not recognised.
 *
 * Thread-safe: a read-write lock guards the needle set, which the loop thread replaces whenever
 * the vault changes while workers and the logger redact. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "vault.h"

#define SV_REDACT_MIN_NEEDLE 4

typedef struct sv_redactor sv_redactor;

int sv_redactor_new(sv_redactor **out, ns_error *err);
void sv_redactor_free(sv_redactor *r);

/* Replace the needle set with the forms of secrets v[0..n). */
int sv_redactor_set(sv_redactor *r, const sv_secret *v, size_t n, ns_error *err);

/* How many needles are in use (0: redaction is a no-op). */
size_t sv_redactor_count(sv_redactor *r);

/* Redact in[0..len).  Returns 1 with *out (malloc'd, NUL-terminated, *out_len bytes) when
 * something was replaced, 0 with *out = NULL when the text is clean, -ENOMEM. */
int sv_redact_text(sv_redactor *r, const char *in, size_t len, char **out, size_t *out_len);

/* Redact a JSON text: every string (values and keys, after unescaping) is redacted.  Returns 1
 * with *out (malloc'd) when something was replaced, 0 when clean, -EINVAL when `json` does not
 * parse (then the caller must not store it as is), -ENOMEM. */
int sv_redact_json(sv_redactor *r, const char *json, char **out);

/* Redact a NUL-terminated string in place within a buffer of `cap` bytes (the result is cut to
 * fit; a marker is never cut in half).  For log lines. */
void sv_redact_inplace(sv_redactor *r, char *buf, size_t cap);
