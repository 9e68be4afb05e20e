/* bench.h — what every workload shares (cxx.cpp includes it too): key=value
 * arguments, a seeded PRNG, touching and checking blocks, bookkeeping memory,
 * the report line.
 * Everything is static inline, so a workload pays only for what it uses.
 * Never calls malloc itself: bookkeeping arrays come from mmap, so every
 * malloc/free a workload makes is one of the pairs it reports (callgrind's
 * call counts and the reported `pairs` agree exactly).
 *
 * Arguments: `name key=value ...`, each value an unsigned integer; an
 * unknown key is an error, so a typo in bench/run's table fails loudly.
 *
 * The report: one line on stdout, after the measured work,
 *     pm-bench: workload=churn pairs=2000000 threads=1 ...
 * bench/run reads every `key=value` of it; `pairs` (malloc+free pairs
 * made by the workload) is what callgrind's instruction count is divided
 * by, and any other numeric key is kept as an extra metric (medians in the
 * CSV), e.g. the RSS after a phase of a fragmentation workload
 * (bench_rss_kib, which never mallocs), and a ratio may be printed with
 * bench_report_real. Lines `pm-series: key=value ...` are samples of a time
 * series (cache.c), kept per run and drawn by bench/run. Every other line a
 * workload prints must not depend on the allocator: bench/run compares it
 * across runs. */
#ifndef PM_BENCH_H
#define PM_BENCH_H

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define BENCH_MAX_ARGS 16

/* ---- failing ------------------------------------------------------------- */
__attribute__((noreturn, format(printf, 1, 2))) static inline void
bench_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pm-bench: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* ---- arguments ------------------------------------------------------------ */
typedef struct bench_args {
    int count;
    const char *key[BENCH_MAX_ARGS];
    size_t key_len[BENCH_MAX_ARGS];
    uint64_t value[BENCH_MAX_ARGS];
    int used[BENCH_MAX_ARGS];
} bench_args_t;

static inline void bench_args_parse(bench_args_t *args, int argc, char **argv)
{
    memset(args, 0, sizeof *args);
    for (int i = 1; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        char *end = NULL;
        if (eq == NULL || eq == argv[i] || args->count == BENCH_MAX_ARGS)
            bench_fail("bad argument '%s' (want key=value)", argv[i]);
        uint64_t v = strtoull(eq + 1, &end, 0);
        if (end == eq + 1 || *end != '\0')
            bench_fail("bad value in '%s' (want an unsigned integer)", argv[i]);
        args->key[args->count] = argv[i];
        args->key_len[args->count] = (size_t)(eq - argv[i]);
        args->value[args->count] = v;
        args->count++;
    }
}

/* The value of `key`, or `fallback`; marks the key as known. */
static inline uint64_t bench_arg(bench_args_t *args, const char *key, uint64_t fallback)
{
    for (int i = 0; i < args->count; i++) {
        if (strlen(key) == args->key_len[i] &&
            memcmp(key, args->key[i], args->key_len[i]) == 0) {
            args->used[i] = 1;
            return args->value[i];
        }
    }
    return fallback;
}

/* Call after every bench_arg: rejects keys the workload does not know. */
static inline void bench_args_done(const bench_args_t *args)
{
    for (int i = 0; i < args->count; i++)
        if (!args->used[i])
            bench_fail("unknown argument '%s'", args->key[i]);
}

/* ---- PRNG: xoshiro256** seeded by splitmix64 (Blackman & Vigna) ---------- */
typedef struct bench_rng {
    uint64_t s[4];
} bench_rng_t;

static inline uint64_t bench_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Each thread gets its own stream: seed the generator with (seed, stream). */
static inline void bench_rng_seed(bench_rng_t *rng, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95u);
    for (int i = 0; i < 4; i++)
        rng->s[i] = bench_splitmix64(&x);
}

static inline uint64_t bench_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t bench_rng_next(bench_rng_t *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = bench_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = bench_rotl(s[3], 45);
    return result;
}

