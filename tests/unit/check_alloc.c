/* check_alloc.c — pm_malloc, pm_free, pm_calloc, pm_reallocarray and
 * pm_mallopt against glibc's contract: zero-size requests, NULL, overflow
 * and ENOMEM, errno left alone by free, calloc zeroing reused memory, and
 * small-versus-glibc routing visible in the stats. */
#include "support.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

START_TEST(test_malloc_zero_unique)
{
    enum { N = 1000 };
    static void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = pm_malloc(0);
        ck_assert_ptr_nonnull(p[i]);
        ck_assert(pm_owns(p[i])); /* 0 bytes count as 1: class 0 */
        ck_assert_uint_eq(pm_malloc_usable_size(p[i]), PM_CLASS_GRANULE);
        memset(p[i], 0x5a, PM_CLASS_GRANULE);
    }
    qsort(p, N, sizeof p[0], pm_test_ptr_cmp);
    for (int i = 1; i < N; i++)
        ck_assert_ptr_ne(p[i], p[i - 1]);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[0].live_blocks, N);
    for (int i = 0; i < N; i++)
        pm_free(p[i]);
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
}
END_TEST

START_TEST(test_free_null)
{
    pm_stats_t before, after;
    pm_test_stats(&before);
    errno = 0;
    for (int i = 0; i < 10; i++)
        pm_free(NULL);
    ck_assert_int_eq(errno, 0);
    pm_test_stats(&after);
    ck_assert_uint_eq(after.small_allocated_total, before.small_allocated_total);
    ck_assert_uint_eq(after.small_live_blocks, before.small_live_blocks);
}
END_TEST

/* Requests above PM_SMALL_MAX go to glibc and leave the pool stats alone;
 * pm_free takes back glibc's own pointers too. */
START_TEST(test_large_routing)
{
    static const size_t sizes[] = {PM_SMALL_MAX + 1, 1000, 4096, 100000,
                                   (size_t)1 << 20, (size_t)8 << 20};
    pm_stats_t before, after;
    pm_test_stats(&before);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = pm_malloc(sizes[i]);
        ck_assert_ptr_nonnull(p);
        ck_assert(!pm_owns(p));
        ck_assert_uint_eq((uintptr_t)p % PM_CLASS_GRANULE, 0);
        p[0] = 1;
        p[sizes[i] - 1] = 2;
        pm_free(p);
    }
    void *g = __libc_malloc(100);
    ck_assert_ptr_nonnull(g);
    pm_free(g);
    g = __libc_malloc(10000);
    ck_assert_ptr_nonnull(g);
    ck_assert_uint_ge(pm_malloc_usable_size(g), 10000);
    pm_free(g);
    pm_test_stats(&after);
    ck_assert_uint_eq(after.small_allocated_total, before.small_allocated_total);
    ck_assert_uint_eq(after.small_live_blocks, before.small_live_blocks);
    ck_assert_uint_eq(after.arenas_created_total, before.arenas_created_total);
}
END_TEST

START_TEST(test_small_routing_counts)
{
    pm_stats_t before, after;
    pm_test_stats(&before);
    void *p[PM_SMALL_MAX + 1];
    for (size_t n = 0; n <= PM_SMALL_MAX; n++) {
        p[n] = pm_malloc(n);
        ck_assert_ptr_nonnull(p[n]);
    }
    pm_test_stats(&after);
    ck_assert_uint_eq(after.small_allocated_total - before.small_allocated_total,
                      PM_SMALL_MAX + 1);
    /* 0..16 -> class 0 (17 requests); every other class gets 16. */
    ck_assert_uint_eq(after.classes[0].live_blocks, 17);
    for (int c = 1; c < PM_CLASS_COUNT; c++)
        ck_assert_uint_eq(after.classes[c].live_blocks, 16);
    for (size_t n = 0; n <= PM_SMALL_MAX; n++)
        pm_free(p[n]);
    pm_test_stats(&after);
    ck_assert_uint_eq(after.small_live_blocks, 0);
}
END_TEST

static const size_t calloc_sizes[] = {1,   8,   15,  16,  17,   31,   32,   33,
                                      100, 255, 256, 257, 511,  512,  513,  1024,
                                      4000, 4096, 65536, 200000, (size_t)1 << 20};
#define CALLOC_SIZE_COUNT ((int)(sizeof calloc_sizes / sizeof calloc_sizes[0]))

