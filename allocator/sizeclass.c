/* sizeclass.c — owns the mapping from request sizes to size classes.
 * Never allocates, never locks; the table is built at compile time.
 * Keeps: the class layout of internal.h (class k holds (k + 1) x 16 bytes). */
#include "internal.h"

#define CLASS_SIZE(k) (((uint64_t)(k) + 1) * PM_CLASS_GRANULE)
/* ceil(2^32 / size), or 2^32 / size + 1 for a power of two, which would
 * divide exactly and so leave free's test no step (pm_class_reciprocal). */
#define PM_RECIPROCAL(k)                                                                      \
    (uint32_t)((((uint64_t)1 << 32) + ((CLASS_SIZE(k) & (CLASS_SIZE(k) - 1)) == 0             \
                                           ? CLASS_SIZE(k)                                    \
                                           : CLASS_SIZE(k) - 1)) /                            \
               CLASS_SIZE(k))

/* For every class: see pm_class_reciprocal in internal.h for why the
 * product divides exactly, and tests free's block starts, inside a pool. */
const uint32_t pm_class_reciprocal[PM_CLASS_COUNT] = {
    PM_RECIPROCAL(0),  PM_RECIPROCAL(1),  PM_RECIPROCAL(2),  PM_RECIPROCAL(3),
    PM_RECIPROCAL(4),  PM_RECIPROCAL(5),  PM_RECIPROCAL(6),  PM_RECIPROCAL(7),
    PM_RECIPROCAL(8),  PM_RECIPROCAL(9),  PM_RECIPROCAL(10), PM_RECIPROCAL(11),
    PM_RECIPROCAL(12), PM_RECIPROCAL(13), PM_RECIPROCAL(14), PM_RECIPROCAL(15),
    PM_RECIPROCAL(16), PM_RECIPROCAL(17), PM_RECIPROCAL(18), PM_RECIPROCAL(19),
    PM_RECIPROCAL(20), PM_RECIPROCAL(21), PM_RECIPROCAL(22), PM_RECIPROCAL(23),
    PM_RECIPROCAL(24), PM_RECIPROCAL(25), PM_RECIPROCAL(26), PM_RECIPROCAL(27),
    PM_RECIPROCAL(28), PM_RECIPROCAL(29), PM_RECIPROCAL(30), PM_RECIPROCAL(31),
};

int pm_size_class(size_t size)
{
    return size <= PM_SMALL_MAX ? (int)pm_class_of(size) : -1;
}

size_t pm_class_block_size(int class_index)
{
    if (class_index < 0 || class_index >= PM_CLASS_COUNT)
        return 0;
    return pm_class_size((unsigned)class_index);
}
