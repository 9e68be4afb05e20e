/* prodcons.c — workload 3: one thread allocates, another frees (every free
 * is a cross-thread free).
 * Never lets both threads touch a block at once: the queue hands it over.
 *
 *   pm_bench_prodcons ops=N batch=B queue=Q seed=S read=R
 *
 * The producer mallocs N blocks of 1..512 bytes and writes them, B at a
 * time into a batch; full batches go through a queue of Q batches (a mutex
 * and two condition variables) to the consumer, which checks and frees
 * every block of a batch (read=1, the default: it reads each block's first
 * and last byte, as a consumer uses what it is handed), or frees them
 * unread (read=0: a queue of buffers freed elsewhere, where the allocator's
 * own reads of a block are all the consumer's). Waiting blocks rather than
 * spins, so the run does not collapse when the machine has fewer free cores
 * than threads (a spinning queue measured the scheduler more than the
 * allocator). Reports pairs = N, and each thread's time in its loop of
 * mallocs or frees, the waits left out (producer_busy_ms,
 * consumer_busy_ms): the busier thread sets the pace. */
#include <pthread.h>
#include <stdbool.h>

#include "bench.h"

typedef struct prodcons_queue {
    pthread_mutex_t lock;
    pthread_cond_t not_full, not_empty;
    uint64_t head, count; /* batches waiting: slots head .. head + count - 1 */
    uint64_t depth, batch, ops, seed;
    bool read;
    uint64_t producer_busy_ns, consumer_busy_ns;
    bench_block_t *blocks; /* depth x batch */
    uint64_t *filled;      /* blocks in each slot */
} prodcons_queue_t;

static void *prodcons_producer(void *arg)
{
    prodcons_queue_t *q = arg;
    bench_rng_t rng;
    bench_rng_seed(&rng, q->seed, 0);
    for (uint64_t done = 0; done < q->ops;) {
        pthread_mutex_lock(&q->lock);
        while (q->count == q->depth)
            pthread_cond_wait(&q->not_full, &q->lock);
        /* Only this thread adds, and head + count does not move while the
         * consumer takes batches, so the slot is ours until count grows. */
        uint64_t slot = (q->head + q->count) % q->depth;
        pthread_mutex_unlock(&q->lock);

        uint64_t n = q->ops - done < q->batch ? q->ops - done : q->batch;
        bench_block_t *b = &q->blocks[slot * q->batch];
        uint64_t start = bench_now_ns();
        for (uint64_t i = 0; i < n; i++)
            b[i] = bench_alloc(bench_rng_range(&rng, 1, 512), bench_tag(done + i));
        q->producer_busy_ns += bench_now_ns() - start;
        q->filled[slot] = n;
        done += n;

        pthread_mutex_lock(&q->lock);
        q->count++;
        pthread_cond_signal(&q->not_empty);
        pthread_mutex_unlock(&q->lock);
    }
    return NULL;
}

static void *prodcons_consumer(void *arg)
{
    prodcons_queue_t *q = arg;
    for (uint64_t done = 0; done < q->ops;) {
        pthread_mutex_lock(&q->lock);
        while (q->count == 0)
            pthread_cond_wait(&q->not_empty, &q->lock);
        uint64_t slot = q->head;
        pthread_mutex_unlock(&q->lock);

        /* The slot stays counted (so the producer cannot refill it) until
         * every block in it is freed. */
        bench_block_t *b = &q->blocks[slot * q->batch];
        uint64_t start = bench_now_ns();
        for (uint64_t i = 0; i < q->filled[slot]; i++) {
            if (q->read)
                bench_free(b[i]);
            else
                free(b[i].ptr);
        }
        q->consumer_busy_ns += bench_now_ns() - start;
        done += q->filled[slot];

        pthread_mutex_lock(&q->lock);
        q->head = (q->head + 1) % q->depth;
        q->count--;
        pthread_cond_signal(&q->not_full);
        pthread_mutex_unlock(&q->lock);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    bench_args_t args;
    bench_args_parse(&args, argc, argv);
    uint64_t ops = bench_arg(&args, "ops", 1000000);
    uint64_t batch = bench_arg(&args, "batch", 256);
    uint64_t depth = bench_arg(&args, "queue", 8);
    uint64_t seed = bench_arg(&args, "seed", 1);
    uint64_t read = bench_arg(&args, "read", 1);
    bench_args_done(&args);
    if (batch == 0 || depth == 0 || batch > (1u << 20) || depth > 4096 || read > 1)
        bench_fail("need 1 <= batch <= 2^20, 1 <= queue <= 4096, read 0 or 1");

    prodcons_queue_t *q = bench_map(1, sizeof *q);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->not_full, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    q->depth = depth;
    q->batch = batch;
    q->ops = ops;
    q->seed = seed;
    q->read = read != 0;
    q->blocks = bench_map(depth * batch, sizeof *q->blocks);
    q->filled = bench_map(depth, sizeof *q->filled);
    pthread_t producer, consumer;
    if (pthread_create(&consumer, NULL, prodcons_consumer, q) != 0 ||
        pthread_create(&producer, NULL, prodcons_producer, q) != 0)
        bench_fail("pthread_create failed");
    pthread_join(producer, NULL);
    pthread_join(consumer, NULL);

    bench_report_begin("prodcons");
    bench_report("pairs", ops);
    bench_report("producer_busy_ms", q->producer_busy_ns / 1000000);
    bench_report("consumer_busy_ms", q->consumer_busy_ns / 1000000);
    bench_report_end();
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    pthread_mutex_destroy(&q->lock);
    bench_unmap(q->filled, depth, sizeof *q->filled);
    bench_unmap(q->blocks, depth * batch, sizeof *q->blocks);
    bench_unmap(q, 1, sizeof *q);
    return 0;
}
