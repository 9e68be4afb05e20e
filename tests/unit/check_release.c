/* check_release.c — giving memory back (I5, I10): released pools beyond the
 * retained ring are purged, empty arenas beyond the reserve are unmapped,
 * malloc_trim gives back everything, and RSS really falls. */
#include <check.h>
#include <stdio.h>
#include <string.h>

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

static long resident_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%ld %ld", &size, &resident), 2);
    fclose(f);
    return resident * 4;
}

/* 40000 x 256 bytes is ~640 pools; freeing them all keeps at most the
 * retained ring resident, and everything beyond it is counted as purged
 * (arenas stay mapped here, so none of it is unmapped instead). */
START_TEST(test_release_purges_beyond_ring)
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
    /* Every pool but the bin's kept one and 4 retained ones was purged
     * (counting every pool as a short pool 0, to stay a lower bound). */
    uint64_t pools = (uint64_t)BLOCKS * BLOCK_SIZE / PM_POOL_SIZE;
    ck_assert_uint_ge(purged, (pools - 1 - 4) * (PM_POOL_SIZE - PM_ARENA_HEADER_SIZE));
    ck_assert_uint_eq(after.small_live_blocks, before.small_live_blocks);
}
END_TEST

/* No retained ring: every released pool is purged at once. */
START_TEST(test_release_ring_off)
{
    pm_options.retain_pools = 0;
    pm_options.reserve_arenas = 8; /* keep arenas mapped so purging shows */
    pm_stats_t before, after;
    pm_test_stats(&before);
    allocate_all();
    free_all();
    pm_test_stats(&after);
    uint64_t pools = (uint64_t)BLOCKS * BLOCK_SIZE / PM_POOL_SIZE;
    ck_assert_uint_ge(after.released_bytes_total - before.released_bytes_total,
                      (pools - 1 - 8 * PM_POOLS_PER_ARENA) * (PM_POOL_SIZE - PM_ARENA_HEADER_SIZE));
    ck_assert_uint_le(after.arenas_mapped, 8 + 1);
    ck_assert(pm_heap_validate());
}
END_TEST

/* I5: with no reserve, an arena that empties is unmapped at once; with a
 * reserve of n, n empty arenas stay. */
START_TEST(test_release_reserve)
{
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
    allocate_all();
    free_all();
    ck_assert_int_eq(pm_malloc_trim(0), 1);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
    ck_assert_uint_eq(s.arenas_mapped, 0);
    ck_assert(pm_heap_validate());
    ck_assert_int_eq(pm_malloc_trim(0), 0); /* nothing left to give */
    /* And the allocator works on afterwards. */
    void *p = pm_malloc(100);
    ck_assert_ptr_nonnull(p);
    pm_free(p);
}
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
    /* Kept: one pool per class (512 KiB), the ring (256 KiB), slack. */
    ck_assert_msg(after - start < 2048, "RSS %ld KiB -> peak %ld -> after free %ld", start, peak,
                  after);
}
END_TEST

Suite *make_release_suite(void)
{
    Suite *s = suite_create("release");
    TCase *tc = tcase_create("release");
    tcase_add_test(tc, test_release_purges_beyond_ring);
    tcase_add_test(tc, test_release_ring_off);
    tcase_add_loop_test(tc, test_release_reserve, 0, 3);
    tcase_add_test(tc, test_trim_gives_everything_back);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    /* Tagged: under ThreadSanitizer its shadow pages stay resident. */
    TCase *rss = tcase_create("rss");
    tcase_set_tags(rss, "rss");
    tcase_add_test(rss, test_release_rss_falls);
    suite_add_tcase(s, rss);
    return s;
}
