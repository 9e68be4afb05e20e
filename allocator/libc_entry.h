/* libc_entry.h — glibc's own malloc family under its __libc_* names, which
 * stay glibc's whatever interposes malloc. glibc exports them (version
 * GLIBC_2.2.5) but declares them in none of its headers: declared here,
 * once, for system.c (the glibc path) and for the tests' and benchmarks'
 * code that reaches glibc around an allocator. */
#ifndef POOLMALLOC_LIBC_ENTRY_H
#define POOLMALLOC_LIBC_ENTRY_H

#include <stddef.h>

void *__libc_malloc(size_t size);
void *__libc_calloc(size_t count, size_t size);
void *__libc_realloc(void *ptr, size_t size);
void *__libc_memalign(size_t alignment, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);
void __libc_free(void *ptr);
int __libc_mallopt(int param, int value);

#endif /* POOLMALLOC_LIBC_ENTRY_H */
