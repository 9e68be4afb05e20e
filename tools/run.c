/* run.c — owns running the user's program: `poolmalloc run` (under the
 * preloaded library with stats on, then a summary) and `poolmalloc compare`
 * (under each installed allocator in turn, timed). Also finds
 * libpoolmalloc.so next to the tool and the peer allocators on the system.
 * Never changes the program's own arguments, standard streams (run) or exit
 * status (run passes it through; a signal becomes 128 + its number). */
#include "pmtool.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PMT_MULTIARCH
#define PMT_MULTIARCH "x86_64-linux-gnu"
#endif

extern char **environ;

enum { RUN_EXEC_FAILED = 127, RUN_NOT_EXECUTABLE = 126, RUN_PATH_MAX = 4096 };
#define RUN_STATS_PATH_MAX 256 /* PM_OPTION_PATH_MAX: the library ignores longer */
#define RUN_DEFAULT_INTERVAL "100ms"

/* ---- finding libraries ----------------------------------------------------- */

static int run_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, R_OK) == 0;
}

/* libpoolmalloc.so next to the tool: the build tree puts the tool in
 * build/tools/ and the library in build/; an install puts them in bin/
 * and lib/. Returns 0 with the absolute path in out, or -1 with the places
 * looked at in looked. */
static int run_find_library(char *out, size_t size, char *looked, size_t looked_size)
{
    char self[RUN_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    looked[0] = '\0';
    if (n <= 0) {
        snprintf(looked, looked_size, "/proc/self/exe unreadable: %s", strerror(errno));
        return -1;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash == NULL)
        return -1;
    *slash = '\0';
    static const char *const relative[] = {
        "../lib/libpoolmalloc.so",                   /* installed: bin/ and lib/ */
        "../libpoolmalloc.so",                       /* build tree */
        "../lib/" PMT_MULTIARCH "/libpoolmalloc.so", /* a multiarch install */
        "../lib64/libpoolmalloc.so",
        "libpoolmalloc.so",                          /* side by side */
    };
    size_t used = 0;
    for (size_t i = 0; i < sizeof relative / sizeof relative[0]; i++) {
        char candidate[RUN_PATH_MAX];
        int length = snprintf(candidate, sizeof candidate, "%s/%s", self, relative[i]);
        if (length < 0 || (size_t)length >= sizeof candidate)
            continue;
        if (run_is_file(candidate)) {
            char *real = realpath(candidate, NULL);
            snprintf(out, size, "%s", real ? real : candidate);
            free(real);
            return 0;
        }
        int w = snprintf(looked + used, looked_size - used, "%s%s", used ? ", " : "", candidate);
        if (w > 0 && (size_t)w < looked_size - used)
            used += (size_t)w;
    }
    return -1;
}

static int run_library(const char *given, char *out, size_t size)
{
    if (given != NULL) {
        if (!run_is_file(given)) {
            pmt_error("--library %s: not a readable file", given);
            return -1;
        }
        char *real = realpath(given, NULL);
        snprintf(out, size, "%s", real ? real : given);
        free(real);
        return 0;
    }
    char looked[4 * RUN_PATH_MAX];
    if (run_find_library(out, size, looked, sizeof looked) == 0)
        return 0;
    pmt_error("cannot find libpoolmalloc.so next to this program (looked at %s); "
              "name it with --library FILE",
              looked);
    return -1;
}

/* ---- the environment ------------------------------------------------------- */

typedef struct run_env {
    char **entry;
    size_t count, capacity;
} run_env_t;

static void run_env_init(run_env_t *env)
{
    memset(env, 0, sizeof *env);
    for (char **e = environ; *e; e++) {
        if (env->count + 2 > env->capacity) {
            env->capacity = env->capacity ? env->capacity * 2 : 64;
            env->entry = pmt_xrealloc(env->entry, env->capacity * sizeof *env->entry);
        }
        env->entry[env->count++] = *e;
    }
    if (env->entry == NULL)
        env->entry = pmt_xrealloc(NULL, (env->capacity = 8) * sizeof *env->entry);
    env->entry[env->count] = NULL;
}

static void run_env_unset(run_env_t *env, const char *name)
{
    size_t length = strlen(name);
    for (size_t i = 0; i < env->count;) {
        if (strncmp(env->entry[i], name, length) == 0 && env->entry[i][length] == '=')
            env->entry[i] = env->entry[--env->count];
        else
            i++;
    }
    env->entry[env->count] = NULL;
}

/* Sets name=value; the string is allocated and kept until exit. */
static void run_env_set(run_env_t *env, const char *name, const char *value)
{
    run_env_unset(env, name);
    size_t size = strlen(name) + strlen(value) + 2;
    char *entry = pmt_xrealloc(NULL, size);
    snprintf(entry, size, "%s=%s", name, value);
    if (env->count + 2 > env->capacity) {
        env->capacity *= 2;
        env->entry = pmt_xrealloc(env->entry, env->capacity * sizeof *env->entry);
    }
    env->entry[env->count++] = entry;
    env->entry[env->count] = NULL;
}

/* ---- one child ------------------------------------------------------------- */

typedef struct run_result {
    pid_t pid;
    int status;       /* from wait4 */
    int exec_errno;   /* nonzero: the program could not be started */
    double wall_ms;
    uint64_t maxrss_bytes;
    double cpu_ms;
} run_result_t;

static volatile sig_atomic_t run_child_pid;

static void run_forward(int sig)
{
    if (run_child_pid > 0)
        kill((pid_t)run_child_pid, sig);
}

static double run_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1000.0 + (double)t.tv_nsec / 1e6;
}

