#!/usr/bin/env bash
# docs/stats-schema.md names every field of the stats tables in
# allocator/poolmalloc.h (PM_STATS, PM_CLASS_STATS), so the documented JSON
# schema cannot fall behind the records.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fields=$(sed -n '/^#define PM_CLASS_STATS(X)/,/^$/p; /^#define PM_STATS(X)/,/^$/p' "$root/allocator/poolmalloc.h" |
  grep -o 'X([a-z_]*,' | sed 's/X(//; s/,//' | sort -u)
[[ -n "$fields" ]] || { echo "schema_doc: no fields found in poolmalloc.h" >&2; exit 1; }
missing=0
for f in $fields; do
  grep -q "^| \`$f\` |" "$root/docs/stats-schema.md" || { echo "schema_doc: $f is not documented" >&2; missing=1; }
done
((missing == 0)) && echo "schema_doc: $(wc -w <<<"$fields") fields documented"
