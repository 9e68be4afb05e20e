/* options.c — owns the POOLMALLOC_* environment: the only file that reads
 * it, once, at start-up, into pm_options, following the table in options.h.
 * Never allocates (secure_getenv returns a pointer into the environment)
 * and warns with write(2): a bad value is reported once, and the default
 * stays. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OPTION_DEFAULT(field, env, kind, def, min, max, help) .field = def,
pm_options_t pm_options = {PM_OPTIONS(OPTION_DEFAULT)};

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

static void option_parse_COUNT(const char *env, uint64_t *field, uint64_t min, uint64_t max)
{
    const char *value = getenv(env);
    if (value == NULL || value[0] == '\0')
        return;
    uint64_t n = 0;
    const char *p = value;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (UINT64_MAX - 9) / 10) {
            n = UINT64_MAX;
            break;
        }
        n = n * 10 + (uint64_t)(*p - '0');
    }
    char why[96];
    pm_buf_t b;
    pm_buf_init(&b, why, sizeof why - 1);
    if (*p != '\0' || p == value) {
        pm_buf_str(&b, "not a whole number; using the default ");
        pm_buf_uint(&b, *field, 0);
    } else if (n < min || n > max) {
        pm_buf_str(&b, "out of range ");
        pm_buf_uint(&b, min, 0);
        pm_buf_str(&b, "..");
        pm_buf_uint(&b, max, 0);
        pm_buf_str(&b, "; using the default ");
        pm_buf_uint(&b, *field, 0);
    } else {
        *field = n;
        return;
    }
    *b.at = '\0';
    options_warn(env, value, why);
}

void pm_options_init(void)
{
#define OPTION_PARSE_ADDRESS(field, env, kind, def, min, max, help) \
    option_parse_##kind(env, OPTION_REF_##kind(pm_options.field), min, max);
#define OPTION_REF_PATH(field) (field)
#define OPTION_REF_COUNT(field) (&(field))
    PM_OPTIONS(OPTION_PARSE_ADDRESS)
}
