/* pagecost.c — pm_bench_pagecost: what a 4 KiB page of anonymous memory
 * costs this machine's kernel (and hypervisor), in microseconds a page, so
 * that a suite's figures for giving memory back can be read against it.
 * bench/run runs it once per suite and puts its line in the Machine table.
 *
 *   pm_bench_pagecost [pages=4096] [reps=5]
 *
 * Prints one line, each figure the median over `reps` fresh mappings of
 * `pages` pages:
 *     pm-pagecost: fault_us=F populate_us=P touch_after_populate_us=T
 *                  populate_run_us=P2 touch_after_run_us=T2
 *                  purge_us=D purge_run_us=D2 purge_batch_us=D3 refault_us=R
 *   fault                  the first write to a page of a new mapping
 *   populate               madvise(MADV_POPULATE_WRITE) a page at a time, as
 *                          poolmalloc's carving does (allocator/pool.c)
 *   touch_after_populate   the first write to a page so populated: near
 *                          zero on bare metal; on a hypervisor that shadows
 *                          the guest's page tables it traps anyway
 *   populate_run,          the same, 256 KiB (an arena) at a time, as a
 *   touch_after_run        growing heap's look-ahead does (allocator/arena.c)
 *   purge                  madvise(MADV_DONTNEED) of resident pages, 16 KiB
 *                          (a pool) at a time, as a purge of one pool does
 *                          (arena.c)
 *   purge_run              the same, 256 KiB at a time, as a purge of a run
 *                          of neighbouring pools does: above 33 pages, Linux
 *                          flushes the TLB once for the range, not page by
 *                          page, which costs a trap each on a PVM guest
 *   purge_batch            every other pool of the mapping purged, 8 pools a
 *                          call, by process_madvise(PIDFD_SELF) as
 *                          poolmalloc's batches are in a process with threads
 *                          (allocator/os.c): one flush for the 8 (Linux 6.16),
 *                          of the whole TLB, their span being over 33 pages;
 *                          -1 where the kernel refuses (before Linux 6.15)
 *   refault                the first write to a page after that purge: what
 *                          memory given back costs when it is used again
 *   huge_fault,            the same first write and refault (the purge a
 *   huge_refault           whole 2 MiB at a time) in 2 MiB-aligned memory
 *                          advised MADV_HUGEPAGE, still in microseconds a
 *                          4 KiB page; huge_kib: how much of it the kernel
 *                          backed with transparent huge pages (0: none, and
 *                          then the two are small pages' figures again)
 * A figure the kernel refuses (populate before Linux 5.14) prints as -1.
 *
 * Why it exists: giving memory back is a bet that the pages will not be
 * needed again soon, and what losing the bet costs is set by the machine,
 * not the allocator. On the PVM guests this project was measured on, a page
 * came back for about 7 us (python_objects.py refaulted ~12,800 pages after
 * its first drop: 9% of its run); on bare metal it is a fraction of a
 * microsecond. In 2 MiB pages the same guests took 0.2-0.3 us a 4 KiB
 * page, first write or refault, against 11-15: what a huge-page mode for
 * large heaps would be weighed on. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define PAGE 4096u
#define POOL_BYTES 16384u
#define ARENA_BYTES 262144u
#define MAX_REPS 64

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Writes one byte in each page; returns microseconds a page. */
static double touch(volatile char *p, size_t pages, char value)
{
    double start = now_us();
    for (size_t i = 0; i < pages; i++)
        p[i * PAGE] = value;
    return (now_us() - start) / (double)pages;
}

/* madvise(advice) over [p, p + pages pages) in steps of `step` bytes;
 * microseconds a page, or -1 if the kernel refused. */
static double advise(char *p, size_t pages, size_t step, int advice)
{
    double start = now_us();
    for (size_t off = 0; off < pages * PAGE; off += step)
        if (madvise(p + off, step, advice) != 0)
            return -1.0;
    return (now_us() - start) / (double)pages;
}

#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#define PIDFD_SELF_THREAD (-10000)
#define BATCH_POOLS 8

/* Every other pool of [p, p + pages pages) purged, BATCH_POOLS pools a
 * process_madvise call; microseconds a page purged, or -1 if the kernel
 * refused. */
static double purge_batched(char *p, size_t pages)
{
    size_t pools = pages * PAGE / POOL_BYTES / 2;
    double start = now_us();
    for (size_t first = 0; first < pools; first += BATCH_POOLS) {
        struct iovec ranges[BATCH_POOLS];
        size_t count = 0;
        for (; count < BATCH_POOLS && first + count < pools; count++)
            ranges[count] = (struct iovec){p + (first + count) * 2 * POOL_BYTES, POOL_BYTES};
        if (syscall(SYS_process_madvise, PIDFD_SELF_THREAD, ranges, count, MADV_DONTNEED, 0) !=
            (long)(count * POOL_BYTES))
            return -1.0;
    }
    return (now_us() - start) / (double)(pools * POOL_BYTES / PAGE);
}

