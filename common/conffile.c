#include "conffile.h"

#include <stdio.h>
#include <string.h>

#include "cleanup.h"

int ns_conffile_load(const char *path, int (*apply)(void *ctx, const char *key, const char *val, ns_error *err),
                     void *ctx, ns_error *err) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return ns_err_sys(err, errno, "open %s", path);
        char line[4096];
        int lineno = 0;
        while (fgets(line, sizeof line, f)) {
                lineno++;
                size_t len = strlen(line);
                if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f))
                        return ns_err(err, EINVAL, "%s:%d: line too long", path, lineno);
                char *p = line + strspn(line, " \t");
                p[strcspn(p, "\r\n")] = '\0';
                if (!*p || *p == '#')
                        continue;
                char *sep = p + strcspn(p, " \t=");
                char *val = sep + strspn(sep, " \t=");
                *sep = '\0';
                int r = apply(ctx, p, val, err);
                if (r < 0)
                        return ns_err_wrap(err, "%s:%d", path, lineno);
        }
        if (ferror(f))
                return ns_err_sys(err, EIO, "read %s", path);
        return 0;
}
