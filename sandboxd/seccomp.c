/* The sandbox's seccomp filter: see seccomp.h.
 *
 * Shape of the policy (default action ERRNO(EPERM), i.e. an allow-list):
 *   1. the syscalls Docker's default profile (moby/profiles seccomp/default.json) allows without
 *      conditions to a container holding Docker's default capabilities, minus the ones we deny;
 *   2. Docker's argument rules, tightened: clone without namespace flags, personality with the
 *      five harmless values, socket/socketpair with an allow-list of address families;
 *   3. explicit denials (table `probes` below): never in the allow-list (checked when the filter
 *      is built), and a rule of their own where the errno is not the default's (clone3: ENOSYS);
 *   4. architecture: only the native ABI.  libseccomp adds the native arch (x86_64) and nothing
 *      else; anything else (the i386 `int $0x80` / sysenter entry, AUDIT_ARCH_I386) takes the
 *      bad-arch action, KILL_PROCESS.  x32 syscalls arrive with AUDIT_ARCH_X86_64 too, but with
 *      bit 30 (__X32_SYSCALL_BIT) set in the number: libseccomp 2.5.4, for an x86_64 filter that
 *      does not include SCMP_ARCH_X32, emits "if nr >= 0x40000000 (and nr != -1) -> bad-arch
 *      action" right after the arch check, so x32 calls are killed as well.  We rely on that
 *      and test it (tests/unit/test_seccomp.c runs the exported BPF on synthetic x32 and i386
 *      input and makes the real x32 call under the filter); no extra rule is needed.
 *
 * Every comparison on an argument is either an exact equality on the whole 64-bit register
 * (anything with stray high bits matches no allow rule and is refused: fail closed) or a masked
 * comparison on the bits the kernel actually reads.  A "not equal" test on the full register
 * would be bypassable: ioctl's request and socket's family are 32-bit ints in the kernel, so
 * 0x100005412 IS TIOCSTI to the kernel but is not equal to 0x5412 (CVE-2019-10063). */
#include "sandboxd/seccomp.h"

#include <errno.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"

/* Docker's unconditional allow-list (x86_64-relevant names; 32-bit-only and other arches' names
 * resolve to nothing here and are skipped, as are names newer than libseccomp 2.5.4, which are
 * then refused with EPERM).  Removed from Docker's list, because we deny them (see `probes`):
 * adjtimex, clock_adjtime(64), name_to_handle_at.  Added from Docker's per-arch entries:
 * arch_prctl, modify_ldt. */
static const char *const allowed[] = {
        "accept", "accept4", "access", "alarm", "arch_prctl", "bind", "brk", "cachestat", "capget",
        "capset", "chdir", "chmod", "chown", "clock_getres", "clock_gettime", "clock_nanosleep",
        "close", "close_range", "connect", "copy_file_range", "creat", "dup", "dup2", "dup3",
        "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
        "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit",
        "exit_group", "faccessat", "faccessat2", "fadvise64", "fallocate", "fanotify_mark", "fchdir",
        "fchmod", "fchmodat", "fchmodat2", "fchown", "fchownat", "fcntl", "fdatasync", "fgetxattr",
        "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstatfs", "fsync",
        "ftruncate", "futex", "futex_requeue", "futex_wait", "futex_waitv", "futex_wake", "futimesat",
        "getcpu", "getcwd", "getdents", "getdents64", "getegid", "geteuid", "getgid", "getgroups",
        "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority",
        "getrandom", "getresgid", "getresuid", "getrlimit", "get_robust_list", "getrusage", "getsid",
        "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid",
        "getxattr", "getxattrat", "inotify_add_watch", "inotify_init", "inotify_init1",
        "inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "ioprio_get", "ioprio_set", "io_setup",
        "io_submit", "kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
        "lchown", "lgetxattr", "link", "linkat", "listen", "listmount", "listxattr", "listxattrat",
        "llistxattr", "lremovexattr", "lseek", "lsetxattr", "lstat", "madvise", "map_shadow_stack",
        "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod",
        "mknodat", "mlock", "mlock2", "mlockall", "mmap", "modify_ldt", "mprotect", "mq_getsetattr",
        "mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend", "mq_unlink", "mremap", "mseal",
        "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
        "nanosleep", "newfstatat", "open", "openat", "openat2", "pause", "pidfd_open",
        "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll",
        "ppoll", "prctl", "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease", "pselect6",
        "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv",
        "recvfrom", "recvmmsg", "recvmsg", "remap_file_pages", "removexattr", "removexattrat",
        "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction",
        "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
        "rt_sigtimedwait", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr",
        "sched_getparam", "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
        "sched_rr_get_interval", "sched_setaffinity", "sched_setattr", "sched_setparam",
        "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop",
        "semtimedop", "sendfile", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsuid", "setgid",
        "setgroups", "setitimer", "setpgid", "setpriority", "setregid", "setresgid", "setresuid",
        "setreuid", "setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area",
        "set_tid_address", "setuid", "setxattr", "setxattrat", "shmat", "shmctl", "shmdt", "shmget",
        "shutdown", "sigaltstack", "signalfd", "signalfd4", "splice", "stat", "statfs", "statmount",
        "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee",
        "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
        "timer_settime", "timerfd_create", "timerfd_gettime", "timerfd_settime", "times", "tkill",
        "truncate", "umask", "uname", "unlink", "unlinkat", "uretprobe", "utime", "utimensat",
        "utimes", "vfork", "vmsplice", "wait4", "waitid", "write", "writev",
};

