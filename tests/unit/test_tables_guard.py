"""The SQL guard: hostile statements per dialect are refused with a reason; SELECTs pass with a LIMIT."""

from __future__ import annotations

import pytest

from core.errors import SQLRejected
from core.tables.guard import guard_sql

TABLES = {"tickets", "teams", "sales"}

# Refused in every dialect.
HOSTILE_COMMON = [
    "DELETE FROM tickets",
    "DELETE FROM tickets WHERE id = 1",
    "UPDATE tickets SET status = 'open'",
    "INSERT INTO tickets (id) VALUES (999)",
    "INSERT INTO teams SELECT * FROM teams",
    "DROP TABLE tickets",
    "DROP VIEW sales",
    "CREATE TABLE x AS SELECT * FROM tickets",
    "CREATE VIEW v AS SELECT 1",
    "CREATE INDEX i ON tickets (team)",
    "ALTER TABLE tickets ADD COLUMN x INT",
    "ALTER TABLE tickets RENAME TO t2",
    "TRUNCATE TABLE tickets",
    "SELECT 1; DROP TABLE tickets",
    "SELECT * FROM tickets; DELETE FROM tickets",
    "SELECT 1 -- harmless\n; DELETE FROM tickets",
    "/* just a comment */ DELETE FROM tickets",
    "SELECT * FROM tickets;;SELECT * FROM teams",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "VALUES (1), (2)",
    "SELECT * FROM sqlite_master",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM pg_catalog.pg_user",
    "SELECT * FROM unknown_table",
    "SELECT * FROM other_db.main.tickets",
    "SELECT * FROM '/etc/passwd'",
    'SELECT * FROM "/etc/passwd"',
    "SELECT * FROM 'data.csv'",
    "WITH x AS (SELECT 1) DELETE FROM tickets",
    "",
    "   ;  ",
    "this is not sql at all",
    "SELECT * FROM tickets WHERE",
]

