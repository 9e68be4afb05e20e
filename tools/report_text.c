/* report_text.c — owns the report for a terminal: summary, size-class
 * table, arena occupancy, the RSS/live timeline drawn in ASCII, the
 * retained-memory diagnosis, and the allocation sites with the leak report.
 * Prints what analysis.c decided; computes no figure of its own. Output is
 * plain ASCII, 80 columns (a frame and its file:line may need more: the
 * file:line then goes on a line of its own). */
#include "pmtool.h"

#include <inttypes.h>
#include <string.h>

enum { TIMELINE_COLUMNS = 60, TIMELINE_ROWS = 10 };

static void text_header(const pmt_series_t *series, const pmt_analysis_t *a, FILE *out)
{
    const pmt_snapshot_t *first = series->snap[0];
    fprintf(out, "poolmalloc report: %s, pid %" PRId64 " (poolmalloc %s)\n", series->file->path,
            series->pid, first->version);
    fprintf(out, "  %zu snapshot%s (%zu interval, %zu signal, %zu api, %zu exit", a->snapshots,
            a->snapshots == 1 ? "" : "s", a->reasons[0], a->reasons[1], a->reasons[2],
            a->reasons[3]);
    if (a->reasons[4])
        fprintf(out, ", %zu other", a->reasons[4]);
    fprintf(out, ") over %s; ", pmt_duration(a->duration_ms));
    if (a->ended)
        fputs("the program ended normally (exit snapshot)\n", out);
    else
        fprintf(out, "no exit snapshot: %s\n", pmt_no_exit_reason(series));
    if (series->runs > 1) {
        fprintf(out, "  this file holds %zu process runs", series->runs);
        if (series->pid_runs > 1)
            fprintf(out,
                    "; pid %" PRId64 " ran %zu programs, one exec'ing the next: this is "
                    "program %zu (--pid %" PRId64 ":N shows program N)",
                    series->pid, series->pid_runs, series->pid_run, series->pid);
        if (series->others > 0) {
            fputs("; others: pid", out);
            for (size_t i = 0; i < series->others; i++)
                fprintf(out, "%s%" PRId64, i ? ", " : " ", series->other_pid[i]);
            fprintf(out, "%s (choose with --pid)",
                    series->other_pid_count > series->others ? ", ..." : "");
        }
        fputc('\n', out);
    }
    fprintf(out, "  tables at snapshot %" PRId64 " (%s, %s)\n", a->at->seq, a->at->reason,
            pmt_duration(a->at->uptime_ms));
}

static void text_summary(const pmt_analysis_t *a, FILE *out)
{
    const pm_stats_t *s = &a->at->s;
    fprintf(out, "\nSummary\n");
    fprintf(out, "  %-24s %s\n", "peak RSS", pmt_bytes(a->rss_peak));
    fprintf(out, "  %-24s %s\n", "final RSS", pmt_bytes(a->rss_final));
    if (a->at->seq != 0 && a->rss != a->rss_final)
        fprintf(out, "  %-24s %s\n", "RSS at this snapshot", pmt_bytes(a->rss));
    fprintf(out, "  %-24s %-10s (pools %s + glibc path %s); ", "live bytes", pmt_bytes(a->live),
            pmt_bytes(a->small_live), pmt_bytes(a->system_live));
    if (a->snapshots > 1)
        fprintf(out, "peak %s at %s\n", pmt_bytes(a->live_peak), pmt_duration(a->live_peak_ms));
    else
        fputs("one snapshot, so no peak\n", out);
    fprintf(out, "  %-24s %-10s (pools in use: %s)\n", "bytes in pools", pmt_bytes(a->pool_bytes),
            pmt_count(s->small_pool_bytes / PMT_POOL_BYTES));
    fprintf(out, "  %-24s %-10s (arenas: %s; at peak: %s)\n", "bytes in arenas",
            pmt_bytes(a->arena_bytes), pmt_count(s->arenas_mapped), pmt_count(s->arenas_peak));
    fprintf(out, "  %-24s %-10s (room in pools not in live blocks: %s)\n", "pool fragmentation",
            pmt_percent(a->fragmentation), pmt_bytes(a->free_in_pools));
    fprintf(out, "  %-24s %s\n", "given back to the OS", pmt_bytes(s->released_bytes_total));
    if (s->system_cached_bytes != 0) {
        fprintf(out, "  %-24s %s (freed glibc blocks threads keep for reuse", "glibc chunks cached",
                pmt_bytes(s->system_cached_bytes));
        if (s->system_caches_grown != 0)
            fprintf(out, "; caches grown to 4 MiB: %s", pmt_count(s->system_caches_grown));
        fputs(")\n", out);
    }
    fprintf(out, "  %-24s %s (%s abandoned)\n", "thread heaps", pmt_count(s->thread_heaps),
            pmt_count(s->abandoned_heaps));
    if (s->exchange_given_total != 0)
        fprintf(out, "  %-24s %s pools waiting (given up: %s; taken by other threads: %s)\n",
                "exchange", pmt_count(s->exchange_pools), pmt_count(s->exchange_given_total),
                pmt_count(s->exchange_taken_total));
}