/* Starts argv[0] (looked up in PATH) with envp; fds >= 0 replace standard
 * input, output, error. If stats_slot is not NULL, the child writes
 * "POOLMALLOC_STATS=<prefix><its pid>.jsonl" into it before exec (the
 * parent reserved the room). When `interactive`, the tool ignores SIGINT
 * and SIGQUIT (the child, in the same process group, gets them) and passes
 * SIGTERM and SIGHUP on, so it can print the summary after the child ends. */
static int run_child(char **argv, char **envp, int in, int out, int err, char *stats_slot,
                     const char *stats_prefix, int interactive, run_result_t *r)
{
    memset(r, 0, sizeof *r);
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        pmt_error("pipe: %s", strerror(errno));
        return -1;
    }
    struct sigaction ignore = {.sa_handler = SIG_IGN}, forward = {.sa_handler = run_forward},
                     old_int, old_quit, old_term, old_hup;
    if (interactive) {
        sigaction(SIGINT, &ignore, &old_int);
        sigaction(SIGQUIT, &ignore, &old_quit);
        sigaction(SIGTERM, &forward, &old_term);
        sigaction(SIGHUP, &forward, &old_hup);
    }
    fflush(NULL);
    double start = run_now_ms();
    pid_t pid = fork();
    if (pid < 0) {
        pmt_error("fork: %s", strerror(errno));
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    if (pid == 0) {
        if (interactive) {
            sigaction(SIGINT, &old_int, NULL);
            sigaction(SIGQUIT, &old_quit, NULL);
            sigaction(SIGTERM, &old_term, NULL);
            sigaction(SIGHUP, &old_hup, NULL);
        }
        if ((in >= 0 && dup2(in, 0) < 0) || (out >= 0 && dup2(out, 1) < 0) ||
            (err >= 0 && dup2(err, 2) < 0))
            _exit(RUN_EXEC_FAILED);
        if (stats_slot != NULL)
            snprintf(stats_slot, RUN_STATS_PATH_MAX + 32, "POOLMALLOC_STATS=%s%ld.jsonl",
                     stats_prefix, (long)getpid());
        execvpe(argv[0], argv, envp);
        int e = errno;
        ssize_t ignored = write(pipefd[1], &e, sizeof e);
        (void)ignored;
        _exit(e == ENOENT ? RUN_EXEC_FAILED : RUN_NOT_EXECUTABLE);
    }
    run_child_pid = pid;
    close(pipefd[1]);
    int e = 0;
    ssize_t got;
    while ((got = read(pipefd[0], &e, sizeof e)) < 0 && errno == EINTR)
        ;
    close(pipefd[0]);
    r->pid = pid;
    r->exec_errno = got == (ssize_t)sizeof e ? e : 0;
    struct rusage usage;
    memset(&usage, 0, sizeof usage);
    while (wait4(pid, &r->status, 0, &usage) < 0) {
        if (errno != EINTR) {
            pmt_error("wait: %s", strerror(errno));
            break;
        }
    }
    r->wall_ms = run_now_ms() - start;
    run_child_pid = 0;
    if (interactive) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGQUIT, &old_quit, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGHUP, &old_hup, NULL);
    }
    r->maxrss_bytes = (uint64_t)usage.ru_maxrss * 1024;
    r->cpu_ms = (double)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000.0 +
                (double)(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1000.0;
    return 0;
}

static int run_exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}

static const char *run_describe(int status)
{
    static char text[64];
    if (WIFEXITED(status))
        snprintf(text, sizeof text, "exited with %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(text, sizeof text, "was killed by SIG%s%s", sigabbrev_np(WTERMSIG(status))
                                                                 ? sigabbrev_np(WTERMSIG(status))
                                                                 : "?",
                 WCOREDUMP(status) ? " (core dumped)" : "");
    else
        snprintf(text, sizeof text, "ended (status %d)", status);
    return text;
}

/* ---- run ------------------------------------------------------------------- */

static const char run_usage[] =
    "usage: poolmalloc run [--stats FILE] [--interval T] [--profile] [--library LIB]\n"
    "                      [--quiet] [--] PROGRAM [ARGS...]\n"
    "\n"
    "Runs PROGRAM with libpoolmalloc.so preloaded and stats snapshots on, passes its\n"
    "exit status through (a signal becomes 128 + its number), and prints a short\n"
    "summary on standard error when it ends.\n"
    "\n"
    "  --stats FILE    where the JSON Lines snapshots go (emptied first; %p in FILE\n"
    "                  becomes each process's pid). Default: ./poolmalloc.PID.jsonl\n"
    "                  (in $TMPDIR if the current directory is not writable)\n"
    "  --interval T    time between snapshots: 250ms, 2s, 5m, 1h (10ms..24h);\n"
    "                  default " RUN_DEFAULT_INTERVAL "\n"
    "  --profile       also set POOLMALLOC_PROFILE=1: sample allocations and record\n"
    "                  their call stacks; the summary then shows the top three\n"
    "                  sites and the leaks at exit, 'poolmalloc report' all of them\n"
    "  --library LIB   the libpoolmalloc.so to preload (default: the one next to\n"
    "                  this program, ../lib/ or ../ of its directory)\n"
    "  -q, --quiet     no summary\n"
    "\n"
    "Other POOLMALLOC_* variables of the environment (POOLMALLOC_RETAIN_POOLS,\n"
    "POOLMALLOC_RESERVE_ARENAS, ...) pass to the program unchanged. Processes the\n"
    "program starts write to the same file; the summary is of PROGRAM itself, and\n"
    "names the process that allocated the most if that is another one.\n"
    "\n"
    "examples:\n"
    "  poolmalloc run -- python3 script.py\n"
    "  poolmalloc run --profile --stats app.jsonl -- ./app\n"
    "  poolmalloc run --stats build.jsonl --interval 1s -- make -j4\n"
    "  POOLMALLOC_PURGE_DELAY=0 poolmalloc run --stats p0.jsonl -- ./server --once\n";