/* What the filter refuses explicitly, and why.  `whole` entries are refused whatever the
 * arguments (by the default action, or by a rule of their own for another errno); the others document (and let the tests exercise) the argument rules built in
 * add_argument_rules.  The arguments make every call fail harmlessly if it is NOT filtered (see
 * seccomp.h), which lets a test tell "refused by the filter" from "refused for lack of a
 * capability": inside the sandbox most of these fail with EPERM either way.
 *
 * - Nested namespaces (unshare, setns, clone3, clone with CLONE_NEW*): a user namespace hands
 *   its creator a full capability set over fresh namespaces, which unlocks kernel code paths
 *   (netfilter, mount, ...) that have been the usual container-escape vector.  clone3 says
 *   ENOSYS, not EPERM: its flags live in memory that seccomp cannot read, so it is refused
 *   outright, and ENOSYS makes glibc fall back to clone, whose flags we can check.
 * - Mount family (mount, umount2, pivot_root, chroot, the new mount API): the sandbox's file
 *   system view is built by sandboxd; nothing inside may rearrange it, hide its masks or escape
 *   through chroot tricks.
 * - Tracing and other processes' memory (ptrace, process_vm_*, process_madvise, kcmp,
 *   pidfd_getfd): --root processes share uid 0 with each other; one must not read or steer
 *   another (or a descriptor of it), and ptrace has a long history of seccomp and LSM bypasses.
 * - Kernel attack surface without a use in a coding sandbox (bpf, perf_event_open,
 *   userfaultfd, io_uring_*): each has produced local privilege escalations; userfaultfd makes
 *   kernel races reliably winnable; io_uring performs operations (socket creation included)
 *   without the syscalls that seccomp sees.
 * - Kernel keyrings (keyctl, add_key, request_key): not namespaced; a sandbox could read or fill
 *   keys of the host user with the same uid.
 * - Kernel code and machine state (init/finit/delete_module, kexec_*, reboot, swapon/off, acct,
 *   quotactl(_fd), iopl, ioperm, syslog, lookup_dcookie): host-wide effects; capability checks
 *   stop them today, the filter stops them before the kernel parses anything.
 * - Clocks (clock_settime, clock_adjtime, settimeofday, adjtimex): the clock is not namespaced;
 *   adjtimex is refused even read-only (nothing a coding agent runs needs it).
 * - Host identity (sethostname, setdomainname): sandboxd sets the UTS names; the sandbox keeps
 *   them.
 * - File handles (open_by_handle_at, name_to_handle_at): open_by_handle_at opens any inode of a
 *   file system by number, bypassing the mount view ("shocker" escape); name_to_handle_at only
 *   serves it.  fanotify_init: whole-filesystem event monitoring of the host's files.
 * - personality other than Docker's five values: ADDR_NO_RANDOMIZE and friends weaken ASLR of
 *   the process and everything it execs.
 * - ioctl TIOCSTI (push bytes into a terminal's input: typing commands into whoever reads the
 *   tty) and TIOCLINUX (console selection paste, same effect): compared on the low 32 bits.
 * - socket/socketpair: AF_VSOCK reaches the hypervisor or host outside every network namespace;
 *   AF_PACKET and raw IP sockets (SOCK_RAW, and SOCK_PACKET, which the kernel turns into a
 *   packet socket) forge and sniff frames and have a long CVE list.  Families outside Docker's
 *   allow-list are refused too. */
