/* check_threads.c — concurrent use of the core: threads allocating and
 * freeing small and large blocks at random, handing blocks to each other so
 * frees cross threads (exited threads' pools adopted as others free
 * them), contents checked with patterns, and the statistics exact once
 * every thread has joined (I8). */
#include "support.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

enum {
    THREADS = 4,
    OPS_PER_THREAD = 40000,
    LOCAL_SLOTS = 256,
    EXCHANGE_SLOTS = 64,
};

/* A block passed between threads carries its own description, so whoever
 * frees it can check it. */
typedef struct handoff_header {
    uint64_t size;
    uint64_t seed;
} handoff_header_t;

static _Atomic(void *) exchange[EXCHANGE_SLOTS];
static pthread_barrier_t start_barrier;
static atomic_int stop_flag;

typedef struct worker {
    int id;
    int use_realloc;
    uint64_t small_allocs[PM_CLASS_COUNT]; /* pool blocks this thread got */
    int failures;                          /* pattern or usable-size errors */
    pthread_t thread;
} worker_t;

static size_t random_size(pm_test_rng_t *rng)
{
    uint64_t r = pm_test_rng_next(rng) % 100;
    if (r < 75)
        return pm_test_rng_range(rng, 0, PM_SMALL_MAX);
    if (r < 98)
        return pm_test_rng_range(rng, PM_SMALL_MAX + 1, 16384);
    return pm_test_rng_range(rng, 65536, 300000);
}

static void count_alloc(worker_t *w, void *p, size_t size)
{
    int c = pm_size_class(size);
    if (c >= 0)
        w->small_allocs[c]++;
    if ((c >= 0) != (pm_owns(p) != 0) || pm_malloc_usable_size(p) < size)
        w->failures++;
}

static void handoff_check_and_free(worker_t *w, void *p)
{
    handoff_header_t *h = p;
    if (!pm_test_pattern_ok(h + 1, h->size - sizeof *h, h->seed))
        w->failures++;
    pm_free(p);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    void *ptr[LOCAL_SLOTS] = {0};
    size_t size[LOCAL_SLOTS] = {0};
    uint64_t seed[LOCAL_SLOTS] = {0};
    pm_test_rng_t rng;
    pm_test_rng_seed(&rng, 1000 + (uint64_t)w->id);
    pthread_barrier_wait(&start_barrier);

    for (int op = 0; op < OPS_PER_THREAD; op++) {
        uint64_t kind = pm_test_rng_next(&rng) % 10;
        if (kind < 6 || (kind == 9 && !w->use_realloc)) {
            size_t i = pm_test_rng_range(&rng, 0, LOCAL_SLOTS - 1);
            if (ptr[i]) {
                if (!pm_test_pattern_ok(ptr[i], size[i], seed[i]))
                    w->failures++;
                pm_free(ptr[i]);
                ptr[i] = NULL;
                continue;
            }
            size_t n = random_size(&rng);
            int zeroed = pm_test_rng_next(&rng) % 4 == 0;
            void *p = zeroed ? pm_calloc(1, n) : pm_malloc(n);
            if (!p) {
                w->failures++;
                continue;
            }
            if (zeroed && !pm_test_all_zero(p, n))
                w->failures++;
            count_alloc(w, p, n);
            ptr[i] = p;
            size[i] = n;
            seed[i] = pm_test_rng_next(&rng);
            pm_test_pattern_fill(p, n, seed[i]);
        } else if (kind < 9) {
            /* Hand a block to whichever thread takes this slot next, and
             * free what it left there. */
            size_t n = random_size(&rng);
            if (n < sizeof(handoff_header_t))
                n = sizeof(handoff_header_t);
            handoff_header_t *h = pm_malloc(n);
            if (!h) {
                w->failures++;
                continue;
            }
            count_alloc(w, h, n);
            h->size = n;
            h->seed = pm_test_rng_next(&rng);
            pm_test_pattern_fill(h + 1, n - sizeof *h, h->seed);
            size_t slot = pm_test_rng_range(&rng, 0, EXCHANGE_SLOTS - 1);
            void *old = atomic_exchange(&exchange[slot], (void *)h);
            if (old)
                handoff_check_and_free(w, old);
        } else {
            /* realloc a local block (not counted: it may stay in place). */
            size_t i = pm_test_rng_range(&rng, 0, LOCAL_SLOTS - 1);
            if (!ptr[i])
                continue;
            size_t n = random_size(&rng) + 1;
            void *p = pm_realloc(ptr[i], n);
            if (!p) {
                w->failures++;
                continue;
            }
            size_t keep = size[i] < n ? size[i] : n;
            if (!pm_test_pattern_ok(p, keep, seed[i]))
                w->failures++;
            ptr[i] = p;
            size[i] = n;
            pm_test_pattern_fill(p, n, seed[i]);
        }
    }
    for (size_t i = 0; i < LOCAL_SLOTS; i++) {
        if (ptr[i]) {
            if (!pm_test_pattern_ok(ptr[i], size[i], seed[i]))
                w->failures++;
            pm_free(ptr[i]);
        }
    }
    return NULL;
}

static void run_workers(worker_t *workers, int use_realloc)
{
    ck_assert_int_eq(pthread_barrier_init(&start_barrier, NULL, THREADS), 0);
    for (int t = 0; t < THREADS; t++) {
        memset(&workers[t], 0, sizeof workers[t]);
        workers[t].id = t;
        workers[t].use_realloc = use_realloc;
        ck_assert_int_eq(pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]),
                         0);
    }
    for (int t = 0; t < THREADS; t++)
        ck_assert_int_eq(pthread_join(workers[t].thread, NULL), 0);
    pthread_barrier_destroy(&start_barrier);
    /* Blocks left in the exchange were allocated by threads now gone. */
    worker_t drain = {0};
    for (size_t i = 0; i < EXCHANGE_SLOTS; i++) {
        void *p = atomic_exchange(&exchange[i], NULL);
        if (p)
            handoff_check_and_free(&drain, p);
    }
    ck_assert_int_eq(drain.failures, 0);
    for (int t = 0; t < THREADS; t++)
        ck_assert_msg(workers[t].failures == 0, "thread %d: %d failures", t,
                      workers[t].failures);
}

