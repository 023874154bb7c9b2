/* Unit tests of the supervisor's git foundations with real repositories and the real git CLI:
 * mirrors (mirror.c), private working trees (worktree.c), pack import (import.c) and the
 * descriptor-based delete (fsutil.c), including a hostile session .git.  TAP output; everything
 * lives under one /tmp directory, removed at the end. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/fsutil.h"
#include "supervisor/gitx.h"
#include "supervisor/ids.h"
#include "supervisor/import.h"
#include "supervisor/mirror.h"
#include "supervisor/worktree.h"
#include "shell.h"
#include "tap.h"

static char T[64]; /* the test's temp root */

static char *slurp(const char *path) {
        FILE *f = fopen(path, "r");
        if (!f)
                return NULL;
        char *buf = calloc(1, 1 << 16);
        size_t n = fread(buf, 1, (1 << 16) - 1, f);
        buf[n] = '\0';
        fclose(f);
        return buf;
}

static bool exists(const char *path) {
        struct stat st;
        return lstat(path, &st) == 0;
}

static int count_incoming(const char *mirror) {
        char p[512];
        snprintf(p, sizeof p, "%s/objects", mirror);
        DIR *d = opendir(p);
        int n = 0;
        struct dirent *de;
        while (d && (de = readdir(d)))
                n += strncmp(de->d_name, "ns-incoming-", 12) == 0;
        if (d)
                closedir(d);
        return n;
}

