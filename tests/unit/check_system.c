/* check_system.c — the glibc path's chunk cache (system.c, THE CHUNK
 * CACHE): a thread's freed glibc chunks of 513..262,144 bytes serve its
 * next requests of their size class that they hold; its bounds; its giving
 * back (thread exit, trim, a thread that stops asking for such sizes, a
 * program that leaves glibc's heap to glibc); the stats; and the misuse it
 * catches. */
#include "support.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static uint64_t cached_bytes(void)
{
    pm_stats_t s;
    pm_stats_get(&s);
    return s.system_cached_bytes;
}

static uint64_t caches_grown(void)
{
    pm_stats_t s;
    pm_stats_get(&s);
    return s.system_caches_grown;
}

/* The usable size glibc gives a chunk of `request` bytes (x86-64: 8 bytes
 * of header, 16-byte steps). */
static size_t glibc_usable(size_t request)
{
    return ((request + 8 + 15) & ~(size_t)15) - 8;
}

/* glibc maps a request past its mmap threshold (128 KiB at first) and
 * raises the threshold to the size of each mapped chunk freed: after this,
 * it serves every class of the cache from its heap. */
static void glibc_threshold_past_cache(void)
{
    pm_free(pm_malloc(PM_SYSTEM_CACHE_MAX));
}

/* A freed chunk comes back for the next request of its class, counted as
 * a glibc block allocated and freed each time, and held as cached bytes in
 * between. */
START_TEST(test_cache_reuses_freed_chunk)
{
    pm_free(pm_malloc(16)); /* the thread's heap, whose cache this is */
    pm_stats_t before, after;
    pm_stats_get(&before);
    void *p = pm_malloc(1000);
    ck_assert_ptr_nonnull(p);
    ck_assert(!pm_owns(p));
    size_t usable = pm_malloc_usable_size(p);
    ck_assert_uint_eq(usable, glibc_usable(1000));
    memset(p, 0x5a, usable);
    pm_free(p);
    ck_assert_uint_eq(cached_bytes(), usable);
    void *q = pm_malloc(970); /* the same class (961..1,024), and it holds that */
    ck_assert_ptr_eq(q, p);
    ck_assert_uint_eq(cached_bytes(), 0);
    pm_free(q);
    pm_stats_get(&after);
    ck_assert_uint_eq(after.system_allocated_total - before.system_allocated_total, 2);
    ck_assert_uint_eq(after.system_freed_total - before.system_freed_total, 2);
    ck_assert_uint_eq(after.system_allocated_bytes_total - before.system_allocated_bytes_total,
                      2 * usable);
    ck_assert_uint_eq(after.system_live_bytes, before.system_live_bytes);
    void *other = pm_malloc(1100); /* the next class up: none cached */
    ck_assert_ptr_ne(other, p);
    pm_free(other);
}
END_TEST

/* Buffers up to 256 KiB, the range of tcmalloc's thread caches, wait in
 * the cache too: a 64 KiB I/O buffer, and one of 200,000 bytes (past
 * glibc's first mmap threshold, once a mapped chunk freed raised it). */
START_TEST(test_cache_large_buffers)
{
    pm_free(pm_malloc(16));
    glibc_threshold_past_cache();
    const size_t sizes[] = {65536, 200000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        pm_malloc_trim(0); /* the cache, given back */
        void *p = pm_malloc(sizes[i]);
        size_t usable = pm_malloc_usable_size(p);
        ck_assert_uint_eq(usable, glibc_usable(sizes[i]));
        pm_free(p);
        ck_assert_uint_eq(cached_bytes(), usable);
        ck_assert_ptr_eq(pm_malloc(sizes[i]), p);
        ck_assert_uint_eq(cached_bytes(), 0);
        pm_free(p);
    }
}
END_TEST

/* A request of 513..256 KiB gets what it asked (no rounding), and the
 * chunk, freed, comes back for the same request; a chunk at the head of
 * the request's class that is too small for it does not, and the head of
 * the class above does, whatever its size. */
