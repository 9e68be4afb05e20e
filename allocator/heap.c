/* heap.c — owns thread heaps: which pools serve each thread and class, the
 * remote-free stacks, heap hand-over when threads exit, the per-heap
 * counters, and fork handling. Never calls malloc; takes no lock on the
 * owner's paths (see THREAD HEAPS and LOCKING in internal.h). Keeps I4, I8,
 * I9, and the heap side of I2. */
#include "internal.h"

#include <stdatomic.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <sys/single_threaded.h>

__thread pm_heap_t *pm_thread_heap __attribute__((tls_model("initial-exec"))) = &pm_heap_empty;
/* Set once this thread's heap destructor ran: later allocations of the
 * thread (from other destructors) use the shared heap. */
static __thread bool thread_heap_released __attribute__((tls_model("initial-exec")));

/* Never written: its bins are empty, so the fast path falls through, and
 * its countdown and unsettled bytes are as low as they go, so the glibc
 * path's tests of them (system.c: malloc's of the countdown, free's of the
 * unsettled bytes) send a thread with no heap to its slow path by
 * themselves, with no test of the heap's own. */
pm_heap_t pm_heap_empty = {
    .bins = PM_BINS_INITIALIZER,
    .tick_countdown = INT64_MIN,
    .system_unsettled = INT64_MIN / 2,
};

/* The heap that holds the pools given up to the exchange (EXCHANGE),
 * permanently ABANDONED, as the shared heap is: nobody allocates from it,
 * and the blocks freed into its pools are collected under its lock. */
static _Alignas(PM_CACHE_LINE) _Atomic(pm_block_t *) exchange_heap_ring[PM_REMOTE_RING];
static pm_heap_t exchange_heap = {
    .bins = PM_BINS_INITIALIZER,
    .tick_countdown = INT64_MAX,
    .service_lock = &pm_fork_locks.exchange,
    .state = PM_HEAP_ABANDONED,
    .remote_ring = exchange_heap_ring,
};

static _Alignas(PM_CACHE_LINE) _Atomic(pm_block_t *) shared_heap_ring[PM_REMOTE_RING];
static pm_heap_t shared_heap = {
    .bins = PM_BINS_INITIALIZER,
    .remote_ring = shared_heap_ring,
    .tick_countdown = INT64_MAX, /* allocations under its lock neither tick nor are sampled */
    .service_lock = &pm_fork_locks.shared_heap,
    .arena_home = {.open = true}, /* its users are its owner */
    .state = PM_HEAP_ABANDONED,
    /* Last in the list, and the exchange after it: pm_fork_prepare takes
     * the heaps' service_locks in this order, and an owner giving a pool
     * to the exchange may hold its own (LOCKING). */
    .next_heap = &exchange_heap,
};

/* A counter another thread may be writing (PM_COUNTER_ADD). */
static uint64_t load_counter(const uint64_t *counter)
{
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

/* Neither a thread's heap nor one that waits for a thread. */
static bool heap_of_no_thread(const pm_heap_t *heap)
{
    return heap == &shared_heap || heap == &exchange_heap;
}

/* Heaps are carved from slabs mapped for them, of which the first page
 * holds the heaps' service locks, a cache line each, where fork children
 * find them zeroed (pm_fork_locks_t). */
#define HEAP_SLAB_BYTES ((size_t)64 << 10)
#define HEAP_SLAB_LOCKS (PM_OS_PAGE_SIZE / PM_CACHE_LINE)

/* The locks fork holds that are not a heap's (internal.h says why a page). */
pm_fork_locks_t pm_fork_locks __attribute__((aligned(PM_OS_PAGE_SIZE)));

static struct { /* under pm_fork_locks.heaps, the heap directory lock */
    pm_heap_t *all;       /* every heap, shared_heap and exchange_heap last */
    pm_heap_t *abandoned; /* ABANDONED heaps waiting for a thread */
    char *slab_next, *slab_end;
    pm_lock_t *slab_locks; /* the current slab's next free service lock */
    /* The slabs' lock pages and the heaps carved, for the stats' metadata
     * (the part of a slab not yet carved is mapped, never touched); and
     * how many heaps were made, the shared heap left out. */
    size_t bytes;
    unsigned made;
    /* Whether fork children get every lock zeroed: pm_fork_locks' page and
     * every slab's first. Asked of the kernel at the first fork and at each
     * new slab; until then, or should it refuse, pm_fork_child initializes
     * the locks itself. */
    bool fork_locks_asked, fork_locks_wiped, slab_locks_kept;
    /* In a fork child until the directory lock is first taken there
     * (heaps_lock): the heaps of the parent's other threads are still
     * OWNED, and fork_survivor is the forking thread's. Read without the
     * lock by an owner about to take a pool (heap_alloc_from). */
    _Atomic bool orphans_pending;
    pm_heap_t *fork_survivor;
    /* In a fork child of a process that had other threads: one of them may
     * have been cut between a remote free's push and its count
     * (heap_free_remote), leaving I8's counters short of the blocks
     * waiting. Its heap, if it had one, is ORPHANED; a thread with none
     * (every thread under POOLMALLOC_DEBUG, one whose heap is gone) counts
     * in heapless_remote_freed, which this flag alone tells the validator
     * to distrust. forking_threaded is the parent's note of it. */
    bool forking_threaded, counters_cut;
    pthread_key_t exit_key;
    bool exit_key_ready;
    bool exit_key_failed;
} heaps = {.all = &shared_heap};

static pm_heap_t *heap_for_thread(void);
static void heaps_orphan(void);

/* The heap directory lock. In a fork child, whoever takes it first orphans
 * the heaps of the threads the child does not have (heaps_orphan): every
 * heap the child makes or adopts, it does under this lock, so none has yet. */
static void heaps_lock(void)
{
    pm_lock(&pm_fork_locks.heaps);
    if (PM_UNLIKELY(atomic_load_explicit(&heaps.orphans_pending, memory_order_relaxed)))
        heaps_orphan();
}

static void heaps_unlock(void) { pm_unlock(&pm_fork_locks.heaps); }

/* Remote frees by threads that have no heap of their own (yet, or any more),
 * counted here so I8 stays exact; likewise their glibc-path calls. */
static _Atomic uint64_t heapless_remote_freed[PM_CLASS_COUNT];
static struct {
    _Atomic uint64_t allocated_total, freed_total, allocated_bytes_total, freed_bytes_total;
} heapless_system;

void pm_heap_count_system_heapless(size_t allocated_bytes, size_t freed_bytes)
{
    /* A thread whose first calls are all past the pools takes a heap here,
     * as one that only frees does (heap_free_remote): the shared counters
     * cost every call of every such thread a locked add. */
    if (!pm_profile_unwinding() && heap_for_thread() != NULL) {
        if (allocated_bytes != 0 || freed_bytes == 0)
            pm_count_system_alloc(allocated_bytes);
        else
            pm_count_system_free(freed_bytes);
        return;
    }
    if (allocated_bytes != 0 || freed_bytes == 0) {
        atomic_fetch_add_explicit(&heapless_system.allocated_total, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&heapless_system.allocated_bytes_total, allocated_bytes,
                                  memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&heapless_system.freed_total, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&heapless_system.freed_bytes_total, freed_bytes,
                                  memory_order_relaxed);
    }
    pm_system_settle((int64_t)allocated_bytes - (int64_t)freed_bytes);
}

/* ---- bin lists (I4) ------------------------------------------------------- */

/* The pool the fast path takes blocks from (bin->serving) is one of the
 * list's, anywhere on it, and pm_pool_dry when the list is empty: a pool
 * switch only points at the pool it chose. It moved to the head, and the
 * move took 17 instructions of each switch (bench/results/slow-path-switch.md). */
static void bin_serve_head(pm_bin_t *bin)
{
    bin->serving = bin->pools != NULL ? bin->pools : &pm_pool_dry;
}

/* A new pool goes first, to serve now. The one that was alone on the list
 * is kept no longer (I4): its next emptying is decided again. */
static void bin_push(pm_bin_t *bin, pm_pool_t *pool)
{
    pool->prev = NULL;
    pool->next = bin->pools;
    if (bin->pools) {
        bin->pools->prev = pool;
        pm_pool_set_kept(bin->pools, false);
    } else {
        bin->pools_tail = pool;
    }
    bin->pools = pool;
    bin_serve_head(bin);
    pm_pool_set_on_bin_list(pool, true);
}

/* A pool that regained room goes last: the serving pool serves on until it
 * runs dry, and by the time a queued pool's turn comes it has gathered more
 * free blocks, so the slow path runs once per many allocations, not per
 * free. */
static void bin_append(pm_bin_t *bin, pm_pool_t *pool)
{
    pool->next = NULL;
    pool->prev = bin->pools_tail;
    if (bin->pools_tail) {
        bin->pools_tail->next = pool;
        pm_pool_set_kept(bin->pools_tail, false); /* as in bin_push */
    } else {
        bin->pools = pool;
    }
    bin->pools_tail = pool;
    if (bin->pools == pool)
        bin_serve_head(bin);
    pm_pool_set_on_bin_list(pool, true);
}

/* The only pool on its bin list. */
static bool pool_alone_in_bin(const pm_pool_t *pool)
{
    return pool->prev == NULL && pool->next == NULL;
}

static void pool_leave_sparse(pm_pool_t *pool);

/* Takes the pool out of its bin's list, leaving its own links as they were. */
static void bin_unlink(pm_bin_t *bin, pm_pool_t *pool)
{
    if (pool->prev)
        pool->prev->next = pool->next;
    else
        bin->pools = pool->next;
    if (pool->next)
        pool->next->prev = pool->prev;
    else
        bin->pools_tail = pool->prev;
}

/* Off the list, with no links and no longer sparse: bin_remove's part
 * that a full pool starting to regain shares (bin_remove_full), which
 * sets its flags its own way. */
static PM_ALWAYS_INLINE void bin_take_out(pm_bin_t *bin, pm_pool_t *pool)
{
    pool_leave_sparse(pool);
    bin_unlink(bin, pool);
    pool->next = pool->prev = NULL;
    if (bin->serving == pool)
        bin_serve_head(bin);
}

static void bin_remove(pm_bin_t *bin, pm_pool_t *pool)
{
    bin_take_out(bin, pool);
    pm_pool_set_on_bin_list(pool, false);
}

/* The pools the exchange holds (EXCHANGE), read by owners without its
 * lock: pools in use that no thread's heap counts. */
static _Atomic uint64_t exchange_pools;

/* (pm_arena_note_parked's cheap test takes the parking heap's pools and
 * these for a floor of the pools in use: with the heap's alone, a heap
 * that had given its pools away fell below it, and read every stripe of
 * the parked counts at each park, which other heaps were writing: drain-8t
 * took 1.14 of the time.) */
static uint64_t exchange_pools_held(void)
{
    return atomic_load_explicit(&exchange_pools, memory_order_relaxed);
}

/* The pools in use a bin holds, and its heap's sum of them and their
 * peak (SPARSE POOLS), stamped each time it is reached. */
static void bin_count_pools(pm_heap_t *heap, pm_bin_t *bin, int delta)
{
    PM_COUNTER_ADD(bin->pool_count, (uint64_t)(int64_t)delta);
    heap->pool_total += (uint64_t)(int64_t)delta;
    if (PM_UNLIKELY(heap == &exchange_heap))
        atomic_fetch_add_explicit(&exchange_pools, (uint64_t)(int64_t)delta, memory_order_relaxed);
    if (delta > 0 && heap->pool_total >= heap->pool_peak) {
        heap->pool_peak = heap->pool_total;
        heap->pool_peak_ms = pm_os_coarse_ms();
    }
}

static void pool_retire(pm_heap_t *heap, pm_bin_t *bin, pm_pool_t *pool)
{
    bin_remove(bin, pool);
    bin_count_pools(heap, bin, -1);
    pm_arena_release_pool(pool);
}

/* ---- sparse pools: pages given back while in use -------------------------
 * A program that frees most of its blocks in no order leaves every pool
 * with a few live blocks: none empties, so none goes back to its arena, and
 * its RSS stays at the peak (pm_bench_phases, 90% of 2 million blocks
 * freed at random: 11.5 x the live bytes, glibc 11.7). Yet with a few live
 * blocks left, some of a pool's 4 pages hold none: u blocks spread at
 * random leave a page free with odds (3/4)^u, 1.6 pages a pool of 512-byte
 * blocks at 10% live. Those pages go back (pm_pool_purge_free_pages, as
 * malloc_trim does) once the heap has drained most of its pools:
 *
 *   - A pool that fills arms its first mark (in an OWNED heap, once it
 *     has regained its batch: REGAINING), a quarter of its blocks, at
 *     most PM_SPARSE_MARK_MAX (pages empty only when few live blocks are left,
 *     whatever the class). When its used_count comes down to the mark, the
 *     subtract that free's fast path does anyway says so
 *     (pm_pool_put_used): no test of its own, no instruction more a free.
 *   - There the pool becomes sparse, counted in its heap's sparse_pools,
 *     until it empties, fills, or is picked to serve (bin_remove); unless
 *     it is alone in its bin, as the last pool of a class a program is
 *     letting go of is.
 *   - 7 in 8 of the heap's pools (PM_SPARSE_MIN_POOLS or more) are
 *     sparse, and the pools are not in a cycle (pm_arena_cycling, whose
 *     rounds the retained cap serves): the heap turns purging_sparse, and
 *     its sparse pools are walked and give back their free pages at once.
 *     While it stays so, a pool gives back its free pages at each mark it
 *     reaches, and its next mark is a quarter lower (1 at least), down to
 *     0 (empty).
 *   - Half of its pools are sparse, and half of the most it held within a
 *     purge delay, but not 7 in 8: the heap waits POOLMALLOC_PURGE_GRACE,
 *     then sweeps (heap_sweep_sparse): the pools sparse since before the
 *     wait began give back their free pages, and it waits again. Blocks
 *     that die at random ages keep about half of a heap's pools sparse
 *     for as long as the program runs, and never 7 in 8 (at most 69% in
 *     bench/results/sparse-steady.md), while the same pools fill again a
 *     few milliseconds later: purged at their marks, 8 threads replacing
 *     each other's blocks at random gave back and faulted in 50,000 pages
 *     in 3 s (1.15 s of system time; 0.38 s swept). A pool sparse for a
 *     whole grace is one the program is not coming back to.
 *   - A heap whose last pools came to their marks while a cycle or a
 *     quiet spell (below) held it back turns it at its first tick after
 *     (ALLOCATION TICKS), though no pool comes to a mark again: a thread
 *     that drained its pools in phases of other classes and went on with
 *     light work kept every page (bench/results/allocation-ticks.md,
 *     probe h: 339 MiB on 8 threads, 150 MiB with the tick; jemalloc 271).
 *     A waiting heap sweeps at its ticks too.
 *   - It stops when fewer than a quarter of its pools are sparse, or, until
 *     then (SPARSE_SPENT), once most of the pools that gave back pages (16
 *     or more) have gone on to empty or to take their pages back
 *     (heap_note_sparse_ended). Emptied, the program was letting go of
 *     everything, and the pages would have gone with their pools a moment
 *     later (python_frag.py's final drop: 56,700 madvise calls, against
 *     21,400 with nothing given back this way; 23,000 with the stop).
 *   - If that came within a purge delay of the turn, the program is
 *     cycling: it makes a batch of blocks, frees most of them, and makes
 *     the next, and each round would give back the same pages and fault
 *     them in again. The heap then does not turn purging_sparse again, nor
 *     sweep, until a purge delay after the last pool ended so (a sweep's
 *     pools are counted as a turn's). pm_bench_rounds
 *     (20,000 blocks of mostly 8-128 bytes a round, 7 in 8 freed and the
 *     rest handed to other threads) made 88,200 madvise calls on 4 threads
 *     and took 3.9 s; with the pause, 2,000 calls and 0.31 s (mimalloc
 *     0.28, jemalloc 0.34). A pool that empties counts as much as one
 *     that takes its pages back: a program that drains its pools in
 *     phases frees a phase's survivors in the next, and the phase after
 *     fills the pages again (drain-8t: 3.3 s with emptied pools left out,
 *     0.93 s; bench/results/sparse-policy-probes.md).
 *   - Otherwise a pool's mark goes to 0. A program that churns a window of
 *     objects drains pools one after another, and each would give back
 *     pages that the same pool, refilled, takes back a moment later (a
 *     madvise and a fault each). Draining its window at the end, it
 *     empties them one after another: the pools left fall, and the few
 *     draining are half of them, not half of the peak; without the peak
 *     and the lone pools left out, churn made 120-600 madvise calls more,
 *     and python_objects.py's rounds 1,450 more without the cycle.
 *   - A program that frees nearly everything at random empties most of
 *     its pools, and the few left, nearly all sparse, are far fewer than
 *     half its peak: 7 in 8 of them is enough (pm_bench_sparse, one block
 *     in 256 kept: 147.6 MiB after the free with the peak alone, 73.3).
 *
 * The pages given back come back, all at once, when a slow path meets
 * the pool with its free list dry (heap_alloc_from, pm_pool_carve). */
enum { SPARSE_OFF, SPARSE_ON, SPARSE_SPENT }; /* a heap's purging_sparse */

/* Only a sparse pool has a mark below its first: disarmed as it leaves,
 * it is armed again when it next fills. */
static void pool_leave_sparse(pm_pool_t *pool)
{
    if (!pool->sparse)
        return;
    pool->sparse = false;
    pm_heap_t *heap = pm_pool_heap(pool);
    heap->sparse_pools--;
    heap->bins[pool->class_index].sparse_count--;
    pm_pool_set_mark(pool, 0);
}

/* A pool's first mark, which it takes when it fills: a quarter of its
 * blocks, at most PM_SPARSE_MARK_MAX. */
static unsigned pool_first_mark(const pm_pool_t *pool)
{
    unsigned mark = pool->capacity / 4u;
    return mark < PM_SPARSE_MARK_MAX ? mark : PM_SPARSE_MARK_MAX;
}

/* Arms a pool that just filled, in a heap that is not OWNED (an OWNED
 * heap's regains first, REGAINING), unless it is still armed: a pool that
 * serves fills again and again with a few frees between (churn: 30 times
 * a pool on average; figuring its first mark each time cost 0.25
 * instructions a malloc and free). */
static void pool_arm_mark(pm_pool_t *pool)
{
    if (pool->used_mark == 0)
        pm_pool_set_mark(pool, pool_first_mark(pool));
}

/* A sparse pool gives back its free pages (now, or into `batch`) and
 * takes the next mark below `used`. */
static void pool_purge_sparse(pm_heap_t *heap, pm_pool_t *pool, unsigned used,
                              pm_os_purge_batch_t *batch, bool later)
{
    bool first = pool->purged_pages == 0;
    heap->sparse_purged += pm_pool_purge_free_pages(pool, batch, later) != 0 && first;
    pm_pool_set_mark(pool, used - (used / 4 > 1 ? used / 4 : 1));
}

/* What a heap's sparse pools call for (heap_sparse_call): nothing; a turn
 * at once (7 in 8 of its pools sparse); or, half of its peak sparse, a
 * sweep of those that stayed sparse for a grace. */
enum { SPARSE_CALL_NONE, SPARSE_CALL_TURN, SPARSE_CALL_SWEEP };

/* What the heap's sparse pools call for: half of them sparse, outside a
 * cycle and a quiet spell, and either 7 in 8 of those left (a turn) or
 * half of its peak, forgotten a purge delay after it was last reached (a
 * sweep). The clock is read into *now only once half are sparse: a
 * churning program's pools come to their marks all the time. */
static int heap_sparse_call(pm_heap_t *heap, uint64_t *now)
{
    if (heap->pool_total < PM_SPARSE_MIN_POOLS || heap->sparse_pools * 2 < heap->pool_total)
        return SPARSE_CALL_NONE;
    uint64_t now_ms = *now = pm_os_coarse_ms();
    if (now_ms - heap->pool_peak_ms >= pm_options.purge_delay_ms) {
        heap->pool_peak = heap->pool_total;
        heap->pool_peak_ms = now_ms;
    }
    if (pm_arena_cycling(now_ms) || now_ms < heap->sparse_quiet_until_ms)
        return SPARSE_CALL_NONE;
    if (heap->sparse_pools * 8 >= heap->pool_total * 7)
        return SPARSE_CALL_TURN;
    return heap->sparse_pools * 2 >= heap->pool_peak ? SPARSE_CALL_SWEEP : SPARSE_CALL_NONE;
}

/* Gives back the free pages of the heap's sparse pools that came to their
 * marks before and were left at 0: all of them, or (`all` false) those
 * sparse since before the heap's wait began. The count of those that end
 * starts again (heap_note_sparse_ended). In batches: each pool's pages are
 * a page or two apart from the next's, and with threads, a call each
 * interrupted every other CPU (pm_os_purge_flush). */
static void heap_purge_sparse_pools(pm_heap_t *heap, uint64_t now_ms, bool all)
{
    heap->sparse_purged = heap->sparse_purged_ended = 0;
    heap->sparse_on_ms = now_ms;
    pm_os_purge_batch_t batch = {.count = 0};
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++)
        for (pm_pool_t *pool = heap->bins[c].pools; pool != NULL; pool = pool->next)
            if (pool->sparse && pool->used_mark == 0 && pm_pool_used(pool) != 0 &&
                (all || pool->sparse_epoch != heap->sparse_epoch))
                pool_purge_sparse(heap, pool, pm_pool_used(pool), &batch, false);
    pm_os_purge_flush(&batch);
}

