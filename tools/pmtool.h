/* pmtool.h — the map of the poolmalloc command (tools/): what it reads, the
 * figures it derives, and what each file of the tool offers.
 * The tool is an ordinary program (stdio, malloc, jansson); it never links
 * the allocator: it includes poolmalloc.h only for the PM_STATS tables, so a
 * counter added to those tables is read, compared and reported without a
 * change here.
 *
 *   stats file (JSON Lines, docs/stats-schema.md, schema 1)
 *        │  reader.c      one pmt_snapshot_t per good line; a pmt_problem_t
 *        ▼                (file:line: message) per bad one; never gives up
 *   pmt_file_t ──pmt_select──▶ pmt_series_t  one process, one chosen snapshot
 *        │  analysis.c    summary, timeline, retained-memory diagnosis: every
 *        ▼                figure and every sentence of advice is made here once
 *   pmt_analysis_t ─▶ report_text.c (terminal)  report_json.c (--json)
 *                     report_html.c (one self-contained HTML file, SVG charts)
 *   diff.c       two series side by side
 *   run.c        run and compare: a program under the preloaded library
 *   symbols.c    profile frames -> function, file:line (addr2line, a child)
 *   units.c      bytes, durations and ratios for people
 *
 * Words: a "snapshot" is one JSON record; a "process run" is the records
 * of one pid whose seq keeps rising (one file may hold several: forked
 * children without %p, or a file appended to by two runs).
 */
#ifndef PMTOOL_H
#define PMTOOL_H

#include <stdint.h>
#include <stdio.h>

#include "poolmalloc.h" /* PM_STATS, PM_CLASS_STATS, pm_stats_t */

/* Exit statuses of report and diff (run passes the program's through). */
enum {
    PMT_EXIT_OK = 0,    /* everything read */
    PMT_EXIT_DATA = 1,  /* bad input: problems printed, the rest reported */
    PMT_EXIT_USAGE = 2, /* bad command line */
};

#define PMT_SCHEMA 1                /* the schema this tool reads */
#define PMT_POOL_BYTES 16384        /* PM_POOL_SIZE (pool 0 of an arena: 12 KiB) */
/* Released pools the default policy keeps resident for the purge delay:
 * POOLMALLOC_RETAIN_POOLS' default (64) x PMT_POOL_BYTES. */
#define PMT_RETAIN_EXPECTED_BYTES ((uint64_t)64 * PMT_POOL_BYTES)
#define PMT_ARENA_BYTES 262144      /* PM_ARENA_SIZE */
#define PMT_ARENA_HEADER_BYTES 4096 /* PM_ARENA_HEADER_SIZE */
#define PMT_LINE_MAX (1u << 20)     /* a longer line is not a record (~10 KiB) */
#define PMT_SPARSE_BUCKETS 3        /* arenas under 30% used are "mostly empty" */
#define PMT_PROBLEMS_SHOWN 10       /* bad lines printed per file; the rest counted */
#define PMT_PROBLEMS_KEPT 100       /* bad lines remembered (--json, HTML) */

/* ---- reader.c ------------------------------------------------------------ */

/* A call stack of the profile (POOLMALLOC_PROFILE=1), innermost first:
 * frame[0] is the code that called malloc. Each distinct stack is kept once
 * per file and shared by every site that has it (a long run repeats the
 * same stacks in every snapshot), so two sites are the same site exactly
 * when their stack pointers are equal. */
typedef struct pmt_stack {
    size_t depth;
    char **frame;      /* "module!symbol+0xoff", "module+0xoff" or "0x..."; control
                        * bytes replaced by '?' */
    uint64_t *address; /* the return addresses, as recorded */
} pmt_stack_t;

typedef struct pmt_site {
    uint64_t live_bytes, live_count, alloc_bytes, alloc_count; /* estimates */
    uint64_t samples;
    const pmt_stack_t *stack;
} pmt_site_t;

typedef struct pmt_site_list {
    pmt_site_t *site;
    size_t count;
} pmt_site_list_t;

