/* nightshift supervisor — OpenCode (`opencode run --format json`).
 *
 * A turn: `opencode run --format json [--session SESSION]` with the prompt on stdin (one argv with
 * spaces reaches the model wrapped in quotes).  Its configuration comes whole through
 * OPENCODE_CONFIG_CONTENT: one provider "nightshift" built on the bundled @ai-sdk/anthropic package,
 * whose baseURL and apiKey OpenCode substitutes from $ANTHROPIC_BASE_URL and $ANTHROPIC_API_KEY
 * ("{env:...}") — the same two variables Claude Code needs from the session runner; the model is
 * spec->model (default claude-sonnet-4-5); permissions allow edits and shell, deny web fetches; no
 * auto-update, no sharing.  XDG_CONFIG_HOME points at the agent layer's opencode-config/, where
 * rootfs/agents/install.sh pre-installed the plugin package OpenCode would otherwise fetch from the
 * npm registry on every start; the OPENCODE_DISABLE_* variables turn off the models.dev fetch,
 * auto-update, sharing, default plugins and LSP downloads.
 *
 * Interrupt: OpenCode ignores SIGINT without a terminal; SIGTERM ends `opencode run` at once.  The
 * session it was in is saved as it goes, so the next turn resumes it with --session; the tools it
 * left running are killed by the runner before the commit (NS_KILL_LEFTOVERS).
 *
 * stdout lines used (each carries sessionID, the resume reference): text (a complete text part),
 * tool_use (a finished tool: state.status completed/error, input, output), step_finish (tokens and
 * cost, summed into the turn's usage), error. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "supervisor/agent_internal.h"

#define OPENCODE_DEFAULT_MODEL "claude-sonnet-4-5"

typedef struct opencode_state {
        bool have_ref, failed;
        unsigned steps;
        bool have_cost;
        double in, out, cost;
        char *last_text;
} opencode_state;

static const char *const opencode_env[] = {
        "HOME=" AGENT_HOME,
        "OPENCODE_DISABLE_MODELS_FETCH=1",
        "OPENCODE_DISABLE_AUTOUPDATE=1",
        "OPENCODE_DISABLE_SHARE=1",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS=1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD=1",
        NULL,
};

/* The configuration text for `model`. */
static char *opencode_config(const char *model) {
        _cleanup_free_ char *ref = NULL;
        if (asprintf(&ref, "nightshift/%s", model) < 0)
                return NULL;
        cJSON *c = cJSON_CreateObject(), *perm, *prov, *ns, *opt, *models, *m, *lim;
        if (!c)
                return NULL;
        bool ok = cJSON_AddStringToObject(c, "model", ref) && cJSON_AddStringToObject(c, "small_model", ref) &&
                  cJSON_AddFalseToObject(c, "autoupdate") && cJSON_AddStringToObject(c, "share", "disabled") &&
                  (perm = cJSON_AddObjectToObject(c, "permission")) && cJSON_AddStringToObject(perm, "edit", "allow") &&
                  cJSON_AddStringToObject(perm, "bash", "allow") && cJSON_AddStringToObject(perm, "webfetch", "deny") &&
                  cJSON_AddStringToObject(perm, "external_directory", "allow") &&
                  (prov = cJSON_AddObjectToObject(c, "provider")) && (ns = cJSON_AddObjectToObject(prov, "nightshift")) &&
                  cJSON_AddStringToObject(ns, "npm", "@ai-sdk/anthropic") && (opt = cJSON_AddObjectToObject(ns, "options")) &&
                  cJSON_AddStringToObject(opt, "baseURL", "{env:ANTHROPIC_BASE_URL}/v1") &&
                  cJSON_AddStringToObject(opt, "apiKey", "{env:ANTHROPIC_API_KEY}") &&
                  (models = cJSON_AddObjectToObject(ns, "models")) && (m = cJSON_AddObjectToObject(models, model)) &&
                  cJSON_AddStringToObject(m, "name", model) && cJSON_AddTrueToObject(m, "tool_call") &&
                  (lim = cJSON_AddObjectToObject(m, "limit")) && cJSON_AddNumberToObject(lim, "context", 200000) &&
                  cJSON_AddNumberToObject(lim, "output", 32000);
        char *s = ok ? cJSON_PrintUnformatted(c) : NULL;
        cJSON_Delete(c);
        return s;
}