START_TEST(test_cache_classes)
{
    pm_free(pm_malloc(16));
    glibc_threshold_past_cache();
    for (size_t size = PM_SMALL_MAX + 1; size + 8 <= PM_SYSTEM_CACHE_MAX; size += 7) {
        void *p = pm_malloc(size);
        PM_CHECK_EACH(pm_malloc_usable_size(p) == glibc_usable(size), "%zu bytes got %zu usable",
                      size, pm_malloc_usable_size(p));
        pm_free(p);
        void *q = pm_malloc(size);
        PM_CHECK_EACH(q == p, "%zu bytes: the chunk did not come back", size);
        pm_free(q);
    }
    pm_malloc_trim(0); /* the cache, given back */
    void *p = pm_malloc(1000); /* 1,000 usable: the class of 961..1,024 */
    pm_free(p);
    void *q = pm_malloc(1010);
    ck_assert_ptr_ne(q, p); /* the head of its class holds less */
    void *r = pm_malloc(900); /* the class below: the head of the class above */
    ck_assert_ptr_eq(r, p);
    pm_free(q);
    pm_free(r);
    /* Past the classes: not cached. */
    void *big = pm_malloc(PM_SYSTEM_CACHE_MAX + 1);
    uint64_t cached = cached_bytes();
    pm_free(big);
    ck_assert_uint_eq(cached_bytes(), cached);
}
END_TEST

/* Chunks of one class but different sizes, stacked: each request is
 * tested against the size of the chunk at the head as it is then, which
 * the cache keeps beside the list (system_cache_head_units) as chunks
 * come and go, and a request the head does not hold goes to the class
 * above (empty here: a miss, served by glibc). */
START_TEST(test_cache_head_sizes)
{
    pm_free(pm_malloc(16));
    pm_malloc_trim(0); /* the cache, given back */
    /* 1,016, 968 and 1,000 usable bytes: the class of 961..1,024. */
    void *a = pm_malloc(1016), *b = pm_malloc(968), *c = pm_malloc(1000);
    pm_free(a);
    pm_free(b);
    pm_free(c); /* the head, then b, then a */
    ck_assert_uint_eq(cached_bytes(), 1016 + 968 + 1000);
    void *missed[2];
    missed[0] = pm_malloc(1010); /* c holds less */
    ck_assert_ptr_ne(missed[0], a);
    ck_assert_ptr_ne(missed[0], b);
    ck_assert_ptr_ne(missed[0], c);
    ck_assert_ptr_eq(pm_malloc(990), c);
    missed[1] = pm_malloc(990); /* b, the head now, holds less */
    ck_assert_ptr_ne(missed[1], a);
    ck_assert_ptr_ne(missed[1], b);
    ck_assert_ptr_eq(pm_malloc(960), b);
    ck_assert_ptr_eq(pm_malloc(1010), a); /* a, the head now, holds it */
    ck_assert_uint_eq(cached_bytes(), 0);
    pm_free(missed[0]);
    pm_free(missed[1]);
    pm_free(a);
    pm_free(b);
    pm_free(c);
}
END_TEST

/* A class holds 64 KiB of chunks (2 to 16 of them), a heap 1 MiB in all;
 * the frees past either go to glibc. */
START_TEST(test_cache_bounds)
{
    /* No trim of glibc's heap as its live bytes collapse below: a trim
     * gives the calling thread's cache back first. */
    pm_options.trim_glibc = 0;
    pm_free(pm_malloc(16));
    enum { COUNT = 2000 }; /* about 24 of each class */
    static void *blocks[COUNT];
    for (int i = 0; i < 10; i++)
        blocks[i] = pm_malloc(16000); /* the class of 14,337..16,384 */
    for (int i = 0; i < 10; i++)
        pm_free(blocks[i]);
    ck_assert_uint_eq(cached_bytes(), 4 * glibc_usable(16000)); /* 64 KiB / 16 KiB */
    for (int i = 0; i < 10; i++)
        blocks[i] = pm_malloc(600); /* 577..640: room for 16 */
    for (int i = 0; i < 10; i++)
        pm_free(blocks[i]);
    ck_assert_uint_eq(cached_bytes(), 4 * glibc_usable(16000) + 10 * glibc_usable(600));
    /* Every class, more chunks than it has room for: 1 MiB at most. The
     * cache given back first: it overflowed above, and a tick that saw it
     * miss too would grow it (test_cache_grows_under_churn). */
    pm_malloc_trim(0);
    size_t size = PM_SMALL_MAX + 1;
    for (int i = 0; i < COUNT; i++) {
        blocks[i] = pm_malloc(size);
        size = size * 21 / 20 > PM_SYSTEM_CACHE_MAX ? PM_SMALL_MAX + 1 : size * 21 / 20;
    }
    for (int i = 0; i < COUNT; i++)
        pm_free(blocks[i]);
    uint64_t cached = cached_bytes();
    ck_assert_uint_le(cached, PM_SYSTEM_CACHE_BYTES);
    ck_assert_uint_gt(cached, PM_SYSTEM_CACHE_BYTES - PM_SYSTEM_CACHE_MAX);
}
END_TEST

