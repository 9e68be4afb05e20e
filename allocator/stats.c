/* stats.c — owns reading the counters (pm_stats_get) and writing them as a
 * report. Never calls malloc or stdio: reports are formatted in a stack
 * buffer and written with one write(2), so a record is never torn. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

void pm_stats_get(pm_stats_t *out)
{
    memset(out, 0, sizeof *out);
    pm_heap_stats(out);
    pm_arena_stats(out);
}

#define STATS_REPORT_BYTES 8192

static void stats_format(pm_buf_t *b, const pm_stats_t *s, const char *when)
{
    pm_buf_str(b, "poolmalloc " PM_VERSION_STRING " stats (pid ");
    pm_buf_uint(b, (uint64_t)getpid(), 0);
    if (when != NULL) {
        pm_buf_str(b, ", ");
        pm_buf_str(b, when);
    }
    pm_buf_str(b, ")\n  small requests served: ");
    pm_buf_uint(b, s->small_allocated_total, 0);
    pm_buf_str(b, "\n  live in pools: ");
    pm_buf_uint(b, s->small_live_blocks, 0);
    pm_buf_str(b, " blocks, ");
    pm_buf_uint(b, s->small_live_bytes, 0);
    pm_buf_str(b, " bytes\n  arenas: ");
    pm_buf_uint(b, s->arenas_mapped, 0);
    pm_buf_str(b, " mapped (");
    pm_buf_uint(b, s->arena_bytes, 0);
    pm_buf_str(b, " bytes), peak ");
    pm_buf_uint(b, s->arenas_peak, 0);
    pm_buf_str(b, ", created ");
    pm_buf_uint(b, s->arenas_created_total, 0);
    pm_buf_str(b, ", destroyed ");
    pm_buf_uint(b, s->arenas_destroyed_total, 0);
    pm_buf_str(b, "\n\n  class  block  live blocks   live bytes  allocated total  pools\n");
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++) {
        const pm_class_stats_t *cs = &s->classes[c];
        if (cs->allocated_total == 0)
            continue;
        pm_buf_uint(b, c, 7);
        pm_buf_uint(b, cs->block_size, 7);
        pm_buf_uint(b, cs->live_blocks, 13);
        pm_buf_uint(b, cs->live_blocks * cs->block_size, 13);
        pm_buf_uint(b, cs->allocated_total, 17);
        pm_buf_uint(b, cs->pools, 7);
        pm_buf_char(b, '\n');
    }
}

static int stats_write_report(int fd, const char *when)
{
    pm_stats_t stats;
    pm_stats_get(&stats);
    char storage[STATS_REPORT_BYTES];
    pm_buf_t b;
    pm_buf_init(&b, storage, sizeof storage);
    stats_format(&b, &stats, when);
    size_t len = (size_t)(b.at - b.start);
    ssize_t n;
    do
        n = write(fd, b.start, len);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)len ? 0 : -1;
}

int pm_stats_print(int fd)
{
    return stats_write_report(fd, NULL);
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

static void stats_warn(const char *what, const char *path, int error)
{
    char storage[512];
    pm_buf_t msg;
    pm_buf_init(&msg, storage, sizeof storage - 1);
    pm_buf_str(&msg, "poolmalloc: ");
    pm_buf_str(&msg, what);
    pm_buf_str(&msg, " POOLMALLOC_STATS file '");
    pm_buf_str(&msg, path);
    pm_buf_str(&msg, "': ");
    /* strerrorname_np never allocates; strerror may (translations). */
    const char *name = strerrorname_np(error);
    pm_buf_str(&msg, name ? name : "unknown error");
    pm_buf_str(&msg, "; the program runs on without it\n");
    pm_os_write_all(STDERR_FILENO, msg.start, (size_t)(msg.at - msg.start));
}

void pm_stats_report_to_sink(const char *when)
{
    const char *pattern = pm_options.stats_path;
    if (pattern[0] == '\0')
        return;
    int saved_errno = errno;
    if (strcmp(pattern, "stderr") == 0) {
        stats_write_report(STDERR_FILENO, when);
        errno = saved_errno;
        return;
    }
    char path[sizeof pm_options.stats_path + 32];
    if (!stats_expand_path(path, sizeof path, pattern)) {
        stats_warn("cannot expand", pattern, ENAMETOOLONG);
        errno = saved_errno;
        return;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        stats_warn("cannot open", path, errno);
    } else {
        if (stats_write_report(fd, when) != 0)
            stats_warn("cannot write", path, errno);
        close(fd);
    }
    errno = saved_errno;
}
