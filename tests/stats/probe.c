/* probe.c — a plain malloc program for the dump-thread tests (dump.sh),
 * which run it with libpoolmalloc.so preloaded and stats on. Each mode does
 * one known thing; see dump.sh for what is checked. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { SMALL = 1000, LARGE = 37 };

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&t, &t) != 0)
        ;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* Never allocates: the thread has no heap, so nothing tells its end. */
static void *idle_thread(void *arg)
{
    sleep_ms((long)(intptr_t)arg);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    long ms = argc > 2 ? atol(argv[2]) : 0;
    if (strcmp(mode, "pattern") == 0) {
        /* Live at every snapshot but the last: 1000 blocks of 24 bytes
         * (class 1) and 37 glibc blocks. */
        static void *small[SMALL], *large[LARGE];
        for (int i = 0; i < SMALL; i++)
            memset(small[i] = malloc(24), 1, 24);
        for (int i = 0; i < LARGE; i++)
            memset(large[i] = malloc(1000 + (size_t)i * 100), 2, 1000);
        sleep_ms(ms);
        for (int i = 0; i < SMALL; i++)
            free(small[i]);
        for (int i = 0; i < LARGE; i++)
            free(large[i]);
        return 0;
    }
    if (strcmp(mode, "signal") == 0) {
        raise(SIGUSR1);
        sleep_ms(ms);
        return 0;
    }
    if (strcmp(mode, "fork") == 0) {
        pid_t child = fork();
        if (child == 0) {
            void *p = malloc(40);
            sleep_ms(ms);
            free(p);
            exit(0); /* atexit: the child's own final snapshot */
        }
        int status = 0;
        waitpid(child, &status, 0);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    }
    if (strcmp(mode, "loop") == 0) {
        /* Until killed: snapshots come every interval meanwhile. */
        void *slots[256] = {0};
        for (unsigned long i = 0;; i++) {
            free(slots[i % 256]);
            slots[i % 256] = malloc(16 + i % 700);
            if (i % 100000 == 0)
                sleep_ms(1);
        }
    }
    if (strcmp(mode, "closefds") == 0) {
        /* Like a daemon: every descriptor closed, the directory changed. */
        for (int fd = 0; fd < 1024; fd++)
            close(fd);
        if (chdir("/") != 0)
            return 3;
        sleep_ms(ms);
        void *p = malloc(48);
        free(p);
        return 0;
    }
    if (strcmp(mode, "pthread_exit") == 0) {
        /* main ends the program by ending its own thread: the process must
         * end with it, the dump thread notwithstanding. */
        free(malloc(16));
        pthread_exit(NULL);
    }
    if (strcmp(mode, "pthread_exit_idle") == 0) {
        /* The same, but the last thread to end is one that never
         * allocated: the dump thread must notice on its own. What main
         * printed is still in stdio's buffer (stdout is not a terminal):
         * exit() must flush it to the program's own stdout. */
        printf("probe: main's buffered line\n");
        pthread_t idle;
        if (pthread_create(&idle, NULL, idle_thread, (void *)(intptr_t)ms) != 0)
            return 3;
        pthread_exit(NULL);
    }
    if (strcmp(mode, "fdwatch") == 0) {
        /* A descriptor number the program has just freed stays free until
         * the program opens something: the dump thread's files (records,
         * /proc) must not take it, even for a moment. */
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0 || close(fd) != 0)
            return 3;
        unsigned long polls = 0;
        for (double end = now_ms() + (double)ms; now_ms() < end; polls++) {
            free(malloc(32));
            if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) {
                fprintf(stderr, "probe: descriptor %d was opened behind the program's back\n", fd);
                return 1;
            }
        }
        printf("probe: descriptor %d stayed free over %lu polls\n", fd, polls);
        return 0;
    }
    if (strcmp(mode, "can_unshare") == 0)
        return unshare(CLONE_FILES) == 0 ? 0 : 77; /* a seccomp filter may refuse it */
    fprintf(stderr, "usage: probe pattern|signal|fork|loop|closefds|pthread_exit|pthread_exit_idle|fdwatch|can_unshare [ms]\n");
    return 2;
}
