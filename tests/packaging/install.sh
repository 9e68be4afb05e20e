#!/usr/bin/env bash
# cmake --install puts libpoolmalloc.so, libpoolmalloc.a, poolmalloc.h and
# poolmalloc.pc in place, and a program builds against them with pkg-config:
# linked statically to the pm_* API, and preloading the installed .so.
set -euo pipefail
build="$1"
prefix="$(mktemp -d)"
trap 'rm -rf "$prefix"' EXIT

cmake --install "$build" --prefix "$prefix" >/dev/null
for f in lib/libpoolmalloc.so lib/libpoolmalloc.a include/poolmalloc.h lib/pkgconfig/poolmalloc.pc; do
  [[ -e "$prefix/$f" ]] || { echo "install: $f missing under $prefix" >&2; exit 1; }
done

cat >"$prefix/prog.c" <<'C'
#include <poolmalloc.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    char *p = pm_malloc(100);
    strcpy(p, "pools");
    int ours = pm_owns(p);
    pm_free(p);
    pm_stats_t s;
    pm_stats_get(&s);
    printf("%s %s %d %llu\n", pm_version(), p == NULL ? "null" : "ok", ours,
           (unsigned long long)s.small_allocated_total);
    return !(ours && s.small_allocated_total == 1);
}
C
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# shellcheck disable=SC2046
cc -Wall -Werror "$prefix/prog.c" -o "$prefix/prog" $(pkg-config --cflags poolmalloc) \
  "$(pkg-config --variable=libdir poolmalloc)/libpoolmalloc.a" $(pkg-config --static --libs-only-other --libs-only-l poolmalloc | sed "s/-lpoolmalloc//")
"$prefix/prog"

# A file sink: coreutils close stderr at exit, before the report is written.
out="$(LD_PRELOAD="$prefix/lib/libpoolmalloc.so" POOLMALLOC_STATS="$prefix/stats" /bin/echo preloaded)"
[[ "$out" == preloaded ]] && grep -Eq "small blocks allocated +[1-9]" "$prefix/stats" \
  || { echo "install: the installed libpoolmalloc.so did not serve /bin/echo: $out" >&2; cat "$prefix/stats" >&2; exit 1; }
echo "install: ok"
