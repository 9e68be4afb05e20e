/* server.c — workload 4: a server-like mix. Worker threads handle requests
 * that allocate a handful of small objects; most die young (freed by the
 * same request), some migrate to another worker (freed there), a few are
 * kept in a shared cache and freed by whichever worker evicts them.
 * Never frees a block that another thread can still reach: a block is owned
 * by exactly one of a request, an inbox or a cache slot at any time.
 *
 *   pm_bench_server requests=N threads=T cache=C inbox=I seed=S
 *
 * Per request: drain this worker's inbox (free what other workers sent),
 * allocate 1..12 objects (75% of 16..96 bytes, 25% of 1..512), write and
 * read them, then for each object: 85% free it now, 10% send it to a random
 * other worker's inbox (a mutex-guarded ring of I entries; if it is full,
 * free it here), 5% put it in a random slot of the shared cache of C slots
 * (16 mutex stripes), freeing the object it evicts. At the end every
 * worker drains its inbox and main empties the cache. Reports pairs = the
 * number of objects allocated, and how many migrated and were evicted. */
#include <pthread.h>

#include "bench.h"

#define SERVER_STRIPES 16

typedef struct server_inbox {
    pthread_mutex_t lock;
    uint64_t head, count, capacity;
    bench_block_t *slots;
} server_inbox_t;

typedef struct server {
    uint64_t requests_per_thread, threads, cache_slots, seed;
    pthread_barrier_t done;
    pthread_mutex_t cache_lock[SERVER_STRIPES];
    bench_block_t *cache;
    server_inbox_t *inbox;
} server_t;

typedef struct server_worker {
    pthread_t thread;
    server_t *server;
    uint64_t index;
    uint64_t allocated, sent, evicted, checksum;
} server_worker_t;

static void server_drain(server_inbox_t *box)
{
    /* Take everything under the lock, free outside it. */
    bench_block_t taken[64];
    for (;;) {
        uint64_t n = 0;
        pthread_mutex_lock(&box->lock);
        while (box->count > 0 && n < 64) {
            taken[n++] = box->slots[box->head];
            box->head = (box->head + 1) % box->capacity;
            box->count--;
        }
        pthread_mutex_unlock(&box->lock);
        for (uint64_t i = 0; i < n; i++)
            bench_free(taken[i]);
        if (n < 64)
            return;
    }
}

/* Returns false if the inbox is full (the caller keeps the block). */
static int server_send(server_inbox_t *box, bench_block_t b)
{
    int sent = 0;
    pthread_mutex_lock(&box->lock);
    if (box->count < box->capacity) {
        box->slots[(box->head + box->count) % box->capacity] = b;
        box->count++;
        sent = 1;
    }
    pthread_mutex_unlock(&box->lock);
    return sent;
}

static void *server_run(void *arg)
{
    server_worker_t *w = arg;
    server_t *s = w->server;
    bench_rng_t rng;
    bench_rng_seed(&rng, s->seed, w->index);
    bench_block_t objects[12];
    uint64_t serial = 0;

    for (uint64_t r = 0; r < s->requests_per_thread; r++) {
        server_drain(&s->inbox[w->index]);
        size_t n = bench_rng_range(&rng, 1, 12);
        for (size_t i = 0; i < n; i++) {
            size_t size = bench_rng_below(&rng, 4) < 3 ? bench_rng_range(&rng, 16, 96)
                                                       : bench_rng_range(&rng, 1, 512);
            objects[i] = bench_alloc(size, bench_tag(serial++));
        }
        w->allocated += n;
        for (size_t i = 0; i < n; i++) /* "handle the request": read it all */
            w->checksum += objects[i].ptr[0] + objects[i].ptr[objects[i].size - 1];
        for (size_t i = 0; i < n; i++) {
            uint64_t fate = bench_rng_below(&rng, 100);
            if (fate < 85 || (fate < 95 && s->threads == 1)) {
                bench_free(objects[i]);
            } else if (fate < 95) {
                uint64_t to = (w->index + bench_rng_range(&rng, 1, s->threads - 1)) %
                              s->threads;
                if (server_send(&s->inbox[to], objects[i]))
                    w->sent++;
                else
                    bench_free(objects[i]);
            } else {
                uint64_t slot = bench_rng_below(&rng, s->cache_slots);
                pthread_mutex_t *lock = &s->cache_lock[slot % SERVER_STRIPES];
                pthread_mutex_lock(lock);
                bench_block_t old = s->cache[slot];
                s->cache[slot] = objects[i];
                pthread_mutex_unlock(lock);
                if (old.ptr != NULL) {
                    bench_free(old);
                    w->evicted++;
                }
            }
        }
    }
    /* Nobody sends after the barrier, so the last drain empties the inbox. */
    pthread_barrier_wait(&s->done);
    server_drain(&s->inbox[w->index]);
    return NULL;
}

