/* check_release.c — giving memory back (I5, I10): released pools are
 * purged once unused for the purge delay or above the adaptive cap (which
 * grows for a cycle, not for growth), the dump thread purges an idle
 * process, empty arenas beyond the reserve are unmapped, an idle thread's
 * parked pools go back after the delay, at another thread's pool acquire
 * or at its allocation tick (which purges the retained pools too), an exited
 * thread's pools are adopted by the thread that frees their blocks (or,
 * holding sampled blocks, collected by the walk), malloc_trim gives back everything,
 * a heap whose pools have mostly drained gives back their free pages (not
 * one that drains them one after another), and RSS really falls; glibc's heap is trimmed once the
 * glibc path's live bytes have stayed halved for the purge delay, at once
 * when they collapse, never while they hold steady or cycle; and a range
 * given back and mapped again by another thread is new memory to TSan. */
#include <check.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#include "internal.h"
#include "support.h"

enum { BLOCKS = 40000, BLOCK_SIZE = 256 };
static void *blocks[BLOCKS];

static void allocate_all(void)
{
    for (int i = 0; i < BLOCKS; i++) {
        blocks[i] = pm_malloc(BLOCK_SIZE);
        ck_assert_ptr_nonnull(blocks[i]);
        memset(blocks[i], 0x5a, BLOCK_SIZE);
    }
}

static void free_all(void)
{
    for (int i = 0; i < BLOCKS; i++)
        pm_free(blocks[i]);
}

/* 128 pools of 512-byte blocks held throughout: with them, the ~640 pools
 * free_all gives back are not a collapse (more than an eighth of the peak
 * stays in use), and the retained list and the delay are what the test
 * watches. test_release_cycle_over holds fewer. */
enum { BALLAST = 128 * PM_POOL_SIZE / 512 };
static void *ballast[BALLAST];
static int ballast_held;

static void hold_ballast_of(int count)
{
    for (ballast_held = 0; ballast_held < count; ballast_held++) {
        ballast[ballast_held] = pm_malloc(512);
        ck_assert_ptr_nonnull(ballast[ballast_held]);
    }
}

static void hold_ballast(void) { hold_ballast_of(BALLAST); }

static void free_ballast(void)
{
    for (int i = 0; i < ballast_held; i++)
        pm_free(ballast[i]);
}

/* The process's resident anonymous KiB: what the allocator holds, not the
 * code its first slow paths, purges and trims fault in (in 64 KiB windows
 * of the file: a Release build's, at -O3, added 230 KiB of its own text and
 * libc's during test_release_collapse_rss_falls). Under AddressSanitizer,
 * less its shadow (x86-64: [0x7fff8000, 0x10007fff8000)): an eighth of
 * every arena page the instrumented core touched, which the kernel of some
 * machines counts as resident even when only read, and which ASan alone
 * could give back. */
static long resident_kib(void)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    long total = 0, kib;
    bool shadow = false;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long start, end;
        if (sscanf(line, "%lx-%lx ", &start, &end) == 2)
            shadow = PM_TEST_ASAN && start >= 0x7fff8000UL && end <= 0x10007fff8000UL;
        else if (sscanf(line, "Anonymous: %ld kB", &kib) == 1 && !shadow)
            total += kib;
    }
    fclose(f);
    return total;
}

/* "Given back to the OS" counts the pages a pool made resident, not the
 * whole pool: a pool that served one block gives back one page; and with
 * an arena unmapped, its header page. */
START_TEST(test_release_counts_resident_pages)
{
    pm_options.purge_delay_ms = 60000;
    pm_free(pm_malloc(BLOCK_SIZE));
    pm_stats_t before, after;
    pm_test_stats(&before);
    ck_assert_int_eq(pm_malloc_trim(0), 1);
    pm_test_stats(&after);
    ck_assert_uint_eq(after.released_bytes_total - before.released_bytes_total,
                      PM_OS_PAGE_SIZE + (before.arenas_mapped - after.arenas_mapped) *
                                            PM_ARENA_HEADER_SIZE);
}
END_TEST

/* 40000 x 256 bytes is ~640 pools; freeing them all within the purge
 * delay keeps at most the cap resident, and everything beyond it is counted
 * as purged (arenas stay mapped here, so none of it is unmapped instead). */
START_TEST(test_release_purges_above_cap)
{
    pm_options.retain_pools = 4;
    pm_options.reserve_arenas = 4096;
    pm_stats_t before, after;
    pm_test_stats(&before);
    allocate_all();
    free_all();
    pm_test_stats(&after);
    ck_assert(pm_heap_validate());
    uint64_t purged = after.released_bytes_total - before.released_bytes_total;
    /* Every pool but the bin's kept one and the 4 retained ones (and the
     * slack above them) was purged (counting every pool as a short pool 0,
     * to stay a lower bound). */
    uint64_t pools = (uint64_t)BLOCKS * BLOCK_SIZE / PM_POOL_SIZE;
    uint64_t kept = 4 + pm_retain_slack(4);
    ck_assert_uint_ge(purged, (pools - 1 - kept) * (PM_POOL_SIZE - PM_ARENA_HEADER_SIZE));
    ck_assert_uint_le(after.retained_pools, kept);
    ck_assert_uint_eq(after.small_live_blocks, before.small_live_blocks);
}
END_TEST

/* POOLMALLOC_PURGE_DELAY=0: every released pool is purged at once. */
START_TEST(test_release_delay_zero)
{
    pm_options.purge_delay_ms = 0;
    pm_options.reserve_arenas = 8; /* keep arenas mapped so purging shows */
    pm_stats_t before, after;
    pm_test_stats(&before);
    allocate_all();
    free_all();
    pm_test_stats(&after);
    uint64_t pools = (uint64_t)BLOCKS * BLOCK_SIZE / PM_POOL_SIZE;
    ck_assert_uint_ge(after.released_bytes_total - before.released_bytes_total,
                      (pools - 1 - 8 * PM_POOLS_PER_ARENA) * (PM_POOL_SIZE - PM_ARENA_HEADER_SIZE));
    ck_assert_uint_eq(after.retained_pools, 0);
    ck_assert_uint_le(after.arenas_mapped, 8 + 1);
    ck_assert(pm_heap_validate());
}
END_TEST

/* `bytes` allocated one REUSED_SIZE block at a time, each freed before
 * the next: no pool taken or given back (once the first is taken). */
enum { REUSED_SIZE = 128 };
static void allocate_reusing_one_block(int64_t bytes)
{
    for (int64_t done = 0; done < bytes; done += REUSED_SIZE)
        pm_free(pm_malloc(REUSED_SIZE));
}

/* I10: released pools keep their pages until they have been unused for the
 * delay; then the allocator's next calls purge them, a few per call. */
START_TEST(test_release_after_delay)
{
    /* Long while the pools are freed and counted, however slow the machine
     * (a sanitizer, other load); then 50 ms, and the stamps already taken
     * are older than that after a short sleep. */
    pm_options.purge_delay_ms = 60000;
    pm_options.retain_pools = 4096; /* the cap out of the way */
    pm_options.reserve_arenas = 4096;
    pm_stats_t before, freed, later;
    pm_test_stats(&before);
    hold_ballast();
    allocate_all();
    free_all();
    pm_test_stats(&freed);
    uint64_t pools = (uint64_t)BLOCKS * BLOCK_SIZE / PM_POOL_SIZE;
    /* Nothing purged before the delay: every released pool is retained. */
    ck_assert_uint_eq(freed.released_bytes_total, before.released_bytes_total);
    ck_assert_uint_ge(freed.retained_pools, pools - 1);
    pm_options.purge_delay_ms = 50;
    pm_test_sleep_ms(120);
    /* Later activity: each pool taken or given back purges a batch. */
    void *other[64];
    for (int i = 0; i < 64; i++)
        other[i] = pm_malloc(512);
    for (int i = 0; i < 64; i++)
        pm_free(other[i]);
    pm_test_stats(&later);
    ck_assert_uint_ge(later.released_bytes_total - freed.released_bytes_total,
                      8 * (PM_POOL_SIZE - PM_ARENA_HEADER_SIZE));
    ck_assert_uint_lt(later.retained_pools, freed.retained_pools);
    /* The dump thread's tick purges the rest. */
    pm_test_sleep_ms(120);
    pm_arena_decay_tick();
    pm_test_stats(&later);
    ck_assert_uint_eq(later.retained_pools, 0);
    ck_assert(pm_heap_validate());
}
END_TEST

/* The retained pools a purge gives back in one call: the UNUSED pools of
 * each arena, in runs between the pools in use, counting the runs that
 * hold pages (retained_purge takes a run's neighbours along, and reaches
 * over the pools without pages). Adds the resident pools to *resident. */
static uint64_t retained_runs(void *const *held, int count, uint64_t *resident)
{
    enum { MAX_ARENAS = 256 };
    static pm_arena_t *seen[MAX_ARENAS];
    int arenas = 0;
    uint64_t runs = 0;
    for (int i = 0; i < count; i++) {
        pm_arena_t *arena = pm_arena_of(held[i]);
        bool known = false;
        for (int a = 0; a < arenas && !known; a++)
            known = seen[a] == arena;
        if (known)
            continue;
        ck_assert_int_lt(arenas, MAX_ARENAS);
        seen[arenas++] = arena;
        bool in_run = false, run_resident = false;
        for (unsigned k = 0; k <= PM_POOLS_PER_ARENA; k++) {
            bool unused = k < PM_POOLS_PER_ARENA && arena->pools[k].class_index == PM_CLASS_NONE;
            if (unused) {
                bool pages = pm_pool_resident(&arena->pools[k]);
                *resident += pages;
                run_resident |= pages;
                in_run = true;
            } else if (in_run) {
                runs += run_resident;
                in_run = run_resident = false;
            }
        }
    }
    return runs;
}

/* I10: retained pools side by side in an arena go back in one madvise
 * call, not one each: ~640 pools freed in the order they were taken, all
 * retained (a large cap), expire together, and the decay purges each run
 * of them in one call, over the pools the ballast holds in between. */
START_TEST(test_release_purges_in_runs)
{
    pm_options.purge_delay_ms = 60000;
    pm_options.retain_pools = 65536;
    pm_options.reserve_arenas = 4096;
    hold_ballast();
    allocate_all();
    free_all();
    pm_stats_t s;
    pm_test_stats(&s);
    uint64_t resident = 0;
    uint64_t runs = retained_runs(blocks, BLOCKS, &resident);
    ck_assert_uint_eq(resident, s.retained_pools);
    ck_assert_uint_gt(resident, 500);
    ck_assert_uint_lt(runs * 8, resident); /* runs of 8 pools or more, on average */
    uint64_t before = pm_arena_retained_purges();
    pm_options.purge_delay_ms = 1;
    pm_test_sleep_ms(10);
    pm_arena_decay_tick();
    ck_assert_uint_eq(pm_arena_retained_purges() - before, runs);
    pm_test_stats(&s);
    ck_assert_uint_eq(s.retained_pools, 0);
    ck_assert(pm_heap_validate());
}
END_TEST

/* I10: the cap purges once the list stands its slack above it, and then
 * down to it, so that pools freed one after another go back in runs: the
 * ~640 pools of free_all, beyond a cap of 64, in a few calls each 16 pools
 * or so, where one call a pool took ~560. */
START_TEST(test_release_cap_purges_in_runs)
{
    pm_options.purge_delay_ms = 60000;
    pm_options.purge_grace_ms = 0; /* the cap at once: its grace has a test of its own */
    pm_options.retain_pools = 64;
    pm_options.reserve_arenas = 4096;
    hold_ballast();
    allocate_all();
    uint64_t before = pm_arena_retained_purges();
    pm_stats_t start, s;
    pm_test_stats(&start);
    free_all();
    pm_test_stats(&s);
    uint64_t purged_pools = (s.released_bytes_total - start.released_bytes_total) / PM_POOL_SIZE;
    uint64_t calls = pm_arena_retained_purges() - before;
    ck_assert_uint_gt(purged_pools, 400);
    ck_assert_uint_lt(calls * 4, purged_pools);
    ck_assert_uint_ge(s.retained_pools, 64);
    ck_assert_uint_le(s.retained_pools, 64 + pm_retain_slack(64));
    ck_assert(pm_heap_validate());
}
END_TEST

/* I10, the cap's grace: a program taking back the pools it released is
 * rebuilding what it freed, so when it frees again the pools above the cap
 * wait, and go once none has been taken back for the grace, though their
 * delay has not run out; with no grace (loop 1) they go at once. The first
 * round is kept whole by a large cap, which then shrinks to 4. */
START_TEST(test_release_cap_waits_while_taken_back)
{
    pm_options.purge_delay_ms = 60000; /* only the cap purges here */
    pm_options.purge_grace_ms = _i == 0 ? 60000 : 0;
    pm_options.retain_pools = pm_options.retain_pools_max = 4096;
    pm_options.reserve_arenas = 4096;
    hold_ballast();
    allocate_all();
    free_all();
    pm_stats_t before, after;
    pm_test_stats(&before);
    uint64_t pools = (uint64_t)BLOCKS * BLOCK_SIZE / PM_POOL_SIZE;
    ck_assert_uint_ge(before.retained_pools + atomic_load(&pm_thread_heap->parked_count),
                      pools - 1);
    pm_options.retain_pools = pm_options.retain_pools_max = 4;
    allocate_all(); /* takes back the pools the first round released */
    free_all();
    pm_test_stats(&after);
    uint64_t kept = 4 + pm_retain_slack(4);
    uint64_t released = after.released_bytes_total - before.released_bytes_total;
    if (_i == 1) {
        ck_assert_uint_ge(released, (pools - 1 - kept) * (PM_POOL_SIZE - PM_ARENA_HEADER_SIZE));
        ck_assert_uint_le(after.retained_pools, kept);
        return;
    }
    ck_assert_uint_eq(released, 0);
    ck_assert_uint_gt(after.retained_pools, kept);
    /* The pools have now waited the grace, but a quarter of them are taken
     * back: the rest wait a grace from then. */
    pm_options.purge_grace_ms = 200;
    pm_test_sleep_ms(300);
    for (int i = 0; i < BLOCKS / 4; i++) {
        blocks[i] = pm_malloc(BLOCK_SIZE);
        ck_assert_ptr_nonnull(blocks[i]);
    }
    pm_stats_t rebuilt;
    pm_test_stats(&rebuilt);
    pm_arena_decay_tick();
    pm_test_stats(&after);
    ck_assert_uint_eq(after.released_bytes_total, rebuilt.released_bytes_total);
    ck_assert_uint_gt(after.retained_pools, kept);
    /* None taken back for the grace: a thread's allocation ticks, a batch
     * at a time, take the list down to the cap, well within the delay. */
    pm_test_sleep_ms(300);
    for (int tick = 0; tick < 200 && after.retained_pools > kept; tick++) {
        pm_arena_decay_if_due(pm_os_coarse_ms());
        pm_test_stats(&after);
    }
    ck_assert_uint_le(after.retained_pools, kept);
    for (int i = 0; i < BLOCKS / 4; i++)
        pm_free(blocks[i]);
    ck_assert(pm_heap_validate());
}
END_TEST

