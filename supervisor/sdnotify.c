#include "sdnotify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

static int notify(const char *state, const char *status, ns_error *err) {
        char clean[256] = "";
        if (status) {
                /* The notice is one assignment per line: a line feed in the status would start
                 * another one. */
                snprintf(clean, sizeof clean, "%s", status);
                for (char *p = clean; (p = strchr(p, '\n')); p++)
                        *p = ' ';
        }
        /* unset_environment = 0: STOPPING=1 goes to the same address later.  The supervisor
         * starts no process of its own (sandboxes are sandboxd's), so nothing inherits it. */
        int r = sd_notifyf(0, "%s%s%s", state, status ? "\nSTATUS=" : "", clean);
        if (r < 0) {
                const char *addr = getenv("NOTIFY_SOCKET");
                return ns_err_sys(err, -r, "sd_notify %s to NOTIFY_SOCKET=%.100s", state, addr ? addr : "");
        }
        return r > 0 ? 1 : 0;
}

int sv_notify_ready(const char *status, ns_error *err) {
        return notify("READY=1", status, err);
}

int sv_notify_stopping(const char *status, ns_error *err) {
        return notify("STOPPING=1", status, err);
}
