"""The audit table: who asked what, through which surface, which sources came back, which backend answered.

Rows are queued in memory and written by one background task, so a slow database never delays
an answer and a cancelled request is still recorded; :meth:`AuditLog.aclose` flushes the queue
on shutdown. Secrets and API tokens are never written (only the user name a token belongs to)::

    audit.record(AuditEntry(user="alice", surface="rest", action="ask", question="…"))

It is an observer of the intake (``core.intake.Observer``): every question from every surface is
recorded once, where it ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.contracts import Answer, Outcome
from core.db import Database, metadata

log = logging.getLogger(__name__)

MAX_TEXT = 4000
_QUEUE_LIMIT = 10_000

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False, index=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("user_name", sa.String(255), nullable=False),
    sa.Column("surface", sa.String(32), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("sources", sa.Text, nullable=False),  # JSON list of source URIs
    sa.Column("backend", sa.String(32), nullable=False),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),  # ok | error | cancelled
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("timings", sa.Text, nullable=False),  # JSON of timings_ms
    sa.Column("duration_ms", sa.Float, nullable=False),
)


@dataclass
class AuditEntry:
    """One audited request."""

    user: str
    surface: str
    action: str
    question: str
    request_id: str = ""
    sources: list[str] = field(default_factory=list)
    backend: str = ""
    model: str = ""
    status: str = "ok"
    error: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    duration_ms: float = 0.0
    at: float = field(default_factory=time.time)

    def with_answer(self, answer: Answer) -> AuditEntry:
        """Fill in what the answer says about sources, backend, model, usage and timings."""
        self.sources = [c.uri for c in answer.citations]
        if answer.table is not None:
            self.sources = [answer.table.source]
        self.backend = answer.backend
        self.model = answer.model
        self.prompt_tokens = answer.usage.prompt_tokens
        self.completion_tokens = answer.usage.completion_tokens
        self.timings = dict(answer.timings_ms)
        return self

    def row(self) -> dict[str, Any]:
        """The database row."""
        data = asdict(self)
        data["user_name"] = data.pop("user")[:255]
        data["question"] = self.question[:MAX_TEXT]
        data["error"] = self.error[:MAX_TEXT]
        data["sources"] = json.dumps(self.sources)
        data["timings"] = json.dumps({k: round(v, 1) for k, v in self.timings.items()})
        data["duration_ms"] = round(self.duration_ms, 1)
        return data


class AuditLog:
    """Buffers audit entries and writes them in batches from one background task."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: asyncio.Queue[AuditEntry | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0

    def start(self) -> None:
        """Start the writer task (on the running loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._writer(), name="hearth-audit-writer")

    def observe(self, outcome: Outcome) -> None:
        """Record how one question ended (the intake calls this for every surface)."""
        ask = outcome.ask
        entry = AuditEntry(
            user=ask.request.user,
            surface=ask.request.surface,
            action=ask.kind.value,
            question=ask.request.text,
            request_id=ask.request.request_id,
            status=outcome.status,
            duration_ms=outcome.duration_ms,
        )
        if outcome.answer is not None:
            entry.with_answer(outcome.answer)
        if outcome.refusal is not None:
            entry.error = outcome.refusal.detail or outcome.refusal.reason.value
        self.record(entry)

    def record(self, entry: AuditEntry) -> None:
        """Queue ``entry``; never blocks and never raises."""
        if self._queue.qsize() >= _QUEUE_LIMIT:
            self.dropped += 1
            log.warning("audit queue full (%d); dropping an entry", _QUEUE_LIMIT)
            return
        self._queue.put_nowait(entry)

    async def _writer(self) -> None:
        delay = 0.5
        while True:
            first = await self._queue.get()
            batch = [first]
            while not self._queue.empty() and len(batch) < 500:
                batch.append(self._queue.get_nowait())
            entries = [e for e in batch if e is not None]
            while entries:
                try:
                    await self._write(entries)
                    delay = 0.5
                    break
                except Exception as exc:  # noqa: BLE001 - the database may be down; keep the rows and retry
                    log.warning(
                        "could not write %d audit row(s), retrying in %.0fs: %s", len(entries), delay, exc
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
            for _ in batch:
                self._queue.task_done()
            if None in batch:
                return

    async def _write(self, batch: Sequence[AuditEntry]) -> None:
        await self.db.ensure([audit_log])
        rows = [e.row() for e in batch]

        def insert(conn: Connection) -> None:
            conn.execute(audit_log.insert(), rows)

        await self.db.run(insert)
        self.written += len(rows)

    async def flush(self, within_s: float = 10.0) -> None:
        """Wait until everything queued so far is written (at most ``within_s`` seconds)."""
        if self._task is None or self._task.done():
            return
        try:
            await asyncio.wait_for(self._queue.join(), within_s)
        except TimeoutError:
            log.warning("audit rows still unwritten after %.0fs", within_s)

    async def aclose(self, within_s: float = 10.0) -> None:
        """Write what is queued, then stop the writer (giving up after ``within_s`` seconds)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(task), within_s)
        except TimeoutError:
            log.error("lost %d audit row(s) at shutdown: the database did not answer", self._queue.qsize())
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def recent(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    """The newest audit rows, newest first (for tests and operators)."""
    await db.ensure([audit_log])

    def select(conn: Connection) -> list[dict[str, Any]]:
        rows = conn.execute(audit_log.select().order_by(audit_log.c.id.desc()).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    return await db.run(select)
