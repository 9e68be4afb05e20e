/* dump.c — owns the dump thread: a snapshot to the POOLMALLOC_STATS sink
 * every POOLMALLOC_STATS_INTERVAL and whenever POOLMALLOC_STATS_SIGNAL
 * arrives, and the decay tick of an idle process. With
 * POOLMALLOC_PURGE_THREAD=1 and no POOLMALLOC_STATS it runs for the decay
 * tick alone (the purge thread), as jemalloc's background_thread does, and
 * like it not by default: the kernel counts it among the process's tasks,
 * which some programs read (CPython 3.12 and later warn at each os.fork of
 * a process with more than one). Never allocates (the
 * snapshot is stats.c's, into a static buffer), never touches errno or
 * thread-local state; blocks every signal, is started again in a fork child
 * (once it takes a pool) so the child reports on itself, never keeps a
 * process alive, and opens its files in a descriptor table of its own, out
 * of the program's sight.
 *
 * The thread is unknown to glibc. A process glibc believes single-threaded
 * runs lighter: malloc (the system path) and stdio skip their locks,
 * libstdc++ its atomic reference counts. pthread_create would end that for
 * good, and a program of one thread would pay for its stats 15% on a mix
 * of large requests (bench/README). So the thread is made with clone(): it
 * shares the thread pointer of the thread that made it, and with it errno
 * and every __thread variable, which it therefore never uses (that thread
 * may since have exited, its TLS unmapped or another thread's). It calls
 * no glibc function that locks, keeps per-thread state or reads the thread
 * pointer (sysconf does, for its stack guard): system calls go through
 * pm_os_syscall, locks are pm_lock_t; and the library binds its symbols at
 * load (-z now), as a lazy binding marks the lookup in the calling
 * thread's control block (check_release.c's
 * test_dump_thread_outlives_its_maker holds it to all that). glibc counts
 * only its own threads, so the process ends, as before, when the program's
 * last thread does. glibc applies setuid() and its kin to every thread it
 * knows, so the program's calls come here too (pm_dump_follow_credentials):
 * this thread must never keep privileges the program gave up. And the kernel
 * refuses some calls to a process with a second thread (unshare() of the
 * user namespace, setns() into a user, mount or time namespace): the shim
 * makes them with this thread stopped (pm_dump_pause), which starts again
 * after.
 *
 * Sanitizer builds (test binaries, never libpoolmalloc.so) make an
 * ordinary pthread instead: a sanitizer keeps its per-thread state behind
 * the thread pointer. There the thread would keep alive a process whose
 * main thread called pthread_exit; no test does that. */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define DUMP_STACK_SIZE ((size_t)256 << 10)
#ifdef PM_SANITIZED
#define DUMP_HIDDEN 0
#else
#define DUMP_HIDDEN 1 /* made with clone(), unknown to glibc */
#endif

static struct {
    _Atomic uint32_t wakeups; /* futex word: bumped by every wake-up call */
    _Atomic bool signalled;
    _Atomic bool started;    /* false again if the thread had to stop */
    _Atomic bool stop_asked; /* by pm_dump_pause: the thread ends at its next wake-up */
    _Atomic long thread_id;  /* the running thread's, once it has begun */
    bool paused;             /* stopped by pm_dump_pause, to start again on resume */
    bool start_in_child;     /* it could not start again: a fork child starts its own */
    long process_id;         /* of the process the thread serves (not a vfork child) */
    void *stack;             /* the hidden thread's, mapped once, reused after fork */

    /* One change at a time: of credentials (hidden thread only), or a pause. */
    pm_lock_t control_lock;
    _Atomic uint32_t credentials_asked, credentials_done; /* done: a futex word */
    uid_t uids[3];
    gid_t gids[3];
    long group_count;
    gid_t groups[NGROUPS_MAX];
} dump;

/* Whether the thread writes snapshots, and whether it runs at all. */
static bool dump_writes_snapshots(void)
{
    return pm_options.stats_path[0] != '\0';
}

