/* Unit tests of spare working trees (worktree.h, "spare trees") with real repositories and the
 * real git CLI: a spare adopted by a session is the tree worktree_create makes (files, index,
 * HEAD, branch, reflogs, .git's files), at the spare's commit and at another one (incremental
 * checkout), after a background move, and not when its commit is gone from the mirror.  TAP. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "supervisor/gitx.h"
#include "supervisor/ids.h"
#include "supervisor/worktree.h"
#include "shell.h"
#include "tap.h"

static char T[64];

static bool exists(const char *path) {
        struct stat st;
        return lstat(path, &st) == 0;
}

/* Everything a session could tell about its tree, with the session id replaced by SID. */
static void describe(const char *ws, const char *sid, char *out, size_t size) {
        cap(out, size,
            "cd %s/%s && { echo \"status [$(git status --porcelain)]\"; git rev-parse HEAD; git symbolic-ref HEAD; "
            "git ls-files -s; git diff-index --cached HEAD; git reflog --format='%%gs %%H'; "
            "find . -path ./.git -prune -o -type f -print | LC_ALL=C sort | xargs sha1sum; "
            "(cd .git && find . ! -name index | LC_ALL=C sort); cat .git/HEAD .git/config .git/objects/info/alternates; "
            "} 2>&1 | sed 's/%s/SID/g'",
            ws, sid, sid);
}

