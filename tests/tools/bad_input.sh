#!/usr/bin/env bash
# Bad stats files, read by report (text, --json, --html) and diff: a missing
# file, an empty one, a last line cut short, a line that is not JSON, records
# of a newer schema, a bad profile object, a missing field, and worse. Each
# gives a clear error naming FILE:LINE (or FILE), exit status 1, and
# whatever could be read is still reported; a record older than a field
# added within its schema is read without it.
# Usage: bad_input.sh TOOL LIBPOOLMALLOC FRAG PROBE BUILD_DIR
set -euo pipefail
tool="$(readlink -f "$1")"
frag="$(readlink -f "$3")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python=/usr/bin/python3
fail() { echo "bad_input: FAIL: $*" >&2; exit 1; }
has() {
  grep -Eq -- "$1" "$2" || { echo "----- $2" >&2; cat "$2" >&2; fail "$3: no /$1/"; }
}
# report_of FILE EXPECTED_STATUS: runs report (text) into $work/out, $work/err.
report_of() {
  local got=0
  "$tool" report "$1" >"$work/out" 2>"$work/err" || got=$?
  ((got == $2)) || { cat "$work/err" >&2; fail "report $1: exit status $got, expected $2"; }
}
# snapshots_reported N: the text report in $work/out read N snapshots.
snapshots_reported() {
  has "^  $1 snapshots? \\(" "$work/out" "snapshots reported"
}

"$tool" run -q --stats "$work/good.jsonl" --interval 50ms -- "$frag" scattered 150 >/dev/null
n=$(wc -l <"$work/good.jsonl")
((n >= 3)) || fail "only $n snapshots in the good file"
report_of "$work/good.jsonl" 0
[[ ! -s "$work/err" ]] || fail "a good file gave errors: $(cat "$work/err")"

# 1. A missing file.
report_of "$work/missing.jsonl" 1
has "^poolmalloc: $work/missing.jsonl: cannot read: No such file or directory$" "$work/err" missing
[[ ! -s "$work/out" ]] || fail "a report of a missing file"
"$tool" report --json "$work/missing.jsonl" 2>/dev/null >"$work/missing.json" || true
"$python" -c "
import json; d = json.load(open('$work/missing.json'))
assert d['pid'] is None and 'cannot read' in d['problems'][0]['message'], d" || fail "missing --json"
echo "bad_input: missing file"

# 2. An empty file.
: >"$work/empty.jsonl"
report_of "$work/empty.jsonl" 1
has "^poolmalloc: $work/empty.jsonl: the file is empty" "$work/err" empty
echo "bad_input: empty file"

# 3. The last line cut short (a killed program, a copy of a growing file).
head -c -700 "$work/good.jsonl" >"$work/cut.jsonl"
report_of "$work/cut.jsonl" 1
has "^poolmalloc: $work/cut.jsonl:$n: the last record is cut short" "$work/err" "cut short"
snapshots_reported $((n - 1))
has "no exit snapshot" "$work/out" "cut short: the exit snapshot is lost"
has "^Retained memory" "$work/out" "cut short: the report goes on"
"$tool" report --json "$work/cut.jsonl" >"$work/cut.json" 2>/dev/null || true
"$python" - "$work/cut.json" "$n" <<'PY' || fail "cut short --json"
import json, sys
d = json.load(open(sys.argv[1])); n = int(sys.argv[2])
assert d["problem_count"] == 1 and d["problems"][0]["line"] == n, d["problems"]
assert d["summary"]["snapshots"] == n - 1 and d["summary"]["ended"] is False
PY
"$tool" report --html "$work/cut.html" "$work/cut.jsonl" 2>/dev/null && fail "html of a cut file exited 0"
grep -q "could not be read; the report shows the rest" "$work/cut.html" || fail "html: no problems box"
grep -q "cut.jsonl:$n</code> the last record is cut short" "$work/cut.html" || fail "html: no file:line"
grep -q 'id="chart-timeline"' "$work/cut.html" || fail "html of a cut file has no chart"
echo "bad_input: truncated last line (text, --json, --html)"

