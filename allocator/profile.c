/* profile.c — owns allocation-site profiling: sampling one allocation every
 * POOLMALLOC_PROFILE_RATE bytes on average, its backtrace (libunwind), the
 * table of sites and of sampled blocks still live, and the site reports.
 * The only file that includes libunwind.h. Never calls malloc: its tables
 * live in mmap'd memory; while it unwinds, the thread's allocations go
 * straight to glibc (I11). Keeps I11.
 *
 * Sampling: each heap counts down the bytes it hands out; when the count
 * goes below zero, that allocation is sampled and a new count is drawn from
 * an exponential distribution with the configured mean, as tcmalloc and
 * jemalloc do. A sample of s bytes then stands for s / (1 - e^(-s/rate))
 * bytes (and that divided by s allocations), which makes every size's
 * estimate unbiased however small or large it is. */
#include "internal.h"

#include <dlfcn.h>
#include <link.h>
#include <libunwind.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define PROFILE_SITE_BITS 14     /* 16384 distinct stacks */
#define PROFILE_SAMPLE_BITS 20   /* a million sampled blocks live at once */
#define PROFILE_SITES ((size_t)1 << PROFILE_SITE_BITS)
#define PROFILE_SAMPLES ((size_t)1 << PROFILE_SAMPLE_BITS)
#define PROFILE_TOMBSTONE ((uintptr_t)1)

typedef struct profile_sample {
    uintptr_t block; /* 0: empty; PROFILE_TOMBSTONE: deleted */
    uint32_t site;
    uint32_t reserved;
    double bytes; /* the estimate this sample stands for */
    double count;
} profile_sample_t;

static struct {
    bool enabled;
    double rate;
    /* poolmalloc's own code, when it is a library of its own (preloaded):
     * frames in it lead every stack and are not the program's sites. */
    uintptr_t own_text_start, own_text_end;
    int (*backtrace)(void **frames, int depth);
    pthread_mutex_t lock;
    pm_profile_site_t *sites; /* open addressing by stack hash */
    size_t site_count;
    profile_sample_t *samples; /* open addressing by block address */
    uint64_t samples_taken, samples_dropped;
} profile = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Set while this thread unwinds: its allocations go to glibc, unsampled. */
static __thread bool profile_unwinding __attribute__((tls_model("initial-exec")));

bool pm_profile_enabled(void)
{
    return profile.enabled;
}

static int64_t profile_draw_countdown(uint64_t *rng)
{
    /* xorshift64*, then an exponential draw with mean `rate` bytes. */
    uint64_t x = *rng ? *rng : 0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    double uniform = ((double)((x * 0x2545f4914f6cdd1dull) >> 11) + 0.5) / 9007199254740992.0;
    double next = -log(uniform) * profile.rate;
    return next > 9e18 ? INT64_MAX : (int64_t)next + 1;
}

void pm_profile_heap_init(pm_heap_t *heap)
{
    if (!profile.enabled) {
        heap->sample_countdown = INT64_MAX;
        return;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    heap->sample_rng = (uint64_t)(uintptr_t)heap ^ (uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 32);
    heap->sample_countdown = profile_draw_countdown(&heap->sample_rng);
}

static int profile_find_own_text(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    uintptr_t self = (uintptr_t)data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X) || self < start ||
            self >= start + ph->p_memsz)
            continue;
        /* Linked into the program itself, there is no boundary to find. */
        if (info->dlpi_name != NULL && info->dlpi_name[0] != '\0') {
            profile.own_text_start = start;
            profile.own_text_end = start + ph->p_memsz;
        }
        return 1;
    }
    return 0;
}

void pm_profile_init(void)
{
    if (!pm_options.profile)
        return;
    /* RTLD_LOCAL: libunwind's own _Unwind_* symbols must not take over the
     * program's C++ exception handling. */
    void *unwind = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
    if (unwind != NULL)
        profile.backtrace = (int (*)(void **, int))dlsym(unwind, "unw_backtrace");
    size_t site_bytes = PROFILE_SITES * sizeof(pm_profile_site_t);
    size_t sample_bytes = PROFILE_SAMPLES * sizeof(profile_sample_t);
    profile.sites = pm_os_map(site_bytes);
    profile.samples = pm_os_map(sample_bytes);
    if (profile.backtrace == NULL || profile.sites == NULL || profile.samples == NULL) {
        static const char warning[] = "poolmalloc: POOLMALLOC_PROFILE is set but libunwind "
                                      "(libunwind8) cannot be loaded; profiling is off\n";
        pm_os_write_all(2, warning, sizeof warning - 1);
        return;
    }
    dl_iterate_phdr(profile_find_own_text, (void *)(uintptr_t)&pm_profile_init);
    profile.rate = (double)pm_options.profile_rate;
    profile.enabled = true;
}

