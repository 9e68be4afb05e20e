/* diff.c — owns `poolmalloc diff A B`: two snapshots (of two runs, or two
 * moments of one) side by side, every figure of the PM_STATS table and the
 * derived ones, with the figures and size classes that changed most first.
 * Never reads files itself (main.c's report plumbing does); computes only
 * differences. */
#include "pmtool.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { DIFF_COUNT, DIFF_BYTES, DIFF_RATIO, DIFF_MS } diff_kind_t;

typedef struct diff_figure {
    const char *name, *label;
    diff_kind_t kind;
    double a, b;
    double relative; /* |b - a| / max(|a|, |b|): 0 unchanged .. 1 from or to 0 */
} diff_figure_t;

#define DIFF_FIGURES_MAX 64

typedef struct diff {
    pmt_analysis_t a, b;
    diff_figure_t figure[DIFF_FIGURES_MAX];
    size_t figures;
    int order[PM_CLASS_COUNT]; /* classes, most changed first */
    double class_score[PM_CLASS_COUNT];
    int classes;               /* classes used by either side */
} diff_t;

static void diff_add(diff_t *d, const char *name, const char *label, diff_kind_t kind, double a,
                     double b)
{
    if (d->figures >= DIFF_FIGURES_MAX)
        return;
    diff_figure_t *f = &d->figure[d->figures++];
    f->name = name;
    f->label = label;
    f->kind = kind;
    f->a = a;
    f->b = b;
    double scale = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    f->relative = scale == 0 ? 0 : fabs(b - a) / scale;
}

