/* system.c — owns the system path: requests poolmalloc does not serve from
 * pools go to glibc's malloc through its __libc_* entry points, which stay
 * glibc's even when the malloc family is interposed (no dlsym bootstrap).
 * Never touches pool or arena state; counts in the calling thread's heap. */
#include "internal.h"
#include "libc_entry.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

/* glibc returns memory to the OS only from the top of its heap, and only
 * when a free leaves a large enough free chunk there: a block still live,
 * or one parked in glibc's per-thread cache, near the top keeps everything
 * freed below it resident for good. A program that frees most of its large
 * blocks would stay at its peak, as it does without poolmalloc. So the
 * glibc path's live bytes are followed process-wide (settled from each
 * heap in steps of PM_SYSTEM_SETTLE_BYTES), and once they have stayed at
 * half or less of the most they were since the last trim for
 * POOLMALLOC_PURGE_DELAY, glibc's malloc_trim gives the free pages inside
 * its heap back. The delay is the pools' (I10), for the same reason: a
 * program that drops a structure and builds the next within the delay
 * (python_objects.py, every round) would pay a trim and then the page
 * faults of its next round, 8,500 more of them in 5 rounds when this
 * trimmed at once. The trim comes from the next settle, or pool taken or
 * given back by its owner, after the delay, whichever is first; never from
 * the dump thread, which glibc does not know of (dump.c).
 * A collapse, down to an eighth of the mark, is trimmed at once
 * (system_trim_collapse): a program that lets go of nearly all its large
 * blocks is at its most likely to be measured, or to stay small. A
 * program whose large blocks churn at a steady level never trims. */
#define SYSTEM_TRIM_MIN_MARK ((int64_t)1 << 20)

static struct {
    _Atomic int64_t live;                   /* settled: per heap, off by 2 steps and a request */
    _Atomic int64_t mark;                   /* the most `live` was since the last trim */
    _Atomic uint64_t halved_ms;             /* when live fell to mark / 2; 0: it has not */
    _Atomic uint64_t collapse_ms;           /* a collapse trimmed at once, watched; 0: none */
    _Atomic int64_t collapse_mark;          /* the mark it fell from */
    _Atomic int64_t collapse_low;           /* the least live since, while watched */
    _Atomic uint64_t cycle_ms;              /* when one last came back within the delay */
    _Atomic int64_t cycle_low;              /* the least live of that one's round */
    int (*_Atomic glibc_trim)(size_t pad); /* NULL: none to call */
} settled;

void pm_system_set_trim(int (*glibc_malloc_trim)(size_t pad))
{
    atomic_store_explicit(&settled.glibc_trim, glibc_malloc_trim, memory_order_relaxed);
}

/* The mark starts again from the live bytes, and glibc's malloc_trim runs,
 * after the calling thread's chunk cache is given back to glibc. */
static int system_trim_now(size_t pad)
{
    pm_system_cache_flush(pm_thread_heap);
    atomic_store_explicit(&settled.mark, atomic_load_explicit(&settled.live, memory_order_relaxed),
                          memory_order_relaxed);
    int (*trim)(size_t) = atomic_load_explicit(&settled.glibc_trim, memory_order_relaxed);
    return trim != NULL ? trim(pad) : 0;
}

int pm_system_trim(size_t pad)
{
    atomic_store_explicit(&settled.halved_ms, 0, memory_order_relaxed);
    return system_trim_now(pad);
}

void pm_system_trim_if_due(void)
{
    uint64_t halved = atomic_load_explicit(&settled.halved_ms, memory_order_relaxed);
    if (PM_LIKELY(halved == 0) || pm_os_coarse_ms() - halved < pm_options.purge_delay_ms)
        return;
    /* One thread wins the stamp and trims. */
    if (atomic_compare_exchange_strong_explicit(&settled.halved_ms, &halved, 0,
                                                memory_order_relaxed, memory_order_relaxed))
        system_trim_now(0);
}

/* A collapse (live bytes at most an eighth of the mark: the program let go
 * of nearly all its large blocks) is trimmed at once, not after the delay,
 * unless the last one came back within the delay (to 3/4 of what it fell
 * from) less than PM_CYCLE_DELAYS delays ago: a program that drops and
 * rebuilds everything in rounds would pay a trim and its page faults every
 * round. The first round pays once. A fall to an eighth of the least that
 * round fell to, if that was SYSTEM_TRIM_MIN_MARK or more (below, an
 * eighth is within the settling's steps), is no round: the program let go
 * of what it kept through the cycle, which is over (as for the pools,
 * arena.c's collapse_note).
 * Returns true if it trimmed. */