START_TEST(test_threads_cross_free)
{
    static worker_t workers[THREADS];
    pm_stats_t before, after;
    pm_test_stats(&before);
    run_workers(workers, 0);
    pm_test_stats(&after);
    uint64_t total = 0;
    for (int c = 0; c < PM_CLASS_COUNT; c++) {
        uint64_t want = 0;
        for (int t = 0; t < THREADS; t++)
            want += workers[t].small_allocs[c];
        total += want;
        ck_assert_msg(after.classes[c].allocated_total - before.classes[c].allocated_total ==
                          want,
                      "class %d: %llu allocations counted, %llu made", c,
                      (unsigned long long)(after.classes[c].allocated_total -
                                           before.classes[c].allocated_total),
                      (unsigned long long)want);
        ck_assert_uint_eq(after.classes[c].live_blocks, before.classes[c].live_blocks);
        /* I4: each heap (the workers' abandoned ones and this thread's)
         * keeps at most one empty pool per class. */
        ck_assert_uint_le(after.classes[c].pools, THREADS + 1);
    }
    ck_assert_uint_gt(total, THREADS * OPS_PER_THREAD / 4); /* the test did work */
    ck_assert_uint_eq(after.small_allocated_total - before.small_allocated_total, total);
    ck_assert_uint_eq(after.small_live_blocks, 0);
    ck_assert_uint_eq(after.small_live_bytes, 0);
    ck_assert_uint_le(after.arenas_mapped, (THREADS + 1) * PM_CLASS_COUNT / 15 + 2);
}
END_TEST

START_TEST(test_threads_with_realloc)
{
    static worker_t workers[THREADS];
    run_workers(workers, 1);
    pm_stats_t after;
    pm_test_stats(&after);
    ck_assert_uint_eq(after.small_live_blocks, 0);
    for (int c = 0; c < PM_CLASS_COUNT; c++) {
        ck_assert_uint_eq(after.classes[c].allocated_total, after.classes[c].freed_total);
        ck_assert_uint_le(after.classes[c].pools, THREADS + 1); /* I4 */
    }
    ck_assert_uint_le(after.arenas_mapped, (THREADS + 1) * PM_CLASS_COUNT / 15 + 2);
}
END_TEST

/* Stats taken and printed while other threads allocate: no crash, no
 * deadlock, every print succeeds; exact again once all have joined. */
static void *stats_reader(void *arg)
{
    int fd = *(int *)arg;
    while (!atomic_load(&stop_flag)) {
        pm_stats_t s;
        pm_stats_get(&s);
        if (pm_stats_print(fd, PM_STATS_TEXT) != 0)
            return (void *)1;
    }
    return NULL;
}

START_TEST(test_threads_stats_while_busy)
{
    static worker_t workers[THREADS];
    int fd = open("/dev/null", O_WRONLY);
    ck_assert_int_ge(fd, 0);
    pthread_t reader;
    atomic_store(&stop_flag, 0);
    ck_assert_int_eq(pthread_create(&reader, NULL, stats_reader, &fd), 0);
    run_workers(workers, 1);
    atomic_store(&stop_flag, 1);
    void *rc = NULL;
    ck_assert_int_eq(pthread_join(reader, &rc), 0);
    ck_assert_ptr_null(rc);
    close(fd);
    pm_stats_t after;
    pm_test_stats(&after);
    ck_assert_uint_eq(after.small_live_blocks, 0);
}
END_TEST

/* One thread allocates, another frees everything: every free is remote. */
typedef struct pipe_queue {
    _Atomic(void *) slot[1024];
} pipe_queue_t;

static pipe_queue_t queue;

static void *producer(void *arg)
{
    (void)arg;
    pm_test_rng_t rng;
    pm_test_rng_seed(&rng, 7);
    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < 1024; i++) {
            size_t n = pm_test_rng_range(&rng, sizeof(handoff_header_t), PM_SMALL_MAX);
            handoff_header_t *h = pm_malloc(n);
            h->size = n;
            h->seed = i;
            pm_test_pattern_fill(h + 1, n - sizeof *h, i);
            while (atomic_load(&queue.slot[i]) != NULL)
                sched_yield();
            atomic_store(&queue.slot[i], (void *)h);
        }
    }
    return NULL;
}

static void *consumer(void *arg)
{
    worker_t *w = arg;
    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < 1024; i++) {
            void *p;
            while ((p = atomic_exchange(&queue.slot[i], NULL)) == NULL)
                sched_yield();
            handoff_check_and_free(w, p);
        }
    }
    return NULL;
}

START_TEST(test_threads_producer_consumer)
{
    worker_t w = {0};
    pthread_t prod, cons;
    ck_assert_int_eq(pthread_create(&prod, NULL, producer, NULL), 0);
    ck_assert_int_eq(pthread_create(&cons, NULL, consumer, &w), 0);
    pthread_join(prod, NULL);
    pthread_join(cons, NULL);
    ck_assert_int_eq(w.failures, 0);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_allocated_total, 50 * 1024);
    ck_assert_uint_eq(s.small_live_blocks, 0);
}
END_TEST

/* Blocks freed by another thread wait for their heap's owner to take them
 * back: the stats count them as freed and waiting (not live), and the
 * owner's malloc_trim(0) takes them back and gives their pools up. */
