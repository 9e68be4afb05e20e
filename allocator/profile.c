/* profile.c — owns allocation-site profiling: sampling one allocation every
 * POOLMALLOC_PROFILE_RATE bytes on average, its backtrace (libunwind), the
 * table of sites and of sampled blocks still live, the filter that lets
 * free skip that table, and the site reports.
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
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <libunwind.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

/* Sites are stored in the order they are first seen, so a report scans
 * only the sites there are; a hash index finds a stack's site when it is
 * sampled. The index holds 1 + a site's position (0: an empty slot), in
 * twice as many slots as sites, so a probe always ends (64 KiB). */
#define PROFILE_SITE_INDEX_SLOTS ((size_t)2 * PM_PROFILE_SITES_MAX)
_Static_assert(PM_PROFILE_SITES_MAX <= UINT16_MAX, "the site index holds 16-bit positions");

/* The sampled blocks still live: open addressing by block address, linear
 * probing, at most half full. It starts at 4096 slots (128 KiB) and doubles
 * when half full, up to 2^26 slots (2 GiB, 2^25 live samples: a program
 * past that, 16 TiB live at the default rate, has samples dropped and
 * counted). A record is deleted by shifting back the records after it
 * (Knuth's algorithm R), so there are no tombstones to pile up and slow
 * the probes of a long-running program. */
#define PROFILE_SAMPLE_BITS_MIN 12
#define PROFILE_SAMPLE_BITS_MAX 26

typedef struct profile_sample {
    uintptr_t block; /* 0: an empty slot */
    uint32_t site;   /* its position in profile.sites */
    double bytes;    /* the estimate this sample stands for */
    double count;
} profile_sample_t;

/* Frame names: "module!symbol+0xoff" for each return address of a site,
 * made once per address by a thread that sampled it (profile_name_frames)
 * and read by the reports. Made there, and not when a report is written,
 * because naming takes a lock of the loader's, which the dump thread must
 * never take: unknown to glibc, it would pass for the thread that made it,
 * lock owner included (dump.c). Open addressing by address, at most half full,
 * doubling from 4096 slots (64 KiB); the texts follow one another in a
 * region mapped once and touched as it fills (~60 bytes a name). Nothing
 * is removed: a library unloaded later keeps the names its frames had. */
#define PROFILE_NAME_BITS_MIN 12
#define PROFILE_NAME_BITS_MAX 24
#define PROFILE_NAME_TEXT_BYTES ((size_t)32 << 20)
#define PROFILE_NAME_MAX 511

typedef struct profile_name {
    uintptr_t pc;     /* 0: an empty slot */
    uint32_t text_at; /* its NUL-terminated text in profile.name_text */
} profile_name_t;

/* The filter free reads without the lock (internal.h): bit f is set iff
 * filter_counts[f] > 0, the count of records whose block hashes to f.
 * Counting rather than leaving bits set: bits never cleared would fill up
 * over a long run (after 65536 samples 63% of them would be set) and send
 * that share of all frees to the lock; a count clears its bit when the
 * last such record goes, so the share stays that of the live samples. A
 * count cannot wrap: there are fewer than 2^25 records. */
#define PROFILE_FILTER_SIZE ((size_t)1 << PM_PROFILE_FILTER_BITS)
_Alignas(PM_CACHE_LINE) uint64_t pm_profile_filter[PROFILE_FILTER_SIZE / 64];

bool pm_profile_on;

static struct {
    double rate;
    /* poolmalloc's own code, when it is a library of its own (preloaded):
     * frames in it lead every stack and are not the program's sites. */
    uintptr_t own_text_start, own_text_end;
    int (*backtrace)(void **frames, int depth);
    /* libm's, loaded with libunwind: linking libm would map it into every
     * program poolmalloc runs in (~300 KiB of RSS), for two calls that only
     * profiling makes. */
    double (*log)(double);
    double (*exp)(double);
    /* Everything below is under pm_fork_locks.profile, a leaf. */
    pm_profile_site_t *sites; /* [0, site_count) in insertion order */
    size_t site_count;
    uint16_t *site_index;      /* by stack hash, PROFILE_SITE_INDEX_SLOTS */
    profile_sample_t *samples; /* by block address, 2^sample_bits slots */
    unsigned sample_bits;
    size_t sample_count;
    uint32_t *filter_counts; /* PROFILE_FILTER_SIZE */
    uint64_t samples_taken, samples_dropped;
    profile_name_t *names; /* by address, 2^name_bits slots */
    unsigned name_bits;
    size_t name_count;
    char *name_text; /* PROFILE_NAME_TEXT_BYTES */
    size_t name_text_used;
} profile;