HOSTILE = {
    "sqlite": HOSTILE_COMMON
    + [
        "PRAGMA writable_schema = ON",
        "PRAGMA table_info(tickets)",
        "PRAGMA query_only = OFF",
        "ATTACH DATABASE '/tmp/evil.db' AS evil",
        "ATTACH '/tmp/evil.db' AS evil",
        "DETACH DATABASE evil",
        "SELECT load_extension('/tmp/evil.so')",
        "SELECT readfile('/etc/passwd')",
        "SELECT writefile('/tmp/x', 'data')",
        "SELECT edit('x')",
        "SELECT fts3_tokenizer('simple')",
        "SELECT * FROM pragma_table_info('tickets')",
        "SELECT * FROM sqlite_schema",
        "SELECT * FROM temp.sqlite_master",
        "VACUUM",
        "VACUUM INTO '/tmp/copy.db'",
        "REINDEX",
        "ANALYZE",
        "REPLACE INTO teams VALUES ('x', 'y', 'z')",
        "INSERT OR REPLACE INTO teams VALUES ('x', 'y', 'z')",
        "CREATE TRIGGER t AFTER INSERT ON tickets BEGIN DELETE FROM teams; END",
        "CREATE TEMP TABLE t AS SELECT 1",
        "SELECT * FROM tickets INTO x",
    ],
    "duckdb": HOSTILE_COMMON
    + [
        "COPY sales TO '/tmp/out.csv'",
        "COPY (SELECT * FROM sales) TO '/tmp/out.parquet' (FORMAT PARQUET)",
        "COPY sales FROM '/tmp/in.csv'",
        "EXPORT DATABASE '/tmp/dump'",
        "IMPORT DATABASE '/tmp/dump'",
        "ATTACH '/tmp/evil.duckdb' AS evil",
        "ATTACH 'postgresql://host/db' AS pg (TYPE postgres)",
        "DETACH evil",
        "INSTALL httpfs",
        "LOAD httpfs",
        "FORCE INSTALL httpfs",
        "SET enable_external_access = true",
        "SET GLOBAL threads = 1",
        "RESET threads",
        "PRAGMA enable_profiling",
        "PRAGMA database_list",
        "CALL pragma_version()",
        "CHECKPOINT",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_csv_auto('/etc/passwd')",
        "SELECT * FROM read_parquet('s3://bucket/x.parquet')",
        "SELECT * FROM read_json('https://example.com/x.json')",
        "SELECT * FROM read_json_auto('/tmp/x.json')",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_blob('/etc/shadow')",
        "SELECT * FROM glob('/home/*')",
        "SELECT * FROM parquet_scan('/tmp/x.parquet')",
        "SELECT * FROM parquet_metadata('/tmp/x.parquet')",
        "SELECT * FROM sniff_csv('/etc/passwd')",
        "SELECT * FROM sqlite_scan('/tmp/x.db', 't')",
        "SELECT * FROM postgres_scan('host=x', 'public', 't')",
        "SELECT getenv('HOME')",
        "SELECT * FROM json_scan('/tmp/x.json')",
        "SELECT * FROM arrow_scan(12345, 1, 2)",
        "SELECT * FROM query('DELETE FROM sales')",
        "SELECT * FROM query_table('sales')",
        "SELECT * FROM duckdb_settings()",
        "SELECT * FROM duckdb_secrets()",
        "SELECT count(*) FROM sales, read_csv('/etc/passwd')",
        "SELECT * FROM sales WHERE region IN (SELECT column0 FROM read_csv('/etc/passwd'))",
        "SUMMARIZE sales",
        "DESCRIBE sales",
        "SHOW TABLES",
        "CREATE SECRET (TYPE s3, KEY_ID 'x', SECRET 'y')",
        "CREATE MACRO m(a) AS a + 1",
        "SELECT * FROM 'https://example.com/data.parquet'",
    ],
    "postgres": HOSTILE_COMMON
    + [
        "COPY tickets TO '/tmp/out.csv'",
        "COPY tickets TO PROGRAM 'rm -rf /'",
        "COPY tickets FROM '/tmp/in.csv'",
        "SET default_transaction_read_only = off",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "SET statement_timeout = 0",
        "RESET ALL",
        "CALL do_something()",
        "DO $$ BEGIN DELETE FROM tickets; END $$",
        "EXPLAIN ANALYZE DELETE FROM tickets",
        "GRANT ALL ON tickets TO public",
        "REVOKE SELECT ON tickets FROM public",
        "LOCK TABLE tickets",
        "VACUUM tickets",
        "LISTEN x",
        "NOTIFY x",
        "PREPARE p AS DELETE FROM tickets",
        "EXECUTE p",
        "DEALLOCATE p",
        "DECLARE c CURSOR FOR SELECT * FROM tickets",
        "CREATE EXTENSION dblink",
        "CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql",
        "SELECT * INTO stolen FROM tickets",
        "SELECT * FROM tickets FOR UPDATE",
        "SELECT * FROM tickets FOR SHARE",
        "SELECT * FROM tickets FOR NO KEY UPDATE NOWAIT",
        "WITH d AS (DELETE FROM tickets RETURNING *) SELECT * FROM d",
        "WITH u AS (UPDATE tickets SET status = 'x' RETURNING id) SELECT count(*) FROM u",
        "WITH i AS (INSERT INTO teams VALUES ('x','y','z') RETURNING *) SELECT * FROM i",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_read_binary_file('/etc/passwd')",
        "SELECT pg_catalog.pg_read_file('/etc/passwd', 0, 100)",
        "SELECT * FROM pg_ls_dir('.')",
        "SELECT pg_stat_file('postgresql.conf')",
        "SELECT lo_import('/etc/passwd')",
        "SELECT lo_export(1234, '/tmp/x')",
        "SELECT dblink('host=evil', 'select 1')",
        "SELECT * FROM dblink('host=evil', 'select 1') AS t(a int)",
        "SELECT dblink_exec('host=evil', 'drop table x')",
        "SELECT pg_sleep(100)",
        "SELECT count(*) FROM tickets WHERE pg_sleep(10) IS NULL",
        "SELECT pg_terminate_backend(1)",
        "SELECT pg_cancel_backend(1)",
        "SELECT pg_reload_conf()",
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        "SELECT nextval('tickets_id_seq')",
        "SELECT setval('tickets_id_seq', 1)",
        "SELECT query_to_xml('delete from tickets', true, true, '')",
        "SELECT current_setting('data_directory')",
        "SELECT * FROM ts_stat('DELETE FROM tickets')",
        "SELECT binary_upgrade_set_next_pg_type_oid(1)",
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_notify('x', 'y')",
        "SELECT * FROM pg_catalog.pg_shadow",
        "SELECT * FROM pg_stat_activity",
        "SHOW ALL",
    ],
}