/* Half of its peak sparse, the heap waits a grace (POOLMALLOC_PURGE_GRACE)
 * and then sweeps the pools sparse all along; then it waits again. */
static void heap_sweep_sparse(pm_heap_t *heap, uint64_t now_ms)
{
    if (heap->sparse_wait_ms != 0) {
        if (now_ms - heap->sparse_wait_ms < pm_options.purge_grace_ms)
            return;
        heap_purge_sparse_pools(heap, now_ms, false);
    }
    heap->sparse_wait_ms = now_ms;
    heap->sparse_epoch++;
}

/* Whether the heap is purging_sparse, turning it on or off: on when 7 in
 * 8 of its pools are sparse (heap_sparse_call), off once fewer than a
 * quarter are, or once most of the pools that gave back pages went on to
 * empty (SPARSE_SPENT until then): the program was letting go of
 * everything, and the pages would have gone with their pools a moment
 * later. Half of its peak sparse, it sweeps instead (heap_sweep_sparse). */
static bool heap_purging_sparse(pm_heap_t *heap)
{
    if (heap->purging_sparse != SPARSE_OFF) {
        if (heap->sparse_pools * 4 < heap->pool_total)
            heap->purging_sparse = SPARSE_OFF;
        return heap->purging_sparse == SPARSE_ON;
    }
    uint64_t now_ms = 0;
    switch (heap_sparse_call(heap, &now_ms)) {
    case SPARSE_CALL_TURN:
        heap->purging_sparse = SPARSE_ON;
        heap->sparse_wait_ms = 0;
        heap_purge_sparse_pools(heap, now_ms, true);
        return true;
    case SPARSE_CALL_SWEEP:
        heap_sweep_sparse(heap, now_ms);
        return false;
    default:
        heap->sparse_wait_ms = 0;
        return false;
    }
}

/* A pool that gave back pages has emptied, or is taking them back. Once
 * most of those the heap's last turn of purging_sparse gave back have, it
 * is spent; if that came within a purge delay of the turn, the program is
 * cycling, and the heap does not turn purging_sparse again until a delay
 * after this. */
static void heap_note_sparse_ended(pm_heap_t *heap)
{
    heap->sparse_purged_ended++;
    if (heap->sparse_purged < PM_SPARSE_MIN_POOLS ||
        heap->sparse_purged_ended * 2 <= heap->sparse_purged)
        return;
    if (heap->purging_sparse == SPARSE_ON)
        heap->purging_sparse = SPARSE_SPENT;
    uint64_t now_ms = pm_os_coarse_ms();
    if (now_ms - heap->sparse_on_ms < pm_options.purge_delay_ms)
        heap->sparse_quiet_until_ms = now_ms + pm_options.purge_delay_ms;
}

static bool exchange_give(pm_heap_t *heap, pm_pool_t *pool);

/* True for a heap worked on by its owner thread, which then holds no lock:
 * every other heap (ABANDONED, the shared one) is worked on under its
 * service_lock, and an ORPHANED one is never worked on. */
static bool heap_owned(const pm_heap_t *heap)
{
    return atomic_load_explicit(&heap->state, memory_order_relaxed) == PM_HEAP_OWNED;
}

/* Out of line: a pool on its bin list came down to its mark. */
static __attribute__((noinline)) void pool_reached_mark(pm_heap_t *heap, pm_pool_t *pool)
{
    if (!pool->sparse && !pool_alone_in_bin(pool)) {
        pool->sparse = true;
        pool->sparse_epoch = heap->sparse_epoch;
        heap->sparse_pools++;
        heap->bins[pool->class_index].sparse_count++;
    }
    if (exchange_give(heap, pool))
        return;
    if (heap_purging_sparse(heap)) {
        bool later = heap_owned(heap) && pm_os_purges_vectored();
        pool_purge_sparse(heap, pool, pool->used_mark, later ? &heap->sparse_batch : NULL, later);
    } else {
        pm_pool_set_mark(pool, 0);
    }
}

/* The owner's sparse purges at marks go to the kernel together, up to
 * PM_OS_PURGE_BATCH ranges a call, where that is one call
 * (pm_os_purges_vectored): one at a time, each was a TLB flush of every
 * CPU the process ran on (bench/results/sparse-purge-batch.md). The
 * pages' blocks are off the free list from the mark on (I3), and a run
 * that a free block on the list reaches into is purged at once
 * (pm_pool_purge_free_pages), so nothing hands out a byte of them; what
 * must not come before the flush is a pool taking its purged pages back
 * (its owner's slow path, heap_alloc_from) or leaving the heap (it
 * empties: bin_pool_emptied; its thread exits: heap_abandon), for the
 * late purge would then zero blocks handed out meanwhile. A pool with
 * purged pages is not given to the exchange. The owner's housekeeping
 * (its ticks) flushes too, so that a thread that goes on allocating
 * without any of those gives them to the kernel within a tick's bytes;
 * one that stops calling the allocator keeps their pages,
 * PM_OS_PURGE_BATCH ranges at most, until it allocates a tick's bytes
 * again or exits. */
static void heap_flush_sparse_purges(pm_heap_t *heap)
{
    if (heap->sparse_batch.count != 0)
        pm_os_purge_flush(&heap->sparse_batch);
}

/* ---- parked pools (I4) ------------------------------------------------------ */

/* Carved past its first OS page (its last carved block starts beyond it):
 * an empty pool with more than a page of RSS. A pool a program uses for a
 * few blocks at a time never gets there. */
static bool pool_spans_pages(const pm_pool_t *pool)
{
    return pool->carve_index != 0 &&
           (size_t)(pool->carve_index - 1) * pool->block_size >= PM_OS_PAGE_SIZE;
}

/* A pool that empties beside others of its class parks too (I4) while
 * its heap has fewer than this many parked. A program that churns a
 * window of objects empties a pool while its class has others, and takes
 * a pool again a little later: released and taken, it went through the
 * arena directory's lock and lines, which every thread writes (churn,
 * 18,000 times in 20M calls). Parked, it comes back without them:
 * churn-2t 6% faster, churn 3%; with 8, churn-4t gained 8% but peak RSS
 * 3%, parked pools being per class. */
#define PARKED_BESIDE_OTHERS 4

/* PARKING IN A ROW. A class that has a pool parked already parks the next
 * one it empties too while its heap has no more parked than it has learnt
 * to allow (park_allowance, at most PARKED_IN_A_ROW and
 * POOLMALLOC_RETAIN_POOLS_MAX). A program that makes a batch of blocks and
 * frees it whole, again and again (glibc's bench-malloc-simple; a
 * request's, a frame's or a parse's objects), empties its pools one after
 * another: each went back to its arena, through the directory's lock, to
 * be taken, initialized and carved again by the next batch (1000 blocks
 * of 256 bytes made and freed on 2 threads took 4.7 times as long as
 * under mimalloc, most of it on that lock). The allowance learns it:
 * - a class that sends pools back for want of room to park them and then
 *   has none left in use was let go of whole (heap_note_class_emptied);
 * - for each pool the heap then takes from its arenas within a purge
 *   delay, the allowance grows by one (heap_note_pool_taken);
 * - for each parked pool that waited its delay unused it falls by one
 *   (heap_give_back_parked), and to 0 when they all go at once.
 * A class that needs a pool and has none parked takes another class's
 * extra one (heap_take_parked), and the extra ones count against the cap
 * on retained pools (arena.c's retain_cap_left), as what they are: empty
 * pools kept resident for the program's next need. A program that frees a
 * structure once parks no more than before, and one that churns a window
 * of objects, which empties pools while its classes have others, learns
 * nothing. */
#define PARKED_IN_A_ROW 256
/* The most a heap may have parked: one per class, and the rest. */
#define PARKED_MOST (PM_CLASS_COUNT + PARKED_BESIDE_OTHERS + PARKED_IN_A_ROW)

/* How many pools the heap has parked: exact under its service_lock, a
 * glance without it (the owner's choice to park, the walk's skip). */
static unsigned heap_parked_count(pm_heap_t *heap)
{
    return atomic_load_explicit(&heap->parked_count, memory_order_relaxed);
}

/* Whether an empty pool of the class, carved past its first page, parks
 * (I4) rather than go back to its arena; `last`: it was all its bin had. */
static bool heap_may_park(pm_heap_t *heap, unsigned class_index, bool last)
{
    unsigned parked = heap_parked_count(heap);
    unsigned allowance = atomic_load_explicit(&heap->park_allowance, memory_order_relaxed);
    if (atomic_load_explicit(&heap->parked[class_index], memory_order_relaxed) == NULL)
        return last || parked < PARKED_BESIDE_OTHERS + allowance;
    return parked <= allowance; /* the class's first parked beyond it */
}

/* No pool of the bin's class holds a live block: it has none, or only the
 * one it keeps, empty (I4). */
static bool bin_holds_no_block(const pm_bin_t *bin)
{
    return bin->pool_count == 0 ||
           (bin->pool_count == 1 && bin->pools != NULL && pm_pool_used(bin->pools) == 0);
}

/* The class holds no block any more: the pools it sent back to their
 * arenas for want of room to park them since it last took one were a
 * batch's, which the program let go of whole, and may well make again.
 * (A class that takes pools while it has others, as a program churning a
 * window of objects does, never gets here: parking its pools in a row too
 * cost churn 3% in peak RSS and relay 16%.) */
static void heap_note_class_emptied(pm_heap_t *heap, pm_bin_t *bin)
{
    uint32_t refused = heap->park_refused + bin->park_refused;
    heap->park_refused = refused < PARKED_IN_A_ROW ? refused : PARKED_IN_A_ROW;
    heap->park_refused_ms = pm_os_coarse_ms();
    bin->park_refused = 0;
}

/* The owner took a pool of the bin's class from its arenas: if the heap
 * refused to park a batch's pools less than a delay ago, it pays the
 * directory for want of parking, and the allowance grows. */
static void heap_note_pool_taken(pm_heap_t *heap, pm_bin_t *bin)
{
    bin->park_refused = 0;
    if (heap->park_refused == 0)
        return;
    heap->park_refused--;
    if (pm_os_coarse_ms() - heap->park_refused_ms >= pm_options.purge_delay_ms) {
        heap->park_refused = 0;
        return;
    }
    unsigned allowance = atomic_load_explicit(&heap->park_allowance, memory_order_relaxed);
    if (allowance < PARKED_IN_A_ROW && allowance < pm_options.retain_pools_max)
        atomic_fetch_add_explicit(&heap->park_allowance, 1, memory_order_relaxed);
}

/* A pool joins (+1) or leaves (-1) the heap's parked lists, `in_a_row` if
 * its class has another parked: the heap's count and the arenas' (which
 * the collapse and the retained cap read). Caller holds service_lock. */
static void heap_count_parked(pm_heap_t *heap, int delta, bool in_a_row)
{
    atomic_store_explicit(&heap->parked_count,
                          atomic_load_explicit(&heap->parked_count, memory_order_relaxed) +
                              (unsigned)delta,
                          memory_order_relaxed);
    pm_arena_parked_add(heap->parked_stripe, delta, in_a_row);
}

/* The owner sets an empty pool of its bin aside, newest first on its
 * class's parked list: the bin serves pm_pool_dry if that was its last
 * pool, so the fast paths cannot reach the pool (malloc's looks at the
 * bin, free's only at live blocks, and it has none), and another thread
 * may take it under service_lock. Its bin link links the parked list. Stamped
 * in its arena's released_ms, as a retained pool is (I10). */
static void bin_park(pm_heap_t *heap, pm_bin_t *bin, pm_pool_t *pool)
{
    uint64_t now_ms = pm_os_coarse_ms();
    bin_remove(bin, pool);
    bin_count_pools(heap, bin, -1);
    pm_lock(heap->service_lock);
    pm_arena_of(pool)->released_ms[pm_pool_index_of(pool)] = now_ms;
    pool->next = atomic_load_explicit(&heap->parked[pool->class_index], memory_order_relaxed);
    atomic_store_explicit(&heap->parked[pool->class_index], pool, memory_order_relaxed);
    heap_count_parked(heap, 1, pool->next != NULL);
    pm_unlock(heap->service_lock);
}

/* Takes `pool` off its class's parked list, where it follows `before`
 * (NULL: it is the head). Caller holds service_lock. */
static void heap_unpark(pm_heap_t *heap, pm_pool_t *before, pm_pool_t *pool)
{
    heap_count_parked(heap, -1, before != NULL || pool->next != NULL);
    if (before == NULL)
        atomic_store_explicit(&heap->parked[pool->class_index], pool->next, memory_order_relaxed);
    else
        before->next = pool->next;
    pool->next = NULL;
}

/* Takes the newest parked pool of the class off its list, if one is still
 * there. */
static pm_pool_t *heap_unpark_newest(pm_heap_t *heap, unsigned class_index)
{
    pm_lock(heap->service_lock);
    pm_pool_t *pool = atomic_load_explicit(&heap->parked[class_index], memory_order_relaxed);
    if (pool != NULL)
        heap_unpark(heap, NULL, pool);
    pm_unlock(heap->service_lock);
    return pool;
}

/* The owner's slow path, once its bin's pools have no room left, takes a
 * parked pool: the class's newest, else the newest of another class's run
 * (PARKING IN A ROW; a class's only parked pool stays its own), made a
 * pool of this class (pm_pool_reuse). Unless it is of this class with a
 * free list from block to neighbour, it is carved afresh, in address
 * order, over the pages it had reached: it is empty, and its free list, in
 * the order the program freed its blocks, would be put in order at a cost
 * above a carve's (pm_pool_order_if_mostly_free: binary trees took 3% more
 * instructions).
 * Taking another class's run keeps the classes from each holding pools
 * another needs: a batch of random sizes needs a few pools more in some
 * classes and fewer in others from one round to the next, and with runs
 * kept per class, each kept its own while the others took fresh ones
 * (pm_bench_batch blocks=10000 min=1 max=512 threads=2, an early version
 * of the allowance: peak RSS 8.7 MiB, against 8.0 with no parking in a
 * row, and 8.0 once classes took each other's runs). Out of line, as its
 * caller's loop is hot. */
static __attribute__((noinline)) pm_pool_t *heap_take_parked(pm_heap_t *heap,
                                                             unsigned class_index)
{
    pm_lock(heap->service_lock);
    pm_pool_t *pool = atomic_load_explicit(&heap->parked[class_index], memory_order_relaxed);
    for (unsigned c = 0; c < PM_CLASS_COUNT && pool == NULL; c++) {
        pm_pool_t *head = atomic_load_explicit(&heap->parked[c], memory_order_relaxed);
        if (head != NULL && head->next != NULL)
            pool = head;
    }
    if (pool != NULL)
        heap_unpark(heap, NULL, pool);
    pm_unlock(heap->service_lock);
    if (pool != NULL)
        pm_pool_reuse(pool, class_index, heap);
    return pool;
}

/* Gives a heap's parked pools that were parked at least a delay before
 * now_ms (all of them if `all`) back to their arenas, without their pages:
 * they have waited the purge delay already. Lowers *next_due_ms to when
 * the first of those left becomes due. Returns how many went. Caller holds
 * the heap directory lock and the heap's service_lock (the arena lock
 * nests inside both): pm_fork_prepare takes them first, so no fork child
 * finds a pool taken from parked[] and not yet in its arena, on no list at
 * all (a stress run's fork child failed its validation so). */
static size_t heap_give_back_parked(pm_heap_t *heap, uint64_t now_ms, bool all,
                                    uint64_t *next_due_ms)
{
    pm_pool_t *going[PARKED_MOST];
    unsigned count = 0;
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++) {
        pm_pool_t *before = NULL, *after;
        for (pm_pool_t *pool = atomic_load_explicit(&heap->parked[c], memory_order_relaxed);
             pool != NULL; pool = after) {
            after = pool->next;
            uint64_t due_ms = pm_arena_of(pool)->released_ms[pm_pool_index_of(pool)] +
                              pm_options.purge_delay_ms;
            if (!all && now_ms < due_ms) {
                if (due_ms < *next_due_ms)
                    *next_due_ms = due_ms;
                before = pool;
                continue;
            }
            heap_unpark(heap, before, pool);
            going[count++] = pool;
        }
    }
    /* Each that waited its delay unused was one the allowance need not
     * have let park (PARKING IN A ROW); given back all at once, it starts
     * again. */
    unsigned allowance = atomic_load_explicit(&heap->park_allowance, memory_order_relaxed);
    unsigned lower = all || count > allowance ? allowance : count;
    if (lower != 0)
        atomic_fetch_sub_explicit(&heap->park_allowance, lower, memory_order_relaxed);
    /* Purged together, before any is back in its arena for another heap
     * to take and carve. */
    pm_pool_purge_empty(going, count);
    for (unsigned i = 0; i < count; i++)
        pm_arena_release_pool(going[i]);
    return count;
}

