/* fuzz_core.c — the libFuzzer target of the core: decodes a sequence of
 * operations from the input and runs them through pm_* against a shadow
 * model of every live block, then frees what is left and checks
 * pm_heap_validate() and the statistics. Each check that fails aborts, so
 * libFuzzer (or the replay main, replay.c) reports the input.
 *
 * Uses pm_* only for the allocations under test: under -fsanitize=address
 * the process's malloc is ASan's, and our pools are invisible to it.
 *
 * What the model checks, per operation:
 *   - no two live blocks overlap, over their whole usable sizes;
 *   - a block's contents stay intact (filled with a byte of its own over its
 *     whole usable size, checked before every free / realloc and by CHECK);
 *   - usable size >= the size asked for, and equal to the block size of the
 *     class for pool blocks (a pool block that realloc grows and moves gets
 *     a quarter more than it had, README); it never changes while the block
 *     lives;
 *   - calloc memory is zero (a pool block's whole block, README);
 *   - realloc keeps min(old usable size, new size) bytes;
 *   - alignment (16 always; memalign & co. what was asked for, rounded up to
 *     a power of two) and the README's routing between pools and glibc;
 *   - errors: posix_memalign EINVAL, calloc / reallocarray overflow ENOMEM.
 *
 * Input format: a stream of operations, each an opcode byte (taken modulo
 * OP_COUNT) followed by its operands; a stream that runs out reads zeros.
 * See `decode_size` and `decode_alignment` for how operands map to values. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h" /* pm_heap_validate */
#include "poolmalloc.h"

enum {
    SLOTS = 64,
    MAX_OPS = 2048,       /* per input: keeps every run fast */
    MAX_THREAD_OPS = 16,  /* pthread_create is the slowest operation */
};

typedef enum op {
    OP_MALLOC,
    OP_CALLOC,
    OP_REALLOC,
    OP_FREE,
    OP_MEMALIGN,
    OP_POSIX_MEMALIGN,
    OP_ALIGNED_ALLOC,
    OP_USABLE,
    OP_TRIM,
    OP_REALLOCARRAY,
    OP_THREAD,
    OP_CHECK,
    OP_OWNS,
    OP_VALLOC,
    OP_COUNT
} op_t;

typedef struct shadow {
    unsigned char *p; /* NULL: the slot is empty */
    size_t size;      /* what was asked for */
    size_t usable;    /* pm_malloc_usable_size when it was made */
    unsigned char fill;
} shadow_t;

static shadow_t slots[SLOTS];
static unsigned char next_fill = 1;

/* PM_FUZZ_TRACE=1: every operation on stderr, to read what a crashing input
 * does (pm_fuzz_replay FILE or pm_fuzz_core FILE). */
static bool trace;
#define TRACE(...) (trace ? (void)fprintf(stderr, __VA_ARGS__) : (void)0)
static const char *const op_names[OP_COUNT] = {
    "malloc", "calloc",  "realloc", "free",         "memalign", "posix_memalign", "aligned_alloc",
    "usable", "trim",    "reallocarray", "thread",  "check",    "owns",           "valloc"};

/* ---- failing ------------------------------------------------------------------- */
static void fail(const char *what, const void *p, size_t a, size_t b) __attribute__((noreturn));
static void fail(const char *what, const void *p, size_t a, size_t b)
{
    fprintf(stderr, "fuzz_core: FAIL: %s (pointer %p, %zu, %zu)\n", what, p, a, b);
    abort();
}
#define REQUIRE(cond, p, a, b)                                                                     \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail(#cond, (p), (size_t)(a), (size_t)(b));                                            \
    } while (0)

/* ---- decoding -------------------------------------------------------------------- */
typedef struct input {
    const uint8_t *at, *end;
} input_t;

static uint8_t take8(input_t *in)
{
    return in->at < in->end ? *in->at++ : 0;
}
static uint16_t take16(input_t *in)
{
    uint16_t lo = take8(in);
    return (uint16_t)(lo | (uint16_t)take8(in) << 8);
}

/* One byte picks the kind: around a class boundary (k*16 - 1, k*16,
 * k*16 + 1, k = 0..33), any size up to 1 KiB, a byte, or a large size
 * (glibc's): up to 64 KiB + 512, or in steps of 8 up to 512 KiB + 512, past
 * the chunk cache's 256 KiB. */
static size_t decode_size(input_t *in)
{
    uint8_t kind = take8(in);
    switch (kind >> 6) {
    case 0: {
        size_t k = take8(in) % 34, delta = kind % 3;
        return k * 16 + delta == 0 ? 0 : k * 16 + delta - 1;
    }
    case 1:
        return take16(in) % 1025;
    case 2:
        return kind & 0x3f;
    default:
        return PM_SMALL_MAX + 1 + (size_t)take16(in) * (kind & 1 ? 8 : 1);
    }
}

