"""What the `hearth serve` app keeps under its ``web.AppKey``s, and its lifecycle state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

from core.assistant import Assistant
from core.audit import AuditLog
from core.config import Settings
from core.db import Database
from core.intake import Intake

SETTINGS = web.AppKey("settings", Settings)
ASSISTANT = web.AppKey("assistant", Assistant)
DATABASE = web.AppKey("database", Database)
AUDIT = web.AppKey("audit", AuditLog)
INTAKE = web.AppKey("intake", Intake)


@dataclass
class Lifecycle:
    """Startup problems, the draining flag set on SIGTERM, and the answers still in flight."""

    started_at: float = field(default_factory=time.time)
    draining: bool = False
    assistant_error: str | None = None
    model_loading: bool = False
    model_error: str | None = None
    inflight: set[asyncio.Task[object]] = field(default_factory=set)

    @contextmanager
    def track(self) -> Iterator[None]:
        """Count the current task as an in-flight answer that shutdown waits for (then cancels)."""
        task = asyncio.current_task()
        assert task is not None
        self.inflight.add(task)
        try:
            yield
        finally:
            self.inflight.discard(task)

    async def drain(self, grace_s: float) -> int:
        """Stop taking work; wait ``grace_s`` for in-flight answers, cancel the rest; return how many."""
        self.draining = True
        pending = {t for t in self.inflight if not t.done()}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace_s)
        for task in pending:
            task.cancel()
        if pending:
            # Cancelled handlers write a last "shutting down" event; give them a moment to do it.
            await asyncio.wait(pending, timeout=2.0)
        return len(pending)


LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
