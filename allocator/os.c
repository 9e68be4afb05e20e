/* os.c — owns every conversation with the kernel about memory (mmap,
 * munmap, madvise) and the last-resort error path. Never calls malloc or stdio: messages are
 * built in stack buffers and written with write(2). */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

void *pm_os_map(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Maps `size` bytes aligned to `alignment` (a power of two >= the page size)
 * by over-mapping and trimming both ends; arenas are rare, so the extra
 * system calls are off every hot path. */
void *pm_os_map_aligned(size_t size, size_t alignment)
{
    void *p = pm_os_map(size);
    if (p == NULL)
        return NULL;
    if (((uintptr_t)p & (alignment - 1)) == 0)
        return p;
    pm_os_unmap(p, size);

    size_t span = size + alignment;
    char *raw = pm_os_map(span);
    if (raw == NULL)
        return NULL;
    char *aligned = (char *)(((uintptr_t)raw + alignment - 1) & ~(uintptr_t)(alignment - 1));
    size_t head = (size_t)(aligned - raw);
    size_t tail = span - head - size;
    if (head)
        pm_os_unmap(raw, head);
    if (tail)
        pm_os_unmap(aligned + size, tail);
    return aligned;
}

void pm_os_unmap(void *addr, size_t size)
{
    int saved = errno;
    munmap(addr, size);
    errno = saved;
}

void pm_os_purge(void *addr, size_t size)
{
    int saved = errno;
    madvise(addr, size, MADV_DONTNEED);
    errno = saved;
}

ssize_t pm_os_read_text(const char *path, char *text, size_t capacity)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, text, capacity - 1);
    close(fd);
    if (n < 0)
        return -1;
    text[n] = '\0';
    return n;
}

void pm_os_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

/* "poolmalloc: <what> at <address> (size class <n> bytes)", then abort(),
 * as glibc does for misuse it detects in its own heap. */
void pm_fatal(const char *what, const void *addr, int class_index)
{
    char storage[256];
    pm_buf_t msg;
    pm_buf_init(&msg, storage, sizeof storage - 1);
    pm_buf_str(&msg, "poolmalloc: ");
    pm_buf_str(&msg, what);
    pm_buf_str(&msg, " at ");
    pm_buf_hex(&msg, (uintptr_t)addr);
    if (class_index >= 0 && class_index < PM_CLASS_COUNT) {
        pm_buf_str(&msg, " (size class ");
        pm_buf_uint(&msg, pm_class_size((unsigned)class_index), 0);
        pm_buf_str(&msg, " bytes)");
    }
    *msg.at++ = '\n'; /* room kept by the capacity above */
    pm_os_write_all(STDERR_FILENO, msg.start, (size_t)(msg.at - msg.start));
    abort();
}
