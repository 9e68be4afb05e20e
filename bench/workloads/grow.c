/* grow.c — buffers grown by realloc a few bytes at a time, as a program
 * appending to strings or vectors grows them: the pattern that makes realloc
 * move a block to the next size class over and over.
 * Single-threaded; the slots are mmap'd bookkeeping.
 *
 *   pm_bench_grow ops=N buffers=B max=M seed=S
 *
 * Each step picks one of B buffers at random and appends 1..16 bytes to it
 * with realloc, writing the new bytes; a buffer that would pass M bytes is
 * freed and starts again from nothing (its next realloc is of NULL, a
 * malloc). Before each append the buffer's first byte and its last one are
 * checked, so an allocator that lost what realloc must copy is caught. With
 * M <= 512 every block is poolmalloc's; above it, buffers cross into its
 * glibc path. Reports pairs = the reallocs made (N, frees not counted). */
#include "bench.h"

typedef struct grow_buffer {
    unsigned char *bytes;
    size_t length;
    uint8_t tag;
} grow_buffer_t;

int main(int argc, char **argv)
{
    bench_args_t args;
    bench_args_parse(&args, argc, argv);
    uint64_t ops = bench_arg(&args, "ops", 1000000);
    uint64_t buffers = bench_arg(&args, "buffers", 2000);
    uint64_t max = bench_arg(&args, "max", 512);
    uint64_t seed = bench_arg(&args, "seed", 1);
    bench_args_done(&args);
    if (buffers == 0 || max < 16 || max > UINT32_MAX)
        bench_fail("need buffers >= 1, 16 <= max < 2^32");

    bench_rng_t rng;
    bench_rng_seed(&rng, seed, 0);
    grow_buffer_t *slots = bench_map(buffers, sizeof *slots);
    uint64_t restarted = 0;
    for (uint64_t i = 0; i < ops; i++) {
        grow_buffer_t *b = &slots[bench_rng_below(&rng, buffers)];
        size_t add = bench_rng_range(&rng, 1, 16);
        if (b->length + add > max) {
            free(b->bytes);
            *b = (grow_buffer_t){0};
            restarted++;
        }
        if (b->length > 0 && (b->bytes[0] != b->tag || b->bytes[b->length - 1] != b->tag))
            bench_fail("buffer %p of %zu bytes lost its contents", (void *)b->bytes, b->length);
        unsigned char *grown = realloc(b->bytes, b->length + add);
        if (grown == NULL)
            bench_fail("realloc to %zu bytes returned NULL", b->length + add);
        if (b->length == 0)
            b->tag = bench_tag(i);
        for (size_t k = 0; k < add; k++)
            grown[b->length + k] = b->tag;
        b->bytes = grown;
        b->length += add;
    }
    for (uint64_t k = 0; k < buffers; k++)
        free(slots[k].bytes);
    bench_unmap(slots, buffers, sizeof *slots);

    bench_report_begin("grow");
    bench_report("pairs", ops);
    bench_report("restarted", restarted);
    bench_report_end();
    return 0;
}