#define A(...) { __VA_ARGS__ }
#define BADFD ((unsigned long) -1)
#define BADPTR 1UL
static const struct sc_probe probes[] = {
        /* nested namespaces */
        { "unshare", __NR_unshare, A(CLONE_NEWUSER), EPERM, true, true },
        { "setns", __NR_setns, A(BADFD, 0), EPERM, true, false },
        { "clone3", __NR_clone3, A(0, 0), ENOSYS, true, false },
        /* invalid flag pairs: the kernel refuses them with EINVAL before creating anything */
        { "clone_newuser", __NR_clone, A(CLONE_NEWUSER | CLONE_FS), EPERM, false, false },
        { "clone_newns", __NR_clone, A(CLONE_NEWNS | CLONE_FS), EPERM, false, false },
        { "clone_newnet", __NR_clone, A(CLONE_NEWNET | CLONE_SIGHAND), EPERM, false, false },
        /* mount family */
        { "mount", __NR_mount, A(0, BADPTR, 0, 0, 0), EPERM, true, false },
        { "umount2", __NR_umount2, A(BADPTR, 0), EPERM, true, false },
        { "pivot_root", __NR_pivot_root, A(BADPTR, BADPTR), EPERM, true, false },
        { "chroot", __NR_chroot, A(BADPTR), EPERM, true, false },
        { "fsopen", __NR_fsopen, A(BADPTR, 0), EPERM, true, false },
        { "fsconfig", __NR_fsconfig, A(BADFD, 0xffffffffUL, 0, 0, 0), EPERM, true, false },
        { "fsmount", __NR_fsmount, A(BADFD, 0xffffffffUL, 0), EPERM, true, false },
        { "fspick", __NR_fspick, A(BADFD, BADPTR, 0xffffffffUL), EPERM, true, false },
        { "open_tree", __NR_open_tree, A(BADFD, BADPTR, 0xffffffffUL), EPERM, true, false },
        { "move_mount", __NR_move_mount, A(BADFD, BADPTR, BADFD, BADPTR, 0xffffffffUL), EPERM, true, false },
        { "mount_setattr", __NR_mount_setattr, A(BADFD, BADPTR, 0xffffffffUL, 0, 0), EPERM, true, false },
        /* tracing, other processes */
        { "ptrace", __NR_ptrace, A(2 /* PTRACE_PEEKDATA */, (unsigned long) -1, 0, 0), EPERM, true, false },
        { "process_vm_readv", __NR_process_vm_readv, A(0, 0, 0, 0, 0, 1), EPERM, true, false },
        { "process_vm_writev", __NR_process_vm_writev, A(0, 0, 0, 0, 0, 1), EPERM, true, false },
        { "process_madvise", __NR_process_madvise, A(BADFD, 0, 0, 0, 0), EPERM, true, false },
        { "kcmp", __NR_kcmp, A(0x3fffffff, 0x3fffffff, 0, 0, 0), EPERM, true, false },
        { "pidfd_getfd", __NR_pidfd_getfd, A(BADFD, 0, 0), EPERM, true, false },
        /* kernel attack surface */
        { "bpf", __NR_bpf, A(0xffffffffUL, 0, 0), EPERM, true, false },
        { "perf_event_open", __NR_perf_event_open, A(0, 0, BADFD, BADFD, 0), EPERM, true, false },
        { "userfaultfd", __NR_userfaultfd, A(0xffffffffUL), EPERM, true, false },
        { "io_uring_setup", __NR_io_uring_setup, A(0, 0), EPERM, true, false },
        { "io_uring_enter", __NR_io_uring_enter, A(0x7fffffff, 0, 0, 0, 0, 0), EPERM, true, false },
        /* fd -1 is io_uring_register's "blind" opcode form: use a fd that cannot be open */
        { "io_uring_register", __NR_io_uring_register, A(0x7fffffff, 0, 0, 0), EPERM, true, false },
        /* keyrings */
        { "keyctl", __NR_keyctl, A(0x7fffffff, 0, 0, 0, 0), EPERM, true, false },
        { "add_key", __NR_add_key, A(BADPTR, 0, 0, 0, 0), EPERM, true, false },
        { "request_key", __NR_request_key, A(BADPTR, 0, 0, 0), EPERM, true, false },
        /* kernel code and machine state */
        { "init_module", __NR_init_module, A(0, 0, 0), EPERM, true, false },
        { "finit_module", __NR_finit_module, A(BADFD, 0, 0), EPERM, true, false },
        { "delete_module", __NR_delete_module, A(BADPTR, 0), EPERM, true, false },
        /* flags 0xff00: undefined bits, EINVAL (neither ON_CRASH nor PRESERVE_CONTEXT set) */
        { "kexec_load", __NR_kexec_load, A(0, 0, 0, 0xff00), EPERM, true, false },
        { "kexec_file_load", __NR_kexec_file_load, A(BADFD, BADFD, 0, 0, 0xff00), EPERM, true, false },
        /* magic1 = 0 is not LINUX_REBOOT_MAGIC1: EINVAL after the capability check */
        { "reboot", __NR_reboot, A(0, 0, 0, 0), EPERM, true, false },
        { "swapon", __NR_swapon, A(0, 0xffffffffUL), EPERM, true, false },
        { "swapoff", __NR_swapoff, A(BADPTR), EPERM, true, false },
        /* never acct(NULL): that switches accounting off */
        { "acct", __NR_acct, A(BADPTR), EPERM, true, false },
        { "quotactl", __NR_quotactl, A(0xff, 0, 0, 0), EPERM, true, false },
        { "quotactl_fd", __NR_quotactl_fd, A(BADFD, 0xff, 0, 0), EPERM, true, false },
        { "iopl", __NR_iopl, A(4), EPERM, true, false },
        { "ioperm", __NR_ioperm, A(0, 0, 0), EPERM, true, false },
        /* an undefined action: EINVAL (never 5 = clear, 6-8 = console level) */
        { "syslog", __NR_syslog, A(0x7fff, 0, 0), EPERM, true, false },
        { "lookup_dcookie", __NR_lookup_dcookie, A(0, 0, 0), EPERM, true, false },
        /* clocks */
        { "clock_settime", __NR_clock_settime, A(0 /* CLOCK_REALTIME */, 0), EPERM, true, false },
        { "clock_adjtime", __NR_clock_adjtime, A(0, 0), EPERM, true, false },
        { "settimeofday", __NR_settimeofday, A(0, BADPTR), EPERM, true, false },
        { "adjtimex", __NR_adjtimex, A(BADPTR), EPERM, true, false },
        /* host identity: a negative length is EINVAL before anything */
        { "sethostname", __NR_sethostname, A(BADPTR, (unsigned long) -1), EPERM, true, false },
        { "setdomainname", __NR_setdomainname, A(BADPTR, (unsigned long) -1), EPERM, true, false },
        /* file handles, fanotify */
        { "open_by_handle_at", __NR_open_by_handle_at, A(BADFD, 0, 0), EPERM, true, false },
        { "name_to_handle_at", __NR_name_to_handle_at, A((unsigned long) -100, BADPTR, 0, 0, 0xffffffffUL),
          EPERM, true, false },
        { "fanotify_init", __NR_fanotify_init, A(0xffffffffUL, 0), EPERM, true, false },
        /* argument rules */
        { "personality_noaslr", __NR_personality, A(ADDR_NO_RANDOMIZE), EPERM, false, true },
        { "tiocsti", __NR_ioctl, A(0, TIOCSTI, 0), EPERM, false, false },
        { "tiocsti_high", __NR_ioctl, A(0, (1UL << 32) | TIOCSTI, 0), EPERM, false, false },
        { "tioclinux", __NR_ioctl, A(0, TIOCLINUX, 0), EPERM, false, false },
        { "tioclinux_high", __NR_ioctl, A(0, (1UL << 32) | TIOCLINUX, 0), EPERM, false, false },
        /* type 15 is not a socket type: EINVAL before the family is looked up (no module load) */
        { "socket_vsock", __NR_socket, A(AF_VSOCK, 15, 0), EPERM, false, false },
        { "socket_vsock_high", __NR_socket, A((1UL << 32) | AF_VSOCK, 15, 0), EPERM, false, false },
        { "socket_packet", __NR_socket, A(AF_PACKET, 15, 0), EPERM, false, false },
        /* flag bit 0x40 is invalid: EINVAL; the filter looks at the type bits only */
        { "socket_raw", __NR_socket, A(AF_INET, SOCK_RAW | 0x40, 0), EPERM, false, false },
        { "socket_raw6", __NR_socket, A(AF_INET6, SOCK_RAW | 0x40, 0), EPERM, false, false },
        { "socket_inet_packet", __NR_socket, A(AF_INET, SOCK_PACKET | 0x40, 0), EPERM, false, false },
        { "socketpair_vsock", __NR_socketpair, A(AF_VSOCK, 15, 0, 0), EPERM, false, false },
        { "socketpair_packet", __NR_socketpair, A(AF_PACKET, 15, 0, 0), EPERM, false, false },
        { "socketpair_raw", __NR_socketpair, A(AF_INET, SOCK_RAW | 0x40, 0, 0), EPERM, false, false },
};
#undef A
#undef BADFD
#undef BADPTR

