/* check_hardening.c — the checks that stand between a program's memory
 * errors and the allocator's own state (I12): free-list links stored
 * encoded and checked when popped, on pool lists and remote stacks, and
 * POOLMALLOC_DEBUG's fill patterns. A write into a freed block must end in
 * an abort with a clear message, never in a block handed out at an address
 * the write chose. */
#include "support.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

/* What a program might leave in a freed block's first 8 bytes: zeros, a
 * pointer of its own (here, into the same pool), text. */
static const uint64_t stray_text = 0x4141414141414141ull;
#define STRAY_KINDS 3

/* The freed block is the head of its pool's free list: the next malloc of
 * its class pops it and checks the link it finds there. */
static void write_after_free_pool_list(int stray_kind)
{
    void *anchor = pm_malloc(48);
    void *p = pm_malloc(48);
    ck_assert_ptr_nonnull(anchor);
    ck_assert_ptr_nonnull(p);
    pm_free(p);
    uint64_t stray = stray_kind == 0 ? 0 : stray_kind == 1 ? (uintptr_t)anchor : stray_text;
    memcpy(p, &stray, sizeof stray);
    pm_malloc(48);
}

START_TEST(test_write_after_free_pool_list)
{
    write_after_free_pool_list(_i);
}
END_TEST

/* Freed by a thread that does not own it while the owner's ring is full,
 * the block waits on its owner's overflow stack, linked through its first
 * word; the write lands there, and the owner's collection finds it before
 * it follows the link (_i 0), or malloc_trim's, taking the stack off for
 * the owner (_i 1, IDLE OWNERS in heap.c). */
static void free_then_write(void *block)
{
    pm_free(block);
    memcpy(block, &stray_text, sizeof stray_text);
}

START_TEST(test_write_after_free_remote_stack)
{
    pm_test_remote_misuse(free_then_write, true, _i == 1);
}
END_TEST

/* In the ring, a block waits as an address in its owner's heap: the same
 * write misleads nothing, and the owner takes the block back whole. */
START_TEST(test_write_after_free_remote_ring)
{
    pm_test_remote_misuse(free_then_write, false, false);
    ck_assert(pm_heap_validate());
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[pm_class_of(96)].freed_total, 1);
}
END_TEST

static void debug_on(void)
{
    pm_options.debug = 1;
    pm_heap_apply_debug();
}

/* Past the link, where safe-linking cannot see: the freed pattern can. */
static void debug_write_after_free(void)
{
    debug_on();
    void *anchor = pm_malloc(64);
    unsigned char *p = pm_malloc(64);
    ck_assert_ptr_nonnull(anchor);
    ck_assert_ptr_nonnull(p);
    pm_free(p);
    p[40] = 1;
    pm_malloc(64);
}

START_TEST(test_debug_write_after_free)
{
    debug_write_after_free();
}
END_TEST

/* ---- the messages ---------------------------------------------------------- */

static void zeros_after_free(void)
{
    write_after_free_pool_list(0);
}

START_TEST(test_message_pool_list)
{
    char buf[4096];
    pm_test_capture_abort(zeros_after_free, buf, sizeof buf);
    pm_test_assert_message(buf, "corrupted free list (a freed block was written to)");
    pm_test_assert_message(buf, "(size class 48 bytes)");
}
END_TEST

START_TEST(test_message_debug_write)
{
    char buf[4096];
    pm_test_capture_abort(debug_write_after_free, buf, sizeof buf);
    pm_test_assert_message(buf, "write after free");
    pm_test_assert_message(buf, "(size class 64 bytes)");
}
END_TEST

/* ---- POOLMALLOC_DEBUG at work ------------------------------------------------ */

static bool all_bytes(const void *p, size_t from, size_t to, unsigned char value)
{
    const unsigned char *b = p;
    for (size_t i = from; i < to; i++)
        if (b[i] != value)
            return false;
    return true;
}