/* I10: a program cycling over more pools than the cap keeps makes the cap
 * grow (the second round's pools come back from purged ones soon after the
 * cap purged them), so the third release purges nothing; up to the most
 * the cap may reach. */
START_TEST(test_release_cap_adapts)
{
    pm_options.purge_delay_ms = 60000; /* only the cap purges here */
    pm_options.purge_grace_ms = 0; /* the cap at once: its grace has a test of its own */
    pm_options.retain_pools = 4;
    pm_options.retain_pools_max = _i == 0 ? 4096 : 16;
    pm_options.reserve_arenas = 4096;
    uint64_t pools = (uint64_t)BLOCKS * BLOCK_SIZE / PM_POOL_SIZE;
    uint64_t purged[2];
    for (int round = 0; round < 2; round++) {
        pm_stats_t before, after;
        allocate_all();
        pm_test_stats(&before);
        free_all();
        pm_test_stats(&after);
        purged[round] = after.released_bytes_total - before.released_bytes_total;
    }
    ck_assert_uint_ge(purged[0], (pools - 1 - 4) * (PM_POOL_SIZE - PM_ARENA_HEADER_SIZE));
    if (_i == 0)
        ck_assert_uint_eq(purged[1], 0);
    else
        ck_assert_uint_ge(purged[1], (pools - 1 - 16) * (PM_POOL_SIZE - PM_ARENA_HEADER_SIZE));
    ck_assert(pm_heap_validate());
}
END_TEST

/* I10: a cap grown by a cycle halves back once it has not grown for 8
 * purge delays, so a burst long past does not keep memory resident. */
START_TEST(test_release_cap_shrinks)
{
    /* A long delay while the cap grows and is tested, however slow the
     * machine (a sanitizer, other load); a short one while it waits. */
    pm_options.purge_delay_ms = 60000;
    pm_options.purge_grace_ms = 0; /* the cap at once: its grace has a test of its own */
    pm_options.retain_pools = 4;
    pm_options.reserve_arenas = 4096;
    pm_stats_t s;
    for (int round = 0; round < 2; round++) { /* the second grows the cap */
        hold_ballast();
        allocate_all();
        free_all();
    }
    pm_test_stats(&s);
    /* What the cap grew to: the pools the last free_all let go, less those
     * that parked (which the cycle taught the heap to keep, heap.c's
     * PARKING IN A ROW), stand within its slack. */
    uint64_t grown = s.retained_pools + atomic_load(&pm_thread_heap->parked_count);
    ck_assert_uint_gt(grown, 100);
    pm_options.purge_delay_ms = 50;
    pm_test_sleep_ms(8 * 50 + 100);
    pm_arena_decay_tick(); /* purges the expired pools; the cap halves */
    pm_options.purge_delay_ms = 60000;
    allocate_all();
    free_all(); /* fresh pools: no evidence of a cycle, the cap stays */
    pm_test_stats(&s);
    ck_assert_uint_le(s.retained_pools, grown / 2 + 1 + pm_retain_slack(grown / 2 + 1));
    ck_assert_uint_gt(s.retained_pools, 4);
}
END_TEST

/* I10: a program that frees and then grows well past what it freed (most
 * of its new pools fresh, as a workload's next phase) is no cycle: the cap
 * stays, and when it frees everything its memory goes back at once. */
START_TEST(test_release_cap_ignores_growth)
{
    static void *more[4 * BLOCKS];
    pm_options.purge_delay_ms = 60000;
    pm_options.purge_grace_ms = 0; /* the cap at once: its grace has a test of its own */
    pm_options.retain_pools = 4;
    pm_options.reserve_arenas = 4096;
    allocate_all();
    free_all(); /* the cap purges all but 4 (and its slack) */
    for (int i = 0; i < 4 * BLOCKS; i++) {
        more[i] = pm_malloc(BLOCK_SIZE);
        ck_assert_ptr_nonnull(more[i]);
    }
    pm_stats_t before, after;
    pm_test_stats(&before);
    for (int i = 0; i < 4 * BLOCKS; i++)
        pm_free(more[i]);
    pm_test_stats(&after);
    uint64_t pools = (uint64_t)4 * BLOCKS * BLOCK_SIZE / PM_POOL_SIZE;
    uint64_t kept = 4 + pm_retain_slack(4);
    ck_assert_uint_ge(after.released_bytes_total - before.released_bytes_total,
                      (pools - 1 - kept) * (PM_POOL_SIZE - PM_ARENA_HEADER_SIZE));
    ck_assert_uint_le(after.retained_pools, kept);
}
END_TEST

/* A program that frees nearly all its pools has collapsed (arena.c's
 * collapse_note): nothing is retained or parked, whatever the delay and the
 * cap. The same drop again within a delay is a round of a cycle: the cap
 * keeps its pools, as before. */
START_TEST(test_release_collapse)
{
    pm_options.purge_delay_ms = 60000;
    pm_options.retain_pools = 4096;
    allocate_all();
    free_all();
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.retained_pools, 0);
    ck_assert_uint_eq(s.classes[pm_class_of(BLOCK_SIZE)].pools, 0); /* not parked */
    ck_assert_uint_le(s.arenas_mapped, pm_options.reserve_arenas);
    ck_assert(pm_heap_validate());
    allocate_all();
    free_all();
    pm_test_stats(&s);
    ck_assert_uint_gt(s.retained_pools, 100);
    ck_assert(pm_heap_validate());
}
END_TEST

/* Rounds of a cycle that each rebuild from a ballast of ~74 pools, then the
 * ballast freed as well: a fall to an eighth of where the rounds rebuilt
 * from is no round but a collapse (collapse_note), and the ~600 pools the
 * cap kept for the rounds go back over the last few releases
 * (release_budget), not after the delay. */
START_TEST(test_release_cycle_over)
{
    pm_options.purge_delay_ms = 60000;
    pm_options.retain_pools = 4096;
    hold_ballast_of(BALLAST * 9 / 16);
    allocate_all();
    free_all(); /* a collapse */
    allocate_all();
    free_all(); /* within the delay: a round */
    pm_stats_t s;
    pm_test_stats(&s);
    /* Kept for the next round: retained, or parked by the heap, which the
     * first round taught to park its pools in a row (heap.c). */
    unsigned parked = atomic_load(&pm_thread_heap->parked_count);
    ck_assert_uint_gt(parked, 1);
    ck_assert_uint_gt(s.retained_pools + parked, 500);
    free_ballast();
    pm_test_stats(&s);
    ck_assert_uint_eq(s.retained_pools, 0);
    ck_assert_uint_eq(atomic_load(&pm_thread_heap->parked_count), 0);
    /* The walk of the heaps that the collapse set off gave back the pools
     * parked in the round, their arenas with them (the last may wait for
     * the next walk, at most one every 10 ms, heap.c). */
    ck_assert_uint_le(s.arenas_mapped, pm_options.reserve_arenas + 1);
    ck_assert(pm_heap_validate());
}
END_TEST

/* With POOLMALLOC_STATS set, the dump thread purges the pools of a process
 * that frees and then makes no call at all: after the purge delay, whether
 * the interval between snapshots is shorter (20 ms) or far longer (1 h);
 * and so does the purge thread, with POOLMALLOC_PURGE_THREAD=1 alone. */
START_TEST(test_release_idle_dump_thread)
{
    if (_i < 2) {
        strcpy(pm_options.stats_path, "/dev/null");
        pm_options.stats_interval_ms = _i == 0 ? 20 : 3600000;
    } else {
        pm_options.purge_thread = 1;
    }
    pm_options.purge_delay_ms = 60000; /* however slow the freeing */
    pm_options.retain_pools = 4096;
    pm_options.reserve_arenas = 4096;
    hold_ballast();
    allocate_all();
    free_all();
    pm_stats_t s;
    pm_stats_get(&s);
    ck_assert_uint_gt(s.retained_pools, 100);
    /* Set before the thread starts, which orders it for the thread. */
    pm_options.purge_delay_ms = 50;
    pm_dump_start();
    /* No allocator call meanwhile (pm_stats_get only reads). A fixed
     * 400 ms was too short under ThreadSanitizer with two more of its
     * tests on the two cores: 236 pools were left. */
    for (int waited_ms = 0; waited_ms < 10000; waited_ms += 50) {
        pm_test_sleep_ms(50);
        pm_stats_get(&s);
        if (s.retained_pools == 0)
            break;
    }
    ck_assert_uint_eq(s.retained_pools, 0);
}
END_TEST

/* I5: with no reserve, an arena that empties is unmapped at once; with a
 * reserve of n, n empty arenas stay. */
START_TEST(test_release_reserve)
{
    /* No purge delay: an empty arena goes as soon as its pools' pages
     * do (I5, I10), which is what this test watches for. */
    pm_options.purge_delay_ms = 0;
    pm_options.reserve_arenas = (uint64_t)_i;
    allocate_all();
    free_all();
    pm_stats_t s;
    pm_test_stats(&s);
    /* The bin's kept pool pins one arena; the rest are the reserve. */
    ck_assert_uint_le(s.arenas_mapped, 1 + (uint64_t)_i);
    ck_assert_uint_ge(s.arenas_destroyed_total, s.arenas_created_total - 1 - (uint64_t)_i);
    ck_assert(pm_heap_validate());
}
END_TEST

START_TEST(test_trim_gives_everything_back)
{
    pm_options.purge_delay_ms = 60000;
    pm_options.retain_pools = 4096;
    hold_ballast();
    allocate_all();
    free_all();
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_gt(s.retained_pools, 100); /* within the delay, all kept */
    ck_assert_int_eq(pm_malloc_trim(0), 1);
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, BALLAST);
    ck_assert_uint_eq(s.retained_pools, 0);
    free_ballast();
    pm_malloc_trim(0);
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
    ck_assert_uint_eq(s.retained_pools, 0);
    ck_assert_uint_eq(s.arenas_mapped, 0);
    ck_assert(pm_heap_validate());
    ck_assert_int_eq(pm_malloc_trim(0), 0); /* nothing left to give */
    /* And the allocator works on afterwards. */
    void *p = pm_malloc(100);
    ck_assert_ptr_nonnull(p);
    pm_free(p);
}
END_TEST

/* malloc_trim gives back the pages of pools in use that hold no live
 * block: SPARSE_BLOCKS blocks of 64 bytes (64 pools), and the first few
 * of each pool kept, so every other page of a full pool holds only free
 * blocks. The blocks of those pages come back when the pools are filled
 * again, and the kept ones keep their contents throughout. With more kept
 * than a pool's first mark (PM_SPARSE_MARK_MAX), no pool becomes sparse,
 * and the pages wait for malloc_trim; with fewer, they go back as the
 * blocks are freed (SPARSE POOLS, heap.c). */
enum { SPARSE_BLOCKS = 16384, SPARSE_SIZE = 64, SPARSE_KEEP_UNMARKED = PM_SPARSE_MARK_MAX + 1 };
_Static_assert(SPARSE_KEEP_UNMARKED * SPARSE_SIZE < PM_OS_PAGE_SIZE, "kept blocks in the first page");
static void *sparse[SPARSE_BLOCKS];

static void sparse_fill(void)
{
    for (int i = 0; i < SPARSE_BLOCKS; i++) {
        sparse[i] = pm_malloc(SPARSE_SIZE);
        ck_assert_ptr_nonnull(sparse[i]);
        memset(sparse[i], 0x5a, SPARSE_SIZE);
    }
}

/* Which blocks a test keeps, by a block's index in its pool and its
 * pool's number (address / PM_POOL_SIZE); `arg` is the test's own. */
typedef bool sparse_keep_fn(unsigned index, uintptr_t pool_number, unsigned arg);

/* Frees, in the order they were allocated, the blocks still held that
 * `keep` does not keep, and marks the kept ones with their index; returns
 * the pools whose first block is kept. */
static unsigned sparse_keep_where(sparse_keep_fn *keep, unsigned arg)
{
    unsigned pools = 0;
    for (int i = 0; i < SPARSE_BLOCKS; i++) {
        if (sparse[i] == NULL)
            continue;
        const char *start = pm_pool_start(pm_pool_of(sparse[i]));
        unsigned index = (unsigned)((size_t)((char *)sparse[i] - start) / SPARSE_SIZE);
        if (keep(index, (uintptr_t)start / PM_POOL_SIZE, arg)) {
            memset(sparse[i], i & 0xff, SPARSE_SIZE);
            pools += index == 0;
        } else {
            pm_free(sparse[i]);
            sparse[i] = NULL;
        }
    }
    return pools;
}

static bool sparse_first(unsigned index, uintptr_t pool_number, unsigned count)
{
    (void)pool_number;
    return index < count;
}

/* All but the first `keep` blocks of each pool freed; returns the pools. */
static unsigned sparse_keep_first(unsigned keep) { return sparse_keep_where(sparse_first, keep); }

static unsigned sparse_fill_keep_first(unsigned keep)
{
    sparse_fill();
    return sparse_keep_first(keep);
}

static void sparse_check_kept(void)
{
    for (int i = 0; i < SPARSE_BLOCKS; i++)
        if (sparse[i] != NULL)
            for (int j = 0; j < SPARSE_SIZE; j++)
                ck_assert_int_eq(((unsigned char *)sparse[i])[j], i & 0xff);
}