/* Mostly a power of two (1 .. 8192); otherwise any value below 2048, which
 * posix_memalign must refuse unless it is a power of two and memalign
 * rounds up. */
static size_t decode_alignment(input_t *in)
{
    uint8_t b = take8(in);
    if (b < 224)
        return (size_t)1 << (b % 14);
    return take16(in) % 2048;
}

/* ---- the model ------------------------------------------------------------------- */
static bool is_power_of_two(size_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

/* What memalign makes of an alignment: at least 16; raised to a power of two. */
static size_t effective_alignment(size_t alignment)
{
    size_t a = 16;
    while (a < alignment)
        a <<= 1;
    return a;
}

/* README: pools serve <= 512 bytes, and aligned requests whose size rounded
 * up to the alignment (32..512) is <= 512. */
static bool expect_pool(size_t alignment, size_t size)
{
    if (alignment <= 16)
        return size <= PM_SMALL_MAX;
    if (alignment > PM_POOL_ALIGN_MAX)
        return false;
    size_t rounded = size == 0 ? alignment : (size + alignment - 1) & ~(alignment - 1);
    return rounded <= PM_SMALL_MAX;
}

static bool all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
    uint64_t word;
    memset(&word, v, sizeof word);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t got;
        memcpy(&got, p + i, 8);
        if (got != word)
            return false;
    }
    for (; i < n; i++)
        if (p[i] != v)
            return false;
    return true;
}

static void check_slot(const shadow_t *s)
{
    if (s->p == NULL)
        return;
    REQUIRE(pm_malloc_usable_size(s->p) == s->usable, s->p, s->usable, s->size);
    REQUIRE(all_bytes(s->p, s->usable, s->fill), s->p, s->usable, s->fill);
}

/* A new block in slot `i` (now empty) for `size` bytes: checks alignment,
 * routing, usable size and overlap, then fills it. `served`: the size the
 * allocator was to take for it (size, or more for a growing realloc).
 * `kept_usable`: nonzero when realloc kept the block in place, whose usable
 * size then stays what it was (README: a block shrinking by at most a
 * quarter is kept). */
static void adopt_block(unsigned i, void *p, size_t size, size_t served, size_t alignment,
                        bool zeroed, size_t kept_usable)
{
    TRACE("  -> %p (size %zu, served %zu, alignment %zu)\n", p, size, served, alignment);
    REQUIRE(p != NULL, p, size, alignment);
    unsigned char *b = p;
    size_t align = effective_alignment(alignment);
    REQUIRE((uintptr_t)b % align == 0, p, size, align);
    bool pooled = pm_owns(b) != 0;
    REQUIRE(pooled == expect_pool(alignment, served), p, served, alignment);
    size_t usable = pm_malloc_usable_size(b);
    REQUIRE(usable >= size, p, usable, size);
    if (pooled && kept_usable) {
        REQUIRE(usable == kept_usable, p, usable, kept_usable);
    } else if (pooled) {
        /* A pool block's usable size is its block size: its class's, or for
         * an aligned request the class of the size rounded up. */
        size_t rounded = served;
        if (alignment > 16)
            rounded = served == 0 ? align : (served + align - 1) & ~(align - 1);
        REQUIRE(usable == pm_class_block_size(pm_size_class(rounded)), p, usable, rounded);
    }
    if (zeroed)
        REQUIRE(all_bytes(b, pooled ? usable : size, 0), p, size, usable);
    for (unsigned j = 0; j < SLOTS; j++) {
        const shadow_t *o = &slots[j];
        if (j == i || o->p == NULL)
            continue;
        REQUIRE(b + usable <= o->p || o->p + o->usable <= b, p, (uintptr_t)o->p, o->usable);
    }
    shadow_t *s = &slots[i];
    s->p = b;
    s->size = size;
    s->usable = usable;
    s->fill = next_fill;
    next_fill = next_fill == 255 ? 1 : next_fill + 1;
    memset(b, s->fill, usable);
}

static void adopt(unsigned i, void *p, size_t size, size_t alignment, bool zeroed)
{
    adopt_block(i, p, size, size, alignment, zeroed, 0);
}

static void release(unsigned i)
{
    shadow_t *s = &slots[i];
    check_slot(s);
    pm_free(s->p);
    s->p = NULL;
}

/* realloc of slot i to size (reallocarray passes count x unit, with
 * overflow). The model keeps min(old usable, new size) bytes. */
