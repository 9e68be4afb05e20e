/* stress.c — the hardening stress program: threads running the whole malloc
 * family on sizes around every class boundary, blocks handed between threads
 * through shared slots (so frees and reallocs cross threads), threads created
 * and joined by the thousand, fork() while threads allocate. Every block
 * holds a pattern derived from its address and size over its whole usable
 * size, verified before it is freed or reallocated.
 *
 * One source, two programs:
 *   pm_stress       (STRESS_PM) links the static core and calls pm_*; it
 *                   installs the fork hooks and hands over glibc's
 *                   malloc_trim as the preload shim does (the workers'
 *                   trims then reach glibc's heap too), and
 *                   checks pm_heap_validate() and the statistics at the end
 *                   and in every fork child.
 *   stress_malloc   calls the plain malloc family; run it with
 *                   LD_PRELOAD=libpoolmalloc.so (--expect-preload checks that
 *                   poolmalloc is really serving it).
 *
 * Never trusts the allocator it tests for its own bookkeeping: slots live in
 * static arrays and on the stack. Failures print one line on stderr and exit
 * 1; a deadlock trips the watchdog (SIGALRM), which exits 3. */
#if defined(__SANITIZE_ADDRESS__)
#define STRESS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STRESS_ASAN 1
#endif
#endif
#ifndef STRESS_ASAN
#define STRESS_ASAN 0
#endif

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef STRESS_PM
#include "internal.h" /* pm_heap_validate, pm_fork_*, pm_options_init */
#include <malloc.h>   /* glibc's malloc_trim, handed to the core as the shim does */
#define S_MALLOC pm_malloc
#define S_CALLOC pm_calloc
#define S_REALLOC pm_realloc
#define S_FREE pm_free
#define S_MEMALIGN pm_memalign
#define S_POSIX_MEMALIGN pm_posix_memalign
#define S_ALIGNED_ALLOC pm_aligned_alloc
#define S_USABLE_SIZE pm_malloc_usable_size
#define S_TRIM pm_malloc_trim
#define S_NAME "pm_stress"
#else
#include <malloc.h>
#define S_MALLOC malloc
#define S_CALLOC calloc
#define S_REALLOC realloc
#define S_FREE free
#define S_MEMALIGN memalign
#define S_POSIX_MEMALIGN posix_memalign
#define S_ALIGNED_ALLOC aligned_alloc
#define S_USABLE_SIZE malloc_usable_size
#define S_TRIM malloc_trim
#define S_NAME "stress_malloc"
#endif

/* ---- tunables ---------------------------------------------------------------- */
enum {
    PRIVATE_SLOTS = 256,       /* blocks a long-lived worker holds */
    SPAWNED_SLOTS = 16,        /* blocks a short-lived thread holds */
    SHARED_SLOTS = 512,        /* the exchange between threads */
    SPAWN_BATCH = 8,           /* short-lived threads alive at once */
    SPAWNED_OPS = 60,          /* what each of them does */
    MIN_SPAWNED_THREADS = 1000, /* a run creates at least this many (--min-threads) */
    MIN_FORKS = 20,            /* and forks at least this often (--min-forks) */
    CHILD_OPS = 3000,          /* what a fork child does */
    CHILD_WATCHDOG_S = 30,     /* a child stuck this long has deadlocked */
    FORK_PAUSE_US = 5000,      /* between forks */
};

/* ---- failure reporting (async-signal-safe enough for fork children) --------- */
static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    char line[512];
    int n = snprintf(line, sizeof line, "%s[%d]: FAIL: ", S_NAME, (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* nothing better to do */
    }
    _exit(1);
}

static void watchdog_fired(int sig)
{
    (void)sig;
    static const char msg[] = S_NAME ": FAIL: watchdog: no progress (deadlock?)\n";
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) {
        /* exiting anyway */
    }
    _exit(3);
}

/* ---- deterministic randomness --------------------------------------------------- */
typedef struct rng {
    uint64_t state;
} rng_t;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(rng_t *r, uint64_t seed)
{
    r->state = mix64(seed + 0x9e3779b97f4a7c15ull) | 1;
}

