/* format.c — owns text formatting into caller-provided buffers, for the
 * fatal-error path and the stats report. Never calls malloc or stdio (which
 * may allocate), so it is safe inside malloc and in a process whose heap is
 * corrupt. Output that does not fit is cut, never overflowed. */
#include "internal.h"

#include <string.h>

void pm_buf_init(pm_buf_t *buf, char *storage, size_t capacity)
{
    buf->start = buf->at = storage;
    buf->end = storage + capacity;
}

void pm_buf_str(pm_buf_t *buf, const char *s)
{
    size_t len = strlen(s);
    size_t room = (size_t)(buf->end - buf->at);
    if (len > room)
        len = room;
    memcpy(buf->at, s, len);
    buf->at += len;
}

void pm_buf_char(pm_buf_t *buf, char c)
{
    if (buf->at < buf->end)
        *buf->at++ = c;
}

/* Right-aligned in `width` columns (0: as wide as needed). */
void pm_buf_uint(pm_buf_t *buf, uint64_t v, unsigned width)
{
    char digits[20];
    unsigned n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (unsigned pad = n; pad < width; pad++)
        pm_buf_char(buf, ' ');
    while (n > 0)
        pm_buf_char(buf, digits[--n]);
}

void pm_buf_hex(pm_buf_t *buf, uintptr_t v)
{
    char digits[2 * sizeof v];
    unsigned n = 0;
    do {
        digits[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    pm_buf_str(buf, "0x");
    while (n > 0)
        pm_buf_char(buf, digits[--n]);
}

/* A byte count for people: "812 B", "1.4 KiB", "37.0 MiB". */
void pm_buf_bytes(pm_buf_t *buf, uint64_t v)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    unsigned u = 0;
    uint64_t scale = 1;
    while (u + 1 < sizeof units / sizeof units[0] && v / scale >= 1024) {
        scale *= 1024;
        u++;
    }
    if (u == 0) {
        pm_buf_uint(buf, v, 0);
    } else {
        uint64_t tenths = (v / (scale / 1024) * 10 + 512) / 1024; /* rounded */
        pm_buf_uint(buf, tenths / 10, 0);
        pm_buf_char(buf, '.');
        pm_buf_uint(buf, tenths % 10, 0);
    }
    pm_buf_char(buf, ' ');
    pm_buf_str(buf, units[u]);
}

/* A non-negative number with `decimals` digits after the point, rounded. */
void pm_buf_fixed(pm_buf_t *buf, double v, unsigned decimals)
{
    uint64_t scale = 1;
    if (decimals > 18)
        decimals = 18;
    for (unsigned d = 0; d < decimals; d++)
        scale *= 10;
    if (!(v >= 0)) /* NaN or negative: the figures are never below zero */
        v = 0;
    if (v > 1e18 / (double)scale)
        v = 1e18 / (double)scale;
    uint64_t scaled = (uint64_t)(v * (double)scale + 0.5);
    pm_buf_uint(buf, scaled / scale, 0);
    if (decimals == 0)
        return;
    pm_buf_char(buf, '.');
    char digits[20];
    uint64_t fraction = scaled % scale;
    for (unsigned d = decimals; d-- > 0; fraction /= 10)
        digits[d] = (char)('0' + fraction % 10);
    for (unsigned d = 0; d < decimals; d++)
        pm_buf_char(buf, digits[d]);
}

/* Pads with spaces to column `width` from `line_start`. */
void pm_buf_pad_to(pm_buf_t *buf, const char *line_start, size_t width)
{
    while ((size_t)(buf->at - line_start) < width && buf->at < buf->end)
        *buf->at++ = ' ';
}

/* s as a JSON string, quotes included: '"', '\' and control characters
 * escaped. */
void pm_buf_json_string(pm_buf_t *buf, const char *s)
{
    pm_buf_char(buf, '"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            pm_buf_char(buf, '\\');
            pm_buf_char(buf, (char)c);
        } else if (c < 0x20) {
            pm_buf_str(buf, "\\u00");
            pm_buf_char(buf, "0123456789abcdef"[c >> 4]);
            pm_buf_char(buf, "0123456789abcdef"[c & 15]);
        } else {
            pm_buf_char(buf, (char)c);
        }
    }
    pm_buf_char(buf, '"');
}
