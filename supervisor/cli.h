/* nightshift — the command-line client of a running `nightshift serve` (HTTP, libcurl). */
#pragma once

#include <stdbool.h>

#include "client_http.h"

/* `nightshift run [--server URL] --repo PATH|URL|NAME [--agent A] [--base REF] [--once] [--follow]
 * [--env K=V]... [--connect PORT]... PROMPT`: registers the repository when the server does not
 * know it yet, starts a session, prints its id; with --follow prints its events until the turn
 * ends and exits 0 when it succeeded, 1 when it failed.  argv[0] is "run". */
int cli_run(int argc, char **argv);

/* `nightshift token create NAME | ls | revoke NAME|ID [--config FILE] [--data-dir DIR] [--json]`:
 * the API tokens, on the data dir's database directly (no server needed).  create prints the new
 * token's value once (only its hash is kept).  Run as root, it acts as the data dir's owner, so
 * that the database stays the server's.  argv[0] is "token". */
int cli_token(int argc, char **argv);

/* `nightshift layers ls | rm NAME | gc [--max-bytes N] [--max-age DAYS] [--dry-run]
 * [--config FILE] [--sandboxd-socket PATH] [--json]`: the layer store (setup layers) through
 * sandboxd's socket, as the server's user (or root).  argv[0] is "layers". */
int cli_layers(int argc, char **argv);

/* The client commands on sessions, each with --help, --server URL and --token-file FILE
 * (client_http.h), --json where it prints data:
 *   ls [--state S] [--repo R] [--limit N]   show ID   logs ID [-f] [--after SEQ]
 *   prompt ID TEXT|-   stop ID [--force]   pause ID   resume ID   diff ID
 * cli_session_command_exists says whether `name` is one of them; cli_session_command runs the
 * one named by argv[0] and returns the exit status: 0, 1 (failed: "nightshift CMD: MESSAGE (HTTP
 * STATUS)" on stderr), 2 (usage), 3 (the server could not be reached), 130 (interrupted). */
bool cli_session_command_exists(const char *name);
int cli_session_command(int argc, char **argv);

/* How far cli_events_print goes. */
typedef enum cli_follow {
        CLI_FOLLOW_NONE,    /* the events there are now */
        CLI_FOLLOW_TURN,    /* until the current turn ends (the session idle, waiting or over) */
        CLI_FOLLOW_SESSION, /* until the session is over: completed, failed, stopped or archived */
} cli_follow;

/* Print the events of session `sid` with a seq above `after`, paging through the API and, when
 * following, polling every quarter of a second; readable text (command_output as it is, on stdout
 * or stderr as the agent wrote it) or, with `json`, one JSON array of the API's event objects.
 * While following, SIGINT ends it (closing the array): -CLIENT_E_INTERRUPTED.  *turn_failed (may
 * be NULL) tells, for CLI_FOLLOW_TURN, whether the turn failed or the session ended otherwise than
 * completed.  Returns 0 or -errno (client_http_request's errors). */
int cli_events_print(client_http *c, const char *sid, long long after, cli_follow follow, bool json, bool *turn_failed,
                     ns_error *err);

/* `nightshift secret set NAME [--repo R] | ls [--repo R] [--json] | rm NAME [--repo R]` (cli_secret.c):
 * the vault through the server's API; `set` reads the value from stdin. */
int cli_secret(int argc, char **argv);
/* `nightshift notify add URL [...] | ls | rm ID | log [--session ID]` (cli_notify.c): notification
 * endpoints and their delivery log, through the server. */
int cli_notify(int argc, char **argv);