enum { WAITING_BLOCKS = 3000, WAITING_SIZE = 64 };
static void *waiting_blocks[WAITING_BLOCKS];

/* What free_from_another_thread's thread frees. */
typedef struct freer_job {
    void **blocks;
    size_t count;
} freer_job_t;

static void *freer_job_run(void *arg)
{
    const freer_job_t *job = arg;
    for (size_t i = 0; i < job->count; i++)
        pm_free(job->blocks[i]);
    return NULL;
}

/* Frees blocks[0 .. count) from a thread of its own, and waits for it. */
static void free_from_another_thread(void **blocks, size_t count)
{
    freer_job_t job = {blocks, count};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, freer_job_run, &job), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
}

START_TEST(test_threads_waiting_for_owner)
{
    const int c = pm_size_class(WAITING_SIZE);
    for (size_t i = 0; i < WAITING_BLOCKS; i++)
        waiting_blocks[i] = pm_malloc(WAITING_SIZE);
    free_from_another_thread(waiting_blocks, WAITING_BLOCKS);
    pm_stats_t s;
    pm_test_stats(&s); /* this thread has not allocated since */
    ck_assert_uint_eq(s.classes[c].waiting_blocks, WAITING_BLOCKS);
    ck_assert_uint_eq(s.classes[c].live_blocks, 0);
    ck_assert_uint_eq(s.classes[c].freed_total, WAITING_BLOCKS);
    ck_assert_uint_eq(s.small_waiting_blocks, WAITING_BLOCKS);
    ck_assert_uint_eq(s.small_waiting_bytes, WAITING_BLOCKS * WAITING_SIZE);
    pm_malloc_trim(0);
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_waiting_blocks, 0);
    ck_assert_uint_eq(s.classes[c].pools, 0);
}
END_TEST

/* An owner whose service_lock another thread holds (a freer spilling its
 * full ring into parcels, or the walk taking blocks for an idle owner)
 * does not wait for it: its collection leaves the ring's blocks where they
 * are and its malloc goes on to other room. Here the holder is the owner
 * itself, so a collection that waited would never return. */
enum { BUSY_RING_BLOCKS = 200, BUSY_RING_SIZE = 64, BUSY_RING_MORE = 600 };
static void *busy_ring_blocks[BUSY_RING_BLOCKS];

START_TEST(test_threads_collection_skips_busy_service_lock)
{
    const int c = pm_size_class(BUSY_RING_SIZE);
    for (size_t i = 0; i < BUSY_RING_BLOCKS; i++)
        ck_assert_ptr_nonnull(busy_ring_blocks[i] = pm_malloc(BUSY_RING_SIZE));
    free_from_another_thread(busy_ring_blocks, BUSY_RING_BLOCKS);
    static void *more[BUSY_RING_MORE];
    pm_lock(pm_thread_heap->service_lock);
    for (size_t i = 0; i < BUSY_RING_MORE; i++) /* past the pool's room: slow paths */
        more[i] = pm_malloc(BUSY_RING_SIZE);
    pm_unlock(pm_thread_heap->service_lock);
    for (size_t i = 0; i < BUSY_RING_MORE; i++)
        ck_assert_ptr_nonnull(more[i]);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].waiting_blocks, BUSY_RING_BLOCKS);
    ck_assert_uint_eq(s.classes[c].live_blocks, BUSY_RING_MORE);
    /* With the lock free, the next slow path takes them back. */
    for (size_t i = 0; i < BUSY_RING_MORE; i++)
        more[i] = pm_malloc(BUSY_RING_SIZE);
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].waiting_blocks, 0);
    ck_assert_uint_eq(s.classes[c].live_blocks, 2 * BUSY_RING_MORE);
}
END_TEST

/* A thread exits with live blocks; another thread frees them later. The
 * abandoned heap takes them back and its pools, once empty, go back to
 * their arenas (THREAD HEAPS in internal.h). */
enum { ORPHAN_BLOCKS = 3000 };
static void *orphan_blocks[ORPHAN_BLOCKS];

static size_t orphan_size(size_t i)
{
    return (i * 53) % PM_SMALL_MAX + 1;
}

static void *allocate_and_exit(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < ORPHAN_BLOCKS; i++) {
        orphan_blocks[i] = pm_malloc(orphan_size(i));
        if (orphan_blocks[i] == NULL)
            return (void *)1;
        pm_test_pattern_fill(orphan_blocks[i], orphan_size(i), i);
    }
    return NULL;
}

START_TEST(test_threads_free_after_owner_exit)
{
    pthread_t t;
    void *rc = (void *)1;
    ck_assert_int_eq(pthread_create(&t, NULL, allocate_and_exit, NULL), 0);
    ck_assert_int_eq(pthread_join(t, &rc), 0);
    ck_assert_ptr_null(rc);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, ORPHAN_BLOCKS);
    for (size_t i = 0; i < ORPHAN_BLOCKS; i++) {
        ck_assert(pm_test_pattern_ok(orphan_blocks[i], orphan_size(i), i));
        pm_free(orphan_blocks[i]);
    }
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
    ck_assert_uint_eq(s.small_allocated_total, ORPHAN_BLOCKS);
    /* The exited thread's heap, abandoned, keeps one empty pool per class
     * for the thread that adopts it (I4); everything else went back. */
    uint64_t pools = 0;
    for (int c = 0; c < PM_CLASS_COUNT; c++) {
        ck_assert_uint_le(s.classes[c].pools, 1);
        pools += s.classes[c].pools;
    }
    /* I5: every mapped arena but the reserve holds a pool in use. */
    ck_assert_uint_le(s.arenas_mapped, pools + 1);
}
END_TEST

