/* alloc.c — owns the public malloc family (pm_*) and is the only file that
 * decides which requests pools serve and which go to glibc (malloc's and
 * free's fast halves are its too, in internal.h, where the preload shim can
 * inline them). Never calls malloc by name. Keeps glibc's observable
 * semantics: errno, NULL returns, realloc(p, 0), and what each call does
 * with a pointer it did not make. */
#include "internal.h"

#include <errno.h>

__attribute__((noinline)) void *pm_malloc_missed(pm_heap_t *heap, size_t size)
{
    void *block = pm_heap_alloc_slow(heap, pm_class_of_nonzero(size));
    if (PM_LIKELY(block != NULL))
        return block;
    /* No arena could be mapped, or the thread unwinds: glibc's. */
    return pm_system_malloc(size);
}

__attribute__((noinline)) void *pm_malloc_slow(size_t size)
{
    if (size > PM_SMALL_MAX)
        return pm_system_malloc(size);
    pm_heap_t *heap = pm_thread_heap;
    /* The fast path has just failed for any size but 0, served as 1: not
     * again. */
    if (size == 0) {
        void *block = pm_heap_alloc_fast(heap, 1);
        if (PM_LIKELY(block != NULL))
            return block;
        size = 1;
    }
    return pm_malloc_missed(heap, size);
}

void *pm_malloc(size_t size)
{
    return pm_malloc_inline(size);
}

void pm_free(void *ptr)
{
    pm_free_inline(ptr);
}

void pm_free_outside_space(void *ptr)
{
    if (pm_outside_arena_contains(ptr))
        pm_heap_free_fast(ptr);
    else if (ptr != NULL)
        pm_system_free(ptr); /* glibc's, or the loader's via glibc */
}

/* Everything but a block from the fast path: an overflow, 0 bytes, past
 * the pools, a bin with no room at hand. Out of line, as for realloc. */
static __attribute__((noinline)) void *calloc_slow(size_t count, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if (total > PM_SMALL_MAX)
        return pm_system_calloc(count, size); /* glibc skips zeroing fresh mmap */
    void *block = pm_heap_alloc(total);
    if (block == NULL)
        return pm_system_calloc(count, size);
    return pm_libc_memset(block, 0, pm_class_size(pm_class_of(total)));
}

void *pm_calloc(size_t count, size_t size)
{
    size_t total;
    /* total - 1 wraps for 0, which takes the slow path like large sizes. */
    if (!__builtin_mul_overflow(count, size, &total) && total - 1 < PM_SMALL_MAX) {
        void *block = pm_heap_alloc_fast(pm_thread_heap, total);
        /* The whole block, total rounded up to the granule:
         * malloc_usable_size promises all of it to the caller. memset
         * returns the block, so this is a jump, not a call and a return. */
        if (PM_LIKELY(block != NULL))
            return pm_libc_memset(block, 0,
                                  (total + PM_CLASS_GRANULE - 1) & ~(size_t)(PM_CLASS_GRANULE - 1));
    }
    return calloc_slow(count, size);
}

size_t pm_malloc_usable_size(void *ptr)
{
    if (ptr == NULL)
        return 0;
    if (pm_pool_path(ptr))
        return pm_heap_usable_size(ptr, PM_OP_USABLE_SIZE);
    return pm_system_usable_size(ptr);
}

/* realloc's paths but one are out of line, so that the one that keeps a
 * pool block where it is (half the calls of a buffer grown a few bytes at
 * a time, with 16-byte classes) is a leaf that saves no register: inlined,
 * the calls below made every realloc push and pop six (17 instructions,
 * of 94 a realloc in pm_bench_grow). */

