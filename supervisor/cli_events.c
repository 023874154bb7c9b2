/* nightshift — a session's events on the terminal: `nightshift logs` and `nightshift run --follow`
 * (see cli.h). */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/cleanup.h"

#define EVENTS_PAGE 1000  /* the API's largest page */
#define POLL_MS 250
#define TEXT_MAX SIZE_MAX /* messages, questions and errors are printed whole */
#define DETAIL_MAX 300    /* a tool's input or output, an unknown event's data: cut here */

typedef struct event_printer {
        bool json;      /* a JSON array of the API's event objects */
        size_t printed; /* events printed so far */
        bool midline;   /* stdout's last byte was not a newline */
} event_printer;

static const char *str_of(const cJSON *o, const char *key) {
        return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static double num_of(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* `s` up to `max` bytes (cut at a character, "…" then), control characters but newlines and
 * tabs shown as '?': what the agent wrote must not drive the terminal. */
static void put_clean(const char *s, size_t max) {
        size_t len = !s ? 0 : max < SIZE_MAX ? strnlen(s, max + 1) : strlen(s), end = len > max ? max : len;
        while (end < len && end > 0 && ((unsigned char) s[end] & 0xc0) == 0x80)
                end--;
        for (size_t i = 0; i < end; i++) {
                unsigned char ch = (unsigned char) s[i];
                putchar((ch < ' ' && ch != '\n' && ch != '\t') || ch == 0x7f ? '?' : ch);
        }
        if (end < len)
                fputs("…", stdout);
}

static void put_json(const cJSON *v, size_t max) {
        _cleanup_free_ char *s = v ? cJSON_PrintUnformatted(v) : NULL;
        put_clean(s ? s : "{}", max);
}

static void print_readable(event_printer *p, const char *type, const cJSON *d) {
        if (!strcmp(type, "command_output")) {
                const char *text = str_of(d, "text"), *stream = str_of(d, "stream");
                if (!text || !*text)
                        return;
                if (stream && !strcmp(stream, "stderr")) {
                        fputs(text, stderr);
                        return;
                }
                fputs(text, stdout);
                p->midline = text[strlen(text) - 1] != '\n';
                return;
        }
        if (p->midline)
                putchar('\n');
        p->midline = false;
        if (!strcmp(type, "status")) {
                const char *reason = str_of(d, "reason");
                printf("[status] %s -> %s", str_of(d, "from") ? str_of(d, "from") : "-",
                       str_of(d, "to") ? str_of(d, "to") : "?");
                if (reason) {
                        fputs(" (", stdout);
                        put_clean(reason, DETAIL_MAX);
                        putchar(')');
                }
        } else if (!strcmp(type, "message")) {
                printf("[%s] ", str_of(d, "role") && !strcmp(str_of(d, "role"), "user") ? "user" : "assistant");
                put_clean(str_of(d, "text"), TEXT_MAX);
        } else if (!strcmp(type, "tool_call")) {
                fputs("[tool] ", stdout);
                put_clean(str_of(d, "name") ? str_of(d, "name") : "?", 64);
                putchar(' ');
                put_json(cJSON_GetObjectItemCaseSensitive(d, "input"), DETAIL_MAX);
        } else if (!strcmp(type, "tool_result")) {
                printf("[tool %s] ", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "is_error")) ? "error" : "result");
                put_clean(str_of(d, "output"), DETAIL_MAX);
        } else if (!strcmp(type, "commit")) {
                printf("[commit] %.12s on ", str_of(d, "sha") ? str_of(d, "sha") : "?");
                put_clean(str_of(d, "branch"), 128);
                printf(": %.0f file(s), +%.0f -%.0f", num_of(d, "files_changed"), num_of(d, "additions"),
                       num_of(d, "deletions"));
                if (str_of(d, "summary")) {
                        fputs(": ", stdout);
                        put_clean(str_of(d, "summary"), DETAIL_MAX);
                }
        } else if (!strcmp(type, "error") || !strcmp(type, "question")) {
                printf("[%s] ", type);
                put_clean(str_of(d, !strcmp(type, "error") ? "message" : "text"), TEXT_MAX);
        } else if (!strcmp(type, "usage")) {
                printf("[usage] %.0f input, %.0f output tokens", num_of(d, "input_tokens"), num_of(d, "output_tokens"));
                if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(d, "cost_usd")))
                        printf(", $%.4f", num_of(d, "cost_usd"));
        } else {
                putchar('[');
                put_clean(type, 64);
                fputs("] ", stdout);
                put_json(d, DETAIL_MAX);
        }
        putchar('\n');
}