START_TEST(test_debug_patterns)
{
    debug_on();
    void *anchor = pm_malloc(100);
    unsigned char *p = pm_malloc(100);
    ck_assert_ptr_nonnull(anchor);
    ck_assert_ptr_nonnull(p);
    size_t usable = pm_malloc_usable_size(p);
    ck_assert_uint_eq(usable, 112);
    ck_assert(all_bytes(p, 0, usable, PM_DEBUG_FRESH_BYTE));
    pm_free(p);
    /* The link is encoded (I12); every other byte holds the freed pattern. */
    ck_assert(all_bytes(p, sizeof(pm_block_t), usable, PM_DEBUG_FREED_BYTE));
    unsigned char *again = pm_malloc(100);
    ck_assert_ptr_eq(again, p); /* the list is LIFO */
    ck_assert(all_bytes(again, 0, usable, PM_DEBUG_FRESH_BYTE));

    unsigned char *zeroed = pm_calloc(3, 30);
    ck_assert_ptr_nonnull(zeroed);
    ck_assert(pm_test_all_zero(zeroed, pm_malloc_usable_size(zeroed)));

    unsigned char *large = pm_malloc(5000); /* glibc's, filled by us */
    ck_assert_ptr_nonnull(large);
    ck_assert(!pm_owns(large));
    ck_assert(all_bytes(large, 0, pm_malloc_usable_size(large), PM_DEBUG_FRESH_BYTE));
    pm_free(large);
    pm_free(zeroed);
    pm_free(again);
    pm_free(anchor);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.thread_heaps, 0); /* all of it through the shared heap */
}
END_TEST

/* No false alarm: threads allocate, fill, hand blocks to each other and
 * free them, every block checked on reuse. */
#define DEBUG_THREADS 4
#define DEBUG_SLOTS 256
static void *volatile debug_slots[DEBUG_THREADS][DEBUG_SLOTS];

static void *debug_worker(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    pm_test_rng_t rng;
    pm_test_rng_seed(&rng, 1000 + me);
    for (int round = 0; round < 20000; round++) {
        /* Take from a neighbour's slots too: remote frees. */
        unsigned owner = pm_test_rng_next(&rng) % 4 == 0 ? (me + 1) % DEBUG_THREADS : me;
        size_t slot = pm_test_rng_range(&rng, 0, DEBUG_SLOTS - 1);
        void *old = __atomic_exchange_n(&debug_slots[owner][slot], NULL, __ATOMIC_ACQ_REL);
        if (old != NULL) {
            ck_assert(pm_test_pattern_ok(old, pm_malloc_usable_size(old), (uintptr_t)old));
            pm_free(old);
        }
        size_t size = pm_test_rng_range(&rng, 1, 600);
        void *fresh = pm_malloc(size);
        ck_assert_ptr_nonnull(fresh);
        pm_test_pattern_fill(fresh, pm_malloc_usable_size(fresh), (uintptr_t)fresh);
        void *displaced = __atomic_exchange_n(&debug_slots[me][slot], fresh, __ATOMIC_ACQ_REL);
        if (displaced != NULL)
            pm_free(displaced);
    }
    return NULL;
}

START_TEST(test_debug_threads)
{
    debug_on();
    pthread_t t[DEBUG_THREADS];
    for (unsigned i = 0; i < DEBUG_THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, debug_worker, (void *)(uintptr_t)i), 0);
    for (unsigned i = 0; i < DEBUG_THREADS; i++)
        pthread_join(t[i], NULL);
    for (unsigned i = 0; i < DEBUG_THREADS; i++)
        for (size_t j = 0; j < DEBUG_SLOTS; j++)
            pm_free(debug_slots[i][j]);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
}
END_TEST

/* Options are read after the program may have allocated: blocks of the
 * heap made before stay valid, and are freed through the checked path. */
