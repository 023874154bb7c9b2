/* Identity and limits of sandboxed processes: see caps.h.
 *
 * The order of the steps is forced by the kernel's rules:
 *   1. bounding set first: dropping from it needs CAP_SETPCAP in the effective set, which the
 *      later steps take away (root=false) or which must still be there to drop the others;
 *   2. ambient set cleared (lowering it needs no privilege);
 *   3. supplementary groups, then gid, then uid: setgroups and setresgid need CAP_SETGID, which
 *      the uid change takes away when it leaves uid 0 (the kernel clears permitted and effective
 *      on a 0 -> non-0 transition unless SECBIT_KEEP_CAPS is set);
 *   4. inheritable/permitted/effective set to the final value with capset: lowering is always
 *      allowed, and it also covers a caller that had SECBIT_KEEP_CAPS or NO_SETUID_FIXUP set;
 *   5. everything read back from the kernel and compared with what was asked.
 * The bounding and ambient sets are read from /proc/self/status (one pread before the drop, one
 * after) where procfs is mounted, else one prctl per capability. */
#include "sandboxd/caps.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "common/cleanup.h"

static const cap_value_t docker_caps[] = {
        CAP_CHOWN,  CAP_DAC_OVERRIDE,     CAP_FOWNER,     CAP_FSETID,      CAP_KILL,        CAP_SETGID,
        CAP_SETUID, CAP_SETPCAP,          CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_AUDIT_WRITE, CAP_SETFCAP,
};

uint64_t caps_docker_mask(void) {
        uint64_t m = 0;
        for (size_t i = 0; i < ARRAY_SIZE(docker_caps); i++)
                m |= UINT64_C(1) << docker_caps[i];
        return m;
}

static void cap_freep(cap_t *c) {
        if (*c)
                cap_free(*c);
}
#define _cleanup_cap_ _cleanup_(cap_freep)

/* The kernel's highest capability number.  PR_CAPBSET_READ fails with EINVAL past it; unlike
 * /proc/sys/kernel/cap_last_cap this works whatever /proc the mount namespace shows, and it
 * covers capabilities newer than the libcap we were built with. */
static int last_cap(void) {
        int c = 0;
        while (c < 64 && prctl(PR_CAPBSET_READ, (unsigned long) c, 0, 0, 0) >= 0)
                c++;
        return c - 1;
}

/* The bounding and ambient sets in one read of /proc/self/status (CapBnd/CapAmb, hex masks)
 * instead of one prctl per capability and set: each syscall traps to the hypervisor on the VMs we
 * run on, and the per-capability loops were ~160 of them per exec'd process.  The file must be on
 * procfs (checked with fstatfs: an agent cannot mount, but a file that merely looks like status
 * must never satisfy the check).  pread at offset 0 regenerates the text, so one descriptor
 * serves the read before the drop and the verification after it.  Returns 0, or -1 when the
 * file is unavailable or malformed: the caller then uses the prctl loops, which need no /proc. */
static int status_open(void) {
        int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -1;
        struct statfs sf;
        if (fstatfs(fd, &sf) < 0 || sf.f_type != PROC_SUPER_MAGIC) {
                close(fd);
                return -1;
        }
        return fd;
}

static int status_field(const char *text, const char *key, uint64_t *out) {
        const char *at = strstr(text, key);
        if (!at)
                return -1;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(at + strlen(key), &end, 16);
        if (errno || end == at + strlen(key) || *end != '\n')
                return -1;
        *out = v;
        return 0;
}

static int status_caps(int fd, uint64_t *bnd, uint64_t *amb) {
        /* CapBnd and CapAmb come early in the file (before the CPU and memory masks, whose length
         * grows with the machine): a read cut short still holds them, and a field cut in the
         * middle lacks its '\n' and fails to parse. */
        char text[4096];
        ssize_t n = pread(fd, text, sizeof text - 1, 0);
        if (n <= 0)
                return -1;
        text[n] = '\0';
        return status_field(text, "\nCapBnd:\t", bnd) < 0 || status_field(text, "\nCapAmb:\t", amb) < 0 ? -1 : 0;
}

static int drop_bounding(uint64_t keep, int last, ns_error *err) {
        for (int c = 0; c <= last; c++) {
                if (keep & (UINT64_C(1) << c))
                        continue;
                int in = prctl(PR_CAPBSET_READ, (unsigned long) c, 0, 0, 0);
                if (in < 0)
                        return ns_err_sys(err, errno, "read bounding capability %d", c);
                /* Skip what is already gone: the call is then idempotent even without SETPCAP. */
                if (in > 0 && prctl(PR_CAPBSET_DROP, (unsigned long) c, 0, 0, 0) < 0)
                        return ns_err_sys(err, errno, "drop bounding capability %d", c);
        }
        return 0;
}

static int set_ids(uid_t uid, gid_t gid, ns_error *err) {
        int ngroups = getgroups(0, NULL);
        if (ngroups < 0)
                return ns_err_sys(err, errno, "getgroups");
        /* Skipped when already empty, so that a user namespace whose setgroups is "deny" still
         * works when there is nothing to clear. */
        if (ngroups > 0 && setgroups(0, NULL) < 0)
                return ns_err_sys(err, errno, "clear supplementary groups");
        if (setresgid(gid, gid, gid) < 0)
                return ns_err_sys(err, errno, "setresgid %u", (unsigned) gid);
        if (setresuid(uid, uid, uid) < 0)
                return ns_err_sys(err, errno, "setresuid %u", (unsigned) uid);
        return 0;
}

