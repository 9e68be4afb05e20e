/* arena.c — owns the arena directory: mapping and unmapping arenas, handing
 * UNUSED pools out to heaps and taking them back, and giving memory back to
 * the OS (the retained list, its purge delay and adaptive cap). Never calls
 * malloc; takes the directory lock (after any heap lock). Keeps I1, I2, I5
 * and I10. */
#include "internal.h"

/* The most retained pools one call of the allocator purges for the delay
 * or the cap (I10): a release adds at most one, so this keeps up, and no
 * malloc waits behind more than a few madvise calls (a thread's allocation
 * tick purges one batch too). The dump thread's tick works in batches of it
 * too, dropping the lock between them. */
#define DECAY_BATCH 8
/* What pm_arena_decay_if_due purges a call once the oldest retained pool
 * has waited a delay past its due: a batch a call was not keeping up. The
 * fragmentation suite's drain (8 threads that drain 100,000 blocks each in
 * phases, leaving pools that empty a phase later with all their pages, then
 * tick about 96 times in all in their light work) held 292 MiB after it at
 * a batch a tick, 157 MiB at this. 64 purges of up to an arena each stay
 * within a few ms. */
#define DECAY_BATCH_BEHIND 64
/* The adaptive cap halves toward POOLMALLOC_RETAIN_POOLS once it has not
 * grown for this many purge delays: demand that came back within a few
 * delays is a cycle worth keeping pages for; older demand is history. */
#define CAP_SHRINK_DELAYS 8
/* A growing heap's bare pool is populated together with the bare unused
 * pools after it in its arena, up to one for every this many pools it has
 * (populate_run): what a look-ahead leaves resident and unused when the
 * growth stops stays under 1/32 of the pools, about 3%. */
#define POPULATE_AHEAD_RATIO 32
/* The pools in use collapse when they fall to 1/PM_COLLAPSE_DIVISOR of the
 * most there were since the last collapse, if that was COLLAPSE_MIN_POOLS
 * or more (collapse_note). */
#define COLLAPSE_MIN_POOLS 64

static struct { /* under pm_fork_locks.arenas, the arena directory lock */
    /* by_unused[u - 1]: arenas with exactly u unused pools (I5). */
    pm_arena_t *by_unused[PM_POOLS_PER_ARENA];
    pm_arena_t *all;
    uint64_t mapped, peak, created_total, destroyed_total, empty_count;
    /* Not UNUSED, over every arena. Of those, the parked are counted in
     * parked_stripes (below). Read without the lock too
     * (pm_arena_note_parked). */
    _Atomic uint64_t pools_in_use;
    /* The collapse (collapse_note), over the pools occupied (in use, less
     * the parked): the most occupied since the last one ended (at the next
     * acquire); when the last one came, and until when collapses are a
     * cycle's; the fewest occupied a pool was taken at since the last
     * collapse (where the round rebuilt from), and the fewest of those over
     * the cycle's rounds (UINT64_MAX: none yet).
     * While `collapsed`, nothing is retained; written under the lock, read
     * without it too (pm_arena_collapsed, and pm_arena_cycling, which
     * frees ask: taking the lock for it made them wait behind pool
     * acquires). */
    uint64_t in_use_peak, collapse_ms;
    _Atomic uint64_t cycle_until_ms;
    uint64_t rebuilt_from, cycle_trough;
    _Atomic bool collapsed;
    /* Pools occupied above this cannot set off collapse_note, whatever it
     * finds (collapse_gate_update); read without the lock. */
    _Atomic uint64_t collapse_gate;
    /* Counted under the lock but by pm_arena_purge_pages, read without it. */
    _Atomic uint64_t released_bytes_total;
    _Atomic uint64_t retained_purges_total; /* retained_purge's runs and arenas */
    _Atomic uint64_t in_use_purges_total;   /* pm_arena_purge_pages's */
    /* The retained list (I10): UNUSED resident pools, oldest (released
     * first) at the head, linked through retained_next/retained_prev. */
    pm_pool_t *retained_oldest, *retained_newest;
    uint64_t retained_count;
    /* When the oldest was released (UINT64_MAX: none is retained), for
     * pm_arena_decay_if_due's look without the lock. */
    _Atomic uint64_t retained_oldest_ms;
    /* The adaptive cap on retained_count, in [min(RETAIN_POOLS,
     * RETAIN_POOLS_MAX), RETAIN_POOLS_MAX]; 0 until first used. */
    uint64_t retain_cap;
    uint64_t cap_changed_ms;
    /* The evidence the cap grows on (retain_cap_grow): pools the cap purged
     * before their delay ran out and not yet needed again, and when it last
     * did; since then, of the pools handed out without pages, how many and
     * how many of them were such pools (counted while pending lasts). */
    uint64_t cap_purged_pending, cap_purged_ms;
    uint64_t cap_bare_acquired, cap_refaulted;
    /* When a heap last took a released pool back off the retained list
     * (0: never), for the cap's grace (cap_waits); and whether the cap
     * waited at the last decay step, for pm_arena_decay_if_due's look
     * without the lock. */
    uint64_t taken_back_ms;
    _Atomic bool cap_waiting;
    /* Arenas out of the directory, to be unmapped once the lock is
     * dropped (directory_unlock), linked through all_next. */
    pm_arena_t *doomed;
    /* Purges made without the lock, in progress (purge_work_t); fork waits
     * for none (pm_arena_lock), and says so in fork_waiting. */
    _Atomic uint32_t purges_in_flight;
    bool fork_waiting;
} directory = {
    .rebuilt_from = UINT64_MAX, .cycle_trough = UINT64_MAX, .retained_oldest_ms = UINT64_MAX};

/* The pools parked by their heaps (I4), in use and empty; of those, the
 * ones beyond the first of their class in their heap (heap.c, PARKING IN A
 * ROW): resident pools the program let go of, as the retained are, and the
 * cap counts them (retain_cap_left). Each heap adds to its own stripe, on a
 * line of its own, and the counts are the stripes' sums. In one counter,
 * every park and unpark of a program's threads was a locked add on one
 * line: pm_bench_batch's two threads, parking and taking back a pool every
 * 64 blocks, spent a sixth of their time on it
 * (bench/results/parked-stripes.md). */
static struct {
    _Atomic uint64_t pools, in_a_row;
} __attribute__((aligned(PM_CACHE_LINE))) parked_stripes[PM_PARKED_STRIPES];

static uint64_t parked_sum(bool in_a_row)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < PM_PARKED_STRIPES; i++)
        sum += atomic_load_explicit(in_a_row ? &parked_stripes[i].in_a_row
                                             : &parked_stripes[i].pools,
                                    memory_order_relaxed);
    return sum;
}

