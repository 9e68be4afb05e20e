/* main.c — owns the command line of `poolmalloc`: the subcommands, their
 * help, and the plumbing of report and diff (read, print problems, choose,
 * analyse, print). Never formats a figure (report_*.c, diff.c do) and never
 * decides an exit status other than by the PMT_EXIT_* rules: 0 all read,
 * 1 bad input (problems printed, the rest reported), 2 bad command line. */
#include "pmtool.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char main_usage[] =
    "usage: poolmalloc COMMAND [OPTIONS] ...\n"
    "\n"
    "The command-line companion of libpoolmalloc.so, the preloadable allocator.\n"
    "\n"
    "commands:\n"
    "  run      run a program under poolmalloc with stats on (--profile: and\n"
    "           allocation sites); summary at the end\n"
    "  report   read a stats file: summary, size classes, arenas, timeline,\n"
    "           retained-memory diagnosis, allocation sites and leaks (profiling);\n"
    "           --json, --html OUT.html\n"
    "  diff     two snapshots (two runs, or two moments of one) side by side\n"
    "  compare  time a program under poolmalloc, glibc, jemalloc, mimalloc, tcmalloc\n"
    "\n"
    "'poolmalloc COMMAND --help' tells more; 'man poolmalloc' has examples.\n"
    "  poolmalloc run --stats app.jsonl -- ./app\n"
    "  poolmalloc report app.jsonl\n"
    "  poolmalloc report --html app.html app.jsonl\n"
    "  poolmalloc diff before.jsonl after.jsonl\n"
    "  poolmalloc compare -n 5 -- ./app\n";

static const char report_usage[] =
    "usage: poolmalloc report [--json] [--html OUT.html] [--pid PID[:N]]\n"
    "                         [--module FILE|DIR]... [--no-resolve]\n"
    "                         [--resolve-timeout SECONDS] FILE[@SNAPSHOT]\n"
    "\n"
    "Reads a stats file (JSON Lines: written to a file named *.jsonl, or with\n"
    "POOLMALLOC_STATS_FORMAT=json, as 'poolmalloc run' does) and prints: a summary\n"
    "(peak and final RSS, live bytes, bytes in pools and arenas, fragmentation), the\n"
    "size-class table, the arena occupancy histogram, a timeline of RSS and live\n"
    "bytes, and a retained-memory diagnosis: what RSS pools and mostly empty arenas\n"
    "hold, which size classes pin them, and what to do about it. With profiling\n"
    "(POOLMALLOC_PROFILE=1, 'run --profile'): the top allocation sites by live and by\n"
    "allocated bytes, and the leak report of the exit snapshot, their frames resolved\n"
    "to file:line by addr2line where the modules and their debug information are\n"
    "found.\n"
    "\n"
    "  --json          the same as one JSON document on standard output\n"
    "  --html OUT      write a self-contained HTML report with SVG charts to OUT\n"
    "                  (no text report then, unless --json is given too)\n"
    "  --pid PID[:N]   the process to report, when several wrote to FILE (default:\n"
    "                  the one that allocated the most blocks); a pid that exec'd\n"
    "                  other programs ran each in turn: N chooses (1: the first;\n"
    "                  default: the last)\n"
    "  --module PATH   where a module the frames name is: the program or library\n"
    "                  file, or a directory to look in (repeatable); else $PATH,\n"
    "                  $LD_LIBRARY_PATH, FILE's directory and the system's are tried\n"
    "  --no-resolve    show the frames as recorded (no addr2line)\n"
    "  --resolve-timeout SECONDS\n"
    "                  how long addr2line may take in all (default 30; each run at\n"
    "                  most 10): frames not resolved by then are shown as recorded\n"
    "  FILE@SNAPSHOT   the snapshot the tables are drawn from: last (default), first,\n"
    "                  peak (highest RSS) or a snapshot number (its seq)\n"
    "  FILE            '-' reads standard input\n"
    "\n"
    "Bad lines (not JSON, cut short, a newer schema) are reported as FILE:LINE on\n"
    "standard error and skipped; everything else is reported. Exit status: 0 when\n"
    "every line was read, 1 when some were not (or none could be), 2 for usage.\n"
    "\n"
    "examples:\n"
    "  poolmalloc report app.jsonl\n"
    "  poolmalloc report app.jsonl@peak\n"
    "  poolmalloc report --json app.jsonl | jq .diagnosis\n"
    "  poolmalloc report --html app.html app.jsonl\n"
    "  poolmalloc report --module ./build/app app.jsonl\n";

