/* reader.c — owns turning a JSON Lines stats file into snapshots, and
 * choosing the process run and snapshot a report is about.
 * Never trusts its input: every line is parsed by jansson, every field is
 * checked for presence, type and sign before it is stored, a bad line
 * becomes a problem naming file:line and the next line is read. It never
 * stops early and never holds more than PMT_LINE_MAX bytes of one line.
 * The optional `profile` object is checked the same way, but a bad one
 * costs only itself: the problem is reported and the record is kept
 * without it. Its call stacks are kept once per file (pmt_stack_t). */
#include "pmtool.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void pmt_out_of_memory(void)
{
    pmt_error("out of memory");
    exit(PMT_EXIT_DATA);
}

void *pmt_xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size == 0 ? 1 : size);
    if (p == NULL)
        pmt_out_of_memory();
    return p;
}

static void reader_problem(pmt_file_t *file, size_t line, int column, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

static void reader_problem(pmt_file_t *file, size_t line, int column, const char *format, ...)
{
    char message[sizeof file->problem[0].message];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    file->problems++;
    /* A run of lines with the same trouble (a whole file of a newer
     * schema) is one problem with repeats. */
    if (file->kept > 0) {
        pmt_problem_t *last = &file->problem[file->kept - 1];
        if (line > 0 && last->line + last->repeats + 1 == line && column == 0 &&
            last->column == 0 && strcmp(last->message, message) == 0) {
            last->repeats++;
            return;
        }
    }
    if (file->kept >= PMT_PROBLEMS_KEPT)
        return;
    if (file->problem == NULL)
        file->problem = pmt_xrealloc(NULL, PMT_PROBLEMS_KEPT * sizeof *file->problem);
    pmt_problem_t *p = &file->problem[file->kept++];
    p->line = line;
    p->column = column;
    p->repeats = 0;
    memcpy(p->message, message, sizeof message);
}

/* ---- one line ------------------------------------------------------------ */

/* Reads up to the next newline. Returns 0 at end of file. *newline tells
 * whether the line was ended (a last line without one was cut short);
 * *length counts every byte, *buffer holds at most PMT_LINE_MAX of them. */
static int reader_line(FILE *in, char **buffer, size_t *capacity, size_t *length, int *newline)
{
    size_t n = 0;
    int c, any = 0;
    *newline = 0;
    while ((c = getc_unlocked(in)) != EOF) {
        any = 1;
        if (c == '\n') {
            *newline = 1;
            break;
        }
        if (n < PMT_LINE_MAX) {
            if (n + 1 >= *capacity) {
                *capacity = *capacity ? *capacity * 2 : 16384;
                *buffer = pmt_xrealloc(*buffer, *capacity);
            }
            (*buffer)[n] = (char)c;
        }
        n++;
    }
    if (any && *buffer == NULL)
        *buffer = pmt_xrealloc(NULL, *capacity = 16384);
    if (any)
        (*buffer)[n < PMT_LINE_MAX ? n : PMT_LINE_MAX] = '\0';
    *length = n;
    return any;
}

static const char *reader_type_name(const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a decimal";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "something else";
}

/* The state of one record being read: where it is, and the first thing
 * wrong with it (a record is kept whole or not at all). */
typedef struct reader_record {
    pmt_file_t *file;
    size_t line;
    const char *where; /* "" or "classes[3]: " */
    char where_buffer[32];
    int bad;
} reader_record_t;

static void reader_bad(reader_record_t *r, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void reader_bad(reader_record_t *r, const char *format, ...)
{
    if (r->bad++)
        return; /* one message per line: the first thing wrong */
    char text[200];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    reader_problem(r->file, r->line, 0, "%s%s; skipped", r->where, text);
}

/* Fields added to schema 1 after its first records: fields are only ever
 * added within a version (docs/stats-schema.md), so a record written
 * before one was may lack it, and reads as 0 there. */
static const char *const reader_added_fields[] = {
    "small_waiting_blocks", "small_waiting_bytes", "waiting_blocks", "small_trimmed_bytes",
    "trimmed_bytes", "metadata_bytes", "exchange_pools",
    "exchange_given_total", "exchange_taken_total", "system_cached_bytes",
    "system_caches_grown",
};

static bool reader_field_added(const char *name)
{
    for (size_t i = 0; i < sizeof reader_added_fields / sizeof *reader_added_fields; i++)
        if (strcmp(name, reader_added_fields[i]) == 0)
            return true;
    return false;
}

static void reader_uint(reader_record_t *r, const json_t *object, const char *name, uint64_t *out)
{
    const json_t *value = json_object_get(object, name);
    *out = 0;
    if (value == NULL && reader_field_added(name))
        return;
    if (value == NULL)
        reader_bad(r, "field '%s' is missing", name);
    else if (!json_is_integer(value))
        reader_bad(r, "field '%s' is %s, not an integer", name, reader_type_name(value));
    else if (json_integer_value(value) < 0)
        reader_bad(r, "field '%s' is negative (%" JSON_INTEGER_FORMAT ")", name,
                   json_integer_value(value));
    else
        *out = (uint64_t)json_integer_value(value);
}

static void reader_int(reader_record_t *r, const json_t *object, const char *name, int64_t *out)
{
    uint64_t value;
    reader_uint(r, object, name, &value);
    *out = (int64_t)value; /* json_int_t is long long: never above INT64_MAX */
}

static void reader_ratio(reader_record_t *r, const json_t *object, const char *name, double *out)
{
    const json_t *value = json_object_get(object, name);
    *out = 0;
    if (value == NULL)
        reader_bad(r, "field '%s' is missing", name);
    else if (!json_is_number(value))
        reader_bad(r, "field '%s' is %s, not a number", name, reader_type_name(value));
    else if (!(json_number_value(value) >= 0.0 && json_number_value(value) <= 1.0))
        reader_bad(r, "field '%s' is %g, not a ratio from 0 to 1", name,
                   json_number_value(value));
    else
        *out = json_number_value(value);
}

static void reader_string(reader_record_t *r, const json_t *object, const char *name, char *out,
                          size_t size)
{
    const json_t *value = json_object_get(object, name);
    out[0] = '\0';
    if (value == NULL)
        reader_bad(r, "field '%s' is missing", name);
    else if (!json_is_string(value))
        reader_bad(r, "field '%s' is %s, not a string", name, reader_type_name(value));
    else
        snprintf(out, size, "%s", json_string_value(value));
}

/* ---- the profile ----------------------------------------------------------- */

/* Every distinct stack of the file, once: an open-addressing set. */
typedef struct pmt_stack_table {
    pmt_stack_t **slot;
    size_t slots, count;
} reader_stacks_t;

static uint64_t reader_stack_hash(const pmt_stack_t *k)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < k->depth; i++) {
        for (const unsigned char *c = (const unsigned char *)k->frame[i]; *c; c++)
            h = (h ^ *c) * 0x100000001b3ull;
        h = (h ^ 0xff) * 0x100000001b3ull;
        h = (h ^ k->address[i]) * 0x100000001b3ull;
    }
    return h ^ k->depth;
}

