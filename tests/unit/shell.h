/* Unit tests' shell helpers: run a command line built like printf, or capture its output. */
#pragma once

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

/* Run a shell command line; returns its exit status (or -1). */
static inline int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int sh(const char *fmt, ...) {
        char cmd[4096];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(cmd, sizeof cmd, fmt, ap);
        va_end(ap);
        int st = system(cmd);
        return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Run a command and capture its stdout (trailing newlines stripped) into buf; its exit status. */
static inline int cap(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline int cap(char *buf, size_t size, const char *fmt, ...) {
        char cmd[4096];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(cmd, sizeof cmd, fmt, ap);
        va_end(ap);
        buf[0] = '\0';
        FILE *p = popen(cmd, "r");
        if (!p)
                return -1;
        size_t n = fread(buf, 1, size - 1, p);
        buf[n] = '\0';
        while (n > 0 && buf[n - 1] == '\n')
                buf[--n] = '\0';
        int st = pclose(p);
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
