/* pool.c — owns the blocks inside one pool: carving, the free tag, and the
 * checks that tell a live block from a freed one and from any other
 * address. Never locks and never calls malloc; only the pool's owner (or
 * the holder of its ABANDONED heap's service_lock) changes a pool, others
 * only read it. Keeps I3, I6, I7. */
#include "internal.h"

#include <string.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <time.h>

/* In .data, resident from the start, rather than alone on a page of .bss
 * that nothing else touches (sorted by alignment, CMakeLists.txt). */
__attribute__((section(".data.pm_block_keys"))) pm_block_keys_t pm_block_keys;

/* The key and the free tag are drawn before the first pool is made, or the
 * first chunk cache opens (pm_block_keys_ready), so every link ever written
 * uses it; a fork child keeps it, as it keeps the links. The callers hold
 * different locks (the arena's, the heaps'), so the first to publish its
 * tag wins, and publishes its key last: the key, not 0, says both are
 * drawn. getrandom never blocks here: GRND_NONBLOCK, and early in boot (or
 * under a seccomp filter) the kernel's AT_RANDOM bytes, mixed with the
 * clock, stand in. */
void pm_block_keys_draw(void)
{
    uint64_t drawn[2] = {0, 0};
    if (getrandom(drawn, sizeof drawn, GRND_NONBLOCK) != (ssize_t)sizeof drawn) {
        const uint64_t *at_random = (const uint64_t *)getauxval(AT_RANDOM);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        uint64_t seed = at_random != NULL ? at_random[0] ^ at_random[1] : (uint64_t)(uintptr_t)&now;
        seed ^= (uint64_t)now.tv_nsec * 0x9e3779b97f4a7c15ull;
        drawn[0] = seed;
        drawn[1] = (seed ^ (uint64_t)now.tv_sec) * 0xbf58476d1ce4e5b9ull;
    }
    /* Odd, so never 0: malloc writes 0 where a free block's tag was (I6). */
    uintptr_t undrawn = 0;
    if (!__atomic_compare_exchange_n(&pm_block_keys.free_tag, &undrawn, (uintptr_t)(drawn[1] | 1),
                                     false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        while (__atomic_load_n(&pm_block_keys.link_key, __ATOMIC_ACQUIRE) == 0)
            pm_os_yield(); /* the winner is a few instructions from its key */
        return;
    }
    /* Odd: a zeroed link decodes to block ^ key, never NULL for a 16-byte
     * aligned block (and the key is never 0, which marks it undrawn). */
    __atomic_store_n(&pm_block_keys.link_key, (uintptr_t)(drawn[0] | 1), __ATOMIC_RELEASE);
}

pm_pool_t pm_pool_dry = {.class_index = PM_CLASS_NONE};

void pm_pool_init(pm_pool_t *pool, unsigned class_index, struct pm_heap *heap)
{
    pm_block_keys_ready();
    pool->free_list = NULL;
    pool->next = pool->prev = NULL;
    pool->carve_index = 0;
    /* What pm_arena_stats reads, atomically: an owner makes a parked pool
     * one of its class again, or of another, without the directory lock
     * that the stats hold (heap_take_parked, pm_pool_reuse). */
    __atomic_store_n(&pool->block_size, (uint32_t)pm_class_size(class_index), __ATOMIC_RELAXED);
    pool->reciprocal = pm_class_reciprocal[class_index];
    pool->start_low = (uint32_t)(uintptr_t)pm_pool_start(pool);
    pool->fast_free_bound = 0; /* nothing carved */
    /* None used, on no list yet. */
    __atomic_store_n(&pool->used_word, PM_POOL_OFF_LIST, __ATOMIC_RELAXED);
    __atomic_store_n(&pool->used_mark, 0, __ATOMIC_RELAXED);
    pool->sparse = false;
    pool->regaining = false;
    __atomic_store_n(&pool->adopted, false, __ATOMIC_RELAXED);
    __atomic_store_n(&pool->capacity,
                     (uint16_t)(pm_pool_bytes(pm_pool_index_of(pool)) / pool->block_size),
                     __ATOMIC_RELAXED);
    __atomic_store_n(&pool->purged_pages, 0, __ATOMIC_RELAXED);
    pool->debug_fill = pm_options.debug != 0;
    /* Published last: a reader that sees the class sees the rest (I9). */
    pm_pool_set_owner(pool, heap, class_index);
}

/* POOLMALLOC_DEBUG's pattern in blocks [first, end): out of line, so that
 * carve_link saves no register for its call (six pushes and pops a call:
 * about 20 of its 107 instructions a call in a program that makes and
 * frees 1000 blocks of a size at a time). */
static __attribute__((noinline)) void carve_debug_fill(const pm_pool_t *pool, char *first,
                                                       char *end)
{
    for (char *b = first; b != end; b += pool->block_size)
        pm_pool_debug_freed(pool, b);
}

/* Pushes blocks [from, to) onto `head`, lowest address first in the list,
 * each tagged free (I6). The block size and the bounds are locals, so the loop is seven
 * instructions a block: read through the descriptor, they were reloaded
 * after every store, which the compiler could not prove does not write it
 * (16 a block, and 21 with the loop that found the page's end: a fifth of
 * what a program that builds a structure and then frees it spent in the
 * allocator). */
static pm_block_t *carve_link(const pm_pool_t *pool, char *start, uint32_t from, uint32_t to,
                              pm_block_t *head)
{
    size_t size = pool->block_size;
    char *first = start + (size_t)from * size;
    char *end = start + (size_t)to * size;
    if (PM_UNLIKELY(pool->debug_fill))
        carve_debug_fill(pool, first, end);
    for (char *b = end; b != first;) {
        b -= size;
        pm_link_set((pm_block_t *)b, head);
        pm_block_set_tag(b);
        head = (pm_block_t *)b;
    }
    return head;
}

/* ---- pages of a pool in use given back (sparse pools, malloc_trim) --------
 * A program that frees most of its blocks leaves pools with a few live
 * blocks each: no pool empties, and until now none of their pages went
 * back, although most of them held only free blocks. A sparse pool
 * (heap.c) and malloc_trim give back every page of a pool in use that no
 * live block overlaps, as glibc's malloc_trim gives back the free pages
 * inside its heap. A block belongs to the page it starts in: those of a
 * purged page leave the free list (their links are about to read as
 * zeros) and come back, all the pool's purged pages at once, when the pool
 * runs out of free blocks (pm_pool_carve), before any untouched block is
 * carved. A free block that starts in a page kept and ends in one purged
 * stays on the list: only its link, at its start, must survive.
 * Only pages all of whose blocks are carved are purged, so carving never
 * reaches a purged page. Not in debug mode, whose freed pattern would read
 * as a write after free. */
#define POOL_PAGES (PM_POOL_SIZE / PM_OS_PAGE_SIZE)
_Static_assert(POOL_PAGES <= 8, "purged_pages has a bit per page of a pool");

/* By the owner; the stats read it from any thread. free's fast path
 * refuses every block of a pool with a purged page (fast_free_bound): a
 * purged block reads as zeros, with no tag, and its free, a double free,
 * is for the full path to find (I6). */
static void pool_set_purged_pages(pm_pool_t *pool, uint8_t pages)
{
    __atomic_store_n(&pool->purged_pages, pages, __ATOMIC_RELAXED);
    pm_pool_refresh_fast_free(pool);
}

/* The OS page of the pool, counted from its start, that holds `addr`. */
static unsigned pool_page_of(const char *start, const void *addr)
{
    return (unsigned)(((const char *)addr - start) / PM_OS_PAGE_SIZE);
}

/* The blocks starting in page `page` of the pool: [*from, *to). */
static void pool_page_blocks(const pm_pool_t *pool, unsigned page, uint32_t *from, uint32_t *to)
{
    size_t size = pool->block_size;
    *from = (uint32_t)((page * PM_OS_PAGE_SIZE + size - 1) / size);
    uint32_t end = (uint32_t)(((page + 1) * PM_OS_PAGE_SIZE + size - 1) / size);
    *to = end < pool->carve_index ? end : pool->carve_index;
}

/* The blocks that fit whole in the pool's first `bytes` (at most the
 * pool's size): bytes / size, exact through the reciprocal for a pool
 * offset (pm_class_reciprocal). */
static uint32_t pool_blocks_within(const pm_pool_t *pool, size_t bytes)
{
    return (uint32_t)((bytes * pool->reciprocal) >> 32);
}

/* The index of a block start of the pool. */
static uint32_t pool_block_index(const pm_pool_t *pool, const void *block)
{
    return pool_blocks_within(pool, (size_t)((const char *)block - pm_pool_start(pool)));
}

/* The blocks starting in the pool's purged pages (I3). */
static unsigned pool_purged_blocks(const pm_pool_t *pool)
{
    unsigned blocks = 0;
    for (unsigned page = 0; page < POOL_PAGES; page++) {
        if (!(pool->purged_pages & (1u << page)))
            continue;
        uint32_t from, to;
        pool_page_blocks(pool, page, &from, &to);
        blocks += to - from;
    }
    return blocks;
}

/* Whether every block overlapping page `page` of the pool holds the tag,
 * but those starting in a purged page (on no list, and not live). */
static bool pool_page_tagged(const pm_pool_t *pool, const char *start, unsigned page)
{
    size_t size = pool->block_size;
    uint32_t from = (uint32_t)((size_t)page * PM_OS_PAGE_SIZE / size);
    uint32_t to, unused;
    pool_page_blocks(pool, page, &unused, &to);
    for (uint32_t i = from; i < to; i++) {
        const char *b = start + (size_t)i * size;
        if (!pm_block_tagged(b) && !(pool->purged_pages & (1u << pool_page_of(start, b))))
            return false;
    }
    return true;
}

/* Whether the owner reads the tags of blocks that may be live, in
 * address order, to spare a walk of the free list, which reads the free
 * blocks in list order, each a cache miss once the pool has gone cold, one
 * after the other: pm_bench_phases, which purges the pools its random free
 * left sparse, took 1.8 times as long with the walk alone
 * (bench/results/free-tag.md). Not under the sanitizers, which would see
 * those reads of blocks the program may be writing on other threads, for
 * all they know, as races. */
#ifdef PM_SANITIZED
#define POOL_READS_LIVE_TAGS 0
#else
#define POOL_READS_LIVE_TAGS 1
#endif

/* Whether the pool's tags tell its free blocks: as many carved blocks
 * outside purged pages hold the free tag as I3 says are free. Every free
 * block holds it (I6), so they are then the free ones; else a live block
 * holds it too. */
static bool pool_tags_exact(const pm_pool_t *pool)
{
    if (!POOL_READS_LIVE_TAGS)
        return false;
    const char *start = pm_pool_start(pool);
    size_t size = pool->block_size;
    uintptr_t tag = pm_block_keys.free_tag;
    unsigned tagged = 0;
    for (unsigned page = 0; page < POOL_PAGES; page++) {
        if (pool->purged_pages & (1u << page))
            continue;
        uint32_t from, to;
        pool_page_blocks(pool, page, &from, &to);
        for (const char *b = start + (size_t)from * size, *end = start + (size_t)to * size;
             b < end; b += size)
            tagged += ((const pm_block_t *)b)->tag == tag;
    }
    return tagged + pool_purged_blocks(pool) + pm_pool_used(pool) == pool->carve_index;
}

/* Links the pool's free blocks, when pool_tags_exact, lowest address
 * first, less those that start in a page of `skip`, and returns the head:
 * the blocks with the tag, in one pass. */
static pm_block_t *pool_link_tagged(const pm_pool_t *pool, unsigned skip)
{
    char *start = pm_pool_start(pool);
    size_t size = pool->block_size;
    uintptr_t tag = pm_block_keys.free_tag;
    /* The list's head is linked from a stand-in, so that every block is
     * linked from the one before it with no test for the first. */
    pm_block_t before, *last = &before;
    for (unsigned page = 0; page < POOL_PAGES; page++) {
        if ((pool->purged_pages | skip) & (1u << page))
            continue;
        uint32_t from, to;
        pool_page_blocks(pool, page, &from, &to);
        for (char *b = start + (size_t)from * size, *end = start + (size_t)to * size; b < end;
             b += size) {
            if (((pm_block_t *)b)->tag == tag) {
                pm_link_set(last, (pm_block_t *)b);
                last = (pm_block_t *)b;
            }
        }
    }
    pm_link_set(last, NULL);
    return pm_link_get(&before);
}

/* The pool's free blocks, a bit each by block index, into map[], from its
 * free list: each link checked (I12), a block met twice or more blocks
 * than the pool holds being a cycle. By the owner, when its tags cannot
 * tell (pool_link_tagged). */
static void pool_free_map(const pm_pool_t *pool, uint64_t map[PM_POOL_MAP_WORDS])
{
    pm_libc_memset(map, 0, PM_POOL_MAP_WORDS * sizeof(uint64_t));
    for (pm_block_t *b = pool->free_list, *next; b != NULL; b = next) {
        if (!pm_link_next(b, &next))
            pm_pool_corrupt_link(pool, b);
        uint32_t i = pool_block_index(pool, b);
        uint64_t bit = (uint64_t)1 << (i % 64);
        if (i >= pool->capacity || (map[i / 64] & bit))
            pm_pool_corrupt_link(pool, b);
        map[i / 64] |= bit;
    }
}

/* Links the pool's free blocks (in `free_map`, pool_free_map's), lowest
 * address first, less those that start in a page of `skip`, and returns
 * the head. A word of the map at a time, a bit scan a free block. Their
 * tags stay as they are. */
static pm_block_t *pool_link_free(const pm_pool_t *pool, const uint64_t free_map[PM_POOL_MAP_WORDS],
                                  unsigned skip)
{
    char *start = pm_pool_start(pool);
    size_t size = pool->block_size;
    pm_block_t before, *last = &before;
    for (unsigned w = 0; w < PM_POOL_MAP_WORDS; w++) {
        for (uint64_t bits = free_map[w]; bits != 0; bits &= bits - 1) {
            char *b = start + ((size_t)w * 64 + (size_t)__builtin_ctzll(bits)) * size;
            if (skip & (1u << pool_page_of(start, b)))
                continue;
            pm_link_set(last, (pm_block_t *)b);
            last = (pm_block_t *)b;
        }
    }
    pm_link_set(last, NULL);
    return pm_link_get(&before);
}

/* Calls act(ctx, address, bytes) on each run of consecutive pages of the
 * pool in `pages` (bit p: page p); returns their bytes. */
typedef void pool_run_fn(void *ctx, void *addr, size_t bytes);
static size_t pool_page_runs(const pm_pool_t *pool, unsigned pages, pool_run_fn *act, void *ctx)
{
    char *start = pm_pool_start(pool);
    size_t bytes = 0;
    for (unsigned page = 0; pages >> page != 0; page++) {
        if (!(pages & (1u << page)))
            continue;
        unsigned run = 1;
        while (pages & (1u << (page + run)))
            run++;
        act(ctx, start + (size_t)page * PM_OS_PAGE_SIZE, run * PM_OS_PAGE_SIZE);
        bytes += run * PM_OS_PAGE_SIZE;
        page += run - 1;
    }
    return bytes;
}

/* Refused by the kernel, carving's writes fault the pages in. */
static void pool_populate(void *ctx, void *addr, size_t bytes)
{
    (void)ctx;
    (void)pm_os_populate(addr, bytes);
}

/* Where a purge's runs go: the caller's batch (or NULL for now), which
 * waits until after the owner has allocated again if `later`. */
typedef struct {
    pm_os_purge_batch_t *batch;
    const pm_pool_t *pool;
    bool later;
} pool_purge_to_t;

/* ctx: a pool_purge_to_t. A run may wait for a batch flushed later than
 * the owner's next allocation only if no block on the free list reaches
 * into it: one that starts in it is off the list (I3), but one that starts
 * before it and ends in it stays there (it is free: a live one would have
 * kept the page), and handed out and written before the flush, it would
 * lose what was written past the run's first byte. Such a run is purged at
 * once; none is for classes whose blocks tile a page (16, 32 ... 512 B). */
static void pool_purge_run(void *ctx, void *addr, size_t bytes)
{
    const pool_purge_to_t *to = ctx;
    pm_os_purge_batch_t *batch = to->batch;
    if (to->later &&
        (size_t)((char *)addr - pm_pool_start(to->pool)) % to->pool->block_size != 0)
        batch = NULL;
    pm_arena_purge_pages(batch, addr, bytes);
}

/* The purged pages' blocks go back on the free list (which is empty: the
 * caller found no block there), lowest address first, each run of pages
 * made resident in one call, as carving does: a page at a time, refilling
 * the pools pm_bench_phases' random free had left took a call and a slow
 * path for every page. They are free: a purged block is never handed out,
 * and freeing one is a double free (I6). */
static void pool_take_purged_pages(pm_pool_t *pool)
{
    char *start = pm_pool_start(pool);
    unsigned pages = pool->purged_pages;
    pool_page_runs(pool, pages, pool_populate, NULL);
    for (unsigned page = POOL_PAGES; page-- > 0;) {
        if (!(pages & (1u << page)))
            continue;
        uint32_t from, to;
        pool_page_blocks(pool, page, &from, &to);
        pool->free_list = carve_link(pool, start, from, to, pool->free_list);
    }
    pool_set_purged_pages(pool, 0);
}

/* Gives back `pages` of the pool, whose free list without their blocks is
 * `head`, as `to` says; returns the bytes. */
static size_t pool_purge_pages(pm_pool_t *pool, unsigned pages, pm_block_t *head,
                               pool_purge_to_t *to)
{
    pool->free_list = head;
    pool_set_purged_pages(pool, (uint8_t)(pool->purged_pages | pages));
    return pool_page_runs(pool, pages, pool_purge_run, to);
}

size_t pm_pool_purge_free_pages(pm_pool_t *pool, pm_os_purge_batch_t *batch, bool later)
{
    pool_purge_to_t to = {.batch = batch, .pool = pool, .later = later};
    if (pool->debug_fill || pool->carve_index == 0)
        return 0;
    char *start = pm_pool_start(pool);
    size_t size = pool->block_size;
    /* Pages all of whose blocks are carved: below the one where the first
     * uncarved block starts. */
    size_t carved_bytes = pool->carve_index < pool->capacity ? (size_t)pool->carve_index * size
                                                             : pm_pool_bytes(pm_pool_index_of(pool));
    unsigned carved_pages = (unsigned)(carved_bytes / PM_OS_PAGE_SIZE);
    unsigned candidates = ((1u << carved_pages) - 1) & ~(unsigned)pool->purged_pages;
    /* A sparse pool tries at each of its marks, most of them with a live
     * block on every page left: those pages are known by the first block
     * on them without the tag, before all the free ones are found. */
    for (unsigned page = 0; POOL_READS_LIVE_TAGS && page < carved_pages; page++)
        if ((candidates & (1u << page)) && !pool_page_tagged(pool, start, page))
            candidates &= ~(1u << page);
    if (candidates == 0)
        return 0;
    /* What is left are the pages with no block on them but free ones, if
     * the tags tell the free blocks (then the free list is linked again
     * without theirs in the same pass). */
    if (pool_tags_exact(pool))
        return pool_purge_pages(pool, candidates, pool_link_tagged(pool, candidates), &to);
    /* Else, from the free list: less the pages a live block overlaps, the
     * carved blocks that are neither free nor purged. A sampled block is
     * live like any other. */
    uint64_t free_map[PM_POOL_MAP_WORDS];
    pool_free_map(pool, free_map);
    for (unsigned w = 0; w * 64 < pool->carve_index && candidates != 0; w++) {
        uint64_t carved = pool->carve_index - w * 64 >= 64
                              ? ~(uint64_t)0
                              : ((uint64_t)1 << (pool->carve_index - w * 64)) - 1;
        for (uint64_t bits = carved & ~free_map[w]; bits != 0; bits &= bits - 1) {
            char *block = start + ((size_t)w * 64 + (size_t)__builtin_ctzll(bits)) * size;
            unsigned first = pool_page_of(start, block);
            if (pool->purged_pages & (1u << first))
                continue; /* a purged block (I3) */
            unsigned last = pool_page_of(start, block + size - 1);
            candidates &= ~(((2u << last) - 1) & ~((1u << first) - 1));
        }
    }
    if (candidates == 0)
        return 0;
    /* The free list without the blocks that start in those pages, linked
     * afresh in address order. */
    return pool_purge_pages(pool, candidates,
                            pool_link_free(pool, free_map, pool->purged_pages | candidates), &to);
}

/* ---- address order ----------------------------------------------------
 * A free list is last freed, first served, so a pool that was filled, then
 * freed in another order than it was filled (a hash set's entries, a
 * graph's nodes), hands its blocks out in that order the next time it
 * fills: the program's next structure is laid out scattered over the pool,
 * where the first one was in the order it was built. Programs that walk
 * their objects in the order they made them then miss the cache on every
 * step that lands elsewhere. Python's collector does, over every tracked
 * object at each collection: in bench/workloads/python_objects.py, up to
 * 14% of the dicts made one after another in a round after the first were
 * not neighbours (3% in the first), and each such round took 24% longer
 * than the first, where under jemalloc (whose slabs hand out their lowest
 * free region first) they took as long. So a pool that starts serving with
 * most of its blocks free, and whose list does not go from block to
 * neighbour, has its free list linked again, lowest address first
 * (bench/results/address-order.md): walked into a bitmap of its free
 * blocks, then linked from it. Mostly free, so that the relinking (a read
 * and a write a free block, paid once) goes to blocks the pool is about to
 * hand out in a row, not to the few a busy pool's frees put back; a pool
 * just carved is in order already. */

/* Whether the free list's first steps go from block to neighbour, either
 * way: a carved stretch goes up (wrapping once if coloured), a run freed
 * in the order it was made goes down. */
#define ORDER_PROBE_STEPS 4
static bool free_list_in_order(const pm_pool_t *pool)
{
    const pm_block_t *b = pool->free_list;
    for (unsigned i = 0; i < ORDER_PROBE_STEPS; i++) {
        pm_block_t *next;
        if (!pm_link_next(b, &next))
            pm_pool_corrupt_link(pool, b);
        if (next == NULL)
            return true;
        uintptr_t apart = (uintptr_t)next > (uintptr_t)b ? (uintptr_t)next - (uintptr_t)b
                                                        : (uintptr_t)b - (uintptr_t)next;
        if (apart != pool->block_size)
            return false;
        b = next;
    }
    return true;
}

void pm_pool_order_free_list(pm_pool_t *pool)
{
    /* The caller's test read used_word alone (below the pool's count while
     * it has a mark): the count itself here. */
    if (!pm_pool_mostly_free(pool, pm_pool_used(pool)) || pool->debug_fill ||
        free_list_in_order(pool))
        return;
    if (pool_tags_exact(pool)) {
        pool->free_list = pool_link_tagged(pool, 0);
        return;
    }
    uint64_t free_map[PM_POOL_MAP_WORDS];
    pool_free_map(pool, free_map);
    pool->free_list = pool_link_free(pool, free_map, 0);
}

/* For another thread than the owner's (IDLE OWNERS, heap.c): gives back
 * the pages of a pool in use that only blocks for which waiting(block, ctx)
 * holds overlap, and returns them (bit p: page p). Those are blocks freed
 * from other threads and taken off the heap's ring and stack by the
 * caller: no byte of such a page is live or on a free list, so nothing the
 * owner does can reach it. Reads only what the pool's blocks pin (its class,
 * from the arena header); debug mode's freed pattern keeps its pools
 * whole. */
unsigned pm_pool_purge_waiting_pages(const pm_pool_t *pool,
                                     bool (*waiting)(const void *block, void *ctx), void *ctx)
{
    unsigned class_index = pm_pool_class_shared(pool);
    if (class_index == PM_CLASS_NONE || pool->debug_fill)
        return 0;
    char *start = pm_pool_start(pool);
    size_t size = pm_class_size(class_index);
    size_t bytes = pm_pool_bytes(pm_pool_index_of(pool));
    size_t capacity = bytes / size;
    unsigned pages = 0;
    for (unsigned page = 0; page < bytes / PM_OS_PAGE_SIZE; page++) {
        /* The blocks overlapping the page: from the one holding its first
         * byte to the last starting before its end. */
        size_t from = (size_t)page * PM_OS_PAGE_SIZE / size;
        size_t to = ((size_t)(page + 1) * PM_OS_PAGE_SIZE + size - 1) / size;
        if (to > capacity)
            to = capacity;
        size_t i = from;
        while (i < to && waiting(start + i * size, ctx))
            i++;
        if (i == to && from < to)
            pages |= 1u << page;
    }
    pool_purge_to_t now = {.batch = NULL, .pool = pool, .later = false};
    pool_page_runs(pool, pages, pool_purge_run, &now);
    return pages;
}

/* By the owner, taking back the blocks of a parcel (heap.c): the pages
 * another thread gave back under them, every block starting in which it is
 * about to take back without a write (heap_take_back), as purged (I3). */
void pm_pool_mark_purged(pm_pool_t *pool, unsigned pages)
{
    pool_set_purged_pages(pool, (uint8_t)(pool->purged_pages | pages));
}

/* The pages of the stretch carving is about to write, those below
 * `end_page` not yet touched, are made resident first, in one call, where
 * writing its links would take a page fault on each. A stretch's blocks
 * end in its last page (pm_pool_carve), so these are pages the program
 * writes too, when it has the blocks. */
static void pool_touch_pages(pm_pool_t *pool, char *start, unsigned end_page)
{
    if (end_page <= pool->touched_pages)
        return;
    pm_os_populate(start + (size_t)pool->touched_pages * PM_OS_PAGE_SIZE,
                   (size_t)(end_page - pool->touched_pages) * PM_OS_PAGE_SIZE);
    pool->touched_pages = (uint8_t)end_page;
}

/* Carves the blocks that end in the OS page where the next uncarved block
 * ends, so a pool's pages are touched one at a time, in order, and only
 * when a block is about to need them: a block that runs from one page into
 * the next goes with the next page's stretch, not with its first page's,
 * where it made the next page resident (pool_touch_pages) before any block
 * handed out needed it. A program holding 16 blocks of each class in
 * each of 4 threads (blocks of 288 to 512 bytes take 2 pages a pool) had
 * 305 pages of its arenas resident, and 203 without that page ahead
 * (glibc's 4 arenas: 140).
 *
 * A coloured pool's first stretch is handed out from its colour on, wrapping
 * round: a block some cache lines into the page, varied by arena and pool
 * (slab colouring). Every pool starts on a page boundary, so otherwise the
 * first block it hands out, often the one a program goes on reusing, would
 * sit at page offset 0: competing for one L1 set with every other pool's,
 * and falsely aliasing (4K aliasing) the program's page-aligned buffers,
 * whose loads then wait on stores to the block. Seen on
 * pm_bench_falseshare: 2 runs in 5 took 1.3-2x as long until its arrays
 * were moved off page offset 0.
 *
 * Only the first few pools of a class in a heap are coloured (the caller's
 * choice), where a program's small working set lives: a stretch that does
 * not start at its page's first line costs the hardware prefetcher its
 * stream, and a program that walks its objects in the order it made them
 * (Python's garbage collector) crosses a pool's first page every 16 KiB.
 * Walking 400,000 64-byte blocks in allocation order, 20 times (10 runs
 * alternating, medians): 0.033 s with every pool coloured, 0.014 s with
 * the first four of a class, 0.014 s with none, mimalloc 0.012 s; and
 * falseshare with none was slow again in 6 runs of 10, with four in 0 of
 * 12. */
bool pm_pool_carve(pm_pool_t *pool, bool coloured)
{
    /* Its pages may come to span more than the first: the next time it
     * empties, its owner decides again whether to keep it (I4). */
    pm_pool_set_kept(pool, false);
    if (PM_UNLIKELY(pool->purged_pages != 0)) {
        pool_take_purged_pages(pool);
        return true;
    }
    if (pool->carve_index >= pool->capacity)
        return false;
    char *start = pm_pool_start(pool);
    size_t size = pool->block_size;
    uintptr_t first_end = (uintptr_t)start + ((size_t)pool->carve_index + 1) * size;
    uintptr_t page_end = (first_end + PM_OS_PAGE_SIZE - 1) & ~(uintptr_t)(PM_OS_PAGE_SIZE - 1);
    uint32_t stop = pool_blocks_within(pool, page_end - (uintptr_t)start);
    pool_touch_pages(pool, start, (unsigned)((page_end - (uintptr_t)start) / PM_OS_PAGE_SIZE));
    uint32_t colour = pool->carve_index;
    if (colour == 0 && coloured) {
        uintptr_t line = ((uintptr_t)start >> 12) * 0x9e3779b97f4a7c15ull >> 58; /* 0..63 */
        colour = (uint32_t)(line * PM_CACHE_LINE / size);
        if (colour >= stop)
            colour = 0;
    }
    pm_block_t *head = carve_link(pool, start, pool->carve_index, colour, pool->free_list);
    pool->free_list = carve_link(pool, start, colour, stop, head);
    pool->carve_index = stop;
    pm_pool_refresh_fast_free(pool);
    return true;
}

void pm_pool_reuse(pm_pool_t *pool, unsigned class_index, struct pm_heap *heap)
{
    /* Of its class still, with its blocks freed in the order they were
     * made or the reverse: its list goes from block to neighbour already,
     * and it serves as it is (a batch freed whole: 6% fewer instructions
     * than carving again). */
    if (pool->class_index == class_index && pool->purged_pages == 0 && !pool->debug_fill &&
        pool->free_list != NULL && free_list_in_order(pool))
        return;
    /* The page its carving reached: its pages up to there are resident
     * (unless some were purged, and then it starts from nothing). */
    size_t reached = pool->purged_pages != 0 ? 0
                                              : ((size_t)pool->carve_index * pool->block_size +
                                                 PM_OS_PAGE_SIZE - 1) &
                                                    ~(size_t)(PM_OS_PAGE_SIZE - 1);
    pm_pool_init(pool, class_index, heap);
    if (reached == 0)
        return;
    char *start = pm_pool_start(pool);
    uint32_t stop = pool_blocks_within(pool, reached);
    pool_touch_pages(pool, start, (unsigned)(reached / PM_OS_PAGE_SIZE));
    pool->free_list = carve_link(pool, start, 0, stop, NULL);
    pool->carve_index = stop;
    pm_pool_refresh_fast_free(pool);
}

void pm_pool_purge_empty(pm_pool_t *const *pools, unsigned count)
{
    pm_arena_purge_pools(pools, count);
    for (unsigned i = 0; i < count; i++) {
        pools[i]->free_list = NULL; /* its links were in the purged pages */
        pools[i]->carve_index = 0;
        pool_set_purged_pages(pools[i], 0);
    }
}

void pm_pool_corrupt_link(const pm_pool_t *pool, const pm_block_t *block)
{
    pm_fatal("corrupted free list (a freed block was written to)", block, pool->class_index);
}

void pm_pool_debug_freed(const pm_pool_t *pool, void *block)
{
    memset((char *)block + sizeof(pm_block_t), PM_DEBUG_FREED_BYTE,
           pool->block_size - sizeof(pm_block_t));
}

void pm_pool_debug_reuse(const pm_pool_t *pool, void *block)
{
    const unsigned char *byte = (const unsigned char *)block + sizeof(pm_block_t);
    const unsigned char *end = (const unsigned char *)block + pool->block_size;
    for (; byte < end; byte++) {
        if (*byte != PM_DEBUG_FREED_BYTE)
            pm_fatal("write after free (POOLMALLOC_DEBUG found the freed pattern changed)",
                     byte, pool->class_index);
    }
    memset(block, PM_DEBUG_FRESH_BYTE, pool->block_size);
}

/* The diagnosis of each misuse, per operation: glibc's wording where glibc
 * has one ("double free"), and the kind of address otherwise. */
enum pool_misuse {
    MISUSE_FREED, MISUSE_NOT_BLOCK_START, MISUSE_UNUSED_POOL, MISUSE_ARENA_HEADER, MISUSE_NO_ARENA
};

static const char *const pool_misuse_message[][5] = {
    [PM_OP_FREE] = {"double free", "invalid free (not the start of a block)",
                    "invalid free (pointer into an unused pool)",
                    "invalid free (pointer into an arena header)",
                    "invalid free (pointer into poolmalloc's arena space, in no arena)"},
    [PM_OP_REALLOC] = {"realloc of a freed block", "invalid realloc (not the start of a block)",
                       "invalid realloc (pointer into an unused pool)",
                       "invalid realloc (pointer into an arena header)",
                       "invalid realloc (pointer into poolmalloc's arena space, in no arena)"},
    [PM_OP_USABLE_SIZE] = {"malloc_usable_size of a freed block",
                           "invalid malloc_usable_size (not the start of a block)",
                           "invalid malloc_usable_size (pointer into an unused pool)",
                           "invalid malloc_usable_size (pointer into an arena header)",
                           "invalid malloc_usable_size (pointer into poolmalloc's arena space, "
                           "in no arena)"},
};

/* Aborts on a misuse; a pointer into the arena space where no arena is
 * (I13) fails one of pm_pool_checked's tests, and is named for what it is
 * here, so the valid path never asks the registry. */
static PM_NORETURN void pool_misuse(const void *block, pm_op_t op, enum pool_misuse kind,
                                    int class_index)
{
    if (!pm_registry_contains(block)) {
        kind = MISUSE_NO_ARENA;
        class_index = -1;
    }
    pm_fatal(pool_misuse_message[op][kind], block, class_index);
}

/* I6, exact: a block start of the pool that is not live. The pool's
 * free list is walked only for a block holding the tag, which a live one
 * holds only if the program copied it from a freed block. */
bool pm_pool_block_free(const pm_pool_t *pool, const void *block)
{
    if (pool_block_index(pool, block) >= pool->carve_index || pm_pool_page_purged(pool, block))
        return true;
    if (!pm_block_tagged(block))
        return false;
    const pm_block_t *b = pool->free_list;
    for (unsigned steps = 0; b != NULL && steps <= pool->capacity; steps++) {
        if (b == block)
            return true;
        pm_block_t *next;
        if (!pm_link_next(b, &next))
            pm_pool_corrupt_link(pool, b);
        b = next;
    }
    if (b != NULL)
        pm_fatal("corrupted free list (a cycle)", b, pool->class_index);
    return false;
}

/* pm_pool_checked's last test for the owner, out of line: its walk of the
 * free list is a call whose registers the other thread's path, a leaf
 * with no frame otherwise, would save and restore on every remote free. */
static __attribute__((noinline)) pm_pool_t *pool_checked_by_owner(pm_pool_t *pool, void *block,
                                                                  pm_op_t op, unsigned class_index)
{
    if (pm_pool_block_free(pool, block))
        pool_misuse(block, op, MISUSE_FREED, (int)class_index);
    return pool;
}

/* Reads only the arena of the block, which is mapped or, in the arena
 * space, reads as zeros: a pool there is unused (pm_pool_class_shared), so
 * the first test fails for every address of it. */
pm_pool_t *pm_pool_checked(void *block, pm_op_t op, bool by_owner)
{
    if (((uintptr_t)block & (PM_ARENA_SIZE - 1)) < PM_ARENA_HEADER_SIZE)
        pool_misuse(block, op, MISUSE_ARENA_HEADER, -1);
    pm_pool_t *pool = pm_pool_of(block);
    /* From the arena header's copies, not the descriptor: another thread's
     * free reads nothing its owner writes on every call. */
    unsigned class_index = pm_pool_class_shared(pool);
    if (class_index == PM_CLASS_NONE)
        pool_misuse(block, op, MISUSE_UNUSED_POOL, -1);
    /* I7: a block starts exactly at a multiple of the block size, and
     * ends within the pool; the reciprocal divides exactly within a pool
     * (sizeclass.c). */
    uint64_t offset = (uintptr_t)block - (uintptr_t)pm_pool_start(pool);
    uint64_t size = pm_class_size(class_index);
    uint64_t index = (offset * pm_class_reciprocal[class_index]) >> 32;
    if (index * size != offset || offset + size > pm_pool_bytes(pm_pool_index_of(pool)))
        pool_misuse(block, op, MISUSE_NOT_BLOCK_START, (int)class_index);
    /* I6: exact for the owner. Another thread reads the block's tag
     * alone, not the descriptor's line, which the owner writes on every
     * call: a block never carved or given back in a purged page, freed
     * from there, is caught by the owner as it takes the block back
     * (pm_heap_free's remote path, heap.c). */
    if (by_owner)
        return pool_checked_by_owner(pool, block, op, class_index);
    if (pm_block_tagged(block))
        pool_misuse(block, op, MISUSE_FREED, (int)class_index);
    return pool;
}

/* I3, walked in full: for tests and debug checks, when quiescent. */
bool pm_pool_is_valid(const pm_pool_t *pool)
{
    if (pool->class_index == PM_CLASS_NONE)
        return PM_VALID(pm_pool_used(pool) == 0 && pm_pool_heap(pool) == NULL &&
                        pm_pool_class_shared(pool) == PM_CLASS_NONE &&
                        pool->sampled_count == 0); /* I2 */
    /* I9: the arena header's copy is the descriptor's */
    if (!PM_VALID(pm_pool_class_shared(pool) == pool->class_index && pm_pool_heap(pool) != NULL))
        return false;
    unsigned used = pm_pool_used(pool);
    if (!PM_VALID(pool->carve_index <= pool->capacity && pool->sampled_count <= used))
        return false;
    /* A mark is below used_count, so free's subtract reaches it first. */
    if (!PM_VALID(pool->used_mark == 0 || used > pool->used_mark))
        return false;
    /* free's fast path takes what it may (I6, I7, I11). */
    if (!PM_VALID(pool->fast_free_bound == pm_pool_fast_free_bound(pool)))
        return false;
    const char *start = pm_pool_start(pool);
    unsigned free_blocks = 0;
    for (pm_block_t *b = pool->free_list, *next; b != NULL; b = next) {
        /* a cycle, or a link out of the pool (I12) */
        if (!PM_VALID(++free_blocks <= pool->capacity) || !PM_VALID(pm_link_next(b, &next)))
            return false;
        /* a purged block on the list (I3) */
        if (!PM_VALID(!(pool->purged_pages & (1u << pool_page_of(start, b)))))
            return false;
        /* a free block holds the tag (I6) */
        if (!PM_VALID(pm_block_tagged(b)))
            return false;
    }
    return PM_VALID(free_blocks + (pool->capacity - pool->carve_index) + pool_purged_blocks(pool) +
                        used ==
                    pool->capacity);
}
