#!/usr/bin/env bash
# A setuid or setgid program must not be made to write where its caller
# chooses: POOLMALLOC_STATS, a file name, is read with secure_getenv, which
# returns nothing in secure mode (AT_SECURE). Runs the probe (setuid_probe.c)
# plain, then setgid and setuid to another user, with POOLMALLOC_STATS
# naming a file: written the first time only.
# Usage: setuid.sh PROBE   (needs root; skipped otherwise)
set -euo pipefail
probe="$1"
skip() { echo "setuid: SKIP: $*" >&2; exit 77; }
fail() { echo "setuid: FAIL: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || skip "needs root to make a setuid program"
getent passwd nobody >/dev/null && getent group nogroup >/dev/null ||
  skip "no user nobody / group nogroup"

# A directory every user may enter; the stats file would be created in it
# by whichever user the probe runs as.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 1777 "$work"
cp "$probe" "$work/probe"

# mode: plain, setgid (group nogroup), setuid (user nobody)
run() {
  local mode=$1
  rm -f "$work"/stats-*
  chown root:root "$work/probe"
  chmod 0755 "$work/probe"
  case $mode in
    setgid) chgrp nogroup "$work/probe"; chmod g+s "$work/probe" ;;
    setuid) chown nobody "$work/probe"; chmod u+s "$work/probe" ;;
  esac
  POOLMALLOC_STATS="$work/stats-%p.txt" "$work/probe" >"$work/out" 2>"$work/err" ||
    fail "$mode: the probe failed: $(cat "$work/err")"
  read -r secure owned dump <"$work/out"
  [[ $owned == owned=1 ]] || fail "$mode: malloc is not poolmalloc's ($(cat "$work/out"))"
  case $mode in
    plain)
      [[ $secure == secure=0 ]] || fail "plain: ran in secure mode"
      [[ $dump == dump=0 ]] || fail "plain: pm_stats_dump failed: $(cat "$work/err")"
      compgen -G "$work/stats-*.txt" >/dev/null || fail "plain: no stats file written"
      ;;
    *)
      [[ $secure == secure=1 ]] ||
        skip "$mode: not in secure mode (a nosuid mount?): $(findmnt -no OPTIONS -T "$work")"
      [[ $dump == dump=-1 ]] || fail "$mode: pm_stats_dump wrote somewhere ($dump)"
      ! compgen -G "$work/stats-*" >/dev/null ||
        fail "$mode: POOLMALLOC_STATS was honoured in secure mode: $(ls "$work")"
      [[ ! -s $work/err ]] || fail "$mode: unexpected stderr: $(cat "$work/err")"
      ;;
  esac
  echo "setuid: ok: $mode ($(cat "$work/out"))"
}
run plain
run setgid
run setuid
