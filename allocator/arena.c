/* arena.c — owns the arena directory: mapping and unmapping arenas, handing
 * UNUSED pools out to heaps and taking them back, and giving memory back to
 * the OS. Never calls malloc; takes the directory lock (after any heap
 * lock). Keeps I1, I2, I5 and I10. */
#include "internal.h"


/* The most UNUSED pools POOLMALLOC_RETAIN_POOLS may keep resident (I10). */
#define RETAINED_RING_SIZE 4096

static struct {
    pthread_mutex_t lock;
    /* by_unused[u - 1]: arenas with exactly u unused pools (I5). */
    pm_arena_t *by_unused[PM_POOLS_PER_ARENA];
    pm_arena_t *all;
    uint64_t mapped, peak, created_total, destroyed_total, empty_count;
    uint64_t released_bytes_total;
    /* Released pools, oldest first (I10). An entry may be stale (the pool
     * was taken again, or is queued twice): it is checked when it leaves. */
    pm_pool_t *retained[RETAINED_RING_SIZE];
    size_t retained_oldest, retained_count;
} directory = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void directory_link(pm_arena_t *arena)
{
    pm_arena_t **head = &directory.by_unused[arena->free_pool_count - 1];
    arena->prev = NULL;
    arena->next = *head;
    if (*head)
        (*head)->prev = arena;
    *head = arena;
}

static void directory_unlink(pm_arena_t *arena)
{
    if (arena->prev)
        arena->prev->next = arena->next;
    else
        directory.by_unused[arena->free_pool_count - 1] = arena->next;
    if (arena->next)
        arena->next->prev = arena->prev;
    arena->next = arena->prev = NULL;
}

static pm_arena_t *arena_create(void)
{
    pm_arena_t *arena = pm_os_map_aligned(PM_ARENA_SIZE, PM_ARENA_SIZE);
    if (arena == NULL)
        return NULL;
    /* I1: registered before any block of it can be handed out. */
    if (!pm_registry_add(arena)) {
        pm_os_unmap(arena, PM_ARENA_SIZE);
        return NULL;
    }
    /* mmap gives zeroed memory: only what is not zero needs setting. */
    for (unsigned k = PM_POOLS_PER_ARENA; k-- > 0;) {
        pm_pool_t *pool = &arena->pools[k];
        pool->pool_index = (uint8_t)k;
        pool->class_index = PM_CLASS_NONE;
        pool->next = arena->free_pools;
        arena->free_pools = pool;
    }
    arena->free_pool_count = PM_POOLS_PER_ARENA;
    arena->all_next = directory.all;
    if (directory.all)
        directory.all->all_prev = arena;
    directory.all = arena;
    directory.created_total++;
    directory.empty_count++;
    if (++directory.mapped > directory.peak)
        directory.peak = directory.mapped;
    directory_link(arena);
    return arena;
}

/* Drops the retained ring's entries for the pools whose descriptors lie in
 * [start, start + bytes): one pool, or a whole arena. Caller holds the lock. */
static void retained_forget(const void *start, size_t bytes)
{
    for (size_t i = 0; i < directory.retained_count; i++) {
        pm_pool_t **entry = &directory.retained[(directory.retained_oldest + i) % RETAINED_RING_SIZE];
        if ((uintptr_t)*entry - (uintptr_t)start < bytes)
            *entry = NULL;
    }
}

static void arena_destroy(pm_arena_t *arena)
{
    retained_forget(arena, PM_ARENA_SIZE);
    if (arena->all_prev)
        arena->all_prev->all_next = arena->all_next;
    else
        directory.all = arena->all_next;
    if (arena->all_next)
        arena->all_next->all_prev = arena->all_prev;
    directory.mapped--;
    directory.empty_count--;
    directory.destroyed_total++;
    /* What unmapping gives back: the header and the pools still resident
     * (purged ones were counted when purged). */
    directory.released_bytes_total += PM_ARENA_HEADER_SIZE;
    for (unsigned k = 0; k < PM_POOLS_PER_ARENA; k++)
        if (arena->pools[k].resident)
            directory.released_bytes_total += pm_pool_bytes(k);
    pm_registry_remove(arena); /* I1: before the memory goes */
    pm_os_unmap(arena, PM_ARENA_SIZE);
}

