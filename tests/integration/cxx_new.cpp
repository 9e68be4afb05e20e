// cxx_new.cpp — C++'s operator new and delete in every form, for
// cxx_new.sh, run plain and with libpoolmalloc.so preloaded (it never links
// poolmalloc). Its output must not depend on the allocator:
//   forms    each form of new and delete: blocks usable, aligned as asked
//   oom      running out of memory: the new_handler loop, std::bad_alloc,
//            nullptr from the nothrow forms
//   where    the module each form resolves to (differs by design: the
//            script checks it, never compares it)
// Built a second time with -DCXX_NEW_REPLACED, it replaces operator
// new(size_t) and operator delete(void*) with counting versions, as a
// program may: the standard defines new[], the nothrow and the sized forms
// by those two, so they must reach the replacement under poolmalloc too.
#include <dlfcn.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

namespace {

[[noreturn]] void die(const char *what)
{
    std::fprintf(stderr, "cxx_new: %s\n", what);
    std::abort();
}

// Fills a block and reads it back: a block that overlaps another, or is
// not as large as asked, shows up here or in a later form's.
void use(void *p, std::size_t size, std::size_t alignment, const char *form)
{
    if (p == nullptr)
        die(form);
    if (reinterpret_cast<std::uintptr_t>(p) % alignment != 0) {
        std::fprintf(stderr, "cxx_new: %s: %p is not %zu-aligned\n", form, p, alignment);
        std::abort();
    }
    std::memset(p, 0xa5, size);
    const unsigned char *bytes = static_cast<const unsigned char *>(p);
    for (std::size_t i = 0; i < size; i++)
        if (bytes[i] != 0xa5)
            die(form);
}

void forms()
{
    const std::size_t sizes[] = {0, 1, 24, 100, 512, 513, 4000, 100000};
    const std::size_t alignments[] = {8, 32, 64, 256, 4096};
    unsigned done = 0;
    for (std::size_t size : sizes) {
        void *p = ::operator new(size);
        use(p, size, 16, "new");
        ::operator delete(p);
        p = ::operator new[](size);
        use(p, size, 16, "new[]");
        ::operator delete[](p);
        p = ::operator new(size, std::nothrow);
        use(p, size, 16, "new(nothrow)");
        ::operator delete(p, std::nothrow);
        p = ::operator new[](size, std::nothrow);
        use(p, size, 16, "new[](nothrow)");
        ::operator delete[](p, std::nothrow);
        p = ::operator new(size);
        use(p, size, 16, "new, sized delete");
        ::operator delete(p, size);
        p = ::operator new[](size);
        use(p, size, 16, "new[], sized delete[]");
        ::operator delete[](p, size);
        done += 6;
        for (std::size_t alignment : alignments) {
            std::align_val_t al{alignment};
            p = ::operator new(size, al);
            use(p, size, alignment, "aligned new");
            ::operator delete(p, al);
            p = ::operator new[](size, al);
            use(p, size, alignment, "aligned new[]");
            ::operator delete[](p, al);
            p = ::operator new(size, al, std::nothrow);
            use(p, size, alignment, "aligned new(nothrow)");
            ::operator delete(p, al, std::nothrow);
            p = ::operator new[](size, al, std::nothrow);
            use(p, size, alignment, "aligned new[](nothrow)");
            ::operator delete[](p, al, std::nothrow);
            p = ::operator new(size, al);
            use(p, size, alignment, "aligned new, sized delete");
            ::operator delete(p, size, al);
            p = ::operator new[](size, al);
            use(p, size, alignment, "aligned new[], sized delete[]");
            ::operator delete[](p, size, al);
            done += 6;
        }
    }
    // Objects the usual way, freed by the other forms' callers.
    struct alignas(64) Line {
        char bytes[64];
    };
    Line *line = new Line[3];
    use(line, sizeof(Line) * 3, 64, "new Line[3]");
    delete[] line;
    int *one = new int(42);
    if (*one != 42)
        die("new int(42)");
    delete one;
    std::printf("forms: %u new and delete pairs\n", done + 2);
}

#ifndef CXX_NEW_REPLACED
// A size no allocator can serve, unknown to the compiler.
std::size_t huge_size()
{
    volatile std::size_t huge = std::size_t(1) << 62;
    return huge;
}

unsigned handler_calls;

// Gives up on the third call: operator new must then throw.
void give_up_third_time()
{
    if (++handler_calls == 3)
        std::set_new_handler(nullptr);
}

template <typename Allocate> void expect_bad_alloc(const char *form, Allocate allocate)
{
    handler_calls = 0;
    std::set_new_handler(give_up_third_time);
    try {
        void *p = allocate();
        std::printf("%s: returned %s\n", form, p == nullptr ? "nullptr" : "a block");
    } catch (const std::bad_alloc &) {
        std::printf("%s: std::bad_alloc after %u calls of the new_handler\n", form, handler_calls);
    }
    std::set_new_handler(nullptr);
}

void oom()
{
    const std::size_t huge = huge_size();
    const std::align_val_t al{64};
    expect_bad_alloc("new", [&] { return ::operator new(huge); });
    expect_bad_alloc("new[]", [&] { return ::operator new[](huge); });
    expect_bad_alloc("aligned new", [&] { return ::operator new(huge, al); });
    expect_bad_alloc("aligned new[]", [&] { return ::operator new[](huge, al); });
    expect_bad_alloc("new(nothrow)", [&] { return ::operator new(huge, std::nothrow); });
    expect_bad_alloc("new[](nothrow)", [&] { return ::operator new[](huge, std::nothrow); });
    expect_bad_alloc("aligned new(nothrow)",
                     [&] { return ::operator new(huge, al, std::nothrow); });
    expect_bad_alloc("aligned new[](nothrow)",
                     [&] { return ::operator new[](huge, al, std::nothrow); });
    // No handler: straight to std::bad_alloc.
    try {
        ::operator delete(::operator new(huge));
        std::printf("new without a handler: returned\n");
    } catch (const std::bad_alloc &) {
        std::printf("new without a handler: std::bad_alloc\n");
    }
}

template <typename F> void print_where(const char *form, F *function)
{
    Dl_info info;
    const char *module = "?";
    if (dladdr(reinterpret_cast<void *>(function), &info) != 0 && info.dli_fname != nullptr) {
        module = std::strrchr(info.dli_fname, '/');
        module = module != nullptr ? module + 1 : info.dli_fname;
    }
    std::printf("%s %s\n", form, module);
}

void where()
{
    using std::align_val_t;
    using std::nothrow_t;
    using std::size_t;
    print_where<void *(size_t)>("new", &::operator new);
    print_where<void *(size_t)>("new[]", &::operator new[]);
    print_where<void *(size_t, const nothrow_t &) noexcept>("new(nothrow)", &::operator new);
    print_where<void *(size_t, const nothrow_t &) noexcept>("new[](nothrow)", &::operator new[]);
    print_where<void *(size_t, align_val_t)>("aligned-new", &::operator new);
    print_where<void *(size_t, align_val_t)>("aligned-new[]", &::operator new[]);
    print_where<void *(size_t, align_val_t, const nothrow_t &) noexcept>("aligned-new(nothrow)",
                                                                         &::operator new);
    print_where<void *(size_t, align_val_t, const nothrow_t &) noexcept>("aligned-new[](nothrow)",
                                                                         &::operator new[]);
    print_where<void(void *) noexcept>("delete", &::operator delete);
    print_where<void(void *) noexcept>("delete[]", &::operator delete[]);
    print_where<void(void *, size_t) noexcept>("sized-delete", &::operator delete);
    print_where<void(void *, size_t) noexcept>("sized-delete[]", &::operator delete[]);
    print_where<void(void *, const nothrow_t &) noexcept>("delete(nothrow)", &::operator delete);
    print_where<void(void *, const nothrow_t &) noexcept>("delete[](nothrow)",
                                                          &::operator delete[]);
    print_where<void(void *, align_val_t) noexcept>("aligned-delete", &::operator delete);
    print_where<void(void *, align_val_t) noexcept>("aligned-delete[]", &::operator delete[]);
    print_where<void(void *, size_t, align_val_t) noexcept>("aligned-sized-delete",
                                                            &::operator delete);
    print_where<void(void *, size_t, align_val_t) noexcept>("aligned-sized-delete[]",
                                                            &::operator delete[]);
    print_where<void(void *, align_val_t, const nothrow_t &) noexcept>("aligned-delete(nothrow)",
                                                                       &::operator delete);
    print_where<void(void *, align_val_t, const nothrow_t &) noexcept>(
        "aligned-delete[](nothrow)", &::operator delete[]);
}

#endif

} // namespace

#ifdef CXX_NEW_REPLACED
// The program's own operator new(size_t) and operator delete(void*), on
// malloc and free, counting their calls. Out of line, as in a program
// whose replacement lives in another file.
static unsigned replaced_new_calls, replaced_delete_calls;

__attribute__((noinline)) void *operator new(std::size_t size)
{
    replaced_new_calls++;
    void *p = std::malloc(size != 0 ? size : 1);
    if (p == nullptr)
        throw std::bad_alloc();
    return p;
}

__attribute__((noinline)) void operator delete(void *p) noexcept
{
    replaced_delete_calls++;
    std::free(p);
}

int main()
{
    forms();
    // Every unaligned form above reached the two replacements: 6 news and
    // 6 deletes a size, plus new Line[3] (aligned) and new int.
    std::printf("replaced: operator new called %u times, operator delete %u times\n",
                replaced_new_calls, replaced_delete_calls);
    return 0;
}
#else
int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "forms";
    if (std::strcmp(mode, "forms") == 0)
        forms();
    else if (std::strcmp(mode, "oom") == 0)
        oom();
    else if (std::strcmp(mode, "where") == 0)
        where();
    else
        die("usage: cxx_new forms|oom|where");
    return 0;
}
#endif
