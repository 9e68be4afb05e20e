/* frag.c — a plain malloc program with a known shape for the poolmalloc
 * command's tests (tools.sh), run under the preloaded library. It builds up
 * small and large blocks, then frees most of them:
 *   frag scattered MS  keeps every 20th small block: pools stay pinned, RSS
 *                      stays up while live bytes fall (fragmentation)
 *   frag clean MS      frees everything: pools go back, RSS can fall
 *   frag handoff MS    a thread makes 1.2 million small blocks and waits
 *                      while the main thread frees them all: they wait for
 *                      their thread in parcels, the allocator's metadata
 *                      (4 bytes a block), until it wakes
 *   frag exit CODE     allocates a little and exits with CODE
 *   frag crash         allocates a little and raises SIGSEGV
 * MS is how long each phase lasts, so interval snapshots see it. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { SMALL = 200000, MEDIUM = 60000, LARGE = 2000, KEEP_EVERY = 20, HANDOFF = 1200000 };

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&t, &t) != 0)
        ;
}

static void *handoff[HANDOFF];
static pthread_barrier_t handoff_made, handoff_freed;

static void *handoff_maker(void *arg)
{
    (void)arg;
    for (int i = 0; i < HANDOFF; i++)
        memset(handoff[i] = malloc(16), 4, 16);
    pthread_barrier_wait(&handoff_made);
    pthread_barrier_wait(&handoff_freed); /* idle until the main thread is done */
    free(malloc(16)); /* takes its blocks back */
    return NULL;
}

static int run_handoff(long ms)
{
    pthread_t maker;
    if (pthread_barrier_init(&handoff_made, NULL, 2) != 0 ||
        pthread_barrier_init(&handoff_freed, NULL, 2) != 0 ||
        pthread_create(&maker, NULL, handoff_maker, NULL) != 0)
        return 1;
    pthread_barrier_wait(&handoff_made);
    for (int i = 0; i < HANDOFF; i++)
        free(handoff[i]);
    sleep_ms(ms);
    pthread_barrier_wait(&handoff_freed);
    pthread_join(maker, NULL);
    printf("frag: handoff done\n");
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    long arg = argc > 2 ? atol(argv[2]) : 0;
    if (strcmp(mode, "exit") == 0 || strcmp(mode, "crash") == 0) {
        char *p = malloc(100);
        memset(p, 1, 100);
        printf("frag: %s\n", mode);
        fflush(stdout);
        if (strcmp(mode, "crash") == 0)
            raise(SIGSEGV);
        free(p);
        return (int)arg;
    }
    if (strcmp(mode, "handoff") == 0)
        return run_handoff(arg);
    int scattered = strcmp(mode, "scattered") == 0;
    if (!scattered && strcmp(mode, "clean") != 0) {
        fprintf(stderr, "usage: frag scattered|clean|handoff MS | exit CODE | crash\n");
        return 2;
    }
    static void *small[SMALL], *medium[MEDIUM], *large[LARGE];
    for (int i = 0; i < SMALL; i++)
        memset(small[i] = malloc(40), 1, 40);          /* class 2: 48-byte blocks */
    for (int i = 0; i < MEDIUM; i++)
        memset(medium[i] = malloc(200), 2, 200);       /* class 12: 208-byte blocks */
    for (int i = 0; i < LARGE; i++)
        memset(large[i] = malloc(4000), 3, 4000);      /* glibc path */
    sleep_ms(arg);
    for (int i = 0; i < SMALL; i++)
        if (!scattered || i % KEEP_EVERY != 0)
            free(small[i]);
    for (int i = 0; i < MEDIUM; i++)
        if (!scattered || i % KEEP_EVERY != 0)
            free(medium[i]);
    for (int i = 0; i < LARGE; i++)
        free(large[i]);
    sleep_ms(arg);
    printf("frag: %s done\n", mode);
    return 0;
}
