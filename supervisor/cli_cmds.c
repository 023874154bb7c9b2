/* nightshift — the client commands on sessions: ls, show, logs, prompt, stop, pause, resume, diff
 * (see cli.h).  Each is one entry of `commands`: the flags it takes, its positional arguments,
 * its help and the function that does it over the shared client (client_http.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "common/cleanup.h"
#include "ids.h"

#define PROMPT_STDIN_MAX (1024 * 1024) /* the server takes 256 KiB: it says so when more comes */

/* The flags a command may take, beyond --server, --token-file and --help. */
enum {
        OPT_JSON = 1 << 0,
        OPT_FOLLOW = 1 << 1,
        OPT_AFTER = 1 << 2,
        OPT_FORCE = 1 << 3,
        OPT_STATE = 1 << 4,
        OPT_REPO = 1 << 5,
        OPT_LIMIT = 1 << 6,
        OPT_DRAFT = 1 << 7,
};

typedef struct cmd_args {
        const char *server, *token_file;
        bool json, follow, force, draft;
        const char *state, *repo;
        long limit;      /* 0: the server's default */
        long long after; /* logs: the seq to start after */
        char **pos;      /* the positional arguments; pos[0] is the session id where there is one */
} cmd_args;

typedef struct session_command {
        const char *name;
        unsigned opts;
        int npos;          /* how many positional arguments (exactly) */
        const char *usage; /* what --help prints before the common options */
        int (*run)(client_http *c, const cmd_args *a, ns_error *err);
} session_command;

static const char common_help[] =
        "  --server URL       the server: default $NIGHTSHIFT_URL, else the config file's `server`,\n"
        "                     else " CLIENT_DEFAULT_SERVER "\n"
        "  --token-file FILE  the API token (nightshift token create NAME): default $NIGHTSHIFT_TOKEN,\n"
        "                     else the config file's `token`\n"
        "The config file is $NIGHTSHIFT_CONFIG or ~/.config/nightshift/client.conf, `key value` lines\n"
        "(server, token) and # comments; holding a token, it must be private to you (chmod 600).\n"
        "Exit status: 0 done, 1 failed, 2 bad usage, 3 the server could not be reached.\n";

/* ---- output helpers ------------------------------------------------------------------------ */

static const char *str_of(const cJSON *o, const char *key) {
        return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

/* The API's JSON as it came, ending with a newline. */
static void print_body(const client_reply *reply) {
        if (!reply->len)
                return;
        fwrite(reply->body, 1, reply->len, stdout);
        if (reply->body[reply->len - 1] != '\n')
                putchar('\n');
}

/* `s` in a column of `width` bytes at most (a UTF-8 sequence is never split), control characters
 * as blanks; padded with blanks to `width` characters when `pad`. */
static void put_cell(const char *s, size_t width, bool pad) {
        size_t i = 0, chars = 0;
        if (!s || !*s)
                s = "-";
        while (s[i]) {
                size_t n = 1;
                while ((s[i + n] & 0xc0) == 0x80)
                        n++;
                if (i + n > width)
                        break;
                for (size_t k = 0; k < n; k++) {
                        unsigned char ch = (unsigned char) s[i + k];
                        putchar(ch < ' ' || ch == 0x7f ? ' ' : ch);
                }
                i += n;
                chars++;
        }
        while (pad && chars++ < width)
                putchar(' ');
}

/* "42s", "5m", "3h", "12d" since `ms` (milliseconds since the epoch). */
static void format_age(double ms, char *buf, size_t size) {
        double s = (double) time(NULL) - ms / 1000;
        if (!(ms > 0)) /* not a time (NaN too) */
                snprintf(buf, size, "-");
        else if (s < 60)
                snprintf(buf, size, "%.0fs", s < 0 ? 0 : s);
        else if (s < 3600)
                snprintf(buf, size, "%.0fm", s / 60);
        else if (s < 86400)
                snprintf(buf, size, "%.0fh", s / 3600);
        else
                snprintf(buf, size, "%.0fd", s / 86400);
}

/* ---- ls ------------------------------------------------------------------------------------ */

/* The id of the repository `which` names (its name or its URL/path) in a /repos answer, or NULL. */
static const char *repo_id_named(const cJSON *repos, const char *which) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(repos, "repos")) {
                const char *id = str_of(it, "id"), *name = str_of(it, "name"), *url = str_of(it, "url");
                if (id && ((name && !strcmp(name, which)) || (url && !strcmp(url, which))))
                        return id;
        }
        return NULL;
}

