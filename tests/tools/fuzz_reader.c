/* fuzz_reader.c — a libFuzzer target for the poolmalloc command's reader
 * and everything that prints what it read: any bytes as a stats file, then
 * every choice of snapshot, the analysis, the text, JSON and HTML reports
 * (allocation sites included, their frames parsed by a resolver that is
 * never run: no child, no file opened) and the diff, written to /dev/null;
 * then the same bytes as addr2line's output and as an ELF image, the other
 * untrusted inputs of symbols.c. It must never crash, hang, leak past
 * the input, or trip ASan/UBSan. Built three ways (tests/tools/CMakeLists.txt):
 * with clang -fsanitize=fuzzer (fuzz.sh), and with fuzz_replay.c's main,
 * which replays the corpus and a deterministic mutation loop under CTest. */
#include "pmtool.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The bytes as `addr2line -a -f -i` output, asked about the addresses
 * its lines name (and one it does not). */
static void fuzz_addr2line(const uint8_t *data, size_t size)
{
    uint64_t asked[9];
    size_t n = 0;
    for (size_t i = 0; i + 2 < size && n < 8; i++)
        if ((i == 0 || data[i - 1] == '\n') && data[i] == '0' && data[i + 1] == 'x')
            asked[n++] = strtoull((const char *)data + i, NULL, 16); /* stops at a non-digit */
    asked[n++] = 0x1234;
    pmt_resolved_t results[9];
    memset(results, 0, sizeof results);
    pmt_addr2line_parse((const char *)data, size, asked, n, results);
    for (size_t i = 0; i < n; i++)
        pmt_resolved_clear(&results[i]);
}

static FILE *fuzz_sink(void)
{
    static FILE *sink;
    if (sink == NULL)
        sink = fopen("/dev/null", "w");
    return sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* fmemopen refuses a zero-length buffer on older glibc. */
    static const char nothing[1];
    FILE *in = size > 0 ? fmemopen((void *)data, size, "r") : fmemopen((void *)nothing, 1, "r");
    if (in == NULL)
        return 0;
    if (size == 0)
        getc(in); /* at end of file: the empty-file case */
    pmt_file_t file;
    pmt_read_stream(in, "fuzz.jsonl", &file);
    fclose(in);
    FILE *out = fuzz_sink();
    pmt_print_problems(&file, out);
    static const pmt_at_t ats[] = {
        {PMT_AT_LAST, 0}, {PMT_AT_FIRST, 0}, {PMT_AT_PEAK, 0}, {PMT_AT_SEQ, 2}};
    pmt_series_t first = {0};
    int have_first = 0;
    char error[512];
    for (size_t k = 0; k < sizeof ats / sizeof ats[0]; k++) {
        pmt_series_t series;
        if (pmt_select(&file, 0, 0, ats[k], &series, error, sizeof error) != 0) {
            pmt_report_json(&file, NULL, NULL, out);
            continue;
        }
        pmt_analysis_t *a = malloc(sizeof *a);
        if (a == NULL)
            abort();
        pmt_analyze(&series, a);
        pmt_report_text(&series, a, out);
        /* Frames parsed and looked up, never resolved (pmt_symbols_run
         * would look for files and start addr2line). */
        pmt_symbols_t *symbols = k % 2 ? pmt_symbols_new(NULL, 0) : NULL;
        const pmt_site_table_t *tables[] = {&a->by_live, &a->by_alloc, &a->leaks};
        for (size_t t = 0; t < 3 && symbols; t++)
            for (size_t i = 0; i < tables[t]->rows; i++)
                pmt_symbols_want(symbols, tables[t]->row[i].site->stack);
        a->symbols = symbols;
        pmt_report_text(&series, a, out);
        pmt_report_json(&file, &series, a, out);
        pmt_report_html(&series, a, out);
        pmt_symbols_free(symbols);
        free(a);
        if (!have_first) {
            first = series;
            have_first = 1;
        } else {
            pmt_diff_text(&first, &series, out);
            pmt_diff_json(&series, &first, out);
            pmt_series_free(&series);
        }
    }
    /* The pid of the first snapshot, chosen by pid (another code path):
     * its last program, its first, its second. */
    for (size_t run = 0; run < 3 && file.count > 0; run++) {
        pmt_series_t by_pid;
        pmt_at_t last = {PMT_AT_LAST, 0};
        if (pmt_select(&file, file.snap[0].pid > 0 ? file.snap[0].pid : 1, run, last, &by_pid,
                       error, sizeof error) == 0)
            pmt_series_free(&by_pid);
    }
    if (have_first)
        pmt_series_free(&first);
    pmt_file_free(&file);
    fuzz_addr2line(data, size);
    uint64_t vaddr;
    pmt_elf_place(data, size, "main", 0x29, 0x555555555295, &vaddr);
    pmt_elf_place(data, size, NULL, 0x1219, 0x555555555219, &vaddr);
    fflush(out);
    return 0;
}
