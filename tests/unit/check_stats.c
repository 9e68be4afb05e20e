/* check_stats.c — pm_stats_get and pm_stats_print: a pristine core reports
 * zeros, counts move exactly with allocations, the report is written with
 * write(2), allocates nothing and reports write errors. */
#include "support.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* Prints the report into a memory file and returns it NUL-terminated. */
static void print_report(char *buf, size_t cap)
{
    int fd = memfd_create("pm_stats", 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pm_stats_print(fd, PM_STATS_TEXT), 0);
    off_t end = lseek(fd, 0, SEEK_CUR);
    ck_assert_int_gt(end, 0);
    ck_assert_uint_lt((size_t)end, cap);
    ssize_t got = pread(fd, buf, (size_t)end, 0);
    ck_assert_int_eq(got, end);
    buf[got] = '\0';
    close(fd);
}

START_TEST(test_stats_pristine)
{
    pm_stats_t s;
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_allocated_total, 0);
    ck_assert_uint_eq(s.small_live_blocks, 0);
    ck_assert_uint_eq(s.small_live_bytes, 0);
    ck_assert_uint_eq(s.arenas_mapped, 0);
    ck_assert_uint_eq(s.arenas_peak, 0);
    ck_assert_uint_eq(s.arenas_created_total, 0);
    ck_assert_uint_eq(s.arena_bytes, 0);
    for (int c = 0; c < PM_CLASS_COUNT; c++) {
        ck_assert_uint_eq(s.classes[c].allocated_total, 0);
        ck_assert_uint_eq(s.classes[c].pools, 0);
    }
}
END_TEST

START_TEST(test_stats_exact_counts)
{
    void *p[PM_CLASS_COUNT][3];
    for (int c = 0; c < PM_CLASS_COUNT; c++)
        for (int k = 0; k <= c % 3; k++)
            p[c][k] = pm_malloc(pm_class_block_size(c));
    void *large = pm_malloc(PM_SMALL_MAX + 1);
    pm_stats_t s;
    pm_test_stats(&s);
    uint64_t blocks = 0, bytes = 0;
    for (int c = 0; c < PM_CLASS_COUNT; c++) {
        uint64_t want = (uint64_t)(c % 3 + 1);
        ck_assert_uint_eq(s.classes[c].allocated_total, want);
        ck_assert_uint_eq(s.classes[c].live_blocks, want);
        ck_assert_uint_eq(s.classes[c].freed_total, 0);
        ck_assert_uint_eq(s.classes[c].pools, 1);
        blocks += want;
        bytes += want * pm_class_block_size(c);
    }
    ck_assert_uint_eq(s.small_allocated_total, blocks);
    ck_assert_uint_eq(s.small_live_bytes, bytes);
    ck_assert_uint_eq(s.arenas_mapped, 2); /* 32 pools: two arenas of 16 */
    ck_assert_uint_eq(s.arena_bytes, 2 * PM_ARENA_SIZE);

    for (int c = 0; c < PM_CLASS_COUNT; c++)
        pm_free(p[c][0]);
    pm_free(large);
    pm_test_stats(&s);
    for (int c = 0; c < PM_CLASS_COUNT; c++) {
        ck_assert_uint_eq(s.classes[c].freed_total, 1);
        ck_assert_uint_eq(s.classes[c].live_blocks, (uint64_t)(c % 3));
        ck_assert_uint_eq(s.classes[c].pools, 1); /* kept even if empty (I4) */
    }
    ck_assert_uint_eq(s.small_live_blocks, blocks - PM_CLASS_COUNT);
    for (int c = 0; c < PM_CLASS_COUNT; c++)
        for (int k = 1; k <= c % 3; k++)
            pm_free(p[c][k]);
    pm_test_stats(&s);
    ck_assert_uint_eq(s.small_live_blocks, 0);
    ck_assert_uint_eq(s.small_allocated_total, blocks);
    ck_assert_uint_eq(s.arenas_peak, 2);
}
END_TEST

START_TEST(test_stats_print_report)
{
    enum { N = 123 };
    void *p[N];
    for (int i = 0; i < N; i++)
        p[i] = pm_malloc(24);
    pm_stats_t before, after;
    pm_test_stats(&before);
    static char buf[1 << 16];
    print_report(buf, sizeof buf);
    pm_test_stats(&after);
    /* It allocates nothing (from pools, at least, which we can see). */
    ck_assert_uint_eq(after.small_allocated_total, before.small_allocated_total);
    const char *line = strstr(buf, "small blocks allocated");
    ck_assert_msg(line != NULL, "report: %s", buf);
    /* The line reports the count. */
    const char *eol = strchr(line, '\n');
    size_t line_len = eol ? (size_t)(eol - line) : strlen(line);
    char want[32];
    snprintf(want, sizeof want, "%d", N);
    char line_copy[256];
    ck_assert_uint_lt(line_len, sizeof line_copy);
    memcpy(line_copy, line, line_len);
    line_copy[line_len] = '\0';
    ck_assert_msg(strstr(line_copy, want) != NULL, "line: %s", line_copy);
    for (int i = 0; i < N; i++)
        pm_free(p[i]);
}
END_TEST

START_TEST(test_stats_print_devnull)
{
    int fd = open("/dev/null", O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pm_stats_print(fd, PM_STATS_TEXT), 0);
    void *p = pm_malloc(10);
    ck_assert_int_eq(pm_stats_print(fd, PM_STATS_TEXT), 0);
    pm_free(p);
    close(fd);
}
END_TEST

START_TEST(test_stats_print_bad_fd)
{
    errno = 0;
    ck_assert_int_eq(pm_stats_print(-1, PM_STATS_TEXT), -1);
    ck_assert_int_eq(errno, EBADF);
    int fd = open("/dev/null", O_RDONLY);
    ck_assert_int_ge(fd, 0);
    errno = 0;
    ck_assert_int_eq(pm_stats_print(fd, PM_STATS_TEXT), -1);
    ck_assert_int_eq(errno, EBADF);
    close(fd);
}
END_TEST

/* The records' dates agree with gmtime_r on every day from 1900 to 2500
 * (leap years of every kind, both sides of the epoch). */
START_TEST(test_stats_utc_date)
{
    for (int64_t days = -25567; days <= 193530; days++) {
        time_t seconds = (time_t)(days * 86400);
        struct tm tm;
        PM_CHECK_EACH(gmtime_r(&seconds, &tm) != NULL, "day %lld", (long long)days);
        int64_t year;
        int month, day;
        pm_utc_date(days, &year, &month, &day);
        PM_CHECK_EACH(year == tm.tm_year + 1900 && month == tm.tm_mon + 1 && day == tm.tm_mday,
                      "day %lld: %lld-%d-%d, gmtime_r says %d-%d-%d", (long long)days,
                      (long long)year, month, day, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    }
}
END_TEST

Suite *make_stats_suite(void)
{
    Suite *s = suite_create("stats");
    TCase *tc = tcase_create("get");
    tcase_add_test(tc, test_stats_pristine);
    tcase_add_test(tc, test_stats_exact_counts);
    suite_add_tcase(s, tc);

    tc = tcase_create("print");
    tcase_add_test(tc, test_stats_print_report);
    tcase_add_test(tc, test_stats_print_devnull);
    tcase_add_test(tc, test_stats_print_bad_fd);
    tcase_add_test(tc, test_stats_utc_date);
    /* 219,000 days through gmtime_r: about 1 s alone, and past Check's
     * default 4 s under ThreadSanitizer on a busy machine (a CI run timed
     * out there). */
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
