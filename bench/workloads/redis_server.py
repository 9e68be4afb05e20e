"""redis-server (Debian's, linked against jemalloc) under the allocator this
process was started with: a real server whose keys, values and their
bookkeeping are small blocks. Two workloads:

    python3 redis_server.py frag KEYS IDLE_MS GLIBC_SHIM
    python3 redis_server.py fill KEYS ROUNDS GLIBC_SHIM

Both start redis-server on a unix socket in a temporary directory, with the
environment this process has, so that its LD_PRELOAD reaches the server.
With no LD_PRELOAD (the harness's glibc), GLIBC_SHIM is preloaded instead:
redis links jemalloc, and the shim (bench/glibc_malloc.c) sends the malloc
family to glibc.

frag (fragmentation workload h): a server filled, emptied in the orders a
cache empties, and flushed, reading its resident set (/proc/PID/statm)
after each step:

  start    the server up, empty;
  full     KEYS strings of 10..309 B (values) set from a Lua script;
  expired  the oldest half deleted, as keys with a common lifetime expire;
  evicted  of the newer half, a scattered 4 in 5 deleted (a tenth of KEYS
           is left, spread over all the memory the newer half took);
  flushed  FLUSHALL, at once;
  later    after 4 rounds of 4096 small keys set and deleted.

The expired, evicted and later readings are taken IDLE_MS after their step
(the server idle but for its own 10 Hz timer, as a server between bursts of
traffic is), so that an allocator that purges after a delay has had it.
Prints the keys left after each step (the same under every allocator), then
the pm-bench line: rss_<step>_kib, and expired_over_full, evicted_over_full,
flushed_over_start, later_over_start.

fill (a speed workload): ROUNDS times, the server sets KEYS strings from a
Lua script, deletes a scattered 4 in 5 of them and sets them all again, then
flushes: the server's own work, this process waiting on its replies. Prints
the keys set, then the pm-bench line with server_cpu_ms, the server's user
and system time (/proc/PID/stat) from its start to the last reply."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

try:
    import redis
except ImportError:
    raise SystemExit("redis_server: no Python module redis (Debian package python3-redis; "
                     "tools/bootstrap bench installs it)")

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


FILL = """
for i = 0, tonumber(ARGV[1]) - 1 do
    redis.call("SET", "key:" .. i, string.rep("v", 10 + (i * 7919) % 300))
end
return redis.call("DBSIZE")"""
# Deletes keys first..last-1 for which (i * 2654435761) % 5 is not 0: a
# scattered 4 in 5 (the product stays below 2^53, exact in Lua's doubles).
DELETE = """
local gone = 0
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) - 1 do
    if ARGV[3] == "all" or (i * 2654435761) % 5 ~= 0 then
        gone = gone + redis.call("DEL", "key:" .. i)
    end
end
return gone"""
LIGHT = """
for i = 1, 4096 do redis.call("SET", "light:" .. i, string.rep("w", 8 + i % 100)) end
for i = 1, 4096 do redis.call("DEL", "light:" .. i) end
return 0"""


class Server:
    """redis-server on a unix socket in a temporary directory, with a client;
    the malloc family preloaded as above."""

    def __init__(self, shim):
        path = shutil.which("redis-server")
        if path is None:
            raise SystemExit("redis_server: redis-server is not installed (Debian package "
                             "redis-server; tools/bootstrap bench installs it)")
        env = dict(os.environ)
        if not env.get("LD_PRELOAD"):
            if not os.path.exists(shim):
                raise SystemExit(f"redis_server: {shim} not found (bench/glibc_malloc.c, "
                                 "built with the workloads)")
            env["LD_PRELOAD"] = shim
        self.tmp = tempfile.TemporaryDirectory(prefix="pm-redis-")
        sock = os.path.join(self.tmp.name, "redis.sock")
        self.proc = subprocess.Popen(
            [path, "--port", "0", "--unixsocket", sock, "--dir", self.tmp.name, "--save", "",
             "--appendonly", "no", "--logfile", os.path.join(self.tmp.name, "redis.log")],
            env=env, stdin=subprocess.DEVNULL)
        self.client = redis.Redis(unix_socket_path=sock)
        for _ in range(200):
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)  # not listening yet
        self.close()
        raise SystemExit("redis_server: redis-server did not listen within 10 s")

    def call(self, *args):
        return self.client.execute_command(*args)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KIB

    def cpu_s(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self):
        self.proc.terminate()
        self.proc.wait()
        self.tmp.cleanup()


def frag(server, keys, idle_s):
    readings = {"start": server.rss_kib()}
    left = [server.call("EVAL", FILL, 0, keys)]
    readings["full"] = server.rss_kib()
    server.call("EVAL", DELETE, 0, 0, keys // 2, "all")
    left.append(server.call("DBSIZE"))
    time.sleep(idle_s)
    readings["expired"] = server.rss_kib()
    server.call("EVAL", DELETE, 0, keys // 2, keys, "scattered")
    left.append(server.call("DBSIZE"))
    time.sleep(idle_s)
    readings["evicted"] = server.rss_kib()
    server.call("FLUSHALL", "SYNC")
    left.append(server.call("DBSIZE"))
    readings["flushed"] = server.rss_kib()
    time.sleep(idle_s)
    for _ in range(4):
        server.call("EVAL", LIGHT, 0)
    readings["later"] = server.rss_kib()
    print(f"redis_frag: {keys} keys set; left after each step: "
          + ", ".join(str(n) for n in left))
    ratios = {"expired_over_full": readings["expired"] / readings["full"],
              "evicted_over_full": readings["evicted"] / readings["full"],
              "flushed_over_start": readings["flushed"] / readings["start"],
              "later_over_start": readings["later"] / readings["start"]}
    print("pm-bench: workload=redis_frag "
          + " ".join(f"rss_{k}_kib={v}" for k, v in readings.items()) + " "
          + " ".join(f"{k}={v:.4f}" for k, v in ratios.items()))


def fill(server, keys, rounds):
    cpu = server.cpu_s()
    counts = set()
    for _ in range(rounds):
        counts.add((server.call("EVAL", FILL, 0, keys),
                    server.call("EVAL", DELETE, 0, 0, keys, "scattered"),
                    server.call("EVAL", FILL, 0, keys)))
        server.call("FLUSHALL", "SYNC")
    cpu = server.cpu_s() - cpu
    print(f"redis_fill: {rounds} rounds of (keys set, deleted, keys after setting again): "
          + ", ".join(str(c) for c in sorted(counts)))
    print(f"pm-bench: workload=redis_fill server_cpu_ms={cpu * 1000:.0f}")


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("frag", "fill"):
        raise SystemExit("usage: redis_server.py frag KEYS IDLE_MS GLIBC_SHIM\n"
                         "       redis_server.py fill KEYS ROUNDS GLIBC_SHIM")
    mode, keys, number, shim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    server = Server(shim)
    try:
        if mode == "frag":
            frag(server, keys, number / 1000)
        else:
            fill(server, keys, number)
    finally:
        server.close()


if __name__ == "__main__":
    main()
