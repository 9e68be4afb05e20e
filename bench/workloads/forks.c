/* forks.c — a process that forks again and again: a shell, make, a server
 * that spawns a helper per job. What an allocator adds to fork() is its
 * atfork handlers and whatever pages they write, each of which, in the
 * parent and in the child, is a copy-on-write fault.
 *
 *   pm_bench_forks forks=F threads=T blocks=N seed=S
 *
 * T threads each make a few blocks and wait; the main thread keeps N
 * blocks of 16..512 bytes live, then forks F times. Each child frees one
 * inherited block and exits with _exit at once; the parent waits for it.
 * Reports forks = F. */
#include <pthread.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

static pthread_mutex_t idle_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cond = PTHREAD_COND_INITIALIZER;
static uint64_t idle_ready;
static bool idle_release;

/* A thread of the program's that allocated and now sleeps (a worker
 * between jobs): the allocator's fork handlers see its heap. */
static void *idle_thread(void *arg)
{
    bench_block_t held[16];
    for (int i = 0; i < 16; i++)
        held[i] = bench_alloc(64, bench_tag((uint64_t)i));
    pthread_mutex_lock(&idle_lock);
    idle_ready++;
    pthread_cond_broadcast(&idle_cond);
    while (!idle_release)
        pthread_cond_wait(&idle_cond, &idle_lock);
    pthread_mutex_unlock(&idle_lock);
    for (int i = 0; i < 16; i++)
        bench_free(held[i]);
    return arg;
}

int main(int argc, char **argv)
{
    bench_args_t args;
    bench_args_parse(&args, argc, argv);
    uint64_t forks = bench_arg(&args, "forks", 2000);
    uint64_t threads = bench_arg(&args, "threads", 2);
    uint64_t blocks = bench_arg(&args, "blocks", 10000);
    uint64_t seed = bench_arg(&args, "seed", 1);
    bench_args_done(&args);
    if (threads > 64 || blocks == 0)
        bench_fail("need threads <= 64, blocks >= 1");

    pthread_t idle[64];
    for (uint64_t t = 0; t < threads; t++)
        if (pthread_create(&idle[t], NULL, idle_thread, NULL) != 0)
            bench_fail("pthread_create failed");
    pthread_mutex_lock(&idle_lock);
    while (idle_ready < threads)
        pthread_cond_wait(&idle_cond, &idle_lock);
    pthread_mutex_unlock(&idle_lock);

    bench_block_t *live = bench_map(blocks, sizeof *live);
    bench_rng_t rng;
    bench_rng_seed(&rng, seed, 0);
    for (uint64_t i = 0; i < blocks; i++)
        live[i] = bench_alloc(bench_rng_range(&rng, 16, 512), bench_tag(i));
    for (uint64_t f = 0; f < forks; f++) {
        pid_t pid = fork();
        if (pid < 0)
            bench_fail("fork failed");
        if (pid == 0) {
            bench_free(live[f % blocks]);
            _exit(0);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            bench_fail("child %d did not exit cleanly", (int)pid);
    }

    pthread_mutex_lock(&idle_lock);
    idle_release = true;
    pthread_cond_broadcast(&idle_cond);
    pthread_mutex_unlock(&idle_lock);
    for (uint64_t t = 0; t < threads; t++)
        pthread_join(idle[t], NULL);
    for (uint64_t i = 0; i < blocks; i++)
        bench_free(live[i]);
    bench_unmap(live, blocks, sizeof *live);

    bench_report_begin("forks");
    bench_report("forks", forks);
    bench_report_end();
    return 0;
}
