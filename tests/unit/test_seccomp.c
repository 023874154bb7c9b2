/* sandboxd/seccomp.c: the exported BPF, run two ways.
 *
 *   - On synthetic input through a small classic-BPF interpreter: foreign architectures, x32
 *     numbers, the ioctl and socket argument rules over many values (independent of what this
 *     kernel supports: e.g. a kernel without ia32 emulation never shows seccomp an int $0x80).
 *   - For real, in forked children (we are root with every capability): for each probe of
 *     sc_denied_probes, the call under the filter must fail with the filter's errno, and the same
 *     call without the filter must NOT (it fails harmlessly with EFAULT/EBADF/EINVAL..., or
 *     succeeds inside the throw-away child).  That second half is what shows the filter refused
 *     the call: inside a sandbox most of them fail with EPERM anyway, for lack of a capability.
 *   - Ordinary work still runs under the filter: sockets, ioctl, fork, threads, exec.
 *
 * Children are made non-dumpable so that SIGSYS kills leave no core file behind. */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "sandboxd/seccomp.h"
#include "tap.h"

#define X32_BIT 0x40000000
#define RET_ALLOW SECCOMP_RET_ALLOW
#define RET_KILL_PROCESS SECCOMP_RET_KILL_PROCESS
#define RET_ERRNO(e) (SECCOMP_RET_ERRNO | (uint32_t) (e))

extern char **environ;


static void skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void skip(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        printf("ok %d # SKIP ", ++tap_num);
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
        fflush(stdout);
}

static const char *errname(int e) {
        const char *n = e ? strerrorname_np(e) : "OK";
        return n ? n : "E?";
}

/* ---- a classic-BPF interpreter, enough for what libseccomp emits ---- */

/* Runs `p` on `d`; returns the program's return value, or sets *bad on anything unexpected
 * (unknown opcode, out-of-range load or jump, falling off the end). */
static uint32_t bpf_run(const struct sock_fprog *p, const struct seccomp_data *d, bool *bad) {
        uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = { 0 };
        for (size_t pc = 0; pc < p->len; pc++) {
                const struct sock_filter *f = &p->filter[pc];
                uint32_t k = f->k;
                switch (f->code) {
                case BPF_LD | BPF_W | BPF_ABS:
                        if (k % 4 || k + 4 > sizeof *d)
                                goto bad;
                        memcpy(&a, (const char *) d + k, 4);
                        break;
                case BPF_LD | BPF_IMM: a = k; break;
                case BPF_LDX | BPF_IMM: x = k; break;
                case BPF_LD | BPF_MEM: if (k >= BPF_MEMWORDS) goto bad; a = mem[k]; break;
                case BPF_LDX | BPF_MEM: if (k >= BPF_MEMWORDS) goto bad; x = mem[k]; break;
                case BPF_ST: if (k >= BPF_MEMWORDS) goto bad; mem[k] = a; break;
                case BPF_STX: if (k >= BPF_MEMWORDS) goto bad; mem[k] = x; break;
                case BPF_ALU | BPF_AND | BPF_K: a &= k; break;
                case BPF_ALU | BPF_OR | BPF_K: a |= k; break;
                case BPF_ALU | BPF_AND | BPF_X: a &= x; break;
                case BPF_MISC | BPF_TAX: x = a; break;
                case BPF_MISC | BPF_TXA: a = x; break;
                case BPF_JMP | BPF_JA: pc += k; break;
                case BPF_JMP | BPF_JEQ | BPF_K: pc += a == k ? f->jt : f->jf; break;
                case BPF_JMP | BPF_JGT | BPF_K: pc += a > k ? f->jt : f->jf; break;
                case BPF_JMP | BPF_JGE | BPF_K: pc += a >= k ? f->jt : f->jf; break;
                case BPF_JMP | BPF_JSET | BPF_K: pc += (a & k) ? f->jt : f->jf; break;
                case BPF_JMP | BPF_JEQ | BPF_X: pc += a == x ? f->jt : f->jf; break;
                case BPF_JMP | BPF_JGT | BPF_X: pc += a > x ? f->jt : f->jf; break;
                case BPF_JMP | BPF_JGE | BPF_X: pc += a >= x ? f->jt : f->jf; break;
                case BPF_RET | BPF_K: return k;
                default: goto bad;
                }
        }
bad:
        *bad = true;
        return 0;
}