/* The directory lock. Mapping, committing and unmapping an arena are
 * system calls that take the kernel's lock on the address space for
 * writing, and so wait for every page fault and madvise of the process's
 * other threads: made under this lock, they held up every other thread's
 * pool acquires and releases behind those (pm_bench_drain, 8 threads:
 * bench/results/arena-lock.md). So the directory lock is dropped first:
 * arenas are mapped before it is taken (arena_map) and unmapped after it
 * is dropped, by the thread that dropped it. */
static void directory_lock(void) { pm_lock(&pm_fork_locks.arenas); }

static void directory_unlock(void)
{
    pm_arena_t *doomed = directory.doomed;
    if (doomed != NULL) /* not written else: after a fork, a copy-on-write fault */
        directory.doomed = NULL;
    pm_unlock(&pm_fork_locks.arenas);
    while (doomed != NULL) {
        pm_arena_t *next = doomed->all_next;
        pm_registry_unmap_arena(doomed);
        doomed = next;
    }
}

/* An arena out of the directory is unmapped once the lock is dropped. */
static void arena_doom(pm_arena_t *arena)
{
    arena->all_next = directory.doomed;
    directory.doomed = arena;
}

/* I5: the list an arena with unused pools is on, its home's or the
 * directory's. */
static pm_arena_t **directory_list(pm_arena_t *arena)
{
    pm_arena_t **by_unused = arena->home != NULL ? arena->home->by_unused : directory.by_unused;
    return &by_unused[arena->free_pool_count - 1];
}

/* One of the directory's counters that are read without the lock. */
static void directory_count(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}
static uint64_t directory_read(const _Atomic uint64_t *field)
{
    return atomic_load_explicit(field, memory_order_relaxed);
}

static void directory_link(pm_arena_t *arena)
{
    /* I5: an arena with every pool unused, or whose heap has lost its
     * owner, is nobody's again. */
    if (arena->free_pool_count == PM_POOLS_PER_ARENA || (arena->home && !arena->home->open))
        arena->home = NULL;
    pm_arena_t **head = directory_list(arena);
    arena->prev = NULL;
    arena->next = *head;
    if (*head)
        (*head)->prev = arena;
    *head = arena;
}

static void directory_unlink(pm_arena_t *arena)
{
    if (arena->prev)
        arena->prev->next = arena->next;
    else
        *directory_list(arena) = arena->next;
    if (arena->next)
        arena->next->prev = arena->prev;
    arena->next = arena->prev = NULL;
}

/* A new arena, every pool of it free, not yet in the directory: without
 * the directory lock (directory_lock says why). */
static pm_arena_t *arena_map(void)
{
    /* I1: registered before any block of it can be handed out. */
    pm_arena_t *arena = pm_registry_map_arena();
    if (arena == NULL)
        return NULL;
    /* mmap gives zeroed memory: only what is not zero needs setting. */
    for (unsigned k = PM_POOLS_PER_ARENA; k-- > 0;) {
        pm_pool_t *pool = &arena->pools[k];
        pm_pool_set_owner(pool, NULL, PM_CLASS_NONE);
        pool->next = arena->free_pools;
        arena->free_pools = pool;
    }
    arena->free_pool_count = PM_POOLS_PER_ARENA;
    return arena;
}

/* arena_map's arena joins the directory, nobody's. Caller holds the lock. */
static void arena_enlist(pm_arena_t *arena)
{
    arena->all_next = directory.all;
    if (directory.all)
        directory.all->all_prev = arena;
    directory.all = arena;
    directory.created_total++;
    directory.empty_count++;
    if (++directory.mapped > directory.peak)
        directory.peak = directory.mapped;
    directory_link(arena);
}

/* Read under the directory lock, so the stamps of the retained list never
 * go backwards and no pool looks older than it is. */
static uint64_t decay_now_ms(void) { return pm_os_coarse_ms(); }

static uint64_t *released_ms_of(pm_pool_t *pool)
{
    return &pm_arena_of(pool)->released_ms[pm_pool_index_of(pool)];
}

/* The list's oldest pool changed. Caller holds the lock. */
static void retained_oldest_changed(void)
{
    pm_pool_t *oldest = directory.retained_oldest;
    atomic_store_explicit(&directory.retained_oldest_ms,
                          oldest != NULL ? *released_ms_of(oldest) : UINT64_MAX,
                          memory_order_relaxed);
}

/* I10: the newest retained pool. Caller holds the lock. */
static void retained_append(pm_pool_t *pool, uint64_t now_ms)
{
    *released_ms_of(pool) = now_ms;
    pool->retained_next = NULL;
    pool->retained_prev = directory.retained_newest;
    if (directory.retained_newest) {
        directory.retained_newest->retained_next = pool;
    } else {
        directory.retained_oldest = pool;
        retained_oldest_changed();
    }
    directory.retained_newest = pool;
    directory.retained_count++;
}

/* The pool's bit in its arena's populated_ahead. */
static uint16_t populated_ahead_bit(const pm_pool_t *pool)
{
    return (uint16_t)(1u << pm_pool_index_of(pool));
}

/* O(1): a retained pool leaves the list. Caller holds the lock. */
static void retained_unlink(pm_pool_t *pool)
{
    pm_arena_of(pool)->populated_ahead &= (uint16_t)~populated_ahead_bit(pool);
    if (pool->retained_prev) {
        pool->retained_prev->retained_next = pool->retained_next;
    } else {
        directory.retained_oldest = pool->retained_next;
        retained_oldest_changed();
    }
    if (pool->retained_next)
        pool->retained_next->retained_prev = pool->retained_prev;
    else
        directory.retained_newest = pool->retained_prev;
    pool->retained_next = pool->retained_prev = NULL;
    directory.retained_count--;
}

/* Every caller has made sure no pool of the arena holds pages (I10): none
 * is on the retained list, and unmapping gives back only the header. The
 * arena leaves the directory now and is unmapped when the lock is dropped
 * (I1: its registry entry goes then, before its memory). Caller holds the
 * lock. */
static void arena_destroy(pm_arena_t *arena)
{
    if (arena->all_prev)
        arena->all_prev->all_next = arena->all_next;
    else
        directory.all = arena->all_next;
    if (arena->all_next)
        arena->all_next->all_prev = arena->all_prev;
    directory.mapped--;
    directory.empty_count--;
    directory.destroyed_total++;
    directory_count(&directory.released_bytes_total, PM_ARENA_HEADER_SIZE);
    arena_doom(arena);
}

/* True if any pool of the arena still holds pages. */
static bool arena_resident(const pm_arena_t *arena)
{
    for (unsigned k = 0; k < PM_POOLS_PER_ARENA; k++)
        if (pm_pool_resident(&arena->pools[k]))
            return true;
    return false;
}

