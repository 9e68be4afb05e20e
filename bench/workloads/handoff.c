/* handoff.c — results made by threads that then exit, freed by the thread
 * that waited for them: worker pools that are torn down between jobs,
 * fork-join programs, a request handler's thread whose objects outlive it.
 * Every free is of a block whose allocating thread is gone.
 *
 *   pm_bench_handoff rounds=R threads=T blocks=N seed=S idle_ms=I
 *
 * Each round starts T threads; each mallocs N blocks of 1..512 bytes,
 * writes them and exits. The main thread joins them all, then checks and
 * frees every block, thread by thread in allocation order. Reports
 * pairs = R x T x N.
 *
 * With idle_ms=I (one round), the threads do not exit: they stay alive and
 * idle once they have made their blocks, as a pool's workers wait for the
 * next job while the main thread frees what they made (every free is of a
 * block whose thread is alive but will not allocate again for a while).
 * The main thread reads the resident set before the threads start, its
 * lists of blocks touched (rss_start_kib), once they have made their blocks (rss_made_kib), once
 * it has freed them all (rss_end_kib), and I ms later after a little more
 * work (rss_later_kib, bench_rss_later); end_over_start and
 * later_over_start are the last two over the first. */
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "bench.h"

typedef struct handoff_thread {
    pthread_t thread;
    uint64_t blocks, seed, index;
    bench_block_t *made;
    bool idle;
} handoff_thread_t;

/* With idle_ms: every thread has made its blocks; the main thread has
 * freed them and read the resident set, and the threads may exit. */
static pthread_barrier_t handoff_made, handoff_measured;

static void *handoff_make(void *arg)
{
    handoff_thread_t *t = arg;
    bench_rng_t rng;
    bench_rng_seed(&rng, t->seed, t->index);
    for (uint64_t i = 0; i < t->blocks; i++)
        t->made[i] = bench_alloc(bench_rng_range(&rng, 1, 512), bench_tag(i));
    if (t->idle) {
        pthread_barrier_wait(&handoff_made);
        pthread_barrier_wait(&handoff_measured);
    }
    return NULL;
}

/* The main thread's part with idle_ms (see the top). */
static void handoff_idle(handoff_thread_t *t, uint64_t threads, uint64_t blocks, uint64_t seed,
                         uint64_t idle_ms)
{
    /* The lists of blocks touched first: the start is the program with its
     * bookkeeping (bench/README). */
    for (uint64_t k = 0; k < threads; k++)
        memset(t[k].made, 0, blocks * sizeof *t[k].made);
    uint64_t rss_start = bench_rss_kib();
    if (pthread_barrier_init(&handoff_made, NULL, (unsigned)threads + 1) != 0 ||
        pthread_barrier_init(&handoff_measured, NULL, (unsigned)threads + 1) != 0)
        bench_fail("pthread_barrier_init failed");
    for (uint64_t k = 0; k < threads; k++) {
        t[k] = (handoff_thread_t){
            .blocks = blocks, .seed = seed, .index = k, .made = t[k].made, .idle = true};
        if (pthread_create(&t[k].thread, NULL, handoff_make, &t[k]) != 0)
            bench_fail("pthread_create failed");
    }
    pthread_barrier_wait(&handoff_made);
    uint64_t rss_made = bench_rss_kib();
    for (uint64_t k = 0; k < threads; k++)
        for (uint64_t i = 0; i < blocks; i++)
            bench_free(t[k].made[i]);
    uint64_t rss_end = bench_rss_kib();
    bench_rng_t rng;
    bench_rng_seed(&rng, seed, UINT64_MAX);
    bench_block_t *later = bench_map(BENCH_LATER_BLOCKS, sizeof *later);
    uint64_t rss_later = bench_rss_later(idle_ms, &rng, 1, 512, later);
    bench_unmap(later, BENCH_LATER_BLOCKS, sizeof *later);
    pthread_barrier_wait(&handoff_measured);
    for (uint64_t k = 0; k < threads; k++)
        pthread_join(t[k].thread, NULL);
    bench_report_begin("handoff");
    bench_report("pairs", threads * blocks);
    bench_report("rss_made_kib", rss_made);
    bench_report_idle(rss_start, rss_end, rss_later);
    bench_report_end();
}

int main(int argc, char **argv)
{
    bench_args_t args;
    bench_args_parse(&args, argc, argv);
    uint64_t rounds = bench_arg(&args, "rounds", 20);
    uint64_t threads = bench_arg(&args, "threads", 2);
    uint64_t blocks = bench_arg(&args, "blocks", 300000);
    uint64_t seed = bench_arg(&args, "seed", 1);
    uint64_t idle_ms = bench_arg(&args, "idle_ms", 0);
    bench_args_done(&args);
    if (threads == 0 || threads > 256)
        bench_fail("need 1 <= threads <= 256");

    handoff_thread_t *t = bench_map(threads, sizeof *t);
    for (uint64_t k = 0; k < threads; k++)
        t[k].made = bench_map(blocks, sizeof *t[k].made);
    if (idle_ms > 0) {
        handoff_idle(t, threads, blocks, seed, idle_ms);
        rounds = 0;
    }
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

    if (idle_ms == 0) {
        bench_report_begin("handoff");
        bench_report("pairs", rounds * threads * blocks);
        bench_report_end();
    }
    for (uint64_t k = 0; k < threads; k++)
        bench_unmap(t[k].made, blocks, sizeof *t[k].made);
    bench_unmap(t, threads, sizeof *t);
    return 0;
}
