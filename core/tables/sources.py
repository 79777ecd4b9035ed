"""Table sources behind one Protocol, and the one way queries run: off the event loop, with a deadline.

Every source opens connections that are read-only at the driver (SQLite ``mode=ro`` plus an
authorizer, DuckDB ``read_only`` with file access locked to the source's own files, PostgreSQL
``default_transaction_read_only`` and ``statement_timeout``), so a statement that slipped past the
guard still cannot change anything. Sources register by type in :data:`TABLE_SOURCES`, the
built-ins through the ``hearth.table_sources`` entry point group as a plugin would::

    source = make_source(spec, settings)
    result = await run_query(source, "SELECT 1", max_rows=100, timeout_s=5, max_bytes=8 << 20)

A result is capped in rows *and* bytes while it is fetched (:func:`fetch_capped`), a batch at a
time sized to what is left of the byte budget, so a query whose rows are huge
(``printf('%.*c', 300000000, 'x')``) stops at the budget instead of filling memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from core.errors import TableError
from core.registry import Registry

if TYPE_CHECKING:
    from core.tables.catalog import TableInfo
    from core.tables.config import TableSourceConfigured, TableSourceSpec

log = logging.getLogger(__name__)

# Seconds a query's worker thread gets to stop after it was interrupted before we stop waiting.
_DRAIN_S = 5.0
DEFAULT_MAX_BYTES = 8 << 20  # table_limits.max_result_bytes' default
_MAX_BATCH = 256


class QueryTimeout(TableError):
    """A query ran past its wall-clock limit and was stopped."""


class QueryFailed(TableError):
    """The database refused or failed the query (unknown column, type error…); says the database's reason."""


class ResultTooLarge(TableError):
    """Even one row of the result is over the byte limit."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            f"The result is too large: one row is over the {megabytes(max_bytes)} limit "
            "(table_limits.max_result_bytes) — select fewer or shorter columns."
        )


def megabytes(n: int) -> str:
    """``8 MB``, ``0.5 MB``."""
    return f"{n / 1_048_576:.3g} MB"


# One row as the driver returns it: values of whatever Python type the column maps to.
Row = tuple[object, ...]


@dataclass
class QueryResult:
    """Rows of one query: at most ``max_rows`` and about ``max_bytes``; ``more`` says the database
    had more; ``bytes_capped`` that the byte limit (not the row limit) stopped the fetch."""

    columns: list[str]
    rows: list[Row]
    more: bool = False
    elapsed_ms: float = 0.0
    types: list[str] = field(default_factory=list)
    bytes_capped: bool = False

    @classmethod
    def fetched(
        cls,
        columns: list[str],
        fetch: Callable[[int], Sequence[Sequence[object]]],
        max_rows: int,
        max_bytes: int,
        types: Sequence[str] = (),
    ) -> QueryResult:
        """The result read through ``fetch`` within ``max_rows`` and ``max_bytes`` (:func:`fetch_capped`)."""
        rows, more, bytes_capped = fetch_capped(fetch, max_rows, max_bytes)
        return cls(columns, rows, more=more, types=list(types), bytes_capped=bytes_capped)


def cell_bytes(value: object) -> int:
    """About how many bytes ``value`` takes in a result (its text length for text and binary)."""
    if value is None:
        return 1
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return len(value) + 1
    if isinstance(value, (bool, int, float, Decimal, date, datetime, clock_time, timedelta)):
        return 8
    return len(str(value)) + 1


def fetch_capped(
    fetch: Callable[[int], Sequence[Sequence[object]]], max_rows: int, max_bytes: int
) -> tuple[list[Row], bool, bool]:
    """Rows from ``fetch(n)`` (the next ``n`` rows; fewer at the end) until ``max_rows`` rows or
    ``max_bytes`` bytes; returns ``(rows, more, bytes_capped)``.

    The first batch is one row, later ones as many as the average row size so far says fit in
    what is left of the budget, so no fetch brings much more than the budget into memory.
    ResultTooLarge when the first row alone is over the budget.
    """
    rows: list[Row] = []
    used = 0
    batch = 1
    while True:
        fetched = fetch(batch)
        for raw in fetched:
            row = tuple(raw)
            size = sum(cell_bytes(v) for v in row)
            if used + size > max_bytes:
                if not rows:
                    raise ResultTooLarge(max_bytes)
                return rows, True, True
            if len(rows) == max_rows:
                return rows, True, False
            rows.append(row)
            used += size
        if len(fetched) < batch:
            return rows, False, False
        average = max(1, used // max(1, len(rows)))
        batch = max(1, min(_MAX_BATCH, max_rows + 1 - len(rows), (max_bytes - used) // average))


def catalog_error(source: str, exc: Exception) -> TableError:
    """What a failed catalog read becomes: the source's name and the database's reason."""
    return TableError(f"Table source '{source}': cannot read the catalog ({first_line(exc)}).")


def query_error(exc: Exception, *, interrupted: bool) -> TableError:
    """What a failed statement becomes: a timeout when we stopped it, else the database's reason."""
    if interrupted:
        return QueryTimeout("The query was stopped at its time limit.")
    return QueryFailed(f"The database could not run the query: {first_line(exc)}.")