static int opencode_build_turn(const agent_turn_spec *spec, agent_cmd *out, ns_error *err) {
        int r = agent_check_spec(spec, true, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *config = opencode_config(spec->model ? spec->model : OPENCODE_DEFAULT_MODEL);
        if (!config)
                return ns_err(err, ENOMEM, "opencode config");
        agent_strv argv = { 0 }, env = { 0 };
        agent_strv_addf(&argv, "%s/%s", spec->agents_dir, agent_opencode_adapter.cli_relpath);
        agent_strv_add(&argv, "run");
        agent_strv_add(&argv, "--format");
        agent_strv_add(&argv, "json");
        if (spec->resume_ref) {
                agent_strv_add(&argv, "--session");
                agent_strv_add(&argv, spec->resume_ref);
        }
        for (size_t i = 0; opencode_env[i]; i++)
                agent_strv_add(&env, opencode_env[i]);
        agent_strv_addf(&env, "XDG_CONFIG_HOME=%s/opencode-config", spec->agents_dir);
        agent_strv_addf(&env, "OPENCODE_CONFIG_CONTENT=%s", config);
        return agent_cmd_build(&argv, &env, spec->prompt, out, err);
}

static int on_tool(const cJSON *part, const agent_emitter *em, ns_error *err) {
        const cJSON *state = cJSON_GetObjectItemCaseSensitive(part, "state");
        const char *status = agent_json_str(state, "status");
        if (!status || (strcmp(status, "completed") != 0 && strcmp(status, "error") != 0))
                return 0; /* `run` prints finished tools only */
        const char *id = agent_json_str(part, "callID");
        int r = agent_emit_tool_call(em, id, agent_json_str(part, "tool"), cJSON_GetObjectItemCaseSensitive(state, "input"),
                                     err);
        if (r != 0)
                return r;
        bool is_error = strcmp(status, "error") == 0;
        const char *output = agent_json_str(state, is_error ? "error" : "output");
        return agent_emit_tool_result(em, id, output ? output : "", is_error, err);
}

static void on_step_finish(opencode_state *st, const cJSON *part) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "tokens");
        const cJSON *cache = cJSON_GetObjectItemCaseSensitive(t, "cache");
        st->steps++;
        st->in += agent_json_num(t, "input", 0) + agent_json_num(cache, "read", 0) + agent_json_num(cache, "write", 0);
        st->out += agent_json_num(t, "output", 0) + agent_json_num(t, "reasoning", 0);
        double cost = agent_json_num(part, "cost", -1);
        if (cost >= 0) {
                st->cost += cost;
                st->have_cost = true;
        }
}

static int opencode_json(void *state, const cJSON *obj, const agent_emitter *em, ns_error *err) {
        opencode_state *st = state;
        const char *type = agent_json_str(obj, "type"), *sid = agent_json_str(obj, "sessionID");
        if (!type)
                return 0;
        if (sid && !st->have_ref) {
                st->have_ref = true;
                agent_report_ref(em, sid);
        }
        const cJSON *part = cJSON_GetObjectItemCaseSensitive(obj, "part");
        if (strcmp(type, "text") == 0) {
                const char *text = agent_json_str(part, "text");
                if (!text || !text[0])
                        return 0;
                char *copy = strdup(text);
                if (!copy)
                        return ns_err(err, ENOMEM, "opencode output");
                free(st->last_text);
                st->last_text = copy;
                return agent_emit_message(em, text, err);
        }
        if (strcmp(type, "tool_use") == 0)
                return on_tool(part, em, err);
        if (strcmp(type, "step_finish") == 0) {
                on_step_finish(st, part);
                return 0;
        }
        if (strcmp(type, "error") == 0) {
                const cJSON *e = cJSON_GetObjectItemCaseSensitive(obj, "error");
                const char *m = agent_json_str(cJSON_GetObjectItemCaseSensitive(e, "data"), "message");
                st->failed = true;
                return agent_emit_error(em, err, "%s", m ? m : agent_json_str(e, "name") ?: "opencode error");
        }
        return 0;
}

static int opencode_finish(void *state, const agent_exit *x, const agent_emitter *em, agent_outcome *out,
                           ns_error *err) {
        opencode_state *st = state;
        const char *tail = x->stderr_tail, *sep = tail[0] ? ": " : "";
        int r = 0;
        *out = AGENT_TURN_FAILED;
        if (st->steps > 0 && (r = agent_emit_usage(em, st->in, st->out, st->have_cost ? st->cost : -1, err)) != 0)
                return r;
        if (x->signal > 0)
                return agent_emit_error(em, err, "opencode killed by signal %d%s%s", x->signal, sep, tail);
        if (st->failed)
                return 0; /* the error line was reported */
        if (x->code != 0)
                return agent_emit_error(em, err, "opencode exited with status %d%s%s", x->code, sep, tail);
        if (st->steps > 0 && agent_text_is_question(st->last_text)) {
                *out = AGENT_TURN_QUESTION;
                return agent_emit_question(em, st->last_text, err);
        }
        *out = AGENT_TURN_OK;
        return 0;
}

static void opencode_done(void *state) {
        free(((opencode_state *) state)->last_text);
}

const agent_ops agent_opencode_ops = {
        .state_size = sizeof(opencode_state),
        .json = opencode_json,
        .finish = opencode_finish,
        .done = opencode_done,
};

const agent_adapter agent_opencode_adapter = {
        .name = "opencode",
        .cli_relpath = "bin/opencode",
        .build_turn = opencode_build_turn,
        .interrupt_stdin = NULL,
        .interrupt_signal = SIGTERM,
};
