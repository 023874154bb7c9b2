#include "err.h"

#include <stdio.h>
#include <string.h>

static int err_vset(ns_error *err, int code, int with_strerror, const char *fmt, va_list ap) {
        if (code <= 0)
                code = EIO;
        if (!err)
                return -code;
        err->code = code;
        int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        if (with_strerror && n >= 0 && (size_t) n < sizeof err->msg)
                snprintf(err->msg + n, sizeof err->msg - (size_t) n, ": %s", strerror(code));
        return -code;
}

int ns_err(ns_error *err, int code, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = err_vset(err, code, 0, fmt, ap);
        va_end(ap);
        return r;
}

int ns_err_sys(ns_error *err, int code, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = err_vset(err, code, 1, fmt, ap);
        va_end(ap);
        return r;
}

int ns_err_wrap(ns_error *err, const char *fmt, ...) {
        if (!err)
                return -EIO;
        char prefix[NS_ERROR_MSG_MAX], old[NS_ERROR_MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        snprintf(err->msg, sizeof err->msg, "%.100s: %.150s", prefix, old);
        if (err->code <= 0)
                err->code = EIO;
        return -err->code;
}

void ns_err_clear(ns_error *err) {
        if (err) {
                err->code = 0;
                err->msg[0] = '\0';
        }
}

const char *ns_errno_name(int code) {
        switch (code) {
#define N(e) case e: return #e
        N(EPERM); N(ENOENT); N(ESRCH); N(EINTR); N(EIO); N(ENXIO); N(E2BIG); N(ENOEXEC); N(EBADF);
        N(ECHILD); N(EAGAIN); N(ENOMEM); N(EACCES); N(EFAULT); N(EBUSY); N(EEXIST); N(EXDEV);
        N(ENODEV); N(ENOTDIR); N(EISDIR); N(EINVAL); N(ENFILE); N(EMFILE); N(ENOTTY); N(EFBIG);
        N(ENOSPC); N(ESPIPE); N(EROFS); N(EMLINK); N(EPIPE); N(ERANGE); N(ENAMETOOLONG);
        N(ENOSYS); N(ENOTEMPTY); N(ELOOP); N(EPROTO); N(EMSGSIZE); N(EPROTONOSUPPORT);
        N(EOPNOTSUPP); N(EADDRINUSE); N(EADDRNOTAVAIL); N(ECONNREFUSED); N(ECONNRESET);
        N(ETIMEDOUT); N(EALREADY); N(ECANCELED);
#undef N
        default: return "EUNKNOWN";
        }
}