/* Import the pack file at `pack` (opened here) into the mirror. */
static int import_path(const char *mirror, const char *branch, const char *pack, const char *tip, const char *base,
                       const import_opts *o, import_result *res, ns_error *err) {
        int fd = open(pack, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return ns_err_sys(err, errno, "open %s", pack);
        int r = import_pack(mirror, branch, fd, tip, base, o, res, err);
        close(fd);
        return r;
}

/* A session's identity, as the supervisor will pass it into the sandbox. */
#define IDENT(sid)                                                                                               \
        "GIT_AUTHOR_NAME='nightshift " sid "' GIT_AUTHOR_EMAIL=" sid "@nightshift.invalid GIT_COMMITTER_NAME='nightshift " \
        sid "' GIT_COMMITTER_EMAIL=" sid "@nightshift.invalid"

int main(void) {
        int rc = shell_git_root(T, sizeof T, "/tmp/ns-svgit-XXXXXX");
        if (rc)
                return rc;
        setenv("GIT_AUTHOR_NAME", "Setup", 1);
        setenv("GIT_AUTHOR_EMAIL", "setup@example.invalid", 1);
        setenv("GIT_COMMITTER_NAME", "Setup", 1);
        setenv("GIT_COMMITTER_EMAIL", "setup@example.invalid", 1);

        /* A global config the supervisor must not read (gitx_init makes libgit2 hermetic): with
         * it, checked-out text files would get CRLF line ends. */
        sh("printf '[core]\\n\\tautocrlf = true\\n' > %s/home/.gitconfig", T);

        ns_error err = { 0 };
        ok(gitx_init(&err) == 0, "gitx_init");

        char src[128], data[128], ws[128], outside[128], marker[160];
        snprintf(src, sizeof src, "%s/src", T);
        snprintf(data, sizeof data, "%s/data", T);
        snprintf(ws, sizeof ws, "%s/ws", T);
        snprintf(outside, sizeof outside, "%s/outside", T);
        snprintf(marker, sizeof marker, "%s/MARKER", T);
        mkdir(ws, 0755);

        /* -- a source repository: main (2 commits), feature (1 more), annotated tag v1 */
        int r = sh("set -e; git init -q -b main %s; cd %s; printf 'hello\\nworld\\n' > a.txt; mkdir -p d/e; "
                   "echo deep > d/e/f.txt; git add -A; git commit -qm one; git tag -a v1 -m 'release 1'; "
                   "echo more >> a.txt; git commit -qam two; git checkout -qb feature; echo feat > feat.txt; "
                   "git add feat.txt; git commit -qm feat; git checkout -q main",
                   src, src);
        ok(r == 0, "source repo with main, feature and tag v1");

        /* -- mirror */
        char *source = NULL;
        char rel[160];
        snprintf(rel, sizeof rel, "%s/../%s/src", T, strrchr(T, '/') + 1);
        r = mirror_source_normalize(rel, &source, &err);
        ok(r == 0 && strcmp(source, src) == 0, "local path normalized to %s", source ? source : err.msg);
        {
                char *u = NULL;
                ok(mirror_source_normalize("https://example.invalid/x.git", &u, &err) == 0 &&
                           strcmp(u, "https://example.invalid/x.git") == 0,
                   "a URL is kept as is");
                free(u);
                ok(mirror_source_normalize("/nonexistent/repo", &u, &err) == -ENOENT, "missing path refused: %s", err.msg);
        }
        char repo_id[SV_ID_LEN + 1];
        sv_id_new(SV_ID_PREFIX_REPO, repo_id, &err);
        char *mirror = NULL, *defbranch = NULL;
        mirror_path_for(data, repo_id, &mirror, &err);
        r = mirror_create(mirror, source, &defbranch, &err);
        ok(r == 0 && defbranch && strcmp(defbranch, "main") == 0, "mirror created, default branch %s (%s)",
           defbranch ? defbranch : "-", err.msg);
        char a[4096], b[4096];
        cap(a, sizeof a, "git -C %s for-each-ref --format='%%(objectname) %%(refname)' refs/heads refs/tags", src);
        cap(b, sizeof b, "git -C %s for-each-ref --format='%%(objectname) %%(refname)' refs/heads refs/tags", mirror);
        ok(strcmp(a, b) == 0 && strstr(b, "refs/heads/feature") && strstr(b, "refs/tags/v1"),
           "mirror has the same branches and tags");
        cap(a, sizeof a, "git -C %s rev-parse --is-bare-repository", mirror);
        ok(strcmp(a, "true") == 0, "mirror is bare");
        char *mirror_config = NULL;
        {
                char p[512];
                snprintf(p, sizeof p, "%s/config", mirror);
                mirror_config = slurp(p);
                ok(mirror_config && !strstr(mirror_config, "url") && !strstr(mirror_config, "remote"),
                   "mirror config holds no remote or url");
        }
        ok(mirror_create(mirror, source, NULL, &err) == -EEXIST, "a second create on the same path is refused");

        /* -- resolve */
        char sha[41], want[41];
        cap(want, sizeof want, "git -C %s rev-parse main", src);
        ok(mirror_resolve(mirror, "main", sha, &err) == 0 && strcmp(sha, want) == 0, "resolve main");
        ok(mirror_resolve(mirror, "HEAD", sha, &err) == 0 && strcmp(sha, want) == 0, "resolve HEAD");
        ok(mirror_resolve(mirror, "refs/heads/main", sha, &err) == 0 && strcmp(sha, want) == 0, "resolve refs/heads/main");
        cap(want, sizeof want, "git -C %s rev-parse feature", src);
        ok(mirror_resolve(mirror, "feature", sha, &err) == 0 && strcmp(sha, want) == 0, "resolve feature");
        cap(want, sizeof want, "git -C %s rev-parse 'v1^{commit}'", src);
        ok(mirror_resolve(mirror, "v1", sha, &err) == 0 && strcmp(sha, want) == 0, "resolve annotated tag v1 to its commit");
        ok(mirror_resolve(mirror, want, sha, &err) == 0 && strcmp(sha, want) == 0, "resolve a full sha");
        char shortsha[12];
        snprintf(shortsha, sizeof shortsha, "%.10s", want);
        ok(mirror_resolve(mirror, shortsha, sha, &err) == 0 && strcmp(sha, want) == 0, "resolve an abbreviated sha");
        char main_sha[41];
        mirror_resolve(mirror, "main", main_sha, &err);

        char refs_before[4096], refs_after[4096];
        cap(refs_before, sizeof refs_before, "git -C %s for-each-ref", mirror);
        r = mirror_resolve(mirror, "nope", sha, &err);
        ok(r == -ENOENT && strcmp(err.msg, "base ref 'nope' not found") == 0, "missing base ref: \"%s\"", err.msg);
        ok(mirror_resolve(mirror, "0123456789abcdef0123456789abcdef01234567", sha, &err) == -ENOENT,
           "unknown sha: %s", err.msg);
        ok(mirror_resolve(mirror, "../../etc/passwd", sha, &err) == -EINVAL, "malformed ref refused: %s", err.msg);
        ok(mirror_resolve(mirror, "main@{1}", sha, &err) == -EINVAL, "reflog syntax refused");
        cap(refs_after, sizeof refs_after, "git -C %s for-each-ref", mirror);
        {
                DIR *dd = opendir(ws);
                int entries = 0;
                struct dirent *de;
                while (dd && (de = readdir(dd)))
                        entries += de->d_name[0] != '.';
                closedir(dd);
                ok(strcmp(refs_before, refs_after) == 0 && entries == 0,
                   "after the failed resolves: no ref, no working tree created");
        }

        /* -- working tree of session A */
        char sa[SV_ID_LEN + 1], sb[SV_ID_LEN + 1], sc[SV_ID_LEN + 1];
        sv_id_new('s', sa, &err);
        sv_id_new('s', sb, &err);
        sv_id_new('s', sc, &err);
        worktree_paths wa = { 0 };
        r = worktree_create(ws, sa, mirror, main_sha, &wa, &err);
        ok(r == 0, "worktree_create %s (%s)", sa, err.msg);
        struct stat st;
        char p[512];
        snprintf(p, sizeof p, "%s/.git", wa.tree);
        ok(lstat(p, &st) == 0 && S_ISDIR(st.st_mode) && strcmp(p, wa.gitdir) == 0, ".git is a real directory");
        snprintf(p, sizeof p, "%s/objects/info/alternates", wa.gitdir);
        char *alt = slurp(p);
        char want_alt[512];
        snprintf(want_alt, sizeof want_alt, "%s/objects\n", mirror);
        ok(alt && strcmp(alt, want_alt) == 0, "alternates = the mirror's objects, absolute");
        free(alt);
        snprintf(p, sizeof p, "%s/config", wa.gitdir);
        char *cfg = slurp(p);
        ok(cfg && strcmp(cfg, "[core]\n\trepositoryformatversion = 0\n\tbare = false\n") == 0, "minimal config");
        free(cfg);
        ok(sh("test -z \"$(find %s/hooks -type f 2>/dev/null)\"", wa.gitdir) == 0, "no hooks");
        snprintf(p, sizeof p, "%s/HEAD", wa.gitdir);
        char *head = slurp(p);
        char want_head[128];
        snprintf(want_head, sizeof want_head, "ref: refs/heads/nightshift/%s\n", sa);
        ok(head && strcmp(head, want_head) == 0, "HEAD on nightshift/%s", sa);
        free(head);
        cap(a, sizeof a, "git -C %s status --porcelain 2>&1; echo rc=$?", wa.tree);
        ok(strcmp(a, "rc=0") == 0, "CLI git status is clean (%s)", a);
        cap(a, sizeof a, "git -C %s log -1 --format=%%H", wa.tree);
        ok(strcmp(a, main_sha) == 0, "CLI git log shows the base commit");
        snprintf(p, sizeof p, "%s/d/e/f.txt", wa.tree);
        char *f = slurp(p);
        ok(f && strcmp(f, "deep\n") == 0, "files checked out, LF kept: ~/.gitconfig (autocrlf=true) not read");
        free(f);
        ok(sh("test \"$(stat -c %%u %s/a.txt)\" = \"$(id -u)\"", wa.tree) == 0, "files owned by the caller");
        ok(worktree_create(ws, sa, mirror, main_sha, NULL, &err) == -EEXIST, "a second create for the session is refused");
        {
                char sx[SV_ID_LEN + 1];
                sv_id_new('s', sx, &err);
                r = worktree_create(ws, sx, mirror, "0123456789abcdef0123456789abcdef01234567", NULL, &err);
                snprintf(p, sizeof p, "%s/%s", ws, sx);
                ok(r == -ENOENT && !exists(p), "unknown base commit: error and nothing left (%s)", err.msg);
                ok(worktree_create(ws, "../etc", mirror, main_sha, NULL, &err) == -EINVAL, "bad session id refused");
        }

        /* -- a commit made with the CLI inside the tree, exported as a pack, imported */
        r = sh("set -e; cd %s; echo new > new.txt; printf 'hello\\nWORLD\\nmore\\nx\\n' > a.txt; git rm -q d/e/f.txt; "
               "git add -A; " IDENT("%s") " git commit -qm 'turn 1: add new.txt'",
               wa.tree, sa, sa, sa, sa);
        ok(r == 0, "CLI git commit with the session identity in the tree");
        char tip1[41];
        cap(tip1, sizeof tip1, "git -C %s rev-parse HEAD", wa.tree);
        char pack[256];
        snprintf(pack, sizeof pack, "%s/turn1.pack", T);
        r = sh("printf '%%s\\n^%%s\\n' %s %s | git -C %s pack-objects -q --revs --stdout > %s", tip1, main_sha, wa.tree, pack);
        ok(r == 0, "pack-objects --revs %.12s --not base", tip1);

        char branch_a[64];
        snprintf(branch_a, sizeof branch_a, "nightshift/%s", sa);
        import_result res = { 0 };
        r = import_path(mirror, branch_a, pack, tip1, main_sha, NULL, &res, &err);
        ok(r == 0 && res.created && res.commits == 1, "import: branch created with 1 commit (%s)", err.msg);
        char tip[41];
        mirror_branch_tip(mirror, branch_a, tip, &err);
        ok(strcmp(tip, tip1) == 0, "mirror's %s is at the session's commit", branch_a);
        cap(a, sizeof a, "git -C %s log -1 --format='%%an <%%ae>|%%s' %s", mirror, branch_a);
        char want_log[256];
        snprintf(want_log, sizeof want_log, "nightshift %s <%s@nightshift.invalid>|turn 1: add new.txt", sa, sa);
        ok(strcmp(a, want_log) == 0, "commit by the session identity: %s", a);
        {
                int seen_new = 0, seen_a = 0, seen_del = 0;
                for (size_t i = 0; i < res.n_files; i++) {
                        import_file *fi = &res.files[i];
                        if (!strcmp(fi->path, "new.txt") && fi->status == 'A' && fi->additions == 1 && fi->deletions == 0)
                                seen_new = 1;
                        if (!strcmp(fi->path, "a.txt") && fi->status == 'M' && fi->additions == 2 && fi->deletions == 1)
                                seen_a = 1;
                        if (!strcmp(fi->path, "d/e/f.txt") && fi->status == 'D' && fi->deletions == 1)
                                seen_del = 1;
                }
                ok(res.files_changed == 3 && res.n_files == 3 && seen_new && seen_a && seen_del && res.additions == 3 &&
                           res.deletions == 2,
                   "files and +/-: %zu files, +%zu -%zu", res.files_changed, res.additions, res.deletions);
                char *json = NULL;
                r = import_commit_event_json(&res, branch_a, &json, &err);
                cJSON *j = json ? cJSON_Parse(json) : NULL;
                cJSON *s = j ? cJSON_GetObjectItem(j, "sha") : NULL;
                ok(r == 0 && s && cJSON_IsString(s) && strcmp(s->valuestring, tip1) == 0 &&
                           cJSON_GetArraySize(cJSON_GetObjectItem(j, "files")) == 3,
                   "commit event JSON");
                cJSON_Delete(j);
                free(json);
        }
        import_result_clear(&res);
        ok(sh("git -C %s fsck --no-dangling 2>&1", mirror) == 0, "mirror passes git fsck");
        ok(count_incoming(mirror) == 0, "quarantine removed");

        /* -- a second turn: incremental pack, fast-forward */
        r = sh("set -e; cd %s; echo two >> new.txt; git add -A; " IDENT("%s") " git commit -qm 'turn 2'", wa.tree, sa, sa, sa, sa);
        char tip2[41];
        cap(tip2, sizeof tip2, "git -C %s rev-parse HEAD", wa.tree);
        snprintf(pack, sizeof pack, "%s/turn2.pack", T);
        sh("printf '%%s\\n^%%s\\n' %s %s | git -C %s pack-objects -q --revs --stdout > %s", tip2, tip1, wa.tree, pack);
        r = import_path(mirror, branch_a, pack, tip2, main_sha, NULL, &res, &err);
        mirror_branch_tip(mirror, branch_a, tip, &err);
        ok(r == 0 && !res.created && res.commits == 1 && strcmp(tip, tip2) == 0 && res.additions == 1,
           "second import fast-forwards (%s)", err.msg);
        import_result_clear(&res);
        r = import_pack(mirror, branch_a, -1, tip2, main_sha, NULL, &res, &err);
        ok(r == 0 && res.commits == 0, "importing the current tip again is a no-op");
        import_result_clear(&res);

        /* -- refusals, each leaving the branch where it was */
        {
                /* a diverging history: reset to the base and commit something else */
                r = sh("set -e; cd %s; git branch -q keep; git reset -q --hard %s; echo other > other.txt; git add -A; " IDENT(
                               "%s") " git commit -qm diverge",
                       wa.tree, main_sha, sa, sa, sa, sa);
                char div[41];
                cap(div, sizeof div, "git -C %s rev-parse HEAD", wa.tree);
                snprintf(pack, sizeof pack, "%s/diverge.pack", T);
                sh("printf '%%s\\n^%%s\\n' %s %s | git -C %s pack-objects -q --revs --stdout > %s", div, main_sha, wa.tree, pack);
                r = import_path(mirror, branch_a, pack, div, main_sha, NULL, &res, &err);
                mirror_branch_tip(mirror, branch_a, tip, NULL);
                ok(r == -EAGAIN && strcmp(tip, tip2) == 0, "non-fast-forward refused, branch unchanged: %s", err.msg);
                ok(count_incoming(mirror) == 0, "quarantine removed after a refusal");
                char objpath[512];
                snprintf(objpath, sizeof objpath, "git -C %s cat-file -e %s 2>/dev/null", mirror, div);
                ok(sh("%s", objpath) != 0, "refused objects did not enter the mirror");

                r = import_path(mirror, branch_a, pack, "0123456789abcdef0123456789abcdef01234567", main_sha, NULL, &res, &err);
                ok(r == -ENOENT, "tip not in the pack refused: %s", err.msg);
                r = import_path(mirror, "main", pack, div, main_sha, NULL, &res, &err);
                ok(r == -EPERM, "branch outside nightshift/ refused: %s", err.msg);
                r = import_path(mirror, "nightshift/../main", pack, div, main_sha, NULL, &res, &err);
                ok(r == -EPERM, "nightshift/../main refused");
                import_opts small = { .max_pack_bytes = 64 };
                r = import_path(mirror, branch_a, pack, div, main_sha, &small, &res, &err);
                ok(r == -EFBIG, "pack over the size bound refused: %s", err.msg);
                snprintf(pack, sizeof pack, "%s/garbage.pack", T);
                sh("head -c 5000 /dev/urandom > %s", pack);
                r = import_path(mirror, branch_a, pack, div, main_sha, NULL, &res, &err);
                ok(r < 0, "garbage refused: %s", err.msg);
                sh("printf 'PACK\\0\\0\\0\\2\\377\\377\\377\\377' > %s", pack);
                r = import_path(mirror, branch_a, pack, div, main_sha, NULL, &res, &err);
                ok(r == -EFBIG, "absurd object count refused before indexing: %s", err.msg);

                /* an incomplete pack: the commit and its tree but not the new blob */
                char dtree[41];
                cap(dtree, sizeof dtree, "git -C %s rev-parse %s^{tree}", wa.tree, div);
                snprintf(pack, sizeof pack, "%s/incomplete.pack", T);
                sh("printf '%%s\\n%%s\\n' %s %s | git -C %s pack-objects -q --stdout > %s", div, dtree, wa.tree, pack);
                char sx[SV_ID_LEN + 1], bx[64];
                sv_id_new('s', sx, &err);
                snprintf(bx, sizeof bx, "nightshift/%s", sx);
                r = import_path(mirror, bx, pack, div, main_sha, NULL, &res, &err);
                ok(r == -EBADMSG && mirror_branch_tip(mirror, bx, tip, NULL) == -ENOENT,
                   "incomplete pack (blob missing) refused, no branch: %s", err.msg);
                mirror_branch_tip(mirror, branch_a, tip, NULL);
                ok(strcmp(tip, tip2) == 0 && count_incoming(mirror) == 0, "after all refusals the branch is unchanged");
                sh("git -C %s checkout -q keep 2>/dev/null", wa.tree);
        }

        /* -- hostile session .git: the agent arms everything it can, then the host imports and
         *    starts the next session */
        {
                /* one more commit first (the agent's own; inside its sandbox hooks may run, not here) */
                r = sh("set -e; cd %s; echo three >> new.txt; git add -A; " IDENT("%s") " git commit -qm 'turn 3'",
                       wa.tree, sa, sa, sa, sa);
                char tip3[41];
                cap(tip3, sizeof tip3, "git -C %s rev-parse HEAD", wa.tree);
                snprintf(pack, sizeof pack, "%s/turn3.pack", T);
                sh("printf '%%s\\n^%%s\\n' %s %s | git -C %s pack-objects -q --revs --stdout > %s", tip3, tip2, wa.tree, pack);
                sh("mkdir -p %s/evilhooks", T);
                static const char *const hooks[] = { "post-commit", "pre-commit", "post-checkout", "reference-transaction",
                                                     "post-index-change", "pre-auto-gc" };
                for (size_t i = 0; i < ARRAY_SIZE(hooks); i++) {
                        sh("printf '#!/bin/sh\\ntouch %s\\n' > %s/evilhooks/%s; chmod +x %s/evilhooks/%s", marker, T, hooks[i],
                           T, hooks[i]);
                        sh("cp %s/evilhooks/%s %s/hooks/%s", T, hooks[i], wa.gitdir, hooks[i]);
                }
                sh("printf '#!/bin/sh\\ntouch %s\\n' > %s/fsmonitor.sh; chmod +x %s/fsmonitor.sh", marker, T, T);
                /* now arm the .git */
                r |= sh("set -e; cd %s; git config core.hooksPath %s/evilhooks; git config core.fsmonitor %s/fsmonitor.sh; "
                        "git config url.file:///nonexistent/.insteadOf %s; git config remote.origin.url %s; "
                        "git config core.sshCommand 'touch %s'; git config diff.external %s/fsmonitor.sh; "
                        "echo /etc > .git/objects/info/alternates",
                        wa.tree, T, T, source, mirror, marker, T);
                ok(r == 0 && !exists(marker), "session .git armed (hooksPath, fsmonitor, hooks, insteadOf, alternates)");

                r = import_path(mirror, branch_a, pack, tip3, main_sha, NULL, &res, &err);
                ok(r == 0 && res.commits == 1, "import after the hostile changes works (%s)", err.msg);
                import_result_clear(&res);
                worktree_paths wb = { 0 };
                char tip_now[41];
                mirror_branch_tip(mirror, branch_a, tip_now, NULL);
                r = worktree_create(ws, sb, mirror, tip_now, &wb, &err);
                ok(r == 0, "next session's working tree created from the imported tip (%s)", err.msg);
                cap(a, sizeof a, "git -C %s status --porcelain 2>&1; echo rc=$?", wb.tree);
                ok(strcmp(a, "rc=0") == 0, "next session starts clean");
                snprintf(p, sizeof p, "%s/config", wb.gitdir);
                cfg = slurp(p);
                ok(cfg && strcmp(cfg, "[core]\n\trepositoryformatversion = 0\n\tbare = false\n") == 0,
                   "next session's config is the minimal one");
                free(cfg);
                /* a copy of the armed repository, kept aside as the control below */
                sh("cp -a %s %s/control", wa.tree, T);
                ok(worktree_remove(ws, sa, &err) == 0, "armed session's tree removed");
                ok(!exists(marker), "nothing the agent planted ran on the host (no marker)");
                /* control: the traps were live — plain git in the copy (alternates repaired so it
                 * gets as far as committing) sets them off */
                sh("cd %s/control && echo %s/objects > .git/objects/info/alternates && " IDENT("x")
                   " git commit -q --allow-empty -m control >/dev/null 2>&1", T, mirror);
                ok(exists(marker), "control: the same .git does run planted code when git is run in it");
                unlink(marker);
                snprintf(p, sizeof p, "%s/config", mirror);
                char *now_cfg = slurp(p);
                ok(now_cfg && mirror_config && strcmp(now_cfg, mirror_config) == 0, "mirror config untouched");
                free(now_cfg);
                cap(a, sizeof a, "git -C %s for-each-ref --format='%%(objectname) %%(refname)' refs/heads/main refs/heads/feature refs/tags", mirror);
                cap(b, sizeof b, "git -C %s for-each-ref --format='%%(objectname) %%(refname)' refs/heads/main refs/heads/feature refs/tags", src);
                ok(strcmp(a, b) == 0, "mirror's other branches and tags untouched");
                worktree_paths_clear(&wb);
        }

        /* -- worktree_remove with planted links */
        {
                sh("mkdir -p %s/keepdir; echo precious > %s/keepdir/file; echo precious > %s/keepfile", outside, outside, outside);
                worktree_paths wc = { 0 };
                worktree_create(ws, sc, mirror, main_sha, &wc, &err);
                r = sh("set -e; cd %s; ln -s %s/keepdir linkdir; ln -s %s/keepfile linkfile; ln -s / rootlink; "
                       "mkfifo fifo; mkdir -p sub; ln -s %s sub/up; "
                       "d=deep; for i in $(seq 1 150); do d=$d/x; done; mkdir -p $d; echo bottom > $d/f; ln -s %s $d/l; "
                       "rm -rf .git; ln -s %s .git",
                       wc.tree, outside, outside, outside, outside, mirror);
                ok(r == 0, "planted symlinks to outside dirs, /, a fifo, a 150-deep tree, .git -> the mirror");
                r = worktree_remove(ws, sc, &err);
                ok(r == 0 && !exists(wc.tree), "worktree_remove deletes the tree (%s)", err.msg);
                f = NULL;
                snprintf(p, sizeof p, "%s/keepdir/file", outside);
                char *k1 = slurp(p);
                snprintf(p, sizeof p, "%s/keepfile", outside);
                char *k2 = slurp(p);
                snprintf(p, sizeof p, "%s/HEAD", mirror);
                ok(k1 && k2 && !strcmp(k1, "precious\n") && !strcmp(k2, "precious\n") && exists(p),
                   "link targets and the mirror are intact");
                free(k1);
                free(k2);
                ok(worktree_remove(ws, sc, &err) == 0, "removing again is a no-op");
                worktree_paths_clear(&wc);
                /* fs_remove_tree_at on a symlink at the top: the link goes, the target stays */
                sh("ln -s %s/keepdir %s/toplink", outside, T);
                int tfd = fs_open_trusted_dir(T, &err);
                r = fs_remove_tree_at(tfd, "toplink", &err);
                snprintf(p, sizeof p, "%s/toplink", T);
                char p2[512];
                snprintf(p2, sizeof p2, "%s/keepdir/file", outside);
                ok(r == 0 && !exists(p) && exists(p2), "a top-level symlink is unlinked, its target kept");
                ok(fs_remove_tree_at(tfd, "..", &err) == -EINVAL && fs_remove_tree_at(tfd, "a/b", &err) == -EINVAL,
                   "names must be one component");
                close(tfd);
        }

        /* -- fetch: upstream moves on; our session branch survives, upstream's nightshift/ is ignored */
        {
                r = sh("set -e; cd %s; echo up >> a.txt; git commit -qam upstream; git branch -qD feature; "
                       "git branch -q nightshift/%s; git branch -q newbranch",
                       src, sa);
                char *db2 = NULL;
                char before_tip[41];
                mirror_branch_tip(mirror, branch_a, before_tip, NULL);
                r = mirror_fetch(mirror, source, &db2, &err);
                ok(r == 0 && db2 && strcmp(db2, "main") == 0, "mirror_fetch (%s)", err.msg);
                free(db2);
                cap(want, sizeof want, "git -C %s rev-parse main", src);
                ok(mirror_resolve(mirror, "main", sha, &err) == 0 && strcmp(sha, want) == 0, "main updated");
                ok(mirror_resolve(mirror, "feature", sha, &err) == -ENOENT, "deleted upstream branch pruned");
                ok(mirror_resolve(mirror, "newbranch", sha, &err) == 0, "new upstream branch fetched");
                mirror_branch_tip(mirror, branch_a, tip, NULL);
                ok(strcmp(tip, before_tip) == 0, "our session branch kept (upstream's nightshift/%s ignored)", sa);
                ok(mirror_branch_delete(mirror, "main", &err) == -EPERM, "only session branches can be deleted");
                ok(mirror_branch_delete(mirror, branch_a, &err) == 0 && mirror_branch_tip(mirror, branch_a, tip, NULL) == -ENOENT,
                   "session branch deleted");
        }

        worktree_paths_clear(&wa);
        free(mirror_config);
        free(source);
        free(mirror);
        free(defbranch);
        gitx_shutdown();
        sh("rm -rf %s", T);
        return tap_done();
}
