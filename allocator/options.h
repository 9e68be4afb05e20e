/* options.h — the one table of POOLMALLOC_* options. Each row expands into
 * a field of pm_options_t, its default, its parser (options.c), and must
 * have a row in the README's environment table (checked by a test).
 *
 * X(field, environment variable, kind, default, minimum, maximum, help)
 *   kind PATH:  a file name, read with secure_getenv; "" = unset
 *   kind COUNT: a whole number in [minimum, maximum]
 */
#ifndef POOLMALLOC_OPTIONS_H
#define POOLMALLOC_OPTIONS_H

#define PM_OPTIONS(X)                                                                        \
    X(stats_path, "POOLMALLOC_STATS", PATH, "", 0, 0,                                        \
      "at exit, append a stats report to this file (%p: the pid; 'stderr')")                \
    X(retain_pools, "POOLMALLOC_RETAIN_POOLS", COUNT, 16, 0, 65536,                          \
      "unused pools whose pages stay resident, most recently freed first; older ones are " \
      "given back to the OS (madvise)")                                                      \
    X(reserve_arenas, "POOLMALLOC_RESERVE_ARENAS", COUNT, 1, 0, 4096,                        \
      "empty arenas kept mapped rather than unmapped, against mmap/munmap churn")

#define PM_OPTION_PATH_MAX 256

#endif /* POOLMALLOC_OPTIONS_H */