/* I5: every pool of the arena is unused, and the reserve is full without it. */
static bool arena_beyond_reserve(const pm_arena_t *arena)
{
    return arena->free_pool_count == PM_POOLS_PER_ARENA &&
           directory.empty_count > pm_options.reserve_arenas;
}

/* I5: an empty arena beyond the reserve that holds no pages is unmapped,
 * once no purge of it is in progress. */
static bool arena_disposable(const pm_arena_t *arena)
{
    return arena_beyond_reserve(arena) && arena->purges_pending == 0 && !arena_resident(arena);
}

/* The pool's pages count as given back to the OS, which the caller does
 * (madvise, or munmap with its arena), for all of the pool: returns its
 * bytes. Counted are the pages it made resident, less those it gave back
 * while in use (purged_pages, counted then): counting the whole pool
 * counted pages never touched, and pages given back twice (1.00 GiB
 * "given back" at the exit of a run that had mapped 550 MiB). Caller
 * holds the lock. */
static size_t pool_disown_pages(pm_pool_t *pool)
{
    unsigned touched = pool->touched_pages;
    unsigned purged = (unsigned)__builtin_popcount(pool->purged_pages & ((1u << touched) - 1));
    pool->touched_pages = 0;
    directory_count(&directory.released_bytes_total,
                    (uint64_t)(touched - purged) * PM_OS_PAGE_SIZE);
    return pm_pool_bytes(pm_pool_index_of(pool));
}

/* Whether a retained pool has been unused for POOLMALLOC_PURGE_DELAY. */
static bool retained_expired(pm_pool_t *pool, uint64_t now_ms)
{
    return now_ms - *released_ms_of(pool) >= pm_options.purge_delay_ms;
}

/* A purge's reach: the retained pools that may go with the one it was made
 * for, in the same call: the expired, and any while the list stands above
 * `cap` (0: every one, as in a collapse or malloc_trim). */
typedef struct {
    uint64_t now_ms, cap;
} purge_reach_t;

/* What a purge gave back: bytes, and how many of its pools were younger
 * than the delay. */
typedef struct {
    size_t bytes;
    unsigned early;
} purge_result_t;

/* Whether a pool is UNUSED, read under the directory lock: a pool becomes
 * or stops being UNUSED only under it, but an owner changes its IN USE
 * pool's class without it (pm_pool_reuse), so the read is atomic. */
static bool pool_unused(const pm_pool_t *pool)
{
    return __atomic_load_n(&pool->class_index, __ATOMIC_RELAXED) == PM_CLASS_NONE;
}

/* A retained pool (I10: UNUSED and resident, under the lock) in reach. */
static bool purge_takes(pm_pool_t *pool, purge_reach_t reach)
{
    return pool_unused(pool) && pm_pool_resident(pool) &&
           (retained_expired(pool, reach.now_ms) || directory.retained_count > reach.cap);
}

/* The pool's pages go back with the run's; the caller purges the range. */
static void purge_take(pm_pool_t *pool, purge_reach_t reach, purge_result_t *out)
{
    out->early += !retained_expired(pool, reach.now_ms);
    retained_unlink(pool);
    out->bytes += pool_disown_pages(pool);
}

/* From pool `from` of the arena, one way (`step` +1 or -1), the farthest
 * pool the run takes, each taken on the way; over UNUSED pools without
 * pages (nothing to purge, and no gap in the range either). */
static unsigned run_reach(pm_arena_t *arena, unsigned from, int step, purge_reach_t reach,
                          purge_result_t *out)
{
    unsigned edge = from;
    for (int k = (int)from + step; k >= 0 && k < (int)PM_POOLS_PER_ARENA; k += step) {
        pm_pool_t *next = &arena->pools[k];
        if (!pool_unused(next))
            break;
        if (pm_pool_resident(next)) {
            if (!purge_takes(next, reach))
                break;
            purge_take(next, reach, out);
            edge = (unsigned)k;
        }
    }
    return edge;
}

/* Purges chosen under the directory lock, to be made (`deferred`) after it
 * is dropped: a retained pool's madvise held the lock, and every other
 * thread's pool acquire and release waited on it and on the kernel's lock
 * on the address space behind it (bench/results/arena-lock.md). Until the
 * ranges are purged, their pools must not be handed out, nor their arena
 * unmapped: the arenas they lie in are taken off the directory's lists
 * (purges_pending), and go back on them, or are unmapped if they may be,
 * once the purges are made (purge_work_finish). malloc_trim's work is not
 * deferred: it is purged before the lock is dropped. */
typedef struct {
    pm_os_purge_batch_t batch;
    bool deferred;
    unsigned arena_count;
    pm_arena_t *arenas[PM_OS_PURGE_BATCH];
} purge_work_t;

/* Whether another range might not fit: decay_step stops there. */
static bool purge_work_full(const purge_work_t *work)
{
    return work->batch.count == PM_OS_PURGE_BATCH || work->arena_count == PM_OS_PURGE_BATCH;
}

static void purge_work_add(purge_work_t *work, pm_arena_t *arena, void *start, size_t bytes)
{
    if (work->deferred) {
        unsigned i = 0;
        while (i < work->arena_count && work->arenas[i] != arena)
            i++;
        if (i == work->arena_count) {
            work->arenas[work->arena_count++] = arena;
            /* It has a retained pool, so it is on a list, unless another
             * purge in progress took it off. */
            if (arena->purges_pending++ == 0)
                directory_unlink(arena);
        }
    }
    pm_os_purge_add(&work->batch, start, bytes);
}

/* The work's ranges are purged: its arenas go back on their lists, or are
 * unmapped (I5). Caller holds the lock. */
static void purge_work_finish(purge_work_t *work)
{
    for (unsigned i = 0; i < work->arena_count; i++) {
        pm_arena_t *arena = work->arenas[i];
        if (--arena->purges_pending > 0)
            continue;
        if (arena_disposable(arena))
            arena_destroy(arena);
        else
            directory_link(arena);
    }
}

/* I10: a retained pool's pages go back to the OS. If every pool of its
 * arena is unused and the arena is not in the reserve, the arena goes
 * whole (I5): its resident pools, all of them retained, leave the list
 * together, and one munmap takes their pages; the pools purged with it may
 * be younger than the delay and the cap asks (at most an arena's worth).
 * Else (and while a purge of the arena is in progress) the retained pools
 * next to it in its arena that the purge reaches go in the same range,
 * added to `work`. Pools a program frees one after another
 * are often neighbours: one range for the run, where one for each pool made
 * churn-2t's end 397 calls (212 now, with the cap's slack), and above 33
 * pages Linux flushes the TLB once for the range, not page by page
 * (bench/pagecost.c on this project's PVM guests: 1.0 us a page 256 KiB at a
 * time, 4.5 a pool at a time). Caller holds the lock. */