__thread bool pm_profile_unwinding_now __attribute__((tls_model("initial-exec")));

/* Callbacks of dl_iterate_phdr the thread is running (preload.c): no
 * sample is taken inside one (pm_profile_hold_samples). */
static __thread unsigned samples_held __attribute__((tls_model("initial-exec")));

void pm_profile_hold_samples(bool hold)
{
    samples_held += hold ? 1u : -1u;
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
    double next = -profile.log(uniform) * profile.rate;
    return next > 9e18 ? INT64_MAX : (int64_t)next + 1;
}

/* Seeds a generator (from an address of the thread's and the time, so
 * threads draw apart) and draws its first countdown. */
static int64_t profile_seed(uint64_t *rng, const void *salt)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    *rng = (uint64_t)(uintptr_t)salt ^ (uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 32);
    return profile_draw_countdown(rng);
}

void pm_profile_heap_init(pm_heap_t *heap)
{
    pm_heap_set_countdown(heap, pm_profile_on ? profile_seed(&heap->sample_rng, heap) : INT64_MAX);
}

int64_t pm_profile_draw(pm_heap_t *heap)
{
    return pm_profile_on ? profile_draw_countdown(&heap->sample_rng) : INT64_MAX;
}

/* The countdown of a thread without a heap of its own: at its first request
 * past the pools (it takes a heap when that is counted), after its heap is
 * given up at its exit, or any thread under POOLMALLOC_DEBUG. Without it
 * their glibc-path allocations would never be sampled. Seeded at its first
 * use (heapless_rng 0). */
static __thread int64_t heapless_countdown __attribute__((tls_model("initial-exec")));
static __thread uint64_t heapless_rng __attribute__((tls_model("initial-exec")));

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
    void *libm = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
    if (libm != NULL) {
        profile.log = (double (*)(double))dlsym(libm, "log");
        profile.exp = (double (*)(double))dlsym(libm, "exp");
    }
    /* Mapped whole, touched as they fill: ~4.8 MiB of sites at most, the
     * index, the counts, and the sample table's first size. */
    profile.sites = pm_os_map(PM_PROFILE_SITES_MAX * sizeof(pm_profile_site_t));
    profile.site_index = pm_os_map(PROFILE_SITE_INDEX_SLOTS * sizeof(uint16_t));
    profile.filter_counts = pm_os_map(PROFILE_FILTER_SIZE * sizeof(uint32_t));
    profile.sample_bits = PROFILE_SAMPLE_BITS_MIN;
    profile.samples = pm_os_map(sizeof(profile_sample_t) << PROFILE_SAMPLE_BITS_MIN);
    profile.name_bits = PROFILE_NAME_BITS_MIN;
    profile.names = pm_os_map(sizeof(profile_name_t) << PROFILE_NAME_BITS_MIN);
    profile.name_text = pm_os_map(PROFILE_NAME_TEXT_BYTES);
    if (profile.backtrace == NULL || profile.log == NULL || profile.exp == NULL ||
        profile.sites == NULL || profile.site_index == NULL ||
        profile.filter_counts == NULL || profile.samples == NULL || profile.names == NULL ||
        profile.name_text == NULL) {
        static const char warning[] = "poolmalloc: POOLMALLOC_PROFILE is set but libunwind "
                                      "(libunwind8) or libm cannot be loaded; profiling "
                                      "is off\n";
        pm_os_write_all(2, warning, sizeof warning - 1);
        return;
    }
    dl_iterate_phdr(profile_find_own_text, (void *)(uintptr_t)&pm_profile_init);
    /* libunwind sets up its globals at its first unwind, and two threads'
     * first unwinds race there (ThreadSanitizer caught two sampling threads
     * at it; libunwind's issue 1029): one unwind now, before any sample,
     * while profiling is off, so nothing it allocates is sampled. */
    void *frame[1];
    (void)profile.backtrace(frame, 1);
    profile.rate = (double)pm_options.profile_rate;
    pm_system_free_profiled();
    pm_profile_on = true;
}