/* calloc zeroes memory that was dirtied and freed before, not just fresh
 * pages: a small block off a free list still holds the list's next pointer. */
START_TEST(test_calloc_zeroes_reused)
{
    const size_t n = calloc_sizes[_i];
    const int small = pm_size_class(n) >= 0;
    /* An anchor keeps a small block's pool in use, so the freed block is
     * on the pool's free list and calloc must get it back (I4). */
    void *anchor = small ? pm_malloc(n) : NULL;
    unsigned char *p = pm_malloc(n);
    ck_assert_ptr_nonnull(p);
    size_t usable = pm_malloc_usable_size(p);
    memset(p, 0xff, usable);
    pm_free(p);
    unsigned char *q = pm_calloc(1, n);
    ck_assert_ptr_nonnull(q);
    if (small)
        ck_assert_ptr_eq(q, p); /* the test really saw reused memory */
    ck_assert_msg(pm_test_all_zero(q, n), "calloc(1, %zu) not zeroed", n);
    memset(q, 0xee, n);
    pm_free(q);
    /* The other way round of the product, and a split one. */
    q = pm_calloc(n, 1);
    ck_assert_ptr_nonnull(q);
    ck_assert_msg(pm_test_all_zero(q, n), "calloc(%zu, 1) not zeroed", n);
    memset(q, 0xdd, n);
    pm_free(q);
    if (n % 4 == 0) {
        q = pm_calloc(n / 4, 4);
        ck_assert_ptr_nonnull(q);
        ck_assert(pm_test_all_zero(q, n));
        pm_free(q);
    }
    pm_free(anchor);
}
END_TEST

/* A pool released and taken again, possibly for another class, holds old
 * data: calloc must not assume carved memory is fresh from mmap. */
START_TEST(test_calloc_zeroes_recycled_pool)
{
    enum { N = 4000 }; /* 64-byte blocks: 250 KiB, most of an arena */
    static void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = pm_malloc(64);
        ck_assert_ptr_nonnull(p[i]);
        memset(p[i], 0xff, 64);
    }
    for (int i = 0; i < N; i++)
        pm_free(p[i]);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.arenas_mapped, 1); /* the reserve: the same memory */
    for (int round = 0; round < 2; round++) {
        size_t size = round == 0 ? 48 : 64; /* another class, then the same */
        for (int i = 0; i < N; i++) {
            p[i] = pm_calloc(1, size);
            ck_assert_ptr_nonnull(p[i]);
            ck_assert_msg(pm_test_all_zero(p[i], size), "calloc(1, %zu) #%d dirty",
                          size, i);
        }
        for (int i = 0; i < N; i++) {
            memset(p[i], 0xff, size);
            pm_free(p[i]);
        }
    }
}
END_TEST

START_TEST(test_calloc_zero_count)
{
    void *a = pm_calloc(0, 16);
    void *b = pm_calloc(16, 0);
    void *c = pm_calloc(0, 0);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_ne(a, b);
    ck_assert_ptr_ne(b, c);
    ck_assert_ptr_ne(a, c);
    pm_free(a);
    pm_free(b);
    pm_free(c);
}
END_TEST

static const struct {
    size_t count, size;
} calloc_overflow[] = {
    {SIZE_MAX / 2 + 1, 3},
    {3, SIZE_MAX / 2 + 1},
    {SIZE_MAX, SIZE_MAX},
    {SIZE_MAX, 2},
    {(size_t)1 << 32, (size_t)1 << 32},
    {((size_t)1 << 32) + 1, ((size_t)1 << 32) - 1},
    {SIZE_MAX / 16 + 1, 16},
};

START_TEST(test_calloc_overflow)
{
    errno = 0;
    void *p = pm_calloc(calloc_overflow[_i].count, calloc_overflow[_i].size);
    ck_assert_ptr_null(p);
    ck_assert_int_eq(errno, ENOMEM);
}
END_TEST

START_TEST(test_malloc_huge)
{
    static const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4096,
                                   SIZE_MAX / 2 + 1, (size_t)PTRDIFF_MAX + 1};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        errno = 0;
        void *p = pm_malloc(sizes[i]);
        ck_assert_msg(p == NULL, "pm_malloc(%zu) = %p", sizes[i], p);
        ck_assert_int_eq(errno, ENOMEM);
    }
    errno = 0;
    ck_assert_ptr_null(pm_calloc(1, SIZE_MAX));
    ck_assert_int_eq(errno, ENOMEM);
}
END_TEST

