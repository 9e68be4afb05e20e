/* report_html.c — owns `report --html`: one self-contained HTML file with
 * the summary, the retained-memory diagnosis, the tables, and SVG charts
 * drawn here (memory over time, per-class use, arena occupancy, and with
 * profiling the top allocation sites), the site tables and the leak report.
 * Never references anything outside the file: no script, no font, no
 * image, no link; a Content-Security-Policy forbids the browser to fetch
 * any. Every string from the input is escaped. Computes no figure of its
 * own beyond chart geometry. */
#include "pmtool.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { CHART_W = 960, CHART_H = 320, PAD_L = 78, PAD_R = 40, PAD_T = 20, PAD_B = 44 };
enum { TIMELINE_POINTS_MAX = 1000 };

#define COLOR_RSS "#d62728"
#define COLOR_ARENAS "#2ca02c"
#define COLOR_POOLS "#ff7f0e"
#define COLOR_LIVE "#1f77b4"
#define COLOR_POOL_BAR "#ffbb78"
#define COLOR_OCCUPANCY "#9467bd"
#define COLOR_SITE_LIVE "#17becf"
#define COLOR_SITE_ALLOC "#8c564b"

static void html_escape(FILE *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", out); break;
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '"': fputs("&quot;", out); break;
        case '\'': fputs("&#39;", out); break;
        default:
            /* Control bytes are not text; the rest (UTF-8 too) passes. */
            if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t')
                fputc('?', out);
            else
                fputc(*s, out);
        }
    }
}

/* ---- scales ---------------------------------------------------------------- */

/* A step of 1, 2 or 5 times a power of ten giving about `ticks` steps. */
static double html_nice_step(double max, int ticks)
{
    if (!(max > 0))
        return 1;
    double raw = max / ticks;
    double magnitude = pow(10.0, floor(log10(raw)));
    double norm = raw / magnitude;
    return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * magnitude;
}

/* The binary unit a byte axis is labelled in, chosen so its top is < 1024. */
static void html_byte_unit(double max, double *unit, const char **name)
{
    static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    *unit = 1;
    while (max / *unit >= 1024 && u < 6) {
        *unit *= 1024;
        u++;
    }
    *name = names[u];
}

typedef struct html_axis {
    double top;        /* value at the top of the plot */
    double step;       /* between gridlines, in values */
    double unit;       /* labels are value / unit */
    const char *name;  /* the unit's name */
} html_axis_t;

static html_axis_t html_byte_axis(uint64_t max)
{
    html_axis_t axis;
    double m = max > 0 ? (double)max : 1.0;
    html_byte_unit(m, &axis.unit, &axis.name);
    axis.step = html_nice_step(m / axis.unit, 5) * axis.unit;
    axis.top = ceil(m / axis.step) * axis.step;
    return axis;
}

static double html_y(double value, double top)
{
    double plot = CHART_H - PAD_T - PAD_B;
    return PAD_T + plot - (top > 0 ? value / top : 0) * plot;
}

static void html_y_grid(FILE *out, const html_axis_t *axis, int count_axis)
{
    /* Counted, not stepped: a step lost in a huge value's rounding must not
     * loop forever (made-up records reach 2^63). */
    for (int k = 0; k <= 20; k++) {
        double v = k * axis->step;
        if (v > axis->top * 1.0001)
            break;
        double y = html_y(v, axis->top);
        fprintf(out,
                "<line class=\"grid\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>"
                "<text class=\"tick\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">",
                PAD_L, y, CHART_W - PAD_R, y, PAD_L - 6, y + 4);
        if (count_axis)
            fprintf(out, "%.0f", v);
        else
            fprintf(out, "%g %s", v / axis->unit, axis->name);
        fputs("</text>\n", out);
    }
    fprintf(out, "<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>\n", PAD_L,
            CHART_H - PAD_B, CHART_W - PAD_R, CHART_H - PAD_B);
}

/* ---- memory over time ------------------------------------------------------ */

static void html_series(FILE *out, const char *cls, const char *label, const char *color,
                        const double *x, const uint64_t *v, size_t n, double top, int dashed)
{
    fprintf(out, "<polyline class=\"series %s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2.5\"%s "
                 "points=\"",
            cls, color, dashed ? " stroke-dasharray=\"6 3\"" : "");
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s%.1f,%.1f", i ? " " : "", x[i], html_y((double)v[i], top));
    fprintf(out, "\"><title>%s</title></polyline>\n", label);
    if (n <= 60) /* few snapshots: show where they are */
        for (size_t i = 0; i < n; i++)
            fprintf(out,
                    "<circle class=\"point %s\" cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\">"
                    "<title>%s: %s</title></circle>\n",
                    cls, x[i], html_y((double)v[i], top), color, label, pmt_bytes(v[i]));
}

