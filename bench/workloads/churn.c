/* churn.c — workloads 1, 2 and 6: random-size churn through a sliding
 * window of live objects, on 1..N threads, optionally with a share of
 * requests above poolmalloc's 512-byte limit (its glibc path).
 * Never shares a block between threads: each thread churns its own window.
 *
 *   pm_bench_churn ops=N window=W threads=T large_pct=P large_max=M seed=S
 *
 * Each thread makes ops / T allocations. Allocation i of a thread goes into
 * slot i % W of its window after freeing the block allocated W steps
 * earlier, so W blocks stay live and every block lives exactly W steps
 * (a FIFO sliding window). Sizes are uniform in 1..512; with large_pct=P,
 * P% of them are uniform in 513..M instead. Every block is freed once: the
 * window is emptied at the end. Reports pairs = ops (rounded down to a
 * multiple of T). */
#include <pthread.h>

#include "bench.h"

typedef struct churn_thread {
    pthread_t thread;
    uint64_t ops, window, large_pct, large_max, seed, index;
} churn_thread_t;

static void *churn_run(void *arg)
{
    const churn_thread_t *t = arg;
    bench_rng_t rng;
    bench_rng_seed(&rng, t->seed, t->index);
    bench_block_t *window = bench_map(t->window, sizeof *window);

    for (uint64_t i = 0; i < t->ops; i++) {
        bench_block_t *slot = &window[i % t->window];
        if (slot->ptr != NULL)
            bench_free(*slot);
        size_t size = bench_rng_below(&rng, 100) < t->large_pct
                          ? bench_rng_range(&rng, 513, t->large_max)
                          : bench_rng_range(&rng, 1, 512);
        *slot = bench_alloc(size, bench_tag(i));
    }
    for (uint64_t i = 0; i < t->window; i++)
        if (window[i].ptr != NULL)
            bench_free(window[i]);
    bench_unmap(window, t->window, sizeof *window);
    return NULL;
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
    uint64_t seed = bench_arg(&args, "seed", 1);
    bench_args_done(&args);
    if (window == 0 || threads == 0 || threads > 1024 || large_pct > 100 ||
        large_max < 513 || large_max > UINT32_MAX)
        bench_fail("need window >= 1, 1 <= threads <= 1024, large_pct <= 100, "
                   "513 <= large_max < 2^32");

    churn_thread_t *t = bench_map(threads, sizeof *t);
    for (uint64_t k = 0; k < threads; k++) {
        t[k] = (churn_thread_t){.ops = ops / threads, .window = window,
                                .large_pct = large_pct, .large_max = large_max,
                                .seed = seed, .index = k};
    }
    if (threads == 1) {
        churn_run(&t[0]); /* no thread: keeps the single-threaded case pure */
    } else {
        for (uint64_t k = 0; k < threads; k++)
            if (pthread_create(&t[k].thread, NULL, churn_run, &t[k]) != 0)
                bench_fail("pthread_create failed");
        for (uint64_t k = 0; k < threads; k++)
            pthread_join(t[k].thread, NULL);
    }

    bench_report_begin("churn");
    bench_report("pairs", ops / threads * threads);
    bench_report_end();
    bench_unmap(t, threads, sizeof *t);
    return 0;
}
