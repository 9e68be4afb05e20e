/* check_profile.c — allocation-site profiling through pm_*: a sampled free
 * takes its bytes off its site's live bytes, a sampled pool block sends its
 * pool's frees to the full path and is still caught when freed twice (by its owner, or by
 * its owner and another thread), identical stacks share a site,
 * the sample table grows and forgets freed blocks, the site table's limit
 * drops samples and counts them, threads without a heap (large requests
 * only, POOLMALLOC_DEBUG) are sampled too, and a fork while other threads sample
 * leaves the child's profile lock usable (I11), and frames are named as
 * dladdr would name them.
 * Profiling is switched on in the test process as the preload constructor
 * does (pm_profile_init, then pm_heap_reset_sampling); needs libunwind8. */
#include "support.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* rate: mean bytes between samples. At 1, every request of 64 bytes or
 * more is sampled but for odds of e^-63, and a sample stands for its own
 * size exactly (its weight 1 / (1 - e^(-size)) is 1 in a double). */
static void profile_on(uint64_t rate)
{
    pm_options.profile = 1;
    pm_options.profile_rate = rate;
    pm_profile_init();
    ck_assert_msg(pm_profile_enabled(), "profiling did not start (libunwind8 missing?)");
    pm_heap_reset_sampling();
}

/* The live and allocated bytes over every site, and the summary, after
 * checking the tables (I11). */
typedef struct totals {
    double live_bytes, alloc_bytes;
    pm_profile_summary_t summary;
} totals_t;

static totals_t profile_totals(void)
{
    static pm_profile_site_t sites[1 << 14];
    ck_assert(pm_profile_validate());
    totals_t t = {0};
    size_t n = pm_profile_top(sites, sizeof sites / sizeof sites[0], false, false, &t.summary);
    for (size_t i = 0; i < n; i++) {
        t.live_bytes += sites[i].live_bytes;
        t.alloc_bytes += sites[i].alloc_bytes;
    }
    return t;
}

/* One pool block and one glibc block: each sampled, each taken off its
 * site's live bytes when freed, its allocated bytes kept. */
START_TEST(test_free_subtracts_live)
{
    profile_on(1);
    void *small = pm_malloc(256);
    void *large = pm_malloc(5000);
    ck_assert(pm_owns(small) && !pm_owns(large));
    double sizes = (double)(pm_malloc_usable_size(small) + pm_malloc_usable_size(large));
    totals_t t = profile_totals();
    ck_assert_uint_eq(t.summary.samples, 2);
    ck_assert_uint_eq(t.summary.dropped, 0);
    ck_assert_double_eq_tol(t.live_bytes, sizes, 0.5);
    ck_assert(pm_profile_maybe_sampled(small) && pm_profile_maybe_sampled(large));
    ck_assert_uint_eq(pm_pool_of(small)->sampled_count, 1);

    pm_free(small);
    t = profile_totals();
    ck_assert_double_eq_tol(t.live_bytes, (double)pm_malloc_usable_size(large), 0.5);
    pm_free(large);
    t = profile_totals();
    ck_assert_double_eq_tol(t.live_bytes, 0, 0.5);
    ck_assert_double_eq_tol(t.alloc_bytes, sizes, 0.5);
    /* Counting filter: with no sampled block left, no bit stays set. */
    ck_assert(!pm_profile_maybe_sampled(small) && !pm_profile_maybe_sampled(large));
}
END_TEST

/* Sampling is unbiased when the countdown and the block size differ:
 * malloc's fast path counts the bytes asked for (17 here), the sample
 * stands for the whole block (32), weighed by the odds of the bytes
 * counted. 200,000 pairs at rate 256: some 12,900 samples, whose estimate
 * of the bytes allocated has a standard deviation of 0.85% (5% is six of
 * them); weighed by the block size instead, it is 45% short. */
START_TEST(test_estimate_counts_bytes_asked)
{
    enum { PAIRS = 200000, ASKED = 17 };
    profile_on(256);
    for (int i = 0; i < PAIRS; i++)
        pm_free(pm_malloc(ASKED));
    totals_t t = profile_totals();
    double truth = (double)PAIRS * (double)pm_class_block_size(pm_size_class(ASKED));
    ck_assert_uint_gt(t.summary.samples, 10000);
    ck_assert_double_eq_tol(t.alloc_bytes / truth, 1.0, 0.05);
    ck_assert_double_eq_tol(t.live_bytes, 0, 0.5);
}
END_TEST

