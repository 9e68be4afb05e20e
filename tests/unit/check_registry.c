/* check_registry.c — pm_owns and the arena geometry it relies on: true for
 * every byte of our arenas, false for anything else (I1), and an arena is
 * found from any of its addresses by masking (PM_ARENA_SIZE alignment);
 * the arena space arenas are committed from, readable where no arena is
 * (I13), and its absence under RLIMIT_AS. */
#include "support.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

static int static_data[16] = {1, 2, 3};
static int static_bss[16];
static const char static_rodata[] = "poolmalloc";

START_TEST(test_owns_small_blocks)
{
    void *blocks[PM_CLASS_COUNT];
    for (int c = 0; c < PM_CLASS_COUNT; c++) {
        size_t size = pm_class_block_size(c);
        unsigned char *p = pm_malloc(size);
        ck_assert_ptr_nonnull(p);
        blocks[c] = p;
        ck_assert_msg(pm_owns(p), "class %d block %p not owned", c, (void *)p);
        ck_assert(pm_owns(p + size - 1));
        ck_assert(pm_owns(p + size / 2));
        ck_assert_uint_eq((uintptr_t)p % PM_CLASS_GRANULE, 0);
        /* The arena base, and both ends of the arena, are owned too. */
        uintptr_t base = pm_test_arena_base(p);
        ck_assert_uint_eq(base % PM_ARENA_SIZE, 0);
        ck_assert(pm_owns((void *)base));
        ck_assert(pm_owns((void *)(base + PM_ARENA_SIZE - 1)));
        /* The block lies after the header and wholly inside its arena. */
        ck_assert_uint_ge((uintptr_t)p, base + PM_ARENA_HEADER_SIZE);
        ck_assert_uint_le((uintptr_t)p + size, base + PM_ARENA_SIZE);
    }
    for (int c = 0; c < PM_CLASS_COUNT; c++)
        pm_free(blocks[c]);
}
END_TEST

START_TEST(test_owns_zero_and_aligned)
{
    void *p = pm_malloc(0);
    ck_assert_ptr_nonnull(p);
    ck_assert(pm_owns(p));
    void *q = pm_memalign(256, 200);
    ck_assert_ptr_nonnull(q);
    ck_assert(pm_owns(q)); /* alignment <= 512 fits a pool (internal.h) */
    pm_free(q);
    pm_free(p);
}
END_TEST

START_TEST(test_not_owned_glibc)
{
    /* Keep one arena mapped so the lookups have something to miss. */
    void *ours = pm_malloc(32);
    ck_assert(pm_owns(ours));
    static const size_t sizes[] = {1, 16, 100, 512, 4096, (size_t)1 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char *g = __libc_malloc(sizes[i]);
        ck_assert_ptr_nonnull(g);
        ck_assert_msg(!pm_owns(g), "glibc pointer %p (%zu bytes) owned",
                      (void *)g, sizes[i]);
        ck_assert(!pm_owns(g + sizes[i] - 1));
        __libc_free(g);
    }
    /* Large requests through pm_* go to glibc as well. */
    void *big = pm_malloc(PM_SMALL_MAX + 1);
    ck_assert_ptr_nonnull(big);
    ck_assert(!pm_owns(big));
    pm_free(big);
    pm_free(ours);
}
END_TEST

START_TEST(test_not_owned_garbage)
{
    void *ours = pm_malloc(48);
    ck_assert(pm_owns(ours));
    int local = 0;
    const void *bad[] = {
        NULL,
        (void *)1,
        (void *)15,
        (void *)4096,
        (void *)(uintptr_t)0xdeadbeef,
        (void *)((uintptr_t)1 << 47),
        (void *)(((uintptr_t)1 << 47) - 16),
        (void *)((uintptr_t)1 << 48),
        (void *)((uintptr_t)1 << 56),
        (void *)(UINTPTR_MAX & ~(uintptr_t)15),
        (void *)UINTPTR_MAX,
        (void *)(UINTPTR_MAX - PM_ARENA_SIZE + 1),
        &local,
        static_data,
        static_bss,
        static_rodata,
        (const void *)&pm_malloc,
        (const void *)&test_not_owned_garbage,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!pm_owns(bad[i]), "pm_owns(%p) is true", bad[i]);
    pm_free(ours);
}
END_TEST

