"""Table questions over real SQLite and DuckDB (CSV): guarded, read-only, timed out, capped, rendered."""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core.errors import InputError, SQLRejected, TableError
from core.llm.fake import FakeBackend
from core.tables.render import text_table
from core.tables.service import TableService, table_json
from core.tables.sources import QueryFailed, QueryTimeout, run_query
from tests.fixtures.tables import DemoTables, file_digest, scripted, sqlite_fingerprint, table_settings
from tests.unit.test_tables_guard import HOSTILE

Factory = Callable[..., TableService]
FOREVER = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"


@pytest.fixture
def service(tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory) -> TableService:
    """A service over the demo tickets (SQLite) and sales (CSV), without a model."""
    return table_service_factory(table_settings(tmp_path, demo_tables.specs(), max_rows=1000, chat_rows=20))


def _fingerprint(demo: DemoTables) -> tuple[object, str, str]:
    return sqlite_fingerprint(demo.tickets), file_digest(demo.tickets), file_digest(demo.sales)


async def test_catalog_lists_tables_columns_samples_and_counts(service: TableService) -> None:
    tickets, sales = await service.catalogs()
    by_name = {t.name: t for t in tickets.tables}
    assert tickets.dialect == "sqlite" and set(by_name) == {"teams", "tickets"}
    assert by_name["tickets"].rows == 500 and by_name["teams"].rows == 5
    status = next(c for c in by_name["tickets"].columns if c.name == "status")
    assert set(status.samples) <= {"open", "closed"} and status.samples
    assert sales.dialect == "duckdb" and sales.tables[0].name == "sales" and sales.tables[0].rows == 144
    assert [c.name for c in sales.tables[0].columns] == ["month", "region", "product", "units", "revenue"]


async def test_query_answers_with_numbers_table_and_bar_chart(service: TableService) -> None:
    answer = await service.query(
        "tickets",
        "SELECT team, count(*) AS closed FROM tickets WHERE status = 'closed' GROUP BY team ORDER BY 2 DESC",
    )
    assert answer.table.columns == ["team", "closed"]
    assert answer.table.rows[0] == ["platform", 121] and len(answer.table.rows) == 5
    # The sentence is the answer alone: the SQL travels in the structured part, never in the text.
    assert answer.text.startswith("closed by team: platform: 121") and "SQL" not in answer.text
    assert answer.table.sql.endswith("LIMIT 1000")
    assert answer.table.chart is not None and answer.table.chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert answer.table.csv is None
    assert "platform |    121" in text_table(
        answer.table.columns, answer.table.rows, max_rows=answer.table.chat_rows
    )
    data = table_json(answer)
    assert {"sql", "columns", "rows", "answer", "chart"} <= set(data) and data["chart"] == str(
        answer.table.chart
    )
    assert data["answer"] == answer.text and answer.as_dict()["table"]["sql"] == answer.table.sql


async def test_time_series_on_csv_gets_a_line_chart(service: TableService) -> None:
    answer = await service.query(
        "sales", "SELECT month, sum(revenue) AS revenue FROM sales GROUP BY month ORDER BY month"
    )
    assert len(answer.table.rows) == 12 and answer.table.rows[0][0] == "2025-11-01"
    assert answer.table.chart is not None and answer.table.chart.exists()


@pytest.mark.parametrize("dialect", ["sqlite", "duckdb"])
async def test_hostile_statements_are_refused_and_data_is_unchanged(
    service: TableService, demo_tables: DemoTables, dialect: str
) -> None:
    source = "tickets" if dialect == "sqlite" else "sales"
    before = _fingerprint(demo_tables)
    for sql in HOSTILE[dialect]:
        with pytest.raises(SQLRejected):
            await service.query(source, sql)
    assert _fingerprint(demo_tables) == before


SQLITE_WRITES = [
    "DELETE FROM tickets",
    "UPDATE tickets SET status = 'open'",
    "INSERT INTO teams VALUES ('x', 'y', 'z')",
    "DROP TABLE teams",
    "CREATE TABLE evil (x)",
    "ATTACH DATABASE '{tmp}/evil.db' AS evil",
    "PRAGMA query_only = OFF",
    "PRAGMA writable_schema = ON",
    "VACUUM INTO '{tmp}/copy.db'",
    "SELECT load_extension('/nonexistent/evil.so')",
]
DUCKDB_WRITES = [
    "COPY sales TO '{tmp}/out.csv'",
    "CREATE TABLE evil AS SELECT * FROM sales",
    "DROP VIEW sales",
    "ATTACH '{tmp}/evil.duckdb' AS evil",
    "INSTALL httpfs",
    "SET enable_external_access = true",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "EXPORT DATABASE '{tmp}/dump'",
]


