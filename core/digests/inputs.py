"""Gather what a digest reports on: changed docs, table results, chat activity.

Each input degrades to a note in the digest (never a crash) when its capability is missing or
fails; a table query the SQL guard rejects is recorded with the guard's reason.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from core.contracts import TablePart
from core.digests import messages
from core.digests.assistant import DigestAssistant, TableQueries
from core.digests.config import ChatInput, DigestSpec, DocsInput
from core.digests.configured import DigestsConfigured
from core.errors import HearthError, SQLRejected
from core.render import markdown_table

if TYPE_CHECKING:
    from core.retrieval.sync import ChangedDoc as IndexedChange

log = logging.getLogger(__name__)

# Optional: (channels, since) -> short lines of chat activity; installed by a chat surface.
ChatActivity = Callable[[Sequence[str], datetime], Awaitable[list[str]]]
TABLE_ROWS = 20


@dataclass(frozen=True)
class ChangedDoc:
    """A document that changed in the digest's period."""

    title: str
    uri: str
    source: str
    updated_at: str


@dataclass(frozen=True)
class TableResult:
    """One table query's outcome: a Markdown table, or why there is none."""

    title: str
    source: str
    markdown: str = ""
    error: str = ""


@dataclass
class Gathered:
    """Everything a digest run collected."""

    since: datetime
    until: datetime
    docs: list[ChangedDoc] = field(default_factory=list)
    tables: list[TableResult] = field(default_factory=list)
    chat: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    # False when an input that reports change (docs, chat) could not be read: not "no changes".
    complete: bool = True
    tracks_changes: bool = False

    @property
    def nothing_changed(self) -> bool:
        """True when every change-tracking input was read and found nothing."""
        return self.tracks_changes and self.complete and not self.docs and not self.chat


async def changed_docs(
    settings: DigestsConfigured, sources: list[str], since: datetime
) -> list[IndexedChange]:
    """Changed documents from the retrieval sync state (ImportError when retrieval is not installed)."""
    from core.retrieval.sync import changed_since

    return await changed_since(settings, sources, since)


def render_rows(part: TablePart, limit: int = TABLE_ROWS) -> str:
    """The rows of a table answer as a Markdown table of at most ``limit`` rows."""
    return markdown_table(
        part.columns, part.rows, limit, more=messages.TABLE_MORE_ROWS, empty=messages.TABLE_NO_ROWS
    )


async def gather(
    spec: DigestSpec,
    settings: DigestsConfigured,
    assistant: DigestAssistant | None,
    since: datetime,
    until: datetime,
    chat_activity: ChatActivity | None = None,
) -> Gathered:
    """Collect every input of ``spec`` for the period (since, until]."""
    got = Gathered(since=since, until=until)
    if spec.inputs.docs is not None:
        await _gather_docs(got, spec, settings, spec.inputs.docs)
    if spec.inputs.tables:
        await _gather_tables(got, spec, assistant.tables if assistant is not None else None)
    if spec.inputs.chat is not None:
        await _gather_chat(got, spec.inputs.chat, chat_activity)
    return got


async def _gather_docs(got: Gathered, spec: DigestSpec, settings: DigestsConfigured, docs: DocsInput) -> None:
    got.tracks_changes = True
    sources = docs.sources or [s.name for s in settings.sources]
    try:
        records = await changed_docs(settings, sources, got.since)
    except ImportError:
        got.complete = False
        got.notes.append("Changed documents are not available: document retrieval is not installed.")
        return
    except HearthError as exc:
        got.complete = False
        log.warning("digest %s: reading changed docs failed", spec.name, exc_info=True)
        got.notes.append(f"Changed documents could not be read: {exc}")
        return
    found = [
        ChangedDoc(r.title or r.uri, r.uri, r.source, r.updated_at.isoformat(timespec="minutes"))
        for r in records
    ]
    found.sort(key=lambda d: d.updated_at, reverse=True)
    if len(found) > docs.max_items:
        got.notes.append(f"{len(found) - docs.max_items} more changed document(s) not listed.")
    got.docs = found[: docs.max_items]


async def _gather_tables(got: Gathered, spec: DigestSpec, service: TableQueries | None) -> None:
    for j, table in enumerate(spec.inputs.tables):
        title = table.title or table.source
        if service is None:
            got.tables.append(TableResult(title, table.source, error="table queries are not available"))
            continue
        try:
            answer = await service.query(table.source, table.sql)
        except SQLRejected as exc:
            reason = f"inputs.tables[{j}] ({table.source}): the SQL guard rejected the query: {exc}"
            got.rejected.append(reason)
            got.tables.append(TableResult(title, table.source, error=f"query rejected: {exc}"))
        except HearthError as exc:
            log.warning("digest %s: table query %d failed", spec.name, j, exc_info=True)
            got.tables.append(TableResult(title, table.source, error=str(exc)))
        else:
            if answer.table is None:  # the contract says query() always has one; say so rather than crash
                got.tables.append(TableResult(title, table.source, error=answer.text or "no rows came back"))
            else:
                got.tables.append(TableResult(title, table.source, markdown=render_rows(answer.table)))


async def _gather_chat(got: Gathered, chat: ChatInput, chat_activity: ChatActivity | None) -> None:
    got.tracks_changes = True
    if chat_activity is None:
        got.complete = False
        got.notes.append("Chat activity is not available: no chat history reader is installed.")
        return
    try:
        got.chat = list(await chat_activity(chat.channels, got.since))
    except HearthError as exc:
        got.complete = False
        got.notes.append(f"Chat activity could not be read: {exc}")
