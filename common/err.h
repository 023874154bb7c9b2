/* nightshift — the one error type.
 *
 * Every fallible function takes `ns_error *err`, returns 0 (or a non-negative value) on success
 * and a negative errno on failure after filling *err.  Only top-level code (main loops, request
 * dispatch) logs or reports an error; everything below returns it. */
#pragma once

#include <errno.h>
#include <stdarg.h>

#define NS_ERROR_MSG_MAX 256

typedef struct ns_error {
        int code;                    /* positive errno value; 0 = no error */
        char msg[NS_ERROR_MSG_MAX];  /* human-readable, no trailing newline */
} ns_error;

/* Fill *err with `code` (a positive errno; 0 becomes EIO) and a printf-style message, and return
 * -code.  `err` may be NULL, in which case only the return value is produced. */
int ns_err(ns_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Like ns_err, with ": strerror(code)" appended to the message. */
int ns_err_sys(ns_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prefix the message already in *err with more context ("context: old message"); returns -code. */
int ns_err_wrap(ns_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reset *err to "no error". */
void ns_err_clear(ns_error *err);

/* Short symbolic name of an errno ("EINVAL"), or "EUNKNOWN". */
const char *ns_errno_name(int code);