static purge_result_t retained_purge(pm_pool_t *pool, purge_reach_t reach, purge_work_t *work)
{
    pm_arena_t *arena = pm_arena_of(pool);
    purge_result_t out = {0, 0};
    directory_count(&directory.retained_purges_total, 1);
    if (arena_beyond_reserve(arena) && arena->purges_pending == 0) {
        /* The batch's ranges first: unmapped, the arena's part of the
         * space may be mapped again by anyone before a later flush. */
        pm_os_purge_flush(&work->batch);
        out.bytes = PM_ARENA_HEADER_SIZE;
        for (unsigned k = 0; k < PM_POOLS_PER_ARENA; k++)
            if (pm_pool_resident(&arena->pools[k]))
                purge_take(&arena->pools[k], reach, &out);
        directory_unlink(arena);
        arena_destroy(arena);
        return out;
    }
    purge_take(pool, reach, &out);
    unsigned first = run_reach(arena, pm_pool_index_of(pool), -1, reach, &out);
    unsigned last = run_reach(arena, pm_pool_index_of(pool), +1, reach, &out);
    char *start = pm_pool_start(&arena->pools[first]);
    size_t bytes = (size_t)((char *)arena + (size_t)(last + 1) * PM_POOL_SIZE - start);
    purge_work_add(work, arena, start, bytes);
    return out;
}

/* The cap less the pools parked in a row (heap.c, PARKING IN A ROW): empty
 * pools kept resident for a program's next batch, as the retained ones are
 * for its next need, so the one cap bounds both. */
static uint64_t retain_cap_left(uint64_t cap)
{
    uint64_t in_a_row = parked_sum(true);
    return cap > in_a_row ? cap - in_a_row : 0;
}

/* The cap on retained pools (I10), kept in [min(RETAIN_POOLS,
 * RETAIN_POOLS_MAX), RETAIN_POOLS_MAX]; once it has not grown for
 * CAP_SHRINK_DELAYS delays it halves, so a burst of demand long past does
 * not keep memory resident for ever. Caller holds the lock. */
static uint64_t retain_cap(uint64_t now_ms)
{
    uint64_t max = pm_options.retain_pools_max;
    uint64_t floor = pm_options.retain_pools < max ? pm_options.retain_pools : max;
    if (directory.retain_cap < floor || directory.retain_cap > max)
        directory.retain_cap = directory.retain_cap < floor ? floor : max;
    if (directory.retain_cap > floor &&
        now_ms - directory.cap_changed_ms >= CAP_SHRINK_DELAYS * pm_options.purge_delay_ms) {
        directory.retain_cap = directory.retain_cap / 2 > floor ? directory.retain_cap / 2 : floor;
        directory.cap_changed_ms = now_ms;
    }
    return pm_arena_collapsed() ? 0 : retain_cap_left(directory.retain_cap);
}

static void retain_cap_forget(void)
{
    directory.cap_purged_pending = directory.cap_bare_acquired = directory.cap_refaulted = 0;
}

/* A pool without pages is being handed out: evidence for the cap, if the
 * cap purged pools early less than a delay ago. */
static void retain_cap_note_bare(uint64_t now_ms)
{
    if (directory.cap_purged_pending == 0 && directory.cap_refaulted == 0)
        return;
    if (now_ms - directory.cap_purged_ms >= pm_options.purge_delay_ms) {
        retain_cap_forget(); /* too long ago to be a cycle */
        return;
    }
    directory.cap_bare_acquired++;
    if (directory.cap_purged_pending > 0) {
        directory.cap_purged_pending--;
        directory.cap_refaulted++;
    }
}

/* The cap's grace: a pool above the cap is purged early only once it has
 * been retained for POOLMALLOC_PURGE_GRACE and no released pool has been
 * taken back for as long. A program that frees a structure and builds it
 * again at once (the first turn of a cycle the cap has not learnt yet:
 * each round of python_objects.py frees ~3,700 pools in 60 ms and takes
 * them back over the next 200) then pays no madvise and no page faults
 * for it; one that does not rebuild has it given back a grace later, and
 * at most a delay later (pm_arena_decay_if_due). Pools populated ahead of
 * a growing heap are no take-back, and a collapse waits for nothing.
 * `oldest` is the oldest retained pool. Caller holds the lock. */
static bool cap_waits(pm_pool_t *oldest, uint64_t now_ms)
{
    uint64_t grace = pm_options.purge_grace_ms;
    return !pm_arena_collapsed() &&
           (now_ms - *released_ms_of(oldest) < grace ||
            (directory.taken_back_ms != 0 && now_ms - directory.taken_back_ms < grace));
}

/* The cap is about to purge a pool before its delay has run out. If, since
 * it last did so (less than a delay ago), most of the pools handed out
 * without pages stood for pools it had purged early, the program cycles
 * over more pools than the cap keeps and would pay a madvise and the page
 * faults per pool on every turn: the cap first grows by that many, so it
 * settles at the size of the cycle. A program that merely grew meanwhile
 * (most of its new pools fresh) is no such evidence, and its memory goes
 * back at once. Returns the cap. */
static uint64_t retain_cap_grow(uint64_t now_ms)
{
    if (directory.cap_refaulted == 0 && directory.cap_bare_acquired == 0)
        return retain_cap_left(directory.retain_cap); /* nothing learnt since the last purge */
    if (now_ms - directory.cap_purged_ms < pm_options.purge_delay_ms &&
        2 * directory.cap_refaulted >= directory.cap_bare_acquired) {
        uint64_t grown = directory.retain_cap + directory.cap_refaulted;
        directory.retain_cap =
            grown < pm_options.retain_pools_max ? grown : pm_options.retain_pools_max;
        directory.cap_changed_ms = now_ms;
    }
    /* Weighed once; the pools still pending may yet come back. */
    directory.cap_bare_acquired = directory.cap_refaulted = 0;
    return retain_cap_left(directory.retain_cap);
}

/* I10, the amortized part: chooses retained pools to purge into `work`,
 * oldest first, that have been unused for POOLMALLOC_PURGE_DELAY or stand
 * above the cap, in at most `budget` purges (a run or an arena purged
 * whole counts once), or until the work is full. The cap purges once the
 * list stands its slack (pm_retain_slack) above it, and then down to it
 * (*over: it has begun to, in an earlier step). The list is in release
 * order, so the first pool that is young enough and within the cap ends
 * the walk. Returns how many purges it chose. Caller holds the lock. */