static int reader_stack_equal(const pmt_stack_t *a, const pmt_stack_t *b)
{
    if (a->depth != b->depth)
        return 0;
    for (size_t i = 0; i < a->depth; i++)
        if (a->address[i] != b->address[i] || strcmp(a->frame[i], b->frame[i]) != 0)
            return 0;
    return 1;
}

static void reader_stack_free(pmt_stack_t *k)
{
    for (size_t i = 0; i < k->depth; i++)
        free(k->frame[i]);
    free(k->frame);
    free(k->address);
    free(k);
}

static size_t reader_stack_slot(const reader_stacks_t *t, const pmt_stack_t *k, uint64_t hash)
{
    size_t i = (size_t)(hash >> 7) & (t->slots - 1);
    while (t->slot[i] != NULL && !reader_stack_equal(t->slot[i], k))
        i = (i + 1) & (t->slots - 1);
    return i;
}

/* The file's copy of k (which is taken, or freed if the file has one). */
static const pmt_stack_t *reader_stack_intern(pmt_file_t *file, pmt_stack_t *k)
{
    reader_stacks_t *t = file->stacks;
    if (t == NULL) {
        t = file->stacks = pmt_xrealloc(NULL, sizeof *t);
        memset(t, 0, sizeof *t);
    }
    if (2 * (t->count + 1) > t->slots) {
        size_t slots = t->slots ? t->slots * 2 : 64;
        pmt_stack_t **old = t->slot;
        size_t old_slots = t->slots;
        t->slot = pmt_xrealloc(NULL, slots * sizeof *t->slot);
        memset(t->slot, 0, slots * sizeof *t->slot);
        t->slots = slots;
        for (size_t i = 0; i < old_slots; i++)
            if (old[i] != NULL)
                t->slot[reader_stack_slot(t, old[i], reader_stack_hash(old[i]))] = old[i];
        free(old);
    }
    size_t i = reader_stack_slot(t, k, reader_stack_hash(k));
    if (t->slot[i] != NULL) {
        reader_stack_free(k);
        return t->slot[i];
    }
    t->count++;
    return t->slot[i] = k;
}

