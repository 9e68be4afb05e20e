/* check_realloc.c — pm_realloc across every transition: NULL, size 0,
 * within a class, between classes, between pools and glibc both ways, glibc
 * to glibc, and pointers glibc handed out itself. Contents survive up to
 * min(old, new) in every case and the old block is released when moved. */
#include "support.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

static const size_t realloc_sizes[] = {1,   16,  17,   100,  256,    511,   512,
                                       513, 600, 1000, 4096, 65536, 300000};
#define REALLOC_SIZE_COUNT ((int)(sizeof realloc_sizes / sizeof realloc_sizes[0]))

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

START_TEST(test_realloc_null_is_malloc)
{
    static const size_t sizes[] = {0, 1, 100, 512, 513, 4096};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = pm_realloc(NULL, sizes[i]);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_ge(pm_malloc_usable_size(p), sizes[i]);
        ck_assert_int_eq(pm_owns(p) != 0, pm_size_class(sizes[i]) >= 0);
        if (sizes[i])
            p[sizes[i] - 1] = 1;
        pm_free(p);
    }
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
    ck_assert_uint_eq(s.small_allocated_total, 4); /* 0, 1, 100, 512 */
}
END_TEST

/* Like glibc: realloc(p, 0) with p != NULL frees p and returns NULL. */
START_TEST(test_realloc_zero_frees)
{
    void *anchor = pm_malloc(100);
    void *p = pm_malloc(100);
    ck_assert_ptr_nonnull(p);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 2);
    ck_assert_ptr_null(pm_realloc(p, 0));
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 1);
    ck_assert_uint_eq(s.classes[pm_size_class(100)].freed_total, 1);
    /* The block really is free: it is handed out again. */
    ck_assert_ptr_eq(pm_malloc(100), p);
    pm_free(p);

    void *large = pm_malloc(5000);
    ck_assert_ptr_nonnull(large);
    ck_assert_ptr_null(pm_realloc(large, 0));
    void *glibc = __libc_malloc(50);
    ck_assert_ptr_nonnull(glibc);
    ck_assert_ptr_null(pm_realloc(glibc, 0));
    pm_free(anchor);
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
}
END_TEST

/* Shrinking (or keeping the size) within a class keeps the block. */
START_TEST(test_realloc_same_class_in_place)
{
    const int c = _i;
    const size_t bs = pm_class_block_size(c);
    unsigned char *p = pm_malloc(bs);
    ck_assert_ptr_nonnull(p);
    pm_test_pattern_fill(p, bs, 99);
    for (size_t n = bs; n + PM_CLASS_GRANULE > bs && n > 0; n--) {
        unsigned char *q = pm_realloc(p, n);
        ck_assert_msg(q == p, "realloc(%zu-byte block, %zu) moved", bs, n);
    }
    ck_assert(pm_test_pattern_ok(p, bs - PM_CLASS_GRANULE + 1, 99));
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 1);
    ck_assert_uint_eq(s.small_allocated_total, 1);
    pm_free(p);
}
END_TEST

/* From realloc_sizes[_i] to every size in the table (small -> small,
 * small -> large, large -> small, large -> large, and the same size). */
START_TEST(test_realloc_transitions)
{
    const size_t old_size = realloc_sizes[_i];
    for (int j = 0; j < REALLOC_SIZE_COUNT; j++) {
        const size_t new_size = realloc_sizes[j];
        unsigned char *p = pm_malloc(old_size);
        ck_assert_ptr_nonnull(p);
        pm_test_pattern_fill(p, old_size, old_size * 7 + new_size);
        unsigned char *q = pm_realloc(p, new_size);
        ck_assert_msg(q != NULL, "realloc(%zu -> %zu) failed", old_size, new_size);
        ck_assert_msg(pm_test_pattern_ok(q, min_size(old_size, new_size),
                                         old_size * 7 + new_size),
                      "realloc(%zu -> %zu) lost contents", old_size, new_size);
        ck_assert_uint_ge(pm_malloc_usable_size(q), new_size);
        memset(q, 0xab, new_size); /* the whole new size is writable */
        /* Exactly one small block is live iff the result is a pool block:
         * a moved block was released. */
        pm_stats_t s;
        pm_test_stats(&s);
        ck_assert_msg(s.small_live_blocks == (pm_owns(q) ? 1u : 0u),
                      "realloc(%zu -> %zu): %llu small blocks live", old_size,
                      new_size, (unsigned long long)s.small_live_blocks);
        pm_free(q);
        pm_test_stats(&s);
        ck_assert_uint_eq(s.small_live_blocks, 0);
    }
}
END_TEST

/* Growing one block through every class, then to glibc and back, keeps the
 * first bytes written at each step. */
