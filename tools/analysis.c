/* analysis.c — owns every figure the reports derive from snapshots: the
 * summary, the timeline folded to a width, the retained-memory diagnosis
 * with its advice, and the allocation sites with their shares. The text, JSON and HTML reports print what is
 * decided here and decide nothing themselves, so they never disagree.
 * Never trusts the figures to be consistent (a record may come from a
 * racing snapshot, or be made up): every difference saturates at 0. */
#include "pmtool.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024.0 * 1024.0)

static uint64_t analysis_sub(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

/* a * b, or UINT64_MAX if it overflows (made-up records). */
static uint64_t analysis_mul(uint64_t a, uint64_t b)
{
    uint64_t p;
    return __builtin_mul_overflow(a, b, &p) ? UINT64_MAX : p;
}

static uint64_t analysis_add(uint64_t a, uint64_t b)
{
    return a + b < a ? UINT64_MAX : a + b;
}

static uint64_t analysis_live(const pmt_snapshot_t *s)
{
    return analysis_add(s->s.small_live_bytes, s->s.system_live_bytes);
}

static double analysis_share(uint64_t part, uint64_t whole)
{
    return whole == 0 ? 0.0 : (double)part / (double)whole;
}

static void analysis_advise(pmt_analysis_t *a, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void analysis_advise(pmt_analysis_t *a, const char *format, ...)
{
    if (a->advices >= PMT_ADVICE_MAX)
        return;
    va_list args;
    va_start(args, format);
    int n = vsnprintf(a->advice[a->advices++], sizeof a->advice[0], format, args);
    va_end(args);
    /* A sentence cut short reads as a complete one: a buffer too small is
     * a bug to find in the tests (the waiting blocks' advice was cut at 480
     * characters before), not a report to print. */
    if (n < 0 || (size_t)n >= sizeof a->advice[0]) {
        fprintf(stderr, "poolmalloc: internal error: a piece of advice is %d characters long\n", n);
        abort();
    }
}

static int analysis_by_held(const void *x, const void *y)
{
    const pmt_pin_t *a = x, *b = y;
    if (a->held_bytes != b->held_bytes)
        return a->held_bytes < b->held_bytes ? 1 : -1;
    return a->cls - b->cls;
}

static void analysis_summary(const pmt_series_t *series, pmt_analysis_t *a)
{
    a->snapshots = series->count;
    for (size_t i = 0; i < series->count; i++) {
        const pmt_snapshot_t *s = series->snap[i];
        static const char *const reasons[] = {"interval", "signal", "api", "exit"};
        size_t r = 4;
        for (size_t k = 0; k < 4; k++)
            if (strcmp(s->reason, reasons[k]) == 0)
                r = k;
        a->reasons[r]++;
        uint64_t rss = s->s.rss_peak_bytes > s->s.rss_bytes ? s->s.rss_peak_bytes : s->s.rss_bytes;
        if (rss > a->rss_peak)
            a->rss_peak = rss;
        if (i == 0 || analysis_live(s) > a->live_peak) {
            a->live_peak = analysis_live(s);
            a->live_peak_ms = s->uptime_ms;
        }
    }
    const pmt_snapshot_t *last = series->snap[series->count - 1];
    a->ended = strcmp(last->reason, "exit") == 0;
    a->duration_ms = last->uptime_ms;
    a->rss_final = last->s.rss_bytes;
    a->live_final = analysis_live(last);

    const pmt_snapshot_t *at = series->at;
    a->at = at;
    a->rss = at->s.rss_bytes;
    a->small_live = at->s.small_live_bytes;
    a->system_live = at->s.system_live_bytes;
    a->live = analysis_live(at);
    a->pool_bytes = at->s.small_pool_bytes;
    a->arena_bytes = at->s.arena_bytes;
    a->fragmentation = at->s.small_fragmentation;
}

/* Size classes that hold pool bytes beyond their live blocks, most first. */
static void analysis_pins(pmt_analysis_t *a)
{
    const pm_stats_t *s = &a->at->s;
    for (int c = 0; c < PM_CLASS_COUNT; c++) {
        const pm_class_stats_t *k = &s->classes[c];
        /* Blocks waiting for their thread are another cause (below), not
         * room between live blocks. */
        uint64_t held = analysis_sub(
            k->pool_bytes,
            analysis_add(analysis_add(k->live_bytes, k->trimmed_bytes),
                         analysis_mul(k->waiting_blocks, k->block_size)));
        if (held == 0)
            continue;
        pmt_pin_t *p = &a->pin[a->pins++];
        p->cls = c;
        p->block_size = k->block_size;
        p->live_blocks = k->live_blocks;
        p->live_bytes = k->live_bytes;
        p->pool_bytes = k->pool_bytes;
        p->pools = k->pools;
        p->partial_pools = analysis_sub(k->pools, analysis_add(k->pools_full, k->pools_empty));
        p->held_bytes = held;
        p->fill = analysis_share(k->live_bytes, k->pool_bytes);
    }
    qsort(a->pin, a->pins, sizeof a->pin[0], analysis_by_held);
}

/* "48 B (1.2 MiB: 1,203 live blocks in 310 pools, 2.4% used)" for the
 * classes that pin the most, into out. Returns the bytes they hold. */
static uint64_t analysis_pin_list(const pmt_analysis_t *a, char *out, size_t size)
{
    uint64_t total = 0;
    size_t used = 0, listed = 0;
    out[0] = '\0';
    for (size_t i = 0; i < a->pins && listed < 3; i++) {
        const pmt_pin_t *p = &a->pin[i];
        if (p->held_bytes < 2 * PMT_POOL_BYTES || p->live_blocks == 0)
            continue; /* one pool of room, or only empty pools: nothing pinned */
        int n = snprintf(out + used, size - used,
                         "%s%" PRIu64 " B (%s held: %s live blocks in %s pools, %s used)",
                         listed ? ", " : "", p->block_size, pmt_bytes(p->held_bytes),
                         pmt_count(p->live_blocks), pmt_count(p->pools), pmt_percent(p->fill));
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
        total += p->held_bytes;
        listed++;
    }
    return total;
}

static void analysis_diagnose(const pmt_series_t *series, pmt_analysis_t *a)
{
    const pm_stats_t *s = &a->at->s;
    a->trimmed_bytes = s->small_trimmed_bytes;
    /* Pool bytes that may be resident: malloc_trim gave the rest back. */
    uint64_t pool_resident = analysis_sub(s->small_pool_bytes, a->trimmed_bytes);
    a->free_in_pools = analysis_sub(pool_resident, s->small_live_bytes);
    for (int c = 0; c < PM_CLASS_COUNT; c++)
        a->empty_pool_bytes =
            analysis_add(a->empty_pool_bytes, analysis_mul(s->classes[c].pools_empty, PMT_POOL_BYTES));
    /* Their resident part: the pages that only blocks awaiting a thread
     * that stopped taking them back cover are given back meanwhile, and
     * counted as trimmed. */
    a->waiting_bytes = s->small_waiting_bytes < a->free_in_pools ? s->small_waiting_bytes
                                                                 : a->free_in_pools;
    a->retained_bytes = analysis_mul(s->retained_pools, PMT_POOL_BYTES);
    a->purged_bytes = analysis_mul(analysis_sub(s->unused_pools, s->retained_pools), PMT_POOL_BYTES);
    a->held_bytes = analysis_add(a->free_in_pools, a->retained_bytes);
    for (int b = 0; b < PMT_SPARSE_BUCKETS; b++)
        a->sparse_arenas = analysis_add(a->sparse_arenas, s->arena_occupancy[b]);
    a->sparse_bytes = analysis_mul(a->sparse_arenas, PMT_ARENA_BYTES);
    a->outside_bytes = analysis_sub(s->rss_bytes, analysis_add(pool_resident, a->retained_bytes));
    a->metadata_bytes = s->metadata_bytes < a->outside_bytes ? s->metadata_bytes : a->outside_bytes;
    analysis_pins(a);

    /* The default policy keeps up to 64 released pools (1 MiB) resident
     * for the purge delay (POOLMALLOC_RETAIN_POOLS, POOLMALLOC_PURGE_DELAY):
     * that much is expected to go back by itself, so only what is held
     * beyond it weighs on the severity. */
    uint64_t weighed = analysis_sub(a->held_bytes, a->retained_bytes < PMT_RETAIN_EXPECTED_BYTES
                                                       ? a->retained_bytes
                                                       : PMT_RETAIN_EXPECTED_BYTES);
    double share = analysis_share(a->held_bytes, s->rss_bytes);
    double weighed_share = analysis_share(weighed, s->rss_bytes);
    if (weighed >= 4 * MIB && weighed_share >= 0.25)
        a->severity = 2;
    else if (weighed >= 1 * MIB && weighed_share >= 0.10)
        a->severity = 1;
    if (a->severity == 0)
        snprintf(a->verdict, sizeof a->verdict,
                 "Little memory is held for nothing: pools and retained pools hold %s beyond "
                 "their live blocks, %s of RSS.",
                 pmt_bytes(a->held_bytes), pmt_percent(share));
    else
        snprintf(a->verdict, sizeof a->verdict,
                 "poolmalloc holds up to %s of the %s RSS (%s) for no live block: %s of free "
                 "room in pools in use (%s of pool bytes) and %s in unused pools kept resident.",
                 pmt_bytes(a->held_bytes), pmt_bytes(s->rss_bytes), pmt_percent(share),
                 pmt_bytes(a->free_in_pools),
                 pmt_percent(analysis_share(a->free_in_pools, s->small_pool_bytes)),
                 pmt_bytes(a->retained_bytes));

    /* After the peak: live bytes fell, RSS did not follow. Only when the
     * chosen snapshot is past the peak. */
    uint64_t live_drop = analysis_sub(a->live_peak, a->live);
    uint64_t rss_drop = analysis_sub(a->rss_peak, a->rss);
    if (a->at->uptime_ms > a->live_peak_ms && live_drop >= 1 * MIB &&
        live_drop >= a->live_peak / 2 && rss_drop < live_drop / 2)
        analysis_advise(a,
                        "After the peak of live bytes (%s at %s), they fell to %s, but RSS "
                        "went only from %s (peak) to %s: %s the program freed stayed resident.",
                        pmt_bytes(a->live_peak), pmt_duration(a->live_peak_ms), pmt_bytes(a->live),
                        pmt_bytes(a->rss_peak), pmt_bytes(a->rss),
                        pmt_bytes(analysis_sub(live_drop, rss_drop)));

    char pins[400];
    uint64_t pinned = analysis_pin_list(a, pins, sizeof pins);
    if (pinned >= 1 * MIB || (a->severity > 0 && pinned > 0))
        analysis_advise(a,
                        "Size classes that pin pools: %s. A pool goes back to its arena only "
                        "when its last block is freed, so the release variables cannot return "
                        "this room, and malloc_trim(0) only the pages of it that hold no live "
                        "block: it is fragmentation, blocks that outlive their neighbours. "
                        "Allocate long-lived objects of these sizes together (at start-up, or "
                        "in one phase) and free short-lived ones in bulk.",
                        pins);
    /* Mostly empty arenas matter only when pools hold RSS for nothing; else
     * their unused pools are purged and they cost address space alone. */
    if (a->severity > 0 && a->sparse_arenas >= 4 && a->sparse_arenas * 4 >= s->arenas_mapped)
        analysis_advise(a,
                        "%s of %s arenas are under %d%% used (%s mapped): an arena is unmapped "
                        "only when every pool in it is unused, so a few live blocks keep it.",
                        pmt_count(a->sparse_arenas), pmt_count(s->arenas_mapped),
                        PMT_SPARSE_BUCKETS * 10, pmt_bytes(a->sparse_bytes));
    /* Only more than the default keeps (the cap grew with a cycle) is worth
     * a word on its own. */
    if (a->retained_bytes > PMT_RETAIN_EXPECTED_BYTES ||
        (a->severity > 0 && a->retained_bytes * 4 >= a->held_bytes && a->retained_bytes > 0))
        analysis_advise(a,
                        "%s unused pools (%s) stay resident for reuse: they go back once "
                        "unused for POOLMALLOC_PURGE_DELAY (default 1s); set it to 0 to give "
                        "released pools back at once, or call malloc_trim(0) after a phase "
                        "that frees a lot.",
                        pmt_count(s->retained_pools), pmt_bytes(a->retained_bytes));
    if (a->waiting_bytes >= 1 * MIB)
        analysis_advise(a,
                        "%s stays resident for %s blocks freed by threads other than the "
                        "ones that allocated them, which wait for those threads to take them "
                        "back: each does when it next needs a block of that size. A thread that "
                        "hands its objects to others and then waits (a producer, a main "
                        "thread whose workers free what it built) leaves them there until "
                        "it allocates again; once they have waited POOLMALLOC_PURGE_DELAY, "
                        "the pages only they cover go back to the OS (done by the dump "
                        "thread, or by the next thread to take or give back a pool or to "
                        "allocate another 256 KiB; at once on malloc_trim(0) from any "
                        "thread).",
                        pmt_bytes(a->waiting_bytes), pmt_count(s->small_waiting_blocks));
    if (a->empty_pool_bytes >= 1 * MIB)
        analysis_advise(a,
                        "%s is in empty pools that thread heaps keep, at most one per size "
                        "class and thread (%s heaps, %s of exited threads): a pool of more "
                        "than a page goes back once its thread has not needed it for "
                        "POOLMALLOC_PURGE_DELAY (or at once on malloc_trim(0)), one of a "
                        "page when the thread exits or calls malloc_trim(0).",
                        pmt_bytes(a->empty_pool_bytes), pmt_count(s->thread_heaps),
                        pmt_count(s->abandoned_heaps));
    if (a->purged_bytes >= 16 * MIB)
        analysis_advise(a,
                        "%s of unused pools is mapped but already given back to the OS (no "
                        "RSS): their arenas stay mapped while another pool in them is in use; "
                        "empty arenas beyond POOLMALLOC_RESERVE_ARENAS (default 1) are "
                        "unmapped.",
                        pmt_bytes(a->purged_bytes));
    uint64_t headers = analysis_mul(s->arenas_mapped, PMT_ARENA_HEADER_BYTES);
    if (a->metadata_bytes >= 4 * MIB && analysis_share(a->metadata_bytes, s->rss_bytes) >= 0.10)
        analysis_advise(a,
                        "%s of RSS (%s) is poolmalloc's own bookkeeping: %s in the header pages "
                        "of %s arenas (4 KiB each, resident while any pool of the arena is in "
                        "use: a few live or awaiting blocks keep it), and %s in thread heaps "
                        "(about 12 KiB each, %s of them) and in the lists of blocks freed for "
                        "threads that have stopped taking them back (4 bytes a block, %s blocks "
                        "awaiting their thread), which go when those threads next allocate.",
                        pmt_bytes(a->metadata_bytes), pmt_percent(analysis_share(a->metadata_bytes, s->rss_bytes)),
                        pmt_bytes(headers), pmt_count(s->arenas_mapped),
                        pmt_bytes(analysis_sub(a->metadata_bytes, headers)),
                        pmt_count(analysis_add(s->thread_heaps, s->abandoned_heaps)),
                        pmt_count(s->small_waiting_blocks));
    uint64_t program_bytes = analysis_sub(a->outside_bytes, a->metadata_bytes);
    if (s->rss_bytes >= 8 * MIB && program_bytes * 2 >= s->rss_bytes)
        analysis_advise(a,
                        "Most of RSS (%s, %s) is outside poolmalloc's pools and bookkeeping: the "
                        "program's code, stacks and data, and glibc's heap, which serves requests "
                        "above %d bytes (%s live in it now). poolmalloc has glibc trim that heap "
                        "once its live bytes have stayed halved for POOLMALLOC_PURGE_DELAY "
                        "(POOLMALLOC_TRIM_GLIBC), and on malloc_trim(0); the rest follows glibc's "
                        "own tunables (mallopt, GLIBC_TUNABLES=glibc.malloc.*). Threads keep %s "
                        "of freed glibc blocks for their next requests (1 MiB a thread at most, 4 MiB "
                        "for a thread whose requests churn past that and 32 MiB more in all; "
                        "given back to glibc as a thread exits or trims).",
                        pmt_bytes(program_bytes), pmt_percent(analysis_share(program_bytes, s->rss_bytes)),
                        PM_SMALL_MAX, pmt_bytes(s->system_live_bytes),
                        pmt_bytes(s->system_cached_bytes));
    if (!a->ended && series->at == series->snap[series->count - 1])
        analysis_advise(a,
                        "The last snapshot is not an exit snapshot (%s), so these figures are "
                        "from %s.",
                        pmt_no_exit_reason(series), pmt_duration(a->at->uptime_ms));
    if (a->advices == 0)
        analysis_advise(a, "Nothing to do.");
}

/* ---- allocation sites ------------------------------------------------------ */

static uint64_t analysis_list_sum(const pmt_site_list_t *list, int live)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < list->count; i++)
        sum = analysis_add(sum, live ? list->site[i].live_bytes : list->site[i].alloc_bytes);
    return sum;
}