/* Before anything is allocated, nothing is owned (the registry may be empty). */
START_TEST(test_not_owned_before_first_arena)
{
    int local = 0;
    ck_assert(!pm_owns(NULL));
    ck_assert(!pm_owns(&local));
    ck_assert(!pm_owns(static_data));
    ck_assert(!pm_owns((void *)(uintptr_t)0xdeadbeef));
    ck_assert(!pm_owns((void *)(UINTPTR_MAX & ~(uintptr_t)15)));
}
END_TEST

/* Blocks of every class, enough to span several arenas: every arena is
 * PM_ARENA_SIZE-aligned, owned from its first to its last byte, and the
 * number of distinct arenas seen matches the stats. */
START_TEST(test_arena_geometry_many_classes)
{
    enum { PER_CLASS = 120 };
    static void *blocks[PM_CLASS_COUNT * PER_CLASS];
    static uintptr_t bases[64];
    size_t base_count = 0, n = 0;
    pm_stats_t before, after;
    pm_test_stats(&before);

    for (int round = 0; round < PER_CLASS; round++) {
        for (int c = 0; c < PM_CLASS_COUNT; c++) {
            void *p = pm_malloc(pm_class_block_size(c));
            ck_assert_ptr_nonnull(p);
            blocks[n++] = p;
            uintptr_t base = pm_test_arena_base(p);
            size_t j = 0;
            while (j < base_count && bases[j] != base)
                j++;
            if (j == base_count) {
                ck_assert_uint_lt(base_count, sizeof bases / sizeof bases[0]);
                bases[base_count++] = base;
            }
        }
    }
    pm_test_stats(&after);
    /* 120 blocks of each class need ~0.99 MiB: at least four arenas. */
    ck_assert_uint_ge(base_count, 4);
    ck_assert_uint_eq(after.arenas_mapped - before.arenas_mapped, base_count);
    for (size_t j = 0; j < base_count; j++) {
        ck_assert(pm_owns((void *)bases[j]));
        ck_assert(pm_owns((void *)(bases[j] + PM_ARENA_SIZE / 2)));
        ck_assert(pm_owns((void *)(bases[j] + PM_ARENA_SIZE - 1)));
        /* Arenas never overlap: two bases differ by at least an arena. */
        for (size_t k = 0; k < j; k++)
            ck_assert_uint_ne(bases[j], bases[k]);
    }
    for (size_t i = 0; i < n; i++)
        pm_free(blocks[i]);
}
END_TEST

/* I1/I5: once every block of an arena is freed it is unmapped (but for the
 * reserve and the arena of a pool its bin keeps), and pm_owns no longer
 * claims its addresses. */
START_TEST(test_owns_false_after_unmap)
{
    /* No purge delay: an empty arena goes as soon as its pools' pages
     * do (I5, I10), which is what this test watches for. */
    pm_options.purge_delay_ms = 0;
    enum { COUNT = 2000 }; /* 512-byte blocks: ~1 MiB, four arenas */
    static void *blocks[COUNT];
    static uintptr_t bases[16];
    size_t base_count = 0;
    pm_stats_t before, after;
    pm_test_stats(&before);
    ck_assert_uint_eq(before.arenas_mapped, 0); /* forked: pristine core */

    for (size_t i = 0; i < COUNT; i++) {
        blocks[i] = pm_malloc(PM_SMALL_MAX);
        ck_assert_ptr_nonnull(blocks[i]);
        uintptr_t base = pm_test_arena_base(blocks[i]);
        size_t j = 0;
        while (j < base_count && bases[j] != base)
            j++;
        if (j == base_count) {
            ck_assert_uint_lt(base_count, sizeof bases / sizeof bases[0]);
            bases[base_count++] = base;
        }
    }
    ck_assert_uint_ge(base_count, 4);
    for (size_t i = 0; i < COUNT; i++)
        pm_free(blocks[i]);
    pm_test_stats(&after);
    ck_assert_uint_eq(after.small_live_blocks, 0);
    /* Left: the reserve. With no purge delay, not even the bin's last
     * pool stays: it spans pages, and is given back at once (I4). */
    ck_assert_uint_eq(after.arenas_mapped, 1);

    size_t still_owned = 0;
    for (size_t j = 0; j < base_count; j++)
        still_owned += pm_owns((void *)bases[j]) != 0;
    ck_assert_uint_eq(still_owned, after.arenas_mapped);
}
END_TEST

