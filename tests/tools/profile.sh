#!/usr/bin/env bash
# Allocation sites in the poolmalloc command: `run --profile` and `report`
# (text, --json, --html) on tests/stats/profile_probe.c, whose three
# functions allocate 50%, 30% and 20% of the bytes and the third leaks.
# The reports must show the three with their shares within 5 points, the
# leaking one first in the leak report, and — where the probe has debug
# information (RelWithDebInfo builds it with -g) — each frame's file:line:
# the line of the function's malloc call in profile_probe.c. Then how
# resolution fails: the module not found, another build of it, no
# addr2line, an addr2line that hangs; and a report without profiling.
# With PROFILE_PROBE_LTO (the probe built with GCC's -flto): its file names,
# which binutils 2.40's addr2line reads as "<artificial>", come from
# llvm-addr2line, or a note says that it would give them.
# Usage: profile.sh TOOL LIBPOOLMALLOC FRAG PROBE BUILD_DIR PROFILE_PROBE [PROFILE_PROBE_LTO]
set -euo pipefail
tool="$(readlink -f "$1")"
frag="$(readlink -f "$3")"
pprobe="$(readlink -f "$6")"
lto_probe="${7:+$(readlink -f "$7")}"
source_file="$(cd "$(dirname "${BASH_SOURCE[0]}")/../stats" && pwd)/profile_probe.c"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python=/usr/bin/python3
fail() { echo "profile: FAIL: $*" >&2; exit 1; }
has() {
  grep -Eq -- "$1" "$2" || { echo "----- $2" >&2; cat "$2" >&2; fail "$3: no /$1/"; }
}
hasnt() {
  ! grep -Eq -- "$1" "$2" || { echo "----- $2" >&2; cat "$2" >&2; fail "$3: /$1/ is there"; }
}
debug=0
if readelf -S "$pprobe" 2>/dev/null | grep -q '\.debug_info'; then debug=1; fi
# The line of each function's malloc call in the source.
malloc_line() {
  awk -v f="$1" '$0 ~ "void " f "\\(" {inside = 1} inside && /malloc\(/ {print NR; exit}' "$source_file"
}
lines="allocate_half=$(malloc_line allocate_half),allocate_thirty=$(malloc_line allocate_thirty)"
lines="$lines,allocate_twenty_and_leak=$(malloc_line allocate_twenty_and_leak)"
echo "profile: probe debug info: $debug; malloc lines: $lines"

# ---- run --profile: the summary ------------------------------------------------
"$tool" run --profile --stats "$work/p.jsonl" -- "$pprobe" >"$work/out" 2>"$work/err" \
  || fail "run --profile exited $?"
has "^kept [0-9]+ blocks" "$work/out" "the probe's output"
hasnt "once libpoolmalloc supports" "$work/err" "the old --profile note"
has "^   allocation sites: [0-9,]+ samples, one per 512 KiB; top by bytes allocated:$" "$work/err" \
  "run summary: sites"
for f in allocate_half allocate_thirty allocate_twenty_and_leak; do
  has "^     [0-9.]+ [KMG]iB \\([0-9.]+%\\) +$f" "$work/err" "run summary: $f among the top three"
done
has "^   leaks: 1 site with sampled blocks live at exit:$" "$work/err" "run summary: leaks"
has "^     [0-9.]+ MiB in ~[0-9,]+ blocks \\(100\\.0%\\) +allocate_twenty_and_leak" "$work/err" \
  "run summary: the leak"
has "details: poolmalloc report --module $pprobe $work/p.jsonl" "$work/err" \
  "run summary: the report is told where the program is"
if ((debug)); then
  has "allocate_half \\(profile_probe\\.c:[0-9]+\\)" "$work/err" "run summary: file:line"
fi
"$python" - "$work/err" <<'PY' || fail "run summary: shares"
import re, sys
text = open(sys.argv[1]).read()
expected = {"allocate_half": 50, "allocate_thirty": 30, "allocate_twenty_and_leak": 20}
for name, share in expected.items():
    m = re.search(r"^     \S+ \S+ \(([0-9.]+)%\) +" + name + r"\b", text, re.M)
    assert m and abs(float(m.group(1)) - share) <= 5, (name, m and m.group(1))
