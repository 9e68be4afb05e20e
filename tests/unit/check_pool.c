/* check_pool.c — pools and arenas seen through pm_*: carving (I7), reuse of
 * freed blocks before fresh ones, exact per-class counts (I3, I8), empty
 * pools released except the only one on a bin list (I4), arenas mapped as
 * pools fill and unmapped as they drain, with one kept in reserve (I5).
 * Each test starts from a pristine core (forked mode), which some assert as
 * a precondition; all run on one thread, so one heap. */
#include "support.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Blocks of `block_size` bytes in one whole arena. */
static size_t arena_capacity(size_t block_size)
{
    size_t n = 0;
    for (unsigned k = 0; k < PM_POOLS_PER_ARENA; k++)
        n += pm_test_pool_capacity(k, block_size);
    return n;
}

/* I7: a block is its pool's start plus a whole number of blocks. */
static void assert_block_geometry(const void *p, size_t block_size)
{
    uintptr_t base = pm_test_arena_base(p);
    unsigned k = pm_test_pool_index(p);
    uintptr_t start = base + ((size_t)k * PM_POOL_SIZE < PM_ARENA_HEADER_SIZE
                                  ? PM_ARENA_HEADER_SIZE
                                  : (size_t)k * PM_POOL_SIZE);
    PM_CHECK_EACH((uintptr_t)p >= start, "block %p before its pool", p);
    PM_CHECK_EACH(((uintptr_t)p - start) % block_size == 0,
                  "block %p is not pool start + i x %zu", p, block_size);
    PM_CHECK_EACH((uintptr_t)p + block_size <= base + (size_t)(k + 1) * PM_POOL_SIZE,
                  "block %p crosses its pool's end", p);
    PM_CHECK_EACH((uintptr_t)p % PM_CLASS_GRANULE == 0, "block %p", p);
}

/* Sorted copies of block lists, for set comparisons and overlap checks. */
static void sort_ptrs(void **v, size_t n)
{
    qsort(v, n, sizeof *v, pm_test_ptr_cmp);
}

static void assert_disjoint(void **sorted, size_t n, size_t block_size)
{
    for (size_t i = 1; i < n; i++)
        PM_CHECK_EACH((uintptr_t)sorted[i] - (uintptr_t)sorted[i - 1] >= block_size,
                      "blocks %p and %p overlap (%zu bytes)", sorted[i - 1],
                      sorted[i], block_size);
}

/* Carving one pool and reusing its freed blocks, for every class. An anchor
 * block keeps the pool IN USE while the others come and go, so the N freed
 * blocks sit on its free list and are handed out again before any
 * untouched memory. */
START_TEST(test_pool_carve_and_reuse)
{
    const int c = _i;
    const size_t bs = pm_class_block_size(c);
    /* Fits in any pool, pool 0 (shortened by the header) included. */
    const size_t n = pm_test_pool_capacity(0, bs) - 1;
    void **blocks = __libc_malloc(n * sizeof *blocks);
    void **first = __libc_malloc(n * sizeof *first);
    ck_assert_ptr_nonnull(blocks);
    ck_assert_ptr_nonnull(first);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].live_blocks, 0);
    ck_assert_uint_eq(s.classes[c].pools, 0);

    void *anchor = pm_malloc(bs);
    ck_assert_ptr_nonnull(anchor);
    assert_block_geometry(anchor, bs);
    for (size_t i = 0; i < n; i++) {
        /* Any request size of the class gets a block of the class. */
        size_t request = bs - (i % PM_CLASS_GRANULE);
        blocks[i] = pm_malloc(request);
        ck_assert_ptr_nonnull(blocks[i]);
        ck_assert_uint_eq(pm_malloc_usable_size(blocks[i]), bs);
        assert_block_geometry(blocks[i], bs);
        ck_assert_uint_eq(pm_test_arena_base(blocks[i]), pm_test_arena_base(anchor));
        ck_assert_uint_eq(pm_test_pool_index(blocks[i]), pm_test_pool_index(anchor));
        pm_test_pattern_fill(blocks[i], bs, (uint64_t)i);
        pm_stats_get(&s);
        ck_assert_uint_eq(s.classes[c].live_blocks, i + 2);
        ck_assert_uint_eq(s.classes[c].allocated_total, i + 2);
    }
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].pools, 1);
    ck_assert_uint_eq(s.small_live_blocks, n + 1);
    /* Writing every block whole left every other block intact. */
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(pm_test_pattern_ok(blocks[i], bs, (uint64_t)i),
                      "block %zu (%p) was overwritten", i, blocks[i]);
    memcpy(first, blocks, n * sizeof *first);
    sort_ptrs(first, n);
    assert_disjoint(first, n, bs);
    for (size_t i = 0; i < n; i++)
        ck_assert_ptr_ne(first[i], anchor);

    /* Free in an interleaved order; the count drops by exactly one each time. */
    size_t freed = 0;
    for (size_t stride_start = 0; stride_start < 3; stride_start++) {
        for (size_t i = stride_start; i < n; i += 3) {
            pm_free(blocks[i]);
            freed++;
            pm_stats_get(&s);
            ck_assert_uint_eq(s.classes[c].live_blocks, n + 1 - freed);
            ck_assert_uint_eq(s.classes[c].freed_total, freed);
        }
    }
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].live_blocks, 1);
    ck_assert_uint_eq(s.classes[c].pools, 1);

    /* The same n addresses come back. */
    for (size_t i = 0; i < n; i++) {
        blocks[i] = pm_malloc(bs);
        ck_assert_ptr_nonnull(blocks[i]);
    }
    sort_ptrs(blocks, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(blocks[i] == first[i], "reused set differs at %zu: %p vs %p",
                      i, blocks[i], first[i]);
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].live_blocks, n + 1);
    ck_assert_uint_eq(s.classes[c].allocated_total, 2 * n + 1);

    for (size_t i = 0; i < n; i++)
        pm_free(blocks[i]);
    pm_free(anchor);
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].live_blocks, 0);
    /* I4: an empty pool that is the only one on its bin list stays. */
    ck_assert_uint_eq(s.classes[c].pools, 1);
    ck_assert_uint_eq(s.small_live_blocks, 0);
    __libc_free(first);
    __libc_free(blocks);
}
END_TEST

/* A full pool that gets a block back serves it again: with one pool in the
 * bin, the freed block is the next one handed out. Once it is full again,
 * the next block needs a second pool. Emptied, the full pool parks beside
 * the second, which the bin keeps (I4): both stay the class's. */