@pytest.mark.parametrize(("source", "statements"), [("tickets", SQLITE_WRITES), ("sales", DUCKDB_WRITES)])
async def test_statements_that_bypass_the_guard_are_refused_by_the_read_only_connection(
    service: TableService, demo_tables: DemoTables, tmp_path: Path, source: str, statements: list[str]
) -> None:
    before = _fingerprint(demo_tables)
    await service.catalog(source)
    for template in statements:
        sql = template.format(tmp=tmp_path)
        with pytest.raises(QueryFailed):
            await run_query(service.source(source), sql, max_rows=10, timeout_s=10)
    assert _fingerprint(demo_tables) == before
    for name in ("evil.db", "copy.db", "out.csv", "evil.duckdb", "dump"):
        assert not (tmp_path / name).exists()  # noqa: ASYNC240 — a test's own temp dir


@pytest.mark.parametrize("source", ["tickets", "sales"])
async def test_a_query_that_runs_forever_is_stopped_at_the_timeout(
    tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory, source: str
) -> None:
    service = table_service_factory(table_settings(tmp_path, demo_tables.specs(), timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match="longer than 0.5s"):
        await service.query(source, FOREVER)
    assert time.monotonic() - started < 5
    # The source still works afterwards.
    assert (await service.query(source, f"SELECT count(*) FROM {source}")).table.rows[0][0] in (500, 144)


async def test_a_million_row_result_is_capped_with_a_note_and_a_csv(service: TableService) -> None:
    results = service.settings.path("results")
    results.mkdir(parents=True, exist_ok=True)
    forgotten = results / "sales-0ld.csv"  # a result from weeks ago: writing a new one prunes it
    forgotten.write_text("a\n1\n")
    os.utime(forgotten, (time.time() - 30 * 86400,) * 2)
    answer = await service.query("sales", "SELECT * FROM range(1000000) AS t(i)")
    assert not forgotten.exists()
    assert len(answer.table.rows) == 1000
    assert any("LIMIT 1,000 was added" in n for n in answer.notices)
    assert answer.table.csv is not None and any(answer.table.csv.name in n for n in answer.notices)
    assert not any(str(answer.table.csv.parent) in n for n in answer.notices)  # no server path for users
    with answer.table.csv.open() as fh:
        assert sum(1 for _ in csv.reader(fh)) == 1001
    shown = text_table(answer.table.columns, answer.table.rows, max_rows=answer.table.chat_rows)
    assert shown.count("\n") < 30  # the chat table shows chat_rows, not everything
    lowered = await service.query(
        "tickets",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1000000) "
        "SELECT n FROM r LIMIT 5000000",
    )
    assert len(lowered.table.rows) == 1000 and lowered.table.sql.endswith("LIMIT 1000")


async def test_missing_column_gets_the_database_reason(service: TableService) -> None:
    with pytest.raises(QueryFailed, match="no such column: nope"):
        await service.query("tickets", "SELECT nope FROM tickets")


# --- the ask path with a scripted model ---------------------------------------------------------


def _ask_service(
    tmp_path: Path, demo: DemoTables, factory: Factory, backend: FakeBackend, **limits: object
) -> TableService:
    return factory(table_settings(tmp_path, demo.specs(), **limits), backend)


async def test_ask_runs_the_models_sql_and_answers(
    tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory
) -> None:
    backend = FakeBackend(
        reply="SELECT team, count(*) AS closed FROM tickets WHERE status = 'closed' "
        "GROUP BY team ORDER BY closed DESC;"
    )
    service = _ask_service(tmp_path, demo_tables, table_service_factory, backend)
    answer = await service.ask("How many tickets did each team close?")
    assert answer.table.source == "tickets" and answer.backend == "local" and answer.model == "fake-model"
    assert answer.table.rows[0] == ["platform", 121]
    assert "platform: 121" in answer.text
    prompt = backend.calls[0].messages[-1].content
    assert "CREATE TABLE tickets" in prompt and "How many tickets did each team close?" in prompt
    assert "CREATE TABLE sales" not in prompt  # the other source's tables stay out
    assert backend.calls[0].options.answer_prefix == "SELECT"


