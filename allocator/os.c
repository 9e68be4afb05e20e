/* os.c — owns every conversation with the kernel (mmap, munmap, madvise,
 * futex, the few files read and written) and the last-resort error path.
 * Never calls malloc or stdio, and never touches errno: every call goes
 * through pm_os_syscall, which returns -errno instead. The dump thread
 * may share the thread pointer, and so errno, with the program's main
 * thread (dump.c), and the allocator must leave a caller's errno alone.
 * (A sanitizer build maps and unmaps through glibc instead: os_mmap.) */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/single_threaded.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The system call instruction itself: glibc's wrappers, syscall(3)
 * included, store a failure's code in the calling thread's errno. */
long pm_os_syscall(long number, long a, long b, long c, long d, long e, long f)
{
#if defined(__x86_64__)
    register long r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
    long result;
    __asm__ volatile("syscall"
                     : "=a"(result)
                     : "a"(number), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return result;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = number, x0 __asm__("x0") = a, x1 __asm__("x1") = b,
                  x2 __asm__("x2") = c, x3 __asm__("x3") = d, x4 __asm__("x4") = e,
                  x5 __asm__("x5") = f;
    __asm__ volatile("svc 0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory", "cc");
    return x0;
#elif defined(__riscv) && __riscv_xlen == 64
    register long a7 __asm__("a7") = number, a0 __asm__("a0") = a, a1 __asm__("a1") = b,
                  a2 __asm__("a2") = c, a3 __asm__("a3") = d, a4 __asm__("a4") = e,
                  a5 __asm__("a5") = f;
    __asm__ volatile("ecall"
                     : "+r"(a0)
                     : "r"(a7), "r"(a1), "r"(a2), "r"(a3), "r"(a4), "r"(a5)
                     : "memory");
    return a0;
#else
#error "poolmalloc: allocator/os.c has no system call sequence for this architecture"
#endif
}

/* A sanitizer learns that a range was unmapped, or mapped afresh, only from
 * its mmap and munmap interceptors, which the system call instruction passes
 * by. TSan then keeps the shadow of a range given back (by us or by glibc,
 * whose own calls it never sees either) and reports the first write into
 * what is mapped there next as racing with the last access to what was
 * there before, though the kernel ordered the two. In a sanitizer build,
 * mappings made and removed go through glibc's wrappers, errno kept (there
 * the dump thread is an ordinary thread, with an errno of its own). A
 * mapping laid over a live range (pm_os_decommit) stays a system call: its
 * racing readers are meant, and an interceptor would count the new
 * mapping as a write. */
static long os_mmap(void *addr, size_t size, int prot, int flags)
{
#ifdef PM_SANITIZED
    if (!(flags & MAP_FIXED)) {
        int saved = errno;
        void *p = mmap(addr, size, prot, flags, -1, 0);
        long result = p == MAP_FAILED ? -errno : (long)p;
        errno = saved;
        return result;
    }
#endif
    return PM_OS_CALL(SYS_mmap, addr, size, prot, flags, -1, 0);
}

void pm_os_unmap(void *addr, size_t size)
{
#ifdef PM_SANITIZED
    /* In whole pages, as the kernel unmaps them: TSan (clang 14) clears
     * the shadow of whole pages only, and kept its record of the mmap over
     * the last page of a 5,000-byte mapping; a thread that later wrote to
     * what glibc mapped there was reported racing with that mmap (a stress
     * run's idle take, whose scratch map is sized to the blocks). */
    int saved = errno;
    munmap(addr, (size + PM_OS_PAGE_SIZE - 1) & ~(PM_OS_PAGE_SIZE - 1));
    errno = saved;
#else
    PM_OS_CALL(SYS_munmap, addr, size);
#endif
}

static void *os_map(void *addr, size_t size, int prot, int flags)
{
    long p = os_mmap(addr, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | flags);
    return p < 0 && p > -4096 ? NULL : (void *)p;
}

void *pm_os_map(size_t size)
{
    return os_map(NULL, size, PROT_READ | PROT_WRITE, 0);
}

/* Maps `size` bytes aligned to `alignment` (a power of two >= the page size)
 * by over-mapping and trimming both ends; arenas are rare, so the extra
 * system calls are off every hot path. */
static void *os_map_aligned(size_t size, size_t alignment, int prot)
{
    void *p = os_map(NULL, size, prot, 0);
    if (p == NULL)
        return NULL;
    if (((uintptr_t)p & (alignment - 1)) == 0)
        return p;
    pm_os_unmap(p, size);

    size_t span = size + alignment;
    char *raw = os_map(NULL, span, prot, 0);
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

void *pm_os_map_aligned(size_t size, size_t alignment)
{
    return os_map_aligned(size, alignment, PROT_READ | PROT_WRITE);
}

/* Read-only and never written until committed: no page is backed, and a
 * read anywhere in it finds the shared zero page. */
void *pm_os_reserve(size_t size, size_t alignment)
{
    return os_map_aligned(size, alignment, PROT_READ);
}

bool pm_os_commit(void *addr, size_t size)
{
    return PM_OS_CALL(SYS_mprotect, addr, size, PROT_READ | PROT_WRITE) == 0;
}

/* One mmap over the range drops its pages and its write permission at once,
 * and a racing reader sees the old page or the zero page, never a hole. If
 * the kernel refuses (the mapping count, say), the pages still go, and the
 * range stays writable and reads as zeros, which is all a reader needs. */
void pm_os_decommit(void *addr, size_t size)
{
    if (os_map(addr, size, PROT_READ, MAP_FIXED) != addr)
        pm_os_purge(addr, size);
}

bool pm_os_address_space_limited(void)
{
    struct rlimit limit;
    return PM_OS_CALL(SYS_prlimit64, 0, RLIMIT_AS, NULL, &limit) != 0 ||
           limit.rlim_cur != RLIM_INFINITY;
}

/* A thread stack: `size` bytes above a page that faults, so that running
 * off its end stops the process rather than writing over what lies below. */
void *pm_os_map_stack(size_t size)
{
    char *p = pm_os_map(size + PM_OS_PAGE_SIZE);
    if (p == NULL)
        return NULL;
    PM_OS_CALL(SYS_mprotect, p, PM_OS_PAGE_SIZE, PROT_NONE);
    return p + PM_OS_PAGE_SIZE;
}

bool pm_os_purge(void *addr, size_t size)
{
    return PM_OS_CALL(SYS_madvise, addr, size, MADV_DONTNEED) == 0;
}

#ifndef SYS_process_madvise
#define SYS_process_madvise 440 /* Linux 5.10, on every architecture */
#endif
/* The calling thread, without a descriptor (Linux 6.15): nothing to open,
 * and nothing a fork child could inherit that still names its parent. */
#define PIDFD_SELF_THREAD (-10000)
/* Set once the vectored call is refused for good: before Linux 6.15
 * (EBADF: no PIDFD_SELF), before 6.13 (EINVAL: MADV_DONTNEED not allowed
 * through it), before 5.10 (ENOSYS), under a seccomp filter (EPERM, or
 * found by PR_GET_SECCOMP first: a filter may kill on a call it does not
 * know, and a filter, once installed, stays). */
static bool purge_vector_off;

/* Whether the process is under a seccomp filter. Asked before every
 * vectored call, as a filter may come after start-up: one that allows prctl
 * and would kill on process_madvise is found so. One installed after
 * start-up that kills on this prctl too (a browser-style sandbox that
 * allows only the prctl options it knows) kills the process here, at its
 * first batch: POOLMALLOC_PURGE_BATCH=0 is for such programs. */
static bool os_seccomp_on(void) { return PM_OS_CALL(SYS_prctl, PR_GET_SECCOMP) != 0; }

/* A purge's cost is mostly the TLB flush that follows it, and Linux flushes
 * a range of up to 33 pages page by page, the whole TLB above that, on
 * every CPU the process runs on: with threads, each call interrupts the
 * other CPUs. Where the hypervisor shadows the guest's page tables (PVM,
 * the machines poolmalloc is measured on), a page's flush traps too: a
 * 16 KiB madvise costs 18 us on one thread and 55 with a second one
 * running, 8 of them 138 and 457 us. Since Linux 6.16 one process_madvise
 * call gathers its ranges under one flush, of the whole TLB when they are
 * far apart: 8 pools scattered over an arena took 23 and 28 us. But a
 * whole flush costs the program the walks that refill it: one thread
 * reading 256 MiB at random took 40 us longer over its next 2000 reads,
 * and pm_bench_phases' single thread 9% longer in all. So the batch goes
 * in one call only once the process has had a second thread
 * (__libc_single_threaded), whose interrupts it saves: 32 threads that
 * each churn a window and exit, 18% faster (bench/results/purge-batches.md). */
bool pm_os_purges_vectored(void)
{
    return !__libc_single_threaded && pm_options.purge_batch &&
           !__atomic_load_n(&purge_vector_off, __ATOMIC_RELAXED);
}

void pm_os_purge_flush(pm_os_purge_batch_t *batch)
{
    unsigned count = batch->count;
    batch->count = 0;
    if (count > 1 && pm_os_purges_vectored()) {
        if (os_seccomp_on()) {
            __atomic_store_n(&purge_vector_off, true, __ATOMIC_RELAXED);
        } else {
            size_t total = 0;
            for (unsigned i = 0; i < count; i++)
                total += batch->ranges[i].iov_len;
            long done = PM_OS_CALL(SYS_process_madvise, PIDFD_SELF_THREAD, batch->ranges, count,
                                   MADV_DONTNEED, 0);
            if (done == (long)total)
                return;
            if (done == -EBADF || done == -EINVAL || done == -ENOSYS || done == -EPERM)
                __atomic_store_n(&purge_vector_off, true, __ATOMIC_RELAXED);
        }
    }
    /* One range, or the vectored call did not do them all: MADV_DONTNEED
     * again over a range already given back only finds nothing there. */
    for (unsigned i = 0; i < count; i++)
        pm_os_purge(batch->ranges[i].iov_base, batch->ranges[i].iov_len);
}

void pm_os_purge_add(pm_os_purge_batch_t *batch, void *addr, size_t size)
{
    if (batch->count > 0) {
        struct iovec *last = &batch->ranges[batch->count - 1];
        if ((char *)last->iov_base + last->iov_len == (char *)addr) {
            last->iov_len += size;
            return;
        }
    }
    if (batch->count == PM_OS_PURGE_BATCH)
        pm_os_purge_flush(batch);
    batch->ranges[batch->count++] = (struct iovec){.iov_base = addr, .iov_len = size};
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; glibc 2.36's headers have it, older ones not */
#endif
/* Set once the kernel has refused the advice (EINVAL before Linux 5.14,
 * EPERM under a seccomp filter that allows only older advice, ENOMEM when
 * memory is short): carving's writes then fault the pages in, as before. */
static bool populate_off;

/* On a virtual machine that traps each page fault, a fault costs more than
 * a call that populates the page: on the 2-vCPU machines poolmalloc is
 * measured on (bench/pagecost.c), 11 us a page faulted in by a write,
 * 2.4 us a page populated 4 KiB at a time, 1.2 us 16 KiB at a time. Where
 * the hypervisor shadows the guest's page tables (PVM, kernel 6.18) the
 * first write to a populated page traps all the same, for 4.8 us: a page
 * then costs 7.2 us populated, against 11 faulted in. */
bool pm_os_populate(void *addr, size_t size)
{
    if (__atomic_load_n(&populate_off, __ATOMIC_RELAXED))
        return false;
    if (PM_OS_CALL(SYS_madvise, addr, size, MADV_POPULATE_WRITE) != 0) {
        __atomic_store_n(&populate_off, true, __ATOMIC_RELAXED);
        return false;
    }
    return true;
}

bool pm_os_can_populate(void) { return !__atomic_load_n(&populate_off, __ATOMIC_RELAXED); }

bool pm_os_wipe_on_fork(void *page, size_t size)
{
    if (getauxval(AT_PAGESZ) != PM_OS_PAGE_SIZE)
        return false;
    return PM_OS_CALL(SYS_madvise, page, size, MADV_WIPEONFORK) == 0;
}

int pm_os_open(const char *path, int flags, mode_t mode)
{
    return (int)PM_OS_CALL(SYS_openat, AT_FDCWD, path, flags | O_CLOEXEC, mode);
}

void pm_os_close(int fd) { PM_OS_CALL(SYS_close, fd); }

ssize_t pm_os_write(int fd, const void *buf, size_t len)
{
    long n;
    do
        n = PM_OS_CALL(SYS_write, fd, buf, len);
    while (n == -EINTR);
    return n;
}

ssize_t pm_os_read_text(const char *path, char *text, size_t capacity)
{
    int fd = pm_os_open(path, O_RDONLY, 0);
    if (fd < 0)
        return -1;
    long n = PM_OS_CALL(SYS_read, fd, text, capacity - 1);
    pm_os_close(fd);
    if (n < 0)
        return -1;
    text[n] = '\0';
    return n;
}

void pm_os_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = pm_os_write(fd, buf, len);
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

/* Private futexes: the words are never shared with another process. */
int pm_os_futex_wait(_Atomic uint32_t *word, uint32_t expected, const struct timespec *deadline)
{
    if (deadline == NULL)
        return (int)PM_OS_CALL(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL);
    /* WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline. */
    return (int)PM_OS_CALL(SYS_futex, word, FUTEX_WAIT_BITSET_PRIVATE, expected, deadline, NULL,
                           FUTEX_BITSET_MATCH_ANY);
}

void pm_os_futex_wake(_Atomic uint32_t *word, int waiters)
{
    PM_OS_CALL(SYS_futex, word, FUTEX_WAKE_PRIVATE, waiters);
}

void pm_os_yield(void) { pm_os_syscall(SYS_sched_yield, 0, 0, 0, 0, 0, 0); }

/* CLOCK_MONOTONIC_COARSE: a vDSO read of the last tick, no system call and
 * no errno; its few milliseconds of resolution are plenty for delays of
 * ~1 s. */
uint64_t pm_os_coarse_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

/* Not the vDSO: fork does not copy the page table entries of its pages, so
 * a fork child's first vDSO read takes two page faults, ~50 us on a
 * hypervisor that traps each (bench/results/fork-cost.md), where the
 * system call takes ~1 us: for the fork child's handler, which would
 * otherwise pay them in every child, most of which exec or exit at once. */
void pm_os_monotonic(struct timespec *now)
{
    PM_OS_CALL(SYS_clock_gettime, CLOCK_MONOTONIC, now);
}

void pm_os_say(const char *first, ...)
{
    char storage[512];
    pm_buf_t line;
    pm_buf_init(&line, storage, sizeof storage - 1);
    va_list parts;
    va_start(parts, first);
    for (const char *part = first; part != NULL; part = va_arg(parts, const char *))
        pm_buf_str(&line, part);
    va_end(parts);
    *line.at++ = '\n'; /* room kept by the capacity above */
    pm_os_write_all(STDERR_FILENO, line.start, (size_t)(line.at - line.start));
}

bool pm_validate_failed(const char *where, const char *check)
{
    pm_os_say("poolmalloc: invalid: ", where, ": ", check, NULL);
    return false;
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
