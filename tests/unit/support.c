/* support.c — helpers shared by the unit suites: a deterministic PRNG,
 * byte patterns, a sleep, the consistency checks of pm_stats_t, and the capture of a
 * misuse's abort message. Never allocates; the checks use ck_assert so a
 * failure names the relation. */
#include "support.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void pm_test_rng_seed(pm_test_rng_t *rng, uint64_t seed)
{
    /* xorshift must never hold 0; splitmix the seed so nearby seeds differ. */
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    rng->state = z ? z : 1;
}

uint64_t pm_test_rng_next(pm_test_rng_t *rng)
{
    uint64_t x = rng->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng->state = x;
    return x * 0x2545f4914f6cdd1dull;
}

size_t pm_test_rng_range(pm_test_rng_t *rng, size_t lo, size_t hi)
{
    return lo + (size_t)(pm_test_rng_next(rng) % (uint64_t)(hi - lo + 1));
}

static unsigned char pattern_byte(size_t i, uint64_t seed)
{
    /* Depends on the position so a block shifted by a granule is caught. */
    uint64_t x = seed ^ ((uint64_t)i * 0x9e3779b97f4a7c15ull);
    return (unsigned char)(x ^ (x >> 29) ^ (x >> 47));
}

void pm_test_sleep_ms(long ms)
{
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&pause, &pause) != 0)
        continue;
}

void pm_test_pattern_fill(void *p, size_t n, uint64_t seed)
{
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = pattern_byte(i, seed);
}

int pm_test_pattern_ok(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != pattern_byte(i, seed))
            return 0;
    return 1;
}

int pm_test_all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

/* Each relation is checked in order; the first that fails is named. */
#define STATS_REQUIRE(cond)                                                    \
    do {                                                                       \
        if (!(cond))                                                           \
            return #cond;                                                      \
    } while (0)

const char *pm_test_stats_problem(const pm_stats_t *s, int heaps_consistent)
{
    uint64_t allocated = 0, live = 0, live_bytes = 0, pools = 0, waiting = 0, waiting_bytes = 0;
    for (int c = 0; c < PM_CLASS_COUNT; c++) {
        const pm_class_stats_t *k = &s->classes[c];
        STATS_REQUIRE(k->block_size == (size_t)(c + 1) * PM_CLASS_GRANULE);
        STATS_REQUIRE(k->allocated_total >= k->freed_total);
        STATS_REQUIRE(k->live_blocks == k->allocated_total - k->freed_total);
        /* Pools hold at most a pool's worth each. (An empty pool may stay
         * as the only one on its bin list, I4, so no lower bound.) */
        if (heaps_consistent)
            STATS_REQUIRE(k->live_blocks + k->waiting_blocks <=
                          k->pools * (PM_POOL_SIZE / k->block_size));
        /* I8: a waiting block was freed, so it was allocated. */
        STATS_REQUIRE(k->waiting_blocks <= k->freed_total);
        waiting += k->waiting_blocks;
        waiting_bytes += k->waiting_blocks * k->block_size;
        allocated += k->allocated_total;
        live += k->live_blocks;
        live_bytes += k->live_blocks * k->block_size;
        pools += k->pools;
        STATS_REQUIRE(k->trimmed_bytes + k->live_bytes <= k->pool_bytes);
    }
    STATS_REQUIRE(pools <= s->arenas_mapped * PM_POOLS_PER_ARENA);
    /* I5: every mapped arena but the reserve has a pool in use, or one
     * still retained (I10). */
    if (heaps_consistent)
        STATS_REQUIRE(s->arenas_mapped <= pools + s->retained_pools + pm_options.reserve_arenas);
    STATS_REQUIRE(s->small_allocated_total == allocated);
    STATS_REQUIRE(s->small_live_blocks == live);
    STATS_REQUIRE(s->small_live_bytes == live_bytes);
    STATS_REQUIRE(s->small_waiting_blocks == waiting);
    STATS_REQUIRE(s->small_waiting_bytes == waiting_bytes);
    /* Pages given back hold no live block. */
    STATS_REQUIRE(s->small_trimmed_bytes % PM_OS_PAGE_SIZE == 0);
    STATS_REQUIRE(s->small_trimmed_bytes + s->small_live_bytes <= s->small_pool_bytes);
    STATS_REQUIRE(s->arena_bytes == s->arenas_mapped * PM_ARENA_SIZE);
    STATS_REQUIRE(s->metadata_bytes >= s->arenas_mapped * PM_ARENA_HEADER_SIZE);
    STATS_REQUIRE(s->arenas_created_total >= s->arenas_destroyed_total);
    STATS_REQUIRE(s->arenas_mapped == s->arenas_created_total - s->arenas_destroyed_total);
    STATS_REQUIRE(s->arenas_peak >= s->arenas_mapped);
    STATS_REQUIRE(s->arenas_peak <= s->arenas_created_total);
    if (heaps_consistent)
        STATS_REQUIRE(pm_heap_validate());
    return NULL;
}

