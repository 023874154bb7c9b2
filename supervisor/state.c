#include "state.h"

#include <errno.h>
#include <string.h>

static const char *const names[SV_STATE_COUNT] = {
        [SV_QUEUED] = "queued",       [SV_PROVISIONING] = "provisioning", [SV_RUNNING] = "running",
        [SV_IDLE] = "idle",           [SV_WAITING] = "waiting",           [SV_PAUSED] = "paused",
        [SV_COMPLETED] = "completed", [SV_FAILED] = "failed",             [SV_STOPPED] = "stopped",
        [SV_ARCHIVED] = "archived",
};

#define B(s) (1u << (s))
#define ENDS (B(SV_FAILED) | B(SV_STOPPED))

/* allowed[from] = set of states reachable in one step.  failed and stopped are reachable from
 * every live state (a sandbox that vanished, a user's stop); completed only where a turn can have
 * ended (running with --once, idle, waiting at an idle timeout or by the user). */
static const unsigned allowed[SV_STATE_COUNT] = {
        [SV_QUEUED] = B(SV_PROVISIONING) | ENDS,
        [SV_PROVISIONING] = B(SV_RUNNING) | ENDS,
        [SV_RUNNING] = B(SV_IDLE) | B(SV_WAITING) | B(SV_PAUSED) | B(SV_COMPLETED) | ENDS,
        [SV_IDLE] = B(SV_RUNNING) | B(SV_PAUSED) | B(SV_COMPLETED) | ENDS,
        [SV_WAITING] = B(SV_RUNNING) | B(SV_PAUSED) | B(SV_COMPLETED) | ENDS,
        /* resume returns to whatever the session was doing when frozen */
        [SV_PAUSED] = B(SV_RUNNING) | B(SV_IDLE) | B(SV_WAITING) | ENDS,
        [SV_COMPLETED] = B(SV_ARCHIVED),
        [SV_FAILED] = B(SV_ARCHIVED),
        [SV_STOPPED] = B(SV_ARCHIVED),
        [SV_ARCHIVED] = 0,
};

const char *sv_state_name(sv_state s) {
        return (unsigned) s < SV_STATE_COUNT ? names[s] : NULL;
}

int sv_state_parse(const char *name, sv_state *out) {
        for (unsigned i = 0; name && i < SV_STATE_COUNT; i++)
                if (strcmp(name, names[i]) == 0) {
                        *out = (sv_state) i;
                        return 0;
                }
        return -EINVAL;
}

bool sv_state_can_transition(sv_state from, sv_state to) {
        if ((unsigned) from >= SV_STATE_COUNT || (unsigned) to >= SV_STATE_COUNT)
                return false;
        return (allowed[from] & B(to)) != 0;
}

bool sv_state_is_end(sv_state s) {
        return s == SV_COMPLETED || s == SV_FAILED || s == SV_STOPPED;
}
