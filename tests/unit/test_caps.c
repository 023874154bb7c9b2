/* sandboxd/caps.c in a real user namespace (root: the parent writes the id maps).
 *
 * Each scenario runs in a forked child that unshares a user namespace mapped to an unused host
 * range (0..65535 inside = 1700000000.. outside), becomes uid 0 in it with the full capability set
 * that unshare gives, as sandbox init does, then calls caps_enter_identity and reports what
 * /proc/self/status says through a pipe.  The parent prints TAP. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "sandboxd/caps.h"
#include "tap.h"

#define HOST_BASE 1700000000u
/* Docker's default set, written out independently of caps.c: CHOWN DAC_OVERRIDE FOWNER FSETID
 * KILL SETGID SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT AUDIT_WRITE SETFCAP. */
#define DOCKER_MASK UINT64_C(0x00000000a00405fb)


struct status {
        int rc[3];             /* results of up to three caps_enter_identity calls */
        char msg[NS_ERROR_MSG_MAX];
        unsigned uid[4], gid[4];
        int ngroups;
        uint64_t inh, prm, eff, bnd, amb;
        int nnp;
        int setuid0_errno;     /* errno of setuid(0) afterwards, 0 if it succeeded */
        bool parsed;
};

/* proc_fd: a descriptor of the real /proc when it is hidden (the 'x' scenarios), else -1. */
static void read_status(struct status *s, int proc_fd) {
        int fd = proc_fd >= 0 ? openat(proc_fd, "self/status", O_RDONLY | O_CLOEXEC) : open("/proc/self/status", O_RDONLY | O_CLOEXEC);
        _cleanup_fclose_ FILE *f = fd >= 0 ? fdopen(fd, "re") : NULL;
        char line[512];
        int seen = 0;
        if (!f)
                return;
        while (fgets(line, sizeof line, f)) {
                unsigned long long v;
                if (sscanf(line, "Uid: %u %u %u %u", &s->uid[0], &s->uid[1], &s->uid[2], &s->uid[3]) == 4)
                        seen++;
                else if (sscanf(line, "Gid: %u %u %u %u", &s->gid[0], &s->gid[1], &s->gid[2], &s->gid[3]) == 4)
                        seen++;
                else if (!strncmp(line, "Groups:", 7)) {
                        s->ngroups = 0;
                        for (char *t = strtok(line + 7, " \t\n"); t; t = strtok(NULL, " \t\n"))
                                s->ngroups++;
                        seen++;
                } else if (sscanf(line, "CapInh: %llx", &v) == 1)
                        s->inh = v, seen++;
                else if (sscanf(line, "CapPrm: %llx", &v) == 1)
                        s->prm = v, seen++;
                else if (sscanf(line, "CapEff: %llx", &v) == 1)
                        s->eff = v, seen++;
                else if (sscanf(line, "CapBnd: %llx", &v) == 1)
                        s->bnd = v, seen++;
                else if (sscanf(line, "CapAmb: %llx", &v) == 1)
                        s->amb = v, seen++;
                else if (sscanf(line, "NoNewPrivs: %d", &s->nnp) == 1)
                        seen++;
        }
        s->parsed = seen == 9;
}

/* Run `calls` (a string of 'r' = root, 'a' = agent) in a fresh user namespace; fill *out.  A
 * leading 'x' first hides /proc under a tmpfs (in a new mount namespace), so that caps.c must
 * take its path without /proc/self/status. */