ALLOWED = {
    "sqlite": [
        ("SELECT * FROM tickets", True),
        (
            "select team, count(*) as n from tickets where status = 'closed' group by team order by n desc",
            True,
        ),
        ("WITH c AS (SELECT team FROM tickets) SELECT team, count(*) FROM c GROUP BY team", True),
        ("SELECT t.name, count(*) FROM teams t JOIN tickets k ON k.team = t.name GROUP BY 1", True),
        ("SELECT strftime('%Y-%m', opened) AS month, count(*) FROM tickets GROUP BY 1", True),
        ("SELECT name FROM teams UNION SELECT team FROM tickets", True),
        ("SELECT * FROM main.tickets LIMIT 5", False),
        ("SELECT 'DROP TABLE tickets; --' AS s FROM teams", True),
        ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT n FROM r", True),
    ],
    "duckdb": [
        ("SELECT region, sum(revenue) FROM sales GROUP BY ALL", True),
        ("SELECT date_trunc('month', month) AS m, sum(units) FROM sales GROUP BY 1 ORDER BY 1", True),
        ("SELECT * FROM range(10)", True),
        (
            "SELECT * FROM sales QUALIFY row_number() OVER (PARTITION BY region ORDER BY revenue DESC) = 1",
            True,
        ),
    ],
    "postgres": [
        ("SELECT team, count(*) FILTER (WHERE status = 'closed') FROM tickets GROUP BY team", True),
        ("SELECT date_trunc('week', opened::timestamp) AS w, count(*) FROM tickets GROUP BY 1", True),
        ("SELECT * FROM public.tickets FETCH FIRST 3 ROWS ONLY", False),
        ("SELECT i FROM generate_series(1, 10) AS g(i)", True),
        ("SELECT pg_typeof(id) FROM tickets", True),
        ("SELECT DISTINCT ON (team) team, opened FROM tickets ORDER BY team, opened DESC", True),
    ],
}


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [(d, s) for d, items in HOSTILE.items() for s in items],
    ids=[f"{d}:{s[:50]}" for d, items in HOSTILE.items() for s in items],
)
def test_hostile_statement_is_rejected_with_one_sentence(dialect: str, sql: str) -> None:
    with pytest.raises(SQLRejected) as info:
        guard_sql(sql, dialect, max_rows=100, tables=TABLES)
    reason = str(info.value)
    assert reason.endswith(".") and 10 < len(reason) < 300
    assert "\n" not in reason


@pytest.mark.parametrize(
    ("dialect", "sql", "adds_limit"),
    [(d, s, a) for d, items in ALLOWED.items() for s, a in items],
    ids=[f"{d}:{s[:50]}" for d, items in ALLOWED.items() for s, _ in items],
)
def test_plain_select_passes_and_gets_a_limit(dialect: str, sql: str, adds_limit: bool) -> None:
    guarded = guard_sql(sql, dialect, max_rows=100, tables=TABLES)
    assert guarded.limit_added is adds_limit
    assert guarded.limit <= 100
    if adds_limit:
        assert guarded.sql.upper().endswith("LIMIT 100")


def test_existing_limit_is_kept_when_small_and_lowered_when_large() -> None:
    assert guard_sql("SELECT * FROM tickets LIMIT 7", "sqlite", max_rows=100).sql.endswith("LIMIT 7")
    lowered = guard_sql("SELECT * FROM tickets LIMIT 5000000", "sqlite", max_rows=100)
    assert lowered.sql.endswith("LIMIT 100") and lowered.limit == 100


def test_comments_are_dropped_from_what_runs() -> None:
    guarded = guard_sql(
        "SELECT id /* ; DELETE FROM tickets */ FROM tickets -- trailing", "sqlite", max_rows=10
    )
    assert "DELETE" not in guarded.sql and "--" not in guarded.sql and "/*" not in guarded.sql


def test_unknown_table_reason_lists_available_tables() -> None:
    with pytest.raises(SQLRejected, match=r"'nope'.*available: sales, teams, tickets"):
        guard_sql("SELECT * FROM nope", "sqlite", max_rows=10, tables=TABLES)


def test_cte_names_are_not_mistaken_for_tables() -> None:
    guarded = guard_sql(
        "WITH closed AS (SELECT * FROM tickets) SELECT count(*) FROM closed",
        "postgres",
        max_rows=10,
        tables={"tickets"},
    )
    assert guarded.tables == ("tickets",)


def test_unknown_dialect_names_the_known_ones() -> None:
    with pytest.raises(SQLRejected, match="available: sqlite, duckdb, postgres"):
        guard_sql("SELECT 1", "mysql", max_rows=10)
