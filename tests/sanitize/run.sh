#!/usr/bin/env bash
# The core's tests under sanitizers, each in a build tree of its own beside
# the main one (never libpoolmalloc.so: PM_SANITIZE leaves it out):
#   <build>/sanitize-asan  clang -fsanitize=address,undefined (+ fuzzer-no-link,
#                          so the libFuzzer target builds there too): the
#                          unit suites (unit_*, label unit), the fuzz corpus
#                          (fuzz_*, both replays) and the short stress_pm
#                          runs (stress_pm, stress_pm_small_ring,
#                          stress_pm_debug)
#   <build>/sanitize-tsan  clang -fsanitize=thread: unit_* and the three
#                          stress_pm runs, the second unmapping arenas all
#                          the time, the third in debug mode
# (Entries that need libpoolmalloc.so, or only check documents, are not
# built or run there.)
# ASan cannot see inside our pools (they are our mmap, not its heap); it sees
# the core's own code, the glibc path and the tests. TSan sees the lock-free
# paths: remote frees, live-map reads, heap hand-over.
#
#   tests/sanitize/run.sh [asan|tsan]...   (default: both)
# Needs clang and libclang-rt-14-dev (sanitizer and libFuzzer runtimes).
# Exit status: nonzero if any build or test failed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${PM_BUILD_DIR:-$root/build}"
jobs="$(nproc)"

cc="$(command -v clang || command -v clang-14 || true)"
if [[ -z $cc ]]; then
  echo "sanitize: clang not found (tools/bootstrap test installs it)" >&2
  exit 1
fi
cxx="$(command -v clang++ || command -v clang++-14 || echo "${cc/clang/clang++}")"

# Sanitizer reports end the process with exit status 1 or 66, never with
# SIGABRT: the misuse suite expects SIGABRT from the core itself, and an
# ASan report must not pass for one. allocator_may_return_null: tests ask for
# impossible sizes and expect NULL. No LeakSanitizer: it sees only the
# sanitizer's heap, never our pools, and in a child forked from a threaded
# process (the fork tests, pm_stress) it stalls on threads that are gone.
export ASAN_OPTIONS="allocator_may_return_null=1:detect_leaks=0:strict_string_checks=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:${TSAN_OPTIONS:-}"

status=0
run() { # tree, sanitizers, targets, regex of the CTest entries to run, Check tags to skip
  local tree="$build/sanitize-$1" sanitize="$2" targets="$3" tests="$4" skip_tags="$5"
  local start=$SECONDS
  mkdir -p "$tree"
  echo "sanitize: $1 (-fsanitize=$sanitize) in $tree" >&2
  if ! cmake -S "$root" -B "$tree" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
        -DPM_SANITIZE="$sanitize" >"$tree.configure.log" 2>&1 ||
     ! cmake --build "$tree" -j"$jobs" --target $targets >"$tree.build.log" 2>&1; then
    echo "sanitize: $1: build failed; see $tree.configure.log and $tree.build.log" >&2
    tail -n 30 "$tree.build.log" >&2 || true
    status=1
    return
  fi
  if ! CK_EXCLUDE_TAGS="$skip_tags" ctest --test-dir "$tree" --output-on-failure -j"$jobs" \
         -R "$tests"; then
    status=1
  fi
  echo "sanitize: $1 done in $((SECONDS - start)) s" >&2
}

which=("$@")
((${#which[@]})) || which=(asan tsan)
for kind in "${which[@]}"; do
  case "$kind" in
    asan) run asan address,undefined,fuzzer-no-link \
              "pm_unit_tests pm_fuzz_replay pm_fuzz_core pm_stress" '^(unit_|fuzz_|stress_pm(_small_ring|_debug)?$)' "" ;;
    # Test cases tagged "rss" measure resident memory, which TSan's shadow
    # of every page touched keeps high.
    tsan) run tsan thread "pm_unit_tests pm_stress" '^(unit_|stress_pm(_small_ring|_debug)?$)' rss ;;
    *) echo "usage: tests/sanitize/run.sh [asan|tsan]..." >&2; exit 2 ;;
  esac
done
exit "$status"
