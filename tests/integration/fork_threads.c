/* fork_threads.c — fork() while other threads allocate, for the
 * integration tests; run by fork_threads.sh plain and with libpoolmalloc.so
 * preloaded (it never links poolmalloc).
 *
 * Four worker threads malloc/realloc/free continuously while the main thread
 * forks 50 times. A fork can land while a worker is inside malloc holding an
 * allocator lock; the allocator's fork handlers must leave the child with
 * usable locks and consistent pools. Each child:
 *   - frees half of the blocks the main thread allocated before the fork
 *     (inherited memory) and checks the other half's contents;
 *   - mallocs/reallocs/frees a few thousand blocks of sizes 1..2048,
 *     checking every block's fill pattern before freeing it;
 *   - frees the blocks of a short-lived thread that the parent started
 *     just before the fork (and that may be exiting as it forks), so the
 *     child frees into a heap whose thread it never had;
 *   - every third child also starts a thread that allocates, and every
 *     fifth forks a grandchild while that thread runs;
 *   - reports a checksum through a pipe and ends with _exit(0) (even
 *     children) or exit(0) (odd ones, which run atexit handlers and so
 *     write a poolmalloc stats report), or, every seventh, with
 *     pthread_exit() of its only thread.
 * Every tenth fork is made from a short-lived thread rather than the main
 * thread. A child that deadlocks is killed by its own alarm(); the parent
 * has an alarm too, which kills the children and fails loudly instead of
 * hanging (a child whose last thread is gone but that does not end, kept
 * alive by a thread the allocator started, cannot even take the alarm).
 * The one line printed depends only on the children's deterministic work.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORKERS 4
#define FORKS 50
#define WORKER_SLOTS 512
#define PARENT_BLOCKS 256
#define CHILD_SLOTS 256
#define CHILD_OPS 4000
#define CHILD_TIMEOUT_S 20
#define PARENT_TIMEOUT_S 60
#define TRANSIENT_BLOCKS 64

static atomic_bool stop_workers;
static pid_t children[FORKS];
static volatile sig_atomic_t children_reaped[FORKS];
static int children_started;

static void fail(const char *what)
{
    /* stdio may be what is broken: write(2) only. */
    char buf[256];
    int n = snprintf(buf, sizeof buf, "fork_threads[%d]: %s\n", (int)getpid(), what);
    if (n > 0)
        (void)!write(2, buf, (size_t)n);
    abort();
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

/* Sizes mostly small (pools), some just around 512, some large (glibc). */
static size_t pick_size(uint64_t *s)
{
    uint64_t r = rng_next(s);
    switch (r % 8) {
    case 0: return 1 + (size_t)(r >> 8) % 16;
    case 1: case 2: case 3: return 1 + (size_t)(r >> 8) % 256;
    case 4: case 5: return 257 + (size_t)(r >> 8) % 256;
    case 6: return 500 + (size_t)(r >> 8) % 30;
    default: return 513 + (size_t)(r >> 8) % 1536;
    }
}

typedef struct block {
    unsigned char *p;
    size_t size;
    unsigned char fill;
} block_t;

static void fill_block(block_t *b, void *p, size_t size, unsigned char fill)
{
    b->p = p;
    b->size = size;
    b->fill = fill;
    memset(p, fill, size);
}

static void check_block(const block_t *b, const char *who)
{
    for (size_t i = 0; i < b->size; i++)
        if (b->p[i] != b->fill) {
            char msg[160];
            snprintf(msg, sizeof msg, "%s: block %p (%zu bytes) corrupted at byte %zu",
                     who, (void *)b->p, b->size, i);
            fail(msg);
        }
}