static bool system_trim_collapse(int64_t mark, int64_t live)
{
    uint64_t now = pm_os_coarse_ms();
    uint64_t cycle = atomic_load_explicit(&settled.cycle_ms, memory_order_relaxed);
    int64_t cycle_low = atomic_load_explicit(&settled.cycle_low, memory_order_relaxed);
    if (cycle != 0 && now - cycle < PM_CYCLE_DELAYS * pm_options.purge_delay_ms &&
        (cycle_low < SYSTEM_TRIM_MIN_MARK || live * PM_COLLAPSE_DIVISOR > cycle_low))
        return false;
    /* One thread wins the mark and trims. */
    if (!atomic_compare_exchange_strong_explicit(&settled.mark, &mark, live, memory_order_relaxed,
                                                 memory_order_relaxed))
        return false;
    atomic_store_explicit(&settled.cycle_ms, 0, memory_order_relaxed);
    atomic_store_explicit(&settled.collapse_mark, mark, memory_order_relaxed);
    atomic_store_explicit(&settled.collapse_low, live, memory_order_relaxed);
    atomic_store_explicit(&settled.collapse_ms, now != 0 ? now : 1, memory_order_relaxed);
    pm_system_trim(0);
    return true;
}

/* After a collapse was trimmed: growing back to 3/4 of it within the delay
 * is a cycle; not within the delay, it was not. */
static void system_note_regrowth(int64_t live)
{
    uint64_t at = atomic_load_explicit(&settled.collapse_ms, memory_order_relaxed);
    if (PM_LIKELY(at == 0))
        return;
    uint64_t now = pm_os_coarse_ms();
    if (now - at < pm_options.purge_delay_ms &&
        live < atomic_load_explicit(&settled.collapse_mark, memory_order_relaxed) / 4 * 3)
        return; /* still watching */
    if (now - at < pm_options.purge_delay_ms) {
        atomic_store_explicit(&settled.cycle_low,
                              atomic_load_explicit(&settled.collapse_low, memory_order_relaxed),
                              memory_order_relaxed);
        atomic_store_explicit(&settled.cycle_ms, now != 0 ? now : 1, memory_order_relaxed);
    }
    atomic_store_explicit(&settled.collapse_ms, 0, memory_order_relaxed);
}

void pm_system_settle(int64_t delta)
{
    int64_t live = atomic_fetch_add_explicit(&settled.live, delta, memory_order_relaxed) + delta;
    int64_t mark = atomic_load_explicit(&settled.mark, memory_order_relaxed);
    while (live > mark && !atomic_compare_exchange_weak_explicit(&settled.mark, &mark, live,
                                                                 memory_order_relaxed,
                                                                 memory_order_relaxed))
        continue;
    uint64_t halved = atomic_load_explicit(&settled.halved_ms, memory_order_relaxed);
    if (delta > 0) {
        system_note_regrowth(live);
    } else {
        if (atomic_load_explicit(&settled.collapse_ms, memory_order_relaxed) != 0 &&
            live < atomic_load_explicit(&settled.collapse_low, memory_order_relaxed))
            atomic_store_explicit(&settled.collapse_low, live, memory_order_relaxed);
        if (pm_options.trim_glibc && mark >= SYSTEM_TRIM_MIN_MARK &&
            live <= mark / PM_COLLAPSE_DIVISOR && system_trim_collapse(mark, live))
            return;
    }
    if (live > mark / 2) {
        if (halved != 0) /* grown back within the delay: a cycle, not a fall */
            atomic_store_explicit(&settled.halved_ms, 0, memory_order_relaxed);
        return;
    }
    if (halved == 0 && pm_options.trim_glibc && mark >= SYSTEM_TRIM_MIN_MARK) {
        /* Stamped at least 1, which is not "never". */
        uint64_t now = pm_os_coarse_ms();
        atomic_store_explicit(&settled.halved_ms, now != 0 ? now : 1, memory_order_relaxed);
    }
    pm_system_trim_if_due();
}

void pm_system_settle_heap(pm_heap_t *heap)
{
    int64_t delta = heap->system_unsettled;
    if (heap == &pm_heap_empty || (delta < PM_SYSTEM_SETTLE_BYTES && delta > -PM_SYSTEM_SETTLE_BYTES))
        return;
    heap->system_unsettled = 0;
    pm_system_settle(delta);
}

/* The lowest a heap's unsettled bytes fall to on free's fast path: at a
 * step below, the free settles them. Once profiling is on, nothing is low
 * enough, and every free takes the slow path, where its record is dropped:
 * one compare serves both, where the flag cost free a load and a branch
 * more. */
static int64_t system_free_floor = -PM_SYSTEM_SETTLE_BYTES;