/* The name of repository `id` in a /repos answer, else the id. */
static const char *repo_name(const cJSON *repos, const char *id) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(repos, "repos")) {
                const char *rid = str_of(it, "id"), *name = str_of(it, "name");
                if (rid && name && !strcmp(rid, id))
                        return name;
        }
        return id;
}

static void print_sessions(const cJSON *sessions, const cJSON *repos) {
        const cJSON *s;
        printf("%-14s  %-12s  %-8s  %-16s  %-4s  %s\n", "ID", "STATE", "AGENT", "REPO", "AGE", "TITLE");
        cJSON_ArrayForEach(s, sessions) {
                char age[16];
                format_age(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(s, "created_at")), age, sizeof age);
                const char *repo = str_of(s, "repo");
                const char *title = str_of(s, "title") ? str_of(s, "title") : str_of(s, "prompt");
                put_cell(str_of(s, "id"), 14, true);
                fputs("  ", stdout);
                put_cell(str_of(s, "state"), 12, true);
                fputs("  ", stdout);
                put_cell(str_of(s, "agent"), 8, true);
                fputs("  ", stdout);
                put_cell(repo ? repo_name(repos, repo) : NULL, 16, true);
                printf("  %-4s  ", age);
                put_cell(title, 60, false);
                putchar('\n');
        }
}

static int cmd_ls(client_http *c, const cmd_args *a, ns_error *err) {
        _cleanup_(client_reply_clear) client_reply repos = { 0 }, reply = { 0 };
        bool repo_is_id = a->repo && sv_id_valid(a->repo, SV_ID_PREFIX_REPO);
        int r;
        if ((!a->json || (a->repo && !repo_is_id)) &&
            (r = client_http_request(c, "GET", "/api/v1/repos", NULL, &repos, err)) < 0)
                return r;
        const char *repo_id = a->repo;
        if (a->repo && !repo_is_id && !(repo_id = repo_id_named(repos.json, a->repo)))
                return ns_err(err, ENOENT, "no repository named '%.100s' (nightshift run registers one)", a->repo);
        _cleanup_free_ char *path = NULL, *state = a->state ? client_http_escape(c, a->state) : NULL,
                            *repo = repo_id ? client_http_escape(c, repo_id) : NULL;
        if ((a->state && !state) || (repo_id && !repo) ||
            asprintf(&path, "/api/v1/sessions?limit=%ld%s%s%s%s", a->limit ? a->limit : 100, state ? "&state=" : "",
                     state ? state : "", repo ? "&repo=" : "", repo ? repo : "") < 0)
                return ns_err(err, ENOMEM, "out of memory");
        if ((r = client_http_request(c, "GET", path, NULL, &reply, err)) < 0)
                return r;
        const cJSON *sessions = cJSON_GetObjectItemCaseSensitive(reply.json, "sessions");
        if (!cJSON_IsArray(sessions))
                return ns_err(err, EBADMSG, "the server's answer holds no sessions");
        if (a->json) {
                print_body(&reply);
                return 0;
        }
        print_sessions(sessions, repos.json);
        if (str_of(reply.json, "next_cursor"))
                fprintf(stderr, "(more sessions than these %d: --limit N, up to 1000)\n", cJSON_GetArraySize(sessions));
        return 0;
}

/* ---- show, logs ---------------------------------------------------------------------------- */