START_TEST(test_pool_full_then_one_free)
{
    const int c = _i;
    const size_t bs = pm_class_block_size(c);
    void *first = pm_malloc(bs);
    ck_assert_ptr_nonnull(first);
    const size_t cap = pm_test_pool_capacity(pm_test_pool_index(first), bs);
    void **blocks = __libc_malloc(cap * sizeof *blocks);
    ck_assert_ptr_nonnull(blocks);
    blocks[0] = first;
    for (size_t i = 1; i < cap; i++) {
        blocks[i] = pm_malloc(bs);
        ck_assert_ptr_nonnull(blocks[i]);
        ck_assert_uint_eq(pm_test_arena_base(blocks[i]), pm_test_arena_base(first));
        ck_assert_uint_eq(pm_test_pool_index(blocks[i]), pm_test_pool_index(first));
    }
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].pools, 1);

    /* Punch holes one at a time in the full pool: each is the next block. */
    for (size_t i = cap / 2; i < cap; i += 7) {
        void *hole = blocks[i];
        pm_free(hole);
        void *again = pm_malloc(bs - 1);
        ck_assert_ptr_eq(again, hole);
        blocks[i] = again;
    }
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].pools, 1);
    ck_assert_uint_eq(s.classes[c].live_blocks, cap);

    /* Full again: the next block comes from another pool. */
    void *next_pool = pm_malloc(bs);
    ck_assert_ptr_nonnull(next_pool);
    ck_assert(pm_test_arena_base(next_pool) != pm_test_arena_base(first) ||
              pm_test_pool_index(next_pool) != pm_test_pool_index(first));
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].pools, 2);

    pm_free(next_pool);
    for (size_t i = 0; i < cap; i++)
        pm_free(blocks[i]);
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].pools, 2);
    ck_assert_ptr_eq(atomic_load(&pm_thread_heap->parked[c]), pm_pool_of(first));
    ck_assert_uint_eq(s.classes[c].live_blocks, 0);
    __libc_free(blocks);
}
END_TEST

/* A pool that empties beside another of its class parks (I4) while the
 * heap has fewer than 4 parked: in 5 classes in turn, a full pool is
 * emptied while the bin keeps a second; the first 4 park, the fifth goes
 * back to its arena, UNUSED. */
START_TEST(test_pool_parks_beside_others_up_to_four)
{
    enum { CLASSES = 5, FIRST_CLASS = 8 };
    static void *blocks[PM_POOL_SIZE / 16];
    pm_pool_t *emptied[CLASSES];
    for (int k = 0; k < CLASSES; k++) {
        const unsigned c = FIRST_CLASS + (unsigned)k;
        const size_t bs = pm_class_block_size(c);
        blocks[0] = pm_malloc(bs);
        ck_assert_ptr_nonnull(blocks[0]);
        emptied[k] = pm_pool_of(blocks[0]);
        const size_t cap = emptied[k]->capacity;
        for (size_t i = 1; i < cap; i++) {
            blocks[i] = pm_malloc(bs);
            ck_assert_ptr_eq(pm_pool_of(blocks[i]), emptied[k]);
        }
        void *kept = pm_malloc(bs); /* a second pool, which the bin keeps */
        ck_assert(pm_pool_of(kept) != emptied[k]);
        for (size_t i = 0; i < cap; i++)
            pm_free(blocks[i]);
        pm_pool_t *parked = atomic_load(&pm_thread_heap->parked[c]);
        if (k < 4) {
            ck_assert_ptr_eq(parked, emptied[k]);
            ck_assert_uint_eq(emptied[k]->class_index, c);
        } else {
            ck_assert_ptr_null(parked);
            ck_assert_uint_eq(emptied[k]->class_index, PM_CLASS_NONE);
        }
    }
    ck_assert(pm_heap_validate());
}
END_TEST

/* PARKING IN A ROW (heap.c): a batch of blocks filling several pools of a
 * class, made and freed whole again and again. The first time, the class
 * parks one pool and sends the rest back to their arenas; the next batch
 * takes as many from the arenas within the delay, and so teaches the heap
 * to park them all, so that the third batch takes none from the arenas.
 * Once parked pools wait out the delay unused, they go back, and the
 * allowance falls with them. */
enum { ROW_POOLS = 6 };
static void *row[ROW_POOLS * (PM_POOL_SIZE / 256)];

static size_t row_batch(size_t size)
{
    size_t count = ROW_POOLS * (PM_POOL_SIZE / size) - 1;
    for (size_t i = 0; i < count; i++) {
        row[i] = pm_malloc(size);
        ck_assert_ptr_nonnull(row[i]);
    }
    return count;
}

static unsigned parked_in_class(unsigned c)
{
    unsigned count = 0;
    for (pm_pool_t *p = atomic_load(&pm_thread_heap->parked[c]); p != NULL; p = p->next)
        count++;
    return count;
}

START_TEST(test_pool_parks_in_a_row)
{
    pm_options.purge_delay_ms = 60000;
    const unsigned c = pm_class_of(256);
    pm_stats_t before, after;
    for (int round = 0; round < 3; round++) {
        pm_test_stats(&before);
        size_t count = row_batch(256);
        pm_test_stats(&after);
        if (round == 2) /* every pool of the batch came back from parked */
            ck_assert_uint_eq(after.unused_pools, before.unused_pools);
        for (size_t i = count; i-- > 0;) /* newest first */
            pm_free(row[i]);
        ck_assert(pm_heap_validate());
        if (round == 0)
            ck_assert_uint_eq(parked_in_class(c), 1);
        else
            ck_assert_uint_ge(parked_in_class(c), ROW_POOLS - 1);
    }
    ck_assert_uint_ge(atomic_load(&pm_thread_heap->park_allowance), ROW_POOLS - 2);
    pm_options.purge_delay_ms = 20;
    pm_test_sleep_ms(40);
    pm_heap_release_parked_if_due(NULL, pm_os_coarse_ms());
    ck_assert_uint_eq(parked_in_class(c), 0);
    ck_assert_uint_eq(atomic_load(&pm_thread_heap->parked_count), 0);
    ck_assert_uint_eq(atomic_load(&pm_thread_heap->park_allowance), 0);
    ck_assert(pm_heap_validate());
}
END_TEST

/* POOLMALLOC_RETAIN_POOLS_MAX bounds the allowance: a class parks at most
 * that many pools beyond its first. */
START_TEST(test_pool_parks_in_a_row_within_retain_max)
{
    pm_options.purge_delay_ms = 60000;
    pm_options.retain_pools_max = 2;
    const unsigned c = pm_class_of(256);
    for (int round = 0; round < 3; round++) {
        size_t count = row_batch(256);
        for (size_t i = count; i-- > 0;)
            pm_free(row[i]);
    }
    ck_assert_uint_eq(atomic_load(&pm_thread_heap->park_allowance), 2);
    ck_assert_uint_eq(parked_in_class(c), 3);
    ck_assert(pm_heap_validate());
}
END_TEST

/* A class with none parked takes the newest pool of another class's run
 * of parked pools, made a pool of its own class, with its pages; never a
 * class's only parked pool. */
