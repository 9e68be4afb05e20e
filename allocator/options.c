/* options.c — owns the POOLMALLOC_* environment: the only file that reads
 * it, once, at start-up, into pm_options, following the table in options.h.
 * Never allocates (secure_getenv returns a pointer into the environment)
 * and warns with write(2): a bad value is reported once, and the default
 * stays. */
#include "internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OPTION_DEFAULT(field, env, kind, def, min, max, help) .field = def,
pm_options_t pm_options = {PM_OPTIONS(OPTION_DEFAULT)};

static void options_warn(const char *name, const char *value, const char *why)
{
    pm_os_say("poolmalloc: ignoring ", name, "='", value, "': ", why, NULL);
}

/* A file name: secure_getenv, so a setuid program cannot be made to write
 * where its caller chooses. */
static void option_parse_PATH(const char *env, char *field, uint64_t min, uint64_t max)
{
    (void)min, (void)max;
    const char *value = secure_getenv(env);
    if (value == NULL || value[0] == '\0')
        return;
    if (strlen(value) >= PM_OPTION_PATH_MAX)
        options_warn(env, value, "path too long; no report will be written");
    else
        strcpy(field, value);
}

/* Digits to a number; false if there are none or it overflows. Leaves
 * *end after the digits. */
static bool option_digits(const char *p, const char **end, uint64_t *out)
{
    uint64_t n = 0;
    const char *start = p;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (UINT64_MAX - 9) / 10)
            return false;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    *end = p;
    *out = n;
    return p != start;
}

static void option_reject(const char *env, const char *value, const char *why, uint64_t min,
                          uint64_t max, const char *fallback)
{
    char text[160];
    pm_buf_t b;
    pm_buf_init(&b, text, sizeof text - 1);
    pm_buf_str(&b, why);
    if (min != max) {
        pm_buf_str(&b, " (");
        pm_buf_uint(&b, min, 0);
        pm_buf_str(&b, "..");
        pm_buf_uint(&b, max, 0);
        pm_buf_str(&b, ")");
    }
    pm_buf_str(&b, "; using the default ");
    pm_buf_str(&b, fallback);
    *b.at = '\0';
    options_warn(env, value, text);
}

static void option_reject_number(const char *env, const char *value, const char *why,
                                 uint64_t min, uint64_t max, uint64_t fallback)
{
    char text[32];
    pm_buf_t b;
    pm_buf_init(&b, text, sizeof text - 1);
    pm_buf_uint(&b, fallback, 0);
    *b.at = '\0';
    option_reject(env, value, why, min, max, text);
}

static void option_parse_COUNT(const char *env, uint64_t *field, uint64_t min, uint64_t max)
{
    const char *value = getenv(env);
    if (value == NULL || value[0] == '\0')
        return;
    const char *end;
    uint64_t n;
    if (!option_digits(value, &end, &n) || *end != '\0')
        option_reject_number(env, value, "not a whole number", min, max, *field);
    else if (n < min || n > max)
        option_reject_number(env, value, "out of range", min, max, *field);
    else
        *field = n;
}

/* Duration units, the largest first; a bare number is seconds. */
static const struct {
    const char *suffix;
    uint64_t ms;
} duration_units[] = {{"h", 3600000}, {"m", 60000}, {"s", 1000}, {"", 1000}, {"ms", 1}};

/* A duration as it would be written: in the largest unit it is a whole
 * number of (24h, 1s, 250ms; 0 bare). */
static void option_buf_duration(pm_buf_t *b, uint64_t ms)
{
    if (ms == 0) {
        pm_buf_str(b, "0");
        return;
    }
    size_t u = 0;
    while (duration_units[u].suffix[0] == '\0' || ms % duration_units[u].ms != 0)
        u++;
    pm_buf_uint(b, ms / duration_units[u].ms, 0);
    pm_buf_str(b, duration_units[u].suffix);
}

static void option_reject_duration(const char *env, const char *value, const char *why,
                                   uint64_t fallback_ms)
{
    char text[32];
    pm_buf_t b;
    pm_buf_init(&b, text, sizeof text - 1);
    option_buf_duration(&b, fallback_ms);
    *b.at = '\0';
    option_reject(env, value, why, 0, 0, text);
}

/* The range is written in durations, and says what a bare number means:
 * in milliseconds, 86400000 (24h) read as seconds looked like a value
 * within it. */
