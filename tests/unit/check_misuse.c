/* check_misuse.c — misuse the core must catch and abort on (I6, I7): double
 * free, interior pointers, pointers into an arena header or an unused pool,
 * realloc of a freed block; and the message it prints first.
 * Death tests rely on Check's forked mode: the test process is expected to
 * die of SIGABRT (the runner turns core dumps off). */
#include "support.h"

#include <pthread.h>
#include <signal.h>

static const int misuse_classes[] = {0, 1, 15, 31};
#define MISUSE_CLASS_COUNT ((int)(sizeof misuse_classes / sizeof misuse_classes[0]))

/* I6: the block is on its pool's free list; an anchor keeps its pool IN
 * USE. */
START_TEST(test_double_free)
{
    size_t bs = pm_class_block_size(misuse_classes[_i]);
    void *anchor = pm_malloc(bs);
    void *p = pm_malloc(bs);
    ck_assert_ptr_nonnull(anchor);
    ck_assert_ptr_nonnull(p);
    pm_free(p);
    pm_free(p);
}
END_TEST

/* A double free after the block's pool went back to its arena (UNUSED):
 * fill pool P, put one block in a second pool Q, give P room again (a
 * regaining batch, I4) so the bin lists both, then free Q's block: Q
 * empties with another pool on the bin list and is released (I4). */
START_TEST(test_double_free_released_pool)
{
    const size_t bs = 64;
    static void *in_p[PM_POOL_SIZE / 64];
    pm_test_fill_pool(in_p, bs);
    void *lone = pm_malloc(bs); /* P is full: a second pool */
    ck_assert_ptr_nonnull(lone);
    ck_assert_uint_ne((uintptr_t)lone / PM_POOL_SIZE, (uintptr_t)in_p[0] / PM_POOL_SIZE);
    for (size_t i = 0; i < pm_pool_regain_batch(pm_pool_of(in_p[0])); i++)
        pm_free(in_p[i]);
    pm_free(lone);
    pm_stats_t s;
    pm_stats_get(&s);
    ck_assert_uint_eq(s.classes[pm_size_class(bs)].pools, 1);
    pm_free(lone);
}
END_TEST

/* A double free of a block that is not at the head of its pool's free list
 * (freed 1, 3, 5, 7; then 3 again): caught by its tag and the walk of the
 * list, not by comparing with the list head. */
START_TEST(test_double_free_busy_free_list)
{
    void *b[8];
    for (int i = 0; i < 8; i++)
        b[i] = pm_malloc(32);
    for (int i = 1; i < 8; i += 2)
        pm_free(b[i]);
    pm_free(b[3]);
}
END_TEST

/* I6: a block start its pool never carved was never handed out. */
START_TEST(test_free_uncarved)
{
    void *p = pm_malloc(48);
    ck_assert_ptr_nonnull(p);
    pm_pool_t *pool = pm_pool_of(p);
    ck_assert_uint_lt(pool->carve_index, pool->capacity);
    pm_free(pm_pool_start(pool) + (size_t)pool->carve_index * 48);
}
END_TEST

/* I6: malloc_trim gives back the pages of a pool in use that no live block
 * overlaps; a block there was free, and though its page now reads as
 * zeros, with no tag, freeing it again is a double free. */
START_TEST(test_double_free_purged_page)
{
    static void *b[PM_POOL_SIZE / 64];
    size_t cap = pm_test_fill_pool(b, 64);
    for (size_t i = 0; i + 1 < cap; i++) /* the last one keeps the pool in use */
        pm_free(b[i]);
    pm_malloc_trim(0);
    ck_assert(pm_pool_of(b[0])->purged_pages & 1);
    pm_free(b[0]);
}
END_TEST

/* I7: interior pointers of a live 32-byte block. */
static const size_t interior_offsets[] = {8, 16, 1, 24, 31};

START_TEST(test_free_interior)
{
    unsigned char *p = pm_malloc(32);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(pm_malloc_usable_size(p), 32);
    pm_free(p + interior_offsets[_i]);
}
END_TEST

/* I7: inside the arena but not in any pool: the header. */
START_TEST(test_free_arena_header)
{
    void *p = pm_malloc(16);
    ck_assert_ptr_nonnull(p);
    void *header = (void *)(pm_test_arena_base(p) + 64);
    ck_assert(pm_owns(header));
    pm_free(header);
}
END_TEST

