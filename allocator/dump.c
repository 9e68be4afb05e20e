/* dump.c — owns the dump thread: a snapshot to the POOLMALLOC_STATS sink
 * every POOLMALLOC_STATS_INTERVAL and whenever POOLMALLOC_STATS_SIGNAL
 * arrives. Never allocates itself (the snapshot is stats.c's, into a static
 * buffer); the thread is detached, blocks every signal, and is restarted in
 * a fork child so the child reports on itself. */
#include "internal.h"

#include <errno.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

static struct {
    sem_t wakeup; /* posted by the signal handler: async-signal-safe */
    _Atomic bool signalled;
    bool started;
} dump;

static void dump_on_signal(int signal)
{
    (void)signal;
    int saved_errno = errno;
    atomic_store_explicit(&dump.signalled, true, memory_order_relaxed);
    sem_post(&dump.wakeup);
    errno = saved_errno;
}

static void *dump_thread(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* the program's signals are its own */
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        next.tv_sec += (time_t)(pm_options.stats_interval_ms / 1000);
        next.tv_nsec += (long)(pm_options.stats_interval_ms % 1000) * 1000000;
        if (next.tv_nsec >= 1000000000) {
            next.tv_sec++;
            next.tv_nsec -= 1000000000;
        }
        while (sem_clockwait(&dump.wakeup, CLOCK_MONOTONIC, &next) == 0 || errno == EINTR) {
            if (atomic_exchange_explicit(&dump.signalled, false, memory_order_relaxed))
                pm_stats_write_snapshot(PM_SNAPSHOT_SIGNAL);
        }
        pm_stats_write_snapshot(PM_SNAPSHOT_INTERVAL);
    }
    return NULL;
}

static void dump_spawn(void)
{
    pthread_attr_t attr;
    pthread_t thread;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 << 10); /* the record buffer is static */
    dump.started = pthread_create(&thread, &attr, dump_thread, NULL) == 0;
    pthread_attr_destroy(&attr);
    if (dump.started)
        pthread_setname_np(thread, "poolmalloc-stat");
    else {
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
    dump_spawn();
}
