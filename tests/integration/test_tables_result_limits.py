"""Results are capped in bytes as well as rows, on the real engines; DuckDB runs with a memory limit.

The red team's query ``SELECT printf('%.*c', 300000000, 'x') … LIMIT 3`` returned 900 MB (60 MB
through /v1/tables/ask). Here the same kind of query goes through ``TableService.query`` (the
guard, the read-only connection, the fetch) on SQLite, DuckDB and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from core.errors import SQLRejected, TableError
from core.tables.service import TableService
from core.tables.sources import ResultTooLarge, fetch_capped, run_query
from tests.fixtures.postgres import PostgresDatabase
from tests.fixtures.tables import DemoTables, table_settings

Factory = Callable[..., TableService]
MB = 1 << 20


def limited(tmp_path: Path, tables: list[dict[str, object]], **limits: object) -> object:
    return table_settings(tmp_path, tables, max_rows=1000, timeout_s=20, max_result_bytes=MB, **limits)


@pytest.mark.parametrize(
    ("source", "sql"),
    [
        ("tickets", "SELECT printf('%.*c', 300000000, 'x') AS v FROM tickets LIMIT 3"),
        ("tickets", "SELECT zeroblob(1000 * 1000 * 300) AS v FROM tickets LIMIT 3"),
        ("sales", "SELECT repeat('x', 300000000) AS v FROM sales LIMIT 3"),
        ("sales", "SELECT lpad('x', 300000000, 'y') AS v FROM sales LIMIT 3"),
        ("tickets", "SELECT printf('%300000000c', 'x') AS v FROM tickets LIMIT 3"),
    ],
)
async def test_a_literal_huge_value_is_refused_before_it_runs(
    source: str, sql: str, tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory
) -> None:
    service = table_service_factory(limited(tmp_path, demo_tables.specs()))
    with pytest.raises(SQLRejected, match=r"builds a value of 300,000,000 characters .* ask for less"):
        await service.query(source, sql)


async def test_printf_widths_from_arguments_are_refused(
    tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory
) -> None:
    """SQLite's printf walks a computed width to the end even past its length limit (12 s of CPU
    for 300 million), so a width taken from an argument is refused."""
    service = table_service_factory(limited(tmp_path, demo_tables.specs()))
    for sql in (
        "WITH n(size) AS (SELECT 300000000) SELECT printf('%.*c', size, 'x') AS v FROM n, tickets",
        "SELECT printf('%*d', id * 100000000, 1) AS v FROM tickets",
    ):
        with pytest.raises(SQLRejected, match="write the width out"):
            await service.query("tickets", sql)
    answer = await service.query("tickets", "SELECT printf('%5.2f', 3.14159) AS v FROM tickets LIMIT 1")
    assert answer.table is not None and answer.table.rows == [[" 3.14"]]


async def test_sqlite_refuses_to_build_a_huge_value(
    tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory
) -> None:
    service = table_service_factory(limited(tmp_path, demo_tables.specs()))
    # Sizes the guard cannot read (from a column or a CTE): SQLite's own length limit is the byte cap.
    big = "WITH n(size) AS (SELECT 300000000) "
    # The function fails before it allocates, and the asker reads one sentence.
    with pytest.raises(TableError) as err:
        await service.query("tickets", big + "SELECT zeroblob(size) AS v FROM n, tickets LIMIT 3")
    assert isinstance(err.value, ResultTooLarge)
    assert str(err.value) == (
        "The result is too large: one row is over the 1 MB limit (table_limits.max_result_bytes) — "
        "select fewer or shorter columns."
    )
    # Values under the limit whose rows together are over it: the first rows, and a notice.
    answer = await service.query("tickets", "SELECT printf('%.*c', 600000, 'x') AS v FROM tickets LIMIT 3")
    assert answer.table is not None and len(answer.table.rows) == 1
    assert any("larger than 1 MB" in n for n in answer.notices)


async def test_sqlite_rows_stop_at_the_byte_cap_with_a_notice(
    tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory
) -> None:
    service = table_service_factory(limited(tmp_path, demo_tables.specs()))
    answer = await service.query("tickets", "SELECT id, printf('%.*c', 100000, 'x') AS v FROM tickets")
    assert answer.table is not None
    kept = len(answer.table.rows)
    assert 5 <= kept <= 10  # 1 MB of 100 kB rows
    assert sum(len(str(v)) for row in answer.table.rows for v in row) <= MB
    assert any("larger than 1 MB" in n and f"first {kept:,} rows" in n for n in answer.notices), (
        answer.notices
    )


async def test_duckdb_runs_with_the_configured_memory_and_threads(
    tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory
) -> None:
    service = table_service_factory(
        limited(tmp_path, demo_tables.specs(), duckdb_memory_mb=300, duckdb_threads=1)
    )
    sql = "SELECT current_setting('memory_limit') AS m, current_setting('threads') AS t"
    result = await run_query(service.source("sales"), sql, max_rows=1, timeout_s=10)
    assert result.rows == [("286.1 MiB", 1)]  # 300 MB, as DuckDB prints it
    # The defaults bound DuckDB too (it would otherwise take most of the machine's memory).
    default = table_service_factory(table_settings(tmp_path / "d", demo_tables.specs()))
    result = await run_query(default.source("sales"), sql, max_rows=1, timeout_s=10)
    assert result.rows == [("976.5 MiB", 2)]


async def test_duckdb_result_is_capped_in_bytes(
    tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory
) -> None:
    service = table_service_factory(limited(tmp_path, demo_tables.specs()))
    answer = await service.query("sales", "SELECT repeat('x', 50000) AS v, * FROM sales")
    assert answer.table is not None and 10 <= len(answer.table.rows) <= 21
    assert any("larger than 1 MB" in n for n in answer.notices)
    with pytest.raises(ResultTooLarge):
        await service.query(
            "sales", "WITH n(size) AS (SELECT 3000000) SELECT repeat('x', size) AS v FROM n, sales LIMIT 3"
        )


@pytest.fixture
def pg_service(tmp_path: Path, postgres_db: PostgresDatabase, table_service_factory: Factory) -> TableService:
    import psycopg

    with psycopg.connect(postgres_db.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO notes SELECT i, repeat('n', 100000) FROM generate_series(1, 200) i")
    spec = {"name": "wh", "type": "postgres", "url": postgres_db.sqlalchemy_url}
    return table_service_factory(limited(tmp_path, [spec]))


async def test_postgres_result_is_capped_in_bytes_while_fetching(pg_service: TableService) -> None:
    answer = await pg_service.query("wh", "SELECT id, body FROM notes ORDER BY id")
    assert answer.table is not None
    assert [row[0] for row in answer.table.rows] == list(range(1, len(answer.table.rows) + 1))
    assert 5 <= len(answer.table.rows) <= 10
    assert any("larger than 1 MB" in n for n in answer.notices)
    with pytest.raises(ResultTooLarge):
        await pg_service.query(
            "wh", "SELECT repeat('x', 3000000 + i - i) AS v FROM generate_series(1, 3) AS g(i)"
        )
    # A small result is untouched, and the session is still usable after a capped one.
    answer = await pg_service.query("wh", "SELECT count(*) AS n FROM notes")
    assert answer.table is not None and answer.table.rows == [[200]] and not answer.notices


def test_fetch_asks_for_batches_that_fit_the_budget() -> None:
    rows = [(i, "x" * 999) for i in range(10_000)]
    asked: list[int] = []
    position = 0

    def fetch(n: int) -> list[tuple[int, str]]:
        nonlocal position
        asked.append(n)
        batch = rows[position : position + n]
        position += len(batch)
        return batch

    kept, more, capped = fetch_capped(fetch, max_rows=5000, max_bytes=100_000)
    assert len(kept) == 99 and more and capped
    assert asked[0] == 1 and sum(asked) <= 101  # never fetched much past the budget
    position = 0
    kept, more, capped = fetch_capped(fetch, max_rows=50, max_bytes=10 * MB)
    assert len(kept) == 50 and more and not capped
