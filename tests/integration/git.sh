#!/usr/bin/env bash
# git.sh — git under poolmalloc: a generated repository of 300 files in 10
# directories grows over 50 commits (edits, additions, renames, deletions,
# a branch and a merge), then log --stat, diff, blame, grep, archive, gc,
# fsck and a clone. Dates, names, e-mails and configuration are pinned, so
# every object hash is the same on every run; all output is compared plain
# versus preloaded.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# gen_files COMMIT: edits a deterministic subset of the 300 files (creates
# all of them for commit 0): about a fifth of an existing file's lines are
# rewritten and a few appended, so history has real deltas and blame.
gen_files() {
    awk -v c="$1" '
    # 69069 x + 1 mod 2^32 stays exact in doubles; use the high bits.
    function rnd(m) { x = (x * 69069 + 1) % 4294967296; return int(x / 65536) % m }
    function gen_line(l,    line, k, j) {
        line = sprintf("/* %d.%d */", c, l)
        k = rnd(8)
        for (j = 0; j < k; j++) line = line " " kw[rnd(13) + 1] "_" rnd(100)
        return line
    }
    BEGIN {
        x = 777 + c * 1000003
        split("int char long void static struct return while for if else switch case", kw, " ")
        for (f = 0; f < 300; f++) {
            if (c > 0 && rnd(15) != 0) continue
            path = sprintf("dir%d/file%03d.c", f % 10, f)
            n = 0
            while ((getline old < path) > 0) lines[n++] = old
            close(path)
            if (n == 0) {
                n = 20 + rnd(80)
                for (l = 0; l < n; l++) lines[l] = gen_line(l)
            } else {
                for (l = 0; l < n; l++) if (rnd(5) == 0) lines[l] = gen_line(l)
                k = rnd(6)
                for (l = 0; l < k; l++) { lines[n] = gen_line(n); n++ }
            }
            for (l = 0; l < n; l++) print lines[l] > path
            close(path)
        }
    }'
}

workload() {
    export HOME=$PWD/home GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
    export GIT_AUTHOR_NAME='Ada Tester' GIT_AUTHOR_EMAIL=ada@example.org
    export GIT_COMMITTER_NAME='Bob Builder' GIT_COMMITTER_EMAIL=bob@example.org
    export TZ=UTC LC_ALL=C GIT_PAGER=cat PAGER=cat
    mkdir -p "$HOME" repo
    cd repo
    git -c init.defaultBranch=main init -q .
    git config gc.auto 0
    git config core.autocrlf false
    git config pack.threads 1 # delta selection with threads may vary by run
    mkdir -p dir0 dir1 dir2 dir3 dir4 dir5 dir6 dir7 dir8 dir9

    local c when
    for c in $(seq 0 49); do
        when="$((1700000000 + c * 3600)) +0000"
        export GIT_AUTHOR_DATE=$when GIT_COMMITTER_DATE=$when
        gen_files "$c"
        case $((c % 10)) in
        3) git mv -k "dir$((c % 10))/file$(printf %03d $((c * 7 % 300))).c" "dir$((c % 10))/moved$c.c" || true ;;
        7) git rm -q --ignore-unmatch "dir$((c % 10))/file$(printf %03d $((c * 11 % 300))).c" ;;
        esac
        if [[ $c -eq 30 ]]; then
            git checkout -q -b feature
        fi
        git add -A
        git commit -q -m "commit $c: generated changes" -m "Body of commit $c." ||
            echo "commit $c: nothing to commit"
        if [[ $c -eq 35 ]]; then
            git checkout -q main
            gen_files 1000
            git add -A
            git commit -q -m "main-side change"
            git merge -q --no-ff -X theirs -m "merge feature" feature
        fi
    done

    echo "== head"
    git rev-parse HEAD 'HEAD^{tree}'
    git rev-list --count HEAD
    echo "== log --stat"
    git log --stat --format='%H %an <%ae> %ad%n%s%n%b' --date=iso
    echo "== log --graph"
    git log --graph --oneline | sed -n 1,30p
    echo "== diff"
    git diff --stat HEAD~20 HEAD
    git diff HEAD~5 HEAD | sha256sum
    echo "== blame"
    git blame -s dir3/file003.c | sed -n 1,20p
    echo "== grep"
    git grep -c 'static_4' HEAD | sed -n 1,20p
    echo "== archive"
    git archive --format=tar HEAD | sha256sum
    echo "== gc, fsck"
    git gc -q --aggressive
    git fsck --full --strict --no-progress
    git count-objects -v | grep -E '^(count|in-pack|packs|garbage):'
    git verify-pack -v .git/objects/pack/*.idx | grep -E '^(non delta|chain length)' | sort
    echo "== clone"
    git clone -q --no-local . ../clone
    git -C ../clone log --format='%H %s' | sed -n 1,5p
    git -C ../clone status --short | wc -l
}

if pm_is_workload "$@"; then
    shift
    workload "$@"
    exit 0
fi

pm_require_cmd git git
pm_require_cmd awk mawk
pm_init 180
pm_check git 100000 cat -- bash "$PM_SELF" --workload
