#!/usr/bin/env bash
# Fuzzes the core with libFuzzer (fuzz_core.c) under ASan+UBSan, in the
# sanitizer build tree tests/sanitize/run.sh uses (<build>/sanitize-asan).
#
#   tests/fuzz/run.sh [--seconds N] [--merge] [-- LIBFUZZER_ARGS...]
#     --seconds N  how long (default 300)
#     --merge      afterwards, minimize what was found together with the
#                  committed corpus back into tests/fuzz/corpus
#                  (libFuzzer -merge=1; review the change before committing)
#
# New inputs collect in <build>/fuzz-corpus (seeded from tests/fuzz/corpus);
# a crash is written to <build>/fuzz-artifacts/ and the run stops. To read
# what a crashing input does:
#   PM_FUZZ_TRACE=1 <build>/sanitize-asan/tests/fuzz/pm_fuzz_core CRASH_FILE
# Needs clang and libclang-rt-14-dev (libFuzzer and the sanitizer runtimes).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${PM_BUILD_DIR:-$root/build}"
seconds=300 merge=0 extra=()
while (($#)); do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --merge) merge=1; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "usage: tests/fuzz/run.sh [--seconds N] [--merge] [-- LIBFUZZER_ARGS...]" >&2; exit 2 ;;
  esac
done

cc="$(command -v clang || command -v clang-14 || true)"
[[ -n $cc ]] || { echo "fuzz: clang not found (tools/bootstrap test installs it)" >&2; exit 1; }
cxx="$(command -v clang++ || command -v clang++-14 || echo "${cc/clang/clang++}")"
tree="$build/sanitize-asan"
cmake -S "$root" -B "$tree" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
  -DPM_SANITIZE=address,undefined,fuzzer-no-link >/dev/null
cmake --build "$tree" -j"$(nproc)" --target pm_fuzz_core >/dev/null

corpus="$build/fuzz-corpus" artifacts="$build/fuzz-artifacts"
mkdir -p "$corpus" "$artifacts"
cp -n "$root/tests/fuzz/corpus/"* "$corpus/" 2>/dev/null || true
export ASAN_OPTIONS="allocator_may_return_null=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
status=0
"$tree/tests/fuzz/pm_fuzz_core" -max_total_time="$seconds" -print_final_stats=1 \
  -artifact_prefix="$artifacts/" "${extra[@]}" "$corpus" || status=$?
if ((status == 0 && merge)); then
  merged="$(mktemp -d)"
  "$tree/tests/fuzz/pm_fuzz_core" -merge=1 "$merged" "$root/tests/fuzz/corpus" "$corpus"
  rm -f "$root/tests/fuzz/corpus/"*
  cp "$merged/"* "$root/tests/fuzz/corpus/"
  rm -rf "$merged"
  echo "fuzz: tests/fuzz/corpus now holds $(ls "$root/tests/fuzz/corpus" | wc -l) inputs" >&2
fi
exit "$status"
