/* preload.c — the shim that makes libpoolmalloc.so a drop-in malloc: the
 * exported malloc family and glibc's introspection calls, start-up, fork
 * handlers, the dump thread's wiring and the exit report. It holds no
 * allocator logic: every call forwards to the pm_* core, the setuid()
 * family to glibc's, then to the dump thread, unshare() and setns() to
 * glibc's with the dump thread paused, and dl_iterate_phdr to glibc's
 * with sampling held off.
 * Never allocates itself, except malloc_info's stdio; keeps no invariant. */
#include "preload.h"

#include <dlfcn.h>
#include <errno.h>
#include <grp.h>
#include <link.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* The core's front doors themselves, inlined (see internal.h), not a jump. */
PM_EXPORT void *malloc(size_t size) { return pm_malloc_inline(size); }
PM_EXPORT void free(void *ptr) { pm_free_inline(ptr); }
PM_EXPORT void *calloc(size_t count, size_t size) { return pm_calloc(count, size); }
PM_EXPORT void *realloc(void *ptr, size_t size) { return pm_realloc(ptr, size); }
PM_EXPORT void *reallocarray(void *ptr, size_t count, size_t size)
{
    return pm_reallocarray(ptr, count, size);
}
PM_EXPORT int posix_memalign(void **out, size_t alignment, size_t size)
{
    return pm_posix_memalign(out, alignment, size);
}
PM_EXPORT void *aligned_alloc(size_t alignment, size_t size)
{
    return pm_aligned_alloc(alignment, size);
}
PM_EXPORT void *memalign(size_t alignment, size_t size) { return pm_memalign(alignment, size); }
PM_EXPORT void *valloc(size_t size) { return pm_valloc(size); }
PM_EXPORT void *pvalloc(size_t size) { return pm_pvalloc(size); }
PM_EXPORT size_t malloc_usable_size(void *ptr) { return pm_malloc_usable_size(ptr); }
PM_EXPORT int mallopt(int param, int value) { return pm_mallopt(param, value); }
PM_EXPORT int malloc_trim(size_t pad) { return pm_malloc_trim(pad); }

/* glibc's introspection, with poolmalloc's figures. */
PM_EXPORT void malloc_stats(void) { pm_stats_print(2, PM_STATS_TEXT); }
PM_EXPORT struct mallinfo2 mallinfo2(void) { return pm_mallinfo2(); }

/* The old interface's int fields saturate rather than wrap. */
PM_EXPORT struct mallinfo mallinfo(void)
{
    struct mallinfo2 wide = pm_mallinfo2();
#define NARROW(field) ((int)(wide.field > (size_t)INT32_MAX ? INT32_MAX : wide.field))
    struct mallinfo narrow = {
        .arena = NARROW(arena),       .ordblks = NARROW(ordblks),   .smblks = NARROW(smblks),
        .hblks = NARROW(hblks),       .hblkhd = NARROW(hblkhd),     .usmblks = NARROW(usmblks),
        .fsmblks = NARROW(fsmblks),   .uordblks = NARROW(uordblks), .fordblks = NARROW(fordblks),
        .keepcost = NARROW(keepcost),
    };
    return narrow;
}

PM_EXPORT int malloc_info(int options, FILE *out)
{
    if (options != 0)
        return EINVAL; /* as glibc: no options are defined */
    static char xml[16 << 10];
    static pthread_mutex_t xml_lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&xml_lock);
    size_t length = pm_stats_xml(xml, sizeof xml);
    int result = fwrite(xml, 1, length, out) == length ? 0 : -1;
    pthread_mutex_unlock(&xml_lock);
    return result;
}

void *preload_next(void *_Atomic *cache, const char *name)
{
    void *next = atomic_load_explicit(cache, memory_order_relaxed);
    if (next == NULL && (next = dlsym(RTLD_NEXT, name)) != NULL)
        atomic_store_explicit(cache, next, memory_order_relaxed);
    return next;
}

/* Defines `name`, which calls glibc's `name` with `before` done first and
 * `after` done on its `result`. */
