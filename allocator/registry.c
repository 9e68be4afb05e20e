/* registry.c — owns the answer to "is this address inside one of our
 * arenas?" for any address at all. Never dereferences the address asked
 * about, never unmaps a leaf, never calls malloc. Keeps I1.
 *
 * A two-level radix table over arena numbers (address >> 18): the root is a
 * static array in .bss (only the pages touched are ever backed), leaves are
 * mmap'd on demand and live forever, so a reader racing with a writer sees
 * either a NULL leaf or a mapped one. x86-64 user space is 47 bits, so an
 * arena number has 29 bits: 14 for the root, 15 for the leaf. */
#include "internal.h"

#include <stdatomic.h>

#define REGISTRY_ADDRESS_BITS 47
#define REGISTRY_LEAF_BITS 15
#define REGISTRY_ROOT_BITS (REGISTRY_ADDRESS_BITS - PM_ARENA_SHIFT - REGISTRY_LEAF_BITS) /* 14 */
#define REGISTRY_LEAF_SIZE ((size_t)1 << REGISTRY_LEAF_BITS)

typedef struct registry_leaf {
    _Atomic uint8_t arena_mapped[REGISTRY_LEAF_SIZE];
} registry_leaf_t;

static _Atomic(registry_leaf_t *) registry_root[(size_t)1 << REGISTRY_ROOT_BITS];
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

bool pm_registry_contains(const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    if (a >> REGISTRY_ADDRESS_BITS)
        return false; /* kernel half or garbage: never an arena */
    uintptr_t arena_number = a >> PM_ARENA_SHIFT;
    registry_leaf_t *leaf = atomic_load_explicit(
        &registry_root[arena_number >> REGISTRY_LEAF_BITS], memory_order_acquire);
    if (leaf == NULL)
        return false;
    return atomic_load_explicit(
               &leaf->arena_mapped[arena_number & (REGISTRY_LEAF_SIZE - 1)],
               memory_order_acquire) != 0;
}

static void registry_set(void *arena_base, uint8_t value)
{
    uintptr_t arena_number = (uintptr_t)arena_base >> PM_ARENA_SHIFT;
    registry_leaf_t *leaf = atomic_load_explicit(
        &registry_root[arena_number >> REGISTRY_LEAF_BITS], memory_order_relaxed);
    atomic_store_explicit(&leaf->arena_mapped[arena_number & (REGISTRY_LEAF_SIZE - 1)],
                          value, memory_order_release);
}

/* Returns false if a leaf was needed and could not be mapped. */
bool pm_registry_add(void *arena_base)
{
    uintptr_t arena_number = (uintptr_t)arena_base >> PM_ARENA_SHIFT;
    if ((uintptr_t)arena_base >> REGISTRY_ADDRESS_BITS)
        return false;
    _Atomic(registry_leaf_t *) *slot = &registry_root[arena_number >> REGISTRY_LEAF_BITS];
    if (atomic_load_explicit(slot, memory_order_acquire) == NULL) {
        pthread_mutex_lock(&registry_lock);
        if (atomic_load_explicit(slot, memory_order_relaxed) == NULL) {
            registry_leaf_t *leaf = pm_os_map(sizeof(registry_leaf_t));
            if (leaf == NULL) {
                pthread_mutex_unlock(&registry_lock);
                return false;
            }
            atomic_store_explicit(slot, leaf, memory_order_release);
        }
        pthread_mutex_unlock(&registry_lock);
    }
    registry_set(arena_base, 1);
    return true;
}

void pm_registry_remove(void *arena_base)
{
    registry_set(arena_base, 0);
}
