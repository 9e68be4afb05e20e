/* preload.h — what the shim's files share: the attribute that exports a
 * symbol from libpoolmalloc.so (preload/poolmalloc.map lists them all), and
 * the lookup of the definition one of them hides. */
#ifndef POOLMALLOC_PRELOAD_H
#define POOLMALLOC_PRELOAD_H

#include "internal.h"

#define PM_EXPORT __attribute__((visibility("default")))

/* The next definition of `name` after this library's (glibc's, libstdc++'s),
 * looked up on first use (a program that never calls it pays nothing) and
 * kept in *cache; NULL if there is none. */
PM_HIDDEN void *preload_next(void *_Atomic *cache, const char *name);

#endif