/* free() never changes errno, whatever path it takes: small, glibc, NULL,
 * the last block of a pool, the last block of an arena (munmap). */
START_TEST(test_free_preserves_errno)
{
    /* No purge delay: an empty arena goes as soon as its pools' pages
     * do (I5, I10), which is what this test watches for. */
    pm_options.purge_delay_ms = 0;
    enum { N = 1200 }; /* 512-byte blocks: more than two arenas */
    static void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = pm_malloc(PM_SMALL_MAX);
        ck_assert_ptr_nonnull(p[i]);
    }
    void *large = pm_malloc(100000);
    void *glibc = __libc_malloc(64);
    ck_assert_ptr_nonnull(large);
    ck_assert_ptr_nonnull(glibc);

    errno = 12345;
    pm_free(NULL);
    ck_assert_int_eq(errno, 12345);
    pm_free(large);
    ck_assert_int_eq(errno, 12345);
    pm_free(glibc);
    ck_assert_int_eq(errno, 12345);
    for (int i = 0; i < N; i++) {
        errno = 12345 + i;
        pm_free(p[i]);
        ck_assert_int_eq(errno, 12345 + i);
    }
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_ge(s.arenas_destroyed_total, 1); /* the munmap path ran */
}
END_TEST

START_TEST(test_reallocarray)
{
    unsigned char *p = pm_reallocarray(NULL, 4, 8);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_ge(pm_malloc_usable_size(p), 32);
    pm_test_pattern_fill(p, 32, 7);
    p = pm_reallocarray(p, 10, 100); /* 1000 bytes: to glibc */
    ck_assert_ptr_nonnull(p);
    ck_assert(pm_test_pattern_ok(p, 32, 7));
    ck_assert_uint_ge(pm_malloc_usable_size(p), 1000);
    p[999] = 1;
    pm_free(p);
}
END_TEST

/* Overflow of count x size: NULL, ENOMEM, and the old block untouched. */
START_TEST(test_reallocarray_overflow)
{
    static const size_t sizes[] = {64, PM_SMALL_MAX, 4096};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        unsigned char *p = pm_malloc(n);
        ck_assert_ptr_nonnull(p);
        size_t usable = pm_malloc_usable_size(p);
        pm_test_pattern_fill(p, n, n);
        errno = 0;
        ck_assert_ptr_null(pm_reallocarray(p, SIZE_MAX / 2 + 1, 3));
        ck_assert_int_eq(errno, ENOMEM);
        errno = 0;
        ck_assert_ptr_null(pm_reallocarray(p, (size_t)1 << 32, (size_t)1 << 32));
        ck_assert_int_eq(errno, ENOMEM);
        ck_assert(pm_test_pattern_ok(p, n, n));
        ck_assert_uint_eq(pm_malloc_usable_size(p), usable);
        if (pm_owns(p)) {
            pm_stats_t s;
            pm_test_stats(&s);
            ck_assert_uint_eq(s.small_live_blocks, 1);
        }
        pm_free(p);
    }
}
END_TEST

/* Passed on to glibc, whose blocks (above 512 bytes) it governs: an 8 MiB
 * request is mmap'd (its chunk's IS_MMAPPED bit) under glibc's defaults,
 * and comes from glibc's heap once M_MMAP_MAX is 0. The first block stays
 * live meanwhile: freeing it would raise glibc's dynamic mmap threshold,
 * and the second would come from the heap without any mallopt. The test
 * runs in its own process (CK_FORK), so the setting dies with it. */
START_TEST(test_mallopt_reaches_glibc)
{
    enum { LARGE = 8 << 20 };
    const size_t is_mmapped = 0x2;
    void *before = pm_malloc(LARGE);
    ck_assert_ptr_nonnull(before);
    ck_assert_uint_eq(((size_t *)before)[-1] & is_mmapped, is_mmapped);
    ck_assert_int_eq(pm_mallopt(M_MMAP_MAX, 0), 1);
    void *after = pm_malloc(LARGE);
    ck_assert_ptr_nonnull(after);
    ck_assert_uint_eq(((size_t *)after)[-1] & is_mmapped, 0);
    pm_free(after);
    pm_free(before);
    void *p = pm_malloc(100);
    ck_assert(pm_owns(p));
    pm_free(p);
}
END_TEST