/* Address families Docker's profile allows to socket(), minus AF_PACKET (17).  Exact equality on
 * the whole register: a family with stray high bits (which the kernel would truncate) matches
 * nothing and is refused. */
static const int allowed_families[] = {
        0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 13, 14, 15, 16, 18,
        21, 22, 24, 26, 27, 28, 29, 30, 31, 32, 33, 35, 36, 39, 41, 42, 43, 44, 45,
};
/* The socket types allowed for AF_INET/AF_INET6, compared on the type bits (SOCK_TYPE_MASK = 0xf;
 * the kernel refuses any other bit but SOCK_NONBLOCK/SOCK_CLOEXEC).  Not SOCK_RAW, and not
 * SOCK_PACKET, which the kernel silently turns into an AF_PACKET socket. */
static const int allowed_inet_types[] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET };

/* ioctl requests refused, compared on the low 32 bits (the kernel's `unsigned int cmd`). */
static const uint32_t denied_ioctls[] = { TIOCSTI, TIOCLINUX };

/* The personality values Docker allows: PER_LINUX, PER_LINUX32, UNAME26 (alone and with
 * PER_LINUX32), and 0xffffffff, the query. */
static const unsigned long allowed_personalities[] = { 0x0, 0x8, 0x20000, 0x20008, 0xffffffffUL };