class Connection(Protocol):
    """One read-only connection, used by one query from one worker thread."""

    def fetch(self, sql: str, max_rows: int, max_bytes: int) -> QueryResult:
        """Run ``sql`` and return at most ``max_rows`` rows of about ``max_bytes`` in all (blocking)."""
        ...

    def interrupt(self) -> None:
        """Stop the running statement (called from another thread)."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class TableSource(Protocol):
    """A place tables live: describes itself and opens read-only connections."""

    name: str
    dialect: str

    def connect(self, timeout_s: float) -> Connection:
        """A read-only connection whose statements stop after ``timeout_s`` (blocking)."""
        ...

    def describe(self, samples: int) -> list[TableInfo]:
        """Tables, column types, up to ``samples`` example values per text column, row counts (blocking)."""
        ...

    def close(self) -> None:
        """Release anything the source keeps open."""
        ...


SourceFactory = Callable[["TableSourceSpec", "TableSourceConfigured"], TableSource]
# Built-ins (csv and parquet through DuckDB, sqlite, postgres) come from the entry points in
# pyproject.toml, so a driver loads only when a source of its type is configured.
TABLE_SOURCES: Registry[SourceFactory] = Registry("table source type", "hearth.table_sources")


def make_source(spec: TableSourceSpec, settings: TableSourceConfigured) -> TableSource:
    """The source for ``spec``; an unknown type names the known ones."""
    return TABLE_SOURCES.get(spec.type)(spec, settings)


def first_line(exc: BaseException) -> str:
    """The first line of a driver error, without the driver's prefixes."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for prefix in ("Binder Error: ", "Catalog Error: ", "Parser Error: ", "Conversion Error: "):
        text = text.removeprefix(prefix)
    return text[:300]


async def run_query(
    source: TableSource, sql: str, *, max_rows: int, timeout_s: float, max_bytes: int = DEFAULT_MAX_BYTES
) -> QueryResult:
    """Run ``sql`` on a fresh read-only connection in a worker thread; interrupt it at ``timeout_s``."""
    started = time.perf_counter()
    conn = await asyncio.to_thread(source.connect, timeout_s)

    def job() -> QueryResult:
        try:
            return conn.fetch(sql, max_rows, max_bytes)
        finally:
            conn.close()

    work = asyncio.ensure_future(asyncio.to_thread(job))
    try:
        result = await asyncio.wait_for(asyncio.shield(work), timeout_s)
    except TimeoutError:
        _stop(conn, work)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(work), _DRAIN_S)
        log.info("query on %s stopped after %.1fs: %s", source.name, timeout_s, sql)
        raise QueryTimeout(
            f"The query ran longer than {timeout_s:g}s and was stopped — "
            "ask for less (a filter or an aggregate)."
        ) from None
    except asyncio.CancelledError:
        _stop(conn, work)
        raise
    result.elapsed_ms = (time.perf_counter() - started) * 1000
    return result


def _stop(conn: Connection, work: asyncio.Future[QueryResult]) -> None:
    """Interrupt a running statement; swallow the interrupted thread's error when it arrives."""
    if not work.done():
        try:
            conn.interrupt()
        except Exception:  # noqa: BLE001 — the connection may have just finished and closed
            log.debug("interrupt failed", exc_info=True)
    work.add_done_callback(lambda f: f.cancelled() or f.exception())


def require_file(spec: TableSourceSpec) -> Path:
    """The source's path, which must exist."""
    assert spec.path is not None
    path = spec.path.expanduser()
    if not path.exists():
        raise TableError(
            f"Table source '{spec.name}': {path} does not exist — check tables[].path in hearth.yaml."
        )
    return path.resolve()
