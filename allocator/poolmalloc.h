/* poolmalloc.h — the public API of the poolmalloc core.
 *
 * Every call here behaves like its glibc namesake without the pm_ prefix
 * (malloc, free, calloc, ...), so the core can be linked directly into tests,
 * fuzzers and benchmarks without interposing the process's malloc. The preload
 * library libpoolmalloc.so exports the unprefixed names and forwards to these.
 */
#ifndef POOLMALLOC_H
#define POOLMALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PM_VERSION_STRING "0.1.0"

/* The core is built with hidden visibility; only the API is exported. */
#define PM_API __attribute__((visibility("default")))

/* Requests of at most PM_SMALL_MAX bytes are served from pools, in classes
 * PM_CLASS_GRANULE bytes apart; everything else goes to glibc. */
#define PM_SMALL_MAX 512
#define PM_CLASS_GRANULE 16
#define PM_CLASS_COUNT (PM_SMALL_MAX / PM_CLASS_GRANULE) /* 32 */

PM_API void *pm_malloc(size_t size);
PM_API void pm_free(void *ptr);
PM_API void *pm_calloc(size_t count, size_t size);
PM_API void *pm_realloc(void *ptr, size_t size);
PM_API void *pm_reallocarray(void *ptr, size_t count, size_t size);
PM_API int pm_posix_memalign(void **out, size_t alignment, size_t size);
PM_API void *pm_aligned_alloc(size_t alignment, size_t size);
PM_API void *pm_memalign(size_t alignment, size_t size);
PM_API void *pm_valloc(size_t size);
PM_API void *pm_pvalloc(size_t size);
PM_API size_t pm_malloc_usable_size(void *ptr);
/* Accepted and ignored: glibc's tunables do not apply to pools, and
 * changing glibc's own arenas behind a program's back is not ours to do. */
PM_API int pm_mallopt(int param, int value);
/* Gives back to the OS every page poolmalloc can: the pages of unused
 * pools, empty arenas (the reserve too), and the calling thread's empty
 * pools. `pad` is accepted for glibc compatibility. Returns 1 if memory was
 * released, 0 if not. glibc's own heap (requests above 512 bytes) trims
 * itself as it frees. */
PM_API int pm_malloc_trim(size_t pad);

/* Nonzero iff ptr lies inside one of poolmalloc's arenas. Safe for any
 * value (a glibc pointer, a stack address, garbage): it never dereferences
 * ptr, only the arena registry. */
PM_API int pm_owns(const void *ptr);

/* The size class (0 .. PM_CLASS_COUNT-1) that serves a request of `size`
 * bytes, or -1 if the request goes to glibc. */
PM_API int pm_size_class(size_t size);
/* The block size of a class, or 0 for an index out of range. */
PM_API size_t pm_class_block_size(int class_index);

/* ---- statistics ---------------------------------------------------------
 * Exact when the program is quiescent (no call in progress on another
 * thread). */
typedef struct pm_class_stats {
    size_t block_size;
    uint64_t allocated_total; /* blocks handed out since start */
    uint64_t freed_total;     /* blocks given back since start */
    uint64_t live_blocks;     /* allocated_total - freed_total */
    uint64_t pools;           /* pools currently carved for this class */
} pm_class_stats_t;

typedef struct pm_stats {
    pm_class_stats_t classes[PM_CLASS_COUNT];
    uint64_t small_allocated_total; /* sum over classes */
    uint64_t small_live_blocks;
    uint64_t small_live_bytes; /* live blocks x block size */
    uint64_t arenas_mapped;    /* arenas currently mapped */
    uint64_t arenas_peak;      /* most arenas mapped at once */
    uint64_t arenas_created_total;
    uint64_t arenas_destroyed_total;
    uint64_t arena_bytes; /* arenas_mapped x arena size */
    uint64_t released_bytes_total; /* pool pages given back to the OS (madvise) */
} pm_stats_t;

PM_API void pm_stats_get(pm_stats_t *out);

/* Writes a human-readable report of the current statistics to fd with
 * write(2), in one call per record; allocates nothing. Returns 0, or -1 with
 * errno set if the write failed. */
PM_API int pm_stats_print(int fd);

PM_API const char *pm_version(void);

#ifdef __cplusplus
}
#endif

#endif /* POOLMALLOC_H */
