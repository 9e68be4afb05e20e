-- A real program's allocations: sqlite3 (Debian's) building a table of
-- short rows in memory, indexing it and querying it. sqlite3 allocates its
-- page cache, its records and its expression trees through malloc, mostly
-- under 512 bytes. The row count comes from the command line:
--   sqlite3 -cmd 'CREATE TEMP TABLE n AS SELECT 300000 AS rows' :memory: \
--       '.read bench/workloads/sqlite_rows.sql'
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < (SELECT rows FROM n))
INSERT INTO t SELECT x, printf('name-%d-%s', x, substr('abcdefghijklmnopqrstuvwxyz', 1, x % 26)),
                     x * 0.5 FROM c;
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(length(name)) FROM t WHERE name LIKE 'name-1%';
SELECT substr(name, -3), count(*) FROM t GROUP BY substr(name, -3) ORDER BY 2 DESC, 1 LIMIT 3;
DELETE FROM t WHERE id % 3 = 0;
SELECT count(*), total(v) FROM t;
