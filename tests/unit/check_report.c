/* check_report.c — the stats records: the JSON line parses (with jansson)
 * and carries every field of the tables in poolmalloc.h with the values
 * pm_stats_get gives; counters are exact for a known allocation pattern,
 * on the pool path and on the glibc path; the text report, the callback,
 * mallinfo2 and malloc_info's XML agree with them. */
#include <check.h>
#include <jansson.h>
#include <malloc.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "support.h"


typedef struct captured {
    char text[1 << 16];
    size_t length;
    int calls;
} captured_t;

static int capture(void *arg, const char *record, size_t length)
{
    captured_t *c = arg;
    c->calls++;
    if (length >= sizeof c->text)
        return -1;
    memcpy(c->text, record, length);
    c->text[length] = '\0';
    c->length = length;
    return 0;
}

static json_t *json_record(void)
{
    static captured_t c;
    c.calls = 0;
    ck_assert_int_eq(pm_stats_print_to(capture, &c, PM_STATS_JSON), 0);
    ck_assert_int_eq(c.calls, 1); /* one record, one call */
    ck_assert_msg(c.length > 0 && c.text[c.length - 1] == '\n', "a JSON Lines record ends a line");
    ck_assert_ptr_null(memchr(c.text, '\n', c.length - 1));
    json_error_t error;
    json_t *record = json_loads(c.text, 0, &error);
    ck_assert_msg(record != NULL, "not JSON (%s at %d): %s", error.text, error.position, c.text);
    return record;
}

static uint64_t json_count(json_t *object, const char *name)
{
    json_t *v = json_object_get(object, name);
    ck_assert_msg(json_is_integer(v), "%s missing or not an integer", name);
    return (uint64_t)json_integer_value(v);
}

/* Every field of both tables is in the record, with pm_stats_get's value
 * (the program is quiescent, so two reads agree). */
