/* agent_probe — the agent adapters (supervisor/agent*.c) from the shell, for
 * tests/integration/test_agent_clis.sh, so that the test runs exactly what build_turn builds and
 * reads the output with the real parser.
 *
 *   agent_probe turn AGENT OUTDIR PROMPT AGENTS_DIR WORKSPACE [MODEL [RESUME_REF]]
 *       writes OUTDIR/argv and OUTDIR/env (NUL-separated strings) and OUTDIR/stdin (the bytes to
 *       write to the agent's stdin; empty when none)
 *   agent_probe parse AGENT EXIT_CODE SIGNAL < OUTPUT
 *       feeds OUTPUT (the agent's stdout) through the parser in 1000-byte pieces and prints one
 *       line per event, "EVENT TYPE JSON", then "REF id" when one was reported and "OUTCOME ok" |
 *       "OUTCOME failed" | "OUTCOME question"
 *
 * The helpers directory's CMake rule links sandboxd_core only (cJSON and common/ come with it), so
 * the adapter sources are compiled in here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor/agent.c"
#include "supervisor/agent_claude.c"
#include "supervisor/agent_codex.c"
#include "supervisor/agent_command.c"
#include "supervisor/agent_opencode.c"

static int write_strv(const char *dir, const char *name, char **v) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, "wb");
        if (!f)
                return -1;
        for (; v && *v; v++)
                fwrite(*v, 1, strlen(*v) + 1, f);
        return fclose(f);
}

static int do_turn(int argc, char **argv) {
        if (argc < 7)
                return 2;
        const agent_adapter *a = agent_find(argv[2]);
        if (!a) {
                fprintf(stderr, "agent_probe: no agent %s\n", argv[2]);
                return 1;
        }
        agent_turn_spec spec = { .prompt = argv[4], .agents_dir = argv[5], .workspace = argv[6],
                                 .model = argc > 7 && argv[7][0] ? argv[7] : NULL,
                                 .resume_ref = argc > 8 && argv[8][0] ? argv[8] : NULL };
        agent_cmd c = { 0 };
        ns_error err = { 0 };
        if (a->build_turn(&spec, &c, &err) < 0) {
                fprintf(stderr, "agent_probe: build_turn: %s\n", err.msg);
                return 1;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/stdin", argv[3]);
        FILE *f = fopen(path, "wb");
        int r = !f || write_strv(argv[3], "argv", c.argv) < 0 || write_strv(argv[3], "env", c.env) < 0;
        if (f) {
                if (c.stdin_data)
                        fwrite(c.stdin_data, 1, c.stdin_len, f);
                r |= fclose(f) != 0;
        }
        agent_cmd_clear(&c);
        return r;
}

static int print_event(void *ctx, const char *type, const char *json) {
        printf("EVENT %s %s\n", type, json);
        return 0;
}

static void print_ref(void *ctx, const char *ref) {
        printf("REF %s\n", ref);
}

static int do_parse(int argc, char **argv) {
        if (argc < 5)
                return 2;
        const agent_adapter *a = agent_find(argv[2]);
        agent_parser *p = NULL;
        ns_error err = { 0 };
        if (agent_parser_new(a, &p, &err) < 0) {
                fprintf(stderr, "agent_probe: %s\n", err.msg);
                return 1;
        }
        agent_emitter em = { print_event, print_ref, NULL };
        char buf[1000];
        size_t n;
        int r = 0;
        while (r == 0 && (n = fread(buf, 1, sizeof buf, stdin)) > 0)
                r = agent_parser_feed(p, buf, n, &em, &err);
        agent_outcome out = AGENT_TURN_FAILED;
        if (r == 0)
                r = agent_parser_finish(p, atoi(argv[3]), atoi(argv[4]), &em, &out, &err);
        agent_parser_free(p);
        if (r != 0) {
                fprintf(stderr, "agent_probe: parse: %s\n", err.msg);
                return 1;
        }
        printf("OUTCOME %s\n", out == AGENT_TURN_OK ? "ok" : out == AGENT_TURN_QUESTION ? "question" : "failed");
        return 0;
}

int main(int argc, char **argv) {
        if (argc > 1 && strcmp(argv[1], "turn") == 0)
                return do_turn(argc, argv);
        if (argc > 1 && strcmp(argv[1], "parse") == 0)
                return do_parse(argc, argv);
        fprintf(stderr, "usage: agent_probe turn AGENT OUTDIR PROMPT AGENTS_DIR WORKSPACE [MODEL [RESUME]]\n"
                        "       agent_probe parse AGENT EXIT_CODE SIGNAL < OUTPUT\n");
        return 2;
}