#define PMT_SITES_LISTED 10 /* the library lists the top ten of each kind */

typedef struct pmt_profile {
    uint64_t rate_bytes, samples, dropped, sites;
    pmt_site_list_t top_live, top_allocated, leaks; /* largest first */
} pmt_profile_t;

typedef struct pmt_snapshot {
    int64_t pid, seq, time_ms, uptime_ms;
    char reason[16];  /* interval, signal, api, exit (another word is kept) */
    char version[32]; /* of the poolmalloc that wrote it */
    size_t line;      /* 1-based, in its file */
    pm_stats_t s;
    pmt_profile_t *profile; /* NULL: no profile in the record (or a bad one: a problem) */
} pmt_snapshot_t;

typedef struct pmt_problem {
    size_t line;    /* 0: the file as a whole */
    int column;     /* 0: unknown */
    size_t repeats; /* the same message on this many lines right after */
    char message[240];
} pmt_problem_t;

typedef struct pmt_file {
    char *path;  /* as given; "-" is standard input */
    pmt_snapshot_t *snap;
    size_t count, capacity;
    pmt_problem_t *problem; /* the first PMT_PROBLEMS_KEPT */
    size_t problems, kept;  /* problems found, problems kept */
    size_t lines;
    int text_reports;       /* text-format snapshots seen (not readable here) */
    struct pmt_stack_table *stacks; /* the profiles' call stacks, each once */
} pmt_file_t;

/* Reads every line of path. Never fails as a whole: an unreadable file is
 * one problem (line 0), a bad line another; the good lines are kept. */
void pmt_read_file(const char *path, pmt_file_t *out);
/* The same from an open stream (the fuzzers use fmemopen); name is used in
 * messages only. */
void pmt_read_stream(FILE *in, const char *name, pmt_file_t *out);
void pmt_file_free(pmt_file_t *file);
/* realloc that exits with a message when memory runs out. */
void *pmt_xrealloc(void *ptr, size_t size) __attribute__((returns_nonnull));
/* "out of memory" and exit. */
void pmt_out_of_memory(void) __attribute__((noreturn));
/* Prints "poolmalloc: FILE:LINE: message" for the first problems, and how
 * many more there were. Returns the number of problems. */
size_t pmt_print_problems(const pmt_file_t *file, FILE *to);

/* Which snapshot of a process run a report is about: the tool's spelling is
 * FILE@last (the default), FILE@first, FILE@peak (highest RSS) or FILE@SEQ. */
typedef enum { PMT_AT_LAST, PMT_AT_FIRST, PMT_AT_PEAK, PMT_AT_SEQ } pmt_at_kind_t;
typedef struct pmt_at {
    pmt_at_kind_t kind;
    int64_t seq;
} pmt_at_t;
/* Splits "FILE@SEL" into path (caller frees) and selection. An existing file
 * whose name contains '@' is taken whole. Returns 0, or -1 with a message in
 * error. */
int pmt_parse_target(const char *arg, char **path, pmt_at_t *at, char *error, size_t size);

#define PMT_OTHER_PIDS 8
typedef struct pmt_series {
    const pmt_file_t *file;
    int64_t pid;
    const pmt_snapshot_t **snap; /* in file order (seq rising) */
    size_t count;
    const pmt_snapshot_t *at;   /* the snapshot tables are drawn from */
    size_t runs;                /* process runs in the file */
    int64_t busiest_pid;        /* of the run that allocated the most (the default) */
    int busiest;                /* this run is that one */
    /* A process that exec'd another program has a run of each, in turn. */
    size_t pid_runs;            /* runs of this pid */
    size_t pid_run;             /* which of them this is, from 1 in file order */
    size_t busiest_pid_run;     /* which is the busiest, if it is this pid's; else 0 */
    int exec_followed;          /* a later run of this pid follows: this one exec'd it */
    int64_t other_pid[PMT_OTHER_PIDS]; /* the first other pids of the file */
    size_t others;
    size_t other_pid_count;     /* all the other pids */
} pmt_series_t;

