/* glibc_heap.c — what a program sees of glibc's heap, for glibc_heap.sh:
 * "top" prints how many bytes of its heap's top glibc gave back when 30
 * blocks of 16 KiB at the top were freed (480 KiB: past glibc's own trim
 * threshold of 128 KiB, short of the 1 MiB poolmalloc sets); "reuse" prints
 * whether a 1 MiB block was mmap'd, before and after another was freed
 * (glibc's dynamic mmap threshold). Built by CMake; never linked with
 * poolmalloc, which it gets only through LD_PRELOAD. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The chunk's size word, just below the block, and its IS_MMAPPED bit. The
 * block comes as an address: GCC 12 at -O0 took a const pointer to the
 * fresh block for a read of its contents, "maybe uninitialized". */
static const char *where(uintptr_t block)
{
    const size_t *size_word = (const size_t *)(block - sizeof(size_t));
    return *size_word & 0x2 ? "mapped" : "heap";
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "top") == 0) {
        enum { COUNT = 30, SIZE = 16 << 10 };
        void *blocks[COUNT];
        for (int i = 0; i < COUNT; i++)
            if ((blocks[i] = malloc(SIZE)) == NULL)
                return 1;
        intptr_t top = (intptr_t)sbrk(0);
        for (int i = COUNT; i-- > 0;)
            free(blocks[i]);
        printf("given back %ld\n", (long)(top - (intptr_t)sbrk(0)));
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "reuse") == 0) {
        char *first = malloc(1 << 20), *second;
        if (first == NULL)
            return 1;
        const char *before = where((uintptr_t)first);
        free(first);
        if ((second = malloc(1 << 20)) == NULL)
            return 1;
        printf("%s %s\n", before, where((uintptr_t)second));
        free(second);
        return 0;
    }
    fprintf(stderr, "usage: glibc_heap top|reuse\n");
    return 2;
}
