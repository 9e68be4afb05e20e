# lib.sh — shared helpers of the integration tests, sourced by every script.
# Owns: running a real program plain and with libpoolmalloc.so preloaded,
# comparing the two runs, and reading poolmalloc's stats reports.
# Never: touches anything outside its own mktemp directory and the processes
# of its own runs, or skips a test silently (a missing program is a failure
# that names its Debian package).
#
# The check every script makes (pm_check):
#   1. run CMD plain:   no LD_PRELOAD, no POOLMALLOC_STATS;
#   2. run CMD preload: LD_PRELOAD=$PM_LIB POOLMALLOC_STATS=<dir>/stats.%p
#      POOLMALLOC_STATS_FORMAT=json, so every process of the run (children
#      inherit all three) appends its snapshots to its own file: JSON Lines,
#      one record per write(2), every interval and at exit (README, "Stats";
#      docs/stats-schema.md);
#   3. the exit codes must be equal (and 0 unless the script says otherwise),
#      stdout must be equal after the script's normalizer, and stderr too
#      unless the script turns that off (PM_COMPARE_STDERR=0); no process of
#      the preload run may outlive it (2 s grace) unless the plain run's
#      did too (every process of a run carries PM_INTEGRATION_RUN=<its dir>
#      in its environment; leftovers are killed either way);
#   4. the small requests served (small_allocated_total: blocks handed out
#      from pools), summed over the processes of the preload run, must reach
#      the script's minimum: this is the proof that poolmalloc, not glibc,
#      served the program. The JSON record is read rather than the text
#      report because it is the one made for tools: its field names are a
#      versioned schema, the text layout is for people and may change.
#
# Environment:
#   PM_LIB          the library to preload (CTest sets it from CMake);
#                   default: <repo>/build/libpoolmalloc.so
#   PM_RUN_TIMEOUT  seconds one run may take before it is killed and the test
#                   fails as a hang (scripts set a default)
#   PM_KEEP_TMP=1   keep the temp directory of a failed test for inspection
#
# Each run has its own empty working directory, <tmp>/<name>.<mode>/work, so
# programs that write files do not see each other's. The run directory's path
# is replaced by <RUN> in both outputs before comparing.

set -euo pipefail

# shellcheck disable=SC2034 # PM_SELF and PM_SERVED are for the scripts
PM_SELF=$(readlink -f "$0")
PM_INTEGRATION_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PM_TEST_NAME=${PM_TEST_NAME:-$(basename "$0" .sh)}
PM_COMPARE_STDERR=${PM_COMPARE_STDERR:-1}
PM_RUN_TIMEOUT_FROM_ENV=${PM_RUN_TIMEOUT:-}
PM_RUN_TIMEOUT=240
PM_TMP=

pm_log() { printf '[%s] %s\n' "$PM_TEST_NAME" "$*" >&2; }

pm_fail() {
    printf '[%s] FAIL: %s\n' "$PM_TEST_NAME" "$*" >&2
    exit 1
}

# pm_require_cmd COMMAND DEBIAN_PACKAGE
pm_require_cmd() {
    command -v "$1" >/dev/null 2>&1 ||
        pm_fail "'$1' is not installed: it comes from the Debian package '$2'" \
            "(apt-get install $2; the README's test command installs it)"
}

pm_cleanup() {
    local rc=$?
    if [[ -n $PM_TMP && -d $PM_TMP ]]; then
        if [[ $rc -ne 0 && ${PM_KEEP_TMP:-0} == 1 ]]; then
            pm_log "kept $PM_TMP for inspection"
        else
            # A straggler may still be appending a snapshot: try again.
            rm -rf "$PM_TMP" 2>/dev/null || { sleep 1; rm -rf "$PM_TMP"; } ||
                pm_log "warning: could not remove $PM_TMP"
        fi
    fi
    return "$rc"
}