void pm_system_free_profiled(void)
{
    __atomic_store_n(&system_free_floor, INT64_MAX, __ATOMIC_RELAXED);
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

static inline size_t glibc_size_word(const void *ptr)
{
    return ((const size_t *)ptr)[-1];
}

static bool glibc_chunk_mmapped(const void *ptr)
{
    return (glibc_size_word(ptr) & GLIBC_CHUNK_IS_MMAPPED) != 0;
}

/* The usable size of a chunk carved from one of glibc's heaps (not mmap'd),
 * from its size word. */
static inline size_t glibc_heap_chunk_usable(size_t size_word)
{
    return (size_word & ~GLIBC_CHUNK_FLAGS) - GLIBC_SIZE_WORD;
}

size_t pm_system_usable_size(void *ptr)
{
    size_t size_word = glibc_size_word(ptr);
    if (size_word & GLIBC_CHUNK_IS_MMAPPED)
        return glibc_heap_chunk_usable(size_word) - GLIBC_SIZE_WORD;
    return glibc_heap_chunk_usable(size_word);
}

/* Every block glibc hands out through here, and every one given back, is
 * counted at its usable size (read from the chunk glibc is about to touch
 * anyway) in the calling thread's heap: no shared counter on this path.
 *
 * The common case (a thread with a heap, a chunk from glibc's heap, not
 * mmap'd, no sample due, no debug pattern) is done inline; everything else
 * is one tail call, so that the common case saves no registers around
 * calls it does not make (that was a quarter of poolmalloc's own cost on a
 * large request). malloc's fast path does not test its heap's unsettled
 * bytes: they settle at its next tick (pm_heap_tick), which comes at most
 * PM_HEAP_TICK_BYTES of allocation later; free, which never ticks, tests
 * them.
 *
 * A request larger than a tick would tick at every malloc and settle at
 * malloc and free alike: malloc(300000)+free took 724 instructions a step,
 * glibc alone 307. So, unless the profile samples by these bytes, a
 * request counts towards the tick as SYSTEM_TICK_CHARGE_MAX at most (a
 * tick still comes every sixteenth such malloc: the delays that ticks give
 * back by are hundreds of milliseconds), and the slow path settles only
 * when what was unsettled before the request is a step, as a tick would:
 * a malloc and its free then cancel out in the heap, however large. What a
 * heap has not settled stays within a step, the bytes since its last tick
 * and its last slow-path request. */
#define SYSTEM_TICK_CHARGE_MAX ((int64_t)16 << 10)

static __attribute__((noinline)) void *system_account_slow(void *block, bool fresh)
{
    size_t usable = pm_system_usable_size(block);
    /* A new block's contents are undefined: under POOLMALLOC_DEBUG it holds
     * the fresh pattern, as pool blocks do (glibc's blocks are not checked
     * on reuse: glibc owns their free lists). */
    if (fresh && pm_options.debug)
        memset(block, PM_DEBUG_FRESH_BYTE, usable);
    pm_count_system_alloc(usable); /* may give the thread a heap */
    pm_heap_t *heap = pm_thread_heap;
    if (heap == &pm_heap_empty) {
        pm_profile_sample_heapless(block, usable);
        return block;
    }
    int64_t charge = (int64_t)usable;
    if (charge > SYSTEM_TICK_CHARGE_MAX && !pm_profile_enabled())
        charge = SYSTEM_TICK_CHARGE_MAX;
    if ((heap->tick_countdown -= charge) < 0)
        pm_heap_tick(heap, block, usable, usable); /* settles, this request too */
    else if (heap->system_unsettled - (int64_t)usable >= PM_SYSTEM_SETTLE_BYTES)
        pm_system_settle_heap(heap);
    return block;
}

/* A chunk of glibc's heap (not mmap'd) of `usable` bytes, for the calling
 * thread, whose heap is `heap`. No test of pm_heap_empty: its countdown is
 * always below usable. Nor of POOLMALLOC_DEBUG: no thread has a heap then
 * (I12), and the slow path fills the block. */
static inline void *system_account_heap_chunk(pm_heap_t *heap, void *block, size_t usable,
                                              bool fresh)
{
    if (PM_UNLIKELY(heap->tick_countdown < (int64_t)usable))
        return system_account_slow(block, fresh);
    pm_heap_count_system_alloc(heap, usable);
    heap->tick_countdown -= (int64_t)usable; /* no tick due (pm_heap_tick) */
    return block;
}

/* fresh: the block's contents are undefined (not calloc's, not realloc's). */
static inline void *system_account(void *block, bool fresh)
{
    if (block == NULL)
        return NULL;
    size_t size_word = glibc_size_word(block);
    if (PM_UNLIKELY(size_word & GLIBC_CHUNK_IS_MMAPPED))
        return system_account_slow(block, fresh);
    return system_account_heap_chunk(pm_thread_heap, block, glibc_heap_chunk_usable(size_word),
                                     fresh);
}

/* ---- THE CHUNK CACHE ------------------------------------------------------
 * glibc's own per-thread cache (its tcache) stops at 1,032 bytes and 7
 * chunks a size; past it, every request searches glibc's bins, splitting
 * and coalescing chunks under its arena's lock (about 570 instructions a
 * malloc+free pair of 513..16,384 bytes in pm_bench_churn large_pct=10,
 * against 70 under tcmalloc). So a thread's freed chunks of 513..262,144
 * usable bytes wait in its heap, by size class (8 a doubling: 513..576,
 * 577..640, ..., 961..1,024, 1,025..1,152, ..., 229,377..262,144), for its
 * next request of their class that they hold: the chunk at the head of the
 * request's class if it is large enough, or else the one at the head of
 * the class above, which always is. Which of the two is chosen without a
 * branch, from the head's size kept beside each list
 * (system_cache_head_units, read from the next chunk's size word as a
 * head is taken): tested on the head's own size word, in a chunk freed
 * maybe long before, the choice waited for a cache miss and, between
 * requests of random sizes, was mispredicted half the time (random
 * replacement of 2,500 buffers of 513..1,000 bytes: 36.0 -> 48.6 M a
 * second; bench/results/chunk-cache.md). The chunks stay glibc's
 * (malloc_usable_size, realloc and glibc's tunables work on them as ever),
 * and only their reuse skips glibc's search. Requests are not rounded up:
 * asking glibc for the class's size (its top) cost sqlite3's in-memory
 * table 8% more peak RSS (53.5 MiB against 49.4), its 4.3 KB pages each
 * raised to 4.5 KiB; the head's size test costs 8 instructions a step of
 * malloc(1000)+free. The range is tcmalloc's thread caches' (256 KiB);
 * to 32 KiB, jemalloc's, a buffer of 40,000 bytes took 388 instructions a
 * malloc+free in glibc's bins (glibc alone 323), now 159, and one of
 * 200,000, 480 and now 239 (bench/results/chunk-cache.md).
 *
 * A chunk is linked and tagged as a pool's free block is (I6, I12: the
 * link XORed with its address and the key, the free tag in its second
 * word, cleared as it is handed out or given back to glibc), so that a
 * corrupted link aborts before it is followed and a chunk freed twice is a
 * double free. Bounded: system_cache_room chunks a class (64 KiB of them,
 * 2 to 16) and PM_SYSTEM_CACHE_BYTES (1 MiB) a heap; a free past either
 * goes to glibc. large-mix with 256 KiB: 92 instructions a pair, 512 KiB
 * 82, 1 MiB 75 (mimalloc's 75), 4 MiB 72.
 *
 * A thread whose requests churn over more than that (random replacement
 * of buffers up to 32 KiB: glibc's own bench-malloc-thread) missed one
 * request in nine, and each miss is a search of glibc's bins, a third of
 * its time. So a cache that, between two of its owner's ticks, both
 * missed and overflowed twice or more grows, as tcmalloc's thread caches
 * do: to PM_SYSTEM_CACHE_GROWN_BYTES (4 MiB, tcmalloc's most a thread)
 * and 256 KiB of each class (2 to 32 chunks), while the grown caches'
 * extra bytes stay within PM_SYSTEM_CACHE_GROWN_TOTAL process-wide (32 MiB,
 * tcmalloc's for all its threads). A cache given back to glibc is back at
 * its first size, and its extra bytes can go to another thread. (A fork
 * child counts the grown caches of its parent's other threads, which it
 * keeps unused as they were: fewer of its own may grow.) gthread 1 x 1 M:
 * 49,175 misses -> 10,443, 154.0 M instructions -> 133.8 M
 * (bench/results/chunk-cache.md).
 * Given back to glibc when the thread exits, before any trim of glibc's
 * heap (the calling thread's: every other thread's cache is its owner's
 * alone), and at a tick of a thread that has asked nothing of the glibc
 * path for a purge delay (pm_system_cache_tick). Only threads' own heaps
 * cache: pm_heap_empty (threads with no heap, POOLMALLOC_DEBUG) and the
 * shared heap have no room, and a program that leaves glibc's heap to
 * glibc has none (system_cache_close). While profiling, a freed chunk's
 * record is dropped before it is cached (system_free_slow), and a chunk
 * handed out again is sampled, or not, as one of glibc's would be. */
#define SYSTEM_CACHE_GROW_AFTER 2
#define SYSTEM_CACHE_GROWN_EXTRA (PM_SYSTEM_CACHE_GROWN_BYTES - PM_SYSTEM_CACHE_BYTES)
/* The extra bytes of the grown caches, process-wide. */
static _Atomic uint64_t system_cache_grown_bytes;

/* The class of a request (or a chunk) of PM_SMALL_MAX + 1..PM_SYSTEM_CACHE_MAX
 * bytes. Class c ends at (9 + c % 8) << (6 + c / 8) bytes. */
static inline unsigned system_cache_class_up(size_t size)
{
    size_t below = size - 1;
    unsigned log2 = 63 - (unsigned)__builtin_clzl(below);
    return (log2 - 9) * 8 + (unsigned)(below >> (log2 - 3)) - 8;
}

static inline size_t system_cache_class_size(unsigned class_index)
{
    return (size_t)(9 + class_index % 8) << (6 + class_index / 8);
}

/* Whether the cache serves requests of `bytes` and files chunks of as many
 * usable bytes (under the class of a request of that many). */
static inline bool system_cache_covers(size_t bytes)
{
    return bytes - (PM_SMALL_MAX + 1) < PM_SYSTEM_CACHE_MAX - PM_SMALL_MAX;
}

/* Set once the program leaves glibc's heap to glibc (system_cache_close). */
static _Atomic bool system_cache_closed;

/* How many chunks of class `class_index` a cache of `bytes_max` may hold:
 * a sixteenth of its bytes (2 to 16 chunks at first, 2 to 32 grown). */
static uint8_t system_cache_class_room(unsigned class_index, uint64_t bytes_max)
{
    size_t room = bytes_max / 16 / system_cache_class_size(class_index);
    size_t most = bytes_max > PM_SYSTEM_CACHE_BYTES ? 32 : 16;
    return room < 2 ? 2 : room > most ? (uint8_t)most : (uint8_t)room;
}

/* The cache, empty, may hold `bytes_max` bytes from now on. */
static void system_cache_resize_empty(pm_heap_t *heap, uint64_t bytes_max)
{
    heap->system_cache_bytes_max = bytes_max;
    for (unsigned c = 0; c < PM_SYSTEM_CACHE_CLASSES; c++)
        heap->system_cache_room[c] = system_cache_class_room(c, bytes_max);
}

void pm_system_cache_open(pm_heap_t *heap)
{
    /* Drawn, not 0, before free's fast path tests a chunk for the tag. */
    pm_block_keys_ready();
    if (atomic_load_explicit(&system_cache_closed, memory_order_relaxed))
        return;
    system_cache_resize_empty(heap, PM_SYSTEM_CACHE_BYTES);
}

static PM_NORETURN __attribute__((noinline)) void system_cache_corrupt(const void *chunk)
{
    pm_fatal("corrupted free list (a glibc chunk's link)", chunk, -1);
}

/* The usable bytes of the chunk at the head of class `class_index` (not
 * empty). */
static inline size_t system_cache_head_usable(const pm_heap_t *heap, unsigned class_index)
{
    return glibc_heap_chunk_usable((size_t)heap->system_cache_head_units[class_index] << 4);
}

/* Whether class `class_index` has a chunk at its head of `size` usable
 * bytes or more (an empty class has 0 units: compared as a chunk size, not
 * as usable bytes, which 0 units would wrap). */
static inline bool system_cache_head_holds(const pm_heap_t *heap, unsigned class_index,
                                           size_t size)
{
    return (size_t)heap->system_cache_head_units[class_index] * 16 >= size + GLIBC_SIZE_WORD;
}

/* The chunk at the head of class `class_index`, taken out. */
static inline void *system_cache_pop(pm_heap_t *heap, unsigned class_index, void *chunk)
{
    pm_block_t *next = pm_link_get(chunk);
    if (PM_UNLIKELY((uintptr_t)next % 16 != 0))
        system_cache_corrupt(chunk);
    size_t usable = system_cache_head_usable(heap, class_index);
    heap->system_cache[class_index] = next;
    heap->system_cache_head_units[class_index] =
        next != NULL ? (uint16_t)(glibc_size_word(next) >> 4) : 0;
    heap->system_cache_room[class_index]++;
    /* Read by the stats of any thread, as the counters are. */
    PM_COUNTER_ADD(heap->system_cached_bytes, -usable);
    pm_block_clear_tag(chunk); /* live: a free of it is no double free */
    return chunk;
}

/* A free of a chunk that holds the free tag: it waits in this thread's
 * cache or another's (nothing else writes the tag: the caches clear it as
 * they let a chunk go), unless the program wrote those 8 random bytes. */
static PM_NORETURN __attribute__((noinline)) void system_cache_double_free(const void *chunk)
{
    pm_fatal("double free (of a glibc block)", chunk, -1);
}

/* Files the freed chunk in the heap's cache if there is room: true if it
 * did. The caller has counted it freed. */
static inline bool system_cache_push(pm_heap_t *heap, void *chunk, size_t usable)
{
    unsigned class_index = system_cache_class_up(usable);
    if (heap->system_cache_room[class_index] == 0 ||
        heap->system_cached_bytes + usable > heap->system_cache_bytes_max) {
        if (heap->system_cache_bytes_max != 0) /* pm_heap_empty is never written */
            heap->system_cache_overflows++;
        return false;
    }
    pm_link_set(chunk, heap->system_cache[class_index]);
    pm_block_set_tag(chunk);
    heap->system_cache[class_index] = chunk;
    heap->system_cache_head_units[class_index] = (uint16_t)((usable + GLIBC_SIZE_WORD) >> 4);
    heap->system_cache_room[class_index]--;
    PM_COUNTER_ADD(heap->system_cached_bytes, usable);
    return true;
}

/* The misses and overflows counted towards growing start again (not
 * written in pm_heap_empty, where both stay 0). */
static void system_cache_clear_counts(pm_heap_t *heap)
{
    if (heap->system_cache_misses | heap->system_cache_overflows) {
        heap->system_cache_misses = 0;
        heap->system_cache_overflows = 0;
    }
}

void pm_system_cache_flush(pm_heap_t *heap)
{
    for (unsigned c = 0; c < PM_SYSTEM_CACHE_CLASSES; c++) {
        void *chunk;
        while ((chunk = heap->system_cache[c]) != NULL)
            __libc_free(system_cache_pop(heap, c, chunk));
    }
    if (heap->system_cache_bytes_max == PM_SYSTEM_CACHE_GROWN_BYTES) {
        system_cache_resize_empty(heap, PM_SYSTEM_CACHE_BYTES);
        atomic_fetch_sub_explicit(&system_cache_grown_bytes, SYSTEM_CACHE_GROWN_EXTRA,
                                  memory_order_relaxed);
    }
    system_cache_clear_counts(heap);
}

uint64_t pm_system_caches_grown(void)
{
    return atomic_load_explicit(&system_cache_grown_bytes, memory_order_relaxed) /
           SYSTEM_CACHE_GROWN_EXTRA;
}

/* The cache grows, if the grown caches' extra bytes leave room for its. */
static void system_cache_grow(pm_heap_t *heap)
{
    uint64_t grown = atomic_load_explicit(&system_cache_grown_bytes, memory_order_relaxed);
    do {
        if (grown + SYSTEM_CACHE_GROWN_EXTRA > PM_SYSTEM_CACHE_GROWN_TOTAL)
            return;
    } while (!atomic_compare_exchange_weak_explicit(&system_cache_grown_bytes, &grown,
                                                    grown + SYSTEM_CACHE_GROWN_EXTRA,
                                                    memory_order_relaxed, memory_order_relaxed));
    heap->system_cache_bytes_max = PM_SYSTEM_CACHE_GROWN_BYTES;
    for (unsigned c = 0; c < PM_SYSTEM_CACHE_CLASSES; c++)
        heap->system_cache_room[c] += system_cache_class_room(c, PM_SYSTEM_CACHE_GROWN_BYTES) -
                                      system_cache_class_room(c, PM_SYSTEM_CACHE_BYTES);
}

/* At a tick of a cache that missed or overflowed since the last: it grows
 * if it did both often enough. Out of line: most ticks find neither, and
 * pm_system_cache_tick then saves no register. */
static __attribute__((noinline)) void system_cache_tick_growth(pm_heap_t *heap)
{
    if (heap->system_cache_misses >= SYSTEM_CACHE_GROW_AFTER &&
        heap->system_cache_overflows >= SYSTEM_CACHE_GROW_AFTER &&
        heap->system_cache_bytes_max == PM_SYSTEM_CACHE_BYTES)
        system_cache_grow(heap);
    system_cache_clear_counts(heap);
}

void pm_system_cache_tick(pm_heap_t *heap, uint64_t now_ms)
{
    if (PM_UNLIKELY(heap->system_cache_misses | heap->system_cache_overflows))
        system_cache_tick_growth(heap);
    if (PM_LIKELY(heap->system_cached_bytes == 0))
        return;
    if (heap->system.allocated_total != heap->system_cache_seen) {
        heap->system_cache_seen = heap->system.allocated_total;
        heap->system_cache_seen_ms = now_ms;
    } else if (now_ms - heap->system_cache_seen_ms >= pm_options.purge_delay_ms) {
        pm_system_cache_flush(heap);
    }
}

/* A program that leaves glibc's heap to glibc (POOLMALLOC_TRIM_GLIBC=0, or
 * glibc tuned by its environment or by mallopt) has no cache: cached chunks
 * near the top of glibc's heap would keep glibc's own trim from giving
 * back what is freed below them, and nothing would trim past them. Heaps
 * made from now on open none, and the calling thread's closes: at
 * start-up, the only one (a mallopt later leaves other threads' caches as
 * they are, 1 MiB each at most, given back as their threads exit). */
static void system_cache_close(void)
{
    atomic_store_explicit(&system_cache_closed, true, memory_order_relaxed);
    pm_heap_t *heap = pm_thread_heap;
    if (heap == &pm_heap_empty)
        return; /* never written */
    pm_system_cache_flush(heap);
    heap->system_cache_bytes_max = 0;
    for (unsigned c = 0; c < PM_SYSTEM_CACHE_CLASSES; c++)
        heap->system_cache_room[c] = 0;
}

/* A chunk for a request the cache serves, from `heap`, the calling
 * thread's: the head of the request's class if it holds the request, or
 * else the head of the class above, which does (past the last class, the
 * one always empty); NULL: none waits, a miss. Its usable bytes in
 * *usable. */
static inline void *system_cache_take(pm_heap_t *heap, size_t size, size_t *usable)
{
    unsigned class_index = system_cache_class_up(size);
    class_index += !system_cache_head_holds(heap, class_index, size);
    void *chunk = heap->system_cache[class_index];
    if (chunk == NULL) {
        if (heap->system_cache_bytes_max != 0) /* pm_heap_empty is never written */
            heap->system_cache_misses++;
        return NULL;
    }
    *usable = system_cache_head_usable(heap, class_index);
    return system_cache_pop(heap, class_index, chunk);
}

void *pm_system_malloc(size_t size)
{
    if (system_cache_covers(size)) {
        pm_heap_t *heap = pm_thread_heap;
        size_t usable;
        void *chunk = system_cache_take(heap, size, &usable);
        if (chunk != NULL)
            return system_account_heap_chunk(heap, chunk, usable, true);
    }
    return system_account(__libc_malloc(size), true);
}

/* Precondition: count x size does not overflow (alloc.c's calloc tests
 * it). A cached chunk is zeroed here, the bytes asked for. */
void *pm_system_calloc(size_t count, size_t size)
{
    size_t total = count * size;
    if (system_cache_covers(total)) {
        pm_heap_t *heap = pm_thread_heap;
        size_t usable;
        void *chunk = system_cache_take(heap, total, &usable);
        if (chunk != NULL)
            return system_account_heap_chunk(heap, memset(chunk, 0, total), usable, false);
    }
    return system_account(__libc_calloc(count, size), false);
}

void *pm_system_memalign(size_t alignment, size_t size)
{
    return system_account(__libc_memalign(alignment, size), true);
}
void *pm_system_valloc(size_t size) { return system_account(__libc_valloc(size), true); }
void *pm_system_pvalloc(size_t size) { return system_account(__libc_pvalloc(size), true); }

/* glibc gives the top of its heap back by itself whenever a free leaves
 * more than M_TRIM_THRESHOLD (128 KiB) free there. Without poolmalloc the
 * small blocks live in that heap too, and its top seldom frees up; with
 * the pools taking them, the heap holds only the large blocks, and a
 * program that churns those has its top given back and faulted in again
 * over and over: pm_bench_churn large_pct=10 made 2,674 brk calls and
 * 14,469 page faults (glibc alone: 731 and 5,226) and ran in 0.89 s, 0.63 s
 * with a threshold of 1 MiB. The glibc path's own trimming (above) gives
 * that memory back when the program really lets go of it, so once it can
 * (pm_system_set_trim, POOLMALLOC_TRIM_GLIBC=1), glibc's own waits for
 * GLIBC_TRIM_FLOOR free at the top.
 *
 * Setting the threshold turns off glibc's dynamic mmap threshold, which
 * raises M_MMAP_THRESHOLD to the size of each larger mmap'd block freed,
 * up to 32 MiB (and the trim threshold to twice that), so that a program
 * that keeps reusing large buffers stops mapping and unmapping them (and
 * faulting their pages in) every time. system_free_slow does that in its
 * stead, as glibc 2.36's free does. A program that tunes glibc itself (by
 * mallopt, or MALLOC_*_ or GLIBC_TUNABLES in its environment) is left to
 * its settings. glibc_mmap_threshold is 0 when glibc is its own. */
#define GLIBC_TRIM_FLOOR ((size_t)1 << 20)
#define GLIBC_MMAP_THRESHOLD_DEFAULT ((size_t)128 << 10)
#define GLIBC_MMAP_THRESHOLD_MAX ((size_t)32 << 20)
static _Atomic size_t glibc_mmap_threshold;

static void glibc_set_thresholds(size_t mmap_threshold)
{
    size_t trim = 2 * mmap_threshold > GLIBC_TRIM_FLOOR ? 2 * mmap_threshold : GLIBC_TRIM_FLOOR;
    __libc_mallopt(M_MMAP_THRESHOLD, (int)mmap_threshold);
    __libc_mallopt(M_TRIM_THRESHOLD, (int)trim);
}

/* The program's environment tunes what the trim threshold would turn off:
 * each such setting of glibc, by its variable or its tunable. */
static bool glibc_tuned_by_environment(void)
{
    static const struct {
        const char *variable, *tunable;
    } settings[] = {
        {"MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold"},
        {"MALLOC_TOP_PAD_", "glibc.malloc.top_pad"},
        {"MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"},
        {"MALLOC_MMAP_MAX_", "glibc.malloc.mmap_max"},
    };
    const char *tunables = getenv("GLIBC_TUNABLES");
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++)
        if (getenv(settings[i].variable) != NULL ||
            (tunables != NULL && strstr(tunables, settings[i].tunable) != NULL))
            return true;
    return false;
}

