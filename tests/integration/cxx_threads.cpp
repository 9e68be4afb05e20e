// cxx_threads.cpp — a C++17 workload for the integration tests, run by
// cxx_threads.sh plain and with libpoolmalloc.so preloaded (it never links
// poolmalloc). Four threads pass heap objects around a ring through
// mutex-protected queues: thread i allocates messages and hands them to
// thread i+1, which checks and deletes them, so nearly every object is freed
// by a thread other than the one that allocated it. The messages use
// std::string, std::vector, std::map, std::unordered_map, std::shared_ptr,
// new/delete, new[]/delete[], aligned new (alignas(64) and alignas(256)) and
// explicit sized delete, with sizes on both sides of poolmalloc's 512-byte
// limit. Each message carries the checksum its sender computed; the receiver
// recomputes it and aborts on a mismatch (heap corruption). The printed
// totals depend only on what each thread sends, never on scheduling.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

constexpr int kThreads = 4;

[[noreturn]] void die(const char *what, std::uint64_t a, std::uint64_t b)
{
    std::fprintf(stderr, "cxx_threads: %s (%llu vs %llu)\n", what,
                 static_cast<unsigned long long>(a), static_cast<unsigned long long>(b));
    std::abort();
}

struct Rng {
    std::uint64_t state;
    explicit Rng(std::uint64_t seed) : state(seed * 0x9E3779B97F4A7C15ULL + 1) {}
    std::uint64_t next()
    {
        // xorshift64*: deterministic everywhere, unlike std::rand.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        return state * 0x2545F4914F6CDD1DULL;
    }
    std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }
};

std::uint64_t mix(std::uint64_t h, std::uint64_t v)
{
    h ^= v + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
    return h;
}

