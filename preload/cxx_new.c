/* cxx_new.c — C++'s replaceable allocation functions, operator new and
 * operator delete in all their forms (plain, array, nothrow, sized,
 * aligned), exported so that a C++ program's objects reach the pools in one
 * call. libstdc++'s own call malloc and free through the PLT: a new was a
 * call more, and a sized delete (what std::allocator calls) two jumps more.
 * mimalloc, jemalloc and tcmalloc export them too. The mangled names are
 * the Itanium C++ ABI's for x86-64 (size_t is `m`); align_val_t is passed
 * as a size_t, a nothrow_t reference as a pointer.
 *
 * A program that replaces some of them keeps what the standard promises
 * it: the array, nothrow and sized forms are defined by other forms
 * ("Default behavior: Returns operator new(size)"), so a program that
 * replaces operator new(size_t) alone has new[] and new(nothrow) reach its
 * replacement. Those derived forms go straight to the core only while the
 * forms they are defined by all resolve to this library (cxx_chain, looked
 * up once, at the first call of a derived form); otherwise they call
 * libstdc++'s, which call the replacement. The four forms no other is
 * defined by need no test: if replaced, they are not called.
 *
 * When memory runs out, the next definition of the same form (libstdc++'s)
 * is called: it calls malloc again, runs the new_handler loop, and throws
 * std::bad_alloc or, for a nothrow form, returns NULL, as it would without
 * poolmalloc. Never allocates itself; keeps no invariant. */
#include "preload.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <stdlib.h>

enum { CXX_CHAIN_UNKNOWN, CXX_CHAIN_OURS, CXX_CHAIN_REPLACED };
static _Atomic int cxx_chain;

PM_EXPORT void *_Znwm(size_t size);
PM_EXPORT void *_Znam(size_t size);
PM_EXPORT void *_ZnwmSt11align_val_t(size_t size, size_t alignment);
PM_EXPORT void *_ZnamSt11align_val_t(size_t size, size_t alignment);
PM_EXPORT void _ZdlPv(void *ptr);
PM_EXPORT void _ZdaPv(void *ptr);
PM_EXPORT void _ZdlPvSt11align_val_t(void *ptr, size_t alignment);
PM_EXPORT void _ZdaPvSt11align_val_t(void *ptr, size_t alignment);

/* Whether the forms the derived ones are defined by are all this
 * library's: the plain and array forms of new and delete, aligned or not
 * (every derived form is defined by one of them, in one or two steps).
 * Only the program or a library preloaded before this one can define
 * them first; dlsym sees the same order the program's calls bind in. */
static __attribute__((noinline)) bool cxx_chain_resolve(void)
{
    static const struct {
        const char *name;
        void *ours;
    } targets[] = {
        {"_Znwm", (void *)_Znwm},
        {"_Znam", (void *)_Znam},
        {"_ZnwmSt11align_val_t", (void *)_ZnwmSt11align_val_t},
        {"_ZnamSt11align_val_t", (void *)_ZnamSt11align_val_t},
        {"_ZdlPv", (void *)_ZdlPv},
        {"_ZdaPv", (void *)_ZdaPv},
        {"_ZdlPvSt11align_val_t", (void *)_ZdlPvSt11align_val_t},
        {"_ZdaPvSt11align_val_t", (void *)_ZdaPvSt11align_val_t},
    };
    int chain = CXX_CHAIN_OURS;
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
        if (dlsym(RTLD_DEFAULT, targets[i].name) != targets[i].ours)
            chain = CXX_CHAIN_REPLACED;
    atomic_store_explicit(&cxx_chain, chain, memory_order_relaxed);
    return chain == CXX_CHAIN_OURS;
}

static inline bool cxx_chain_ours(void)
{
    return atomic_load_explicit(&cxx_chain, memory_order_relaxed) == CXX_CHAIN_OURS;
}

/* The first call of a derived form looks the chain up: true if it is ours. */
static bool cxx_chain_settled_ours(void)
{
    return atomic_load_explicit(&cxx_chain, memory_order_relaxed) == CXX_CHAIN_UNKNOWN &&
           cxx_chain_resolve();
}

/* libstdc++'s definition of `name`. Whoever calls this library's has one
 * further on, or the program would not have loaded without poolmalloc. */
static void *cxx_next(void *_Atomic *cache, const char *name)
{
    void *next = preload_next(cache, name);
    if (PM_UNLIKELY(next == NULL)) {
        pm_os_say("poolmalloc: no C++ runtime defines ", name, NULL);
        abort();
    }
    return next;
}

/* Aligned new: libstdc++ throws std::bad_alloc for an alignment that is
 * not a power of two, so such a call goes to it. */
static inline void *cxx_aligned(size_t size, size_t alignment)
{
    if (PM_UNLIKELY(!pm_is_power_of_two(alignment)))
        return NULL;
    return pm_memalign(alignment, size);
}

/* A form of new: `fast` (a block, or NULL if it would take a call), else
 * `allocate`, unless the form is `derived` from others and the chain is
 * not ours; then, and when memory runs out, libstdc++'s. All but `fast` is
 * out of line (name_slow), so that the fast path saves no register. The
 * first call of a derived form settles the chain there. */
