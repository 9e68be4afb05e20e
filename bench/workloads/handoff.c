/* handoff.c — results made by threads that then exit, freed by the thread
 * that waited for them: worker pools that are torn down between jobs,
 * fork-join programs, a request handler's thread whose objects outlive it.
 * Every free is of a block whose allocating thread is gone.
 *
 *   pm_bench_handoff rounds=R threads=T blocks=N seed=S
 *
 * Each round starts T threads; each mallocs N blocks of 1..512 bytes,
 * writes them and exits. The main thread joins them all, then checks and
 * frees every block, thread by thread in allocation order. Reports
 * pairs = R x T x N. */
#include <pthread.h>

#include "bench.h"

typedef struct handoff_thread {
    pthread_t thread;
    uint64_t blocks, seed, index;
    bench_block_t *made;
} handoff_thread_t;

static void *handoff_make(void *arg)
{
    handoff_thread_t *t = arg;
    bench_rng_t rng;
    bench_rng_seed(&rng, t->seed, t->index);
    for (uint64_t i = 0; i < t->blocks; i++)
        t->made[i] = bench_alloc(bench_rng_range(&rng, 1, 512), bench_tag(i));
    return NULL;
}

int main(int argc, char **argv)
{
    bench_args_t args;
    bench_args_parse(&args, argc, argv);
    uint64_t rounds = bench_arg(&args, "rounds", 20);
    uint64_t threads = bench_arg(&args, "threads", 2);
    uint64_t blocks = bench_arg(&args, "blocks", 300000);
    uint64_t seed = bench_arg(&args, "seed", 1);
    bench_args_done(&args);
    if (threads == 0 || threads > 256)
        bench_fail("need 1 <= threads <= 256");

    handoff_thread_t *t = bench_map(threads, sizeof *t);
    for (uint64_t k = 0; k < threads; k++)
        t[k].made = bench_map(blocks, sizeof *t[k].made);
    for (uint64_t r = 0; r < rounds; r++) {
        for (uint64_t k = 0; k < threads; k++) {
            t[k].blocks = blocks;
            t[k].seed = seed + r;
            t[k].index = k;
            if (pthread_create(&t[k].thread, NULL, handoff_make, &t[k]) != 0)
                bench_fail("pthread_create failed");
        }
        for (uint64_t k = 0; k < threads; k++)
            pthread_join(t[k].thread, NULL);
        for (uint64_t k = 0; k < threads; k++)
            for (uint64_t i = 0; i < blocks; i++)
                bench_free(t[k].made[i]);
    }

    bench_report_begin("handoff");
    bench_report("pairs", rounds * threads * blocks);
    bench_report_end();
    for (uint64_t k = 0; k < threads; k++)
        bench_unmap(t[k].made, blocks, sizeof *t[k].made);
    bench_unmap(t, threads, sizeof *t);
    return 0;
}
