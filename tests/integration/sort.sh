#!/usr/bin/env bash
# sort.sh — GNU sort under poolmalloc: 500k generated lines sorted as text,
# numerically, by key and uniquely, in the C and C.UTF-8 locales, with a
# small buffer so temporary files are merged, and 2 sorting threads.
# Compares the outputs' checksums plain versus preloaded; the generator
# (mawk) and the checksums run under the preload too.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

workload() {
    local lines=${1:-500000}
    # A seeded linear congruential generator, so the input is the same on
    # every run and machine: a number, a word and a mixed-case key.
    awk -v n="$lines" '
    # 69069 x + 1 mod 2^32 stays below 2^53, so doubles compute it exactly;
    # the high 16 bits are the usable ones.
    function rnd(m) { x = (x * 69069 + 1) % 4294967296; return int(x / 65536) % m }
    BEGIN {
        x = 12345
        split("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima", w, " ")
        for (i = 0; i < n; i++) {
            a = rnd(1000) * 1000 + rnd(1000) - 500000
            k = rnd(20)
            printf "%d %s%d %s\n", a, w[rnd(12) + 1], rnd(97), substr("QwErTyUiOpAsDfGhJkLzXcVbNm", k + 1, 1 + rnd(7))
        }
    }' >input.txt
    echo "input: $(wc -l <input.txt) lines, $(sha256sum <input.txt | cut -c1-16)"

    local loc
    for loc in C C.UTF-8; do
        export LC_ALL=$loc
        echo "locale $loc"
        sort -S 4M -T . --parallel=2 input.txt | sha256sum | sed 's/^/  sort:      /'
        sort -S 4M -T . --parallel=2 -n input.txt | sha256sum | sed 's/^/  sort -n:   /'
        sort -S 4M -T . -k2,2 -k1,1n -s input.txt | sha256sum | sed 's/^/  sort -k:   /'
        sort -S 4M -T . -f -r input.txt | sha256sum | sed 's/^/  sort -f -r: /'
        echo "  sort -u:   $(sort -S 4M -T . -u input.txt | wc -l) unique lines"
        echo "  -k2 -u:    $(cut -d' ' -f2 input.txt | sort -u | wc -l) unique words"
        sort -n input.txt | sort -c -n && echo "  sort -c -n: sorted"
    done
}

if pm_is_workload "$@"; then
    shift
    workload "$@"
    exit 0
fi

pm_require_cmd sort coreutils
pm_require_cmd sha256sum coreutils
pm_require_cmd awk mawk
pm_init 120
pm_check sort 1000 cat -- bash "$PM_SELF" --workload "${PM_SORT_LINES:-500000}"