/* The blocks freed made again, each marked with its index. */
static void sparse_refill(void)
{
    for (int i = 0; i < SPARSE_BLOCKS; i++) {
        if (sparse[i] == NULL) {
            sparse[i] = pm_malloc(SPARSE_SIZE);
            ck_assert_ptr_nonnull(sparse[i]);
            memset(sparse[i], i & 0xff, SPARSE_SIZE);
        }
    }
}

/* Every block still held has its index in it; then they are all freed. */
static void sparse_check_and_free(void)
{
    ck_assert(pm_heap_validate());
    sparse_check_kept();
    for (int i = 0; i < SPARSE_BLOCKS; i++)
        pm_free(sparse[i]);
    ck_assert(pm_heap_validate());
}

/* Filled again, the pages given back serve before any new pool (`given`:
 * the stats once they were); then everything is freed. */
static void sparse_refill_and_free(const pm_stats_t *given)
{
    sparse_refill();
    pm_stats_t refilled;
    pm_test_stats(&refilled);
    ck_assert_uint_le(refilled.classes[SPARSE_SIZE / 16 - 1].pools,
                      given->classes[SPARSE_SIZE / 16 - 1].pools + 1);
    ck_assert_uint_eq(refilled.small_trimmed_bytes, 0);
    sparse_check_and_free();
}

START_TEST(test_trim_gives_back_free_pages)
{
    pm_options.purge_delay_ms = 60000;
    pm_stats_t before, after;
    uint64_t in_use_purges = pm_arena_in_use_purges();
    unsigned kept = sparse_fill_keep_first(SPARSE_KEEP_UNMARKED);
    ck_assert_uint_ge(kept, SPARSE_BLOCKS * SPARSE_SIZE / PM_POOL_SIZE - 1);
    ck_assert_uint_eq(pm_arena_in_use_purges(), in_use_purges); /* none sparse */
    pm_test_stats(&before);
    ck_assert_int_eq(pm_malloc_trim(0), 1);
    pm_test_stats(&after);
    ck_assert(pm_heap_validate());
    /* Every pool kept gives back all its pages but the first (a pool 0,
     * shortened by its arena's header, one fewer; the last pool may not be
     * carved to its end). */
    uint64_t pages = (after.released_bytes_total - before.released_bytes_total) / PM_OS_PAGE_SIZE;
    ck_assert_uint_ge(pages, (uint64_t)(kept - 2) * 2);
    ck_assert_uint_ge(after.small_trimmed_bytes, (uint64_t)(kept - 2) * 2 * PM_OS_PAGE_SIZE);
    ck_assert_uint_eq(after.small_live_blocks, before.small_live_blocks);
    sparse_check_kept();
    ck_assert_int_eq(pm_malloc_trim(0), 0); /* nothing left to give */
    sparse_refill_and_free(&after);
}
END_TEST

/* And the pages really leave the resident set: after malloc_trim, with
 * more kept than a first mark (`keep`), else as the blocks are freed. The
 * pools hold 1 MiB; all their pages but the first leave (a pool 0 has one
 * fewer, and the last pool may not be carved to its end). */
static void sparse_check_rss_falls(unsigned keep)
{
    pm_options.purge_delay_ms = 60000;
    memset(sparse, 0, sizeof sparse); /* the test's own pages count from the start */
    long start = resident_kib();
    sparse_fill();
    long full_kib = resident_kib();
    unsigned kept = sparse_keep_first(keep);
    if (keep > PM_SPARSE_MARK_MAX)
        ck_assert_int_eq(pm_malloc_trim(0), 1);
    long given_kib = resident_kib();
    ck_assert_msg(full_kib - start > 900, "the blocks should take ~1 MiB (%ld KiB)",
                  full_kib - start);
    ck_assert_msg(full_kib - given_kib >= (long)(kept - 6) * 3 * 4,
                  "RSS %ld KiB -> %ld -> %ld (%u pools)", start, full_kib, given_kib, kept);
    sparse_check_kept();
}

START_TEST(test_trim_free_pages_rss_falls) { sparse_check_rss_falls(SPARSE_KEEP_UNMARKED); }
END_TEST


/* SPARSE POOLS: a heap whose pools are drained to a block each gives back
 * their free pages as it frees, without malloc_trim: the pools sparse when
 * half of them are (the walk), then each at its marks. Everything
 * malloc_trim would give back has gone, and filled again the pages serve
 * before any new pool. */
START_TEST(test_sparse_pools_give_back_pages)
{
    pm_options.purge_delay_ms = 60000;
    pm_stats_t before, after;
    sparse_fill();
    pm_test_stats(&before);
    uint64_t in_use_purges = pm_arena_in_use_purges();
    unsigned kept = sparse_keep_first(1);
    pm_test_stats(&after);
    ck_assert(pm_heap_validate());
    uint64_t pages = (after.released_bytes_total - before.released_bytes_total) / PM_OS_PAGE_SIZE;
    /* 3 pages a pool (a pool 0, 2; the last pool may not be carved to its
     * end), in runs: at most a call a page. */
    ck_assert_uint_ge(pages, (uint64_t)(kept - 6) * 3);
    ck_assert_uint_eq(after.small_trimmed_bytes, pages * PM_OS_PAGE_SIZE);
    uint64_t calls = pm_arena_in_use_purges() - in_use_purges;
    ck_assert_uint_gt(calls, 0);
    ck_assert_uint_le(calls, pages);
    ck_assert_uint_eq(after.small_live_blocks, before.small_live_blocks - (SPARSE_BLOCKS - kept));
    sparse_check_kept();
    in_use_purges = pm_arena_in_use_purges();
    pm_malloc_trim(0);
    ck_assert_uint_eq(pm_arena_in_use_purges(), in_use_purges); /* nothing left in use to give */
    sparse_refill_and_free(&after);
}
END_TEST

/* With a second thread in the process, the sparse purges at marks wait
 * in their heap's batch and go to the kernel together
 * (heap_flush_sparse_purges): the frees done, some still wait. The
 * heap's slow path gives them to the kernel before a pool takes its
 * purged pages back; else the purge, made later (here by malloc_trim),
 * would zero blocks handed out meanwhile. */
START_TEST(test_sparse_purges_wait_in_a_batch)
{
    pm_test_become_multithreaded();
    pm_options.purge_delay_ms = 60000;
    sparse_fill();
    uint64_t in_use_purges = pm_arena_in_use_purges();
    sparse_keep_first(1);
    ck_assert_uint_gt(pm_arena_in_use_purges(), in_use_purges);
    /* Unless the kernel refused the first batch (before Linux 6.13): then
     * each purge is made at once, as with one thread. */
    if (pm_os_purges_vectored())
        ck_assert_uint_gt(pm_thread_heap->sparse_batch.count, 0);
    ck_assert(pm_heap_validate());
    sparse_check_kept();
    /* No tick while the pools fill again (its housekeeping flushes too):
     * the slow path's flush alone must keep what they hand out. */
    pm_thread_heap->tick_countdown = INT64_MAX / 2;
    sparse_refill();
    ck_assert_uint_eq(pm_thread_heap->sparse_batch.count, 0);
    pm_malloc_trim(0);
    sparse_check_and_free();
}
END_TEST

/* The same with blocks of 48 bytes, which do not tile a page: a free block
 * that starts in a pool's first page ends in its second. That page's purge
 * is made at once (pm_pool_purge_free_pages): the block stays on the free
 * list, and handed out and written whole before the batch went to the
 * kernel, it would have lost its end to the flush. And what waits goes at
 * the heap's next tick. */
enum { STRADDLE_SIZE = 48, STRADDLE_BLOCKS = 16384 };
_Static_assert(PM_OS_PAGE_SIZE % STRADDLE_SIZE != 0, "a block reaches into the next page");
static unsigned char *straddle[STRADDLE_BLOCKS];

static void straddle_make(int i)
{
    straddle[i] = pm_malloc(STRADDLE_SIZE);
    ck_assert_ptr_nonnull(straddle[i]);
    for (int j = 0; j < STRADDLE_SIZE; j++)
        straddle[i][j] = (unsigned char)(i + j);
}

static void straddle_check(int i)
{
    for (int j = 0; j < STRADDLE_SIZE; j++)
        ck_assert_int_eq(straddle[i][j], (i + j) & 0xff);
}

START_TEST(test_sparse_purges_wait_not_under_a_free_block)
{
    pm_test_become_multithreaded();
    pm_options.purge_delay_ms = 60000;
    for (int i = 0; i < STRADDLE_BLOCKS; i++)
        straddle_make(i);
    /* Each pool keeps its first block: its other pages have none live. */
    for (int i = 0; i < STRADDLE_BLOCKS; i++) {
        if (straddle[i] != (unsigned char *)pm_pool_start(pm_pool_of(straddle[i]))) {
            pm_free(straddle[i]);
            straddle[i] = NULL;
        }
    }
    /* Some wait (the runs a block starts exactly on), and no byte of them
     * is under a block of a free list: pm_heap_validate checks it (I3). */
    if (pm_os_purges_vectored())
        ck_assert_uint_gt(pm_thread_heap->sparse_batch.count, 0);
    ck_assert(pm_heap_validate());
    /* A tick's bytes of another class, taking no page back and emptying no
     * pool: the heap's tick flushes them. */
    enum { OTHER_SIZE = 256, OTHER_BLOCKS = PM_HEAP_TICK_BYTES / OTHER_SIZE + 64 };
    static void *other[OTHER_BLOCKS];
    for (int i = 0; i < OTHER_BLOCKS; i++)
        ck_assert_ptr_nonnull(other[i] = pm_malloc(OTHER_SIZE));
    ck_assert_uint_eq(pm_thread_heap->sparse_batch.count, 0);
    for (int i = 0; i < OTHER_BLOCKS; i++)
        pm_free(other[i]);
    /* Blocks off the pools' lists, the ones that end in a second page
     * among them, all written whole; then whatever waits goes. */
    for (int i = 0; i < STRADDLE_BLOCKS; i++)
        if (straddle[i] == NULL)
            straddle_make(i);
    pm_malloc_trim(0);
    for (int i = 0; i < STRADDLE_BLOCKS; i++)
        straddle_check(i);
    ck_assert(pm_heap_validate());
    for (int i = 0; i < STRADDLE_BLOCKS; i++)
        pm_free(straddle[i]);
    ck_assert(pm_heap_validate());
}
END_TEST

/* A pool that keeps more blocks than its first mark is not sparse; the
 * sparse ones give back nothing while fewer than half of the heap's pools
 * are, and all at once when the last pool it takes is drained. */
/* A third of the pools keep one block; the others, more than a mark. */
static bool sparse_one_in_third(unsigned index, uintptr_t pool_number, unsigned arg)
{
    (void)arg;
    return index < (pool_number % 3 == 0 ? 1u : SPARSE_KEEP_UNMARKED);
}

START_TEST(test_sparse_waits_for_half)
{
    pm_options.purge_delay_ms = 60000;
    sparse_fill();
    uint64_t in_use_purges = pm_arena_in_use_purges();
    /* A third of the pools (by address) keep one block, the rest more. */
    unsigned pools = sparse_keep_where(sparse_one_in_third, 0);
    unsigned drained = 0;
    for (int i = 0; i < SPARSE_BLOCKS; i++) {
        if (sparse[i] == NULL)
            continue;
        const char *start = pm_pool_start(pm_pool_of(sparse[i]));
        /* Drained to one: its second block not kept. */
        drained += sparse[i] == start && !sparse_one_in_third(1, (uintptr_t)start / PM_POOL_SIZE, 0);
    }
    ck_assert_uint_ge(drained, pools / 4);
    ck_assert_uint_lt(drained * 2, pools - 1);
    ck_assert_uint_eq(pm_arena_in_use_purges(), in_use_purges);
    ck_assert(pm_heap_validate());
    /* Then the others drained to one, one after another: half are sparse
     * before they are all. */
    pm_stats_t before, after;
    pm_test_stats(&before);
    sparse_keep_first(1);
    pm_test_stats(&after);
    ck_assert(pm_heap_validate());
    uint64_t pages = (after.released_bytes_total - before.released_bytes_total) / PM_OS_PAGE_SIZE;
    ck_assert_uint_ge(pages, (uint64_t)(pools - 6) * 3);
    sparse_check_kept();
}
END_TEST

/* Half of the heap's pools sparse, but not 7 in 8: pools draining as
 * blocks die at random ages, which the program fills again a moment later
 * (threads replacing each other's blocks at random: 50,000 purges in 3 s,
 * faulted back in; bench/results/sparse-steady.md). Nothing is given back
 * until a grace has passed; then a tick sweeps the pools sparse since
 * before the wait began, and the next sweep those that came to their
 * marks during it. Two pools in 3 are drained to a block. */
static bool sparse_two_in_third(unsigned index, uintptr_t pool_number, unsigned arg)
{
    (void)arg;
    return index < (pool_number % 3 == 0 ? SPARSE_KEEP_UNMARKED : 1u);
}

/* The pools drained to a block and sparse (the last one, carved only in
 * part, never filled and is not), and of those, the ones that gave back
 * pages. */
static void sparse_count_drained(unsigned *drained, unsigned *purged)
{
    *drained = *purged = 0;
    for (int i = 0; i < SPARSE_BLOCKS; i++) {
        if (sparse[i] == NULL)
            continue;
        pm_pool_t *pool = pm_pool_of(sparse[i]);
        if (sparse[i] != pm_pool_start(pool) || pm_pool_used(pool) != 1 || !pool->sparse)
            continue;
        (*drained)++;
        *purged += pool->purged_pages != 0;
    }
}

