/* probe.c — a plain malloc program for the dump-thread tests (dump.sh),
 * which run it with libpoolmalloc.so preloaded and stats on. Each mode does
 * one known thing; see dump.sh for what is checked. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/single_threaded.h>
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

/* Without a call to the allocator (fopen would make one), so that reading
 * the resident set does not purge anything itself. */
static long resident_kib(void)
{
    char text[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, text, sizeof text - 1);
    if (fd >= 0)
        close(fd);
    char *resident = n > 0 ? memchr(text, ' ', (size_t)n) : NULL;
    if (resident == NULL)
        abort();
    text[n] = '\0';
    return strtol(resident + 1, NULL, 10) * (sysconf(_SC_PAGESIZE) / 1024);
}

/* glibc_heap PCT MS: 64 MiB of 8000-byte blocks (the glibc path, in its
 * heap), with one more on top that stays live, so glibc cannot give any
 * of it back by trimming its top; PCT% of them freed, the first allocated
 * first; then MS ms of sleep with no allocator call followed by a little
 * work on the glibc path (100 more blocks allocated and freed: 800 KB,
 * past a settle's step whatever the thread had unsettled), or for MS < 0
 * the program's own malloc_trim(0). Prints the RSS at each step. */
static int glibc_heap(long pct, long ms)
{
    enum { BLOCKS = 8192, SIZE = 8000 };
    static void *blocks[BLOCKS];
    long start = resident_kib();
    for (int i = 0; i < BLOCKS; i++)
        memset(blocks[i] = malloc(SIZE), 3, SIZE);
    void *pin = malloc(SIZE);
    long peak = resident_kib();
    for (int i = 0; i < BLOCKS * pct / 100; i++)
        free(blocks[i]);
    long freed = resident_kib();
    int trimmed = -1;
    long slept = -1;
    if (ms >= 0) {
        sleep_ms(ms);
        slept = resident_kib();
        void *more[100];
        for (int i = 0; i < 100; i++)
            memset(more[i] = malloc(SIZE), 4, SIZE);
        for (int i = 0; i < 100; i++)
            free(more[i]);
    } else {
        trimmed = malloc_trim(0);
    }
    long later = resident_kib();
    printf("start=%ld peak=%ld freed=%ld slept=%ld later=%ld trim=%d\n", start, peak, freed, slept,
           later, trimmed);
    free(pin);
    return 0;
}

/* quiet MS: two threads make 32 MiB of blocks of 64..512 bytes and wait;
 * the main thread frees them all, then the process sleeps MS ms without a
 * call to the allocator (the blocks wait for their idle threads to take
 * them back). Prints the resident set once they are made, once they are
 * freed, and after the sleep. */
enum { QUIET_THREADS = 2, QUIET_BLOCKS = 56000 };
static void *quiet_blocks[QUIET_THREADS][QUIET_BLOCKS];
static pthread_barrier_t quiet_made, quiet_done;

static void *quiet_maker(void *arg)
{
    void **blocks = arg;
    for (int i = 0; i < QUIET_BLOCKS; i++)
        memset(blocks[i] = malloc(64 + (size_t)i * 7 % 449), 5, 64);
    pthread_barrier_wait(&quiet_made);
    pthread_barrier_wait(&quiet_done);
    return NULL;
}

static int quiet(long ms)
{
    pthread_t makers[QUIET_THREADS];
    pthread_barrier_init(&quiet_made, NULL, QUIET_THREADS + 1);
    pthread_barrier_init(&quiet_done, NULL, QUIET_THREADS + 1);
    for (int k = 0; k < QUIET_THREADS; k++)
        if (pthread_create(&makers[k], NULL, quiet_maker, quiet_blocks[k]) != 0)
            return 3;
    pthread_barrier_wait(&quiet_made);
    long made = resident_kib();
    for (int k = 0; k < QUIET_THREADS; k++)
        for (int i = 0; i < QUIET_BLOCKS; i++)
            free(quiet_blocks[k][i]);
    long freed = resident_kib();
    sleep_ms(ms);
    long slept = resident_kib();
    printf("made=%ld freed=%ld slept=%ld\n", made, freed, slept);
    pthread_barrier_wait(&quiet_done);
    for (int k = 0; k < QUIET_THREADS; k++)
        pthread_join(makers[k], NULL);
    return 0;
}

/* The process's threads, the hidden dump thread among them. */
static int thread_count(void)
{
    int threads = 0;
    DIR *tasks = opendir("/proc/self/task");
    for (struct dirent *e; tasks != NULL && (e = readdir(tasks)) != NULL;)
        threads += e->d_name[0] != '.';
    if (tasks != NULL)
        closedir(tasks);
    return threads;
}
/* Blocks enough to take pools from the arenas (a pool holds 341 of
 * them): a fork child starts its dump thread when it first does. */