static void option_parse_DURATION(const char *env, uint64_t *field, uint64_t min, uint64_t max)
{
    const char *value = getenv(env);
    if (value == NULL || value[0] == '\0')
        return;
    const char *end;
    uint64_t n;
    if (option_digits(value, &end, &n)) {
        for (size_t u = 0; u < sizeof duration_units / sizeof duration_units[0]; u++) {
            if (strcmp(end, duration_units[u].suffix) != 0)
                continue;
            uint64_t ms = duration_units[u].ms;
            if (n <= UINT64_MAX / ms && n * ms >= min && n * ms <= max) {
                *field = n * ms;
                return;
            }
            char why[96];
            pm_buf_t b;
            pm_buf_init(&b, why, sizeof why - 1);
            pm_buf_str(&b, "out of range (");
            option_buf_duration(&b, min);
            pm_buf_str(&b, "..");
            option_buf_duration(&b, max);
            pm_buf_str(&b, "; a bare number is seconds)");
            *b.at = '\0';
            option_reject_duration(env, value, why, *field);
            return;
        }
    }
    option_reject_duration(env, value, "not a duration like 250ms, 2s or 1m", *field);
}

/* Whether the format's variable was set (to anything): if not, the stats
 * file's name may choose (option_format_from_name). */
static bool format_given;

static void option_parse_FORMAT(const char *env, pm_stats_format_t *field, uint64_t min,
                                uint64_t max)
{
    (void)min, (void)max;
    const char *value = getenv(env);
    if (value == NULL || value[0] == '\0')
        return;
    format_given = true;
    if (strcmp(value, "text") == 0)
        *field = PM_STATS_TEXT;
    else if (strcmp(value, "json") == 0)
        *field = PM_STATS_JSON;
    else
        option_reject(env, value, "not 'text' or 'json'", 0, 0,
                      *field == PM_STATS_JSON ? "json" : "text");
}

/* Signals a program may reasonably lend to a stats request, by name. */
static const struct {
    const char *name;
    int number;
} option_signals[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"USR1", SIGUSR1},
    {"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM}, {"TERM", SIGTERM},
    {"CHLD", SIGCHLD}, {"CONT", SIGCONT}, {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},
    {"TTOU", SIGTTOU}, {"URG", SIGURG},   {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},
    {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},
    {"PWR", SIGPWR},   {"SYS", SIGSYS},
};

static void option_parse_SIGNAL(const char *env, int *field, uint64_t min, uint64_t max)
{
    const char *value = getenv(env);
    if (value == NULL || value[0] == '\0')
        return;
    const char *name = strncmp(value, "SIG", 3) == 0 ? value + 3 : value;
    const char *end;
    uint64_t n;
    int signal = 0;
    if (option_digits(name, &end, &n) && *end == '\0') {
        signal = n <= max ? (int)n : 0;
    } else if (strncmp(name, "RTMIN+", 6) == 0 && option_digits(name + 6, &end, &n) &&
               *end == '\0' && n <= (uint64_t)(SIGRTMAX - SIGRTMIN)) {
        signal = SIGRTMIN + (int)n;
    } else {
        for (size_t i = 0; i < sizeof option_signals / sizeof option_signals[0]; i++)
            if (strcmp(name, option_signals[i].name) == 0)
                signal = option_signals[i].number;
    }
    /* SIGKILL and SIGSTOP cannot be caught. */
    if (signal < (int)min || signal > SIGRTMAX || signal == SIGKILL || signal == SIGSTOP)
        option_reject(env, value, "not a signal that can be caught (e.g. USR1, 12)", 0, 0,
                      "none");
    else
        *field = signal;
}

/* Relative stats paths are made absolute now: a daemon changes directory. */
static void option_absolute_path(char *path)
{
    if (path[0] == '\0' || path[0] == '/' || strcmp(path, "stderr") == 0)
        return;
    char joined[PM_OPTION_PATH_MAX];
    if (getcwd(joined, sizeof joined) == NULL)
        return;
    size_t dir = strlen(joined), name = strlen(path);
    if (dir + 1 + name >= sizeof joined)
        return;
    joined[dir] = '/';
    memcpy(joined + dir + 1, path, name + 1);
    memcpy(path, joined, dir + 1 + name + 1);
}

/* A stats file named *.json or *.jsonl is written as JSON unless
 * POOLMALLOC_STATS_FORMAT says otherwise: the name says what its writer
 * means to read it with (the report tool reads only JSON), and a text
 * snapshot in it was a run lost. */
static void option_format_from_name(void)
{
    if (format_given)
        return;
    const char *path = pm_options.stats_path;
    size_t length = strlen(path);
    if ((length >= 5 && strcmp(path + length - 5, ".json") == 0) ||
        (length >= 6 && strcmp(path + length - 6, ".jsonl") == 0))
        pm_options.stats_format = PM_STATS_JSON;
}

void pm_options_init(void)
{
#define OPTION_REF_PATH(field) (field)
#define OPTION_REF_COUNT(field) (&(field))
#define OPTION_REF_DURATION(field) (&(field))
#define OPTION_REF_FORMAT(field) (&(field))
#define OPTION_REF_SIGNAL(field) (&(field))
#define OPTION_PARSE(field, env, kind, def, min, max, help) \
    option_parse_##kind(env, OPTION_REF_##kind(pm_options.field), min, max);
    PM_OPTIONS(OPTION_PARSE)
    option_format_from_name();
    option_absolute_path(pm_options.stats_path);
}
