/* check_sizeclass.c — the size-class map: pm_size_class, pm_class_block_size
 * and the usable size of small blocks, at every class boundary. */
#include "support.h"

#include <limits.h>

/* Each entry: a request size and the class that must serve it (-1: glibc). */
static const struct {
    size_t size;
    int class_index;
} boundary_table[] = {
    {0, 0},   {1, 0},   {15, 0},  {16, 0},  {17, 1},  {31, 1},  {32, 1},
    {33, 2},  {47, 2},  {48, 2},  {49, 3},  {63, 3},  {64, 3},  {65, 4},
    {127, 7}, {128, 7}, {129, 8}, {255, 15}, {256, 15}, {257, 16},
    {496, 30}, {497, 31}, {511, 31}, {512, 31}, {513, -1}, {514, -1},
    {528, -1}, {1024, -1}, {4096, -1}, {(size_t)1 << 20, -1},
    {(size_t)INT_MAX + 1, -1}, {(size_t)UINT_MAX + 17, -1},
    {SIZE_MAX / 2, -1}, {SIZE_MAX - 15, -1}, {SIZE_MAX, -1},
};
#define BOUNDARY_COUNT ((int)(sizeof boundary_table / sizeof boundary_table[0]))

START_TEST(test_class_boundary_table)
{
    size_t n = boundary_table[_i].size;
    int want = boundary_table[_i].class_index;
    ck_assert_msg(pm_size_class(n) == want, "pm_size_class(%zu) = %d, want %d",
                  n, pm_size_class(n), want);
    if (want >= 0) {
        size_t block = pm_class_block_size(want);
        ck_assert_uint_ge(block, n);
        ck_assert_uint_lt(block - n, PM_CLASS_GRANULE + (n == 0));
    }
}
END_TEST

/* Every size 0..2 x PM_SMALL_MAX against a definition by search: the class
 * is the smallest whose blocks hold the request (0 bytes counting as 1). */
START_TEST(test_class_every_size)
{
    for (size_t n = 0; n <= 2 * PM_SMALL_MAX; n++) {
        int want = -1;
        for (int c = 0; c < PM_CLASS_COUNT; c++) {
            if ((size_t)(c + 1) * PM_CLASS_GRANULE >= (n ? n : 1)) {
                want = c;
                break;
            }
        }
        ck_assert_msg(pm_size_class(n) == want, "pm_size_class(%zu) = %d, want %d",
                      n, pm_size_class(n), want);
    }
}
END_TEST

START_TEST(test_class_block_size)
{
    ck_assert_int_eq(PM_CLASS_COUNT, 32);
    int c = _i;
    size_t block = pm_class_block_size(c);
    ck_assert_uint_eq(block, (size_t)(c + 1) * 16);
    ck_assert_int_eq(block % PM_CLASS_GRANULE, 0);
    /* The class's own block size maps back to the class, one more byte does
     * not. */
    ck_assert_int_eq(pm_size_class(block), c);
    ck_assert_int_eq(pm_size_class(block + 1), c + 1 < PM_CLASS_COUNT ? c + 1 : -1);
}
END_TEST

START_TEST(test_class_block_size_out_of_range)
{
    static const int bad[] = {-1, -2, PM_CLASS_COUNT, PM_CLASS_COUNT + 1, 255,
                              PM_CLASS_NONE, INT_MAX, INT_MIN};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(pm_class_block_size(bad[i]) == 0,
                      "pm_class_block_size(%d) = %zu, want 0", bad[i],
                      pm_class_block_size(bad[i]));
}
END_TEST

/* A small block's usable size is exactly its class's block size. */
START_TEST(test_usable_size_small)
{
    for (size_t n = 0; n <= PM_SMALL_MAX; n++) {
        unsigned char *p = pm_malloc(n);
        ck_assert_ptr_nonnull(p);
        ck_assert_msg(pm_owns(p), "pm_malloc(%zu) not from a pool", n);
        size_t usable = pm_malloc_usable_size(p);
        ck_assert_msg(usable == pm_class_block_size(pm_size_class(n)),
                      "usable size of pm_malloc(%zu) = %zu", n, usable);
        p[usable - 1] = 1; /* the whole usable size is ours */
        p[0] = 1;
        pm_free(p);
    }
}
END_TEST

START_TEST(test_usable_size_large)
{
    static const size_t sizes[] = {513, 600, 1000, 4096, 65536, (size_t)1 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = pm_malloc(sizes[i]);
        ck_assert_ptr_nonnull(p);
        ck_assert(!pm_owns(p));
        size_t usable = pm_malloc_usable_size(p);
        ck_assert_uint_ge(usable, sizes[i]);
        p[usable - 1] = 1;
        pm_free(p);
    }
}
END_TEST

START_TEST(test_version)
{
    ck_assert_str_eq(pm_version(), PM_VERSION_STRING);
}
END_TEST

Suite *make_sizeclass_suite(void)
{
    Suite *s = suite_create("sizeclass");
    TCase *tc = tcase_create("map");
    tcase_add_loop_test(tc, test_class_boundary_table, 0, BOUNDARY_COUNT);
    tcase_add_test(tc, test_class_every_size);
    tcase_add_loop_test(tc, test_class_block_size, 0, PM_CLASS_COUNT);
    tcase_add_test(tc, test_class_block_size_out_of_range);
    tcase_add_test(tc, test_version);
    suite_add_tcase(s, tc);

    tc = tcase_create("usable_size");
    tcase_add_test(tc, test_usable_size_small);
    tcase_add_test(tc, test_usable_size_large);
    suite_add_tcase(s, tc);
    return s;
}