/* REGAINING and ADOPTION (heap.c): a thread fills a pool and takes a block
 * of a second, so that its slow path sets the full one aside, regaining
 * (I4); then it exits. This thread, with a heap of its own, frees the full
 * pool's blocks: it adopts the pool at the first, and the pool joins its
 * bin list once the batch is back, and serves its next block of the
 * class. */
enum { REGAIN_SIZE = 96 };
static void *regain_blocks[PM_POOL_SIZE / REGAIN_SIZE + 1];
static size_t regain_count;

static void *fill_pool_and_exit(void *arg)
{
    (void)arg;
    regain_blocks[0] = pm_malloc(REGAIN_SIZE);
    pm_pool_t *pool = pm_pool_of(regain_blocks[0]);
    size_t n = 1;
    while (n < pool->capacity) {
        regain_blocks[n] = pm_malloc(REGAIN_SIZE);
        if (pm_pool_of(regain_blocks[n++]) != pool)
            return (void *)1;
    }
    regain_blocks[n++] = pm_malloc(REGAIN_SIZE); /* the second pool's */
    regain_count = n;
    return pool->regaining && pm_pool_of(regain_blocks[n - 1]) != pool ? NULL : (void *)2;
}

START_TEST(test_threads_adopt_regaining_pool)
{
    pm_free(pm_malloc(16)); /* this thread's own heap, made before the other exits */
    pthread_t t;
    void *rc = (void *)1;
    ck_assert_int_eq(pthread_create(&t, NULL, fill_pool_and_exit, NULL), 0);
    ck_assert_int_eq(pthread_join(t, &rc), 0);
    ck_assert_ptr_null(rc);
    pm_pool_t *pool = pm_pool_of(regain_blocks[0]);
    const size_t batch = pm_pool_regain_batch(pool);
    pm_free(regain_blocks[0]);
    ck_assert_ptr_eq(pm_pool_heap(pool), pm_thread_heap); /* adopted */
    ck_assert(pool->regaining && !pm_pool_on_bin_list(pool));
    ck_assert(pm_heap_validate());
    for (size_t i = 1; i < batch; i++)
        pm_free(regain_blocks[i]);
    ck_assert(!pool->regaining && pm_pool_on_bin_list(pool));
    ck_assert(pm_heap_validate());
    void *p = pm_malloc(REGAIN_SIZE);
    ck_assert_ptr_eq(pm_pool_of(p), pool);
    pm_free(p);
    for (size_t i = batch; i < regain_count; i++)
        pm_free(regain_blocks[i]);
    ck_assert(pm_heap_validate());
}
END_TEST

/* ADOPTION (heap.c): threads make blocks and exit, then four threads free
 * them at once, each every fourth block, so that a pool's blocks are freed
 * from several threads as the first of them adopts it. A free that read
 * the old owner pushes into the abandoned heap's ring after the hand-over,
 * and whoever collects it there passes it on to the adopter. Two freers
 * have a heap before they start, and adopt pools; two take one at their
 * first free, and may adopt an exited thread's heap whole meanwhile.
 * Nothing may be reported as misuse, no block handed out twice (the
 * patterns of the next round), and everything must come back. */
enum { ADOPT_MAKERS = 3, ADOPT_BLOCKS = 6000, ADOPT_FREERS = 4, ADOPT_ROUNDS = 8 };
static void *adopt_blocks[ADOPT_MAKERS * ADOPT_BLOCKS];
static size_t adopt_sizes[ADOPT_MAKERS * ADOPT_BLOCKS];
static pthread_barrier_t adopt_barrier;

static void *adopt_make(void *arg)
{
    size_t maker = (size_t)(uintptr_t)arg;
    pm_test_rng_t rng;
    pm_test_rng_seed(&rng, maker + 1);
    for (size_t i = maker * ADOPT_BLOCKS; i < (maker + 1) * ADOPT_BLOCKS; i++) {
        adopt_sizes[i] = pm_test_rng_range(&rng, 1, PM_SMALL_MAX);
        adopt_blocks[i] = pm_malloc(adopt_sizes[i]);
        if (adopt_blocks[i] == NULL)
            return (void *)1;
        pm_test_pattern_fill(adopt_blocks[i], adopt_sizes[i], i);
    }
    return NULL;
}

static void *adopt_free(void *arg)
{
    size_t freer = (size_t)(uintptr_t)arg;
    uintptr_t failures = 0;
    if (freer < 2)
        pm_free(pm_malloc(16));
    pthread_barrier_wait(&adopt_barrier);
    for (size_t i = freer; i < ADOPT_MAKERS * ADOPT_BLOCKS; i += ADOPT_FREERS) {
        failures += !pm_test_pattern_ok(adopt_blocks[i], adopt_sizes[i], i);
        pm_free(adopt_blocks[i]);
    }
    return (void *)failures;
}