/* Whether a top list holds every site with bytes of its kind. */
static int analysis_list_complete(const pmt_profile_t *p, const pmt_site_list_t *list)
{
    return list->count < PMT_SITES_LISTED || p->sites <= list->count;
}

static void analysis_totals(const pmt_snapshot_t *s, pmt_profile_totals_t *t)
{
    const pmt_profile_t *p = s->profile;
    t->alloc = analysis_list_sum(&p->top_allocated, 0);
    t->live = analysis_list_sum(&p->top_live, 1);
    /* An incomplete list: each sample stands for at least rate_bytes, and
     * the live sites hold about what the stats count live. */
    if (!analysis_list_complete(p, &p->top_allocated)) {
        uint64_t floor = analysis_mul(p->samples, p->rate_bytes);
        if (floor > t->alloc)
            t->alloc = floor;
        t->alloc_estimated = 1;
    }
    if (!analysis_list_complete(p, &p->top_live)) {
        if (analysis_live(s) > t->live)
            t->live = analysis_live(s);
        t->live_estimated = 1;
    }
}

static void analysis_table(pmt_site_table_t *table, const pmt_site_list_t *list,
                           const pmt_profile_totals_t *totals)
{
    for (size_t i = 0; i < list->count && table->rows < PMT_SITES_LISTED; i++) {
        pmt_site_row_t *row = &table->row[table->rows++];
        row->site = &list->site[i];
        row->live_share = analysis_share(row->site->live_bytes, totals->live);
        row->alloc_share = analysis_share(row->site->alloc_bytes, totals->alloc);
    }
}

