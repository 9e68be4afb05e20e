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
