"""CSV and Parquet files queried in-process through DuckDB.

Each source gets a small DuckDB file under ``<home>/tables`` that holds only views over its data
files. It is opened ``read_only`` with file access limited to those files and the configuration
locked, so neither COPY … TO, ATTACH, INSTALL nor ``read_csv('/etc/passwd')`` work even if a
statement got past the guard. A changed data file (size or mtime) rebuilds the views.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from core.errors import TableError
from core.tables.catalog import TableInfo, quote_ident, read_tables
from core.tables.sources import (
    QueryFailed,
    QueryResult,
    QueryTimeout,
    Row,
    catalog_error,
    first_line,
    query_error,
    require_file,
)

if TYPE_CHECKING:
    from core.tables.config import TableSourceConfigured, TableSourceSpec

log = logging.getLogger(__name__)

_READERS = {"csv": ("read_csv", ("*.csv", "*.tsv", "*.csv.gz")), "parquet": ("read_parquet", ("*.parquet",))}
_STALE_S = 86_400.0  # views files older than this, left by processes that died, are removed
_TEXTISH = ("VARCHAR", "DATE", "TIME", "ENUM")
_SAMPLE_SQL = (
    "SELECT DISTINCT {column} FROM (SELECT {column} FROM {table} WHERE {column} IS NOT NULL "
    "LIMIT 200) LIMIT {n}"
)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def table_name(stem: str) -> str:
    """A plain SQL identifier from a file name."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_").lower() or "data"
    return f"t_{name}" if name[0].isdigit() else name