/* I2/I7: a pool of the arena that no class uses. With the one live block,
 * exactly one pool of the one arena is IN USE; pick another. */
START_TEST(test_free_unused_pool)
{
    void *p = pm_malloc(48);
    ck_assert_ptr_nonnull(p);
    pm_stats_t s;
    pm_stats_get(&s);
    ck_assert_uint_eq(s.arenas_mapped, 1);
    ck_assert_uint_eq(s.classes[pm_size_class(48)].pools, 1);
    unsigned used = pm_test_pool_index(p);
    unsigned other = (used + 1) % PM_POOLS_PER_ARENA;
    uintptr_t start = pm_test_arena_base(p) + (size_t)other * PM_POOL_SIZE;
    if (other == 0)
        start += PM_ARENA_HEADER_SIZE;
    void *target = (void *)(start + 3 * 48); /* where a 48-byte block could be */
    ck_assert(pm_owns(target));
    pm_free(target);
}
END_TEST

START_TEST(test_realloc_freed)
{
    void *anchor = pm_malloc(100);
    void *p = pm_malloc(100);
    ck_assert_ptr_nonnull(anchor);
    ck_assert_ptr_nonnull(p);
    pm_free(p);
    pm_realloc(p, 200);
}
END_TEST

START_TEST(test_realloc_interior)
{
    unsigned char *p = pm_malloc(64);
    ck_assert_ptr_nonnull(p);
    pm_realloc(p + 16, 32);
}
END_TEST

/* A block freed twice by a thread that does not own it goes twice into the
 * owner's remote ring (_i 0, 1) or onto its overflow stack (_i 2, 3); the
 * owner collects them when its bin runs out of room, meets the block twice
 * and aborts (I6, THREAD HEAPS in internal.h). Taken off for the owner by
 * malloc_trim first (_i 1, 3: IDLE OWNERS, heap.c), the block is in a
 * parcel twice, and the owner meets it twice there. */
static void free_twice(void *block)
{
    pm_free(block);
    pm_free(block);
}

START_TEST(test_remote_double_free)
{
    pm_test_remote_misuse(free_twice, _i & 2, _i & 1);
}
END_TEST

/* pm_malloc_usable_size checks the pointer like free does (PM_OP_USABLE_SIZE
 * in internal.h). */
START_TEST(test_usable_size_freed)
{
    void *anchor = pm_malloc(80);
    void *p = pm_malloc(80);
    ck_assert_ptr_nonnull(anchor);
    ck_assert_ptr_nonnull(p);
    pm_free(p);
    pm_malloc_usable_size(p);
}
END_TEST

START_TEST(test_usable_size_interior)
{
    unsigned char *p = pm_malloc(80);
    ck_assert_ptr_nonnull(p);
    pm_malloc_usable_size(p + 16);
}
END_TEST

/* ---- the message ---------------------------------------------------------- */

static void *message_anchor(void)
{
    return pm_malloc(32); /* keeps the pool IN USE */
}

static void misuse_double_free(void)
{
    message_anchor();
    void *p = pm_malloc(32);
    pm_free(p);
    pm_free(p);
}

static void misuse_interior(void)
{
    message_anchor();
    unsigned char *p = pm_malloc(32);
    pm_free(p + 16);
}

static void misuse_realloc_freed(void)
{
    message_anchor();
    void *p = pm_malloc(32);
    pm_free(p);
    pm_realloc(p, 64);
}

/* realloc moves a block of the caller's own heap without free's checks
 * (alloc.c's realloc_move_own): the old block must read as freed all the
 * same, to a later free and to a realloc. */
static void misuse_free_after_moving_realloc(void)
{
    message_anchor();
    void *p = pm_malloc(32);
    void *moved = pm_realloc(p, 300);
    ck_assert_ptr_ne(moved, p);
    pm_free(p);
}

static void misuse_realloc_after_moving_realloc(void)
{
    message_anchor();
    void *p = pm_malloc(32);
    void *moved = pm_realloc(p, 300);
    ck_assert_ptr_ne(moved, p);
    pm_realloc(p, 400);
}

