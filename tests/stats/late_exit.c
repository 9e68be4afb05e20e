/* late_exit.c — a library whose destructor runs after libpoolmalloc.so's
 * (preloaded after it: destructors run in the reverse order of the
 * constructors) and lasts several snapshot intervals, as another library's
 * teardown may: the report must still end with the exit snapshot
 * (dump.sh). */
#include <time.h>

__attribute__((destructor)) static void late_exit(void)
{
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 300 * 1000 * 1000};
    while (nanosleep(&pause, &pause) != 0)
        continue;
}
