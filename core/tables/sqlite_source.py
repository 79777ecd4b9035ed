"""SQLite files, opened read-only (``file:…?mode=ro``, ``query_only``, an authorizer that allows reads)."""

from __future__ import annotations

import functools
import sqlite3
import time
from typing import TYPE_CHECKING

from core.errors import TableError
from core.tables.catalog import TableInfo, quote_ident, read_tables
from core.tables.sources import (
    QueryResult,
    ResultTooLarge,
    Row,
    catalog_error,
    first_line,
    query_error,
    require_file,
)

if TYPE_CHECKING:
    from core.tables.config import TableSourceConfigured, TableSourceSpec

_ALLOWED_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    sqlite3.SQLITE_RECURSIVE,
}
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
_TEXTISH = ("CHAR", "TEXT", "CLOB", "DATE", "TIME")
_SAMPLE_SQL = "SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL AND {column} != '' LIMIT {n}"


def _authorize(action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
    """Allow only what a SELECT needs; SQLite itself denies the rest (writes, ATTACH, PRAGMA…)."""
    if action not in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


class SQLiteConnection:
    """One read-only SQLite connection guarded by an authorizer."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._interrupted = False

    def fetch(self, sql: str, max_rows: int, max_bytes: int) -> QueryResult:
        """Run ``sql``; stop at ``max_rows`` rows or ``max_bytes`` bytes.

        SQLite itself refuses to build a string or blob longer than ``max_bytes``
        (``SQLITE_LIMIT_LENGTH``), so ``printf('%.*c', 300000000, 'x')`` fails before it allocates.
        """
        self._conn.set_authorizer(_authorize)
        self._conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(1024, max_bytes))
        try:
            cur = self._conn.execute(sql)
            return QueryResult.fetched(
                [d[0] for d in cur.description or ()], cur.fetchmany, max_rows, max_bytes
            )
        except sqlite3.DataError as exc:
            if "too big" in str(exc):
                raise ResultTooLarge(max_bytes) from exc
            raise query_error(exc, interrupted=self._interrupted) from exc
        except sqlite3.Error as exc:
            raise query_error(exc, interrupted=self._interrupted) from exc

    def interrupt(self) -> None:
        """Abort the running statement."""
        self._interrupted = True
        self._conn.interrupt()

    def close(self) -> None:
        """Close."""
        self._conn.close()


class SQLiteSource:
    """A SQLite database file."""

    dialect = "sqlite"

    def __init__(self, spec: TableSourceSpec, settings: TableSourceConfigured) -> None:
        self.spec = spec
        self.name = spec.name

    def _open(self, timeout_s: float) -> sqlite3.Connection:
        path = require_file(self.spec)
        uri = path.as_uri() + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=min(timeout_s, 5.0))
            conn.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            raise TableError(
                f"Table source '{self.name}': cannot open {path} as SQLite ({first_line(exc)})."
            ) from exc
        return conn

    def connect(self, timeout_s: float) -> SQLiteConnection:
        """A read-only connection."""
        return SQLiteConnection(self._open(timeout_s))

    def describe(self, samples: int) -> list[TableInfo]:
        """Tables and views with columns, text samples and row counts."""
        conn = self._open(30.0)
        deadline = time.monotonic() + 30.0
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type IN ('table','view') "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
            layout = [
                (
                    name,
                    quote_ident(name),
                    [
                        (r[1], (r[2] or "").upper())
                        for r in conn.execute(f"PRAGMA table_info({quote_ident(name)})")
                    ],
                )
                for name in names
            ]
            query = functools.partial(_safe, conn)
            return read_tables(
                self.name, layout, query, samples=samples, textish=_TEXTISH, sample_sql=_SAMPLE_SQL
            )
        except sqlite3.Error as exc:
            raise catalog_error(self.name, exc) from exc
        finally:
            conn.close()

    def close(self) -> None:
        """Nothing is kept open."""


def _safe(conn: sqlite3.Connection, sql: str) -> list[Row] | None:
    """The rows of a catalog query, or None when SQLite refused it."""
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.Error:
        return None