static void reader_stacks_free(reader_stacks_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->slots; i++)
        if (t->slot[i] != NULL)
            reader_stack_free(t->slot[i]);
    free(t->slot);
    free(t);
}

static void reader_profile_free(pmt_profile_t *p)
{
    if (p == NULL)
        return;
    free(p->top_live.site);
    free(p->top_allocated.site);
    free(p->leaks.site);
    free(p);
}

/* The first thing wrong with a profile object, as "profile.top_live[2]:
 * ...". */
typedef struct reader_profile {
    pmt_file_t *file;
    char where[64];
    char why[232];
    int bad;
} reader_profile_t;

static void reader_profile_bad(reader_profile_t *p, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void reader_profile_bad(reader_profile_t *p, const char *format, ...)
{
    if (p->bad++)
        return;
    char text[160];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    snprintf(p->why, sizeof p->why, "%s%s", p->where, text);
}

static uint64_t reader_profile_count(reader_profile_t *p, const json_t *object, const char *name)
{
    const json_t *value = json_object_get(object, name);
    if (value == NULL)
        reader_profile_bad(p, "'%s' is missing", name);
    else if (!json_is_integer(value))
        reader_profile_bad(p, "'%s' is %s, not an integer", name, reader_type_name(value));
    else if (json_integer_value(value) < 0)
        reader_profile_bad(p, "'%s' is negative", name);
    else
        return (uint64_t)json_integer_value(value);
    return 0;
}

/* "0x" and 1 to 16 hex digits. */
static int reader_parse_address(const char *s, uint64_t *out)
{
    if (s[0] != '0' || (s[1] != 'x' && s[1] != 'X') || s[2] == '\0')
        return -1;
    uint64_t v = 0;
    size_t n = 0;
    for (s += 2; *s; s++, n++) {
        int d = *s >= '0' && *s <= '9'   ? *s - '0'
                : *s >= 'a' && *s <= 'f' ? *s - 'a' + 10
                : *s >= 'A' && *s <= 'F' ? *s - 'A' + 10
                                         : -1;
        if (d < 0 || n >= 16)
            return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

/* A frame's text, kept printable: control bytes become '?'. */
static char *reader_frame_text(const char *s)
{
    char *copy = strdup(s);
    if (copy == NULL)
        pmt_out_of_memory();
    for (char *c = copy; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    return copy;
}

static const pmt_stack_t *reader_site_stack(reader_profile_t *p, const json_t *item)
{
    const json_t *frames = json_object_get(item, "frames");
    const json_t *addresses = json_object_get(item, "addresses");
    if (frames == NULL) {
        reader_profile_bad(p, "'frames' is missing");
        return NULL;
    }
    if (!json_is_array(frames)) {
        reader_profile_bad(p, "'frames' is %s, not an array of strings", reader_type_name(frames));
        return NULL;
    }
    if (!json_is_array(addresses) || json_array_size(addresses) != json_array_size(frames)) {
        reader_profile_bad(p, "'addresses' is not an array of %zu addresses, one per frame",
                           json_array_size(frames));
        return NULL;
    }
    size_t depth = json_array_size(frames);
    for (size_t i = 0; i < depth; i++) {
        uint64_t ignored;
        const json_t *f = json_array_get(frames, i), *a = json_array_get(addresses, i);
        if (!json_is_string(f) || json_string_value(f)[0] == '\0') {
            reader_profile_bad(p, "'frames[%zu]' is %s, not a frame", i,
                               json_is_string(f) ? "empty" : reader_type_name(f));
            return NULL;
        }
        if (!json_is_string(a) || reader_parse_address(json_string_value(a), &ignored) != 0) {
            reader_profile_bad(p, "'addresses[%zu]' is not an address (\"0x\" and hex digits)", i);
            return NULL;
        }
    }
    pmt_stack_t *k = pmt_xrealloc(NULL, sizeof *k);
    k->depth = depth;
    k->frame = pmt_xrealloc(NULL, depth * sizeof *k->frame);
    k->address = pmt_xrealloc(NULL, depth * sizeof *k->address);
    for (size_t i = 0; i < depth; i++) {
        k->frame[i] = reader_frame_text(json_string_value(json_array_get(frames, i)));
        reader_parse_address(json_string_value(json_array_get(addresses, i)), &k->address[i]);
    }
    return reader_stack_intern(p->file, k);
}

static void reader_sites(reader_profile_t *p, const json_t *object, const char *name,
                         pmt_site_list_t *list)
{
    const json_t *array = json_object_get(object, name);
    if (!json_is_array(array)) {
        snprintf(p->where, sizeof p->where, "profile: ");
        if (array == NULL)
            reader_profile_bad(p, "'%s' is missing", name);
        else
            reader_profile_bad(p, "'%s' is %s, not an array of sites", name,
                               reader_type_name(array));
        return;
    }
    size_t n = json_array_size(array);
    list->site = pmt_xrealloc(NULL, (n ? n : 1) * sizeof *list->site);
    for (size_t i = 0; i < n && !p->bad; i++) {
        const json_t *item = json_array_get(array, i);
        snprintf(p->where, sizeof p->where, "profile.%s[%zu]: ", name, i);
        if (!json_is_object(item)) {
            reader_profile_bad(p, "%s, not a site (an object)", reader_type_name(item));
            break;
        }
        pmt_site_t *site = &list->site[i];
        site->live_bytes = reader_profile_count(p, item, "live_bytes");
        site->live_count = reader_profile_count(p, item, "live_count");
        site->alloc_bytes = reader_profile_count(p, item, "alloc_bytes");
        site->alloc_count = reader_profile_count(p, item, "alloc_count");
        site->samples = reader_profile_count(p, item, "samples");
        site->stack = p->bad ? NULL : reader_site_stack(p, item);
        if (!p->bad)
            list->count++;
    }
}

/* The record's profile, or NULL (reported) if anything in it is wrong. */
static pmt_profile_t *reader_profile(pmt_file_t *file, size_t line, const json_t *object)
{
    reader_profile_t p = {.file = file, .where = "profile: "};
    pmt_profile_t *profile = pmt_xrealloc(NULL, sizeof *profile);
    memset(profile, 0, sizeof *profile);
    if (!json_is_object(object)) {
        reader_profile_bad(&p, "%s, not an object", reader_type_name(object));
    } else {
        profile->rate_bytes = reader_profile_count(&p, object, "rate_bytes");
        profile->samples = reader_profile_count(&p, object, "samples");
        profile->dropped = reader_profile_count(&p, object, "dropped");
        profile->sites = reader_profile_count(&p, object, "sites");
        if (!p.bad)
            reader_sites(&p, object, "top_live", &profile->top_live);
        if (!p.bad)
            reader_sites(&p, object, "top_allocated", &profile->top_allocated);
        if (!p.bad)
            reader_sites(&p, object, "leaks", &profile->leaks);
    }
    if (!p.bad)
        return profile;
    reader_profile_free(profile);
    reader_problem(file, line, 0, "%s; the record is read without its profile", p.why);
    return NULL;
}

#define READER_COUNT(r, o, name, out) reader_uint(r, o, name, out)
#define READER_BYTES(r, o, name, out) reader_uint(r, o, name, out)
#define READER_RATIO(r, o, name, out) reader_ratio(r, o, name, out)
#define READER_STATS_FIELD(name, kind, label) READER_##kind(&r, object, #name, &snap->s.name);
#define READER_CLASS_FIELD(name, kind, label) READER_##kind(&r, item, #name, &c->name);

/* Fills snap from one parsed record; returns 0, or -1 after reporting the
 * line. */
static int reader_record(pmt_file_t *file, size_t line, const json_t *object,
                         pmt_snapshot_t *snap)
{
    reader_record_t r = {.file = file, .line = line, .where = ""};
    if (!json_is_object(object)) {
        reader_bad(&r, "%s, not a stats record (an object)", reader_type_name(object));
        return -1;
    }
    const json_t *schema = json_object_get(object, "schema");
    if (schema == NULL) {
        reader_bad(&r, "no 'schema' field: not a poolmalloc stats record");
        return -1;
    }
    if (!json_is_integer(schema) || json_integer_value(schema) < 1) {
        reader_bad(&r, "'schema' is not a schema version");
        return -1;
    }
    if (json_integer_value(schema) > PMT_SCHEMA) {
        const json_t *version = json_object_get(object, "version");
        reader_bad(&r,
                   "written by a newer poolmalloc%s%s (schema %" JSON_INTEGER_FORMAT
                   "; this tool reads schema %d): read it with the poolmalloc command of "
                   "that version",
                   json_is_string(version) ? " " : "",
                   json_is_string(version) ? json_string_value(version) : "",
                   json_integer_value(schema), PMT_SCHEMA);
        return -1;
    }
    char allocator[32];
    reader_string(&r, object, "allocator", allocator, sizeof allocator);
    if (!r.bad && strcmp(allocator, "poolmalloc") != 0)
        reader_bad(&r, "a record of allocator '%s', not poolmalloc", allocator);
    memset(snap, 0, sizeof *snap);
    snap->line = line;
    reader_string(&r, object, "version", snap->version, sizeof snap->version);
    reader_int(&r, object, "pid", &snap->pid);
    reader_int(&r, object, "seq", &snap->seq);
    reader_string(&r, object, "reason", snap->reason, sizeof snap->reason);
    reader_int(&r, object, "time_ms", &snap->time_ms);
    reader_int(&r, object, "uptime_ms", &snap->uptime_ms);
    PM_STATS(READER_STATS_FIELD)

    const json_t *occupancy = json_object_get(object, "arena_occupancy");
    if (!json_is_array(occupancy) || json_array_size(occupancy) != PM_OCCUPANCY_BUCKETS) {
        reader_bad(&r, "'arena_occupancy' is not an array of %d counts", PM_OCCUPANCY_BUCKETS);
    } else {
        for (size_t i = 0; i < PM_OCCUPANCY_BUCKETS; i++) {
            const json_t *v = json_array_get(occupancy, i);
            if (!json_is_integer(v) || json_integer_value(v) < 0)
                reader_bad(&r, "'arena_occupancy[%zu]' is not a count", i);
            else
                snap->s.arena_occupancy[i] = (uint64_t)json_integer_value(v);
        }
    }

    const json_t *classes = json_object_get(object, "classes");
    if (!json_is_array(classes) || json_array_size(classes) != PM_CLASS_COUNT) {
        reader_bad(&r, "'classes' is not an array of the %d size classes", PM_CLASS_COUNT);
    } else {
        for (size_t i = 0; i < PM_CLASS_COUNT && !r.bad; i++) {
            const json_t *item = json_array_get(classes, i);
            pm_class_stats_t *c = &snap->s.classes[i];
            snprintf(r.where_buffer, sizeof r.where_buffer, "classes[%zu]: ", i);
            r.where = r.where_buffer;
            if (!json_is_object(item)) {
                reader_bad(&r, "%s, not an object", reader_type_name(item));
                break;
            }
            int64_t index;
            reader_int(&r, item, "class", &index);
            if (!r.bad && index != (int64_t)i)
                reader_bad(&r, "'class' is %" PRId64 ", expected %zu", index, i);
            PM_CLASS_STATS(READER_CLASS_FIELD)
        }
    }
    if (r.bad)
        return -1;
    /* Last, so a record skipped for another reason leaves nothing behind. */
    const json_t *profile = json_object_get(object, "profile");
    if (profile != NULL)
        snap->profile = reader_profile(file, line, profile);
    return 0;
}

/* ---- the file ------------------------------------------------------------ */

static int reader_is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

static int reader_is_text_header(const char *s)
{
    return strncmp(s, "poolmalloc ", 11) == 0 && strstr(s, " stats: pid ") != NULL;
}

void pmt_read_stream(FILE *in, const char *name, pmt_file_t *out)
{
    memset(out, 0, sizeof *out);
    out->path = strdup(name);
    if (out->path == NULL)
        pmt_out_of_memory();
    char *buffer = NULL;
    size_t capacity = 0, length;
    int newline, in_text = 0;
    uint64_t bytes = 0;
    while (reader_line(in, &buffer, &capacity, &length, &newline)) {
        size_t line = ++out->lines;
        bytes += length + (size_t)newline;
        if (length > 0 && length <= PMT_LINE_MAX && buffer[length - 1] == '\r')
            buffer[--length] = '\0'; /* a file that went through a CRLF editor */
        if (length > PMT_LINE_MAX) {
            reader_problem(out, line, 0, "a line of %zu bytes: not a stats record; skipped",
                           length);
            in_text = 0;
            continue;
        }
        if (reader_is_blank(buffer, length))
            continue;
        if (reader_is_text_header(buffer)) {
            out->text_reports++;
            in_text = 1;
            reader_problem(out, line, 0,
                           "a text snapshot (POOLMALLOC_STATS_FORMAT=text); this tool reads "
                           "JSON: run with POOLMALLOC_STATS_FORMAT=json, or name the file "
                           "*.jsonl; skipped");
            continue;
        }
        if (in_text && buffer[0] != '{')
            continue; /* the rest of that text snapshot */
        in_text = 0;
        json_error_t error;
        /* JSON_DISABLE_EOF_CHECK is not used: trailing garbage is an error. */
        json_t *record = json_loadb(buffer, length, JSON_REJECT_DUPLICATES, &error);
        if (record == NULL) {
            if (!newline)
                reader_problem(out, line, 0,
                               "the last record is cut short (%zu bytes, no newline: the "
                               "program was killed while writing, or the file was copied "
                               "while it grew); skipped",
                               length);
            else
                reader_problem(out, line, error.column > 0 ? error.column : 0,
                               "not JSON: %s; skipped", error.text);
            continue;
        }
        if (out->count == out->capacity) {
            out->capacity = out->capacity ? out->capacity * 2 : 64;
            out->snap = pmt_xrealloc(out->snap, out->capacity * sizeof *out->snap);
        }
        if (reader_record(out, line, record, &out->snap[out->count]) == 0)
            out->count++;
        json_decref(record);
    }
    free(buffer);
    if (ferror(in))
        reader_problem(out, out->lines, 0, "read error: %s; the lines before it are reported",
                       strerror(errno));
    else if (bytes == 0)
        reader_problem(out, 0, 0,
                       "the file is empty: no snapshot was written (did the program load "
                       "libpoolmalloc.so, with POOLMALLOC_STATS set?)");
}

void pmt_read_file(const char *path, pmt_file_t *out)
{
    if (strcmp(path, "-") == 0) {
        pmt_read_stream(stdin, "-", out);
        return;
    }
    FILE *in = fopen(path, "r");
    struct stat st;
    if (in != NULL && fstat(fileno(in), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(in);
        in = NULL;
        errno = EISDIR;
    }
    if (in == NULL) {
        int error = errno;
        memset(out, 0, sizeof *out);
        out->path = strdup(path);
        if (out->path == NULL)
            pmt_out_of_memory();
        reader_problem(out, 0, 0, "cannot read: %s", strerror(error));
        return;
    }
    pmt_read_stream(in, path, out);
    fclose(in);
}

void pmt_file_free(pmt_file_t *file)
{
    free(file->path);
    for (size_t i = 0; i < file->count; i++)
        reader_profile_free(file->snap[i].profile);
    reader_stacks_free(file->stacks);
    free(file->snap);
    free(file->problem);
    memset(file, 0, sizeof *file);
}

size_t pmt_print_problems(const pmt_file_t *file, FILE *to)
{
    size_t shown = file->kept < PMT_PROBLEMS_SHOWN ? file->kept : PMT_PROBLEMS_SHOWN;
    size_t lines = 0;
    for (size_t i = 0; i < shown; i++) {
        const pmt_problem_t *p = &file->problem[i];
        if (p->line == 0)
            fprintf(to, "poolmalloc: %s: %s", file->path, p->message);
        else if (p->column > 0)
            fprintf(to, "poolmalloc: %s:%zu:%d: %s", file->path, p->line, p->column, p->message);
        else
            fprintf(to, "poolmalloc: %s:%zu: %s", file->path, p->line, p->message);
        if (p->repeats > 0)
            fprintf(to, " (the same on the next %zu line%s, to line %zu)", p->repeats,
                    p->repeats == 1 ? "" : "s", p->line + p->repeats);
        fputc('\n', to);
        lines += 1 + p->repeats;
    }
    if (file->problems > lines)
        fprintf(to, "poolmalloc: %s: %zu more bad lines\n", file->path, file->problems - lines);
    return file->problems;
}

/* ---- choosing what to report --------------------------------------------- */

int pmt_parse_target(const char *arg, char **path, pmt_at_t *at, char *error, size_t size)
{
    at->kind = PMT_AT_LAST;
    at->seq = 0;
    struct stat st;
    const char *sign = strrchr(arg, '@');
    if (sign == NULL || stat(arg, &st) == 0 || sign == arg) {
        *path = strdup(arg);
        return *path ? 0 : -1;
    }
    const char *sel = sign + 1;
    if (strcmp(sel, "last") == 0) {
        at->kind = PMT_AT_LAST;
    } else if (strcmp(sel, "first") == 0) {
        at->kind = PMT_AT_FIRST;
    } else if (strcmp(sel, "peak") == 0) {
        at->kind = PMT_AT_PEAK;
    } else {
        char *end;
        errno = 0;
        long long seq = strtoll(sel, &end, 10);
        if (*sel < '0' || *sel > '9' || *end != '\0' || errno != 0 || seq < 1) {
            snprintf(error, size,
                     "'%s': after '@' comes last, first, peak or a snapshot number (seq)", arg);
            return -1;
        }
        at->kind = PMT_AT_SEQ;
        at->seq = seq;
    }
    *path = strndup(arg, (size_t)(sign - arg));
    return *path ? 0 : -1;
}

/* Process runs: a pid's records belong to one run while seq keeps rising;
 * a seq that does not means a new process that got the same pid (a file
 * appended to by two runs). A small open-addressing map finds a pid's
 * latest run. */
typedef struct reader_runs {
    int64_t *pid;         /* per run */
    size_t *count;        /* per run */
    int64_t *last_seq;    /* per run */
    uint64_t *allocated;  /* per run: its blocks allocated, small and glibc's */
    size_t runs, capacity;
    size_t *slot;         /* map: pid -> latest run + 1; 0 = free */
    size_t slots;
} reader_runs_t;

static size_t reader_hash(int64_t pid, size_t slots)
{
    uint64_t h = (uint64_t)pid * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 20) & (slots - 1);
}

static size_t *reader_slot(reader_runs_t *m, int64_t pid)
{
    size_t i = reader_hash(pid, m->slots);
    while (m->slot[i] != 0 && m->pid[m->slot[i] - 1] != pid)
        i = (i + 1) & (m->slots - 1);
    return &m->slot[i];
}

/* The blocks a run allocated up to snapshot s, pools' and glibc's. */
static uint64_t reader_allocated(const pmt_snapshot_t *s)
{
    return s->s.small_allocated_total + s->s.system_allocated_total;
}

static size_t reader_run_of(reader_runs_t *m, const pmt_snapshot_t *s)
{
    if (2 * (m->runs + 1) > m->slots) {
        size_t slots = m->slots ? m->slots * 2 : 64;
        free(m->slot);
        m->slot = pmt_xrealloc(NULL, slots * sizeof *m->slot);
        memset(m->slot, 0, slots * sizeof *m->slot);
        m->slots = slots;
        for (size_t r = 0; r < m->runs; r++)
            *reader_slot(m, m->pid[r]) = r + 1; /* later runs overwrite earlier */
    }
    size_t *slot = reader_slot(m, s->pid);
    if (*slot != 0 && m->last_seq[*slot - 1] < s->seq) {
        size_t r = *slot - 1;
        m->last_seq[r] = s->seq;
        m->count[r]++;
        m->allocated[r] = reader_allocated(s);
        return r;
    }
    if (m->runs == m->capacity) {
        m->capacity = m->capacity ? m->capacity * 2 : 16;
        m->pid = pmt_xrealloc(m->pid, m->capacity * sizeof *m->pid);
        m->count = pmt_xrealloc(m->count, m->capacity * sizeof *m->count);
        m->last_seq = pmt_xrealloc(m->last_seq, m->capacity * sizeof *m->last_seq);
        m->allocated = pmt_xrealloc(m->allocated, m->capacity * sizeof *m->allocated);
    }
    size_t r = m->runs++;
    m->pid[r] = s->pid;
    m->count[r] = 1;
    m->last_seq[r] = s->seq;
    m->allocated[r] = reader_allocated(s);
    *slot = r + 1;
    return r;
}

int pmt_select(const pmt_file_t *file, int64_t pid, size_t pid_run, pmt_at_t at,
               pmt_series_t *out, char *error, size_t size)
{
    memset(out, 0, sizeof *out);
    out->file = file;
    if (file->count == 0) {
        snprintf(error, size, "%s: no poolmalloc snapshot could be read", file->path);
        return -1;
    }
    reader_runs_t m = {0};
    size_t *run_of = pmt_xrealloc(NULL, file->count * sizeof *run_of);
    for (size_t i = 0; i < file->count; i++)
        run_of[i] = reader_run_of(&m, &file->snap[i]);
    /* By default the run that allocated the most: the program, not the
     * shell or wrapper that started it and waited for it as long (the
     * shell that ran python3 through pyenv's shim had as many snapshots as
     * python3, and came first in the file). */
    size_t busiest = 0;
    for (size_t r = 1; r < m.runs; r++)
        if (m.allocated[r] > m.allocated[busiest] ||
            (m.allocated[r] == m.allocated[busiest] && m.count[r] > m.count[busiest]))
            busiest = r;
    size_t chosen = pid > 0 ? SIZE_MAX : busiest, pid_runs = 0;
    for (size_t r = 0; r < m.runs && pid > 0; r++)
        if (m.pid[r] == pid && (++pid_runs == pid_run || pid_run == 0))
            chosen = r;
    int result = 0;
    if (chosen == SIZE_MAX) {
        if (pid_runs == 0)
            snprintf(error, size, "%s: no snapshot of pid %" PRId64, file->path, pid);
        else
            snprintf(error, size, "%s: pid %" PRId64 " ran %zu program%s, not %zu", file->path,
                     pid, pid_runs, pid_runs == 1 ? "" : "s", pid_run);
        result = -1;
        goto done;
    }
    out->pid = m.pid[chosen];
    out->busiest_pid = m.pid[busiest];
    out->busiest = chosen == busiest;
    out->runs = m.runs;
    out->snap = pmt_xrealloc(NULL, m.count[chosen] * sizeof *out->snap);
    for (size_t i = 0; i < file->count; i++)
        if (run_of[i] == chosen)
            out->snap[out->count++] = &file->snap[i];
    /* The other runs: this pid's, and the other pids, the first few named. */
    for (size_t r = 0; r < m.runs; r++) {
        if (m.pid[r] == out->pid) {
            out->pid_runs++;
            if (r == chosen)
                out->pid_run = out->pid_runs;
            if (r == busiest)
                out->busiest_pid_run = out->pid_runs;
            out->exec_followed |= r > chosen;
            continue;
        }
        if (*reader_slot(&m, m.pid[r]) == r + 1) /* a pid's last run */
            out->other_pid_count++;
        int seen = out->others == PMT_OTHER_PIDS;
        for (size_t k = 0; k < out->others && !seen; k++)
            seen = out->other_pid[k] == m.pid[r];
        if (!seen)
            out->other_pid[out->others++] = m.pid[r];
    }
    switch (at.kind) {
    case PMT_AT_LAST: out->at = out->snap[out->count - 1]; break;
    case PMT_AT_FIRST: out->at = out->snap[0]; break;
    case PMT_AT_PEAK:
        out->at = out->snap[0];
        for (size_t i = 1; i < out->count; i++)
            if (out->snap[i]->s.rss_bytes > out->at->s.rss_bytes)
                out->at = out->snap[i];
        break;
    case PMT_AT_SEQ:
        for (size_t i = 0; i < out->count; i++)
            if (out->snap[i]->seq == at.seq)
                out->at = out->snap[i];
        if (out->at == NULL) {
            snprintf(error, size,
                     "%s: pid %" PRId64 " has no snapshot %" PRId64 " (its seqs: %" PRId64
                     "..%" PRId64 ")",
                     file->path, out->pid, at.seq, out->snap[0]->seq,
                     out->snap[out->count - 1]->seq);
            pmt_series_free(out);
            result = -1;
        }
        break;
    }
done:
    free(run_of);
    free(m.pid);
    free(m.count);
    free(m.last_seq);
    free(m.allocated);
    free(m.slot);
    return result;
}

void pmt_series_free(pmt_series_t *series)
{
    free(series->snap);
    series->snap = NULL;
    series->count = 0;
    series->at = NULL;
}