/* I11: a pool holding a sampled block counts it, and free's fast path
 * passes its blocks on (fast_free_bound 0); the full path's checks find the
 * record (usable size, free), and once the pool's last sampled block is
 * freed its blocks take the fast path again. */
START_TEST(test_sampled_block_pool)
{
    profile_on(1);
    void *a = pm_malloc(256), *b = pm_malloc(256);
    pm_pool_t *pool = pm_pool_of(a);
    ck_assert_ptr_eq(pm_pool_of(b), pool);
    ck_assert_uint_eq(pool->sampled_count, 2);
    ck_assert(!pm_pool_fast_block(pool, a) && !pm_pool_fast_block(pool, b));
    pm_heap_set_countdown(pm_thread_heap, INT64_MAX); /* the next one unsampled */
    void *c = pm_malloc(256);
    ck_assert_ptr_eq(pm_pool_of(c), pool);
    ck_assert(!pm_block_tagged(c) && !pm_pool_fast_block(pool, c));
    ck_assert_uint_eq(pool->sampled_count, 2);
    ck_assert(pm_heap_validate());
    ck_assert_uint_eq(pm_malloc_usable_size(a), 256);
    pm_free(a);
    ck_assert_uint_eq(pool->sampled_count, 1);
    ck_assert(pm_heap_validate());
    pm_free(c);
    pm_free(b);
    ck_assert_uint_eq(pool->sampled_count, 0);
    void *d = pm_malloc(256);
    ck_assert(pm_pool_fast_block(pool, d));
    pm_free(d);
    ck_assert(pm_heap_validate());
    ck_assert_double_eq_tol(profile_totals().live_bytes, 0, 0.5);
}
END_TEST

/* A sampled block, and an anchor that keeps its pool in use, for the
 * misuse that pm_test_capture_abort runs in a child. */
static void *sampled_victim;

static void sampled_victim_make(void)
{
    profile_on(1);
    void *anchor = pm_malloc(256);
    sampled_victim = pm_malloc(256);
    ck_assert(anchor != NULL && pm_pool_holds_sampled(pm_pool_of(sampled_victim)));
}

static void free_sampled_twice(void)
{
    pm_free(sampled_victim);
    pm_free(sampled_victim);
}

/* I6 with I11: the first free of a sampled block drops its record and
 * tags it, so the second finds it on the free list. */
START_TEST(test_sampled_double_free)
{
    sampled_victim_make();
    char buf[4096];
    pm_test_capture_abort(free_sampled_twice, buf, sizeof buf);
    pm_test_assert_message(buf, "double free");
}
END_TEST

/* A block not sampled, of a pool holding a sampled one, freed twice: the
 * pool's frees all leave the fast path, and the second finds the block
 * tagged, and on the free list. */
static void free_unsampled_twice(void)
{
    profile_on(1);
    void *sampled = pm_malloc(256);
    pm_heap_set_countdown(pm_thread_heap, INT64_MAX); /* the next one unsampled */
    void *plain = pm_malloc(256);
    ck_assert(pm_pool_of(plain) == pm_pool_of(sampled) &&
              pm_pool_holds_sampled(pm_pool_of(plain)));
    pm_free(plain);
    pm_free(plain);
}

START_TEST(test_unsampled_double_free_in_sampled_pool)
{
    char buf[4096];
    pm_test_capture_abort(free_unsampled_twice, buf, sizeof buf);
    pm_test_assert_message(buf, "double free");
}
END_TEST

/* malloc_trim gives back the pages of a pool in use that no live block
 * overlaps; a sampled block is live like any other (I11), so its page
 * stays (a purged page would read back as zeros). */
START_TEST(test_trim_keeps_sampled_block)
{
    profile_on(1);
    unsigned char *sampled = pm_malloc(256);
    ck_assert_uint_eq(pm_pool_of(sampled)->sampled_count, 1);
    memset(sampled, 0x5a, 256);
    pm_heap_set_countdown(pm_thread_heap, INT64_MAX); /* the rest unsampled (a tick away) */
    void *others[PM_POOL_SIZE / 256];
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        others[i] = pm_malloc(256);
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        pm_free(others[i]);
    pm_malloc_trim(0);
    for (size_t i = 0; i < 256; i++)
        ck_assert_uint_eq(sampled[i], 0x5a);
    ck_assert(pm_heap_validate());
    pm_free(sampled);
}
END_TEST