START_TEST(test_pool_takes_parked_of_other_class)
{
    pm_options.purge_delay_ms = 60000;
    const unsigned c = pm_class_of(256), other = pm_class_of(64);
    for (int round = 0; round < 2; round++) {
        size_t count = row_batch(256);
        for (size_t i = count; i-- > 0;)
            pm_free(row[i]);
    }
    unsigned run = parked_in_class(c);
    ck_assert_uint_ge(run, 2);
    pm_pool_t *newest = atomic_load(&pm_thread_heap->parked[c]);
    pm_stats_t before, after;
    pm_test_stats(&before);
    void *p = pm_malloc(64);
    pm_test_stats(&after);
    ck_assert_ptr_eq(pm_pool_of(p), newest);
    ck_assert_uint_eq(newest->class_index, other);
    ck_assert_uint_eq(newest->block_size, 64);
    ck_assert_uint_eq(parked_in_class(c), run - 1);
    ck_assert_uint_eq(after.unused_pools, before.unused_pools);
    ck_assert_uint_eq(after.classes[other].pools, before.classes[other].pools + 1);
    ck_assert_uint_eq(after.classes[c].pools, before.classes[c].pools - 1);
    ck_assert(pm_heap_validate());
    pm_free(p);
    /* Down to one parked pool of the class: that one stays the class's. */
    for (unsigned k = 0; k + 2 < run; k++)
        pm_free(pm_malloc(64 + 16 * (k + 1)));
    ck_assert_uint_eq(parked_in_class(c), 1);
    pm_test_stats(&before);
    void *q = pm_malloc(400);
    pm_test_stats(&after);
    ck_assert_uint_eq(parked_in_class(c), 1);
    ck_assert_uint_eq(after.unused_pools + 1, before.unused_pools);
    pm_free(q);
    ck_assert(pm_heap_validate());
}
END_TEST

/* When the pool serving runs out, the fuller of the first two pools with
 * free blocks serves next, whichever came back to the bin list first: the
 * other, which the program is emptying, is left to drain. Pools A, B and C
 * of 512-byte blocks are filled, D serves; A gets its regaining batch back
 * first (so it is first on the list), then B; A goes on being emptied. The
 * next blocks not from D come from B, and from A only once B is full
 * again. B serves where it is on the list, behind A (heap.c,
 * bin_serve_head). */
START_TEST(test_pool_fuller_serves_first)
{
    enum { SIZE = 512, MAX = 8 * PM_POOL_SIZE / SIZE };
    static char *blocks[MAX];
    pm_pool_t *pools[4];
    size_t first_of[4], n = 0;
    for (unsigned k = 0; k < 4; k++) {
        first_of[k] = n;
        blocks[n] = pm_malloc(SIZE);
        pools[k] = pm_pool_of(blocks[n++]);
        while (k < 3 && pm_pool_used(pools[k]) < pools[k]->capacity) {
            blocks[n] = pm_malloc(SIZE);
            ck_assert_ptr_eq(pm_pool_of(blocks[n++]), pools[k]);
        }
    }
    pm_pool_t *a = pools[0], *b = pools[1], *d = pools[3];
    const size_t a_batch = pm_pool_regain_batch(a), b_batch = pm_pool_regain_batch(b);
    enum { A_FREED = 9 };
    ck_assert_uint_lt(a_batch, A_FREED);
    size_t freed[2 * A_FREED], n_freed = 0;
    for (size_t i = 0; i < a_batch; i++)
        freed[n_freed++] = first_of[0] + i;
    for (size_t i = 0; i < b_batch; i++)
        freed[n_freed++] = first_of[1] + i;
    for (size_t i = a_batch; i < A_FREED; i++)
        freed[n_freed++] = first_of[0] + i;
    for (size_t i = 0; i < n_freed; i++) {
        pm_free(blocks[freed[i]]);
        blocks[freed[i]] = NULL;
    }
    ck_assert(pm_pool_on_bin_list(a) && pm_pool_on_bin_list(b));
    ck_assert_uint_eq(pm_pool_used(b), b->capacity - b_batch);
    ck_assert_uint_eq(pm_pool_used(a), a->capacity - A_FREED);
    char *p;
    do {
        ck_assert_uint_lt(n, MAX);
        p = blocks[n++] = pm_malloc(SIZE);
    } while (pm_pool_of(p) == d);
    ck_assert_ptr_eq(pm_pool_of(p), b);
    const pm_bin_t *bin = &pm_thread_heap->bins[pm_class_of(SIZE)];
    ck_assert_ptr_eq(bin->serving, b);
    ck_assert_ptr_eq(b->prev, a); /* not moved in front of A */
    ck_assert_ptr_ne(bin->pools, b);
    ck_assert(pm_heap_validate());
    for (size_t i = 1; i < b_batch; i++) {
        p = blocks[n++] = pm_malloc(SIZE);
        ck_assert_ptr_eq(pm_pool_of(p), b);
    }
    p = blocks[n++] = pm_malloc(SIZE);
    ck_assert_ptr_eq(pm_pool_of(p), a);
    ck_assert_ptr_eq(bin->serving, a);
    ck_assert(!pm_pool_on_bin_list(b) && b->regaining); /* full again: off the list */
    ck_assert(pm_heap_validate());
    for (size_t i = 0; i < n; i++)
        pm_free(blocks[i]);
    ck_assert(pm_heap_validate());
}
END_TEST

/* REGAINING (heap.c): a full pool off its bin list that gets blocks back
 * stays off it, its free blocks unseen by malloc, until a batch of them
 * came back (I4); then it joins the list, and serves them when the pool
 * serving runs out. A sixteenth of the pool, and 3 blocks at least: the
 * pools of 512-byte blocks hold 32 or fewer, and a batch of 2 made a pool
 * switch of every third malloc under random replacement. */
static const size_t regain_sizes[] = {64, 512};
START_TEST(test_pool_regains_in_batches)
{
    const size_t SIZE = regain_sizes[_i];
    static void *in_b[PM_POOL_SIZE / 64], *from_a[PM_POOL_SIZE / 64];
    in_b[0] = pm_malloc(SIZE);
    pm_pool_t *b = pm_pool_of(in_b[0]);
    for (size_t i = 1; i < b->capacity; i++) {
        in_b[i] = pm_malloc(SIZE);
        ck_assert_ptr_eq(pm_pool_of(in_b[i]), b);
    }
    size_t n_a = 0;
    from_a[n_a++] = pm_malloc(SIZE); /* B is full: A serves */
    pm_pool_t *a = pm_pool_of(from_a[0]);
    ck_assert(a != b && !pm_pool_on_bin_list(b));
    const size_t batch = pm_pool_regain_batch(b);
    ck_assert_uint_ge(batch, 3);
    ck_assert_uint_ge(batch, b->capacity / 16);
    ck_assert_uint_le(batch, b->capacity / 8);
    for (size_t i = 0; i + 1 < batch; i++) {
        pm_free(in_b[i]);
        ck_assert(b->regaining && !pm_pool_on_bin_list(b));
        ck_assert_uint_eq(pm_pool_used(b), b->capacity - 1 - i);
        ck_assert(pm_heap_validate());
        from_a[n_a] = pm_malloc(SIZE);
        ck_assert_ptr_eq(pm_pool_of(from_a[n_a++]), a);
    }
    pm_free(in_b[batch - 1]);
    ck_assert(!b->regaining && pm_pool_on_bin_list(b));
    ck_assert(pm_heap_validate());
    /* A serves on until its carved blocks run out; then B, its batch. */
    char *p;
    while (pm_pool_of(p = pm_malloc(SIZE)) == a) {
        ck_assert_uint_lt(n_a, PM_POOL_SIZE / SIZE);
        from_a[n_a++] = p;
    }
    for (size_t i = 0; i < batch; i++) {
        if (i > 0)
            p = pm_malloc(SIZE);
        ck_assert_ptr_eq(pm_pool_of(p), b);
        in_b[i] = p;
    }
    ck_assert_uint_eq(pm_pool_used(b), b->capacity);
    ck_assert(pm_heap_validate());
    for (size_t i = 0; i < b->capacity; i++)
        pm_free(in_b[i]);
    for (size_t i = 0; i < n_a; i++)
        pm_free(from_a[i]);
    ck_assert(pm_heap_validate());
}
END_TEST