static uint64_t profile_hash(const void *const *frames, int depth)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < depth; i++)
        h = (h ^ (uint64_t)(uintptr_t)frames[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

/* Caller holds profile.lock. Returns the site's index, or -1 if full. */
static long profile_site_find(void *const *frames, int depth)
{
    uint64_t hash = profile_hash((const void *const *)frames, depth);
    for (size_t probe = 0; probe < PROFILE_SITES; probe++) {
        size_t i = (hash + probe) & (PROFILE_SITES - 1);
        pm_profile_site_t *site = &profile.sites[i];
        if (site->depth == 0) {
            if (profile.site_count >= PROFILE_SITES / 2)
                return -1; /* keep probes short */
            site->hash = hash;
            site->depth = (uint32_t)depth;
            memcpy(site->frames, frames, (size_t)depth * sizeof frames[0]);
            profile.site_count++;
            return (long)i;
        }
        if (site->hash == hash && site->depth == (uint32_t)depth &&
            memcmp(site->frames, frames, (size_t)depth * sizeof frames[0]) == 0)
            return (long)i;
    }
    return -1;
}

static size_t profile_sample_slot(uintptr_t block)
{
    return (size_t)((block >> 4) * 0x9e3779b97f4a7c15ull >> (64 - PROFILE_SAMPLE_BITS));
}

/* The sampled block's record, or NULL. Caller holds profile.lock. */
static profile_sample_t *profile_sample_lookup(uintptr_t block)
{
    size_t i = profile_sample_slot(block);
    for (size_t probe = 0; probe < PROFILE_SAMPLES; probe++, i = (i + 1) & (PROFILE_SAMPLES - 1)) {
        profile_sample_t *s = &profile.samples[i];
        if (s->block == block)
            return s;
        if (s->block == 0)
            return NULL;
    }
    return NULL;
}

static profile_sample_t *profile_sample_insert(uintptr_t block)
{
    size_t i = profile_sample_slot(block);
    for (size_t probe = 0; probe < 64; probe++, i = (i + 1) & (PROFILE_SAMPLES - 1)) {
        profile_sample_t *s = &profile.samples[i];
        if (s->block == 0 || s->block == PROFILE_TOMBSTONE)
            return s;
    }
    return NULL; /* crowded: the sample is dropped and counted */
}

/* I11: records one sampled allocation. Runs with the thread's heap swapped
 * for the empty one, so whatever libunwind allocates meanwhile takes the
 * slow path, which sends it to glibc (pm_profile_unwinding). */
static void profile_record(pm_heap_t *heap, void *block, size_t size)
{
    heap->sample_countdown = profile_draw_countdown(&heap->sample_rng);
    if (profile_unwinding)
        return;
    profile_unwinding = true;
    pm_thread_heap = &pm_heap_empty;
    void *frames[PM_PROFILE_DEPTH + 2];
    int depth = profile.backtrace(frames, PM_PROFILE_DEPTH + 2);
    pm_thread_heap = heap;
    /* The site starts at the program's call into the allocator. */
    int skip = 0;
    if (profile.own_text_end != 0)
        while (skip < depth - 1 && (uintptr_t)frames[skip] >= profile.own_text_start &&
               (uintptr_t)frames[skip] < profile.own_text_end)
            skip++;
    else
        skip = depth > 2 ? 2 : 0; /* record and the sampling entry */
    double s = (double)size;
    double weight = 1.0 / (1.0 - exp(-s / profile.rate));
    pthread_mutex_lock(&profile.lock);
    long site = profile_site_find(frames + skip, depth - skip);
    profile_sample_t *sample = site >= 0 ? profile_sample_insert((uintptr_t)block) : NULL;
    if (sample != NULL) {
        pm_profile_site_t *entry = &profile.sites[site];
        sample->block = (uintptr_t)block;
        sample->site = (uint32_t)site;
        sample->bytes = s * weight;
        sample->count = weight;
        entry->alloc_bytes += s * weight;
        entry->alloc_count += weight;
        entry->live_bytes += s * weight;
        entry->live_count += weight;
        entry->samples++;
        profile.samples_taken++;
    } else {
        profile.samples_dropped++;
    }
    pthread_mutex_unlock(&profile.lock);
    if (sample != NULL && pm_registry_contains(block))
        __atomic_fetch_add(&pm_pool_of(block)->sampled_count, 1, __ATOMIC_RELAXED);
    profile_unwinding = false;
}

void *pm_profile_sample_small(pm_heap_t *heap, void *block, size_t size)
{
    profile_record(heap, block, size);
    return block;
}

void pm_profile_sample_system(void *block, size_t usable)
{
    pm_heap_t *heap = pm_thread_heap;
    if (heap == &pm_heap_empty || (heap->sample_countdown -= (int64_t)usable) >= 0)
        return;
    profile_record(heap, block, usable);
}

bool pm_profile_unwinding(void)
{
    return profile_unwinding;
}

/* Across fork (pm_fork_*): a thread that held the lock when another forked
 * does not exist in the child, which would wait for it forever at its first
 * sampled malloc or free. The lock is a leaf: nothing else is taken, and
 * nothing allocates, while it is held. */
void pm_profile_lock(void) { pthread_mutex_lock(&profile.lock); }
void pm_profile_unlock(void) { pthread_mutex_unlock(&profile.lock); }
void pm_profile_reinit_lock(void) { pthread_mutex_init(&profile.lock, NULL); }

void pm_profile_free(void *block)
{
    pthread_mutex_lock(&profile.lock);
    profile_sample_t *sample = profile_sample_lookup((uintptr_t)block);
    bool found = sample != NULL;
    if (found) {
        pm_profile_site_t *site = &profile.sites[sample->site];
        site->live_bytes -= sample->bytes;
        site->live_count -= sample->count;
        sample->block = PROFILE_TOMBSTONE;
    }
    pthread_mutex_unlock(&profile.lock);
    if (found && pm_registry_contains(block))
        __atomic_fetch_sub(&pm_pool_of(block)->sampled_count, 1, __ATOMIC_RELAXED);
}

/* ---- reports ------------------------------------------------------------- */

size_t pm_profile_top(pm_profile_site_t *out, size_t capacity, bool by_live, bool leaks_only,
                      pm_profile_summary_t *summary)
{
    size_t n = 0;
    pthread_mutex_lock(&profile.lock);
    if (summary != NULL) {
        summary->rate_bytes = (uint64_t)profile.rate;
        summary->sites = profile.site_count;
        summary->samples = profile.samples_taken;
        summary->dropped = profile.samples_dropped;
    }
    for (size_t i = 0; profile.enabled && i < PROFILE_SITES; i++) {
        const pm_profile_site_t *site = &profile.sites[i];
        double key = by_live ? site->live_bytes : site->alloc_bytes;
        if (site->depth == 0 || key < 0.5 || (leaks_only && site->live_count < 0.5))
            continue;
        /* Insertion into the sorted top list, largest first. */
        size_t at = n < capacity ? n : capacity;
        while (at > 0 && (by_live ? out[at - 1].live_bytes : out[at - 1].alloc_bytes) < key)
            at--;
        if (at >= capacity)
            continue;
        size_t last = n < capacity ? n : capacity - 1;
        memmove(&out[at + 1], &out[at], (last - at) * sizeof out[0]);
        out[at] = *site;
        if (n < capacity)
            n++;
    }
    pthread_mutex_unlock(&profile.lock);
    return n;
}

/* "module!symbol+0xoff", or "module+0xoff" without a symbol: dladdr takes
 * the loader's lock but never allocates. */
void pm_profile_format_frame(pm_buf_t *b, const void *frame)
{
    Dl_info info;
    /* A return address points after the call: look up the call itself. */
    const char *pc = (const char *)frame - 1;
    if (dladdr(pc, &info) == 0 || info.dli_fname == NULL) {
        pm_buf_hex(b, (uintptr_t)frame);
        return;
    }
    const char *module = strrchr(info.dli_fname, '/');
    pm_buf_str(b, module != NULL ? module + 1 : info.dli_fname);
    if (info.dli_sname != NULL) {
        pm_buf_char(b, '!');
        pm_buf_str(b, info.dli_sname);
        pm_buf_str(b, "+");
        pm_buf_hex(b, (uintptr_t)frame - (uintptr_t)info.dli_saddr);
    } else {
        pm_buf_str(b, "+");
        pm_buf_hex(b, (uintptr_t)frame - (uintptr_t)info.dli_fbase);
    }
}