static uint32_t emulate(const struct sock_fprog *p, uint32_t arch, int nr, const unsigned long args[6], bool *bad) {
        struct seccomp_data d = { .nr = nr, .arch = arch, .instruction_pointer = 0x401000 };
        for (int i = 0; args && i < 6; i++)
                d.args[i] = args[i];
        return bpf_run(p, &d, bad);
}

/* ---- forked children ---- */

typedef int (*child_fn)(const void *arg);

/* Run fn in a forked child, with the filter loaded first if `filter` is not NULL; returns the
 * wait status.  The child exits with fn's result (0 = success, else an errno). */
static int run_child(const struct sock_fprog *filter, child_fn fn, const void *arg) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                prctl(PR_SET_DUMPABLE, 0);
                /* A fault must kill the child, not be reported by a sanitizer's handler. */
                signal(SIGSEGV, SIG_DFL);
                signal(SIGBUS, SIG_DFL);
                struct rlimit no_core = { 0, 0 };
                setrlimit(RLIMIT_CORE, &no_core);
                if (filter && sc_filter_load(filter) < 0)
                        _exit(254);
                _exit(fn(arg) & 0xff);
        }
        int st;
        while (waitpid(pid, &st, 0) < 0)
                if (errno != EINTR)
                        return -1;
        return st;
}

static const char *describe(int st, char *buf, size_t cap) {
        if (st == -1)
                snprintf(buf, cap, "fork/wait failed");
        else if (WIFEXITED(st))
                snprintf(buf, cap, "%s", WEXITSTATUS(st) == 254 ? "filter load failed" : errname(WEXITSTATUS(st)));
        else if (WIFSIGNALED(st))
                snprintf(buf, cap, "killed by SIG%s", sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "?");
        else
                snprintf(buf, cap, "status %#x", st);
        return buf;
}

static bool exited_with(int st, int code) {
        return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == code;
}

static bool killed_by(int st, int sig) {
        return st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == sig;
}

static int do_probe(const void *arg) {
        const struct sc_probe *p = arg;
        long r = syscall(p->nr, p->args[0], p->args[1], p->args[2], p->args[3], p->args[4], p->args[5]);
        return r < 0 ? errno : 0;
}

static int do_int80(const void *arg) {
        long r = 20; /* i386 getpid */
        __asm__ volatile("int $0x80" : "+a"(r) : : "memory", "r8", "r9", "r10", "r11");
        return r < 0 ? (int) -r : 0;
}

static int do_x32(const void *arg) {
        long r = syscall(X32_BIT | __NR_getpid);
        return r < 0 ? errno : 0;
}

struct sock_args {
        int family, type, proto;
};

static int do_socket(const void *arg) {
        const struct sock_args *s = arg;
        int fd = socket(s->family, s->type, s->proto);
        if (fd < 0)
                return errno;
        close(fd);
        return 0;
}

static int do_ioctl_fionread(const void *arg) {
        int p[2], n = -1;
        if (pipe(p) < 0)
                return errno;
        if (write(p[1], "abc", 3) != 3)
                return EIO;
        if (ioctl(p[0], FIONREAD, &n) < 0)
                return errno;
        return n == 3 ? 0 : EIO;
}

static int do_personality_query(const void *arg) {
        return syscall(__NR_personality, 0xffffffffUL) < 0 ? errno : 0;
}

static int do_fork_exec(const void *arg) {
        pid_t pid = fork();
        if (pid < 0)
                return errno;
        if (pid == 0) {
                execl("/bin/true", "true", (char *) NULL);
                _exit(127);
        }
        int st;
        if (waitpid(pid, &st, 0) < 0)
                return errno;
        return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : EIO;
}

static int do_posix_spawn(const void *arg) {
        pid_t pid;
        char *argv[] = { "true", NULL };
        int r = posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ);
        if (r != 0)
                return r;
        int st;
        if (waitpid(pid, &st, 0) < 0)
                return errno;
        return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : EIO;
}

static void *thread_main(void *arg) {
        return arg;
}

static int do_thread(const void *arg) {
        pthread_t t;
        void *ret = NULL;
        int r = pthread_create(&t, NULL, thread_main, (void *) 0x1234);
        if (r != 0)
                return r;
        if ((r = pthread_join(t, &ret)) != 0)
                return r;
        return ret == (void *) 0x1234 ? 0 : EIO;
}

/* ---- the emulated checks ---- */

static bool ioctl_denied(uint64_t req) {
        uint32_t low = (uint32_t) req;
        return low == TIOCSTI || low == TIOCLINUX;
}