static void print_value(const char *key, const cJSON *v) {
        size_t klen = strlen(key);
        if (cJSON_IsNumber(v) && klen > 3 && !strcmp(key + klen - 3, "_at")) {
                time_t t = (time_t) (v->valuedouble / 1000);
                struct tm tm;
                char when[32], age[16];
                gmtime_r(&t, &tm);
                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%SZ", &tm);
                format_age(v->valuedouble, age, sizeof age);
                printf("%s (%s ago)", when, age);
        } else if (cJSON_IsNumber(v)) {
                printf("%.17g", v->valuedouble);
        } else if (cJSON_IsString(v)) {
                put_cell(v->valuestring, 4096, false);
        } else if (cJSON_IsBool(v)) {
                fputs(cJSON_IsTrue(v) ? "yes" : "no", stdout);
        } else if (cJSON_IsNull(v)) {
                putchar('-');
        } else {
                _cleanup_free_ char *s = cJSON_PrintUnformatted(v);
                put_cell(s, 4096, false);
        }
}

/* METHOD /api/v1/sessions/ID[/SUB] (the id is checked: nothing to escape), the answer in *reply. */
static int session_request(client_http *c, const char *method, const char *sid, const char *sub, const cJSON *body,
                           client_reply *reply, ns_error *err) {
        char path[96];
        snprintf(path, sizeof path, "/api/v1/sessions/%.20s%s%.20s", sid, sub ? "/" : "", sub ? sub : "");
        return client_http_request(c, method, path, body, reply, err);
}

static int cmd_show(client_http *c, const cmd_args *a, ns_error *err) {
        _cleanup_(client_reply_clear) client_reply reply = { 0 };
        int r = session_request(c, "GET", a->pos[0], NULL, NULL, &reply, err);
        if (r < 0)
                return r;
        if (!cJSON_IsObject(reply.json))
                return ns_err(err, EBADMSG, "the server's answer is not a session");
        if (a->json) {
                print_body(&reply);
                return 0;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, reply.json) {
                put_cell(it->string, 14, true);
                putchar(' ');
                print_value(it->string, it);
                putchar('\n');
        }
        return 0;
}

static int cmd_logs(client_http *c, const cmd_args *a, ns_error *err) {
        return cli_events_print(c, a->pos[0], a->after, a->follow ? CLI_FOLLOW_SESSION : CLI_FOLLOW_NONE, a->json, NULL,
                                err);
}

/* ---- prompt, stop, pause, resume, diff ----------------------------------------------------- */

static int read_stdin(char **out, ns_error *err) {
        size_t len = 0, cap = 65536;
        _cleanup_free_ char *buf = malloc(cap);
        if (!buf)
                return ns_err(err, ENOMEM, "out of memory");
        for (;;) {
                if (len + 1 == cap) {
                        if (cap >= PROMPT_STDIN_MAX)
                                return ns_err(err, EFBIG, "the prompt on stdin is larger than %d bytes", PROMPT_STDIN_MAX);
                        char *p = realloc(buf, cap * 2);
                        if (!p)
                                return ns_err(err, ENOMEM, "out of memory");
                        buf = p;
                        cap *= 2;
                }
                size_t n = fread(buf + len, 1, cap - 1 - len, stdin);
                len += n;
                if (n == 0)
                        break;
        }
        if (ferror(stdin))
                return ns_err_sys(err, EIO, "reading the prompt from stdin");
        if (memchr(buf, '\0', len))
                return ns_err(err, EINVAL, "the prompt on stdin holds a NUL byte");
        buf[len] = '\0';
        *out = TAKE_PTR(buf);
        return 0;
}

static int cmd_prompt(client_http *c, const cmd_args *a, ns_error *err) {
        _cleanup_free_ char *from_stdin = NULL;
        const char *text = a->pos[1];
        int r;
        if (!strcmp(text, "-") && (r = read_stdin(&from_stdin, err)) < 0)
                return r;
        if (from_stdin)
                text = from_stdin;
        if (!*text)
                return ns_err(err, EINVAL, "the prompt is empty");
        _cleanup_cjson_ cJSON *body = cJSON_CreateObject();
        if (!body || !cJSON_AddStringToObject(body, "text", text))
                return ns_err(err, ENOMEM, "out of memory");
        _cleanup_(client_reply_clear) client_reply reply = { 0 };
        if ((r = session_request(c, "POST", a->pos[0], "prompts", body, &reply, err)) < 0)
                return r;
        if (a->json)
                print_body(&reply);
        else
                printf("prompt %.0f queued on %s\n", cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(reply.json, "id")),
                       a->pos[0]);
        return 0;
}

