/* units.c — owns how the tool writes quantities for people (bytes in binary
 * units, durations, percentages, grouped counts) and reads durations.
 * Never prints; single-threaded (rotating static buffers). */
#include "pmtool.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum { UNITS_SLOTS = 16, UNITS_SLOT_SIZE = 48 };

static char *units_slot(void)
{
    static char slots[UNITS_SLOTS][UNITS_SLOT_SIZE];
    static unsigned next;
    return slots[next++ % UNITS_SLOTS];
}

const char *pmt_bytes(uint64_t bytes)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    char *out = units_slot();
    if (bytes < 1024) {
        snprintf(out, UNITS_SLOT_SIZE, "%" PRIu64 " B", bytes);
        return out;
    }
    double value = (double)bytes;
    int u = 0;
    while (value >= 1024.0 && u < 6) {
        value /= 1024.0;
        u++;
    }
    /* Three significant digits: 1.25 MiB, 12.5 MiB, 125 MiB. */
    int decimals = value < 10.0 ? 2 : value < 100.0 ? 1 : 0;
    snprintf(out, UNITS_SLOT_SIZE, "%.*f %s", decimals, value, unit[u]);
    return out;
}

const char *pmt_signed_bytes(int64_t bytes)
{
    uint64_t magnitude = bytes < 0 ? (uint64_t)0 - (uint64_t)bytes : (uint64_t)bytes;
    /* Copied out first: gcc -O3 cannot tell two slots apart (-Wrestrict). */
    char text[UNITS_SLOT_SIZE];
    memcpy(text, pmt_bytes(magnitude), sizeof text);
    char *out = units_slot();
    snprintf(out, UNITS_SLOT_SIZE, "%s%.*s", bytes < 0 ? "-" : bytes > 0 ? "+" : "",
             UNITS_SLOT_SIZE - 2, text);
    return out;
}

const char *pmt_duration(int64_t ms)
{
    char *out = units_slot();
    if (ms < 0)
        ms = 0;
    if (ms < 1000)
        snprintf(out, UNITS_SLOT_SIZE, "%" PRId64 " ms", ms);
    else if (ms < 60000)
        snprintf(out, UNITS_SLOT_SIZE, "%.2f s", (double)ms / 1000.0);
    else if (ms < 3600000)
        snprintf(out, UNITS_SLOT_SIZE, "%" PRId64 " m %02" PRId64 " s", ms / 60000,
                 ms / 1000 % 60);
    else
        snprintf(out, UNITS_SLOT_SIZE, "%" PRId64 " h %02" PRId64 " m", ms / 3600000,
                 ms / 60000 % 60);
    return out;
}

const char *pmt_percent(double ratio)
{
    char *out = units_slot();
    if (!isfinite(ratio))
        ratio = 0;
    snprintf(out, UNITS_SLOT_SIZE, "%.1f%%", ratio * 100.0);
    return out;
}

const char *pmt_count(uint64_t n)
{
    char digits[24];
    char *out = units_slot();
    int length = snprintf(digits, sizeof digits, "%" PRIu64, n);
    size_t o = 0;
    for (int i = 0; i < length; i++) {
        if (i > 0 && (length - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
    return out;
}

int64_t pmt_parse_duration_ms(const char *text)
{
    if (text == NULL || *text < '0' || *text > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || value > 86400000ull)
        return -1;
    int64_t scale;
    if (strcmp(end, "ms") == 0)
        scale = 1;
    else if (strcmp(end, "s") == 0 || *end == '\0')
        scale = 1000;
    else if (strcmp(end, "m") == 0)
        scale = 60000;
    else if (strcmp(end, "h") == 0)
        scale = 3600000;
    else
        return -1;
    if (value > 86400000ull / (uint64_t)scale)
        return -1;
    return (int64_t)value * scale;
}

/* A unit after a number ("16.0 KiB", "5.0 %") stays on the number's line. */
static int units_is_unit(const char *p)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB",
                                        "ms", "s", "m", "h", NULL};
    for (const char *const *u = units; *u; u++) {
        size_t n = strlen(*u);
        if (strncmp(p, *u, n) == 0 && (p[n] == '\0' || p[n] == ' ' || p[n] == ',' ||
                                       p[n] == ')' || p[n] == ':' || p[n] == '.' || p[n] == ';'))
            return 1;
    }
    return 0;
}

void pmt_wrap(FILE *out, const char *first, int indent, const char *text)
{
    int column = fprintf(out, "%s", first);
    int line_start = 1;
    for (const char *p = text; *p;) {
        while (*p == ' ')
            p++;
        int word = (int)strcspn(p, " ");
        if (word == 0)
            break;
        if (p[word] == ' ' && p[word - 1] >= '0' && p[word - 1] <= '9' &&
            units_is_unit(p + word + 1))
            word += 1 + (int)strcspn(p + word + 1, " ");
        if (!line_start && column + 1 + word > PMT_TEXT_WIDTH) {
            fprintf(out, "\n%*s", indent, "");
            column = indent;
            line_start = 1;
        }
        if (!line_start) {
            fputc(' ', out);
            column++;
        }
        fwrite(p, 1, (size_t)word, out);
        column += word;
        line_start = 0;
        p += word;
    }
    fputc('\n', out);
}

void pmt_error(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fputs("poolmalloc: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
}
