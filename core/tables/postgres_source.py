"""PostgreSQL through psycopg 3, every session read-only with a server-side statement timeout.

The connection options carry ``default_transaction_read_only=on`` and ``statement_timeout``, so the
server itself refuses writes and stops long statements; the wall-clock limit in
:func:`core.tables.sources.run_query` also sends a cancel request. Use a role that can only read
(``GRANT SELECT``) as the third line of defence.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import TupleRow

from core.errors import TableError
from core.tables.catalog import TableInfo, quote_ident, read_tables
from core.tables.sources import QueryResult, QueryTimeout, catalog_error, first_line, query_error

if TYPE_CHECKING:
    from core.tables.config import TableSourceConfigured, TableSourceSpec

log = logging.getLogger(__name__)

_TEXTISH = ("char", "text", "date", "time", "uuid", "enum", "USER-DEFINED")
_CATALOG_SQL = """
SELECT c.table_schema, c.table_name, c.column_name, c.data_type
FROM information_schema.columns c
JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
WHERE c.table_schema NOT IN ('pg_catalog', 'information_schema') AND c.table_schema NOT LIKE 'pg_toast%'
  AND t.table_type IN ('BASE TABLE', 'VIEW')
ORDER BY c.table_schema, c.table_name, c.ordinal_position
"""
_SAMPLE_SQL = (
    "SELECT DISTINCT {column} FROM (SELECT {column} FROM {table} WHERE {column} IS NOT NULL "
    "LIMIT 200) s LIMIT {n}"
)


def conninfo(url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (``postgresql+psycopg://`` works too)."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


class PostgresConnection:
    """One read-only session."""

    def __init__(self, conn: psycopg.Connection[TupleRow]) -> None:
        self._conn = conn
        self._interrupted = False

    def fetch(self, sql: str, max_rows: int, max_bytes: int) -> QueryResult:
        """Run ``sql``; stop at ``max_rows`` rows or ``max_bytes`` bytes.

        The rows come through a server-side cursor (``DECLARE`` … ``FETCH n``, in a read-only
        transaction), a batch at a time, so the server keeps what is not fetched.
        """
        try:
            try:
                with self._conn.transaction(), self._conn.cursor(name="hearth_query") as server_side:
                    server_side.execute(sql.encode())
                    return self._result(server_side, max_rows, max_bytes)
            except (pg_errors.SyntaxError, pg_errors.FeatureNotSupported, pg_errors.InvalidCursorDefinition):
                # Not a query a cursor can hold (only the guard's own bypass tests send those): run
                # it plainly, so the read-only session is what refuses it.
                with self._conn.cursor() as cur:
                    cur.execute(sql.encode())
                    return self._result(cur, max_rows, max_bytes)
        except pg_errors.QueryCanceled as exc:
            raise QueryTimeout("The query was stopped at its time limit.") from exc
        except psycopg.Error as exc:
            raise query_error(exc, interrupted=self._interrupted) from exc

    @staticmethod
    def _result(cur: psycopg.Cursor[TupleRow], max_rows: int, max_bytes: int) -> QueryResult:
        if cur.description is None:
            return QueryResult([], [])
        columns = [d.name for d in cur.description]
        types = [str(d.type_code) for d in cur.description]
        return QueryResult.fetched(columns, cur.fetchmany, max_rows, max_bytes, types)

    def interrupt(self) -> None:
        """Ask the server to cancel the running statement."""
        self._interrupted = True
        cancel = getattr(self._conn, "cancel_safe", None)
        if cancel is not None:
            cancel(timeout=5.0)
        else:
            self._conn.cancel()

    def close(self) -> None:
        """Close the session."""
        self._conn.close()


class PostgresSource:
    """A PostgreSQL database."""

    dialect = "postgres"

    def __init__(self, spec: TableSourceSpec, settings: TableSourceConfigured) -> None:
        assert spec.url is not None
        self.spec = spec
        self.name = spec.name
        self._url = conninfo(spec.url.get_secret_value())

    def _open(self, timeout_s: float) -> psycopg.Connection[TupleRow]:
        ms = max(1, int(timeout_s * 1000))
        options = (
            f"-c default_transaction_read_only=on -c statement_timeout={ms} "
            f"-c idle_in_transaction_session_timeout={max(ms, 10_000)} -c lock_timeout={ms}"
        )
        try:
            return psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=max(2, min(int(timeout_s), 10)),
                options=options,
                application_name="hearth-tables",
            )
        except psycopg.Error as exc:
            # The URL may hold a password: name the source, never the URL.
            raise TableError(
                f"Table source '{self.name}': cannot connect to PostgreSQL ({first_line(exc)}) — "
                "check tables[].url."
            ) from exc

    def connect(self, timeout_s: float) -> PostgresConnection:
        """A read-only session with a statement timeout."""
        return PostgresConnection(self._open(timeout_s))

    def describe(self, samples: int) -> list[TableInfo]:
        """Tables and views outside the system schemas; ``schema.table`` names outside ``public``."""
        conn = self._open(30.0)
        try:
            grouped: dict[tuple[str, str], list[tuple[str, str]]] = {}
            for schema, table, column, typ in conn.execute(_CATALOG_SQL).fetchall():
                grouped.setdefault((schema, table), []).append((column, typ))
            layout = [
                (
                    table if schema == "public" else f"{schema}.{table}",
                    quote_ident(schema) + "." + quote_ident(table),
                    [(column, typ.upper()) for column, typ in columns],
                )
                for (schema, table), columns in grouped.items()
            ]
            query = functools.partial(_safe, conn)
            return read_tables(
                self.name, layout, query, samples=samples, textish=_TEXTISH, sample_sql=_SAMPLE_SQL
            )
        except psycopg.Error as exc:
            raise catalog_error(self.name, exc) from exc
        finally:
            conn.close()

    def close(self) -> None:
        """Nothing is kept open."""


def _safe(conn: psycopg.Connection[TupleRow], sql: str) -> list[TupleRow] | None:
    """The rows of a catalog query, or None when the database refused it (no rights on that table…)."""
    try:
        return conn.execute(sql.encode()).fetchall()
    except psycopg.Error:
        log.debug("catalog query failed: %s", sql, exc_info=True)
        return None