/* Picks a process run of file: pid > 0 chooses run pid_run of that pid
 * (from 1 in file order: a process that exec'd others has a run of each;
 * 0: its last), pid 0 the run that allocated the most blocks (small and
 * glibc's, at its last snapshot), then the one with the most snapshots,
 * then the first. Returns 0, or -1 with a message in error (no snapshot,
 * no such pid, run or seq). */
int pmt_select(const pmt_file_t *file, int64_t pid, size_t pid_run, pmt_at_t at,
               pmt_series_t *out, char *error, size_t size);
void pmt_series_free(pmt_series_t *series);

/* ---- analysis.c ----------------------------------------------------------- */

typedef struct pmt_pin {    /* a size class holding pools it barely uses */
    int cls;
    uint64_t block_size, live_blocks, live_bytes, pool_bytes;
    uint64_t pools, partial_pools; /* pools neither full nor empty */
    uint64_t held_bytes;           /* pool_bytes - live_bytes */
    double fill;                   /* live_bytes / pool_bytes */
} pmt_pin_t;

/* Allocation sites as reported: a site and its shares of all the sampled
 * bytes (live, allocated) of its snapshot. */
typedef struct pmt_site_row {
    const pmt_site_t *site;
    double live_share, alloc_share;
} pmt_site_row_t;

typedef struct pmt_site_table {
    pmt_site_row_t row[PMT_SITES_LISTED]; /* the first PMT_SITES_LISTED of the list */
    size_t rows;
} pmt_site_table_t;

/* All the sampled bytes of one snapshot: the sum over its sites when the
 * list holds them all (fewer than PMT_SITES_LISTED, or no more sites than
 * listed); else at least that sum, and at least samples * rate_bytes
 * (allocated) or the live bytes of the stats (live): then `estimated`. */
typedef struct pmt_profile_totals {
    uint64_t live, alloc;
    int live_estimated, alloc_estimated;
} pmt_profile_totals_t;

struct pmt_symbols;

#define PMT_ADVICE_MAX 8
typedef struct pmt_analysis {
    /* summary, over the whole process run */
    size_t snapshots, reasons[5]; /* interval, signal, api, exit, other */
    int ended;                    /* an exit snapshot was written */
    int64_t duration_ms;          /* uptime at the last snapshot */
    uint64_t rss_peak, rss_final;
    uint64_t live_peak, live_final; /* small + glibc-path live bytes */
    int64_t live_peak_ms;           /* uptime at the peak of live bytes */
    /* at the chosen snapshot */
    const pmt_snapshot_t *at;
    uint64_t rss, live, small_live, system_live, pool_bytes, arena_bytes;
    double fragmentation;
    /* retained-memory diagnosis, at the chosen snapshot */
    uint64_t free_in_pools;   /* pool bytes not in live blocks nor given back (resident at most) */
    uint64_t trimmed_bytes;   /* pages of pools in use that malloc_trim gave back */
    uint64_t empty_pool_bytes; /* pools kept empty per class and thread */
    uint64_t waiting_bytes;   /* freed by other threads, not yet taken back, resident */
    uint64_t retained_bytes;  /* unused pools still resident: malloc_trim's share */
    uint64_t purged_bytes;    /* unused pools mapped but given back */
    uint64_t held_bytes;      /* free_in_pools + retained_bytes */
    uint64_t sparse_arenas, sparse_bytes; /* arenas under 30% used */
    uint64_t outside_bytes;   /* RSS beyond poolmalloc's pools and retained pools */
    uint64_t metadata_bytes;  /* of which poolmalloc's own bookkeeping (0 in older records) */
    pmt_pin_t pin[PM_CLASS_COUNT]; /* most held first */
    size_t pins;
    int severity; /* 0 nothing to worry about, 1 worth a look, 2 a lot held */
    char verdict[320];
    char advice[PMT_ADVICE_MAX][1024];
    size_t advices;
    /* allocation sites (profiling) */
    int profiled;                 /* some snapshot of the run has a profile */
    const pmt_profile_t *profile; /* the chosen snapshot's; NULL without */
    pmt_profile_totals_t totals;
    pmt_site_table_t by_live, by_alloc;
    pmt_site_row_t chart[2 * PMT_SITES_LISTED]; /* both tables' sites once, largest share first */
    size_t chart_rows;
    const pmt_snapshot_t *leak_at; /* the exit snapshot with a profile; NULL: none */
    pmt_profile_totals_t leak_totals;
    pmt_site_table_t leaks;
    /* frames resolved to function, file:line; NULL: shown as recorded. Set
     * by the caller after pmt_analyze (main.c, run.c): pmt_analysis_resolve. */
    struct pmt_symbols *symbols;
} pmt_analysis_t;

