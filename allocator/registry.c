/* registry.c — owns the answer to "is this address inside one of our
 * arenas?" for any address at all. Never dereferences the address asked
 * about, never unmaps a leaf, never calls malloc. Keeps I1.
 *
 * A two-level radix table over arena numbers (address >> 18): the root is a
 * static array in .bss (only the pages touched are ever backed), leaves are
 * mmap'd on demand and live forever, so a reader racing with a writer sees
 * either a NULL leaf or a mapped one. x86-64 user space is 47 bits, so an
 * arena number has 29 bits: 14 for the root, 15 for the leaf. The lookup,
 * pm_registry_contains, is inline in internal.h. */
#include "internal.h"

pm_registry_leaf_t *pm_registry_root[(size_t)1 << PM_REGISTRY_ROOT_BITS];
static pm_lock_t registry_lock = PM_LOCK_INITIALIZER;

static void registry_set(void *arena_base, uint8_t value)
{
    uintptr_t arena_number = (uintptr_t)arena_base >> PM_ARENA_SHIFT;
    pm_registry_leaf_t *leaf =
        __atomic_load_n(&pm_registry_root[arena_number >> PM_REGISTRY_LEAF_BITS], __ATOMIC_RELAXED);
    __atomic_store_n(&leaf->arena_mapped[arena_number & (PM_REGISTRY_LEAF_SIZE - 1)], value,
                     __ATOMIC_RELEASE);
}

/* Returns false if a leaf was needed and could not be mapped. */
bool pm_registry_add(void *arena_base)
{
    uintptr_t arena_number = (uintptr_t)arena_base >> PM_ARENA_SHIFT;
    if ((uintptr_t)arena_base >> PM_REGISTRY_ADDRESS_BITS)
        return false;
    pm_registry_leaf_t **slot = &pm_registry_root[arena_number >> PM_REGISTRY_LEAF_BITS];
    if (__atomic_load_n(slot, __ATOMIC_ACQUIRE) == NULL) {
        pm_lock(&registry_lock);
        if (__atomic_load_n(slot, __ATOMIC_RELAXED) == NULL) {
            pm_registry_leaf_t *leaf = pm_os_map(sizeof(pm_registry_leaf_t));
            if (leaf == NULL) {
                pm_unlock(&registry_lock);
                return false;
            }
            __atomic_store_n(slot, leaf, __ATOMIC_RELEASE);
        }
        pm_unlock(&registry_lock);
    }
    registry_set(arena_base, 1);
    return true;
}

void pm_registry_remove(void *arena_base)
{
    registry_set(arena_base, 0);
}