static void html_timeline(FILE *out, const pmt_series_t *series)
{
    size_t n = series->count;
    int folded = n > TIMELINE_POINTS_MAX;
    size_t points = folded ? TIMELINE_POINTS_MAX : n;
    uint64_t *v = pmt_xrealloc(NULL, 4 * points * sizeof *v);
    double *x = pmt_xrealloc(NULL, points * sizeof *x);
    pmt_timeline_t t = {.columns = points, .rss = v, .live = v + points, .pools = v + 2 * points,
                        .arenas = v + 3 * points};
    double plot_w = CHART_W - PAD_L - PAD_R;
    int64_t start = series->snap[0]->uptime_ms, end = series->snap[n - 1]->uptime_ms;
    if (end < start)
        end = start;
    double span = end > start ? (double)(end - start) : 1.0;
    if (folded) {
        pmt_timeline_fold(series, &t); /* each column: the largest value in its stretch */
        for (size_t i = 0; i < points; i++)
            x[i] = PAD_L + ((double)i + 0.5) / (double)points * plot_w;
    } else {
        t.max = 0;
        for (size_t i = 0; i < n; i++) {
            const pm_stats_t *s = &series->snap[i]->s;
            t.rss[i] = s->rss_bytes;
            t.live[i] = s->small_live_bytes + s->system_live_bytes;
            if (t.live[i] < s->small_live_bytes)
                t.live[i] = UINT64_MAX;
            t.pools[i] = s->small_pool_bytes;
            t.arenas[i] = s->arena_bytes;
            int64_t at = series->snap[i]->uptime_ms - start;
            x[i] = PAD_L + (n == 1 ? 0.5 : (at < 0 ? 0 : (double)at) / span) * plot_w;
            if (x[i] > PAD_L + plot_w)
                x[i] = PAD_L + plot_w;
            uint64_t m = t.rss[i];
            if (t.live[i] > m) m = t.live[i];
            if (t.pools[i] > m) m = t.pools[i];
            if (t.arenas[i] > m) m = t.arenas[i];
            if (m > t.max)
                t.max = m;
        }
    }
    html_axis_t axis = html_byte_axis(t.max);
    fprintf(out,
            "<svg class=\"chart\" id=\"chart-timeline\" xmlns=\"http://www.w3.org/2000/svg\" "
            "viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\" "
            "aria-label=\"RSS, arenas, pools and live bytes over time\">\n",
            CHART_W, CHART_H, CHART_W, CHART_H);
    html_y_grid(out, &axis, 0);
    /* Time ticks. */
    double step = html_nice_step(span, 8);
    double first_tick = ceil((double)start / step) * step;
    for (int k = 0; k <= 20; k++) {
        double ms = first_tick + k * step;
        if (ms > (double)start + span * 1.0001)
            break;
        double px = PAD_L + (ms - (double)start) / span * plot_w;
        if (px < PAD_L - 1 || px > CHART_W - PAD_R + 1)
            continue; /* rounding at 2^63 */
        fprintf(out,
                "<line class=\"tickmark\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>"
                "<text class=\"tick\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                px, CHART_H - PAD_B, px, CHART_H - PAD_B + 5, px, CHART_H - PAD_B + 18,
                pmt_duration((int64_t)ms));
    }
    fprintf(out, "<text class=\"axis-label\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">time since "
                 "the program started</text>\n",
            PAD_L + (CHART_W - PAD_L - PAD_R) / 2, CHART_H - 6);
    html_series(out, "arenas", "bytes in arenas (mapped)", COLOR_ARENAS, x, t.arenas, points,
                axis.top, 1);
    html_series(out, "pools", "bytes in pools", COLOR_POOLS, x, t.pools, points, axis.top, 0);
    html_series(out, "rss", "RSS", COLOR_RSS, x, t.rss, points, axis.top, 0);
    html_series(out, "live", "live bytes", COLOR_LIVE, x, t.live, points, axis.top, 0);
    fputs("</svg>\n", out);
    fprintf(out,
            "<p class=\"legend\"><span style=\"color:%s\">&#9632;</span> RSS (the whole process) "
            "<span style=\"color:%s\">&#9632;</span> bytes in arenas (mapped by poolmalloc) "
            "<span style=\"color:%s\">&#9632;</span> bytes in pools "
            "<span style=\"color:%s\">&#9632;</span> live bytes (pools and glibc path)%s</p>\n",
            COLOR_RSS, COLOR_ARENAS, COLOR_POOLS, COLOR_LIVE,
            folded ? "; each point is the largest value of its stretch of time" : "");
    free(v);
    free(x);
}

/* ---- bars ------------------------------------------------------------------ */