static void resize(unsigned i, size_t count, size_t unit, bool array)
{
    shadow_t *s = &slots[i];
    check_slot(s);
    size_t size;
    bool overflow = __builtin_mul_overflow(count, unit, &size);
    TRACE("  %s(%p, %zu x %zu)\n", array ? "reallocarray" : "realloc", (void *)s->p, count, unit);
    bool old_pooled = s->p != NULL && pm_owns(s->p); /* before realloc may unmap its arena */
    errno = 0;
    void *q = array ? pm_reallocarray(s->p, count, unit) : pm_realloc(s->p, size);
    if (overflow) {
        REQUIRE(q == NULL && errno == ENOMEM, q, count, unit);
        check_slot(s); /* untouched */
        return;
    }
    if (size == 0 && s->p != NULL) { /* frees, returns NULL (glibc) */
        REQUIRE(q == NULL, q, 0, 0);
        s->p = NULL;
        return;
    }
    shadow_t old = *s;
    if (q != NULL && old.p != NULL) {
        size_t keep = old.usable < size ? old.usable : size;
        REQUIRE(all_bytes(q, keep, old.fill), q, keep, old.fill);
    }
    /* A pool block that grows by less than an eighth moves to a quarter
     * more than it had, as long as a realloc of the same size would keep
     * that block (no more than 4/3 of it, in whole granules), within the
     * pools while the size fits in them (README). */
    size_t served = size;
    if (old_pooled && size > old.usable && size - old.usable < old.usable / 8) {
        size_t ahead = old.usable + old.usable / 4;
        size_t kept = ((4 * size - 1) / 3) & ~(size_t)15;
        if (ahead > kept)
            ahead = kept;
        if (size <= PM_SMALL_MAX && ahead > PM_SMALL_MAX)
            ahead = PM_SMALL_MAX;
        if (ahead > size)
            served = ahead;
    }
    s->p = NULL; /* the old block is gone either way */
    adopt_block(i, q, size, served, 0, false, q == old.p ? old.usable : 0);
}

/* ---- another thread ----------------------------------------------------------------- */
/* A thread that frees one block (a remote free, while its owner lives) and
 * allocates another, then exits: its heap is abandoned with that block, the
 * next thread adopts it, and freeing the block here is a remote free into an
 * abandoned heap. Joined before the next operation, so runs stay
 * deterministic. */
typedef struct job {
    void *free_this;
    size_t size;
    void *made;
} job_t;

static void *job_run(void *arg)
{
    job_t *job = arg;
    pm_free(job->free_this);
    job->made = pm_malloc(job->size);
    return NULL;
}

static void run_thread(unsigned from, unsigned to, size_t size)
{
    check_slot(&slots[from]);
    job_t job = {.free_this = slots[from].p, .size = size};
    slots[from].p = NULL;
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, job_run, &job) == 0, NULL, 0, 0);
    pthread_join(t, NULL);
    if (slots[to].p != NULL)
        release(to);
    adopt(to, job.made, size, 0, false);
}