static bool heap_collect_remote(pm_heap_t *heap, bool all_claimed);
static size_t heap_relieve_idle_owner(pm_heap_t *heap, uint64_t now_ms, bool all,
                                      uint64_t *next_due_ms);

/* Blocks freed into an ABANDONED heap wait in its ring until ABANDONED_BATCH
 * positions have been taken since the last batch: the freer that takes the
 * last of them collects, under the heap's service_lock. Collecting on every
 * free made each one a lock, whose atomics waited on the store into the
 * freed block, a cache miss when a thread frees what exited threads made:
 * 93 ns a free, the slowest of the five allocators (jemalloc 9, tcmalloc
 * 20, mimalloc 30). Fewer than a batch are collected by the walk of the
 * heaps (set due by abandoned_waiting), malloc_trim, or the thread that
 * adopts the heap. The shared heap collects at once: debug mode's checks
 * (I12) are on its path. (The exchange's frees wait for a batch too:
 * collected at once, threads handing each other blocks of pools given to
 * it took 1.2 times as long, on its lock; EXCHANGE.) */
#define ABANDONED_BATCH 64
static _Atomic bool abandoned_waiting; /* some ABANDONED heap's ring may hold blocks */

/* Whether no block waits in the heap's ring or on its stack. seq_cst, as
 * the freer's push, its read of abandoned_waiting and the walk's clearing
 * of it: a freer that saw the flag still set (and so did not set it again)
 * pushed before the clearing, and is seen here. */
static bool heap_remote_empty(pm_heap_t *heap)
{
    return atomic_load_explicit(&heap->remote_tail, memory_order_seq_cst) ==
               atomic_load_explicit(&heap->remote_head, memory_order_relaxed) &&
           atomic_load_explicit(&heap->remote_free, memory_order_seq_cst) == NULL;
}

/* Collects an ABANDONED heap's ring and stack, if it has anything there.
 * Caller holds the heap directory lock, so the heap stays ABANDONED. */
static void heap_collect_abandoned(pm_heap_t *heap)
{
    if (heap_remote_empty(heap))
        return;
    pm_lock(heap->service_lock);
    heap_collect_remote(heap, false);
    pm_unlock(heap->service_lock);
}

/* An ABANDONED heap's kept pools (I4: its bins' empty ones, and the parked
 * ones) go back to their arenas without their pages, and its other pools
 * give back their pages with no live block, as malloc_trim's do: nobody
 * allocates from them until a thread adopts the heap, which takes the
 * pages back as it needs them. 8 threads that drained their pools at
 * random and exited left 306 MiB, and 149 MiB with this (jemalloc, which
 * empties an exiting thread's cache, 271; bench/results/allocation-ticks.md,
 * probe x). Returns how many pools went. Caller holds the heap directory
 * lock and the heap's service_lock. */
static size_t heap_give_back_kept(pm_heap_t *heap)
{
    pm_pool_t *kept[PM_CLASS_COUNT];
    unsigned count = 0;
    pm_os_purge_batch_t batch = {.count = 0};
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++) {
        pm_pool_t *pool = heap->bins[c].pools;
        if (pool != NULL && pm_pool_used(pool) == 0 && pm_pool_resident(pool))
            kept[count++] = pool;
        for (; pool != NULL; pool = pool->next)
            if (pm_pool_used(pool) != 0)
                pm_pool_purge_free_pages(pool, &batch, false);
    }
    pm_os_purge_flush(&batch);
    pm_pool_purge_empty(kept, count);
    size_t released = count;
    uint64_t next_due_ms = UINT64_MAX;
    released += heap_give_back_parked(heap, 0, true, &next_due_ms);
    __atomic_store_n(&heap->kept_until_ms, 0, __ATOMIC_RELAXED);
    return released;
}

/* An ABANDONED heap's kept pools, once they have waited a purge delay for
 * a thread to adopt it (all: now). Lowers *next_due_ms to when they
 * become due. Caller holds the heap directory lock. */
static size_t heap_release_abandoned(pm_heap_t *heap, uint64_t now_ms, bool all,
                                     uint64_t *next_due_ms)
{
    /* The exchange's is set under its service_lock alone (exchange_give). */
    uint64_t kept_until_ms = __atomic_load_n(&heap->kept_until_ms, __ATOMIC_RELAXED);
    if (kept_until_ms == 0)
        return 0;
    if (!all && now_ms < kept_until_ms) {
        if (kept_until_ms < *next_due_ms)
            *next_due_ms = kept_until_ms;
        return 0;
    }
    pm_lock(heap->service_lock);
    size_t released = heap_give_back_kept(heap);
    pm_unlock(heap->service_lock);
    return released;
}

/* The walk of the heaps: heap_give_back_parked over every heap, and the
 * blocks waiting in ABANDONED heaps' rings collected and their kept pools
 * given back once due. An ORPHANED heap's parked pools are given back too:
 * parking happens under service_lock, which pm_fork_prepare held, so a
 * fork child finds parked[] whole, though nothing else of such a heap.
 * *next_due_ms: when the first pool left becomes due (UINT64_MAX: none). */
static size_t heap_release_parked(const pm_heap_t *walker, uint64_t now_ms, bool all,
                                  uint64_t *next_due_ms)
{
    size_t released = 0;
    *next_due_ms = UINT64_MAX;
    heaps_lock();
    /* Cleared first: a free that leaves a block after this sets it again. */
    atomic_store_explicit(&abandoned_waiting, false, memory_order_seq_cst);
    for (pm_heap_t *heap = heaps.all; heap != NULL; heap = heap->next_heap) {
        if (atomic_load_explicit(&heap->state, memory_order_relaxed) == PM_HEAP_ABANDONED) {
            heap_collect_abandoned(heap);
            released += heap_release_abandoned(heap, now_ms, all, next_due_ms);
            continue;
        }
        if (heap_owned(heap) && heap != walker)
            released += heap_relieve_idle_owner(heap, now_ms, all, next_due_ms);
        if (heap_parked_count(heap) == 0)
            continue;
        pm_lock(heap->service_lock);
        released += heap_give_back_parked(heap, now_ms, all, next_due_ms);
        pm_unlock(heap->service_lock);
    }
    heaps_unlock();
    return released;
}

/* The heaps are walked again a delay after the last walk (a pool parked
 * since is due no sooner), or when the first pool that walk left parked
 * becomes due, whichever is first. Walking only a delay after the last
 * walk kept a pool parked just after one for up to two delays: with the
 * dump thread ticking every 500 ms and a 1 s delay, the idle-threads
 * workload still held 11.6 MiB 1.5 s later, against 3.4. */
static _Atomic uint64_t parked_walk_ms;     /* when the heaps were last walked */
static _Atomic uint64_t parked_next_due_ms; /* UINT64_MAX: the walk left none */
/* However short the purge delay, the heaps are walked at most this often:
 * the walk takes the heap directory lock, which thread start and exit
 * take too. */
#define PARKED_WALK_MIN_MS 10
/* Whether the heaps were walked since the pools last collapsed. */
static _Atomic bool parked_walked_in_collapse;

void pm_heap_release_parked_if_due(const pm_heap_t *walker, uint64_t now_ms)
{
    uint64_t last = atomic_load_explicit(&parked_walk_ms, memory_order_relaxed);
    /* After a collapse every parked pool is due, and the first walk comes
     * at once: the threads that parked them may all be idle by the next. */
    bool collapsed = pm_arena_collapsed();
    bool walked = atomic_load_explicit(&parked_walked_in_collapse, memory_order_relaxed);
    if (!collapsed && walked)
        atomic_store_explicit(&parked_walked_in_collapse, false, memory_order_relaxed);
    if ((!collapsed || walked) &&
        (now_ms - last < PARKED_WALK_MIN_MS ||
         (now_ms - last < pm_options.purge_delay_ms &&
          now_ms < atomic_load_explicit(&parked_next_due_ms, memory_order_relaxed) &&
          !atomic_load_explicit(&abandoned_waiting, memory_order_relaxed) && !collapsed)))
        return;
    /* One thread wins the walk; the first after a collapse always walks,
     * as one that lost to a walk that began before it would leave its
     * parked pools for good. */
    while (!atomic_compare_exchange_strong_explicit(&parked_walk_ms, &last, now_ms,
                                                    memory_order_relaxed, memory_order_relaxed))
        if (!collapsed || walked)
            return;
    if (collapsed)
        atomic_store_explicit(&parked_walked_in_collapse, true, memory_order_relaxed);
    uint64_t next_due_ms;
    heap_release_parked(walker, now_ms, collapsed, &next_due_ms);
    atomic_store_explicit(&parked_next_due_ms, next_due_ms, memory_order_relaxed);
}

/* ---- the owner's side --------------------------------------------------- */

/* The parked pools of idle heaps, and glibc's heap, if due; now_ms is the
 * caller's clock read (a tick's one serves all its looks); with no lock
 * held. */
static void heap_give_back_due(pm_heap_t *heap, uint64_t now_ms)
{
    pm_heap_release_parked_if_due(heap, now_ms);
    pm_system_trim_if_due();
}

/* After its owner took a pool from its arena or gave one back: a fork
 * child's dump thread starts then, if it is to (not at a tick, which a
 * child that execs soon may come to: ALLOCATION TICKS), and what is due. */
static void heap_housekeeping(pm_heap_t *heap)
{
    if (!heap_owned(heap))
        return;
    pm_dump_start_if_pending();
    heap_give_back_due(heap, pm_os_coarse_ms());
}

/* What is due for a heap that took no pool (at its tick, or as it frees
 * other threads' blocks), and a batch of the retained pools if their delay
 * has run out, which taking or giving back a pool purges under the arena
 * lock. */
static void heap_housekeeping_poolless(pm_heap_t *heap, uint64_t now_ms)
{
    if (!heap_owned(heap))
        return;
    heap_flush_sparse_purges(heap);
    heap_give_back_due(heap, now_ms);
    pm_arena_decay_if_due(now_ms);
}

/* ---- ALLOCATION TICKS ----------------------------------------------------
 * What waits for a delay to run out (parked pools, retained pools, blocks
 * waiting for an idle owner, glibc's heap) is given back by whichever
 * thread next takes or gives back a pool, frees a few hundred blocks of
 * other threads, or ticks, or by the dump thread. A thread ticks each time
 * it has allocated a tick's bytes (PM_HEAP_TICK_BYTES, or fewer for a thread
 * that allocates slowly: below): a program whose idle threads parked
 * their pools, and whose one busy thread reuses its own blocks, takes no
 * pool and frees nothing of the others', and without POOLMALLOC_STATS no
 * dump thread runs: without ticks its idle threads' pools would stay until
 * they exit (100 idle threads: 47 MiB, against 10 MiB once given back;
 * bench/results/allocation-ticks.md).
 *
 * The tick costs malloc nothing: its fast path counts the bytes asked for
 * down already, for profiling's samples, and the countdown serves both.
 * It ends at the tick or at the next sample, whichever comes first
 * (tick_only says which): the sampler's draws are exponential, so a draw
 * cut short at a tick and drawn again after it samples as the whole draw
 * would (memoryless). A tick's housekeeping, with nothing due, is a few
 * relaxed loads and one clock read (the vDSO's coarse clock), which all its
 * looks share (three reads took 45 instructions more a tick, 7 a step of
 * malloc(40000)+free): every 256 KiB, about every thousand of churn's
 * mallocs, 0.2 instructions a pair. What is due it does as taking a pool
 * would: the walk of the heaps, and a batch of the retained pools (no
 * more: a malloc that gave back 117 MB at once took 17 ms), a larger one
 * once they are a delay behind (arena.c, DECAY_BATCH_BEHIND).
 *
 * A tick comes after PM_HEAP_TICK_BYTES only while the thread allocates
 * that much within HEAP_TICK_INTERVAL_MS: a thread that allocates slowly
 * ticks after fewer bytes (PM_HEAP_TICK_MIN_BYTES at least), about that
 * often. A program whose busy threads went idle, or freed each other's
 * blocks and went idle, goes on in a main loop that makes a small block a
 * millisecond: 256 KiB took it 8 s at 32 bytes a call, and until then no
 * tick gave anything back (a producer's million blocks, all freed by a
 * consumer: 279 MiB kept for 8 s). Paced, it ticks every 100 ms or so, and
 * the walk past the delay gives them back within a second
 * (bench/results/paced-ticks.md). The pace is known at a tick: a thread
 * that allocated fast until then waits out one whole tick first. A new
 * heap starts at the least and doubles from tick to tick while they come
 * fast: 6 ticks more, once, for a thread that allocates at full speed. */
#define HEAP_TICK_INTERVAL_MS 100

void pm_heap_set_countdown(pm_heap_t *heap, int64_t sample_in)
{
    heap->tick_only = sample_in > heap->tick_bytes;
    heap->tick_countdown = heap->tick_only ? heap->tick_bytes : sample_in;
}

/* The next tick's length, from the time since the last: cut in proportion
 * when that was HEAP_TICK_INTERVAL_MS or more, doubled when it was less
 * than half of it. */
static void heap_pace_ticks(pm_heap_t *heap)
{
    uint64_t now_ms = pm_os_coarse_ms();
    uint64_t since_ms = now_ms - heap->tick_ms;
    heap->tick_ms = now_ms;
    uint64_t bytes = (uint64_t)heap->tick_bytes;
    if (since_ms >= HEAP_TICK_INTERVAL_MS)
        bytes = bytes * HEAP_TICK_INTERVAL_MS / since_ms;
    else if (since_ms * 2 < HEAP_TICK_INTERVAL_MS)
        bytes *= 2;
    heap->tick_bytes = bytes < (uint64_t)PM_HEAP_TICK_MIN_BYTES ? PM_HEAP_TICK_MIN_BYTES
                       : bytes > (uint64_t)PM_HEAP_TICK_BYTES   ? PM_HEAP_TICK_BYTES
                                                                : (int64_t)bytes;
}

void *pm_heap_tick(pm_heap_t *heap, void *block, size_t size, size_t counted)
{
    heap_pace_ticks(heap);
    if (heap->tick_only) {
        pm_heap_set_countdown(heap, pm_profile_draw(heap));
    } else {
        pm_profile_sample(heap, block, size, counted);
        pm_heap_set_countdown(heap, heap->tick_countdown);
    }
    heap_housekeeping_poolless(heap, heap->tick_ms);
    pm_system_cache_tick(heap, heap->tick_ms);
    pm_system_settle_heap(heap); /* malloc's glibc path leaves it to the tick */
    /* A heap turns purging_sparse as a pool comes down to its mark (SPARSE
     * POOLS); one whose last pools did while a cycle or a quiet spell held
     * it back turns it at a tick once neither does. */
    if (heap_owned(heap) && heap->purging_sparse == SPARSE_OFF)
        heap_purging_sparse(heap);
    return block;
}

void *pm_heap_tick_small(pm_heap_t *heap, void *block, size_t counted)
{
    return pm_heap_tick(heap, block, pm_pool_of(block)->block_size, counted);
}

/* Out of line: the common caller is a pool that regained room. */
static __attribute__((noinline)) void bin_pool_emptied(pm_heap_t *heap, pm_bin_t *bin,
                                                       pm_pool_t *pool)
{
    /* I4: an empty pool goes back to its arena unless it is all the bin
     * has, so alloc/free of one block does not take the arena lock each
     * time, and a thread adopting an abandoned heap finds a pool ready.
     * All the bin has, but carved past its first page: the owner parks it
     * rather than keep it, so that if the thread goes idle now, its pages
     * go back after the delay (a thread's kept pools were up to 32 x 16
     * KiB, for as long as it lived); with no delay, it goes back now, as
     * every released pool does then; with one parked already, it goes back
     * too (it was kept, with the parked one, for as long as the thread
     * lived: a thread that frees its blocks newest first empties the pool
     * it was carving, which parks, then the full one before it). One
     * beside others of the class, carved past its first page, parks too
     * while the heap has fewer than PARKED_BESIDE_OTHERS parked; and a
     * class's second and later as the heap has learnt (PARKING IN A ROW),
     * which counts those sent back for want of it. */
    heap_flush_sparse_purges(heap);
    bool last = pool_alone_in_bin(pool);
    bool spans = heap_owned(heap) && pool_spans_pages(pool);
    bool parkable = spans && heap_may_park(heap, pool->class_index, last);
    if (parkable && pm_options.purge_delay_ms != 0 && !pm_arena_collapsed()) {
        bin_park(heap, bin, pool);
        if (pm_arena_note_parked(heap->pool_total + exchange_pools_held())) {
            /* Collapsed, by this pool or meanwhile: nothing stays parked,
             * this pool included, whose parking may have come after the
             * walk that gave the other heaps' back. */
            pm_pool_t *again = heap_unpark_newest(heap, pool->class_index);
            if (again != NULL)
                pm_arena_release_pool(again);
            heap_housekeeping(heap);
        }
    } else if (!last || spans) {
        bin->park_refused += spans && pm_options.purge_delay_ms != 0;
        pool_retire(heap, bin, pool);
        if (bin->park_refused != 0 && bin_holds_no_block(bin))
            heap_note_class_emptied(heap, bin);
        heap_housekeeping(heap);
    } else if (heap_owned(heap)) {
        /* Stays, and will again: a thread that mallocs and frees a block
         * or a few at a time empties its pool at nearly every free, and
         * came here each time (59 instructions more a malloc+free pair). */
        pm_pool_set_kept(pool, true);
    }
}

/* ---- REGAINING (I4) -------------------------------------------------------
 * A full pool that its heap's slow path takes off the bin list regains
 * room off it: it joins the list again once pm_pool_regain_batch blocks
 * came back (a sixteenth of its capacity, 3 at least), not at its first
 * free. A program that frees and allocates at random over a heap larger
 * than its serving pools (a cache, a table of objects replaced one by one)
 * frees into full pools, nearly all of them: each joined the list with one
 * block free and served that one block when its turn came, so that a
 * quarter of the mallocs took the slow path, each moving pools about the
 * list, and a free into a full pool went to the list's tail. Regaining, a
 * pool serves a batch when its turn comes.
 *
 * The batch is counted by free's subtract, as a sparse pool's mark is
 * (pm_pool_put_used): the pool's used_mark is capacity - batch, and with
 * PM_POOL_OFF_LIST clear the first frees call nobody; the owner hears of
 * the pool once, when the batch is in, as it heard of its first free
 * before. The cost is in memory: a regaining pool's free blocks, one
 * fewer than its batch at most, wait unseen by the slow path, which may
 * take a new pool meanwhile: a sixteenth of the full pools' blocks at
 * most, and 2 blocks in the pools of fewer than 48 (2 of 32 for 512
 * bytes): those of more than 336-byte blocks, and of more than 256 in an
 * arena's first pool, which is smaller.
 *
 * In those a batch of a sixteenth was 2 blocks: under random replacement
 * a pool switch (about 180 instructions, and the first touch of the
 * pool's lines) came every 3 of their mallocs. With 3 at least,
 * pm_bench_churn window=100000 random=1 (replace-100k's shape) runs 4.8
 * instructions fewer a pair (callgrind), and its peak RSS is level. 4 at
 * least took 8.1 fewer, but 1.6-2.7% more peak RSS on churn and random
 * replacement, which put churn's past 1.10 x glibc's
 * (bench/results/regaining.md, "The least batch").
 *
 * Only an OWNED heap's pools regain: an abandoned heap's (or the shared
 * heap's) join their list at their first free, for the thread that
 * adopts it to find.
 *
 * pm_pool_set_mark for a regaining pool, which has neither flag to keep
 * (bin_remove_full clears them), with the mark below its count as there:
 * the mark's arithmetic once, where the general one, keeping flags, took
 * 8 instructions more a regain. */