static void print_event(event_printer *p, const cJSON *ev) {
        if (p->json) {
                _cleanup_free_ char *s = cJSON_PrintUnformatted(ev);
                printf("%s\n%s", p->printed ? "," : "[", s ? s : "null");
        } else {
                print_readable(p, str_of(ev, "type") ? str_of(ev, "type") : "?",
                               cJSON_GetObjectItemCaseSensitive(ev, "data"));
        }
        p->printed++;
        fflush(stdout);
}

static void printer_finish(event_printer *p) {
        if (p->json)
                fputs(p->printed ? "\n]\n" : "[]\n", stdout);
        else if (p->midline)
                putchar('\n');
        fflush(stdout);
}

/* Whether `ev` ends what is followed: -1 no, 0 yes and it went well, 1 yes and it did not. */
static int follow_end(const cJSON *ev, cli_follow follow) {
        const char *type = str_of(ev, "type");
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(ev, "data");
        const char *to = str_of(d, "to"), *reason = str_of(d, "reason");
        if (!type || strcmp(type, "status") || !to || follow == CLI_FOLLOW_NONE)
                return -1;
        bool over = !strcmp(to, "completed") || !strcmp(to, "failed") || !strcmp(to, "stopped");
        if (follow == CLI_FOLLOW_SESSION)
                return over || !strcmp(to, "archived") ? 0 : -1;
        if (!strcmp(to, "completed") || !strcmp(to, "waiting") || !strcmp(to, "idle"))
                return reason && !strcmp(reason, "turn failed") ? 1 : 0;
        return over ? 1 : -1;
}

static int print_pages(client_http *c, event_printer *p, const char *sid, long long after, cli_follow follow,
                       bool *turn_failed, ns_error *err) {
        _cleanup_free_ char *esid = client_http_escape(c, sid);
        if (!esid)
                return ns_err(err, ENOMEM, "out of memory");
        int end = -1;
        for (;;) {
                char path[256];
                snprintf(path, sizeof path, "/api/v1/sessions/%.64s/events?after=%lld&limit=%d", esid, after, EVENTS_PAGE);
                _cleanup_(client_reply_clear) client_reply reply = { 0 };
                int r = client_http_request(c, "GET", path, NULL, &reply, err);
                if (r < 0)
                        return r;
                const cJSON *events = cJSON_GetObjectItemCaseSensitive(reply.json, "events"), *ev;
                if (!cJSON_IsArray(events))
                        return ns_err(err, EBADMSG, "the server's answer holds no events");
                int n = 0;
                cJSON_ArrayForEach(ev, events) {
                        long long seq = (long long) num_of(ev, "seq");
                        if (seq <= after)
                                return ns_err(err, EBADMSG, "the server sent event %lld after %lld", seq, after);
                        n++;
                        after = seq;
                        print_event(p, ev);
                        int e = follow_end(ev, follow);
                        if (e >= 0)
                                end = e;
                }
                bool caught_up = n < EVENTS_PAGE;
                /* A turn ends with its page (as `run --follow` always did); a session once drained. */
                if ((follow == CLI_FOLLOW_NONE && caught_up) || (end >= 0 && (follow == CLI_FOLLOW_TURN || caught_up))) {
                        if (turn_failed)
                                *turn_failed = end == 1;
                        return 0;
                }
                if (n == 0 && (r = client_wait_ms(POLL_MS, err)) < 0)
                        return r;
        }
}

int cli_events_print(client_http *c, const char *sid, long long after, cli_follow follow, bool json, bool *turn_failed,
                     ns_error *err) {
        event_printer p = { .json = json };
        sigset_t interrupt, saved;
        sigemptyset(&interrupt);
        sigaddset(&interrupt, SIGINT);
        /* Following, SIGINT is taken where it cannot cut an event in half: between requests,
         * or by aborting one (client_http_request).  Unless it is ignored (a background job of a
         * script): then it stays ignored. */
        struct sigaction now;
        bool take_sigint = follow != CLI_FOLLOW_NONE && sigaction(SIGINT, NULL, &now) == 0 && now.sa_handler != SIG_IGN;
        if (take_sigint)
                sigprocmask(SIG_BLOCK, &interrupt, &saved);
        int r = print_pages(c, &p, sid, after, follow, turn_failed, err);
        printer_finish(&p);
        if (take_sigint) {
                /* A SIGINT still pending is ours now: taken, not delivered when unblocked. */
                if (sigtimedwait(&interrupt, NULL, &(struct timespec){ 0 }) == SIGINT && r >= 0)
                        r = ns_err(err, CLIENT_E_INTERRUPTED, "interrupted");
                sigprocmask(SIG_SETMASK, &saved, NULL);
        }
        return r;
}
