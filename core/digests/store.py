"""Run records and chat-created specs in the state database.

A run record is keyed by (digest, fire_time) — a UNIQUE key — and moves through::

    running ──► posted | partial | skipped | failed

Only the holder of a live claim writes to a record (every write checks ``holder``), so a
replica that lost its claim can never mark or post anything. A claim whose lease ran out (the
process died) is taken over by the next claimer, who resumes where the record stops.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from core.db import Database, metadata
from core.digests.config import SpecData

digest_runs = sa.Table(
    "digest_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("fire_time", sa.String(32), nullable=False),  # fire_key(): UTC ISO 8601, seconds
    sa.Column("trigger", sa.String(16), nullable=False),  # schedule | manual
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("holder", sa.String(80), nullable=False),
    sa.Column("lease_until", sa.Float, nullable=False),
    sa.Column("claims", sa.Integer, nullable=False, default=1),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("since", sa.String(32)),
    sa.Column("until", sa.String(32)),
    sa.Column("text", sa.Text),
    sa.Column("deliveries", sa.Text, nullable=False, default="{}"),
    sa.Column("reason", sa.Text),
    sa.Column("notes", sa.Text, nullable=False, default="[]"),
    sa.UniqueConstraint("digest", "fire_time", name="uq_digest_runs_digest_fire_time"),
)

digest_specs = sa.Table(
    "digest_specs",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

TABLES = [digest_runs, digest_specs]
SUCCESS = ("posted", "partial", "skipped")
DeliveryStatus = Literal["pending", "posting", "posted", "failed", "uncertain"]


class LostClaim(Exception):
    """Another process took this run over (our lease ran out); stop without writing."""


@dataclass
class Delivery:
    """The state of one destination of one run."""

    status: DeliveryStatus = "pending"
    attempts: int = 0
    error: str | None = None
    message_id: str = ""


@dataclass
class RunRecord:
    """One row of digest_runs."""

    id: int
    digest: str
    fire_time: str
    trigger: str
    status: str
    holder: str
    lease_until: float
    claims: int
    started_at: float
    finished_at: float | None
    since: str | None
    until: str | None
    text: str | None
    reason: str | None
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: RowMapping) -> RunRecord:
        """Build from a row's mapping."""
        data = dict(row)
        deliveries = {k: Delivery(**v) for k, v in json.loads(data.pop("deliveries") or "{}").items()}
        notes = json.loads(data.pop("notes") or "[]")
        return cls(**data, deliveries=deliveries, notes=notes)


def _write_held(conn: Connection, run: RunRecord, holder: str, values: dict[str, object]) -> None:
    """Write ``values`` to ``run``'s row while ``holder`` still holds it; LostClaim when not."""
    done = conn.execute(
        digest_runs.update()
        .where(digest_runs.c.id == run.id, digest_runs.c.holder == holder, digest_runs.c.status == "running")
        .values(**values)
    )
    if done.rowcount != 1:
        raise LostClaim(f"run {run.digest}@{run.fire_time} is no longer held by {holder}")


