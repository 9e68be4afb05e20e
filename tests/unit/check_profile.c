/* check_profile.c — allocation-site profiling through pm_*: a fork while
 * other threads sample leaves the child's profile lock usable (I11).
 * Profiling is switched on in the test process as the preload constructor
 * does (pm_profile_init, then pm_heap_reset_sampling); needs libunwind8. */
#include "support.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* rate: mean bytes between samples. At 1, every request of 64 bytes or
 * more is sampled but for odds of e^-63, and a sample stands for its own
 * size exactly (its weight 1 / (1 - e^(-size)) is 1 in a double). */
static void profile_on(uint64_t rate)
{
    pm_options.profile = 1;
    pm_options.profile_rate = rate;
    pm_profile_init();
    ck_assert_msg(pm_profile_enabled(), "profiling did not start (libunwind8 missing?)");
    pm_heap_reset_sampling();
}

/* ---- fork --------------------------------------------------------------- */

static atomic_int sampling_stop;

/* Samples as hard as it can: at rate 16 every request is sampled, and so
 * every free takes the profile lock too. */
static void *sampling_worker(void *arg)
{
    pm_test_rng_t rng;
    pm_test_rng_seed(&rng, (uint64_t)(uintptr_t)arg);
    void *held[32] = {0};
    while (!atomic_load_explicit(&sampling_stop, memory_order_relaxed)) {
        size_t i = pm_test_rng_range(&rng, 0, 31);
        pm_free(held[i]);
        held[i] = pm_malloc(pm_test_rng_range(&rng, 16, 4 * PM_SMALL_MAX));
    }
    for (size_t i = 0; i < 32; i++)
        pm_free(held[i]);
    return NULL;
}

/* 0 once the child exited, 1 if it was still running after timeout_ms (it
 * is killed then); its wait status in *status. */
static int wait_with_timeout(pid_t pid, int *status, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited++) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 0;
        ck_assert_int_eq(r, 0);
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, status, 0);
    return 1;
}

/* The profile lock held by a worker at the moment of fork would stay held
 * in the child forever: its first sampled malloc or free would hang. The
 * fork handlers take it before fork like every other lock. */
START_TEST(test_fork_while_sampling)
{
    enum { WORKERS = 2, FORKS = 150 };
    profile_on(16);
    ck_assert_int_eq(pthread_atfork(pm_fork_prepare, pm_fork_parent, pm_fork_child), 0);
    atomic_store(&sampling_stop, 0);
    pthread_t workers[WORKERS];
    for (uintptr_t t = 0; t < WORKERS; t++)
        ck_assert_int_eq(pthread_create(&workers[t], NULL, sampling_worker, (void *)(t + 1)), 0);
    int hung = -1, status = 0;
    for (int round = 0; round < FORKS && hung < 0; round++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            void *p[64];
            for (int k = 0; k < 20; k++) {
                for (int i = 0; i < 64; i++)
                    p[i] = pm_malloc((size_t)(64 + 61 * i));
                for (int i = 0; i < 64; i++)
                    pm_free(p[i]);
            }
            _exit(0);
        }
        if (wait_with_timeout(pid, &status, 5000))
            hung = round;
        else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            break;
    }
    atomic_store(&sampling_stop, 1);
    for (int t = 0; t < WORKERS; t++)
        ck_assert_int_eq(pthread_join(workers[t], NULL), 0);
    ck_assert_msg(hung < 0, "child of fork %d hung (killed after 5 s)", hung);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %s %d",
                  WIFEXITED(status) ? "exited with" : "killed by signal",
                  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}
END_TEST

Suite *make_profile_suite(void)
{
    Suite *s = suite_create("profile");
    TCase *fork_tc = tcase_create("fork");
    tcase_set_timeout(fork_tc, 120);
    tcase_add_test(fork_tc, test_fork_while_sampling);
    suite_add_tcase(s, fork_tc);
    return s;
}