enum { RUN_SITES_SHOWN = 3 };
#define RUN_RESOLVE_SECONDS 10.0 /* addr2line for the summary, at most */

/* A site in one line: its bytes, share, and the frame that names it. */
static void run_site(const pmt_analysis_t *a, const pmt_site_row_t *row, int leak)
{
    const pmt_site_t *s = row->site;
    char figure[96];
    if (leak)
        snprintf(figure, sizeof figure, "%s in ~%s blocks (%s)", pmt_bytes(s->live_bytes),
                 pmt_count(s->live_count), pmt_percent(row->live_share));
    else
        snprintf(figure, sizeof figure, "%s (%s)", pmt_bytes(s->alloc_bytes),
                 pmt_percent(row->alloc_share));
    const char *label = s->stack->depth > 0
                            ? pmt_frame_label(a->symbols, s->stack->frame[pmt_site_label_frame(s->stack)])
                            : "(no frame)";
    fprintf(stderr, "     %-18s  %s\n", figure, label);
}

/* The top sites by bytes allocated and the leaks, resolved with the
 * program's own file among the modules. */
static void run_sites(pmt_analysis_t *a, const char *program_path, const char *stats_path)
{
    if (!a->profiled) {
        fprintf(stderr, "   --profile: no snapshot has a profile (POOLMALLOC_PROFILE=1 needs "
                        "libunwind8: is it installed?)\n");
        return;
    }
    char *dir = strdup(stats_path);
    if (dir == NULL)
        pmt_out_of_memory();
    char *slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
    pmt_symbols_t *symbols = pmt_symbols_new(slash ? dir : ".", RUN_RESOLVE_SECONDS);
    free(dir);
    if (program_path != NULL)
        pmt_symbols_add_path(symbols, program_path);
    pmt_analysis_resolve(a, symbols);
    if (a->profile != NULL) {
        fprintf(stderr, "   allocation sites: %s samples, one per %s; top by bytes allocated:\n",
                pmt_count(a->profile->samples), pmt_bytes(a->profile->rate_bytes));
        for (size_t i = 0; i < a->by_alloc.rows && i < RUN_SITES_SHOWN; i++)
            run_site(a, &a->by_alloc.row[i], 0);
        if (a->by_alloc.rows == 0)
            fprintf(stderr, "     (nothing sampled: the program allocated less than about "
                            "%s)\n",
                    pmt_bytes(a->profile->rate_bytes));
    }
    if (a->leak_at == NULL)
        fprintf(stderr, "   leaks: no exit snapshot with a profile, so no leak report\n");
    else if (a->leaks.rows == 0 && a->leak_at->profile->samples == 0)
        fprintf(stderr, "   leaks: nothing was sampled\n");
    else if (a->leaks.rows == 0)
        fprintf(stderr, "   leaks: none, every sampled block was freed by exit\n");
    else {
        fprintf(stderr, "   leaks: %zu%s site%s with sampled blocks live at exit%s\n",
                a->leaks.rows, a->leak_at->profile->leaks.count > a->leaks.rows ? "+" : "",
                a->leaks.rows == 1 ? "" : "s", a->leaks.rows > RUN_SITES_SHOWN ? "; the top three:" : ":");
        for (size_t i = 0; i < a->leaks.rows && i < RUN_SITES_SHOWN; i++)
            run_site(a, &a->leaks.row[i], 1);
    }
    const char *notes = pmt_symbols_notes(symbols);
    if (notes[0])
        pmt_wrap(stderr, "   file:line: ", 5, notes);
    a->symbols = NULL;
    pmt_symbols_free(symbols);
}

/* The file execvp runs for name: name itself if it has a '/', else the
 * first executable of that name in $PATH. NULL if none (caller frees). */
static char *run_program_path(const char *name)
{
    if (strchr(name, '/') != NULL)
        return realpath(name, NULL);
    const char *path = getenv("PATH");
    char *copy = strdup(path != NULL ? path : "/usr/local/bin:/usr/bin:/bin");
    if (copy == NULL)
        pmt_out_of_memory();
    char *found = NULL;
    for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir && !found;
         dir = strtok_r(NULL, ":", &save)) {
        char candidate[RUN_PATH_MAX];
        int n = snprintf(candidate, sizeof candidate, "%s/%s", dir, name);
        if (n > 0 && (size_t)n < sizeof candidate && run_is_file(candidate) &&
            access(candidate, X_OK) == 0)
            found = realpath(candidate, NULL);
    }
    free(copy);
    return found;
}

