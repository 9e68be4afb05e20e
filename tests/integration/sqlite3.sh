#!/usr/bin/env bash
# sqlite3.sh — the sqlite3 shell under poolmalloc: 100k generated INSERT
# statements in one transaction (so the parser allocates for every one),
# then aggregates, GROUP BY, JOIN, index creation, ORDER BY ... LIMIT,
# window functions, JSON, UPDATE/DELETE, VACUUM and an integrity check, on
# an on-disk database. The query output is compared plain versus preloaded.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

workload() {
    local rows=${1:-100000}
    awk -v n="$rows" '
    # 69069 x + 1 mod 2^32 stays exact in doubles; use the high bits.
    function rnd(m) { x = (x * 69069 + 1) % 4294967296; return int(x / 65536) % m }
    BEGIN {
        x = 4242
        split("north south east west central", region, " ")
        split("apple banana cherry damson elder fig grape hazel iris juniper", fruit, " ")
        print "PRAGMA journal_mode = DELETE;"
        print "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL);"
        print "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL,"
        print "  product TEXT NOT NULL, qty INTEGER NOT NULL, cents INTEGER NOT NULL, note TEXT);"
        print "BEGIN;"
        for (i = 1; i <= 1000; i++)
            printf "INSERT INTO customers VALUES (%d, %ccustomer-%05d%c, %c%s%c);\n", i, 39, i * 7919 % 100000, 39, 39, region[rnd(5) + 1], 39
        for (i = 1; i <= n; i++) {
            note = ""
            k = rnd(6)
            for (j = 0; j < k; j++) note = note fruit[rnd(10) + 1] " "
            printf "INSERT INTO orders (customer_id, product, qty, cents, note) VALUES (%d, %c%s-%d%c, %d, %d, %c%s%c);\n",
                rnd(1000) + 1, 39, fruit[rnd(10) + 1], rnd(50), 39, rnd(20) + 1, rnd(100000), 39, note, 39
        }
        print "COMMIT;"
    }' >load.sql

    sqlite3 -batch -bail -init /dev/null shop.db <load.sql >/dev/null
    sqlite3 -batch -bail -init /dev/null shop.db <<'EOF'
.headers on
.mode list
SELECT count(*) AS orders, sum(qty) AS items, sum(qty * cents) AS cents,
       min(cents), max(cents), printf('%.4f', avg(cents)) AS avg_cents
  FROM orders;
SELECT product, count(*), sum(qty), printf('%.3f', avg(cents))
  FROM orders GROUP BY product ORDER BY count(*) DESC, product LIMIT 15;
SELECT c.region, count(*) AS orders, sum(o.qty * o.cents) AS revenue
  FROM orders o JOIN customers c ON c.id = o.customer_id
  GROUP BY c.region ORDER BY revenue DESC;
CREATE INDEX orders_by_customer ON orders (customer_id, cents);
CREATE INDEX orders_by_product ON orders (product);
SELECT c.name, count(*) AS n, sum(o.cents) AS spent
  FROM customers c JOIN orders o ON o.customer_id = c.id
  GROUP BY c.id ORDER BY spent DESC, c.id LIMIT 10;
SELECT id, customer_id, product, cents FROM orders ORDER BY cents DESC, id LIMIT 10;
SELECT id, product, note FROM orders WHERE note LIKE '%fig grape%' ORDER BY id LIMIT 5;
SELECT product, cents, rank FROM (
  SELECT product, cents, rank() OVER (PARTITION BY product ORDER BY cents DESC, id) AS rank
    FROM orders WHERE product LIKE 'cherry-%')
  WHERE rank <= 2 ORDER BY product, rank LIMIT 20;
SELECT region, json_group_array(name) FROM (
  SELECT region, name FROM customers WHERE id % 97 = 0 ORDER BY name)
  GROUP BY region ORDER BY region;
SELECT length(group_concat(upper(note), '|')) FROM (SELECT note FROM orders ORDER BY id LIMIT 5000);
WITH RECURSIVE fib(i, a, b) AS (SELECT 1, 0, 1 UNION ALL SELECT i + 1, b, a + b FROM fib WHERE i < 60)
SELECT group_concat(a, ',') FROM fib;
UPDATE orders SET note = note || 'updated ', qty = qty + 1 WHERE id % 3 = 0;
DELETE FROM orders WHERE cents < 10000;
SELECT count(*), sum(qty), count(DISTINCT customer_id), count(DISTINCT product) FROM orders;
SELECT count(*) FROM orders WHERE note LIKE '%updated%';
VACUUM;
PRAGMA integrity_check;
SELECT count(*) FROM orders INDEXED BY orders_by_customer WHERE customer_id BETWEEN 100 AND 200;
EOF
}

if pm_is_workload "$@"; then
    shift
    workload "$@"
    exit 0
fi

pm_require_cmd sqlite3 sqlite3
pm_require_cmd awk mawk
pm_init 120
pm_check sqlite3 10000 cat -- bash "$PM_SELF" --workload "${PM_SQLITE_ROWS:-100000}"