static PM_ALWAYS_INLINE void pool_set_mark_unflagged(pm_pool_t *pool, uint16_t mark)
{
    unsigned used = pm_pool_used(pool);
    __atomic_store_n(&pool->used_mark, mark, __ATOMIC_RELAXED);
    __atomic_store_n(&pool->used_word, (uint16_t)(used - mark), __ATOMIC_RELAXED);
}

/* A full pool of an OWNED heap leaves its bin list and starts regaining:
 * what bin_remove then setting the mark would do, less what the one undid
 * of the other: its count goes under the regaining mark with neither flag,
 * off the list as regaining tells pm_pool_on_bin_list (PM_POOL_OFF_LIST
 * made every free call the owner) and not kept. Nearly every switch of
 * random replacement takes a full pool off first: as those two calls it
 * took 17 instructions more. */
static PM_ALWAYS_INLINE void bin_remove_full_owned(pm_bin_t *bin, pm_pool_t *pool)
{
    bin_take_out(bin, pool);
    pool->regaining = true;
    pool_set_mark_unflagged(pool, (uint16_t)(pool->capacity - pm_pool_regain_batch(pool)));
}

/* A full pool leaves its bin list (heap_alloc_from): in an OWNED heap it
 * starts regaining, elsewhere it is armed (pool_arm_mark). */
static void bin_remove_full(pm_heap_t *heap, pm_bin_t *bin, pm_pool_t *pool)
{
    if (heap_owned(heap)) {
        bin_remove_full_owned(bin, pool);
        return;
    }
    bin_remove(bin, pool);
    pool_arm_mark(pool);
}

/* The batch is in: the pool joins its list and, full until lately, takes
 * its first sparse mark, as a pool that fills does. */
static void pool_end_regaining(pm_bin_t *bin, pm_pool_t *pool)
{
    pool->regaining = false;
    /* Below its count: the pool's capacity less its batch, well above a
     * quarter of it. */
    pool_set_mark_unflagged(pool, (uint16_t)pool_first_mark(pool));
    bin_append(bin, pool);
}

/* pm_heap_pool_regained for a pool on its bin list: it has come to its
 * sparse mark, or is now empty. Out of line, so that a regaining pool's
 * return, the common case, saves no register. */
static __attribute__((noinline)) void pool_regained_listed(pm_heap_t *heap, pm_bin_t *bin,
                                                           pm_pool_t *pool)
{
    if (pool->used_mark != 0) {
        pool_reached_mark(heap, pool);
        return;
    }
    if (pm_pool_used(pool) == 0) {
        pool_leave_sparse(pool);
        if (pool->purged_pages != 0)
            heap_note_sparse_ended(heap);
        bin_pool_emptied(heap, bin, pool);
    }
}

/* A pool that just got a block back and was full (off its bin list), or
 * regaining and has its batch back, or has come to its sparse mark, or is
 * now empty. */
void pm_heap_pool_regained(pm_heap_t *heap, pm_pool_t *pool)
{
    pm_bin_t *bin = &heap->bins[pool->class_index];
    if (pm_pool_on_bin_list(pool)) {
        pool_regained_listed(heap, bin, pool);
        return;
    }
    if (pool->regaining)
        pool_end_regaining(bin, pool);
    else
        bin_append(bin, pool); /* I4: it has room again */
}

/* Takes a block back into its pool, by the pool's owner or under the
 * service_lock of its abandoned heap. Counting is the caller's business.
 * Inlined, with heap_take_remote_from and remote_ring_drain, into the
 * owner's collection: a call each per block, and the drain's indirect one,
 * cost pm_bench_prodcons's producer 27 of its 185 instructions a block,
 * its malloc and loop included (bench/results/remote-free-path.md). */
static PM_ALWAYS_INLINE void heap_take_back(pm_heap_t *heap, pm_pool_t *pool, void *block)
{
    /* A sampled block's record goes as its owner takes it back (I11); the
     * pool's last one gone, free's fast path takes its blocks again. */
    if (PM_UNLIKELY(pm_pool_holds_sampled(pool)) && pm_profile_maybe_sampled(block) &&
        pm_profile_drop(block))
        pm_pool_refresh_fast_free(pool);
    if (pool->debug_fill)
        pm_pool_debug_freed(pool, block);
    /* A block starting in a page given back while it waited (IDLE OWNERS)
     * is purged now (I3): on no list, its page left untouched. */
    if (PM_LIKELY(pool->purged_pages == 0) || !pm_pool_page_purged(pool, block)) {
        pm_link_set(block, pool->free_list);
        pm_block_set_tag(block); /* I6: free */
        pool->free_list = block;
    }
    if (pm_pool_put_used(pool))
        pm_heap_pool_regained(heap, pool);
}

/* ---- remote frees ------------------------------------------------------- */

/* What pm_fork_child writes into a slot claimed by a thread the child does
 * not have: a position to pass over, never a block. */
#define REMOTE_SLOT_SKIPPED ((pm_block_t *)1)

static void heap_pass_on(pm_pool_t *pool, pm_block_t *b);

/* Takes back a block another thread freed into this heap, in `pool`. A
 * block freed twice is met twice, and the first meeting put it on the
 * free list (or a page given back since took it), where the second finds
 * it (I6): the freer read only its tag, the owner checks exactly. A
 * parcelled block may start in a page given back under it (IDLE OWNERS),
 * which does not make it free: the taker met each block once
 * (idle_take_purge). */
static PM_ALWAYS_INLINE void heap_take_remote_from(pm_heap_t *heap, pm_pool_t *pool,
                                                   pm_block_t *b, bool parcelled)
{
    if (PM_UNLIKELY(pm_pool_heap(pool) != heap)) {
        heap_pass_on(pool, b);
        return;
    }
    if (!pm_pool_block_surely_live(pool, b) && !(parcelled && pm_pool_page_purged(pool, b)) &&
        pm_pool_block_free(pool, b))
        pm_fatal("double free", b, pool->class_index);
    PM_COUNTER_ADD(heap->bins[pool->class_index].remote_collected_total, 1);
    heap_take_back(heap, pool, b);
}

/* A block from the remote stack, linked through a freed block's memory,
 * which the program may have written since: checked whole (I6, I7). */
static void heap_take_remote(pm_heap_t *heap, pm_block_t *b, void *unused)
{
    (void)unused;
    heap_take_remote_from(heap, pm_pool_checked(b, PM_OP_FREE, false), b, false);
}

/* A block from the ring, which only freers write: its freer checked it
 * before the push (pm_heap_free: I7 and its tag), and its pool is still
 * in use, held by the block's count (I3), though maybe adopted since (I9);
 * what is left to catch is a block that was not live, which only the
 * owner can tell exactly (heap_take_remote_from). Half the instructions
 * of a remote free went to checking it twice. */
static void heap_take_pushed(pm_heap_t *heap, pm_block_t *b, void *unused)
{
    (void)unused;
    heap_take_remote_from(heap, pm_pool_of(b), b, false);
}

/* Onto the heap's overflow stack, linked through the block's first word. */
static void remote_stack_push(pm_heap_t *owner, pm_block_t *block)
{
    pm_block_t *head = atomic_load_explicit(&owner->remote_free, memory_order_relaxed);
    do
        pm_link_set(block, head);
    while (!atomic_compare_exchange_weak_explicit(&owner->remote_free, &head, block,
                                                  memory_order_seq_cst, memory_order_relaxed));
}

/* Whether the processor has PREFETCHW (CPUID 0x80000001, ECX bit 8),
 * which x86-64's baseline does not promise: without -mprfchw, GCC makes
 * __builtin_prefetch(address, 1) a prefetch for reading. Set as the first
 * heap is made (heap_create), before any ring has an owner but the shared
 * heap's, which prefetches for reading until then. */
static _Atomic bool cpu_has_prefetchw;

static void cpu_note_prefetchw(void)
{
#if defined(__x86_64__)
    unsigned eax, ebx, ecx, edx;
    atomic_store_explicit(&cpu_has_prefetchw,
                          __get_cpuid(0x80000001u, &eax, &ebx, &ecx, &edx) && (ecx & bit_PRFCHW),
                          memory_order_relaxed);
#endif
}

/* Asks for the line holding `address` in the state a store needs: owned,
 * every other core's copy given up. */
static PM_ALWAYS_INLINE void prefetch_for_store(const void *address)
{
#if defined(__x86_64__)
    if (PM_LIKELY(atomic_load_explicit(&cpu_has_prefetchw, memory_order_relaxed))) {
        __asm__ volatile("prefetchw %0" : : "m"(*(const char *)address));
        return;
    }
#endif
    __builtin_prefetch(address, 1);
}

/* Ring slots a cache line. */
#define RING_SLOTS_A_LINE (PM_CACHE_LINE / sizeof(pm_block_t *))

/* The freer's half of the ring: false if it is full (the block then goes
 * on the stack); else true, with the position it took in *pos. A slot is
 * written only once its position is less than PM_REMOTE_RING ahead of
 * remote_head, so its last block is already taken and the slot cleared
 * (the collector stores remote_head after clearing). Inlined into every
 * remote free, which the call cost 7 instructions. */
static PM_ALWAYS_INLINE bool remote_ring_push(pm_heap_t *owner, pm_block_t *block,
                                              uint64_t *pos_out)
{
    uint64_t pos = atomic_load_explicit(&owner->remote_tail, memory_order_relaxed);
    while ((int64_t)(pos - atomic_load_explicit(&owner->remote_head, memory_order_acquire)) <
           PM_REMOTE_RING) {
        /* seq_cst: heap_abandon relies on it (see heap_collect_remote). */
        if (atomic_compare_exchange_weak_explicit(&owner->remote_tail, &pos, pos + 1,
                                                  memory_order_seq_cst, memory_order_relaxed)) {
            atomic_store_explicit(&owner->remote_ring[pos % PM_REMOTE_RING], block,
                                  memory_order_release);
            /* The collector last wrote the next line of slots: it clears
             * what it takes. A free's store into that line waited in the
             * store buffer, and the next free's compare-and-swap, a locked
             * instruction, waited for that store: a transfer from the
             * owner's core every 8 frees, with nothing beside it. Asked
             * for now, the line comes while this free returns and the
             * program goes on: a writer and a reader of 64-byte blocks (an
             * xmalloc-test-like probe) freed 1.35 times as many a second
             * (bench/results/remote-ring-prefetch.md). */
            prefetch_for_store(&owner->remote_ring[(pos + RING_SLOTS_A_LINE) % PM_REMOTE_RING]);
            *pos_out = pos;
            return true;
        }
    }
    return false;
}

/* The collector's half: takes up to `max` published slots from
 * remote_head on into out[] (passed-over positions included, as
 * REMOTE_SLOT_SKIPPED), and returns how many. A slot claimed but not yet
 * written ends the walk, unless every claimed one must be taken
 * (all_claimed): then its writer, a few instructions from storing, is
 * waited for. Under service_lock: the owner's collections, and another
 * thread's of an idle owner's heap (IDLE OWNERS), take from one ring. */
static size_t remote_ring_take(pm_heap_t *heap, pm_block_t **out, size_t max, bool all_claimed)
{
    uint64_t head = atomic_load_explicit(&heap->remote_head, memory_order_relaxed);
    uint64_t end = all_claimed ? atomic_load_explicit(&heap->remote_tail, memory_order_seq_cst)
                               : head + PM_REMOTE_RING;
    size_t taken = 0;
    while (head != end && taken < max) {
        _Atomic(pm_block_t *) *slot = &heap->remote_ring[head % PM_REMOTE_RING];
        pm_block_t *b = atomic_load_explicit(slot, memory_order_acquire);
        if (b == NULL) {
            if (!all_claimed)
                break;
            pm_os_yield();
            continue;
        }
        atomic_store_explicit(slot, NULL, memory_order_relaxed);
        head++;
        out[taken++] = b;
    }
    if (taken != 0)
        atomic_store_explicit(&heap->remote_head, head, memory_order_release);
    return taken;
}

/* Ring positions taken under the lock at a time: the blocks are taken back
 * after it is let go, since taking back may park a pool (service_lock
 * again) or walk the heaps (the directory lock, taken before it). */
#define RING_BATCH 128

/* How many blocks ahead of the one it takes back a collector prefetches:
 * each is read (its tag, I6) and written (its link), most often on a line
 * the thread that freed it read last, and missed one after the other they
 * kept the owner's collection waiting: perf put 87% of the exact check's
 * samples on its load of the tag. With the prefetch, an xmalloc-test-like
 * probe (4 threads freeing each other's batches) took 0.925 of the time
 * and pm_bench_prodcons 0.933 (paired, bench/results/free-tag.md). The
 * parcels' blocks are taken back the same way (heap_collect_parcels): a
 * consumer that frees a producer's 4,096 blocks at a time fills the ring
 * and spills most of them into parcels, and with the prefetch there too
 * its producer/consumer pair freed 6-10% more blocks a second
 * (bench/results/outside-probes-larson-xmalloc.md, section 2). 16 ahead
 * was no better. It stays a prefetch for reading, as GCC compiles it, not
 * prefetch_for_store: asked for as a store's, the blocks made the owner
 * drain the ring in smaller takes closer behind the freer, and a writer
 * and a reader of 64-byte blocks freed 0.69 times as many a second
 * (bench/results/remote-ring-prefetch.md). */
#define RING_PREFETCH_AHEAD 8

/* Takes the ring's published slots, a ring's worth at most, passing each
 * block to take(heap, block, ctx) out of the lock. With `lock` (an OWNED
 * heap's: its owner, or a thread taking them for it), service_lock is
 * taken for each batch, only when the ring's next slot is published; an
 * ABANDONED heap's collector holds it already. A holder that keeps it past
 * a short spin is moving the ring's blocks into parcels (a freer that found
 * the ring full, or the walk's take for an idle owner), which the owner
 * collects without the lock: the drain stops there rather than sleep
 * (and, on more threads than CPUs, wait out a time slice of a holder put
 * off its CPU). A writer of 64-byte blocks and a reader freeing 4,096 at a
 * time (an xmalloc-test-like probe) made half the futex calls with this;
 * its rate stayed level (bench/results/service-lock.md). With
 * `reads_blocks`, take reads and writes each block, and the blocks are
 * prefetched. Returns whether any slot was taken. */
static PM_ALWAYS_INLINE bool remote_ring_drain(pm_heap_t *heap, bool lock, bool all_claimed,
                                               bool reads_blocks,
                              void (*take)(pm_heap_t *heap, pm_block_t *b, void *ctx), void *ctx)
{
    bool taken = false;
    pm_block_t *batch[RING_BATCH];
    size_t count, batches = 0;
    do {
        if (lock) {
            uint64_t head = atomic_load_explicit(&heap->remote_head, memory_order_relaxed);
            if (atomic_load_explicit(&heap->remote_ring[head % PM_REMOTE_RING],
                                     memory_order_relaxed) == NULL ||
                !pm_lock_unless_busy(heap->service_lock))
                break;
        }
        count = remote_ring_take(heap, batch, RING_BATCH, all_claimed);
        if (lock)
            pm_unlock(heap->service_lock);
        for (size_t i = 0; reads_blocks && i < count && i < RING_PREFETCH_AHEAD; i++)
            __builtin_prefetch(batch[i], 1);
        for (size_t i = 0; i < count; i++) {
            /* A skipped slot's address is never dereferenced: a prefetch
             * does not fault. */
            if (reads_blocks && i + RING_PREFETCH_AHEAD < count)
                __builtin_prefetch(batch[i + RING_PREFETCH_AHEAD], 1);
            if (batch[i] != REMOTE_SLOT_SKIPPED)
                take(heap, batch[i], ctx);
        }
        taken |= count != 0;
    } while (count == RING_BATCH && ++batches < PM_REMOTE_RING / RING_BATCH);
    return taken;
}

/* The first block met twice walking a stack that loops from `top`, given the
 * loop's length: a block freed twice, pushed twice. */
static const pm_block_t *remote_stack_loop_start(const pm_block_t *top, size_t length)
{
    const pm_block_t *ahead = top;
    while (length-- > 0)
        ahead = pm_link_get(ahead);
    while (ahead != top) {
        ahead = pm_link_get(ahead);
        top = pm_link_get(top);
    }
    return top;
}

/* Takes the heap's stack of blocks freed from other threads (remote_free,
 * exchanged for NULL), passing each to take(heap, block, ctx) once its link
 * is read and checked; returns whether it held any. A link that names no
 * block of ours, or one not aligned to the granule, was written after the
 * free (I12). A block pushed twice loops
 * the stack: the owner's take puts it on its free list at the first
 * meeting and finds it there at the second (I6), before the walk could see
 * the loop; a
 * thread taking the stack for an idle owner writes nothing, and the walk
 * finds the loop (Brent's: a compare a block), with the links intact. */
static bool remote_stack_drain(pm_heap_t *heap,
                               void (*take)(pm_heap_t *heap, pm_block_t *b, void *ctx), void *ctx)
{
    if (atomic_load_explicit(&heap->remote_free, memory_order_relaxed) == NULL)
        return false;
    pm_block_t *b = atomic_exchange_explicit(&heap->remote_free, NULL, memory_order_seq_cst);
    const pm_block_t *top = b, *mark = NULL;
    size_t since_mark = 0, span = 1;
    while (b != NULL) {
        pm_block_t *next = pm_link_get(b);
        if (next != NULL && (((uintptr_t)next & (PM_CLASS_GRANULE - 1)) != 0 ||
                             !pm_registry_contains(next)))
            pm_fatal("corrupted remote free list (a freed block was written to)", b,
                     pm_pool_of(b)->class_index);
        take(heap, b, ctx);
        if (b == mark) {
            const pm_block_t *twice = remote_stack_loop_start(top, since_mark);
            pm_fatal("double free", twice, pm_pool_of(twice)->class_index);
        }
        if (since_mark == span) {
            mark = b;
            since_mark = 0;
            span *= 2;
        }
        since_mark++;
        b = next;
    }
    return true;
}

static bool heap_collect_parcels(pm_heap_t *heap);
static void heap_note_waiting(pm_heap_t *heap, uint64_t now_ms, bool restamp);
/* A freer looks at its blocks' owner, and at the walk's due time, once in
 * this many of its frees of a class's blocks into other threads' heaps. */
#define IDLE_LOOK_FREES 256

/* Takes every block other threads freed into this heap: the parcels
 * another thread made of them, the ring's, then the overflow stack's.
 *
 * all_claimed is for heap_abandon, which publishes ABANDONED first: a
 * freer claims its position with a seq_cst compare-and-swap before it reads
 * the state (seq_cst), so either it sees ABANDONED and collects itself, or
 * its claim comes before the owner's read of remote_tail here, and is
 * waited for. */