std::uint64_t hash_bytes(const void *p, std::size_t n, std::uint64_t h = 1469598103934665603ULL)
{
    const unsigned char *b = static_cast<const unsigned char *>(p);
    for (std::size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

struct alignas(64) Line64 {
    std::uint64_t words[8];
};
struct alignas(256) Line256 {
    std::uint64_t words[40]; // 320 bytes, padded to 512
};

// Shared between the sender (which keeps some in a ring) and the receiver,
// so the last reference, and with it the delete, can be in either thread.
struct Node {
    std::uint64_t value;
    std::string label;
    std::shared_ptr<Node> next;
};

struct Message {
    std::uint64_t expected = 0;
    virtual ~Message() = default;
    virtual std::uint64_t checksum() const = 0;
};

struct StringMsg final : Message {
    std::string text;
    std::uint64_t checksum() const override { return hash_bytes(text.data(), text.size()); }
};

struct VectorMsg final : Message {
    std::vector<std::uint32_t> values;
    std::uint64_t checksum() const override
    {
        return hash_bytes(values.data(), values.size() * sizeof(values[0]), values.size());
    }
};

struct MapMsg final : Message {
    std::map<int, std::string> ordered;
    std::unordered_map<std::string, std::uint64_t> hashed;
    std::uint64_t checksum() const override
    {
        std::uint64_t h = 7;
        for (const auto &kv : ordered)
            h = mix(h, hash_bytes(kv.second.data(), kv.second.size(), static_cast<std::uint64_t>(kv.first)));
        std::uint64_t u = 0; // unordered: combine commutatively
        for (const auto &kv : hashed)
            u += hash_bytes(kv.first.data(), kv.first.size(), kv.second);
        return mix(h, u);
    }
};

struct SharedMsg final : Message {
    std::shared_ptr<Node> head;
    std::uint64_t checksum() const override
    {
        std::uint64_t h = 3;
        for (const Node *n = head.get(); n; n = n->next.get())
            h = mix(h, hash_bytes(n->label.data(), n->label.size(), n->value));
        return h;
    }
};

struct AlignedMsg final : Message {
    Line64 *line = nullptr;     // aligned new
    Line256 *wide = nullptr;    // aligned new, 512-byte block
    Line64 *lines = nullptr;    // aligned new[]
    std::size_t line_count = 0;
    ~AlignedMsg() override
    {
        delete line;
        delete wide;
        delete[] lines;
    }
    std::uint64_t checksum() const override
    {
        std::uint64_t h = hash_bytes(line->words, sizeof line->words);
        if (wide) // its words only: the padding up to 512 bytes is garbage
            h = hash_bytes(wide->words, sizeof wide->words, h);
        return hash_bytes(lines, line_count * sizeof *lines, h);
    }
};

struct RawMsg final : Message {
    std::uint64_t *array = nullptr; // new[] / delete[]
    std::size_t count = 0;
    void *raw = nullptr; // operator new / sized operator delete
    std::size_t raw_bytes = 0;
    ~RawMsg() override
    {
        delete[] array;
        ::operator delete(raw, raw_bytes);
    }
    std::uint64_t checksum() const override
    {
        return hash_bytes(raw, raw_bytes, hash_bytes(array, count * sizeof *array));
    }
};

void check_alignment(const void *p, std::size_t alignment)
{
    if (reinterpret_cast<std::uintptr_t>(p) % alignment != 0)
        die("misaligned aligned new", reinterpret_cast<std::uintptr_t>(p), alignment);
}

std::string make_text(Rng &rng, std::size_t max_len)
{
    std::string s;
    std::size_t n = rng.below(max_len) + 1;
    // Grow by appends so the string reallocates through several sizes.
    while (s.size() < n)
        s += static_cast<char>('a' + rng.below(26));
    return s;
}

Message *make_message(Rng &rng, std::vector<std::shared_ptr<Node>> &keep)
{
    Message *m = nullptr;
    switch (rng.below(6)) {
    case 0: {
        auto *s = new StringMsg;
        s->text = make_text(rng, rng.below(8) == 0 ? 2000 : 600);
        m = s;
        break;
    }
    case 1: {
        auto *v = new VectorMsg;
        std::size_t n = rng.below(300);
        for (std::size_t i = 0; i < n; i++)
            v->values.push_back(static_cast<std::uint32_t>(rng.next()));
        m = v;
        break;
    }
    case 2: {
        auto *mm = new MapMsg;
        std::size_t n = rng.below(12);
        for (std::size_t i = 0; i < n; i++) {
            mm->ordered[static_cast<int>(rng.below(1000))] = make_text(rng, 40);
            mm->hashed[make_text(rng, 24)] = rng.next();
        }
        m = mm;
        break;
    }
    case 3: {
        auto *sm = new SharedMsg;
        std::size_t n = rng.below(6) + 1;
        for (std::size_t i = 0; i < n; i++) {
            auto node = std::make_shared<Node>();
            node->value = rng.next();
            node->label = make_text(rng, 48);
            node->next = sm->head;
            sm->head = node;
        }
        // The sender keeps a reference to some chains for a while, so they
        // are freed by whichever of the two threads lets go last.
        keep[rng.below(keep.size())] = sm->head;
        m = sm;
        break;
    }
    case 4: {
        auto *am = new AlignedMsg;
        am->line = new Line64;
        check_alignment(am->line, 64);
        for (auto &w : am->line->words)
            w = rng.next();
        if (rng.below(2)) {
            am->wide = new Line256;
            check_alignment(am->wide, 256);
            for (auto &w : am->wide->words)
                w = rng.next();
        }
        am->line_count = rng.below(12) + 1;
        am->lines = new Line64[am->line_count];
        check_alignment(am->lines, 64);
        for (std::size_t i = 0; i < am->line_count; i++)
            for (auto &w : am->lines[i].words)
                w = rng.next();
        m = am;
        break;
    }
    default: {
        auto *rm = new RawMsg;
        rm->count = rng.below(100) + 1;
        rm->array = new std::uint64_t[rm->count];
        for (std::size_t i = 0; i < rm->count; i++)
            rm->array[i] = rng.next();
        rm->raw_bytes = rng.below(rng.below(10) == 0 ? 4096 : 512) + 1;
        rm->raw = ::operator new(rm->raw_bytes);
        std::memset(rm->raw, static_cast<int>(rng.below(256)), rm->raw_bytes);
        m = rm;
        break;
    }
    }
    m->expected = m->checksum();
    return m;
}

class Queue {
  public:
    void push(Message *m)
    {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            items_.push_back(m);
        }
        ready_.notify_one();
    }
    // Takes the oldest message (nullptr is the end-of-stream mark); returns
    // false if the queue is empty and `wait` is false.
    bool pop(Message *&out, bool wait)
    {
        std::unique_lock<std::mutex> lock(mutex_);
        if (wait)
            ready_.wait(lock, [this] { return !items_.empty(); });
        if (items_.empty())
            return false;
        out = items_.front();
        items_.pop_front();
        return true;
    }
    std::size_t size()
    {
        std::lock_guard<std::mutex> lock(mutex_);
        return items_.size();
    }

  private:
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<Message *> items_;
};

struct Result {
    std::uint64_t sent_sum = 0;
    std::uint64_t received_sum = 0;
    std::uint64_t received = 0;
};

// Returns false on the end-of-stream mark.
bool consume(Message *m, Result &r)
{
    if (!m)
        return false;
    std::uint64_t h = m->checksum();
    if (h != m->expected)
        die("message corrupted between threads", h, m->expected);
    r.received_sum += h; // commutative: order of arrival does not matter
    r.received++;
    delete m;
    return true;
}

void worker(int id, int messages, Queue *queues, Result *results)
{
    Rng rng(static_cast<std::uint64_t>(id) + 1);
    Queue &out = queues[(id + 1) % kThreads];
    Queue &in = queues[id];
    Result &r = results[id];
    std::vector<std::shared_ptr<Node>> keep(64);
    bool done_receiving = false;
    for (int i = 0; i < messages; i++) {
        Message *m = make_message(rng, keep);
        r.sent_sum += m->expected;
        out.push(m);
        // Drain what has arrived. When too far ahead of the neighbour, keep
        // draining and let it run: it drains our output in its own loop, and
        // cannot be waiting for us (we have not sent our end mark yet).
        Message *got = nullptr;
        do {
            while (!done_receiving && in.pop(got, false))
                done_receiving = !consume(got, r);
            if (out.size() <= 2000)
                break;
            std::this_thread::yield();
        } while (true);
    }
    out.push(nullptr);
    Message *got = nullptr;
    while (!done_receiving && in.pop(got, true))
        done_receiving = !consume(got, r);
    keep.clear();
}

} // namespace

int main(int argc, char **argv)
{
    int messages = argc > 1 ? std::atoi(argv[1]) : 200000;
    if (messages <= 0) {
        std::fprintf(stderr, "usage: cxx_threads [messages per thread]\n");
        return 2;
    }
    Queue queues[kThreads];
    Result results[kThreads];
    std::vector<std::thread> threads;
    for (int id = 0; id < kThreads; id++)
        threads.emplace_back(worker, id, messages, queues, results);
    for (auto &t : threads)
        t.join();

    std::uint64_t total = 0;
    for (int id = 0; id < kThreads; id++) {
        const Result &sender = results[id];
        const Result &receiver = results[(id + 1) % kThreads];
        if (receiver.received != static_cast<std::uint64_t>(messages) ||
            receiver.received_sum != sender.sent_sum)
            die("a thread did not receive what its neighbour sent", receiver.received_sum,
                sender.sent_sum);
        std::printf("thread %d: sent %d messages, checksum %016llx\n", id, messages,
                    static_cast<unsigned long long>(sender.sent_sum));
        total = mix(total, sender.sent_sum);
    }
    std::printf("cxx_threads: %d threads x %d messages, total %016llx\n", kThreads, messages,
                static_cast<unsigned long long>(total));
    return 0;
}