static void seccomp_releasep(scmp_filter_ctx *ctx) {
        if (*ctx)
                seccomp_release(*ctx);
}

static int rule(scmp_filter_ctx ctx, uint32_t action, int nr, const char *what, unsigned n_cmp,
                const struct scmp_arg_cmp *cmp, ns_error *err) {
        int r = seccomp_rule_add_array(ctx, action, nr, n_cmp, cmp);
        if (r < 0)
                return ns_err(err, -r, "seccomp rule for %s (syscall %d): %s", what, nr, strerror(-r));
        return 0;
}

/* ALLOW `nr` for every value of argument `arg` whose low 32 bits are not in `excl`.  libseccomp
 * has no masked "not equal", and a full-width "not equal" is the bypass described at the top, so
 * the allowed set is written as a partition: walk the bits from the most significant down; a
 * branch (fixed high bits = `prefix` under `mask`) that holds no excluded value becomes one rule
 * "(arg & mask) == prefix"; a branch holding one is split on the next bit; a fully fixed branch is
 * an excluded value and gets no rule.  Default action (EPERM) covers the excluded values.  At
 * most 32 rules per excluded value. */
static int allow_all_but(scmp_filter_ctx ctx, int nr, const char *what, unsigned arg, const uint32_t *excl,
                         size_t n_excl, int bit, uint32_t mask, uint32_t prefix, ns_error *err) {
        bool hit = false;
        for (size_t i = 0; i < n_excl; i++)
                if ((excl[i] & mask) == prefix)
                        hit = true;
        if (!hit) {
                struct scmp_arg_cmp c = SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, mask, prefix);
                return rule(ctx, SCMP_ACT_ALLOW, nr, what, 1, &c, err);
        }
        if (bit < 0)
                return 0;
        uint32_t b = UINT32_C(1) << bit;
        int r = allow_all_but(ctx, nr, what, arg, excl, n_excl, bit - 1, mask | b, prefix, err);
        if (r < 0)
                return r;
        return allow_all_but(ctx, nr, what, arg, excl, n_excl, bit - 1, mask | b, prefix | b, err);
}