START_TEST(test_message_free_after_moving_realloc)
{
    char buf[4096];
    pm_test_capture_abort(misuse_free_after_moving_realloc, buf, sizeof buf);
    pm_test_assert_message(buf, "double free");
    pm_test_capture_abort(misuse_realloc_after_moving_realloc, buf, sizeof buf);
    pm_test_assert_message(buf, "realloc of a freed block");
}
END_TEST

START_TEST(test_message_double_free)
{
    char buf[4096];
    pm_test_capture_abort(misuse_double_free, buf, sizeof buf);
    pm_test_assert_message(buf, "double free");
}
END_TEST

START_TEST(test_message_interior)
{
    char buf[4096];
    pm_test_capture_abort(misuse_interior, buf, sizeof buf);
    pm_test_assert_message(buf, "invalid free (not the start of a block)");
}
END_TEST

/* A block of an exited thread freed twice by a thread with a heap of its
 * own: the first free adopts the block's pool (ADOPTION, heap.c), and the
 * second finds the block freed, as the pool's owner now. */
static void *exited_pair[2];
static void *make_pair(void *arg)
{
    (void)arg;
    exited_pair[0] = pm_malloc(48); /* keeps the pool IN USE */
    exited_pair[1] = pm_malloc(48);
    return NULL;
}

static void misuse_adopted_double_free(void)
{
    pm_free(pm_malloc(48)); /* a heap of its own, before the other thread's */
    pthread_t t;
    if (pthread_create(&t, NULL, make_pair, NULL) != 0 || pthread_join(t, NULL) != 0)
        return;
    pm_free(exited_pair[1]);
    if (pm_pool_heap(pm_pool_of(exited_pair[1])) != pm_thread_heap)
        return; /* not adopted: the parent sees a normal exit */
    pm_free(exited_pair[1]);
}

START_TEST(test_message_adopted_double_free)
{
    char buf[4096];
    pm_test_capture_abort(misuse_adopted_double_free, buf, sizeof buf);
    pm_test_assert_message(buf, "double free");
}
END_TEST

/* The message names the operation that was misused (pm_pool_checked). */
START_TEST(test_message_realloc_freed)
{
    char buf[4096];
    pm_test_capture_abort(misuse_realloc_freed, buf, sizeof buf);
    pm_test_assert_message(buf, "realloc of a freed block");
}
END_TEST

Suite *make_misuse_suite(void)
{
    Suite *s = suite_create("misuse");
    TCase *tc = tcase_create("abort");
    tcase_add_loop_test_raise_signal(tc, test_double_free, SIGABRT, 0, MISUSE_CLASS_COUNT);
    tcase_add_test_raise_signal(tc, test_double_free_released_pool, SIGABRT);
    tcase_add_test_raise_signal(tc, test_double_free_busy_free_list, SIGABRT);
    tcase_add_test_raise_signal(tc, test_free_uncarved, SIGABRT);
    tcase_add_test_raise_signal(tc, test_double_free_purged_page, SIGABRT);
    tcase_add_loop_test_raise_signal(
        tc, test_free_interior, SIGABRT, 0,
        (int)(sizeof interior_offsets / sizeof interior_offsets[0]));
    tcase_add_test_raise_signal(tc, test_free_arena_header, SIGABRT);
    tcase_add_test_raise_signal(tc, test_free_unused_pool, SIGABRT);
    tcase_add_test_raise_signal(tc, test_realloc_freed, SIGABRT);
    tcase_add_test_raise_signal(tc, test_realloc_interior, SIGABRT);
    tcase_add_loop_test_raise_signal(tc, test_remote_double_free, SIGABRT, 0, 2);
    if (!PM_TEST_TSAN) /* TSan cannot map its traces under the stack's cap */
        tcase_add_loop_test_raise_signal(tc, test_remote_double_free, SIGABRT, 2, 4);
    tcase_add_test_raise_signal(tc, test_usable_size_freed, SIGABRT);
    tcase_add_test_raise_signal(tc, test_usable_size_interior, SIGABRT);
    suite_add_tcase(s, tc);

    tc = tcase_create("message");
    tcase_add_test(tc, test_message_double_free);
    tcase_add_test(tc, test_message_adopted_double_free);
    tcase_add_test(tc, test_message_interior);
    tcase_add_test(tc, test_message_realloc_freed);
    tcase_add_test(tc, test_message_free_after_moving_realloc);
    suite_add_tcase(s, tc);
    return s;
}
