/* report_json.c — owns `report --json` and `diff --json`: the figures of
 * analysis.c (and the frames symbols.c resolved) as one JSON document (built with jansson, so it is always
 * valid JSON). Field names follow the stats schema (docs/stats-schema.md)
 * and the PM_STATS tables, with units in their names.
 * Never computes a figure of its own. */
#include "pmtool.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* jansson integers are signed 64-bit: a saturated figure is clamped. */
static json_t *json_u64(uint64_t v)
{
    return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static void json_set(json_t *object, const char *key, json_t *value)
{
    json_object_set_new(object, key, value);
}

#define JSON_KIND_COUNT(v) json_u64(v)
#define JSON_KIND_BYTES(v) json_u64(v)
#define JSON_KIND_RATIO(v) json_real(v)
#define JSON_STATS_FIELD(name, kind, label) json_set(o, #name, JSON_KIND_##kind(s->name));
#define JSON_CLASS_FIELD(name, kind, label) json_set(o, #name, JSON_KIND_##kind(c->name));

json_t *pmt_json_stats(const pm_stats_t *s)
{
    json_t *o = json_object();
    PM_STATS(JSON_STATS_FIELD)
    json_t *occupancy = json_array();
    for (int i = 0; i < PM_OCCUPANCY_BUCKETS; i++)
        json_array_append_new(occupancy, json_u64(s->arena_occupancy[i]));
    json_set(o, "arena_occupancy", occupancy);
    return o;
}

json_t *pmt_json_class(int index, const pm_class_stats_t *c)
{
    json_t *o = json_object();
    json_set(o, "class", json_integer(index));
    PM_CLASS_STATS(JSON_CLASS_FIELD)
    return o;
}

json_t *pmt_json_problems(const pmt_file_t *file)
{
    json_t *list = json_array();
    for (size_t i = 0; i < file->kept; i++) {
        const pmt_problem_t *p = &file->problem[i];
        json_array_append_new(list, json_pack("{s:s, s:I, s:i, s:I, s:s}", "file", file->path,
                                              "line", (json_int_t)p->line, "column", p->column,
                                              "repeats", (json_int_t)p->repeats, "message",
                                              p->message));
    }
    return list;
}

json_t *pmt_json_snapshot_id(const pmt_snapshot_t *s)
{
    return json_pack("{s:I, s:s, s:I, s:I, s:s, s:I}", "seq", (json_int_t)s->seq, "reason",
                     s->reason, "uptime_ms", (json_int_t)s->uptime_ms, "time_ms",
                     (json_int_t)s->time_ms, "version", s->version, "line", (json_int_t)s->line);
}

static json_t *json_summary(const pmt_analysis_t *a)
{
    json_t *o = json_object();
    json_set(o, "snapshots", json_u64(a->snapshots));
    json_set(o, "reasons", json_pack("{s:I, s:I, s:I, s:I, s:I}", "interval",
                                     (json_int_t)a->reasons[0], "signal", (json_int_t)a->reasons[1],
                                     "api", (json_int_t)a->reasons[2], "exit",
                                     (json_int_t)a->reasons[3], "other", (json_int_t)a->reasons[4]));
    json_set(o, "ended", json_boolean(a->ended));
    json_set(o, "duration_ms", json_integer(a->duration_ms));
    json_set(o, "rss_peak_bytes", json_u64(a->rss_peak));
    json_set(o, "rss_final_bytes", json_u64(a->rss_final));
    json_set(o, "live_peak_bytes", json_u64(a->live_peak));
    json_set(o, "live_peak_ms", json_integer(a->live_peak_ms));
    json_set(o, "live_final_bytes", json_u64(a->live_final));
    json_set(o, "rss_bytes", json_u64(a->rss));
    json_set(o, "live_bytes", json_u64(a->live));
    json_set(o, "small_live_bytes", json_u64(a->small_live));
    json_set(o, "system_live_bytes", json_u64(a->system_live));
    json_set(o, "pool_bytes", json_u64(a->pool_bytes));
    json_set(o, "arena_bytes", json_u64(a->arena_bytes));
    json_set(o, "fragmentation", json_real(a->fragmentation));
    return o;
}

static json_t *json_diagnosis(const pmt_analysis_t *a)
{
    json_t *o = json_object();
    static const char *const severity[] = {"low", "some", "high"};
    json_set(o, "severity", json_string(severity[a->severity]));
    json_set(o, "verdict", json_string(a->verdict));
    json_set(o, "held_bytes", json_u64(a->held_bytes));
    json_set(o, "free_in_pools_bytes", json_u64(a->free_in_pools));
    json_set(o, "empty_pool_bytes", json_u64(a->empty_pool_bytes));
    json_set(o, "waiting_bytes", json_u64(a->waiting_bytes));
    json_set(o, "trimmed_pool_bytes", json_u64(a->trimmed_bytes));
    json_set(o, "retained_pool_bytes", json_u64(a->retained_bytes));
    json_set(o, "purged_pool_bytes", json_u64(a->purged_bytes));
    json_set(o, "sparse_arenas", json_u64(a->sparse_arenas));
    json_set(o, "sparse_arena_bytes", json_u64(a->sparse_bytes));
    json_set(o, "sparse_threshold", json_real(PMT_SPARSE_BUCKETS / 10.0));
    json_set(o, "rss_outside_pools_bytes", json_u64(a->outside_bytes));
    json_set(o, "metadata_bytes", json_u64(a->metadata_bytes));
    json_t *pins = json_array();
    for (size_t i = 0; i < a->pins; i++) {
        const pmt_pin_t *p = &a->pin[i];
        json_t *pin = json_object();
        json_set(pin, "class", json_integer(p->cls));
        json_set(pin, "block_size", json_u64(p->block_size));
        json_set(pin, "held_bytes", json_u64(p->held_bytes));
        json_set(pin, "live_blocks", json_u64(p->live_blocks));
        json_set(pin, "live_bytes", json_u64(p->live_bytes));
        json_set(pin, "pool_bytes", json_u64(p->pool_bytes));
        json_set(pin, "pools", json_u64(p->pools));
        json_set(pin, "partial_pools", json_u64(p->partial_pools));
        json_set(pin, "utilization", json_real(p->fill));
        json_array_append_new(pins, pin);
    }
    json_set(o, "classes", pins);
    json_t *advice = json_array();
    for (size_t i = 0; i < a->advices; i++)
        json_array_append_new(advice, json_string(a->advice[i]));
    json_set(o, "advice", advice);
    return o;
}

/* Text from outside the stats file (addr2line, file names) may not be
 * UTF-8: then its bytes above 0x7f become '?'. NULL gives null. */
static json_t *json_string_or_null(const char *s)
{
    if (s == NULL)
        return json_null();
    json_t *v = json_string(s);
    if (v != NULL)
        return v;
    char *copy = strdup(s);
    if (copy == NULL)
        pmt_out_of_memory();
    for (char *c = copy; *c; c++)
        if ((unsigned char)*c >= 0x80)
            *c = '?';
    v = json_string(copy);
    free(copy);
    return v != NULL ? v : json_null();
}

static json_t *json_location(const pmt_location_t *l)
{
    json_t *o = json_object();
    json_set(o, "function", json_string_or_null(l->function));
    json_set(o, "file", json_string_or_null(l->file));
    json_set(o, "line", l->line > 0 ? json_integer(l->line) : json_null());
    return o;
}

/* A frame as recorded, and where it is when resolved: function, file,
 * line (null when unknown), the module file it was found in, and the
 * functions it is inlined into. */
static json_t *json_frame(const pmt_analysis_t *a, const pmt_stack_t *stack, size_t i)
{
    json_t *o = json_object();
    char address[24];
    snprintf(address, sizeof address, "0x%" PRIx64, stack->address[i]);
    json_set(o, "frame", json_string(stack->frame[i]));
    json_set(o, "address", json_string(address));
    const pmt_resolved_t *r = pmt_symbols_find(a->symbols, stack->frame[i]);
    pmt_location_t none = {0};
    const pmt_location_t *l = r != NULL ? &r->loc[0] : &none;
    json_set(o, "function", json_string_or_null(l->function));
    json_set(o, "file", json_string_or_null(l->file));
    json_set(o, "line", l->line > 0 ? json_integer(l->line) : json_null());
    json_set(o, "module_path", json_string_or_null(r != NULL ? r->module_path : NULL));
    json_t *inlined = json_array();
    for (size_t k = 1; r != NULL && k < r->locs; k++)
        json_array_append_new(inlined, json_location(&r->loc[k]));
    json_set(o, "inlined_into", inlined);
    return o;
}

static json_t *json_sites(const pmt_analysis_t *a, const pmt_site_table_t *table)
{
    json_t *list = json_array();
    for (size_t i = 0; i < table->rows; i++) {
        const pmt_site_row_t *row = &table->row[i];
        const pmt_site_t *s = row->site;
        json_t *o = json_object();
        json_set(o, "live_bytes", json_u64(s->live_bytes));
        json_set(o, "live_count", json_u64(s->live_count));
        json_set(o, "alloc_bytes", json_u64(s->alloc_bytes));
        json_set(o, "alloc_count", json_u64(s->alloc_count));
        json_set(o, "samples", json_u64(s->samples));
        json_set(o, "live_share", json_real(row->live_share));
        json_set(o, "alloc_share", json_real(row->alloc_share));
        json_set(o, "label", s->stack->depth > 0
                                 ? json_string_or_null(pmt_frame_label(
                                       a->symbols, s->stack->frame[pmt_site_label_frame(s->stack)]))
                                 : json_null());
        json_t *frames = json_array();
        for (size_t f = 0; f < s->stack->depth; f++)
            json_array_append_new(frames, json_frame(a, s->stack, f));
        json_set(o, "frames", frames);
        json_array_append_new(list, o);
    }
    return list;
}

static json_t *json_totals(const pmt_profile_totals_t *t)
{
    return json_pack("{s:o, s:b, s:o, s:b}", "live_bytes", json_u64(t->live), "live_estimated",
                     t->live_estimated, "alloc_bytes", json_u64(t->alloc), "alloc_estimated",
                     t->alloc_estimated);
}

/* null without profiling; else the chosen snapshot's sites (null parts
 * when that snapshot has no profile) and the exit snapshot's leaks. */
static json_t *json_profile(const pmt_analysis_t *a)
{
    if (!a->profiled)
        return json_null();
    json_t *o = json_object();
    const pmt_profile_t *p = a->profile;
    json_set(o, "snapshot", p ? pmt_json_snapshot_id(a->at) : json_null());
    json_set(o, "rate_bytes", p ? json_u64(p->rate_bytes) : json_null());
    json_set(o, "samples", p ? json_u64(p->samples) : json_null());
    json_set(o, "dropped", p ? json_u64(p->dropped) : json_null());
    json_set(o, "sites", p ? json_u64(p->sites) : json_null());
    json_set(o, "totals", p ? json_totals(&a->totals) : json_null());
    json_set(o, "top_live", json_sites(a, &a->by_live));
    json_set(o, "top_allocated", json_sites(a, &a->by_alloc));
    if (a->leak_at != NULL)
        json_set(o, "leaks", json_pack("{s:o, s:o, s:o}", "snapshot",
                                       pmt_json_snapshot_id(a->leak_at), "totals",
                                       json_totals(&a->leak_totals), "sites",
                                       json_sites(a, &a->leaks)));
    else
        json_set(o, "leaks", json_null());
    json_set(o, "resolution",
             json_pack("{s:b, s:o}", "enabled", a->symbols != NULL, "notes",
                       json_string_or_null(pmt_symbols_notes(a->symbols))));
    return o;
}

static json_t *json_timeline(const pmt_series_t *series)
{
    json_t *list = json_array();
    for (size_t i = 0; i < series->count; i++) {
        const pmt_snapshot_t *s = series->snap[i];
        json_t *point = json_object();
        json_set(point, "seq", json_integer(s->seq));
        json_set(point, "reason", json_string(s->reason));
        json_set(point, "uptime_ms", json_integer(s->uptime_ms));
        json_set(point, "rss_bytes", json_u64(s->s.rss_bytes));
        uint64_t live = s->s.small_live_bytes + s->s.system_live_bytes;
        json_set(point, "live_bytes", json_u64(live < s->s.small_live_bytes ? UINT64_MAX : live));
        json_set(point, "pool_bytes", json_u64(s->s.small_pool_bytes));
        json_set(point, "arena_bytes", json_u64(s->s.arena_bytes));
        json_array_append_new(list, point);
    }
    return list;
}

void pmt_json_dump(json_t *document, FILE *out)
{
    json_dumpf(document, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    fputc('\n', out);
    json_decref(document);
}

void pmt_report_json(const pmt_file_t *file, const pmt_series_t *series, const pmt_analysis_t *a,
                     FILE *out)
{
    json_t *o = json_object();
    json_set(o, "report", json_string("poolmalloc report"));
    json_set(o, "report_version", json_integer(1));
    json_set(o, "file", json_string(file->path));
    json_set(o, "lines", json_u64(file->lines));
    json_set(o, "problem_count", json_u64(file->problems));
    json_set(o, "problems", pmt_json_problems(file));
    if (series == NULL || a == NULL) {
        json_set(o, "pid", json_null());
        pmt_json_dump(o, out);
        return;
    }
    json_set(o, "pid", json_integer(series->pid));
    json_set(o, "process_runs", json_u64(series->runs));
    json_set(o, "pid_runs", json_u64(series->pid_runs));
    json_set(o, "pid_run", json_u64(series->pid_run));
    json_t *others = json_array();
    for (size_t i = 0; i < series->others; i++)
        json_array_append_new(others, json_integer(series->other_pid[i]));
    json_set(o, "other_pids", others);
    json_set(o, "snapshot", pmt_json_snapshot_id(a->at));
    json_set(o, "summary", json_summary(a));
    json_set(o, "stats", pmt_json_stats(&a->at->s));
    json_t *classes = json_array();
    for (int i = 0; i < PM_CLASS_COUNT; i++)
        json_array_append_new(classes, pmt_json_class(i, &a->at->s.classes[i]));
    json_set(o, "classes", classes);
    json_set(o, "timeline", json_timeline(series));
    json_set(o, "diagnosis", json_diagnosis(a));
    json_set(o, "profile", json_profile(a));
    pmt_json_dump(o, out);
}
