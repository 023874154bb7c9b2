/* Unit tests of the agent adapters (supervisor/agent*.c): the argv/env each builds for a turn, and
 * the events each parser makes of real CLI output captured against tests/helpers/model_server.py
 * (tests/unit/fixtures/agents/, trimmed), fed whole, byte by byte and split at every byte boundary;
 * then hostile output: a 5 MiB line with no newline, invalid JSON, NUL bytes, deep nesting, invalid
 * UTF-8, random bytes.  TAP output. */
#include <cjson/cJSON.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "supervisor/agent.h"
#include "tap.h"


/* ---- a recording emitter ------------------------------------------------------------------------ */

#define MAX_EVENTS 256

typedef struct rec {
        size_t n, dropped;
        char *type[MAX_EVENTS];
        cJSON *data[MAX_EVENTS];
        char ref[256];
        int refs;
        int bad_json; /* events whose data was not a JSON object */
        int stop_after; /* > 0: the emitter returns 7 at that event */
} rec;

static int rec_event(void *ctx, const char *type, const char *json) {
        rec *r = ctx;
        cJSON *j = cJSON_Parse(json);
        if (!cJSON_IsObject(j))
                r->bad_json++;
        if (r->n == MAX_EVENTS) {
                r->dropped++;
                cJSON_Delete(j);
        } else {
                r->type[r->n] = strdup(type);
                r->data[r->n++] = j;
        }
        if (r->stop_after > 0 && (int) (r->n + r->dropped) == r->stop_after)
                return 7;
        return 0;
}

static void rec_ref(void *ctx, const char *ref) {
        rec *r = ctx;
        snprintf(r->ref, sizeof r->ref, "%s", ref);
        r->refs++;
}

static void rec_clear(rec *r) {
        for (size_t i = 0; i < r->n; i++) {
                free(r->type[i]);
                cJSON_Delete(r->data[i]);
        }
        *r = (rec){ 0 };
}

/* "type:json|type:json|..." of everything recorded, for comparing runs. */
static char *rec_dump(const rec *r) {
        size_t cap = 1, len = 0;
        char *out = malloc(cap);
        out[0] = 0;
        for (size_t i = 0; i < r->n; i++) {
                char *j = cJSON_PrintUnformatted(r->data[i]);
                size_t add = strlen(r->type[i]) + strlen(j ? j : "null") + 3;
                out = realloc(out, cap += add);
                len += (size_t) sprintf(out + len, "%s:%s|", r->type[i], j ? j : "null");
                free(j);
        }
        return out;
}

static int count_type(const rec *r, const char *type) {
        int n = 0;
        for (size_t i = 0; i < r->n; i++)
                n += strcmp(r->type[i], type) == 0;
        return n;
}

/* The k-th (0-based) event of `type`, or NULL. */
static const cJSON *nth(const rec *r, const char *type, int k) {
        for (size_t i = 0; i < r->n; i++)
                if (strcmp(r->type[i], type) == 0 && k-- == 0)
                        return r->data[i];
        return NULL;
}

static const char *str(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        return cJSON_IsString(v) ? v->valuestring : "";
}

