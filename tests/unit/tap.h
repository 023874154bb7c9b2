/* A few lines of TAP for the unit tests: ok(cond, fmt...) numbers and prints each check;
 * tap_done() prints the plan and returns the exit status (0 when every check passed). */
#pragma once

#include <stdarg.h>
#include <stdio.h>

static int tap_num, tap_failed;

__attribute__((format(printf, 2, 3))) static void ok(int cond, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        printf("%sok %d - ", cond ? "" : "not ", ++tap_num);
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
        if (!cond)
                tap_failed++;
        fflush(stdout);
}

static inline int tap_done(void) {
        printf("1..%d\n", tap_num);
        return tap_failed ? 1 : 0;
}
