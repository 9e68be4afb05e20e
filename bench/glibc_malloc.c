/* glibc_malloc.c — pm_bench_glibc_malloc.so, the glibc row of a workload
 * whose program links another allocator (redis-server links jemalloc):
 * preloaded, it sends the malloc family to glibc's own, as a program that
 * links none would have it. The harness's glibc row is otherwise no
 * preload at all, which for such a program would measure its allocator. */
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

/* By path: the standalone bench build has no include directory of the
 * core's, and only the declarations are wanted. */
#include "../allocator/libc_entry.h"

void *malloc(size_t size) { return __libc_malloc(size); }
void free(void *ptr) { __libc_free(ptr); }
void *calloc(size_t count, size_t size) { return __libc_calloc(count, size); }
void *realloc(void *ptr, size_t size) { return __libc_realloc(ptr, size); }
void *memalign(size_t alignment, size_t size) { return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { return __libc_memalign(alignment, size); }
void *valloc(size_t size) { return __libc_valloc(size); }
void *pvalloc(size_t size) { return __libc_pvalloc(size); }

int posix_memalign(void **out, size_t alignment, size_t size)
{
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0)
        return EINVAL;
    void *block = __libc_memalign(alignment, size);
    if (block == NULL)
        return ENOMEM;
    *out = block;
    return 0;
}

/* glibc has no __libc_ name for it: its own symbol, found in libc.so.6
 * itself (a plain dlsym would find the program's allocator's). */
static size_t (*glibc_usable_size)(void *);

__attribute__((constructor)) static void find_usable_size(void)
{
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (libc != NULL)
        glibc_usable_size = (size_t (*)(void *))dlsym(libc, "malloc_usable_size");
}

size_t malloc_usable_size(void *ptr)
{
    if (glibc_usable_size == NULL)
        find_usable_size();
    if (glibc_usable_size == NULL) {
        static const char msg[] = "pm_bench_glibc_malloc: no malloc_usable_size in libc.so.6\n";
        (void)!write(2, msg, sizeof msg - 1);
        abort();
    }
    return glibc_usable_size(ptr);
}
