/* lock.c — owns the slow half of pm_lock_t (internal.h): spinning a little,
 * then sleeping on the futex word; and pm_rwlock_t. Never calls malloc or
 * glibc's locks; keeps no invariant of the allocator's, only mutual
 * exclusion. */
#include "internal.h"

#include <limits.h>

/* Holders keep these locks for a few hundred instructions at most (a pool
 * handed out, a snapshot's merge): a short spin usually wins the lock
 * without a system call. */
#define LOCK_SPINS 100

static inline void lock_cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* Up to LOCK_SPINS pauses for the holder to let go; false if it has not. */
bool pm_lock_spin(pm_lock_t *lock)
{
    for (int spin = 0; spin < LOCK_SPINS; spin++) {
        lock_cpu_relax();
        uint32_t free_word = 0;
        if (atomic_load_explicit(&lock->word, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&lock->word, &free_word, 1,
                                                  memory_order_acquire, memory_order_relaxed))
            return true;
    }
    return false;
}

void pm_lock_contended(pm_lock_t *lock)
{
    if (pm_lock_spin(lock))
        return;
    /* Marked 2 from here on, so that the unlock wakes a sleeper; a lock
     * taken this way stays marked, which costs at most one needless wake. */
    while (atomic_exchange_explicit(&lock->word, 2, memory_order_acquire) != 0)
        pm_os_futex_wait(&lock->word, 2, NULL);
}

void pm_rwlock_read(pm_rwlock_t *lock)
{
    uint32_t state = atomic_load_explicit(&lock->state, memory_order_relaxed);
    for (;;) {
        if (state & PM_RWLOCK_WRITER) {
            pm_os_futex_wait(&lock->state, state, NULL);
            state = atomic_load_explicit(&lock->state, memory_order_relaxed);
        } else if (atomic_compare_exchange_weak_explicit(&lock->state, &state, state + 1,
                                                         memory_order_acquire,
                                                         memory_order_relaxed)) {
            return;
        }
    }
}

void pm_rwlock_read_done(pm_rwlock_t *lock)
{
    /* The last reader out wakes the writer waiting for it. */
    if (atomic_fetch_sub_explicit(&lock->state, 1, memory_order_release) - 1 == PM_RWLOCK_WRITER)
        pm_os_futex_wake(&lock->state, INT_MAX);
}

void pm_rwlock_write(pm_rwlock_t *lock)
{
    pm_lock(&lock->writers);
    uint32_t state =
        atomic_fetch_or_explicit(&lock->state, PM_RWLOCK_WRITER, memory_order_acquire) |
        PM_RWLOCK_WRITER;
    while (state != PM_RWLOCK_WRITER) {
        pm_os_futex_wait(&lock->state, state, NULL);
        state = atomic_load_explicit(&lock->state, memory_order_acquire);
    }
}

void pm_rwlock_write_done(pm_rwlock_t *lock)
{
    /* No reader came in while the writer bit was set: the state is that bit alone. */
    atomic_store_explicit(&lock->state, 0, memory_order_release);
    pm_os_futex_wake(&lock->state, INT_MAX);
    pm_unlock(&lock->writers);
}