static const char diff_usage[] =
    "usage: poolmalloc diff [--json] A[@SNAPSHOT] B[@SNAPSHOT]\n"
    "\n"
    "Two snapshots side by side: of two runs (two files), or two moments of one run\n"
    "(FILE@first FILE, FILE@3 FILE@peak). Every figure with its change, the figures\n"
    "that changed most first, the size classes whose pool and live bytes changed most,\n"
    "and the arena occupancy of both. SNAPSHOT is last (default), first, peak or a\n"
    "seq number; each file's process is the one that allocated the most blocks.\n"
    "\n"
    "  --json   the same as one JSON document\n"
    "\n"
    "examples:\n"
    "  poolmalloc diff glibc-like.jsonl retain0.jsonl\n"
    "  poolmalloc diff app.jsonl@peak app.jsonl\n";

/* ---- report ---------------------------------------------------------------- */

/* Reads target ("FILE[@SEL]") and chooses its series. Problems go to
 * stderr. Returns 0 with file and series filled, 1 if nothing could be
 * chosen (file still filled), 2 for a bad target. */
static int main_load(const char *target, int64_t pid, size_t pid_run, pmt_file_t *file,
                     pmt_series_t *series)
{
    char *path = NULL, error[512];
    pmt_at_t at;
    if (pmt_parse_target(target, &path, &at, error, sizeof error) != 0) {
        pmt_error("%s", error);
        return PMT_EXIT_USAGE;
    }
    pmt_read_file(path, file);
    free(path);
    pmt_print_problems(file, stderr);
    if (pmt_select(file, pid, pid_run, at, series, error, sizeof error) != 0) {
        if (file->lines > 0 || file->problems == 0) /* else: said already (missing, empty) */
            pmt_error("%s", error);
        return PMT_EXIT_DATA;
    }
    return PMT_EXIT_OK;
}

/* Seconds all addr2line runs of one report may take together. */
#define MAIN_RESOLVE_SECONDS 30.0

/* The directory of a stats file ("." for a bare name), or NULL for "-". */
static char *main_directory_of(const char *target)
{
    if (strcmp(target, "-") == 0)
        return NULL;
    const char *slash = strrchr(target, '/');
    char *dir = slash ? strndup(target, (size_t)(slash - target) + (slash == target))
                      : strdup(".");
    if (dir == NULL)
        pmt_out_of_memory();
    return dir;
}

