/* symbols.c — owns turning the profile's frames into function, file and
 * line. A frame names its module by basename ("prog!main+0x4e",
 * "libc.so.6+0x2724a"); this file finds a file of that name on this
 * machine, checks it is the build that ran, computes where the frame is in
 * it, and asks addr2line (binutils) — one child per module for all of its
 * frames, with a time limit — for function, file:line and inlining.
 *
 *   where the frame is: "module!symbol+0xoff": the symbol's value in the
 *   module's dynamic symbol table (what dladdr used) + off; "module+0xoff":
 *   off from the module's first loadable segment (dladdr's dli_fbase) —
 *   both the return address; addr2line is asked about the byte before it,
 *   the call. A file is the build that ran only if, for every symbol frame,
 *   that address is in an executable segment and the recorded runtime
 *   address minus it (the load bias) is a multiple of the page size.
 *
 * Never trusts what it reads: the ELF file is mapped read-only and every
 * offset in it is checked against its size; addr2line's output is parsed
 * line by line and matched to the addresses asked. Never waits for ever
 * (the child is killed at the deadline), never lets addr2line reach the
 * network (DEBUGINFOD_URLS is unset for it), and never fails: a frame it
 * cannot resolve is shown as recorded, and notes say why. */
#include "pmtool.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PMT_MULTIARCH
#define PMT_MULTIARCH "x86_64-linux-gnu"
#endif

extern char **environ;

enum {
    SYMBOLS_PAGE = 4096,              /* load biases are multiples of it */
    SYMBOLS_BATCH = 512,              /* addresses per addr2line run */
    SYMBOLS_OUTPUT_MAX = 16 << 20,    /* what is read of one run's output */
    SYMBOLS_NOTES = 600,
    SYMBOLS_DEPTH_MAX = 64,           /* frames of a stack resolved (the library keeps 32) */
    SYMBOLS_MODULES_MAX = 256,        /* modules looked for; frames of others stay raw */
};
#define SYMBOLS_RUN_SECONDS 10.0 /* one addr2line run at most */

/* ---- ELF ------------------------------------------------------------------- */

typedef struct symbols_elf {
    const unsigned char *image;
    size_t size;
    uint64_t base; /* first PT_LOAD's vaddr, page-aligned down */
    const Elf64_Phdr *phdr;
    size_t phnum;
    /* the dynamic symbols with a value, sorted by name */
    struct symbols_sym {
        const char *name;
        size_t length; /* up to '@' (a version) or the end */
        uint64_t value;
    } *sym;
    size_t syms;
} symbols_elf_t;

static int symbols_sym_cmp(const void *x, const void *y)
{
    const struct symbols_sym *a = x, *b = y;
    size_t n = a->length < b->length ? a->length : b->length;
    int c = memcmp(a->name, b->name, n);
    if (c != 0)
        return c;
    return a->length < b->length ? -1 : a->length > b->length;
}

/* Whether [offset, offset + count * size) lies in the image. */
static int symbols_in(const symbols_elf_t *e, uint64_t offset, uint64_t count, uint64_t size)
{
    if (size != 0 && count > UINT64_MAX / size)
        return 0;
    uint64_t bytes = count * size;
    return offset <= e->size && bytes <= e->size - offset;
}

static void symbols_elf_close(symbols_elf_t *e)
{
    free(e->sym);
    e->sym = NULL;
    e->syms = 0;
}

/* Reads what placing frames needs. Returns 0, or -1 if the image is not a
 * 64-bit ELF file of this machine's byte order with loadable segments. */