static uint64_t profile_hash(const void *const *frames, int depth)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < depth; i++)
        h = (h ^ (uint64_t)(uintptr_t)frames[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

/* Caller holds pm_fork_locks.profile. Returns the site's position; -1 if it has
 * none and `create` is false, or if the table is full. */
static long profile_site_find(void *const *frames, int depth, bool create)
{
    uint64_t hash = profile_hash((const void *const *)frames, depth);
    for (size_t i = hash & (PROFILE_SITE_INDEX_SLOTS - 1);;
         i = (i + 1) & (PROFILE_SITE_INDEX_SLOTS - 1)) {
        size_t entry = profile.site_index[i];
        if (entry == 0) {
            if (!create || profile.site_count == PM_PROFILE_SITES_MAX)
                return -1;
            pm_profile_site_t *site = &profile.sites[profile.site_count];
            site->hash = hash;
            site->depth = (uint32_t)depth;
            memcpy(site->frames, frames, (size_t)depth * sizeof frames[0]);
            profile.site_index[i] = (uint16_t)++profile.site_count;
            return (long)profile.site_count - 1;
        }
        pm_profile_site_t *site = &profile.sites[entry - 1];
        if (site->hash == hash && site->depth == (uint32_t)depth &&
            memcmp(site->frames, frames, (size_t)depth * sizeof frames[0]) == 0)
            return (long)entry - 1;
    }
}

/* A key's home slot: the top bits of a Fibonacci hash. Blocks are 16-byte
 * aligned, so the low 4 bits carry nothing; return addresses that share
 * all but those bits only share a home. */
static size_t profile_home(uintptr_t key, unsigned bits)
{
    return (size_t)((key >> 4) * 0x9e3779b97f4a7c15ull >> (64 - bits));
}

/* The sample and name tables hold records whose first word is their key
 * (0: an empty slot). The slot of a table of 2^bits records of `size`
 * bytes holding the record of `key`, or the empty slot that ends its probe. */
static size_t profile_probe(const void *table, size_t size, unsigned bits, uintptr_t key)
{
    size_t mask = ((size_t)1 << bits) - 1;
    for (size_t i = profile_home(key, bits);; i = (i + 1) & mask) {
        uintptr_t held = *(const uintptr_t *)(const void *)((const char *)table + i * size);
        if (held == key || held == 0)
            return i;
    }
}

/* The table to put one more record in, at most half full: `table` itself
 * (2^*bits records of `size` bytes, `count` of them held), or a table of
 * twice as many slots holding its records, the old one unmapped and *bits
 * raised. NULL if it would pass 2^max_bits slots or no memory can be
 * mapped. Safe because only holders of pm_fork_locks.profile read the tables. */
static void *profile_table_room(void *table, unsigned *bits, unsigned max_bits, size_t size,
                                size_t count)
{
    if (2 * (count + 1) <= (size_t)1 << *bits)
        return table;
    char *grown = *bits >= max_bits ? NULL : pm_os_map(size << (*bits + 1));
    if (grown == NULL)
        return NULL;
    for (size_t i = 0; i < (size_t)1 << *bits; i++) {
        const char *record = (const char *)table + i * size;
        uintptr_t key = *(const uintptr_t *)(const void *)record;
        if (key != 0) /* not yet in the new table: its probe ends empty */
            memcpy(grown + profile_probe(grown, size, *bits + 1, key) * size, record, size);
    }
    pm_os_unmap(table, size << *bits);
    ++*bits;
    return grown;
}

/* The slot of the block's record in the sample table, or of the empty slot
 * that ends its probe. Caller holds pm_fork_locks.profile. */
static size_t profile_sample_slot(uintptr_t block)
{
    return profile_probe(profile.samples, sizeof(profile_sample_t), profile.sample_bits, block);
}

/* A new record counts in the filter before its block is handed out, so a
 * free of it, which happens after, sees its bit (I11). */
static void profile_filter_add(uintptr_t block)
{
    size_t f = pm_profile_filter_index((const void *)block);
    if (profile.filter_counts[f]++ == 0)
        __atomic_fetch_or(&pm_profile_filter[f / 64], (uint64_t)1 << (f % 64), __ATOMIC_RELAXED);
}

static void profile_filter_remove(uintptr_t block)
{
    size_t f = pm_profile_filter_index((const void *)block);
    if (--profile.filter_counts[f] == 0)
        __atomic_fetch_and(&pm_profile_filter[f / 64], ~((uint64_t)1 << (f % 64)),
                           __ATOMIC_RELAXED);
}

/* Takes a record's estimate off its site's live figures. */
static void profile_sample_retire(const profile_sample_t *sample)
{
    pm_profile_site_t *site = &profile.sites[sample->site];
    site->live_bytes -= sample->bytes;
    site->live_count -= sample->count;
}

/* Empties slot `hole`, then shifts back every record after it in its probe
 * run that may sit there: a record at i whose home is h may move to the hole
 * iff the hole lies in [h, i) cyclically. Caller holds pm_fork_locks.profile. */
static void profile_sample_delete(size_t hole)
{
    size_t mask = ((size_t)1 << profile.sample_bits) - 1;
    profile_filter_remove(profile.samples[hole].block);
    for (size_t i = (hole + 1) & mask; profile.samples[i].block != 0; i = (i + 1) & mask) {
        size_t home = profile_home(profile.samples[i].block, profile.sample_bits);
        if (((i - home) & mask) >= ((i - hole) & mask)) {
            profile.samples[hole] = profile.samples[i];
            hole = i;
        }
    }
    profile.samples[hole].block = 0;
    profile.sample_count--;
}

/* The slot of the name of `pc`, or of the empty slot that ends its probe.
 * Caller holds pm_fork_locks.profile. */
static size_t profile_name_slot(uintptr_t pc)
{
    return profile_probe(profile.names, sizeof(profile_name_t), profile.name_bits, pc);
}

/* The text of the name of `pc`, or NULL. Caller holds pm_fork_locks.profile; the
 * text stays where it is for good. */
static const char *profile_name_find(uintptr_t pc)
{
    const profile_name_t *slot = &profile.names[profile_name_slot(pc)];
    return slot->pc == pc ? profile.name_text + slot->text_at : NULL;
}

/* Keeps a name, unless another thread gave the address one meanwhile or
 * there is no room left (the frame is then reported as an address).
 * Caller holds pm_fork_locks.profile. */
static void profile_name_add(uintptr_t pc, const char *text, size_t length)
{
    if (profile.name_text_used + length + 1 > PROFILE_NAME_TEXT_BYTES)
        return;
    profile_name_t *names =
        profile_table_room(profile.names, &profile.name_bits, PROFILE_NAME_BITS_MAX,
                           sizeof(profile_name_t), profile.name_count);
    if (names == NULL)
        return;
    profile.names = names;
    profile_name_t *slot = &profile.names[profile_name_slot(pc)];
    if (slot->pc == pc)
        return;
    memcpy(profile.name_text + profile.name_text_used, text, length);
    profile.name_text[profile.name_text_used + length] = '\0';
    slot->pc = pc;
    slot->text_at = (uint32_t)profile.name_text_used;
    profile.name_text_used += length + 1;
    profile.name_count++;
}

/* ---- naming a frame: the module and exported symbol holding an address --
 * What dladdr answers, found without it: dladdr takes the loader's main
 * lock, and a sampled malloc may run inside a dl_iterate_phdr callback,
 * which holds the loader's list lock; dlopen takes them in the other
 * order, so a sample taken there while another thread loads a library
 * would deadlock. dl_iterate_phdr takes only the list lock, as the unwind
 * before it already does, and keeps the module mapped while its callback
 * reads the module's dynamic symbol table. The symbol is the one dladdr
 * would give: among the defined, non-TLS, non-absolute symbols the hash
 * table reaches (every one, with only DT_HASH), the highest at or below
 * the address whose extent holds it (a zero size holds only its own
 * address). */
typedef struct profile_lookup {
    uintptr_t address;         /* in: what to name */
    const char *module;        /* out: NULL outside every module */
    uintptr_t module_start;    /* its lowest mapped page */
    const ElfW(Sym) *symbol;   /* NULL if no exported symbol holds it */
    uintptr_t symbol_address;
    const char *symbol_name;
} profile_lookup_t;

/* A dynamic-section pointer: ld.so has relocated it in place on most
 * architectures, and not on others or in the vDSO. */
static uintptr_t profile_dynamic_pointer(ElfW(Addr) value, uintptr_t load)
{
    return value < load ? load + value : value;
}

/* Weighs one symbol of the module against the best so far. */
static void profile_lookup_consider(profile_lookup_t *q, uintptr_t load, const ElfW(Sym) *sym,
                                    const char *strings, size_t strings_size)
{
    if ((sym->st_shndx == SHN_UNDEF && sym->st_value == 0) || sym->st_shndx == SHN_ABS ||
        ELF64_ST_TYPE(sym->st_info) == STT_TLS || sym->st_name >= strings_size)
        return;
    uintptr_t start = load + sym->st_value;
    bool holds = q->address >= start &&
                 ((sym->st_shndx == SHN_UNDEF || sym->st_size == 0) ? q->address == start
                                                                    : q->address < start + sym->st_size);
    if (holds && (q->symbol == NULL || q->symbol->st_value < sym->st_value)) {
        q->symbol = sym;
        q->symbol_address = start;
        q->symbol_name = strings + sym->st_name;
    }
}

static void profile_lookup_symbol(profile_lookup_t *q, uintptr_t load, const ElfW(Dyn) *dynamic)
{
    const ElfW(Sym) *symbols = NULL;
    const char *strings = NULL;
    size_t strings_size = 0;
    const uint32_t *hash = NULL, *gnu_hash = NULL;
    for (const ElfW(Dyn) *d = dynamic; d->d_tag != DT_NULL; d++) {
        if (d->d_tag == DT_SYMTAB)
            symbols = (const ElfW(Sym) *)profile_dynamic_pointer(d->d_un.d_ptr, load);
        else if (d->d_tag == DT_STRTAB)
            strings = (const char *)profile_dynamic_pointer(d->d_un.d_ptr, load);
        else if (d->d_tag == DT_STRSZ)
            strings_size = d->d_un.d_val;
        else if (d->d_tag == DT_HASH)
            hash = (const uint32_t *)profile_dynamic_pointer(d->d_un.d_ptr, load);
        else if (d->d_tag == DT_GNU_HASH)
            gnu_hash = (const uint32_t *)profile_dynamic_pointer(d->d_un.d_ptr, load);
    }
    if (symbols == NULL || strings == NULL)
        return;
    if (gnu_hash != NULL) {
        /* Buckets, then chains; the last entry of a chain has bit 0 set. */
        uint32_t buckets = gnu_hash[0], first = gnu_hash[1], bloom_words = gnu_hash[2];
        const uint32_t *bucket = gnu_hash + 4 + bloom_words * (sizeof(ElfW(Addr)) / 4);
        const uint32_t *chain = bucket + buckets;
        for (uint32_t b = 0; b < buckets; b++) {
            uint32_t i = bucket[b];
            if (i < first)
                continue;
            do
                profile_lookup_consider(q, load, &symbols[i], strings, strings_size);
            while ((chain[i++ - first] & 1) == 0);
        }
    } else if (hash != NULL) {
        for (uint32_t i = 0; i < hash[1]; i++) {
            unsigned bind = ELF64_ST_BIND(symbols[i].st_info);
            if ((bind == STB_GLOBAL || bind == STB_WEAK) &&
                ELF64_ST_VISIBILITY(symbols[i].st_other) != STV_HIDDEN &&
                ELF64_ST_VISIBILITY(symbols[i].st_other) != STV_INTERNAL)
                profile_lookup_consider(q, load, &symbols[i], strings, strings_size);
        }
    }
}

static int profile_lookup_module(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    profile_lookup_t *q = data;
    uintptr_t lowest = UINTPTR_MAX;
    const ElfW(Dyn) *dynamic = NULL;
    bool holds = false;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_DYNAMIC)
            dynamic = (const ElfW(Dyn) *)start;
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t page = start & ~(uintptr_t)(PM_OS_PAGE_SIZE - 1);
        lowest = page < lowest ? page : lowest;
        holds |= q->address >= start && q->address < start + ph->p_memsz;
    }
    if (!holds)
        return 0;
    /* The program itself has no name in the list: argv[0], as dladdr. */
    q->module = info->dlpi_name != NULL && info->dlpi_name[0] != '\0' ? info->dlpi_name
                                                                      : program_invocation_name;
    q->module_start = lowest;
    if (dynamic != NULL)
        profile_lookup_symbol(q, info->dlpi_addr, dynamic);
    return 1;
}