START_TEST(test_threads_adopt_while_others_free)
{
    for (int round = 0; round < ADOPT_ROUNDS; round++) {
        pthread_t t[ADOPT_FREERS];
        void *rc;
        for (size_t k = 0; k < ADOPT_MAKERS; k++)
            ck_assert_int_eq(pthread_create(&t[k], NULL, adopt_make, (void *)(uintptr_t)k), 0);
        for (size_t k = 0; k < ADOPT_MAKERS; k++) {
            ck_assert_int_eq(pthread_join(t[k], &rc), 0);
            ck_assert_ptr_null(rc);
        }
        ck_assert_int_eq(pthread_barrier_init(&adopt_barrier, NULL, ADOPT_FREERS), 0);
        for (size_t k = 0; k < ADOPT_FREERS; k++)
            ck_assert_int_eq(pthread_create(&t[k], NULL, adopt_free, (void *)(uintptr_t)k), 0);
        for (size_t k = 0; k < ADOPT_FREERS; k++) {
            ck_assert_int_eq(pthread_join(t[k], &rc), 0);
            ck_assert_ptr_null(rc);
        }
        pthread_barrier_destroy(&adopt_barrier);
    }
    pm_malloc_trim(0); /* collects what waits in the abandoned heaps */
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
    /* The makers' blocks, and the one block each of the first two freers made to have a heap. */
    ck_assert_uint_eq(s.small_allocated_total,
                      (uint64_t)ADOPT_ROUNDS * (ADOPT_MAKERS * ADOPT_BLOCKS + 2));
    for (int c = 0; c < PM_CLASS_COUNT; c++)
        ck_assert_uint_eq(s.classes[c].waiting_blocks, 0);
    ck_assert(pm_heap_validate());
}
END_TEST

/* Threads created and joined one after another: the pools each one used go
 * back to their arena when it exits, and that arena, kept as the reserve
 * (I5), serves the next thread: no mmap per thread. Sizes stay within eight
 * classes, so a thread's pools fit in one arena. */
static void *short_lived(void *arg)
{
    pm_test_rng_t rng;
    pm_test_rng_seed(&rng, (uint64_t)(uintptr_t)arg);
    void *held[64];
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 64; i++)
            held[i] = pm_malloc(pm_test_rng_range(&rng, 1, 8 * PM_CLASS_GRANULE));
        for (int i = 0; i < 64; i++)
            pm_free(held[i]);
    }
    return NULL;
}

START_TEST(test_threads_heap_reuse)
{
    enum { THREAD_COUNT = 300 };
    for (uintptr_t i = 0; i < THREAD_COUNT; i++) {
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, short_lived, (void *)i), 0);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
    }
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_allocated_total, THREAD_COUNT * 4 * 64);
    ck_assert_uint_eq(s.small_live_blocks, 0);
    ck_assert_uint_eq(s.arenas_created_total, 1);
}
END_TEST

/* I5: a heap takes its pools from arenas of its own while one has room, so
 * threads do not fill each other's arenas (whose pools, released by one
 * thread and taken by another, came with their cache lines in the other
 * core's cache). A thread that exits leaves its arenas to the others: the
 * main thread, its own arena full, takes its next pool from the exited
 * thread's arena rather than map one. */
enum { HOME_SIZE = 256, HOME_BLOCKS = 3 * PM_POOL_SIZE / HOME_SIZE };
static void *home_blocks_main[HOME_BLOCKS], *home_blocks_thread[HOME_BLOCKS];

static void *fill_own_pools(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < HOME_BLOCKS; i++)
        if ((home_blocks_thread[i] = pm_malloc(HOME_SIZE)) == NULL)
            return NULL;
    bool own = true;
    for (size_t i = 0; i < HOME_BLOCKS; i++)
        own &= pm_arena_of(home_blocks_thread[i])->home == &pm_thread_heap->arena_home;
    return (void *)(uintptr_t)own;
}

START_TEST(test_threads_heaps_keep_to_their_arenas)
{
    for (size_t i = 0; i < HOME_BLOCKS; i++)
        ck_assert_ptr_nonnull(home_blocks_main[i] = pm_malloc(HOME_SIZE));
    pm_arena_t *main_arena = pm_arena_of(home_blocks_main[0]);
    pthread_t t;
    void *own = NULL;
    ck_assert_int_eq(pthread_create(&t, NULL, fill_own_pools, NULL), 0);
    ck_assert_int_eq(pthread_join(t, &own), 0);
    ck_assert_msg(own == (void *)1, "the thread's pools are not all in arenas of its own");
    for (size_t i = 0; i < HOME_BLOCKS; i++)
        ck_assert_ptr_ne(pm_arena_of(home_blocks_thread[i]), main_arena);
    ck_assert_ptr_eq(main_arena->home, &pm_thread_heap->arena_home);
    pm_arena_t *exited_arena = pm_arena_of(home_blocks_thread[0]);
    ck_assert_ptr_null(exited_arena->home); /* closed when the thread exited */

    pm_stats_t before, after;
    pm_test_stats(&before);
    ck_assert_uint_eq(before.arenas_created_total, 2);
    /* Every pool of the main thread's arena, and then one more. */
    enum { MORE = PM_POOLS_PER_ARENA * PM_POOL_SIZE / HOME_SIZE };
    static void *more[MORE];
    size_t taken = 0;
    while (taken < MORE && (taken == 0 || pm_arena_of(more[taken - 1]) != exited_arena))
        ck_assert_ptr_nonnull(more[taken++] = pm_malloc(HOME_SIZE));
    ck_assert_ptr_eq(pm_arena_of(more[taken - 1]), exited_arena);
    ck_assert_ptr_eq(exited_arena->home, &pm_thread_heap->arena_home);
    pm_test_stats(&after);
    ck_assert_uint_eq(after.arenas_created_total, 2);
    for (size_t i = 0; i < taken; i++)
        pm_free(more[i]);
    for (size_t i = 0; i < HOME_BLOCKS; i++) {
        pm_free(home_blocks_main[i]);
        pm_free(home_blocks_thread[i]);
    }
    ck_assert(pm_heap_validate());
}
END_TEST

/* EXCHANGE (heap.c): a thread that frees all but 1 in 16 of its blocks of
 * a class at random, while another thread takes new pools of the class,
 * gives its sparse pools to the exchange, and the other thread's next
 * pools of the class are those, their free blocks its own (_i == 0). It
 * keeps them if no other thread is taking pools of the class (_i == 1).
 * One that frees every block in the order it allocated them, draining one
 * pool at a time, gives none (_i == 2). */
