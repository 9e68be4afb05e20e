"""Fragmentation workload c: a real program building and dropping a large
structure. Run with PYTHONMALLOC=malloc so every object goes through malloc
(and so through the preloaded allocator).

    python3 python_frag.py KEYS [ITEMS [IDLE_MS]]

Builds a dict of KEYS lists, each of ITEMS tuples (an int above the small-int
cache, a str, a float), reads the resident set (/proc/self/statm) before, at
the peak, after dropping a random 90% of the keys (the survivors pin the
memory around them), and after dropping everything. Prints the
allocator-independent shape of the structure, then the pm-bench line:
rss_start_kib, rss_peak_kib, rss_drop90_kib, rss_end_kib, and
end_over_start (rss_end / rss_start) and drop90_over_peak. With IDLE_MS, it
then sleeps that long, does a little more work (4 rounds of 4096 small
strings built and dropped: a program that goes on, whose allocator calls let
a peer that purges on later calls do so) and adds rss_later_kib and
later_over_start."""
import gc
import os
import random
import sys
import time

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_KIB


def build(keys, items):
    table = {}
    for k in range(keys):
        base = 1000 + k * items
        table[f"key-{k:07d}"] = [(base + i, f"value {base + i} of key {k}", (base + i) / 7.0)
                                 for i in range(items)]
    return table


def main():
    keys = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    items = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    idle_ms = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    rng = random.Random(1)
    gc.collect()
    start = rss_kib()
    table = build(keys, items)
    peak = rss_kib()
    shape = (len(table), sum(len(v) for v in table.values()))
    victims = rng.sample(sorted(table), k=keys * 9 // 10)
    for name in victims:
        del table[name]
    gc.collect()
    drop90 = rss_kib()
    left = sum(len(v) for v in table.values())
    del table, victims
    gc.collect()
    end = rss_kib()
    later = None
    if idle_ms > 0:
        time.sleep(idle_ms / 1000)
        for _ in range(4):
            junk = [f"later {i}" * (1 + i % 40) for i in range(4096)]
            del junk
        gc.collect()
        later = rss_kib()
    print(f"python_frag: {shape[0]} keys, {shape[1]} tuples; {left} tuples after dropping 90%")
    line = (f"pm-bench: workload=python_frag rss_start_kib={start} rss_peak_kib={peak} "
            f"rss_drop90_kib={drop90} rss_end_kib={end} "
            f"drop90_over_peak={drop90 / peak:.4f} end_over_start={end / start:.4f}")
    if later is not None:
        line += f" rss_later_kib={later} later_over_start={later / start:.4f}"
    print(line)


if __name__ == "__main__":
    main()
