"""Posting a finished digest: one destination at a time with retries, and the note to its owner.

Every step is written to the run record before and after the poster is called, so a process that
dies mid-post leaves the destination ``posting`` (see :mod:`core.digests.runs` for what follows).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from core.contracts import Poster
from core.digests import messages
from core.digests.config import DigestSpec
from core.digests.store import Delivery, RunRecord, RunStore

log = logging.getLogger(__name__)


class Posting:
    """Hands digest texts to the surfaces' posters and records what happened."""

    def __init__(self, posters: Mapping[str, Poster], store: RunStore, backoff: Sequence[float]) -> None:
        self.posters = posters
        self.store = store
        self.backoff = tuple(backoff)

    async def deliver(self, run: RunRecord, key: str, delivery: Delivery) -> None:
        """Post to one destination (``surface:dest``), retrying with backoff; the record says what happened."""
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

    async def tell_owner(self, spec: DigestSpec, run: RunRecord) -> None:
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
            told = messages.OWNER_STOPPED if run.status == "failed" else messages.OWNER_REJECTED
            texts.append(told.format(name=spec.name, fire_time=run.fire_time, reasons=run.reason))
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