/* Random replacement of `count` buffers of 8,000..16,000 bytes, `steps`
 * times: the heap ticks within 256 KiB of requests (16 to 32 of them),
 * and between ticks the cache both misses and overflows. */
static void churn_buffers(void **slots, int count, int steps, unsigned seed)
{
    for (int i = 0; i < count; i++)
        slots[i] = pm_malloc(8000 + (size_t)(rand_r(&seed) % 8001));
    for (int i = 0; i < steps; i++) {
        int k = rand_r(&seed) % count;
        pm_free(slots[k]);
        slots[k] = pm_malloc(8000 + (size_t)(rand_r(&seed) % 8001));
    }
}

static uint64_t free_buffers_cached(void **slots, int count)
{
    for (int i = 0; i < count; i++)
        pm_free(slots[i]);
    return pm_thread_heap->system_cached_bytes;
}

/* A cache that both misses and overflows between two of its owner's ticks
 * grows to 4 MiB, 256 KiB a class, and the stats count it; given back
 * (here by malloc_trim), it is back at 1 MiB. */
START_TEST(test_cache_grows_under_churn)
{
    pm_options.trim_glibc = 0; /* no trim as the buffers are freed */
    pm_free(pm_malloc(16));
    enum { COUNT = 512 }; /* about 6 MiB */
    static void *slots[COUNT];
    ck_assert_uint_eq(pm_thread_heap->system_cache_bytes_max, PM_SYSTEM_CACHE_BYTES);
    ck_assert_uint_eq(caches_grown(), 0);
    churn_buffers(slots, COUNT, 4 * COUNT, 1);
    ck_assert_uint_eq(pm_thread_heap->system_cache_bytes_max, PM_SYSTEM_CACHE_GROWN_BYTES);
    ck_assert_uint_eq(caches_grown(), 1);
    /* 8 classes of 256 KiB: more than a cache of 1 MiB could hold. */
    uint64_t cached = free_buffers_cached(slots, COUNT);
    ck_assert_uint_gt(cached, PM_SYSTEM_CACHE_BYTES * 3 / 2);
    ck_assert_uint_le(cached, PM_SYSTEM_CACHE_GROWN_BYTES);

    pm_malloc_trim(0);
    ck_assert_uint_eq(cached_bytes(), 0);
    ck_assert_uint_eq(pm_thread_heap->system_cache_bytes_max, PM_SYSTEM_CACHE_BYTES);
    ck_assert_uint_eq(caches_grown(), 0);
    /* Allocated in a row, then freed: misses, and overflows at no tick. */
    for (int i = 0; i < COUNT; i++)
        slots[i] = pm_malloc(8000 + (size_t)i * 15);
    ck_assert_uint_le(free_buffers_cached(slots, COUNT), PM_SYSTEM_CACHE_BYTES);
    ck_assert_uint_eq(pm_thread_heap->system_cache_bytes_max, PM_SYSTEM_CACHE_BYTES);
}
END_TEST

/* Grown caches hold PM_SYSTEM_CACHE_GROWN_TOTAL more than their first
 * 1 MiB at most, process-wide: of 12 threads that churn at once, 10 grow,
 * and the stats count 10; once they have exited, their room is another's. */
enum { GROW_THREADS = 12, GROW_SLOTS = 512 };
static pthread_barrier_t grow_barrier;
static uint64_t grown_counted[GROW_THREADS]; /* what the stats said, at the barrier */

static void *churn_and_report(void *arg)
{
    void **slots = pm_malloc(GROW_SLOTS * sizeof(void *));
    churn_buffers(slots, GROW_SLOTS, 4 * GROW_SLOTS, (unsigned)(uintptr_t)arg);
    bool grown = pm_thread_heap->system_cache_bytes_max == PM_SYSTEM_CACHE_GROWN_BYTES;
    pthread_barrier_wait(&grow_barrier); /* every cache as it is, none given back */
    grown_counted[(uintptr_t)arg - 1] = caches_grown();
    pthread_barrier_wait(&grow_barrier); /* every thread has read the stats */
    free_buffers_cached(slots, GROW_SLOTS);
    pm_free(slots);
    return (void *)(uintptr_t)grown;
}