static unsigned decay_step(uint64_t now_ms, unsigned budget, purge_work_t *work, bool *over)
{
    uint64_t cap = retain_cap(now_ms);
    uint64_t slack = *over ? 0 : pm_retain_slack(cap);
    unsigned purged = 0;
    pm_pool_t *pool;
    while (purged < budget && !purge_work_full(work) &&
           (pool = directory.retained_oldest) != NULL) {
        bool waits = false;
        if (!retained_expired(pool, now_ms) &&
            (directory.retained_count <= cap + slack || (waits = cap_waits(pool, now_ms)) ||
             (!pm_arena_collapsed() &&
              directory.retained_count <= (cap = retain_cap_grow(now_ms)) + slack))) {
            atomic_store_explicit(&directory.cap_waiting, waits, memory_order_relaxed);
            break;
        }
        slack = 0; /* over: back down to the cap */
        *over = true;
        purge_result_t gone = retained_purge(pool, (purge_reach_t){now_ms, cap}, work);
        if (gone.early > 0) {
            directory.cap_purged_pending += gone.early;
            directory.cap_purged_ms = now_ms;
        }
        purged++;
    }
    return purged;
}

/* decay_step's purges, up to `budget`, made after the lock is dropped, in
 * rounds of one work each. Called with the lock held; returns with it
 * dropped, and how many purges were made. */
static unsigned decay_and_unlock(uint64_t now_ms, unsigned budget)
{
    unsigned total = 0;
    bool over = false;
    for (;;) {
        purge_work_t work = {.batch.count = 0, .deferred = true, .arena_count = 0};
        total += decay_step(now_ms, budget - total, &work, &over);
        bool more = total < budget && purge_work_full(&work);
        if (work.arena_count > 0) {
            atomic_fetch_add_explicit(&directory.purges_in_flight, 1, memory_order_relaxed);
            directory_unlock();
            pm_os_purge_flush(&work.batch);
            directory_lock();
            purge_work_finish(&work);
            if (atomic_fetch_sub_explicit(&directory.purges_in_flight, 1,
                                          memory_order_relaxed) == 1 &&
                directory.fork_waiting)
                pm_os_futex_wake(&directory.purges_in_flight, 1);
        }
        if (!more)
            break;
    }
    directory_unlock();
    return total;
}

/* Pools in use less the parked, which are empty. Both counts are atomic:
 * exact under the lock, an estimate without it (pm_arena_note_parked). */
static uint64_t pools_occupied(void)
{
    uint64_t parked = parked_sum(false);
    return parked < directory.pools_in_use ? directory.pools_in_use - parked : 0;
}

/* The fewest pools occupied that the cycle's rounds, this one included,
 * rebuilt from (UINT64_MAX: none yet). Caller holds the lock. */
static uint64_t rounds_trough(void)
{
    return directory.rebuilt_from < directory.cycle_trough ? directory.rebuilt_from
                                                           : directory.cycle_trough;
}

/* After the peak, the cycle's trough or where the round rebuilt from have
 * changed. Below COLLAPSE_MIN_POOLS, neither sets off a collapse, and the
 * gate is 0: a parking heap with a pool left looks no further
 * (pm_arena_note_parked). Caller holds the lock. */
static void collapse_gate_update(void)
{
    uint64_t trough = rounds_trough();
    uint64_t widest = trough != UINT64_MAX && trough > directory.in_use_peak ? trough
                                                                              : directory.in_use_peak;
    atomic_store_explicit(&directory.collapse_gate,
                          widest >= COLLAPSE_MIN_POOLS ? widest / PM_COLLAPSE_DIVISOR : 0,
                          memory_order_relaxed);
}

/* A program that lets go of nearly all its pools (to an eighth of the most
 * it had occupied, from a megabyte or more) has freed a phase's worth of
 * memory, and the retained list and the parked pools (I10, I4) would keep
 * up to the cap and a pool per class resident while nothing suggests it
 * will be needed: with a 64-pool cap, a program that allocated 1 million
 * blocks of 16..512 bytes and freed them all stayed 1.4 MiB above where it
 * started (1.15 x a 9.4 MiB start, 1.6 x a 2.5 MiB one). So the pools
 * collapse: nothing is retained, and no pool parked, until the program
 * takes a pool again, and what was retained goes back over the releases
 * still to come (release_budget); the peak is then measured afresh.
 * A program that goes on at a low level after a large phase so pays the
 * collapse once, not on every pool it cycles. A collapse that
 * comes within a purge delay of the last is a program dropping and
 * rebuilding a structure in rounds, where the cap keeps what the next
 * round needs: it is let be, and so are those of the next 8 delays, as
 * system.c does for glibc's heap. Unless it falls to an eighth of the
 * fewest pools the rounds rebuilt from, if that was COLLAPSE_MIN_POOLS or
 * more: the program has let go of what it kept through the cycle, which
 * is over (the cache workload, freeing everything after budget steps 0.4 s
 * apart, kept 3,400 pools, 4.7 x its start, the collapse of its last step
 * taken for a round). Caller holds the lock. */
static void collapse_note(uint64_t now_ms)
{
    if (pm_arena_collapsed())
        return;
    bool in_cycle = now_ms < directory_read(&directory.cycle_until_ms);
    uint64_t trough = rounds_trough();
    uint64_t occupied = pools_occupied();
    uint64_t scaled = occupied * PM_COLLAPSE_DIVISOR;
    bool cycle_over = in_cycle && trough >= COLLAPSE_MIN_POOLS && scaled <= trough;
    if (!cycle_over) {
        if (directory.in_use_peak < COLLAPSE_MIN_POOLS || scaled > directory.in_use_peak)
            return;
        if (!in_cycle)
            trough = directory.rebuilt_from; /* a cycle that starts here: its first round */
        if (now_ms - directory.collapse_ms < pm_options.purge_delay_ms) {
            atomic_store_explicit(&directory.cycle_until_ms,
                                  now_ms + PM_CYCLE_DELAYS * pm_options.purge_delay_ms,
                                  memory_order_relaxed);
            in_cycle = true;
        }
        if (in_cycle) { /* a round */
            directory.collapse_ms = now_ms;
            directory.cycle_trough = trough;
            directory.rebuilt_from = UINT64_MAX;
            directory.in_use_peak = occupied; /* the next round's peak from here */
            collapse_gate_update();
            return;
        }
    }
    directory.collapse_ms = now_ms;
    atomic_store_explicit(&directory.cycle_until_ms, 0, memory_order_relaxed);
    directory.cycle_trough = directory.rebuilt_from = UINT64_MAX;
    atomic_store_explicit(&directory.collapsed, true, memory_order_relaxed);
}

bool pm_arena_collapsed(void)
{
    return atomic_load_explicit(&directory.collapsed, memory_order_relaxed);
}

bool pm_arena_cycling(uint64_t now_ms) { return now_ms < directory_read(&directory.cycle_until_ms); }