/* "module!symbol+0xoff", or "module+0xoff" without a symbol, or the bare
 * address outside any module. Allocates nothing. */
void pm_profile_frame_text(pm_buf_t *b, const void *frame)
{
    /* A return address points after the call: look up the call itself. */
    profile_lookup_t q = {.address = (uintptr_t)frame - 1};
    dl_iterate_phdr(profile_lookup_module, &q);
    if (q.module == NULL) {
        pm_buf_hex(b, (uintptr_t)frame);
        return;
    }
    const char *module = strrchr(q.module, '/');
    pm_buf_str(b, module != NULL ? module + 1 : q.module);
    if (q.symbol != NULL) {
        pm_buf_char(b, '!');
        pm_buf_str(b, q.symbol_name);
        pm_buf_str(b, "+");
        pm_buf_hex(b, (uintptr_t)frame - q.symbol_address);
    } else {
        pm_buf_str(b, "+");
        pm_buf_hex(b, (uintptr_t)frame - q.module_start);
    }
}

/* Names every frame of a stack that has none yet. Runs on the sampling
 * thread, holding only the unwinders' read lock while it reads the
 * loader's list, as unwinding does: a thread in dlopen holds the loader's
 * locks and may allocate meanwhile. */
static void profile_name_frames(void *const *frames, int depth)
{
    bool named[PM_PROFILE_DEPTH];
    int missing = 0;
    pm_lock(&pm_fork_locks.profile);
    for (int f = 0; f < depth; f++)
        missing += !(named[f] = profile_name_find((uintptr_t)frames[f]) != NULL);
    pm_unlock(&pm_fork_locks.profile);
    for (int f = 0; f < depth && missing > 0; f++) {
        if (named[f])
            continue;
        char text[PROFILE_NAME_MAX + 1];
        pm_buf_t b;
        pm_buf_init(&b, text, PROFILE_NAME_MAX);
        pm_profile_frame_text(&b, frames[f]);
        pm_lock(&pm_fork_locks.profile);
        profile_name_add((uintptr_t)frames[f], text, (size_t)(b.at - b.start));
        pm_unlock(&pm_fork_locks.profile);
        missing--;
    }
}

