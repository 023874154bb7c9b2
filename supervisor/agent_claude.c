/* nightshift supervisor — Claude Code (`claude -p --output-format stream-json`).
 *
 * A turn: `claude -p --output-format stream-json --verbose --dangerously-skip-permissions
 * [--model M] [--resume SESSION]` with the prompt on stdin (no argv length limit, and a prompt
 * starting with '-' is not an option).  Follow-ups resume the session id that system/init reports.
 * Interrupt: SIGINT (Claude answers with an error_during_execution result and kills its tools).
 *
 * Environment it needs from the session runner: ANTHROPIC_BASE_URL (the model-API proxy as seen
 * inside the sandbox) and ANTHROPIC_API_KEY (a placeholder; the proxy adds the real key).  Set here:
 * HOME, telemetry/auto-update/error-reporting/nonessential traffic off, and IS_SANDBOX=1 (without it
 * Claude refuses --dangerously-skip-permissions when it runs as root, as under `--root`).
 *
 * stdout lines used: system/init (session_id), assistant (text and tool_use blocks; one block per
 * line), user (tool_result blocks), result (outcome, usage, cost).  Everything else is ignored. */
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "supervisor/agent_internal.h"

typedef struct claude_state {
        bool have_ref;
        bool have_result;
        bool result_is_error;
        char *result_subtype;
        char *result_text;
        char *last_text; /* the last assistant text, for a question without a result text */
} claude_state;

static const char *const claude_env[] = {
        "HOME=" AGENT_HOME,
        "DISABLE_AUTOUPDATER=1",
        "DISABLE_TELEMETRY=1",
        "DISABLE_ERROR_REPORTING=1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
        "DISABLE_GROWTHBOOK=1",
        "CLAUDE_CODE_ENABLE_TELEMETRY=0",
        "IS_SANDBOX=1",
        NULL,
};

static int claude_build_turn(const agent_turn_spec *spec, agent_cmd *out, ns_error *err) {
        int r = agent_check_spec(spec, true, err);
        if (r < 0)
                return r;
        agent_strv argv = { 0 }, env = { 0 };
        agent_strv_addf(&argv, "%s/%s", spec->agents_dir, agent_claude_adapter.cli_relpath);
        agent_strv_add(&argv, "-p");
        agent_strv_add(&argv, "--output-format");
        agent_strv_add(&argv, "stream-json");
        agent_strv_add(&argv, "--verbose");
        agent_strv_add(&argv, "--dangerously-skip-permissions");
        if (spec->model) {
                agent_strv_add(&argv, "--model");
                agent_strv_add(&argv, spec->model);
        }
        if (spec->resume_ref) {
                agent_strv_add(&argv, "--resume");
                agent_strv_add(&argv, spec->resume_ref);
        }
        for (size_t i = 0; claude_env[i]; i++)
                agent_strv_add(&env, claude_env[i]);
        return agent_cmd_build(&argv, &env, spec->prompt, out, err);
}


static int on_assistant(claude_state *st, const cJSON *msg, const agent_emitter *em, ns_error *err) {
        const char *model = agent_json_str(msg, "model");
        if (model && strcmp(model, "<synthetic>") == 0)
                return 0; /* Claude's own error text ("API Error: ..."): the result line reports it */
        const cJSON *block;
        cJSON_ArrayForEach(block, cJSON_GetObjectItemCaseSensitive(msg, "content")) {
                const char *type = agent_json_str(block, "type");
                int r = 0;
                if (!type)
                        continue;
                if (strcmp(type, "text") == 0) {
                        const char *text = agent_json_str(block, "text");
                        if (text && text[0] && (r = agent_set_str(&st->last_text, text, err)) == 0)
                                r = agent_emit_message(em, text, err);
                } else if (strcmp(type, "tool_use") == 0) {
                        r = agent_emit_tool_call(em, agent_json_str(block, "id"), agent_json_str(block, "name"),
                                                 cJSON_GetObjectItemCaseSensitive(block, "input"), err);
                }
                if (r != 0)
                        return r;
        }
        return 0;
}

/* A tool_result's content: a string, or blocks whose texts are joined (images are skipped). */
static char *result_text(const cJSON *content) {
        if (cJSON_IsString(content))
                return strdup(content->valuestring);
        size_t len = 0;
        const cJSON *b;
        cJSON_ArrayForEach(b, content) {
                const char *t = agent_json_str(b, "text");
                if (t)
                        len += strlen(t) + 1;
        }
        char *s = malloc(len + 1), *o = s;
        if (!s)
                return NULL;
        cJSON_ArrayForEach(b, content) {
                const char *t = agent_json_str(b, "text");
                if (!t)
                        continue;
                if (o != s)
                        *o++ = '\n';
                size_t n = strlen(t);
                memcpy(o, t, n);
                o += n;
        }
        *o = 0;
        return s;
}

