/* cache.c — fragmentation workload b: a cache with random eviction under a
 * byte budget that steps up and down, its resident set sampled over time.
 * Single-threaded; never calls malloc outside the measured loop
 * (bookkeeping is mmap'd and touched before the start is measured; the
 * samples are printed only at the end).
 *
 *   pm_bench_cache ops=N budget_mib=B sample=K update_pct=U
 *                  min=A max=Z large_permille=L large_max=M seed=S idle_ms=I
 *
 * Each operation either overwrites a random entry with a new value (U% of
 * them, once the cache holds anything: free, then malloc) or inserts a new
 * one; then, while the live bytes exceed the budget, a random entry is
 * evicted (freed). Values are A..Z bytes (uniform), L per mille of them
 * Z+1..M bytes instead (the occasional large value: poolmalloc sends those
 * to glibc). The budget follows a fixed schedule, eight steps of N/8
 * operations each, as fractions of B:
 *     1/4  3/4  3/8  1  1/8  5/8  1/16  1/2
 * so it climbs, falls by 7/8 at once (a mass random eviction), and climbs
 * again. Every K operations it samples the live bytes and the resident set
 * (/proc/self/statm, no stdio); after the loop it frees everything and
 * samples once more. Then, if I > 0, it sleeps I ms and does a little
 * more work (4 rounds of 4096 small blocks allocated and freed: a program
 * that goes on, whose allocator calls let a peer that purges on later
 * calls do so), and reads the resident set once more: rss_later_kib.
 * At the end it prints the samples, one line each:
 *     pm-series: op=... budget_kib=... live_kib=... rss_kib=...
 * (bench/run draws them) and the pm-bench line: rss_start_kib,
 * rss_peak_kib, rss_end_kib (after freeing everything), end_over_start,
 * and heap_over_live_mean / _max / _last: (rss - rss_start) / live over the
 * samples (the memory the allocator holds per live byte); with idle_ms,
 * rss_later_kib and later_over_start too. */
#include "bench.h"

#include <time.h>

#define CACHE_STEPS 8

/* The budget schedule in 16ths of budget_mib (see the top). */
static const uint64_t cache_schedule_16ths[CACHE_STEPS] = {4, 12, 6, 16, 2, 10, 1, 8};

typedef struct cache_sample {
    uint64_t op, budget, live, rss_kib;
} cache_sample_t;