enum { GIVER_SIZE = 256, GIVER_POOLS = 8, GIVER_BLOCKS = GIVER_POOLS * PM_POOL_SIZE / GIVER_SIZE };
static void *giver_blocks[GIVER_BLOCKS];
static pm_heap_t *giver_heap;
static pthread_barrier_t giver_filled, giver_free, giver_freed, giver_finish;
static bool giver_in_order;

static bool giver_survivor(size_t i) { return !giver_in_order && i % 16 == 0; }

static void *giver(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < GIVER_BLOCKS; i++)
        giver_blocks[i] = pm_malloc(GIVER_SIZE);
    giver_heap = pm_thread_heap;
    pthread_barrier_wait(&giver_filled);
    pthread_barrier_wait(&giver_free);
    for (size_t k = 0; k < GIVER_BLOCKS; k++) {
        /* 61 is prime to GIVER_BLOCKS: every pool drains at once. */
        size_t i = giver_in_order ? k : k * 61 % GIVER_BLOCKS;
        if (!giver_survivor(i))
            pm_free(giver_blocks[i]);
    }
    pthread_barrier_wait(&giver_freed);
    pthread_barrier_wait(&giver_finish);
    for (size_t i = 0; i < GIVER_BLOCKS; i++)
        if (giver_survivor(i))
            pm_free(giver_blocks[i]);
    return NULL;
}

/* This thread takes a heap with no pool of the giver's class, and the giver
 * starts, and fills its blocks. */
static void giver_start(pthread_t *t)
{
    pm_free(pm_malloc(16));
    ck_assert_int_eq(pthread_barrier_init(&giver_filled, NULL, 2), 0);
    ck_assert_int_eq(pthread_barrier_init(&giver_free, NULL, 2), 0);
    ck_assert_int_eq(pthread_barrier_init(&giver_freed, NULL, 2), 0);
    ck_assert_int_eq(pthread_barrier_init(&giver_finish, NULL, 2), 0);
    ck_assert_int_eq(pthread_create(t, NULL, giver, NULL), 0);
    pthread_barrier_wait(&giver_filled);
}

START_TEST(test_threads_exchange_sparse_pools)
{
    const unsigned c = pm_class_of(GIVER_SIZE);
    const bool wanted = _i != 1;
    giver_in_order = _i == 2;
    pthread_t t;
    giver_start(&t);
    void *first = NULL;
    if (wanted)
        ck_assert_ptr_nonnull(first = pm_malloc(GIVER_SIZE)); /* a pool from the arenas */
    pthread_barrier_wait(&giver_free);
    pthread_barrier_wait(&giver_freed);
    size_t given = 0, survivors = 0;
    for (size_t i = 0; i < GIVER_BLOCKS; i++)
        if (giver_survivor(i)) {
            survivors++;
            given += pm_pool_heap(pm_pool_of(giver_blocks[i])) != giver_heap;
        }
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert(pm_heap_validate());
    if (_i != 0) {
        ck_assert_uint_eq(given, 0);
        ck_assert_uint_eq(s.exchange_given_total, 0);
    } else {
        /* All but the first two pools to come to their marks, and the
         * one still carving (never full, it has no mark). */
        ck_assert_uint_ge(given, survivors / 2);
        ck_assert_uint_ge(s.exchange_pools, GIVER_POOLS / 2);
        ck_assert_uint_eq(s.exchange_pools, s.exchange_given_total);
        /* This thread's next blocks come from them: no pool more. */
        uint64_t pools = s.classes[c].pools;
        enum { TAKE = GIVER_BLOCKS / 2 };
        static void *taken[TAKE];
        size_t in_given_pools = 0;
        for (size_t i = 0; i < TAKE; i++) {
            ck_assert_ptr_nonnull(taken[i] = pm_malloc(GIVER_SIZE));
            for (size_t j = 0; j < GIVER_BLOCKS; j++)
                if (giver_survivor(j) && pm_pool_of(taken[i]) == pm_pool_of(giver_blocks[j])) {
                    in_given_pools++;
                    break;
                }
        }
        pm_test_stats(&s);
        ck_assert_uint_eq(s.classes[c].pools, pools);
        ck_assert_uint_ge(s.exchange_taken_total, GIVER_POOLS / 2);
        ck_assert_uint_ge(in_given_pools, TAKE * 3 / 4);
        for (size_t i = 0; i < TAKE; i++)
            pm_free(taken[i]);
    }
    pthread_barrier_wait(&giver_finish);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    pm_free(first);
    pm_malloc_trim(0); /* collects what the giver freed into this thread's pools */
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
    ck_assert_uint_eq(s.classes[c].pools, 0);
    ck_assert(pm_heap_validate());
}
END_TEST

/* The exchange heap's remote ring (a static heap's, in .bss, not beside
 * it): the giver's survivors in the pools it gave up, freed by this thread,
 * wait in that ring, and the next pool taken from the exchange takes them
 * back first. */