static double num(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static int has_key(const cJSON *o, const char *key) {
        return cJSON_GetObjectItemCaseSensitive(o, key) != NULL;
}

static int contains(const char *hay, const char *needle) {
        return hay && strstr(hay, needle) != NULL;
}

/* ---- fixtures ------------------------------------------------------------------------------------ */

static char *read_fixture(const char *name, size_t *len) {
        char dir[4096], path[4200];
        const char *src = getenv("NS_SRC");
        if (src)
                snprintf(dir, sizeof dir, "%s/tests/unit", src);
        else {
                snprintf(dir, sizeof dir, "%s", __FILE__);
                char *slash = strrchr(dir, '/');
                if (slash)
                        *slash = 0;
                else
                        snprintf(dir, sizeof dir, ".");
        }
        snprintf(path, sizeof path, "%s/fixtures/agents/%s", dir, name);
        FILE *f = fopen(path, "rb");
        if (!f) {
                printf("# cannot open %s\n", path);
                return NULL;
        }
        char *buf = NULL;
        size_t cap = 0, n = 0;
        for (;;) {
                if (n + 4096 > cap)
                        buf = realloc(buf, cap = cap ? cap * 2 : 8192);
                size_t k = fread(buf + n, 1, cap - n, f);
                if (k == 0)
                        break;
                n += k;
        }
        fclose(f);
        *len = n;
        return buf;
}

typedef struct run {
        rec r;
        agent_outcome outcome;
        int rc;
        bool boundary_ok; /* at_boundary matched "everything fed ends with a newline" after each feed */
} run;

/* Feed `buf` to a fresh parser of `name` in pieces cut at the `cuts` offsets (ascending), then
 * finish with (code, sig). */
static void run_parser(const char *name, const char *buf, size_t len, const size_t *cuts, size_t ncuts, int code,
                       int sig, run *out) {
        *out = (run){ .boundary_ok = true };
        const agent_adapter *a = agent_find(name);
        agent_parser *p = NULL;
        ns_error err = { 0 };
        agent_emitter em = { rec_event, rec_ref, &out->r };
        if ((out->rc = agent_parser_new(a, &p, &err)) < 0)
                return;
        size_t pos = 0;
        for (size_t i = 0; i <= ncuts; i++) {
                size_t end = i < ncuts ? cuts[i] : len;
                if ((out->rc = agent_parser_feed(p, buf + pos, end - pos, &em, &err)) != 0)
                        break;
                pos = end;
                bool want = pos == 0 || buf[pos - 1] == '\n';
                if (agent_parser_at_boundary(p) != want)
                        out->boundary_ok = false;
        }
        if (out->rc == 0)
                out->rc = agent_parser_finish(p, code, sig, &em, &out->outcome, &err);
        agent_parser_free(p);
}

static void run_fixture(const char *name, const char *fixture, int code, int sig, run *out) {
        size_t len = 0;
        _cleanup_free_ char *buf = read_fixture(fixture, &len);
        if (!buf) {
                *out = (run){ .rc = -ENOENT };
                return;
        }
        run_parser(name, buf, len, NULL, 0, code, sig, out);
}

/* ---- build_turn ---------------------------------------------------------------------------------- */

static int strv_has(char **v, const char *s) {
        for (; v && *v; v++)
                if (strcmp(*v, s) == 0)
                        return 1;
        return 0;
}

/* Index of s in v, -1 if absent. */
static int strv_idx(char **v, const char *s) {
        for (int i = 0; v && v[i]; i++)
                if (strcmp(v[i], s) == 0)
                        return i;
        return -1;
}

static void test_registry(void) {
        ok(agent_find("command") && agent_find("claude") && agent_find("codex") && agent_find("opencode"),
           "agent_find knows command, claude, codex, opencode");
        ok(!agent_find("nope") && !agent_find(NULL) && !agent_find(""), "agent_find: unknown names are NULL");
        ok(agent_find("command")->cli_relpath == NULL && strcmp(agent_find("claude")->cli_relpath, "bin/claude") == 0 &&
                   strcmp(agent_find("codex")->cli_relpath, "bin/codex") == 0 &&
                   strcmp(agent_find("opencode")->cli_relpath, "bin/opencode") == 0,
           "cli_relpath of each adapter");
        agent_cmd_clear(NULL);
}

static void test_build_turn(void) {
        ns_error err = { 0 };
        agent_cmd c = { 0 };
        agent_turn_spec spec = { .prompt = "create hello.txt", .workspace = "/workspace", .agents_dir = "/opt/agents" };

        int r = agent_find("command")->build_turn(&spec, &c, &err);
        ok(r == 0 && c.argv && strcmp(c.argv[0], "/bin/sh") == 0 && strcmp(c.argv[1], "-c") == 0 &&
                   strcmp(c.argv[2], "create hello.txt") == 0 && !c.argv[3] && !c.stdin_data,
           "command: /bin/sh -c PROMPT, no stdin");
        agent_cmd_clear(&c);
        ok(!c.argv && !c.env && !c.stdin_data, "agent_cmd_clear zeroes");

        spec.resume_ref = "f4a544b1-3de3-4ece-9b56-f7b40ae2e97d";
        spec.model = "claude-sonnet-4-5";
        r = agent_find("claude")->build_turn(&spec, &c, &err);
        ok(r == 0 && strcmp(c.argv[0], "/opt/agents/bin/claude") == 0 && strv_has(c.argv, "-p") &&
                   strv_has(c.argv, "stream-json") && strv_has(c.argv, "--verbose") &&
                   strv_has(c.argv, "--dangerously-skip-permissions"),
           "claude: headless stream-json argv");
        int i = strv_idx(c.argv, "--resume"), m = strv_idx(c.argv, "--model");
        ok(i > 0 && strcmp(c.argv[i + 1], spec.resume_ref) == 0 && m > 0 && strcmp(c.argv[m + 1], spec.model) == 0,
           "claude: --resume REF and --model M");
        ok(!strv_has(c.argv, spec.prompt) && c.stdin_data && c.stdin_len == strlen(spec.prompt) &&
                   memcmp(c.stdin_data, spec.prompt, c.stdin_len) == 0,
           "claude: the prompt goes on stdin, not argv");
        ok(strv_has(c.env, "HOME=/home/agent") && strv_has(c.env, "IS_SANDBOX=1") && strv_has(c.env, "DISABLE_AUTOUPDATER=1") &&
                   strv_has(c.env, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1") && strv_has(c.env, "DISABLE_TELEMETRY=1"),
           "claude: env has HOME, IS_SANDBOX, telemetry and updates off");
        agent_cmd_clear(&c);

        spec.resume_ref = "01a2157e-bd66-7863-958c-d5a612ed84f3";
        spec.model = "gpt-5.5";
        r = agent_find("codex")->build_turn(&spec, &c, &err);
        int n = 0;
        while (c.argv && c.argv[n])
                n++;
        i = strv_idx(c.argv, "resume");
        ok(r == 0 && strcmp(c.argv[0], "/bin/sh") == 0 && strcmp(c.argv[1], "-c") == 0 &&
                   contains(c.argv[2], "$OPENAI_BASE_URL") && strcmp(c.argv[3], "/opt/agents/bin/codex") == 0 &&
                   strv_has(c.argv, "--json") && strv_has(c.argv, "--dangerously-bypass-approvals-and-sandbox") &&
                   strv_has(c.argv, "model_providers.nightshift.wire_api=responses") &&
                   strv_has(c.argv, "check_for_update_on_startup=false") && strv_has(c.argv, "analytics.enabled=false"),
           "codex: sh wrapper for the base URL, exec --json, provider and telemetry overrides");
        ok(i > 0 && strcmp(c.argv[i + 1], spec.resume_ref) == 0 && strcmp(c.argv[n - 1], "-") == 0 &&
                   strcmp(c.stdin_data, spec.prompt) == 0 && strv_has(c.env, "HOME=/home/agent"),
           "codex: resume REF, prompt from stdin ('-'), HOME");
        agent_cmd_clear(&c);

        spec.resume_ref = "ses_dea8102eeffenL5eVCGGbqKXyP";
        spec.model = "claude-sonnet-4-5";
        r = agent_find("opencode")->build_turn(&spec, &c, &err);
        i = strv_idx(c.argv, "--session");
        const char *cfg = NULL;
        for (char **e = c.env; e && *e; e++)
                if (strncmp(*e, "OPENCODE_CONFIG_CONTENT=", 24) == 0)
                        cfg = *e + 24;
        cJSON *j = cfg ? cJSON_Parse(cfg) : NULL;
        ok(r == 0 && strcmp(c.argv[0], "/opt/agents/bin/opencode") == 0 && strv_has(c.argv, "run") &&
                   strv_has(c.argv, "json") && i > 0 && strcmp(c.argv[i + 1], spec.resume_ref) == 0 &&
                   strcmp(c.stdin_data, spec.prompt) == 0,
           "opencode: run --format json --session REF, prompt on stdin");
        ok(j && strcmp(str(j, "model"), "nightshift/claude-sonnet-4-5") == 0 && contains(cfg, "{env:ANTHROPIC_BASE_URL}") &&
                   strv_has(c.env, "XDG_CONFIG_HOME=/opt/agents/opencode-config") &&
                   strv_has(c.env, "OPENCODE_DISABLE_AUTOUPDATE=1") && strv_has(c.env, "OPENCODE_DISABLE_MODELS_FETCH=1"),
           "opencode: config in the environment, base URL from $ANTHROPIC_BASE_URL, plugin dir, updates off");
        cJSON_Delete(j);
        agent_cmd_clear(&c);

        /* What reaches argv is checked. */
        static const char *const names[] = { "claude", "codex", "opencode" };
        for (size_t k = 0; k < 3; k++) {
                const agent_adapter *a = agent_find(names[k]);
                agent_turn_spec bad = spec;
                bad.resume_ref = "--dangerously-evil";
                int r1 = a->build_turn(&bad, &c, &err);
                bad = spec;
                bad.resume_ref = "abc;rm -rf /";
                int r2 = a->build_turn(&bad, &c, &err);
                bad = spec;
                bad.model = "-oops";
                int r3 = a->build_turn(&bad, &c, &err);
                bad = spec;
                bad.prompt = "";
                int r4 = a->build_turn(&bad, &c, &err);
                bad = spec;
                bad.agents_dir = "relative/dir";
                int r5 = a->build_turn(&bad, &c, &err);
                bad = spec;
                bad.agents_dir = NULL;
                int r6 = a->build_turn(&bad, &c, &err);
                ok(r1 == -EINVAL && r2 == -EINVAL && r3 == -EINVAL && r4 == -EINVAL && r5 == -EINVAL && r6 == -EINVAL &&
                           err.code == EINVAL && !c.argv,
                   "%s: bad resume ref, model, prompt, agents_dir refused with EINVAL", names[k]);
        }
        spec.resume_ref = NULL;
        spec.model = NULL;
        r = agent_find("opencode")->build_turn(&spec, &c, &err);
        ok(r == 0 && strv_idx(c.argv, "--session") < 0, "opencode: first turn has no --session");
        agent_cmd_clear(&c);
}

/* ---- fixtures, fed whole ------------------------------------------------------------------------- */

static void test_claude(void) {
        run x;
        run_fixture("claude", "claude_create.jsonl", 0, 0, &x);
        const rec *r = &x.r;
        const cJSON *c0 = nth(r, "tool_call", 0), *c1 = nth(r, "tool_call", 1);
        const cJSON *r0 = nth(r, "tool_result", 0), *r1 = nth(r, "tool_result", 1);
        ok(x.rc == 0 && x.outcome == AGENT_TURN_OK && r->bad_json == 0, "claude create: turn OK, every event a JSON object");
        ok(r->refs == 1 && strcmp(r->ref, "f4a544b1-3de3-4ece-9b56-f7b40ae2e97d") == 0, "claude create: session id reported once");
        ok(c0 && strcmp(str(c0, "name"), "Write") == 0 &&
                   contains(str(cJSON_GetObjectItem(c0, "input"), "file_path"), "hello.txt") &&
                   r0 && strcmp(str(r0, "id"), str(c0, "id")) == 0 && cJSON_IsFalse(cJSON_GetObjectItem(r0, "is_error")),
           "claude create: Write tool_call and its tool_result");
        ok(c1 && strcmp(str(c1, "name"), "Bash") == 0 && strcmp(str(cJSON_GetObjectItem(c1, "input"), "command"), "ls") == 0 &&
                   r1 && strcmp(str(r1, "output"), "hello.txt") == 0,
           "claude create: Bash ls and its output");
        ok(count_type(r, "message") == 1 && strcmp(str(nth(r, "message", 0), "text"), "Done: created hello.txt.") == 0 &&
                   strcmp(str(nth(r, "message", 0), "role"), "assistant") == 0,
           "claude create: the final message");
        const cJSON *u = nth(r, "usage", 0);
        ok(count_type(r, "usage") == 1 && num(u, "input_tokens") == 300 && num(u, "output_tokens") > 0 &&
                   num(u, "cost_usd") > 0,
           "claude create: one usage event with tokens and cost");
        ok(r->n == 6 && count_type(r, "error") == 0 && count_type(r, "status") == 0, "claude create: exactly 6 events, no error, no status");
        rec_clear(&x.r);

        run_fixture("claude", "claude_ask.jsonl", 0, 0, &x);
        ok(x.outcome == AGENT_TURN_QUESTION && strcmp(str(nth(&x.r, "question", 0), "text"), "Which file should I create?") == 0,
           "claude ask: the turn ends with a question event");
        rec_clear(&x.r);

        run_fixture("claude", "claude_fail.jsonl", 1, 0, &x);
        ok(x.outcome == AGENT_TURN_FAILED && count_type(&x.r, "error") == 1 &&
                   contains(str(nth(&x.r, "error", 0), "message"), "API Error: 500") && count_type(&x.r, "message") == 0,
           "claude HTTP 500: failed, one error event with Claude's text, no synthetic message");
        rec_clear(&x.r);

        run_fixture("claude", "claude_interrupt.jsonl", 1, 0, &x);
        const cJSON *ir = nth(&x.r, "tool_result", 0);
        ok(x.outcome == AGENT_TURN_FAILED && strcmp(str(nth(&x.r, "tool_call", 0), "name"), "Bash") == 0 && ir &&
                   cJSON_IsTrue(cJSON_GetObjectItem(ir, "is_error")) &&
                   contains(str(nth(&x.r, "error", 0), "message"), "error_during_execution"),
           "claude SIGINT: failed tool_result, error_during_execution reported");
        rec_clear(&x.r);

        run_fixture("claude", "claude_create.jsonl", 0, 9, &x);
        ok(x.outcome == AGENT_TURN_FAILED && contains(str(nth(&x.r, "error", 0), "message"), "signal 9"),
           "claude killed by a signal: failed");
        rec_clear(&x.r);
}

static void test_codex(void) {
        run x;
        run_fixture("codex", "codex_create.jsonl", 0, 0, &x);
        const rec *r = &x.r;
        const cJSON *c0 = nth(r, "tool_call", 0), *c1 = nth(r, "tool_call", 1);
        const cJSON *r0 = nth(r, "tool_result", 0), *r1 = nth(r, "tool_result", 1);
        ok(x.rc == 0 && x.outcome == AGENT_TURN_OK && r->bad_json == 0 && r->refs == 1 &&
                   strcmp(r->ref, "01a2157e-bd66-7863-958c-d5a612ed84f3") == 0,
           "codex create: turn OK, thread id reported");
        ok(count_type(r, "tool_call") == 2 && c0 && strcmp(str(c0, "name"), "apply_patch") == 0 && r0 &&
                   strcmp(str(r0, "id"), str(c0, "id")) == 0 && strcmp(str(r0, "output"), "add /workspace/hello.txt") == 0,
           "codex create: apply_patch tool_call once (started + completed) and its result");
        ok(c1 && strcmp(str(c1, "name"), "shell") == 0 &&
                   strcmp(str(cJSON_GetObjectItem(c1, "input"), "command"), "/bin/bash -lc ls") == 0 && r1 &&
                   strcmp(str(r1, "output"), "hello.txt\n") == 0 && cJSON_IsFalse(cJSON_GetObjectItem(r1, "is_error")),
           "codex create: shell ls and its output");
        ok(strcmp(str(nth(r, "message", 0), "text"), "Done: created hello.txt.") == 0 &&
                   num(nth(r, "usage", 0), "input_tokens") == 900 && !has_key(nth(r, "usage", 0), "cost_usd") && r->n == 6,
           "codex create: message and usage, 6 events");
        rec_clear(&x.r);

        run_fixture("codex", "codex_ask.jsonl", 0, 0, &x);
        ok(x.outcome == AGENT_TURN_QUESTION && count_type(&x.r, "question") == 1, "codex ask: question");
        rec_clear(&x.r);

        run_fixture("codex", "codex_fail.jsonl", 1, 0, &x);
        ok(x.outcome == AGENT_TURN_FAILED && count_type(&x.r, "error") == 1 &&
                   contains(str(nth(&x.r, "error", 0), "message"), "high demand"),
           "codex HTTP 500: failed, one error (retry notices not repeated)");
        rec_clear(&x.r);

        run_fixture("codex", "codex_interrupt.jsonl", 1, 0, &x);
        ok(x.outcome == AGENT_TURN_FAILED && count_type(&x.r, "tool_call") == 1 && count_type(&x.r, "tool_result") == 0 &&
                   contains(str(nth(&x.r, "error", 0), "message"), "status 1"),
           "codex SIGINT: the running shell call, then failed without a closing event");
        rec_clear(&x.r);

        run_fixture("codex", "codex_create.jsonl", 1, 0, &x);
        ok(x.outcome == AGENT_TURN_FAILED, "codex: a completed turn with a non-zero exit is failed");
        rec_clear(&x.r);
}

static void test_opencode(void) {
        run x;
        run_fixture("opencode", "opencode_create.jsonl", 0, 0, &x);
        const rec *r = &x.r;
        const cJSON *c0 = nth(r, "tool_call", 0), *c1 = nth(r, "tool_call", 1);
        const cJSON *r0 = nth(r, "tool_result", 0), *r1 = nth(r, "tool_result", 1);
        ok(x.rc == 0 && x.outcome == AGENT_TURN_OK && r->bad_json == 0 && r->refs == 1 &&
                   strcmp(r->ref, "ses_dea78d1feffei7yTDVUosnaT5Q") == 0,
           "opencode create: turn OK, session id reported once");
        ok(c0 && strcmp(str(c0, "name"), "write") == 0 &&
                   contains(str(cJSON_GetObjectItem(c0, "input"), "filePath"), "hello.txt") && r0 &&
                   strcmp(str(r0, "id"), str(c0, "id")) == 0 && strcmp(str(r0, "output"), "Wrote file successfully.") == 0,
           "opencode create: write tool_call and result");
        ok(c1 && strcmp(str(c1, "name"), "bash") == 0 && r1 && strcmp(str(r1, "output"), "hello.txt\n") == 0,
           "opencode create: bash ls and its output");
        const cJSON *u = nth(r, "usage", 0);
        ok(count_type(r, "message") == 1 && count_type(r, "usage") == 1 && num(u, "input_tokens") == 300 &&
                   num(u, "output_tokens") == 60 && num(u, "cost_usd") == 0,
           "opencode create: message, usage summed over 3 steps");
        rec_clear(&x.r);

        run_fixture("opencode", "opencode_ask.jsonl", 0, 0, &x);
        ok(x.outcome == AGENT_TURN_QUESTION && count_type(&x.r, "question") == 1, "opencode ask: question");
        rec_clear(&x.r);

        run_fixture("opencode", "opencode_fail.jsonl", 1, 0, &x);
        ok(x.outcome == AGENT_TURN_FAILED && count_type(&x.r, "error") == 1 &&
                   strcmp(str(nth(&x.r, "error", 0), "message"), "mock error 400") == 0,
           "opencode HTTP 400: failed with the API's message");
        rec_clear(&x.r);
}

/* ---- splits -------------------------------------------------------------------------------------- */

static void test_splits(const char *name, const char *fixture) {
        size_t len = 0;
        _cleanup_free_ char *buf = read_fixture(fixture, &len);
        if (!buf) {
                ok(0, "%s: fixture %s", name, fixture);
                return;
        }
        run whole;
        run_parser(name, buf, len, NULL, 0, 0, 0, &whole);
        _cleanup_free_ char *want = rec_dump(&whole.r);
        size_t mismatches = 0, boundary_bad = 0;
        for (size_t cut = 0; cut <= len; cut++) {
                run x;
                run_parser(name, buf, len, &cut, 1, 0, 0, &x);
                _cleanup_free_ char *got = rec_dump(&x.r);
                if (strcmp(got, want) != 0 || x.outcome != whole.outcome || strcmp(x.r.ref, whole.r.ref) != 0 ||
                    x.r.refs != 1)
                        mismatches++;
                if (!x.boundary_ok)
                        boundary_bad++;
                rec_clear(&x.r);
        }
        ok(mismatches == 0, "%s: %s split at each of %zu byte boundaries gives the same events", name, fixture, len + 1);
        ok(boundary_bad == 0, "%s: at_boundary is true exactly after a newline", name);

        _cleanup_free_ size_t *cuts = malloc(len * sizeof *cuts);
        for (size_t i = 0; i < len; i++)
                cuts[i] = i;
        run x;
        run_parser(name, buf, len, cuts, len, 0, 0, &x);
        _cleanup_free_ char *got = rec_dump(&x.r);
        ok(strcmp(got, want) == 0 && x.boundary_ok, "%s: %s fed one byte at a time gives the same events", name, fixture);
        rec_clear(&x.r);

        /* Without the final newline the last line is still parsed at finish. */
        run_parser(name, buf, len - 1, NULL, 0, 0, 0, &x);
        _cleanup_free_ char *got2 = rec_dump(&x.r);
        ok(strcmp(got2, want) == 0, "%s: a last line without newline is parsed at finish", name);
        rec_clear(&x.r);
        rec_clear(&whole.r);
}

/* ---- the command agent --------------------------------------------------------------------------- */

static void test_command(void) {
        const agent_adapter *a = agent_find("command");
        agent_parser *p = NULL;
        ns_error err = { 0 };
        rec r = { 0 };
        agent_emitter em = { rec_event, rec_ref, &r };
        agent_outcome out;
        ok(agent_parser_new(a, &p, &err) == 0, "command: parser");
        agent_parser_feed(p, "hello\nwor", 9, &em, &err);
        agent_parser_feed_stderr(p, "oops\n", 5, &em, &err);
        agent_parser_feed(p, "ld \xc3", 4, &em, &err); /* é cut in two */
        bool held = !agent_parser_at_boundary(p);
        agent_parser_feed(p, "\xa9!", 2, &em, &err);
        ok(r.n == 4 && strcmp(r.type[0], "command_output") == 0 && strcmp(str(r.data[0], "stream"), "stdout") == 0 &&
                   strcmp(str(r.data[0], "text"), "hello\nwor") == 0 && strcmp(str(r.data[1], "stream"), "stderr") == 0 &&
                   strcmp(str(r.data[1], "text"), "oops\n") == 0 && strcmp(str(r.data[2], "text"), "ld ") == 0 &&
                   strcmp(str(r.data[3], "text"), "\xc3\xa9!") == 0,
           "command: each chunk a command_output event, a split UTF-8 character joined");
        ok(held && agent_parser_at_boundary(p), "command: not at a boundary while part of a character is held");
        agent_parser_feed(p, "bin\0ary\xff\xfe", 9, &em, &err);
        ok(r.n == 5 && strcmp(str(r.data[4], "text"), "bin\xef\xbf\xbd" "ary\xef\xbf\xbd\xef\xbf\xbd") == 0,
           "command: NUL and invalid bytes become U+FFFD");
        agent_parser_feed(p, "\xe2\x82", 2, &em, &err);
        ok(agent_parser_finish(p, 3, 0, &em, &out, &err) == 0 && out == AGENT_TURN_FAILED &&
                   strcmp(str(r.data[5], "text"), "\xef\xbf\xbd\xef\xbf\xbd") == 0 &&
                   strcmp(r.type[6], "error") == 0 && contains(str(r.data[6], "message"), "status 3"),
           "command: a held partial character flushed at exit; status 3 → failed with an error event");
        agent_parser_free(p);
        rec_clear(&r);

        agent_parser_new(a, &p, &err);
        ok(agent_parser_finish(p, 0, 0, &em, &out, &err) == 0 && out == AGENT_TURN_OK && r.n == 0,
           "command: exit 0 → OK, no event");
        agent_parser_free(p);
        rec_clear(&r);

        /* One big chunk becomes several bounded events. */
        size_t big = 300 * 1024;
        _cleanup_free_ char *b = malloc(big);
        memset(b, 'x', big);
        agent_parser_new(a, &p, &err);
        agent_parser_feed(p, b, big, &em, &err);
        size_t total = 0, maxlen = 0;
        for (size_t i = 0; i < r.n; i++) {
                size_t l = strlen(str(r.data[i], "text"));
                total += l;
                maxlen = l > maxlen ? l : maxlen;
        }
        ok(total == big && maxlen <= 64 * 1024, "command: a 300 KiB chunk is split into events of at most 64 KiB");
        agent_parser_free(p);
        rec_clear(&r);
}

/* ---- hostile output ------------------------------------------------------------------------------ */

static size_t heap_in_use(void) {
#if defined(NS_SANITIZER_BUILD)
        return 0;
#else
        return mallinfo2().uordblks;
#endif
}

static void test_hostile(void) {
        static const char *const names[] = { "claude", "codex", "opencode" };
        ns_error err = { 0 };
        agent_outcome out;
        for (size_t k = 0; k < 3; k++) {
                const agent_adapter *a = agent_find(names[k]);
                agent_parser *p = NULL;
                rec r = { 0 };
                agent_emitter em = { rec_event, rec_ref, &r };

                /* 5 MiB without a newline, in 64 KiB pieces; then the line ends and a good line follows. */
                agent_parser_new(a, &p, &err);
                size_t chunk = 64 * 1024;
                _cleanup_free_ char *b = malloc(chunk);
                memset(b, 'a', chunk);
                b[0] = '{';
                size_t base = heap_in_use(), peak = 0;
                int rc = 0;
                for (size_t sent = 0; sent < 5 * 1024 * 1024 && rc == 0; sent += chunk) {
                        rc = agent_parser_feed(p, b, chunk, &em, &err);
                        size_t h = heap_in_use();
                        peak = h > peak ? h : peak;
                }
                int errors_during = count_type(&r, "error");
                bool mid = agent_parser_at_boundary(p);
                const char *tail = "aaa\n{\"type\":\"error\",\"message\":\"x\"}\n";
                agent_parser_feed(p, tail, strlen(tail), &em, &err);
                ok(rc == 0 && errors_during == 1 && contains(str(nth(&r, "error", 0), "message"), "longer than") && !mid &&
                           agent_parser_at_boundary(p),
                   "%s: a 5 MiB line gives one error event, not at a boundary until its newline", names[k]);
                ok(heap_in_use() == 0 || peak - base < AGENT_LINE_MAX + (1 << 20),
                   "%s: memory stays under AGENT_LINE_MAX while it streams (%zu KiB)", names[k],
                   heap_in_use() ? (peak - base) / 1024 : 0);
                agent_parser_finish(p, 0, 0, &em, &out, &err);
                agent_parser_free(p);
                rec_clear(&r);

                /* Invalid JSON, NUL bytes, non-objects, deep nesting; good lines around them still count. */
                agent_parser_new(a, &p, &err);
                static const char bad[] = "{not json\n"
                                          "{\"type\":\"result\"\0,\"x\":1}\n"
                                          "[1,2,3]\n"
                                          "\"just a string\"\n"
                                          "{\"a\":1} trailing\n"
                                          "\n   \r\n";
                rc = agent_parser_feed(p, bad, sizeof bad - 1, &em, &err);
                int nerr = count_type(&r, "error");
                ok(rc == 0 && nerr == 5 && r.bad_json == 0, "%s: invalid JSON, NUL, non-objects, trailing junk: 5 error events",
                   names[k]);
                rec_clear(&r);
                size_t depth = 200000;
                _cleanup_free_ char *deep = malloc(depth * 2 + 2);
                memset(deep, '[', depth);
                memset(deep + depth, ']', depth);
                deep[2 * depth] = '\n';
                rc = agent_parser_feed(p, deep, 2 * depth + 1, &em, &err);
                _cleanup_free_ char *deepo = malloc(depth * 6 + 2);
                for (size_t i = 0; i < depth; i++)
                        memcpy(deepo + 5 * i, "{\"a\":", 5);
                memset(deepo + 5 * depth, '}', depth);
                deepo[6 * depth] = '\n';
                rc |= agent_parser_feed(p, deepo, 6 * depth + 1, &em, &err);
                ok(rc == 0 && count_type(&r, "error") == 2, "%s: 200000-deep arrays and objects: error events, no crash",
                   names[k]);
                rec_clear(&r);
                /* Past AGENT_BAD_LINES_REPORTED only one more note. */
                for (int i = 0; i < 100; i++)
                        agent_parser_feed(p, "garbage\n", 8, &em, &err);
                ok(count_type(&r, "error") <= 9 && count_type(&r, "error") >= 1, "%s: 100 bad lines give at most 9 error events",
                   names[k]);
                agent_parser_free(p);
                rec_clear(&r);

                /* Random bytes with newlines: no crash, every event well-formed. */
                agent_parser_new(a, &p, &err);
                unsigned seed = 12345 + (unsigned) k;
                size_t rn = 1 << 20;
                _cleanup_free_ char *rb = malloc(rn);
                for (size_t i = 0; i < rn; i++) {
                        seed = seed * 1103515245u + 12345u;
                        rb[i] = (char) (seed >> 16);
                        if ((seed >> 8) % 97 == 0)
                                rb[i] = '\n';
                }
                rc = agent_parser_feed(p, rb, rn, &em, &err);
                rc |= agent_parser_finish(p, 0, 0, &em, &out, &err);
                ok(rc == 0 && r.bad_json == 0, "%s: 1 MiB of random bytes: no crash, events well-formed", names[k]);
                agent_parser_free(p);
                rec_clear(&r);
        }

        /* Invalid UTF-8 inside JSON strings comes out repaired; a hostile session id is not passed on. */
        agent_parser *p = NULL;
        rec r = { 0 };
        agent_emitter em = { rec_event, rec_ref, &r };
        agent_parser_new(agent_find("claude"), &p, &err);
        static const char l1[] = "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"--resume-evil\"}\n"
                                 "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"bad \xff\xc3 utf8\"},"
                                 "{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"Bash\",\"input\":\"not an object\"},"
                                 "{\"type\":\"tool_use\"},{\"type\":42},\"junk\"]}}\n"
                                 "{\"type\":\"user\",\"message\":{\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\","
                                 "\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"image\"},{\"type\":\"text\",\"text\":\"b\"}]}]}}\n"
                                 "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"usage\":{\"input_tokens\":1e308,"
                                 "\"output_tokens\":-5},\"total_cost_usd\":\"x\"}\n";
        agent_parser_feed(p, l1, sizeof l1 - 1, &em, &err);
        agent_parser_finish(p, 0, 0, &em, &out, &err);
        ok(r.refs == 0, "claude: a session id that looks like an option is not reported");
        ok(r.bad_json == 0 && strcmp(str(nth(&r, "message", 0), "text"), "bad \xef\xbf\xbd\xef\xbf\xbd utf8") == 0,
           "claude: invalid UTF-8 in a text becomes U+FFFD");
        ok(count_type(&r, "tool_call") == 2 && strcmp(str(nth(&r, "tool_result", 0), "output"), "a\nb") == 0 &&
                   out == AGENT_TURN_OK && num(nth(&r, "usage", 0), "output_tokens") == 0 &&
                   !has_key(nth(&r, "usage", 0), "cost_usd"),
           "claude: odd shapes tolerated (string input, missing fields, negative and non-numeric usage)");
        agent_parser_free(p);
        rec_clear(&r);

        /* A huge tool output and input are cut. */
        agent_parser_new(agent_find("codex"), &p, &err);
        size_t n = 1 << 20;
        _cleanup_free_ char *line = malloc(2 * n + 512);
        int m = sprintf(line, "{\"type\":\"item.completed\",\"item\":{\"id\":\"i\",\"type\":\"command_execution\",\"command\":\"");
        memset(line + m, 'c', n);
        m += (int) n;
        m += sprintf(line + m, "\",\"aggregated_output\":\"");
        memset(line + m, 'o', n);
        m += (int) n;
        m += sprintf(line + m, "\",\"status\":\"completed\",\"exit_code\":0}}\n");
        agent_parser_feed(p, line, (size_t) m, &em, &err);
        const cJSON *tc = nth(&r, "tool_call", 0), *tr = nth(&r, "tool_result", 0);
        ok(tc && tr && strlen(str(tr, "output")) < 300 * 1024 && contains(str(tr, "output"), "bytes cut") &&
                   has_key(cJSON_GetObjectItem(tc, "input"), "truncated"),
           "codex: a 1 MiB output and command are cut in the events");
        agent_parser_free(p);
        rec_clear(&r);

        /* The emitter's non-zero return stops the parser and is passed back. */
        agent_parser_new(agent_find("claude"), &p, &err);
        size_t len = 0;
        _cleanup_free_ char *fx = read_fixture("claude_create.jsonl", &len);
        r.stop_after = 2;
        int rc = fx ? agent_parser_feed(p, fx, len, &em, &err) : -1;
        ok(rc == 7 && r.n == 2, "an emitter's non-zero return stops the parser and is returned");
        agent_parser_free(p);
        rec_clear(&r);

        ns_error e2 = { 0 };
        ok(agent_parser_new(NULL, &p, &e2) == -EINVAL, "agent_parser_new(NULL) is EINVAL");
}

int main(void) {
        test_registry();
        test_build_turn();
        test_claude();
        test_codex();
        test_opencode();
        test_splits("claude", "claude_create.jsonl");
        test_splits("codex", "codex_create.jsonl");
        test_splits("opencode", "opencode_create.jsonl");
        test_command();
        test_hostile();
        return tap_done();
}