/* POST /api/v1/sessions/ID/ACTION; the session as it is then. */
static int session_action(client_http *c, const cmd_args *a, const char *action, const cJSON *body, ns_error *err) {
        _cleanup_(client_reply_clear) client_reply reply = { 0 };
        int r = session_request(c, "POST", a->pos[0], action, body, &reply, err);
        if (r < 0)
                return r;
        if (a->json)
                print_body(&reply);
        else
                printf("%s: %s\n", a->pos[0], str_of(reply.json, "state") ? str_of(reply.json, "state") : "?");
        return 0;
}

static int cmd_stop(client_http *c, const cmd_args *a, ns_error *err) {
        _cleanup_cjson_ cJSON *body = cJSON_CreateObject();
        if (!body || !cJSON_AddBoolToObject(body, "force", a->force))
                return ns_err(err, ENOMEM, "out of memory");
        return session_action(c, a, "stop", body, err);
}

static int cmd_pause(client_http *c, const cmd_args *a, ns_error *err) {
        return session_action(c, a, "pause", NULL, err);
}

static int cmd_resume(client_http *c, const cmd_args *a, ns_error *err) {
        return session_action(c, a, "resume", NULL, err);
}

static int cmd_diff(client_http *c, const cmd_args *a, ns_error *err) {
        _cleanup_(client_reply_clear) client_reply reply = { 0 };
        int r = session_request(c, "GET", a->pos[0], "diff", NULL, &reply, err);
        if (r < 0)
                return r;
        const char *diff = str_of(reply.json, "diff");
        if (!diff)
                return ns_err(err, EBADMSG, "the server's answer holds no diff");
        if (a->json) {
                print_body(&reply);
                return 0;
        }
        fputs(diff, stdout);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply.json, "truncated")))
                fprintf(stderr, "(the server cut this diff: it is larger than it sends)\n");
        return 0;
}

static int cmd_pr(client_http *c, const cmd_args *a, ns_error *err) {
        _cleanup_(client_reply_clear) client_reply reply = { 0 };
        cJSON *body = cJSON_CreateObject();
        if (!body)
                return ns_err(err, ENOMEM, "out of memory");
        cJSON_AddBoolToObject(body, "draft", a->draft);
        int r = session_request(c, "POST", a->pos[0], "pr", body, &reply, err);
        cJSON_Delete(body);
        if (r < 0)
                return r;
        if (a->json)
                print_body(&reply);
        else
                printf("%s %s\n", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply.json, "existing")) ? "pull request (already open):" : "opened pull request",
                       str_of(reply.json, "url") ? str_of(reply.json, "url") : "?");
        return 0;
}

static int cmd_push(client_http *c, const cmd_args *a, ns_error *err) {
        _cleanup_(client_reply_clear) client_reply reply = { 0 };
        int r = session_request(c, "POST", a->pos[0], "push", NULL, &reply, err);
        if (r < 0)
                return r;
        if (a->json)
                print_body(&reply);
        else
                printf("pushed %s (%s) to %s\n", str_of(reply.json, "branch") ? str_of(reply.json, "branch") : "?",
                       str_of(reply.json, "sha") ? str_of(reply.json, "sha") : "?",
                       str_of(reply.json, "remote") ? str_of(reply.json, "remote") : "?");
        return 0;
}

/* ---- the table and the driver -------------------------------------------------------------- */