static double analysis_row_key(const pmt_site_row_t *r)
{
    return r->live_share > r->alloc_share ? r->live_share : r->alloc_share;
}

static int analysis_by_share(const void *x, const void *y)
{
    double a = analysis_row_key(x), b = analysis_row_key(y);
    return a < b ? 1 : a > b ? -1 : 0;
}

/* The sites of both tables once (the same stack is the same site). */
static void analysis_chart(pmt_analysis_t *a)
{
    const pmt_site_table_t *tables[] = {&a->by_alloc, &a->by_live};
    for (size_t t = 0; t < 2; t++)
        for (size_t i = 0; i < tables[t]->rows; i++) {
            const pmt_site_row_t *row = &tables[t]->row[i];
            size_t k = 0;
            while (k < a->chart_rows && a->chart[k].site->stack != row->site->stack)
                k++;
            if (k == a->chart_rows)
                a->chart[a->chart_rows++] = *row;
        }
    /* Stable for equal keys: insertion sort (at most 20 rows). */
    for (size_t i = 1; i < a->chart_rows; i++)
        for (size_t j = i; j > 0 && analysis_by_share(&a->chart[j - 1], &a->chart[j]) > 0; j--) {
            pmt_site_row_t t = a->chart[j];
            a->chart[j] = a->chart[j - 1];
            a->chart[j - 1] = t;
        }
}