static bool heap_collect_remote(pm_heap_t *heap, bool all_claimed)
{
    /* Mostly nothing waits: every slow path that finds no free block asks
     * first, and the three drains' setup took 72 instructions to say so
     * (a sixth of a carve's cost). An empty ring has no position claimed,
     * so all_claimed has none to wait for either. */
    if (atomic_load_explicit(&heap->parcels, memory_order_relaxed) == NULL &&
        heap_remote_empty(heap))
        return false;
    bool taken = heap_collect_parcels(heap);
    taken |= remote_ring_drain(heap, heap_owned(heap), all_claimed, true, heap_take_pushed, NULL);
    taken |= remote_stack_drain(heap, heap_take_remote, NULL);
    if (taken)
        atomic_store_explicit(&heap->remote_collections,
                              atomic_load_explicit(&heap->remote_collections,
                                                   memory_order_relaxed) + 1,
                              memory_order_relaxed);
    return taken;
}

/* ---- IDLE OWNERS ------------------------------------------------------------
 *
 * An owner takes back the blocks other threads freed into its heap when it
 * next runs dry. One that has gone idle (a worker waiting for its next job
 * while another thread frees what it made) would leave them waiting, and
 * the pages under them resident, for as long as it waits: nothing of an
 * OWNED heap is another thread's to change, as its fast paths take no
 * lock. The blocks waiting in its ring and stack are not yet the owner's,
 * though: another thread may take them off (the ring under service_lock,
 * which the owner's collections take too), put them in parcels (mapped
 * lists of addresses, so that no link lives in freed memory) for the owner
 * to take back, and give back every page of the heap's pools that only
 * such blocks overlap. No byte of such a page is live or on a free list,
 * so nothing the owner does can reach it meanwhile. The owner, when it
 * next collects, marks those pages purged (I3) and takes the blocks back
 * without writing to them.
 *
 * The walk of the heaps does it for an OWNED heap that has had blocks
 * waiting and collected none for a purge delay, as unused pools are
 * purged after one; malloc_trim does it at once. A freer that finds the
 * ring full puts its blocks in the same parcels (remote_ring_spill), so an
 * owner that stays off its CPU does not send every later free onto the
 * stack. A parcel names a block by its place in the arena space: blocks of
 * arenas mapped outside it (RLIMIT_AS, or the space full) stay on the
 * stack, pages and all. */

/* A parcel (pm_heap_parcel_t): blocks another thread took off an OWNED
 * heap's ring and stack (or a freer off its full ring), from the front of
 * entry[]; and from its back, the pages the walk gave back under them. In
 * 32 bits, since a parcel stays mapped until the owner wakes (2 million
 * blocks, 8 MiB): a block as its granule in the arena space, a mark as its
 * pool's first page there, shifted past a bit for each page of the pool. */
#define PARCEL_ENTRIES ((PM_HEAP_PARCEL_BYTES - sizeof(pm_heap_parcel_t)) / sizeof(uint32_t))
#define MARK_PAGE_BITS 8
_Static_assert(PM_POOL_SIZE / PM_OS_PAGE_SIZE <= MARK_PAGE_BITS, "a mark holds a pool's pages");
_Static_assert(PM_ARENA_SPACE_SIZE / PM_CLASS_GRANULE <= UINT32_MAX &&
                   (PM_ARENA_SPACE_SIZE / PM_OS_PAGE_SIZE) << MARK_PAGE_BITS <= UINT32_MAX,
               "a parcel entry holds a granule or a page of the arena space");

static uintptr_t arena_space_base(void)
{
    return atomic_load_explicit((_Atomic uintptr_t *)&pm_arena_space_base, memory_order_relaxed);
}

static uint32_t parcel_block_entry(const void *block)
{
    return (uint32_t)(((uintptr_t)block - arena_space_base()) / PM_CLASS_GRANULE);
}

static pm_block_t *parcel_block(uint32_t entry)
{
    return (pm_block_t *)(arena_space_base() + (uintptr_t)entry * PM_CLASS_GRANULE);
}

/* Per class, the pages given back under blocks waiting in parcels whose
 * owner has not yet marked them purged: the stats count them with the
 * pools' purged pages (trimmed_bytes). */
static _Atomic uint64_t parcel_purged_pages[PM_CLASS_COUNT];

/* A mark's pool, and its pages. */
static pm_pool_t *parcel_mark_pool(uint32_t mark)
{
    return pm_pool_of((char *)arena_space_base() +
                      (uintptr_t)(mark >> MARK_PAGE_BITS) * PM_OS_PAGE_SIZE);
}

static unsigned parcel_mark_pages(uint32_t mark) { return mark & ((1u << MARK_PAGE_BITS) - 1); }

static uint32_t parcel_mark_of(const pm_pool_t *pool, unsigned pages)
{
    uint32_t first_page =
        (uint32_t)(((uintptr_t)pm_pool_start(pool) - arena_space_base()) / PM_OS_PAGE_SIZE);
    return first_page << MARK_PAGE_BITS | pages;
}

/* The parcel's i-th mark, from the back of entry[]. */
static uint32_t parcel_mark(const pm_heap_parcel_t *p, uint32_t i)
{
    return p->entry[PARCEL_ENTRIES - 1 - i];
}

