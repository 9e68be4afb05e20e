#!/usr/bin/env bash
# python_regrtest.sh — CPython's own regression tests under poolmalloc.
# PYTHONMALLOC=malloc makes CPython send every allocation, objects included,
# to malloc instead of its own obmalloc pools, so poolmalloc sees them all.
# regrtest runs the tests in 2 worker processes, which inherit LD_PRELOAD
# (as do the children test_subprocess starts). Every test must end with the
# same outcome plain and preloaded (passed / failed / skipped / ...), and so
# must the overall "Tests result"; a plain run that is not SUCCESS is only a
# warning, since an outcome this machine gives anyway is no allocator bug.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The tests the brief requires, then more that churn objects, threads,
# processes, files and compressors: 100 modules, about 100 s a run on 2
# cores. Left out as slow for CI: test_concurrent_futures (2 min 20 s) and
# test_signal (47 s, mostly sleeping). PM_PYTHON_TESTS=all runs CPython's
# whole suite instead (the long run: 20-30 min on 2 cores; run this script
# directly, with PM_LIB set, since its CTest entry stops at 20 min), or name
# others.
PM_PYTHON_TESTS=${PM_PYTHON_TESTS:-"test_dict test_list test_set test_unicode test_json test_re
    test_collections test_itertools test_thread test_subprocess
    test_tuple test_bytes test_pickle test_threading test_weakref test_gc test_deque
    test_ordered_dict test_functools test_struct test_decimal test_email
    test_array test_bisect test_heapq test_string test_format test_fstring test_long
    test_float test_int test_math test_statistics test_random test_copy test_enum
    test_dataclasses test_typing test_ast test_compile test_grammar test_class test_descr
    test_generators test_iter test_sort test_textwrap test_difflib test_csv test_io
    test_memoryview test_codecs test_zlib test_hashlib test_xml_etree test_minidom test_html
    test_urlparse test_configparser test_argparse test_logging test_queue test_marshal
    test_copyreg test_contextlib test_inspect test_traceback test_tokenize test_unittest
    test_shelve test_dbm test_zipfile test_tarfile test_gzip test_bz2 test_lzma test_base64
    test_binascii test_datetime test_time test_calendar test_fractions test_operator
    test_slice test_userdict test_userlist test_userstring test_defaultdict test_exceptions
    test_scope test_unpack test_with test_coroutines test_asyncgen test_select test_mmap
    test_os test_shutil test_tempfile test_glob test_fnmatch test_pathlib"}

# find_python: Debian's /usr/bin/python3 first (its tests come from
# libpython3.11-testsuite), then any python3 whose test package is there.
# Prints the real interpreter (sys.executable), not a wrapper such as a
# pyenv shim, so the preload run measures python and not a shell script.
find_python() {
    local c
    for c in ${PM_PYTHON:-} /usr/bin/python3 /usr/bin/python3.11 "$(command -v python3 || true)"; do
        [[ -n $c && -x $c ]] || continue
        if "$c" -c 'import test.libregrtest, test.test_dict' >/dev/null 2>&1; then
            "$c" -c 'import sys; print(sys.executable)'
            return 0
        fi
    done
    return 1
}

# The per-test outcome lines of regrtest, e.g.
#   0:00:02 load avg: 0.36 [ 5/22] test_json passed
#   0:00:14 load avg: 0.35 [18/22/1] test_sqlite3 failed (uncaught exception)
#   0:00:27 load avg: 0.38 [22/22] test_subprocess passed (24.1 sec) -- running: ...
# reduced to "test_json passed" (durations such as "(1 min)", "(1 min 3 sec)"
# and "(350 ms)" vary from run to run), sorted (with -j2 the order varies), plus
# the final "Tests result:" line.
outcomes() {
    sed -n -E \
        -e 's/^.*\[ *[0-9]+\/[0-9]+(\/[0-9]+)?\] (test_[A-Za-z0-9_.]+) (.*)$/\2 \3/p' \
        -e 's/^(Tests result: .*)$/~\1/p' |
        sed -E -e 's/ -- running: .*$//' \
            -e 's/ \(([0-9]+ min|([0-9]+ min )?[0-9.]+ (sec|ms))\)$//' |
        LC_ALL=C sort
}

python=$(find_python) ||
    pm_fail "no python3 with CPython's test package (import test.test_dict fails):" \
        "install the Debian package 'libpython3.11-testsuite' for /usr/bin/python3" \
        "(the README's test command installs it)"
if [[ $PM_PYTHON_TESTS == all ]]; then
    tests=() # regrtest with no names runs them all
    pm_init 7200
else
    read -r -a tests <<<"${PM_PYTHON_TESTS//$'\n'/ }"
    pm_init 600
fi
pm_log "python: $python ($("$python" --version 2>&1))"

# regrtest writes its scratch directories under TMPDIR; --timeout makes a
# hung test dump its stack and fail instead of waiting for our timeout.
mkdir -p "$PM_TMP/tmp"
cmd=(env PYTHONMALLOC=malloc PYTHONHASHSEED=0 TMPDIR="$PM_TMP/tmp"
    "$python" -m test -j2 --timeout 200 "${tests[@]}")
PM_COMPARE_STDERR=0 # timings and load averages

pm_log "python_regrtest: plain run of $( ((${#tests[@]})) && echo "${#tests[@]}" || echo all) tests"
pm_run plain regrtest "${cmd[@]}"
pm_log "python_regrtest: preload run ($(pm_run_secs regrtest plain)s plain)"
pm_run preload regrtest "${cmd[@]}"

plain_out=$(pm_run_dir regrtest plain)/stdout
preload_out=$(pm_run_dir regrtest preload)/stdout
outcomes <"$plain_out" >"$PM_TMP/outcomes.plain"
outcomes <"$preload_out" >"$PM_TMP/outcomes.preload"
expected=${#tests[@]}
((expected > 0)) || expected=$(grep -c '^test_' "$PM_TMP/outcomes.plain")
if [[ $(grep -c '^test_' "$PM_TMP/outcomes.plain") -ne $expected || $expected -eq 0 ]]; then
    pm_log "plain run output:"
    pm_tail "$plain_out" 40 >&2
    pm_tail "$(pm_run_dir regrtest plain)/stderr" 20 >&2
    pm_fail "the PLAIN run did not report an outcome for each of the $expected" \
        "tests: the test or its environment is broken, not the allocator"
fi
if ! grep -qx '~Tests result: SUCCESS' "$PM_TMP/outcomes.plain"; then
    pm_log "warning: the plain run is not a SUCCESS on this machine:"
    grep -v ' passed$' "$PM_TMP/outcomes.plain" | sed 's/^/    /' >&2
    pm_log "warning: only requiring the same outcomes under poolmalloc"
fi
if ! cmp -s "$PM_TMP/outcomes.plain" "$PM_TMP/outcomes.preload"; then
    pm_log "outcomes differ (--- plain, +++ preload):"
    diff -u "$PM_TMP/outcomes.plain" "$PM_TMP/outcomes.preload" | sed 's/^/    /' >&2 || true
    pm_log "preload run output (end):"
    pm_tail "$preload_out" 60 >&2
    pm_tail "$(pm_run_dir regrtest preload)/stderr" 20 >&2
    pm_fail "CPython's tests do not end the same under poolmalloc"
fi
# Exit codes (regrtest exits non-zero on failures): compared, any value.
pm_compare regrtest outcomes any
pm_check_served regrtest 1000000
pm_log "ok: python_regrtest: $expected tests, same outcomes" \
    "($(grep '^~' "$PM_TMP/outcomes.plain" | cut -c2-)); plain" \
    "$(pm_run_secs regrtest plain)s, preload $(pm_run_secs regrtest preload)s;" \
    "$PM_SERVED small requests served by $PM_REPORT_FILES processes ($PM_REPORTS records)"
