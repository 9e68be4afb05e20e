/* registry.c — owns the answer to "is this address inside one of our
 * arenas?" for any address at all, and the address space arenas are mapped
 * in. Never dereferences the address asked about, never unmaps a leaf,
 * never calls malloc. Keeps I1 and I13.
 *
 * Two answers, a fast one and an exact one:
 *
 *  - The arena space: one range of PM_ARENA_SPACE_SIZE bytes reserved at
 *    the first arena, read-only and unbacked, whose slots arenas are
 *    mapped in (the lowest free slot first, so the space used stays
 *    compact). Whether an address lies in it is a subtract and a shift
 *    (pm_arena_space_contains), which is what free asks first. The whole
 *    space stays readable (I13), so free may read the descriptor of any
 *    address in it: a slot with no arena reads as zeros, a pool with no
 *    heap, which sends the pointer to the checked path and the exact answer.
 *    A slot is committed (made writable) when first taken, with free slots
 *    after it (an eighth as many as are below it, COMMIT_AHEAD_*), and
 *    stays committed: its arena unmapped, its pages are given back
 *    (MADV_DONTNEED, so it reads as zeros again) and the slot waits for the
 *    next arena. mprotect and mmap take the kernel's lock on the address
 *    space for writing, which waits for every page fault and madvise of the
 *    process in progress and holds off the next: one for each arena mapped
 *    and one for each unmapped left pm_bench_drain's 8 threads waiting on
 *    one another (bench/results/arena-lock.md). What this gives up: a write
 *    to an unmapped arena's slot no longer faults, and the commit charge
 *    (counted only under vm.overcommit_memory=2) stays at the most the
 *    process mapped.
 *
 *  - The registry: a two-level radix table over arena numbers (address >>
 *    18), one byte per arena, set while it is mapped, in the space or not.
 *    The root is a static array in .bss (only the pages touched are ever
 *    backed), leaves are mmap'd on demand and live forever, so a reader
 *    racing with a writer sees either a NULL leaf or a mapped one. x86-64
 *    user space is 47 bits, so an arena number has 29 bits: 14 for the
 *    root, 15 for the leaf. The lookup, pm_registry_contains, is inline in
 *    internal.h.
 *
 * Arenas are mapped on their own, outside the space, when it is full, or
 * when there is none: a process whose address space RLIMIT_AS caps does
 * not get one, since the reservation would count against its limit, and
 * nor does one where the reservation fails. Free then asks the registry
 * for every pointer outside the space (pm_arenas_outside_space).
 *
 * Everything here but the lookups runs under the registry lock
 * (pm_fork_locks.registry), never under the arena directory lock, which
 * waited on these system calls when it was (arena.c, directory_lock); fork
 * holds both. */
#include "internal.h"

pm_registry_leaf_t *pm_registry_root[(size_t)1 << PM_REGISTRY_ROOT_BITS];
uintptr_t pm_arena_space_base = PM_ARENA_SPACE_NONE;
bool pm_arenas_outside_space;

#define SPACE_SLOTS (PM_ARENA_SPACE_SIZE / PM_ARENA_SIZE)
static struct {
    bool reservation_tried;
    size_t lowest_free; /* no slot below this one is free */
    /* A bit for each slot that is committed; .bss: a page of it is backed
     * once it is written, for 8 GiB of space. */
    uint64_t committed[SPACE_SLOTS / 64];
} space;
/* Slots committed in one call: an eighth of the slots below (the space is
 * used from its bottom up, so about an eighth of the arenas mapped), 2 MiB
 * at least and 64 MiB at most. */
#define COMMIT_AHEAD_MIN 8
#define COMMIT_AHEAD_MAX 256

static bool slot_committed(size_t slot) { return (space.committed[slot / 64] >> (slot % 64)) & 1; }

static void slot_mark_committed(size_t slot, bool committed)
{
    uint64_t bit = (uint64_t)1 << (slot % 64);
    space.committed[slot / 64] = committed ? space.committed[slot / 64] | bit
                                           : space.committed[slot / 64] & ~bit;
}

static void registry_set(void *arena_base, uint8_t value)
{
    uintptr_t arena_number = (uintptr_t)arena_base >> PM_ARENA_SHIFT;
    pm_registry_leaf_t *leaf =
        __atomic_load_n(&pm_registry_root[arena_number >> PM_REGISTRY_LEAF_BITS], __ATOMIC_RELAXED);
    __atomic_store_n(&leaf->arena_mapped[arena_number & (PM_REGISTRY_LEAF_SIZE - 1)], value,
                     __ATOMIC_RELEASE);
}

/* The leaves' pages ever written (a leaf is never unmapped, and a page of
 * it stays resident once an arena's byte in it was set), for the stats'
 * metadata: a bit each, and their count. */
#define LEAF_PAGE_ARENAS PM_OS_PAGE_SIZE
static uint64_t leaf_pages_written[((size_t)1 << (PM_REGISTRY_ADDRESS_BITS - PM_ARENA_SHIFT)) /
                                   LEAF_PAGE_ARENAS / 64];
static size_t leaf_pages_count;

size_t pm_registry_metadata_bytes(void)
{
    return __atomic_load_n(&leaf_pages_count, __ATOMIC_RELAXED) * PM_OS_PAGE_SIZE;
}

