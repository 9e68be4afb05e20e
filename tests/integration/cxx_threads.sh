#!/usr/bin/env bash
# cxx_threads.sh — cxx_threads (built from cxx_threads.cpp by CMake; path as
# $1) under poolmalloc: 4 threads exchanging C++ objects that are freed by a
# thread other than their allocator's, with aligned and sized new/delete.
# Also checks the stats sinks: no report without POOLMALLOC_STATS, and a
# report on stderr with POOLMALLOC_STATS=stderr.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

program=${1:-}
[[ -n $program && -x $program ]] ||
    pm_fail "usage: cxx_threads.sh /path/to/integration_cxx_threads (built by CMake)"
program=$(readlink -f "$program")
pm_init 120
messages=${PM_CXX_MESSAGES:-200000}
pm_check cxx_threads 1000000 cat -- "$program" "$messages"
pm_check_stats_sinks cxx_threads "$program" "$messages"