static void run_summary(const char *program, const run_result_t *r, const char *stats_path,
                        int profile)
{
    fprintf(stderr, "\n== poolmalloc: %s %s after %s\n", program, run_describe(r->status),
            pmt_duration((int64_t)r->wall_ms));
    pmt_file_t file;
    pmt_read_file(stats_path, &file);
    pmt_series_t series;
    char error[512];
    pmt_at_t last = {PMT_AT_LAST, 0};
    int found = pmt_select(&file, r->pid, 0, last, &series, error, sizeof error) == 0;
    if (!found && file.count > 0) {
        found = pmt_select(&file, 0, 0, last, &series, error, sizeof error) == 0;
        if (found)
            fprintf(stderr, "   pid %ld wrote no snapshot; showing pid %" PRId64 ", which did\n",
                    (long)r->pid, series.pid);
    }
    if (!found) {
        if (file.count == 0)
            fprintf(stderr,
                    "   no snapshot in %s: %s did not load libpoolmalloc.so (a statically "
                    "linked or setuid program ignores LD_PRELOAD), or ended before writing one\n",
                    stats_path, program);
        else
            fprintf(stderr, "   %s\n", error);
        /* A file missing or empty is said above, and the reader would only
         * say it again; bad lines are worth showing. */
        struct stat written;
        if (stat(stats_path, &written) == 0 && written.st_size > 0)
            pmt_print_problems(&file, stderr);
        pmt_file_free(&file);
        return;
    }
    pmt_analysis_t *a = pmt_xrealloc(NULL, sizeof *a);
    pmt_analyze(&series, a);
    fprintf(stderr, "   peak RSS %s, final RSS %s%s\n", pmt_bytes(a->rss_peak),
            pmt_bytes(a->rss_final), a->ended ? "" : " (no exit snapshot: last one shown)");
    if (a->snapshots > 1)
        fprintf(stderr, "   live bytes %s at the end, %s at the peak (%s)\n", pmt_bytes(a->live),
                pmt_bytes(a->live_peak), pmt_duration(a->live_peak_ms));
    else /* a program that ends within the interval */
        fprintf(stderr,
                "   live bytes %s at the end, the only snapshot "
                "(a shorter --interval shows the peak)\n",
                pmt_bytes(a->live));
    fprintf(stderr, "   pools %s (fragmentation %s), arenas %s (%s; %s at peak)\n",
            pmt_bytes(a->pool_bytes), pmt_percent(a->fragmentation), pmt_bytes(a->arena_bytes),
            pmt_count(a->at->s.arenas_mapped), pmt_count(a->at->s.arenas_peak));
    pmt_wrap(stderr, "   ", 3, a->verdict);
    char *program_path = profile ? run_program_path(program) : NULL;
    if (profile)
        run_sites(a, program_path, stats_path);
    pmt_print_problems(&file, stderr);
    fprintf(stderr, "   %zu snapshot%s in %s", a->snapshots, a->snapshots == 1 ? "" : "s",
            stats_path);
    if (series.runs > 1) {
        fprintf(stderr, " (and %zu other process run%s", series.runs - 1,
                series.runs == 2 ? "" : "s");
        /* What the report shows by default: a wrapper's summary (make, a
         * shell script) points to the process that did the allocating. */
        if (series.busiest_pid != series.pid)
            fprintf(stderr, "; pid %" PRId64 " allocated the most", series.busiest_pid);
        else if (!series.busiest) /* the program exec'd the one shown */
            fprintf(stderr,
                    "; the program this pid ran before allocated the most: --pid %" PRId64
                    ":%zu",
                    series.pid, series.busiest_pid_run);
        fputc(')', stderr);
    }
    char pid_option[RUN_PATH_MAX + 64] = "";
    if (series.runs > 1)
        snprintf(pid_option, sizeof pid_option, " --pid %" PRId64, series.pid);
    /* The report finds programs in $PATH by itself; others it is told of. */
    if (profile && program_path != NULL && strchr(program, '/') != NULL) {
        size_t used = strlen(pid_option);
        int plain = strspn(program_path, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                         "0123456789/._+-") == strlen(program_path);
        snprintf(pid_option + used, sizeof pid_option - used, plain ? " --module %s" : " --module '%s'",
                 program_path);
    }
    free(program_path);
    fprintf(stderr, "\n   details: poolmalloc report%s %s\n", pid_option, stats_path);
    fprintf(stderr, "   charts:  poolmalloc report%s --html report.html %s\n", pid_option,
            stats_path);
    free(a);
    pmt_series_free(&series);
    pmt_file_free(&file);
}

/* Makes path absolute (the library would too, but the summary reads it
 * from here). */