#define PM_AROUND_GLIBC(name, parameters, arguments, before, after)             \
    PM_EXPORT int name parameters                                               \
    {                                                                           \
        static void *_Atomic cache;                                             \
        int(*call) parameters = (int(*) parameters)preload_next(&cache, #name); \
        if (call == NULL) {                                                     \
            errno = ENOSYS;                                                     \
            return -1;                                                          \
        }                                                                       \
        before;                                                                 \
        int result = call arguments;                                            \
        after;                                                                  \
        return result;                                                          \
    }

/* glibc's setuid() family changes the credentials of every thread it
 * knows; the dump thread is not one of them (allocator/dump.c), so each
 * call is passed on to glibc's and then followed there. */
#define PM_FOLLOW_CREDENTIALS(name, parameters, arguments) \
    PM_AROUND_GLIBC(name, parameters, arguments, (void)0,   \
                    if (result == 0) pm_dump_follow_credentials())
PM_FOLLOW_CREDENTIALS(setuid, (uid_t uid), (uid))
PM_FOLLOW_CREDENTIALS(setgid, (gid_t gid), (gid))
PM_FOLLOW_CREDENTIALS(seteuid, (uid_t euid), (euid))
PM_FOLLOW_CREDENTIALS(setegid, (gid_t egid), (egid))
PM_FOLLOW_CREDENTIALS(setreuid, (uid_t ruid, uid_t euid), (ruid, euid))
PM_FOLLOW_CREDENTIALS(setregid, (gid_t rgid, gid_t egid), (rgid, egid))
PM_FOLLOW_CREDENTIALS(setresuid, (uid_t ruid, uid_t euid, uid_t suid), (ruid, euid, suid))
PM_FOLLOW_CREDENTIALS(setresgid, (gid_t rgid, gid_t egid, gid_t sgid), (rgid, egid, sgid))
PM_FOLLOW_CREDENTIALS(setgroups, (size_t count, const gid_t *groups), (count, groups))

/* The kernel refuses unshare() of the user namespace, and setns() into a
 * user, mount or time namespace, to a process with a second thread, or
 * with another task sharing its filesystem context or memory: with stats
 * on, the dump thread would make each fail with EINVAL or EUSERS
 * (`unshare -U`, `nsenter -m` or `-T`, sandboxes, container tools). So
 * glibc's call is made with that thread stopped; it starts again after,
 * in the namespaces the program is then in. unshare() takes CLONE_NEWUSER
 * as CLONE_THREAD and CLONE_FS too, and refuses CLONE_THREAD, CLONE_SIGHAND
 * and CLONE_VM to a process of threads; setns() with nstype 0 takes any
 * namespace the descriptor names. */
#define PM_SETNS_ALONE (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWTIME)
#define PM_UNSHARE_ALONE (CLONE_NEWUSER | CLONE_THREAD | CLONE_SIGHAND | CLONE_VM)
#define PM_CALL_ALONE(name, parameters, arguments, alone)                                  \
    PM_AROUND_GLIBC(name, parameters, arguments, bool paused = (alone) && pm_dump_pause(), \
                    pm_dump_resume(paused))
PM_CALL_ALONE(unshare, (int flags), (flags), (flags & PM_UNSHARE_ALONE) != 0)
PM_CALL_ALONE(setns, (int fd, int nstype), (fd, nstype),
              nstype == 0 || (nstype & PM_SETNS_ALONE) != 0)

/* glibc's, with no allocation sampled while the callback runs: it runs
 * under the loader's list lock (pm_profile_hold_samples says why). */
PM_EXPORT int dl_iterate_phdr(int (*callback)(struct dl_phdr_info *, size_t, void *), void *data)
{
    typedef int iterate_t(int (*)(struct dl_phdr_info *, size_t, void *), void *);
    static void *_Atomic cache;
    iterate_t *call = (iterate_t *)preload_next(&cache, "dl_iterate_phdr");
    if (call == NULL)
        return 0; /* no module to visit: cannot happen in a dynamic program */
    pm_profile_hold_samples(true);
    int result = call(callback, data);
    pm_profile_hold_samples(false);
    return result;
}

static void preload_fork_child(void)
{
    pm_fork_child();
    pm_dump_restart_in_child();
}

/* Runs before the program's constructors. Handlers registered this early
 * run last in fork's prepare phase, after any other library's handler that
 * might still allocate. */
__attribute__((constructor)) static void preload_start(void)
{
    pm_options_init();
    pm_heap_apply_debug();
    pm_profile_init();
    pm_heap_reset_sampling();
    /* glibc's malloc_trim, hidden by ours; found here, outside any malloc,
     * as the glibc path's automatic trim runs inside free. */
    static void *_Atomic glibc_malloc_trim;
    pm_system_set_trim((int (*)(size_t))preload_next(&glibc_malloc_trim, "malloc_trim"));
    pm_system_tune_glibc();
    pthread_atfork(pm_fork_prepare, pm_fork_parent, preload_fork_child);
    pm_dump_start();
}

__attribute__((destructor)) static void preload_exit(void)
{
    pm_stats_write_snapshot(PM_SNAPSHOT_EXIT);
}
