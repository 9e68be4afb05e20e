/* check_fork.c — fork() with the core's hooks installed as the preload shim
 * installs them (pm_fork_prepare / parent / child via pthread_atfork): a
 * child forked while other threads allocate finds every lock usable and the
 * heap consistent, and inherited blocks are its own to read and free.
 * Children report by exit code, never through Check. */
#include "support.h"

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/rseq.h>
#include <sys/wait.h>
#include <unistd.h>

enum {
    CHILD_OK = 0,
    CHILD_ALLOC_FAILED = 10,
    CHILD_PATTERN = 11,
    CHILD_STATS = 12,
    CHILD_OWNS = 13,
};

static atomic_int stop_flag;

static void install_fork_hooks(void)
{
    ck_assert_int_eq(pthread_atfork(pm_fork_prepare, pm_fork_parent, pm_fork_child), 0);
}

static int child_stats_ok(int heaps_consistent);

/* What a child does: every kind of allocation, checked, then exit. */
static int child_work(uint64_t seed, int heaps_consistent)
{
    enum { SLOTS = 128 };
    void *ptr[SLOTS] = {0};
    size_t size[SLOTS] = {0};
    pm_test_rng_t rng;
    pm_test_rng_seed(&rng, seed);
    for (int op = 0; op < 3000; op++) {
        size_t i = pm_test_rng_range(&rng, 0, SLOTS - 1);
        if (ptr[i]) {
            if (!pm_test_pattern_ok(ptr[i], size[i], i))
                return CHILD_PATTERN;
            pm_free(ptr[i]);
            ptr[i] = NULL;
        } else {
            size_t n = pm_test_rng_range(&rng, 0, 2 * PM_SMALL_MAX);
            if (!(ptr[i] = pm_malloc(n)))
                return CHILD_ALLOC_FAILED;
            if ((pm_owns(ptr[i]) != 0) != (pm_size_class(n) >= 0))
                return CHILD_OWNS;
            size[i] = n;
            pm_test_pattern_fill(ptr[i], n, i);
        }
    }
    for (size_t i = 0; i < SLOTS; i++)
        pm_free(ptr[i]);
    return child_stats_ok(heaps_consistent) ? CHILD_OK : CHILD_STATS;
}

/* 1 if the child's stats hold together; else says which relation broke on
 * stderr (the parent's failure message only has the exit code).
 * heaps_consistent: 0 when the fork may have cut another thread mid-update
 * (see pm_test_stats_problem). */
static int child_stats_ok(int heaps_consistent)
{
    pm_stats_t s;
    pm_stats_get(&s);
    const char *problem = pm_test_stats_problem(&s, heaps_consistent);
    if (problem == NULL)
        return 1;
    static const char prefix[] = "child: stats relation violated: ";
    if (write(STDERR_FILENO, prefix, sizeof prefix - 1) < 0 ||
        write(STDERR_FILENO, problem, strlen(problem)) < 0 ||
        write(STDERR_FILENO, "\n", 1) < 0)
        return 0;
    return 0;
}

static void *busy_worker(void *arg)
{
    pm_test_rng_t rng;
    pm_test_rng_seed(&rng, (uint64_t)(uintptr_t)arg);
    void *held[64] = {0};
    while (!atomic_load(&stop_flag)) {
        size_t i = pm_test_rng_range(&rng, 0, 63);
        pm_free(held[i]);
        size_t n = pm_test_rng_range(&rng, 0, 100) < 90
                       ? pm_test_rng_range(&rng, 0, PM_SMALL_MAX)
                       : pm_test_rng_range(&rng, PM_SMALL_MAX + 1, 8192);
        held[i] = pm_malloc(n);
        if (held[i])
            memset(held[i], 0x77, n);
    }
    for (size_t i = 0; i < 64; i++)
        pm_free(held[i]);
    return NULL;
}

/* A thread running `run`, once it has set *ready. */
static pthread_t thread_started(void *(*run)(void *), atomic_int *ready)
{
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, run, NULL), 0);
    while (!atomic_load(ready))
        usleep(1000);
    return t;
}

