/* nightshift supervisor — a session's commit identity (see identity.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"

bool sv_identity_template_ok(const char *tmpl) {
        if (!tmpl || !*tmpl || strlen(tmpl) > SV_IDENTITY_MAX || strpbrk(tmpl, "\n\r<>\"\\"))
                return false;
        const char *p = strchr(tmpl, '%');
        return !p || (p[1] == 's' && !strchr(p + 2, '%'));
}

int sv_identity_expand(const char *tmpl, const char *sid, const char *agent, char **out, ns_error *err) {
        *out = NULL;
        if (!sv_identity_template_ok(tmpl))
                return ns_err(err, EINVAL, "identity template '%.64s' is not valid", tmpl);
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return ns_err(err, ENOMEM, "out of memory");
        for (const char *p = tmpl; *p;) {
                if (!strncmp(p, "{session}", 9)) {
                        fputs(sid, f);
                        p += 9;
                } else if (!strncmp(p, "{agent}", 7)) {
                        fputs(agent ? agent : "agent", f);
                        p += 7;
                } else if (p[0] == '%' && p[1] == 's') {
                        fputs(sid, f);
                        p += 2;
                } else {
                        fputc(*p++, f);
                }
        }
        if (fclose(f) != 0 || !buf)
                return ns_err(err, ENOMEM, "out of memory");
        if (len > 2 * SV_IDENTITY_MAX || strpbrk(buf, "\n<>\"\\")) {
                free(buf);
                return ns_err(err, EINVAL, "identity '%.64s' is not valid", tmpl);
        }
        *out = buf;
        return 0;
}
