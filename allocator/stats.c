/* stats.c — owns reading the counters (pm_stats_get) and writing them as
 * reports, text for people and JSON Lines for tools, both driven by the
 * tables in poolmalloc.h. Never calls malloc or stdio: a record is
 * formatted in a static buffer under the report lock and written with one
 * write(2), so a reader never sees a torn record. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ---- gathering ------------------------------------------------------------ */

static uint64_t stats_rss_bytes(void)
{
    char text[64];
    if (pm_os_read_text("/proc/self/statm", text, sizeof text) <= 0)
        return 0;
    const char *p = text;
    while (*p && *p != ' ')
        p++; /* the first field is the total size; the second, resident */
    uint64_t pages = 0;
    for (p++; *p >= '0' && *p <= '9'; p++)
        pages = pages * 10 + (uint64_t)(*p - '0');
    return pages * PM_OS_PAGE_SIZE; /* not sysconf: no glibc call on the dump thread (dump.c) */
}

static double stats_ratio(uint64_t part, uint64_t whole)
{
    return whole == 0 ? 0.0 : (double)part / (double)whole;
}

void pm_stats_get(pm_stats_t *out)
{
    memset(out, 0, sizeof *out);
    /* Pools first, counters second: an allocation in between makes the
     * count larger, never the live blocks more than were allocated. */
    uint64_t used[PM_CLASS_COUNT] = {0}, waiting[PM_CLASS_COUNT];
    pm_arena_stats(out, used);
    pm_heap_stats(out, waiting);
    out->metadata_bytes += pm_registry_metadata_bytes();
    out->system_caches_grown = pm_system_caches_grown();
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++) {
        pm_class_stats_t *cs = &out->classes[c];
        cs->block_size = pm_class_size(c);
        /* I8: blocks in use in pools, less those freed by other threads and
         * not yet taken back, are live; every other block handed out was
         * freed. */
        cs->live_blocks = used[c] > waiting[c] ? used[c] - waiting[c] : 0;
        if (cs->live_blocks > cs->allocated_total)
            cs->live_blocks = cs->allocated_total;
        cs->freed_total = cs->allocated_total - cs->live_blocks;
        cs->live_bytes = cs->live_blocks * cs->block_size;
        cs->waiting_blocks = used[c] - cs->live_blocks;
        out->small_waiting_blocks += cs->waiting_blocks;
        out->small_waiting_bytes += cs->waiting_blocks * cs->block_size;
        out->small_allocated_total += cs->allocated_total;
        out->small_freed_total += cs->freed_total;
        out->small_live_blocks += cs->live_blocks;
        out->small_live_bytes += cs->live_bytes;
        cs->utilization = stats_ratio(cs->live_bytes, cs->pool_bytes);
        cs->fragmentation = cs->pool_bytes ? 1.0 - cs->utilization : 0.0;
        out->small_free_blocks += cs->free_blocks;
        out->small_pool_bytes += cs->pool_bytes;
        out->small_trimmed_bytes += cs->trimmed_bytes;
    }
    out->small_utilization = stats_ratio(out->small_live_bytes, out->small_pool_bytes);
    out->small_fragmentation = out->small_pool_bytes ? 1.0 - out->small_utilization : 0.0;
    out->rss_bytes = stats_rss_bytes();
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) == 0)
        out->rss_peak_bytes = (uint64_t)usage.ru_maxrss * 1024;
    if (out->rss_peak_bytes < out->rss_bytes)
        out->rss_peak_bytes = out->rss_bytes;
}

/* ---- the record ------------------------------------------------------------ */

static const char *const reason_names[] = {
    [PM_SNAPSHOT_INTERVAL] = "interval", [PM_SNAPSHOT_SIGNAL] = "signal",
    [PM_SNAPSHOT_API] = "api", [PM_SNAPSHOT_EXIT] = "exit",
};

typedef struct stats_record_meta {
    uint64_t sequence;
    pm_snapshot_reason_t reason;
    struct timespec wall;
    uint64_t uptime_ms;
} stats_record_meta_t;

static struct timespec stats_start;
static uint64_t stats_sequence;
/* Set by the exit snapshot, under the report lock. */
static bool stats_exit_written;