static void html_classes_chart(FILE *out, const pmt_analysis_t *a)
{
    const pm_stats_t *s = &a->at->s;
    int used[PM_CLASS_COUNT], n = 0;
    uint64_t max = 0;
    for (int i = 0; i < PM_CLASS_COUNT; i++) {
        const pm_class_stats_t *c = &s->classes[i];
        if (c->pool_bytes == 0 && c->live_bytes == 0)
            continue;
        used[n++] = i;
        if (c->pool_bytes > max) max = c->pool_bytes;
        if (c->live_bytes > max) max = c->live_bytes;
    }
    if (n == 0) {
        fputs("<p class=\"empty\">No size class holds a pool at this snapshot.</p>\n", out);
        return;
    }
    html_axis_t axis = html_byte_axis(max);
    fprintf(out,
            "<svg class=\"chart\" id=\"chart-classes\" xmlns=\"http://www.w3.org/2000/svg\" "
            "viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\" "
            "aria-label=\"pool bytes and live bytes per size class\">\n",
            CHART_W, CHART_H, CHART_W, CHART_H);
    html_y_grid(out, &axis, 0);
    double slot = (double)(CHART_W - PAD_L - PAD_R) / n;
    double bar = slot * 0.7 > 40 ? 40 : slot * 0.7;
    double base = html_y(0, axis.top);
    for (int k = 0; k < n; k++) {
        const pm_class_stats_t *c = &s->classes[used[k]];
        double x = PAD_L + slot * k + (slot - bar) / 2;
        double yp = html_y((double)c->pool_bytes, axis.top);
        double yl = html_y((double)c->live_bytes, axis.top);
        fprintf(out,
                "<rect class=\"bar pool\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                "fill=\"%s\"><title>class %d (%" PRIu64 " B): %s in %s pools</title></rect>\n",
                x, yp, bar, base - yp, COLOR_POOL_BAR, used[k], c->block_size,
                pmt_bytes(c->pool_bytes), pmt_count(c->pools));
        fprintf(out,
                "<rect class=\"bar live\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                "fill=\"%s\"><title>class %d (%" PRIu64 " B): %s live in %s blocks, %s "
                "used</title></rect>\n",
                x + bar * 0.2, yl, bar * 0.6, base - yl, COLOR_LIVE, used[k], c->block_size,
                pmt_bytes(c->live_bytes), pmt_count(c->live_blocks), pmt_percent(c->utilization));
        fprintf(out, "<text class=\"tick\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%" PRIu64
                     "</text>\n",
                x + bar / 2, CHART_H - PAD_B + 16, c->block_size);
    }
    fprintf(out, "<text class=\"axis-label\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">block size "
                 "of the class (bytes)</text>\n</svg>\n",
            PAD_L + (CHART_W - PAD_L - PAD_R) / 2, CHART_H - 6);
    fprintf(out, "<p class=\"legend\"><span style=\"color:%s\">&#9632;</span> pool bytes "
                 "<span style=\"color:%s\">&#9632;</span> live bytes: the gap between them is "
                 "room the class holds but does not use</p>\n",
            COLOR_POOL_BAR, COLOR_LIVE);
}

static void html_occupancy_chart(FILE *out, const pmt_analysis_t *a)
{
    const uint64_t *o = a->at->s.arena_occupancy;
    uint64_t max = 0;
    for (int i = 0; i < PM_OCCUPANCY_BUCKETS; i++)
        if (o[i] > max)
            max = o[i];
    html_axis_t axis;
    axis.unit = 1;
    axis.name = "";
    axis.step = html_nice_step(max > 0 ? (double)max : 1.0, 5);
    if (axis.step < 1)
        axis.step = 1;
    axis.top = ceil((max > 0 ? (double)max : 1.0) / axis.step) * axis.step;
    fprintf(out,
            "<svg class=\"chart\" id=\"chart-occupancy\" xmlns=\"http://www.w3.org/2000/svg\" "
            "viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\" "
            "aria-label=\"arenas by occupancy\">\n",
            CHART_W, CHART_H, CHART_W, CHART_H);
    html_y_grid(out, &axis, 1);
    double slot = (double)(CHART_W - PAD_L - PAD_R) / PM_OCCUPANCY_BUCKETS;
    double base = html_y(0, axis.top);
    for (int i = 0; i < PM_OCCUPANCY_BUCKETS; i++) {
        double x = PAD_L + slot * i + slot * 0.1, y = html_y((double)o[i], axis.top);
        fprintf(out,
                "<rect class=\"bar occupancy\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                "height=\"%.1f\" fill=\"%s\"%s><title>%s arenas %d-%d%% used</title></rect>\n",
                x, y, slot * 0.8, base - y, i < PMT_SPARSE_BUCKETS ? "#c5b0d5" : COLOR_OCCUPANCY,
                "", pmt_count(o[i]), i * 10, i * 10 + 10);
        if (o[i] > 0)
            fprintf(out, "<text class=\"value\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s"
                         "</text>\n",
                    x + slot * 0.4, y - 4, pmt_count(o[i]));
        fprintf(out, "<text class=\"tick\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d-%d%%"
                     "</text>\n",
                x + slot * 0.4, CHART_H - PAD_B + 16, i * 10, i * 10 + 10);
    }
    fprintf(out, "<text class=\"axis-label\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">share of "
                 "the arena's pool bytes in live blocks</text>\n</svg>\n",
            PAD_L + (CHART_W - PAD_L - PAD_R) / 2, CHART_H - 6);
    fprintf(out, "<p class=\"legend\">Arenas on the left (lighter, under %d%% used) are mostly "
                 "empty: each stays mapped while any of its pools holds a live block.</p>\n",
            PMT_SPARSE_BUCKETS * 10);
}