static void take_pools(void)
{
    enum { BLOCKS = 2000 };
    static void *blocks[BLOCKS];
    for (int i = 0; i < BLOCKS; i++)
        blocks[i] = malloc(40);
    for (int i = 0; i < BLOCKS; i++)
        free(blocks[i]);
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
        /* The parent's heap keeps a pool of the child's first block's class
         * (the only one of its class, emptied: I4), so that the child's
         * malloc takes none. Without this it depended on what the start-up
         * had allocated: a Debug build's had taken no pool of that class. */
        free(malloc(40));
        pid_t child = fork();
        if (child == 0) {
            /* No thread until the child takes a pool (pm_dump_start_if_pending). */
            void *p = malloc(40);
            int before = thread_count();
            take_pools();
            printf("child_threads_before=%d child_threads_after=%d\n", before, thread_count());
            fflush(stdout);
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
    if (strcmp(mode, "hidden") == 0) {
        /* The dump thread is not glibc's (allocator/dump.c): the program
         * stays single-threaded for glibc, and its errno, which that
         * thread shares, never changes behind its back, though the
         * thread's every snapshot fails to open its file (dump.sh). */
        errno = 4242;
        unsigned long checks = 0;
        for (double end = now_ms() + (double)ms; now_ms() < end; checks++) {
            void *p = malloc(checks % 2 ? 64 : 4096);
            free(p);
            if (errno != 4242) {
                fprintf(stderr, "probe: errno changed to %d behind the program's back\n", errno);
                return 1;
            }
        }
        int threads = thread_count();
        printf("single_threaded=%d threads=%d errno_checks=%lu\n", __libc_single_threaded,
               threads, checks);
        return 0;
    }
    if (strcmp(mode, "credentials") == 0) {
        /* Root drops to nobody the way daemons do: every thread of the
         * process must hold the new credentials after the calls return. */
        if (geteuid() != 0)
            return 77;
        gid_t nobody_group = 65534;
        free(malloc(32));
        if (setgroups(1, &nobody_group) != 0 || setresgid(65534, 65534, 65534) != 0 ||
            setresuid(65534, 65534, 65534) != 0)
            return 3;
        sleep_ms(ms); /* a few snapshots with the new credentials */
        char mine[512] = "", theirs[512];
        DIR *tasks = opendir("/proc/self/task");
        int threads = 0, differ = 0;
        for (struct dirent *e; tasks != NULL && (e = readdir(tasks)) != NULL;) {
            if (e->d_name[0] == '.')
                continue;
            char path[sizeof "/proc/self/task//status" + sizeof e->d_name];
            snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
            FILE *f = fopen(path, "r");
            theirs[0] = '\0';
            for (char line[256]; f != NULL && fgets(line, sizeof line, f) != NULL;)
                if (strncmp(line, "Uid:", 4) == 0 || strncmp(line, "Gid:", 4) == 0 ||
                    strncmp(line, "Groups:", 7) == 0 || strncmp(line, "CapEff:", 7) == 0)
                    strncat(theirs, line, sizeof theirs - strlen(theirs) - 1);
            if (f != NULL)
                fclose(f);
            if (mine[0] == '\0')
                memcpy(mine, theirs, sizeof mine);
            differ += strcmp(mine, theirs) != 0;
            threads++;
            printf("task %s:\n%s", e->d_name, theirs);
        }
        if (tasks != NULL)
            closedir(tasks);
        printf("threads=%d differing=%d\n", threads, differ);
        return differ == 0 && threads >= 1 ? 0 : 1;
    }
    if (strcmp(mode, "namespaces") == 0) {
        /* The calls the kernel makes only for a process of one thread, by
         * a program of one thread: setns() into its own mount namespace
         * again, by type and by "any", and into its time namespace (root
         * only), then unshare() into a user namespace of its own; then MS
         * ms with stats on. Prints each result (1, or -errno; 0 for a
         * namespace the kernel lacks) and the threads at the end (dump.sh). */
        free(malloc(32));
        int fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return 3;
        int by_type = setns(fd, CLONE_NEWNS) == 0 ? 1 : -errno;
        int by_any = setns(fd, 0) == 0 ? 1 : -errno;
        close(fd);
        int time_ns = 0;
        if ((fd = open("/proc/self/ns/time", O_RDONLY | O_CLOEXEC)) >= 0) {
            time_ns = setns(fd, CLONE_NEWTIME) == 0 ? 1 : -errno;
            close(fd);
        }
        int user = unshare(CLONE_NEWUSER) == 0 ? 1 : -errno;
        free(malloc(48));
        sleep_ms(ms);
        int threads = thread_count();
        printf("setns_mnt=%d setns_any=%d setns_time=%d unshare_user=%d threads=%d\n", by_type,
               by_any, time_ns, user, threads);
        return 0;
    }
    if (strcmp(mode, "pid_namespace") == 0) {
        /* unshare() into new user and PID namespaces, where no thread can
         * be made until a fork: the call ends as without poolmalloc, and
         * the child, the new namespace's first process, has its own dump
         * thread for MS ms. Prints the call's result, then the child's
         * threads (dump.sh). */
        free(malloc(32));
        int user_pid = unshare(CLONE_NEWUSER | CLONE_NEWPID) == 0 ? 1 : -errno;
        printf("unshare_user_pid=%d", user_pid);
        fflush(stdout);
        pid_t child = fork();
        if (child == 0) {
            take_pools();
            sleep_ms(ms);
            printf(" child_pid=%d child_threads=%d\n", (int)getpid(), thread_count());
            exit(0);
        }
        int status = 0;
        waitpid(child, &status, 0);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    }
    if (strcmp(mode, "glibc_heap") == 0)
        return glibc_heap(ms, argc > 3 ? atol(argv[3]) : 0);
    if (strcmp(mode, "quiet") == 0)
        return quiet(ms);
    if (strcmp(mode, "can_unshare") == 0)
        return unshare(CLONE_FILES) == 0 ? 0 : 77; /* a seccomp filter may refuse it */
    fprintf(stderr, "usage: probe pattern|signal|fork|loop|closefds|pthread_exit|"
                    "pthread_exit_idle|fdwatch|hidden|credentials|namespaces|pid_namespace|\n"
                    "       quiet|can_unshare [ms]\n"
                    "       probe glibc_heap PCT MS\n");
    return 2;
}