async def test_ask_accepts_a_base_model_continuation_and_prose_with_a_fence(
    tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory
) -> None:
    backend = FakeBackend(reply=" count(*) FROM tickets WHERE status = 'open'\n-- Question: next")
    answer = await _ask_service(tmp_path, demo_tables, table_service_factory, backend).ask(
        "How many open tickets?"
    )
    assert answer.table.rows == [[77]] and answer.text.startswith("The answer is 77")
    fenced = FakeBackend(
        reply="Sure! Here is the query:\n```sql\nSELECT region, sum(revenue) AS revenue "
        "FROM sales GROUP BY region\n```"
    )
    answer = await _ask_service(tmp_path, demo_tables, table_service_factory, fenced).ask(
        "revenue per region", source="sales"
    )
    assert answer.table.source == "sales" and len(answer.table.rows) == 4


async def test_bad_sql_is_repaired_with_the_database_error(
    tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory
) -> None:
    backend = FakeBackend(
        reply=scripted(
            "SELECT team_id, count(*) FROM tickets GROUP BY team_id",
            "SELECT team, count(*) AS n FROM tickets GROUP BY team ORDER BY n DESC",
        )
    )
    service = _ask_service(tmp_path, demo_tables, table_service_factory, backend)
    before = _fingerprint(demo_tables)
    answer = await service.ask("tickets per team")
    assert len(backend.calls) == 2
    repair_prompt = backend.calls[1].messages[-1].content
    assert "no such column: team_id" in repair_prompt and "SELECT team_id" in repair_prompt
    assert answer.table.rows[0] == ["platform", 148]
    assert _fingerprint(demo_tables) == before


async def test_hostile_model_output_is_refused_then_repaired(
    tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory
) -> None:
    backend = FakeBackend(reply=scripted("DELETE FROM tickets", "SELECT count(*) AS n FROM tickets"))
    before = _fingerprint(demo_tables)
    answer = await _ask_service(tmp_path, demo_tables, table_service_factory, backend).ask(
        "how many tickets?"
    )
    assert answer.table.rows == [[500]]
    assert "changes data" in backend.calls[1].messages[-1].content
    assert _fingerprint(demo_tables) == before


async def test_output_that_is_not_sql_ends_in_a_clear_message(
    tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory
) -> None:
    backend = FakeBackend(reply="I am sorry, I cannot help with that question.")
    service = _ask_service(tmp_path, demo_tables, table_service_factory, backend, repairs=2)
    with pytest.raises(TableError, match="did not write a SQL query") as info:
        await service.ask("what is the meaning of life?")
    assert len(backend.calls) == 3 and "\n" not in str(info.value)


async def test_repairs_run_out_with_the_last_reason(
    tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory
) -> None:
    backend = FakeBackend(reply="SELECT missing_col FROM tickets")
    service = _ask_service(tmp_path, demo_tables, table_service_factory, backend, repairs=1)
    with pytest.raises(TableError, match=r"after 2 tries: .*no such column: missing_col"):
        await service.ask("what is missing?")
    assert len(backend.calls) == 2


async def test_ask_picks_the_source_whose_tables_fit_the_question(
    tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory
) -> None:
    backend = FakeBackend(reply="SELECT product, sum(units) AS units FROM sales GROUP BY product")
    answer = await _ask_service(tmp_path, demo_tables, table_service_factory, backend).ask(
        "units sold per product"
    )
    assert answer.table.source == "sales"
    assert "CREATE TABLE sales" in backend.calls[0].messages[-1].content


async def test_acl_hides_sources_the_asker_may_not_read(
    tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory
) -> None:
    specs = demo_tables.specs()
    specs[1]["acl"] = ["finance"]
    backend = FakeBackend(reply="SELECT count(*) FROM sales")
    service = table_service_factory(table_settings(tmp_path, specs), backend)
    public = frozenset({"public"})
    assert [c.source for c in await service.catalogs(acl=public)] == ["tickets"]
    with pytest.raises(TableError, match="Unknown table source 'sales'; available: tickets"):
        await service.query("sales", "SELECT count(*) FROM sales", acl=public)
    with pytest.raises(TableError, match="Unknown table source 'sales'"):
        await service.ask("revenue?", source="sales", acl=public)
    assert (await service.query("sales", "SELECT count(*) FROM sales", acl=frozenset({"finance"}))).table.rows == [
        [144]
    ]
    assert (await service.query("sales", "SELECT count(*) FROM sales")).table.rows == [[144]]  # the operator


async def test_empty_question_and_missing_file_get_clear_errors(
    tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory
) -> None:
    specs = demo_tables.specs() + [{"name": "gone", "type": "sqlite", "path": str(tmp_path / "gone.db")}]
    service = table_service_factory(table_settings(tmp_path, specs), FakeBackend(reply="SELECT 1"))
    with pytest.raises(InputError, match="empty"):
        await service.ask("   ")
    with pytest.raises(TableError, match=r"gone.db does not exist — check tables\[\].path"):
        await service.query("gone", "SELECT 1")