static bool dump_wanted(void)
{
    return dump_writes_snapshots() || pm_options.purge_thread != 0;
}

/* Async-signal-safe, errno untouched. */
static void dump_wake(void)
{
    atomic_fetch_add_explicit(&dump.wakeups, 1, memory_order_release);
    pm_os_futex_wake(&dump.wakeups, 1);
}

/* Ends the dump thread, and only it. */
static PM_NORETURN void dump_thread_exit(void)
{
#if DUMP_HIDDEN
    for (;;)
        PM_OS_CALL(SYS_exit, 0); /* not exit_group */
#else
    pthread_exit(NULL);
#endif
}

/* ---- credentials ---------------------------------------------------------- */

/* Called by the shim after one of glibc's setuid() family succeeded: the
 * hidden thread takes the caller's new credentials before the call
 * returns, as glibc's own threads do. */
void pm_dump_follow_credentials(void)
{
    if (!DUMP_HIDDEN || PM_OS_CALL(SYS_getpid, 0) != dump.process_id)
        return; /* glibc's thread follows by itself; a vfork child's are not ours */
    pm_lock(&dump.control_lock);
    if (!dump.started) { /* never started, or stopped on the last change */
        pm_unlock(&dump.control_lock);
        return;
    }
    PM_OS_CALL(SYS_getresuid, &dump.uids[0], &dump.uids[1], &dump.uids[2]);
    PM_OS_CALL(SYS_getresgid, &dump.gids[0], &dump.gids[1], &dump.gids[2]);
    dump.group_count = PM_OS_CALL(SYS_getgroups, NGROUPS_MAX, dump.groups);
    uint32_t ticket = atomic_fetch_add_explicit(&dump.credentials_asked, 1, memory_order_release) + 1;
    dump_wake();
    uint32_t done;
    while ((done = atomic_load_explicit(&dump.credentials_done, memory_order_acquire)) != ticket)
        pm_os_futex_wait(&dump.credentials_done, done, NULL);
    pm_unlock(&dump.control_lock);
}

/* Groups first, then group ids, then user ids: dropping the user id would
 * take away the right to change the rest. This thread held the caller's
 * old credentials, so whatever the caller could become, it can. Should a
 * step fail all the same, the thread ends rather than run on with
 * credentials the program no longer has; the exit snapshot is written by
 * the program's own thread. */
static void dump_take_credentials(void)
{
    uint32_t asked = atomic_load_explicit(&dump.credentials_asked, memory_order_acquire);
    if (asked == atomic_load_explicit(&dump.credentials_done, memory_order_relaxed))
        return;
    bool taken = dump.group_count >= 0 &&
                 PM_OS_CALL(SYS_setgroups, dump.group_count, dump.groups) == 0 &&
                 PM_OS_CALL(SYS_setresgid, dump.gids[0], dump.gids[1], dump.gids[2]) == 0 &&
                 PM_OS_CALL(SYS_setresuid, dump.uids[0], dump.uids[1], dump.uids[2]) == 0;
    if (!taken) {
        static const char warning[] = "poolmalloc: the stats or purge thread cannot follow "
                                      "the program's change of credentials; it stops\n";
        pm_os_write_all(STDERR_FILENO, warning, sizeof warning - 1);
        dump.started = false;
    }
    atomic_store_explicit(&dump.credentials_done, asked, memory_order_release);
    pm_os_futex_wake(&dump.credentials_done, INT_MAX);
    if (!taken)
        dump_thread_exit();
}

/* ---- the dump thread ------------------------------------------------------ */

/* Descriptor numbers are the program's: open() takes the lowest free one, so
 * a file this thread opened for a moment (a stats record, /proc/self/statm)
 * could take the number the program has just closed and is about to use,
 * and the program would see EISDIR or the wrong file (CPython's test_io
 * caught it). This thread therefore drops out of the shared table: it gets
 * a copy, and closes the copies of the program's descriptors at once, so
 * that none is kept open behind the program's back (a pipe would not see
 * its end of file). Standard error stays, for the stderr sink and for
 * warnings: it is the one the program had when this thread started. Where
 * unshare is refused (a seccomp filter), files are opened in the shared
 * table, one record each. The exit snapshot is written by the program's
 * own thread, in its own table. */