START_TEST(test_realloc_grow_chain)
{
    unsigned char *p = pm_malloc(1);
    ck_assert_ptr_nonnull(p);
    p[0] = 0x11;
    size_t have = 1;
    for (size_t n = 2; n <= 3 * PM_SMALL_MAX; n += 13) {
        p = pm_realloc(p, n);
        ck_assert_ptr_nonnull(p);
        ck_assert(pm_test_pattern_ok(p + 1, have - 1, 5));
        ck_assert_uint_eq(p[0], 0x11);
        pm_test_pattern_fill(p + 1, n - 1, 5);
        have = n;
    }
    for (size_t n = have; n >= 2; n = n * 2 / 3) {
        p = pm_realloc(p, n);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq(p[0], 0x11);
        ck_assert(pm_test_pattern_ok(p + 1, n - 1, 5));
    }
    pm_free(p);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
}
END_TEST

/* A pool block that grows out of its class by less than an eighth moves to
 * a quarter more than it held (README), no more than a realloc of that
 * size would keep, and within the pools while the size fits in them; one
 * that grows by more, or shrinks out of its class, moves to the size asked
 * for. A buffer grown 1 byte at a time from 1 to 512 bytes so moves 12
 * times, not 31, and never back down. */
START_TEST(test_realloc_grow_headroom)
{
    static const struct {
        size_t from, to, usable;
    } cases[] = {
        {100, 113, 144}, /* 112 + 28 = 140: the 144-byte class */
        {16, 17, 32},    /* 16 + 4 = 20, but a 32-byte block is what 17 keeps */
        {80, 81, 96},    /* 100, but realloc(96 + 16, 82) would move: 96 */
        {256, 257, 320}, /* 256 + 64 */
        {256, 400, 400}, /* past the quarter: what was asked */
        {256, 300, 304}, /* an eighth or more (a geometric grower): what was asked */
        {480, 481, 512}, /* 600, but the pools stop at 512 */
        {512, 513, 640}, /* to glibc, with the quarter */
        {512, 100, 112}, /* shrinking: exact */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char *p = pm_malloc(cases[i].from);
        ck_assert_ptr_nonnull(p);
        pm_test_pattern_fill(p, cases[i].from, i + 3);
        unsigned char *q = pm_realloc(p, cases[i].to);
        ck_assert_ptr_nonnull(q);
        ck_assert(pm_test_pattern_ok(q, min_size(cases[i].from, cases[i].to), i + 3));
        if (cases[i].to > PM_SMALL_MAX)
            ck_assert_uint_ge(pm_malloc_usable_size(q), cases[i].usable); /* glibc's */
        else
            ck_assert_msg(pm_malloc_usable_size(q) == cases[i].usable,
                          "realloc(%zu -> %zu): usable %zu, want %zu", cases[i].from, cases[i].to,
                          pm_malloc_usable_size(q), cases[i].usable);
        pm_free(q);
    }
    unsigned char *p = pm_malloc(1);
    unsigned moves = 0;
    size_t usable = pm_malloc_usable_size(p);
    for (size_t n = 2; n <= PM_SMALL_MAX; n++) {
        unsigned char *q = pm_realloc(p, n);
        ck_assert_ptr_nonnull(q);
        ck_assert_uint_ge(pm_malloc_usable_size(q), usable); /* never back down */
        usable = pm_malloc_usable_size(q);
        moves += q != p;
        p = q;
    }
    pm_free(p);
    /* 16, 32, 48, 64, 80, 96, 128, 160, 208, 272, 352, 448, 512 */
    ck_assert_uint_eq(moves, 12);
}
END_TEST

/* The same on the glibc path: a block that grows takes a quarter more, one
 * resized within its usable size stays unless that wastes more than a
 * quarter of it; but an mmap'd chunk shrinks, its spare pages given back. */
START_TEST(test_realloc_glibc_headroom)
{
    unsigned char *p = pm_malloc(1000);
    ck_assert_ptr_nonnull(p);
    ck_assert(!pm_owns(p));
    size_t usable = pm_malloc_usable_size(p);
    pm_test_pattern_fill(p, usable, 7);
    unsigned char *q = pm_realloc(p, usable + 1);
    ck_assert_ptr_nonnull(q);
    ck_assert(pm_test_pattern_ok(q, usable, 7));
    size_t grown = pm_malloc_usable_size(q);
    ck_assert_uint_ge(grown, usable + usable / 4);
    ck_assert_ptr_eq(pm_realloc(q, grown - grown / 5), q); /* kept: wastes a fifth */
    ck_assert_uint_eq(pm_malloc_usable_size(q), grown);
    unsigned char *r = pm_realloc(q, grown / 2); /* half of it: glibc shrinks it */
    ck_assert_uint_lt(pm_malloc_usable_size(r), grown);
    pm_free(r);

    size_t big = (size_t)8 << 20; /* past glibc's mmap threshold */
    unsigned char *m = pm_malloc(big);
    ck_assert_ptr_nonnull(m);
    memset(m, 1, big);
    unsigned char *n = pm_realloc(m, big - big / 8);
    ck_assert_ptr_nonnull(n);
    ck_assert_uint_lt(pm_malloc_usable_size(n), big); /* mremap gave the tail back */
    pm_free(n);
}
END_TEST

/* A pointer glibc handed out (not through pm_*) can be resized by pm_realloc
 * in any direction and the result released with pm_free. */
