/* nightshift supervisor — what the agent adapters share with agent.c (not for other modules).
 *
 * agent.c owns the byte handling (line splitting with the AGENT_LINE_MAX bound, JSON parsing,
 * UTF-8 repair, the stderr tail); an adapter sees one parsed JSON object per stdout line, or raw
 * chunks when it asks for them (`command`), and builds events with the helpers below. */
#pragma once

#include <cjson/cJSON.h>
#include <stdarg.h>

#include "supervisor/agent.h"

/* Longest text (message text, tool output, command output chunk) put in one event; longer text is
 * cut at a character boundary and marked.  Events go to the database and every browser. */
#define AGENT_TEXT_MAX (256 * 1024)
/* Longest serialized tool input kept as JSON; a larger one becomes a cut string. */
#define AGENT_INPUT_MAX (64 * 1024)
/* How much of stderr is kept for the error event of a failed turn. */
#define AGENT_STDERR_TAIL 2048
/* Unparsable stdout lines reported per turn before the rest are only counted. */
#define AGENT_BAD_LINES_REPORTED 8

typedef struct agent_exit {
        int code;               /* exit status when signal == 0 */
        int signal;             /* > 0: killed by that signal */
        const char *stderr_tail; /* last AGENT_STDERR_TAIL bytes of stderr, valid UTF-8, maybe "" */
} agent_exit;

/* One adapter's parser.  `state` is state_size zeroed bytes owned by agent.c. */
typedef struct agent_ops {
        size_t state_size;
        /* One JSON object from a stdout line.  Returns 0, the emitter's non-zero value or -errno. */
        int (*json)(void *state, const cJSON *obj, const agent_emitter *em, ns_error *err);
        /* Raw mode instead of lines (stream 1 stdout, 2 stderr); text is valid UTF-8, NUL-free. */
        int (*chunk)(void *state, int stream, const char *text, size_t len, const agent_emitter *em,
                     ns_error *err);
        int (*finish)(void *state, const agent_exit *x, const agent_emitter *em, agent_outcome *out,
                      ns_error *err);
        void (*done)(void *state); /* frees what state points to; may be NULL */
} agent_ops;

extern const agent_adapter agent_command_adapter, agent_claude_adapter, agent_codex_adapter,
        agent_opencode_adapter;
extern const agent_ops agent_command_ops, agent_claude_ops, agent_codex_ops, agent_opencode_ops;

/* ---- events ----------------------------------------------------------------------------------- */

/* Serialize `data` (consumed, may be NULL = allocation failed) and hand it to em->event.  Returns 0,
 * the emitter's non-zero value, or -ENOMEM. */
int agent_emit(const agent_emitter *em, const char *type, cJSON *data, ns_error *err);
/* An `error` event {"message": printf(fmt)}. */
int agent_emit_error(const agent_emitter *em, ns_error *err, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/* message {"role":"assistant","text"} */
int agent_emit_message(const agent_emitter *em, const char *text, ns_error *err);
/* tool_call {"id","name","input"}: input is copied (NULL → {}) */
int agent_emit_tool_call(const agent_emitter *em, const char *id, const char *name, const cJSON *input,
                         ns_error *err);
/* tool_result {"id","output","is_error"} */
int agent_emit_tool_result(const agent_emitter *em, const char *id, const char *output, bool is_error,
                           ns_error *err);
/* question {"text"} */
int agent_emit_question(const agent_emitter *em, const char *text, ns_error *err);
/* usage {"input_tokens","output_tokens","cost_usd"?}: cost < 0 = unknown, left out */
int agent_emit_usage(const agent_emitter *em, double input_tokens, double output_tokens, double cost_usd,
                     ns_error *err);
/* Tell em->agent_ref about `ref` when it is a plausible id ([A-Za-z0-9][A-Za-z0-9_-]{0,127}): it
 * ends up in the next turn's argv, so nothing else is passed on. */
void agent_report_ref(const agent_emitter *em, const char *ref);

/* Add `s` (len bytes) to obj as a string, repaired to UTF-8 and cut at AGENT_TEXT_MAX.  NULL on
 * allocation failure. */
cJSON *agent_add_text(cJSON *obj, const char *key, const char *s, size_t len);

/* A malloc'd copy of s[0..len) that is valid UTF-8 without NUL (bad bytes become U+FFFD). */
char *agent_utf8_repair(const char *s, size_t len);
/* How many bytes at the end of s[0..len) are an incomplete (so far valid) UTF-8 sequence, 0..3. */
size_t agent_utf8_incomplete_tail(const char *s, size_t len);

/* The string member `key`, or NULL. */
const char *agent_json_str(const cJSON *obj, const char *key);
/* The number member `key` if finite and >= 0, else def. */
double agent_json_num(const cJSON *obj, const char *key, double def);
/* True when the text, ignoring trailing white space, ends with a question mark. */
bool agent_text_is_question(const char *text);

/* ---- argv/env ------------------------------------------------------------------------------------ */

/* A growing NULL-terminated string vector; a failed allocation is remembered, checked once. */
typedef struct agent_strv {
        char **v;
        size_t n, cap;
        bool oom;
} agent_strv;

void agent_strv_add(agent_strv *s, const char *str);
void agent_strv_addf(agent_strv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Move the vector to *out (NULL-terminated); -ENOMEM when any add failed. */
int agent_strv_take(agent_strv *s, char ***out, ns_error *err);
void agent_strv_clear(agent_strv *s);
/* Move argv and env into *out (zeroed first) and put the prompt on its stdin: the last step of
 * every CLI adapter's build_turn.  argv and env are consumed either way. */
int agent_cmd_build(agent_strv *argv, agent_strv *env, const char *prompt, agent_cmd *out, ns_error *err);
/* Replace *dst with a copy of src ("" for NULL). */
int agent_set_str(char **dst, const char *src, ns_error *err);

/* Validate what goes into an agent's argv: the resume reference (same rule as agent_report_ref),
 * the model name ([A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}) and the paths (absolute, no newline).
 * Returns 0 or -EINVAL with *err filled. */
int agent_check_spec(const agent_turn_spec *spec, bool need_agents_dir, ns_error *err);

/* Environment every CLI gets: HOME=/home/agent. */
#define AGENT_HOME "/home/agent"