/* The slot for a new record of `block`, or NULL if the table is full and
 * cannot grow. Should the block still have a record (a free that was not
 * seen), that record is retired and replaced, so no address ever has two:
 * *replaced says so. Caller holds pm_fork_locks.profile. */
static profile_sample_t *profile_sample_insert(uintptr_t block, bool *replaced)
{
    profile_sample_t *samples =
        profile_table_room(profile.samples, &profile.sample_bits, PROFILE_SAMPLE_BITS_MAX,
                           sizeof(profile_sample_t), profile.sample_count);
    if (samples == NULL)
        return NULL; /* full: the sample is dropped */
    profile.samples = samples;
    profile_sample_t *sample = &profile.samples[profile_sample_slot(block)];
    *replaced = sample->block == block;
    if (*replaced) {
        profile_sample_retire(sample);
    } else {
        profile.sample_count++;
        profile_filter_add(block);
    }
    return sample;
}

/* I11: records one sampled allocation, and draws the next countdown of the
 * thread's heap, or of the thread if it has none. Runs with the thread's
 * heap swapped for the empty one, so whatever libunwind allocates meanwhile
 * takes the slow path, which sends it to glibc (pm_profile_unwinding).
 * The sample is of `block`, `size` bytes, taken when the countdown ran out
 * after `counted` bytes were taken from it for the block: the chance of
 * that was 1 - exp(-counted / rate), whose inverse weighs the sample. */