/* ADDRESS ORDER (pool.c): a full pool freed in a scattered order, all but
 * a few blocks, serves next time from its lowest free block up, as it was
 * carved; without the relinking it would hand them out in the reverse of
 * that scattered order. */
START_TEST(test_pool_serves_in_address_order)
{
    enum { SIZE = 48, KEEP = 8 };
    static char *in_b[PM_POOL_SIZE / SIZE];
    in_b[0] = pm_malloc(SIZE);
    pm_pool_t *b = pm_pool_of(in_b[0]);
    size_t capacity = b->capacity;
    for (size_t i = 1; i < capacity; i++) {
        in_b[i] = pm_malloc(SIZE);
        ck_assert_ptr_eq(pm_pool_of(in_b[i]), b);
    }
    /* The next malloc finds B full: another pool serves. */
    char *in_a = pm_malloc(SIZE);
    pm_pool_t *a = pm_pool_of(in_a);
    ck_assert(a != b);
    /* B's blocks freed by a stride prime to its capacity, but the first
     * KEEP made. */
    static char *freed[PM_POOL_SIZE / SIZE];
    size_t n_freed = 0;
    size_t stride = capacity % 7 != 0 ? 7 : 11;
    ck_assert_uint_ne(capacity % stride, 0);
    for (size_t j = 0; j < capacity; j++) {
        size_t i = j * stride % capacity;
        if (i >= KEEP) {
            pm_free(in_b[i]);
            freed[n_freed++] = in_b[i];
        }
    }
    ck_assert_uint_eq(pm_pool_used(b), KEEP);
    ck_assert(pm_heap_validate());
    sort_ptrs((void **)freed, n_freed);
    /* A serves until its carved stretch runs out; then B, from its lowest
     * free block up, every one of them. */
    static char *from_a[PM_POOL_SIZE / SIZE];
    size_t n_a = 0;
    char *p;
    while (pm_pool_of(p = pm_malloc(SIZE)) == a) {
        ck_assert_uint_lt(n_a, capacity);
        from_a[n_a++] = p;
    }
    for (size_t i = 0; i < n_freed; i++) {
        if (i > 0)
            p = pm_malloc(SIZE);
        ck_assert_ptr_eq(p, freed[i]);
        in_b[KEEP + i] = p;
    }
    ck_assert_uint_eq(pm_pool_used(b), capacity);
    ck_assert(pm_heap_validate());
    for (size_t i = 0; i < capacity; i++)
        pm_free(in_b[i]);
    for (size_t i = 0; i < n_a; i++)
        pm_free(from_a[i]);
    pm_free(in_a);
    ck_assert(pm_heap_validate());
}
END_TEST

/* Fill several arenas with one class: pools are used up one by one (at most
 * one of the class is partial), each holds its capacity, the stats count
 * exactly the pools and arenas seen; then drain them all. */
static const int fill_classes[] = {0, 2, 7, 20, 31};

START_TEST(test_pool_fill_arenas)
{
    /* No purge delay: an empty arena goes as soon as its pools' pages
     * do (I5, I10), which is what this test watches for. */
    pm_options.purge_delay_ms = 0;
    const int c = fill_classes[_i];
    const size_t bs = pm_class_block_size(c);
    const size_t per_arena = arena_capacity(bs);
    const size_t n = 3 * per_arena + per_arena / 2; /* three and a half arenas */
    void **blocks = __libc_malloc(n * sizeof *blocks);
    void **sorted = __libc_malloc(n * sizeof *sorted);
    ck_assert_ptr_nonnull(blocks);
    ck_assert_ptr_nonnull(sorted);
    pm_stats_t before, s;
    pm_test_stats(&before);
    ck_assert_uint_eq(before.arenas_mapped, 0);

    for (size_t i = 0; i < n; i++) {
        blocks[i] = pm_malloc(bs);
        PM_CHECK_EACH(blocks[i] != NULL, "block %zu", i);
        *(uint64_t *)blocks[i] = (uint64_t)i;
        ((unsigned char *)blocks[i])[bs - 1] = (unsigned char)i;
    }
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].live_blocks, n);
    ck_assert_uint_eq(s.small_live_bytes, n * bs);

    memcpy(sorted, blocks, n * sizeof *sorted);
    sort_ptrs(sorted, n);
    assert_disjoint(sorted, n, bs);
    size_t pools = 0, arenas = 0, partial = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && pm_test_arena_base(sorted[j]) == pm_test_arena_base(sorted[i]) &&
               pm_test_pool_index(sorted[j]) == pm_test_pool_index(sorted[i])) {
            assert_block_geometry(sorted[j], bs);
            j++;
        }
        size_t cap = pm_test_pool_capacity(pm_test_pool_index(sorted[i]), bs);
        ck_assert_uint_le(j - i, cap);
        partial += j - i < cap;
        if (i == 0 || pm_test_arena_base(sorted[i]) != pm_test_arena_base(sorted[i - 1]))
            arenas++;
        pools++;
        i = j;
    }
    ck_assert_uint_le(partial, 1); /* pools fill before a new one is taken */
    ck_assert_uint_eq(s.classes[c].pools, pools);
    ck_assert_uint_eq(s.arenas_mapped, arenas);
    ck_assert_uint_eq(arenas, 4); /* nearly full arenas are filled first */
    ck_assert_uint_ge(s.arenas_peak, 4);

    /* Drain: every other block, then the rest, checking contents on the way. */
    for (size_t pass = 0; pass < 2; pass++) {
        for (size_t i = pass; i < n; i += 2) {
            ck_assert_uint_eq(*(uint64_t *)blocks[i], (uint64_t)i);
            ck_assert_uint_eq(((unsigned char *)blocks[i])[bs - 1], (unsigned char)i);
            pm_free(blocks[i]);
        }
        pm_test_stats(&s);
        ck_assert_uint_eq(s.classes[c].live_blocks, pass == 0 ? n / 2 : 0);
    }
    ck_assert_uint_eq(s.small_live_blocks, before.small_live_blocks);
    ck_assert_uint_eq(s.small_live_bytes, 0);
    ck_assert_uint_eq(s.classes[c].freed_total, n);
    /* What stays mapped: the arena of the one empty pool the bin keeps
     * (I4), and one arena with every pool unused, the reserve (I5). */
    ck_assert_uint_eq(s.classes[c].pools, 1);
    ck_assert_uint_eq(s.arenas_mapped, 2);
    ck_assert_uint_eq(s.arenas_destroyed_total, arenas - 2);
    ck_assert_uint_eq(s.arenas_peak, arenas);
    __libc_free(sorted);
    __libc_free(blocks);
}
END_TEST

