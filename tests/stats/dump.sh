#!/usr/bin/env bash
# The dump thread, end to end: a probe program (probe.c) runs with
# libpoolmalloc.so preloaded and stats on, and its snapshots are read back
# with Python's json module. Usage: dump.sh LIBPOOLMALLOC PROBE LATE_EXIT
set -euo pipefail
lib="$1"
probe="$2"
late_exit="$3"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python=/usr/bin/python3
fail() { echo "dump: FAIL: $*" >&2; exit 1; }

# Prints the number of records in the files given, failing on any line that
# is not one whole JSON object of schema 1.
records() {
  "$python" - "$@" <<'PY'
import json, sys
n = 0
for path in sys.argv[1:]:
    with open(path) as f:
        lines = f.readlines()
        # A last line without its newline is a record the kill cut short
        # during its write(2): readers skip it (docs/stats-schema.md).
        if lines and not lines[-1].endswith("\n"):
            print(f"{path}: the last record was cut short by the kill", file=sys.stderr)
            lines.pop()
        for number, line in enumerate(lines, 1):
            record = json.loads(line)
            if record.get("schema") != 1 or record.get("allocator") != "poolmalloc":
                sys.exit(f"{path}:{number}: not a poolmalloc schema-1 record")
            n += 1
print(n)
PY
}

# 1. Interval snapshots and exact counters for a known pattern.
LD_PRELOAD="$lib" POOLMALLOC_STATS="$work/pattern.jsonl" POOLMALLOC_STATS_FORMAT=json \
  POOLMALLOC_STATS_INTERVAL=100ms "$probe" pattern 650
n=$(records "$work/pattern.jsonl")
((n >= 4)) || fail "expected at least 4 snapshots in 650 ms at 100ms, got $n"
"$python" - "$work/pattern.jsonl" <<'PY' || fail "pattern counters"
import json, sys
records = [json.loads(l) for l in open(sys.argv[1])]
interval = [r for r in records if r["reason"] == "interval"]
assert records[-1]["reason"] == "exit", records[-1]["reason"]
assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
# While the pattern is live (every interval snapshot after start-up), class 1
# holds at least its 1000 blocks and glibc at least its 37.
live = interval[-1]
assert live["classes"][1]["live_blocks"] >= 1000, live["classes"][1]
assert live["system_live_blocks"] >= 37, live["system_live_blocks"]
usable = sum(1000 + i * 100 for i in range(37))
assert live["system_live_bytes"] >= usable, live["system_live_bytes"]
# At exit they are gone again: exactly 1000 and 37 fewer than at the peak.
end = records[-1]
assert live["classes"][1]["live_blocks"] - end["classes"][1]["live_blocks"] == 1000
assert live["system_live_blocks"] - end["system_live_blocks"] == 37
assert end["classes"][1]["freed_total"] - live["classes"][1]["freed_total"] == 1000
PY
echo "dump: interval snapshots: $n records, counters exact"

# 1b. The exit snapshot is the last record even when another library's
# destructor runs after ours for several intervals.
LD_PRELOAD="$lib $late_exit" POOLMALLOC_STATS="$work/late.jsonl" POOLMALLOC_STATS_FORMAT=json \
  POOLMALLOC_STATS_INTERVAL=10ms "$probe" pattern 50
"$python" - "$work/late.jsonl" <<'PY' || fail "the exit snapshot is not the last record"
import json, sys
reasons = [json.loads(line)["reason"] for line in open(sys.argv[1])]
assert reasons.count("exit") == 1 and reasons[-1] == "exit", reasons[-5:]
PY
echo "dump: the exit snapshot ends the report, whatever runs after it"

# 2. Text format to a relative path: made absolute, readable.
(cd "$work" && LD_PRELOAD="$lib" POOLMALLOC_STATS=text.%p.txt POOLMALLOC_STATS_INTERVAL=1h \
  "$probe" pattern 0)