static void profile_record(int64_t *countdown, uint64_t *rng, void *block, size_t size,
                           size_t counted)
{
    *countdown = profile_draw_countdown(rng);
    if (pm_profile_unwinding_now || samples_held != 0)
        return;
    pm_profile_unwinding_now = true;
    pm_heap_t *heap = pm_thread_heap;
    pm_thread_heap = &pm_heap_empty;
    void *frames[PM_PROFILE_DEPTH + 2];
    pm_rwlock_read(&pm_fork_locks.unwinders);
    int depth = profile.backtrace(frames, PM_PROFILE_DEPTH + 2);
    /* The site starts at the program's call into the allocator. */
    int skip = 0;
    if (profile.own_text_end != 0)
        while (skip < depth - 1 && (uintptr_t)frames[skip] >= profile.own_text_start &&
               (uintptr_t)frames[skip] < profile.own_text_end)
            skip++;
    else
        skip = depth > 2 ? 2 : 0; /* record and the sampling entry */
    if (depth - skip > PM_PROFILE_DEPTH)
        depth = skip + PM_PROFILE_DEPTH;
    pm_rwlock_read_done(&pm_fork_locks.unwinders);
    double s = (double)size;
    double weight = 1.0 / (1.0 - profile.exp(-(double)counted / profile.rate));
    bool replaced = false;
    /* A site is made only once its frames are named, and names stay: a
     * stack sampled before needs one trip to the lock, not two (with 2
     * threads sampling, each trip is a cache line taken from the other). */
    pm_lock(&pm_fork_locks.profile);
    long site = profile_site_find(frames + skip, depth - skip, false);
    /* Once the table is full a new stack's sample is dropped: naming its
     * frames would be work for nothing (site_count never falls). */
    if (site < 0 && profile.site_count < PM_PROFILE_SITES_MAX) {
        pm_unlock(&pm_fork_locks.profile);
        /* Under the unwinders' lock: naming takes the loader's list lock,
         * which a fork meanwhile would leave held in the child. */
        pm_rwlock_read(&pm_fork_locks.unwinders);
        profile_name_frames(frames + skip, depth - skip);
        pm_rwlock_read_done(&pm_fork_locks.unwinders);
        pm_lock(&pm_fork_locks.profile);
        site = profile_site_find(frames + skip, depth - skip, true);
    }
    profile_sample_t *sample = site >= 0 ? profile_sample_insert((uintptr_t)block, &replaced) : NULL;
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
    pm_unlock(&pm_fork_locks.profile);
    if (sample != NULL && pm_registry_contains(block)) {
        /* By the pool's owner: a small block is sampled as its own heap
         * hands it out, so the pool's fast_free_bound is the owner's to
         * write: free's fast path sends its frees to the full path, which
         * finds the record, while it holds a sampled block (I11). */
        pm_pool_t *pool = pm_pool_of(block);
        if (!replaced)
            __atomic_fetch_add(&pool->sampled_count, 1, __ATOMIC_RELAXED);
        pm_pool_refresh_fast_free(pool);
    }
    pm_thread_heap = heap;
    pm_profile_unwinding_now = false;
}

