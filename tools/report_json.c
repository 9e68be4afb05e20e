/* report_json.c — owns `report --json` and `diff --json`: the figures of
 * analysis.c as one JSON document (built with jansson, so it is always
 * valid JSON). Field names follow the stats schema (docs/stats-schema.md)
 * and the PM_STATS tables, with units in their names.
 * Never computes a figure of its own. */
#include "pmtool.h"

#include <jansson.h>

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
    json_set(o, "retained_pool_bytes", json_u64(a->retained_bytes));
    json_set(o, "purged_pool_bytes", json_u64(a->purged_bytes));
    json_set(o, "sparse_arenas", json_u64(a->sparse_arenas));
    json_set(o, "sparse_arena_bytes", json_u64(a->sparse_bytes));
    json_set(o, "sparse_threshold", json_real(PMT_SPARSE_BUCKETS / 10.0));
    json_set(o, "rss_outside_pools_bytes", json_u64(a->outside_bytes));
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
    pmt_json_dump(o, out);
}
