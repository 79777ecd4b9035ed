"""The leader's APScheduler: one job per digest, kept in the state database, and what a job calls.

Jobs live in a database, so they hold only picklable data: the import path of the module-level
:func:`fire_digest` and ``(db_key, digest name)``. Do not move or rename ``fire_digest``: stored
jobs name it. The leading service registers itself under its database's key; a job that fires
with no service registered is skipped (its run record is claimed by whoever runs it next).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Protocol

import sqlalchemy as sa
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_PAUSED

from core.db import Database
from core.digests.config import DigestSpec

log = logging.getLogger(__name__)

JOB_TABLE = "digest_jobs"


class Fires(Protocol):
    """What a stored job reaches: the leading digest service."""

    async def fire(self, name: str) -> object:
        """Run the scheduled digest ``name`` for its latest fire time."""
        ...


_ACTIVE: dict[str, Fires] = {}


def db_key(url: str) -> str:
    """A stable, password-free key for a database URL."""
    safe = sa.engine.make_url(url).render_as_string(hide_password=True)
    return hashlib.sha256(safe.encode()).hexdigest()[:16]


def register(key: str, service: Fires) -> None:
    """Route jobs of database ``key`` to ``service``."""
    _ACTIVE[key] = service


def unregister(key: str, service: Fires) -> None:
    """Stop routing jobs to ``service`` (only if it is the registered one)."""
    if _ACTIVE.get(key) is service:
        del _ACTIVE[key]


async def fire_digest(key: str, name: str) -> None:
    """Run the scheduled digest ``name`` (called by APScheduler)."""
    service = _ACTIVE.get(key)
    if service is None:
        log.warning("digest %s fired but no digest service is running for its database; skipped", name)
        return
    try:
        await service.fire(name)
    except Exception:
        # APScheduler would log this too, but without the digest's name.
        log.exception("digest %s: scheduled run failed", name)


class SharedEngineJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """APScheduler's SQLAlchemy job store on the state database's engine (WAL, busy timeout).

    APScheduler 3 queries its store synchronously on the event loop; the queries are single-row
    and rare (once per fire), which is why this is acceptable here.
    """

    def shutdown(self) -> None:
        """Leave the engine alone: it belongs to the Database, not to the scheduler."""


class JobScheduler:
    """Runs APScheduler while this process leads; its jobs fire ``service``'s digests."""

    def __init__(self, db: Database, service: Fires) -> None:
        self.db = db
        self.key = db_key(db.url)
        self.service = service
        self.scheduler: AsyncIOScheduler | None = None

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self.scheduler is not None

    def start(self) -> None:
        """Start paused (jobs fire only once :meth:`sync` made them match the specs)."""
        store = SharedEngineJobStore(engine=self.db.engine, tablename=JOB_TABLE)
        self.scheduler = AsyncIOScheduler(
            jobstores={"default": store},
            timezone="UTC",
            job_defaults={
                # After downtime, the missed fire times of a digest become ONE run (the latest): a
                # team wants this week's digest, not four stale ones in a row.
                "coalesce": True,
                # No deadline for that one catch-up run: the docs input covers everything since the
                # last successful run, so a late digest is still complete and worth posting. (The
                # default of 1 s would silently drop any run missed by a restart.)
                "misfire_grace_time": None,
                "max_instances": 1,
            },
        )
        # Paused until the jobs match the specs, so a stale job never fires with an old trigger.
        self.scheduler.start(paused=True)
        register(self.key, self.service)

    def stop(self) -> None:
        """Stop firing; the jobs stay in the store for the next leader."""
        scheduler, self.scheduler = self.scheduler, None
        unregister(self.key, self.service)
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)

    def sync(self, specs: Mapping[str, DigestSpec]) -> None:
        """Make the job store match ``specs``; unchanged jobs keep their (possibly missed) next run time."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        existing = {job.id: job for job in scheduler.get_jobs()}
        for name, spec in specs.items():
            trigger = spec.trigger()
            job = existing.pop(name, None)
            args = [self.key, name]
            if job is None:
                scheduler.add_job(fire_digest, trigger=trigger, args=args, id=name, name=name)
            elif repr(job.trigger) != repr(trigger) or list(job.args) != args:
                scheduler.modify_job(name, args=args)
                scheduler.reschedule_job(name, trigger=trigger)
        for name in existing:
            scheduler.remove_job(name)
        if scheduler.state == STATE_PAUSED:
            scheduler.resume()

    def wakeup(self) -> None:
        """Look for due jobs now (tests move the clock, then call this)."""
        if self.scheduler is not None:
            self.scheduler.wakeup()
