/* options.c — owns the POOLMALLOC_* environment: the only file that reads
 * it, once, at start-up, into pm_options. Never allocates (secure_getenv
 * returns a pointer into the environment) and warns with write(2). */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

pm_options_t pm_options;

static void options_warn(const char *name, const char *value, const char *why)
{
    char storage[512];
    pm_buf_t msg;
    pm_buf_init(&msg, storage, sizeof storage - 1);
    pm_buf_str(&msg, "poolmalloc: ignoring ");
    pm_buf_str(&msg, name);
    pm_buf_str(&msg, "='");
    pm_buf_str(&msg, value);
    pm_buf_str(&msg, "': ");
    pm_buf_str(&msg, why);
    *msg.at++ = '\n';
    pm_os_write_all(STDERR_FILENO, msg.start, (size_t)(msg.at - msg.start));
}

void pm_options_init(void)
{
    /* A file path: secure_getenv, so a setuid program cannot be made to
     * write where its caller chooses. */
    const char *stats = secure_getenv("POOLMALLOC_STATS");
    pm_options.stats_path[0] = '\0';
    if (stats != NULL && stats[0] != '\0') {
        if (strlen(stats) >= sizeof pm_options.stats_path)
            options_warn("POOLMALLOC_STATS", stats, "path too long, no report will be written");
        else
            strcpy(pm_options.stats_path, stats);
    }
}