#define TEXT_WIDTH_COUNT 11
#define TEXT_WIDTH_BYTES 11
#define TEXT_WIDTH_RATIO 7
#define TEXT_CLASS_HEAD(name, kind, label) fprintf(out, "%*s", TEXT_WIDTH_##kind, label);
#define TEXT_VALUE_COUNT(v) pmt_count(v)
#define TEXT_VALUE_BYTES(v) pmt_bytes(v)
#define TEXT_VALUE_RATIO(v) pmt_percent(v)
#define TEXT_CLASS_CELL(name, kind, label) \
    fprintf(out, "%*s", TEXT_WIDTH_##kind, TEXT_VALUE_##kind(c->name));

static void text_classes(const pmt_analysis_t *a, FILE *out)
{
    const pm_stats_t *s = &a->at->s;
    fprintf(out, "\nSize classes (used: live bytes / pool bytes; classes never used left out)\n");
    fprintf(out, "%7s", "class");
    PM_CLASS_STATS(TEXT_CLASS_HEAD)
    fputc('\n', out);
    size_t shown = 0;
    for (int i = 0; i < PM_CLASS_COUNT; i++) {
        const pm_class_stats_t *c = &s->classes[i];
        if (c->allocated_total == 0 && c->pools == 0 && c->pool_bytes == 0)
            continue;
        fprintf(out, "%7d", i);
        PM_CLASS_STATS(TEXT_CLASS_CELL)
        fputc('\n', out);
        shown++;
    }
    if (shown == 0)
        fprintf(out, "  (no small block was ever allocated)\n");
}

static void text_occupancy(const pmt_analysis_t *a, FILE *out)
{
    const uint64_t *o = a->at->s.arena_occupancy;
    uint64_t most = 0;
    for (int i = 0; i < PM_OCCUPANCY_BUCKETS; i++)
        if (o[i] > most)
            most = o[i];
    fprintf(out, "\nArenas by occupancy (share of their pool bytes in live blocks)\n");
    for (int i = 0; i < PM_OCCUPANCY_BUCKETS; i++) {
        int bar = most == 0 ? 0 : (int)((double)o[i] * 40.0 / (double)most + 0.5);
        if (o[i] > 0 && bar == 0)
            bar = 1;
        fprintf(out, "  %3d-%3d%%  %-40.*s %s\n", i * 10, i * 10 + 10, bar,
                "########################################", pmt_count(o[i]));
    }
}

static void text_timeline(const pmt_series_t *series, FILE *out)
{
    fprintf(out, "\nTimeline: RSS and live bytes\n");
    if (series->count < 2) {
        fprintf(out, "  (one snapshot: nothing to draw; a shorter POOLMALLOC_STATS_INTERVAL "
                     "gives more)\n");
        return;
    }
    uint64_t rss[TIMELINE_COLUMNS], live[TIMELINE_COLUMNS], pools[TIMELINE_COLUMNS],
        arenas[TIMELINE_COLUMNS];
    pmt_timeline_t t = {.columns = TIMELINE_COLUMNS, .rss = rss, .live = live, .pools = pools,
                        .arenas = arenas};
    pmt_timeline_fold(series, &t);
    uint64_t top = 0;
    for (int c = 0; c < TIMELINE_COLUMNS; c++) {
        if (rss[c] > top) top = rss[c];
        if (live[c] > top) top = live[c];
    }
    for (int r = 0; r < TIMELINE_ROWS; r++) {
        /* A cell is filled when the value reaches the middle of its row. */
        double level = (double)top * ((double)(TIMELINE_ROWS - r) - 0.5) / TIMELINE_ROWS;
        const char *label = r == 0 ? pmt_bytes(top)
                            : r == TIMELINE_ROWS / 2 ? pmt_bytes(top / 2) : "";
        fprintf(out, "  %10s |", label);
        for (int c = 0; c < TIMELINE_COLUMNS; c++)
            fputc(top > 0 && (double)live[c] >= level ? '#'
                  : top > 0 && (double)rss[c] >= level ? ':' : ' ', out);
        fputc('\n', out);
    }
    fprintf(out, "  %10s +", "0");
    for (int c = 0; c < TIMELINE_COLUMNS; c++)
        fputc('-', out);
    const char *start = pmt_duration(t.start_ms), *end = pmt_duration(t.end_ms);
    fprintf(out, "\n  %12s%-*s%s\n", "", TIMELINE_COLUMNS - (int)strlen(end), start, end);
    fprintf(out, "  %12s# live bytes   : RSS above them (resident, not in live blocks)\n", "");
}

static void text_diagnosis(const pmt_analysis_t *a, FILE *out)
{
    fprintf(out, "\nRetained memory\n");
    pmt_wrap(out, "  ", 2, a->verdict);
    fprintf(out, "    %-34s %s\n", "free room in pools in use", pmt_bytes(a->free_in_pools));
    fprintf(out, "    %-34s %s\n", "  of which in empty pools", pmt_bytes(a->empty_pool_bytes));
    fprintf(out, "    %-34s %s\n", "  of which awaiting their thread", pmt_bytes(a->waiting_bytes));
    fprintf(out, "    %-34s %s\n", "pages of pools in use given back", pmt_bytes(a->trimmed_bytes));
    fprintf(out, "    %-34s %s\n", "unused pools kept resident", pmt_bytes(a->retained_bytes));
    fprintf(out, "    %-34s %s\n", "unused pools given back (mapped)", pmt_bytes(a->purged_bytes));
    fprintf(out, "    %-34s %s (arenas: %s)\n", "arenas under 30% used", pmt_bytes(a->sparse_bytes),
            pmt_count(a->sparse_arenas));
    fprintf(out, "    %-34s %s\n", "RSS outside pools", pmt_bytes(a->outside_bytes));
    fprintf(out, "    %-34s %s\n", "  of which poolmalloc's metadata", pmt_bytes(a->metadata_bytes));
    if (a->pins > 0) {
        fprintf(out, "  Size classes holding the most room:\n");
        fprintf(out, "    %7s %12s %12s %12s %10s %10s %8s\n", "block", "held", "live bytes",
                "pool bytes", "pools", "partial", "used");
        for (size_t i = 0; i < a->pins && i < 5; i++) {
            const pmt_pin_t *p = &a->pin[i];
            fprintf(out, "    %5" PRIu64 " B %12s %12s %12s %10s %10s %8s\n", p->block_size,
                    pmt_bytes(p->held_bytes), pmt_bytes(p->live_bytes), pmt_bytes(p->pool_bytes),
                    pmt_count(p->pools), pmt_count(p->partial_pools), pmt_percent(p->fill));
        }
    }
    for (size_t i = 0; i < a->advices; i++)
        pmt_wrap(out, "  - ", 4, a->advice[i]);
}

/* ---- allocation sites ------------------------------------------------------- */

enum { TEXT_FRAMES_SHOWN = 6 };

static void text_frames(const pmt_analysis_t *a, const pmt_stack_t *stack, FILE *out)
{
    size_t shown = stack->depth < TEXT_FRAMES_SHOWN ? stack->depth : TEXT_FRAMES_SHOWN;
    for (size_t f = 0; f < shown; f++) {
        const char *frame = stack->frame[f];
        const char *where = pmt_frame_where(a->symbols, frame);
        if (8 + strlen(frame) + strlen(where) <= PMT_TEXT_WIDTH)
            fprintf(out, "        %s%s\n", frame, where);
        else if (where[0])
            fprintf(out, "        %s\n          %s\n", frame, where + 1);
        else
            fprintf(out, "        %s\n", frame);
        const pmt_resolved_t *r = pmt_symbols_find(a->symbols, frame);
        for (size_t i = 1; r != NULL && i < r->locs; i++) {
            const pmt_location_t *l = &r->loc[i];
            fprintf(out, "          inlined into %s", l->function ? l->function : "??");
            if (l->file != NULL)
                fprintf(out, " at %s:%u", l->file, l->line);
            fputc('\n', out);
        }
    }
    if (stack->depth > shown)
        fprintf(out, "        ... %zu more frame%s\n", stack->depth - shown,
                stack->depth - shown == 1 ? "" : "s");
    if (stack->depth == 0)
        fprintf(out, "        (no frame recorded)\n");
}

/* One site: the figure it is ranked by first, with its share. */
static void text_site(const pmt_analysis_t *a, size_t rank, const pmt_site_row_t *row,
                      int by_live, FILE *out)
{
    const pmt_site_t *s = row->site;
    char live[96], alloc[96];
    if (s->live_bytes == 0)
        snprintf(live, sizeof live, "nothing live");
    else
        snprintf(live, sizeof live, "%s live (%s) in ~%s block%s", pmt_bytes(s->live_bytes),
                 pmt_percent(row->live_share), pmt_count(s->live_count),
                 s->live_count == 1 ? "" : "s");
    snprintf(alloc, sizeof alloc, "%s allocated (%s) in ~%s", pmt_bytes(s->alloc_bytes),
             pmt_percent(row->alloc_share), pmt_count(s->alloc_count));
    fprintf(out, "  %2zu. %s;\n      %s; %s sample%s\n", rank, by_live ? live : alloc,
            by_live ? alloc : live, pmt_count(s->samples), s->samples == 1 ? "" : "s");
    text_frames(a, s->stack, out);
}

static void text_totals(const pmt_profile_totals_t *t, FILE *out)
{
    fprintf(out, "  shares are of all sampled bytes: %s%s live, %s%s allocated\n",
            t->live_estimated ? "~" : "", pmt_bytes(t->live), t->alloc_estimated ? "~" : "",
            pmt_bytes(t->alloc));
}

static void text_sites(const pmt_analysis_t *a, FILE *out)
{
    fprintf(out, "\nAllocation sites\n");
    if (!a->profiled) {
        fprintf(out, "  not profiled: POOLMALLOC_PROFILE=1 (or poolmalloc run --profile) samples "
                     "where\n  memory is allocated\n");
        return;
    }
    if (a->profile == NULL) {
        fprintf(out, "  snapshot %" PRId64 " has no profile (another snapshot of the run has)\n",
                a->at->seq);
    } else {
        const pmt_profile_t *p = a->profile;
        fprintf(out, "  snapshot %" PRId64 " (%s): %s sample%s, one per %s allocated on average; "
                     "%s stack%s\n",
                a->at->seq, a->at->reason, pmt_count(p->samples), p->samples == 1 ? "" : "s",
                pmt_bytes(p->rate_bytes), pmt_count(p->sites), p->sites == 1 ? "" : "s");
        if (p->dropped > 0)
            fprintf(out, "  %s samples dropped (the tables were full): the figures are low\n",
                    pmt_count(p->dropped));
        text_totals(&a->totals, out);
        fprintf(out, "  (bytes and blocks with ~ are estimated from the samples)\n");
        fprintf(out, "\n  Top sites by live bytes\n");
        if (a->by_live.rows == 0)
            fprintf(out, "    (no sampled block is live)\n");
        for (size_t i = 0; i < a->by_live.rows; i++)
            text_site(a, i + 1, &a->by_live.row[i], 1, out);
        fprintf(out, "\n  Top sites by bytes allocated\n");
        if (a->by_alloc.rows == 0)
            fprintf(out, "    (nothing sampled yet)\n");
        for (size_t i = 0; i < a->by_alloc.rows; i++)
            text_site(a, i + 1, &a->by_alloc.row[i], 0, out);
    }
    fprintf(out, "\nLeak report: sites whose sampled blocks were still live at exit\n");
    if (a->leak_at == NULL) {
        fprintf(out, "  %s\n", a->ended ? "(the exit snapshot has no profile)"
                                        : "(no exit snapshot: the program was killed, or is "
                                          "still running)");
    } else if (a->leaks.rows == 0) {
        fprintf(out, "  %s\n", a->leak_at->profile->samples == 0 ? "nothing was sampled"
                                                               : "none: every sampled block was freed");
    } else {
        text_totals(&a->leak_totals, out);
        for (size_t i = 0; i < a->leaks.rows; i++)
            text_site(a, i + 1, &a->leaks.row[i], 1, out);
    }
    const char *notes = pmt_symbols_notes(a->symbols);
    if (a->symbols != NULL && notes[0])
        pmt_wrap(out, "  file:line: ", 4, notes);
}

void pmt_report_text(const pmt_series_t *series, const pmt_analysis_t *a, FILE *out)
{
    text_header(series, a, out);
    text_summary(a, out);
    text_classes(a, out);
    text_occupancy(a, out);
    text_timeline(series, out);
    text_diagnosis(a, out);
    text_sites(a, out);
}
