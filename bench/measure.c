/* measure.c — pm_bench_measure: runs one command and writes its wall time,
 * peak RSS and CPU times to a file; bench/run starts every measured run
 * through it.
 * Never measures from inside a big parent: that is the reason it exists.
 *
 *   pm_bench_measure RESULT_FILE PROGRAM ARGS...
 *
 * Why not os.wait4 from Python directly: Linux keeps a process's peak RSS
 * (ru_maxrss) across execve as the maximum over every address space the
 * process has had, and a child forked from Python starts with Python's
 * (~20 MiB, more once matplotlib is loaded). Every small workload would then
 * report Python's peak instead of its own. Forked from this small program
 * instead, the workload's floor is this program's own ~1 MiB, below any
 * real program's peak.
 *
 * RESULT_FILE gets one line:
 *     status=<wait status> wall_ns=<n> maxrss_kib=<n> user_us=<n> sys_us=<n>
 * The command's stdin, stdout and stderr are this program's. Exits 0 when
 * the line was written (whatever the command did), 127 otherwise. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "workloads/bench.h" /* bench_now_ns; its other helpers are inline, unused here */

static uint64_t measure_us(struct timeval tv)
{
    return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: pm_bench_measure RESULT_FILE PROGRAM ARGS...\n");
        return 127;
    }
    FILE *result = fopen(argv[1], "w");
    if (result == NULL) {
        fprintf(stderr, "pm_bench_measure: %s: %s\n", argv[1], strerror(errno));
        return 127;
    }
    uint64_t start = bench_now_ns();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "pm_bench_measure: fork: %s\n", strerror(errno));
        fclose(result);
        return 127;
    }
    if (pid == 0) {
        fclose(result);
        execvp(argv[2], argv + 2);
        fprintf(stderr, "pm_bench_measure: %s: %s\n", argv[2], strerror(errno));
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    pid_t got;
    do {
        got = wait4(pid, &status, 0, &ru);
    } while (got < 0 && errno == EINTR);
    uint64_t wall = bench_now_ns() - start;
    if (got != pid) {
        fprintf(stderr, "pm_bench_measure: wait4: %s\n", strerror(errno));
        fclose(result);
        return 127;
    }
    fprintf(result,
            "status=%d wall_ns=%" PRIu64 " maxrss_kib=%ld user_us=%" PRIu64
            " sys_us=%" PRIu64 "\n",
            status, wall, ru.ru_maxrss, measure_us(ru.ru_utime), measure_us(ru.ru_stime));
    return fclose(result) == 0 ? 0 : 127;
}