void pm_system_tune_glibc(void)
{
    if (!pm_options.trim_glibc || glibc_tuned_by_environment()) {
        system_cache_close();
        return;
    }
    if (atomic_load_explicit(&settled.glibc_trim, memory_order_relaxed) == NULL)
        return;
    atomic_store_explicit(&glibc_mmap_threshold, GLIBC_MMAP_THRESHOLD_DEFAULT, memory_order_relaxed);
    glibc_set_thresholds(GLIBC_MMAP_THRESHOLD_DEFAULT);
}

/* glibc's dynamic mmap threshold, kept for it: an mmap'd chunk of
 * `chunk_size` bytes is being freed. Two threads raising it at once may
 * leave glibc at the smaller of their sizes, as glibc's own update may. */
static void glibc_follow_mmap_threshold(size_t chunk_size)
{
    size_t threshold = atomic_load_explicit(&glibc_mmap_threshold, memory_order_relaxed);
    if (threshold == 0 || chunk_size <= threshold || chunk_size > GLIBC_MMAP_THRESHOLD_MAX ||
        !atomic_compare_exchange_strong_explicit(&glibc_mmap_threshold, &threshold, chunk_size,
                                                 memory_order_relaxed, memory_order_relaxed))
        return;
    glibc_set_thresholds(chunk_size);
}

