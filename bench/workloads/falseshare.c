/* falseshare.c — workload 5: a false-sharing probe. Threads allocate small
 * objects at the same time and write them hard; an allocator that hands
 * neighbouring blocks of one cache line to different threads makes every
 * write a cache-line transfer between cores.
 * Never lets two threads write the same block: each owns what it mallocs.
 *
 *   pm_bench_falseshare ops=N threads=T batch=B writes=W seed=S
 *
 * First main mallocs T x B small blocks back to back and hands each thread
 * B of them to free (passive false sharing: the freed blocks may be handed
 * back to that thread, next to the other threads' blocks; Hoard's
 * cache-scratch). Then each thread, ops / T times over, mallocs a batch of B
 * blocks of 8..64 bytes and increments every byte of each block, W rounds
 * in all, then checks and frees the batch (active false sharing: Hoard's
 * cache-thrash). Reports pairs = the number of blocks allocated, main's
 * included. */
#include <pthread.h>

#include "bench.h"

typedef struct falseshare_thread {
    pthread_t thread;
    uint64_t batches, batch, writes, seed, index;
    bench_block_t *handed; /* B blocks malloc'd by main, freed by this thread */
    bench_block_t *live;   /* this thread's current batch */
    uint64_t pairs;
} falseshare_thread_t;

static void *falseshare_run(void *arg)
{
    falseshare_thread_t *t = arg;
    bench_rng_t rng;
    bench_rng_seed(&rng, t->seed, t->index + 1);
    for (uint64_t i = 0; i < t->batch; i++)
        bench_free(t->handed[i]);

    uint64_t serial = 0;
    for (uint64_t r = 0; r < t->batches; r++) {
        for (uint64_t i = 0; i < t->batch; i++)
            t->live[i] = bench_alloc(bench_rng_range(&rng, 8, 64), bench_tag(serial++));
        for (uint64_t w = 0; w < t->writes; w++) {
            for (uint64_t i = 0; i < t->batch; i++) {
                /* volatile: every increment is a real store to the block;
                 * skip the first and last byte, which hold the tag. */
                volatile unsigned char *p = t->live[i].ptr;
                size_t at = 1 + w % (t->live[i].size - 2);
                p[at] = (unsigned char)(p[at] + 1);
            }
        }
        for (uint64_t i = 0; i < t->batch; i++)
            bench_free(t->live[i]);
        t->pairs += t->batch;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    bench_args_t args;
    bench_args_parse(&args, argc, argv);
    uint64_t ops = bench_arg(&args, "ops", 200000);
    uint64_t threads = bench_arg(&args, "threads", 2);
    uint64_t batch = bench_arg(&args, "batch", 4);
    uint64_t writes = bench_arg(&args, "writes", 200);
    uint64_t seed = bench_arg(&args, "seed", 1);
    bench_args_done(&args);
    if (threads == 0 || threads > 1024 || batch == 0 || batch > 4096)
        bench_fail("need 1 <= threads <= 1024, 1 <= batch <= 4096");

    falseshare_thread_t *t = bench_map(threads, sizeof *t);
    bench_rng_t rng;
    bench_rng_seed(&rng, seed, 0);
    uint64_t pairs = 0;
    for (uint64_t k = 0; k < threads; k++) {
        t[k] = (falseshare_thread_t){.batches = ops / threads / batch, .batch = batch,
                                     .writes = writes, .seed = seed, .index = k};
        t[k].handed = bench_map(batch, sizeof(bench_block_t));
        t[k].live = bench_map(batch, sizeof(bench_block_t));
    }
    /* Interleaved, so that neighbouring blocks go to different threads. */
    for (uint64_t i = 0; i < batch; i++)
        for (uint64_t k = 0; k < threads; k++, pairs++)
            t[k].handed[i] = bench_alloc(bench_rng_range(&rng, 8, 64), bench_tag(pairs));
    for (uint64_t k = 0; k < threads; k++)
        if (pthread_create(&t[k].thread, NULL, falseshare_run, &t[k]) != 0)
            bench_fail("pthread_create failed");
    for (uint64_t k = 0; k < threads; k++) {
        pthread_join(t[k].thread, NULL);
        pairs += t[k].pairs;
    }

    bench_report_begin("falseshare");
    bench_report("pairs", pairs);
    bench_report_end();
    for (uint64_t k = 0; k < threads; k++) {
        bench_unmap(t[k].handed, batch, sizeof(bench_block_t));
        bench_unmap(t[k].live, batch, sizeof(bench_block_t));
    }
    bench_unmap(t, threads, sizeof *t);
    return 0;
}