static void dump_private_descriptors(void)
{
    if (PM_OS_CALL(SYS_unshare, CLONE_FILES) != 0)
        return;
    if (PM_OS_CALL(SYS_close_range, 0, STDERR_FILENO - 1) == 0 &&
        PM_OS_CALL(SYS_close_range, STDERR_FILENO + 1, ~0U) == 0)
        return;
    struct rlimit limit; /* kernels older than 5.9 have no close_range */
    int last = PM_OS_CALL(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &limit) == 0 &&
                       limit.rlim_cur < (1u << 20)
                   ? (int)limit.rlim_cur
                   : 1 << 20;
    for (int fd = 0; fd < last; fd++)
        if (fd != STDERR_FILENO)
            pm_os_close(fd);
}

static void dump_on_signal(int signal)
{
    (void)signal;
    atomic_store_explicit(&dump.signalled, true, memory_order_relaxed);
    dump_wake();
}

static struct timespec dump_after(struct timespec t, uint64_t ms)
{
    t.tv_sec += (time_t)(ms / 1000);
    t.tv_nsec += (long)(ms % 1000) * 1000000;
    if (t.tv_nsec >= 1000000000) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000;
    }
    return t;
}

static bool dump_reached(const struct timespec *now, const struct timespec *due)
{
    return now->tv_sec != due->tv_sec ? now->tv_sec > due->tv_sec : now->tv_nsec >= due->tv_nsec;
}

/* Until the deadline, serving every wake-up call on the way. */
static void dump_sleep_until(const struct timespec *deadline)
{
    for (;;) {
        uint32_t seen = atomic_load_explicit(&dump.wakeups, memory_order_acquire);
        if (atomic_load_explicit(&dump.stop_asked, memory_order_acquire))
            dump_thread_exit();
        dump_take_credentials();
        if (atomic_exchange_explicit(&dump.signalled, false, memory_order_relaxed))
            pm_stats_write_snapshot(PM_SNAPSHOT_SIGNAL);
        if (pm_os_futex_wait(&dump.wakeups, seen, deadline) == -ETIMEDOUT)
            return;
    }
}

static void dump_loop(void)
{
    atomic_store_explicit(&dump.thread_id, PM_OS_CALL(SYS_gettid, 0), memory_order_release);
    bool snapshots = dump_writes_snapshots();
    PM_OS_CALL(SYS_prctl, PR_SET_NAME, snapshots ? "poolmalloc-stat" : "poolmalloc-bg");
    dump_private_descriptors();
    /* The decay tick comes at least every purge delay (10 ms at the least),
     * so that a process gone quiet gives its memory back in time whatever
     * the interval between snapshots (I10). */
    uint64_t tick_ms = pm_options.stats_interval_ms;
    if (pm_options.purge_delay_ms != 0 && pm_options.purge_delay_ms < tick_ms)
        tick_ms = pm_options.purge_delay_ms < 10 ? 10 : pm_options.purge_delay_ms;
    struct timespec now, snapshot_due;
    clock_gettime(CLOCK_MONOTONIC, &now);
    snapshot_due = dump_after(now, pm_options.stats_interval_ms);
    for (;;) {
        struct timespec wake = dump_after(now, tick_ms);
        /* The purge thread never reaches a snapshot: a wake-up set by
         * snapshot_due would lie in the past, and it would spin. */
        if (snapshots && dump_reached(&wake, &snapshot_due))
            wake = snapshot_due;
        dump_sleep_until(&wake);
        /* An idle process gives memory back too (I10), and its idle
         * threads (I4). Not glibc's heap: glibc's malloc takes no lock in
         * a program it believes single-threaded, which this thread leaves
         * it believing, so its malloc_trim is called from the program's
         * own threads only (system.c). */
        pm_arena_decay_tick();
        pm_heap_release_parked_if_due(NULL, pm_os_coarse_ms()); /* no heap is this thread's */
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (snapshots && dump_reached(&now, &snapshot_due)) {
            pm_stats_write_snapshot(PM_SNAPSHOT_INTERVAL);
            /* Every interval from the start, without drift; one snapshot
             * for intervals missed while the machine was too busy. */
            snapshot_due = dump_after(snapshot_due, pm_options.stats_interval_ms);
            if (dump_reached(&now, &snapshot_due))
                snapshot_due = dump_after(now, pm_options.stats_interval_ms);
        }
    }
}