static char *fresh(size_t pages)
{
    void *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) {
        perror("pm_bench_pagecost: mmap");
        exit(1);
    }
    /* Small pages only: a transparent huge page would make the first
     * write's cost one fault in 512. */
    madvise(p, pages * PAGE, MADV_NOHUGEPAGE);
    return p;
}

#define HUGE_BYTES ((size_t)2 << 20)

/* `pages` pages, 2 MiB aligned, advised MADV_HUGEPAGE; *base is the mapping
 * to unmap, *length its length. */
static char *fresh_huge(size_t pages, char **base, size_t *length)
{
    *length = pages * PAGE + HUGE_BYTES;
    void *p = mmap(NULL, *length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("pm_bench_pagecost: mmap");
        exit(1);
    }
    *base = p;
    char *aligned = (char *)(((uintptr_t)p + HUGE_BYTES - 1) & ~(uintptr_t)(HUGE_BYTES - 1));
    madvise(aligned, pages * PAGE, MADV_HUGEPAGE); /* refused where THP is off: small pages */
    return aligned;
}

/* AnonHugePages of the whole process, KiB (0 if unreadable). */
static long anon_huge_kib(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (f == NULL)
        return 0;
    char line[256];
    long kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "AnonHugePages: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static long arg(int argc, char **argv, const char *key, long def, long min, long max)
{
    size_t len = strlen(key);
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], key, len) == 0 && argv[i][len] == '=') {
            char *end;
            long v = strtol(argv[i] + len + 1, &end, 10);
            if (*end != '\0' || v < min || v > max) {
                fprintf(stderr, "pm_bench_pagecost: %s must be %ld..%ld\n", key, min, max);
                exit(2);
            }
            return v;
        }
    }
    return def;
}

int main(int argc, char **argv)
{
    size_t pages = (size_t)arg(argc, argv, "pages", 4096, ARENA_BYTES / PAGE, 1 << 20);
    int reps = (int)arg(argc, argv, "reps", 5, 1, MAX_REPS);
    pages -= pages % (ARENA_BYTES / PAGE);
    double fault[MAX_REPS], populate[MAX_REPS], touched[MAX_REPS], populate_run[MAX_REPS],
        touched_run[MAX_REPS], purge[MAX_REPS], purge_run[MAX_REPS], purge_batch[MAX_REPS],
        refault[MAX_REPS],
        huge_fault[MAX_REPS], huge_refault[MAX_REPS];
    long huge_kib = 0;

    for (int r = 0; r < reps; r++) {
        char *p = fresh(pages);
        fault[r] = touch(p, pages, 1);
        purge[r] = advise(p, pages, POOL_BYTES, MADV_DONTNEED);
        refault[r] = touch(p, pages, 2);
        munmap(p, pages * PAGE);

        p = fresh(pages);
        populate[r] = advise(p, pages, PAGE, MADV_POPULATE_WRITE);
        touched[r] = populate[r] < 0 ? -1.0 : touch(p, pages, 3);
        munmap(p, pages * PAGE);

        p = fresh(pages);
        populate_run[r] = advise(p, pages, ARENA_BYTES, MADV_POPULATE_WRITE);
        touched_run[r] = populate_run[r] < 0 ? -1.0 : touch(p, pages, 4);
        munmap(p, pages * PAGE);

        p = fresh(pages);
        touch(p, pages, 5);
        purge_run[r] = advise(p, pages, ARENA_BYTES, MADV_DONTNEED);
        munmap(p, pages * PAGE);

        p = fresh(pages);
        touch(p, pages, 8);
        purge_batch[r] = purge_batched(p, pages);
        munmap(p, pages * PAGE);

        char *base;
        size_t length;
        p = fresh_huge(pages, &base, &length);
        huge_fault[r] = touch(p, pages, 6);
        long kib = anon_huge_kib();
        huge_kib = kib > huge_kib ? kib : huge_kib;
        madvise(p, pages * PAGE, MADV_DONTNEED);
        huge_refault[r] = touch(p, pages, 7);
        munmap(base, length);
    }
    printf("pm-pagecost: fault_us=%.2f populate_us=%.2f touch_after_populate_us=%.2f "
           "populate_run_us=%.2f touch_after_run_us=%.2f purge_us=%.2f purge_run_us=%.2f "
           "purge_batch_us=%.2f refault_us=%.2f huge_fault_us=%.2f huge_refault_us=%.2f "
           "huge_kib=%ld\n",
           median(fault, reps), median(populate, reps), median(touched, reps),
           median(populate_run, reps), median(touched_run, reps), median(purge, reps),
           median(purge_run, reps), median(purge_batch, reps), median(refault, reps),
           median(huge_fault, reps), median(huge_refault, reps), huge_kib);
    return 0;
}