async def test_a_broken_source_is_skipped_when_asking_across_sources(
    tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory
) -> None:
    specs = demo_tables.specs() + [{"name": "gone", "type": "sqlite", "path": str(tmp_path / "gone.db")}]
    backend = FakeBackend(reply="SELECT count(*) AS n FROM tickets")
    service = table_service_factory(table_settings(tmp_path, specs), backend)
    answer = await service.ask("how many tickets?")
    assert answer.table.rows == [[500]]
    assert any("Skipped a source" in n and "gone.db does not exist" in n for n in answer.notices)
    errors: list[str] = []
    assert [c.source for c in await service.catalogs(errors=errors)] == ["tickets", "sales"]
    assert len(errors) == 1


async def test_parquet_files_and_csv_directories_become_tables(
    tmp_path: Path, demo_tables: DemoTables, table_service_factory: Factory
) -> None:
    import duckdb

    folder = tmp_path / "exports"
    folder.mkdir()
    writer = duckdb.connect()
    writer.execute(
        f"COPY (SELECT * FROM read_csv('{demo_tables.sales}')) TO '{tmp_path}/sales.parquet' (FORMAT PARQUET)"
    )
    writer.close()
    (folder / "2026-regions.csv").write_text("region,manager\nnorth,Ana\nsouth,Wei\n")  # noqa: ASYNC240
    (folder / "products.csv").write_text("product,price\nbasic,19\nteam,49\n")  # noqa: ASYNC240
    specs = [
        {"name": "pq", "type": "parquet", "path": str(tmp_path / "sales.parquet")},
        {"name": "exports", "type": "csv", "path": str(folder)},
    ]
    service = table_service_factory(table_settings(tmp_path, specs))
    assert (await service.query("pq", "SELECT count(*), sum(units) FROM pq")).table.rows[0][0] == 144
    catalog = await service.catalog("exports")
    assert sorted(t.name for t in catalog.tables) == ["products", "t_2026_regions"]
    joined = await service.query("exports", "SELECT count(*) FROM t_2026_regions r, products p")
    assert joined.table.rows == [[4]]
    with pytest.raises(SQLRejected, match="read_parquet"):
        await service.query("exports", f"SELECT * FROM read_parquet('{tmp_path}/sales.parquet')")


async def test_concurrent_queries_share_a_source_safely(service: TableService) -> None:
    import asyncio

    sqls = [f"SELECT count(*) FROM sales WHERE units > {i}" for i in range(8)]
    sqls += [f"SELECT count(*) FROM tickets WHERE id > {i}" for i in range(8)]
    results = await asyncio.gather(*(service.query("sales" if "sales" in s else "tickets", s) for s in sqls))
    assert [r.table.rows[0][0] for r in results[8:]] == [500 - i for i in range(8)]
    assert all(isinstance(r.table.rows[0][0], int) for r in results[:8])


async def test_with_many_tables_only_relevant_ones_reach_the_prompt(
    tmp_path: Path, table_service_factory: Factory
) -> None:
    import sqlite3

    path = tmp_path / "wide.db"
    conn = sqlite3.connect(path)
    for i in range(40):
        conn.execute(f"CREATE TABLE audit_{i} (id INTEGER, payload TEXT, created TEXT)")
    conn.execute("CREATE TABLE invoices (id INTEGER, customer TEXT, amount REAL, paid_on DATE)")
    conn.execute("CREATE TABLE customers (name TEXT, region TEXT)")
    conn.execute(
        "INSERT INTO invoices VALUES (1, 'acme', 10.5, '2026-01-01'), (2, 'acme', 4.5, '2026-02-01')"
    )
    conn.commit()
    conn.close()
    backend = FakeBackend(reply="SELECT customer, sum(amount) AS total FROM invoices GROUP BY customer")
    spec = [{"name": "billing", "type": "sqlite", "path": str(path)}]
    service = table_service_factory(table_settings(tmp_path, spec, prompt_tables=3), backend)
    answer = await service.ask("total invoice amount per customer")
    assert answer.table.rows == [["acme", 15]]
    prompt = backend.calls[0].messages[-1].content
    assert "CREATE TABLE invoices" in prompt and "CREATE TABLE customers" in prompt
    assert prompt.count("CREATE TABLE") <= 3 and "audit_1 " not in prompt