static int symbols_elf_open(const void *image, size_t size, symbols_elf_t *e)
{
    memset(e, 0, sizeof *e);
    e->image = image;
    e->size = size;
    if (size < sizeof(Elf64_Ehdr))
        return -1;
    Elf64_Ehdr h;
    memcpy(&h, image, sizeof h);
    if (memcmp(h.e_ident, ELFMAG, SELFMAG) != 0 || h.e_ident[EI_CLASS] != ELFCLASS64 ||
        h.e_ident[EI_DATA] != (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? ELFDATA2LSB
                                                                          : ELFDATA2MSB))
        return -1;
    if (h.e_phentsize != sizeof(Elf64_Phdr) || h.e_phoff % 8 != 0 ||
        !symbols_in(e, h.e_phoff, h.e_phnum, sizeof(Elf64_Phdr)))
        return -1;
    e->phdr = (const Elf64_Phdr *)(e->image + h.e_phoff);
    e->phnum = h.e_phnum;
    int loads = 0;
    for (size_t i = 0; i < e->phnum; i++)
        if (e->phdr[i].p_type == PT_LOAD && loads++ == 0)
            e->base = e->phdr[i].p_vaddr & ~(uint64_t)(SYMBOLS_PAGE - 1);
    if (loads == 0)
        return -1;
    /* The dynamic symbol table, through the section headers. */
    if (h.e_shentsize != sizeof(Elf64_Shdr) || h.e_shoff % 8 != 0 ||
        !symbols_in(e, h.e_shoff, h.e_shnum, sizeof(Elf64_Shdr)))
        return 0; /* no sections: only module+0xoff frames can be placed */
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(e->image + h.e_shoff);
    for (size_t i = 0; i < h.e_shnum; i++) {
        if (sh[i].sh_type != SHT_DYNSYM || sh[i].sh_entsize != sizeof(Elf64_Sym) ||
            sh[i].sh_offset % 8 != 0 || sh[i].sh_link >= h.e_shnum ||
            !symbols_in(e, sh[i].sh_offset, sh[i].sh_size / sizeof(Elf64_Sym), sizeof(Elf64_Sym)))
            continue;
        const Elf64_Shdr *strtab = &sh[sh[i].sh_link];
        if (!symbols_in(e, strtab->sh_offset, strtab->sh_size, 1) || strtab->sh_size == 0)
            continue;
        const char *strings = (const char *)e->image + strtab->sh_offset;
        const Elf64_Sym *sym = (const Elf64_Sym *)(e->image + sh[i].sh_offset);
        size_t n = sh[i].sh_size / sizeof(Elf64_Sym);
        e->sym = pmt_xrealloc(e->sym, (e->syms + n) * sizeof *e->sym);
        for (size_t k = 0; k < n; k++) {
            if (sym[k].st_shndx == SHN_UNDEF || sym[k].st_name >= strtab->sh_size)
                continue;
            const char *name = strings + sym[k].st_name;
            size_t room = strtab->sh_size - sym[k].st_name;
            const char *end = memchr(name, '\0', room);
            if (end == NULL || end == name)
                continue;
            struct symbols_sym *s = &e->sym[e->syms++];
            s->name = name;
            s->length = strcspn(name, "@");
            s->value = sym[k].st_value;
        }
    }
    if (e->syms > 1)
        qsort(e->sym, e->syms, sizeof *e->sym, symbols_sym_cmp);
    return 0;
}

/* Whether the byte before the return address vaddr is in an executable
 * segment. */
static int symbols_executable(const symbols_elf_t *e, uint64_t vaddr)
{
    if (vaddr == 0)
        return 0;
    for (size_t i = 0; i < e->phnum; i++) {
        const Elf64_Phdr *p = &e->phdr[i];
        if (p->p_type == PT_LOAD && (p->p_flags & PF_X) && vaddr - 1 >= p->p_vaddr &&
            vaddr - 1 - p->p_vaddr < p->p_memsz)
            return 1;
    }
    return 0;
}

/* The return address's vaddr in the file: 0 placed, 1 not (no such symbol,
 * or not at a page-aligned bias: another build). */
static int symbols_elf_place_in(const symbols_elf_t *e, const char *symbol, uint64_t offset,
                                uint64_t address, uint64_t *vaddr)
{
    if (symbol == NULL) {
        *vaddr = e->base + offset;
        return symbols_executable(e, *vaddr) ? 0 : 1;
    }
    struct symbols_sym key = {.name = symbol, .length = strlen(symbol)};
    if (e->syms == 0)
        return 1;
    struct symbols_sym *hit = bsearch(&key, e->sym, e->syms, sizeof *e->sym, symbols_sym_cmp);
    if (hit == NULL)
        return 1;
    /* Several versions of one name (memcpy@GLIBC_2.2.5, memcpy@@GLIBC_2.14):
     * the one at a page-aligned bias. */
    while (hit > e->sym && symbols_sym_cmp(hit - 1, &key) == 0)
        hit--;
    for (; hit < e->sym + e->syms && symbols_sym_cmp(hit, &key) == 0; hit++) {
        uint64_t v = hit->value + offset;
        if ((address - v) % SYMBOLS_PAGE == 0 && symbols_executable(e, v)) {
            *vaddr = v;
            return 0;
        }
    }
    return 1;
}

int pmt_elf_place(const void *image, size_t size, const char *symbol, uint64_t offset,
                  uint64_t address, uint64_t *vaddr)
{
    /* The headers are read in place: an aligned copy (a mapped file is). */
    void *copy = pmt_xrealloc(NULL, size);
    memcpy(copy, image, size);
    symbols_elf_t e;
    int placed = -1;
    if (symbols_elf_open(copy, size, &e) == 0)
        placed = symbols_elf_place_in(&e, symbol, offset, address, vaddr);
    symbols_elf_close(&e);
    free(copy);
    return placed;
}

