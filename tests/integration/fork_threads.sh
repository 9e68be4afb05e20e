#!/usr/bin/env bash
# fork_threads.sh — fork_threads (built from fork_threads.c by CMake; path
# as $1) under poolmalloc: 50 forks (every tenth from a short-lived thread)
# while 4 threads allocate; the children must allocate freely (no lock left
# held by the fork) and end, by _exit, exit or pthread_exit of their last
# thread, and the parent must not hang. Stderr is compared too: the program
# writes there only to report a corrupted block, a dead child or a timeout.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

program=${1:-}
[[ -n $program && -x $program ]] ||
    pm_fail "usage: fork_threads.sh /path/to/integration_fork_threads (built by CMake)"
program=$(readlink -f "$program")
# The program's own alarm (60 s) fires first, then this.
pm_init 150
pm_check fork_threads 10000 cat -- "$program"
