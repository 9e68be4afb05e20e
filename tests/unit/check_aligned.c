/* check_aligned.c — pm_posix_memalign, pm_aligned_alloc, pm_memalign,
 * pm_valloc, pm_pvalloc and pm_malloc_usable_size: argument checking,
 * alignment of every power of two up to 64 KiB, routing (alignments up to
 * PM_POOL_ALIGN_MAX with small sizes come from pools, per internal.h). */
#include "support.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static const size_t aligned_sizes[] = {1, 16, 100, 512, 513, 4096};
#define ALIGNED_SIZE_COUNT (sizeof aligned_sizes / sizeof aligned_sizes[0])

/* _i -> 8 << _i: 8, 16, ..., 64 KiB */
#define ALIGN_STEPS 14

static void check_aligned_block(void *p, size_t alignment, size_t size, const char *fn)
{
    ck_assert_msg(p != NULL, "%s(%zu, %zu) failed", fn, alignment, size);
    ck_assert_msg((uintptr_t)p % alignment == 0, "%s(%zu, %zu) = %p misaligned", fn,
                  alignment, size, p);
    ck_assert_uint_ge(pm_malloc_usable_size(p), size);
    memset(p, 0xc3, size);
    /* Small sizes with a pool-sized alignment are served from pools. */
    int want_pool = size <= PM_SMALL_MAX && alignment <= PM_POOL_ALIGN_MAX;
    ck_assert_msg((pm_owns(p) != 0) == want_pool, "%s(%zu, %zu): pm_owns = %d", fn,
                  alignment, size, pm_owns(p));
}

START_TEST(test_posix_memalign_invalid)
{
    static const size_t bad[] = {0,  1,  2,  3,   4,    5,    6,        7,       12,
                                 24, 40, 48, 96, 1000, 4097, 3 << 20, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *out = (void *)(uintptr_t)0x1234;
        int rc = pm_posix_memalign(&out, bad[i], 64);
        ck_assert_msg(rc == EINVAL, "posix_memalign(alignment %zu) = %d", bad[i], rc);
        ck_assert_msg(out == (void *)(uintptr_t)0x1234,
                      "posix_memalign(alignment %zu) wrote *out", bad[i]);
    }
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_allocated_total, 0);
}
END_TEST

START_TEST(test_posix_memalign_enomem)
{
    void *out = (void *)(uintptr_t)0x1234;
    ck_assert_int_eq(pm_posix_memalign(&out, 64, SIZE_MAX), ENOMEM);
    ck_assert_ptr_eq(out, (void *)(uintptr_t)0x1234);
    ck_assert_int_eq(pm_posix_memalign(&out, 4096, SIZE_MAX - 8192), ENOMEM);
    ck_assert_ptr_eq(out, (void *)(uintptr_t)0x1234);
}
END_TEST

START_TEST(test_posix_memalign_sizes)
{
    const size_t alignment = (size_t)8 << _i;
    for (size_t i = 0; i < ALIGNED_SIZE_COUNT; i++) {
        void *p = NULL;
        int rc = pm_posix_memalign(&p, alignment, aligned_sizes[i]);
        ck_assert_msg(rc == 0, "posix_memalign(%zu, %zu) = %d", alignment,
                      aligned_sizes[i], rc);
        check_aligned_block(p, alignment, aligned_sizes[i], "posix_memalign");
        pm_free(p);
    }
    /* size 0: success, and a pointer pm_free takes. */
    void *p = (void *)(uintptr_t)0x1234;
    ck_assert_int_eq(pm_posix_memalign(&p, alignment, 0), 0);
    ck_assert((uintptr_t)p % alignment == 0);
    pm_free(p);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
}
END_TEST

START_TEST(test_aligned_alloc_sizes)
{
    const size_t alignment = (size_t)8 << _i;
    for (size_t i = 0; i < ALIGNED_SIZE_COUNT; i++) {
        void *p = pm_aligned_alloc(alignment, aligned_sizes[i]);
        check_aligned_block(p, alignment, aligned_sizes[i], "aligned_alloc");
        pm_free(p);
    }
    /* C11's form: size a multiple of the alignment. */
    void *p = pm_aligned_alloc(alignment, 2 * alignment);
    check_aligned_block(p, alignment, 2 * alignment, "aligned_alloc");
    pm_free(p);
}
END_TEST

START_TEST(test_memalign_sizes)
{
    const size_t alignment = (size_t)8 << _i;
    void *held[ALIGNED_SIZE_COUNT];
    for (size_t i = 0; i < ALIGNED_SIZE_COUNT; i++) {
        held[i] = pm_memalign(alignment, aligned_sizes[i]);
        check_aligned_block(held[i], alignment, aligned_sizes[i], "memalign");
    }
    /* Several at once do not overlap. */
    for (size_t i = 0; i < ALIGNED_SIZE_COUNT; i++)
        memset(held[i], (int)i, aligned_sizes[i]);
    for (size_t i = 0; i < ALIGNED_SIZE_COUNT; i++) {
        const unsigned char *b = held[i];
        for (size_t k = 0; k < aligned_sizes[i]; k++)
            ck_assert_uint_eq(b[k], i);
        pm_free(held[i]);
    }
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
}
END_TEST

/* Every pool size at every pool alignment, through the three entry points'
 * fast paths (pm_aligned_fast, internal.h): aligned, large enough, from a pool,
 * held at once without overlapping; posix_memalign leaves errno alone. */