/* No mmap/munmap per cycle: a lone block allocated and freed a thousand
 * times is served by one arena (its empty pool stays in the bin, I4). */
START_TEST(test_lone_block_cycle)
{
    pm_stats_t s;
    for (int i = 0; i < 1000; i++) {
        void *p = pm_malloc(40);
        ck_assert_ptr_nonnull(p);
        pm_free(p);
        pm_stats_get(&s);
        ck_assert_uint_eq(s.arenas_mapped, 1);
    }
    pm_test_stats(&s);
    ck_assert_uint_eq(s.arenas_created_total, 1);
    ck_assert_uint_eq(s.arenas_destroyed_total, 0);
    ck_assert_uint_eq(s.small_live_blocks, 0);
}
END_TEST

/* I4, kept pools: the only pool of a class, emptied by its owner within its
 * first page, stays, and is kept: its next emptyings do not reach the slow
 * path (PM_POOL_KEPT). Kept no longer once it carves, or once another pool
 * joins its list; then its next emptying is decided as any other's:
 * released with another pool beside it, parked once past its first page. */
START_TEST(test_pool_kept_when_alone)
{
    const unsigned c = pm_class_of(48);
    const size_t bs = pm_class_block_size(c);

    /* B, filled; then A, which the next malloc takes, alone on the list. */
    static void *in_b[PM_POOL_SIZE / 16];
    in_b[0] = pm_malloc(bs);
    pm_bin_t *bin = &pm_thread_heap->bins[c]; /* the heap is made now */
    pm_pool_t *b = pm_pool_of(in_b[0]);
    for (size_t i = 1; i < b->capacity; i++)
        in_b[i] = pm_malloc(bs);
    void *p = pm_malloc(bs);
    pm_pool_t *a = pm_pool_of(p);
    ck_assert(a != b);
    ck_assert(!pm_pool_on_bin_list(b)); /* full, off the list */
    ck_assert(!pm_pool_kept(a));
    pm_free(p); /* A empties alone: kept */
    ck_assert(pm_pool_kept(a));
    ck_assert_ptr_eq(bin->pools, a);
    ck_assert_uint_eq(pm_pool_used(a), 0);
    for (int i = 0; i < 1000; i++) {
        p = pm_malloc(bs);
        ck_assert_ptr_eq(pm_pool_of(p), a);
        ck_assert_uint_eq(pm_pool_used(a), 1);
        pm_free(p);
        ck_assert(pm_pool_kept(a));
        ck_assert_uint_eq(pm_pool_used(a), 0);
    }
    ck_assert(pm_heap_validate());

    /* B regains room, a batch of blocks (REGAINING, heap.c), and joins the
     * list: A is not kept, and the next time it empties it goes back to
     * its arena, B beside it. */
    const size_t batch = pm_pool_regain_batch(b);
    for (size_t i = 0; i + 1 < batch; i++) {
        pm_free(in_b[i]);
        ck_assert(b->regaining && !pm_pool_on_bin_list(b));
        ck_assert(pm_pool_kept(a));
    }
    pm_free(in_b[batch - 1]);
    ck_assert(!b->regaining && pm_pool_on_bin_list(b));
    ck_assert(!pm_pool_kept(a));
    ck_assert(pm_heap_validate());
    p = pm_malloc(bs);
    ck_assert_ptr_eq(pm_pool_of(p), a); /* the head serves */
    pm_free(p);
    ck_assert_uint_eq(a->class_index, PM_CLASS_NONE);
    ck_assert_ptr_eq(bin->pools, b);

    /* B, emptied down to one block, then that one freed: B is alone but
     * carved past its first page, so it parks rather than stay kept. */
    for (size_t i = batch; i + 1 < b->capacity; i++)
        pm_free(in_b[i]);
    ck_assert(!pm_pool_kept(b));
    pm_free(in_b[b->capacity - 1]);
    ck_assert(!pm_pool_kept(b));
    ck_assert_ptr_eq(atomic_load(&pm_thread_heap->parked[c]), b);

    /* A pool of another class, kept, then carved past its first page:
     * not kept, and when it empties again it parks. */
    const unsigned c2 = pm_class_of(96);
    const size_t bs2 = pm_class_block_size(c2);
    p = pm_malloc(bs2);
    pm_pool_t *d = pm_pool_of(p);
    pm_free(p);
    ck_assert(pm_pool_kept(d));
    size_t past_first_page = PM_OS_PAGE_SIZE / bs2 + 2;
    for (size_t i = 0; i < past_first_page; i++)
        in_b[i] = pm_malloc(bs2);
    ck_assert(!pm_pool_kept(d));
    for (size_t i = 0; i < past_first_page; i++)
        pm_free(in_b[i]);
    ck_assert(!pm_pool_kept(d));
    ck_assert_ptr_eq(atomic_load(&pm_thread_heap->parked[c2]), d);
    ck_assert(pm_heap_validate());
}
END_TEST

/* I5: of the arenas that drain completely, one is kept as the reserve and
 * reused by the next round, the others are unmapped. */
START_TEST(test_reserve_arena)
{
    /* No purge delay: an empty arena goes as soon as its pools' pages
     * do (I5, I10), which is what this test watches for. */
    pm_options.purge_delay_ms = 0;
    const size_t bs = 256;
    const size_t n = 3 * arena_capacity(bs); /* exactly three arenas */
    void **blocks = __libc_malloc(n * sizeof *blocks);
    ck_assert_ptr_nonnull(blocks);
    pm_stats_t s;
    for (uint64_t round = 1; round <= 3; round++) {
        for (size_t i = 0; i < n; i++) {
            blocks[i] = pm_malloc(bs);
            ck_assert_ptr_nonnull(blocks[i]);
        }
        pm_test_stats(&s);
        ck_assert_uint_eq(s.arenas_mapped, 3);
        /* Round 1 maps three; later rounds find the reserve still mapped
         * and map two. */
        ck_assert_uint_eq(s.arenas_created_total, 3 + 2 * (round - 1));
        for (size_t i = 0; i < n; i++)
            pm_free(blocks[i]);
        pm_test_stats(&s);
        ck_assert_uint_eq(s.small_live_blocks, 0);
        /* With no purge delay even the bin's last pool, which spans
         * pages, goes back at once (I4). */
        ck_assert_uint_eq(s.classes[pm_size_class(bs)].pools, 0);
        ck_assert_uint_eq(s.arenas_mapped, 1);
        ck_assert_uint_eq(s.arenas_destroyed_total, 2 * round);
        ck_assert_uint_eq(s.arenas_peak, 3);
    }
    __libc_free(blocks);
}
END_TEST