/* ---- allocation sites ---------------------------------------------------------- */

enum { SITE_ROW_H = 28, SITE_LABEL_END = 332, SITE_PANEL_W = 240, SITE_GAP = 60,
       SITE_LABEL_CHARS = 48, SITE_FRAMES_SHOWN = 8 };

/* The label of a site's row: its naming frame, resolved if it could be;
 * long ones cut (whole in the tooltip). */
static void html_site_label(FILE *out, const pmt_analysis_t *a, const pmt_stack_t *stack)
{
    if (stack->depth == 0) {
        fputs("(no frame)", out);
        return;
    }
    const char *label = pmt_frame_label(a->symbols, stack->frame[pmt_site_label_frame(stack)]);
    size_t n = strlen(label);
    if (n <= SITE_LABEL_CHARS) {
        html_escape(out, label);
        return;
    }
    char cut[SITE_LABEL_CHARS + 1];
    size_t keep = SITE_LABEL_CHARS - 1;
    while (keep > 0 && ((unsigned char)label[keep] & 0xc0) == 0x80)
        keep--; /* not inside a UTF-8 character */
    memcpy(cut, label, keep);
    cut[keep] = '\0';
    html_escape(out, cut);
    fputs("&#8230;", out);
}

static void html_site_title(FILE *out, const pmt_analysis_t *a, const pmt_site_row_t *row)
{
    const pmt_site_t *s = row->site;
    fprintf(out, "<title>%s live (%s) in ~%s blocks; %s allocated (%s) in ~%s; %s samples",
            pmt_bytes(s->live_bytes), pmt_percent(row->live_share), pmt_count(s->live_count),
            pmt_bytes(s->alloc_bytes), pmt_percent(row->alloc_share), pmt_count(s->alloc_count),
            pmt_count(s->samples));
    for (size_t f = 0; f < s->stack->depth && f < SITE_FRAMES_SHOWN; f++) {
        fputc('\n', out);
        html_escape(out, s->stack->frame[f]);
        html_escape(out, pmt_frame_where(a->symbols, s->stack->frame[f]));
    }
    fputs("</title>", out);
}

/* One panel of the chart: a bar per row, on its own byte axis. */
static void html_site_panel(FILE *out, const pmt_analysis_t *a, int x0, int live)
{
    uint64_t max = 0;
    for (size_t i = 0; i < a->chart_rows; i++) {
        uint64_t v = live ? a->chart[i].site->live_bytes : a->chart[i].site->alloc_bytes;
        if (v > max)
            max = v;
    }
    html_axis_t axis = html_byte_axis(max);
    int top = PAD_T + 18, bottom = top + (int)a->chart_rows * SITE_ROW_H;
    fprintf(out, "<text class=\"axis-label\" x=\"%d\" y=\"%d\">%s</text>\n", x0, PAD_T + 6,
            live ? "live bytes" : "bytes allocated");
    for (int k = 0; k <= 20; k++) {
        double v = k * axis.step;
        if (v > axis.top * 1.0001)
            break;
        double x = x0 + v / axis.top * SITE_PANEL_W;
        fprintf(out,
                "<line class=\"grid\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>"
                "<text class=\"tick\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g %s</text>\n",
                x, top, x, bottom, x, bottom + 14, v / axis.unit, axis.name);
    }
    for (size_t i = 0; i < a->chart_rows; i++) {
        const pmt_site_row_t *row = &a->chart[i];
        uint64_t v = live ? row->site->live_bytes : row->site->alloc_bytes;
        double w = axis.top > 0 ? (double)v / axis.top * SITE_PANEL_W : 0;
        double y = top + (double)i * SITE_ROW_H + 5;
        fprintf(out,
                "<rect class=\"bar site-%s\" x=\"%d\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" "
                "fill=\"%s\">",
                live ? "live" : "alloc", x0, y, w, SITE_ROW_H - 10,
                live ? COLOR_SITE_LIVE : COLOR_SITE_ALLOC);
        html_site_title(out, a, row);
        fputs("</rect>\n", out);
        /* The figure after a short bar, inside a long one. */
        int inside = w > SITE_PANEL_W / 2;
        fprintf(out, "<text class=\"value\" x=\"%.1f\" y=\"%.1f\"%s>%s (%s)</text>\n",
                inside ? x0 + w - 4 : x0 + w + 4, y + SITE_ROW_H - 14,
                inside ? " text-anchor=\"end\" style=\"fill:#fff\"" : "", pmt_bytes(v),
                pmt_percent(live ? row->live_share : row->alloc_share));
    }
    fprintf(out, "<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>\n", x0, top, x0,
            bottom);
}