static uint64_t rng_next(rng_t *r)
{
    uint64_t x = r->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static unsigned rng_below(rng_t *r, unsigned n)
{
    return (unsigned)(rng_next(r) % n);
}

/* ---- sizes ------------------------------------------------------------------------ */
/* Every class boundary k*16 - 1, k*16, k*16 + 1 (15, 16, 17, ..., 511, 512,
 * 513), a few tiny sizes, then sizes glibc serves, up to past its mmap
 * threshold. A block's size is always an entry of this table, so a slot can
 * carry the index instead of the size. */
#define SMALL_SIZES (3 + 3 * 32)
static const size_t large_sizes[] = {600,  1000,  1024,  2048,  4095,  4096,  4097,
                                     8192, 16384, 65536, 65537, 135000, 300000};
#define LARGE_SIZES (sizeof large_sizes / sizeof large_sizes[0])
#define SIZE_COUNT (SMALL_SIZES + LARGE_SIZES)
static size_t size_table[SIZE_COUNT];

static void sizes_init(void)
{
    size_t n = 0;
    size_table[n++] = 0;
    size_table[n++] = 1;
    size_table[n++] = 8;
    for (size_t k = 1; k <= 32; k++) {
        size_table[n++] = k * 16 - 1;
        size_table[n++] = k * 16;
        size_table[n++] = k * 16 + 1;
    }
    for (size_t i = 0; i < LARGE_SIZES; i++)
        size_table[n++] = large_sizes[i];
}

/* Mostly class boundaries; one draw in ten is large, and the huge ones (past
 * glibc's mmap threshold) are rarer still. */
static unsigned random_size_index(rng_t *r)
{
    unsigned roll = rng_below(r, 100);
    if (roll < 90)
        return rng_below(r, SMALL_SIZES);
    if (roll < 99)
        return SMALL_SIZES + rng_below(r, LARGE_SIZES - 2);
    return SMALL_SIZES + LARGE_SIZES - 2 + rng_below(r, 2);
}

/* ---- slots: a block and its size index in one word --------------------------------- */
/* x86-64 user addresses fit in 47 bits; the size index rides above them, so a
 * shared slot is one atomic word and a block always travels with its size. */
typedef uint64_t slot_t;
#define SLOT_EMPTY ((slot_t)0)
#define SLOT_SHIFT 48

static slot_t slot_make(void *p, unsigned size_index)
{
    return (slot_t)(uintptr_t)p | ((slot_t)size_index << SLOT_SHIFT);
}
static void *slot_ptr(slot_t s)
{
    return (void *)(uintptr_t)(s & (((slot_t)1 << SLOT_SHIFT) - 1));
}
static unsigned slot_size_index(slot_t s)
{
    return (unsigned)(s >> SLOT_SHIFT);
}

/* ---- patterns ------------------------------------------------------------------------ */
/* Byte i of a block at p of requested size n: a function of (p, n, i), so a
 * block handed out twice, shifted, or mixed up with another shows. Written
 * over the whole usable size, which the caller may use. */
static uint64_t pattern_word(const void *p, size_t n, size_t word)
{
    return mix64((uint64_t)(uintptr_t)p ^ ((uint64_t)n << 40) ^ (word * 0x9e3779b97f4a7c15ull));
}

static void pattern_fill(void *p, size_t n, size_t usable)
{
    unsigned char *b = p;
    size_t words = usable / 8;
    for (size_t w = 0; w < words; w++) {
        uint64_t v = pattern_word(p, n, w);
        memcpy(b + 8 * w, &v, 8);
    }
    if (usable % 8) {
        uint64_t v = pattern_word(p, n, words);
        memcpy(b + 8 * words, &v, usable % 8);
    }
}

/* Offset of the first byte in [0, len) that differs from the pattern of a
 * block at `origin` of size n, or SIZE_MAX. */
static size_t pattern_mismatch(const void *at, const void *origin, size_t n, size_t len)
{
    const unsigned char *b = at;
    size_t words = len / 8;
    for (size_t w = 0; w < words; w++) {
        uint64_t v = pattern_word(origin, n, w), got;
        memcpy(&got, b + 8 * w, 8);
        if (got != v)
            for (size_t i = 0; i < 8; i++)
                if (b[8 * w + i] != (unsigned char)(v >> (8 * i)))
                    return 8 * w + i;
    }
    for (size_t i = 8 * words; i < len; i++)
        if (b[i] != (unsigned char)(pattern_word(origin, n, words) >> (8 * (i % 8))))
            return i;
    return SIZE_MAX;
}

/* ---- is poolmalloc serving us? --------------------------------------------------------- */
/* pm_owns of the allocator under test, or NULL (plain build without the
 * preload): then routing is not checked. */
static int (*owns_fn)(const void *);

#ifdef STRESS_PM
static void owns_init(void)
{
    owns_fn = pm_owns;
}
#else
static void owns_init(void)
{
    owns_fn = (int (*)(const void *))dlsym(RTLD_DEFAULT, "pm_owns");
}
#endif

/* README: pools serve malloc/calloc/realloc of <= 512 bytes, and aligned
 * requests with alignment <= 16 likewise, or 32..512 with the size rounded
 * up to the alignment <= 512. Everything else is glibc's. */
static bool expect_pool(size_t alignment, size_t n)
{
    if (alignment <= 16)
        return n <= 512;
    if (alignment > 512)
        return false;
    size_t rounded = n == 0 ? alignment : (n + alignment - 1) & ~(alignment - 1);
    return rounded <= 512;
}

/* ---- one thread's view ------------------------------------------------------------------- */
typedef struct counters {
    uint64_t ops, allocs, frees, reallocs, handoffs, trims;
} counters_t;

typedef struct actor {
    rng_t rng;
    slot_t *slots; /* private blocks */
    unsigned slot_count;
    bool may_trim;
    counters_t count;
} actor_t;

static _Atomic slot_t shared_slots[SHARED_SLOTS];
static atomic_bool stop_flag;

static void check_block(slot_t s, const char *when)
{
    void *p = slot_ptr(s);
    size_t n = size_table[slot_size_index(s)];
    size_t usable = S_USABLE_SIZE(p);
    if (usable < n)
        die("%s: usable size %zu of %p < its size %zu", when, usable, p, n);
    size_t bad = pattern_mismatch(p, p, n, usable);
    if (bad != SIZE_MAX) {
        /* The 8-byte word around the first bad byte, as found and as
         * written: a free-list link, zeros (purged pages) or another
         * block's pattern tell different stories. */
        size_t word = bad / 8 * 8, len = usable - word < 8 ? usable - word : 8;
        uint64_t got = 0, want = pattern_word(p, n, bad / 8);
        memcpy(&got, (unsigned char *)p + word, len);
        die("%s: block %p of %zu bytes (usable %zu, %s) corrupt at offset %zu: word at %zu is "
            "%#018" PRIx64 ", expected %#018" PRIx64,
            when, p, n, usable, owns_fn ? (owns_fn(p) ? "a pool's" : "glibc's") : "?", bad, word,
            got, want);
    }
}

/* A fresh block: aligned, routed as the README says, usable size honoured,
 * calloc'd memory zero; then patterned. */
static slot_t adopt_new(void *p, unsigned size_index, size_t alignment, bool zeroed,
                        const char *what)
{
    size_t n = size_table[size_index];
    if (p == NULL)
        die("%s(%zu) returned NULL (errno %d)", what, n, errno);
    size_t need = alignment < 16 ? 16 : alignment;
    if ((uintptr_t)p % need != 0)
        die("%s(%zu, alignment %zu) returned %p, misaligned", what, n, alignment, p);
    if ((uintptr_t)p >> SLOT_SHIFT)
        die("%s returned %p, outside the user half", what, p);
    size_t usable = S_USABLE_SIZE(p);
    if (usable < n)
        die("%s(%zu): usable size %zu", what, n, usable);
    if (owns_fn && (owns_fn(p) != 0) != expect_pool(alignment, n))
        die("%s(%zu, alignment %zu) = %p: served by %s, expected %s", what, n, alignment, p,
            owns_fn(p) ? "a pool" : "glibc", expect_pool(alignment, n) ? "a pool" : "glibc");
    if (zeroed) {
        /* Pool blocks are zeroed whole (the caller may use all of them). */
        size_t len = owns_fn && owns_fn(p) ? usable : n;
        for (size_t i = 0; i < len; i++)
            if (((unsigned char *)p)[i] != 0)
                die("%s(%zu) = %p: byte %zu not zero", what, n, p, i);
    }
    pattern_fill(p, n, usable);
    return slot_make(p, size_index);
}

static void release(actor_t *a, slot_t s, const char *when)
{
    if (s == SLOT_EMPTY)
        return;
    check_block(s, when);
    S_FREE(slot_ptr(s));
    a->count.frees++;
}

static size_t random_alignment(rng_t *r)
{
    static const size_t powers[] = {8, 16, 32, 64, 128, 256, 512, 1024, 4096};
    return powers[rng_below(r, sizeof powers / sizeof powers[0])];
}

static slot_t allocate(actor_t *a)
{
    unsigned si = random_size_index(&a->rng);
    size_t n = size_table[si];
    a->count.allocs++;
    switch (rng_below(&a->rng, 20)) {
    case 0:
    case 1:
    case 2: {
        /* calloc with the size split into count x unit where it divides */
        size_t unit = (n % 16 == 0 && n > 0) ? 16 : 1, count = unit == 1 ? n : n / 16;
        if (rng_below(&a->rng, 2))
            return adopt_new(S_CALLOC(count, unit), si, 0, true, "calloc");
        return adopt_new(S_CALLOC(unit, count), si, 0, true, "calloc");
    }
    case 3:
    case 4: {
        size_t al = random_alignment(&a->rng);
        void *p = NULL;
        int rc = S_POSIX_MEMALIGN(&p, al, n);
        if (rc != 0)
            die("posix_memalign(%zu, %zu) = %d", al, n, rc);
        return adopt_new(p, si, al, false, "posix_memalign");
    }
    case 5: {
        /* glibc rounds an alignment that is not a power of two up */
        size_t al = rng_below(&a->rng, 4) ? random_alignment(&a->rng)
                                           : (size_t)(24 + 24 * rng_below(&a->rng, 10));
        size_t pow2 = 1;
        while (pow2 < al)
            pow2 <<= 1;
        return adopt_new(S_MEMALIGN(al, n), si, pow2, false, "memalign");
    }
    case 6: {
        size_t al = random_alignment(&a->rng);
        return adopt_new(S_ALIGNED_ALLOC(al, n), si, al, false, "aligned_alloc");
    }
    case 7:
        return adopt_new(S_REALLOC(NULL, n), si, 0, false, "realloc(NULL)");
    default:
        return adopt_new(S_MALLOC(n), si, 0, false, "malloc");
    }
}

/* realloc keeps the first min(old, new) bytes: checks them against the old
 * block's pattern, then patterns the new one. realloc(p, 0) frees. */
static slot_t reallocate(actor_t *a, slot_t s)
{
    if (s == SLOT_EMPTY)
        return allocate(a);
    check_block(s, "before realloc");
    void *old = slot_ptr(s);
    size_t old_n = size_table[slot_size_index(s)];
    a->count.reallocs++;
    unsigned si = random_size_index(&a->rng);
    size_t n = size_table[si];
    if (n == 0) { /* glibc: frees and returns NULL */
        if (S_REALLOC(old, 0) != NULL)
            die("realloc(%p, 0) did not return NULL", old);
        a->count.frees++;
        return SLOT_EMPTY;
    }
    void *p = S_REALLOC(old, n);
    if (p == NULL)
        die("realloc(%p, %zu) returned NULL", old, n);
    size_t keep = old_n < n ? old_n : n;
    size_t bad = pattern_mismatch(p, old, old_n, keep);
    if (bad != SIZE_MAX)
        die("realloc(%p [%zu bytes], %zu) = %p lost byte %zu", old, old_n, n, p, bad);
    /* Whatever the old block was, a result of <= 512 bytes is a pool's (a
     * pool block shrinking in place included) and a larger one glibc's. */
    if (owns_fn && (owns_fn(p) != 0) != (n <= 512))
        die("realloc(%p, %zu) = %p: served by %s", old, n, p, owns_fn(p) ? "a pool" : "glibc");
    size_t usable = S_USABLE_SIZE(p);
    if (usable < n)
        die("realloc(%zu): usable size %zu", n, usable);
    pattern_fill(p, n, usable);
    return slot_make(p, si);
}

/* A pool's worth of blocks of one large class and one more, all checked,
 * then freed: the extra block takes a pool from an arena, and freeing them
 * gives one back, so pools move between threads through the arenas and the
 * retained ring all the time, not only when a heap runs dry. */
static void pool_burst(actor_t *a)
{
    enum { MAX_BURST = 16384 / 256 + 1 };
    slot_t burst[MAX_BURST];
    unsigned class_size = 256 + 16 * rng_below(&a->rng, 17); /* 256 .. 512 */
    unsigned si = 3 + 3 * (class_size / 16 - 1) + 1;          /* size_table: k*16 */
    unsigned count = 16384 / class_size + 1;
    for (unsigned k = 0; k < count; k++)
        burst[k] = adopt_new(S_MALLOC(size_table[si]), si, 0, false, "malloc (burst)");
    for (unsigned k = 0; k < count; k++)
        release(a, burst[k], "in a burst");
    a->count.allocs += count;
}

/* One random operation. */
static void step(actor_t *a)
{
    unsigned i = rng_below(&a->rng, a->slot_count);
    slot_t *mine = &a->slots[i];
    unsigned roll = rng_below(&a->rng, 1000);
    a->count.ops++;
    if (roll < 300) { /* replace */
        release(a, *mine, "before free");
        *mine = allocate(a);
    } else if (roll < 450) { /* free */
        release(a, *mine, "before free");
        *mine = SLOT_EMPTY;
    } else if (roll < 600) { /* realloc, possibly of a block another thread made */
        *mine = reallocate(a, *mine);
    } else if (roll < 850) { /* hand a block over, take whatever was there */
        slot_t got = atomic_exchange(&shared_slots[rng_below(&a->rng, SHARED_SLOTS)], *mine);
        if (got != SLOT_EMPTY)
            check_block(got, "handed over");
        *mine = got;
        a->count.handoffs++;
    } else if (roll < 950) { /* take a block from another thread and free it */
        slot_t got = atomic_exchange(&shared_slots[rng_below(&a->rng, SHARED_SLOTS)], SLOT_EMPTY);
        release(a, got, "before remote free");
    } else if (roll < 960) { /* churn pools through the arenas */
        pool_burst(a);
    } else if (roll < 999 || !a->may_trim) { /* look */
        if (*mine != SLOT_EMPTY)
            check_block(*mine, "checked");
    } else { /* give memory back while everyone else allocates */
        S_TRIM(0);
        a->count.trims++;
    }
}

static void actor_drain(actor_t *a)
{
    for (unsigned i = 0; i < a->slot_count; i++) {
        release(a, a->slots[i], "at thread end");
        a->slots[i] = SLOT_EMPTY;
    }
}

/* ---- run-wide tallies ----------------------------------------------------------------- */
static _Atomic uint64_t total_ops, total_allocs, total_frees, total_reallocs, total_handoffs,
    total_trims, threads_spawned, forks_done;

static void tally(const counters_t *c)
{
    atomic_fetch_add(&total_ops, c->ops);
    atomic_fetch_add(&total_allocs, c->allocs);
    atomic_fetch_add(&total_frees, c->frees);
    atomic_fetch_add(&total_reallocs, c->reallocs);
    atomic_fetch_add(&total_handoffs, c->handoffs);
    atomic_fetch_add(&total_trims, c->trims);
}

static uint64_t base_seed = 1;

/* ---- long-lived workers ---------------------------------------------------------------- */
static void *worker_main(void *arg)
{
    slot_t slots[PRIVATE_SLOTS] = {0};
    actor_t a = {.slots = slots, .slot_count = PRIVATE_SLOTS, .may_trim = true};
    rng_seed(&a.rng, base_seed * 1000 + (uint64_t)(uintptr_t)arg);
    while (!atomic_load_explicit(&stop_flag, memory_order_relaxed))
        for (int k = 0; k < 64; k++)
            step(&a);
    actor_drain(&a);
    tally(&a.count);
    return NULL;
}

/* ---- threads by the thousand ------------------------------------------------------------ */
/* A short-lived thread: a few dozen operations, then it exits, sometimes
 * leaving its blocks in the shared slots for others to free after it is gone
 * (remote frees into an abandoned heap). */
static void *spawned_main(void *arg)
{
    slot_t slots[SPAWNED_SLOTS] = {0};
    actor_t a = {.slots = slots, .slot_count = SPAWNED_SLOTS};
    rng_seed(&a.rng, base_seed * 7919 + (uint64_t)(uintptr_t)arg);
    for (int k = 0; k < SPAWNED_OPS; k++)
        step(&a);
    if (rng_below(&a.rng, 2)) {
        for (unsigned i = 0; i < SPAWNED_SLOTS; i++) {
            if (slots[i] == SLOT_EMPTY)
                continue;
            slot_t got =
                atomic_exchange(&shared_slots[rng_below(&a.rng, SHARED_SLOTS)], slots[i]);
            slots[i] = got; /* freed below, by this thread, now a remote free */
        }
    }
    actor_drain(&a);
    tally(&a.count);
    return NULL;
}

static void *spawner_main(void *arg)
{
    (void)arg;
    uint64_t id = 0;
    while (!atomic_load(&stop_flag)) {
        pthread_t batch[SPAWN_BATCH];
        for (int i = 0; i < SPAWN_BATCH; i++) {
            int rc = pthread_create(&batch[i], NULL, spawned_main, (void *)(uintptr_t)++id);
            if (rc != 0)
                die("pthread_create: %s", strerror(rc));
        }
        for (int i = 0; i < SPAWN_BATCH; i++)
            pthread_join(batch[i], NULL);
        atomic_fetch_add(&threads_spawned, SPAWN_BATCH);
    }
    return NULL;
}

/* ---- fork while others allocate ---------------------------------------------------------- */
static void child_check_heap(void)
{
#ifdef STRESS_PM
    /* The other threads' heaps are ORPHANED here, skipped by the validator;
     * the child's own heap, the abandoned ones and the arenas must hold. */
    if (!pm_heap_validate())
        die("fork child: pm_heap_validate failed");
#endif
}

/* What a child of a multithreaded parent does: checks the blocks its thread
 * held, takes some from the shared slots (blocks of heaps the fork
 * orphaned), then the whole family again, and exits. */
static void child_main(actor_t *parent_view, uint64_t seed)
{
    alarm(CHILD_WATCHDOG_S);
    child_check_heap();
    for (unsigned i = 0; i < parent_view->slot_count; i++)
        if (parent_view->slots[i] != SLOT_EMPTY)
            check_block(parent_view->slots[i], "inherited by fork child");
    slot_t slots[64] = {0};
    actor_t a = {.slots = slots, .slot_count = 64, .may_trim = true};
    rng_seed(&a.rng, seed);
    for (unsigned i = 0; i < 64; i++) {
        slots[i] = atomic_exchange(&shared_slots[rng_below(&a.rng, SHARED_SLOTS)], SLOT_EMPTY);
        if (slots[i] != SLOT_EMPTY)
            check_block(slots[i], "taken by fork child");
    }
    for (int k = 0; k < CHILD_OPS; k++)
        step(&a);
    actor_drain(&a);
    actor_drain(parent_view);
    S_TRIM(0);
    child_check_heap();
#if STRESS_ASAN
    /* LeakSanitizer's check at exit locks ASan's allocator, which another
     * thread of the parent may have held at the fork (glibc's pthread_create
     * allocates through it): a child waited for it until the watchdog
     * fired in each of 6 runs of 30 s (about 120 forks a run) here, at
     * e565c6d as since. */
    _exit(0);
#endif
    exit(0); /* cleanly: atexit handlers and the preload's exit report run */
}

static void *forker_main(void *arg)
{
    (void)arg;
    slot_t slots[32] = {0};
    actor_t a = {.slots = slots, .slot_count = 32};
    rng_seed(&a.rng, base_seed * 104729);
    uint64_t round = 0;
    while (!atomic_load(&stop_flag)) {
        for (int k = 0; k < 50; k++)
            step(&a);
        fflush(NULL); /* the child must not print the parent's buffers again */
        pid_t pid = fork();
        if (pid < 0)
            die("fork: %s", strerror(errno));
        if (pid == 0)
            child_main(&a, base_seed * 31 + ++round);
        int status = 0;
        if (waitpid(pid, &status, 0) != pid)
            die("waitpid: %s", strerror(errno));
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            die("fork child %d: %s %d", (int)pid, WIFEXITED(status) ? "exit status" : "signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        atomic_fetch_add(&forks_done, 1);
        ++round;
        usleep(FORK_PAUSE_US);
    }
    actor_drain(&a);
    tally(&a.count);
    return NULL;
}

/* ---- main ----------------------------------------------------------------------------- */
static void usage(FILE *out)
{
    fprintf(out,
            "usage: " S_NAME " [--seconds N] [--threads N] [--seed N] [--no-fork] [--no-spawn]\n"
            "       [--min-threads N] [--min-forks N]"
#ifndef STRESS_PM
            " [--expect-preload]"
#endif
            "\n"
            "  --seconds N   run for N seconds (default 3; soak with more)\n"
            "  --threads N   long-lived worker threads (default 8)\n"
            "  --seed N      seed of every thread's random sequence (default 1)\n"
            "  --no-fork     no fork() while threads allocate\n"
            "  --no-spawn    no threads created and joined by the thousand\n"
            "  --min-threads N  run on until N short-lived threads were created (default 1000)\n"
            "  --min-forks N    run on until N children were forked and checked (default 20)\n"
#ifndef STRESS_PM
            "  --expect-preload  fail unless libpoolmalloc.so serves malloc\n"
#endif
    );
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static unsigned long parse_count(const char *opt, const char *value)
{
    char *end;
    errno = 0;
    unsigned long v = value ? strtoul(value, &end, 10) : 0;
    if (!value || errno || *end != '\0' || end == value) {
        fprintf(stderr, S_NAME ": %s needs a whole number\n", opt);
        usage(stderr);
        exit(2);
    }
    return v;
}

#ifdef STRESS_PM
/* glibc's malloc_trim as the core calls it, on its own (the glibc path's
 * live bytes halved) or for a worker's pm_malloc_trim: counted. */
static atomic_uint_fast64_t glibc_trims;
static int counting_glibc_trim(size_t pad)
{
    atomic_fetch_add(&glibc_trims, 1);
    return malloc_trim(pad);
}
#endif

int main(int argc, char **argv)
{
    unsigned long seconds = 3, workers = 8, min_threads = MIN_SPAWNED_THREADS,
                  min_forks = MIN_FORKS;
    bool fork_on = true, spawn_on = true, expect_preload = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--seconds"))
            seconds = parse_count(arg, argv[++i]);
        else if (!strcmp(arg, "--threads"))
            workers = parse_count(arg, argv[++i]);
        else if (!strcmp(arg, "--seed"))
            base_seed = parse_count(arg, argv[++i]);
        else if (!strcmp(arg, "--min-threads"))
            min_threads = parse_count(arg, argv[++i]);
        else if (!strcmp(arg, "--min-forks"))
            min_forks = parse_count(arg, argv[++i]);
        else if (!strcmp(arg, "--no-fork"))
            fork_on = false;
        else if (!strcmp(arg, "--no-spawn"))
            spawn_on = false;
        else if (!strcmp(arg, "--expect-preload"))
            expect_preload = true;
        else if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, S_NAME ": unknown argument '%s'\n", arg);
            usage(stderr);
            return 2;
        }
    }
    if (workers < 1 || workers > 1024) {
        fprintf(stderr, S_NAME ": --threads must be 1..1024\n");
        return 2;
    }

    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    signal(SIGALRM, watchdog_fired);
    /* The run itself, the minimum thread and fork counts, and the joins. */
    alarm((unsigned)(seconds * 2 + 60 + min_forks * 3));

#ifdef STRESS_PM
    pm_options_init(); /* POOLMALLOC_RETAIN_POOLS etc., as the preload would */
    /* glibc's heap is trimmed under the workers' feet, as under the preload. */
    pm_system_set_trim(counting_glibc_trim);
    if (pthread_atfork(pm_fork_prepare, pm_fork_parent, pm_fork_child) != 0)
        die("pthread_atfork failed");
#endif
    sizes_init();
    owns_init();
    if (expect_preload) {
        if (owns_fn == NULL)
            die("--expect-preload: pm_owns not found: is LD_PRELOAD=libpoolmalloc.so set?");
        void *p = S_MALLOC(100);
        if (!owns_fn(p))
            die("--expect-preload: malloc(100) = %p is not poolmalloc's", p);
        S_FREE(p);
    }

    double start = now_s();
    pthread_t worker_threads[1024], spawner, forker;
    for (unsigned long i = 0; i < workers; i++)
        if (pthread_create(&worker_threads[i], NULL, worker_main, (void *)(uintptr_t)i) != 0)
            die("pthread_create failed");
    if (spawn_on && pthread_create(&spawner, NULL, spawner_main, NULL) != 0)
        die("pthread_create failed");
    if (fork_on && pthread_create(&forker, NULL, forker_main, NULL) != 0)
        die("pthread_create failed");

    while (now_s() - start < (double)seconds ||
           (spawn_on && atomic_load(&threads_spawned) < min_threads) ||
           (fork_on && atomic_load(&forks_done) < min_forks))
        usleep(10000);
    atomic_store(&stop_flag, true);

    for (unsigned long i = 0; i < workers; i++)
        pthread_join(worker_threads[i], NULL);
    if (spawn_on)
        pthread_join(spawner, NULL);
    if (fork_on)
        pthread_join(forker, NULL);

    /* Whatever is left in the exchange belongs to exited threads. */
    actor_t last = {.slots = NULL, .slot_count = 0};
    for (unsigned i = 0; i < SHARED_SLOTS; i++)
        release(&last, atomic_exchange(&shared_slots[i], SLOT_EMPTY), "left in a shared slot");
    tally(&last.count);

#ifdef STRESS_PM
    if (!pm_heap_validate())
        die("pm_heap_validate failed at the end");
    pm_stats_t stats;
    pm_stats_get(&stats);
    if (stats.small_live_blocks != 0)
        die("%" PRIu64 " pool blocks still live after every block was freed",
            stats.small_live_blocks);
    S_TRIM(0);
    if (!pm_heap_validate())
        die("pm_heap_validate failed after malloc_trim");
    printf(S_NAME ": glibc's heap trimmed %" PRIu64 " times (%" PRIu64 " by workers' trims)\n",
           (uint64_t)atomic_load(&glibc_trims), atomic_load(&total_trims));
    /* Whether the run moved pools between live threads' heaps (EXCHANGE). */
    printf(S_NAME ": %" PRIu64 " pools given to the exchange, %" PRIu64 " taken from it\n",
           stats.exchange_given_total, stats.exchange_taken_total);
#endif
    printf(S_NAME ": ok: %.1f s, %lu workers, %" PRIu64 " ops (%" PRIu64 " allocs, %" PRIu64
                  " frees, %" PRIu64 " reallocs, %" PRIu64 " handoffs, %" PRIu64
                  " trims), %" PRIu64 " threads created and joined, %" PRIu64 " forks\n",
           now_s() - start, workers, atomic_load(&total_ops), atomic_load(&total_allocs),
           atomic_load(&total_frees), atomic_load(&total_reallocs), atomic_load(&total_handoffs),
           atomic_load(&total_trims), atomic_load(&threads_spawned), atomic_load(&forks_done));
    return 0;
}
