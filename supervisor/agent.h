/* nightshift supervisor — agent adapters: how each agent CLI is started for a turn and how its
 * machine output becomes DESIGN.md's events.
 *
 * An adapter is pure: it builds an argv/env for one turn and parses the bytes the agent process
 * wrote; it never spawns, reads sockets or touches the database.  The session runner (session.c)
 * execs the argv in the sandbox through sandboxd, feeds every stdout byte (stream 1) to
 * agent_parser_feed and every stderr byte (stream 2) to agent_parser_feed_stderr, and stores the
 * events the emitter receives.  The output is the agent's, hence hostile: parsers bound every line
 * (AGENT_LINE_MAX; a longer line is cut and reported once as an `error` event, never a crash) and
 * accept anything, turning what they do not understand into nothing or an `error` event.
 *
 * A turn ends when the process exits; agent_parser_finish gives the outcome.  Follow-ups are a new
 * process per turn (resume by the agent's own session reference), except where an adapter keeps
 * one process and writes follow-ups to its stdin (agent_cmd.stdin_data). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

#define AGENT_LINE_MAX (4 * 1024 * 1024)

typedef struct agent_turn_spec {
        const char *prompt;     /* the user's text for this turn (non-empty) */
        const char *resume_ref; /* the agent's own session/thread id from an earlier turn; NULL on the first */
        const char *model;      /* NULL = the agent's default */
        const char *workspace;  /* the working directory inside the sandbox ("/workspace") */
        const char *agents_dir; /* where the agent layer is visible inside the sandbox (its bin/ holds the CLIs) */
} agent_turn_spec;

typedef struct agent_cmd {
        char **argv;      /* NULL-terminated; argv[0] an absolute path inside the sandbox */
        char **env;       /* NULL-terminated "K=V" added to the process's environment */
        char *stdin_data; /* written to the process's stdin before EOF; NULL = /dev/null-like EOF */
        size_t stdin_len;
} agent_cmd;

/* Free what *c owns and zero it. */
void agent_cmd_clear(agent_cmd *c);

/* Where events go.  `event` receives one of DESIGN.md's event types and its data as a JSON object
 * text (the shapes are listed at the top of agent.c; valid UTF-8, no NUL); a non-zero return stops the parser, which returns that value.  `agent_ref` (may be NULL)
 * is told the agent's session/thread id as soon as the output reveals it. */
typedef struct agent_emitter {
        int (*event)(void *ctx, const char *type, const char *json_data);
        void (*agent_ref)(void *ctx, const char *ref);
        void *ctx;
} agent_emitter;

typedef struct agent_parser agent_parser;

typedef enum agent_outcome {
        AGENT_TURN_OK,       /* the agent finished its turn normally */
        AGENT_TURN_FAILED,   /* the agent reported an error or exited non-zero */
        AGENT_TURN_QUESTION, /* the turn ended with a question for the user (`question` emitted) */
} agent_outcome;

typedef struct agent_adapter {
        const char *name; /* "command", "claude", "codex", "opencode" */
        /* Path of the CLI relative to agents_dir ("bin/claude"); NULL for `command`.  The runner
         * checks it exists before creating anything ("agent 'x' is not installed"). */
        const char *cli_relpath;
        int (*build_turn)(const agent_turn_spec *spec, agent_cmd *out, ns_error *err);
        /* Bytes to write to the agent's stdin to interrupt the turn, or NULL: then the runner sends
         * interrupt_signal (0: SIGINT) to the process, and SIGKILL to the whole tree after a grace
         * period. */
        const char *interrupt_stdin;
        int interrupt_signal;
} agent_adapter;

/* The adapter of that name, or NULL. */
const agent_adapter *agent_find(const char *name);

/* A parser for one turn of `adapter`'s output.  Returns 0 or -errno. */
int agent_parser_new(const agent_adapter *adapter, agent_parser **out, ns_error *err);
void agent_parser_free(agent_parser *p);

/* Feed stdout / stderr bytes (any split: lines may span calls).  Returns 0, the emitter's non-zero
 * return, or -errno. */
int agent_parser_feed(agent_parser *p, const char *buf, size_t len, const agent_emitter *em, ns_error *err);
int agent_parser_feed_stderr(agent_parser *p, const char *buf, size_t len, const agent_emitter *em, ns_error *err);

/* True when nothing fed so far is held back (no partial line): the runner persists its output
 * offset only at such points, and after a supervisor restart replays from there into a fresh
 * parser, so no event is lost or duplicated. */
bool agent_parser_at_boundary(const agent_parser *p);

/* The process exited with `exit_code` (or was killed by `signal`, > 0): flush what is buffered,
 * emit the turn's closing events (e.g. `usage`, an `error` with the stderr tail when it failed)
 * and return the outcome in *out. */
int agent_parser_finish(agent_parser *p, int exit_code, int signal, const agent_emitter *em, agent_outcome *out,
                        ns_error *err);