static void html_sites_chart(FILE *out, const pmt_analysis_t *a)
{
    if (a->chart_rows == 0) {
        fputs("<p class=\"empty\">Nothing sampled at this snapshot.</p>\n", out);
        return;
    }
    int height = PAD_T + 18 + (int)a->chart_rows * SITE_ROW_H + 30;
    fprintf(out,
            "<svg class=\"chart\" id=\"chart-sites\" xmlns=\"http://www.w3.org/2000/svg\" "
            "viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\" "
            "aria-label=\"top allocation sites by live and allocated bytes\">\n",
            CHART_W, height, CHART_W, height);
    for (size_t i = 0; i < a->chart_rows; i++) {
        double y = PAD_T + 18 + (double)i * SITE_ROW_H + SITE_ROW_H - 9;
        fprintf(out, "<text class=\"site-label\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">",
                SITE_LABEL_END, y);
        html_site_label(out, a, a->chart[i].site->stack);
        html_site_title(out, a, &a->chart[i]);
        fputs("</text>\n", out);
    }
    html_site_panel(out, a, SITE_LABEL_END + 12, 1);
    html_site_panel(out, a, SITE_LABEL_END + 12 + SITE_PANEL_W + SITE_GAP, 0);
    fputs("</svg>\n", out);
    fprintf(out, "<p class=\"legend\"><span style=\"color:%s\">&#9632;</span> live bytes "
                 "<span style=\"color:%s\">&#9632;</span> bytes allocated, each with its share "
                 "of all sampled bytes; a site is named by the code that called malloc "
                 "(hover for its stack)</p>\n",
            COLOR_SITE_LIVE, COLOR_SITE_ALLOC);
}

static void html_frames(FILE *out, const pmt_analysis_t *a, const pmt_stack_t *stack)
{
    fputs("<ol class=\"frames\">", out);
    for (size_t f = 0; f < stack->depth && f < SITE_FRAMES_SHOWN; f++) {
        fputs("<li><code>", out);
        html_escape(out, stack->frame[f]);
        fputs("</code>", out);
        const char *where = pmt_frame_where(a->symbols, stack->frame[f]);
        if (where[0]) {
            fputs("<span class=\"where\">", out);
            html_escape(out, where);
            fputs("</span>", out);
        }
        const pmt_resolved_t *r = pmt_symbols_find(a->symbols, stack->frame[f]);
        for (size_t i = 1; r != NULL && i < r->locs; i++) {
            char line[16] = "";
            if (r->loc[i].line > 0)
                snprintf(line, sizeof line, ":%u", r->loc[i].line);
            fputs("<br><span class=\"where\">&#8195;inlined into ", out);
            html_escape(out, r->loc[i].function ? r->loc[i].function : "??");
            if (r->loc[i].file != NULL) {
                fputs(" at ", out);
                html_escape(out, r->loc[i].file);
                fputs(line, out);
            }
            fputs("</span>", out);
        }
        fputs("</li>", out);
    }
    if (stack->depth > SITE_FRAMES_SHOWN)
        fprintf(out, "<li class=\"more\">%zu more frames</li>", stack->depth - SITE_FRAMES_SHOWN);
    fputs("</ol>", out);
}

static void html_site_table(FILE *out, const pmt_analysis_t *a, const pmt_site_table_t *t,
                            const char *id, const char *empty)
{
    if (t->rows == 0) {
        fprintf(out, "<p class=\"empty\">%s</p>\n", empty);
        return;
    }
    fprintf(out, "<table class=\"sites\" id=\"%s\"><thead><tr><th>#</th><th>live bytes</th>"
                 "<th>share</th><th>live blocks</th><th>allocated</th><th>share</th>"
                 "<th>blocks</th><th>samples</th><th class=\"stack\">stack (innermost first)</th>"
                 "</tr></thead><tbody>\n",
            id);
    for (size_t i = 0; i < t->rows; i++) {
        const pmt_site_row_t *row = &t->row[i];
        const pmt_site_t *s = row->site;
        fprintf(out,
                "<tr><td>%zu</td><td>%s</td><td>%s</td><td>~%s</td><td>%s</td><td>%s</td>"
                "<td>~%s</td><td>%s</td><td class=\"stack\">",
                i + 1, pmt_bytes(s->live_bytes), pmt_percent(row->live_share),
                pmt_count(s->live_count), pmt_bytes(s->alloc_bytes),
                pmt_percent(row->alloc_share), pmt_count(s->alloc_count), pmt_count(s->samples));
        html_frames(out, a, s->stack);
        fputs("</td></tr>\n", out);
    }
    fputs("</tbody></table>\n", out);
}