static const session_command commands[] = {
        { "ls", OPT_JSON | OPT_STATE | OPT_REPO | OPT_LIMIT, 0,
          "usage: nightshift ls [--state S] [--repo R] [--limit N] [--json]\n"
          "The sessions, oldest first: id, state, agent, repository, age, title.\n"
          "  --state S          only sessions in state S (queued, running, idle, waiting, paused,\n"
          "                     completed, failed, stopped, archived)\n"
          "  --repo R           only sessions on repository R (its id, name or URL)\n"
          "  --limit N          at most N sessions (1..1000; default 100)\n",
          cmd_ls },
        { "show", OPT_JSON, 1,
          "usage: nightshift show ID [--json]\n"
          "One session: its state, agent, repository, branch, commits and times.\n",
          cmd_show },
        { "logs", OPT_JSON | OPT_FOLLOW | OPT_AFTER, 1,
          "usage: nightshift logs ID [-f|--follow] [--after SEQ] [--json]\n"
          "The session's events: the agent's output as it is, messages, tool calls, status changes,\n"
          "commits.  --json prints them as one JSON array of the API's event objects.\n"
          "  -f, --follow       keep printing new events until the session is over (completed,\n"
          "                     failed, stopped or archived), then exit 0; Ctrl-C exits 130\n"
          "  --after SEQ        only the events after number SEQ\n",
          cmd_logs },
        { "prompt", OPT_JSON, 2,
          "usage: nightshift prompt ID TEXT|- [--json]\n"
          "Queue TEXT (- : read it from stdin) as the session's next prompt; it runs when the\n"
          "current turn is over.\n",
          cmd_prompt },
        { "stop", OPT_JSON | OPT_FORCE, 1,
          "usage: nightshift stop ID [--force] [--json]\n"
          "Stop the session: its turn is interrupted, what it changed is committed, its sandbox goes.\n"
          "  --force            kill the agent at once instead of interrupting it first\n",
          cmd_stop },
        { "pause", OPT_JSON, 1,
          "usage: nightshift pause ID [--json]\n"
          "Freeze the session's sandbox (nightshift resume ID thaws it).\n",
          cmd_pause },
        { "resume", OPT_JSON, 1,
          "usage: nightshift resume ID [--json]\n"
          "Thaw a paused session.\n",
          cmd_resume },
        { "diff", OPT_JSON, 1,
          "usage: nightshift diff ID [--json]\n"
          "The unified diff of the session's branch against its base.\n",
          cmd_diff },
        { "push", OPT_JSON, 1,
          "usage: nightshift push ID [--json]\n"
          "Push the session's branch (nightshift/ID) from the server's mirror to the repository, with\n"
          "the vault's GIT_TOKEN or GIT_SSH_KEY.  Refused when its new commits hold a secret, a key\n"
          "or touch a protected path; never forced.\n",
          cmd_push },
        { "pr", OPT_JSON | OPT_DRAFT, 1,
          "usage: nightshift pr ID [--draft] [--json]\n"
          "Push the session's branch (as `push` does) and open its pull request on GitHub with the\n"
          "vault's GITHUB_TOKEN; when one is open already, print that one.\n"
          "  --draft            open it as a draft\n",
          cmd_pr },
};

static const session_command *command_named(const char *name) {
        for (size_t i = 0; name && i < ARRAY_SIZE(commands); i++)
                if (!strcmp(commands[i].name, name))
                        return &commands[i];
        return NULL;
}

bool cli_session_command_exists(const char *name) {
        return command_named(name) != NULL;
}

static void help(const session_command *cmd) {
        fputs(cmd->usage, stdout);
        fputs(cmd->opts & OPT_JSON ? "  --json             print the API's JSON, nothing else\n" : "", stdout);
        fputs(common_help, stdout);
}

/* After a usage error: the usage line, and where to read more. */
static int usage_error(const session_command *cmd) {
        fprintf(stderr, "%.*sTry 'nightshift %s --help'.\n", (int) (strchr(cmd->usage, '\n') - cmd->usage + 1), cmd->usage,
                cmd->name);
        return -1;
}