PY
echo "profile: run --profile: the top three sites and the leak"

# ---- report: text ---------------------------------------------------------------
"$tool" report --module "$pprobe" "$work/p.jsonl" >"$work/report.txt" || fail "report exited $?"
has "^Allocation sites$" "$work/report.txt" "section"
has "^  Top sites by live bytes$" "$work/report.txt" "section"
has "^  Top sites by bytes allocated$" "$work/report.txt" "section"
has "^Leak report: sites whose sampled blocks were still live at exit$" "$work/report.txt" "section"
hasnt "^  file:line: .*stats_profile_probe" "$work/report.txt" "no note about the probe"
"$python" - "$work/report.txt" "$debug" "$lines" <<'PY' || fail "the text report's sites"
import re, sys
text = open(sys.argv[1]).read()
debug = sys.argv[2] == "1"
line_of = dict(kv.split("=") for kv in sys.argv[3].split(","))

def sites(title, until):
    part = text.split(title, 1)[1].split(until, 1)[0]
    out = []
    for block in re.split(r"^ +\d+\. ", part, flags=re.M)[1:]:
        rows = block.splitlines()
        share = re.search(r"allocated \(([0-9.]+)%\)", block)
        live = re.search(r"([0-9.]+ \S+) live \(([0-9.]+)%\)", block)
        frame = rows[2].strip()
        where = rows[3].strip() if len(rows) > 3 and rows[3].startswith("          at ") else ""
        if " at " in frame:
            frame, where = frame.split(" at ", 1)[0], "at " + frame.split(" at ", 1)[1]
        out.append((frame, float(share.group(1)), live, where))
    return out

by_alloc = sites("  Top sites by bytes allocated\n", "\nLeak report")
names = {"allocate_half": 50, "allocate_thirty": 30, "allocate_twenty_and_leak": 20}
seen = {}
for frame, share, live, where in by_alloc:
    for name in names:
        if f"!{name}+0x" in frame:
            seen[name] = share
            if debug:
                assert re.fullmatch(r"at \S*profile_probe\.c:" + line_of[name], where), (name, where)
assert set(seen) == set(names), seen
for name, share in names.items():
    print(f"profile: text: {name}: {seen[name]}% of the bytes allocated (expected {share}%)")
    assert abs(seen[name] - share) <= 5, name
assert [n for n in seen] == list(names), f"not largest first: {seen}"
leaks = sites("Leak report: sites whose sampled blocks were still live at exit\n", "\n\n")
assert leaks and "!allocate_twenty_and_leak+0x" in leaks[0][0], leaks[:1]
assert leaks[0][2] and float(leaks[0][2].group(2)) > 95, leaks[0]
if debug:
    assert "profile_probe.c:" + line_of["allocate_twenty_and_leak"] in leaks[0][3], leaks[0]
by_live = sites("  Top sites by live bytes\n", "\n  Top sites by bytes allocated")
assert by_live and "!allocate_twenty_and_leak+0x" in by_live[0][0], by_live[:1]
PY
echo "profile: report: the three sites within 5 points, the leak first$( ((debug)) && echo ', file:line')"

# ---- report --json, checked against the file ------------------------------------
"$tool" report --json --module "$pprobe" "$work/p.jsonl" >"$work/report.json"
"$python" - "$work/report.json" "$work/p.jsonl" "$debug" "$lines" "$pprobe" <<'PY' || fail "--json"
import json, sys
report = json.load(open(sys.argv[1]))
record = [json.loads(l) for l in open(sys.argv[2]) if l.strip()][-1]
debug = sys.argv[3] == "1"
line_of = dict(kv.split("=") for kv in sys.argv[4].split(","))
p, rp = report["profile"], record["profile"]
assert p["snapshot"]["seq"] == record["seq"] and p["snapshot"]["reason"] == "exit"
for k in ("rate_bytes", "samples", "dropped", "sites"):
    assert p[k] == rp[k], k