#if DUMP_HIDDEN
static int dump_hidden_main(void *arg)
{
    (void)arg;
    dump_loop();
    return 0;
}

/* 0, or why the thread could not be made (an errno value). */
static int dump_create(void)
{
    if (dump.stack == NULL && (dump.stack = pm_os_map_stack(DUMP_STACK_SIZE)) == NULL)
        return ENOMEM;
    int saved_errno = errno;
    /* The flags pthread_create uses, less the thread pointer and the
     * thread id bookkeeping that would make the thread glibc's. */
    int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
    int error = clone(dump_hidden_main, (char *)dump.stack + DUMP_STACK_SIZE, flags, NULL) > 0
                    ? 0
                    : errno;
    errno = saved_errno;
    return error;
}
#else
static void *dump_pthread_main(void *arg)
{
    (void)arg;
    dump_loop();
    return NULL;
}

static int dump_create(void)
{
    pthread_attr_t attr;
    pthread_t thread;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, DUMP_STACK_SIZE);
    int error = pthread_create(&thread, &attr, dump_pthread_main, NULL);
    pthread_attr_destroy(&attr);
    return error;
}
#endif

/* Made by a thread of the program, blocking every signal, which the new
 * thread inherits: the program's signals are its own. */
static int dump_start_thread(void)
{
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &saved);
    int error = dump_create();
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    return error;
}

/* Says on stderr if the thread could not start, but for EINVAL when
 * `einval_expected`: the process is then in a PID namespace it has not
 * forked into (pm_dump_resume), and its fork children start their own. */
static void dump_spawn(bool einval_expected)
{
    dump.process_id = PM_OS_CALL(SYS_getpid, 0);
    int error = dump_start_thread();
    dump.started = error == 0;
    dump.start_in_child = einval_expected && error == EINVAL;
    if (error != 0 && !dump.start_in_child) {
        static const char stats[] =
            "poolmalloc: cannot start the stats thread; only the exit report will be written\n";
        static const char purge[] = "poolmalloc: cannot start the purge thread; memory is given "
                                    "back by the program's own calls only\n";
        if (dump_writes_snapshots())
            pm_os_write_all(STDERR_FILENO, stats, sizeof stats - 1);
        else
            pm_os_write_all(STDERR_FILENO, purge, sizeof purge - 1);
    }
}

void pm_dump_start(void)
{
    pm_stats_note_start();
    if (!dump_wanted() || dump.started)
        return;
    if (dump_writes_snapshots() && pm_options.stats_signal != 0) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = dump_on_signal;
        action.sa_flags = SA_RESTART;
        sigemptyset(&action.sa_mask);
        sigaction(pm_options.stats_signal, &action, NULL);
    }
    dump_spawn(false);
}

/* Set in a fork child until it starts its own thread. */
bool pm_dump_start_pending; /* accessed atomically */

/* The parent's thread is not in the child, and its stack is free for the
 * child's. That one starts later (pm_dump_start_if_pending): made here, it
 * cost a child that exits at once 150 us, +20% on pm_bench_forks, mostly
 * for the kernel to make it and end it again with the child
 * (bench/results/fork-cost.md). A child that takes no pool writes its exit
 * report alone. */