#define CXX_NEW(name, params, args, derived, fast, allocate)               \
    static __attribute__((noinline)) void *name##_slow params              \
    {                                                                      \
        if (!(derived) || cxx_chain_ours() || cxx_chain_settled_ours()) {  \
            void *block = allocate;                                        \
            if (block != NULL)                                             \
                return block;                                              \
        }                                                                  \
        static void *_Atomic next;                                         \
        return ((void *(*)params)cxx_next(&next, #name))args;              \
    }                                                                      \
    PM_EXPORT void *name params                                            \
    {                                                                      \
        if (PM_LIKELY(!(derived) || cxx_chain_ours())) {                   \
            void *block = fast;                                            \
            if (PM_LIKELY(block != NULL))                                  \
                return block;                                              \
        }                                                                  \
        return name##_slow args;                                           \
    }

/* A derived form of delete: free while the chain is ours, else
 * libstdc++'s. */
#define CXX_DELETE(name, params, args)                                     \
    PM_EXPORT void name params;                                            \
    static __attribute__((noinline)) void name##_slow params               \
    {                                                                      \
        if (cxx_chain_settled_ours()) {                                    \
            name args;                                                     \
            return;                                                        \
        }                                                                  \
        static void *_Atomic next;                                         \
        ((void (*)params)cxx_next(&next, #name))args;                      \
    }                                                                      \
    PM_EXPORT void name params                                             \
    {                                                                      \
        if (PM_LIKELY(cxx_chain_ours())) {                                 \
            pm_free_inline(ptr);                                           \
            return;                                                        \
        }                                                                  \
        name##_slow args;                                                  \
    }

/* new's fast path is malloc's, and its slow path malloc's (pm_malloc_slow
 * takes any size the fast path did not serve); aligned new's is memalign's
 * (an alignment not a power of two takes the slow path, to libstdc++). */
#define CXX_POOL_FAST (size - 1 < PM_SMALL_MAX ? pm_heap_alloc_fast(pm_thread_heap, size) : NULL)
#define CXX_ALIGNED_FAST \
    (pm_aligned_in_pools(alignment) ? pm_aligned_fast(alignment, size) : NULL)

/* new: plain, array, nothrow, aligned */
CXX_NEW(_Znwm, (size_t size), (size), false, CXX_POOL_FAST, pm_malloc_slow(size))
CXX_NEW(_Znam, (size_t size), (size), true, CXX_POOL_FAST, pm_malloc_slow(size))
CXX_NEW(_ZnwmRKSt9nothrow_t, (size_t size, const void *nothrow), (size, nothrow), true,
        CXX_POOL_FAST, pm_malloc_slow(size))
CXX_NEW(_ZnamRKSt9nothrow_t, (size_t size, const void *nothrow), (size, nothrow), true,
        CXX_POOL_FAST, pm_malloc_slow(size))
CXX_NEW(_ZnwmSt11align_val_t, (size_t size, size_t alignment), (size, alignment), false,
        CXX_ALIGNED_FAST, cxx_aligned(size, alignment))
CXX_NEW(_ZnamSt11align_val_t, (size_t size, size_t alignment), (size, alignment), true,
        CXX_ALIGNED_FAST, cxx_aligned(size, alignment))
CXX_NEW(_ZnwmSt11align_val_tRKSt9nothrow_t, (size_t size, size_t alignment, const void *nothrow),
        (size, alignment, nothrow), true, CXX_ALIGNED_FAST, cxx_aligned(size, alignment))
CXX_NEW(_ZnamSt11align_val_tRKSt9nothrow_t, (size_t size, size_t alignment, const void *nothrow),
        (size, alignment, nothrow), true, CXX_ALIGNED_FAST, cxx_aligned(size, alignment))

/* delete: plain, array, sized, nothrow, aligned */
PM_EXPORT void _ZdlPv(void *ptr) { pm_free_inline(ptr); }
CXX_DELETE(_ZdaPv, (void *ptr), (ptr))
CXX_DELETE(_ZdlPvm, (void *ptr, size_t size), (ptr, size))
CXX_DELETE(_ZdaPvm, (void *ptr, size_t size), (ptr, size))
CXX_DELETE(_ZdlPvRKSt9nothrow_t, (void *ptr, const void *nothrow), (ptr, nothrow))
CXX_DELETE(_ZdaPvRKSt9nothrow_t, (void *ptr, const void *nothrow), (ptr, nothrow))
PM_EXPORT void _ZdlPvSt11align_val_t(void *ptr, size_t alignment)
{
    (void)alignment;
    pm_free_inline(ptr);
}
CXX_DELETE(_ZdaPvSt11align_val_t, (void *ptr, size_t alignment), (ptr, alignment))
CXX_DELETE(_ZdlPvmSt11align_val_t, (void *ptr, size_t size, size_t alignment),
           (ptr, size, alignment))
CXX_DELETE(_ZdaPvmSt11align_val_t, (void *ptr, size_t size, size_t alignment),
           (ptr, size, alignment))
CXX_DELETE(_ZdlPvSt11align_val_tRKSt9nothrow_t, (void *ptr, size_t alignment, const void *nothrow),
           (ptr, alignment, nothrow))
CXX_DELETE(_ZdaPvSt11align_val_tRKSt9nothrow_t, (void *ptr, size_t alignment, const void *nothrow),
           (ptr, alignment, nothrow))