/* ---- addr2line's output ------------------------------------------------------ */

void pmt_resolved_clear(pmt_resolved_t *r)
{
    for (size_t i = 0; i < r->locs; i++) {
        free(r->loc[i].function);
        free(r->loc[i].file);
    }
    free(r->loc);
    r->loc = NULL;
    r->locs = 0;
}

static char *symbols_strndup(const char *s, size_t n)
{
    char *copy = strndup(s, n);
    if (copy == NULL)
        pmt_out_of_memory();
    for (char *c = copy; *c; c++) /* printable, as the frames are */
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    return copy;
}

/* "0x" and hex digits, the whole line. */
static int symbols_address_line(const char *s, size_t n, uint64_t *out)
{
    if (n < 3 || n > 18 || s[0] != '0' || s[1] != 'x')
        return 0;
    uint64_t v = 0;
    for (size_t i = 2; i < n; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return 0;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 1;
}

/* "FILE:LINE", "FILE:LINE (discriminator N)", "??:0", "??:?". */
static void symbols_location(pmt_location_t *l, const char *s, size_t n)
{
    const char *paren = memmem(s, n, " (discriminator", 15);
    if (paren != NULL)
        n = (size_t)(paren - s);
    const char *colon = NULL;
    for (size_t i = n; i > 0; i--)
        if (s[i - 1] == ':') {
            colon = s + i - 1;
            break;
        }
    size_t file_length = colon ? (size_t)(colon - s) : n;
    if (file_length > 0 && !(file_length == 2 && s[0] == '?' && s[1] == '?'))
        l->file = symbols_strndup(s, file_length);
    if (colon != NULL) {
        unsigned long line = 0;
        const char *p = colon + 1;
        for (; p < s + n && *p >= '0' && *p <= '9' && line < 100000000; p++)
            line = line * 10 + (unsigned long)(*p - '0');
        l->line = (unsigned)line;
    }
}

size_t pmt_addr2line_parse(const char *text, size_t length, const uint64_t *addresses,
                           size_t count, pmt_resolved_t *results)
{
    size_t found = 0;
    pmt_resolved_t *r = NULL;
    int want_location = 0;
    const char *end = text + length;
    for (const char *p = text; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
        const char *line = p;
        p = eol ? eol + 1 : end;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        uint64_t address;
        if (!want_location && symbols_address_line(line, n, &address)) {
            /* The next address asked: addr2line answers in order. */
            r = NULL;
            if (found < count && addresses[found] == address)
                r = &results[found];
            found++;
            continue;
        }
        if (r == NULL)
            continue; /* before the first address, or one not asked */
        if (!want_location) {
            if (r->locs >= 64) { /* inlined 64 deep: enough */
                r = NULL;
                continue;
            }
            r->loc = pmt_xrealloc(r->loc, (r->locs + 1) * sizeof *r->loc);
            pmt_location_t *l = &r->loc[r->locs++];
            memset(l, 0, sizeof *l);
            if (n > 0 && !(n == 2 && line[0] == '?' && line[1] == '?'))
                l->function = symbols_strndup(line, n);
            want_location = 1;
        } else {
            symbols_location(&r->loc[r->locs - 1], line, n);
            want_location = 0;
        }
    }
    return found < count ? found : count;
}

/* ---- a child with a deadline ---------------------------------------------------- */

static double symbols_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Runs argv (PATH searched) with standard input and error on /dev/null
 * and DEBUGINFOD_URLS unset; collects standard output until it ends or
 * `seconds` pass (then the child is killed). Returns 0 if it exited 0, 1
 * on timeout, -1 if it failed, -2 if it could not be started (errno set);
 * *out (caller frees) holds what it wrote either way. */
static int symbols_spawn(char *const argv[], double seconds, char **out, size_t *length)
{
    *out = NULL;
    *length = 0;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return -1;
    size_t count = 0;
    while (environ[count])
        count++;
    char **envp = pmt_xrealloc(NULL, (count + 1) * sizeof *envp);
    size_t kept = 0;
    for (size_t i = 0; i < count; i++)
        if (strncmp(environ[i], "DEBUGINFOD_URLS=", 16) != 0)
            envp[kept++] = environ[i];
    envp[kept] = NULL;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, pipefd[1], 1);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    /* Its own process group, so a timeout kills whatever it started too. */
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attributes, 0);
    pid_t pid;
    int error = posix_spawnp(&pid, argv[0], &actions, &attributes, argv, envp);
    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
    free(envp);
    close(pipefd[1]);
    if (error != 0) {
        close(pipefd[0]);
        errno = error;
        return -2;
    }
    size_t capacity = 0;
    char *buffer = NULL;
    double deadline = symbols_now() + seconds;
    int timed_out = 0;
    for (;;) {
        double left = deadline - symbols_now();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
        int ready = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0) {
            timed_out = ready == 0;
            break;
        }
        if (*length + 65536 > capacity) {
            if (capacity >= SYMBOLS_OUTPUT_MAX)
                break; /* enough: the rest is not read */
            capacity = capacity ? capacity * 2 : 65536;
            buffer = pmt_xrealloc(buffer, capacity);
        }
        ssize_t got = read(pipefd[0], buffer + *length, capacity - *length);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        *length += (size_t)got;
    }
    close(pipefd[0]);
    if (timed_out)
        kill(-pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    *out = buffer;
    if (timed_out)
        return 1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* ---- the resolver ------------------------------------------------------------ */

typedef struct symbols_module {
    char *name;
    char *path;     /* the file taken, NULL if none */
    int state;      /* MODULE_* */
    size_t frames;  /* asked about */
} symbols_module_t;

enum { MODULE_WANTED, MODULE_FOUND, MODULE_NOT_FOUND, MODULE_MISMATCH };

typedef struct symbols_frame {
    char *text;       /* as recorded: the key */
    uint64_t address; /* the runtime return address recorded with it */
    size_t module;    /* index, or SIZE_MAX for a bare address */
    char *symbol;     /* NULL for module+0xoff */
    uint64_t offset;
    uint64_t vaddr;   /* in the module's file, once placed */
    int placed;
    pmt_resolved_t result;
} symbols_frame_t;

struct pmt_symbols {
    char **path; /* given files and directories, in order */
    size_t paths;
    char *extra_dir;
    symbols_frame_t *frame;
    size_t frames, frame_capacity;
    size_t *slot; /* text -> frame + 1 */
    size_t slots;
    symbols_module_t *module;
    size_t modules;
    double budget; /* seconds left for addr2line */
    int ran, no_addr2line, no_llvm_addr2line, timed_out;
    char notes[SYMBOLS_NOTES];
};

pmt_symbols_t *pmt_symbols_new(const char *extra_dir, double seconds)
{
    pmt_symbols_t *s = pmt_xrealloc(NULL, sizeof *s);
    memset(s, 0, sizeof *s);
    s->budget = seconds;
    if (extra_dir != NULL && (s->extra_dir = strdup(extra_dir)) == NULL)
        pmt_out_of_memory();
    return s;
}

void pmt_symbols_add_path(pmt_symbols_t *s, const char *file_or_dir)
{
    s->path = pmt_xrealloc(s->path, (s->paths + 1) * sizeof *s->path);
    if ((s->path[s->paths++] = strdup(file_or_dir)) == NULL)
        pmt_out_of_memory();
}

void pmt_symbols_free(pmt_symbols_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->paths; i++)
        free(s->path[i]);
    free(s->path);
    free(s->extra_dir);
    for (size_t i = 0; i < s->frames; i++) {
        free(s->frame[i].text);
        free(s->frame[i].symbol);
        pmt_resolved_clear(&s->frame[i].result);
    }
    free(s->frame);
    free(s->slot);
    for (size_t i = 0; i < s->modules; i++) {
        free(s->module[i].name);
        free(s->module[i].path);
    }
    free(s->module);
    free(s);
}