void pm_stats_note_start(void)
{
    pm_os_monotonic(&stats_start); /* in every fork child's handler */
    stats_exit_written = false;
}

/* Large enough for the JSON record with every class (about 12 KiB) and,
 * when profiling, three lists of sites with 32 frames each. */
#define STATS_RECORD_BYTES ((size_t)256 << 10)
static char stats_record[STATS_RECORD_BYTES];

void pm_stats_lock(void) { pm_lock(&pm_fork_locks.stats); }
void pm_stats_unlock(void) { pm_unlock(&pm_fork_locks.stats); }

/* ---- profile sections (profile.c gathers, these print) ------------------------ */

#define PROFILE_TOP_SITES 10

typedef struct profile_lists {
    pm_profile_summary_t summary;
    size_t live_count, allocated_count, leak_count;
    pm_profile_site_t live[PROFILE_TOP_SITES], allocated[PROFILE_TOP_SITES],
        leaks[PROFILE_TOP_SITES];
} profile_lists_t;

/* Caller holds the report lock (the lists are static). */
static const profile_lists_t *profile_gather(pm_snapshot_reason_t reason)
{
    static profile_lists_t lists;
    if (!pm_profile_enabled())
        return NULL;
    lists.live_count = pm_profile_top(lists.live, PROFILE_TOP_SITES, true, false, &lists.summary);
    lists.allocated_count = pm_profile_top(lists.allocated, PROFILE_TOP_SITES, false, false, NULL);
    lists.leak_count = reason == PM_SNAPSHOT_EXIT
                           ? pm_profile_top(lists.leaks, PROFILE_TOP_SITES, true, true, NULL)
                           : 0;
    return &lists;
}

static void text_sites(pm_buf_t *b, const char *title, const pm_profile_site_t *sites, size_t n)
{
    pm_buf_str(b, "\n  ");
    pm_buf_str(b, title);
    pm_buf_char(b, '\n');
    if (n == 0)
        pm_buf_str(b, "    (none sampled)\n");
    for (size_t i = 0; i < n; i++) {
        const pm_profile_site_t *site = &sites[i];
        pm_buf_str(b, "  ");
        pm_buf_uint(b, i + 1, 2);
        pm_buf_str(b, ". live ");
        pm_buf_bytes(b, (uint64_t)site->live_bytes);
        pm_buf_str(b, " in ~");
        pm_buf_uint(b, (uint64_t)(site->live_count + 0.5), 0);
        pm_buf_str(b, " blocks; allocated ");
        pm_buf_bytes(b, (uint64_t)site->alloc_bytes);
        pm_buf_str(b, " in ~");
        pm_buf_uint(b, (uint64_t)(site->alloc_count + 0.5), 0);
        pm_buf_str(b, " (");
        pm_buf_uint(b, site->samples, 0);
        pm_buf_str(b, " samples)\n");
        for (uint32_t f = 0; f < site->depth && f < 8; f++) {
            pm_buf_str(b, "        ");
            pm_profile_format_frame(b, site->frames[f]);
            pm_buf_char(b, '\n');
        }
        if (site->depth > 8)
            pm_buf_str(b, "        ...\n");
    }
}

static void text_profile(pm_buf_t *b, const profile_lists_t *p)
{
    pm_buf_str(b, "  allocation sites: one sample per ");
    pm_buf_bytes(b, p->summary.rate_bytes);
    pm_buf_str(b, " on average; ");
    pm_buf_uint(b, p->summary.samples, 0);
    pm_buf_str(b, " samples, ");
    pm_buf_uint(b, p->summary.sites, 0);
    pm_buf_str(b, " distinct stacks (figures with ~ are estimates)\n");
    text_sites(b, "top sites by live bytes", p->live, p->live_count);
    text_sites(b, "top sites by bytes allocated", p->allocated, p->allocated_count);
    if (p->leak_count > 0)
        text_sites(b, "leak report: sites whose sampled blocks are still live at exit", p->leaks,
                   p->leak_count);
    pm_buf_char(b, '\n');
}