void pm_profile_sample(pm_heap_t *heap, void *block, size_t size, size_t counted)
{
    profile_record(&heap->tick_countdown, &heap->sample_rng, block, size, counted);
}

void pm_profile_sample_heapless(void *block, size_t usable)
{
    /* While unwinding, the heap is the empty one and nothing is sampled. */
    if (!pm_profile_on || pm_profile_unwinding_now)
        return;
    if (heapless_rng == 0)
        heapless_countdown = profile_seed(&heapless_rng, &heapless_rng);
    if ((heapless_countdown -= (int64_t)usable) < 0)
        profile_record(&heapless_countdown, &heapless_rng, block, usable, usable);
}

/* Across fork (pm_fork_*): a thread that held the lock when another forked
 * does not exist in the child, which would wait for it forever at its first
 * sampled malloc or free. The lock is a leaf: nothing else is taken, and
 * nothing allocates, while it is held. */
void pm_profile_lock(void) { pm_lock(&pm_fork_locks.profile); }
void pm_profile_unlock(void) { pm_unlock(&pm_fork_locks.profile); }

/* The unwinders' lock is held for reading while a thread unwinds or names
 * frames, and for writing across fork (pm_fork_*): libunwind takes locks
 * of its own (its caches, and glibc's behind dl_iterate_phdr), which a
 * thread cut by fork in the middle of an unwind would leave held in the
 * child, whose first sample would then wait forever. Writers first, so a
 * stream of samples cannot hold a fork off. Nobody unwinds unless
 * profiling is on, which is settled before the preload registers its fork
 * handlers. On pm_fork_locks' page, the child finds it free without
 * writing it. glibc's rwlock, in this file's data, cost each fork a
 * copy-on-write fault in both processes (the parent's unlock, the child's
 * re-initialization) and the child a lazy binding of four glibc functions
 * (bench/results/fork-cost.md). */
void pm_profile_unwind_lock(void)
{
    if (pm_profile_on)
        pm_rwlock_write(&pm_fork_locks.unwinders);
}
void pm_profile_unwind_unlock(void)
{
    if (pm_profile_on)
        pm_rwlock_write_done(&pm_fork_locks.unwinders);
}

/* Whether the block has a record, at *slot; else *slot is the empty slot
 * its probe ends at. Caller holds pm_fork_locks.profile. */