# 4. A line that is not JSON, in the middle.
{ head -2 "$work/good.jsonl"; echo 'poolmalloc: some other message {'; tail -n +3 "$work/good.jsonl"; } \
  >"$work/garbled.jsonl"
report_of "$work/garbled.jsonl" 1
has "^poolmalloc: $work/garbled.jsonl:3:[0-9]+: not JSON: .*; skipped$" "$work/err" "not JSON"
snapshots_reported "$n"
echo "bad_input: a line that is not JSON"

# 5. A newer schema: whole file, and after two good records.
sed 's/"schema":1,/"schema":2,/' "$work/good.jsonl" >"$work/newer.jsonl"
report_of "$work/newer.jsonl" 1
has "^poolmalloc: $work/newer.jsonl:1: written by a newer poolmalloc [0-9.]+ \\(schema 2; this tool reads schema 1\\)" \
  "$work/err" "newer schema"
has "the same on the next $((n - 1)) lines" "$work/err" "newer schema: one message for the run of lines"
has "^poolmalloc: $work/newer.jsonl: no poolmalloc snapshot could be read$" "$work/err" "newer schema"
{ head -2 "$work/good.jsonl"; tail -n +3 "$work/newer.jsonl"; } >"$work/upgraded.jsonl"
report_of "$work/upgraded.jsonl" 1
has "^poolmalloc: $work/upgraded.jsonl:3: written by a newer poolmalloc" "$work/err" "newer schema at line 3"
snapshots_reported 2
echo "bad_input: a newer schema"

# 6. Worse: a field of the wrong type, a record without classes, a text
# report, random bytes, a 2 MiB line, a directory, CRLF line ends.
sed '2s/"rss_bytes":[0-9]*/"rss_bytes":"lots"/; 3s/,"classes":\[.*\]}$/}/' "$work/good.jsonl" >"$work/fields.jsonl"
report_of "$work/fields.jsonl" 1
has ":2: field 'rss_bytes' is a string, not an integer; skipped$" "$work/err" "wrong type"
has ":3: 'classes' is not an array of the 32 size classes; skipped$" "$work/err" "no classes"
snapshots_reported $((n - 2))
POOLMALLOC_STATS="$work/text.txt" LD_PRELOAD="$(readlink -f "$2")" "$frag" exit 0 >/dev/null
report_of "$work/text.txt" 1
has ":1: a text snapshot \\(POOLMALLOC_STATS_FORMAT=text\\)" "$work/err" "text report"
head -c 200000 /dev/urandom >"$work/random.bin"
report_of "$work/random.bin" 1
has "^poolmalloc: $work/random.bin:[0-9]+" "$work/err" "random bytes"
{ head -c 2097152 /dev/zero | tr '\0' 'a'; echo; cat "$work/good.jsonl"; } >"$work/long.jsonl"
report_of "$work/long.jsonl" 1
has ":1: a line of 2097152 bytes: not a stats record; skipped$" "$work/err" "a 2 MiB line"
snapshots_reported "$n"
report_of "$work" 1
has "^poolmalloc: $work: cannot read: Is a directory$" "$work/err" directory
sed 's/$/\r/' "$work/good.jsonl" >"$work/crlf.jsonl"
report_of "$work/crlf.jsonl" 0
echo "bad_input: wrong types, missing classes, text, random bytes, long lines, directories, CRLF"

# 7. Records written before the waiting and trimmed fields were added to
# schema 1 read them as 0 (docs/stats-schema.md); any other field missing is
# an error.
sed -E 's/"small_waiting_blocks":[0-9]+,"small_waiting_bytes":[0-9]+,//; s/"waiting_blocks":[0-9]+,//g; s/"small_trimmed_bytes":[0-9]+,//; s/"trimmed_bytes":[0-9]+,//g' \
  "$work/good.jsonl" >"$work/older.jsonl"