static void free_sampled_remotely_then_here(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, pm_test_free_in_thread, sampled_victim) != 0 ||
        pthread_join(t, NULL) != 0)
        return; /* no abort: the capture reports it */
    pm_free(sampled_victim);
    pm_malloc_trim(0); /* the owner collects its ring */
}

/* A sampled block freed by another thread keeps its record until its owner
 * collects it, so the owner's own free of it meanwhile is let through (it
 * cannot tell which free came second), and the collection, which finds
 * neither bit nor record, reports the double free. */
START_TEST(test_sampled_double_free_remote)
{
    sampled_victim_make();
    char buf[4096];
    pm_test_capture_abort(free_sampled_remotely_then_here, buf, sizeof buf);
    pm_test_assert_message(buf, "double free");
}
END_TEST

/* realloc of a sampled glibc block: the old block's record goes, the new
 * one is sampled at its own size (rate 1), and nothing is left behind. */
START_TEST(test_realloc_moves_record)
{
    profile_on(1);
    void *p = pm_malloc(1000);
    for (size_t size = 2000; size <= 64000; size *= 2) {
        p = pm_realloc(p, size);
        ck_assert_ptr_nonnull(p);
        totals_t t = profile_totals();
        ck_assert_double_eq_tol(t.live_bytes, (double)pm_malloc_usable_size(p), 0.5);
    }
    pm_free(p);
    ck_assert_double_eq_tol(profile_totals().live_bytes, 0, 0.5);
}
END_TEST

/* A thread's first request past the pools comes before it has a heap,
 * where countdowns live (it takes one when that request is counted): it is
 * sampled with a countdown of the thread's own, the rest with the heap's. */
enum { HEAPLESS_BLOCKS = 100 };
static void *heapless_blocks[HEAPLESS_BLOCKS];

static void *large_only_thread(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < HEAPLESS_BLOCKS; i++)
        heapless_blocks[i] = pm_malloc(PM_SMALL_MAX + 1 + 8 * i);
    return NULL;
}

START_TEST(test_heapless_thread_sampled)
{
    profile_on(1);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, large_only_thread, NULL), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    double live = 0;
    for (size_t i = 0; i < HEAPLESS_BLOCKS; i++)
        live += (double)pm_malloc_usable_size(heapless_blocks[i]);
    totals_t totals = profile_totals();
    ck_assert_uint_eq(totals.summary.samples, HEAPLESS_BLOCKS);
    ck_assert_double_eq_tol(totals.live_bytes, live, 0.5);
    for (size_t i = 0; i < HEAPLESS_BLOCKS; i++)
        pm_free(heapless_blocks[i]);
    ck_assert_double_eq_tol(profile_totals().live_bytes, 0, 0.5);
}
END_TEST

/* POOLMALLOC_DEBUG: no thread has a heap, small requests are served under
 * the shared heap's lock unsampled, requests past the pools are sampled. */
START_TEST(test_debug_samples_large_only)
{
    pm_options.debug = 1;
    profile_on(1);
    void *small = pm_malloc(256), *large = pm_malloc(5000);
    ck_assert(pm_owns(small) && !pm_owns(large));
    totals_t t = profile_totals();
    ck_assert_uint_eq(t.summary.samples, 1);
    ck_assert_double_eq_tol(t.live_bytes, (double)pm_malloc_usable_size(large), 0.5);
    pm_free(small);
    pm_free(large);
    ck_assert_double_eq_tol(profile_totals().live_bytes, 0, 0.5);
}
END_TEST

/* While profiling, a freed glibc chunk of the chunk cache's sizes still
 * waits in its thread's cache (system.c, system_free_slow), its record
 * dropped first; handed out again, it is sampled again. Sent past the
 * cache, as until 2026-12-07, the chunk went back to glibc. */
