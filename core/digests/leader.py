"""Leader election: only one scheduler per state database runs digest jobs.

PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) held on a dedicated
connection — it is released by the server the moment that connection dies, so a crashed
replica never blocks the others. SQLite: a lease row with an expiry that the leader renews;
a leader that stops renewing loses it after ``lease_s``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from core.db import Database, metadata

log = logging.getLogger(__name__)

digest_leader = sa.Table(
    "digest_leader",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(80), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

_LOCK_NAME = "hearth-digest-scheduler"
# pg advisory locks take a signed 64-bit key; derive a stable one from the lock's name.
ADVISORY_KEY = int.from_bytes(hashlib.sha256(_LOCK_NAME.encode()).digest()[:8], "big", signed=True)


class LeaderLock(Protocol):
    """Held by at most one process per database."""

    async def acquire(self) -> bool:
        """Take or renew the lock; True while this process holds it."""
        ...

    async def release(self) -> None:
        """Give the lock up (idempotent)."""
        ...


class LeaseLock:
    """A renewable lease row: the SQLite (and fallback) leader lock."""

    def __init__(self, db: Database, holder: str, lease_s: float = 60.0) -> None:
        self.db = db
        self.holder = holder
        self.lease_s = lease_s

    async def acquire(self) -> bool:
        """Take the lease if free or expired, renew it if ours."""
        await self.db.ensure([digest_leader])
        holder, lease_s = self.holder, self.lease_s

        def work(conn: Connection) -> bool:
            now = time.time()
            renewed = conn.execute(
                digest_leader.update()
                .where(
                    digest_leader.c.name == _LOCK_NAME,
                    sa.or_(digest_leader.c.holder == holder, digest_leader.c.expires_at < now),
                )
                .values(holder=holder, expires_at=now + lease_s)
            )
            if renewed.rowcount == 1:
                return True
            try:
                with conn.begin_nested():
                    conn.execute(
                        digest_leader.insert().values(
                            name=_LOCK_NAME, holder=holder, expires_at=now + lease_s
                        )
                    )
            except IntegrityError:
                return False
            return True

        return await self.db.run(work)

    async def release(self) -> None:
        """Delete the lease if it is ours, so a standby can take over at once."""
        await self.db.ensure([digest_leader])
        holder = self.holder

        def work(conn: Connection) -> None:
            conn.execute(
                digest_leader.delete().where(
                    digest_leader.c.name == _LOCK_NAME, digest_leader.c.holder == holder
                )
            )

        await self.db.run(work)


class AdvisoryLock:
    """``pg_try_advisory_lock`` on a connection kept open while leading (PostgreSQL)."""

    def __init__(self, db: Database, key: int = ADVISORY_KEY) -> None:
        self.db = db
        self.key = key
        self._conn: Connection | None = None

    async def acquire(self) -> bool:
        """Try the lock once; when held, check that its connection is still alive."""
        return await asyncio.to_thread(self._acquire)

    def _acquire(self) -> bool:
        if self._conn is not None:
            try:
                self._conn.execute(sa.text("SELECT 1"))
                return True
            except SQLAlchemyError:
                log.warning("lost the digest scheduler lock: its database connection failed", exc_info=True)
                self._close()
                return False
        conn = self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
        except SQLAlchemyError:
            conn.close()
            raise
        if got:
            self._conn = conn
        else:
            conn.close()
        return got

    async def release(self) -> None:
        """Unlock and close the connection."""
        await asyncio.to_thread(self._release)

    def _release(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        except SQLAlchemyError:
            log.debug("advisory unlock failed; closing the connection releases it", exc_info=True)
        self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()  # never hand a lock-holding connection back to the pool
                conn.close()
            except SQLAlchemyError:
                log.debug("closing the lock connection failed", exc_info=True)


def leader_lock(db: Database, holder: str, lease_s: float = 60.0) -> LeaderLock:
    """The right lock for ``db``'s dialect."""
    if db.dialect == "postgresql":
        return AdvisoryLock(db)
    return LeaseLock(db, holder, lease_s)
