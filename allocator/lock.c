/* lock.c — owns the slow half of pm_lock_t (internal.h): spinning a little,
 * then sleeping on the futex word. Never calls malloc or glibc's locks;
 * keeps no invariant of the allocator's, only mutual exclusion. */
#include "internal.h"

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

void pm_lock_contended(pm_lock_t *lock)
{
    for (int spin = 0; spin < LOCK_SPINS; spin++) {
        lock_cpu_relax();
        uint32_t free_word = 0;
        if (atomic_load_explicit(&lock->word, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&lock->word, &free_word, 1,
                                                  memory_order_acquire, memory_order_relaxed))
            return;
    }
    /* Marked 2 from here on, so that the unlock wakes a sleeper; a lock
     * taken this way stays marked, which costs at most one needless wake. */
    while (atomic_exchange_explicit(&lock->word, 2, memory_order_acquire) != 0)
        pm_os_futex_wait(&lock->word, 2, NULL);
}