static int run_absolute(const char *path, char *out, size_t size)
{
    if (path[0] == '/') {
        snprintf(out, size, "%s", path);
        return 0;
    }
    char cwd[RUN_PATH_MAX];
    if (getcwd(cwd, sizeof cwd) == NULL)
        return -1;
    int length = snprintf(out, size, "%s/%s", cwd, path);
    if (length < 0 || (size_t)length >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

int pmt_cmd_run(int argc, char **argv)
{
    static const struct option options[] = {
        {"stats", required_argument, NULL, 's'},  {"interval", required_argument, NULL, 'i'},
        {"profile", no_argument, NULL, 'p'},      {"library", required_argument, NULL, 'L'},
        {"quiet", no_argument, NULL, 'q'},        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *stats = NULL, *interval = RUN_DEFAULT_INTERVAL, *library = NULL;
    int profile = 0, quiet = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+s:i:pL:qh", options, NULL)) != -1) {
        switch (c) {
        case 's': stats = optarg; break;
        case 'i': interval = optarg; break;
        case 'p': profile = 1; break;
        case 'L': library = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': fputs(run_usage, stdout); return PMT_EXIT_OK;
        default: fputs(run_usage, stderr); return PMT_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        pmt_error("run: no program given");
        fputs(run_usage, stderr);
        return PMT_EXIT_USAGE;
    }
    int64_t interval_ms = pmt_parse_duration_ms(interval);
    if (interval_ms < 10 || interval_ms > 86400000) {
        pmt_error("run: --interval '%s': a time from 10ms to 24h, written 250ms, 2s, 5m or 1h",
                  interval);
        return PMT_EXIT_USAGE;
    }
    char lib[RUN_PATH_MAX];
    if (run_library(library, lib, sizeof lib) != 0)
        return PMT_EXIT_USAGE;

    /* Where snapshots go. */
    char path[RUN_PATH_MAX], prefix[RUN_PATH_MAX] = "";
    int per_process = 0;
    if (stats != NULL) {
        if (run_absolute(stats, path, sizeof path) != 0) {
            pmt_error("run: cannot make --stats %s absolute: %s", stats, strerror(errno));
            return PMT_EXIT_USAGE;
        }
        per_process = strstr(path, "%p") != NULL;
        if (!per_process) {
            int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (fd < 0) {
                pmt_error("run: cannot write --stats %s: %s", path, strerror(errno));
                return PMT_EXIT_USAGE;
            }
            close(fd);
        }
    } else {
        char cwd[RUN_PATH_MAX];
        const char *dir = getcwd(cwd, sizeof cwd) && access(cwd, W_OK) == 0 ? cwd : NULL;
        const char *tmpdir = getenv("TMPDIR");
        if (dir == NULL)
            dir = tmpdir != NULL && *tmpdir != '\0' ? tmpdir : "/tmp";
        int length = snprintf(prefix, sizeof prefix, "%s/poolmalloc.", dir);
        if (length < 0 || (size_t)length >= sizeof prefix)
            prefix[0] = '\0'; /* caught below: too long */
    }
    if ((stats == NULL && prefix[0] == '\0') ||
        strlen(stats ? path : prefix) + (stats ? 0 : 16) >= RUN_STATS_PATH_MAX) {
        pmt_error("run: the stats path is too long for libpoolmalloc.so (at most %d bytes): %s",
                  RUN_STATS_PATH_MAX - 1, stats ? path : prefix);
        return PMT_EXIT_USAGE;
    }

    run_env_t env;
    run_env_init(&env);
    const char *preload = getenv("LD_PRELOAD");
    size_t size = strlen(lib) + (preload ? strlen(preload) : 0) + 2;
    char *value = pmt_xrealloc(NULL, size);
    snprintf(value, size, "%s%s%s", lib, preload && *preload ? " " : "", preload ? preload : "");
    run_env_set(&env, "LD_PRELOAD", value);
    free(value);
    run_env_set(&env, "POOLMALLOC_STATS_FORMAT", "json");
    run_env_set(&env, "POOLMALLOC_STATS_INTERVAL", interval);
    if (profile)
        run_env_set(&env, "POOLMALLOC_PROFILE", "1");
    char *slot = NULL;
    if (stats != NULL) {
        run_env_set(&env, "POOLMALLOC_STATS", path);
    } else {
        /* The child names the file after its own pid: room reserved here. */
        run_env_set(&env, "POOLMALLOC_STATS", "");
        slot = pmt_xrealloc(NULL, RUN_STATS_PATH_MAX + 32);
        snprintf(slot, RUN_STATS_PATH_MAX + 32, "POOLMALLOC_STATS=");
        env.entry[env.count - 1] = slot;
    }

    run_result_t r;
    if (run_child(argv + optind, env.entry, -1, -1, -1, slot, prefix, 1, &r) != 0)
        return RUN_EXEC_FAILED;
    if (r.exec_errno != 0) {
        pmt_error("run: cannot run '%s': %s", argv[optind], strerror(r.exec_errno));
        return r.exec_errno == ENOENT ? RUN_EXEC_FAILED : RUN_NOT_EXECUTABLE;
    }
    char file[RUN_PATH_MAX + 32];
    if (stats == NULL) {
        snprintf(file, sizeof file, "%s%ld.jsonl", prefix, (long)r.pid);
    } else if (per_process) {
        /* %p as the library expands it: the child's pid. */
        size_t o = 0;
        for (const char *p = path; *p && o + 24 < sizeof file; p++) {
            if (p[0] == '%' && p[1] == 'p') {
                o += (size_t)snprintf(file + o, sizeof file - o, "%ld", (long)r.pid);
                p++;
            } else {
                file[o++] = *p;
            }
        }
        file[o] = '\0';
    } else {
        snprintf(file, sizeof file, "%s", path);
    }
    if (!quiet)
        run_summary(argv[optind], &r, file, profile);
    return run_exit_code(r.status);
}

/* ---- compare --------------------------------------------------------------- */

static const char compare_usage[] =
    "usage: poolmalloc compare [-n RUNS] [--allocators LIST] [--library LIB]\n"
    "                          [--show-output] [--json] [--] PROGRAM [ARGS...]\n"
    "\n"
    "Runs PROGRAM under poolmalloc, glibc, jemalloc, mimalloc and tcmalloc (those\n"
    "installed), alternating, RUNS times each, and prints the median wall time, peak\n"
    "RSS and CPU time of each: fragmentation benchmarking of your own program.\n"
    "\n"
    "  -n, --runs RUNS      runs per allocator (1..1000; default 5)\n"
    "  --allocators LIST    comma-separated subset, e.g. poolmalloc,glibc\n"
    "  --library LIB        the libpoolmalloc.so to use (default: next to this program)\n"
    "  --show-output        let the program's standard output and error through\n"
    "                       (default: discarded; the error output of a failed run is\n"
    "                       shown)\n"
    "  --json               the results as JSON on standard output\n"
    "\n"
    "Standard input is /dev/null. POOLMALLOC_STATS is unset during the runs (stats\n"
    "cost time); the other POOLMALLOC_* variables of the environment apply to the\n"
    "poolmalloc runs. LD_PRELOAD is replaced by each allocator's library. Exit\n"
    "status: 0 when every run ended the same way, 1 when they did not.\n"
    "\n"
    "examples:\n"
    "  poolmalloc compare -- python3 -c 'x = [str(i) for i in range(10**6)]'\n"
    "  poolmalloc compare -n 11 --allocators poolmalloc,glibc,jemalloc -- ./build/server --bench\n";

typedef struct compare_allocator {
    const char *name;
    const char *const *files; /* library file names to look for; NULL = glibc */
    char library[RUN_PATH_MAX];
    int installed, wanted;
    double *wall_ms, *cpu_ms;
    uint64_t *rss;
    int *status;
    size_t runs;
    int failure_shown;
    char *preload; /* "LD_PRELOAD=<library>", NULL for glibc */
} compare_allocator_t;

static const char *const compare_jemalloc[] = {"libjemalloc.so.2", "libjemalloc.so", NULL};
static const char *const compare_mimalloc[] = {"libmimalloc.so.2", "libmimalloc.so", NULL};
static const char *const compare_tcmalloc[] = {"libtcmalloc_minimal.so.4", "libtcmalloc.so.4",
                                               "libtcmalloc_minimal.so", NULL};
static const char *const compare_none[] = {NULL};

static int compare_find(const char *const *files, char *out, size_t size)
{
    static const char *const dirs[] = {"/usr/lib/" PMT_MULTIARCH, "/lib/" PMT_MULTIARCH,
                                       "/usr/lib64", "/usr/lib", "/usr/local/lib", NULL};
    for (const char *const *d = dirs; *d; d++)
        for (const char *const *f = files; *f; f++) {
            snprintf(out, size, "%s/%s", *d, *f);
            if (run_is_file(out))
                return 0;
        }
    return -1;
}

/* Wall and CPU times: programs timed here are often short. */
static const char *compare_ms(double ms)
{
    static char text[8][32];
    static unsigned next;
    char *out = text[next++ % 8];
    if (ms < 10)
        snprintf(out, sizeof text[0], "%.2f ms", ms);
    else if (ms < 1000)
        snprintf(out, sizeof text[0], "%.1f ms", ms);
    else
        snprintf(out, sizeof text[0], "%s", pmt_duration((int64_t)ms));
    return out;
}

static int compare_by_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static double compare_median(const double *values, size_t n, double *min, double *max)
{
    double *v = pmt_xrealloc(NULL, n * sizeof *v);
    memcpy(v, values, n * sizeof *v);
    qsort(v, n, sizeof *v, compare_by_double);
    double m = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    *min = v[0];
    *max = v[n - 1];
    free(v);
    return m;
}

static void compare_show_failure(compare_allocator_t *a, size_t run, int status, int err_fd)
{
    if (a->failure_shown++)
        return;
    fprintf(stderr, "poolmalloc: compare: under %s, run %zu %s", a->name, run + 1,
            run_describe(status));
    if (err_fd < 0) {
        fputc('\n', stderr);
        return;
    }
    char tail[2048];
    off_t end = lseek(err_fd, 0, SEEK_END);
    off_t from = end > (off_t)sizeof tail - 1 ? end - (off_t)sizeof tail + 1 : 0;
    ssize_t n = pread(err_fd, tail, sizeof tail - 1, from);
    if (n > 0) {
        tail[n] = '\0';
        fprintf(stderr, "; the end of its error output:\n%s%s", tail,
                tail[n - 1] == '\n' ? "" : "\n");
    } else {
        fputc('\n', stderr);
    }
}

int pmt_cmd_compare(int argc, char **argv)
{
    static const struct option options[] = {
        {"runs", required_argument, NULL, 'n'},     {"allocators", required_argument, NULL, 'a'},
        {"library", required_argument, NULL, 'L'},  {"show-output", no_argument, NULL, 'o'},
        {"json", no_argument, NULL, 'j'},           {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    long runs = 5;
    const char *library = NULL, *only = NULL;
    int show = 0, json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+n:a:L:ojh", options, NULL)) != -1) {
        switch (c) {
        case 'n': {
            char *end;
            runs = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || runs < 1 || runs > 1000) {
                pmt_error("compare: -n '%s': a number of runs from 1 to 1000", optarg);
                return PMT_EXIT_USAGE;
            }
            break;
        }
        case 'a': only = optarg; break;
        case 'L': library = optarg; break;
        case 'o': show = 1; break;
        case 'j': json = 1; break;
        case 'h': fputs(compare_usage, stdout); return PMT_EXIT_OK;
        default: fputs(compare_usage, stderr); return PMT_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        pmt_error("compare: no program given");
        fputs(compare_usage, stderr);
        return PMT_EXIT_USAGE;
    }
    compare_allocator_t all[] = {
        {.name = "poolmalloc", .files = compare_none}, {.name = "glibc", .files = NULL},
        {.name = "jemalloc", .files = compare_jemalloc}, {.name = "mimalloc", .files = compare_mimalloc},
        {.name = "tcmalloc", .files = compare_tcmalloc}};
    size_t kinds = sizeof all / sizeof all[0];
    for (size_t k = 0; k < kinds; k++)
        all[k].wanted = only == NULL;
    for (const char *p = only; p && *p;) {
        size_t length = strcspn(p, ",");
        size_t k = 0;
        while (k < kinds && !(strlen(all[k].name) == length && strncmp(all[k].name, p, length) == 0))
            k++;
        if (k == kinds) {
            pmt_error("compare: --allocators: unknown allocator '%.*s' (poolmalloc, glibc, "
                      "jemalloc, mimalloc, tcmalloc)",
                      (int)length, p);
            return PMT_EXIT_USAGE;
        }
        all[k].wanted = 1;
        p += length + (p[length] == ',');
    }
    if (all[0].wanted && run_library(library, all[0].library, sizeof all[0].library) != 0)
        return PMT_EXIT_USAGE;
    all[0].installed = 1;
    all[1].installed = 1;
    for (size_t k = 2; k < kinds; k++)
        all[k].installed = compare_find(all[k].files, all[k].library, sizeof all[k].library) == 0;

    compare_allocator_t *used[8];
    size_t m = 0;
    for (size_t k = 0; k < kinds; k++) {
        if (!all[k].wanted || !all[k].installed)
            continue;
        all[k].wall_ms = pmt_xrealloc(NULL, (size_t)runs * sizeof(double));
        all[k].cpu_ms = pmt_xrealloc(NULL, (size_t)runs * sizeof(double));
        all[k].rss = pmt_xrealloc(NULL, (size_t)runs * sizeof(uint64_t));
        all[k].status = pmt_xrealloc(NULL, (size_t)runs * sizeof(int));
        used[m++] = &all[k];
    }
    if (m == 0) {
        pmt_error("compare: none of the allocators asked for is installed");
        return PMT_EXIT_USAGE;
    }

    run_env_t env;
    run_env_init(&env);
    run_env_unset(&env, "POOLMALLOC_STATS");
    const char *preload = getenv("LD_PRELOAD");
    if (preload != NULL && *preload != '\0' && !json)
        fprintf(stderr, "poolmalloc compare: LD_PRELOAD=%s is replaced by each allocator's "
                        "library\n",
                preload);
    run_env_unset(&env, "LD_PRELOAD");
    /* Each run: the base environment, then LD_PRELOAD=<its library> or nothing. */
    size_t base_count = env.count;
    env.entry = pmt_xrealloc(env.entry, (base_count + 2) * sizeof *env.entry);
    for (size_t i = 0; i < m; i++) {
        if (used[i]->files == NULL)
            continue;
        size_t size = strlen(used[i]->library) + sizeof "LD_PRELOAD=";
        char *entry = pmt_xrealloc(NULL, size);
        snprintf(entry, size, "LD_PRELOAD=%s", used[i]->library);
        used[i]->preload = entry;
    }
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    char err_template[] = "/tmp/poolmalloc-compare.XXXXXX";
    int err_fd = show ? -1 : mkostemp(err_template, O_CLOEXEC);
    if (err_fd >= 0)
        unlink(err_template);
    int tty = isatty(2) && !json;
    int failed = 0;
    for (long round = 0; round < runs; round++) {
        for (size_t i = 0; i < m; i++) {
            /* Each round starts with the next allocator, so none always runs
             * first (cold caches) or right after the same neighbour. */
            compare_allocator_t *a = used[(i + (size_t)round) % m];
            env.entry[base_count] = a->preload;
            env.entry[base_count + 1] = NULL;
            if (tty)
                fprintf(stderr, "\r  run %ld/%ld: %-10s", round + 1, runs, a->name);
            if (err_fd >= 0 && ftruncate(err_fd, 0) != 0)
                err_fd = -1;
            run_result_t r;
            if (run_child(argv + optind, env.entry, devnull, show ? -1 : devnull, err_fd, NULL,
                          NULL, 0, &r) != 0)
                return RUN_EXEC_FAILED;
            if (r.exec_errno != 0) {
                if (tty)
                    fputc('\n', stderr);
                pmt_error("compare: cannot run '%s': %s", argv[optind], strerror(r.exec_errno));
                return r.exec_errno == ENOENT ? RUN_EXEC_FAILED : RUN_NOT_EXECUTABLE;
            }
            size_t n = a->runs++;
            a->wall_ms[n] = r.wall_ms;
            a->cpu_ms[n] = r.cpu_ms;
            a->rss[n] = r.maxrss_bytes;
            a->status[n] = r.status;
            if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0) {
                if (tty)
                    fputc('\n', stderr);
                compare_show_failure(a, n, r.status, err_fd);
            }
        }
    }
    if (tty)
        fprintf(stderr, "\r%40s\r", "");
    /* Every run must end as the first one did. */
    int first_status = used[0]->status[0];
    for (size_t i = 0; i < m; i++)
        for (size_t n = 0; n < used[i]->runs; n++)
            if (used[i]->status[n] != first_status)
                failed = 1;

    /* glibc is the yardstick when it ran. */
    double base_wall = 0, base_rss = 0;
    for (size_t i = 0; i < m; i++) {
        if (used[i]->files == NULL) {
            double lo, hi, *rss = pmt_xrealloc(NULL, (size_t)runs * sizeof *rss);
            for (long n = 0; n < runs; n++)
                rss[n] = (double)used[i]->rss[n];
            base_wall = compare_median(used[i]->wall_ms, used[i]->runs, &lo, &hi);
            base_rss = compare_median(rss, used[i]->runs, &lo, &hi);
            free(rss);
        }
    }
    json_t *doc = NULL, *list = NULL;
    if (json) {
        doc = json_object();
        json_t *program = json_array();
        for (int i = optind; i < argc; i++)
            json_array_append_new(program, json_string(argv[i]));
        json_object_set_new(doc, "report", json_string("poolmalloc compare"));
        json_object_set_new(doc, "report_version", json_integer(1));
        json_object_set_new(doc, "program", program);
        json_object_set_new(doc, "runs", json_integer(runs));
        list = json_array();
    } else {
        printf("poolmalloc compare:");
        for (int i = optind; i < argc; i++)
            printf(" %s", argv[i]);
        printf("\n(%ld run%s each, alternating; medians)\n", runs, runs == 1 ? "" : "s");
        printf("\n%-11s %13s %22s %13s %11s %9s %9s\n", "allocator", "wall median",
               "min .. max", "peak RSS", "CPU", "time", "RSS");
        printf("%-11s %13s %22s %13s %11s %9s %9s\n", "", "", "", "median", "median",
               base_wall > 0 ? "vs glibc" : "", base_rss > 0 ? "vs glibc" : "");
    }
    for (size_t i = 0; i < m; i++) {
        compare_allocator_t *a = used[i];
        double wall_lo, wall_hi, rss_lo, rss_hi, cpu_lo, cpu_hi;
        double *rss = pmt_xrealloc(NULL, a->runs * sizeof *rss);
        for (size_t n = 0; n < a->runs; n++)
            rss[n] = (double)a->rss[n];
        double wall = compare_median(a->wall_ms, a->runs, &wall_lo, &wall_hi);
        double peak = compare_median(rss, a->runs, &rss_lo, &rss_hi);
        double cpu = compare_median(a->cpu_ms, a->runs, &cpu_lo, &cpu_hi);
        if (json) {
            json_t *o = json_object();
            json_object_set_new(o, "name", json_string(a->name));
            json_object_set_new(o, "library", a->files ? json_string(a->library) : json_null());
            json_t *walls = json_array(), *rsses = json_array(), *cpus = json_array(),
                   *statuses = json_array();
            for (size_t n = 0; n < a->runs; n++) {
                json_array_append_new(walls, json_real(a->wall_ms[n]));
                json_array_append_new(rsses, json_integer((json_int_t)a->rss[n]));
                json_array_append_new(cpus, json_real(a->cpu_ms[n]));
                json_array_append_new(statuses, json_integer(run_exit_code(a->status[n])));
            }
            json_object_set_new(o, "wall_ms", json_pack("{s:f, s:f, s:f, s:o}", "median", wall,
                                                        "min", wall_lo, "max", wall_hi, "runs", walls));
            json_object_set_new(o, "peak_rss_bytes",
                                json_pack("{s:I, s:I, s:I, s:o}", "median", (json_int_t)peak,
                                          "min", (json_int_t)rss_lo, "max", (json_int_t)rss_hi,
                                          "runs", rsses));
            json_object_set_new(o, "cpu_ms", json_pack("{s:f, s:f, s:f, s:o}", "median", cpu,
                                                       "min", cpu_lo, "max", cpu_hi, "runs", cpus));
            json_object_set_new(o, "exit_statuses", statuses);
            json_array_append_new(list, o);
        } else {
            char range[48], vs_time[16] = "", vs_rss[16] = "";
            snprintf(range, sizeof range, "%s .. %s", compare_ms(wall_lo), compare_ms(wall_hi));
            if (base_wall > 0)
                snprintf(vs_time, sizeof vs_time, "%.2fx", wall / base_wall);
            if (base_rss > 0)
                snprintf(vs_rss, sizeof vs_rss, "%.2fx", peak / base_rss);
            printf("%-11s %13s %22s %13s %11s %9s %9s\n", a->name, compare_ms(wall), range,
                   pmt_bytes((uint64_t)peak), compare_ms(cpu), vs_time, vs_rss);
        }
        free(rss);
    }
    if (json) {
        json_object_set_new(doc, "allocators", list);
        json_t *missing = json_array();
        for (size_t k = 0; k < kinds; k++)
            if (all[k].wanted && !all[k].installed)
                json_array_append_new(missing, json_string(all[k].name));
        json_object_set_new(doc, "not_installed", missing);
        json_object_set_new(doc, "same_ending", json_boolean(!failed));
        pmt_json_dump(doc, stdout);
    } else {
        int any = 0;
        for (size_t k = 0; k < kinds; k++)
            if (all[k].wanted && !all[k].installed)
                printf("%s%s", any++ ? ", " : "not installed: ", all[k].name);
        if (any)
            printf(" (Debian: libjemalloc2, libmimalloc2.0, libtcmalloc-minimal4)\n");
        if (failed)
            printf("the runs did not all end the same way: see above\n");
        else
            printf("every run %s\n", run_describe(first_status));
    }
    if (err_fd >= 0)
        close(err_fd);
    if (devnull >= 0)
        close(devnull);
    return failed ? PMT_EXIT_DATA : PMT_EXIT_OK;
}
