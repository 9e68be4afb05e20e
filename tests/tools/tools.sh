#!/usr/bin/env bash
# The poolmalloc command end to end: every subcommand on real reports, made
# by frag.c and probe.c and by programs not in this repository (python3,
# sort) under the preloaded library; figures checked against the stats file
# read independently with Python's json module; the build tree and an
# installed tree. Usage: tools.sh TOOL LIBPOOLMALLOC FRAG PROBE BUILD_DIR
set -euo pipefail
tool="$(readlink -f "$1")"
lib="$(readlink -f "$2")"
frag="$(readlink -f "$3")"
probe="$(readlink -f "$4")"
build="$(readlink -f "$5")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python=/usr/bin/python3
fail() { echo "tools: FAIL: $*" >&2; exit 1; }
# has PATTERN FILE WHAT: FILE contains PATTERN (grep -E), or fail showing it.
has() {
  grep -Eq -- "$1" "$2" || { echo "----- $2" >&2; cat "$2" >&2; fail "$3: no /$1/"; }
}
# status EXPECTED COMMAND...: runs COMMAND, fails unless it exits EXPECTED.
status() {
  local expected="$1" got=0
  shift
  "$@" || got=$?
  ((got == expected)) || fail "expected exit status $expected, got $got: $*"
}

# ---- help -------------------------------------------------------------------
for cmd in run report diff compare; do
  "$tool" "$cmd" --help >"$work/help" || fail "$cmd --help exited $?"
  has "^usage: poolmalloc $cmd" "$work/help" "$cmd --help"
  has "^examples:" "$work/help" "$cmd --help"
  "$tool" help "$cmd" >"$work/help2"
  cmp -s "$work/help2" "$work/help" || fail "help $cmd differs from $cmd --help"
done
"$tool" --help >"$work/help"
has "^usage: poolmalloc COMMAND" "$work/help" "--help"
"$tool" --version >"$work/version"
has "^poolmalloc [0-9.]+ \\(reads stats schema 1\\)$" "$work/version" "--version"
status 2 "$tool" frobnicate 2>/dev/null
status 2 "$tool" report 2>/dev/null
status 2 "$tool" diff only-one.jsonl 2>/dev/null
status 2 "$tool" run 2>/dev/null
status 2 "$tool" run --interval 5ms -- true 2>/dev/null
status 2 "$tool" compare -n 0 -- true 2>/dev/null
status 2 "$tool" compare --allocators nosuch -- true 2>/dev/null
echo "tools: --help for every subcommand; usage errors exit 2"

# ---- run ----------------------------------------------------------------------
"$tool" run --stats "$work/scattered.jsonl" --interval 50ms -- "$frag" scattered 300 \
  >"$work/out" 2>"$work/err" || fail "run scattered exited $?"
has "^frag: scattered done" "$work/out" "the program's output"
has "^== poolmalloc: .*frag exited with 0 after" "$work/err" "run summary"
has "peak RSS [0-9.]+ MiB, final RSS" "$work/err" "run summary"
has "poolmalloc holds up to [0-9.]+ MiB of the" "$work/err" "run summary diagnosis"
has "details: poolmalloc report $work/scattered.jsonl" "$work/err" "run summary"
"$tool" run --stats "$work/clean.jsonl" --interval 50ms -- "$frag" clean 300 >/dev/null 2>&1
status 7 "$tool" run -q --stats "$work/x.jsonl" -- "$frag" exit 7 >/dev/null
status 139 "$tool" run --stats "$work/x.jsonl" -- "$frag" crash >/dev/null 2>"$work/err"
has "killed by SIGSEGV" "$work/err" "a crash is named"
status 127 "$tool" run -- "$work/no-such-program" 2>"$work/err"
has "cannot run '.*no-such-program': No such file" "$work/err" "a missing program"
touch "$work/not-executable"
status 126 "$tool" run -- "$work/not-executable" 2>/dev/null
echo "tools: run passes exit statuses through (0, 7, SIGSEGV -> 139, 127, 126)"