/* ---- one input ---------------------------------------------------------------------- */
static void run_op(input_t *in, unsigned *thread_ops)
{
    op_t op = (op_t)(take8(in) % OP_COUNT);
    unsigned i = take8(in) % SLOTS;
    TRACE("%s slot %u (holds %p, %zu bytes)\n", op_names[op], i, (void *)slots[i].p,
          slots[i].size);
    switch (op) {
    case OP_MALLOC: {
        size_t size = decode_size(in);
        if (slots[i].p)
            release(i);
        adopt(i, pm_malloc(size), size, 0, false);
        break;
    }
    case OP_CALLOC: {
        size_t count = decode_size(in), unit = take8(in) % 5;
        if (slots[i].p)
            release(i);
        if (take8(in) == 0xff) { /* overflow: NULL and ENOMEM */
            errno = 0;
            void *p = pm_calloc(SIZE_MAX / 2 + 1, 2 + unit);
            REQUIRE(p == NULL && errno == ENOMEM, p, count, unit);
            break;
        }
        size_t size = count * unit; /* unit <= 4, count <= 66 KiB: no overflow */
        adopt(i, pm_calloc(count, unit), size, 0, true);
        break;
    }
    case OP_REALLOC:
        resize(i, decode_size(in), 1, false);
        break;
    case OP_FREE:
        if (slots[i].p)
            release(i);
        else
            pm_free(NULL);
        break;
    case OP_MEMALIGN:
    case OP_ALIGNED_ALLOC: {
        size_t alignment = decode_alignment(in), size = decode_size(in);
        if (slots[i].p)
            release(i);
        void *p = op == OP_MEMALIGN ? pm_memalign(alignment, size)
                                    : pm_aligned_alloc(alignment, size);
        adopt(i, p, size, effective_alignment(alignment), false);
        break;
    }
    case OP_POSIX_MEMALIGN: {
        size_t alignment = decode_alignment(in), size = decode_size(in);
        if (slots[i].p)
            release(i);
        void *p = &slots[i]; /* must stay untouched on error */
        errno = 1234;
        int rc = pm_posix_memalign(&p, alignment, size);
        REQUIRE(errno == 1234, p, alignment, size);
        if (!is_power_of_two(alignment) || alignment % sizeof(void *) != 0) {
            REQUIRE(rc == EINVAL && p == &slots[i], p, alignment, rc);
            break;
        }
        REQUIRE(rc == 0, p, alignment, rc);
        adopt(i, p, size, alignment, false);
        break;
    }
    case OP_USABLE: {
        /* The whole usable size is the caller's: write it all anew. */
        shadow_t *s = &slots[i];
        check_slot(s);
        if (s->p) {
            s->fill = next_fill;
            next_fill = next_fill == 255 ? 1 : next_fill + 1;
            memset(s->p, s->fill, s->usable);
        } else {
            REQUIRE(pm_malloc_usable_size(NULL) == 0, NULL, 0, 0);
        }
        break;
    }
    case OP_TRIM: {
        pm_malloc_trim(take8(in));
        break;
    }
    case OP_REALLOCARRAY: {
        size_t count = decode_size(in);
        uint8_t u = take8(in);
        size_t unit = u % 8;
        if (u == 0xff) { /* overflow */
            unit = SIZE_MAX / 2 + 1;
            count = count < 2 ? 2 : count;
        }
        resize(i, count, unit, true);
        break;
    }
    case OP_THREAD: {
        unsigned to = take8(in) % SLOTS;
        size_t size = decode_size(in);
        if (++*thread_ops <= MAX_THREAD_OPS)
            run_thread(i, to, size);
        break;
    }
    case OP_CHECK:
        for (unsigned j = 0; j < SLOTS; j++)
            check_slot(&slots[j]);
        break;
    case OP_OWNS: {
        /* Any value at all: pm_owns never dereferences it. */
        uint64_t v = 0;
        for (int k = 0; k < 8; k++)
            v = v << 8 | take8(in);
        (void)pm_owns((const void *)(uintptr_t)v);
        REQUIRE(!pm_owns(&v), &v, 0, 0);
        shadow_t *s = &slots[i];
        if (s->p && pm_owns(s->p)) /* every byte of a pool block is ours */
            REQUIRE(pm_owns(s->p + (v % s->usable)), s->p, v % s->usable, 0);
        break;
    }
    case OP_VALLOC: {
        size_t size = decode_size(in);
        if (slots[i].p)
            release(i);
        void *p = take8(in) & 1 ? pm_valloc(size) : pm_pvalloc(size);
        adopt(i, p, size, 4096, false); /* always glibc's, page-aligned */
        break;
    }
    case OP_COUNT:
        break;
    }
}

/* Everything freed, the core must be whole: pm_heap_validate (I2..I8) and
 * the counters' arithmetic, with no pool block left live. */
static void check_core(void)
{
    REQUIRE(pm_heap_validate(), NULL, 0, 0);
    pm_stats_t st;
    pm_stats_get(&st);
    uint64_t live = 0, allocated = 0;
    for (int c = 0; c < PM_CLASS_COUNT; c++) {
        const pm_class_stats_t *k = &st.classes[c];
        REQUIRE(k->live_blocks == k->allocated_total - k->freed_total, NULL, c, k->live_blocks);
        live += k->live_blocks;
        allocated += k->allocated_total;
    }
    REQUIRE(live == 0 && st.small_live_blocks == 0, NULL, live, st.small_live_blocks);
    REQUIRE(allocated == st.small_allocated_total, NULL, allocated, st.small_allocated_total);
    REQUIRE(st.arenas_mapped == st.arenas_created_total - st.arenas_destroyed_total, NULL,
            st.arenas_mapped, st.arenas_destroyed_total);
    REQUIRE(st.arena_bytes == st.arenas_mapped * PM_ARENA_SIZE, NULL, st.arena_bytes, 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *t = getenv("PM_FUZZ_TRACE");
    trace = t != NULL && t[0] == '1';
    pm_options_init(); /* POOLMALLOC_RETAIN_POOLS=0 etc. make other runs */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input_t in = {data, data + size};
    unsigned thread_ops = 0;
    next_fill = 1; /* the same input always writes the same bytes */
    for (unsigned n = 0; n < MAX_OPS && in.at < in.end; n++)
        run_op(&in, &thread_ops);
    for (unsigned i = 0; i < SLOTS; i++)
        if (slots[i].p)
            release(i);
    check_core();
    return 0;
}