START_TEST(test_realloc_glibc_pointer)
{
    static const size_t olds[] = {10, 1000, 200000};
    static const size_t news[] = {5, 100, 512, 513, 2000, 100000, 400000};
    for (size_t i = 0; i < sizeof olds / sizeof olds[0]; i++) {
        for (size_t j = 0; j < sizeof news / sizeof news[0]; j++) {
            unsigned char *g = __libc_malloc(olds[i]);
            ck_assert_ptr_nonnull(g);
            pm_test_pattern_fill(g, olds[i], i * 100 + j);
            unsigned char *q = pm_realloc(g, news[j]);
            ck_assert_ptr_nonnull(q);
            ck_assert_msg(pm_test_pattern_ok(q, min_size(olds[i], news[j]), i * 100 + j),
                          "realloc(glibc %zu -> %zu) lost contents", olds[i], news[j]);
            ck_assert_uint_ge(pm_malloc_usable_size(q), news[j]);
            q[news[j] - 1] = 1;
            pm_free(q);
        }
    }
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
}
END_TEST

/* A request that cannot be met: NULL, ENOMEM, old block intact and live. */
START_TEST(test_realloc_huge_keeps_old)
{
    static const size_t sizes[] = {16, 300, 512, 513, 8192};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = pm_malloc(sizes[i]);
        ck_assert_ptr_nonnull(p);
        pm_test_pattern_fill(p, sizes[i], 3);
        errno = 0;
        ck_assert_ptr_null(pm_realloc(p, SIZE_MAX));
        ck_assert_int_eq(errno, ENOMEM);
        errno = 0;
        ck_assert_ptr_null(pm_realloc(p, SIZE_MAX - 4096));
        ck_assert_int_eq(errno, ENOMEM);
        ck_assert(pm_test_pattern_ok(p, sizes[i], 3));
        pm_stats_t s;
        pm_test_stats(&s);
        ck_assert_uint_eq(s.small_live_blocks, pm_owns(p) ? 1 : 0);
        pm_free(p);
    }
}
END_TEST

/* realloc and malloc_usable_size take a shortcut for the calling thread's
 * own blocks; a block another thread made goes the full check's way, and
 * must come out the same: its size, its contents, a move when it grows. */
enum { FOREIGN_BLOCKS = 64 };
static void *make_foreign_blocks(void *arg)
{
    unsigned char **blocks = arg;
    for (size_t i = 0; i < FOREIGN_BLOCKS; i++) {
        size_t size = 1 + i * 8; /* 1..505: most classes */
        blocks[i] = pm_malloc(size);
        memset(blocks[i], (int)i, size);
    }
    return NULL;
}

START_TEST(test_realloc_foreign_block)
{
    unsigned char *blocks[FOREIGN_BLOCKS];
    pthread_t maker;
    ck_assert_int_eq(pthread_create(&maker, NULL, make_foreign_blocks, blocks), 0);
    ck_assert_int_eq(pthread_join(maker, NULL), 0);
    for (size_t i = 0; i < FOREIGN_BLOCKS; i++) {
        size_t size = 1 + i * 8;
        size_t block_size = (size_t)(pm_size_class(size) + 1) * 16;
        ck_assert_uint_eq(pm_malloc_usable_size(blocks[i]), block_size);
        /* Within its class: the same block. */
        ck_assert_ptr_eq(pm_realloc(blocks[i], block_size), blocks[i]);
        /* Past it: moved, contents kept, and the new block is this thread's. */
        unsigned char *grown = pm_realloc(blocks[i], block_size + 1);
        ck_assert_ptr_nonnull(grown);
        ck_assert_ptr_ne(grown, blocks[i]);
        for (size_t k = 0; k < size; k++)
            ck_assert_uint_eq(grown[k], (unsigned char)i);
        ck_assert_uint_ge(pm_malloc_usable_size(grown), block_size + 1);
        pm_free(grown);
    }
    ck_assert(pm_heap_validate());
}
END_TEST

Suite *make_realloc_suite(void)
{
    Suite *s = suite_create("realloc");
    TCase *tc = tcase_create("edges");
    tcase_add_test(tc, test_realloc_null_is_malloc);
    tcase_add_test(tc, test_realloc_zero_frees);
    tcase_add_loop_test(tc, test_realloc_same_class_in_place, 0, PM_CLASS_COUNT);
    tcase_add_test(tc, test_realloc_huge_keeps_old);
    suite_add_tcase(s, tc);

    tc = tcase_create("transitions");
    tcase_add_loop_test(tc, test_realloc_transitions, 0, REALLOC_SIZE_COUNT);
    tcase_add_test(tc, test_realloc_grow_chain);
    tcase_add_test(tc, test_realloc_grow_headroom);
    tcase_add_test(tc, test_realloc_glibc_headroom);
    tcase_add_test(tc, test_realloc_glibc_pointer);
    tcase_add_test(tc, test_realloc_foreign_block);
    suite_add_tcase(s, tc);
    return s;
}