START_TEST(test_cache_growth_bounded)
{
    pm_options.trim_glibc = 0;
    ck_assert_int_eq(pthread_barrier_init(&grow_barrier, NULL, GROW_THREADS), 0);
    pthread_t threads[GROW_THREADS];
    for (uintptr_t i = 0; i < GROW_THREADS; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, churn_and_report, (void *)(i + 1)), 0);
    unsigned grown = 0;
    for (int i = 0; i < GROW_THREADS; i++) {
        void *result;
        ck_assert_int_eq(pthread_join(threads[i], &result), 0);
        grown += (unsigned)(uintptr_t)result;
    }
    pthread_barrier_destroy(&grow_barrier);
    ck_assert_uint_eq(grown, PM_SYSTEM_CACHE_GROWN_TOTAL /
                                 (PM_SYSTEM_CACHE_GROWN_BYTES - PM_SYSTEM_CACHE_BYTES));
    for (int i = 0; i < GROW_THREADS; i++)
        ck_assert_uint_eq(grown_counted[i], grown);
    pm_free(pm_malloc(16));
    static void *slots[GROW_SLOTS];
    ck_assert_uint_eq(caches_grown(), 0); /* given back as their threads exited */
    churn_buffers(slots, GROW_SLOTS, 4 * GROW_SLOTS, 99);
    ck_assert_uint_eq(pm_thread_heap->system_cache_bytes_max, PM_SYSTEM_CACHE_GROWN_BYTES);
    ck_assert_uint_eq(caches_grown(), 1);
    free_buffers_cached(slots, GROW_SLOTS);
}
END_TEST

/* calloc takes a cached chunk too, zeroed. */
START_TEST(test_cache_calloc_zeroes)
{
    pm_free(pm_malloc(16));
    unsigned char *p = pm_malloc(3000);
    memset(p, 0xab, pm_malloc_usable_size(p));
    pm_free(p);
    unsigned char *q = pm_calloc(100, 30);
    ck_assert_ptr_eq(q, p);
    for (size_t i = 0; i < 3000; i++)
        PM_CHECK_EACH(q[i] == 0, "byte %zu is %d", i, q[i]);
    pm_free(q);
}
END_TEST

static void *cache_and_exit(void *arg)
{
    (void)arg;
    void *blocks[8];
    for (int i = 0; i < 8; i++)
        blocks[i] = pm_malloc(2000 + 300 * (size_t)i);
    for (int i = 0; i < 8; i++)
        pm_free(blocks[i]);
    return (void *)(uintptr_t)cached_bytes();
}

/* A thread's cache goes back to glibc as the thread exits; malloc_trim
 * gives back the calling thread's before it trims glibc's heap. */
START_TEST(test_cache_given_back)
{
    pthread_t thread;
    void *held;
    ck_assert_int_eq(pthread_create(&thread, NULL, cache_and_exit, NULL), 0);
    ck_assert_int_eq(pthread_join(thread, &held), 0);
    ck_assert_uint_gt((uintptr_t)held, 8 * 2000);
    ck_assert_uint_eq(cached_bytes(), 0);

    void *p = pm_malloc(5000);
    pm_free(p);
    ck_assert_uint_gt(cached_bytes(), 0);
    pm_malloc_trim(0);
    ck_assert_uint_eq(cached_bytes(), 0);
}
END_TEST

/* A thread that goes on allocating small blocks only gives its cache back
 * at a tick a purge delay after its last request of the glibc path. */
START_TEST(test_cache_given_back_when_unused)
{
    pm_options.purge_delay_ms = 0;
    pm_free(pm_malloc(16));
    pm_free(pm_malloc(6000));
    ck_assert_uint_gt(cached_bytes(), 0);
    pm_heap_t *heap = pm_thread_heap;
    int64_t before = heap->tick_countdown;
    int ticks = 0;
    /* Two ticks: the first sees the glibc path's last request, the second
     * finds nothing since. */
    for (int i = 0; i < 1 << 20 && ticks < 2; i++) {
        pm_free(pm_malloc(256));
        if (heap->tick_countdown > before)
            ticks++;
        before = heap->tick_countdown;
    }
    ck_assert_int_eq(ticks, 2);
    ck_assert_uint_eq(cached_bytes(), 0);
}
END_TEST

