/* dump.c — owns the dump thread: a snapshot to the POOLMALLOC_STATS sink
 * every POOLMALLOC_STATS_INTERVAL and whenever POOLMALLOC_STATS_SIGNAL
 * arrives. Never allocates itself (the snapshot is stats.c's, into a static
 * buffer); the thread is detached, blocks every signal, is restarted in a
 * fork child so the child reports on itself, never keeps a process alive
 * once every other thread is gone, and opens its files in a descriptor table
 * of its own, out of the program's sight. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

static struct {
    sem_t wakeup;    /* posted by the signal handler: async-signal-safe */
    sem_t exit_now;  /* posted when the program's last thread has gone */
    bool anchored;   /* the exit thread runs: this one may leave the table */
    _Atomic bool signalled;
    _Atomic bool thread_exited; /* a thread with a heap ended (heap.c) */
    _Atomic bool leader_exited; /* the main thread called pthread_exit */
    pthread_key_t leader_key;   /* its destructor tells the leader's exit */
    bool leader_key_made;
    bool started;
} dump;

/* The state letter of one thread of this process (R, S, Z...), or 0. */
static char dump_thread_state(const char *tid)
{
    char path[64], text[512];
    pm_buf_t b;
    pm_buf_init(&b, path, sizeof path - 1);
    pm_buf_str(&b, "/proc/self/task/");
    pm_buf_str(&b, tid);
    pm_buf_str(&b, "/stat");
    *b.at = '\0';
    if (pm_os_read_text(path, text, sizeof text) <= 0)
        return 0;
    const char *p = strrchr(text, ')'); /* the command name may hold anything */
    return p != NULL && p[1] == ' ' ? p[2] : 0;
}

/* Threads of this process still running, or 0 if that cannot be told. A
 * main thread that called pthread_exit stays listed, as a zombie, until
 * the whole process ends: it does not count. Reads the directory with
 * getdents64, since opendir allocates. */
static long dump_live_threads(void)
{
    int dir = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return 0;
    long live = 0;
    char entries[4096];
    long n;
    while ((n = syscall(SYS_getdents64, dir, entries, sizeof entries)) > 0) {
        for (long at = 0; at < n;) {
            struct linux_dirent64 {
                uint64_t ino;
                int64_t off;
                unsigned short reclen;
                unsigned char type;
                char name[];
            } *entry = (struct linux_dirent64 *)(entries + at);
            at += entry->reclen;
            if (entry->name[0] < '0' || entry->name[0] > '9')
                continue;
            char state = dump_thread_state(entry->name);
            live += state != 0 && state != 'Z' && state != 'X';
        }
    }
    close(dir);
    return live;
}

/* The program's last thread has gone: a process whose only threads are
 * poolmalloc's must not live on. That happens only once the main thread has
 * called pthread_exit (when main returns, exit() ends every thread), so the
 * threads are counted only from then on: reading /proc for each of them at
 * every tick would cost a program with many threads. The process ends as
 * glibc ends one whose last thread exits, with exit(0), which runs the
 * atexit handlers (the final snapshot among them) and flushes stdio; the
 * exit thread calls it, since it still shares the program's descriptors.
 * The exited thread may take a moment to be reaped, hence the short wait. */
static void dump_exit_if_alone(bool thread_just_exited)
{
    if (!atomic_load_explicit(&dump.leader_exited, memory_order_relaxed))
        return;
    long ours = dump.anchored ? 2 : 1;
    int tries = thread_just_exited ? 200 : 1;
    for (int i = 0; i < tries; i++) {
        if (dump_live_threads() == ours) {
            if (!dump.anchored)
                exit(0);
            sem_post(&dump.exit_now);
            for (;;)
                pause(); /* until exit() ends the process */
        }
        if (tries > 1) {
            struct timespec pause = {0, 1000000};
            nanosleep(&pause, NULL);
        }
    }
}

static void dump_on_leader_exit(void *unused)
{
    (void)unused;
    atomic_store_explicit(&dump.leader_exited, true, memory_order_relaxed);
    atomic_store_explicit(&dump.thread_exited, true, memory_order_relaxed);
    sem_post(&dump.wakeup);
}

/* Descriptor numbers are the program's: open() takes the lowest free one, so
 * a file this thread opened for a moment (a stats record, /proc/self/statm,
 * /proc/self/task) could take the number the program has just closed and is
 * about to use, and the program would see EISDIR or the wrong file (CPython's
 * test_io caught it). This thread therefore drops out of the shared table:
 * it gets a copy, and closes the copies of the program's descriptors at
 * once, so that none is kept open behind the program's back (a pipe would
 * not see its end of file). Standard error stays, for the stderr sink and
 * for warnings: it is the one the program had when this thread started.
 * The exit thread stays in the shared table, which it keeps alive: once the
 * program's last thread is gone, exit() flushes stdio to the program's own
 * descriptors. Without an exit thread, or where unshare is refused (a
 * seccomp filter), files are opened in the shared table, one record each. */