static uint64_t symbols_hash(const char *text)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *c = (const unsigned char *)text; *c; c++)
        h = (h ^ *c) * 0x100000001b3ull;
    return h;
}

static size_t *symbols_slot(const pmt_symbols_t *s, const char *text)
{
    size_t i = (size_t)(symbols_hash(text) >> 7) & (s->slots - 1);
    while (s->slot[i] != 0 && strcmp(s->frame[s->slot[i] - 1].text, text) != 0)
        i = (i + 1) & (s->slots - 1);
    return &s->slot[i];
}

static size_t symbols_module_index(pmt_symbols_t *s, const char *name, size_t length)
{
    for (size_t i = 0; i < s->modules; i++)
        if (strlen(s->module[i].name) == length && memcmp(s->module[i].name, name, length) == 0)
            return i;
    if (s->modules >= SYMBOLS_MODULES_MAX)
        return SIZE_MAX;
    s->module = pmt_xrealloc(s->module, (s->modules + 1) * sizeof *s->module);
    symbols_module_t *m = &s->module[s->modules];
    memset(m, 0, sizeof *m);
    m->name = symbols_strndup(name, length);
    return s->modules++;
}

/* "module!symbol+0xoff" or "module+0xoff" into f; 0, or -1 for anything
 * else (a bare "0x..." address: no module to look in). */