/* A program that leaves glibc's heap to glibc (POOLMALLOC_TRIM_GLIBC=0,
 * loop 0; glibc tuned by mallopt, loop 1) has no cache: the thread's
 * closes, giving its chunks back, and every free goes to glibc. */
START_TEST(test_cache_closed_when_glibc_is_left_alone)
{
    pm_free(pm_malloc(4000));
    ck_assert_uint_gt(cached_bytes(), 0);
    if (_i == 0) {
        pm_options.trim_glibc = 0;
        pm_system_tune_glibc();
    } else {
        ck_assert_int_eq(pm_mallopt(M_TRIM_THRESHOLD, 256 << 10), 1);
    }
    ck_assert_uint_eq(cached_bytes(), 0);
    void *p = pm_malloc(4000);
    pm_free(p);
    ck_assert_uint_eq(cached_bytes(), 0);
}
END_TEST

/* The cache stays the owner's: other threads' frees of its chunks go into
 * their own caches, and each thread's cache serves only itself. */
static void *free_and_report(void *block)
{
    pm_free(pm_malloc(16)); /* its heap: a thread with none gives to glibc */
    pm_free(block);
    return (void *)(uintptr_t)cached_bytes();
}

START_TEST(test_cache_per_thread)
{
    pm_free(pm_malloc(16));
    void *p = pm_malloc(8000);
    size_t usable = pm_malloc_usable_size(p);
    pthread_t thread;
    void *seen;
    ck_assert_int_eq(pthread_create(&thread, NULL, free_and_report, p), 0);
    ck_assert_int_eq(pthread_join(thread, &seen), 0);
    ck_assert_uint_eq((uintptr_t)seen, usable); /* in the freer's cache */
    ck_assert_uint_eq(cached_bytes(), 0);       /* given back as it exited */
}
END_TEST

static void misuse_cached_double_free(void)
{
    pm_free(pm_malloc(16));
    void *p = pm_malloc(700);
    pm_free(p);
    pm_free(p);
}

static void misuse_cached_link_overwritten(void)
{
    pm_free(pm_malloc(16));
    void *a = pm_malloc(2500), *b = pm_malloc(2500);
    pm_free(a);
    pm_free(b); /* b heads the class, linked to a */
    /* A use after free changes the link: by 8, so that it decodes to an
     * address no chunk has (a random change is caught 15 times in 16). */
    *(uintptr_t *)b ^= 8;
    (void)pm_malloc(2500); /* b's link, checked as b is taken: caught */
}

/* Misuse of a cached chunk is caught: a second free, and a link
 * overwritten after the free (safe-linking, I12), each with its message. */
START_TEST(test_cache_misuse_caught)
{
    char buf[4096];
    pm_test_capture_abort(misuse_cached_double_free, buf, sizeof buf);
    pm_test_assert_message(buf, "double free (of a glibc block)");
    pm_test_capture_abort(misuse_cached_link_overwritten, buf, sizeof buf);
    pm_test_assert_message(buf, "corrupted free list (a glibc chunk's link)");
}
END_TEST

Suite *make_system_suite(void)
{
    Suite *s = suite_create("system");
    TCase *tc = tcase_create("cache");
    tcase_add_test(tc, test_cache_reuses_freed_chunk);
    tcase_add_test(tc, test_cache_classes);
    tcase_add_test(tc, test_cache_head_sizes);
    tcase_add_test(tc, test_cache_large_buffers);
    tcase_add_test(tc, test_cache_bounds);
    tcase_add_test(tc, test_cache_grows_under_churn);
    tcase_add_test(tc, test_cache_growth_bounded);
    tcase_add_test(tc, test_cache_calloc_zeroes);
    tcase_add_test(tc, test_cache_given_back);
    tcase_add_test(tc, test_cache_given_back_when_unused);
    tcase_add_loop_test(tc, test_cache_closed_when_glibc_is_left_alone, 0, 2);
    tcase_add_test(tc, test_cache_per_thread);
    tcase_add_test(tc, test_cache_misuse_caught);
    suite_add_tcase(s, tc);
    return s;
}
