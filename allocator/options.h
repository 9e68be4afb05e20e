/* options.h — the one table of POOLMALLOC_* options. Each row expands into
 * a field of pm_options_t, its default, its parser (options.c), and must
 * have a row in the README's environment table (checked by a test).
 *
 * X(field, environment variable, kind, default, minimum, maximum, help)
 *   kind PATH:     a file name, read with secure_getenv; "" = unset
 *   kind COUNT:    a whole number in [minimum, maximum]
 *   kind DURATION: milliseconds in [minimum, maximum], written 250ms, 2s,
 *                  5m or 1h (a bare number is seconds)
 *   kind FORMAT:   text or json (pm_stats_format_t)
 *   kind SIGNAL:   a signal by name (USR1, SIGUSR2, RTMIN+3) or number;
 *                  0 = none
 */
#ifndef POOLMALLOC_OPTIONS_H
#define POOLMALLOC_OPTIONS_H

#define PM_OPTIONS(X)                                                                        \
    X(stats_path, "POOLMALLOC_STATS", PATH, "", 0, 0,                                        \
      "append stats snapshots to this file (%p: the pid; 'stderr')")                        \
    X(stats_interval_ms, "POOLMALLOC_STATS_INTERVAL", DURATION, 1000, 10, 86400000,          \
      "time between snapshots of the dump thread")                                          \
    X(stats_format, "POOLMALLOC_STATS_FORMAT", FORMAT, PM_STATS_TEXT, 0, 1,                  \
      "text (for people) or json (JSON Lines, docs/stats-schema.md); unset: json for a "    \
      "POOLMALLOC_STATS file named *.json or *.jsonl, else text")                           \
    X(stats_signal, "POOLMALLOC_STATS_SIGNAL", SIGNAL, 0, 1, 64,                             \
      "a signal that asks for a snapshot now")                                              \
    X(profile, "POOLMALLOC_PROFILE", COUNT, 0, 0, 1,                                         \
      "1: sample allocations and report where memory is allocated (needs libunwind8)")     \
    X(profile_rate, "POOLMALLOC_PROFILE_RATE", COUNT, 524288, 1, 1099511627776,              \
      "mean bytes allocated between two samples")                                          \
    X(purge_delay_ms, "POOLMALLOC_PURGE_DELAY", DURATION, 1000, 0, 86400000,                 \
      "how long a released pool keeps its pages before they go back to the OS (madvise); " \
      "0: at once")                                                                         \
    X(purge_grace_ms, "POOLMALLOC_PURGE_GRACE", DURATION, 100, 0, 86400000,                  \
      "how long released pools above the retained cap keep their pages, both since their " \
      "release and since the program last took one back (at most the purge delay); "        \
      "0: at once")                                                                         \
    X(retain_pools, "POOLMALLOC_RETAIN_POOLS", COUNT, 64, 0, 65536,                          \
      "released pools kept resident at most, to start with; the cap grows with demand")    \
    X(retain_pools_max, "POOLMALLOC_RETAIN_POOLS_MAX", COUNT, 16384, 0, 65536,               \
      "the most released pools the adaptive cap keeps resident")                           \
    X(reserve_arenas, "POOLMALLOC_RESERVE_ARENAS", COUNT, 1, 0, 4096,                        \
      "empty arenas kept mapped rather than unmapped, against mmap/munmap churn")          \
    X(purge_thread, "POOLMALLOC_PURGE_THREAD", COUNT, 0, 0, 1,                               \
      "1: a background thread gives back what has waited the purge delay, also in a "      \
      "process that makes no more calls; 0: the program's own calls do (and the dump thread)") \
    X(purge_batch, "POOLMALLOC_PURGE_BATCH", COUNT, 1, 0, 1,                                 \
      "1: purges made together go to the kernel in one process_madvise call (Linux 6.15+, " \
      "once the process has had a second thread); 0: one madvise each")                    \
    X(trim_glibc, "POOLMALLOC_TRIM_GLIBC", COUNT, 1, 0, 1,                                   \
      "1: trim glibc's heap (requests above 512 bytes) when their live bytes collapse or " \
      "stay halved; "                                                                       \
      "0: only malloc_trim does")                                                           \
    X(debug, "POOLMALLOC_DEBUG", COUNT, 0, 0, 1,                                             \
      "1: fill freed blocks with 0xDD and check them when reused, fresh blocks with 0xCD; " \
      "every call takes the locked slow path")

#define PM_OPTION_PATH_MAX 256

#endif /* POOLMALLOC_OPTIONS_H */
