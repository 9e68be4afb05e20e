/* glibc_shim.c — linked into every executable of a sanitizer build
 * (PM_SANITIZE, top-level CMakeLists.txt), never into libpoolmalloc.so. It
 * gives the core's glibc path (allocator/system.c, which calls glibc's
 * __libc_* entry points) the glibc it has in production, seen correctly by
 * the sanitizer:
 *   - ASan and TSan define __libc_memalign themselves (for the loader of old
 *     glibc), so pm_memalign would get a sanitizer chunk and hand it to
 *     glibc's __libc_free. Every __libc_* the core calls is defined here,
 *     strong, and forwards to glibc's own (dlvsym RTLD_NEXT).
 *   - TSan does not see glibc's internal locking, so memory freed by one
 *     thread and handed out again to another (whole, split or merged) would
 *     look like a data race: every free releases one sync object, every
 *     allocation acquires it, as if glibc had a single lock.
 *   - In a sanitized program the process's malloc is the sanitizer's, so
 *     glibc's own malloc is first called by the core, maybe from several new
 *     threads at once, and glibc 2.36 was seen to abort at thread exit
 *     ("__malloc_arena_thread_freeres: a->attached_threads > 0"). A
 *     constructor starts glibc's malloc on the main thread first, as an
 *     ordinary program's start-up does.
 * Keeps no state but the resolved glibc functions. */
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "libc_entry.h" /* the names defined below */

#if defined(__SANITIZE_THREAD__)
#define SHIM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SHIM_TSAN 1
#endif
#endif

#ifdef SHIM_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
static char glibc_heap_sync;
#define HANDED_OUT(p) ((p) ? __tsan_acquire(&glibc_heap_sync) : (void)0)
#define GIVEN_BACK(p) ((p) ? __tsan_release(&glibc_heap_sync) : (void)0)
#else
#define HANDED_OUT(p) ((void)(p))
#define GIVEN_BACK(p) ((void)(p))
#endif

static void *glibc_function(const char *name)
{
    void *fn = dlvsym(RTLD_NEXT, name, "GLIBC_2.2.5");
    if (fn == NULL) {
        fprintf(stderr, "glibc_shim: glibc's %s not found\n", name);
        abort();
    }
    return fn;
}

/* Resolved once, on first use (the constructor below makes that the main
 * thread, before any other exists). */
#define GLIBC(type, name)                                                                          \
    static type glibc_##name(void)                                                                 \
    {                                                                                              \
        static type fn;                                                                            \
        type f = __atomic_load_n(&fn, __ATOMIC_ACQUIRE);                                           \
        if (f == NULL) {                                                                           \
            f = (type)glibc_function(#name);                                                       \
            __atomic_store_n(&fn, f, __ATOMIC_RELEASE);                                            \
        }                                                                                          \
        return f;                                                                                  \
    }

typedef void *(*size_fn)(size_t);
typedef void *(*two_size_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef void (*free_fn)(void *);
GLIBC(size_fn, __libc_malloc)
GLIBC(two_size_fn, __libc_calloc)
GLIBC(realloc_fn, __libc_realloc)
GLIBC(two_size_fn, __libc_memalign)
GLIBC(size_fn, __libc_valloc)
GLIBC(size_fn, __libc_pvalloc)
GLIBC(free_fn, __libc_free)

void *__libc_malloc(size_t size)
{
    void *p = glibc___libc_malloc()(size);
    HANDED_OUT(p);
    return p;
}

void *__libc_calloc(size_t count, size_t size)
{
    void *p = glibc___libc_calloc()(count, size);
    HANDED_OUT(p);
    return p;
}

void *__libc_realloc(void *ptr, size_t size)
{
    GIVEN_BACK(ptr);
    void *p = glibc___libc_realloc()(ptr, size);
    HANDED_OUT(p);
    return p;
}

void *__libc_memalign(size_t alignment, size_t size)
{
    void *p = glibc___libc_memalign()(alignment, size);
    HANDED_OUT(p);
    return p;
}

void *__libc_valloc(size_t size)
{
    void *p = glibc___libc_valloc()(size);
    HANDED_OUT(p);
    return p;
}

void *__libc_pvalloc(size_t size)
{
    void *p = glibc___libc_pvalloc()(size);
    HANDED_OUT(p);
    return p;
}

void __libc_free(void *ptr)
{
    GIVEN_BACK(ptr);
    glibc___libc_free()(ptr);
}

__attribute__((constructor)) static void glibc_shim_start(void)
{
    __libc_free(__libc_malloc(1));
}
