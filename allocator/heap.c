/* heap.c — owns the class bins: which pools serve each size class, and the
 * per-class counters. Never calls malloc; takes one class bin lock at a time
 * (then, to get or give back a pool, the arena directory lock). Keeps I4,
 * I8, and the pool side of I2.
 *
 * This stage has one heap shared by every thread, one lock per class. Pools
 * record their heap so per-thread heaps can take over without touching
 * pool.c or arena.c. */
#include "internal.h"

static pm_heap_t main_heap = {
    .bins = {[0 ... PM_CLASS_COUNT - 1] = {.lock = PTHREAD_MUTEX_INITIALIZER}},
};

static void bin_link(pm_bin_t *bin, pm_pool_t *pool)
{
    pool->prev = NULL;
    pool->next = bin->partial;
    if (bin->partial)
        bin->partial->prev = pool;
    bin->partial = pool;
}

static void bin_unlink(pm_bin_t *bin, pm_pool_t *pool)
{
    if (pool->prev)
        pool->prev->next = pool->next;
    else
        bin->partial = pool->next;
    if (pool->next)
        pool->next->prev = pool->prev;
    pool->next = pool->prev = NULL;
}

void *pm_heap_alloc(unsigned class_index)
{
    pm_bin_t *bin = &main_heap.bins[class_index];
    pthread_mutex_lock(&bin->lock);
    pm_pool_t *pool = bin->partial;
    if (PM_UNLIKELY(pool == NULL)) {
        pool = pm_arena_acquire_pool();
        if (pool == NULL) {
            pthread_mutex_unlock(&bin->lock);
            return NULL;
        }
        pm_pool_init(pool, class_index, &main_heap);
        bin->pools++;
        bin_link(bin, pool);
    }
    void *block = pm_pool_alloc(pool);
    if (pool->used_count == pool->capacity)
        bin_unlink(bin, pool); /* I4 */
    bin->allocated_total++;
    pthread_mutex_unlock(&bin->lock);
    return block;
}

/* Locks the bin of the class the block's pool serves. The class is read
 * before the lock is held, so it is read again under it: for a live block it
 * cannot change (its pool is IN USE), and for anything else pm_pool_checked
 * diagnoses the misuse under the lock. */
static pm_bin_t *heap_lock_bin_of(void *block, pm_op_t op)
{
    pm_arena_t *arena = pm_arena_of(block);
    uintptr_t offset = (uintptr_t)block - (uintptr_t)arena;
    if (offset < PM_ARENA_HEADER_SIZE)
        pm_pool_checked(block, op); /* diagnoses and aborts */
    const pm_pool_t *pool = &arena->pools[offset >> PM_POOL_SHIFT];
    for (;;) {
        unsigned class_index = __atomic_load_n(&pool->class_index, __ATOMIC_RELAXED);
        if (class_index == PM_CLASS_NONE)
            pm_pool_checked(block, op); /* diagnoses and aborts */
        pm_bin_t *bin = &main_heap.bins[class_index];
        pthread_mutex_lock(&bin->lock);
        if (pool->class_index == class_index)
            return bin;
        pthread_mutex_unlock(&bin->lock);
    }
}

void pm_heap_free(void *block, pm_op_t op)
{
    pm_bin_t *bin = heap_lock_bin_of(block, op);
    pm_pool_t *pool = pm_pool_checked(block, op);
    bool was_full = pool->used_count == pool->capacity;
    pm_pool_free(pool, block);
    bin->freed_total++;
    if (pool->used_count == 0) {
        /* I4: an empty pool goes back to its arena at once. */
        if (!was_full)
            bin_unlink(bin, pool);
        bin->pools--;
        pool->heap = NULL;
        __atomic_store_n(&pool->class_index, PM_CLASS_NONE, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&bin->lock);
        pm_arena_release_pool(pool);
        return;
    }
    if (was_full)
        bin_link(bin, pool); /* I4 */
    pthread_mutex_unlock(&bin->lock);
}

size_t pm_heap_block_size(void *block, pm_op_t op)
{
    pm_bin_t *bin = heap_lock_bin_of(block, op);
    pm_pool_t *pool = pm_pool_checked(block, op);
    size_t size = pm_class_size(pool->class_index);
    pthread_mutex_unlock(&bin->lock);
    return size;
}

void pm_heap_stats(pm_stats_t *out)
{
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++) {
        pm_bin_t *bin = &main_heap.bins[c];
        pm_class_stats_t *cs = &out->classes[c];
        pthread_mutex_lock(&bin->lock);
        cs->block_size = pm_class_size(c);
        cs->allocated_total = bin->allocated_total;
        cs->freed_total = bin->freed_total;
        cs->pools = bin->pools;
        pthread_mutex_unlock(&bin->lock);
        cs->live_blocks = cs->allocated_total - cs->freed_total;
        out->small_allocated_total += cs->allocated_total;
        out->small_live_blocks += cs->live_blocks;
        out->small_live_bytes += cs->live_blocks * cs->block_size;
    }
}

static void heap_lock_all(void)
{
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++)
        pthread_mutex_lock(&main_heap.bins[c].lock);
}

static void heap_unlock_all(void)
{
    for (unsigned c = PM_CLASS_COUNT; c-- > 0;)
        pthread_mutex_unlock(&main_heap.bins[c].lock);
}

/* Filled by pm_heap_validate's pool visitor: per class, live blocks and
 * pools seen in the arenas, to compare with the bins' counters (I8). */
static uint64_t validate_live[PM_CLASS_COUNT];
static uint64_t validate_pools[PM_CLASS_COUNT];

static bool heap_visit_pool(const pm_pool_t *pool)
{
    if (pool->heap != &main_heap || pool->class_index >= PM_CLASS_COUNT)
        return false;
    validate_live[pool->class_index] += pool->used_count;
    validate_pools[pool->class_index]++;
    /* I4: on the partial list iff not full. */
    const pm_bin_t *bin = &main_heap.bins[pool->class_index];
    bool listed = false;
    for (const pm_pool_t *p = bin->partial; p != NULL && !listed; p = p->next)
        listed = p == pool;
    return listed == (pool->used_count < pool->capacity);
}

bool pm_heap_validate(void)
{
    heap_lock_all();
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++)
        validate_live[c] = validate_pools[c] = 0;
    bool ok = pm_arena_validate(heap_visit_pool);
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++) {
        const pm_bin_t *bin = &main_heap.bins[c];
        ok &= validate_live[c] == bin->allocated_total - bin->freed_total; /* I8 */
        ok &= validate_pools[c] == bin->pools;
    }
    heap_unlock_all();
    return ok;
}

/* fork(): the child inherits memory in whatever state other threads left
 * it, so every allocator lock is held across fork, class bins before the
 * arena directory as everywhere else (the registry's lock is only taken
 * under the directory's). */
void pm_fork_prepare(void)
{
    heap_lock_all();
    pm_arena_lock();
}

void pm_fork_parent(void)
{
    pm_arena_unlock();
    heap_unlock_all();
}

/* The child has one thread, which holds every lock: start them afresh. */
void pm_fork_child(void)
{
    pm_arena_reinit_lock();
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++)
        pthread_mutex_init(&main_heap.bins[c].lock, NULL);
}
