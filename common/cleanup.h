/* nightshift — scope-bound cleanup, in the style of systemd and crun.
 *
 *   _cleanup_free_ char *p = malloc(...);     freed when p leaves scope
 *   _cleanup_close_ int fd = open(...);        closed when fd leaves scope (-1 = nothing)
 *   return TAKE_FD(fd);                        hand the fd to the caller
 *   return TAKE_PTR(p);                        hand the pointer to the caller */
#pragma once

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p) {
        free(*(void **) p);
}
static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}
static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}
static inline void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}
/* Frees a NULL-terminated array of strings and the array. */
static inline void strv_freep(char ***v) {
        if (*v) {
                for (char **s = *v; *s; s++)
                        free(*s);
                free(*v);
        }
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)
#define _cleanup_closedir_ _cleanup_(closedirp)
#define _cleanup_strv_ _cleanup_(strv_freep)

#define TAKE_PTR(p)                                 \
        ({                                          \
                __typeof__(p) _taken_ = (p);        \
                (p) = NULL;                         \
                _taken_;                            \
        })
#define TAKE_FD(fd)                                 \
        ({                                          \
                int _taken_ = (fd);                 \
                (fd) = -1;                          \
                _taken_;                            \
        })

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