pm_pool_t *pm_arena_acquire_pool(unsigned class_index, struct pm_heap *heap)
{
    pthread_mutex_lock(&directory.lock);
    pm_arena_t *arena = NULL;
    /* The fullest arena first, so sparse ones drain (see internal.h). */
    for (unsigned u = 0; u < PM_POOLS_PER_ARENA && arena == NULL; u++)
        arena = directory.by_unused[u];
    if (arena == NULL)
        arena = arena_create();
    if (arena == NULL) {
        pthread_mutex_unlock(&directory.lock);
        return NULL;
    }
    directory_unlink(arena);
    if (arena->free_pool_count == PM_POOLS_PER_ARENA)
        directory.empty_count--;
    pm_pool_t *pool = arena->free_pools;
    arena->free_pools = pool->next;
    pool->next = NULL;
    if (--arena->free_pool_count > 0)
        directory_link(arena);
    /* I10: the pool leaves the retained ring now, under the lock. Its class
     * is set only after the lock is released, and until then a ring entry
     * would still show it UNUSED and resident, fit to be purged under the
     * blocks its new owner is carving. */
    if (pool->resident)
        retained_forget(pool, sizeof *pool);
    /* I2: owned before the lock drops, so no other thread (the ring, a
     * fork child's validator) ever sees it off the free list yet UNUSED. */
    pm_pool_init(pool, class_index, heap);
    pthread_mutex_unlock(&directory.lock);
    return pool;
}

/* Caller holds the lock. */
static size_t pool_purge(pm_pool_t *pool)
{
    size_t bytes = pm_pool_bytes(pool->pool_index);
    pm_os_purge(pm_pool_start(pool), bytes);
    pool->resident = false;
    directory.released_bytes_total += bytes;
    return bytes;
}

/* I10: the ring's oldest entry leaves; if it names a pool that is still
 * UNUSED and resident, that pool's pages go back to the OS. */
static size_t retained_pop_oldest(void)
{
    pm_pool_t *pool = directory.retained[directory.retained_oldest];
    directory.retained_oldest = (directory.retained_oldest + 1) % RETAINED_RING_SIZE;
    directory.retained_count--;
    if (pool != NULL && pool->class_index == PM_CLASS_NONE && pool->resident)
        return pool_purge(pool);
    return 0;
}

static void retained_push(pm_pool_t *pool)
{
    size_t limit = pm_options.retain_pools < RETAINED_RING_SIZE ? pm_options.retain_pools
                                                                 : RETAINED_RING_SIZE;
    if (limit == 0) {
        pool_purge(pool);
        return;
    }
    while (directory.retained_count >= limit)
        retained_pop_oldest();
    directory.retained[(directory.retained_oldest + directory.retained_count) % RETAINED_RING_SIZE] = pool;
    directory.retained_count++;
}

/* Its owner gives a pool back: it becomes UNUSED here (I2). */
void pm_arena_release_pool(pm_pool_t *pool)
{
    pm_arena_t *arena = pm_arena_of(pool);
    pthread_mutex_lock(&directory.lock);
    /* I2: UNUSED and back on the free list in one step, under the lock. */
    pool->heap = NULL;
    __atomic_store_n(&pool->class_index, PM_CLASS_NONE, __ATOMIC_RELEASE);
    if (arena->free_pool_count > 0)
        directory_unlink(arena);
    pool->next = arena->free_pools;
    arena->free_pools = pool;
    arena->free_pool_count++;
    if (arena->free_pool_count == PM_POOLS_PER_ARENA) {
        /* I5: empty arenas beyond the reserve are unmapped at once. */
        if (directory.empty_count >= pm_options.reserve_arenas) {
            directory.empty_count++;
            arena_destroy(arena);
            pthread_mutex_unlock(&directory.lock);
            return;
        }
        directory.empty_count++;
    }
    directory_link(arena);
    if (pool->resident)
        retained_push(pool); /* I10 */
    pthread_mutex_unlock(&directory.lock);
}

size_t pm_arena_purge_pool(pm_pool_t *pool)
{
    if (!pool->resident)
        return 0;
    pthread_mutex_lock(&directory.lock);
    size_t bytes = pool_purge(pool);
    pthread_mutex_unlock(&directory.lock);
    return bytes;
}