grep -q "^poolmalloc .* stats: pid [0-9]*, snapshot 1 (exit)" "$work"/text.*.txt || fail "text report"
grep -q "small blocks allocated" "$work"/text.*.txt || fail "text summary"
echo "dump: text report to a relative %p path"

# 3. A snapshot on demand, by signal.
LD_PRELOAD="$lib" POOLMALLOC_STATS="$work/signal.jsonl" POOLMALLOC_STATS_FORMAT=json \
  POOLMALLOC_STATS_INTERVAL=1h POOLMALLOC_STATS_SIGNAL=USR1 "$probe" signal 300
grep -q '"reason":"signal"' "$work/signal.jsonl" || fail "no snapshot on SIGUSR1"
echo "dump: snapshot on POOLMALLOC_STATS_SIGNAL"

# 4. A forked child writes its own file (%p), with its own thread, which
# starts when the child first takes a pool.
out=$(LD_PRELOAD="$lib" POOLMALLOC_STATS="$work/fork.%p.jsonl" POOLMALLOC_STATS_FORMAT=json \
  POOLMALLOC_STATS_INTERVAL=50ms "$probe" fork 300)
[[ $out == "child_threads_before=1 child_threads_after=2" ]] ||
  fail "expected the child's dump thread once it took pools, not before: $out"