int main(int argc, char **argv)
{
    bench_args_t args;
    bench_args_parse(&args, argc, argv);
    uint64_t ops = bench_arg(&args, "ops", 20000000);
    uint64_t budget_mib = bench_arg(&args, "budget_mib", 256);
    uint64_t sample = bench_arg(&args, "sample", 100000);
    uint64_t update_pct = bench_arg(&args, "update_pct", 50);
    uint64_t min = bench_arg(&args, "min", 16);
    uint64_t max = bench_arg(&args, "max", 512);
    uint64_t large_permille = bench_arg(&args, "large_permille", 10);
    uint64_t large_max = bench_arg(&args, "large_max", 16384);
    uint64_t seed = bench_arg(&args, "seed", 1);
    uint64_t idle_ms = bench_arg(&args, "idle_ms", 0);
    bench_args_done(&args);
    if (ops < CACHE_STEPS || budget_mib == 0 || sample == 0 || update_pct > 100 || min == 0 ||
        max < min || large_permille > 1000 || large_max <= max || large_max > UINT32_MAX)
        bench_fail("need ops >= 8, budget_mib >= 1, sample >= 1, update_pct <= 100, "
                   "1 <= min <= max < large_max < 2^32, large_permille <= 1000");

    bench_rng_t rng;
    bench_rng_seed(&rng, seed, 0);
    uint64_t budget_max = budget_mib << 20;
    /* Live entries average ~340 bytes with the defaults; room for a mean
     * of 128 is plenty, and running out fails the run rather than lying. */
    uint64_t capacity = budget_max / (min < 128 ? 128 : min) + 4096;
    uint64_t nsamples = ops / sample + 2;
    bench_block_t *entries = bench_map(capacity, sizeof *entries);
    cache_sample_t *samples = bench_map(nsamples, sizeof *samples);
    memset(entries, 0, capacity * sizeof *entries); /* touched: in rss_start */
    memset(samples, 0, nsamples * sizeof *samples);

    uint64_t count = 0, live = 0, ns = 0;
    uint64_t inserts = 0, updates = 0, evictions = 0, large = 0;
    uint64_t step_ops = ops / CACHE_STEPS;
    uint64_t rss_start = bench_rss_kib();
    samples[ns++] = (cache_sample_t){0, budget_max * cache_schedule_16ths[0] / 16, 0, rss_start};

    for (uint64_t op = 0; op < ops; op++) {
        uint64_t step = op / step_ops < CACHE_STEPS ? op / step_ops : CACHE_STEPS - 1;
        uint64_t budget = budget_max * cache_schedule_16ths[step] / 16;
        size_t size;
        if (bench_rng_below(&rng, 1000) < large_permille) {
            size = bench_rng_range(&rng, max + 1, large_max);
            large++;
        } else {
            size = bench_rng_range(&rng, min, max);
        }
        if (count > 0 && bench_rng_below(&rng, 100) < update_pct) {
            bench_block_t *e = &entries[bench_rng_below(&rng, count)];
            live -= e->size;
            bench_free(*e);
            *e = bench_alloc(size, bench_tag(op));
            updates++;
        } else {
            if (count == capacity)
                bench_fail("cache of %" PRIu64 " entries is full (budget too large for "
                           "min=%" PRIu64 ")", capacity, min);
            entries[count++] = bench_alloc(size, bench_tag(op));
            inserts++;
        }
        live += size;
        while (live > budget && count > 0) {
            uint64_t j = bench_rng_below(&rng, count);
            live -= entries[j].size;
            bench_free(entries[j]);
            entries[j] = entries[--count];
            evictions++;
        }
        if ((op + 1) % sample == 0 && ns < nsamples - 1)
            samples[ns++] = (cache_sample_t){op + 1, budget, live, bench_rss_kib()};
    }
    uint64_t live_last = live;
    for (uint64_t j = 0; j < count; j++) {
        live -= entries[j].size;
        bench_free(entries[j]);
    }
    uint64_t rss_end = bench_rss_kib();
    samples[ns++] = (cache_sample_t){ops, 0, live, rss_end};
    uint64_t rss_later = 0;
    if (idle_ms > 0)
        rss_later = bench_rss_later(idle_ms, &rng, min, max, entries); /* capacity > 4096 */

    /* Only now stdio (its buffer is a malloc of its own). */
    printf("cache: %" PRIu64 " ops: %" PRIu64 " inserts, %" PRIu64 " updates, %" PRIu64
           " evictions, %" PRIu64 " large values; %" PRIu64 " entries (%" PRIu64
           " bytes) live before freeing all\n",
           ops, inserts, updates, evictions, large, count, live_last);
    uint64_t rss_peak = 0;
    double sum = 0, worst = 0, last = 0;
    uint64_t counted = 0;
    for (uint64_t k = 0; k < ns; k++) {
        const cache_sample_t *s = &samples[k];
        printf("pm-series: op=%" PRIu64 " budget_kib=%" PRIu64 " live_kib=%" PRIu64
               " rss_kib=%" PRIu64 "\n",
               s->op, s->budget >> 10, s->live >> 10, s->rss_kib);
        if (s->rss_kib > rss_peak)
            rss_peak = s->rss_kib;
        if (s->live >= (1u << 20)) { /* ratios of tiny live sets mean nothing */
            double r = ((double)s->rss_kib - (double)rss_start) / ((double)s->live / 1024.0);
            sum += r;
            counted++;
            if (r > worst)
                worst = r;
            last = r;
        }
    }
    bench_report_begin("cache");
    bench_report("pairs", inserts + updates);
    bench_report("rss_start_kib", rss_start);
    bench_report("rss_peak_kib", rss_peak);
    bench_report("rss_end_kib", rss_end);
    bench_report_real("end_over_start", rss_start ? (double)rss_end / (double)rss_start : 0.0);
    if (idle_ms > 0) {
        bench_report("rss_later_kib", rss_later);
        bench_report_real("later_over_start", rss_start ? (double)rss_later / (double)rss_start : 0.0);
    }
    bench_report_real("heap_over_live_mean", counted ? sum / (double)counted : 0.0);
    bench_report_real("heap_over_live_max", worst);
    bench_report_real("heap_over_live_last", last);
    bench_report_end();
    bench_unmap(samples, nsamples, sizeof *samples);
    bench_unmap(entries, capacity, sizeof *entries);
    return 0;
}
