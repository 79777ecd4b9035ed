"""One digest run, from its claim to its final status, recorded at every step.

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
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from core.digests import messages
from core.digests.access import problems
from core.digests.assistant import DigestAssistant
from core.digests.compose import Draft, Summarise, write
from core.digests.config import DigestSpec
from core.digests.configured import DigestsConfigured
from core.digests.inputs import ChatActivity, gather
from core.digests.posting import Posting
from core.digests.schedule import fire_key, last_fire, utcnow
from core.digests.store import Delivery, LostClaim, RunRecord, RunStore
from core.errors import DigestError

log = logging.getLogger(__name__)

MAX_CLAIMS = 3  # a run whose process died this many times is marked failed instead of resumed again


class Runner:
    """Runs digests: claims the fire time, writes the text once, posts it, tells the listeners."""

    def __init__(
        self,
        settings: DigestsConfigured,
        store: RunStore,
        posting: Posting,
        assistant: Callable[[], DigestAssistant | None],
        summarise: Summarise,
        chat_activity: ChatActivity | None = None,
        creator: Callable[[str], str | None] = lambda name: None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.posting = posting
        self.assistant = assistant
        self.summarise = summarise
        self.chat_activity = chat_activity
        self.creator = creator  # who created a digest from chat (None: hearth.yaml)
        self.listeners: list[Callable[[RunRecord], None]] = []
        self._runs: set[asyncio.Future[RunRecord | None]] = set()

    def track(self, run: Awaitable[RunRecord | None]) -> asyncio.Future[RunRecord | None]:
        """Run in a task that :meth:`stop` cancels; await the result or leave it running."""
        task = asyncio.ensure_future(run)
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)
        return task

    async def stop(self) -> None:
        """Cancel the runs in flight; each stops at its current step (its claim is resumed later)."""
        for task in list(self._runs):
            task.cancel()
        if self._runs:
            await asyncio.gather(*self._runs, return_exceptions=True)

    async def run(self, spec: DigestSpec, fire_time: str, trigger: str) -> RunRecord | None:
        """Claim ``spec`` at ``fire_time`` (a fresh or a stale claim) and finish it; None when it is taken."""
        run = await self.store.claim(spec.name, fire_time, trigger)
        if run is None:
            log.info(
                "digest %s (%s): already run or running elsewhere; not posting again", spec.name, fire_time
            )
            return None
        return await self._execute(spec, run)

    async def dry_run(self, spec: DigestSpec, when: datetime) -> RunRecord:
        """Write the digest for ``when`` without claiming, recording or posting anything."""
        draft = await self._write(spec, when)
        now = utcnow().timestamp()
        return RunRecord(
            id=0,
            digest=spec.name,
            fire_time=fire_key(when),
            trigger="dry-run",
            status="skipped" if draft.skip else "dry-run",
            holder=self.store.holder,
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
        # Grants and channel members change after a digest was made.
        refused = await problems(spec, self.settings, self.chat_activity, creator=self.creator(spec.name))
        if refused:
            raise DigestError(messages.CMD_FORBIDDEN.format(reason="; ".join(refused)))
        since = await self._since(spec, when)
        assistant = self.assistant()
        got = await gather(spec, self.settings, assistant, since, utcnow(), self.chat_activity)
        return await write(spec, got, self.summarise)

    async def _execute(self, spec: DigestSpec, run: RunRecord) -> RunRecord:
        """Finish a claimed run, keeping its lease alive; a failure is recorded, never left to resume forever."""
        heartbeat = asyncio.create_task(self._heartbeat(run))
        try:
            await self._advance(spec, run)
        except LostClaim:
            log.warning(
                "digest %s (%s): another process took this run over; stopping", run.digest, run.fire_time
            )
            return run
        except DigestError as exc:
            # Refused on purpose (an input its audience may not read): recorded as it is, not as a bug.
            log.warning("digest %s (%s): not posted: %s", run.digest, run.fire_time, exc)
            with contextlib.suppress(Exception):
                await self.store.update(
                    run, status="failed", finished_at=utcnow().timestamp(), reason=str(exc)[:500]
                )
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
        await self.posting.tell_owner(spec, run)
        return self._done(run)

    async def _advance(self, spec: DigestSpec, run: RunRecord) -> None:
        """Take a claimed run from wherever its record stands to a final status."""
        if run.claims > MAX_CLAIMS:
            await self.store.update(
                run,
                status="failed",
                finished_at=utcnow().timestamp(),
                reason=f"gave up after {MAX_CLAIMS} attempts that each stopped midway",
            )
            return
        if run.text is None:
            draft = await self._write(spec, datetime.fromisoformat(run.fire_time))
            run.notes = draft.notes
            written = {"since": draft.since, "until": draft.until, "text": draft.text, "reason": draft.reason}
            if draft.skip:
                await self.store.update(run, status="skipped", finished_at=utcnow().timestamp(), **written)
                return
            run.deliveries = {f"{s}:{d}": Delivery() for s, d in spec.destinations}
            await self.store.update(run, **written)
        for delivery in run.deliveries.values():
            if delivery.status == "posting":
                # We died mid-post: the platform may or may not have it. Never risk a duplicate.
                delivery.status = "uncertain"
                delivery.error = "the process stopped while posting; not re-posted to avoid a duplicate"
                await self.store.update(run)
        for key, delivery in run.deliveries.items():
            if delivery.status == "pending":
                await self.posting.deliver(run, key, delivery)
        states = [d.status for d in run.deliveries.values()]
        status = (
            "posted"
            if all(s == "posted" for s in states)
            else ("partial" if any(s == "posted" for s in states) else "failed")
        )
        await self.store.update(run, status=status, finished_at=utcnow().timestamp())

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

    def _done(self, run: RunRecord) -> RunRecord:
        for listener in self.listeners:
            try:
                listener(run)
            except Exception:
                log.exception("digest run listener failed")
        return run
