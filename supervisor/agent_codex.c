/* nightshift supervisor — Codex CLI (`codex exec --json`).
 *
 * A turn: `codex exec --json --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox
 * -C WORKSPACE -c ... -m MODEL [resume THREAD] -` with the prompt on stdin ("-").  Codex takes its
 * provider from config; instead of a config file (CODEX_HOME is the agent's, writable, and a file
 * there would be the agent's to change) every setting is a `-c key=value` override, and argv goes
 * through `/bin/sh -c` only so that the provider's base_url can come from $OPENAI_BASE_URL, which
 * the session runner adds to the environment along with OPENAI_API_KEY (a placeholder the
 * model-API proxy replaces).  The provider speaks the Responses API (wire_api = "responses").
 * Update checks, analytics, feedback and the plugin/app features (which look up github.com and
 * chatgpt.com) are off.  Interrupt: SIGINT (exit 1, no closing event).
 *
 * stdout lines used: thread.started (thread_id: the resume reference), item.started /
 * item.completed (agent_message, command_execution, file_change, mcp_tool_call, web_search, error),
 * turn.completed (usage), turn.failed (error).  Top-level `error` lines are retry notices; the last
 * one is kept for a turn that ends without a closing event. */
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "supervisor/agent_internal.h"

#define STARTED_MAX 64
/* Codex's own default slug is not in the catalog it bundles for a custom provider, and an unknown
 * slug gets no apply_patch/exec_command tools: name one that is. */
#define CODEX_DEFAULT_MODEL "gpt-5.5"

typedef struct codex_state {
        bool have_ref, completed, failed;
        char *last_text;
        char *last_error;
        char *started[STARTED_MAX]; /* ids of tool items announced by item.started */
        size_t n_started;
} codex_state;

/* The sh wrapper: $0 is the codex path, "$@" the rest of argv. */
static const char codex_sh[] = "exec \"$0\" exec -c \"model_providers.nightshift.base_url=\\\"$OPENAI_BASE_URL\\\"\" \"$@\"";

static const char *const codex_config[] = {
        "model_provider=nightshift",
        "model_providers.nightshift.name=nightshift",
        "model_providers.nightshift.env_key=OPENAI_API_KEY",
        "model_providers.nightshift.wire_api=responses",
        "check_for_update_on_startup=false",
        "analytics.enabled=false",
        "feedback.enabled=false",
        "features.plugins=false",
        "features.remote_plugin=false",
        "features.apps=false",
        NULL,
};

static int codex_build_turn(const agent_turn_spec *spec, agent_cmd *out, ns_error *err) {
        int r = agent_check_spec(spec, true, err);
        if (r < 0)
                return r;
        agent_strv argv = { 0 }, env = { 0 };
        agent_strv_add(&argv, "/bin/sh");
        agent_strv_add(&argv, "-c");
        agent_strv_add(&argv, codex_sh);
        agent_strv_addf(&argv, "%s/%s", spec->agents_dir, agent_codex_adapter.cli_relpath);
        agent_strv_add(&argv, "--json");
        agent_strv_add(&argv, "--skip-git-repo-check");
        agent_strv_add(&argv, "--dangerously-bypass-approvals-and-sandbox");
        if (spec->workspace) {
                agent_strv_add(&argv, "-C");
                agent_strv_add(&argv, spec->workspace);
        }
        for (size_t i = 0; codex_config[i]; i++) {
                agent_strv_add(&argv, "-c");
                agent_strv_add(&argv, codex_config[i]);
        }
        agent_strv_add(&argv, "-m");
        agent_strv_add(&argv, spec->model ? spec->model : CODEX_DEFAULT_MODEL);
        if (spec->resume_ref) {
                agent_strv_add(&argv, "resume");
                agent_strv_add(&argv, spec->resume_ref);
        }
        agent_strv_add(&argv, "-"); /* the prompt: stdin */
        agent_strv_add(&env, "HOME=" AGENT_HOME);
        return agent_cmd_build(&argv, &env, spec->prompt, out, err);
}