START_TEST(test_sparse_half_waits_for_grace)
{
    pm_options.purge_delay_ms = 60000;
    pm_options.purge_grace_ms = 60000;
    sparse_fill();
    uint64_t in_use_purges = pm_arena_in_use_purges();
    unsigned pools = sparse_keep_where(sparse_two_in_third, 0);
    unsigned drained, purged;
    sparse_count_drained(&drained, &purged);
    ck_assert_uint_ge(drained * 2, pools);
    ck_assert_uint_lt(drained * 8, pools * 7);
    pm_heap_set_countdown(pm_thread_heap, INT64_MAX);
    allocate_reusing_one_block(PM_HEAP_TICK_BYTES + REUSED_SIZE); /* within the grace */
    ck_assert_uint_eq(pm_arena_in_use_purges(), in_use_purges);
    pm_options.purge_grace_ms = 0; /* the grace is over */
    allocate_reusing_one_block(PM_HEAP_TICK_BYTES + REUSED_SIZE);
    unsigned first_drained, first_purged;
    sparse_count_drained(&first_drained, &first_purged);
    ck_assert_uint_eq(first_drained, drained); /* a sweep leaves them sparse */
    /* The heap began to wait once half its pools were sparse, about 3 in
     * 4 of the way: the pools drained after that wait for the next sweep. */
    ck_assert_uint_ge(first_purged, drained / 2);
    ck_assert_uint_lt(first_purged, drained);
    allocate_reusing_one_block(PM_HEAP_TICK_BYTES + REUSED_SIZE);
    sparse_count_drained(&drained, &purged);
    ck_assert_uint_eq(purged, drained);
    sparse_check_kept();
    ck_assert(pm_heap_validate());
}
END_TEST

/* A program that frees nearly everything empties most of its pools; the
 * few left, each holding a survivor or two, are nearly all sparse, though
 * far fewer than half of the most the heap held: they give back their
 * free pages too. Here one pool in 3 keeps a block. */
/* The first block of one pool in 3. */
static bool sparse_first_in_third(unsigned index, uintptr_t pool_number, unsigned arg)
{
    (void)arg;
    return index == 0 && pool_number % 3 == 0;
}

START_TEST(test_sparse_survivors_give_back_pages)
{
    pm_options.purge_delay_ms = 60000;
    sparse_fill();
    pm_stats_t before, after;
    pm_test_stats(&before);
    unsigned survivors = sparse_keep_where(sparse_first_in_third, 0);
    pm_test_stats(&after);
    ck_assert(pm_heap_validate());
    ck_assert_uint_ge(survivors, PM_SPARSE_MIN_POOLS);
    ck_assert_uint_ge(after.small_trimmed_bytes, (uint64_t)(survivors - 2) * 3 * PM_OS_PAGE_SIZE);
    sparse_check_kept();
}
END_TEST

/* In a cycle (drops within a delay of each other, which the retained cap
 * serves), sparse pools keep their pages too: the next round fills them
 * again (python_objects.py, 1,450 madvise calls more). */
START_TEST(test_sparse_keeps_pages_in_a_cycle)
{
    pm_options.purge_delay_ms = 60000;
    allocate_all();
    free_all(); /* a collapse */
    allocate_all();
    free_all(); /* within the delay: a round, and a cycle */
    sparse_fill();
    uint64_t in_use_purges = pm_arena_in_use_purges();
    sparse_keep_first(1);
    ck_assert_uint_eq(pm_arena_in_use_purges(), in_use_purges);
    ck_assert(pm_heap_validate());
}
END_TEST

/* A heap whose pools came to their marks while a quiet spell held purging
 * back (its last turn came in vain, heap_note_sparse_ended) turns it at
 * its first tick after the spell, though no pool comes to a mark again:
 * a thread that drained its pools in phases, then goes on with light work
 * (bench/results/allocation-ticks.md, probe h: 339 MiB, 150 with it). */
START_TEST(test_sparse_purging_turns_at_tick)
{
    pm_options.purge_delay_ms = 60000;
    pm_free(pm_malloc(REUSED_SIZE));
    /* A spell no run outlasts, ended by hand below: one of 200 ms ran out
     * during the fill under ThreadSanitizer, and the pools gave back their
     * pages at their marks. */
    pm_thread_heap->sparse_quiet_until_ms = pm_os_coarse_ms() + 60000;
    uint64_t in_use_purges = pm_arena_in_use_purges();
    unsigned pools = sparse_fill_keep_first(1);
    ck_assert_uint_ge(pools, 2 * PM_SPARSE_MIN_POOLS);
    pm_heap_set_countdown(pm_thread_heap, INT64_MAX);
    allocate_reusing_one_block(PM_HEAP_TICK_BYTES + REUSED_SIZE); /* within the spell */
    ck_assert_uint_eq(pm_arena_in_use_purges(), in_use_purges);
    pm_thread_heap->sparse_quiet_until_ms = pm_os_coarse_ms(); /* the spell is over */
    allocate_reusing_one_block(PM_HEAP_TICK_BYTES + REUSED_SIZE);
    ck_assert_uint_ge(pm_arena_in_use_purges() - in_use_purges, pools - 1);
    sparse_check_kept();
    ck_assert(pm_heap_validate());
}
END_TEST

/* A program letting go of everything in the order it built it: its pools
 * are all sparse, a block left in each page, and each page they give back
 * goes with its pool a moment later. Once most pools that gave back pages
 * have emptied (16 or more), the heap stops giving back pages until it is
 * no longer sparse: fewer calls than pools, where each pool would take 3. */
/* The block at the start of each page. */
static bool sparse_first_of_page(unsigned index, uintptr_t pool_number, unsigned arg)
{
    (void)pool_number;
    (void)arg;
    return index * SPARSE_SIZE % PM_OS_PAGE_SIZE == 0;
}

START_TEST(test_sparse_purging_stops_when_spent)
{
    pm_options.purge_delay_ms = 60000;
    sparse_fill();
    unsigned pools = sparse_keep_where(sparse_first_of_page, 0);
    uint64_t in_use_purges = pm_arena_in_use_purges();
    for (int i = 0; i < SPARSE_BLOCKS; i++)
        pm_free(sparse[i]);
    ck_assert(pm_heap_validate());
    ck_assert_uint_ge(pools, 4 * PM_SPARSE_MIN_POOLS);
    ck_assert_uint_gt(pm_arena_in_use_purges() - in_use_purges, 0);
    ck_assert_uint_lt(pm_arena_in_use_purges() - in_use_purges, pools);
}
END_TEST

/* A program that makes a batch of blocks and frees most of it, round after
 * round: the first round's sparse pools give back their pages, the next
 * round takes them back, and from then on, within a purge delay of that,
 * the rounds keep their pages (pm_bench_rounds made 88,200 madvise calls,
 * giving back and faulting in the same pages every round). The kept blocks
 * keep their contents throughout. */
START_TEST(test_sparse_rounds_keep_pages)
{
    pm_options.purge_delay_ms = 60000;
    uint64_t in_use_purges = pm_arena_in_use_purges();
    sparse_fill_keep_first(1);
    ck_assert_uint_gt(pm_arena_in_use_purges(), in_use_purges);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < SPARSE_BLOCKS; i++) {
            if (sparse[i] == NULL) {
                sparse[i] = pm_malloc(SPARSE_SIZE);
                ck_assert_ptr_nonnull(sparse[i]);
            }
        }
        in_use_purges = pm_arena_in_use_purges();
        sparse_keep_first(1);
        ck_assert_msg(pm_arena_in_use_purges() == in_use_purges, "round %d gave back pages",
                      round + 2);
        ck_assert(pm_heap_validate());
        sparse_check_kept();
    }
}
END_TEST

/* A program that drains its pools in phases (pm_bench_drain): the pools
 * whose pages the first phase's turn gave back empty in the next, within a
 * purge delay, and their pages go with them. The heap keeps quiet for a
 * delay: the next phase's sparse pools keep their pages, which the phase
 * after it fills again (drain-8t took 3.3 s with each phase giving back,
 * 0.93 s so). The kept blocks keep their contents. */
START_TEST(test_sparse_emptied_pools_keep_next_phase_quiet)
{
    pm_options.purge_delay_ms = 60000;
    uint64_t in_use_purges = pm_arena_in_use_purges();
    ck_assert_uint_ge(sparse_fill_keep_first(1), 4 * PM_SPARSE_MIN_POOLS);
    ck_assert_uint_gt(pm_arena_in_use_purges(), in_use_purges);
    sparse_check_kept();
    for (int i = 0; i < SPARSE_BLOCKS; i++) {
        pm_free(sparse[i]); /* the survivors: every pool empties */
        sparse[i] = NULL;
    }
    in_use_purges = pm_arena_in_use_purges();
    sparse_fill_keep_first(1); /* the next phase */
    ck_assert_uint_eq(pm_arena_in_use_purges(), in_use_purges);
    sparse_check_kept();
    ck_assert(pm_heap_validate());
}
END_TEST

/* A program that churns a window of objects and then frees it in the order
 * it allocated them drains its pools side by side, each holding blocks of
 * many ages: at the end, the pools draining are half of those left, but
 * not half of the most the heap held within the delay, and each class's
 * last pool, alone in its bin, is not counted; nothing is given back page
 * by page that the pools' emptying gives back a moment later
 * (pm_bench_churn: 120-600 madvise calls more without either rule; here
 * 43 without the peak, 81 without the last pools left out). */
enum { WINDOW = 10000, WINDOW_STEPS = 4000000 };
static void *window[WINDOW];

START_TEST(test_sparse_window_drain_keeps_pages)
{
    pm_options.purge_delay_ms = 60000;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (uint64_t i = 0; i < WINDOW_STEPS; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        void **slot = &window[i % WINDOW];
        pm_free(*slot);
        *slot = pm_malloc(1 + (size_t)(rng >> 33) % PM_SMALL_MAX);
        PM_CHECK_EACH(*slot != NULL, "step %llu", (unsigned long long)i);
    }
    uint64_t in_use_purges = pm_arena_in_use_purges();
    for (uint64_t i = WINDOW_STEPS; i < WINDOW_STEPS + WINDOW; i++)
        pm_free(window[i % WINDOW]);
    ck_assert(pm_heap_validate());
    ck_assert_uint_eq(pm_arena_in_use_purges(), in_use_purges);
}
END_TEST

START_TEST(test_sparse_rss_falls) { sparse_check_rss_falls(1); }
END_TEST

/* The point of it all: resident memory falls back after a free. */
START_TEST(test_release_rss_falls)
{
    static void *many[200000];
    memset(many, 0, sizeof many); /* the test's own pages count from the start */
    long start = resident_kib();
    for (int i = 0; i < 200000; i++) {
        many[i] = pm_malloc(16 + (size_t)(i % 31) * 16);
        memset(many[i], 1, 16);
    }
    long peak = resident_kib();
    for (int i = 0; i < 200000; i++)
        pm_free(many[i]);
    long after = resident_kib();
    ck_assert_msg(peak - start > 20000, "the workload should reach ~50 MB (%ld KiB)", peak - start);
    /* Kept: one pool per class (512 KiB) and, within the delay, the cap's
     * 64 pools (1 MiB); the rest is purged at once. */
    ck_assert_msg(after - start < 2048, "RSS %ld KiB -> peak %ld -> after free %ld", start, peak,
                  after);
    /* Once the delay has run out, the retained pools go too. */
    pm_test_sleep_ms((long)pm_options.purge_delay_ms + 100);
    pm_arena_decay_tick();
    long later = resident_kib();
    ck_assert_msg(later - start < 1024, "RSS %ld KiB -> after the delay %ld", start, later);
}
END_TEST

/* After a collapse RSS is back where it started, within a few pages: not
 * the cap's 1 MiB and a parked pool per class (1.4 MiB over the start
 * before collapse_note). Not under AddressSanitizer, whose runtime held 7
 * MiB more after this test's frees than before, outside the shadow that
 * resident_kib leaves out. */
START_TEST(test_release_collapse_rss_falls)
{
    if (PM_TEST_ASAN)
        return;
    pm_options.purge_delay_ms = 60000;
    memset(blocks, 0xff, sizeof blocks); /* their pages in the start */
    long start = resident_kib();
    allocate_all();
    free_all();
    long after = resident_kib();
    ck_assert_msg(after - start < 256, "RSS %ld KiB -> after free %ld", start, after);
}
END_TEST

/* I4, parked pools: a thread that uses a class, frees everything and goes
 * idle keeps that class's last pool only while the purge delay runs (it
 * used to keep it, up to 16 KiB per class, for as long as it lived). */
static pthread_barrier_t worker_done, worker_resume;
static int worker_blocks; /* how many of BLOCK_SIZE the worker holds at once */

static void *worker_then_idle(void *arg)
{
    (void)arg;
    void *held[64];
    for (int round = 0; round < 100; round++) {
        for (int i = 0; i < worker_blocks; i++) {
            held[i] = pm_malloc(BLOCK_SIZE);
            memset(held[i], 0x5a, BLOCK_SIZE);
        }
        for (int i = 0; i < worker_blocks; i++)
            pm_free(held[i]);
    }
    pthread_barrier_wait(&worker_done);
    pthread_barrier_wait(&worker_resume); /* idle, holding its heap, until told */
    return NULL;
}

static void worker_start(pthread_t *thread, int blocks)
{
    worker_blocks = blocks;
    ck_assert_int_eq(pthread_barrier_init(&worker_done, NULL, 2), 0);
    ck_assert_int_eq(pthread_barrier_init(&worker_resume, NULL, 2), 0);
    ck_assert_int_eq(pthread_create(thread, NULL, worker_then_idle, NULL), 0);
    pthread_barrier_wait(&worker_done);
}

static void worker_finish(pthread_t thread)
{
    pthread_barrier_wait(&worker_resume);
    ck_assert_int_eq(pthread_join(thread, NULL), 0);
    pthread_barrier_destroy(&worker_done);
    pthread_barrier_destroy(&worker_resume);
}

/* The worker holds 40 blocks at a time (10 KiB, three pages of one pool):
 * its pool is parked, and given back by another thread's pool acquire once
 * the delay has run out. One block at a time touches one page: that pool
 * stays with its heap (a pool per class per heap, as before). */
