/* nightshift supervisor — readiness and shutdown notices to the service manager.
 *
 * Under systemd (Type=notify, packaging/systemd/nightshift.service) the manager learns from these
 * when `nightshift serve` accepts connections, so that `systemctl start` returns and units ordered
 * after it start only then, and when it is going away.  The address comes from $NOTIFY_SOCKET;
 * without it (started by hand, by scripts/setup.sh's fallback, by the tests) every call does
 * nothing and returns 0. */
#pragma once

#include "common/err.h"

/* Send READY=1, with STATUS=<status> when status is not NULL (a line feed in it becomes a space).
 * Call once, when the HTTP listener is bound and the event loop is about to serve it.  Returns 1
 * when the notice was sent, 0 when $NOTIFY_SOCKET is unset, or -errno with *err filled when it
 * could not be sent (a bad address, a socket nobody listens on): worth a warning, not an exit. */
int sv_notify_ready(const char *status, ns_error *err);

/* Send STOPPING=1 (and STATUS=<status> as above): the server has stopped accepting work and is
 * shutting down.  Returns as sv_notify_ready. */
int sv_notify_stopping(const char *status, ns_error *err);