/* Whether `id` was announced (and forget it when `take`). */
static bool started_has(codex_state *st, const char *id, bool take) {
        for (size_t i = 0; id && i < st->n_started; i++)
                if (strcmp(st->started[i], id) == 0) {
                        if (take) {
                                free(st->started[i]);
                                memmove(st->started + i, st->started + i + 1, (st->n_started - i - 1) * sizeof(char *));
                                st->n_started--;
                        }
                        return true;
                }
        return false;
}

static void started_add(codex_state *st, const char *id) {
        char *s = id ? strdup(id) : NULL;
        if (!s)
                return; /* then item.completed announces it again: a duplicate call, not a lost one */
        if (st->n_started == STARTED_MAX) {
                free(st->started[0]);
                memmove(st->started, st->started + 1, (STARTED_MAX - 1) * sizeof(char *));
                st->n_started--;
        }
        st->started[st->n_started++] = s;
}

/* A tool item's name and input (NULL name: not a tool). */
static const char *tool_of(const cJSON *item, const char *type, cJSON **input) {
        *input = cJSON_CreateObject();
        if (!*input)
                return NULL;
        if (strcmp(type, "command_execution") == 0) {
                const char *cmd = agent_json_str(item, "command");
                cJSON_AddStringToObject(*input, "command", cmd ? cmd : "");
                return "shell";
        }
        if (strcmp(type, "file_change") == 0) {
                const cJSON *ch = cJSON_GetObjectItemCaseSensitive(item, "changes");
                if (ch)
                        cJSON_AddItemToObject(*input, "changes", cJSON_Duplicate(ch, true));
                return "apply_patch";
        }
        if (strcmp(type, "mcp_tool_call") == 0) {
                const cJSON *a = cJSON_GetObjectItemCaseSensitive(item, "arguments");
                if (a) {
                        cJSON_Delete(*input);
                        *input = cJSON_Duplicate(a, true);
                }
                const char *tool = agent_json_str(item, "tool");
                return tool ? tool : "mcp";
        }
        if (strcmp(type, "web_search") == 0) {
                const char *q = agent_json_str(item, "query");
                cJSON_AddStringToObject(*input, "query", q ? q : "");
                return "web_search";
        }
        cJSON_Delete(*input);
        *input = NULL;
        return NULL;
}

static int tool_result(const cJSON *item, const char *type, const char *id, const agent_emitter *em, ns_error *err) {
        const char *status = agent_json_str(item, "status");
        bool is_error = status && strcmp(status, "completed") != 0;
        _cleanup_free_ char *owned = NULL;
        const char *output = "";
        if (strcmp(type, "command_execution") == 0) {
                const cJSON *code = cJSON_GetObjectItemCaseSensitive(item, "exit_code");
                if (cJSON_IsNumber(code) && code->valuedouble != 0)
                        is_error = true;
                output = agent_json_str(item, "aggregated_output");
        } else if (strcmp(type, "file_change") == 0) {
                /* "add /path" per change: what the tool did, as a text. */
                size_t len = 1;
                const cJSON *c;
                cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(item, "changes")) {
                        const char *k = agent_json_str(c, "kind"), *p = agent_json_str(c, "path");
                        len += (k ? strlen(k) : 0) + (p ? strlen(p) : 0) + 2;
                }
                if (!(owned = malloc(len)))
                        return ns_err(err, ENOMEM, "codex output");
                owned[0] = 0;
                char *o = owned;
                cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(item, "changes")) {
                        const char *k = agent_json_str(c, "kind"), *p = agent_json_str(c, "path");
                        o += sprintf(o, "%s%s %s", o == owned ? "" : "\n", k ? k : "", p ? p : "");
                }
                output = owned;
        } else if (strcmp(type, "mcp_tool_call") == 0) {
                const cJSON *e = cJSON_GetObjectItemCaseSensitive(item, "error");
                const cJSON *res = cJSON_GetObjectItemCaseSensitive(item, "result");
                if (cJSON_IsObject(e)) {
                        is_error = true;
                        output = agent_json_str(e, "message");
                } else if (res && !(owned = cJSON_PrintUnformatted(res)))
                        return ns_err(err, ENOMEM, "codex output");
                if (owned)
                        output = owned;
        }
        return agent_emit_tool_result(em, id, output ? output : "", is_error, err);
}