static void *worker(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 7919 + 17;
    block_t slots[WORKER_SLOTS] = {{0}};
    while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
        block_t *b = &slots[rng_next(&seed) % WORKER_SLOTS];
        if (b->p) {
            check_block(b, "worker");
            if (rng_next(&seed) % 4 == 0) {
                size_t size = pick_size(&seed);
                void *q = realloc(b->p, size);
                if (!q)
                    fail("worker: realloc failed");
                /* The common prefix keeps the old fill. */
                b->p = q;
                if (size > b->size)
                    memset(b->p + b->size, b->fill, size - b->size);
                b->size = size;
                continue;
            }
            free(b->p);
            b->p = NULL;
        } else {
            size_t size = pick_size(&seed);
            void *p = rng_next(&seed) % 5 == 0 ? calloc(1, size) : malloc(size);
            if (!p)
                fail("worker: malloc failed");
            fill_block(b, p, size, (unsigned char)(rng_next(&seed) | 1));
        }
    }
    for (int i = 0; i < WORKER_SLOTS; i++)
        if (slots[i].p) {
            check_block(&slots[i], "worker");
            free(slots[i].p);
        }
    return NULL;
}

static void *child_thread(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg + 99;
    uint64_t sum = 0;
    for (int i = 0; i < 1000; i++) {
        size_t size = pick_size(&seed);
        unsigned char *p = malloc(size);
        if (!p)
            fail("child thread: malloc failed");
        memset(p, (int)(size & 0xff), size);
        sum += p[size - 1] + size;
        free(p);
    }
    return (void *)(uintptr_t)sum;
}

/* A thread the parent starts before each fork: it leaves blocks behind for
 * others to free, then churns and exits, possibly while the fork happens. */
typedef struct transient {
    pthread_t thread;
    atomic_int ready;
    block_t blocks[TRANSIENT_BLOCKS];
    int index;
} transient_t;

static void *transient_thread(void *arg)
{
    transient_t *t = arg;
    uint64_t seed = (uint64_t)t->index * 31337 + 5;
    for (int i = 0; i < TRANSIENT_BLOCKS; i++) {
        size_t size = pick_size(&seed);
        void *p = malloc(size);
        if (!p)
            fail("transient thread: malloc failed");
        fill_block(&t->blocks[i], p, size, (unsigned char)(i * 4 + 3));
    }
    atomic_store(&t->ready, 1);
    for (int i = 0; i < 500; i++)
        free(malloc(pick_size(&seed)));
    return NULL;
}

static void free_transient_blocks(transient_t *t, const char *who)
{
    for (int i = 0; i < TRANSIENT_BLOCKS; i++) {
        check_block(&t->blocks[i], who);
        free(t->blocks[i].p);
    }
}

/* A grandchild: allocates a little and reports through its exit status. */
static int grandchild_work(int index)
{
    uint64_t seed = (uint64_t)index + 7;
    block_t b;
    for (int i = 0; i < 500; i++) {
        size_t size = pick_size(&seed);
        void *p = malloc(size);
        if (!p)
            return 5;
        fill_block(&b, p, size, (unsigned char)(i | 1));
        check_block(&b, "grandchild");
        free(p);
    }
    return 0;
}

