#!/usr/bin/env bash
# Every POOLMALLOC_* variable of the options table (allocator/options.h) has a
# row in the README's environment table, and the README names no other.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
table=$(grep -o '"POOLMALLOC_[A-Z_]*"' "$root/allocator/options.h" | tr -d '"' | sort -u)
readme=$(grep -o '^| `POOLMALLOC_[A-Z_]*`' "$root/README.md" | grep -o 'POOLMALLOC_[A-Z_]*' | sort -u)
[[ -n "$table" ]] || { echo "readme_options: no options found in options.h" >&2; exit 1; }
if [[ "$table" != "$readme" ]]; then
  echo "readme_options: options.h and README.md disagree:" >&2
  diff <(echo "$table") <(echo "$readme") >&2 || true
  exit 1
fi
echo "readme_options: $(wc -l <<<"$table") options documented"
