/* nightshift — the helpers' allow-list filter (see seccomp_allow.h). */
#include <errno.h>
#include <seccomp.h>
#include <string.h>

#include "common/seccomp_allow.h"

static void ctx_releasep(scmp_filter_ctx *ctx) {
        if (*ctx)
                seccomp_release(*ctx);
}

int ns_seccomp_allow_only(const char *const *allowed_calls, size_t n, ns_error *err) {
        /* Why EPERM and not a kill: a refused call in a helper is a bug to be logged by the
         * helper, and the helper's peers see an error rather than a vanished process. */
        __attribute__((cleanup(ctx_releasep))) scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
        if (!ctx)
                return ns_err(err, ENOMEM, "seccomp_init failed");
        int r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
        if (r < 0)
                return ns_err(err, -r, "seccomp bad-arch action: %s", strerror(-r));
        /* libseccomp sets no_new_privs itself before loading (SCMP_FLTATR_CTL_NNP, its default). */
        for (size_t i = 0; i < n; i++) {
                int nr = seccomp_syscall_resolve_name(allowed_calls[i]);
                if (nr < 0)
                        continue;
                if ((r = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 0, NULL)) < 0)
                        return ns_err(err, -r, "seccomp rule for %s: %s", allowed_calls[i], strerror(-r));
        }
        if ((r = seccomp_load(ctx)) < 0)
                return ns_err(err, -r, "seccomp_load: %s", strerror(-r));
        return 0;
}