static void wait_child_ok(pid_t pid, int round)
{
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == CHILD_OK,
                  "child %d: %s %d", round,
                  WIFEXITED(status) ? "exit code" : "killed by signal",
                  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

static void child_setup(void)
{
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    alarm(10); /* a lock left held at fork would hang: fail instead */
}

START_TEST(test_fork_while_allocating)
{
    enum { WORKERS = 3, FORKS = 20 };
    install_fork_hooks();
    atomic_store(&stop_flag, 0);
    pthread_t workers[WORKERS];
    for (uintptr_t t = 0; t < WORKERS; t++)
        ck_assert_int_eq(pthread_create(&workers[t], NULL, busy_worker, (void *)(t + 1)), 0);
    for (int round = 0; round < FORKS; round++) {
        usleep(2000); /* let the workers get going between forks */
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            child_setup();
            _exit(child_work((uint64_t)round, 0)); /* workers were busy */
        }
        wait_child_ok(pid, round);
    }
    atomic_store(&stop_flag, 1);
    for (int t = 0; t < WORKERS; t++)
        ck_assert_int_eq(pthread_join(workers[t], NULL), 0);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
}
END_TEST

/* The child reads and frees blocks the parent allocated before fork; the
 * parent's copies are untouched. */
START_TEST(test_fork_inherited_blocks)
{
    enum { N = 500 };
    static void *p[N];
    install_fork_hooks();
    for (size_t i = 0; i < N; i++) {
        size_t n = (i * 37) % (2 * PM_SMALL_MAX) + 1;
        p[i] = pm_malloc(n);
        ck_assert_ptr_nonnull(p[i]);
        pm_test_pattern_fill(p[i], n, i);
    }
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        child_setup();
        for (size_t i = 0; i < N; i++) {
            size_t n = (i * 37) % (2 * PM_SMALL_MAX) + 1;
            if (!pm_test_pattern_ok(p[i], n, i))
                _exit(CHILD_PATTERN);
            memset(p[i], 0, n);
            pm_free(p[i]);
        }
        pm_stats_t s;
        pm_stats_get(&s);
        if (!child_stats_ok(1) || s.small_live_blocks != 0)
            _exit(CHILD_STATS);
        _exit(child_work(99, 1));
    }
    wait_child_ok(pid, 0);
    for (size_t i = 0; i < N; i++) {
        size_t n = (i * 37) % (2 * PM_SMALL_MAX) + 1;
        ck_assert(pm_test_pattern_ok(p[i], n, i));
        pm_free(p[i]);
    }
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
}
END_TEST

/* Blocks of a thread that does not exist in the child: freeing them there
 * pushes them onto an ORPHANED heap, which nobody collects, yet the counts
 * stay exact (I8) and the child allocates on. The arena they are in was the
 * thread's own; in the child it leaves that heap's home (I5), for the
 * child's heaps to take pools from, once the child first needs a pool from
 * the arenas (a child that execs at once never writes the orphaned heap). */
enum { PARKED_BLOCKS = 200, CHILD_HOME_KEPT = 16 };
static void *parked[PARKED_BLOCKS];
static atomic_int parked_ready, parked_release;

static void *parking_thread(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < PARKED_BLOCKS; i++) {
        parked[i] = pm_malloc(48);
        pm_test_pattern_fill(parked[i], 48, i);
    }
    atomic_store(&parked_ready, 1);
    while (!atomic_load(&parked_release))
        usleep(1000);
    for (size_t i = 0; i < PARKED_BLOCKS; i++)
        pm_free(parked[i]);
    return NULL;
}

