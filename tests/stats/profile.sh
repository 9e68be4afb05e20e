#!/usr/bin/env bash
# Allocation-site profiling, end to end: the probe's three functions must be
# reported within 5 percentage points of their 50/30/20% shares of the bytes
# allocated, at the default rate, and the leaking one must be the top leak
# site at exit. And a profiled program that allocates inside dl_iterate_phdr
# callbacks while another thread loads libraries must not deadlock.
# Usage: profile.sh LIBPOOLMALLOC PROFILE_PROBE LOADER_PROBE
set -euo pipefail
lib="$1"
probe="$2"
loader_probe="$3"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

LD_PRELOAD="$lib" POOLMALLOC_PROFILE=1 POOLMALLOC_STATS="$work/profile.jsonl" \
  POOLMALLOC_STATS_FORMAT=json POOLMALLOC_STATS_INTERVAL=1h "$probe" >/dev/null
/usr/bin/python3 - "$work/profile.jsonl" <<'PY'
import json, sys
record = [json.loads(line) for line in open(sys.argv[1])][-1]
assert record["reason"] == "exit"
profile = record["profile"]
assert profile["rate_bytes"] == 524288, profile["rate_bytes"]
names = {"allocate_half": 0.50, "allocate_thirty": 0.30, "allocate_twenty_and_leak": 0.20}

def owner(site):
    # The first frame names the function that called malloc.
    for name in names:
        if f"!{name}+" in site["frames"][0]:
            return name
    return None

allocated = {name: 0 for name in names}
for site in profile["top_allocated"]:
    name = owner(site)
    if name:
        allocated[name] += site["alloc_bytes"]
total = sum(allocated.values())
assert total > 0, profile
for name, share in names.items():
    measured = allocated[name] / total
    print(f"profile: {name}: {measured:.1%} of the bytes (expected {share:.0%})")
    assert abs(measured - share) <= 0.05, f"{name} off by more than 5 points"
leaks = profile["leaks"]
assert leaks and owner(leaks[0]) == "allocate_twenty_and_leak", leaks[:1]
print(f"profile: top leak site {leaks[0]['frames'][0]}, ~{leaks[0]['live_bytes'] >> 20} MiB live")
PY
echo "profile: ok"

# Samples at one per 4 KiB, so every thread's first one comes at once; before
# samples were held off inside dl_iterate_phdr callbacks, 5 runs in 6 hung.
rc=0
LD_PRELOAD="$lib" POOLMALLOC_PROFILE=1 POOLMALLOC_PROFILE_RATE=4096 \
  timeout -k 1 30 "$loader_probe" 2000 || rc=$?
((rc != 77)) || { echo "profile: libz.so.1 cannot be loaded here; loader check skipped"; exit 0; }
((rc == 0)) || { echo "profile: FAIL: the loader probe did not end well (status $rc)" >&2; exit 1; }
echo "profile: sampling inside loader callbacks beside dlopen does not deadlock"
