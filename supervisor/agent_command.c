/* nightshift supervisor — the `command` agent: the prompt is a shell command line.
 *
 * A turn runs `/bin/sh -c PROMPT` in the workspace; both output streams become command_output
 * events chunk by chunk, and the exit status is the outcome.  Follow-ups are new command lines:
 * there is no session to resume, and an interrupt is SIGINT to the shell. */
#include <string.h>

#include "supervisor/agent_internal.h"

static int command_build_turn(const agent_turn_spec *spec, agent_cmd *out, ns_error *err) {
        int r = agent_check_spec(spec, false, err);
        if (r < 0)
                return r;
        agent_strv argv = { 0 }, env = { 0 };
        agent_strv_add(&argv, "/bin/sh");
        agent_strv_add(&argv, "-c");
        agent_strv_add(&argv, spec->prompt);
        agent_strv_addf(&env, "HOME=%s", AGENT_HOME);
        *out = (agent_cmd){ 0 };
        if ((r = agent_strv_take(&argv, &out->argv, err)) < 0 || (r = agent_strv_take(&env, &out->env, err)) < 0) {
                agent_strv_clear(&env);
                agent_cmd_clear(out);
                return r;
        }
        return 0;
}

static int command_chunk(void *state, int stream, const char *text, size_t len, const agent_emitter *em,
                         ns_error *err) {
        if (len == 0)
                return 0;
        cJSON *o = cJSON_CreateObject();
        if (o && (!cJSON_AddStringToObject(o, "stream", stream == 2 ? "stderr" : "stdout") ||
                  !agent_add_text(o, "text", text, len))) {
                cJSON_Delete(o);
                o = NULL;
        }
        return agent_emit(em, "command_output", o, err);
}

static int command_finish(void *state, const agent_exit *x, const agent_emitter *em, agent_outcome *out,
                          ns_error *err) {
        if (x->signal > 0) {
                *out = AGENT_TURN_FAILED;
                return agent_emit_error(em, err, "command killed by signal %d (%s)", x->signal, strsignal(x->signal));
        }
        if (x->code != 0) {
                *out = AGENT_TURN_FAILED;
                return agent_emit_error(em, err, "command exited with status %d", x->code);
        }
        *out = AGENT_TURN_OK;
        return 0;
}

const agent_ops agent_command_ops = {
        .chunk = command_chunk,
        .finish = command_finish,
};

const agent_adapter agent_command_adapter = {
        .name = "command",
        .cli_relpath = NULL,
        .build_turn = command_build_turn,
        .interrupt_stdin = NULL,
};
