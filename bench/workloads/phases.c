/* phases.c — fragmentation workload a ("Give memory back"): how much of
 * what a program frees does the allocator give back to the OS, phase by
 * phase. Single-threaded; never calls malloc outside the measured phases
 * (bookkeeping is mmap'd and touched before the start is measured).
 *
 *   pm_bench_phases objects=N min=A max=B free_pct=P second=M
 *                   second_min=C second_max=D seed=S
 *
 *   start    bookkeeping (N + M blocks, a permutation of N) touched; RSS read
 *   alloc    N blocks of A..B bytes (uniform)
 *   free90   a random P% of them freed, in random order
 *   refill   M blocks of C..D bytes
 *   freeall  everything freed (the survivors of alloc in random order, then
 *            the refill blocks)
 *
 * After each phase it reads the resident set (/proc/self/statm, no stdio)
 * and reports, on the pm-bench line, for each phase X:
 *   live_X_kib       bytes the program holds (requested sizes), KiB
 *   rss_X_kib        the process's resident set, KiB
 *   rss_over_live_X  rss_X / live_X (the whole process: bookkeeping and
 *                    program included)
 *   heap_over_live_X (rss_X - rss_start) / live_X: the memory the allocator
 *                    holds per live byte (the bookkeeping, touched before
 *                    rss_start, is not in it)
 * and rss_start_kib, rss_after_free_all_kib and free_all_over_start
 * (rss_after_free_all / rss_start: the "within 10% of the start").
 * The text lines (live bytes per phase) do not depend on the allocator. */
#include "bench.h"

static void phases_shuffle(uint32_t *perm, uint64_t n, bench_rng_t *rng)
{
    for (uint64_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    for (uint64_t i = n; i > 1; i--) { /* Fisher-Yates */
        uint64_t j = bench_rng_below(rng, i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

int main(int argc, char **argv)
{
    bench_args_t args;
    bench_args_parse(&args, argc, argv);
    uint64_t objects = bench_arg(&args, "objects", 2000000);
    uint64_t min = bench_arg(&args, "min", 16);
    uint64_t max = bench_arg(&args, "max", 512);
    uint64_t free_pct = bench_arg(&args, "free_pct", 90);
    uint64_t second = bench_arg(&args, "second", 1000000);
    uint64_t second_min = bench_arg(&args, "second_min", 256);
    uint64_t second_max = bench_arg(&args, "second_max", 512);
    uint64_t seed = bench_arg(&args, "seed", 1);
    bench_args_done(&args);
    if (objects == 0 || objects > UINT32_MAX || second > UINT32_MAX || min == 0 ||
        max < min || max > UINT32_MAX || free_pct > 100 || second_min == 0 ||
        second_max < second_min || second_max > UINT32_MAX)
        bench_fail("need 1 <= objects < 2^32, 1 <= min <= max, free_pct <= 100, "
                   "1 <= second_min <= second_max");

    bench_rng_t rng;
    bench_rng_seed(&rng, seed, 0);
    bench_block_t *blocks = bench_map(objects + second, sizeof *blocks);
    uint32_t *perm = bench_map(objects, sizeof *perm);
    /* Touch the bookkeeping now, so that its pages are in rss_start and
     * every later change of the RSS is the allocator's. */
    memset(blocks, 0, (objects + second) * sizeof *blocks);
    memset(perm, 0, objects * sizeof *perm);
    bench_mark_t marks[5];
    int nmarks = 0;
    uint64_t live = 0, pairs = 0;
    marks[nmarks++] = (bench_mark_t){"start", live, bench_rss_kib()};

    for (uint64_t i = 0; i < objects; i++) {
        size_t size = bench_rng_range(&rng, min, max);
        blocks[i] = bench_alloc(size, bench_tag(i));
        live += size;
    }
    pairs += objects;
    marks[nmarks++] = (bench_mark_t){"alloc", live, bench_rss_kib()};

    phases_shuffle(perm, objects, &rng);
    uint64_t freed = objects * free_pct / 100;
    for (uint64_t k = 0; k < freed; k++) {
        bench_block_t *b = &blocks[perm[k]];
        live -= b->size;
        bench_free(*b);
        b->ptr = NULL;
    }
    marks[nmarks++] = (bench_mark_t){"free90", live, bench_rss_kib()};

    for (uint64_t i = objects; i < objects + second; i++) {
        size_t size = bench_rng_range(&rng, second_min, second_max);
        blocks[i] = bench_alloc(size, bench_tag(i));
        live += size;
    }
    pairs += second;
    marks[nmarks++] = (bench_mark_t){"refill", live, bench_rss_kib()};

    for (uint64_t k = freed; k < objects; k++) {
        bench_block_t *b = &blocks[perm[k]];
        live -= b->size;
        bench_free(*b);
        b->ptr = NULL;
    }
    for (uint64_t i = objects; i < objects + second; i++) {
        live -= blocks[i].size;
        bench_free(blocks[i]);
    }
    marks[nmarks++] = (bench_mark_t){"freeall", live, bench_rss_kib()};

    /* Only now stdio (its buffer is a malloc of its own). */
    for (int k = 1; k < nmarks; k++)
        printf("phases: after %-7s live %" PRIu64 " bytes\n", marks[k].name,
               marks[k].live_bytes);
    uint64_t start = marks[0].rss_kib;
    bench_report_begin("phases");
    bench_report("pairs", pairs);
    bench_report_marks(marks, nmarks);
    bench_report("rss_after_free_all_kib", marks[nmarks - 1].rss_kib);
    bench_report_real("free_all_over_start",
                      start ? (double)marks[nmarks - 1].rss_kib / (double)start : 0.0);
    bench_report_end();
    bench_unmap(perm, objects, sizeof *perm);
    bench_unmap(blocks, objects + second, sizeof *blocks);
    return 0;
}
