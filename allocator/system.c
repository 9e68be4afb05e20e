/* system.c — owns the system path: requests poolmalloc does not serve from
 * pools go to glibc's malloc through its __libc_* entry points, which stay
 * glibc's even when the malloc family is interposed (no dlsym bootstrap).
 * Never touches pool or arena state; counts in the calling thread's heap. */
#include "internal.h"

#include <string.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);
extern void __libc_free(void *ptr);

/* Every block glibc hands out through here, and every one given back, is
 * counted at its usable size (read from the chunk glibc is about to touch
 * anyway) in the calling thread's heap: no shared counter on this path. */
static void *system_counted(void *block)
{
    if (block != NULL) {
        size_t usable = pm_system_usable_size(block);
        pm_count_system_alloc(usable);
        pm_profile_sample_system(block, usable);
    }
    return block;
}

/* A new block whose contents are undefined: under POOLMALLOC_DEBUG it
 * holds the fresh pattern, as pool blocks do (glibc's blocks are not
 * checked on reuse: glibc owns their free lists). */
static void *system_fresh(void *block)
{
    if (block != NULL && pm_options.debug)
        memset(block, PM_DEBUG_FRESH_BYTE, pm_system_usable_size(block));
    return system_counted(block);
}

void *pm_system_malloc(size_t size) { return system_fresh(__libc_malloc(size)); }
void *pm_system_calloc(size_t count, size_t size) { return system_counted(__libc_calloc(count, size)); }
void *pm_system_memalign(size_t alignment, size_t size)
{
    return system_fresh(__libc_memalign(alignment, size));
}
void *pm_system_valloc(size_t size) { return system_fresh(__libc_valloc(size)); }
void *pm_system_pvalloc(size_t size) { return system_fresh(__libc_pvalloc(size)); }

/* Precondition: size > 0 (pm_realloc frees for size 0 itself). */
void *pm_system_realloc(void *ptr, size_t size)
{
    size_t old_usable = 0;
    if (ptr != NULL) {
        old_usable = pm_system_usable_size(ptr);
        /* Before glibc can free the block: from then on another thread may
         * be handed the same address and sample it, and a record dropped
         * after that would be the new block's. If the realloc fails, the
         * block lives on without its record: its site's live bytes are
         * short of one sample, a cost paid only when memory runs out. */
        pm_profile_free(ptr);
    }
    void *moved = __libc_realloc(ptr, size);
    if (moved != NULL && ptr != NULL)
        pm_count_system_free(old_usable);
    return system_counted(moved);
}

void pm_system_free(void *ptr)
{
    size_t usable = pm_system_usable_size(ptr);
    pm_count_system_free(usable);
    if (pm_options.debug) /* a read after free reads the pattern */
        memset(ptr, PM_DEBUG_FREED_BYTE, usable);
    pm_profile_free(ptr); /* before glibc can hand the address out again */
    __libc_free(ptr);
}

/* glibc exports malloc_usable_size only under that name, which the preload
 * shim interposes, so the answer is read where glibc itself reads it: the
 * chunk's size word just below the pointer (malloc/malloc.c, musable() in
 * glibc 2.36, x86-64: 8-byte size word, flag 0x2 = chunk was mmap'd). A
 * chunk carved from an arena lends its successor's prev_size word to the
 * user; an mmap'd chunk does not. */
#define GLIBC_SIZE_WORD ((size_t)8)
#define GLIBC_CHUNK_IS_MMAPPED ((size_t)0x2)
#define GLIBC_CHUNK_FLAGS ((size_t)0x7)

size_t pm_system_usable_size(void *ptr)
{
    size_t size_word = ((const size_t *)ptr)[-1];
    size_t chunk_size = size_word & ~GLIBC_CHUNK_FLAGS;
    if (size_word & GLIBC_CHUNK_IS_MMAPPED)
        return chunk_size - 2 * GLIBC_SIZE_WORD;
    return chunk_size - GLIBC_SIZE_WORD;
}
