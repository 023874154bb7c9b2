/* nightshift — the command-line client of a running `nightshift serve` (HTTP, libcurl). */
#pragma once

/* `nightshift run [--server URL] --repo PATH|URL|NAME [--agent A] [--base REF] [--once] [--follow]
 * [--env K=V]... [--connect PORT]... PROMPT`: registers the repository when the server does not
 * know it yet, starts a session, prints its id; with --follow prints its events until the turn
 * ends and exits 0 when it succeeded, 1 when it failed.  argv[0] is "run". */
int cli_run(int argc, char **argv);