START_TEST(test_sampled_glibc_chunk_cached)
{
    pm_free(pm_malloc(16)); /* the thread's heap, whose cache this is */
    profile_on(1);
    void *p = pm_malloc(1000);
    ck_assert(!pm_owns(p));
    const double usable = (double)pm_malloc_usable_size(p);
    totals_t t = profile_totals();
    ck_assert_uint_eq(t.summary.samples, 1);
    ck_assert_double_eq_tol(t.live_bytes, usable, 0.5);
    pm_free(p);
    ck_assert_double_eq_tol(profile_totals().live_bytes, 0, 0.5);
    pm_stats_t s;
    pm_stats_get(&s);
    ck_assert_double_eq_tol((double)s.system_cached_bytes, usable, 0.5);
    void *q = pm_malloc(1000);
    ck_assert_ptr_eq(q, p);
    t = profile_totals();
    ck_assert_uint_eq(t.summary.samples, 2);
    ck_assert_double_eq_tol(t.live_bytes, usable, 0.5);
    pm_free(q);
    ck_assert_double_eq_tol(profile_totals().live_bytes, 0, 0.5);
}
END_TEST

/* Twins but for their asm comments, which keep them from being tail calls
 * (this frame is the site) and from being folded into one function
 * (GCC's identical code folding). */
static __attribute__((noinline)) void *alloc_at_site_a(size_t n)
{
    void *p = pm_malloc(n);
    __asm__ volatile("# site a" : "+r"(p));
    return p;
}

static __attribute__((noinline)) void *alloc_at_site_b(size_t n)
{
    void *p = pm_malloc(n);
    __asm__ volatile("# site b" : "+r"(p));
    return p;
}

/* Sizes past the pools: the statically linked core's frames are part of
 * the stack here (only a preloaded library's own frames are skipped), and
 * a pool block may come from the fast path or the slow one, a glibc block
 * always the same way. */
START_TEST(test_identical_stacks_share_site)
{
    enum { N = 200 };
    static void *p[2 * N];
    profile_on(1);
    for (size_t i = 0; i < N; i++)
        p[i] = alloc_at_site_a(PM_SMALL_MAX + 1 + i);
    totals_t t = profile_totals();
    ck_assert_uint_eq(t.summary.samples, N);
    ck_assert_uint_eq(t.summary.sites, 1);
    for (size_t i = 0; i < N; i++)
        p[N + i] = alloc_at_site_b(4 * PM_SMALL_MAX + i);
    t = profile_totals();
    ck_assert_uint_eq(t.summary.samples, 2 * N);
    ck_assert_uint_eq(t.summary.sites, 2);

    pm_profile_site_t top[2];
    ck_assert_uint_eq(pm_profile_top(top, 2, true, false, NULL), 2);
    ck_assert_uint_eq(top[0].samples, N); /* site b: the larger blocks */
    ck_assert_uint_eq(top[1].samples, N);
    ck_assert(top[0].live_bytes > top[1].live_bytes);
    for (size_t i = 0; i < 2 * N; i++)
        pm_free(p[i]);
}
END_TEST

/* Far more sampled blocks live at once than the sample table starts with:
 * it grows, loses none, and freeing them in a scrambled order (deletions
 * that shift their neighbours back) finds every one. */
START_TEST(test_sample_table_grows)
{
    enum { N = 200000 };
    void **p = __libc_malloc(N * sizeof *p);
    ck_assert_ptr_nonnull(p);
    profile_on(1);
    double live = 0;
    for (size_t i = 0; i < N; i++) {
        size_t n = i % 8 == 0 ? 600 + i % 3000 : 64 + i % 449;
        p[i] = pm_malloc(n);
        PM_CHECK_EACH(p[i] != NULL, "block %zu", i);
        live += (double)pm_malloc_usable_size(p[i]);
    }
    totals_t t = profile_totals();
    ck_assert_uint_eq(t.summary.samples, N);
    ck_assert_uint_eq(t.summary.dropped, 0);
    ck_assert_double_eq_tol(t.live_bytes, live, 1.0);
    /* Free every block but one in 7, in a stride order, then the rest. */
    for (size_t k = 0; k < N; k++) {
        size_t i = (k * 7919) % N;
        if (i % 7 == 0)
            continue;
        live -= (double)pm_malloc_usable_size(p[i]);
        pm_free(p[i]);
    }
    ck_assert_double_eq_tol(profile_totals().live_bytes, live, 1.0);
    for (size_t i = 0; i < N; i += 7) {
        ck_assert(pm_profile_maybe_sampled(p[i]));
        pm_free(p[i]);
    }
    ck_assert_double_eq_tol(profile_totals().live_bytes, 0, 1.0);
    for (size_t i = 0; i < N; i++)
        PM_CHECK_EACH(!pm_profile_maybe_sampled(p[i]), "block %zu", i);
    __libc_free(p);
}
END_TEST