/* ---- the arena space (I13) -------------------------------------------------- */

static uintptr_t space_base(void)
{
    return __atomic_load_n(&pm_arena_space_base, __ATOMIC_RELAXED);
}
static bool space_reserved(void)
{
    return space_base() != PM_ARENA_SPACE_NONE;
}

/* Arenas are committed from the space, lowest slot first. */
START_TEST(test_arenas_from_space)
{
    ck_assert(!space_reserved()); /* forked: no arena yet, no space */
    ck_assert(!pm_arena_space_contains(NULL));
    ck_assert(!pm_arena_space_contains((void *)(PM_ARENA_SPACE_NONE - 1)));
    void *p = pm_malloc(64);
    ck_assert_ptr_nonnull(p);
    ck_assert(space_reserved());
    ck_assert_uint_eq(space_base() % PM_ARENA_SIZE, 0);
    ck_assert(pm_arena_space_contains(p));
    ck_assert_uint_eq(pm_test_arena_base(p), space_base());
    ck_assert(!pm_arenas_outside_space);
    /* A glibc block and the space's ends as seen by free's first test. */
    void *g = __libc_malloc(64);
    ck_assert(!pm_arena_space_contains(g));
    __libc_free(g);
    ck_assert(!pm_arena_space_contains((void *)(space_base() - 1)));
    ck_assert(!pm_arena_space_contains((void *)(space_base() + PM_ARENA_SPACE_SIZE)));
    ck_assert(pm_arena_space_contains((void *)(space_base() + PM_ARENA_SPACE_SIZE - 1)));
    pm_free(p);
}
END_TEST

/* Whether the mapping holding `addr` is writable, from /proc/self/maps. */
static bool writable_at(uintptr_t addr)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    ck_assert_ptr_nonnull(maps);
    char line[512], perms[5] = "";
    unsigned long start, end;
    bool found = false;
    while (!found && fgets(line, sizeof line, maps) != NULL)
        found = sscanf(line, "%lx-%lx %4s", &start, &end, perms) == 3 && start <= addr &&
                addr < end;
    fclose(maps);
    ck_assert(found);
    return perms[1] == 'w';
}

/* A slot is made writable with the ones after it, 2 MiB at a time: one
 * mprotect for eight arenas (registry.c says why); the rest stays
 * read-only. */
START_TEST(test_space_committed_ahead)
{
    void *p = pm_malloc(64);
    ck_assert_uint_eq(pm_test_arena_base(p), space_base());
    for (unsigned slot = 0; slot < 8; slot++)
        ck_assert(writable_at(space_base() + slot * PM_ARENA_SIZE));
    ck_assert(!writable_at(space_base() + 8 * PM_ARENA_SIZE));
    ck_assert(!writable_at(space_base() + PM_ARENA_SPACE_SIZE - 1));
    pm_free(p);
}
END_TEST

static void *stale_block;
static void misuse_free_stale(void)
{
    pm_free(stale_block);
}

/* An arena that goes leaves its slot readable and zero (I13), not owned,
 * its pages given back and the slot still writable for the next arena; a
 * block of it freed again is reported as such; and the next arena takes
 * the lowest free slot again. */
START_TEST(test_space_slot_reused)
{
    pm_options.purge_delay_ms = 0;
    enum { COUNT = 2000 }; /* 512-byte blocks: four arenas or more */
    static void *blocks[COUNT];
    for (size_t i = 0; i < COUNT; i++)
        ck_assert_ptr_nonnull(blocks[i] = pm_malloc(PM_SMALL_MAX));
    uintptr_t last = pm_test_arena_base(blocks[COUNT - 1]);
    ck_assert_uint_ge(last, space_base() + 3 * PM_ARENA_SIZE);
    for (size_t i = 0; i < COUNT; i++)
        pm_free(blocks[i]);
    ck_assert_int_eq(pm_malloc_trim(0), 1);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.arenas_mapped, 0);
    for (uintptr_t a = space_base(); a <= last; a += PM_ARENA_SIZE) {
        ck_assert(!pm_owns((void *)a));
        /* Before the reads below, which map the zero page. */
        unsigned char in_core[PM_ARENA_SIZE / PM_OS_PAGE_SIZE];
        ck_assert_int_eq(mincore((void *)a, PM_ARENA_SIZE, in_core), 0);
        unsigned resident = 0;
        for (size_t page = 0; page < sizeof in_core; page++)
            resident += in_core[page] & 1;
        ck_assert_uint_eq(resident, 0);
        ck_assert(writable_at(a));
        ck_assert_uint_eq(*(volatile uint64_t *)(a + PM_ARENA_HEADER_SIZE + 4096), 0);
        ck_assert_uint_eq(*(volatile uint64_t *)a, 0); /* the descriptors, zero */
    }
    char buf[4096];
    stale_block = blocks[COUNT / 2];
    pm_test_capture_abort(misuse_free_stale, buf, sizeof buf);
    pm_test_assert_message(buf, "invalid free (pointer into poolmalloc's arena space, in no arena)");
    void *p = pm_malloc(PM_SMALL_MAX);
    ck_assert_uint_eq(pm_test_arena_base(p), space_base());
    pm_free(p);
}
END_TEST