/* Returns false if a leaf was needed and could not be mapped. */
static bool registry_add(void *arena_base)
{
    uintptr_t arena_number = (uintptr_t)arena_base >> PM_ARENA_SHIFT;
    if ((uintptr_t)arena_base >> PM_REGISTRY_ADDRESS_BITS)
        return false;
    pm_registry_leaf_t **slot = &pm_registry_root[arena_number >> PM_REGISTRY_LEAF_BITS];
    if (__atomic_load_n(slot, __ATOMIC_RELAXED) == NULL) {
        pm_registry_leaf_t *leaf = pm_os_map(sizeof(pm_registry_leaf_t));
        if (leaf == NULL)
            return false;
        __atomic_store_n(slot, leaf, __ATOMIC_RELEASE);
    }
    registry_set(arena_base, 1);
    uintptr_t page = arena_number / LEAF_PAGE_ARENAS;
    uint64_t bit = (uint64_t)1 << (page % 64);
    if (!(leaf_pages_written[page / 64] & bit)) {
        leaf_pages_written[page / 64] |= bit;
        __atomic_store_n(&leaf_pages_count, leaf_pages_count + 1, __ATOMIC_RELAXED);
    }
    return true;
}

/* Once per process (a fork child inherits the space). The base is
 * published before any arena of the space is handed out. */
static void space_reserve(void)
{
    space.reservation_tried = true;
    if (pm_os_address_space_limited())
        return;
    char *base = pm_os_reserve(PM_ARENA_SPACE_SIZE, PM_ARENA_SIZE);
    if (base == NULL)
        return;
    if (((uintptr_t)base + PM_ARENA_SPACE_SIZE) >> PM_REGISTRY_ADDRESS_BITS) {
        pm_os_unmap(base, PM_ARENA_SPACE_SIZE); /* beyond what the registry covers */
        return;
    }
    __atomic_store_n(&pm_arena_space_base, (uintptr_t)base, __ATOMIC_RELEASE);
}

/* Commits free slot `first` of the space, with the uncommitted free slots
 * after it, as many as COMMIT_AHEAD_* allow in all. */
static bool space_commit(uintptr_t base, size_t first)
{
    size_t ahead = first / 8;
    ahead = ahead < COMMIT_AHEAD_MIN ? COMMIT_AHEAD_MIN
                                     : ahead > COMMIT_AHEAD_MAX ? COMMIT_AHEAD_MAX : ahead;
    size_t end = first + 1;
    while (end < SPACE_SLOTS && end - first < ahead && !slot_committed(end) &&
           !pm_registry_contains((char *)base + end * PM_ARENA_SIZE))
        end++;
    if (!pm_os_commit((char *)base + first * PM_ARENA_SIZE, (end - first) * PM_ARENA_SIZE))
        return false;
    for (size_t slot = first; slot < end; slot++)
        slot_mark_committed(slot, true);
    return true;
}

/* The lowest free slot of the space, committed; NULL if there is none. */
static void *space_take_slot(void)
{
    if (!space.reservation_tried)
        space_reserve();
    uintptr_t base = __atomic_load_n(&pm_arena_space_base, __ATOMIC_RELAXED);
    if (base == PM_ARENA_SPACE_NONE)
        return NULL;
    for (size_t i = space.lowest_free; i < SPACE_SLOTS; i++) {
        char *slot = (char *)base + i * PM_ARENA_SIZE;
        if (pm_registry_contains(slot))
            continue;
        space.lowest_free = i;
        if (!slot_committed(i) && !space_commit(base, i))
            return NULL;
        space.lowest_free = i + 1;
        return slot;
    }
    return NULL;
}

/* A slot of the space is free again, its pages given back if `purged`.
 * It stays committed, unless its pages would not go (MADV_DONTNEED fails
 * on pages a program has locked with mlockall): the next arena in it must
 * find zeros (I13). Under the registry lock. */
static void space_free_slot(void *arena, bool purged)
{
    size_t slot = ((uintptr_t)arena - pm_arena_space_base) / PM_ARENA_SIZE;
    if (!purged) {
        pm_os_decommit(arena, PM_ARENA_SIZE);
        slot_mark_committed(slot, false);
    }
    if (slot < space.lowest_free)
        space.lowest_free = slot;
}

void *pm_registry_map_arena(void)
{
    pm_lock(&pm_fork_locks.registry);
    char *arena = space_take_slot();
    if (arena == NULL) {
        arena = pm_os_map_aligned(PM_ARENA_SIZE, PM_ARENA_SIZE);
        /* Before any block of it is handed out, so every thread that may
         * free one sees it (through whatever handed the block over). */
        if (arena != NULL)
            __atomic_store_n(&pm_arenas_outside_space, true, __ATOMIC_RELAXED);
    }
    if (arena != NULL && !registry_add(arena)) {
        if (pm_arena_space_contains(arena))
            space_free_slot(arena, false);
        else
            pm_os_unmap(arena, PM_ARENA_SIZE);
        arena = NULL;
    }
    pm_unlock(&pm_fork_locks.registry);
    return arena;
}

/* The system calls are made without the lock, which arenas being mapped
 * wait for: a slot's pages go before the slot is free for another arena,
 * an arena outside the space once the registry no longer has it (I1). */
void pm_registry_unmap_arena(void *arena)
{
    bool in_space = pm_arena_space_contains(arena);
    bool purged = in_space && pm_os_purge(arena, PM_ARENA_SIZE);
    pm_lock(&pm_fork_locks.registry);
    registry_set(arena, 0);
    if (in_space)
        space_free_slot(arena, purged);
    pm_unlock(&pm_fork_locks.registry);
    if (!in_space)
        pm_os_unmap(arena, PM_ARENA_SIZE);
}
