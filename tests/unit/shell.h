/* Unit tests' shell helpers: run a command line built like printf, or capture its output. */
#pragma once

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* A temp root for a git test in T (made from `tmpl`, e.g. "/tmp/ns-x-XXXXXX"), with the git CLI
 * kept hermetic: HOME beneath it, no system or global config.  0, or the exit status main should
 * return: 1 (could not make it; "Bail out!" printed) or 77 (no git CLI; the skip printed). */
static inline int shell_git_root(char *T, size_t size, const char *tmpl) {
        snprintf(T, size, "%s", tmpl);
        if (!mkdtemp(T)) {
                printf("Bail out! mkdtemp\n");
                return 1;
        }
        if (sh("git --version >/dev/null 2>&1") != 0) {
                printf("1..0 # SKIP git CLI not installed\n");
                rmdir(T);
                return 77;
        }
        char home[4096];
        snprintf(home, sizeof home, "%s/home", T);
        mkdir(home, 0755);
        setenv("HOME", home, 1);
        setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
        setenv("GIT_CONFIG_GLOBAL", "/dev/null", 1); /* the CLI's; libgit2 ignores it and uses $HOME */
        return 0;
}