START_TEST(test_aligned_every_pool_size)
{
    enum { ALIGNMENTS = 7 }; /* 8 .. 512 */
    static unsigned char *held[PM_SMALL_MAX + 1][ALIGNMENTS];
    for (size_t size = 1; size <= PM_SMALL_MAX; size++) {
        for (int a = 0; a < ALIGNMENTS; a++) {
            size_t alignment = (size_t)8 << a;
            void *p = NULL;
            switch (size % 3) {
            case 0:
                errno = 1234;
                ck_assert_int_eq(pm_posix_memalign(&p, alignment, size), 0);
                ck_assert_int_eq(errno, 1234);
                break;
            case 1:
                p = pm_memalign(alignment, size);
                break;
            default:
                p = pm_aligned_alloc(alignment, size);
                break;
            }
            ck_assert_msg(p != NULL && (uintptr_t)p % alignment == 0 && pm_owns(p),
                          "%zu bytes aligned to %zu: %p", size, alignment, p);
            ck_assert_uint_ge(pm_malloc_usable_size(p), size);
            held[size][a] = p;
            memset(p, (int)(size + a), size);
        }
    }
    for (size_t size = 1; size <= PM_SMALL_MAX; size++) {
        for (int a = 0; a < ALIGNMENTS; a++) {
            ck_assert_uint_eq(held[size][a][0], (unsigned char)(size + a));
            ck_assert_uint_eq(held[size][a][size - 1], (unsigned char)(size + a));
            pm_free(held[size][a]);
        }
    }
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
}
END_TEST

/* Many pool-served aligned blocks of one class: each aligned, none shared. */
START_TEST(test_memalign_pool_many)
{
    enum { N = 600 };
    static void *p[N];
    for (int i = 0; i < N; i++) {
        size_t alignment = (size_t)16 << (i % 6); /* 16 .. 512 */
        p[i] = pm_memalign(alignment, 40);
        ck_assert_ptr_nonnull(p[i]);
        ck_assert_uint_eq((uintptr_t)p[i] % alignment, 0);
        ck_assert(pm_owns(p[i]));
        memset(p[i], i & 0xff, 40);
    }
    for (int i = 0; i < N; i++) {
        const unsigned char *b = p[i];
        for (int k = 0; k < 40; k++)
            ck_assert_uint_eq(b[k], (unsigned)(i & 0xff));
        pm_free(p[i]);
    }
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
}
END_TEST

START_TEST(test_memalign_huge_alignment)
{
    static const size_t alignments[] = {(size_t)1 << 17, (size_t)1 << 20};
    for (size_t i = 0; i < 2; i++) {
        void *p = pm_memalign(alignments[i], 100);
        check_aligned_block(p, alignments[i], 100, "memalign");
        pm_free(p);
    }
}
END_TEST

START_TEST(test_valloc)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    static const size_t sizes[] = {1, 100, 512, 4096, 5000, 100000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = pm_valloc(sizes[i]);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % page, 0);
        ck_assert_uint_ge(pm_malloc_usable_size(p), sizes[i]);
        memset(p, 1, sizes[i]);
        pm_free(p);
    }
}
END_TEST

/* pvalloc rounds the size up to whole pages: page aligned, and the rounded
 * size is usable. (Not "usable size is a multiple of the page size": glibc's
 * own pvalloc reports e.g. 8200 for pvalloc(4097).) */
START_TEST(test_pvalloc)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t sizes[] = {1, 100, 512, page - 1, page, page + 1, 3 * page + 5, 100000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t rounded = (sizes[i] + page - 1) / page * page;
        unsigned char *p = pm_pvalloc(sizes[i]);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % page, 0);
        ck_assert_msg(pm_malloc_usable_size(p) >= rounded,
                      "pvalloc(%zu): usable %zu < %zu", sizes[i],
                      pm_malloc_usable_size(p), rounded);
        memset(p, 1, rounded);
        pm_free(p);
    }
    unsigned char *p = pm_pvalloc(0);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % page, 0);
    pm_free(p);
}
END_TEST

START_TEST(test_usable_size_null)
{
    ck_assert_uint_eq(pm_malloc_usable_size(NULL), 0);
}
END_TEST

Suite *make_aligned_suite(void)
{
    Suite *s = suite_create("aligned");
    TCase *tc = tcase_create("posix_memalign");
    tcase_add_test(tc, test_posix_memalign_invalid);
    tcase_add_test(tc, test_posix_memalign_enomem);
    tcase_add_loop_test(tc, test_posix_memalign_sizes, 0, ALIGN_STEPS);
    suite_add_tcase(s, tc);

    tc = tcase_create("memalign");
    tcase_add_loop_test(tc, test_aligned_alloc_sizes, 0, ALIGN_STEPS);
    tcase_add_loop_test(tc, test_memalign_sizes, 0, ALIGN_STEPS);
    tcase_add_test(tc, test_memalign_pool_many);
    tcase_add_test(tc, test_aligned_every_pool_size);
    tcase_add_test(tc, test_memalign_huge_alignment);
    suite_add_tcase(s, tc);

    tc = tcase_create("page");
    tcase_add_test(tc, test_valloc);
    tcase_add_test(tc, test_pvalloc);
    tcase_add_test(tc, test_usable_size_null);
    suite_add_tcase(s, tc);
    return s;
}