static int symbols_parse_frame(pmt_symbols_t *s, symbols_frame_t *f)
{
    const char *text = f->text;
    const char *plus = NULL;
    for (const char *p = strstr(text, "+0x"); p != NULL; p = strstr(p + 1, "+0x"))
        plus = p;
    if (plus == NULL || plus == text)
        return -1;
    uint64_t offset = 0;
    const char *d = plus + 3;
    if (*d == '\0' || strlen(d) > 16)
        return -1;
    for (; *d; d++) {
        int v = *d >= '0' && *d <= '9' ? *d - '0' : *d >= 'a' && *d <= 'f' ? *d - 'a' + 10 : -1;
        if (v < 0)
            return -1;
        offset = offset << 4 | (uint64_t)v;
    }
    const char *bang = memchr(text, '!', (size_t)(plus - text));
    size_t module_length = bang ? (size_t)(bang - text) : (size_t)(plus - text);
    if (module_length == 0 || (bang != NULL && bang + 1 == plus))
        return -1;
    if (memchr(text, '/', module_length) != NULL)
        return -1; /* a basename, always */
    f->module = symbols_module_index(s, text, module_length);
    if (f->module == SIZE_MAX)
        return -1;
    f->offset = offset;
    if (bang != NULL)
        f->symbol = symbols_strndup(bang + 1, (size_t)(plus - bang - 1));
    return 0;
}

void pmt_symbols_want(pmt_symbols_t *s, const pmt_stack_t *stack)
{
    if (s == NULL || stack == NULL)
        return;
    for (size_t i = 0; i < stack->depth && i < SYMBOLS_DEPTH_MAX; i++) {
        if (2 * (s->frames + 1) > s->slots) {
            size_t slots = s->slots ? s->slots * 2 : 256;
            free(s->slot);
            s->slot = pmt_xrealloc(NULL, slots * sizeof *s->slot);
            memset(s->slot, 0, slots * sizeof *s->slot);
            s->slots = slots;
            for (size_t k = 0; k < s->frames; k++)
                *symbols_slot(s, s->frame[k].text) = k + 1;
        }
        size_t *slot = symbols_slot(s, stack->frame[i]);
        if (*slot != 0)
            continue;
        if (s->frames == s->frame_capacity) {
            s->frame_capacity = s->frame_capacity ? s->frame_capacity * 2 : 64;
            s->frame = pmt_xrealloc(s->frame, s->frame_capacity * sizeof *s->frame);
        }
        symbols_frame_t *f = &s->frame[s->frames];
        memset(f, 0, sizeof *f);
        f->text = symbols_strndup(stack->frame[i], strlen(stack->frame[i]));
        f->address = stack->address[i];
        f->module = SIZE_MAX;
        if (symbols_parse_frame(s, f) != 0)
            f->module = SIZE_MAX;
        else
            s->module[f->module].frames++;
        *slot = ++s->frames;
    }
}

/* ---- finding a module ---------------------------------------------------------- */

typedef struct symbols_mapped {
    void *image;
    size_t size;
} symbols_mapped_t;

static int symbols_map(const char *path, symbols_mapped_t *m)
{
    m->image = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(Elf64_Ehdr)) {
        close(fd);
        return -1;
    }
    m->size = (size_t)st.st_size;
    m->image = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m->image == MAP_FAILED) {
        m->image = NULL;
        return -1;
    }
    return 0;
}

/* Tries path as the file of module index: every frame of the module must
 * be placed. Returns 1 if taken. */
static int symbols_try(pmt_symbols_t *s, size_t index, const char *path)
{
    symbols_mapped_t m;
    if (symbols_map(path, &m) != 0)
        return 0;
    symbols_elf_t e;
    int ok = symbols_elf_open(m.image, m.size, &e) == 0;
    size_t placed = 0, symbol_frames = 0;
    for (size_t i = 0; ok && i < s->frames; i++) {
        symbols_frame_t *f = &s->frame[i];
        if (f->module != index)
            continue;
        symbol_frames += f->symbol != NULL;
        f->placed = symbols_elf_place_in(&e, f->symbol, f->offset, f->address, &f->vaddr) == 0;
        if (!f->placed && f->symbol != NULL)
            ok = 0; /* a symbol that is not there, or not where it ran: another build */
        placed += (size_t)f->placed;
    }
    symbols_elf_close(&e);
    munmap(m.image, m.size);
    if (ok && placed > 0) {
        s->module[index].path = realpath(path, NULL);
        if (s->module[index].path == NULL && (s->module[index].path = strdup(path)) == NULL)
            pmt_out_of_memory();
        return 1;
    }
    for (size_t i = 0; i < s->frames; i++)
        if (s->frame[i].module == index)
            s->frame[i].placed = 0;
    if (symbol_frames > 0 || placed == 0)
        s->module[index].state = MODULE_MISMATCH; /* found one, not the one that ran */
    return 0;
}