/* The requests above 512 bytes are glibc's, so its tunables are too: a
 * program that sets M_MMAP_THRESHOLD, M_TRIM_THRESHOLD or M_ARENA_MAX gets
 * them on the blocks glibc serves, and from its first such setting glibc's
 * thresholds are the program's alone (pm_system_tune_glibc). Pools have no
 * such knobs. */
int pm_system_mallopt(int param, int value)
{
    if (param == M_TRIM_THRESHOLD || param == M_TOP_PAD || param == M_MMAP_THRESHOLD ||
        param == M_MMAP_MAX) {
        atomic_store_explicit(&glibc_mmap_threshold, 0, memory_order_relaxed);
        system_cache_close();
    }
    return __libc_mallopt(param, value);
}

/* Precondition: size > 0 (pm_realloc frees for size 0 itself). As with
 * pool blocks (alloc.c), a block that grows by less than an eighth takes a
 * quarter more than it held (pm_realloc_grown_size), and one resized within
 * its usable size stays where it is (pm_realloc_keeps), unless glibc would
 * give the spare pages back (an mmap'd chunk, which mremap shrinks): glibc
 * splits the spare tail off a chunk at every realloc that fits, so a
 * buffer grown a few bytes at a time past 512 bytes was moved at nearly
 * every step (pm_bench_grow max=2048: 0.54 s, tcmalloc 0.20; now 0.24). */