static void analysis_profile(const pmt_series_t *series, pmt_analysis_t *a)
{
    for (size_t i = 0; i < series->count && !a->profiled; i++)
        a->profiled = series->snap[i]->profile != NULL;
    const pmt_snapshot_t *at = a->at;
    if (at->profile != NULL) {
        a->profile = at->profile;
        analysis_totals(at, &a->totals);
        analysis_table(&a->by_live, &at->profile->top_live, &a->totals);
        analysis_table(&a->by_alloc, &at->profile->top_allocated, &a->totals);
        analysis_chart(a);
    }
    /* The leak report is the exit snapshot's, whichever snapshot the tables
     * are drawn from. */
    const pmt_snapshot_t *last = series->snap[series->count - 1];
    if (a->ended && last->profile != NULL) {
        a->leak_at = last;
        analysis_totals(last, &a->leak_totals);
        analysis_table(&a->leaks, &last->profile->leaks, &a->leak_totals);
    }
}

void pmt_analysis_resolve(pmt_analysis_t *a, pmt_symbols_t *symbols)
{
    a->symbols = symbols;
    if (symbols == NULL)
        return;
    const pmt_site_table_t *tables[] = {&a->by_live, &a->by_alloc, &a->leaks};
    for (size_t t = 0; t < 3; t++)
        for (size_t i = 0; i < tables[t]->rows; i++)
            pmt_symbols_want(symbols, tables[t]->row[i].site->stack);
    pmt_symbols_run(symbols);
}