pm_locate_lib() {
    local lib=${PM_LIB:-}
    if [[ -z $lib ]]; then
        lib=$PM_INTEGRATION_DIR/../../build/libpoolmalloc.so
        pm_log "PM_LIB is not set (ctest sets it); trying $lib"
    fi
    [[ -f $lib ]] || pm_fail "library not found: $lib" \
        "(build it with cmake, or set PM_LIB=/path/to/libpoolmalloc.so)"
    # LD_PRELOAD needs an absolute path: a relative one would be resolved
    # against the working directory of every process the program starts.
    PM_LIB=$(readlink -f "$lib")
    # ld.so only warns and carries on with glibc when a preload cannot be
    # loaded; say so here rather than as a mysterious "served 0" later.
    local err
    err=$(LD_PRELOAD=$PM_LIB /bin/true 2>&1) ||
        pm_fail "/bin/true fails with LD_PRELOAD=$PM_LIB: $err"
    [[ -z $err ]] || pm_fail "LD_PRELOAD=$PM_LIB /bin/true wrote to stderr: $err"
}

# pm_init [RUN_TIMEOUT_SECONDS]: every script calls this once before its
# first run; the timeout is the script's default for PM_RUN_TIMEOUT.
pm_init() {
    PM_RUN_TIMEOUT=${PM_RUN_TIMEOUT_FROM_ENV:-${1:-240}}
    pm_require_cmd timeout coreutils
    pm_locate_lib
    PM_TMP=$(mktemp -d "${TMPDIR:-/tmp}/pm-integration-$PM_TEST_NAME.XXXXXX")
    trap pm_cleanup EXIT
    trap 'exit 130' INT TERM
    pm_log "library: $PM_LIB"
}

pm_now_ms() { date +%s%3N; }

pm_signal_note() { # exit code -> " (killed by SIGxxx)" or ""
    local rc=$1
    if [[ $rc -eq 124 ]]; then
        printf ' (timed out after %ss: a hang or deadlock?)' "$PM_RUN_TIMEOUT"
    elif [[ $rc -gt 128 && $rc -lt 160 ]]; then
        printf ' (killed by SIG%s)' "$(kill -l $((rc - 128)) 2>/dev/null || echo '?')"
    fi
}

# pm_run MODE NAME CMD...
# MODE is plain or preload. Runs CMD in the run's own empty working
# directory; leaves <dir>/stdout, <dir>/stderr, <dir>/rc, <dir>/ms and, for
# preload, the reports in <dir>/stats/. Never fails itself: pm_compare judges.
pm_run() {
    local mode=$1 name=$2
    shift 2
    local dir=$PM_TMP/$name.$mode
    rm -rf "$dir"
    mkdir -p "$dir/work" "$dir/stats"
    # A program may run children as another user (test_subprocess runs some
    # as nobody): let them write their stats and reach the working directory.
    chmod a+x "$PM_TMP" "$dir"
    chmod 1777 "$dir/stats" "$dir/work"
    local -a envcmd
    case $mode in
    plain) envcmd=(env -u LD_PRELOAD -u POOLMALLOC_STATS -u POOLMALLOC_STATS_FORMAT) ;;
    preload)
        envcmd=(env LD_PRELOAD="$PM_LIB" POOLMALLOC_STATS="$dir/stats/stats.%p"
            POOLMALLOC_STATS_FORMAT=json)
        ;;
    *) pm_fail "pm_run: unknown mode '$mode'" ;;
    esac
    # PM_INTEGRATION_RUN marks every process of the run, for pm_end_strays.
    envcmd+=(PM_INTEGRATION_RUN="$dir")
    local start rc=0
    start=$(pm_now_ms)
    # timeout puts the command in its own process group and kills the whole
    # group, so a hung child of the program goes too.
    (cd "$dir/work" &&
        exec timeout -k 10 "$PM_RUN_TIMEOUT" "${envcmd[@]}" "$@") \
        >"$dir/stdout" 2>"$dir/stderr" </dev/null || rc=$?
    echo "$rc" >"$dir/rc"
    echo $(($(pm_now_ms) - start)) >"$dir/ms"
    pm_end_strays "$dir"
}

# pm_strays DIR: the pids of live processes of the run in DIR (found by the
# marker in their environment; a thread's, too, since a process whose main
# thread has exited shows its environment only under task/).
pm_strays() {
    grep -a -l -s -F "PM_INTEGRATION_RUN=$1" /proc/[0-9]*/environ \
        /proc/[0-9]*/task/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | sort -un || true
}

