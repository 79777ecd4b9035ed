"""The digest service: schedules specs, runs them once per fire time, posts and records the outcome.

::

    service = DigestService(settings, assistant, {"slack": slack_poster}, Database(settings.database_url),
                            summarise=intake.run)   # the core's front door: limits, audit, metrics
    await service.start()          # leader election; the leader runs APScheduler
    await service.run("eng-weekly", dry_run=True)
    await service.stop()

It puts together the parts of ``core.digests``: the specs (:mod:`~core.digests.specs`), the
leader's scheduler (:mod:`~core.digests.leader`, :mod:`~core.digests.jobs`), and the runs
(:mod:`~core.digests.runs`, which states the delivery semantics, and :mod:`~core.digests.posting`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core.audit import AuditEntry
from core.contracts import Answer, Ask, Delta, Poster
from core.db import Database
from core.digests.assistant import DigestAssistant
from core.digests.compose import Summarise
from core.digests.config import DigestSpec, SpecData
from core.digests.configured import DigestsConfigured
from core.digests.inputs import ChatActivity
from core.digests.jobs import JobScheduler
from core.digests.leader import LeaderLock, leader_lock
from core.digests.posting import Posting
from core.digests.runs import Runner
from core.digests.schedule import fire_key, last_fire, next_fire, utcnow
from core.digests.specs import SpecBook
from core.digests.store import RunRecord, RunStore
from core.errors import DigestError
from core.prompts.registry import PromptRegistry
from core.refusals import Refusal

log = logging.getLogger(__name__)

# The assistant, or a callable that returns it (None while the engine loads; serve builds it later).
AssistantSource = DigestAssistant | Callable[[], DigestAssistant | None] | None


async def _no_front_door(ask: Ask) -> AsyncIterator[Delta | Answer | Refusal]:
    """What a service opened without ``summarise`` does when a run needs a summary: says so."""
    raise DigestError(
        "This digest service was opened without the core's front door: pass summarise=Intake(...).run."
    )
    yield  # an async generator, like the front door it stands in for


def make_holder() -> str:
    """A name for this process in leases and run records."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class DigestService:
    """Digest specs, the leader's scheduler, runs and their records."""

    def __init__(
        self,
        settings: DigestsConfigured,
        assistant: AssistantSource,
        posters: Mapping[str, Poster],
        db: Database,
        *,
        holder: str | None = None,
        chat_activity: ChatActivity | None = None,
        backoff: Sequence[float] = (5.0, 30.0, 120.0),
        leader_interval_s: float = 15.0,
        leader_lease_s: float = 60.0,
        run_lease_s: float = 300.0,
        lock: LeaderLock | None = None,
        summarise: Summarise | None = None,
        audit: Callable[[AuditEntry], None] | None = None,
    ) -> None:
        self.settings = settings
        self.assistant = assistant
        self.posters = dict(posters)
        self.db = db
        self.holder = holder or make_holder()
        self.chat_activity = chat_activity
        self.leader_interval_s = leader_interval_s
        self.store = RunStore(db, self.holder, run_lease_s)
        self.lock: LeaderLock = lock or leader_lock(db, self.holder, leader_lease_s)
        given = None if callable(assistant) else assistant
        # Templates are checked at start even when the engine is still loading (serve builds it later).
        prompts = given.prompts if given is not None else PromptRegistry(settings.prompts.dir)
        self.book = SpecBook(settings, prompts, self.store, chat_reader=chat_activity)
        self._audit = audit or (lambda entry: None)
        self.jobs = JobScheduler(db, self)
        self.runner = Runner(
            settings,
            self.store,
            Posting(self.posters, self.store, backoff),
            lambda: self.assistant,
            summarise or _no_front_door,
            chat_activity,
            creator=self.book.created_by.get,
        )
        self._loop_task: asyncio.Task[None] | None = None
        self.started = asyncio.Event()  # set once the first leader round is done

    @property
    def assistant(self) -> DigestAssistant | None:
        """The engine, resolved now when it was given as a callable (None while it loads)."""
        source = self._assistant
        return source() if callable(source) else source

    @assistant.setter
    def assistant(self, value: AssistantSource) -> None:
        self._assistant = value

    @property
    def specs(self) -> dict[str, DigestSpec]:
        """Every known spec by name (hearth.yaml's and chat-created ones)."""
        return self.book.specs

    @property
    def created_by(self) -> dict[str, str]:
        """Who created each chat-created spec."""
        return self.book.created_by

    @property
    def listeners(self) -> list[Callable[[RunRecord], None]]:
        """Called with every finished run record (tests wait on them)."""
        return self.runner.listeners

    @property
    def scheduler(self) -> AsyncIOScheduler | None:
        """APScheduler while this process leads, else None."""
        return self.jobs.scheduler

    @property
    def leading(self) -> bool:
        """True while this process runs the scheduler."""
        return self.jobs.running

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Check every template, create tables, load chat-created specs (no scheduling)."""
        self.check_templates()
        await self.store.ensure()
        await self.book.reload()

    def check_templates(self) -> None:
        """DigestError naming ``digests[i].template`` for the first configured digest with a bad template."""
        self.book.check_templates()

    async def start(self) -> None:
        """Open, then run leader election in the background (the first round runs now)."""
        await self.open()
        await self.tick()
        self._loop_task = asyncio.create_task(self._leader_loop(), name="digest-leader")
        self.started.set()

    async def stop(self) -> None:
        """Stop scheduling, let in-flight runs finish their current step, give the lock back."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        self.jobs.stop()
        await self.runner.stop()
        try:
            await self.lock.release()
        except Exception:
            # The lease expires by itself (SQLite) or dies with the connection (PostgreSQL).
            log.warning("could not release the digest scheduler lock", exc_info=True)

    async def _leader_loop(self) -> None:
        while True:
            await asyncio.sleep(self.leader_interval_s)
            try:
                await self.tick()
            except Exception:
                log.exception("digest leader round failed; retrying in %.0fs", self.leader_interval_s)

    async def tick(self) -> None:
        """One leader round: take or renew the lock, (re)start or stop the scheduler, resume stale runs."""
        await self.book.reload()
        if not await self.lock.acquire():
            if self.leading:
                log.warning("digest scheduler lock lost; %s stops scheduling", self.holder)
                self.jobs.stop()
            return
        if not self.leading:
            log.info(
                "digest scheduler lock taken by %s; scheduling %d digest(s)", self.holder, len(self.specs)
            )
            self.jobs.start()
        self.jobs.sync(self.specs)
        for name, fire_time, trigger in await self.store.stale():
            if name in self.specs:
                log.warning("digest %s (%s): resuming a run whose process stopped", name, fire_time)
                self.runner.track(self.runner.run(self.specs[name], fire_time, trigger))

    def wakeup(self) -> None:
        """Ask the scheduler to look for due jobs now (tests move the clock, then call this)."""
        self.jobs.wakeup()

    # --- queries ---------------------------------------------------------------------------

    def spec(self, name: str) -> DigestSpec:
        """The spec called ``name``; DigestError naming the known ones."""
        return self.book.get(name)

    def next_run(self, name: str, now: datetime | None = None) -> datetime | None:
        """When ``name`` next fires (in its time zone)."""
        return next_fire(self.spec(name).trigger(), now or utcnow())

    async def history(self, name: str, limit: int = 20) -> list[RunRecord]:
        """Past runs of ``name``, newest first."""
        self.spec(name)
        return await self.store.history(name, limit)

    # --- chat-created specs ----------------------------------------------------------------

    async def create(self, data: SpecData, user: str) -> DigestSpec:
        """Validate, store and schedule a new digest; DigestError naming the field when invalid."""
        spec = await self.book.create(data, user)
        self.jobs.sync(self.specs)
        where = ", ".join(f"{s}:{d}" for s, d in spec.destinations)
        self._audit(
            AuditEntry(user=user, surface="digest", action="digest.create", question=f"{spec.name} → {where}")
        )
        return spec

    async def delete(self, name: str, user: str | None = None) -> None:
        """Remove a chat-created digest (its run history stays); ``user`` must be its creator or an admin."""
        await self.book.delete(name, user)
        self.jobs.sync(self.specs)
        self._audit(
            AuditEntry(user=user or "operator", surface="digest", action="digest.delete", question=name)
        )

    # --- runs ------------------------------------------------------------------------------

    async def fire(self, name: str) -> RunRecord | None:
        """The scheduled run of ``name`` for its latest fire time (what APScheduler calls)."""
        spec = self.specs.get(name)
        if spec is None:
            log.warning("digest %s fired but is no longer configured; skipped", name)
            return None
        fired = last_fire(spec.trigger(), utcnow())
        if fired is None:
            return None
        return await self.runner.track(self.runner.run(spec, fire_key(fired), "schedule"))

    async def run(
        self, name: str, *, fire_time: datetime | None = None, trigger: str = "manual", dry_run: bool = False
    ) -> RunRecord | None:
        """Run ``name`` for ``fire_time`` (default now); None when that fire time was already handled."""
        spec = self.spec(name)
        when = fire_time or utcnow()
        if dry_run:
            return await self.runner.dry_run(spec, when)
        return await self.runner.run(spec, fire_key(when), trigger)