START_TEST(test_threads_exchange_ring)
{
    giver_in_order = false;
    pthread_t t;
    giver_start(&t);
    void *first = pm_malloc(GIVER_SIZE); /* the class is wanted: the giver gives */
    ck_assert_ptr_nonnull(first);
    pthread_barrier_wait(&giver_free);
    pthread_barrier_wait(&giver_freed);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_ge(s.exchange_pools, GIVER_POOLS / 2);
    const uint64_t waiting = s.small_waiting_blocks;
    uint64_t freed_into_exchange = 0;
    for (size_t i = 0; i < GIVER_BLOCKS; i++) {
        if (!giver_survivor(i) || pm_pool_heap(pm_pool_of(giver_blocks[i])) == giver_heap)
            continue;
        pm_free(giver_blocks[i]); /* the giver's last loop frees NULL */
        giver_blocks[i] = NULL;
        freed_into_exchange++;
    }
    ck_assert_uint_ge(freed_into_exchange, GIVER_POOLS / 2);
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_waiting_blocks, waiting + freed_into_exchange);
    ck_assert(pm_heap_validate()); /* walks every ring, the exchange's too */
    /* Until this thread's pool runs dry, then a pool from the exchange. */
    const uint64_t taken = s.exchange_taken_total;
    void *more[PM_POOL_SIZE / GIVER_SIZE + 1];
    size_t n = 0;
    while (n < sizeof more / sizeof more[0] && s.exchange_taken_total == taken) {
        ck_assert_ptr_nonnull(more[n++] = pm_malloc(GIVER_SIZE));
        pm_test_stats(&s);
    }
    ck_assert_uint_eq(s.exchange_taken_total, taken + 1);
    /* And with it this thread's own ring, which held the `waiting` few. */
    ck_assert_uint_le(s.small_waiting_blocks, waiting);
    ck_assert(pm_heap_validate());
    while (n > 0)
        pm_free(more[--n]);
    pthread_barrier_wait(&giver_finish);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    pm_free(first);
    pm_malloc_trim(0);
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
    ck_assert(pm_heap_validate());
}
END_TEST

/* Runs work on a new thread, with the stats from before and after that
 * thread in *before and *after; returns how many heaps the thread gained
 * while it ran. */
static void (*heap_probe_work)(void);

static void *heap_probe(void *arg)
{
    (void)arg;
    pm_stats_t before, after;
    pm_test_stats(&before);
    heap_probe_work();
    pm_test_stats(&after);
    return (void *)(uintptr_t)(after.thread_heaps - before.thread_heaps);
}

static uintptr_t heaps_gained_by(void (*work)(void), pm_stats_t *before, pm_stats_t *after)
{
    pm_test_stats(before);
    heap_probe_work = work;
    pthread_t t;
    void *gained = NULL;
    ck_assert_int_eq(pthread_create(&t, NULL, heap_probe, NULL), 0);
    ck_assert_int_eq(pthread_join(t, &gained), 0);
    pm_test_stats(after);
    return (uintptr_t)gained;
}

/* A thread that only frees other threads' blocks (a consumer) takes a heap
 * for its counters on its first remote free, instead of counting every
 * free with a locked add on the shared heapless counters; its frees are
 * counted exactly all the same (I8), after it exits too. */
enum { FREE_ONLY_BLOCKS = 2000 };
static void *free_only_blocks[FREE_ONLY_BLOCKS];

static void free_only(void)
{
    for (size_t i = 0; i < FREE_ONLY_BLOCKS; i++)
        pm_free(free_only_blocks[i]);
}

START_TEST(test_threads_free_only_thread_counts_in_own_heap)
{
    for (size_t i = 0; i < FREE_ONLY_BLOCKS; i++)
        ck_assert_ptr_nonnull(free_only_blocks[i] = pm_malloc(i % PM_SMALL_MAX + 1));
    pm_stats_t before, after;
    ck_assert_uint_eq(heaps_gained_by(free_only, &before, &after), 1);
    ck_assert_uint_eq(before.small_live_blocks - after.small_live_blocks, FREE_ONLY_BLOCKS);
    ck_assert_uint_eq(after.small_freed_total - before.small_freed_total, FREE_ONLY_BLOCKS);
    ck_assert_uint_eq(after.abandoned_heaps, before.abandoned_heaps + 1);
}
END_TEST

/* free's fast test (pm_heap_owns_live): true for a live block of the
 * calling thread's heap, of every class, and false for the same block as
 * another thread sees it, once freed (I6), and for an address inside it
 * (I7). Each false sends free to the full check; a wrong true would put
 * another heap's block on this thread's list, unlocked. */
static void *other_thread_block;
static void *owns_live_from_other_thread(void *arg)
{
    pm_free(pm_malloc(1)); /* a heap of its own, not pm_heap_empty */
    pm_pool_t *pool = pm_pool_of(arg);
    other_thread_block = pm_heap_owns_live(pm_thread_heap, pool, arg) ? arg : NULL;
    return NULL;
}

START_TEST(test_threads_fast_free_test)
{
    for (int c = 0; c < PM_CLASS_COUNT; c++) {
        size_t size = pm_class_block_size(c);
        char *block = pm_malloc(size);
        ck_assert_ptr_nonnull(block);
        pm_pool_t *pool = pm_pool_of(block);
        ck_assert_msg(pm_heap_owns_live(pm_thread_heap, pool, block), "class %d", c);
        ck_assert(!pm_heap_owns_live(pm_thread_heap, pool, block + PM_CLASS_GRANULE));
        other_thread_block = block;
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, owns_live_from_other_thread, block), 0);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        ck_assert_ptr_null(other_thread_block);
        pm_free(block);
        ck_assert(!pm_heap_owns_live(pm_thread_heap, pool, block));
    }
}
END_TEST

/* Likewise a thread whose requests are all past the pools: its first one
 * gives it a heap, and the glibc path's counters stay exact. */
static void large_only(void)
{
    for (size_t i = 0; i < 100; i++)
        pm_free(pm_malloc(PM_SMALL_MAX + 1 + i));
}

START_TEST(test_threads_large_only_thread_counts_in_own_heap)
{
    pm_stats_t before, after;
    ck_assert_uint_eq(heaps_gained_by(large_only, &before, &after), 1);
    ck_assert_uint_eq(after.system_allocated_total - before.system_allocated_total, 100);
    ck_assert_uint_eq(after.system_freed_total - before.system_freed_total, 100);
    ck_assert_uint_eq(after.system_live_blocks, before.system_live_blocks);
}
END_TEST