int pmt_cmd_report(int argc, char **argv)
{
    static const struct option options[] = {
        {"json", no_argument, NULL, 'j'},      {"html", required_argument, NULL, 'H'},
        {"pid", required_argument, NULL, 'p'}, {"module", required_argument, NULL, 'm'},
        {"no-resolve", no_argument, NULL, 'n'}, {"resolve-timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},      {NULL, 0, NULL, 0}};
    int json = 0, resolve = 1, c;
    double resolve_seconds = MAIN_RESOLVE_SECONDS;
    const char *html = NULL;
    const char **modules = NULL;
    size_t module_count = 0;
    int64_t pid = 0;
    size_t pid_run = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "jH:p:m:nt:h", options, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'H': html = optarg; break;
        case 'm':
            modules = pmt_xrealloc(modules, (module_count + 1) * sizeof *modules);
            modules[module_count++] = optarg;
            break;
        case 'n': resolve = 0; break;
        case 't': {
            char *end;
            errno = 0;
            resolve_seconds = strtod(optarg, &end);
            if (*optarg == '\0' || *end != '\0' || errno != 0 || !(resolve_seconds > 0) ||
                resolve_seconds > 3600) {
                pmt_error("report: --resolve-timeout '%s': seconds, above 0 and at most 3600",
                          optarg);
                free(modules);
                return PMT_EXIT_USAGE;
            }
            break;
        }
        case 'p': {
            /* PID, or PID:N for the Nth program a pid ran (exec). */
            char *end, *run_end = NULL;
            errno = 0;
            long long v = strtoll(optarg, &end, 10);
            long long run = 0;
            if (*end == ':' && end[1] >= '0' && end[1] <= '9')
                run = strtoll(end + 1, &run_end, 10);
            if (*optarg == '\0' || errno != 0 || v < 1 ||
                (run_end != NULL ? *run_end != '\0' || run < 1 : *end != '\0')) {
                pmt_error("report: --pid '%s': a process id, or PID:N for the Nth program "
                          "it ran",
                          optarg);
                free(modules);
                return PMT_EXIT_USAGE;
            }
            pid = v;
            pid_run = (size_t)run;
            break;
        }
        case 'h': free(modules); fputs(report_usage, stdout); return PMT_EXIT_OK;
        default: free(modules); fputs(report_usage, stderr); return PMT_EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        pmt_error("report: %s", argc - optind == 0 ? "no stats file given" : "one stats file at a time");
        fputs(report_usage, stderr);
        free(modules);
        return PMT_EXIT_USAGE;
    }
    pmt_file_t file;
    pmt_series_t series;
    int status = main_load(argv[optind], pid, pid_run, &file, &series);
    if (status != PMT_EXIT_OK)
        free(modules);
    if (status == PMT_EXIT_USAGE)
        return status;
    if (status != PMT_EXIT_OK) {
        if (json)
            pmt_report_json(&file, NULL, NULL, stdout);
        pmt_file_free(&file);
        return status;
    }
    pmt_analysis_t *a = pmt_xrealloc(NULL, sizeof *a);
    pmt_analyze(&series, a);
    pmt_symbols_t *symbols = NULL;
    if (resolve && a->profiled) {
        char *dir = main_directory_of(file.path);
        symbols = pmt_symbols_new(dir, resolve_seconds);
        free(dir);
        for (size_t i = 0; i < module_count; i++)
            pmt_symbols_add_path(symbols, modules[i]);
        pmt_analysis_resolve(a, symbols);
    }
    free(modules);
    if (html != NULL) {
        FILE *out = fopen(html, "w");
        if (out == NULL || pmt_report_html(&series, a, out) != 0 || fclose(out) != 0) {
            pmt_error("report: cannot write %s: %s", html, strerror(errno));
            status = PMT_EXIT_DATA;
        } else {
            fprintf(stderr, "poolmalloc: wrote %s (pid %" PRId64 ", %zu snapshot%s)\n", html,
                    series.pid, series.count, series.count == 1 ? "" : "s");
        }
    }
    if (json)
        pmt_report_json(&file, &series, a, stdout);
    else if (html == NULL)
        pmt_report_text(&series, a, stdout);
    if (file.problems > 0 && status == PMT_EXIT_OK)
        status = PMT_EXIT_DATA;
    pmt_symbols_free(symbols);
    free(a);
    pmt_series_free(&series);
    pmt_file_free(&file);
    return status;
}

/* ---- diff ------------------------------------------------------------------- */

int pmt_cmd_diff(int argc, char **argv)
{
    static const struct option options[] = {
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "jh", options, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'h': fputs(diff_usage, stdout); return PMT_EXIT_OK;
        default: fputs(diff_usage, stderr); return PMT_EXIT_USAGE;
        }
    }
    if (argc - optind != 2) {
        pmt_error("diff: two stats files (or snapshots) are needed");
        fputs(diff_usage, stderr);
        return PMT_EXIT_USAGE;
    }
    pmt_file_t fa, fb;
    pmt_series_t sa, sb;
    int ra = main_load(argv[optind], 0, 0, &fa, &sa);
    if (ra == PMT_EXIT_USAGE)
        return ra;
    int rb = main_load(argv[optind + 1], 0, 0, &fb, &sb);
    if (rb == PMT_EXIT_USAGE) {
        pmt_file_free(&fa);
        return rb;
    }
    int status = PMT_EXIT_OK;
    if (ra == PMT_EXIT_OK && rb == PMT_EXIT_OK) {
        if (json)
            pmt_diff_json(&sa, &sb, stdout);
        else
            pmt_diff_text(&sa, &sb, stdout);
    } else {
        status = PMT_EXIT_DATA;
    }
    if (fa.problems > 0 || fb.problems > 0)
        status = PMT_EXIT_DATA;
    if (ra == PMT_EXIT_OK)
        pmt_series_free(&sa);
    if (rb == PMT_EXIT_OK)
        pmt_series_free(&sb);
    pmt_file_free(&fa);
    pmt_file_free(&fb);
    return status;
}

/* ---- dispatch ---------------------------------------------------------------- */

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(main_usage, stderr);
        return PMT_EXIT_USAGE;
    }
    const char *command = argv[1];
    if (strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0) {
        fputs(main_usage, stdout);
        return PMT_EXIT_OK;
    }
    if (strcmp(command, "--version") == 0) {
        printf("poolmalloc %s (reads stats schema %d)\n", PM_VERSION_STRING, PMT_SCHEMA);
        return PMT_EXIT_OK;
    }
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } commands[] = {{"run", pmt_cmd_run},
                    {"report", pmt_cmd_report},
                    {"diff", pmt_cmd_diff},
                    {"compare", pmt_cmd_compare}};
    if (strcmp(command, "help") == 0) {
        if (argc < 3) {
            fputs(main_usage, stdout);
            return PMT_EXIT_OK;
        }
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
            if (strcmp(argv[2], commands[i].name) == 0) {
                char *help[] = {argv[2], "--help", NULL};
                return commands[i].run(2, help);
            }
        pmt_error("help: no command '%s' (run, report, diff, compare)", argv[2]);
        return PMT_EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(command, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    pmt_error("no command '%s' (run, report, diff, compare; --help)", command);
    return PMT_EXIT_USAGE;
}