static int add_socket_rules(scmp_filter_ctx ctx, int nr, const char *what, ns_error *err) {
        for (size_t i = 0; i < ARRAY_SIZE(allowed_families); i++) {
                int fam = allowed_families[i];
                if (fam != AF_INET && fam != AF_INET6) {
                        struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t) fam);
                        int r = rule(ctx, SCMP_ACT_ALLOW, nr, what, 1, &c, err);
                        if (r < 0)
                                return r;
                        continue;
                }
                for (size_t t = 0; t < ARRAY_SIZE(allowed_inet_types); t++) {
                        struct scmp_arg_cmp c[2] = {
                                SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t) fam),
                                SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, (scmp_datum_t) allowed_inet_types[t]),
                        };
                        int r = rule(ctx, SCMP_ACT_ALLOW, nr, what, 2, c, err);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int add_argument_rules(scmp_filter_ctx ctx, ns_error *err) {
        int r;
        /* clone: only without namespace flags (Docker's mask: NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
         * NEWUSER, NEWPID, NEWNET).  clone's flags are a full unsigned long in the kernel. */
        struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_MASKED_EQ, 0x7E020000, 0);
        if ((r = rule(ctx, SCMP_ACT_ALLOW, __NR_clone, "clone", 1, &c, err)) < 0)
                return r;
        for (size_t i = 0; i < ARRAY_SIZE(allowed_personalities); i++) {
                c = SCMP_A0(SCMP_CMP_EQ, allowed_personalities[i]);
                if ((r = rule(ctx, SCMP_ACT_ALLOW, __NR_personality, "personality", 1, &c, err)) < 0)
                        return r;
        }
        if ((r = allow_all_but(ctx, __NR_ioctl, "ioctl", 1, denied_ioctls, ARRAY_SIZE(denied_ioctls), 31, 0, 0,
                               err)) < 0)
                return r;
        if ((r = add_socket_rules(ctx, __NR_socket, "socket", err)) < 0)
                return r;
        return add_socket_rules(ctx, __NR_socketpair, "socketpair", err);
}