/* Uniform in [0, n) (Lemire's multiply-shift; the bias is < n / 2^64). */
static inline uint64_t bench_rng_below(bench_rng_t *rng, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)bench_rng_next(rng) * n) >> 64);
}

/* Uniform in [lo, hi]. */
static inline size_t bench_rng_range(bench_rng_t *rng, size_t lo, size_t hi)
{
    return lo + (size_t)bench_rng_below(rng, (uint64_t)(hi - lo + 1));
}

/* ---- blocks ---------------------------------------------------------------- */
/* What a workload remembers about a live block. */
typedef struct bench_block {
    unsigned char *ptr;
    uint32_t size;
    uint8_t tag;
} bench_block_t;

static inline uint8_t bench_tag(uint64_t n)
{
    return (uint8_t)(n * 0x9e3779b97f4a7c15u >> 56) | 1;
}

/* Writes the first and last byte of a fresh block, so an allocator cannot
 * hand out memory it never backs (and the pages are really touched). */
static inline bench_block_t bench_block_tagged(unsigned char *ptr, size_t size, uint8_t tag)
{
    ptr[0] = tag;
    ptr[size - 1] = tag;
    return (bench_block_t){.ptr = ptr, .size = (uint32_t)size, .tag = tag};
}

/* malloc, then tag (bench_block_tagged). */
static inline bench_block_t bench_alloc(size_t size, uint8_t tag)
{
    unsigned char *ptr = (unsigned char *)malloc(size);
    if (ptr == NULL)
        bench_fail("malloc(%zu) returned NULL", size);
    return bench_block_tagged(ptr, size, tag);
}

/* The same through calloc, after checking that the block came zeroed (its
 * first, middle and last bytes: a cheap check, the same for every allocator). */
static inline bench_block_t bench_calloc(size_t size, uint8_t tag)
{
    unsigned char *ptr = (unsigned char *)calloc(1, size);
    if (ptr == NULL)
        bench_fail("calloc(1, %zu) returned NULL", size);
    if (ptr[0] != 0 || ptr[size / 2] != 0 || ptr[size - 1] != 0)
        bench_fail("calloc(1, %zu) returned %p, not zeroed", size, (void *)ptr);
    return bench_block_tagged(ptr, size, tag);
}

/* Check the bytes written by bench_alloc (an allocator that handed the same
 * memory out twice is caught here), then free. */
static inline void bench_free(bench_block_t b)
{
    if (b.ptr[0] != b.tag || b.ptr[b.size - 1] != b.tag)
        bench_fail("block %p of %" PRIu32 " bytes was overwritten "
                   "(first 0x%02x last 0x%02x, want 0x%02x)",
                   (void *)b.ptr, b.size, b.ptr[0], b.ptr[b.size - 1], b.tag);
    free(b.ptr);
}

/* ---- bookkeeping memory (never malloc: see the top of this file) ---------- */
static inline void *bench_map(size_t count, size_t size)
{
    size_t bytes = count * size;
    if (bytes == 0)
        bytes = 1;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        bench_fail("mmap of %zu bytes failed", bytes);
    return p;
}

static inline void bench_unmap(void *p, size_t count, size_t size)
{
    munmap(p, count * size == 0 ? 1 : count * size);
}

/* ---- the report line -------------------------------------------------------- */
static inline void bench_report_begin(const char *workload)
{
    printf("pm-bench: workload=%s", workload);
}

static inline void bench_report(const char *key, uint64_t value)
{
    printf(" %s=%" PRIu64, key, value);
}

/* A ratio or other fraction: printed with 4 decimals. */
static inline void bench_report_real(const char *key, double value)
{
    printf(" %s=%.4f", key, value);
}

static inline void bench_report_end(void)
{
    printf("\n");
    fflush(stdout);
}

