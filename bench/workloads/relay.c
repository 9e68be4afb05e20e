/* relay.c — short-lived threads that hand their objects on: a
 * thread-per-task server, a pool of workers recycled after each job
 * (the pattern of the larson benchmark, used by mimalloc-bench).
 *
 *   pm_bench_relay chains=C slots=N ops=K legs=L min=A max=B seed=S
 *
 * Each of C chains owns N slots holding blocks of A..B bytes. A chain
 * runs as L threads one after another (legs): each replaces K random
 * slots (frees the block there, mallocs a new one of a random size and
 * writes it), then starts the next leg's thread, hands it the slots, and
 * exits. So a thread frees mostly blocks that threads now gone made, and
 * threads start and exit by the thousand. The last leg frees every block.
 * Reports pairs = C x (N + L x K). */
#include <pthread.h>
#include <stdbool.h>

#include "bench.h"

typedef struct relay_chain {
    bench_block_t *slots;
    uint64_t slot_count, ops, legs_left, leg, min, max, seed, index;
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    bool done;
} relay_chain_t;

static void *relay_leg(void *arg)
{
    relay_chain_t *c = arg;
    bench_rng_t rng;
    bench_rng_seed(&rng, c->seed + c->leg, c->index);
    for (uint64_t i = 0; i < c->ops; i++) {
        bench_block_t *slot = &c->slots[bench_rng_below(&rng, c->slot_count)];
        bench_free(*slot);
        *slot = bench_alloc(bench_rng_range(&rng, c->min, c->max), bench_tag(i));
    }
    if (--c->legs_left > 0) {
        c->leg++;
        pthread_t next;
        if (pthread_create(&next, NULL, relay_leg, c) != 0)
            bench_fail("pthread_create failed");
        pthread_detach(next);
        return NULL;
    }
    for (uint64_t i = 0; i < c->slot_count; i++)
        bench_free(c->slots[i]);
    pthread_mutex_lock(&c->lock);
    c->done = true;
    pthread_cond_signal(&c->done_cond);
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

int main(int argc, char **argv)
{
    bench_args_t args;
    bench_args_parse(&args, argc, argv);
    uint64_t chains = bench_arg(&args, "chains", 4);
    uint64_t slots = bench_arg(&args, "slots", 1000);
    uint64_t ops = bench_arg(&args, "ops", 10000);
    uint64_t legs = bench_arg(&args, "legs", 200);
    uint64_t min = bench_arg(&args, "min", 8);
    uint64_t max = bench_arg(&args, "max", 512);
    uint64_t seed = bench_arg(&args, "seed", 1);
    bench_args_done(&args);
    if (chains == 0 || chains > 256 || slots == 0 || legs == 0 || min == 0 || max < min ||
        max > UINT32_MAX)
        bench_fail("need 1 <= chains <= 256, slots >= 1, legs >= 1, 1 <= min <= max");

    relay_chain_t *c = bench_map(chains, sizeof *c);
    for (uint64_t k = 0; k < chains; k++) {
        c[k] = (relay_chain_t){.slot_count = slots, .ops = ops, .legs_left = legs,
                               .min = min, .max = max, .seed = seed, .index = k};
        c[k].slots = bench_map(slots, sizeof *c[k].slots);
        pthread_mutex_init(&c[k].lock, NULL);
        pthread_cond_init(&c[k].done_cond, NULL);
        bench_rng_t rng;
        bench_rng_seed(&rng, seed, chains + k);
        for (uint64_t i = 0; i < slots; i++)
            c[k].slots[i] = bench_alloc(bench_rng_range(&rng, min, max), bench_tag(i));
    }
    for (uint64_t k = 0; k < chains; k++) {
        pthread_t first;
        if (pthread_create(&first, NULL, relay_leg, &c[k]) != 0)
            bench_fail("pthread_create failed");
        pthread_detach(first);
    }
    for (uint64_t k = 0; k < chains; k++) {
        pthread_mutex_lock(&c[k].lock);
        while (!c[k].done)
            pthread_cond_wait(&c[k].done_cond, &c[k].lock);
        pthread_mutex_unlock(&c[k].lock);
        bench_unmap(c[k].slots, slots, sizeof *c[k].slots);
    }

    bench_report_begin("relay");
    bench_report("pairs", chains * (slots + legs * ops));
    bench_report_end();
    bench_unmap(c, chains, sizeof *c);
    return 0;
}
