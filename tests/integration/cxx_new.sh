#!/usr/bin/env bash
# cxx_new.sh — C++'s operator new and delete under poolmalloc
# (cxx_new.cpp, built by CMake twice; the two paths as $1 and $2):
#   - every form resolves to libpoolmalloc.so, not libstdc++;
#   - every form, aligned or not, of every size, gives the same output as
#     without poolmalloc, and its small blocks come from the pools;
#   - running out of memory runs the new_handler loop and throws
#     std::bad_alloc (nullptr for the nothrow forms), as without it;
#   - a program that replaces operator new(size_t) and operator
#     delete(void*) has the array, nothrow and sized forms reach its
#     replacements, as the standard defines them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

program=${1:-} replaced=${2:-}
[[ -n $program && -x $program && -n $replaced && -x $replaced ]] ||
    pm_fail "usage: cxx_new.sh /path/to/integration_cxx_new /path/to/integration_cxx_new_replaced"
program=$(readlink -f "$program")
replaced=$(readlink -f "$replaced")
pm_init 60

where=$(LD_PRELOAD="$PM_LIB" timeout "$PM_RUN_TIMEOUT" "$program" where) ||
    pm_fail "cxx_new where failed under poolmalloc"
forms=$(wc -l <<<"$where")
[[ $forms -eq 20 ]] || pm_fail "cxx_new where printed $forms forms, expected 20:"$'\n'"$where"
elsewhere=$(grep -v ' libpoolmalloc\.so' <<<"$where" || true)
[[ -z $elsewhere ]] ||
    pm_fail "under poolmalloc these forms still resolve to another module:"$'\n'"$elsewhere"
pm_log "all 20 forms of operator new and delete resolve to libpoolmalloc.so"

# forms: 8 sizes x (6 + 5 alignments x 6) pairs, 2 more: small blocks served.
pm_check cxx_new_forms 100 cat -- "$program" forms
pm_check cxx_new_oom 0 cat -- "$program" oom
grep -q 'new: std::bad_alloc after 3 calls of the new_handler' \
    "$(pm_run_dir cxx_new_oom preload)/stdout" ||
    pm_fail "cxx_new oom: operator new did not run the new_handler loop and throw"
pm_check cxx_new_replaced 0 cat -- "$replaced"
grep -q 'replaced: operator new called [1-9]' "$(pm_run_dir cxx_new_replaced preload)/stdout" ||
    pm_fail "cxx_new replaced: the program's operator new was not called"