static void html_totals(FILE *out, const pmt_profile_totals_t *t)
{
    fprintf(out, "Shares are of all sampled bytes: %s%s live, %s%s allocated.",
            t->live_estimated ? "~" : "", pmt_bytes(t->live), t->alloc_estimated ? "~" : "",
            pmt_bytes(t->alloc));
}

static void html_sites(FILE *out, const pmt_analysis_t *a)
{
    fputs("<h2>Allocation sites</h2>\n", out);
    if (!a->profiled) {
        fputs("<p class=\"empty\">Not profiled: <code>POOLMALLOC_PROFILE=1</code> (or "
              "<code>poolmalloc run --profile</code>) samples where memory is allocated.</p>\n",
              out);
        return;
    }
    const pmt_profile_t *p = a->profile;
    if (p == NULL) {
        fprintf(out, "<p class=\"empty\">Snapshot %" PRId64 " has no profile.</p>\n", a->at->seq);
    } else {
        fprintf(out, "<p class=\"meta\">Snapshot %" PRId64 ": %s samples, one per %s allocated "
                     "on average; %s distinct stacks",
                a->at->seq, pmt_count(p->samples), pmt_bytes(p->rate_bytes), pmt_count(p->sites));
        if (p->dropped > 0)
            fprintf(out, "; <strong>%s samples dropped</strong> (tables full): the figures are "
                         "low",
                    pmt_count(p->dropped));
        fputs(". Bytes and blocks are estimates from the samples. ", out);
        html_totals(out, &a->totals);
        fputs("</p>\n", out);
        html_sites_chart(out, a);
        fputs("<h3>Top sites by live bytes</h3>\n", out);
        html_site_table(out, a, &a->by_live, "sites-live", "No sampled block is live.");
        fputs("<h3>Top sites by bytes allocated</h3>\n", out);
        html_site_table(out, a, &a->by_alloc, "sites-allocated", "Nothing sampled yet.");
    }
    fputs("<h2>Leak report</h2>\n", out);
    if (a->leak_at == NULL) {
        fprintf(out, "<p class=\"empty\">%s</p>\n",
                a->ended ? "The exit snapshot has no profile."
                         : "No exit snapshot: the program was killed, or is still running.");
    } else {
        fputs("<p class=\"meta\">Sites whose sampled blocks were still live at exit. ", out);
        html_totals(out, &a->leak_totals);
        fputs("</p>\n", out);
        html_site_table(out, a, &a->leaks, "sites-leaks",
                        a->leak_at->profile->samples == 0 ? "Nothing was sampled."
                                                          : "None: every sampled block was freed.");
    }
    const char *notes = pmt_symbols_notes(a->symbols);
    if (a->symbols != NULL && notes[0]) {
        fputs("<p class=\"legend\">file:line: ", out);
        html_escape(out, notes);
        fputs("</p>\n", out);
    }
}

/* ---- text parts ------------------------------------------------------------ */

static void html_figure(FILE *out, const char *label, const char *value, const char *note)
{
    fputs("<div class=\"figure\"><div class=\"label\">", out);
    html_escape(out, label);
    fputs("</div><div class=\"value\">", out);
    html_escape(out, value);
    fputs("</div><div class=\"note\">", out);
    html_escape(out, note);
    fputs("</div></div>\n", out);
}

static void html_problems(FILE *out, const pmt_file_t *file)
{
    if (file->problems == 0)
        return;
    fprintf(out, "<div class=\"problems\"><strong>%zu line%s of the file could not be read; the "
                 "report shows the rest.</strong><ul>\n",
            file->problems, file->problems == 1 ? "" : "s");
    for (size_t i = 0; i < file->kept; i++) {
        fputs("<li><code>", out);
        html_escape(out, file->path);
        if (file->problem[i].line)
            fprintf(out, ":%zu", file->problem[i].line);
        fputs("</code> ", out);
        html_escape(out, file->problem[i].message);
        if (file->problem[i].repeats)
            fprintf(out, " (the same on the next %zu lines)", file->problem[i].repeats);
        fputs("</li>\n", out);
    }
    if (file->problems > file->kept)
        fprintf(out, "<li>and %zu more</li>\n", file->problems - file->kept);
    fputs("</ul></div>\n", out);
}

#define HTML_HEAD(name, kind, label) fprintf(out, "<th>%s</th>", label);
#define HTML_VALUE_COUNT(v) pmt_count(v)
#define HTML_VALUE_BYTES(v) pmt_bytes(v)
#define HTML_VALUE_RATIO(v) pmt_percent(v)
#define HTML_CELL(name, kind, label) fprintf(out, "<td>%s</td>", HTML_VALUE_##kind(c->name));