void pm_arena_parked_add(unsigned stripe, int64_t delta, bool in_a_row)
{
    atomic_fetch_add_explicit(&parked_stripes[stripe].pools, (uint64_t)delta,
                              memory_order_relaxed);
    if (in_a_row)
        atomic_fetch_add_explicit(&parked_stripes[stripe].in_a_row, (uint64_t)delta,
                                  memory_order_relaxed);
}

/* A heap's last pools of its classes are parked, not released, when a
 * thread frees everything: without this, a program whose threads all did
 * (the idle-threads workload: 16 threads, 513 pools parked) never saw its
 * pools collapse. The lock only near a collapse: prodcons parks and takes
 * back 50,000 pools a second, and took 1.4% longer with it every time. */
bool pm_arena_note_parked(uint64_t occupied_here)
{
    /* The parking heap's own pools are part of the pools occupied: while
     * they are above the gate, the stripes, which other heaps write as
     * they park, are not read. */
    uint64_t gate = atomic_load_explicit(&directory.collapse_gate, memory_order_relaxed);
    if (occupied_here > gate || pools_occupied() > gate)
        return pm_arena_collapsed();
    directory_lock();
    collapse_note(decay_now_ms());
    directory_unlock();
    return pm_arena_collapsed();
}

/* The purges a release makes. While collapsed, the retained pools go back
 * over the releases still to come, all of them by the last: a collapse
 * found late in a fall (below a cycle's trough) has few releases left and
 * may have thousands of pools retained under a cap grown for the cycle.
 * Caller holds the lock. */
static unsigned release_budget(void)
{
    if (!pm_arena_collapsed())
        return DECAY_BATCH;
    uint64_t share = directory.retained_count / (directory.pools_in_use + 1) + 1;
    return share > DECAY_BATCH ? (unsigned)share : DECAY_BATCH;
}

/* A heap growing in a class has taken a pool without pages. That pool and
 * the bare UNUSED pools after it in its arena are made resident in one
 * call, and the ones after it go to the head of the arena's free list,
 * retained (I10), to be handed out next. The look-ahead is at most one pool
 * for every POPULATE_AHEAD_RATIO the heap has in use (the pools after it
 * are the heap's to take, I5: sized on every heap's pools, it left
 * pm_bench_churn's 4 heaps each populating most of every arena it took,
 * and peak RSS 5% higher), and no more than the retained
 * list has room for under its cap and slack (pm_retain_slack). Stopping at
 * the cap, it found no room while the list stood within the slack, and
 * python_objects.py populated 249 pages a call each, not 206.
 *
 * Carving makes a pool's pages resident one at a time. On the machines
 * poolmalloc is measured on (bench/pagecost.c), a page populated 4 KiB at
 * a time and then first written costs 2.6 + 4.6 us; populated 128 KiB or
 * more at a time, 0.7 + 3.5 us. A program that builds a large structure,
 * or builds it again after giving the last one back, takes pools by the
 * thousand. One that stops growing leaves the look-ahead retained, purged
 * after the delay like any other.
 *
 * The pages are populated by the caller, after it drops the lock: faulting
 * in up to 256 KiB held the lock a third of pm_bench_drain's time, and
 * every other thread's pool acquire and release waited on it
 * (bench/results/arena-lock.md). Until then the run is counted resident
 * already. Nothing else writes the look-ahead: it stays in this heap's home
 * arena (I5), and a purge of it, which would take the newest retained pools
 * last, only leaves pages resident that count as given back; populating
 * does not change what a page holds. Should the kernel refuse, once, the
 * run counts pages it does not hold until it is purged. Returns the bytes
 * to populate from the pool's start, 0 for none. Caller holds the lock. */
static size_t populate_run(pm_arena_t *arena, pm_pool_t *pool, uint64_t heap_pools,
                           uint64_t now_ms)
{
    unsigned first = pm_pool_index_of(pool), end = first + 1;
    /* Retained pools, within the cap and its slack: none is purged early
     * for them. */
    uint64_t cap = retain_cap(now_ms);
    uint64_t limit = cap + pm_retain_slack(cap);
    uint64_t room = limit > directory.retained_count ? limit - directory.retained_count : 0;
    uint64_t ahead = heap_pools / POPULATE_AHEAD_RATIO;
    ahead = ahead < room ? ahead : room;
    while (end < PM_POOLS_PER_ARENA && end - first <= ahead &&
           pool_unused(&arena->pools[end]) && !pm_pool_resident(&arena->pools[end]))
        end++;
    /* One pool alone: carving populates a page at a time, as it needs them.
     * The kernel refuses: carving's writes fault the pages in. */
    if (end == first + 1 || !pm_os_can_populate())
        return 0;
    pool->touched_pages = (uint8_t)(pm_pool_bytes(first) / PM_OS_PAGE_SIZE);
    /* The free list without the run, in its order... */
    pm_pool_t *rest = NULL, **tail = &rest;
    for (pm_pool_t *p = arena->free_pools; p != NULL; p = p->next) {
        if (pm_pool_index_of(p) > first && pm_pool_index_of(p) < end)
            continue;
        *tail = p;
        tail = &p->next;
    }
    *tail = NULL;
    /* ...behind the run, lowest address first. Their pages come back now,
     * not when they are handed out: they count for the cap as pools handed
     * out without pages (retain_cap_note_bare) here. */
    for (unsigned k = end; k-- > first + 1;) {
        pm_pool_t *ahead_pool = &arena->pools[k];
        ahead_pool->touched_pages = (uint8_t)(pm_pool_bytes(k) / PM_OS_PAGE_SIZE);
        retained_append(ahead_pool, now_ms);
        arena->populated_ahead |= populated_ahead_bit(ahead_pool);
        retain_cap_note_bare(now_ms);
        ahead_pool->next = rest;
        rest = ahead_pool;
    }
    arena->free_pools = rest;
    return (size_t)((char *)arena + (size_t)end * PM_POOL_SIZE - pm_pool_start(pool));
}

/* The first arena of the lists by_unused[0..count), the fullest. */
static pm_arena_t *fullest_arena(pm_arena_t *const *by_unused, unsigned count)
{
    for (unsigned u = 0; u < count; u++)
        if (by_unused[u] != NULL)
            return by_unused[u];
    return NULL;
}

/* The arena to take a pool from, or NULL if none has one: the fullest, so
 * sparse ones drain (see internal.h), of the heap's own, then of nobody's,
 * which it makes its own (I5). */
static pm_arena_t *arena_to_take(pm_arena_home_t *home)
{
    pm_arena_t *arena = fullest_arena(home->by_unused, PM_POOLS_PER_ARENA - 1);
    return arena != NULL ? arena : fullest_arena(directory.by_unused, PM_POOLS_PER_ARENA);
}

