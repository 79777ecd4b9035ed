"""Table questions over a real PostgreSQL: read-only sessions, guard, cancel on timeout, caps, repair."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from core.errors import SQLRejected, TableError
from core.llm.fake import FakeBackend
from core.tables.service import TableService
from core.tables.sources import QueryFailed, QueryTimeout, run_query
from tests.fixtures.postgres import PostgresDatabase
from tests.fixtures.tables import DEMO_DATA, scripted, table_settings
from tests.unit.test_tables_guard import HOSTILE

Factory = Callable[..., TableService]
FOREVER = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"


@pytest.fixture
def warehouse(postgres_db: PostgresDatabase) -> PostgresDatabase:
    """The demo tickets loaded into a fresh PostgreSQL database, plus a table in another schema."""
    src = sqlite3.connect(DEMO_DATA / "tickets.db")
    teams = src.execute("SELECT name, lead, channel FROM teams").fetchall()
    tickets = src.execute("SELECT id, team, title, priority, status, opened, closed FROM tickets").fetchall()
    src.close()
    with psycopg.connect(postgres_db.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE teams (name text PRIMARY KEY, lead text NOT NULL, channel text NOT NULL)")
        conn.execute(
            "CREATE TABLE tickets (id serial PRIMARY KEY, team text NOT NULL REFERENCES teams(name), "
            "title text, "
            "priority text, status text, opened date NOT NULL, closed date)"
        )
        conn.execute("CREATE SCHEMA ops")
        conn.execute("CREATE TABLE ops.incidents (id int PRIMARY KEY, severity text)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO teams VALUES (%s, %s, %s)", teams)
            cur.executemany("INSERT INTO tickets VALUES (%s, %s, %s, %s, %s, %s, %s)", tickets)
            cur.execute("INSERT INTO ops.incidents VALUES (1, 'sev1'), (2, 'sev2')")
    return postgres_db


def fingerprint(db: PostgresDatabase) -> dict[str, tuple[int, str]]:
    """Row count and md5 of all rows, per table."""
    with psycopg.connect(db.url) as conn:
        out = {}
        for table, key in (("teams", "name"), ("tickets", "id"), ("ops.incidents", "id")):
            count, digest = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY {key}), '')) FROM {table} t"
            ).fetchone()  # type: ignore[misc]
            out[table] = (count, digest)
        out["sequence"] = conn.execute("SELECT last_value, is_called FROM tickets_id_seq").fetchone()  # type: ignore[assignment]
        return out


@pytest.fixture
def service(tmp_path: Path, warehouse: PostgresDatabase, table_service_factory: Factory) -> TableService:
    spec = {
        "name": "warehouse",
        "type": "postgres",
        "url": warehouse.sqlalchemy_url,
        "description": "Tickets",
    }
    return table_service_factory(table_settings(tmp_path, [spec], max_rows=1000, timeout_s=5))


@pytest.mark.postgres
async def test_fixture_gives_a_fresh_database_each_test(postgres_db: PostgresDatabase) -> None:
    with psycopg.connect(postgres_db.url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (postgres_db.name,)
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
    assert postgres_db.sqlalchemy_url.startswith("postgresql+psycopg://")


async def test_catalog_names_tables_outside_public_with_their_schema(service: TableService) -> None:
    catalog = await service.catalog("warehouse")
    by_name = {t.name: t for t in catalog.tables}
    assert set(by_name) == {"teams", "tickets", "ops.incidents"}
    assert by_name["tickets"].rows == 500 and by_name["ops.incidents"].rows == 2
    opened = next(c for c in by_name["tickets"].columns if c.name == "opened")
    assert opened.type == "DATE" and opened.samples


async def test_query_runs_and_renders_a_time_series(service: TableService) -> None:
    answer = await service.query(
        "warehouse",
        "SELECT date_trunc('month', opened)::date AS month, count(*) AS opened "
        "FROM tickets GROUP BY 1 ORDER BY 1",
    )
    assert answer.table.columns == ["month", "opened"] and answer.table.rows[0][0] == "2026-05-01"
    assert sum(r[1] for r in answer.table.rows) == 500
    assert answer.table.chart is not None and answer.table.chart.exists()
    schema = await service.query("warehouse", "SELECT severity FROM ops.incidents ORDER BY id")
    assert schema.table.rows == [["sev1"], ["sev2"]]


async def test_hostile_statements_are_refused_and_data_is_unchanged(
    service: TableService, warehouse: PostgresDatabase
) -> None:
    before = fingerprint(warehouse)
    for sql in HOSTILE["postgres"]:
        with pytest.raises(SQLRejected):
            await service.query("warehouse", sql)
    assert fingerprint(warehouse) == before


WRITES = [
    "DELETE FROM tickets",
    "UPDATE tickets SET status = 'open'",
    "INSERT INTO teams VALUES ('x', 'y', 'z')",
    "CREATE TABLE evil (x int)",
    "DROP TABLE ops.incidents",
    "TRUNCATE teams CASCADE",
    "ALTER TABLE tickets ADD COLUMN x int",
    "SELECT nextval('tickets_id_seq')",
    "WITH d AS (DELETE FROM tickets RETURNING *) SELECT count(*) FROM d",
    "SELECT * FROM tickets FOR UPDATE",
    "SELECT 1; DELETE FROM tickets",
]


async def test_writes_that_bypass_the_guard_are_refused_by_the_read_only_session(
    service: TableService, warehouse: PostgresDatabase
) -> None:
    before = fingerprint(warehouse)
    for sql in WRITES:
        with pytest.raises(QueryFailed, match="read-only|cannot|not allowed"):
            await run_query(service.source("warehouse"), sql, max_rows=10, timeout_s=5)
    assert fingerprint(warehouse) == before


async def test_a_query_that_runs_forever_is_cancelled(
    tmp_path: Path, warehouse: PostgresDatabase, table_service_factory: Factory
) -> None:
    spec = {"name": "warehouse", "type": "postgres", "url": warehouse.url}
    service = table_service_factory(table_settings(tmp_path, [spec], timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match="longer than 0.5s|time limit"):
        await service.query("warehouse", FOREVER)
    assert time.monotonic() - started < 5
    with psycopg.connect(warehouse.url) as conn:
        active = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'hearth-tables' AND state = 'active'"
        ).fetchone()
    assert active == (0,)


async def test_a_million_rows_are_capped_with_a_note(service: TableService) -> None:
    answer = await service.query("warehouse", "SELECT i FROM generate_series(1, 1000000) AS g(i)")
    assert len(answer.table.rows) == 1000 and answer.table.csv is not None
    assert any("LIMIT 1,000 was added" in n for n in answer.notices)


async def test_ask_uses_the_postgres_template_and_repairs(
    tmp_path: Path, warehouse: PostgresDatabase, table_service_factory: Factory
) -> None:
    backend = FakeBackend(
        reply=scripted(
            "SELECT team, count(*) FROM tickets WHERE closed_at IS NOT NULL GROUP BY team",
            "SELECT team, count(*) AS closed FROM tickets WHERE closed IS NOT NULL "
            "GROUP BY team ORDER BY closed DESC",
        )
    )
    spec = {"name": "warehouse", "type": "postgres", "url": warehouse.url}
    service = table_service_factory(table_settings(tmp_path, [spec]), backend)
    before = fingerprint(warehouse)
    answer = await service.ask("How many tickets did each team close?")
    assert answer.table.rows[0] == ["platform", 121]
    assert "PostgreSQL" in backend.calls[0].messages[-1].content
    assert 'column "closed_at" does not exist' in backend.calls[1].messages[-1].content
    assert fingerprint(warehouse) == before


async def test_connection_errors_never_show_the_password(
    tmp_path: Path, table_service_factory: Factory
) -> None:
    spec = {"name": "broken", "type": "postgres", "url": "postgresql://u:s3cretpw@127.0.0.1:1/x"}
    service = table_service_factory(table_settings(tmp_path, [spec]))
    with pytest.raises(TableError, match="cannot connect to PostgreSQL") as info:
        await service.query("broken", "SELECT 1")
    assert "s3cretpw" not in str(info.value)


async def test_a_caller_that_gives_up_cancels_the_server_query(
    tmp_path: Path, warehouse: PostgresDatabase, table_service_factory: Factory
) -> None:
    spec = {"name": "warehouse", "type": "postgres", "url": warehouse.url}
    service = table_service_factory(table_settings(tmp_path, [spec], timeout_s=60))
    await service.catalog("warehouse")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(service.query("warehouse", FOREVER), 0.5)
    deadline = time.monotonic() + 10
    with psycopg.connect(warehouse.url, autocommit=True) as conn:
        while True:
            active = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'hearth-tables' AND state = 'active'"
            ).fetchone()
            if active == (0,) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)  # polling the server, not guessing a duration
    assert active == (0,)