static void html_class_table(FILE *out, const pmt_analysis_t *a)
{
    fputs("<table class=\"classes\"><thead><tr><th>class</th>", out);
    PM_CLASS_STATS(HTML_HEAD)
    fputs("</tr></thead><tbody>\n", out);
    for (int i = 0; i < PM_CLASS_COUNT; i++) {
        const pm_class_stats_t *c = &a->at->s.classes[i];
        if (c->allocated_total == 0 && c->pools == 0 && c->pool_bytes == 0)
            continue;
        fprintf(out, "<tr><td>%d</td>", i);
        PM_CLASS_STATS(HTML_CELL)
        fputs("</tr>\n", out);
    }
    fputs("</tbody></table>\n", out);
}

static void html_diagnosis(FILE *out, const pmt_analysis_t *a)
{
    static const char *const severity[] = {"low", "some", "high"};
    fprintf(out, "<div class=\"verdict severity-%s\">", severity[a->severity]);
    html_escape(out, a->verdict);
    fputs("</div>\n<table class=\"held\"><tbody>\n", out);
    fprintf(out, "<tr><th>free room in pools in use</th><td>%s</td></tr>\n",
            pmt_bytes(a->free_in_pools));
    fprintf(out, "<tr><th>&#8195;of which in empty pools</th><td>%s</td></tr>\n",
            pmt_bytes(a->empty_pool_bytes));
    fprintf(out, "<tr><th>&#8195;of which freed by other threads, awaiting their thread</th>"
                 "<td>%s</td></tr>\n",
            pmt_bytes(a->waiting_bytes));
    fprintf(out, "<tr><th>pages of pools in use given back (malloc_trim)</th><td>%s</td></tr>\n",
            pmt_bytes(a->trimmed_bytes));
    fprintf(out, "<tr><th>unused pools kept resident</th><td>%s</td></tr>\n",
            pmt_bytes(a->retained_bytes));
    fprintf(out, "<tr><th>unused pools given back (mapped, not resident)</th><td>%s</td></tr>\n",
            pmt_bytes(a->purged_bytes));
    fprintf(out, "<tr><th>arenas under %d%% used</th><td>%s (%s arenas)</td></tr>\n",
            PMT_SPARSE_BUCKETS * 10, pmt_bytes(a->sparse_bytes), pmt_count(a->sparse_arenas));
    fprintf(out, "<tr><th>RSS outside pools</th><td>%s</td></tr>\n", pmt_bytes(a->outside_bytes));
    fprintf(out, "<tr><th>&#8195;of which poolmalloc's metadata (arena headers, heaps, parcels)</th>"
                 "<td>%s</td></tr>\n",
            pmt_bytes(a->metadata_bytes));
    fputs("</tbody></table>\n", out);
    if (a->pins > 0) {
        fputs("<h3>Size classes holding the most room</h3>\n<table class=\"pins\"><thead><tr>"
              "<th>block</th><th>held</th><th>live bytes</th><th>pool bytes</th><th>pools</th>"
              "<th>partly used pools</th><th>used</th></tr></thead><tbody>\n",
              out);
        for (size_t i = 0; i < a->pins && i < 8; i++) {
            const pmt_pin_t *p = &a->pin[i];
            fprintf(out,
                    "<tr><td>%" PRIu64 " B</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>"
                    "<td>%s</td><td>%s</td></tr>\n",
                    p->block_size, pmt_bytes(p->held_bytes), pmt_bytes(p->live_bytes),
                    pmt_bytes(p->pool_bytes), pmt_count(p->pools), pmt_count(p->partial_pools),
                    pmt_percent(p->fill));
        }
        fputs("</tbody></table>\n", out);
    }
    fputs("<ul class=\"advice\">\n", out);
    for (size_t i = 0; i < a->advices; i++) {
        fputs("<li>", out);
        html_escape(out, a->advice[i]);
        fputs("</li>\n", out);
    }
    fputs("</ul>\n", out);
}

static const char html_style[] =
    "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#222;"
    "margin:24px auto;max-width:1000px;padding:0 16px;background:#fff}"
    "h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 8px;"
    "border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:16px}"
    ".meta{color:#555;margin:0 0 12px}"
    ".figures{display:flex;flex-wrap:wrap;gap:10px}"
    ".figure{border:1px solid #ddd;border-radius:6px;padding:8px 12px;flex:1 1 120px}"
    ".figure .label{color:#555;font-size:13px}.figure .value{font-size:22px;font-weight:600}"
    ".figure .note{color:#777;font-size:12px}"
    ".problems{background:#fff4e5;border:1px solid #f0b45a;border-radius:6px;padding:8px 12px;margin:0 0 12px}"
    /* Not the charts' colours, so the screenshot test counts chart pixels only. */
    ".verdict{border-left:5px solid #27ae60;padding:6px 12px;background:#f3faf3}"
    ".verdict.severity-some{border-color:#e67e22;background:#fff6ec}"
    ".verdict.severity-high{border-color:#b03a2e;background:#fdeeee}"
    "table{border-collapse:collapse;margin:8px 0}th,td{padding:3px 8px;text-align:right;"
    "border-bottom:1px solid #eee;font-variant-numeric:tabular-nums}"
    "table.held th{text-align:left;font-weight:normal}"
    "thead th{border-bottom:2px solid #ccc;font-size:13px}"
    "svg.chart{display:block;max-width:100%;height:auto;background:#fcfcfc;"
    "border:1px solid #eee}"
    "svg .grid{stroke:#e4e4e4;stroke-width:1}svg .axis,svg .tickmark{stroke:#888;stroke-width:1}"
    "svg text{font:12px system-ui,sans-serif;fill:#444}svg .axis-label{fill:#666}"
    "svg .value{font-weight:600}svg .site-label{font:11px ui-monospace,monospace}"
    "table.sites td{vertical-align:top}table.sites .stack{text-align:left}"
    "ol.frames{margin:0;padding-left:18px;font-size:13px}ol.frames .where{color:#555}"
    ".legend{color:#444;font-size:13px;margin:4px 0 0}.legend span{font-size:16px}"
    "footer{color:#888;font-size:12px;margin-top:32px}";