#define DIFF_KIND_COUNT DIFF_COUNT
#define DIFF_KIND_BYTES DIFF_BYTES
#define DIFF_KIND_RATIO DIFF_RATIO
#define DIFF_STATS_FIELD(name, kind, label) \
    diff_add(d, #name, label, DIFF_KIND_##kind, (double)sa->name, (double)sb->name);

static int diff_by_relative(const void *x, const void *y)
{
    const diff_figure_t *a = *(const diff_figure_t *const *)x, *b = *(const diff_figure_t *const *)y;
    if (a->relative != b->relative)
        return a->relative < b->relative ? 1 : -1;
    double da = fabs(a->b - a->a), db = fabs(b->b - b->a);
    return da < db ? 1 : da > db ? -1 : 0;
}

static const diff_t *diff_sort_context;

static int diff_by_class_score(const void *x, const void *y)
{
    int a = *(const int *)x, b = *(const int *)y;
    double sa = diff_sort_context->class_score[a], sb = diff_sort_context->class_score[b];
    if (sa != sb)
        return sa < sb ? 1 : -1;
    return a - b;
}

static double diff_abs_delta(uint64_t a, uint64_t b)
{
    return a > b ? (double)(a - b) : (double)(b - a);
}

static void diff_build(const pmt_series_t *sa_series, const pmt_series_t *sb_series, diff_t *d)
{
    memset(d, 0, sizeof *d);
    pmt_analyze(sa_series, &d->a);
    pmt_analyze(sb_series, &d->b);
    const pm_stats_t *sa = &d->a.at->s, *sb = &d->b.at->s;
    diff_add(d, "uptime_ms", "time since start", DIFF_MS, (double)d->a.at->uptime_ms,
             (double)d->b.at->uptime_ms);
    diff_add(d, "rss_peak_run_bytes", "peak RSS of the run", DIFF_BYTES, (double)d->a.rss_peak,
             (double)d->b.rss_peak);
    diff_add(d, "live_bytes", "live bytes (pools + glibc)", DIFF_BYTES, (double)d->a.live,
             (double)d->b.live);
    diff_add(d, "held_bytes", "held for no live block", DIFF_BYTES, (double)d->a.held_bytes,
             (double)d->b.held_bytes);
    diff_add(d, "sparse_arenas", "arenas under 30% used", DIFF_COUNT, (double)d->a.sparse_arenas,
             (double)d->b.sparse_arenas);
    PM_STATS(DIFF_STATS_FIELD)
    for (int i = 0; i < PM_CLASS_COUNT; i++) {
        const pm_class_stats_t *ca = &sa->classes[i], *cb = &sb->classes[i];
        if (ca->allocated_total == 0 && cb->allocated_total == 0 && ca->pool_bytes == 0 &&
            cb->pool_bytes == 0)
            continue;
        d->class_score[i] = diff_abs_delta(ca->pool_bytes, cb->pool_bytes) +
                            diff_abs_delta(ca->live_bytes, cb->live_bytes);
        d->order[d->classes++] = i;
    }
    diff_sort_context = d;
    qsort(d->order, (size_t)d->classes, sizeof d->order[0], diff_by_class_score);
}

/* Figures are at most INT64_MAX (the reader's limit), but their difference
 * or rounding may not fit: casts are clamped. */
static int64_t diff_i64(double v)
{
    return v >= 9.2e18 ? INT64_MAX : v <= -9.2e18 ? -INT64_MAX : (int64_t)v;
}

static const char *diff_value(diff_kind_t kind, double v)
{
    switch (kind) {
    case DIFF_BYTES: return pmt_bytes((uint64_t)diff_i64(v));
    case DIFF_RATIO: return pmt_percent(v);
    case DIFF_MS: return pmt_duration(diff_i64(v));
    case DIFF_COUNT: break;
    }
    return pmt_count((uint64_t)diff_i64(v));
}

static const char *diff_change(diff_kind_t kind, double a, double b)
{
    static char text[4][48];
    static int next;
    char *out = text[next++ % 4];
    double delta = b - a;
    switch (kind) {
    case DIFF_BYTES: return pmt_signed_bytes(diff_i64(delta));
    case DIFF_RATIO: snprintf(out, 48, "%+.1f pt", delta * 100); return out;
    case DIFF_MS:
        snprintf(out, 48, "%s%s", delta < 0 ? "-" : "+", pmt_duration(diff_i64(fabs(delta))));
        return out;
    case DIFF_COUNT: break;
    }
    snprintf(out, 48, "%s%s", delta < 0 ? "-" : delta > 0 ? "+" : "",
             pmt_count((uint64_t)diff_i64(fabs(delta))));
    return out;
}

static const char *diff_relative(const diff_figure_t *f)
{
    static char text[4][24];
    static int next;
    char *out = text[next++ % 4];
    if (f->a == f->b)
        snprintf(out, 24, "=");
    else if (f->a == 0)
        snprintf(out, 24, "new");
    else if (f->kind == DIFF_RATIO)
        out[0] = '\0'; /* the change in points says it */
    else
        snprintf(out, 24, "%+.1f%%", (f->b - f->a) / fabs(f->a) * 100);
    return out;
}

static void diff_side(FILE *out, const char *name, const pmt_series_t *s)
{
    fprintf(out, "  %s: %s, pid %" PRId64 ", snapshot %" PRId64 " (%s, at %s), poolmalloc %s\n",
            name, s->file->path, s->pid, s->at->seq, s->at->reason,
            pmt_duration(s->at->uptime_ms), s->at->version);
}

static void diff_figure_row(FILE *out, const diff_figure_t *f)
{
    fprintf(out, "  %-30s %12s %12s %13s %9s\n", f->label, diff_value(f->kind, f->a),
            diff_value(f->kind, f->b), diff_change(f->kind, f->a, f->b), diff_relative(f));
}

void pmt_diff_text(const pmt_series_t *sa, const pmt_series_t *sb, FILE *out)
{
    diff_t *d = pmt_xrealloc(NULL, sizeof *d);
    diff_build(sa, sb, d);
    fprintf(out, "poolmalloc diff\n");
    diff_side(out, "A", sa);
    diff_side(out, "B", sb);

    const diff_figure_t *sorted[DIFF_FIGURES_MAX];
    size_t changed = 0;
    for (size_t i = 0; i < d->figures; i++)
        if (d->figure[i].a != d->figure[i].b)
            sorted[changed++] = &d->figure[i];
    qsort(sorted, changed, sizeof sorted[0], diff_by_relative);
    fprintf(out, "\nChanged most\n  %-30s %12s %12s %13s %9s\n", "", "A", "B", "B - A", "");
    for (size_t i = 0; i < changed && i < 8; i++)
        diff_figure_row(out, sorted[i]);
    if (changed == 0)
        fprintf(out, "  nothing: the two snapshots hold the same figures\n");

    fprintf(out, "\nEvery figure\n  %-30s %12s %12s %13s %9s\n", "", "A", "B", "B - A", "");
    for (size_t i = 0; i < d->figures; i++)
        diff_figure_row(out, &d->figure[i]);

    fprintf(out, "\nSize classes, most changed first (pool bytes and live bytes)\n");
    fprintf(out, "  %5s %6s %11s %11s %12s %11s %11s %12s %7s %7s\n", "class", "block", "pool A",
            "pool B", "change", "live A", "live B", "change", "used A", "used B");
    for (int k = 0; k < d->classes; k++) {
        int i = d->order[k];
        const pm_class_stats_t *ca = &sa->at->s.classes[i], *cb = &sb->at->s.classes[i];
        fprintf(out, "  %5d %6" PRIu64 " %11s %11s %12s %11s %11s %12s %7s %7s\n", i,
                ca->block_size ? ca->block_size : cb->block_size, pmt_bytes(ca->pool_bytes),
                pmt_bytes(cb->pool_bytes),
                diff_change(DIFF_BYTES, (double)ca->pool_bytes, (double)cb->pool_bytes),
                pmt_bytes(ca->live_bytes), pmt_bytes(cb->live_bytes),
                diff_change(DIFF_BYTES, (double)ca->live_bytes, (double)cb->live_bytes),
                pmt_percent(ca->utilization), pmt_percent(cb->utilization));
    }
    if (d->classes == 0)
        fprintf(out, "  (neither side allocated a small block)\n");

    fprintf(out, "\nArenas by occupancy\n  %9s %9s %9s %9s\n", "", "A", "B", "change");
    for (int i = 0; i < PM_OCCUPANCY_BUCKETS; i++) {
        uint64_t oa = sa->at->s.arena_occupancy[i], ob = sb->at->s.arena_occupancy[i];
        fprintf(out, "  %3d-%3d%%  %9s %9s %9s\n", i * 10, i * 10 + 10, pmt_count(oa),
                pmt_count(ob), diff_change(DIFF_COUNT, (double)oa, (double)ob));
    }

    fprintf(out, "\nRetained memory\n  A: %s\n  B: %s\n", d->a.verdict, d->b.verdict);
    free(d);
}

static json_t *diff_json_side(const pmt_series_t *s, const pmt_analysis_t *a)
{
    json_t *o = json_object();
    json_object_set_new(o, "file", json_string(s->file->path));
    json_object_set_new(o, "pid", json_integer(s->pid));
    json_object_set_new(o, "snapshot", pmt_json_snapshot_id(s->at));
    json_object_set_new(o, "problem_count", json_integer((json_int_t)s->file->problems));
    json_object_set_new(o, "problems", pmt_json_problems(s->file));
    json_object_set_new(o, "verdict", json_string(a->verdict));
    return o;
}

static json_t *diff_json_number(diff_kind_t kind, double v)
{
    if (kind == DIFF_RATIO)
        return json_real(v);
    return json_integer(diff_i64(v));
}

void pmt_diff_json(const pmt_series_t *sa, const pmt_series_t *sb, FILE *out)
{
    diff_t *d = pmt_xrealloc(NULL, sizeof *d);
    diff_build(sa, sb, d);
    json_t *o = json_object();
    json_object_set_new(o, "report", json_string("poolmalloc diff"));
    json_object_set_new(o, "report_version", json_integer(1));
    json_object_set_new(o, "a", diff_json_side(sa, &d->a));
    json_object_set_new(o, "b", diff_json_side(sb, &d->b));
    const diff_figure_t *sorted[DIFF_FIGURES_MAX];
    for (size_t i = 0; i < d->figures; i++)
        sorted[i] = &d->figure[i];
    qsort(sorted, d->figures, sizeof sorted[0], diff_by_relative);
    json_t *figures = json_array();
    for (size_t i = 0; i < d->figures; i++) {
        const diff_figure_t *f = sorted[i];
        json_t *row = json_object();
        json_object_set_new(row, "name", json_string(f->name));
        json_object_set_new(row, "label", json_string(f->label));
        json_object_set_new(row, "a", diff_json_number(f->kind, f->a));
        json_object_set_new(row, "b", diff_json_number(f->kind, f->b));
        json_object_set_new(row, "change", diff_json_number(f->kind, f->b - f->a));
        json_object_set_new(row, "relative_change", json_real(f->relative));
        json_array_append_new(figures, row);
    }
    json_object_set_new(o, "figures", figures);
    json_t *classes = json_array();
    for (int k = 0; k < d->classes; k++) {
        int i = d->order[k];
        json_t *row = json_object();
        json_object_set_new(row, "class", json_integer(i));
        json_object_set_new(row, "a", pmt_json_class(i, &sa->at->s.classes[i]));
        json_object_set_new(row, "b", pmt_json_class(i, &sb->at->s.classes[i]));
        json_array_append_new(classes, row);
    }
    json_object_set_new(o, "classes", classes);
    json_t *occupancy = json_object();
    json_t *oa = json_array(), *ob = json_array();
    for (int i = 0; i < PM_OCCUPANCY_BUCKETS; i++) {
        json_array_append_new(oa, json_integer((json_int_t)sa->at->s.arena_occupancy[i]));
        json_array_append_new(ob, json_integer((json_int_t)sb->at->s.arena_occupancy[i]));
    }
    json_object_set_new(occupancy, "a", oa);
    json_object_set_new(occupancy, "b", ob);
    json_object_set_new(o, "arena_occupancy", occupancy);
    pmt_json_dump(o, out);
    free(d);
}
