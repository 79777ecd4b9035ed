"""The state database: SQLite by default, PostgreSQL in production (``database.url``).

Feature modules declare their tables on :data:`metadata` and call :meth:`Database.ensure`
with them; all calls run in a worker thread so the event loop never blocks::

    db = Database(settings.database_url)
    await db.ensure([seen_events])
    fresh = await db.first_time("slack", event_id)
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

T = TypeVar("T")

metadata = sa.MetaData()

seen_events = sa.Table(
    "seen_events",
    metadata,
    sa.Column("surface", sa.String(32), primary_key=True),
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("seen_at", sa.Float, nullable=False),
)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get their directory created and WAL mode."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


class Database:
    """A SQLAlchemy engine used from async code."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._ensured: set[str] = set()
        self._ddl_lock = threading.Lock()

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self.engine.dialect.name

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` inside a transaction in a worker thread."""

        def work() -> T:
            with self.engine.begin() as conn:
                return fn(conn)

        return await asyncio.to_thread(work)

    async def ensure(self, tables: Sequence[sa.Table]) -> None:
        """Create ``tables`` if they do not exist (once per process, safe under concurrency)."""
        if all(t.name in self._ensured for t in tables):
            return
        await asyncio.to_thread(self._create, list(tables))

    def _create(self, tables: list[sa.Table]) -> None:
        # One thread at a time in this process; another process (a second replica) may still race
        # us between "does it exist?" and CREATE, which surfaces as "already exists": check again.
        with self._ddl_lock:
            todo = [t for t in tables if t.name not in self._ensured]
            for attempt in range(3):
                try:
                    metadata.create_all(self.engine, todo, checkfirst=True)
                    break
                except DBAPIError as exc:
                    if "already exists" not in str(exc).lower() or attempt == 2:
                        raise
            self._ensured.update(t.name for t in todo)

    async def first_time(self, surface: str, event_id: str) -> bool:
        """Record an incoming event; False when it was seen before (a retry or a duplicate)."""
        await self.ensure([seen_events])

        def insert(conn: Connection) -> bool:
            try:
                with conn.begin_nested():
                    conn.execute(
                        seen_events.insert().values(surface=surface, event_id=event_id, seen_at=time.time())
                    )
            except IntegrityError:
                return False
            return True

        return await self.run(insert)

    async def aclose(self) -> None:
        """Dispose of the connection pool."""
        await asyncio.to_thread(self.engine.dispose)
