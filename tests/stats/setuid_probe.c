/* setuid_probe.c — linked against libpoolmalloc.so (a setuid or setgid
 * program ignores LD_PRELOAD paths, so it gets poolmalloc the way such a
 * program would: as a library it was linked with). Prints whether the
 * kernel ran it in secure mode, whether malloc is poolmalloc's, and what a
 * snapshot on demand returned; setuid.sh checks that POOLMALLOC_STATS was
 * ignored in secure mode and honoured otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>

#include "poolmalloc.h"

int main(void)
{
    void *p = malloc(16);
    printf("secure=%lu owned=%d dump=%d\n", getauxval(AT_SECURE), pm_owns(p), pm_stats_dump());
    free(p);
    return 0;
}