START_TEST(test_fork_orphaned_heap)
{
    install_fork_hooks();
    pthread_t t = thread_started(parking_thread, &parked_ready);
    pm_stats_t before;
    pm_test_stats(&before);
    ck_assert_uint_eq(before.small_live_blocks, PARKED_BLOCKS);
    pm_arena_home_t *orphans_home = &pm_pool_heap(pm_pool_of(parked[0]))->arena_home;
    ck_assert_ptr_eq(pm_arena_of(parked[0])->home, orphans_home);
    pm_free(pm_malloc(16)); /* this thread's heap, which has no pool of 48 bytes */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        child_setup();
        void *first = pm_malloc(48); /* a pool from the arenas */
        if (first == NULL)
            _exit(CHILD_ALLOC_FAILED);
        if (pm_arena_of(parked[0])->home == orphans_home)
            _exit(CHILD_HOME_KEPT);
        pm_free(first);
        for (size_t i = 0; i < PARKED_BLOCKS; i++) {
            if (!pm_test_pattern_ok(parked[i], 48, i))
                _exit(CHILD_PATTERN);
            pm_free(parked[i]);
        }
        pm_stats_t s;
        pm_stats_get(&s);
        if (!child_stats_ok(1) || s.small_live_blocks != 0)
            _exit(CHILD_STATS);
        _exit(child_work(5, 1));
    }
    wait_child_ok(pid, 0);
    atomic_store(&parked_release, 1);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
}
END_TEST

/* A pool parked by a thread the child does not have (I4) is given back in
 * the child: parking is done under the heap's service_lock, which the fork
 * held, so the ORPHANED heap's parked pool is whole there. */
enum { CHILD_PARKED_KEPT = 15, PARKING_BLOCKS = 40, PARKING_SIZE = 256 };
static atomic_int parking_done, parking_exit;

static void *park_a_pool(void *arg)
{
    (void)arg;
    void *held[PARKING_BLOCKS];
    for (int i = 0; i < PARKING_BLOCKS; i++)
        memset(held[i] = pm_malloc(PARKING_SIZE), 1, PARKING_SIZE);
    for (int i = 0; i < PARKING_BLOCKS; i++)
        pm_free(held[i]); /* three pages of one pool, empty: parked */
    atomic_store(&parking_done, 1);
    while (!atomic_load(&parking_exit))
        usleep(1000);
    return NULL;
}

START_TEST(test_fork_orphaned_parked_pool)
{
    install_fork_hooks();
    pm_options.purge_delay_ms = 60000; /* parked, not given back, before the fork */
    const unsigned c = pm_class_of(PARKING_SIZE);
    pthread_t t = thread_started(park_a_pool, &parking_done);
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.classes[c].pools, 1);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        child_setup();
        pm_malloc_trim(0);
        pm_stats_get(&s);
        if (s.classes[c].pools != 0)
            _exit(CHILD_PARKED_KEPT);
        if (!child_stats_ok(1))
            _exit(CHILD_STATS);
        _exit(child_work(6, 1));
    }
    wait_child_ok(pid, 0);
    atomic_store(&parking_exit, 1);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
}
END_TEST

/* A thread cut by fork() between claiming a position in a heap's remote
 * ring and writing the block into it leaves a slot no one will write: the
 * child marks it to be passed over, so the blocks freed into the ring
 * after it still come back. Here the cut is made by hand: one position
 * claimed and left unwritten before the fork. */
enum { CHILD_RING_STUCK = 14 };

START_TEST(test_fork_skips_unwritten_ring_slot)
{
    install_fork_hooks();
    void *anchor = pm_malloc(64), *block = pm_malloc(64);
    ck_assert_ptr_nonnull(anchor);
    ck_assert_ptr_nonnull(block);
    pm_heap_t *heap = pm_thread_heap;
    atomic_fetch_add(&heap->remote_tail, 1); /* claimed by a freer the fork will cut */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        child_setup();
        pthread_t t;
        if (pthread_create(&t, NULL, pm_test_free_in_thread, block) != 0 || pthread_join(t, NULL) != 0)
            _exit(CHILD_ALLOC_FAILED);
        pm_malloc_trim(0); /* collects the calling thread's heap */
        bool drained = atomic_load(&heap->remote_head) == atomic_load(&heap->remote_tail);
        _exit(drained && pm_heap_validate() ? CHILD_OK : CHILD_RING_STUCK);
    }
    wait_child_ok(pid, 0);
    atomic_fetch_sub(&heap->remote_tail, 1); /* no fork here to repair it */
    pm_free(block);
    pm_free(anchor);
}
END_TEST

/* The locks fork holds are on pages the kernel hands the child zeroed
 * (pm_fork_locks_t): the child finds them free before its handler runs,
 * and the parent's unlocks write no page it shares with the child, so they
 * take no copy-on-write fault. _Fork leaves the handlers to the test: no
 * other library's handler then adds faults of its own. */