/* The space's last pool, where no arena is yet. */
static void *space_without_arena(void)
{
    void *anchor = pm_malloc(32); /* an arena, so the space exists */
    (void)anchor;
    return (char *)space_base() + PM_ARENA_SPACE_SIZE - PM_POOL_SIZE;
}
static void misuse_free_in_space(void)
{
    pm_free(space_without_arena());
}
static void misuse_realloc_in_space(void)
{
    (void)pm_realloc(space_without_arena(), 100);
}

/* A pointer into the space where no arena is: diagnosed, not treated as
 * glibc's (whose free would read a chunk header there). */
START_TEST(test_misuse_in_space_without_arena)
{
    char buf[4096];
    pm_test_capture_abort(misuse_free_in_space, buf, sizeof buf);
    pm_test_assert_message(buf, "invalid free (pointer into poolmalloc's arena space, in no arena)");
    pm_test_capture_abort(misuse_realloc_in_space, buf, sizeof buf);
    pm_test_assert_message(buf, "invalid realloc (pointer into poolmalloc's arena space, in no arena)");
    ck_assert(!pm_owns(space_without_arena()));
}
END_TEST

/* Under RLIMIT_AS no space is reserved (it would count against the limit):
 * arenas are mapped one by one, and free asks the registry. */
START_TEST(test_no_space_under_address_limit)
{
    /* Finite, yet above any sanitizer's reservations. */
    struct rlimit limit = {RLIM_INFINITY - 1, RLIM_INFINITY - 1};
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &limit), 0);
    enum { COUNT = 2000 };
    static void *blocks[COUNT];
    for (size_t i = 0; i < COUNT; i++) {
        ck_assert_ptr_nonnull(blocks[i] = pm_malloc(PM_SMALL_MAX));
        ck_assert(pm_owns(blocks[i]));
    }
    ck_assert(!space_reserved());
    ck_assert(pm_arenas_outside_space);
    void *big = pm_malloc(PM_SMALL_MAX + 1);
    ck_assert(!pm_owns(big));
    pm_free(big);
    pm_free(NULL);
    for (size_t i = 0; i < COUNT; i++)
        pm_free(blocks[i]);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
    void *p = pm_malloc(24);
    pm_free(p);
    pm_free(p); /* still caught: the registry sends it to the checks */
}
END_TEST

Suite *make_registry_suite(void)
{
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("owns");
    tcase_add_test(tc, test_owns_small_blocks);
    tcase_add_test(tc, test_owns_zero_and_aligned);
    tcase_add_test(tc, test_not_owned_glibc);
    tcase_add_test(tc, test_not_owned_garbage);
    tcase_add_test(tc, test_not_owned_before_first_arena);
    suite_add_tcase(s, tc);

    tc = tcase_create("arena");
    tcase_add_test(tc, test_arena_geometry_many_classes);
    tcase_add_test(tc, test_owns_false_after_unmap);
    suite_add_tcase(s, tc);

    tc = tcase_create("space");
    tcase_add_test(tc, test_arenas_from_space);
    tcase_add_test(tc, test_space_committed_ahead);
    tcase_add_test(tc, test_space_slot_reused);
    tcase_add_test(tc, test_misuse_in_space_without_arena);
    tcase_add_test_raise_signal(tc, test_no_space_under_address_limit, SIGABRT);
    suite_add_tcase(s, tc);
    return s;
}