/* The child's whole life; returns its checksum. */
static uint64_t child_work(int index, block_t *parent_blocks, transient_t *transient)
{
    uint64_t sum = (uint64_t)index;
    /* Inherited blocks: free the even ones, check the odd ones. */
    for (int i = 0; i < PARENT_BLOCKS; i++) {
        check_block(&parent_blocks[i], "child (inherited block)");
        if (i % 2 == 0) {
            free(parent_blocks[i].p);
            parent_blocks[i].p = NULL;
        }
    }
    free_transient_blocks(transient, "child (transient thread's block)");
    pthread_t thread;
    int threaded = index % 3 == 0;
    if (threaded && pthread_create(&thread, NULL, child_thread, (void *)(uintptr_t)index) != 0)
        fail("child: pthread_create failed");
    if (index % 5 == 0) {
        /* Fork again, from a process that was itself forked, while
         * child_thread (if any) allocates. */
        pid_t pid = fork();
        if (pid < 0)
            fail("child: fork failed");
        if (pid == 0)
            _exit(grandchild_work(index));
        int status;
        while (waitpid(pid, &status, 0) < 0)
            if (errno != EINTR)
                fail("child: waitpid failed");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail("child: the grandchild failed or was killed");
        sum += 1000;
    }

    uint64_t seed = (uint64_t)index * 104729 + 1;
    block_t slots[CHILD_SLOTS] = {{0}};
    for (int op = 0; op < CHILD_OPS; op++) {
        block_t *b = &slots[rng_next(&seed) % CHILD_SLOTS];
        if (b->p) {
            check_block(b, "child");
            sum += b->size * b->fill;
            if (rng_next(&seed) % 4 == 0) {
                size_t size = pick_size(&seed);
                unsigned char *q = realloc(b->p, size);
                if (!q)
                    fail("child: realloc failed");
                b->p = q;
                if (size > b->size)
                    memset(q + b->size, b->fill, size - b->size);
                b->size = size;
                continue;
            }
            free(b->p);
            b->p = NULL;
        } else {
            size_t size = pick_size(&seed);
            void *p;
            if (size <= 512 && rng_next(&seed) % 8 == 0) {
                /* Small, power-of-two aligned: pools serve these too. */
                size_t alignment = (size_t)16 << (rng_next(&seed) % 6); /* 16..512 */
                if (posix_memalign(&p, alignment, size) != 0)
                    fail("child: posix_memalign failed");
                if ((uintptr_t)p % alignment != 0)
                    fail("child: posix_memalign returned a misaligned block");
            } else {
                p = malloc(size);
            }
            if (!p)
                fail("child: malloc failed");
            fill_block(b, p, size, (unsigned char)(rng_next(&seed) | 1));
        }
    }
    for (int i = 0; i < CHILD_SLOTS; i++)
        if (slots[i].p) {
            check_block(&slots[i], "child");
            sum += slots[i].size;
            free(slots[i].p);
        }
    for (int i = 1; i < PARENT_BLOCKS; i += 2) {
        check_block(&parent_blocks[i], "child (inherited block)");
        free(parent_blocks[i].p);
    }
    if (threaded) {
        void *ret;
        if (pthread_join(thread, &ret) != 0)
            fail("child: pthread_join failed");
        sum += (uint64_t)(uintptr_t)ret;
    }
    return sum;
}

typedef struct fork_job {
    int index;
    block_t *parent_blocks;
    transient_t *transient;
    int write_fd, read_fd;
    pid_t pid; /* out */
} fork_job_t;

/* Forks; in the child, does the child's work and ends it, one of three ways:
 * _exit(0), exit(0), or pthread_exit() of its only thread, after which the
 * process must end as if by exit(0) (a thread the allocator started and left
 * running would keep it alive for ever). */
static void fork_child(fork_job_t *job)
{
    pid_t pid = fork();
    if (pid < 0)
        fail("fork failed");
    if (pid > 0) {
        job->pid = pid;
        return;
    }
    signal(SIGALRM, SIG_DFL); /* a deadlocked child just dies */
    alarm(CHILD_TIMEOUT_S);
    close(job->read_fd);
    uint64_t sum = child_work(job->index, job->parent_blocks, job->transient);
    if (write(job->write_fd, &sum, sizeof sum) != (ssize_t)sizeof sum)
        _exit(4);
    if (job->index % 7 == 3)
        pthread_exit(NULL);
    if (job->index % 2 == 0)
        _exit(0);
    exit(0);
}

static void *fork_from_thread(void *arg)
{
    fork_child(arg);
    return NULL;
}

static void on_parent_alarm(int sig)
{
    (void)sig;
    /* Async-signal-safe: write(2) and kill(2) only, numbers by hand. */
    static const char msg[] = "fork_threads: parent timed out waiting for children "
                              "(a deadlock after fork, or a child that does not end "
                              "when its last thread has exited); children not ended:";
    (void)!write(2, msg, sizeof msg - 1);
    for (int i = 0; i < children_started; i++) {
        if (children_reaped[i])
            continue;
        char num[16];
        int n = (int)sizeof num;
        int v = i;
        do {
            num[--n] = (char)('0' + v % 10);
            v /= 10;
        } while (v > 0);
        num[--n] = ' ';
        (void)!write(2, num + n, sizeof num - (size_t)n);
        kill(children[i], SIGKILL);
    }
    (void)!write(2, "\n", 1);
    _exit(3);
}

