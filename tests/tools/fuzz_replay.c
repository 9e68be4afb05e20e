/* fuzz_replay.c — runs fuzz_reader.c's target without libFuzzer: every
 * file of a corpus directory as it is, then a deterministic mutation loop
 * over them (a fixed seed, so a failure replays exactly), for CTest and any
 * compiler. Usage: fuzz_replay CORPUS_DIR [ITERATIONS [SEED]]. On a crash,
 * the input being tried is in fuzz-replay-crash.bin in the current
 * directory (written before each run of the target). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { REPLAY_INPUT_MAX = 1 << 18, REPLAY_SEEDS_MAX = 256 };

static uint64_t state;

static uint64_t next(void)
{
    /* xorshift64*: small, deterministic, good enough for mutations */
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 2685821657736338717ull;
}

static size_t below(size_t n)
{
    return n == 0 ? 0 : (size_t)(next() % n);
}

typedef struct seed {
    uint8_t *data;
    size_t size;
} seed_t;

static const char *const tokens[] = {
    "{", "}", "[", "]", ",", ":", "\"", "\n", "0", "-1", "1e308", "-0", "0.5", "1.5", "null",
    "true", "\"schema\":1", "\"schema\":2", "\"schema\":0", "\"pid\":", "\"seq\":", "\"classes\":",
    "\"arena_occupancy\":", "9223372036854775807", "18446744073709551616", "4294967296",
    "\"reason\":\"exit\"", "\"reason\":\"interval\"", "\"uptime_ms\":", "\\u0000", "\xff\xfe",
    "poolmalloc 0.1.0 stats: pid 1, snapshot 1 (exit)\n", "{\"schema\":1}\n",
    "\"profile\":", "\"top_live\":", "\"top_allocated\":", "\"leaks\":[]", "\"frames\":",
    "\"addresses\":", "\"0x7f00000000\"", "\"m!f+0x10\"", "\"m+0x10\"", "+0x", "!", "??:0\n",
    "0x0000000000001219\n", " (discriminator 2)"};

/* One mutation of in (size n) into out; returns the new size. */
static size_t mutate(const uint8_t *in, size_t n, uint8_t *out)
{
    memcpy(out, in, n);
    int rounds = 1 + (int)below(4);
    for (int r = 0; r < rounds; r++) {
        size_t at = below(n + 1);
        switch (below(9)) {
        case 0: /* flip a bit */
            if (n) out[below(n)] ^= (uint8_t)(1u << below(8));
            break;
        case 1: /* a random byte */
            if (n) out[below(n)] = (uint8_t)next();
            break;
        case 2: { /* delete a range */
            size_t len = below(n - at + 1);
            if (len > 64 && below(2)) len = below(64);
            memmove(out + at, out + at + len, n - at - len);
            n -= len;
            break;
        }
        case 3: { /* insert a token */
            const char *t = tokens[below(sizeof tokens / sizeof tokens[0])];
            size_t len = strlen(t);
            if (n + len > REPLAY_INPUT_MAX) break;
            memmove(out + at + len, out + at, n - at);
            memcpy(out + at, t, len);
            n += len;
            break;
        }
        case 4: /* cut the end (a killed writer) */
            n = at;
            break;
        case 5: { /* duplicate a range (another record, another line): the move
                   * leaves the range in place and a copy after it */
            size_t len = below(n - at + 1);
            if (n + len > REPLAY_INPUT_MAX) break;
            memmove(out + at + len, out + at, n - at);
            n += len;
            break;
        }
        case 6: { /* change a digit run into another number */
            size_t i = below(n);
            while (i < n && (out[i] < '0' || out[i] > '9')) i++;
            if (i < n) out[i] = (uint8_t)('0' + below(10));
            break;
        }
        case 7: { /* a number made huge */
            size_t i = below(n);
            while (i < n && (out[i] < '0' || out[i] > '9')) i++;
            const char *t = "99999999999999999999";
            size_t len = strlen(t);
            if (i < n && n + len <= REPLAY_INPUT_MAX) {
                memmove(out + i + len, out + i, n - i);
                memcpy(out + i, t, len);
                n += len;
            }
            break;
        }
        default: /* replace a byte with a structural one */
            if (n) out[below(n)] = (uint8_t)"{}[],:\"\n0-"[below(11)];
            break;
        }
    }
    return n;
}

static void run(const uint8_t *data, size_t size)
{
    FILE *f = fopen("fuzz-replay-crash.bin", "wb");
    if (f) {
        fwrite(data, 1, size, f);
        fclose(f);
    }
    LLVMFuzzerTestOneInput(data, size);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fuzz_replay CORPUS_DIR [ITERATIONS [SEED]]\n");
        return 2;
    }
    long iterations = argc > 2 ? atol(argv[2]) : 2000;
    state = argc > 3 ? strtoull(argv[3], NULL, 10) : 0x5eed5eedull;
    if (state == 0)
        state = 1;
    static seed_t seeds[REPLAY_SEEDS_MAX];
    size_t count = 0;
    DIR *dir = opendir(argv[1]);
    if (dir == NULL) {
        perror(argv[1]);
        return 2;
    }
    struct dirent *e;
    char **names = NULL;
    size_t nnames = 0;
    while ((e = readdir(dir)) != NULL)
        if (e->d_name[0] != '.') {
            char **grown = realloc(names, (nnames + 1) * sizeof *names);
            if (grown == NULL)
                abort();
            names = grown;
            names[nnames++] = strdup(e->d_name);
        }
    closedir(dir);
    /* Sorted, so the mutation loop is the same on every machine. */
    for (size_t i = 1; i < nnames; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    for (size_t i = 0; i < nnames && count < REPLAY_SEEDS_MAX; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], names[i]);
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            continue;
        seeds[count].data = malloc(REPLAY_INPUT_MAX);
        seeds[count].size = fread(seeds[count].data, 1, REPLAY_INPUT_MAX, f);
        fclose(f);
        run(seeds[count].data, seeds[count].size);
        count++;
    }
    for (size_t i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    run((const uint8_t *)"", 0);
    uint8_t *buffer = malloc(REPLAY_INPUT_MAX);
    for (long i = 0; i < iterations && count > 0; i++) {
        const seed_t *s = &seeds[below(count)];
        size_t n = mutate(s->data, s->size, buffer);
        run(buffer, n);
    }
    remove("fuzz-replay-crash.bin");
    printf("fuzz_replay: %zu corpus files and %ld mutations, no crash\n", count, iterations);
    for (size_t i = 0; i < count; i++)
        free(seeds[i].data);
    free(buffer);
    return 0;
}