void pmt_analyze(const pmt_series_t *series, pmt_analysis_t *out);
/* Why a run has no exit snapshot, to follow "no exit snapshot: ". */
const char *pmt_no_exit_reason(const pmt_series_t *series);
/* Resolves the frames of every site a report shows (analysis.c feeds them
 * to symbols, runs it and keeps it in a->symbols; the caller frees it). */
void pmt_analysis_resolve(pmt_analysis_t *a, struct pmt_symbols *symbols);

/* The timeline folded into `columns` buckets of equal time; each bucket
 * holds the largest value of the snapshots in it, an empty bucket the
 * value before it. Arrays are caller-sized (columns each). */
typedef struct pmt_timeline {
    size_t columns;
    int64_t start_ms, end_ms;
    uint64_t *rss, *live, *pools, *arenas, max;
} pmt_timeline_t;
void pmt_timeline_fold(const pmt_series_t *series, pmt_timeline_t *t);

/* ---- report_text.c, report_json.c, report_html.c -------------------------- */

void pmt_report_text(const pmt_series_t *series, const pmt_analysis_t *a, FILE *out);
/* series and a may be NULL: then only the file's problems are written. */
void pmt_report_json(const pmt_file_t *file, const pmt_series_t *series, const pmt_analysis_t *a,
                     FILE *out);
/* Returns 0, or -1 if the file could not be written (errno set). */
int pmt_report_html(const pmt_series_t *series, const pmt_analysis_t *a, FILE *out);

/* Pieces of JSON shared by report and diff (report_json.c); each returns a
 * new reference. pmt_json_dump writes a document indented and drops it. */
struct json_t;
struct json_t *pmt_json_stats(const pm_stats_t *s);
struct json_t *pmt_json_class(int index, const pm_class_stats_t *c);
struct json_t *pmt_json_problems(const pmt_file_t *file);
struct json_t *pmt_json_snapshot_id(const pmt_snapshot_t *s);
void pmt_json_dump(struct json_t *document, FILE *out);

/* ---- subcommands (main.c dispatches) ------------------------------------- */

int pmt_cmd_report(int argc, char **argv);
int pmt_cmd_diff(int argc, char **argv);
int pmt_cmd_run(int argc, char **argv);
int pmt_cmd_compare(int argc, char **argv);

/* The diff of two series, as text or JSON (diff.c). */
void pmt_diff_text(const pmt_series_t *a, const pmt_series_t *b, FILE *out);
void pmt_diff_json(const pmt_series_t *a, const pmt_series_t *b, FILE *out);

/* ---- symbols.c ------------------------------------------------------------- */

/* Where a frame is: innermost first. loc[0] is the frame's own function
 * and file:line; each next one the function the previous was inlined into,
 * with the line of that call. Unknown parts are NULL or 0. */
typedef struct pmt_location {
    char *function, *file;
    unsigned line;
} pmt_location_t;

typedef struct pmt_resolved {
    const char *module_path; /* the file the frame was resolved in */
    pmt_location_t *loc;
    size_t locs;
} pmt_resolved_t;

typedef struct pmt_symbols pmt_symbols_t;

/* A resolver. Frames name their module by its basename; it is looked for in
 * the places given with pmt_symbols_add_path (files: a module of that
 * basename; directories: looked in), then $PATH (programs),
 * $LD_LIBRARY_PATH, extra_dir (the stats file's directory; may be NULL)
 * and the system's library directories. A file is taken only if it is the
 * same build: every symbol frame's address must fall in an executable
 * segment at a page-aligned load bias. seconds bounds all the addr2line
 * runs together. */