void pm_test_check_stats(const pm_stats_t *s)
{
    const char *problem = pm_test_stats_problem(s, 1);
    ck_assert_msg(problem == NULL, "stats relation violated: %s", problem);
}

void pm_test_stats(pm_stats_t *out)
{
    memset(out, 0xa5, sizeof *out); /* every field must be written */
    pm_stats_get(out);
    pm_test_check_stats(out);
}

bool pm_test_kernel_takes_advice(int advice)
{
    void *page = mmap(NULL, PM_OS_PAGE_SIZE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(page, MAP_FAILED);
    bool takes = madvise(page, PM_OS_PAGE_SIZE, advice) == 0;
    munmap(page, PM_OS_PAGE_SIZE);
    return takes;
}

void pm_test_capture_abort(void (*misuse)(void), char *buf, size_t cap)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        alarm(10);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        misuse();
        _exit(0); /* not caught: the parent sees a normal exit */
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t r;
    while (len + 1 < cap && (r = read(fds[0], buf + len, cap - 1 - len)) != 0) {
        if (r < 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    close(fds[0]);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
                  "the child did not abort (status 0x%x), stderr: %s", status, buf);
}

void *pm_test_free_in_thread(void *block)
{
    pm_free(block);
    return NULL;
}

static void *do_nothing(void *arg) { return arg; }

void pm_test_become_multithreaded(void)
{
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, do_nothing, NULL), 0);
    ck_assert_int_eq(pthread_join(thread, NULL), 0);
}

rlim_t pm_test_address_space_in_use(void)
{
    char statm[128];
    ck_assert_int_gt(pm_os_read_text("/proc/self/statm", statm, sizeof statm), 0);
    return (rlim_t)strtoull(statm, NULL, 10) * (rlim_t)sysconf(_SC_PAGESIZE);
}

static void *volatile remote_block;
static void *remote_ring_fill[PM_REMOTE_RING];
static pthread_barrier_t remote_barrier;

static void *remote_owner(void *arg)
{
    (void)arg;
    pm_malloc(96);
    for (size_t i = 0; i < PM_REMOTE_RING; i++)
        remote_ring_fill[i] = pm_malloc(96);
    remote_block = pm_malloc(96);
    pthread_barrier_wait(&remote_barrier); /* published */
    pthread_barrier_wait(&remote_barrier); /* misused by the other thread */
    for (size_t i = 0; i < 3 * PM_POOL_SIZE / 96; i++)
        pm_malloc(96);
    return NULL;
}

void pm_test_remote_misuse(void (*misuse)(void *block), bool ring_full, bool idle_owner)
{
    pthread_t t;
    ck_assert_int_eq(pthread_barrier_init(&remote_barrier, NULL, 2), 0);
    ck_assert_int_eq(pthread_create(&t, NULL, remote_owner, NULL), 0);
    pthread_barrier_wait(&remote_barrier);
    /* A full ring spills into a parcel (remote_ring_spill in heap.c), unless
     * none can be mapped: with the address space capped short of one past
     * what is in use, its blocks overflow onto the stack. The room left is
     * for a sanitizer's own mappings as the frees go (ASan's fit; TSan's
     * 256 KiB traces do not, and the stack's tests do not run under it).
     * Soft limit only, so it can be raised again. */
    struct rlimit limit;
    ck_assert_int_eq(getrlimit(RLIMIT_AS, &limit), 0);
    if (ring_full) {
        struct rlimit cap = {pm_test_address_space_in_use() + PM_HEAP_PARCEL_BYTES -
                                 PM_OS_PAGE_SIZE,
                             limit.rlim_max};
        ck_assert_int_eq(setrlimit(RLIMIT_AS, &cap), 0);
        for (size_t i = 0; i < PM_REMOTE_RING; i++)
            pm_free(remote_ring_fill[i]);
    }
    misuse(remote_block);
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &limit), 0);
    if (ring_full)
        ck_assert_ptr_nonnull(atomic_load(&pm_pool_heap(pm_pool_of(remote_block))->remote_free));
    /* Taken off the ring and the stack by this thread, as for an idle owner
     * (IDLE OWNERS, heap.c), before the owner collects. */
    if (idle_owner)
        pm_malloc_trim(0);
    pthread_barrier_wait(&remote_barrier);
    pthread_join(t, NULL);
}

void pm_test_assert_message(const char *buf, const char *what)
{
    ck_assert_msg(strstr(buf, "poolmalloc: ") != NULL, "stderr: %s", buf);
    ck_assert_msg(strstr(buf, what) != NULL, "expected '%s'; stderr: %s", what, buf);
}

size_t pm_test_fill_pool(void **blocks, size_t block_size)
{
    blocks[0] = pm_malloc(block_size);
    ck_assert_ptr_nonnull(blocks[0]);
    size_t capacity = pm_test_pool_capacity(pm_test_pool_index(blocks[0]), block_size);
    for (size_t i = 1; i < capacity; i++) {
        blocks[i] = pm_malloc(block_size);
        ck_assert_ptr_nonnull(blocks[i]);
    }
    return capacity;
}

int pm_test_ptr_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a;
    uintptr_t y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}