static void json_sites(pm_buf_t *b, const char *name, const pm_profile_site_t *sites, size_t n)
{
    pm_buf_str(b, ",\"");
    pm_buf_str(b, name);
    pm_buf_str(b, "\":[");
    for (size_t i = 0; i < n; i++) {
        const pm_profile_site_t *site = &sites[i];
        pm_buf_str(b, i ? ",{\"live_bytes\":" : "{\"live_bytes\":");
        pm_buf_uint(b, (uint64_t)(site->live_bytes + 0.5), 0);
        pm_buf_str(b, ",\"live_count\":");
        pm_buf_uint(b, (uint64_t)(site->live_count + 0.5), 0);
        pm_buf_str(b, ",\"alloc_bytes\":");
        pm_buf_uint(b, (uint64_t)(site->alloc_bytes + 0.5), 0);
        pm_buf_str(b, ",\"alloc_count\":");
        pm_buf_uint(b, (uint64_t)(site->alloc_count + 0.5), 0);
        pm_buf_str(b, ",\"samples\":");
        pm_buf_uint(b, site->samples, 0);
        pm_buf_str(b, ",\"frames\":[");
        for (uint32_t f = 0; f < site->depth; f++) {
            char frame[512];
            pm_buf_t fb;
            pm_buf_init(&fb, frame, sizeof frame - 1);
            pm_profile_format_frame(&fb, site->frames[f]);
            *fb.at = '\0';
            if (f)
                pm_buf_char(b, ',');
            pm_buf_json_string(b, frame);
        }
        pm_buf_str(b, "],\"addresses\":[");
        for (uint32_t f = 0; f < site->depth; f++) {
            if (f)
                pm_buf_char(b, ',');
            pm_buf_char(b, '"');
            pm_buf_hex(b, (uintptr_t)site->frames[f]);
            pm_buf_char(b, '"');
        }
        pm_buf_str(b, "]}");
    }
    pm_buf_char(b, ']');
}

static void json_profile(pm_buf_t *b, const profile_lists_t *p)
{
    pm_buf_str(b, ",\"profile\":{\"rate_bytes\":");
    pm_buf_uint(b, p->summary.rate_bytes, 0);
    pm_buf_str(b, ",\"samples\":");
    pm_buf_uint(b, p->summary.samples, 0);
    pm_buf_str(b, ",\"dropped\":");
    pm_buf_uint(b, p->summary.dropped, 0);
    pm_buf_str(b, ",\"sites\":");
    pm_buf_uint(b, p->summary.sites, 0);
    json_sites(b, "top_live", p->live, p->live_count);
    json_sites(b, "top_allocated", p->allocated, p->allocated_count);
    json_sites(b, "leaks", p->leaks, p->leak_count);
    pm_buf_char(b, '}');
}

/* ---- text ------------------------------------------------------------------ */

#define TEXT_VALUE_COUNT(b, v) pm_buf_uint(b, v, 0)
#define TEXT_VALUE_BYTES(b, v) pm_buf_bytes(b, v)
#define TEXT_VALUE_RATIO(b, v) (pm_buf_fixed(b, (v) * 100.0, 1), pm_buf_char(b, '%'))

/* Summary fields two to a line: label left, value right-aligned. */
#define TEXT_SUMMARY_COLUMN 44
#define TEXT_LABEL_WIDTH 30

static void text_summary_cell(pm_buf_t *b, const char *line, unsigned column, const char *label)
{
    pm_buf_pad_to(b, line, 2 + column * TEXT_SUMMARY_COLUMN);
    pm_buf_str(b, label);
    pm_buf_pad_to(b, line, 2 + column * TEXT_SUMMARY_COLUMN + TEXT_LABEL_WIDTH);
}

/* By whole 400-year eras of 146097 days (the Gregorian cycle), with years
 * starting on 1 March so that the leap day ends them. */
void pm_utc_date(int64_t days, int64_t *year, int *month, int *day)
{
    days += 719468; /* days from 0000-03-01 to 1970-01-01 */
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t of_era = days - era * 146097;                                        /* 0..146096 */
    int64_t year_of_era = (of_era - of_era / 1460 + of_era / 36524 - of_era / 146096) / 365; /* 0..399 */
    int64_t of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); /* 0..365 */
    int64_t month_from_march = (5 * of_year + 2) / 153;                           /* 0..11 */
    *day = (int)(of_year - (153 * month_from_march + 2) / 5 + 1);
    *month = (int)(month_from_march < 10 ? month_from_march + 3 : month_from_march - 9);
    *year = year_of_era + era * 400 + (*month <= 2);
}

