/* loader_probe.c — profiling next to the dynamic loader, for profile.sh:
 * for the given milliseconds one thread loads and unloads a library, one
 * allocates inside dl_iterate_phdr callbacks (under the loader's list
 * lock), one allocates freely. Every thread's first sample unwinds with
 * libunwind, whose thread-local storage glibc allocates then, under a lock
 * dlopen holds while it waits for the list lock: the program must end. */
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static atomic_bool stop;

static void *load_unload(void *arg)
{
    (void)arg;
    long rounds = 0;
    while (!atomic_load(&stop)) {
        void *library = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
        if (library == NULL) {
            fprintf(stderr, "loader_probe: %s\n", dlerror());
            exit(77);
        }
        dlclose(library);
        rounds++;
    }
    return (void *)rounds;
}

static int allocate_in_callback(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)info;
    (void)size;
    void **kept = data;
    free(*kept);
    *kept = malloc(64 + (size_t)(rand() & 1023));
    return 0;
}

static void *iterate(void *arg)
{
    (void)arg;
    void *kept = NULL;
    long rounds = 0;
    while (!atomic_load(&stop)) {
        dl_iterate_phdr(allocate_in_callback, &kept);
        rounds++;
    }
    free(kept);
    return (void *)rounds;
}

static void *allocate(void *arg)
{
    (void)arg;
    void *slots[64] = {0};
    long rounds = 0;
    for (; !atomic_load(&stop); rounds++) {
        free(slots[rounds & 63]);
        slots[rounds & 63] = malloc(16 + (size_t)(rounds % 3000));
    }
    for (int k = 0; k < 64; k++)
        free(slots[k]);
    return (void *)rounds;
}

int main(int argc, char **argv)
{
    long ms = argc > 1 ? atol(argv[1]) : 2000;
    void *(*bodies[])(void *) = {load_unload, iterate, allocate};
    pthread_t threads[3];
    for (int i = 0; i < 3; i++)
        if (pthread_create(&threads[i], NULL, bodies[i], NULL) != 0)
            return 3;
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&pause, NULL);
    atomic_store(&stop, true);
    long rounds[3];
    for (int i = 0; i < 3; i++) {
        void *result;
        pthread_join(threads[i], &result);
        rounds[i] = (long)result;
    }
    printf("loader_probe: %ld loads, %ld walks, %ld allocations\n", rounds[0], rounds[1], rounds[2]);
    return 0;
}