/* 2^16 distinct stacks: a path of 16 calls, each through one of two
 * functions, which call the next themselves. With a dispatcher between
 * them, GCC -O2 made its calls tail calls and -O0 did not: a path was 32
 * frames deep, and the site's 32 frames held only 13 of its choices
 * (8,193 sites). The site table keeps the first PM_PROFILE_SITES_MAX;
 * samples of the others are dropped and counted. */
typedef void *path_fn(unsigned bits, int level);
static path_fn path_a, path_b;
static path_fn *const path_next[2] = {path_b, path_a};
static __attribute__((noinline)) void *path_a(unsigned bits, int level)
{
    void *p = level == 0 ? pm_malloc(64) : path_next[bits & 1](bits >> 1, level - 1);
    __asm__ volatile("# path a" : "+r"(p));
    return p;
}
static __attribute__((noinline)) void *path_b(unsigned bits, int level)
{
    void *p = level == 0 ? pm_malloc(64) : path_next[bits & 1](bits >> 1, level - 1);
    __asm__ volatile("# path b" : "+r"(p));
    return p;
}

START_TEST(test_site_table_full)
{
    enum { PATHS = 1 << 16 };
    profile_on(1);
    for (unsigned bits = 0; bits < PATHS; bits++)
        pm_free(path_next[bits & 1](bits >> 1, 15));
    totals_t t = profile_totals();
    ck_assert_uint_eq(t.summary.sites, PM_PROFILE_SITES_MAX);
    ck_assert_uint_eq(t.summary.samples + t.summary.dropped, PATHS);
    ck_assert_uint_gt(t.summary.dropped, 0);
    ck_assert_double_eq_tol(t.live_bytes, 0, 0.5);
}
END_TEST

/* ---- fork --------------------------------------------------------------- */

static atomic_int sampling_stop;

/* Samples as hard as it can: at rate 16 every request is sampled, and so
 * every free takes the profile lock too. */
static void *sampling_worker(void *arg)
{
    pm_test_rng_t rng;
    pm_test_rng_seed(&rng, (uint64_t)(uintptr_t)arg);
    void *held[32] = {0};
    while (!atomic_load_explicit(&sampling_stop, memory_order_relaxed)) {
        size_t i = pm_test_rng_range(&rng, 0, 31);
        pm_free(held[i]);
        held[i] = pm_malloc(pm_test_rng_range(&rng, 16, 4 * PM_SMALL_MAX));
    }
    for (size_t i = 0; i < 32; i++)
        pm_free(held[i]);
    return NULL;
}

/* 0 once the child exited, 1 if it was still running after timeout_ms (it
 * is killed then); its wait status in *status. */
static int wait_with_timeout(pid_t pid, int *status, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited++) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 0;
        ck_assert_int_eq(r, 0);
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, status, 0);
    return 1;
}

static pthread_t sampling_workers[2];

static void sampling_start(void)
{
    atomic_store(&sampling_stop, 0);
    for (uintptr_t t = 0; t < 2; t++)
        ck_assert_int_eq(pthread_create(&sampling_workers[t], NULL, sampling_worker, (void *)(t + 1)), 0);
}

static void sampling_end(void)
{
    atomic_store(&sampling_stop, 1);
    for (int t = 0; t < 2; t++)
        ck_assert_int_eq(pthread_join(sampling_workers[t], NULL), 0);
}

/* A lock held by a worker at the moment of fork would stay held in the
 * child forever, and its first sampled malloc or free would hang: the
 * profile lock, or one of libunwind's (its caches, glibc's lock behind
 * dl_iterate_phdr) if the worker was unwinding. The fork handlers take the
 * first and keep every thread out of libunwind across fork. Fresh workers
 * each round: with cold caches, they unwind through those locks most. */