static void parcel_count_mark(uint32_t mark, bool added)
{
    unsigned pages = (unsigned)__builtin_popcount(parcel_mark_pages(mark));
    unsigned class_index = pm_pool_class_shared(parcel_mark_pool(mark));
    /* A mark's pool holds blocks that wait in the parcels, so it is in use
     * and has a class. Were it unused, PM_CLASS_NONE would index past the
     * table: GCC -O3 sees that path, and -Werror stopped a Release build. */
    if (class_index >= PM_CLASS_COUNT)
        return;
    _Atomic uint64_t *count = &parcel_purged_pages[class_index];
    if (added)
        atomic_fetch_add_explicit(count, pages, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(count, pages, memory_order_relaxed);
}

/* The taker's parcels, and its scratch map: a bit per granule of the arena
 * space (up to the last block taken) for each block taken. */
typedef struct idle_take {
    pm_heap_t *heap;           /* whose blocks they are */
    pm_heap_parcel_t *parcels; /* the newest first */
    uint64_t parcel_bytes;     /* theirs when taken, in parcel_bytes_in_use */
    uint64_t *taken_map;
    size_t map_bytes;
} idle_take_t;

/* What the parcels published to heaps hold, for the stats' metadata: a
 * page for each one's header, and 4 bytes an entry (a parcel is touched as
 * it fills). Counted before a list is published and taken off after it is
 * taken back, so it never falls below what is in the heaps. */
static _Atomic uint64_t parcel_bytes_in_use;

static uint64_t parcels_bytes(const pm_heap_parcel_t *list)
{
    uint64_t bytes = 0;
    for (const pm_heap_parcel_t *p = list; p != NULL; p = p->next)
        bytes += PM_OS_PAGE_SIZE + (uint64_t)(p->blocks + p->marks) * sizeof(uint32_t);
    return bytes;
}

/* The heap's parcels, taken off it to be added to (under its service_lock
 * or the heap directory lock, as the callers say). */
static idle_take_t idle_take_begin(pm_heap_t *heap)
{
    idle_take_t take = {
        .heap = heap,
        .parcels = atomic_exchange_explicit(&heap->parcels, NULL, memory_order_acquire)};
    take.parcel_bytes = parcels_bytes(take.parcels);
    return take;
}

/* Puts a list of parcels, the newest first, ahead of the heap's. */
static void parcels_publish(pm_heap_t *heap, pm_heap_parcel_t *list)
{
    pm_heap_parcel_t *oldest = list;
    while (oldest->next != NULL)
        oldest = oldest->next;
    pm_heap_parcel_t *head = atomic_load_explicit(&heap->parcels, memory_order_relaxed);
    do
        oldest->next = head;
    while (!atomic_compare_exchange_weak_explicit(&heap->parcels, &head, list,
                                                  memory_order_release, memory_order_relaxed));
}

/* Ends a take: its parcels go back to the heap, ahead of any published
 * meanwhile, and what was added to them counts. */
static void idle_take_end(pm_heap_t *heap, idle_take_t *take)
{
    if (take->parcels == NULL)
        return;
    /* Modular: the marks made afresh may be fewer than those dropped. */
    atomic_fetch_add_explicit(&parcel_bytes_in_use,
                              parcels_bytes(take->parcels) - take->parcel_bytes,
                              memory_order_relaxed);
    parcels_publish(heap, take->parcels);
}

/* SPARE PARCELS. A freer that finds the ring of an owner off its CPU full
 * spills it (remote_ring_spill), and on more threads than CPUs that is
 * thousands of times a second. Each spill mapped a parcel, and the owner
 * unmapped it once collected: an mmap and a page fault under the owner's
 * service_lock, which its collections wait for, and a munmap, which in a
 * process of several threads interrupts every CPU it runs on to flush its
 * TLB. So the owner keeps the last parcel it emptied, if it was never
 * marked and held no more than PARCEL_SPARE_ENTRIES (its first pages; a
 * spill holds a ring, and an owner off its CPU for long meets several),
 * for the next spill or idle take to fill again. A spare's pages stay
 * resident until its thread exits, PARCEL_SPARE_BYTES a heap at most (one
 * spill touches 2 pages), and the stats' metadata counts that bound.
 * 8 threads replacing each other's blocks at random
 * (bench/results/sparse-steady.md): 5,200 mmap/munmap pairs in a run, and
 * 33,000 futex calls; with a spare of 2 pages 1,800 and 15,500, of 8 pages
 * 290 and 6,400; wall time 0.92 of what it was (0.87 on 4 threads). */
#define PARCEL_SPARE_BYTES ((size_t)8 * PM_OS_PAGE_SIZE)
#define PARCEL_SPARE_ENTRIES ((PARCEL_SPARE_BYTES - sizeof(pm_heap_parcel_t)) / sizeof(uint32_t))
_Static_assert(PARCEL_SPARE_ENTRIES >= PM_REMOTE_RING, "a spare parcel holds a spilled ring");

/* Spare parcels kept by heaps, for the stats' metadata. */
static _Atomic uint64_t parcel_spares;

/* After its blocks are taken back: kept as the heap's spare if it has
 * none and the parcel touched no more than its first pages (never
 * marked: marks fill it from the back). */
static bool parcel_keep_spare(pm_heap_t *heap, pm_heap_parcel_t *p)
{
    pm_heap_parcel_t *none = NULL;
    if (p->marked || p->blocks > PARCEL_SPARE_ENTRIES ||
        !atomic_compare_exchange_strong_explicit(&heap->spare_parcel, &none, p,
                                                 memory_order_release, memory_order_relaxed))
        return false;
    atomic_fetch_add_explicit(&parcel_spares, 1, memory_order_relaxed);
    return true;
}

/* The heap's spare, taken off it (NULL if it has none). */
static pm_heap_parcel_t *parcel_take_spare(pm_heap_t *heap)
{
    pm_heap_parcel_t *p =
        atomic_exchange_explicit(&heap->spare_parcel, NULL, memory_order_acquire);
    if (p != NULL)
        atomic_fetch_sub_explicit(&parcel_spares, 1, memory_order_relaxed);
    return p;
}

/* A heap whose thread exits gives its spare back: only an OWNED heap's
 * ring spills, and the spare would wait unused until a thread adopts it. */
static void parcel_drop_spare(pm_heap_t *heap)
{
    pm_heap_parcel_t *p = parcel_take_spare(heap);
    if (p != NULL)
        pm_os_unmap(p, PM_HEAP_PARCEL_BYTES);
}

/* A new parcel for a take: the heap's spare, emptied, or one mapped. */
static pm_heap_parcel_t *parcel_new(pm_heap_t *heap)
{
    pm_heap_parcel_t *p = parcel_take_spare(heap);
    if (p == NULL)
        return pm_os_map(PM_HEAP_PARCEL_BYTES);
    p->blocks = p->marks = 0;
    return p;
}

/* Makes sure the newest parcel has room, taking a new one if need be;
 * false if none could be mapped. */
static bool idle_take_room(idle_take_t *take)
{
    pm_heap_parcel_t *p = take->parcels;
    if (p != NULL && p->blocks + p->marks < PARCEL_ENTRIES)
        return true;
    p = parcel_new(take->heap);
    if (p == NULL)
        return false;
    p->next = take->parcels;
    take->parcels = p;
    return true;
}

/* Adds a block (or a mark) to the parcels; false if no parcel could be mapped. */
static bool idle_take_add(idle_take_t *take, uint32_t entry, bool mark)
{
    if (!idle_take_room(take))
        return false;
    pm_heap_parcel_t *p = take->parcels;
    if (mark) {
        p->entry[PARCEL_ENTRIES - 1 - p->marks++] = entry;
        p->marked = true;
    } else {
        p->entry[p->blocks++] = entry;
    }
    return true;
}

/* A block taken off the ring or the stack; back on the stack, where it
 * waits for the owner as before, if there is no room for it, or if a parcel
 * cannot name it: a parcel entry is a place in the arena space, and under
 * RLIMIT_AS, or with the space full, arenas are mapped outside it (a
 * process under `ulimit -v` took back addresses that were never blocks). */
static void idle_take_block(pm_heap_t *heap, pm_block_t *b, void *ctx)
{
    pm_pool_t *pool = pm_pool_of(b);
    if (PM_UNLIKELY(pm_pool_heap(pool) != heap)) {
        heap_pass_on(pool, b);
        return;
    }
    if (!pm_arena_space_contains(b) || !idle_take_add(ctx, parcel_block_entry(b), false))
        remote_stack_push(heap, b);
}

/* A block from the stack, linked through freed memory: checked whole, as
 * the owner would (heap_take_remote), so that the parcel holds only what a
 * freer checked (heap_take_pushed). */
static void idle_take_from_stack(pm_heap_t *heap, pm_block_t *b, void *ctx)
{
    pm_pool_checked(b, PM_OP_FREE, false);
    idle_take_block(heap, b, ctx);
}

static bool taken_map_test(const void *block, void *ctx)
{
    const idle_take_t *take = ctx;
    size_t i = parcel_block_entry(block);
    return i / 64 < take->map_bytes / 8 && (take->taken_map[i / 64] >> (i % 64)) & 1;
}

/* Gives back the pages of the parcels' pools that only their blocks
 * overlap, each pool once (its first block met; the bits of a pool's
 * blocks cleared as it is done), and notes them in the parcels. Returns
 * the pages. */
static size_t idle_take_purge(idle_take_t *take)
{
    size_t last = 0;
    for (pm_heap_parcel_t *p = take->parcels; p != NULL; p = p->next)
        for (uint32_t i = 0; i < p->blocks; i++)
            if (p->entry[i] > last)
                last = p->entry[i];
    take->map_bytes = (last / 64 + 1) * sizeof(uint64_t);
    take->taken_map = pm_os_map(take->map_bytes);
    if (take->taken_map == NULL)
        return 0; /* the blocks go to the owner all the same */
    /* A block met twice was freed twice: the owner, which takes the blocks
     * of a page given back without reading them, could not tell. */
    for (pm_heap_parcel_t *p = take->parcels; p != NULL; p = p->next)
        for (uint32_t i = 0; i < p->blocks; i++) {
            uint64_t *word = &take->taken_map[p->entry[i] / 64];
            uint64_t bit = (uint64_t)1 << (p->entry[i] % 64);
            if (*word & bit)
                pm_fatal("double free", parcel_block(p->entry[i]), -1);
            *word |= bit;
        }
    size_t purged = 0;
    for (pm_heap_parcel_t *p = take->parcels; p != NULL; p = p->next)
        for (uint32_t i = 0; i < p->blocks; i++) {
            pm_block_t *block = parcel_block(p->entry[i]);
            if (!taken_map_test(block, take))
                continue; /* its pool is done */
            pm_pool_t *pool = pm_pool_of(block);
            unsigned pages = pm_pool_purge_waiting_pages(pool, taken_map_test, take);
            /* No mark for want of a parcel: the owner then takes the
             * blocks back through their links, and the pages fault in. */
            uint32_t mark = parcel_mark_of(pool, pages);
            if (pages != 0 && idle_take_add(take, mark, true)) {
                parcel_count_mark(mark, true);
                purged += (size_t)__builtin_popcount(pages);
            }
            /* A pool's granules fill whole words: pools start on pages. */
            size_t from = parcel_block_entry(pm_pool_start(pool)) / 64;
            size_t to = from + pm_pool_bytes(pm_pool_index_of(pool)) / PM_CLASS_GRANULE / 64;
            for (size_t w = from; w < to && w < take->map_bytes / 8; w++)
                take->taken_map[w] = 0;
        }
    pm_os_unmap(take->taken_map, take->map_bytes);
    return purged;
}

/* Takes the blocks waiting in an OWNED heap that is not the caller's, and
 * gives back the pages only they overlap. Under the heap directory lock: a
 * fork waits for it, and the heap stays OWNED. Returns the pages given
 * back. */
static size_t heap_take_for_idle_owner(pm_heap_t *heap)
{
    /* The parcels an earlier take left the owner go in again: a page whose
     * blocks were freed some before it and some after is given back now.
     * Their marks are made afresh (their pages found again, as only their
     * blocks still overlap them), so that no page is counted twice. */
    idle_take_t take = idle_take_begin(heap);
    for (pm_heap_parcel_t *p = take.parcels; p != NULL; p = p->next) {
        for (uint32_t i = 0; i < p->marks; i++)
            parcel_count_mark(parcel_mark(p, i), false);
        p->marks = 0;
    }
    remote_ring_drain(heap, true, false, false, idle_take_block, &take);
    remote_stack_drain(heap, idle_take_from_stack, &take);
    if (take.parcels == NULL)
        return 0;
    size_t purged = idle_take_purge(&take);
    idle_take_end(heap, &take);
    return purged;
}

/* A freer found the owner's ring full. Rather than overflow onto the stack,
 * the ring's blocks go into the owner's newest parcel (a new one once it is
 * full), and the ring has room again. With 4 threads on 2 CPUs an owner is
 * off its CPU for whole time slices while the others free into its ring:
 * an mstress-like probe sent 62% of its remote frees onto the stack, each
 * a compare-and-swap on one contended head and, for the owner, a link read
 * from a line another core wrote (bench/results/big-heap-random.md). A
 * parcel holds addresses, 4 bytes a block, read from lines of their own.
 *
 * Under service_lock, which the ring's takers hold, and with it the
 * parcels taken off the heap until they go back: their newest is written
 * by no one else meanwhile. The owner's collection, or the walk's, finds
 * them later instead. heap_abandon collects under the same lock, so a heap
 * that turns ABANDONED meanwhile still finds them; a fork waits for it
 * (pm_fork_prepare takes every service_lock). With no parcel to be had
 * (none could be mapped), the ring stays as it is and the caller's block
 * goes on the stack, as before. Returns whether the ring was emptied (or
 * found emptied by its owner meanwhile). */
static bool remote_ring_spill(pm_heap_t *owner)
{
    if (owner == &shared_heap || arena_space_base() == PM_ARENA_SPACE_NONE)
        return false; /* collected under its lock / no block could go in a parcel */
    bool spilled = false;
    pm_lock(owner->service_lock);
    if (heap_owned(owner)) {
        idle_take_t take = idle_take_begin(owner);
        spilled = idle_take_room(&take);
        if (spilled)
            remote_ring_drain(owner, false, false, false, idle_take_block, &take);
        idle_take_end(owner, &take);
    }
    pm_unlock(owner->service_lock);
    return spilled;
}

/* Blocks wait in an OWNED heap: stamped with the time if it has no stamp,
 * or if the owner has collected since (`restamp`, the walk's look). */
static void heap_note_waiting(pm_heap_t *heap, uint64_t now_ms, bool restamp)
{
    uint64_t seen_ms = atomic_load_explicit(&heap->idle_seen_ms, memory_order_relaxed);
    uint64_t collections = atomic_load_explicit(&heap->remote_collections, memory_order_relaxed);
    if (seen_ms != 0 &&
        (!restamp ||
         collections == atomic_load_explicit(&heap->idle_seen_collections, memory_order_relaxed)))
        return;
    atomic_store_explicit(&heap->idle_seen_collections, collections, memory_order_relaxed);
    atomic_store_explicit(&heap->idle_seen_ms, now_ms, memory_order_relaxed);
}

/* The walk's part for an OWNED heap (not the walker's): if blocks have
 * waited in it with no collection for a purge delay (at once if `all`),
 * they are taken and the pages under them given back. Tells *next_due_ms
 * when it would be. */
static size_t heap_relieve_idle_owner(pm_heap_t *heap, uint64_t now_ms, bool all,
                                      uint64_t *next_due_ms)
{
    /* No arena space (RLIMIT_AS): no block could go in a parcel, and each
     * walk would only move them all off the stack and back. */
    if (arena_space_base() == PM_ARENA_SPACE_NONE)
        return 0;
    if (heap_remote_empty(heap)) {
        atomic_store_explicit(&heap->idle_seen_ms, 0, memory_order_relaxed);
        return 0;
    }
    if (!all) {
        heap_note_waiting(heap, now_ms, true);
        uint64_t due = atomic_load_explicit(&heap->idle_seen_ms, memory_order_relaxed) +
                       pm_options.purge_delay_ms;
        if (now_ms < due) {
            if (due < *next_due_ms)
                *next_due_ms = due;
            return 0;
        }
    }
    atomic_store_explicit(&heap->idle_seen_ms, 0, memory_order_relaxed);
    return heap_take_for_idle_owner(heap);
}

/* The owner's (or an ABANDONED heap's collector's) half: the parcels'
 * pages marked purged first, as every block starting in them is in one of
 * these parcels; then their blocks taken back. */
static bool heap_collect_parcels(pm_heap_t *heap)
{
    if (atomic_load_explicit(&heap->parcels, memory_order_relaxed) == NULL)
        return false;
    pm_heap_parcel_t *list = atomic_exchange_explicit(&heap->parcels, NULL, memory_order_acquire);
    atomic_fetch_sub_explicit(&parcel_bytes_in_use, parcels_bytes(list), memory_order_relaxed);
    for (pm_heap_parcel_t *p = list; p != NULL; p = p->next)
        for (uint32_t i = 0; i < p->marks; i++) {
            uint32_t mark = parcel_mark(p, i);
            parcel_count_mark(mark, false);
            /* A pool the owner gave to the exchange since (EXCHANGE) is
             * another heap's to mark: its blocks go on to that heap, which
             * takes them back as any others, writing their pages in again. */
            pm_pool_t *pool = parcel_mark_pool(mark);
            if (pm_pool_heap(pool) == heap)
                pm_pool_mark_purged(pool, parcel_mark_pages(mark));
        }
    while (list != NULL) {
        pm_heap_parcel_t *next = list->next;
        for (uint32_t i = 0; i < list->blocks && i < RING_PREFETCH_AHEAD; i++)
            __builtin_prefetch(parcel_block(list->entry[i]), 1);
        for (uint32_t i = 0; i < list->blocks; i++) {
            if (i + RING_PREFETCH_AHEAD < list->blocks)
                __builtin_prefetch(parcel_block(list->entry[i + RING_PREFETCH_AHEAD]), 1);
            pm_block_t *b = parcel_block(list->entry[i]);
            heap_take_remote_from(heap, pm_pool_of(b), b, true);
        }
        if (!parcel_keep_spare(heap, list))
            pm_os_unmap(list, PM_HEAP_PARCEL_BYTES);
        list = next;
    }
    return true;
}

/* Hands out the head of a pool's free list, which must not be empty. */
static PM_ALWAYS_INLINE void *heap_pop(pm_heap_t *heap, pm_bin_t *bin, pm_pool_t *pool)
{
    pm_block_t *block = pool->free_list;
    pm_block_t *next;
    if (!pm_link_next(block, &next))
        pm_pool_corrupt_link(pool, block);
    pool->free_list = next;
    pm_block_clear_tag(block); /* I6: live */
    if (pool->debug_fill)
        pm_pool_debug_reuse(pool, block); /* the fresh pattern over all of it */
    PM_COUNTER_ADD(pool->used_word, 1); /* I3: used_count + 1 */
    PM_COUNTER_ADD(bin->allocated_total, 1);
    if ((heap->tick_countdown -= (int64_t)pool->block_size) < 0 && heap != &shared_heap)
        return pm_heap_tick(heap, block, pool->block_size, pool->block_size);
    return block;
}

/* Blocks come from, in order: a pool's free list (freed blocks, already
 * touched), the remote ring and stack (blocks other threads freed),
 * untouched blocks of a pool being carved, a pool from an arena. Collecting
 * before carving keeps a producer whose consumer frees everything from
 * faulting in a page per class while its blocks wait to be collected. The
 * bin points the fast path at the pool that serves; if it is mostly free
 * and its free list out of order, the list is linked again in address
 * order first (pool.c, ADDRESS ORDER).
 *
 * Of the first two pools on the bin list with free blocks, the one with
 * more blocks in use serves: a pool the program is emptying is left to
 * drain and go back to its arena, rather than refilled with young blocks
 * that pin it. With the first one found, a FIFO window's frees and
 * allocations kept every pool of a class part full: peak RSS of
 * pm_bench_churn 4,992 KiB against 4,892 (one thread), 14,848 against
 * 14,400 (four), pm_bench_server 3,512 against 3,392; 2.3 instructions
 * more a pair on churn, 0.5% fewer on python_objects.py. */
static pm_pool_t *exchange_take(pm_heap_t *heap, unsigned class_index);
static void exchange_note_wanted(pm_heap_t *heap, unsigned class_index);

/* What the quick walk (bin_find_serving) leaves to the general one. */
#define WALK_BAILED ((pm_pool_t *)1)

/* A full pool met by the walk leaves its list (bin_remove_full); false if
 * the quick walk must leave that to the general one (a sparse pool, whose
 * leaving calls out). */
static PM_ALWAYS_INLINE bool bin_walk_remove_full(pm_heap_t *heap, pm_bin_t *bin, pm_pool_t *pool,
                                                  bool quick)
{
    if (!quick)
        bin_remove_full(heap, bin, pool);
    else if (!pool->sparse)
        bin_remove_full_owned(bin, pool);
    else
        return false;
    return true;
}

/* The pool to serve from the bin's list, the walk above: NULL if none has
 * a free block, with *carvable the first that has blocks left to carve.
 * `quick` (a constant): a pool switch's walk in an OWNED heap, which calls
 * nothing, so that it saves and restores no register; a pool that would
 * need a call (it gave back pages, or is sparse) returns WALK_BAILED for
 * the general walk, which does all. */
static PM_ALWAYS_INLINE pm_pool_t *bin_find_serving(pm_heap_t *heap, pm_bin_t *bin,
                                                    pm_pool_t **carvable, bool quick)
{
    /* The pool that ran dry serving leaves first if it is full: it may be
     * anywhere on the list, past where the walk stops. */
    pm_pool_t *dry = bin->serving;
    if (bin->pools != NULL && dry->free_list == NULL && dry->purged_pages == 0 &&
        dry->carve_index >= dry->capacity && !bin_walk_remove_full(heap, bin, dry, quick))
        return WALK_BAILED;
    pm_pool_t *serving = NULL;
    for (pm_pool_t *pool = bin->pools, *next; pool != NULL; pool = next) {
        next = pool->next;
        /* A pool that gave back pages (sparse, or malloc_trim) takes
         * them back as soon as it is met dry, rather than wait, dry on
         * the list, for every pool with free blocks to run out: every
         * slow path walked past all those waiting, and refilling the
         * pools of pm_bench_phases' random free took 5.5 s, not 2.5. */
        if (pool->free_list == NULL) {
            if (pool->purged_pages == 0) {
                if (pool->carve_index < pool->capacity) {
                    if (*carvable == NULL)
                        *carvable = pool;
                } else if (!bin_walk_remove_full(heap, bin, pool, quick)) {
                    return WALK_BAILED;
                } /* else full, or its frees are on the stack (I4): off the list */
                continue;
            }
            if (quick)
                return WALK_BAILED;
            heap_note_sparse_ended(heap);
            heap_flush_sparse_purges(heap); /* before its pages come back */
            pm_pool_carve(pool, false);
        }
        if (serving == NULL) {
            serving = pool;
            continue;
        }
        if (pm_pool_used(pool) > pm_pool_used(serving))
            serving = pool;
        break;
    }
    return serving;
}

/* Whether heap_serve would call out for the pool: it is sparse, or mostly
 * free, or filled for debugging. */
static PM_ALWAYS_INLINE bool pool_serves_quick(const pm_pool_t *pool)
{
    return !pool->sparse && !pool->debug_fill &&
           !pm_pool_mostly_free(pool, pool->used_word & PM_POOL_USED_BITS);
}

/* The pool found serves: the fast path takes blocks from it now, it is no
 * longer sparse, and it hands out its first free block. */
static PM_ALWAYS_INLINE void *heap_serve(pm_heap_t *heap, pm_bin_t *bin, pm_pool_t *serving)
{
    if (serving != bin->serving) {
        pool_leave_sparse(serving);
        bin->serving = serving;
    }
    pm_pool_order_if_mostly_free(serving);
    return heap_pop(heap, bin, serving);
}

/* A pool for the bin from the exchange or, failing that, from the arenas,
 * pushed to serve; false if none could be had. Out of line: its calls'
 * arguments, worked out once for heap_alloc_general's loop, took 35
 * instructions of every slow path that took back a parked pool. */
static __attribute__((noinline)) bool heap_add_pool(pm_heap_t *heap, pm_bin_t *bin,
                                                    unsigned class_index)
{
    pm_pool_t *pool;
    if (heap_owned(heap) && (pool = exchange_take(heap, class_index)) != NULL) {
        bin_push(bin, pool);
        bin_count_pools(heap, bin, 1);
        return true;
    }
    /* A fork child's first pool from the arenas: the orphaned heaps'
     * arenas first become everyone's (no lock held: the owner's). */
    if (PM_UNLIKELY(atomic_load_explicit(&heaps.orphans_pending, memory_order_relaxed)) &&
        heap_owned(heap)) {
        heaps_lock();
        heaps_unlock();
    }
    if (heap_owned(heap))
        exchange_note_wanted(heap, class_index);
    pool = pm_arena_acquire_pool(class_index, heap, bin->pool_count >= PM_HEAP_COLOURED_POOLS);
    if (pool == NULL)
        return false;
    bin_push(bin, pool);
    bin_count_pools(heap, bin, 1);
    heap_note_pool_taken(heap, bin);
    heap_housekeeping(heap);
    return true;
}

/* A block from the heap's bin, whose serving pool has none: the walk, then
 * as needed collecting, carving, taking a pool, and walking again. With
 * `walked`, the quick walk has just found no free block: it took the full
 * pools off, and left only pools to carve. */
static __attribute__((noinline)) void *heap_alloc_general(pm_heap_t *heap, unsigned class_index,
                                                         bool walked)
{
    pm_bin_t *bin = &heap->bins[class_index];
    for (;; walked = false) {
        pm_pool_t *carvable = bin->pools;
        if (!walked) {
            carvable = NULL;
            pm_pool_t *serving = bin_find_serving(heap, bin, &carvable, false);
            if (serving != NULL)
                return heap_serve(heap, bin, serving);
        }
        if (heap_collect_remote(heap, false))
            continue;
        if (carvable != NULL && pm_pool_carve(carvable, bin->pool_count <= PM_HEAP_COLOURED_POOLS))
            return heap_serve(heap, bin, carvable);
        pm_pool_t *taken;
        if (heap_parked_count(heap) != 0 && (taken = heap_take_parked(heap, class_index)) != NULL) {
            bin_push(bin, taken);
            bin_count_pools(heap, bin, 1);
            continue;
        }
        if (!heap_add_pool(heap, bin, class_index))
            return NULL;
    }
}

/* A pool switch: the quick walk, whose pool serves, or the general walk.
 * With the general one's loop and calls in the same function, every switch
 * saved and restored six registers (now three, after the first tests), and
 * random replacement of 256-byte blocks, 1,000 live, took 147 instructions
 * a switch here, not 133 (bench/results/slow-path-switch.md). */
static void *heap_alloc_from(pm_heap_t *heap, unsigned class_index)
{
    if (!heap_owned(heap))
        return heap_alloc_general(heap, class_index, false);
    pm_bin_t *bin = &heap->bins[class_index];
    pm_pool_t *carvable = NULL;
    pm_pool_t *serving = bin_find_serving(heap, bin, &carvable, true);
    if (serving == NULL || serving == WALK_BAILED || !pool_serves_quick(serving))
        return heap_alloc_general(heap, class_index, serving == NULL);
    return heap_serve(heap, bin, serving);
}

/* ---- heaps and threads --------------------------------------------------- */

static void heap_thread_exit(void *arg);

/* Caller holds the heap directory lock. */
static pm_heap_t *heap_create(void)
{
    /* The heap, then its ring, each on lines of its own. */
    const size_t heap_bytes = (sizeof(pm_heap_t) + PM_CACHE_LINE - 1) & ~(PM_CACHE_LINE - 1);
    const size_t size = heap_bytes + PM_REMOTE_RING * sizeof(pm_block_t *);
    _Static_assert((HEAP_SLAB_BYTES - PM_OS_PAGE_SIZE) /
                           (sizeof(pm_heap_t) + PM_REMOTE_RING * sizeof(pm_block_t *)) <=
                       HEAP_SLAB_LOCKS,
                   "a slab's first page holds a lock for each of its heaps");
    if (heaps.slab_next == NULL || (size_t)(heaps.slab_end - heaps.slab_next) < size) {
        char *slab = pm_os_map(HEAP_SLAB_BYTES);
        if (slab == NULL)
            return NULL;
        if (!pm_os_wipe_on_fork(slab, PM_OS_PAGE_SIZE))
            heaps.slab_locks_kept = true;
        heaps.slab_locks = (pm_lock_t *)slab;
        heaps.slab_next = slab + PM_OS_PAGE_SIZE;
        heaps.slab_end = slab + HEAP_SLAB_BYTES;
        heaps.bytes += PM_OS_PAGE_SIZE;
    }
    pm_heap_t *heap = (pm_heap_t *)heaps.slab_next;
    heap->remote_ring = (_Atomic(pm_block_t *) *)(heaps.slab_next + heap_bytes);
    heaps.slab_next += size;
    heaps.bytes += size;
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++)
        bin_serve_head(&heap->bins[c]);
    if (heaps.made == 0)
        cpu_note_prefetchw();
    /* The shared heap's is stripe 0: the first heaps made go elsewhere. */
    heap->parked_stripe = ++heaps.made % PM_PARKED_STRIPES;
    heap->service_lock = heaps.slab_locks;
    heaps.slab_locks += PM_CACHE_LINE / sizeof(pm_lock_t);
    pm_lock_init(heap->service_lock);
    atomic_store_explicit(&heap->state, PM_HEAP_OWNED, memory_order_relaxed);
    pm_arena_home_open(&heap->arena_home);
    heap->tick_bytes = PM_HEAP_TICK_MIN_BYTES;
    heap->tick_ms = pm_os_coarse_ms();
    pm_system_cache_open(heap);
    pm_profile_heap_init(heap);
    heap->next_heap = heaps.all;
    heaps.all = heap;
    return heap;
}

/* Gives the calling thread a heap: an abandoned one if any, else a new one.
 * NULL when the thread must use the shared heap. */
static pm_heap_t *heap_for_thread(void)
{
    if (thread_heap_released || pm_options.debug)
        return NULL; /* I12: debug mode's checks are on the shared heap's path */
    heaps_lock();
    if (!heaps.exit_key_ready && !heaps.exit_key_failed) {
        /* Without a destructor, heaps of exited threads could never be
         * handed on; then every thread shares the locked heap instead. */
        heaps.exit_key_failed = pthread_key_create(&heaps.exit_key, heap_thread_exit) != 0;
        heaps.exit_key_ready = !heaps.exit_key_failed;
    }
    pm_heap_t *heap = NULL;
    if (heaps.exit_key_ready) {
        heap = heaps.abandoned;
        if (heap != NULL) {
            heaps.abandoned = heap->next_abandoned;
            pm_lock(heap->service_lock);
            atomic_store_explicit(&heap->state, PM_HEAP_OWNED, memory_order_seq_cst);
            heap->kept_until_ms = 0; /* its pools are the new owner's to keep */
            pm_unlock(heap->service_lock);
            pm_arena_home_open(&heap->arena_home);
        } else {
            heap = heap_create();
        }
    }
    heaps_unlock();
    if (heap != NULL) {
        /* Set first: pthread_setspecific may allocate, and must find it. */
        pm_thread_heap = heap;
        pthread_setspecific(heaps.exit_key, heap);
    }
    return heap;
}

/* The calling thread gives its heap up, pools and all, to wait for another
 * thread. Meanwhile whoever frees into it collects its remote ring and
 * stack (heap_free_remote); state is published before the last collection,
 * so a block freed before it is collected here (heap_collect_remote says
 * how, for the ring) and one freed after it finds the heap ABANDONED. */
static void heap_abandon(pm_heap_t *heap)
{
    pm_system_cache_flush(heap); /* its chunks are glibc's, in this thread's arena */
    heap_flush_sparse_purges(heap);
    pm_thread_heap = &pm_heap_empty;
    thread_heap_released = true;
    heaps_lock();
    atomic_store_explicit(&heap->state, PM_HEAP_ABANDONED, memory_order_seq_cst);
    pm_lock(heap->service_lock);
    heap_collect_remote(heap, true);
    parcel_drop_spare(heap);
    /* The empty pool each bin keeps for the next owner (I4), and the parked
     * ones, wait for one with their pages for a purge delay (the walk then
     * gives them back, heap_release_abandoned): a program whose threads
     * come and go found them purged at every exit and faulted them in again
     * at every start. */
    if (pm_options.purge_delay_ms == 0 || pm_arena_collapsed())
        heap_give_back_kept(heap);
    else
        heap->kept_until_ms = pm_os_coarse_ms() + pm_options.purge_delay_ms;
    pm_unlock(heap->service_lock);
    pm_arena_home_close(&heap->arena_home);
    heap->next_abandoned = heaps.abandoned;
    heaps.abandoned = heap;
    heaps_unlock();
}

static void heap_thread_exit(void *arg) { heap_abandon(arg); }

/* Options are read at start-up, after the thread may already have made a
 * heap: under POOLMALLOC_DEBUG it gives it up, and its pools' blocks are
 * freed through the checked path like every other (I12). */