START_TEST(test_debug_after_first_allocation)
{
    void *early[64];
    for (int i = 0; i < 64; i++)
        early[i] = pm_malloc((size_t)(i * 8 + 1));
    pm_stats_t s;
    pm_stats_get(&s);
    ck_assert_uint_eq(s.thread_heaps, 1);
    debug_on();
    void *late = pm_malloc(24);
    ck_assert_ptr_nonnull(late);
    for (int i = 0; i < 64; i++)
        pm_free(early[i]);
    pm_free(late);
    pm_test_stats(&s);
    ck_assert_uint_eq(s.thread_heaps, 0);
    ck_assert_uint_eq(s.abandoned_heaps, 1);
    ck_assert_uint_eq(s.small_live_blocks, 0);
}
END_TEST

/* ---- out of memory ------------------------------------------------------------ */

/* The address space capped a little above what the process uses: small
 * and large requests alike run out (arenas cannot be mapped, then glibc
 * cannot grow), each failure is NULL with ENOMEM, nothing aborts, and once
 * the blocks are freed their memory serves again. */
START_TEST(test_out_of_memory)
{
#if PM_TEST_ASAN || PM_TEST_TSAN
    return; /* the sanitizers' shadow memory does not fit under RLIMIT_AS */
#endif
    const size_t slots = (size_t)4 << 20;
    void **blocks = mmap(NULL, slots * sizeof *blocks, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(blocks, MAP_FAILED);
    rlim_t in_use = pm_test_address_space_in_use();
    struct rlimit cap = {in_use + ((rlim_t)64 << 20), in_use + ((rlim_t)64 << 20)};
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &cap), 0);

    static const size_t sizes[] = {64, 512, 4000};
    size_t count = 0, failures = 0;
    for (size_t round = 0; count < slots && failures < 3; round++) {
        errno = 0;
        void *p = pm_malloc(sizes[round % 3]);
        if (p == NULL) {
            ck_assert_int_eq(errno, ENOMEM);
            failures++;
            continue;
        }
        blocks[count++] = p;
    }
    ck_assert_uint_eq(failures, 3);
    errno = 0;
    ck_assert_ptr_null(pm_calloc(1, (size_t)128 << 20));
    ck_assert_int_eq(errno, ENOMEM);
    void *kept = blocks[0];
    ck_assert_ptr_null(pm_realloc(kept, (size_t)128 << 20));
    ck_assert_ptr_eq(blocks[0], kept); /* realloc keeps the block when it fails */

    for (size_t i = 0; i < count; i++)
        pm_free(blocks[i]);
    for (size_t i = 0; i < 1000; i++) {
        blocks[i] = pm_malloc(sizes[i % 3]);
        ck_assert_ptr_nonnull(blocks[i]);
    }
    for (size_t i = 0; i < 1000; i++)
        pm_free(blocks[i]);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
}
END_TEST

Suite *make_hardening_suite(void)
{
    Suite *s = suite_create("hardening");
    TCase *tc = tcase_create("abort");
    tcase_add_loop_test_raise_signal(tc, test_write_after_free_pool_list, SIGABRT, 0,
                                     STRAY_KINDS);
    if (!PM_TEST_TSAN) /* TSan cannot map its traces under the stack's cap */
        tcase_add_loop_test_raise_signal(tc, test_write_after_free_remote_stack, SIGABRT, 0, 2);
    tcase_add_test(tc, test_write_after_free_remote_ring);
    tcase_add_test_raise_signal(tc, test_debug_write_after_free, SIGABRT);
    suite_add_tcase(s, tc);

    tc = tcase_create("message");
    tcase_add_test(tc, test_message_pool_list);
    tcase_add_test(tc, test_message_debug_write);
    suite_add_tcase(s, tc);

    tc = tcase_create("debug");
    tcase_add_test(tc, test_debug_patterns);
    tcase_add_test(tc, test_debug_threads);
    tcase_add_test(tc, test_debug_after_first_allocation);
    suite_add_tcase(s, tc);

    tc = tcase_create("oom");
    tcase_add_test(tc, test_out_of_memory);
    suite_add_tcase(s, tc);
    return s;
}
