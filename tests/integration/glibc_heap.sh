#!/usr/bin/env bash
# glibc_heap.sh — glibc's heap under poolmalloc (glibc_heap.c, built by
# CMake; path as $1). With the pools holding the small blocks, glibc's heap
# holds only the large ones, and poolmalloc lets glibc's own trim of its
# top wait for 1 MiB (README, "Giving memory back"): 480 KiB freed at the top
# stay, where glibc alone gives them back. glibc's dynamic mmap threshold
# is kept: a 1 MiB block freed after being mmap'd makes the next come from
# the heap, under poolmalloc as under glibc alone. A program that tunes
# glibc itself (MALLOC_*_ here), or POOLMALLOC_TRIM_GLIBC=0, gets glibc's
# own behaviour.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

program=${1:-}
[[ -n $program && -x $program ]] ||
    pm_fail "usage: glibc_heap.sh /path/to/integration_glibc_heap (built by CMake)"
pm_init 30

# expect DESCRIPTION WANT [VAR=VALUE...] -- ARGS: the probe, run with only
# those settings of glibc and poolmalloc, must print a line matching WANT
# (an extended regular expression).
expect() {
    local what=$1 want=$2
    shift 2
    local -a settings=()
    while [[ $1 != -- ]]; do settings+=("$1"); shift; done
    shift
    local out
    out=$(env -u LD_PRELOAD -u GLIBC_TUNABLES -u MALLOC_TOP_PAD_ -u MALLOC_MMAP_THRESHOLD_ \
              -u POOLMALLOC_TRIM_GLIBC "${settings[@]}" \
              timeout "$PM_RUN_TIMEOUT" "$program" "$@") || pm_fail "$what: the probe failed"
    [[ $out =~ ^($want)$ ]] || pm_fail "$what: printed '$out', expected /$want/"
    pm_log "$what: $out"
}

expect "glibc alone, top freed" "given back [1-9][0-9]*" -- top
expect "poolmalloc, top freed" "given back 0" LD_PRELOAD="$PM_LIB" -- top
expect "poolmalloc, POOLMALLOC_TRIM_GLIBC=0, top freed" "given back [1-9][0-9]*" \
    LD_PRELOAD="$PM_LIB" POOLMALLOC_TRIM_GLIBC=0 -- top
expect "poolmalloc, MALLOC_TOP_PAD_=0, top freed" "given back [1-9][0-9]*" \
    LD_PRELOAD="$PM_LIB" MALLOC_TOP_PAD_=0 -- top
expect "glibc alone, 1 MiB reused" "mapped heap" -- reuse
expect "poolmalloc, 1 MiB reused" "mapped heap" LD_PRELOAD="$PM_LIB" -- reuse
expect "poolmalloc, MALLOC_MMAP_THRESHOLD_=131072, 1 MiB reused" "mapped mapped" \
    LD_PRELOAD="$PM_LIB" MALLOC_MMAP_THRESHOLD_=131072 -- reuse