static void text_time(pm_buf_t *b, const struct timespec *wall)
{
    int64_t seconds = wall->tv_sec;
    int64_t days = (seconds >= 0 ? seconds : seconds - 86399) / 86400;
    int64_t of_day = seconds - days * 86400;
    int64_t year;
    int month, day;
    pm_utc_date(days, &year, &month, &day);
    pm_buf_uint(b, (uint64_t)year, 0);
    const int parts[] = {month, day, (int)(of_day / 3600), (int)(of_day / 60 % 60), (int)(of_day % 60)};
    const char seps[] = "-- ::";
    for (int i = 0; i < 5; i++) {
        pm_buf_char(b, seps[i]);
        if (parts[i] < 10)
            pm_buf_char(b, '0');
        pm_buf_uint(b, (uint64_t)parts[i], 0);
    }
    pm_buf_str(b, " UTC");
}

static void text_format(pm_buf_t *b, const pm_stats_t *s, const stats_record_meta_t *meta,
                        const profile_lists_t *profile)
{
    pm_buf_str(b, "poolmalloc " PM_VERSION_STRING " stats: pid ");
    pm_buf_uint(b, (uint64_t)getpid(), 0);
    pm_buf_str(b, ", snapshot ");
    pm_buf_uint(b, meta->sequence, 0);
    pm_buf_str(b, " (");
    pm_buf_str(b, reason_names[meta->reason]);
    pm_buf_str(b, "), ");
    text_time(b, &meta->wall);
    pm_buf_str(b, ", up ");
    pm_buf_fixed(b, (double)meta->uptime_ms / 1000.0, 1);
    pm_buf_str(b, " s\n");

    const char *line = b->at;
    unsigned column = 0;
#define TEXT_SUMMARY(name, kind, label)                   \
    text_summary_cell(b, line, column, label);           \
    TEXT_VALUE_##kind(b, s->name);                        \
    if (++column == 2) {                                  \
        pm_buf_char(b, '\n');                             \
        line = b->at;                                     \
        column = 0;                                       \
    }
    PM_STATS(TEXT_SUMMARY)
    if (column != 0)
        pm_buf_char(b, '\n');

    /* Per class: one row per class in use, columns from the table. */
    pm_buf_str(b, "\n  size classes ('used': live bytes / pool bytes; 'frag': 1 - used)\n");
    line = b->at;
    size_t width = 7;
    pm_buf_str(b, "  class");
#define TEXT_CLASS_WIDTH_COUNT 10
#define TEXT_CLASS_WIDTH_BYTES 11
#define TEXT_CLASS_WIDTH_RATIO 7
#define TEXT_CLASS_HEADER(name, kind, label)        \
    width += TEXT_CLASS_WIDTH_##kind;               \
    pm_buf_pad_to(b, line, width - strlen(label));  \
    pm_buf_str(b, label);
    PM_CLASS_STATS(TEXT_CLASS_HEADER)
    pm_buf_char(b, '\n');
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++) {
        const pm_class_stats_t *cs = &s->classes[c];
        if (cs->allocated_total == 0 && cs->pools == 0)
            continue;
        line = b->at;
        width = 7;
        pm_buf_uint(b, c, 7);
        char cell[32];
        pm_buf_t v;
#define TEXT_CLASS_CELL(name, kind, label)                     \
        pm_buf_init(&v, cell, sizeof cell);                    \
        TEXT_VALUE_##kind(&v, cs->name);                       \
        width += TEXT_CLASS_WIDTH_##kind;                      \
        pm_buf_pad_to(b, line, width - (size_t)(v.at - v.start)); \
        *v.at = '\0';                                          \
        pm_buf_str(b, cell);
        PM_CLASS_STATS(TEXT_CLASS_CELL)
        pm_buf_char(b, '\n');
    }

    /* Arenas by occupancy: where nearly empty arenas hold memory. */
    pm_buf_str(b, "\n  arenas by occupancy (share of their pool bytes in live blocks)\n");
    uint64_t most = 1;
    for (unsigned i = 0; i < PM_OCCUPANCY_BUCKETS; i++)
        if (s->arena_occupancy[i] > most)
            most = s->arena_occupancy[i];
    for (unsigned i = 0; i < PM_OCCUPANCY_BUCKETS; i++) {
        line = b->at;
        pm_buf_uint(b, i * 100 / PM_OCCUPANCY_BUCKETS, 6);
        pm_buf_char(b, '-');
        pm_buf_uint(b, (i + 1) * 100 / PM_OCCUPANCY_BUCKETS, 3);
        pm_buf_str(b, "%  ");
        uint64_t bar = (s->arena_occupancy[i] * 40 + most - 1) / most;
        for (uint64_t k = 0; k < bar; k++)
            pm_buf_char(b, '#');
        pm_buf_char(b, ' ');
        pm_buf_uint(b, s->arena_occupancy[i], 0);
        pm_buf_char(b, '\n');
    }
    pm_buf_char(b, '\n');
    if (profile != NULL)
        text_profile(b, profile);
}

