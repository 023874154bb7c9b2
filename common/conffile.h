/* nightshift — "key value" configuration files, shared by the daemons.
 *
 * One setting per line: a key, then blanks or '=', then the value (the rest of the line); blank
 * lines and lines starting with '#' are ignored.  Keys are the long flag names without "--", so
 * a file and the command line say the same things and flags, applied afterwards, win. */
#pragma once

#include "err.h"

/* Call apply(ctx, key, value, err) for every setting in `path`, in order.  Stops at the first
 * error, which is returned with "path:line" prefixed.  Lines longer than 4095 bytes are refused. */
int ns_conffile_load(const char *path, int (*apply)(void *ctx, const char *key, const char *val, ns_error *err),
                     void *ctx, ns_error *err);
