/* rounds.c — batches made and mostly freed, round after round, with the
 * survivors handed between threads: a compiler's or a request handler's
 * per-job objects, where a few outlive the job and end up in shared
 * structures (the pattern of mimalloc-bench's mstress).
 *
 *   pm_bench_rounds rounds=R threads=T batch=N keep=K seed=S
 *
 * Each thread, R times over, mallocs N blocks (9 in 10 of 8..128 bytes, the
 * rest of 129..512) and writes them; then checks and frees them in the
 * order it made them, all but one in K, which it puts in a random slot of
 * a shared exchange of 1000, freeing what was there: a block most likely
 * made by another thread, in an earlier round. What is left in the
 * exchange is freed at the end. Every round leaves each thread's pools
 * with about one block in K still live (the allocator's cue to give pages
 * back) and then fills them again. Reports pairs = R x T x N. */
#include <pthread.h>

#include "bench.h"

enum { ROUNDS_EXCHANGE = 1000, ROUNDS_STRIPES = 64 };

typedef struct rounds_shared {
    bench_block_t exchange[ROUNDS_EXCHANGE];
    pthread_mutex_t stripe[ROUNDS_STRIPES]; /* slot i under stripe i % 64 */
    uint64_t rounds, batch, keep, seed;
} rounds_shared_t;

typedef struct rounds_thread {
    pthread_t thread;
    uint64_t index;
    rounds_shared_t *shared;
} rounds_thread_t;

/* Puts a block in a slot and frees the one it replaces, if any. */
static void rounds_exchange(rounds_shared_t *s, uint64_t slot, bench_block_t b)
{
    pthread_mutex_t *stripe = &s->stripe[slot % ROUNDS_STRIPES];
    pthread_mutex_lock(stripe);
    bench_block_t old = s->exchange[slot];
    s->exchange[slot] = b;
    pthread_mutex_unlock(stripe);
    if (old.ptr != NULL)
        bench_free(old);
}

static void *rounds_run(void *arg)
{
    rounds_thread_t *t = arg;
    rounds_shared_t *s = t->shared;
    bench_rng_t rng;
    bench_rng_seed(&rng, s->seed, t->index);
    bench_block_t *made = bench_map(s->batch, sizeof *made);
    for (uint64_t r = 0; r < s->rounds; r++) {
        for (uint64_t i = 0; i < s->batch; i++) {
            size_t size = bench_rng_below(&rng, 10) != 0 ? bench_rng_range(&rng, 8, 128)
                                                         : bench_rng_range(&rng, 129, 512);
            made[i] = bench_alloc(size, bench_tag(i));
        }
        for (uint64_t i = 0; i < s->batch; i++) {
            if (bench_rng_below(&rng, s->keep) == 0)
                rounds_exchange(s, bench_rng_below(&rng, ROUNDS_EXCHANGE), made[i]);
            else
                bench_free(made[i]);
        }
    }
    bench_unmap(made, s->batch, sizeof *made);
    return NULL;
}

int main(int argc, char **argv)
{
    bench_args_t args;
    bench_args_parse(&args, argc, argv);
    uint64_t rounds = bench_arg(&args, "rounds", 100);
    uint64_t threads = bench_arg(&args, "threads", 4);
    uint64_t batch = bench_arg(&args, "batch", 20000);
    uint64_t keep = bench_arg(&args, "keep", 8);
    uint64_t seed = bench_arg(&args, "seed", 1);
    bench_args_done(&args);
    if (threads == 0 || threads > 256 || keep == 0)
        bench_fail("need 1 <= threads <= 256, keep >= 1");

    rounds_shared_t *s = bench_map(1, sizeof *s);
    for (unsigned i = 0; i < ROUNDS_STRIPES; i++)
        pthread_mutex_init(&s->stripe[i], NULL);
    s->rounds = rounds;
    s->batch = batch;
    s->keep = keep;
    s->seed = seed;
    rounds_thread_t *t = bench_map(threads, sizeof *t);
    for (uint64_t k = 0; k < threads; k++) {
        t[k].index = k;
        t[k].shared = s;
        if (pthread_create(&t[k].thread, NULL, rounds_run, &t[k]) != 0)
            bench_fail("pthread_create failed");
    }
    for (uint64_t k = 0; k < threads; k++)
        pthread_join(t[k].thread, NULL);
    for (unsigned i = 0; i < ROUNDS_EXCHANGE; i++)
        if (s->exchange[i].ptr != NULL)
            bench_free(s->exchange[i]);

    bench_report_begin("rounds");
    bench_report("pairs", rounds * threads * batch);
    bench_report_end();
    bench_unmap(t, threads, sizeof *t);
    bench_unmap(s, 1, sizeof *s);
    return 0;
}
