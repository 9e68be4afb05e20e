/* batch.c — batches of blocks made and freed whole, again and again: the
 * pattern of glibc's bench-malloc-simple and of a program that builds a
 * request's or a frame's objects and drops them all at its end. Every
 * batch empties the pools (pages, slabs) the last one filled, and the next
 * needs as many again at once.
 *
 *   pm_bench_batch blocks=N rounds=R threads=T min=A max=B order=O seed=S
 *
 * Each of T threads (none for T = 1), R times: mallocs N blocks of A..B
 * bytes (uniform; one size when A = B), then frees them all, newest first
 * (order=0, LIFO) or oldest first (order=1, FIFO). Threads share nothing.
 * Reports pairs = N x R x T. */
#include <pthread.h>

#include "bench.h"

typedef struct batch_thread {
    pthread_t thread;
    uint64_t blocks, rounds, min, max, fifo, seed, index;
} batch_thread_t;

static void *batch_run(void *arg)
{
    const batch_thread_t *t = arg;
    bench_rng_t rng;
    bench_rng_seed(&rng, t->seed, t->index);
    bench_block_t *batch = bench_map(t->blocks, sizeof *batch);
    for (uint64_t r = 0; r < t->rounds; r++) {
        for (uint64_t i = 0; i < t->blocks; i++)
            batch[i] = bench_alloc(bench_rng_range(&rng, t->min, t->max), bench_tag(r + i));
        if (t->fifo)
            for (uint64_t i = 0; i < t->blocks; i++)
                bench_free(batch[i]);
        else
            for (uint64_t i = t->blocks; i-- > 0;)
                bench_free(batch[i]);
    }
    bench_unmap(batch, t->blocks, sizeof *batch);
    return NULL;
}

int main(int argc, char **argv)
{
    bench_args_t args;
    bench_args_parse(&args, argc, argv);
    uint64_t blocks = bench_arg(&args, "blocks", 1000);
    uint64_t rounds = bench_arg(&args, "rounds", 1000);
    uint64_t threads = bench_arg(&args, "threads", 1);
    uint64_t min = bench_arg(&args, "min", 256);
    uint64_t max = bench_arg(&args, "max", 256);
    uint64_t order = bench_arg(&args, "order", 0);
    uint64_t seed = bench_arg(&args, "seed", 1);
    bench_args_done(&args);
    if (blocks == 0 || threads == 0 || threads > 1024 || min == 0 || min > max ||
        max > UINT32_MAX || order > 1)
        bench_fail("need blocks >= 1, 1 <= threads <= 1024, 1 <= min <= max < 2^32, order 0 or 1");

    batch_thread_t *t = bench_map(threads, sizeof *t);
    for (uint64_t k = 0; k < threads; k++)
        t[k] = (batch_thread_t){.blocks = blocks, .rounds = rounds, .min = min, .max = max,
                                .fifo = order, .seed = seed, .index = k};
    if (threads == 1) {
        batch_run(&t[0]); /* no thread: keeps the single-threaded case pure */
    } else {
        for (uint64_t k = 0; k < threads; k++)
            if (pthread_create(&t[k].thread, NULL, batch_run, &t[k]) != 0)
                bench_fail("pthread_create failed");
        for (uint64_t k = 0; k < threads; k++)
            pthread_join(t[k].thread, NULL);
    }

    bench_report_begin("batch");
    bench_report("pairs", blocks * rounds * threads);
    bench_report_end();
    bench_unmap(t, threads, sizeof *t);
    return 0;
}