const char *pmt_no_exit_reason(const pmt_series_t *series)
{
    return series->exec_followed ? "the program exec'd another, the next run of its pid"
                                 : "the program was killed, or is still running";
}

void pmt_analyze(const pmt_series_t *series, pmt_analysis_t *out)
{
    memset(out, 0, sizeof *out);
    analysis_summary(series, out);
    analysis_diagnose(series, out);
    analysis_profile(series, out);
}

void pmt_timeline_fold(const pmt_series_t *series, pmt_timeline_t *t)
{
    size_t n = t->columns;
    memset(t->rss, 0, n * sizeof *t->rss);
    memset(t->live, 0, n * sizeof *t->live);
    memset(t->pools, 0, n * sizeof *t->pools);
    memset(t->arenas, 0, n * sizeof *t->arenas);
    t->max = 0;
    if (series->count == 0 || n == 0)
        return;
    t->start_ms = series->snap[0]->uptime_ms;
    t->end_ms = series->snap[series->count - 1]->uptime_ms;
    if (t->end_ms < t->start_ms)
        t->end_ms = t->start_ms; /* a clock that went back: made-up records */
    unsigned char *filled = calloc(n, 1);
    if (filled == NULL)
        pmt_out_of_memory();
    double span = (double)(t->end_ms - t->start_ms) + 1.0;
    for (size_t i = 0; i < series->count; i++) {
        const pmt_snapshot_t *s = series->snap[i];
        double at = (double)(s->uptime_ms - t->start_ms);
        size_t c = at <= 0 ? 0 : (size_t)(at / span * (double)n);
        if (c >= n)
            c = n - 1;
        uint64_t live = analysis_live(s);
#define FOLD_MAX(field, value) \
    if (!filled[c] || (value) > t->field[c]) t->field[c] = (value)
        FOLD_MAX(rss, s->s.rss_bytes);
        FOLD_MAX(live, live);
        FOLD_MAX(pools, s->s.small_pool_bytes);
        FOLD_MAX(arenas, s->s.arena_bytes);
#undef FOLD_MAX
        filled[c] = 1;
    }
    for (size_t c = 1; c < n; c++) {
        if (!filled[c]) { /* no snapshot in this stretch: the value before it holds */
            t->rss[c] = t->rss[c - 1];
            t->live[c] = t->live[c - 1];
            t->pools[c] = t->pools[c - 1];
            t->arenas[c] = t->arenas[c - 1];
        }
    }
    for (size_t c = 0; c < n; c++) {
        uint64_t m = t->rss[c];
        if (t->live[c] > m) m = t->live[c];
        if (t->pools[c] > m) m = t->pools[c];
        if (t->arenas[c] > m) m = t->arenas[c];
        if (m > t->max)
            t->max = m;
    }
    free(filled);
}
