#include "gitx.h"

#include <stdio.h>
#include <string.h>

int gitx_init(ns_error *err) {
        int r = git_libgit2_init();
        if (r < 0)
                return gitx_err(err, r, "git_libgit2_init");
        /* Why: libgit2 would otherwise merge /etc/gitconfig, ~/.gitconfig and XDG config into every
         * repository it opens.  Those can carry url.*.insteadOf, core.hooksPath, filters... that we
         * did not decide; the supervisor's git behaviour must depend on nothing but the repository
         * configs it wrote itself.  An empty search path means "no file at this level". */
        static const int levels[] = { GIT_CONFIG_LEVEL_SYSTEM, GIT_CONFIG_LEVEL_XDG,
                                      GIT_CONFIG_LEVEL_GLOBAL, GIT_CONFIG_LEVEL_PROGRAMDATA };
        for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
                r = git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, levels[i], "");
                if (r < 0) {
                        git_libgit2_shutdown();
                        return gitx_err(err, r, "git_libgit2_opts(SET_SEARCH_PATH)");
                }
        }
        /* Why: with no global config there is no safe.directory either, so libgit2's owner check
         * would refuse every source repository not owned by the service user, starting with the
         * user's own checkout that `nightshift run --repo PATH` registers.  libgit2 runs no hooks,
         * no fsmonitor and no external filter commands, and the supervisor opens only its own
         * mirrors and the sources it clones from, never a session's tree (see worktree.h), so
         * the check would guard nothing here. */
        if ((r = git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 0)) < 0) {
                git_libgit2_shutdown();
                return gitx_err(err, r, "git_libgit2_opts(SET_OWNER_VALIDATION)");
        }
        return 0;
}

void gitx_shutdown(void) {
        git_libgit2_shutdown();
}

static int gitx_errno(int gerr) {
        switch (gerr) {
        case GIT_ENOTFOUND: return ENOENT;
        case GIT_EEXISTS: return EEXIST;
        case GIT_EAMBIGUOUS: return EINVAL;
        case GIT_EBUFS: return ENOBUFS;
        case GIT_EUSER: return ECANCELED;
        case GIT_EBAREREPO: return EINVAL;
        case GIT_EUNBORNBRANCH: return ENOENT;
        case GIT_ENONFASTFORWARD: return EAGAIN;
        case GIT_EINVALIDSPEC: return EINVAL;
        case GIT_ECONFLICT: return EBUSY;
        case GIT_ELOCKED: return EBUSY;
        case GIT_EMODIFIED: return ESTALE;
        case GIT_EAUTH: return EACCES;
        case GIT_ECERTIFICATE: return EACCES;
        case GIT_EPEEL: return EINVAL;
        case GIT_EEOF: return EPIPE;
        case GIT_EINVALID: return EINVAL;
        case GIT_EDIRECTORY: return EISDIR;
        case GIT_EMISMATCH: return EBADMSG;
        case GIT_EOWNER: return EPERM;
        default: return EIO;
        }
}

int gitx_err(ns_error *err, int gerr, const char *fmt, ...) {
        char ctx[NS_ERROR_MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx, sizeof ctx, fmt, ap);
        va_end(ap);
        const git_error *e = git_error_last();
        int code = gitx_errno(gerr);
        if (e && e->message)
                return ns_err(err, code, "%s: %s", ctx, e->message);
        return ns_err(err, code, "%s: libgit2 error %d", ctx, gerr);
}

int gitx_open_exact(git_repository **out, const char *path, ns_error *err) {
        /* NO_SEARCH: never walk up to a parent repository.  FROM_ENV is not set, so GIT_DIR and
         * friends in our environment are ignored.  Callers pass only a bare mirror or a tree whose
         * `.git` directory they created a moment ago — never a session tree later on, because
         * libgit2 would follow a `.git` file's "gitdir:" there. */
        int r = git_repository_open_ext(out, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
        if (r < 0)
                return gitx_err(err, r, "open repository %s", path);
        return 0;
}

int gitx_is_sha_hex(const char *s) {
        if (!s)
                return 0;
        size_t n = 0;
        for (; s[n]; n++)
                if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
                        return 0;
        return n == GIT_OID_HEXSZ;
}