int main(void) {
        int rc = shell_git_root(T, sizeof T, "/tmp/ns-svspare-XXXXXX");
        if (rc)
                return rc;
        setenv("GIT_AUTHOR_NAME", "Setup", 1);
        setenv("GIT_AUTHOR_EMAIL", "setup@example.invalid", 1);
        setenv("GIT_COMMITTER_NAME", "Setup", 1);
        setenv("GIT_COMMITTER_EMAIL", "setup@example.invalid", 1);
        ns_error err = { 0 };
        ok(gitx_init(&err) == 0, "gitx_init");

        /* A source with three commits, pushed into a bare mirror (few objects: stored loose). */
        char src[128], mirror[128], ws[128];
        snprintf(src, sizeof src, "%s/src", T);
        snprintf(mirror, sizeof mirror, "%s/mirror.git", T);
        snprintf(ws, sizeof ws, "%s/ws", T);
        mkdir(ws, 0755);
        int r = sh("set -e; git init -q -b main %s; cd %s; mkdir -p sub gone; echo one > a.txt; echo x > sub/x.txt; "
                   "echo old > gone/old.txt; printf '#!/bin/sh\\n' > run.sh; ln -s a.txt link; git add -A; "
                   "git commit -qm c1; git tag c1; "
                   "echo two > a.txt; git rm -q gone/old.txt; echo new > sub/new.txt; chmod +x run.sh; ln -sf sub/x.txt link; "
                   "git add -A; git commit -qm c2; git tag c2; echo three > a.txt; git commit -qam c3; git tag c3; "
                   "git init -q --bare %s; git push -q %s main c1 c2 c3",
                   src, src, mirror, mirror);
        ok(r == 0, "source and mirror");
        char c1[41], c2[41], c3[41];
        cap(c1, sizeof c1, "git -C %s rev-parse c1", src);
        cap(c2, sizeof c2, "git -C %s rev-parse c2", src);
        cap(c3, sizeof c3, "git -C %s rev-parse c3", src);

        /* -- names */
        char name[WORKTREE_SPARE_NAME_LEN + 1];
        ok(worktree_spare_name_new(name, &err) == 0 && worktree_spare_name_valid(name) && name[0] == '.',
           "a new spare name %s is valid and hidden", name);
        ok(!worktree_spare_name_valid("s-abcdefghijkl") && !worktree_spare_name_valid(".spare-ABCDEFGHIJKL") &&
                   !worktree_spare_name_valid(".spare-../../etc/x") && !worktree_spare_name_valid(".spare-abc") &&
                   !worktree_spare_name_valid(NULL),
           "session ids, bad characters, short names are not spare names");
        ok(!sv_id_valid(name, SV_ID_PREFIX_SESSION), "no session id can take a spare's name");
        ok(worktree_spare_create(ws, "../x", mirror, c1, &err) == -EINVAL, "bad spare name refused");

        /* -- the fresh tree to compare with, at c2 */
        char sf[SV_ID_LEN + 1], sa[SV_ID_LEN + 1], fresh[16384], got[16384];
        sv_id_new('s', sf, &err);
        sv_id_new('s', sa, &err);
        ok(worktree_create(ws, sf, mirror, c2, NULL, &err) == 0, "fresh tree at c2 (%s)", err.msg);
        describe(ws, sf, fresh, sizeof fresh);
        ok(strstr(fresh, "status []") && strstr(fresh, "refs/heads/nightshift/SID"), "the fresh tree is clean, on its branch");

        /* -- a spare at c1 */
        ok(worktree_spare_create(ws, name, mirror, c1, &err) == 0, "spare at c1 (%s)", err.msg);
        char p[512];
        snprintf(p, sizeof p, "%s/%s/.git/refs/heads", ws, name);
        ok(sh("test -z \"$(find %s -type f)\" && test ! -e %s/%s/.git/logs", p, ws, name) == 0, "a spare has no ref and no reflog");
        ok(sh("grep -qx one %s/%s/a.txt && test -e %s/%s/gone/old.txt", ws, name, ws, name) == 0, "its files are c1's");

        /* -- adopted by session A at c2: the incremental checkout */
        worktree_paths wa = { 0 };
        r = worktree_spare_adopt(ws, name, c1, sa, mirror, c2, NULL, NULL, &wa, &err);
        ok(r == 0, "adopt the c1 spare at c2 (%s)", err.msg);
        snprintf(p, sizeof p, "%s/%s", ws, name);
        ok(!exists(p) && wa.tree && strstr(wa.tree, sa), "renamed to the session's directory");
        describe(ws, sa, got, sizeof got);
        ok(strcmp(fresh, got) == 0, "the adopted tree is the fresh one%s%s%s", strcmp(fresh, got) ? "\n# fresh:\n" : "",
           strcmp(fresh, got) ? fresh : "", strcmp(fresh, got) ? got : "");
        ok(sh("grep -rqs spare %s/.git/HEAD %s/.git/refs %s/.git/logs %s/.git/config", wa.tree, wa.tree, wa.tree, wa.tree) != 0,
           "nothing in its .git names the spare");
        worktree_paths_clear(&wa);

        /* -- a spare moved in the background, adopted at its own commit */
        char sb[SV_ID_LEN + 1];
        sv_id_new('s', sb, &err);
        worktree_spare_name_new(name, &err);
        ok(worktree_spare_create(ws, name, mirror, c1, &err) == 0 && worktree_spare_move(ws, name, mirror, c1, c2, &err) == 0,
           "a spare made at c1 and moved to c2 (%s)", err.msg);
        ok(worktree_spare_adopt(ws, name, c2, sb, mirror, c2, NULL, NULL, NULL, &err) == 0, "adopted at c2");
        describe(ws, sb, got, sizeof got);
        ok(strcmp(fresh, got) == 0, "the same tree again");

        /* -- a session directory that exists is never replaced */
        worktree_spare_name_new(name, &err);
        worktree_spare_create(ws, name, mirror, c2, &err);
        ok(worktree_spare_adopt(ws, name, c2, sb, mirror, c2, NULL, NULL, NULL, &err) == -EEXIST, "an existing tree: -EEXIST");
        snprintf(p, sizeof p, "%s/%s", ws, name);
        ok(!exists(p), "and the spare is gone");

        /* -- its commit gone from the mirror: not usable, removed, nothing made */
        char sc[SV_ID_LEN + 1];
        sv_id_new('s', sc, &err);
        worktree_spare_name_new(name, &err);
        ok(worktree_spare_create(ws, name, mirror, c3, &err) == 0, "a spare at c3");
        ok(sh("rm %s/objects/%.2s/%s", mirror, c3, c3 + 2) == 0, "c3 removed from the mirror");
        ok(worktree_spare_move(ws, name, mirror, c3, c2, &err) == -ENOENT, "moving it: -ENOENT (%s)", err.msg);
        r = worktree_spare_adopt(ws, name, c3, sc, mirror, c2, NULL, NULL, NULL, &err);
        snprintf(p, sizeof p, "%s/%s", ws, name);
        char q[512];
        snprintf(q, sizeof q, "%s/%s", ws, sc);
        ok(r == 1 && !exists(p) && !exists(q), "adopting it: unusable (1), the spare removed, no session tree (%s)", err.msg);
        ok(worktree_spare_remove(ws, name, &err) == 0, "removing an absent spare is success");

        /* -- nothing else left */
        worktree_remove(ws, sf, &err);
        worktree_remove(ws, sa, &err);
        worktree_remove(ws, sb, &err);
        ok(sh("test -z \"$(ls -A %s)\"", ws) == 0, "the workspace root is empty");

        gitx_shutdown();
        sh("rm -rf %s", T);
        return tap_done();
}