static bool profile_sample_find(const void *block, size_t *slot)
{
    *slot = profile_sample_slot((uintptr_t)block);
    return profile.samples[*slot].block == (uintptr_t)block;
}

bool pm_profile_drop(void *block)
{
    pm_lock(&pm_fork_locks.profile);
    size_t slot;
    bool found = profile_sample_find(block, &slot);
    if (found) {
        profile_sample_retire(&profile.samples[slot]);
        profile_sample_delete(slot);
    }
    pm_unlock(&pm_fork_locks.profile);
    if (found && pm_registry_contains(block))
        __atomic_fetch_sub(&pm_pool_of(block)->sampled_count, 1, __ATOMIC_RELAXED);
    return found;
}

/* I11's tables checked whole; only when quiescent (tests). */
bool pm_profile_validate(void)
{
    bool ok = true;
    pm_lock(&pm_fork_locks.profile);
    if (pm_profile_on) {
        size_t slots = (size_t)1 << profile.sample_bits, mask = slots - 1, records = 0;
        for (size_t i = 0; i < slots; i++) {
            uintptr_t block = profile.samples[i].block;
            if (block == 0)
                continue;
            records++;
            /* Reachable: no empty slot between its home and itself. */
            for (size_t j = profile_home(block, profile.sample_bits); j != i; j = (j + 1) & mask)
                ok &= profile.samples[j].block != 0;
            ok &= profile.samples[i].site < profile.site_count;
            ok &= pm_profile_maybe_sampled((const void *)block);
        }
        uint64_t counted = 0;
        for (size_t f = 0; f < PROFILE_FILTER_SIZE; f++) {
            counted += profile.filter_counts[f];
            bool bit = (pm_profile_filter[f / 64] >> (f % 64)) & 1;
            ok &= bit == (profile.filter_counts[f] != 0);
        }
        ok &= records == profile.sample_count && counted == records && 2 * records <= slots;
        size_t names = 0;
        for (size_t i = 0; i < (size_t)1 << profile.name_bits; i++) {
            if (profile.names[i].pc == 0)
                continue;
            names++;
            ok &= profile_name_find(profile.names[i].pc) == profile.name_text + profile.names[i].text_at;
            ok &= profile.names[i].text_at < profile.name_text_used;
        }
        ok &= names == profile.name_count && 2 * names <= (size_t)1 << profile.name_bits;
        /* Every frame of every site has its name, unless names ran out of room. */
        bool room = profile.name_bits < PROFILE_NAME_BITS_MAX &&
                    profile.name_text_used + PROFILE_NAME_MAX + 1 <= PROFILE_NAME_TEXT_BYTES;
        for (size_t i = 0; i < profile.site_count && room; i++)
            for (uint32_t f = 0; f < profile.sites[i].depth; f++)
                ok &= profile_name_find((uintptr_t)profile.sites[i].frames[f]) != NULL;
    }
    pm_unlock(&pm_fork_locks.profile);
    return ok;
}

/* ---- reports ------------------------------------------------------------- */

size_t pm_profile_top(pm_profile_site_t *out, size_t capacity, bool by_live, bool leaks_only,
                      pm_profile_summary_t *summary)
{
    size_t n = 0;
    pm_lock(&pm_fork_locks.profile);
    if (summary != NULL) {
        summary->rate_bytes = (uint64_t)profile.rate;
        summary->sites = profile.site_count;
        summary->samples = profile.samples_taken;
        summary->dropped = profile.samples_dropped;
    }
    for (size_t i = 0; i < profile.site_count; i++) {
        const pm_profile_site_t *site = &profile.sites[i];
        double key = by_live ? site->live_bytes : site->alloc_bytes;
        if (key < 0.5 || (leaks_only && site->live_count < 0.5))
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
    pm_unlock(&pm_fork_locks.profile);
    return n;
}

/* The frame's name, made when it was sampled (profile_name_frames); its
 * address if it has none. Takes no lock but pm_fork_locks.profile, so the dump
 * thread may call it. */
void pm_profile_format_frame(pm_buf_t *b, const void *frame)
{
    pm_lock(&pm_fork_locks.profile);
    const char *text = pm_profile_on ? profile_name_find((uintptr_t)frame) : NULL;
    pm_unlock(&pm_fork_locks.profile);
    if (text != NULL)
        pm_buf_str(b, text);
    else
        pm_buf_hex(b, (uintptr_t)frame);
}
