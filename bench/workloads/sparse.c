/* sparse.c — fragmentation workload e ("Give memory back"): a program frees
 * all but a few of its objects, scattered through memory, then asks for its
 * memory back with malloc_trim(0), as long-running glibc programs do after a
 * phase. No pool, slab or page empties whole: what the allocator gives back
 * depends on what it can release around the survivors. Single-threaded;
 * bookkeeping is mmap'd and touched before the start is read.
 *
 *   pm_bench_sparse objects=N min=A max=B keep=K seed=S
 *
 *   start    bookkeeping touched; RSS read
 *   alloc    N blocks of A..B bytes (uniform)
 *   sparse   all but one in K of them freed (chosen at random), in order
 *   trimmed  malloc_trim(0) called
 *
 * Reports rss_start_kib and, for each phase X after start, live_X_kib,
 * rss_X_kib, rss_over_live_X and heap_over_live_X (bench_report_marks). */
#include <malloc.h>

#include "bench.h"

int main(int argc, char **argv)
{
    bench_args_t args;
    bench_args_parse(&args, argc, argv);
    uint64_t objects = bench_arg(&args, "objects", 2000000);
    uint64_t min = bench_arg(&args, "min", 16);
    uint64_t max = bench_arg(&args, "max", 512);
    uint64_t keep = bench_arg(&args, "keep", 256);
    uint64_t seed = bench_arg(&args, "seed", 1);
    bench_args_done(&args);
    if (objects == 0 || objects > UINT32_MAX || min == 0 || max < min || max > UINT32_MAX ||
        keep == 0)
        bench_fail("need 1 <= objects < 2^32, 1 <= min <= max, keep >= 1");

    bench_rng_t rng;
    bench_rng_seed(&rng, seed, 0);
    bench_block_t *blocks = bench_map(objects, sizeof *blocks);
    memset(blocks, 0, objects * sizeof *blocks); /* in rss_start: see the top */
    bench_mark_t marks[4];
    int nmarks = 0;
    uint64_t live = 0;
    marks[nmarks++] = (bench_mark_t){"start", live, bench_rss_kib()};

    for (uint64_t i = 0; i < objects; i++) {
        size_t size = bench_rng_range(&rng, min, max);
        blocks[i] = bench_alloc(size, bench_tag(i));
        live += size;
    }
    marks[nmarks++] = (bench_mark_t){"alloc", live, bench_rss_kib()};

    for (uint64_t i = 0; i < objects; i++) {
        if (bench_rng_below(&rng, keep) == 0)
            continue;
        live -= blocks[i].size;
        bench_free(blocks[i]);
        blocks[i].ptr = NULL;
    }
    marks[nmarks++] = (bench_mark_t){"sparse", live, bench_rss_kib()};

    malloc_trim(0);
    marks[nmarks++] = (bench_mark_t){"trimmed", live, bench_rss_kib()};

    /* The survivors are still whole (bench_free checks them). */
    for (uint64_t i = 0; i < objects; i++)
        if (blocks[i].ptr != NULL)
            bench_free(blocks[i]);

    /* Only now stdio (its buffer is a malloc of its own). */
    for (int k = 1; k < nmarks; k++)
        printf("sparse: after %-7s live %" PRIu64 " bytes\n", marks[k].name, marks[k].live_bytes);
    bench_report_begin("sparse");
    bench_report("pairs", objects);
    bench_report_marks(marks, nmarks);
    bench_report_end();
    bench_unmap(blocks, objects, sizeof *blocks);
    return 0;
}
