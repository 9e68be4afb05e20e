/* preload.c — the shim that makes libpoolmalloc.so a drop-in malloc: the
 * exported malloc family, start-up, fork handlers and the exit report. It
 * holds no allocator logic: every call forwards to the pm_* core.
 * Never allocates itself; keeps no invariant of its own. */
#include "internal.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>

#define PM_EXPORT __attribute__((visibility("default")))

PM_EXPORT void *malloc(size_t size) { return pm_malloc(size); }
PM_EXPORT void free(void *ptr) { pm_free(ptr); }
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

/* Runs before the program's constructors. Handlers registered this early
 * run last in fork's prepare phase, after any other library's handler that
 * might still allocate. */
__attribute__((constructor)) static void preload_start(void)
{
    pm_options_init();
    pthread_atfork(pm_fork_prepare, pm_fork_parent, pm_fork_child);
}

__attribute__((destructor)) static void preload_exit(void)
{
    pm_stats_report_to_sink("at exit");
}