START_TEST(test_release_idle_thread)
{
    const unsigned c = pm_class_of(BLOCK_SIZE);
    const bool spans_pages = _i == 1;
    pm_options.purge_delay_ms = 60000;
    pm_options.retain_pools = 4096;
    pm_options.reserve_arenas = 4096;
    pthread_t worker;
    worker_start(&worker, spans_pages ? 40 : 1);
    pm_stats_t idle, later;
    pm_test_stats(&idle);
    ck_assert_uint_eq(idle.classes[c].pools, 1);
    ck_assert_uint_eq(idle.classes[c].pools_empty, 1);
    ck_assert(pm_heap_validate()); /* I4 holds for a parked pool */
    pm_options.purge_delay_ms = 50;
    pm_test_sleep_ms(120);
    /* This thread's first allocation takes a pool: the parked one, now past
     * the delay, goes back to its arena without its pages. */
    void *mine = pm_malloc(32);
    pm_free(mine);
    pm_test_stats(&later);
    ck_assert_uint_eq(later.classes[c].pools, spans_pages ? 0 : 1);
    if (spans_pages)
        ck_assert_uint_ge(later.released_bytes_total - idle.released_bytes_total,
                          PM_POOL_SIZE - PM_ARENA_HEADER_SIZE);
    ck_assert(pm_heap_validate());
    worker_finish(worker); /* it allocates on, from a new pool */
}
END_TEST

/* I4: a thread that frees its blocks newest first empties the pool it
 * was carving first, which parks, then the full one before it, which is
 * then all its bin has: it goes back to its arena, as the heap has an
 * empty pool of the class parked already (it was kept, and with it 16 KiB
 * for as long as the thread lived). */
START_TEST(test_release_one_empty_pool_per_class)
{
    enum { HELD = 5 * PM_POOL_SIZE / (2 * BLOCK_SIZE) }; /* the last pool half full */
    static void *held[HELD];
    pm_options.purge_delay_ms = 60000;
    const unsigned c = pm_class_of(BLOCK_SIZE);
    for (int i = 0; i < HELD; i++)
        held[i] = pm_malloc(BLOCK_SIZE);
    for (int i = HELD - 1; i >= 0; i--)
        pm_free(held[i]);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].pools, 1);
    ck_assert(pm_heap_validate());
}
END_TEST

/* Threads that each hold three and a half pools' worth of blocks of every
 * class (so that the last is carved past its first page), free everything
 * together and stay alive, idle: each parks its last pool of every class
 * (I4), 8 x 32 pools in all, more than an eighth of the ~1,000 at the
 * peak. Parked pools are empty and the collapse leaves them out
 * (pm_arena_note_parked): the pools collapse, and every parked pool goes
 * back at once, not after the delay. */
enum { IDLE_WORKERS = 8, IDLE_WORKER_BLOCKS = 15000 };
static pthread_barrier_t idle_holding, idle_freed, idle_resume;

static void *idle_worker(void *arg)
{
    void **held = arg;
    int count = 0;
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++) {
        size_t size = (size_t)(c + 1) * PM_CLASS_GRANULE;
        for (size_t i = 0; i < 7 * PM_POOL_SIZE / (2 * size); i++) {
            ck_assert_int_lt(count, IDLE_WORKER_BLOCKS);
            held[count] = pm_malloc(size);
            memset(held[count++], 0x5a, size);
        }
    }
    pthread_barrier_wait(&idle_holding);
    for (int i = 0; i < count; i++)
        pm_free(held[i]);
    pthread_barrier_wait(&idle_freed);
    pthread_barrier_wait(&idle_resume);
    return NULL;
}

START_TEST(test_release_idle_threads_collapse)
{
    static void *held[IDLE_WORKERS][IDLE_WORKER_BLOCKS];
    pm_options.purge_delay_ms = 60000;
    pm_stats_t before, after;
    pm_test_stats(&before);
    ck_assert_int_eq(pthread_barrier_init(&idle_holding, NULL, IDLE_WORKERS), 0);
    ck_assert_int_eq(pthread_barrier_init(&idle_freed, NULL, IDLE_WORKERS + 1), 0);
    ck_assert_int_eq(pthread_barrier_init(&idle_resume, NULL, IDLE_WORKERS + 1), 0);
    pthread_t workers[IDLE_WORKERS];
    for (int w = 0; w < IDLE_WORKERS; w++)
        ck_assert_int_eq(pthread_create(&workers[w], NULL, idle_worker, held[w]), 0);
    pthread_barrier_wait(&idle_freed);
    pm_test_stats(&after);
    uint64_t pools_before = 0, pools_after = 0;
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++) {
        pools_before += before.classes[c].pools;
        pools_after += after.classes[c].pools;
    }
    /* A worker may keep a pool whose blocks all were on its first page,
     * emptied before the collapse (I4's page per class): one, now and
     * then, of the 256. */
    ck_assert_msg(pools_after <= pools_before + IDLE_WORKERS,
                  "%" PRIu64 " pools before the workers, %" PRIu64 " with them idle", pools_before,
                  pools_after);
    ck_assert_uint_eq(after.retained_pools, 0);
    ck_assert(pm_heap_validate());
    pthread_barrier_wait(&idle_resume);
    for (int w = 0; w < IDLE_WORKERS; w++)
        ck_assert_int_eq(pthread_join(workers[w], NULL), 0);
    pthread_barrier_destroy(&idle_holding);
    pthread_barrier_destroy(&idle_freed);
    pthread_barrier_destroy(&idle_resume);
}
END_TEST

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void sleep_until_ms(uint64_t when)
{
    uint64_t now = now_ms();
    if (when > now)
        pm_test_sleep_ms((long)(when - now));
}

/* A pool parked just after the heaps were walked is given back once it has
 * been parked for the delay, not a delay after the next walk: the walk
 * that finds it parked but not yet due comes back when it is. (Walking a
 * delay after each walk kept it up to two delays.) Times in ms from the
 * first walk, with a 300 ms delay: walk at 0, park at ~150, walk at 320
 * (not yet due), due at ~450, checked at ~500. On a slow machine a late
 * step can only give it back sooner. */
START_TEST(test_release_parked_when_due)
{
    const unsigned c = pm_class_of(BLOCK_SIZE);
    pm_options.purge_delay_ms = 300;
    uint64_t start = now_ms();
    pm_heap_release_parked_if_due(pm_thread_heap, pm_os_coarse_ms()); /* the first walk: nothing parked */
    sleep_until_ms(start + 150);
    pthread_t worker;
    worker_start(&worker, 40);
    uint64_t parked = now_ms();
    sleep_until_ms(start + 320);
    pm_heap_release_parked_if_due(pm_thread_heap, pm_os_coarse_ms()); /* due again; the pool is not */
    sleep_until_ms(parked + 300 + 50);
    pm_heap_release_parked_if_due(pm_thread_heap, pm_os_coarse_ms());
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].pools, 0);
    worker_finish(worker);
}
END_TEST

/* ALLOCATION TICKS (heap.c): a thread that only reuses its block takes no
 * pool and gives none back, and without the dump thread nothing else
 * walks the heaps; its tick, once it has allocated its tick's bytes,
 * gives back an idle thread's parked pool past its delay. */
START_TEST(test_release_parked_at_tick)
{
    const unsigned c = pm_class_of(BLOCK_SIZE);
    pm_options.purge_delay_ms = 60000;
    pm_free(pm_malloc(REUSED_SIZE)); /* this thread's heap and pool */
    pthread_t worker;
    worker_start(&worker, 40);
    pm_options.purge_delay_ms = 50;
    pm_test_sleep_ms(120);
    pm_heap_set_countdown(pm_thread_heap, INT64_MAX); /* a whole tick to go */
    allocate_reusing_one_block(pm_thread_heap->tick_bytes - REUSED_SIZE);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].pools, 1); /* due, but nobody looked */
    allocate_reusing_one_block(2 * REUSED_SIZE);
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].pools, 0);
    ck_assert(pm_heap_validate());
    worker_finish(worker);
}
END_TEST

/* And the retained pools past their delay are purged at its ticks too. */
START_TEST(test_release_retained_at_tick)
{
    pm_options.purge_delay_ms = 60000;
    pm_options.retain_pools = 4096; /* the cap out of the way */
    pm_options.reserve_arenas = 4096;
    pm_free(pm_malloc(REUSED_SIZE));
    hold_ballast();
    allocate_all();
    free_all();
    pm_stats_t freed, later;
    pm_test_stats(&freed);
    ck_assert_uint_ge(freed.retained_pools, (uint64_t)BLOCKS * BLOCK_SIZE / PM_POOL_SIZE - 1);
    pm_options.purge_delay_ms = 50;
    pm_test_sleep_ms(120);
    pm_heap_set_countdown(pm_thread_heap, INT64_MAX);
    allocate_reusing_one_block(pm_thread_heap->tick_bytes - REUSED_SIZE);
    pm_test_stats(&later);
    ck_assert_uint_eq(later.retained_pools, freed.retained_pools);
    /* A batch a tick, as a pool taken or given back purges. */
    for (int ticks = 0; ticks < 200 && later.retained_pools > 0; ticks++) {
        uint64_t before = later.retained_pools;
        allocate_reusing_one_block(PM_HEAP_TICK_BYTES + REUSED_SIZE); /* a tick at least */
        pm_test_stats(&later);
        ck_assert_uint_lt(later.retained_pools, before);
    }
    ck_assert_uint_eq(later.retained_pools, 0);
    ck_assert_uint_gt(later.released_bytes_total, freed.released_bytes_total);
    ck_assert(pm_heap_validate());
    free_ballast();
}
END_TEST

/* The owner takes its parked pool back, pages and all, before carving or
 * taking another; and within the delay nobody else takes it. */
START_TEST(test_release_owner_unparks)
{
    const unsigned c = pm_class_of(BLOCK_SIZE);
    pm_options.purge_delay_ms = 60000;
    void *held[40];
    for (int i = 0; i < 40; i++)
        held[i] = pm_malloc(BLOCK_SIZE);
    void *first = held[0];
    for (int i = 0; i < 40; i++)
        pm_free(held[i]);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].pools, 1);
    ck_assert(pm_heap_validate());
    pm_heap_release_parked_if_due(pm_thread_heap, pm_os_coarse_ms()); /* not due: parked within the delay */
    void *again = pm_malloc(BLOCK_SIZE);
    ck_assert_uint_eq(pm_test_arena_base(again), pm_test_arena_base(first));
    ck_assert_uint_eq(pm_test_pool_index(again), pm_test_pool_index(first));
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].pools, 1);
    ck_assert(pm_heap_validate());
    pm_free(again);
}
END_TEST

/* malloc_trim gives back an idle thread's parked pool at once. */
START_TEST(test_trim_takes_parked_pools)
{
    const unsigned c = pm_class_of(BLOCK_SIZE);
    pm_options.purge_delay_ms = 60000;
    pthread_t worker;
    worker_start(&worker, 40);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].pools, 1);
    pm_malloc_trim(0);
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].pools, 0);
    ck_assert(pm_heap_validate());
    worker_finish(worker);
}
END_TEST

/* Blocks of an exited thread, freed by another thread that has a heap of
 * its own (_i == 0): that thread adopts each pool at its first such free
 * (ADOPTION, heap.c) and frees the rest as their owner, so nothing ever
 * waits, and the pools that empty go back. Pools holding a sampled block
 * are not adopted (_i == 1, every block sampled): those blocks are
 * collected a batch at a time (heap.c, ABANDONED_BATCH), some wait in the
 * abandoned heap's ring, never a batch's worth, and the next walk of the
 * heaps takes them, with no purge delay to wait (only the walk's 10 ms).
 * Collecting on every free never left one waiting. */
enum { EXITED_BLOCKS = 200 };
static void *exited_blocks[EXITED_BLOCKS];
static void *allocate_exited(void *arg)
{
    (void)arg;
    for (int i = 0; i < EXITED_BLOCKS; i++)
        exited_blocks[i] = pm_malloc(BLOCK_SIZE);
    return NULL;
}

START_TEST(test_release_exited_thread_blocks)
{
    const unsigned c = pm_class_of(BLOCK_SIZE);
    const bool adopting = _i == 0;
    pm_options.purge_delay_ms = 60000;
    if (!adopting) {
        pm_options.profile = 1;
        pm_options.profile_rate = 1;
        pm_profile_init();
        ck_assert_msg(pm_profile_enabled(), "profiling did not start (libunwind8 missing?)");
        pm_heap_reset_sampling();
    }
    /* A heap of its own first: else this thread's first free would adopt
     * the exited thread's heap, and free as its owner. */
    pm_free(pm_malloc(BLOCK_SIZE));
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, allocate_exited, NULL), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    pm_stats_t s;
    uint64_t most_waiting = 0;
    unsigned freed_as_owner = 0;
    for (int i = 0; i < EXITED_BLOCKS; i++) {
        freed_as_owner += pm_pool_heap(pm_pool_of(exited_blocks[i])) == pm_thread_heap;
        pm_free(exited_blocks[i]);
        pm_test_stats(&s);
        ck_assert_uint_lt(s.classes[c].waiting_blocks, 64);
        if (s.classes[c].waiting_blocks > most_waiting)
            most_waiting = s.classes[c].waiting_blocks;
    }
    if (adopting) {
        /* All but each pool's first (4 pools of 64 blocks at most). */
        ck_assert_uint_ge(freed_as_owner, EXITED_BLOCKS - 5);
        ck_assert_uint_eq(most_waiting, 0);
    } else {
        ck_assert_uint_eq(freed_as_owner, 0);
        ck_assert_uint_gt(most_waiting, 0);
    }
    ck_assert_uint_eq(s.classes[c].live_blocks, 0);
    pm_test_sleep_ms(30);
    pm_heap_release_parked_if_due(pm_thread_heap, pm_os_coarse_ms());
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].waiting_blocks, 0);
    /* This thread's heap keeps its one pool, and the abandoned heap one
     * empty pool for its next thread (I4): the rest went back. */
    ck_assert_uint_le(s.classes[c].pools, 2);
    ck_assert(pm_heap_validate());
}
END_TEST

/* IDLE OWNERS (heap.c): a thread allocates, hands everything to another
 * thread to free, and waits. The blocks wait for it in its ring and stack;
 * malloc_trim (_i == 0), or the walk of the heaps once they have waited a
 * purge delay with no collection (_i == 1: the frees stamp the owner as
 * having blocks waiting, every IDLE_LOOK_FREES), takes them off and gives back
 * the pages only they overlap: those of every pool but the last, still
 * being carved. The owner, woken, takes them back without touching those
 * pages, and allocates from its pools again. */
enum { IDLE_OWNER_BLOCKS = 4000 };
static void *idle_owner_blocks[IDLE_OWNER_BLOCKS];
static pthread_barrier_t idle_owner_made, idle_owner_resume;

