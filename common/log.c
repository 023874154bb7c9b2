#include "log.h"

#include <stdarg.h>
#include <stdio.h>

/* The one process-wide setting outside a context struct: it is set once at start-up, before any
 * thread exists, and only read afterwards. */
static int log_max_level = NS_LOG_INFO;
static void (*log_filter)(void *ctx, char *line, size_t cap);
static void *log_filter_ctx;

void ns_log_set_filter(void (*fn)(void *ctx, char *line, size_t cap), void *ctx) {
        log_filter = fn;
        log_filter_ctx = ctx;
}

void ns_log_set_level(int max) {
        log_max_level = max;
}

void ns_log(int level, const char *fmt, ...) {
        if (level > log_max_level)
                return;
        char line[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        if (log_filter)
                log_filter(log_filter_ctx, line, sizeof line);
        fprintf(stderr, "<%d>%s\n", level, line);
}