void pm_heap_apply_debug(void)
{
    pm_heap_t *heap = pm_thread_heap;
    if (!pm_options.debug || heap == &pm_heap_empty)
        return;
    pthread_setspecific(heaps.exit_key, NULL); /* abandoned once, now */
    heap_abandon(heap);
}

static void *heap_alloc_shared(unsigned class_index)
{
    pm_lock(shared_heap.service_lock);
    void *block = heap_alloc_from(&shared_heap, class_index);
    pm_unlock(shared_heap.service_lock);
    return block;
}

void *pm_heap_alloc_slow(pm_heap_t *heap, unsigned class_index)
{
    if (heap == &pm_heap_empty) {
        if (pm_profile_unwinding())
            return NULL; /* I11: the caller goes to glibc */
        heap = heap_for_thread();
        if (heap == NULL)
            return heap_alloc_shared(class_index);
    }
    return heap_alloc_from(heap, class_index);
}

/* malloc_trim's part in one heap: the empty pools it keeps (I4) go back to
 * their arenas, and the others on its bin lists give back their pages with
 * no live block (a full pool, off the lists, has no free block). Run by the
 * owner, or under the service_lock of an abandoned heap. Returns whether
 * anything went. */
static bool heap_trim_pools(pm_heap_t *heap)
{
    bool released = false;
    heap_collect_remote(heap, false);
    pm_os_purge_batch_t batch = {.count = 0};
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++) {
        pm_bin_t *bin = &heap->bins[c];
        for (pm_pool_t *pool = bin->pools, *next; pool != NULL; pool = next) {
            next = pool->next;
            if (pm_pool_used(pool) == 0) {
                pool_retire(heap, bin, pool);
                released = true;
            } else if (pm_pool_purge_free_pages(pool, &batch, false) != 0) {
                released = true;
            }
        }
    }
    pm_os_purge_flush(&batch);
    return released;
}

bool pm_heap_trim(void)
{
    bool released = false;
    if (pm_thread_heap != &pm_heap_empty) {
        released |= heap_trim_pools(pm_thread_heap);
        heap_flush_sparse_purges(pm_thread_heap); /* its collection's too */
    }
    uint64_t next_due_ms;
    /* The caller's too: its remote frees may park. */
    released |= heap_release_parked(pm_thread_heap, 0, true, &next_due_ms) != 0;
    heaps_lock();
    for (pm_heap_t *heap = heaps.abandoned; heap != NULL; heap = heap->next_abandoned) {
        pm_lock(heap->service_lock);
        released |= heap_trim_pools(heap);
        pm_unlock(heap->service_lock);
    }
    for (pm_heap_t *heap = &shared_heap; heap != NULL; heap = heap->next_heap) {
        pm_lock(heap->service_lock);
        released |= heap_trim_pools(heap);
        pm_unlock(heap->service_lock);
    }
    heaps_unlock();
    return released;
}

/* ---- ADOPTION -------------------------------------------------------------
 * A thread that frees a block of an ABANDONED heap's pool takes the pool
 * into its own heap, and frees the block, and the pool's later blocks, as
 * its owner. Each such free was otherwise a push into the abandoned heap's
 * ring and, a batch of 64 at a time, a collection under its service_lock
 * with the block checked twice: about 285 instructions, against 35 on the
 * owner's fast path. A program whose threads make blocks and exit while
 * another frees them (a pool of short-lived workers, pm_bench_handoff)
 * took 1.1-1.3 s to free 12 million such blocks, 0.4-0.5 s to free as many
 * of its own, and tcmalloc and mimalloc 0.5-0.6 s. A pool holding a
 * sampled block stays where it is: its frees take the full path anyway
 * (I11), and the ring's collector drops the record as it takes the block
 * back, as before (profiling samples one pool in many).
 *
 * The pool changes hands under the abandoned heap's service_lock, after
 * its ring and stack are collected. A freer that read the old owner just
 * before may still push a block of the pool into the old heap's ring or
 * stack afterwards: whoever collects it there finds a pool it does not own
 * and passes the block on to the owner's ring (heap_pass_on). The pool is
 * marked `adopted` until it is next acquired, so that a pool met under a
 * heap that never owned it for any other reason (freed twice, it emptied
 * and went to another heap in between) is still reported as a double free.
 * The adopter, if it only ever frees, might never collect what other
 * threads free into its adopted pools: a thread that frees other threads'
 * blocks collects its own ring now and then too (heap_free_remote). */

/* A block met in a ring, on a stack or in a parcel of a heap that does not
 * own its pool: freed as its pool was adopted, it goes on to the owner's
 * ring (or stack) without a lock, as the caller may hold service_locks; an
 * ABANDONED owner's is collected by the walk of the heaps. Anything else
 * was freed twice. */
static void heap_pass_on(pm_pool_t *pool, pm_block_t *b)
{
    pm_heap_t *owner = pm_pool_heap(pool);
    if (owner == NULL || !__atomic_load_n(&pool->adopted, __ATOMIC_RELAXED))
        pm_fatal("double free", b, pool->class_index);
    uint64_t pos;
    if (!remote_ring_push(owner, b, &pos))
        remote_stack_push(owner, b);
    /* seq_cst after the push, as heap_free_remote reads it (heap_abandon). */
    if (atomic_load_explicit(&owner->state, memory_order_seq_cst) == PM_HEAP_ABANDONED)
        atomic_store_explicit(&abandoned_waiting, true, memory_order_relaxed);
}

/* `me`, an OWNED heap, the caller's, takes `pool` from `owner` to free
 * `block` in it; false if the pool cannot be taken (the heap was adopted
 * whole meanwhile, the pool by another thread, or it holds sampled blocks). */
static bool heap_adopt_pool(pm_heap_t *me, pm_heap_t *owner, pm_pool_t *pool, pm_block_t *block)
{
    pm_lock(owner->service_lock);
    /* Acquire: heap_abandon publishes the state before it takes the lock,
     * so the lock alone does not order the abandoning thread's last writes
     * to its pools before this thread's (ThreadSanitizer saw the race in
     * test_threads_producer_consumer and test_threads_adopt_while_others_free:
     * a maker's free list written as its owner, then read here). */
    bool adopt = atomic_load_explicit(&owner->state, memory_order_acquire) == PM_HEAP_ABANDONED;
    if (adopt) {
        /* First, so that the ring holds none of the pool's blocks but those
         * pushed after the hand-over; the block is live, so its pool stays
         * in use (I3). */
        heap_collect_remote(owner, false);
        adopt = pm_pool_heap(pool) == owner && !pm_pool_holds_sampled(pool);
    }
    unsigned class_index = pool->class_index;
    bool listed = false;
    if (adopt) {
        /* Under the lock the pool is the holder's to read: only the
         * lock's holders take the heap's blocks back. Not live, another
         * free came first (I6). */
        if (pm_pool_block_free(pool, block))
            pm_fatal("double free", block, class_index);
        pm_bin_t *bin = &owner->bins[class_index];
        listed = pm_pool_on_bin_list(pool);
        if (listed)
            bin_remove(bin, pool);
        bin_count_pools(owner, bin, -1);
        __atomic_store_n(&pool->adopted, true, __ATOMIC_RELAXED);
        pm_pool_set_heap(pool, me);
    }
    pm_unlock(owner->service_lock);
    if (!adopt)
        return false;
    /* The rest as its owner, with no lock held: taking the block back may
     * park or release the pool, and walk the heaps. */
    pm_bin_t *bin = &me->bins[class_index];
    bin_count_pools(me, bin, 1);
    if (listed)
        bin_append(bin, pool);
    heap_take_back(me, pool, block); /* a full pool joins the bin here (I4) */
    return true;
}

/* ---- EXCHANGE --------------------------------------------------------------
 * A heap's pools hold one class each and serve only their heap: a thread
 * that frees most of a class's blocks keeps the pools, a few live blocks
 * in each, while another thread takes fresh pools for the same class from
 * the arenas. A server's workers that go through the phases of a job each
 * on their own time (pm_bench_drain: 8 threads, each filling 100,000 slots
 * with blocks of 16..143, 128..255, then 384..511 bytes and freeing all but
 * 1 in 20 after each phase) reached 514 MiB, where tcmalloc, whose threads
 * share each class's free blocks through its central lists, reached 356,
 * and glibc, whose chunks merge, 367: single-threaded, tcmalloc reaches as
 * much as poolmalloc (500 MiB). With the exchange, 383 MiB, in 0.97-1.08
 * of the time (bench/results/exchange.md).
 *
 * So an owner whose pool comes down to its sparse mark (SPARSE POOLS: a
 * quarter of its blocks, 16 at most) gives the pool to the exchange, a
 * heap that belongs to no thread, when
 *   - two or more of the class's pools are sparse, and a quarter or more
 *     of all it holds: the heap is letting go of the class at random (a
 *     program churning a window of objects, or freeing everything in the
 *     order it was made, drains its pools one at a time, and the pool
 *     would soon be empty or needed again; pools that drain at random
 *     come to their marks one after another too, and the first quarter
 *     stay), and
 *   - another thread's heap took a pool of the class from the arenas
 *     within EXCHANGE_WANTED_MS (exchange_note_wanted): someone will take
 *     it; and
 *   - the heap has not, within a purge delay, taken a pool of the class
 *     again soon after giving some up (exchange_note_taken): threads that
 *     each make a batch, free most of it and make the next pass their
 *     pools round for nothing (pm_bench_rounds gave 14,000 pools in 100
 *     rounds, and took 1.08 of the time; with the rule, 279).
 * An owner that finds no pool with room, no parked one, takes one from the
 * exchange before it goes to the arenas, and owns it from then on: the
 * free blocks it holds are what the giver freed. The pool changes hands
 * as in ADOPTION, under the exchange's service_lock, and is marked
 * adopted, so a block of it met in the ring of a heap that no longer owns
 * it is passed on (heap_pass_on), and the owner takes it back as any other.
 *
 * Nobody allocates from the exchange, and a free of one of its pools'
 * blocks does not adopt the pool (the giver freeing its survivors would
 * take back what another thread is about to want): it goes to the
 * exchange's ring, which the freer collects a batch at a time, or the
 * walk of the heaps, as an ABANDONED heap's; a pool that empties there goes
 * back to its arena. A pool nobody took in a purge delay gives back its
 * free pages, as an ABANDONED heap's do (heap_release_abandoned), and takes
 * them back when a heap takes it and meets it dry.
 *
 * Only a pool with no page given back, no sampled block and no debug fill
 * is given: the giver takes no lock of its own, and with no page given back
 * it has none to forget. A parcel made for the giver before the gift
 * (IDLE OWNERS) may still mark pages of the pool: the giver marks only its
 * own pools (heap_collect_parcels), and the blocks reach the new owner
 * through its ring. */

/* How recently another heap must have taken a pool of the class from the
 * arenas for an owner to give one to the exchange: a phase of a job, not
 * the program's whole life (a pool given up and never taken stays the
 * exchange's, a purge delay with its pages, then without). */
#define EXCHANGE_WANTED_MS 1000

/* Per class, when a heap last took a pool of it from the arenas, and which
 * one. Written by an owner about to take one (a store only when the
 * millisecond or the heap differs), read as a pool comes to its mark. */
static struct {
    _Atomic uint64_t ms;
    _Atomic(const pm_heap_t *) by;
} exchange_wanted[PM_CLASS_COUNT];
/* Pools given to the exchange and taken from it, for the stats. */
static _Atomic uint64_t exchange_given, exchange_taken;

/* The owner takes a pool of the class, from the exchange or the arenas:
 * if it gave pools of the class to the exchange lately, it is cycling
 * (it makes a batch of blocks, frees most of them, and makes the next),
 * and stops giving them for a purge delay. */
static void exchange_note_taken(pm_heap_t *heap, unsigned class_index, uint64_t now_ms)
{
    uint32_t bit = (uint32_t)1 << class_index;
    if (!(heap->exchange_gave & bit))
        return;
    heap->exchange_gave &= ~bit;
    if (now_ms - heap->exchange_gave_ms >= pm_options.purge_delay_ms)
        return;
    heap->exchange_cycling |= bit;
    heap->exchange_cycle_ms = now_ms;
}

static void exchange_note_wanted(pm_heap_t *heap, unsigned class_index)
{
    uint64_t now_ms = pm_os_coarse_ms();
    exchange_note_taken(heap, class_index, now_ms);
    if (atomic_load_explicit(&exchange_wanted[class_index].ms, memory_order_relaxed) != now_ms)
        atomic_store_explicit(&exchange_wanted[class_index].ms, now_ms, memory_order_relaxed);
    if (atomic_load_explicit(&exchange_wanted[class_index].by, memory_order_relaxed) != heap)
        atomic_store_explicit(&exchange_wanted[class_index].by, heap, memory_order_relaxed);
}

/* Gives `pool`, come down to its mark, to the exchange if the heap is
 * letting go of its class while another heap wants it (EXCHANGE). By its
 * owner, which may hold its service_lock (a collection), not the
 * exchange's. */
static bool exchange_give(pm_heap_t *heap, pm_pool_t *pool)
{
    unsigned class_index = pool->class_index;
    pm_bin_t *bin = &heap->bins[class_index];
    if (bin->sparse_count < 2 || (uint64_t)bin->sparse_count * 4 < bin->pool_count ||
        !heap_owned(heap) || pool->purged_pages != 0 || pm_pool_holds_sampled(pool) ||
        pool->debug_fill)
        return false;
    uint64_t wanted_ms = atomic_load_explicit(&exchange_wanted[class_index].ms, memory_order_relaxed);
    const pm_heap_t *by = atomic_load_explicit(&exchange_wanted[class_index].by, memory_order_relaxed);
    uint64_t now_ms = pm_os_coarse_ms();
    /* Heaps are never unmapped: `by` may be read, though its thread exited. */
    if (wanted_ms == 0 || by == heap || !heap_owned(by) || now_ms - wanted_ms >= EXCHANGE_WANTED_MS)
        return false;
    uint32_t bit = (uint32_t)1 << class_index;
    if (heap->exchange_cycling & bit) {
        if (now_ms - heap->exchange_cycle_ms < pm_options.purge_delay_ms)
            return false;
        heap->exchange_cycling = 0;
    }
    heap->exchange_gave |= bit;
    heap->exchange_gave_ms = now_ms;
    bin_remove(bin, pool);
    pm_pool_set_mark(pool, 0); /* not sparse there: nobody allocates */
    bin_count_pools(heap, bin, -1);
    pm_lock(exchange_heap.service_lock);
    __atomic_store_n(&pool->adopted, true, __ATOMIC_RELAXED);
    pm_pool_set_heap(pool, &exchange_heap);
    pm_bin_t *to = &exchange_heap.bins[class_index];
    bin_append(to, pool);
    bin_count_pools(&exchange_heap, to, 1);
    /* Its free pages go back if nobody takes it in a purge delay
     * (heap_release_abandoned, which reads this without the lock). */
    if (exchange_heap.kept_until_ms == 0)
        __atomic_store_n(&exchange_heap.kept_until_ms, now_ms + pm_options.purge_delay_ms,
                         __ATOMIC_RELAXED);
    pm_unlock(exchange_heap.service_lock);
    atomic_fetch_add_explicit(&exchange_given, 1, memory_order_relaxed);
    return true;
}

/* A pool of the class from the exchange, now the caller's (an OWNED heap
 * with no lock held), on no list yet; NULL if it has none. */
static pm_pool_t *exchange_take(pm_heap_t *heap, unsigned class_index)
{
    pm_bin_t *from = &exchange_heap.bins[class_index];
    if (load_counter(&from->pool_count) == 0)
        return NULL;
    pm_lock(exchange_heap.service_lock);
    /* First, as in heap_adopt_pool: its ring then holds none of the pool's
     * blocks but those freed after the hand-over, which are passed on. */
    heap_collect_remote(&exchange_heap, false);
    pm_pool_t *pool = from->pools;
    if (pool != NULL) {
        bin_remove(from, pool);
        bin_count_pools(&exchange_heap, from, -1);
        pm_pool_set_heap(pool, heap);
        atomic_fetch_add_explicit(&exchange_taken, 1, memory_order_relaxed);
    }
    pm_unlock(exchange_heap.service_lock);
    if (pool != NULL)
        exchange_note_taken(heap, class_index, pm_os_coarse_ms());
    return pool;
}

/* ---- freeing ------------------------------------------------------------- */

/* A block of an ABANDONED heap's pool, freed by a thread with a heap of
 * its own: the pool is adopted, if it can be (ADOPTION). Out of line, so
 * that a free into an owned heap tests the state alone. */
static __attribute__((noinline)) bool heap_free_adopting(pm_heap_t *me, pm_heap_t *owner,
                                                         pm_pool_t *pool, pm_block_t *block)
{
    return !heap_of_no_thread(owner) && me != &pm_heap_empty && heap_owned(me) &&
           heap_adopt_pool(me, owner, pool, block);
}

static void heap_free_remote(pm_heap_t *me, pm_heap_t *owner, pm_pool_t *pool, pm_block_t *block)
{
    if (PM_UNLIKELY(atomic_load_explicit(&owner->state, memory_order_relaxed) ==
                    PM_HEAP_ABANDONED) &&
        heap_free_adopting(me, owner, pool, block))
        return;
    /* Read before the push: once the block is in the ring or on the stack,
     * the owner may take it back and retire the pool at any moment. */
    unsigned class_index = pm_pool_class_shared(pool);
    uint64_t pos;
    bool in_ring = remote_ring_push(owner, block, &pos);
    if (!in_ring && remote_ring_spill(owner))
        in_ring = remote_ring_push(owner, block, &pos);
    if (!in_ring)
        remote_stack_push(owner, block);
    /* A thread that only frees (a consumer) takes a heap for its counters
     * here: counted in the shared heapless array, every one of its frees
     * was a locked add on a line all such threads write. Not while it
     * unwinds, when its heap is the empty one for the moment (I11). */
    if (me == &pm_heap_empty && !pm_profile_unwinding())
        me = heap_for_thread();
    if (me != NULL && me != &pm_heap_empty) {
        PM_COUNTER_ADD(me->bins[class_index].remote_freed_total, 1);
        /* A thread that frees what others made takes no pool while it
         * does, and so never walks the heaps: now and then it stamps the
         * owner as having blocks waiting, and sees whether a walk is due
         * (IDLE OWNERS). */
        if ((me->bins[class_index].remote_freed_total & (IDLE_LOOK_FREES - 1)) == 0) {
            uint64_t now_ms = pm_os_coarse_ms();
            if (heap_owned(owner))
                heap_note_waiting(owner, now_ms, false);
            /* What other threads freed into its own pools, adopted ones
             * among them (ADOPTION), which a thread that never runs a bin
             * dry would not collect. */
            if (heap_owned(me) && !heap_remote_empty(me))
                heap_collect_remote(me, false);
            heap_housekeeping_poolless(me, now_ms);
        }
    } else {
        atomic_fetch_add_explicit(&heapless_remote_freed[class_index], 1,
                                  memory_order_relaxed);
    }
    /* No owner will collect it (see heap_thread_exit): the freers do, a
     * batch at a time, or the walk of the heaps. */
    if (atomic_load_explicit(&owner->state, memory_order_seq_cst) == PM_HEAP_ABANDONED) {
        if (in_ring && (pos + 1) % ABANDONED_BATCH != 0 && owner != &shared_heap) {
            if (!atomic_load_explicit(&abandoned_waiting, memory_order_seq_cst))
                atomic_store_explicit(&abandoned_waiting, true, memory_order_relaxed);
            return;
        }
        pm_lock(owner->service_lock);
        if (atomic_load_explicit(&owner->state, memory_order_relaxed) == PM_HEAP_ABANDONED)
            heap_collect_remote(owner, false);
        pm_unlock(owner->service_lock);
    }
}

