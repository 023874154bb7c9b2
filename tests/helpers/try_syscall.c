/* try_syscall: run inside a sandbox by the integration tests; makes syscalls the filter must refuse
 * and prints what happened, one "NAME RESULT" line per call:
 *
 *   try_syscall mount clone3 tiocsti      ->  mount EPERM / clone3 ENOSYS / tiocsti EPERM
 *   try_syscall --all                     every call below, in this order
 *   try_syscall --list                    the names, one per line
 *
 * RESULT is the errno name, OK if the call succeeded, or KILLED(SIGxxx) if it killed the process.
 * The calls come from sc_denied_probes() (the list the filter was built from), made with the same
 * bad pointers, fds and flags, so that a call the filter did NOT stop fails with
 * EFAULT/EBADF/EINVAL/ESRCH (as bubblewrap's try-syscall does) instead of the filter's
 * EPERM/ENOSYS.  A few calls test the sandbox rather than the filter: mknod_block (needs
 * CAP_MKNOD), setuid0, and the foreign ABIs int80 (i386 int $0x80) and x32.
 *
 * Every call runs in a forked child (a call that succeeds, such as an unfiltered unshare, cannot
 * change the later ones; one that kills, kills only the child); the parent prints.  Exit status:
 * 0, or 2 for an unknown name or a usage error. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandboxd/seccomp.h"

#define X32_BIT 0x40000000

/* Each returns 0 on success or an errno. */
static int try_probe(const struct sc_probe *p) {
        long r = syscall(p->nr, p->args[0], p->args[1], p->args[2], p->args[3], p->args[4], p->args[5]);
        return r < 0 ? errno : 0;
}

static int try_mknod_block(void) {
        char path[64];
        snprintf(path, sizeof path, "/tmp/try_syscall-blk-%d", (int) getpid());
        if (mknod(path, S_IFBLK | 0600, makedev(7, 0)) < 0)
                return errno;
        unlink(path);
        return 0;
}

static int try_setuid0(void) {
        return setuid(0) < 0 ? errno : 0;
}

static int try_int80(void) {
        long r = 20; /* i386 getpid */
        __asm__ volatile("int $0x80" : "+a"(r) : : "memory", "r8", "r9", "r10", "r11");
        return r < 0 ? (int) -r : 0;
}

static int try_x32(void) {
        return syscall(X32_BIT | __NR_getpid) < 0 ? errno : 0;
}

static const struct special {
        const char *name;
        int (*fn)(void);
} specials[] = {
        { "mknod_block", try_mknod_block },
        { "setuid0", try_setuid0 },
        { "int80", try_int80 },
        { "x32", try_x32 },
};
#define N_SPECIALS (sizeof specials / sizeof specials[0])

/* Short names the callers may use for probes named after a variant. */
static const char *alias(const char *name) {
        if (!strcmp(name, "clone"))
                return "clone_newuser";
        return name;
}

static void print_result(const char *name, int st) {
        if (WIFEXITED(st)) {
                int e = WEXITSTATUS(st);
                const char *n = e ? strerrorname_np(e) : "OK";
                if (n)
                        printf("%s %s\n", name, n);
                else
                        printf("%s E%d\n", name, e);
        } else if (WIFSIGNALED(st)) {
                printf("%s KILLED(SIG%s)\n", name, sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "?");
        } else {
                printf("%s STATUS(%#x)\n", name, st);
        }
        fflush(stdout);
}

/* Run one call by name in a forked child; 0, or -1 if the name is unknown. */
static int run(const char *asked) {
        const char *name = alias(asked);
        size_t n;
        const struct sc_probe *probes = sc_denied_probes(&n);
        const struct sc_probe *probe = NULL;
        const struct special *special = NULL;
        for (size_t i = 0; i < n && !probe; i++)
                if (!strcmp(probes[i].name, name))
                        probe = &probes[i];
        for (size_t i = 0; i < N_SPECIALS && !probe && !special; i++)
                if (!strcmp(specials[i].name, name))
                        special = &specials[i];
        if (!probe && !special) {
                printf("%s UNKNOWN\n", asked);
                fflush(stdout);
                return -1;
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
                printf("%s FORK_FAILED(%s)\n", asked, strerrorname_np(errno));
                return 0;
        }
        if (pid == 0) {
                /* A process killed by seccomp may dump core: not into the workspace. */
                prctl(PR_SET_DUMPABLE, 0);
                /* A fault must kill the child, not be reported by a sanitizer's handler. */
                signal(SIGSEGV, SIG_DFL);
                signal(SIGBUS, SIG_DFL);
                struct rlimit no_core = { 0, 0 };
                setrlimit(RLIMIT_CORE, &no_core);
                _exit((probe ? try_probe(probe) : special->fn()) & 0xff);
        }
        int st;
        while (waitpid(pid, &st, 0) < 0)
                if (errno != EINTR) {
                        printf("%s WAIT_FAILED\n", asked);
                        return 0;
                }
        print_result(asked, st);
        return 0;
}

int main(int argc, char **argv) {
        if (argc < 2) {
                fprintf(stderr, "usage: %s --all | --list | NAME...\n", argv[0]);
                return 2;
        }
        size_t n;
        const struct sc_probe *probes = sc_denied_probes(&n);
        if (!strcmp(argv[1], "--list")) {
                for (size_t i = 0; i < n; i++)
                        printf("%s\n", probes[i].name);
                for (size_t i = 0; i < N_SPECIALS; i++)
                        printf("%s\n", specials[i].name);
                return 0;
        }
        int status = 0;
        if (!strcmp(argv[1], "--all")) {
                for (size_t i = 0; i < n; i++)
                        run(probes[i].name);
                for (size_t i = 0; i < N_SPECIALS; i++)
                        run(specials[i].name);
                return 0;
        }
        for (int i = 1; i < argc; i++)
                if (run(argv[i]) < 0)
                        status = 2;
        return status;
}