size_t pm_arena_trim(void)
{
    size_t released = 0;
    pthread_mutex_lock(&directory.lock);
    while (directory.retained_count > 0)
        released += retained_pop_oldest();
    pm_arena_t *empty;
    while ((empty = directory.by_unused[PM_POOLS_PER_ARENA - 1]) != NULL) {
        directory_unlink(empty);
        arena_destroy(empty);
        released += PM_ARENA_SIZE;
    }
    pthread_mutex_unlock(&directory.lock);
    return released;
}

void pm_arena_stats(pm_stats_t *out, uint64_t used_blocks[PM_CLASS_COUNT])
{
    pthread_mutex_lock(&directory.lock);
    out->arenas_mapped = directory.mapped;
    out->arenas_peak = directory.peak;
    out->arenas_created_total = directory.created_total;
    out->arenas_destroyed_total = directory.destroyed_total;
    out->arena_bytes = directory.mapped * PM_ARENA_SIZE;
    out->released_bytes_total = directory.released_bytes_total;
    /* Pools in use change under their owners' hands: each field is read
     * once, atomically, and the figures are exact when the program is
     * quiescent. */
    for (const pm_arena_t *arena = directory.all; arena != NULL; arena = arena->all_next) {
        uint64_t used_bytes = 0;
        for (unsigned k = 0; k < PM_POOLS_PER_ARENA; k++) {
            const pm_pool_t *pool = &arena->pools[k];
            unsigned c = __atomic_load_n(&pool->class_index, __ATOMIC_ACQUIRE);
            if (c == PM_CLASS_NONE) {
                out->unused_pools++;
                out->retained_pools += pool->resident;
                continue;
            }
            unsigned used = __atomic_load_n(&pool->used_count, __ATOMIC_RELAXED);
            pm_class_stats_t *cs = &out->classes[c];
            cs->pools++;
            cs->pools_full += used == pool->capacity;
            cs->pools_empty += used == 0;
            cs->free_blocks += pool->capacity - used;
            cs->pool_bytes += pm_pool_bytes(k);
            used_blocks[c] += used;
            used_bytes += (uint64_t)used * pool->block_size;
        }
        uint64_t bucket = used_bytes * PM_OCCUPANCY_BUCKETS / (PM_ARENA_SIZE - PM_ARENA_HEADER_SIZE);
        out->arena_occupancy[bucket < PM_OCCUPANCY_BUCKETS ? bucket : PM_OCCUPANCY_BUCKETS - 1]++;
    }
    pthread_mutex_unlock(&directory.lock);
}

bool pm_arena_validate(bool (*visit)(const pm_pool_t *pool))
{
    bool ok = true;
    uint64_t count = 0;
    unsigned empty_arenas = 0;
    pthread_mutex_lock(&directory.lock);
    for (pm_arena_t *arena = directory.all; arena != NULL; arena = arena->all_next) {
        count++;
        unsigned unused = 0;
        for (const pm_pool_t *p = arena->free_pools; p != NULL; p = p->next) {
            ok &= p->class_index == PM_CLASS_NONE; /* I2 */
            if (++unused > PM_POOLS_PER_ARENA)
                break;
        }
        ok &= unused == arena->free_pool_count;
        ok &= pm_registry_contains(arena); /* I1 */
        empty_arenas += unused == PM_POOLS_PER_ARENA;
        for (unsigned k = 0; k < PM_POOLS_PER_ARENA; k++) {
            const pm_pool_t *pool = &arena->pools[k];
            ok &= pool->pool_index == k;
            if (pool->class_index == PM_CLASS_NONE)
                ok &= pm_pool_is_valid(pool); /* I2 */
            else
                ok &= visit(pool);
        }
    }
    ok &= count == directory.mapped && empty_arenas == directory.empty_count; /* I5 */
    ok &= empty_arenas <= pm_options.reserve_arenas;
    pthread_mutex_unlock(&directory.lock);
    return ok;
}

void pm_arena_lock(void) { pthread_mutex_lock(&directory.lock); }
void pm_arena_unlock(void) { pthread_mutex_unlock(&directory.lock); }
void pm_arena_reinit_lock(void) { pthread_mutex_init(&directory.lock, NULL); }