/* pm_rwlock_t (the profile's unwind lock): readers share it, a writer has
 * it alone, and once a writer waits no reader comes in, so readers that
 * take it back to back, as sampling threads may, cannot hold a fork off. */
static pm_rwlock_t rwlock; /* zeroed: free */
static atomic_int rwlock_readers_inside, rwlock_writer_inside, rwlock_overlaps;
static atomic_int rwlock_stop, rwlock_readers_ready, rwlock_order;

static void *rwlock_reader(void *arg)
{
    (void)arg;
    atomic_fetch_add(&rwlock_readers_ready, 1);
    while (!atomic_load(&rwlock_stop)) {
        pm_rwlock_read(&rwlock);
        atomic_fetch_add(&rwlock_readers_inside, 1);
        if (atomic_load(&rwlock_writer_inside))
            atomic_fetch_add(&rwlock_overlaps, 1);
        for (volatile int spin = 0; spin < 200; spin++)
            ;
        atomic_fetch_sub(&rwlock_readers_inside, 1);
        pm_rwlock_read_done(&rwlock);
    }
    return NULL;
}

/* One reading or writing turn; *arg gets its place in rwlock_order. */
static void *rwlock_read_once(void *arg)
{
    pm_rwlock_read(&rwlock);
    *(int *)arg = atomic_fetch_add(&rwlock_order, 1) + 1;
    pm_rwlock_read_done(&rwlock);
    return NULL;
}
static void *rwlock_write_once(void *arg)
{
    pm_rwlock_write(&rwlock);
    *(int *)arg = atomic_fetch_add(&rwlock_order, 1) + 1;
    pm_rwlock_write_done(&rwlock);
    return NULL;
}

START_TEST(test_threads_rwlock_writers_first)
{
    /* Readers share it: a second reader gets in while this one holds it
     * (else the join would wait for ever). */
    int turn_a = 0, turn_b = 0;
    pthread_t a, b;
    pm_rwlock_read(&rwlock);
    ck_assert_int_eq(pthread_create(&a, NULL, rwlock_read_once, &turn_a), 0);
    ck_assert_int_eq(pthread_join(a, NULL), 0);
    ck_assert_int_eq(turn_a, 1);
    /* A writer waits for this reader; a reader coming after the writer
     * waits for it too, and gets in after it. */
    turn_a = 0;
    ck_assert_int_eq(pthread_create(&a, NULL, rwlock_write_once, &turn_a), 0);
    while (!(atomic_load(&rwlock.state) & PM_RWLOCK_WRITER))
        sched_yield();
    ck_assert_int_eq(pthread_create(&b, NULL, rwlock_read_once, &turn_b), 0);
    usleep(20000);
    ck_assert_int_eq(atomic_load(&rwlock_order), 1); /* neither got in */
    pm_rwlock_read_done(&rwlock);
    ck_assert_int_eq(pthread_join(a, NULL), 0);
    ck_assert_int_eq(pthread_join(b, NULL), 0);
    ck_assert_int_eq(turn_a, 2);
    ck_assert_int_eq(turn_b, 3);

    /* 300 writes among 3 readers taking it back to back: none starves the
     * writer (the tcase's timeout), and no reader is inside with it. */
    enum { READERS = 3, WRITES = 300 };
    pthread_t readers[READERS];
    for (int i = 0; i < READERS; i++)
        ck_assert_int_eq(pthread_create(&readers[i], NULL, rwlock_reader, NULL), 0);
    while (atomic_load(&rwlock_readers_ready) < READERS)
        sched_yield();
    for (int i = 0; i < WRITES; i++) {
        pm_rwlock_write(&rwlock);
        atomic_store(&rwlock_writer_inside, 1);
        if (atomic_load(&rwlock_readers_inside) != 0)
            atomic_fetch_add(&rwlock_overlaps, 1);
        atomic_store(&rwlock_writer_inside, 0);
        pm_rwlock_write_done(&rwlock);
    }
    atomic_store(&rwlock_stop, 1);
    for (int i = 0; i < READERS; i++)
        ck_assert_int_eq(pthread_join(readers[i], NULL), 0);
    ck_assert_int_eq(atomic_load(&rwlock_overlaps), 0);
    ck_assert_uint_eq(atomic_load(&rwlock.state), 0);
    ck_assert_uint_eq(atomic_load(&rwlock.writers.word), 0);
}
END_TEST

Suite *make_threads_suite(void)
{
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("concurrent");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_threads_cross_free);
    tcase_add_test(tc, test_threads_with_realloc);
    tcase_add_test(tc, test_threads_stats_while_busy);
    tcase_add_test(tc, test_threads_producer_consumer);
    tcase_add_test(tc, test_threads_waiting_for_owner);
    tcase_add_test(tc, test_threads_collection_skips_busy_service_lock);
    tcase_add_test(tc, test_threads_free_after_owner_exit);
    tcase_add_test(tc, test_threads_adopt_while_others_free);
    tcase_add_test(tc, test_threads_adopt_regaining_pool);
    tcase_add_test(tc, test_threads_heap_reuse);
    tcase_add_test(tc, test_threads_heaps_keep_to_their_arenas);
    tcase_add_loop_test(tc, test_threads_exchange_sparse_pools, 0, 3);
    tcase_add_test(tc, test_threads_exchange_ring);
    tcase_add_test(tc, test_threads_free_only_thread_counts_in_own_heap);
    tcase_add_test(tc, test_threads_fast_free_test);
    tcase_add_test(tc, test_threads_large_only_thread_counts_in_own_heap);
    tcase_add_test(tc, test_threads_rwlock_writers_first);
    suite_add_tcase(s, tc);
    return s;
}
