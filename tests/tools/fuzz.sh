#!/usr/bin/env bash
# libFuzzer on the poolmalloc command's reader and printers (fuzz_reader.c),
# with ASan and UBSan: builds the target with clang into OUT_DIR, then fuzzes
# for SECONDS from a copy of the committed corpus (new inputs stay in
# OUT_DIR/corpus; a crash leaves OUT_DIR/crash-*, replayable with
# `OUT_DIR/fuzz_reader CRASH_FILE`). Usage: fuzz.sh OUT_DIR [SECONDS]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$1"
seconds="${2:-60}"
clang="${CLANG:-clang}"
command -v "$clang" >/dev/null || { echo "fuzz: no clang" >&2; exit 1; }
mkdir -p "$out/corpus"
# shellcheck disable=SC2046
"$clang" -g -O1 -D_GNU_SOURCE -std=gnu11 -Wall -Wextra -Werror \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I"$root/tools" -I"$root/allocator" \
  "$here/fuzz_reader.c" "$root"/tools/{analysis,diff,reader,report_html,report_json,report_text,run,symbols,units}.c \
  $(pkg-config --cflags --libs jansson) -lm -o "$out/fuzz_reader"
cp -n "$here"/corpus/* "$out/corpus/" 2>/dev/null || true
cd "$out"
# -max_len: a few records; -timeout: one input may not take a second.
./fuzz_reader -max_total_time="$seconds" -max_len=65536 -timeout=5 -rss_limit_mb=2048 \
  -dict="$here/stats.dict" -print_final_stats=1 corpus 2>fuzz.log || {
  tail -60 fuzz.log >&2
  echo "fuzz: FAIL (the input is in $out/crash-* or $out/timeout-*)" >&2
  exit 1
}
grep -E "^stat::number_of_executed_units|^stat::new_units_added" fuzz.log || true
echo "fuzz: ok, ${seconds}s, corpus now $(ls corpus | wc -l) inputs"