void pm_dump_restart_in_child(void)
{
    /* The options first: `dump`, untouched unless the thread ran, is a page
     * the child would fault in to read (pm_fork_locks_t). */
    if (!dump_wanted() ||
        !(dump.started || dump.start_in_child ||
          __atomic_load_n(&pm_dump_start_pending, __ATOMIC_RELAXED)))
        return;
    pm_stats_note_start();
    dump.started = false; /* start_in_child is settled when the thread starts */
    /* Another thread's pause may have held it. */
    pm_lock_init(&dump.control_lock);
    __atomic_store_n(&pm_dump_start_pending, true, __ATOMIC_RELAXED);
}

/* Under the control lock: a pause (pm_dump_pause) in another of the child's
 * threads waits, and so does this. In a new PID namespace the child has
 * not forked into yet, the thread cannot start (pm_dump_resume). */
void pm_dump_start_pending_thread(void)
{
    pm_lock(&dump.control_lock);
    if (__atomic_load_n(&pm_dump_start_pending, __ATOMIC_RELAXED)) {
        __atomic_store_n(&pm_dump_start_pending, false, __ATOMIC_RELAXED);
        atomic_store_explicit(&dump.wakeups, 0, memory_order_relaxed);
        /* Another thread's pause may have been under way at the fork: the
         * new thread must not find the stop asked, nor a pause here the
         * old thread's id. */
        atomic_store_explicit(&dump.stop_asked, false, memory_order_relaxed);
        atomic_store_explicit(&dump.thread_id, 0, memory_order_relaxed);
        atomic_store_explicit(&dump.credentials_done,
                              atomic_load_explicit(&dump.credentials_asked, memory_order_relaxed),
                              memory_order_relaxed);
        dump_spawn(true);
    }
    pm_unlock(&dump.control_lock);
}

/* ---- a pause for the calls the kernel makes for one thread only ------------- */

/* Asks the thread to end and waits until the kernel no longer counts it
 * among the process's threads: once tgkill() no longer finds it, it has
 * left the thread group, after letting go of the shared filesystem
 * context. Waits 2 s at most, as the thread may be blocked in a write (a
 * stats pipe nobody reads): it then ends once unblocked, and is not
 * started again. Caller holds the control lock. */
static bool dump_stop(void)
{
    atomic_store_explicit(&dump.stop_asked, true, memory_order_release);
    dump_wake();
    struct timespec now, deadline;
    clock_gettime(CLOCK_MONOTONIC, &now);
    deadline = dump_after(now, 2000);
    for (;;) {
        long thread = atomic_load_explicit(&dump.thread_id, memory_order_acquire);
        if (thread != 0 && PM_OS_CALL(SYS_tgkill, dump.process_id, thread, 0) == -ESRCH)
            break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (dump_reached(&now, &deadline)) {
            static const char warning[] =
                "poolmalloc: the stats or purge thread did not stop in time for the program's "
                "unshare() or setns(); it is not started again\n";
            pm_os_write_all(STDERR_FILENO, warning, sizeof warning - 1);
            dump.started = false;
            return false;
        }
        pm_os_yield();
    }
    atomic_store_explicit(&dump.thread_id, 0, memory_order_relaxed);
    atomic_store_explicit(&dump.stop_asked, false, memory_order_relaxed);
    dump.started = false;
    return true;
}

bool pm_dump_pause(void)
{
    /* No thread, or the parent's of a vfork child; a fork child that has
     * not started its own takes the lock, so that it does not start one
     * during the call. */
    if (!dump_wanted() ||
        (PM_OS_CALL(SYS_getpid, 0) != dump.process_id &&
         !__atomic_load_n(&pm_dump_start_pending, __ATOMIC_RELAXED)))
        return false;
    pm_lock(&dump.control_lock);
    dump.paused = dump.started && dump_stop();
    return true;
}

/* After unshare(CLONE_NEWPID), or setns() into a PID namespace, the kernel
 * makes no thread (EINVAL) until a fork has put a process in that
 * namespace: this process then writes its exit report only, as said
 * nowhere (glibc's pthread_create fails there too), and its fork children
 * start their own thread. */
void pm_dump_resume(bool paused)
{
    if (!paused)
        return;
    if (dump.paused)
        dump_spawn(true);
    dump.paused = false;
    pm_unlock(&dump.control_lock);
}