int main(void)
{
    signal(SIGALRM, on_parent_alarm);
    alarm(PARENT_TIMEOUT_S);

    int fds[2];
    if (pipe(fds) != 0)
        fail("pipe failed");

    pthread_t workers[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        if (pthread_create(&workers[i], NULL, worker, (void *)(uintptr_t)(i + 1)) != 0)
            fail("pthread_create failed");

    uint64_t seed = 4242;
    for (int f = 0; f < FORKS; f++) {
        /* Fresh blocks for the child to inherit, allocated while the
         * workers run. */
        block_t parent_blocks[PARENT_BLOCKS];
        for (int i = 0; i < PARENT_BLOCKS; i++) {
            size_t size = pick_size(&seed);
            void *p = malloc(size);
            if (!p)
                fail("parent: malloc failed");
            fill_block(&parent_blocks[i], p, size, (unsigned char)(i * 2 + 1));
        }
        /* Let the workers get going between forks. */
        usleep(2000);
        transient_t transient = {.index = f};
        if (pthread_create(&transient.thread, NULL, transient_thread, &transient) != 0)
            fail("parent: pthread_create failed");
        while (!atomic_load(&transient.ready))
            sched_yield();

        /* Most forks come from the main thread; every tenth from a thread
         * made for it, so the child's only thread is not its main one. */
        fork_job_t job = {.index = f, .parent_blocks = parent_blocks,
                          .transient = &transient, .write_fd = fds[1], .read_fd = fds[0]};
        if (f % 10 == 9) {
            pthread_t forker;
            if (pthread_create(&forker, NULL, fork_from_thread, &job) != 0)
                fail("parent: pthread_create (forker) failed");
            if (pthread_join(forker, NULL) != 0)
                fail("parent: pthread_join (forker) failed");
        } else {
            fork_child(&job);
        }
        pid_t pid = job.pid;
        children[children_started++] = pid;
        if (pthread_join(transient.thread, NULL) != 0)
            fail("parent: pthread_join failed");
        free_transient_blocks(&transient, "parent (transient thread's block)");
        for (int i = 0; i < PARENT_BLOCKS; i++) {
            check_block(&parent_blocks[i], "parent");
            free(parent_blocks[i].p);
        }
    }
    close(fds[1]);

    int ok = 0;
    /* Reap in whatever order they end, so that a timeout names exactly the
     * children that did not. */
    for (int reaped = 0; reaped < children_started; reaped++) {
        int status, i;
        pid_t got;
        while ((got = waitpid(-1, &status, 0)) < 0 && errno == EINTR)
            ;
        if (got < 0)
            fail("waitpid failed");
        for (i = 0; i < children_started && children[i] != got; i++)
            ;
        if (i == children_started)
            fail("waitpid returned a process that is not one of our children");
        children_reaped[i] = 1;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            ok++;
        } else {
            char msg[128];
            if (WIFSIGNALED(status))
                snprintf(msg, sizeof msg, "child %d killed by signal %d (%s)", i,
                         WTERMSIG(status), strsignal(WTERMSIG(status)));
            else
                snprintf(msg, sizeof msg, "child %d exited %d", i, WEXITSTATUS(status));
            (void)!write(2, msg, strlen(msg));
            (void)!write(2, "\n", 1);
        }
    }
    /* The checksums arrive in any order; their sum does not care. */
    uint64_t total = 0, sum;
    int reports = 0;
    while (read(fds[0], &sum, sizeof sum) == (ssize_t)sizeof sum) {
        total += sum;
        reports++;
    }
    atomic_store(&stop_workers, true);
    for (int i = 0; i < WORKERS; i++)
        if (pthread_join(workers[i], NULL) != 0)
            fail("pthread_join failed");
    alarm(0);

    printf("fork_threads: %d forks, %d children ok, %d checksums, total %016llx\n",
           children_started, ok, reports, (unsigned long long)total);
    return ok == FORKS && reports == FORKS ? 0 : 1;
}