pmt_symbols_t *pmt_symbols_new(const char *extra_dir, double seconds);
void pmt_symbols_add_path(pmt_symbols_t *symbols, const char *file_or_dir);
/* Frames to resolve; then pmt_symbols_run resolves them all at once (one
 * addr2line per module) and pmt_symbols_find answers. */
void pmt_symbols_want(pmt_symbols_t *symbols, const pmt_stack_t *stack);
void pmt_symbols_run(pmt_symbols_t *symbols);
/* NULL: nothing known beyond the frame as recorded (also for NULL symbols). */
const pmt_resolved_t *pmt_symbols_find(const pmt_symbols_t *symbols, const char *frame);
/* What kept frames unresolved ("addr2line not found", "not found on this
 * machine: prog (--module FILE)"), "" if nothing. */
const char *pmt_symbols_notes(const pmt_symbols_t *symbols);
void pmt_symbols_free(pmt_symbols_t *symbols);

/* Frames for people, in one of 16 rotating static buffers:
 *   pmt_frame_where  " at FILE:LINE", " in FUNCTION at FILE:LINE" when the
 *                    function is not the frame's symbol, "" if unresolved
 *   pmt_frame_label  a short name for a chart or a summary: "FUNCTION
 *                    (FILE:LINE)" with FILE's last component, else the
 *                    frame's symbol+offset, else the frame
 * pmt_site_label_frame: the frame that names a site: the first one that is
 * not an operator new of libstdc++. */
const char *pmt_frame_where(const pmt_symbols_t *symbols, const char *frame);
const char *pmt_frame_label(const pmt_symbols_t *symbols, const char *frame);
size_t pmt_site_label_frame(const pmt_stack_t *stack);

/* For the fuzzers: the two parsers of untrusted bytes symbols.c has. The
 * output of `addr2line -a -f -i` for count addresses, into results
 * (count entries, freed with pmt_resolved_clear); returns how many
 * addresses were found. And an ELF image: the address of the first
 * loadable segment (page-aligned down) and, if symbol is not NULL, whether
 * symbol+offset (at runtime address) falls in an executable segment at a
 * page-aligned bias; returns -1 if image is not a usable ELF file. */
size_t pmt_addr2line_parse(const char *text, size_t length, const uint64_t *addresses,
                           size_t count, pmt_resolved_t *results);
void pmt_resolved_clear(pmt_resolved_t *r);
int pmt_elf_place(const void *image, size_t size, const char *symbol, uint64_t offset,
                  uint64_t address, uint64_t *vaddr);

/* ---- units.c --------------------------------------------------------------- */

/* Each returns one of 16 rotating static buffers: valid for 15 more calls. */
const char *pmt_bytes(uint64_t bytes);          /* "74.2 MiB" */
const char *pmt_signed_bytes(int64_t bytes);    /* "+1.5 MiB", "-512 B" */
const char *pmt_duration(int64_t ms);           /* "350 ms", "1.23 s", "2 m 03 s" */
const char *pmt_percent(double ratio);          /* "94.6%" */
const char *pmt_count(uint64_t n);              /* "1,916,428" */
/* "250ms", "2s", "5m", "1h" or a bare number of seconds -> milliseconds, -1
 * if not such a value (the grammar of POOLMALLOC_STATS_INTERVAL). */
int64_t pmt_parse_duration_ms(const char *text);

/* Prints text wrapped at PMT_TEXT_WIDTH columns: the first line after
 * `first`, the others indented by `indent` spaces; a number keeps its unit. */
#define PMT_TEXT_WIDTH 78
void pmt_wrap(FILE *out, const char *first, int indent, const char *text);

/* "poolmalloc: " + message, on stderr. */
void pmt_error(const char *format, ...) __attribute__((format(printf, 1, 2)));

#endif /* PMTOOL_H */
