/* profile_probe.c — known allocation sites for the profiling test
 * (profile.sh): three functions allocate 50%, 30% and 20% of the bytes, in
 * mixed sizes (two thirds small, one third above 512 bytes), and the third
 * keeps one block in ten: it is the program's leak. Built with -rdynamic so
 * dladdr names the functions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CALLS = 3000000, KEPT_MAX = 400000 };
static void *kept[KEPT_MAX];
static int kept_count;

static size_t mixed_size(size_t i)
{
    return i % 3 == 0 ? 2000 + i % 3000 : 16 + i % 497;
}

__attribute__((noinline)) void allocate_half(size_t i)
{
    char *p = malloc(mixed_size(i));
    p[0] = 1;
    free(p);
}

__attribute__((noinline)) void allocate_thirty(size_t i)
{
    char *p = malloc(mixed_size(i));
    p[0] = 1;
    free(p);
}

__attribute__((noinline)) void allocate_twenty_and_leak(size_t i)
{
    char *p = malloc(mixed_size(i));
    p[0] = 1;
    if ((i / 10) % 10 == 0 && kept_count < KEPT_MAX)
        kept[kept_count++] = p; /* never freed */
    else
        free(p);
}

int main(void)
{
    /* stdout's buffer is static: glibc would malloc it and keep it to the
     * end, a second leak site whenever it happened to be sampled (about one
     * run in a hundred at 512 KiB), and the tests expect exactly one. */
    static char stdout_buffer[BUFSIZ];
    setvbuf(stdout, stdout_buffer, _IOFBF, sizeof stdout_buffer);
    /* Interleaved so the three see the same mix of sizes. */
    for (size_t i = 0; i < CALLS; i++) {
        size_t r = i % 10;
        if (r < 5)
            allocate_half(i);
        else if (r < 8)
            allocate_thirty(i);
        else
            allocate_twenty_and_leak(i);
    }
    printf("kept %d blocks\n", kept_count);
    return 0;
}