/* A bin's first PM_HEAP_COLOURED_POOLS pools hand their first stretch out
 * from a colour (not all at their first line); later pools hand blocks out
 * in address order from their first byte, so a program walking its objects
 * in the order it made them walks memory in order (pm_pool_carve). */
START_TEST(test_pool_colour_first_pools_only)
{
    enum { POOLS = PM_HEAP_COLOURED_POOLS + 4 };
    const size_t bs = 64;
    pm_pool_t *seen[POOLS];
    char *first[POOLS];
    size_t pools = 0;
    char *prev = NULL;
    bool ascending_after_colour = true;
    while (pools < POOLS) {
        char *p = pm_malloc(bs);
        ck_assert_ptr_nonnull(p);
        pm_pool_t *pool = pm_pool_of(p);
        if (pools == 0 || seen[pools - 1] != pool) {
            seen[pools] = pool;
            first[pools++] = p;
        } else if (pools > PM_HEAP_COLOURED_POOLS && p != prev + bs) {
            ascending_after_colour = false;
        }
        prev = p;
    }
    size_t at_start = 0;
    for (size_t k = 0; k < PM_HEAP_COLOURED_POOLS; k++)
        at_start += first[k] == pm_pool_start(seen[k]);
    ck_assert_uint_lt(at_start, PM_HEAP_COLOURED_POOLS);
    for (size_t k = PM_HEAP_COLOURED_POOLS; k < POOLS; k++)
        ck_assert_ptr_eq(first[k], pm_pool_start(seen[k]));
    ck_assert(ascending_after_colour);
}
END_TEST

/* Page `page` of the pool starting at `start` is resident (mincore). */
static bool pool_page_resident(const char *start, unsigned page)
{
    unsigned char in_core = 0;
    ck_assert_int_eq(mincore((void *)(start + (size_t)page * PM_OS_PAGE_SIZE), PM_OS_PAGE_SIZE,
                             &in_core), 0);
    return in_core & 1;
}

/* The kernel can populate pages: MADV_POPULATE_WRITE, Linux 5.14. */
static bool kernel_populates(void)
{
    return pm_test_kernel_takes_advice(MADV_POPULATE_WRITE);
}

/* pm_os_purge_add and pm_os_purge_flush give back exactly the ranges added:
 * every other pool of a 44-pool mapping, and pool 11, which joins pools 10
 * and 12 into one range: 21 ranges, so the batch fills and flushes once on
 * its own.
 * Run before and after the process has a second thread: one range at a
 * time through madvise, then in one process_madvise call where the kernel
 * has it (allocator/os.c); and with POOLMALLOC_PURGE_BATCH=0, one madvise
 * a range again. */