/* last < 0: the bounding and ambient sets were checked from /proc/self/status already. */
static int verify(uid_t uid, gid_t gid, uint64_t want_caps, int last, cap_t want, ns_error *err) {
        uid_t ru, eu, su;
        gid_t rg, eg, sg;
        if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0)
                return ns_err_sys(err, errno, "getresuid/getresgid");
        uid_t fsu = (uid_t) setfsuid((uid_t) -1); /* an invalid id changes nothing, returns the current */
        gid_t fsg = (gid_t) setfsgid((gid_t) -1);
        if (ru != uid || eu != uid || su != uid || fsu != uid || rg != gid || eg != gid || sg != gid || fsg != gid)
                return ns_err(err, EPERM, "identity check: uid %u/%u/%u/%u gid %u/%u/%u/%u, wanted %u/%u", ru, eu, su,
                              fsu, rg, eg, sg, fsg, (unsigned) uid, (unsigned) gid);
        int ngroups = getgroups(0, NULL);
        if (ngroups != 0)
                return ns_err(err, EPERM, "identity check: %d supplementary groups left", ngroups);
        for (int c = 0; c <= last; c++) {
                int in = prctl(PR_CAPBSET_READ, (unsigned long) c, 0, 0, 0);
                if (in < 0 || (in > 0) != !!(want_caps & (UINT64_C(1) << c)))
                        return ns_err(err, EPERM, "identity check: bounding capability %d is %s", c,
                                      in > 0 ? "set" : "clear");
                int amb = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, (unsigned long) c, 0, 0);
                if (amb != 0)
                        return ns_err(err, EPERM, "identity check: ambient capability %d is set", c);
        }
        _cleanup_cap_ cap_t now = cap_get_proc();
        if (!now)
                return ns_err_sys(err, errno, "cap_get_proc");
        if (cap_compare(now, want) != 0) {
                char *text = cap_to_text(now, NULL);
                int r = ns_err(err, EPERM, "identity check: capabilities are \"%s\"", text ? text : "?");
                cap_free(text);
                return r;
        }
        return 0;
}

int caps_enter_identity(bool root, ns_error *err) {
        uid_t uid = root ? 0 : CAPS_AGENT_UID;
        gid_t gid = root ? 0 : CAPS_AGENT_GID;
        uint64_t keep = root ? caps_docker_mask() : 0;
        int last = -1;

        _cleanup_cap_ cap_t want = cap_init(); /* all three sets empty */
        if (!want)
                return ns_err_sys(err, errno, "cap_init");
        if (root && (cap_set_flag(want, CAP_PERMITTED, (int) ARRAY_SIZE(docker_caps), docker_caps, CAP_SET) < 0 ||
                     cap_set_flag(want, CAP_EFFECTIVE, (int) ARRAY_SIZE(docker_caps), docker_caps, CAP_SET) < 0))
                return ns_err_sys(err, errno, "cap_set_flag");

        /* Fast path: the bounding set is read once and only the capabilities present in it are
         * dropped (none for --root under an init that holds Docker's set), then read back once. */
        _cleanup_close_ int status = status_open();
        uint64_t bnd = 0, amb = 0;
        int r;
        if (status >= 0 && status_caps(status, &bnd, &amb) == 0) {
                for (int c = 0; c < 64; c++)
                        if ((bnd & ~keep) & (UINT64_C(1) << c) && prctl(PR_CAPBSET_DROP, (unsigned long) c, 0, 0, 0) < 0)
                                return ns_err_sys(err, errno, "drop bounding capability %d", c);
        } else {
                if (status >= 0)
                        close(status);
                status = -1;
                last = last_cap();
                if (last < CAP_SETFCAP)
                        return ns_err(err, ENOSYS, "cannot determine the kernel's last capability (%d)", last);
                if ((r = drop_bounding(keep, last, err)) < 0)
                        return r;
        }
        /* Ambient capabilities survive execve of an unprivileged binary: none may be left. */
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
                return ns_err_sys(err, errno, "clear ambient capabilities");
        if ((r = set_ids(uid, gid, err)) < 0)
                return r;
        if (cap_set_proc(want) < 0)
                return ns_err_sys(err, errno, "cap_set_proc");
        if (status >= 0) {
                /* Exactly the requested bounding set and no ambient capability, as the kernel
                 * reports them now; a failed read fails the check (never skips it). */
                if (status_caps(status, &bnd, &amb) < 0)
                        return ns_err(err, EPERM, "identity check: cannot read /proc/self/status back");
                if (bnd != keep)
                        return ns_err(err, EPERM, "identity check: bounding set is %#llx, wanted %#llx",
                                      (unsigned long long) bnd, (unsigned long long) keep);
                if (amb != 0)
                        return ns_err(err, EPERM, "identity check: ambient set is %#llx", (unsigned long long) amb);
        }
        return verify(uid, gid, keep, last, want, err);
}

int caps_set_rlimits(ns_error *err) {
        struct rlimit core = { 0, 0 };
        if (setrlimit(RLIMIT_CORE, &core) < 0)
                return ns_err_sys(err, errno, "setrlimit RLIMIT_CORE");
        struct rlimit nofile;
        if (getrlimit(RLIMIT_NOFILE, &nofile) < 0)
                return ns_err_sys(err, errno, "getrlimit RLIMIT_NOFILE");
        rlim_t n = 65536;
        /* Never raise the hard limit: that needs CAP_SYS_RESOURCE of the initial namespace, and
         * whoever lowered it meant it. */
        if (nofile.rlim_max != RLIM_INFINITY && nofile.rlim_max < n)
                n = nofile.rlim_max;
        nofile.rlim_cur = nofile.rlim_max = n;
        if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
                return ns_err_sys(err, errno, "setrlimit RLIMIT_NOFILE %llu", (unsigned long long) n);
        return 0;
}