int main(int argc, char **argv)
{
    bench_args_t args;
    bench_args_parse(&args, argc, argv);
    uint64_t requests = bench_arg(&args, "requests", 200000);
    uint64_t threads = bench_arg(&args, "threads", 4);
    uint64_t cache_slots = bench_arg(&args, "cache", 4096);
    uint64_t inbox_capacity = bench_arg(&args, "inbox", 256);
    uint64_t seed = bench_arg(&args, "seed", 1);
    bench_args_done(&args);
    if (threads == 0 || threads > 1024 || cache_slots == 0 || inbox_capacity == 0)
        bench_fail("need 1 <= threads <= 1024, cache >= 1, inbox >= 1");

    server_t *s = bench_map(1, sizeof *s);
    s->requests_per_thread = requests / threads;
    s->threads = threads;
    s->cache_slots = cache_slots;
    s->seed = seed;
    s->cache = bench_map(cache_slots, sizeof *s->cache);
    s->inbox = bench_map(threads, sizeof *s->inbox);
    pthread_barrier_init(&s->done, NULL, (unsigned)threads);
    for (int i = 0; i < SERVER_STRIPES; i++)
        pthread_mutex_init(&s->cache_lock[i], NULL);
    for (uint64_t k = 0; k < threads; k++) {
        pthread_mutex_init(&s->inbox[k].lock, NULL);
        s->inbox[k].capacity = inbox_capacity;
        s->inbox[k].slots = bench_map(inbox_capacity, sizeof(bench_block_t));
    }

    server_worker_t *w = bench_map(threads, sizeof *w);
    for (uint64_t k = 0; k < threads; k++) {
        w[k].server = s;
        w[k].index = k;
        if (pthread_create(&w[k].thread, NULL, server_run, &w[k]) != 0)
            bench_fail("pthread_create failed");
    }
    uint64_t allocated = 0, sent = 0, evicted = 0;
    for (uint64_t k = 0; k < threads; k++) {
        pthread_join(w[k].thread, NULL);
        allocated += w[k].allocated;
        sent += w[k].sent;
        evicted += w[k].evicted;
    }
    for (uint64_t i = 0; i < cache_slots; i++)
        if (s->cache[i].ptr != NULL)
            bench_free(s->cache[i]);

    bench_report_begin("server");
    bench_report("pairs", allocated);
    bench_report("migrated", sent);
    bench_report("evicted", evicted);
    bench_report_end();

    for (uint64_t k = 0; k < threads; k++) {
        bench_unmap(s->inbox[k].slots, inbox_capacity, sizeof(bench_block_t));
        pthread_mutex_destroy(&s->inbox[k].lock);
    }
    for (int i = 0; i < SERVER_STRIPES; i++)
        pthread_mutex_destroy(&s->cache_lock[i]);
    pthread_barrier_destroy(&s->done);
    bench_unmap(w, threads, sizeof *w);
    bench_unmap(s->inbox, threads, sizeof *s->inbox);
    bench_unmap(s->cache, cache_slots, sizeof *s->cache);
    bench_unmap(s, 1, sizeof *s);
    return 0;
}
