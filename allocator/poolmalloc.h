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
/* glibc's mallopt: its tunables apply to the requests glibc serves (above
 * 512 bytes); pools have none. Returns glibc's answer. */
PM_API int pm_mallopt(int param, int value);
/* Gives back to the OS every page poolmalloc can: the pages of unused
 * pools, empty arenas (the reserve too), the calling thread's empty pools,
 * and the pages of its pools in use that hold no live block (threads that
 * have exited, too); and, under the preload, glibc's malloc_trim(pad) on
 * the heap of the requests above 512 bytes. Returns 1 if memory was
 * released, 0 if not. */
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
 * One table per record, each row X(field, kind, label): the struct fields
 * below, the text and JSON reports (stats.c) and the JSON schema
 * (docs/stats-schema.md) all follow it, so no counter is printed by one and
 * forgotten by another. kind is COUNT (uint64_t), BYTES (uint64_t) or RATIO
 * (double, 0..1). Counters are exact when the program is quiescent (no call
 * in progress on another thread). A block freed by a thread other than the
 * one that allocated it is "waiting" until that thread's heap takes it back
 * (on its next allocation that needs a new block): freed for the program,
 * still in use in its pool. */
#define PM_STATS_SCHEMA_VERSION 1

#define PM_CLASS_STATS(X)                                                            \
    X(block_size, BYTES, "block")                                                    \
    X(allocated_total, COUNT, "allocated")  /* blocks handed out since start */      \
    X(freed_total, COUNT, "freed")          /* blocks given back since start */      \
    X(live_blocks, COUNT, "live")           /* allocated_total - freed_total */      \
    X(live_bytes, BYTES, "live bytes")      /* live_blocks x block_size */           \
    X(waiting_blocks, COUNT, "waiting")     /* freed elsewhere, not yet taken back */ \
    X(free_blocks, COUNT, "free")           /* room left in this class's pools */    \
    X(pool_bytes, BYTES, "pool bytes")      /* bytes of this class's pools */        \
    X(trimmed_bytes, BYTES, "trimmed")      /* ... given back while in use */        \
    X(pools, COUNT, "pools")                /* pools carved for this class */        \
    X(pools_full, COUNT, "full")            /* ... with no free block */             \
    X(pools_empty, COUNT, "empty")          /* ... with no live block */             \
    X(utilization, RATIO, "used")           /* live_bytes / pool_bytes */            \
    X(fragmentation, RATIO, "frag")         /* 1 - utilization; 0 without pools */

#define PM_STATS(X)                                                                  \
    X(small_allocated_total, COUNT, "small blocks allocated")                        \
    X(small_freed_total, COUNT, "small blocks freed")                                \
    X(small_live_blocks, COUNT, "small blocks live")                                 \
    X(small_live_bytes, BYTES, "small bytes live")                                   \
    X(small_waiting_blocks, COUNT, "freed blocks awaiting owner")                    \
    X(small_waiting_bytes, BYTES, "freed bytes awaiting owner")                      \
    X(small_free_blocks, COUNT, "free blocks in pools")                              \
    X(small_pool_bytes, BYTES, "bytes in pools")                                     \
    X(small_trimmed_bytes, BYTES, "pool bytes given back") /* trimmed_bytes summed */ \
    X(small_utilization, RATIO, "pool utilization")   /* live / pool bytes */        \
    X(small_fragmentation, RATIO, "pool fragmentation") /* 1 - utilization */        \
    X(arenas_mapped, COUNT, "arenas mapped")                                         \
    X(arenas_peak, COUNT, "arenas mapped at peak")                                   \
    X(arenas_created_total, COUNT, "arenas created")                                 \
    X(arenas_destroyed_total, COUNT, "arenas destroyed")                             \
    X(arena_bytes, BYTES, "bytes in arenas")                                         \
    X(unused_pools, COUNT, "unused pools in arenas")                                 \
    X(retained_pools, COUNT, "unused pools still resident")                          \
    X(released_bytes_total, BYTES, "bytes given back to the OS") /* madvise, munmap */ \
    X(system_allocated_total, COUNT, "glibc blocks allocated")                       \
    X(system_freed_total, COUNT, "glibc blocks freed")                               \
    X(system_live_blocks, COUNT, "glibc blocks live")                                \
    X(system_live_bytes, BYTES, "glibc bytes live")    /* usable sizes */            \
    X(system_allocated_bytes_total, BYTES, "glibc bytes allocated")                  \
    X(system_cached_bytes, BYTES, "glibc bytes cached") /* freed, kept for reuse */  \
    X(system_caches_grown, COUNT, "glibc chunk caches grown") /* to 4 MiB */         \
    X(rss_bytes, BYTES, "resident set (RSS)")                                        \
    X(rss_peak_bytes, BYTES, "peak RSS")                                             \
    X(thread_heaps, COUNT, "thread heaps in use")                                    \
    X(abandoned_heaps, COUNT, "heaps waiting for a thread")                          \
    X(exchange_pools, COUNT, "pools in the exchange") /* given up, for another heap */ \
    X(exchange_given_total, COUNT, "pools given to the exchange")                    \
    X(exchange_taken_total, COUNT, "pools taken from the exchange")                  \
    X(metadata_bytes, BYTES, "allocator metadata") /* arena headers, heaps, parcels */

#define PM_STATS_FIELD_COUNT(name) uint64_t name;
#define PM_STATS_FIELD_BYTES(name) uint64_t name;
#define PM_STATS_FIELD_RATIO(name) double name;
#define PM_STATS_FIELD(name, kind, label) PM_STATS_FIELD_##kind(name)

typedef struct pm_class_stats {
    PM_CLASS_STATS(PM_STATS_FIELD)
} pm_class_stats_t;

/* Arenas by the share of their pool bytes that live blocks use:
 * arena_occupancy[i] counts arenas used [i x 10%, (i + 1) x 10%), the last
 * bucket including 100%. */
#define PM_OCCUPANCY_BUCKETS 10

typedef struct pm_stats {
    PM_STATS(PM_STATS_FIELD)
    uint64_t arena_occupancy[PM_OCCUPANCY_BUCKETS];
    pm_class_stats_t classes[PM_CLASS_COUNT];
} pm_stats_t;

PM_API void pm_stats_get(pm_stats_t *out);

typedef enum pm_stats_format { PM_STATS_TEXT, PM_STATS_JSON } pm_stats_format_t;

/* Writes a report of the current statistics, as text for people or as one
 * line of JSON (docs/stats-schema.md), with one write(2) to fd; allocates
 * nothing. Returns 0, or -1 with errno set if the write failed. */
PM_API int pm_stats_print(int fd, pm_stats_format_t format);

/* The same report handed whole, in one call, to a callback; returns what
 * the callback returns. */
typedef int pm_stats_writer_t(void *arg, const char *record, size_t length);
PM_API int pm_stats_print_to(pm_stats_writer_t *write, void *arg, pm_stats_format_t format);

/* A snapshot now, to the sink POOLMALLOC_STATS names, in the configured
 * format. Returns 0, or -1 if no sink is configured or it cannot be
 * written (a warning says why). */
PM_API int pm_stats_dump(void);

/* glibc's introspection calls, answered with poolmalloc's figures (the
 * README says which figure goes where). pm_stats_xml writes malloc_info's
 * XML into out and returns its length (cut at capacity). */
struct mallinfo2;
PM_API struct mallinfo2 pm_mallinfo2(void);
PM_API size_t pm_stats_xml(char *out, size_t capacity);

PM_API const char *pm_version(void);

#ifdef __cplusplus
}
#endif

#endif /* POOLMALLOC_H */