/* ---- JSON (docs/stats-schema.md) -------------------------------------------- */

#define JSON_VALUE_COUNT(b, v) pm_buf_uint(b, v, 0)
#define JSON_VALUE_BYTES(b, v) pm_buf_uint(b, v, 0)
#define JSON_VALUE_RATIO(b, v) pm_buf_fixed(b, v, 6)

static void json_format(pm_buf_t *b, const pm_stats_t *s, const stats_record_meta_t *meta,
                        const profile_lists_t *profile)
{
    pm_buf_str(b, "{\"schema\":");
    pm_buf_uint(b, PM_STATS_SCHEMA_VERSION, 0);
    pm_buf_str(b, ",\"allocator\":\"poolmalloc\",\"version\":\"" PM_VERSION_STRING "\",\"pid\":");
    pm_buf_uint(b, (uint64_t)getpid(), 0);
    pm_buf_str(b, ",\"seq\":");
    pm_buf_uint(b, meta->sequence, 0);
    pm_buf_str(b, ",\"reason\":\"");
    pm_buf_str(b, reason_names[meta->reason]);
    pm_buf_str(b, "\",\"time_ms\":");
    pm_buf_uint(b, (uint64_t)meta->wall.tv_sec * 1000 + (uint64_t)meta->wall.tv_nsec / 1000000, 0);
    pm_buf_str(b, ",\"uptime_ms\":");
    pm_buf_uint(b, meta->uptime_ms, 0);
#define JSON_FIELD(name, kind, label) \
    pm_buf_str(b, ",\"" #name "\":");  \
    JSON_VALUE_##kind(b, s->name);
    PM_STATS(JSON_FIELD)
    pm_buf_str(b, ",\"arena_occupancy\":[");
    for (unsigned i = 0; i < PM_OCCUPANCY_BUCKETS; i++) {
        if (i)
            pm_buf_char(b, ',');
        pm_buf_uint(b, s->arena_occupancy[i], 0);
    }
    pm_buf_str(b, "],\"classes\":[");
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++) {
        const pm_class_stats_t *cs = &s->classes[c];
        pm_buf_str(b, c ? ",{\"class\":" : "{\"class\":");
        pm_buf_uint(b, c, 0);
#define JSON_CLASS_FIELD(name, kind, label) \
        pm_buf_str(b, ",\"" #name "\":");    \
        JSON_VALUE_##kind(b, cs->name);
        PM_CLASS_STATS(JSON_CLASS_FIELD)
        pm_buf_char(b, '}');
    }
    pm_buf_char(b, ']');
    if (profile != NULL)
        json_profile(b, profile);
    pm_buf_str(b, "}\n");
}

/* ---- writing ----------------------------------------------------------------- */

/* Formats one record into stats_record; the caller holds the report lock.
 * Returns its length. */
static size_t stats_format_record(pm_stats_format_t format, pm_snapshot_reason_t reason)
{
    pm_stats_t stats;
    pm_stats_get(&stats);
    stats_record_meta_t meta = {.sequence = ++stats_sequence, .reason = reason};
    clock_gettime(CLOCK_REALTIME, &meta.wall);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (stats_start.tv_sec == 0 && stats_start.tv_nsec == 0)
        stats_start = now;
    meta.uptime_ms = (uint64_t)(now.tv_sec - stats_start.tv_sec) * 1000 +
                     (uint64_t)((now.tv_nsec - stats_start.tv_nsec) / 1000000);
    pm_buf_t b;
    pm_buf_init(&b, stats_record, sizeof stats_record);
    const profile_lists_t *profile = profile_gather(reason);
    if (format == PM_STATS_JSON)
        json_format(&b, &stats, &meta, profile);
    else
        text_format(&b, &stats, &meta, profile);
    return (size_t)(b.at - b.start);
}

/* One record, one write: 0 or the error (EIO for a short write, which
 * leaves the record cut). Leaves errno alone: the dump thread may share it
 * with the program's main thread (dump.c). */
static int stats_write_record(int fd, const char *record, size_t length)
{
    ssize_t n = pm_os_write(fd, record, length);
    return n == (ssize_t)length ? 0 : n < 0 ? (int)-n : EIO;
}

static int stats_write_fd(void *arg, const char *record, size_t length)
{
    int error = stats_write_record((int)(intptr_t)arg, record, length);
    if (error == 0)
        return 0;
    errno = error;
    return -1;
}

int pm_stats_print_to(pm_stats_writer_t *write_record, void *arg, pm_stats_format_t format)
{
    pm_stats_lock();
    size_t length = stats_format_record(format, PM_SNAPSHOT_API);
    int result = write_record(arg, stats_record, length);
    pm_stats_unlock();
    return result;
}

int pm_stats_print(int fd, pm_stats_format_t format)
{
    return pm_stats_print_to(stats_write_fd, (void *)(intptr_t)fd, format);
}

/* "%p" in the path becomes the pid, so a forked or exec'd child writes its
 * own file; "%%" is a literal '%'. */
static bool stats_expand_path(char *out, size_t capacity, const char *pattern)
{
    pm_buf_t b;
    pm_buf_init(&b, out, capacity - 1);
    for (const char *p = pattern; *p; p++) {
        if (p[0] == '%' && p[1] == 'p') {
            pm_buf_uint(&b, (uint64_t)getpid(), 0);
            p++;
        } else if (p[0] == '%' && p[1] == '%') {
            pm_buf_char(&b, '%');
            p++;
        } else {
            pm_buf_char(&b, *p);
        }
    }
    if (b.at == b.end)
        return false;
    *b.at = '\0';
    return true;
}

/* One warning per kind of failure and process, so a sink that stays broken
 * does not flood stderr every interval. */
enum stats_failure { STATS_CANNOT_OPEN, STATS_CANNOT_WRITE };

static void stats_warn(enum stats_failure failure, const char *path, int error)
{
    static bool warned[2];
    if (warned[failure])
        return;
    warned[failure] = true;
    /* strerrorname_np never allocates; strerror may (translations). */
    const char *name = strerrorname_np(error);
    pm_os_say(failure == STATS_CANNOT_OPEN ? "poolmalloc: cannot open POOLMALLOC_STATS file '"
                                           : "poolmalloc: cannot write POOLMALLOC_STATS file '",
              path, "': ", name ? name : "unknown error", "; the program runs on without it", NULL);
}

int pm_stats_write_snapshot(pm_snapshot_reason_t reason)
{
    const char *pattern = pm_options.stats_path;
    if (pattern[0] == '\0')
        return -1;
    int error = 0;
    pm_stats_lock();
    /* The exit snapshot ends the report: readers take a last record that is
     * not it for a program that was killed. Other libraries' destructors
     * and glibc's teardown run after ours, and the dump thread, still
     * running then, must not follow it with another. */
    bool from_dump_thread = reason == PM_SNAPSHOT_INTERVAL || reason == PM_SNAPSHOT_SIGNAL;
    if (stats_exit_written && from_dump_thread) {
        pm_stats_unlock();
        return 0;
    }
    stats_exit_written |= reason == PM_SNAPSHOT_EXIT;
    size_t length = stats_format_record(pm_options.stats_format, reason);
    if (strcmp(pattern, "stderr") == 0) {
        error = stats_write_record(STDERR_FILENO, stats_record, length);
    } else {
        /* Opened for each record: the program may close every descriptor
         * or daemonize between two snapshots. */
        char path[PM_OPTION_PATH_MAX + 32];
        int fd = -1;
        if (!stats_expand_path(path, sizeof path, pattern))
            stats_warn(STATS_CANNOT_OPEN, pattern, error = ENAMETOOLONG);
        else if ((fd = pm_os_open(path, O_WRONLY | O_CREAT | O_APPEND, 0644)) < 0)
            stats_warn(STATS_CANNOT_OPEN, path, error = -fd);
        else if ((error = stats_write_record(fd, stats_record, length)) != 0)
            stats_warn(STATS_CANNOT_WRITE, path, error);
        if (fd >= 0)
            pm_os_close(fd);
    }
    pm_stats_unlock();
    return error == 0 ? 0 : -1;
}

/* malloc_info's XML, in the shape glibc gives it (one <heap>, whose
 * <sizes> are the size classes' free blocks), with poolmalloc's figures. */
size_t pm_stats_xml(char *out, size_t capacity)
{
    pm_stats_t s;
    pm_stats_get(&s);
    pm_buf_t b;
    pm_buf_init(&b, out, capacity);
    uint64_t free_bytes = s.small_pool_bytes - s.small_live_bytes;
    pm_buf_str(&b, "<malloc version=\"1\" allocator=\"poolmalloc\">\n<heap nr=\"0\">\n<sizes>\n");
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++) {
        const pm_class_stats_t *cs = &s.classes[c];
        if (cs->free_blocks == 0)
            continue;
        pm_buf_str(&b, "  <size from=\"");
        pm_buf_uint(&b, cs->block_size - PM_CLASS_GRANULE + 1, 0);
        pm_buf_str(&b, "\" to=\"");
        pm_buf_uint(&b, cs->block_size, 0);
        pm_buf_str(&b, "\" total=\"");
        pm_buf_uint(&b, cs->free_blocks * cs->block_size, 0);
        pm_buf_str(&b, "\" count=\"");
        pm_buf_uint(&b, cs->free_blocks, 0);
        pm_buf_str(&b, "\"/>\n");
    }
    const struct {
        const char *element, *type;
        uint64_t count, size;
        bool has_count;
    } totals[] = {
        {"total", "fast", 0, 0, true},
        {"total", "rest", s.small_free_blocks, free_bytes, true},
        {"total", "mmap", s.system_live_blocks, s.system_live_bytes, true},
        {"system", "current", 0, s.arena_bytes, false},
        {"system", "max", 0, s.arenas_peak * PM_ARENA_SIZE, false},
        {"aspace", "total", 0, s.arena_bytes, false},
        {"aspace", "mprotect", 0, s.arena_bytes, false},
    };
    pm_buf_str(&b, "</sizes>\n");
    for (size_t pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < sizeof totals / sizeof totals[0]; i++) {
            if (pass == 0 && strcmp(totals[i].type, "mmap") == 0)
                continue; /* a heap has no mmap total; the whole does */
            pm_buf_str(&b, "<");
            pm_buf_str(&b, totals[i].element);
            pm_buf_str(&b, " type=\"");
            pm_buf_str(&b, totals[i].type);
            if (totals[i].has_count) {
                pm_buf_str(&b, "\" count=\"");
                pm_buf_uint(&b, totals[i].count, 0);
            }
            pm_buf_str(&b, "\" size=\"");
            pm_buf_uint(&b, totals[i].size, 0);
            pm_buf_str(&b, "\"/>\n");
        }
        if (pass == 0)
            pm_buf_str(&b, "</heap>\n");
    }
    pm_buf_str(&b, "</malloc>\n");
    return (size_t)(b.at - b.start);
}

struct mallinfo2 pm_mallinfo2(void)
{
    pm_stats_t s;
    pm_stats_get(&s);
    struct mallinfo2 info = {
        .arena = s.arena_bytes,
        .ordblks = s.small_free_blocks,
        .uordblks = s.small_live_bytes + s.system_live_bytes,
        .fordblks = s.small_pool_bytes - s.small_live_bytes,
        .keepcost = s.retained_pools * PM_POOL_SIZE,
    };
    return info;
}

int pm_stats_dump(void)
{
    return pm_stats_write_snapshot(PM_SNAPSHOT_API);
}