static int on_item(codex_state *st, const cJSON *item, bool completed, const agent_emitter *em, ns_error *err) {
        const char *type = agent_json_str(item, "type"), *id = agent_json_str(item, "id");
        int r;
        if (!type)
                return 0;
        if (completed && strcmp(type, "agent_message") == 0) {
                const char *text = agent_json_str(item, "text");
                if (!text || !text[0])
                        return 0;
                if ((r = agent_set_str(&st->last_text, text, err)) < 0)
                        return r;
                return agent_emit_message(em, text, err);
        }
        if (completed && strcmp(type, "error") == 0)
                return agent_emit_error(em, err, "%s", agent_json_str(item, "message") ?: "codex error");
        cJSON *input = NULL;
        const char *name = tool_of(item, type, &input);
        if (!name) {
                cJSON_Delete(input);
                return 0;
        }
        r = 0;
        if (!completed) {
                if (!started_has(st, id, false)) {
                        started_add(st, id);
                        r = agent_emit_tool_call(em, id, name, input, err);
                }
        } else {
                if (!started_has(st, id, true))
                        r = agent_emit_tool_call(em, id, name, input, err);
                if (r == 0)
                        r = tool_result(item, type, id, em, err);
        }
        cJSON_Delete(input);
        return r;
}

static int codex_json(void *state, const cJSON *obj, const agent_emitter *em, ns_error *err) {
        codex_state *st = state;
        const char *type = agent_json_str(obj, "type");
        if (!type)
                return 0;
        if (strcmp(type, "thread.started") == 0) {
                if (!st->have_ref && agent_json_str(obj, "thread_id")) {
                        st->have_ref = true;
                        agent_report_ref(em, agent_json_str(obj, "thread_id"));
                }
                return 0;
        }
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, "item");
        if (strcmp(type, "item.started") == 0 && cJSON_IsObject(item))
                return on_item(st, item, false, em, err);
        if (strcmp(type, "item.completed") == 0 && cJSON_IsObject(item))
                return on_item(st, item, true, em, err);
        if (strcmp(type, "turn.completed") == 0) {
                st->completed = true;
                const cJSON *u = cJSON_GetObjectItemCaseSensitive(obj, "usage");
                if (!cJSON_IsObject(u))
                        return 0;
                /* input_tokens already counts the cached ones; output_tokens the reasoning ones */
                return agent_emit_usage(em, agent_json_num(u, "input_tokens", 0), agent_json_num(u, "output_tokens", 0),
                                        -1, err);
        }
        if (strcmp(type, "turn.failed") == 0) {
                st->failed = true;
                const char *m = agent_json_str(cJSON_GetObjectItemCaseSensitive(obj, "error"), "message");
                return agent_emit_error(em, err, "%s", m ? m : "codex turn failed");
        }
        if (strcmp(type, "error") == 0)
                return agent_set_str(&st->last_error, agent_json_str(obj, "message"), err);
        return 0;
}

static int codex_finish(void *state, const agent_exit *x, const agent_emitter *em, agent_outcome *out,
                        ns_error *err) {
        codex_state *st = state;
        const char *detail = st->last_error && st->last_error[0] ? st->last_error : x->stderr_tail;
        const char *sep = detail[0] ? ": " : "";
        *out = AGENT_TURN_FAILED;
        if (x->signal > 0)
                return agent_emit_error(em, err, "codex killed by signal %d%s%s", x->signal, sep, detail);
        if (st->failed)
                return 0; /* turn.failed was reported */
        if (x->code != 0)
                return agent_emit_error(em, err, "codex exited with status %d%s%s", x->code, sep, detail);
        if (st->completed && agent_text_is_question(st->last_text)) {
                *out = AGENT_TURN_QUESTION;
                return agent_emit_question(em, st->last_text, err);
        }
        *out = AGENT_TURN_OK;
        return 0;
}

static void codex_done(void *state) {
        codex_state *st = state;
        free(st->last_text);
        free(st->last_error);
        for (size_t i = 0; i < st->n_started; i++)
                free(st->started[i]);
}

const agent_ops agent_codex_ops = {
        .state_size = sizeof(codex_state),
        .json = codex_json,
        .finish = codex_finish,
        .done = codex_done,
};

const agent_adapter agent_codex_adapter = {
        .name = "codex",
        .cli_relpath = "bin/codex",
        .build_turn = codex_build_turn,
        .interrupt_stdin = NULL,
};