START_TEST(test_os_purge_batch)
{
    enum { POOLS = 44 };
    uint64_t batch_option = pm_options.purge_batch;
    for (int round = 0; round < 3; round++) {
        pm_options.purge_batch = round < 2;
        if (round == 1)
            pm_test_become_multithreaded();
        char *map = mmap(NULL, (size_t)POOLS * PM_POOL_SIZE, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ck_assert_ptr_ne(map, MAP_FAILED);
        memset(map, 0xab, (size_t)POOLS * PM_POOL_SIZE);
        bool purged[POOLS] = {false};
        pm_os_purge_batch_t batch = {.count = 0};
        for (unsigned k = 0; k < POOLS; k += 2) {
            purged[k] = true;
            pm_os_purge_add(&batch, map + (size_t)k * PM_POOL_SIZE, PM_POOL_SIZE);
            if (k == 10) { /* its neighbour, and so the next, join its range */
                purged[k + 1] = true;
                pm_os_purge_add(&batch, map + (size_t)(k + 1) * PM_POOL_SIZE, PM_POOL_SIZE);
            }
        }
        ck_assert_uint_eq(batch.count, 21 - PM_OS_PURGE_BATCH);
        pm_os_purge_flush(&batch);
        ck_assert_uint_eq(batch.count, 0);
        for (unsigned k = 0; k < POOLS; k++) {
            const char *pool = map + (size_t)k * PM_POOL_SIZE;
            for (unsigned page = 0; page < PM_POOL_SIZE / PM_OS_PAGE_SIZE; page++)
                ck_assert_msg(pool_page_resident(pool, page) == !purged[k],
                              "round %d pool %u page %u", round, k, page);
            ck_assert_int_eq(pool[0], purged[k] ? 0 : (char)0xab);
            ck_assert_int_eq(pool[PM_POOL_SIZE - 1], purged[k] ? 0 : (char)0xab);
        }
        munmap(map, (size_t)POOLS * PM_POOL_SIZE);
    }
    pm_options.purge_batch = batch_option;
}
END_TEST

/* Carving makes a stretch's pages resident in one call (pm_os_populate)
 * where writing its links would take a page fault each, and no page before
 * a block carved needs it. With 48-byte blocks, the 85 that end in the
 * pool's first page are its first stretch: the second page stays out of
 * memory while they are handed out. The 86th runs from the first page into
 * the second, and the stretch it opens makes the second resident, not the
 * third. A pool whose pages were given back (malloc_trim) carves them
 * resident again. Skipped on a kernel without MADV_POPULATE_WRITE (before
 * 5.14), where carving leaves it to the page faults. */
START_TEST(test_pool_carve_populates_pages)
{
    if (!kernel_populates())
        return;
    enum { PAGE_BLOCKS = PM_OS_PAGE_SIZE / 48 }; /* 85 */
    static char *blocks[PAGE_BLOCKS + 1];
    for (int round = 0; round < 2; round++) {
        blocks[0] = pm_malloc(48);
        ck_assert_ptr_nonnull(blocks[0]);
        pm_pool_t *pool = pm_pool_of(blocks[0]);
        const char *start = pm_pool_start(pool);
        for (size_t i = 1; i < PAGE_BLOCKS; i++) {
            blocks[i] = pm_malloc(48);
            ck_assert_ptr_eq(pm_pool_of(blocks[i]), pool);
            ck_assert(blocks[i] + 48 <= start + PM_OS_PAGE_SIZE);
        }
        ck_assert_uint_eq(pool->touched_pages, 1);
        ck_assert(pool_page_resident(start, 0));
        ck_assert(!pool_page_resident(start, 1));
        blocks[PAGE_BLOCKS] = pm_malloc(48);
        ck_assert_ptr_eq(blocks[PAGE_BLOCKS], start + PAGE_BLOCKS * 48);
        ck_assert_uint_eq(pool->touched_pages, 2);
        ck_assert(pool_page_resident(start, 1));
        ck_assert(!pool_page_resident(start, 2));
        for (size_t i = 0; i <= PAGE_BLOCKS; i++)
            pm_free(blocks[i]);
        ck_assert_int_eq(pm_malloc_trim(0), 1);
        ck_assert_uint_eq(pool->touched_pages, 0);
        ck_assert(!pool_page_resident(start, 0));
        ck_assert(!pool_page_resident(start, 1));
    }
}
END_TEST

/* The pool after `pool` in its arena. */
static pm_pool_t *next_pool(pm_pool_t *pool)
{
    return &pm_arena_of(pool)->pools[pm_pool_index_of(pool) + 1];
}

/* A heap that has filled more than PM_HEAP_COLOURED_POOLS pools of a class
 * takes the next bare pool with the ones after it in its arena, populated
 * in one call: at most one for every 32 pools in use (none for a program
 * this small), and as many as the retained list has room for. They wait
 * UNUSED, resident and retained (I10), and are handed out next, in address
 * order, without carving populating them again. */
START_TEST(test_pool_populate_ahead)
{
    if (!kernel_populates())
        return;
    enum { SIZE = 512, BLOCKS = 600 * PM_POOL_SIZE / SIZE };
    static char *blocks[BLOCKS];
    size_t n = 0;
    pm_stats_t stats;
    /* 20 pools in use: a growing heap, no look-ahead. */
    while (n < 20 * PM_POOL_SIZE / SIZE) {
        blocks[n] = pm_malloc(SIZE);
        ck_assert_ptr_nonnull(blocks[n++]);
    }
    pm_test_stats(&stats);
    ck_assert_uint_eq(stats.retained_pools, 0);
    /* Past 480 pools in use (so a whole arena's worth ahead), up to the
     * first block of a fresh arena. */
    pm_pool_t *pool;
    do {
        ck_assert_uint_lt(n, BLOCKS);
        blocks[n] = pm_malloc(SIZE);
        ck_assert_ptr_nonnull(blocks[n]);
        pool = pm_pool_of(blocks[n++]);
    } while (n < 480 * PM_POOL_SIZE / SIZE || pm_pool_index_of(pool) != 0 ||
             blocks[n - 1] != pm_pool_start(pool));
    ck_assert_uint_eq(pool->touched_pages, pm_pool_bytes(0) / PM_OS_PAGE_SIZE);
    pm_test_stats(&stats);
    ck_assert_uint_eq(stats.retained_pools, PM_POOLS_PER_ARENA - 1);
    for (pm_pool_t *ahead = next_pool(pool); pm_pool_index_of(ahead) < PM_POOLS_PER_ARENA - 1;
         ahead = next_pool(ahead)) {
        ck_assert_uint_eq(ahead->class_index, PM_CLASS_NONE);
        ck_assert_uint_eq(ahead->touched_pages, PM_POOL_SIZE / PM_OS_PAGE_SIZE);
        for (unsigned page = 0; page < PM_POOL_SIZE / PM_OS_PAGE_SIZE; page++)
            ck_assert(pool_page_resident(pm_pool_start(ahead), page));
    }
    /* Handed out next, in order, each one carved whole by one stretch. */
    for (unsigned k = 1; k < PM_POOLS_PER_ARENA; k++) {
        while (pool->carve_index < pool->capacity || pool->free_list != NULL) {
            blocks[n] = pm_malloc(SIZE);
            ck_assert_ptr_eq(pm_pool_of(blocks[n++]), pool);
        }
        blocks[n] = pm_malloc(SIZE);
        ck_assert_ptr_eq(pm_pool_of(blocks[n]), next_pool(pool));
        pool = pm_pool_of(blocks[n++]);
        ck_assert_ptr_eq(blocks[n - 1], pm_pool_start(pool));
    }
    pm_test_stats(&stats);
    ck_assert_uint_eq(stats.retained_pools, 0);
    ck_assert(pm_heap_validate());
    for (size_t i = 0; i < n; i++)
        pm_free(blocks[i]);
    ck_assert(pm_heap_validate());
}
END_TEST

/* A sandbox whose seccomp filter refuses MADV_POPULATE_WRITE (EPERM), as
 * one written before the advice existed may: carving falls back to page
 * faults, and blocks over several pages and classes work as before. */
START_TEST(test_pool_carve_without_populate)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_madvise, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MADV_POPULATE_WRITE, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    /* A container that forbids filters of one's own skips the test. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0)
        return;
    ck_assert(!kernel_populates());

    enum { BLOCKS = 2000 };
    static char *blocks[BLOCKS];
    for (size_t i = 0; i < BLOCKS; i++) {
        size_t size = 16 + (i % 8) * 40;
        blocks[i] = pm_malloc(size);
        ck_assert_ptr_nonnull(blocks[i]);
        pm_test_pattern_fill(blocks[i], size, i);
    }
    for (size_t i = 0; i < BLOCKS; i++) {
        ck_assert(pm_test_pattern_ok(blocks[i], 16 + (i % 8) * 40, i));
        pm_free(blocks[i]);
    }
    /* A growing heap gets no look-ahead (test_pool_populate_ahead): no
     * unused pool counts as resident that is not. */
    enum { GROWN = 600 * PM_POOL_SIZE / 512 };
    static char *grown[GROWN];
    for (size_t i = 0; i < GROWN; i++) {
        grown[i] = pm_malloc(512);
        ck_assert_ptr_nonnull(grown[i]);
    }
    pm_stats_t stats;
    pm_test_stats(&stats);
    ck_assert_uint_eq(stats.retained_pools, 0);
    for (size_t i = 0; i < GROWN; i++)
        pm_free(grown[i]);
    ck_assert(pm_heap_validate());
}
END_TEST

/* Random allocations and frees over every class, with a shadow count per
 * class compared to the stats at checkpoints and contents checked at free. */