START_TEST(test_fork_while_sampling)
{
    enum { FORKS = 150 };
    profile_on(16);
    ck_assert_int_eq(pthread_atfork(pm_fork_prepare, pm_fork_parent, pm_fork_child), 0);
    int hung = -1, status = 0;
    for (int round = 0; round < FORKS && hung < 0; round++) {
        sampling_start();
        usleep(200);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            void *p[64];
            for (int k = 0; k < 20; k++) {
                for (int i = 0; i < 64; i++)
                    p[i] = pm_malloc((size_t)(64 + 61 * i));
                for (int i = 0; i < 64; i++)
                    pm_free(p[i]);
            }
            _exit(0);
        }
        if (wait_with_timeout(pid, &status, 5000))
            hung = round;
        sampling_end();
        if (hung < 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
            break;
    }
    ck_assert_msg(hung < 0, "child of fork %d hung (killed after 5 s)", hung);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %s %d",
                  WIFEXITED(status) ? "exited with" : "killed by signal",
                  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}
END_TEST

/* What dladdr says of a return address, in the reports' words. */
static void dladdr_text(char *out, size_t size, const void *frame)
{
    Dl_info info;
    if (dladdr((const char *)frame - 1, &info) == 0 || info.dli_fname == NULL) {
        snprintf(out, size, "0x%lx", (unsigned long)(uintptr_t)frame);
        return;
    }
    const char *module = strrchr(info.dli_fname, '/');
    module = module != NULL ? module + 1 : info.dli_fname;
    if (info.dli_sname != NULL)
        snprintf(out, size, "%s!%s+0x%lx", module, info.dli_sname,
                 (unsigned long)((uintptr_t)frame - (uintptr_t)info.dli_saddr));
    else
        snprintf(out, size, "%s+0x%lx", module,
                 (unsigned long)((uintptr_t)frame - (uintptr_t)info.dli_fbase));
}

typedef struct frame_check {
    unsigned checked, differing;
    char first[1100];
} frame_check_t;

/* 4000 addresses spread over the executable segments of each module. */
static int check_module_frames(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    frame_check_t *check = data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X) || ph->p_memsz == 0)
            continue;
        uintptr_t start = info->dlpi_addr + ph->p_vaddr, step = ph->p_memsz / 4000 + 1;
        for (uintptr_t at = start + 1; at <= start + ph->p_memsz; at += step) {
            char ours[512], theirs[512];
            pm_buf_t b;
            pm_buf_init(&b, ours, sizeof ours - 1);
            pm_profile_frame_text(&b, (const void *)at);
            *b.at = '\0';
            dladdr_text(theirs, sizeof theirs, (const void *)at);
            check->checked++;
            if (strcmp(ours, theirs) != 0 && check->differing++ == 0)
                snprintf(check->first, sizeof check->first, "%s instead of %s", ours, theirs);
        }
    }
    return 0;
}

/* Frames are named as dladdr would name them, but without its lock: the
 * same text for addresses all over every loaded module (the test program,
 * libc, libm, libunwind, the vDSO...), symbols or none. */
START_TEST(test_frame_text_matches_dladdr)
{
    frame_check_t check = {0};
    dl_iterate_phdr(check_module_frames, &check);
    ck_assert_msg(check.checked > 10000, "only %u addresses checked", check.checked);
    ck_assert_msg(check.differing == 0, "%u of %u names differ from dladdr's, e.g. %s",
                  check.differing, check.checked, check.first);
}
END_TEST

Suite *make_profile_suite(void)
{
    Suite *s = suite_create("profile");
    TCase *tc = tcase_create("profile");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_free_subtracts_live);
    tcase_add_test(tc, test_estimate_counts_bytes_asked);
    tcase_add_test(tc, test_sampled_block_pool);
    tcase_add_test(tc, test_trim_keeps_sampled_block);
    tcase_add_test(tc, test_sampled_double_free);
    tcase_add_test(tc, test_unsampled_double_free_in_sampled_pool);
    tcase_add_test(tc, test_sampled_double_free_remote);
    tcase_add_test(tc, test_realloc_moves_record);
    tcase_add_test(tc, test_heapless_thread_sampled);
    tcase_add_test(tc, test_debug_samples_large_only);
    tcase_add_test(tc, test_sampled_glibc_chunk_cached);
    tcase_add_test(tc, test_identical_stacks_share_site);
    tcase_add_test(tc, test_sample_table_grows);
    tcase_add_test(tc, test_site_table_full);
    tcase_add_test(tc, test_frame_text_matches_dladdr);
    suite_add_tcase(s, tc);
    TCase *fork_tc = tcase_create("fork");
    tcase_set_timeout(fork_tc, 120);
    tcase_add_test(fork_tc, test_fork_while_sampling);
    suite_add_tcase(s, fork_tc);
    return s;
}