! grep -q 'waiting\|trimmed' "$work/older.jsonl" || fail "the added fields were not taken out"
report_of "$work/older.jsonl" 0
[[ ! -s "$work/err" ]] || fail "an older record gave errors: $(cat "$work/err")"
snapshots_reported "$n"
sed '2s/"rss_bytes":[0-9]*,//' "$work/good.jsonl" >"$work/lacking.jsonl"
report_of "$work/lacking.jsonl" 1
has ":2: field 'rss_bytes' is missing; skipped$" "$work/err" "a missing field"
echo "bad_input: fields added within schema 1 may be missing; others may not"

# 7. diff: the readable side still compared; a missing side named.
got=0
"$tool" diff "$work/cut.jsonl" "$work/good.jsonl" >"$work/out" 2>"$work/err" || got=$?
((got == 1)) || fail "diff with a cut file: exit $got"
has "cut.jsonl:$n: the last record is cut short" "$work/err" "diff names the bad line"
has "^Changed most" "$work/out" "diff still compares"
got=0
"$tool" diff "$work/missing.jsonl" "$work/good.jsonl" >"$work/out" 2>"$work/err" || got=$?
((got == 1)) || fail "diff with a missing file: exit $got"
has "missing.jsonl: cannot read" "$work/err" "diff names the missing file"
echo "bad_input: diff"

# 8. A program killed mid-run: the summary of what was written, 128 + 9.
got=0
"$tool" run --stats "$work/killed.jsonl" --interval 20ms -- \
  bash -c "\"$frag\" clean 50 >/dev/null; kill -9 \$\$" >/dev/null 2>"$work/err" || got=$?
((got == 137)) || fail "run of a killed program: exit $got"
has "was killed by SIGKILL" "$work/err" "killed"
has "no exit snapshot" "$work/err" "killed: no exit snapshot"
echo "bad_input: a program killed mid-run"

# 9. A bad profile object: reported at its line; the record is kept without it.
# Sampled densely, so that the first snapshot (at 50 ms) already has sites:
# at the default rate it sometimes had none to spoil.
POOLMALLOC_PROFILE_RATE=4096 "$tool" run -q --profile --stats "$work/profiled.jsonl" --interval 50ms -- "$frag" scattered 100 >/dev/null
n=$(wc -l <"$work/profiled.jsonl")
"$python" - "$work/profiled.jsonl" "$work/badprofile.jsonl" <<'PY'
import json, sys
records = [json.loads(l) for l in open(sys.argv[1])]
records[0]["profile"]["top_allocated"][0]["frames"][0] = 7
records[1]["profile"]["leaks"] = "none"
records[-1]["profile"]["top_live"][0]["addresses"] = ["0x1"]
open(sys.argv[2], "w").write("".join(json.dumps(r) + "\n" for r in records))
PY
report_of "$work/badprofile.jsonl" 1
has "^poolmalloc: $work/badprofile.jsonl:1: profile.top_allocated\\[0\\]: 'frames\\[0\\]' is an integer, not a frame; the record is read without its profile$" \
  "$work/err" "a frame of the wrong type"
has ":2: profile: 'leaks' is a string, not an array of sites; the record is read without its profile$" \
  "$work/err" "leaks of the wrong type"
has ":$n: profile.top_live\\[0\\]: 'addresses' is not an array of [0-9]+ addresses, one per frame" \
  "$work/err" "addresses that do not match the frames"
snapshots_reported "$n"
has "^Leak report" "$work/out" "the report goes on"
has "the exit snapshot has no profile" "$work/out" "the exit record's profile is left out"
"$tool" report --json "$work/badprofile.jsonl" >"$work/badprofile.json" 2>/dev/null || true
"$python" -c "
import json; d = json.load(open('$work/badprofile.json'))
assert d['problem_count'] == 3 and d['summary']['snapshots'] == $n, d['problems']
assert d['profile']['snapshot'] is None and d['profile']['leaks'] is None, d['profile']" \
  || fail "a bad profile: --json"
"$tool" report --html "$work/badprofile.html" "$work/badprofile.jsonl" 2>/dev/null && fail "html exited 0"
grep -q "has no profile" "$work/badprofile.html" || fail "html of a bad profile"
echo "bad_input: a bad profile object (the rest of its record is still reported)"
echo "bad_input: ok"
