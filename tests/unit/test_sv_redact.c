/* Unit tests of supervisor/redact.c: every form of a secret (plain, lines of a multi-line value,
 * base64 standard and URL-safe at each alignment, URL-encoded variants, hex) is replaced by
 * [secret:NAME], longest first; JSON strings are redacted after unescaping; clean text is left
 * alone; short needles are not used; log lines are redacted in place without cutting a marker. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor/redact.h"
#include "tap.h"

static sv_redactor *rd;

static char *red(const char *in) {
        char *out = NULL;
        int r = sv_redact_text(rd, in, strlen(in), &out, NULL);
        return r > 0 ? out : r == 0 ? strdup(in) : NULL;
}

static void expect(const char *in, const char *want, const char *what) {
        char *got = red(in);
        ok(got && !strcmp(got, want), "%s: '%s' → '%s'", what, in, got ? got : "(null)");
        free(got);
}

static void b64(const char *val, size_t pre, int variant, char *out, size_t cap) {
        unsigned char buf[256] = "xyz";
        size_t n = strlen(val);
        memcpy(buf + pre, val, n);
        sodium_bin2base64(out, cap, buf, pre + n, variant);
}

int main(void) {
        if (sodium_init() < 0)
                return 1;
        ns_error e;
        ok(sv_redactor_new(&rd, &e) == 0, "a redactor");
        expect("nothing to hide", "nothing to hide", "an empty redactor changes nothing");

        sv_secret s[4] = { { .name = "TOKEN" }, { .name = "KEY" }, { .name = "TINY" }, { .name = "A_VERY_LONG_NAME_OF_A_SECRET" } };
        s[0].value = strdup("ghp_Sup3r/Secret+Tok=en");
        s[0].len = strlen(s[0].value);
        s[1].value = strdup("-----BEGIN KEY-----\nAAAAbbbbCCCCdddd\nEEEEffffGGGGhhhh\n-----END KEY-----");
        s[1].len = strlen(s[1].value);
        s[2].value = strdup("abc"); /* below SV_REDACT_MIN_NEEDLE: never used */
        s[2].len = 3;
        s[3].value = strdup("wxyz1234");
        s[3].len = 8;
        ok(sv_redactor_set(rd, s, 4, &e) == 0 && sv_redactor_count(rd) > 10, "set: %zu needles", sv_redactor_count(rd));

        expect("token ghp_Sup3r/Secret+Tok=en end", "token [secret:TOKEN] end", "plain");
        expect("ghp_Sup3r/Secret+Tok=enghp_Sup3r/Secret+Tok=en", "[secret:TOKEN][secret:TOKEN]", "twice, adjacent");
        expect("ghp_Sup3r/Secret+Tok=e", "ghp_Sup3r/Secret+Tok=e", "a prefix alone is not the secret");
        expect("abc abcd", "abc abcd", "a value below the minimum is not redacted");
        expect("line AAAAbbbbCCCCdddd here", "line [secret:KEY] here", "one line of a multi-line value");

        char enc[256], want[300];
        static const int variants[] = { sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_URLSAFE };
        for (size_t v = 0; v < 2; v++)
                for (size_t pre = 0; pre < 3; pre++) {
                        b64(s[0].value, pre, variants[v], enc, sizeof enc);
                        char *got = red(enc);
                        ok(got && strstr(got, "[secret:TOKEN]") && !strstr(got, enc + (pre ? pre + 1 : 0)),
                           "base64 %s, %zu byte(s) before: %s → %s", v ? "url-safe" : "standard", pre, enc, got);
                        free(got);
                }
        expect("ghp_Sup3r%2FSecret%2BTok%3Den", "[secret:TOKEN]", "URL-encoded (upper hex)");
        expect("ghp_Sup3r%2fSecret%2bTok%3den", "[secret:TOKEN]", "URL-encoded (lower hex)");
        expect("ghp_Sup3r/Secret%2BTok%3Den", "[secret:TOKEN]", "URL-encoded with '/' kept");
        char hex[128];
        sodium_bin2hex(hex, sizeof hex, (const unsigned char *) s[0].value, s[0].len);
        snprintf(want, sizeof want, "h=%s!", hex);
        expect(want, "h=[secret:TOKEN]!", "hex, lower case");
        for (char *p = want; *p; p++)
                if (*p >= 'a' && *p <= 'f')
                        *p = (char) (*p - 32);
        expect(want, "h=[secret:TOKEN]!", "hex, upper case");

        /* JSON: values and keys, after unescaping; the output is JSON again. */
        char *out = NULL;
        int r = sv_redact_json(rd, "{\"text\":\"a ghp_Sup3r\\/Secret\\u002bTok=en b\",\"n\":1}", &out);
        ok(r == 1 && out && !strcmp(out, "{\"text\":\"a [secret:TOKEN] b\",\"n\":1}"), "JSON with escapes: %s",
           out ? out : "(null)");
        free(out);
        out = NULL;
        r = sv_redact_json(rd, "{\"ghp_Sup3r/Secret+Tok=en\":[\"x\",{\"y\":\"AAAAbbbbCCCCdddd\"}]}", &out);
        ok(r == 1 && out && !strcmp(out, "{\"[secret:TOKEN]\":[\"x\",{\"y\":\"[secret:KEY]\"}]}"), "JSON keys and nesting: %s",
           out ? out : "(null)");
        free(out);
        out = NULL;
        ok(sv_redact_json(rd, "{\"text\":\"clean\"}", &out) == 0 && !out, "clean JSON is left alone");
        ok(sv_redact_json(rd, "{\"text\":\"broken\\", &out) == -EINVAL, "broken JSON with an escape: -EINVAL");

        char line[40];
        snprintf(line, sizeof line, "x ghp_Sup3r/Secret+Tok=en");
        sv_redact_inplace(rd, line, sizeof line);
        ok(!strcmp(line, "x [secret:TOKEN]"), "a log line in place: %s", line);
        char small[12];
        snprintf(small, sizeof small, "ab ghp_Sup3");
        sv_redact_inplace(rd, small, sizeof small);
        ok(!strcmp(small, "ab ghp_Sup3"), "a line without a whole value is unchanged: %s", small);
        char tight[20];
        snprintf(tight, sizeof tight, "0123456 wxyz1234");
        sv_redact_inplace(rd, tight, sizeof tight);
        ok(!strcmp(tight, "0123456 "), "a marker that does not fit is dropped whole: '%s'", tight);

        ok(sv_redactor_set(rd, NULL, 0, &e) == 0 && sv_redactor_count(rd) == 0, "reset to no secrets");
        expect("ghp_Sup3r/Secret+Tok=en", "ghp_Sup3r/Secret+Tok=en", "then nothing is redacted");
        for (int i = 0; i < 4; i++)
                free(s[i].value);
        sv_redactor_free(rd);
        return tap_done();
}
