/* pool.c — owns the blocks inside one pool: carving, the free list, the
 * live map, and the checks that tell a block from any other address.
 * Never locks (the caller holds the pool's class bin lock) and never calls
 * malloc. Keeps I3, I6 and I7. */
#include "internal.h"

#include <string.h>

void pm_pool_init(pm_pool_t *pool, unsigned class_index, struct pm_heap *heap)
{
    pool->free_list = NULL;
    pool->next = pool->prev = NULL;
    pool->heap = heap;
    pool->carve_index = 0;
    pool->used_count = 0;
    pool->capacity = (uint16_t)(pm_pool_bytes(pool->pool_index) / pm_class_size(class_index));
    pool->class_index = (uint8_t)class_index;
    memset(pool->live_map, 0, sizeof pool->live_map);
}

static inline uint32_t pool_block_index(const pm_pool_t *pool, const char *block)
{
    uint64_t offset = (uint64_t)(block - pm_pool_start(pool));
    return (uint32_t)((offset * pm_class_reciprocal[pool->class_index]) >> 32);
}

static inline void pool_mark_live(pm_pool_t *pool, uint32_t index)
{
    pool->live_map[index / 64] |= (uint64_t)1 << (index % 64);
}

/* Precondition: used_count < capacity (the pool is on a partial list, I4). */
void *pm_pool_alloc(pm_pool_t *pool)
{
    char *block;
    uint32_t index;
    pm_block_t *head = pool->free_list;
    if (head != NULL) {
        pool->free_list = head->next;
        block = (char *)head;
        index = pool_block_index(pool, block);
    } else {
        index = pool->carve_index++;
        block = pm_pool_start(pool) + (size_t)index * pm_class_size(pool->class_index);
    }
    pool_mark_live(pool, index);
    pool->used_count++;
    return block;
}

/* The diagnosis of each misuse, per operation: glibc's wording where glibc
 * has one ("double free"), and the kind of address otherwise. */
enum pool_misuse { MISUSE_FREED, MISUSE_NOT_BLOCK_START, MISUSE_UNUSED_POOL, MISUSE_ARENA_HEADER };

static const char *const pool_misuse_message[][4] = {
    [PM_OP_FREE] = {"double free", "invalid free (not the start of a block)",
                    "invalid free (pointer into an unused pool)",
                    "invalid free (pointer into an arena header)"},
    [PM_OP_REALLOC] = {"realloc of a freed block", "invalid realloc (not the start of a block)",
                       "invalid realloc (pointer into an unused pool)",
                       "invalid realloc (pointer into an arena header)"},
    [PM_OP_USABLE_SIZE] = {"malloc_usable_size of a freed block",
                           "invalid malloc_usable_size (not the start of a block)",
                           "invalid malloc_usable_size (pointer into an unused pool)",
                           "invalid malloc_usable_size (pointer into an arena header)"},
};

pm_pool_t *pm_pool_checked(void *block, pm_op_t op)
{
    pm_arena_t *arena = pm_arena_of(block);
    uintptr_t offset = (uintptr_t)block - (uintptr_t)arena;
    if (offset < PM_ARENA_HEADER_SIZE)
        pm_fatal(pool_misuse_message[op][MISUSE_ARENA_HEADER], block, -1);
    pm_pool_t *pool = &arena->pools[offset >> PM_POOL_SHIFT];
    unsigned class_index = pool->class_index;
    if (class_index == PM_CLASS_NONE)
        pm_fatal(pool_misuse_message[op][MISUSE_UNUSED_POOL], block, -1);
    uint32_t index = pool_block_index(pool, block);
    /* I7: a block starts exactly at a multiple of the block size. */
    if ((char *)block != pm_pool_start(pool) + (size_t)index * pm_class_size(class_index) ||
        index >= pool->capacity)
        pm_fatal(pool_misuse_message[op][MISUSE_NOT_BLOCK_START], block, (int)class_index);
    /* I6: the live bit tells a block in use from a freed one. */
    if (!(pool->live_map[index / 64] & ((uint64_t)1 << (index % 64))))
        pm_fatal(pool_misuse_message[op][MISUSE_FREED], block, (int)class_index);
    return pool;
}

/* Precondition: pm_pool_checked(block) returned this pool. */
void pm_pool_free(pm_pool_t *pool, void *block)
{
    uint32_t index = pool_block_index(pool, block);
    pool->live_map[index / 64] &= ~((uint64_t)1 << (index % 64));
    pm_block_t *b = block;
    b->next = pool->free_list;
    pool->free_list = b;
    pool->used_count--;
}

/* I3, walked in full: for debug builds and tests. */
bool pm_pool_is_valid(const pm_pool_t *pool)
{
    if (pool->class_index == PM_CLASS_NONE)
        return pool->used_count == 0 && pool->heap == NULL; /* I2 */
    unsigned live = 0;
    for (unsigned w = 0; w < PM_LIVE_MAP_WORDS; w++)
        live += (unsigned)__builtin_popcountll(pool->live_map[w]);
    if (live != pool->used_count || pool->carve_index > pool->capacity)
        return false;
    unsigned free_blocks = 0;
    for (const pm_block_t *b = pool->free_list; b != NULL; b = b->next) {
        if (++free_blocks > pool->capacity)
            return false; /* a cycle */
    }
    return free_blocks + (pool->capacity - pool->carve_index) + pool->used_count == pool->capacity;
}
