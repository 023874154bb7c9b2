/* Notification endpoint URLs (notify.c: sv_notify_url_ok, libcurl's own URL parser): http and
 * https with a host only; no other scheme, no user info, no blanks or control characters, no
 * relative or oversized URL. */
#include <stdlib.h>
#include <string.h>

#include "supervisor/notify.h"
#include "tap.h"

int main(void) {
        static const char *const good[] = {
                "http://127.0.0.1:8080/hook", "https://hooks.slack.com/services/T000/B000/XXXX",
                "https://example.com", "http://[::1]:9/x?a=b#frag", "HTTPS://EXAMPLE.COM/x",
        };
        static const char *const bad[] = {
                "ftp://127.0.0.1/x", "file:///etc/passwd", "javascript:alert(1)", "gopher://x/", "http://",
                "https:///path", "//example.com/x", "/relative", "example.com/x", "http://user:pw@example.com/",
                "http://user@example.com/", "http://exa mple.com/", "http://example.com/a\tb", "http://example.com/\n",
                "http://example.com/\x7f", "", "http:/x", "dict://127.0.0.1:11211/",
        };
        for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
                ns_error e = { 0 };
                ok(sv_notify_url_ok(good[i], &e), "accepted: %s", good[i]);
        }
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
                ns_error e = { 0 };
                bool r = sv_notify_url_ok(bad[i], &e);
                ok(!r && e.code == EINVAL && e.msg[0], "refused with a message: '%s' (%s)", bad[i], e.msg);
        }
        char *big = malloc(SV_NOTIFY_URL_MAX + 2);
        memcpy(big, "http://example.com/", 19);
        memset(big + 19, 'a', SV_NOTIFY_URL_MAX + 1 - 19);
        big[SV_NOTIFY_URL_MAX + 1] = '\0';
        ns_error e = { 0 };
        ok(!sv_notify_url_ok(big, &e), "refused: a URL of %d bytes", SV_NOTIFY_URL_MAX + 1);
        big[SV_NOTIFY_URL_MAX] = '\0';
        ok(sv_notify_url_ok(big, &e), "accepted: a URL of %d bytes", SV_NOTIFY_URL_MAX);
        free(big);
        return tap_done();
}