/* libseccomp 2.5.4 exports only to a file descriptor: export into a memfd, read it back. */
static int export_bpf(scmp_filter_ctx ctx, struct sock_fprog *out, ns_error *err) {
        _cleanup_close_ int fd = memfd_create("nightshift-seccomp", MFD_CLOEXEC);
        if (fd < 0)
                return ns_err_sys(err, errno, "memfd_create");
        int r = seccomp_export_bpf(ctx, fd);
        if (r < 0)
                return ns_err(err, -r, "seccomp_export_bpf: %s", strerror(-r));
        struct stat st;
        if (fstat(fd, &st) < 0)
                return ns_err_sys(err, errno, "fstat seccomp memfd");
        size_t size = (size_t) st.st_size;
        if (size == 0 || size % sizeof(struct sock_filter) != 0 || size / sizeof(struct sock_filter) > BPF_MAXINSNS)
                return ns_err(err, EINVAL, "seccomp export: unexpected program size %zu bytes", size);
        _cleanup_free_ struct sock_filter *insns = malloc(size);
        if (!insns)
                return ns_err(err, ENOMEM, "out of memory");
        for (size_t off = 0; off < size;) {
                ssize_t n = pread(fd, (char *) insns + off, size - off, (off_t) off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return ns_err_sys(err, errno, "read seccomp memfd");
                if (n == 0)
                        return ns_err(err, EIO, "seccomp memfd: short read");
                off += (size_t) n;
        }
        out->len = (unsigned short) (size / sizeof(struct sock_filter));
        out->filter = TAKE_PTR(insns);
        return 0;
}

int sc_filter_build(struct sock_fprog *out, ns_error *err) {
        *out = (struct sock_fprog) { 0 };
        _cleanup_(seccomp_releasep) scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
        if (!ctx)
                return ns_err(err, ENOMEM, "seccomp_init failed");
        /* Foreign ABIs (i386 int $0x80, and x32 numbers, see the top of the file) kill the
         * process: a policy written in x86_64 numbers means nothing for them. */
        int r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
        if (r < 0)
                return ns_err(err, -r, "seccomp bad-arch action: %s", strerror(-r));
        /* sc_filter_load sets no_new_privs itself; the exported program does not carry it. */
        if ((r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0)
                return ns_err(err, -r, "seccomp NNP attribute: %s", strerror(-r));
        /* A binary tree over ~300 syscall numbers instead of a linear scan: cheaper per syscall.
         * Only a speed-up: keep the linear program if this libseccomp cannot. */
        (void) seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);

        /* Denials whose errno differs from the default get a rule; EPERM ones are the default
         * action already (libseccomp refuses a rule that repeats it). */
        for (size_t i = 0; i < ARRAY_SIZE(probes); i++)
                if (probes[i].whole && probes[i].errnum != EPERM &&
                    (r = rule(ctx, SCMP_ACT_ERRNO((uint32_t) probes[i].errnum), (int) probes[i].nr, probes[i].name, 0,
                              NULL, err)) < 0)
                        return r;
        for (size_t i = 0; i < ARRAY_SIZE(allowed); i++) {
                int nr = seccomp_syscall_resolve_name(allowed[i]);
                if (nr < 0) /* unknown to this libseccomp, or not a native syscall: stays denied */
                        continue;
                /* An allow-list entry must never re-open a denied syscall: a table edit that does
                 * so fails the build of the filter, and with it the daemon's start. */
                for (size_t j = 0; j < ARRAY_SIZE(probes); j++)
                        if (probes[j].whole && probes[j].nr == nr)
                                return ns_err(err, EINVAL, "seccomp policy: %s is both allowed and denied", allowed[i]);
                if ((r = rule(ctx, SCMP_ACT_ALLOW, nr, allowed[i], 0, NULL, err)) < 0)
                        return r;
        }
        if ((r = add_argument_rules(ctx, err)) < 0)
                return r;
        return export_bpf(ctx, out, err);
}

void sc_filter_free(struct sock_fprog *prog) {
        if (!prog)
                return;
        free(prog->filter);
        prog->filter = NULL;
        prog->len = 0;
}

int sc_filter_load(const struct sock_fprog *prog) {
        if (!prog || !prog->filter || prog->len == 0)
                return -EINVAL;
        /* Required to install a filter without CAP_SYS_ADMIN, and wanted anyway: nothing exec'd
         * in the sandbox may gain privileges through setuid bits or file capabilities. */
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return -errno;
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog) < 0)
                return -errno;
        return 0;
}

const struct sc_probe *sc_denied_probes(size_t *n) {
        *n = ARRAY_SIZE(probes);
        return probes;
}