/* This process's current resident set in KiB (for phase metrics), from
 * /proc/self/statm. With open/read into a stack buffer, not stdio: fopen
 * mallocs its FILE and buffer, which would be unmeasured allocations in the
 * middle of a fragmentation workload. */
static inline uint64_t bench_rss_kib(void)
{
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* "size resident shared ...", in pages: the second field. */
    const char *p = strchr(buf, ' ');
    if (p == NULL)
        return 0;
    uint64_t pages = strtoull(p + 1, NULL, 10);
    return pages * (uint64_t)sysconf(_SC_PAGESIZE) / 1024;
}

/* A workload's reading after a phase: the bytes it holds and its RSS. */
typedef struct bench_mark {
    const char *name;
    uint64_t live_bytes, rss_kib;
} bench_mark_t;

/* Adds to the open report line rss_start_kib (marks[0] is the start) and,
 * for marks[1..n), live_X_kib, rss_X_kib and, with live bytes,
 * rss_over_live_X and heap_over_live_X ((rss_X - rss at start) / live_X:
 * the memory the allocator holds per live byte). */
static inline void bench_report_marks(const bench_mark_t *marks, int n)
{
    uint64_t start = marks[0].rss_kib;
    char key[64];
    bench_report("rss_start_kib", start);
    for (int k = 1; k < n; k++) {
        double live_kib = (double)marks[k].live_bytes / 1024.0;
        snprintf(key, sizeof key, "live_%s_kib", marks[k].name);
        bench_report(key, marks[k].live_bytes / 1024);
        snprintf(key, sizeof key, "rss_%s_kib", marks[k].name);
        bench_report(key, marks[k].rss_kib);
        if (marks[k].live_bytes > 0) {
            snprintf(key, sizeof key, "rss_over_live_%s", marks[k].name);
            bench_report_real(key, (double)marks[k].rss_kib / live_kib);
            snprintf(key, sizeof key, "heap_over_live_%s", marks[k].name);
            bench_report_real(key, ((double)marks[k].rss_kib - (double)start) / live_kib);
        }
    }
}

/* CLOCK_MONOTONIC, in nanoseconds. */
static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sleeps `ms` milliseconds, whatever signals come meanwhile. */
static inline void bench_sleep_ms(uint64_t ms)
{
    struct timespec pause = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    while (nanosleep(&pause, &pause) != 0)
        continue;
}

/* Blocks of bench_rss_later's little work, in rounds: room its caller lends. */
#define BENCH_LATER_BLOCKS 4096

/* The resident set once a program that has freed everything has waited
 * idle_ms and done a little more work: 4 rounds of BENCH_LATER_BLOCKS
 * blocks of min..max bytes allocated and freed (in `blocks`), the later
 * calls on which allocators purge what they kept (bench/README). */
static inline uint64_t bench_rss_later(uint64_t idle_ms, bench_rng_t *rng, size_t min, size_t max,
                                       bench_block_t *blocks)
{
    bench_sleep_ms(idle_ms);
    for (int round = 0; round < 4; round++) {
        for (uint64_t j = 0; j < BENCH_LATER_BLOCKS; j++)
            blocks[j] = bench_alloc(bench_rng_range(rng, min, max), bench_tag(j));
        for (uint64_t j = 0; j < BENCH_LATER_BLOCKS; j++)
            bench_free(blocks[j]);
    }
    return bench_rss_kib();
}

/* The readings of a workload whose threads free everything and stay idle:
 * at the start, once everything is freed, and after bench_rss_later; with
 * the last two over the first. */
static inline void bench_report_idle(uint64_t rss_start, uint64_t rss_end, uint64_t rss_later)
{
    bench_report("rss_start_kib", rss_start);
    bench_report("rss_end_kib", rss_end);
    bench_report("rss_later_kib", rss_later);
    bench_report_real("end_over_start", (double)rss_end / (double)rss_start);
    bench_report_real("later_over_start", (double)rss_later / (double)rss_start);
}

static inline uint64_t bench_maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_maxrss;
}

#endif