pm_pool_t *pm_arena_acquire_pool(unsigned class_index, struct pm_heap *heap, bool growing)
{
    directory_lock();
    pm_arena_home_t *home = &heap->arena_home;
    pm_arena_t *arena = arena_to_take(home);
    if (arena == NULL) {
        /* A new arena is mapped without the lock. Should another thread
         * free a pool or map an arena meanwhile, that one is taken and the
         * new one unmapped again: kept, it would stand beyond the reserve
         * (I5). */
        directory_unlock();
        pm_arena_t *fresh = arena_map();
        if (fresh == NULL)
            return NULL;
        directory_lock();
        arena = arena_to_take(home);
        if (arena == NULL) {
            arena_enlist(fresh);
            arena = fresh;
        } else {
            arena_doom(fresh);
        }
    }
    uint64_t now_ms = decay_now_ms();
    directory_unlink(arena);
    arena->home = home;
    if (arena->free_pool_count == PM_POOLS_PER_ARENA)
        directory.empty_count--;
    pm_pool_t *pool = arena->free_pools;
    arena->free_pools = pool->next;
    pool->next = NULL;
    if (--arena->free_pool_count > 0)
        directory_link(arena);
    /* I10: the pool leaves the retained list now, under the lock. Its class
     * is set only after the lock is released, and until then the list
     * would still show it UNUSED and resident, fit to be purged under the
     * blocks its new owner is carving. */
    uint64_t occupied = pools_occupied();
    if (occupied < directory.rebuilt_from)
        directory.rebuilt_from = occupied;
    directory.pools_in_use++;
    occupied++;
    if (pm_arena_collapsed()) { /* the program needs pools again */
        atomic_store_explicit(&directory.collapsed, false, memory_order_relaxed);
        directory.in_use_peak = occupied;
    }
    if (occupied > directory.in_use_peak)
        directory.in_use_peak = occupied;
    collapse_gate_update();
    size_t populate_bytes = 0;
    if (pm_pool_resident(pool)) {
        if (!(arena->populated_ahead & populated_ahead_bit(pool)))
            directory.taken_back_ms = now_ms;
        retained_unlink(pool);
    } else {
        retain_cap_note_bare(now_ms);
        if (growing)
            populate_bytes = populate_run(arena, pool, heap->pool_total, now_ms);
    }
    /* I2: owned before the lock drops, so no other thread (the decay, a
     * fork child's validator) ever sees it off the free list yet UNUSED. */
    pm_pool_init(pool, class_index, heap);
    decay_and_unlock(now_ms, DECAY_BATCH);
    if (populate_bytes > 0)
        pm_os_populate(pm_pool_start(pool), populate_bytes);
    return pool;
}

/* Its owner gives a pool back: it becomes UNUSED here (I2). */
void pm_arena_release_pool(pm_pool_t *pool)
{
    pm_arena_t *arena = pm_arena_of(pool);
    directory_lock();
    uint64_t now_ms = decay_now_ms();
    /* I2: UNUSED and back on the free list in one step, under the lock. */
    pm_pool_set_owner(pool, NULL, PM_CLASS_NONE);
    /* Off the lists while a purge of it is in progress (purge_work_t). */
    bool listed = arena->purges_pending == 0;
    if (listed && arena->free_pool_count > 0)
        directory_unlink(arena);
    pool->next = arena->free_pools;
    arena->free_pools = pool;
    arena->free_pool_count++;
    directory.pools_in_use--;
    collapse_note(now_ms);
    if (pm_pool_resident(pool))
        retained_append(pool, now_ms); /* I10 */
    if (arena->free_pool_count == PM_POOLS_PER_ARENA) {
        directory.empty_count++;
        /* I5: unmapped now if it holds no pages, else when its last
         * retained pool is purged. */
        if (arena_disposable(arena)) {
            arena_destroy(arena);
            directory_unlock();
            return;
        }
    }
    if (listed)
        directory_link(arena);
    decay_and_unlock(now_ms, release_budget());
}

void pm_arena_home_open(pm_arena_home_t *home)
{
    directory_lock();
    home->open = true;
    directory_unlock();
}

void pm_arena_home_close(pm_arena_home_t *home)
{
    directory_lock();
    home->open = false;
    for (unsigned u = 0; u < PM_POOLS_PER_ARENA - 1; u++) {
        pm_arena_t *arena;
        while ((arena = home->by_unused[u]) != NULL) {
            directory_unlink(arena);
            directory_link(arena); /* the directory's now */
        }
    }
    directory_unlock();
}

/* The pools are the caller's, so nobody else may hand them out or unmap
 * their arenas meanwhile: the purge is made without the lock. */
void pm_arena_purge_pools(pm_pool_t *const *pools, unsigned count)
{
    pm_os_purge_batch_t batch = {.count = 0};
    directory_lock();
    for (unsigned i = 0; i < count; i++)
        if (pm_pool_resident(pools[i]))
            pm_os_purge_add(&batch, pm_pool_start(pools[i]), pool_disown_pages(pools[i]));
    directory_unlock();
    pm_os_purge_flush(&batch);
}

void pm_arena_purge_pages(pm_os_purge_batch_t *batch, void *addr, size_t bytes)
{
    if (batch != NULL)
        pm_os_purge_add(batch, addr, bytes);
    else
        pm_os_purge(addr, bytes);
    directory_count(&directory.released_bytes_total, bytes);
    directory_count(&directory.in_use_purges_total, 1);
}

void pm_arena_decay_tick(void)
{
    unsigned purged;
    do {
        directory_lock();
        purged = decay_and_unlock(decay_now_ms(), DECAY_BATCH);
    } while (purged == DECAY_BATCH);
}

void pm_arena_decay_if_due(uint64_t now_ms)
{
    uint64_t oldest_ms = atomic_load_explicit(&directory.retained_oldest_ms, memory_order_relaxed);
    uint64_t wait = atomic_load_explicit(&directory.cap_waiting, memory_order_relaxed)
                        ? pm_options.purge_grace_ms
                        : pm_options.purge_delay_ms;
    if (oldest_ms == UINT64_MAX || now_ms - oldest_ms < wait)
        return;
    bool behind = now_ms - oldest_ms >= wait + pm_options.purge_delay_ms;
    directory_lock();
    decay_and_unlock(now_ms, behind ? DECAY_BATCH_BEHIND : DECAY_BATCH);
}