void pm_heap_free(void *block, pm_heap_t *me, pm_pool_t *pool)
{
    /* The owner read before the checks, as they read it: from the block's
     * arena header, mapped or reading as zeros (pm_pool_checked); once
     * they pass, the block is live and holds its pool's owner (I9). A
     * sampled block's record goes as the owner checks it (I11); another
     * thread's free leaves it until the owner takes the block back
     * (heap_take_remote_from), so a second free meanwhile still finds it
     * live, and the owner tells the two apart. */
    pm_heap_t *owner = pm_pool_heap(pool);
    /* A pool holding a sampled block sends all its frees here (I11): a
     * live block of the caller's that free's fast path would have taken
     * but for that goes back after its tests, not the full check's
     * (profiling cost churn with 10% of glibc's sizes 5.2% more
     * instructions, 4.6% with this). */
    if (owner == me && pm_pool_block_surely_live(pool, block)) {
        heap_take_back(me, pool, block);
        return;
    }
    pm_pool_checked(block, PM_OP_FREE, owner == me); /* aborts on misuse; else returns `pool` */
    if (PM_LIKELY(owner == me))
        heap_take_back(me, pool, block);
    else
        heap_free_remote(me, owner, pool, block);
}

size_t pm_heap_block_size(void *block, pm_op_t op)
{
    bool by_owner = pm_pool_heap(pm_pool_of(block)) == pm_thread_heap;
    return pm_pool_checked(block, op, by_owner)->block_size;
}

void pm_heap_reset_sampling(void)
{
    heaps_lock();
    for (pm_heap_t *heap = heaps.all; heap != NULL; heap = heap->next_heap)
        if (!heap_of_no_thread(heap))
            pm_profile_heap_init(heap);
    heaps_unlock();
}

/* ---- counters and validation ----------------------------------------------- */

void pm_heap_stats(pm_stats_t *out, uint64_t waiting[PM_CLASS_COUNT])
{
    pm_system_counters_t sys = {
        .allocated_total = atomic_load_explicit(&heapless_system.allocated_total, memory_order_relaxed),
        .freed_total = atomic_load_explicit(&heapless_system.freed_total, memory_order_relaxed),
        .allocated_bytes_total =
            atomic_load_explicit(&heapless_system.allocated_bytes_total, memory_order_relaxed),
        .freed_bytes_total =
            atomic_load_explicit(&heapless_system.freed_bytes_total, memory_order_relaxed),
    };
    uint64_t pushed[PM_CLASS_COUNT], collected[PM_CLASS_COUNT] = {0};
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++)
        pushed[c] = atomic_load_explicit(&heapless_remote_freed[c], memory_order_relaxed);
    heaps_lock();
    for (pm_heap_t *heap = heaps.all; heap != NULL; heap = heap->next_heap) {
        for (unsigned c = 0; c < PM_CLASS_COUNT; c++) {
            const pm_bin_t *bin = &heap->bins[c];
            out->classes[c].allocated_total += load_counter(&bin->allocated_total);
            pushed[c] += load_counter(&bin->remote_freed_total);
            collected[c] += load_counter(&bin->remote_collected_total);
        }
        sys.allocated_total += load_counter(&heap->system.allocated_total);
        sys.freed_total += load_counter(&heap->system.freed_total);
        sys.allocated_bytes_total += load_counter(&heap->system.allocated_bytes_total);
        sys.freed_bytes_total += load_counter(&heap->system.freed_bytes_total);
        out->system_cached_bytes += load_counter(&heap->system_cached_bytes);
        int state = atomic_load_explicit(&heap->state, memory_order_relaxed);
        if (!heap_of_no_thread(heap)) {
            out->thread_heaps += state == PM_HEAP_OWNED;
            out->abandoned_heaps += state == PM_HEAP_ABANDONED;
        }
    }
    out->exchange_pools += exchange_pools_held();
    out->exchange_given_total += atomic_load_explicit(&exchange_given, memory_order_relaxed);
    out->exchange_taken_total += atomic_load_explicit(&exchange_taken, memory_order_relaxed);
    out->metadata_bytes += heaps.bytes;
    heaps_unlock();
    out->metadata_bytes += atomic_load_explicit(&parcel_bytes_in_use, memory_order_relaxed) +
                           atomic_load_explicit(&parcel_spares, memory_order_relaxed) *
                               PARCEL_SPARE_BYTES;
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++) {
        waiting[c] = pushed[c] > collected[c] ? pushed[c] - collected[c] : 0;
        out->classes[c].trimmed_bytes +=
            atomic_load_explicit(&parcel_purged_pages[c], memory_order_relaxed) * PM_OS_PAGE_SIZE;
    }
    out->system_allocated_total = sys.allocated_total;
    out->system_freed_total = sys.freed_total;
    out->system_allocated_bytes_total = sys.allocated_bytes_total;
    /* glibc may free blocks poolmalloc never saw allocated (made before it
     * was loaded): never report less than nothing. */
    out->system_live_blocks =
        sys.allocated_total > sys.freed_total ? sys.allocated_total - sys.freed_total : 0;
    out->system_live_bytes = sys.allocated_bytes_total > sys.freed_bytes_total
                                 ? sys.allocated_bytes_total - sys.freed_bytes_total
                                 : 0;
}

/* Filled while validating: per class, blocks counted live by the pools and
 * pools seen, to hold against the heaps' counters (I8). */
static uint64_t validate_used[PM_CLASS_COUNT];
static uint64_t validate_pools[PM_CLASS_COUNT];

static bool heap_is_known(const pm_heap_t *heap)
{
    for (const pm_heap_t *h = heaps.all; h != NULL; h = h->next_heap)
        if (h == heap)
            return true;
    return false;
}

static bool heap_is_orphaned(const pm_heap_t *heap)
{
    return atomic_load_explicit(&heap->state, memory_order_relaxed) == PM_HEAP_ORPHANED;
}

static bool heap_visit_pool(const pm_pool_t *pool)
{
    pm_heap_t *heap = pm_pool_heap(pool);
    if (!PM_VALID(heap_is_known(heap) && pool->class_index < PM_CLASS_COUNT))
        return false;
    validate_used[pool->class_index] += pm_pool_used(pool);
    validate_pools[pool->class_index]++;
    /* A fork may have cut an orphaned heap's owner mid-update: nothing
     * about its pools can be promised (see pm_fork_child). */
    if (heap_is_orphaned(heap))
        return true;
    if (!pm_pool_is_valid(pool))
        return false; /* said by pm_pool_is_valid */
    /* I4: a pool with room is on its bin list, and PM_POOL_OFF_LIST says so;
     * or it is parked, empty. */
    for (const pm_pool_t *p = atomic_load(&heap->parked[pool->class_index]); p; p = p->next)
        if (p == pool)
            return PM_VALID(!pm_pool_on_bin_list(pool) && pm_pool_used(pool) == 0);
    bool listed = false;
    for (const pm_pool_t *p = heap->bins[pool->class_index].pools; p && !listed; p = p->next)
        listed = p == pool;
    /* A kept pool is the only one on its list, with no mark, carved
     * within its first page. */
    if (pm_pool_kept(pool) &&
        !PM_VALID(listed && pool_alone_in_bin(pool) && pool->used_mark == 0 &&
                  !pool_spans_pages(pool)))
        return false;
    if (pool->regaining)
        return PM_VALID(!listed && (pool->used_word & PM_POOL_OFF_LIST) == 0 &&
                        pool->used_mark == pool->capacity - pm_pool_regain_batch(pool));
    return PM_VALID(listed == pm_pool_on_bin_list(pool) &&
                    (listed || pm_pool_used(pool) == pool->capacity));
}

/* I3 for the purges a heap has yet to give the kernel: only an OWNED
 * heap's, in purged pages of pools it owns (a range may run on from one
 * pool into the next), under no block of their free lists. An ORPHANED
 * heap's are never given (a fork cut its owner, maybe in mid-list). */
static bool heap_sparse_batch_valid(const pm_heap_t *heap)
{
    if (heap_is_orphaned(heap))
        return true;
    const pm_os_purge_batch_t *batch = &heap->sparse_batch;
    bool ok = PM_VALID(batch->count == 0 || heap_owned(heap));
    for (unsigned r = 0; r < batch->count && ok; r++) {
        const char *end = (const char *)batch->ranges[r].iov_base + batch->ranges[r].iov_len;
        for (const char *from = batch->ranges[r].iov_base, *to; from < end && ok; from = to) {
            const pm_pool_t *pool = pm_pool_of(from);
            to = pm_pool_start(pool) + pm_pool_bytes(pm_pool_index_of(pool));
            to = to < end ? to : end;
            ok &= PM_VALID(pm_pool_heap(pool) == heap && pm_pool_page_purged(pool, from) &&
                           pm_pool_page_purged(pool, to - 1));
            pm_block_t *next;
            for (const pm_block_t *b = pool->free_list; b != NULL && ok; b = next)
                ok &= PM_VALID(pm_link_next(b, &next)) &&
                      PM_VALID((const char *)b + pool->block_size <= from ||
                               (const char *)b >= to);
        }
    }
    return ok;
}

bool pm_heap_validate(void)
{
    heaps_lock();
    uint64_t allocated[PM_CLASS_COUNT] = {0}, pools[PM_CLASS_COUNT] = {0};
    uint64_t waiting_walked[PM_CLASS_COUNT] = {0}, waiting_counted[PM_CLASS_COUNT] = {0};
    uint64_t marked_pages[PM_CLASS_COUNT] = {0}; /* in parcels (IDLE OWNERS) */
    uint64_t parked = 0, parked_in_a_row = 0, parcel_bytes = 0, spares = 0;
    bool ok = true, any_orphaned = false;
    for (pm_heap_t *heap = heaps.all; heap != NULL; heap = heap->next_heap) {
        any_orphaned |= heap_is_orphaned(heap);
        uint64_t pool_total = 0, sparse_pools = 0, heap_parked = 0;
        for (unsigned c = 0; c < PM_CLASS_COUNT; c++) {
            const pm_bin_t *bin = &heap->bins[c];
            pool_total += bin->pool_count;
            /* Only pools on the bin lists are sparse (bin_remove). */
            uint64_t bin_sparse = 0;
            bool serving_listed = false;
            for (const pm_pool_t *p = bin->pools; p != NULL; p = p->next) {
                bin_sparse += p->sparse;
                serving_listed |= p == bin->serving;
            }
            sparse_pools += bin_sparse;
            ok &= PM_VALID(heap_is_orphaned(heap) || bin_sparse == bin->sparse_count);
            /* The serving pool is one of the list's, or pm_pool_dry for an
             * empty list (bin_serve_head). A fork may have cut an orphaned
             * heap's owner between the two (see heap_visit_pool). */
            ok &= PM_VALID(heap_is_orphaned(heap) ||
                           (bin->pools == NULL ? bin->serving == &pm_pool_dry : serving_listed));
            allocated[c] += bin->allocated_total;
            uint64_t class_parked = 0;
            for (const pm_pool_t *p = atomic_load(&heap->parked[c]); p != NULL; p = p->next)
                class_parked++;
            heap_parked += class_parked;
            parked_in_a_row += class_parked > 1 ? class_parked - 1 : 0;
            pools[c] += bin->pool_count + class_parked;
            waiting_counted[c] += bin->remote_freed_total - bin->remote_collected_total;
        }
        ok &= PM_VALID(heap_is_orphaned(heap) ||
                       (pool_total == heap->pool_total && sparse_pools == heap->sparse_pools));
        ok &= PM_VALID(heap_parked == atomic_load(&heap->parked_count) &&
                       heap_parked <= PARKED_MOST);
        parked += heap_parked;
        ok &= heap_sparse_batch_valid(heap);
        for (uint64_t pos = atomic_load(&heap->remote_head); pos != atomic_load(&heap->remote_tail);
             pos++) {
            const pm_block_t *b = atomic_load(&heap->remote_ring[pos % PM_REMOTE_RING]);
            if (b != NULL && b != REMOTE_SLOT_SKIPPED)
                waiting_walked[pm_pool_of(b)->class_index]++;
        }
        parcel_bytes += parcels_bytes(atomic_load(&heap->parcels));
        spares += atomic_load(&heap->spare_parcel) != NULL;
        for (const pm_heap_parcel_t *p = atomic_load(&heap->parcels); p != NULL; p = p->next) {
            for (uint32_t i = 0; i < p->blocks; i++)
                waiting_walked[pm_pool_of(parcel_block(p->entry[i]))->class_index]++;
            for (uint32_t i = 0; i < p->marks; i++) {
                uint32_t mark = parcel_mark(p, i);
                marked_pages[parcel_mark_pool(mark)->class_index] +=
                    (unsigned)__builtin_popcount(parcel_mark_pages(mark));
            }
        }
        uint64_t waiting = 0;
        for (const pm_block_t *b = atomic_load(&heap->remote_free); b != NULL; b = pm_link_get(b)) {
            waiting_walked[pm_pool_of(b)->class_index]++;
            if (!PM_VALID(++waiting <= ((uint64_t)1 << 32))) {
                ok = false; /* a cycle */
                break;
            }
        }
    }
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++) {
        waiting_counted[c] += atomic_load(&heapless_remote_freed[c]);
        validate_used[c] = validate_pools[c] = 0;
    }
    ok &= pm_arena_validate(heap_visit_pool, parked, parked_in_a_row);
    /* The stats' metadata counts every parcel once, as it is, and every
     * spare; unless a fork cut an owner between taking its parcels and
     * uncounting them, or between keeping or taking its spare and counting
     * it (pm_stress --seed 13 met that in a fork child, once in 10 minutes). */
    ok &= PM_VALID(any_orphaned || parcel_bytes == atomic_load(&parcel_bytes_in_use));
    ok &= PM_VALID(any_orphaned || spares == atomic_load(&parcel_spares));
    /* I8, unless a fork may have cut a count mid-update (counters_cut;
     * an orphaned heap's counters too). */
    for (unsigned c = 0; c < PM_CLASS_COUNT && !any_orphaned && !heaps.counters_cut; c++) {
        ok &= PM_VALID(waiting_walked[c] == waiting_counted[c]);
        ok &= PM_VALID(marked_pages[c] == atomic_load(&parcel_purged_pages[c]));
        ok &= PM_VALID(validate_used[c] >= waiting_walked[c]);
        ok &= PM_VALID(validate_used[c] - waiting_walked[c] <= allocated[c]);
        ok &= PM_VALID(validate_pools[c] == pools[c]);
    }
    heaps_unlock();
    return ok;
}

/* ---- fork ------------------------------------------------------------------ */

/* Under the heap directory lock, taken for the first time in a fork child
 * (heaps_lock): the parent's other threads' heaps, still OWNED, become
 * ORPHANED, and their homes close, so their arenas serve the child's heaps. */
static void heaps_orphan(void)
{
    atomic_store_explicit(&heaps.orphans_pending, false, memory_order_relaxed);
    for (pm_heap_t *heap = heaps.all; heap != NULL; heap = heap->next_heap) {
        if (heap != heaps.fork_survivor &&
            atomic_load_explicit(&heap->state, memory_order_relaxed) == PM_HEAP_OWNED) {
            atomic_store_explicit(&heap->state, PM_HEAP_ORPHANED, memory_order_relaxed);
            pm_arena_home_close(&heap->arena_home);
        }
    }
}

/* Every lock, in the documented order, so the child inherits the heap
 * directory, every abandoned heap, the arenas and the profile tables in a
 * consistent state, and no thread inside libunwind. */
void pm_fork_prepare(void)
{
    pm_profile_unwind_lock();
    pm_stats_lock();
    heaps_lock();
    if (!heaps.fork_locks_asked) { /* a program that never forks keeps its mappings whole */
        heaps.fork_locks_asked = true;
        heaps.fork_locks_wiped = pm_os_wipe_on_fork(&pm_fork_locks, sizeof pm_fork_locks);
    }
    for (pm_heap_t *heap = heaps.all; heap != NULL; heap = heap->next_heap)
        pm_lock(heap->service_lock);
    pm_arena_lock();
    pm_profile_lock();
    heaps.forking_threaded = !__libc_single_threaded;
}

void pm_fork_parent(void)
{
    pm_profile_unlock();
    pm_arena_unlock();
    for (pm_heap_t *heap = heaps.all; heap != NULL; heap = heap->next_heap)
        pm_unlock(heap->service_lock);
    heaps_unlock();
    pm_stats_unlock();
    pm_profile_unwind_unlock();
}

/* The child has one thread. Heaps owned by the others may have been cut
 * mid-update by the fork (their owners take no lock), so they are ORPHANED:
 * never adopted, never collected; blocks freed into them in the child stay
 * where they are (their parked pools, whole, are given back:
 * heap_release_parked). That is left to heaps_orphan, when the child first
 * takes the heap directory lock or needs a pool from the arenas: a child
 * that execs or exits first never writes those heaps, each of which is a
 * copy-on-write fault or two (pm_fork_locks_t). A ring position another
 * thread had claimed but not yet written will never be written: it is
 * marked to be passed over now, or every block freed after it would wait
 * for ever. */
void pm_fork_child(void)
{
    /* The kernel zeroed the locks' pages, unless it would not: then every
     * lock is freed here, at the price of a copy of each page. The global
     * page is zeroed whole, as the kernel would have (a free pm_lock_t is
     * 0), so a lock added to pm_fork_locks_t needs no line here. */
    bool locks_free = heaps.fork_locks_wiped && !heaps.slab_locks_kept;
    if (!locks_free)
        memset(&pm_fork_locks, 0, sizeof pm_fork_locks);
    for (pm_heap_t *heap = heaps.all; heap != NULL; heap = heap->next_heap) {
        if (!locks_free)
            pm_lock_init(heap->service_lock);
        uint64_t tail = atomic_load_explicit(&heap->remote_tail, memory_order_relaxed);
        for (uint64_t pos = atomic_load_explicit(&heap->remote_head, memory_order_relaxed);
             pos != tail; pos++) {
            _Atomic(pm_block_t *) *slot = &heap->remote_ring[pos % PM_REMOTE_RING];
            pm_block_t *expected = NULL;
            /* Read first: a compare-and-swap that fails still writes. */
            if (atomic_load_explicit(slot, memory_order_relaxed) == NULL)
                atomic_compare_exchange_strong_explicit(slot, &expected, REMOTE_SLOT_SKIPPED,
                                                        memory_order_relaxed,
                                                        memory_order_relaxed);
        }
    }
    atomic_store_explicit(&heaps.orphans_pending, true, memory_order_relaxed);
    heaps.fork_survivor = pm_thread_heap;
    heaps.counters_cut |= heaps.forking_threaded;
}