class RunStore:
    """Claims, updates and lists run records; every method runs off the event loop."""

    def __init__(self, db: Database, holder: str, lease_s: float = 300.0) -> None:
        self.db = db
        self.holder = holder
        self.lease_s = lease_s

    async def ensure(self) -> None:
        """Create the tables."""
        await self.db.ensure(TABLES)

    async def claim(self, digest: str, fire_time: str, trigger: str) -> RunRecord | None:
        """Claim the run (new, or a stale one whose holder died); None when it is done or held."""
        holder, lease_s = self.holder, self.lease_s

        def work(conn: Connection) -> RunRecord | None:
            now = time.time()
            try:
                with conn.begin_nested():
                    conn.execute(
                        digest_runs.insert().values(
                            digest=digest,
                            fire_time=fire_time,
                            trigger=trigger,
                            status="running",
                            holder=holder,
                            lease_until=now + lease_s,
                            claims=1,
                            started_at=now,
                            deliveries="{}",
                            notes="[]",
                        )
                    )
            except IntegrityError:
                taken = conn.execute(
                    digest_runs.update()
                    .where(
                        digest_runs.c.digest == digest,
                        digest_runs.c.fire_time == fire_time,
                        digest_runs.c.status == "running",
                        digest_runs.c.lease_until < now,
                    )
                    .values(holder=holder, lease_until=now + lease_s, claims=digest_runs.c.claims + 1)
                )
                if taken.rowcount != 1:
                    return None
            row = conn.execute(
                sa.select(digest_runs).where(
                    digest_runs.c.digest == digest, digest_runs.c.fire_time == fire_time
                )
            ).one()
            return RunRecord.from_row(row._mapping)

        return await self.db.run(work)

    async def update(self, run: RunRecord, **values: object) -> None:
        """Write ``values`` plus deliveries/notes and extend the lease; LostClaim if not ours."""
        holder, lease_s = self.holder, self.lease_s
        values["deliveries"] = json.dumps({k: vars(v) for k, v in run.deliveries.items()})
        values["notes"] = json.dumps(run.notes)

        def work(conn: Connection) -> None:
            values["lease_until"] = time.time() + lease_s
            _write_held(conn, run, holder, values)

        await self.db.run(work)
        for key, value in values.items():
            if key not in ("deliveries", "notes") and hasattr(run, key):
                setattr(run, key, value)

    async def renew(self, run: RunRecord) -> None:
        """Extend the run's lease; LostClaim when another process holds it now."""
        holder, lease_s = self.holder, self.lease_s

        def work(conn: Connection) -> None:
            _write_held(conn, run, holder, {"lease_until": time.time() + lease_s})

        await self.db.run(work)

    async def stale(self) -> list[tuple[str, str, str]]:
        """(digest, fire_time, trigger) of runs left 'running' by a holder whose lease ran out."""

        def work(conn: Connection) -> list[tuple[str, str, str]]:
            rows = conn.execute(
                sa.select(digest_runs.c.digest, digest_runs.c.fire_time, digest_runs.c.trigger).where(
                    digest_runs.c.status == "running", digest_runs.c.lease_until < time.time()
                )
            ).all()
            return [(r[0], r[1], r[2]) for r in rows]

        return await self.db.run(work)

    async def last_success(self, digest: str) -> RunRecord | None:
        """The latest run that posted (or deliberately skipped)."""

        def work(conn: Connection) -> RunRecord | None:
            row = conn.execute(
                sa.select(digest_runs)
                .where(digest_runs.c.digest == digest, digest_runs.c.status.in_(SUCCESS))
                .order_by(digest_runs.c.until.desc())
                .limit(1)
            ).first()
            return RunRecord.from_row(row._mapping) if row is not None else None

        return await self.db.run(work)

    async def history(self, digest: str, limit: int = 20) -> list[RunRecord]:
        """The latest runs of ``digest``, newest first."""

        def work(conn: Connection) -> list[RunRecord]:
            rows = conn.execute(
                sa.select(digest_runs)
                .where(digest_runs.c.digest == digest)
                .order_by(digest_runs.c.fire_time.desc(), digest_runs.c.id.desc())
                .limit(limit)
            ).all()
            return [RunRecord.from_row(r._mapping) for r in rows]

        return await self.db.run(work)

    async def saved_specs(self) -> dict[str, tuple[SpecData, str]]:
        """Chat-created specs: name -> (spec data, created_by)."""

        def work(conn: Connection) -> dict[str, tuple[SpecData, str]]:
            rows = conn.execute(sa.select(digest_specs)).all()
            return {r.name: (json.loads(r.spec), r.created_by) for r in rows}

        return await self.db.run(work)

    async def save_spec(self, name: str, data: SpecData, user: str) -> bool:
        """Store a chat-created spec; False when the name is taken."""

        def work(conn: Connection) -> bool:
            try:
                with conn.begin_nested():
                    conn.execute(
                        digest_specs.insert().values(
                            name=name, spec=json.dumps(data), created_by=user, created_at=time.time()
                        )
                    )
            except IntegrityError:
                return False
            return True

        return await self.db.run(work)

    async def delete_spec(self, name: str) -> bool:
        """Remove a chat-created spec; False when there was none."""

        def work(conn: Connection) -> bool:
            return conn.execute(digest_specs.delete().where(digest_specs.c.name == name)).rowcount == 1

        return await self.db.run(work)
