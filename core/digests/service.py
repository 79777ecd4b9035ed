"""The digest service: schedules specs, runs them once per fire time, posts and records the outcome.

::

    service = DigestService(settings, assistant, {"slack": slack_poster}, Database(settings.database_url))
    await service.start()          # leader election; the leader runs APScheduler
    await service.run("eng-weekly", dry_run=True)
    await service.stop()

Delivery semantics (per destination, per fire time): **at most once, never silently lost**.
A run is claimed (a UNIQUE (digest, fire_time) row) before anything is gathered; the text is
stored before posting; each destination is marked ``posting`` before the poster is called and
``posted`` after. A process that dies before posting leaves a claim whose lease runs out: the
next leader resumes it (reusing the stored text) and posts. A process that dies *while*
posting leaves the destination ``posting``: whether the platform got it is unknown, so it is
marked ``uncertain`` and the owner is told instead of risking a duplicate. A poster that raises
is retried with backoff; after the last attempt the destination is ``failed`` and the owner is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_PAUSED

from core.config import Settings
from core.contracts import Poster
from core.db import Database
from core.digests import jobs, messages
from core.digests.compose import compose, compose_no_changes, period, summarise
from core.digests.config import DigestSpec, spec_from_data
from core.digests.inputs import ChatActivity, gather
from core.digests.leader import LeaderLock, leader_lock
from core.digests.schedule import fire_key, last_fire, next_fire, utcnow
from core.digests.store import Delivery, LostClaim, RunRecord, RunStore
from core.errors import DigestError, PromptError
from core.prompts.registry import PromptRegistry

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_CLAIMS = 3  # a run whose process died this many times is marked failed instead of resumed again
TEMPLATE_INPUTS = {"digest", "period", "docs", "tables", "chat", "notes"}
JOB_TABLE = "digest_jobs"


@dataclass(frozen=True)
class Draft:
    """A composed digest and what it covers."""

    text: str
    since: str
    until: str
    notes: list[str]
    reason: str | None
    skip: bool


class SharedEngineJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """APScheduler's SQLAlchemy job store on the state database's engine (WAL, busy timeout).

    APScheduler 3 queries its store synchronously on the event loop; the queries are single-row
    and rare (once per fire), which is why this is acceptable here.
    """

    def shutdown(self) -> None:
        """Leave the engine alone: it belongs to the Database, not to the scheduler."""


def make_holder() -> str:
    """A name for this process in leases and run records."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class DigestService:
    """Digest specs, the leader's scheduler, runs and their records."""

    def __init__(
        self,
        settings: Settings,
        assistant: Any,
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
    ) -> None:
        self.settings = settings
        self._assistant = assistant
        # Templates are checked at start even when the engine is still loading (serve builds it later).
        self.prompts: PromptRegistry = getattr(assistant, "prompts", None) or PromptRegistry(
            settings.prompts.dir
        )
        self.posters = dict(posters)
        self.db = db
        self.holder = holder or make_holder()
        self.chat_activity = chat_activity
        self.backoff = tuple(backoff)
        self.leader_interval_s = leader_interval_s
        self.store = RunStore(db, self.holder, run_lease_s)
        self.lock: LeaderLock = lock or leader_lock(db, self.holder, leader_lease_s)
        self.key = jobs.db_key(db.url)
        self.specs: dict[str, DigestSpec] = {s.name: s for s in settings.digests}
        self.created_by: dict[str, str] = {}
        self.scheduler: AsyncIOScheduler | None = None
        self.listeners: list[Callable[[RunRecord], None]] = []
        self._loop_task: asyncio.Task[None] | None = None
        self._runs: set[asyncio.Task[Any]] = set()
        self._invalid: set[str] = set()
        self.started = asyncio.Event()  # set once the first leader round is done

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Check every template, create tables, load chat-created specs (no scheduling)."""
        self.check_templates()
        await self.store.ensure()
        await self.reload()

    def check_templates(self) -> None:
        """DigestError naming ``digests[i].template`` for the first configured digest with a bad template."""
        for i, spec in enumerate(self.settings.digests):
            self.check_template(spec, f"digests[{i}].template")

    async def reload(self) -> None:
        """Pick up digests created or deleted from chat (possibly on another replica)."""
        saved = await self.store.saved_specs()
        for name in [n for n in self.created_by if n not in saved]:
            del self.specs[name]
            del self.created_by[name]
        for name, (data, user) in saved.items():
            if name in self.created_by:
                continue
            if name in self.specs:
                log.warning("digest %s from chat is shadowed by hearth.yaml; using the file's", name)
                continue
            try:
                spec = spec_from_data(data, self.settings, f"digest '{name}'")
                self.check_template(spec, f"digest '{name}'.template")
            except (ValueError, DigestError) as exc:
                if name not in self._invalid:
                    self._invalid.add(name)
                    log.error("chat-created digest %s is no longer valid and is not scheduled: %s", name, exc)
                continue
            self.specs[name] = spec
            self.created_by[name] = user

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
        self._stop_scheduler()
        for task in list(self._runs):
            task.cancel()
        if self._runs:
            await asyncio.gather(*self._runs, return_exceptions=True)
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

    @property
    def assistant(self) -> Any:
        """The engine; ``assistant`` may be a callable returning it (or None while it loads)."""
        return self._assistant() if callable(self._assistant) else self._assistant

    @assistant.setter
    def assistant(self, value: Any) -> None:
        self._assistant = value

    @property
    def leading(self) -> bool:
        """True while this process runs the scheduler."""
        return self.scheduler is not None

    async def tick(self) -> None:
        """One leader round: take or renew the lock, (re)start or stop the scheduler, resume stale runs."""
        await self.reload()
        if not await self.lock.acquire():
            if self.leading:
                log.warning("digest scheduler lock lost; %s stops scheduling", self.holder)
                self._stop_scheduler()
            return
        if not self.leading:
            log.info(
                "digest scheduler lock taken by %s; scheduling %d digest(s)", self.holder, len(self.specs)
            )
            self._start_scheduler()
        self.sync_jobs()
        for name, fire_time, trigger in await self.store.stale():
            if name in self.specs:
                log.warning("digest %s (%s): resuming a run whose process stopped", name, fire_time)
                self._spawn(self._resume(name, fire_time, trigger))

    def _start_scheduler(self) -> None:
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
        jobs.register(self.key, self)

    def _stop_scheduler(self) -> None:
        scheduler, self.scheduler = self.scheduler, None
        jobs.unregister(self.key, self)
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)  # jobs stay in the store for the next leader

    def sync_jobs(self) -> None:
        """Make the job store match the specs; unchanged jobs keep their (possibly missed) next run time."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        existing = {job.id: job for job in scheduler.get_jobs()}
        for name, spec in self.specs.items():
            trigger = spec.trigger()
            job = existing.pop(name, None)
            if job is None:
                scheduler.add_job(
                    jobs.fire_digest, trigger=trigger, args=[self.key, name], id=name, name=name
                )
            elif repr(job.trigger) != repr(trigger) or list(job.args) != [self.key, name]:
                scheduler.modify_job(name, args=[self.key, name])
                scheduler.reschedule_job(name, trigger=trigger)
        for name in existing:
            scheduler.remove_job(name)
        if scheduler.state == STATE_PAUSED:
            scheduler.resume()

    def wakeup(self) -> None:
        """Ask the scheduler to look for due jobs now (tests move the clock, then call this)."""
        if self.scheduler is not None:
            self.scheduler.wakeup()

    # --- queries ---------------------------------------------------------------------------

    def spec(self, name: str) -> DigestSpec:
        """The spec called ``name``."""
        try:
            return self.specs[name]
        except KeyError:
            available = ", ".join(sorted(self.specs)) or "(none)"
            raise DigestError(f"Unknown digest '{name}'; available: {available}") from None

    def next_run(self, name: str, now: datetime | None = None) -> datetime | None:
        """When ``name`` next fires (in its time zone)."""
        return next_fire(self.spec(name).trigger(), now or utcnow())

    async def history(self, name: str, limit: int = 20) -> list[RunRecord]:
        """Past runs of ``name``, newest first."""
        self.spec(name)
        return await self.store.history(name, limit)

    def check_template(self, spec: DigestSpec, where: str) -> None:
        """DigestError naming ``where`` when the template is unknown or needs inputs a digest lacks."""
        try:
            tpl = self.prompts.get(spec.template)
        except PromptError as exc:
            raise DigestError(f"{where}: {exc}") from None
        missing = [i for i in tpl.required if i not in TEMPLATE_INPUTS]
        if missing:
            raise DigestError(
                f"{where}: template '{spec.template}' needs input(s) {', '.join(missing)}, which a digest "
                f"does not provide; a digest template may use {', '.join(sorted(TEMPLATE_INPUTS))}."
            )

    # --- chat-created specs ----------------------------------------------------------------

    async def create(self, data: dict[str, Any], user: str) -> DigestSpec:
        """Validate, store and schedule a new digest; DigestError naming the field when invalid."""
        name = str(data.get("name", ""))
        if name in self.specs:
            raise DigestError(messages.CMD_EXISTS.format(name=name))
        spec = spec_from_data(data, self.settings, f"digest '{name}'")
        self.check_template(spec, "template")
        if not await self.store.save_spec(spec.name, spec.model_dump(mode="json"), user):
            raise DigestError(messages.CMD_EXISTS.format(name=name))
        self.specs[spec.name] = spec
        self.created_by[spec.name] = user
        self.sync_jobs()
        return spec

    async def delete(self, name: str) -> None:
        """Remove a chat-created digest (its run history stays)."""
        self.spec(name)
        if name not in self.created_by:
            raise DigestError(messages.CMD_IN_CONFIG.format(name=name))
        await self.store.delete_spec(name)
        del self.specs[name]
        del self.created_by[name]
        self.sync_jobs()

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
        return await self._tracked(self.run(name, fire_time=fired, trigger="schedule"))

    async def run(
        self, name: str, *, fire_time: datetime | None = None, trigger: str = "manual", dry_run: bool = False
    ) -> RunRecord | None:
        """Run ``name`` for ``fire_time`` (default now); None when that fire time was already handled."""
        spec = self.spec(name)
        when = fire_time or utcnow()
        if dry_run:
            return await self._dry_run(spec, when)
        run = await self.store.claim(name, fire_key(when), trigger)
        if run is None:
            log.info(
                "digest %s (%s): already run or running elsewhere; not posting again", name, fire_key(when)
            )
            return None
        return await self._execute(spec, run)

    async def _resume(self, name: str, fire_time: str, trigger: str) -> RunRecord | None:
        run = await self.store.claim(name, fire_time, trigger)
        if run is None:
            return None
        return await self._execute(self.specs[name], run)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    async def _tracked(self, coro: Coroutine[Any, Any, T]) -> T:
        task = asyncio.ensure_future(coro)
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)
        return await task

    async def _since(self, spec: DigestSpec, when: datetime) -> datetime:
        """Start of the period: the last successful run, else the previous scheduled time."""
        docs = spec.inputs.docs
        if docs is None or docs.changed_since_last_run:
            last = await self.store.last_success(spec.name)
            if last is not None and last.until:
                return datetime.fromisoformat(last.until)
        previous = last_fire(spec.trigger(), when - timedelta(seconds=1))
        return previous or when - timedelta(days=7)

    async def _write(self, spec: DigestSpec, when: datetime) -> Draft:
        """Gather the inputs for the period ending now and compose the digest."""
        since = await self._since(spec, when)
        until = utcnow()
        got = await gather(spec, self.settings, self.assistant, since, until, self.chat_activity)
        span = period(spec, since, until)
        skip = got.nothing_changed and spec.on_no_changes == "skip"
        if got.nothing_changed:
            text = compose_no_changes(spec, span)
        else:
            summary, credit = await summarise(spec, self.assistant, got, span)
            text = compose(spec, got, span, summary, credit)
        return Draft(text, fire_key(since), fire_key(until), got.notes, "; ".join(got.rejected) or None, skip)

    async def _dry_run(self, spec: DigestSpec, when: datetime) -> RunRecord:
        draft = await self._write(spec, when)
        now = utcnow().timestamp()
        return RunRecord(
            id=0,
            digest=spec.name,
            fire_time=fire_key(when),
            trigger="dry-run",
            status="skipped" if draft.skip else "dry-run",
            holder=self.holder,
            lease_until=now,
            claims=0,
            started_at=now,
            finished_at=now,
            since=draft.since,
            until=draft.until,
            text=draft.text,
            reason=draft.reason,
            notes=draft.notes,
        )

    async def _execute(self, spec: DigestSpec, run: RunRecord) -> RunRecord:
        """Finish a claimed run from wherever its record stands."""
        heartbeat = asyncio.create_task(self._heartbeat(run))
        try:
            if run.claims > MAX_CLAIMS:
                await self.store.update(
                    run,
                    status="failed",
                    finished_at=utcnow().timestamp(),
                    reason=f"gave up after {MAX_CLAIMS} attempts that each stopped midway",
                )
                await self._tell_owner(spec, run)
                return self._done(run)
            if run.text is None:
                draft = await self._write(spec, datetime.fromisoformat(run.fire_time))
                run.notes = draft.notes
                if draft.skip:
                    await self.store.update(
                        run,
                        status="skipped",
                        since=draft.since,
                        until=draft.until,
                        text=draft.text,
                        reason=draft.reason,
                        finished_at=utcnow().timestamp(),
                    )
                    await self._tell_owner(spec, run)
                    return self._done(run)
                run.deliveries = {f"{s}:{d}": Delivery() for s, d in spec.destinations}
                await self.store.update(
                    run, text=draft.text, since=draft.since, until=draft.until, reason=draft.reason
                )
            for delivery in run.deliveries.values():
                if delivery.status == "posting":
                    # We died mid-post: the platform may or may not have it. Never risk a duplicate.
                    delivery.status = "uncertain"
                    delivery.error = "the process stopped while posting; not re-posted to avoid a duplicate"
                    await self.store.update(run)
            for key, delivery in run.deliveries.items():
                if delivery.status == "pending":
                    await self._deliver(run, key, delivery)
            states = [d.status for d in run.deliveries.values()]
            status = (
                "posted"
                if all(s == "posted" for s in states)
                else ("partial" if any(s == "posted" for s in states) else "failed")
            )
            await self.store.update(run, status=status, finished_at=utcnow().timestamp())
        except LostClaim:
            log.warning(
                "digest %s (%s): another process took this run over; stopping", run.digest, run.fire_time
            )
            return run
        except Exception as exc:
            # A bug or a database failure: record it rather than leave a claim to be resumed forever.
            log.exception("digest %s (%s): run failed", run.digest, run.fire_time)
            with contextlib.suppress(Exception):
                await self.store.update(
                    run,
                    status="failed",
                    finished_at=utcnow().timestamp(),
                    reason=f"internal error: {type(exc).__name__}: {exc}"[:500],
                )
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        await self._tell_owner(spec, run)
        return self._done(run)

    async def _heartbeat(self, run: RunRecord) -> None:
        """Keep the run's lease alive while it works (a slow model can take minutes)."""
        while True:
            await asyncio.sleep(self.store.lease_s / 3)
            try:
                await self.store.renew(run)
            except LostClaim:
                return
            except Exception:
                log.warning("digest %s: renewing the run lease failed", run.digest, exc_info=True)

    async def _deliver(self, run: RunRecord, key: str, delivery: Delivery) -> None:
        """Post to one destination, retrying with backoff; the record always says what happened."""
        surface, _, dest = key.partition(":")
        poster = self.posters.get(surface)
        if poster is None:
            delivery.status = "failed"
            delivery.error = f"no {surface} poster is available (is {surface} enabled and configured?)"
            await self.store.update(run)
            return
        for attempt in range(len(self.backoff) + 1):
            delivery.status = "posting"
            delivery.attempts += 1
            await self.store.update(run)
            try:
                delivery.message_id = await poster.post(dest, run.text or "")
            except Exception as exc:  # any poster failure is retried, then recorded
                delivery.status = "failed"
                delivery.error = f"{type(exc).__name__}: {exc}"[:500]
                await self.store.update(run)
                log.warning(
                    "digest %s: posting to %s failed (attempt %d): %s",
                    run.digest,
                    key,
                    delivery.attempts,
                    exc,
                )
                if attempt < len(self.backoff):
                    await asyncio.sleep(self.backoff[attempt])
                    continue
                return
            delivery.status = "posted"
            delivery.error = None
            await self.store.update(run)
            return

    async def _tell_owner(self, spec: DigestSpec, run: RunRecord) -> None:
        """Best effort: message the owner about failed destinations or rejected SQL."""
        if spec.owner is None:
            return
        texts = []
        problems = [f"{k} ({d.status}: {d.error})" for k, d in run.deliveries.items() if d.status != "posted"]
        if problems:
            texts.append(
                messages.OWNER_FAILED.format(
                    name=spec.name, fire_time=run.fire_time, problems="; ".join(problems)
                )
            )
        if run.reason:
            texts.append(
                messages.OWNER_REJECTED.format(name=spec.name, fire_time=run.fire_time, reasons=run.reason)
            )
        if not texts:
            return
        surface, _, dest = spec.owner.partition(":")
        poster = self.posters.get(surface)
        if poster is None:
            log.warning(
                "digest %s: cannot tell owner %s (no %s poster): %s", spec.name, spec.owner, surface, texts
            )
            return
        try:
            await poster.post(dest, "\n\n".join(texts))
        except Exception:
            log.warning("digest %s: telling owner %s failed", spec.name, spec.owner, exc_info=True)

    def _done(self, run: RunRecord) -> RunRecord:
        for listener in self.listeners:
            try:
                listener(run)
            except Exception:
                log.exception("digest run listener failed")
        return run