/* The calling thread makes the blocks, and so owns them. */
static void idle_owner_make(void)
{
    for (int i = 0; i < IDLE_OWNER_BLOCKS; i++) {
        idle_owner_blocks[i] = pm_malloc(BLOCK_SIZE);
        memset(idle_owner_blocks[i], 0x5a, BLOCK_SIZE);
    }
}

/* The calling thread frees every block (a thread's start routine). */
static void *idle_owner_free_all(void *arg)
{
    (void)arg;
    for (int i = 0; i < IDLE_OWNER_BLOCKS; i++)
        pm_free(idle_owner_blocks[i]);
    return NULL;
}

static void *idle_owner(void *arg)
{
    (void)arg;
    idle_owner_make();
    pthread_barrier_wait(&idle_owner_made);
    pthread_barrier_wait(&idle_owner_resume); /* idle while the blocks are freed */
    /* Its pools again: the first slow path collects the parcels. */
    for (int i = 0; i < IDLE_OWNER_BLOCKS; i++) {
        idle_owner_blocks[i] = pm_malloc(BLOCK_SIZE);
        memset(idle_owner_blocks[i], i & 0xff, BLOCK_SIZE);
    }
    for (int i = 0; i < IDLE_OWNER_BLOCKS; i++) {
        ck_assert_int_eq(((unsigned char *)idle_owner_blocks[i])[BLOCK_SIZE - 1], i & 0xff);
        pm_free(idle_owner_blocks[i]);
    }
    return NULL;
}

/* How many of the blocks' pages are resident (mincore). */
static int idle_owner_resident_pages(void)
{
    int resident = 0;
    for (int i = 0; i < IDLE_OWNER_BLOCKS; i++) {
        unsigned char in_core;
        void *page = (void *)((uintptr_t)idle_owner_blocks[i] & ~(uintptr_t)(PM_OS_PAGE_SIZE - 1));
        ck_assert_int_eq(mincore(page, PM_OS_PAGE_SIZE, &in_core), 0);
        resident += in_core & 1;
    }
    return resident;
}

/* The calling thread takes a heap of its own, starts the owner, and frees
 * every block the owner made: they wait for it. */
static pthread_t idle_owner_start(void)
{
    pm_free(pm_malloc(BLOCK_SIZE));
    pthread_t owner;
    ck_assert_int_eq(pthread_barrier_init(&idle_owner_made, NULL, 2), 0);
    ck_assert_int_eq(pthread_barrier_init(&idle_owner_resume, NULL, 2), 0);
    ck_assert_int_eq(pthread_create(&owner, NULL, idle_owner, NULL), 0);
    pthread_barrier_wait(&idle_owner_made);
    idle_owner_free_all(NULL);
    return owner;
}

/* Waits (10 s at most, making no allocator call) until at most `at_most`
 * of the blocks' pages are resident, and asserts that they are. */
static void idle_owner_await_resident(int at_most)
{
    int resident = idle_owner_resident_pages();
    for (int waited_ms = 0; waited_ms < 10000 && resident > at_most; waited_ms += 50) {
        pm_test_sleep_ms(50);
        resident = idle_owner_resident_pages();
    }
    ck_assert_msg(resident <= at_most, "%d of %d blocks' pages resident", resident,
                  IDLE_OWNER_BLOCKS);
}

/* Every block the owner made waits for it, and the heaps are whole. */
static void idle_owner_assert_waiting(unsigned c)
{
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].waiting_blocks, IDLE_OWNER_BLOCKS);
    ck_assert(pm_heap_validate());
}

/* The stats' metadata but the arena headers, which come and go with the
 * arenas: here, the heaps, the registry and the parcels. */
static uint64_t idle_owner_metadata(const pm_stats_t *s)
{
    return s->metadata_bytes - s->arenas_mapped * PM_ARENA_HEADER_SIZE;
}

/* Wakes the owner, which takes its blocks back and frees them all. */
static void idle_owner_finish(pthread_t owner, unsigned c)
{
    pthread_barrier_wait(&idle_owner_resume);
    ck_assert_int_eq(pthread_join(owner, NULL), 0);
    pthread_barrier_destroy(&idle_owner_made);
    pthread_barrier_destroy(&idle_owner_resume);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].waiting_blocks, 0);
    ck_assert_uint_eq(s.classes[c].live_blocks, 0);
    ck_assert(pm_heap_validate());
}

START_TEST(test_release_idle_owner_blocks)
{
    const unsigned c = pm_class_of(BLOCK_SIZE);
    const bool by_walk = _i == 1;
    pm_options.purge_delay_ms = 60000;
    pthread_t owner = idle_owner_start();
    pm_stats_t s, waiting;
    pm_test_stats(&waiting);
    ck_assert_uint_eq(waiting.classes[c].waiting_blocks, IDLE_OWNER_BLOCKS);
    ck_assert_int_eq(idle_owner_resident_pages(), IDLE_OWNER_BLOCKS);
    if (by_walk) {
        /* The frees stamped the owner as having blocks waiting: a walk
         * within the delay leaves them, one past it takes them. The delay
         * shrinks to pass, rather than being short from the start: under
         * ThreadSanitizer, with other tests beside it, more than a short
         * delay went by before the first walk. */
        pm_test_sleep_ms(20);
        pm_heap_release_parked_if_due(pm_thread_heap, pm_os_coarse_ms());
        ck_assert_int_eq(idle_owner_resident_pages(), IDLE_OWNER_BLOCKS);
        pm_options.purge_delay_ms = 50;
        pm_test_sleep_ms(120);
        pm_heap_release_parked_if_due(pm_thread_heap, pm_os_coarse_ms());
    } else {
        ck_assert_int_eq(pm_malloc_trim(0), 1);
    }
    /* 64 blocks a pool: all but the last pool's pages are given back. */
    int resident = idle_owner_resident_pages();
    ck_assert_msg(resident <= (int)(PM_POOL_SIZE / BLOCK_SIZE), "%d of %d blocks' pages resident",
                  resident, IDLE_OWNER_BLOCKS);
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].waiting_blocks, IDLE_OWNER_BLOCKS);
    /* The stats count those pages as given back while their pools are in use. */
    ck_assert_uint_ge(s.classes[c].trimmed_bytes,
                      (uint64_t)(IDLE_OWNER_BLOCKS / (PM_POOL_SIZE / BLOCK_SIZE) - 2) *
                          (PM_POOL_SIZE - PM_ARENA_HEADER_SIZE));
    ck_assert(pm_heap_validate());
    idle_owner_finish(owner, c);
    /* The stats' metadata counted the parcel the blocks were in (the frees
     * that found the ring full began it): a page for its header, 4 bytes
     * for each block and for each pool's mark of its pages given back; and
     * counts nothing of it once the owner has taken its blocks back. */
    pm_stats_t after;
    pm_test_stats(&after);
    ck_assert_uint_le(idle_owner_metadata(&after), idle_owner_metadata(&waiting));
    uint64_t parcel = idle_owner_metadata(&s) - idle_owner_metadata(&after);
    const uint64_t pools = IDLE_OWNER_BLOCKS / (PM_POOL_SIZE / BLOCK_SIZE) + 2;
    ck_assert_uint_ge(parcel, PM_OS_PAGE_SIZE + IDLE_OWNER_BLOCKS * sizeof(uint32_t));
    ck_assert_uint_le(parcel, PM_OS_PAGE_SIZE + (IDLE_OWNER_BLOCKS + pools) * sizeof(uint32_t));
}
END_TEST

/* Paced ticks (ALLOCATION TICKS, heap.c): a thread whose last tick came 8 s
 * after the one before ticks after far fewer bytes from then on. It freed
 * an idle owner's blocks and goes on making a 16-byte block a millisecond,
 * which would take 16 s to a whole tick: its ticks come all the same, and
 * the walk at one past the delay gives back the pages only the waiting
 * blocks overlap. Allocating fast again, the ticks grow back to the most. */
START_TEST(test_release_idle_owner_at_paced_ticks)
{
    const unsigned c = pm_class_of(BLOCK_SIZE);
    pm_options.purge_delay_ms = 60000;
    pm_free(pm_malloc(REUSED_SIZE));
    pm_heap_t *heap = pm_thread_heap;
    heap->tick_bytes = PM_HEAP_TICK_BYTES;
    heap->tick_ms = pm_os_coarse_ms() - 8000;
    pm_heap_set_countdown(heap, INT64_MAX);
    allocate_reusing_one_block(PM_HEAP_TICK_BYTES + REUSED_SIZE);
    ck_assert_int_le(heap->tick_bytes, PM_HEAP_TICK_MIN_BYTES);
    pthread_t owner = idle_owner_start();
    ck_assert_int_eq(idle_owner_resident_pages(), IDLE_OWNER_BLOCKS);
    pm_options.purge_delay_ms = 50;
    int resident = IDLE_OWNER_BLOCKS;
    for (int ms = 0; ms < 5000 && resident > (int)(PM_POOL_SIZE / BLOCK_SIZE); ms++) {
        pm_free(pm_malloc(16));
        pm_test_sleep_ms(1);
        if (ms % 50 == 49)
            resident = idle_owner_resident_pages();
    }
    ck_assert_msg(resident <= (int)(PM_POOL_SIZE / BLOCK_SIZE), "%d of %d blocks' pages resident",
                  resident, IDLE_OWNER_BLOCKS);
    allocate_reusing_one_block((int64_t)4 << 20);
    ck_assert_int_eq(heap->tick_bytes, PM_HEAP_TICK_BYTES);
    idle_owner_finish(owner, c);
}
END_TEST

/* The idle owner is the thread that started the dump thread (the main
 * thread, as a rule): another thread frees everything it made, and it
 * waits, making no call. The dump thread (the purge thread here), which
 * shares its thread pointer and so its pm_thread_heap, must relieve that
 * heap all the same: it took it for its own, and left the pages resident
 * (main made 64 MiB that a worker freed: 77 MiB kept, 5 MiB now). */
START_TEST(test_release_idle_owner_that_started_dump_thread)
{
    const unsigned c = pm_class_of(BLOCK_SIZE);
    /* Long while the worker frees (a walk of its, past a short delay, would
     * relieve the owner before the dump thread starts: under
     * ThreadSanitizer the frees took longer than 50 ms), short once the
     * dump thread ticks. */
    pm_options.purge_delay_ms = 60000;
    pm_options.purge_thread = 1;
    idle_owner_make();
    pthread_t freer;
    ck_assert_int_eq(pthread_create(&freer, NULL, idle_owner_free_all, NULL), 0);
    ck_assert_int_eq(pthread_join(freer, NULL), 0);
    ck_assert_int_eq(idle_owner_resident_pages(), IDLE_OWNER_BLOCKS);
    pm_options.purge_delay_ms = 50;
    pm_dump_start();
    /* 64 blocks a pool: all but the last pool's pages go. */
    idle_owner_await_resident((int)(PM_POOL_SIZE / BLOCK_SIZE));
    /* Its pools again: it takes the blocks back from the parcels. */
    for (int i = 0; i < IDLE_OWNER_BLOCKS; i++)
        idle_owner_blocks[i] = pm_malloc(BLOCK_SIZE);
    for (int i = 0; i < IDLE_OWNER_BLOCKS; i++)
        pm_free(idle_owner_blocks[i]);
    pm_stats_t s;
    pm_stats_get(&s);
    ck_assert_uint_eq(s.classes[c].waiting_blocks, 0);
    ck_assert_uint_eq(s.classes[c].live_blocks, 0);
}
END_TEST

/* The dump thread shares the thread pointer of the thread that made it
 * (clone, allocator/dump.c), and so must never touch thread-local state:
 * here the thread that starts it has its stack, and in it its thread
 * control block and TLS, unmapped once it has exited, so that any such
 * access faults. Meanwhile the dump thread walks the heaps, relieves an
 * idle owner, purges, and writes snapshots (_i == 0; _i == 3 with the
 * sites of sampled allocations), or fails to open their file and says so
 * (_i == 2). */
static void *start_dump_thread(void *arg)
{
    (void)arg;
    pm_dump_start();
    return NULL;
}

