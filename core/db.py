"""The state database: SQLite by default, PostgreSQL in production (``database.url``).

Feature modules declare their tables on :data:`metadata` and call :meth:`Database.ensure`
with them; all calls run in a worker thread so the event loop never blocks::

    db = Database(settings.database_url)
    await db.ensure([seen_events])
    fresh = await db.first_time("slack", event_id)

Questions are answered exactly once through *claims* (``answer_claims``): a process claims an
event with a lease before it answers and finishes the claim after the answer is posted. A retry
that finds a live claim, or a finished one, is a duplicate; one whose claim's holder died (its
lease ran out, or it was this host's process and is gone) is answered by whoever takes it over::

    if await db.claim("slack", event_id, HOLDER, lease_s=60):
        ...answer and post...
        await db.finish("slack", event_id, HOLDER)
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


answer_claims = sa.Table(
    "answer_claims",
    metadata,
    sa.Column("surface", sa.String(32), primary_key=True),
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # "claimed" | "done"
    sa.Column("lease_until", sa.Float, nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
)


# What a surface needs to finish an answer a dead process left unfinished (the placeholder it
# posted, the question), kept beside the claim until the claim is done.
claim_notes = sa.Table(
    "claim_notes",
    metadata,
    sa.Column("surface", sa.String(32), primary_key=True),
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("noted_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class Unfinished:
    """A claimed event whose holder died before finishing it, with the note its surface left."""

    event_id: str
    note: str
    claimed_at: float
    attempts: int


def _start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (clock ticks since boot), '' when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def process_holder() -> str:
    """This process as a claim holder: host, pid and start time (a reused pid is another process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def holder_gone(holder: str) -> bool:
    """Whether ``holder`` was a process on this host that no longer runs (other hosts: unknown, False)."""
    host, _, rest = holder.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit() or not started:
        return False
    return _start_time(int(pid)) != started


HOLDER = process_holder()


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

    async def forget_seen(self, surface: str, *, before: float) -> int:
        """Drop ``surface``'s events recorded before ``before`` (epoch seconds); return how many."""
        await self.ensure([seen_events])
        old = (seen_events.c.surface == surface) & (seen_events.c.seen_at < before)
        return await self.run(lambda conn: conn.execute(seen_events.delete().where(old)).rowcount)

    async def claim(
        self, surface: str, event_id: str, holder: str = HOLDER, *, lease_s: float = 60.0
    ) -> bool:
        """Claim ``event_id`` to answer it; False when it is answered or a live process is answering it."""
        await self.ensure([answer_claims])
        now = time.time()
        key = (answer_claims.c.surface == surface) & (answer_claims.c.event_id == event_id)

        def take(conn: Connection) -> bool:
            try:
                with conn.begin_nested():
                    conn.execute(
                        answer_claims.insert().values(
                            surface=surface,
                            event_id=event_id,
                            holder=holder,
                            state="claimed",
                            lease_until=now + lease_s,
                            claimed_at=now,
                            attempts=1,
                        )
                    )
                return True
            except IntegrityError:
                pass
            row = conn.execute(sa.select(answer_claims).where(key)).mappings().first()
            if row is None or row["state"] != "claimed":
                return False
            if row["lease_until"] >= now and not holder_gone(str(row["holder"])):
                return False
            # The holder died before it finished: take the claim over (one winner, by the WHERE).
            taken = conn.execute(
                answer_claims.update()
                .where(key & (answer_claims.c.holder == row["holder"]) & (answer_claims.c.state == "claimed"))
                .values(holder=holder, lease_until=now + lease_s, attempts=answer_claims.c.attempts + 1)
            )
            return taken.rowcount == 1

        return await self.run(take)

    async def renew(
        self, surface: str, event_id: str, holder: str = HOLDER, *, lease_s: float = 60.0
    ) -> bool:
        """Extend a claim this holder still has (an answer still streaming); False when it was lost."""
        return await self._update_claim(surface, event_id, holder, lease_until=time.time() + lease_s)

    async def finish(self, surface: str, event_id: str, holder: str = HOLDER) -> bool:
        """Mark a claim answered: every later delivery of the event is a duplicate."""
        return await self._update_claim(surface, event_id, holder, state="done")

    async def release(self, surface: str, event_id: str, holder: str = HOLDER) -> bool:
        """Give a claim up unanswered (the surface failed to post): the next delivery may take it."""
        return await self._update_claim(surface, event_id, holder, lease_until=0.0)

    async def _update_claim(self, surface: str, event_id: str, holder: str, **values: object) -> bool:
        await self.ensure([answer_claims])
        mine = (
            (answer_claims.c.surface == surface)
            & (answer_claims.c.event_id == event_id)
            & (answer_claims.c.holder == holder)
            & (answer_claims.c.state == "claimed")
        )

        def update(conn: Connection) -> bool:
            return conn.execute(answer_claims.update().where(mine).values(**values)).rowcount == 1

        return await self.run(update)

    async def note(self, surface: str, event_id: str, note: str) -> None:
        """Keep ``note`` (the surface's own text, e.g. JSON) with the claim on ``event_id``, replacing any."""
        await self.ensure([claim_notes])
        key = (claim_notes.c.surface == surface) & (claim_notes.c.event_id == event_id)

        def put(conn: Connection) -> None:
            values = {"note": note, "noted_at": time.time()}
            if conn.execute(claim_notes.update().where(key).values(**values)).rowcount == 0:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            claim_notes.insert().values(surface=surface, event_id=event_id, **values)
                        )
                except IntegrityError:  # written meanwhile by a racing holder: ours is the newer
                    conn.execute(claim_notes.update().where(key).values(**values))

        await self.run(put)

    async def noted(self, surface: str, event_id: str) -> str | None:
        """The note kept with the claim on ``event_id`` (None when there is none)."""
        await self.ensure([claim_notes])
        key = (claim_notes.c.surface == surface) & (claim_notes.c.event_id == event_id)
        return await self.run(lambda conn: conn.execute(sa.select(claim_notes.c.note).where(key)).scalar())

    async def unfinished(self, surface: str) -> list[Unfinished]:
        """Noted claims on ``surface`` whose holder died (lease run out, or gone from this host), oldest first.

        Notes of finished claims are forgotten on the way. Taking one over is :meth:`claim`'s job (one winner).
        """
        await self.ensure([answer_claims, claim_notes])
        now = time.time()
        joined = claim_notes.join(
            answer_claims,
            (answer_claims.c.surface == claim_notes.c.surface)
            & (answer_claims.c.event_id == claim_notes.c.event_id),
            isouter=True,
        )
        query = (
            sa.select(
                claim_notes.c.event_id,
                claim_notes.c.note,
                answer_claims.c.state,
                answer_claims.c.holder,
                answer_claims.c.lease_until,
                answer_claims.c.claimed_at,
                answer_claims.c.attempts,
            )
            .select_from(joined)
            .where(claim_notes.c.surface == surface)
            .order_by(claim_notes.c.noted_at)
        )

        def read(conn: Connection) -> list[Unfinished]:
            rows = conn.execute(query).mappings().all()
            done = [r["event_id"] for r in rows if r["state"] != "claimed"]  # finished (or claim gone)
            if done:
                conn.execute(
                    claim_notes.delete().where(
                        (claim_notes.c.surface == surface) & claim_notes.c.event_id.in_(done)
                    )
                )
            return [
                Unfinished(str(r["event_id"]), str(r["note"]), float(r["claimed_at"]), int(r["attempts"]))
                for r in rows
                if r["state"] == "claimed" and (r["lease_until"] < now or holder_gone(str(r["holder"])))
            ]

        return await self.run(read)

    async def aclose(self) -> None:
        """Dispose of the connection pool."""
        await asyncio.to_thread(self.engine.dispose)