/* The size a pool block moves to: what was asked for when it shrinks; when
 * it grows, the room pm_realloc_grown_size gives, so that a buffer grown a
 * few bytes at a time (a string appended to) moves once per quarter of its
 * growth rather than at every class (bench/results/realloc-growth.md). The
 * room stops at `kept`, the largest block a realloc to `size` would keep
 * (pm_realloc_keeps, in whole granules: else growing from 81 to 82 bytes
 * moved back from a 112-byte block to a 96-byte one), and at the largest
 * class while the request fits in one. */
static inline size_t realloc_move_size(size_t old_usable, size_t size)
{
    if (size <= old_usable)
        return size;
    size_t ahead = pm_realloc_grown_size(old_usable, size);
    if (ahead == size)
        return size;
    size_t kept = pm_realloc_kept_max(size) & ~(size_t)(PM_CLASS_GRANULE - 1);
    if (ahead > kept)
        ahead = kept;
    if (size <= PM_SMALL_MAX && ahead > PM_SMALL_MAX)
        ahead = PM_SMALL_MAX;
    return size > ahead ? size : ahead;
}

/* Moves a block to a new one of `size` bytes (and headroom), copying what
 * both hold. The old block stays intact if no new one can be had, as
 * realloc requires. */
static __attribute__((noinline)) void *realloc_move(void *ptr, size_t old_usable, size_t size)
{
    void *moved = pm_malloc(realloc_move_size(old_usable, size));
    if (moved == NULL)
        return NULL;
    pm_libc_memcpy(moved, ptr, old_usable < size ? old_usable : size);
    pm_free(ptr);
    return moved;
}

/* The same for a live block of the caller's heap, which realloc has just
 * checked: free's checks are not made again (a buffer grown a few bytes at
 * a time moves at most calls, with 16-byte classes). The malloc cannot
 * change the block's owner: only its owner releases a pool, and not one
 * with a live block. */
static __attribute__((noinline)) void *realloc_move_own(void *ptr, pm_pool_t *pool, size_t size)
{
    size_t old_usable = pool->block_size;
    void *moved = pm_malloc(realloc_move_size(old_usable, size));
    if (moved == NULL)
        return NULL;
    pm_libc_memcpy(moved, ptr, old_usable < size ? old_usable : size);
    pm_heap_push_free(pm_thread_heap, pool, ptr);
    return moved;
}

/* Whether a pool block of `block_size` bytes stays where it is when resized
 * to `size`: within its class, or shrinking by no more than a quarter
 * (pm_realloc_keeps). */
static inline bool realloc_in_place(size_t block_size, size_t size)
{
    return size <= block_size &&
           (pm_class_of(size) == pm_class_of(block_size) || pm_realloc_keeps(block_size, size));
}

/* glibc frees and returns NULL (REALLOC_ZERO_BYTES_FREES). */
static __attribute__((noinline)) void *realloc_to_zero(void *ptr)
{
    pm_free(ptr);
    return NULL;
}

/* A block of glibc's: grown or shrunk on the glibc path, unless it shrinks
 * into a class, when it moves into a pool. */
static __attribute__((noinline)) void *realloc_system(void *ptr, size_t size)
{
    if (size > PM_SMALL_MAX)
        return pm_system_realloc(ptr, size);
    void *block = pm_heap_alloc(size);
    if (block == NULL)
        return pm_system_realloc(ptr, size);
    size_t old_usable = pm_system_usable_size(ptr);
    pm_libc_memcpy(block, ptr, old_usable < size ? old_usable : size);
    pm_system_free(ptr);
    return block;
}

/* A pool block that is not a live one of the caller's heap: checked whole
 * (a misused pointer aborts there). */
static __attribute__((noinline)) void *realloc_checked(void *ptr, size_t size)
{
    size_t block_size = pm_heap_block_size(ptr, PM_OP_REALLOC);
    return realloc_in_place(block_size, size) ? ptr : realloc_move(ptr, block_size, size);
}