static void dump_private_descriptors(void)
{
    if (!dump.anchored || unshare(CLONE_FILES) != 0)
        return;
    if (close_range(0, STDERR_FILENO - 1, 0) == 0 && close_range(STDERR_FILENO + 1, ~0U, 0) == 0)
        return;
    struct rlimit limit; /* kernels older than 5.9 have no close_range */
    int last = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < (1u << 20)
                   ? (int)limit.rlim_cur
                   : 1 << 20;
    for (int fd = 0; fd < last; fd++)
        if (fd != STDERR_FILENO)
            close(fd);
}

void pm_dump_note_thread_exit(void)
{
    if (!dump.started)
        return;
    atomic_store_explicit(&dump.thread_exited, true, memory_order_relaxed);
    sem_post(&dump.wakeup);
}

static void dump_on_signal(int signal)
{
    (void)signal;
    int saved_errno = errno;
    atomic_store_explicit(&dump.signalled, true, memory_order_relaxed);
    sem_post(&dump.wakeup);
    errno = saved_errno;
}

static void *dump_exit_thread(void *arg)
{
    (void)arg;
    while (sem_wait(&dump.exit_now) != 0)
        ; /* EINTR */
    if (dump.started)
        exit(0);
    return NULL; /* the dump thread could not start: nothing to wait for */
}

/* Both threads are detached and block every signal: the program's signals
 * are its own. */
static bool dump_start_thread(void *(*body)(void *), size_t stack_size, const char *name)
{
    pthread_attr_t attr;
    pthread_t thread;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (stack_size != 0)
        pthread_attr_setstacksize(&attr, stack_size);
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &saved); /* inherited by the new thread */
    bool started = pthread_create(&thread, &attr, body, NULL) == 0;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    pthread_attr_destroy(&attr);
    if (started)
        pthread_setname_np(thread, name);
    return started;
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

static void *dump_thread(void *arg)
{
    (void)arg;
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
        if (dump_reached(&wake, &snapshot_due))
            wake = snapshot_due;
        while (sem_clockwait(&dump.wakeup, CLOCK_MONOTONIC, &wake) == 0 || errno == EINTR) {
            if (atomic_exchange_explicit(&dump.thread_exited, false, memory_order_relaxed))
                dump_exit_if_alone(true);
            if (atomic_exchange_explicit(&dump.signalled, false, memory_order_relaxed))
                pm_stats_write_snapshot(PM_SNAPSHOT_SIGNAL);
        }
        dump_exit_if_alone(false);
        pm_arena_decay_tick(); /* an idle process gives memory back too (I10) */
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (dump_reached(&now, &snapshot_due)) {
            pm_stats_write_snapshot(PM_SNAPSHOT_INTERVAL);
            /* Every interval from the start, without drift; one snapshot
             * for intervals missed while the machine was too busy. */
            snapshot_due = dump_after(snapshot_due, pm_options.stats_interval_ms);
            if (dump_reached(&now, &snapshot_due))
                snapshot_due = dump_after(now, pm_options.stats_interval_ms);
        }
    }
    return NULL;
}

static void dump_spawn(void)
{
    /* Both made here, by a thread of the program, which shares its table
     * with them, and not by the dump thread, which would need a heap for
     * what pthread_create allocates. The exit thread's stack is a default
     * one, for the atexit handlers; the dump thread's holds no record. */
    sem_init(&dump.exit_now, 0, 0);
    dump.anchored = dump_start_thread(dump_exit_thread, 0, "poolmalloc-exit");
    dump.started = dump_start_thread(dump_thread, 256 << 10, "poolmalloc-stat");
    if (!dump.started && dump.anchored)
        sem_post(&dump.exit_now);
    if (!dump.started) {
        static const char warning[] =
            "poolmalloc: cannot start the stats thread; only the exit report will be written\n";
        pm_os_write_all(2, warning, sizeof warning - 1);
    }
}

void pm_dump_start(void)
{
    pm_stats_note_start();
    if (pm_options.stats_path[0] == '\0' || dump.started)
        return;
    sem_init(&dump.wakeup, 0, 0);
    /* Called on the main thread: its destructor runs only if it calls
     * pthread_exit. Without one, threads are counted at every tick. */
    dump.leader_key_made = pthread_key_create(&dump.leader_key, dump_on_leader_exit) == 0 &&
                           pthread_setspecific(dump.leader_key, &dump) == 0;
    atomic_store_explicit(&dump.leader_exited, !dump.leader_key_made, memory_order_relaxed);
    if (pm_options.stats_signal != 0) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = dump_on_signal;
        action.sa_flags = SA_RESTART;
        sigemptyset(&action.sa_mask);
        sigaction(pm_options.stats_signal, &action, NULL);
    }
    dump_spawn();
}

void pm_dump_restart_in_child(void)
{
    if (!dump.started)
        return;
    pm_stats_note_start();
    sem_init(&dump.wakeup, 0, 0); /* its count belonged to the parent */
    /* The thread that forked is the child's main thread. */
    bool watched = dump.leader_key_made && pthread_setspecific(dump.leader_key, &dump) == 0;
    atomic_store_explicit(&dump.leader_exited, !watched, memory_order_relaxed);
    dump_spawn();
}