START_TEST(test_dump_thread_outlives_its_maker)
{
    const unsigned c = pm_class_of(BLOCK_SIZE);
    pm_options.purge_delay_ms = 20;
    if (_i == 1) {
        pm_options.purge_thread = 1;
    } else {
        strcpy(pm_options.stats_path, _i == 2 ? "/nonexistent/dir/stats" : "/dev/null");
        pm_options.stats_interval_ms = 20;
    }
    /* Sites to name: about 16 of the owner's blocks are sampled, and 5 of
     * these 8, which are glibc's. */
    void *sampled[8] = {0};
    const int resident_at_most = (int)(PM_POOL_SIZE / BLOCK_SIZE);
    if (_i == 3) {
        pm_options.profile = 1;
        pm_options.profile_rate = 65536;
        pm_profile_init();
        ck_assert_msg(pm_profile_enabled(), "profiling did not start (libunwind8 missing?)");
        pm_heap_reset_sampling();
        for (int i = 0; i < 8; i++)
            sampled[i] = pm_malloc(65536);
    }
    pthread_t owner = idle_owner_start();
    const size_t stack_bytes = (size_t)1 << 20;
    void *stack = mmap(NULL, stack_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(stack, MAP_FAILED);
    pthread_attr_t attr;
    pthread_t maker;
    ck_assert_int_eq(pthread_attr_init(&attr), 0);
    ck_assert_int_eq(pthread_attr_setstack(&attr, stack, stack_bytes), 0);
    ck_assert_int_eq(pthread_create(&maker, &attr, start_dump_thread, NULL), 0);
    ck_assert_int_eq(pthread_join(maker, NULL), 0);
    pthread_attr_destroy(&attr);
    ck_assert_int_eq(munmap(stack, stack_bytes), 0);
    idle_owner_await_resident(resident_at_most);
    pm_test_sleep_ms(200); /* ten more ticks, and snapshots */
    idle_owner_finish(owner, c);
    for (int i = 0; i < 8; i++)
        pm_free(sampled[i]);
}
END_TEST

/* A ring that fills while its owner is idle spills into the owner's
 * newest parcel (remote_ring_spill): the blocks freed past its slots wait
 * as addresses, none linked on the overflow stack, in as few parcels as
 * hold them; and the owner, woken, takes them all back. */
START_TEST(test_remote_ring_spills_into_parcels)
{
    _Static_assert(IDLE_OWNER_BLOCKS > 2 * PM_REMOTE_RING, "the ring fills more than twice");
    const unsigned c = pm_class_of(BLOCK_SIZE);
    pm_options.purge_delay_ms = 60000; /* no walk takes them meanwhile */
    pthread_t owner = idle_owner_start();
    pm_heap_t *heap = pm_pool_heap(pm_pool_of(idle_owner_blocks[0]));
    ck_assert_ptr_null(atomic_load(&heap->remote_free));
    const pm_heap_parcel_t *parcel = atomic_load(&heap->parcels);
    ck_assert_ptr_nonnull(parcel);
    ck_assert_ptr_null(parcel->next);
    ck_assert_uint_ge(parcel->blocks, IDLE_OWNER_BLOCKS - PM_REMOTE_RING);
    idle_owner_assert_waiting(c);
    idle_owner_finish(owner, c);
}
END_TEST

/* SPARE PARCELS (heap.c): an owner that takes back a spilled ring keeps
 * the parcel, and the next spill fills it again rather than mapping one
 * (on more threads than CPUs, a mmap and a munmap each). A parcel that
 * held more than its first 8 pages, 8 rings here, is not kept; nor is a
 * spare once its thread exits. */
enum { SPILL_ROUNDS = 4, SPILL_MOST = 8 * PM_REMOTE_RING + 1 };
static const int spill_frees[SPILL_ROUNDS] = {PM_REMOTE_RING + 1, PM_REMOTE_RING + 1, SPILL_MOST,
                                              PM_REMOTE_RING + 1};
static void *spill_blocks[SPILL_MOST];
static pthread_barrier_t spill_step;

static void *spill_owner(void *arg)
{
    (void)arg;
    for (int round = 0; round < SPILL_ROUNDS; round++) {
        for (int i = 0; i < spill_frees[round]; i++)
            spill_blocks[i] = pm_malloc(BLOCK_SIZE);
        pthread_barrier_wait(&spill_step); /* made */
        pthread_barrier_wait(&spill_step); /* freed by the other thread */
        pm_malloc_trim(0);                 /* takes them back, parcel and all */
        pthread_barrier_wait(&spill_step); /* taken back */
        pthread_barrier_wait(&spill_step); /* seen: the other thread reads its heap */
    }
    return NULL;
}

START_TEST(test_remote_spill_reuses_spare_parcel)
{
    pm_options.purge_delay_ms = 60000; /* no walk takes them meanwhile */
    pm_free(pm_malloc(BLOCK_SIZE));
    pthread_t owner;
    ck_assert_int_eq(pthread_barrier_init(&spill_step, NULL, 2), 0);
    ck_assert_int_eq(pthread_create(&owner, NULL, spill_owner, NULL), 0);
    pm_heap_parcel_t *spare = NULL;
    pm_heap_t *heap = NULL; /* the owner's */
    for (int round = 0; round < SPILL_ROUNDS; round++) {
        pthread_barrier_wait(&spill_step);
        if (round == 0)
            heap = pm_pool_heap(pm_pool_of(spill_blocks[0]));
        for (int i = 0; i < spill_frees[round]; i++)
            pm_free(spill_blocks[i]); /* a spill a full ring, the last block in the ring */
        pm_heap_parcel_t *parcel = atomic_load(&heap->parcels);
        ck_assert_ptr_nonnull(parcel);
        ck_assert_ptr_null(parcel->next);
        ck_assert_uint_eq(parcel->blocks, (unsigned)(spill_frees[round] - 1));
        if (round == 1 || round == 2) /* the spare, filled again */
            ck_assert_ptr_eq(parcel, spare);
        ck_assert_ptr_null(atomic_load(&heap->spare_parcel));
        ck_assert(pm_heap_validate());
        pthread_barrier_wait(&spill_step);
        pthread_barrier_wait(&spill_step);
        ck_assert_ptr_null(atomic_load(&heap->parcels));
        spare = atomic_load(&heap->spare_parcel);
        ck_assert_msg(spare == (round != 2 ? parcel : NULL), "round %d: spare %p, parcel %p", round,
                      (void *)spare, (void *)parcel);
        ck_assert(pm_heap_validate());
        pthread_barrier_wait(&spill_step);
    }
    ck_assert_int_eq(pthread_join(owner, NULL), 0);
    ck_assert_ptr_null(atomic_load(&heap->spare_parcel));
    ck_assert(pm_heap_validate());
    pthread_barrier_destroy(&spill_step);
}
END_TEST

/* The same under RLIMIT_AS, where no arena space is reserved and every
 * arena is mapped on its own: a parcel names a block by its place in the
 * space, so these blocks stay waiting for the owner, which takes them back
 * intact. Before, malloc_trim and the walk made parcels of them anyway, and
 * died reading pools at the addresses those entries named
 * (pm_bench_handoff idle_ms=1500 under `ulimit -v`: a SIGSEGV). */
START_TEST(test_release_idle_owner_outside_space)
{
    /* Finite, yet above any sanitizer's reservations. */
    struct rlimit limit = {RLIM_INFINITY - 1, RLIM_INFINITY - 1};
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &limit), 0);
    const unsigned c = pm_class_of(BLOCK_SIZE);
    pm_options.purge_delay_ms = 60000;
    pthread_t owner = idle_owner_start();
    ck_assert(pm_arenas_outside_space);
    pm_malloc_trim(0);
    idle_owner_assert_waiting(c);
    idle_owner_finish(owner, c);
}
END_TEST

/* A thread that exits leaves its heap's kept pools (I4) with their pages
 * for a purge delay: the next thread adopts the heap and allocates from
 * them without a fault or a madvise (a program whose threads come and go,
 * larson-like, spent most of its system time purging them at every exit
 * and faulting them in again at every start). Once the delay has run out
 * with nobody adopting, the walk of the heaps gives them back. */
static void *exited_first; /* the first block the exiting thread made */

static void *use_and_exit(void *arg)
{
    (void)arg;
    void *held[40]; /* three pages of one pool: it parks when emptied */
    for (int i = 0; i < 40; i++)
        held[i] = pm_malloc(BLOCK_SIZE);
    exited_first = held[0];
    for (int i = 0; i < 40; i++)
        pm_free(held[i]);
    pm_free(pm_malloc(32)); /* a kept pool of another class, one page */
    return NULL;
}

static void *adopt_and_exit(void *arg)
{
    void *again = pm_malloc(BLOCK_SIZE);
    *(bool *)arg = pm_test_arena_base(again) == pm_test_arena_base(exited_first) &&
                   pm_test_pool_index(again) == pm_test_pool_index(exited_first);
    pm_free(again);
    return NULL;
}

START_TEST(test_release_exited_thread_keeps_pools)
{
    const unsigned c = pm_class_of(BLOCK_SIZE);
    pm_options.purge_delay_ms = 300;
    pm_stats_t before, kept, later;
    pm_test_stats(&before);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, use_and_exit, NULL), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    bool same_pool = false;
    ck_assert_int_eq(pthread_create(&t, NULL, adopt_and_exit, &same_pool), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_msg(same_pool, "the adopting thread should allocate from the parked pool");
    pm_heap_release_parked_if_due(pm_thread_heap, pm_os_coarse_ms()); /* within the delay: nothing due */
    pm_test_stats(&kept);
    ck_assert_uint_eq(kept.released_bytes_total, before.released_bytes_total);
    ck_assert_uint_eq(kept.classes[c].pools, 1);
    ck_assert_uint_eq(kept.classes[pm_class_of(32)].pools, 1);
    ck_assert(pm_heap_validate());
    pm_test_sleep_ms(350);
    pm_heap_release_parked_if_due(pm_thread_heap, pm_os_coarse_ms());
    pm_test_stats(&later);
    ck_assert_uint_eq(later.classes[c].pools, 0);
    /* The parked pool's three pages and the kept one's page. */
    ck_assert_uint_ge(later.released_bytes_total - kept.released_bytes_total,
                      4 * PM_OS_PAGE_SIZE);
    ck_assert(pm_heap_validate());
}
END_TEST

/* A thread that drained its pools at random, held back from giving their
 * free pages back by itself (a quiet spell), and exited: once its heap has
 * waited a purge delay for a thread to adopt it, those pages go back with
 * its kept pools, and the blocks left keep their contents. */
static void *drain_sparse_and_exit(void *arg)
{
    pm_free(pm_malloc(REUSED_SIZE)); /* its heap */
    pm_thread_heap->sparse_quiet_until_ms = pm_os_coarse_ms() + 60000;
    *(unsigned *)arg = sparse_fill_keep_first(1);
    return NULL;
}

START_TEST(test_release_exited_thread_pages)
{
    pm_options.purge_delay_ms = 300;
    uint64_t in_use_purges = pm_arena_in_use_purges();
    unsigned pools = 0;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, drain_sparse_and_exit, &pools), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_uint_ge(pools, 2 * PM_SPARSE_MIN_POOLS);
    pm_heap_release_parked_if_due(pm_thread_heap, pm_os_coarse_ms()); /* within the delay: kept for an adopter */
    ck_assert_uint_eq(pm_arena_in_use_purges(), in_use_purges);
    pm_test_sleep_ms(350);
    pm_heap_release_parked_if_due(pm_thread_heap, pm_os_coarse_ms());
    ck_assert_uint_ge(pm_arena_in_use_purges() - in_use_purges, pools - 1);
    sparse_check_and_free();
}
END_TEST

/* The glibc path (allocator/system.c): glibc's malloc_trim is called once
 * the glibc path's live bytes have stayed halved for the purge delay, at
 * once when they collapse to an eighth, and not while they hold steady or
 * come back within the delay. The core is linked
 * directly here, so malloc_trim is glibc's; this counts the calls. */
static int glibc_trims;
static int counting_glibc_trim(size_t pad)
{
    glibc_trims++;
    return malloc_trim(pad);
}

enum { GLIBC_BLOCKS = 4096, GLIBC_BLOCK_SIZE = 8000 }; /* 32 MiB, in glibc's heap */
static void *glibc_blocks[GLIBC_BLOCKS];

static void glibc_allocate(int from, int to)
{
    for (int i = from; i < to; i++)
        memset(glibc_blocks[i] = pm_malloc(GLIBC_BLOCK_SIZE), 1, GLIBC_BLOCK_SIZE);
}

static void glibc_free(int from, int to)
{
    for (int i = from; i < to; i++)
        pm_free(glibc_blocks[i]);
}

/* 32 MiB freed under a live block glibc cannot trim past. With no purge
 * delay: a handful of trims (one per halving, down to the last MiB), and
 * the memory is back; glibc alone keeps it (no trim function handed over). */
START_TEST(test_release_glibc_heap_on_fall)
{
    pm_options.purge_delay_ms = 0;
    pm_system_set_trim(_i == 0 ? counting_glibc_trim : NULL);
    glibc_allocate(0, GLIBC_BLOCKS);
    void *pin = pm_malloc(GLIBC_BLOCK_SIZE);
    long peak = resident_kib();
    glibc_free(0, GLIBC_BLOCKS - 40);
    long after = resident_kib();
    if (_i == 0) {
        ck_assert_int_ge(glibc_trims, 3);
        ck_assert_int_le(glibc_trims, 8);
        ck_assert_msg(peak - after > 28 * 1024, "RSS %ld KiB at the peak, %ld after", peak, after);
    } else {
        ck_assert_msg(peak - after < 4 * 1024, "RSS %ld KiB at the peak, %ld after", peak, after);
    }
    glibc_free(GLIBC_BLOCKS - 40, GLIBC_BLOCKS);
    pm_free(pin);
}
END_TEST

/* With a purge delay, a fall to half (not to an eighth) waits for it: no
 * trim at the fall, one at the first pool taken after the delay. */
START_TEST(test_release_glibc_heap_after_delay)
{
    pm_options.purge_delay_ms = 60000; /* however slow the freeing */
    pm_system_set_trim(counting_glibc_trim);
    glibc_allocate(0, GLIBC_BLOCKS);
    void *pin = pm_malloc(GLIBC_BLOCK_SIZE);
    glibc_free(0, GLIBC_BLOCKS * 6 / 10);
    ck_assert_int_eq(glibc_trims, 0);
    pm_options.purge_delay_ms = 50;
    pm_test_sleep_ms(120);
    /* Small blocks of a class this test has not used: a pool is taken. */
    void *small = pm_malloc(432);
    ck_assert_int_eq(glibc_trims, 1);
    pm_free(small);
    glibc_free(GLIBC_BLOCKS * 6 / 10, GLIBC_BLOCKS);
    pm_free(pin);
}
END_TEST

/* A collapse (nearly every large block freed) is trimmed at once, however
 * long the delay: the program let go of its large blocks, it is not
 * cycling through them. */
START_TEST(test_release_glibc_heap_collapse)
{
    pm_options.purge_delay_ms = 60000;
    pm_system_set_trim(counting_glibc_trim);
    glibc_allocate(0, GLIBC_BLOCKS);
    void *pin = pm_malloc(GLIBC_BLOCK_SIZE);
    long peak = resident_kib();
    glibc_free(0, GLIBC_BLOCKS);
    long after = resident_kib();
    /* One at an eighth of 32 MiB, maybe one more at an eighth of that. */
    ck_assert_int_ge(glibc_trims, 1);
    ck_assert_int_le(glibc_trims, 2);
    ck_assert_msg(peak - after > 28 * 1024, "RSS %ld KiB at the peak, %ld after", peak, after);
    pm_free(pin);
}
END_TEST

/* Blocks replaced one for one at a steady 32 MiB live: no trim. Then all
 * dropped and built again within the delay, round after round: the first
 * collapse is trimmed at once, and its coming back marks a cycle, so no
 * later round is (each would cost a trim and the page faults after it). */
