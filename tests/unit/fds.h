/* Unit tests' descriptor count: how many this process holds, to show that nothing leaked. */
#pragma once

#include <dirent.h>

#include "common/cleanup.h"

/* The entries of /proc/self/fd (the directory's own descriptor among them), or -1. */
static inline int count_fds(void) {
        _cleanup_closedir_ DIR *d = opendir("/proc/self/fd");
        int n = 0;
        if (!d)
                return -1;
        while (readdir(d))
                n++;
        return n;
}