START_TEST(test_pool_random_mixed)
{
    enum { SLOTS = 4096, OPS = 200000 };
    static void *slot_ptr[SLOTS];
    static size_t slot_size[SLOTS];
    uint64_t live[PM_CLASS_COUNT] = {0};
    uint64_t allocated = 0;
    pm_test_rng_t rng;
    pm_test_rng_seed(&rng, 42);
    pm_stats_t s;

    for (int op = 0; op < OPS; op++) {
        size_t i = pm_test_rng_range(&rng, 0, SLOTS - 1);
        if (slot_ptr[i]) {
            PM_CHECK_EACH(pm_test_pattern_ok(slot_ptr[i], slot_size[i], i), "slot %zu", i);
            live[pm_size_class(slot_size[i])]--;
            pm_free(slot_ptr[i]);
            slot_ptr[i] = NULL;
        } else {
            size_t n = pm_test_rng_range(&rng, 0, PM_SMALL_MAX);
            slot_ptr[i] = pm_malloc(n);
            PM_CHECK_EACH(slot_ptr[i] != NULL && pm_owns(slot_ptr[i]), "slot %zu", i);
            slot_size[i] = n;
            pm_test_pattern_fill(slot_ptr[i], n, i);
            live[pm_size_class(n)]++;
            allocated++;
        }
        if (op % 20000 == 0) {
            pm_test_stats(&s);
            for (int c = 0; c < PM_CLASS_COUNT; c++)
                ck_assert_uint_eq(s.classes[c].live_blocks, live[c]);
            ck_assert_uint_eq(s.small_allocated_total, allocated);
        }
    }
    for (size_t i = 0; i < SLOTS; i++) {
        if (slot_ptr[i]) {
            ck_assert(pm_test_pattern_ok(slot_ptr[i], slot_size[i], i));
            pm_free(slot_ptr[i]);
        }
    }
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
    ck_assert_uint_eq(s.small_allocated_total, allocated);
    /* Every class was used; each bin keeps one empty pool (I4). */
    for (int c = 0; c < PM_CLASS_COUNT; c++)
        ck_assert_uint_eq(s.classes[c].pools, 1);
}
END_TEST

/* I7 on free's fast path: the product with the class's multiplier, below
 * the bound for n blocks, takes exactly the first n block starts of a
 * pool, at every offset of its 16 KiB, for every class and n from none
 * carved to all (the bound grows by one step a block, so these stand for
 * every n between); and none of pool 0's arena header. */
START_TEST(test_pool_fast_block_exact)
{
    size_t size = pm_class_block_size(_i);
    pm_pool_t pool = {.block_size = (uint32_t)size, .reciprocal = pm_class_reciprocal[_i],
                      .start_low = 0};
    const uint32_t capacity = (uint32_t)(PM_POOL_SIZE / size);
    const uint32_t carved[] = {0, 1, 2, capacity / 3, capacity - 1, capacity};
    for (size_t i = 0; i < sizeof carved / sizeof carved[0]; i++) {
        uint32_t n = carved[i];
        pool.fast_free_bound = pm_pool_block_bound(&pool, n);
        for (uintptr_t offset = 0; offset < PM_POOL_SIZE; offset++)
            PM_CHECK_EACH(pm_pool_fast_block(&pool, (void *)offset) ==
                              (offset % size == 0 && offset / size < n),
                          "offset %zu, blocks of %zu, %u carved", (size_t)offset, size, n);
    }
    pool.start_low = (uint32_t)PM_ARENA_HEADER_SIZE; /* pool 0, after the arena header */
    for (uintptr_t addr = 0; addr < PM_ARENA_HEADER_SIZE; addr++)
        PM_CHECK_EACH(!pm_pool_fast_block(&pool, (void *)addr), "header byte %zu", (size_t)addr);
}
END_TEST

/* I6: a live block that holds the free tag (as a program that copied it
 * out of a freed block would have it) is looked for on its pool's free
 * list, not found there, and so is live: freed and sized, not reported. */
START_TEST(test_live_block_holding_tag)
{
    void *anchor = pm_malloc(32);
    uintptr_t *p = pm_malloc(32);
    ck_assert_ptr_nonnull(anchor);
    ck_assert_ptr_nonnull(p);
    p[1] = pm_block_keys.free_tag;
    ck_assert_uint_eq(pm_malloc_usable_size(p), 32);
    ck_assert_ptr_eq(pm_realloc(p, 20), p);
    pm_free(p);
    ck_assert(pm_heap_validate());
    ck_assert_ptr_eq(pm_malloc(32), p);
    pm_free(p);
    pm_free(anchor);
    ck_assert(pm_heap_validate());
}
END_TEST

/* I6 when giving pages back: the pool's free blocks are found from their
 * tags, and a live block holding the tag too makes too many: they are then
 * found from the free list, so the live block's page stays. */
START_TEST(test_trim_keeps_live_block_holding_tag)
{
    static uintptr_t *b[PM_POOL_SIZE / 64];
    size_t cap = pm_test_fill_pool((void **)b, 64);
    b[0][1] = pm_block_keys.free_tag;
    b[0][2] = 42;
    for (size_t i = 1; i + 1 < cap; i++) /* b[0] and the last block stay live */
        pm_free(b[i]);
    pm_malloc_trim(0);
    pm_pool_t *pool = pm_pool_of(b[0]);
    unsigned last_page = (unsigned)(((uintptr_t)b[cap - 1] - (uintptr_t)pm_pool_start(pool)) /
                                    PM_OS_PAGE_SIZE);
    ck_assert_uint_eq(pool->purged_pages, ((1u << last_page) - 1) & ~1u);
    ck_assert_uint_eq(b[0][1], pm_block_keys.free_tag);
    ck_assert_uint_eq(b[0][2], 42);
    ck_assert(pm_heap_validate());
    pm_free(b[0]);
    pm_free(b[cap - 1]);
    ck_assert(pm_heap_validate());
}
END_TEST

Suite *make_pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("carve");
    tcase_set_timeout(tc, 20);
    tcase_add_loop_test(tc, test_pool_carve_and_reuse, 0, PM_CLASS_COUNT);
    tcase_add_loop_test(tc, test_pool_full_then_one_free, 0, PM_CLASS_COUNT);
    suite_add_tcase(s, tc);

    tc = tcase_create("arenas");
    tcase_set_timeout(tc, 20);
    tcase_add_loop_test(tc, test_pool_fill_arenas, 0,
                        (int)(sizeof fill_classes / sizeof fill_classes[0]));
    tcase_add_test(tc, test_lone_block_cycle);
    tcase_add_test(tc, test_pool_kept_when_alone);
    tcase_add_test(tc, test_reserve_arena);
    tcase_add_test(tc, test_pool_random_mixed);
    tcase_add_test(tc, test_pool_colour_first_pools_only);
    tcase_add_test(tc, test_os_purge_batch);
    tcase_add_test(tc, test_pool_carve_populates_pages);
    tcase_add_test(tc, test_pool_populate_ahead);
    tcase_add_test(tc, test_pool_fuller_serves_first);
    tcase_add_test(tc, test_pool_serves_in_address_order);
    tcase_add_loop_test(tc, test_pool_regains_in_batches, 0,
                        sizeof regain_sizes / sizeof regain_sizes[0]);
    tcase_add_test(tc, test_pool_parks_beside_others_up_to_four);
    tcase_add_test(tc, test_pool_parks_in_a_row);
    tcase_add_test(tc, test_pool_parks_in_a_row_within_retain_max);
    tcase_add_test(tc, test_pool_takes_parked_of_other_class);
    tcase_add_test(tc, test_pool_carve_without_populate);
    tcase_add_loop_test(tc, test_pool_fast_block_exact, 0, PM_CLASS_COUNT);
    tcase_add_test(tc, test_live_block_holding_tag);
    tcase_add_test(tc, test_trim_keeps_live_block_holding_tag);
    suite_add_tcase(s, tc);
    return s;
}