assert p["sites"] == 3 and p["totals"]["alloc_estimated"] is False
total = sum(s["alloc_bytes"] for s in rp["top_allocated"])
assert p["totals"]["alloc_bytes"] == total
for mine, theirs in zip(p["top_allocated"], rp["top_allocated"]):
    for k in ("live_bytes", "live_count", "alloc_bytes", "alloc_count", "samples"):
        assert mine[k] == theirs[k], k
    assert abs(mine["alloc_share"] - theirs["alloc_bytes"] / total) < 1e-5
    assert [f["frame"] for f in mine["frames"]] == theirs["frames"]
    assert [int(f["address"], 16) for f in mine["frames"]] == [int(a, 16) for a in theirs["addresses"]]
    name = theirs["frames"][0].split("!")[1].split("+")[0]
    first = mine["frames"][0]
    if debug:
        assert first["file"].endswith("/profile_probe.c") and str(first["line"]) == line_of[name], first
        assert first["function"] == name and first["module_path"] == sys.argv[5], first
        assert mine["label"] == f"{name} (profile_probe.c:{line_of[name]})", mine["label"]
assert len(p["leaks"]["sites"]) == len(rp["leaks"]) == 1
assert p["leaks"]["sites"][0]["frames"][0]["frame"].split("!")[1].startswith("allocate_twenty_and_leak+")
assert p["resolution"] == {"enabled": True, "notes": ""}, p["resolution"]
PY
echo "profile: --json: the record's sites, shares, resolved frames"

# The first snapshot's tables; the leak report is still the exit snapshot's.
if (($(wc -l <"$work/p.jsonl") > 1)); then
  "$tool" report --json --module "$pprobe" "$work/p.jsonl@first" >"$work/first.json"
  "$python" -c "
import json; p = json.load(open('$work/first.json'))['profile']
assert p['snapshot']['seq'] == 1 and p['leaks']['snapshot']['reason'] == 'exit', p['snapshot']" \
    || fail "@first: the leak report of the exit snapshot"
fi

# ---- report --html: the chart -------------------------------------------------------
"$tool" report --module "$pprobe" --html "$work/p.html" "$work/p.jsonl" 2>/dev/null
"$python" - "$work/p.html" "$debug" <<'PY' || fail "--html"
import re, sys
html = open(sys.argv[1]).read()
chart = html.split('<svg class="chart" id="chart-sites"', 1)[1].split("</svg>", 1)[0]
labels = re.findall(r'<text class="site-label"[^>]*>([^<]*)<title>', chart)
assert len(labels) == 3, labels
for name in ("allocate_half", "allocate_thirty", "allocate_twenty_and_leak"):
    assert any(l.startswith(name) for l in labels), (name, labels)
if sys.argv[2] == "1":
    assert all("profile_probe.c:" in l for l in labels), labels
assert chart.count('class="bar site-live"') == 3 and chart.count('class="bar site-alloc"') == 3
assert 'id="sites-leaks"' in html
PY
echo "profile: --html: the chart names the three functions"

# ---- when resolution cannot be done ---------------------------------------------------
"$tool" report --no-resolve "$work/p.jsonl" >"$work/raw.txt"
hasnt " at [^ ]+:[0-9]+$" "$work/raw.txt" "--no-resolve"
has "^        stats_profile_probe!allocate_half\\+0x[0-9a-f]+$" "$work/raw.txt" "--no-resolve: raw frames"
# Not in $PATH, not next to the stats file: named in a note; in $PATH: found.
(cd "$work" && "$tool" report "$work/p.jsonl" >"$work/lost.txt")
has "^  file:line: not found on this machine: stats_profile_probe \\(name the file" "$work/lost.txt" \
  "the probe not found"
has "^        stats_profile_probe!allocate_half\\+0x[0-9a-f]+$" "$work/lost.txt" "not found: raw frames"
if ((debug)); then
  PATH="$(dirname "$pprobe"):$PATH" "$tool" report "$work/p.jsonl" >"$work/path.txt"
  has "^          at .*profile_probe\\.c:[0-9]+$" "$work/path.txt" "a program found in \$PATH"
