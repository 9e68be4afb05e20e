"""An object-heavy Python workload: dicts, lists, tuples, strings and small
ints built and dropped in waves, the allocation pattern of a typical
interpreter-bound program. Run with PYTHONMALLOC=malloc so every object goes
through malloc (and so through poolmalloc when it is preloaded).

With 2 rounds or more it also reports, on a pm-bench line, the median of
the later rounds' times as a percentage of the first's: an allocator that
lays a round's objects out scattered over what the last round freed makes
the collector, which walks them in the order they were made, slower in
every later round (bench/results/address-order.md)."""
import statistics
import sys
import time
from collections import Counter, defaultdict


def build_records(n):
    return [{"id": i, "name": f"user{i}", "tags": [f"t{i % 7}", f"g{i % 13}"],
             "score": (i * 2654435761) % 1000 / 10.0} for i in range(n)]


def summarize(records):
    by_tag = defaultdict(list)
    for r in records:
        for t in r["tags"]:
            by_tag[t].append(r["id"])
    counts = Counter(len(v) for v in by_tag.values())
    words = " ".join(r["name"] for r in records[:5000]).split()
    return len(by_tag), sum(counts.values()), len(set(words))


def main(rounds):
    total = 0
    took = []
    for _ in range(rounds):
        start = time.perf_counter()
        records = build_records(100_000)
        tags, groups, words = summarize(records)
        total += tags + groups + words + len({(r["id"], r["score"]) for r in records})
        del records
        took.append(time.perf_counter() - start)
    print(f"python_objects: {rounds} rounds, checksum {total}")
    if rounds >= 2:
        later = round(100 * statistics.median(took[1:]) / took[0])
        print(f"pm-bench: workload=python_objects later_rounds_pct={later}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
