#!/usr/bin/env bash
# redis.sh — redis-server under poolmalloc: a threaded server that Debian
# links against jemalloc, so the preload takes malloc, free, realloc and
# malloc_usable_size from under another allocator that stays loaded (redis
# still calls jemalloc's mallctl for its INFO figures). The server listens
# on a unix socket in the run's directory, with its lazy-free thread
# freeing what the main thread allocated. (Not with I/O threads: they spin
# while they wait for work, and on 2 busy cores a run took 10 times as long.)
#   1. redis-benchmark, 50 clients on 2 threads, random keys (its output is
#      timings: not compared; its exit code is);
#   2. a dataset made deterministically: DEBUG POPULATE, then lists, hashes,
#      sorted sets, sets and strings appended to, built by a Lua script;
#      read back (DEBUG DIGEST, ranges, sorts, set algebra), 90% deleted,
#      saved and loaded again (DEBUG RELOAD: RDB, LZF), and freed in the
#      background (FLUSHALL ASYNC).
# redis-cli prints the same lines plain and preloaded.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

workload() {
    local keys=$1
    local sock=$PWD/redis.sock
    redis-server --port 0 --unixsocket "$sock" --dir "$PWD" --save '' --appendonly no \
        --enable-debug-command yes --lazyfree-lazy-user-flush yes --logfile "$PWD/redis.log" \
        --daemonize no &
    local server=$!
    echo "$server" >redis-server.pid
    cli() { redis-cli -s "$sock" "$@"; }
    local i
    for ((i = 0; i < 100; i++)); do
        [[ $(cli ping 2>/dev/null) == PONG ]] && break
        sleep 0.1
    done
    [[ $i -lt 100 ]] || { cat redis.log >&2; echo "redis-server did not answer" >&2; exit 1; }

    redis-benchmark -s "$sock" -q -c 50 --threads 2 -n "$((keys / 10))" -r "$((keys / 10))" -d 64 \
        -t set,get,incr,lpush,rpop,sadd,hset,spop,zadd,zpopmin,lrange_100,mset >/dev/null
    cli flushall sync

    cli debug populate "$keys" key 100
    # shellcheck disable=SC2016 # Lua, not shell
    cli eval '
        for i = 1, tonumber(ARGV[1]) do
            redis.call("RPUSH", "list:" .. i % 1000, "item-" .. i)
            redis.call("HSET", "hash:" .. i % 1000, "f" .. i, string.rep("v", i % 40))
            redis.call("ZADD", "zset:" .. i % 500, i % 977, "m" .. i)
            redis.call("SADD", "set:" .. i % 300, i % 5000, "s" .. i % 700)
            redis.call("APPEND", "str:" .. i % 200, "abc" .. i)
        end
        return redis.call("DBSIZE")' 0 "$((keys / 2))"
    cli debug digest
    cli lrange list:7 0 4
    cli ltrim list:8 10 -10
    cli llen list:8
    cli hlen hash:9
    cli hget hash:9 f9009
    cli zrange zset:3 0 9 withscores
    cli zunionstore zall 3 zset:1 zset:2 zset:3 aggregate max
    cli zrevrange zall 0 4 withscores
    cli sunionstore sall set:1 set:2 set:3
    cli sinterstore sboth set:1 set:101
    cli sort sboth alpha limit 0 10
    cli sort list:11 by nosort limit 0 5
    cli strlen str:5
    cli getrange str:5 0 30
    cli object encoding hash:9
    cli object encoding set:1

    cli eval '
        local n = 0
        for i = 0, tonumber(ARGV[1]) - 1 do
            if i % 10 ~= 0 then n = n + redis.call("DEL", "key:" .. i) end
        end
        return n' 0 "$keys"
    cli dbsize
    cli debug digest
    cli debug reload
    cli debug digest
    cli get key:10
    cli flushall async
    for ((i = 0; i < 300; i++)); do
        [[ $(cli info memory | tr -d '\r' | sed -n 's/^lazyfree_pending_objects://p') == 0 ]] && break
        sleep 0.1
    done
    cli dbsize
    cli shutdown nosave 2>/dev/null || true
    wait "$server"
}

if pm_is_workload "$@"; then
    shift
    workload "$@"
    exit 0
fi

pm_require_cmd redis-server redis-server
pm_require_cmd redis-cli redis-tools
pm_init 120
pm_check redis 1000000 cat -- bash "$PM_SELF" --workload "${PM_REDIS_KEYS:-200000}"

# The run's count includes redis-cli's and redis-benchmark's: the server's
# own report must show the pools serving it, from more than one thread,
# and its last record must be the one written at its exit.
run=$(pm_run_dir redis preload)
report=$run/stats/stats.$(cat "$run/work/redis-server.pid")
[[ -s $report ]] || pm_fail "redis: no stats report from redis-server ($report)"
read -r served heaps reason < <(tail -n 1 "$report" | /usr/bin/python3 -c '
import json, sys
record = json.load(sys.stdin)
print(record["small_allocated_total"], record["thread_heaps"], record["reason"])')
[[ $served -ge 1000000 && $heaps -ge 2 && $reason == exit ]] ||
    pm_fail "redis: redis-server's last record: $served small requests served (need" \
        ">= 1000000), $heaps thread heaps (need >= 2), reason '$reason' (need 'exit')"
pm_log "ok: redis: redis-server alone: $served small requests served, $heaps thread heaps"