void *pm_realloc(void *ptr, size_t size)
{
    if (ptr == NULL)
        return pm_malloc(size);
    if (size == 0)
        return realloc_to_zero(ptr);
    if (!pm_pool_path(ptr))
        return realloc_system(ptr, size);
    pm_pool_t *pool = pm_pool_of(ptr);
    if (PM_UNLIKELY(!pm_heap_owns_live(pm_thread_heap, pool, ptr)))
        return realloc_checked(ptr, size);
    return realloc_in_place(pool->block_size, size) ? ptr : realloc_move_own(ptr, pool, size);
}

void *pm_reallocarray(void *ptr, size_t count, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return pm_realloc(ptr, total);
}

/* alignment: a power of two. Pools serve it when a class's blocks are all
 * aligned to it (see BLOCK, POOL, ARENA in internal.h). */
static void *alloc_aligned(size_t alignment, size_t size)
{
    if (alignment <= PM_CLASS_GRANULE)
        return pm_malloc(size);
    if (alignment <= PM_POOL_ALIGN_MAX && size <= PM_SMALL_MAX) {
        void *block = pm_heap_alloc(size == 0 ? alignment : pm_aligned_size(alignment, size));
        if (block != NULL)
            return block;
    }
    return pm_system_memalign(alignment, size);
}

/* Everything pm_aligned_fast does not serve: a bad alignment, size 0, past
 * the pools, a bin with no room at hand. Out of line, with errno's save. */
static __attribute__((noinline)) int posix_memalign_slow(void **out, size_t alignment,
                                                         size_t size)
{
    if (!pm_is_power_of_two(alignment) || alignment % sizeof(void *) != 0)
        return EINVAL;
    int saved_errno = errno; /* reports through its result, not errno */
    void *p = alloc_aligned(alignment, size);
    errno = saved_errno;
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

int pm_posix_memalign(void **out, size_t alignment, size_t size)
{
    if (PM_LIKELY(pm_aligned_in_pools(alignment))) {
        void *block = pm_aligned_fast(alignment, size);
        if (PM_LIKELY(block != NULL)) {
            *out = block;
            return 0;
        }
    }
    return posix_memalign_slow(out, alignment, size);
}

/* glibc's memalign serves small alignments as malloc, and raises one that
 * is not a power of two to the next; past the pools' reach, glibc does it
 * all. */
static __attribute__((noinline)) void *memalign_slow(size_t alignment, size_t size)
{
    if (alignment > PM_POOL_ALIGN_MAX)
        return pm_system_memalign(alignment, size);
    if (!pm_is_power_of_two(alignment))
        alignment = (size_t)1 << (64 - __builtin_clzll(alignment));
    return alloc_aligned(alignment, size);
}

void *pm_memalign(size_t alignment, size_t size)
{
    if (alignment <= PM_CLASS_GRANULE)
        return pm_malloc(size);
    if (PM_LIKELY(pm_aligned_in_pools(alignment))) {
        void *block = pm_aligned_fast(alignment, size);
        if (PM_LIKELY(block != NULL))
            return block;
    }
    return memalign_slow(alignment, size);
}

/* glibc 2.36's aligned_alloc is its memalign (the stricter C17 checks came
 * in glibc 2.38); programs see glibc's answer either way. */
void *pm_aligned_alloc(size_t alignment, size_t size)
{
    return pm_memalign(alignment, size);
}

void *pm_valloc(size_t size)
{
    return pm_system_valloc(size);
}

void *pm_pvalloc(size_t size)
{
    return pm_system_pvalloc(size);
}

int pm_mallopt(int param, int value)
{
    return pm_system_mallopt(param, value);
}

int pm_malloc_trim(size_t pad)
{
    /* pad is glibc's: pools have no top to pad. */
    bool pools = pm_heap_trim();
    size_t arenas = pm_arena_trim();
    return pm_system_trim(pad) || arenas > 0 || pools;
}

int pm_owns(const void *ptr)
{
    return pm_registry_contains(ptr);
}

const char *pm_version(void)
{
    return PM_VERSION_STRING;
}