class DuckDBConnection:
    """A cursor on the source's locked, read-only DuckDB database."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self._cur = cursor
        self._interrupted = False

    def fetch(self, sql: str, max_rows: int, max_bytes: int) -> QueryResult:
        """Run ``sql``; stop at ``max_rows`` rows or ``max_bytes`` bytes."""
        try:
            self._cur.execute(sql)
            description = self._cur.description or []
            return QueryResult.fetched(
                [d[0] for d in description],
                self._cur.fetchmany,
                max_rows,
                max_bytes,
                [str(d[1]) for d in description],
            )
        except duckdb.InterruptException as exc:
            raise QueryTimeout("The query was stopped at its time limit.") from exc
        except duckdb.OutOfMemoryException as exc:
            raise QueryFailed(
                "The query needs more memory than table_limits.duckdb_memory_mb allows — "
                "ask for less (a filter or an aggregate)."
            ) from exc
        except duckdb.Error as exc:
            raise query_error(exc, interrupted=self._interrupted) from exc

    def interrupt(self) -> None:
        """Abort the running statement."""
        self._interrupted = True
        self._cur.interrupt()

    def close(self) -> None:
        """Close the cursor."""
        self._cur.close()


class DuckDBSource:
    """CSV or Parquet files (one file, or every matching file in a directory) as read-only views."""

    dialect = "duckdb"

    def __init__(self, spec: TableSourceSpec, settings: TableSourceConfigured) -> None:
        self.spec = spec
        self.name = spec.name
        self._dir = settings.path("tables")
        self._memory_mb = settings.table_limits.duckdb_memory_mb
        self._threads = settings.table_limits.duckdb_threads
        self._lock = threading.Lock()
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._signature = ""
        self._instance = uuid.uuid4().hex[:8]
        self._db: Path | None = None

    def files(self) -> dict[str, Path]:
        """View name -> data file."""
        path = require_file(self.spec)
        reader, patterns = _READERS[self.spec.type]
        if path.is_file():
            return {table_name(self.spec.name): path}
        found: dict[str, Path] = {}
        for pattern in patterns:
            for file in sorted(path.glob(pattern)):
                found.setdefault(table_name(file.name.split(".")[0]), file.resolve())
        if not found:
            raise TableError(f"Table source '{self.name}': no {' or '.join(patterns)} files in {path}.")
        return found

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor on the shared locked connection, which is rebuilt when a data file changed."""
        files = self.files()
        stats = [(n, str(p), p.stat().st_size, p.stat().st_mtime_ns) for n, p in sorted(files.items())]
        signature = hashlib.sha256(repr((self.spec.type, stats)).encode()).hexdigest()[:16]
        with self._lock:
            if self._conn is not None and signature == self._signature:
                return self._conn.cursor()
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            db = self._build(files, signature)
            self._db = db
            conn = duckdb.connect(str(db), read_only=True)
            try:
                paths = ", ".join(_literal(str(p)) for p in files.values())
                conn.execute(f"SET memory_limit='{self._memory_mb}MB'")
                conn.execute(f"SET threads={self._threads}")
                conn.execute(f"SET allowed_paths=[{paths}]")
                conn.execute("SET enable_external_access=false")
                conn.execute("SET autoinstall_known_extensions=false")
                conn.execute("SET autoload_known_extensions=false")
                with contextlib.suppress(duckdb.Error):  # Python client only: no scans of Python variables
                    conn.execute("SET python_enable_replacements=false")
                conn.execute("SET lock_configuration=true")
            except duckdb.Error:
                conn.close()
                raise
            self._conn, self._signature = conn, signature
            return conn.cursor()

    def _build(self, files: dict[str, Path], signature: str) -> Path:
        """Write this source object's own views file.

        Each object gets its own file: DuckDB shares one database instance per file within a
        process, and the locked configuration of one would stop another from opening it.
        """
        self._dir.mkdir(parents=True, exist_ok=True)
        stem = table_name(self.name)
        target = self._dir / f"{stem}-{signature}-{self._instance}.duckdb"
        reader = _READERS[self.spec.type][0]
        tmp = target.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        conn = duckdb.connect(str(tmp))
        try:
            for view, path in files.items():
                conn.execute(
                    f"CREATE VIEW {quote_ident(view)} AS SELECT * FROM {reader}({_literal(str(path))})"
                )
                conn.execute(f"SELECT * FROM {quote_ident(view)} LIMIT 0")  # fail now on unreadable files
        except duckdb.Error as exc:
            conn.close()
            tmp.unlink(missing_ok=True)
            raise TableError(
                f"Table source '{self.name}': cannot read its {self.spec.type} data ({first_line(exc)})."
            ) from exc
        conn.close()
        tmp.replace(target)
        stale = time.time() - _STALE_S
        for old in self._dir.glob(f"{stem}-*.duckdb*"):
            if old != target and (
                old.name.endswith(f"-{self._instance}.duckdb") or old.stat().st_mtime < stale
            ):
                old.unlink(missing_ok=True)
        return target

    def connect(self, timeout_s: float) -> DuckDBConnection:
        """A cursor on the read-only views database."""
        try:
            return DuckDBConnection(self._cursor())
        except duckdb.Error as exc:
            raise TableError(f"Table source '{self.name}': cannot open DuckDB ({first_line(exc)}).") from exc

    def describe(self, samples: int) -> list[TableInfo]:
        """Views with columns, text samples and row counts."""
        cur = self._cursor()
        timer = threading.Timer(30.0, cur.interrupt)
        timer.start()
        try:
            cols: dict[str, list[tuple[str, str]]] = {}
            for table, column, typ in cur.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position"
            ).fetchall():
                cols.setdefault(table, []).append((column, typ))
            layout = [(table, quote_ident(table), columns) for table, columns in cols.items()]
            query = functools.partial(_safe, cur)
            return read_tables(
                self.name, layout, query, samples=samples, textish=_TEXTISH, sample_sql=_SAMPLE_SQL
            )
        except duckdb.Error as exc:
            raise catalog_error(self.name, exc) from exc
        finally:
            timer.cancel()
            cur.close()

    def close(self) -> None:
        """Close the shared connection and remove this object's views file."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._db is not None:
                self._db.unlink(missing_ok=True)
                Path(f"{self._db}.wal").unlink(missing_ok=True)
                self._db = None


def _safe(cur: duckdb.DuckDBPyConnection, sql: str) -> list[Row] | None:
    """The rows of a catalog query, or None when DuckDB failed it (an unreadable file…)."""
    started = time.monotonic()
    try:
        return cur.execute(sql).fetchall()
    except duckdb.Error:
        log.debug("catalog query failed after %.1fs", time.monotonic() - started, exc_info=True)
        return None