int pmt_report_html(const pmt_series_t *series, const pmt_analysis_t *a, FILE *out)
{
    const pmt_snapshot_t *at = a->at;
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
          "style-src 'unsafe-inline'\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>"
          "poolmalloc report: ",
          out);
    html_escape(out, series->file->path);
    fprintf(out, " (pid %" PRId64 ")</title>\n<style>%s</style>\n</head>\n<body>\n", series->pid,
            html_style);
    fputs("<h1>poolmalloc report</h1>\n<p class=\"meta\"><code>", out);
    html_escape(out, series->file->path);
    fprintf(out, "</code>, pid %" PRId64 ", poolmalloc ", series->pid);
    html_escape(out, at->version);
    fprintf(out, "; %zu snapshot%s over %s; ", a->snapshots, a->snapshots == 1 ? "" : "s",
            pmt_duration(a->duration_ms));
    if (a->ended)
        fputs("the program ended normally", out);
    else
        fprintf(out, "<strong>no exit snapshot</strong>: %s", pmt_no_exit_reason(series));
    fprintf(out, ". Tables show snapshot %" PRId64 " (", at->seq);
    html_escape(out, at->reason);
    fprintf(out, ", at %s).", pmt_duration(at->uptime_ms));
    if (series->runs > 1)
        fprintf(out, " The file holds %zu process runs; this is %s (another with <code>--pid</code>).",
                series->runs,
                series->busiest ? "the one that allocated the most blocks" : "the one asked for");
    if (series->pid_runs > 1)
        fprintf(out,
                " Pid %" PRId64 " ran %zu programs, one exec'ing the next: this is program %zu "
                "(<code>--pid %" PRId64 ":N</code> shows program N).",
                series->pid, series->pid_runs, series->pid_run, series->pid);
    fputs("</p>\n", out);
    html_problems(out, series->file);

    fputs("<div class=\"figures\">\n", out);
    html_figure(out, "peak RSS", pmt_bytes(a->rss_peak), "whole process");
    html_figure(out, "final RSS", pmt_bytes(a->rss_final), a->ended ? "at exit" : "last snapshot");
    char note[96];
    if (a->snapshots > 1)
        snprintf(note, sizeof note, "peak %s", pmt_bytes(a->live_peak));
    else
        snprintf(note, sizeof note, "one snapshot, so no peak");
    html_figure(out, "live bytes", pmt_bytes(a->live), note);
    snprintf(note, sizeof note, "%s pools", pmt_count(at->s.small_pool_bytes / PMT_POOL_BYTES));
    html_figure(out, "bytes in pools", pmt_bytes(a->pool_bytes), note);
    snprintf(note, sizeof note, "%s arenas, %s at peak", pmt_count(at->s.arenas_mapped),
             pmt_count(at->s.arenas_peak));
    html_figure(out, "bytes in arenas", pmt_bytes(a->arena_bytes), note);
    html_figure(out, "pool fragmentation", pmt_percent(a->fragmentation), "room not in live blocks");
    fputs("</div>\n", out);

    fputs("<h2>Retained memory</h2>\n", out);
    html_diagnosis(out, a);
    fputs("<h2>Memory over time</h2>\n", out);
    html_timeline(out, series);
    fputs("<h2>Size classes</h2>\n", out);
    html_classes_chart(out, a);
    html_class_table(out, a);
    fputs("<h2>Arenas by occupancy</h2>\n", out);
    html_occupancy_chart(out, a);
    html_sites(out, a);
    fputs("<footer>Written by <code>poolmalloc report --html</code> from ", out);
    html_escape(out, series->file->path);
    fputs(". Self-contained: no script, no network.</footer>\n</body>\n</html>\n", out);
    return ferror(out) ? (errno ? -1 : (errno = EIO, -1)) : 0;
}
