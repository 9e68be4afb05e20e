// cxx.cpp — a C++ program's allocations, as the standard containers make
// them: every block comes from operator new and goes back through (sized)
// operator delete, most of them from code libstdc++ inlines into the
// program, some from libstdc++ itself (std::string's buffers).
//
//   pm_bench_cxx ops=N seed=S
//
// N operations at random, in four kinds: insert an std::string of 16..79
// characters into an std::map<int, std::string> of up to 50,000 keys;
// erase a key from it; append to the std::vector<int> of one of 20,000
// std::string keys of an std::unordered_map, dropping the key once it
// holds 8; push an std::shared_ptr<std::string> onto an std::list kept to
// the newest 1,000. Prints a checksum of what the containers held; reports
// ops (not pairs: the program does not see its operator new calls).
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "bench.h"

int main(int argc, char **argv)
{
    bench_args_t args;
    bench_args_parse(&args, argc, argv);
    uint64_t ops = bench_arg(&args, "ops", 4000000);
    uint64_t seed = bench_arg(&args, "seed", 1);
    bench_args_done(&args);
    bench_rng_t rng;
    bench_rng_seed(&rng, seed, 0);

    std::map<int, std::string> by_key;
    std::unordered_map<std::string, std::vector<int>> lists;
    std::list<std::shared_ptr<std::string>> recent;
    uint64_t checksum = 0;
    for (uint64_t i = 0; i < ops; i++) {
        uint64_t r = bench_rng_next(&rng);
        int key = static_cast<int>((r >> 8) % 50000);
        switch (r & 3) {
        case 0:
            by_key[key] = std::string(16 + (r >> 32) % 64, static_cast<char>('a' + key % 26));
            break;
        case 1:
            by_key.erase(key);
            break;
        case 2: {
            std::string name = std::to_string(key % 20000);
            std::vector<int> &list = lists[name];
            list.push_back(key);
            if (list.size() >= 8) {
                checksum += static_cast<uint64_t>(list[3]);
                lists.erase(name);
            }
            break;
        }
        default:
            recent.push_back(std::make_shared<std::string>(40 + (r >> 40) % 24, 'b'));
            if (recent.size() > 1000)
                recent.pop_front();
            break;
        }
        checksum += by_key.size();
    }
    for (const auto &entry : by_key)
        checksum += entry.second.size() * static_cast<uint64_t>(entry.first);
    std::printf("checksum %" PRIu64 ", %zu keys, %zu lists, %zu recent\n", checksum,
                by_key.size(), lists.size(), recent.size());
    bench_report_begin("cxx");
    bench_report("ops", ops);
    bench_report_end();
    return 0;
}
