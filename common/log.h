/* nightshift — logging for top-level code only (main loops, dispatch).  Lines go to stderr with a
 * syslog-style "<N>" level prefix that journald understands; library code returns ns_error. */
#pragma once

#include <stddef.h>

enum ns_log_level { NS_LOG_ERR = 3, NS_LOG_WARN = 4, NS_LOG_NOTICE = 5, NS_LOG_INFO = 6, NS_LOG_DEBUG = 7 };

/* Messages above `max` are dropped.  Default NS_LOG_INFO. */
void ns_log_set_level(int max);
void ns_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A filter every line passes through before it is written (the supervisor's secret redaction):
 * it may rewrite the NUL-terminated line in place within `cap` bytes.  Set once at start-up,
 * before any thread exists; `fn` must be thread-safe.  NULL removes it. */
void ns_log_set_filter(void (*fn)(void *ctx, char *line, size_t cap), void *ctx);

#define log_error(...) ns_log(NS_LOG_ERR, __VA_ARGS__)
#define log_warn(...) ns_log(NS_LOG_WARN, __VA_ARGS__)
#define log_notice(...) ns_log(NS_LOG_NOTICE, __VA_ARGS__)
#define log_info(...) ns_log(NS_LOG_INFO, __VA_ARGS__)
#define log_debug(...) ns_log(NS_LOG_DEBUG, __VA_ARGS__)