fi
# Another build under the same name: refused.
mkdir "$work/other" && cp "$frag" "$work/other/stats_profile_probe"
"$tool" report --module "$work/other" "$work/p.jsonl" >"$work/other.txt"
has "found, but not the build that ran: stats_profile_probe" "$work/other.txt" "another build"
hasnt "profile_probe\\.c|frag\\.c" "$work/other.txt" "another build: no file:line from it"
# No addr2line at all.
PATH=/nonexistent "$tool" report --module "$pprobe" "$work/p.jsonl" >"$work/none.txt" \
  || fail "report without addr2line exited $?"
has "cannot run addr2line \\(No such file or directory; Debian:" "$work/none.txt" "no addr2line"
# An addr2line that hangs: killed at the deadline, with what it started.
mkdir "$work/slow"
printf '#!/bin/sh\nsleep 300 &\necho $! >"%s/slow/pid"\nwait\n' "$work" >"$work/slow/addr2line"
chmod +x "$work/slow/addr2line"
start=$(date +%s)
PATH="$work/slow:$PATH" "$tool" report --resolve-timeout 1 --module "$pprobe" "$work/p.jsonl" \
  >"$work/slow.txt" || fail "report with a slow addr2line exited $?"
(($(date +%s) - start <= 5)) || fail "a slow addr2line held the report $(($(date +%s) - start)) s"
has "addr2line took over 1 s on" "$work/slow.txt" "a slow addr2line"
# Gone, or a zombie (its new parent may be slow to reap it), within 5 s:
# a process killed on a loaded machine may wait a while to run its exit.
slow_pid=$(cat "$work/slow/pid" 2>/dev/null || true)
for _ in $(seq 50); do
  state=$( [[ -n "$slow_pid" ]] && awk '{print $3}' "/proc/$slow_pid/stat" 2>/dev/null || true)
  [[ -n "$state" && "$state" != Z ]] || break
  sleep 0.1
done
if [[ -n "$state" && "$state" != Z ]]; then
  kill "$slow_pid"
  fail "the slow addr2line's child outlived the deadline (state $state)"
fi
echo "profile: unresolved frames: --no-resolve, not found, another build, no addr2line, a hang"

# ---- code built with -flto ---------------------------------------------------------
if [[ -n "$lto_probe" ]] && ((debug)); then
  "$tool" run -q --profile --stats "$work/lto.jsonl" -- "$lto_probe" >/dev/null \
    || fail "run --profile of the -flto probe exited $?"
  half_line=$(malloc_line allocate_half)
  # binutils' addr2line alone: the file, or the note that says who would find it.
  mkdir "$work/binutils"
  ln -s "$(command -v addr2line)" "$work/binutils/addr2line"
  PATH="$work/binutils" "$tool" report --module "$lto_probe" "$work/lto.jsonl" >"$work/lto-binutils.txt"
  if ! grep -Eq "at \S*profile_probe\.c:$half_line\$" "$work/lto-binutils.txt"; then
    has "at \S*<artificial>:$half_line\$" "$work/lto-binutils.txt" "-flto, binutils: the line"
    has "addr2line names the file of code built with -flto" "$work/lto-binutils.txt" \
      "-flto, binutils: the note"
    has "llvm-addr2line \\(Debian: llvm\\)" "$work/lto-binutils.txt" "-flto, binutils: the note"
  fi
  # With llvm-addr2line (tools/bootstrap installs it for the tests): the file.
  command -v llvm-addr2line >/dev/null || fail "no llvm-addr2line (Debian: llvm)"
  "$tool" report --module "$lto_probe" "$work/lto.jsonl" >"$work/lto.txt"
  has "at \S*profile_probe\.c:$half_line\$" "$work/lto.txt" "-flto: the file and line"
  hasnt "<artificial>" "$work/lto.txt" "-flto: no <artificial>"
  echo "profile: a program built with -flto: its frames' files"
fi

# ---- without profiling --------------------------------------------------------------
"$tool" run -q --stats "$work/plain.jsonl" -- "$frag" exit 0 >/dev/null
"$tool" report "$work/plain.jsonl" >"$work/plain.txt"
has "^  not profiled: POOLMALLOC_PROFILE=1" "$work/plain.txt" "no profile"
"$tool" report --json "$work/plain.jsonl" | "$python" -c "
import json, sys; assert json.load(sys.stdin)['profile'] is None" || fail "--json without profile"
echo "profile: ok"
