/* support.h — what every unit suite shares: the suite constructors, the
 * glibc entry points used to make foreign pointers, and checks of the
 * statistics and of block contents.
 * Never calls the process's malloc on purpose: tests go through pm_* only.
 * The suites run in Check's forked mode, so each test starts from the core's
 * pristine state (the runner itself never calls pm_*). */
#ifndef PM_UNIT_SUPPORT_H
#define PM_UNIT_SUPPORT_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>

#include "internal.h"
#include "libc_entry.h" /* glibc's own allocator, bypassing any interposition */
#include "poolmalloc.h"

/* Which sanitizer instruments the tests, as gcc and clang each say it:
 * PM_TEST_ASAN and PM_TEST_TSAN are 1 under AddressSanitizer and
 * ThreadSanitizer, else 0. */
#if defined(__SANITIZE_ADDRESS__)
#define PM_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PM_TEST_ASAN 1
#endif
#endif
#ifndef PM_TEST_ASAN
#define PM_TEST_ASAN 0
#endif
#if defined(__SANITIZE_THREAD__)
#define PM_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PM_TEST_TSAN 1
#endif
#endif
#ifndef PM_TEST_TSAN
#define PM_TEST_TSAN 0
#endif

/* An assertion in a loop of many steps. Each ck_assert that passes writes a
 * mark to Check's pipe, a system call: the 4 million of a single test took
 * most of unit_release's time, and under ThreadSanitizer its tcase's
 * timeout. This one costs a branch until it fails. */
#define PM_CHECK_EACH(expr, format, ...)                                                 \
    do {                                                                                 \
        if (!(expr))                                                                     \
            ck_abort_msg("Assertion '%s' failed: " format, #expr, __VA_ARGS__);          \
    } while (0)

Suite *make_sizeclass_suite(void);
Suite *make_registry_suite(void);
Suite *make_pool_suite(void);
Suite *make_alloc_suite(void);
Suite *make_realloc_suite(void);
Suite *make_aligned_suite(void);
Suite *make_misuse_suite(void);
Suite *make_hardening_suite(void);
Suite *make_stats_suite(void);
Suite *make_threads_suite(void);
Suite *make_fork_suite(void);
Suite *make_release_suite(void);
Suite *make_report_suite(void);
Suite *make_profile_suite(void);
Suite *make_system_suite(void);

/* Deterministic xorshift64* generator: every run of a test sees the same
 * sequence (the threads suite seeds one per thread). */
typedef struct pm_test_rng {
    uint64_t state;
} pm_test_rng_t;

void pm_test_rng_seed(pm_test_rng_t *rng, uint64_t seed);
uint64_t pm_test_rng_next(pm_test_rng_t *rng);
/* Uniform in [lo, hi]. */
size_t pm_test_rng_range(pm_test_rng_t *rng, size_t lo, size_t hi);

/* Sleeps ms milliseconds, through signals. */
void pm_test_sleep_ms(long ms);

/* Fill n bytes at p with a pattern determined by seed, and verify it.
 * pm_test_pattern_ok returns 1 when intact. */
void pm_test_pattern_fill(void *p, size_t n, uint64_t seed);
int pm_test_pattern_ok(const void *p, size_t n, uint64_t seed);

/* 1 iff all n bytes at p are zero. */
int pm_test_all_zero(const void *p, size_t n);

/* Asserts the relations pm_stats_t promises when quiescent: per-class
 * block_size, live = allocated - freed, the small_* sums, arena_bytes =
 * arenas_mapped x PM_ARENA_SIZE, created - destroyed = mapped, peak >=
 * mapped, live blocks fit their pools, pools fit the arenas, and every
 * mapped arena but the reserve has a pool in use (I5). Also runs
 * pm_heap_validate (I2..I8). */
void pm_test_check_stats(const pm_stats_t *stats);
/* The same relations without Check: NULL, or the first one violated (for
 * processes forked by a test, which must not report through Check).
 * heaps_consistent = 0 leaves out pm_heap_validate and the relations between
 * pools and blocks: in a child forked while other threads were allocating,
 * their heaps are ORPHANED and may have been cut mid-update (internal.h,
 * THREAD HEAPS), so only the counters' arithmetic is promised there. */
const char *pm_test_stats_problem(const pm_stats_t *stats, int heaps_consistent);
/* pm_stats_get + pm_test_check_stats. */
void pm_test_stats(pm_stats_t *out);

/* The arena base of any address (internal.h: addr & ~(PM_ARENA_SIZE - 1)). */
static inline uintptr_t pm_test_arena_base(const void *p)
{
    return (uintptr_t)p & ~(uintptr_t)(PM_ARENA_SIZE - 1);
}
/* The index of the pool holding a block: pool 0 is shortened by the header
 * but still lies in the first PM_POOL_SIZE bytes, so offset / PM_POOL_SIZE. */
static inline unsigned pm_test_pool_index(const void *p)
{
    return (unsigned)(((uintptr_t)p - pm_test_arena_base(p)) / PM_POOL_SIZE);
}
/* How many blocks of `block_size` bytes pool `pool_index` holds. */
static inline size_t pm_test_pool_capacity(unsigned pool_index, size_t block_size)
{
    return pm_pool_bytes(pool_index) / block_size;
}

int pm_test_ptr_cmp(const void *a, const void *b); /* qsort on void * */

/* Fills the pool that serves the next block of `block_size` bytes, from a
 * fresh heap (its first pool of the class), into blocks[] (room for
 * PM_POOL_SIZE / block_size); returns how many it holds. */
size_t pm_test_fill_pool(void **blocks, size_t block_size);

/* Whether the kernel takes madvise's `advice` on a page of anonymous
 * memory (tests of what a newer kernel offers skip without it). */
bool pm_test_kernel_takes_advice(int advice);
/* Runs misuse() in a child with stderr on a pipe, checks that the child
 * died of SIGABRT, and leaves what it wrote in buf (NUL-terminated). */
void pm_test_capture_abort(void (*misuse)(void), char *buf, size_t cap);
/* A second thread allocates a 96-byte block (after an anchor that keeps its
 * pool IN USE); the calling thread runs misuse(block); then the owner
 * allocates until its bin runs dry, which collects what other threads
 * freed into its heap: for misuse that only that collection can see. With
 * ring_full, the calling thread first frees PM_REMOTE_RING other blocks of
 * the owner's, with the address space capped so that no parcel can take
 * the full ring's blocks: what misuse frees goes onto the overflow stack. */
void pm_test_remote_misuse(void (*misuse)(void *block), bool ring_full, bool idle_owner);
/* The process's address space in use, in bytes (what RLIMIT_AS counts). */
rlim_t pm_test_address_space_in_use(void);
/* A thread's start routine that pm_frees `block`: a free by a thread that
 * does not own the block's pool. */
void *pm_test_free_in_thread(void *block);
/* Starts and joins a thread that does nothing: the process has then had a
 * second thread (__libc_single_threaded is false for good), which is what
 * pm_os_purges_vectored waits for. */
void pm_test_become_multithreaded(void);
/* ck_assert that buf holds "poolmalloc: " and `what`. */
void pm_test_assert_message(const char *buf, const char *what);

#endif /* PM_UNIT_SUPPORT_H */