static void check_ioctl_partition(const struct sock_fprog *f) {
        static const uint64_t fixed[] = {
                TIOCSTI,           TIOCLINUX,           TIOCSTI + 1,          TIOCSTI - 1,   TIOCLINUX + 1,
                TIOCLINUX - 1,     TCGETS,              TIOCGWINSZ,           FIONREAD,      FIONBIO,
                0,                 0xffffffff,          (1UL << 32) | TIOCSTI, ~0UL << 32 | TIOCSTI,
                (1UL << 63) | TIOCLINUX, 0x5412 ^ 0x80000000, 0x541C ^ 0x1, 0x541C ^ 0x2, 0x541C ^ 0x4, 0x541C ^ 0x8,
                0x5412 ^ 0x2,      0x5412 ^ 0x4,        0x5412 ^ 0x8,          0x5412 ^ 0x10, 0xc0045412,
        };
        unsigned long args[6] = { 0 };
        bool bad = false;
        size_t n = 0, wrong = 0;
        uint64_t first_wrong = 0;
        uint64_t rnd = 0x9e3779b97f4a7c15ULL;
        for (size_t i = 0; i < ARRAY_SIZE(fixed) + 200000; i++) {
                uint64_t v;
                if (i < ARRAY_SIZE(fixed)) {
                        v = fixed[i];
                } else {
                        rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
                        v = rnd;
                        /* keep many values near the denied ones */
                        if (i % 4 == 0)
                                v = (v & ~0xffffULL) | (0x5400 | (v & 0x3f));
                }
                args[1] = v;
                uint32_t want = ioctl_denied(v) ? RET_ERRNO(EPERM) : RET_ALLOW;
                if (emulate(f, AUDIT_ARCH_X86_64, __NR_ioctl, args, &bad) != want && !wrong++)
                        first_wrong = v;
                n++;
        }
        ok(!bad && !wrong, "emulated: ioctl denies exactly TIOCSTI/TIOCLINUX on the low 32 bits (%zu requests, %zu wrong%s%#llx)",
           n, wrong, wrong ? ", first " : ", ", (unsigned long long) first_wrong);
}

static bool socket_allowed(uint64_t fam, uint64_t type) {
        static const int fams[] = { 0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 13, 14, 15, 16, 18, 21,
                                    22, 24, 26, 27, 28, 29, 30, 31, 32, 33, 35, 36, 39, 41, 42, 43, 44, 45 };
        bool known = false;
        for (size_t i = 0; i < ARRAY_SIZE(fams); i++)
                known |= fam == (uint64_t) fams[i];
        if (!known)
                return false;
        if (fam == AF_INET || fam == AF_INET6) {
                uint64_t t = type & 0xf;
                return t == SOCK_STREAM || t == SOCK_DGRAM || t == SOCK_SEQPACKET;
        }
        return true;
}

static void check_socket_matrix(const struct sock_fprog *f) {
        static const uint64_t flags[] = { 0, SOCK_CLOEXEC, SOCK_NONBLOCK | SOCK_CLOEXEC, 1UL << 32 };
        unsigned long args[6] = { 0 };
        bool bad = false;
        size_t n = 0, wrong = 0;
        char first[64] = "";
        for (int nr = 0; nr < 2; nr++)
                for (uint64_t fam = 0; fam < 64; fam++)
                        for (uint64_t type = 0; type < 16; type++)
                                for (size_t fl = 0; fl < ARRAY_SIZE(flags); fl++)
                                        for (int high = 0; high < 2; high++) {
                                                args[0] = fam | (high ? 1UL << 32 : 0);
                                                args[1] = type | flags[fl];
                                                bool allow = !high && socket_allowed(fam, type);
                                                uint32_t got = emulate(f, AUDIT_ARCH_X86_64,
                                                                       nr ? __NR_socketpair : __NR_socket, args, &bad);
                                                if (got != (allow ? RET_ALLOW : RET_ERRNO(EPERM)) && !wrong++)
                                                        snprintf(first, sizeof first, " (first: %s(%#lx, %#lx))",
                                                                 nr ? "socketpair" : "socket", args[0], args[1]);
                                                n++;
                                        }
        ok(!bad && !wrong, "emulated: socket/socketpair families and types (%zu combinations, %zu wrong%s)", n, wrong,
           first);
}