# pm_end_strays DIR: processes of the run still alive when it returned. A
# few may still be on their way out: give them 2 s. The rest are recorded in
# DIR/strays (pm_compare judges) and killed, so no test leaves processes
# behind; they are the run's own, named by the marker only it set.
pm_end_strays() {
    local dir=$1 pids p
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        pids=$(pm_strays "$dir")
        [[ -z $pids ]] && break
        sleep 0.2
    done
    : >"$dir/strays"
    for p in $pids; do
        local what
        what=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-100 || true)
        [[ -n $what ]] || what="[$(cat "/proc/$p/comm" 2>/dev/null || true)], $(
            grep -s '^Threads:' "/proc/$p/status" | tr -s '\t ' ' ' || true)"
        printf '%s %s\n' "$p" "$what" >>"$dir/strays"
        kill -9 "$p" 2>/dev/null || true
    done
}

pm_run_dir() { echo "$PM_TMP/$1.$2"; }
pm_run_rc() { cat "$PM_TMP/$1.$2/rc"; }
pm_run_secs() { awk '{ printf "%.1f", $1 / 1000 }' "$PM_TMP/$1.$2/ms"; }

# pm_tail FILE: the end of an output file, indented, for failure messages.
pm_tail() {
    if [[ -s $1 ]]; then
        tail -n "${2:-25}" "$1" | sed 's/^/    | /'
    else
        echo "    (empty)"
    fi
}

# pm_normalized NAME MODE STREAM NORMALIZER: the run's stdout or stderr with
# the run directory replaced by <RUN>, through NORMALIZER (a command or shell
# function, stdin to stdout).
pm_normalized() {
    local dir
    dir=$(pm_run_dir "$1" "$2")
    local re
    re=$(printf '%s' "$dir" | sed 's/[][\.*^$|/]/\\&/g')
    sed "s/$re/<RUN>/g" "$dir/$3" | "$4"
}

# pm_compare NAME [NORMALIZER [EXPECTED_RC]]
# EXPECTED_RC: the exit code the plain run must have ("any" for none).
pm_compare() {
    local name=$1 norm=${2:-cat} expect=${3:-0}
    local pdir qdir prc qrc
    pdir=$(pm_run_dir "$name" plain)
    qdir=$(pm_run_dir "$name" preload)
    prc=$(cat "$pdir/rc")
    qrc=$(cat "$qdir/rc")
    if [[ $expect != any && $prc -ne $expect ]]; then
        pm_log "plain run stderr:"
        pm_tail "$pdir/stderr" >&2
        pm_fail "$name: the PLAIN run (no poolmalloc) exited $prc$(pm_signal_note "$prc")," \
            "expected $expect: the test or its environment is broken, not the allocator"
    fi
    if [[ $prc -ne $qrc ]]; then
        pm_log "preload run stderr:"
        pm_tail "$qdir/stderr" >&2
        pm_log "preload run stdout:"
        pm_tail "$qdir/stdout" 10 >&2
        pm_fail "$name: exit code $qrc$(pm_signal_note "$qrc") under poolmalloc," \
            "$prc without it"
    fi
    # A process of the run outliving it only under poolmalloc: e.g. one kept
    # alive by a thread the allocator started after its own threads ended.
    if [[ -s $qdir/strays && ! -s $pdir/strays ]]; then
        pm_log "processes of the preload run still alive 2 s after it ended (killed):"
        sed 's/^/    | /' "$qdir/strays" >&2
        pm_fail "$name: under poolmalloc, $(wc -l <"$qdir/strays") process(es) of the run" \
            "outlived it; without poolmalloc none did"
    fi
    local stream
    for stream in stdout stderr; do
        [[ $stream == stderr && $PM_COMPARE_STDERR != 1 ]] && continue
        pm_normalized "$name" plain "$stream" "$norm" >"$PM_TMP/$name.plain.$stream.norm"
        pm_normalized "$name" preload "$stream" "$norm" >"$PM_TMP/$name.preload.$stream.norm"
        if ! cmp -s "$PM_TMP/$name.plain.$stream.norm" "$PM_TMP/$name.preload.$stream.norm"; then
            pm_log "$stream differs (--- plain, +++ preload), first 60 lines of the diff:"
            diff -u "$PM_TMP/$name.plain.$stream.norm" "$PM_TMP/$name.preload.$stream.norm" |
                head -n 60 | sed 's/^/    /' >&2 || true
            [[ $stream == stdout ]] && { pm_log "preload run stderr:"; pm_tail "$qdir/stderr" >&2; }
            pm_fail "$name: $stream under poolmalloc differs from $stream without it"
        fi
    done
    # Whatever stderr is compared or not, a line naming poolmalloc that the
    # plain run did not print is the allocator (or ld.so about it) talking.
    local extra
    extra=$(grep -i 'poolmalloc' "$qdir/stderr" | grep -v -x -F -f "$pdir/stderr" | head -n 10 || true)
    [[ -z $extra ]] || pm_fail "$name: under poolmalloc stderr has:"$'\n'"$extra"
}

