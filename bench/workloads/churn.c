/* churn.c — workloads 1, 2 and 6: random-size churn through a sliding
 * window of live objects, on 1..N threads, optionally with a share of
 * requests above poolmalloc's 512-byte limit (its glibc path), or made by
 * calloc.
 * Never shares a block between threads: each thread churns its own window.
 *
 *   pm_bench_churn ops=N window=W threads=T large_pct=P large_max=M seed=S
 *                  idle_ms=I calloc_pct=C random=R
 *
 * Each thread makes ops / T allocations. Allocation i of a thread goes into
 * slot i % W of its window after freeing the block allocated W steps
 * earlier, so W blocks stay live and every block lives exactly W steps
 * (a FIFO sliding window). With random=1, once the window is full each
 * allocation replaces a slot drawn at random instead, so blocks die at
 * random ages and every free lands anywhere in the heap (a large cache or
 * table in steady state: with a large W, what the allocator keeps beside
 * each block, and where, decides how many cache misses a call takes).
 * Sizes are uniform in 1..512; with large_pct=P,
 * P% of them are uniform in 513..M instead. With calloc_pct=C, C% of the
 * allocations are calloc(1, size) (the draw is made only when C > 0, so
 * C = 0 keeps the sequence of sizes). Every block is freed once: the
 * window is emptied at the end. Reports pairs = ops (rounded down to a
 * multiple of T).
 *
 * With idle_ms=I, the threads (made even for T = 1) stay alive and idle
 * once they have emptied their windows, as a program's worker threads wait
 * for more work: the main thread reads the resident set then (rss_end_kib),
 * sleeps I ms, allocates and frees 4 x 4096 blocks of 1..512 bytes (the
 * later calls through which an allocator may give back what idle threads
 * hold), reads it again (rss_later_kib), and lets the threads exit;
 * rss_start_kib is read before any thread starts; end_over_start and
 * later_over_start are the two readings over it. */
#include <pthread.h>
#include <stdbool.h>

#include "bench.h"

typedef struct churn_thread {
    pthread_t thread;
    uint64_t ops, window, large_pct, large_max, calloc_pct, seed, index;
    bool idle, random;
} churn_thread_t;

/* With idle_ms: every thread has emptied its window; the main thread has
 * read the resident set, and the threads may exit. */
static pthread_barrier_t churn_emptied, churn_measured;

static void *churn_run(void *arg)
{
    const churn_thread_t *t = arg;
    bench_rng_t rng;
    bench_rng_seed(&rng, t->seed, t->index);
    bench_block_t *window = bench_map(t->window, sizeof *window);

    for (uint64_t i = 0; i < t->ops; i++) {
        uint64_t k = t->random && i >= t->window ? bench_rng_below(&rng, t->window)
                                                 : i % t->window;
        bench_block_t *slot = &window[k];
        if (slot->ptr != NULL)
            bench_free(*slot);
        size_t size = bench_rng_below(&rng, 100) < t->large_pct
                          ? bench_rng_range(&rng, 513, t->large_max)
                          : bench_rng_range(&rng, 1, 512);
        bool zeroed = t->calloc_pct > 0 && bench_rng_below(&rng, 100) < t->calloc_pct;
        *slot = zeroed ? bench_calloc(size, bench_tag(i)) : bench_alloc(size, bench_tag(i));
    }
    for (uint64_t i = 0; i < t->window; i++)
        if (window[i].ptr != NULL)
            bench_free(window[i]);
    bench_unmap(window, t->window, sizeof *window);
    if (t->idle) {
        pthread_barrier_wait(&churn_emptied);
        pthread_barrier_wait(&churn_measured);
    }
    return NULL;
}

/* The main thread's part with idle_ms (see the top). */
static void churn_measure_idle(uint64_t idle_ms, uint64_t seed, uint64_t *rss_end,
                               uint64_t *rss_later)
{
    pthread_barrier_wait(&churn_emptied);
    *rss_end = bench_rss_kib();
    bench_rng_t rng;
    bench_rng_seed(&rng, seed, UINT64_MAX);
    bench_block_t *blocks = bench_map(BENCH_LATER_BLOCKS, sizeof *blocks);
    *rss_later = bench_rss_later(idle_ms, &rng, 1, 512, blocks);
    bench_unmap(blocks, BENCH_LATER_BLOCKS, sizeof *blocks);
    pthread_barrier_wait(&churn_measured);
}

int main(int argc, char **argv)
{
    bench_args_t args;
    bench_args_parse(&args, argc, argv);
    uint64_t ops = bench_arg(&args, "ops", 1000000);
    uint64_t window = bench_arg(&args, "window", 10000);
    uint64_t threads = bench_arg(&args, "threads", 1);
    uint64_t large_pct = bench_arg(&args, "large_pct", 0);
    uint64_t large_max = bench_arg(&args, "large_max", 16384);
    uint64_t calloc_pct = bench_arg(&args, "calloc_pct", 0);
    uint64_t seed = bench_arg(&args, "seed", 1);
    uint64_t idle_ms = bench_arg(&args, "idle_ms", 0);
    uint64_t random = bench_arg(&args, "random", 0);
    bench_args_done(&args);
    if (window == 0 || threads == 0 || threads > 1024 || large_pct > 100 ||
        large_max < 513 || large_max > UINT32_MAX || calloc_pct > 100 || random > 1)
        bench_fail("need window >= 1, 1 <= threads <= 1024, large_pct <= 100, "
                   "513 <= large_max < 2^32, calloc_pct <= 100, random 0 or 1");

    uint64_t rss_start = bench_rss_kib(), rss_end = 0, rss_later = 0;
    churn_thread_t *t = bench_map(threads, sizeof *t);
    for (uint64_t k = 0; k < threads; k++) {
        t[k] = (churn_thread_t){.ops = ops / threads, .window = window,
                                .large_pct = large_pct, .large_max = large_max,
                                .calloc_pct = calloc_pct,
                                .seed = seed, .index = k, .idle = idle_ms > 0,
                                .random = random == 1};
    }
    if (idle_ms > 0 && (pthread_barrier_init(&churn_emptied, NULL, (unsigned)threads + 1) != 0 ||
                        pthread_barrier_init(&churn_measured, NULL, (unsigned)threads + 1) != 0))
        bench_fail("pthread_barrier_init failed");
    if (threads == 1 && idle_ms == 0) {
        churn_run(&t[0]); /* no thread: keeps the single-threaded case pure */
    } else {
        for (uint64_t k = 0; k < threads; k++)
            if (pthread_create(&t[k].thread, NULL, churn_run, &t[k]) != 0)
                bench_fail("pthread_create failed");
        if (idle_ms > 0)
            churn_measure_idle(idle_ms, seed, &rss_end, &rss_later);
        for (uint64_t k = 0; k < threads; k++)
            pthread_join(t[k].thread, NULL);
    }

    bench_report_begin("churn");
    bench_report("pairs", ops / threads * threads);
    if (idle_ms > 0)
        bench_report_idle(rss_start, rss_end, rss_later);
    bench_report_end();
    bench_unmap(t, threads, sizeof *t);
    return 0;
}
