#!/usr/bin/env bash
# perl.sh — perl under poolmalloc: perl_objects.pl (blessed objects, hashes,
# arrays, closures, regexes, sorts, string building) must print the same
# lines plain and preloaded. The hash seed is fixed so that both runs make
# the same allocations and a failure reproduces; the script's output does
# not depend on it (it sorts every key list).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pm_require_cmd perl perl-base
pm_init 120
pm_check perl 100000 cat -- env PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0 \
    perl -w "$PM_INTEGRATION_DIR/perl_objects.pl" "${PM_PERL_SCALE:-1}"
