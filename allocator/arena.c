/* arena.c — owns the arena directory: mapping and unmapping arenas, and
 * handing UNUSED pools out to heaps and taking them back. Never calls
 * malloc; takes the directory lock (after any class bin lock). Keeps I1,
 * I2 and I5. */
#include "internal.h"


static struct {
    pthread_mutex_t lock;
    /* by_unused[u - 1]: arenas with exactly u unused pools (I5). */
    pm_arena_t *by_unused[PM_POOLS_PER_ARENA];
    pm_arena_t *all;
    uint64_t mapped, peak, created_total, destroyed_total;
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
    if (++directory.mapped > directory.peak)
        directory.peak = directory.mapped;
    directory_link(arena);
    return arena;
}

static void arena_destroy(pm_arena_t *arena)
{
    if (arena->all_prev)
        arena->all_prev->all_next = arena->all_next;
    else
        directory.all = arena->all_next;
    if (arena->all_next)
        arena->all_next->all_prev = arena->all_prev;
    directory.mapped--;
    directory.destroyed_total++;
    pm_registry_remove(arena); /* I1: before the memory goes */
    pm_os_unmap(arena, PM_ARENA_SIZE);
}

pm_pool_t *pm_arena_acquire_pool(void)
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
    pm_pool_t *pool = arena->free_pools;
    arena->free_pools = pool->next;
    pool->next = NULL;
    if (--arena->free_pool_count > 0)
        directory_link(arena);
    pthread_mutex_unlock(&directory.lock);
    return pool;
}

/* Precondition: the pool is already marked UNUSED (class PM_CLASS_NONE). */
void pm_arena_release_pool(pm_pool_t *pool)
{
    pm_arena_t *arena = pm_arena_of(pool);
    pthread_mutex_lock(&directory.lock);
    if (arena->free_pool_count > 0)
        directory_unlink(arena);
    pool->next = arena->free_pools;
    arena->free_pools = pool;
    arena->free_pool_count++;
    /* I5: one empty arena is kept as a reserve against mmap/munmap churn. */
    if (arena->free_pool_count == PM_POOLS_PER_ARENA &&
        directory.by_unused[PM_POOLS_PER_ARENA - 1] != NULL)
        arena_destroy(arena);
    else
        directory_link(arena);
    pthread_mutex_unlock(&directory.lock);
}

void pm_arena_stats(pm_stats_t *out)
{
    pthread_mutex_lock(&directory.lock);
    out->arenas_mapped = directory.mapped;
    out->arenas_peak = directory.peak;
    out->arenas_created_total = directory.created_total;
    out->arenas_destroyed_total = directory.destroyed_total;
    out->arena_bytes = directory.mapped * PM_ARENA_SIZE;
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
    ok &= count == directory.mapped && empty_arenas <= 1; /* I5 */
    pthread_mutex_unlock(&directory.lock);
    return ok;
}

void pm_arena_lock(void) { pthread_mutex_lock(&directory.lock); }
void pm_arena_unlock(void) { pthread_mutex_unlock(&directory.lock); }
void pm_arena_reinit_lock(void) { pthread_mutex_init(&directory.lock, NULL); }
