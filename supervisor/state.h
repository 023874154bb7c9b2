/* nightshift supervisor — the session state machine (DESIGN.md, "Sessions and git").
 *
 *   queued → provisioning → running → idle ⇄ running → completed | failed | stopped
 *   running → waiting (the agent asked a question; the next prompt answers) → running
 *   live states ⇄ paused (frozen);  any end → archived
 *
 * The legal transitions live in one table in state.c; the database refuses everything else. */
#pragma once

#include <stdbool.h>

typedef enum sv_state {
        SV_QUEUED,
        SV_PROVISIONING,
        SV_RUNNING,
        SV_IDLE,
        SV_WAITING,
        SV_PAUSED,
        SV_COMPLETED,
        SV_FAILED,
        SV_STOPPED,
        SV_ARCHIVED,
        SV_STATE_COUNT
} sv_state;

/* "queued", "provisioning", ...; NULL for an out-of-range value. */
const char *sv_state_name(sv_state s);

/* Parse a state name; returns 0 and sets *out, or -EINVAL. */
int sv_state_parse(const char *name, sv_state *out);

/* True when a session may go from `from` to `to`.  A state never transitions to itself. */
bool sv_state_can_transition(sv_state from, sv_state to);

/* completed, failed or stopped: the session is over (archived is "over and filed away"). */
bool sv_state_is_end(sv_state s);