static int symbols_try_in(pmt_symbols_t *s, size_t index, const char *dir, int executable)
{
    if (dir == NULL || *dir == '\0')
        return 0;
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s", dir, s->module[index].name);
    if (n < 0 || (size_t)n >= sizeof path)
        return 0;
    if (executable && access(path, X_OK) != 0)
        return 0;
    return symbols_try(s, index, path);
}

/* Each directory of a colon-separated list. */
static int symbols_try_list(pmt_symbols_t *s, size_t index, const char *list, int executable)
{
    if (list == NULL)
        return 0;
    char *copy = strdup(list);
    if (copy == NULL)
        pmt_out_of_memory();
    int found = 0;
    for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir && !found;
         dir = strtok_r(NULL, ":", &save))
        found = symbols_try_in(s, index, dir, executable);
    free(copy);
    return found;
}

static void symbols_find_module(pmt_symbols_t *s, size_t index)
{
    symbols_module_t *m = &s->module[index];
    m->state = MODULE_NOT_FOUND;
    for (size_t i = 0; i < s->paths; i++) {
        struct stat st;
        if (stat(s->path[i], &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (symbols_try_in(s, index, s->path[i], 0))
                goto found;
            continue;
        }
        /* A file: its name, or the name of what a symlink points to. */
        const char *base = strrchr(s->path[i], '/');
        base = base ? base + 1 : s->path[i];
        char *real = realpath(s->path[i], NULL);
        const char *real_base = real ? strrchr(real, '/') : NULL;
        int named = strcmp(base, m->name) == 0 || (real_base && strcmp(real_base + 1, m->name) == 0);
        free(real);
        if (named && symbols_try(s, index, s->path[i]))
            goto found;
    }
    if (symbols_try_list(s, index, getenv("PATH"), 1) ||
        symbols_try_list(s, index, getenv("LD_LIBRARY_PATH"), 0) ||
        symbols_try_in(s, index, s->extra_dir, 0))
        goto found;
    static const char *const system_dirs[] = {
        "/lib/" PMT_MULTIARCH, "/usr/lib/" PMT_MULTIARCH, "/lib64", "/usr/lib64", "/lib",
        "/usr/lib", "/usr/local/lib", "/usr/local/lib/" PMT_MULTIARCH, NULL};
    for (const char *const *d = system_dirs; *d; d++)
        if (symbols_try_in(s, index, *d, 0))
            goto found;
    return;
found:
    m->state = MODULE_FOUND;
}

/* ---- running addr2line ------------------------------------------------------------ */

static void symbols_note(pmt_symbols_t *s, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void symbols_note(pmt_symbols_t *s, const char *format, ...)
{
    size_t used = strlen(s->notes);
    if (used + 8 >= sizeof s->notes)
        return;
    if (used > 0) {
        memcpy(s->notes + used, "; ", 3);
        used += 2;
    }
    va_list args;
    va_start(args, format);
    vsnprintf(s->notes + used, sizeof s->notes - used, format, args);
    va_end(args);
}

/* Whether addr2line named a location's file "<artificial>": binutils 2.40
 * reads the file of code that GCC compiled with -flto (DWARF 5) as the
 * LTO unit's name, with the right line; llvm-addr2line reads the file. */
static int symbols_lto_unit_named(const pmt_resolved_t *results, size_t n)
{
    static const char unit[] = "<artificial>";
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < results[i].locs; k++) {
            const char *file = results[i].loc[k].file;
            size_t length = file ? strlen(file) : 0;
            if (length >= sizeof unit - 1 && strcmp(file + length - (sizeof unit - 1), unit) == 0)
                return 1;
        }
    return 0;
}

/* One run of argv (addr2line or llvm-addr2line: the same options) on the
 * addresses asked, into results. Returns 0 with results filled (in part if
 * it was stopped at the time limit: s->timed_out, noted), -2 when it could
 * not be started (errno says why; the caller says so), or -1 when it failed
 * or no time was left (noted). */
static int symbols_ask(pmt_symbols_t *s, size_t index, char **argv, const uint64_t *asked,
                       size_t n, pmt_resolved_t *results)
{
    double seconds = s->budget < SYMBOLS_RUN_SECONDS ? s->budget : SYMBOLS_RUN_SECONDS;
    if (seconds <= 0) {
        s->timed_out = 1;
        symbols_note(s, "no time left for %s on %s", argv[0], s->module[index].name);
        return -1;
    }
    double start = symbols_now();
    char *output;
    size_t length;
    int status = symbols_spawn(argv, seconds, &output, &length);
    s->budget -= symbols_now() - start;
    if (status == -2)
        return -2; /* it did not start: errno says why */
    if (status < 0 && length == 0) {
        symbols_note(s, "%s failed on %s", argv[0], s->module[index].path);
        free(output);
        return -1;
    }
    if (status == 1) {
        s->timed_out = 1;
        symbols_note(s, "%s took over %g s on %s: stopped", argv[0], seconds,
                     s->module[index].path);
    }
    memset(results, 0, n * sizeof *results);
    pmt_addr2line_parse(output ? output : "", length, asked, n, results);
    free(output);
    return 0;
}

/* addr2line on the placed frames of module index, SYMBOLS_BATCH at a time;
 * llvm-addr2line again on a batch whose files addr2line named
 * "<artificial>" (symbols_lto_unit_named). */
static void symbols_addr2line(pmt_symbols_t *s, size_t index)
{
    size_t *which = pmt_xrealloc(NULL, SYMBOLS_BATCH * sizeof *which);
    uint64_t *asked = pmt_xrealloc(NULL, SYMBOLS_BATCH * sizeof *asked);
    pmt_resolved_t *results = pmt_xrealloc(NULL, SYMBOLS_BATCH * sizeof *results);
    pmt_resolved_t *again = pmt_xrealloc(NULL, SYMBOLS_BATCH * sizeof *again);
    char (*hex)[24] = pmt_xrealloc(NULL, SYMBOLS_BATCH * sizeof *hex);
    char **argv = pmt_xrealloc(NULL, (SYMBOLS_BATCH + 9) * sizeof *argv);
    size_t next = 0;
    while (!s->no_addr2line && !s->timed_out) {
        size_t n = 0;
        for (; next < s->frames && n < SYMBOLS_BATCH; next++) {
            const symbols_frame_t *f = &s->frame[next];
            if (f->module == index && f->placed)
                which[n++] = next;
        }
        if (n == 0)
            break;
        size_t a = 0;
        argv[a++] = "addr2line";
        argv[a++] = "-a"; /* each answer after its address: answers are matched */
        argv[a++] = "-f";
        argv[a++] = "-C";
        argv[a++] = "-i";
        argv[a++] = "-e";
        argv[a++] = s->module[index].path;
        for (size_t i = 0; i < n; i++) {
            asked[i] = s->frame[which[i]].vaddr - 1; /* the call, not the return */
            snprintf(hex[i], sizeof hex[i], "0x%" PRIx64, asked[i]);
            argv[a++] = hex[i];
        }
        argv[a] = NULL;
        int asked_status = symbols_ask(s, index, argv, asked, n, results);
        if (asked_status == -2) {
            s->no_addr2line = 1;
            symbols_note(s, "cannot run addr2line (%s; Debian: binutils): frames are shown as "
                            "recorded",
                         strerror(errno));
        }
        if (asked_status != 0)
            break;
        if (!s->no_llvm_addr2line && !s->timed_out && symbols_lto_unit_named(results, n)) {
            argv[0] = "llvm-addr2line";
            int status = symbols_ask(s, index, argv, asked, n, again);
            if (status == 0) {
                for (size_t i = 0; i < n; i++) {
                    /* Unanswered (stopped) or without a file: addr2line's stands. */
                    if (again[i].locs == 0 || again[i].loc[0].file == NULL) {
                        pmt_resolved_clear(&again[i]);
                        continue;
                    }
                    pmt_resolved_clear(&results[i]);
                    results[i] = again[i];
                }
            } else if (status == -2) {
                s->no_llvm_addr2line = 1;
                symbols_note(s, "addr2line names the file of code built with -flto "
                                "\"<artificial>\"; llvm-addr2line (Debian: llvm) would name it");
            }
        }
        for (size_t i = 0; i < n; i++) {
            symbols_frame_t *f = &s->frame[which[i]];
            pmt_resolved_clear(&f->result);
            f->result = results[i];
            f->result.module_path = s->module[index].path;
        }
    }
    free(which);
    free(asked);
    free(results);
    free(again);
    free(hex);
    free(argv);
}

void pmt_symbols_run(pmt_symbols_t *s)
{
    if (s == NULL || s->ran)
        return;
    s->ran = 1;
    char missing[240] = "", mismatched[240] = "";
    for (size_t m = 0; m < s->modules; m++) {
        symbols_find_module(s, m);
        char *list = s->module[m].state == MODULE_MISMATCH ? mismatched
                     : s->module[m].state == MODULE_NOT_FOUND ? missing
                                                               : NULL;
        if (list != NULL) {
            size_t used = strlen(list);
            snprintf(list + used, sizeof missing - used, "%s%s", used ? ", " : "",
                     s->module[m].name);
            continue;
        }
        symbols_addr2line(s, m);
    }
    if (missing[0])
        symbols_note(s, "not found on this machine: %s (name the file or its directory with "
                        "--module)",
                     missing);
    if (mismatched[0])
        symbols_note(s, "found, but not the build that ran: %s", mismatched);
}

const pmt_resolved_t *pmt_symbols_find(const pmt_symbols_t *s, const char *frame)
{
    if (s == NULL || s->slots == 0)
        return NULL;
    size_t slot = *symbols_slot(s, frame);
    if (slot == 0)
        return NULL;
    const pmt_resolved_t *r = &s->frame[slot - 1].result;
    if (r->locs == 0 || (r->loc[0].function == NULL && r->loc[0].file == NULL))
        return NULL;
    return r;
}

const char *pmt_symbols_notes(const pmt_symbols_t *s)
{
    return s == NULL ? "" : s->notes;
}

/* ---- frames for people -------------------------------------------------------- */

enum { FRAME_SLOTS = 16, FRAME_SLOT_SIZE = 1024 };

static char *symbols_frame_slot(void)
{
    static char slots[FRAME_SLOTS][FRAME_SLOT_SIZE];
    static unsigned next;
    return slots[next++ % FRAME_SLOTS];
}

/* Whether frame is "...!function+0x..." (dladdr named the function too). */
static int symbols_names(const char *frame, const char *function)
{
    const char *bang = strchr(frame, '!');
    if (bang == NULL || function == NULL)
        return 0;
    size_t n = strlen(function);
    return strncmp(bang + 1, function, n) == 0 && strncmp(bang + 1 + n, "+0x", 3) == 0;
}

const char *pmt_frame_where(const pmt_symbols_t *s, const char *frame)
{
    char *out = symbols_frame_slot();
    out[0] = '\0';
    const pmt_resolved_t *r = pmt_symbols_find(s, frame);
    if (r == NULL)
        return out;
    const pmt_location_t *l = &r->loc[0];
    int n = 0;
    if (l->function != NULL && !symbols_names(frame, l->function))
        n = snprintf(out, FRAME_SLOT_SIZE, " in %s", l->function);
    if (n < 0 || n >= FRAME_SLOT_SIZE || l->file == NULL)
        return out;
    if (l->line > 0)
        snprintf(out + n, FRAME_SLOT_SIZE - (size_t)n, " at %s:%u", l->file, l->line);
    else
        snprintf(out + n, FRAME_SLOT_SIZE - (size_t)n, " at %s", l->file);
    return out;
}

const char *pmt_frame_label(const pmt_symbols_t *s, const char *frame)
{
    char *out = symbols_frame_slot();
    const pmt_resolved_t *r = pmt_symbols_find(s, frame);
    const char *bang = strchr(frame, '!');
    const char *name = bang ? bang + 1 : frame;
    if (r == NULL) {
        snprintf(out, FRAME_SLOT_SIZE, "%s", name);
        return out;
    }
    const pmt_location_t *l = &r->loc[0];
    const char *file = l->file ? strrchr(l->file, '/') : NULL;
    file = file ? file + 1 : l->file;
    int n = l->function ? snprintf(out, FRAME_SLOT_SIZE, "%s", l->function)
                        : snprintf(out, FRAME_SLOT_SIZE, "%.*s", (int)strcspn(name, "+"), name);
    if (n >= 0 && n < FRAME_SLOT_SIZE && file != NULL) {
        if (l->line > 0)
            snprintf(out + n, FRAME_SLOT_SIZE - (size_t)n, " (%s:%u)", file, l->line);
        else
            snprintf(out + n, FRAME_SLOT_SIZE - (size_t)n, " (%s)", file);
    }
    return out;
}

size_t pmt_site_label_frame(const pmt_stack_t *stack)
{
    size_t i = 0;
    /* operator new, new[] and their nothrow and aligned forms: _Znwm, _Znam, ... */
    while (i + 1 < stack->depth) {
        const char *bang = strchr(stack->frame[i], '!');
        if (bang == NULL || (strncmp(bang + 1, "_Znw", 4) != 0 && strncmp(bang + 1, "_Zna", 4) != 0))
            break;
        i++;
    }
    return i;
}