static int run_scenario(const char *calls, struct status *out) {
        int to_child[2], to_parent[2];
        memset(out, 0, sizeof *out);
        if (pipe2(to_child, O_CLOEXEC) < 0 || pipe2(to_parent, O_CLOEXEC) < 0)
                return -errno;
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                struct status s = { .rc = { 1, 1, 1 } };
                char c = 0;
                close(to_child[1]);
                close(to_parent[0]);
                if (unshare(CLONE_NEWUSER) < 0)
                        _exit(10);
                if (write(to_parent[1], "u", 1) != 1 || read(to_child[0], &c, 1) != 1 || c != 'm')
                        _exit(11);
                /* As sandbox init: become root of the namespace (unshare gave a full set). */
                if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
                        _exit(12);
                int proc_fd = -1;
                if (calls[0] == 'x') {
                        calls++;
                        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
                            (proc_fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
                            mount("none", "/proc", "tmpfs", 0, NULL) < 0)
                                _exit(14);
                }
                for (int i = 0; calls[i] && i < 3; i++) {
                        ns_error err = { 0 };
                        s.rc[i] = caps_enter_identity(calls[i] == 'r', &err);
                        if (s.rc[i] < 0 && !s.msg[0])
                                snprintf(s.msg, sizeof s.msg, "%s", err.msg);
                }
                read_status(&s, proc_fd);
                s.setuid0_errno = setuid(0) < 0 ? errno : 0;
                if (write(to_parent[1], &s, sizeof s) != (ssize_t) sizeof s)
                        _exit(13);
                _exit(0);
        }
        close(to_child[0]);
        close(to_parent[1]);
        char c = 0, path[64], map[64];
        int r = 0;
        if (read(to_parent[0], &c, 1) != 1 || c != 'u') {
                r = -EIO;
        } else {
                snprintf(map, sizeof map, "0 %u 65536\n", HOST_BASE);
                const char *files[] = { "uid_map", "gid_map" };
                for (int i = 0; i < 2 && r == 0; i++) {
                        snprintf(path, sizeof path, "/proc/%d/%s", (int) pid, files[i]);
                        int fd = open(path, O_WRONLY | O_CLOEXEC);
                        if (fd < 0 || write(fd, map, strlen(map)) != (ssize_t) strlen(map))
                                r = -errno;
                        if (fd >= 0)
                                close(fd);
                }
                if (r == 0 && write(to_child[1], "m", 1) != 1)
                        r = -errno;
                if (r == 0 && read(to_parent[0], out, sizeof *out) != (ssize_t) sizeof *out)
                        r = -EIO;
        }
        close(to_child[1]);
        close(to_parent[0]);
        int st;
        while (waitpid(pid, &st, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (r == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
                r = -ECHILD;
        return r;
}

static bool ids_are(const struct status *s, unsigned id) {
        for (int i = 0; i < 4; i++)
                if (s->uid[i] != id || s->gid[i] != id)
                        return false;
        return true;
}

static void check_agent(const char *calls, const char *what, int parent_nnp) {
        struct status s;
        int r = run_scenario(calls, &s);
        bool rc_ok = r == 0;
        for (int i = 0; calls[i + (calls[0] == 'x')]; i++)
                rc_ok &= s.rc[i] == 0;
        ok(rc_ok && s.parsed, "%s: caps_enter_identity succeeds (%d%s%s)", what, r, s.msg[0] ? ": " : "", s.msg);
        ok(ids_are(&s, CAPS_AGENT_UID) && s.ngroups == 0, "%s: uid/gid 1000 (real, effective, saved, fs), no groups", what);
        ok(s.inh == 0 && s.prm == 0 && s.eff == 0 && s.bnd == 0 && s.amb == 0,
           "%s: CapInh %llx CapPrm %llx CapEff %llx CapBnd %llx CapAmb %llx all zero", what, (unsigned long long) s.inh,
           (unsigned long long) s.prm, (unsigned long long) s.eff, (unsigned long long) s.bnd,
           (unsigned long long) s.amb);
        ok(s.nnp == parent_nnp, "%s: NoNewPrivs untouched (%d)", what, s.nnp);
        ok(s.setuid0_errno == EPERM, "%s: setuid(0) afterwards fails with EPERM (%s)", what, strerror(s.setuid0_errno));
}

static void check_root(const char *calls, const char *what, int parent_nnp) {
        struct status s;
        int r = run_scenario(calls, &s);
        bool rc_ok = r == 0;
        for (int i = 0; calls[i + (calls[0] == 'x')]; i++)
                rc_ok &= s.rc[i] == 0;
        ok(rc_ok && s.parsed, "%s: caps_enter_identity succeeds (%d%s%s)", what, r, s.msg[0] ? ": " : "", s.msg);
        ok(ids_are(&s, 0) && s.ngroups == 0, "%s: uid/gid 0, no groups", what);
        ok(s.eff == DOCKER_MASK && s.prm == DOCKER_MASK && s.bnd == DOCKER_MASK && s.inh == 0 && s.amb == 0,
           "%s: CapEff %llx CapPrm %llx CapBnd %llx = Docker's %llx, CapInh %llx CapAmb %llx zero", what,
           (unsigned long long) s.eff, (unsigned long long) s.prm, (unsigned long long) s.bnd,
           (unsigned long long) DOCKER_MASK, (unsigned long long) s.inh, (unsigned long long) s.amb);
        ok(s.nnp == parent_nnp, "%s: NoNewPrivs untouched (%d)", what, s.nnp);
}

struct limits {
        struct rlimit core, nofile;
        int rc;
};

static int rlimit_child(rlim_t hard, struct limits *out) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                struct limits l = { 0 };
                struct rlimit start = { hard, hard };
                if (hard != RLIM_INFINITY && setrlimit(RLIMIT_NOFILE, &start) < 0)
                        _exit(10);
                ns_error err;
                l.rc = caps_set_rlimits(&err);
                getrlimit(RLIMIT_CORE, &l.core);
                getrlimit(RLIMIT_NOFILE, &l.nofile);
                _exit(write(p[1], &l, sizeof l) == (ssize_t) sizeof l ? 0 : 11);
        }
        close(p[1]);
        ssize_t n = read(p[0], out, sizeof *out);
        close(p[0]);
        int st;
        waitpid(pid, &st, 0);
        return n == (ssize_t) sizeof *out && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

int main(void) {
        if (geteuid() != 0) {
                printf("1..0 # SKIP needs root (writes id maps of a range)\n");
                return 77;
        }
        printf("1..33\n");
        int nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);

        ok(caps_docker_mask() == DOCKER_MASK, "caps_docker_mask() = %llx", (unsigned long long) caps_docker_mask());
        check_agent("a", "agent from a full set", nnp);                             /* 5 */
        check_root("r", "root from a full set", nnp);                               /* 4 */
        check_root("rr", "root twice (init holds Docker's set, --root exec)", nnp); /* 4 */
        check_agent("ra", "root then agent (init, then an exec)", nnp);             /* 5 */

        struct status s;
        int r = run_scenario("ar", &s);
        ok(r == 0 && s.rc[0] == 0 && s.rc[1] == -EPERM && ids_are(&s, CAPS_AGENT_UID) && s.eff == 0 && s.bnd == 0,
           "agent cannot go back to root: second call %d (%s), still uid 1000 with no capabilities", s.rc[1], s.msg);
        r = run_scenario("aa", &s);
        ok(r == 0 && s.rc[0] == 0 && s.rc[1] == 0 && ids_are(&s, CAPS_AGENT_UID),
           "agent twice: idempotent without privileges (%d %d)", s.rc[0], s.rc[1]);

        /* Without procfs the per-capability prctl loops do the same, and the result is the same. */
        check_agent("xra", "no /proc: root then agent", nnp);                      /* 5 */
        check_root("xr", "no /proc: root", nnp);                                     /* 4 */

        struct limits l;
        struct rlimit cur;
        getrlimit(RLIMIT_NOFILE, &cur);
        /* From the limits we run with (RLIM_INFINITY = leave them): raising the hard limit needs
         * CAP_SYS_RESOURCE, which a test runner may lack, so no test raises it first. */
        r = rlimit_child(RLIM_INFINITY, &l);
        ok(r == 0 && l.rc == 0 && l.core.rlim_cur == 0 && l.core.rlim_max == 0,
           "caps_set_rlimits: RLIMIT_CORE 0/0 (%llu/%llu)", (unsigned long long) l.core.rlim_cur,
           (unsigned long long) l.core.rlim_max);
        rlim_t want = cur.rlim_max != RLIM_INFINITY && cur.rlim_max < 65536 ? cur.rlim_max : 65536;
        ok(r == 0 && l.nofile.rlim_cur == want && l.nofile.rlim_max == want,
           "caps_set_rlimits: RLIMIT_NOFILE %llu/%llu from a hard limit of %llu (got %llu/%llu)",
           (unsigned long long) want, (unsigned long long) want, (unsigned long long) cur.rlim_max,
           (unsigned long long) l.nofile.rlim_cur, (unsigned long long) l.nofile.rlim_max);
        r = rlimit_child(4096, &l);
        ok(r == 0 && l.rc == 0 && l.nofile.rlim_cur == 4096 && l.nofile.rlim_max == 4096,
           "caps_set_rlimits: never raises: 4096/4096 from a hard limit of 4096 (%llu/%llu)",
           (unsigned long long) l.nofile.rlim_cur, (unsigned long long) l.nofile.rlim_max);
        if (tap_num != 33)
                printf("# planned 33 tests, ran %d\n", tap_num);
        return tap_failed || tap_num != 33 ? 1 : 0;
}