/* 0: go on; 1: --help was printed; -1: a usage error was printed. */
static int parse_args(const session_command *cmd, int argc, char **argv, cmd_args *a) {
        static const struct option options[] = {
                { "server", required_argument, NULL, 'S' }, { "token-file", required_argument, NULL, 'T' },
                { "json", no_argument, NULL, 'j' },          { "follow", no_argument, NULL, 'f' },
                { "after", required_argument, NULL, 'a' },   { "force", no_argument, NULL, 'F' },
                { "state", required_argument, NULL, 's' },   { "repo", required_argument, NULL, 'r' },
                { "limit", required_argument, NULL, 'l' },   { "help", no_argument, NULL, 'h' },
                { "draft", no_argument, NULL, 'D' },         { 0 },
        };
        static const struct {
                int ch;
                unsigned bit;
        } bits[] = { { 'j', OPT_JSON }, { 'f', OPT_FOLLOW }, { 'a', OPT_AFTER }, { 'F', OPT_FORCE },
                     { 's', OPT_STATE }, { 'r', OPT_REPO },  { 'l', OPT_LIMIT }, { 'D', OPT_DRAFT } };
        *a = (cmd_args){ 0 };
        optind = 1;
        opterr = 0;
        int ch;
        while ((ch = getopt_long(argc, argv, "hf", options, NULL)) != -1) {
                for (size_t i = 0; i < ARRAY_SIZE(bits); i++)
                        if (bits[i].ch == ch && !(cmd->opts & bits[i].bit)) {
                                for (size_t k = 0; options[k].name; k++)
                                        if (options[k].val == ch)
                                                fprintf(stderr, "nightshift %s: --%s is not an option of this command\n",
                                                        cmd->name, options[k].name);
                                return usage_error(cmd);
                        }
                char *end = NULL;
                switch (ch) {
                case 'S': a->server = optarg; break;
                case 'T': a->token_file = optarg; break;
                case 'j': a->json = true; break;
                case 'f': a->follow = true; break;
                case 'F': a->force = true; break;
                case 'D': a->draft = true; break;
                case 's': a->state = optarg; break;
                case 'r': a->repo = optarg; break;
                case 'a':
                        a->after = strtoll(optarg, &end, 10);
                        if (*end || a->after < 0 || !*optarg)
                                return fprintf(stderr, "nightshift %s: --after takes a number ≥ 0\n", cmd->name), -1;
                        break;
                case 'l':
                        a->limit = strtol(optarg, &end, 10);
                        if (*end || a->limit < 1 || a->limit > 1000 || !*optarg)
                                return fprintf(stderr, "nightshift %s: --limit takes a number 1..1000\n", cmd->name), -1;
                        break;
                case 'h': help(cmd); return 1;
                default:
                        fprintf(stderr, "nightshift %s: unknown option or missing value: '%s'\n", cmd->name,
                                argv[optind - 1]);
                        return usage_error(cmd);
                }
        }
        if (argc - optind != cmd->npos) {
                fprintf(stderr, "nightshift %s: %s\n", cmd->name, argc - optind < cmd->npos ? "missing arguments" : "too many arguments");
                return usage_error(cmd);
        }
        a->pos = argv + optind;
        if (cmd->npos && !sv_id_valid(a->pos[0], SV_ID_PREFIX_SESSION)) {
                fprintf(stderr, "nightshift %s: '%.64s' is not a session id (s- and 12 letters or digits)\n", cmd->name,
                        a->pos[0]);
                return -1;
        }
        return 0;
}

int cli_session_command(int argc, char **argv) {
        const session_command *cmd = command_named(argc > 0 ? argv[0] : NULL);
        cmd_args a;
        if (!cmd)
                return CLIENT_EXIT_USAGE;
        switch (parse_args(cmd, argc, argv, &a)) {
        case 1: return 0;
        case -1: return CLIENT_EXIT_USAGE;
        }
        ns_error err = { 0 };
        _cleanup_(client_http_close) client_http c = { 0 };
        int r = client_http_open(&c, a.server, a.token_file, &err);
        if (r >= 0)
                r = cmd->run(&c, &a, &err);
        fflush(stdout);
        if (r < 0 && r != -CLIENT_E_INTERRUPTED)
                fprintf(stderr, "nightshift %s: %s\n", cmd->name, err.msg);
        return client_exit_status(r);
}