static int on_user(const cJSON *msg, const agent_emitter *em, ns_error *err) {
        const cJSON *block;
        cJSON_ArrayForEach(block, cJSON_GetObjectItemCaseSensitive(msg, "content")) {
                const char *type = agent_json_str(block, "type");
                if (!type || strcmp(type, "tool_result") != 0)
                        continue;
                _cleanup_free_ char *text = result_text(cJSON_GetObjectItemCaseSensitive(block, "content"));
                if (!text)
                        return ns_err(err, ENOMEM, "claude output");
                int r = agent_emit_tool_result(em, agent_json_str(block, "tool_use_id"), text,
                                               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(block, "is_error")), err);
                if (r != 0)
                        return r;
        }
        return 0;
}

static int on_result(claude_state *st, const cJSON *obj, const agent_emitter *em, ns_error *err) {
        const char *subtype = agent_json_str(obj, "subtype");
        int r;
        st->have_result = true;
        st->result_is_error = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, "is_error")) ||
                              !subtype || strcmp(subtype, "success") != 0;
        if ((r = agent_set_str(&st->result_subtype, subtype ? subtype : "unknown", err)) < 0 ||
            (r = agent_set_str(&st->result_text, agent_json_str(obj, "result"), err)) < 0)
                return r;
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(obj, "usage");
        if (!cJSON_IsObject(u))
                return 0;
        double in = agent_json_num(u, "input_tokens", 0) + agent_json_num(u, "cache_creation_input_tokens", 0) +
                    agent_json_num(u, "cache_read_input_tokens", 0);
        return agent_emit_usage(em, in, agent_json_num(u, "output_tokens", 0), agent_json_num(obj, "total_cost_usd", -1),
                                err);
}

static int claude_json(void *state, const cJSON *obj, const agent_emitter *em, ns_error *err) {
        claude_state *st = state;
        const char *type = agent_json_str(obj, "type");
        if (!type)
                return 0;
        if (strcmp(type, "system") == 0) {
                const char *sub = agent_json_str(obj, "subtype"), *sid = agent_json_str(obj, "session_id");
                if (sub && strcmp(sub, "init") == 0 && sid && !st->have_ref) {
                        st->have_ref = true;
                        agent_report_ref(em, sid);
                }
                return 0;
        }
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(obj, "message");
        if (strcmp(type, "assistant") == 0 && cJSON_IsObject(msg))
                return on_assistant(st, msg, em, err);
        if (strcmp(type, "user") == 0 && cJSON_IsObject(msg))
                return on_user(msg, em, err);
        if (strcmp(type, "result") == 0)
                return on_result(st, obj, em, err);
        return 0;
}

static int claude_finish(void *state, const agent_exit *x, const agent_emitter *em, agent_outcome *out,
                         ns_error *err) {
        claude_state *st = state;
        const char *tail = x->stderr_tail, *sep = tail[0] ? ": " : "";
        *out = AGENT_TURN_FAILED;
        if (x->signal > 0)
                return agent_emit_error(em, err, "claude killed by signal %d%s%s", x->signal, sep, tail);
        if (st->have_result && st->result_is_error) {
                if (st->result_text && st->result_text[0])
                        return agent_emit_error(em, err, "%s", st->result_text);
                return agent_emit_error(em, err, "claude ended the turn with %s", st->result_subtype);
        }
        if (x->code != 0)
                return agent_emit_error(em, err, "claude exited with status %d%s%s", x->code, sep, tail);
        /* Exit 0: a success result, or none seen by this parser (it may have started after it). */
        const char *last = st->result_text && st->result_text[0] ? st->result_text : st->last_text;
        if (st->have_result && agent_text_is_question(last)) {
                *out = AGENT_TURN_QUESTION;
                return agent_emit_question(em, last, err);
        }
        *out = AGENT_TURN_OK;
        return 0;
}

static void claude_done(void *state) {
        claude_state *st = state;
        free(st->result_subtype);
        free(st->result_text);
        free(st->last_text);
}

const agent_ops agent_claude_ops = {
        .state_size = sizeof(claude_state),
        .json = claude_json,
        .finish = claude_finish,
        .done = claude_done,
};

const agent_adapter agent_claude_adapter = {
        .name = "claude",
        .cli_relpath = "bin/claude",
        .build_turn = claude_build_turn,
        .interrupt_stdin = NULL,
};