static void check_emulated(const struct sock_fprog *f, const struct sc_probe *probes, size_t n_probes) {
        bool bad = false;
        unsigned long none[6] = { 0 };
        uint32_t r = emulate(f, AUDIT_ARCH_I386, 20 /* i386 getpid */, none, &bad);
        ok(!bad && r == RET_KILL_PROCESS, "emulated: i386 (int $0x80) getpid -> KILL_PROCESS (got %#x)", r);
        r = emulate(f, AUDIT_ARCH_I386, 102 /* i386 socketcall */, none, &bad);
        ok(!bad && r == RET_KILL_PROCESS, "emulated: i386 socketcall -> KILL_PROCESS (got %#x)", r);
        size_t x32_wrong = 0;
        int x32_nrs[] = { __NR_getpid, __NR_mount, __NR_unshare, 512 /* x32 ioctl */, 545, 0, 0x3fffffff };
        for (size_t i = 0; i < ARRAY_SIZE(x32_nrs); i++)
                x32_wrong += emulate(f, AUDIT_ARCH_X86_64, X32_BIT | x32_nrs[i], none, &bad) != RET_KILL_PROCESS;
        ok(!bad && !x32_wrong, "emulated: x32 syscall numbers (nr | 0x40000000) -> KILL_PROCESS (%zu wrong)", x32_wrong);
        size_t other_wrong = 0;
        uint32_t other_arches[] = { AUDIT_ARCH_AARCH64, AUDIT_ARCH_ARM, 0 };
        for (size_t i = 0; i < ARRAY_SIZE(other_arches); i++)
                other_wrong += emulate(f, other_arches[i], __NR_getpid, none, &bad) != RET_KILL_PROCESS;
        ok(!bad && !other_wrong, "emulated: other architectures -> KILL_PROCESS");

        r = emulate(f, AUDIT_ARCH_X86_64, __NR_getpid, none, &bad);
        uint32_t r2 = emulate(f, AUDIT_ARCH_X86_64, 1000, none, &bad);
        uint32_t r3 = emulate(f, AUDIT_ARCH_X86_64, -1, none, &bad);
        ok(!bad && r == RET_ALLOW && r2 == RET_ERRNO(EPERM) && r3 == RET_ERRNO(EPERM),
           "emulated: getpid allowed, unknown nr 1000 and nr -1 EPERM (%#x %#x %#x)", r, r2, r3);

        size_t wrong = 0;
        for (size_t i = 0; i < n_probes; i++) {
                const struct sc_probe *p = &probes[i];
                r = emulate(f, AUDIT_ARCH_X86_64, (int) p->nr, p->args, &bad);
                if (r != RET_ERRNO(p->errnum)) {
                        printf("# emulated %s -> %#x, expected %s\n", p->name, r, errname(p->errnum));
                        wrong++;
                }
        }
        ok(!bad && !wrong, "emulated: all %zu probes return their errno", n_probes);
        check_ioctl_partition(f);
        check_socket_matrix(f);
}

/* ---- main ---- */

#define N_FIXED 23

