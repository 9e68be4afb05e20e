/* registry.c — owns the answer to "is this address inside one of our
 * arenas?" for any address at all, and the address space arenas are mapped
 * in. Never dereferences the address asked about, never unmaps a leaf,
 * never calls malloc. Keeps I1 and I13.
 *
 * Two answers, a fast one and an exact one:
 *
 *  - The arena space: one range of PM_ARENA_SPACE_SIZE bytes reserved at
 *    the first arena, read-only and unbacked, from which arenas are
 *    committed one slot at a time (the lowest free slot first, so the space
 *    used stays compact). Whether an address lies in it is a subtract and a
 *    shift (pm_arena_space_contains), which is what free asks first. The
 *    whole space stays readable (I13), so free may read the descriptor of
 *    any address in it: a slot with no arena reads as zeros, a pool with no
 *    heap, which sends the pointer to the checked path and the exact answer.
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
} space;

static void registry_set(void *arena_base, uint8_t value)
{
    uintptr_t arena_number = (uintptr_t)arena_base >> PM_ARENA_SHIFT;
    pm_registry_leaf_t *leaf =
        __atomic_load_n(&pm_registry_root[arena_number >> PM_REGISTRY_LEAF_BITS], __ATOMIC_RELAXED);
    __atomic_store_n(&leaf->arena_mapped[arena_number & (PM_REGISTRY_LEAF_SIZE - 1)], value,
                     __ATOMIC_RELEASE);
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
        if (!pm_os_commit(slot, PM_ARENA_SIZE))
            return NULL;
        space.lowest_free = i + 1;
        return slot;
    }
    return NULL;
}

/* An arena's memory goes back: to the space, or to the OS. */
static void release_memory(void *arena)
{
    if (pm_arena_space_contains(arena)) {
        pm_os_decommit(arena, PM_ARENA_SIZE); /* I13 */
        size_t slot = ((uintptr_t)arena - pm_arena_space_base) / PM_ARENA_SIZE;
        if (slot < space.lowest_free)
            space.lowest_free = slot;
    } else {
        pm_os_unmap(arena, PM_ARENA_SIZE);
    }
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
        release_memory(arena);
        arena = NULL;
    }
    pm_unlock(&pm_fork_locks.registry);
    return arena;
}

void pm_registry_unmap_arena(void *arena)
{
    pm_lock(&pm_fork_locks.registry);
    registry_set(arena, 0); /* I1: before the memory goes */
    release_memory(arena);
    pm_unlock(&pm_fork_locks.registry);
}