enum { CHILD_LOCK_HELD = 17 };

static long minor_faults(void)
{
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_minflt;
}

/* After a fork every stack page is shared too: written here first, the
 * handler's frames and minor_faults' cost no fault of their own. */
static void __attribute__((noinline)) stack_written(void)
{
    volatile char below[64 << 10];
    for (size_t i = 0; i < sizeof below; i += 1024)
        below[i] = 1;
}

/* The kernel writes the thread's rseq area (its cpu_id, in glibc's thread
 * control block) when it preempts or moves the thread. After a fork that
 * page is shared too, so a preemption inside the measured window was a
 * fault that was not the handler's: under parallel load, perf put a fault
 * taken there at that area's address, on return from a timer interrupt. Its
 * rseq_cs field is user space's to set, and is NULL outside a critical
 * section: storing NULL there makes the page the parent's first. */
static void rseq_area_written(void)
{
    if (__rseq_size == 0)
        return; /* glibc did not register one */
    char *thread_pointer;
#if defined(__x86_64__)
    __asm__("mov %%fs:0, %0" : "=r"(thread_pointer));
#else
    thread_pointer = __builtin_thread_pointer();
#endif
    struct rseq *area = (struct rseq *)(thread_pointer + __rseq_offset);
    __atomic_store_n(&area->rseq_cs, 0, __ATOMIC_RELAXED);
}

/* pm_fork_parent's faults. Its own frame, with the rusage the kernel
 * writes, lies where stack_written has just written: called from the test
 * itself, the rusage was in the test's frame, above that, on a page shared
 * with the child when it did not share one with the return address, and
 * the kernel's copy into it faulted after it had read the count, in about
 * one process in 20 (each of its attempts alike). */
static long __attribute__((noinline)) faults_in_fork_parent(void)
{
    long before = minor_faults();
    pm_fork_parent();
    return minor_faults() - before;
}

START_TEST(test_fork_locks_on_wiped_pages)
{
    if (!pm_test_kernel_takes_advice(MADV_WIPEONFORK))
        return; /* before Linux 4.14: the child initializes the locks itself */
    pm_free(pm_malloc(64)); /* the thread's heap, carved from a slab */
    pm_heap_t *heap = pm_thread_heap;
    /* A loaded machine sometimes adds a fault of its own: the best of three
     * counts. Writes to shared pages would fault on every attempt. */
    long fewest_faults = LONG_MAX;
    for (int attempt = 0; attempt < 3 && fewest_faults != 0; attempt++) {
        pm_fork_prepare();
        pid_t pid = _Fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            child_setup();
            const pm_lock_t *locks[] = {&pm_fork_locks.heaps, &pm_fork_locks.shared_heap,
                                        &pm_fork_locks.arenas, &pm_fork_locks.registry,
                                        &pm_fork_locks.stats, &pm_fork_locks.profile,
                                        heap->service_lock};
            for (size_t i = 0; i < sizeof locks / sizeof locks[0]; i++)
                if (atomic_load(&locks[i]->word) != 0)
                    _exit(CHILD_LOCK_HELD);
            pm_fork_child();
            _exit(child_work(7, 1));
        }
        stack_written();
        rseq_area_written();
        long faults = faults_in_fork_parent();
        wait_child_ok(pid, attempt);
        if (faults < fewest_faults)
            fewest_faults = faults;
    }
    if (!PM_TEST_ASAN && !PM_TEST_TSAN) /* whose shadow memory every store writes */
        ck_assert_int_eq(fewest_faults, 0);
}
END_TEST

Suite *make_fork_suite(void)
{
    Suite *s = suite_create("fork");
    TCase *tc = tcase_create("fork");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_fork_while_allocating);
    tcase_add_test(tc, test_fork_inherited_blocks);
    tcase_add_test(tc, test_fork_orphaned_heap);
    tcase_add_test(tc, test_fork_orphaned_parked_pool);
    tcase_add_test(tc, test_fork_skips_unwritten_ring_slot);
    tcase_add_test(tc, test_fork_locks_on_wiped_pages);
    suite_add_tcase(s, tc);
    return s;
}