void *pm_system_realloc(void *ptr, size_t size)
{
    size_t old_usable = 0;
    if (ptr != NULL) {
        old_usable = pm_system_usable_size(ptr);
        if (size <= old_usable) {
            if (pm_realloc_keeps(old_usable, size) && !glibc_chunk_mmapped(ptr))
                return ptr;
        } else {
            size = pm_realloc_grown_size(old_usable, size);
        }
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
    moved = system_account(moved, false);
    pm_system_settle_heap(pm_thread_heap);
    return moved;
}

/* A chunk of glibc's heap, counted freed in the calling thread's heap (not
 * pm_heap_empty): into its cache if there is room, else back to glibc. */
static inline void system_free_counted(pm_heap_t *heap, void *ptr, size_t usable)
{
    if (system_cache_covers(usable)) {
        if (PM_UNLIKELY(pm_block_tagged(ptr)))
            system_cache_double_free(ptr);
        if (system_cache_push(heap, ptr, usable))
            return;
    }
    __libc_free(ptr);
}

/* free's general steps: an mmap'd chunk, a thread with no heap, a free
 * that settles its heap's bytes, POOLMALLOC_DEBUG. */
static __attribute__((noinline)) void system_free_general(void *ptr)
{
    size_t size_word = glibc_size_word(ptr);
    size_t usable = pm_system_usable_size(ptr);
    if (size_word & GLIBC_CHUNK_IS_MMAPPED)
        glibc_follow_mmap_threshold(size_word & ~GLIBC_CHUNK_FLAGS);
    else if (system_cache_covers(usable) && pm_block_keys.free_tag != 0 && pm_block_tagged(ptr))
        system_cache_double_free(ptr); /* 0: no cache has opened, none holds it */
    pm_count_system_free(usable); /* may give a thread that only frees its heap */
    if (pm_options.debug) /* a read after free reads the pattern */
        memset(ptr, PM_DEBUG_FREED_BYTE, usable);
    pm_profile_free(ptr); /* before the address can be handed out again */
    /* Into the cache too (a thread that only freed has a heap now; none
     * has room in pm_heap_empty, every thread's under POOLMALLOC_DEBUG). */
    pm_heap_t *heap = pm_thread_heap;
    if ((size_word & GLIBC_CHUNK_IS_MMAPPED) || !system_cache_covers(usable) ||
        !system_cache_push(heap, ptr, usable))
        __libc_free(ptr);
    pm_system_settle_heap(heap); /* after: a trim now gives this block back too */
}

/* A chunk whose bit in the profile's filter is set: its record, if it has
 * one, dropped before the address can be handed out again; then freed as
 * any. Out of line, so that system_free_slow makes only tail calls and
 * saves no register. */
static __attribute__((noinline)) void system_free_sampled(void *ptr, pm_heap_t *heap,
                                                          size_t usable)
{
    pm_profile_drop(ptr);
    pm_heap_count_system_free(heap, usable);
    system_free_counted(heap, ptr, usable);
}

/* Every free that free's fast path does not finish, with what it read.
 * While profiling, that is every free: a chunk of glibc's heap, from a
 * thread with a heap, whose free settles nothing, takes the fast path's
 * steps after the profile's filter (pm_profile_free_may_drop); the rest
 * take the general steps. Sent past the cache, large-mix took 1.32 times
 * the instructions with profiling on (1.04 before there was a cache;
 * bench/results/overhead.md); through the general steps, 1.067; this way,
 * 1.049. */
static __attribute__((noinline)) void system_free_slow(void *ptr, pm_heap_t *heap, size_t usable,
                                                      size_t size_word)
{
    if ((size_word & GLIBC_CHUNK_IS_MMAPPED) || heap == &pm_heap_empty ||
        heap->system_unsettled - (int64_t)usable <= -PM_SYSTEM_SETTLE_BYTES) {
        system_free_general(ptr);
        return;
    }
    if (pm_profile_free_may_drop(ptr)) {
        system_free_sampled(ptr, heap, usable);
        return;
    }
    pm_heap_count_system_free(heap, usable);
    system_free_counted(heap, ptr, usable);
}

/* As system_account: the common case inline, the rest one tail call (an
 * mmap'd chunk among the rest: glibc is about to munmap it anyway). */
void pm_system_free(void *ptr)
{
    size_t size_word = glibc_size_word(ptr);
    size_t usable = glibc_heap_chunk_usable(size_word);
    pm_heap_t *heap = pm_thread_heap;
    /* pm_heap_empty's unsettled bytes (debug mode's too, I12) are always
     * below the floor. */
    if (PM_UNLIKELY((size_word & GLIBC_CHUNK_IS_MMAPPED) ||
                    heap->system_unsettled - (int64_t)usable <=
                        __atomic_load_n(&system_free_floor, __ATOMIC_RELAXED))) {
        system_free_slow(ptr, heap, usable, size_word);
        return;
    }
    pm_heap_count_system_free(heap, usable);
    system_free_counted(heap, ptr, usable);
}