files=("$work"/fork.*.jsonl)
((${#files[@]} == 2)) || fail "expected a file for the parent and one for the child: ${files[*]}"
for f in "${files[@]}"; do
  pid=$(basename "$f" | cut -d. -f2)
  "$python" -c "
import json, sys
rs = [json.loads(l) for l in open('$f')]
assert all(r['pid'] == $pid for r in rs), 'a record of another process'
assert rs[-1]['reason'] == 'exit'
" || fail "$f"
done
child=$(for f in "${files[@]}"; do grep -c '"reason":"interval"' "$f"; done | sort -n | head -1)
((child >= 2)) || fail "the child's dump thread wrote $child interval snapshots"
echo "dump: fork child writes its own file"

# 5. kill -9: every record already written is whole.
LD_PRELOAD="$lib" POOLMALLOC_STATS="$work/killed.jsonl" POOLMALLOC_STATS_FORMAT=json \
  POOLMALLOC_STATS_INTERVAL=10ms "$probe" loop &
victim=$!
# Killed once 10 snapshots are written (a fixed sleep gave too few on a
# loaded machine), whichever record the dump thread is then writing.
for ((i = 0; i < 200; i++)); do
  (($(cat "$work/killed.jsonl" 2>/dev/null | wc -l) >= 10)) && break
  sleep 0.05
done
kill -9 "$victim"
wait "$victim" 2>/dev/null || true
n=$(records "$work/killed.jsonl")
((n >= 10)) || fail "expected snapshots before the kill, got $n"
echo "dump: $n records whole after kill -9"

# 6. A program that closes every descriptor and changes directory.
LD_PRELOAD="$lib" POOLMALLOC_STATS="$work/daemon.jsonl" POOLMALLOC_STATS_FORMAT=json \
  POOLMALLOC_STATS_INTERVAL=50ms "$probe" closefds 300
n=$(records "$work/daemon.jsonl")
((n >= 3)) || fail "a daemon-like program got $n snapshots"
echo "dump: $n snapshots from a program that closed every descriptor"

# The dump thread is one glibc does not know of (clone; allocator/dump.c).
# The checks of what that implies run with stats alone and with profiling
# too, whose snapshots name the frames of allocation sites.
kinds=("" POOLMALLOC_PROFILE=1)
kind_name() { echo "${1:-stats}"; }
# The probe as KIND, a JSON snapshot to FILE every 10 ms: probe_as KIND FILE MODE MS
probe_as() {
  local kind="$1" file="$2"
  shift 2
  env $kind LD_PRELOAD="$lib" POOLMALLOC_STATS="$file" POOLMALLOC_STATS_FORMAT=json \
    POOLMALLOC_STATS_INTERVAL=10ms "$probe" "$@"
}

# 7. The dump thread never keeps a process alive: main ends with pthread_exit.
for kind in "${kinds[@]}"; do
  rc=0
  env $kind LD_PRELOAD="$lib" POOLMALLOC_STATS="$work/pexit.jsonl" POOLMALLOC_STATS_FORMAT=json \
    timeout -k 1 10 "$probe" pthread_exit || rc=$?
  ((rc == 0)) || fail "$(kind_name $kind): a program ending in pthread_exit did not end (status $rc)"
  grep -q '"reason":"exit"' "$work/pexit.jsonl" || fail "no exit snapshot after pthread_exit"
  rm "$work/pexit.jsonl"
  echo "dump: $(kind_name $kind): a program ending in pthread_exit ends, with its exit snapshot"
  rc=0
  env $kind LD_PRELOAD="$lib" POOLMALLOC_STATS="$work/pexit-idle.jsonl" POOLMALLOC_STATS_FORMAT=json \
    POOLMALLOC_STATS_INTERVAL=50ms timeout -k 1 10 "$probe" pthread_exit_idle 300 \
    >"$work/pexit-idle.out" || rc=$?
  ((rc == 0)) || fail "$(kind_name $kind): a program whose last thread never allocated did not end (status $rc)"
  grep -q '"reason":"exit"' "$work/pexit-idle.jsonl" || fail "no exit snapshot after the idle thread"
  grep -qx "probe: main's buffered line" "$work/pexit-idle.out" ||
    fail "$(kind_name $kind): the output main left in stdio's buffer was lost at exit"
  rm "$work/pexit-idle.jsonl"
  echo "dump: $(kind_name $kind): ... and so does one whose last thread never allocated, its stdout flushed"
done

# 7b. The dump thread's own files never take a descriptor number the program
# freed (CPython's test_io once got EISDIR from /proc/self/task that way).
# It opens them in a descriptor table of its own, which takes unshare().
if "$probe" can_unshare; then
  for kind in "${kinds[@]}"; do
    probe_as "$kind" "$work/fdwatch.jsonl" fdwatch 1000 ||
      fail "$(kind_name $kind): the dump thread opened a file in the program's descriptor table"
    n=$(records "$work/fdwatch.jsonl")
    rm "$work/fdwatch.jsonl"
    ((n >= 20)) || fail "expected a snapshot every 10ms while watching (100), got $n"
    echo "dump: $(kind_name $kind): $n snapshots, and the program's free descriptor numbers stayed free"
  done
else
  echo "dump: warning: unshare(CLONE_FILES) is refused here (seccomp?): the dump" \
    "thread opens its files in the program's table; descriptor check skipped"
fi

# 7c. A single-threaded program stays single-threaded for glibc (its malloc
# and stdio skip their locks), and the errno it shares with the dump thread
# never changes behind its back, though every snapshot fails to open.
for kind in "${kinds[@]}"; do
  out=$(env $kind LD_PRELOAD="$lib" POOLMALLOC_STATS=/nonexistent/dir/stats \
    POOLMALLOC_STATS_INTERVAL=10ms POOLMALLOC_PURGE_DELAY=10ms "$probe" hidden 500 \
    2>"$work/hidden.err") ||
    fail "$(kind_name $kind): the program's errno changed: $(cat "$work/hidden.err")"
  [[ $out == "single_threaded=1 threads=2 "* ]] ||
    fail "$(kind_name $kind): expected a program single-threaded for glibc, with the dump thread beside it: $out"
  echo "dump: $(kind_name $kind): the program stays single-threaded for glibc and keeps its errno"
done

# 7d. Root drops to nobody with setgroups/setresgid/setresuid: the dump
# thread follows before the calls return, as glibc's threads do, and goes
# on writing snapshots (the file is the program's to write, as nobody).
if (($(id -u) == 0)); then
  for kind in "${kinds[@]}"; do
    touch "$work/creds.jsonl" && chmod 666 "$work/creds.jsonl" && chmod 755 "$work"
    probe_as "$kind" "$work/creds.jsonl" credentials 100 >"$work/creds.out" ||
      fail "$(kind_name $kind): a thread kept other credentials: $(cat "$work/creds.out")"
    grep -q "threads=2 differing=0" "$work/creds.out" ||
      fail "$(kind_name $kind): the dump thread was not seen: $(cat "$work/creds.out")"
    n=$(records "$work/creds.jsonl")
    rm "$work/creds.jsonl"
    ((n >= 3)) || fail "$(kind_name $kind): expected snapshots after the change, got $n"
    echo "dump: $(kind_name $kind): after setuid and kin, every thread holds the new credentials"
  done
else
  echo "dump: not root: the credentials check is skipped"
fi

# 7e. The kernel refuses setns() into a mount, time or user namespace, and
# unshare() of the user namespace, to a process with a second thread: the
# shim makes those calls with the dump thread stopped, and starts it again
# after. The probe's calls must end as they do without poolmalloc (where
# this machine allows them, they succeed), and snapshots go on after them.
namespaces_alone=$("$probe" namespaces 0)
echo "dump: without poolmalloc: $namespaces_alone"
for kind in "${kinds[@]}"; do
  out=$(probe_as "$kind" "$work/ns.jsonl" namespaces 300) ||
    fail "$(kind_name $kind): the namespaces probe failed: $out"
  [[ ${out% threads=*} == "${namespaces_alone% threads=*}" ]] ||
    fail "$(kind_name $kind): namespace calls ended otherwise than without poolmalloc: $out"
  [[ $out == *" threads=2" ]] || fail "$(kind_name $kind): the dump thread was not started again: $out"
  n=$(records "$work/ns.jsonl")
  rm "$work/ns.jsonl"
  ((n >= 10)) || fail "$(kind_name $kind): expected snapshots every 10 ms after the calls, got $n"
  echo "dump: $(kind_name $kind): $out, as without poolmalloc, then $n snapshots"
done

# A new PID namespace admits no thread until a fork has put a process in
# it: the process that made it writes its exit report only, silently, and
# its child has a dump thread of its own.
alone=$("$probe" pid_namespace 0)
echo "dump: without poolmalloc: $alone"
if [[ $alone == "unshare_user_pid=1 "* ]]; then
  for kind in "${kinds[@]}"; do
    out=$(probe_as "$kind" "$work/pidns-%p.jsonl" pid_namespace 300 2>"$work/pidns.err") ||
      fail "$(kind_name $kind): the PID namespace probe failed: $out"
    [[ ! -s $work/pidns.err ]] || fail "$(kind_name $kind): stderr: $(cat "$work/pidns.err")"
    [[ $out == "unshare_user_pid=1 child_pid=1 child_threads=2" ]] ||
      fail "$(kind_name $kind): expected the child, pid 1, with its dump thread: $out"
    n=$(records "$work/pidns-1.jsonl")
    rm "$work"/pidns-*.jsonl
    ((n >= 10)) || fail "$(kind_name $kind): expected the child's snapshots every 10 ms, got $n"
    echo "dump: $(kind_name $kind): $out, $n snapshots from the child"
  done
fi

# 7f. glibc's heap gives back what the program frees (probe.c, glibc_heap):
# 64 MiB of 8000-byte blocks under one that stays live, which glibc alone
# keeps resident after any free short of all of them. Freeing 99% is a
# collapse (live bytes at an eighth or less): trimmed at once. Freeing 60%
# halves them: not trimmed before the purge delay has run out, then by the
# program's next calls; not by the dump thread's tick, which never calls
# into glibc's malloc (dump.c), and which runs here to show that. The
# program's own malloc_trim trims whatever it freed.
glibc_heap_run() {
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" LD_PRELOAD="$lib" "$probe" glibc_heap "$@"
}
field() { sed -n "s/.*\b$1=\([-0-9]*\).*/\1/p" <<<"$2"; }
out=$(glibc_heap_run -- 99 0)
(($(field freed "$out") - $(field start "$out") < 8192)) ||
  fail "99% of 64 MiB of glibc-path blocks freed, RSS stayed up: $out"
out=$(glibc_heap_run POOLMALLOC_STATS=/dev/null POOLMALLOC_STATS_INTERVAL=50ms \
  POOLMALLOC_PURGE_DELAY=300ms -- 60 1000)
(($(field freed "$out") > $(field peak "$out") - 8192)) ||
  fail "glibc's heap was trimmed before the purge delay ran out: $out"
(($(field slept "$out") > $(field peak "$out") - 8192)) ||
  fail "the dump thread's tick trimmed glibc's heap (it must not call into glibc's malloc): $out"
(($(field later "$out") < $(field peak "$out") - 32768)) ||
  fail "the program's calls after the delay did not trim glibc's heap: $out"
out=$(glibc_heap_run -- 40 -1)
[[ $(field trim "$out") == 1 ]] && (($(field later "$out") < $(field peak "$out") - 16384)) ||
  fail "malloc_trim(0) did not trim glibc's heap: $out"
echo "dump: glibc's heap is trimmed at once when its live bytes collapse, after the delay when they halve, and by malloc_trim"

# 8. Bad input: one warning naming the variable and value; the program runs.
err=$(LD_PRELOAD="$lib" POOLMALLOC_STATS="$work/bad.jsonl" POOLMALLOC_STATS_INTERVAL=soon \
  POOLMALLOC_STATS_FORMAT=yaml "$probe" pattern 0 2>&1 >/dev/null)
grep -q "POOLMALLOC_STATS_INTERVAL='soon'" <<<"$err" || fail "no warning for the interval: $err"
grep -q "POOLMALLOC_STATS_FORMAT='yaml'" <<<"$err" || fail "no warning for the format: $err"
(($(wc -l <<<"$err") == 2)) || fail "expected exactly two warning lines: $err"
grep -q "^poolmalloc .* stats" "$work/bad.jsonl" || fail "the defaults (text) were not used"
# A duration's range is written in durations: 86400000 is seconds, not the
# 86400000 ms of 24h.
err=$(LD_PRELOAD="$lib" POOLMALLOC_PURGE_DELAY=86400000 "$probe" pattern 0 2>&1 >/dev/null)
grep -qF "POOLMALLOC_PURGE_DELAY='86400000': out of range (0..24h; a bare number is seconds); using the default 1s" <<<"$err" ||
  fail "no clear warning for a delay out of range: $err"
err=$(LD_PRELOAD="$lib" POOLMALLOC_STATS=/nonexistent/dir/stats "$probe" pattern 0 2>&1) \
  || fail "an unwritable stats file stopped the program"
grep -q "cannot open POOLMALLOC_STATS file '/nonexistent/dir/stats'" <<<"$err" || fail "$err"
echo "dump: bad values and unwritable files are reported, the program runs on"

# 8b. With POOLMALLOC_STATS_FORMAT unset, the file's name chooses: *.json and
# *.jsonl get JSON, any other name text; the variable, when set, wins.
for name in named.json named.jsonl; do
  LD_PRELOAD="$lib" POOLMALLOC_STATS="$work/$name" "$probe" pattern 0 >/dev/null
  (($(records "$work/$name") == 1)) || fail "$name: not written as JSON"
done
LD_PRELOAD="$lib" POOLMALLOC_STATS="$work/named.txt" "$probe" pattern 0 >/dev/null
LD_PRELOAD="$lib" POOLMALLOC_STATS="$work/forced.jsonl" POOLMALLOC_STATS_FORMAT=text \
  "$probe" pattern 0 >/dev/null
for name in named.txt forced.jsonl; do
  grep -q "^poolmalloc .* stats: pid" "$work/$name" || fail "$name: not written as text"
done
echo "dump: a stats file named *.json or *.jsonl is JSON unless POOLMALLOC_STATS_FORMAT says otherwise"

# 9. POOLMALLOC_PURGE_THREAD=1 without stats: the same thread, for the
# purging alone, named poolmalloc-bg. A process whose idle threads' blocks
# were all freed by another, and which then makes no call at all, gives
# them back after the purge delay; without the thread it keeps them.
purge=(env LD_PRELOAD="$lib" POOLMALLOC_PURGE_THREAD=1 POOLMALLOC_PURGE_DELAY=100ms)
out=$("${purge[@]}" "$probe" quiet 2000) || fail "purge thread: the quiet probe failed: $out"
made=$(field made "$out") slept=$(field slept "$out")
((slept * 4 < made)) || fail "purge thread: a quiet process kept its freed blocks' memory: $out"
echo "dump: purge thread: RSS in KiB $out"
out=$(env LD_PRELOAD="$lib" POOLMALLOC_PURGE_DELAY=100ms "$probe" quiet 500) ||
  fail "the quiet probe failed: $out"
(($(field slept "$out") * 2 > $(field made "$out"))) ||
  fail "without the purge thread, a process that makes no call gave its memory back: $out"
echo "dump: without it, RSS in KiB $out"
# Between its ticks, one every purge delay, it sleeps: a second beyond the
# first tick (once spent spinning, until the overhead suite saw python's
# system time grow sixfold) costs next to no CPU.
cpu=$( (TIMEFORMAT='%3U %3S'; time env LD_PRELOAD="$lib" POOLMALLOC_PURGE_THREAD=1 \
  POOLMALLOC_PURGE_DELAY=200ms sleep 1.5) 2>&1)
"$python" -c 'import sys; sys.exit(float(sys.argv[1]) + float(sys.argv[2]) > 0.2)' $cpu ||
  fail "purge thread: a sleeping program used $cpu s of CPU (user, system)"
echo "dump: purge thread: a program asleep 1.5 s used $cpu s of CPU (user, system)"
# What the stats thread's checks (4, 7, 7c, 7e) say of it holds for this one.
rc=0
"${purge[@]}" timeout -k 1 10 "$probe" pthread_exit || rc=$?
((rc == 0)) || fail "purge thread: a program ending in pthread_exit did not end (status $rc)"
out=$("${purge[@]}" "$probe" hidden 300) || fail "purge thread: the program's errno changed"
[[ $out == "single_threaded=1 threads=2 "* ]] ||
  fail "purge thread: expected a program single-threaded for glibc, with the thread beside it: $out"
out=$("${purge[@]}" sh -c 'cat /proc/$$/task/*/comm')
grep -qx poolmalloc-bg <<<"$out" || fail "purge thread: no task named poolmalloc-bg: $out"
out=$("${purge[@]}" "$probe" fork 100) || fail "purge thread: the fork probe failed: $out"
[[ $out == "child_threads_before=1 child_threads_after=2" ]] ||
  fail "purge thread: a fork child did not start its own once it took a pool: $out"
out=$("${purge[@]}" "$probe" namespaces 300) || fail "purge thread: the namespaces probe failed: $out"
[[ ${out% threads=*} == "${namespaces_alone% threads=*}" && $out == *" threads=2" ]] ||
  fail "purge thread: namespace calls ended otherwise than without poolmalloc ($namespaces_alone): $out"
echo "dump: purge thread: ends with pthread_exit, stays hidden from glibc, named poolmalloc-bg," \
  "starts in a fork child, $out"
echo "dump: ok"