# Default file: ./poolmalloc.PID.jsonl, named after the program's pid.
mkdir "$work/cwd"
(cd "$work/cwd" && "$tool" run -- "$frag" exit 0 >/dev/null 2>"$work/err")
files=("$work"/cwd/poolmalloc.*.jsonl)
((${#files[@]} == 1)) && [[ -s "${files[0]}" ]] || fail "default stats file: ${files[*]}"
has "snapshots? in ${files[0]}" "$work/err" "the summary names the default file"
# %p: each process its own file; the summary is the program's own.
"$tool" run --stats "$work/fork.%p.jsonl" -- "$probe" fork 200 2>"$work/err"
files=("$work"/fork.*.jsonl)
((${#files[@]} == 2)) || fail "expected two %p files: ${files[*]}"
has "snapshots? in $work/fork\\.[0-9]+\\.jsonl" "$work/err" "the summary of a %p run"
# The child's environment: library first in LD_PRELOAD, JSON, interval, --profile.
LD_PRELOAD= "$tool" run --profile --stats "$work/env.jsonl" -- /usr/bin/env >"$work/env" 2>"$work/err"
has "^LD_PRELOAD=$(readlink -f "$lib")\$" "$work/env" "LD_PRELOAD"
has "^POOLMALLOC_STATS_FORMAT=json\$" "$work/env" "stats format"
has "^POOLMALLOC_STATS_INTERVAL=100ms\$" "$work/env" "default interval"
has "^POOLMALLOC_PROFILE=1\$" "$work/env" "--profile"
has "^POOLMALLOC_STATS=$work/env.jsonl\$" "$work/env" "--stats"
has "^   allocation sites: [0-9,]+ samples, one per [0-9.]+ [KMG]iB" "$work/err" \
  "--profile: the summary shows the sites (profile.sh checks them)"
echo "tools: run: default and %p files, the child's environment, --profile"

# ---- report: text and JSON, checked against the file --------------------------
# check_json REPORT.json STATS.jsonl [SELECTOR]: the report's figures are the
# file's, computed here independently.
check_json() {
  "$python" - "$@" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
records = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
mine = [r for r in records if r["pid"] == report["pid"]]
assert mine, "no record of the reported pid"
at = {"last": mine[-1], "first": mine[0],
      "peak": max(mine, key=lambda r: r["rss_bytes"])}.get(sys.argv[3] if len(sys.argv) > 3 else "last")
if at is None:
    at = next(r for r in mine if r["seq"] == int(sys.argv[3]))
s = report["summary"]
assert report["snapshot"]["seq"] == at["seq"], (report["snapshot"], at["seq"])
assert s["snapshots"] == len(mine)
assert s["rss_peak_bytes"] == max(max(r["rss_peak_bytes"], r["rss_bytes"]) for r in mine)
assert s["rss_final_bytes"] == mine[-1]["rss_bytes"]
assert s["live_bytes"] == at["small_live_bytes"] + at["system_live_bytes"]
assert s["live_peak_bytes"] == max(r["small_live_bytes"] + r["system_live_bytes"] for r in mine)
assert s["pool_bytes"] == at["small_pool_bytes"] and s["arena_bytes"] == at["arena_bytes"]
assert s["ended"] == (mine[-1]["reason"] == "exit")
assert report["classes"] == at["classes"], "classes differ from the record"
assert report["stats"]["arena_occupancy"] == at["arena_occupancy"]
assert [p["seq"] for p in report["timeline"]] == [r["seq"] for r in mine]
d = report["diagnosis"]
assert d["free_in_pools_bytes"] == max(0, at["small_pool_bytes"] - at["small_live_bytes"] - at["small_trimmed_bytes"])
assert d["trimmed_pool_bytes"] == at["small_trimmed_bytes"]
assert d["retained_pool_bytes"] == at["retained_pools"] * 16384
assert d["sparse_arenas"] == sum(at["arena_occupancy"][:3])
# Blocks waiting for their thread are not room between live blocks.
held = sorted((max(0, c["pool_bytes"] - c["live_bytes"] - c["trimmed_bytes"]
                   - c.get("waiting_blocks", 0) * c["block_size"]), c["class"]) for c in at["classes"])
held = [c for h, c in sorted(held, key=lambda x: (-x[0], x[1])) if h > 0]
assert [p["class"] for p in d["classes"]] == held, (d["classes"], held)
assert d["metadata_bytes"] == min(at.get("metadata_bytes", 0), d["rss_outside_pools_bytes"])
assert d["advice"], "no advice"
PY
}
# sections FILE: every part of the text report is there.
sections() {
  for s in "^poolmalloc report: " "^Summary" "peak RSS" "final RSS" "live bytes" "bytes in pools" \
    "bytes in arenas" "pool fragmentation" "^Size classes" "^Arenas by occupancy" \
    "^Timeline: RSS and live bytes" "# live bytes|\\(one snapshot: nothing to draw" "^Retained memory"; do
    has "$s" "$1" "text report section"
  done
}

"$tool" report "$work/scattered.jsonl" >"$work/report.txt" || fail "report exited $?"
sections "$work/report.txt"
has "^  - Size classes that pin pools: 208 B \\([0-9.]+ MiB held" "$work/report.txt" "the pinning classes"
has " 48 B \\([0-9.]+ MiB held: 10,000 live blocks" "$work/report.txt" "the pinning classes"
has "malloc_trim" "$work/report.txt" "advice names malloc_trim"
has "arenas are under 30% used" "$work/report.txt" "mostly empty arenas"
has "After the peak of live bytes" "$work/report.txt" "RSS did not follow live bytes"
has "^ +2 +48 B +200,000 +190,000 +10,000 " "$work/report.txt" "class 2's row"
"$tool" report --json "$work/scattered.jsonl" >"$work/report.json"
check_json "$work/report.json" "$work/scattered.jsonl"
"$python" - "$work/report.json" <<'PY' || fail "scattered diagnosis"
import json, sys
d = json.load(open(sys.argv[1]))["diagnosis"]
assert d["severity"] == "high", d["severity"]
assert [p["block_size"] for p in d["classes"][:2]] == [208, 48], d["classes"][:2]
PY
"$tool" report --json "$work/clean.jsonl" >"$work/clean.json"
check_json "$work/clean.json" "$work/clean.jsonl"
"$python" -c "
import json; d = json.load(open('$work/clean.json'))['diagnosis']
assert d['severity'] == 'low', d; assert d['advice'] == ['Nothing to do.'], d['advice']" \
  || fail "clean diagnosis"
for sel in peak first 2; do
  "$tool" report --json "$work/scattered.jsonl@$sel" >"$work/sel.json"
  check_json "$work/sel.json" "$work/scattered.jsonl" "$sel" || fail "report @$sel"
done
status 1 "$tool" report "$work/scattered.jsonl@9999" 2>"$work/err" >/dev/null
has "has no snapshot 9999" "$work/err" "@SEQ out of range"
status 2 "$tool" report "$work/scattered.jsonl@soon" 2>/dev/null
"$tool" report - <"$work/scattered.jsonl" >"$work/stdin.txt" || fail "report - exited $?"
has "^poolmalloc report: -, pid" "$work/stdin.txt" "report -"
echo "tools: report text and --json agree with the file; @peak @first @SEQ; stdin"

# Blocks freed for a thread that waits: the report counts the parcels they
# wait in as poolmalloc's metadata, and says what it is.
"$tool" run --stats "$work/handoff.jsonl" --interval 50ms -- "$frag" handoff 400 >/dev/null 2>&1 \
  || fail "run handoff exited $?"
# The first snapshot with all 1.2 million waiting: one taken while the main
# thread was still freeing them (a loaded CI host) counts fewer, and less
# metadata than the advice below is about.
seq=$("$python" -c "
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
print(next(x['seq'] for x in r if x['small_waiting_blocks'] >= 1200000))" "$work/handoff.jsonl")
"$tool" report "$work/handoff.jsonl@$seq" >"$work/handoff.txt"
has "^      of which poolmalloc's metadata +[4-9][0-9.]* MiB" "$work/handoff.txt" "metadata figure"
"$tool" report --json "$work/handoff.jsonl@$seq" >"$work/handoff.json"
check_json "$work/handoff.json" "$work/handoff.jsonl" "$seq" || fail "report of handoff"
"$python" - "$work/handoff.json" <<'PY' || fail "metadata advice"
import json, sys
d = json.load(open(sys.argv[1]))["diagnosis"]
assert d["metadata_bytes"] >= 1200000 * 4, d["metadata_bytes"]
said = [a for a in d["advice"] if "is poolmalloc's own bookkeeping" in a]
assert said and "1,200,000 blocks awaiting their thread" in said[0], d["advice"]
PY
echo "tools: blocks waiting for an idle thread show as metadata, and are explained"

# Pools given to the exchange (a heap letting go of a class while another
# thread's takes new pools of it): the summary says how many wait there.
"$python" - "$work/handoff.jsonl" "$work/exchange.jsonl" <<'PY' || fail "exchange record"
import json, sys
r = json.loads(open(sys.argv[1]).readline())
r.update(exchange_pools=3, exchange_given_total=40, exchange_taken_total=37)
open(sys.argv[2], "w").write(json.dumps(r) + "\n")
PY
"$tool" report "$work/exchange.jsonl" >"$work/exchange.txt"
has "^  exchange +3 pools waiting \(given up: 40; taken by other threads: 37\)" \
  "$work/exchange.txt" "exchange line"
echo "tools: the exchange's pools are reported"

# Chunk caches grown to 4 MiB say why more than 1 MiB a thread is cached;
# a record from before the field reads as none grown.
"$python" - "$work/handoff.jsonl" "$work/grown.jsonl" "$work/ungrown.jsonl" <<'PY' || fail "grown record"
import json, sys
r = json.loads(open(sys.argv[1]).readline())
r.update(system_cached_bytes=9 << 20, system_caches_grown=2)
open(sys.argv[2], "w").write(json.dumps(r) + "\n")
del r["system_caches_grown"]
open(sys.argv[3], "w").write(json.dumps(r) + "\n")
PY
"$tool" report "$work/grown.jsonl" >"$work/grown.txt"
has "^  glibc chunks cached +9\.00 MiB \(freed glibc blocks threads keep for reuse; caches grown to 4 MiB: 2\)" \
  "$work/grown.txt" "grown caches"
"$tool" report "$work/ungrown.jsonl" >"$work/ungrown.txt" 2>"$work/ungrown.err"
has "^  glibc chunks cached +9\.00 MiB \(freed glibc blocks threads keep for reuse\)$" \
  "$work/ungrown.txt" "a record without system_caches_grown"
[ ! -s "$work/ungrown.err" ] || fail "a record without system_caches_grown: $(cat "$work/ungrown.err")"
echo "tools: grown chunk caches are reported"

# Two processes in one file (no %p): --pid chooses.
LD_PRELOAD="$lib" POOLMALLOC_STATS="$work/both.jsonl" POOLMALLOC_STATS_FORMAT=json \
  POOLMALLOC_STATS_INTERVAL=50ms "$probe" fork 300
"$tool" report "$work/both.jsonl" >"$work/both.txt"
has "this file holds 2 process runs; others: pid [0-9]+ \\(choose with --pid\\)" "$work/both.txt" \
  "several processes"
other=$(sed -nE 's/.*others: pid ([0-9]+) .*/\1/p' "$work/both.txt")
"$tool" report --json --pid "$other" "$work/both.jsonl" >"$work/other.json"
check_json "$work/other.json" "$work/both.jsonl"
"$python" -c "import json,sys; assert json.load(open('$work/other.json'))['pid'] == $other" \
  || fail "--pid"
status 1 "$tool" report --pid 1 "$work/both.jsonl" 2>/dev/null >/dev/null
echo "tools: a file written by two processes: --pid"

# By default, the process that allocated the most: here the program, not the
# shell that started it and outlived it (more snapshots). run's summary is of
# the shell, and names the program's pid.
"$tool" run --stats "$work/wrapped.jsonl" --interval 50ms -- \
  sh -c '"$1" pattern 100; sleep 0.5' sh "$probe" 2>"$work/wrapped.err"
"$tool" report --json "$work/wrapped.jsonl" >"$work/wrapped.json"
busiest=$("$python" - "$work/wrapped.jsonl" "$work/wrapped.json" <<'PY') || fail "default process"
import json, sys
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    n, allocated = runs.get(r["pid"], (0, 0))
    runs[r["pid"]] = (n + 1, max(allocated, r["small_allocated_total"] + r["system_allocated_total"]))
most_snapshots = max(runs, key=lambda pid: runs[pid][0])
most_allocated = max(runs, key=lambda pid: runs[pid][1])
assert most_snapshots != most_allocated, runs  # the shell waited longer
assert json.load(open(sys.argv[2]))["pid"] == most_allocated, runs
print(most_allocated)
PY
has "; pid $busiest allocated the most\)" "$work/wrapped.err" "run's summary names the busiest process"
echo "tools: by default, the process that allocated the most, not its longer-lived shell"

# A pid that exec'd another program has a run of each. run shows the last
# (its program's), and says the one before allocated more; the HTML report
# says which rule chose the run it shows.
"$tool" run --stats "$work/exec.jsonl" --interval 50ms -- env PYTHONMALLOC=malloc "$python" -c '
import os, sys, time
keep = [str(i) for i in range(200000)]
time.sleep(0.2)
os.execv(sys.argv[1], [sys.argv[1], "pattern", "100"])' "$probe" 2>"$work/exec.err"
has "; the program this pid ran before allocated the most: --pid [0-9]+:1\)" "$work/exec.err" \
  "run's summary after exec"
exec_pid=$(sed -nE 's/.*"pid":([0-9]+).*/\1/p' "$work/exec.jsonl" | sort -u)
[ "$(echo "$exec_pid" | wc -l)" = 1 ] || fail "one pid wrote $work/exec.jsonl: $exec_pid"
"$tool" report --html "$work/exec-pid.html" --pid "$exec_pid" "$work/exec.jsonl"
has "2 process runs; this is the one asked for" "$work/exec-pid.html" "HTML: the run asked for"
"$tool" report --html "$work/exec.html" "$work/exec.jsonl"
has "2 process runs; this is the one that allocated the most blocks" "$work/exec.html" \
  "HTML: by default, the run that allocated the most"
"$tool" report "$work/exec.jsonl" >"$work/exec.txt"
has "no exit snapshot: the program exec'd another, the next run of its pid" "$work/exec.txt" \
  "text: the earlier program was replaced, not killed"
has "this file holds 2 process runs; pid $exec_pid ran 2 programs, one exec'ing the next: this is program 1 \\(--pid $exec_pid:N shows program N\\)$" \
  "$work/exec.txt" "text: the runs of one pid"
# --pid PID:N reaches each program of the pid; PID alone, its last.
for run in 1 2; do
  "$tool" report --json --pid "$exec_pid:$run" "$work/exec.jsonl" >"$work/exec-$run.json"
done
"$tool" report --json --pid "$exec_pid" "$work/exec.jsonl" >"$work/exec-last.json"
"$python" - "$work/exec-1.json" "$work/exec-2.json" "$work/exec-last.json" "$work/exec.jsonl" <<'PY' \
  || fail "--pid PID:N"
import json, sys
first, second, last = (json.load(open(p)) for p in sys.argv[1:4])
records = sum(1 for line in open(sys.argv[4]) if line.strip())
assert (first["pid_run"], second["pid_run"], last["pid_run"]) == (1, 2, 2), \
    (first["pid_run"], second["pid_run"], last["pid_run"])
assert first["pid"] == second["pid"] and first["pid_runs"] == 2
f, s = first["summary"], second["summary"]
assert f["snapshots"] + s["snapshots"] == records, (f["snapshots"], s["snapshots"], records)
# python (200,000 strings kept) exec'd the probe, which ended normally.
assert not f["ended"] and s["ended"], (f["ended"], s["ended"])
assert f["live_peak_bytes"] > s["live_peak_bytes"], (f["live_peak_bytes"], s["live_peak_bytes"])
assert second == last
PY
status 1 "$tool" report --pid "$exec_pid:3" "$work/exec.jsonl" 2>"$work/exec-3.err" >/dev/null
has "pid $exec_pid ran 2 programs, not 3" "$work/exec-3.err" "--pid PID:N past the last program"
for bad in "$exec_pid:0" "$exec_pid:" "$exec_pid:1x" ":1"; do
  status 2 "$tool" report --pid "$bad" "$work/exec.jsonl" 2>/dev/null >/dev/null
done
echo "tools: a pid that exec'd: its runs told apart, and each reached with --pid PID:N"

# A program that wrote no snapshot (killed at once): run says so once.
status 137 "$tool" run --stats "$work/none.jsonl" -- sh -c 'kill -9 $$' 2>"$work/none.err"
has "no snapshot in $work/none.jsonl" "$work/none.err" "run: no snapshot"
[ "$(grep -c . "$work/none.err")" = 2 ] || { cat "$work/none.err" >&2; fail "run: no snapshot, said once"; }
echo "tools: run of a program that wrote no snapshot"

# One that ends within the interval has its exit snapshot alone: no peak is
# claimed for live bytes.
"$tool" run --stats "$work/one.jsonl" -- true 2>"$work/one.err"
has "live bytes 0 B at the end, the only snapshot \(a shorter --interval shows the peak\)" \
  "$work/one.err" "run: one snapshot"
"$tool" report "$work/one.jsonl" >"$work/one.txt"
has "one snapshot, so no peak" "$work/one.txt" "report: one snapshot"
echo "tools: a run with one snapshot claims no peak"

# Programs not in this repository.
"$tool" run --stats "$work/python.jsonl" --interval 20ms -- env PYTHONMALLOC=malloc "$python" -c '
import time
d = {i: str(i) * 3 for i in range(200000)}
time.sleep(0.1)
keep = [d[i] for i in range(0, 200000, 50)]
del d
time.sleep(0.1)
print(len(keep))' >/dev/null 2>&1
seq 1 200000 | sed 's/$/ line/' | shuf --random-source=<(yes) >"$work/lines"
"$tool" run --stats "$work/sort.jsonl" --interval 10ms -- sort "$work/lines" >/dev/null 2>&1
for name in python sort; do
  "$tool" report "$work/$name.jsonl" >"$work/$name.txt" || fail "report of $name exited $?"
  sections "$work/$name.txt"
  "$tool" report --json "$work/$name.jsonl" >"$work/$name.json"
  check_json "$work/$name.json" "$work/$name.jsonl" || fail "report of $name"
  "$tool" report --html "$work/$name.html" "$work/$name.jsonl" 2>/dev/null
  grep -q "<svg class=\"chart\" id=\"chart-timeline\"" "$work/$name.html" || fail "html of $name"
done
"$tool" diff "$work/python.jsonl" "$work/sort.jsonl" >"$work/diff-ps.txt" || fail "diff python sort"
has "^Changed most" "$work/diff-ps.txt" "diff of python3 and sort"
"$tool" compare -n 1 -- sort "$work/lines" >"$work/compare-sort.txt" 2>/dev/null || fail "compare sort"
has "^glibc +[0-9.]+ m?s " "$work/compare-sort.txt" "compare of sort"
echo "tools: report, diff and compare of python3 and sort (not in this repository)"

# ---- diff ------------------------------------------------------------------------
"$tool" diff "$work/scattered.jsonl" "$work/clean.jsonl" >"$work/diff.txt" || fail "diff exited $?"
for s in "^poolmalloc diff" "^  A: $work/scattered.jsonl" "^  B: $work/clean.jsonl" \
  "^Changed most" "^Every figure" "^Size classes, most changed first" "^Arenas by occupancy" \
  "^Retained memory"; do
  has "$s" "$work/diff.txt" "diff section"
done
# The two pinned classes changed most, 208 B first (12 MiB of pools -> 16 KiB).
sed -n '/^Size classes, most changed/,/^$/p' "$work/diff.txt" | sed -n 3,4p >"$work/top"
has "^ +12 +208 " "$work/top" "diff: class 12 first"
"$tool" diff --json "$work/scattered.jsonl" "$work/clean.jsonl" >"$work/diff.json"
"$python" - "$work/diff.json" "$work/scattered.jsonl" "$work/clean.jsonl" <<'PY' || fail "diff --json"
import json, sys
d = json.load(open(sys.argv[1]))
a = [json.loads(l) for l in open(sys.argv[2])][-1]
b = [json.loads(l) for l in open(sys.argv[3])][-1]
rel = [f["relative_change"] for f in d["figures"]]
assert rel == sorted(rel, reverse=True), "figures not sorted by change"
fig = {f["name"]: f for f in d["figures"]}
for name in ("rss_bytes", "small_pool_bytes", "arenas_mapped", "small_live_blocks"):
    assert fig[name]["a"] == a[name] and fig[name]["b"] == b[name], name
    assert fig[name]["change"] == b[name] - a[name], name
assert [c["class"] for c in d["classes"][:2]] == [12, 2], d["classes"][:2]
assert d["arena_occupancy"]["a"] == a["arena_occupancy"]
PY
"$tool" diff "$work/scattered.jsonl@first" "$work/scattered.jsonl" >"$work/diff2.txt"
has "^  A: .*snapshot 1 " "$work/diff2.txt" "diff of two snapshots of one run"
echo "tools: diff of two runs and of two snapshots; --json"

# ---- compare ---------------------------------------------------------------------
"$tool" compare -n 2 -- "$frag" clean 20 >"$work/compare.txt" 2>"$work/err" \
  || fail "compare exited $?"
for a in poolmalloc glibc; do
  has "^$a +[0-9.]+ m?s " "$work/compare.txt" "compare row"
done
for peer in jemalloc:libjemalloc.so.2 mimalloc:libmimalloc.so.2 tcmalloc:libtcmalloc_minimal.so.4; do
  if ls /usr/lib/*/"${peer#*:}" >/dev/null 2>&1; then
    has "^${peer%%:*} +[0-9.]+ m?s " "$work/compare.txt" "compare row of an installed peer"
  fi
done
has "^every run exited with 0" "$work/compare.txt" "compare"
"$tool" compare -n 3 --json --allocators poolmalloc,glibc -- "$frag" clean 10 >"$work/compare.json"
"$python" - "$work/compare.json" <<'PY' || fail "compare --json"
import json, sys
d = json.load(open(sys.argv[1]))
assert [a["name"] for a in d["allocators"]] == ["poolmalloc", "glibc"]
assert d["runs"] == 3 and d["same_ending"] is True
for a in d["allocators"]:
    assert len(a["wall_ms"]["runs"]) == 3 and a["exit_statuses"] == [0, 0, 0]
    assert a["wall_ms"]["min"] <= a["wall_ms"]["median"] <= a["wall_ms"]["max"]
    assert a["peak_rss_bytes"]["median"] > 1 << 20  # frag holds ~30 MiB at its peak
assert d["allocators"][0]["library"].endswith(".so") or ".so." in d["allocators"][0]["library"]
assert d["allocators"][1]["library"] is None
PY
"$tool" compare -n 1 --allocators glibc,poolmalloc -- "$frag" exit 3 >"$work/compare3.txt" 2>/dev/null
has "^every run exited with 3" "$work/compare3.txt" "compare: the same ending"
status 127 "$tool" compare -n 1 -- "$work/no-such-program" 2>/dev/null
echo "tools: compare: every installed allocator, --json, exit statuses"

# ---- the installed tree -------------------------------------------------------
cmake --install "$build" --prefix "$work/prefix" >/dev/null
[[ -x "$work/prefix/bin/poolmalloc" ]] || fail "bin/poolmalloc not installed"
grep -q '^\.TH POOLMALLOC 1' "$work/prefix/share/man/man1/poolmalloc.1" || fail "man page not installed"
"$work/prefix/bin/poolmalloc" run --stats "$work/inst.jsonl" -- /usr/bin/env >"$work/env" 2>"$work/err"
has "^LD_PRELOAD=$work/prefix/lib/libpoolmalloc\\.so" "$work/env" "the installed tool preloads the installed library"
has "snapshots? in $work/inst.jsonl" "$work/err" "installed run"
# Alone, with no library beside it: a clear error, and --library.
mkdir "$work/alone" && cp "$tool" "$work/alone/poolmalloc"
status 2 "$work/alone/poolmalloc" run -- true 2>"$work/err"
has "cannot find libpoolmalloc.so next to this program .*--library" "$work/err" "no library"
"$work/alone/poolmalloc" run --library "$lib" --stats "$work/alone.jsonl" -- "$frag" exit 0 \
  >/dev/null 2>&1 || fail "--library"
[[ -s "$work/alone.jsonl" ]] || fail "--library: no snapshot"
echo "tools: installed tree (bin/ + lib/), man page, --library"
echo "tools: ok"