# pm_served_sum DIR: prints "<served> <records> <files>" for the JSON
# Lines stats files in DIR: <served> sums, over the files (one per process,
# by %p), the largest small_allocated_total in the file. A process appends
# a snapshot of its cumulative counters every interval and at exit, so
# summing every record would count a block once per snapshot; and a
# process ended by _exit() has only its interval snapshots, if any.
# Fails if a line is not a whole record: each is written with one write(2).
# The one exception is a last line without its newline: a process killed
# (SIGKILL) during that write, which the kernel cuts at a page boundary;
# readers skip it (docs/stats-schema.md), and so does this check.
pm_served_sum() {
    local dir=$1 f bad
    for f in "$dir"/*; do
        [[ -s $f ]] || continue
        bad=$(head -n "$(wc -l <"$f")" "$f" |
            grep -n -v -E '^\{"schema":[0-9]+,.*"small_allocated_total":[0-9]+(,.*)?\}$' |
            cut -c1-300 | head -n 3 || true)
        [[ -z $bad ]] || {
            pm_log "a line of $f is not a whole JSON stats record with small_allocated_total:"
            printf '%s\n' "$bad" | sed 's/^/    | /' >&2
            pm_fail "malformed stats record in $f (POOLMALLOC_STATS_FORMAT=json," \
                "docs/stats-schema.md)"
        }
    done
    # %.0f, not %d: mawk's %d saturates at 2^31 - 1.
    find "$dir" -type f -exec awk '
            FNR == 1 { file++ }
            match($0, /"small_allocated_total":[0-9]+/) {
                n++
                v = substr($0, RSTART + 24, RLENGTH - 24) + 0
                if (v > best[file] + 0) best[file] = v
            }
            END {
                for (f in best) sum += best[f]
                printf "%.0f %d %d\n", sum, n, file
            }' {} + 2>/dev/null | awk '
            { sum += $1; n += $2; files += $3 }
            END { printf "%.0f %d %d\n", sum, n, files }'
}

# pm_check_served NAME MIN: the preload run's reports prove >= MIN small
# requests were served from pools.
pm_check_served() {
    local name=$1 min=$2 dir sum reports files
    dir=$(pm_run_dir "$name" preload)/stats
    read -r sum reports files < <(pm_served_sum "$dir")
    if [[ $reports -eq 0 ]]; then
        pm_fail "$name: no stats record in $dir ($files files) although" \
            "POOLMALLOC_STATS=$dir/stats.%p: was libpoolmalloc.so loaded, and" \
            "does it write its report at exit?"
    fi
    if awk -v s="$sum" -v m="$min" 'BEGIN { exit !(s + 0 < m + 0) }'; then
        pm_fail "$name: poolmalloc served only $sum small requests over $reports" \
            "records (need >= $min): the program's allocations did not reach the pools"
    fi
    PM_SERVED=$sum
    PM_REPORTS=$reports
    PM_REPORT_FILES=$files
}

# pm_check NAME MIN_SERVED NORMALIZER -- CMD...
# The whole check of one workload: both runs, the comparison, the served
# count. NORMALIZER is applied to stdout (and stderr); use cat for none.
pm_check() {
    local name=$1 min=$2 norm=$3
    shift 3
    [[ ${1-} == -- ]] && shift
    pm_log "$name: plain run: $*"
    pm_run plain "$name" "$@"
    pm_log "$name: preload run ($(pm_run_secs "$name" plain)s plain)"
    pm_run preload "$name" "$@"
    pm_compare "$name" "$norm" 0
    pm_check_served "$name" "$min"
    pm_log "ok: $name: same output; plain $(pm_run_secs "$name" plain)s," \
        "preload $(pm_run_secs "$name" preload)s; $PM_SERVED small requests" \
        "served by $PM_REPORT_FILES processes ($PM_REPORTS records)"
}

# pm_workload_mode "$@": each script runs its own workload by re-executing
# itself as `bash script --workload ...`, so the shell pipeline of the
# workload runs under the preload too. Returns 0 (true) in that mode.
pm_is_workload() { [[ ${1-} == --workload ]]; }

# pm_check_stats_sinks NAME CMD...: the POOLMALLOC_STATS contract, on a
# program whose stdout is deterministic and stderr empty (pm_check must have
# run NAME first, with the same CMD):
#   - preloaded without POOLMALLOC_STATS, nothing is written: stdout as the
#     plain run's, stderr empty, no file appears in the working directory;
#   - POOLMALLOC_STATS=stderr writes the text report to stderr (it opens
#     "poolmalloc <version> stats"), and in JSON a record serving > 0.
pm_check_stats_sinks() {
    local name=$1
    shift
    local dir=$PM_TMP/$name.sinks plain_out mode rc
    plain_out=$(pm_run_dir "$name" plain)/stdout
    rm -rf "$dir"
    mkdir -p "$dir/quiet" "$dir/text" "$dir/json"
    for mode in quiet text json; do
        local -a envcmd=(env LD_PRELOAD="$PM_LIB" POOLMALLOC_STATS=stderr)
        case $mode in
        quiet) envcmd=(env -u POOLMALLOC_STATS -u POOLMALLOC_STATS_FORMAT LD_PRELOAD="$PM_LIB") ;;
        text) envcmd+=(POOLMALLOC_STATS_FORMAT=text) ;;
        json) envcmd+=(POOLMALLOC_STATS_FORMAT=json) ;;
        esac
        rc=0
        (cd "$dir/$mode" && exec timeout -k 10 "$PM_RUN_TIMEOUT" "${envcmd[@]}" "$@") \
            >"$dir/$mode.out" 2>"$dir/$mode.err" </dev/null || rc=$?
        [[ $rc -eq 0 ]] || {
            pm_tail "$dir/$mode.err" >&2
            pm_fail "$name: preloaded with ${envcmd[*]:1}: exit code $rc$(pm_signal_note "$rc")"
        }
        cmp -s "$dir/$mode.out" "$plain_out" ||
            pm_fail "$name: preloaded with ${envcmd[*]:1}: stdout differs from the plain run's"
    done

    [[ ! -s $dir/quiet.err ]] || {
        pm_tail "$dir/quiet.err" >&2
        pm_fail "$name: preloaded without POOLMALLOC_STATS, the program wrote to stderr (above)"
    }
    local stray
    stray=$(find "$dir/quiet" -mindepth 1 -printf '%P ' | cut -c1-200)
    [[ -z $stray ]] || pm_fail "$name: preloaded without POOLMALLOC_STATS," \
        "files appeared in the working directory: $stray"

    grep -q '^poolmalloc [0-9][0-9.]* stats' "$dir/text.err" || {
        pm_tail "$dir/text.err" >&2
        pm_fail "$name: POOLMALLOC_STATS=stderr: no text report on stderr"
    }
    mkdir -p "$dir/json-report"
    cp "$dir/json.err" "$dir/json-report/report"
    local sum reports files
    read -r sum reports files < <(pm_served_sum "$dir/json-report")
    [[ $reports -ge 1 && $sum != 0 ]] || {
        pm_tail "$dir/json.err" >&2
        pm_fail "$name: POOLMALLOC_STATS=stderr POOLMALLOC_STATS_FORMAT=json: no record" \
            "serving > 0 small requests on stderr"
    }
    pm_log "ok: $name: no report without POOLMALLOC_STATS; with POOLMALLOC_STATS=stderr" \
        "a text report, and a JSON record of $sum served"
}