/* glibc mmap'd the block (its chunk's IS_MMAPPED bit). */
static bool glibc_mmapped(const void *block)
{
    return (((const size_t *)block)[-1] & 0x2) != 0;
}

/* The top of glibc's heap, after `count` blocks of 40 KiB (640 KiB for
 * 16) allocated there and freed in reverse, which leaves that much free at
 * the top: glibc's own trim gives it back past 128 KiB, and waits for
 * 1 MiB once poolmalloc trims glibc's heap itself. The blocks are past the
 * chunk cache's classes, so that every free reaches glibc. */
static intptr_t heap_top_after_freeing_top_blocks(unsigned count)
{
    enum { MAX = 16, BLOCK = 40 << 10 };
    void *blocks[MAX];
    ck_assert_uint_le(count, MAX);
    for (unsigned i = 0; i < count; i++) {
        blocks[i] = pm_malloc(BLOCK);
        ck_assert_ptr_nonnull(blocks[i]);
        ck_assert(!pm_owns(blocks[i]));
    }
    intptr_t top = (intptr_t)sbrk(0);
    for (unsigned i = count; i-- > 0;)
        pm_free(blocks[i]);
    return top - (intptr_t)sbrk(0); /* how much glibc gave back */
}

/* Once poolmalloc trims glibc's heap itself (pm_system_set_trim), glibc's
 * own trim of its top waits for 1 MiB, and its dynamic mmap threshold is
 * kept for it: a 1 MiB block freed after being mmap'd makes the next one
 * come from the heap, as under glibc alone. A program's own mallopt of a
 * threshold ends that: a 2 MiB block freed then does not raise it. */
START_TEST(test_glibc_tuned_under_pools)
{
    pm_system_set_trim(malloc_trim);
    pm_system_tune_glibc();
    ck_assert_int_eq(heap_top_after_freeing_top_blocks(16), 0);

    void *mapped = pm_malloc(1 << 20);
    ck_assert(glibc_mmapped(mapped));
    pm_free(mapped);
    void *heap = pm_malloc(1 << 20);
    ck_assert(!glibc_mmapped(heap));
    pm_free(heap);

    ck_assert_int_eq(pm_mallopt(M_TRIM_THRESHOLD, 128 << 10), 1);
    mapped = pm_malloc(2 << 20);
    ck_assert(glibc_mmapped(mapped));
    pm_free(mapped);
    mapped = pm_malloc(2 << 20);
    ck_assert(glibc_mmapped(mapped));
    pm_free(mapped);
}
END_TEST

/* glibc is left as it is when the program's environment tunes it
 * (MALLOC_TOP_PAD_ here), or under POOLMALLOC_TRIM_GLIBC=0: its own trim
 * gives back the free top past 128 KiB. */
START_TEST(test_glibc_left_alone)
{
    pm_system_set_trim(malloc_trim);
    if (_i == 0)
        setenv("MALLOC_TOP_PAD_", "0", 1);
    else
        pm_options.trim_glibc = 0;
    pm_system_tune_glibc();
    ck_assert_int_gt(heap_top_after_freeing_top_blocks(16), 0);
}
END_TEST

Suite *make_alloc_suite(void)
{
    Suite *s = suite_create("alloc");
    TCase *tc = tcase_create("malloc_free");
    tcase_add_test(tc, test_malloc_zero_unique);
    tcase_add_test(tc, test_free_null);
    tcase_add_test(tc, test_large_routing);
    tcase_add_test(tc, test_small_routing_counts);
    tcase_add_test(tc, test_malloc_huge);
    tcase_add_test(tc, test_free_preserves_errno);
    tcase_add_test(tc, test_mallopt_reaches_glibc);
    tcase_add_test(tc, test_glibc_tuned_under_pools);
    tcase_add_loop_test(tc, test_glibc_left_alone, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("calloc");
    tcase_add_loop_test(tc, test_calloc_zeroes_reused, 0, CALLOC_SIZE_COUNT);
    tcase_add_test(tc, test_calloc_zeroes_recycled_pool);
    tcase_add_test(tc, test_calloc_zero_count);
    tcase_add_loop_test(tc, test_calloc_overflow, 0,
                        (int)(sizeof calloc_overflow / sizeof calloc_overflow[0]));
    suite_add_tcase(s, tc);

    tc = tcase_create("reallocarray");
    tcase_add_test(tc, test_reallocarray);
    tcase_add_test(tc, test_reallocarray_overflow);
    suite_add_tcase(s, tc);
    return s;
}