START_TEST(test_release_glibc_heap_steady)
{
    pm_options.purge_delay_ms = 60000;
    pm_system_set_trim(counting_glibc_trim);
    pm_test_rng_t rng;
    pm_test_rng_seed(&rng, 7);
    glibc_allocate(0, GLIBC_BLOCKS);
    for (int n = 0; n < 20 * GLIBC_BLOCKS; n++) {
        size_t i = pm_test_rng_range(&rng, 0, GLIBC_BLOCKS - 1);
        pm_free(glibc_blocks[i]);
        glibc_blocks[i] = pm_malloc(pm_test_rng_range(&rng, 513, 2 * GLIBC_BLOCK_SIZE));
    }
    ck_assert_int_eq(glibc_trims, 0);
    glibc_free(0, GLIBC_BLOCKS);
    glibc_allocate(0, GLIBC_BLOCKS);
    int first_round = glibc_trims;
    ck_assert_int_ge(first_round, 1);
    for (int round = 0; round < 4; round++) {
        glibc_free(0, GLIBC_BLOCKS);
        glibc_allocate(0, GLIBC_BLOCKS);
    }
    ck_assert_int_eq(glibc_trims, first_round);
    /* The delay runs out after the last round grew back: nothing is due
     * when a pool is next taken. */
    pm_options.purge_delay_ms = 50;
    pm_test_sleep_ms(120);
    void *small = pm_malloc(432);
    ck_assert_int_eq(glibc_trims, first_round);
    pm_free(small);
    glibc_free(0, GLIBC_BLOCKS);
}
END_TEST

/* Rounds of a cycle that each keep the first 400 blocks (3.2 MiB): the
 * first collapse is trimmed and marks the cycle, the second round is not
 * trimmed; then the 400 go too, a fall to an eighth of what the rounds
 * kept: the cycle is over, and that fall is trimmed at once. */
START_TEST(test_release_glibc_heap_cycle_over)
{
    enum { KEPT = 400 };
    pm_options.purge_delay_ms = 60000;
    pm_system_set_trim(counting_glibc_trim);
    glibc_allocate(0, GLIBC_BLOCKS);
    void *pin = pm_malloc(GLIBC_BLOCK_SIZE);
    glibc_free(KEPT, GLIBC_BLOCKS);
    glibc_allocate(KEPT, GLIBC_BLOCKS);
    int first_round = glibc_trims;
    ck_assert_int_ge(first_round, 1);
    glibc_free(KEPT, GLIBC_BLOCKS);
    ck_assert_int_eq(glibc_trims, first_round);
    glibc_free(0, KEPT);
    ck_assert_int_eq(glibc_trims, first_round + 1);
    pm_free(pin);
}
END_TEST

/* malloc's fast path on the glibc path leaves its heap's unsettled bytes
 * to the heap's next tick (system.c): under large mallocs alone they stay
 * within two steps, and a tick that a small malloc makes settles them, as
 * one a large malloc makes does. */
START_TEST(test_release_glibc_settles_at_ticks)
{
    pm_free(pm_malloc(16)); /* the thread's heap */
    pm_heap_t *heap = pm_thread_heap;
    int64_t most = 0;
    for (int i = 0; i < GLIBC_BLOCKS; i++) {
        glibc_blocks[i] = pm_malloc(GLIBC_BLOCK_SIZE);
        if (heap->system_unsettled > most)
            most = heap->system_unsettled;
    }
    ck_assert_int_le(most, 2 * PM_SYSTEM_SETTLE_BYTES);
    glibc_free(0, GLIBC_BLOCKS);
    /* A step unsettled, up from what the frees left, with no tick since
     * (a tick would have settled it): the countdown is put out of reach
     * first, as a tick of 256 KiB and a step of as many can otherwise meet
     * at one malloc every time (blocks of 8,200 usable bytes, 32 of them). */
    heap->tick_countdown = 4 * PM_SYSTEM_SETTLE_BYTES;
    int i = 0;
    while (heap->system_unsettled < PM_SYSTEM_SETTLE_BYTES) {
        ck_assert_int_lt(i, GLIBC_BLOCKS);
        glibc_blocks[i++] = pm_malloc(GLIBC_BLOCK_SIZE);
    }
    /* Small blocks until the heap ticks: its countdown goes up. */
    enum { SMALL = 4096 };
    static void *small[SMALL];
    int n = 0;
    for (int64_t before = heap->tick_countdown; heap->tick_countdown <= before; n++) {
        ck_assert_int_lt(n, SMALL);
        before = heap->tick_countdown;
        small[n] = pm_malloc(256);
    }
    ck_assert_int_eq(heap->system_unsettled, 0);
    for (int k = 0; k < n; k++)
        pm_free(small[k]);
    glibc_free(0, i);
}
END_TEST

/* A request larger than a tick counts towards it as 16 KiB (system.c,
 * SYSTEM_TICK_CHARGE_MAX): malloc(300000) and its free, over and over,
 * tick every sixteenth pair once the ticks have grown to their length, and
 * between ticks a malloc and its free cancel out in the heap's unsettled
 * bytes, which neither settles (each did, and every malloc ticked: 724
 * instructions a pair, glibc alone 307). */
START_TEST(test_release_glibc_large_pairs_settle_nothing)
{
    enum { LARGE = 300000, PAIRS = 64 };
    pm_free(pm_malloc(16)); /* the thread's heap */
    pm_free(pm_malloc(LARGE)); /* glibc's mmap threshold, raised past it */
    pm_heap_t *heap = pm_thread_heap;
    int ticks = 0;
    for (int i = 0; i < PAIRS; i++) {
        int64_t unsettled = heap->system_unsettled;
        int64_t countdown = heap->tick_countdown;
        void *p = pm_malloc(LARGE);
        if (heap->tick_countdown > countdown) { /* it ticked, and settled */
            ticks++;
            pm_free(p);
            continue;
        }
        ck_assert_int_eq(heap->system_unsettled, unsettled + (int64_t)pm_malloc_usable_size(p));
        pm_free(p);
        ck_assert_int_eq(heap->system_unsettled, unsettled);
    }
    /* The first ticks of a new heap are short (PM_HEAP_TICK_MIN_BYTES,
     * doubling): 6 at most, then one in sixteen pairs. */
    ck_assert_int_le(ticks, 6 + PAIRS / 16 + 1);
}
END_TEST

/* A range one thread gives back to the kernel and another maps again. The
 * kernel orders the two, and a sanitizer must know it too: TSan once
 * reported a new heap slab's first write as racing with a read of the freed
 * block whose range the slab took (stress_pm in CI), because the core's
 * raw system calls passed its mmap and munmap interceptors by. Loop 0
 * gives the range back with pm_os_unmap (an empty arena), loop 1 through
 * glibc (a large block, which glibc maps by itself; a fixed threshold
 * keeps glibc from serving the next ones from its heap). In a build without
 * TSan this checks only that the range comes back zeroed and writable.
 * The thread that gives the range back makes no Check assertion: each one
 * takes a lock of Check's, which would order the two threads for TSan. */
enum { REUSED_BYTES = 1 << 20 };
/* What glibc maps for a block of REUSED_BYTES: the same hole fits both. */
#define REUSED_MAPPING (REUSED_BYTES + PM_OS_PAGE_SIZE)
/* Ranges held at most while looking for the hole: 64 MiB of addresses,
 * never touched but the last. */
enum { REUSE_HOLD_MAX = 64 };
static char *_Atomic given_back;

static void *give_range_back(void *arg)
{
    bool through_glibc = arg != NULL;
    char *range = through_glibc ? pm_malloc(REUSED_BYTES) : pm_os_map(REUSED_MAPPING);
    if (range == NULL)
        return NULL;
    memset(range, 0x5a, REUSED_BYTES);
    bool written = range[REUSED_BYTES - 1] == 0x5a; /* a read for TSan to remember */
    if (through_glibc)
        pm_free(range);
    else
        pm_os_unmap(range, REUSED_MAPPING);
    /* Relaxed: nothing but the kernel orders this thread before the next. */
    atomic_store_explicit(&given_back, range, memory_order_relaxed);
    return written ? range : NULL;
}

START_TEST(test_release_range_mapped_again)
{
    if (_i == 1)
        ck_assert_int_eq(pm_mallopt(M_MMAP_THRESHOLD, 128 << 10), 1);
    int same_address = 0;
    for (int attempt = 0; attempt < 8; attempt++) {
        atomic_store_explicit(&given_back, NULL, memory_order_relaxed);
        pthread_t thread;
        ck_assert_int_eq(
            pthread_create(&thread, NULL, give_range_back, _i == 1 ? (void *)1 : NULL), 0);
        char *old;
        while ((old = atomic_load_explicit(&given_back, memory_order_relaxed)) == NULL)
            sched_yield();
        /* The kernel hands out the highest hole that fits, so a hole the
         * runtime left above this one (ASan's, CI's unit_release once: no
         * reuse in 8 tries) comes first: map and hold until a range lands
         * on the hole. */
        char *held[REUSE_HOLD_MAX];
        int nheld = 0;
        bool reused = false;
        while (!reused && nheld < REUSE_HOLD_MAX) {
            char *range = pm_os_map(REUSED_MAPPING);
            if (range == NULL)
                break;
            held[nheld++] = range;
            reused = old < range + REUSED_MAPPING && range < old + REUSED_BYTES;
        }
        ck_assert_int_gt(nheld, 0);
        char *range = held[nheld - 1];
        bool zeroed = true;
        for (size_t i = 0; zeroed && i < REUSED_MAPPING; i += PM_OS_PAGE_SIZE) {
            zeroed = range[i] == 0;
            range[i] = 1;
        }
        void *thread_result;
        ck_assert_int_eq(pthread_join(thread, &thread_result), 0);
        ck_assert_ptr_eq(thread_result, old);
        ck_assert(zeroed);
        same_address += reused;
        while (nheld > 0)
            pm_os_unmap(held[--nheld], REUSED_MAPPING);
    }
    /* The kernel hands the hole just made out again: else nothing was tested. */
    ck_assert_int_gt(same_address, 0);
}
END_TEST

Suite *make_release_suite(void)
{
    Suite *s = suite_create("release");
    TCase *tc = tcase_create("release");
    tcase_add_test(tc, test_release_purges_above_cap);
    tcase_add_test(tc, test_release_counts_resident_pages);
    tcase_add_test(tc, test_release_delay_zero);
    tcase_add_test(tc, test_release_after_delay);
    tcase_add_test(tc, test_release_purges_in_runs);
    tcase_add_test(tc, test_release_cap_purges_in_runs);
    tcase_add_loop_test(tc, test_release_cap_waits_while_taken_back, 0, 2);
    tcase_add_loop_test(tc, test_release_cap_adapts, 0, 2);
    tcase_add_test(tc, test_release_cap_ignores_growth);
    tcase_add_test(tc, test_release_cap_shrinks);
    tcase_add_test(tc, test_release_collapse);
    tcase_add_test(tc, test_release_cycle_over);
    tcase_add_loop_test(tc, test_release_idle_dump_thread, 0, 3);
    tcase_add_loop_test(tc, test_release_reserve, 0, 3);
    tcase_add_test(tc, test_trim_gives_everything_back);
    tcase_add_test(tc, test_trim_gives_back_free_pages);
    tcase_add_test(tc, test_sparse_pools_give_back_pages);
    tcase_add_test(tc, test_sparse_purges_wait_in_a_batch);
    tcase_add_test(tc, test_sparse_purges_wait_not_under_a_free_block);
    tcase_add_test(tc, test_sparse_waits_for_half);
    tcase_add_test(tc, test_sparse_half_waits_for_grace);
    tcase_add_test(tc, test_sparse_survivors_give_back_pages);
    tcase_add_test(tc, test_sparse_keeps_pages_in_a_cycle);
    tcase_add_test(tc, test_sparse_purging_turns_at_tick);
    tcase_add_test(tc, test_sparse_purging_stops_when_spent);
    tcase_add_test(tc, test_sparse_rounds_keep_pages);
    tcase_add_test(tc, test_sparse_emptied_pools_keep_next_phase_quiet);
    tcase_add_test(tc, test_sparse_window_drain_keeps_pages);
    tcase_add_loop_test(tc, test_release_idle_thread, 0, 2);
    tcase_add_test(tc, test_release_one_empty_pool_per_class);
    tcase_add_test(tc, test_release_idle_threads_collapse);
    tcase_add_test(tc, test_release_owner_unparks);
    tcase_add_test(tc, test_release_parked_when_due);
    tcase_add_test(tc, test_release_parked_at_tick);
    tcase_add_test(tc, test_release_retained_at_tick);
    tcase_add_test(tc, test_trim_takes_parked_pools);
    tcase_add_loop_test(tc, test_release_exited_thread_blocks, 0, 2);
    tcase_add_loop_test(tc, test_release_idle_owner_blocks, 0, 2);
    tcase_add_test(tc, test_release_idle_owner_at_paced_ticks);
    tcase_add_test(tc, test_release_idle_owner_that_started_dump_thread);
    tcase_add_loop_test(tc, test_dump_thread_outlives_its_maker, 0, 4);
    tcase_add_test(tc, test_release_idle_owner_outside_space);
    tcase_add_test(tc, test_remote_ring_spills_into_parcels);
    tcase_add_test(tc, test_remote_spill_reuses_spare_parcel);
    tcase_add_test(tc, test_release_exited_thread_keeps_pools);
    tcase_add_test(tc, test_release_exited_thread_pages);
    tcase_add_test(tc, test_release_glibc_heap_steady);
    tcase_add_test(tc, test_release_glibc_heap_cycle_over);
    tcase_add_test(tc, test_release_glibc_heap_after_delay);
    tcase_add_test(tc, test_release_glibc_settles_at_ticks);
    tcase_add_test(tc, test_release_glibc_large_pairs_settle_nothing);
    tcase_add_loop_test(tc, test_release_range_mapped_again, 0, 2);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    /* Tagged: under ThreadSanitizer its shadow pages stay resident. */
    TCase *rss = tcase_create("rss");
    tcase_set_tags(rss, "rss");
    tcase_add_test(rss, test_release_rss_falls);
    tcase_add_test(rss, test_release_collapse_rss_falls);
    tcase_add_test(rss, test_trim_free_pages_rss_falls);
    tcase_add_test(rss, test_sparse_rss_falls);
    tcase_add_loop_test(rss, test_release_glibc_heap_on_fall, 0, 2);
    tcase_add_test(rss, test_release_glibc_heap_collapse);
    suite_add_tcase(s, rss);
    return s;
}