START_TEST(test_json_has_every_field)
{
    pm_stats_t s;
    pm_test_stats(&s);
    json_t *r = json_record();
    ck_assert_uint_eq(json_count(r, "schema"), PM_STATS_SCHEMA_VERSION);
    ck_assert_str_eq(json_string_value(json_object_get(r, "allocator")), "poolmalloc");
    ck_assert_uint_eq(json_count(r, "pid"), (uint64_t)getpid());
    ck_assert_str_eq(json_string_value(json_object_get(r, "reason")), "api");
#define CHECK_FIELD_COUNT(name) ck_assert_uint_eq(json_count(r, #name), s.name);
#define CHECK_FIELD_BYTES(name) CHECK_FIELD_COUNT(name)
#define CHECK_FIELD_RATIO(name) \
    ck_assert(json_is_number(json_object_get(r, #name)));
#define CHECK_FIELD(name, kind, label) \
    if (strncmp(#name, "rss", 3) != 0) { /* RSS moves between two reads */ \
        CHECK_FIELD_##kind(name)                                            \
    } else {                                                                \
        ck_assert(json_is_integer(json_object_get(r, #name)));              \
    }
    PM_STATS(CHECK_FIELD)
    json_t *occupancy = json_object_get(r, "arena_occupancy");
    ck_assert_uint_eq(json_array_size(occupancy), PM_OCCUPANCY_BUCKETS);
    json_t *classes = json_object_get(r, "classes");
    ck_assert_uint_eq(json_array_size(classes), PM_CLASS_COUNT);
    for (unsigned c = 0; c < PM_CLASS_COUNT; c++) {
        json_t *k = json_array_get(classes, c);
        ck_assert_uint_eq(json_count(k, "class"), c);
#define CHECK_CLASS_COUNT(name) ck_assert_uint_eq(json_count(k, #name), s.classes[c].name);
#define CHECK_CLASS_BYTES(name) CHECK_CLASS_COUNT(name)
#define CHECK_CLASS_RATIO(name) \
    ck_assert(fabs(json_number_value(json_object_get(k, #name)) - s.classes[c].name) < 1e-6);
#define CHECK_CLASS(name, kind, label) CHECK_CLASS_##kind(name)
        PM_CLASS_STATS(CHECK_CLASS)
    }
    json_decref(r);
}
END_TEST

/* A known pattern, counted to the unit, on both paths. */
START_TEST(test_counters_exact)
{
    enum { SMALL = 1000, LARGE = 37 };
    static void *small[SMALL], *large[LARGE];
    pm_stats_t before, during, after;
    pm_test_stats(&before);
    for (int i = 0; i < SMALL; i++)
        small[i] = pm_malloc(24); /* class 1 */
    uint64_t large_bytes = 0;
    for (int i = 0; i < LARGE; i++) {
        large[i] = pm_malloc(1000 + (size_t)i * 100);
        large_bytes += pm_malloc_usable_size(large[i]);
    }
    pm_test_stats(&during);
    ck_assert_uint_eq(during.classes[1].live_blocks - before.classes[1].live_blocks, SMALL);
    ck_assert_uint_eq(during.classes[1].allocated_total - before.classes[1].allocated_total, SMALL);
    ck_assert_uint_eq(during.small_live_bytes - before.small_live_bytes, SMALL * 32);
    ck_assert_uint_eq(during.system_live_blocks - before.system_live_blocks, LARGE);
    ck_assert_uint_eq(during.system_live_bytes - before.system_live_bytes, large_bytes);
    ck_assert_uint_eq(during.system_allocated_total - before.system_allocated_total, LARGE);
    /* Room left: every pool of class 1 holds capacity blocks. */
    ck_assert_uint_ge(during.classes[1].pools, (SMALL * 32) / PM_POOL_SIZE + 1);
    ck_assert_uint_eq(during.classes[1].free_blocks + during.classes[1].live_blocks,
                      during.classes[1].pool_bytes / 32);
    for (int i = 0; i < SMALL; i++)
        pm_free(small[i]);
    for (int i = 0; i < LARGE; i++)
        pm_free(large[i]);
    pm_test_stats(&after);
    ck_assert_uint_eq(after.classes[1].live_blocks, before.classes[1].live_blocks);
    ck_assert_uint_eq(after.classes[1].freed_total - before.classes[1].freed_total, SMALL);
    ck_assert_uint_eq(after.system_live_blocks, before.system_live_blocks);
    ck_assert_uint_eq(after.system_live_bytes, before.system_live_bytes);
    ck_assert_uint_eq(after.system_freed_total - before.system_freed_total, LARGE);
    ck_assert_uint_eq(after.thread_heaps, 1);
}
END_TEST

/* The text report names every summary figure of the table, by its label. */
START_TEST(test_text_has_every_label)
{
    static captured_t c;
    ck_assert_int_eq(pm_stats_print_to(capture, &c, PM_STATS_TEXT), 0);
#define CHECK_LABEL(name, kind, label) \
    ck_assert_msg(strstr(c.text, label) != NULL, "no '%s' in:\n%s", label, c.text);
    PM_STATS(CHECK_LABEL)
    ck_assert_ptr_nonnull(strstr(c.text, "size classes"));
    ck_assert_ptr_nonnull(strstr(c.text, "arenas by occupancy"));
}
END_TEST

START_TEST(test_mallinfo2_and_xml)
{
    void *p = pm_malloc(100);
    pm_stats_t s;
    pm_test_stats(&s);
    struct mallinfo2 info = pm_mallinfo2();
    ck_assert_uint_eq(info.arena, s.arena_bytes);
    ck_assert_uint_eq(info.ordblks, s.small_free_blocks);
    ck_assert_uint_eq(info.uordblks, s.small_live_bytes + s.system_live_bytes);
    ck_assert_uint_eq(info.fordblks, s.small_pool_bytes - s.small_live_bytes);
    static char xml[1 << 16];
    size_t n = pm_stats_xml(xml, sizeof xml - 1);
    xml[n] = '\0';
    ck_assert_ptr_nonnull(strstr(xml, "<malloc version=\"1\""));
    ck_assert_ptr_nonnull(strstr(xml, "<size from=\"97\" to=\"112\""));
    ck_assert_ptr_nonnull(strstr(xml, "</malloc>\n"));
    pm_free(p);
}
END_TEST

Suite *make_report_suite(void)
{
    Suite *s = suite_create("report");
    TCase *tc = tcase_create("report");
    tcase_add_test(tc, test_json_has_every_field);
    tcase_add_test(tc, test_counters_exact);
    tcase_add_test(tc, test_text_has_every_label);
    tcase_add_test(tc, test_mallinfo2_and_xml);
    suite_add_tcase(s, tc);
    return s;
}
