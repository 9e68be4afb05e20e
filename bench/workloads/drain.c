/* drain.c — threads that drain their blocks in phases of other sizes, then
 * go on with light work or exit: a server's workers across the phases of
 * a job (parse, build, render), each leaving a few survivors in every
 * pool, slab or page it used.
 *
 *   pm_bench_drain threads=T slots=S keep=K idle_ms=I light=L exit=E seed=X
 *
 * Each of T threads holds S slots and goes through three phases, of blocks
 * of 16..143, then 128..255, then 384..511 bytes: it fills its empty slots
 * with blocks of the phase's sizes, then frees every block but one in K,
 * at random (a block of an earlier phase may survive again, with the same
 * odds). The main thread reads the resident set before the threads start,
 * its slots touched (rss_start_kib), and once every thread is through its
 * phases (rss_drained_kib). Then, after I ms:
 *   - exit=0: every thread allocates and frees one 32-byte block L times,
 *     each freed before the next (light work that takes no new memory),
 *     and the main thread reads rss_later_kib once they all have;
 *   - exit=1: the threads have exited, and the main thread does that light
 *     work itself, then reads rss_later_kib.
 * Then the threads (or the main thread) free their survivors. Reports
 * pairs (the blocks the phases allocated), the live bytes after the phases
 * (live_kib), and later_over_live, rss_later less rss_start over them: the
 * allocator's memory per live byte once it has had the chance to give back
 * what it can. */
#include <pthread.h>
#include <stdbool.h>

#include "bench.h"

typedef struct drain_thread {
    pthread_t thread;
    uint64_t slots, keep, light, seed, index, live_bytes, allocated;
    bench_block_t *slot;
    bool stay;
} drain_thread_t;

/* With exit=0: every thread is through its phases; the main thread has
 * read the resident set; every thread has done its light work. */
static pthread_barrier_t drain_drained, drain_read, drain_worked;

static const size_t drain_min[3] = {16, 128, 384};

/* Allocates and frees one 32-byte block `times` times. */
static void drain_light_work(uint64_t times)
{
    for (uint64_t i = 0; i < times; i++)
        bench_free(bench_alloc(32, bench_tag(i)));
}

static void drain_free_survivors(drain_thread_t *t)
{
    for (uint64_t i = 0; i < t->slots; i++)
        if (t->slot[i].ptr != NULL)
            bench_free(t->slot[i]);
}

static void *drain_run(void *arg)
{
    drain_thread_t *t = arg;
    bench_rng_t rng;
    bench_rng_seed(&rng, t->seed, t->index);
    for (int phase = 0; phase < 3; phase++) {
        for (uint64_t i = 0; i < t->slots; i++)
            if (t->slot[i].ptr == NULL) {
                t->slot[i] = bench_alloc(bench_rng_range(&rng, drain_min[phase],
                                                         drain_min[phase] + 127),
                                         bench_tag(i));
                t->allocated++;
            }
        for (uint64_t i = 0; i < t->slots; i++)
            if (bench_rng_below(&rng, t->keep) != 0) {
                bench_free(t->slot[i]);
                t->slot[i].ptr = NULL;
            }
    }
    for (uint64_t i = 0; i < t->slots; i++)
        if (t->slot[i].ptr != NULL)
            t->live_bytes += t->slot[i].size;
    if (t->stay) {
        pthread_barrier_wait(&drain_drained);
        pthread_barrier_wait(&drain_read);
        drain_light_work(t->light);
        pthread_barrier_wait(&drain_worked);
        drain_free_survivors(t);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    bench_args_t args;
    bench_args_parse(&args, argc, argv);
    uint64_t threads = bench_arg(&args, "threads", 8);
    uint64_t slots = bench_arg(&args, "slots", 100000);
    uint64_t keep = bench_arg(&args, "keep", 20);
    uint64_t idle_ms = bench_arg(&args, "idle_ms", 1500);
    uint64_t light = bench_arg(&args, "light", 100000);
    bool exits = bench_arg(&args, "exit", 0) != 0;
    uint64_t seed = bench_arg(&args, "seed", 1);
    bench_args_done(&args);
    if (threads == 0 || threads > 256)
        bench_fail("need 1 <= threads <= 256");
    if (keep == 0)
        bench_fail("need keep >= 1");

    drain_thread_t *t = bench_map(threads, sizeof *t);
    for (uint64_t k = 0; k < threads; k++)
        t[k] = (drain_thread_t){.slots = slots, .keep = keep, .light = light, .seed = seed,
                                .index = k, .slot = bench_map(slots, sizeof(bench_block_t)),
                                .stay = !exits};
    /* The slots touched first: the start is the program with its
     * bookkeeping (bench/README). */
    for (uint64_t k = 0; k < threads; k++)
        for (uint64_t i = 0; i < slots; i++)
            t[k].slot[i].ptr = NULL;
    uint64_t rss_start = bench_rss_kib();
    unsigned parties = (unsigned)threads + 1;
    if (pthread_barrier_init(&drain_drained, NULL, parties) != 0 ||
        pthread_barrier_init(&drain_read, NULL, parties) != 0 ||
        pthread_barrier_init(&drain_worked, NULL, parties) != 0)
        bench_fail("pthread_barrier_init failed");
    for (uint64_t k = 0; k < threads; k++)
        if (pthread_create(&t[k].thread, NULL, drain_run, &t[k]) != 0)
            bench_fail("pthread_create failed");
    if (exits)
        for (uint64_t k = 0; k < threads; k++)
            pthread_join(t[k].thread, NULL);
    else
        pthread_barrier_wait(&drain_drained);
    uint64_t rss_drained = bench_rss_kib();
    uint64_t live_bytes = 0, allocated = 0;
    for (uint64_t k = 0; k < threads; k++) {
        live_bytes += t[k].live_bytes;
        allocated += t[k].allocated;
    }
    bench_sleep_ms(idle_ms);
    uint64_t rss_later;
    if (exits) {
        drain_light_work(light);
        rss_later = bench_rss_kib();
        for (uint64_t k = 0; k < threads; k++)
            drain_free_survivors(&t[k]);
    } else {
        pthread_barrier_wait(&drain_read);
        pthread_barrier_wait(&drain_worked);
        rss_later = bench_rss_kib();
        for (uint64_t k = 0; k < threads; k++)
            pthread_join(t[k].thread, NULL);
    }
    uint64_t live_kib = live_bytes / 1024;
    bench_report_begin("drain");
    bench_report("pairs", allocated);
    bench_report("live_kib", live_kib);
    bench_report("rss_start_kib", rss_start);
    bench_report("rss_drained_kib", rss_drained);
    bench_report("rss_later_kib", rss_later);
    bench_report_real("later_over_live",
                      live_kib == 0 ? 0.0 : ((double)rss_later - (double)rss_start) / (double)live_kib);
    bench_report_end();
    for (uint64_t k = 0; k < threads; k++)
        bench_unmap(t[k].slot, slots, sizeof(bench_block_t));
    bench_unmap(t, threads, sizeof *t);
    return 0;
}
