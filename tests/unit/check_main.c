/* check_main.c — the unit test runner: `pm_unit_tests [suite [tcase]]` runs
 * one suite (optionally one test case of it), or every suite with no
 * argument. Always in Check's forked mode: every test starts from a pristine
 * core and the misuse suite's tests die by design. Never calls pm_* itself,
 * so the forked tests inherit no state. Exit status is nonzero on failure. */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const struct {
    const char *name;
    Suite *(*make)(void);
} suites[] = {
    {"sizeclass", make_sizeclass_suite}, {"registry", make_registry_suite},
    {"pool", make_pool_suite},           {"alloc", make_alloc_suite},
    {"realloc", make_realloc_suite},     {"aligned", make_aligned_suite},
    {"misuse", make_misuse_suite},       {"hardening", make_hardening_suite},
    {"stats", make_stats_suite},
    {"threads", make_threads_suite},     {"fork", make_fork_suite},
    {"release", make_release_suite},     {"report", make_report_suite},
    {"profile", make_profile_suite},     {"system", make_system_suite},
};
#define SUITE_COUNT (sizeof suites / sizeof suites[0])

static void usage(FILE *out)
{
    fprintf(out, "usage: pm_unit_tests [SUITE [TCASE]]\nsuites:");
    for (size_t i = 0; i < SUITE_COUNT; i++)
        fprintf(out, " %s", suites[i].name);
    fprintf(out, "\n");
}

int main(int argc, char **argv)
{
    if (argc > 3 || (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))) {
        usage(argc > 3 ? stderr : stdout);
        return argc > 3 ? 2 : 0;
    }
    const char *only = argc > 1 ? argv[1] : NULL;
    const char *tcase = argc > 2 ? argv[2] : NULL;

    /* The misuse suite aborts on purpose: no core files for those. */
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);

    SRunner *runner = NULL;
    for (size_t i = 0; i < SUITE_COUNT; i++) {
        if (only && strcmp(only, suites[i].name) != 0)
            continue;
        if (!runner)
            runner = srunner_create(suites[i].make());
        else
            srunner_add_suite(runner, suites[i].make());
    }
    if (!runner) {
        fprintf(stderr, "pm_unit_tests: no suite named '%s'\n", only);
        usage(stderr);
        return 2;
    }
    srunner_set_fork_status(runner, CK_FORK);
    srunner_run(runner, NULL, tcase, CK_ENV); /* CK_VERBOSITY, default normal */
    int failed = srunner_ntests_failed(runner);
    int run = srunner_ntests_run(runner);
    srunner_free(runner);
    if (run == 0) {
        fprintf(stderr, "pm_unit_tests: no test ran (test case '%s'?)\n",
                tcase ? tcase : "");
        return 2;
    }
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
