#include "ids.h"

#include <string.h>
#include <sys/random.h>

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";

int sv_id_new(char prefix, char out[SV_ID_LEN + 1], ns_error *err) {
        unsigned char rnd[SV_ID_BODY_LEN];
        size_t got = 0;
        while (got < sizeof rnd) {
                ssize_t n = getrandom(rnd + got, sizeof rnd - got, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return ns_err_sys(err, errno, "getrandom");
                }
                got += (size_t) n;
        }
        out[0] = prefix;
        out[1] = '-';
        for (size_t i = 0; i < SV_ID_BODY_LEN; i++)
                out[2 + i] = b32[rnd[i] & 31];
        out[SV_ID_LEN] = '\0';
        return 0;
}

bool sv_id_valid(const char *s, char prefix) {
        if (!s || strlen(s) != SV_ID_LEN || s[0] != prefix || s[1] != '-')
                return false;
        for (size_t i = 2; i < SV_ID_LEN; i++)
                if (!strchr(b32, s[i]) || s[i] == '\0')
                        return false;
        return true;
}