int main(void) {
        if (geteuid() != 0) {
                printf("1..0 # SKIP needs root (the unfiltered calls must pass capability checks)\n");
                return 77;
        }
        size_t n_probes;
        const struct sc_probe *probes = sc_denied_probes(&n_probes);
        printf("1..%zu\n", N_FIXED + n_probes);

        struct sock_fprog f;
        ns_error err = { 0 };
        int r = sc_filter_build(&f, &err);
        ok(r == 0 && f.filter && f.len > 0, "sc_filter_build: %u instructions%s%s", r == 0 ? f.len : 0,
           r ? ": " : "", r ? err.msg : "");
        if (r < 0)
                return 1;
        struct sock_fprog empty = { 0 };
        ok(sc_filter_load(&empty) == -EINVAL && sc_filter_load(NULL) == -EINVAL, "sc_filter_load refuses an empty program");
        {
                struct sock_fprog g;
                r = sc_filter_build(&g, &err);
                bool same = r == 0 && g.len == f.len && !memcmp(g.filter, f.filter, f.len * sizeof *f.filter);
                sc_filter_free(&g);
                sc_filter_free(&g);
                ok(same && !g.filter && !g.len, "build is deterministic; sc_filter_free resets and is idempotent");
        }

        size_t mismatch = 0, whole = 0;
        for (size_t i = 0; i < n_probes; i++) {
                if (!probes[i].whole)
                        continue;
                whole++;
                int nr = seccomp_syscall_resolve_name(probes[i].name);
                if (nr != probes[i].nr) {
                        printf("# probe %s: libseccomp says %d, table says %ld\n", probes[i].name, nr, probes[i].nr);
                        mismatch++;
                }
        }
        ok(!mismatch, "the %zu whole-syscall probes are named as libseccomp names their numbers", whole);

        check_emulated(&f, probes, n_probes); /* 8 lines */

        char b1[64], b2[64];
        for (size_t i = 0; i < n_probes; i++) {
                const struct sc_probe *p = &probes[i];
                int with = run_child(&f, do_probe, p);
                int without = run_child(NULL, do_probe, p);
                bool filtered_ok = exited_with(with, p->errnum);
                bool unfiltered_ok = p->succeeds_unfiltered ? exited_with(without, 0)
                                                            : without != -1 && WIFEXITED(without) &&
                                                                      WEXITSTATUS(without) != p->errnum &&
                                                                      WEXITSTATUS(without) != 0 && WEXITSTATUS(without) != 254;
                ok(filtered_ok && unfiltered_ok, "%s: %s under the filter (want %s), %s without it", p->name,
                   describe(with, b1, sizeof b1), errname(p->errnum), describe(without, b2, sizeof b2));
        }

        /* Foreign ABIs, for real. */
        int with = run_child(&f, do_int80, NULL), without = run_child(NULL, do_int80, NULL);
        if (killed_by(without, SIGSEGV))
                skip("int $0x80: this kernel has no ia32 entry (SIGSEGV without the filter; %s with it); "
                     "the emulated test covers the filter", describe(with, b1, sizeof b1));
        else
                ok(killed_by(with, SIGSYS), "int $0x80 getpid: %s under the filter (%s without)",
                   describe(with, b1, sizeof b1), describe(without, b2, sizeof b2));
        with = run_child(&f, do_x32, NULL), without = run_child(NULL, do_x32, NULL);
        ok(killed_by(with, SIGSYS), "x32 getpid: %s under the filter (%s without)", describe(with, b1, sizeof b1),
           describe(without, b2, sizeof b2));

        /* What must keep working. */
        static const struct sock_args inet_stream = { AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0 },
                                      inet6_dgram = { AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, 0 },
                                      unix_stream = { AF_UNIX, SOCK_STREAM, 0 },
                                      netlink = { AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0 /* NETLINK_ROUTE */ };
        with = run_child(&f, do_socket, &inet_stream);
        ok(exited_with(with, 0), "socket(AF_INET, SOCK_STREAM) under the filter: %s", describe(with, b1, sizeof b1));
        with = run_child(&f, do_socket, &inet6_dgram);
        ok(exited_with(with, 0) || exited_with(with, EAFNOSUPPORT), "socket(AF_INET6, SOCK_DGRAM) under the filter: %s",
           describe(with, b1, sizeof b1));
        with = run_child(&f, do_socket, &unix_stream);
        ok(exited_with(with, 0), "socket(AF_UNIX, SOCK_STREAM) under the filter: %s", describe(with, b1, sizeof b1));
        with = run_child(&f, do_socket, &netlink);
        ok(exited_with(with, 0), "socket(AF_NETLINK, SOCK_RAW) under the filter: %s", describe(with, b1, sizeof b1));
        with = run_child(&f, do_ioctl_fionread, NULL);
        ok(exited_with(with, 0), "ioctl(FIONREAD) under the filter: %s", describe(with, b1, sizeof b1));
        with = run_child(&f, do_personality_query, NULL);
        ok(exited_with(with, 0), "personality(0xffffffff) under the filter: %s", describe(with, b1, sizeof b1));
        with = run_child(&f, do_fork_exec, NULL);
        ok(exited_with(with, 0), "fork (clone) + exec /bin/true under the filter: %s", describe(with, b1, sizeof b1));
        with = run_child(&f, do_posix_spawn, NULL);
        ok(exited_with(with, 0), "posix_spawn /bin/true under the filter (clone3 ENOSYS -> clone): %s",
           describe(with, b1, sizeof b1));
        with = run_child(&f, do_thread, NULL);
        ok(exited_with(with, 0), "pthread_create/join under the filter (clone3 ENOSYS -> clone): %s",
           describe(with, b1, sizeof b1));

        sc_filter_free(&f);
        if (tap_num != (int) (N_FIXED + n_probes))
                printf("# planned %zu tests, ran %d\n", N_FIXED + n_probes, tap_num);
        return tap_failed || tap_num != (int) (N_FIXED + n_probes) ? 1 : 0;
}