size_t pm_arena_trim(void)
{
    size_t released = 0;
    directory_lock();
    uint64_t now_ms = decay_now_ms();
    purge_work_t work = {.batch.count = 0, .deferred = false, .arena_count = 0};
    while (directory.retained_oldest != NULL)
        released +=
            retained_purge(directory.retained_oldest, (purge_reach_t){now_ms, 0}, &work).bytes;
    pm_os_purge_flush(&work.batch);
    pm_arena_t *empty;
    while ((empty = directory.by_unused[PM_POOLS_PER_ARENA - 1]) != NULL) {
        directory_unlink(empty);
        arena_destroy(empty);
        released += PM_ARENA_SIZE;
    }
    directory_unlock();
    return released;
}

void pm_arena_stats(pm_stats_t *out, uint64_t used_blocks[PM_CLASS_COUNT])
{
    directory_lock();
    out->arenas_mapped = directory.mapped;
    out->arenas_peak = directory.peak;
    out->arenas_created_total = directory.created_total;
    out->arenas_destroyed_total = directory.destroyed_total;
    out->arena_bytes = directory.mapped * PM_ARENA_SIZE;
    out->metadata_bytes += directory.mapped * PM_ARENA_HEADER_SIZE;
    out->released_bytes_total = directory_read(&directory.released_bytes_total);
    /* Pools in use change under their owners' hands: each field is read
     * once, atomically, and the figures are exact when the program is
     * quiescent. */
    for (const pm_arena_t *arena = directory.all; arena != NULL; arena = arena->all_next) {
        uint64_t used_bytes = 0;
        for (unsigned k = 0; k < PM_POOLS_PER_ARENA; k++) {
            const pm_pool_t *pool = &arena->pools[k];
            unsigned c = __atomic_load_n(&pool->class_index, __ATOMIC_ACQUIRE);
            if (c == PM_CLASS_NONE) {
                out->unused_pools++;
                out->retained_pools += pm_pool_resident(pool);
                continue;
            }
            unsigned used = pm_pool_used(pool);
            unsigned capacity = __atomic_load_n(&pool->capacity, __ATOMIC_RELAXED);
            pm_class_stats_t *cs = &out->classes[c];
            cs->pools++;
            cs->pools_full += used == capacity;
            cs->pools_empty += used == 0;
            cs->free_blocks += used < capacity ? capacity - used : 0;
            cs->pool_bytes += pm_pool_bytes(k);
            cs->trimmed_bytes += (uint64_t)__builtin_popcount(
                                     __atomic_load_n(&pool->purged_pages, __ATOMIC_RELAXED)) *
                                 PM_OS_PAGE_SIZE;
            used_blocks[c] += used;
            used_bytes += (uint64_t)used * __atomic_load_n(&pool->block_size, __ATOMIC_RELAXED);
        }
        uint64_t bucket = used_bytes * PM_OCCUPANCY_BUCKETS / (PM_ARENA_SIZE - PM_ARENA_HEADER_SIZE);
        out->arena_occupancy[bucket < PM_OCCUPANCY_BUCKETS ? bucket : PM_OCCUPANCY_BUCKETS - 1]++;
    }
    directory_unlock();
}

bool pm_arena_validate(bool (*visit)(const pm_pool_t *pool), uint64_t parked,
                       uint64_t parked_in_a_row)
{
    bool ok = true;
    uint64_t count = 0, in_use = 0;
    unsigned empty_arenas = 0, bare_empty_arenas = 0;
    uint64_t retained = 0;
    directory_lock();
    for (pm_arena_t *arena = directory.all; arena != NULL; arena = arena->all_next) {
        count++;
        unsigned unused = 0;
        for (const pm_pool_t *p = arena->free_pools; p != NULL; p = p->next) {
            ok &= PM_VALID(p->class_index == PM_CLASS_NONE); /* I2 */
            if (++unused > PM_POOLS_PER_ARENA)
                break;
        }
        ok &= PM_VALID(unused == arena->free_pool_count);
        /* I5: nobody's when empty, never filed in a closed home, and on
         * its list, at the head if first (looked up only once it has one:
         * a home has no list for an empty arena). */
        if (unused > 0 && unused == arena->free_pool_count) {
            bool filed = arena->home == NULL ||
                         (unused < PM_POOLS_PER_ARENA && arena->home->open);
            ok &= PM_VALID(filed && (arena->prev == NULL) == (*directory_list(arena) == arena));
        }
        in_use += PM_POOLS_PER_ARENA - unused;
        ok &= PM_VALID(pm_registry_contains(arena) && arena->purges_pending == 0); /* I1, I5 */
        empty_arenas += unused == PM_POOLS_PER_ARENA;
        bare_empty_arenas += unused == PM_POOLS_PER_ARENA && !arena_resident(arena);
        for (unsigned k = 0; k < PM_POOLS_PER_ARENA; k++) {
            const pm_pool_t *pool = &arena->pools[k];
            if (pool->class_index == PM_CLASS_NONE) {
                ok &= pm_pool_is_valid(pool); /* I2 */
                retained += pm_pool_resident(pool);
            } else
                ok &= visit(pool);
        }
    }
    ok &= PM_VALID(count == directory.mapped && empty_arenas == directory.empty_count); /* I5 */
    ok &= PM_VALID(in_use == directory.pools_in_use);
    ok &= PM_VALID(parked == parked_sum(false) && parked_in_a_row == parked_sum(true));
    ok &= PM_VALID(bare_empty_arenas <= pm_options.reserve_arenas);
    /* I10: the retained list holds exactly the UNUSED resident pools, in
     * release order. */
    uint64_t listed = 0, last_ms = 0;
    for (pm_pool_t *p = directory.retained_oldest; p != NULL && listed <= retained;
         p = p->retained_next) {
        ok &= PM_VALID(p->class_index == PM_CLASS_NONE && pm_pool_resident(p) &&
                       *released_ms_of(p) >= last_ms);
        ok &= PM_VALID(p->retained_next != NULL || p == directory.retained_newest);
        last_ms = *released_ms_of(p);
        listed++;
    }
    ok &= PM_VALID(listed == retained && retained == directory.retained_count);
    directory_unlock();
    return ok;
}

uint64_t pm_arena_retained_purges(void) { return directory_read(&directory.retained_purges_total); }
uint64_t pm_arena_in_use_purges(void) { return directory_read(&directory.in_use_purges_total); }

void pm_arena_lock(void)
{
    directory_lock();
    /* No purge in progress without the lock: in the child, none would end. */
    uint32_t in_flight;
    while ((in_flight = atomic_load_explicit(&directory.purges_in_flight, memory_order_relaxed)) >
           0) {
        directory.fork_waiting = true;
        directory_unlock();
        pm_os_futex_wait(&directory.purges_in_flight, in_flight, NULL);
        directory_lock();
    }
    if (directory.fork_waiting)
        directory.fork_waiting = false;
    pm_lock(&pm_fork_locks.registry);
}

void pm_arena_unlock(void)
{
    pm_unlock(&pm_fork_locks.registry);
    directory_unlock();
}
